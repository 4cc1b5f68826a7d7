//! The HTTP API: XSwitch's `/api/out_call_tasks` contract, sessions, health, and the admin page.

mod attempts;
mod audio;
pub mod body_deadline;
mod dnc;
pub mod error;
pub mod events;
mod export;
mod import_file;
mod input;
mod media_files;
pub mod metrics;
mod numbers;
pub mod openapi;
mod sessions;
mod stats;
mod tasks;
mod users;
pub mod webhook_body;

use std::time::Instant;

use actix_web::{
    body::{BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::{header, Method, StatusCode},
    middleware::{from_fn, Next},
    web, HttpMessage, HttpRequest, HttpResponse,
};
use serde_json::json;

use self::error::ApiError;
use crate::{
    auth::{self, Caller, Role},
    clock::TimeZone,
    db::Db,
    dialer::DialerHandle,
    web_assets,
};

/// What every handler can reach.
pub struct AppState {
    pub db: Db,
    pub time_zone: TimeZone,
    pub body_limit: usize,
    pub dialer: DialerHandle,
    /// Where uploaded media files are stored (under `media/`).
    pub data_dir: std::path::PathBuf,
    /// Logins, roles and passwords: the hashing pool and the login throttle.
    pub accounts: auth::Accounts,
    /// The publisher of `/api/events`.
    pub events: events::Events,
    /// The wall clock of schedules (a test's manual one, else the system's).
    pub clock: crate::clock::Clock,
    /// `/metrics` needs this bearer token when set.
    pub metrics_token: Option<String>,
}

/// Bodies of task writes (create, update, start/stop, clone) are small: a larger one is refused
/// before it is parsed. Only imports and uploads may be as large as `--body-limit`.
pub const WRITE_BODY_LIMIT: usize = 64 * 1024;

impl AppState {
    pub fn write_body_limit(&self) -> usize {
        self.body_limit.min(WRITE_BODY_LIMIT)
    }
}

/// The token a request was authenticated with.
#[derive(Debug, Clone)]
pub struct BearerToken(pub String);

/// Registers every route; `state` is shared by all workers.
pub fn configure(config: &mut web::ServiceConfig, state: web::Data<AppState>) {
    config
        .app_data(state)
        .route("/healthz", web::get().to(health))
        .route("/metrics", web::get().to(metrics::serve))
        .service(
            web::scope("/api")
                .wrap(from_fn(require_token))
                .service(resource("/openapi.json").route(web::get().to(openapi::serve)))
                .service(
                    resource("/sessions")
                        .route(web::post().to(sessions::log_in))
                        .route(web::delete().to(sessions::log_out)),
                )
                .service(
                    resource("/out_call_tasks")
                        .route(web::get().to(tasks::list))
                        .route(web::post().to(tasks::create))
                        .route(web::put().to(tasks::start_or_stop)),
                )
                .service(resource("/out_call_tasks/clone").route(web::post().to(tasks::clone)))
                .service(
                    resource("/out_call_tasks/{id}")
                        .route(web::get().to(tasks::get))
                        .route(web::put().to(tasks::update))
                        .route(web::delete().to(tasks::delete)),
                )
                .service(
                    resource("/out_call_tasks/{id}/import").route(web::post().to(numbers::import)),
                )
                .service(
                    resource("/out_call_tasks/{id}/numbers").route(web::get().to(numbers::list)),
                )
                .service(
                    resource("/out_call_tasks/{id}/download")
                        .route(web::get().to(export::download)),
                )
                .service(resource("/out_call_tasks/{id}/stats").route(web::get().to(stats::get)))
                .service(resource("/events").route(web::get().to(events::stream)))
                .service(
                    resource("/media_files")
                        .route(web::get().to(media_files::list))
                        .route(web::post().to(media_files::upload)),
                )
                .service(
                    resource("/media_files/{id}/audio")
                        .route(web::get().to(audio::media_file))
                        .route(web::head().to(audio::media_file)),
                )
                .service(
                    resource("/out_call_tasks/{id}/numbers/{number_id}/attempts")
                        .route(web::get().to(attempts::list)),
                )
                .service(
                    resource("/out_call_tasks/{id}/numbers/{number_id}/recording")
                        .route(web::get().to(audio::recording))
                        .route(web::head().to(audio::recording)),
                )
                .service(
                    resource("/dnc")
                        .route(web::get().to(dnc::list))
                        .route(web::post().to(dnc::add)),
                )
                .service(resource("/dnc/{id}").route(web::delete().to(dnc::delete)))
                .service(
                    resource("/users")
                        .route(web::get().to(users::list))
                        .route(web::post().to(users::create)),
                )
                .service(
                    resource("/users/{id}/password").route(web::put().to(users::change_password)),
                )
                .default_service(web::to(unknown_route)),
        )
        .route("/", web::get().to(web_assets::serve))
        .route("/", web::head().to(web_assets::serve))
        .route("/{path:.*}", web::get().to(web_assets::serve))
        .route("/{path:.*}", web::head().to(web_assets::serve))
        .default_service(web::to(unknown_route));
}

/// A resource whose unsupported methods answer 405 in the envelope.
fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn unknown_route(request: HttpRequest) -> HttpResponse {
    error_response(ApiError::not_found(format!(
        "no such route: {} {}",
        request.method(),
        request.path()
    )))
}

async fn method_not_allowed(request: HttpRequest) -> HttpResponse {
    error_response(ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} is not allowed on {}", request.method(), request.path()),
    ))
}

