//! The dialer end to end (GitHub issue "The dialer"): the real server with the sim back end,
//! driven over HTTP, checked against the sim's own record of the calls it was asked to place
//! (start and end instants per call) and against the database.
//!
//! Every wait is a bounded poll; a test fails with what it last saw when a deadline passes.

mod common;

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use common::{db, poll, sim_outcome, spawn_app_with_backend, TestApp, DOWNLOAD_HEADER};
use outcall::{
    config::Config,
    telephony::sim::{max_concurrent, max_starts_in_window, SimBackend, SimCall},
};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A media reference as the vendor writes them.
const MEDIA: &str = r#"{"media_id":205,"media_path":"phrase:welcome_short@xui","media_type":"SYSTEM","media_name":"welcome_short"}"#;

const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

async fn spawn_dialer(scale: f64) -> (TestApp, Arc<SimBackend>) {
    spawn_dialer_with(scale, |_| {}).await
}

async fn spawn_dialer_with(
    scale: f64,
    adjust: impl FnOnce(&mut Config),
) -> (TestApp, Arc<SimBackend>) {
    let sim = Arc::new(SimBackend::new(scale).with_history());
    let app = spawn_app_with_backend(sim.clone(), adjust).await;
    (app, sim)
}

/// Checks `check` every 25 ms for `duration`: for things that must stay true over a while.
async fn holds_for<F, Fut>(duration: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let end = Instant::now() + duration;
    loop {
        if let Err(seen) = check().await {
            panic!("{what} stopped holding: {seen}");
        }
        if Instant::now() >= end {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Numbers from `first`, `count` of them, as decimal strings ("1000", "1001", …).
fn numbers_from(first: u64, count: u64) -> Vec<String> {
    (first..first + count).map(|n| n.to_string()).collect()
}

/// Creates a task with `settings`, imports `numbers` into it; answers its id.
async fn create_dialing_task(
    app: &TestApp,
    name: &str,
    settings: Value,
    numbers: &[String],
) -> i64 {
    let id = app.create_task(name).await;
    app.update_task(id, settings).await;
    app.import(id, numbers).await;
    id
}

/// Starts one task, asserting the reply says `running` with a start time.
async fn start_task(app: &TestApp, id: i64) -> Value {
    let items = app.start(&[id]).await;
    assert_eq!(items.len(), 1, "{items:?}");
    let item = items[0].clone();
    assert_eq!(item["data_id"], Value::String(id.to_string()), "{item}");
    assert_eq!(item["status"], "running", "start: {item}");
    common::assert_recent_timestamp(&item["task_start_time"], "task_start_time");
    item
}

async fn task_status(app: &TestApp, id: i64) -> String {
    app.task(id).await["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Waits (bounded) for the task to be `done`; answers it.
async fn wait_done(app: &TestApp, id: i64, timeout: Duration) -> Value {
    poll(timeout, &format!("task {id} to be done"), || async {
        let task = app.task(id).await;
        if task["status"] == "done" {
            Ok(task)
        } else {
            Err(format!(
                "status {} done_total {}",
                task["status"], task["done_total"]
            ))
        }
    })
    .await
}

/// The task's numbers (as the API lists them) by dest_number.
async fn numbers_by_dest(app: &TestApp, id: i64) -> HashMap<String, Value> {
    app.all_numbers(id)
        .await
        .into_iter()
        .map(|n| (n["dest_number"].as_str().unwrap().to_owned(), n))
        .collect()
}

/// The sim's calls whose number is in `numbers`.
fn calls_to(sim: &SimBackend, numbers: &[String]) -> Vec<SimCall> {
    let wanted: HashSet<&str> = numbers.iter().map(String::as_str).collect();
    sim.calls()
        .into_iter()
        .filter(|c| wanted.contains(c.dest_number.as_str()))
        .collect()
}

/// The calls by number, asserting no number was called twice.
fn calls_by_number(calls: &[SimCall]) -> HashMap<String, SimCall> {
    let mut by_number = HashMap::new();
    for call in calls {
        if let Some(earlier) = by_number.insert(call.dest_number.clone(), call.clone()) {
            panic!(
                "number {} was dialed twice: uuid {} and uuid {}",
                call.dest_number, earlier.uuid, call.uuid
            );
        }
    }
    by_number
}

/// The shortest time in which `count` consecutive calls started.
fn tightest_span(calls: &[SimCall], count: usize) -> Option<Duration> {
    let mut starts: Vec<Instant> = calls.iter().map(|c| c.started).collect();
    starts.sort();
    starts.windows(count).map(|w| w[count - 1] - w[0]).min()
}

/// The calls' start instants in order, as gaps between consecutive starts.
fn start_gaps(calls: &[SimCall]) -> Vec<Duration> {
    let mut starts: Vec<Instant> = calls.iter().map(|c| c.started).collect();
    starts.sort();
    starts.windows(2).map(|w| w[1] - w[0]).collect()
}

fn parse_time(text: &str) -> chrono::NaiveDateTime {
    chrono::NaiveDateTime::parse_from_str(text, TIME_FORMAT)
        .unwrap_or_else(|_| panic!("a YYYY-MM-DD HH:MM:SS time: {text:?}"))
}

fn seconds_between(from: &str, to: &str) -> i64 {
    (parse_time(to) - parse_time(from)).num_seconds()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A unix time as the API writes it (the test configuration's zone is UTC).
fn api_time(unix_seconds: i64) -> String {
    chrono::DateTime::from_timestamp(unix_seconds, 0)
        .unwrap()
        .format(TIME_FORMAT)
        .to_string()
}

/// Converts a sim instant to unix seconds through a pair of readings taken together.
struct WallClock {
    instant: Instant,
    unix: f64,
}

impl WallClock {
    fn now() -> Self {
        WallClock {
            instant: Instant::now(),
            unix: unix_now(),
        }
    }

    fn unix(&self, at: Instant) -> f64 {
        if at >= self.instant {
            self.unix + (at - self.instant).as_secs_f64()
        } else {
            self.unix - (self.instant - at).as_secs_f64()
        }
    }
}

/// Checks a finished campaign: the task, every number against the rules of the sim, the sim's
/// own record (one call a number, in id order, within the pace and the concurrency), and the
/// download.
async fn check_finished_campaign(
    app: &TestApp,
    sim: &SimBackend,
    id: i64,
    numbers: &[String],
    confirm_key: bool,
    max_caps: usize,
    max_concurrency: usize,
) {
    let task = app.task(id).await;
    assert_eq!(task["status"], "done", "{task}");
    common::assert_recent_timestamp(&task["task_end_time"], "task_end_time");
    assert!(
        task["task_start_time"].as_str().unwrap() <= task["task_end_time"].as_str().unwrap(),
        "{task}"
    );
    assert_eq!(
        task["done_total"],
        format!("{}/{}", numbers.len(), numbers.len()),
        "{task}"
    );

    // The sim: one call a number, placed in id order (= import order), all ended.
    let calls = calls_to(sim, numbers);
    assert_eq!(
        calls.len(),
        numbers.len(),
        "one call a number, {} numbers",
        numbers.len()
    );
    let by_number = calls_by_number(&calls);
    let placed: Vec<&str> = calls.iter().map(|c| c.dest_number.as_str()).collect();
    let imported: Vec<&str> = numbers.iter().map(String::as_str).collect();
    assert_eq!(placed, imported, "numbers are dialed in id order");
    for call in &calls {
        assert!(
            call.ended.is_some(),
            "the sim's call to {} never ended",
            call.dest_number
        );
    }
    let busiest = max_starts_in_window(&calls, Duration::from_secs(1));
    assert!(
        busiest <= max_caps,
        "{busiest} calls started within one second; max_caps is {max_caps}; the tightest {} \
         consecutive starts span {:?}",
        max_caps + 1,
        tightest_span(&calls, max_caps + 1)
    );
    let alive = max_concurrent(&calls);
    assert!(
        alive <= max_concurrency,
        "{alive} calls were alive at once; max_concurrency is {max_concurrency}"
    );

    // Every number: done, dialed, the sim's uuid, the cause its last digit predicts.
    let listed = numbers_by_dest(app, id).await;
    assert_eq!(listed.len(), numbers.len());
    for number in numbers {
        let n = &listed[number];
        common::assert_number_shape(n);
        let call = &by_number[number];
        let (cause, dtmf, answered) = sim_outcome(number, confirm_key);
        assert_eq!(n["call_status"], "done", "{n}");
        assert_eq!(n["outbound_call"], "0", "{n}");
        assert_eq!(
            n["uuid"],
            call.uuid.as_str(),
            "the uuid of the sim's call: {n}"
        );
        assert_eq!(n["cause"], cause, "cause of {number}: {n}");
        assert_eq!(call.cause, Some(cause), "the sim's cause for {number}");
        assert_eq!(n["dtmf"], dtmf, "dtmf of {number}: {n}");
        let start = n["call_start_time"].as_str().unwrap();
        let answer = n["call_answer_time"].as_str().unwrap();
        let end = n["call_end_time"].as_str().unwrap();
        assert!(common::is_timestamp(start), "call_start_time: {n}");
        assert!(common::is_timestamp(end), "call_end_time: {n}");
        assert!(start <= end, "{n}");
        if answered {
            assert!(
                common::is_timestamp(answer),
                "an answered call has call_answer_time: {n}"
            );
            assert!(start <= answer && answer <= end, "{n}");
        } else {
            assert_eq!(
                answer, "",
                "an unanswered call has no call_answer_time: {n}"
            );
        }
    }

    // The download: a header, then a row a number in id order, the durations filled in.
    let reply = app.get(&format!("/api/out_call_tasks/{id}/download")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let rows = reply.body.as_array().expect("an array of rows").clone();
    assert_eq!(rows.len(), numbers.len() + 1);
    assert_eq!(rows[0], json!(DOWNLOAD_HEADER));
    let group_name = task["group_name"].as_str().unwrap();
    for (row, number) in rows[1..].iter().zip(numbers) {
        let row: Vec<&str> = row
            .as_array()
            .unwrap_or_else(|| panic!("a row is an array: {row}"))
            .iter()
            .map(|cell| {
                cell.as_str()
                    .unwrap_or_else(|| panic!("cells are strings: {row:?}"))
            })
            .collect();
        assert_eq!(row.len(), 10, "{row:?}");
        let n = &listed[number];
        let (start, answer, end) = (
            n["call_start_time"].as_str().unwrap(),
            n["call_answer_time"].as_str().unwrap(),
            n["call_end_time"].as_str().unwrap(),
        );
        let total = seconds_between(start, end).to_string();
        let billed = if answer.is_empty() {
            "0".to_owned()
        } else {
            seconds_between(answer, end).to_string()
        };
        let expected = [
            group_name,
            "放音",
            number.as_str(),
            "done",
            start,
            answer,
            end,
            total.as_str(),
            billed.as_str(),
            n["cause"].as_str().unwrap(),
        ];
        assert_eq!(row, expected, "download row of {number}");
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// 200 numbers, every last digit 20 times, at 20 CAPS and 5 concurrent calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_runs_to_done_within_its_pace_and_concurrency() {
    let (app, sim) = spawn_dialer(0.05).await;
    let numbers = numbers_from(1000, 200);
    let id = create_dialing_task(
        &app,
        "campaign",
        json!({"max_caps": 20, "max_concurrency": 5, "calling_time": 5,
               "action": "playback", "data": MEDIA}),
        &numbers,
    )
    .await;
    start_task(&app, id).await;
    wait_done(&app, id, Duration::from_secs(40)).await;
    check_finished_campaign(&app, &sim, id, &numbers, false, 20, 5).await;
}

/// With a confirm key, the callee's key decides: the right key lets the playback run, a wrong
/// key or none rejects or times out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_with_a_confirm_key() {
    let (app, sim) = spawn_dialer(0.05).await;
    let numbers = numbers_from(2000, 60);
    let id = create_dialing_task(
        &app,
        "confirming",
        json!({"max_caps": 20, "max_concurrency": 5, "calling_time": 5,
               "group_confirm_key": "1", "group_confirm_file": MEDIA,
               "action": "playback", "data": MEDIA}),
        &numbers,
    )
    .await;
    start_task(&app, id).await;
    wait_done(&app, id, Duration::from_secs(20)).await;
    check_finished_campaign(&app, &sim, id, &numbers, true, 20, 5).await;
}

/// max_caps 0.5: one call every 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fractional_caps_space_the_starts() {
    let (app, sim) = spawn_dialer(0.05).await;
    let numbers: Vec<String> = ["3003", "3013", "3023"].map(String::from).to_vec();
    let id = create_dialing_task(
        &app,
        "half a call a second",
        json!({"max_caps": 0.5, "max_concurrency": 3}),
        &numbers,
    )
    .await;
    start_task(&app, id).await;
    wait_done(&app, id, Duration::from_secs(12)).await;
    let calls = calls_to(&sim, &numbers);
    assert_eq!(calls.len(), 3);
    calls_by_number(&calls);
    for gap in start_gaps(&calls) {
        assert!(
            gap >= Duration::from_millis(1990),
            "at max_caps 0.5 starts are 2 s apart, not {gap:?}"
        );
        assert!(
            gap <= Duration::from_millis(2600),
            "at max_caps 0.5 starts are 2 s apart; {gap:?} is much slower than asked"
        );
    }
}

/// The pace holds across a stop and a start: a task stopped and started again right away does
/// not place a call sooner than its max_caps allows after the previous one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pace_holds_across_a_stop_and_a_start() {
    let (app, sim) = spawn_dialer(0.05).await;
    // Unallocated numbers: each call is over in 10 ms.
    let numbers: Vec<String> = ["9009", "9019", "9029"].map(String::from).to_vec();
    let id = create_dialing_task(
        &app,
        "stop and go",
        json!({"max_caps": 0.5, "max_concurrency": 1}),
        &numbers,
    )
    .await;
    start_task(&app, id).await;
    poll(
        Duration::from_secs(5),
        "the first call to be done",
        || async {
            let rows = db::numbers(&app.database_path(), id);
            match db::with_status(&rows, "done").len() {
                0 => Err(format!("{rows:?}")),
                _ => Ok(()),
            }
        },
    )
    .await;
    let stopped = app.stop(&[id]).await;
    assert_eq!(stopped[0]["status"], "stop", "{stopped:?}");
    start_task(&app, id).await;
    wait_done(&app, id, Duration::from_secs(12)).await;
    let calls = calls_to(&sim, &numbers);
    assert_eq!(calls.len(), 3);
    let busiest = max_starts_in_window(&calls, Duration::from_secs(1));
    assert!(
        busiest <= 1,
        "{busiest} calls started within one second at max_caps 0.5 (gaps {:?})",
        start_gaps(&calls)
    );
    for gap in start_gaps(&calls) {
        assert!(
            gap >= Duration::from_millis(1990),
            "at max_caps 0.5 starts are 2 s apart, also across a stop and start, not {gap:?}"
        );
    }
}

/// Stop: nothing new is dialed, live calls finish normally, waiting numbers become `stop`.
/// Start again: only the numbers never dialed are dialed, and the task ends done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_lets_live_calls_finish_and_a_restart_dials_only_the_rest() {
    let scale = 0.015;
    let (app, sim) = spawn_dialer(scale).await;
    // Last digit 2: ring 1 s, talk 20 s; 315 ms a call at this scale.
    let numbers: Vec<String> = (0..60).map(|i| format!("5{i:03}2")).collect();
    let id = create_dialing_task(
        &app,
        "stoppable",
        json!({"max_caps": 10, "max_concurrency": 3, "action": "playback", "data": MEDIA}),
        &numbers,
    )
    .await;
    start_task(&app, id).await;
    poll(
        Duration::from_secs(15),
        "some numbers done and some calling",
        || async {
            let rows = db::numbers(&app.database_path(), id);
            let (done, calling) = (
                db::with_status(&rows, "done").len(),
                db::with_status(&rows, "calling").len(),
            );
            if done >= 5 && calling >= 1 {
                Ok(())
            } else {
                Err(format!("{done} done, {calling} calling"))
            }
        },
    )
    .await;

    let stopped = app.stop(&[id]).await;
    let at_stop = db::numbers(&app.database_path(), id);
    let stopped_at = Instant::now();
    assert_eq!(stopped.len(), 1);
    assert_eq!(stopped[0]["status"], "stop", "{stopped:?}");
    common::assert_recent_timestamp(&stopped[0]["task_end_time"], "task_end_time");
    let dialed: HashSet<String> = at_stop
        .iter()
        .filter(|(_, n)| n.outbound_call == 0)
        .map(|(number, _)| number.clone())
        .collect();
    for n in at_stop.values() {
        match n.call_status.as_str() {
            "calling" | "done" => assert_eq!(n.outbound_call, 0, "{n:?}"),
            "stop" => assert_eq!(n.outbound_call, 1, "{n:?}"),
            _ => panic!("right after a stop no number is waiting: {n:?}"),
        }
    }
    assert!(dialed.len() < numbers.len(), "numbers were left to dial");

    // The live calls end by themselves; nothing else is dialed, now or a while later.
    poll(Duration::from_secs(5), "the live calls to end", || async {
        let rows = db::numbers(&app.database_path(), id);
        match db::with_status(&rows, "calling").len() {
            0 => Ok(()),
            calling => Err(format!("{calling} calling")),
        }
    })
    .await;
    holds_for(Duration::from_secs(1), "no new call after the stop", || async {
        let calls = calls_to(&sim, &numbers);
        let unexpected: Vec<&SimCall> = calls
            .iter()
            .filter(|c| !dialed.contains(&c.dest_number))
            .collect();
        if unexpected.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} calls to numbers not dialed at the stop, e.g. {:?}, started {:?} after the stop",
                unexpected.len(),
                unexpected[0].dest_number,
                unexpected[0].started.saturating_duration_since(stopped_at)
            ))
        }
    })
    .await;
    let task = app.task(id).await;
    assert_eq!(
        task["status"], "stop",
        "a stopped task stays stopped: {task}"
    );
    assert_eq!(task["task_end_time"], stopped[0]["task_end_time"], "{task}");

    let calls = calls_to(&sim, &numbers);
    let by_number = calls_by_number(&calls);
    let called: HashSet<String> = by_number.keys().cloned().collect();
    assert_eq!(
        called, dialed,
        "the sim placed exactly the calls claimed before the stop"
    );
    let talk = Duration::from_secs(20).mul_f64(scale);
    let listed = numbers_by_dest(&app, id).await;
    for (number, n) in &listed {
        if dialed.contains(number) {
            assert_eq!(n["call_status"], "done", "{n}");
            assert_eq!(
                n["cause"], "NORMAL_CLEARING",
                "a live call finishes normally: {n}"
            );
            assert_eq!(n["uuid"], at_stop[number].uuid.as_str(), "{n}");
            let call = &by_number[number];
            let lasted = call.ended.expect("ended") - call.started;
            assert!(
                lasted >= talk,
                "the call to {number} lasted {lasted:?}, less than its talk time {talk:?}"
            );
        } else {
            assert_eq!(n["call_status"], "stop", "{n}");
            assert_eq!(n["outbound_call"], "1", "{n}");
            assert_eq!(n["uuid"], "", "{n}");
            assert_eq!(n["cause"], "", "{n}");
        }
    }

    // Start again: the rest is dialed, nothing twice.
    let restarted_at = Instant::now();
    start_task(&app, id).await;
    wait_done(&app, id, Duration::from_secs(20)).await;
    let calls = calls_to(&sim, &numbers);
    let by_number = calls_by_number(&calls);
    assert_eq!(by_number.len(), numbers.len(), "every number called once");
    for call in &calls {
        if !dialed.contains(&call.dest_number) {
            assert!(
                call.started >= restarted_at,
                "{} was called before the restart",
                call.dest_number
            );
        }
    }
    let listed = numbers_by_dest(&app, id).await;
    for (number, n) in &listed {
        assert_eq!(n["call_status"], "done", "{n}");
        assert_eq!(n["outbound_call"], "0", "{n}");
        assert_eq!(n["cause"], "NORMAL_CLEARING", "{n}");
        assert_eq!(n["uuid"], by_number[number].uuid.as_str(), "{n}");
        if dialed.contains(number) {
            assert_eq!(
                n["uuid"],
                at_stop[number].uuid.as_str(),
                "not redialed: {n}"
            );
        }
    }
    let task = app.task(id).await;
    assert_eq!(task["status"], "done", "{task}");
    assert_eq!(task["done_total"], "60/60", "{task}");
}

/// auto_dial: a task starts by itself at its task_start_time, not before; moving the time
/// reschedules; turning auto_dial off cancels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_dial_starts_a_task_at_its_start_time() {
    let (app, sim) = spawn_dialer(0.05).await;
    let clock = WallClock::now();
    let settings = json!({"max_caps": 10, "max_concurrency": 3});
    let a_numbers = numbers_from(91003, 3);
    let b_numbers = numbers_from(92003, 3);
    let c_numbers = numbers_from(93003, 3);
    let a = create_dialing_task(&app, "auto a", settings.clone(), &a_numbers).await;
    let b = create_dialing_task(&app, "auto b", settings.clone(), &b_numbers).await;
    let c = create_dialing_task(&app, "auto c", settings.clone(), &c_numbers).await;

    let at = unix_now().floor() as i64 + 3;
    let later = at + 3;
    app.update_task(a, json!({"auto_dial": 1, "task_start_time": api_time(at)}))
        .await;
    app.update_task(b, json!({"auto_dial": 1, "task_start_time": api_time(at)}))
        .await;
    app.update_task(b, json!({"task_start_time": api_time(later)}))
        .await;
    app.update_task(
        c,
        json!({"auto_dial": "1", "task_start_time": api_time(at)}),
    )
    .await;
    app.update_task(c, json!({"auto_dial": 0})).await;

    let task = app.task(a).await;
    assert_eq!(task["status"], "init", "{task}");
    assert_eq!(task["auto_dial"], 1, "{task}");
    assert_eq!(task["task_start_time"], api_time(at), "{task}");
    assert_eq!(app.task(b).await["task_start_time"], api_time(later));
    assert_eq!(app.task(c).await["auto_dial"], 0);

    // Before the start time: nothing.
    let quiet = Duration::from_secs_f64((at as f64 - 0.3 - unix_now()).max(0.0));
    holds_for(quiet, "nothing before the start time", || async {
        for id in [a, b, c] {
            let status = task_status(&app, id).await;
            if status != "init" {
                return Err(format!("task {id} is {status} before its start time"));
            }
        }
        match sim.calls().len() {
            0 => Ok(()),
            n => Err(format!("{n} calls placed before the start time")),
        }
    })
    .await;

    // A starts by itself at its time and runs to done.
    let task = wait_done(
        &app,
        a,
        Duration::from_secs_f64(at as f64 + 6.0 - unix_now()),
    )
    .await;
    let calls = calls_to(&sim, &a_numbers);
    assert_eq!(calls.len(), 3, "every number of A was called");
    let first = calls.iter().map(|c| c.started).min().unwrap();
    assert!(
        clock.unix(first) >= at as f64 - 0.01,
        "A's first call started {:.3} s before its start time",
        at as f64 - clock.unix(first)
    );
    assert!(
        clock.unix(first) <= at as f64 + 2.0,
        "A's first call started {:.3} s after its start time",
        clock.unix(first) - at as f64
    );
    let shown = task["task_start_time"].as_str().unwrap().to_owned();
    assert!(
        shown.as_str() >= api_time(at).as_str() && shown.as_str() <= api_time(at + 2).as_str(),
        "task_start_time {shown:?} is about the scheduled {:?}",
        api_time(at)
    );
    common::assert_recent_timestamp(&task["task_end_time"], "task_end_time");

    // B was moved: not started at the old time.
    let quiet = Duration::from_secs_f64((at as f64 + 1.6 - unix_now()).max(0.0));
    holds_for(quiet, "B not started at its old time", || async {
        let status = task_status(&app, b).await;
        let calls = calls_to(&sim, &b_numbers).len();
        if status == "init" && calls == 0 {
            Ok(())
        } else {
            Err(format!("B is {status} with {calls} calls"))
        }
    })
    .await;
    assert_eq!(task_status(&app, b).await, "init");
    let task = wait_done(
        &app,
        b,
        Duration::from_secs_f64(later as f64 + 6.0 - unix_now()),
    )
    .await;
    let calls = calls_to(&sim, &b_numbers);
    assert_eq!(calls.len(), 3, "every number of B was called");
    let first = calls.iter().map(|c| c.started).min().unwrap();
    assert!(
        clock.unix(first) >= later as f64 - 0.01,
        "B started {:.3} s before its new start time",
        later as f64 - clock.unix(first)
    );
    let shown = task["task_start_time"].as_str().unwrap().to_owned();
    assert!(
        shown.as_str() >= api_time(later).as_str()
            && shown.as_str() <= api_time(later + 2).as_str(),
        "B's task_start_time {shown:?} is about {:?}",
        api_time(later)
    );

    // C was cancelled: well past its old time, still waiting and never dialed.
    let task = app.task(c).await;
    assert_eq!(
        task["status"], "init",
        "a cancelled auto_dial does not start: {task}"
    );
    assert_eq!(calls_to(&sim, &c_numbers).len(), 0);
}

