//! FreeSWITCH benchmark (live only): the release binary with `--backend freeswitch` against a
//! real FreeSWITCH (ours from `/opt/freeswitch` on `tests/freeswitch/conf/`, or
//! `OUTCALL_TEST_FREESWITCH=host:port:password`; see `tests/common/freeswitch.rs`), one task at
//! a sustained 50 CAPS for 60 s through the default dial string `loopback/{number}/context-1`,
//! which the switch routes out to a sipp callee. Every call is answered, the switch plays a 2 s
//! prompt and hangs up. Without a FreeSWITCH it prints `skipped: no FreeSWITCH …` and ends.
//!
//! Settings by environment variable: `OUTCALL_BENCH_CAPS` (50), `OUTCALL_BENCH_SECONDS` (60),
//! `OUTCALL_BENCH_PROMPT_SECONDS` (2), `OUTCALL_BENCH_CHANNELS` (the task's `max_concurrency`;
//! default 200, or 1.5 x CAPS x prompt when that is more), `OUTCALL_BENCH_DIAL_STRING` (the
//! default dial string).
//!
//! Prints the calls placed and the achieved CAPS, the most calls up (sipp's `CurrentCall`) and
//! channels at the switch (`show channels count`), sampled each second, the calls that failed (numbers whose cause is not
//! NORMAL_CLEARING, and sipp's failed count), the CPU share of outcall (seconds of CPU per
//! second of run), of the switch (ours only) and of sipp, and outcall's peak RSS with RSS every
//! 10 s.
//!
//! Run: `cargo bench --bench freeswitch`.

// The tests' helpers (the FreeSWITCH harness, the binary as a process, the API client).
#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use common::{
    freeswitch::{sipp_with, wait_backend_ok, Availability, LiveSwitch},
    process::{database, proc_status_kib, Outcall},
};
use outcall::{audio::wav::encode_wav, db::rusqlite};
use serde_json::json;
use support::{
    causes_line, drain_calling, load_average, prompt_samples, setting, stat_number,
    user_and_system_seconds_of,
};

/// How long calls still alive after the run may take to end.
const DRAIN: Duration = Duration::from_secs(30);

/// User + system CPU seconds of a process.
fn cpu_seconds(pid: u32) -> f64 {
    let (user, system) = user_and_system_seconds_of(&format!("/proc/{pid}/stat"));
    user + system
}

