//! `/api/out_call_tasks`: create, list, get, update, start/stop, clone, delete.

use actix_web::{web, HttpRequest, HttpResponse};
use rusqlite::types::Value as SqlValue;
use serde_json::{json, Map, Number, Value};

use super::{
    error::{ApiError, ApiResult},
    input, AppState,
};
use crate::{
    clock::{self, TimeZone},
    db::{
        self,
        tasks::{ListFilter, StateChange, Task, TaskPatch},
    },
};

pub const STATUSES: &[&str] = &["init", "running", "stop", "done"];
pub const ACTIONS: &[&str] = &["", "playback", "transfer"];
const MAX_NAME_CHARS: usize = 128;
const MAX_CAPS: f64 = 10_000.0;
/// One call every 10,000 s; slower paces overflow the dialer's timers.
const MIN_CAPS: f64 = 0.0001;
const MAX_CONCURRENCY: i64 = 100_000;

/// Whole-valued floats print as integers (`1`, not `1.0`), as the vendor shows `max_caps`.
fn caps_number(caps: f64) -> Value {
    if caps.fract() == 0.0 && caps.abs() < 1e15 {
        Value::from(caps as i64)
    } else {
        Number::from_f64(caps)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    }
}

fn caps_text(caps: f64) -> String {
    caps_number(caps).to_string()
}

fn optional_text(value: Option<i64>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

/// The fields both shapes share, as strings.
fn common_fields(task: &Task, tz: TimeZone) -> Map<String, Value> {
    let fields = [
        ("description", task.description.clone()),
        ("status", task.status.clone()),
        ("cid_number", task.cid_number.clone()),
        ("cid_name", task.cid_name.clone()),
        ("context", task.context.clone()),
        ("dest_context", task.dest_context.clone()),
        ("task_start_time", tz.format_optional(task.task_start_time)),
        ("task_end_time", tz.format_optional(task.task_end_time)),
        ("group_confirm_key", task.group_confirm_key.clone()),
        (
            "group_confirm_read_timeout",
            optional_text(task.group_confirm_read_timeout),
        ),
        ("group_confirm_file", task.group_confirm_file.clone()),
        ("action", task.action.clone()),
        ("data", task.data.clone()),
        ("group_name", task.group_name.clone()),
        ("created_at", tz.format(task.created_at)),
        ("updated_at", tz.format(task.updated_at)),
        ("deleted_at", tz.format_optional(task.deleted_at)),
    ];
    fields
        .into_iter()
        .map(|(name, value)| (name.to_owned(), Value::String(value)))
        .collect()
}

/// A task in the list: every field a string except `total` and `done`.
fn list_item(task: &Task, tz: TimeZone) -> Value {
    let mut fields = common_fields(task, tz);
    let strings = [
        ("id", task.id.to_string()),
        ("calling_time", task.calling_time.to_string()),
        ("max_caps", caps_text(task.max_caps)),
        ("max_concurrency", task.max_concurrency.to_string()),
        ("auto_dial", task.auto_dial.to_string()),
        ("disable_ring_back", task.disable_ring_back.to_string()),
        ("auto_record", task.auto_record.to_string()),
    ];
    fields.extend(
        strings
            .into_iter()
            .map(|(name, value)| (name.to_owned(), Value::String(value))),
    );
    fields.insert("total".into(), task.total.into());
    fields.insert("done".into(), task.done.into());
    Value::Object(fields)
}

/// A task by id: the numeric settings are numbers, and `done_total` is `"done/total"`.
fn detail(task: &Task, tz: TimeZone) -> Value {
    let mut fields = common_fields(task, tz);
    fields.insert("id".into(), task.id.into());
    fields.insert("calling_time".into(), task.calling_time.into());
    fields.insert("max_caps".into(), caps_number(task.max_caps));
    fields.insert("max_concurrency".into(), task.max_concurrency.into());
    fields.insert("auto_dial".into(), task.auto_dial.into());
    fields.insert("disable_ring_back".into(), task.disable_ring_back.into());
    fields.insert("auto_record".into(), task.auto_record.into());
    fields.insert(
        "done_total".into(),
        format!("{}/{}", task.done, task.total).into(),
    );
    Value::Object(fields)
}

fn success(data: Value) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "code": 200, "message": "success", "data": data }))
}

fn group_name(value: &Value) -> ApiResult<String> {
    let name = input::text("group_name", value, MAX_NAME_CHARS)?;
    if name.trim().is_empty() {
        return Err(ApiError::bad_request("group_name must not be empty"));
    }
    Ok(name)
}

