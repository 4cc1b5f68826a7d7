//! One clock for every prompt being played: a thread that wakes every 20 ms and sends each
//! stream's packets that are due, instead of a timer, a task wake-up and an `await` per call and
//! per packet. A thousand calls playing prompts cost 50 wake-ups a second, not 50,000.
//!
//! A [`MediaSession`](super::MediaSession) hands the clock a [`Stream`] (its samples, shared,
//! never copied) and waits for it to finish; the clock sends with a non-blocking `sendto` on the
//! session's socket, so a full socket buffer drops a packet rather than stalling every call.
//! The sockets are registered with the async runtime for reading only, so sending wakes nothing.

use std::{
    net::SocketAddr,
    sync::{atomic::Ordering, Arc, Mutex, MutexGuard, OnceLock},
    thread::Thread,
    time::{Duration, Instant},
};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{
    recording::{self, Channel, FRAME_LEN},
    rtp::RtpPacket,
    session::{Shared, PACKET_DURATION},
};

/// A packet due this soon is sent now rather than a tick late: the clock's wake-ups jitter by a
/// fraction of a millisecond, and a stream whose packets fall right on the tick would otherwise
/// alternate between none and two.
const EARLY: Duration = Duration::from_millis(2);

/// The clock thread's view of the streams being played.
struct Clock {
    streams: Mutex<Vec<Arc<Stream>>>,
    thread: Thread,
}

static CLOCK: OnceLock<Arc<Clock>> = OnceLock::new();

fn clock() -> &'static Arc<Clock> {
    CLOCK.get_or_init(|| {
        let (ready, handed) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("outcall-rtp-clock".into())
            .spawn(move || {
                let clock = Arc::new(Clock {
                    streams: Mutex::new(Vec::new()),
                    thread: std::thread::current(),
                });
                let _ = ready.send(clock.clone());
                run(&clock);
            })
            .expect("the RTP clock thread starts");
        handed.recv().expect("the RTP clock thread answers")
    })
}

impl Clock {
    fn streams(&self) -> MutexGuard<'_, Vec<Arc<Stream>>> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn run(clock: &Clock) {
    let mut due = Vec::new();
    let mut datagram = Vec::with_capacity(recording::FRAME_LEN + 12);
    let mut payload = [0u8; FRAME_LEN];
    let mut decoded = Vec::with_capacity(FRAME_LEN);
    let mut next_tick = Instant::now() + PACKET_DURATION;
    loop {
        {
            let mut streams = clock.streams();
            streams.retain(|stream| !stream.state().finished);
            due.clear();
            due.extend(streams.iter().cloned());
        }
        let horizon = Instant::now() + EARLY;
        for stream in &due {
            stream.send_due(horizon, &mut payload, &mut datagram, &mut decoded);
        }
        due.clear();
        let now = Instant::now();
        if next_tick <= now {
            // Fell behind (a stalled host): carry on from now rather than catch up in a burst.
            let behind = now - next_tick;
            next_tick = if behind > PACKET_DURATION * 5 {
                now + PACKET_DURATION
            } else {
                next_tick
                    + PACKET_DURATION * (behind.as_nanos() / PACKET_DURATION.as_nanos() + 1) as u32
            };
        }
        if clock.streams().is_empty() {
            // Nothing to play: sleep until a stream arrives.
            std::thread::park();
            next_tick = Instant::now();
        } else {
            std::thread::park_timeout(next_tick - now);
        }
    }
}

/// Where a stream is: what [`MediaSession`](super::MediaSession) keeps between prompts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Position {
    pub(crate) ssrc: u32,
    pub(crate) sequence: u16,
    pub(crate) timestamp: u32,
}

/// One prompt being played.
pub(crate) struct Stream {
    shared: Arc<Shared>,
    samples: Arc<[i16]>,
    /// When the first packet is due.
    start: Instant,
    /// The first packet's place on the session's timeline, for the recording.
    first_position: u64,
    stop: CancellationToken,
    state: Mutex<StreamState>,
    done: Notify,
}

struct StreamState {
    position: Position,
    /// The next frame to send.
    frame: usize,
    /// Played to the end, or cancelled: the clock forgets it.
    finished: bool,
}

