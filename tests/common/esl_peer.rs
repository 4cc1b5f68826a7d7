//! A scripted FreeSWITCH inbound event socket for the tests (CI has no FreeSWITCH): a tokio TCP
//! server on 127.0.0.1:0 that speaks the real wire text recorded in `tests/fixtures/esl/`
//! (copies of `../shared/freeswitch/captures/`).
//!
//! What it answers:
//! - `auth/request` on connect; `auth <password>` -> `+OK accepted`, a wrong one -> `-ERR invalid`,
//!   a disconnect notice and the socket closed (capture 01b);
//! - `event plain <names…>` (accumulates, `ALL` too), `noevents`, `exit` (`+OK bye`, notice, close);
//!   `event json` is refused (`-ERR`): the scenarios are plain captures;
//! - `api status` (capture 01's text, "per Sec out of max N" set by `PeerOptions`), `api version`,
//!   `api uuid_exists <uuid>` (`true` / `false`, no newline, by the peer's channel table),
//!   `api uuid_kill <uuid> [cause]` (`+OK\n` and the channel's hangup events with that cause, or
//!   `-ERR No such channel!\n`), `api show channels [as json]` (made up: no capture has a live
//!   channel listed); anything else `-ERR <cmd> Command not found!\n`;
//! - `bgapi originate …` -> `+OK Job-UUID: …`, then a scripted call (below); any other `bgapi`
//!   -> the reply and a BACKGROUND_JOB with what `api` would answer.
//!
//! Every command text received is recorded (`commands`, `originates`); each originate is parsed
//! the way FreeSWITCH 1.11.2 parses it (`Originate::parse`: the command line split on blanks, the
//! `{…}` block on commas, each variable on `=`, the legs on `|` and `,` with their own `[…]`
//! variables, with quotes and `\` escapes at every level; `:_:`
//! anywhere, or a backslash that FreeSWITCH's scanner would run past, make it an error), so tests
//! can check that a hostile task field comes back exactly. Written from reading FreeSWITCH's
//! sources (nothing copied); checked against libfreeswitch's own functions on 20,000 random
//! commands (outside the suite: CI has no libfreeswitch).
//!
//! The scripted callee is chosen by the last digit of the dialed number (the last `/` segment of
//! the dial string made of digits, before any `@`):
//!
//! | last digit | capture | what happens |
//! |---|---|---|
//! | 2, and 0, 1, 6 | 02 | answers, FreeSWITCH plays the prompt and hangs up: NORMAL_CLEARING |
//! | 3 | 03 | answers, callee sends `1` by RFC 2833 and `1` by SIP INFO, then BYE: NORMAL_CLEARING, 200 |
//! | 4 | 04 | busy: HANGUP_COMPLETE USER_BUSY (486) *before* the job's `-ERR USER_BUSY` |
//! | 5 | 05 | rings, no answer: the job's `-ERR NO_ANSWER` *before* HANGUP_COMPLETE NO_ANSWER |
//! | 7 | 07 | group confirm: answers, callee presses `1`, only then the job's `+OK`; callee BYE |
//! | 8 | 08 | answers and parks: alive until `uuid_kill` or `EslPeer::hang_up` |
//!
//! With `execute_on_answer=record_session <file>` in the originate, a RECORD_START (made from
//! the call's CHANNEL_ANSWER, with `Record-File-Path`) follows the answer, as FreeSWITCH fires it;
//! no capture records one.
//! | 9 | 09 | unreachable gateway: `-ERR NORMAL_TEMPORARY_FAILURE` (503) |
//!
//! `Scenario::outcome` reads what a scenario's capture says (cause, SIP code, answered, digits):
//! tests compare outcall's results with it, never with copies of outcall's output.
//!
//! Replay: the capture's event frames after the originate, in their real order, with the
//! capture's channel uuid and Job-UUID replaced by this originate's (`Content-Length`s recomputed,
//! outer and inner), timestamps (epoch µs and s) moved to now on the compressed time line, and
//! the capture's delays multiplied by `PeerOptions::time_scale` (each gap at most `max_gap`).
//! Events go to every authenticated connection subscribed to their name, as FreeSWITCH does;
//! with no connection they are lost, and the call goes on.
//!
//! Controls for fault tests: `drop_connections` (EOF on every connection, calls stay alive),
//! `stop_listening` / `start_listening` (connections refused meanwhile), `set_rude`
//! (`text/rude-rejection` then close on connect), `set_password`, `hang_up` (the callee hangs up
//! a live call now); figures: `originate_count`, `max_live_channels`, `live_channels`.
#![allow(dead_code)]

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    sync::{mpsc, watch},
    task::JoinHandle,
    time::Instant,
};

/// The folder of the wire captures.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/esl")
}

const DISCONNECT_NOTICE: &str = "Content-Type: text/disconnect-notice\nContent-Length: 67\n\nDisconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n";
const RUDE_REJECTION: &str =
    "Content-Type: text/rude-rejection\nContent-Length: 24\n\nAccess Denied, go away.\n";

// ---------------------------------------------------------------------------------------------
// Captures

/// One frame or command of a capture, at its time since the connection opened.
#[derive(Clone, Debug)]
pub enum Step {
    /// Bytes FreeSWITCH sent (one frame).
    Sent { at: Duration, bytes: Vec<u8> },
    /// A command the client sent.
    Received { at: Duration, text: String },
}

/// A capture's conversation (`NAME.txt`), in wire order.
pub struct Capture {
    pub name: String,
    pub steps: Vec<Step>,
}

/// The capture `name` (e.g. `"02_originate_answer_playback_plain"`), read once per test binary.
pub fn capture(name: &str) -> &'static Capture {
    static CAPTURES: OnceLock<Mutex<HashMap<String, &'static Capture>>> = OnceLock::new();
    let mut captures = CAPTURES.get_or_init(Default::default).lock().unwrap();
    captures.entry(name.to_owned()).or_insert_with(|| {
        let path = fixtures_dir().join(format!("{name}.txt"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Box::leak(Box::new(Capture {
            name: name.to_owned(),
            steps: parse_capture(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        }))
    })
}

/// Parses `NAME.txt`: marker lines `#### S->C +0.544s (1769 bytes)` each followed by exactly that
/// many bytes (plus a `\n` when the frame does not end in one), and `#### NOTE` lines.
pub fn parse_capture(bytes: &[u8]) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let end = bytes[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|i| at + i)
            .ok_or("a marker line without its newline")?;
        let line = std::str::from_utf8(&bytes[at..end]).map_err(|e| e.to_string())?;
        at = end + 1;
        if line.starts_with("#### NOTE") {
            continue;
        }
        let rest = line
            .strip_prefix("#### ")
            .ok_or_else(|| format!("not a marker line: {line:?}"))?;
        let mut words = rest.split(' ');
        let direction = words.next().unwrap_or_default();
        let time = words
            .next()
            .and_then(|w| w.strip_prefix('+')?.strip_suffix('s')?.parse::<f64>().ok())
            .ok_or_else(|| format!("no time in {line:?}"))?;
        let length: usize = words
            .next()
            .and_then(|w| w.strip_prefix('(')?.parse().ok())
            .ok_or_else(|| format!("no byte count in {line:?}"))?;
        let frame = bytes
            .get(at..at + length)
            .ok_or_else(|| format!("{line:?}: the capture ends early"))?
            .to_vec();
        at += length;
        if frame.last() != Some(&b'\n') {
            if bytes.get(at) != Some(&b'\n') {
                return Err(format!("{line:?}: no newline inserted after the frame"));
            }
            at += 1;
        }
        let at_time = Duration::from_secs_f64(time);
        match direction {
            "S->C" => steps.push(Step::Sent {
                at: at_time,
                bytes: frame,
            }),
            "C->S" => steps.push(Step::Received {
                at: at_time,
                text: String::from_utf8(frame).map_err(|e| e.to_string())?,
            }),
            other => return Err(format!("unknown direction {other:?}")),
        }
    }
    Ok(steps)
}

