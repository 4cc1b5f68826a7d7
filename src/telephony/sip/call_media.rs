//! The media side of one SIP call, as the call's script needs it: an RTP port for the offer, a
//! session once the answer is in, prompts by path, digits, and the recording at the end.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use std::io::Read;

use tokio::sync::{mpsc, OnceCell};

use super::media::{
    sdp,
    session::{MediaSession, SessionOptions},
    RtpPorts, RtpSocket,
};
use crate::audio::wav;
use crate::telephony::MediaRef;

/// Decoded prompts kept, in samples (32 MiB), so that a campaign reads and converts its prompt
/// once, not per call.
const PROMPT_CACHE_SAMPLES: usize = 16 * 1024 * 1024;
/// The largest prompt file read from the media store. A stored prompt of the longest length
/// allowed (10 minutes of 8 kHz 16-bit) is 9.6 MB.
pub const MAX_PROMPT_FILE_BYTES: u64 = 32 * 1024 * 1024;
/// How much of a file [`MediaKit::check`] reads to see that it is a WAV prompt.
const HEADER_PROBE_BYTES: u64 = 64 * 1024;
/// The one answer for every media reference that does not name a prompt of the store, whatever
/// the reason (outside the store, missing, not a regular file, too large): it must not tell
/// whether some file exists elsewhere.
pub const NOT_IN_STORE: &str = "not a prompt of the media store: upload a WAV to \
     /api/media_files and use the media object it returns (its media_id or media_path)";

/// What every call's media shares: the RTP ports and the decoded prompts.
pub struct MediaKit {
    ports: RtpPorts,
    symmetric_rtp: bool,
    /// `<data-dir>/media`, canonical: every prompt played is a regular file under it.
    media_dir: PathBuf,
    prompts: Mutex<HashMap<PathBuf, Arc<[i16]>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum CallMediaError {
    #[error("{0}")]
    Negotiation(String),
    #[error("{0}")]
    Failed(String),
}

impl MediaKit {
    pub fn new(
        rtp_ports: (u16, u16),
        symmetric_rtp: bool,
        data_dir: &Path,
    ) -> anyhow::Result<Self> {
        let media_dir = crate::telephony::media_dir(data_dir);
        std::fs::create_dir_all(&media_dir)?;
        Ok(MediaKit {
            ports: RtpPorts::new(rtp_ports.0, rtp_ports.1)?,
            symmetric_rtp,
            media_dir: std::fs::canonicalize(&media_dir)?,
            prompts: Mutex::default(),
        })
    }

    /// The file of the media store a task's media reference names: its `media_path` (absolute,
    /// or relative to the store) when it has one, else its `media_id` (an upload, stored as
    /// `<id>.wav`). After symbolic links and `..` are resolved it must be a regular file inside
    /// the store and no larger than [`MAX_PROMPT_FILE_BYTES`]; every other path gets the same
    /// refusal. FreeSWITCH-only references (`phrase:…`, `say:…`, `tone_stream://…`) are refused
    /// with their own explanation. Only looks at file metadata: nothing is opened.
    pub fn resolve(&self, media: &MediaRef) -> Result<PathBuf, String> {
        let path = media.media_path.trim();
        if let Some((scheme, _)) = path.split_once(':') {
            if scheme.len() > 1 && !scheme.contains('/') {
                return Err(format!(
                    "{path:?} is a FreeSWITCH media reference, which the sip back end cannot play: \
                     upload a WAV to /api/media_files and use its media_path"
                ));
            }
        }
        let candidate = if path.is_empty() {
            let Some(id) = media.upload_id() else {
                return Err(match media.media_id {
                    None => "no media: give the media object of an upload".into(),
                    Some(_) => NOT_IN_STORE.to_owned(),
                });
            };
            self.media_dir.join(crate::telephony::upload_file_name(id))
        } else {
            self.media_dir.join(path)
        };
        let refused = || NOT_IN_STORE.to_owned();
        let canonical = std::fs::canonicalize(&candidate).map_err(|_| refused())?;
        if !canonical.starts_with(&self.media_dir) {
            return Err(refused());
        }
        let metadata = std::fs::metadata(&canonical).map_err(|_| refused())?;
        if !metadata.is_file() || metadata.len() > MAX_PROMPT_FILE_BYTES {
            return Err(refused());
        }
        Ok(canonical)
    }

    /// Whether the reference names a playable prompt: a file of the store that begins as a WAV
    /// file we can read. Reads at most the file's first 64 KiB, so it may run anywhere.
    pub fn check(&self, media: &MediaRef) -> Result<(), String> {
        let path = self.resolve(media)?;
        if self.cache().contains_key(&path) {
            // Decoded already: its header was read then.
            return Ok(());
        }
        let mut prefix = Vec::new();
        open_regular(&path)
            .and_then(|file| file.take(HEADER_PROBE_BYTES).read_to_end(&mut prefix))
            .map_err(|_| NOT_IN_STORE.to_owned())?;
        wav::check_header(&prefix).map_err(|e| e.to_string())
    }

