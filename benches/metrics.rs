//! What `/metrics` costs: a scrape's encoding with 1,000 tasks' series (OUTCALL_BENCH_TASKS to
//! change), the dialer's hooks per call, the HTTP middleware's observation per request, and the
//! two database counts a scrape makes on a task of 1,000,000 numbers with 10 % waiting for a retry
//! (OUTCALL_BENCH_NUMBERS to change).
//!
//! Run: `cargo bench --bench metrics`

use std::time::{Duration, Instant};

use outcall::{
    db::{self, numbers::NewNumber, Db},
    domain::{HangupCause, TaskName, TaskSettings},
    metrics::{Format, Metrics, Snapshot},
};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The mean of `runs` runs of `work`.
fn mean(runs: u32, mut work: impl FnMut()) -> Duration {
    let started = Instant::now();
    for _ in 0..runs {
        work();
    }
    started.elapsed() / runs
}

const CAUSES: [HangupCause; 5] = [
    HangupCause::NORMAL_CLEARING,
    HangupCause::USER_BUSY,
    HangupCause::NO_ANSWER,
    HangupCause::CALL_REJECTED,
    HangupCause::UNALLOCATED_NUMBER,
];

const ROUTES: [&str; 10] = [
    "/api/out_call_tasks",
    "/api/out_call_tasks/{id}",
    "/api/out_call_tasks/{id}/numbers",
    "/api/out_call_tasks/{id}/stats",
    "/api/out_call_tasks/{id}/import",
    "/api/sessions",
    "/api/events",
    "/healthz",
    "/metrics",
    "unmatched",
];

fn main() {
    let tasks = env_usize("OUTCALL_BENCH_TASKS", 1_000) as i64;
    let metrics = Metrics::new();
    for task in 1..=tasks {
        for cause in CAUSES {
            metrics.call_started(task);
            metrics.call_answered(task);
            metrics.call_ended(task, cause);
        }
    }
    for route in ROUTES {
        for status in [200, 400, 404] {
            metrics.http_request(route, "GET", status, 0.002);
        }
    }
    let snapshot = Snapshot {
        live_calls: 1_000,
        task_caps: (1..=tasks).map(|task| (task, 0.2)).collect(),
        retry_queue: 0,
        webhook_outbox: 0,
    };
    let body = metrics.render(&snapshot, Format::OpenMetrics);
    let series = body.lines().filter(|l| !l.starts_with('#')).count();
    println!(
        "scrape with {tasks} tasks: {series} series, {:.0} KiB of OpenMetrics text",
        body.len() as f64 / 1024.0
    );
    for format in [Format::OpenMetrics, Format::PrometheusText] {
        let took = mean(20, || {
            std::hint::black_box(metrics.render(&snapshot, format));
        });
        println!(
            "  encode ({format:?}): {:.2} ms a scrape",
            took.as_secs_f64() * 1000.0
        );
    }

    let calls = 1_000_000u32;
    let took = mean(calls, || {
        let task = 1 + (std::hint::black_box(7) % tasks);
        metrics.call_started(task);
        metrics.call_answered(task);
        metrics.call_ended(task, HangupCause::NORMAL_CLEARING);
    });
    println!(
        "dialer hooks (started + answered + ended) on existing series: {:.0} ns a call",
        took.as_secs_f64() * 1e9
    );
    let took = mean(calls, || {
        metrics.http_request(
            std::hint::black_box("/api/out_call_tasks/{id}"),
            "GET",
            200,
            0.002,
        );
    });
    println!(
        "HTTP middleware observation: {:.0} ns a request",
        took.as_secs_f64() * 1e9
    );

    let numbers = env_usize("OUTCALL_BENCH_NUMBERS", 1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("bench.db")).unwrap();
    let mut conn = db.connection().unwrap();
    let settings = TaskSettings {
        group_name: Some(TaskName::new("bench").unwrap()),
        ..Default::default()
    };
    let id = db::tasks::create(&mut conn, &settings, 1).unwrap();
    let rows: Vec<NewNumber> = (0..numbers)
        .map(|n| NewNumber {
            dest_number: format!("+86138{n:08}"),
            external_id: String::new(),
        })
        .collect();
    db::numbers::import(&mut conn, id, &rows, 1).unwrap();
    conn.execute(
        "UPDATE numbers SET next_attempt_at = 2000000000 WHERE id % 10 = 0",
        [],
    )
    .unwrap();
    let mut queued = 0;
    let took = mean(20, || {
        queued = db::metrics::retry_queue(&conn).unwrap();
        std::hint::black_box(db::webhooks::outbox_size(&conn).unwrap());
    });
    println!(
        "database counts of a scrape ({numbers} numbers, {queued} waiting for a retry): {:.2} ms",
        took.as_secs_f64() * 1000.0
    );
    conn.execute("UPDATE numbers SET next_attempt_at = NULL", [])
        .unwrap();
    let took = mean(20, || {
        queued = db::metrics::retry_queue(&conn).unwrap();
        std::hint::black_box(db::webhooks::outbox_size(&conn).unwrap());
    });
    println!(
        "database counts of a scrape ({numbers} numbers, {queued} waiting): {:.3} ms",
        took.as_secs_f64() * 1000.0
    );
}
