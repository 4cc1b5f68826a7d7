//! `/api/out_call_tasks`: create, list, get, update, start/stop, clone, delete.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Number, Value};

use super::{
    error::{ApiError, ApiResult},
    input, AppState,
};
use crate::{
    clock::TimeZone,
    db::{
        self,
        tasks::{ListFilter, StateChange},
    },
    domain::{
        Action, CallWindows, CallingTime, ConfirmKey, ConfirmTimeout, MaxAttempts, MaxCaps,
        MaxConcurrency, RetryCauses, RetryInterval, Task, TaskName, TaskSettings, TaskStatus,
        TaskTimeZone, Text, WebhookUrl, Weekdays,
    },
};

/// At most this many ids in one start or stop.
pub const MAX_START_STOP_IDS: usize = 1_000;

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

fn optional_text(value: Option<ConfirmTimeout>) -> String {
    value.map(|v| v.get().to_string()).unwrap_or_default()
}

fn flag_number(flag: bool) -> i64 {
    flag as i64
}

/// The fields both shapes share, as strings.
fn common_fields(task: &Task, tz: TimeZone) -> Map<String, Value> {
    let fields = [
        ("description", task.description.clone()),
        ("status", task.status.as_str().to_owned()),
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
        ("action", task.action.as_str().to_owned()),
        ("data", task.data.clone()),
        ("group_name", task.group_name.clone()),
        ("created_at", tz.format(task.created_at)),
        ("updated_at", tz.format(task.updated_at)),
        ("deleted_at", tz.format_optional(task.deleted_at)),
        ("retry_causes", task.retry_causes.to_string()),
        ("call_windows", task.call_windows.as_str().to_owned()),
        ("call_weekdays", task.call_weekdays.as_str().to_owned()),
        ("time_zone", task.time_zone.as_str().to_owned()),
        ("webhook_url", task.webhook_url.as_str().to_owned()),
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
        ("calling_time", task.calling_time.get().to_string()),
        ("max_caps", caps_text(task.max_caps.get())),
        ("max_concurrency", task.max_concurrency.get().to_string()),
        ("auto_dial", flag_number(task.auto_dial).to_string()),
        (
            "disable_ring_back",
            flag_number(task.disable_ring_back).to_string(),
        ),
        ("auto_record", flag_number(task.auto_record).to_string()),
        ("max_attempts", task.max_attempts.get().to_string()),
        ("retry_interval", task.retry_interval.get().to_string()),
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
    fields.insert("calling_time".into(), task.calling_time.get().into());
    fields.insert("max_caps".into(), caps_number(task.max_caps.get()));
    fields.insert("max_concurrency".into(), task.max_concurrency.get().into());
    fields.insert("auto_dial".into(), flag_number(task.auto_dial).into());
    fields.insert(
        "disable_ring_back".into(),
        flag_number(task.disable_ring_back).into(),
    );
    fields.insert("auto_record".into(), flag_number(task.auto_record).into());
    fields.insert("max_attempts".into(), task.max_attempts.get().into());
    fields.insert("retry_interval".into(), task.retry_interval.get().into());
    fields.insert(
        "done_total".into(),
        format!("{}/{}", task.done, task.total).into(),
    );
    Value::Object(fields)
}

fn success(data: Value) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "code": 200, "message": "success", "data": data }))
}

fn group_name(value: &Value) -> ApiResult<TaskName> {
    input::checked(
        "group_name",
        TaskName::new(input::text("group_name", value)?),
    )
}

fn text(field: &str, value: &Value, max_chars: usize) -> ApiResult<Text> {
    input::checked(field, Text::new(input::text(field, value)?, max_chars))
}

/// A `YYYY-MM-DD HH:MM:SS` time in the server's zone; empty clears it.
fn time(field: &str, value: &Value, tz: TimeZone) -> ApiResult<Option<i64>> {
    let text = text(field, value, 19)?;
    match text.as_str() {
        "" => Ok(None),
        text => tz
            .parse(text)
            .map(Some)
            .map_err(|e| ApiError::bad_request(format!("{field}: {e}"))),
    }
}

