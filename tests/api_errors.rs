//! Bad input: each gets a 4xx with `{"code":<status>,"message":"…naming the field…"}`, never a 5xx,
//! and a refused write changes nothing.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const TASKS: &str = "/api/out_call_tasks";

/// The write endpoints, given an existing task id.
fn write_endpoints(id: i64) -> Vec<(Method, String)> {
    vec![
        (Method::POST, TASKS.to_owned()),
        (Method::PUT, format!("{TASKS}/{id}")),
        (Method::PUT, TASKS.to_owned()),
        (Method::POST, format!("{TASKS}/{id}/import")),
        (Method::POST, format!("{TASKS}/clone")),
    ]
}

#[tokio::test]
async fn malformed_json_is_400_on_every_write() {
    let app = spawn_app().await;
    let id = app.create_task("t").await;
    for (method, path) in write_endpoints(id) {
        for body in [
            r#"{"group_name": "x""#,
            r#"{"group_name": 'x'}"#,
            "{,}",
            "not json",
            r#"{"a":1}}"#,
        ] {
            let reply = app.send_json_text(method.clone(), &path, body).await;
            assert_error(&reply, 400, "");
        }
        assert_error(
            &app.send_json_text(method.clone(), &path, "").await,
            400,
            "",
        );
    }
    assert_eq!(app.all_tasks().await.len(), 1, "nothing was created");
}

#[tokio::test]
async fn a_body_that_is_not_an_object_is_400() {
    let app = spawn_app().await;
    let id = app.create_task("t").await;
    for (method, path) in write_endpoints(id) {
        for body in ["[]", "[1,2]", r#""text""#, "42", "null", "true"] {
            let reply = app.send_json_text(method.clone(), &path, body).await;
            assert_error(&reply, 400, "");
        }
    }
}

#[tokio::test]
async fn a_wrong_type_names_the_field_and_changes_nothing() {
    let app = spawn_app().await;
    let id = app.create_task("t").await;
    let before = app.task(id).await;
    let cases = [
        json!({"calling_time": "abc"}),
        json!({"calling_time": 30.5}),
        json!({"calling_time": true}),
        json!({"max_caps": [1]}),
        json!({"max_caps": "fast"}),
        json!({"max_caps": {"value": 1}}),
        json!({"max_concurrency": "many"}),
        json!({"auto_dial": 2}),
        json!({"auto_record": "yes"}),
        json!({"disable_ring_back": [0]}),
        json!({"group_name": {}}),
        json!({"group_name": ["x"]}),
        json!({"description": [1]}),
        json!({"cid_number": {"n": 1}}),
        json!({"task_start_time": 20260101}),
        json!({"group_confirm_read_timeout": "soon"}),
        json!({"action": "dance"}),
    ];
    for body in cases {
        let field = body.as_object().unwrap().keys().next().unwrap().clone();
        // A valid field alongside: the whole write is refused, not just the bad field.
        let mut with_valid = body.clone();
        with_valid["cid_name"] = json!("changed");
        assert_error(
            &app.put(&format!("{TASKS}/{id}"), with_valid).await,
            400,
            &field,
        );
        let mut create = body.clone();
        if field != "group_name" {
            create["group_name"] = json!(format!("new-{field}"));
        }
        assert_error(&app.post(TASKS, create).await, 400, &field);
    }
    assert_eq!(app.task(id).await, before, "a refused PUT changed nothing");
    assert_eq!(
        app.all_tasks().await.len(),
        1,
        "a refused create made nothing"
    );
}

#[tokio::test]
async fn numbers_and_numeric_strings_are_accepted_alike() {
    let app = spawn_app().await;
    let id = app.create_task("t").await;
    app.update_task(
        id,
        json!({
            "calling_time": "30", "max_caps": "0.2", "max_concurrency": "2", "auto_dial": "0",
            "disable_ring_back": "0", "auto_record": "1", "group_confirm_read_timeout": "3", "cid_number": 1000
        }),
    )
    .await;
    let task = app.task(id).await;
    for (key, text) in [
        ("calling_time", "30"),
        ("max_caps", "0.2"),
        ("max_concurrency", "2"),
        ("auto_dial", "0"),
        ("disable_ring_back", "0"),
        ("auto_record", "1"),
    ] {
        assert_eq!(json_text(&task[key]), text, "{key}: {task}");
    }
    assert_eq!(task["cid_number"], "1000");

    // And on create.
    let reply = app
        .post(
            TASKS,
            json!({"group_name": "s", "calling_time": "60", "max_caps": "0.5"}),
        )
        .await;
    let created = success_data(&reply).as_i64().expect("an id");
    let task = app.task(created).await;
    assert_eq!(
        (
            json_text(&task["calling_time"]),
            json_text(&task["max_caps"])
        ),
        ("60".into(), "0.5".into())
    );
}

