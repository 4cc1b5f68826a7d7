//! SIP benchmark: outcall in-process with its SIP back end, against a sipp callee on 127.0.0.1,
//! one task at a sustained 50 CAPS with up to 200 calls alive, for 60 s. Every call is answered
//! and plays a 3.5 s prompt as G.711 RTP, then outcall hangs up (BYE), so about 175 calls are up
//! at once, each sending 50 packets a second (sipp sends no RTP back).
//!
//! Settings by environment variable: `OUTCALL_BENCH_CAPS` (50), `OUTCALL_BENCH_PROMPT_SECONDS`
//! (3.5), `OUTCALL_BENCH_SECONDS` (60), `OUTCALL_BENCH_CHANNELS` (the task's `max_concurrency`;
//! default 200, or 1.5 x CAPS x prompt when that is more). The README's large case:
//! `OUTCALL_BENCH_CAPS=100 OUTCALL_BENCH_PROMPT_SECONDS=10 cargo bench --bench sip`.
//!
//! Prints the achieved CAPS, the most calls alive (sipp's count), the calls that failed (numbers
//! whose cause is not NORMAL_CLEARING, and sipp's failed count), the CPU seconds this process
//! (outcall) used during the run (user and system, and by thread), the most descriptors open, the
//! host's load average before and after, and the peak RSS with RSS every 10 s. A finished call's
//! SIP state lingers for rsipstack's 64*T1 (8 s here), so RSS climbs for the first seconds of a
//! run and then levels off.
//!
//! Run: `cargo bench --bench sip` (needs sipp: `apt-get install sip-tester`).

mod support;

use support::{
    bench_seconds, causes_line, cpu_seconds, cpu_seconds_of, drain_calling, load_average,
    peak_rss_mib, prompt_samples, rss_mib, setting, stat_number, user_and_system_seconds_of,
    Client,
};

use std::{
    collections::BTreeMap,
    net::UdpSocket,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use outcall::{
    audio::wav::encode_wav,
    config::{BackendKind, Config},
    db::rusqlite,
    startup::Application,
    telephony::sip::config::Trunk,
};
use serde_json::json;

/// User and system CPU seconds of this process, apart.
fn user_and_system_seconds() -> (f64, f64) {
    user_and_system_seconds_of("/proc/self/stat")
}

/// CPU seconds of each of this process's threads, by thread name, most first.
fn cpu_by_thread() -> Vec<(String, f64)> {
    let mut by_name: BTreeMap<String, f64> = BTreeMap::new();
    for entry in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let path = entry.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let Some(stat) = path.join("stat").to_str().map(cpu_seconds_of) else {
            continue;
        };
        *by_name.entry(name.trim().to_owned()).or_default() += stat;
    }
    let mut threads: Vec<(String, f64)> = by_name.into_iter().collect();
    threads.sort_by(|a, b| b.1.total_cmp(&a.1));
    threads
}

/// Open file descriptors of this process.
fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |entries| entries.count())
}
const RTP_PORTS: (u16, u16) = (40000, 49999);
/// How long calls still alive after the run may take to end.
const DRAIN: Duration = Duration::from_secs(30);
const SCENARIO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/sip_callee.xml");

/// The host's count of UDP datagrams sent (`/proc/net/snmp`): RTP, mostly, during the run.
fn udp_datagrams_sent() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "OutDatagrams")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0)
}

/// A UDP port on 127.0.0.1 nobody uses, with `port + 2` free too (sipp's media takes both).
fn free_udp_port() -> u16 {
    for _ in 0..200 {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        if port < 65000
            && !(RTP_PORTS.0..=RTP_PORTS.1).contains(&port)
            && UdpSocket::bind(("127.0.0.1", port + 2)).is_ok()
        {
            return port;
        }
    }
    panic!("no free UDP port");
}

/// sipp as the callee; killed on drop.
struct Sipp {
    child: Child,
    port: u16,
    stat_file: PathBuf,
    error_file: PathBuf,
}

