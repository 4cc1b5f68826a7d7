//! The media half of the SIP back end: G.711 audio over RTP on our own UDP sockets.
//!
//! Signalling (elsewhere) negotiates with [`sdp::offer`] and [`sdp::parse_answer`]; a call then
//! runs a [`MediaSession`] on a socket from [`RtpPorts`]: prompts out ([`MediaSession::play`],
//! samples from [`crate::audio::prompt_from_wav`]), keys in (RFC 4733 telephone events), and optionally a
//! stereo recording of both directions.
//!
//! ```text
//! let socket = ports.bind(local_ip).await?;
//! let offer = sdp::offer(socket.local_addr()?, session_id, 1);
//! // ... INVITE with `offer`, 200 OK with the answer ...
//! let remote = sdp::parse_answer(&answer_body)?;
//! let (session, mut digits) = MediaSession::start(socket, remote, options).await?;
//! session.play(prompt_from_wav(&std::fs::read(path)?)?.into()).await?;
//! let recording = session.close().await?;
//! ```

mod clock;
pub mod dtmf;
pub mod ports;
mod recording;
pub mod rtp;
pub mod sdp;
pub mod session;

pub use dtmf::{DigitDetector, TelephoneEvent};
pub use ports::{PortError, PortLease, RtpPorts, RtpSocket};
pub use rtp::{RtpError, RtpPacket};
pub use sdp::{Codec, Direction, RemoteMedia, SdpError};
pub use session::{MediaError, MediaSession, MediaStats, SessionOptions};
