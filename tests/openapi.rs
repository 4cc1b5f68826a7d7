//! The OpenAPI document: served without a token, valid JSON of OpenAPI 3, and listing exactly the
//! routes that `src/api/mod.rs` registers, each with the error envelope for its 4xx answers.

mod common;

use std::collections::BTreeSet;

use common::{
    shapes::{ATTEMPT_STRING_FIELDS, TASK_ADDED_FIELDS},
    spawn_app_without_login,
};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

/// `(METHOD, path)` of every route registered in `src/api/mod.rs`, read from its source: a
/// `resource("…")` inside the `/api` scope, followed by its `.route(web::get()…)` calls, plus the
/// top-level routes (`/healthz`, `/metrics`). The admin page's catch-all routes (`/`,
/// `/{path:.*}`) are not part of the API.
fn registered_routes() -> BTreeSet<(String, String)> {
    let source = include_str!("../src/api/mod.rs");
    let mut routes = BTreeSet::new();
    let mut current: Option<String> = None;
    for line in source.lines().map(str::trim) {
        if let Some(rest) = line.split("resource(\"").nth(1) {
            let path = rest.split('"').next().expect("a quoted path");
            current = Some(format!("/api{path}"));
        }
        if let Some(rest) = line.strip_prefix(".route(\"/") {
            let (path, rest) = rest.split_once('"').expect("a quoted path");
            if path.is_empty() || path.starts_with('{') {
                continue;
            }
            let method = rest
                .trim_start_matches(", web::")
                .split("()")
                .next()
                .unwrap()
                .to_uppercase();
            routes.insert((method, format!("/{path}")));
            continue;
        }
        for method in ["get", "post", "put", "delete", "patch"] {
            if line.contains(&format!("route(web::{method}()")) {
                let path = current.clone().expect("a route inside a resource");
                routes.insert((method.to_uppercase(), path));
            }
        }
    }
    routes
}

fn documented_routes(document: &Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            routes.insert((method.to_uppercase(), path.clone()));
        }
    }
    routes
}

#[test]
fn the_route_scan_sees_the_known_routes() {
    let routes = registered_routes();
    for (method, path) in [
        ("GET", "/healthz"),
        ("POST", "/api/sessions"),
        ("PUT", "/api/out_call_tasks"),
        ("DELETE", "/api/out_call_tasks/{id}"),
        ("POST", "/api/media_files"),
    ] {
        assert!(
            routes.contains(&(method.to_owned(), path.to_owned())),
            "{method} {path} not found in src/api/mod.rs by the scan: {routes:?}"
        );
    }
    assert!(routes.len() >= 16, "{routes:?}");
}

