//! What every test binary shares (each compiles all of it, hence the `dead_code` allowance):
//!
//! - this file: the application started in-process (`spawn_app*`, `TestApp`), `poll`, test
//!   numbers and the sim's expected outcomes;
//! - `http.rs`: `Api`, the one HTTP client (in-process apps and processes alike), `Reply`;
//! - `shapes.rs`: the vendor's field lists and the envelope / shape assertions;
//! - `db.rs`: rows read straight from the SQLite file, and the sim's call log;
//! - `process.rs`: the real binary as a process (`Outcall` builder, `Server`);
//! - `sipp.rs`: sipp peers and what the SIP tests share;
//! - `esl_peer.rs`: a scripted FreeSWITCH event socket replaying the wire captures of
//!   `tests/fixtures/esl/`;
//! - `freeswitch.rs`: a real FreeSWITCH for the live suite (ours, or `OUTCALL_TEST_FREESWITCH`).
#![allow(dead_code, unused_imports)]

pub mod db;
pub mod esl_peer;
pub mod freeswitch;
pub mod http;
pub mod process;
pub mod shapes;
pub mod sipp;

use std::time::Duration;

pub use http::{success_array, success_data, Api, RawReply, Reply};
use outcall::{
    config::Config,
    startup::{Application, Stopper},
    telephony::{
        sim::expected_outcome, AfterAnswer, CallSettings, Confirm, MediaRef,
        DEFAULT_CONFIRM_TIMEOUT,
    },
};
pub use shapes::*;
use tempfile::TempDir;

pub const ADMIN_PASSWORD: &str = "test-password";

/// The application started in-process on a random loopback port, with its own data directory;
/// its HTTP helpers are those of `Api` (`TestApp` derefs to it).
pub struct TestApp {
    pub api: Api,
    pub data_dir: TempDir,
    pub stopper: Stopper,
}

impl std::ops::Deref for TestApp {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl std::ops::DerefMut for TestApp {
    fn deref_mut(&mut self) -> &mut Api {
        &mut self.api
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like `spawn_app`, with changes to the test configuration.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    start_logged_in(None, adjust).await
}

/// Like `spawn_app_with`, but logs nobody in: `token` is empty. For tests that change the admin
/// password (the configuration starts with `ADMIN_PASSWORD`, as in `spawn_app`).
pub async fn spawn_app_without_login(adjust: impl FnOnce(&mut Config)) -> TestApp {
    start(None, adjust).await
}

/// Like `spawn_app_with`, with a telephony back end made by the test (e.g. a
/// `SimBackend` it keeps an `Arc` of, to read `calls()`).
pub async fn spawn_app_with_backend(
    backend: std::sync::Arc<dyn outcall::telephony::Telephony>,
    adjust: impl FnOnce(&mut Config),
) -> TestApp {
    start_logged_in(Some(backend), adjust).await
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
        api: Api::new(base, reqwest::Client::new()),
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

impl TestApp {
    pub fn database_path(&self) -> std::path::PathBuf {
        self.data_dir.path().join("outcall.db")
    }

    /// A connection to the application's SQLite file, as an operator would open it.
    pub fn db(&self) -> outcall::db::rusqlite::Connection {
        db::open(&self.database_path())
    }
}

/// A prompt reference the sim plays (it only needs a playback action to keep answered calls up).
pub const MEDIA: &str = r#"{"media_id":205,"media_path":"phrase:welcome_short@xui","media_type":"SYSTEM","media_name":"welcome_short"}"#;

/// Starts a slow campaign on a real-time sim (`time_scale` 1.0): `count` numbers
/// `{prefix}NNN2`, each answered after 1 s and hung up 20 s later, at most 5 calls a second and
/// 30 at once. Its task id.
pub async fn start_slow_campaign(api: &Api, prefix: &str, count: usize) -> i64 {
    let numbers: Vec<String> = (0..count).map(|n| format!("{prefix}{n:03}2")).collect();
    api.start_campaign(
        "slow",
        serde_json::json!({"max_caps": 5, "max_concurrency": 30, "calling_time": 10,
               "action": "playback", "data": MEDIA}),
        &numbers,
    )
    .await
}

/// `n` distinct dialable numbers starting at `first`.
pub fn phone_numbers(first: u64, n: usize) -> Vec<String> {
    (0..n as u64)
        .map(|i| format!("1380000{:04}", first + i))
        .collect()
}

/// Calls `probe` every 25 ms until it answers `Ok`; panics after `timeout` with `what` and the
/// last `Err` (a description of what was seen).
pub async fn poll<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> T
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
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A playback task ("prompt.wav") that rings for `calling_time`, with confirm key "1" and the
/// default wait when `confirm_key`: the sim's own table says what it does to `number`.
fn sim_settings(calling_time: Duration, confirm_key: bool) -> CallSettings {
    CallSettings {
        task_id: 1,
        context: String::new(),
        dest_context: String::new(),
        cid_number: String::new(),
        cid_name: String::new(),
        calling_time,
        confirm: confirm_key.then(|| Confirm {
            key: "1".into(),
            timeout: DEFAULT_CONFIRM_TIMEOUT,
            prompt: None,
        }),
        action: AfterAnswer::Playback(MediaRef::parse("prompt.wav").unwrap()),
        auto_record: false,
        disable_ring_back: false,
    }
}

/// What the sim's table says of a number, for a task whose action is `playback`, calling_time
/// long enough for every callee that answers, and optionally confirm key "1" with FreeSWITCH's
/// default 5 s wait: (cause, dtmf, answered).
pub fn sim_outcome(number: &str, confirm_key: bool) -> (&'static str, String, bool) {
    let expected = expected_outcome(number, &sim_settings(Duration::from_secs(30), confirm_key));
    (expected.cause.as_str(), expected.dtmf, expected.answered)
}

/// The sim's cause for `number` in a playback task without a confirm key that rings for
/// `calling_time` seconds (the sim's time scale applies to both sides alike).
pub fn sim_cause(number: &str, calling_time: u64) -> &'static str {
    expected_outcome(
        number,
        &sim_settings(Duration::from_secs(calling_time), false),
    )
    .cause
    .as_str()
}
