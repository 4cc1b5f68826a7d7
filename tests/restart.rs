//! The real binary, killed and started again on the same data directory: every task, setting and
//! number is still there, unchanged.

mod common;

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{
    assert_fresh_number, assert_get_task_shape, assert_list_task_shape, assert_number_shape,
    list_data, phone_numbers, ADMIN_PASSWORD, SLOW_CAPS,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const TASKS: &str = "/api/out_call_tasks";
const READY_WITHIN: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(50);

/// A running `outcall` process; killed when dropped, so that a failed assertion leaves nothing
/// behind.
struct Server {
    child: Child,
    log: PathBuf,
    base: String,
    client: reqwest::Client,
    token: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    listener.local_addr().unwrap().port()
}

impl Server {
    /// Starts the binary on a free port and waits (bounded) until it answers `/healthz`.
    async fn start(data_dir: &Path, log: PathBuf) -> Server {
        let port = free_port();
        let log_file = std::fs::File::create(&log).expect("a log file");
        let child = Command::new(env!("CARGO_BIN_EXE_outcall"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data_dir)
            // Simulated calls last milliseconds; the pace of a task is not scaled.
            .arg("--sim-time-scale")
            .arg("0.01")
            .env("OUTCALL_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("OUTCALL_TZ", "UTC")
            .env("OUTCALL_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("the outcall binary starts");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let mut server = Server {
            child,
            log,
            base: format!("http://127.0.0.1:{port}"),
            client,
            token: String::new(),
        };
        server.wait_until_healthy().await;
        server.token = server.log_in().await;
        server
    }

    async fn wait_until_healthy(&mut self) {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(status) = self.child.try_wait().expect("the child's status") {
                panic!(
                    "outcall exited with {status} before it was ready:\n{}",
                    self.log_text()
                );
            }
            if let Ok(response) = self
                .client
                .get(format!("{}/healthz", self.base))
                .send()
                .await
            {
                if response.status() == StatusCode::OK {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "outcall was not ready within {READY_WITHIN:?}:\n{}",
                self.log_text()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the process the hard way (SIGKILL): no shutdown code runs.
    fn kill(mut self) {
        self.child.kill().expect("killing outcall");
        self.child.wait().expect("reaping outcall");
    }

    async fn log_in(&self) -> String {
        let (status, body) = self
            .send(
                Method::POST,
                "/api/sessions",
                Some(json!({"login": "admin", "password": ADMIN_PASSWORD})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["token"].as_str().expect("a token").to_owned()
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("X-XTRA-AUTH-ID", &self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("outcall answers");
        let status = response.status();
        let body =
            serde_json::from_slice(&response.bytes().await.expect("a body")).unwrap_or(Value::Null);
        (status, body)
    }

    /// A successful request's JSON body.
    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, reply) = self.send(method.clone(), path, body.clone()).await;
        assert_eq!(status, StatusCode::OK, "{method} {path} {body:?}: {reply}");
        reply
    }

    async fn get(&self, path: &str) -> Value {
        self.ok(Method::GET, path, None).await
    }

    async fn create(&self, name: &str, settings: Value) -> i64 {
        let mut body = settings;
        body["group_name"] = json!(name);
        self.ok(Method::POST, TASKS, Some(body)).await["data"]
            .as_i64()
            .expect("an id")
    }

    async fn import(&self, id: i64, rows: Vec<Value>) {
        self.ok(
            Method::POST,
            &format!("{TASKS}/{id}/import"),
            Some(json!({ "data": rows })),
        )
        .await;
    }

    async fn start_stop(&self, action: &str, id: i64) {
        self.ok(
            Method::PUT,
            TASKS,
            Some(json!({"action": action, "data": [id.to_string()]})),
        )
        .await;
    }

    async fn numbers(&self, id: i64) -> Vec<Value> {
        list_data(
            &self
                .get(&format!("{TASKS}/{id}/numbers?perPage=10000"))
                .await,
        )
    }

    /// Waits (bounded) until no call is alive, so that what is stored no longer moves.
    async fn wait_for_calls_to_end(&self, ids: &[i64]) {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let mut calling = 0;
            for id in ids {
                calling += self
                    .numbers(*id)
                    .await
                    .iter()
                    .filter(|n| n["call_status"] == "calling")
                    .count();
            }
            if calling == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{calling} calls still alive after {READY_WITHIN:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Everything the API shows of the live tasks.
#[derive(Debug, PartialEq)]
struct Snapshot {
    list: Vec<Value>,
    tasks: Vec<Value>,
    numbers: Vec<Vec<Value>>,
    downloads: Vec<Value>,
}

async fn snapshot(server: &Server, ids: &[i64]) -> Snapshot {
    let list = list_data(&server.get(&format!("{TASKS}?perPage=10000")).await);
    list.iter().for_each(assert_list_task_shape);
    let mut snapshot = Snapshot {
        list,
        tasks: Vec::new(),
        numbers: Vec::new(),
        downloads: Vec::new(),
    };
    for id in ids {
        let task = server.get(&format!("{TASKS}/{id}")).await;
        assert_get_task_shape(&task);
        snapshot.tasks.push(task);
        let numbers = server.numbers(*id).await;
        numbers.iter().for_each(assert_number_shape);
        snapshot.numbers.push(numbers);
        snapshot
            .downloads
            .push(server.get(&format!("{TASKS}/{id}/download")).await);
    }
    snapshot
}

fn rows(first: u64, n: usize) -> Vec<Value> {
    phone_numbers(first, n)
        .into_iter()
        .enumerate()
        .map(
            |(i, number)| json!({"dest_number": number, "external_id": format!("ext-{first}-{i}")}),
        )
        .collect()
}

/// The fields of a number that nothing but an import writes.
fn identity(number: &Value) -> Value {
    json!([
        number["id"],
        number["dest_number"],
        number["external_id"],
        number["group_id"],
        number["created_at"]
    ])
}

#[tokio::test]
async fn a_killed_server_comes_back_with_everything() {
    let data_dir = tempfile::tempdir().expect("a data directory");
    let logs = tempfile::tempdir().expect("a log directory");
    let server = Server::start(data_dir.path(), logs.path().join("first.log")).await;

    let configured = server
        .create(
            "configured",
            json!({
                "description": "全部设置", "cid_number": "01088886666", "cid_name": "张三", "context": "context-2",
                "dest_context": "trunk-a", "calling_time": 45, "max_caps": 0.5, "max_concurrency": 7,
                "task_start_time": "2099-01-02 03:04:05", "auto_dial": 1, "disable_ring_back": 0,
                "auto_record": 1, "group_confirm_key": "#", "group_confirm_read_timeout": 5,
                "group_confirm_file": "{\"media_id\":205}", "action": "playback",
                "data": "{\"media_id\":205,\"media_path\":\"phrase:welcome_short@xui\"}"
            }),
        )
        .await;
    server.import(configured, rows(0, 5)).await;
    let plain = server.create("plain", json!({})).await;
    let running = server
        .create(
            "running",
            json!({"max_caps": SLOW_CAPS, "action": "transfer", "data": "1001"}),
        )
        .await;
    server.import(running, rows(100, 4)).await;
    server.start_stop("start", running).await;
    let stopped = server
        .create("stopped", json!({"max_caps": SLOW_CAPS}))
        .await;
    server.import(stopped, rows(200, 3)).await;
    server.start_stop("start", stopped).await;
    server.start_stop("stop", stopped).await;
    let cloned = server
        .ok(
            Method::POST,
            &format!("{TASKS}/clone"),
            Some(json!({"group_name": "cloned", "is_clone_numbers": true, "id": configured})),
        )
        .await["data"]
        .as_i64()
        .expect("an id");
    let deleted = server.create("deleted", json!({})).await;
    server.import(deleted, rows(300, 2)).await;
    server
        .ok(Method::DELETE, &format!("{TASKS}/{deleted}"), None)
        .await;

    let ids = [configured, plain, running, stopped, cloned];
    server.wait_for_calls_to_end(&ids).await;
    let before = snapshot(&server, &ids).await;
    assert_eq!(before.list.len(), ids.len());
    assert_eq!(before.tasks[2]["status"], "running");
    assert_eq!(before.numbers[0].len(), 5);
    before.numbers[0]
        .iter()
        .for_each(|n| assert_fresh_number(n, configured));
    server.kill();

    let server = Server::start(data_dir.path(), logs.path().join("second.log")).await;
    let after = snapshot(&server, &ids).await;

    // Every task but the running one is exactly as it was, by id, in the list, its numbers and
    // its download.
    for (index, id) in ids.iter().enumerate() {
        if *id == running {
            continue;
        }
        assert_eq!(after.tasks[index], before.tasks[index], "task {id}");
        assert_eq!(
            after.numbers[index], before.numbers[index],
            "the numbers of task {id}"
        );
        assert_eq!(
            after.downloads[index], before.downloads[index],
            "the download of task {id}"
        );
        let listed = |snapshot: &Snapshot| {
            snapshot
                .list
                .iter()
                .find(|t| t["id"] == id.to_string())
                .cloned()
        };
        assert_eq!(listed(&after), listed(&before), "task {id} in the list");
    }
    assert_eq!(
        after.list.len(),
        before.list.len(),
        "no task appeared or vanished"
    );

    // The running task resumes: its settings are as they were and it is still running. Its dialer
    // may place the next call at once, so only what a call never changes is compared for its
    // numbers; a number dialed before the kill is exactly as it was (never dialed again).
    let index = 2;
    let mut task_before = before.tasks[index].clone();
    let mut task_after = after.tasks[index].clone();
    for volatile in ["done_total", "updated_at"] {
        task_before.as_object_mut().unwrap().remove(volatile);
        task_after.as_object_mut().unwrap().remove(volatile);
    }
    assert_eq!(task_after, task_before, "the running task");
    assert_eq!(after.tasks[index]["status"], "running");
    let (numbers_before, numbers_after) = (&before.numbers[index], &after.numbers[index]);
    assert_eq!(
        numbers_after.iter().map(identity).collect::<Vec<_>>(),
        numbers_before.iter().map(identity).collect::<Vec<_>>()
    );
    for (old, new) in numbers_before.iter().zip(numbers_after) {
        if old["outbound_call"] == "0" {
            assert_eq!(new, old, "a number dialed before the kill is unchanged");
        }
    }

    // The deleted task stays deleted, and new ids follow the old ones.
    let (status, _) = server
        .send(Method::GET, &format!("{TASKS}/{deleted}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let newer = server.create("after-restart", json!({})).await;
    assert!(
        newer > deleted,
        "ids are not reused: {newer} after {deleted}"
    );
}
