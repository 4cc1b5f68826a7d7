//! The do-not-call list (`/api/dnc`: list, paging, prefix and task filters, bulk add with
//! duplicates, refusals that name the field and change nothing, delete, roles) and what imports do
//! with it and with duplicates: numbers already in the task or repeated are skipped and counted,
//! listed numbers are added finished (`done`, `DNC`, never dialed) and the dialer never calls
//! them; the counters stay equal to a full count.

mod common;

use std::{collections::HashSet, sync::Arc, time::Duration};

use common::{
    assert_error, assert_keys, is_timestamp, list_data, spawn_app, spawn_app_with_backend, Api,
    Reply, TestApp,
};
use outcall::{db::rusqlite::Connection, telephony::sim::SimBackend};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const DNC: &str = "/api/dnc";

/// `POST /api/dnc` of `entries`; answers the reply as it is.
async fn add_entries(api: &Api, entries: Vec<Value>) -> Reply {
    api.post(DNC, json!({ "data": entries })).await
}

/// Adds entries, asserting success; answers `(added, duplicates)` from the `data` string.
async fn add(api: &Api, entries: Vec<Value>) -> (u64, u64) {
    let reply = add_entries(api, entries).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["code"], 200, "{}", reply.body);
    assert_eq!(reply.body["message"], "success", "{}", reply.body);
    let text = reply.body["data"].as_str().expect("data is a string");
    assert!(text.starts_with("{\"added\":"), "{text}");
    let counts: Value = serde_json::from_str(text).expect("data holds JSON");
    assert_keys(&counts, &["added", "duplicates"]);
    (
        counts["added"].as_u64().unwrap(),
        counts["duplicates"].as_u64().unwrap(),
    )
}

/// Every entry of a list query, page by page (`perPage` as given), checked for shape.
async fn all_entries(api: &Api, query: &str, per_page: usize) -> Vec<Value> {
    let mut entries = Vec::new();
    for page in 1.. {
        let reply = api
            .get(&format!("{DNC}?page={page}&perPage={per_page}{query}"))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let data = list_data(&reply.body);
        assert_eq!(reply.body["page"], page);
        let rows = reply.body["rowCount"].as_u64().unwrap() as usize;
        assert_eq!(
            reply.body["pageCount"].as_u64().unwrap() as usize,
            rows.div_ceil(per_page)
        );
        for entry in &data {
            assert_entry_shape(entry);
        }
        let last = data.len() < per_page;
        entries.extend(data);
        if last {
            assert_eq!(entries.len(), rows, "every page read: {query}");
            break;
        }
        assert!(page <= 1_000, "bounded");
    }
    entries
}

fn assert_entry_shape(entry: &Value) {
    assert_keys(entry, &["id", "number", "task_id", "note", "created_at"]);
    assert!(entry["id"].is_u64(), "{entry}");
    assert!(entry["number"].is_string(), "{entry}");
    assert!(
        entry["task_id"].is_null() || entry["task_id"].is_u64(),
        "{entry}"
    );
    assert!(entry["note"].is_string(), "{entry}");
    assert!(
        is_timestamp(entry["created_at"].as_str().unwrap()),
        "{entry}"
    );
}

/// An entry's number and task.
type Scope = (String, Option<i64>);

/// `(number, task_id)` of entries.
fn scopes(entries: &[Value]) -> Vec<Scope> {
    entries
        .iter()
        .map(|e| {
            (
                e["number"].as_str().unwrap().to_owned(),
                e["task_id"].as_i64(),
            )
        })
        .collect()
}

fn entry(number: &str, task_id: Option<i64>) -> Value {
    match task_id {
        Some(id) => json!({"number": number, "task_id": id, "note": format!("note {number}")}),
        None => json!({"number": number}),
    }
}

