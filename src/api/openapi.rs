//! The OpenAPI 3 document of the API, served at `GET /api/openapi.json` without a token.
//!
//! The document describes the wire exactly as `../shared/spec/API.md` fixes it: in the task list
//! every field is a string except `total` and `done`, get-by-id has numbers, create answers the id
//! as a number and the other writes as a string. Writes accept numbers and numeric strings alike
//! (see `input.rs`), so their numeric fields are "an integer, or a string of one".
//!
//! The handlers stay free of documentation attributes: the operations are described by the
//! documentation functions in [`paths`], and every route registered in `mod.rs` must be listed in
//! [`ApiDoc`] (a test compares the two).

// The schema structs and documentation functions describe the wire; they are never built or called.
#![allow(dead_code)]

use std::sync::OnceLock;

use actix_web::HttpResponse;

use strum::VariantNames;

use crate::domain::{self, MaxCaps};
use utoipa::{
    openapi::{
        extensions::Extensions,
        link::LinkBuilder,
        schema::{
            ArrayBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat,
            SchemaType, Type,
        },
        security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
        ContentBuilder, RefOr, ResponseBuilder,
    },
    Modify, OpenApi, PartialSchema, ToSchema,
};

/// `GET /api/openapi.json`.
pub async fn serve() -> HttpResponse {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let document = DOCUMENT.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .expect("the OpenAPI document serialises")
    });
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document.as_str())
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "outcall",
        description = "Outbound auto-dialer speaking XSwitch's `/api/out_call_tasks` REST API. \
            Every `/api` route but logging in and this document needs a login token, sent as \
            `X-XTRA-AUTH-ID: <token>` or `Authorization: Bearer <token>`. Errors answer \
            `{\"code\":<HTTP status>,\"message\":\"…\"}` naming the field at fault."
    ),
    paths(
        paths::health,
        paths::openapi_document,
        paths::log_in,
        paths::log_out,
        paths::list_tasks,
        paths::create_task,
        paths::start_or_stop_tasks,
        paths::clone_task,
        paths::get_task,
        paths::update_task,
        paths::delete_task,
        paths::import_numbers,
        paths::list_numbers,
        paths::download_numbers,
        paths::task_stats,
        paths::events,
        paths::list_media_files,
        paths::upload_media_file,
        paths::media_file_audio,
        paths::number_recording,
        paths::number_attempts,
        paths::list_dnc,
        paths::add_dnc,
        paths::delete_dnc,
        paths::metrics,
        paths::list_users,
        paths::create_user,
        paths::change_password,
    ),
    components(schemas(
        ErrorEnvelope,
        TaskStatus,
        TaskStatusFilter,
        CallStatusFilter,
        CauseFilter,
        DownloadFormat
    )),
    security(("token" = []), ("bearer" = [])),
    modifiers(&SecuritySchemes, &StandardErrors, &NewTaskLinks),
)]
pub struct ApiDoc;

/// The two ways to present a login token.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-XTRA-AUTH-ID",
                "the token of POST /api/sessions (XSwitch's header)",
            ))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("the token of POST /api/sessions"))
                    .build(),
            ),
        );
    }
}

/// Every operation can answer these with the error envelope; 401 only where a token is needed.
struct StandardErrors;

const STANDARD_ERRORS: &[(u16, &str)] = &[
    (400, "bad input: malformed JSON or query, a wrong type, a value out of range (the message names the field)"),
    (401, "no login token, or an unknown or expired one"),
    (404, "no such task, number or route"),
    (405, "the method is not allowed on this path"),
    (413, "the request body is over the configured limit"),
];

impl Modify for StandardErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                // `security: [{}]` marks the routes that need no token.
                let needs_token = !operation
                    .security
                    .as_ref()
                    .is_some_and(|requirements| requirements.iter().any(is_empty_requirement));
                for (status, description) in STANDARD_ERRORS {
                    if *status == 401 && !needs_token {
                        continue;
                    }
                    let response = ResponseBuilder::new()
                        .description(*description)
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                                    "ErrorEnvelope",
                                ))))
                                .build(),
                        )
                        .build();
                    operation
                        .responses
                        .responses
                        .entry(status.to_string())
                        .or_insert(RefOr::T(response));
                }
            }
        }
    }
}

/// Create and clone answer the new task's id: these links tell a client (and schemathesis's
/// stateful phase) which operations take it.
struct NewTaskLinks;

const TASK_OPERATIONS: &[&str] = &[
    "get_task",
    "update_task",
    "delete_task",
    "import_numbers",
    "list_numbers",
    "download_numbers",
    "task_stats",
];

impl Modify for NewTaskLinks {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let creating = [
            ("/api/out_call_tasks", "create_task"),
            ("/api/out_call_tasks/clone", "clone_task"),
        ];
        for (path, operation_id) in creating {
            let Some(RefOr::T(answer)) = openapi
                .paths
                .paths
                .get_mut(path)
                .and_then(|item| item.post.as_mut())
                .and_then(|operation| operation.responses.responses.get_mut("200"))
            else {
                panic!("{operation_id} has a 200 answer");
            };
            for target in TASK_OPERATIONS {
                // utoipa 5 writes `LinkBuilder::operation_id` as `operation_id`, which no OpenAPI
                // tool reads: the key is spelled through the link's extensions instead.
                let mut operation = Extensions::default();
                operation.insert("operationId".to_owned(), (*target).into());
                answer.links.insert(
                    target.to_string(),
                    RefOr::T(
                        LinkBuilder::new()
                            .parameter("id", "$response.body#/data")
                            .extensions(Some(operation))
                            .build(),
                    ),
                );
            }
        }
    }
}

fn is_empty_requirement(requirement: &utoipa::openapi::security::SecurityRequirement) -> bool {
    serde_json::to_value(requirement).is_ok_and(|value| value == serde_json::json!({}))
}

/// The operations. Each function only carries its documentation; the handlers are in the
/// sibling modules.
mod paths {
    use super::*;

