//! Every request example of the vendor's page (seed/out_call_tasks_api.zh.txt), replayed in order
//! with the bodies copied verbatim, and the shapes and value types of what comes back.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const MEDIA_205: &str =
    "{\"media_id\":205,\"media_path\":\"phrase:welcome_short@xui\",\"media_type\":\"SYSTEM\",\"media_name\":\"welcome_short\"}";
const MEDIA_205_REORDERED: &str =
    "{\"media_type\":\"SYSTEM\",\"media_id\":205,\"media_name\":\"welcome_short\",\"media_path\":\"phrase:welcome_short@xui\"}";

/// The vendor's list item for a new task named "test" (the page's first example).
fn vendor_list_item() -> Value {
    json!({ "auto_record": "0", "description": "", "task_end_time": "", "dest_context": "", "group_confirm_file": "", "status": "init", "cid_name": "", "total": 0, "done": 0, "deleted_at": "", "group_confirm_read_timeout": "", "updated_at": "2026-04-24 05:18:23", "created_at": "2026-04-24 05:18:23", "id": "1", "action": "", "task_start_time": "", "context": "", "max_concurrency": "1", "disable_ring_back": "1", "data": "", "group_name": "test", "max_caps": "1", "auto_dial": "0", "group_confirm_key": "", "cid_number": "", "calling_time": "30" })
}

/// The vendor's get-by-id answer for the same task.
fn vendor_get() -> Value {
    json!({ "done_total": "0/0", "id": 1, "action": "", "auto_record": 0, "task_start_time": "", "context": "", "task_end_time": "", "group_confirm_file": "", "description": "", "updated_at": "2026-04-24 05:18:23", "data": "", "created_at": "2026-04-24 05:18:23", "calling_time": 30, "max_concurrency": 1, "disable_ring_back": 1, "group_name": "test", "group_confirm_key": "", "auto_dial": 0, "max_caps": 1, "cid_name": "", "status": "init", "deleted_at": "", "cid_number": "", "dest_context": "" })
}

/// Compares every field of `actual` with the vendor's `expected`, value and JSON type, except the
/// creation/update times (which are now) and `context` (API.md: default `context-1`).
fn assert_like_vendor(actual: &Value, expected: &Value) {
    for (key, value) in expected.as_object().unwrap() {
        match key.as_str() {
            "created_at" | "updated_at" => assert_recent_timestamp(&actual[key], key),
            "context" => assert_eq!(
                actual[key], "context-1",
                "context defaults to context-1: {actual}"
            ),
            _ => assert_eq!(
                json_text(&actual[key]),
                json_text(value),
                "{key} of {actual}"
            ),
        }
    }
}

/// The one item of a start/stop answer, checked: exactly the vendor's four keys, the id as a
/// string, and real timestamps where the vendor echoes `now()`.
fn assert_state_change(items: &[Value], id: i64, status: &str, time_field: &str) -> Value {
    assert_eq!(items.len(), 1, "{items:?}");
    let item = &items[0];
    assert_keys(item, &["data_id", "status", "updated_at", time_field]);
    assert_eq!(item["data_id"], Value::String(id.to_string()), "{item}");
    assert_eq!(item["status"], status, "{item}");
    assert_recent_timestamp(&item["updated_at"], "updated_at");
    assert_recent_timestamp(&item[time_field], time_field);
    item.clone()
}

