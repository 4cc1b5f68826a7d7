//! sipp as a SIP peer of the built-in user agent (`/usr/bin/sipp` playing `tests/sipp/*.xml`),
//! the SIP back end started in-process (`spawn_sip_app`), and what the SIP tests check a call
//! with.
//!
//! Ports: sipp's SIP, control and media ports and outcall's SIP port are free ports the kernel
//! picks (ephemeral range, 32768 and up); each test gets its own RTP range below that range
//! (`rtp_range(n)`, `n` unique across all SIP test files), so that tests running in parallel
//! (`cargo nextest`) never share a port.

use std::{
    collections::HashMap,
    net::UdpSocket,
    path::Path,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use outcall::{
    audio::wav,
    telephony::sip::{
        config::{SipConfig, Trunk, DEFAULT_REQUEST_URI},
        SipBackend,
    },
};
use serde_json::Value;
use tempfile::TempDir;

use super::{assert_number_shape, spawn_app_with_backend, TestApp};

pub const SIPP: &str = "/usr/bin/sipp";
pub const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";
// ---------------------------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------------------------

/// A UDP port on 127.0.0.1 that nobody holds right now (the kernel's choice).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|socket| socket.local_addr())
        .expect("a free UDP port")
        .port()
}

/// An even port `p` such that `p..p + count` are all free on 127.0.0.1 right now.
pub fn free_udp_ports(count: u16) -> u16 {
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
pub fn udp_port_bound(port: u16) -> bool {
    port_bound(&["/proc/net/udp", "/proc/net/udp6"], port)
}

/// Whether some socket is bound to TCP `port`.
pub fn tcp_port_bound(port: u16) -> bool {
    port_bound(&["/proc/net/tcp", "/proc/net/tcp6"], port)
}

pub fn port_bound(tables: &[&str], port: u16) -> bool {
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
pub fn rtp_range(test: u16) -> (u16, u16) {
    let low = 21000 + 200 * test;
    (low, low + 199)
}

// ---------------------------------------------------------------------------------------------
// sipp
// ---------------------------------------------------------------------------------------------

/// sipp's arguments for a callee in `dir` playing `scenario_path` on 127.0.0.1:`port` (media on
/// `media`) for `calls` calls, its errors and statistics traced into `dir` (statistics each
/// second).
pub fn callee_args(
    dir: &Path,
    scenario_path: &Path,
    port: u16,
    media: u16,
    calls: u32,
) -> Vec<String> {
    let path = |name: &str| dir.join(name).display().to_string();
    vec![
        "-sf".into(),
        scenario_path.display().to_string(),
        "-i".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
        "-mi".into(),
        "127.0.0.1".into(),
        "-mp".into(),
        media.to_string(),
        "-m".into(),
        calls.to_string(),
        "-nostdin".into(),
        "-trace_err".into(),
        "-error_file".into(),
        path("errors.log"),
        "-trace_stat".into(),
        "-stf".into(),
        path("stat.csv"),
        "-fd".into(),
        "1".into(),
    ]
}

/// A sipp process playing one scenario as the callee; killed when dropped.
pub struct Sipp {
    pub child: Option<Child>,
    /// Holds sipp's logs; sipp runs in it, so stray files land there too.
    pub dir: TempDir,
    pub scenario: String,
    /// sipp's SIP port, which the trunk points at.
    pub port: u16,
    pub tcp: bool,
    pub exit_code: Option<i32>,
}

impl Sipp {
    /// Starts `sipp -sf tests/sipp/<scenario> … -m <calls>` on UDP and waits until its SIP socket
    /// is up.
    pub fn start(scenario: &str, calls: u32) -> Sipp {
        Sipp::start_on(scenario, calls, false)
    }

    /// The same, over TCP (`-t t1`) when `tcp`.
    pub fn start_on(scenario: &str, calls: u32, tcp: bool) -> Sipp {
        Sipp::launch(scenario, calls, tcp, true)
    }

    /// Like `start`, without sipp's global 30 s timeout: a callee that outlives restarts of
    /// outcall (it is killed when dropped).
    pub fn start_untimed(scenario: &str, calls: u32) -> Sipp {
        Sipp::launch(scenario, calls, false, false)
    }

    fn launch(scenario: &str, calls: u32, tcp: bool, timeout: bool) -> Sipp {
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
        let mut args = callee_args(dir.path(), &scenario_path, port, media, calls);
        let path = |name: &str| dir.path().join(name).display().to_string();
        args.extend([
            "-ci".into(),
            "127.0.0.1".into(),
            "-cp".into(),
            control.to_string(),
            "-trace_msg".into(),
            "-message_file".into(),
            path("messages.log"),
        ]);
        if tcp {
            args.extend(["-t".into(), "t1".into()]);
        }
        if timeout {
            args.extend(["-timeout".into(), "30s".into(), "-timeout_error".into()]);
        }
        Sipp::spawn(dir, scenario, port, tcp, &args)
    }

    /// Runs sipp with `args` in `dir` (its stdout and stderr logged there) and waits until it
    /// listens on `port`; panics with its logs when it exits first or does not listen in 10 s.
    pub fn spawn(dir: TempDir, scenario: &str, port: u16, tcp: bool, args: &[String]) -> Sipp {
        let stdout = std::fs::File::create(dir.path().join("stdout.log")).expect("a log file");
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).expect("a log file");
        let child = Command::new(SIPP)
            .args(args)
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
    pub fn trunk(&self) -> String {
        let transport = if self.tcp { "tcp:" } else { "" };
        format!("{transport}127.0.0.1:{}", self.port)
    }

    pub fn try_exit(&mut self) -> Option<i32> {
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
    pub async fn exit_code(&mut self, timeout: Duration) -> i32 {
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
    pub async fn assert_success(&mut self) {
        let code = self.exit_code(Duration::from_secs(10)).await;
        assert_eq!(
            code,
            0,
            "sipp ({}) exit code: its calls did not all succeed\n{}",
            self.scenario,
            self.report()
        );
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// sipp's message trace.
    pub fn messages(&self) -> String {
        self.log("messages.log")
    }

    /// The traced SIP messages with the instant sipp logged each, in order.
    pub fn message_log(&self) -> Vec<SippMessage> {
        parse_message_log(&self.messages())
    }

    /// sipp's statistics: one row a second (and one at the end), column name → value.
    pub fn stat_rows(&self) -> Vec<HashMap<String, String>> {
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

    /// The callee hung up: sipp sent a BYE and received none (`caller` names the other side in
    /// the failure message).
    pub fn assert_callee_hung_up(&self, caller: &str) {
        let log = self.message_log();
        assert!(
            log.iter().any(|m| !m.received && m.is_request("BYE")),
            "sipp sent the BYE\n{}",
            self.report()
        );
        assert!(
            !log.iter().any(|m| m.received && m.is_request("BYE")),
            "{caller} sent no BYE of its own\n{}",
            self.report()
        );
    }

    /// What sipp logged, for failure messages (the ends of long logs).
    pub fn report(&self) -> String {
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
pub struct SippMessage {
    /// Seconds since the epoch, from the block's header line.
    pub at: f64,
    pub received: bool,
    /// The start line: `INVITE sip:… SIP/2.0` or `SIP/2.0 200 OK`.
    pub start_line: String,
    pub call_id: String,
}

impl SippMessage {
    pub fn is_request(&self, method: &str) -> bool {
        self.start_line.starts_with(&format!("{method} "))
    }
}

/// sipp writes each message as a block: a `----…---- <date> <time>.<micros>` line, a line such
/// as `UDP message received [N] bytes :` (or `… sent …`), a blank line, then the message.
pub fn parse_message_log(text: &str) -> Vec<SippMessage> {
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
pub struct SipApp {
    pub app: TestApp,
    /// Where outcall's SIP user agent listens.
    pub sip_address: std::net::SocketAddr,
    /// The back end's data directory: prompts the tests write, and `recordings/`.
    pub dir: TempDir,
}

pub struct SipOptions {
    pub trunk: String,
    /// More trunks, each `context=address`.
    pub other_trunks: Vec<String>,
    pub rtp_ports: (u16, u16),
    pub credentials: Option<(&'static str, &'static str)>,
    pub register: bool,
    pub max_call_duration: Duration,
}

impl SipOptions {
    pub fn new(trunk: String, test: u16) -> Self {
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

pub async fn spawn_sip_app(options: SipOptions) -> SipApp {
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
pub fn sine_wav(millis: u32, hz: f64) -> Vec<u8> {
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
    pub fn prompt(&self, name: &str, millis: u32) -> String {
        let media = self.dir.path().join("media");
        std::fs::create_dir_all(&media).expect("the media store");
        let path = media.join(name);
        std::fs::write(&path, sine_wav(millis, 440.0)).expect("the prompt is written");
        path.display().to_string()
    }

    /// A task with `settings` and `numbers`, started; answers its id.
    pub async fn start_task(&self, name: &str, settings: Value, numbers: &[String]) -> i64 {
        let id = self.app.create_task(name).await;
        self.app.update_task(id, settings).await;
        self.app.import(id, numbers).await;
        let started = self.app.start(&[id]).await;
        assert_eq!(started[0]["status"], "running", "{started:?}");
        id
    }

    /// Waits until the task is `done` with every number `done`; answers the numbers.
    pub async fn finished_numbers(&self, id: i64, timeout: Duration, sipp: &Sipp) -> Vec<Value> {
        self.done_numbers(id, timeout, || sipp.report()).await
    }

    /// Waits until the task is done, asserts that sipp ends with success, then checks the
    /// task's first number against `expected` (and sipp's trace); answers that number.
    pub async fn finish_one(
        &self,
        id: i64,
        timeout: Duration,
        sipp: &mut Sipp,
        expected: &Expected<'_>,
    ) -> Value {
        let numbers = self.finished_numbers(id, timeout, sipp).await;
        sipp.assert_success().await;
        assert_result(&numbers[0], expected, Some(sipp));
        numbers[0].clone()
    }

    /// The same, with `report` adding to the failure message.
    pub async fn done_numbers(
        &self,
        id: i64,
        timeout: Duration,
        report: impl Fn() -> String,
    ) -> Vec<Value> {
        self.app.done_numbers(id, timeout, report).await
    }
}

pub fn time_of(number: &Value, field: &str) -> chrono::NaiveDateTime {
    let text = number[field].as_str().unwrap_or_default();
    chrono::NaiveDateTime::parse_from_str(text, TIME_FORMAT)
        .unwrap_or_else(|_| panic!("{field} is a time: {number}"))
}

/// What a finished number must show.
pub struct Expected<'a> {
    pub cause: &'a str,
    pub sip_code: &'a str,
    pub dtmf: &'a str,
    pub answered: bool,
}

impl Expected<'static> {
    /// Answered (200), no key, ended NORMAL_CLEARING.
    pub const NORMAL_CLEARING: Expected<'static> = Expected {
        cause: "NORMAL_CLEARING",
        sip_code: "200",
        dtmf: "",
        answered: true,
    };
}

/// Checks a finished number's stored result, and that sipp saw its call (the Call-ID is our uuid).
pub fn assert_result(number: &Value, expected: &Expected, sipp: Option<&Sipp>) {
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
pub fn received_at(sipp: &Sipp, method: &str) -> Vec<f64> {
    sipp.message_log()
        .iter()
        .filter(|m| m.received && m.is_request(method))
        .map(|m| m.at)
        .collect()
}

/// Seconds (sipp's clock) from the first INVITE sipp received to the first CANCEL; asserts there
/// was a CANCEL.
pub fn rang_until_cancel(sipp: &Sipp) -> f64 {
    let invite = received_at(sipp, "INVITE");
    let cancel = received_at(sipp, "CANCEL");
    assert!(!cancel.is_empty(), "a CANCEL\n{}", sipp.report());
    cancel[0] - invite[0]
}

/// A WAV file's format: (channels, sample rate, bits per sample, data bytes).
pub fn wav_format(bytes: &[u8]) -> (u16, u32, u16, usize) {
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