    #[utoipa::path(get, path = "/healthz", tag = "health", security(()),
        description = "Whether the database is usable. Needs no token.",
        responses(
            (status = 200, description = "healthy", body = Health),
            (status = 503, description = "the database is not usable", body = ErrorEnvelope),
        ))]
    fn health() {}

    #[utoipa::path(get, path = "/api/openapi.json", tag = "health", security(()),
        description = "This document. Needs no token.",
        responses((status = 200, description = "the OpenAPI document", body = Object)))]
    fn openapi_document() {}

    #[utoipa::path(post, path = "/api/sessions", tag = "sessions", security(()),
        description = "Log in; the answer's token goes in `X-XTRA-AUTH-ID` or `Authorization: Bearer`.",
        request_body(content(
            (LoginRequest = "application/json"),
            (LoginRequest = "application/x-www-form-urlencoded"),
        )),
        responses(
            (status = 200, description = "logged in", body = LoginAnswer),
            (status = 401, description = "wrong login or password", body = ErrorEnvelope),
            (status = 403, description = "a cross-site login (by `Origin` or `Sec-Fetch-Site`)", body = ErrorEnvelope),
            (status = 429, description = "too many failed logins from this address or for this login: retry after `Retry-After` seconds", body = ErrorEnvelope),
            (status = 503, description = "the password checkers are all busy: retry after `Retry-After` seconds", body = ErrorEnvelope),
        ))]
    fn log_in() {}

    #[utoipa::path(delete, path = "/api/sessions", tag = "sessions",
        description = "Log out: the token of this request is revoked.",
        responses((status = 200, description = "logged out", body = LogoutAnswer)))]
    fn log_out() {}

    #[utoipa::path(get, path = "/api/out_call_tasks", tag = "tasks",
        description = "The tasks, newest first. In the list every field is a string except `total` and `done`.",
        params(
            ("page" = Option<i64>, Query, minimum = 1, maximum = 2147483647, description = "1-based page, default 1"),
            ("perPage" = Option<i64>, Query, minimum = 1, maximum = 10000, description = "rows a page, default 20"),
            ("name" = Option<String>, Query, description = "a substring of `group_name`"),
            ("status" = Option<TaskStatusFilter>, Query, description = "exact status; empty: any"),
        ),
        responses((status = 200, description = "a page of tasks", body = TaskList)))]
    fn list_tasks() {}

    #[utoipa::path(post, path = "/api/out_call_tasks", tag = "tasks",
        description = "Create a task from `group_name` and any other task field.",
        request_body(content = TaskCreate, content_type = "application/json"),
        responses(
            (status = 200, description = "created: `data` is the new id, a number", body = CreatedAnswer),
            (status = 409, description = "`group_name` is taken by a live task", body = ErrorEnvelope),
        ))]
    fn create_task() {}

    #[utoipa::path(put, path = "/api/out_call_tasks", tag = "tasks",
        description = "Start or stop tasks. A start is refused (400) when the telephony back end cannot run the task.",
        request_body(content = StartStopRequest, content_type = "application/json"),
        responses((status = 200, description = "one entry per task", body = StartStopAnswer)))]
    fn start_or_stop_tasks() {}

    #[utoipa::path(post, path = "/api/out_call_tasks/clone", tag = "tasks",
        description = "Copy a task's settings, and its numbers reset to never dialed when `is_clone_numbers` is set.",
        request_body(content = CloneRequest, content_type = "application/json"),
        responses(
            (status = 200, description = "cloned: `data` is the new id, a number", body = CreatedAnswer),
            (status = 409, description = "`group_name` is taken by a live task", body = ErrorEnvelope),
        ))]
    fn clone_task() {}

    #[utoipa::path(get, path = "/api/out_call_tasks/{id}", tag = "tasks",
        description = "One task, bare (no envelope); its numeric settings are numbers.",
        params(("id" = i64, Path, minimum = 1, example = 1, description = "task id")),
        responses((status = 200, description = "the task", body = Task)))]
    fn get_task() {}

    #[utoipa::path(put, path = "/api/out_call_tasks/{id}", tag = "tasks",
        description = "Change any subset of a task's fields; other keys are ignored.",
        params(("id" = i64, Path, minimum = 1, example = 1, description = "task id")),
        request_body(content = TaskUpdate, content_type = "application/json"),
        responses(
            (status = 200, description = "updated: `data` is the id, a string", body = IdAnswer),
            (status = 409, description = "`group_name` is taken by a live task", body = ErrorEnvelope),
        ))]
    fn update_task() {}

    #[utoipa::path(delete, path = "/api/out_call_tasks/{id}", tag = "tasks",
        description = "Soft delete; a running task is stopped first.",
        params(("id" = i64, Path, minimum = 1, example = 1, description = "task id")),
        responses((status = 200, description = "deleted: `data` is the id, a string", body = IdAnswer)))]
    fn delete_task() {}

    #[utoipa::path(post, path = "/api/out_call_tasks/{id}/import", tag = "numbers",
        description = "Add numbers to a task. A number already in the task (or earlier in the same import) is skipped and counted as a duplicate; \
            a number on the do-not-call list (for all tasks or this one) is added already finished (`call_status` done, cause `DNC`, never dialed). \
            JSON: every row is checked first, one undialable row refuses the whole import, and `data` is the JSON string `{\"imported\":N,\"duplicates\":D,\"dnc\":K}`. \
            A multipart form: a CSV (UTF-8 with or without BOM, or GBK/GB18030) or XLSX (first sheet) file, whose undialable rows are skipped; \
            `data` adds `\"rejected\":M,\"first_rejected\":[{\"row\":R,\"value\":\"…\",\"reason\":\"…\"}]` (up to 10 rows listed, `row` 1-based as a spreadsheet shows it). \
            `imported` counts the rows added, `dnc` those of them on the do-not-call list. The body limit holds for the whole form (413).",
        params(("id" = i64, Path, minimum = 1, example = 1, description = "task id")),
        request_body(content(
            (ImportRequest = "application/json"),
            (FileImport = "multipart/form-data"),
        )),
        responses(
            (status = 200, description = "imported", body = ImportAnswer),
            (status = 413, description = "the request is over `--body-limit`", body = ErrorEnvelope),
        ))]
    fn import_numbers() {}

    #[utoipa::path(get, path = "/api/out_call_tasks/{id}/numbers", tag = "numbers",
        description = "A task's numbers, newest first; every field is a string. Optional filters narrow the list and its counts.",
        params(
            ("id" = i64, Path, minimum = 1, example = 1, description = "task id"),
            ("page" = Option<i64>, Query, minimum = 1, maximum = 2147483647, description = "1-based page, default 1"),
            ("perPage" = Option<i64>, Query, minimum = 1, maximum = 10000, description = "rows a page, default 20"),
            ("call_status" = Option<CallStatusFilter>, Query, description = "exact call status; empty: any"),
            ("cause" = Option<CauseFilter>, Query, description = "exact hangup cause; empty: any"),
            ("dest_number" = Option<String>, Query, pattern = "^(\\+?[0-9*#]{1,32})?$", description = "the start of the number (digits, optional leading +, * and #); empty: any"),
        ),
        responses((status = 200, description = "a page of numbers", body = NumberList)))]
    fn list_numbers() {}

    #[utoipa::path(get, path = "/api/out_call_tasks/{id}/download", tag = "numbers",
        description = "The export: a header row, then a row a number, streamed. `format=csv`: UTF-8 with a BOM; `format=xlsx`: one sheet, \
            the two durations as numbers, every other cell text. In CSV and XLSX a text cell beginning with `=`, `+`, `-` or `@` gets a leading `'`. \
            Sent as an attachment `task-<id>.<format>`.",
        params(
            ("id" = i64, Path, minimum = 1, example = 1, description = "task id"),
            ("format" = Option<DownloadFormat>, Query, description = "json (the default), csv or xlsx"),
        ),
        responses((status = 200, description = "rows of ten strings", content(
            (DownloadRows = "application/json"),
            (DownloadCsv = "text/csv"),
            (DownloadXlsx = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        ))))]
    fn download_numbers() {}

    #[utoipa::path(get, path = "/api/out_call_tasks/{id}/stats", tag = "tasks",
        description = "A task's live progress: its numbers counted by status, answered and cause (kept as counters, never a scan of the numbers), with the pace and live calls of the dialer.",
        params(("id" = i64, Path, minimum = 1, example = 1, description = "task id")),
        responses((status = 200, description = "the task's stats", body = StatsAnswer)))]
    fn task_stats() {}

    #[utoipa::path(get, path = "/api/events", tag = "tasks",
        description = "A server-sent-events stream that does not end. First `event: task` with the stats of every running task and a ping, then `event: task` whenever a task's stats change (at most once a second a task) or its status changes, and `event: ping` every 15 s. Each `task` event's `data:` is a stats object as `GET /api/out_call_tasks/{id}/stats` answers it (a deleted task's also has `\"deleted\": true`). Also takes the token as `?token=` (a browser's `EventSource` cannot send headers).",
        params(("token" = Option<String>, Query, description = "the login token, instead of a header")),
        responses((status = 200, description = "the event stream", content_type = "text/event-stream", body = StreamEvent)))]
    fn events() {}

    #[utoipa::path(get, path = "/api/media_files", tag = "media",
        description = "Uploaded prompts, newest first.",
        params(
            ("page" = Option<i64>, Query, minimum = 1, maximum = 2147483647, description = "1-based page, default 1"),
            ("perPage" = Option<i64>, Query, minimum = 1, maximum = 10000, description = "rows a page, default 20"),
        ),
        responses((status = 200, description = "a page of media files", body = MediaList)))]
    fn list_media_files() {}

    #[utoipa::path(post, path = "/api/media_files", tag = "media",
        description = "Upload a WAV prompt (PCM, float, A-law or µ-law); it is stored as 8 kHz mono 16-bit.",
        request_body(content = MediaUpload, content_type = "multipart/form-data"),
        responses((status = 200, description = "stored: `data` is the media object tasks reference", body = MediaUploadAnswer)))]
    fn upload_media_file() {}

    #[utoipa::path(get, path = "/api/media_files/{id}/audio", tag = "media",
        description = "The stored prompt as `audio/wav` (8 kHz mono 16-bit), `Content-Disposition: inline`, for an `<audio>` element. \
            Honours `Range` (206 with `Content-Range`; 416 past the end) and `If-None-Match` / `If-Range` with its `ETag`. \
            The token may be given as `?token=` instead of a header. A readonly user may play it.",
        params(
            ("id" = i64, Path, minimum = 1, example = 1, description = "media id"),
            ("token" = Option<String>, Query, description = "the login token, for clients that cannot send headers (an `<audio>` element)"),
            ("Range" = Option<String>, Header, description = "bytes to send, e.g. `bytes=0-43` or `bytes=-1000`"),
        ),
        responses(
            (status = 200, description = "the whole file", content_type = "audio/wav", body = WavBytes),
            (status = 206, description = "the range asked for", content_type = "audio/wav", body = WavBytes),
            (status = 404, description = "no such media file, or its file is gone", body = ErrorEnvelope),
            (status = 416, description = "the range starts past the end of the file", body = ErrorEnvelope),
        ))]
    fn media_file_audio() {}

    #[utoipa::path(get, path = "/api/out_call_tasks/{id}/numbers/{number_id}/recording", tag = "numbers",
        description = "The call's recording (`auto_record`, sip back end) as `audio/wav` (stereo 8 kHz 16-bit: left what was sent, right what was heard), `Content-Disposition: inline`. \
            Honours `Range` (206 with `Content-Range`; 416 past the end). The token may be given as `?token=` instead of a header. A readonly user may play it.",
        params(
            ("id" = i64, Path, minimum = 1, example = 1, description = "task id"),
            ("number_id" = i64, Path, minimum = 1, example = 1, description = "the number's `id`"),
            ("token" = Option<String>, Query, description = "the login token, for clients that cannot send headers (an `<audio>` element)"),
            ("Range" = Option<String>, Header, description = "bytes to send, e.g. `bytes=0-43` or `bytes=-1000`"),
        ),
        responses(
            (status = 200, description = "the whole recording", content_type = "audio/wav", body = WavBytes),
            (status = 206, description = "the range asked for", content_type = "audio/wav", body = WavBytes),
            (status = 404, description = "no such task or number, or the number has no recording", body = ErrorEnvelope),
            (status = 416, description = "the range starts past the end of the file", body = ErrorEnvelope),
        ))]
    fn number_recording() {}

    #[utoipa::path(get, path = "/api/out_call_tasks/{id}/numbers/{number_id}/attempts", tag = "numbers",
        description = "Every call of a number, in attempt order (the number's own row shows the latest). A readonly user may read it.",
        params(
            ("id" = i64, Path, minimum = 1, example = 1, description = "task id"),
            ("number_id" = i64, Path, minimum = 1, example = 1, description = "the number's `id`"),
        ),
        responses((status = 200, description = "the number's attempts", body = AttemptList)))]
    fn number_attempts() {}

    #[utoipa::path(get, path = "/api/dnc", tag = "dnc",
        description = "The do-not-call list. A listed number is never dialed: it is checked at import and again before every call.",
        params(
            ("page" = Option<i64>, Query, minimum = 1, maximum = 2147483647, description = "1-based page, default 1"),
            ("perPage" = Option<i64>, Query, minimum = 1, maximum = 10000, description = "rows a page, default 20"),
            ("number" = Option<String>, Query, pattern = "^(\\+?[0-9*#]{1,32})?$", description = "the start of the number; empty: any"),
            ("task_id" = Option<i64>, Query, minimum = 1, description = "only the entries of this task"),
        ),
        responses((status = 200, description = "a page of entries", body = DncList)))]
    fn list_dnc() {}

    #[utoipa::path(post, path = "/api/dnc", tag = "dnc",
        description = "Add entries in bulk (at most 100,000 a request). One bad row refuses the whole request, naming `data[i].field`; \
            an entry already listed for the same scope (all tasks, or the same task) counts as a duplicate.",
        request_body(content = DncAddRequest, content_type = "application/json"),
        responses(
            (status = 200, description = "added", body = DncAddAnswer),
            (status = 403, description = "the caller is not an admin", body = ErrorEnvelope),
        ))]
    fn add_dnc() {}

    #[utoipa::path(delete, path = "/api/dnc/{id}", tag = "dnc",
        description = "Remove an entry.",
        params(("id" = i64, Path, minimum = 1, example = 1, description = "the entry's `id`")),
        responses(
            (status = 200, description = "removed: `data` is the id, a string", body = IdAnswer),
            (status = 403, description = "the caller is not an admin", body = ErrorEnvelope),
        ))]
    fn delete_dnc() {}

    #[utoipa::path(get, path = "/metrics", tag = "health", security(()),
        description = "Metrics for Prometheus: OpenMetrics text when the `Accept` header asks for it (Prometheus does), else Prometheus's classic text format. \
            Needs no login token; when outcall runs with `--metrics-token`, it needs `Authorization: Bearer <that token>` (401 with `WWW-Authenticate: Bearer` otherwise).",
        responses(
            (status = 200, description = "the metrics", content(
                (MetricsText = "text/plain"),
                (MetricsText = "application/openmetrics-text"),
            )),
            (status = 401, description = "`--metrics-token` is set and the request does not carry it", body = ErrorEnvelope),
            (status = 503, description = "the database cannot be read", body = ErrorEnvelope),
        ))]
    fn metrics() {}

    #[utoipa::path(get, path = "/api/users", tag = "users",
        description = "The users (admins only).",
        responses(
            (status = 200, description = "every user", body = UserList),
            (status = 403, description = "the caller is not an admin", body = ErrorEnvelope),
        ))]
    fn list_users() {}

    #[utoipa::path(post, path = "/api/users", tag = "users",
        description = "Create a user (admins only). A `readonly` user may read, download and log out, and gets 403 for any change.",
        request_body(content = UserCreate, content_type = "application/json"),
        responses(
            (status = 200, description = "created", body = UserAnswer),
            (status = 403, description = "the caller is not an admin", body = ErrorEnvelope),
            (status = 409, description = "the login is taken", body = ErrorEnvelope),
        ))]
    fn create_user() {}

    #[utoipa::path(put, path = "/api/users/{id}/password", tag = "users",
        description = "Change a password: one's own with `old_password`, anyone's as an admin. Every token of that user is revoked.",
        params(("id" = i64, Path, minimum = 1, example = 1, description = "user id")),
        request_body(content = PasswordChange, content_type = "application/json"),
        responses(
            (status = 200, description = "changed", body = LogoutAnswer),
            (status = 403, description = "another user's password, and the caller is not an admin", body = ErrorEnvelope),
            (status = 429, description = "too many wrong `old_password`s: retry after `Retry-After` seconds", body = ErrorEnvelope),
            (status = 503, description = "the password checkers are all busy: retry after `Retry-After` seconds", body = ErrorEnvelope),
        ))]
    fn change_password() {}
}

