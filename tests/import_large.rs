//! One import request of a million numbers succeeds within the default body limit, all in one
//! transaction.

mod common;

use std::time::Instant;

use common::spawn_app;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_numbers_in_one_request() {
    const COUNT: usize = 1_000_000;
    let app = spawn_app().await;
    let id = app.create_task("a million").await;
    let mut body = String::with_capacity(COUNT * 56);
    body.push_str(r#"{"data":["#);
    for n in 0..COUNT {
        if n > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            r#"{{"dest_number":"+86138{n:08}","external_id":"row-{n}"}}"#
        ));
    }
    body.push_str("]}");
    assert!(
        body.len() > 50 * 1024 * 1024,
        "the body is {} bytes",
        body.len()
    );

    let started = Instant::now();
    let response = app
        .client
        .post(app.url(&format!("/api/out_call_tasks/{id}/import")))
        .header("X-XTRA-AUTH-ID", &app.token)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .expect("the server answers");
    let status = response.status();
    let answer: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        serde_json::json!({"code": 200, "message": "success",
            "data": format!(r#"{{"imported":{COUNT},"duplicates":0,"dnc":0}}"#)})
    );
    println!(
        "imported {COUNT} numbers in {:?} (debug build)",
        started.elapsed()
    );

    let task = app.get(&format!("/api/out_call_tasks/{id}")).await.body;
    assert_eq!(task["done_total"], format!("0/{COUNT}"));
    // Newest first: the last row of the request is the first of the list, and the first row is
    // the last of the last page.
    let first_page = app
        .get(&format!("/api/out_call_tasks/{id}/numbers?perPage=1"))
        .await
        .body;
    assert_eq!(first_page["rowCount"], COUNT);
    assert_eq!(
        first_page["data"][0]["dest_number"],
        format!("+86138{:08}", COUNT - 1)
    );
    let last_page = app
        .get(&format!(
            "/api/out_call_tasks/{id}/numbers?perPage=1&page={COUNT}"
        ))
        .await
        .body;
    assert_eq!(last_page["data"][0]["dest_number"], "+8613800000000");
    assert_eq!(last_page["data"][0]["external_id"], "row-0");
}