/// An optional setting that the empty string or `null` clears.
fn clearable(value: &Value) -> bool {
    matches!(value, Value::Null) || matches!(value, Value::String(s) if s.is_empty())
}

/// Checks every known setting present in `body`; other keys are ignored, so a client may send
/// back an object it read.
fn task_settings(body: &Map<String, Value>, tz: TimeZone) -> ApiResult<TaskSettings> {
    let mut settings = TaskSettings::default();
    for (field, value) in body {
        let field = field.as_str();
        let integer = |min, max| input::integer(field, value, min, max);
        match field {
            "group_name" => settings.group_name = Some(group_name(value)?),
            "description" => settings.description = Some(text(field, value, 1024)?),
            "cid_number" => settings.cid_number = Some(text(field, value, 64)?),
            "cid_name" => settings.cid_name = Some(text(field, value, 128)?),
            "context" => settings.context = Some(text(field, value, 128)?),
            "dest_context" => settings.dest_context = Some(text(field, value, 128)?),
            "calling_time" => {
                let n = integer(CallingTime::MIN, CallingTime::MAX)?;
                settings.calling_time = Some(input::checked(field, CallingTime::new(n))?);
            }
            "max_caps" => {
                let n = input::number(field, value)?;
                settings.max_caps = Some(input::checked(field, MaxCaps::new(n))?);
            }
            "max_concurrency" => {
                let n = integer(MaxConcurrency::MIN, MaxConcurrency::MAX)?;
                settings.max_concurrency = Some(input::checked(field, MaxConcurrency::new(n))?);
            }
            "auto_dial" => settings.auto_dial = Some(input::flag(field, value)?),
            "disable_ring_back" => settings.disable_ring_back = Some(input::flag(field, value)?),
            "auto_record" => settings.auto_record = Some(input::flag(field, value)?),
            "task_start_time" => settings.task_start_time = Some(time(field, value, tz)?),
            "task_end_time" => settings.task_end_time = Some(time(field, value, tz)?),
            "max_attempts" => {
                let n = integer(MaxAttempts::MIN, MaxAttempts::MAX)?;
                settings.max_attempts = Some(input::checked(field, MaxAttempts::new(n))?);
            }
            "retry_interval" => {
                let n = integer(RetryInterval::MIN, RetryInterval::MAX)?;
                settings.retry_interval = Some(input::checked(field, RetryInterval::new(n))?);
            }
            "retry_causes" => {
                let text = text(field, value, 4096)?;
                settings.retry_causes =
                    Some(input::checked(field, RetryCauses::new(text.as_str()))?);
            }
            "call_windows" => {
                let text = text(field, value, CallWindows::MAX_CHARS)?;
                settings.call_windows =
                    Some(input::checked(field, CallWindows::new(text.as_str()))?);
            }
            "call_weekdays" => {
                let text = text(field, value, 64)?;
                settings.call_weekdays = Some(input::checked(field, Weekdays::new(text.as_str()))?);
            }
            "time_zone" => {
                let text = text(field, value, 64)?;
                settings.time_zone = Some(input::checked(field, TaskTimeZone::new(text.as_str()))?);
            }
            "webhook_url" => {
                let text = text(field, value, WebhookUrl::MAX_CHARS)?;
                settings.webhook_url = Some(input::checked(field, WebhookUrl::new(text.as_str()))?);
            }
            "group_confirm_key" => {
                let key = input::text(field, value)?;
                settings.group_confirm_key = Some(input::checked(field, ConfirmKey::new(key))?);
            }
            "group_confirm_read_timeout" => {
                settings.group_confirm_read_timeout = Some(if clearable(value) {
                    None
                } else {
                    let n = integer(ConfirmTimeout::MIN, ConfirmTimeout::MAX)?;
                    Some(input::checked(field, ConfirmTimeout::new(n))?)
                });
            }
            "group_confirm_file" => settings.group_confirm_file = Some(text(field, value, 4096)?),
            "data" => settings.data = Some(text(field, value, 4096)?),
            "action" => {
                let action = input::text(field, value)?;
                settings.action = Some(action.parse::<Action>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "action must be \"playback\", \"transfer\" or \"\", not {action:?}"
                    ))
                })?);
            }
            _ => {}
        }
    }
    Ok(settings)
}

