//! The event-socket protocol (`telephony::esl`) against real FreeSWITCH wire bytes: the captures in
//! `tests/fixtures/esl/` (see its `INDEX.txt`), decoded whole, split at every byte and a byte at a
//! time; then the client against a scripted peer on 127.0.0.1 that answers with those bytes.
//! `live_freeswitch_status_and_background_job` needs a running FreeSWITCH and is ignored.

use std::path::PathBuf;
use std::time::Duration;

use bytes::BytesMut;
use outcall::telephony::esl::{EslClient, EslError, Event, EventStream, Frame, FrameCodec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Decoder;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/esl")
}

fn capture(name: &str) -> Vec<u8> {
    let path = fixtures().join(format!("{name}.s2c.txt"));
    std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn all_captures() -> Vec<(String, Vec<u8>)> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures())
        .expect("fixtures folder")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter_map(|name| name.strip_suffix(".s2c.txt").map(str::to_owned))
        .collect();
    names.sort();
    assert_eq!(names.len(), 10, "the ten captures of INDEX.txt: {names:?}");
    names
        .into_iter()
        .map(|name| (name.clone(), capture(&name)))
        .collect()
}

/// Feeds `chunks` in order, decoding after each; every frame, and the bytes left over.
fn decode_chunks(chunks: &[&[u8]]) -> (Vec<Frame>, usize) {
    let mut codec = FrameCodec::new();
    let mut buffer = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        buffer.extend_from_slice(chunk);
        while let Some(frame) = codec.decode(&mut buffer).expect("decodes") {
            frames.push(frame);
        }
    }
    (frames, buffer.len())
}

/// The frames of a capture with the byte range each came from.
fn frames_with_ranges(bytes: &[u8]) -> Vec<(Frame, std::ops::Range<usize>)> {
    let mut codec = FrameCodec::new();
    let mut buffer = BytesMut::from(bytes);
    let mut frames = Vec::new();
    let mut start = 0;
    while let Some(frame) = codec.decode(&mut buffer).expect("decodes") {
        let end = bytes.len() - buffer.len();
        frames.push((frame, start..end));
        start = end;
    }
    assert!(buffer.is_empty(), "{} bytes left undecoded", buffer.len());
    frames
}

fn events(name: &str) -> Vec<Event> {
    frames_with_ranges(&capture(name))
        .into_iter()
        .filter(|(frame, _)| {
            frame
                .content_type()
                .is_some_and(|kind| kind.starts_with("text/event-"))
        })
        .map(|(frame, _)| Event::from_frame(&frame).expect("event"))
        .collect()
}

fn position(events: &[Event], what: impl Fn(&Event) -> bool) -> usize {
    events.iter().position(what).expect("such an event")
}

#[test]
fn every_capture_decodes_whole_to_frames_with_nothing_left() {
    for (name, bytes) in all_captures() {
        let frames = frames_with_ranges(&bytes);
        assert!(frames.len() >= 3, "{name}: {} frames", frames.len());
        for (frame, range) in &frames {
            assert!(
                frame.content_type().is_some(),
                "{name}: frame at {range:?} has no Content-Type"
            );
            if let Some(length) = frame.header("Content-Length") {
                let length: usize = length.parse().expect("length");
                assert_eq!(
                    frame.body().map(str::len),
                    Some(length),
                    "{name} at {range:?}"
                );
            }
            if frame
                .content_type()
                .is_some_and(|kind| kind.starts_with("text/event-"))
            {
                let event = Event::from_frame(frame)
                    .unwrap_or_else(|error| panic!("{name} at {range:?}: {error}"));
                assert!(
                    !event.name().is_empty(),
                    "{name} at {range:?}: event without a name"
                );
            }
        }
    }
}

