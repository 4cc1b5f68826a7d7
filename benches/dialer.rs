//! Dialer benchmark: 10 sim tasks together at an aggregate 200 CAPS and up to 1,000 concurrent
//! calls for 60 s (OUTCALL_BENCH_SECONDS to change). Prints per-task achieved CAPS against the asked
//! pace, the most calls alive, CPU seconds used and peak RSS of the process.
//!
//! OUTCALL_BENCH_TASKS (default 10) sets the number of tasks, OUTCALL_BENCH_TASK_NUMBERS the
//! numbers each gets (default: enough for the run, 1.2 × CAPS × seconds); e.g. one task of a
//! million numbers: `OUTCALL_BENCH_TASKS=1 OUTCALL_BENCH_TASK_NUMBERS=1000000`. The pace held
//! and the CPU used then show whether claiming the next number stays cheap on a big task.
//!
//! Run: `cargo bench --bench dialer`

mod support;

use support::{bench_seconds, cpu_seconds, peak_rss_mib, Client};

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use outcall::{
    config::Config,
    startup::Application,
    telephony::sim::{max_concurrent, max_starts_in_window, SimBackend},
};
use serde_json::json;

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|s| s.parse().ok())
}
const CAPS_PER_TASK: f64 = 20.0;
const CONCURRENCY_PER_TASK: usize = 100;
/// Numbers ending in 1 ring 2 s and talk 3 s; scaled by 0.96 a call holds a slot 4.8 s, so a task at
/// 20 CAPS keeps about 96 of its 100 slots busy.
const TIME_SCALE: f64 = 0.96;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds = bench_seconds(60);
    let tasks = env_usize("OUTCALL_BENCH_TASKS").unwrap_or(10);
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_data_dir(data_dir.path());
    config.admin_password = Some("bench".into());
    config.dialer.max_caps = CAPS_PER_TASK * tasks as f64;
    config.dialer.max_channels = CONCURRENCY_PER_TASK * tasks;
    let sim = Arc::new(SimBackend::new(TIME_SCALE).with_history());
    let app = Application::build_with_backend(config, sim.clone())
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let stopper = app.stopper();
    let server = tokio::spawn(app.run_until_stopped());

    let client = Client::log_in(base, "bench").await;

    let numbers_per_task = env_usize("OUTCALL_BENCH_TASK_NUMBERS")
        .unwrap_or((CAPS_PER_TASK * seconds as f64 * 1.2) as usize);
    let import_started = Instant::now();
    let mut ids = Vec::new();
    for task in 0..tasks {
        let numbers = (0..numbers_per_task).map(|n| format!("{}{:06}1", 100 + task, n));
        let id = client
            .create_task_with_numbers(
                json!({"group_name": format!("bench-{task}"), "max_caps": CAPS_PER_TASK,
                       "max_concurrency": CONCURRENCY_PER_TASK, "action": "playback", "data": "prompt.wav"}),
                numbers,
            )
            .await;
        ids.push(id.to_string());
    }

    let import_seconds = import_started.elapsed().as_secs_f64();
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    client
        .call(
            reqwest::Method::PUT,
            "/api/out_call_tasks",
            json!({"action": "start", "data": ids}),
        )
        .await;
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let elapsed = started.elapsed();
    let cpu_used = cpu_seconds() - cpu_before;
    client
        .call(
            reqwest::Method::PUT,
            "/api/out_call_tasks",
            json!({"action": "stop", "data": ids}),
        )
        .await;

    let calls = sim.calls();
    let window = Duration::from_secs(1);
    println!("dialer benchmark: {tasks} sim tasks of {numbers_per_task} numbers, {CAPS_PER_TASK} CAPS and {CONCURRENCY_PER_TASK} channels each, {seconds} s (imported in {import_seconds:.1} s)");
    println!(
        "{:>6} {:>10} {:>10} {:>9} {:>14} {:>14}",
        "task", "asked", "achieved", "error", "max in 1 s", "max alive"
    );
    let mut worst_error: f64 = 0.0;
    let mut over_limit = 0;
    for (index, id) in ids.iter().enumerate() {
        let id: i64 = id.parse().unwrap();
        let task_calls: Vec<_> = calls.iter().filter(|c| c.task_id == id).collect();
        // The pace between the task's first and last start: what the pacer holds, without the
        // start-up of the task itself.
        let first = task_calls.iter().map(|c| c.started).min().unwrap();
        let last = task_calls.iter().map(|c| c.started).max().unwrap();
        let achieved = (task_calls.len() - 1) as f64 / last.duration_since(first).as_secs_f64();
        let error = (achieved - CAPS_PER_TASK).abs() / CAPS_PER_TASK;
        worst_error = worst_error.max(error);
        let in_window = max_starts_in_window(task_calls.iter().copied(), window);
        let alive = max_concurrent(task_calls.iter().copied());
        if in_window > CAPS_PER_TASK.ceil() as usize || alive > CONCURRENCY_PER_TASK {
            over_limit += 1;
        }
        println!(
            "{:>6} {:>10.2} {:>10.2} {:>8.2}% {:>14} {:>14}",
            index + 1,
            CAPS_PER_TASK,
            achieved,
            error * 100.0,
            in_window,
            alive
        );
    }
    let total_alive = max_concurrent(&calls);
    let total_window = max_starts_in_window(&calls, window);
    println!("all tasks: {} calls, {:.1} CAPS, at most {total_window} starts in 1 s, at most {total_alive} alive", calls.len(), calls.len() as f64 / elapsed.as_secs_f64());
    println!(
        "worst pacing error: {:.2}%  tasks over a limit: {over_limit}",
        worst_error * 100.0
    );
    println!(
        "CPU: {cpu_used:.2} s in {:.1} s = {:.1}% of one core",
        elapsed.as_secs_f64(),
        cpu_used / elapsed.as_secs_f64() * 100.0
    );
    println!("peak RSS: {:.1} MiB", peak_rss_mib());

    stopper.stop().await;
    let _ = server.await;
}