pub async fn list(state: web::Data<AppState>, request: HttpRequest) -> ApiResult<HttpResponse> {
    let query = input::query_pairs(&request)?;
    let page = input::page(&query)?;
    let status = input::query_text(&query, "status")
        .map(|status| {
            status.parse::<TaskStatus>().map_err(|_| {
                ApiError::bad_request(format!(
                    "status must be one of {}, not {status:?}",
                    <TaskStatus as strum::VariantNames>::VARIANTS.join(", ")
                ))
            })
        })
        .transpose()?;
    let filter = ListFilter {
        name: input::query_text(&query, "name"),
        status,
    };
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
    let body = input::json_object(&input::read_body(body, state.write_body_limit()).await?)?;
    if !body.contains_key("group_name") {
        return Err(ApiError::bad_request("group_name is required"));
    }
    let settings = task_settings(&body, state.time_zone)?;
    let now = state.clock.now();
    let id = state
        .db
        .run(move |conn| db::tasks::create(conn, &settings, now))
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
    let body = input::json_object(&input::read_body(body, state.write_body_limit()).await?)?;
    let settings = task_settings(&body, state.time_zone)?;
    let now = state.clock.now();
    state
        .db
        .run(move |conn| db::tasks::update(conn, id, &settings, now))
        .await?;
    state.dialer.task_changed(id);
    Ok(success(id.to_string().into()))
}

/// `PUT /api/out_call_tasks` with `{"action":"start"|"stop","data":["2",…]}`.
pub async fn start_or_stop(
    state: web::Data<AppState>,
    body: web::Payload,
) -> ApiResult<HttpResponse> {
    let body = input::json_object(&input::read_body(body, state.write_body_limit()).await?)?;
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
        Some(Value::Array(items)) if items.len() > MAX_START_STOP_IDS => {
            return Err(ApiError::bad_request(format!(
                "data lists {} task ids; at most {MAX_START_STOP_IDS} are allowed at once",
                items.len()
            )))
        }
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut ids = Vec::with_capacity(items.len());
            for item in items {
                let id = input::id("data[]", item)?;
                // The same task twice is started or stopped once.
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            ids
        }
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
        let now = state.clock.now();
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
        "status": change.status.as_str(),
        "updated_at": tz.format(change.updated_at),
        time_field: tz.format_optional(time),
    })
}

pub async fn clone(state: web::Data<AppState>, body: web::Payload) -> ApiResult<HttpResponse> {
    let body = input::json_object(&input::read_body(body, state.write_body_limit()).await?)?;
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
        .map(|v| text("description", v, 1024))
        .transpose()?
        .unwrap_or_default();
    let with_numbers = body
        .get("is_clone_numbers")
        .map(|v| input::flag("is_clone_numbers", v))
        .transpose()?
        == Some(true);
    let now = state.clock.now();
    let id = state
        .db
        .run(move |conn| {
            db::tasks::clone(
                conn,
                source,
                name.as_str(),
                description.as_str(),
                with_numbers,
                now,
            )
        })
        .await?;
    state.dialer.task_changed(id);
    Ok(success(id.into()))
}

pub async fn delete(state: web::Data<AppState>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let id = input::path_id(&id)?;
    let now = state.clock.now();
    state
        .db
        .run(move |conn| db::tasks::delete(conn, id, now))
        .await?;
    state.dialer.task_changed(id);
    Ok(success(id.to_string().into()))
}
