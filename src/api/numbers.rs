//! A task's numbers: import, list, download.

use std::fmt;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{
    de::{self, IgnoredAny, Visitor},
    Deserialize, Deserializer,
};
use serde_json::{json, Value};

use super::{
    error::{ApiError, ApiResult},
    import_file, input, tasks, AppState,
};
use crate::{
    clock::TimeZone,
    db::{
        self,
        numbers::{ImportCounts, NewNumber, Number, NumberFilter},
    },
    domain::{Action, CallStatus, DestNumber, HangupCause, Text},
};

const MAX_EXTERNAL_ID_CHARS: usize = 128;

/// One JSON value of an import row, kept whatever its type so that a bad row can be reported by
/// its index instead of failing the whole parse with a line and column.
enum Scalar {
    Text(String),
    Other(&'static str),
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl<'de> Visitor<'de> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Text(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar::Text(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::Text(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Text(v.to_string()))
            }
            /// A whole number written as a float (`1000.0`, `1.38e10`) is that integer, when
            /// exact: JSON Schema, and so the OpenAPI document, counts it as an integer.
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
                if v.fract() == 0.0 && v.abs() < EXACT {
                    Ok(Scalar::Text((v as i64).to_string()))
                } else {
                    Ok(Scalar::Other("a fractional or inexact number"))
                }
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Scalar, E> {
                Ok(Scalar::Other("a boolean"))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar::Other("null"))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other("an array"))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other("an object"))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

#[derive(Deserialize)]
struct ImportRow {
    dest_number: Option<Scalar>,
    external_id: Option<Scalar>,
}

/// Where the checked rows of an import go: counted on the first pass over the body, inserted on
/// the second.
trait RowSink {
    fn accept(&mut self, number: NewNumber) -> ApiResult<()>;
}

/// The first pass: every row checked, none kept.
struct Checked;

impl RowSink for Checked {
    fn accept(&mut self, _: NewNumber) -> ApiResult<()> {
        Ok(())
    }
}

impl RowSink for db::numbers::Importer<'_> {
    fn accept(&mut self, number: NewNumber) -> ApiResult<()> {
        Ok(self.insert(&number.dest_number, &number.external_id)?)
    }
}

/// Reads the import body `{"data":[…]}`, checking each row as it is parsed and handing it to
/// `sink` at once: no row, and no document of the body, is ever kept. The first bad row ends the
/// work (the rest is skipped unparsed into values).
fn read_import(body: &[u8], sink: &mut impl RowSink) -> ApiResult<()> {
    input::parse_json_with(body, |deserializer| {
        de::DeserializeSeed::deserialize(ImportBody { sink }, deserializer)
    })?
}

struct ImportBody<'s, S> {
    sink: &'s mut S,
}

impl<'de, S: RowSink> de::DeserializeSeed<'de> for ImportBody<'_, S> {
    type Value = ApiResult<()>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        struct BodyVisitor<'s, S>(&'s mut S);
        impl<'de, S: RowSink> Visitor<'de> for BodyVisitor<'_, S> {
            type Value = ApiResult<()>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object with a data array")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut rows = None;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key == "data" && rows.is_none() {
                        rows = Some(map.next_value_seed(ImportRows { sink: &mut *self.0 })?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(rows.unwrap_or_else(|| {
                    Err(ApiError::bad_request(
                        "data is required: an array of numbers",
                    ))
                }))
            }
        }
        deserializer.deserialize_map(BodyVisitor(self.sink))
    }
}

struct ImportRows<'s, S> {
    sink: &'s mut S,
}

impl<'de, S: RowSink> de::DeserializeSeed<'de> for ImportRows<'_, S> {
    type Value = ApiResult<()>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        struct RowsVisitor<'s, S>(&'s mut S);
        impl<'de, S: RowSink> Visitor<'de> for RowsVisitor<'_, S> {
            type Value = ApiResult<()>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of numbers")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut index = 0;
                while let Some(row) = seq.next_element::<ImportRow>()? {
                    if let Err(error) = check_row(index, row).and_then(|n| self.0.accept(n)) {
                        while seq.next_element::<IgnoredAny>()?.is_some() {}
                        return Ok(Err(error));
                    }
                    index += 1;
                }
                Ok(Ok(()))
            }
        }
        deserializer.deserialize_seq(RowsVisitor(self.sink))
    }
}