fn error_response(error: ApiError) -> HttpResponse {
    actix_web::ResponseError::error_response(&error)
}

/// The dialer counts as stuck when its supervisor has not finished a pass for this long (a pass
/// takes at most a few seconds of database waits; it runs twice a second).
const DIALER_STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// 200 with `"status":"ok"` when the database answers, the dialer's supervisor is alive and the
/// back end can place calls; else 503 in the error envelope, with the same details.
async fn health(state: web::Data<AppState>) -> HttpResponse {
    let since_last_pass = state.dialer.since_last_pass();
    let dialer_ok = since_last_pass < DIALER_STALE_AFTER;
    let backend = state.dialer.backend_health();
    let mut details = json!({
        "dialer": {
            "status": if dialer_ok { "ok" } else { "stalled" },
            "last_pass_seconds_ago": since_last_pass.as_secs_f64(),
        },
        "backend": {
            "name": state.dialer.backend_name(),
            "status": if backend.healthy { "ok" } else { "unhealthy" },
            "detail": backend.detail,
        },
    });
    if let Some(sessions_per_second) = backend.switch_max_sps {
        details["backend"]["switch_max_sps"] = sessions_per_second.into();
    }
    let (schema_version, mut problems) = match state.db.schema_version().await {
        Ok(version) => (Some(version), Vec::new()),
        Err(error) => {
            tracing::error!(%error, "health check: the database is not usable");
            (None, vec!["the database is not usable".to_owned()])
        }
    };
    if !dialer_ok {
        problems.push(format!(
            "the dialer has not run for {} s",
            since_last_pass.as_secs()
        ));
    }
    if !backend.healthy {
        problems.push(format!(
            "the {} back end is unhealthy: {}",
            state.dialer.backend_name(),
            backend.detail
        ));
    }
    let mut body = details;
    body["schema_version"] = json!(schema_version);
    if problems.is_empty() {
        body["status"] = json!("ok");
        HttpResponse::Ok().json(body)
    } else {
        tracing::error!(problems = ?problems, "health check failed");
        body["code"] = json!(503);
        body["message"] = json!(problems.join("; "));
        body["status"] = json!("unhealthy");
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Whether a `GET` of this path may carry its token as `?token=`: the routes a browser reaches
/// without sending headers (`EventSource`, `<audio>`). Matched by shape, so no other route ever
/// takes a token from its URL.
fn accepts_query_token(method: &Method, path: &str) -> bool {
    if *method != Method::GET && *method != Method::HEAD {
        return false;
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let id = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match segments.as_slice() {
        ["api", "events"] => true,
        ["api", "media_files", media, "audio"] => id(media),
        ["api", "out_call_tasks", task, "numbers", number, "recording"] => id(task) && id(number),
        _ => false,
    }
}

/// The `token` parameter of a query string, when there is one.
fn query_token(query: &str) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .ok()?
        .into_iter()
        .find(|(name, _)| name == "token")
        .map(|(_, token)| token.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// The token from `X-XTRA-AUTH-ID` (XSwitch's header) or `Authorization: Bearer`, or, on the
/// routes of [`accepts_query_token`] only, from `?token=`.
fn presented_token(request: &ServiceRequest) -> Option<String> {
    header_token(request).or_else(|| {
        accepts_query_token(request.method(), request.path())
            .then(|| query_token(request.query_string()))
            .flatten()
    })
}

fn header_token(request: &ServiceRequest) -> Option<String> {
    let headers = request.headers();
    if let Some(token) = headers.get("X-XTRA-AUTH-ID").and_then(|v| v.to_str().ok()) {
        return Some(token.trim().to_owned()).filter(|t| !t.is_empty());
    }
    let authorization = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = authorization.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// Every `/api` route but logging in and the OpenAPI document needs a live token, and a
/// `readonly` user may only read (`GET`), log out and change their own password: any other change
/// is 403.
async fn require_token(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let exempt = (request.method() == Method::POST && request.path() == "/api/sessions")
        || (request.method() == Method::GET && request.path() == "/api/openapi.json");
    if !exempt {
        let Some(token) = presented_token(&request) else {
            let error = ApiError::unauthorized(
                "a login token is required: send X-XTRA-AUTH-ID or Authorization: Bearer",
            );
            return Ok(request.error_response(error));
        };
        let state = request
            .app_data::<web::Data<AppState>>()
            .expect("AppState is registered")
            .clone();
        match state.accounts.caller_of_token(&token).await {
            Ok(Some(caller)) => {
                if !role_allows(caller, request.method(), request.path()) {
                    let message = format!(
                        "a {} user may only read: {} {} is refused",
                        caller.role.as_str(),
                        request.method(),
                        request.path()
                    );
                    return Ok(
                        request.error_response(ApiError::new(StatusCode::FORBIDDEN, message))
                    );
                }
                request.extensions_mut().insert(caller);
                request.extensions_mut().insert(BearerToken(token));
            }
            Ok(None) => {
                return Ok(request.error_response(ApiError::unauthorized(
                    "the login token is unknown or expired",
                )))
            }
            Err(error) => return Ok(request.error_response(ApiError::from(error))),
        }
    }
    Ok(next.call(request).await?.map_into_boxed_body())
}

/// The page's Content-Security-Policy. Everything comes from outcall itself (`'self'`), never
/// inline: no inline script or style, no `eval`. Beyond `default-src 'self'`:
/// - `img-src data:`: the page's `<link rel="icon" href="data:,">` (no favicon request, no 404);
/// - `object-src 'none'`, `base-uri 'none'`, `frame-ancestors 'none'` (never framed, as
///   `X-Frame-Options: DENY` says to older browsers), `form-action 'self'`.
///
/// `script-src`, `style-src`, `media-src` (the audio routes) and `connect-src` (the API, the
/// event stream) repeat `'self'` so that a later change of `default-src` cannot open them by
/// accident. Downloads are saved through `blob:` links, which navigate and need no directive; a
/// page that played a `blob:` (a WAV before its upload) would need `media-src 'self' blob:`.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; media-src 'self'; connect-src 'self'; \
    object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// Headers every response carries: the page may load only its own files, is never framed, and
/// leaks no referrer; no response is content-sniffed. No CORS header is ever sent, so browsers
/// keep other sites' scripts away from the API.
pub fn security_headers() -> actix_web::middleware::DefaultHeaders {
    actix_web::middleware::DefaultHeaders::new()
        .add((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add((header::REFERRER_POLICY, "no-referrer"))
}

/// Whether `caller`'s role lets them make this request. The readonly exceptions are matched
/// exactly, so any other spelling of a path is refused rather than let through.
fn role_allows(caller: Caller, method: &Method, path: &str) -> bool {
    match caller.role {
        Role::Admin => true,
        Role::Readonly => {
            *method == Method::GET
                || *method == Method::HEAD
                || (*method == Method::DELETE && path == "/api/sessions")
                || (*method == Method::PUT
                    && path == format!("/api/users/{}/password", caller.user_id))
        }
    }
}

/// One log line per request.
pub async fn log_request(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.path().to_owned();
    let peer = request
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let response = next.call(request).await;
    let status = match &response {
        Ok(response) => response.status().as_u16(),
        Err(error) => error.as_response_error().status_code().as_u16(),
    };
    tracing::info!(%method, %path, status, elapsed_ms = started.elapsed().as_secs_f64() * 1000.0, %peer, "request");
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_browser_routes_take_a_token_from_the_query() {
        let get = Method::GET;
        assert!(accepts_query_token(&get, "/api/events"));
        assert!(accepts_query_token(&get, "/api/media_files/3/audio"));
        assert!(accepts_query_token(
            &get,
            "/api/out_call_tasks/1/numbers/22/recording"
        ));
        assert!(accepts_query_token(
            &Method::HEAD,
            "/api/media_files/3/audio"
        ));
        for path in [
            "/api/out_call_tasks",
            "/api/out_call_tasks/1",
            "/api/out_call_tasks/1/download",
            "/api/media_files/x/audio",
            "/api/media_files//audio",
            "/api/events/",
            "/api/media_files/3/audio/..",
            "/api/users",
        ] {
            assert!(!accepts_query_token(&get, path), "{path}");
        }
        assert!(!accepts_query_token(&Method::POST, "/api/events"));
        assert!(!accepts_query_token(
            &Method::DELETE,
            "/api/media_files/3/audio"
        ));
    }

    #[test]
    fn the_query_token_is_decoded_and_blank_is_none() {
        assert_eq!(query_token("a=1&token=ab%2Bc").as_deref(), Some("ab+c"));
        assert_eq!(query_token("token=").as_deref(), None);
        assert_eq!(query_token("tok=1").as_deref(), None);
        assert_eq!(query_token("").as_deref(), None);
    }
}
