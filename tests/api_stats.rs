//! Live progress: the per-task counters (checked against a full count of the numbers table after
//! every kind of change, crash recovery and migration included), `GET /api/out_call_tasks/{id}/stats`
//! and the `GET /api/events` stream.

use std::{
    path::Path,
    time::{Duration, Instant},
};

mod common;

use common::{
    assert_keys, is_timestamp, phone_numbers, poll,
    process::{database, Outcall},
    spawn_app_with, start_slow_campaign, Api, TestApp, MEDIA,
};
use outcall::db::rusqlite::{params, Connection};
use reqwest::StatusCode;
use serde_json::{json, Map, Value};

const STATS_FIELDS: [&str; 16] = [
    "id",
    "status",
    "total",
    "init",
    "calling",
    "done",
    "stop",
    "answered",
    "causes",
    "caps",
    "live",
    "updated_at",
    "waiting",
    "waiting_until",
    "webhooks",
    "retry_pending",
];

/// The fields of the stats object that do not come from the counters the tests count again.
const NOT_FROM_COUNTERS: [&str; 9] = [
    "id",
    "status",
    "caps",
    "live",
    "updated_at",
    "waiting",
    "waiting_until",
    "webhooks",
    "retry_pending",
];

/// Numbers whose last digits cover every sim callee (answers, busy, no answer, rejected, unknown).
fn mixed_numbers(first: u64, n: usize) -> Vec<String> {
    phone_numbers(first, n)
}

async fn fast_app() -> TestApp {
    spawn_app_with(|config| config.sim.time_scale = 0.01).await
}

// ---------------------------------------------------------------------------------------------
// Counters against a full count
// ---------------------------------------------------------------------------------------------

