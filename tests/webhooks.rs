//! Result webhooks: campaigns on the sim back end with a `webhook_url` POST each finished call to
//! a receiver run by the test (a real HTTP server on 127.0.0.1), signed, retried with backoff on
//! the manual clock, kept across a restart, and counted in the task's stats.

mod common;

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Mutex,
    time::Duration,
};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use common::*;
use hmac::{Hmac, Mac};
use outcall::{clock::Clock, config::Config, startup::Application};
use serde_json::{json, Value};
use sha2::Sha256;

const SECRET: &str = "webhook-secret-for-tests";
const WAIT: Duration = Duration::from_secs(30);
/// A prompt reference the sim plays (a playback action keeps answered calls up, as the sim's
/// table assumes).
const MEDIA: &str = r#"{"media_id":205,"media_path":"phrase:welcome_short@xui","media_type":"SYSTEM","media_name":"welcome_short"}"#;

// ---------------------------------------------------------------------------------------------
// The receiver
// ---------------------------------------------------------------------------------------------

/// One POST as the receiver saw it.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    /// Header names in lower case.
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    fn delivery(&self) -> String {
        self.headers["x-outcall-delivery"].clone()
    }
}

#[derive(Default)]
struct Inbox {
    received: Mutex<Vec<Received>>,
    /// The statuses of the next answers; 200 once none is left.
    answers: Mutex<VecDeque<u16>>,
}

async fn receive(request: HttpRequest, body: web::Bytes, inbox: web::Data<Inbox>) -> HttpResponse {
    let headers = request
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_lowercase(),
                value.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    inbox.received.lock().unwrap().push(Received {
        path: request.path().to_owned(),
        headers,
        body: body.to_vec(),
    });
    let status = inbox.answers.lock().unwrap().pop_front().unwrap_or(200);
    let mut answer =
        HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("a status"));
    if (300..400).contains(&status) {
        answer.insert_header(("Location", "/elsewhere"));
    }
    answer.body("")
}

/// A port of 127.0.0.1 held but not listening (connections are refused) until `listen`.
struct Receiver {
    socket: Option<tokio::net::TcpSocket>,
    port: u16,
    inbox: web::Data<Inbox>,
}

impl Receiver {
    fn reserved() -> Receiver {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket
            .bind("127.0.0.1:0".parse().unwrap())
            .expect("a loopback port");
        let port = socket.local_addr().unwrap().port();
        Receiver {
            socket: Some(socket),
            port,
            inbox: web::Data::new(Inbox::default()),
        }
    }

    /// Listening already, answering `answers` then 200s.
    fn up(answers: &[u16]) -> Receiver {
        let mut receiver = Receiver::reserved();
        receiver.answer(answers);
        receiver.listen();
        receiver
    }

