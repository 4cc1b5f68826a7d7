//! Hostile input with a token: control characters, absurd values, repeated ids, oversized bodies,
//! and a back end that makes the task's runner fail. Each gets a clear answer and costs a bounded
//! amount.

mod common;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::*;
use outcall::telephony::{CallHandle, CallRequest, Telephony};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TASKS: &str = "/api/out_call_tasks";

#[tokio::test]
async fn control_characters_are_refused_in_every_text_field() {
    let app = spawn_app().await;
    let id = app.create_task("t").await;
    let before = app.task(id).await;
    let fields = [
        "group_name",
        "description",
        "cid_number",
        "cid_name",
        "context",
        "dest_context",
        "group_confirm_file",
        "data",
    ];
    for field in fields {
        for bad in [
            "1000\r\nP-Asserted-Identity: <sip:evil@x>",
            "a\nb",
            "a\u{0}b",
            "a\rb",
        ] {
            let reply = app
                .put(&format!("{TASKS}/{id}"), json!({ field: bad }))
                .await;
            assert_error(&reply, 400, field);
            assert!(
                reply.body["message"]
                    .as_str()
                    .unwrap()
                    .contains("control characters"),
                "{field}: {}",
                reply.body
            );
        }
    }
    assert_eq!(app.task(id).await, before, "nothing changed");
    assert_error(
        &app.post(TASKS, json!({"group_name": "x\r\ny"})).await,
        400,
        "group_name",
    );
    let reply = app
        .post(
            &format!("{TASKS}/{id}/import"),
            json!({"data": [{"dest_number": "1000"}, {"dest_number": "1001", "external_id": "a\r\nb"}]}),
        )
        .await;
    assert_error(&reply, 400, "data[1].external_id");
    assert!(app.all_numbers(id).await.is_empty(), "nothing imported");
    // Non-ASCII text is fine.
    app.update_task(id, json!({"cid_name": "客服中心", "description": "第一批"}))
        .await;
    assert_eq!(app.task(id).await["cid_name"], "客服中心");
}

#[tokio::test]
async fn a_tiny_or_absurd_max_caps_is_400_and_the_floor_works() {
    let app = spawn_app().await;
    let id = app.create_task("t").await;
    for bad in [
        json!(1e-20),
        json!("1e-19"),
        json!(0.0009),
        json!(10_000.5),
        json!("1e308"),
    ] {
        let reply = app
            .put(&format!("{TASKS}/{id}"), json!({ "max_caps": bad }))
            .await;
        assert_error(&reply, 400, "max_caps");
        assert!(
            reply.body["message"].as_str().unwrap().contains("0.001"),
            "the message gives the range: {}",
            reply.body
        );
    }
    app.update_task(id, json!({"max_caps": 0.001})).await;
    assert_eq!(app.task(id).await["max_caps"], json!(0.001));
}

#[tokio::test]
async fn start_and_stop_ids_are_deduplicated_and_capped() {
    let app = spawn_app().await;
    let id = app.create_task("t").await;
    // Within the body limit, over the cap on ids.
    let many: Vec<i64> = std::iter::repeat_n(id, 20_000).collect();
    let started = Instant::now();
    let reply = app
        .put(TASKS, json!({"action": "start", "data": many}))
        .await;
    assert_error(&reply, 400, "at most 1000");
    // Over the body limit.
    let many: Vec<String> = std::iter::repeat_n(id.to_string(), 100_000).collect();
    let reply = app
        .put(TASKS, json!({"action": "start", "data": many}))
        .await;
    assert_error(&reply, 413, "limit");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused without working through the list: {:?}",
        started.elapsed()
    );
    assert_eq!(app.task(id).await["status"], "init");

    let repeated: Vec<Value> = (0..1000)
        .map(|i| {
            if i % 2 == 0 {
                json!(id)
            } else {
                json!(id.to_string())
            }
        })
        .collect();
    let reply = app
        .put(TASKS, json!({"action": "stop", "data": repeated}))
        .await;
    let changes = success_data(&reply);
    assert_eq!(changes.as_array().unwrap().len(), 1, "{changes}");
    assert_eq!(changes[0]["data_id"], id.to_string());
}

