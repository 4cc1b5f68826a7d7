//! `GET /api/out_call_tasks/{id}/download?format=json|csv|xlsx`: a task's numbers under the
//! vendor's header row, streamed. A blocking thread reads the rows from one read transaction on its
//! own pooled connection and hands them to the response in chunks through a bounded channel, so
//! memory does not grow with the task and the first bytes leave at once, in every format (XLSX by
//! [`crate::xlsx`], a zip stream).

use std::{
    io::{self, Write},
    ops::ControlFlow,
};

use actix_web::{http::header, web, web::Bytes, HttpRequest, HttpResponse};
use tokio::sync::{mpsc, oneshot};

use super::{
    error::{ApiError, ApiResult},
    input,
    numbers::{download_row, DOWNLOAD_HEADER},
    AppState,
};
use crate::{clock::TimeZone, db, domain::Task, xlsx};

/// How many bytes are gathered before they are sent as one chunk of the body.
const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks waiting for a slow client, at most: the reader stops while the channel is full.
const CHUNKS_IN_FLIGHT: usize = 4;
/// The columns of [`DOWNLOAD_HEADER`] that hold seconds: numbers in XLSX, so they can be summed.
const SECONDS_COLUMNS: [usize; 2] = [7, 8];

const XLSX_CONTENT_TYPE: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
    Xlsx,
}

impl Format {
    fn from_query(query: &[(String, String)]) -> ApiResult<Format> {
        match input::query_text(query, "format").as_deref() {
            None | Some("json") => Ok(Format::Json),
            Some("csv") => Ok(Format::Csv),
            Some("xlsx") => Ok(Format::Xlsx),
            Some(other) => Err(ApiError::bad_request(format!(
                "format must be json, csv or xlsx, not {other:?}"
            ))),
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Xlsx => XLSX_CONTENT_TYPE,
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Xlsx => "xlsx",
        }
    }
}

/// A spreadsheet never runs a text cell as a formula: one that begins with `=`, `+`, `-` or `@`
/// gets a leading `'`.
pub fn neutralise_formula(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@']) {
        format!("'{cell}").into()
    } else {
        cell.into()
    }
}

/// `GET /api/out_call_tasks/{id}/download`.
pub async fn download(
    state: web::Data<AppState>,
    id: web::Path<String>,
    request: HttpRequest,
) -> ApiResult<HttpResponse> {
    let id = input::path_id(&id)?;
    let format = Format::from_query(&input::query_pairs(&request)?)?;
    let (ready_sender, ready) = oneshot::channel::<ApiResult<()>>();
    let (chunks, mut received) = mpsc::channel::<io::Result<Bytes>>(CHUNKS_IN_FLIGHT);
    let database = state.db.clone();
    let time_zone = state.time_zone;
    tokio::task::spawn_blocking(move || {
        let mut ready_sender = Some(ready_sender);
        let mut sink = Sink {
            sender: chunks,
            buffer: Vec::with_capacity(CHUNK_BYTES * 2),
        };
        let outcome = database
            .connection()
            .map_err(ExportError::from)
            .and_then(|mut conn| {
                export(
                    &mut conn,
                    id,
                    format,
                    time_zone,
                    &mut sink,
                    || {
                        if let Some(sender) = ready_sender.take() {
                            let _ = sender.send(Ok(()));
                        }
                    },
                )
            });
        match (outcome, ready_sender) {
            (Ok(()), _) => sink.finish(),
            (Err(ExportError::Refused(error)), Some(sender)) => {
                let _ = sender.send(Err(error));
            }
            (Err(error), Some(sender)) => {
                tracing::error!(task = id, error = %error.describe(), "export failed");
                let _ = sender.send(Err(ApiError::new(
                    actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
                    "the export could not be written; try again",
                )));
            }
            (Err(ExportError::Io(error)), None) if error.kind() == io::ErrorKind::BrokenPipe => {
                tracing::info!(task = id, "export abandoned by the client");
            }
            (Err(error), None) => {
                let error = error.describe();
                tracing::error!(task = id, %error, "export failed midway");
                sink.fail(error);
            }
        }
    });
    ready.await.map_err(|_| {
        ApiError::new(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "the export stopped before it began; try again",
        )
    })??;
    let body = futures_util::stream::poll_fn(move |context| received.poll_recv(context));
    Ok(HttpResponse::Ok()
        .content_type(format.content_type())
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"task-{id}.{}\"", format.extension()),
        ))
        .streaming(body))
}

