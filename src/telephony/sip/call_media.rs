//! The media side of one SIP call, as the call's script needs it: an RTP port for the offer, a
//! session once the answer is in, prompts by path, digits, and the recording at the end.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use tokio::sync::{mpsc, OnceCell};

use super::media::{
    sdp,
    session::{MediaSession, SessionOptions},
    wav, RtpPorts, RtpSocket,
};

/// Prompts kept decoded, so that a campaign reads and converts its prompt once, not per call.
const PROMPT_CACHE: usize = 64;

/// What every call's media shares: the RTP ports and the decoded prompts.
pub struct MediaKit {
    ports: RtpPorts,
    media_dir: PathBuf,
    prompts: Mutex<HashMap<PathBuf, Arc<Vec<i16>>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum CallMediaError {
    #[error("{0}")]
    Negotiation(String),
    #[error("{0}")]
    Failed(String),
}

impl MediaKit {
    pub fn new(rtp_ports: (u16, u16), data_dir: &Path) -> anyhow::Result<Self> {
        Ok(MediaKit {
            ports: RtpPorts::new(rtp_ports.0, rtp_ports.1)?,
            media_dir: data_dir.join("media"),
            prompts: Mutex::default(),
        })
    }

    /// Where a task's `media_path` is on disk: as given when absolute, else under the media
    /// directory. FreeSWITCH-only references (`phrase:…`, `say:…`, `tone_stream://…`) have no file.
    pub fn resolve(&self, media_path: &str) -> Result<PathBuf, String> {
        let path = media_path.trim();
        if path.is_empty() {
            return Err("no media path".into());
        }
        if let Some((scheme, _)) = path.split_once(':') {
            if scheme.len() > 1 && !scheme.contains('/') {
                return Err(format!(
                    "{path:?} is a FreeSWITCH media reference, which the sip back end cannot play: \
                     upload a WAV to /api/media_files and use its media_path"
                ));
            }
        }
        let path = Path::new(path);
        Ok(if path.is_absolute() {
            path.to_owned()
        } else {
            self.media_dir.join(path)
        })
    }

    /// The prompt's samples (8 kHz mono), read and converted once.
    pub fn prompt(&self, media_path: &str) -> Result<Arc<Vec<i16>>, String> {
        let path = self.resolve(media_path)?;
        if let Some(samples) = self.prompts.lock().expect("prompt cache lock").get(&path) {
            return Ok(samples.clone());
        }
        let bytes =
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let samples =
            Arc::new(wav::prompt_from_wav(&bytes).map_err(|e| format!("{}: {e}", path.display()))?);
        let mut cache = self.prompts.lock().expect("prompt cache lock");
        if cache.len() >= PROMPT_CACHE {
            cache.clear();
        }
        cache.insert(path, samples.clone());
        Ok(samples)
    }
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
        let (session, digits) = MediaSession::start(socket, remote, SessionOptions {
                recording,
                ..SessionOptions::default()
            })
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
    pub async fn play(&self, media_path: &str) {
        let Some(session) = self.session.get() else {
            return;
        };
        match self.kit.prompt(media_path) {
            Ok(samples) => {
                if let Err(error) = session.play(&samples).await {
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