impl Stream {
    /// Hands `samples` to the clock, to be played from `start` on, continuing `position`.
    pub(crate) fn play(
        shared: Arc<Shared>,
        samples: Arc<[i16]>,
        start: Instant,
        first_position: u64,
        position: Position,
        stop: CancellationToken,
    ) -> Arc<Stream> {
        let stream = Arc::new(Stream {
            shared,
            samples,
            start,
            first_position,
            stop,
            state: Mutex::new(StreamState {
                position,
                frame: 0,
                finished: false,
            }),
            done: Notify::new(),
        });
        let clock = clock();
        clock.streams().push(stream.clone());
        // The first packet goes now, not at the next tick.
        clock.thread.unpark();
        stream
    }

    fn state(&self) -> MutexGuard<'_, StreamState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn frames(&self) -> usize {
        self.samples.len().div_ceil(FRAME_LEN)
    }

    /// Waits until the last packet has gone.
    pub(crate) async fn finished(&self) {
        loop {
            let notified = self.done.notified();
            if self.state().finished {
                return;
            }
            notified.await;
        }
    }

    /// Stops the stream (no packet goes after this returns) and answers where it stopped: its
    /// position in the RTP stream, and when its next packet would have been due.
    pub(crate) fn cancel(&self) -> (Position, Instant) {
        let mut state = self.state();
        state.finished = true;
        (
            state.position,
            self.start + PACKET_DURATION * state.frame as u32,
        )
    }

    /// Sends every packet due before `horizon`.
    fn send_due(
        &self,
        horizon: Instant,
        payload: &mut [u8; FRAME_LEN],
        datagram: &mut Vec<u8>,
        decoded: &mut Vec<i16>,
    ) {
        let mut state = self.state();
        if state.finished {
            return;
        }
        if self.stop.is_cancelled() {
            state.finished = true;
            drop(state);
            self.done.notify_one();
            return;
        }
        let frames = self.frames();
        while state.frame < frames && self.start + PACKET_DURATION * state.frame as u32 <= horizon {
            let index = state.frame;
            let (media, destination) = {
                let remote = self.shared.remote();
                (remote.media, remote.address)
            };
            let law = media.codec.law();
            let frame =
                &self.samples[index * FRAME_LEN..((index + 1) * FRAME_LEN).min(self.samples.len())];
            for (code, &sample) in payload.iter_mut().zip(frame) {
                *code = law.encode(sample);
            }
            payload[frame.len()..].fill(law.encode(0));
            let mut packet = RtpPacket::new(
                media.payload_type,
                state.position.sequence,
                state.position.timestamp,
                state.position.ssrc,
                payload,
            );
            packet.marker = index == 0;
            datagram.clear();
            let encoded = packet.write_to(datagram);
            if let Err(error) = &encoded {
                // Only a hand-built RemoteMedia can carry such a payload type; parse_answer refuses it.
                tracing::warn!(%error, "RTP packet not sent");
            }
            state.position.sequence = state.position.sequence.wrapping_add(1);
            state.position.timestamp = state.position.timestamp.wrapping_add(FRAME_LEN as u32);
            state.frame += 1;

            if encoded.is_ok() && media.direction.receives() {
                self.send(datagram, destination);
            }
            if let Some(mix) = &self.shared.mix {
                // What the far end hears: the samples after the codec's rounding.
                decoded.clear();
                law.decode_into(&payload[..frame.len()], decoded);
                let position = self.first_position + (index * FRAME_LEN) as u64;
                recording::lock(mix).write(Channel::Sent, position, decoded);
            }
        }
        if state.frame >= frames {
            state.finished = true;
            drop(state);
            self.done.notify_one();
        }
    }

    fn send(&self, datagram: &[u8], destination: SocketAddr) {
        // The socket is non-blocking: a full buffer drops this packet, it never waits.
        match self.shared.socket.get_ref().send_to(datagram, destination) {
            Ok(_) => {
                self.shared.packets_sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => tracing::debug!(%destination, %error, "RTP send failed"),
        }
    }
}
