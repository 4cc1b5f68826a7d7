//! Reading request bodies and query strings, and checking each field with a message that names it.
//! Writes accept numbers and numeric strings alike, as XSwitch clients send both.

use actix_web::{http::StatusCode, web, HttpRequest};
use serde::de::DeserializeOwned;
use serde_json::{de::SliceRead, Map, Value};

use super::error::{ApiError, ApiResult};
use crate::{
    db::Page,
    domain::{Text, ValueError},
};

/// The body limit over a whole multipart request, all fields together: a declared length over it
/// is refused before anything is read, and reading stops as soon as the fields add up to more.
pub struct MultipartBudget {
    limit: usize,
    received: usize,
}

impl MultipartBudget {
    pub fn new(request: &HttpRequest, limit: usize) -> ApiResult<Self> {
        let declared = request
            .headers()
            .get(actix_web::http::header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if declared.is_some_and(|length| length > limit as u64) {
            return Err(Self::too_large(limit));
        }
        Ok(MultipartBudget { limit, received: 0 })
    }

    /// Counts `bytes` more of the request; 413 once they add up to more than the limit.
    pub fn take(&mut self, bytes: usize) -> ApiResult<()> {
        self.received = self.received.saturating_add(bytes);
        if self.received > self.limit {
            return Err(Self::too_large(self.limit));
        }
        Ok(())
    }

    fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("file: the upload is over the limit of {limit} bytes for the whole request"),
        )
    }
}

pub const MAX_PER_PAGE: u32 = 10_000;
const DEFAULT_PER_PAGE: u32 = 20;

/// The whole body, refused with 413 past `limit` bytes.
pub async fn read_body(payload: web::Payload, limit: usize) -> ApiResult<web::Bytes> {
    match payload.to_bytes_limited(limit).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(error)) if super::body_deadline::is_timeout(&error) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("the request body did not arrive in time: {error}"),
        )),
        Ok(Err(error)) => Err(ApiError::bad_request(format!(
            "could not read the request body: {error}"
        ))),
        Err(_) => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is over the limit of {limit} bytes"),
        )),
    }
}

pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    parse_json_with(body, |deserializer| T::deserialize(deserializer))
}

/// A whole JSON body read by `read` (a `Deserialize` or a seed that checks as it goes): an empty
/// body, malformed JSON or anything after the document is a 400 that says so.
pub fn parse_json_with<'b, T>(
    body: &'b [u8],
    read: impl FnOnce(&mut serde_json::Deserializer<SliceRead<'b>>) -> serde_json::Result<T>,
) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "the request body is empty; a JSON object is expected",
        ));
    }
    let malformed =
        |e: serde_json::Error| ApiError::bad_request(format!("malformed JSON body: {e}"));
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = read(&mut deserializer).map_err(malformed)?;
    deserializer.end().map_err(malformed)?;
    Ok(value)
}

/// A JSON object body.
pub fn json_object(body: &[u8]) -> ApiResult<Map<String, Value>> {
    match parse_json::<Value>(body)? {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::bad_request(
            "the request body must be a JSON object",
        )),
    }
}

/// A JSON object body, or a form-encoded one. Decided by the body itself, not the content type:
/// `curl -d '{…}'` labels JSON as a form.
pub fn json_or_form_object(body: &[u8]) -> ApiResult<Map<String, Value>> {
    if body.trim_ascii_start().starts_with(b"{") {
        return json_object(body);
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|e| ApiError::bad_request(format!("malformed form body: {e}")))?;
    Ok(pairs
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect())
}

pub fn query_pairs(request: &HttpRequest) -> ApiResult<Vec<(String, String)>> {
    serde_urlencoded::from_str(request.query_string())
        .map_err(|e| ApiError::bad_request(format!("malformed query string: {e}")))
}

fn query_value<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// A query parameter; an empty value counts as absent, as form-built URLs send `name=`.
pub fn query_text(pairs: &[(String, String)], name: &str) -> Option<String> {
    query_value(pairs, name)
        .filter(|value| !value.is_empty())
        .map(str::to_owned)
}

/// `page` (1-based, default 1) and `perPage` (default 20, at most 10000).
pub fn page(pairs: &[(String, String)]) -> ApiResult<Page> {
    let positive = |name: &str, default: u32, max: u32| -> ApiResult<u32> {
        match query_value(pairs, name).filter(|v| !v.is_empty()) {
            None => Ok(default),
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "{name} must be an integer from 1 to {max}, not {text:?}"
                    ))
                }),
        }
    };
    Ok(Page {
        number: positive("page", 1, i32::MAX as u32)?,
        per_page: positive("perPage", DEFAULT_PER_PAGE, MAX_PER_PAGE)?,
    })
}

