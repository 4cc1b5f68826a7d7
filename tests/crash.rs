//! Crash safety with the real binary: SIGKILL in the middle of a campaign, and SIGTERM with live
//! calls. The database is read directly from its file, and the sim's call log (a line appended
//! per call placed, with write(2), so it survives a SIGKILL) tells which calls were really placed.

use std::{
    collections::{HashMap, HashSet},
    fs::File,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

mod common;

use common::poll;
use outcall::db::rusqlite::{Connection, OpenFlags};
use serde_json::{json, Value};

const PASSWORD: &str = "crash-test-password";
const MEDIA: &str = r#"{"media_id":205,"media_path":"phrase:welcome_short@xui","media_type":"SYSTEM","media_name":"welcome_short"}"#;

// ---------------------------------------------------------------------------------------------
// The server process
// ---------------------------------------------------------------------------------------------

/// A running `outcall` process; killed (SIGKILL) when dropped, whatever happens. When a test
/// fails, the end of the server's log is printed.
struct Server {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!(
                "--- last lines of the server log {} ---\n{}",
                self.log.display(),
                tail.join("\n")
            );
        }
    }
}

impl Server {
    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("the server process")
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server process").id()
    }

    /// SIGKILL, and reap it.
    fn kill(&mut self) {
        let mut child = self.child.take().expect("the server process");
        child.kill().expect("SIGKILL the server");
        child.wait().expect("reap the server");
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .unwrap()
        .port()
}

fn data_dir(dir: &Path) -> PathBuf {
    dir.join("data")
}

fn call_log(dir: &Path) -> PathBuf {
    dir.join("calls.log")
}

fn database(dir: &Path) -> PathBuf {
    data_dir(dir).join("outcall.db")
}

