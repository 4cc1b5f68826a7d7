//! The client: one background task reads the socket and routes every frame at once (replies to the
//! oldest waiting command, events into an unbounded channel), so FreeSWITCH never waits on us.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

use super::{EslError, Event, Frame, FrameCodec};

type ReplySender = oneshot::Sender<Result<Frame, EslError>>;

/// The commands waiting for a reply, in the order they were written, or why the connection is over.
#[derive(Default)]
struct Pending {
    /// A command that timed out keeps its place (its receiver dropped) so that its late reply is
    /// discarded rather than handed to the next command.
    waiting: VecDeque<ReplySender>,
    closed: Option<String>,
}

impl Pending {
    /// Ends the connection: every waiting command gets `Disconnected`.
    fn close(&mut self, reason: &str) {
        if self.closed.is_none() {
            self.closed = Some(reason.to_owned());
        }
        for waiter in self.waiting.drain(..) {
            let _ = waiter.send(Err(EslError::Disconnected(reason.to_owned())));
        }
    }
}

struct Shared {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    pending: Arc<Mutex<Pending>>,
    stop: CancellationToken,
    timeout: Duration,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A connection to FreeSWITCH's inbound event socket. Clones share the connection; it closes when
/// the last clone is dropped.
#[derive(Clone)]
pub struct EslClient {
    shared: Arc<Shared>,
}

/// The events the connection's subscription brings, in arrival order.
pub struct EventStream {
    events: mpsc::UnboundedReceiver<Result<Event, EslError>>,
    ended: Option<EslError>,
}

impl EventStream {
    /// The next event; Err once the connection is over (with why: disconnect notice, EOF, rude
    /// rejection), and the same Err on every later call.
    pub async fn next(&mut self) -> Result<Event, EslError> {
        if let Some(ended) = &self.ended {
            return Err(ended.replay());
        }
        let end = match self.events.recv().await {
            Some(Ok(event)) => return Ok(event),
            Some(Err(error)) => error,
            None => EslError::Disconnected("connection closed".to_owned()),
        };
        let replay = end.replay();
        self.ended = Some(end);
        Err(replay)
    }
}

/// Reads frames until one is complete; the handshake's reader, before the background task owns
/// the socket.
async fn read_frame(
    reader: &mut OwnedReadHalf,
    codec: &mut FrameCodec,
    buffer: &mut BytesMut,
) -> Result<Frame, EslError> {
    loop {
        if let Some(frame) = codec.decode(buffer)? {
            return Ok(frame);
        }
        if reader.read_buf(buffer).await? == 0 {
            return Err(EslError::Disconnected("end of stream".to_owned()));
        }
    }
}

fn reply_text(frame: &Frame) -> &str {
    frame.header("Reply-Text").unwrap_or_default()
}

/// A line break in a command would end it early and start another: refused.
fn single_line(text: &str) -> Result<&str, EslError> {
    if text.contains(['\n', '\r']) {
        return Err(EslError::Protocol(format!(
            "line break in command {text:?}"
        )));
    }
    Ok(text)
}

impl EslClient {
    /// Connects, authenticates, subscribes `event plain <events…>` (none: no subscription); a
    /// background task reads the socket promptly and forwards events into the returned stream
    /// (never blocks on a slow consumer). `timeout` bounds the connect as a whole and, later, each
    /// command.
    pub async fn connect(
        addr: &str,
        password: &str,
        events: &[&str],
        timeout: Duration,
    ) -> Result<(EslClient, EventStream), EslError> {
        single_line(password)?;
        for name in events {
            single_line(name)?;
        }
        tokio::time::timeout(
            timeout,
            EslClient::handshake(addr, password, events, timeout),
        )
        .await
        .map_err(|_| EslError::Timeout)?
    }

    async fn handshake(
        addr: &str,
        password: &str,
        events: &[&str],
        timeout: Duration,
    ) -> Result<(EslClient, EventStream), EslError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (mut reader, mut writer) = stream.into_split();
        let mut codec = FrameCodec::new();
        let mut buffer = BytesMut::with_capacity(64 * 1024);

        let greeting = read_frame(&mut reader, &mut codec, &mut buffer).await?;
        match greeting.content_type() {
            Some("auth/request") => {}
            Some("text/rude-rejection") => {
                return Err(EslError::Rejected(
                    greeting.body().unwrap_or_default().trim().to_owned(),
                ));
            }
            Some("text/disconnect-notice") => {
                return Err(EslError::Disconnected(
                    greeting.body().unwrap_or_default().trim().to_owned(),
                ));
            }
            other => {
                return Err(EslError::Protocol(format!(
                    "expected auth/request, got {other:?}"
                )))
            }
        }
        writer
            .write_all(format!("auth {password}\n\n").as_bytes())
            .await?;
        let reply = read_frame(&mut reader, &mut codec, &mut buffer).await?;
        if !reply_text(&reply).starts_with("+OK") {
            return Err(EslError::AuthFailed(reply_text(&reply).to_owned()));
        }
        if !events.is_empty() {
            writer
                .write_all(format!("event plain {}\n\n", events.join(" ")).as_bytes())
                .await?;
            let reply = read_frame(&mut reader, &mut codec, &mut buffer).await?;
            if !reply_text(&reply).starts_with("+OK") {
                return Err(EslError::Protocol(format!(
                    "subscription refused: {}",
                    reply_text(&reply)
                )));
            }
        }

        let pending = Arc::new(Mutex::new(Pending::default()));
        let stop = CancellationToken::new();
        let (events_sender, events) = mpsc::unbounded_channel();
        tokio::spawn(read_loop(
            reader,
            codec,
            buffer,
            pending.clone(),
            events_sender,
            stop.clone(),
        ));
        let client = EslClient {
            shared: Arc::new(Shared {
                writer: tokio::sync::Mutex::new(writer),
                pending,
                stop,
                timeout,
            }),
        };
        Ok((
            client,
            EventStream {
                events,
                ended: None,
            },
        ))
    }