enum ExportError {
    /// An answer in the error envelope, before the body begins: the database's (an unknown task
    /// is 404), or a task too large for a sheet.
    Refused(ApiError),
    /// Writing the file failed.
    Io(io::Error),
}

impl ExportError {
    fn describe(&self) -> String {
        match self {
            ExportError::Refused(error) => error.message.clone(),
            ExportError::Io(error) => error.to_string(),
        }
    }
}

impl From<db::DbError> for ExportError {
    fn from(error: db::DbError) -> Self {
        ExportError::Refused(error.into())
    }
}

impl From<io::Error> for ExportError {
    fn from(error: io::Error) -> Self {
        ExportError::Io(error)
    }
}

impl From<csv::Error> for ExportError {
    /// An I/O error stays one, so that a client who has gone is told apart from a failure.
    fn from(error: csv::Error) -> Self {
        match error.into_kind() {
            csv::ErrorKind::Io(error) => ExportError::Io(error),
            kind => ExportError::Io(io::Error::other(format!("{kind:?}"))),
        }
    }
}

/// Where the body's bytes go: gathered into chunks, each handed to the response when full. A
/// send fails only when the client has gone: then writing fails with `BrokenPipe` and the export
/// stops.
struct Sink {
    sender: mpsc::Sender<io::Result<Bytes>>,
    buffer: Vec<u8>,
}