/// The header block and body of a frame (split at the first blank line).
fn split_frame(bytes: &[u8]) -> (&str, &[u8]) {
    let blank = bytes
        .windows(2)
        .position(|w| w == b"\n\n")
        .unwrap_or(bytes.len());
    let head = std::str::from_utf8(&bytes[..blank]).unwrap_or_default();
    let body = bytes.get(blank + 2..).unwrap_or_default();
    (head, body)
}

fn header_in<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (n, v) = line.split_once(": ")?;
        n.eq_ignore_ascii_case(name).then_some(v)
    })
}

/// A frame's `Content-Type`.
pub fn content_type(frame: &[u8]) -> Option<&str> {
    header_in(split_frame(frame).0, "Content-Type")
}

/// A `text/event-plain` frame read as the tests need it: headers (URL-decoded) and body.
#[derive(Clone, Debug)]
pub struct PlainEvent {
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
}

impl PlainEvent {
    pub fn parse(frame: &[u8]) -> Option<PlainEvent> {
        if content_type(frame) != Some("text/event-plain") {
            return None;
        }
        let (_, event) = split_frame(frame);
        let (head, body) = split_frame(event);
        let headers = head
            .lines()
            .filter_map(|line| {
                let (n, v) = line.split_once(": ")?;
                Some((n.to_owned(), url_decode(v)))
            })
            .collect();
        let body = (!body.is_empty()).then(|| String::from_utf8_lossy(body).into_owned());
        Some(PlainEvent { headers, body })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn name(&self) -> &str {
        self.get("Event-Name").unwrap_or_default()
    }
}

/// `%XX` decoding of FreeSWITCH's plain event values (`+` stays `+`).
pub fn url_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 3 <= bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("-");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `%XX` encoding the way FreeSWITCH writes plain event values: control and non-ASCII bytes
/// and its "unsafe" set (blank, `#%&+:;<=>?@[\]^\`{|}"`) are encoded, the rest kept.
pub fn url_encode(value: &str) -> String {
    const UNSAFE: &[u8] = b"\r\n #%&+:;<=>?@[\\]^`{|}\"";
    value
        .bytes()
        .map(|b| {
            if !(b' '..=b'~').contains(&b) || UNSAFE.contains(&b) {
                format!("%{b:02X}")
            } else {
                (b as char).to_string()
            }
        })
        .collect()
}

/// Rewrites a `text/event-plain` frame: `header` may give a header a new (raw, encoded) value,
/// `body` makes the event's new body from the old; both `Content-Length`s are recomputed. Other
/// frames are returned as they are.
fn rewrite_event(
    frame: &[u8],
    mut header: impl FnMut(&str, &str) -> Option<String>,
    body: impl FnOnce(&[u8]) -> Vec<u8>,
) -> Vec<u8> {
    if content_type(frame) != Some("text/event-plain") {
        return frame.to_vec();
    }
    let (outer_head, event) = split_frame(frame);
    let (event_head, event_body) = split_frame(event);
    let new_body = body(event_body);
    let mut text = String::new();
    for line in event_head.lines() {
        match line.split_once(": ") {
            Some(("Content-Length", _)) if !new_body.is_empty() => {
                text.push_str(&format!("Content-Length: {}\n", new_body.len()));
            }
            Some((name, value)) => match header(name, value) {
                Some(new) => text.push_str(&format!("{name}: {new}\n")),
                None => {
                    text.push_str(line);
                    text.push('\n');
                }
            },
            None => {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    let mut event = text.into_bytes();
    event.push(b'\n');
    event.extend_from_slice(&new_body);
    let mut out = String::new();
    for line in outer_head.lines() {
        if line.starts_with("Content-Length:") {
            out.push_str(&format!("Content-Length: {}\n", event.len()));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push('\n');
    let mut out = out.into_bytes();
    out.extend_from_slice(&event);
    out
}

// ---------------------------------------------------------------------------------------------
// Scenarios

/// What the scripted callee does, picked by the dialed number's last digit (see the module's
/// table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scenario {
    AnswerPlayback,
    DtmfCalleeBye,
    Busy,
    NoAnswer,
    GroupConfirm,
    Park,
    Unreachable,
}

impl Scenario {
    pub const ALL: [Scenario; 7] = [
        Scenario::AnswerPlayback,
        Scenario::DtmfCalleeBye,
        Scenario::Busy,
        Scenario::NoAnswer,
        Scenario::GroupConfirm,
        Scenario::Park,
        Scenario::Unreachable,
    ];

    /// The scenario of a dialed number (its last digit).
    pub fn for_number(number: &str) -> Scenario {
        match number.chars().last() {
            Some('3') => Scenario::DtmfCalleeBye,
            Some('4') => Scenario::Busy,
            Some('5') => Scenario::NoAnswer,
            Some('7') => Scenario::GroupConfirm,
            Some('8') => Scenario::Park,
            Some('9') => Scenario::Unreachable,
            _ => Scenario::AnswerPlayback,
        }
    }

    /// The last digit that picks this scenario.
    pub fn digit(self) -> char {
        match self {
            Scenario::AnswerPlayback => '2',
            Scenario::DtmfCalleeBye => '3',
            Scenario::Busy => '4',
            Scenario::NoAnswer => '5',
            Scenario::GroupConfirm => '7',
            Scenario::Park => '8',
            Scenario::Unreachable => '9',
        }
    }

    pub fn capture_name(self) -> &'static str {
        match self {
            Scenario::AnswerPlayback => "02_originate_answer_playback_plain",
            Scenario::DtmfCalleeBye => "03_originate_dtmf_remote_bye_plain",
            Scenario::Busy => "04_originate_user_busy_plain",
            Scenario::NoAnswer => "05_originate_no_answer_plain",
            Scenario::GroupConfirm => "07_originate_group_confirm_plain",
            Scenario::Park => "08_originate_park_uuid_kill_plain",
            Scenario::Unreachable => "09_originate_unreachable_plain",
        }
    }

    /// The capture's call: its originate and the event frames that followed it.
    pub fn script(self) -> &'static Script {
        static SCRIPTS: OnceLock<Mutex<HashMap<Scenario, &'static Script>>> = OnceLock::new();
        let mut scripts = SCRIPTS.get_or_init(Default::default).lock().unwrap();
        scripts.entry(self).or_insert_with(|| {
            Box::leak(Box::new(Script::from_capture(capture(self.capture_name()))))
        })
    }

    /// What the capture says of the call (by its CHANNEL_HANGUP_COMPLETE, CHANNEL_ANSWER, DTMF and
    /// BACKGROUND_JOB events); `None` for `Park`, which ends only when hung up.
    pub fn outcome(self) -> Option<CaptureOutcome> {
        if self == Scenario::Park {
            return None;
        }
        Some(self.script().outcome())
    }
}

/// What a capture says of its call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureOutcome {
    /// `Hangup-Cause` of CHANNEL_HANGUP_COMPLETE.
    pub cause: String,
    /// The call's final SIP code: `variable_sip_term_status`, else (a CANCEL sent: no final
    /// response of the callee's own) `variable_sip_invite_failure_status`, e.g. 487, else 200
    /// when the (SIP) channel was answered and FreeSWITCH hung up itself (capture 02).
    pub sip_code: Option<String>,
    /// A CHANNEL_ANSWER was sent.
    pub answered: bool,
    /// `DTMF-Digit` of every DTMF event, in order.
    pub dtmf: String,
    /// The BACKGROUND_JOB's body, trimmed (`+OK <uuid>` / `-ERR <cause>`).
    pub job: String,
    /// `variable_billmsec` of CHANNEL_HANGUP_COMPLETE.
    pub billmsec: Option<u64>,
}

/// A capture's call, ready to replay.
pub struct Script {
    pub capture: &'static str,
    /// The capture's `origination_uuid` and Job-UUID (replaced on replay).
    pub channel_uuid: String,
    pub job_uuid: String,
    /// The capture's originate command, as sent.
    pub originate: String,
    /// Event frames after the originate's reply, at their time after the originate.
    pub frames: Vec<(Duration, Vec<u8>)>,
    /// The capture's wall-clock time of the originate, epoch µs (from the events' timestamps).
    pub originate_epoch_us: i64,
}

impl Script {
    fn from_capture(capture: &'static Capture) -> Script {
        let (index, at, text) = capture
            .steps
            .iter()
            .enumerate()
            .find_map(|(i, step)| match step {
                Step::Received { at, text } if text.starts_with("bgapi originate ") => {
                    Some((i, *at, text.clone()))
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("{}: no originate", capture.name));
        let frames = events_after(capture, index, at);
        let (head, _) = split_frame(text.as_bytes());
        let job_uuid = header_in(head, "Job-UUID").expect("a Job-UUID").to_owned();
        let command = head.lines().next().unwrap().to_owned();
        let parsed = Originate::parse(command.strip_prefix("bgapi originate ").unwrap());
        let channel_uuid = parsed
            .var("origination_uuid")
            .expect("an origination_uuid")
            .to_owned();
        let first = frames
            .iter()
            .find_map(|(offset, frame)| {
                let event = PlainEvent::parse(frame)?;
                let stamp: i64 = event.get("Event-Date-Timestamp")?.parse().ok()?;
                Some(stamp - offset.as_micros() as i64)
            })
            .expect("an event with a timestamp");
        Script {
            capture: Box::leak(capture.name.clone().into_boxed_str()),
            channel_uuid,
            job_uuid,
            originate: command,
            frames,
            originate_epoch_us: first,
        }
    }

    /// The events of this call (those naming its channel or job).
    pub fn events(&self) -> Vec<PlainEvent> {
        self.frames
            .iter()
            .filter_map(|(_, frame)| PlainEvent::parse(frame))
            .filter(|e| {
                e.get("Unique-ID") == Some(&self.channel_uuid)
                    || e.get("Job-UUID") == Some(&self.job_uuid)
            })
            .collect()
    }

    pub fn outcome(&self) -> CaptureOutcome {
        let events = self.events();
        let complete = events
            .iter()
            .find(|e| e.name() == "CHANNEL_HANGUP_COMPLETE")
            .unwrap_or_else(|| panic!("{}: no CHANNEL_HANGUP_COMPLETE", self.capture));
        let job = events
            .iter()
            .find(|e| e.name() == "BACKGROUND_JOB")
            .unwrap_or_else(|| panic!("{}: no BACKGROUND_JOB", self.capture));
        let answered = events.iter().any(|e| e.name() == "CHANNEL_ANSWER");
        CaptureOutcome {
            cause: complete.get("Hangup-Cause").unwrap().to_owned(),
            sip_code: complete
                .get("variable_sip_term_status")
                .or_else(|| complete.get("variable_sip_invite_failure_status"))
                .or(answered.then_some("200"))
                .map(str::to_owned),
            answered,
            dtmf: events
                .iter()
                .filter(|e| e.name() == "DTMF")
                .filter_map(|e| e.get("DTMF-Digit"))
                .collect(),
            job: job.body.clone().unwrap_or_default().trim().to_owned(),
            billmsec: complete
                .get("variable_billmsec")
                .and_then(|v| v.parse().ok()),
        }
    }
}

/// The event frames FreeSWITCH sent after the command at `index` (sent at `at`), up to the next
/// command; replies to commands are left out.
fn events_after(capture: &Capture, index: usize, at: Duration) -> Vec<(Duration, Vec<u8>)> {
    capture.steps[index + 1..]
        .iter()
        .map_while(|step| match step {
            Step::Sent { at: sent, bytes } => Some((*sent, bytes)),
            Step::Received { .. } => None,
        })
        .filter(|(_, bytes)| content_type(bytes) == Some("text/event-plain"))
        .map(|(sent, bytes)| (sent.saturating_sub(at), bytes.clone()))
        .collect()
}

/// Capture 08's events after `api uuid_kill`: a parked call hung up (NORMAL_CLEARING).
fn kill_script() -> &'static (Script, Later) {
    static KILL: OnceLock<(Script, Later)> = OnceLock::new();
    KILL.get_or_init(|| {
        let capture = capture(Scenario::Park.capture_name());
        let (index, at) = capture
            .steps
            .iter()
            .enumerate()
            .find_map(|(i, step)| match step {
                Step::Received { at, text } if text.starts_with("api uuid_kill ") => Some((i, *at)),
                _ => None,
            })
            .expect("capture 08 kills its call");
        (
            Script::from_capture(capture),
            events_after(capture, index, at),
        )
    })
}

/// Capture 04's BACKGROUND_JOB frame (`-ERR USER_BUSY`), the template of synthesized job results.
fn job_template() -> &'static (Script, Vec<u8>) {
    static JOB: OnceLock<(Script, Vec<u8>)> = OnceLock::new();
    JOB.get_or_init(|| {
        let script = Script::from_capture(capture(Scenario::Busy.capture_name()));
        let frame = script
            .frames
            .iter()
            .find(|(_, f)| PlainEvent::parse(f).is_some_and(|e| e.name() == "BACKGROUND_JOB"))
            .expect("capture 04 has its job's result")
            .1
            .clone();
        (script, frame)
    })
}

// ---------------------------------------------------------------------------------------------
// Originate parsing, the way FreeSWITCH 1.11.2 reads it

/// One field split the way FreeSWITCH's `switch_separate_string` does it: `delim` outside single
/// quotes separates (a blank `delim` also swallows runs of blanks), `\` keeps the next character;
/// then each piece is cleaned: quotes dropped, `\'`, `\"`, `\\`, `\<delim>` and `\n \r \t \s`
/// unescaped, blanks around it trimmed. At most `limit` pieces (the last takes the rest).
pub fn separate(text: &str, delim: char, limit: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut pieces: Vec<(usize, usize)> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let mut quoted = false;
    if delim == ' ' {
        // Blank delimiter: runs of blanks separate, a quote always toggles.
        let mut piece_start: Option<usize> = None;
        while i < chars.len() {
            if piece_start.is_none() {
                if pieces.len() == limit {
                    break;
                }
                piece_start = Some(i);
                while i < chars.len() && chars[i] == ' ' {
                    i += 1;
                }
                continue;
            }
            match chars[i] {
                '\\' => i += 1,
                '\'' => quoted = !quoted,
                ' ' if !quoted && pieces.len() + 1 < limit => {
                    pieces.push((piece_start.take().unwrap(), i));
                    i += 1;
                    while i < chars.len() && chars[i] == ' ' {
                        i += 1;
                    }
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
        if let Some(s) = piece_start {
            pieces.push((s, chars.len()));
        }
    } else {
        if chars.is_empty() {
            return Vec::new();
        }
        while i < chars.len() {
            match chars[i] {
                '\\' => i += 1,
                '\'' if quoted || chars[i + 1..].contains(&'\'') => quoted = !quoted,
                c if c == delim && !quoted && pieces.len() + 1 < limit => {
                    pieces.push((start, i));
                    start = i + 1;
                    if start == chars.len() {
                        // FreeSWITCH starts no piece after a trailing delimiter.
                        start = usize::MAX;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        if start != usize::MAX {
            pieces.push((start, chars.len()));
        }
    }
    let cleanup_delim = if delim == ' ' { None } else { Some(delim) };
    pieces
        .into_iter()
        .map(|(s, e)| cleanup(&chars[s.min(e)..e], cleanup_delim))
        .collect()
}

/// FreeSWITCH's clean-up of one separated piece (see `separate`).
fn cleanup(chars: &[char], delim: Option<char>) -> String {
    let mut i = 0;
    while i < chars.len() && chars[i] == ' ' {
        i += 1;
    }
    let mut out: Vec<char> = Vec::new();
    let mut end = 0;
    let mut quoted = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' && i + 1 < chars.len() {
            let next = chars[i + 1];
            let unescaped = match next {
                'n' => Some('\n'),
                'r' => Some('\r'),
                't' => Some('\t'),
                's' => Some(' '),
                '\'' | '"' | '\\' => Some(next),
                n if Some(n) == delim => Some(n),
                _ => None,
            };
            if let Some(u) = unescaped {
                out.push(u);
                end = out.len();
                i += 2;
                continue;
            }
        }
        if c == '\'' && (quoted || chars[i + 1..].contains(&'\'')) {
            quoted = !quoted;
            if quoted {
                end = out.len();
            }
        } else {
            out.push(c);
            if c != ' ' || quoted {
                end = out.len();
            }
        }
        i += 1;
    }
    out.truncate(end);
    out.into_iter().collect()
}

/// The end of a `{…}` block starting at `text[0]` (nested braces counted, nothing escaped), as
/// FreeSWITCH's `switch_find_end_paren` finds it.
fn end_of_block(text: &str, open: char, close: char) -> Option<usize> {
    let mut depth = 0;
    for (i, c) in text.char_indices() {
        if c == open && (i == 0 || open != close) {
            depth += 1;
        } else if c == close {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        }
    }
    None
}

/// What FreeSWITCH puts in place of a comma inside a leg's `[…]` before it splits the legs at
/// commas: one kind inside single quotes (turned back into a comma), one outside (the variables'
/// separator).
const QUOTED_COMMA: char = '\u{2}';
const UNQUOTED_COMMA: char = '\u{1}';

/// Marks the commas inside `[…]` blocks of one `|` alternative (not those after a `\`), as
/// FreeSWITCH does before splitting it into legs.
fn mark_leg_commas(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = chars.clone();
    let mut end: Option<usize> = None;
    let mut quoted = false;
    let mut i = 0;
    while i < chars.len() {
        if end.is_none() && chars[i] == '[' {
            let rest: String = chars[i..].iter().collect();
            end = end_of_block(&rest, '[', ']').map(|e| i + rest[..e].chars().count());
            quoted = false;
        }
        if chars[i] == '\'' {
            quoted = !quoted;
        }
        if let Some(e) = end {
            if i < e && chars[i] == ',' && i > 0 && chars[i - 1] != '\\' {
                out[i] = if quoted { QUOTED_COMMA } else { UNQUOTED_COMMA };
            }
            if i == e {
                end = None;
            }
        }
        i += 1;
    }
    out.into_iter().collect()
}

/// An `originate` command as FreeSWITCH would read it.
#[derive(Clone, Debug, Default)]
pub struct Originate {
    /// The command's arguments as received (after `originate `).
    pub raw: String,
    /// The Job-UUID header of the `bgapi`.
    pub job_uuid: String,
    /// The `{…}` variables, in order.
    pub variables: Vec<(String, String)>,
    /// The dial string after the `{…}` block.
    pub dial_string: String,
    /// The `[…]` variables of the leg(s), in order.
    pub leg_variables: Vec<(String, String)>,
    /// The dial string's legs (split on `|` and `,`, their `[…]` taken off): one for a
    /// well-formed command.
    pub legs: Vec<String>,
    /// The dialed number (the last all-digit `/` segment of the dial string, before any `@`).
    pub number: Option<String>,
    /// The second argument: `&app(arg)` or an extension.
    pub exten: String,
    /// `&app(arg)` split as FreeSWITCH does (name up to `(`, argument up to the first `)`).
    pub application: Option<(String, Option<String>)>,
    /// The dialplan, context, caller id name and number, timeout arguments (when given).
    pub dialplan: Option<String>,
    pub context: Option<String>,
    pub cid_name: Option<String>,
    pub cid_num: Option<String>,
    pub timeout: Option<String>,
    /// Why FreeSWITCH would refuse it (usage error, no block end), if it would.
    pub error: Option<String>,
}

impl Originate {
    /// Parses the arguments of `originate` (the text after `originate `).
    pub fn parse(arguments: &str) -> Originate {
        let mut originate = Originate {
            raw: arguments.to_owned(),
            ..Default::default()
        };
        let argv = separate(arguments, ' ', 10);
        if argv.len() < 2 || argv.len() > 7 {
            originate.error = Some(format!("-USAGE: {} arguments", argv.len()));
            return originate;
        }
        let optional = |i: usize| {
            argv.get(i)
                .filter(|a| !a.eq_ignore_ascii_case("undef"))
                .cloned()
        };
        originate.exten = argv[1].clone();
        originate.dialplan = optional(2);
        originate.context = optional(3);
        originate.cid_name = optional(4);
        originate.cid_num = optional(5);
        originate.timeout = optional(6);
        if let Some(app) = originate.exten.strip_prefix('&').filter(|a| !a.is_empty()) {
            let app = app.split(')').next().unwrap_or_default();
            originate.application = Some(match app.split_once('(') {
                Some((name, arg)) => (name.to_owned(), Some(arg.to_owned())),
                None => (app.to_owned(), None),
            });
        }
        if argv[0].contains(":_:") {
            // FreeSWITCH looks for its "enterprise" separator in the whole first argument, the
            // variables included, and originates each part on its own.
            originate.error = Some("':_:' splits the originate into several".into());
            return originate;
        }
        let mut leg = argv[0].trim_start().to_owned();
        if leg.starts_with('{') {
            let Some(end) = end_of_block(&leg, '{', '}') else {
                originate.error = Some("no end to the {…} block".into());
                return originate;
            };
            let block = &leg[1..end];
            let odd_backslashes =
                |text: &str| text.chars().rev().take_while(|&c| c == '\\').count() % 2 == 1;
            if odd_backslashes(block) {
                // FreeSWITCH's scanner skips the character after a `\`: here the block's end,
                // and it reads on into the dial string (checked against libfreeswitch).
                originate.error = Some("a backslash ends the {…} block".into());
                return originate;
            }
            for assignment in separate(block, ',', 1024) {
                if odd_backslashes(&assignment) {
                    originate.error = Some(format!("{assignment:?} ends in a backslash"));
                    return originate;
                }
                let pair = separate(&assignment, '=', 2);
                if let [name, value] = &pair[..] {
                    originate.variables.push((name.clone(), value.clone()));
                }
            }
            leg = leg[end + 1..].to_owned();
        }
        originate.dial_string = leg.clone();
        for alternative in separate(&leg, '|', 128) {
            for mut endpoint in separate(&mark_leg_commas(&alternative), ',', 128) {
                endpoint = endpoint.trim_start().to_owned();
                // `[…]` blocks: this leg's own variables, split at the marked commas.
                while endpoint.starts_with('[') {
                    let Some(end) = end_of_block(&endpoint, '[', ']') else {
                        originate.error = Some("no end to a […] block".into());
                        return originate;
                    };
                    let block = endpoint[1..end].replace(QUOTED_COMMA, ",");
                    for assignment in separate(&block, UNQUOTED_COMMA, 1024) {
                        let pair = separate(&assignment, '=', 2);
                        if let [name, value] = &pair[..] {
                            originate.leg_variables.push((name.clone(), value.clone()));
                        }
                    }
                    endpoint = endpoint[end + 1..].to_owned();
                }
                originate
                    .legs
                    .push(endpoint.replace([QUOTED_COMMA, UNQUOTED_COMMA], ","));
            }
        }
        let endpoint = match &originate.legs[..] {
            [one] => one.clone(),
            _ => leg.clone(),
        };
        originate.number = endpoint
            .split('/')
            .rev()
            .map(|s| s.split('@').next().unwrap_or_default())
            .find(|s| {
                !s.is_empty()
                    && s.trim_start_matches('+')
                        .chars()
                        .all(|c| c.is_ascii_digit())
            })
            .map(str::to_owned);
        originate
    }

    /// A channel variable as the (single) leg gets it: its `[…]` variables over the `{…}`
    /// ones, the last of a name winning.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.leg_variables
            .iter()
            .rev()
            .chain(self.variables.iter().rev())
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `&app(arg)` with `${name}` in its argument replaced by the originate's variables, as the
    /// channel expands it when the application runs (an unknown variable becomes empty).
    pub fn application_expanded(&self) -> Option<(String, Option<String>)> {
        let (name, argument) = self.application.clone()?;
        Some((name, argument.map(|a| self.expand(&a))))
    }

    /// `${name}` replaced by the variable's value (one level, as needed for our own variables).
    pub fn expand(&self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            let Some(end) = rest[start..].find('}') else {
                break;
            };
            out.push_str(&rest[..start]);
            out.push_str(self.var(&rest[start + 2..start + end]).unwrap_or_default());
            rest = &rest[start + end + 1..];
        }
        out.push_str(rest);
        out
    }
}

// ---------------------------------------------------------------------------------------------
// The peer

/// How the peer behaves.
#[derive(Clone, Debug)]
pub struct PeerOptions {
    pub password: String,
    /// Multiplies the capture's delays (0.05: a 2.3 s call is replayed in about 0.12 s).
    pub time_scale: f64,
    /// The longest wait between two replayed frames, whatever the capture says.
    pub max_gap: Duration,
    /// The `N` of `api status`'s "session(s) per Sec out of max N" (capture 01 says 100).
    pub sessions_per_second: u32,
}

impl Default for PeerOptions {
    fn default() -> Self {
        PeerOptions {
            password: "ClueCon".into(),
            time_scale: 0.05,
            max_gap: Duration::from_millis(250),
            sessions_per_second: 100,
        }
    }
}

/// A command received, on which connection (numbered from 1 in connection order).
#[derive(Clone, Debug)]
pub struct Received {
    pub connection: u64,
    pub text: String,
}

enum Outgoing {
    Bytes(Vec<u8>),
    Close,
}

struct Connection {
    out: mpsc::UnboundedSender<Outgoing>,
    authenticated: bool,
    /// `None`: no events; an empty set with `all`: every event.
    events: HashSet<String>,
    all_events: bool,
}

impl Connection {
    fn wants(&self, event: &str) -> bool {
        self.authenticated && (self.all_events || self.events.contains(event))
    }
}

struct Channel {
    number: String,
    job_uuid: String,
    scenario: Scenario,
    answered: bool,
    job_done: bool,
    /// Hung up by `uuid_kill` / `hang_up`: its scripted replay stops.
    killed: bool,
    /// CHANNEL_HANGUP_COMPLETE sent (or about to be: a hang-up was ordered); `uuid_exists` false.
    ended: bool,
    /// The file of `execute_on_answer=record_session <file>`, if the originate asked for one.
    record_file: Option<String>,
    /// Where this call sits on the replay time line: capture µs -> now µs.
    time_base_capture_us: i64,
    time_base_now_us: i64,
}

#[derive(Default)]
struct State {
    password: String,
    rude: bool,
    commands: Vec<Received>,
    originates: Vec<Originate>,
    channels: HashMap<String, Channel>,
    live: usize,
    max_live: usize,
    connections: HashMap<u64, Connection>,
    next_connection: u64,
    logins_ok: usize,
    logins_failed: usize,
    sessions_per_second: u32,
}

struct Inner {
    state: Mutex<State>,
    options: PeerOptions,
    listening: watch::Sender<bool>,
}

/// The scripted event socket. Dropping it stops accepting and closes every connection.
pub struct EslPeer {
    addr: SocketAddr,
    inner: Arc<Inner>,
    accept: JoinHandle<()>,
}

impl Drop for EslPeer {
    fn drop(&mut self) {
        self.accept.abort();
        self.drop_connections();
    }
}

impl EslPeer {
    /// Listens on 127.0.0.1:0 with the default options (password `ClueCon`).
    pub async fn start() -> EslPeer {
        EslPeer::start_with(PeerOptions::default()).await
    }

    pub async fn start_with(options: PeerOptions) -> EslPeer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the peer");
        let addr = listener.local_addr().unwrap();
        let (listening, listening_rx) = watch::channel(true);
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                password: options.password.clone(),
                sessions_per_second: options.sessions_per_second,
                ..Default::default()
            }),
            options,
            listening,
        });
        let accept = tokio::spawn(accept_loop(listener, addr, listening_rx, inner.clone()));
        EslPeer {
            addr,
            inner,
            accept,
        }
    }

    /// `127.0.0.1:<port>`, for `--esl-addr`.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap()
    }

