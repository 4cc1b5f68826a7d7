//! The one HTTP client of the tests: `Api` talks to an outcall, in-process (`TestApp` derefs to
//! it) or a process (`process::Server::connect`), with the admin's token.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::{assert_keys, list_data, phone_numbers, poll, SLOW_CAPS};

/// A client of one outcall: its base URL and a token (empty when nobody is logged in).
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
    /// A live token of `admin`, sent by the helpers below.
    pub token: String,
}

impl Api {
    /// A client of `base` with nobody logged in.
    pub fn new(base: String, client: reqwest::Client) -> Api {
        Api {
            base,
            client,
            token: String::new(),
        }
    }
}

/// A response's status and JSON body (`Value::Null` when the body is not JSON).
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl Api {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// `POST /api/sessions` with a JSON login, no token sent; answers the reply as it is.
    pub async fn log_in_reply(&self, login: &str, password: &str) -> Reply {
        self.send_with_token(
            Method::POST,
            "/api/sessions",
            Some(serde_json::json!({"login": login, "password": password})),
            None,
        )
        .await
    }

    /// Logs in, asserting 200; answers the token.
    pub async fn log_in(&self, login: &str, password: &str) -> String {
        let reply = self.log_in_reply(login, password).await;
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
}

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

impl Api {
    /// `GET /api/out_call_tasks/{id}/download{query}` with the token, its body not yet read.
    pub async fn download(&self, id: i64, query: &str) -> reqwest::Response {
        self.client
            .get(self.url(&format!("/api/out_call_tasks/{id}/download{query}")))
            .header("X-XTRA-AUTH-ID", &self.token)
            .send()
            .await
            .expect("the server answers")
    }
}

impl Api {
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

    /// Posts a hand-built `multipart/form-data` body (fields separated by `boundary`) with the
    /// admin token.
    pub async fn post_multipart(&self, path: &str, boundary: &str, body: Vec<u8>) -> Reply {
        let token = self.token.clone();
        let content_type = format!("multipart/form-data; boundary={boundary}");
        let raw = self
            .send_raw(
                Method::POST,
                path,
                &[("X-XTRA-AUTH-ID", &token), ("Content-Type", &content_type)],
                Some(body),
            )
            .await;
        Reply {
            status: raw.status,
            body: raw.json(),
        }
    }

    /// `POST /api/media_files` with a hand-built multipart body: the field `name` and the WAV
    /// `file` called `file_name`.
    pub async fn upload_media_reply(&self, name: &str, file_name: &str, wav: &[u8]) -> Reply {
        let boundary = "----outcall-test-boundary-7MA4YWxkTrZu0gW";
        let mut body = Vec::new();
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\n{name}\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; \
                 filename=\"{file_name}\"\r\nContent-Type: audio/wav\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(wav);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        self.post_multipart("/api/media_files", boundary, body)
            .await
    }

    /// `<name>.wav` uploaded as media `name`: answers the media object (the upload succeeds).
    pub async fn upload_media(&self, name: &str, wav: &[u8]) -> Value {
        success_data(
            &self
                .upload_media_reply(name, &format!("{name}.wav"), wav)
                .await,
        )
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

    /// Imports rows as given, asserting success and that every row was added (none a duplicate);
    /// answers the counts `{"imported","duplicates","dnc"}`.
    pub async fn import_rows(&self, id: i64, rows: Vec<Value>) -> Value {
        let count = rows.len();
        let counts = self.import_counts(id, rows).await;
        assert_eq!(counts["imported"], count, "import into {id}: {counts}");
        counts
    }

    /// Imports rows as given, asserting success; answers the counts of the answer's `data`
    /// string, `{"imported":N,"duplicates":D,"dnc":K}` (checked to be exactly those three
    /// numbers, adding up to the rows sent).
    pub async fn import_counts(&self, id: i64, rows: Vec<Value>) -> Value {
        let count = rows.len();
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
            (&reply.body["code"], &reply.body["message"]),
            (&serde_json::json!(200), &serde_json::json!("success")),
            "{}",
            reply.body
        );
        let text = reply.body["data"]
            .as_str()
            .unwrap_or_else(|| panic!("data is a string: {}", reply.body));
        let counts: Value = serde_json::from_str(text).expect("data is a JSON object");
        let keys: Vec<&str> = counts
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys.len(), 3, "{text}");
        for key in ["imported", "duplicates", "dnc"] {
            assert!(counts[key].is_u64(), "{key} in {text}");
        }
        assert_eq!(
            counts["imported"].as_u64().unwrap() + counts["duplicates"].as_u64().unwrap(),
            count as u64,
            "every row is imported or a duplicate: {text}"
        );
        assert!(
            counts["dnc"].as_u64() <= counts["imported"].as_u64(),
            "{text}"
        );
        assert!(
            text.starts_with("{\"imported\":") && text.contains(",\"duplicates\":"),
            "the answer's order: {text}"
        );
        counts
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

    /// Waits at most `timeout` until task `id` is `done` with every number `done`; answers the
    /// numbers. On a timeout, panics with them and what `report` says.
    pub async fn done_numbers(
        &self,
        id: i64,
        timeout: std::time::Duration,
        report: impl Fn() -> String,
    ) -> Vec<Value> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let task = self.task(id).await;
            let numbers = self.all_numbers(id).await;
            if task["status"] == "done" && numbers.iter().all(|n| n["call_status"] == "done") {
                return numbers;
            }
            if std::time::Instant::now() >= deadline {
                panic!(
                    "task {id} not done after {timeout:?}: task {task}\nnumbers {}\n{}",
                    Value::Array(numbers),
                    report()
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// All numbers of a task as its numbers list shows them.
    pub async fn all_numbers(&self, id: i64) -> Vec<Value> {
        self.list_all(&format!("/api/out_call_tasks/{id}/numbers"))
            .await
    }
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

pub fn success_array(reply: Reply) -> Vec<Value> {
    success_data(&reply)
        .as_array()
        .unwrap_or_else(|| panic!("data is an array: {}", reply.body))
        .clone()
}
// ---------------------------------------------------------------------------------------------
// Requests that must succeed, answering the JSON body (the process tests' style)
// ---------------------------------------------------------------------------------------------

impl Api {
    /// A request with the admin token, asserting 200; answers the JSON body.
    pub async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let reply = self.send(method.clone(), path, body.clone()).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{method} {path} {body:?}: {}",
            reply.body
        );
        reply.body
    }

    /// `GET path`, asserting 200; answers the JSON body.
    pub async fn ok_get(&self, path: &str) -> Value {
        self.ok(Method::GET, path, None).await
    }

    /// `GET /healthz`: its status and body.
    pub async fn health(&self) -> (u16, Value) {
        let reply = self.get("/healthz").await;
        (reply.status.as_u16(), reply.body)
    }

    /// A task named `name` with `settings` (any task fields) and `numbers`, started; answers its
    /// id.
    pub async fn start_campaign(&self, name: &str, settings: Value, numbers: &[String]) -> i64 {
        let mut body = settings;
        body["group_name"] = json!(name);
        body["description"] = json!("test");
        let id = self
            .ok(Method::POST, "/api/out_call_tasks", Some(body))
            .await["data"]
            .as_i64()
            .expect("the new task's id");
        self.import(id, numbers).await;
        let started = self.start(&[id]).await;
        assert_eq!(started[0]["status"], "running", "{started:?}");
        id
    }

    /// Waits (bounded) for the task to be done.
    pub async fn wait_done(&self, id: i64, timeout: Duration) {
        poll(timeout, &format!("task {id} to be done"), || async {
            let task = self.ok_get(&format!("/api/out_call_tasks/{id}")).await;
            if task["status"] == "done" {
                Ok(())
            } else {
                Err(format!("{} {}", task["status"], task["done_total"]))
            }
        })
        .await;
    }

    /// How many numbers of the task are done, from its `done_total`.
    pub async fn done_count(&self, id: i64) -> usize {
        let task = self.ok_get(&format!("/api/out_call_tasks/{id}")).await;
        task["done_total"]
            .as_str()
            .and_then(|t| t.split('/').next())
            .and_then(|d| d.parse().ok())
            .unwrap_or(0)
    }
}
