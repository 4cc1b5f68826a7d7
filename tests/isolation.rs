//! Nothing HTTP traffic does may slow the dialer: a flood of wrong-password logins from many
//! connections runs while a campaign dials, and the campaign keeps its pace.

mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use common::*;
use outcall::telephony::sim::SimBackend;
use serde_json::json;

const CAPS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_does_not_slow_the_dialer() {
    let sim = Arc::new(SimBackend::new(1.0).with_history());
    let app = spawn_app_with_backend(sim.clone(), |_| {}).await;
    let id = app.create_task("campaign").await;
    app.update_task(
        id,
        json!({"max_caps": CAPS, "max_concurrency": 200, "calling_time": 30}),
    )
    .await;
    // Numbers ending in 3 answer after 0.5 s and hang up 1 s later.
    let numbers: Vec<String> = (0..CAPS * 30).map(|n| format!("1{n:06}3")).collect();
    app.import(id, &numbers).await;

    let flood_seconds = 10;
    let flood_started = Instant::now();
    let flooders: Vec<_> = (0..32)
        .map(|_| {
            let url = app.url("/api/sessions");
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let (mut answered, mut throttled) = (0, 0);
                while flood_started.elapsed() < Duration::from_secs(flood_seconds) {
                    let reply = client
                        .post(&url)
                        .json(&json!({"login": "admin", "password": "wrong-password"}))
                        .send()
                        .await;
                    if let Ok(reply) = reply {
                        answered += 1;
                        if reply.status() == 429 {
                            throttled += 1;
                        }
                    }
                }
                (answered, throttled)
            })
        })
        .collect();
    // Let the flood build up, then start the campaign in the middle of it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    app.start(&[id]).await;
    let mut health_worst = Duration::ZERO;
    while flood_started.elapsed() < Duration::from_secs(flood_seconds) {
        let asked = Instant::now();
        let reply = app.client.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(reply.status(), 200);
        health_worst = health_worst.max(asked.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (mut answered, mut throttled) = (0, 0);
    for flooder in flooders {
        let (a, t) = flooder.await.unwrap();
        answered += a;
        throttled += t;
    }
    let flood_ended = Instant::now();

    // The starts made while the flood went on, after the first second of dialing.
    let calls = sim.calls();
    let starts: Vec<Instant> = calls
        .iter()
        .filter(|c| c.task_id == id)
        .map(|c| c.started)
        .collect();
    let first = *starts.iter().min().expect("calls were placed");
    let measured_from = first + Duration::from_secs(1);
    let in_flood = starts
        .iter()
        .filter(|s| **s >= measured_from && **s < flood_ended)
        .count();
    let seconds = flood_ended.duration_since(measured_from).as_secs_f64();
    let achieved = in_flood as f64 / seconds;
    println!(
        "login flood: {answered} answers ({throttled} throttled); campaign {achieved:.2} CAPS (asked {CAPS}); worst /healthz {health_worst:?}"
    );
    assert!(
        throttled > 0,
        "a login flood from one address is throttled (429)"
    );
    assert!(
        achieved >= CAPS as f64 * 0.9,
        "the campaign kept its pace during the flood: {achieved:.2} CAPS of {CAPS}"
    );
    // A correct login works again once the flood has passed and the throttle's wait is over.
    poll(
        Duration::from_secs(120),
        "a login after the flood",
        || async {
            let reply = app
                .client
                .post(app.url("/api/sessions"))
                .json(&json!({"login": "admin", "password": ADMIN_PASSWORD}))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            match reply.status().as_u16() {
                200 => Ok(()),
                429 => {
                    let wait: u64 = reply
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok()?.parse().ok())
                        .expect("a 429 says when to retry");
                    tokio::time::sleep(Duration::from_secs(wait.min(60))).await;
                    Err(format!("429, retry after {wait} s"))
                }
                other => Err(format!("status {other}")),
            }
        },
    )
    .await;
}
