//! One call's audio: prompts out as paced G.711 RTP, keys in from telephone events, and an
//! optional stereo recording of both directions.
//!
//! The receive side faces the network, so it is built to shrug off floods and garbage: every
//! datagram costs a bounded amount of work, nothing it causes is queued without a bound, and only
//! the far end negotiated in SDP is listened to.

use std::{
    io,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::{Duration, Instant},
};

use tokio::{
    io::{unix::AsyncFd, Interest},
    sync::mpsc,
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

use super::{
    clock::{Position, Stream},
    dtmf::{DigitDetector, TelephoneEvent},
    ports::{PortLease, RtpSocket},
    recording::{self, sample_position, Channel, Mix, Recording},
    rtp::RtpPacket,
    sdp::RemoteMedia,
};

/// One packet's worth of audio.
pub const PACKET_DURATION: Duration = Duration::from_millis(20);
/// Keys not yet taken by the caller; beyond this, further keys are dropped.
const DIGIT_QUEUE: usize = 64;
/// Larger datagrams are truncated by the socket; a G.711 packet is 172 bytes.
const RECEIVE_BUFFER: usize = 2048;
/// A received packet whose timestamp puts it further than this from its arrival time is taken
/// as the start of a new stream (a jump in the far end's clock) rather than placed by timestamp.
const MAX_TIMESTAMP_SKEW: i64 = 500 * 8;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("the media session is closed")]
    Closed,
    #[error("the RTP socket has no local address: {0}")]
    Socket(io::Error),
    #[error("recording {path}: {source}")]
    Recording { path: PathBuf, source: io::Error },
}

/// How a session is set up besides its socket and far end.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// Record both directions to this WAV file (its directory must exist).
    pub recording: Option<PathBuf>,
    /// Symmetric RTP (RFC 4961) for a far end that sends from another port than the one its
    /// SDP gave: the first packet of a negotiated payload type from the SDP's IP address fixes
    /// the address we listen to and send to. Off, only the SDP's address and port is heard.
    pub symmetric_rtp: bool,
}

/// Counters, for logs and for noticing a far end that went quiet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaStats {
    pub packets_sent: u64,
    /// RTP packets from the far end with its audio or telephone-event payload type.
    pub packets_received: u64,
    /// Datagrams dropped: other senders, not RTP, or payload types we did not negotiate.
    pub packets_ignored: u64,
    /// When the far end's last packet arrived.
    pub last_received: Option<Instant>,
}

/// A running media session. All methods take `&self`, so it can be shared (e.g. in an `Arc`)
/// between the task that plays prompts and the one that ends the call.
pub struct MediaSession {
    shared: Arc<Shared>,
    local_address: SocketAddr,
    sender: tokio::sync::Mutex<SendState>,
    stop: CancellationToken,
    tasks: Mutex<Option<Tasks>>,
}

struct Tasks {
    receive: JoinHandle<()>,
    recording: Option<(JoinHandle<io::Result<()>>, PathBuf)>,
}

/// What both directions use.
pub(super) struct Shared {
    /// Watched for reading only: sends (from the media clock) raise no event in the runtime,
    /// where a socket registered for writing too would wake it once per packet sent.
    pub(super) socket: AsyncFd<std::net::UdpSocket>,
    /// Freed with the socket, not before: the port stays ours until nothing can use it.
    _lease: Option<PortLease>,
    epoch: Instant,
    remote: Mutex<RemoteState>,
    pub(super) mix: Option<Arc<Mutex<Mix>>>,
    pub(super) packets_sent: AtomicU64,
    packets_received: AtomicU64,
    packets_ignored: AtomicU64,
    /// Nanoseconds after `epoch` plus one; 0 until a packet arrives.
    last_received: AtomicU64,
}

pub(super) struct RemoteState {
    pub(super) media: RemoteMedia,
    /// Where we send, and the only source we listen to.
    pub(super) address: SocketAddr,
    /// The far end's stream once its first packet arrived: only that SSRC is heard after it.
    ssrc: Option<u32>,
    symmetric: bool,
}

/// The sending side's position in the RTP stream.
struct SendState {
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    /// When the next packet is due, if the stream continues without a pause.
    next_packet_at: Option<tokio::time::Instant>,
}