/// Numbers imported into a running task are dialed too, even when every earlier number has
/// already been dialed; a done task given new numbers and started again dials only those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_imported_while_running_are_dialed() {
    let (app, sim) = spawn_dialer(0.05).await;
    // Last digit 2: a call lasts 1.05 s at this scale.
    let first: Vec<String> = ["60002", "60012", "60022"].map(String::from).to_vec();
    let id = create_dialing_task(
        &app,
        "growing",
        json!({"max_caps": 10, "max_concurrency": 3, "action": "playback", "data": MEDIA}),
        &first,
    )
    .await;
    start_task(&app, id).await;
    poll(
        Duration::from_secs(5),
        "all three numbers calling",
        || async {
            let rows = db::numbers(&app.database_path(), id);
            match db::with_status(&rows, "calling").len() {
                3 => Ok(()),
                _ => Err(format!("{rows:?}")),
            }
        },
    )
    .await;
    let second: Vec<String> = ["60103", "60113", "60123"].map(String::from).to_vec();
    app.import(id, &second).await;
    assert!(
        calls_to(&sim, &first).iter().any(|c| c.ended.is_none()),
        "the import happened while the first calls were alive"
    );
    wait_done(&app, id, Duration::from_secs(10)).await;
    let all: Vec<String> = first.iter().chain(&second).cloned().collect();
    let calls = calls_to(&sim, &all);
    let by_number = calls_by_number(&calls);
    assert_eq!(by_number.len(), 6, "the imported numbers were dialed too");
    let placed: Vec<&str> = calls.iter().map(|c| c.dest_number.as_str()).collect();
    let in_id_order: Vec<&str> = all.iter().map(String::as_str).collect();
    assert_eq!(placed, in_id_order, "dialed in id order");
    let listed = numbers_by_dest(&app, id).await;
    for n in listed.values() {
        assert_eq!(n["call_status"], "done", "{n}");
        assert_eq!(n["cause"], "NORMAL_CLEARING", "{n}");
    }
    let task = app.task(id).await;
    assert_eq!(task["done_total"], "6/6", "{task}");

    // Done, then new numbers and a new start: only the new ones are dialed.
    let before: HashMap<String, String> = listed
        .iter()
        .map(|(k, n)| (k.clone(), n["uuid"].as_str().unwrap().to_owned()))
        .collect();
    let third: Vec<String> = ["60203", "60213"].map(String::from).to_vec();
    app.import(id, &third).await;
    start_task(&app, id).await;
    wait_done(&app, id, Duration::from_secs(10)).await;
    let all: Vec<String> = all.iter().chain(&third).cloned().collect();
    let calls = calls_to(&sim, &all);
    let by_number = calls_by_number(&calls);
    assert_eq!(by_number.len(), 8, "the new numbers were dialed, once each");
    let listed = numbers_by_dest(&app, id).await;
    for (number, n) in &listed {
        assert_eq!(n["call_status"], "done", "{n}");
        if let Some(uuid) = before.get(number) {
            assert_eq!(n["uuid"], uuid.as_str(), "not redialed: {n}");
        }
    }
    let task = app.task(id).await;
    assert_eq!(task["done_total"], "8/8", "{task}");
}