    /// Every command received so far, in order (all connections).
    pub fn commands(&self) -> Vec<Received> {
        self.state().commands.clone()
    }

    /// Every originate received so far, parsed.
    pub fn originates(&self) -> Vec<Originate> {
        self.state().originates.clone()
    }

    /// How many originates dialed `number` (the INVITE-equivalents).
    pub fn originate_count(&self, number: &str) -> usize {
        self.state()
            .originates
            .iter()
            .filter(|o| o.number.as_deref() == Some(number))
            .count()
    }

    /// The most channels alive at once so far.
    pub fn max_live_channels(&self) -> usize {
        self.state().max_live
    }

    /// Channels alive now (originated, no CHANNEL_HANGUP_COMPLETE yet).
    pub fn live_channels(&self) -> usize {
        self.state().live
    }

    /// The uuids of the live channels of `number`.
    pub fn live_uuids(&self, number: &str) -> Vec<String> {
        self.state()
            .channels
            .iter()
            .filter(|(_, c)| !c.ended && c.number == number)
            .map(|(u, _)| u.clone())
            .collect()
    }

    /// Connections open now (authenticated or not).
    pub fn open_connections(&self) -> usize {
        self.state().connections.len()
    }

    /// Successful and failed `auth` commands so far.
    pub fn logins(&self) -> (usize, usize) {
        let state = self.state();
        (state.logins_ok, state.logins_failed)
    }

