//! `/api/sessions`: log in and out.

use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use serde_json::json;

use super::{
    error::{ApiError, ApiResult},
    input, AppState, BearerToken,
};
use crate::{auth, domain::Text};

/// `POST /api/sessions` with `{"login","password"}`, as JSON or a form.
pub async fn log_in(state: web::Data<AppState>, body: web::Payload) -> ApiResult<HttpResponse> {
    let body = input::json_or_form_object(&input::read_body(body, 64 * 1024).await?)?;
    let field = |name: &str| -> ApiResult<String> {
        let value = body
            .get(name)
            .ok_or_else(|| ApiError::bad_request(format!("{name} is required")))?;
        input::checked(name, Text::new(input::text(name, value)?, 256)).map(Text::into_string)
    };
    let (login, password) = (field("login")?, field("password")?);
    match auth::log_in(&state.db, login, password, state.token_ttl_seconds).await? {
        Some(session) => Ok(HttpResponse::Ok().json(json!({
            "code": 200,
            "token": session.token,
            "expires": session.expires_at,
            "user_id": session.user_id,
        }))),
        None => Err(ApiError::unauthorized("wrong login or password")),
    }
}

/// `DELETE /api/sessions`: revokes the token the request was made with.
pub async fn log_out(state: web::Data<AppState>, request: HttpRequest) -> ApiResult<HttpResponse> {
    let token = request.extensions().get::<BearerToken>().cloned();
    if let Some(BearerToken(token)) = token {
        auth::log_out(&state.db, &token).await?;
    }
    Ok(HttpResponse::Ok().json(json!({ "code": 200, "message": "success" })))
}
