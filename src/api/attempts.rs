//! `GET /api/out_call_tasks/{id}/numbers/{number_id}/attempts`: every call placed to a number,
//! in attempt order (the number's own row shows the latest).

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use super::{error::ApiResult, input, AppState};
use crate::{clock::TimeZone, db, db::numbers::Attempt, domain::HangupCause};

/// An attempt as the attempts route and a result webhook's body show it.
pub(super) fn attempt_item(attempt: &Attempt, tz: TimeZone) -> Value {
    json!({
        "attempt": attempt.attempt,
        "uuid": attempt.uuid,
        "dest_number": attempt.dest_number,
        "call_start_time": tz.format(attempt.call_start_time),
        "call_answer_time": tz.format_optional(attempt.call_answer_time),
        "call_end_time": tz.format_optional(attempt.call_end_time),
        "cause": attempt.cause.map_or("", HangupCause::as_str),
        "sip_code": attempt.sip_code.map(|code| code.to_string()).unwrap_or_default(),
        "billsec": attempt.billsec,
        "dtmf": attempt.dtmf,
        "record_path": attempt.record_path,
    })
}

pub async fn list(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (task_id, number_id) = path.into_inner();
    let task_id = input::path_id(&task_id)?;
    let number_id = input::path_id(&number_id)?;
    let attempts = state
        .db
        .run(move |conn| db::numbers::attempts(conn, task_id, number_id))
        .await?;
    let tz = state.time_zone;
    Ok(HttpResponse::Ok().json(json!({
        "code": 200,
        "message": "success",
        "data": attempts.iter().map(|a| attempt_item(a, tz)).collect::<Vec<_>>(),
    })))
}
