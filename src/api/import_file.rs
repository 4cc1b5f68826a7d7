//! `POST /api/out_call_tasks/{id}/import` with `multipart/form-data`: numbers from a CSV (UTF-8,
//! with or without BOM, or GBK/GB18030) or XLSX file (its first sheet). The file is spooled to a
//! nameless temporary file in the data directory, never held in memory, then parsed row by row and
//! checked; the accepted rows go into one transaction. Rows that are not dialable are skipped and
//! reported, not fatal.

use std::{
    borrow::Cow,
    fs::File,
    io::{self, BufRead, BufReader, Read, Seek, Write},
    path::Path,
};

use actix_multipart::Multipart;
use actix_web::{
    http::{header, StatusCode},
    web, HttpRequest, HttpResponse,
};
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::json;

use super::{
    error::{ApiError, ApiResult},
    AppState,
};
use crate::{
    db,
    domain::{DestNumber, Text},
};

/// A form has the file and three options; a few more fields are tolerated and dropped.
const MAX_FIELDS: usize = 16;
/// The option fields are short text.
const MAX_OPTION_BYTES: usize = 256;
/// The file's bytes are gathered into pieces of this size before each is written to disk.
const SPOOL_PIECE_BYTES: usize = 1024 * 1024;
const MAX_EXTERNAL_ID_CHARS: usize = 128;
/// How many rejected rows the answer lists.
const MAX_LISTED_REJECTS: usize = 10;
/// A rejected value is shown up to this many characters.
const MAX_SHOWN_VALUE_CHARS: usize = 64;

/// A column named by its header or by its 1-based number.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Column {
    /// 0-based.
    Index(usize),
    Name(String),
}

#[derive(Debug, Default)]
struct Options {
    number_column: Option<Column>,
    external_id_column: Option<Column>,
    has_header: Option<bool>,
}

fn parse_column(field: &str, text: &str) -> ApiResult<Option<Column>> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<usize>() {
            Ok(number) if number >= 1 => Ok(Some(Column::Index(number - 1))),
            _ => Err(ApiError::bad_request(format!(
                "{field} must be a header name or a column number from 1, not {text:?}"
            ))),
        };
    }
    Ok(Some(Column::Name(text.to_owned())))
}

fn parse_has_header(text: &str) -> ApiResult<Option<bool>> {
    match text.trim() {
        "" => Ok(None),
        "1" | "true" => Ok(Some(true)),
        "0" | "false" => Ok(Some(false)),
        other => Err(ApiError::bad_request(format!(
            "has_header must be 1 or 0, not {other:?}"
        ))),
    }
}

/// A row that was skipped, as the answer lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Rejected {
    row: u64,
    value: String,
    reason: String,
}

/// The answer's `data`: the import's counts (see `db::numbers::ImportCounts`) and the rejected
/// rows.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
struct Report {
    imported: usize,
    duplicates: usize,
    dnc: usize,
    rejected: usize,
    first_rejected: Vec<Rejected>,
    /// The rows parsed and checked, to be imported (some may be duplicates).
    #[serde(skip)]
    accepted: usize,
}

fn blocking_failed(error: impl std::fmt::Display) -> ApiError {
    tracing::error!(%error, "import: a blocking step failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "the upload could not be stored; try again",
    )
}

/// Whether a request body is a multipart form (else it is the JSON import).
pub fn is_multipart(request: &HttpRequest) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        })
}