// ---- Value shapes shared by the schemas ----

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn integer() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
}

/// A string of a non-negative integer, as the list shows ids and counts.
fn digits() -> Schema {
    string().pattern(Some("^[0-9]+$")).into()
}

/// `"0"` or `"1"`, as the list shows switches.
fn switch_text() -> Schema {
    string().enum_values(Some(["0", "1"])).into()
}

/// The decimal text of a number, as the list shows `max_caps`.
fn number_text() -> Schema {
    string()
        .pattern(Some("^[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?$"))
        .into()
}

fn timestamp() -> Schema {
    string()
        .pattern(Some(
            "^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$",
        ))
        .description(Some("YYYY-MM-DD HH:MM:SS in the server's time zone"))
        .into()
}

fn optional_timestamp() -> Schema {
    string()
        .pattern(Some(
            "^([0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2})?$",
        ))
        .description(Some("YYYY-MM-DD HH:MM:SS, or \"\" when unset"))
        .into()
}

/// One of the names of a domain enum (its strum `VARIANTS`).
fn one_of(names: &'static [&'static str]) -> Schema {
    string().enum_values(Some(names.iter().copied())).into()
}

/// One of the names, or empty (as a form sends an unset field) for any.
fn one_of_or_empty(names: &'static [&'static str]) -> Schema {
    string()
        .enum_values(Some(std::iter::once("").chain(names.iter().copied())))
        .into()
}

