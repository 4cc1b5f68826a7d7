//! What the benchmarks share: settings, CPU and memory figures, the prompt, the load average,
//! the drain of a task's calls, and a logged-in API client.
#![allow(dead_code)]

use serde_json::{json, Value};

/// CPU seconds (user + system) of the process whose `/proc/<pid>/stat` this is.
pub fn cpu_seconds_of(stat_path: &str) -> f64 {
    let stat = std::fs::read_to_string(stat_path).expect("a /proc stat file");
    let after_name = &stat[stat
        .rfind(')')
        .expect("stat has the command in parentheses")
        + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name and state.
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// User and system CPU seconds, apart, of the process whose `/proc/<pid>/stat` this is; zeros
/// when it cannot be read (the process is gone).
pub fn user_and_system_seconds_of(stat_path: &str) -> (f64, f64) {
    let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 100.0
    };
    (ticks(11), ticks(12))
}

/// CPU seconds of this process: outcall runs in it.
pub fn cpu_seconds() -> f64 {
    cpu_seconds_of("/proc/self/stat")
}

fn status_mib(key: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("{key} in /proc/self/status"));
    let kib: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib / 1024.0
}

pub fn peak_rss_mib() -> f64 {
    status_mib("VmHWM:")
}

pub fn rss_mib() -> f64 {
    status_mib("VmRSS:")
}

/// How long a benchmark runs: `OUTCALL_BENCH_SECONDS`, else its default.
pub fn bench_seconds(default: u64) -> u64 {
    std::env::var("OUTCALL_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A setting from the environment, else its default.
pub fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text} is not a valid value")),
        Err(_) => default,
    }
}

/// The host's load average over 1, 5 and 15 minutes, as `/proc/loadavg` gives it.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The prompt: 440/660/880 Hz, a half second each, 8 kHz mono 16-bit samples.
pub fn prompt_samples(seconds: f64) -> Vec<i16> {
    (0..(seconds * 8000.0) as usize)
        .map(|i| {
            let frequency = [440.0, 660.0, 880.0][(i / 4000) % 3];
            (8000.0 * (2.0 * std::f64::consts::PI * frequency * i as f64 / 8000.0).sin()) as i16
        })
        .collect()
}

/// A number of a sipp statistics row (0 when absent or not a number).
pub fn stat_number(value: Option<&String>) -> u64 {
    value.and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// Counts by cause, as `CAUSE=n CAUSE=n`.
pub fn causes_line(causes: &std::collections::BTreeMap<String, u64>) -> String {
    causes
        .iter()
        .map(|(cause, n)| format!("{cause}={n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Waits at most `drain` for task `id`'s numbers still `calling` to end; answers how many are
/// still calling then.
pub async fn drain_calling(
    db: &outcall::db::rusqlite::Connection,
    id: i64,
    drain: std::time::Duration,
) -> i64 {
    let count_calling = || -> i64 {
        db.query_row(
            "SELECT count(*) FROM numbers WHERE group_id = ?1 AND call_status = 'calling'",
            [id],
            |row| row.get(0),
        )
        .unwrap()
    };
    let deadline = std::time::Instant::now() + drain;
    while count_calling() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    count_calling()
}

/// The REST API, logged in as admin.
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    pub async fn log_in(base: String, password: &str) -> Client {
        let http = reqwest::Client::new();
        let login: Value = http
            .post(format!("{base}/api/sessions"))
            .json(&json!({"login": "admin", "password": password}))
            .send()
            .await
            .expect("the server answers")
            .json()
            .await
            .expect("JSON");
        let token = login["token"].as_str().expect("a token").to_owned();
        Client { http, base, token }
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let response = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("X-XTRA-AUTH-ID", &self.token)
            .json(&body)
            .send()
            .await
            .expect("the server answers");
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.expect("JSON")
    }

    /// Creates a task with these settings (a JSON object including `group_name`) and numbers;
    /// answers its id.
    pub async fn create_task_with_numbers(
        &self,
        settings: Value,
        numbers: impl IntoIterator<Item = String>,
    ) -> i64 {
        let created = self
            .call(reqwest::Method::POST, "/api/out_call_tasks", settings)
            .await;
        let id = created["data"].as_i64().expect("the new task's id");
        // The body written straight to bytes: a million `Value`s would weigh on this process's
        // RSS, which the benchmarks report as outcall's.
        let mut body = br#"{"data":["#.to_vec();
        for (index, number) in numbers.into_iter().enumerate() {
            if index > 0 {
                body.push(b',');
            }
            serde_json::to_writer(&mut body, &json!({ "dest_number": number })).unwrap();
        }
        body.extend_from_slice(b"]}");
        let response = self
            .http
            .post(format!("{}/api/out_call_tasks/{id}/import", self.base))
            .header("X-XTRA-AUTH-ID", &self.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("the server answers");
        assert!(
            response.status().is_success(),
            "import: {}",
            response.status()
        );
        id
    }
}