#[tokio::test]
async fn out_of_range_values_are_400() {
    let app = spawn_app().await;
    let id = app.create_task("t").await;
    let refused = [
        ("max_caps", json!(0)),
        ("max_caps", json!(-1)),
        ("max_caps", json!("0")),
        ("max_caps", json!("NaN")),
        ("max_caps", json!("inf")),
        ("max_concurrency", json!(0)),
        ("max_concurrency", json!(-3)),
        ("calling_time", json!(4)),
        ("calling_time", json!(301)),
        ("calling_time", json!("301")),
        ("calling_time", json!(9_223_372_036_854_775_807_i64)),
        ("calling_time", json!(18_446_744_073_709_551_615_u64)),
        ("task_start_time", json!("2026-13-01 00:00:00")),
        ("task_start_time", json!("tomorrow")),
        ("task_start_time", json!("2026-02-30 00:00:00")),
        ("task_start_time", json!("2026-04-24T05:18:23")),
    ];
    let before = app.task(id).await;
    for (field, value) in refused {
        let reply = app
            .put(&format!("{TASKS}/{id}"), json!({ field: value }))
            .await;
        assert_error(&reply, 400, field);
    }
    assert_eq!(app.task(id).await, before);

    for (field, value, shown) in [
        ("calling_time", json!(5), "5"),
        ("calling_time", json!(300), "300"),
        ("max_concurrency", json!(1), "1"),
        ("max_caps", json!(0.01), "0.01"),
    ] {
        app.update_task(id, json!({ field: value })).await;
        assert_eq!(json_text(&app.task(id).await[field]), shown, "{field}");
    }
    app.update_task(id, json!({"task_start_time": "2030-01-02 03:04:05"}))
        .await;
    assert_eq!(app.task(id).await["task_start_time"], "2030-01-02 03:04:05");
    app.update_task(id, json!({"task_start_time": ""})).await;
    assert_eq!(
        app.task(id).await["task_start_time"],
        "",
        "an empty start time unsets it"
    );
}

#[tokio::test]
async fn over_long_strings_are_400() {
    let app = spawn_app().await;
    let id = app.create_task("t").await;
    let long_name = "n".repeat(129);
    assert_error(
        &app.post(TASKS, json!({"group_name": long_name})).await,
        400,
        "group_name",
    );
    assert_error(
        &app.put(&format!("{TASKS}/{id}"), json!({"group_name": long_name}))
            .await,
        400,
        "group_name",
    );
    assert_error(
        &app.post(
            &format!("{TASKS}/clone"),
            json!({"group_name": long_name, "id": id}),
        )
        .await,
        400,
        "group_name",
    );
    let long_description = "d".repeat(1025);
    assert_error(
        &app.post(
            TASKS,
            json!({"group_name": "x", "description": long_description}),
        )
        .await,
        400,
        "description",
    );
    assert_error(
        &app.put(
            &format!("{TASKS}/{id}"),
            json!({"description": long_description}),
        )
        .await,
        400,
        "description",
    );
    assert_eq!(app.all_tasks().await.len(), 1);

    // The limits themselves are allowed, counted in characters, not bytes.
    for name in ["n".repeat(128), "名".repeat(128)] {
        let created = success_data(
            &app.post(
                TASKS,
                json!({"group_name": name, "description": "説".repeat(1024)}),
            )
            .await,
        );
        let task = app.task(created.as_i64().unwrap()).await;
        assert_eq!(task["group_name"], Value::String(name.clone()));
    }

    for (field, value) in [("group_name", ""), ("group_name", "   ")] {
        assert_error(&app.post(TASKS, json!({ field: value })).await, 400, field);
    }
    assert_error(
        &app.post(TASKS, json!({"description": "no name"})).await,
        400,
        "group_name",
    );
}

