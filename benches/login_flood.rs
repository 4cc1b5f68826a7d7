//! Login flood benchmark (issue 7, findings 1 and 2): the real binary dials one sim task at 20 CAPS
//! while 64 concurrent clients, spread over 256 loopback addresses (so the per-address throttle
//! lets each address guess a few times: the hashing pool stays saturated), post wrong logins as
//! fast as they are answered. Prints the task's CAPS before and during the flood, the answers the
//! flood got, and the server's CPU and peak RSS. 20 s of flood (OUTCALL_BENCH_SECONDS to change).
//!
//! Run: `cargo bench --bench login_flood`

mod support;

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, TcpListener},
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::json;
use support::{bench_seconds, cpu_seconds_of, Client};

const PASSWORD: &str = "bench-password";
const CAPS: f64 = 20.0;
const CLIENTS: usize = 64;
const ADDRESSES_PER_CLIENT: usize = 4;
const QUIET_SECONDS: u64 = 5;

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Calls started between `from` and `to` (unix ms), per second, from the sim's call log.
fn caps_between(log: &str, from: u64, to: u64) -> f64 {
    let starts = log
        .lines()
        .filter_map(|line| line.split_whitespace().next()?.parse::<u64>().ok())
        .filter(|ms| (from..to).contains(ms))
        .count();
    starts as f64 / ((to - from) as f64 / 1000.0)
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| {
            v.trim_start_matches(':')
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()
        })
        .unwrap()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds = bench_seconds(20);
    let dir = tempfile::tempdir().unwrap();
    let call_log = dir.path().join("calls.log");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_outcall"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--sim-time-scale", "0.1", "--tz", "UTC"])
        .arg("--sim-call-log")
        .arg(&call_log)
        .env("OUTCALL_ADMIN_PASSWORD", PASSWORD)
        .env("OUTCALL_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the outcall binary starts");
    let pid = child.id();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for attempt in 0.. {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        assert!(attempt < 400, "the server did not come up");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let client = Client::log_in(base.clone(), PASSWORD).await;
    let total = (CAPS * (seconds + QUIET_SECONDS + 10) as f64) as usize;
    let numbers = (0..total).map(|n| format!("1390{n:06}3"));
    let id = client
        .create_task_with_numbers(
            json!({"group_name": "flood", "max_caps": CAPS, "max_concurrency": 100}),
            numbers,
        )
        .await;
    client
        .call(
            reqwest::Method::PUT,
            "/api/out_call_tasks",
            json!({"action": "start", "data": [id.to_string()]}),
        )
        .await;

    // The first second is the task's own start-up; then a quiet stretch, then the flood.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let quiet_from = unix_ms();
    tokio::time::sleep(Duration::from_secs(QUIET_SECONDS)).await;
    let flood_from = unix_ms();
    let cpu_before = cpu_seconds_of(&format!("/proc/{pid}/stat"));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut flooders = Vec::new();
    for c in 0..CLIENTS {
        let url = format!("{base}/api/sessions");
        let clients: Vec<reqwest::Client> = (0..ADDRESSES_PER_CLIENT)
            .map(|a| {
                let n = c * ADDRESSES_PER_CLIENT + a;
                let address =
                    IpAddr::V4(Ipv4Addr::new(127, 1, (n / 250) as u8, (n % 250 + 1) as u8));
                reqwest::Client::builder()
                    .local_address(address)
                    .build()
                    .unwrap()
            })
            .collect();
        flooders.push(tokio::spawn(async move {
            let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
            let mut n = 0u64;
            while Instant::now() < deadline {
                let client = &clients[n as usize % clients.len()];
                let reply = client
                    .post(&url)
                    .json(&json!({"login": format!("guess-{c}-{n}"), "password": "wrong-password"}))
                    .send()
                    .await;
                let status = reply.map(|r| r.status().as_u16()).unwrap_or(0);
                *statuses.entry(status).or_default() += 1;
                n += 1;
            }
            statuses
        }));
    }
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    for flooder in flooders {
        for (status, count) in flooder.await.unwrap() {
            *statuses.entry(status).or_default() += count;
        }
    }
    let flood_to = unix_ms();
    let cpu_used = cpu_seconds_of(&format!("/proc/{pid}/stat")) - cpu_before;
    let peak_rss = status_kib(pid, "VmHWM") as f64 / 1024.0;

    // The right password gets in once its client waited (this client's address was never used).
    let admin = reqwest::Client::new()
        .post(format!("{base}/api/sessions"))
        .json(&json!({"login": "admin", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .status();
    let _ = child.kill();
    let _ = child.wait();

    let log = std::fs::read_to_string(&call_log).unwrap_or_default();
    let requests: u64 = statuses.values().sum();
    let elapsed = (flood_to - flood_from) as f64 / 1000.0;
    println!(
        "login flood benchmark: {CLIENTS} clients over {} addresses, {seconds} s, one sim task at {CAPS} CAPS",
        CLIENTS * ADDRESSES_PER_CLIENT
    );
    println!(
        "task CAPS: {:.2} before the flood, {:.2} during it (asked {CAPS})",
        caps_between(&log, quiet_from, flood_from),
        caps_between(&log, flood_from, flood_to)
    );
    println!(
        "wrong logins: {requests} in {elapsed:.1} s ({:.0}/s), answers by status {statuses:?}",
        requests as f64 / elapsed
    );
    println!(
        "server CPU during the flood: {cpu_used:.2} s = {:.0}% of one core; peak RSS {peak_rss:.1} MiB",
        cpu_used / elapsed * 100.0
    );
    println!("admin's right password right after the flood, from a fresh address: {admin}");
}
