//! API benchmark: how reads, the import and the download scale with a task's size. For a task of
//! 1,000 numbers and one of OUTCALL_BENCH_NUMBERS (default 1,000,000), half of them finished
//! (`done`, a fifth `USER_BUSY`):
//! - numbers pages (first, middle, last; perPage 20 and 100; unfiltered and with each filter),
//!   task get, task list and stats: p50/p99 over OUTCALL_BENCH_REQUESTS (default 200) requests;
//! - the JSON import of the big task: time, rows/s, the server's peak RSS growth against the
//!   body's size, and the ratio to the sqlite3 shell's `.import` of the same rows into the same
//!   schema (same indexes, WAL, synchronous NORMAL, one transaction) measured in the same run;
//! - the download in each format: first byte, total time, peak RSS growth.
//!
//! outcall runs in this process (VmHWM is reset before each measured step via
//! /proc/self/clear_refs). Run: `cargo bench --bench api`.

mod support;

use std::{
    fmt::Write as _,
    io::Write,
    process::Command,
    time::{Duration, Instant},
};

use outcall::{config::Config, startup::Application};
use serde_json::{json, Value};
use support::{peak_rss_mib, rss_mib, Client};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Resets this process's peak RSS (VmHWM) to its current RSS.
fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM");
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1000.0
}

struct Bench {
    http: reqwest::Client,
    base: String,
    token: String,
    requests: usize,
}

impl Bench {
    async fn get(&self, path: &str) -> (reqwest::StatusCode, Vec<u8>) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .header("X-XTRA-AUTH-ID", &self.token)
            .send()
            .await
            .expect("the server answers");
        let status = response.status();
        (status, response.bytes().await.expect("a body").to_vec())
    }

    /// POSTs `body` as task `id`'s JSON import.
    async fn import(&self, id: i64, body: Vec<u8>) -> reqwest::Response {
        self.http
            .post(format!("{}/api/out_call_tasks/{id}/import", self.base))
            .header("X-XTRA-AUTH-ID", &self.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// p50 and p99 in ms of `requests` GETs of `path` (fewer when they take over 10 s together),
    /// after a few to warm up.
    async fn latency(&self, path: &str) -> (f64, f64) {
        for _ in 0..3 {
            let (status, body) = self.get(path).await;
            assert!(status.is_success(), "{path}: {status} {body:?}");
        }
        let mut times = Vec::with_capacity(self.requests);
        let budget = Instant::now();
        for _ in 0..self.requests {
            if budget.elapsed() > Duration::from_secs(10) && times.len() >= 20 {
                break;
            }
            let started = Instant::now();
            let (status, _) = self.get(path).await;
            times.push(started.elapsed());
            assert!(status.is_success());
        }
        times.sort();
        (percentile(&times, 0.5), percentile(&times, 0.99))
    }
}

fn numbers_json(first: usize, count: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(count * 32 + 16);
    body.extend_from_slice(b"{\"data\":[");
    for n in 0..count {
        if n > 0 {
            body.push(b',');
        }
        write!(body, "{{\"dest_number\":\"138{:08}\"}}", first + n).unwrap();
    }
    body.extend_from_slice(b"]}");
    body
}

/// Seconds the sqlite3 shell takes to load `count` rows from a CSV file into the `numbers` table
/// of a fresh database with outcall's schema (the same indexes, WAL, synchronous NORMAL, foreign
/// keys on), in one transaction: `.import` into a temporary table, then one INSERT … SELECT with
/// the columns outcall's import writes. `None` when the shell is missing.
fn sqlite_shell_import(dir: &std::path::Path, count: usize, now: i64) -> Option<f64> {
    Command::new("sqlite3").arg("-version").output().ok()?;
    let database = dir.join("shell.db");
    let csv = dir.join("numbers.csv");
    {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&csv).unwrap());
        for n in 0..count {
            writeln!(file, "138{n:08},").unwrap();
        }
    }
    let setup = format!(
        "PRAGMA journal_mode=WAL;\n{}\nINSERT INTO tasks (group_name, created_at, updated_at) VALUES ('shell', 0, 0);",
        include_str!("../schema.sql")
    );
    let status = Command::new("sqlite3")
        .arg(&database)
        .arg(&setup)
        .stdout(std::process::Stdio::null())
        .status()
        .ok()?;
    assert!(status.success(), "the sqlite3 shell set up its database");
    let script = format!(
        "PRAGMA synchronous=NORMAL;
PRAGMA foreign_keys=ON;
PRAGMA temp_store=MEMORY;
BEGIN;
CREATE TEMP TABLE staged (dest_number TEXT, external_id TEXT);
.import --csv numbers.csv staged
INSERT INTO numbers (group_id, dest_number, external_id, created_at, updated_at, seq)
    SELECT 1, dest_number, external_id, {now}, {now}, rowid FROM staged ORDER BY rowid;
COMMIT;
"
    );
    let started = Instant::now();
    let output = Command::new("sqlite3")
        .current_dir(dir)
        .arg(&database)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(script.as_bytes())?;
            child.wait_with_output()
        })
        .ok()?;
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "the sqlite3 shell imported: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let loaded: i64 = outcall::db::rusqlite::Connection::open(&database)
        .unwrap()
        .query_row("SELECT count(*) FROM numbers", [], |row| row.get(0))
        .unwrap();
    assert_eq!(loaded as usize, count, "the shell loaded every row");
    let _ = std::fs::remove_file(&csv);
    Some(seconds)
}