#[tokio::test]
async fn a_live_task_name_is_unique_but_a_deleted_one_is_free() {
    let app = spawn_app().await;
    let first = app.create_task("same").await;
    let other = app.create_task("other").await;
    assert_error(
        &app.post(TASKS, json!({"group_name": "same"})).await,
        409,
        "group_name",
    );
    assert_error(
        &app.put(&format!("{TASKS}/{other}"), json!({"group_name": "same"}))
            .await,
        409,
        "group_name",
    );
    assert_error(
        &app.post(
            &format!("{TASKS}/clone"),
            json!({"group_name": "same", "id": other}),
        )
        .await,
        409,
        "group_name",
    );
    assert_eq!(app.task(other).await["group_name"], "other");
    assert_eq!(app.all_tasks().await.len(), 2);
    // Renaming a task to its own name is no conflict.
    app.update_task(first, json!({"group_name": "same"})).await;

    success_data(&app.delete(&format!("{TASKS}/{first}")).await);
    let reused = app.create_task("same").await;
    assert_ne!(reused, first);
    assert_eq!(app.task(reused).await["group_name"], "same");
}

#[tokio::test]
async fn unknown_ids_are_404_everywhere() {
    let app = spawn_app().await;
    let known = app.create_task("known").await;
    let missing = known + 1000;
    let path = format!("{TASKS}/{missing}");
    assert_error(&app.get(&path).await, 404, "");
    assert_error(&app.put(&path, json!({"description": "x"})).await, 404, "");
    assert_error(&app.delete(&path).await, 404, "");
    assert_error(
        &app.post(
            &format!("{path}/import"),
            json!({"data": [{"dest_number": "1000"}]}),
        )
        .await,
        404,
        "",
    );
    assert_error(&app.get(&format!("{path}/numbers")).await, 404, "");
    assert_error(&app.get(&format!("{path}/download")).await, 404, "");
    assert_error(
        &app.post(
            &format!("{TASKS}/clone"),
            json!({"group_name": "c", "id": missing}),
        )
        .await,
        404,
        "",
    );
    assert_error(&app.start_stop("start", &[missing]).await, 404, "");
    assert_error(&app.start_stop("stop", &[missing]).await, 404, "");
    assert_eq!(
        app.all_tasks().await.len(),
        1,
        "the clone of nothing made nothing"
    );

    // An id that is not a number at all is refused too.
    for bad in ["abc", "0", "-1", "1.5"] {
        let reply = app.get(&format!("{TASKS}/{bad}")).await;
        assert!(
            matches!(reply.status.as_u16(), 400 | 404),
            "{bad}: {} {}",
            reply.status,
            reply.body
        );
        assert_client_error(&reply);
    }
}

#[tokio::test]
async fn start_and_stop_are_all_or_nothing() {
    let app = spawn_app().await;
    let idle = app.create_task("idle").await;
    app.update_task(idle, json!({"max_caps": SLOW_CAPS})).await;
    app.import(idle, &phone_numbers(0, 2)).await;
    let missing = idle + 1000;

    assert_error(&app.start_stop("start", &[idle, missing]).await, 404, "");
    let task = app.task(idle).await;
    assert_eq!(
        (task["status"].as_str(), task["task_start_time"].as_str()),
        (Some("init"), Some("")),
        "not started"
    );
    assert!(app
        .all_numbers(idle)
        .await
        .iter()
        .all(|n| n["call_status"] == "init" && n["outbound_call"] == "1"));

    let running = app.create_running_task("running", 3).await;
    assert_error(&app.start_stop("stop", &[running, missing]).await, 404, "");
    let task = app.task(running).await;
    assert_eq!(
        (task["status"].as_str(), task["task_end_time"].as_str()),
        (Some("running"), Some("")),
        "not stopped"
    );
    assert!(
        app.all_numbers(running)
            .await
            .iter()
            .all(|n| n["call_status"] != "stop"),
        "no number was stopped"
    );
}