fn task_status() -> Schema {
    one_of(domain::TaskStatus::VARIANTS)
}

fn call_status() -> Schema {
    one_of(domain::CallStatus::VARIANTS)
}

fn success_code() -> Schema {
    integer().enum_values(Some([200])).into()
}

fn success_message() -> Schema {
    string().enum_values(Some(["success"])).into()
}

/// A task's action after the answer.
fn action() -> Schema {
    one_of(domain::Action::VARIANTS)
}

// ---- Request values: numbers and numeric strings alike ----

/// Text fields also take a number (kept as its decimal text) or `null` (kept as "").
/// Text fields refuse control characters (`domain::Text`).
const NO_CONTROL_CHARACTERS: &str = "^[^\\x00-\\x1f\\x7f-\\x9f]*$";

fn text_input(max_chars: usize) -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::Array(vec![Type::String, Type::Number, Type::Null]))
        .max_length(Some(max_chars))
        .pattern(Some(NO_CONTROL_CHARACTERS))
        .description(Some(format!(
            "text of at most {max_chars} characters without control characters (CR, LF, NUL, …); a number is taken as its decimal text, null as \"\""
        )))
        .into()
}

/// An integer within `min..=max`, as a JSON integer or a string of one (`text_pattern` spells
/// the same range as text; the server also trims spaces around it).
fn integer_input(min: i64, max: i64, text_pattern: &str) -> Schema {
    OneOfBuilder::new()
        .item(
            integer()
                .minimum(Some(min as isize))
                .maximum(Some(max as isize)),
        )
        .item(
            string()
                .pattern(Some(text_pattern))
                .description(Some(format!("an integer from {min} to {max}, as text"))),
        )
        .description(Some(format!(
            "an integer from {min} to {max}, as a number or a numeric string"
        )))
        .into()
}

fn task_id_input() -> Schema {
    integer_input(1, i64::MAX, "^[1-9][0-9]{0,17}$")
}

/// A 0/1 switch.
fn flag_input() -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::AnyValue)
        .enum_values(Some([
            serde_json::json!(0),
            serde_json::json!(1),
            serde_json::json!("0"),
            serde_json::json!("1"),
            serde_json::json!(true),
            serde_json::json!(false),
            serde_json::json!("true"),
            serde_json::json!("false"),
        ]))
        .description(Some("0 or 1, as a number, a string or a boolean"))
        .into()
}

fn group_name_input() -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::Array(vec![Type::String, Type::Number]))
        .min_length(Some(1))
        .max_length(Some(128))
        .pattern(Some("\\S"))
        .description(Some(
            "task name, 1 to 128 characters, not blank, unique among live tasks",
        ))
        .into()
}

fn calling_time_input() -> Schema {
    integer_input(5, 300, "^([5-9]|[1-9][0-9]|[12][0-9]{2}|300)$")
}

fn max_caps_input() -> Schema {
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .minimum(Some(MaxCaps::MIN))
                .maximum(Some(MaxCaps::MAX)),
        )
        .item(string().pattern(Some(
            "^(0\\.0{0,2}[1-9][0-9]*|[1-9][0-9]{0,3}(\\.[0-9]+)?|10000(\\.0+)?)$",
        )))
        .description(Some(
            "calls started per second, from 0.001 to 10000 (fractions allowed: 0.2 is a call every 5 s), as a number or a numeric string",
        ))
        .into()
}

fn max_concurrency_input() -> Schema {
    integer_input(1, 100_000, "^([1-9][0-9]{0,4}|100000)$")
}

fn task_start_time_input() -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::Array(vec![Type::String, Type::Null]))
        .pattern(Some(
            "^([0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2})?$",
        ))
        .description(Some(
            "YYYY-MM-DD HH:MM:SS in the server's time zone; \"\" or null clears it",
        ))
        .into()
}

fn confirm_key_input() -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::Array(vec![
            Type::String,
            Type::Integer,
            Type::Null,
        ]))
        .pattern(Some("^[0-9*#]{0,8}$"))
        .minimum(Some(0))
        .maximum(Some(99_999_999))
        .description(Some("DTMF keys (0-9, *, #), at most 8"))
        .into()
}

fn read_timeout_input() -> Schema {
    OneOfBuilder::new()
        .item(integer().minimum(Some(1)).maximum(Some(600)))
        .item(string().pattern(Some("^([1-9][0-9]?|[1-5][0-9]{2}|600)?$")))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some(
            "seconds from 1 to 600, as a number or a numeric string; \"\" or null: the default (5)",
        ))
        .into()
}

fn action_input() -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::Array(vec![Type::String, Type::Null]))
        .enum_values(Some([
            serde_json::json!(""),
            serde_json::json!("playback"),
            serde_json::json!("transfer"),
            serde_json::Value::Null,
        ]))
        .description(Some(
            "after the answer: playback, transfer, or \"\" (hang up)",
        ))
        .into()
}

fn media_reference_input() -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::Array(vec![Type::String, Type::Number, Type::Null]))
        .max_length(Some(4096))
        .description(Some(
            "a media object as a JSON string ({\"media_id\":…,\"media_path\":…,\"media_type\":…,\"media_name\":…}), or a transfer destination",
        ))
        .into()
}

fn max_attempts_input() -> Schema {
    integer_input(1, 100, "^([1-9][0-9]?|100)$")
}

fn retry_interval_input() -> Schema {
    integer_input(
        1,
        2_592_000,
        "^([1-9][0-9]{0,5}|1[0-9]{6}|2[0-4][0-9]{5}|25[0-8][0-9]{4}|259[01][0-9]{3}|2592000)$",
    )
}

/// A text setting: a string, or null (kept as ""), at most `max_chars`.
fn setting_input(max_chars: usize, pattern: &str, description: &str) -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::Array(vec![Type::String, Type::Null]))
        .max_length(Some(max_chars))
        .pattern(Some(pattern))
        .description(Some(description))
        .into()
}

/// `NAME, NAME, …` of the hangup causes outcall knows.
fn cause_list_pattern() -> String {
    let names = <domain::HangupCause as VariantNames>::VARIANTS.join("|");
    format!("^ *(({names}) *)?(, *(({names}) *)?)*$")
}

fn retry_causes_input() -> Schema {
    setting_input(
        4096,
        &cause_list_pattern(),
        "the hangup causes after which a number is called again, comma-separated (e.g. \
         USER_BUSY,NO_ANSWER); default USER_BUSY,NO_ANSWER,NO_USER_RESPONSE,\
         NORMAL_TEMPORARY_FAILURE,NORMAL_CIRCUIT_CONGESTION,RECOVERY_ON_TIMER_EXPIRE; \"\" or null: none",
    )
}

const CLOCK_TIME: &str = "([01]?[0-9]|2[0-3]):[0-5][0-9]";

fn call_windows_input() -> Schema {
    let window = format!("{CLOCK_TIME} *- *({CLOCK_TIME}|24:00)");
    setting_input(
        domain::CallWindows::MAX_CHARS,
        &format!("^ *({window} *(, *{window} *)*)?$"),
        "calling hours in the task's time zone, HH:MM-HH:MM comma-separated (e.g. \
         09:00-12:00,14:00-18:00); 24:00 may end a window; one that ends at or before its start \
         runs across midnight and belongs to the day it starts; \"\": all day",
    )
}

fn call_weekdays_input() -> Schema {
    let days = "[1-7]( *- *[1-7])?";
    setting_input(
        64,
        &format!("^ *({days} *(, *{days} *)*)?$"),
        "ISO weekdays on which calls start (Monday is 1), comma-separated, ranges allowed (e.g. \
         1-5 or 1,2,3,4,5; a range runs low to high); \"\": every day",
    )
}