/// The multipart import. The body limit holds for the whole request: a declared length over it is
/// refused before anything is read, and reading stops as soon as the fields add up to more.
pub async fn import(
    state: web::Data<AppState>,
    id: i64,
    request: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let mut budget = super::input::MultipartBudget::new(&request, state.body_limit)?;
    let mut form = Multipart::new(request.headers(), payload);
    let mut options = Options::default();
    let mut spooled: Option<(File, u64)> = None;
    let mut fields = 0;
    while let Some(field) = form.next().await {
        fields += 1;
        if fields > MAX_FIELDS {
            return Err(ApiError::bad_request(format!(
                "file: an import form has at most {MAX_FIELDS} fields"
            )));
        }
        let mut field =
            field.map_err(|e| ApiError::bad_request(format!("malformed multipart body: {e}")))?;
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            // In the data directory, outcall's own and sized for its data (`/tmp` may be a small
            // tmpfs); the file has no name, so it goes away however the request ends.
            let data_dir = state.data_dir.clone();
            let mut file = web::block(move || tempfile::tempfile_in(data_dir))
                .await
                .map_err(blocking_failed)?
                .map_err(blocking_failed)?;
            let mut size = 0u64;
            let mut piece = Vec::with_capacity(SPOOL_PIECE_BYTES);
            loop {
                let chunk = field.next().await.transpose().map_err(|e| {
                    ApiError::bad_request(format!("could not read field file: {e}"))
                })?;
                if let Some(chunk) = &chunk {
                    budget.take(chunk.len())?;
                    size += chunk.len() as u64;
                    piece.extend_from_slice(chunk);
                }
                if piece.len() >= SPOOL_PIECE_BYTES || (chunk.is_none() && !piece.is_empty()) {
                    let (back, emptied) = web::block(move || -> io::Result<(File, Vec<u8>)> {
                        file.write_all(&piece)?;
                        piece.clear();
                        Ok((file, piece))
                    })
                    .await
                    .map_err(blocking_failed)?
                    .map_err(blocking_failed)?;
                    file = back;
                    piece = emptied;
                }
                if chunk.is_none() {
                    break;
                }
            }
            spooled = Some((file, size));
            continue;
        }
        let mut text = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk
                .map_err(|e| ApiError::bad_request(format!("could not read field {name}: {e}")))?;
            budget.take(chunk.len())?;
            text.extend_from_slice(&chunk);
            if text.len() > MAX_OPTION_BYTES {
                text.truncate(MAX_OPTION_BYTES + 1);
            }
        }
        let known = ["number_column", "external_id_column", "has_header"];
        if !known.contains(&name.as_str()) {
            continue;
        }
        if text.len() > MAX_OPTION_BYTES {
            return Err(ApiError::bad_request(format!(
                "{name} is too long: at most {MAX_OPTION_BYTES} bytes"
            )));
        }
        let text = String::from_utf8(text)
            .map_err(|_| ApiError::bad_request(format!("{name} must be UTF-8 text")))?;
        match name.as_str() {
            "number_column" => options.number_column = parse_column(&name, &text)?,
            "external_id_column" => options.external_id_column = parse_column(&name, &text)?,
            _ => options.has_header = parse_has_header(&text)?,
        }
    }
    let (file, size) = spooled.ok_or_else(|| {
        ApiError::bad_request("file is required: a multipart field with a CSV or XLSX file")
    })?;
    if size == 0 {
        return Err(ApiError::bad_request("file is empty"));
    }
    state
        .db
        .run(move |conn| db::tasks::require_live(conn, id))
        .await?;
    // The file is parsed and checked before the database is written, so that the write
    // transaction, which makes the dialer's writes wait, lasts only as long as the inserts.
    let started = std::time::Instant::now();
    let data_dir = state.data_dir.clone();
    let (mut report, accepted) = web::block(move || read_file(file, &options, &data_dir))
        .await
        .map_err(blocking_failed)??;
    let parse_ms = started.elapsed().as_millis() as u64;
    let started = std::time::Instant::now();
    let now = state.clock.now();
    let ((), counts) = state
        .db
        .run(move |conn| {
            Ok(db::numbers::import_streaming(conn, id, now, |importer| {
                insert_accepted(accepted, importer)
            }))
        })
        .await??;
    report.imported = counts.imported;
    report.duplicates = counts.duplicates;
    report.dnc = counts.dnc;
    tracing::info!(
        task = id,
        accepted = report.accepted,
        imported = report.imported,
        duplicates = report.duplicates,
        dnc = report.dnc,
        rejected = report.rejected,
        bytes = size,
        parse_ms,
        insert_ms = started.elapsed().as_millis() as u64,
        "imported numbers from a file"
    );
    if report.imported > 0 {
        state.dialer.task_changed(id);
    }
    let data = serde_json::to_string(&report).expect("a report is JSON");
    Ok(HttpResponse::Ok().json(json!({ "code": 200, "message": "success", "data": data })))
}