impl MediaSession {
    /// Starts receiving (and recording, if asked) on `socket`, towards `remote`. Returns the
    /// session and the keys the far end presses, in order, each press once.
    pub async fn start(
        socket: RtpSocket,
        remote: RemoteMedia,
        options: SessionOptions,
    ) -> Result<(MediaSession, mpsc::Receiver<char>), MediaError> {
        let local_address = socket.local_addr().map_err(MediaError::Socket)?;
        let (socket, lease) = socket.into_parts();
        let socket = socket
            .into_std()
            .and_then(|socket| {
                // SAFETY: the std socket owns its descriptor, which stays open and the same until
                // the AsyncFd (that owns the socket) is dropped.
                unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }
                    .map_err(io::Error::from)
            })
            .map_err(MediaError::Socket)?;
        let epoch = Instant::now();
        let stop = CancellationToken::new();
        let recording = match &options.recording {
            Some(path) => Some(Recording::start(path, epoch, stop.clone()).await.map_err(
                |source| MediaError::Recording {
                    path: path.clone(),
                    source,
                },
            )?),
            None => None,
        };
        let shared = Arc::new(Shared {
            socket,
            _lease: lease,
            epoch,
            remote: Mutex::new(RemoteState {
                media: remote,
                address: remote.address,
                ssrc: None,
                symmetric: options.symmetric_rtp,
            }),
            mix: recording.as_ref().map(|recording| recording.mix.clone()),
            packets_sent: AtomicU64::new(0),
            packets_received: AtomicU64::new(0),
            packets_ignored: AtomicU64::new(0),
            last_received: AtomicU64::new(0),
        });
        let (digits, digit_receiver) = mpsc::channel(DIGIT_QUEUE);
        let receive = tokio::spawn(receive_loop(shared.clone(), digits, stop.clone()));
        let session = MediaSession {
            shared,
            local_address,
            // RFC 3550 wants random starting points, so that streams cannot be confused or
            // predicted.
            sender: tokio::sync::Mutex::new(SendState {
                ssrc: rand::random(),
                sequence: rand::random(),
                timestamp: rand::random(),
                next_packet_at: None,
            }),
            stop,
            tasks: Mutex::new(Some(Tasks {
                receive,
                recording: recording.map(|recording| (recording.task, recording.path)),
            })),
        };
        Ok((session, digit_receiver))
    }

    pub fn local_address(&self) -> SocketAddr {
        self.local_address
    }

    /// The far end as last negotiated.
    pub fn remote(&self) -> RemoteMedia {
        self.shared.remote().media
    }

    /// Takes a new negotiation (e.g. a re-INVITE) into use: codec, payload types, direction, and,
    /// if it changed, the address, which then waits again for the far end's first packet (and
    /// its stream's SSRC).
    pub fn update_remote(&self, media: RemoteMedia) {
        let mut remote = self.shared.remote();
        if media.address != remote.media.address {
            remote.address = media.address;
            remote.ssrc = None;
        }
        remote.media = media;
    }

    /// The RTP source we send to and listen to: the negotiated address, or with symmetric RTP
    /// the port of the negotiated IP the far end actually sends from.
    pub fn remote_address(&self) -> SocketAddr {
        self.shared.remote().address
    }

    /// Sends `samples` (8 kHz mono) in 20 ms packets of the negotiated codec, paced by the clock;
    /// returns once the last packet has gone. Dropping the future stops the prompt where it is.
    /// Prompts played one after another continue the same RTP stream; each starts with the
    /// marker bit set, as a new talk spurt. While the far end does not want our audio
    /// (`sendonly`/`inactive`), the prompt runs its course without sending.
    ///
    /// The packets are sent by the media clock shared by every session (see [`clock`](super::clock)),
    /// which is why the samples are shared rather than borrowed.
    pub async fn play(&self, samples: Arc<[i16]>) -> Result<(), MediaError> {
        let mut sender = tokio::select! {
            biased;
            _ = self.stop.cancelled() => return Err(MediaError::Closed),
            sender = self.sender.lock() => sender,
        };
        let now = tokio::time::Instant::now();
        let start = match sender.next_packet_at {
            Some(due) if due > now => due,
            Some(due) => {
                // After a pause the timestamp moves on by the pause, as the far end's clock did.
                let pause = sample_position(due.into_std(), now.into_std());
                sender.timestamp = sender.timestamp.wrapping_add(pause as u32);
                now
            }
            None => now,
        };
        let first_position = sample_position(self.shared.epoch, start.into_std());
        let stream = Stream::play(
            self.shared.clone(),
            samples,
            start.into_std(),
            first_position,
            Position {
                ssrc: sender.ssrc,
                sequence: sender.sequence,
                timestamp: sender.timestamp,
            },
            self.stop.clone(),
        );
        // However the wait ends (played, closed, or this future dropped), the stream stops and
        // the next prompt continues where it stopped.
        let playing = Playing {
            stream,
            sender: &mut sender,
        };
        tokio::select! {
            biased;
            _ = self.stop.cancelled() => Err(MediaError::Closed),
            _ = playing.stream.finished() => Ok(()),
        }
    }

    pub fn stats(&self) -> MediaStats {
        let shared = &self.shared;
        let last_received = match shared.last_received.load(Ordering::Relaxed) {
            0 => None,
            nanos => Some(shared.epoch + Duration::from_nanos(nanos - 1)),
        };
        MediaStats {
            packets_sent: shared.packets_sent.load(Ordering::Relaxed),
            packets_received: shared.packets_received.load(Ordering::Relaxed),
            packets_ignored: shared.packets_ignored.load(Ordering::Relaxed),
            last_received,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Stops sending and receiving (a prompt being played returns [`MediaError::Closed`]),
    /// completes the recording and returns its path. Only the first call does this; later ones
    /// return `Ok(None)`. A session dropped without closing stops the same way, and its recording
    /// is still completed, in the background.
    pub async fn close(&self) -> Result<Option<PathBuf>, MediaError> {
        self.stop.cancel();
        let Some(tasks) = self.tasks.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return Ok(None);
        };
        if let Err(error) = tasks.receive.await {
            tracing::error!(%error, "RTP receive task failed");
        }
        let Some((recording, path)) = tasks.recording else {
            return Ok(None);
        };
        match recording.await.map_err(io::Error::other) {
            Ok(Ok(())) => Ok(Some(path)),
            Ok(Err(source)) | Err(source) => Err(MediaError::Recording { path, source }),
        }
    }
}

