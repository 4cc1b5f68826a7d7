//! The SIP back end end to end: the real dialer places real SIP calls through the built-in user
//! agent to sipp (`/usr/bin/sipp`) on 127.0.0.1, playing the scenarios in `tests/sipp/`.
//!
//! Every test checks two independent records of the same calls: the numbers' results as the REST
//! API stores them (call_status, cause, sip_code, dtmf, times, record_path), and sipp's own verdict
//! (its exit code: 0 when every call followed the scenario; its message trace and statistics).
//!
//! Ports: sipp's SIP, control and media ports and outcall's SIP port are free ports the kernel
//! picks (ephemeral range, 32768 and up); each test gets its own RTP range below that range, so
//! that tests running in parallel (`cargo nextest`) never share a port.
//!
//! Every wait is bounded; on a failure the test prints sipp's message and error logs.

mod common;

use std::{
    collections::{HashMap, HashSet},
    net::UdpSocket,
    path::Path,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use common::{assert_error, assert_number_shape, spawn_app_with_backend, success_data, TestApp};
use outcall::telephony::sip::{
    config::{SipConfig, Trunk, DEFAULT_REQUEST_URI},
    media::wav,
    SipBackend,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tempfile::TempDir;

const SIPP: &str = "/usr/bin/sipp";
const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

// ---------------------------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------------------------

/// A UDP port on 127.0.0.1 that nobody holds right now (the kernel's choice).
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|socket| socket.local_addr())
        .expect("a free UDP port")
        .port()
}

/// An even port `p` such that `p..p + count` are all free on 127.0.0.1 right now.
fn free_udp_ports(count: u16) -> u16 {
    for _ in 0..200 {
        let first = free_udp_port() & !1;
        if first > u16::MAX - count {
            continue;
        }
        let held: Vec<UdpSocket> = (first..first + count)
            .filter_map(|port| UdpSocket::bind(("127.0.0.1", port)).ok())
            .collect();
        if held.len() == count as usize {
            return first;
        }
    }
    panic!("no run of {count} free UDP ports");
}

/// Whether some socket is bound to UDP `port` (read from /proc, so that looking takes nothing).
fn udp_port_bound(port: u16) -> bool {
    port_bound(&["/proc/net/udp", "/proc/net/udp6"], port)
}

/// Whether some socket is bound to TCP `port`.
fn tcp_port_bound(port: u16) -> bool {
    port_bound(&["/proc/net/tcp", "/proc/net/tcp6"], port)
}

fn port_bound(tables: &[&str], port: u16) -> bool {
    let needle = format!(":{port:04X} ");
    tables.iter().any(|table| {
        std::fs::read_to_string(table)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|line| {
                line.split_whitespace()
                    .nth(1)
                    .is_some_and(|local| format!("{local} ").ends_with(&needle))
            })
    })
}

/// Each test's own RTP range, below the ephemeral range the free ports above come from.
fn rtp_range(test: u16) -> (u16, u16) {
    let low = 21000 + 200 * test;
    (low, low + 199)
}

// ---------------------------------------------------------------------------------------------
// sipp
// ---------------------------------------------------------------------------------------------

/// A sipp process playing one scenario as the callee; killed when dropped.
struct Sipp {
    child: Option<Child>,
    /// Holds sipp's logs; sipp runs in it, so stray files land there too.
    dir: TempDir,
    scenario: String,
    /// sipp's SIP port, which the trunk points at.
    port: u16,
    tcp: bool,
    exit_code: Option<i32>,
}

impl Sipp {
    /// Starts `sipp -sf tests/sipp/<scenario> … -m <calls>` on UDP and waits until its SIP socket
    /// is up.
    fn start(scenario: &str, calls: u32) -> Sipp {
        Sipp::start_on(scenario, calls, false)
    }

