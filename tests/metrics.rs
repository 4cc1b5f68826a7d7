//! `GET /metrics`: parsed as OpenMetrics (and as Prometheus text) by a real parser, with values
//! matching a sim campaign, the live gauges during a slow one, the database gauges against rows
//! put there, the HTTP histogram's route labels, and the optional bearer token.

use std::{collections::BTreeMap, time::Duration};

mod common;

use common::{
    phone_numbers, poll, sim_outcome, spawn_app_with, start_slow_campaign, TestApp, MEDIA,
};
use openmetrics_parser::{OpenMetricsValue, PrometheusValue};
use reqwest::{header, StatusCode};
use serde_json::json;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_ACCEPT: &str =
    "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1";

/// One parsed sample: its series name (counters with `_total`, histograms as `_count`) and labels.
#[derive(Debug, Clone, PartialEq)]
struct Series {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Every sample of an exposition, flattened.
#[derive(Debug)]
struct Exposition(Vec<Series>);

impl Exposition {
    /// Parses OpenMetrics text; panics (with the text) when the parser refuses it.
    fn parse(text: &str) -> Exposition {
        let parsed = openmetrics_parser::openmetrics::parse_openmetrics(text)
            .unwrap_or_else(|error| panic!("not valid OpenMetrics ({error:?}):\n{text}"));
        let mut all = Vec::new();
        for (name, family) in parsed.families {
            for sample in family.iter_samples() {
                let labels: BTreeMap<String, String> = sample
                    .get_labelset()
                    .expect("labels")
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let (name, value) = match &sample.value {
                    OpenMetricsValue::Counter(counter) => {
                        (format!("{name}_total"), counter.value.as_f64())
                    }
                    OpenMetricsValue::Gauge(value) => (name.clone(), value.as_f64()),
                    OpenMetricsValue::Histogram(histogram) => (
                        format!("{name}_count"),
                        histogram.count.expect("a histogram count") as f64,
                    ),
                    other => panic!("unexpected sample {other:?} of {name}"),
                };
                all.push(Series {
                    name,
                    labels,
                    value,
                });
            }
        }
        Exposition(all)
    }

    /// The series `name` whose labels are exactly `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.0
            .iter()
            .find(|s| s.name == name && s.labels == wanted)
            .map(|s| s.value)
    }

    /// Every series `name` with label `label` = `value`.
    fn with_label(&self, name: &str, label: &str, value: &str) -> Vec<&Series> {
        self.0
            .iter()
            .filter(|s| s.name == name && s.labels.get(label).map(String::as_str) == Some(value))
            .collect()
    }
}