#[tokio::test]
async fn the_document_is_served_without_a_token_and_lists_every_route() {
    let app = spawn_app_without_login(|_| {}).await;
    let response = app
        .client
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .expect("the server answers");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let document: Value = response.json().await.expect("JSON");

    assert!(
        document["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        document["openapi"]
    );
    let documented = documented_routes(&document);
    let registered = registered_routes();
    let undocumented: Vec<_> = registered.difference(&documented).collect();
    let unregistered: Vec<_> = documented.difference(&registered).collect();
    assert!(
        undocumented.is_empty() && unregistered.is_empty(),
        "routes without documentation: {undocumented:?}; documented routes the server lacks: {unregistered:?}"
    );

    // Both ways of presenting a token are described, and required unless a route is exempt.
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["token"]["in"], "header");
    assert_eq!(schemes["token"]["name"], "X-XTRA-AUTH-ID");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    let exempt = [
        ("GET", "/healthz"),
        ("GET", "/metrics"),
        ("GET", "/api/openapi.json"),
        ("POST", "/api/sessions"),
    ];
    for (method, path) in &documented {
        let operation = &document["paths"][path][method.to_lowercase()];
        let responses = operation["responses"].as_object().unwrap();
        let is_exempt = exempt.contains(&(method.as_str(), path.as_str()));
        let mut errors = vec!["400", "404", "405", "413"];
        if !is_exempt {
            errors.push("401");
            assert!(operation.get("security").is_none(), "{method} {path}");
        } else {
            assert_eq!(
                operation["security"],
                serde_json::json!([{}]),
                "{method} {path}"
            );
        }
        for status in errors {
            assert_eq!(
                responses[status]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ErrorEnvelope",
                "{method} {path} {status}"
            );
        }
    }
    let envelope = &document["components"]["schemas"]["ErrorEnvelope"];
    assert_eq!(envelope["properties"]["code"]["type"], "integer");
    assert_eq!(envelope["properties"]["message"]["type"], "string");

    // The value types of the contract: strings in the list, numbers by id.
    let schemas = &document["components"]["schemas"];
    for field in ["id", "calling_time", "max_caps", "auto_dial", "status"] {
        assert_eq!(
            schemas["TaskListItem"]["properties"][field]["type"], "string",
            "{field}"
        );
    }
    for field in ["total", "done"] {
        assert_eq!(
            schemas["TaskListItem"]["properties"][field]["type"], "integer",
            "{field}"
        );
    }
    for field in [
        "id",
        "calling_time",
        "max_concurrency",
        "auto_dial",
        "auto_record",
    ] {
        assert_eq!(
            schemas["Task"]["properties"][field]["type"], "integer",
            "{field}"
        );
    }
    assert_eq!(schemas["Task"]["properties"]["max_caps"]["type"], "number");
    assert_eq!(
        schemas["CreatedAnswer"]["properties"]["data"]["type"],
        "integer"
    );
    assert_eq!(schemas["IdAnswer"]["properties"]["data"]["type"], "string");

    // Other /api routes still need the token.
    let refused = app
        .client
        .get(app.url("/api/out_call_tasks"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
}

/// Issue 11: the new task settings in every task schema, the stats additions, and the routes of
/// attempts, the do-not-call list and metrics with the agreed shapes.
#[tokio::test]
async fn the_document_describes_retries_windows_dnc_webhooks_and_metrics() {
    let app = spawn_app_without_login(|_| {}).await;
    let document: Value = app
        .client
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let schemas = &document["components"]["schemas"];
    let new_fields = TASK_ADDED_FIELDS;
    for field in new_fields {
        // The list shows every setting as a string; by id the two counts are numbers.
        assert_eq!(
            schemas["TaskListItem"]["properties"][field]["type"], "string",
            "{field}"
        );
        let by_id = if matches!(field, "max_attempts" | "retry_interval") {
            "integer"
        } else {
            "string"
        };
        assert_eq!(
            schemas["Task"]["properties"][field]["type"], by_id,
            "{field}"
        );
        for schema in ["TaskListItem", "Task"] {
            let required = schemas[schema]["required"].as_array().unwrap();
            assert!(required.contains(&json!(field)), "{schema}.{field}");
        }
        assert!(
            schemas["TaskUpdate"]["properties"][field].is_object(),
            "{field} may be written"
        );
    }
    assert!(schemas["TaskUpdate"]["properties"]["task_end_time"].is_object());
    assert_eq!(
        schemas["Task"]["properties"]["max_attempts"]["maximum"],
        100
    );
    assert_eq!(
        schemas["Task"]["properties"]["retry_interval"]["maximum"],
        2_592_000
    );
    // Create is an update with group_name required: it takes the new fields too.
    let create = &document["paths"]["/api/out_call_tasks"]["post"]["requestBody"]["content"]
        ["application/json"]["schema"];
    let create = if let Some(reference) = create["$ref"].as_str() {
        &schemas[reference.rsplit('/').next().unwrap()]
    } else {
        create
    };
    for field in new_fields.iter().chain(&["task_end_time"]) {
        assert!(
            create["properties"][field].is_object(),
            "create takes {field}"
        );
    }

    let stats = &schemas["TaskStats"]["properties"];
    assert_eq!(
        stats["waiting"]["enum"],
        json!(["", "call_window", "retry"])
    );
    let required = schemas["TaskStats"]["required"].as_array().unwrap();
    for field in ["waiting", "waiting_until", "retry_pending", "webhooks"] {
        assert!(required.contains(&json!(field)), "{field}");
    }
    assert_eq!(stats["retry_pending"]["type"], "integer");
    let webhooks = &schemas["WebhookState"]["properties"];
    for field in ["pending", "delivered", "failed"] {
        assert_eq!(webhooks[field]["type"], "integer", "{field}");
    }
    assert_eq!(webhooks["last_error"]["type"], "string");

    let attempt = &schemas["Attempt"]["properties"];
    for field in ["attempt", "billsec"] {
        assert_eq!(attempt[field]["type"], "integer", "{field}");
    }
    for field in ATTEMPT_STRING_FIELDS {
        assert_eq!(attempt[field]["type"], "string", "{field}");
    }
    let paths = &document["paths"];
    assert!(paths["/api/out_call_tasks/{id}/numbers/{number_id}/attempts"]["get"].is_object());
    assert!(paths["/api/dnc"]["get"].is_object());
    assert!(paths["/api/dnc"]["post"].is_object());
    assert!(paths["/api/dnc/{id}"]["delete"].is_object());
    let entry = &schemas["DncEntry"]["properties"];
    assert_eq!(entry["task_id"]["type"], json!(["integer", "null"]));
    assert_eq!(entry["created_at"]["type"], "string");
    assert!(schemas["DncList"]["properties"]["rowCount"].is_object());
    let metrics = &paths["/metrics"]["get"];
    assert_eq!(metrics["security"], json!([{}]));
    assert!(metrics["responses"]["200"]["content"]["text/plain"].is_object());
    assert!(metrics["responses"]["401"].is_object());
}

// ---- What schemathesis found ----

/// `max_caps` as small as 1e-300 was accepted, and starting the task made its runner panic over
/// and over (a pace of one call every 1e300 s overflows the dialer's timers). The floor is now
/// 0.001, one call every 1,000 s, and a task at that pace runs.
#[tokio::test]
async fn max_caps_has_a_floor_the_dialer_can_run() {
    let app = common::spawn_app().await;
    for tiny in [json!(1e-300), json!("1e-300"), json!(0.0009)] {
        let reply = app
            .post(
                "/api/out_call_tasks",
                json!({"group_name": "too slow", "max_caps": tiny}),
            )
            .await;
        common::assert_error(&reply, 400, "max_caps");
    }
    let id = app.create_task("slowest").await;
    app.update_task(id, json!({"max_caps": 0.001})).await;
    assert_eq!(app.task(id).await["max_caps"], json!(0.001));
    app.import(id, &["1003".to_owned(), "1013".to_owned()])
        .await;
    app.start(&[id]).await;
    let number = |numbers: &[Value], dest: &str| {
        numbers
            .iter()
            .find(|n| n["dest_number"] == dest)
            .cloned()
            .expect("an imported number")
    };
    let numbers = common::poll(Duration::from_secs(15), "the first call to end", || async {
        let numbers = app.all_numbers(id).await;
        if number(&numbers, "1003")["call_status"] == "done" {
            Ok(numbers)
        } else {
            Err(format!("{numbers:?}"))
        }
    })
    .await;
    assert_eq!(number(&numbers, "1003")["cause"], "NORMAL_CLEARING");
    assert_eq!(
        number(&numbers, "1013")["call_status"],
        "init",
        "the second call waits 10,000 s"
    );
}

/// JSON Schema counts `1000.0` as an integer, so the document's "a whole number" includes it: an
/// import row's number written as a whole float is that integer, not a refused "fractional".
#[tokio::test]
async fn import_reads_whole_floats_as_integers() {
    let app = common::spawn_app().await;
    let id = app.create_task("floats").await;
    app.import_rows(
        id,
        vec![
            json!({"dest_number": 13800138000.0, "external_id": 7.0}),
            json!({"dest_number": 1000, "external_id": 8}),
        ],
    )
    .await;
    let numbers = app.all_numbers(id).await;
    let mut seen: Vec<(String, String)> = numbers
        .iter()
        .map(|n| {
            (
                n["dest_number"].as_str().unwrap().to_owned(),
                n["external_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("1000".to_owned(), "8".to_owned()),
            ("13800138000".to_owned(), "7".to_owned())
        ]
    );
    for row in [json!({"dest_number": 1000.5}), json!({"dest_number": 1e20})] {
        let reply = app
            .post(
                &format!("/api/out_call_tasks/{id}/import"),
                json!({ "data": [row] }),
            )
            .await;
        common::assert_error(&reply, 400, "data[0].dest_number");
    }
}
