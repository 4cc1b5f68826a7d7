//! Starts the real application on a random loopback port with a temporary data directory, and
//! talks HTTP to it.
#![allow(dead_code)]

use outcall::{
    config::Config,
    startup::{Application, Stopper},
};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tempfile::TempDir;

pub const ADMIN_PASSWORD: &str = "test-password";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    /// A live token of `admin`, sent by the helpers below.
    pub token: String,
    pub data_dir: TempDir,
    pub stopper: Stopper,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like `spawn_app`, with changes to the test configuration.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    start_logged_in(None, adjust).await
}

/// Starts the application (with `backend`, else the one the configuration names); nobody is
/// logged in yet.
async fn start(
    backend: Option<std::sync::Arc<dyn outcall::telephony::Telephony>>,
    adjust: impl FnOnce(&mut Config),
) -> TestApp {
    let data_dir = tempfile::tempdir().expect("a temporary directory");
    let mut config = Config::for_data_dir(data_dir.path());
    config.admin_password = Some(ADMIN_PASSWORD.into());
    adjust(&mut config);
    let app = match backend {
        Some(backend) => Application::build_with_backend(config, backend).await,
        None => Application::build(config).await,
    }
    .expect("the application starts");
    let base = format!("http://127.0.0.1:{}", app.port());
    let stopper = app.stopper();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        base,
        client: reqwest::Client::new(),
        token: String::new(),
        data_dir,
        stopper,
    }
}

async fn start_logged_in(
    backend: Option<std::sync::Arc<dyn outcall::telephony::Telephony>>,
    adjust: impl FnOnce(&mut Config),
) -> TestApp {
    let mut app = start(backend, adjust).await;
    app.token = app.log_in("admin", ADMIN_PASSWORD).await;
    app
}

