//! The media store against hostile input: a task's media reference reaches only prompts of the
//! store, and uploads are bounded for the whole request and in length.
//!
//! Each test starts the real server (and, where a task is started, the real SIP back end) on
//! random loopback ports with temporary data directories.

mod common;

use std::time::Duration;

use common::{
    assert_error,
    process::self_rss_kib,
    sipp::{free_udp_port, sine_wav, spawn_sip_app, SipApp, SipOptions},
    spawn_app_with, success_data, TestApp,
};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BOUNDARY: &str = "----outcall-hostile-boundary-3f9a";

/// outcall with the SIP back end; its trunk is a UDP port where nothing listens (no call here
/// needs to get through). Answers the app and the back end's data directory.
async fn spawn_hostile_app() -> (TestApp, tempfile::TempDir) {
    let mut options = SipOptions::new(format!("127.0.0.1:{}", free_udp_port()), 0);
    options.rtp_ports = (27000, 27999);
    options.max_call_duration = Duration::from_secs(10);
    let SipApp { app, dir, .. } = spawn_sip_app(options).await;
    (app, dir)
}

/// A multipart body: `(field name, file name, bytes)` per field.
fn multipart(fields: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, file_name, bytes) in fields {
        let disposition = match file_name {
            Some(file_name) => format!("form-data; name=\"{name}\"; filename=\"{file_name}\""),
            None => format!("form-data; name=\"{name}\""),
        };
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

async fn upload(app: &TestApp, body: Vec<u8>) -> common::Reply {
    app.post_multipart("/api/media_files", BOUNDARY, body).await
}

/// An 8-bit PCM WAV at `rate` Hz lasting `seconds`.
fn low_rate_wav(rate: u32, seconds: u32) -> Vec<u8> {
    let data_len = rate * seconds;
    let mut bytes = Vec::with_capacity(44 + data_len as usize);
    bytes.extend_from_slice(b"RIFF");
    bytes.extend_from_slice(&(36 + data_len).to_le_bytes());
    bytes.extend_from_slice(b"WAVEfmt ");
    bytes.extend_from_slice(&16u32.to_le_bytes());
    bytes.extend_from_slice(&1u16.to_le_bytes()); // PCM
    bytes.extend_from_slice(&1u16.to_le_bytes()); // mono
    bytes.extend_from_slice(&rate.to_le_bytes());
    bytes.extend_from_slice(&rate.to_le_bytes()); // bytes per second
    bytes.extend_from_slice(&1u16.to_le_bytes()); // block align
    bytes.extend_from_slice(&8u16.to_le_bytes());
    bytes.extend_from_slice(b"data");
    bytes.extend_from_slice(&data_len.to_le_bytes());
    bytes.resize(44 + data_len as usize, 128);
    bytes
}

/// A task's media reference resolves only to a prompt of the media store. Files elsewhere,
/// escapes with `..` or a symbolic link, a FIFO, a device and a missing file are all refused at
/// start with a 400 and the same message (which therefore says nothing about what exists), and
/// none of them hangs the server. An upload is reachable by its media object or its media_id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_prompts_of_the_media_store_are_played() {
    let (app, dir) = spawn_hostile_app().await;
    let media = dir.path().join("media");
    assert!(media.is_dir(), "the back end creates its media store");

    let outside = tempfile::tempdir().unwrap();
    let outside_wav = outside.path().join("prompt.wav");
    std::fs::write(&outside_wav, sine_wav(200, 440.0)).unwrap();
    let fifo_outside = outside.path().join("fifo.wav");
    let fifo_inside = media.join("fifo.wav");
    for fifo in [&fifo_outside, &fifo_inside] {
        let made = std::process::Command::new("mkfifo")
            .arg(fifo)
            .status()
            .unwrap();
        assert!(made.success());
    }
    std::os::unix::fs::symlink("/etc/passwd", media.join("link.wav")).unwrap();
    std::os::unix::fs::symlink(&outside_wav, media.join("link2.wav")).unwrap();
    std::fs::create_dir(media.join("folder.wav")).unwrap();

    let id = app.create_task("hostile media").await;
    app.import(id, &["1000".to_owned()]).await;
    let refused_references: Vec<String> = vec![
        "/etc/shadow".into(),
        "/etc/passwd".into(),
        "/dev/zero".into(),
        "/dev/urandom".into(),
        "/proc/self/environ".into(),
        fifo_outside.display().to_string(),
        fifo_inside.display().to_string(),
        "fifo.wav".into(),
        outside_wav.display().to_string(),
        "../../../../../../etc/passwd".into(),
        format!("{}/../outcall.db", media.display()),
        "link.wav".into(),
        "link2.wav".into(),
        "folder.wav".into(),
        "missing.wav".into(),
        "/nonexistent/prompt.wav".into(),
        json!({"media_id": 999, "media_path": "", "media_type": "UPLOAD", "media_name": "x"})
            .to_string(),
        json!({"media_id": "../../etc/passwd"}).to_string(),
    ];
    let mut messages = Vec::new();
    for reference in &refused_references {
        for field in ["data", "group_confirm_file"] {
            let settings = if field == "data" {
                json!({"action": "playback", "data": reference, "group_confirm_key": "", "group_confirm_file": ""})
            } else {
                json!({"action": "", "data": "", "group_confirm_key": "1", "group_confirm_file": reference})
            };
            app.update_task(id, settings).await;
            let reply =
                tokio::time::timeout(Duration::from_secs(10), app.start_stop("start", &[id]))
                    .await
                    .unwrap_or_else(|_| panic!("starting with {reference} hangs"));
            assert_error(&reply, 400, field);
            let message = reply.body["message"].as_str().unwrap().to_owned();
            assert!(message.contains("media store"), "{reference}: {message}");
            messages.push((field, reference.clone(), message));
        }
    }
    for field in ["data", "group_confirm_file"] {
        let distinct: std::collections::BTreeSet<&String> = messages
            .iter()
            .filter(|(f, _, _)| *f == field)
            .map(|(_, _, message)| message)
            .collect();
        assert_eq!(
            distinct.len(),
            1,
            "one message for every refusal: {messages:#?}"
        );
    }
    assert_eq!(app.task(id).await["status"], "init");

    // The server is still answering at once (no worker is stuck on a FIFO).
    let health = tokio::time::timeout(Duration::from_secs(2), app.get("/healthz"))
        .await
        .expect("the server answers");
    assert_eq!(health.status, StatusCode::OK);

    // An upload, by its whole media object, by its media_id alone, and by its file name.
    let reply = upload(
        &app,
        multipart(&[("file", Some("hello.wav"), &sine_wav(300, 440.0))]),
    )
    .await;
    let uploaded = success_data(&reply);
    let media_id = uploaded["media_id"].as_i64().unwrap();
    for (index, reference) in [
        uploaded.to_string(),
        json!({"media_id": media_id}).to_string(),
        json!({"media_id": media_id.to_string(), "media_path": ""}).to_string(),
        format!("{media_id}.wav"),
    ]
    .into_iter()
    .enumerate()
    {
        let task = app.create_task(&format!("uploaded {index}")).await;
        app.update_task(task, json!({"action": "playback", "data": reference}))
            .await;
        app.import(task, &["1001".to_owned()]).await;
        let reply = app.start_stop("start", &[task]).await;
        assert_eq!(reply.status, StatusCode::OK, "{reference}: {}", reply.body);
        app.stop(&[task]).await;
    }
}

