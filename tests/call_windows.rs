//! Calling windows, calling days and the task's time zone; `task_end_time` stopping an auto_dial
//! task; the `waiting` state in stats and in the event stream. Each test runs the in-process app
//! on a manual clock (the server's zone is UTC) and a fast sim.

mod common;

use std::time::Duration;

use common::*;
use outcall::clock::Clock;
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(30);
/// A prompt the sim plays: an answered call lasts until the callee hangs up.
const MEDIA: &str = r#"{"media_id":205,"media_path":"phrase:welcome_short@xui","media_type":"SYSTEM","media_name":"welcome_short"}"#;

/// Unix seconds of `YYYY-MM-DD HH:MM:SS` in UTC. 2026-11-30 is a Monday.
fn utc(text: &str) -> i64 {
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
        .unwrap()
        .and_utc()
        .timestamp()
}

/// The app on a manual clock standing at `now` (UTC), with the sim at `time_scale`.
async fn app_at(now: &str, time_scale: f64) -> (TestApp, Clock) {
    let clock = Clock::manual(utc(now));
    let shared = clock.clone();
    let app = spawn_app_with(move |config| {
        config.clock = shared;
        config.sim.time_scale = time_scale;
    })
    .await;
    (app, clock)
}

async fn stats(api: &Api, id: i64) -> Value {
    success_data(&api.get(&format!("/api/out_call_tasks/{id}/stats")).await)
}

/// Waits until the task's stats say it waits for its window until `until`; answers the stats.
async fn wait_for_window(api: &Api, id: i64, until: &str) -> Value {
    poll(
        LONG,
        &format!("task {id} waiting until {until}"),
        || async {
            let stats = stats(api, id).await;
            if stats["waiting"] == "call_window" && stats["waiting_until"] == until {
                Ok(stats)
            } else {
                Err(stats.to_string())
            }
        },
    )
    .await
}