impl Sink {
    fn send_buffer(&mut self) -> io::Result<()> {
        let bytes = std::mem::take(&mut self.buffer);
        self.sender
            .blocking_send(Ok(Bytes::from(bytes)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client has gone"))
    }

    fn finish(mut self) {
        if !self.buffer.is_empty() {
            let _ = self.send_buffer();
        }
    }

    /// Ends the body with an error: the client sees a cut connection, not a complete file.
    fn fail(self, message: String) {
        let _ = self.sender.blocking_send(Err(io::Error::other(message)));
    }
}

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= CHUNK_BYTES {
            self.send_buffer()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes the whole export into `sink`; `begin` is called once the task is known to exist.
fn export(
    conn: &mut db::rusqlite::Connection,
    id: i64,
    format: Format,
    tz: TimeZone,
    sink: &mut Sink,
    begin: impl FnOnce(),
) -> Result<(), ExportError> {
    let start = |_: &Task| {
        begin();
        ControlFlow::Continue(())
    };
    // What stopped the rows early, if anything did.
    let mut failure: Option<ExportError> = None;
    let mut keep = |written: Result<(), ExportError>| match written {
        Ok(()) => ControlFlow::Continue(()),
        Err(error) => {
            failure = Some(error);
            ControlFlow::Break(())
        }
    };
    match format {
        Format::Json => {
            json_header(&mut sink.buffer);
            db::numbers::export(conn, id, start, |task, number| {
                let row = download_row(&task.group_name, task.action, &number, tz);
                keep(json_row(sink, &row).map_err(ExportError::from))
            })?;
            if failure.is_none() {
                sink.write_all(b"]")?;
            }
        }
        Format::Csv => {
            sink.write_all(b"\xEF\xBB\xBF")?;
            let mut writer = csv::Writer::from_writer(&mut *sink);
            writer.write_record(DOWNLOAD_HEADER)?;
            db::numbers::export(conn, id, start, |task, number| {
                let row = download_row(&task.group_name, task.action, &number, tz);
                let cells = row.iter().map(|cell| neutralise_formula(cell).into_owned());
                keep(writer.write_record(cells).map_err(ExportError::from))
            })?;
            writer.flush()?;
        }
        Format::Xlsx => {
            let mut too_many = None;
            let fits = |task: &Task| {
                if task.total >= i64::from(xlsx::MAX_ROWS) {
                    too_many = Some(task.total);
                    return ControlFlow::Break(());
                }
                start(task)
            };
            // The package's first parts and the header stay in the sink's buffer (well under a
            // chunk) until the task is known to exist.
            let mut sheet = xlsx_sheet(&mut *sink)?;
            db::numbers::export(conn, id, fits, |task, number| {
                let row = download_row(&task.group_name, task.action, &number, tz);
                keep(sheet.row(xlsx_cells(&row)).map_err(ExportError::from))
            })?;
            if let Some(total) = too_many {
                return Err(ExportError::Refused(ApiError::bad_request(format!(
                    "format: an XLSX sheet holds at most {} numbers, and this task has {total}; \
                     use format=csv",
                    xlsx::MAX_ROWS - 1
                ))));
            }
            if failure.is_none() {
                sheet.finish()?;
            }
        }
    }
    failure.map_or(Ok(()), Err)
}

/// The vendor's JSON array, exactly the bytes the download has always had: its opening and header.
fn json_header(out: &mut Vec<u8>) {
    out.push(b'[');
    serde_json::to_writer(&mut *out, &DOWNLOAD_HEADER).expect("writing JSON to memory");
}

fn json_row(out: &mut Sink, row: &[String; 10]) -> io::Result<()> {
    out.write_all(b",")?;
    serde_json::to_writer(&mut *out, row).map_err(io::Error::from)
}

/// A new workbook in `sink`, its header row written.
fn xlsx_sheet(sink: &mut Sink) -> io::Result<xlsx::SheetWriter<&mut Sink>> {
    let mut sheet = xlsx::SheetWriter::new(sink)?;
    sheet.row(DOWNLOAD_HEADER.map(|name| xlsx::Cell::Text(name.into())))?;
    Ok(sheet)
}

/// A row's cells: seconds are numbers (so they can be summed); every other cell, phone numbers and
/// times included, is text, neutralised.
fn xlsx_cells(row: &[String; 10]) -> impl Iterator<Item = xlsx::Cell<'_>> {
    row.iter().enumerate().map(|(column, cell)| {
        if cell.is_empty() {
            return xlsx::Cell::Empty;
        }
        match cell.parse::<i64>() {
            Ok(seconds) if SECONDS_COLUMNS.contains(&column) => xlsx::Cell::Number(seconds as f64),
            _ => xlsx::Cell::Text(neutralise_formula(cell)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_neutralised_and_other_text_kept() {
        for formula in ["=1+1", "+3", "-2", "@SUM(A1)", "=", "+8613800138000"] {
            assert_eq!(neutralise_formula(formula), format!("'{formula}"));
        }
        for text in ["", "1+1", "13800138000", "任务", " =1", "'=1", "a=b"] {
            assert_eq!(neutralise_formula(text), text);
        }
    }

    #[test]
    fn the_format_is_json_csv_or_xlsx() {
        let query = |value: &str| vec![("format".to_owned(), value.to_owned())];
        assert_eq!(Format::from_query(&[]), Ok(Format::Json));
        assert_eq!(Format::from_query(&query("")), Ok(Format::Json));
        assert_eq!(Format::from_query(&query("csv")), Ok(Format::Csv));
        assert_eq!(Format::from_query(&query("xlsx")), Ok(Format::Xlsx));
        let refused = Format::from_query(&query("pdf")).unwrap_err();
        assert!(
            refused.message.starts_with("format must be"),
            "{}",
            refused.message
        );
    }
}
