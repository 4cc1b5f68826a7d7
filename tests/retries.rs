//! Retries by outcome, the per-day cap and the do-not-call check before every call (issue 11),
//! end to end: the real server on the sim back end (fast calls), driven over HTTP, with a manual
//! clock for the hours a schedule waits. Calls are counted from the sim's own history.
//!
//! Every wait is a bounded poll; "not dialed early" holds over a while after the clock moved
//! (a moved clock wakes the dialer at once, so an early call would show within milliseconds).

mod common;

use std::{future::Future, path::Path, sync::Arc, time::Duration};

use common::{poll, spawn_app_with_backend, Api, TestApp, ADMIN_PASSWORD};
use outcall::{
    clock::{Clock, TimeZone},
    config::Config,
    startup::{Application, Stopper},
    telephony::sim::SimBackend,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// The manual clock's start: 2026-05-28 20:26:40 UTC.
const T0: i64 = 1_780_000_000;
/// Sim calls 100 times faster than life: a busy callee answers 486 after 10 ms.
const SCALE: f64 = 0.01;
const WAIT: Duration = Duration::from_secs(15);
/// How long "nothing is dialed" must hold after the clock moved.
const QUIET: Duration = Duration::from_millis(400);

struct Dialer {
    app: TestApp,
    sim: Arc<SimBackend>,
    clock: Clock,
}

async fn spawn(scale: f64, max_attempts_per_day: Option<u32>) -> Dialer {
    let clock = Clock::manual(T0);
    let sim = Arc::new(SimBackend::new(scale).with_history());
    let shared = clock.clone();
    let app = spawn_app_with_backend(sim.clone(), move |config| {
        config.sim.time_scale = scale;
        config.clock = shared;
        config.dialer.max_attempts_per_day = max_attempts_per_day;
    })
    .await;
    Dialer { app, sim, clock }
}

/// Another instance on `data_dir` (the previous one stopped), with the same clock.
async fn restart(data_dir: &Path, clock: &Clock, sim: Arc<SimBackend>) -> (Api, Stopper) {
    let mut config = Config::for_data_dir(data_dir);
    config.admin_password = Some(ADMIN_PASSWORD.into());
    config.sim.time_scale = SCALE;
    config.clock = clock.clone();
    // The stopped instance lets go of the data directory's lock as its last step.
    let app = poll(WAIT, "the data directory to be free", || {
        let (config, sim) = (config.clone(), sim.clone());
        async move {
            Application::build_with_backend(config, sim)
                .await
                .map_err(|error| error.to_string())
        }
    })
    .await;
    let mut api = Api::new(
        format!("http://127.0.0.1:{}", app.port()),
        reqwest::Client::new(),
    );
    let stopper = app.stopper();
    tokio::spawn(app.run_until_stopped());
    api.token = api.log_in("admin", ADMIN_PASSWORD).await;
    (api, stopper)
}

fn calls_to(sim: &SimBackend, number: &str) -> usize {
    sim.calls()
        .iter()
        .filter(|call| call.dest_number == number)
        .count()
}

/// The number's row as the API lists it.
async fn number(api: &Api, task: i64, dest: &str) -> Value {
    api.all_numbers(task)
        .await
        .into_iter()
        .find(|n| n["dest_number"] == dest)
        .unwrap_or_else(|| panic!("task {task} has no number {dest}"))
}

fn number_id(row: &Value) -> i64 {
    row["id"].as_str().unwrap().parse().unwrap()
}

async fn attempts(api: &Api, task: i64, number: i64) -> Vec<Value> {
    let reply = api
        .get(&format!(
            "/api/out_call_tasks/{task}/numbers/{number}/attempts"
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["code"], 200, "{}", reply.body);
    assert_eq!(reply.body["message"], "success", "{}", reply.body);
    reply.body["data"].as_array().expect("an array").clone()
}

/// Waits (bounded) for the number's row to satisfy `check`; answers it.
async fn wait_number(
    api: &Api,
    task: i64,
    dest: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    poll(WAIT, what, || async {
        let row = number(api, task, dest).await;
        if check(&row) {
            Ok(row)
        } else {
            Err(row.to_string())
        }
    })
    .await
}

/// Waits for `dest` to wait for a retry after its `calls`-th call ended with `cause`.
async fn wait_retry_pending(api: &Api, task: i64, dest: &str, calls: usize, cause: &str) -> Value {
    let row = wait_number(
        api,
        task,
        dest,
        &format!("{dest} to wait for a retry after call {calls}"),
        |n| n["call_status"] == "init" && n["cause"] == cause,
    )
    .await;
    assert_eq!(row["outbound_call"], "0", "it was dialed: {row}");
    assert_eq!(attempts(api, task, number_id(&row)).await.len(), calls);
    row
}

/// `next_attempt_at` as stored.
fn next_attempt_at(database: &Path, id: i64) -> Option<i64> {
    common::db::open(database)
        .query_row(
            "SELECT next_attempt_at FROM numbers WHERE id = ?1",
            [id],
            |row| row.get(0),
        )
        .unwrap()
}

/// A task calling `BUSY` at most twice, 300 s apart, started at T0: its task id and the
/// number's, once the first call failed and the retry is pending.
async fn busy_retry_pending(app: &TestApp, name: &str) -> (i64, i64) {
    let task = app
        .start_campaign(
            name,
            json!({"max_attempts": 2, "retry_interval": 300}),
            &[BUSY.to_owned()],
        )
        .await;
    let id = number_id(&wait_retry_pending(app, task, BUSY, 1, "USER_BUSY").await);
    (task, id)
}

/// With the clock at T0 + 100: `BUSY`'s retry due at T0 + 300 is not dialed a second early
/// (`before` calls until then), and is dialed then.
async fn retry_dialed_when_due(sim: &SimBackend, clock: &Clock, before: usize) {
    stays_dialed(sim, BUSY, before).await;
    clock.advance(199);
    stays_dialed(sim, BUSY, before).await;
    clock.advance(1);
    wait_dialed(sim, BUSY, before + 1).await;
}

/// `Ok` when `sim` placed exactly `count` calls to `dest`.
fn dialed(sim: &SimBackend, dest: &str, count: usize) -> Result<(), String> {
    let placed = calls_to(sim, dest);
    if placed == count {
        Ok(())
    } else {
        Err(format!("{placed} calls"))
    }
}

/// Checks for a while that `sim` placed exactly `count` calls to `dest`.
async fn stays_dialed(sim: &SimBackend, dest: &str, count: usize) {
    holds_for(QUIET, &format!("{dest} dialed {count} times"), || async {
        dialed(sim, dest, count)
    })
    .await;
}

async fn wait_dialed(sim: &SimBackend, dest: &str, count: usize) {
    poll(WAIT, &format!("{dest} dialed {count} times"), || async {
        dialed(sim, dest, count)
    })
    .await;
}

async fn holds_for<F, Fut>(duration: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let end = std::time::Instant::now() + duration;
    loop {
        if let Err(seen) = check().await {
            panic!("{what} stopped holding: {seen}");
        }
        if std::time::Instant::now() >= end {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn stats(api: &Api, task: i64) -> Value {
    api.ok_get(&format!("/api/out_call_tasks/{task}/stats"))
        .await["data"]
        .clone()
}

async fn status(api: &Api, task: i64) -> String {
    api.task(task).await["status"].as_str().unwrap().to_owned()
}

fn utc(unix: i64) -> String {
    TimeZone::named("UTC").unwrap().format(unix)
}

const BUSY: &str = "13800000004";

#[tokio::test]
async fn a_busy_number_is_redialed_after_its_interval_until_max_attempts() {
    let Dialer { app, sim, clock } = spawn(SCALE, None).await;
    let task = app
        .start_campaign(
            "busy",
            json!({"max_attempts": 3, "retry_interval": 300}),
            &[BUSY.to_owned()],
        )
        .await;
    let row = wait_retry_pending(&app, task, BUSY, 1, "USER_BUSY").await;
    let id = number_id(&row);
    assert_eq!(next_attempt_at(&app.database_path(), id), Some(T0 + 300));
    assert_eq!(stats(&app, task).await["retry_pending"], 1);
    assert_eq!(
        status(&app, task).await,
        "running",
        "a pending retry keeps it running"
    );
    stays_dialed(&sim, BUSY, 1).await;
    clock.advance(299);
    stays_dialed(&sim, BUSY, 1).await;
    clock.advance(1);
    wait_dialed(&sim, BUSY, 2).await;
    wait_retry_pending(&app, task, BUSY, 2, "USER_BUSY").await;
    assert_eq!(next_attempt_at(&app.database_path(), id), Some(T0 + 600));
    clock.advance(299);
    stays_dialed(&sim, BUSY, 2).await;
    clock.advance(1);
    wait_dialed(&sim, BUSY, 3).await;
    app.wait_done(task, WAIT).await;
    stays_dialed(&sim, BUSY, 3).await;

    let row = number(&app, task, BUSY).await;
    assert_eq!(row["call_status"], "done", "{row}");
    assert_eq!(row["cause"], "USER_BUSY", "{row}");
    assert_eq!(
        row["call_start_time"],
        utc(T0 + 600),
        "the latest call: {row}"
    );
    assert_eq!(next_attempt_at(&app.database_path(), id), None);
    assert_eq!(stats(&app, task).await["retry_pending"], 0);

    let calls = attempts(&app, task, id).await;
    assert_eq!(calls.len(), 3, "{calls:?}");
    let mut uuids = std::collections::HashSet::new();
    for (index, call) in calls.iter().enumerate() {
        let start = utc(T0 + 300 * index as i64);
        assert_eq!(call["attempt"], json!(index + 1), "{call}");
        assert_eq!(call["dest_number"], BUSY, "{call}");
        assert_eq!(call["cause"], "USER_BUSY", "{call}");
        assert_eq!(call["sip_code"], "486", "{call}");
        assert_eq!(call["billsec"], json!(0), "{call}");
        assert_eq!(call["call_answer_time"], "", "{call}");
        assert_eq!(call["call_start_time"], start, "{call}");
        assert_eq!(
            call["call_end_time"], start,
            "the clock stood still: {call}"
        );
        assert_eq!(call["dtmf"], "", "{call}");
        assert_eq!(call["record_path"], "", "{call}");
        assert!(
            uuids.insert(call["uuid"].as_str().unwrap().to_owned()),
            "{calls:?}"
        );
    }
    assert_eq!(
        calls[2]["uuid"], row["uuid"],
        "the row shows the latest call"
    );
    let placed: std::collections::HashSet<String> =
        sim.calls().into_iter().map(|call| call.uuid).collect();
    assert_eq!(uuids, placed, "one attempt row per call placed");

    // Unknown task or number: 404.
    for path in [
        format!("/api/out_call_tasks/{task}/numbers/999999/attempts"),
        format!("/api/out_call_tasks/999999/numbers/{id}/attempts"),
    ] {
        let reply = app.get(&path).await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{path}: {}",
            reply.body
        );
    }
}

#[tokio::test]
async fn only_the_tasks_retry_causes_are_retried() {
    let Dialer { app, sim, clock } = spawn(SCALE, None).await;
    // Default causes: NORMAL_CLEARING (3) and CALL_REJECTED (6) are not retried.
    let default = app
        .start_campaign(
            "default causes",
            json!({"max_attempts": 3, "retry_interval": 60}),
            &["13800000013".to_owned(), "13800000016".to_owned()],
        )
        .await;
    app.wait_done(default, WAIT).await;
    for (dest, cause) in [
        ("13800000013", "NORMAL_CLEARING"),
        ("13800000016", "CALL_REJECTED"),
    ] {
        let row = number(&app, default, dest).await;
        assert_eq!(
            (row["call_status"].as_str(), row["cause"].as_str()),
            (Some("done"), Some(cause))
        );
        assert_eq!(calls_to(&sim, dest), 1, "{dest}");
    }
    // A custom list: CALL_REJECTED is retried, USER_BUSY no longer is.
    let custom = app
        .start_campaign(
            "custom causes",
            json!({"max_attempts": 2, "retry_interval": 60, "retry_causes": "CALL_REJECTED"}),
            &["13800000026".to_owned(), "13800000024".to_owned()],
        )
        .await;
    wait_retry_pending(&app, custom, "13800000026", 1, "CALL_REJECTED").await;
    wait_number(&app, custom, "13800000024", "busy to be done", |n| {
        n["call_status"] == "done" && n["cause"] == "USER_BUSY"
    })
    .await;
    clock.advance(60);
    app.wait_done(custom, WAIT).await;
    assert_eq!(calls_to(&sim, "13800000026"), 2);
    assert_eq!(calls_to(&sim, "13800000024"), 1);
    let row = number(&app, custom, "13800000026").await;
    assert_eq!(attempts(&app, custom, number_id(&row)).await.len(), 2);
}

#[tokio::test]
async fn one_attempt_is_the_vendors_behaviour() {
    let Dialer { app, sim, .. } = spawn(SCALE, None).await;
    let numbers = ["13800000004", "13800000005", "13800000003"].map(String::from);
    let task = app
        .start_campaign("once", json!({"calling_time": 5}), &numbers)
        .await;
    app.wait_done(task, WAIT).await;
    assert_eq!(app.task(task).await["max_attempts"], 1);
    for dest in &numbers {
        let row = number(&app, task, dest).await;
        assert_eq!(row["call_status"], "done", "{row}");
        assert_eq!(row["outbound_call"], "0", "{row}");
        assert_eq!(calls_to(&sim, dest), 1, "{dest}");
        let calls = attempts(&app, task, number_id(&row)).await;
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(calls[0]["cause"], row["cause"], "{calls:?}");
        assert_eq!(calls[0]["uuid"], row["uuid"], "{calls:?}");
    }
    assert_eq!(stats(&app, task).await["retry_pending"], 0);
}

#[tokio::test]
async fn a_restart_keeps_a_pending_retry_and_its_due_time() {
    let Dialer { app, sim, clock } = spawn(SCALE, None).await;
    let (task, id) = busy_retry_pending(&app, "restart").await;
    app.stopper.stop().await;
    clock.advance(100);
    let sim_after = Arc::new(SimBackend::new(SCALE).with_history());
    let (api, stopper) = restart(app.data_dir.path(), &clock, sim_after.clone()).await;
    assert_eq!(next_attempt_at(&app.database_path(), id), Some(T0 + 300));
    assert_eq!(status(&api, task).await, "running");
    assert_eq!(stats(&api, task).await["retry_pending"], 1);
    retry_dialed_when_due(&sim_after, &clock, 0).await;
    api.wait_done(task, WAIT).await;
    let calls = attempts(&api, task, id).await;
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[1]["attempt"], 2);
    assert_eq!(calls[1]["call_start_time"], utc(T0 + 300));
    assert_eq!(calls_to(&sim, BUSY), 1, "the first instance called once");
    stopper.stop().await;
}

#[tokio::test]
async fn a_stopped_and_started_task_keeps_its_pending_retries() {
    let Dialer { app, sim, clock } = spawn(SCALE, None).await;
    let (task, id) = busy_retry_pending(&app, "stop start").await;
    app.stop(&[task]).await;
    let row = number(&app, task, BUSY).await;
    assert_eq!(row["call_status"], "stop", "{row}");
    assert_eq!(next_attempt_at(&app.database_path(), id), Some(T0 + 300));
    clock.advance(100);
    app.start(&[task]).await;
    let row = number(&app, task, BUSY).await;
    assert_eq!(row["call_status"], "init", "{row}");
    assert_eq!(
        row["outbound_call"], "0",
        "still a retry, not a first call: {row}"
    );
    assert_eq!(next_attempt_at(&app.database_path(), id), Some(T0 + 300));
    retry_dialed_when_due(&sim, &clock, 1).await;
    app.wait_done(task, WAIT).await;
    let calls = attempts(&app, task, id).await;
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[1]["call_start_time"], utc(T0 + 300));
}

#[tokio::test]
async fn the_per_day_cap_holds_a_number_back_across_tasks() {
    let Dialer { app, sim, clock } = spawn(SCALE, Some(2)).await;
    // Task a calls the number twice (a retry), at T0 and T0 + 300.
    let (a, _) = busy_retry_pending(&app, "a").await;
    clock.advance(300);
    app.wait_done(a, WAIT).await;
    assert_eq!(calls_to(&sim, BUSY), 2);
    // Task b's first call of the same number is the third in 24 h: it waits for T0 + 24 h.
    let b = app.start_campaign("b", json!({}), &[BUSY.to_owned()]).await;
    let id = poll(WAIT, "the number to be held back", || async {
        let row = number(&app, b, BUSY).await;
        let id = number_id(&row);
        match next_attempt_at(&app.database_path(), id) {
            Some(at) => Ok((id, at)),
            None => Err(row.to_string()),
        }
    })
    .await
    .0;
    assert_eq!(next_attempt_at(&app.database_path(), id), Some(T0 + 86_400));
    let row = number(&app, b, BUSY).await;
    assert_eq!(
        (row["call_status"].as_str(), row["outbound_call"].as_str()),
        (Some("init"), Some("1"))
    );
    assert_eq!(row["cause"], "", "held back, not failed: {row}");
    assert_eq!(stats(&app, b).await["retry_pending"], 1);
    assert_eq!(status(&app, b).await, "running");
    stays_dialed(&sim, BUSY, 2).await;
    clock.set(T0 + 86_399);
    stays_dialed(&sim, BUSY, 2).await;
    clock.set(T0 + 86_400);
    wait_dialed(&sim, BUSY, 3).await;
    app.wait_done(b, WAIT).await;
    let row = number(&app, b, BUSY).await;
    assert_eq!(
        (row["call_status"].as_str(), row["cause"].as_str()),
        (Some("done"), Some("USER_BUSY"))
    );
    let calls = attempts(&app, b, id).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["call_start_time"], utc(T0 + 86_400));
}

#[tokio::test]
async fn the_do_not_call_list_is_checked_before_every_call() {
    // Calls 20 times faster than life: the long call rings for 60 s × 0.05 = 3 s.
    let Dialer { app, sim, clock } = spawn(0.05, None).await;
    let (busy, long, fresh) = ("13800000034", "13800000035", "13800000033");
    let task = app
        .start_campaign(
            "dnc",
            json!({"max_attempts": 2, "retry_interval": 300, "max_concurrency": 1, "calling_time": 60}),
            &[busy.to_owned(), long.to_owned(), fresh.to_owned()],
        )
        .await;
    // busy waits for its retry, long is ringing, fresh waits its turn.
    wait_number(&app, task, long, "the long call to ring", |n| {
        n["call_status"] == "calling"
    })
    .await;
    let row = number(&app, task, busy).await;
    assert_eq!(
        (row["call_status"].as_str(), row["cause"].as_str()),
        (Some("init"), Some("USER_BUSY"))
    );
    let db = app.db();
    db.execute(
        "INSERT INTO dnc (number, task_id, note, created_at) VALUES (?1, NULL, 'all tasks', ?2)",
        outcall::db::rusqlite::params![busy, T0],
    )
    .unwrap();
    db.execute(
        "INSERT INTO dnc (number, task_id, note, created_at) VALUES (?1, ?2, 'this task', ?3)",
        outcall::db::rusqlite::params![fresh, task, T0],
    )
    .unwrap();
    // fresh is refused when its turn comes, once the long call ends.
    let row = wait_number(&app, task, fresh, "fresh to end DNC", |n| {
        n["call_status"] == "done"
    })
    .await;
    assert_eq!(row["cause"], "DNC", "{row}");
    assert_eq!(row["outbound_call"], "1", "never dialed: {row}");
    assert!(attempts(&app, task, number_id(&row)).await.is_empty());
    // busy is refused when its retry is due; long (not listed) is dialed again.
    clock.advance(300);
    app.wait_done(task, WAIT).await;
    let row = number(&app, task, busy).await;
    assert_eq!(
        (row["call_status"].as_str(), row["cause"].as_str()),
        (Some("done"), Some("DNC"))
    );
    assert_eq!(row["outbound_call"], "0", "{row}");
    assert_eq!(row["call_end_time"], utc(T0 + 300), "{row}");
    assert_eq!(attempts(&app, task, number_id(&row)).await.len(), 1);
    assert_eq!(calls_to(&sim, busy), 1);
    assert_eq!(calls_to(&sim, fresh), 0);
    assert_eq!(calls_to(&sim, long), 2);
    assert_eq!(stats(&app, task).await["causes"]["DNC"], 2);
}

/// The dialer's waiting state, read from its handle (the stats route shows it as `waiting`): a
/// task with nothing to dial but a pending retry waits with reason `retry` until the retry is
/// due, and stops waiting when it dials it.
#[tokio::test]
async fn a_task_with_only_a_pending_retry_waits_for_it() {
    use outcall::{
        db::{self, numbers::NewNumber, Db},
        dialer::{self, DialerConfig, WaitReason, Waiting},
        domain::{MaxAttempts, RetryInterval, TaskName, TaskSettings},
    };
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("outcall.db")).unwrap();
    let task = db
        .run(|conn| {
            let settings = TaskSettings {
                group_name: Some(TaskName::new("waits").unwrap()),
                max_attempts: Some(MaxAttempts::new(2).unwrap()),
                retry_interval: Some(RetryInterval::new(300).unwrap()),
                ..Default::default()
            };
            let id = db::tasks::create(conn, &settings, T0)?;
            let number = NewNumber {
                dest_number: BUSY.into(),
                external_id: String::new(),
            };
            db::numbers::import(conn, id, &[number], T0)?;
            db::tasks::start(conn, &[id], T0)?;
            Ok(id)
        })
        .await
        .unwrap();
    let clock = Clock::manual(T0);
    let sim = Arc::new(SimBackend::new(SCALE).with_history());
    let config = DialerConfig {
        max_caps: 100.0,
        max_channels: 10,
        shutdown_grace: Duration::from_secs(1),
        max_attempts_per_day: None,
    };
    let (handle, supervisor) = dialer::start(
        db.clone(),
        sim.clone(),
        config,
        (clock.clone(), TimeZone::named("UTC").unwrap()),
        &tokio::runtime::Handle::current(),
    )
    .await
    .unwrap();
    let waiting = |until| {
        Some(Waiting {
            reason: WaitReason::Retry,
            until,
        })
    };
    poll(WAIT, "the task to wait for its retry", || async {
        match handle.waiting(task) {
            seen if seen == waiting(T0 + 300) => Ok(()),
            seen => Err(format!("{seen:?}")),
        }
    })
    .await;
    assert_eq!(calls_to(&sim, BUSY), 1);
    clock.advance(300);
    wait_dialed(&sim, BUSY, 2).await;
    poll(WAIT, "the task to be done and wait no more", || async {
        let status = db::tasks::get(&db.connection().unwrap(), task)
            .unwrap()
            .unwrap()
            .status;
        match (status.as_str(), handle.waiting(task)) {
            ("done", None) => Ok(()),
            seen => Err(format!("{seen:?}")),
        }
    })
    .await;
    handle.shutdown().await;
    supervisor.await.unwrap();
}