    /// The password checked from now on.
    pub fn set_password(&self, password: &str) {
        self.state().password = password.to_owned();
    }

    /// The "max N" `api status` reports from now on.
    pub fn set_sessions_per_second(&self, max: u32) {
        self.state().sessions_per_second = max;
    }

    /// While set, a new connection gets `text/rude-rejection` and is closed.
    pub fn set_rude(&self, rude: bool) {
        self.state().rude = rude;
    }

    /// Closes every connection now (the client reads EOF); calls go on, their events are lost
    /// until someone connects again. Answers the uuids of the channels alive at that moment.
    pub fn drop_connections(&self) -> Vec<String> {
        let mut state = self.inner.state.lock().unwrap();
        for (_, connection) in state.connections.drain() {
            let _ = connection.out.send(Outgoing::Close);
        }
        live_uuids(&state)
    }

    /// The uuids of every live channel.
    pub fn live_channel_uuids(&self) -> Vec<String> {
        live_uuids(&self.state())
    }

    /// Stops listening: connecting is refused until `start_listening`.
    pub fn stop_listening(&self) {
        self.inner.listening.send_replace(false);
    }

    /// Listens again on the same port.
    pub fn start_listening(&self) {
        self.inner.listening.send_replace(true);
    }

    /// The callee (or the network) hangs a live call up now with `cause`: capture 08's hang-up
    /// events (and the job's `-ERR <cause>` first if the call was not answered yet). False when
    /// no such live call.
    pub fn hang_up(&self, uuid: &str, cause: &str) -> bool {
        hang_up(&self.inner, uuid, cause)
    }
}