    /// The same, over TCP (`-t t1`) when `tcp`.
    fn start_on(scenario: &str, calls: u32, tcp: bool) -> Sipp {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let scenario_path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/sipp")
            .join(scenario);
        assert!(scenario_path.is_file(), "{}", scenario_path.display());
        let port = if tcp {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        } else {
            free_udp_port()
        };
        let control = free_udp_port();
        // sipp binds the media port and the one two above it (video).
        let media = free_udp_ports(4);
        let path = |name: &str| dir.path().join(name).display().to_string();
        let mut args: Vec<String> = vec![
            "-sf".into(),
            scenario_path.display().to_string(),
            "-i".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-ci".into(),
            "127.0.0.1".into(),
            "-cp".into(),
            control.to_string(),
            "-mi".into(),
            "127.0.0.1".into(),
            "-mp".into(),
            media.to_string(),
            "-m".into(),
            calls.to_string(),
            "-nostdin".into(),
            "-timeout".into(),
            "30s".into(),
            "-timeout_error".into(),
            "-trace_msg".into(),
            "-message_file".into(),
            path("messages.log"),
            "-trace_err".into(),
            "-error_file".into(),
            path("errors.log"),
            "-trace_stat".into(),
            "-stf".into(),
            path("stat.csv"),
            "-fd".into(),
            "1".into(),
        ];
        if tcp {
            args.extend(["-t".into(), "t1".into()]);
        }
        let stdout = std::fs::File::create(dir.path().join("stdout.log")).expect("a log file");
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).expect("a log file");
        let child = Command::new(SIPP)
            .args(&args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("{SIPP} starts: {e}"));
        let mut sipp = Sipp {
            child: Some(child),
            dir,
            scenario: scenario.to_owned(),
            port,
            tcp,
            exit_code: None,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(if tcp {
            tcp_port_bound(port)
        } else {
            udp_port_bound(port)
        }) {
            if let Some(code) = sipp.try_exit() {
                panic!(
                    "sipp exited with {code} before listening\n{}",
                    sipp.report()
                );
            }
            assert!(
                Instant::now() < deadline,
                "sipp does not listen on {port}\n{}",
                sipp.report()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        sipp
    }

    /// The trunk that reaches this sipp.
    fn trunk(&self) -> String {
        let transport = if self.tcp { "tcp:" } else { "" };
        format!("{transport}127.0.0.1:{}", self.port)
    }

    fn try_exit(&mut self) -> Option<i32> {
        if self.exit_code.is_none() {
            let child = self.child.as_mut()?;
            if let Some(status) = child.try_wait().expect("sipp's status") {
                self.exit_code = Some(status.code().unwrap_or(-1));
                self.child = None;
            }
        }
        self.exit_code
    }

    /// sipp's exit code, waiting for it at most `timeout`; panics with the logs when it runs on.
    async fn exit_code(&mut self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(code) = self.try_exit() {
                return code;
            }
            if Instant::now() >= deadline {
                panic!(
                    "sipp ({}) still runs after {timeout:?}\n{}",
                    self.scenario,
                    self.report()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Asserts that sipp ends by itself with 0: every call it was told to take followed its
    /// scenario.
    async fn assert_success(&mut self) {
        let code = self.exit_code(Duration::from_secs(10)).await;
        assert_eq!(
            code,
            0,
            "sipp ({}) exit code: its calls did not all succeed\n{}",
            self.scenario,
            self.report()
        );
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// sipp's message trace.
    fn messages(&self) -> String {
        self.log("messages.log")
    }

    /// The traced SIP messages with the instant sipp logged each, in order.
    fn message_log(&self) -> Vec<SippMessage> {
        parse_message_log(&self.messages())
    }

    /// sipp's statistics: one row a second (and one at the end), column name → value.
    fn stat_rows(&self) -> Vec<HashMap<String, String>> {
        let text = self.log("stat.csv");
        let mut lines = text.lines().filter(|line| !line.trim().is_empty());
        let Some(header) = lines.next() else {
            return Vec::new();
        };
        let names: Vec<&str> = header.split(';').collect();
        lines
            .map(|line| {
                names
                    .iter()
                    .zip(line.split(';'))
                    .map(|(name, value)| (name.to_string(), value.to_string()))
                    .collect()
            })
            .collect()
    }

    /// What sipp logged, for failure messages (the ends of long logs).
    fn report(&self) -> String {
        let tail = |text: String| {
            let chars: Vec<char> = text.chars().collect();
            let keep = 6000;
            if chars.len() > keep {
                format!(
                    "[… {} chars]\n{}",
                    chars.len() - keep,
                    chars[chars.len() - keep..].iter().collect::<String>()
                )
            } else {
                text
            }
        };
        format!(
            "--- sipp errors ---\n{}\n--- sipp stderr ---\n{}\n--- sipp messages ---\n{}",
            tail(self.log("errors.log")),
            tail(self.log("stderr.log")),
            tail(self.messages())
        )
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One message of sipp's `-trace_msg` log.
#[derive(Debug, Clone)]
struct SippMessage {
    /// Seconds since the epoch, from the block's header line.
    at: f64,
    received: bool,
    /// The start line: `INVITE sip:… SIP/2.0` or `SIP/2.0 200 OK`.
    start_line: String,
    call_id: String,
}

impl SippMessage {
    fn is_request(&self, method: &str) -> bool {
        self.start_line.starts_with(&format!("{method} "))
    }
}

/// sipp writes each message as a block: a `----…---- <date> <time>.<micros>` line, a line such
/// as `UDP message received [N] bytes :` (or `… sent …`), a blank line, then the message.
fn parse_message_log(text: &str) -> Vec<SippMessage> {
    let mut messages = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(stamp) = line.strip_prefix("----------------------------------------------- ")
        else {
            continue;
        };
        let Ok(time) = chrono::NaiveDateTime::parse_from_str(stamp.trim(), "%Y-%m-%d\t%H:%M:%S%.f")
            .or_else(|_| {
                chrono::NaiveDateTime::parse_from_str(stamp.trim(), "%Y-%m-%d %H:%M:%S%.f")
            })
        else {
            continue;
        };
        let at = time.and_utc().timestamp_micros() as f64 / 1e6;
        let Some(kind) = lines.next() else { break };
        let received = kind.contains("received");
        let mut start_line = String::new();
        let mut call_id = String::new();
        while let Some(next) = lines.peek() {
            if next.starts_with("-----------------------------------------------") {
                break;
            }
            let next = lines.next().unwrap().trim();
            if start_line.is_empty() {
                if !next.is_empty() {
                    start_line = next.to_owned();
                }
                continue;
            }
            let lower = next.to_ascii_lowercase();
            if call_id.is_empty() && (lower.starts_with("call-id:") || lower.starts_with("i:")) {
                call_id = next.split_once(':').unwrap().1.trim().to_owned();
            }
        }
        messages.push(SippMessage {
            at,
            received,
            start_line,
            call_id,
        });
    }
    messages
}

// ---------------------------------------------------------------------------------------------
// outcall with the SIP back end
// ---------------------------------------------------------------------------------------------

/// The application with a SIP back end whose default trunk is `trunk`.
struct SipApp {
    app: TestApp,
    /// Where outcall's SIP user agent listens.
    sip_address: std::net::SocketAddr,
    /// The back end's data directory: prompts the tests write, and `recordings/`.
    dir: TempDir,
}

struct SipOptions {
    trunk: String,
    /// More trunks, each `context=address`.
    other_trunks: Vec<String>,
    rtp_ports: (u16, u16),
    credentials: Option<(&'static str, &'static str)>,
    register: bool,
    max_call_duration: Duration,
}

impl SipOptions {
    fn new(trunk: String, test: u16) -> Self {
        SipOptions {
            trunk,
            other_trunks: Vec::new(),
            rtp_ports: rtp_range(test),
            credentials: None,
            register: false,
            max_call_duration: Duration::from_secs(60),
        }
    }
}

async fn spawn_sip_app(options: SipOptions) -> SipApp {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = SipConfig {
        bind: format!("127.0.0.1:{}", free_udp_port()).parse().unwrap(),
        trunks: std::iter::once(&options.trunk)
            .chain(&options.other_trunks)
            .map(|trunk| Trunk::parse(trunk).expect("a trunk"))
            .collect(),
        from: "outcall".into(),
        username: options.credentials.map(|(user, _)| user.to_owned()),
        password: options.credentials.map(|(_, password)| password.to_owned()),
        register: options.register,
        rtp_ports: options.rtp_ports,
        symmetric_rtp: false,
        request_uri: DEFAULT_REQUEST_URI.into(),
        max_call_duration: options.max_call_duration,
    };
    let backend = SipBackend::start(config, dir.path())
        .await
        .expect("the SIP back end starts");
    let sip_address = backend.local_address();
    // One data directory for both, as in production: uploads land in the back end's media store.
    let data_dir = dir.path().to_owned();
    let app = spawn_app_with_backend(Arc::new(backend), |config| config.data_dir = data_dir).await;
    SipApp {
        app,
        sip_address,
        dir,
    }
}

/// An 8 kHz mono 16-bit sine of `millis` ms, as a WAV file's bytes.
fn sine_wav(millis: u32, hz: f64) -> Vec<u8> {
    let samples: Vec<i16> = (0..millis * 8)
        .map(|n| {
            let t = n as f64 / 8000.0;
            (8000.0 * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16
        })
        .collect();
    wav::encode_wav(&samples, 1, 8000)
}

impl SipApp {
    /// Writes a prompt of `millis` ms into the back end's directory; answers its absolute path.
    /// A prompt written into the back end's media store; answers its path.
    fn prompt(&self, name: &str, millis: u32) -> String {
        let media = self.dir.path().join("media");
        std::fs::create_dir_all(&media).expect("the media store");
        let path = media.join(name);
        std::fs::write(&path, sine_wav(millis, 440.0)).expect("the prompt is written");
        path.display().to_string()
    }

    /// A task with `settings` and `numbers`, started; answers its id.
    async fn start_task(&self, name: &str, settings: Value, numbers: &[String]) -> i64 {
        let id = self.app.create_task(name).await;
        self.app.update_task(id, settings).await;
        self.app.import(id, numbers).await;
        let started = self.app.start(&[id]).await;
        assert_eq!(started[0]["status"], "running", "{started:?}");
        id
    }

    /// Waits until the task is `done` with every number `done`; answers the numbers.
    async fn finished_numbers(&self, id: i64, timeout: Duration, sipp: &Sipp) -> Vec<Value> {
        self.done_numbers(id, timeout, || sipp.report()).await
    }

    /// The same, with `report` adding to the failure message.
    async fn done_numbers(
        &self,
        id: i64,
        timeout: Duration,
        report: impl Fn() -> String,
    ) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let task = self.app.task(id).await;
            let numbers = self.app.all_numbers(id).await;
            if task["status"] == "done" && numbers.iter().all(|n| n["call_status"] == "done") {
                return numbers;
            }
            if Instant::now() >= deadline {
                panic!(
                    "task {id} not done after {timeout:?}: task {task}\nnumbers {}\n{}",
                    Value::Array(numbers),
                    report()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn time_of(number: &Value, field: &str) -> chrono::NaiveDateTime {
    let text = number[field].as_str().unwrap_or_default();
    chrono::NaiveDateTime::parse_from_str(text, TIME_FORMAT)
        .unwrap_or_else(|_| panic!("{field} is a time: {number}"))
}

/// What a finished number must show.
struct Expected<'a> {
    cause: &'a str,
    sip_code: &'a str,
    dtmf: &'a str,
    answered: bool,
}

/// Checks a finished number's stored result, and that sipp saw its call (the Call-ID is our uuid).
fn assert_result(number: &Value, expected: &Expected, sipp: Option<&Sipp>) {
    assert_number_shape(number);
    let context = || {
        format!(
            "number {number}\n{}",
            sipp.map(Sipp::report).unwrap_or_default()
        )
    };
    assert_eq!(number["call_status"], "done", "{}", context());
    assert_eq!(number["outbound_call"], "0", "{}", context());
    assert_eq!(number["cause"], expected.cause, "cause: {}", context());
    assert_eq!(
        number["sip_code"],
        expected.sip_code,
        "sip_code: {}",
        context()
    );
    assert_eq!(number["dtmf"], expected.dtmf, "dtmf: {}", context());
    let uuid = number["uuid"].as_str().unwrap();
    assert!(!uuid.is_empty(), "a uuid: {number}");
    let start = time_of(number, "call_start_time");
    let end = time_of(number, "call_end_time");
    assert!(start <= end, "start before end: {number}");
    if expected.answered {
        let answer = time_of(number, "call_answer_time");
        assert!(
            start <= answer && answer <= end,
            "start <= answer <= end: {number}"
        );
    } else {
        assert_eq!(
            number["call_answer_time"],
            "",
            "not answered: {}",
            context()
        );
    }
    if let Some(sipp) = sipp {
        assert!(
            sipp.message_log()
                .iter()
                .any(|m| m.received && m.is_request("INVITE") && m.call_id == uuid),
            "sipp received an INVITE with Call-ID {uuid}\n{}",
            sipp.report()
        );
    }
}

/// The instants (sipp's clock) at which sipp received a `method` request, retransmissions included.
fn received_at(sipp: &Sipp, method: &str) -> Vec<f64> {
    sipp.message_log()
        .iter()
        .filter(|m| m.received && m.is_request(method))
        .map(|m| m.at)
        .collect()
}

/// A WAV file's format: (channels, sample rate, bits per sample, data bytes).
fn wav_format(bytes: &[u8]) -> (u16, u32, u16, usize) {
    assert!(bytes.len() >= 44, "a WAV header: {} bytes", bytes.len());
    assert_eq!(&bytes[0..4], b"RIFF");
    assert_eq!(&bytes[8..12], b"WAVE");
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    assert_eq!(
        u32_at(4) as usize + 8,
        bytes.len(),
        "the RIFF size matches the file"
    );
    let mut at = 12;
    let mut format = None;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32_at(at + 4) as usize;
        let body = at + 8;
        if id == b"fmt " {
            assert_eq!(u16_at(body), 1, "PCM");
            format = Some((u16_at(body + 2), u32_at(body + 4), u16_at(body + 14)));
            let (channels, rate, bits) = format.unwrap();
            assert_eq!(
                u16_at(body + 12),
                channels * bits / 8,
                "block align of {channels} channels of {bits} bits"
            );
            assert_eq!(
                u32_at(body + 8),
                rate * (channels * bits / 8) as u32,
                "byte rate"
            );
        } else if id == b"data" {
            let (channels, rate, bits) = format.expect("fmt before data");
            assert_eq!(body + len, bytes.len(), "the data chunk ends the file");
            return (channels, rate, bits, len);
        }
        at = body + len + (len & 1);
    }
    panic!("no data chunk");
}

// ---------------------------------------------------------------------------------------------
// The cases
// ---------------------------------------------------------------------------------------------

/// The callee answers and hangs up after a second, in the middle of our 3 s prompt: the call ends
/// NORMAL_CLEARING by the callee's BYE, and the recording is a stereo 8 kHz WAV of the call.
#[tokio::test]
async fn answer_then_callee_hangs_up_with_recording() {
    let mut sipp = Sipp::start("answer_then_hangup.xml", 1);
    let outcall = spawn_sip_app(SipOptions::new(sipp.trunk(), 0)).await;
    let prompt = outcall.prompt("long.wav", 3000);
    let id = outcall
        .start_task(
            "callee hangs up",
            json!({"action": "playback", "data": prompt, "auto_record": 1, "calling_time": 10}),
            &["1001".to_owned()],
        )
        .await;
    let numbers = outcall
        .finished_numbers(id, Duration::from_secs(10), &sipp)
        .await;
    sipp.assert_success().await;
    let number = &numbers[0];
    assert_result(
        number,
        &Expected {
            cause: "NORMAL_CLEARING",
            sip_code: "200",
            dtmf: "",
            answered: true,
        },
        Some(&sipp),
    );
    // The callee's BYE came first, a second into the call: we sent none.
    let log = sipp.message_log();
    assert!(
        log.iter().any(|m| !m.received && m.is_request("BYE")),
        "sipp sent the BYE\n{}",
        sipp.report()
    );
    assert!(
        !log.iter().any(|m| m.received && m.is_request("BYE")),
        "we sent no BYE of our own\n{}",
        sipp.report()
    );
    let talk =
        (time_of(number, "call_end_time") - time_of(number, "call_answer_time")).num_seconds();
    assert!(
        talk <= 2,
        "the call ended with the callee's BYE at ~1 s, not after our 3 s prompt: {number}"
    );

    let record_path = number["record_path"].as_str().unwrap();
    assert!(!record_path.is_empty(), "auto_record=1 records: {number}");
    let bytes = std::fs::read(record_path)
        .unwrap_or_else(|e| panic!("the recording {record_path} exists: {e}"));
    let (channels, rate, bits, data) = wav_format(&bytes);
    assert_eq!((channels, rate, bits), (2, 8000, 16), "stereo 8 kHz 16-bit");
    let seconds = data as f64 / (2.0 * 2.0 * 8000.0);
    assert!(
        (0.5..=2.5).contains(&seconds),
        "the recording lasts about the 1 s call: {seconds} s"
    );
    // Our prompt is on the left channel (what we sent).
    let left_energy: f64 = bytes[bytes.len() - data..]
        .chunks_exact(4)
        .map(|frame| (i16::from_le_bytes([frame[0], frame[1]]) as f64).powi(2))
        .sum();
    assert!(left_energy > 0.0, "our prompt is in the recording");
    assert_eq!(outcall.app.task(id).await["status"], "done");
}

/// 486: USER_BUSY, never answered.
#[tokio::test]
async fn busy() {
    let mut sipp = Sipp::start("busy.xml", 1);
    let outcall = spawn_sip_app(SipOptions::new(sipp.trunk(), 1)).await;
    let id = outcall
        .start_task(
            "busy",
            json!({"calling_time": 10, "cid_number": "4008001234", "cid_name": "Outcall Test"}),
            &["1002".to_owned()],
        )
        .await;
    let numbers = outcall
        .finished_numbers(id, Duration::from_secs(10), &sipp)
        .await;
    sipp.assert_success().await;
    // The task's caller id is the INVITE's From: cid_name shown, cid_number as the user.
    let invite = sipp.messages();
    let from = invite
        .lines()
        .find(|line| line.starts_with("From:"))
        .unwrap_or_else(|| panic!("no From header:\n{invite}"));
    assert!(
        from.contains("Outcall Test") && from.contains("sip:4008001234@"),
        "{from}"
    );
    assert_result(
        &numbers[0],
        &Expected {
            cause: "USER_BUSY",
            sip_code: "486",
            dtmf: "",
            answered: false,
        },
        Some(&sipp),
    );
    assert_eq!(numbers[0]["record_path"], "");
}

/// The callee rings and never answers: at calling_time we CANCEL, the callee answers 487, and the
/// number ends NO_ANSWER.
#[tokio::test]
async fn ring_until_our_cancel() {
    let mut sipp = Sipp::start("ring_until_cancel.xml", 1);
    let outcall = spawn_sip_app(SipOptions::new(sipp.trunk(), 2)).await;
    let started = Instant::now();
    let id = outcall
        .start_task(
            "no answer",
            json!({"calling_time": 5, "auto_record": 1}),
            &["1003".to_owned()],
        )
        .await;
    let numbers = outcall
        .finished_numbers(id, Duration::from_secs(12), &sipp)
        .await;
    let elapsed = started.elapsed();
    sipp.assert_success().await;
    let number = &numbers[0];
    assert_result(
        number,
        &Expected {
            cause: "NO_ANSWER",
            sip_code: "487",
            dtmf: "",
            answered: false,
        },
        Some(&sipp),
    );
    assert_eq!(number["record_path"], "", "nothing to record: {number}");
    assert!(
        elapsed >= Duration::from_millis(4500) && elapsed < Duration::from_secs(9),
        "the ring timer is calling_time (5 s): {elapsed:?}"
    );
    let invite = received_at(&sipp, "INVITE");
    let cancel = received_at(&sipp, "CANCEL");
    assert!(!cancel.is_empty(), "our CANCEL\n{}", sipp.report());
    let rang = cancel[0] - invite[0];
    assert!(
        (4.5..6.5).contains(&rang),
        "CANCEL {rang} s after the INVITE, at calling_time"
    );
}

/// 183 with early media, then 480: NO_USER_RESPONSE.
#[tokio::test]
async fn early_media_then_failure() {
    let mut sipp = Sipp::start("early_media_then_failure.xml", 1);
    let outcall = spawn_sip_app(SipOptions::new(sipp.trunk(), 3)).await;
    let id = outcall
        .start_task(
            "early media",
            json!({"calling_time": 10}),
            &["1004".to_owned()],
        )
        .await;
    let numbers = outcall
        .finished_numbers(id, Duration::from_secs(10), &sipp)
        .await;
    sipp.assert_success().await;
    assert_result(
        &numbers[0],
        &Expected {
            cause: "NO_USER_RESPONSE",
            sip_code: "480",
            dtmf: "",
            answered: false,
        },
        Some(&sipp),
    );
}

/// Settings of the confirm cases: key 1 within 5 s, then a 1 s prompt.
fn confirm_settings(prompt: &str) -> Value {
    json!({
        "group_confirm_key": "1",
        "group_confirm_read_timeout": 5,
        "action": "playback",
        "data": prompt,
        "calling_time": 10,
    })
}

const CONFIRM_PROMPT_MS: u32 = 1000;

/// Runs one confirm case: a task with a confirm key against `scenario`, whose result must be
/// `expected`. Answers how long after its answer (sipp's ACK) sipp received our BYE.
async fn confirm_case(
    scenario: &str,
    test: u16,
    number: &str,
    prompt_ms: u32,
    expected: Expected<'_>,
) -> f64 {
    let mut sipp = Sipp::start(scenario, 1);
    let outcall = spawn_sip_app(SipOptions::new(sipp.trunk(), test)).await;
    let prompt = outcall.prompt("short.wav", prompt_ms);
    let id = outcall
        .start_task(scenario, confirm_settings(&prompt), &[number.to_owned()])
        .await;
    let numbers = outcall
        .finished_numbers(id, Duration::from_secs(12), &sipp)
        .await;
    sipp.assert_success().await;
    assert_result(&numbers[0], &expected, Some(&sipp));
    let ack = received_at(&sipp, "ACK");
    let bye = received_at(&sipp, "BYE");
    assert!(!bye.is_empty(), "sipp received our BYE\n{}", sipp.report());
    bye[0] - ack[0]
}

/// The callee presses the confirm key: the prompt plays, then we hang up.
#[tokio::test]
async fn confirm_right_key() {
    let expected = Expected {
        cause: "NORMAL_CLEARING",
        sip_code: "200",
        dtmf: "1",
        answered: true,
    };
    let after = confirm_case(
        "confirm_right_key.xml",
        4,
        "1005",
        CONFIRM_PROMPT_MS,
        expected,
    )
    .await;
    // The key at ~0.3 s, then 1 s of prompt.
    assert!(
        after >= (300 + CONFIRM_PROMPT_MS) as f64 / 1000.0 - 0.1 && after < 4.0,
        "our BYE {after} s after the answer: after the key and the whole prompt"
    );
}

/// The callee presses another key: CALL_REJECTED, no prompt, our BYE.
#[tokio::test]
async fn confirm_wrong_key() {
    let expected = Expected {
        cause: "CALL_REJECTED",
        sip_code: "200",
        dtmf: "2",
        answered: true,
    };
    let after = confirm_case("confirm_wrong_key.xml", 5, "1006", 3000, expected).await;
    assert!(
        after < 2.5,
        "our BYE {after} s after the answer: at the wrong key, without the 3 s prompt"
    );
}

/// The callee answers and presses nothing: at group_confirm_read_timeout (5 s) we hang up with
/// the back end's no-key cause, NO_USER_RESPONSE, without playing the action's prompt.
#[tokio::test]
async fn confirm_no_key() {
    let expected = Expected {
        cause: "NO_USER_RESPONSE",
        sip_code: "200",
        dtmf: "",
        answered: true,
    };
    let after = confirm_case("campaign_callee.xml", 11, "1012", 3000, expected).await;
    assert!(
        (4.8..7.0).contains(&after),
        "our BYE {after} s after the answer: at the 5 s confirm timeout, without the 3 s prompt"
    );
}

/// The trunk challenges the INVITE with a 401; we answer with digest credentials that sipp
/// verifies, the call is answered, and (no action) we hang up at once.
#[tokio::test]
async fn digest_challenge() {
    let mut sipp = Sipp::start("digest_challenge.xml", 1);
    let mut options = SipOptions::new(sipp.trunk(), 6);
    options.credentials = Some(("outcall", "secret"));
    let outcall = spawn_sip_app(options).await;
    let id = outcall
        .start_task("digest", json!({"calling_time": 10}), &["1007".to_owned()])
        .await;
    let numbers = outcall
        .finished_numbers(id, Duration::from_secs(10), &sipp)
        .await;
    sipp.assert_success().await;
    assert_result(
        &numbers[0],
        &Expected {
            cause: "NORMAL_CLEARING",
            sip_code: "200",
            dtmf: "",
            answered: true,
        },
        Some(&sipp),
    );
    let invites = sipp
        .message_log()
        .into_iter()
        .filter(|m| m.received && m.is_request("INVITE"))
        .count();
    assert_eq!(invites, 2, "the INVITE, then again with credentials");
    assert!(
        sipp.messages().contains("Authorization: Digest"),
        "the second INVITE carries Authorization\n{}",
        sipp.report()
    );
}

/// Nobody listens at the trunk: the ring timer (calling_time 5), not SIP's 32 s Timer B, ends the
/// attempt with RECOVERY_ON_TIMER_EXPIRE, and the slot is freed so the task ends `done`.
#[tokio::test]
async fn nothing_listening() {
    let port = free_udp_port();
    let outcall = spawn_sip_app(SipOptions::new(format!("127.0.0.1:{port}"), 7)).await;
    let started = Instant::now();
    let id = outcall
        .start_task(
            "nobody there",
            json!({"calling_time": 5, "max_concurrency": 1}),
            &["1008".to_owned()],
        )
        .await;
    let numbers = outcall
        .done_numbers(id, Duration::from_secs(10), String::new)
        .await;
    let elapsed = started.elapsed();
    let number = &numbers[0];
    assert_number_shape(number);
    assert_eq!(number["call_status"], "done", "{number}");
    assert_eq!(number["cause"], "RECOVERY_ON_TIMER_EXPIRE", "{number}");
    assert!(
        number["sip_code"] == "" || number["sip_code"] == "408",
        "no response, or a local 408: {number}"
    );
    assert_eq!(number["call_answer_time"], "", "{number}");
    assert!(
        elapsed >= Duration::from_millis(4500) && elapsed <= Duration::from_secs(8),
        "given up at calling_time (5 s), not at Timer B (32 s): {elapsed:?}"
    );
    let rang =
        (time_of(number, "call_end_time") - time_of(number, "call_start_time")).num_seconds();
    assert!((4..=7).contains(&rang), "{rang} s: {number}");
}

/// A trunk that takes the INVITE and never answers anything: the ring timer ends the attempt with
/// RECOVERY_ON_TIMER_EXPIRE at calling_time, without a CANCEL (RFC 3261 §9.1: no CANCEL before a
/// provisional response), and nothing more is sent for the abandoned call.
#[tokio::test]
async fn silent_trunk() {
    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("a UDP socket");
    let trunk = peer.local_addr().unwrap();
    let heard: Arc<std::sync::Mutex<Vec<(Instant, String)>>> = Arc::default();
    let listener = {
        let heard = heard.clone();
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 65536];
            while let Ok((length, _)) = peer.recv_from(&mut buffer).await {
                let text = String::from_utf8_lossy(&buffer[..length]).into_owned();
                let start_line = text.lines().next().unwrap_or_default().to_owned();
                heard.lock().unwrap().push((Instant::now(), start_line));
            }
        })
    };
    let outcall = spawn_sip_app(SipOptions::new(trunk.to_string(), 10)).await;
    let started = Instant::now();
    let id = outcall
        .start_task(
            "silent trunk",
            json!({"calling_time": 5}),
            &["1009".to_owned()],
        )
        .await;
    let numbers = outcall
        .done_numbers(id, Duration::from_secs(10), String::new)
        .await;
    let ended = Instant::now();
    let elapsed = ended - started;
    let number = &numbers[0];
    assert_number_shape(number);
    assert_eq!(number["cause"], "RECOVERY_ON_TIMER_EXPIRE", "{number}");
    assert_eq!(number["call_answer_time"], "", "{number}");
    assert!(
        elapsed >= Duration::from_millis(4500) && elapsed <= Duration::from_secs(8),
        "given up at calling_time (5 s), not at Timer B (32 s): {elapsed:?}"
    );
    // Timer A would retransmit the INVITE at 7.5 s and 15.5 s: wait past the first of those.
    tokio::time::sleep(Duration::from_secs(3)).await;
    listener.abort();
    let heard = heard.lock().unwrap().clone();
    let summary: Vec<String> = heard
        .iter()
        .map(|(at, line)| format!("{:.3} s: {line}", (*at - started).as_secs_f64()))
        .collect();
    assert!(
        heard.iter().any(|(_, line)| line.starts_with("INVITE ")),
        "the trunk got the INVITE: {summary:#?}"
    );
    assert!(
        !heard.iter().any(|(_, line)| line.starts_with("CANCEL ")),
        "no CANCEL before a provisional response: {summary:#?}"
    );
    assert!(
        !heard
            .iter()
            .any(|(at, _)| *at > ended + Duration::from_millis(500)),
        "nothing sent for the call after it was given up: {summary:#?}"
    );
}

/// A campaign: 100 numbers at 10 calls a second, at most 4 at once, each answered by sipp and
/// hung up by us after a 300 ms prompt. A call lasts ~0.4 s, so at 10 calls a second the dialer
/// would have more than 4 up at once if it did not wait for hang-ups: the cap is really tested.
/// sipp sees exactly 100 calls, never more than 4 at a time.
#[tokio::test]
async fn campaign_of_100_numbers() {
    const CALLS: usize = 100;
    const CONCURRENCY: usize = 4;
    let mut sipp = Sipp::start("campaign_callee.xml", CALLS as u32);
    let outcall = spawn_sip_app(SipOptions::new(sipp.trunk(), 8)).await;
    let prompt = outcall.prompt("campaign.wav", 300);
    let numbers: Vec<String> = (0..CALLS).map(|i| format!("2{i:04}")).collect();
    let started = Instant::now();
    let id = outcall
        .start_task(
            "campaign",
            json!({
                "max_caps": 10,
                "max_concurrency": CONCURRENCY,
                "calling_time": 10,
                "action": "playback",
                "data": prompt,
            }),
            &numbers,
        )
        .await;
    let results = outcall
        .finished_numbers(id, Duration::from_secs(20), &sipp)
        .await;
    let elapsed = started.elapsed();
    sipp.assert_success().await;

    assert_eq!(results.len(), CALLS);
    for number in &results {
        assert_result(
            number,
            &Expected {
                cause: "NORMAL_CLEARING",
                sip_code: "200",
                dtmf: "",
                answered: true,
            },
            None,
        );
    }
    let uuids: HashSet<&str> = results
        .iter()
        .map(|n| n["uuid"].as_str().unwrap())
        .collect();
    assert_eq!(uuids.len(), CALLS, "a uuid per call");
    assert!(
        elapsed >= Duration::from_secs(9),
        "100 calls at 10 a second take ~10 s: {elapsed:?}"
    );

    // sipp's statistics: exactly 100 calls, never more than 4 alive at a sample.
    let rows = sipp.stat_rows();
    assert!(!rows.is_empty(), "sipp wrote statistics\n{}", sipp.report());
    let column = |row: &HashMap<String, String>, name: &str| -> u64 {
        row.get(name)
            .unwrap_or_else(|| panic!("sipp's statistics have a {name} column: {row:?}"))
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} is a count: {row:?}"))
    };
    let last = rows.last().unwrap();
    assert_eq!(column(last, "TotalCallCreated"), CALLS as u64, "{last:?}");
    assert_eq!(column(last, "IncomingCall(C)"), CALLS as u64, "{last:?}");
    assert_eq!(column(last, "SuccessfulCall(C)"), CALLS as u64, "{last:?}");
    assert_eq!(column(last, "FailedCall(C)"), 0, "{last:?}");
    let max_current = rows.iter().map(|r| column(r, "CurrentCall")).max().unwrap();
    assert!(
        max_current <= CONCURRENCY as u64,
        "sipp saw {max_current} calls at once"
    );

    // The same from the message trace, exactly: each call is alive from its INVITE to its BYE.
    let log = sipp.message_log();
    let mut events: Vec<(f64, i32)> = Vec::new();
    let (mut invited, mut hung_up) = (HashSet::new(), HashSet::new());
    for message in log.iter().filter(|m| m.received) {
        // Retransmissions count once.
        if message.is_request("INVITE") && invited.insert(message.call_id.clone()) {
            events.push((message.at, 1));
        } else if message.is_request("BYE") && hung_up.insert(message.call_id.clone()) {
            events.push((message.at, -1));
        }
    }
    assert_eq!(invited.len(), CALLS, "sipp received 100 calls");
    let mut alive = 0;
    let mut most = 0;
    for (_, change) in &events {
        alive += change;
        most = most.max(alive);
    }
    assert_eq!(
        most, CONCURRENCY as i32,
        "calls alive at once in sipp's trace: the cap is reached and never passed"
    );
    assert_eq!(alive, 0, "every call ended with our BYE");
    // CAPS 10, evenly spaced: 100 INVITEs over at least ~10 s, and no burst. (Evenly spaced at
    // 100 ms, a 0.9 s window holds 9; one more is allowed for the jitter of a loaded machine.)
    let invites: Vec<f64> = events.iter().filter(|e| e.1 == 1).map(|e| e.0).collect();
    let span = invites[CALLS - 1] - invites[0];
    assert!(span >= 9.0, "100 INVITEs at 10 a second span {span} s");
    for (i, &at) in invites.iter().enumerate() {
        let in_window = invites[i..].iter().take_while(|&&t| t < at + 0.9).count();
        assert!(in_window <= 10, "{in_window} INVITEs within 0.9 s of {at}");
    }
    for uuid in &uuids {
        assert!(invited.contains(*uuid), "sipp saw the call {uuid}");
    }
}

// ---------------------------------------------------------------------------------------------
// Media files
// ---------------------------------------------------------------------------------------------

/// `POST /api/media_files` with a hand-built multipart body (reqwest has no multipart here).
async fn upload_media(app: &TestApp, name: &str, file_name: &str, bytes: &[u8]) -> common::Reply {
    let boundary = "----outcall-test-boundary-7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\n{name}\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: audio/wav\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let raw = app
        .send_raw(
            Method::POST,
            "/api/media_files",
            &[
                ("X-XTRA-AUTH-ID", app.token.as_str()),
                ("Content-Type", content_type.as_str()),
            ],
            Some(body),
        )
        .await;
    common::Reply {
        status: raw.status,
        body: raw.json(),
    }
}

/// An uploaded WAV plays in a real call when a task references the returned media object; a
/// FreeSWITCH-only reference (`phrase:…`) is refused when the task starts.
#[tokio::test]
async fn uploaded_media_plays_and_freeswitch_phrases_are_refused() {
    let mut sipp = Sipp::start("campaign_callee.xml", 1);
    let outcall = spawn_sip_app(SipOptions::new(sipp.trunk(), 9)).await;
    let app = &outcall.app;

    // A 2 s prompt at 16 kHz: stored as 8 kHz mono.
    let samples: Vec<i16> = (0..32000)
        .map(|n| ((n as f64 / 16000.0 * 2.0 * std::f64::consts::PI * 300.0).sin() * 9000.0) as i16)
        .collect();
    let reply = upload_media(
        app,
        "welcome",
        "welcome.wav",
        &wav::encode_wav(&samples, 1, 16000),
    )
    .await;
    let media = success_data(&reply);
    assert_eq!(media["media_name"], "welcome", "{media}");
    let media_path = media["media_path"]
        .as_str()
        .expect("a media_path")
        .to_owned();
    let stored = std::fs::read(&media_path).expect("the stored prompt exists");
    let (channels, rate, bits, data) = wav_format(&stored);
    assert_eq!(
        (channels, rate, bits),
        (1, 8000, 16),
        "stored as 8 kHz mono"
    );
    assert!(
        (31000..=33000).contains(&data),
        "2 s at 8 kHz: {data} bytes"
    );

    // A FreeSWITCH phrase cannot be played by the sip back end: refused at start, naming it.
    let phrase = r#"{"media_id":205,"media_path":"phrase:welcome_short@xui","media_type":"SYSTEM","media_name":"welcome_short"}"#;
    let refused = app.create_task("phrase").await;
    app.update_task(refused, json!({"action": "playback", "data": phrase}))
        .await;
    app.import(refused, &["1010".to_owned()]).await;
    let reply = app.start_stop("start", &[refused]).await;
    assert_error(&reply, 400, "phrase:welcome_short@xui");
    let message = reply.body["message"].as_str().unwrap();
    assert!(message.contains("data"), "names the field: {message}");
    assert_eq!(app.task(refused).await["status"], "init");
    assert_eq!(app.all_numbers(refused).await[0]["call_status"], "init");

    // The same phrase as the confirm prompt: refused too, naming group_confirm_file.
    app.update_task(
        refused,
        json!({"action": "", "data": "", "group_confirm_key": "1", "group_confirm_file": phrase}),
    )
    .await;
    let reply = app.start_stop("start", &[refused]).await;
    assert_error(&reply, 400, "group_confirm_file");

    // The uploaded prompt, referenced as the media object's JSON text, plays to the end.
    let data = serde_json::to_string(&media).unwrap();
    let id = outcall
        .start_task(
            "uploaded prompt",
            json!({"action": "playback", "data": data, "calling_time": 10}),
            &["1011".to_owned()],
        )
        .await;
    assert_eq!(app.task(id).await["data"], Value::String(data.clone()));
    let numbers = outcall
        .finished_numbers(id, Duration::from_secs(12), &sipp)
        .await;
    sipp.assert_success().await;
    assert_result(
        &numbers[0],
        &Expected {
            cause: "NORMAL_CLEARING",
            sip_code: "200",
            dtmf: "",
            answered: true,
        },
        Some(&sipp),
    );
    let ack = received_at(&sipp, "ACK");
    let bye = received_at(&sipp, "BYE");
    assert!(!bye.is_empty(), "our BYE\n{}", sipp.report());
    let after = bye[0] - ack[0];
    assert!(
        (1.9..5.0).contains(&after),
        "our BYE {after} s after the answer: after the 2 s prompt"
    );
    let listed = app.get("/api/media_files").await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    assert!(
        listed.body["data"]
            .as_array()
            .is_some_and(|files| files.iter().any(|f| f["media_path"] == media["media_path"])),
        "the upload is listed: {}",
        listed.body
    );
}

// ---------------------------------------------------------------------------------------------
// Robustness and registration
// ---------------------------------------------------------------------------------------------

/// A callee that answers and never hangs up is cut at the configured call limit, and the slot
/// it held is given back (the task finishes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callee_that_never_hangs_up_is_cut_at_the_time_limit() {
    let mut sipp = Sipp::start("campaign_callee.xml", 1);
    let mut options = SipOptions::new(sipp.trunk(), 20);
    options.max_call_duration = Duration::from_secs(2);
    let outcall = spawn_sip_app(options).await;
    let prompt = outcall.prompt("long.wav", 20_000);
    let id = outcall
        .start_task(
            "endless",
            json!({"action": "playback", "data": prompt}),
            &["3000".to_owned()],
        )
        .await;
    let numbers = outcall
        .finished_numbers(id, Duration::from_secs(10), &sipp)
        .await;
    let number = &numbers[0];
    assert_eq!(number["cause"], "ALLOTTED_TIMEOUT", "{number}");
    let talked = time_of(number, "call_end_time") - time_of(number, "call_answer_time");
    assert!(
        talked.num_seconds() >= 1 && talked.num_seconds() <= 4,
        "talked {talked}: {number}"
    );
    sipp.assert_success().await;
}

/// Garbage, malformed SIP and requests for calls that do not exist get sensible answers or are
/// dropped, and calls go on afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_datagrams_do_not_wedge_the_user_agent() {
    let mut sipp = Sipp::start("busy.xml", 1);
    let outcall = spawn_sip_app(SipOptions::new(sipp.trunk(), 21)).await;
    let attacker = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    attacker
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let attacker_address = attacker.local_addr().unwrap();
    let target = outcall.sip_address;
    let mut garbage: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"\r\n\r\n".to_vec(),
        vec![0xff; 1500],
        vec![b'A'; 60_000],
        b"INVITE sip:x SIP/2.0\r\nVia: nonsense\r\n\r\n".to_vec(),
        b"SIP/2.0 200 OK\r\nCSeq: banana\r\n\r\n".to_vec(),
        format!(
            "OPTIONS sip:outcall@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {attacker_address};branch=z9hG4bKbad\r\n\
             Content-Length: 99999\r\n\r\nshort"
        )
        .into_bytes(),
    ];
    for seed in 0..200u32 {
        garbage.push(
            (0..(seed % 300))
                .map(|i| (i.wrapping_mul(2654435761u32.wrapping_add(seed)) >> 13) as u8)
                .collect(),
        );
    }
    for datagram in &garbage {
        let _ = attacker.send_to(datagram, target);
    }
    // Well-formed requests outside any call: OPTIONS is answered, an INVITE declined (we take
    // no calls), a BYE for an unknown call refused.
    for (method, expected) in [("OPTIONS", "200"), ("INVITE", "603"), ("BYE", "481")] {
        let request = format!(
            "{method} sip:outcall@{target} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {attacker_address};branch=z9hG4bK{method}1\r\n\
             From: <sip:attacker@{attacker_address}>;tag=a1\r\n\
             To: <sip:outcall@{target}>\r\n\
             Call-ID: hostile-{method}@test\r\n\
             CSeq: 1 {method}\r\n\
             Contact: <sip:attacker@{attacker_address}>\r\n\
             Max-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n"
        );
        // The flood may have filled the user agent's socket buffer, and UDP drops what does not
        // fit: like any SIP client, send the request again until it is answered.
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = 'answered: loop {
            assert!(Instant::now() < deadline, "no final answer to {method}");
            attacker.send_to(request.as_bytes(), target).unwrap();
            let mut buffer = [0u8; 4096];
            while let Ok((length, _)) = attacker.recv_from(&mut buffer) {
                let text = String::from_utf8_lossy(&buffer[..length]).to_string();
                let status = text
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned();
                // Skip provisional answers (100 Trying) and answers to the flood.
                if !status.starts_with('1') && text.contains(&format!("hostile-{method}@test")) {
                    break 'answered status;
                }
            }
        };
        assert_eq!(status, expected, "{method}");
    }
    // A forged in-dialog BYE (a To tag, a Call-ID that is none of ours) is refused at once: it
    // does not wait for a dialog that might still be registered, as one of our calls' would.
    let forged = forged_request(
        "BYE",
        "forged-in-dialog@test",
        Some("t9"),
        attacker_address,
        target,
    );
    let sent_at = Instant::now();
    attacker.send_to(forged.as_bytes(), target).unwrap();
    let mut buffer = [0u8; 4096];
    let answer = loop {
        let (length, _) = attacker
            .recv_from(&mut buffer)
            .expect("an answer to the forged BYE");
        let text = String::from_utf8_lossy(&buffer[..length]).to_string();
        if text.contains("forged-in-dialog@test") {
            break text;
        }
    };
    let waited = sent_at.elapsed();
    assert!(answer.starts_with("SIP/2.0 481"), "{answer}");
    assert!(
        waited < Duration::from_millis(400),
        "the forged BYE was answered after {waited:?}"
    );
    let id = outcall
        .start_task("after the storm", json!({}), &["4000".to_owned()])
        .await;
    let numbers = outcall
        .finished_numbers(id, Duration::from_secs(10), &sipp)
        .await;
    assert_eq!(numbers[0]["cause"], "USER_BUSY", "{}", numbers[0]);
    sipp.assert_success().await;
}

/// With --sip-register, outcall registers with the trunk, answering its digest challenge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_with_digest_credentials() {
    let mut sipp = Sipp::start("registrar.xml", 1);
    let mut options = SipOptions::new(sipp.trunk(), 22);
    options.register = true;
    options.credentials = Some(("outcall", "secret"));
    let _outcall = spawn_sip_app(options).await;
    sipp.assert_success().await;
}

