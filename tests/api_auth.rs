//! Logging in and out, the two token headers, expiry, and the routes that need no token.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

const TASKS: &str = "/api/out_call_tasks";

/// A request to a protected route carrying exactly `headers`.
async fn list_with_headers(app: &TestApp, headers: &[(&str, &str)]) -> Reply {
    let raw = app.send_raw(Method::GET, TASKS, headers, None).await;
    Reply {
        status: raw.status,
        body: raw.json(),
    }
}

async fn list_with_token(app: &TestApp, token: &str) -> Reply {
    app.send_with_token(Method::GET, TASKS, None, Some(token))
        .await
}

#[tokio::test]
async fn every_api_route_needs_a_token() {
    let app = spawn_app().await;
    let id = app.create_task("t").await;
    let routes = [
        (Method::GET, TASKS.to_owned(), None),
        (
            Method::POST,
            TASKS.to_owned(),
            Some(json!({"group_name": "sneaky"})),
        ),
        (
            Method::PUT,
            TASKS.to_owned(),
            Some(json!({"action": "start", "data": [id.to_string()]})),
        ),
        (Method::GET, format!("{TASKS}/{id}"), None),
        (
            Method::PUT,
            format!("{TASKS}/{id}"),
            Some(json!({"description": "sneaky"})),
        ),
        (Method::DELETE, format!("{TASKS}/{id}"), None),
        (
            Method::POST,
            format!("{TASKS}/{id}/import"),
            Some(json!({"data": [{"dest_number": "1000"}]})),
        ),
        (Method::GET, format!("{TASKS}/{id}/numbers"), None),
        (Method::GET, format!("{TASKS}/{id}/download"), None),
        (
            Method::POST,
            format!("{TASKS}/clone"),
            Some(json!({"group_name": "c", "id": id})),
        ),
        (Method::DELETE, "/api/sessions".to_owned(), None),
        (Method::GET, "/api/nope".to_owned(), None),
    ];
    for (method, path, body) in routes {
        for token in [None, Some("not-a-token"), Some("")] {
            let reply = app
                .send_with_token(method.clone(), &path, body.clone(), token)
                .await;
            assert_error(&reply, 401, "");
        }
    }
    // Nothing happened.
    let task = app.task(id).await;
    assert_eq!(
        (
            task["status"].as_str(),
            task["description"].as_str(),
            task["done_total"].as_str()
        ),
        (Some("init"), Some("test"), Some("0/0"))
    );
    assert_eq!(app.all_tasks().await.len(), 1);
}

