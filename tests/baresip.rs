//! End to end against a real SIP phone: baresip (Debian's `baresip-core`) as the callee.
//!
//! outcall's SIP back end calls baresip, which answers by itself, records what it hears
//! (`sndfile`: `dump-*-dec.wav`), sends its own audio from a WAV file, and presses keys when told
//! to over its TCP control socket (`ctrl_tcp`, netstring-framed JSON). The test checks that the
//! prompt arrives intact (cross-correlation after the G.711 round trip), that the keys baresip
//! sends end up in the number's `dtmf`, and that the call's recording holds both directions.
//!
//! Everything is on 127.0.0.1, on free ports; baresip is killed when the test ends, and quits by
//! itself (`-t`) in any case. Every wait is bounded.

mod common;

use std::{
    collections::VecDeque,
    net::{TcpListener, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{
    sipp::{spawn_sip_app, SipOptions},
    TestApp,
};
use outcall::audio::wav::{encode_wav, prompt_from_wav};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// The number outcall dials; baresip's account user, or it answers 404.
const NUMBER: &str = "5551234";
/// The keys baresip presses while the prompt plays, one `sndcode` each. The repeated `1` is a
/// second press (a new event with its own timestamp), not a repeat packet of the first.
const KEYS: [&str; 4] = ["1", "2", "1", "#"];
const RATE: usize = 8000;
/// Where baresip is installed by Debian.
const MODULE_PATH: &str = "/usr/lib/baresip/modules";
/// baresip quits by itself after this long, should the test die without killing it.
const BARESIP_LIFETIME_SECONDS: u32 = 40;

// ---------------------------------------------------------------------------------------------
// Signals
// ---------------------------------------------------------------------------------------------

/// The prompt outcall plays: 2.6 s that cannot be mistaken for anything else, a rising chirp,
/// a gap, three tones and a falling chirp.
fn prompt_signal() -> Vec<i16> {
    let mut samples = Vec::new();
    let mut phase = 0.0f64;
    let mut sweep = |samples: &mut Vec<i16>, from: f64, to: f64, seconds: f64, amplitude: f64| {
        let n = (seconds * RATE as f64) as usize;
        for i in 0..n {
            let frequency = from + (to - from) * i as f64 / n as f64;
            phase += 2.0 * std::f64::consts::PI * frequency / RATE as f64;
            // A short fade at both ends, so that the pieces do not click.
            let fade = ((i.min(n - 1 - i)) as f64 / 80.0).min(1.0);
            samples.push((amplitude * fade * phase.sin()).round() as i16);
        }
    };
    sweep(&mut samples, 300.0, 3400.0, 1.0, 9000.0);
    samples.extend(std::iter::repeat_n(0, RATE / 10));
    sweep(&mut samples, 523.0, 523.0, 0.3, 12000.0);
    sweep(&mut samples, 1319.0, 1319.0, 0.3, 6000.0);
    sweep(&mut samples, 2093.0, 2093.0, 0.3, 9000.0);
    sweep(&mut samples, 3000.0, 500.0, 0.6, 7000.0);
    samples
}

/// One second of deterministic noise: baresip plays it over and over as its own audio, so any
/// second of what outcall receives must match it at some rotation.
fn callee_noise_period() -> Vec<i16> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    (0..RATE)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 48) as i16) / 4
        })
        .collect()
}

/// The highest normalised cross-correlation of `reference` against any window of `signal` of
/// the same length, and the window's offset. 0 when `signal` is shorter than `reference`.
fn best_correlation(reference: &[i16], signal: &[i16]) -> (f64, usize) {
    if reference.is_empty() || signal.len() < reference.len() {
        return (0.0, 0);
    }
    let reference: Vec<f32> = reference.iter().map(|&s| s as f32).collect();
    let signal: Vec<f32> = signal.iter().map(|&s| s as f32).collect();
    let reference_energy: f64 = reference.iter().map(|&s| (s as f64) * (s as f64)).sum();
    let n = reference.len();
    let mut window_energy: f64 = signal[..n].iter().map(|&s| (s as f64) * (s as f64)).sum();
    let mut best = (0.0, 0);
    for offset in 0..=signal.len() - n {
        if offset > 0 {
            let gone = signal[offset - 1] as f64;
            let new = signal[offset + n - 1] as f64;
            window_energy += new * new - gone * gone;
        }
        if window_energy > 0.0 {
            let dot = dot(&reference, &signal[offset..offset + n]);
            let correlation = dot / (reference_energy * window_energy.max(0.0)).sqrt();
            if correlation > best.0 {
                best = (correlation, offset);
            }
        }
    }
    best
}