/// `{id}` of a path.
pub fn path_id(text: &str) -> ApiResult<i64> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| {
            ApiError::bad_request(format!("id must be a positive integer, not {text:?}"))
        })
}

fn type_error(field: &str, expected: &str, value: &Value) -> ApiError {
    ApiError::bad_request(format!("{field} must be {expected}, not {value}"))
}

/// A string field; a number is taken as its decimal text, `null` as empty. Its checks are the
/// domain type's it goes into (see [`checked`]).
pub fn text(field: &str, value: &Value) -> ApiResult<String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Null => Ok(String::new()),
        other => Err(type_error(field, "a string", other)),
    }
}

/// A required text field of `body`, without control characters, at most `max_chars` long.
pub fn required_text(body: &Map<String, Value>, name: &str, max_chars: usize) -> ApiResult<String> {
    let value = body
        .get(name)
        .ok_or_else(|| ApiError::bad_request(format!("{name} is required")))?;
    checked(name, Text::new(text(name, value)?, max_chars)).map(Text::into_string)
}

/// A domain value's verdict, refused with a 400 that names the field.
pub fn checked<T>(field: &str, value: Result<T, ValueError>) -> ApiResult<T> {
    value.map_err(|error| ApiError::bad_request(format!("{field} {error}")))
}

/// An integer field given as a JSON integer or a string of one, within `min..=max`.
pub fn integer(field: &str, value: &Value, min: i64, max: i64) -> ApiResult<i64> {
    let parsed = match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|_| !s.trim().is_empty()),
        _ => None,
    };
    let n = parsed.ok_or_else(|| type_error(field, "an integer", value))?;
    if !(min..=max).contains(&n) {
        return Err(ApiError::bad_request(format!(
            "{field} must be from {min} to {max}, not {n}"
        )));
    }
    Ok(n)
}

/// A number (fractions allowed) given as a JSON number or a numeric string.
pub fn number(field: &str, value: &Value) -> ApiResult<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|f| f.is_finite())
    .ok_or_else(|| type_error(field, "a number", value))
}

/// A 0/1 switch: 0, 1, "0", "1", true or false.
pub fn flag(field: &str, value: &Value) -> ApiResult<bool> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s == "true" => Ok(true),
        Value::String(s) if s == "false" => Ok(false),
        _ => integer(field, value, 0, 1)
            .map(|n| n == 1)
            .map_err(|_| type_error(field, "0 or 1", value)),
    }
}

/// An id given as a number or a numeric string.
pub fn id(field: &str, value: &Value) -> ApiResult<i64> {
    integer(field, value, 1, i64::MAX)
        .map_err(|_| type_error(field, "a task id (a positive integer)", value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_and_numeric_strings_alike() {
        assert_eq!(integer("calling_time", &json!(30), 5, 300), Ok(30));
        assert_eq!(integer("calling_time", &json!("30"), 5, 300), Ok(30));
        assert_eq!(integer("calling_time", &json!(30.0), 5, 300), Ok(30));
        assert!(integer("calling_time", &json!("30s"), 5, 300)
            .unwrap_err()
            .message
            .contains("calling_time"));
        assert!(integer("calling_time", &json!(""), 5, 300).is_err());
        assert!(integer("calling_time", &json!(4), 5, 300).is_err());
        assert_eq!(number("max_caps", &json!("0.2")), Ok(0.2));
        assert!(number("max_caps", &json!("x")).is_err());
        assert!(number("max_caps", &json!(true)).is_err());
        assert_eq!(flag("auto_dial", &json!(true)), Ok(true));
        assert_eq!(flag("auto_dial", &json!("0")), Ok(false));
        assert!(flag("auto_dial", &json!(2)).is_err());
    }

    #[test]
    fn text_takes_numbers_and_names_the_field_of_a_refused_value() {
        assert_eq!(text("cid_number", &json!(1000)), Ok("1000".into()));
        assert!(text("cid_number", &json!([1])).is_err());
        let refused = checked("cid_name", crate::domain::Text::new("a\r\nb", 10)).unwrap_err();
        assert!(refused
            .message
            .starts_with("cid_name must not contain control characters"));
    }
}