/// A response's status and JSON body (`Value::Null` when the body is not JSON).
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn log_in(&self, login: &str, password: &str) -> String {
        let reply = self
            .send_with_token(
                Method::POST,
                "/api/sessions",
                Some(serde_json::json!({"login": login, "password": password})),
                None,
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "login failed: {}", reply.body);
        reply.body["token"].as_str().expect("a token").to_owned()
    }

    /// Sends a request with an optional JSON body and the given token (none when `None`).
    pub async fn send_with_token(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> Reply {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.header("X-XTRA-AUTH-ID", token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status();
        let bytes = response.bytes().await.expect("a body");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply { status, body }
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.send_with_token(method, path, body, Some(&self.token))
            .await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(Method::POST, path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.send(Method::PUT, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, None).await
    }

    /// Creates a task and answers its id.
    pub async fn create_task(&self, name: &str) -> i64 {
        let reply = self
            .post(
                "/api/out_call_tasks",
                serde_json::json!({"group_name": name, "description": "test"}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.body["data"].as_i64().expect("the new id as a number")
    }

    pub fn database_path(&self) -> std::path::PathBuf {
        self.data_dir.path().join("outcall.db")
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers added for the REST integration tests. Nothing above this line was changed.
// ---------------------------------------------------------------------------------------------

/// `max_caps` for tasks a test starts: one call per 1000 s, so that a started task keeps numbers
/// waiting (and stays `running`) for the whole test, whatever the dialer does.
pub const SLOW_CAPS: f64 = 0.001;

/// The keys of a task in the list, as the vendor's example shows them.
pub const TASK_LIST_FIELDS: [&str; 26] = [
    "auto_record",
    "description",
    "task_end_time",
    "dest_context",
    "group_confirm_file",
    "status",
    "cid_name",
    "total",
    "done",
    "deleted_at",
    "group_confirm_read_timeout",
    "updated_at",
    "created_at",
    "id",
    "action",
    "task_start_time",
    "context",
    "max_concurrency",
    "disable_ring_back",
    "data",
    "group_name",
    "max_caps",
    "auto_dial",
    "group_confirm_key",
    "cid_number",
    "calling_time",
];

/// The keys of a task got by id, as the vendor's example shows them.
pub const TASK_GET_FIELDS: [&str; 24] = [
    "done_total",
    "id",
    "action",
    "auto_record",
    "task_start_time",
    "context",
    "task_end_time",
    "group_confirm_file",
    "description",
    "updated_at",
    "data",
    "created_at",
    "calling_time",
    "max_concurrency",
    "disable_ring_back",
    "group_name",
    "group_confirm_key",
    "auto_dial",
    "max_caps",
    "cid_name",
    "status",
    "deleted_at",
    "cid_number",
    "dest_context",
];

/// The fields of a task got by id that are JSON numbers (API.md, "Value types").
pub const TASK_GET_NUMBER_FIELDS: [&str; 7] = [
    "id",
    "calling_time",
    "max_concurrency",
    "disable_ring_back",
    "auto_dial",
    "max_caps",
    "auto_record",
];

/// The keys of a number in a task's numbers list; all strings. The vendor's fifteen, plus
/// `sip_code` (the SIP final code behind `cause`) and `record_path` (the call's recording).
pub const NUMBER_FIELDS: [&str; 17] = [
    "sip_code",
    "record_path",
    "id",
    "dest_number",
    "group_id",
    "external_id",
    "uuid",
    "call_status",
    "outbound_call",
    "dtmf",
    "cause",
    "call_start_time",
    "call_answer_time",
    "call_end_time",
    "created_at",
    "updated_at",
    "deleted_at",
];

pub const DOWNLOAD_HEADER: [&str; 10] = [
    "任务名称",
    "接通后动作",
    "被叫号码",
    "呼叫状态",
    "呼叫开始时间",
    "呼叫应答时间",
    "呼叫结束时间",
    "总时长",
    "计费时长",
    "挂机原因",
];

/// A response whose body is kept as text, with its headers.
pub struct RawReply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl RawReply {
    /// The body as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    pub fn content_type(&self) -> String {
        self.headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }
}

impl TestApp {
    /// Sends exactly the given headers and body bytes: no token is added.
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> RawReply {
        let mut request = self.client.request(method, self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a body");
        RawReply {
            status,
            headers,
            text,
        }
    }

    /// Sends `body` verbatim as `application/json` with the admin token.
    pub async fn send_json_text(&self, method: Method, path: &str, body: &str) -> Reply {
        let token = self.token.clone();
        let raw = self
            .send_raw(
                method,
                path,
                &[
                    ("X-XTRA-AUTH-ID", &token),
                    ("Content-Type", "application/json"),
                ],
                Some(body.as_bytes().to_vec()),
            )
            .await;
        Reply {
            status: raw.status,
            body: raw.json(),
        }
    }

    /// A task by id, asserting it is there.
    pub async fn task(&self, id: i64) -> Value {
        let reply = self.get(&format!("/api/out_call_tasks/{id}")).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "GET task {id}: {}",
            reply.body
        );
        reply.body
    }

    /// `PUT /api/out_call_tasks/{id}`, asserting success.
    pub async fn update_task(&self, id: i64, body: Value) {
        let reply = self
            .put(&format!("/api/out_call_tasks/{id}"), body.clone())
            .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "PUT task {id} {body}: {}",
            reply.body
        );
        assert_eq!(
            reply.body["data"],
            Value::String(id.to_string()),
            "{}",
            reply.body
        );
    }

    /// Imports numbers (external ids empty), asserting success.
    pub async fn import(&self, id: i64, numbers: &[String]) {
        let rows: Vec<Value> = numbers
            .iter()
            .map(|n| serde_json::json!({"dest_number": n, "external_id": ""}))
            .collect();
        self.import_rows(id, rows).await;
    }

    /// Imports rows as given, asserting success.
    pub async fn import_rows(&self, id: i64, rows: Vec<Value>) {
        let reply = self
            .post(
                &format!("/api/out_call_tasks/{id}/import"),
                serde_json::json!({ "data": rows }),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "import into {id}: {}",
            reply.body
        );
        assert_eq!(
            reply.body,
            serde_json::json!({"code": 200, "message": "success", "data": "{}"})
        );
    }

    /// `PUT /api/out_call_tasks` with `action` and the ids as strings; answers the reply.
    pub async fn start_stop(&self, action: &str, ids: &[i64]) -> Reply {
        let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
        self.put(
            "/api/out_call_tasks",
            serde_json::json!({"action": action, "data": ids}),
        )
        .await
    }

    /// Starts tasks, asserting success; answers the per-task items.
    pub async fn start(&self, ids: &[i64]) -> Vec<Value> {
        success_array(self.start_stop("start", ids).await)
    }

    /// Stops tasks, asserting success; answers the per-task items.
    pub async fn stop(&self, ids: &[i64]) -> Vec<Value> {
        success_array(self.start_stop("stop", ids).await)
    }

    /// A task that is `running` with `numbers` numbers, most of them still waiting.
    pub async fn create_running_task(&self, name: &str, numbers: usize) -> i64 {
        let id = self.create_task(name).await;
        self.update_task(id, serde_json::json!({"max_caps": SLOW_CAPS}))
            .await;
        self.import(id, &phone_numbers(1000, numbers)).await;
        let started = self.start(&[id]).await;
        assert_eq!(started[0]["status"], "running", "{started:?}");
        id
    }

    /// Every page of a list, concatenated (checks each page's envelope on the way).
    pub async fn list_all(&self, path: &str) -> Vec<Value> {
        let separator = if path.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        for page in 1.. {
            let reply = self
                .get(&format!("{path}{separator}perPage=10000&page={page}"))
                .await;
            assert_eq!(reply.status, StatusCode::OK, "GET {path}: {}", reply.body);
            let data = list_data(&reply.body);
            if data.is_empty() {
                break;
            }
            items.extend(data);
        }
        items
    }

    /// All live tasks as the list shows them.
    pub async fn all_tasks(&self) -> Vec<Value> {
        self.list_all("/api/out_call_tasks").await
    }

    /// All numbers of a task as its numbers list shows them.
    pub async fn all_numbers(&self, id: i64) -> Vec<Value> {
        self.list_all(&format!("/api/out_call_tasks/{id}/numbers"))
            .await
    }

    /// A connection to the application's SQLite file, as an operator would open it.
    pub fn db(&self) -> outcall::db::rusqlite::Connection {
        let conn = outcall::db::rusqlite::Connection::open(self.database_path())
            .expect("the database file opens");
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .expect("a busy timeout");
        conn
    }
}

/// Like `spawn_app_with`, but logs nobody in: `token` is empty. For tests that change the admin
/// password (the configuration starts with `ADMIN_PASSWORD`, as in `spawn_app`).
pub async fn spawn_app_without_login(adjust: impl FnOnce(&mut Config)) -> TestApp {
    start(None, adjust).await
}

/// `n` distinct dialable numbers starting at `first`.
pub fn phone_numbers(first: u64, n: usize) -> Vec<String> {
    (0..n as u64)
        .map(|i| format!("1380000{:04}", first + i))
        .collect()
}

/// Asserts a `{"code":200,"message":"success","data":…}` envelope and answers `data`.
pub fn success_data(reply: &Reply) -> Value {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let object = reply
        .body
        .as_object()
        .unwrap_or_else(|| panic!("an object: {}", reply.body));
    assert_keys(&reply.body, &["code", "message", "data"]);
    assert_eq!(object["code"], serde_json::json!(200), "{}", reply.body);
    assert!(object["code"].is_u64(), "code is a number: {}", reply.body);
    assert_eq!(object["message"], "success", "{}", reply.body);
    object["data"].clone()
}

fn success_array(reply: Reply) -> Vec<Value> {
    success_data(&reply)
        .as_array()
        .unwrap_or_else(|| panic!("data is an array: {}", reply.body))
        .clone()
}

/// Asserts an error reply: the status, and `{"code":<same status>,"message":"…"}` whose message
/// mentions `mentions` (case-insensitively; `""` checks nothing).
pub fn assert_error(reply: &Reply, status: u16, mentions: &str) {
    assert_eq!(
        reply.status.as_u16(),
        status,
        "expected {status}, got {}: {}",
        reply.status,
        reply.body
    );
    assert_error_envelope(reply);
    let message = reply.body["message"].as_str().unwrap_or_default();
    assert!(
        message.to_lowercase().contains(&mentions.to_lowercase()),
        "the message should mention {mentions:?}: {message:?}"
    );
}

/// Asserts a 4xx with the error envelope, whatever the exact status.
pub fn assert_client_error(reply: &Reply) {
    assert!(
        reply.status.is_client_error(),
        "expected a 4xx, got {}: {}",
        reply.status,
        reply.body
    );
    assert_error_envelope(reply);
}

fn assert_error_envelope(reply: &Reply) {
    assert_keys(&reply.body, &["code", "message"]);
    assert_eq!(
        reply.body["code"].as_u64(),
        Some(reply.status.as_u16() as u64),
        "code = status: {}",
        reply.body
    );
    let message = reply.body["message"]
        .as_str()
        .unwrap_or_else(|| panic!("a message string: {}", reply.body));
    assert!(
        !message.trim().is_empty(),
        "an empty message: {}",
        reply.body
    );
}

/// The key set of an object is exactly `keys`.
pub fn assert_keys(value: &Value, keys: &[&str]) {
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("an object: {value}"));
    let mut actual: Vec<&str> = object.keys().map(String::as_str).collect();
    let mut expected = keys.to_vec();
    actual.sort_unstable();
    expected.sort_unstable();
    assert_eq!(actual, expected, "keys of {value}");
}

/// `YYYY-MM-DD HH:MM:SS`.
pub fn is_timestamp(text: &str) -> bool {
    text.len() == 19 && chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").is_ok()
}

/// A timestamp string close to now (the test configuration's zone is UTC).
pub fn assert_recent_timestamp(value: &Value, what: &str) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is a string: {value}"));
    let time = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
        .ok()
        .filter(|_| text.len() == 19)
        .unwrap_or_else(|| panic!("{what} is a YYYY-MM-DD HH:MM:SS time: {text:?}"));
    let skew = (chrono::Utc::now().naive_utc() - time).num_seconds().abs();
    assert!(skew <= 120, "{what} {text:?} is {skew} s away from now");
}

/// A time field: `""` when unset, else a timestamp; never null.
pub fn assert_optional_timestamp(value: &Value, what: &str) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is a string, not {value}"));
    assert!(
        text.is_empty() || is_timestamp(text),
        "{what} is \"\" or YYYY-MM-DD HH:MM:SS: {text:?}"
    );
}

/// A list envelope: exactly `page`, `data`, `rowCount`, `pageCount`, the three counts numbers.
/// Answers `data`.
pub fn list_data(body: &Value) -> Vec<Value> {
    assert_keys(body, &["page", "data", "rowCount", "pageCount"]);
    for key in ["page", "rowCount", "pageCount"] {
        assert!(
            body[key].is_u64(),
            "{key} is a non-negative integer: {body}"
        );
    }
    body["data"]
        .as_array()
        .unwrap_or_else(|| panic!("data is an array: {body}"))
        .clone()
}

/// A task in the list: the vendor's keys; every value a string except `total` and `done`.
pub fn assert_list_task_shape(task: &Value) {
    assert_keys(task, &TASK_LIST_FIELDS);
    for (key, value) in task.as_object().unwrap() {
        match key.as_str() {
            "total" | "done" => assert!(value.is_u64(), "{key} is a number: {task}"),
            _ => assert!(value.is_string(), "{key} is a string: {task}"),
        }
    }
    assert_time_fields(task);
}

/// A task got by id: the vendor's keys (and optionally `group_confirm_read_timeout`, a string),
/// the seven numeric settings as numbers, every other value a string, `done_total` "done/total".
pub fn assert_get_task_shape(task: &Value) {
    let mut keys = TASK_GET_FIELDS.to_vec();
    if task.get("group_confirm_read_timeout").is_some() {
        keys.push("group_confirm_read_timeout");
    }
    assert_keys(task, &keys);
    for (key, value) in task.as_object().unwrap() {
        if TASK_GET_NUMBER_FIELDS.contains(&key.as_str()) {
            assert!(value.is_number(), "{key} is a number: {task}");
        } else {
            assert!(value.is_string(), "{key} is a string: {task}");
        }
    }
    let done_total = task["done_total"].as_str().unwrap();
    let parts: Vec<&str> = done_total.split('/').collect();
    assert!(
        parts.len() == 2
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())),
        "done_total is \"done/total\": {done_total:?}"
    );
    assert_time_fields(task);
}