/// `transfer` sends a REFER to `data` on the task's trunk and ends when the callee reports the
/// transfer done (NOTIFY with a sipfrag 200): then we hang up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_by_refer() {
    let mut sipp = Sipp::start("transfer.xml", 1);
    let outcall = spawn_sip_app(SipOptions::new(sipp.trunk(), 23)).await;
    let id = outcall
        .start_task(
            "transfer",
            json!({"action": "transfer", "data": "8001"}),
            &["5000".to_owned()],
        )
        .await;
    let numbers = outcall
        .finished_numbers(id, Duration::from_secs(10), &sipp)
        .await;
    assert_eq!(numbers[0]["cause"], "NORMAL_CLEARING", "{}", numbers[0]);
    assert_eq!(numbers[0]["sip_code"], "200", "{}", numbers[0]);
    sipp.assert_success().await;
    let refer = sipp.messages();
    assert!(refer.contains("REFER sip:"), "no REFER sent:\n{refer}");
    assert!(
        refer.contains("sip:8001@"),
        "the REFER does not name extension 8001:\n{refer}"
    );
}

/// The callee's OPTIONS and re-INVITE inside the call are answered 200 (the re-INVITE with our
/// SDP), and the call goes on until the callee hangs up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_dialog_options_and_reinvite_are_answered() {
    let mut sipp = Sipp::start("in_dialog_requests.xml", 1);
    let outcall = spawn_sip_app(SipOptions::new(sipp.trunk(), 24)).await;
    let prompt = outcall.prompt("in-dialog.wav", 5000);
    let id = outcall
        .start_task(
            "in dialog",
            json!({"action": "playback", "data": prompt}),
            &["6000".to_owned()],
        )
        .await;
    let numbers = outcall
        .finished_numbers(id, Duration::from_secs(10), &sipp)
        .await;
    assert_eq!(numbers[0]["cause"], "NORMAL_CLEARING", "{}", numbers[0]);
    sipp.assert_success().await;
}