fn check_row(index: usize, row: ImportRow) -> ApiResult<NewNumber> {
    let dest_number = match row.dest_number {
        Some(Scalar::Text(text)) => DestNumber::new(text).map_err(|error| {
            ApiError::bad_request(format!(
                "data[{index}].dest_number {error}; nothing was imported"
            ))
        })?,
        Some(Scalar::Other(kind)) => {
            return Err(ApiError::bad_request(format!(
                "data[{index}].dest_number must be a string, not {kind}; nothing was imported"
            )))
        }
        None => {
            return Err(ApiError::bad_request(format!(
                "data[{index}].dest_number is missing; nothing was imported"
            )))
        }
    };
    let external_id = match row.external_id {
        None | Some(Scalar::Other("null")) => Text::default(),
        Some(Scalar::Text(text)) => Text::new(text, MAX_EXTERNAL_ID_CHARS).map_err(|error| {
            ApiError::bad_request(format!(
                "data[{index}].external_id {error}; nothing was imported"
            ))
        })?,
        Some(Scalar::Other(kind)) => {
            return Err(ApiError::bad_request(format!(
                "data[{index}].external_id must be a string, not {kind}; nothing was imported"
            )))
        }
    };
    Ok(NewNumber {
        dest_number: dest_number.into_string(),
        external_id: external_id.into_string(),
    })
}

/// `POST /api/out_call_tasks/{id}/import`: the JSON form checks every row first, and one bad row
/// refuses all; a multipart form is a file, whose bad rows are skipped (see `import_file`).
pub async fn import(
    state: web::Data<AppState>,
    id: web::Path<String>,
    request: HttpRequest,
    body: web::Payload,
) -> ApiResult<HttpResponse> {
    let id = input::path_id(&id)?;
    if import_file::is_multipart(&request) {
        return import_file::import(state, id, request, body).await;
    }
    let bytes = input::read_body(body, state.body_limit).await?;
    // Two passes over the body, neither keeping its rows: every row is checked before the write
    // transaction begins, then the rows are inserted as they are parsed again.
    let started = std::time::Instant::now();
    let bytes = web::block(move || read_import(&bytes, &mut Checked).map(|()| bytes))
        .await
        .map_err(|e| ApiError::bad_request(format!("could not read the import: {e}")))??;
    let check_ms = started.elapsed().as_millis() as u64;
    let started = std::time::Instant::now();
    let now = state.clock.now();
    let (count, counts) = state
        .db
        .run(move |conn| {
            Ok(db::numbers::import_streaming(
                conn,
                id,
                now,
                |importer| -> ApiResult<usize> {
                    read_import(&bytes, importer)?;
                    Ok(importer.count())
                },
            ))
        })
        .await??;
    tracing::info!(
        task = id,
        count,
        imported = counts.imported,
        duplicates = counts.duplicates,
        dnc = counts.dnc,
        check_ms,
        insert_ms = started.elapsed().as_millis() as u64,
        "imported numbers"
    );
    if counts.imported > 0 {
        state.dialer.task_changed(id);
    }
    Ok(HttpResponse::Ok().json(json!({
        "code": 200,
        "message": "success",
        "data": import_answer(counts),
    })))
}

/// The `data` string of an import's answer: `{"imported":N,"duplicates":D,"dnc":K}`.
pub(super) fn import_answer(counts: ImportCounts) -> String {
    #[derive(serde::Serialize)]
    struct Answer {
        imported: usize,
        duplicates: usize,
        dnc: usize,
    }
    let ImportCounts {
        imported,
        duplicates,
        dnc,
    } = counts;
    serde_json::to_string(&Answer {
        imported,
        duplicates,
        dnc,
    })
    .expect("counts are JSON")
}

/// A number as the numbers list shows it (also in result webhooks).
pub(super) fn number_item(number: &Number, tz: TimeZone) -> Value {
    json!({
        "id": number.id.to_string(),
        "dest_number": number.dest_number,
        "group_id": number.group_id.to_string(),
        "external_id": number.external_id,
        "uuid": number.uuid,
        "call_status": number.call_status.as_str(),
        "outbound_call": number.outbound_call.to_string(),
        "dtmf": number.dtmf,
        "cause": number.cause.map_or("", HangupCause::as_str),
        "call_start_time": tz.format_optional(number.call_start_time),
        "call_answer_time": tz.format_optional(number.call_answer_time),
        "call_end_time": tz.format_optional(number.call_end_time),
        "created_at": tz.format(number.created_at),
        "updated_at": tz.format(number.updated_at),
        "deleted_at": tz.format_optional(number.deleted_at),
        "sip_code": number.sip_code.map(|code| code.to_string()).unwrap_or_default(),
        "record_path": number.record_path,
    })
}

pub async fn list(
    state: web::Data<AppState>,
    id: web::Path<String>,
    request: HttpRequest,
) -> ApiResult<HttpResponse> {
    let id = input::path_id(&id)?;
    let query = input::query_pairs(&request)?;
    let page = input::page(&query)?;
    let filter = number_filter(&query)?;
    let (numbers, row_count) = state
        .db
        .run(move |conn| db::numbers::list(conn, id, &filter, page))
        .await?;
    let tz = state.time_zone;
    Ok(HttpResponse::Ok().json(json!({
        "page": page.number,
        "data": numbers.iter().map(|n| number_item(n, tz)).collect::<Vec<_>>(),
        "rowCount": row_count,
        "pageCount": tasks::page_count(row_count, page.per_page),
    })))
}

