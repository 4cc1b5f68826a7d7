//! `/api/media_files`: the prompts tasks play, uploaded as WAV and stored in the form calls play
//! (8 kHz mono 16-bit), listed as the media objects tasks reference.

use actix_multipart::Multipart;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::{json, Value};

use super::{
    error::{ApiError, ApiResult},
    input, tasks, AppState,
};
use crate::{
    audio::wav,
    clock,
    db::{self, media_files::MediaFile},
    domain::Text,
    telephony,
};

const MAX_NAME_CHARS: usize = 128;
/// A form has a file and a name; a few more fields are tolerated, not an endless stream of them
/// (empty fields would cost no body bytes).
const MAX_FIELDS: usize = 16;

/// The object tasks keep in `data` and `group_confirm_file`.
pub fn media_object(file: &MediaFile) -> Value {
    json!({
        "media_id": file.id,
        "media_path": file.path,
        "media_type": file.media_type,
        "media_name": file.name,
    })
}

fn list_item(file: &MediaFile, tz: crate::clock::TimeZone) -> Value {
    let mut item = media_object(file);
    let extra = json!({
        "bytes": file.bytes,
        "duration_ms": file.duration_ms,
        "created_at": tz.format(file.created_at),
    });
    if let (Value::Object(item), Value::Object(extra)) = (&mut item, extra) {
        item.extend(extra);
    }
    item
}

/// `POST /api/media_files`: multipart form with the WAV in a file field and an optional `name`.
/// The body limit holds for the whole request, all fields together: a declared length over it is
/// refused before anything is read, and reading stops as soon as the fields add up to more.
pub async fn upload(
    state: web::Data<AppState>,
    request: HttpRequest,
    mut form: Multipart,
) -> ApiResult<HttpResponse> {
    let mut budget = input::MultipartBudget::new(&request, state.body_limit)?;
    let mut name: Option<String> = None;
    let mut upload: Option<(String, Vec<u8>)> = None;
    let mut fields = 0;
    while let Some(field) = form.next().await {
        fields += 1;
        if fields > MAX_FIELDS {
            return Err(ApiError::bad_request(format!(
                "file: a media upload has at most {MAX_FIELDS} form fields"
            )));
        }
        let mut field =
            field.map_err(|e| ApiError::bad_request(format!("malformed multipart body: {e}")))?;
        let field_name = field.name().unwrap_or_default().to_owned();
        let file_name = field
            .content_disposition()
            .and_then(|d| d.get_filename())
            .map(str::to_owned);
        let mut bytes = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::bad_request(format!("could not read field {field_name}: {e}"))
            })?;
            budget.take(chunk.len())?;
            // Only the file and the name are kept; other fields are counted and dropped.
            if file_name.is_some() || field_name == "name" {
                bytes.extend_from_slice(&chunk);
            }
        }
        match file_name {
            Some(file_name) => upload = Some((file_name, bytes)),
            None if field_name == "name" => {
                let text = String::from_utf8(bytes)
                    .map_err(|_| ApiError::bad_request("name must be UTF-8 text"))?;
                name = Some(input::checked("name", Text::new(text, MAX_NAME_CHARS))?.into_string());
            }
            None => {}
        }
    }
    let (file_name, bytes) = upload.ok_or_else(|| {
        ApiError::bad_request("file is required: a multipart field with a WAV file")
    })?;
    let name = name.filter(|n| !n.trim().is_empty()).unwrap_or_else(|| {
        let stem = std::path::Path::new(&file_name)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("prompt");
        stem.chars().take(MAX_NAME_CHARS).collect()
    });
    let samples = web::block(move || wav::prompt_from_wav(&bytes))
        .await
        .map_err(|e| ApiError::bad_request(format!("could not read the upload: {e}")))?
        .map_err(|e| ApiError::bad_request(format!("file: {e}")))?;
    let stored = wav::encode_wav(&samples, 1, wav::SAMPLE_RATE);
    let duration_ms = samples.len() as i64 * 1000 / wav::SAMPLE_RATE as i64;
    let directory = telephony::media_dir(&state.data_dir);
    let file = state
        .db
        .run(move |conn| {
            db::media_files::insert(
                conn,
                &name,
                stored.len() as i64,
                duration_ms,
                clock::now(),
                |id| {
                    std::fs::create_dir_all(&directory)?;
                    let path = directory.join(telephony::upload_file_name(id as u64));
                    let partial = directory.join(format!("{id}.wav.partial"));
                    std::fs::write(&partial, &stored)?;
                    std::fs::rename(&partial, &path)?;
                    Ok(std::path::absolute(&path)?.display().to_string())
                },
            )
        })
        .await?;
    Ok(HttpResponse::Ok()
        .json(json!({ "code": 200, "message": "success", "data": media_object(&file) })))
}

/// `GET /api/media_files?page=&perPage=`.
pub async fn list(state: web::Data<AppState>, request: HttpRequest) -> ApiResult<HttpResponse> {
    let page = input::page(&input::query_pairs(&request)?)?;
    let (files, row_count) = state
        .db
        .run(move |conn| db::media_files::list(conn, page))
        .await?;
    let tz = state.time_zone;
    Ok(HttpResponse::Ok().json(json!({
        "page": page.number,
        "data": files.iter().map(|f| list_item(f, tz)).collect::<Vec<_>>(),
        "rowCount": row_count,
        "pageCount": tasks::page_count(row_count, page.per_page),
    })))
}