#[tokio::test]
async fn the_vendor_page_replays_in_order() {
    let app = spawn_app().await;

    // Logging in (XSwitch's way).
    let login = app
        .send_with_token(
            Method::POST,
            "/api/sessions",
            Some(json!({"login": "admin", "password": ADMIN_PASSWORD})),
            None,
        )
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    assert_keys(&login.body, &["code", "token", "expires", "user_id"]);
    assert_eq!(login.body["code"], json!(200));
    assert!(!login.body["token"]
        .as_str()
        .expect("token is a string")
        .is_empty());
    assert!(login.body["user_id"].is_u64(), "{}", login.body);
    let expires = login.body["expires"].as_i64().expect("expires is a number");
    assert!(
        expires > chrono::Utc::now().timestamp(),
        "expires is in the future: {expires}"
    );

    // The page's list shows a task "test" with id 1: make it, as the admin page would.
    let first = success_data(
        &app.post("/api/out_call_tasks", json!({"group_name": "test"}))
            .await,
    );
    assert_eq!(first, json!(1), "the first task is id 1");

    // 查询自动外呼信息, with the page's query.
    let reply = app
        .get("/api/out_call_tasks?perPage=500&page=1&name=test&status=init")
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let data = list_data(&reply.body);
    assert_eq!(
        (
            reply.body["page"].clone(),
            reply.body["rowCount"].clone(),
            reply.body["pageCount"].clone()
        ),
        (json!(1), json!(1), json!(1))
    );
    assert_eq!(data.len(), 1);
    assert_list_task_shape(&data[0]);
    assert_like_vendor(&data[0], &vendor_list_item());

    // 查看指定自动外呼表的配置参数.
    let task = app.task(1).await;
    assert_get_task_shape(&task);
    assert_like_vendor(&task, &vendor_get());

    // 创建新的自动外呼: body verbatim.
    let reply = app
        .send_json_text(
            Method::POST,
            "/api/out_call_tasks",
            r#"{ "group_name": "test2", "description": "test" }"#,
        )
        .await;
    let second = success_data(&reply);
    assert!(
        second.is_u64(),
        "create answers the id as a number: {}",
        reply.body
    );
    assert_eq!(second, json!(2));
    let created = app.task(2).await;
    assert_eq!(
        (
            created["group_name"].as_str(),
            created["description"].as_str()
        ),
        (Some("test2"), Some("test"))
    );

    // 修改基本信息.
    let reply = app
        .send_json_text(
            Method::PUT,
            "/api/out_call_tasks/1",
            r#"{ "group_name": "test1", "description": "test", "cid_number": "1000", "cid_name": "1000" }"#,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.body,
        json!({ "code": 200, "message": "success", "data": "1" })
    );
    let task = app.task(1).await;
    for (key, value) in [
        ("group_name", "test1"),
        ("description", "test"),
        ("cid_number", "1000"),
        ("cid_name", "1000"),
    ] {
        assert_eq!(task[key], value, "{key} of {task}");
    }

    // 修改呼叫设置.
    let reply = app
        .send_json_text(
            Method::PUT,
            "/api/out_call_tasks/1",
            r#"{ "dest_context": "context-1", "calling_time": 30, "max_caps": 1, "max_concurrency": 1, "task_start_time": "", "auto_dial": 0, "disable_ring_back": 1, "auto_record": 0 }"#,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.body,
        json!({ "code": 200, "message": "success", "data": "1" })
    );
    let task = app.task(1).await;
    assert_get_task_shape(&task);
    assert_eq!(task["dest_context"], "context-1");
    assert_eq!(task["task_start_time"], "");
    for (key, text) in [
        ("calling_time", "30"),
        ("max_caps", "1"),
        ("max_concurrency", "1"),
        ("auto_dial", "0"),
        ("disable_ring_back", "1"),
        ("auto_record", "0"),
    ] {
        assert_eq!(json_text(&task[key]), text, "{key} of {task}");
    }

    // 修改呼叫确认.
    let confirm_body = json!({ "group_confirm_key": "1", "group_confirm_read_timeout": "2", "group_confirm_file": MEDIA_205 });
    let reply = app
        .send_json_text(
            Method::PUT,
            "/api/out_call_tasks/1",
            &confirm_body.to_string(),
        )
        .await;
    assert_eq!(
        reply.body,
        json!({ "code": 200, "message": "success", "data": "1" })
    );
    let task = app.task(1).await;
    assert_eq!(task["group_confirm_key"], "1");
    assert_eq!(task["group_confirm_file"], MEDIA_205);
    let listed = app
        .all_tasks()
        .await
        .into_iter()
        .find(|t| t["id"] == "1")
        .expect("task 1 is listed");
    assert_list_task_shape(&listed);
    assert_eq!(listed["group_confirm_read_timeout"], "2");
    assert_eq!(listed["group_confirm_file"], MEDIA_205);

    // 修改接通后动作.
    let action_body = json!({ "action": "playback", "data": MEDIA_205, "group_confirm_file": MEDIA_205_REORDERED });
    let reply = app
        .send_json_text(
            Method::PUT,
            "/api/out_call_tasks/1",
            &action_body.to_string(),
        )
        .await;
    assert_eq!(
        reply.body,
        json!({ "code": 200, "message": "success", "data": "1" })
    );
    let task = app.task(1).await;
    assert_eq!(task["action"], "playback");
    assert_eq!(task["data"], MEDIA_205);
    assert_eq!(task["group_confirm_file"], MEDIA_205_REORDERED);
    assert_eq!(
        task["group_confirm_key"], "1",
        "an earlier PUT's field is kept"
    );

    // 创建被叫号码表.
    let reply = app
        .send_json_text(
            Method::POST,
            "/api/out_call_tasks/1/import",
            r#"{ "data": [ { "dest_number": "1000", "external_id": "" } ] }"#,
        )
        .await;
    // outcall's answer counts the rows where the vendor's page shows `"data":"{}"`: added, skipped
    // as already in the task (or repeated), and added finished as on the do-not-call list.
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.body,
        json!({ "data": r#"{"imported":1,"duplicates":0,"dnc":0}"#, "code": 200, "message": "success" })
    );

    // The list, plain and with the page's query (both tasks are named test… and init).
    for path in [
        "/api/out_call_tasks",
        "/api/out_call_tasks?perPage=500&page=1&name=test&status=init",
    ] {
        let reply = app.get(path).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let data = list_data(&reply.body);
        assert_eq!(
            (
                reply.body["rowCount"].clone(),
                reply.body["pageCount"].clone()
            ),
            (json!(2), json!(1)),
            "{path}"
        );
        assert_eq!(data.len(), 2);
        data.iter().for_each(assert_list_task_shape);
        let one = data
            .iter()
            .find(|t| t["id"] == "1")
            .expect("task 1 is listed");
        assert_eq!(
            (one["total"].clone(), one["done"].clone()),
            (json!(1), json!(0))
        );
        assert_eq!(one["group_name"], "test1");
    }
    assert_eq!(app.task(1).await["done_total"], "0/1");

    // 查看被叫号码表.
    let reply = app.get("/api/out_call_tasks/1/numbers").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let numbers = list_data(&reply.body);
    assert_eq!(
        (
            reply.body["page"].clone(),
            reply.body["rowCount"].clone(),
            reply.body["pageCount"].clone()
        ),
        (json!(1), json!(1), json!(1))
    );
    assert_eq!(numbers.len(), 1);
    assert_fresh_number(&numbers[0], 1);
    assert_eq!(
        (
            numbers[0]["dest_number"].as_str(),
            numbers[0]["external_id"].as_str()
        ),
        (Some("1000"), Some(""))
    );
    assert!(
        numbers[0]["id"].as_str().unwrap().parse::<u64>().is_ok(),
        "id is a numeric string: {}",
        numbers[0]
    );

    // 导出被叫号码表: the vendor's row, with all ten columns.
    let reply = app.get("/api/out_call_tasks/1/download").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        reply.body,
        json!([
            DOWNLOAD_HEADER,
            ["test1", "放音", "1000", "init", "", "", "", "", "", ""]
        ])
    );

    // Task 2 gets numbers and a slow pace first, so that it is still running when stopped
    // whatever the dialer does (a task with nothing to dial may finish at once).
    app.update_task(2, json!({"max_caps": SLOW_CAPS})).await;
    app.import(2, &phone_numbers(2000, 2)).await;

    // 启动自动外呼.
    let reply = app
        .send_json_text(
            Method::PUT,
            "/api/out_call_tasks",
            r#"{ "action": "start", "data": [ "2" ] }"#,
        )
        .await;
    let items = success_data(&reply)
        .as_array()
        .cloned()
        .expect("data is an array");
    let started = assert_state_change(&items, 2, "running", "task_start_time");
    let task = app.task(2).await;
    assert_eq!(task["status"], "running");
    assert_eq!(task["task_start_time"], started["task_start_time"]);

    // 关闭自动外呼.
    let reply = app
        .send_json_text(
            Method::PUT,
            "/api/out_call_tasks",
            r#"{ "action": "stop", "data": [ "2" ] }"#,
        )
        .await;
    let items = success_data(&reply)
        .as_array()
        .cloned()
        .expect("data is an array");
    let stopped = assert_state_change(&items, 2, "stop", "task_end_time");
    let task = app.task(2).await;
    assert_eq!(task["status"], "stop");
    assert_eq!(task["task_end_time"], stopped["task_end_time"]);

    // 克隆自动外呼.
    let reply = app
        .send_json_text(
            Method::POST,
            "/api/out_call_tasks/clone",
            r#"{ "group_name": "test3", "description": "test", "is_clone_numbers": true, "id": 2 }"#,
        )
        .await;
    let clone = success_data(&reply);
    assert!(
        clone.is_u64(),
        "clone answers the id as a number: {}",
        reply.body
    );
    let clone = clone.as_i64().unwrap();
    assert_eq!(clone, 3);
    let task = app.task(clone).await;
    assert_get_task_shape(&task);
    assert_eq!(
        (
            task["group_name"].as_str(),
            task["status"].as_str(),
            task["done_total"].as_str()
        ),
        (Some("test3"), Some("init"), Some("0/2"))
    );

    // 删除指定自动外呼表.
    let reply = app.delete("/api/out_call_tasks/2").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.body,
        json!({ "message": "success", "data": "2", "code": 200 })
    );
    assert_error(&app.get("/api/out_call_tasks/2").await, 404, "");
}

