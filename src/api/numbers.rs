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
    input, tasks, AppState,
};
use crate::{
    clock::{self, TimeZone},
    db::{
        self,
        numbers::{NewNumber, Number},
    },
};

pub const MAX_DEST_NUMBER_CHARS: usize = 32;
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

#[derive(Deserialize)]
struct ImportBody {
    data: Option<Vec<ImportRow>>,
}

/// Digits with an optional leading `+`, and `*` / `#`, as a dial string may hold.
pub fn is_dialable(number: &str) -> bool {
    let digits = number.strip_prefix('+').unwrap_or(number);
    !digits.is_empty()
        && number.len() <= MAX_DEST_NUMBER_CHARS
        && digits
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#')
}

fn check_row(index: usize, row: ImportRow) -> ApiResult<NewNumber> {
    let dest_number = match row.dest_number {
        Some(Scalar::Text(text)) if is_dialable(&text) => text,
        Some(Scalar::Text(text)) => {
            return Err(ApiError::bad_request(format!(
                "data[{index}].dest_number {text:?} is not dialable: digits with an optional leading +, * or #, \
                 1 to {MAX_DEST_NUMBER_CHARS} characters; nothing was imported"
            )))
        }
        Some(Scalar::Other(kind)) => {
            return Err(ApiError::bad_request(format!(
                "data[{index}].dest_number must be a string, not {kind}; nothing was imported"
            )))
        }
        None => {
            return Err(ApiError::bad_request(format!("data[{index}].dest_number is missing; nothing was imported")))
        }
    };
    let external_id = match row.external_id {
        None => String::new(),
        Some(Scalar::Text(text)) if text.chars().count() <= MAX_EXTERNAL_ID_CHARS => text,
        Some(Scalar::Text(_)) => {
            return Err(ApiError::bad_request(format!(
                "data[{index}].external_id is longer than {MAX_EXTERNAL_ID_CHARS} characters; nothing was imported"
            )))
        }
        Some(Scalar::Other("null")) => String::new(),
        Some(Scalar::Other(kind)) => {
            return Err(ApiError::bad_request(format!(
                "data[{index}].external_id must be a string, not {kind}; nothing was imported"
            )))
        }
    };
    Ok(NewNumber {
        dest_number,
        external_id,
    })
}

/// `POST /api/out_call_tasks/{id}/import`: every row is checked first; one bad row refuses all.
pub async fn import(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Payload,
) -> ApiResult<HttpResponse> {
    let id = input::path_id(&id)?;
    let bytes = input::read_body(body, state.body_limit).await?;
    let numbers = web::block(move || -> ApiResult<Vec<NewNumber>> {
        let body: ImportBody = input::parse_json(&bytes)?;
        let rows = body
            .data
            .ok_or_else(|| ApiError::bad_request("data is required: an array of numbers"))?;
        rows.into_iter()
            .enumerate()
            .map(|(index, row)| check_row(index, row))
            .collect()
    })
    .await
    .map_err(|e| ApiError::bad_request(format!("could not read the import: {e}")))??;
    let started = std::time::Instant::now();
    let count = state
        .db
        .run(move |conn| db::numbers::import(conn, id, &numbers, clock::now()))
        .await?;
    tracing::info!(
        task = id,
        count,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "imported numbers"
    );
    state.dialer.task_changed(id);
    Ok(HttpResponse::Ok().json(json!({ "code": 200, "message": "success", "data": "{}" })))
}

fn number_item(number: &Number, tz: TimeZone) -> Value {
    json!({
        "id": number.id.to_string(),
        "dest_number": number.dest_number,
        "group_id": number.group_id.to_string(),
        "external_id": number.external_id,
        "uuid": number.uuid,
        "call_status": number.call_status,
        "outbound_call": number.outbound_call.to_string(),
        "dtmf": number.dtmf,
        "cause": number.cause,
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
    let page = input::page(&input::query_pairs(&request)?)?;
    let (numbers, row_count) = state
        .db
        .run(move |conn| db::numbers::list(conn, id, page))
        .await?;
    let tz = state.time_zone;
    Ok(HttpResponse::Ok().json(json!({
        "page": page.number,
        "data": numbers.iter().map(|n| number_item(n, tz)).collect::<Vec<_>>(),
        "rowCount": row_count,
        "pageCount": tasks::page_count(row_count, page.per_page),
    })))
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

fn action_label(action: &str) -> &str {
    match action {
        "playback" => "放音",
        "transfer" => "转接",
        other => other,
    }
}

/// Seconds from `from` to `to` when both are known.
fn seconds_between(from: Option<i64>, to: Option<i64>) -> String {
    match (from, to) {
        (Some(from), Some(to)) => (to - from).max(0).to_string(),
        _ => String::new(),
    }
}

fn download_row(task_name: &str, action: &str, number: &Number, tz: TimeZone) -> [String; 10] {
    // An ended call that was never answered has a billed duration of 0.
    let billed = match (number.call_answer_time, number.call_end_time) {
        (None, Some(_)) => "0".to_owned(),
        (answer, end) => seconds_between(answer, end),
    };
    [
        task_name.to_owned(),
        action_label(action).to_owned(),
        number.dest_number.clone(),
        number.call_status.clone(),
        tz.format_optional(number.call_start_time),
        tz.format_optional(number.call_answer_time),
        tz.format_optional(number.call_end_time),
        seconds_between(number.call_start_time, number.call_end_time),
        billed,
        number.cause.clone(),
    ]
}

/// `GET /api/out_call_tasks/{id}/download`: a header row, then one row a number in id order.
pub async fn download(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = input::path_id(&id)?;
    let tz = state.time_zone;
    let body = state
        .db
        .run(move |conn| {
            let task = db::tasks::require(conn, id)?;
            let mut out = Vec::with_capacity(128 + task.total as usize * 120);
            out.push(b'[');
            serde_json::to_writer(&mut out, &DOWNLOAD_HEADER).expect("writing JSON to memory");
            db::numbers::for_each(conn, id, |number| {
                out.push(b',');
                let row = download_row(&task.group_name, &task.action, &number, tz);
                serde_json::to_writer(&mut out, &row).expect("writing JSON to memory");
            })?;
            out.push(b']');
            Ok(out)
        })
        .await?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialable_numbers() {
        for good in ["1000", "+8613800138000", "*97", "#1", "1#", "+1*2#3"] {
            assert!(is_dialable(good), "{good:?}");
        }
        for bad in [
            "",
            "+",
            "12a",
            "1 000",
            "++1",
            "1+2",
            "-1",
            "١٢٣",
            &"1".repeat(33),
        ] {
            assert!(!is_dialable(bad), "{bad:?}");
        }
        assert!(is_dialable(&"1".repeat(32)));
    }
}
