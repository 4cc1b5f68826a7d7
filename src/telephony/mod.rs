//! Telephony back ends: what places the calls. The dialer drives them through [`Telephony`] and
//! knows nothing of SIP, sockets or simulated callees.

pub mod esl;
pub mod freeswitch;
pub mod sim;
pub mod sip;

use std::{path::PathBuf, sync::Arc, time::Duration, time::SystemTime};

use serde::Deserialize;
use tokio::sync::mpsc;

pub use crate::domain::HangupCause;

/// A prompt as tasks reference it: XSwitch's media object in a JSON string, or a bare path.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MediaRef {
    #[serde(default)]
    pub media_id: Option<serde_json::Value>,
    /// Empty in an object that names an upload by its `media_id` alone.
    #[serde(default)]
    pub media_path: String,
    #[serde(default)]
    pub media_type: String,
    #[serde(default)]
    pub media_name: String,
}

impl MediaRef {
    /// `None` for an empty reference.
    pub fn parse(text: &str) -> Option<MediaRef> {
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        serde_json::from_str(text).ok().or_else(|| {
            Some(MediaRef {
                media_id: None,
                media_path: text.to_owned(),
                media_type: String::new(),
                media_name: String::new(),
            })
        })
    }
}

/// The media store: uploaded prompts live in `<data-dir>/media`, an upload as `<id>.wav`.
pub fn media_dir(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("media")
}

/// Call recordings (`auto_record`) are written to `<data-dir>/recordings/<uuid>.wav`.
pub fn recordings_dir(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("recordings")
}

pub fn upload_file_name(media_id: u64) -> String {
    format!("{media_id}.wav")
}

impl MediaRef {
    /// The upload a reference names by its `media_id` (a number or a numeric string).
    pub fn upload_id(&self) -> Option<u64> {
        match &self.media_id {
            Some(serde_json::Value::Number(number)) => number.as_u64(),
            Some(serde_json::Value::String(text)) => text.trim().parse::<u64>().ok(),
            _ => None,
        }
    }
}

/// After answer, ask the callee to press `key` before the action runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirm {
    pub key: String,
    pub timeout: Duration,
    pub prompt: Option<MediaRef>,
}

/// What happens once the call is answered (and confirmed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterAnswer {
    Hangup,
    Playback(MediaRef),
    /// Transfer to this extension in the call's `dest_context`.
    Transfer(String),
}

/// The settings of a task that every call of it shares.
#[derive(Debug, Clone, PartialEq)]
pub struct CallSettings {
    pub task_id: i64,
    /// The task's source context (`context-1` by default); the freeswitch dial string may use it.
    pub context: String,
    pub dest_context: String,
    pub cid_number: String,
    pub cid_name: String,
    /// Ring timeout.
    pub calling_time: Duration,
    pub confirm: Option<Confirm>,
    pub action: AfterAnswer,
    pub auto_record: bool,
    pub disable_ring_back: bool,
}

/// Default wait for the confirm key when the task sets none (FreeSWITCH's default, 5 s).
pub const DEFAULT_CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

/// One call to place.
#[derive(Debug, Clone)]
pub struct CallRequest {
    /// Our id for the call, chosen (and stored on the number) before the call is placed.
    pub uuid: String,
    pub number_id: i64,
    pub dest_number: String,
    pub settings: Arc<CallSettings>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CallEvent {
    /// The far end is ringing (180) or sends early media (183).
    Progress {
        early_media: bool,
    },
    Answered {
        at: SystemTime,
    },
    /// A key the callee pressed.
    Digit(char),
    /// The call is over; always the last event, sent exactly once.
    Ended(CallOutcome),
}

#[derive(Debug, Clone, PartialEq)]
pub struct CallOutcome {
    pub cause: HangupCause,
    /// The SIP final response code behind the cause, when there was one.
    pub sip_code: Option<u16>,
    pub answered_at: Option<SystemTime>,
    pub ended_at: SystemTime,
    /// Where the call's audio was recorded, when it was.
    pub recording: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CallCommand {
    HangUp(HangupCause),
}

/// A placed call: its events, and a way to end it.
pub struct CallHandle {
    pub events: mpsc::UnboundedReceiver<CallEvent>,
    pub control: CallControl,
}

#[derive(Clone)]
pub struct CallControl(mpsc::UnboundedSender<CallCommand>);

impl CallControl {
    pub fn hang_up(&self, cause: HangupCause) {
        // A call that already ended has dropped its receiver: nothing to hang up.
        let _ = self.0.send(CallCommand::HangUp(cause));
    }
}

/// The two ends of a call's channels, for a back end to keep.
pub struct CallChannels {
    pub events: mpsc::UnboundedSender<CallEvent>,
    pub commands: mpsc::UnboundedReceiver<CallCommand>,
}

/// Makes a connected handle (for the dialer) and channels (for the back end).
pub fn call_channels() -> (CallHandle, CallChannels) {
    let (event_sender, event_receiver) = mpsc::unbounded_channel();
    let (command_sender, command_receiver) = mpsc::unbounded_channel();
    (
        CallHandle {
            events: event_receiver,
            control: CallControl(command_sender),
        },
        CallChannels {
            events: event_sender,
            commands: command_receiver,
        },
    )
}

/// A back end's own view of whether it can place calls, for `/healthz`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BackendHealth {
    pub healthy: bool,
    /// What is wrong, or what state it is in.
    pub detail: String,
    /// freeswitch: the switch's own `sessions-per-second`, when it is lower than `--max-caps`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub switch_max_sps: Option<u32>,
}

impl BackendHealth {
    pub fn ready() -> Self {
        BackendHealth {
            healthy: true,
            detail: "ready".into(),
            switch_max_sps: None,
        }
    }
}

pub trait Telephony: Send + Sync + 'static {
    fn name(&self) -> &'static str;

    /// Whether the back end can place calls now (e.g. its trunk registration holds).
    fn health(&self) -> BackendHealth {
        BackendHealth::ready()
    }

    /// Whether the dialer may start a call now; while false it claims no number and waits
    /// (the freeswitch back end while its event socket is down).
    fn ready_to_dial(&self) -> bool {
        true
    }

    /// Refuses, before any call, a task this back end cannot run (e.g. media it cannot play).
    fn check_task(&self, _settings: &CallSettings) -> Result<(), String> {
        Ok(())
    }

    /// Starts a call and returns at once; progress and one final [`CallEvent::Ended`] arrive on
    /// the handle's events. Must not block.
    fn place_call(&self, request: CallRequest) -> CallHandle;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_references() {
        let vendor = r#"{"media_id":205,"media_path":"phrase:welcome_short@xui","media_type":"SYSTEM","media_name":"welcome_short"}"#;
        let media = MediaRef::parse(vendor).unwrap();
        assert_eq!(media.media_path, "phrase:welcome_short@xui");
        assert_eq!(media.media_name, "welcome_short");
        assert_eq!(
            MediaRef::parse("/var/prompts/hello.wav")
                .unwrap()
                .media_path,
            "/var/prompts/hello.wav"
        );
        assert_eq!(MediaRef::parse("  "), None);
    }
}
