//! `/api/users`: accounts and their roles (admins only), and changing a password.

use actix_web::{http::StatusCode, web, HttpMessage, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

use super::{
    error::{ApiError, ApiResult},
    input,
    sessions::{auth_error_response, client_address},
    AppState,
};
use crate::{
    auth::{self, AuthError, Caller, Role},
    clock,
    db::{self, users::StoredUser},
};

const MAX_LOGIN_CHARS: usize = 64;
const MAX_PASSWORD_CHARS: usize = 256;

/// The user the request's token belongs to (set by the token middleware).
fn caller(request: &HttpRequest) -> ApiResult<Caller> {
    request
        .extensions()
        .get::<Caller>()
        .copied()
        .ok_or_else(|| ApiError::unauthorized("a login token is required"))
}

fn require_admin(request: &HttpRequest) -> ApiResult<Caller> {
    let caller = caller(request)?;
    if caller.role != Role::Admin {
        return Err(forbidden("only an admin may manage users"));
    }
    Ok(caller)
}

fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, message)
}

fn user_json(state: &AppState, user: &StoredUser) -> Value {
    json!({
        "id": user.id,
        "login": user.login,
        "role": user.role.as_str(),
        "created_at": state.time_zone.format(user.created_at),
    })
}

fn new_password(body: &Map<String, Value>, name: &str) -> ApiResult<String> {
    let password = input::required_text(body, name, MAX_PASSWORD_CHARS)?;
    auth::check_new_password(name, &password).map_err(ApiError::bad_request)?;
    Ok(password)
}

fn check_login(login: &str) -> ApiResult<()> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._-@".contains(c);
    if login.is_empty() || !login.chars().all(allowed) {
        return Err(ApiError::bad_request(format!(
            "login must be 1 to {MAX_LOGIN_CHARS} characters of letters, digits, '.', '_', '-' \
             or '@', not {login:?}"
        )));
    }
    Ok(())
}

fn auth_failure(error: AuthError) -> ApiResult<HttpResponse> {
    match error {
        AuthError::Db(error) => Err(error.into()),
        other => Ok(auth_error_response(other)),
    }
}

/// `GET /api/users` (admins): every user, without password hashes.
pub async fn list(state: web::Data<AppState>, request: HttpRequest) -> ApiResult<HttpResponse> {
    require_admin(&request)?;
    let users = state
        .accounts
        .db()
        .run(|conn| db::users::list(conn))
        .await?;
    let data: Vec<Value> = users.iter().map(|u| user_json(&state, u)).collect();
    Ok(HttpResponse::Ok().json(json!({ "code": 200, "message": "success", "data": data })))
}

/// `POST /api/users` (admins) with `{"login","password","role"}`, role `admin` or `readonly`.
pub async fn create(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Payload,
) -> ApiResult<HttpResponse> {
    require_admin(&request)?;
    let body = input::json_object(&input::read_body(body, super::WRITE_BODY_LIMIT).await?)?;
    let login = input::required_text(&body, "login", MAX_LOGIN_CHARS)?;
    check_login(&login)?;
    let role_text = input::required_text(&body, "role", 16)?;
    let role = role_text.parse::<Role>().map_err(|_| {
        ApiError::bad_request(format!(
            "role must be \"admin\" or \"readonly\", not {role_text:?}"
        ))
    })?;
    let password = new_password(&body, "password")?;
    let hash = match state.accounts.hash(password).await {
        Ok(hash) => hash,
        Err(error) => return auth_failure(error),
    };
    let user = state
        .accounts
        .db()
        .run(move |conn| {
            let id = db::users::insert(conn, &login, &hash, role, clock::now())?;
            db::users::find_by_id(conn, id)?
                .ok_or_else(|| db::DbError::NotFound(format!("user {id}")))
        })
        .await?;
    tracing::info!(login = %user.login, role = user.role.as_str(), "user created");
    Ok(HttpResponse::Ok().json(json!({
        "code": 200,
        "message": "success",
        "data": user_json(&state, &user),
    })))
}

/// `PUT /api/users/{id}/password` with `{"old_password","new_password"}`. A user changes their own
/// password by giving the old one (an admin too); an admin sets anyone else's with no old one.
/// Every token of that user is revoked, the one of this request included when it was theirs.
pub async fn change_password(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Payload,
) -> ApiResult<HttpResponse> {
    let caller = caller(&request)?;
    let id = input::path_id(&path)?;
    let own = caller.user_id == id;
    if !own && caller.role != Role::Admin {
        return Err(forbidden(
            "only an admin may change another user's password",
        ));
    }
    let body = input::json_object(&input::read_body(body, super::WRITE_BODY_LIMIT).await?)?;
    let new = new_password(&body, "new_password")?;
    let user = state
        .accounts
        .db()
        .run(move |conn| db::users::find_by_id(conn, id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {id} not found")))?;
    if own {
        let old = input::required_text(&body, "old_password", MAX_PASSWORD_CHARS)?;
        match state
            .accounts
            .check_password(client_address(&request), &user.login, old)
            .await
        {
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(forbidden(
                    "old_password is not this user's current password",
                ))
            }
            Err(error) => return auth_failure(error),
        }
    }
    let hash = match state.accounts.hash(new).await {
        Ok(hash) => hash,
        Err(error) => return auth_failure(error),
    };
    state
        .accounts
        .db()
        .run(move |conn| db::users::change_password(conn, id, &hash))
        .await?;
    tracing::info!(login = %user.login, by = caller.user_id, "password changed; the user's tokens are revoked");
    Ok(HttpResponse::Ok().json(json!({ "code": 200, "message": "success" })))
}