/// The body limit holds for the whole multipart request: fields each under it but together over
/// it are refused with 413, a declared length over it is refused before the body is read, and a
/// 300 MiB stream of fields costs no memory beyond the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_bounded_for_the_whole_request() {
    const LIMIT: usize = 4 * 1024 * 1024;
    let app = spawn_app_with(|config| config.body_limit = LIMIT).await;

    let three_mib = vec![b'x'; 3 * 1024 * 1024];
    let reply = upload(
        &app,
        multipart(&[
            ("padding", None, &three_mib),
            ("file", Some("a.wav"), &three_mib),
        ]),
    )
    .await;
    assert_error(&reply, 413, "file");
    let reply = upload(
        &app,
        multipart(&[
            ("file", Some("a.wav"), &three_mib),
            ("file", Some("b.wav"), &three_mib),
        ]),
    )
    .await;
    assert_error(&reply, 413, "file");

    // Endless empty fields cost no body bytes, but are cut short too.
    let empty: &[u8] = b"";
    let many: Vec<(&str, Option<&str>, &[u8])> = (0..1000).map(|_| ("pad", None, empty)).collect();
    let reply = upload(&app, multipart(&many)).await;
    assert_error(&reply, 400, "fields");

    // A declared 300 MiB: refused from the headers.
    let response = raw_upload(&app, Some(300 * 1024 * 1024), 0).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");

    // 300 MiB streamed in many fields without a declared length: refused once over the limit,
    // and memory does not grow with what was sent.
    let before = self_rss_kib();
    let response = raw_upload(&app, None, 300 * 1024 * 1024).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    let grown_mib = self_rss_kib().saturating_sub(before) / 1024;
    assert!(grown_mib < 64, "memory grew by {grown_mib} MiB");

    // Within the limit, uploads still work.
    let reply = upload(
        &app,
        multipart(&[("file", Some("ok.wav"), &sine_wav(100, 440.0))]),
    )
    .await;
    success_data(&reply);
}

