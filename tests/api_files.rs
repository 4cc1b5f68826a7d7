//! Files in and out: the CSV / XLSX / JSON export of a task's numbers, and the multipart import of
//! a CSV (UTF-8, BOM, GBK) or XLSX file. Exports are read back with the `csv` crate and `calamine`,
//! and compared with the JSON download, the vendor's form.

mod common;

use std::{collections::HashMap, io::Cursor, time::Duration};

use calamine::{Data, Reader};
use common::{
    assert_error, phone_numbers, process::Outcall, spawn_app, spawn_app_with, Api, Reply,
};
use reqwest::{header, StatusCode};
use serde_json::{json, Value};

const TASKS: &str = "/api/out_call_tasks";
const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// A download's status, headers and bytes.
struct Download {
    status: StatusCode,
    headers: header::HeaderMap,
    bytes: Vec<u8>,
}

impl Download {
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn error(&self) -> Reply {
        Reply {
            status: self.status,
            body: serde_json::from_slice(&self.bytes).unwrap_or(Value::Null),
        }
    }
}

async fn download(api: &Api, id: i64, query: &str) -> Download {
    let response = api.download(id, query).await;
    Download {
        status: response.status(),
        headers: response.headers().clone(),
        bytes: response.bytes().await.expect("a body").to_vec(),
    }
}