impl Sipp {
    fn start(dir: &Path) -> Sipp {
        for attempt in 0..3 {
            let (port, media_port) = (free_udp_port(), free_udp_port());
            let stat_file = dir.join(format!("sipp-stat-{attempt}.csv"));
            let error_file = dir.join(format!("sipp-errors-{attempt}.log"));
            let stderr = std::fs::File::create(dir.join(format!("sipp-stderr-{attempt}.log")))
                .expect("a log file");
            let child = Command::new("sipp")
                .args(["-sf", SCENARIO])
                .args(["-i", "127.0.0.1", "-ci", "127.0.0.1", "-mi", "127.0.0.1"])
                .args(["-p", &port.to_string(), "-mp", &media_port.to_string()])
                .args(["-nostdin", "-trace_stat", "-fd", "1"])
                .arg("-stf")
                .arg(&stat_file)
                .arg("-trace_err")
                .arg("-error_file")
                .arg(&error_file)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("sipp runs (apt-get install sip-tester)");
            let mut sipp = Sipp {
                child,
                port,
                stat_file,
                error_file,
            };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(status)) = sipp.child.try_wait() {
                    eprintln!("sipp exited at start-up ({status}); retrying on other ports");
                    break;
                }
                if UdpSocket::bind(("127.0.0.1", port)).is_err() {
                    return sipp;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("sipp did not start");
    }

    fn cpu_seconds(&self) -> f64 {
        cpu_seconds_of(&format!("/proc/{}/stat", self.child.id()))
    }

    /// Soft exit (SIGUSR1: no new calls, ongoing ones finish); answers the exit code.
    fn finish(&mut self, timeout: Duration) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-USR1", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Every row of the statistics file, by column name.
    fn stats(&self) -> Vec<BTreeMap<String, String>> {
        let text = std::fs::read_to_string(&self.stat_file).unwrap_or_default();
        let mut lines = text.lines();
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
}

impl Drop for Sipp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds = bench_seconds(60);
    let caps: f64 = setting("OUTCALL_BENCH_CAPS", 50.0);
    // Each answered call plays this long a prompt, then hangs up.
    let prompt_seconds: f64 = setting("OUTCALL_BENCH_PROMPT_SECONDS", 3.5);
    let concurrency: usize = setting(
        "OUTCALL_BENCH_CHANNELS",
        ((caps * prompt_seconds * 1.5).ceil() as usize).max(200),
    );
    let load_before = load_average();
    let work = tempfile::tempdir().unwrap();
    let mut sipp = Sipp::start(work.path());

    let data_dir = work.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    // Prompts are played only from the media store.
    std::fs::create_dir_all(data_dir.join("media")).unwrap();
    let prompt_path = data_dir.join("media").join("prompt.wav");
    std::fs::write(
        &prompt_path,
        encode_wav(&prompt_samples(prompt_seconds), 1, 8000),
    )
    .unwrap();
    let mut config = Config::for_data_dir(&data_dir);
    config.admin_password = Some("bench".into());
    // The box-wide ceilings stay out of the way: the task's own limits are what is measured.
    config.dialer.max_caps = caps * 4.0;
    config.dialer.max_channels = concurrency * 4;
    config.sip.bind = "127.0.0.1:0".parse().unwrap();
    config.sip.trunks = vec![Trunk::parse(&format!("127.0.0.1:{}", sipp.port)).unwrap()];
    config.sip.rtp_ports = RTP_PORTS;
    config.sip.max_call_duration = Duration::from_secs(60);
    config.backend = BackendKind::Sip;
    // As in production: the SIP back end starts on the dialer's runtime, with the calls.
    let app = Application::build(config).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let stopper = app.stopper();
    let server = tokio::spawn(app.run_until_stopped());

    let client = Client::log_in(base, "bench").await;

    let numbers_wanted = (caps * seconds as f64 * 1.2) as usize + 100;
    let numbers = (0..numbers_wanted).map(|n| format!("2{:07}", n));
    let id = client
        .create_task_with_numbers(
            json!({"group_name": "sip-bench", "max_caps": caps, "max_concurrency": concurrency,
                   "calling_time": 10, "action": "playback",
                   "data": prompt_path.display().to_string()}),
            numbers,
        )
        .await;

    let cpu_before = cpu_seconds();
    let (user_before, system_before) = user_and_system_seconds();
    let threads_before: BTreeMap<String, f64> = cpu_by_thread().into_iter().collect();
    let sipp_cpu_before = sipp.cpu_seconds();
    let udp_before = udp_datagrams_sent();
    let started = Instant::now();
    client
        .call(
            reqwest::Method::PUT,
            "/api/out_call_tasks",
            json!({"action": "start", "data": [id.to_string()]}),
        )
        .await;
    // RSS every 10 s: a steady state, or growth with the calls placed; descriptors each second.
    let mut rss_timeline = Vec::new();
    let mut most_descriptors = open_descriptors();
    let run_end = started + Duration::from_secs(seconds);
    let mut next_rss = started + Duration::from_secs(10);
    while Instant::now() < run_end {
        let next = (Instant::now() + Duration::from_secs(1)).min(run_end);
        tokio::time::sleep_until(next.into()).await;
        most_descriptors = most_descriptors.max(open_descriptors());
        if Instant::now() >= next_rss.min(run_end) {
            rss_timeline.push((started.elapsed().as_secs(), rss_mib()));
            next_rss += Duration::from_secs(10);
        }
    }
    client
        .call(
            reqwest::Method::PUT,
            "/api/out_call_tasks",
            json!({"action": "stop", "data": [id.to_string()]}),
        )
        .await;
    let elapsed = started.elapsed();
    let cpu_used = cpu_seconds() - cpu_before;
    let (user_after, system_after) = user_and_system_seconds();
    let threads_used: Vec<(String, f64)> = cpu_by_thread()
        .into_iter()
        .map(|(name, seconds)| {
            let before = threads_before.get(&name).copied().unwrap_or(0.0);
            (name, seconds - before)
        })
        .collect();
    let sipp_cpu_used = sipp.cpu_seconds() - sipp_cpu_before;
    let udp_sent = udp_datagrams_sent().saturating_sub(udp_before);
    let load_after = load_average();

    // Let the calls still up finish, then read every number's result.
    let db = rusqlite::Connection::open(data_dir.join("outcall.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let still_calling = drain_calling(&db, id, DRAIN).await;
    let mut causes: BTreeMap<String, u64> = BTreeMap::new();
    let mut starts: Vec<i64> = Vec::new();
    {
        let mut statement = db
            .prepare(
                "SELECT cause, call_start_time FROM numbers
                 WHERE group_id = ?1 AND uuid != '' AND call_status != 'calling'",
            )
            .unwrap();
        let rows = statement
            .query_map([id], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, Option<i64>>(1)?))
            })
            .unwrap();
        for row in rows {
            let (cause, start) = row.unwrap();
            *causes.entry(cause).or_default() += 1;
            starts.extend(start);
        }
    }
    let dialed: u64 = causes.values().sum::<u64>() + still_calling as u64;
    let normal = causes.get("NORMAL_CLEARING").copied().unwrap_or(0);
    let failed_numbers = dialed - normal;
    let mut recordings = 0;
    if let Ok(entries) = std::fs::read_dir(data_dir.join("recordings")) {
        recordings = entries.count();
    }