/// Every setting set to a non-default value: the list shows each as a string, get-by-id shows
/// the seven numeric ones as numbers and the rest as strings.
#[tokio::test]
async fn list_and_get_show_every_setting_with_the_vendor_types() {
    let app = spawn_app().await;
    let id = app.create_task("typed").await;
    app.update_task(
        id,
        json!({
            "description": "全部设置",
            "cid_number": "01088886666",
            "cid_name": "张三",
            "context": "context-2",
            "dest_context": "trunk-a",
            "calling_time": 45,
            "max_caps": 0.5,
            "max_concurrency": 7,
            "task_start_time": "2099-01-02 03:04:05",
            "auto_dial": 1,
            "disable_ring_back": 0,
            "auto_record": 1,
            "group_confirm_key": "#",
            "group_confirm_read_timeout": 5,
            "group_confirm_file": MEDIA_205,
            "action": "transfer",
            "data": "1001"
        }),
    )
    .await;
    app.import(id, &phone_numbers(0, 3)).await;

    let strings = [
        ("group_name", "typed"),
        ("description", "全部设置"),
        ("status", "init"),
        ("cid_number", "01088886666"),
        ("cid_name", "张三"),
        ("context", "context-2"),
        ("dest_context", "trunk-a"),
        ("task_start_time", "2099-01-02 03:04:05"),
        ("task_end_time", ""),
        ("group_confirm_key", "#"),
        ("group_confirm_file", MEDIA_205),
        ("action", "transfer"),
        ("data", "1001"),
        ("deleted_at", ""),
    ];
    let numbers = [
        ("id", id.to_string()),
        ("calling_time", "45".into()),
        ("max_caps", "0.5".into()),
        ("max_concurrency", "7".into()),
        ("auto_dial", "1".into()),
        ("disable_ring_back", "0".into()),
        ("auto_record", "1".into()),
    ];

    let listed = app.all_tasks().await;
    assert_eq!(listed.len(), 1);
    let item = &listed[0];
    assert_list_task_shape(item);
    for (key, value) in strings {
        assert_eq!(item[key], value, "{key} in the list: {item}");
    }
    for (key, value) in &numbers {
        assert_eq!(
            item[*key],
            Value::String(value.clone()),
            "{key} in the list is a string: {item}"
        );
    }
    assert_eq!(item["group_confirm_read_timeout"], "5");
    assert_eq!(
        (item["total"].clone(), item["done"].clone()),
        (json!(3), json!(0))
    );

    let task = app.task(id).await;
    assert_get_task_shape(&task);
    for (key, value) in strings {
        assert_eq!(task[key], value, "{key} by id: {task}");
    }
    for (key, value) in &numbers {
        assert!(task[*key].is_number(), "{key} by id is a number: {task}");
        assert_eq!(json_text(&task[*key]), *value, "{key} by id: {task}");
    }
    assert_eq!(task["done_total"], "0/3");
}