/// A trunk reached over TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_trunk() {
    let mut sipp = Sipp::start_on("busy.xml", 1, true);
    let outcall = spawn_sip_app(SipOptions::new(sipp.trunk(), 25)).await;
    let id = outcall
        .start_task("tcp", json!({}), &["7004".to_owned()])
        .await;
    let numbers = outcall
        .finished_numbers(id, Duration::from_secs(10), &sipp)
        .await;
    assert_eq!(numbers[0]["cause"], "USER_BUSY", "{}", numbers[0]);
    assert_eq!(numbers[0]["sip_code"], "486", "{}", numbers[0]);
    sipp.assert_success().await;
}

/// A 407 from a proxy is answered with Proxy-Authorization (sipp checks the header).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_digest_challenge() {
    let mut sipp = Sipp::start("proxy_challenge.xml", 1);
    let mut options = SipOptions::new(sipp.trunk(), 26);
    options.credentials = Some(("outcall", "secret"));
    let outcall = spawn_sip_app(options).await;
    let id = outcall
        .start_task("proxy", json!({}), &["8004".to_owned()])
        .await;
    let numbers = outcall
        .finished_numbers(id, Duration::from_secs(10), &sipp)
        .await;
    assert_eq!(numbers[0]["cause"], "USER_BUSY", "{}", numbers[0]);
    sipp.assert_success().await;
}