async fn row_count(api: &Api, query: &str) -> u64 {
    let reply = api.get(&format!("{DNC}?perPage=1{query}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["rowCount"].as_u64().unwrap()
}

// ---------------------------------------------------------------------------------------------
// The routes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_list_pages_newest_first_by_prefix_and_task() {
    let app = spawn_app().await;
    let task = app.create_task("listed").await;
    let other = app.create_task("other").await;
    // 30 numbers for every task, 10 of them again for `task` (another scope), 5 for `other`,
    // and one given twice in the same request.
    let mut entries: Vec<Value> = (0..30)
        .map(|i| entry(&format!("1390000{i:04}"), None))
        .collect();
    entries.extend((0..10).map(|i| entry(&format!("1390000{i:04}"), Some(task))));
    entries.extend((0..5).map(|i| entry(&format!("1770000{i:04}"), Some(other))));
    entries.push(entry("13900000003", None));
    assert_eq!(add(&app, entries.clone()).await, (45, 1));
    // Again: everything is a duplicate, in its own scope.
    assert_eq!(add(&app, entries).await, (0, 46));
    // The same number in a new scope is a new entry; numbers may be sent as JSON integers.
    assert_eq!(
        add(
            &app,
            vec![
                json!({"number": 13900000000u64, "task_id": other.to_string()}),
                json!({"number": "13900000000", "task_id": null, "note": null}),
            ]
        )
        .await,
        (1, 1)
    );

    // Newest first, across pages of several sizes: the same rows in the same order.
    let everything = all_entries(&app, "", 1000).await;
    assert_eq!(everything.len(), 46);
    let ids: Vec<u64> = everything
        .iter()
        .map(|e| e["id"].as_u64().unwrap())
        .collect();
    let mut descending = ids.clone();
    descending.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ids, descending, "newest first");
    assert_eq!(
        scopes(&everything[..1]),
        vec![("13900000000".to_owned(), Some(other))]
    );
    assert_eq!(everything[0]["note"], "");
    assert_eq!(everything[1]["note"], "note 17700000004");
    for per_page in [1, 7, 20] {
        assert_eq!(
            all_entries(&app, "", per_page).await,
            everything,
            "{per_page}"
        );
    }
    let past = app.get(&format!("{DNC}?page=10&perPage=20")).await;
    assert!(list_data(&past.body).is_empty());
    assert_eq!(past.body["rowCount"], 46);

    // A number prefix, a task, both.
    let expect = |keep: &dyn Fn(&Scope) -> bool| -> Vec<Scope> {
        scopes(&everything)
            .into_iter()
            .filter(|s| keep(s))
            .collect()
    };
    let prefixed = all_entries(&app, "&number=1390000000", 3).await;
    assert_eq!(
        scopes(&prefixed),
        expect(&|(number, _)| number.starts_with("1390000000"))
    );
    // 10 for every task, the same 10 for `task`, one for `other`.
    assert_eq!(prefixed.len(), 10 + 10 + 1);
    let of_task = all_entries(&app, &format!("&task_id={task}"), 4).await;
    assert_eq!(scopes(&of_task), expect(&|(_, id)| *id == Some(task)));
    assert_eq!(of_task.len(), 10);
    let both = all_entries(&app, &format!("&task_id={other}&number=139"), 20).await;
    assert_eq!(scopes(&both), vec![("13900000000".to_owned(), Some(other))]);
    assert_eq!(row_count(&app, "&number=%2B86").await, 0);
    assert_eq!(row_count(&app, "&task_id=999").await, 0);

    // Bad queries name their parameter.
    for (query, field) in [
        ("number=12a", "number"),
        ("task_id=x", "task_id"),
        ("task_id=0", "task_id"),
        ("perPage=0", "perPage"),
        ("page=-1", "page"),
    ] {
        assert_error(&app.get(&format!("{DNC}?{query}")).await, 400, field);
    }
}