    /// `api <command>`: the api/response body (as sent: `uuid_exists` answers `false` with no
    /// newline; a failing command's body starts with `-ERR`).
    pub async fn api(&self, command: &str) -> Result<String, EslError> {
        let frame = self
            .send(format!("api {}\n\n", single_line(command)?))
            .await?;
        Ok(frame.body().unwrap_or_default().to_owned())
    }

    /// `bgapi <command>` with header `Job-UUID: <job_uuid>`: Ok when the command/reply is +OK; a
    /// `-ERR` reply is [`EslError::CommandFailed`]. The job's result comes as a BACKGROUND_JOB event.
    pub async fn bgapi(&self, command: &str, job_uuid: &str) -> Result<(), EslError> {
        let text = format!(
            "bgapi {}\nJob-UUID: {}\n\n",
            single_line(command)?,
            single_line(job_uuid)?
        );
        let frame = self.send(text).await?;
        let reply = reply_text(&frame);
        if reply.starts_with("+OK") {
            Ok(())
        } else {
            Err(EslError::CommandFailed(reply.to_owned()))
        }
    }

    /// False once the connection is over (disconnect notice, end of stream, a failed write).
    pub fn is_connected(&self) -> bool {
        self.shared
            .pending
            .lock()
            .expect("pending lock")
            .closed
            .is_none()
    }

    /// Writes one command and waits for its reply. The waiter is queued under the writer's lock, so
    /// the queue's order is the wire order and FreeSWITCH's in-order replies match it.
    async fn send(&self, text: String) -> Result<Frame, EslError> {
        let shared = &self.shared;
        let deadline = tokio::time::Instant::now() + shared.timeout;
        let reply = {
            let mut writer = tokio::time::timeout_at(deadline, shared.writer.lock())
                .await
                .map_err(|_| EslError::Timeout)?;
            let (sender, reply) = oneshot::channel();
            {
                let mut pending = shared.pending.lock().expect("pending lock");
                if let Some(reason) = &pending.closed {
                    return Err(EslError::Disconnected(reason.clone()));
                }
                pending.waiting.push_back(sender);
            }
            // A write cut short leaves half a command on the wire: the connection is unusable.
            let written =
                match tokio::time::timeout_at(deadline, writer.write_all(text.as_bytes())).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(error)) => Err(EslError::Io(error)),
                    Err(_) => Err(EslError::Timeout),
                };
            if let Err(error) = written {
                shared
                    .pending
                    .lock()
                    .expect("pending lock")
                    .close(&format!("write failed: {error}"));
                shared.stop.cancel();
                return Err(error);
            }
            reply
        };
        match tokio::time::timeout_at(deadline, reply).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(EslError::Disconnected("connection closed".to_owned())),
            Err(_) => Err(EslError::Timeout),
        }
    }
}

/// Routes frames until the connection ends, then fails every waiting command and ends the stream
/// with the reason.
async fn read_loop(
    mut reader: OwnedReadHalf,
    mut codec: FrameCodec,
    mut buffer: BytesMut,
    pending: Arc<Mutex<Pending>>,
    events: mpsc::UnboundedSender<Result<Event, EslError>>,
    stop: CancellationToken,
) {
    let end = loop {
        match codec.decode(&mut buffer) {
            Ok(Some(frame)) => match route(frame, &pending, &events) {
                Ok(()) => continue,
                Err(end) => break end,
            },
            Ok(None) => {}
            Err(error) => break error,
        }
        tokio::select! {
            _ = stop.cancelled() => break EslError::Disconnected("closed by the client".to_owned()),
            read = reader.read_buf(&mut buffer) => match read {
                Ok(0) => break EslError::Disconnected("end of stream".to_owned()),
                Ok(_) => {}
                Err(error) => break EslError::Io(error),
            },
        }
    };
    tracing::debug!(%end, "event socket connection over");
    pending.lock().expect("pending lock").close(&end.reason());
    let _ = events.send(Err(end));
}

/// One frame to where it belongs; Err when it ends the connection.
fn route(
    frame: Frame,
    pending: &Mutex<Pending>,
    events: &mpsc::UnboundedSender<Result<Event, EslError>>,
) -> Result<(), EslError> {
    match frame.content_type().unwrap_or_default() {
        "command/reply" | "api/response" => {
            let waiter = pending.lock().expect("pending lock").waiting.pop_front();
            match waiter {
                // A waiter that timed out has dropped its receiver: the late reply is discarded.
                Some(waiter) => {
                    let _ = waiter.send(Ok(frame));
                }
                None => tracing::warn!(
                    reply = reply_text(&frame),
                    "event socket reply with no command waiting"
                ),
            }
        }
        "text/event-plain" | "text/event-json" => match Event::from_frame(&frame) {
            // The stream's owner may be gone; the connection still serves commands.
            Ok(event) => {
                let _ = events.send(Ok(event));
            }
            Err(error) => tracing::warn!(%error, "event socket: unreadable event skipped"),
        },
        "text/disconnect-notice" => {
            return Err(EslError::Disconnected(
                frame
                    .body()
                    .unwrap_or("disconnect notice")
                    .trim()
                    .to_owned(),
            ));
        }
        "text/rude-rejection" => {
            return Err(EslError::Rejected(
                frame.body().unwrap_or_default().trim().to_owned(),
            ));
        }
        other => tracing::debug!(content_type = other, "event socket frame ignored"),
    }
    Ok(())
}