/// A prompt handed to the clock; dropped, it stops the stream and keeps its position.
struct Playing<'a> {
    stream: Arc<Stream>,
    sender: &'a mut SendState,
}

impl Drop for Playing<'_> {
    fn drop(&mut self) {
        let (position, next_packet_at) = self.stream.cancel();
        self.sender.sequence = position.sequence;
        self.sender.timestamp = position.timestamp;
        self.sender.next_packet_at = Some(next_packet_at.into());
    }
}

impl Drop for MediaSession {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Shared {
    pub(super) fn remote(&self) -> MutexGuard<'_, RemoteState> {
        self.remote
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The far end's media if a packet from `source` with `payload_type` and `ssrc` is theirs:
    /// a negotiated payload type, from the address the SDP gave (or, with symmetric RTP and
    /// before the first packet, from another port of its IP, which then becomes the address we
    /// use both ways), and from the stream of the first packet admitted. An injected packet from
    /// anywhere else can neither redirect our audio nor press keys.
    fn admit(&self, source: SocketAddr, payload_type: u8, ssrc: u32) -> Option<RemoteMedia> {
        let mut remote = self.remote();
        let media = remote.media;
        let expected =
            payload_type == media.payload_type || Some(payload_type) == media.telephone_event;
        if !expected {
            return None;
        }
        match remote.ssrc {
            Some(locked) => {
                if source != remote.address || ssrc != locked {
                    return None;
                }
            }
            None => {
                if source != remote.address {
                    let same_host = source.ip() == media.address.ip();
                    if !(remote.symmetric && same_host) {
                        return None;
                    }
                    tracing::debug!(negotiated = %remote.address, actual = %source, "far end sends RTP from another port");
                    remote.address = source;
                }
                remote.ssrc = Some(ssrc);
            }
        }
        Some(media)
    }
}

/// The next datagram on `socket`.
async fn receive(
    socket: &AsyncFd<std::net::UdpSocket>,
    buffer: &mut [u8],
) -> io::Result<(usize, SocketAddr)> {
    loop {
        let mut ready = socket.readable().await?;
        if let Ok(received) = ready.try_io(|socket| socket.get_ref().recv_from(buffer)) {
            return received;
        }
    }
}

async fn receive_loop(shared: Arc<Shared>, digits: mpsc::Sender<char>, stop: CancellationToken) {
    let mut buffer = vec![0u8; RECEIVE_BUFFER];
    let mut detector = DigitDetector::new();
    let mut placement = ReceivedPlacement::default();
    // Grows on the first packet recorded: most calls record nothing.
    let mut decoded = Vec::new();
    loop {
        let received = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            received = receive(&shared.socket, &mut buffer) => received,
        };
        let (length, source) = match received {
            Ok(received) => received,
            Err(error) => {
                // E.g. an ICMP error reported on the socket; pause so that a persistent one
                // cannot spin this loop.
                tracing::debug!(%error, "RTP receive failed");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(10)) => continue,
                }
            }
        };
        let arrival = Instant::now();
        let admitted = RtpPacket::parse(&buffer[..length]).ok().and_then(|packet| {
            Some((
                shared.admit(source, packet.payload_type, packet.ssrc)?,
                packet,
            ))
        });
        let Some((media, packet)) = admitted else {
            shared.packets_ignored.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        shared.packets_received.fetch_add(1, Ordering::Relaxed);
        let since_epoch = arrival.saturating_duration_since(shared.epoch).as_nanos() as u64;
        shared
            .last_received
            .store(since_epoch.saturating_add(1), Ordering::Relaxed);

        if Some(packet.payload_type) == media.telephone_event {
            let Some(event) = TelephoneEvent::parse(packet.payload) else {
                continue;
            };
            if let Some(digit) = detector.push(packet.ssrc, packet.timestamp, &event) {
                match digits.try_send(digit) {
                    Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::warn!(%digit, "key dropped: nobody is reading keys")
                    }
                }
            }
        } else if let Some(mix) = &shared.mix {
            decoded.clear();
            media.codec.law().decode_into(packet.payload, &mut decoded);
            let position = placement.place(
                packet.ssrc,
                packet.timestamp,
                sample_position(shared.epoch, arrival),
            );
            recording::lock(mix).write(Channel::Received, position, &decoded);
        }
    }
}