/// The box-wide ceilings bind all tasks together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_ceilings_bind_all_tasks_together() {
    let (app, sim) = spawn_dialer_with(0.08, |config| {
        config.dialer.max_caps = 10.0;
        config.dialer.max_channels = 4;
    })
    .await;
    let settings = json!({"max_caps": 20, "max_concurrency": 10, "calling_time": 5,
                          "action": "playback", "data": MEDIA});
    let a_numbers = numbers_from(7000, 25);
    let b_numbers = numbers_from(8000, 25);
    let a = create_dialing_task(&app, "global a", settings.clone(), &a_numbers).await;
    let b = create_dialing_task(&app, "global b", settings, &b_numbers).await;
    let started = app.start(&[a, b]).await;
    assert!(
        started.iter().all(|s| s["status"] == "running"),
        "{started:?}"
    );
    wait_done(&app, a, Duration::from_secs(20)).await;
    wait_done(&app, b, Duration::from_secs(20)).await;
    let calls = sim.calls();
    assert_eq!(calls.len(), 50);
    calls_by_number(&calls);
    let busiest = max_starts_in_window(&calls, Duration::from_secs(1));
    assert!(
        busiest <= 10,
        "{busiest} calls started within one second across both tasks; the box allows 10; \
         the tightest 11 consecutive starts span {:?}",
        tightest_span(&calls, 11)
    );
    let alive = max_concurrent(&calls);
    assert!(
        alive <= 4,
        "{alive} calls alive at once across both tasks; the box allows 4"
    );
    for id in [a, b] {
        for n in app.all_numbers(id).await {
            assert_eq!(n["call_status"], "done", "{n}");
        }
    }
}