/// Checks every known settable field present in `body`; other keys are ignored, so a client may
/// send back an object it read.
fn task_patch(body: &Map<String, Value>, tz: TimeZone) -> ApiResult<TaskPatch> {
    let mut patch = TaskPatch::default();
    for (field, value) in body {
        let column: &'static str = match db::tasks::SETTABLE_COLUMNS.iter().find(|c| **c == field) {
            Some(column) => column,
            None => continue,
        };
        let checked = match column {
            "group_name" => SqlValue::Text(group_name(value)?),
            "description" => SqlValue::Text(input::text(column, value, 1024)?),
            "cid_number" => SqlValue::Text(input::text(column, value, 64)?),
            "cid_name" | "context" | "dest_context" => {
                SqlValue::Text(input::text(column, value, 128)?)
            }
            "calling_time" => SqlValue::Integer(input::integer(column, value, 5, 300)?),
            "max_caps" => SqlValue::Real(input::number_in(column, value, MIN_CAPS, MAX_CAPS)?),
            "max_concurrency" => {
                SqlValue::Integer(input::integer(column, value, 1, MAX_CONCURRENCY)?)
            }
            "auto_dial" | "disable_ring_back" | "auto_record" => {
                SqlValue::Integer(input::flag(column, value)?)
            }
            "task_start_time" => match input::text(column, value, 19)?.as_str() {
                "" => SqlValue::Null,
                text => SqlValue::Integer(
                    tz.parse(text)
                        .map_err(|e| ApiError::bad_request(format!("{column}: {e}")))?,
                ),
            },
            "group_confirm_key" => {
                let key = input::text(column, value, 8)?;
                if !key
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '*' || c == '#')
                {
                    return Err(ApiError::bad_request(format!(
                        "group_confirm_key must be DTMF keys (0-9, *, #), not {key:?}"
                    )));
                }
                SqlValue::Text(key)
            }
            "group_confirm_read_timeout" => match value {
                Value::Null => SqlValue::Null,
                Value::String(s) if s.is_empty() => SqlValue::Null,
                _ => SqlValue::Integer(input::integer(column, value, 1, 600)?),
            },
            "group_confirm_file" | "data" => SqlValue::Text(input::text(column, value, 4096)?),
            "action" => {
                let action = input::text(column, value, 16)?;
                if !ACTIONS.contains(&action.as_str()) {
                    return Err(ApiError::bad_request(format!(
                        "action must be \"playback\", \"transfer\" or \"\", not {action:?}"
                    )));
                }
                SqlValue::Text(action)
            }
            other => unreachable!("settable column {other} has no check"),
        };
        patch.set(column, checked);
    }
    Ok(patch)
}

pub async fn list(state: web::Data<AppState>, request: HttpRequest) -> ApiResult<HttpResponse> {
    let query = input::query_pairs(&request)?;
    let page = input::page(&query)?;
    let filter = ListFilter {
        name: input::query_text(&query, "name"),
        status: input::query_text(&query, "status"),
    };
    if let Some(status) = &filter.status {
        if !STATUSES.contains(&status.as_str()) {
            return Err(ApiError::bad_request(format!(
                "status must be one of {}, not {status:?}",
                STATUSES.join(", ")
            )));
        }
    }
    let (tasks, row_count) = state
        .db
        .run(move |conn| db::tasks::list(conn, &filter, page))
        .await?;
    let tz = state.time_zone;
    Ok(HttpResponse::Ok().json(json!({
        "page": page.number,
        "data": tasks.iter().map(|t| list_item(t, tz)).collect::<Vec<_>>(),
        "rowCount": row_count,
        "pageCount": page_count(row_count, page.per_page),
    })))
}

pub fn page_count(row_count: i64, per_page: u32) -> i64 {
    (row_count + per_page as i64 - 1) / per_page as i64
}

pub async fn get(state: web::Data<AppState>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let id = input::path_id(&id)?;
    let task = state
        .db
        .run(move |conn| db::tasks::require(conn, id))
        .await?;
    Ok(HttpResponse::Ok().json(detail(&task, state.time_zone)))
}

pub async fn create(state: web::Data<AppState>, body: web::Payload) -> ApiResult<HttpResponse> {
    let body = input::json_object(&input::read_body(body, state.body_limit).await?)?;
    if !body.contains_key("group_name") {
        return Err(ApiError::bad_request("group_name is required"));
    }
    let patch = task_patch(&body, state.time_zone)?;
    let id = state
        .db
        .run(move |conn| db::tasks::create(conn, &patch, clock::now()))
        .await?;
    state.dialer.task_changed(id);
    Ok(success(id.into()))
}

