//! Crash safety with the real binary: SIGKILL in the middle of a campaign, and SIGTERM with live
//! calls. The database is read directly from its file, and the sim's call log (a line appended
//! per call placed, with write(2), so it survives a SIGKILL) tells which calls were really placed.

use std::{
    collections::HashSet,
    path::Path,
    process::ExitStatus,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

mod common;

use common::{
    db::{self, placed_by_number, with_status},
    poll,
    process::{call_log, database, Outcall, Server},
    sim_cause,
};
use serde_json::json;

const MEDIA: &str = r#"{"media_id":205,"media_path":"phrase:welcome_short@xui","media_type":"SYSTEM","media_name":"welcome_short"}"#;

/// The binary on `dir` at sim time scale `scale`, with `extra` arguments.
fn spawn_server(dir: &Path, scale: f64, extra: &[&str]) -> Server {
    Outcall::in_dir(dir)
        .sim_time_scale(scale)
        .args(extra)
        .spawn()
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// SIGKILL with about half the numbers done: after a restart every number ends exactly once,
/// the calls cut by the crash end with SYSTEM_SHUTDOWN and are never redialed, and the numbers
/// never dialed are dialed by the restarted process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loses_nothing_and_dials_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let numbers: Vec<String> = (10_000..10_240).map(|n: u32| n.to_string()).collect();

    let mut server = spawn_server(dir, 0.1, &[]);
    let client = server.connect().await;
    let id = client
        .start_campaign(
            "crash",
            json!({"max_caps": 20, "max_concurrency": 10, "calling_time": 5,
                   "action": "playback", "data": MEDIA}),
            &numbers,
        )
        .await;
    poll(Duration::from_secs(30), "half the numbers done", || async {
        let done = client.done_count(id).await;
        if done >= numbers.len() / 2 {
            Ok(())
        } else {
            Err(format!("{done} done"))
        }
    })
    .await;
    server.kill();
    drop(client);

    let at_kill = db::numbers(&database(dir), id);
    let log_at_kill = db::read_call_log(&call_log(dir));
    let calling = with_status(&at_kill, "calling");
    let waiting = with_status(&at_kill, "init");
    let done = with_status(&at_kill, "done");
    assert_eq!(calling.len() + waiting.len() + done.len(), numbers.len());
    eprintln!(
        "at the kill: {} calling {} waiting {} done, {} placed",
        calling.len(),
        waiting.len(),
        done.len(),
        log_at_kill.len()
    );
    assert!(!calling.is_empty(), "calls were alive at the kill");
    assert!(
        !waiting.is_empty(),
        "numbers were still waiting at the kill"
    );
    for number in &waiting {
        assert_eq!(at_kill[*number].outbound_call, 1, "{:?}", at_kill[*number]);
    }

    let restarted_at = unix_ms();
    let mut server = spawn_server(dir, 0.1, &[]);
    let client = server.connect().await;
    client.wait_done(id, Duration::from_secs(40)).await;
    let after = db::numbers(&database(dir), id);
    let log = db::read_call_log(&call_log(dir));
    let placed = placed_by_number(&log);

    for number in &numbers {
        let before = &at_kill[number];
        let now = &after[number];
        assert_eq!(
            now.call_status, "done",
            "{number} after the restart: {now:?}"
        );
        assert_eq!(now.outbound_call, 0, "{number}: {now:?}");
        assert!(!now.uuid.is_empty(), "{number}: {now:?}");
        assert!(now.call_end_time.is_some(), "{number}: {now:?}");
        match before.call_status.as_str() {
            "done" => {
                assert_eq!(now, before, "{number} was done before the kill: unchanged");
                assert_eq!(now.cause, sim_cause(number, 5), "{number}: {now:?}");
            }
            "calling" => {
                assert_eq!(
                    now.cause, "SYSTEM_SHUTDOWN",
                    "{number} was cut by the crash: {now:?}"
                );
                assert_eq!(
                    now.uuid, before.uuid,
                    "{number} keeps its call's uuid: {now:?}"
                );
                assert_eq!(now.call_start_time, before.call_start_time, "{number}");
            }
            "init" => {
                assert_eq!(now.cause, sim_cause(number, 5), "{number}: {now:?}");
                let line = placed
                    .get(number)
                    .unwrap_or_else(|| panic!("{number} was waiting at the kill and never dialed"));
                assert!(
                    line.unix_ms >= restarted_at,
                    "{number} was waiting at the kill, so it was dialed after the restart: {line:?}"
                );
            }
            other => panic!("{number} was {other} at the kill"),
        }
    }

    // The call log: no number twice, each line the number's final uuid, and nothing placed after
    // the restart but the numbers that were waiting.
    for line in &log {
        assert_eq!(
            after[&line.number].uuid, line.uuid,
            "the placed call is the number's recorded call: {line:?}"
        );
        if line.unix_ms >= restarted_at {
            assert!(
                waiting.contains(line.number.as_str()),
                "only waiting numbers are dialed after the restart: {line:?}"
            );
        }
    }
    for number in &numbers {
        if after[number].cause != "SYSTEM_SHUTDOWN" {
            assert!(
                placed.contains_key(number),
                "{number} ended without a call placed"
            );
        }
    }
    // A number claimed by the dialer, whose call the kill prevented, ends with SYSTEM_SHUTDOWN
    // without a call placed; the task's single runner claims one number at a time, so at most
    // one can be in that state.
    let claimed_not_placed: Vec<&&str> = calling
        .iter()
        .filter(|number| !placed.contains_key(**number))
        .collect();
    assert!(
        claimed_not_placed.len() <= 1,
        "numbers calling at the kill without a call placed: {claimed_not_placed:?}"
    );
    assert_eq!(
        log.len(),
        numbers.len() - claimed_not_placed.len(),
        "one call placed per number"
    );
    assert_eq!(db::task_status(&database(dir), id), "done");
}

/// SIGTERM with calls alive: the process hangs them up with SYSTEM_SHUTDOWN after the grace
/// period and exits 0 by itself; the task stays running and resumes at the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hangs_up_after_the_grace_and_the_task_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    // Last digit 2: ring 1 s, talk 20 s; at scale 0.5 a call lasts 10.5 s.
    let numbers: Vec<String> = (0..12).map(|i| format!("7{i:02}2")).collect();

    let mut server = spawn_server(dir, 0.5, &["--shutdown-grace", "1"]);
    let client = server.connect().await;
    let id = client
        .start_campaign(
            "terminated",
            json!({"max_caps": 10, "max_concurrency": 4, "action": "playback", "data": MEDIA}),
            &numbers,
        )
        .await;
    let calling: HashSet<String> = poll(Duration::from_secs(10), "four calls alive", || async {
        let rows = db::numbers(&database(dir), id);
        let calling: HashSet<String> = with_status(&rows, "calling")
            .into_iter()
            .map(str::to_owned)
            .collect();
        let placed = db::read_call_log(&call_log(dir)).len();
        if calling.len() == 4 && placed == 4 {
            Ok(calling)
        } else {
            Err(format!("{} calling, {placed} placed", calling.len()))
        }
    })
    .await;
    // Let the calls be answered (after 0.5 s) before the signal.
    poll(Duration::from_secs(5), "the calls answered", || async {
        let rows = db::numbers(&database(dir), id);
        let answered = calling
            .iter()
            .filter(|n| rows[*n].call_answer_time.is_some())
            .count();
        if answered == calling.len() {
            Ok(())
        } else {
            Err(format!("{answered} answered"))
        }
    })
    .await;

    let signalled = Instant::now();
    server.terminate();
    let status: ExitStatus = server.exit_status().await;
    let took = signalled.elapsed();
    drop(client);
    eprintln!("exited {took:?} after SIGTERM: {status}");
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(
        took >= Duration::from_millis(900),
        "live calls get the 1 s grace before they are hung up; the process exited after {took:?}"
    );
    assert!(
        took <= Duration::from_secs(8),
        "the process took {took:?} to exit after SIGTERM with a 1 s grace"
    );

    let after_term = db::numbers(&database(dir), id);
    assert!(
        with_status(&after_term, "calling").is_empty(),
        "no number is left calling after an orderly shutdown"
    );
    for (number, row) in &after_term {
        if calling.contains(number) {
            assert_eq!(row.call_status, "done", "{number}: {row:?}");
            assert_eq!(
                row.cause, "SYSTEM_SHUTDOWN",
                "{number} was hung up by us: {row:?}"
            );
            assert_eq!(row.outbound_call, 0, "{number}: {row:?}");
            assert!(row.call_answer_time.is_some(), "{number}: {row:?}");
            assert!(row.call_end_time.is_some(), "{number}: {row:?}");
        } else {
            assert_eq!(
                row.call_status, "init",
                "{number} is still waiting: {row:?}"
            );
            assert_eq!(row.outbound_call, 1, "{number}: {row:?}");
        }
    }
    assert_eq!(
        db::task_status(&database(dir), id),
        "running",
        "a shutdown leaves the task running, to resume"
    );
    assert_eq!(db::read_call_log(&call_log(dir)).len(), 4);

    // The next start resumes the task (quick calls now) and dials only the rest.
    let mut server = spawn_server(dir, 0.01, &[]);
    let client = server.connect().await;
    client.wait_done(id, Duration::from_secs(20)).await;
    let after = db::numbers(&database(dir), id);
    let placed = placed_by_number(&db::read_call_log(&call_log(dir)));
    assert_eq!(placed.len(), numbers.len(), "every number placed once");
    for (number, row) in &after {
        assert_eq!(row.call_status, "done", "{number}: {row:?}");
        assert_eq!(placed[number].uuid, row.uuid, "{number}: {row:?}");
        if calling.contains(number) {
            assert_eq!(row, &after_term[number], "{number} was not redialed");
        } else {
            assert_eq!(row.cause, "NORMAL_CLEARING", "{number}: {row:?}");
        }
    }
}
