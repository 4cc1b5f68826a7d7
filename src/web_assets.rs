//! The admin page: the files of `static/`, compiled into the binary.

use actix_web::{http::header, web, HttpResponse};
use rust_embed::RustEmbed;

use crate::api::error::ApiError;

#[derive(RustEmbed)]
#[folder = "static/"]
struct Assets;

pub async fn serve(path: Option<web::Path<String>>) -> Result<HttpResponse, ApiError> {
    let path = path
        .map(|p| p.into_inner())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "index.html".into());
    let file =
        Assets::get(&path).ok_or_else(|| ApiError::not_found(format!("no such file: /{path}")))?;
    let mime = mime_guess::from_path(&path).first_or_octet_stream();
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, mime.as_ref()))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(file.data.into_owned()))
}