/// Asserts that none of the task's numbers has been dialed.
async fn assert_nothing_dialed(app: &TestApp, id: i64, numbers: usize) {
    let stats = stats(app, id).await;
    assert_eq!(stats["status"], "running", "{stats}");
    assert_eq!(stats["init"], numbers, "{stats}");
    assert_eq!(stats["calling"], 0, "{stats}");
    assert_eq!(stats["done"], 0, "{stats}");
    let attempts: i64 = app
        .db()
        .query_row(
            "SELECT count(*) FROM attempts a JOIN numbers n ON n.id = a.number_id WHERE n.group_id = ?1",
            [id],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(attempts, 0, "no call placed");
    for number in app.all_numbers(id).await {
        assert_eq!(number["outbound_call"], "1", "never dialed: {number}");
    }
}

/// Waits until the task is done; asserts every call started at `started` (the manual clock's
/// time when the window let them) and ended `NORMAL_CLEARING`.
async fn assert_all_called_at(app: &TestApp, id: i64, started: &str) {
    let numbers = app.done_numbers(id, LONG, String::new).await;
    for number in &numbers {
        assert_eq!(number["call_start_time"], started, "{number}");
        assert_eq!(number["cause"], "NORMAL_CLEARING", "{number}");
    }
    let stats = stats(app, id).await;
    assert_eq!(stats["waiting"], "", "{stats}");
    assert_eq!(stats["waiting_until"], "", "{stats}");
}

/// Numbers that answer quickly and hang up (sim digit 3).
fn quick_numbers(first: u64, n: usize) -> Vec<String> {
    (0..n as u64)
        .map(|i| format!("139{:07}3", first + i))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_the_window_no_call_starts_and_the_window_starts_them_by_itself() {
    let (app, clock) = app_at("2026-11-30 08:00:00", 0.01).await;
    let id = app
        .start_campaign(
            "morning",
            json!({"call_windows": "09:00-12:00,14:00-18:00", "max_caps": "20"}),
            &quick_numbers(0, 3),
        )
        .await;
    wait_for_window(&app, id, "2026-11-30 09:00:00").await;
    assert_nothing_dialed(&app, id, 3).await;

    // Still outside a second before the opening: the same wait.
    clock.set(utc("2026-11-30 08:59:59"));
    wait_for_window(&app, id, "2026-11-30 09:00:00").await;
    assert_nothing_dialed(&app, id, 3).await;

    clock.set(utc("2026-11-30 09:00:00"));
    assert_all_called_at(&app, id, "2026-11-30 09:00:00").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_across_midnight_is_open_late_and_early_and_shut_after_it() {
    let (app, clock) = app_at("2026-11-30 23:30:00", 0.01).await;
    let settings = json!({"call_windows": "22:00-02:00"});
    let late = app
        .start_campaign("late", settings.clone(), &quick_numbers(10, 2))
        .await;
    assert_all_called_at(&app, late, "2026-11-30 23:30:00").await;

    clock.set(utc("2026-12-01 01:00:00"));
    let early = app
        .start_campaign("early", settings.clone(), &quick_numbers(20, 2))
        .await;
    assert_all_called_at(&app, early, "2026-12-01 01:00:00").await;

    clock.set(utc("2026-12-01 03:00:00"));
    let after = app
        .start_campaign("after", settings, &quick_numbers(30, 2))
        .await;
    wait_for_window(&app, after, "2026-12-01 22:00:00").await;
    assert_nothing_dialed(&app, after, 2).await;
    clock.set(utc("2026-12-01 22:00:00"));
    assert_all_called_at(&app, after, "2026-12-01 22:00:00").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_saturday_a_weekday_task_waits_for_mondays_window() {
    // 2026-12-05 is a Saturday.
    let (app, clock) = app_at("2026-12-05 10:00:00", 0.01).await;
    let id = app
        .start_campaign(
            "weekdays",
            json!({"call_windows": "09:00-17:00", "call_weekdays": "1-5"}),
            &quick_numbers(40, 2),
        )
        .await;
    wait_for_window(&app, id, "2026-12-07 09:00:00").await;
    assert_nothing_dialed(&app, id, 2).await;

    // Sunday inside the hours: still not a calling day.
    clock.set(utc("2026-12-06 10:00:00"));
    wait_for_window(&app, id, "2026-12-07 09:00:00").await;
    assert_nothing_dialed(&app, id, 2).await;

    clock.set(utc("2026-12-07 09:00:00"));
    assert_all_called_at(&app, id, "2026-12-07 09:00:00").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_time_zone_opens_its_window_at_its_own_local_time() {
    // 00:30 UTC is 08:30 in Shanghai: its 09:00 comes at 01:00 UTC, the server's at 09:00 UTC.
    let (app, clock) = app_at("2026-11-30 00:30:00", 0.01).await;
    let shanghai = app
        .start_campaign(
            "shanghai",
            json!({"call_windows": "09:00-18:00", "time_zone": "Asia/Shanghai"}),
            &quick_numbers(50, 2),
        )
        .await;
    let server = app
        .start_campaign(
            "server zone",
            json!({"call_windows": "09:00-18:00"}),
            &quick_numbers(60, 2),
        )
        .await;
    // Times are shown in the server's zone (UTC).
    wait_for_window(&app, shanghai, "2026-11-30 01:00:00").await;
    wait_for_window(&app, server, "2026-11-30 09:00:00").await;

    clock.set(utc("2026-11-30 00:59:59"));
    wait_for_window(&app, shanghai, "2026-11-30 01:00:00").await;
    assert_nothing_dialed(&app, shanghai, 2).await;

    clock.set(utc("2026-11-30 01:00:00"));
    assert_all_called_at(&app, shanghai, "2026-11-30 01:00:00").await;
    wait_for_window(&app, server, "2026-11-30 09:00:00").await;
    assert_nothing_dialed(&app, server, 2).await;

    // 18:00 in Shanghai is 10:00 UTC: the Shanghai window is shut, the server's open.
    clock.set(utc("2026-11-30 10:00:00"));
    assert_all_called_at(&app, server, "2026-11-30 10:00:00").await;
    app.import(shanghai, &quick_numbers(70, 1)).await;
    app.start(&[shanghai]).await;
    wait_for_window(&app, shanghai, "2026-12-01 01:00:00").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_call_goes_on_when_the_window_closes() {
    // Digit 2 answers after 1 s and talks 20 s: 2.1 s at this scale.
    let (app, clock) = app_at("2026-11-30 09:59:00", 0.1).await;
    let long = "13900000002".to_owned();
    let next = "13900000013".to_owned();
    let id = app
        .start_campaign(
            "closing",
            json!({"call_windows": "09:00-10:00", "max_concurrency": "1",
                   "action": "playback", "data": MEDIA}),
            &[long.clone(), next.clone()],
        )
        .await;
    poll(LONG, "the long call to be answered", || async {
        let stats = stats(&app, id).await;
        if stats["calling"] == 1 && stats["live"] == 1 {
            let numbers = app.all_numbers(id).await;
            if numbers.iter().any(|n| n["call_answer_time"] != "") {
                return Ok(());
            }
        }
        Err(stats.to_string())
    })
    .await;
    clock.set(utc("2026-11-30 10:00:00"));
    let stats_after = wait_for_window(&app, id, "2026-12-01 09:00:00").await;
    assert_eq!(stats_after["calling"], 1, "still alive: {stats_after}");

    // The long call ends by itself, answered; the next number is not dialed.
    let numbers = poll(LONG, "the long call to end", || async {
        let numbers = app.all_numbers(id).await;
        match numbers.iter().find(|n| n["dest_number"] == long.as_str()) {
            Some(n) if n["call_status"] == "done" => Ok(numbers),
            _ => Err(Value::Array(numbers).to_string()),
        }
    })
    .await;
    for number in &numbers {
        if number["dest_number"] == long.as_str() {
            assert_eq!(number["cause"], "NORMAL_CLEARING", "{number}");
            assert_ne!(number["call_answer_time"], "", "{number}");
        } else {
            assert_eq!(number["call_status"], "init", "{number}");
            assert_eq!(number["outbound_call"], "1", "{number}");
        }
    }
    let stats = wait_for_window(&app, id, "2026-12-01 09:00:00").await;
    assert_eq!(
        stats["status"], "running",
        "not done while a number waits: {stats}"
    );
    assert_eq!(
        (stats["init"].clone(), stats["done"].clone()),
        (json!(1), json!(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_dial_task_stops_at_its_end_time_and_not_before() {
    let (app, clock) = app_at("2026-11-30 09:00:00", 0.01).await;
    // Its window opens after its end time: its numbers wait the whole time.
    let ends = app
        .start_campaign(
            "ends at ten",
            json!({"auto_dial": "1", "task_end_time": "2026-11-30 10:00:00",
                   "call_windows": "12:00-13:00"}),
            &quick_numbers(80, 3),
        )
        .await;
    // Stopped by the same pass that would stop the first one early.
    let sentinel = app
        .start_campaign(
            "ends a second earlier",
            json!({"auto_dial": "1", "task_end_time": "2026-11-30 09:59:59",
                   "call_windows": "12:00-13:00"}),
            &quick_numbers(90, 1),
        )
        .await;
    let task = app.task(ends).await;
    assert_eq!(task["task_end_time"], "2026-11-30 10:00:00", "{task}");
    wait_for_window(&app, ends, "2026-11-30 12:00:00").await;

    clock.set(utc("2026-11-30 09:59:59"));
    poll(LONG, "the sentinel to stop", || async {
        let stats = stats(&app, sentinel).await;
        (stats["status"] == "stop")
            .then_some(())
            .ok_or(stats.to_string())
    })
    .await;
    let stats_before = stats(&app, ends).await;
    assert_eq!(stats_before["status"], "running", "{stats_before}");
    assert_eq!(stats_before["init"], 3, "{stats_before}");

    clock.set(utc("2026-11-30 10:00:00"));
    let stopped = poll(LONG, "the task to stop at its end time", || async {
        let stats = stats(&app, ends).await;
        (stats["status"] == "stop")
            .then_some(stats.clone())
            .ok_or(stats.to_string())
    })
    .await;
    assert_eq!(stopped["stop"], 3, "waiting numbers become stop: {stopped}");
    assert_eq!(stopped["waiting"], "", "{stopped}");
    for number in app.all_numbers(ends).await {
        assert_eq!(number["call_status"], "stop", "{number}");
    }
    let task = app.task(ends).await;
    assert_eq!(task["status"], "stop", "{task}");
    assert_eq!(task["task_end_time"], "2026-11-30 10:00:00", "{task}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_keeps_only_a_future_end_time_of_an_auto_dial_task() {
    let (app, clock) = app_at("2026-11-30 09:00:00", 0.01).await;
    let window = "12:00-13:00";
    let create = |name: &'static str, settings: Value| {
        let app = &app;
        async move {
            let mut body = settings;
            body["group_name"] = json!(name);
            body["description"] = json!("test");
            body["call_windows"] = json!(window);
            let id = success_data(&app.post("/api/out_call_tasks", body).await)
                .as_i64()
                .unwrap();
            app.import(id, &quick_numbers(100 + id as u64 * 10, 1))
                .await;
            id
        }
    };
    let keeps = create(
        "auto, future end",
        json!({"auto_dial": "1", "task_end_time": "2026-11-30 11:00:00"}),
    )
    .await;
    let manual = create(
        "not auto",
        json!({"auto_dial": "0", "task_end_time": "2026-11-30 11:00:00"}),
    )
    .await;
    let past = create(
        "auto, past end",
        json!({"auto_dial": "1", "task_end_time": "2026-11-30 08:00:00"}),
    )
    .await;
    let started = app.start(&[keeps, manual, past]).await;
    for item in &started {
        assert_eq!(item["status"], "running", "{started:?}");
    }
    let end_time = |id: i64| {
        let app = &app;
        async move { app.task(id).await["task_end_time"].clone() }
    };
    assert_eq!(end_time(keeps).await, "2026-11-30 11:00:00");
    assert_eq!(end_time(manual).await, "");
    assert_eq!(end_time(past).await, "");

    // An auto_dial start whose end has passed as well is not made; a sentinel started by the
    // same pass shows the pass has come.
    let skipped = create(
        "start and end passed",
        json!({"auto_dial": "1", "task_start_time": "2026-11-30 09:30:00",
               "task_end_time": "2026-11-30 09:45:00"}),
    )
    .await;
    let sentinel = create(
        "start passed",
        json!({"auto_dial": "1", "task_start_time": "2026-11-30 09:30:00"}),
    )
    .await;
    clock.set(utc("2026-11-30 10:00:00"));
    poll(LONG, "the sentinel to start", || async {
        let stats = stats(&app, sentinel).await;
        (stats["status"] == "running")
            .then_some(())
            .ok_or(stats.to_string())
    })
    .await;
    assert_eq!(stats(&app, skipped).await["status"], "init");
    // The manual start that kept an end time stops there; the others run on.
    clock.set(utc("2026-11-30 11:00:00"));
    poll(LONG, "the kept end time to stop its task", || async {
        let stats = stats(&app, keeps).await;
        (stats["status"] == "stop")
            .then_some(())
            .ok_or(stats.to_string())
    })
    .await;
    for id in [manual, past, sentinel] {
        assert_eq!(stats(&app, id).await["status"], "running", "task {id}");
    }
    // A manual stop still writes the stop time.
    app.stop(&[manual]).await;
    assert_eq!(end_time(manual).await, "2026-11-30 11:00:00");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_sends_the_waiting_state_as_it_changes() {
    let (app, clock) = app_at("2026-11-30 08:00:00", 0.01).await;
    let mut response = app
        .client
        .get(app.url("/api/events"))
        .header("X-XTRA-AUTH-ID", &app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = app
        .start_campaign(
            "events",
            json!({"call_windows": "09:00-10:00"}),
            &quick_numbers(200, 2),
        )
        .await;
    let mut buffer = String::new();
    let mut next_task_event = async |wanted: &dyn Fn(&Value) -> bool| -> Value {
        let deadline = tokio::time::Instant::now() + LONG;
        loop {
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                if let Some(data) = block
                    .lines()
                    .find_map(|line| line.strip_prefix("data: "))
                    .filter(|_| block.starts_with("event: task"))
                {
                    let data: Value = serde_json::from_str(data).unwrap();
                    if data["id"] == id && wanted(&data) {
                        return data;
                    }
                }
            }
            let chunk = tokio::time::timeout_at(deadline, response.chunk())
                .await
                .expect("an event in time")
                .unwrap()
                .expect("the stream goes on");
            buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    };
    let waiting = next_task_event(&|s| s["waiting"] == "call_window").await;
    assert_eq!(waiting["waiting_until"], "2026-11-30 09:00:00", "{waiting}");
    clock.set(utc("2026-11-30 09:00:00"));
    let dialing = next_task_event(&|s| s["waiting"] == "").await;
    assert_eq!(dialing["waiting_until"], "", "{dialing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_zone_of_its_own_a_task_keeps_the_servers_hours() {
    // 13:00 UTC is 08:00 in New York, the server's zone here: times are shown in it too.
    let clock = Clock::manual(utc("2026-11-30 13:00:00"));
    let shared = clock.clone();
    let app = spawn_app_with(move |config| {
        config.clock = shared;
        config.sim.time_scale = 0.01;
        config.time_zone = outcall::clock::TimeZone::named("America/New_York").unwrap();
    })
    .await;
    let id = app
        .start_campaign(
            "new york",
            json!({"call_windows": "09:00-17:00"}),
            &quick_numbers(300, 2),
        )
        .await;
    wait_for_window(&app, id, "2026-11-30 09:00:00").await;
    clock.set(utc("2026-11-30 13:59:59"));
    wait_for_window(&app, id, "2026-11-30 09:00:00").await;
    assert_nothing_dialed(&app, id, 2).await;
    clock.set(utc("2026-11-30 14:00:00"));
    assert_all_called_at(&app, id, "2026-11-30 09:00:00").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_windows_take_effect_at_once_on_a_waiting_task() {
    let (app, _clock) = app_at("2026-11-30 20:00:00", 0.01).await;
    let id = app
        .start_campaign(
            "changed",
            json!({"call_windows": "09:00-12:00", "call_weekdays": "1-5"}),
            &quick_numbers(400, 2),
        )
        .await;
    wait_for_window(&app, id, "2026-12-01 09:00:00").await;
    // Evenings on Monday: the wait is now for 21:00 today.
    app.update_task(
        id,
        json!({"call_windows": "21:00-23:00", "call_weekdays": "1"}),
    )
    .await;
    wait_for_window(&app, id, "2026-11-30 21:00:00").await;
    assert_nothing_dialed(&app, id, 2).await;
    // Any time: it dials now, the clock not moving.
    app.update_task(id, json!({"call_windows": "", "call_weekdays": ""}))
        .await;
    assert_all_called_at(&app, id, "2026-11-30 20:00:00").await;
}
