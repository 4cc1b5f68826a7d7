//! A task's life through the API, checked down to the database: start/stop, soft delete, clone.

mod common;

use common::*;
use serde_json::{json, Value};

const TASKS: &str = "/api/out_call_tasks";

/// `(call_status, outbound_call)` of every number of a task, straight from the database,
/// deleted or not.
fn stored_numbers(app: &TestApp, task: i64) -> Vec<(String, i64)> {
    let conn = app.db();
    let mut statement = conn
        .prepare("SELECT call_status, outbound_call FROM numbers WHERE group_id = ?1 ORDER BY id")
        .unwrap();
    let rows = statement
        .query_map([task], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap();
    rows.collect::<Result<_, _>>().unwrap()
}

/// `(status, deleted_at)` of a task, straight from the database.
fn stored_task(app: &TestApp, task: i64) -> (String, Option<i64>) {
    app.db()
        .query_row(
            "SELECT status, deleted_at FROM tasks WHERE id = ?1",
            [task],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap()
}

fn never_dialed(numbers: &[Value]) -> Vec<&Value> {
    numbers
        .iter()
        .filter(|n| n["outbound_call"] == "1")
        .collect()
}

#[tokio::test]
async fn stop_parks_waiting_numbers_and_start_resumes_them() {
    let app = spawn_app().await;
    let id = app.create_running_task("campaign", 5).await;
    let task = app.task(id).await;
    assert_eq!(task["status"], "running");
    assert_recent_timestamp(&task["task_start_time"], "task_start_time");
    assert_eq!(task["task_end_time"], "");

    let stopped = app.stop(&[id]).await;
    assert_eq!(stopped[0]["status"], "stop");
    let task = app.task(id).await;
    assert_eq!(task["status"], "stop");
    assert_eq!(task["task_end_time"], stopped[0]["task_end_time"]);
    assert_recent_timestamp(&task["task_end_time"], "task_end_time");

    let numbers = app.all_numbers(id).await;
    assert_eq!(numbers.len(), 5);
    let waiting = never_dialed(&numbers);
    assert!(
        waiting.len() >= 4,
        "at most one call was started at this pace: {numbers:?}"
    );
    for number in &waiting {
        assert_eq!(
            number["call_status"], "stop",
            "a number never dialed is parked by stop: {number}"
        );
    }
    for number in numbers.iter().filter(|n| n["outbound_call"] == "0") {
        assert!(
            matches!(number["call_status"].as_str(), Some("calling" | "done")),
            "a dialed number: {number}"
        );
    }
    let stored = stored_numbers(&app, id);
    assert!(
        stored
            .iter()
            .filter(|(_, never)| *never == 1)
            .all(|(status, _)| status == "stop"),
        "{stored:?}"
    );

    // Stopping again changes nothing.
    let again = app.stop(&[id]).await;
    assert_eq!(again[0]["status"], "stop");
    assert!(never_dialed(&app.all_numbers(id).await)
        .iter()
        .all(|n| n["call_status"] == "stop"));

    // Starting again: running, and the parked numbers wait again; dialed ones are not reset.
    let started = app.start(&[id]).await;
    assert_eq!(started[0]["status"], "running");
    let task = app.task(id).await;
    assert_eq!(task["status"], "running");
    assert_eq!(task["task_start_time"], started[0]["task_start_time"]);
    assert_recent_timestamp(&task["task_start_time"], "task_start_time");
    let numbers = app.all_numbers(id).await;
    assert!(
        numbers.iter().all(|n| n["call_status"] != "stop"),
        "no number stays parked: {numbers:?}"
    );
    assert!(never_dialed(&numbers).len() >= 3, "{numbers:?}");
    for number in never_dialed(&numbers) {
        assert_eq!(number["call_status"], "init", "{number}");
    }
    let stored = stored_numbers(&app, id);
    assert!(
        stored
            .iter()
            .filter(|(_, never)| *never == 1)
            .all(|(status, _)| status == "init"),
        "{stored:?}"
    );
    assert_eq!(stored_task(&app, id).0, "running");
}

#[tokio::test]
async fn a_deleted_task_vanishes_everywhere() {
    let app = spawn_app().await;
    let keep = app.create_task("keep").await;
    let gone = app.create_task("gone").await;
    app.import(gone, &phone_numbers(0, 2)).await;

    let reply = app.delete(&format!("{TASKS}/{gone}")).await;
    assert_eq!(success_data(&reply), Value::String(gone.to_string()));

    assert_eq!(ids_of(&app.all_tasks().await), [keep.to_string()]);
    assert!(list_data(&app.get(&format!("{TASKS}?name=gone")).await.body).is_empty());
    let path = format!("{TASKS}/{gone}");
    assert_error(&app.get(&path).await, 404, "");
    assert_error(&app.get(&format!("{path}/numbers")).await, 404, "");
    assert_error(&app.get(&format!("{path}/download")).await, 404, "");
    assert_error(
        &app.post(
            &format!("{path}/import"),
            json!({"data": [{"dest_number": "1000"}]}),
        )
        .await,
        404,
        "",
    );
    assert_error(
        &app.put(&path, json!({"description": "back?"})).await,
        404,
        "",
    );
    assert_error(&app.start_stop("start", &[gone]).await, 404, "");
    assert_error(&app.start_stop("stop", &[gone]).await, 404, "");
    assert_error(
        &app.post(
            &format!("{TASKS}/clone"),
            json!({"group_name": "c", "id": gone}),
        )
        .await,
        404,
        "",
    );
    assert_error(&app.delete(&path).await, 404, "");

    // Soft: the rows are still in the database, marked.
    let (_, deleted_at) = stored_task(&app, gone);
    assert!(deleted_at.is_some(), "deleted_at is set");
    assert_eq!(stored_numbers(&app, gone).len(), 2, "the numbers are kept");
    assert_eq!(stored_task(&app, keep).1, None);
}

#[tokio::test]
async fn deleting_a_running_task_stops_it_and_hides_it() {
    let app = spawn_app().await;
    let id = app.create_running_task("busy", 4).await;
    let reply = app.delete(&format!("{TASKS}/{id}")).await;
    assert_eq!(success_data(&reply), Value::String(id.to_string()));

    assert!(app.all_tasks().await.is_empty());
    for status in ["running", "stop", "init", "done"] {
        assert!(
            list_data(&app.get(&format!("{TASKS}?status={status}")).await.body).is_empty(),
            "status={status}"
        );
    }
    assert_error(&app.get(&format!("{TASKS}/{id}")).await, 404, "");
    assert_error(&app.get(&format!("{TASKS}/{id}/numbers")).await, 404, "");

    let (status, deleted_at) = stored_task(&app, id);
    assert!(deleted_at.is_some());
    assert_ne!(status, "running", "a deleted task is stopped first");
    let stored = stored_numbers(&app, id);
    assert!(
        stored.iter().all(|(status, _)| status != "init"),
        "nothing is left waiting to be dialed: {stored:?}"
    );
}

/// Every setting of a task that a clone copies.
const SETTINGS: [&str; 15] = [
    "cid_number",
    "cid_name",
    "context",
    "dest_context",
    "calling_time",
    "max_caps",
    "max_concurrency",
    "auto_dial",
    "disable_ring_back",
    "auto_record",
    "group_confirm_key",
    "group_confirm_read_timeout",
    "group_confirm_file",
    "action",
    "data",
];

/// A task with every setting changed from its default and numbers that have been through a
/// start and a stop.
async fn configured_source(app: &TestApp) -> i64 {
    let id = app.create_task("source").await;
    app.update_task(
        id,
        json!({
            "cid_number": "01088886666", "cid_name": "Sales", "context": "context-2", "dest_context": "trunk-b",
            "calling_time": 45, "max_caps": SLOW_CAPS, "max_concurrency": 3, "auto_dial": 0,
            "disable_ring_back": 0, "auto_record": 1, "group_confirm_key": "9",
            "group_confirm_read_timeout": 4, "group_confirm_file": "{\"media_id\":1}",
            "action": "transfer", "data": "1001"
        }),
    )
    .await;
    app.import_rows(
        id,
        vec![
            json!({"dest_number": "13800000003", "external_id": "a"}),
            json!({"dest_number": "13800000001", "external_id": "b"}),
            json!({"dest_number": "13800000000", "external_id": ""}),
        ],
    )
    .await;
    app.start(&[id]).await;
    app.stop(&[id]).await;
    id
}

#[tokio::test]
async fn a_clone_copies_settings_and_fresh_numbers() {
    let app = spawn_app().await;
    let source = configured_source(&app).await;
    let reply = app
        .post(
            &format!("{TASKS}/clone"),
            json!({"group_name": "copy", "description": "cloned", "is_clone_numbers": true, "id": source}),
        )
        .await;
    let clone = success_data(&reply);
    assert!(clone.is_u64(), "{}", reply.body);
    let clone = clone.as_i64().unwrap();
    assert_ne!(clone, source);

    let (original, copy) = (app.task(source).await, app.task(clone).await);
    assert_get_task_shape(&copy);
    for field in SETTINGS {
        assert_eq!(copy[field], original[field], "{field} is copied");
    }
    assert_eq!(
        (copy["group_name"].as_str(), copy["description"].as_str()),
        (Some("copy"), Some("cloned"))
    );
    assert_eq!(
        (copy["status"].as_str(), copy["task_end_time"].as_str()),
        (Some("init"), Some(""))
    );
    assert_eq!(copy["done_total"], "0/3");
    assert_recent_timestamp(&copy["created_at"], "created_at");

    let source_numbers = app.all_numbers(source).await;
    let clone_numbers = app.all_numbers(clone).await;
    assert_eq!(clone_numbers.len(), 3);
    for number in &clone_numbers {
        assert_fresh_number(number, clone);
    }
    let pairs = |numbers: &[Value]| {
        let mut pairs: Vec<(String, String)> = numbers
            .iter()
            .map(|n| {
                (
                    n["dest_number"].as_str().unwrap().to_owned(),
                    n["external_id"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        pairs.sort();
        pairs
    };
    assert_eq!(
        pairs(&clone_numbers),
        pairs(&source_numbers),
        "the same numbers and external ids"
    );
    let source_ids: Vec<&Value> = source_numbers.iter().map(|n| &n["id"]).collect();
    assert!(
        clone_numbers
            .iter()
            .all(|n| !source_ids.contains(&&n["id"])),
        "the clone's numbers are new rows"
    );
    assert_eq!(
        app.task(source).await["status"],
        "stop",
        "the source is untouched"
    );
    assert_eq!(
        pairs(&app.all_numbers(source).await),
        pairs(&source_numbers),
        "the source keeps its numbers"
    );
}

#[tokio::test]
async fn a_clone_without_numbers_has_none() {
    let app = spawn_app().await;
    let source = configured_source(&app).await;
    let original = app.task(source).await;
    let mut clones = Vec::new();
    for body in [
        json!({"group_name": "no-numbers", "description": "x", "is_clone_numbers": false, "id": source}),
        json!({"group_name": "omitted", "id": source.to_string()}),
    ] {
        let clone = success_data(&app.post(&format!("{TASKS}/clone"), body).await)
            .as_i64()
            .expect("an id");
        let copy = app.task(clone).await;
        assert_eq!(copy["done_total"], "0/0");
        assert_eq!(copy["status"], "init");
        for field in SETTINGS {
            assert_eq!(copy[field], original[field], "{field} is copied");
        }
        assert!(app.all_numbers(clone).await.is_empty());
        assert_eq!(
            app.get(&format!("{TASKS}/{clone}/download")).await.body,
            json!([DOWNLOAD_HEADER])
        );
        clones.push(clone);
    }
    assert_eq!(app.task(clones[1]).await["description"], "");
}

#[tokio::test]
async fn a_clone_needs_a_known_source_and_a_name() {
    let app = spawn_app().await;
    let source = app.create_task("source").await;
    let clone = format!("{TASKS}/clone");
    assert_error(
        &app.post(&clone, json!({"group_name": "c", "id": source + 100}))
            .await,
        404,
        "",
    );
    assert_error(
        &app.post(&clone, json!({"id": source, "is_clone_numbers": true}))
            .await,
        400,
        "group_name",
    );
    assert_error(
        &app.post(&clone, json!({"group_name": "", "id": source}))
            .await,
        400,
        "group_name",
    );
    assert_error(
        &app.post(&clone, json!({"group_name": "c"})).await,
        400,
        "id",
    );
    assert_error(
        &app.post(&clone, json!({"group_name": "c", "id": "two"}))
            .await,
        400,
        "id",
    );
    assert_error(
        &app.post(
            &clone,
            json!({"group_name": "c", "id": source, "is_clone_numbers": "maybe"}),
        )
        .await,
        400,
        "is_clone_numbers",
    );
    assert_eq!(
        app.all_tasks().await.len(),
        1,
        "no failed clone made a task"
    );
}

fn ids_of(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect()
}