fn assert_time_fields(task: &Value) {
    for key in ["created_at", "updated_at"] {
        assert!(
            is_timestamp(task[key].as_str().unwrap_or_default()),
            "{key} is a timestamp: {task}"
        );
    }
    for key in ["task_start_time", "task_end_time", "deleted_at"] {
        assert_optional_timestamp(&task[key], key);
    }
    assert_eq!(
        task["deleted_at"], "",
        "a listed task is not deleted: {task}"
    );
}

/// A number in a numbers list: exactly the vendor's keys, all strings.
pub fn assert_number_shape(number: &Value) {
    assert_keys(number, &NUMBER_FIELDS);
    for (key, value) in number.as_object().unwrap() {
        assert!(value.is_string(), "{key} is a string: {number}");
    }
    for key in ["created_at", "updated_at"] {
        assert!(
            is_timestamp(number[key].as_str().unwrap()),
            "{key} is a timestamp: {number}"
        );
    }
    for key in [
        "call_start_time",
        "call_answer_time",
        "call_end_time",
        "deleted_at",
    ] {
        assert_optional_timestamp(&number[key], key);
    }
}

/// A number as imported and never dialed.
pub fn assert_fresh_number(number: &Value, task_id: i64) {
    assert_number_shape(number);
    assert_eq!(
        number["group_id"],
        Value::String(task_id.to_string()),
        "{number}"
    );
    assert_eq!(number["call_status"], "init", "{number}");
    assert_eq!(number["outbound_call"], "1", "{number}");
    for key in [
        "uuid",
        "dtmf",
        "cause",
        "call_start_time",
        "call_answer_time",
        "call_end_time",
        "deleted_at",
        "sip_code",
        "record_path",
    ] {
        assert_eq!(number[key], "", "{key} of a fresh number: {number}");
    }
}

/// The JSON text of a value, e.g. to tell `1` from `1.0`.
pub fn json_text(value: &Value) -> String {
    serde_json::to_string(value).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Helpers added for the dialer tests (tests/dialer.rs).
// ---------------------------------------------------------------------------------------------

/// Like `spawn_app_with`, with a telephony back end made by the test (e.g. a
/// `SimBackend` it keeps an `Arc` of, to read `calls()`).
pub async fn spawn_app_with_backend(
    backend: std::sync::Arc<dyn outcall::telephony::Telephony>,
    adjust: impl FnOnce(&mut Config),
) -> TestApp {
    start_logged_in(Some(backend), adjust).await
}

/// Calls `probe` every 25 ms until it answers `Ok`; panics after `timeout` with `what` and the
/// last `Err` (a description of what was seen).
pub async fn poll<T, F, Fut>(timeout: std::time::Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(seen) => {
                if std::time::Instant::now() >= deadline {
                    panic!("timed out after {timeout:?} waiting for {what}; last seen: {seen}");
                }
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}