/// Reads the spooled upload, CSV or XLSX by its content: answers the report and a file of the
/// accepted rows (`number<TAB>external id` lines; neither may hold a control character).
fn read_file(mut file: File, options: &Options, spool_dir: &Path) -> ApiResult<(Report, File)> {
    let unreadable = |e: io::Error| blocking_failed(format!("reading the spooled upload: {e}"));
    file.rewind().map_err(unreadable)?;
    let mut magic = [0u8; 4];
    let magic_len = read_up_to(&mut file, &mut magic).map_err(unreadable)?;
    file.rewind().map_err(unreadable)?;
    let accepted = tempfile::tempfile_in(spool_dir).map_err(blocking_failed)?;
    let mut rows = Rows {
        options,
        accepted: io::BufWriter::new(accepted),
        columns: None,
        report: Report::default(),
    };
    if magic[..magic_len] == *b"PK\x03\x04" {
        read_xlsx(file, &mut rows)?;
    } else {
        read_csv(file, &mut rows)?;
    }
    if rows.columns.is_none() {
        return Err(ApiError::bad_request("file has no rows"));
    }
    let mut accepted = rows
        .accepted
        .into_inner()
        .map_err(|e| blocking_failed(e.into_error()))?;
    accepted.rewind().map_err(blocking_failed)?;
    Ok((rows.report, accepted))
}

/// Inserts the accepted rows that [`read_file`] wrote.
fn insert_accepted(accepted: File, importer: &mut db::numbers::Importer) -> ApiResult<()> {
    let mut lines = io::BufReader::new(accepted);
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).map_err(blocking_failed)? == 0 {
            return Ok(());
        }
        let line = line.trim_end_matches('\n');
        let (number, external_id) = line.split_once('\t').unwrap_or((line, ""));
        importer.insert(number, external_id)?;
    }
}

fn read_up_to(file: &mut File, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..])? {
            0 => break,
            read => filled += read,
        }
    }
    Ok(filled)
}

/// Whether everything `reader` yields is UTF-8, read in pieces (a character may straddle two).
fn is_utf8(mut reader: impl Read) -> io::Result<bool> {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut carried = 0;
    loop {
        let read = reader.read(&mut buffer[carried..])?;
        if read == 0 {
            return Ok(carried == 0);
        }
        let filled = carried + read;
        match std::str::from_utf8(&buffer[..filled]) {
            Ok(_) => carried = 0,
            Err(error) if error.error_len().is_none() => {
                let valid = error.valid_up_to();
                buffer.copy_within(valid..filled, 0);
                carried = filled - valid;
            }
            Err(_) => return Ok(false),
        }
    }
}

fn read_csv(mut file: File, rows: &mut Rows) -> ApiResult<()> {
    let unreadable = |e: io::Error| blocking_failed(format!("reading the spooled upload: {e}"));
    let utf8 = is_utf8(BufReader::new(&mut file)).map_err(unreadable)?;
    file.rewind().map_err(unreadable)?;
    let encoding = if utf8 {
        encoding_rs::UTF_8
    } else {
        encoding_rs::GB18030
    };
    // A BOM, when there is one, is taken off (and wins over the guess).
    let text = encoding_rs_io::DecodeReaderBytesBuilder::new()
        .encoding(Some(encoding))
        .build(BufReader::new(file));
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text);
    let mut record = csv::StringRecord::new();
    let mut index = 0u64;
    loop {
        index += 1;
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(error) => {
                return Err(ApiError::bad_request(format!(
                    "file: row {index} is not valid CSV ({error}); nothing was imported"
                )))
            }
        }
        // The record's count, not its line: `csv` counts a CRLF file's lines one behind.
        rows.row(index, record.iter().map(Cow::Borrowed))?;
    }
}

fn read_xlsx(file: File, rows: &mut Rows) -> ApiResult<()> {
    use calamine::Reader;
    let refused = |error: calamine::XlsxError| {
        ApiError::bad_request(format!(
            "file is not a readable XLSX workbook ({error}); nothing was imported"
        ))
    };
    let mut workbook = calamine::Xlsx::new(BufReader::new(file)).map_err(refused)?;
    let Some(sheet) = workbook.sheet_names().first().cloned() else {
        return Err(ApiError::bad_request("file: the workbook has no sheet"));
    };
    let mut cells = workbook.worksheet_cells_reader(&sheet).map_err(refused)?;
    let mut current: Option<u32> = None;
    let mut row: Vec<String> = Vec::new();
    while let Some(cell) = cells.next_cell().map_err(refused)? {
        let (row_index, column) = cell.get_position();
        if current != Some(row_index) {
            if let Some(previous) = current {
                rows.row(u64::from(previous) + 1, row.drain(..).map(Cow::Owned))?;
            }
            current = Some(row_index);
        }
        let column = column as usize;
        if column >= row.len() {
            row.resize(column + 1, String::new());
        }
        row[column] = cell_text(cell.get_value());
    }
    if let Some(previous) = current {
        rows.row(u64::from(previous) + 1, row.drain(..).map(Cow::Owned))?;
    }
    Ok(())
}