    let sipp_exit = sipp.finish(Duration::from_secs(15));
    let stats = sipp.stats();
    let last = stats.last().cloned().unwrap_or_default();
    let max_current = stats
        .iter()
        .map(|row| stat_number(row.get("CurrentCall")))
        .max()
        .unwrap_or(0);
    let sipp_errors = std::fs::read_to_string(&sipp.error_file)
        .map(|text| text.lines().filter(|l| !l.trim().is_empty()).count())
        .unwrap_or(0);

    let achieved = dialed as f64 / elapsed.as_secs_f64();
    println!(
        "SIP benchmark: 1 task, {caps} CAPS, {concurrency} channels, {prompt_seconds} s prompt, \
         {seconds} s, sipp callee on 127.0.0.1"
    );
    println!("load average (1, 5, 15 min): {load_before} before, {load_after} after the run");
    println!(
        "calls placed: {dialed} in {:.1} s = {achieved:.2} CAPS (asked {caps}, error {:.2}%)",
        elapsed.as_secs_f64(),
        (achieved - caps).abs() / caps * 100.0
    );
    if let (Some(&first), Some(&last_start)) = (starts.iter().min(), starts.iter().max()) {
        // Starts per whole second, leaving out the first and last (partial) ones.
        let mut per_second = vec![0u32; (last_start - first + 1) as usize];
        for start in &starts {
            per_second[(start - first) as usize] += 1;
        }
        let inner = &per_second[1..per_second.len().saturating_sub(1).max(1)];
        println!(
            "  call_start_time spans {} s; starts per whole second: min {} max {} ({:?})",
            last_start - first + 1,
            inner.iter().min().unwrap_or(&0),
            inner.iter().max().unwrap_or(&0),
            per_second
        );
    }
    println!("most calls alive (sipp CurrentCall, sampled each second): {max_current}");
    println!("causes: {}", causes_line(&causes));
    println!(
        "failed calls: {failed_numbers} numbers not NORMAL_CLEARING ({still_calling} still calling \
         after {DRAIN:?}); sipp: {} incoming, {} successful, {} failed, {} retransmissions, \
         {} unexpected, {} out-of-call, {} error-log lines, exit {:?}",
        stat_number(last.get("IncomingCall(C)")),
        stat_number(last.get("SuccessfulCall(C)")),
        stat_number(last.get("FailedCall(C)")),
        stat_number(last.get("Retransmissions(C)")),
        stat_number(last.get("FailedUnexpectedMessage(C)")),
        stat_number(last.get("OutOfCallMsgs(C)")),
        sipp_errors,
        sipp_exit,
    );
    println!("recordings written: {recordings} (auto_record is off: 0 expected)");
    println!(
        "UDP datagrams sent on the host during the run: {udp_sent} ({:.0}/s; RTP of {:.0} \
         calls alive would be {:.0}/s)",
        udp_sent as f64 / elapsed.as_secs_f64(),
        caps * prompt_seconds,
        caps * prompt_seconds * 50.0
    );
    println!(
        "CPU (outcall, this process): {cpu_used:.2} s in {:.1} s = {:.1}% of one core; \
         sipp used {sipp_cpu_used:.2} s",
        elapsed.as_secs_f64(),
        cpu_used / elapsed.as_secs_f64() * 100.0
    );
    println!(
        "  of which user {:.2} s, system {:.2} s; by thread: {}",
        user_after - user_before,
        system_after - system_before,
        threads_used
            .iter()
            .filter(|(_, seconds)| *seconds >= 0.05)
            .map(|(name, seconds)| format!("{name} {seconds:.2} s"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("most open file descriptors (sampled each second): {most_descriptors}");
    println!(
        "peak RSS: {:.1} MiB; RSS by time: {}",
        peak_rss_mib(),
        rss_timeline
            .iter()
            .map(|(at, mib)| format!("{at} s {mib:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if sipp_errors > 0 {
        let text = std::fs::read_to_string(&sipp.error_file).unwrap_or_default();
        println!("sipp's error log (first lines):");
        for line in text.lines().take(10) {
            println!("  {line}");
        }
    }

    stopper.stop().await;
    let _ = server.await;
}