    fn answer(&mut self, answers: &[u16]) {
        self.inbox.answers.lock().unwrap().extend(answers);
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn listen(&mut self) {
        let listener = self
            .socket
            .take()
            .expect("not listening yet")
            .listen(128)
            .expect("listening")
            .into_std()
            .expect("a std listener");
        let inbox = self.inbox.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(inbox.clone())
                .default_service(web::to(receive))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("the receiver serves")
        .run();
        tokio::spawn(server);
    }

    fn received(&self) -> Vec<Received> {
        self.inbox.received.lock().unwrap().clone()
    }

    /// Waits until `n` POSTs have come (and checks no more came).
    async fn wait_for(&self, n: usize) -> Vec<Received> {
        let received = poll(WAIT, &format!("{n} webhooks"), || async {
            let received = self.received();
            if received.len() >= n {
                Ok(received)
            } else {
                Err(format!("{} received", received.len()))
            }
        })
        .await;
        assert_eq!(received.len(), n, "exactly {n} POSTs");
        received
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A manual clock standing at the real time: calls' end times (the back end's) and the
/// schedules' clock then agree within seconds.
fn manual_clock() -> Clock {
    Clock::manual(outcall::clock::now())
}

fn configure(config: &mut Config, clock: &Clock, secret: Option<&str>) {
    config.clock = clock.clone();
    config.sim.time_scale = 0.01;
    config.webhook_secret = secret.map(str::to_owned);
}

/// A fast campaign with a webhook to `url` (or none when `""`), started; its id.
async fn campaign(api: &Api, name: &str, url: &str, numbers: &[String]) -> i64 {
    api.start_campaign(
        name,
        json!({"max_caps": 50, "max_concurrency": 10, "calling_time": 5,
               "action": "playback", "data": MEDIA, "webhook_url": url}),
        numbers,
    )
    .await
}

async fn webhook_stats(api: &Api, id: i64) -> Value {
    let stats = api.ok_get(&format!("/api/out_call_tasks/{id}/stats")).await;
    stats["data"]["webhooks"].clone()
}

/// The numbers (`dest_number`) the bodies of `received` are about.
fn posted_numbers(received: &[Received]) -> HashSet<String> {
    received
        .iter()
        .map(|post| {
            post.json()["number"]["dest_number"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// Waits until the task's webhook stats satisfy `check`; answers them.
async fn wait_for_stats(api: &Api, id: i64, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    poll(WAIT, what, || async {
        let webhooks = webhook_stats(api, id).await;
        if check(&webhooks) {
            Ok(webhooks)
        } else {
            Err(webhooks.to_string())
        }
    })
    .await
}

/// The outbox rows of a task: (id, state, tries, next_try_at).
fn outbox(app_db: &outcall::db::rusqlite::Connection, id: i64) -> Vec<(i64, String, i64, i64)> {
    app_db
        .prepare(
            "SELECT id, state, tries, next_try_at FROM webhook_outbox WHERE group_id = ?1 ORDER BY id",
        )
        .unwrap()
        .query_map([id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Starts outcall again on `data_dir` once the stopped one has let it go.
async fn restart(data_dir: &std::path::Path, clock: &Clock) -> Api {
    let app = poll(WAIT, "the data directory to be free", || async {
        let mut config = Config::for_data_dir(data_dir);
        config.admin_password = Some(ADMIN_PASSWORD.into());
        configure(&mut config, clock, None);
        Application::build(config).await.map_err(|e| e.to_string())
    })
    .await;
    let mut api = Api::new(
        format!("http://127.0.0.1:{}", app.port()),
        reqwest::Client::new(),
    );
    tokio::spawn(app.run_until_stopped());
    api.token = api.log_in("admin", ADMIN_PASSWORD).await;
    api
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn each_finished_call_is_posted_once_signed_with_its_number_and_attempt() {
    let clock = manual_clock();
    let app = spawn_app_with(|config| {
        configure(config, &clock, Some(SECRET));
        config.time_zone = outcall::clock::TimeZone::named("Asia/Shanghai").unwrap();
    })
    .await;
    let receiver = Receiver::up(&[]);
    // Every callee of the sim: answered, busy, no answer, rejected, unknown, keys pressed.
    let numbers: Vec<String> = (0..10).map(|n| format!("1380013800{n}")).collect();
    let quiet = campaign(&app, "no webhook", "", &phone_numbers(2000, 3)).await;
    let id = campaign(&app, "hooked", &receiver.url(), &numbers).await;
    app.wait_done(id, WAIT).await;
    app.wait_done(quiet, WAIT).await;
    let received = receiver.wait_for(numbers.len()).await;
    wait_for_stats(&app, id, "every webhook delivered", |w| {
        w["delivered"] == numbers.len()
    })
    .await;
    assert_eq!(
        webhook_stats(&app, id).await,
        json!({"pending": 0, "delivered": numbers.len(), "failed": 0, "last_error": ""})
    );
    assert_eq!(
        webhook_stats(&app, quiet).await,
        json!({"pending": 0, "delivered": 0, "failed": 0, "last_error": ""})
    );

    let listed: HashMap<String, Value> = app
        .all_numbers(id)
        .await
        .into_iter()
        .map(|n| (n["dest_number"].as_str().unwrap().to_owned(), n))
        .collect();
    let mut deliveries = HashSet::new();
    let mut posted = HashSet::new();
    for post in &received {
        assert_eq!(post.path, "/hook");
        assert_eq!(post.headers["content-type"], "application/json");
        assert_eq!(
            post.headers["x-outcall-signature"],
            format!("sha256={}", hmac_hex(SECRET, &post.body)),
            "the signature is the HMAC of the exact body"
        );
        assert!(deliveries.insert(post.delivery()), "one delivery id each");
        let body = post.json();
        assert_keys(&body, &["task", "number", "attempt"]);
        assert_eq!(body["task"], json!({"id": id, "group_name": "hooked"}));
        let number = &body["number"];
        let dest = number["dest_number"].as_str().unwrap().to_owned();
        assert_eq!(
            number, &listed[&dest],
            "the number as the numbers list shows it"
        );
        assert!(posted.insert(dest.clone()), "{dest} posted once");
        let attempt = &body["attempt"];
        assert_keys(attempt, &ATTEMPT_FIELDS);
        assert_eq!(attempt["attempt"], 1, "{body}");
        for field in ATTEMPT_STRING_FIELDS {
            assert_eq!(attempt[field], number[field], "{field}: {body}");
        }
        let (cause, dtmf, answered) = sim_outcome(&dest, false);
        assert_eq!(attempt["cause"], cause, "{body}");
        assert_eq!(attempt["dtmf"], dtmf.as_str(), "{body}");
        assert_eq!(attempt["call_answer_time"] != "", answered, "{body}");
        assert!(attempt["billsec"].is_u64(), "{body}");
        // The sim's calls last well under a second at this scale.
        assert!(attempt["billsec"].as_u64().unwrap() <= 1, "{body}");
    }
    assert_eq!(posted.len(), numbers.len());
    app.stopper.stop().await;
}

#[tokio::test]
async fn a_receiver_down_for_a_while_gets_every_result_later() {
    let clock = manual_clock();
    let app = spawn_app_with(|config| configure(config, &clock, Some(SECRET))).await;
    let mut receiver = Receiver::reserved();
    let numbers = phone_numbers(3000, 6);
    let id = campaign(&app, "down", &receiver.url(), &numbers).await;
    app.wait_done(id, WAIT).await;
    let refused = wait_for_stats(&app, id, "every first try failed", |w| {
        w["pending"] == 6 && w["last_error"] != ""
    })
    .await;
    assert!(
        refused["last_error"]
            .as_str()
            .unwrap()
            .starts_with("connection failed"),
        "{refused}"
    );
    assert_eq!(refused["delivered"], 0, "{refused}");
    // Tried again only when the backoff's 5 s have passed on the clock.
    poll(WAIT, "every row tried once", || async {
        let rows = outbox(&app.db(), id);
        if rows.iter().all(|(_, _, tries, _)| *tries == 1) {
            Ok(())
        } else {
            Err(format!("{rows:?}"))
        }
    })
    .await;
    for (_, state, _, next_try_at) in outbox(&app.db(), id) {
        assert_eq!(state, "pending");
        assert!(next_try_at > clock.now(), "not due yet: {next_try_at}");
    }
    clock.advance(5);
    poll(WAIT, "a second try of every row", || async {
        let rows = outbox(&app.db(), id);
        if rows.iter().all(|(_, _, tries, _)| *tries == 2) {
            Ok(())
        } else {
            Err(format!("{rows:?}"))
        }
    })
    .await;

    receiver.listen();
    clock.advance(3600);
    let received = receiver.wait_for(numbers.len()).await;
    let posted = posted_numbers(&received);
    assert_eq!(posted, numbers.iter().cloned().collect(), "none lost");
    let delivered = wait_for_stats(&app, id, "all delivered", |w| w["delivered"] == 6).await;
    assert_eq!(
        delivered,
        json!({"pending": 0, "delivered": 6, "failed": 0, "last_error": ""})
    );
    app.stopper.stop().await;
}

#[tokio::test]
async fn a_receiver_answering_500_is_retried_with_the_same_bytes_and_stats_follow() {
    let clock = manual_clock();
    // No secret: no signature header.
    let app = spawn_app_with(|config| configure(config, &clock, None)).await;
    let receiver = Receiver::up(&[500, 500]);
    let numbers = phone_numbers(4000, 2);
    let id = campaign(&app, "flaky", &receiver.url(), &numbers).await;
    app.wait_done(id, WAIT).await;
    let first = receiver.wait_for(2).await;
    let failing = wait_for_stats(&app, id, "both tries recorded", |w| {
        w["pending"] == 2 && w["last_error"] != ""
    })
    .await;
    assert_eq!(
        failing,
        json!({"pending": 2, "delivered": 0, "failed": 0, "last_error": "HTTP 500"})
    );
    assert!(!first[0].headers.contains_key("x-outcall-signature"));

    clock.advance(5);
    let all = receiver.wait_for(4).await;
    let delivered = wait_for_stats(&app, id, "both delivered", |w| w["delivered"] == 2).await;
    assert_eq!(
        delivered,
        json!({"pending": 0, "delivered": 2, "failed": 0, "last_error": ""})
    );
    for retry in &all[2..] {
        let try_before = first
            .iter()
            .find(|post| post.delivery() == retry.delivery())
            .expect("a retry of a row tried before");
        assert_eq!(
            retry.body, try_before.body,
            "every try sends the same bytes"
        );
    }
    app.stopper.stop().await;
}

#[tokio::test]
async fn a_redirect_is_not_followed_and_counts_as_a_failed_try() {
    let clock = manual_clock();
    let app = spawn_app_with(|config| configure(config, &clock, None)).await;
    let receiver = Receiver::up(&[302]);
    let id = campaign(&app, "moved", &receiver.url(), &phone_numbers(5000, 1)).await;
    app.wait_done(id, WAIT).await;
    let moved = wait_for_stats(&app, id, "the try recorded", |w| w["last_error"] != "").await;
    assert_eq!(moved["last_error"], "HTTP 302 (redirects are not followed)");
    assert_eq!(moved["pending"], 1);
    assert_eq!(
        receiver.received().len(),
        1,
        "the Location was not asked for"
    );
    clock.advance(5);
    let received = receiver.wait_for(2).await;
    assert!(received.iter().all(|post| post.path == "/hook"));
    wait_for_stats(&app, id, "delivered", |w| w["delivered"] == 1).await;
    app.stopper.stop().await;
}

#[tokio::test]
async fn after_24_hours_a_never_accepting_receivers_rows_have_failed() {
    let clock = manual_clock();
    let app = spawn_app_with(|config| configure(config, &clock, Some(SECRET))).await;
    let receiver = Receiver::reserved();
    let id = campaign(&app, "never", &receiver.url(), &phone_numbers(6000, 3)).await;
    app.wait_done(id, WAIT).await;
    wait_for_stats(&app, id, "first tries failed", |w| {
        w["pending"] == 3 && w["last_error"] != ""
    })
    .await;
    // Within the 24 hours the rows stay pending, however many tries fail.
    clock.advance(12 * 3600);
    poll(WAIT, "tried again", || async {
        let rows = outbox(&app.db(), id);
        if rows.iter().all(|(_, _, tries, _)| *tries >= 2) {
            Ok(())
        } else {
            Err(format!("{rows:?}"))
        }
    })
    .await;
    let half_way = webhook_stats(&app, id).await;
    assert_eq!(half_way["pending"], 3, "{half_way}");
    assert_eq!(half_way["failed"], 0, "{half_way}");

    clock.advance(13 * 3600);
    let failed = wait_for_stats(&app, id, "all failed", |w| w["failed"] == 3).await;
    assert_eq!(failed["pending"], 0, "{failed}");
    assert_eq!(failed["delivered"], 0, "{failed}");
    assert!(
        failed["last_error"]
            .as_str()
            .unwrap()
            .starts_with("connection failed"),
        "{failed}"
    );
    assert!(outbox(&app.db(), id)
        .iter()
        .all(|(_, state, _, _)| state == "failed"));
    assert!(receiver.received().is_empty());
    app.stopper.stop().await;
}

#[tokio::test]
async fn pending_webhooks_are_delivered_after_a_restart() {
    let clock = manual_clock();
    let app = spawn_app_with(|config| configure(config, &clock, None)).await;
    let mut receiver = Receiver::reserved();
    let numbers = phone_numbers(7000, 4);
    let id = campaign(&app, "restarted", &receiver.url(), &numbers).await;
    app.wait_done(id, WAIT).await;
    wait_for_stats(&app, id, "first tries failed", |w| {
        w["pending"] == 4 && w["last_error"] != ""
    })
    .await;
    app.stopper.stop().await;

    receiver.listen();
    let again = restart(app.data_dir.path(), &clock).await;
    assert_eq!(webhook_stats(&again, id).await["pending"], 4);
    clock.advance(5);
    let received = receiver.wait_for(numbers.len()).await;
    let posted = posted_numbers(&received);
    assert_eq!(posted, numbers.iter().cloned().collect());
    let delivered = wait_for_stats(&again, id, "all delivered", |w| w["delivered"] == 4).await;
    assert_eq!(delivered["pending"], 0, "{delivered}");
}

#[tokio::test]
async fn a_webhook_url_of_another_scheme_is_refused() {
    let app = spawn_app().await;
    let id = app.create_task("hook").await;
    for url in [
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "javascript:alert(1)",
    ] {
        let reply = app
            .put(
                &format!("/api/out_call_tasks/{id}"),
                json!({ "webhook_url": url }),
            )
            .await;
        assert_error(&reply, 400, "webhook_url");
    }
    assert_eq!(app.task(id).await["webhook_url"], "", "nothing changed");
    app.update_task(id, json!({"webhook_url": "https://example.com/hook"}))
        .await;
    assert_eq!(
        app.task(id).await["webhook_url"],
        "https://example.com/hook"
    );
}

#[tokio::test]
async fn a_stored_url_of_another_scheme_fails_at_once_without_a_request() {
    let clock = manual_clock();
    let app = spawn_app_with(|config| configure(config, &clock, None)).await;
    let id = app.create_task("edited by hand").await;
    // A row whose URL the API would have refused (the database edited around it).
    let body = json!({
        "task": {"id": id, "group_name": "edited by hand"},
        "number": {"id": 1, "group_id": id, "dest_number": "13800000004", "external_id": "",
                   "uuid": "u", "call_status": "done", "outbound_call": 0, "dtmf": "",
                   "cause": "USER_BUSY", "call_start_time": 1, "call_answer_time": null,
                   "call_end_time": 2, "created_at": 1, "updated_at": 2, "deleted_at": null,
                   "sip_code": 486, "record_path": ""},
        "attempt": {"attempt": 1, "uuid": "u", "dest_number": "13800000004",
                    "call_start_time": 1, "call_answer_time": null, "call_end_time": 2,
                    "cause": "USER_BUSY", "sip_code": 486, "billsec": 0, "dtmf": "",
                    "record_path": ""},
    });
    app.db()
        .execute(
            "INSERT INTO webhook_outbox (group_id, attempt_id, url, body, created_at, next_try_at)
             VALUES (?1, 1, 'ftp://127.0.0.1/hook', ?2, ?3, 0)",
            outcall::db::rusqlite::params![id, body.to_string(), clock.now()],
        )
        .unwrap();
    let failed = wait_for_stats(&app, id, "the row failed", |w| w["failed"] == 1).await;
    assert_eq!(failed["pending"], 0, "{failed}");
    assert!(
        failed["last_error"]
            .as_str()
            .unwrap()
            .starts_with("not an http or https URL"),
        "{failed}"
    );
    assert_eq!(outbox(&app.db(), id)[0].2, 1, "one try, no retry");
    app.stopper.stop().await;
}
