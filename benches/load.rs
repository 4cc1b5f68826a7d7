//! Load benchmark: mixed reads of the REST API from 16 concurrent clients for 60 s
//! (OUTCALL_BENCH_SECONDS to change) while a sim campaign runs at 50 CAPS. Prints requests per
//! second, error answers, latency percentiles, and the campaign's achieved CAPS against the asked
//! pace: reads must not slow the dialer.
//!
//! Run: `cargo bench --bench load`

mod support;

use support::{bench_seconds, cpu_seconds, peak_rss_mib, Client};

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use outcall::{config::Config, startup::Application, telephony::sim::SimBackend};
use serde_json::{json, Value};

const CAPS: f64 = 50.0;
const CONCURRENCY: usize = 400;
const READERS: usize = 16;
const NUMBERS_IN_LISTED_TASKS: usize = 10_000;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds = bench_seconds(60);
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_data_dir(data_dir.path());
    config.admin_password = Some("bench-password".into());
    let sim = Arc::new(SimBackend::new(1.0).with_history());
    let app = Application::build_with_backend(config, sim.clone())
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let stopper = app.stopper();
    let server = tokio::spawn(app.run_until_stopped());
    let client = Client::log_in(base.clone(), "bench-password").await;

    // A finished-looking task with many numbers for the readers, and the campaign.
    let listed = create_task(&client, "listed", NUMBERS_IN_LISTED_TASKS, json!({})).await;
    let campaign = create_task(
        &client,
        "campaign",
        (CAPS * seconds as f64 * 1.2) as usize,
        json!({"max_caps": CAPS, "max_concurrency": CONCURRENCY}),
    )
    .await;

    let cpu_before = cpu_seconds();
    let started = Instant::now();
    client
        .call(
            reqwest::Method::PUT,
            "/api/out_call_tasks",
            json!({"action": "start", "data": [campaign.to_string()]}),
        )
        .await;
    let running = Arc::new(AtomicBool::new(true));
    let readers: Vec<_> = (0..READERS)
        .map(|reader| {
            let (base, token, running) = (base.clone(), client.token().to_owned(), running.clone());
            tokio::spawn(read_until_stopped(
                reader, base, token, listed, campaign, running,
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    running.store(false, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let mut errors = 0;
    for reader in readers {
        let (reader_latencies, reader_errors) = reader.await.unwrap();
        latencies.extend(reader_latencies);
        errors += reader_errors;
    }
    let elapsed = started.elapsed();
    let cpu_used = cpu_seconds() - cpu_before;

    let calls: Vec<_> = sim
        .calls()
        .into_iter()
        .filter(|c| c.task_id == campaign)
        .collect();
    let first = calls.iter().map(|c| c.started).min().unwrap();
    let last = calls.iter().map(|c| c.started).max().unwrap();
    let achieved = (calls.len() - 1) as f64 / last.duration_since(first).as_secs_f64();
    latencies.sort();
    let percentile = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    println!("load benchmark: {READERS} readers for {seconds} s while a sim campaign runs at {CAPS} CAPS");
    println!(
        "requests: {} = {:.0}/s, error answers: {errors}",
        latencies.len(),
        latencies.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(percentile(0.5)),
        ms(percentile(0.99)),
        ms(*latencies.last().unwrap())
    );
    println!(
        "campaign: {} calls, achieved {achieved:.2} CAPS (asked {CAPS}, error {:.2}%)",
        calls.len(),
        (achieved - CAPS).abs() / CAPS * 100.0
    );
    println!(
        "CPU (server and clients in one process): {cpu_used:.2} s in {:.1} s = {:.1}% of one core",
        elapsed.as_secs_f64(),
        cpu_used / elapsed.as_secs_f64() * 100.0
    );
    println!("peak RSS: {:.1} MiB", peak_rss_mib());

    stopper.stop().await;
    let _ = server.await;
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

async fn create_task(client: &Client, name: &str, numbers: usize, settings: Value) -> i64 {
    let mut body = json!({"group_name": name});
    body.as_object_mut()
        .unwrap()
        .extend(settings.as_object().unwrap().clone());
    // Numbers ending in 3 answer after 0.5 s and talk 1 s.
    let numbers = (0..numbers).map(|n| format!("1{:08}3", n));
    client.create_task_with_numbers(body, numbers).await
}

/// One reader: a round of the reads an admin page and a polling client make, until stopped.
/// Answers each request's latency and the count of non-2xx answers.
async fn read_until_stopped(
    reader: usize,
    base: String,
    token: String,
    listed: i64,
    campaign: i64,
    running: Arc<AtomicBool>,
) -> (Vec<Duration>, usize) {
    let http = reqwest::Client::new();
    let pages = NUMBERS_IN_LISTED_TASKS / 20;
    let paths = [
        "/api/out_call_tasks?page=1&perPage=20".to_owned(),
        format!("/api/out_call_tasks/{campaign}"),
        format!("/api/out_call_tasks/{listed}"),
        format!("/api/out_call_tasks/{campaign}/numbers?page=1&perPage=20"),
        "/healthz".to_owned(),
        "/api/out_call_tasks?status=running".to_owned(),
    ];
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut round = reader;
    while running.load(Ordering::Relaxed) {
        round += 1;
        let page = 1 + (round * 7919) % pages;
        let numbers_page = format!("/api/out_call_tasks/{listed}/numbers?page={page}&perPage=20");
        for path in paths.iter().chain([&numbers_page]) {
            let sent = Instant::now();
            let answer = http
                .get(format!("{base}{path}"))
                .header("X-XTRA-AUTH-ID", &token)
                .send()
                .await;
            let ok = match answer {
                Ok(response) => {
                    let status = response.status();
                    response.bytes().await.is_ok() && status.is_success()
                }
                Err(_) => false,
            };
            latencies.push(sent.elapsed());
            if !ok {
                errors += 1;
            }
        }
    }
    (latencies, errors)
}