#[tokio::test]
async fn start_and_stop_check_action_and_data() {
    let app = spawn_app().await;
    let id = app.create_task("t").await;
    let cases = [
        (
            json!({"action": "pause", "data": [id.to_string()]}),
            "action",
        ),
        (
            json!({"action": "START", "data": [id.to_string()]}),
            "action",
        ),
        (json!({"action": 1, "data": [id.to_string()]}), "action"),
        (json!({"data": [id.to_string()]}), "action"),
        (json!({"action": "start"}), "data"),
        (json!({"action": "start", "data": id.to_string()}), "data"),
        (json!({"action": "start", "data": []}), "data"),
        (json!({"action": "start", "data": ["abc"]}), "data"),
        (json!({"action": "stop", "data": [{"id": id}]}), "data"),
    ];
    for (body, field) in cases {
        assert_error(&app.put(TASKS, body).await, 400, field);
    }
    assert_eq!(app.task(id).await["status"], "init");
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405() {
    let app = spawn_app().await;
    let id = app.create_task("t").await;
    for path in [
        "/api/nope",
        "/api/out_call_tasks/1/nope",
        "/api/out_call_tasks/1/numbers/2",
        "/nope.html",
    ] {
        assert_error(&app.get(path).await, 404, "");
    }
    assert_error(&app.post("/api/nope", json!({})).await, 404, "");
    let wrong = [
        (Method::PATCH, format!("{TASKS}/{id}")),
        (Method::DELETE, TASKS.to_owned()),
        (Method::PATCH, TASKS.to_owned()),
        (Method::GET, format!("{TASKS}/{id}/import")),
        (Method::POST, format!("{TASKS}/{id}/numbers")),
        (Method::DELETE, format!("{TASKS}/{id}/download")),
        (Method::POST, format!("{TASKS}/{id}")),
        (Method::PUT, "/api/sessions".to_owned()),
    ];
    for (method, path) in wrong {
        let reply = app.send(method.clone(), &path, Some(json!({}))).await;
        assert_error(&reply, 405, "");
    }
    assert_eq!(app.task(id).await["status"], "init");
}

/// One bad row refuses the whole import with the row's index in the message; nothing is written.
#[tokio::test]
async fn an_import_with_a_bad_row_names_it_and_writes_nothing() {
    let app = spawn_app().await;
    let id = app.create_task("t").await;
    app.import(id, &["5550001".to_owned()]).await;
    let path = format!("{TASKS}/{id}/import");
    let good = |n: &str| json!({"dest_number": n, "external_id": ""});
    let cases = [
        (
            vec![
                good("1000"),
                good("1001"),
                json!({"dest_number": "", "external_id": ""}),
            ],
            "data[2]",
        ),
        (
            vec![
                good("1000"),
                json!({"dest_number": "12ab", "external_id": ""}),
                good("1002"),
            ],
            "data[1]",
        ),
        (
            vec![
                json!({"dest_number": "1".repeat(33), "external_id": ""}),
                good("1001"),
            ],
            "data[0]",
        ),
        (vec![good("1000"), json!({"external_id": "x"})], "data[1]"),
        (
            vec![
                good("1000"),
                good("1001"),
                good("1002"),
                json!({"dest_number": true}),
            ],
            "data[3]",
        ),
        (
            vec![
                good("1000"),
                json!({"dest_number": "1000", "external_id": ["x"]}),
            ],
            "data[1]",
        ),
    ];
    for (rows, index) in cases {
        let reply = app.post(&path, json!({ "data": rows })).await;
        assert_error(&reply, 400, index);
        let numbers = app.all_numbers(id).await;
        assert_eq!(
            numbers.len(),
            1,
            "nothing of the refused import was written: {numbers:?}"
        );
        assert_eq!(numbers[0]["dest_number"], "5550001");
    }
    for body in [
        json!({}),
        json!({"data": "1000"}),
        json!({"data": [1000, 1001]}),
        json!({"numbers": []}),
    ] {
        assert_client_error(&app.post(&path, body).await);
    }
    assert_eq!(app.task(id).await["done_total"], "0/1");

    // The longest allowed number, and the other dialable characters.
    let edge = [
        "1".repeat(32),
        "+8613800138000".into(),
        "*97".into(),
        "#1".into(),
    ];
    app.import(id, &edge).await;
    assert_eq!(app.all_numbers(id).await.len(), 5);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let app = spawn_app_with(|config| config.body_limit = 1024).await;
    let id = app.create_task("t").await;
    let big = "d".repeat(2000);
    assert_error(
        &app.post(TASKS, json!({"group_name": "big", "description": big}))
            .await,
        413,
        "",
    );
    assert_error(
        &app.put(&format!("{TASKS}/{id}"), json!({"description": big}))
            .await,
        413,
        "",
    );
    let rows: Vec<Value> = phone_numbers(0, 60)
        .iter()
        .map(|n| json!({"dest_number": n, "external_id": ""}))
        .collect();
    assert_error(
        &app.post(&format!("{TASKS}/{id}/import"), json!({"data": rows}))
            .await,
        413,
        "",
    );
    // Far over the limit, as a runaway client would send.
    let huge = "d".repeat(1_000_000);
    assert_error(
        &app.post(TASKS, json!({"group_name": "huge", "description": huge}))
            .await,
        413,
        "",
    );
    assert_eq!(app.all_numbers(id).await.len(), 0);
    assert_eq!(app.all_tasks().await.len(), 1);
    // Under the limit all is well.
    app.update_task(id, json!({"description": "d".repeat(900)}))
        .await;
}

/// A sweep of odd inputs over every route: each answer is a 4xx in the envelope (or a 200),
/// never a 5xx.
#[tokio::test]
async fn odd_input_never_gets_a_5xx() {
    let app = spawn_app().await;
    let id = app.create_task("t").await;
    let bodies = [
        "",
        "\u{0}",
        "{}",
        "null",
        "{\"group_name\":null}",
        "{\"group_name\":\"\\ud800\"}",
        "{\"group_name\":\"odd\",\"calling_time\":1e400}",
        "{\"max_caps\":1e308}",
        "{\"max_caps\":-0.0}",
        "{\"max_concurrency\":99999999999999999999}",
        "{\"id\":-1,\"group_name\":\"c\"}",
        "{\"id\":\"1\",\"group_name\":\"\"}",
        "{\"action\":\"start\",\"data\":[\"9999999999999999999999\"]}",
        "{\"action\":\"stop\",\"data\":[null]}",
        "{\"data\":[{}]}",
        "{\"data\":[null]}",
        "{\"data\":[[\"1000\"]]}",
        "{\"data\":[{\"dest_number\":1.5}]}",
        "{\"data\":{\"dest_number\":\"1000\"}}",
        "{\"is_clone_numbers\":\"maybe\",\"id\":1,\"group_name\":\"c2\"}",
        "{\"task_start_time\":\"9999-12-31 23:59:59\",\"auto_dial\":1}",
        "{\"task_start_time\":\"0000-01-01 00:00:00\"}",
    ];
    let mut paths: Vec<(Method, String)> = write_endpoints(id);
    paths.push((Method::POST, "/api/sessions".into()));
    for (method, path) in &paths {
        for body in bodies {
            let reply = app.send_json_text(method.clone(), path, body).await;
            assert!(
                !reply.status.is_server_error(),
                "{method} {path} {body:?} answered {}: {}",
                reply.status,
                reply.body
            );
            if reply.status != StatusCode::OK {
                assert_client_error(&reply);
            }
        }
    }
    for query in [
        "?page=-1",
        "?perPage=1e3",
        "?page=99999999999999999999",
        "?status=%FF",
        "?name=%00",
        "?page=1&page=x",
        "?%%%",
    ] {
        for path in [TASKS.to_owned(), format!("{TASKS}/{id}/numbers")] {
            let reply = app.get(&format!("{path}{query}")).await;
            assert!(
                !reply.status.is_server_error(),
                "{path}{query}: {} {}",
                reply.status,
                reply.body
            );
            if reply.status != StatusCode::OK {
                assert_client_error(&reply);
            }
        }
    }
    for path in [
        "/api/out_call_tasks/99999999999999999999999",
        "/api/out_call_tasks/%00",
    ] {
        let reply = app.get(path).await;
        assert_client_error(&reply);
    }
}

/// While the dialer writes call results as fast as it can, every API write still succeeds: a
/// busy database is the server's to wait for, never a 5xx for the client.
#[tokio::test]
async fn writes_succeed_while_the_dialer_is_busy() {
    let app = spawn_app_with(|config| config.sim.time_scale = 0.001).await;
    let busy = app.create_task("busy").await;
    app.update_task(busy, json!({"max_caps": 200, "max_concurrency": 100}))
        .await;
    app.import(busy, &phone_numbers(0, 2000)).await;
    app.start(&[busy]).await;

    for round in 0..40 {
        let id = app.create_task(&format!("round-{round}")).await;
        app.update_task(id, json!({"max_caps": SLOW_CAPS, "cid_number": "1000"}))
            .await;
        app.import(id, &phone_numbers(5000 + round * 10, 3)).await;
        app.start(&[id]).await;
        app.stop(&[id]).await;
        let clone = app
            .post(
                &format!("{TASKS}/clone"),
                json!({"group_name": format!("clone-{round}"), "is_clone_numbers": true, "id": id}),
            )
            .await;
        success_data(&clone);
        success_data(&app.delete(&format!("{TASKS}/{id}")).await);
        // Changing the busy task itself while it dials.
        app.update_task(busy, json!({"description": format!("round {round}")}))
            .await;
        app.import(busy, &phone_numbers(10_000 + round * 10, 2))
            .await;
    }
    let task = app.task(busy).await;
    assert_eq!(task["description"], "round 39");
}
