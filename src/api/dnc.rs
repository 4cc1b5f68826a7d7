//! `/api/dnc`: the do-not-call list (outcall's addition). `GET` pages through it (newest first,
//! filtered by a number prefix and a task), `POST` adds entries in bulk, `DELETE /api/dnc/{id}`
//! removes one.

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
    clock::TimeZone,
    db::{
        self,
        dnc::{DncEntry, DncFilter, NewEntry},
        DbError,
    },
    domain::{DestNumber, Text},
};

/// At most this many entries in one `POST`.
pub const MAX_ENTRIES: usize = 100_000;
const MAX_NOTE_CHARS: usize = 1_024;

fn entry_item(entry: &DncEntry, tz: TimeZone) -> Value {
    json!({
        "id": entry.id,
        "number": entry.number,
        "task_id": entry.task_id,
        "note": entry.note,
        "created_at": tz.format(entry.created_at),
    })
}

/// `GET /api/dnc?page=&perPage=&number=<prefix>&task_id=`: the list envelope, newest first.
/// `task_id` shows the entries limited to that task (those of every task have none).
pub async fn list(state: web::Data<AppState>, request: HttpRequest) -> ApiResult<HttpResponse> {
    let query = input::query_pairs(&request)?;
    let page = input::page(&query)?;
    let number_prefix = input::query_text(&query, "number")
        .map(|prefix| input::checked("number", DestNumber::new(prefix)))
        .transpose()?;
    let task_id = input::query_text(&query, "task_id")
        .map(|id| input::id("task_id", &Value::String(id)))
        .transpose()?;
    let filter = DncFilter {
        number_prefix,
        task_id,
    };
    let (entries, row_count) = state
        .db
        .run(move |conn| db::dnc::list(conn, &filter, page))
        .await?;
    let tz = state.time_zone;
    Ok(HttpResponse::Ok().json(json!({
        "page": page.number,
        "data": entries.iter().map(|e| entry_item(e, tz)).collect::<Vec<_>>(),
        "rowCount": row_count,
        "pageCount": tasks::page_count(row_count, page.per_page),
    })))
}

/// `POST /api/dnc` `{"data":[{"number":"…","note":"…","task_id":3}]}`: every entry is checked
/// first, and one bad entry (or a `task_id` that is not a live task) refuses them all, naming
/// `data[i].field`. Answers `data` `{"added":N,"duplicates":D}` as a string.
pub async fn add(state: web::Data<AppState>, body: web::Payload) -> ApiResult<HttpResponse> {
    // As large as an import may be: up to MAX_ENTRIES entries.
    let bytes = input::read_body(body, state.body_limit).await?;
    let entries = web::block(move || read_entries(&bytes))
        .await
        .map_err(|e| ApiError::bad_request(format!("could not read the entries: {e}")))??;
    let now = state.clock.now();
    let added = state
        .db
        .run(move |conn| db::dnc::add(conn, &entries, now))
        .await
        .map_err(|error| match error {
            DbError::NotFound(what) => {
                ApiError::not_found(format!("{what} not found; nothing was added"))
            }
            other => other.into(),
        })?;
    tracing::info!(
        added = added.added,
        duplicates = added.duplicates,
        "do-not-call entries added"
    );
    let data = format!(
        "{{\"added\":{},\"duplicates\":{}}}",
        added.added, added.duplicates
    );
    Ok(HttpResponse::Ok().json(json!({ "code": 200, "message": "success", "data": data })))
}

/// `DELETE /api/dnc/{id}`: 404 when there is no such entry.
pub async fn delete(state: web::Data<AppState>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let id = input::path_id(&id)?;
    state.db.run(move |conn| db::dnc::delete(conn, id)).await?;
    Ok(HttpResponse::Ok().json(json!({
        "code": 200,
        "message": "success",
        "data": id.to_string(),
    })))
}

/// One entry as sent; each field kept as JSON so that a bad one is named by its index.
#[derive(Deserialize)]
struct EntryRow {
    number: Option<Value>,
    note: Option<Value>,
    task_id: Option<Value>,
}

/// Reads `{"data":[…]}`, checking each entry as it is parsed; refuses past [`MAX_ENTRIES`]
/// without reading further entries into values.
fn read_entries(body: &[u8]) -> ApiResult<Vec<NewEntry>> {
    let outcome = input::parse_json_with(body, |deserializer| Body::deserialize(deserializer))?;
    outcome.0.unwrap_or_else(|| {
        Err(ApiError::bad_request(
            "data is required: an array of entries",
        ))
    })
}

/// The body: its `data`, checked (`None` when absent).
struct Body(Option<ApiResult<Vec<NewEntry>>>);