fn live_uuids(state: &State) -> Vec<String> {
    let mut uuids: Vec<String> = state
        .channels
        .iter()
        .filter(|(_, c)| !c.ended)
        .map(|(u, _)| u.clone())
        .collect();
    uuids.sort();
    uuids
}

async fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    mut listening: watch::Receiver<bool>,
    inner: Arc<Inner>,
) {
    let mut listener = Some(listener);
    loop {
        match &listener {
            Some(bound) => {
                tokio::select! {
                    accepted = bound.accept() => {
                        if let Ok((stream, _)) = accepted {
                            tokio::spawn(serve(stream, inner.clone()));
                        }
                    }
                    changed = listening.changed() => {
                        if changed.is_err() { return; }
                        if !*listening.borrow() { listener = None; }
                    }
                }
            }
            None => {
                if listening.changed().await.is_err() {
                    return;
                }
                if *listening.borrow() {
                    listener = Some(
                        TcpListener::bind(addr)
                            .await
                            .expect("listen again on the peer's port"),
                    );
                }
            }
        }
    }
}

fn reply(text: &str) -> Vec<u8> {
    format!("Content-Type: command/reply\nReply-Text: {text}\n\n").into_bytes()
}

fn api_response(body: &str) -> Vec<u8> {
    format!(
        "Content-Type: api/response\nContent-Length: {}\n\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn serve(stream: TcpStream, inner: Arc<Inner>) {
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let (out, mut out_rx) = mpsc::unbounded_channel();
    let rude = inner.state.lock().unwrap().rude;
    if rude {
        let _ = write.write_all(RUDE_REJECTION.as_bytes()).await;
        return;
    }
    let id = {
        let mut state = inner.state.lock().unwrap();
        state.next_connection += 1;
        let id = state.next_connection;
        state.connections.insert(
            id,
            Connection {
                out: out.clone(),
                authenticated: false,
                events: HashSet::new(),
                all_events: false,
            },
        );
        id
    };
    let _ = out.send(Outgoing::Bytes(b"Content-Type: auth/request\n\n".to_vec()));
    let reader = tokio::spawn(read_commands(read, id, inner.clone()));
    while let Some(message) = out_rx.recv().await {
        match message {
            Outgoing::Bytes(bytes) => {
                if write.write_all(&bytes).await.is_err() {
                    break;
                }
            }
            Outgoing::Close => break,
        }
    }
    reader.abort();
    let _ = reader.await;
    inner.state.lock().unwrap().connections.remove(&id);
    // Both halves are dropped here: the client reads EOF.
}

async fn read_commands(read: tokio::net::tcp::OwnedReadHalf, id: u64, inner: Arc<Inner>) {
    let mut reader = BufReader::new(read);
    loop {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line).await {
                Ok(0) | Err(_) => {
                    close(&inner, id);
                    return;
                }
                Ok(_) => {}
            }
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if text.is_empty() {
                    continue;
                }
                break;
            }
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(line);
        }
        handle_command(&inner, id, &text);
    }
}