/// Sends a multipart upload over a raw connection: with `declared` as Content-Length, or
/// chunked, streaming up to `send` bytes of 1 MiB fields until the server answers (or closes).
/// Answers the response's text.
async fn raw_upload(app: &TestApp, declared: Option<u64>, send: usize) -> String {
    let address = app.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let length_header = match declared {
        Some(length) => format!("Content-Length: {length}\r\n"),
        None => "Transfer-Encoding: chunked\r\n".to_owned(),
    };
    let head = format!(
        "POST /api/media_files HTTP/1.1\r\nHost: {address}\r\nX-XTRA-AUTH-ID: {}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n{length_header}\r\n",
        app.token
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let sender = tokio::spawn(async move {
        let field = multipart_field_chunk();
        let mut sent = 0;
        while sent < send {
            let chunk = format!("{:x}\r\n", field.len());
            let wrote = async {
                writer.write_all(chunk.as_bytes()).await?;
                writer.write_all(&field).await?;
                writer.write_all(b"\r\n").await
            }
            .await;
            if wrote.is_err() {
                break;
            }
            sent += field.len();
        }
        sent
    });
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    response.extend_from_slice(&buffer[..n]);
                    if response.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer within 60 s");
    sender.abort();
    String::from_utf8_lossy(&response).into_owned()
}

/// One 1 MiB multipart field that is not a file.
fn multipart_field_chunk() -> Vec<u8> {
    let mut field = format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"pad\"\r\n\r\n")
        .into_bytes();
    field.resize(1024 * 1024 - 2, b'p');
    field.extend_from_slice(b"\r\n");
    field
}

/// A prompt may last 10 minutes. A longer one is refused from its header, before anything is
/// decoded: a 1 kHz WAV, which would be upsampled eightfold, costs no more than its upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_are_capped_at_ten_minutes() {
    let app = spawn_app_with(|_| {}).await;
    let reply = upload(
        &app,
        multipart(&[("file", Some("long.wav"), &low_rate_wav(1000, 601))]),
    )
    .await;
    assert_error(&reply, 400, "file");
    let message = reply.body["message"].as_str().unwrap();
    assert!(message.contains("600 s"), "{message}");

    // Just under the cap is taken (a full 10 minutes is checked by the unit tests: converting it
    // takes long in a debug build).
    let reply = upload(
        &app,
        multipart(&[("file", Some("ten.wav"), &low_rate_wav(1000, 60))]),
    )
    .await;
    let stored = success_data(&reply);
    let listed = app.get("/api/media_files").await;
    let item: &Value = listed.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["media_id"] == stored["media_id"])
        .unwrap();
    assert_eq!(item["duration_ms"], 60_000, "{item}");
    // Stored as 8 kHz 16-bit mono.
    assert_eq!(item["bytes"], 44 + 60 * 8000 * 2, "{item}");
}