impl<'de> Deserialize<'de> for Body {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BodyVisitor;
        impl<'de> Visitor<'de> for BodyVisitor {
            type Value = Body;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object with a data array")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Body, A::Error> {
                let mut entries = None;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key == "data" && entries.is_none() {
                        entries = Some(map.next_value::<Entries>()?.0);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Body(entries))
            }
        }
        deserializer.deserialize_map(BodyVisitor)
    }
}

/// The `data` array, checked entry by entry; the first bad entry ends the checks (the rest is
/// skipped unparsed into values).
struct Entries(ApiResult<Vec<NewEntry>>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of entries")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Entries, A::Error> {
                let mut entries = Vec::new();
                while let Some(row) = seq.next_element::<EntryRow>()? {
                    let checked = if entries.len() == MAX_ENTRIES {
                        Err(ApiError::bad_request(format!(
                            "data has more than {MAX_ENTRIES} entries; send at most \
                             {MAX_ENTRIES} a request; nothing was added"
                        )))
                    } else {
                        check_entry(entries.len(), row)
                    };
                    match checked {
                        Ok(entry) => entries.push(entry),
                        Err(error) => {
                            while seq.next_element::<IgnoredAny>()?.is_some() {}
                            return Ok(Entries(Err(error)));
                        }
                    }
                }
                Ok(Entries(Ok(entries)))
            }
        }
        deserializer.deserialize_seq(EntriesVisitor)
    }
}

fn check_entry(index: usize, row: EntryRow) -> ApiResult<NewEntry> {
    let refused = |field: &str, why: String| {
        ApiError::bad_request(format!("data[{index}].{field} {why}; nothing was added"))
    };
    let number = match row.number {
        Some(Value::String(text)) => text,
        Some(Value::Number(n)) if n.is_u64() => n.to_string(),
        Some(other) => {
            return Err(refused(
                "number",
                format!("must be a string of digits, not {other}"),
            ))
        }
        None => return Err(refused("number", "is missing".into())),
    };
    let number = DestNumber::new(number).map_err(|error| refused("number", error.to_string()))?;
    let note = match row.note {
        None | Some(Value::Null) => Text::default(),
        Some(Value::String(text)) => {
            Text::new(text, MAX_NOTE_CHARS).map_err(|error| refused("note", error.to_string()))?
        }
        Some(other) => return Err(refused("note", format!("must be a string, not {other}"))),
    };
    let task_id = match row.task_id {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            input::id(&format!("data[{index}].task_id"), &value).map_err(|error| {
                ApiError::bad_request(format!("{}; nothing was added", error.message))
            })?,
        ),
    };
    Ok(NewEntry {
        number: number.into_string(),
        task_id,
        note: note.into_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_checked_naming_the_field() {
        let entries = read_entries(
            br#"{"data":[{"number":"1000"},{"number":2000,"note":"asked","task_id":"3"},
                {"number":"+3000","note":null,"task_id":null}],"x":1}"#,
        )
        .unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[1].number, "2000");
        assert_eq!(entries[1].task_id, Some(3));
        assert_eq!(entries[1].note, "asked");
        assert_eq!(entries[2].task_id, None);
        for (body, start) in [
            (
                r#"{"data":[{"number":"1"},{"number":"1a"}]}"#,
                "data[1].number",
            ),
            (r#"{"data":[{"number":"1","note":"a\nb"}]}"#, "data[0].note"),
            (r#"{"data":[{"number":"1","note":[1]}]}"#, "data[0].note"),
            (
                r#"{"data":[{"number":"1","task_id":0}]}"#,
                "data[0].task_id",
            ),
            (
                r#"{"data":[{"number":"1","task_id":"x"}]}"#,
                "data[0].task_id",
            ),
            (r#"{"data":[{"note":"1"}]}"#, "data[0].number is missing"),
            (r#"{"data":[{"number":true}]}"#, "data[0].number"),
            (r#"{"rows":[]}"#, "data is required"),
            (r#"{"data":[{"number":"1"}]"#, "malformed JSON body"),
            ("", "the request body is empty"),
        ] {
            let refused = read_entries(body.as_bytes()).unwrap_err();
            assert!(
                refused.message.starts_with(start),
                "{body}: {}",
                refused.message
            );
        }
        let long = format!(
            r#"{{"data":[{{"number":"1","note":"{}"}}]}}"#,
            "x".repeat(1025)
        );
        assert!(read_entries(long.as_bytes()).is_err());
    }

    #[test]
    fn at_most_the_limit_of_entries() {
        let body = |count: usize| {
            let rows = vec![r#"{"number":"1000"}"#; count].join(",");
            format!(r#"{{"data":[{rows}]}}"#)
        };
        assert_eq!(
            read_entries(body(MAX_ENTRIES).as_bytes()).unwrap().len(),
            MAX_ENTRIES
        );
        let refused = read_entries(body(MAX_ENTRIES + 1).as_bytes()).unwrap_err();
        assert!(
            refused.message.starts_with("data has more than"),
            "{}",
            refused.message
        );
    }
}