fn close(inner: &Inner, id: u64) {
    if let Some(connection) = inner.state.lock().unwrap().connections.remove(&id) {
        let _ = connection.out.send(Outgoing::Close);
    }
}

fn handle_command(inner: &Arc<Inner>, id: u64, text: &str) {
    let mut state = inner.state.lock().unwrap();
    state.commands.push(Received {
        connection: id,
        text: text.to_owned(),
    });
    let Some(connection) = state.connections.get(&id) else {
        return;
    };
    let authenticated = connection.authenticated;
    let out = connection.out.clone();
    let send = |bytes: Vec<u8>| {
        let _ = out.send(Outgoing::Bytes(bytes));
    };
    let (first, headers) = text.split_once('\n').unwrap_or((text, ""));
    let (verb, rest) = first.split_once(' ').unwrap_or((first, ""));
    if !authenticated {
        if verb == "auth" && rest == state.password {
            state.logins_ok += 1;
            state.connections.get_mut(&id).unwrap().authenticated = true;
            send(reply("+OK accepted"));
        } else {
            state.logins_failed += 1;
            send(reply("-ERR invalid"));
            send(DISCONNECT_NOTICE.as_bytes().to_vec());
            state.connections.remove(&id);
            let _ = out.send(Outgoing::Close);
        }
        return;
    }
    match verb {
        "event" => {
            let mut words = rest.split_whitespace();
            if words.next() != Some("plain") {
                send(reply("-ERR this peer replays plain captures only"));
                return;
            }
            let connection = state.connections.get_mut(&id).unwrap();
            for name in words {
                if name == "ALL" {
                    connection.all_events = true;
                } else {
                    connection.events.insert(name.to_owned());
                }
            }
            send(reply("+OK event listener enabled plain"));
        }
        "noevents" => {
            let connection = state.connections.get_mut(&id).unwrap();
            connection.events.clear();
            connection.all_events = false;
            send(reply("+OK no longer listening for events"));
        }
        "exit" => {
            send(reply("+OK bye"));
            send(DISCONNECT_NOTICE.as_bytes().to_vec());
            state.connections.remove(&id);
            let _ = out.send(Outgoing::Close);
        }
        "api" => {
            drop(state);
            let (body, then) = api(inner, rest);
            send(api_response(&body));
            send_later(inner, then);
        }
        "bgapi" => {
            let job_uuid = header_in(headers, "Job-UUID")
                .map(str::to_owned)
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            send(reply(&format!(
                "+OK Job-UUID: {job_uuid}\nJob-UUID: {job_uuid}"
            )));
            drop(state);
            match rest.strip_prefix("originate ") {
                Some(arguments) => originate(inner, arguments, &job_uuid),
                None => {
                    let (body, then) = api(inner, rest);
                    let (command, argument) = rest.split_once(' ').unwrap_or((rest, ""));
                    let job = job_result(&job_uuid, None, command, argument, &body);
                    broadcast(&inner.state.lock().unwrap(), job);
                    send_later(inner, then);
                }
            }
        }
        _ => send(reply("-ERR command not found")),
    }
}

