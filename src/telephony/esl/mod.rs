//! FreeSWITCH's inbound event socket: the wire framing ([`FrameCodec`]), events ([`Event`]) and a
//! client ([`EslClient`]) that authenticates, subscribes and reads the socket promptly.
//!
//! Written here rather than taken from a crate: the closest one, `freeswitch-esl-tokio`, brings its
//! own typed event model (with `freeswitch-types`, `quick-xml`, `indexmap`) and keeps its framing
//! internal, while we need a decoder we can feed real captures split at every byte, and the whole
//! protocol is a few hundred lines. `eslrs` is a release candidate and `freeswitch-esl` an
//! unmaintained 0.1.

mod client;
mod codec;
mod event;

pub use client::{EslClient, EventStream};
pub use codec::{Frame, FrameCodec, MAX_BODY, MAX_HEADER_BLOCK};
pub use event::Event;

/// What can go wrong on the event socket.
#[derive(Debug, thiserror::Error)]
pub enum EslError {
    #[error("event socket I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The password was refused (`-ERR invalid`); the text is FreeSWITCH's reply.
    #[error("event socket authentication failed: {0}")]
    AuthFailed(String),
    /// `text/rude-rejection`: FreeSWITCH's ACL refused our address.
    #[error("event socket rejected the connection: {0}")]
    Rejected(String),
    /// `text/disconnect-notice`, end of stream, or the client closed the connection.
    #[error("event socket disconnected: {0}")]
    Disconnected(String),
    #[error("event socket protocol error: {0}")]
    Protocol(String),
    #[error("event socket command timed out")]
    Timeout,
    /// A command FreeSWITCH answered with `-ERR …` in its `command/reply` (e.g. a refused `bgapi`).
    #[error("event socket command refused: {0}")]
    CommandFailed(String),
}

impl EslError {
    /// Why a connection ended, without the error's own prefix.
    pub fn reason(&self) -> String {
        match self {
            EslError::Disconnected(text) => text.clone(),
            other => other.to_string(),
        }
    }

    /// The same error again, for every later caller once a connection is over (`io::Error` does
    /// not clone, so it is carried as its text).
    pub fn replay(&self) -> EslError {
        match self {
            EslError::Io(error) => EslError::Disconnected(error.to_string()),
            EslError::AuthFailed(text) => EslError::AuthFailed(text.clone()),
            EslError::Rejected(text) => EslError::Rejected(text.clone()),
            EslError::Disconnected(text) => EslError::Disconnected(text.clone()),
            EslError::Protocol(text) => EslError::Protocol(text.clone()),
            EslError::Timeout => EslError::Timeout,
            EslError::CommandFailed(text) => EslError::CommandFailed(text.clone()),
        }
    }
}