#[tokio::test]
async fn a_bad_entry_refuses_the_whole_request_naming_it() {
    let app = spawn_app().await;
    let task = app.create_task("t").await;
    let deleted = app.create_task("deleted").await;
    assert_eq!(
        app.delete(&format!("/api/out_call_tasks/{deleted}"))
            .await
            .status,
        200
    );
    assert_eq!(add(&app, vec![entry("1000", None)]).await, (1, 0));
    let good = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| entry(&format!("2000{i}"), Some(task)))
            .collect()
    };
    let with = |index: usize, bad: Value| {
        let mut entries = good(3);
        entries.insert(index, bad);
        entries
    };
    let cases = [
        (with(2, json!({"number": "12a"})), 400, "data[2].number"),
        (with(0, json!({"number": ""})), 400, "data[0].number"),
        (
            with(1, json!({"number": "1".repeat(33)})),
            400,
            "data[1].number",
        ),
        (
            with(1, json!({"note": "x"})),
            400,
            "data[1].number is missing",
        ),
        (with(3, json!({"number": [1]})), 400, "data[3].number"),
        (
            with(1, json!({"number": "1", "note": "x".repeat(1025)})),
            400,
            "data[1].note",
        ),
        (
            with(1, json!({"number": "1", "note": "a\r\nb"})),
            400,
            "data[1].note",
        ),
        (
            with(2, json!({"number": "1", "note": 5})),
            400,
            "data[2].note",
        ),
        (
            with(1, json!({"number": "1", "task_id": "x"})),
            400,
            "data[1].task_id",
        ),
        (
            with(1, json!({"number": "1", "task_id": -3})),
            400,
            "data[1].task_id",
        ),
        (
            with(1, json!({"number": "1", "task_id": 999})),
            404,
            "data[1].task_id: task 999",
        ),
        (
            with(3, json!({"number": "1", "task_id": deleted})),
            404,
            "data[3].task_id",
        ),
    ];
    for (entries, status, mentions) in cases {
        let reply = add_entries(&app, entries).await;
        assert_error(&reply, status, mentions);
        assert!(
            reply.body["message"]
                .as_str()
                .unwrap()
                .contains("nothing was added"),
            "{}",
            reply.body
        );
    }
    // Bodies that are not a list of entries.
    for (body, mentions) in [
        ("", "empty"),
        ("{\"data\":[", "malformed"),
        ("{\"entries\":[]}", "data is required"),
        ("{\"data\":{}}", "malformed"),
        ("[1]", "malformed"),
    ] {
        let reply = app.send_json_text(Method::POST, DNC, body).await;
        assert_error(&reply, 400, mentions);
    }
    assert_eq!(row_count(&app, "").await, 1, "nothing was added");

    // At most 100,000 entries a request: exactly that many are added, one more is refused.
    let many = |n: usize| -> String {
        let rows: Vec<String> = (0..n)
            .map(|i| format!(r#"{{"number":"5{i:07}"}}"#))
            .collect();
        format!(r#"{{"data":[{}]}}"#, rows.join(","))
    };
    let reply = app.send_json_text(Method::POST, DNC, &many(100_001)).await;
    assert_error(&reply, 400, "more than 100000");
    assert_eq!(row_count(&app, "").await, 1, "nothing was added");
    let reply = app.send_json_text(Method::POST, DNC, &many(100_000)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["data"], r#"{"added":100000,"duplicates":0}"#);
    assert_eq!(row_count(&app, "").await, 100_001);
    assert_eq!(row_count(&app, "&number=50099").await, 1_000);
}

#[tokio::test]
async fn delete_removes_one_entry() {
    let app = spawn_app().await;
    add(&app, vec![entry("1000", None), entry("2000", None)]).await;
    let entries = all_entries(&app, "", 20).await;
    let id = entries[1]["id"].as_u64().unwrap();
    let reply = app.delete(&format!("{DNC}/{id}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        reply.body,
        json!({"code": 200, "message": "success", "data": id.to_string()})
    );
    assert_eq!(
        scopes(&all_entries(&app, "", 20).await),
        vec![("2000".into(), None)]
    );
    assert_error(
        &app.delete(&format!("{DNC}/{id}")).await,
        404,
        &format!("entry {id}"),
    );
    assert_error(&app.delete(&format!("{DNC}/x")).await, 400, "id");
    assert_error(&app.get(&format!("{DNC}/{id}")).await, 405, "GET");
    // Listed again after the delete: added anew.
    assert_eq!(add(&app, vec![entry("1000", None)]).await, (1, 0));
}

#[tokio::test]
async fn writes_need_an_admin_and_every_route_a_token() {
    let app = spawn_app().await;
    add(&app, vec![entry("1000", None)]).await;
    let id = all_entries(&app, "", 20).await[0]["id"].as_u64().unwrap();
    let reply = app
        .post(
            "/api/users",
            json!({"login": "viewer", "password": "viewer-password", "role": "readonly"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let viewer = app.log_in("viewer", "viewer-password").await;

    let reply = app
        .send_with_token(Method::GET, DNC, None, Some(&viewer))
        .await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "a readonly user reads the list"
    );
    assert_eq!(list_data(&reply.body).len(), 1);
    let writes = [
        (
            Method::POST,
            DNC.to_owned(),
            Some(json!({"data": [entry("2000", None)]})),
        ),
        (Method::DELETE, format!("{DNC}/{id}"), None),
    ];
    for (method, path, body) in writes.clone() {
        let reply = app
            .send_with_token(method.clone(), &path, body, Some(&viewer))
            .await;
        assert_error(&reply, 403, "readonly");
    }
    for (method, path, body) in writes
        .into_iter()
        .chain([(Method::GET, DNC.to_owned(), None)])
    {
        let reply = app.send_with_token(method, &path, body, None).await;
        assert_error(&reply, 401, "token");
    }
    assert_eq!(
        scopes(&all_entries(&app, "", 20).await),
        vec![("1000".into(), None)],
        "nothing changed"
    );
}

// ---------------------------------------------------------------------------------------------
// Imports
// ---------------------------------------------------------------------------------------------

fn rows(numbers: &[&str]) -> Vec<Value> {
    numbers
        .iter()
        .map(|n| json!({"dest_number": n, "external_id": format!("x{n}")}))
        .collect()
}

/// `(imported, duplicates, dnc)` of an import's counts.
fn triple(counts: &Value) -> (u64, u64, u64) {
    (
        counts["imported"].as_u64().unwrap(),
        counts["duplicates"].as_u64().unwrap(),
        counts["dnc"].as_u64().unwrap(),
    )
}

/// The task's live numbers in `seq` order, with their `seq`, straight from the database.
fn numbers_by_seq(conn: &Connection, task: i64) -> Vec<(i64, String)> {
    conn.prepare(
        "SELECT seq, dest_number FROM numbers WHERE group_id = ?1 AND deleted_at IS NULL ORDER BY id",
    )
    .unwrap()
    .query_map([task], |row| Ok((row.get(0)?, row.get(1)?)))
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// The task's counters (`task_counts`, `task_cause_counts`) and bucket counts equal a full count
/// of its numbers; answers the counters `[total, init, calling, done, stop, answered]` and causes.
fn assert_counts_match(conn: &Connection, task: i64) -> (Vec<i64>, Vec<(String, i64)>) {
    let figures = |sql: &str| -> Vec<i64> {
        conn.query_row(sql, [task], |row| (0..6).map(|i| row.get(i)).collect())
            .unwrap()
    };
    let pairs = |sql: &str| -> Vec<(String, i64)> {
        conn.prepare(sql)
            .unwrap()
            .query_map([task], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let counters = figures(
        "SELECT total, init, calling, done, stop, answered FROM task_counts WHERE group_id = ?1",
    );
    let full = figures(
        "SELECT count(*), count(CASE WHEN call_status = 'init' THEN 1 END),
             count(CASE WHEN call_status = 'calling' THEN 1 END),
             count(CASE WHEN call_status = 'done' THEN 1 END),
             count(CASE WHEN call_status = 'stop' THEN 1 END), count(call_answer_time)
         FROM numbers WHERE group_id = ?1 AND deleted_at IS NULL",
    );
    assert_eq!(counters, full, "task {task}: counters vs a full count");
    let causes = pairs(
        "SELECT cause, count FROM task_cause_counts WHERE group_id = ?1 AND count > 0 ORDER BY cause",
    );
    let full_causes = pairs(
        "SELECT cause, count(*) FROM numbers WHERE group_id = ?1 AND deleted_at IS NULL AND cause <> ''
         GROUP BY cause ORDER BY cause",
    );
    assert_eq!(causes, full_causes, "task {task}: causes vs a full count");
    let buckets = pairs(
        "SELECT call_status || ' ' || bucket, count FROM task_status_buckets
         WHERE group_id = ?1 AND count <> 0 ORDER BY 1",
    );
    let full_buckets = pairs(
        "SELECT call_status || ' ' || (id >> 12), count(*) FROM numbers
         WHERE group_id = ?1 AND deleted_at IS NULL GROUP BY 1 ORDER BY 1",
    );
    assert_eq!(
        buckets, full_buckets,
        "task {task}: status buckets vs a full count"
    );
    let cause_buckets = pairs(
        "SELECT cause || ' ' || call_status || ' ' || bucket, count FROM task_cause_buckets
         WHERE group_id = ?1 AND count <> 0 ORDER BY 1",
    );
    let full_cause_buckets = pairs(
        "SELECT cause || ' ' || call_status || ' ' || (id >> 12), count(*) FROM numbers
         WHERE group_id = ?1 AND deleted_at IS NULL AND cause <> '' GROUP BY 1 ORDER BY 1",
    );
    assert_eq!(
        cause_buckets, full_cause_buckets,
        "task {task}: cause buckets"
    );
    (counters, causes)
}

#[tokio::test]
async fn imports_skip_numbers_already_in_the_task_and_repeats() {
    let app = spawn_app().await;
    let task = app.create_task("dedupe").await;
    let counts = app
        .import_counts(task, rows(&["1001", "1002", "1001", "1003", "1001"]))
        .await;
    assert_eq!(triple(&counts), (3, 2, 0));
    let counts = app
        .import_counts(task, rows(&["1003", "1004", "1002", "1005", "1004"]))
        .await;
    assert_eq!(triple(&counts), (2, 3, 0));
    // Only duplicates: nothing added.
    let counts = app.import_counts(task, rows(&["1005", "1001"])).await;
    assert_eq!(triple(&counts), (0, 2, 0));
    // More than one batch of the import (64 rows), repeats straddling batches.
    let long: Vec<String> = (0..200).map(|i| format!("2{:03}", i % 150)).collect();
    let long: Vec<&str> = long.iter().map(String::as_str).collect();
    assert_eq!(
        triple(&app.import_counts(task, rows(&long)).await),
        (150, 50, 0)
    );

    // In first-seen order, seq dense 1..N, the first row's external id kept.
    let conn = app.db();
    let stored = numbers_by_seq(&conn, task);
    let mut expected: Vec<String> = ["1001", "1002", "1003", "1004", "1005"]
        .iter()
        .map(|n| n.to_string())
        .collect();
    expected.extend((0..150).map(|i| format!("2{i:03}")));
    assert_eq!(
        stored,
        expected
            .iter()
            .enumerate()
            .map(|(i, n)| (i as i64 + 1, n.clone()))
            .collect::<Vec<_>>()
    );
    assert_eq!(app.task(task).await["done_total"], "0/155");
    assert_counts_match(&conn, task);

    // Another task has its own numbers: the same ones are all new there.
    let other = app.create_task("other").await;
    assert_eq!(
        triple(&app.import_counts(other, rows(&["1001", "1002"])).await),
        (2, 0, 0)
    );
    // A deleted task's numbers are gone: a new task may reuse its name and numbers, and the
    // deleted task's numbers do not count as its own.
    assert_eq!(
        app.delete(&format!("/api/out_call_tasks/{other}"))
            .await
            .status,
        200
    );
    let again = app.create_task("other").await;
    assert_eq!(
        triple(&app.import_counts(again, rows(&["1001", "1002"])).await),
        (2, 0, 0)
    );
}

/// Posts a CSV file to the task's import; answers the counts of the `data` string.
async fn import_csv(api: &Api, task: i64, csv: &str) -> Value {
    let boundary = "----outcall-dnc-test-boundary";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"number_column\"\r\n\r\nphone\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"n.csv\"\r\n\
         Content-Type: text/csv\r\n\r\n{csv}\r\n--{boundary}--\r\n"
    );
    let reply = api
        .post_multipart(
            &format!("/api/out_call_tasks/{task}/import"),
            boundary,
            body.into_bytes(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let text = reply.body["data"].as_str().expect("data is a string");
    assert!(text.starts_with("{\"imported\":"), "{text}");
    serde_json::from_str(text).unwrap()
}

#[tokio::test]
async fn file_imports_count_duplicates_and_listed_numbers() {
    let app = spawn_app().await;
    let task = app.create_task("file").await;
    let other = app.create_task("other").await;
    app.import(task, &["13800000001".to_owned()]).await;
    // Listed for every task, for this task, for the other task only.
    add(
        &app,
        vec![
            entry("13800000002", None),
            entry("13800000003", Some(task)),
            entry("13800000004", Some(other)),
        ],
    )
    .await;
    let csv = "phone\n13800000001\n13800000002\n13800000003\n13800000004\n13800000005\n\
               12a\n13800000005\n13800000002\n13800000006\n";
    let counts = import_csv(&app, task, csv).await;
    assert_eq!(
        counts,
        json!({
            "imported": 5,
            "duplicates": 3,
            "dnc": 2,
            "rejected": 1,
            "first_rejected": [{"row": 7, "value": "12a", "reason": counts["first_rejected"][0]["reason"]}],
        })
    );
    assert!(counts["first_rejected"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("not dialable"));
    let conn = app.db();
    assert_eq!(
        numbers_by_seq(&conn, task)
            .into_iter()
            .map(|(_, n)| n)
            .collect::<Vec<_>>(),
        (1..=6)
            .map(|i| format!("1380000000{i}"))
            .collect::<Vec<_>>()
    );
    assert_listed_shown_finished(&app, task, &["13800000002", "13800000003"]).await;
    let (counters, causes) = assert_counts_match(&conn, task);
    assert_eq!(counters, vec![6, 4, 0, 2, 0, 0]);
    assert_eq!(causes, vec![("DNC".to_owned(), 2)]);
    let stats = app
        .get(&format!("/api/out_call_tasks/{task}/stats"))
        .await
        .body;
    assert_eq!(stats["data"]["done"], 2, "{stats}");
    assert_eq!(stats["data"]["causes"], json!({"DNC": 2}), "{stats}");
    // The numbers list filters them like any finished number.
    let listed = app
        .get(&format!(
            "/api/out_call_tasks/{task}/numbers?cause=DNC&call_status=done"
        ))
        .await
        .body;
    assert_eq!(listed["rowCount"], 2, "{listed}");
}

/// The listed numbers show `done`, cause `DNC`, never dialed (`outbound_call` "1", no uuid, no
/// start), ended; the others are waiting as imported.
async fn assert_listed_shown_finished(api: &Api, task: i64, listed: &[&str]) {
    let numbers = api.all_numbers(task).await;
    for number in &numbers {
        let dest = number["dest_number"].as_str().unwrap();
        if listed.contains(&dest) {
            assert_eq!(number["call_status"], "done", "{number}");
            assert_eq!(number["cause"], "DNC", "{number}");
            assert_eq!(number["outbound_call"], "1", "{number}");
            assert_eq!(number["uuid"], "", "{number}");
            assert_eq!(number["call_start_time"], "", "{number}");
            assert!(
                is_timestamp(number["call_end_time"].as_str().unwrap()),
                "{number}"
            );
        } else {
            assert_ne!(number["cause"], "DNC", "{number}");
        }
    }
    let shown: HashSet<&str> = numbers
        .iter()
        .filter(|n| n["cause"] == "DNC")
        .map(|n| n["dest_number"].as_str().unwrap())
        .collect();
    assert_eq!(shown, listed.iter().copied().collect());
}

#[tokio::test]
async fn listed_numbers_are_never_dialed_and_the_counters_stay_right() {
    let sim = Arc::new(SimBackend::new(0.01).with_history());
    let app: TestApp = spawn_app_with_backend(sim.clone(), |_| {}).await;
    let task = app.create_task("campaign").await;
    app.update_task(task, json!({"max_caps": 50, "max_concurrency": 10}))
        .await;
    let numbers: Vec<String> = (0..40).map(|i| format!("1360000{i:04}")).collect();
    // Every 4th number for every task, every 5th for this one; one scoped to another task.
    let listed: Vec<&str> = numbers
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 4 == 0 || i % 5 == 0)
        .map(|(_, n)| n.as_str())
        .collect();
    let other = app.create_task("other").await;
    let mut entries: Vec<Value> = numbers
        .iter()
        .enumerate()
        .filter_map(|(i, n)| match (i % 4, i % 5) {
            (0, _) => Some(entry(n, None)),
            (_, 0) => Some(entry(n, Some(task))),
            _ => None,
        })
        .collect();
    entries.push(entry(&numbers[1], Some(other)));
    add(&app, entries).await;

    let all: Vec<&str> = numbers.iter().map(String::as_str).collect();
    let listed_in = |part: &[&str]| part.iter().filter(|n| listed.contains(n)).count() as u64;
    let counts = app.import_rows(task, rows(&all[..30])).await;
    assert_eq!(triple(&counts), (30, 0, listed_in(&all[..30])));
    assert_counts_match(&app.db(), task);
    app.start(&[task]).await;
    // Imported while the task runs: listed ones finished at once, the rest dialed.
    let counts = app.import_counts(task, rows(&all[20..])).await;
    assert_eq!(triple(&counts), (10, 10, listed_in(&all[30..])));
    assert_counts_match(&app.db(), task);
    let finished = app
        .done_numbers(task, Duration::from_secs(60), || {
            format!("{:?}", sim.calls().len())
        })
        .await;
    assert_eq!(finished.len(), 40);
    let dialed: Vec<String> = sim.calls().into_iter().map(|c| c.dest_number).collect();
    let expected: Vec<&String> = numbers
        .iter()
        .filter(|n| !listed.contains(&n.as_str()))
        .collect();
    let mut sorted = dialed.clone();
    sorted.sort();
    assert_eq!(
        sorted.iter().collect::<Vec<_>>(),
        expected,
        "every number not listed dialed once, no listed one"
    );
    assert_listed_shown_finished(&app, task, &listed).await;
    let (counters, causes) = assert_counts_match(&app.db(), task);
    assert_eq!(counters[0], 40);
    assert_eq!(counters[3], 40);
    assert!(
        causes.contains(&("DNC".to_owned(), listed.len() as i64)),
        "{causes:?}"
    );
    // The listed numbers' own attempts: none.
    let attempts: i64 = app
        .db()
        .query_row(
            "SELECT count(*) FROM attempts a JOIN numbers n ON n.id = a.number_id
             WHERE n.group_id = ?1 AND n.cause = 'DNC'",
            [task],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(attempts, 0);
}

// ---------------------------------------------------------------------------------------------
// Listed after the import: the dialer's check before every call
// ---------------------------------------------------------------------------------------------

/// The number's row as the API lists it.
async fn number_row(api: &Api, task: i64, dest: &str) -> Value {
    api.all_numbers(task)
        .await
        .into_iter()
        .find(|n| n["dest_number"] == dest)
        .unwrap_or_else(|| panic!("task {task} has no number {dest}"))
}

/// The attempts of a number, through its route.
async fn attempts(api: &Api, task: i64, number: &Value) -> Vec<Value> {
    let id = number["id"].as_str().unwrap();
    let reply = api
        .get(&format!("/api/out_call_tasks/{task}/numbers/{id}/attempts"))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn numbers_listed_while_their_task_runs_are_not_dialed() {
    let sim = Arc::new(SimBackend::new(0.01).with_history());
    let app = spawn_app_with_backend(sim.clone(), |_| {}).await;
    let task = app.create_task("running").await;
    // One call a second: the last numbers are still waiting when the first call is placed.
    app.update_task(task, json!({"max_caps": 1, "max_concurrency": 1}))
        .await;
    let numbers = ["13700000003", "13700000013", "13700000023", "13700000033"];
    assert_eq!(
        triple(&app.import_rows(task, rows(&numbers)).await),
        (4, 0, 0)
    );
    app.start(&[task]).await;
    common::poll(Duration::from_secs(10), "the first call", || async {
        if sim.calls().is_empty() {
            Err("no call yet".to_owned())
        } else {
            Ok(())
        }
    })
    .await;
    // The third for every task, the fourth for this task only.
    add(
        &app,
        vec![entry(numbers[2], None), entry(numbers[3], Some(task))],
    )
    .await;
    app.done_numbers(task, Duration::from_secs(30), || {
        format!("{:?}", sim.calls().len())
    })
    .await;
    let dialed: Vec<String> = sim.calls().into_iter().map(|c| c.dest_number).collect();
    assert_eq!(
        dialed,
        vec![numbers[0], numbers[1]],
        "the listed ones were not dialed"
    );
    for listed in &numbers[2..] {
        let row = number_row(&app, task, listed).await;
        assert_eq!(
            (&row["call_status"], &row["cause"], &row["outbound_call"]),
            (&json!("done"), &json!("DNC"), &json!("1")),
            "{row}"
        );
        assert!(attempts(&app, task, &row).await.is_empty(), "{row}");
    }
    let (counters, causes) = assert_counts_match(&app.db(), task);
    assert_eq!(counters[3], 4);
    assert!(causes.contains(&("DNC".to_owned(), 2)), "{causes:?}");
}

#[tokio::test]
async fn a_number_listed_while_it_waits_for_a_retry_is_not_redialed() {
    const T0: i64 = 1_780_000_000;
    let clock = outcall::clock::Clock::manual(T0);
    let sim = Arc::new(SimBackend::new(0.01).with_history());
    let shared = clock.clone();
    let app = spawn_app_with_backend(sim.clone(), move |config| config.clock = shared).await;
    let task = app.create_task("retried").await;
    app.update_task(
        task,
        json!({"max_caps": 10, "max_concurrency": 2, "max_attempts": 3, "retry_interval": 600}),
    )
    .await;
    // Busy (last digit 4), retried; a second busy number stays unlisted, as a control.
    let (listed, control) = ("13600000004", "13600000014");
    app.import_rows(task, rows(&[listed, control])).await;
    app.start(&[task]).await;
    for number in [listed, control] {
        common::poll(Duration::from_secs(15), "a retry pending", || async {
            let row = number_row(&app, task, number).await;
            if row["call_status"] == "init" && row["cause"] == "USER_BUSY" {
                Ok(())
            } else {
                Err(row.to_string())
            }
        })
        .await;
    }
    add(&app, vec![entry(listed, None)]).await;
    clock.advance(600);
    // The control is redialed; the listed number ends at its claim, not dialed.
    let row = common::poll(
        Duration::from_secs(15),
        "the listed number ended",
        || async {
            let row = number_row(&app, task, listed).await;
            if row["call_status"] == "done" {
                Ok(row)
            } else {
                Err(row.to_string())
            }
        },
    )
    .await;
    assert_eq!(row["cause"], "DNC", "{row}");
    assert_eq!(
        row["outbound_call"], "0",
        "dialed once before it was listed: {row}"
    );
    let tries = attempts(&app, task, &row).await;
    assert_eq!(tries.len(), 1, "{tries:?}");
    assert_eq!(tries[0]["cause"], "USER_BUSY");
    common::poll(Duration::from_secs(15), "the control redialed", || async {
        let calls = sim
            .calls()
            .iter()
            .filter(|c| c.dest_number == control)
            .count();
        if calls == 2 {
            Ok(())
        } else {
            Err(format!("{calls} calls"))
        }
    })
    .await;
    let to_listed = sim
        .calls()
        .iter()
        .filter(|c| c.dest_number == listed)
        .count();
    assert_eq!(to_listed, 1, "never redialed");
    assert_counts_match(&app.db(), task);
}
