//! The sound files the admin page plays: a prompt of the media store and a call's recording, as
//! `audio/wav`, with `Range` requests (an `<audio>` element seeks with them) handled by
//! `actix-files`. Only a file inside its directory (`<data-dir>/media`, `<data-dir>/recordings`)
//! is ever served, whatever path the database holds.

use std::path::PathBuf;

use actix_files::NamedFile;
use actix_web::{
    body::BoxBody,
    http::{
        header::{self, ContentDisposition, DispositionParam, DispositionType},
        StatusCode,
    },
    web, HttpRequest, HttpResponse,
};

use super::{
    error::{ApiError, ApiResult},
    input, AppState,
};
use crate::{data_dir, db, telephony};

/// `GET /api/media_files/{id}/audio`: the stored prompt (8 kHz mono 16-bit WAV).
pub async fn media_file(
    state: web::Data<AppState>,
    id: web::Path<String>,
    request: HttpRequest,
) -> ApiResult<HttpResponse> {
    let id = input::path_id(&id)?;
    let stored = state
        .db
        .run(move |conn| db::media_files::stored_path(conn, id))
        .await?;
    let wav = Wav {
        directory: telephony::media_dir(&state.data_dir),
        stored: PathBuf::from(stored),
        file_name: telephony::upload_file_name(id as u64),
        missing: format!("media file {id} has no stored audio"),
    };
    wav.serve(&request).await
}

/// `GET /api/out_call_tasks/{id}/numbers/{number_id}/recording`: the call's recording (stereo
/// 8 kHz 16-bit WAV), 404 when `auto_record` made none.
pub async fn recording(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    request: HttpRequest,
) -> ApiResult<HttpResponse> {
    let (task_id, number_id) = path.into_inner();
    let task_id = input::path_id(&task_id)?;
    let number_id = input::path_id(&number_id)?;
    let stored = state
        .db
        .run(move |conn| db::numbers::record_path(conn, task_id, number_id))
        .await?;
    let missing = format!("number {number_id} of task {task_id} has no recording");
    if stored.is_empty() {
        return Err(ApiError::not_found(missing));
    }
    let stored = PathBuf::from(stored);
    let wav = Wav {
        directory: telephony::recordings_dir(&state.data_dir),
        file_name: stored.file_name().map_or_else(
            || "recording.wav".into(),
            |n| n.to_string_lossy().into_owned(),
        ),
        stored,
        missing,
    };
    wav.serve(&request).await
}

/// A WAV file the database names, to be served from `directory` only.
struct Wav {
    directory: PathBuf,
    stored: PathBuf,
    /// Offered to a browser that saves the file.
    file_name: String,
    /// The 404's message when the file is not there (or not in `directory`).
    missing: String,
}

impl Wav {
    /// Opens the file on a blocking thread (`actix-files` reads it on blocking threads too) and
    /// answers it whole or the range asked for (206, or 416 when the range is past its end).
    async fn serve(self, request: &HttpRequest) -> ApiResult<HttpResponse> {
        let Wav {
            directory,
            stored,
            file_name,
            missing,
        } = self;
        let shown = stored.clone();
        let opened = web::block(move || {
            let (file, resolved) = data_dir::open_inside(&directory, &stored)?;
            NamedFile::from_file(file, resolved)
        })
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "opening the audio file failed; try again",
            )
        })?;
        let file = opened.map_err(|error| {
            tracing::warn!(path = %shown.display(), %error, "an audio file the database names cannot be served");
            ApiError::not_found(missing)
        })?;
        let wav: mime_guess::mime::Mime = "audio/wav".parse().expect("a valid MIME type");
        let response = file
            .set_content_type(wav)
            .set_content_disposition(ContentDisposition {
                disposition: DispositionType::Inline,
                parameters: vec![DispositionParam::Filename(file_name)],
            })
            .into_response(request);
        let mut response = with_envelope(request, response);
        // Calls' audio is personal data: no shared cache keeps it, and a browser asks again
        // (a cheap 304 with the ETag) before reusing its copy.
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("private, no-cache"),
        );
        Ok(response)
    }
}

/// `actix-files` answers a refused request (416, 412, 400) with an empty body: it gets the error
/// envelope, its headers (`Content-Range: bytes */<size>`) kept.
fn with_envelope(request: &HttpRequest, response: HttpResponse) -> HttpResponse {
    let status = response.status();
    if !status.is_client_error() {
        return response;
    }
    let range = request
        .headers()
        .get(header::RANGE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let message = match status {
        StatusCode::RANGE_NOT_SATISFIABLE => {
            let size = response
                .headers()
                .get(header::CONTENT_RANGE)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.strip_prefix("bytes */"))
                .unwrap_or("?")
                .to_owned();
            format!("Range: {range:?} is outside the file of {size} bytes")
        }
        StatusCode::PRECONDITION_FAILED => {
            "If-Match / If-Unmodified-Since: the file is not the one asked for".to_owned()
        }
        _ => format!("Range: {range:?} is not a byte range"),
    };
    let body = serde_json::json!({ "code": status.as_u16(), "message": message }).to_string();
    let mut response = response.set_body(BoxBody::new(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response.headers_mut().remove(header::CONTENT_DISPOSITION);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn only_files_inside_the_directory_open() {
        let dir = tempfile::tempdir().unwrap();
        let inside = dir.path().join("recordings");
        std::fs::create_dir(&inside).unwrap();
        std::fs::write(inside.join("a.wav"), b"RIFF").unwrap();
        std::fs::write(dir.path().join("secret"), b"secret").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), inside.join("link.wav")).unwrap();
        let open = |p: &Path| data_dir::open_inside(&inside, p).map(|(_, path)| path);
        assert!(open(&inside.join("a.wav")).is_ok());
        assert!(open(&inside.join("../recordings/a.wav")).is_ok());
        assert!(open(&inside.join("../secret")).is_err());
        assert!(open(&dir.path().join("secret")).is_err());
        assert!(
            open(&inside.join("link.wav")).is_err(),
            "a link out of the directory"
        );
        assert!(open(&inside).is_err(), "the directory itself");
        assert!(open(Path::new("/etc/passwd")).is_err());
        assert!(open(&inside.join("missing.wav")).is_err());
    }
}