/// The decoder holds no state across a finished frame (checked here: every frame decodes alike
/// with its predecessors in the buffer or not), so splitting the whole capture at byte `i` is
/// splitting the frame that holds `i` there: every byte boundary of every frame is tried, each with
/// the following frame in the second chunk so leftover bytes are proven too. (Re-decoding the whole
/// 100 KiB capture for each of its 100 000 splits would take minutes without proving more.)
#[test]
fn every_capture_split_at_every_byte_yields_the_same_frames() {
    for (name, bytes) in all_captures() {
        let frames = frames_with_ranges(&bytes);
        for (index, (frame, range)) in frames.iter().enumerate() {
            let (alone, left) = decode_chunks(&[&bytes[range.clone()]]);
            assert_eq!(
                (alone.as_slice(), left),
                (std::slice::from_ref(frame), 0),
                "{name} frame {index}"
            );
            let end = frames
                .get(index + 1)
                .map_or(range.end, |(_, next)| next.end);
            let expected: Vec<Frame> = frames[index..]
                .iter()
                .take(2)
                .map(|(frame, _)| frame.clone())
                .collect();
            for split in range.clone() {
                let (decoded, left) =
                    decode_chunks(&[&bytes[range.start..split], &bytes[split..end]]);
                assert_eq!(left, 0, "{name}: split at {split}");
                assert!(
                    decoded == expected,
                    "{name}: split at byte {split} decodes differently"
                );
            }
        }
        let (whole, _) = decode_chunks(&[&bytes]);
        for split in [0, 1, bytes.len() / 2, bytes.len() - 1, bytes.len()] {
            let (decoded, left) = decode_chunks(&[&bytes[..split], &bytes[split..]]);
            assert_eq!(left, 0);
            assert!(decoded == whole, "{name}: whole capture split at {split}");
        }
    }
}

#[test]
fn every_capture_fed_one_byte_at_a_time_yields_the_same_frames() {
    for (name, bytes) in all_captures() {
        let (whole, _) = decode_chunks(&[&bytes]);
        let single_bytes: Vec<&[u8]> = bytes.chunks(1).collect();
        let (decoded, left) = decode_chunks(&single_bytes);
        assert_eq!(left, 0, "{name}");
        assert!(
            decoded == whole,
            "{name}: a byte at a time decodes differently"
        );
    }
}

#[test]
fn crlf_lines_and_stray_blank_lines_are_tolerated() {
    let text = b"\r\nContent-Type: api/response\r\nContent-Length: 5\r\n\r\nfalse\nContent-Type: command/reply\nReply-Text: +OK\n\n";
    let (frames, left) = decode_chunks(&[text]);
    assert_eq!(left, 0);
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[0].content_type(), Some("api/response"));
    assert_eq!(frames[0].header("content-length"), Some("5"));
    assert_eq!(frames[0].body(), Some("false"));
    assert_eq!(frames[1].header("REPLY-TEXT"), Some("+OK"));
    assert_eq!(frames[1].body(), None);
    for split in 0..=text.len() {
        let (decoded, left) = decode_chunks(&[&text[..split], &text[split..]]);
        assert_eq!(
            (decoded.as_slice(), left),
            (frames.as_slice(), 0),
            "split at {split}"
        );
    }
    let single_bytes: Vec<&[u8]> = text.chunks(1).collect();
    assert_eq!(decode_chunks(&single_bytes), (frames, 0));
}

#[test]
fn oversized_header_blocks_and_bodies_are_refused() {
    let mut codec = FrameCodec::new();
    let mut endless =
        BytesMut::from(format!("Content-Type: x\nX: {}", "a".repeat(70 * 1024)).as_bytes());
    assert!(matches!(
        codec.decode(&mut endless),
        Err(EslError::Protocol(_))
    ));

    let mut codec = FrameCodec::new();
    let huge = format!(
        "Content-Type: api/response\nContent-Length: {}\n\n",
        16 * 1024 * 1024 + 1
    );
    assert!(matches!(
        codec.decode(&mut BytesMut::from(huge.as_bytes())),
        Err(EslError::Protocol(_))
    ));

    let mut codec = FrameCodec::new();
    let bad = BytesMut::from(&b"Content-Type: api/response\nContent-Length: many\n\n"[..]);
    assert!(matches!(
        codec.decode(&mut bad.clone()),
        Err(EslError::Protocol(_))
    ));

    let mut codec = FrameCodec::new();
    let no_colon = BytesMut::from(&b"Content-Type api/response\n\n"[..]);
    assert!(matches!(
        codec.decode(&mut no_colon.clone()),
        Err(EslError::Protocol(_))
    ));
}