/// Places received audio on the session's timeline by RTP timestamp, so that arrival jitter
/// neither gaps nor overlaps it: a stream is anchored at the arrival of its first packet and
/// stays there (moving it would cut the audio) until a timestamp strays too far from the clock.
#[derive(Debug, Default)]
struct ReceivedPlacement {
    anchor: Option<Anchor>,
}

#[derive(Debug, Clone, Copy)]
struct Anchor {
    ssrc: u32,
    timestamp: u32,
    position: u64,
}

impl ReceivedPlacement {
    fn place(&mut self, ssrc: u32, timestamp: u32, arrival: u64) -> u64 {
        if let Some(anchor) = self.anchor.filter(|anchor| anchor.ssrc == ssrc) {
            // Wrapping difference: timestamps are 32-bit and wrap within about 6 days.
            let offset = timestamp.wrapping_sub(anchor.timestamp) as i32 as i64;
            let position = anchor.position as i64 + offset;
            if position >= 0 && (position - arrival as i64).abs() <= MAX_TIMESTAMP_SKEW {
                return position as u64;
            }
        }
        self.anchor = Some(Anchor {
            ssrc,
            timestamp,
            position: arrival,
        });
        arrival
    }
}

#[cfg(test)]
mod tests {
    use super::super::{
        dtmf::event_of_digit,
        recording::FRAME_LEN,
        sdp::{Codec, Direction},
    };
    use super::*;
    use crate::audio::{wav, G711};
    use tokio::net::UdpSocket;

    const TELEPHONE_EVENT: u8 = 101;

    fn remote_media(address: SocketAddr, codec: Codec) -> RemoteMedia {
        RemoteMedia {
            address,
            codec,
            payload_type: codec.static_payload_type(),
            telephone_event: Some(TELEPHONE_EVENT),
            direction: Direction::SendRecv,
        }
    }

    async fn local_socket() -> RtpSocket {
        RtpSocket::new(UdpSocket::bind("127.0.0.1:0").await.unwrap())
    }