/// A dot product in eight independent lanes: fast enough unoptimised.
fn dot(a: &[f32], b: &[f32]) -> f64 {
    let mut lanes = [0f32; 8];
    let (a_chunks, b_chunks) = (a.chunks_exact(8), b.chunks_exact(8));
    let (a_rest, b_rest) = (a_chunks.remainder(), b_chunks.remainder());
    for (x, y) in a_chunks.zip(b_chunks) {
        for lane in 0..8 {
            lanes[lane] += x[lane] * y[lane];
        }
    }
    let rest: f32 = a_rest.iter().zip(b_rest).map(|(x, y)| x * y).sum();
    lanes.iter().map(|&l| l as f64).sum::<f64>() + rest as f64
}

/// A WAV file's 16-bit samples, channels interleaved, and its channel count and rate; read by
/// hand so that the header's own claims are checked, not converted away.
fn read_pcm16_wav(path: &Path) -> (Vec<i16>, u16, u32) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert!(
        bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WAVE",
        "{} is not a WAV file",
        path.display()
    );
    let mut at = 12;
    let mut format = None;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let body = at + 8;
        if id == b"fmt " {
            let tag = u16::from_le_bytes([bytes[body], bytes[body + 1]]);
            let channels = u16::from_le_bytes([bytes[body + 2], bytes[body + 3]]);
            let rate = u32::from_le_bytes(bytes[body + 4..body + 8].try_into().unwrap());
            let bits = u16::from_le_bytes([bytes[body + 14], bytes[body + 15]]);
            assert_eq!((tag, bits), (1, 16), "{}: not 16-bit PCM", path.display());
            format = Some((channels, rate));
        } else if id == b"data" {
            let (channels, rate) = format.expect("fmt before data");
            let end = (body + size).min(bytes.len());
            let samples = bytes[body..end]
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect();
            return (samples, channels, rate);
        }
        at = body + size + (size & 1);
    }
    panic!("{} has no data chunk", path.display());
}

fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    (samples
        .iter()
        .map(|&s| (s as f64) * (s as f64))
        .sum::<f64>()
        / samples.len() as f64)
        .sqrt()
}

// ---------------------------------------------------------------------------------------------
// baresip
// ---------------------------------------------------------------------------------------------