#[test]
fn auth_and_api_capture_reads_as_freeswitch_answered() {
    let frames: Vec<Frame> = frames_with_ranges(&capture("01_auth_api"))
        .into_iter()
        .map(|(frame, _)| frame)
        .collect();
    assert_eq!(frames[0].content_type(), Some("auth/request"));
    assert_eq!(frames[1].header("Reply-Text"), Some("+OK accepted"));
    let bodies: Vec<&str> = frames
        .iter()
        .filter(|frame| frame.content_type() == Some("api/response"))
        .map(|frame| frame.body().unwrap_or_default())
        .collect();
    assert!(bodies[0].starts_with("UP "), "status: {:?}", bodies[0]);
    // uuid_exists answers without a newline, and the next frame follows at once.
    assert!(bodies.contains(&"false"), "{bodies:?}");
    assert!(
        bodies.contains(&"-ERR no_such_command Command not found!\n"),
        "{bodies:?}"
    );
    let job = frames
        .iter()
        .filter(|frame| frame.content_type() == Some("text/event-plain"))
        .map(|frame| Event::from_frame(frame).expect("event"))
        .find(|event| event.name() == "BACKGROUND_JOB")
        .expect("job event");
    assert_eq!(
        job.get("Job-UUID"),
        Some("74feec63-c6a3-4848-8ce0-c924dfcfb824")
    );
    assert!(job.body().expect("job body").starts_with("UP "));
    // URL-decoded values.
    assert_eq!(job.get("Event-Date-Local"), Some("2026-11-30 02:29:51"));
    assert_eq!(job.get("FreeSWITCH-IPv6"), Some("fd00::2"));
    let last = frames.last().expect("frames");
    assert_eq!(last.content_type(), Some("text/disconnect-notice"));
    assert!(last
        .body()
        .expect("notice")
        .starts_with("Disconnected, goodbye."));
}

#[test]
fn answered_call_events_come_in_freeswitch_order_with_the_job_after_the_answer() {
    let events = events("02_originate_answer_playback_plain");
    let answer = position(&events, |event| event.name() == "CHANNEL_ANSWER");
    let uuid = events[answer].get("Unique-ID").expect("uuid").to_owned();
    let job = position(&events, |event| event.name() == "BACKGROUND_JOB");
    assert!(answer < job);
    assert_eq!(events[job].body(), Some(format!("+OK {uuid}\n").as_str()));
    let command = events[job]
        .get("Job-Command-Arg")
        .expect("decoded originate");
    assert!(
        command.starts_with(&format!("{{origination_uuid={uuid},originate_timeout=20}}")),
        "{command}"
    );
    assert!(
        command.ends_with(" &playback(tone_stream://%(1000,0,440))"),
        "{command}"
    );
    let hangup = position(&events, |event| event.name() == "CHANNEL_HANGUP_COMPLETE");
    assert!(job < hangup);
    assert_eq!(events[hangup].get("Hangup-Cause"), Some("NORMAL_CLEARING"));
    assert_eq!(events[hangup].get("Unique-ID"), Some(uuid.as_str()));
    let created = position(&events, |event| event.name() == "CHANNEL_CREATE");
    assert!(created < answer);
}

#[test]
fn busy_hangup_comes_before_the_job_error() {
    let events = events("04_originate_user_busy_plain");
    let hangup = position(&events, |event| event.name() == "CHANNEL_HANGUP_COMPLETE");
    assert_eq!(events[hangup].get("Hangup-Cause"), Some("USER_BUSY"));
    assert_eq!(events[hangup].get("variable_sip_term_status"), Some("486"));
    let job = position(&events, |event| event.name() == "BACKGROUND_JOB");
    assert!(hangup < job, "hang-up {hangup}, job {job}");
    assert_eq!(events[job].body(), Some("-ERR USER_BUSY\n"));
    assert!(!events.iter().any(|event| event.name() == "CHANNEL_ANSWER"));
}

