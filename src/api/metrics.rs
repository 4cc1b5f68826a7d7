//! `GET /metrics`: the Prometheus scrape, outside `/api` (no login token), open unless
//! `--metrics-token` is set; and the middleware that times every HTTP request by route.

use std::time::Instant;

use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::header::{self, HeaderValue},
    middleware::Next,
    web, HttpRequest, HttpResponse, ResponseError,
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{error::ApiError, AppState};
use crate::{
    db,
    metrics::{Format, Snapshot, UNMATCHED_ROUTE},
};

/// The exposition, in OpenMetrics when the client asks for it (Prometheus does), else in
/// Prometheus's classic text format.
pub async fn serve(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    if let Some(expected) = &state.metrics_token {
        if !presents_token(&request, expected) {
            let mut response = ApiError::unauthorized(
                "/metrics needs the metrics token: send Authorization: Bearer <--metrics-token>",
            )
            .error_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"outcall metrics\""),
            );
            return response;
        }
    }
    let snapshot = match snapshot(&state).await {
        Ok(snapshot) => snapshot,
        Err(error) => return ApiError::from(error).error_response(),
    };
    let accept = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok());
    let format = Format::negotiate(accept);
    let body = state.dialer.metrics().render(&snapshot, format);
    HttpResponse::Ok()
        .content_type(format.content_type())
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

/// The values read at scrape time: live calls and paces from the dialer, queue sizes from the
/// database.
async fn snapshot(state: &AppState) -> db::DbResult<Snapshot> {
    let mut live_calls = 0;
    let mut task_caps = Vec::new();
    for task in state.dialer.active_tasks() {
        let pace = state.dialer.task_pace(task);
        live_calls += pace.live as i64;
        task_caps.push((task, pace.caps));
    }
    task_caps.sort_by_key(|(task, _)| *task);
    let (retry_queue, webhook_outbox) = state
        .db
        .run(|conn| {
            Ok((
                db::metrics::retry_queue(conn)?,
                db::webhooks::outbox_size(conn)?,
            ))
        })
        .await?;
    Ok(Snapshot {
        live_calls,
        task_caps,
        retry_queue,
        webhook_outbox,
    })
}

/// Whether the request carries `Authorization: Bearer <expected>`. Both sides are hashed first so
/// that the constant-time comparison does not reveal the token's length either.
fn presents_token(request: &HttpRequest, expected: &str) -> bool {
    let Some(presented) = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
    else {
        return false;
    };
    let presented = Sha256::digest(presented.as_bytes());
    let expected = Sha256::digest(expected.as_bytes());
    presented.ct_eq(&expected).into()
}

/// Times every request until its response's head and counts it under its route's pattern
/// (`/api/out_call_tasks/{id}`), method and status.
pub async fn record_request(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let metrics = request
        .app_data::<web::Data<AppState>>()
        .map(|state| state.dialer.metrics().clone());
    let method = request.method().clone();
    let response = next.call(request).await;
    let (route, status) = match &response {
        Ok(response) => (
            response.request().match_pattern(),
            response.status().as_u16(),
        ),
        Err(error) => (None, error.as_response_error().status_code().as_u16()),
    };
    if let Some(metrics) = metrics {
        metrics.http_request(
            route.as_deref().unwrap_or(UNMATCHED_ROUTE),
            method.as_str(),
            status,
            started.elapsed().as_secs_f64(),
        );
    }
    response
}
