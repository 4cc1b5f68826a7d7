//! The admin page: the files of `static/`, compiled into the binary and served at `/`.
//!
//! Only names of the embedded set can be served, and only plain ones: a request path is taken
//! as it arrived (still percent-encoded) and must be made of `[A-Za-z0-9._-]` segments, none
//! empty and none starting with a dot. So `..`, `%2e%2e`, `%2f`, backslashes, absolute paths and
//! NUL never reach the lookup; they are 404 like any unknown name (there is no fallback to
//! `index.html`: the page uses hash routes).

use std::borrow::Cow;

use actix_web::{http::header, web, HttpRequest, HttpResponse};
use rust_embed::RustEmbed;

use crate::api::error::ApiError;

#[derive(RustEmbed)]
#[folder = "static/"]
struct Assets;

/// The page itself, served at `/`.
const INDEX: &str = "index.html";
/// Third-party files: browsers may keep them a year without asking, so a new version of a
/// library must come with a new file name (see `static/vendor/README.txt`).
const VENDOR_PREFIX: &str = "vendor/";
const LONG_CACHE: &str = "public, max-age=31536000, immutable";
/// Every other file is revalidated on each load (a cheap 304 thanks to its ETag), so that a new
/// binary's page is seen at once.
const REVALIDATE: &str = "no-cache";
/// Longer names are not ours.
const MAX_PATH_BYTES: usize = 256;

/// `GET` / `HEAD` of `/` and `/<file>`: the embedded file with its content type, cache policy and
/// an ETag (its SHA-256); `If-None-Match` with that ETag answers 304. HEAD gets the same headers
/// with no body (actix drops the body of a HEAD response).
pub async fn serve(request: HttpRequest) -> Result<HttpResponse, ApiError> {
    let raw = request.uri().path();
    let name = asset_name(raw).ok_or_else(|| not_found(raw))?;
    let file = Assets::get(name).ok_or_else(|| not_found(raw))?;
    let etag = format!("\"{}\"", hex::encode(file.metadata.sha256_hash()));
    let cache_control = if name.starts_with(VENDOR_PREFIX) {
        LONG_CACHE
    } else {
        REVALIDATE
    };
    let unchanged = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| etag_matches(tags, &etag));
    let mut response = if unchanged {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::CACHE_CONTROL, cache_control))
        .insert_header((header::ETAG, etag));
    if unchanged {
        return Ok(response.finish());
    }
    // A release build's files are static bytes in the binary: sent without a copy.
    let body = match file.data {
        Cow::Borrowed(bytes) => web::Bytes::from_static(bytes),
        Cow::Owned(bytes) => web::Bytes::from(bytes),
    };
    Ok(response
        .insert_header((header::CONTENT_TYPE, content_type(name)))
        .body(body))
}

fn not_found(raw_path: &str) -> ApiError {
    // The path as it arrived: URI characters only (anything else is percent-encoded), truncated.
    let shown: String = raw_path.chars().take(MAX_PATH_BYTES).collect();
    ApiError::not_found(format!("no such file: {shown}"))
}

/// The embedded name a request path asks for (`/` is the page), or `None` when the path is not
/// a plain relative name: see the module's comment.
fn asset_name(raw_path: &str) -> Option<&str> {
    let relative = raw_path.strip_prefix('/')?;
    if relative.is_empty() {
        return Some(INDEX);
    }
    let plain = relative.len() <= MAX_PATH_BYTES
        && relative.split('/').all(|segment| {
            !segment.is_empty()
                && !segment.starts_with('.')
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        });
    plain.then_some(relative)
}

/// The `Content-Type` of an embedded file, from its extension; text types say UTF-8, and a file
/// without an extension (`vendor/VERSIONS`) is plain text.
fn content_type(name: &str) -> String {
    let extension = std::path::Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let known = match extension.as_deref() {
        None | Some("txt" | "md") => "text/plain; charset=utf-8",
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some(_) => "",
    };
    if !known.is_empty() {
        return known.to_owned();
    }
    let guessed = mime_guess::from_path(name).first_or_octet_stream();
    if guessed.type_() == mime_guess::mime::TEXT {
        format!("{}; charset=utf-8", guessed.essence_str())
    } else {
        guessed.essence_str().to_owned()
    }
}

/// Whether an `If-None-Match` list names `etag` (weak comparison, as RFC 9110 asks for it).
fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_names_are_looked_up() {
        assert_eq!(asset_name("/"), Some("index.html"));
        assert_eq!(asset_name("/app.js"), Some("app.js"));
        assert_eq!(
            asset_name("/vendor/preact-10.js"),
            Some("vendor/preact-10.js")
        );
        assert_eq!(asset_name("/i18n/zh-CN.json"), Some("i18n/zh-CN.json"));
        for path in [
            "",
            "app.js",
            "//etc/passwd",
            "/../Cargo.toml",
            "/%2e%2e/Cargo.toml",
            "/vendor/..%2f..%2fCargo.toml",
            "/%2fetc%2fpasswd",
            "/static/../src/main.rs",
            "/vendor/../../Cargo.toml",
            "/./index.html",
            "/.git/config",
            "/vendor/",
            "/vendor//x.js",
            "/a\\..\\Cargo.toml",
            "/index.html\0",
            "/index%00.html",
            "/ind ex.html",
        ] {
            assert_eq!(asset_name(path), None, "{path:?}");
        }
        assert_eq!(asset_name(&format!("/{}", "a".repeat(300))), None);
    }

    #[test]
    fn content_types_follow_the_extension() {
        for (name, expected) in [
            ("index.html", "text/html; charset=utf-8"),
            ("app.js", "text/javascript; charset=utf-8"),
            ("vendor/htm.mjs", "text/javascript; charset=utf-8"),
            ("style.CSS", "text/css; charset=utf-8"),
            ("i18n/en.json", "application/json"),
            ("logo.svg", "image/svg+xml"),
            ("vendor/VERSIONS", "text/plain; charset=utf-8"),
            ("shot.png", "image/png"),
            ("blob.bin", "application/octet-stream"),
        ] {
            assert_eq!(content_type(name), expected, "{name}");
        }
    }

    #[test]
    fn if_none_match_compares_weakly_and_takes_lists() {
        let etag = "\"abc\"";
        assert!(etag_matches("\"abc\"", etag));
        assert!(etag_matches("W/\"abc\"", etag));
        assert!(etag_matches("\"x\", \"abc\"", etag));
        assert!(etag_matches("*", etag));
        assert!(!etag_matches("\"abd\"", etag));
        assert!(!etag_matches("abc", etag));
    }
}