#[test]
fn no_answer_job_error_comes_before_the_hangup() {
    let events = events("05_originate_no_answer_plain");
    let job = position(&events, |event| event.name() == "BACKGROUND_JOB");
    assert_eq!(events[job].body(), Some("-ERR NO_ANSWER\n"));
    let hangup = position(&events, |event| event.name() == "CHANNEL_HANGUP_COMPLETE");
    assert!(job < hangup);
    assert_eq!(events[hangup].get("Hangup-Cause"), Some("NO_ANSWER"));
    assert_eq!(
        events[hangup].get("variable_sip_hangup_disposition"),
        Some("send_cancel")
    );
}

#[test]
fn dtmf_arrives_by_rtp_and_by_sip_info() {
    let events = events("03_originate_dtmf_remote_bye_plain");
    let sources: Vec<(&str, &str)> = events
        .iter()
        .filter(|event| event.name() == "DTMF")
        .map(|event| {
            (
                event.get("DTMF-Digit").unwrap_or_default(),
                event.get("DTMF-Source").unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(sources, [("1", "RTP"), ("1", "ENDPOINT")]);
    let info = position(&events, |event| event.name() == "RECV_INFO");
    assert_eq!(events[info].body(), Some("Signal=1\r\nDuration=160\r\n"));
    let hangup = position(&events, |event| event.name() == "CHANNEL_HANGUP_COMPLETE");
    assert_eq!(
        events[hangup].get("variable_sip_hangup_disposition"),
        Some("recv_bye")
    );
}

#[test]
fn group_confirm_job_succeeds_only_after_the_key() {
    let events = events("07_originate_group_confirm_plain");
    let digit = position(&events, |event| event.name() == "DTMF");
    let job = position(&events, |event| event.name() == "BACKGROUND_JOB");
    assert!(digit < job);
    assert!(events[job].body().expect("job body").starts_with("+OK "));
}

#[test]
fn json_events_read_like_plain_ones_with_the_body_from_underscore_body() {
    let json = events("06_originate_answer_playback_json");
    let answer = position(&json, |event| event.name() == "CHANNEL_ANSWER");
    let uuid = json[answer].get("Unique-ID").expect("uuid").to_owned();
    let job = position(&json, |event| event.name() == "BACKGROUND_JOB");
    assert!(answer < job);
    assert_eq!(json[job].body(), Some(format!("+OK {uuid}\n").as_str()));
    assert_eq!(json[job].get("_body"), None);
    let names: Vec<&str> = json.iter().map(Event::name).collect();
    let plain = events("02_originate_answer_playback_plain");
    let plain_names: Vec<&str> = plain.iter().map(Event::name).collect();
    let channel_events = |names: &[&str]| -> Vec<String> {
        names
            .iter()
            .filter(|name| name.starts_with("CHANNEL_"))
            .map(|name| name.to_string())
            .collect()
    };
    assert_eq!(channel_events(&names), channel_events(&plain_names));
}

#[test]
fn unreachable_gateway_ends_with_temporary_failure() {
    let events = events("09_originate_unreachable_plain");
    let job = position(&events, |event| event.name() == "BACKGROUND_JOB");
    assert_eq!(events[job].body(), Some("-ERR NORMAL_TEMPORARY_FAILURE\n"));
}

// ---- the client against a scripted peer ----

/// The raw bytes of each frame of a capture.
fn raw_frames(name: &str) -> Vec<Vec<u8>> {
    let bytes = capture(name);
    frames_with_ranges(&bytes)
        .into_iter()
        .map(|(_, range)| bytes[range].to_vec())
        .collect()
}

/// The frame of a capture whose text contains `marker`.
fn raw_frame(name: &str, marker: &str) -> Vec<u8> {
    raw_frames(name)
        .into_iter()
        .find(|frame| String::from_utf8_lossy(frame).contains(marker))
        .unwrap_or_else(|| panic!("{name}: no frame with {marker:?}"))
}

/// One connection of the scripted peer, as FreeSWITCH's side.
struct Peer {
    stream: TcpStream,
    read: Vec<u8>,
}

impl Peer {
    /// The next command the client sent, without its blank line.
    async fn command(&mut self) -> String {
        loop {
            if let Some(end) = self.read.windows(2).position(|pair| pair == b"\n\n") {
                let command = String::from_utf8(self.read[..end].to_vec()).expect("utf-8");
                self.read.drain(..end + 2);
                return command;
            }
            let mut chunk = [0u8; 4096];
            let count = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk))
                .await
                .expect("the client sends a command")
                .expect("read");
            assert!(
                count > 0,
                "client closed; had {:?}",
                String::from_utf8_lossy(&self.read)
            );
            self.read.extend_from_slice(&chunk[..count]);
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    async fn expect(&mut self, command: &str) {
        assert_eq!(self.command().await, command);
    }

    /// The greeting, the password and the subscription, answered from the 02 capture.
    async fn accept_login(&mut self, subscription: &str) {
        self.send(b"Content-Type: auth/request\n\n").await;
        self.expect("auth ClueCon").await;
        self.send(&raw_frame(
            "02_originate_answer_playback_plain",
            "+OK accepted",
        ))
        .await;
        self.expect(subscription).await;
        self.send(&raw_frame(
            "02_originate_answer_playback_plain",
            "+OK event listener enabled",
        ))
        .await;
    }
}

async fn listen() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    (listener, addr)
}

async fn accept(listener: &TcpListener) -> Peer {
    let (stream, _) = listener.accept().await.expect("accept");
    Peer {
        stream,
        read: Vec::new(),
    }
}

const TIMEOUT: Duration = Duration::from_secs(10);
const SUBSCRIBED: &[&str] = &[
    "CHANNEL_ANSWER",
    "CHANNEL_HANGUP_COMPLETE",
    "BACKGROUND_JOB",
    "DTMF",
    "CUSTOM sofia::register",
];

/// A scripted peer that accepts one connection, logs the client in subscribed to `events` and
/// then plays `script`; answers the client connected to it (`timeout` for its commands), its
/// event stream and the peer's task.
async fn logged_in<T, F, Fut>(
    events: &'static [&'static str],
    timeout: Duration,
    script: F,
) -> (EslClient, EventStream, tokio::task::JoinHandle<T>)
where
    F: FnOnce(Peer) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let (listener, addr) = listen().await;
    let subscription = format!("event plain {}", events.join(" "));
    let peer = tokio::spawn(async move {
        let mut peer = accept(&listener).await;
        peer.accept_login(&subscription).await;
        script(peer).await
    });
    let (client, stream) = EslClient::connect(&addr, "ClueCon", events, timeout)
        .await
        .expect("connect");
    (client, stream, peer)
}

