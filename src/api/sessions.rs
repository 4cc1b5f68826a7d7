//! `/api/sessions`: log in and out.

use actix_web::{
    http::{header, StatusCode},
    web, HttpMessage, HttpRequest, HttpResponse,
};
use serde_json::json;

use super::{
    error::{ApiError, ApiResult},
    input, AppState, BearerToken,
};
use crate::auth::AuthError;

/// `POST /api/sessions` with `{"login","password"}`, as JSON or a form.
pub async fn log_in(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Payload,
) -> ApiResult<HttpResponse> {
    refuse_cross_site(&request)?;
    let body = input::json_or_form_object(&input::read_body(body, super::WRITE_BODY_LIMIT).await?)?;
    let login = input::required_text(&body, "login", 256)?;
    let password = input::required_text(&body, "password", 256)?;
    match state
        .accounts
        .log_in(client_address(&request), login, password)
        .await
    {
        Ok(Some(session)) => Ok(HttpResponse::Ok().json(json!({
            "code": 200,
            "token": session.token,
            "expires": session.expires_at,
            "user_id": session.user_id,
        }))),
        Ok(None) => Err(ApiError::unauthorized("wrong login or password")),
        Err(error) => Ok(auth_error_response(error)),
    }
}

/// `DELETE /api/sessions`: revokes the token the request was made with.
pub async fn log_out(state: web::Data<AppState>, request: HttpRequest) -> ApiResult<HttpResponse> {
    let token = request.extensions().get::<BearerToken>().cloned();
    if let Some(BearerToken(token)) = token {
        state.accounts.log_out(&token).await?;
    }
    Ok(HttpResponse::Ok().json(json!({ "code": 200, "message": "success" })))
}

/// The address throttling counts a request against: the connection's peer. Forwarding headers
/// are not trusted, since any client can write them.
pub fn client_address(request: &HttpRequest) -> std::net::IpAddr {
    request
        .peer_addr()
        .map(|address| address.ip())
        .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into())
}

/// 429 with `Retry-After` when throttled, 503 with `Retry-After` when the hashing pool is full.
pub fn auth_error_response(error: AuthError) -> HttpResponse {
    let (status, retry_after, message) = match error {
        AuthError::Throttled {
            retry_after_seconds,
        } => (
            StatusCode::TOO_MANY_REQUESTS,
            retry_after_seconds,
            format!("too many failed logins; try again in {retry_after_seconds} s"),
        ),
        AuthError::Busy => (
            StatusCode::SERVICE_UNAVAILABLE,
            1,
            "too many logins at once; try again in a second".to_owned(),
        ),
        AuthError::Db(error) => {
            return actix_web::ResponseError::error_response(&ApiError::from(error))
        }
    };
    HttpResponse::build(status)
        .insert_header((header::RETRY_AFTER, retry_after.to_string()))
        .json(json!({ "code": status.as_u16(), "message": message }))
}

/// A login posted by a page of another site (a forged form: the browser would send the cookie-less
/// credentials the attacker chose, or probe passwords) is refused. Browsers say where a request
/// comes from in `Sec-Fetch-Site` and `Origin`; clients that are not browsers (curl, scripts) send
/// neither and are unaffected. A cross-origin JSON login cannot happen anyway: CORS stays closed.
fn refuse_cross_site(request: &HttpRequest) -> ApiResult<()> {
    let headers = request.headers();
    let forbidden = |why: String| {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("cross-site login refused: {why}"),
        ))
    };
    if let Some(site) = headers.get("Sec-Fetch-Site") {
        if site.as_bytes().eq_ignore_ascii_case(b"cross-site") {
            return forbidden("Sec-Fetch-Site is cross-site".into());
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        let connection = request.connection_info();
        let host = connection.host();
        let same = origin
            .split_once("://")
            .is_some_and(|(_scheme, authority)| authority.eq_ignore_ascii_case(host));
        if !same {
            return forbidden(format!("Origin {origin:?} is not this server ({host})"));
        }
    }
    Ok(())
}