/// A task's `dest_context` picks the trunk configured under that name; other tasks use the
/// default trunk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dest_context_picks_the_trunk() {
    let mut default_trunk = Sipp::start("busy.xml", 1);
    let mut named_trunk = Sipp::start("busy.xml", 1);
    let mut options = SipOptions::new(default_trunk.trunk(), 27);
    options
        .other_trunks
        .push(format!("pstn={}", named_trunk.trunk()));
    let outcall = spawn_sip_app(options).await;
    let via_named = outcall
        .start_task(
            "named",
            json!({"dest_context": "pstn"}),
            &["9104".to_owned()],
        )
        .await;
    outcall
        .finished_numbers(via_named, Duration::from_secs(10), &named_trunk)
        .await;
    named_trunk.assert_success().await;
    assert!(
        !default_trunk.messages().contains("INVITE sip:9104"),
        "the default trunk got the named trunk's call"
    );
    let via_default = outcall
        .start_task(
            "default",
            json!({"dest_context": "context-1"}),
            &["9204".to_owned()],
        )
        .await;
    outcall
        .finished_numbers(via_default, Duration::from_secs(10), &default_trunk)
        .await;
    default_trunk.assert_success().await;
    assert!(
        default_trunk.messages().contains("INVITE sip:9204@"),
        "{}",
        default_trunk.messages()
    );
}