/// The path of a measured read, from the task's id and size.
type PathOf = Box<dyn Fn(i64, usize) -> String>;

/// A prefix of 1% of the numbers `numbers_json(0, size)` writes (`138` and 8 digits), for a size
/// a power of ten of at least 100.
fn one_percent_prefix(size: usize) -> String {
    let shared = (size / 100).max(1).ilog10() as usize;
    format!("138{}1", "0".repeat(8 - shared - 1))
}

/// Where the database's part of an import goes: `count` numbers inserted with outcall's own
/// `import_streaming` (one prepared statement, one transaction) into a fresh database, with all
/// of numbers' indexes and with only its primary key and `numbers_by_task_dest` (which the
/// import's dedupe reads: without it each lookup would scan the task); the commit (with the WAL
/// checkpoint that follows it) timed apart. Answers (with indexes: insert, commit; without:
/// insert, commit).
fn import_phases(dir: &std::path::Path, count: usize) -> ((f64, f64), (f64, f64)) {
    let mut figures = Vec::new();
    for with_indexes in [true, false] {
        let path = dir.join("phases.db");
        let db = outcall::db::Db::open(&path).unwrap();
        let mut conn = db.connection().unwrap();
        if !with_indexes {
            conn.execute_batch(
                "DROP INDEX numbers_by_task_seq; DROP INDEX numbers_by_task_status;
                 DROP INDEX numbers_by_task_cause;",
            )
            .unwrap();
        }
        let settings = outcall::domain::TaskSettings {
            group_name: Some(outcall::domain::TaskName::new("phases").unwrap()),
            ..Default::default()
        };
        let id = outcall::db::tasks::create(&mut conn, &settings, 0).unwrap();
        let started = Instant::now();
        let mut inserted_at = None;
        outcall::db::numbers::import_streaming(&mut conn, id, 0, |importer| {
            let mut number = String::new();
            for n in 0..count {
                number.clear();
                write!(number, "138{n:08}").unwrap();
                importer.insert(&number, "")?;
            }
            inserted_at = Some(started.elapsed());
            Ok::<_, outcall::db::DbError>(())
        })
        .unwrap();
        let inserted = inserted_at.unwrap().as_secs_f64();
        figures.push((inserted, started.elapsed().as_secs_f64() - inserted));
        drop(conn);
        drop(db);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(dir.join(format!("phases.db{suffix}")));
        }
    }
    (figures[0], figures[1])
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let big = env_usize("OUTCALL_BENCH_NUMBERS", 1_000_000);
    let requests = env_usize("OUTCALL_BENCH_REQUESTS", 200);
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_data_dir(data_dir.path());
    config.admin_password = Some("bench".into());
    let app = Application::build(config).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let stopper = app.stopper();
    let server = tokio::spawn(app.run_until_stopped());
    let client = Client::log_in(base.clone(), "bench").await;
    let bench = Bench {
        http: reqwest::Client::new(),
        base: base.clone(),
        token: client.token().to_owned(),
        requests,
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "api benchmark: tasks of 1000 and {big} numbers, {requests} requests a figure; load {}",
        load.trim()
    );

    let mut ids = Vec::new();
    for (index, size) in [1_000, big].into_iter().enumerate() {
        let created = client
            .call(
                reqwest::Method::POST,
                "/api/out_call_tasks",
                json!({"group_name": format!("bench {size}")}),
            )
            .await;
        let id = created["data"].as_i64().unwrap();
        let _ = index;
        let body = numbers_json(0, size);
        let body_mib = body.len() as f64 / (1024.0 * 1024.0);
        let rss_before = rss_mib();
        reset_peak_rss();
        let started = Instant::now();
        let response = bench.import(id, body).await;
        assert!(
            response.status().is_success(),
            "{:?}",
            response.text().await
        );
        let elapsed = started.elapsed().as_secs_f64();
        let growth = peak_rss_mib() - rss_before;
        println!(
            "import of {size}: {:.2} s, {:.0} rows/s; body {body_mib:.1} MiB, peak RSS growth {growth:.1} MiB ({:.2}x the body)",
            elapsed,
            size as f64 / elapsed,
            growth / body_mib
        );
        if size == big {
            // The same numbers again: every row is looked up and skipped as a duplicate.
            let started = Instant::now();
            let response = bench.import(id, numbers_json(0, size)).await;
            let answer: Value = response.json().await.unwrap();
            assert_eq!(
                answer["data"],
                format!(r#"{{"imported":0,"duplicates":{size},"dnc":0}}"#),
                "{answer}"
            );
            println!(
                "  the same {size} imported again (all duplicates, nothing written): {:.2} s",
                started.elapsed().as_secs_f64()
            );
            match sqlite_shell_import(data_dir.path(), size, 0) {
                Some(shell) => println!(
                    "sqlite3 shell .import of {size}: {shell:.2} s, {:.0} rows/s; outcall at {:.2} of its speed",
                    size as f64 / shell,
                    shell / elapsed
                ),
                None => println!("sqlite3 shell: not installed, no ratio"),
            }
            let ((insert, commit), (bare_insert, bare_commit)) =
                import_phases(data_dir.path(), size);
            println!(
                "  database part (outcall's import_streaming, no HTTP or JSON): insert {insert:.2} s + commit {commit:.2} s; \
                 without the 3 secondary indexes the dedupe does not read: insert {bare_insert:.2} s + commit {bare_commit:.2} s; \
                 so HTTP + JSON read/check twice = {:.2} s",
                elapsed - insert - commit
            );
            let _ = std::fs::remove_file(data_dir.path().join("shell.db"));
        }
        // Half finished: a call result on every other number, a fifth of them busy (triggers keep
        // the counters, as the dialer's writes do).
        let conn =
            outcall::db::rusqlite::Connection::open(data_dir.path().join("outcall.db")).unwrap();
        conn.busy_timeout(Duration::from_secs(30)).unwrap();
        let started = Instant::now();
        conn.execute(
            "UPDATE numbers SET call_status = 'done', outbound_call = 0, call_end_time = 1, updated_at = 1,
                 cause = CASE WHEN seq % 10 = 0 THEN 'USER_BUSY' ELSE 'NORMAL_CLEARING' END
             WHERE group_id = ?1 AND seq % 2 = 0",
            [id],
        )
        .unwrap();
        println!(
            "  (marked half of them done in {:.1} s)",
            started.elapsed().as_secs_f64()
        );
        ids.push((id, size));
    }

    println!();
    println!(
        "{:<44} {:>9} {:>9} {:>9} {:>9}",
        "read", "1K p50", "1K p99", "big p50", "big p99"
    );
    let mut rows: Vec<(String, PathOf)> = Vec::new();
    for per_page in [20usize, 100] {
        for (name, filter) in [
            ("", ""),
            ("call_status=done", "&call_status=done"),
            ("cause=USER_BUSY", "&cause=USER_BUSY"),
            ("dest_number prefix (1%)", "&dest_number=PREFIX"),
            ("dest_number=138 (all)", "&dest_number=138"),
        ] {
            for place in ["first", "middle", "last"] {
                let filter = filter.to_owned();
                let place_name = place;
                rows.push((
                    format!("numbers {place} perPage={per_page} {name}"),
                    Box::new(move |id, size| {
                        let matching = match filter.as_str() {
                            "" | "&dest_number=138" => size,
                            "&call_status=done" => size / 2,
                            "&cause=USER_BUSY" => size / 10,
                            _ => (size / 100).max(1),
                        };
                        let pages = matching.div_ceil(per_page).max(1);
                        let page = match place_name {
                            "first" => 1,
                            "middle" => pages.div_ceil(2),
                            _ => pages,
                        };
                        let filter = filter.replace("PREFIX", &one_percent_prefix(size));
                        format!("/api/out_call_tasks/{id}/numbers?perPage={per_page}&page={page}{filter}")
                    }),
                ));
            }
        }
    }
    rows.push((
        "task get".into(),
        Box::new(|id, _| format!("/api/out_call_tasks/{id}")),
    ));
    rows.push((
        "task list".into(),
        Box::new(|_, _| "/api/out_call_tasks".into()),
    ));
    rows.push((
        "task stats".into(),
        Box::new(|id, _| format!("/api/out_call_tasks/{id}/stats")),
    ));
    for (name, path) in &rows {
        let mut figures = Vec::new();
        for (id, size) in &ids {
            let (p50, p99) = bench.latency(&path(*id, *size)).await;
            figures.push((p50, p99));
        }
        println!(
            "{name:<44} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            figures[0].0, figures[0].1, figures[1].0, figures[1].1
        );
    }

    println!();
    let (big_id, big_size) = ids[1];
    for format in ["json", "csv", "xlsx"] {
        let rss_before = rss_mib();
        reset_peak_rss();
        let started = Instant::now();
        let mut response = bench
            .http
            .get(format!(
                "{base}/api/out_call_tasks/{big_id}/download?format={format}"
            ))
            .header("X-XTRA-AUTH-ID", &bench.token)
            .send()
            .await
            .unwrap();
        let headers_at = started.elapsed();
        if !response.status().is_success() {
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            println!(
                "download {format} of {big_size}: {status} {}",
                body["message"]
            );
            continue;
        }
        let mut first_byte = None;
        let mut bytes = 0usize;
        while let Some(chunk) = response.chunk().await.expect("the body streams") {
            first_byte.get_or_insert_with(|| started.elapsed());
            bytes += chunk.len();
        }
        println!(
            "download {format} of {big_size}: status and headers {:.1} ms, first body byte {:.1} ms, all {:.1} MiB in {:.2} s, peak RSS growth {:.1} MiB",
            headers_at.as_secs_f64() * 1000.0,
            first_byte.unwrap_or_default().as_secs_f64() * 1000.0,
            bytes as f64 / (1024.0 * 1024.0),
            started.elapsed().as_secs_f64(),
            peak_rss_mib() - rss_before
        );
    }
    // The dialer's claim of the next waiting number, straight on the database: in a transaction
    // rolled back at the end (the task set running inside it), so the dialer never sees it.
    println!();
    for (id, size) in &ids {
        let mut conn =
            outcall::db::rusqlite::Connection::open(data_dir.path().join("outcall.db")).unwrap();
        conn.busy_timeout(Duration::from_secs(30)).unwrap();
        let tx = conn.transaction().unwrap();
        tx.execute("UPDATE tasks SET status = 'running' WHERE id = ?1", [id])
            .unwrap();
        let claims = requests.min(size / 4);
        let mut times = Vec::with_capacity(claims);
        // Kept between claims, as a runner keeps it.
        let mut options = outcall::db::numbers::ClaimOptions::default();
        for n in 0..claims {
            let started = Instant::now();
            let claimed =
                outcall::db::numbers::claim_next(&tx, *id, &format!("bench-{n}"), 2, &mut options)
                    .unwrap()
                    .expect("a waiting number");
            times.push(started.elapsed());
            std::hint::black_box(claimed);
        }
        tx.rollback().unwrap();
        times.sort();
        println!(
            "claim_next on a task of {size} ({} waiting): p50 {:.3} ms, p99 {:.3} ms over {claims} claims",
            size / 2,
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load at the end: {}", load.trim());
    stopper.stop().await;
    let _ = server.await;
}