async fn scrape_raw(
    app: &TestApp,
    bearer: Option<&str>,
    accept: Option<&str>,
) -> reqwest::Response {
    let mut request = app.client.get(app.url("/metrics"));
    if let Some(token) = bearer {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if let Some(accept) = accept {
        request = request.header(header::ACCEPT, accept);
    }
    request.send().await.expect("the server answers")
}

/// A scrape as Prometheus makes it (asking for OpenMetrics first), parsed.
async fn scrape(app: &TestApp) -> Exposition {
    let response = scrape_raw(app, None, Some(PROMETHEUS_ACCEPT)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, OPENMETRICS);
    Exposition::parse(&response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_campaign_is_counted_by_task_and_cause() {
    let app = spawn_app_with(|config| config.sim.time_scale = 0.01).await;
    // Last digits 0…9 twice: every sim callee.
    let numbers = phone_numbers(0, 20);
    let id = app
        .start_campaign(
            "counted",
            json!({"max_caps": 50, "max_concurrency": 20, "calling_time": 30,
                   "action": "playback", "data": MEDIA}),
            &numbers,
        )
        .await;
    app.wait_done(id, Duration::from_secs(60)).await;
    let task = id.to_string();
    let mut expected_causes: BTreeMap<String, f64> = BTreeMap::new();
    let mut expected_answered = 0.0;
    for number in &numbers {
        let (cause, _, answered) = sim_outcome(number, false);
        *expected_causes.entry(cause.to_owned()).or_default() += 1.0;
        if answered {
            expected_answered += 1.0;
        }
    }
    // A call's end is counted as its result is written; wait for the last one.
    let seen = poll(
        Duration::from_secs(10),
        "every call counted as ended",
        || async {
            let seen = scrape(&app).await;
            let ended: f64 = seen
                .with_label("outcall_calls_ended_total", "task", &task)
                .iter()
                .map(|s| s.value)
                .sum();
            let live = seen.value("outcall_live_calls", &[]);
            if ended == 20.0 && live == Some(0.0) {
                Ok(seen)
            } else {
                Err(format!("{ended} ended, live {live:?}"))
            }
        },
    )
    .await;
    assert_eq!(
        seen.value("outcall_calls_started_total", &[("task", &task)]),
        Some(20.0)
    );
    assert_eq!(
        seen.value("outcall_calls_answered_total", &[("task", &task)]),
        Some(expected_answered)
    );
    let ended: BTreeMap<String, f64> = seen
        .with_label("outcall_calls_ended_total", "task", &task)
        .iter()
        .map(|s| (s.labels["cause"].clone(), s.value))
        .collect();
    assert_eq!(ended, expected_causes);
    // The same figures as the task's own stats.
    let stats = app.ok_get(&format!("/api/out_call_tasks/{id}/stats")).await;
    assert_eq!(
        stats["data"]["answered"].as_f64(),
        Some(expected_answered),
        "{stats}"
    );
    assert_eq!(seen.value("outcall_retry_queue", &[]), Some(0.0));
    assert_eq!(seen.value("outcall_webhook_outbox", &[]), Some(0.0));

    // The HTTP histogram: the routes called above by their patterns, never by their paths.
    let requests = "outcall_http_request_duration_seconds_count";
    let by_id = seen
        .value(
            requests,
            &[
                ("route", "/api/out_call_tasks/{id}"),
                ("method", "GET"),
                ("status", "200"),
            ],
        )
        .expect("a series for GET /api/out_call_tasks/{id}");
    assert!(by_id >= 1.0, "{by_id}");
    assert!(
        seen.value(
            requests,
            &[
                ("route", "/api/out_call_tasks/{id}/import"),
                ("method", "POST"),
                ("status", "200"),
            ]
        ) == Some(1.0),
        "{seen:?}"
    );
    let unknown = app.get("/api/no/such/route/77").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let seen = scrape(&app).await;
    assert_eq!(
        seen.value(
            requests,
            &[("route", "unmatched"), ("method", "GET"), ("status", "404")]
        ),
        Some(1.0),
        "{seen:?}"
    );
    for series in seen.0.iter().filter(|s| s.name == requests) {
        let route = &series.labels["route"];
        assert!(
            route == "unmatched" || !route.chars().any(|c| c.is_ascii_digit()),
            "a raw path as a label: {series:?}"
        );
    }

    // Without an OpenMetrics Accept, the classic text format with the same values.
    let response = scrape_raw(&app, None, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    let parsed = openmetrics_parser::prometheus::parse_prometheus(&text)
        .unwrap_or_else(|error| panic!("not valid Prometheus text ({error:?}):\n{text}"));
    let started = parsed
        .families
        .get("outcall_calls_started_total")
        .unwrap_or_else(|| panic!("no outcall_calls_started_total in:\n{text}"));
    let sample = started
        .iter_samples()
        .find(|s| s.get_labelset().unwrap().get_label_value("task") == Some(task.as_str()))
        .expect("the task's series");
    match &sample.value {
        PrometheusValue::Counter(counter) => assert_eq!(counter.value.as_f64(), 20.0),
        other => panic!("not a counter: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_campaign_shows_live_calls_and_its_pace() {
    // Real time: a number ending in 2 is answered after 1 s and hangs up 20 s later.
    let app = spawn_app_with(|config| config.sim.time_scale = 1.0).await;
    let id = start_slow_campaign(&app, "1380002", 30).await;
    let task = id.to_string();
    let seen = poll(Duration::from_secs(10), "live calls and a pace", || async {
        let seen = scrape(&app).await;
        let live = seen.value("outcall_live_calls", &[]).unwrap_or(0.0);
        let caps = seen
            .value("outcall_task_caps", &[("task", &task)])
            .unwrap_or(0.0);
        if live >= 3.0 && caps > 0.0 {
            Ok(seen)
        } else {
            Err(format!("live {live}, caps {caps}"))
        }
    })
    .await;
    let caps = seen.value("outcall_task_caps", &[("task", &task)]).unwrap();
    // The pace is measured over 10 s: never above the task's 5 a second.
    assert!(caps <= 5.0, "{caps}");
    let live = seen.value("outcall_live_calls", &[]).unwrap();
    let started = seen
        .value("outcall_calls_started_total", &[("task", &task)])
        .unwrap();
    // Every live call was started; none has ended yet (they last 21 s).
    assert!(live <= started, "live {live}, started {started}");
    assert!(seen
        .with_label("outcall_calls_ended_total", "task", &task)
        .is_empty());
    app.stop(&[id]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_queue_and_the_outbox_follow_their_rows() {
    let app = spawn_app_with(|_| {}).await;
    let id = app.create_task("queued").await;
    app.import(id, &phone_numbers(0, 6)).await;
    let before = scrape(&app).await;
    assert_eq!(before.value("outcall_retry_queue", &[]), Some(0.0));
    assert_eq!(before.value("outcall_webhook_outbox", &[]), Some(0.0));
    let due = 1_900_000_000_i64;
    {
        let conn = app.db();
        let ids: Vec<i64> = conn
            .prepare("SELECT id FROM numbers WHERE group_id = ?1 ORDER BY id")
            .unwrap()
            .query_map([id], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        // Three numbers wait for a retry; a done one and a deleted one with a due time do not
        // count, nor one without a due time.
        for number in &ids[..3] {
            conn.execute(
                "UPDATE numbers SET next_attempt_at = ?2 WHERE id = ?1",
                [*number, due],
            )
            .unwrap();
        }
        conn.execute(
            "UPDATE numbers SET next_attempt_at = ?2, call_status = 'done' WHERE id = ?1",
            [ids[3], due],
        )
        .unwrap();
        conn.execute(
            "UPDATE numbers SET next_attempt_at = ?2, deleted_at = ?2 WHERE id = ?1",
            [ids[4], due],
        )
        .unwrap();
        for state in ["pending", "pending", "delivered", "failed"] {
            conn.execute(
                "INSERT INTO webhook_outbox (group_id, attempt_id, url, body, created_at,
                                             next_try_at, state)
                 VALUES (?1, 1, 'http://127.0.0.1:9/hook', '{}', ?2, ?2, ?3)",
                (id, due, state),
            )
            .unwrap();
        }
    }
    let seen = scrape(&app).await;
    assert_eq!(seen.value("outcall_retry_queue", &[]), Some(3.0));
    assert_eq!(seen.value("outcall_webhook_outbox", &[]), Some(2.0));
    {
        let conn = app.db();
        conn.execute(
            "UPDATE numbers SET next_attempt_at = NULL
             WHERE id = (SELECT min(id) FROM numbers WHERE group_id = ?1)",
            [id],
        )
        .unwrap();
        conn.execute(
            "UPDATE webhook_outbox SET state = 'delivered', delivered_at = next_try_at
             WHERE id = (SELECT min(id) FROM webhook_outbox WHERE state = 'pending')",
            [],
        )
        .unwrap();
    }
    let seen = scrape(&app).await;
    assert_eq!(seen.value("outcall_retry_queue", &[]), Some(2.0));
    assert_eq!(seen.value("outcall_webhook_outbox", &[]), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_metrics_token_only_its_bearer_may_scrape() {
    let app = spawn_app_with(|config| config.metrics_token = Some("scrape-secret".into())).await;
    for (bearer, what) in [
        (None, "no token"),
        (Some("wrong"), "a wrong token"),
        (Some("scrape-secret-and-more"), "a longer token"),
        (Some(app.token.as_str()), "the login token"),
    ] {
        let response = scrape_raw(&app, bearer, Some(PROMETHEUS_ACCEPT)).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .split(' ')
                .next(),
            Some("Bearer"),
            "{what}"
        );
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], 401, "{what}: {body}");
    }
    // The login token's own header does not open it either.
    let response = app
        .client
        .get(app.url("/metrics"))
        .header("X-XTRA-AUTH-ID", &app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // The metrics token alone, no login token: 200.
    let response = scrape_raw(&app, Some("scrape-secret"), Some(PROMETHEUS_ACCEPT)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let seen = Exposition::parse(&response.text().await.unwrap());
    assert_eq!(seen.value("outcall_live_calls", &[]), Some(0.0));
    // Refused scrapes are timed like any request.
    assert_eq!(
        seen.value(
            "outcall_http_request_duration_seconds_count",
            &[("route", "/metrics"), ("method", "GET"), ("status", "401")]
        ),
        Some(5.0),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_metrics_token_the_scrape_is_open() {
    let app = spawn_app_with(|_| {}).await;
    let response = scrape_raw(&app, None, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = scrape_raw(&app, Some("anything"), Some(PROMETHEUS_ACCEPT)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let seen = Exposition::parse(&response.text().await.unwrap());
    assert_eq!(seen.value("outcall_live_calls", &[]), Some(0.0));
}