pub async fn update(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Payload,
) -> ApiResult<HttpResponse> {
    let id = input::path_id(&id)?;
    let body = input::json_object(&input::read_body(body, state.body_limit).await?)?;
    let patch = task_patch(&body, state.time_zone)?;
    state
        .db
        .run(move |conn| db::tasks::update(conn, id, &patch, clock::now()))
        .await?;
    state.dialer.task_changed(id);
    Ok(success(id.to_string().into()))
}

/// `PUT /api/out_call_tasks` with `{"action":"start"|"stop","data":["2",…]}`.
pub async fn start_or_stop(
    state: web::Data<AppState>,
    body: web::Payload,
) -> ApiResult<HttpResponse> {
    let body = input::json_object(&input::read_body(body, state.body_limit).await?)?;
    let starting = match body.get("action") {
        Some(Value::String(action)) if action == "start" => true,
        Some(Value::String(action)) if action == "stop" => false,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "action must be \"start\" or \"stop\", not {other}"
            )))
        }
        None => {
            return Err(ApiError::bad_request(
                "action is required (\"start\" or \"stop\")",
            ))
        }
    };
    let ids = match body.get("data") {
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|item| input::id("data[]", item))
            .collect::<ApiResult<Vec<_>>>()?,
        Some(Value::Array(_)) => {
            return Err(ApiError::bad_request("data must list at least one task id"))
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "data must be an array of task ids, not {other}"
            )))
        }
        None => {
            return Err(ApiError::bad_request(
                "data is required: an array of task ids",
            ))
        }
    };
    if starting {
        check_runnable(&state, &ids).await?;
    }
    let changes = {
        let ids = ids.clone();
        let now = clock::now();
        if starting {
            state
                .db
                .run(move |conn| db::tasks::start(conn, &ids, now))
                .await?
        } else {
            state
                .db
                .run(move |conn| db::tasks::stop(conn, &ids, now))
                .await?
        }
    };
    for id in ids {
        state.dialer.task_changed(id);
    }
    let tz = state.time_zone;
    let data: Vec<Value> = changes
        .iter()
        .map(|change| state_change(change, starting, tz))
        .collect();
    Ok(success(Value::Array(data)))
}

/// Refuses, before anything changes, a task the telephony back end cannot run.
async fn check_runnable(state: &AppState, ids: &[i64]) -> ApiResult<()> {
    let ids = ids.to_vec();
    let tasks = state
        .db
        .run(move |conn| {
            ids.iter()
                .map(|&id| db::tasks::require(conn, id))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
    for task in tasks {
        state.dialer.check_task(&task).map_err(|reason| {
            ApiError::bad_request(format!(
                "task {} cannot run on the {} back end: {reason}",
                task.id,
                state.dialer.backend_name()
            ))
        })?;
    }
    Ok(())
}

fn state_change(change: &StateChange, starting: bool, tz: TimeZone) -> Value {
    let (time_field, time) = if starting {
        ("task_start_time", change.task_start_time)
    } else {
        ("task_end_time", change.task_end_time)
    };
    json!({
        "data_id": change.id.to_string(),
        "status": change.status,
        "updated_at": tz.format(change.updated_at),
        time_field: tz.format_optional(time),
    })
}

pub async fn clone(state: web::Data<AppState>, body: web::Payload) -> ApiResult<HttpResponse> {
    let body = input::json_object(&input::read_body(body, state.body_limit).await?)?;
    let source = input::id(
        "id",
        body.get("id")
            .ok_or_else(|| ApiError::bad_request("id is required"))?,
    )?;
    let name = group_name(
        body.get("group_name")
            .ok_or_else(|| ApiError::bad_request("group_name is required"))?,
    )?;
    let description = body
        .get("description")
        .map(|v| input::text("description", v, 1024))
        .transpose()?
        .unwrap_or_default();
    let with_numbers = body
        .get("is_clone_numbers")
        .map(|v| input::flag("is_clone_numbers", v))
        .transpose()?
        == Some(1);
    let id = state
        .db
        .run(move |conn| {
            db::tasks::clone(
                conn,
                source,
                &name,
                &description,
                with_numbers,
                clock::now(),
            )
        })
        .await?;
    state.dialer.task_changed(id);
    Ok(success(id.into()))
}

pub async fn delete(state: web::Data<AppState>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let id = input::path_id(&id)?;
    state
        .db
        .run(move |conn| db::tasks::delete(conn, id, clock::now()))
        .await?;
    state.dialer.task_changed(id);
    Ok(success(id.to_string().into()))
}