// ---------------------------------------------------------------------------------------------
// Floods
// ---------------------------------------------------------------------------------------------

/// The test process's resident memory (outcall runs in it), in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// A request from `from` outside any of our calls; `to_tag` makes it look in-dialog.
fn forged_request(
    method: &str,
    call_id: &str,
    to_tag: Option<&str>,
    from: std::net::SocketAddr,
    target: std::net::SocketAddr,
) -> String {
    let to_tag = to_tag.map(|tag| format!(";tag={tag}")).unwrap_or_default();
    format!(
        "{method} sip:outcall@{target} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch=z9hG4bK{call_id}\r\n\
         From: <sip:flood@{from}>;tag=f1\r\n\
         To: <sip:outcall@{target}>{to_tag}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 {method}\r\n\
         Contact: <sip:flood@{from}>\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// An INVITE flood and a flood of forged in-dialog BYEs (5,000 requests a second for 5 s) while
/// a campaign runs: the campaign keeps its pace and its calls all succeed, the trunk's OPTIONS
/// pings are answered promptly throughout (with a User-Agent that carries no version), the
/// flood's requests are mostly dropped unanswered (each source has a small budget), and memory
/// does not grow with the flood.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_of_forged_requests_leave_calls_and_pings_alone() {
    const CALLS: usize = 10;
    const FLOOD: Duration = Duration::from_secs(5);
    const FLOOD_RATE: u32 = 5000;
    let mut sipp = Sipp::start("campaign_callee.xml", CALLS as u32);
    // The pinger is a configured trunk, as a PBX sending keep-alives would be.
    let pinger = UdpSocket::bind("127.0.0.1:0").unwrap();
    let pinger_address = pinger.local_addr().unwrap();
    let mut options = SipOptions::new(sipp.trunk(), 23);
    options.other_trunks = vec![format!("keepalive={pinger_address}")];
    let outcall = spawn_sip_app(options).await;
    let target = outcall.sip_address;
    let prompt = outcall.prompt("flood.wav", 300);
    let baseline = rss_kib();

    // The flood, paced, from one socket; a second thread counts what it gets back.
    let flooder = UdpSocket::bind("127.0.0.1:0").unwrap();
    let flooder_address = flooder.local_addr().unwrap();
    flooder
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let listener = flooder.try_clone().unwrap();
    let flooding = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let answers = {
        let flooding = flooding.clone();
        std::thread::spawn(move || {
            let mut answered = HashSet::new();
            let mut buffer = [0u8; 4096];
            while flooding.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok((length, _)) = listener.recv_from(&mut buffer) {
                    let text = String::from_utf8_lossy(&buffer[..length]).to_string();
                    let final_answer =
                        text.starts_with("SIP/2.0 ") && !text.starts_with("SIP/2.0 1");
                    let call_id = text
                        .lines()
                        .find_map(|line| line.strip_prefix("Call-ID: "))
                        .map(str::to_owned);
                    if let (true, Some(call_id)) = (final_answer, call_id) {
                        answered.insert(call_id);
                    }
                }
            }
            answered.len()
        })
    };
    let sender = std::thread::spawn(move || {
        let started = Instant::now();
        let mut sent = 0u32;
        while started.elapsed() < FLOOD {
            // Paced: datagram n leaves at n / FLOOD_RATE seconds.
            let due = Duration::from_secs_f64(sent as f64 / FLOOD_RATE as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
            let call_id = format!("flood-{sent}");
            let request = if sent % 2 == 0 {
                forged_request("INVITE", &call_id, None, flooder_address, target)
            } else {
                forged_request("BYE", &call_id, Some("t1"), flooder_address, target)
            };
            let _ = flooder.send_to(request.as_bytes(), target);
            sent += 1;
        }
        sent
    });

    let numbers: Vec<String> = (0..CALLS).map(|i| format!("5{i:03}")).collect();
    let id = outcall
        .start_task(
            "under the flood",
            json!({"max_caps": 2, "max_concurrency": 4, "calling_time": 10,
                   "action": "playback", "data": prompt}),
            &numbers,
        )
        .await;

    // Pings every 200 ms during the flood, each resent every 500 ms until answered.
    pinger
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut slowest = Duration::ZERO;
    let mut peak_rss = baseline;
    let mut pings = 0;
    let flood_started = Instant::now();
    while flood_started.elapsed() < FLOOD {
        let call_id = format!("ping-{pings}");
        let ping = forged_request("OPTIONS", &call_id, None, pinger_address, target);
        let sent_at = Instant::now();
        let answer = 'answered: loop {
            assert!(
                sent_at.elapsed() < Duration::from_secs(3),
                "OPTIONS {pings} unanswered for 3 s during the flood"
            );
            pinger.send_to(ping.as_bytes(), target).unwrap();
            let mut buffer = [0u8; 4096];
            while let Ok((length, _)) = pinger.recv_from(&mut buffer) {
                let text = String::from_utf8_lossy(&buffer[..length]).to_string();
                if text.contains(&call_id) {
                    break 'answered text;
                }
            }
        };
        slowest = slowest.max(sent_at.elapsed());
        assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
        let user_agent = answer
            .lines()
            .find(|line| {
                let lower = line.to_ascii_lowercase();
                lower.starts_with("user-agent:") || lower.starts_with("server:")
            })
            .unwrap_or_default();
        assert!(
            !user_agent.contains(env!("CARGO_PKG_VERSION")) && !user_agent.contains('/'),
            "no version in {user_agent:?}"
        );
        pings += 1;
        peak_rss = peak_rss.max(rss_kib());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sent = tokio::task::spawn_blocking(move || sender.join().unwrap())
        .await
        .unwrap();
    assert!(
        sent >= FLOOD_RATE * 4,
        "the flood sent {sent} requests (the machine is too slow to flood)"
    );

    let results = outcall
        .finished_numbers(id, Duration::from_secs(20), &sipp)
        .await;
    peak_rss = peak_rss.max(rss_kib());
    sipp.assert_success().await;
    for number in &results {
        assert_eq!(number["cause"], "NORMAL_CLEARING", "{number}");
    }
    // The campaign kept its pace: 2 a second, 10 INVITEs over ~4.5 s, never a burst.
    let mut invited = HashSet::new();
    let invites: Vec<f64> = sipp
        .message_log()
        .iter()
        .filter(|m| m.received && m.is_request("INVITE") && invited.insert(m.call_id.clone()))
        .map(|m| m.at)
        .collect();
    assert_eq!(invites.len(), CALLS);
    let span = invites[CALLS - 1] - invites[0];
    assert!(
        (4.0..6.5).contains(&span),
        "10 INVITEs at 2 a second span {span} s"
    );
    for (i, &at) in invites.iter().enumerate() {
        let in_window = invites[i..].iter().take_while(|&&t| t < at + 0.9).count();
        assert!(in_window <= 3, "{in_window} INVITEs within 0.9 s of {at}");
    }

    flooding.store(false, std::sync::atomic::Ordering::Relaxed);
    let answered = tokio::task::spawn_blocking(move || answers.join().unwrap())
        .await
        .unwrap();
    // One source's budget: a burst of 40 and 20 a second, whatever it sends.
    assert!(
        answered <= 40 + 20 * (FLOOD.as_secs() as usize + 2),
        "{answered} of {sent} forged requests were answered"
    );
    let grown_mib = peak_rss.saturating_sub(baseline) / 1024;
    eprintln!(
        "flood: {sent} sent, {answered} answered; {pings} pings, slowest {slowest:?}; RSS +{grown_mib} MiB"
    );
    assert!(slowest < Duration::from_secs(2), "slowest ping {slowest:?}");
    assert!(
        grown_mib < 48,
        "memory grew by {grown_mib} MiB during the flood"
    );
}

// ---------------------------------------------------------------------------------------------
// RTP injection
// ---------------------------------------------------------------------------------------------

/// A stranger on the callee's host who learns our RTP port (here from the INVITE's SDP, as an
/// eavesdropper would) and sends first, from another port: one PCMU packet, to take over where
/// our prompt goes, and RFC 4733 presses of the confirm key. The callee (sipp) answers offering
/// telephone-events and sends nothing. Neither the audio nor the keys are taken: the call ends
/// for want of a key, and the stranger hears none of our prompt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_rtp_and_keys_from_another_port_are_ignored() {
    use outcall::telephony::sip::media::{RtpPacket, TelephoneEvent};

    let mut sipp = Sipp::start("silent_callee.xml", 1);
    let outcall = spawn_sip_app(SipOptions::new(sipp.trunk(), 24)).await;
    let prompt = outcall.prompt("confirm.wav", 2000);
    let id = outcall
        .start_task(
            "injected",
            json!({"group_confirm_key": "1", "group_confirm_read_timeout": 3,
                   "group_confirm_file": prompt, "calling_time": 10}),
            &["6000".to_owned()],
        )
        .await;

    // Our RTP address, from the INVITE's SDP in sipp's trace.
    let rtp_port: u16 = common::poll(Duration::from_secs(5), "the INVITE's SDP", || {
        let messages = sipp.messages();
        async move {
            messages
                .lines()
                .find_map(|line| line.trim().strip_prefix("m=audio "))
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
                .ok_or(messages)
        }
    })
    .await;
    let our_rtp = std::net::SocketAddr::from(([127, 0, 0, 1], rtp_port));
    let injector = UdpSocket::bind("127.0.0.1:0").unwrap();
    injector
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut heard = 0;
    let mut buffer = [0u8; 2048];
    let mut sequence = 1u16;
    // Every 100 ms for 2.5 s (the call is answered within it): audio, then a whole key press
    // with a new timestamp each time.
    for round in 0..25u32 {
        let timestamp = 10_000 + round * 1600;
        let audio = RtpPacket::new(0, sequence, timestamp, 0xBAD, &[0xFF; 160])
            .to_bytes()
            .unwrap();
        injector.send_to(&audio, our_rtp).unwrap();
        sequence = sequence.wrapping_add(1);
        for (step, end) in [(1, false), (2, false), (5, true), (5, true), (5, true)] {
            let event = TelephoneEvent {
                event: 1,
                end,
                volume: 10,
                duration: 160 * step,
            };
            let packet = RtpPacket::new(101, sequence, timestamp, 0xBAD, &event.to_bytes())
                .to_bytes()
                .unwrap();
            injector.send_to(&packet, our_rtp).unwrap();
            sequence = sequence.wrapping_add(1);
        }
        let round_end = Instant::now() + Duration::from_millis(100);
        while Instant::now() < round_end {
            if injector.recv_from(&mut buffer).is_ok() {
                heard += 1;
            }
        }
    }

    let numbers = outcall
        .finished_numbers(id, Duration::from_secs(12), &sipp)
        .await;
    sipp.assert_success().await;
    assert_result(
        &numbers[0],
        &Expected {
            cause: "NO_USER_RESPONSE",
            sip_code: "200",
            dtmf: "",
            answered: true,
        },
        Some(&sipp),
    );
    assert_eq!(heard, 0, "the injector received {heard} of our RTP packets");
}