    /// The prompt's samples (8 kHz mono), read and converted once. Blocking: call it off the
    /// async workers (see [`MediaKit::load`]).
    pub fn prompt(&self, media: &MediaRef) -> Result<Arc<[i16]>, String> {
        let path = self.resolve(media)?;
        if let Some(samples) = self.cache().get(&path) {
            return Ok(samples.clone());
        }
        let mut bytes = Vec::new();
        open_regular(&path)
            .and_then(|file| file.take(MAX_PROMPT_FILE_BYTES).read_to_end(&mut bytes))
            .map_err(|_| NOT_IN_STORE.to_owned())?;
        let samples: Arc<[i16]> = wav::prompt_from_wav(&bytes)
            .map_err(|e| e.to_string())?
            .into();
        let mut cache = self.cache();
        let held: usize = cache.values().map(|prompt| prompt.len()).sum();
        if held + samples.len() > PROMPT_CACHE_SAMPLES {
            cache.clear();
        }
        if samples.len() <= PROMPT_CACHE_SAMPLES {
            cache.insert(path, samples.clone());
        }
        Ok(samples)
    }

    /// [`MediaKit::prompt`] on a blocking thread.
    pub async fn load(self: &Arc<Self>, media: &MediaRef) -> Result<Arc<[i16]>, String> {
        let kit = self.clone();
        let media = media.clone();
        tokio::task::spawn_blocking(move || kit.prompt(&media))
            .await
            .map_err(|e| format!("reading the prompt failed: {e}"))?
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Arc<[i16]>>> {
        self.prompts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Opens a file known to be regular without following a last symbolic link and without blocking
/// should it have been replaced by a FIFO, and checks again that what was opened is regular.
fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK does not change reads of a regular file.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(file)
}

/// One call's media: its RTP socket from the offer on, its session once answered.
pub struct CallMedia {
    kit: Arc<MediaKit>,
    local: SocketAddr,
    socket: Mutex<Option<RtpSocket>>,
    session: OnceCell<MediaSession>,
    digits: Mutex<Option<mpsc::Receiver<char>>>,
}

impl CallMedia {
    /// Takes an RTP port on `ip` for the offer.
    pub async fn open(kit: Arc<MediaKit>, ip: IpAddr) -> Result<Self, CallMediaError> {
        let socket = kit
            .ports
            .bind(ip)
            .await
            .map_err(|e| CallMediaError::Failed(e.to_string()))?;
        let local = socket
            .local_addr()
            .map_err(|e| CallMediaError::Failed(e.to_string()))?;
        Ok(CallMedia {
            kit,
            local,
            socket: Mutex::new(Some(socket)),
            session: OnceCell::new(),
            digits: Mutex::new(None),
        })
    }

    pub fn sdp_offer(&self) -> Vec<u8> {
        sdp::offer(self.local, rand::random::<u32>() as u64, 1).into_bytes()
    }

    /// Starts the session towards the answer's media, recording to `recording` if asked.
    pub async fn start(
        &self,
        answer_sdp: &[u8],
        recording: Option<PathBuf>,
    ) -> Result<(), CallMediaError> {
        let remote = sdp::parse_answer(answer_sdp)
            .map_err(|e| CallMediaError::Negotiation(e.to_string()))?;
        let socket = self
            .socket
            .lock()
            .expect("socket lock")
            .take()
            .ok_or_else(|| CallMediaError::Failed("the media session was started twice".into()))?;
        let (session, digits) = MediaSession::start(
            socket,
            remote,
            SessionOptions {
                recording,
                symmetric_rtp: self.kit.symmetric_rtp,
            },
        )
        .await
        .map_err(|e| CallMediaError::Failed(e.to_string()))?;
        *self.digits.lock().expect("digits lock") = Some(digits);
        let _ = self.session.set(session);
        Ok(())
    }

    /// The keys the callee presses; taken once (later calls get a receiver that stays empty).
    pub fn digits(&self) -> mpsc::Receiver<char> {
        self.digits
            .lock()
            .expect("digits lock")
            .take()
            .unwrap_or_else(|| mpsc::channel(1).1)
    }

    /// Plays a prompt to the end; a prompt that cannot be played is logged and skipped, so the
    /// call goes on as if it had been played.
    pub async fn play(&self, media: &MediaRef) {
        let Some(session) = self.session.get() else {
            return;
        };
        match self.kit.load(media).await {
            Ok(samples) => {
                if let Err(error) = session.play(samples).await {
                    tracing::debug!(%error, "prompt stopped");
                }
            }
            Err(error) => tracing::error!(%error, "cannot play a prompt"),
        }
    }

    /// A re-INVITE's new media description.
    pub fn update_remote(&self, offer_sdp: &[u8]) {
        if let (Some(session), Ok(remote)) = (self.session.get(), sdp::parse_answer(offer_sdp)) {
            session.update_remote(remote);
        }
    }

    /// Stops the media; answers the finished recording's path, if any.
    pub async fn close(&self) -> Option<PathBuf> {
        let session = self.session.get()?;
        match session.close().await {
            Ok(path) => path,
            Err(error) => {
                tracing::error!(%error, "the recording could not be finished");
                None
            }
        }
    }
}