/// The numbers list's optional filters: `call_status`, `cause` and a `dest_number` prefix.
fn number_filter(query: &[(String, String)]) -> ApiResult<NumberFilter> {
    let call_status = input::query_text(query, "call_status")
        .map(|status| {
            status.parse::<CallStatus>().map_err(|_| {
                ApiError::bad_request(format!(
                    "call_status must be one of {}, not {status:?}",
                    <CallStatus as strum::VariantNames>::VARIANTS.join(", ")
                ))
            })
        })
        .transpose()?;
    let cause = input::query_text(query, "cause")
        .map(|cause| {
            cause.parse::<HangupCause>().map_err(|_| {
                ApiError::bad_request(format!(
                    "cause must be a hangup cause name such as NORMAL_CLEARING, not {cause:?}"
                ))
            })
        })
        .transpose()?;
    let dest_number_prefix = input::query_text(query, "dest_number")
        .map(|prefix| input::checked("dest_number", DestNumber::new(prefix)))
        .transpose()?;
    Ok(NumberFilter {
        call_status,
        cause,
        dest_number_prefix,
    })
}

pub const DOWNLOAD_HEADER: [&str; 10] = [
    "任务名称",
    "接通后动作",
    "被叫号码",
    "呼叫状态",
    "呼叫开始时间",
    "呼叫应答时间",
    "呼叫结束时间",
    "总时长",
    "计费时长",
    "挂机原因",
];

fn action_label(action: Action) -> &'static str {
    match action {
        Action::Playback => "放音",
        Action::Transfer => "转接",
        Action::None => "",
    }
}

/// Seconds from `from` to `to` when both are known.
fn seconds_between(from: Option<i64>, to: Option<i64>) -> String {
    match (from, to) {
        (Some(from), Some(to)) => (to - from).max(0).to_string(),
        _ => String::new(),
    }
}

pub(super) fn download_row(
    task_name: &str,
    action: Action,
    number: &Number,
    tz: TimeZone,
) -> [String; 10] {
    // An ended call that was never answered has a billed duration of 0.
    let billed = match (number.call_answer_time, number.call_end_time) {
        (None, Some(_)) => "0".to_owned(),
        (answer, end) => seconds_between(answer, end),
    };
    [
        task_name.to_owned(),
        action_label(action).to_owned(),
        number.dest_number.clone(),
        number.call_status.as_str().to_owned(),
        tz.format_optional(number.call_start_time),
        tz.format_optional(number.call_answer_time),
        tz.format_optional(number.call_end_time),
        seconds_between(number.call_start_time, number.call_end_time),
        billed,
        number.cause.map_or("", HangupCause::as_str).to_owned(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_checked_while_parsing() {
        /// Keeps what it is handed.
        struct Kept(Vec<NewNumber>);
        impl RowSink for Kept {
            fn accept(&mut self, number: NewNumber) -> ApiResult<()> {
                self.0.push(number);
                Ok(())
            }
        }
        let parse = |body: &str| {
            let mut kept = Kept(Vec::new());
            read_import(body.as_bytes(), &mut kept).map(|()| kept.0)
        };
        let numbers = parse(
            r#"{"data":[{"dest_number":"1000"},{"dest_number":2000,"external_id":"x"}],"other":1}"#,
        )
        .unwrap();
        assert_eq!(numbers.len(), 2);
        assert_eq!(numbers[1].dest_number, "2000");
        assert_eq!(numbers[1].external_id, "x");
        let refused =
            parse(r#"{"data":[{"dest_number":"1"},{"dest_number":"1a"},{"dest_number":[]}]}"#)
                .unwrap_err();
        assert!(
            refused.message.starts_with("data[1].dest_number"),
            "{}",
            refused.message
        );
        let refused =
            parse(r#"{"data":[{"dest_number":"1","external_id":"a\r\nb"}]}"#).unwrap_err();
        assert!(
            refused.message.contains("control characters"),
            "{}",
            refused.message
        );
        assert!(parse(r#"{"rows":[]}"#)
            .unwrap_err()
            .message
            .contains("data is required"));
        for malformed in [r#"{"data":[{"dest_number":"1"}"#, r#"{"data":[]} x"#, "[1]"] {
            assert!(
                parse(malformed)
                    .unwrap_err()
                    .message
                    .starts_with("malformed JSON body"),
                "{malformed}"
            );
        }
        assert!(parse("  ").unwrap_err().message.contains("empty"));
    }
}
