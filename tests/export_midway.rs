//! A download that fails after its body has begun ends with an error, never with data that looks
//! complete: the response is cut (its chunked body is not terminated), so a client reading it gets
//! an error instead of a truncated file.
//!
//! The failure is a real one: a number in the middle of the task holds a cause this outcall does
//! not know (as a database written around the API, or by a newer version, could), so reading that
//! row fails halfway through the export.

mod common;

use common::{spawn_app, Api};
use reqwest::StatusCode;

const NUMBERS: usize = 20_000;
/// The unreadable row: far enough in that many chunks of the body were sent before it.
const BAD_SEQ: usize = 15_000;

/// What a client reading the download to its end got: the status, the bytes, and whether the
/// body ended with an error.
struct Read {
    status: StatusCode,
    bytes: Vec<u8>,
    failed: bool,
}

async fn read_download(api: &Api, id: i64, format: &str) -> Read {
    let mut response = api.download(id, &format!("?format={format}")).await;
    let status = response.status();
    let mut bytes = Vec::new();
    // Bounded: the body is a few MB, a chunk at a time.
    for _ in 0..100_000 {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) => {
                return Read {
                    status,
                    bytes,
                    failed: false,
                }
            }
            Err(_) => {
                return Read {
                    status,
                    bytes,
                    failed: true,
                }
            }
        }
    }
    panic!("the {format} download never ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_that_fails_midway_is_cut_not_truncated() {
    let app = spawn_app().await;
    let id = app.create_task("midway").await;
    let numbers: Vec<String> = (0..NUMBERS).map(|n| format!("138{n:08}")).collect();
    for part in numbers.chunks(5_000) {
        app.import(id, part).await;
    }
    let set_cause = |cause: &str| {
        let changed = common::db::open(&app.database_path())
            .execute(
                "UPDATE numbers SET cause = ?1 WHERE group_id = ?2 AND dest_number = ?3",
                outcall::db::rusqlite::params![cause, id, numbers[BAD_SEQ - 1]],
            )
            .unwrap();
        assert_eq!(changed, 1);
    };

    // Readable, each format arrives whole.
    for format in ["json", "csv", "xlsx"] {
        let read = read_download(&app, id, format).await;
        assert_eq!(read.status, StatusCode::OK, "{format}");
        assert!(!read.failed, "{format}: a whole download ends cleanly");
    }
    let whole: serde_json::Value =
        serde_json::from_slice(&read_download(&app, id, "json").await.bytes).expect("JSON");
    assert_eq!(whole.as_array().unwrap().len(), NUMBERS + 1);

    set_cause("NOT_A_CAUSE_OUTCALL_KNOWS");
    for format in ["json", "csv", "xlsx"] {
        let read = read_download(&app, id, format).await;
        assert_eq!(read.status, StatusCode::OK, "{format}: the body had begun");
        assert!(
            read.failed,
            "{format}: the body must end with an error, not look complete ({} bytes)",
            read.bytes.len()
        );
        match format {
            "json" => {
                assert!(
                    read.bytes.len() > 64 * 1024,
                    "rows were sent before the failure: {} bytes",
                    read.bytes.len()
                );
                assert!(
                    serde_json::from_slice::<serde_json::Value>(&read.bytes).is_err(),
                    "what arrived is not a complete JSON document"
                );
            }
            "csv" => {
                let text = String::from_utf8_lossy(&read.bytes);
                assert!(
                    text.contains(&numbers[0]),
                    "rows were sent before the failure"
                );
                assert!(
                    !text.contains(&numbers[BAD_SEQ - 1]),
                    "nothing of the unreadable row or after it"
                );
            }
            // The sheet is streamed too: its start went out, and what arrived is no workbook.
            _ => {
                assert!(
                    read.bytes.len() > 64 * 1024,
                    "rows were sent before the failure: {} bytes",
                    read.bytes.len()
                );
                assert!(
                    <calamine::Xlsx<_> as calamine::Reader<_>>::new(std::io::Cursor::new(
                        read.bytes
                    ))
                    .is_err(),
                    "what arrived does not open as a workbook"
                );
            }
        }
    }

    // The rows before the failure went out in order; with the row readable again, all do.
    set_cause("");
    let read = read_download(&app, id, "csv").await;
    assert!(!read.failed);
    assert_eq!(
        String::from_utf8_lossy(&read.bytes).lines().count(),
        NUMBERS + 1
    );
}