/// `max_caps` is a number by id and a string in the list; whole values print without `.0`, and
/// fractions exactly as sent.
#[tokio::test]
async fn max_caps_keeps_fractions_and_prints_whole_values_as_integers() {
    let app = spawn_app().await;
    let id = app.create_task("caps").await;
    for (sent, shown) in [
        (json!(0.5), "0.5"),
        (json!(1), "1"),
        (json!(2.0), "2"),
        (json!("0.2"), "0.2"),
        (json!("3"), "3"),
    ] {
        app.update_task(id, json!({ "max_caps": sent })).await;
        let task = app.task(id).await;
        assert!(
            task["max_caps"].is_number(),
            "max_caps by id is a number: {task}"
        );
        assert_eq!(json_text(&task["max_caps"]), shown, "max_caps {sent} by id");
        let listed = app.all_tasks().await;
        assert_eq!(listed[0]["max_caps"], shown, "max_caps {sent} in the list");
    }
}

/// The download: the vendor's header row, then one row of ten strings a number, with the
/// after-answer action in Chinese.
#[tokio::test]
async fn download_lists_every_number_under_the_chinese_header() {
    let app = spawn_app().await;
    for (name, action, data, label) in [
        ("play", "playback", MEDIA_205, "放音"),
        ("xfer", "transfer", "1001", "转接"),
    ] {
        let id = app.create_task(name).await;
        app.update_task(id, json!({"action": action, "data": data}))
            .await;
        let dialed = phone_numbers(id as u64 * 100, 4);
        app.import(id, &dialed).await;

        let reply = app.get(&format!("/api/out_call_tasks/{id}/download")).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let rows = reply.body.as_array().expect("an array of rows");
        assert_eq!(
            rows.len(),
            1 + dialed.len(),
            "a header and a row a number: {}",
            reply.body
        );
        assert_eq!(rows[0], json!(DOWNLOAD_HEADER), "the header row");
        let mut numbers_seen = Vec::new();
        for row in &rows[1..] {
            let cells = row.as_array().expect("a row is an array");
            assert_eq!(cells.len(), 10, "ten columns: {row}");
            assert!(
                cells.iter().all(Value::is_string),
                "every cell is a string: {row}"
            );
            assert_eq!(
                (cells[0].as_str(), cells[1].as_str(), cells[3].as_str()),
                (Some(name), Some(label), Some("init")),
                "{row}"
            );
            assert!(
                cells[4..].iter().all(|c| c == ""),
                "a number never dialed has no times, durations or cause: {row}"
            );
            numbers_seen.push(cells[2].as_str().unwrap().to_owned());
        }
        numbers_seen.sort();
        assert_eq!(numbers_seen, dialed);
    }

    // A task without numbers downloads as the header alone.
    let empty = app.create_task("empty").await;
    let reply = app
        .get(&format!("/api/out_call_tasks/{empty}/download"))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, json!([DOWNLOAD_HEADER]));
}