/// A spreadsheet cell as text. A whole number stored as a number is written as an integer
/// (`13800138000`, never `1.38e10` or `13800138000.0`).
fn cell_text(value: &calamine::DataRef) -> String {
    use calamine::DataRef;
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    match value {
        DataRef::Int(n) => n.to_string(),
        DataRef::Float(f) if f.fract() == 0.0 && f.abs() < EXACT => (*f as i64).to_string(),
        DataRef::Float(f) => f.to_string(),
        DataRef::String(s) => s.clone(),
        DataRef::SharedString(s) => (*s).to_owned(),
        DataRef::Bool(b) => b.to_string(),
        DataRef::DateTime(d) => d.as_f64().to_string(),
        DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => s.clone(),
        DataRef::Error(e) => format!("#{e}"),
        DataRef::Empty => String::new(),
    }
}

/// Where a file's columns are, decided on its first row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Columns {
    number: usize,
    external_id: Option<usize>,
}

/// The rows of a file, in order: the first decides the header and columns, each other one is
/// imported or rejected.
struct Rows<'a> {
    options: &'a Options,
    accepted: io::BufWriter<File>,
    columns: Option<Columns>,
    report: Report,
}

impl Rows<'_> {
    /// Row `row` (1-based, as a spreadsheet shows it) of the file.
    fn row<'c>(&mut self, row: u64, cells: impl Iterator<Item = Cow<'c, str>>) -> ApiResult<()> {
        let cells: Vec<Cow<str>> = cells.collect();
        if cells.iter().all(|cell| cell.trim().is_empty()) {
            return Ok(());
        }
        let columns = match self.columns {
            Some(columns) => columns,
            None => {
                let (columns, header) = resolve_columns(self.options, &cells)?;
                self.columns = Some(columns);
                if header {
                    return Ok(());
                }
                columns
            }
        };
        let cell = |index: usize| cells.get(index).map_or("", |cell| cell.trim());
        let value = cell(columns.number);
        let checked = DestNumber::new(value)
            .map_err(|error| error.to_string())
            .and_then(|number| {
                let external_id = columns.external_id.map_or("", cell);
                Text::new(external_id, MAX_EXTERNAL_ID_CHARS)
                    .map(|external_id| (number, external_id))
                    .map_err(|error| format!("external_id {error}"))
            });
        match checked {
            Ok((number, external_id)) => {
                writeln!(
                    self.accepted,
                    "{}\t{}",
                    number.as_str(),
                    external_id.as_str()
                )
                .map_err(blocking_failed)?;
                self.report.accepted += 1;
            }
            Err(reason) => {
                self.report.rejected += 1;
                if self.report.first_rejected.len() < MAX_LISTED_REJECTS {
                    let reason = if value.is_empty() {
                        "the number is empty".to_owned()
                    } else {
                        reason
                    };
                    self.report.first_rejected.push(Rejected {
                        row,
                        value: value.chars().take(MAX_SHOWN_VALUE_CHARS).collect(),
                        reason,
                    });
                }
            }
        }
        Ok(())
    }
}

