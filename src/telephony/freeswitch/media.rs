//! Which prompts the freeswitch back end lets a task play, and the text FreeSWITCH gets for each.
//!
//! - FreeSWITCH's own generated or indexed media pass through as written: `tone_stream://…`,
//!   `silence_stream://…`, `phrase:…`, `say:…` (the vendor's `SYSTEM` media objects are
//!   `phrase:` references). Any other `scheme:` is refused.
//! - An upload (`media_id`) or a path relative to the media store plays the store's file
//!   (`<data-dir>/media/…`), which must be a regular file inside the store.
//! - An absolute path (e.g. the switch's own sound files) must be a regular, readable `.wav`
//!   file: FreeSWITCH runs on this box and reads it itself.
//!
//! FreeSWITCH reads those files with its own user's rights: the data directory is outcall's
//! (mode 0700), so the switch must run as the same user, or as root.

use std::path::{Path, PathBuf};

use crate::telephony::MediaRef;

/// FreeSWITCH media references passed through as written.
pub const PASSED_THROUGH: [&str; 4] = ["tone_stream://", "silence_stream://", "phrase:", "say:"];

const NOT_IN_STORE: &str = "not a prompt of the media store: upload a WAV to /api/media_files \
     and use the media object it returns (its media_id or media_path)";

#[derive(Debug, Clone)]
pub struct MediaPaths {
    /// `<data-dir>/media`, canonical.
    media_dir: PathBuf,
}

impl MediaPaths {
    pub fn new(data_dir: &Path) -> std::io::Result<Self> {
        let media_dir = crate::telephony::media_dir(data_dir);
        std::fs::create_dir_all(&media_dir)?;
        Ok(MediaPaths {
            media_dir: std::fs::canonicalize(&media_dir)?,
        })
    }

    /// What FreeSWITCH is given to play for this reference, or why it cannot be played.
    pub fn playable(&self, media: &MediaRef) -> Result<String, String> {
        let path = media.media_path.trim();
        if PASSED_THROUGH.iter().any(|prefix| path.starts_with(prefix)) {
            return Ok(path.to_owned());
        }
        if let Some((scheme, _)) = path.split_once(':') {
            if scheme.len() > 1 && !scheme.contains('/') {
                return Err(format!(
                    "{path:?} is a media reference the freeswitch back end does not pass on (it \
                     passes {}): upload a WAV to /api/media_files, or give an absolute path",
                    PASSED_THROUGH.join(", ")
                ));
            }
        }
        if Path::new(path).is_absolute() {
            return readable_wav(Path::new(path));
        }
        let candidate = if path.is_empty() {
            match media.upload_id() {
                Some(id) => self.media_dir.join(crate::telephony::upload_file_name(id)),
                None if media.media_id.is_none() => {
                    return Err("no media: give the media object of an upload".into())
                }
                None => return Err(NOT_IN_STORE.into()),
            }
        } else {
            self.media_dir.join(path)
        };
        let canonical = std::fs::canonicalize(&candidate).map_err(|_| NOT_IN_STORE.to_owned())?;
        if !canonical.starts_with(&self.media_dir) || !canonical.is_file() {
            return Err(NOT_IN_STORE.into());
        }
        canonical
            .to_str()
            .map(str::to_owned)
            .ok_or_else(|| NOT_IN_STORE.to_owned())
    }
}

fn readable_wav(path: &Path) -> Result<String, String> {
    let shown = path.display();
    let is_wav = path
        .extension()
        .and_then(|extension| extension.to_str())
        .is_some_and(|extension| extension.eq_ignore_ascii_case("wav"));
    if !is_wav {
        return Err(format!("{shown} is not a .wav file"));
    }
    let metadata =
        std::fs::metadata(path).map_err(|error| format!("{shown} cannot be read: {error}"))?;
    if !metadata.is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    std::fs::File::open(path).map_err(|error| format!("{shown} cannot be read: {error}"))?;
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("{shown} is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(text: &str) -> MediaRef {
        MediaRef::parse(text).unwrap()
    }

    #[test]
    fn uploads_store_paths_absolute_wavs_and_freeswitch_references() {
        let data = tempfile::tempdir().unwrap();
        let paths = MediaPaths::new(data.path()).unwrap();
        let store = std::fs::canonicalize(data.path().join("media")).unwrap();
        std::fs::write(store.join("3.wav"), b"RIFF").unwrap();
        let upload = store.join("3.wav").display().to_string();
        assert_eq!(
            paths.playable(&reference(r#"{"media_id":3}"#)),
            Ok(upload.clone())
        );
        assert_eq!(
            paths.playable(&reference(r#"{"media_id":"3"}"#)),
            Ok(upload.clone())
        );
        assert_eq!(paths.playable(&reference("3.wav")), Ok(upload.clone()));
        assert_eq!(paths.playable(&reference(&upload)), Ok(upload.clone()));
        for passed in [
            "tone_stream://%(1000,0,440)",
            "silence_stream://500",
            "phrase:welcome_short@xui",
            "say:en number pronounced 7",
        ] {
            assert_eq!(paths.playable(&reference(passed)), Ok(passed.to_owned()));
        }
        let vendor = r#"{"media_id":205,"media_path":"phrase:welcome_short@xui","media_type":"SYSTEM","media_name":"welcome_short"}"#;
        assert_eq!(
            paths.playable(&reference(vendor)),
            Ok("phrase:welcome_short@xui".to_owned())
        );
    }

    #[test]
    fn what_the_switch_could_not_play_is_refused() {
        let data = tempfile::tempdir().unwrap();
        let paths = MediaPaths::new(data.path()).unwrap();
        let outside = data.path().join("elsewhere.wav");
        std::fs::write(&outside, b"RIFF").unwrap();
        for refused in [
            r#"{"media_id":99}"#.to_owned(),
            "99.wav".into(),
            "../elsewhere.wav".into(),
            "http://example.com/a.wav".into(),
            "shout://x".into(),
            "/nonexistent/a.wav".into(),
            "/etc/passwd".into(),
            data.path().display().to_string(),
        ] {
            assert!(
                paths.playable(&reference(&refused)).is_err(),
                "{refused} accepted"
            );
        }
        assert!(paths
            .playable(&reference(outside.to_str().unwrap()))
            .is_ok());
    }
}