/// The task's counters as stored, and the same figures by a full count of its numbers, read in
/// one transaction (one snapshot): `(counters, full count)`.
fn counters_and_full_count(conn: &mut Connection, id: i64) -> (Value, Value) {
    let tx = conn.transaction().unwrap();
    let fields = ["total", "init", "calling", "done", "stop", "answered"];
    let read = |sql: &str| -> Map<String, Value> {
        tx.query_row(sql, [id], |row| {
            let mut object = Map::new();
            for (index, field) in fields.iter().enumerate() {
                object.insert((*field).into(), json!(row.get::<_, i64>(index)?));
            }
            Ok(object)
        })
        .unwrap()
    };
    let causes = |sql: &str| -> Value {
        let mut statement = tx.prepare(sql).unwrap();
        let pairs = statement
            .query_map([id], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        Value::Object(pairs.into_iter().map(|(k, v)| (k, json!(v))).collect())
    };
    let mut counters = read(
        "SELECT total, init, calling, done, stop, answered FROM task_counts WHERE group_id = ?1",
    );
    counters.insert(
        "causes".into(),
        causes("SELECT cause, count FROM task_cause_counts WHERE group_id = ?1 AND count > 0 ORDER BY cause"),
    );
    let mut full = read(
        "SELECT count(*), count(CASE WHEN call_status = 'init' THEN 1 END),
             count(CASE WHEN call_status = 'calling' THEN 1 END),
             count(CASE WHEN call_status = 'done' THEN 1 END),
             count(CASE WHEN call_status = 'stop' THEN 1 END), count(call_answer_time)
         FROM numbers WHERE group_id = ?1 AND deleted_at IS NULL",
    );
    full.insert(
        "causes".into(),
        causes("SELECT cause, count(*) FROM numbers WHERE group_id = ?1 AND cause <> '' AND deleted_at IS NULL GROUP BY cause ORDER BY cause"),
    );
    drop(tx);
    (Value::Object(counters), Value::Object(full))
}

/// Asserts the counters equal a full count; answers them.
fn assert_counters_match(database: &Path, id: i64, when: &str) -> Value {
    let mut conn = common::db::open(database);
    let (counters, full) = counters_and_full_count(&mut conn, id);
    assert_eq!(counters, full, "task {id} {when}: counters vs a full count");
    counters
}

async fn stats(api: &Api, id: i64) -> Value {
    let reply = api.get(&format!("/api/out_call_tasks/{id}/stats")).await;
    common::success_data(&reply)
}

/// The route's counts (without the dialer's and the time fields) equal `counters`.
async fn assert_route_matches(api: &Api, id: i64, counters: &Value) {
    let mut route = stats(api, id).await;
    let object = route.as_object_mut().unwrap();
    for field in NOT_FROM_COUNTERS {
        object.remove(field);
    }
    assert_eq!(
        &route, counters,
        "task {id}: the stats route vs the counters"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_equal_a_full_count_through_a_campaign_an_import_a_stop_a_clone_and_a_delete() {
    let app = fast_app().await;
    let database = app.database_path();
    let settings = json!({"max_caps": 50, "max_concurrency": 20, "calling_time": 5,
                          "action": "playback", "data": MEDIA});
    let id = app
        .start_campaign("campaign", settings.clone(), &mixed_numbers(0, 60))
        .await;
    // Numbers imported while the task runs are counted (and dialed) too.
    app.import(id, &mixed_numbers(100, 40)).await;
    assert_counters_match(&database, id, "after an import into the running task");
    app.wait_done(id, Duration::from_secs(60)).await;
    let counters = assert_counters_match(&database, id, "after the campaign");
    assert_eq!(counters["total"], 100, "{counters}");
    assert_eq!(counters["done"], 100, "{counters}");
    let causes = counters["causes"].as_object().unwrap();
    assert!(causes.len() >= 4, "several causes: {counters}");
    assert_eq!(
        causes.values().map(|n| n.as_i64().unwrap()).sum::<i64>(),
        100
    );
    let answered = counters["answered"].as_i64().unwrap();
    assert!(answered > 0 && answered < 100, "{counters}");
    assert_route_matches(&app, id, &counters).await;
    assert_eq!(stats(&app, id).await["status"], "done");

    // Stop with numbers waiting and calls alive, then start again.
    let slow = app
        .start_campaign(
            "stop and restart",
            json!({"max_caps": 20, "max_concurrency": 5, "calling_time": 5,
                   "action": "playback", "data": MEDIA}),
            &mixed_numbers(300, 200),
        )
        .await;
    poll(Duration::from_secs(20), "some numbers done", || async {
        let done = stats(&app, slow).await["done"].as_i64().unwrap();
        if done >= 5 {
            Ok(())
        } else {
            Err(format!("{done} done"))
        }
    })
    .await;
    app.stop(&[slow]).await;
    let stopped = assert_counters_match(&database, slow, "after a stop");
    assert!(stopped["stop"].as_i64().unwrap() > 0, "{stopped}");
    app.start(&[slow]).await;
    let restarted = assert_counters_match(&database, slow, "after a restart");
    assert_eq!(restarted["stop"], 0, "{restarted}");
    app.stop(&[slow]).await;
    poll(
        Duration::from_secs(20),
        "the stopped task's calls to end",
        || async {
            let now = stats(&app, slow).await;
            if now["calling"] == 0 && now["live"] == 0 {
                Ok(())
            } else {
                Err(now.to_string())
            }
        },
    )
    .await;
    let counters =
        assert_counters_match(&database, slow, "after the calls of a stopped task ended");
    assert_route_matches(&app, slow, &counters).await;

    // A clone with numbers counts them all as waiting; one without has none.
    let clone = app
        .ok(
            reqwest::Method::POST,
            "/api/out_call_tasks/clone",
            Some(json!({"id": id, "group_name": "copy", "is_clone_numbers": true})),
        )
        .await["data"]
        .as_i64()
        .unwrap();
    let cloned = assert_counters_match(&database, clone, "after a clone with numbers");
    assert_eq!(
        cloned,
        json!({"total": 100, "init": 100, "calling": 0, "done": 0, "stop": 0, "answered": 0, "causes": {}})
    );
    assert_route_matches(&app, clone, &cloned).await;
    let bare = app
        .ok(
            reqwest::Method::POST,
            "/api/out_call_tasks/clone",
            Some(json!({"id": id, "group_name": "bare copy"})),
        )
        .await["data"]
        .as_i64()
        .unwrap();
    assert_eq!(
        assert_counters_match(&database, bare, "after a clone without numbers")["total"],
        0
    );

    // A deleted task has no stats any more; its counters still match its rows.
    let reply = app.delete(&format!("/api/out_call_tasks/{slow}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_counters_match(&database, slow, "after a delete");
    let reply = app.get(&format!("/api/out_call_tasks/{slow}/stats")).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
    common::assert_error(&reply, 404, &slow.to_string());
}

/// SIGKILL with calls alive: the counters stayed equal to the rows (they change in the same
/// transactions), and after the restart the calls cut by the crash are counted as done with
/// SYSTEM_SHUTDOWN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_survive_a_crash_and_its_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let outcall = Outcall::in_dir(dir).sim_time_scale(0.1);
    let mut server = outcall.spawn();
    let client = server.connect().await;
    let numbers: Vec<String> = (20_000..20_200).map(|n: u32| n.to_string()).collect();
    let id = client
        .start_campaign(
            "crash",
            json!({"max_caps": 20, "max_concurrency": 10, "calling_time": 5,
                   "action": "playback", "data": MEDIA}),
            &numbers,
        )
        .await;
    poll(
        Duration::from_secs(30),
        "calls alive and some done",
        || async {
            let now = stats(&client, id).await;
            if now["done"].as_i64().unwrap() >= 20 && now["calling"].as_i64().unwrap() > 0 {
                Ok(())
            } else {
                Err(now.to_string())
            }
        },
    )
    .await;
    server.kill();
    drop(client);
    let at_kill = assert_counters_match(&database(dir), id, "at the kill");
    let cut = at_kill["calling"].as_i64().unwrap();
    assert!(cut > 0, "calls were alive at the kill: {at_kill}");

    let mut server = outcall.spawn();
    let client = server.connect().await;
    let recovered = assert_counters_match(&database(dir), id, "after the recovery");
    // (The resumed task may already be calling its next numbers.)
    assert!(
        recovered["causes"]["SYSTEM_SHUTDOWN"].as_i64() >= Some(cut),
        "the cut calls end SYSTEM_SHUTDOWN: {recovered}"
    );
    client.wait_done(id, Duration::from_secs(60)).await;
    let counters = assert_counters_match(&database(dir), id, "after the resumed campaign");
    assert_eq!(counters["done"], 200, "{counters}");
    assert_eq!(
        counters["causes"]["SYSTEM_SHUTDOWN"],
        json!(cut),
        "{counters}"
    );
    assert_route_matches(&client, id, &counters).await;
}

/// A database from before the counters (schema step 3) gets them, computed from its rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_database_gets_counters_equal_to_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let outcall = Outcall::in_dir(dir);
    std::fs::create_dir_all(common::process::data_dir(dir)).unwrap();
    let schema = include_str!("../schema.sql");
    let steps: Vec<&str> = schema
        .split("\n-- step ")
        .skip(1)
        .map(|step| step.split_once('\n').unwrap().1)
        .collect();
    let statuses = ["init", "calling", "done", "stop"];
    let causes = ["", "NORMAL_CLEARING", "USER_BUSY", "NO_ANSWER"];
    {
        let conn = Connection::open(database(dir)).unwrap();
        for step in &steps[..3] {
            conn.execute_batch(step).unwrap();
        }
        conn.pragma_update(None, "user_version", 3).unwrap();
        for (task, status) in ["done", "stop", "init"].iter().enumerate() {
            conn.execute(
                "INSERT INTO tasks (group_name, status, created_at, updated_at) VALUES (?1, ?2, 0, 0)",
                params![format!("old {task}"), status],
            )
            .unwrap();
        }
        conn.execute(
            "UPDATE tasks SET deleted_at = 5 WHERE group_name = 'old 1'",
            [],
        )
        .unwrap();
        for n in 0..300i64 {
            let task = n % 2 + 1;
            let status = statuses[(n / 2 % 4) as usize];
            let cause = if status == "done" {
                causes[(n / 8 % 4) as usize]
            } else {
                ""
            };
            let answered = (status == "done" && n % 3 == 0).then_some(100 + n);
            let deleted = (n % 29 == 0).then_some(7);
            conn.execute(
                "INSERT INTO numbers (group_id, dest_number, call_status, cause, call_answer_time,
                     deleted_at, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, 2)",
                params![
                    task,
                    format!("1390000{n:04}"),
                    status,
                    cause,
                    answered,
                    deleted
                ],
            )
            .unwrap();
        }
    }
    let mut server = outcall.spawn();
    let client = server.connect().await;
    for task in 1..=3 {
        assert_counters_match(&database(dir), task, "after the migration");
    }
    let counters = assert_counters_match(&database(dir), 1, "after the migration");
    assert!(counters["total"].as_i64().unwrap() > 100, "{counters}");
    assert!(counters["answered"].as_i64().unwrap() > 0, "{counters}");
    assert!(
        counters["causes"].as_object().unwrap().len() >= 2,
        "{counters}"
    );
    // Crash recovery at the start finished the numbers left `calling`.
    assert_eq!(counters["calling"], 0, "{counters}");
    assert_route_matches(&client, 1, &counters).await;
    assert_eq!(
        client.get("/api/out_call_tasks/2/stats").await.status,
        StatusCode::NOT_FOUND,
        "a deleted task"
    );
    let empty = stats(&client, 3).await;
    assert_eq!(empty["total"], 0, "{empty}");
    assert_eq!(empty["causes"], json!({}), "{empty}");
}

// ---------------------------------------------------------------------------------------------
// The stats route
// ---------------------------------------------------------------------------------------------

fn assert_stats_shape(stats: &Value) {
    assert_keys(stats, &STATS_FIELDS);
    for field in [
        "id",
        "total",
        "init",
        "calling",
        "done",
        "stop",
        "answered",
        "live",
        "retry_pending",
    ] {
        assert!(stats[field].is_u64(), "{field} is a whole number: {stats}");
    }
    assert!(stats["caps"].is_number(), "caps is a number: {stats}");
    assert!(stats["status"].is_string(), "{stats}");
    // No calling window or retry in these tasks: never waiting.
    assert_eq!(stats["waiting"], "", "{stats}");
    assert_eq!(stats["waiting_until"], "", "{stats}");
    assert_keys(
        &stats["webhooks"],
        &["pending", "delivered", "failed", "last_error"],
    );
    assert!(
        is_timestamp(stats["updated_at"].as_str().unwrap()),
        "updated_at: {stats}"
    );
    for (cause, count) in stats["causes"].as_object().expect("causes is an object") {
        assert!(
            cause.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
            "{cause}"
        );
        assert!(count.as_u64() > Some(0), "{stats}");
    }
}

/// While a slow campaign runs its stats show its pace and live calls; an unknown task is 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stats_route_shows_pace_and_live_calls_and_404s_unknown_tasks() {
    // Real time: a number ending in 2 is answered after 1 s and hangs up 20 s later.
    let app = spawn_app_with(|config| config.sim.time_scale = 1.0).await;
    let id = start_slow_campaign(&app, "1380001", 40).await;
    let seen = poll(Duration::from_secs(10), "caps and live calls", || async {
        let now = stats(&app, id).await;
        let caps = now["caps"].as_f64().unwrap();
        let live = now["live"].as_u64().unwrap();
        if caps >= 0.5 && live >= 5 && now["answered"].as_u64() > Some(0) {
            Ok(now)
        } else {
            Err(now.to_string())
        }
    })
    .await;
    assert_stats_shape(&seen);
    assert_eq!(seen["id"], id);
    assert_eq!(seen["status"], "running");
    assert_eq!(seen["total"], 40);
    // The pace is measured, not the setting: 5 a second at most, over a window of 10 s.
    assert!(seen["caps"].as_f64().unwrap() <= 5.0, "{seen}");

    for path in ["/api/out_call_tasks/999/stats"] {
        let reply = app.get(path).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
        common::assert_error(&reply, 404, "999");
    }
    let reply = app.get("/api/out_call_tasks/x/stats").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    common::assert_error(&reply, 400, "id");
    let reply = app
        .send_with_token(
            reqwest::Method::GET,
            &format!("/api/out_call_tasks/{id}/stats"),
            None,
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    app.stop(&[id]).await;
}

// ---------------------------------------------------------------------------------------------
// The event stream
// ---------------------------------------------------------------------------------------------

/// A client of `GET /api/events`, reading events as they arrive.
struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

impl EventStream {
    async fn open(api: &Api, path: &str, header_token: bool) -> EventStream {
        let mut request = api.client.get(api.url(path));
        if header_token {
            request = request.header("X-XTRA-AUTH-ID", &api.token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        EventStream {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (`event:` name and `data:` as JSON) within `timeout`, `None` when the
    /// stream ended. Panics on a timeout.
    async fn next(&mut self, timeout: Duration) -> Option<(String, Value)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event: ") {
                        name = Some(value.to_owned());
                    } else if let Some(value) = line.strip_prefix("data: ") {
                        data.push_str(value);
                    }
                }
                if let Some(name) = name {
                    let data = serde_json::from_str(&data)
                        .unwrap_or_else(|e| panic!("event data is JSON ({e}): {data}"));
                    return Some((name, data));
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .unwrap_or_else(|_| panic!("no event within {timeout:?}"))
                .expect("the stream reads");
            match chunk {
                Some(bytes) => self.buffer.push_str(std::str::from_utf8(&bytes).unwrap()),
                None => return None,
            }
        }
    }

    /// Reads until a `task` event passes `wanted`; answers it.
    async fn task_event(&mut self, timeout: Duration, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no such task event; seen: {seen:?}");
            match self.next(left).await {
                Some((name, data)) if name == "task" && wanted(&data) => return data,
                Some(event) => seen.push(event),
                None => panic!("the stream ended; seen: {seen:?}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_need_a_token_and_take_it_from_the_query() {
    let app = fast_app().await;
    let reply = app
        .send_with_token(reqwest::Method::GET, "/api/events", None, None)
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    common::assert_error(&reply, 401, "token");
    let reply = app
        .send_with_token(
            reqwest::Method::GET,
            "/api/events?token=not-a-token",
            None,
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    // The query form is for this route (and the audio routes) only.
    let reply = app
        .send_with_token(
            reqwest::Method::GET,
            &format!("/api/out_call_tasks/1/stats?token={}", app.token),
            None,
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);

    // With nothing running, the stream starts with a ping.
    let mut quiet =
        EventStream::open(&app, &format!("/api/events?token={}", app.token), false).await;
    let (name, _) = quiet.next(Duration::from_secs(5)).await.expect("an event");
    assert_eq!(name, "ping");
    drop(quiet);

    let running = app.create_running_task("running", 3).await;
    let mut stream =
        EventStream::open(&app, &format!("/api/events?token={}", app.token), false).await;
    let (name, first) = stream.next(Duration::from_secs(5)).await.expect("an event");
    assert_eq!(name, "task");
    assert_stats_shape(&first);
    assert_eq!(first["id"], running);
    assert_eq!(first["status"], "running");
}

/// A client first gets the stats of every running task (and of no other), then a task's status
/// change as it happens, its stats as they change, and a ping within 15 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_start_with_the_running_tasks_then_follow_changes_and_ping() {
    let app = fast_app().await;
    let idle = app.create_task("idle").await;
    let first_running = app.create_running_task("one", 3).await;
    let second_running = app.create_running_task("two", 3).await;
    let connected = Instant::now();
    let mut stream = EventStream::open(&app, "/api/events", true).await;
    let mut first_ids = Vec::new();
    for _ in 0..2 {
        let event = stream.next(Duration::from_secs(5)).await.expect("an event");
        assert!(event.0 == "task" || event.0 == "ping", "{event:?}");
        assert_stats_shape(&event.1);
        assert_eq!(event.1["status"], "running", "{event:?}");
        first_ids.push(event.1["id"].as_i64().unwrap());
    }
    first_ids.sort_unstable();
    assert_eq!(first_ids, vec![first_running, second_running]);
    assert!(!first_ids.contains(&idle));
    let (name, data) = stream.next(Duration::from_secs(5)).await.expect("an event");
    assert_eq!(
        (name.as_str(), data),
        ("ping", json!({})),
        "then a ping at once"
    );

    // A stop arrives at once, as an event of that task with its new status.
    app.stop(&[first_running]).await;
    let stopped = stream
        .task_event(Duration::from_secs(3), |data| {
            data["id"] == first_running && data["status"] == "stop"
        })
        .await;
    assert_stats_shape(&stopped);
    // Waiting numbers became `stop`; the call placed at the start may still be going.
    let count = |field: &str| stopped[field].as_i64().unwrap();
    assert_eq!(count("init"), 0, "{stopped}");
    assert!(count("stop") >= 2, "{stopped}");
    assert_eq!(
        count("stop") + count("calling") + count("done"),
        count("total"),
        "{stopped}"
    );

    // A campaign's progress arrives without asking, and its end.
    let campaign = app
        .start_campaign(
            "campaign",
            json!({"max_caps": 50, "max_concurrency": 20}),
            &phone_numbers(500, 30),
        )
        .await;
    let done = stream
        .task_event(Duration::from_secs(30), |data| {
            data["id"] == campaign && data["status"] == "done"
        })
        .await;
    assert_eq!(done["done"], 30, "{done}");

    // A delete is announced too.
    app.delete(&format!("/api/out_call_tasks/{second_running}"))
        .await;
    let deleted = stream
        .task_event(Duration::from_secs(3), |data| {
            data["id"] == second_running && data["deleted"] == true
        })
        .await;
    assert_eq!(deleted["status"], "stop", "{deleted}");

    // Pings come every 15 s from the publisher's start (before this client connected).
    let left = Duration::from_secs(17).saturating_sub(connected.elapsed());
    let deadline = Instant::now() + left;
    loop {
        let (name, _) = stream
            .next(deadline.saturating_duration_since(Instant::now()))
            .await
            .expect("the stream goes on");
        if name == "ping" {
            break;
        }
    }
}

/// SIGTERM with a client connected: its stream ends and the process exits at once, rather than
/// actix's graceful stop waiting on the open stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_server_ends_the_streams_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Outcall::in_dir(dir.path()).spawn();
    let client = server.connect().await;
    client.create_running_task("running", 3).await;
    let mut stream = EventStream::open(&client, "/api/events", true).await;
    stream
        .task_event(Duration::from_secs(5), |data| data["status"] == "running")
        .await;
    let asked = Instant::now();
    server.terminate();
    // Events already on their way may still come; then the stream ends.
    while let Some(event) = stream
        .next(Duration::from_secs(5).saturating_sub(asked.elapsed()))
        .await
    {
        assert!(event.0 == "task" || event.0 == "ping", "{event:?}");
    }
    let status = server.exit_status().await;
    let took = asked.elapsed();
    assert!(status.success(), "{status:?}");
    // actix's graceful stop would have waited 30 s for an open stream.
    assert!(took < Duration::from_secs(5), "stopped in {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_import_counts_its_numbers_and_not_its_rejected_rows() {
    let app = fast_app().await;
    let database = app.database_path();
    let id = app.create_task("file import").await;
    app.import(id, &mixed_numbers(0, 5)).await;
    let csv = "number\n13800138000\n13800138001\nnot a number\n13800138002\n";
    let body = format!(
        "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"n.csv\"\r\n\
         Content-Type: text/csv\r\n\r\n{csv}\r\n--b--\r\n"
    );
    let reply = app
        .post_multipart(
            &format!("/api/out_call_tasks/{id}/import"),
            "b",
            body.into_bytes(),
        )
        .await;
    let counts: Value =
        serde_json::from_str(common::success_data(&reply).as_str().unwrap()).unwrap();
    assert_eq!(
        (counts["imported"].clone(), counts["rejected"].clone()),
        (json!(3), json!(1)),
        "{counts}"
    );
    let counters = assert_counters_match(&database, id, "after a file import");
    assert_eq!(
        (counters["total"].clone(), counters["init"].clone()),
        (json!(8), json!(8)),
        "{counters}"
    );
    assert_route_matches(&app, id, &counters).await;
}
