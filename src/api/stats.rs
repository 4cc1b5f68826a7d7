//! `GET /api/out_call_tasks/{id}/stats`: a task's progress from its counters and the dialer's
//! live record, never from a scan of its numbers.

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use super::{error::ApiResult, input, AppState};
use crate::{
    clock::TimeZone,
    db::{self, stats::TaskCounts, webhooks::WebhookCounts, DbError},
    dialer::{activity::TaskPace, Waiting},
    domain::TaskStatus,
};

/// The stats object of the route and of the event stream's `task` events. A deleted task (only
/// ever seen in an event) carries `"deleted": true`.
pub fn stats_object(counts: &TaskCounts, pace: TaskPace, tz: TimeZone) -> Value {
    let mut object = json!({
        "id": counts.id,
        "status": counts.status.as_str(),
        "total": counts.total,
        "init": counts.init,
        "calling": counts.calling,
        "done": counts.done,
        "stop": counts.stop,
        "answered": counts.answered,
        "causes": counts.causes,
        "caps": pace.caps,
        "live": pace.live,
        "retry_pending": counts.retry_pending,
        "updated_at": tz.format(counts.updated_at),
        "webhooks": webhooks_object(&counts.webhooks),
    });
    if counts.deleted {
        object["deleted"] = Value::Bool(true);
    }
    object
}

/// Adds `waiting` (`""`, `call_window` or `retry`) and `waiting_until` (`""` or a time) to a
/// stats object: why a running task starts no call now, and until when at the latest.
pub fn add_waiting(
    object: &mut Value,
    counts: &TaskCounts,
    waiting: Option<Waiting>,
    tz: TimeZone,
) {
    let waiting = waiting.filter(|_| counts.status == TaskStatus::Running && !counts.deleted);
    object["waiting"] = waiting.map_or("", |w| w.reason.as_str()).into();
    object["waiting_until"] = tz.format_optional(waiting.map(|w| w.until)).into();
}

/// A task's result webhooks: pending, delivered, failed, and the latest error while any is pending
/// or failed.
fn webhooks_object(webhooks: &WebhookCounts) -> Value {
    json!({
        "pending": webhooks.pending,
        "delivered": webhooks.delivered,
        "failed": webhooks.failed,
        "last_error": webhooks.last_error,
    })
}

pub async fn get(state: web::Data<AppState>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let id = input::path_id(&id)?;
    let counts = state
        .db
        .run(move |conn| {
            db::stats::of_live_task(conn, id)?
                .ok_or_else(|| DbError::NotFound(format!("task {id}")))
        })
        .await?;
    let pace = state.dialer.task_pace(id);
    let mut data = stats_object(&counts, pace, state.time_zone);
    add_waiting(
        &mut data,
        &counts,
        state.dialer.waiting(id),
        state.time_zone,
    );
    Ok(HttpResponse::Ok().json(json!({
        "code": 200,
        "message": "success",
        "data": data,
    })))
}