/// Frames to send after a reply, each at its delay after the previous one.
type Later = Vec<(Duration, Vec<u8>)>;

/// What `api <command>` answers (the body of the api/response), and the events it causes.
fn api(inner: &Arc<Inner>, command: &str) -> (String, Later) {
    let (name, argument) = command.split_once(' ').unwrap_or((command, ""));
    let body = match name {
        "status" => {
            let max = inner.state.lock().unwrap().sessions_per_second;
            status_text().replace("out of max 100,", &format!("out of max {max},"))
        }
        "version" => "FreeSWITCH Version 1.11.2-release~64bit ( 64bit)\n".into(),
        "uuid_exists" => {
            let state = inner.state.lock().unwrap();
            let alive = state
                .channels
                .get(argument.trim())
                .is_some_and(|c| !c.ended);
            if alive { "true" } else { "false" }.into()
        }
        "uuid_kill" => {
            let (uuid, cause) = argument.split_once(' ').unwrap_or((argument, ""));
            let cause = match cause.trim() {
                "" => "NORMAL_CLEARING",
                cause => cause,
            };
            return match prepare_hang_up(inner, uuid.trim(), cause) {
                Some(frames) => ("+OK\n".into(), frames),
                None => ("-ERR No such channel!\n".into(), Vec::new()),
            };
        }
        "show" if argument.starts_with("channels") => show_channels(inner, argument),
        _ => format!("-ERR {name} Command not found!\n"),
    };
    (body, Vec::new())
}

/// `show channels [as json]`: the live channels (made up, few columns: no capture lists one).
fn show_channels(inner: &Arc<Inner>, argument: &str) -> String {
    let state = inner.state.lock().unwrap();
    let mut live: Vec<(&String, &Channel)> =
        state.channels.iter().filter(|(_, c)| !c.ended).collect();
    live.sort_by_key(|(uuid, _)| uuid.as_str());
    let call_state = |c: &Channel| if c.answered { "ACTIVE" } else { "RINGING" };
    if argument.contains("as json") {
        if live.is_empty() {
            return "{\"row_count\":0}".into();
        }
        let rows: Vec<serde_json::Value> = live
            .iter()
            .map(|(uuid, c)| {
                serde_json::json!({
                    "uuid": uuid, "direction": "outbound",
                    "name": format!("sofia/external/{}", c.number),
                    "dest": c.number, "callstate": call_state(c),
                })
            })
            .collect();
        return serde_json::json!({"row_count": rows.len(), "rows": rows}).to_string();
    }
    if live.is_empty() {
        return "\n0 total.\n".into();
    }
    let mut text = String::from("uuid,direction,name,dest,callstate\n");
    for (uuid, c) in &live {
        text.push_str(&format!(
            "{uuid},outbound,sofia/external/{n},{n},{}\n",
            call_state(c),
            n = c.number
        ));
    }
    text.push_str(&format!("\n{} total.\n", live.len()));
    text
}