/// Starts the binary on `dir`'s data directory and call log.
fn spawn_server(dir: &Path, scale: f64, extra: &[&str]) -> Server {
    let port = free_port();
    let log = dir.join(format!("server-{port}.log"));
    let out = File::create(&log).expect("the server log file");
    let mut command = Command::new(env!("CARGO_BIN_EXE_outcall"));
    for (name, _) in std::env::vars() {
        if name.starts_with("OUTCALL_") {
            command.env_remove(name);
        }
    }
    command
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data_dir(dir))
        .arg("--sim-time-scale")
        .arg(scale.to_string())
        .arg("--sim-call-log")
        .arg(call_log(dir))
        .args(["--tz", "UTC"])
        .args(extra)
        .env("OUTCALL_ADMIN_PASSWORD", PASSWORD)
        .env("OUTCALL_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    let child = command.spawn().expect("the outcall binary starts");
    Server {
        child: Some(child),
        port,
        log,
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    /// Waits (bounded) for the server to answer /healthz, then logs in.
    async fn connect(server: &mut Server) -> Client {
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{}", server.port);
        poll(Duration::from_secs(20), "GET /healthz", || {
            let exited = server.child().try_wait().expect("try_wait");
            let request = http.get(format!("{base}/healthz")).send();
            async move {
                if let Some(status) = exited {
                    panic!("the server exited before it was ready: {status}");
                }
                match request.await {
                    Ok(reply) if reply.status().is_success() => Ok(()),
                    Ok(reply) => Err(format!("status {}", reply.status())),
                    Err(error) => Err(error.to_string()),
                }
            }
        })
        .await;
        let reply: Value = http
            .post(format!("{base}/api/sessions"))
            .json(&json!({"login": "admin", "password": PASSWORD}))
            .send()
            .await
            .expect("log in")
            .json()
            .await
            .expect("a JSON login reply");
        let token = reply["token"]
            .as_str()
            .unwrap_or_else(|| panic!("a token: {reply}"))
            .to_owned();
        Client { http, base, token }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header("X-XTRA-AUTH-ID", &self.token);
        if let Some(body) = &body {
            request = request.json(body);
        }
        let reply = request.send().await.expect("the server answers");
        let status = reply.status();
        let body: Value = reply.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{method} {path}: {status} {body}");
        body
    }

    async fn get(&self, path: &str) -> Value {
        self.send(reqwest::Method::GET, path, None).await
    }

    /// A task with `settings` and `numbers`, started; answers its id.
    async fn start_campaign(&self, name: &str, settings: Value, numbers: &[String]) -> i64 {
        let mut body = settings;
        body["group_name"] = json!(name);
        body["description"] = json!("crash test");
        let reply = self
            .send(reqwest::Method::POST, "/api/out_call_tasks", Some(body))
            .await;
        let id = reply["data"].as_i64().expect("the new task's id");
        let rows: Vec<Value> = numbers
            .iter()
            .map(|n| json!({"dest_number": n, "external_id": ""}))
            .collect();
        self.send(
            reqwest::Method::POST,
            &format!("/api/out_call_tasks/{id}/import"),
            Some(json!({ "data": rows })),
        )
        .await;
        let reply = self
            .send(
                reqwest::Method::PUT,
                "/api/out_call_tasks",
                Some(json!({"action": "start", "data": [id.to_string()]})),
            )
            .await;
        assert_eq!(reply["data"][0]["status"], "running", "{reply}");
        id
    }

    /// Waits (bounded) for the task to be done.
    async fn wait_done(&self, id: i64, timeout: Duration) {
        poll(timeout, &format!("task {id} to be done"), || async {
            let task = self.get(&format!("/api/out_call_tasks/{id}")).await;
            if task["status"] == "done" {
                Ok(())
            } else {
                Err(format!("{} {}", task["status"], task["done_total"]))
            }
        })
        .await;
    }
}

// ---------------------------------------------------------------------------------------------
// The database and the call log, read from outside
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
struct Row {
    call_status: String,
    outbound_call: i64,
    uuid: String,
    cause: String,
    dtmf: String,
    sip_code: Option<i64>,
    call_start_time: Option<i64>,
    call_answer_time: Option<i64>,
    call_end_time: Option<i64>,
}

/// Every number of the task by dest_number, read straight from the SQLite file.
fn snapshot(dir: &Path, task_id: i64) -> HashMap<String, Row> {
    let conn = Connection::open_with_flags(database(dir), OpenFlags::SQLITE_OPEN_READ_WRITE)
        .expect("the database file opens");
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let mut statement = conn
        .prepare(
            "SELECT dest_number, call_status, outbound_call, uuid, cause, dtmf, sip_code,
                    call_start_time, call_answer_time, call_end_time
             FROM numbers WHERE group_id = ?1 ORDER BY id",
        )
        .unwrap();
    let rows = statement
        .query_map([task_id], |row| {
            Ok((
                row.get::<_, String>(0)?,
                Row {
                    call_status: row.get(1)?,
                    outbound_call: row.get(2)?,
                    uuid: row.get(3)?,
                    cause: row.get(4)?,
                    dtmf: row.get(5)?,
                    sip_code: row.get(6)?,
                    call_start_time: row.get(7)?,
                    call_answer_time: row.get(8)?,
                    call_end_time: row.get(9)?,
                },
            ))
        })
        .unwrap()
        .collect::<Result<HashMap<_, _>, _>>()
        .unwrap();
    rows
}

fn task_status(dir: &Path, task_id: i64) -> String {
    let conn = Connection::open(database(dir)).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.query_row("SELECT status FROM tasks WHERE id = ?1", [task_id], |row| {
        row.get(0)
    })
    .unwrap()
}

fn with_status<'a>(rows: &'a HashMap<String, Row>, status: &str) -> HashSet<&'a str> {
    rows.iter()
        .filter(|(_, row)| row.call_status == status)
        .map(|(number, _)| number.as_str())
        .collect()
}

/// One line of the sim's call log.
#[derive(Debug, Clone)]
struct Placed {
    unix_ms: u128,
    uuid: String,
    number: String,
}

fn read_call_log(dir: &Path) -> Vec<Placed> {
    let text = std::fs::read_to_string(call_log(dir)).unwrap_or_default();
    text.lines()
        .map(|line| {
            let parts: Vec<&str> = line.split(' ').collect();
            assert_eq!(
                parts.len(),
                3,
                "a call log line is `<ms> <uuid> <number>`: {line:?}"
            );
            Placed {
                unix_ms: parts[0].parse().expect("unix ms"),
                uuid: parts[1].to_owned(),
                number: parts[2].to_owned(),
            }
        })
        .collect()
}

