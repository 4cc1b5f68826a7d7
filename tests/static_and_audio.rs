//! The admin page's files and the two audio routes, through real HTTP to a real server.
//!
//! - Static files: every file of `static/` is served with its content type, cache policy, ETag
//!   (304 on `If-None-Match`) and the security headers; HEAD works; path traversal in every
//!   spelling, sent on a raw TCP connection so that no client normalises it, is 404 with none of
//!   the file's content; unknown paths are 404 (no fallback to the page).
//! - Audio: an uploaded prompt and a call's recording as `audio/wav`, whole and by `Range`
//!   (206, suffix ranges, 416), with `?token=` or a header, 401 without; only files inside the
//!   media store / recordings directory are served, whatever the database row says. One test
//!   records a real SIP call against sipp.

mod common;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use common::{
    assert_error,
    sipp::{spawn_sip_app, wav_format, Expected, SipOptions, Sipp, SIPP},
    spawn_app, Reply, TestApp,
};
use outcall::audio::wav;
use reqwest::{header::HeaderMap, Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A response with its body as bytes.
struct Fetched {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Fetched {
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("an ASCII header").to_owned())
            .unwrap_or_default()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn reply(&self) -> Reply {
        Reply {
            status: self.status,
            body: self.json(),
        }
    }
}

async fn fetch(app: &TestApp, method: Method, path: &str, headers: &[(&str, &str)]) -> Fetched {
    let mut request = app.client.request(method, app.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("the server answers");
    Fetched {
        status: response.status(),
        headers: response.headers().clone(),
        body: response.bytes().await.expect("a body").to_vec(),
    }
}

/// GET with the admin's token in the header.
async fn get_bytes(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> Fetched {
    let token = app.token.clone();
    let mut all = vec![("X-XTRA-AUTH-ID", token.as_str())];
    all.extend_from_slice(headers);
    fetch(app, Method::GET, path, &all).await
}

fn port_of(app: &TestApp) -> u16 {
    app.base
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .expect("a port in the base URL")
}

/// Sends `request_line` exactly as given (plus a Host header) on a fresh TCP connection and
/// reads the whole answer: (status, head, body).
async fn raw_request(port: u16, request_line: &[u8]) -> (u16, String, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connects");
    let mut request = request_line.to_vec();
    request.extend_from_slice(b"\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream
        .write_all(&request)
        .await
        .expect("the request is sent");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes within 10 s")
        .expect("the answer is read");
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("a whole head: {:?}", String::from_utf8_lossy(&answer)));
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {head}"));
    (status, head, answer[split + 4..].to_vec())
}

/// The files of `static/` (what rust-embed serves), as paths relative to it.
fn static_files() -> Vec<String> {
    fn walk(root: &Path, dir: &Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("static/ is readable") {
            let path = entry.expect("an entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, found);
            } else {
                let relative = path.strip_prefix(root).unwrap();
                found.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    let root = static_dir();
    let mut found = Vec::new();
    walk(&root, &root, &mut found);
    found.sort();
    found
}

fn static_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("static")
}

/// The content type a file must be served with, by extension.
fn expected_content_type(name: &str) -> &'static str {
    let extension = Path::new(name)
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    match extension.as_deref() {
        None | Some("txt") | Some("md") => "text/plain; charset=utf-8",
        Some("html") => "text/html; charset=utf-8",
        Some("js") | Some("mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") | Some("map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("woff2") => "font/woff2",
        Some(other) => panic!("the test has no expected content type for .{other} ({name})"),
    }
}

/// The security headers every response carries; the CSP allows no inline code.
fn assert_security_headers(what: &str, headers: &HeaderMap) {
    let header = |name: &str| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("{what}: no {name} header"))
    };
    let csp = header("content-security-policy");
    let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "media-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ] {
        assert!(
            directives.contains(&directive),
            "{what}: the CSP has {directive:?}: {csp}"
        );
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{what}: no inline code or eval: {csp}"
    );
    assert!(
        !csp.contains('*') && !csp.contains("http") && !csp.contains("blob:"),
        "{what}: no other origin or scheme: {csp}"
    );
    assert_eq!(header("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(header("x-frame-options"), "DENY", "{what}");
    assert_eq!(header("referrer-policy"), "no-referrer", "{what}");
}

fn sha256_etag(bytes: &[u8]) -> String {
    format!("\"{}\"", hex::encode(Sha256::digest(bytes)))
}

/// A 16 kHz sine of `millis` ms: the store keeps it as 8 kHz mono 16-bit.
fn sine_16k(millis: u32) -> Vec<u8> {
    let samples: Vec<i16> = (0..millis * 16)
        .map(|n| ((n as f64 / 16000.0 * 2.0 * std::f64::consts::PI * 440.0).sin() * 9000.0) as i16)
        .collect();
    wav::encode_wav(&samples, 1, 16000)
}

async fn create_readonly_token(app: &TestApp) -> String {
    let password = "viewer-password-1";
    let reply = app
        .post(
            "/api/users",
            json!({"login": "listener", "password": password, "role": "readonly"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    app.log_in("listener", password).await
}

/// Checks a WAV answered whole: 200, `audio/wav`, inline, ranges offered, the bytes of `file`.
fn assert_whole_wav(what: &str, fetched: &Fetched, file: &[u8]) {
    assert_eq!(
        fetched.status,
        StatusCode::OK,
        "{what}: {:?}",
        fetched.json()
    );
    assert_eq!(fetched.header("content-type"), "audio/wav", "{what}");
    assert!(
        fetched.header("content-disposition").starts_with("inline"),
        "{what}: {}",
        fetched.header("content-disposition")
    );
    assert_eq!(fetched.header("accept-ranges"), "bytes", "{what}");
    assert_eq!(
        fetched.header("cache-control"),
        "private, no-cache",
        "{what}"
    );
    assert_eq!(
        fetched.header("content-length"),
        file.len().to_string(),
        "{what}"
    );
    assert!(fetched.body == file, "{what}: the body is the stored file");
    assert_security_headers(what, &fetched.headers);
}

/// Range requests on an audio route whose file is `file`: a head range, a middle range, a
/// suffix range, and one past the end (416 in the envelope, `Content-Range: bytes */<size>`).
async fn assert_ranges(app: &TestApp, path: &str, file: &[u8]) {
    let size = file.len();
    let cases = [
        ("bytes=0-43".to_owned(), 0, 43),
        ("bytes=44-99".to_owned(), 44, 99),
        ("bytes=-100".to_owned(), size - 100, size - 1),
        (format!("bytes={}-", size - 10), size - 10, size - 1),
    ];
    for (range, first, last) in cases {
        let part = get_bytes(app, path, &[("Range", &range)]).await;
        assert_eq!(part.status, StatusCode::PARTIAL_CONTENT, "{path} {range}");
        assert_eq!(
            part.header("content-range"),
            format!("bytes {first}-{last}/{size}"),
            "{path} {range}"
        );
        assert_eq!(part.header("content-type"), "audio/wav", "{path} {range}");
        assert_eq!(part.body.len(), last - first + 1, "{path} {range}");
        assert!(
            part.body == file[first..=last],
            "{path} {range}: those bytes"
        );
    }
    let header = get_bytes(app, path, &[("Range", "bytes=0-43")]).await;
    assert_eq!(
        &header.body[0..4],
        b"RIFF",
        "the first 44 bytes are the WAV header"
    );
    assert_eq!(&header.body[8..12], b"WAVE");

    let past = get_bytes(app, path, &[("Range", &format!("bytes={size}-"))]).await;
    assert_error(&past.reply(), 416, "Range");
    assert_eq!(
        past.header("content-range"),
        format!("bytes */{size}"),
        "{path}"
    );
}

// ---------------------------------------------------------------------------------------------
// Static files
// ---------------------------------------------------------------------------------------------

/// `/` is the page: `index.html` as UTF-8 HTML, revalidated on every load, with the security
/// headers; `/index.html` is the same file.
#[tokio::test]
async fn the_page_is_served_at_the_root_with_the_security_headers() {
    let app = spawn_app().await;
    let index = std::fs::read(static_dir().join("index.html")).expect("static/index.html");
    for path in ["/", "/index.html"] {
        let page = fetch(&app, Method::GET, path, &[]).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert_eq!(
            page.header("content-type"),
            "text/html; charset=utf-8",
            "{path}"
        );
        assert_eq!(page.header("cache-control"), "no-cache", "{path}");
        assert_eq!(page.header("etag"), sha256_etag(&index), "{path}");
        assert!(page.body == index, "{path} is static/index.html");
        assert_security_headers(path, &page.headers);
    }
    // The API's answers carry them too.
    let api = fetch(&app, Method::GET, "/api/out_call_tasks", &[]).await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);
    assert_security_headers("/api/out_call_tasks", &api.headers);
}

/// Every file of `static/` is served as it is on disk, with the content type of its extension,
/// a long cache under `vendor/` and `no-cache` elsewhere, its SHA-256 as ETag (a matching
/// `If-None-Match` is 304 with no body), the security headers, and HEAD answers the same head
/// with no body.
#[tokio::test]
async fn every_file_is_served_with_its_type_cache_policy_and_etag() {
    let app = spawn_app().await;
    let files = static_files();
    assert!(files.contains(&"index.html".to_owned()), "{files:?}");
    assert!(
        files.iter().any(|f| f.starts_with("vendor/")),
        "a vendored file to test the long cache with: {files:?}"
    );
    for name in &files {
        let path = format!("/{name}");
        let bytes = std::fs::read(static_dir().join(name)).unwrap();
        let expected_cache = if name.starts_with("vendor/") {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        let etag = sha256_etag(&bytes);

        let file = fetch(&app, Method::GET, &path, &[]).await;
        assert_eq!(file.status, StatusCode::OK, "{path}");
        assert!(file.body == bytes, "{path}: the file's bytes");
        assert_eq!(
            file.header("content-type"),
            expected_content_type(name),
            "{path}"
        );
        assert_eq!(file.header("cache-control"), expected_cache, "{path}");
        assert_eq!(file.header("etag"), etag, "{path}");
        assert_security_headers(&path, &file.headers);

        let unchanged = fetch(&app, Method::GET, &path, &[("If-None-Match", &etag)]).await;
        assert_eq!(unchanged.status, StatusCode::NOT_MODIFIED, "{path}");
        assert!(unchanged.body.is_empty(), "{path}: a 304 has no body");
        assert_eq!(unchanged.header("etag"), etag, "{path}");
        assert_eq!(unchanged.header("cache-control"), expected_cache, "{path}");

        let other = fetch(&app, Method::GET, &path, &[("If-None-Match", "\"stale\"")]).await;
        assert_eq!(
            other.status,
            StatusCode::OK,
            "{path}: another ETag gets the file"
        );
        assert!(other.body == bytes, "{path}");

        let head = fetch(&app, Method::HEAD, &path, &[]).await;
        assert_eq!(head.status, StatusCode::OK, "HEAD {path}");
        assert!(head.body.is_empty(), "HEAD {path} has no body");
        assert_eq!(
            head.header("content-type"),
            expected_content_type(name),
            "HEAD {path}"
        );
        assert_eq!(
            head.header("content-length"),
            bytes.len().to_string(),
            "HEAD {path}"
        );
        assert_eq!(head.header("etag"), etag, "HEAD {path}");
        assert_security_headers(&format!("HEAD {path}"), &head.headers);
    }
}

/// Paths that try to leave the embedded set, sent byte for byte on a raw connection: each is
/// 404 in the envelope (or 400 when the HTTP parser refuses the bytes themselves), and no answer
/// holds anything of the files they aim at.
#[tokio::test]
async fn traversal_in_any_spelling_is_404_and_reads_nothing() {
    let app = spawn_app().await;
    let port = port_of(&app);

    // The raw client works: a plain name is served.
    let (status, head, body) = raw_request(port, b"GET /index.html HTTP/1.1").await;
    assert_eq!(status, 200, "{head}");
    assert_eq!(
        body,
        std::fs::read(static_dir().join("index.html")).unwrap()
    );

    let attempts: &[&[u8]] = &[
        b"GET /../Cargo.toml HTTP/1.1",
        b"GET /../../../../../../etc/passwd HTTP/1.1",
        b"GET /%2e%2e/Cargo.toml HTTP/1.1",
        b"GET /%2E%2E/Cargo.toml HTTP/1.1",
        b"GET /.%2e/Cargo.toml HTTP/1.1",
        b"GET /%2e%2e%2fCargo.toml HTTP/1.1",
        b"GET /vendor/..%2f..%2fCargo.toml HTTP/1.1",
        b"GET /vendor/../../Cargo.toml HTTP/1.1",
        b"GET /vendor/%2e%2e/%2e%2e/Cargo.toml HTTP/1.1",
        b"GET /%2fetc%2fpasswd HTTP/1.1",
        b"GET /%2Fetc%2Fpasswd HTTP/1.1",
        b"GET //etc/passwd HTTP/1.1",
        b"GET ///etc/passwd HTTP/1.1",
        b"GET /static/../src/main.rs HTTP/1.1",
        b"GET /static/index.html HTTP/1.1",
        b"GET /..%5cCargo.toml HTTP/1.1",
        b"GET /%5c..%5cCargo.toml HTTP/1.1",
        b"GET /vendor/..%5c..%5cCargo.toml HTTP/1.1",
        b"GET /index.html%00 HTTP/1.1",
        b"GET /index.html%00.js HTTP/1.1",
        b"GET /%00 HTTP/1.1",
        b"GET /./index.html HTTP/1.1",
        b"GET /vendor/./README.txt HTTP/1.1",
        b"GET /.git/config HTTP/1.1",
        b"GET /%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd HTTP/1.1",
        b"GET http://127.0.0.1/../Cargo.toml HTTP/1.1",
        b"GET /..\\Cargo.toml HTTP/1.1",
        b"GET /\\..\\..\\Cargo.toml HTTP/1.1",
        b"GET /vendor\\..\\..\\Cargo.toml HTTP/1.1",
        b"HEAD /../Cargo.toml HTTP/1.1",
        b"HEAD /%2e%2e/Cargo.toml HTTP/1.1",
    ];
    for attempt in attempts {
        let shown = String::from_utf8_lossy(attempt);
        let (status, head, body) = raw_request(port, attempt).await;
        assert_eq!(status, 404, "{shown}: {head}");
        if !attempt.starts_with(b"HEAD") {
            let envelope: Value = serde_json::from_slice(&body)
                .unwrap_or_else(|_| panic!("{shown}: a JSON envelope: {body:?}"));
            assert_eq!(envelope["code"], 404, "{shown}: {envelope}");
        }
        assert_nothing_leaked(&shown, &body);
    }

    // Bytes the HTTP parser refuses before any routing (a raw NUL, a target without its leading
    // slash): 400, and never a file either.
    let malformed: &[&[u8]] = &[
        b"GET /index.html\0 HTTP/1.1",
        b"GET \\etc\\passwd HTTP/1.1",
        b"GET ../Cargo.toml HTTP/1.1",
    ];
    for attempt in malformed {
        let shown = String::from_utf8_lossy(attempt);
        let (status, head, body) = raw_request(port, attempt).await;
        assert_eq!(status, 400, "{shown:?}: refused, not served: {head}");
        assert_nothing_leaked(&shown, &body);
    }
}

fn assert_nothing_leaked(what: &str, body: &[u8]) {
    let text = String::from_utf8_lossy(body);
    for secret in [
        "[package]",
        "root:x:",
        "root:*:",
        "fn main",
        "[core]",
        "<html",
    ] {
        assert!(
            !text.contains(secret),
            "{what}: the answer holds {secret:?}: {text}"
        );
    }
}

/// Unknown names are 404 in the envelope: a non-API path does not fall back to the page (it
/// uses hash routes), and an unknown `/api` path keeps its JSON 404.
#[tokio::test]
async fn unknown_paths_are_404_not_the_page() {
    let app = spawn_app().await;
    for path in [
        "/tasks/3",
        "/nope.html",
        "/vendor/nope.js",
        "/index.htm",
        "/apix",
    ] {
        let answer = fetch(&app, Method::GET, path, &[]).await;
        assert_error(&answer.reply(), 404, "no such");
        assert_security_headers(path, &answer.headers);
        let head = fetch(&app, Method::HEAD, path, &[]).await;
        assert_eq!(head.status, StatusCode::NOT_FOUND, "HEAD {path}");
    }
    let api = get_bytes(&app, "/api/nope", &[]).await;
    assert_error(&api.reply(), 404, "no such route");
    assert_eq!(api.header("content-type"), "application/json");
}

// ---------------------------------------------------------------------------------------------
// Audio: media files
// ---------------------------------------------------------------------------------------------

/// An uploaded prompt plays back as the stored WAV (8 kHz mono 16-bit): whole, by ranges, HEAD;
/// with `?token=` instead of the header, for a readonly user too; 401 without a token; 404 for
/// an unknown id; 400 for an id that is not one.
#[tokio::test]
async fn a_media_file_plays_whole_by_range_and_with_a_query_token() {
    let app = spawn_app().await;
    let media = app.upload_media("welcome", &sine_16k(500)).await;
    let id = media["media_id"].as_i64().expect("a media id");
    let stored = std::fs::read(media["media_path"].as_str().unwrap()).expect("the stored file");
    let path = format!("/api/media_files/{id}/audio");

    let whole = get_bytes(&app, &path, &[]).await;
    assert_whole_wav(&path, &whole, &stored);
    let (channels, rate, bits, data) = wav_format(&whole.body);
    assert_eq!((channels, rate, bits), (1, 8000, 16), "the stored form");
    assert_eq!(data, 500 * 8 * 2, "half a second at 8 kHz, 16-bit");

    assert_ranges(&app, &path, &stored).await;

    let etag = whole.header("etag");
    assert!(!etag.is_empty(), "an ETag");
    let unchanged = get_bytes(&app, &path, &[("If-None-Match", &etag)]).await;
    assert_eq!(unchanged.status, StatusCode::NOT_MODIFIED);
    assert!(unchanged.body.is_empty());

    let head = fetch(&app, Method::HEAD, &path, &[("X-XTRA-AUTH-ID", &app.token)]).await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), stored.len().to_string());
    assert_eq!(head.header("content-type"), "audio/wav");

    // ?token= as an <audio> element sends it; a readonly user may play.
    let with_query = fetch(
        &app,
        Method::GET,
        &format!("{path}?token={}", app.token),
        &[],
    )
    .await;
    assert_whole_wav("?token=", &with_query, &stored);
    let listener = create_readonly_token(&app).await;
    let readonly = fetch(&app, Method::GET, &format!("{path}?token={listener}"), &[]).await;
    assert_whole_wav("a readonly user's ?token=", &readonly, &stored);
    let ranged = fetch(
        &app,
        Method::GET,
        &format!("{path}?token={listener}"),
        &[("Range", "bytes=0-43")],
    )
    .await;
    assert_eq!(ranged.status, StatusCode::PARTIAL_CONTENT);
    assert!(ranged.body == stored[..44]);

    let anonymous = fetch(&app, Method::GET, &path, &[]).await;
    assert_error(&anonymous.reply(), 401, "token");
    assert!(anonymous.body.len() < 200 && !anonymous.body.starts_with(b"RIFF"));
    let wrong = fetch(&app, Method::GET, &format!("{path}?token=not-a-token"), &[]).await;
    assert_error(&wrong.reply(), 401, "unknown or expired");
    let empty = fetch(&app, Method::GET, &format!("{path}?token="), &[]).await;
    assert_error(&empty.reply(), 401, "token");

    let unknown = get_bytes(&app, &format!("/api/media_files/{}/audio", id + 1000), &[]).await;
    assert_error(&unknown.reply(), 404, "media file");
    let not_an_id = get_bytes(&app, "/api/media_files/abc/audio", &[]).await;
    assert_error(&not_an_id.reply(), 400, "id");
    let writes = fetch(&app, Method::POST, &path, &[("X-XTRA-AUTH-ID", &app.token)]).await;
    assert_error(&writes.reply(), 405, "not allowed");
}

/// A media row whose path was changed to point outside the store (an absolute path, `..`, a
/// symbolic link in the store leading out) is 404 and serves none of that file.
#[tokio::test]
async fn a_tampered_media_path_outside_the_store_is_404() {
    let app = spawn_app().await;
    let media = app.upload_media("welcome", &sine_16k(100)).await;
    let id = media["media_id"].as_i64().unwrap();
    let store = app.data_dir.path().join("media");
    let secret = app.data_dir.path().join("secret.wav");
    std::fs::write(&secret, b"RIFF-not-for-you").unwrap();
    std::os::unix::fs::symlink(&secret, store.join("link.wav")).unwrap();
    std::fs::create_dir(store.join("sub")).unwrap();

    let outside = [
        "/etc/passwd".to_owned(),
        secret.display().to_string(),
        format!("{}/../secret.wav", store.display()),
        store.join("link.wav").display().to_string(),
        store.join("sub").display().to_string(),
        store.display().to_string(),
        app.database_path().display().to_string(),
        "../secret.wav".to_owned(),
        String::new(),
    ];
    let path = format!("/api/media_files/{id}/audio");
    for stored in outside {
        app.db()
            .execute(
                "UPDATE media_files SET path = ?1 WHERE id = ?2",
                outcall::db::rusqlite::params![stored, id],
            )
            .unwrap();
        let answer = get_bytes(&app, &path, &[]).await;
        assert_error(&answer.reply(), 404, "no stored audio");
        let text = String::from_utf8_lossy(&answer.body);
        assert!(
            !text.contains("not-for-you") && !text.contains("root:") && !text.contains("SQLite"),
            "{stored}: {text}"
        );
    }
    // Pointed back at its own file, it plays again: the refusals were about the path.
    app.db()
        .execute(
            "UPDATE media_files SET path = ?1 WHERE id = ?2",
            outcall::db::rusqlite::params![media["media_path"].as_str().unwrap(), id],
        )
        .unwrap();
    assert_eq!(get_bytes(&app, &path, &[]).await.status, StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------
// Audio: recordings
// ---------------------------------------------------------------------------------------------

/// A task of two numbers, never started; answers the task id and the numbers' ids.
async fn task_with_two_numbers(app: &TestApp) -> (i64, i64, i64) {
    let id = app.create_task("recordings").await;
    app.import(id, &["13800138000".to_owned(), "13800138001".to_owned()])
        .await;
    let numbers = app.all_numbers(id).await;
    let number_id = |dest: &str| -> i64 {
        numbers
            .iter()
            .find(|n| n["dest_number"] == dest)
            .and_then(|n| id_of(&n["id"]))
            .unwrap_or_else(|| panic!("{dest} has an id: {numbers:?}"))
    };
    (id, number_id("13800138000"), number_id("13800138001"))
}

/// An id as the numbers list gives it (a string of digits).
fn id_of(value: &Value) -> Option<i64> {
    value.as_str().and_then(|id| id.parse().ok())
}

fn set_record_path(app: &TestApp, number_id: i64, record_path: &str) {
    app.db()
        .execute(
            "UPDATE numbers SET record_path = ?1 WHERE id = ?2",
            outcall::db::rusqlite::params![record_path, number_id],
        )
        .unwrap();
}

/// A recording file in `<data-dir>/recordings` named by a number's `record_path` (written here
/// through the SQLite file, as the sip back end would): it plays whole and by ranges, with
/// `?token=`; a number without one, a number of another task, an unknown task are 404; a
/// `record_path` changed to lead outside the directory is 404 and leaks nothing.
#[tokio::test]
async fn a_recording_plays_and_only_from_the_recordings_directory() {
    let app = spawn_app().await;
    let (task, recorded, silent) = task_with_two_numbers(&app).await;
    let recordings = app.data_dir.path().join("recordings");
    std::fs::create_dir_all(&recordings).unwrap();
    let samples: Vec<i16> = (0..8000).map(|n| ((n % 80) * 300 - 12000) as i16).collect();
    let file = wav::encode_wav(&samples, 2, 8000);
    let file_path = recordings.join("0b5d7c9e-recording.wav");
    std::fs::write(&file_path, &file).unwrap();
    set_record_path(&app, recorded, &file_path.display().to_string());

    let path = format!("/api/out_call_tasks/{task}/numbers/{recorded}/recording");
    let whole = get_bytes(&app, &path, &[]).await;
    assert_whole_wav(&path, &whole, &file);
    assert!(
        whole
            .header("content-disposition")
            .contains("0b5d7c9e-recording.wav"),
        "{}",
        whole.header("content-disposition")
    );
    assert_eq!(wav_format(&whole.body).0, 2, "stereo");
    assert_ranges(&app, &path, &file).await;
    let with_query = fetch(
        &app,
        Method::GET,
        &format!("{path}?token={}", app.token),
        &[],
    )
    .await;
    assert_whole_wav("?token=", &with_query, &file);
    let listener = create_readonly_token(&app).await;
    let readonly = fetch(&app, Method::GET, &format!("{path}?token={listener}"), &[]).await;
    assert_whole_wav("a readonly user", &readonly, &file);
    let anonymous = fetch(&app, Method::GET, &path, &[]).await;
    assert_error(&anonymous.reply(), 401, "token");

    let none = get_bytes(
        &app,
        &format!("/api/out_call_tasks/{task}/numbers/{silent}/recording"),
        &[],
    )
    .await;
    assert_error(&none.reply(), 404, "has no recording");
    let other_task = app.create_task("another").await;
    let elsewhere = get_bytes(
        &app,
        &format!("/api/out_call_tasks/{other_task}/numbers/{recorded}/recording"),
        &[],
    )
    .await;
    assert_error(&elsewhere.reply(), 404, "not found");
    let no_task = get_bytes(
        &app,
        &format!(
            "/api/out_call_tasks/{}/numbers/{recorded}/recording",
            task + 100
        ),
        &[],
    )
    .await;
    assert_error(&no_task.reply(), 404, "not found");
    let bad_id = get_bytes(
        &app,
        &format!("/api/out_call_tasks/{task}/numbers/x/recording"),
        &[],
    )
    .await;
    assert_error(&bad_id.reply(), 400, "id");

    // Tampered rows: nothing outside the recordings directory is served.
    let secret = app.data_dir.path().join("secret.wav");
    std::fs::write(&secret, b"RIFF-not-for-you").unwrap();
    std::os::unix::fs::symlink(&secret, recordings.join("link.wav")).unwrap();
    let media = app.data_dir.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    std::fs::write(media.join("prompt.wav"), &file).unwrap();
    for stored in [
        "/etc/passwd".to_owned(),
        secret.display().to_string(),
        format!("{}/../secret.wav", recordings.display()),
        format!("{}/../outcall.db", recordings.display()),
        recordings.join("link.wav").display().to_string(),
        recordings.display().to_string(),
        media.join("prompt.wav").display().to_string(),
        recordings.join("missing.wav").display().to_string(),
    ] {
        set_record_path(&app, recorded, &stored);
        let answer = get_bytes(&app, &path, &[]).await;
        assert_error(&answer.reply(), 404, "has no recording");
        let text = String::from_utf8_lossy(&answer.body);
        assert!(
            !text.contains("not-for-you") && !text.contains("root:") && !text.contains("SQLite"),
            "{stored}: {text}"
        );
    }
}

/// A real SIP call with `auto_record=1` against sipp: the recording the sip back end wrote is
/// served by the route, whole (a stereo 8 kHz WAV, the bytes of `record_path`) and by range.
#[tokio::test]
async fn a_real_sip_recording_plays_through_the_route() {
    if !Path::new(SIPP).exists() {
        eprintln!("SKIPPED a_real_sip_recording_plays_through_the_route: {SIPP} is not installed");
        return;
    }
    let mut sipp = Sipp::start("answer_then_hangup.xml", 1);
    let outcall = spawn_sip_app(SipOptions::new(sipp.trunk(), 40)).await;
    let prompt = outcall.prompt("long.wav", 3000);
    let id = outcall
        .start_task(
            "recorded call",
            json!({"action": "playback", "data": prompt, "auto_record": 1, "calling_time": 10}),
            &["1001".to_owned()],
        )
        .await;
    let number = outcall
        .finish_one(
            id,
            Duration::from_secs(10),
            &mut sipp,
            &Expected::NORMAL_CLEARING,
        )
        .await;
    let record_path = number["record_path"].as_str().unwrap().to_owned();
    assert!(!record_path.is_empty(), "auto_record=1 records: {number}");
    let file = std::fs::read(&record_path).expect("the recording exists");
    let number_id = id_of(&number["id"]).expect("the number's id");
    let app = &outcall.app;
    let path = format!("/api/out_call_tasks/{id}/numbers/{number_id}/recording");
    let whole = fetch(
        app,
        Method::GET,
        &format!("{path}?token={}", app.token),
        &[],
    )
    .await;
    assert_whole_wav(&path, &whole, &file);
    let (channels, rate, bits, _) = wav_format(&whole.body);
    assert_eq!((channels, rate, bits), (2, 8000, 16), "stereo 8 kHz 16-bit");
    assert_ranges(app, &path, &file).await;
}

/// A 32 MiB recording, fetched whole four times at once from the real binary, streams: the
/// bytes arrive intact and the server's peak RSS grows by far less than the file (generous
/// bound: 16 MiB for all four transfers together, which hold 128 MiB).
#[tokio::test]
async fn a_large_recording_streams_in_flat_memory() {
    const SIZE: usize = 32 * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let mut server = common::process::Outcall::in_dir(dir.path()).spawn();
    let api = server.connect().await;
    let task = api.create_task("large recording").await;
    api.import(task, &["13800138000".to_owned()]).await;
    let number_id = id_of(&api.all_numbers(task).await[0]["id"]).expect("an id");

    let recordings = common::process::data_dir(dir.path()).join("recordings");
    std::fs::create_dir_all(&recordings).unwrap();
    let file_path = recordings.join("large.wav");
    // Every 4 bytes their own offset: a misplaced chunk cannot match.
    let content: Vec<u8> = (0..SIZE as u32 / 4).flat_map(u32::to_le_bytes).collect();
    std::fs::write(&file_path, &content).unwrap();
    common::db::open(&common::process::database(dir.path()))
        .execute(
            "UPDATE numbers SET record_path = ?1 WHERE id = ?2",
            outcall::db::rusqlite::params![file_path.display().to_string(), number_id],
        )
        .unwrap();

    let pid = server.pid();
    let before = common::process::proc_status_kib(pid, "VmHWM");
    let url = api.url(&format!(
        "/api/out_call_tasks/{task}/numbers/{number_id}/recording?token={}",
        api.token
    ));
    let started = std::time::Instant::now();
    let transfers = (0..4).map(|_| {
        let client = api.client.clone();
        let url = url.clone();
        let content = &content;
        async move {
            let mut response = client.get(&url).send().await.expect("an answer");
            assert_eq!(response.status(), StatusCode::OK);
            let mut received = 0usize;
            while let Some(chunk) = response.chunk().await.expect("a chunk") {
                assert!(
                    chunk[..] == content[received..received + chunk.len()],
                    "the file's bytes at {received}"
                );
                received += chunk.len();
            }
            received
        }
    });
    for received in futures_util::future::join_all(transfers).await {
        assert_eq!(received, SIZE);
    }
    let elapsed = started.elapsed();
    let after = common::process::proc_status_kib(pid, "VmHWM");
    let growth_mib = after.saturating_sub(before) as f64 / 1024.0;
    println!(
        "4 × {} MiB in {elapsed:?} ({:.0} MiB/s); server peak RSS {before} → {after} KiB (+{growth_mib:.1} MiB)",
        SIZE >> 20,
        ((4 * SIZE) >> 20) as f64 / elapsed.as_secs_f64()
    );
    assert!(
        growth_mib < 16.0,
        "the recording streams: peak RSS grew by {growth_mib:.1} MiB for 4 × 32 MiB"
    );
}