/// The columns, and whether `first` is a header row: as asked, else a header when a column is
/// named, or when the first row's number cell is not dialable.
fn resolve_columns(options: &Options, first: &[Cow<str>]) -> ApiResult<(Columns, bool)> {
    let named = |column: &Option<Column>| matches!(column, Some(Column::Name(_)));
    let header = options.has_header.unwrap_or_else(|| {
        if named(&options.number_column) || named(&options.external_id_column) {
            return true;
        }
        let number = match options.number_column {
            Some(Column::Index(index)) => index,
            _ => 0,
        };
        let cell = first.get(number).map_or("", |cell| cell.trim());
        DestNumber::new(cell).is_err()
    });
    let find = |field: &str, column: &Column| -> ApiResult<usize> {
        match column {
            Column::Index(index) if *index < first.len() => Ok(*index),
            Column::Index(index) => Err(ApiError::bad_request(format!(
                "{field}: there is no column {}; the first row has {} column(s)",
                index + 1,
                first.len()
            ))),
            Column::Name(name) if !header => Err(ApiError::bad_request(format!(
                "{field}: {name:?} is a header name, but has_header is 0; give a column number"
            ))),
            Column::Name(name) => first
                .iter()
                .position(|cell| cell.trim() == name)
                .or_else(|| {
                    first
                        .iter()
                        .position(|cell| cell.trim().to_lowercase() == name.to_lowercase())
                })
                .ok_or_else(|| {
                    let known: Vec<&str> = first.iter().take(20).map(|c| c.trim()).collect();
                    ApiError::bad_request(format!(
                        "{field}: no column is named {name:?}; the header has {known:?}"
                    ))
                }),
        }
    };
    let number = match &options.number_column {
        Some(column) => find("number_column", column)?,
        None => 0,
    };
    let external_id = options
        .external_id_column
        .as_ref()
        .map(|column| find("external_id_column", column))
        .transpose()?;
    Ok((
        Columns {
            number,
            external_id,
        },
        header,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(row: &[&'static str]) -> Vec<Cow<'static, str>> {
        row.iter().map(|c| Cow::Borrowed(*c)).collect()
    }

    #[test]
    fn columns_by_number_or_name() {
        assert_eq!(
            parse_column("number_column", " 2 "),
            Ok(Some(Column::Index(1)))
        );
        assert_eq!(
            parse_column("number_column", "手机"),
            Ok(Some(Column::Name("手机".into())))
        );
        assert_eq!(parse_column("number_column", ""), Ok(None));
        assert!(parse_column("number_column", "0")
            .unwrap_err()
            .message
            .starts_with("number_column"));
        assert!(parse_has_header("2")
            .unwrap_err()
            .message
            .starts_with("has_header"));
    }

    #[test]
    fn the_header_is_guessed_from_the_first_number_cell() {
        let options = Options::default();
        let (columns, header) = resolve_columns(&options, &cells(&["phone", "id"])).unwrap();
        assert!(header);
        assert_eq!(columns.number, 0);
        let (_, header) = resolve_columns(&options, &cells(&["13800138000", "id"])).unwrap();
        assert!(!header);
        let options = Options {
            number_column: Some(Column::Name("ID".into())),
            external_id_column: Some(Column::Index(0)),
            has_header: None,
        };
        let (columns, header) = resolve_columns(&options, &cells(&["phone", "id"])).unwrap();
        assert!(header);
        assert_eq!(
            columns,
            Columns {
                number: 1,
                external_id: Some(0)
            }
        );
        let options = Options {
            number_column: Some(Column::Index(2)),
            ..Options::default()
        };
        let refused = resolve_columns(&options, &cells(&["1000", "x"])).unwrap_err();
        assert!(refused
            .message
            .starts_with("number_column: there is no column 3"));
        let options = Options {
            external_id_column: Some(Column::Name("nope".into())),
            ..Options::default()
        };
        let refused = resolve_columns(&options, &cells(&["phone", "id"])).unwrap_err();
        assert!(refused
            .message
            .starts_with("external_id_column: no column is named"));
    }

    #[test]
    fn utf8_is_recognised_across_pieces() {
        assert!(is_utf8("号码,编号\n1000,甲\n".as_bytes()).unwrap());
        let long = "号".repeat(40_000);
        assert!(is_utf8(long.as_bytes()).unwrap());
        let (gbk, _, _) = encoding_rs::GBK.encode("号码,编号\n");
        assert!(!is_utf8(&gbk[..]).unwrap());
        assert!(!is_utf8(&long.as_bytes()[..long.len() - 1]).unwrap());
    }

    #[test]
    fn whole_spreadsheet_numbers_are_integers() {
        use calamine::DataRef;
        assert_eq!(cell_text(&DataRef::Float(13_800_138_000.0)), "13800138000");
        assert_eq!(cell_text(&DataRef::Int(1000)), "1000");
        assert_eq!(cell_text(&DataRef::Float(1.5)), "1.5");
    }
}