/// Capture 01's `api status` body.
fn status_text() -> String {
    let capture = capture("01_auth_api");
    let index = capture
        .steps
        .iter()
        .position(|s| matches!(s, Step::Received { text, .. } if text.trim_end() == "api status"))
        .expect("capture 01 asks status");
    match &capture.steps[index + 1] {
        Step::Sent { bytes, .. } => String::from_utf8_lossy(split_frame(bytes).1).into_owned(),
        Step::Received { .. } => panic!("capture 01: no answer to status"),
    }
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// Sends a frame to every connection that wants its event.
fn broadcast(state: &State, frame: Vec<u8>) {
    let name = PlainEvent::parse(&frame)
        .map(|e| e.name().to_owned())
        .unwrap_or_default();
    for connection in state.connections.values() {
        if connection.wants(&name) {
            let _ = connection.out.send(Outgoing::Bytes(frame.clone()));
        }
    }
}

/// A capture frame made this call's: the capture's channel uuid and Job-UUID replaced (headers
/// and body), epoch timestamps (µs, s) moved onto the replay's compressed time line.
fn localize(
    frame: &[u8],
    script: &Script,
    uuid: &str,
    channel: &Channel,
    time_scale: f64,
) -> Vec<u8> {
    let capture_base = channel.time_base_capture_us;
    let now_base = channel.time_base_now_us;
    let shift_us = |value: i64| now_base + ((value - capture_base) as f64 * time_scale) as i64;
    let day_us: i64 = 86_400_000_000;
    let rename = |text: &str| {
        text.replace(&script.channel_uuid, uuid)
            .replace(&script.job_uuid, &channel.job_uuid)
    };
    rewrite_event(
        frame,
        |_, value| {
            if let Ok(number) = value.parse::<i64>() {
                if value.len() == 16 && (number - capture_base).abs() < day_us {
                    return Some(shift_us(number).to_string());
                }
                if value.len() == 10 && (number * 1_000_000 - capture_base).abs() < day_us {
                    return Some((shift_us(number * 1_000_000) / 1_000_000).to_string());
                }
                return None;
            }
            (value.contains(&script.channel_uuid) || value.contains(&script.job_uuid))
                .then(|| rename(value))
        },
        |body| rename(&String::from_utf8_lossy(body)).into_bytes(),
    )
}

/// Updates the channel table for an event being sent.
fn note_event(state: &mut State, uuid: &str, name: &str) {
    let Some(channel) = state.channels.get_mut(uuid) else {
        return;
    };
    match name {
        "CHANNEL_ANSWER" => channel.answered = true,
        "BACKGROUND_JOB" => channel.job_done = true,
        "CHANNEL_HANGUP_COMPLETE" if !channel.ended => {
            channel.ended = true;
            state.live -= 1;
        }
        _ => {}
    }
}

/// When each frame of a capture is due, from the replay's start: the capture's gaps scaled,
/// each at most `max_gap`.
fn due_times(frames: &[(Duration, Vec<u8>)], options: &PeerOptions) -> Vec<Duration> {
    let mut previous = Duration::ZERO;
    let mut due = Duration::ZERO;
    frames
        .iter()
        .map(|(at, _)| {
            let gap = at.saturating_sub(previous).mul_f64(options.time_scale);
            previous = *at;
            due += gap.min(options.max_gap);
            due
        })
        .collect()
}

fn originate(inner: &Arc<Inner>, arguments: &str, job_uuid: &str) {
    let mut parsed = Originate::parse(arguments);
    parsed.job_uuid = job_uuid.to_owned();
    let uuid = parsed
        .var("origination_uuid")
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let number = parsed.number.clone();
    let usable = parsed.error.is_none() && parsed.legs.len() == 1;
    let mut state = inner.state.lock().unwrap();
    state.originates.push(parsed);
    let (Some(number), true, false) = (number, usable, state.channels.contains_key(&uuid)) else {
        // FreeSWITCH could not place it: no channel, the job fails.
        let job = job_result(
            job_uuid,
            None,
            "originate",
            arguments,
            "-ERR CHAN_NOT_IMPLEMENTED\n",
        );
        broadcast(&state, job);
        return;
    };
    let record_file = state
        .originates
        .last()
        .and_then(|o| o.var("execute_on_answer"))
        .and_then(|app| app.strip_prefix("record_session "))
        .map(str::to_owned);
    let scenario = Scenario::for_number(&number);
    let script = scenario.script();
    state.channels.insert(
        uuid.clone(),
        Channel {
            number,
            job_uuid: job_uuid.to_owned(),
            scenario,
            record_file,
            answered: false,
            job_done: false,
            killed: false,
            ended: false,
            time_base_capture_us: script.originate_epoch_us,
            time_base_now_us: now_us(),
        },
    );
    state.live += 1;
    state.max_live = state.max_live.max(state.live);
    drop(state);
    let inner = inner.clone();
    tokio::spawn(async move {
        let start = Instant::now();
        let due = due_times(&script.frames, &inner.options);
        for ((_, frame), due) in script.frames.iter().zip(due) {
            tokio::time::sleep_until(start + due).await;
            let mut state = inner.state.lock().unwrap();
            let Some(channel) = state.channels.get(&uuid) else {
                return;
            };
            if channel.killed {
                return;
            }
            let bytes = localize(frame, script, &uuid, channel, inner.options.time_scale);
            let name = PlainEvent::parse(&bytes)
                .map(|e| e.name().to_owned())
                .unwrap_or_default();
            note_event(&mut state, &uuid, &name);
            let record_start = match (&name[..], &channel_record_file(&state, &uuid)) {
                ("CHANNEL_ANSWER", Some(file)) => Some(record_start(&bytes, file)),
                _ => None,
            };
            broadcast(&state, bytes);
            if let Some(frame) = record_start {
                broadcast(&state, frame);
            }
        }
    });
}

fn channel_record_file(state: &State, uuid: &str) -> Option<String> {
    state.channels.get(uuid)?.record_file.clone()
}

/// RECORD_START, as `record_session` fires it at the answer (seen live; no capture holds one):
/// the channel's headers of its CHANNEL_ANSWER, and `Record-File-Path`.
fn record_start(answer: &[u8], file: &str) -> Vec<u8> {
    rewrite_event(
        answer,
        |name, _| {
            // The new header goes right after the name: a value with a line break adds a line.
            (name == "Event-Name")
                .then(|| format!("RECORD_START\nRecord-File-Path: {}", url_encode(file)))
        },
        |body| body.to_vec(),
    )
}

/// A BACKGROUND_JOB event with `body`, made from capture 04's (its Job-UUID, command, argument
/// and the channel it names replaced).
fn job_result(
    job_uuid: &str,
    uuid: Option<&str>,
    command: &str,
    argument: &str,
    body: &str,
) -> Vec<u8> {
    let (template, frame) = job_template();
    rewrite_event(
        frame,
        |name, value| match name {
            "Job-UUID" => Some(job_uuid.to_owned()),
            "Job-Command" => Some(url_encode(command)),
            "Job-Command-Arg" => Some(url_encode(argument)),
            _ if value.contains(&template.channel_uuid) => {
                Some(value.replace(&template.channel_uuid, uuid.unwrap_or_default()))
            }
            _ => None,
        },
        |_| body.as_bytes().to_vec(),
    )
}

/// Sends `frames` (each at its delay after the previous) to the subscribers, in a task of its own.
fn send_later(inner: &Arc<Inner>, frames: Later) {
    if frames.is_empty() {
        return;
    }
    let inner = inner.clone();
    tokio::spawn(async move {
        let start = Instant::now();
        let due = due_times(&frames, &inner.options);
        for ((_, bytes), due) in frames.into_iter().zip(due) {
            tokio::time::sleep_until(start + due).await;
            broadcast(&inner.state.lock().unwrap(), bytes);
        }
    });
}

/// Hangs a live channel up with `cause` (see `EslPeer::hang_up`): stops its replay, marks it
/// ended, and answers the frames to send: the job's `-ERR <cause>` if it had no result yet, then
/// capture 08's hang-up events with NORMAL_CLEARING replaced by `cause`. `None`: no such live
/// channel.
fn prepare_hang_up(inner: &Arc<Inner>, uuid: &str, cause: &str) -> Option<Later> {
    let mut state = inner.state.lock().unwrap();
    let channel = state.channels.get_mut(uuid).filter(|c| !c.ended)?;
    channel.killed = true;
    channel.ended = true;
    let job_done = std::mem::replace(&mut channel.job_done, true);
    state.live -= 1;
    let channel = &state.channels[uuid];
    let mut frames = Later::new();
    if !job_done {
        let body = format!("-ERR {cause}\n");
        let job = job_result(&channel.job_uuid, Some(uuid), "originate", "", &body);
        frames.push((Duration::ZERO, job));
    }
    let (script, kill_frames) = kill_script();
    for (at, frame) in kill_frames {
        let bytes = localize(frame, script, uuid, channel, inner.options.time_scale);
        let bytes = rewrite_event(
            &bytes,
            |_, value| (value == "NORMAL_CLEARING").then(|| cause.to_owned()),
            |body| body.to_vec(),
        );
        frames.push((*at, bytes));
    }
    Some(frames)
}

fn hang_up(inner: &Arc<Inner>, uuid: &str, cause: &str) -> bool {
    match prepare_hang_up(inner, uuid, cause) {
        Some(frames) => {
            send_later(inner, frames);
            true
        }
        None => false,
    }
}
