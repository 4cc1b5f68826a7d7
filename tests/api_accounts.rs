//! Accounts and logins (issue 7, findings 1, 2 and 6): roles, password changes, the admin
//! password's rules, the login throttle, memory under a login flood (on the real binary),
//! cross-site logins and CORS.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

mod common;

use common::{
    assert_error, list_data,
    process::{proc_status_kib, Outcall, Server},
    spawn_app, spawn_app_without_login, TestApp, ADMIN_PASSWORD,
};
use outcall::{config::Config, startup::Application};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const VIEWER_PASSWORD: &str = "viewer-password-1";

/// Creates a user as admin; answers its id.
async fn create_user(app: &TestApp, login: &str, password: &str, role: &str) -> i64 {
    let reply = app
        .post(
            "/api/users",
            json!({"login": login, "password": password, "role": role}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["data"]["login"], login, "{}", reply.body);
    assert_eq!(reply.body["data"]["role"], role, "{}", reply.body);
    reply.body["data"]["id"]
        .as_i64()
        .expect("the id as a number")
}

async fn change_password(app: &TestApp, id: i64, token: &str, body: Value) -> common::Reply {
    app.send_with_token(
        Method::PUT,
        &format!("/api/users/{id}/password"),
        Some(body),
        Some(token),
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// Users and roles
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_admin_creates_and_lists_users() {
    let app = spawn_app().await;
    let viewer = create_user(&app, "viewer", VIEWER_PASSWORD, "readonly").await;
    let second = create_user(&app, "ops.admin@example", "another-admin-pw", "admin").await;
    assert!(viewer > 1 && second > viewer);

    let reply = app.get("/api/users").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let users = reply.body["data"].as_array().expect("a list").clone();
    let summary: Vec<(String, String)> = users
        .iter()
        .map(|u| {
            (
                u["login"].as_str().unwrap().to_owned(),
                u["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("admin".into(), "admin".into()),
            ("viewer".into(), "readonly".into()),
            ("ops.admin@example".into(), "admin".into()),
        ]
    );
    for user in &users {
        let keys: Vec<&String> = user.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["created_at", "id", "login", "role"],
            "no hash shown: {user}"
        );
        assert!(user["id"].is_i64());
    }

    // The new admin can do everything.
    let token = app.log_in("ops.admin@example", "another-admin-pw").await;
    let reply = app
        .send_with_token(
            Method::POST,
            "/api/out_call_tasks",
            Some(json!({"group_name": "by-second-admin"})),
            Some(&token),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);

    // Bad input names the field.
    for (body, status, field) in [
        (
            json!({"login": "viewer", "password": VIEWER_PASSWORD, "role": "readonly"}),
            409,
            "viewer",
        ),
        (
            json!({"login": "x", "password": "short", "role": "readonly"}),
            400,
            "password",
        ),
        (
            json!({"login": "x", "password": VIEWER_PASSWORD, "role": "root"}),
            400,
            "role",
        ),
        (
            json!({"login": "x", "password": VIEWER_PASSWORD}),
            400,
            "role",
        ),
        (
            json!({"login": "bad login", "password": VIEWER_PASSWORD, "role": "admin"}),
            400,
            "login",
        ),
        (
            json!({"login": "", "password": VIEWER_PASSWORD, "role": "admin"}),
            400,
            "login",
        ),
        (
            json!({"password": VIEWER_PASSWORD, "role": "admin"}),
            400,
            "login",
        ),
    ] {
        let reply = app.post("/api/users", body.clone()).await;
        assert_error(&reply, status, field);
    }
    assert_eq!(
        list_data_len(&app).await,
        3,
        "no user was added by a refused request"
    );
}

async fn list_data_len(app: &TestApp) -> usize {
    app.get("/api/users").await.body["data"]
        .as_array()
        .map_or(0, Vec::len)
}

/// A readonly user reads everything and changes nothing; the middleware refuses every other
/// method, so a route added later is closed to them too.
#[tokio::test]
async fn a_readonly_user_reads_but_every_change_is_403() {
    let app = spawn_app().await;
    let task = app.create_task("watched").await;
    app.import(task, &common::phone_numbers(1000, 3)).await;
    let viewer = create_user(&app, "viewer", VIEWER_PASSWORD, "readonly").await;
    let token = app.log_in("viewer", VIEWER_PASSWORD).await;

    for path in [
        "/api/out_call_tasks".to_owned(),
        format!("/api/out_call_tasks/{task}"),
        format!("/api/out_call_tasks/{task}/numbers"),
        format!("/api/out_call_tasks/{task}/download"),
        "/api/media_files".to_owned(),
    ] {
        let reply = app
            .send_with_token(Method::GET, &path, None, Some(&token))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "GET {path}: {}", reply.body);
    }
    // What a readonly user reads is what an admin reads.
    let as_viewer = app
        .send_with_token(Method::GET, "/api/out_call_tasks", None, Some(&token))
        .await;
    assert_eq!(
        list_data(&as_viewer.body),
        list_data(&app.get("/api/out_call_tasks").await.body)
    );

    let changes: Vec<(Method, String, Value)> = vec![
        (
            Method::POST,
            "/api/out_call_tasks".into(),
            json!({"group_name": "nope"}),
        ),
        (
            Method::PUT,
            "/api/out_call_tasks".into(),
            json!({"action": "start", "data": [task.to_string()]}),
        ),
        (
            Method::PUT,
            "/api/out_call_tasks".into(),
            json!({"action": "stop", "data": [task.to_string()]}),
        ),
        (
            Method::PUT,
            format!("/api/out_call_tasks/{task}"),
            json!({"group_name": "renamed"}),
        ),
        (
            Method::DELETE,
            format!("/api/out_call_tasks/{task}"),
            Value::Null,
        ),
        (
            Method::POST,
            "/api/out_call_tasks/clone".into(),
            json!({"group_name": "copy", "id": task, "is_clone_numbers": true}),
        ),
        (
            Method::POST,
            format!("/api/out_call_tasks/{task}/import"),
            json!({"data": [{"dest_number": "13900000000", "external_id": ""}]}),
        ),
        (Method::POST, "/api/media_files".into(), json!({})),
        (
            Method::POST,
            "/api/users".into(),
            json!({"login": "mine", "password": VIEWER_PASSWORD, "role": "admin"}),
        ),
        (
            Method::PUT,
            "/api/users/1/password".into(),
            json!({"new_password": "taken-over-admin"}),
        ),
        (
            Method::PATCH,
            format!("/api/out_call_tasks/{task}"),
            json!({}),
        ),
        (Method::POST, "/api/not-a-route".into(), json!({})),
    ];
    for (method, path, body) in changes {
        let body = (!body.is_null()).then_some(body);
        let reply = app
            .send_with_token(method.clone(), &path, body, Some(&token))
            .await;
        assert_error(&reply, 403, "readonly");
        let _ = path;
    }
    // Nothing changed.
    let tasks = app.all_tasks().await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["group_name"], "watched");
    assert_eq!(tasks[0]["status"], "init");
    assert_eq!(app.all_numbers(task).await.len(), 3);
    assert_eq!(list_data_len(&app).await, 2);
    // Listing users is for admins.
    let reply = app
        .send_with_token(Method::GET, "/api/users", None, Some(&token))
        .await;
    assert_error(&reply, 403, "admin");

    // Their own password, and logging out, they may.
    let reply = change_password(
        &app,
        viewer,
        &token,
        json!({"old_password": VIEWER_PASSWORD, "new_password": "viewer-password-2"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let token = app.log_in("viewer", "viewer-password-2").await;
    let reply = app
        .send_with_token(Method::DELETE, "/api/sessions", None, Some(&token))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let reply = app
        .send_with_token(Method::GET, "/api/out_call_tasks", None, Some(&token))
        .await;
    assert_error(&reply, 401, "");
}

#[tokio::test]
async fn a_password_change_revokes_every_token_of_that_user() {
    let app = spawn_app().await;
    let viewer = create_user(&app, "viewer", VIEWER_PASSWORD, "readonly").await;
    let first = app.log_in("viewer", VIEWER_PASSWORD).await;
    let second = app.log_in("viewer", VIEWER_PASSWORD).await;
    let can_read = |token: String| {
        let app = &app;
        async move {
            app.send_with_token(Method::GET, "/api/out_call_tasks", None, Some(&token))
                .await
                .status
        }
    };

    // Their own: the old password is required and checked; the new one needs 10 characters.
    for (body, status, field) in [
        (
            json!({"new_password": "viewer-password-2"}),
            400,
            "old_password",
        ),
        (
            json!({"old_password": "wrong-old-password", "new_password": "viewer-password-2"}),
            403,
            "old_password",
        ),
        (
            json!({"old_password": VIEWER_PASSWORD, "new_password": "short"}),
            400,
            "new_password",
        ),
        (
            json!({"old_password": VIEWER_PASSWORD}),
            400,
            "new_password",
        ),
    ] {
        assert_error(
            &change_password(&app, viewer, &first, body).await,
            status,
            field,
        );
    }
    assert_eq!(
        can_read(first.clone()).await,
        StatusCode::OK,
        "refused changes revoke nothing"
    );
    // Not someone else's.
    let reply = change_password(
        &app,
        1,
        &first,
        json!({"old_password": ADMIN_PASSWORD, "new_password": "taken-over-admin"}),
    )
    .await;
    assert_error(&reply, 403, "");

    let reply = change_password(
        &app,
        viewer,
        &first,
        json!({"old_password": VIEWER_PASSWORD, "new_password": "viewer-password-2"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body, json!({"code": 200, "message": "success"}));
    for token in [&first, &second] {
        assert_eq!(can_read(token.clone()).await, StatusCode::UNAUTHORIZED);
    }
    assert_error(&app.log_in_reply("viewer", VIEWER_PASSWORD).await, 401, "");
    let third = app.log_in("viewer", "viewer-password-2").await;
    assert_eq!(
        can_read(app.token.clone()).await,
        StatusCode::OK,
        "other users keep theirs"
    );

    // An admin sets anyone's with no old password; that user's tokens go.
    let reply = app
        .put(
            &format!("/api/users/{viewer}/password"),
            json!({"new_password": "reset-by-admin-1"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(can_read(third).await, StatusCode::UNAUTHORIZED);
    app.log_in("viewer", "reset-by-admin-1").await;
    assert_eq!(can_read(app.token.clone()).await, StatusCode::OK);
    assert_error(
        &app.put(
            "/api/users/999/password",
            json!({"new_password": "reset-by-admin-1"}),
        )
        .await,
        404,
        "999",
    );
    assert_error(
        &app.put(
            "/api/users/x/password",
            json!({"new_password": "reset-by-admin-1"}),
        )
        .await,
        400,
        "id",
    );
    // The admin's own password needs the old one too: a stolen token cannot take the account.
    assert_error(
        &app.put(
            "/api/users/1/password",
            json!({"new_password": "new-admin-password"}),
        )
        .await,
        400,
        "old_password",
    );
    let reply = app
        .put(
            "/api/users/1/password",
            json!({"old_password": ADMIN_PASSWORD, "new_password": "new-admin-password"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(can_read(app.token.clone()).await, StatusCode::UNAUTHORIZED);
    app.log_in("admin", "new-admin-password").await;
}

// ---------------------------------------------------------------------------------------------
// The admin password at start
// ---------------------------------------------------------------------------------------------

/// Waits (bounded) for the process to end; answers its exit code and output.
async fn exit_of(mut server: Server) -> (Option<i32>, String) {
    let status = server.exit_status().await;
    (status.code(), server.log_text())
}

#[tokio::test]
async fn a_short_admin_password_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let server = Outcall::in_dir(dir.path())
        .password(Some("123456789"))
        .spawn();
    let (code, output) = exit_of(server).await;
    assert_eq!(code, Some(2), "a configuration error: {output}");
    assert!(
        output.contains("OUTCALL_ADMIN_PASSWORD") && output.contains("10 characters"),
        "{output}"
    );
    assert!(
        !dir.path().join("data").join("outcall.db").exists(),
        "refused before anything was created"
    );
}

#[tokio::test]
async fn the_password_file_is_never_written_through_a_link_nor_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let target = dir.path().join("elsewhere.txt");
    std::os::unix::fs::symlink(&target, data.join("admin-password.txt")).unwrap();

    let mut config = Config::for_data_dir(&data);
    config.admin_password = None;
    let error = Application::build(config)
        .await
        .err()
        .expect("the start is refused");
    let message = format!("{error:#}");
    assert!(
        message.contains("admin-password.txt") && message.contains("symbolic link"),
        "{message}"
    );
    assert!(!target.exists(), "nothing was written through the link");

    // A regular file left there is kept as it is, and the binary says why it stops.
    std::fs::remove_file(data.join("admin-password.txt")).unwrap();
    std::fs::write(data.join("admin-password.txt"), "old contents\n").unwrap();
    let server = Outcall::in_dir(dir.path()).password(None).spawn();
    let (code, output) = exit_of(server).await;
    assert_ne!(code, Some(0), "{output}");
    assert!(output.contains("already exists"), "{output}");
    assert_eq!(
        std::fs::read_to_string(data.join("admin-password.txt")).unwrap(),
        "old contents\n"
    );

    // With a configured password the file is not needed, and the start goes on.
    let app = spawn_app_without_login(|config| config.data_dir = data.clone()).await;
    app.log_in("admin", ADMIN_PASSWORD).await;
}

// ---------------------------------------------------------------------------------------------
// Login flood: memory, throttle, and the right password after the wait
// ---------------------------------------------------------------------------------------------

/// Most the server may hold at its peak during the flood. Before the fix, 64 concurrent wrong
/// logins ran 64 Argon2 verifies at once (19 MiB each, kept by the allocator): over 1 GiB.
const FLOOD_PEAK_LIMIT_MIB: u64 = 100;

#[tokio::test]
async fn a_login_flood_keeps_memory_bounded_is_throttled_and_the_admin_gets_in_after_the_wait() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Outcall::in_dir(dir.path()).spawn();
    server.client().await;
    let pid = server.pid();
    let base = server.base_url();
    let http = reqwest::Client::new();
    let rss_before = proc_status_kib(pid, "VmRSS");

    // Memory is sampled all through the flood.
    let flooding = Arc::new(AtomicBool::new(true));
    let sampler = {
        let flooding = flooding.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            while flooding.load(Ordering::Relaxed) {
                peak = peak.max(proc_status_kib(pid, "VmRSS"));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak
        })
    };

    // 1. 64 clients, each from its own loopback address so that the per-address throttle lets
    //    each try a few: the hashing pool is saturated. 8 wrong logins each, for unknown users.
    let mut clients = Vec::new();
    for n in 0..64u8 {
        let address = IpAddr::V4(Ipv4Addr::new(127, 0, 1, n + 1));
        let client = reqwest::Client::builder()
            .local_address(address)
            .build()
            .unwrap();
        let url = format!("{base}/api/sessions");
        clients.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for attempt in 0..8 {
                let reply = client
                    .post(&url)
                    .json(&json!({"login": format!("nobody-{n}-{attempt}"), "password": "wrong-password"}))
                    .send()
                    .await
                    .expect("the server answers");
                seen.push(status_and_retry_after(reply));
            }
            seen
        }));
    }
    let mut wide = Vec::new();
    for client in clients {
        wide.extend(client.await.unwrap());
    }

    // 2. 64 clients from one address guessing admin's password, 5 each.
    let mut clients = Vec::new();
    for _ in 0..64 {
        let client = http.clone();
        let url = format!("{base}/api/sessions");
        clients.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..5 {
                let reply = client
                    .post(&url)
                    .json(&json!({"login": "admin", "password": "a-wrong-guess"}))
                    .send()
                    .await
                    .expect("the server answers");
                seen.push(status_and_retry_after(reply));
            }
            seen
        }));
    }
    let mut narrow = Vec::new();
    for client in clients {
        narrow.extend(client.await.unwrap());
    }
    flooding.store(false, Ordering::Relaxed);
    let peak_sampled = sampler.await.unwrap();
    let hwm = proc_status_kib(pid, "VmHWM");

    let counts = |replies: &[(u16, Option<u64>)]| {
        let mut counts = BTreeMap::new();
        for (status, _) in replies {
            *counts.entry(*status).or_insert(0) += 1;
        }
        counts
    };
    eprintln!(
        "RSS before {} KiB, peak sampled {} KiB, VmHWM {} KiB; spread flood {:?}; admin flood {:?}",
        rss_before,
        peak_sampled,
        hwm,
        counts(&wide),
        counts(&narrow)
    );
    for (status, retry_after) in wide.iter().chain(&narrow) {
        assert!(
            [401, 429, 503].contains(status),
            "a wrong login is 401, 429 or 503, not {status}"
        );
        if *status != 401 {
            let seconds = retry_after.unwrap_or_else(|| panic!("{status} without Retry-After"));
            assert!((1..=60).contains(&seconds), "Retry-After {seconds}");
        }
    }
    assert!(
        counts(&wide).contains_key(&401),
        "wrong passwords were checked"
    );
    let narrow_counts = counts(&narrow);
    assert!(
        narrow_counts.get(&401).copied().unwrap_or(0)
            <= 5 + narrow_counts.get(&503).copied().unwrap_or(0),
        "at most the burst of guesses at admin's password was checked: {narrow_counts:?}"
    );
    assert!(
        narrow_counts.get(&429).copied().unwrap_or(0) >= 250,
        "{narrow_counts:?}"
    );
    assert!(
        hwm < FLOOD_PEAK_LIMIT_MIB * 1024,
        "peak RSS {} MiB over the {FLOOD_PEAK_LIMIT_MIB} MiB bound",
        hwm / 1024
    );

    // 3. After the wait one more guess is checked, and the next wait is longer; the right password
    //    is refused while it lasts and works once it is over.
    let url = format!("{base}/api/sessions");
    let send = |body: Value| {
        let request = http.post(&url).json(&body).send();
        async move { status_and_retry_after(request.await.expect("the server answers")) }
    };
    let wrong = json!({"login": "admin", "password": "one-more-guess"});
    let right = json!({"login": "admin", "password": ADMIN_PASSWORD});
    let mut first_wait = None;
    for _ in 0..5 {
        match send(wrong.clone()).await {
            (429, Some(wait)) => {
                assert!(wait <= 60, "the wait is capped: {wait} s");
                first_wait.get_or_insert(wait);
                tokio::time::sleep(Duration::from_secs(wait)).await;
            }
            (401, _) => break,
            other => panic!("a guess after the flood: {other:?}"),
        }
    }
    let first_wait = first_wait.expect("admin was throttled after the flood");
    let (status, retry_after) = send(right.clone()).await;
    assert_eq!(status, 429, "the right password waits its turn too");
    let wait = retry_after.expect("a Retry-After");
    assert!(
        wait > first_wait && wait <= 60,
        "the wait grows ({first_wait} s, then {wait} s)"
    );
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let reply = http
        .post(format!("{base}/api/sessions"))
        .json(&right)
        .send()
        .await
        .unwrap();
    assert_eq!(
        reply.status(),
        StatusCode::OK,
        "after Retry-After the right password works"
    );
    let token = reply.json::<Value>().await.unwrap()["token"]
        .as_str()
        .expect("a token")
        .to_owned();
    let reply = http
        .get(format!("{base}/api/out_call_tasks"))
        .header("X-XTRA-AUTH-ID", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    drop(server);
}

/// Guessers elsewhere can throttle `admin` for everyone else, not for the address the admin
/// logged in from before.
#[tokio::test]
async fn guessers_elsewhere_do_not_lock_the_admin_out_of_their_usual_address() {
    // spawn_app logged admin in from 127.0.0.1.
    let app = spawn_app().await;
    let url = app.url("/api/sessions");
    let from = |address: Ipv4Addr| {
        reqwest::Client::builder()
            .local_address(IpAddr::V4(address))
            .build()
            .unwrap()
    };
    let guess = |client: reqwest::Client, password: &'static str| {
        let request = client
            .post(&url)
            .json(&json!({"login": "admin", "password": password}))
            .send();
        async move { status_and_retry_after(request.await.expect("the server answers")) }
    };
    let mut statuses = Vec::new();
    for n in 1..=20 {
        statuses.push(
            guess(from(Ipv4Addr::new(127, 0, 2, n)), "a-wrong-guess")
                .await
                .0,
        );
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        15,
        "{statuses:?}"
    );
    // A stranger with the right password waits; the admin's own address does not.
    let (status, retry_after) = guess(from(Ipv4Addr::new(127, 0, 2, 99)), ADMIN_PASSWORD).await;
    assert_eq!(status, 429);
    assert!(retry_after.is_some());
    let (status, _) = guess(from(Ipv4Addr::LOCALHOST), ADMIN_PASSWORD).await;
    assert_eq!(
        status, 200,
        "admin gets in from where they logged in before"
    );
}

fn status_and_retry_after(reply: reqwest::Response) -> (u16, Option<u64>) {
    let retry_after = reply
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok()?.parse().ok());
    (reply.status().as_u16(), retry_after)
}

// ---------------------------------------------------------------------------------------------
// Cross-site logins and CORS
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_cross_site_login_is_403_and_a_same_site_or_plain_one_works() {
    let app = spawn_app().await;
    let form = format!("login=admin&password={ADMIN_PASSWORD}").into_bytes();
    let json_body = json!({"login": "admin", "password": ADMIN_PASSWORD})
        .to_string()
        .into_bytes();
    const FORM: &str = "application/x-www-form-urlencoded";
    // A page elsewhere posting a form, or a text/plain body shaped like JSON.
    for (headers, body) in [
        (
            vec![("Content-Type", FORM), ("Origin", "http://evil.example")],
            form.clone(),
        ),
        (
            vec![("Content-Type", FORM), ("Sec-Fetch-Site", "cross-site")],
            form.clone(),
        ),
        (
            vec![("Content-Type", FORM), ("Origin", "null")],
            form.clone(),
        ),
        (
            vec![
                ("Content-Type", FORM),
                ("Origin", "http://127.0.0.1.evil.example"),
            ],
            form.clone(),
        ),
        (
            vec![
                ("Content-Type", "text/plain"),
                ("Origin", "https://evil.example"),
            ],
            json_body.clone(),
        ),
    ] {
        let raw = app
            .send_raw(Method::POST, "/api/sessions", &headers, Some(body))
            .await;
        assert_eq!(
            raw.status,
            StatusCode::FORBIDDEN,
            "{headers:?}: {}",
            raw.text
        );
        assert_eq!(raw.json()["code"], json!(403), "{}", raw.text);
        assert!(raw.text.contains("cross-site"), "{}", raw.text);
        assert!(raw.json().get("token").is_none());
    }

    // The admin page on this server, and the vendor's curl examples (no Origin), log in.
    let own_origin = app.base.clone();
    for (headers, body) in [
        (
            vec![("Content-Type", FORM), ("Origin", own_origin.as_str())],
            form.clone(),
        ),
        (
            vec![
                ("Content-Type", "application/json"),
                ("Origin", own_origin.as_str()),
                ("Sec-Fetch-Site", "same-origin"),
            ],
            json_body.clone(),
        ),
        (
            vec![("Content-Type", "application/json")],
            json_body.clone(),
        ),
        (vec![("Content-Type", FORM)], json_body.clone()),
        (vec![("Content-Type", FORM)], form.clone()),
    ] {
        let raw = app
            .send_raw(Method::POST, "/api/sessions", &headers, Some(body))
            .await;
        assert_eq!(raw.status, StatusCode::OK, "{headers:?}: {}", raw.text);
        assert!(raw.json()["token"].is_string(), "{}", raw.text);
    }
}

#[tokio::test]
async fn cors_stays_closed() {
    let app = spawn_app().await;
    let token = app.token.clone();
    let replies = [
        app.send_raw(
            Method::OPTIONS,
            "/api/sessions",
            &[
                ("Origin", "http://evil.example"),
                ("Access-Control-Request-Method", "POST"),
                ("Access-Control-Request-Headers", "content-type"),
            ],
            None,
        )
        .await,
        app.send_raw(
            Method::OPTIONS,
            "/api/out_call_tasks",
            &[
                ("Origin", "http://evil.example"),
                ("Access-Control-Request-Method", "GET"),
                ("Access-Control-Request-Headers", "x-xtra-auth-id"),
            ],
            None,
        )
        .await,
        app.send_raw(
            Method::GET,
            "/api/out_call_tasks",
            &[
                ("Origin", "http://evil.example"),
                ("X-XTRA-AUTH-ID", &token),
            ],
            None,
        )
        .await,
        app.send_raw(
            Method::POST,
            "/api/sessions",
            &[
                ("Origin", "http://evil.example"),
                ("Content-Type", "application/json"),
            ],
            Some(
                json!({"login": "admin", "password": ADMIN_PASSWORD})
                    .to_string()
                    .into_bytes(),
            ),
        )
        .await,
    ];
    for reply in &replies {
        let allow: Vec<&str> = reply
            .headers
            .keys()
            .map(|name| name.as_str())
            .filter(|name| name.starts_with("access-control-"))
            .collect();
        assert!(
            allow.is_empty(),
            "no CORS header: {allow:?} ({})",
            reply.status
        );
    }
    assert!(
        !replies[0].status.is_success(),
        "a preflight is not approved: {}",
        replies[0].status
    );
}