/// The prompt as a WAV file.
fn prompt(seconds: f64) -> Vec<u8> {
    encode_wav(&prompt_samples(seconds), 1, 8000)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let switch = match LiveSwitch::find() {
        Availability::Live(switch) => switch,
        Availability::Skipped(why) => {
            println!("FreeSWITCH benchmark skipped: {why}");
            return;
        }
    };
    let seconds: u64 = setting("OUTCALL_BENCH_SECONDS", 60);
    let caps: f64 = setting("OUTCALL_BENCH_CAPS", 50.0);
    let prompt_seconds: f64 = setting("OUTCALL_BENCH_PROMPT_SECONDS", 2.0);
    let concurrency: usize = setting(
        "OUTCALL_BENCH_CHANNELS",
        ((caps * prompt_seconds * 1.5).ceil() as usize).max(200),
    );
    let dial_string: String = setting(
        "OUTCALL_BENCH_DIAL_STRING",
        "loopback/{number}/{dest_context}".to_owned(),
    );
    let load_before = load_average();
    let work = tempfile::tempdir().unwrap();
    let mut sipp = sipp_with("answer_wait_bye.xml", switch.sipp_port, 1_000_000, false);

    let launch = Outcall::in_dir(work.path())
        .args(switch.outcall_args())
        .args(["--esl-dial-string", &dial_string])
        .args(["--max-caps", &(caps * 4.0).to_string()])
        .args(["--max-channels", &(concurrency * 4).to_string()])
        .env("OUTCALL_LOG", "warn");
    let mut server = launch.spawn();
    let api = server.connect().await;
    let pid = server.pid();
    wait_backend_ok(&api, Duration::from_secs(20)).await;

    let media = {
        let boundary = "----outcall-bench-boundary";
        let mut body = Vec::new();
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; \
                 filename=\"prompt.wav\"\r\nContent-Type: audio/wav\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(&prompt(prompt_seconds));
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        common::success_data(&api.post_multipart("/api/media_files", boundary, body).await)
    };
    let wanted = (caps * seconds as f64 * 1.2) as usize + 100;
    let numbers: Vec<String> = (0..wanted).map(|n| format!("2{n:07}")).collect();
    let id = api
        .ok(
            reqwest::Method::POST,
            "/api/out_call_tasks",
            Some(
                json!({"group_name": "freeswitch-bench", "description": "bench",
                        "max_caps": caps, "max_concurrency": concurrency, "calling_time": 10,
                        "dest_context": "context-1", "action": "playback",
                        "data": serde_json::to_string(&media).unwrap()}),
            ),
        )
        .await["data"]
        .as_i64()
        .expect("the task's id");
    api.import(id, &numbers).await;

    let cpu_before = cpu_seconds(pid);
    let switch_pid = switch.pid();
    let switch_cpu_before = switch_pid.map(cpu_seconds);
    let sipp_pid = sipp.child.as_ref().map(|c| c.id()).unwrap();
    let sipp_cpu_before = cpu_seconds(sipp_pid);
    let started = Instant::now();
    api.start(&[id]).await;
    let run_end = started + Duration::from_secs(seconds);
    let mut rss_timeline = Vec::new();
    let mut next_rss = started + Duration::from_secs(10);
    let mut most_channels = 0u64;
    while Instant::now() < run_end {
        let next = (Instant::now() + Duration::from_secs(1)).min(run_end);
        tokio::time::sleep_until(next.into()).await;
        let channels = tokio::task::spawn_blocking({
            let (esl, password) = (switch.esl.clone(), switch.password.clone());
            move || common::freeswitch::esl_api(&esl, &password, "show channels count")
        })
        .await
        .unwrap()
        .unwrap_or_default();
        if let Some(n) = channels
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
        {
            most_channels = most_channels.max(n);
        }
        if Instant::now() >= next_rss.min(run_end) {
            rss_timeline.push((
                started.elapsed().as_secs(),
                proc_status_kib(pid, "VmRSS") as f64 / 1024.0,
            ));
            next_rss += Duration::from_secs(10);
        }
    }
    api.stop(&[id]).await;
    let elapsed = started.elapsed();
    let cpu_used = cpu_seconds(pid) - cpu_before;
    let switch_cpu_used = switch_pid
        .zip(switch_cpu_before)
        .map(|(p, before)| cpu_seconds(p) - before);
    let sipp_cpu_used = cpu_seconds(sipp_pid) - sipp_cpu_before;
    let load_after = load_average();
    let peak_rss = proc_status_kib(pid, "VmHWM") as f64 / 1024.0;

    let db = rusqlite::Connection::open(database(work.path())).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let still_calling = drain_calling(&db, id, DRAIN).await;
    let mut causes: BTreeMap<String, u64> = BTreeMap::new();
    {
        let mut statement = db
            .prepare(
                "SELECT cause FROM numbers
                 WHERE group_id = ?1 AND uuid != '' AND call_status != 'calling'",
            )
            .unwrap();
        for cause in statement
            .query_map([id], |row| row.get::<_, String>(0))
            .unwrap()
        {
            *causes.entry(cause.unwrap()).or_default() += 1;
        }
    }
    let dialed: u64 = causes.values().sum::<u64>() + still_calling as u64;
    let failed = dialed - causes.get("NORMAL_CLEARING").copied().unwrap_or(0);
    let rows = sipp.stat_rows();
    let last = rows.last().cloned().unwrap_or_default();
    let most_calls = rows
        .iter()
        .map(|row| stat_number(row.get("CurrentCall")))
        .max()
        .unwrap_or(0);
    drop(server);
    let _ = sipp.try_exit();

    let achieved = dialed as f64 / elapsed.as_secs_f64();
    println!(
        "FreeSWITCH benchmark: 1 task, {caps} CAPS, {concurrency} channels, {prompt_seconds} s \
         prompt, {seconds} s, dial string {dial_string}, switch {} ({}), sipp callee",
        switch.esl,
        if switch.is_own() {
            "ours"
        } else {
            "OUTCALL_TEST_FREESWITCH"
        }
    );
    println!("load average (1, 5, 15 min): {load_before} before, {load_after} after the run");
    println!(
        "calls placed: {dialed} in {:.1} s = {achieved:.2} CAPS (asked {caps})",
        elapsed.as_secs_f64()
    );
    println!(
        "most calls up: {most_calls} at sipp (CurrentCall, each second); {most_channels} channels \
         at the switch (show channels count, each second; a loopback call is 3 channels)"
    );
    println!("causes: {}", causes_line(&causes));
    println!(
        "failed calls: {failed} numbers not NORMAL_CLEARING ({still_calling} still calling after \
         {DRAIN:?}); sipp: {} incoming, {} successful, {} failed",
        stat_number(last.get("IncomingCall(C)")),
        stat_number(last.get("SuccessfulCall(C)")),
        stat_number(last.get("FailedCall(C)")),
    );
    let secs = elapsed.as_secs_f64();
    println!(
        "outcall CPU: {cpu_used:.2} s in {secs:.1} s = {:.1}% of one core",
        cpu_used / secs * 100.0
    );
    match switch_cpu_used {
        Some(used) => println!(
            "FreeSWITCH CPU: {used:.2} s = {:.1}% of one core",
            used / secs * 100.0
        ),
        None => println!("FreeSWITCH CPU: not measured (not our process)"),
    }
    println!(
        "sipp CPU: {sipp_cpu_used:.2} s = {:.1}% of one core",
        sipp_cpu_used / secs * 100.0
    );
    println!(
        "outcall peak RSS: {peak_rss:.1} MiB; RSS by time: {}",
        rss_timeline
            .iter()
            .map(|(t, mib)| format!("{t} s {mib:.1} MiB"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}