fn time_zone_input() -> Schema {
    setting_input(
        64,
        "^[A-Za-z0-9_+/-]*$",
        "an IANA time zone (e.g. Asia/Shanghai) for the calling hours; \"\": the server's (--tz)",
    )
}

fn webhook_url_input() -> Schema {
    setting_input(
        domain::WebhookUrl::MAX_CHARS,
        "^([Hh][Tt][Tt][Pp][Ss]?://[^/?#\\s]+.*)?$",
        "each finished call is POSTed there as JSON: an http or https URL of at most 2048 \
         characters; \"\" or null: none",
    )
}

/// Whole numbers up to 2^53 - 1 are exact whether written `1000` or `1000.0`.
const MAX_EXACT_INTEGER: isize = 9_007_199_254_740_991;

fn dest_number_input() -> Schema {
    OneOfBuilder::new()
        .item(
            string()
                .pattern(Some("^\\+?[0-9*#]{1,31}$"))
                .max_length(Some(32)),
        )
        .item(integer().minimum(Some(0)).maximum(Some(MAX_EXACT_INTEGER)))
        .description(Some(
            "digits with an optional leading +, and * or #, at most 32 characters; or a whole number",
        ))
        .into()
}

fn external_id_input() -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::Array(vec![
            Type::String,
            Type::Integer,
            Type::Null,
        ]))
        .max_length(Some(128))
        .minimum(Some(-MAX_EXACT_INTEGER))
        .maximum(Some(MAX_EXACT_INTEGER))
        .description(Some("the caller's own reference, at most 128 characters"))
        .into()
}

// ---- The new task settings as tasks show them ----

fn retry_causes_output() -> Schema {
    string()
        .description(Some(
            "hangup cause names after which a number is called again, comma-separated",
        ))
        .into()
}

fn call_windows_output() -> Schema {
    string()
        .description(Some(
            "calling hours HH:MM-HH:MM, comma-separated, in the task's time zone; \"\": all day",
        ))
        .into()
}

fn call_weekdays_output() -> Schema {
    string()
        .description(Some(
            "ISO weekdays (Monday is 1) and ranges, comma-separated; \"\": every day",
        ))
        .into()
}

fn time_zone_output() -> Schema {
    string()
        .description(Some("an IANA time zone; \"\": the server's"))
        .into()
}

fn webhook_url_output() -> Schema {
    string()
        .description(Some("where finished calls are POSTed; \"\": none"))
        .into()
}

// ---- Schemas ----

/// One call of a number.
#[derive(ToSchema)]
pub struct Attempt {
    /// 1 for the first call, then 2, 3, …
    #[schema(minimum = 1)]
    attempt: i64,
    /// The call's id in the telephony back end.
    uuid: String,
    dest_number: String,
    #[schema(schema_with = timestamp)]
    call_start_time: String,
    #[schema(schema_with = optional_timestamp)]
    call_answer_time: String,
    #[schema(schema_with = optional_timestamp)]
    call_end_time: String,
    /// The hangup cause; "" while the call is alive.
    #[schema(schema_with = attempt_cause)]
    cause: String,
    /// The final SIP status of the call, or "".
    #[schema(pattern = "^([0-9]{3})?$")]
    sip_code: String,
    /// Seconds from the answer to the end.
    #[schema(minimum = 0)]
    billsec: i64,
    dtmf: String,
    record_path: String,
}

fn attempt_cause() -> Schema {
    one_of_or_empty(<domain::HangupCause as VariantNames>::VARIANTS)
}

#[derive(ToSchema)]
pub struct AttemptList {
    #[schema(schema_with = success_code)]
    code: i64,
    #[schema(schema_with = success_message)]
    message: String,
    /// In attempt order.
    data: Vec<Attempt>,
}

/// A do-not-call entry.
#[derive(ToSchema)]
pub struct DncEntry {
    #[schema(minimum = 1)]
    id: i64,
    number: String,
    /// The one task it applies to; null: every task.
    #[schema(minimum = 1)]
    task_id: Option<i64>,
    note: String,
    #[schema(schema_with = timestamp)]
    created_at: String,
}

#[derive(ToSchema)]
pub struct DncList {
    #[schema(minimum = 1)]
    page: i64,
    data: Vec<DncEntry>,
    #[schema(rename = "rowCount", minimum = 0)]
    row_count: i64,
    #[schema(rename = "pageCount", minimum = 0)]
    page_count: i64,
}

#[derive(ToSchema)]
pub struct DncAddRow {
    /// Checked like an import's `dest_number`.
    #[schema(schema_with = dest_number_input)]
    number: (),
    #[schema(schema_with = description_input, required = false)]
    note: (),
    /// Only this task; absent or null: every task.
    #[schema(schema_with = dnc_task_input, required = false)]
    task_id: (),
}

fn dnc_task_input() -> Schema {
    OneOfBuilder::new()
        .item(task_id_input())
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some(
            "a live task's id, as a number or a numeric string; null: every task",
        ))
        .into()
}

#[derive(ToSchema)]
pub struct DncAddRequest {
    /// At most 100,000 entries.
    #[schema(max_items = 100000)]
    data: Vec<DncAddRow>,
}

#[derive(ToSchema)]
pub struct DncAddAnswer {
    #[schema(schema_with = success_code)]
    code: i64,
    #[schema(schema_with = success_message)]
    message: String,
    #[schema(schema_with = dnc_added)]
    data: String,
}

fn dnc_added() -> Schema {
    string()
        .description(Some(
            "the JSON text of `{\"added\":N,\"duplicates\":D}`: entries added, and entries already listed for the same scope",
        ))
        .examples([r#"{"added":2,"duplicates":1}"#])
        .into()
}

/// `/metrics`: the Prometheus (or OpenMetrics) text exposition.
pub struct MetricsText;

impl PartialSchema for MetricsText {
    fn schema() -> RefOr<Schema> {
        string()
            .description(Some(
                "metric families in the Prometheus text format: outcall_calls_started_total, \
                 outcall_calls_answered_total, outcall_calls_ended_total, outcall_live_calls, \
                 outcall_task_caps, outcall_retry_queue, outcall_webhook_outbox, \
                 outcall_http_request_duration_seconds",
            ))
            .into()
    }
}

impl ToSchema for MetricsText {}

/// A task's live progress.
#[derive(ToSchema)]
pub struct TaskStats {
    #[schema(minimum = 1)]
    id: i64,
    #[schema(schema_with = task_status)]
    status: String,
    /// Numbers in the task.
    #[schema(minimum = 0)]
    total: i64,
    /// Numbers waiting to be dialed.
    #[schema(minimum = 0)]
    init: i64,
    /// Numbers whose call is in progress.
    #[schema(minimum = 0)]
    calling: i64,
    /// Numbers finished.
    #[schema(minimum = 0)]
    done: i64,
    /// Numbers a stop left undialed.
    #[schema(minimum = 0)]
    stop: i64,
    /// Numbers whose call was answered.
    #[schema(minimum = 0)]
    answered: i64,
    /// Finished numbers per hangup cause name.
    #[schema(schema_with = cause_counts)]
    causes: (),
    /// Calls started in the last 10 s, divided by 10.
    #[schema(minimum = 0)]
    caps: f64,
    /// Calls alive now.
    #[schema(minimum = 0)]
    live: i64,
    #[schema(schema_with = timestamp)]
    updated_at: String,
    /// Why a running task starts no call now: "call_window" (outside its calling hours),
    /// "retry" (only numbers waiting for their retry are left), or "".
    #[schema(schema_with = waiting_reason)]
    waiting: String,
    /// Until when it waits at the latest, or "".
    #[schema(schema_with = optional_timestamp)]
    waiting_until: String,
    /// Numbers waiting for a retry or for the per-day cap.
    #[schema(minimum = 0)]
    retry_pending: i64,
    /// The delivery of the task's result webhooks.
    webhooks: WebhookState,
}

fn waiting_reason() -> Schema {
    string()
        .enum_values(Some(["", "call_window", "retry"]))
        .into()
}

/// The task's result webhooks by state, with the latest error of a pending or failed one.
#[derive(ToSchema)]
pub struct WebhookState {
    /// Not delivered yet; tried again with a growing wait.
    #[schema(minimum = 0)]
    pending: i64,
    #[schema(minimum = 0)]
    delivered: i64,
    /// Given up (not delivered within 24 h).
    #[schema(minimum = 0)]
    failed: i64,
    /// e.g. "HTTP 500" or a connection error; "" when none.
    last_error: String,
}

fn cause_counts() -> Schema {
    ObjectBuilder::new()
        .additional_properties(Some(integer().minimum(Some(1))))
        .property_names(Some(one_of(
            <domain::HangupCause as VariantNames>::VARIANTS,
        )))
        .into()
}

/// One event of `GET /api/events` (as OpenAPI 3.1 describes a stream: the schema of each event).
#[derive(ToSchema)]
pub struct StreamEvent {
    #[schema(schema_with = stream_event_name)]
    event: String,
    /// JSON: a task's stats for `task` (see `TaskStats`), `{}` for `ping`.
    #[schema(content_media_type = "application/json")]
    data: String,
}

fn stream_event_name() -> Schema {
    string().enum_values(Some(["task", "ping"])).into()
}

#[derive(ToSchema)]
pub struct StatsAnswer {
    #[schema(schema_with = success_code)]
    code: i64,
    #[schema(schema_with = success_message)]
    message: String,
    data: TaskStats,
}

/// Every error: the HTTP status again, and what is wrong, naming the field.
#[derive(ToSchema)]
pub struct ErrorEnvelope {
    #[schema(minimum = 400, maximum = 599)]
    code: i64,
    message: String,
}

#[derive(ToSchema)]
pub struct Health {
    #[schema(schema_with = health_status)]
    status: String,
    schema_version: i64,
}

fn health_status() -> Schema {
    string().enum_values(Some(["ok"])).into()
}

#[derive(ToSchema)]
pub struct LoginRequest {
    #[schema(schema_with = login_text)]
    login: String,
    #[schema(schema_with = login_text)]
    password: String,
}

fn login_text() -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::Array(vec![Type::String, Type::Number]))
        .max_length(Some(256))
        .into()
}