    /// A far end that is just a socket, for sending hand-made packets.
    async fn peer_socket() -> (UdpSocket, SocketAddr) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = socket.local_addr().unwrap();
        (socket, address)
    }

    async fn session_towards(
        remote: SocketAddr,
        options: SessionOptions,
    ) -> (MediaSession, mpsc::Receiver<char>) {
        MediaSession::start(
            local_socket().await,
            remote_media(remote, Codec::Pcmu),
            options,
        )
        .await
        .unwrap()
    }

    fn chirp(seconds: f64, from_hz: f64, to_hz: f64) -> Vec<i16> {
        let count = (8000.0 * seconds) as usize;
        (0..count)
            .map(|index| {
                let t = index as f64 / 8000.0;
                let phase = 2.0
                    * std::f64::consts::PI
                    * (from_hz * t + (to_hz - from_hz) * t * t / (2.0 * seconds));
                (12000.0 * phase.sin()) as i16
            })
            .collect()
    }

    /// The best normalised cross-correlation of `sent` within `received`, over lags near the
    /// one where their first loud samples line up.
    fn best_correlation(sent: &[i16], received: &[i16]) -> f64 {
        let onset = |samples: &[i16]| samples.iter().position(|s| s.unsigned_abs() > 2000);
        let (Some(sent_onset), Some(received_onset)) = (onset(sent), onset(received)) else {
            return 0.0;
        };
        let center = received_onset as i64 - sent_onset as i64;
        let sent_energy: f64 = sent.iter().map(|&s| (s as f64).powi(2)).sum();
        (center - 320..=center + 320)
            .filter(|lag| *lag >= 0)
            .map(|lag| {
                let window = received.iter().skip(lag as usize).take(sent.len());
                let (mut product, mut received_energy) = (0.0, 0.0);
                for (&a, &b) in sent.iter().zip(window) {
                    product += a as f64 * b as f64;
                    received_energy += (b as f64).powi(2);
                }
                product / (sent_energy * received_energy).sqrt().max(1.0)
            })
            .fold(0.0, f64::max)
    }

    /// The two channels of a recording.
    fn read_recording(path: &std::path::Path) -> (Vec<i16>, Vec<i16>) {
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(&bytes[..4], b"RIFF");
        assert_eq!(bytes[22], 2, "stereo");
        assert_eq!(
            u32::from_le_bytes(bytes[40..44].try_into().unwrap()) as usize,
            bytes.len() - wav::HEADER_LEN
        );
        let samples: Vec<i16> = bytes[wav::HEADER_LEN..]
            .chunks_exact(2)
            .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
            .collect();
        let left = samples.iter().step_by(2).copied().collect();
        let right = samples.iter().skip(1).step_by(2).copied().collect();
        (left, right)
    }

    fn event_packet(
        ssrc: u32,
        sequence: u16,
        timestamp: u32,
        digit: char,
        end: bool,
        duration: u16,
    ) -> Vec<u8> {
        let event = TelephoneEvent {
            event: event_of_digit(digit).unwrap(),
            end,
            volume: 10,
            duration,
        };
        let payload = event.to_bytes();
        let mut packet = RtpPacket::new(TELEPHONE_EVENT, sequence, timestamp, ssrc, &payload);
        packet.marker = duration == 160 && !end;
        packet.to_bytes().unwrap()
    }

    /// The packets of one key press: start, updates, and three end packets.
    fn press(first_sequence: u16, timestamp: u32, digit: char) -> Vec<Vec<u8>> {
        press_in(0x5EED, first_sequence, timestamp, digit)
    }

    /// A key press in the stream `ssrc`.
    fn press_in(ssrc: u32, first_sequence: u16, timestamp: u32, digit: char) -> Vec<Vec<u8>> {
        let mut packets = Vec::new();
        let mut sequence = first_sequence;
        for step in 1..=4u16 {
            packets.push(event_packet(
                ssrc,
                sequence,
                timestamp,
                digit,
                false,
                160 * step,
            ));
            sequence += 1;
        }
        for _ in 0..3 {
            packets.push(event_packet(ssrc, sequence, timestamp, digit, true, 800));
            sequence += 1;
        }
        packets
    }

    async fn collect_digits(digits: &mut mpsc::Receiver<char>, count: usize) -> String {
        let mut collected = String::new();
        while collected.len() < count {
            match tokio::time::timeout(Duration::from_secs(2), digits.recv()).await {
                Ok(Some(digit)) => collected.push(digit),
                _ => break,
            }
        }
        collected
    }

    #[test]
    fn received_audio_is_placed_by_timestamp() {
        let mut placement = ReceivedPlacement::default();
        assert_eq!(placement.place(1, 1000, 8000), 8000);
        // Jitter: later arrivals still land right after one another.
        assert_eq!(placement.place(1, 1160, 8200), 8160);
        assert_eq!(placement.place(1, 1320, 8330), 8320);
        // Arriving sooner than the first packet predicts (it was late) changes nothing.
        assert_eq!(placement.place(1, 1480, 8440), 8480);
        assert_eq!(placement.place(1, 1640, 8600), 8640);
        // A jump of the timestamp, or a new source, starts afresh.
        assert_eq!(placement.place(1, 900_000, 9000), 9000);
        assert_eq!(placement.place(2, 1800, 9100), 9100);
        // Wrapping timestamps.
        let mut placement = ReceivedPlacement::default();
        assert_eq!(placement.place(1, u32::MAX - 79, 100), 100);
        assert_eq!(placement.place(1, 80, 300), 260);
    }

    #[tokio::test]
    async fn play_sends_paced_numbered_packets() {
        let (peer, peer_address) = peer_socket().await;
        let (session, _digits) = MediaSession::start(
            local_socket().await,
            remote_media(peer_address, Codec::Pcma),
            SessionOptions::default(),
        )
        .await
        .unwrap();
        let prompt = vec![1000i16; 5 * FRAME_LEN + 10];
        let started = Instant::now();
        session.play(prompt.into()).await.unwrap();
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(95), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(500), "{elapsed:?}");

        let mut buffer = [0u8; 2048];
        let mut packets = Vec::new();
        for _ in 0..6 {
            let (length, source) = peer.recv_from(&mut buffer).await.unwrap();
            assert_eq!(source, session.local_address());
            packets.push(buffer[..length].to_vec());
        }
        let parsed: Vec<RtpPacket> = packets
            .iter()
            .map(|p| RtpPacket::parse(p).unwrap())
            .collect();
        for (index, packet) in parsed.iter().enumerate() {
            assert_eq!(packet.payload_type, 8);
            assert_eq!(packet.payload.len(), 160);
            assert_eq!(packet.marker, index == 0);
            assert_eq!(packet.ssrc, parsed[0].ssrc);
            assert_eq!(
                packet.sequence,
                parsed[0].sequence.wrapping_add(index as u16)
            );
            assert_eq!(
                packet.timestamp,
                parsed[0].timestamp.wrapping_add(160 * index as u32)
            );
        }
        let code = G711::ALaw.encode(1000);
        assert!(parsed[0].payload.iter().all(|&byte| byte == code));
        let last = parsed[5].payload;
        assert!(last[..10].iter().all(|&byte| byte == code));
        assert!(last[10..].iter().all(|&byte| byte == 0xD5), "silence pads");
        assert_eq!(session.stats().packets_sent, 6);

        // After a pause, the stream goes on: new talk spurt, timestamp advanced by the pause.
        tokio::time::sleep(Duration::from_millis(100)).await;
        session.play(Arc::new([0; FRAME_LEN])).await.unwrap();
        let (length, _) = peer.recv_from(&mut buffer).await.unwrap();
        let next = RtpPacket::parse(&buffer[..length]).unwrap();
        assert!(next.marker);
        assert_eq!(next.ssrc, parsed[0].ssrc);
        assert_eq!(next.sequence, parsed[5].sequence.wrapping_add(1));
        let advance = next.timestamp.wrapping_sub(parsed[5].timestamp);
        assert!((800..=2400).contains(&advance), "{advance}");
        session.close().await.unwrap();
    }

    /// Fifty sessions playing at once share the one media clock: every stream arrives complete,
    /// in order, and paced (its ten packets spread over about 180 ms, not sent in a burst).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_sessions_at_once_are_each_complete_and_paced() {
        const SESSIONS: usize = 50;
        const FRAMES: usize = 10;
        let mut sessions = Vec::new();
        let mut readers = Vec::new();
        for _ in 0..SESSIONS {
            let (peer, peer_address) = peer_socket().await;
            let (session, digits) = session_towards(peer_address, SessionOptions::default()).await;
            sessions.push((session, digits));
            readers.push(tokio::spawn(async move {
                let mut buffer = [0u8; 512];
                let mut heard = Vec::new();
                for _ in 0..FRAMES {
                    let (length, _) =
                        tokio::time::timeout(Duration::from_secs(5), peer.recv_from(&mut buffer))
                            .await
                            .expect("a packet within 5 s")
                            .unwrap();
                    let packet = RtpPacket::parse(&buffer[..length]).unwrap();
                    heard.push((Instant::now(), packet.sequence, packet.marker));
                }
                heard
            }));
        }
        let prompt: Arc<[i16]> = vec![0i16; FRAMES * FRAME_LEN].into();
        let started = Instant::now();
        let plays = sessions
            .iter()
            .map(|(session, _)| session.play(prompt.clone()));
        for played in futures_util::future::join_all(plays).await {
            played.unwrap();
        }
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(170), "{elapsed:?}");
        for reader in readers {
            let heard = reader.await.unwrap();
            let (first, last) = (heard[0].0, heard[FRAMES - 1].0);
            assert!(
                last - first >= Duration::from_millis(150),
                "ten packets in {:?}",
                last - first
            );
            for (index, (_, sequence, marker)) in heard.iter().enumerate() {
                assert_eq!(*sequence, heard[0].1.wrapping_add(index as u16));
                assert_eq!(*marker, index == 0);
            }
        }
        for (session, _) in &sessions {
            assert_eq!(session.stats().packets_sent, FRAMES as u64);
            session.close().await.unwrap();
        }
    }

    #[tokio::test]
    async fn loopback_audio_survives_and_is_recorded() {
        let directory = tempfile::tempdir().unwrap();
        let caller_socket = local_socket().await;
        let callee_socket = local_socket().await;
        let caller_address = caller_socket.local_addr().unwrap();
        let callee_address = callee_socket.local_addr().unwrap();
        let caller_recording = directory.path().join("caller.wav");
        let callee_recording = directory.path().join("callee.wav");
        let (caller, _) = MediaSession::start(
            caller_socket,
            remote_media(callee_address, Codec::Pcmu),
            SessionOptions {
                recording: Some(caller_recording.clone()),
                ..SessionOptions::default()
            },
        )
        .await
        .unwrap();
        let (callee, _) = MediaSession::start(
            callee_socket,
            remote_media(caller_address, Codec::Pcmu),
            SessionOptions {
                recording: Some(callee_recording.clone()),
                ..SessionOptions::default()
            },
        )
        .await
        .unwrap();

        let prompt = chirp(1.0, 300.0, 3400.0);
        caller.play(prompt.clone().into()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            callee.close().await.unwrap(),
            Some(callee_recording.clone())
        );
        assert_eq!(
            caller.close().await.unwrap(),
            Some(caller_recording.clone())
        );
        assert_eq!(callee.close().await.unwrap(), None, "closing twice");

        let (callee_sent, callee_received) = read_recording(&callee_recording);
        assert!(
            callee_sent.iter().all(|&s| s == 0),
            "the callee sent nothing"
        );
        let correlation = best_correlation(&prompt, &callee_received);
        assert!(correlation >= 0.95, "received: correlation {correlation}");

        let (caller_sent, caller_received) = read_recording(&caller_recording);
        assert!(caller_received.iter().all(|&s| s == 0));
        let correlation = best_correlation(&prompt, &caller_sent);
        assert!(correlation >= 0.95, "sent: correlation {correlation}");
        assert_eq!(caller.stats().packets_sent, 50);
        assert_eq!(callee.stats().packets_received, 50);
    }

    #[tokio::test]
    async fn digits_arrive_once_per_press() {
        let (peer, peer_address) = peer_socket().await;
        let (session, mut digits) = session_towards(peer_address, SessionOptions::default()).await;
        let target = session.local_address();
        let mut sequence = 1;
        for (timestamp, digit) in [(1000, '1'), (3000, '#'), (5000, '1')] {
            for packet in press(sequence, timestamp, digit) {
                peer.send_to(&packet, target).await.unwrap();
                sequence += 1;
            }
        }
        assert_eq!(collect_digits(&mut digits, 3).await, "1#1");
        // Nothing more: the repeated end packets were not new presses.
        let extra = tokio::time::timeout(Duration::from_millis(200), digits.recv()).await;
        assert!(extra.is_err(), "unexpected {extra:?}");
        assert_eq!(session.stats().packets_received, 21);
        session.close().await.unwrap();
    }

    #[tokio::test]
    async fn floods_garbage_and_strangers_are_ignored() {
        let (peer, peer_address) = peer_socket().await;
        let (stranger, _) = peer_socket().await;
        let (session, mut digits) = session_towards(peer_address, SessionOptions::default()).await;
        let target = session.local_address();

        // The far end sends first, which fixes its source address.
        for packet in press(1, 1000, '5') {
            peer.send_to(&packet, target).await.unwrap();
        }
        assert_eq!(collect_digits(&mut digits, 1).await, "5");

        let stranger_press = press(100, 9000, '9');
        let oversized = vec![0x80u8; 9000];
        let mut state = 0x9E3779B97F4A7C15u64;
        for round in 0..3000u32 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let garbage: Vec<u8> = state.to_le_bytes().repeat(1 + (round % 20) as usize);
            peer.send_to(&garbage, target).await.unwrap();
            let packet = &stranger_press[round as usize % stranger_press.len()];
            stranger.send_to(packet, target).await.unwrap();
            if round % 500 == 0 {
                peer.send_to(&oversized, target).await.unwrap();
                // An RTP packet with a payload type that was not negotiated.
                let video = RtpPacket::new(96, round as u16, 0, 1, &[0; 100])
                    .to_bytes()
                    .unwrap();
                peer.send_to(&video, target).await.unwrap();
            }
            if round % 256 == 0 {
                tokio::task::yield_now().await;
            }
        }
        for packet in press(200, 20_000, '7') {
            peer.send_to(&packet, target).await.unwrap();
        }
        assert_eq!(collect_digits(&mut digits, 1).await, "7");
        let stats = session.stats();
        assert!(stats.packets_ignored > 1000, "{stats:?}");
        // The press packets, and garbage that happens to be valid RTP of a negotiated type.
        assert!(stats.packets_received >= 14, "{stats:?}");
        assert!(stats.last_received.is_some());
        session.close().await.unwrap();
    }

    /// Whether `peer` receives an RTP packet from the session within a short wait.
    async fn hears(peer: &UdpSocket) -> bool {
        let mut buffer = [0u8; 256];
        tokio::time::timeout(Duration::from_millis(300), peer.recv_from(&mut buffer))
            .await
            .is_ok()
    }

    async fn assert_no_digit(digits: &mut mpsc::Receiver<char>) {
        let extra = tokio::time::timeout(Duration::from_millis(200), digits.recv()).await;
        assert!(extra.is_err(), "unexpected {extra:?}");
    }

    /// An injector on another port of the far end's host, sending before the far end does:
    /// neither its audio nor its keys are taken, and our audio still goes where the SDP said.
    #[tokio::test]
    async fn packets_from_another_port_cannot_hijack_the_stream() {
        let (peer, peer_address) = peer_socket().await;
        let (injector, _) = peer_socket().await;
        let (session, mut digits) = session_towards(peer_address, SessionOptions::default()).await;
        let target = session.local_address();
        let audio = RtpPacket::new(0, 1, 160, 0xBAD, &[0x55; 160])
            .to_bytes()
            .unwrap();
        injector.send_to(&audio, target).await.unwrap();
        for packet in press_in(0xBAD, 10, 2000, '1') {
            injector.send_to(&packet, target).await.unwrap();
        }
        assert_no_digit(&mut digits).await;
        assert_eq!(session.remote_address(), peer_address);
        assert_eq!(session.stats().packets_received, 0);
        assert_eq!(session.stats().packets_ignored, 8);
        session.play(Arc::new([0; FRAME_LEN])).await.unwrap();
        assert!(hears(&peer).await, "the prompt goes to the SDP's address");
        assert!(!hears(&injector).await, "and not to the injector");

        // The far end's own packets are heard.
        for packet in press(20, 3000, '2') {
            peer.send_to(&packet, target).await.unwrap();
        }
        assert_eq!(collect_digits(&mut digits, 1).await, "2");
        session.close().await.unwrap();
    }

    /// Once the far end's first packet is in, another stream (SSRC) from the same address, e.g.
    /// spoofed, is ignored: its keys do not count.
    #[tokio::test]
    async fn the_first_stream_is_the_only_one_heard() {
        let (peer, peer_address) = peer_socket().await;
        let (session, mut digits) = session_towards(peer_address, SessionOptions::default()).await;
        let target = session.local_address();
        let audio = RtpPacket::new(0, 1, 160, 0xC0FFEE, &[0x55; 160])
            .to_bytes()
            .unwrap();
        peer.send_to(&audio, target).await.unwrap();
        for packet in press_in(0xBAD, 10, 2000, '9') {
            peer.send_to(&packet, target).await.unwrap();
        }
        assert_no_digit(&mut digits).await;
        for packet in press_in(0xC0FFEE, 20, 3000, '4') {
            peer.send_to(&packet, target).await.unwrap();
        }
        assert_eq!(collect_digits(&mut digits, 1).await, "4");
        assert_eq!(session.stats().packets_received, 8);
        assert_eq!(session.stats().packets_ignored, 7);
        session.close().await.unwrap();
    }

    #[tokio::test]
    async fn with_symmetric_rtp_the_far_end_may_send_from_another_port() {
        let (_negotiated, negotiated_address) = peer_socket().await;
        let (actual, actual_address) = peer_socket().await;
        let symmetric = SessionOptions {
            symmetric_rtp: true,
            ..SessionOptions::default()
        };
        let (session, mut digits) = session_towards(negotiated_address, symmetric).await;
        assert_eq!(session.remote_address(), negotiated_address);

        for packet in press(1, 1000, '3') {
            actual
                .send_to(&packet, session.local_address())
                .await
                .unwrap();
        }
        assert_eq!(collect_digits(&mut digits, 1).await, "3");
        assert_eq!(session.remote_address(), actual_address);

        // We answer where they send from.
        session.play(Arc::new([0; FRAME_LEN])).await.unwrap();
        let mut buffer = [0u8; 256];
        let received = tokio::time::timeout(Duration::from_secs(2), actual.recv_from(&mut buffer))
            .await
            .expect("RTP at the actual source")
            .unwrap();
        assert_eq!(received.1, session.local_address());

        // Once latched, another port of the same host is a stranger.
        let (other, _) = peer_socket().await;
        for packet in press_in(0xBAD, 10, 2000, '4') {
            other
                .send_to(&packet, session.local_address())
                .await
                .unwrap();
        }
        let extra = tokio::time::timeout(Duration::from_millis(200), digits.recv()).await;
        assert!(extra.is_err());

        // A new negotiation with a new address unlatches.
        let mut renegotiated = session.remote();
        renegotiated.address = other.local_addr().unwrap();
        renegotiated.codec = Codec::Pcma;
        renegotiated.payload_type = 8;
        session.update_remote(renegotiated);
        for packet in press(20, 3000, '6') {
            other
                .send_to(&packet, session.local_address())
                .await
                .unwrap();
        }
        assert_eq!(collect_digits(&mut digits, 1).await, "6");
        session.play(Arc::new([0; FRAME_LEN])).await.unwrap();
        let (length, _) = other.recv_from(&mut buffer).await.unwrap();
        assert_eq!(RtpPacket::parse(&buffer[..length]).unwrap().payload_type, 8);
        session.close().await.unwrap();
    }

    #[tokio::test]
    async fn closing_stops_a_prompt_and_dropping_it_stops_sending() {
        let (peer, peer_address) = peer_socket().await;
        let (session, _digits) = session_towards(peer_address, SessionOptions::default()).await;
        let session = Arc::new(session);

        // A dropped prompt sends nothing more.
        let ten_seconds = vec![0i16; 80_000];
        let stopped =
            tokio::time::timeout(Duration::from_millis(100), session.play(ten_seconds.into()))
                .await;
        assert!(stopped.is_err());
        let sent = session.stats().packets_sent;
        assert!((4..=7).contains(&sent), "{sent}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(session.stats().packets_sent, sent);

        // Closing ends a prompt being played elsewhere.
        let player = {
            let session = session.clone();
            tokio::spawn(async move { session.play(vec![0i16; 80_000].into()).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        assert_eq!(session.close().await.unwrap(), None);
        let result = tokio::time::timeout(Duration::from_secs(1), player)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(result, Err(MediaError::Closed)));
        assert!(started.elapsed() < Duration::from_millis(500));
        assert!(session.is_closed());
        assert!(matches!(
            session.play(Arc::new([0; 10])).await,
            Err(MediaError::Closed)
        ));
        drop(peer);
    }

    #[tokio::test]
    async fn nothing_is_sent_while_the_far_end_does_not_listen() {
        let (peer, peer_address) = peer_socket().await;
        let mut remote = remote_media(peer_address, Codec::Pcmu);
        remote.direction = Direction::SendOnly;
        let (session, _digits) =
            MediaSession::start(local_socket().await, remote, SessionOptions::default())
                .await
                .unwrap();
        session.play(Arc::new([0; 2 * FRAME_LEN])).await.unwrap();
        assert_eq!(session.stats().packets_sent, 0);
        let mut buffer = [0u8; 256];
        let nothing =
            tokio::time::timeout(Duration::from_millis(100), peer.recv_from(&mut buffer)).await;
        assert!(nothing.is_err());
        session.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_recording_that_cannot_be_created_fails_the_start() {
        let directory = tempfile::tempdir().unwrap();
        let (_, peer_address) = peer_socket().await;
        let started = MediaSession::start(
            local_socket().await,
            remote_media(peer_address, Codec::Pcmu),
            SessionOptions {
                recording: Some(directory.path().join("no").join("such.wav")),
                ..SessionOptions::default()
            },
        )
        .await;
        assert!(matches!(started, Err(MediaError::Recording { .. })));
    }
}