/// Deleting a running task: nothing more is dialed for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_running_task_stops_its_dialing() {
    let (app, sim) = spawn_dialer(0.05).await;
    let numbers: Vec<String> = (0..30).map(|i| format!("4{i:03}3")).collect();
    let id = create_dialing_task(
        &app,
        "doomed",
        json!({"max_caps": 5, "max_concurrency": 2}),
        &numbers,
    )
    .await;
    start_task(&app, id).await;
    poll(Duration::from_secs(5), "three calls placed", || async {
        match sim.calls().len() {
            n if n >= 3 => Ok(()),
            n => Err(format!("{n} calls")),
        }
    })
    .await;
    let reply = app.delete(&format!("/api/out_call_tasks/{id}")).await;
    assert_eq!(common::success_data(&reply), Value::String(id.to_string()));
    let deleted_at = Instant::now();
    let at_delete = db::numbers(&app.database_path(), id);
    let dialed: HashSet<String> = at_delete
        .iter()
        .filter(|(_, n)| n.outbound_call == 0)
        .map(|(number, _)| number.clone())
        .collect();
    assert!(dialed.len() < numbers.len());
    assert_eq!(
        app.get(&format!("/api/out_call_tasks/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    // At 5 CAPS a dialer that ignored the deletion would place 7 or so calls in 1.5 s.
    holds_for(
        Duration::from_millis(1500),
        "no call after the delete",
        || async {
            let calls = sim.calls();
            let late: Vec<&SimCall> = calls
                .iter()
                .filter(|c| !dialed.contains(&c.dest_number))
                .collect();
            if late.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{} calls to numbers not dialed at the delete, the first {:?} after it",
                    late.len(),
                    late[0].started.saturating_duration_since(deleted_at)
                ))
            }
        },
    )
    .await;
    let calls = sim.calls();
    let by_number = calls_by_number(&calls);
    assert_eq!(
        by_number.keys().cloned().collect::<HashSet<_>>(),
        dialed,
        "the sim placed exactly the calls claimed before the delete"
    );
    // The calls alive at the delete still got their results.
    let rows = db::numbers(&app.database_path(), id);
    for number in &dialed {
        let n = &rows[number];
        assert_eq!(n.call_status, "done", "{n:?}");
        assert_eq!(n.cause, "NORMAL_CLEARING", "{n:?}");
        assert_eq!(n.uuid, by_number[number].uuid, "{n:?}");
    }
    for (_, n) in rows.iter().filter(|(number, _)| !dialed.contains(*number)) {
        assert_eq!(n.outbound_call, 1, "{n:?}");
        assert_eq!(
            n.call_status, "stop",
            "a deleted task is stopped first: {n:?}"
        );
    }
}