/// A port free for both UDP and TCP on 127.0.0.1 (baresip's SIP listens on both).
fn free_port() -> u16 {
    for _ in 0..100 {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("a TCP port");
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP");
}

/// A running baresip; killed on drop.
struct Baresip {
    child: Child,
    sip_port: u16,
    ctrl_port: u16,
    snd_dir: PathBuf,
    log: PathBuf,
}

impl Baresip {
    /// Writes a configuration under `dir` and starts baresip with it, retrying with other ports
    /// if another program took one of them meanwhile. Answers once its control socket accepts.
    async fn start(dir: &Path, source_wav: &Path) -> Baresip {
        let mut last_log = String::new();
        for attempt in 0..3 {
            let conf = dir.join(format!("conf{attempt}"));
            let snd_dir = dir.join(format!("snd{attempt}"));
            std::fs::create_dir_all(&conf).unwrap();
            std::fs::create_dir_all(&snd_dir).unwrap();
            let (sip_port, ctrl_port) = (free_port(), free_port());
            std::fs::write(
                conf.join("config"),
                baresip_config(sip_port, ctrl_port, source_wav, &snd_dir),
            )
            .unwrap();
            std::fs::write(conf.join("accounts"), baresip_account()).unwrap();
            let log = conf.join("baresip.log");
            let log_file = std::fs::File::create(&log).unwrap();
            let child = Command::new("baresip")
                .arg("-f")
                .arg(&conf)
                .arg("-t")
                .arg(BARESIP_LIFETIME_SECONDS.to_string())
                .arg("-4")
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().unwrap())
                .stderr(log_file)
                .spawn()
                .expect("baresip runs (apt-get install baresip-core)");
            let mut baresip = Baresip {
                child,
                sip_port,
                ctrl_port,
                snd_dir,
                log,
            };
            if baresip.wait_ready().await {
                return baresip;
            }
            last_log = baresip.log_text();
            // Dropped here: killed.
        }
        panic!("baresip did not start; its last log:\n{last_log}");
    }

    /// Whether baresip came up: its control socket accepts and its SIP port is taken.
    async fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if TcpStream::connect(("127.0.0.1", self.ctrl_port))
                .await
                .is_ok()
            {
                // Ours, not someone else's: the SIP port must be bound too.
                return UdpSocket::bind(("127.0.0.1", self.sip_port)).is_err()
                    && self.log_text().contains("baresip is ready");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The WAV files baresip's `sndfile` wrote of what it received.
    fn received_dumps(&self) -> Vec<PathBuf> {
        let mut dumps: Vec<PathBuf> = std::fs::read_dir(&self.snd_dir)
            .unwrap()
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| {
                let name = path.file_name().unwrap().to_string_lossy();
                name.starts_with("dump-") && name.ends_with("-dec.wav")
            })
            .collect();
        dumps.sort();
        dumps
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The configuration that makes baresip a scriptable, recording, auto-answering callee.
///
/// - `module_path`: Debian's module directory (without it baresip looks in `.`).
/// - `net_interface 127.0.0.1`: else its SDP may advertise another interface.
/// - `audio_source aufile,<wav>`: its outgoing audio; it hangs up when the file ends.
/// - `sndfile` + `snd_path`: writes `dump-<time>-dec.wav` (what it received) and `-enc.wav`.
/// - `jitter_buffer_delay 0-0`: baresip decodes (and `sndfile` records) one frame per packet that
///   arrives; with its default jitter buffer (5-10 frames) the last ~100 ms of any stream stay
///   in the buffer when the packets stop, and never reach the dump.
/// - no `audio_player`: aufile in 1.0 is a source only, and nothing needs to be played.
fn baresip_config(sip_port: u16, ctrl_port: u16, source_wav: &Path, snd_dir: &Path) -> String {
    format!(
        "\
module_path		{MODULE_PATH}
poll_method		epoll
sip_listen		127.0.0.1:{sip_port}
net_interface		127.0.0.1
audio_source		aufile,{source}
module			g711.so
module			aufile.so
module			sndfile.so
snd_path		{snd}
module_tmp		account.so
module_app		menu.so
module_app		ctrl_tcp.so
ctrl_tcp_listen		127.0.0.1:{ctrl_port}
jitter_buffer_delay	0-0
",
        source = source_wav.display(),
        snd = snd_dir.display(),
    )
}

fn baresip_account() -> String {
    format!("<sip:{NUMBER}@127.0.0.1>;regint=0;answermode=auto;audio_codecs=PCMU,PCMA\n")
}

/// baresip's control socket: netstring-framed JSON, commands answered with a `response`, and
/// `event`s pushed whenever something happens.
struct Control {
    stream: TcpStream,
    buffer: Vec<u8>,
    /// Events read while waiting for a response.
    events: VecDeque<Value>,
    /// Every message received, for failure reports.
    seen: Vec<Value>,
    next_token: u32,
}

impl Control {
    async fn connect(port: u16) -> Control {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("baresip's control socket");
        Control {
            stream,
            buffer: Vec::new(),
            events: VecDeque::new(),
            seen: Vec::new(),
            next_token: 1,
        }
    }

    /// The next message, or `None` at the deadline.
    async fn read_message(&mut self, deadline: tokio::time::Instant) -> Option<Value> {
        loop {
            if let Some(message) = self.take_netstring() {
                let value: Value = serde_json::from_slice(&message).unwrap_or_else(|e| {
                    panic!(
                        "baresip sent bad JSON ({e}): {}",
                        String::from_utf8_lossy(&message)
                    )
                });
                self.seen.push(value.clone());
                return Some(value);
            }
            let mut chunk = [0u8; 4096];
            let read = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await;
            match read {
                Err(_) => return None,
                Ok(Ok(0)) => panic!("baresip closed its control socket; seen {:?}", self.seen),
                Ok(Ok(n)) => self.buffer.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => panic!("reading baresip's control socket: {e}"),
            }
        }
    }

    /// `<length>:<bytes>,` off the front of the buffer, once it is all there.
    fn take_netstring(&mut self) -> Option<Vec<u8>> {
        let colon = self.buffer.iter().position(|&b| b == b':')?;
        let length: usize = std::str::from_utf8(&self.buffer[..colon])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "not a netstring: {:?}",
                    String::from_utf8_lossy(&self.buffer)
                )
            });
        let end = colon + 1 + length;
        if self.buffer.len() <= end {
            return None;
        }
        assert_eq!(self.buffer[end], b',', "netstring without its comma");
        let message = self.buffer[colon + 1..end].to_vec();
        self.buffer.drain(..=end);
        Some(message)
    }

    /// Sends a command and waits for its response, keeping events for later.
    async fn command(&mut self, command: &str, params: &str) -> Value {
        let token = format!("t{}", self.next_token);
        self.next_token += 1;
        let body = json!({"command": command, "params": params, "token": token}).to_string();
        let framed = format!("{}:{},", body.len(), body);
        self.stream
            .write_all(framed.as_bytes())
            .await
            .expect("writing to baresip's control socket");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        loop {
            let Some(message) = self.read_message(deadline).await else {
                panic!(
                    "no response to {command} {params:?} within 3 s; seen {:?}",
                    self.seen
                );
            };
            if message["response"] == true && message["token"] == token.as_str() {
                return message;
            }
            if message["event"] == true {
                self.events.push_back(message);
            }
        }
    }

    /// Waits for an event of this `type`, dropping others before it.
    async fn event(&mut self, kind: &str, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let message = match self.events.pop_front() {
                Some(event) => event,
                None => match self.read_message(deadline).await {
                    Some(message) => message,
                    None => panic!(
                        "no {kind} event from baresip within {timeout:?}; seen {:?}",
                        self.seen
                    ),
                },
            };
            if message["event"] == true && message["type"] == kind {
                return message;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// outcall
// ---------------------------------------------------------------------------------------------

/// Waits (bounded) until the task's only number has a final result; answers the number.
async fn wait_for_result(app: &TestApp, id: i64, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let numbers = app.all_numbers(id).await;
        assert_eq!(numbers.len(), 1, "{numbers:?}");
        let number = numbers[0].clone();
        if number["call_status"] != "calling"
            && number["call_status"] != "init"
            && number["cause"] != ""
        {
            return number;
        }
        if Instant::now() >= deadline {
            panic!("no result for the call within {timeout:?}: {number}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_hears_the_prompt_and_its_keys_reach_the_number() {
    tokio::time::timeout(Duration::from_secs(20), call_baresip())
        .await
        .expect("the whole exchange with baresip takes under 20 s");
}

async fn call_baresip() {
    let work = TempDir::new().unwrap();
    let prompt = prompt_signal();
    let prompt_path = work.path().join("prompt.wav");
    std::fs::write(&prompt_path, encode_wav(&prompt, 1, RATE as u32)).unwrap();
    // What outcall reads back is exactly what we wrote: the prompt reaches the codec untouched.
    assert_eq!(
        prompt_from_wav(&std::fs::read(&prompt_path).unwrap()).unwrap(),
        prompt
    );
    // baresip's own audio: long enough that its source never runs out during the call.
    let noise = callee_noise_period();
    let source: Vec<i16> = noise.iter().copied().cycle().take(30 * RATE).collect();
    let source_path = work.path().join("callee-source.wav");
    std::fs::write(&source_path, encode_wav(&source, 1, RATE as u32)).unwrap();

    let baresip = Baresip::start(work.path(), &source_path).await;
    let mut control = Control::connect(baresip.ctrl_port).await;

    // outcall with its SIP back end pointed at baresip; recordings land in its data directory.
    let mut options = SipOptions::new(format!("127.0.0.1:{}", baresip.sip_port), 0);
    options.rtp_ports = (29000, 29999);
    options.max_call_duration = Duration::from_secs(20);
    let outcall = spawn_sip_app(options).await;
    let (app, backend_dir) = (&outcall.app, &outcall.dir);
    // Prompts are played only from the back end's media store.
    let stored_prompt = backend_dir.path().join("media").join("prompt.wav");
    std::fs::copy(&prompt_path, &stored_prompt).unwrap();
    let id = app.create_task("baresip").await;
    app.update_task(
        id,
        json!({"max_caps": 1, "max_concurrency": 1, "calling_time": 8, "auto_record": 1,
               "action": "playback", "data": stored_prompt.display().to_string()}),
    )
    .await;
    app.import(id, &[NUMBER.to_owned()]).await;
    let started = app.start(&[id]).await;
    assert_eq!(started[0]["status"], "running", "{started:?}");

    // Keys while the prompt plays: it lasts 2.6 s from the answer.
    let established = control
        .event("CALL_ESTABLISHED", Duration::from_secs(8))
        .await;
    let pressed_at = Instant::now();
    for key in KEYS {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let response = control.command("sndcode", key).await;
        assert_eq!(response["ok"], true, "sndcode {key}: {response}");
    }
    let keys_took = pressed_at.elapsed();
    let closed = control.event("CALL_CLOSED", Duration::from_secs(8)).await;
    let number = wait_for_result(app, id, Duration::from_secs(5)).await;

    let report = format!(
        "number {number}\nkeys sent within {keys_took:?} of the answer (the prompt lasts 2.6 s)\n\
         established {established}\nclosed {closed}\nbaresip log:\n{}",
        baresip.log_text()
    );
    assert_eq!(number["dest_number"], NUMBER, "{report}");
    assert_eq!(number["call_status"], "done", "{report}");
    assert_eq!(number["cause"], "NORMAL_CLEARING", "{report}");
    assert_eq!(number["sip_code"], "200", "{report}");
    assert_ne!(number["call_answer_time"], "", "{report}");
    assert_eq!(
        number["dtmf"],
        KEYS.concat(),
        "the keys baresip sent\n{report}"
    );

    // (a) baresip heard the prompt, whole: it lines up with what it received at ≥ 0.95.
    let dumps = baresip.received_dumps();
    assert_eq!(
        dumps.len(),
        1,
        "one received-audio dump: {dumps:?}\n{report}"
    );
    let (received, channels, rate) = read_pcm16_wav(&dumps[0]);
    assert_eq!((channels, rate), (1, RATE as u32), "{}", dumps[0].display());
    let (correlation, offset) = best_correlation(&prompt, &received);
    eprintln!(
        "baresip received {} samples; the prompt ({} samples) at offset {offset}, correlation {correlation:.4}",
        received.len(),
        prompt.len()
    );
    assert!(
        correlation >= 0.95,
        "baresip received the prompt at correlation {correlation:.4} (offset {offset}, \
         {} samples received for a {}-sample prompt)\n{report}",
        received.len(),
        prompt.len()
    );

    // The recording: stereo 8 kHz, the prompt as sent on the left, baresip's noise on the right.
    let record_path = number["record_path"].as_str().unwrap();
    assert!(!record_path.is_empty(), "no record_path\n{report}");
    let record_path = Path::new(record_path);
    assert!(
        record_path.starts_with(backend_dir.path().join("recordings")),
        "{}",
        record_path.display()
    );
    let (recording, channels, rate) = read_pcm16_wav(record_path);
    assert_eq!(
        (channels, rate),
        (2, RATE as u32),
        "{}",
        record_path.display()
    );
    let sent: Vec<i16> = recording.iter().step_by(2).copied().collect();
    let heard: Vec<i16> = recording.iter().skip(1).step_by(2).copied().collect();
    assert!(
        sent.len() >= prompt.len(),
        "the recording is {} samples long, shorter than the prompt",
        sent.len()
    );
    let (correlation, _) = best_correlation(&prompt, &sent);
    eprintln!(
        "recording: {} samples, sent channel correlation {correlation:.4}",
        sent.len()
    );
    assert!(
        correlation >= 0.95,
        "recording, sent channel: correlation {correlation:.4} with the prompt"
    );
    // What we heard is baresip's noise, all along: every 0.1 s slice, one each quarter second
    // from 0.25 s to the end of the prompt, lines up with some rotation of its 1 s period (keys
    // and all: baresip 1.0 keeps sending audio while it sends a key).
    let doubled: Vec<i16> = noise.iter().chain(noise.iter()).copied().collect();
    let heard_until = heard.len().min(prompt.len());
    let mut slices = Vec::new();
    for start in (RATE / 4..heard_until - RATE / 10).step_by(RATE / 4) {
        let slice = &heard[start..start + RATE / 10];
        let (correlation, rotation) = best_correlation(slice, &doubled);
        slices.push((start, correlation, rotation % RATE, rms(slice)));
    }
    eprintln!("recording, received channel: (start, correlation, rotation, rms) {slices:.3?}");
    assert!(slices.len() >= 8, "{slices:?}");
    for &(start, correlation, _, rms) in &slices {
        assert!(
            correlation >= 0.95,
            "recording, received channel at sample {start}: correlation {correlation:.4} with \
             baresip's audio (rms {rms:.0}); all: {slices:.3?}"
        );
    }
    // The measure tells signals apart: baresip's noise is nothing like the prompt.
    let (unrelated, _) = best_correlation(&prompt, &heard);
    assert!(
        unrelated < 0.3,
        "the prompt correlates at {unrelated:.4} with baresip's noise: the check proves nothing"
    );
}