fn resident_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Sends a request with a body of `size` bytes, produced as it is written (the test holds no
/// copy), and answers the status line. The server may answer and close before it has all.
async fn stream_body(app: &TestApp, method: &str, path: &str, size: usize) -> String {
    let address = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nX-XTRA-AUTH-ID: {}\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n",
        app.token
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b' '; 64 * 1024];
    let mut sent = 0;
    let (mut reader, mut writer) = stream.into_split();
    let writing = tokio::spawn(async move {
        while sent < size {
            let n = chunk.len().min(size - sent);
            if writer.write_all(&chunk[..n]).await.is_err() {
                break; // the server answered and closed
            }
            sent += n;
        }
    });
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(60), reader.read(&mut answer))
        .await
        .expect("an answer within a minute")
        .unwrap();
    writing.abort();
    String::from_utf8_lossy(&answer[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn oversized_bodies_get_413_without_memory_growth() {
    let app = spawn_app().await;
    let id = app.create_task("t").await;
    let before = resident_kib("VmHWM:");
    for (method, path) in [
        ("PUT", format!("{TASKS}/{id}")),
        ("POST", TASKS.to_owned()),
        ("PUT", TASKS.to_owned()),
        ("POST", format!("{TASKS}/clone")),
    ] {
        let status = stream_body(&app, method, &path, 100 << 20).await;
        assert!(status.contains(" 413 "), "{method} {path}: {status}");
    }
    let growth_mib = (resident_kib("VmHWM:").saturating_sub(before)) / 1024;
    println!("peak RSS growth for four 100 MiB bodies: {growth_mib} MiB");
    assert!(growth_mib < 32, "peak RSS grew by {growth_mib} MiB");
    // The server is still fine.
    assert_eq!(app.task(id).await["status"], "init");
}

/// A back end whose every call attempt fails hard, as a bug in a back end would.
struct FailingBackend {
    attempts: Mutex<Vec<Instant>>,
}

impl Telephony for FailingBackend {
    fn name(&self) -> &'static str {
        "failing"
    }

    fn place_call(&self, _request: CallRequest) -> CallHandle {
        self.attempts.lock().unwrap().push(Instant::now());
        panic!("a back end bug");
    }
}

#[tokio::test]
async fn a_failing_runner_backs_off_then_its_task_is_stopped() {
    let backend = Arc::new(FailingBackend {
        attempts: Mutex::default(),
    });
    let app = spawn_app_with_backend(backend.clone(), |_| {}).await;
    let id = app.create_running_task("t", 20).await;
    poll(Duration::from_secs(60), "the task stopped", || async {
        let task = app.task(id).await;
        if task["status"] == "stop" {
            Ok(())
        } else {
            Err(format!("{}", task["status"]))
        }
    })
    .await;
    let attempts = backend.attempts.lock().unwrap().clone();
    assert_eq!(
        attempts.len(),
        outcall::dialer::RUNNER_MAX_FAILURES as usize,
        "one attempt per runner, then the task stops"
    );
    let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    println!("gaps between failing runners: {gaps:?}");
    // The k-th replacement waits at least 0.5 s doubled k-1 times. The supervisor notices a
    // failure and starts a replacement at its half-second passes, so each gap may be up to about
    // a second longer than its wait: compare each with its own least wait, not with its
    // neighbour (0.5 s + a late pass can equal 1 s + an early one).
    for (k, gap) in gaps.iter().enumerate() {
        let least = Duration::from_millis(500) * (1 << k);
        assert!(*gap >= least, "wait {k} is at least {least:?}: {gaps:?}");
    }
    assert!(
        gaps[gaps.len() - 1] > gaps[0] * 2,
        "the waits grow: {gaps:?}"
    );
}

#[tokio::test]
async fn the_page_and_the_api_carry_security_headers() {
    let app = spawn_app().await;
    for path in ["/", "/index.html", "/api/out_call_tasks", "/healthz"] {
        let reply = app
            .client
            .get(app.url(path))
            .header("X-XTRA-AUTH-ID", &app.token)
            .header("Origin", "http://evil.example")
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200, "{path}");
        let headers = reply.headers();
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let policy = header("content-security-policy");
        assert!(policy.contains("default-src 'self'"), "{path}: {policy:?}");
        assert!(
            policy.contains("frame-ancestors 'none'"),
            "{path}: {policy:?}"
        );
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
        assert!(
            headers.get("access-control-allow-origin").is_none(),
            "{path}: no CORS"
        );
    }
}