/// Connects to a scripted peer that plays `script` and expects the connect to fail: answers the
/// error.
async fn refused_connect<F, Fut>(password: &str, timeout: Duration, script: F) -> EslError
where
    F: FnOnce(Peer) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (listener, addr) = listen().await;
    let peer = tokio::spawn(async move { script(accept(&listener).await).await });
    let error = EslClient::connect(&addr, password, &[], timeout)
        .await
        .err()
        .expect("the connect fails");
    peer.await.expect("peer");
    error
}

#[tokio::test]
async fn client_logs_in_answers_api_and_bgapi_in_order_and_streams_the_capture_events() {
    let (client, mut stream, peer) = logged_in(SUBSCRIBED, TIMEOUT, move |mut peer| async move {
        // Two commands written back to back: each gets its own reply, in order.
        peer.expect("api uuid_exists 00000000-0000-0000-0000-000000000000")
            .await;
        peer.expect("bgapi status\nJob-UUID: 74feec63-c6a3-4848-8ce0-c924dfcfb824")
            .await;
        peer.send(&raw_frame("01_auth_api", "\n\nfalse")).await;
        peer.send(&raw_frame("01_auth_api", "+OK Job-UUID: 74feec63"))
            .await;
        peer.expect("api status").await;
        peer.send(&raw_frame("01_auth_api", "is ready")).await;
        let events: Vec<Vec<u8>> = raw_frames("04_originate_user_busy_plain")
            .into_iter()
            .filter(|frame| String::from_utf8_lossy(frame).contains("text/event-plain"))
            .collect();
        for frame in &events {
            peer.send(frame).await;
        }
        peer
    })
    .await;
    assert!(client.is_connected());
    let other = client.clone();
    let (exists, job) = tokio::join!(
        client.api("uuid_exists 00000000-0000-0000-0000-000000000000"),
        async {
            // Written second: the peer checks the order.
            tokio::task::yield_now().await;
            other
                .bgapi("status", "74feec63-c6a3-4848-8ce0-c924dfcfb824")
                .await
        }
    );
    assert_eq!(exists.expect("api"), "false");
    job.expect("bgapi");
    assert!(client
        .api("status")
        .await
        .expect("status")
        .contains("is ready"));

    let expected: Vec<String> = events("04_originate_user_busy_plain")
        .iter()
        .map(|event| event.name().to_owned())
        .collect();
    let mut received = Vec::new();
    while received.len() < expected.len() {
        let event = tokio::time::timeout(TIMEOUT, stream.next())
            .await
            .expect("event in time")
            .expect("event");
        received.push(event);
    }
    let names: Vec<&str> = received.iter().map(Event::name).collect();
    assert_eq!(names, expected);
    let job = received
        .iter()
        .find(|event| event.name() == "BACKGROUND_JOB")
        .expect("job");
    assert_eq!(job.body(), Some("-ERR USER_BUSY\n"));
    peer.await.expect("peer");
}