#[derive(ToSchema)]
pub struct LoginAnswer {
    #[schema(schema_with = success_code)]
    code: i64,
    token: String,
    /// Unix seconds.
    expires: i64,
    user_id: i64,
}

#[derive(ToSchema)]
pub struct LogoutAnswer {
    #[schema(schema_with = success_code)]
    code: i64,
    #[schema(schema_with = success_message)]
    message: String,
}

#[derive(ToSchema)]
pub struct User {
    id: i64,
    login: String,
    #[schema(schema_with = role)]
    role: String,
    #[schema(schema_with = timestamp)]
    created_at: String,
}

fn role() -> Schema {
    string().enum_values(Some(["admin", "readonly"])).into()
}

#[derive(ToSchema)]
pub struct UserList {
    #[schema(schema_with = success_code)]
    code: i64,
    #[schema(schema_with = success_message)]
    message: String,
    data: Vec<User>,
}

#[derive(ToSchema)]
pub struct UserAnswer {
    #[schema(schema_with = success_code)]
    code: i64,
    #[schema(schema_with = success_message)]
    message: String,
    data: User,
}

#[derive(ToSchema)]
pub struct UserCreate {
    /// 1 to 64 letters, digits, `.`, `_`, `-` or `@`.
    #[schema(pattern = "^[A-Za-z0-9._@-]{1,64}$")]
    login: String,
    /// At least 10 characters.
    #[schema(min_length = 10, max_length = 256)]
    password: String,
    #[schema(schema_with = role)]
    role: String,
}

#[derive(ToSchema)]
pub struct PasswordChange {
    /// Required when changing one's own password.
    #[schema(required = false, max_length = 256)]
    old_password: Option<String>,
    #[schema(min_length = 10, max_length = 256)]
    new_password: String,
}

/// A task's status.
pub struct TaskStatus;

impl PartialSchema for TaskStatus {
    fn schema() -> RefOr<Schema> {
        task_status().into()
    }
}

impl ToSchema for TaskStatus {}

/// The numbers list's `call_status` filter: a status, or empty for any.
pub struct CallStatusFilter;

impl PartialSchema for CallStatusFilter {
    fn schema() -> RefOr<Schema> {
        one_of_or_empty(domain::CallStatus::VARIANTS).into()
    }
}

impl ToSchema for CallStatusFilter {}

/// The numbers list's `cause` filter: a hangup cause name, or empty for any.
pub struct CauseFilter;

impl PartialSchema for CauseFilter {
    fn schema() -> RefOr<Schema> {
        one_of_or_empty(<domain::HangupCause as VariantNames>::VARIANTS).into()
    }
}

impl ToSchema for CauseFilter {}

/// The list's `status` filter: a status, or empty (as a form sends an unset field) for any.
pub struct TaskStatusFilter;

impl PartialSchema for TaskStatusFilter {
    fn schema() -> RefOr<Schema> {
        one_of_or_empty(domain::TaskStatus::VARIANTS).into()
    }
}

impl ToSchema for TaskStatusFilter {}

/// A task in the list: every field a string except `total` and `done`.
#[derive(ToSchema)]
pub struct TaskListItem {
    #[schema(schema_with = digits)]
    id: String,
    group_name: String,
    description: String,
    #[schema(schema_with = task_status)]
    status: String,
    cid_number: String,
    cid_name: String,
    context: String,
    dest_context: String,
    #[schema(schema_with = digits)]
    calling_time: String,
    #[schema(schema_with = number_text)]
    max_caps: String,
    #[schema(schema_with = digits)]
    max_concurrency: String,
    #[schema(schema_with = optional_timestamp)]
    task_start_time: String,
    #[schema(schema_with = optional_timestamp)]
    task_end_time: String,
    #[schema(schema_with = switch_text)]
    auto_dial: String,
    #[schema(schema_with = switch_text)]
    disable_ring_back: String,
    #[schema(schema_with = switch_text)]
    auto_record: String,
    group_confirm_key: String,
    /// Seconds, or "" when unset.
    group_confirm_read_timeout: String,
    group_confirm_file: String,
    #[schema(schema_with = action)]
    action: String,
    data: String,
    #[schema(schema_with = timestamp)]
    created_at: String,
    #[schema(schema_with = timestamp)]
    updated_at: String,
    #[schema(schema_with = optional_timestamp)]
    deleted_at: String,
    /// Calls a number may get in all (1-100; 1: no retry).
    #[schema(schema_with = digits)]
    max_attempts: String,
    /// Seconds between a number's calls (1-2592000).
    #[schema(schema_with = digits)]
    retry_interval: String,
    #[schema(schema_with = retry_causes_output)]
    retry_causes: String,
    #[schema(schema_with = call_windows_output)]
    call_windows: String,
    #[schema(schema_with = call_weekdays_output)]
    call_weekdays: String,
    #[schema(schema_with = time_zone_output)]
    time_zone: String,
    #[schema(schema_with = webhook_url_output)]
    webhook_url: String,
    /// Numbers in the task.
    #[schema(minimum = 0)]
    total: i64,
    /// Numbers finished.
    #[schema(minimum = 0)]
    done: i64,
}

#[derive(ToSchema)]
pub struct TaskList {
    #[schema(minimum = 1)]
    page: i64,
    data: Vec<TaskListItem>,
    #[schema(rename = "rowCount", minimum = 0)]
    row_count: i64,
    #[schema(rename = "pageCount", minimum = 0)]
    page_count: i64,
}