/// The call log by number, asserting no number was placed twice.
fn placed_by_number(log: &[Placed]) -> HashMap<String, Placed> {
    let mut by_number = HashMap::new();
    for line in log {
        if let Some(earlier) = by_number.insert(line.number.clone(), line.clone()) {
            panic!(
                "number {} was placed twice: {earlier:?} and {line:?}",
                line.number
            );
        }
    }
    by_number
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// The cause the sim gives a number, by its last digit, for a `playback` task without a confirm
/// key (see src/telephony/sim.rs).
fn expected_cause(number: &str) -> &'static str {
    match number.bytes().last().unwrap() {
        b'0'..=b'3' | b'7' | b'8' => "NORMAL_CLEARING",
        b'4' => "USER_BUSY",
        b'5' => "NO_ANSWER",
        b'6' => "CALL_REJECTED",
        _ => "UNALLOCATED_NUMBER",
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// SIGKILL with about half the numbers done: after a restart every number ends exactly once,
/// the calls cut by the crash end with SYSTEM_SHUTDOWN and are never redialed, and the numbers
/// never dialed are dialed by the restarted process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loses_nothing_and_dials_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let numbers: Vec<String> = (10_000..10_240).map(|n: u32| n.to_string()).collect();

    let mut server = spawn_server(dir, 0.1, &[]);
    let client = Client::connect(&mut server).await;
    let id = client
        .start_campaign(
            "crash",
            json!({"max_caps": 20, "max_concurrency": 10, "calling_time": 5,
                   "action": "playback", "data": MEDIA}),
            &numbers,
        )
        .await;
    poll(Duration::from_secs(30), "half the numbers done", || async {
        let task = client.get(&format!("/api/out_call_tasks/{id}")).await;
        let done: usize = task["done_total"]
            .as_str()
            .and_then(|t| t.split('/').next())
            .and_then(|d| d.parse().ok())
            .unwrap_or(0);
        if done >= numbers.len() / 2 {
            Ok(())
        } else {
            Err(format!("done_total {}", task["done_total"]))
        }
    })
    .await;
    server.kill();
    drop(client);

    let at_kill = snapshot(dir, id);
    let log_at_kill = read_call_log(dir);
    let calling = with_status(&at_kill, "calling");
    let waiting = with_status(&at_kill, "init");
    let done = with_status(&at_kill, "done");
    assert_eq!(calling.len() + waiting.len() + done.len(), numbers.len());
    eprintln!(
        "at the kill: {} calling {} waiting {} done, {} placed",
        calling.len(),
        waiting.len(),
        done.len(),
        log_at_kill.len()
    );
    assert!(!calling.is_empty(), "calls were alive at the kill");
    assert!(
        !waiting.is_empty(),
        "numbers were still waiting at the kill"
    );
    for number in &waiting {
        assert_eq!(at_kill[*number].outbound_call, 1, "{:?}", at_kill[*number]);
    }

    let restarted_at = unix_ms();
    let mut server = spawn_server(dir, 0.1, &[]);
    let client = Client::connect(&mut server).await;
    client.wait_done(id, Duration::from_secs(40)).await;
    let after = snapshot(dir, id);
    let log = read_call_log(dir);
    let placed = placed_by_number(&log);

    for number in &numbers {
        let before = &at_kill[number];
        let now = &after[number];
        assert_eq!(
            now.call_status, "done",
            "{number} after the restart: {now:?}"
        );
        assert_eq!(now.outbound_call, 0, "{number}: {now:?}");
        assert!(!now.uuid.is_empty(), "{number}: {now:?}");
        assert!(now.call_end_time.is_some(), "{number}: {now:?}");
        match before.call_status.as_str() {
            "done" => {
                assert_eq!(now, before, "{number} was done before the kill: unchanged");
                assert_eq!(now.cause, expected_cause(number), "{number}: {now:?}");
            }
            "calling" => {
                assert_eq!(
                    now.cause, "SYSTEM_SHUTDOWN",
                    "{number} was cut by the crash: {now:?}"
                );
                assert_eq!(
                    now.uuid, before.uuid,
                    "{number} keeps its call's uuid: {now:?}"
                );
                assert_eq!(now.call_start_time, before.call_start_time, "{number}");
            }
            "init" => {
                assert_eq!(now.cause, expected_cause(number), "{number}: {now:?}");
                let line = placed
                    .get(number)
                    .unwrap_or_else(|| panic!("{number} was waiting at the kill and never dialed"));
                assert!(
                    line.unix_ms >= restarted_at,
                    "{number} was waiting at the kill, so it was dialed after the restart: {line:?}"
                );
            }
            other => panic!("{number} was {other} at the kill"),
        }
    }

    // The call log: no number twice, each line the number's final uuid, and nothing placed after
    // the restart but the numbers that were waiting.
    for line in &log {
        assert_eq!(
            after[&line.number].uuid, line.uuid,
            "the placed call is the number's recorded call: {line:?}"
        );
        if line.unix_ms >= restarted_at {
            assert!(
                waiting.contains(line.number.as_str()),
                "only waiting numbers are dialed after the restart: {line:?}"
            );
        }
    }
    for number in &numbers {
        if after[number].cause != "SYSTEM_SHUTDOWN" {
            assert!(
                placed.contains_key(number),
                "{number} ended without a call placed"
            );
        }
    }
    // A number claimed by the dialer, whose call the kill prevented, ends with SYSTEM_SHUTDOWN
    // without a call placed; the task's single runner claims one number at a time, so at most
    // one can be in that state.
    let claimed_not_placed: Vec<&&str> = calling
        .iter()
        .filter(|number| !placed.contains_key(**number))
        .collect();
    assert!(
        claimed_not_placed.len() <= 1,
        "numbers calling at the kill without a call placed: {claimed_not_placed:?}"
    );
    assert_eq!(
        log.len(),
        numbers.len() - claimed_not_placed.len(),
        "one call placed per number"
    );
    assert_eq!(task_status(dir, id), "done");
}

/// SIGTERM with calls alive: the process hangs them up with SYSTEM_SHUTDOWN after the grace
/// period and exits 0 by itself; the task stays running and resumes at the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hangs_up_after_the_grace_and_the_task_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    // Last digit 2: ring 1 s, talk 20 s; at scale 0.5 a call lasts 10.5 s.
    let numbers: Vec<String> = (0..12).map(|i| format!("7{i:02}2")).collect();

    let mut server = spawn_server(dir, 0.5, &["--shutdown-grace", "1"]);
    let client = Client::connect(&mut server).await;
    let id = client
        .start_campaign(
            "terminated",
            json!({"max_caps": 10, "max_concurrency": 4, "action": "playback", "data": MEDIA}),
            &numbers,
        )
        .await;
    let calling: HashSet<String> = poll(Duration::from_secs(10), "four calls alive", || async {
        let rows = snapshot(dir, id);
        let calling: HashSet<String> = with_status(&rows, "calling")
            .into_iter()
            .map(str::to_owned)
            .collect();
        let placed = read_call_log(dir).len();
        if calling.len() == 4 && placed == 4 {
            Ok(calling)
        } else {
            Err(format!("{} calling, {placed} placed", calling.len()))
        }
    })
    .await;
    // Let the calls be answered (after 0.5 s) before the signal.
    poll(Duration::from_secs(5), "the calls answered", || async {
        let rows = snapshot(dir, id);
        let answered = calling
            .iter()
            .filter(|n| rows[*n].call_answer_time.is_some())
            .count();
        if answered == calling.len() {
            Ok(())
        } else {
            Err(format!("{answered} answered"))
        }
    })
    .await;

    let signalled = Instant::now();
    let sent = Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -TERM: {sent}");
    let status: ExitStatus = poll(Duration::from_secs(15), "the server to exit", || {
        let exited = server.child().try_wait().expect("try_wait");
        async move { exited.ok_or_else(|| "still running".to_owned()) }
    })
    .await;
    let took = signalled.elapsed();
    server.child = None;
    drop(client);
    eprintln!("exited {took:?} after SIGTERM: {status}");
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(
        took >= Duration::from_millis(900),
        "live calls get the 1 s grace before they are hung up; the process exited after {took:?}"
    );
    assert!(
        took <= Duration::from_secs(8),
        "the process took {took:?} to exit after SIGTERM with a 1 s grace"
    );

    let after_term = snapshot(dir, id);
    assert!(
        with_status(&after_term, "calling").is_empty(),
        "no number is left calling after an orderly shutdown"
    );
    for (number, row) in &after_term {
        if calling.contains(number) {
            assert_eq!(row.call_status, "done", "{number}: {row:?}");
            assert_eq!(
                row.cause, "SYSTEM_SHUTDOWN",
                "{number} was hung up by us: {row:?}"
            );
            assert_eq!(row.outbound_call, 0, "{number}: {row:?}");
            assert!(row.call_answer_time.is_some(), "{number}: {row:?}");
            assert!(row.call_end_time.is_some(), "{number}: {row:?}");
        } else {
            assert_eq!(
                row.call_status, "init",
                "{number} is still waiting: {row:?}"
            );
            assert_eq!(row.outbound_call, 1, "{number}: {row:?}");
        }
    }
    assert_eq!(
        task_status(dir, id),
        "running",
        "a shutdown leaves the task running, to resume"
    );
    assert_eq!(read_call_log(dir).len(), 4);

    // The next start resumes the task (quick calls now) and dials only the rest.
    let mut server = spawn_server(dir, 0.01, &[]);
    let client = Client::connect(&mut server).await;
    client.wait_done(id, Duration::from_secs(20)).await;
    let after = snapshot(dir, id);
    let placed = placed_by_number(&read_call_log(dir));
    assert_eq!(placed.len(), numbers.len(), "every number placed once");
    for (number, row) in &after {
        assert_eq!(row.call_status, "done", "{number}: {row:?}");
        assert_eq!(placed[number].uuid, row.uuid, "{number}: {row:?}");
        if calling.contains(number) {
            assert_eq!(row, &after_term[number], "{number} was not redialed");
        } else {
            assert_eq!(row.cause, "NORMAL_CLEARING", "{number}: {row:?}");
        }
    }
}