/// The CSV export's rows, after checking its type, name, and BOM.
fn csv_rows(download: &Download, id: i64) -> Vec<Vec<String>> {
    assert_eq!(download.status, StatusCode::OK);
    assert_eq!(
        download.header(header::CONTENT_TYPE),
        "text/csv; charset=utf-8"
    );
    assert_eq!(
        download.header(header::CONTENT_DISPOSITION),
        format!("attachment; filename=\"task-{id}.csv\"")
    );
    assert!(
        download.bytes.starts_with(BOM),
        "the CSV starts with a UTF-8 BOM"
    );
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(&download.bytes[BOM.len()..])
        .records()
        .map(|record| {
            record
                .expect("a CSV record")
                .iter()
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

/// The XLSX export's cells (first sheet), after checking its type and name.
fn xlsx_rows(download: &Download, id: i64) -> Vec<Vec<Data>> {
    assert_eq!(download.status, StatusCode::OK);
    assert_eq!(download.header(header::CONTENT_TYPE), XLSX);
    assert_eq!(
        download.header(header::CONTENT_DISPOSITION),
        format!("attachment; filename=\"task-{id}.xlsx\"")
    );
    let mut workbook =
        calamine::Xlsx::new(Cursor::new(download.bytes.clone())).expect("a readable workbook");
    let sheet = workbook.sheet_names()[0].clone();
    let range = workbook.worksheet_range(&sheet).expect("the first sheet");
    assert_eq!(range.start(), Some((0, 0)), "the sheet starts at A1");
    range.rows().map(|row| row.to_vec()).collect()
}

/// The JSON download's rows, each a list of strings.
async fn json_rows(api: &Api, id: i64, query: &str) -> Vec<Vec<String>> {
    let download = download(api, id, query).await;
    assert_eq!(download.status, StatusCode::OK);
    assert_eq!(download.header(header::CONTENT_TYPE), "application/json");
    let rows: Vec<Vec<String>> = serde_json::from_slice(&download.bytes).expect("rows of strings");
    // Byte for byte the compact array the download has always sent.
    assert_eq!(download.bytes, serde_json::to_vec(&rows).unwrap());
    rows
}

/// What a spreadsheet cell must hold for a JSON cell: text beginning with `=`, `+`, `-` or `@`
/// gets a leading `'`.
fn neutralised(cell: &str) -> String {
    if cell.starts_with(['=', '+', '-', '@']) {
        format!("'{cell}")
    } else {
        cell.to_owned()
    }
}

/// The vendor's header (the JSON download's first row).
fn vendor_header() -> Vec<String> {
    common::shapes::DOWNLOAD_HEADER.map(str::to_owned).to_vec()
}

#[tokio::test]
async fn csv_and_xlsx_exports_hold_the_rows_of_the_json_download() {
    let app = spawn_app_with(|config| config.sim.time_scale = 0.01).await;
    // Every outcome of the sim (its last digit), and an international number.
    let mut numbers: Vec<String> = (0..10).map(|n| format!("1380013800{n}")).collect();
    numbers.push("+8613900139000".into());
    let id = app
        .start_campaign(
            "外呼 export",
            json!({"max_caps": 50, "max_concurrency": 20, "calling_time": 5}),
            &numbers,
        )
        .await;
    app.wait_done(id, Duration::from_secs(30)).await;

    let json = json_rows(&app, id, "").await;
    assert_eq!(json, json_rows(&app, id, "?format=json").await);
    assert_eq!(json[0], vendor_header());
    assert_eq!(json.len(), numbers.len() + 1);
    let exported: Vec<&str> = json[1..].iter().map(|row| row[2].as_str()).collect();
    assert_eq!(exported, numbers, "a row a number, in id order");
    assert!(
        json[1..]
            .iter()
            .any(|row| !row[7].is_empty() && !row[5].is_empty()),
        "some calls were answered: {json:?}"
    );

    let csv = csv_rows(&download(&app, id, "?format=csv").await, id);
    assert_eq!(
        csv.len(),
        json.len(),
        "one CSV row a number, after the header"
    );
    for (csv_row, json_row) in csv.iter().zip(&json) {
        let expected: Vec<String> = json_row.iter().map(|cell| neutralised(cell)).collect();
        assert_eq!(csv_row, &expected);
    }
    assert_eq!(csv.last().unwrap()[2], "'+8613900139000");

    let xlsx = xlsx_rows(&download(&app, id, "?format=xlsx").await, id);
    assert_eq!(
        xlsx.len(),
        json.len(),
        "one sheet row a number, after the header"
    );
    for (row_index, (sheet_row, json_row)) in xlsx.iter().zip(&json).enumerate() {
        for (column, (cell, expected)) in sheet_row.iter().zip(json_row).enumerate() {
            let seconds = row_index > 0 && (column == 7 || column == 8);
            match cell {
                Data::Empty => assert_eq!(expected, "", "row {row_index} column {column}"),
                Data::Float(value) if seconds => {
                    assert_eq!(
                        value.to_string(),
                        *expected,
                        "row {row_index} column {column}"
                    )
                }
                Data::String(text) if !seconds => {
                    assert_eq!(
                        *text,
                        neutralised(expected),
                        "row {row_index} column {column}"
                    )
                }
                other => panic!("row {row_index} column {column}: {other:?} for {expected:?}"),
            }
        }
    }
    // Phone numbers stay text, never numbers.
    assert_eq!(xlsx[1][2], Data::String("13800138000".into()));
}

#[tokio::test]
async fn text_cells_that_a_spreadsheet_would_run_are_neutralised() {
    let app = spawn_app().await;
    for formula in ["=1+1", "@SUM(A1)", "-2", "+3"] {
        let id = app.create_task(formula).await;
        app.import_rows(
            id,
            vec![
                json!({"dest_number": "+8613800138000", "external_id": "=1+1"}),
                json!({"dest_number": "1000", "external_id": "@SUM(A1)"}),
            ],
        )
        .await;
        // The JSON download is the vendor's: unchanged.
        let json = json_rows(&app, id, "").await;
        assert_eq!(json[1][0], formula);
        assert_eq!(json[1][2], "+8613800138000");

        let csv = csv_rows(&download(&app, id, "?format=csv").await, id);
        assert_eq!(csv.len(), 3);
        assert_eq!(csv[1][0], format!("'{formula}"));
        assert_eq!(csv[1][2], "'+8613800138000");
        assert_eq!(csv[2][2], "1000");

        let xlsx = xlsx_rows(&download(&app, id, "?format=xlsx").await, id);
        assert_eq!(xlsx.len(), 3);
        assert_eq!(xlsx[1][0], Data::String(format!("'{formula}")));
        assert_eq!(xlsx[2][0], Data::String(format!("'{formula}")));
        assert_eq!(xlsx[1][2], Data::String("'+8613800138000".into()));
        assert_eq!(xlsx[2][2], Data::String("1000".into()));
    }
}

#[tokio::test]
async fn an_unknown_format_is_400_and_a_deleted_task_404() {
    let app = spawn_app().await;
    let id = app.create_task("formats").await;
    app.import(id, &phone_numbers(1000, 3)).await;
    for format in ["pdf", "CSV", "xls"] {
        let reply = download(&app, id, &format!("?format={format}"))
            .await
            .error();
        assert_error(&reply, 400, "format");
    }
    // An empty task: the header alone.
    let empty = app.create_task("empty").await;
    assert_eq!(
        csv_rows(&download(&app, empty, "?format=csv").await, empty),
        vec![vendor_header()]
    );
    assert_eq!(
        xlsx_rows(&download(&app, empty, "?format=xlsx").await, empty).len(),
        1
    );

    assert_eq!(
        app.delete(&format!("{TASKS}/{id}")).await.status,
        StatusCode::OK
    );
    for query in ["", "?format=json", "?format=csv", "?format=xlsx"] {
        let reply = download(&app, id, query).await.error();
        assert_error(&reply, 404, "");
        let reply = download(&app, 999_999, query).await.error();
        assert_error(&reply, 404, "");
    }
}

// ---- Imports ----

/// A `multipart/form-data` body of `fields` (name, file name, bytes) and its boundary.
fn form(fields: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "----outcall-test-boundary-7d1c".to_owned();
    let mut body = Vec::new();
    for (name, file_name, bytes) in fields {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match file_name {
            Some(file_name) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{file_name}\"\r\n\
                     Content-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (boundary, body)
}

/// Posts `file` (and option fields) to the task's import.
async fn import_file(api: &Api, id: i64, file: &[u8], options: &[(&str, &str)]) -> Reply {
    let mut fields: Vec<(&str, Option<&str>, &[u8])> = options
        .iter()
        .map(|(name, value)| (*name, None, value.as_bytes()))
        .collect();
    fields.push(("file", Some("numbers.csv"), file));
    let (boundary, body) = form(&fields);
    api.post_multipart(&format!("{TASKS}/{id}/import"), &boundary, body)
        .await
}

/// The import's counts, from the envelope whose `data` is a JSON string.
fn counts(reply: &Reply) -> Value {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["code"], 200);
    assert_eq!(reply.body["message"], "success");
    let data = reply.body["data"].as_str().expect("data is a JSON string");
    serde_json::from_str(data).expect("data holds JSON")
}

/// The task's numbers: dest_number → external_id.
async fn stored(api: &Api, id: i64) -> HashMap<String, String> {
    api.all_numbers(id)
        .await
        .into_iter()
        .map(|n| {
            (
                n["dest_number"].as_str().unwrap().to_owned(),
                n["external_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn expected(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(number, id)| (number.to_string(), id.to_string()))
        .collect()
}

#[tokio::test]
async fn a_gbk_csv_with_a_header_imports_its_good_rows_and_reports_the_bad() {
    let app = spawn_app().await;
    let id = app.create_task("gbk").await;
    let text = "号码,客户编号\r\n13800138000,张三\r\n12a,李四\r\n,王五\r\n\"13800138001\",赵六\r\n13800138002\r\n";
    let (gbk, _, unmappable) = encoding_rs::GBK.encode(text);
    assert!(!unmappable);
    assert!(
        std::str::from_utf8(&gbk).is_err(),
        "the bytes are not UTF-8"
    );
    let reply = import_file(
        &app,
        id,
        &gbk,
        &[
            ("number_column", "号码"),
            ("external_id_column", "客户编号"),
        ],
    )
    .await;
    let counts = counts(&reply);
    assert_eq!(counts["imported"], 3, "{counts}");
    assert_eq!(counts["rejected"], 2, "{counts}");
    let rejected = counts["first_rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2);
    assert_eq!(rejected[0]["row"], 3);
    assert_eq!(rejected[0]["value"], "12a");
    assert!(
        rejected[0]["reason"]
            .as_str()
            .unwrap()
            .contains("not dialable"),
        "{rejected:?}"
    );
    assert_eq!(rejected[1]["row"], 4);
    assert_eq!(rejected[1]["value"], "");
    assert!(
        rejected[1]["reason"].as_str().unwrap().contains("empty"),
        "{rejected:?}"
    );
    assert_eq!(
        stored(&app, id).await,
        expected(&[
            ("13800138000", "张三"),
            ("13800138001", "赵六"),
            ("13800138002", "")
        ])
    );
    assert_eq!(app.task(id).await["done_total"], "0/3");
}

#[tokio::test]
async fn a_utf8_csv_with_a_bom_by_column_numbers() {
    let app = spawn_app().await;
    let id = app.create_task("bom").await;
    let mut file = BOM.to_vec();
    file.extend_from_slice("编号,手机\nA-1,13900000001\nB-2,+8613900000002\n".as_bytes());
    // The header is guessed: the first row's number cell, "手机", is not dialable.
    let reply = import_file(
        &app,
        id,
        &file,
        &[("number_column", "2"), ("external_id_column", "1")],
    )
    .await;
    let counts = counts(&reply);
    assert_eq!(
        counts,
        json!({"imported": 2, "duplicates": 0, "dnc": 0, "rejected": 0, "first_rejected": []})
    );
    assert_eq!(
        stored(&app, id).await,
        expected(&[("13900000001", "A-1"), ("+8613900000002", "B-2")])
    );
}

#[tokio::test]
async fn the_header_is_guessed_unless_told() {
    let app = spawn_app().await;
    let list = b"13700000000\n13700000001\n13700000002\n";
    // No header: the first row's number is dialable, so it is a number.
    let guessed = app.create_task("guessed").await;
    assert_eq!(
        counts(&import_file(&app, guessed, list, &[]).await)["imported"],
        3
    );
    assert_eq!(stored(&app, guessed).await.len(), 3);
    // Told there is one: the first row is skipped.
    let told = app.create_task("told").await;
    let reply = import_file(&app, told, list, &[("has_header", "1")]).await;
    assert_eq!(counts(&reply)["imported"], 2);
    assert!(!stored(&app, told).await.contains_key("13700000000"));
    // Told there is none: a header-looking first row is a rejected number.
    let none = app.create_task("none").await;
    let reply = import_file(&app, none, b"phone\n13700000000\n", &[("has_header", "0")]).await;
    let counts = counts(&reply);
    assert_eq!(counts["imported"], 1);
    assert_eq!(counts["first_rejected"][0]["row"], 1);
    assert_eq!(counts["first_rejected"][0]["value"], "phone");
    // A bad value of has_header names it.
    let reply = import_file(&app, none, list, &[("has_header", "yes")]).await;
    assert_error(&reply, 400, "has_header");
}

#[tokio::test]
async fn an_xlsx_with_numeric_phone_cells_imports_them_as_integers() {
    let app = spawn_app().await;
    let id = app.create_task("xlsx").await;
    let mut workbook = rust_xlsxwriter::Workbook::new();
    let sheet = workbook.add_worksheet();
    sheet.write_string(0, 0, "客户").unwrap();
    sheet.write_string(0, 1, "手机号码").unwrap();
    sheet.write_number(1, 0, 7.0).unwrap();
    sheet.write_number(1, 1, 13_800_138_000.0).unwrap();
    sheet.write_string(2, 0, "乙").unwrap();
    sheet.write_string(2, 1, "13800138001").unwrap();
    sheet.write_string(3, 0, "丙").unwrap();
    sheet.write_number(3, 1, 1.5).unwrap();
    // Row 5 is left blank; row 6 follows it.
    sheet.write_string(5, 0, "丁").unwrap();
    sheet.write_number(5, 1, 10_086.0).unwrap();
    let bytes = workbook.save_to_buffer().unwrap();

    let reply = import_file(
        &app,
        id,
        &bytes,
        &[
            ("number_column", "手机号码"),
            ("external_id_column", "客户"),
        ],
    )
    .await;
    let counts = counts(&reply);
    assert_eq!(counts["imported"], 3, "{counts}");
    assert_eq!(counts["rejected"], 1, "{counts}");
    assert_eq!(counts["first_rejected"][0]["row"], 4);
    assert_eq!(counts["first_rejected"][0]["value"], "1.5");
    assert_eq!(
        stored(&app, id).await,
        expected(&[("13800138000", "7"), ("13800138001", "乙"), ("10086", "丁")])
    );
}

#[tokio::test]
async fn unknown_columns_empty_files_and_missing_files_are_400_and_import_nothing() {
    let app = spawn_app().await;
    let id = app.create_task("refused").await;
    let file = b"phone,name\n13800138000,a\n";
    for (options, field) in [
        (vec![("number_column", "mobile")], "number_column"),
        (vec![("number_column", "3")], "number_column"),
        (vec![("number_column", "0")], "number_column"),
        (vec![("external_id_column", "id")], "external_id_column"),
        (
            vec![("number_column", "phone"), ("has_header", "0")],
            "number_column",
        ),
    ] {
        let reply = import_file(&app, id, file, &options).await;
        assert_error(&reply, 400, field);
    }
    assert_error(&import_file(&app, id, b"", &[]).await, 400, "empty");
    assert_error(&import_file(&app, id, b"\n\n", &[]).await, 400, "no rows");
    let (boundary, body) = form(&[("number_column", None, b"1")]);
    let reply = app
        .post_multipart(&format!("{TASKS}/{id}/import"), &boundary, body)
        .await;
    assert_error(&reply, 400, "file");
    let reply = import_file(&app, id, b"PK\x03\x04not a zip", &[]).await;
    assert_error(&reply, 400, "xlsx");
    assert_eq!(app.task(id).await["done_total"], "0/0");
    // An unknown or deleted task.
    assert_error(&import_file(&app, 999_999, file, &[]).await, 404, "");
    // The JSON form keeps its all-or-nothing answer.
    let reply = app
        .post(
            &format!("{TASKS}/{id}/import"),
            json!({"data": [{"dest_number": "1000"}, {"dest_number": "12a"}]}),
        )
        .await;
    assert_error(&reply, 400, "data[1].dest_number");
    assert_eq!(app.task(id).await["done_total"], "0/0");
}

#[tokio::test]
async fn a_multipart_import_over_the_body_limit_is_413() {
    let app = spawn_app_with(|config| config.body_limit = 64 * 1024).await;
    let id = app.create_task("limit").await;
    let file: String = phone_numbers(13_000_000_000, 10_000)
        .iter()
        .map(|n| format!("{n}\n"))
        .collect();
    assert!(file.len() > 64 * 1024);
    assert_error(
        &import_file(&app, id, file.as_bytes(), &[]).await,
        413,
        "limit",
    );
    assert_eq!(app.task(id).await["done_total"], "0/0");
    // Sent chunked, with no length declared: the count of what arrives stops it.
    let (boundary, body) = form(&[("file", Some("numbers.csv"), file.as_bytes())]);
    let head = chunked_post(&app, &format!("{TASKS}/{id}/import"), &boundary, &body).await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(
        head.contains("file: the upload is over the limit"),
        "{head}"
    );
    assert_eq!(app.task(id).await["done_total"], "0/0");
    // Under the limit, the same form goes through.
    let small: String = file.lines().take(100).map(|n| format!("{n}\n")).collect();
    assert_eq!(
        counts(&import_file(&app, id, small.as_bytes(), &[]).await)["imported"],
        100
    );
}

/// Posts a multipart `body` with `Transfer-Encoding: chunked` (no length declared) over a plain
/// TCP connection; answers the response's head and whatever of its body arrived.
async fn chunked_post(api: &Api, path: &str, boundary: &str, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = api.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nX-XTRA-AUTH-ID: {}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        api.token
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // The server may answer and close before it has read everything: a failed write ends the
    // sending, not the test.
    for piece in body.chunks(8 * 1024) {
        let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
        chunk.extend_from_slice(piece);
        chunk.extend_from_slice(b"\r\n");
        if stream.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

// ---- A million rows, on the real binary ----

/// Samples a process's resident memory every 20 ms until dropped; answers the highest seen.
struct RssSampler {
    peak_kib: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let peak_kib = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let peak = peak_kib.clone();
        let task = tokio::spawn(async move {
            loop {
                let rss = common::process::proc_status_kib(pid, "VmRSS");
                peak.fetch_max(rss, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        RssSampler { peak_kib, task }
    }

    fn peak_kib(&self) -> u64 {
        self.peak_kib.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A download read to its end while the server's memory is sampled.
struct Streamed {
    kept: Vec<u8>,
    bytes: usize,
    newlines: usize,
    first_byte: Duration,
    total: Duration,
    peak_rss_kib: u64,
}

/// Reads a download to its end, keeping its bytes only when `keep`, while the server's resident
/// memory is sampled.
async fn stream_download(api: &Api, pid: u32, id: i64, format: &str, keep: bool) -> Streamed {
    let sampler = RssSampler::start(pid);
    let started = std::time::Instant::now();
    let mut response = api.download(id, &format!("?format={format}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut streamed = Streamed {
        kept: Vec::new(),
        bytes: 0,
        newlines: 0,
        first_byte: Duration::ZERO,
        total: Duration::ZERO,
        peak_rss_kib: 0,
    };
    while let Some(chunk) = response.chunk().await.expect("the body streams") {
        if streamed.bytes == 0 {
            streamed.first_byte = started.elapsed();
        }
        streamed.bytes += chunk.len();
        streamed.newlines += chunk.iter().filter(|b| **b == b'\n').count();
        if keep {
            streamed.kept.extend_from_slice(&chunk);
        }
    }
    streamed.total = started.elapsed();
    streamed.peak_rss_kib = sampler.peak_kib();
    streamed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_row_export_streams_in_flat_memory() {
    const COUNT: usize = 1_000_000;
    const ALLOWED_GROWTH_MIB: u64 = 64;
    const CHECKED_ROWS: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let mut server = Outcall::in_dir(dir.path()).spawn();
    let api = server.connect().await;
    let pid = server.pid();
    let id = api.create_task("a million").await;

    // The import: one multipart CSV file of a million rows.
    let mut file = String::with_capacity(COUNT * 20);
    file.push_str("手机,编号\n");
    for n in 0..COUNT {
        file.push_str(&format!("138{n:08},r{n}\n"));
    }
    let started = std::time::Instant::now();
    let reply = import_file(&api, id, file.as_bytes(), &[("external_id_column", "编号")]).await;
    let import_time = started.elapsed();
    assert_eq!(counts(&reply)["imported"], COUNT);
    drop(file);
    assert_eq!(api.task(id).await["done_total"], format!("0/{COUNT}"));

    let before = server.proc_status_kib("VmRSS");
    let csv = stream_download(&api, pid, id, "csv", false).await;
    assert_eq!(csv.newlines, COUNT + 1, "a header and a row a number");
    let xlsx = stream_download(&api, pid, id, "xlsx", true).await;
    assert!(xlsx.kept.starts_with(b"PK\x03\x04"), "a zip file");
    // The workbook starts with the header and the numbers in order. (Reading back all of its
    // million rows takes long in a debug build: the row count is checked on the small tasks.)
    let mut workbook = calamine::Xlsx::new(Cursor::new(xlsx.kept.clone())).expect("a workbook");
    let sheet = workbook.sheet_names()[0].clone();
    let mut cells = workbook.worksheet_cells_reader(&sheet).expect("the sheet");
    let mut rows = 0;
    while let Some(cell) = cells.next_cell().expect("a cell") {
        let (row, column) = cell.get_position();
        if row > CHECKED_ROWS as u32 {
            break;
        }
        let text = match cell.get_value() {
            calamine::DataRef::String(text) => text.as_str(),
            calamine::DataRef::SharedString(text) => text,
            _ => "",
        };
        match (row, column) {
            (0, 0) => assert_eq!(text, "任务名称"),
            (row, 2) if row > 0 => {
                assert_eq!(text, format!("138{:08}", row - 1));
                rows += 1;
            }
            _ => {}
        }
    }
    assert_eq!(rows, CHECKED_ROWS, "a sheet row a number");
    // Clients that leave after the first chunk: each export stops and gives its database
    // connection back. More are left than the pool holds (8), so a stuck one would starve the
    // list below.
    for n in 0..12 {
        let format = if n % 2 == 0 { "csv" } else { "json" };
        let mut response = api.download(id, &format!("?format={format}")).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.chunk().await.expect("a first chunk").is_some());
        drop(response);
    }
    common::poll(
        Duration::from_secs(20),
        "the abandoned exports to stop",
        || {
            let abandoned = server
                .log_text()
                .matches("export abandoned by the client")
                .count();
            async move {
                if abandoned == 12 {
                    Ok(())
                } else {
                    Err(format!("{abandoned} stopped"))
                }
            }
        },
    )
    .await;
    let answered = tokio::time::timeout(
        Duration::from_secs(10),
        api.get(&format!("{TASKS}/{id}/numbers?perPage=1")),
    )
    .await
    .expect("the list answers while abandoned exports are let go");
    assert_eq!(answered.status, StatusCode::OK);
    assert_eq!(answered.body["rowCount"], COUNT);

    let log = server.log_text();
    let import_line = log
        .lines()
        .find(|line| line.contains("imported numbers from a file"))
        .expect("the import is logged");
    println!("server: {import_line}");
    let peak = csv.peak_rss_kib.max(xlsx.peak_rss_kib);
    let growth_mib = peak.saturating_sub(before) / 1024;
    println!(
        "import of {COUNT} rows ({} MB CSV): {import_time:?}; RSS before exports {} MiB\n\
         csv: {} MB, first byte {:?}, all {:?}, peak RSS {} MiB\n\
         xlsx: {} MB, first byte {:?}, all {:?}, peak RSS {} MiB\n\
         growth {growth_mib} MiB (debug build)",
        COUNT * 20 / 1_000_000,
        before / 1024,
        csv.bytes / 1_000_000,
        csv.first_byte,
        csv.total,
        csv.peak_rss_kib / 1024,
        xlsx.bytes / 1_000_000,
        xlsx.first_byte,
        xlsx.total,
        xlsx.peak_rss_kib / 1024,
    );
    assert!(
        growth_mib <= ALLOWED_GROWTH_MIB,
        "exporting {COUNT} rows grew the server by {growth_mib} MiB"
    );
}