#[tokio::test]
async fn a_bearer_token_works_like_the_xswitch_header() {
    let app = spawn_app().await;
    let bearer = format!("Bearer {}", app.token);
    let reply = list_with_headers(&app, &[("Authorization", &bearer)]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    list_data(&reply.body);
    let reply = list_with_headers(&app, &[("X-XTRA-AUTH-ID", &app.token)]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);

    // A write with Bearer too.
    let raw = app
        .send_raw(
            Method::POST,
            TASKS,
            &[
                ("Authorization", &bearer),
                ("Content-Type", "application/json"),
            ],
            Some(br#"{"group_name":"via-bearer"}"#.to_vec()),
        )
        .await;
    assert_eq!(raw.status, StatusCode::OK, "{}", raw.text);
    assert_eq!(app.all_tasks().await[0]["group_name"], "via-bearer");

    // The scheme is case-insensitive (RFC 7235).
    let lower = format!("bearer {}", app.token);
    assert_eq!(
        list_with_headers(&app, &[("Authorization", &lower)])
            .await
            .status,
        StatusCode::OK
    );

    for bad in [
        "Bearer not-a-token",
        "Bearer ",
        "Basic YWRtaW46dGVzdA==",
        app.token.as_str(),
    ] {
        assert_error(
            &list_with_headers(&app, &[("Authorization", bad)]).await,
            401,
            "",
        );
    }
}

#[tokio::test]
async fn wrong_credentials_are_401() {
    let app = spawn_app().await;
    for (login, password) in [
        ("admin", "wrong"),
        ("admin", ""),
        ("nobody", ADMIN_PASSWORD),
        ("ADMIN", ADMIN_PASSWORD),
    ] {
        let reply = app.log_in_reply(login, password).await;
        assert_error(&reply, 401, "");
        assert!(
            reply.body.get("token").is_none(),
            "no token on a failed login: {}",
            reply.body
        );
    }
}

#[tokio::test]
async fn a_form_encoded_login_works() {
    let app = spawn_app().await;
    let body = format!("login=admin&password={ADMIN_PASSWORD}");
    let raw = app
        .send_raw(
            Method::POST,
            "/api/sessions",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some(body.into_bytes()),
        )
        .await;
    assert_eq!(raw.status, StatusCode::OK, "{}", raw.text);
    let reply = raw.json();
    assert_keys(&reply, &["code", "token", "expires", "user_id"]);
    let token = reply["token"].as_str().expect("a token");
    assert_ne!(token, app.token, "every login gets its own token");
    assert_eq!(list_with_token(&app, token).await.status, StatusCode::OK);

    let raw = app
        .send_raw(
            Method::POST,
            "/api/sessions",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some(b"login=admin&password=wrong".to_vec()),
        )
        .await;
    assert_eq!(raw.status, StatusCode::UNAUTHORIZED, "{}", raw.text);
    assert_eq!(raw.json()["code"], json!(401));
}

/// A password with the characters a form must escape still logs in, once decoded.
#[tokio::test]
async fn a_form_login_decodes_escaped_characters() {
    let password = "p@ss w+rd&=%/密码";
    let app = spawn_app_without_login(|config| config.admin_password = Some(password.into())).await;
    let encoded: String = password
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let raw = app
        .send_raw(
            Method::POST,
            "/api/sessions",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some(format!("login=admin&password={encoded}").into_bytes()),
        )
        .await;
    assert_eq!(raw.status, StatusCode::OK, "{}", raw.text);
    let token = raw.json()["token"].as_str().expect("a token").to_owned();
    assert_eq!(list_with_token(&app, &token).await.status, StatusCode::OK);
    // Unescaped, `+` is a space and `&` ends the value: not the password.
    let raw = app
        .send_raw(
            Method::POST,
            "/api/sessions",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some(format!("login=admin&password={password}").into_bytes()),
        )
        .await;
    assert_eq!(raw.status.as_u16(), 401, "{}", raw.text);
}

#[tokio::test]
async fn logging_out_revokes_only_that_token() {
    let app = spawn_app().await;
    let other = app.log_in("admin", ADMIN_PASSWORD).await;
    let leaving = app.log_in("admin", ADMIN_PASSWORD).await;
    let reply = app
        .send_with_token(Method::DELETE, "/api/sessions", None, Some(&leaving))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["code"], json!(200));

    assert_error(&list_with_token(&app, &leaving).await, 401, "");
    assert_error(
        &app.send_with_token(Method::DELETE, "/api/sessions", None, Some(&leaving))
            .await,
        401,
        "",
    );
    assert_eq!(list_with_token(&app, &other).await.status, StatusCode::OK);
    assert_eq!(
        list_with_token(&app, &app.token).await.status,
        StatusCode::OK
    );

    // Logging out with the Bearer header works the same.
    let bearer = format!("Bearer {other}");
    let raw = app
        .send_raw(
            Method::DELETE,
            "/api/sessions",
            &[("Authorization", &bearer)],
            None,
        )
        .await;
    assert_eq!(raw.status, StatusCode::OK, "{}", raw.text);
    assert_error(&list_with_token(&app, &other).await, 401, "");
    assert_eq!(
        list_with_token(&app, &app.token).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_expired_token_is_401() {
    let app = spawn_app().await;
    let second = app.log_in("admin", ADMIN_PASSWORD).await;
    assert_eq!(list_with_token(&app, &second).await.status, StatusCode::OK);
    let expired = app
        .db()
        .execute("UPDATE sessions SET expires_at = 0", [])
        .expect("the update runs");
    assert_eq!(expired, 2, "both sessions are in the table");
    for token in [&app.token, &second] {
        let reply = list_with_token(&app, token).await;
        assert_error(&reply, 401, "");
        let bearer = format!("Bearer {token}");
        assert_error(
            &list_with_headers(&app, &[("Authorization", &bearer)]).await,
            401,
            "",
        );
    }
    // A new login is live again.
    let fresh = app.log_in("admin", ADMIN_PASSWORD).await;
    assert_eq!(list_with_token(&app, &fresh).await.status, StatusCode::OK);
    assert_error(&list_with_token(&app, &second).await, 401, "");
}

#[tokio::test]
async fn health_needs_no_token() {
    let app = spawn_app().await;
    let raw = app.send_raw(Method::GET, "/healthz", &[], None).await;
    assert_eq!(raw.status, StatusCode::OK, "{}", raw.text);
    let body = raw.json();
    assert!(
        body["schema_version"].is_u64(),
        "schema_version is a number: {}",
        raw.text
    );
    assert!(
        body["schema_version"].as_u64().unwrap() >= 1,
        "{}",
        raw.text
    );
}

#[tokio::test]
async fn the_admin_page_needs_no_token() {
    let app = spawn_app().await;
    for path in ["/", "/index.html"] {
        let raw = app.send_raw(Method::GET, path, &[], None).await;
        assert_eq!(raw.status, StatusCode::OK, "{path}: {}", raw.text);
        assert!(
            raw.content_type().starts_with("text/html"),
            "{path}: content type {:?}",
            raw.content_type()
        );
        assert!(
            raw.text.to_lowercase().contains("<html"),
            "{path}: {}",
            raw.text
        );
    }
}

/// With no password configured, the first start makes one, saves it privately, and it works.
#[tokio::test]
async fn a_generated_admin_password_is_saved_privately_and_logs_in() {
    let app = spawn_app_without_login(|config| config.admin_password = None).await;
    let file = app.data_dir.path().join("admin-password.txt");
    let metadata = std::fs::metadata(&file).expect("admin-password.txt exists");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            metadata.permissions().mode() & 0o777,
            0o600,
            "the password file is private"
        );
    }
    let password = std::fs::read_to_string(&file)
        .expect("the file reads")
        .trim()
        .to_owned();
    assert!(
        password.len() >= 12,
        "a strong enough password: {} characters",
        password.len()
    );

    let token = app.log_in("admin", &password).await;
    assert_eq!(list_with_token(&app, &token).await.status, StatusCode::OK);
    assert_error(&app.log_in_reply("admin", ADMIN_PASSWORD).await, 401, "");
    app.stopper.stop().await;
}