#[tokio::test]
async fn wrong_password_is_auth_failed() {
    let error = refused_connect("wrong", TIMEOUT, |mut peer| async move {
        let bytes = capture("01b_auth_bad_password");
        let frames = raw_frames("01b_auth_bad_password");
        peer.send(&frames[0]).await;
        peer.expect("auth wrong").await;
        peer.send(&bytes[frames[0].len()..]).await;
    })
    .await;
    assert!(
        matches!(&error, EslError::AuthFailed(text) if text == "-ERR invalid"),
        "{error:?}"
    );
}

#[tokio::test]
async fn rude_rejection_is_rejected() {
    let error = refused_connect("ClueCon", TIMEOUT, |mut peer| async move {
        peer.send(
            b"Content-Type: text/rude-rejection\nContent-Length: 24\n\nAccess Denied, go away.\n",
        )
        .await;
    })
    .await;
    assert!(
        matches!(&error, EslError::Rejected(text) if text == "Access Denied, go away."),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_silent_peer_times_the_connect_out() {
    let error = refused_connect(
        "ClueCon",
        Duration::from_millis(200),
        |mut peer| async move {
            // No greeting; hold the socket until the client gives up.
            let mut byte = [0u8; 1];
            let _ = peer.stream.read(&mut byte).await;
        },
    )
    .await;
    assert!(matches!(error, EslError::Timeout), "{error:?}");
}

#[tokio::test]
async fn a_timed_out_command_does_not_steal_the_next_reply() {
    let (client, _stream, peer) = logged_in(
        &["BACKGROUND_JOB"],
        Duration::from_millis(500),
        move |mut peer| async move {
            peer.expect("api show channels").await;
            // The second command is written only after the first timed out; then both replies come.
            peer.expect("api uuid_exists 00000000-0000-0000-0000-000000000000")
                .await;
            peer.send(&raw_frame("01_auth_api", "0 total.")).await;
            peer.send(&raw_frame("01_auth_api", "\n\nfalse")).await;
            peer
        },
    )
    .await;
    let late = client.api("show channels").await;
    assert!(matches!(late, Err(EslError::Timeout)), "{late:?}");
    assert!(client.is_connected());
    let answer = client
        .api("uuid_exists 00000000-0000-0000-0000-000000000000")
        .await
        .expect("answered");
    assert_eq!(answer, "false");
    peer.await.expect("peer");
}

#[tokio::test]
async fn events_arrive_while_a_command_waits() {
    let (events_seen, wait_for_events) = tokio::sync::oneshot::channel::<()>();
    let (client, mut stream, peer) =
        logged_in(&["BACKGROUND_JOB"], TIMEOUT, move |mut peer| async move {
            peer.expect("api status").await;
            peer.send(&raw_frame("01_auth_api", "Event-Name: BACKGROUND_JOB"))
                .await;
            // The reply is held back until the test has the event.
            wait_for_events.await.expect("the test saw the event");
            peer.send(&raw_frame("01_auth_api", "is ready")).await;
            peer
        })
        .await;
    let command = tokio::spawn(async move { client.api("status").await });
    let event = tokio::time::timeout(TIMEOUT, stream.next())
        .await
        .expect("event in time")
        .expect("event");
    assert_eq!(event.name(), "BACKGROUND_JOB");
    assert_eq!(
        event.get("Job-UUID"),
        Some("74feec63-c6a3-4848-8ce0-c924dfcfb824")
    );
    assert!(
        !command.is_finished(),
        "the command's reply has not been sent yet"
    );
    events_seen.send(()).expect("peer waits");
    assert!(command
        .await
        .expect("task")
        .expect("status")
        .contains("is ready"));
    peer.await.expect("peer");
}

#[tokio::test]
async fn a_disconnect_notice_ends_the_stream_and_fails_pending_commands() {
    let (client, mut stream, peer) =
        logged_in(&["BACKGROUND_JOB"], TIMEOUT, move |mut peer| async move {
            peer.expect("api status").await;
            peer.send(&raw_frame("01_auth_api", "text/disconnect-notice"))
                .await;
            peer
        })
        .await;
    let pending = client.api("status").await;
    assert!(
        matches!(&pending, Err(EslError::Disconnected(text)) if text.starts_with("Disconnected, goodbye.")),
        "{pending:?}"
    );
    let end = stream.next().await;
    assert!(
        matches!(&end, Err(EslError::Disconnected(text)) if text.starts_with("Disconnected, goodbye.")),
        "{end:?}"
    );
    assert!(
        matches!(stream.next().await, Err(EslError::Disconnected(_))),
        "the end is kept"
    );
    assert!(!client.is_connected());
    let after = client.api("status").await;
    assert!(matches!(after, Err(EslError::Disconnected(_))), "{after:?}");
    peer.await.expect("peer");
}

#[tokio::test]
async fn end_of_stream_fails_pending_commands() {
    let (client, mut stream, peer) =
        logged_in(&["BACKGROUND_JOB"], TIMEOUT, move |mut peer| async move {
            peer.expect("bgapi status\nJob-UUID: j-1").await;
            drop(peer);
        })
        .await;
    let pending = client.bgapi("status", "j-1").await;
    assert!(
        matches!(pending, Err(EslError::Disconnected(_))),
        "{pending:?}"
    );
    assert!(matches!(
        stream.next().await,
        Err(EslError::Disconnected(_))
    ));
    assert!(!client.is_connected());
    peer.await.expect("peer");
}

#[tokio::test]
async fn a_refused_bgapi_and_a_line_break_in_a_command_are_errors() {
    let (client, _stream, peer) =
        logged_in(&["BACKGROUND_JOB"], TIMEOUT, move |mut peer| async move {
            peer.expect("bgapi nothing\nJob-UUID: j-2").await;
            peer.send(
                b"Content-Type: command/reply\nReply-Text: -ERR nothing Command not found!\n\n",
            )
            .await;
            peer.expect("api status").await;
            peer.send(&raw_frame("01_auth_api", "is ready")).await;
            peer
        })
        .await;
    let refused = client.bgapi("nothing", "j-2").await;
    assert!(
        matches!(&refused, Err(EslError::CommandFailed(text)) if text.starts_with("-ERR")),
        "{refused:?}"
    );
    // Never written: the peer would see "exit" as its next command instead of "api status".
    let injected = client.api("status\n\nexit").await;
    assert!(
        matches!(injected, Err(EslError::Protocol(_))),
        "{injected:?}"
    );
    let injected = client.bgapi("status", "j\nexit").await;
    assert!(
        matches!(injected, Err(EslError::Protocol(_))),
        "{injected:?}"
    );
    assert!(client
        .api("status")
        .await
        .expect("status")
        .contains("is ready"));
    peer.await.expect("peer");
}

#[tokio::test]
async fn an_unread_event_stream_never_holds_up_replies() {
    let sent: Vec<Vec<u8>> = [
        "02_originate_answer_playback_plain",
        "03_originate_dtmf_remote_bye_plain",
    ]
    .iter()
    .flat_map(|name| raw_frames(name))
    .filter(|frame| String::from_utf8_lossy(frame).contains("text/event-plain"))
    .collect();
    let count = sent.len();
    let (client, mut stream, peer) = logged_in(&["ALL"], TIMEOUT, move |mut peer| async move {
        // Some 200 KiB of events nobody reads yet, then the reply to a command.
        peer.expect("api status").await;
        for frame in &sent {
            peer.send(frame).await;
        }
        peer.send(&raw_frame("01_auth_api", "is ready")).await;
        peer
    })
    .await;
    assert!(client
        .api("status")
        .await
        .expect("status")
        .contains("is ready"));
    for _ in 0..count {
        stream.next().await.expect("every event kept");
    }
    peer.await.expect("peer");
}

#[tokio::test]
async fn dropping_the_last_client_closes_the_connection() {
    let (client, mut stream, peer) =
        logged_in(&["BACKGROUND_JOB"], TIMEOUT, move |mut peer| async move {
            let mut rest = Vec::new();
            tokio::time::timeout(TIMEOUT, peer.stream.read_to_end(&mut rest))
                .await
                .expect("the client closes")
                .expect("read");
            rest
        })
        .await;
    let clone = client.clone();
    drop(client);
    assert!(clone.is_connected(), "a clone keeps it open");
    drop(clone);
    assert_eq!(peer.await.expect("peer"), b"");
    assert!(matches!(
        stream.next().await,
        Err(EslError::Disconnected(_))
    ));
}

/// A sanity run against a real FreeSWITCH (`/work/shared/freeswitch/start.sh`, or
/// `OUTCALL_TEST_FREESWITCH=host:port:password`): `cargo nextest run --test esl_protocol --run-ignored only`.
#[tokio::test]
#[ignore = "needs a running FreeSWITCH"]
async fn live_freeswitch_status_and_background_job() {
    let target = std::env::var("OUTCALL_TEST_FREESWITCH")
        .unwrap_or_else(|_| "127.0.0.1:8021:ClueCon".to_owned());
    let (addr, password) = target.rsplit_once(':').expect("host:port:password");
    let (client, mut stream) = EslClient::connect(addr, password, &["BACKGROUND_JOB"], TIMEOUT)
        .await
        .expect("connect");
    assert!(client
        .api("status")
        .await
        .expect("status")
        .starts_with("UP "));
    assert_eq!(
        client
            .api("uuid_exists 00000000-0000-0000-0000-000000000000")
            .await
            .expect("api"),
        "false"
    );
    let job_uuid = uuid::Uuid::new_v4().to_string();
    client.bgapi("version", &job_uuid).await.expect("bgapi");
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let event = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("job in time")
            .expect("event");
        // Other clients' jobs reach every subscriber: ours is told by its Job-UUID.
        if event.name() == "BACKGROUND_JOB" && event.get("Job-UUID") == Some(job_uuid.as_str()) {
            assert!(
                event.body().expect("body").contains("FreeSWITCH Version"),
                "{event:?}"
            );
            break;
        }
    }
    let wrong = EslClient::connect(addr, "not-the-password", &[], TIMEOUT)
        .await
        .err()
        .expect("refused");
    assert!(matches!(wrong, EslError::AuthFailed(_)), "{wrong:?}");
}