/// A task by id: the numeric settings are numbers.
#[derive(ToSchema)]
pub struct Task {
    #[schema(minimum = 1)]
    id: i64,
    group_name: String,
    description: String,
    #[schema(schema_with = task_status)]
    status: String,
    cid_number: String,
    cid_name: String,
    context: String,
    dest_context: String,
    #[schema(minimum = 5, maximum = 300)]
    calling_time: i64,
    #[schema(exclusive_minimum = 0)]
    max_caps: f64,
    #[schema(minimum = 1)]
    max_concurrency: i64,
    #[schema(schema_with = optional_timestamp)]
    task_start_time: String,
    #[schema(schema_with = optional_timestamp)]
    task_end_time: String,
    #[schema(minimum = 0, maximum = 1)]
    auto_dial: i64,
    #[schema(minimum = 0, maximum = 1)]
    disable_ring_back: i64,
    #[schema(minimum = 0, maximum = 1)]
    auto_record: i64,
    group_confirm_key: String,
    /// Seconds, or "" when unset.
    group_confirm_read_timeout: String,
    group_confirm_file: String,
    #[schema(schema_with = action)]
    action: String,
    data: String,
    /// "done/total".
    #[schema(pattern = "^[0-9]+/[0-9]+$")]
    done_total: String,
    #[schema(schema_with = timestamp)]
    created_at: String,
    #[schema(schema_with = timestamp)]
    updated_at: String,
    #[schema(schema_with = optional_timestamp)]
    deleted_at: String,
    /// Calls a number may get in all (1: no retry).
    #[schema(minimum = 1, maximum = 100)]
    max_attempts: i64,
    /// Seconds between a number's calls.
    #[schema(minimum = 1, maximum = 2592000)]
    retry_interval: i64,
    #[schema(schema_with = retry_causes_output)]
    retry_causes: String,
    #[schema(schema_with = call_windows_output)]
    call_windows: String,
    #[schema(schema_with = call_weekdays_output)]
    call_weekdays: String,
    #[schema(schema_with = time_zone_output)]
    time_zone: String,
    #[schema(schema_with = webhook_url_output)]
    webhook_url: String,
}

/// The fields of a task that create and update take; any subset, other keys ignored.
#[derive(ToSchema)]
pub struct TaskUpdate {
    #[schema(schema_with = group_name_input, required = false)]
    group_name: (),
    #[schema(schema_with = description_input, required = false)]
    description: (),
    #[schema(schema_with = cid_number_input, required = false)]
    cid_number: (),
    #[schema(schema_with = name_input, required = false)]
    cid_name: (),
    #[schema(schema_with = name_input, required = false)]
    context: (),
    #[schema(schema_with = name_input, required = false)]
    dest_context: (),
    #[schema(schema_with = calling_time_input, required = false)]
    calling_time: (),
    #[schema(schema_with = max_caps_input, required = false)]
    max_caps: (),
    #[schema(schema_with = max_concurrency_input, required = false)]
    max_concurrency: (),
    #[schema(schema_with = task_start_time_input, required = false)]
    task_start_time: (),
    /// With `auto_dial` 1, the task stops by itself at this time.
    #[schema(schema_with = task_start_time_input, required = false)]
    task_end_time: (),
    #[schema(schema_with = flag_input, required = false)]
    auto_dial: (),
    #[schema(schema_with = flag_input, required = false)]
    disable_ring_back: (),
    #[schema(schema_with = flag_input, required = false)]
    auto_record: (),
    #[schema(schema_with = confirm_key_input, required = false)]
    group_confirm_key: (),
    #[schema(schema_with = read_timeout_input, required = false)]
    group_confirm_read_timeout: (),
    #[schema(schema_with = media_reference_input, required = false)]
    group_confirm_file: (),
    #[schema(schema_with = action_input, required = false)]
    action: (),
    #[schema(schema_with = media_reference_input, required = false)]
    data: (),
    #[schema(schema_with = max_attempts_input, required = false)]
    max_attempts: (),
    #[schema(schema_with = retry_interval_input, required = false)]
    retry_interval: (),
    #[schema(schema_with = retry_causes_input, required = false)]
    retry_causes: (),
    #[schema(schema_with = call_windows_input, required = false)]
    call_windows: (),
    #[schema(schema_with = call_weekdays_input, required = false)]
    call_weekdays: (),
    #[schema(schema_with = time_zone_input, required = false)]
    time_zone: (),
    #[schema(schema_with = webhook_url_input, required = false)]
    webhook_url: (),
}

/// Like an update, with `group_name` required.
pub struct TaskCreate;

impl PartialSchema for TaskCreate {
    fn schema() -> RefOr<Schema> {
        let mut schema = TaskUpdate::schema();
        if let RefOr::T(Schema::Object(object)) = &mut schema {
            object.required.push("group_name".into());
        }
        schema
    }
}

impl ToSchema for TaskCreate {}

fn description_input() -> Schema {
    text_input(1024)
}

fn cid_number_input() -> Schema {
    text_input(64)
}

fn name_input() -> Schema {
    text_input(128)
}

/// Create and clone: the new id, a number.
#[derive(ToSchema)]
pub struct CreatedAnswer {
    #[schema(schema_with = success_code)]
    code: i64,
    #[schema(schema_with = success_message)]
    message: String,
    #[schema(minimum = 1)]
    data: i64,
}

/// Update and delete: the id, a string.
#[derive(ToSchema)]
pub struct IdAnswer {
    #[schema(schema_with = success_code)]
    code: i64,
    #[schema(schema_with = success_message)]
    message: String,
    #[schema(schema_with = digits)]
    data: String,
}

#[derive(ToSchema)]
pub struct StartStopRequest {
    #[schema(schema_with = start_stop_action)]
    action: String,
    #[schema(schema_with = task_ids_input)]
    data: (),
}

fn start_stop_action() -> Schema {
    string().enum_values(Some(["start", "stop"])).into()
}

fn task_ids_input() -> Schema {
    ArrayBuilder::new()
        .items(RefOr::T(task_id_input()))
        .min_items(Some(1))
        .description(Some("task ids, as numbers or numeric strings"))
        .into()
}

#[derive(ToSchema)]
pub struct StartStopAnswer {
    #[schema(schema_with = success_code)]
    code: i64,
    #[schema(schema_with = success_message)]
    message: String,
    #[schema(schema_with = state_changes)]
    data: (),
}

/// Per task: the start's answer carries `task_start_time`, the stop's `task_end_time`.
fn state_changes() -> Schema {
    let change = |time_field: &str| {
        ObjectBuilder::new()
            .property("data_id", digits())
            .required("data_id")
            .property("status", task_status())
            .required("status")
            .property("updated_at", timestamp())
            .required("updated_at")
            .property(time_field, optional_timestamp())
            .required(time_field)
    };
    ArrayBuilder::new()
        .items(
            OneOfBuilder::new()
                .item(change("task_start_time"))
                .item(change("task_end_time")),
        )
        .into()
}

#[derive(ToSchema)]
pub struct CloneRequest {
    #[schema(schema_with = group_name_input)]
    group_name: (),
    #[schema(schema_with = description_input, required = false)]
    description: (),
    /// 1: copy the numbers too, reset to never dialed.
    #[schema(schema_with = flag_input, required = false)]
    is_clone_numbers: (),
    /// The task to copy.
    #[schema(schema_with = task_id_input)]
    id: (),
}

#[derive(ToSchema)]
pub struct ImportRow {
    #[schema(schema_with = dest_number_input)]
    dest_number: (),
    #[schema(schema_with = external_id_input, required = false)]
    external_id: (),
}

#[derive(ToSchema)]
pub struct ImportRequest {
    data: Vec<ImportRow>,
}

#[derive(ToSchema)]
pub struct ImportAnswer {
    #[schema(schema_with = success_code)]
    code: i64,
    #[schema(schema_with = success_message)]
    message: String,
    #[schema(schema_with = import_data)]
    data: String,
}

fn import_data() -> Schema {
    string()
        .description(Some(
            "the JSON text of `{\"imported\":N,\"duplicates\":D,\"dnc\":K}`; a file import adds \
             `\"rejected\":M,\"first_rejected\":[{\"row\":R,\"value\":\"…\",\"reason\":\"…\"}]`",
        ))
        .examples([
            r#"{"imported":2,"duplicates":1,"dnc":0}"#,
            r#"{"imported":2,"duplicates":0,"dnc":1,"rejected":1,"first_rejected":[{"row":3,"value":"12a","reason":"\"12a\" is not dialable"}]}"#,
        ])
        .into()
}