/// Start/stop of several tasks at once answers one item per task, ids given as strings or
/// numbers alike.
#[tokio::test]
async fn start_and_stop_answer_one_item_per_task() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for name in ["a", "b"] {
        let id = app.create_task(name).await;
        app.update_task(id, json!({"max_caps": SLOW_CAPS})).await;
        app.import(id, &phone_numbers(id as u64 * 10, 2)).await;
        ids.push(id);
    }
    let reply = app
        .put(
            "/api/out_call_tasks",
            json!({"action": "start", "data": [ids[0].to_string(), ids[1]]}),
        )
        .await;
    let items = success_data(&reply).as_array().cloned().expect("an array");
    assert_eq!(items.len(), 2, "{items:?}");
    for (item, id) in items.iter().zip(&ids) {
        assert_keys(
            item,
            &["data_id", "status", "updated_at", "task_start_time"],
        );
        assert_eq!(item["data_id"], Value::String(id.to_string()));
        assert_eq!(item["status"], "running");
        assert_recent_timestamp(&item["task_start_time"], "task_start_time");
        assert_recent_timestamp(&item["updated_at"], "updated_at");
    }
    let items = app.stop(&ids).await;
    assert_eq!(items.len(), 2, "{items:?}");
    for (item, id) in items.iter().zip(&ids) {
        assert_keys(item, &["data_id", "status", "updated_at", "task_end_time"]);
        assert_eq!(item["data_id"], Value::String(id.to_string()));
        assert_eq!(item["status"], "stop");
        assert_recent_timestamp(&item["task_end_time"], "task_end_time");
        let task = app.task(*id).await;
        assert_eq!(
            (task["status"].clone(), task["task_end_time"].clone()),
            (json!("stop"), item["task_end_time"].clone())
        );
    }
}

/// Times are read and shown in the configured zone; the database keeps unix seconds.
#[tokio::test]
async fn times_are_in_the_configured_time_zone() {
    let app = spawn_app_with(|config| {
        config.time_zone = outcall::clock::TimeZone::named("Asia/Shanghai").expect("a zone");
    })
    .await;
    let id = app.create_task("zoned").await;
    app.update_task(id, json!({"task_start_time": "2026-04-24 05:18:23"}))
        .await;
    let task = app.task(id).await;
    assert_eq!(
        task["task_start_time"], "2026-04-24 05:18:23",
        "shown as it was written"
    );
    let stored: i64 = app
        .db()
        .query_row(
            "SELECT task_start_time FROM tasks WHERE id = ?1",
            [id],
            |row| row.get(0),
        )
        .expect("the stored start time");
    assert_eq!(
        stored, 1_776_979_103,
        "05:18:23 in Shanghai is 21:18:23 UTC the day before"
    );

    // created_at is now, in Shanghai (UTC+8, no daylight saving).
    let created = chrono::NaiveDateTime::parse_from_str(
        task["created_at"].as_str().unwrap(),
        "%Y-%m-%d %H:%M:%S",
    )
    .expect("a timestamp");
    let shanghai_now = chrono::Utc::now().naive_utc() + chrono::Duration::hours(8);
    assert!(
        (shanghai_now - created).num_seconds().abs() <= 120,
        "created_at {created} vs {shanghai_now}"
    );
}