/// The multipart import form.
#[derive(ToSchema)]
pub struct FileImport {
    #[schema(schema_with = import_file)]
    file: (),
    /// The numbers' column: a header name or a 1-based column number; default: the first.
    #[schema(required = false, max_length = 256, example = "1")]
    number_column: String,
    /// The external ids' column: a header name or a 1-based column number; default: none.
    #[schema(required = false, max_length = 256)]
    external_id_column: String,
    /// Whether the first row is a header; default: guessed (a header when its number cell is
    /// not dialable).
    #[schema(schema_with = has_header)]
    has_header: (),
}

fn import_file() -> Schema {
    string()
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
        .description(Some(
            "a CSV (UTF-8 with or without BOM, or GBK/GB18030) or an XLSX workbook (its first sheet)",
        ))
        .examples(["13800138000,a\n13800138001,b\n"])
        .into()
}

fn has_header() -> Schema {
    string().enum_values(Some(["", "1", "0"])).into()
}

/// `json`, `csv` or `xlsx`; empty: json.
pub struct DownloadFormat;

impl PartialSchema for DownloadFormat {
    fn schema() -> RefOr<Schema> {
        string()
            .enum_values(Some(["", "json", "csv", "xlsx"]))
            .into()
    }
}

impl ToSchema for DownloadFormat {}

/// The CSV export: a UTF-8 BOM, the header row, then a row a number.
pub struct DownloadCsv;

impl PartialSchema for DownloadCsv {
    fn schema() -> RefOr<Schema> {
        string()
            .description(Some(
                "CSV text: a UTF-8 BOM, the vendor's header row, then a row a number",
            ))
            .into()
    }
}

impl ToSchema for DownloadCsv {}

/// The XLSX export.
pub struct DownloadXlsx;

impl PartialSchema for DownloadXlsx {
    fn schema() -> RefOr<Schema> {
        string()
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .description(Some("an XLSX workbook of one sheet with the same rows"))
            .into()
    }
}

impl ToSchema for DownloadXlsx {}

/// A number in the list: every field a string.
#[derive(ToSchema)]
pub struct NumberItem {
    #[schema(schema_with = digits)]
    id: String,
    dest_number: String,
    #[schema(schema_with = digits)]
    group_id: String,
    external_id: String,
    /// The call's id in the telephony back end.
    uuid: String,
    #[schema(schema_with = call_status)]
    call_status: String,
    /// "1": never dialed, "0": dialed.
    #[schema(schema_with = switch_text)]
    outbound_call: String,
    dtmf: String,
    /// The FreeSWITCH hangup cause name.
    cause: String,
    #[schema(schema_with = optional_timestamp)]
    call_start_time: String,
    #[schema(schema_with = optional_timestamp)]
    call_answer_time: String,
    #[schema(schema_with = optional_timestamp)]
    call_end_time: String,
    #[schema(schema_with = timestamp)]
    created_at: String,
    #[schema(schema_with = timestamp)]
    updated_at: String,
    #[schema(schema_with = optional_timestamp)]
    deleted_at: String,
    /// The final SIP status of the call, or "".
    #[schema(pattern = "^([0-9]{3})?$")]
    sip_code: String,
    record_path: String,
}

#[derive(ToSchema)]
pub struct NumberList {
    #[schema(minimum = 1)]
    page: i64,
    data: Vec<NumberItem>,
    #[schema(rename = "rowCount", minimum = 0)]
    row_count: i64,
    #[schema(rename = "pageCount", minimum = 0)]
    page_count: i64,
}

/// The export: the header row 任务名称, 接通后动作, 被叫号码, 呼叫状态, 呼叫开始时间, 呼叫应答时间,
/// 呼叫结束时间, 总时长, 计费时长, 挂机原因, then a row a number.
pub struct DownloadRows;

impl PartialSchema for DownloadRows {
    fn schema() -> RefOr<Schema> {
        let row = ArrayBuilder::new()
            .items(string())
            .min_items(Some(10))
            .max_items(Some(10));
        ArrayBuilder::new()
            .items(row)
            .min_items(Some(1))
            .description(Some(
                "a header row (任务名称, 接通后动作, 被叫号码, 呼叫状态, 呼叫开始时间, 呼叫应答时间, \
                 呼叫结束时间, 总时长, 计费时长, 挂机原因), then a row a number",
            ))
            .into()
    }
}

impl ToSchema for DownloadRows {}

/// What tasks reference in `data` and `group_confirm_file` (as a JSON string).
#[derive(ToSchema)]
pub struct MediaObject {
    media_id: i64,
    media_path: String,
    media_type: String,
    media_name: String,
}

#[derive(ToSchema)]
pub struct MediaListItem {
    media_id: i64,
    media_path: String,
    media_type: String,
    media_name: String,
    #[schema(minimum = 0)]
    bytes: i64,
    #[schema(minimum = 0)]
    duration_ms: i64,
    #[schema(schema_with = timestamp)]
    created_at: String,
}

#[derive(ToSchema)]
pub struct MediaList {
    #[schema(minimum = 1)]
    page: i64,
    data: Vec<MediaListItem>,
    #[schema(rename = "rowCount", minimum = 0)]
    row_count: i64,
    #[schema(rename = "pageCount", minimum = 0)]
    page_count: i64,
}

#[derive(ToSchema)]
pub struct MediaUpload {
    #[schema(schema_with = wav_file)]
    file: (),
    /// The name shown; default: the file's name without its extension.
    #[schema(required = false, max_length = 128)]
    name: String,
}

fn wav_file() -> Schema {
    string()
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
        .description(Some("a WAV file: PCM, float, A-law or µ-law"))
        .examples([tiny_wav()])
        .into()
}

/// A WAV file's bytes, as the audio routes answer them.
pub struct WavBytes;

impl PartialSchema for WavBytes {
    fn schema() -> RefOr<Schema> {
        string()
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .description(Some("a WAV file (or the part of it a `Range` asked for)"))
            .into()
    }
}

impl ToSchema for WavBytes {}

/// 8 ms of near-silence, 8 kHz mono 8-bit PCM: every byte is below 0x80, so the example is the
/// same whether a client sends it as text or as bytes.
fn tiny_wav() -> String {
    const SAMPLES: u32 = 64;
    let mut wav = Vec::new();
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + SAMPLES).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&8000u32.to_le_bytes()); // samples a second
    wav.extend_from_slice(&8000u32.to_le_bytes()); // bytes a second
    wav.extend_from_slice(&1u16.to_le_bytes()); // bytes a frame
    wav.extend_from_slice(&8u16.to_le_bytes()); // bits a sample
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&SAMPLES.to_le_bytes());
    wav.extend(std::iter::repeat_n(0x7f, SAMPLES as usize));
    String::from_utf8(wav).expect("every byte is ASCII")
}

#[derive(ToSchema)]
pub struct MediaUploadAnswer {
    #[schema(schema_with = success_code)]
    code: i64,
    #[schema(schema_with = success_message)]
    message: String,
    data: MediaObject,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::wav;

    #[test]
    fn the_upload_example_is_a_wav_the_server_takes() {
        let samples = wav::prompt_from_wav(tiny_wav().as_bytes()).expect("a readable WAV");
        assert_eq!(samples.len(), 64);
    }

    #[test]
    fn links_name_their_operation_the_way_openapi_spells_it() {
        let document = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let links = &document["paths"]["/api/out_call_tasks"]["post"]["responses"]["200"]["links"];
        assert_eq!(links["get_task"]["operationId"], "get_task");
        assert!(links["get_task"].get("operation_id").is_none());
        let operation_ids: Vec<&str> = document["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .filter_map(|operation| operation["operationId"].as_str())
            .collect();
        for target in TASK_OPERATIONS {
            assert!(operation_ids.contains(target), "{target}");
        }
    }
}
