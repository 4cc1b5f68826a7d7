//! Telephony back ends: what places the calls. The dialer drives them through [`Telephony`] and
//! knows nothing of SIP, sockets or simulated callees.

mod confirm;
pub mod esl;
pub mod freeswitch;
pub mod sim;
pub mod sip;

use std::{
    future::Future,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use serde::Deserialize;
use tokio::sync::mpsc;

pub use crate::domain::HangupCause;
pub use confirm::{Confirm, KeyCheck, NO_KEY, WRONG_KEY};

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

#[cfg(test)]
impl CallSettings {
    /// The unit tests' settings: task 1, `context` as source and destination context, a 30 s ring
    /// timeout, no confirm key, hang up once answered, no recording.
    pub(crate) fn for_test(context: &str) -> CallSettings {
        CallSettings {
            task_id: 1,
            context: context.into(),
            dest_context: context.into(),
            cid_number: String::new(),
            cid_name: String::new(),
            calling_time: Duration::from_secs(30),
            confirm: None,
            action: AfterAnswer::Hangup,
            auto_record: false,
            disable_ring_back: false,
        }
    }
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

/// What a back end's call body gets: it reports progress, the answer and keys, and hears the
/// dialer's hang-up. The call's one [`CallEvent::Ended`] is not sent from here: [`spawn_call`]
/// sends it with what the body returns.
pub struct CallLine {
    shared: Arc<Mutex<LineState>>,
    commands: mpsc::UnboundedReceiver<CallCommand>,
}

/// What the body and [`spawn_call`]'s own task share of a call.
struct LineState {
    /// `None` once `Ended` is sent: nothing may follow it.
    events: Option<mpsc::UnboundedSender<CallEvent>>,
    /// For the `Ended` of a body that panicked after the answer.
    answered_at: Option<SystemTime>,
}

impl CallLine {
    /// The far end is ringing (180), or sends early media (183).
    pub fn progress(&self, early_media: bool) {
        self.send(CallEvent::Progress { early_media });
    }

    pub fn answered(&self, at: SystemTime) {
        self.state().answered_at = Some(at);
        self.send(CallEvent::Answered { at });
    }

    /// A key the callee pressed.
    pub fn digit(&self, digit: char) {
        self.send(CallEvent::Digit(digit));
    }

    /// Resolves with the cause when the dialer asks to hang up. `None` once the dialer has
    /// dropped every handle to the call: nobody will hang up, the call runs its course, and every
    /// later call returns `None` at once (in a `select!`, match `Some(cause)` so the branch is
    /// then disabled).
    pub async fn hang_up_requested(&mut self) -> Option<HangupCause> {
        let CallCommand::HangUp(cause) = self.commands.recv().await?;
        Some(cause)
    }

    fn send(&self, event: CallEvent) {
        if let Some(events) = &self.state().events {
            // The dialer may have dropped its handle: nobody listens, the call goes on.
            let _ = events.send(event);
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LineState> {
        lock(&self.shared)
    }
}

/// The line's state, also after a body panicked while holding the lock (it holds it only to send).
fn lock(shared: &Mutex<LineState>) -> std::sync::MutexGuard<'_, LineState> {
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Spawns the call's body on the current tokio runtime and returns the dialer's handle. The body
/// runs in a task of its own; what it returns is sent as the one and only [`CallEvent::Ended`],
/// and when it panics the call ends with `NORMAL_TEMPORARY_FAILURE`. No event is ever sent after
/// `Ended`, not even by a task the body left behind holding its [`CallLine`].
pub fn spawn_call<F, Fut>(body: F) -> CallHandle
where
    F: FnOnce(CallLine) -> Fut,
    Fut: Future<Output = CallOutcome> + Send + 'static,
{
    let (event_sender, event_receiver) = mpsc::unbounded_channel();
    let (command_sender, command_receiver) = mpsc::unbounded_channel();
    let shared = Arc::new(Mutex::new(LineState {
        events: Some(event_sender),
        answered_at: None,
    }));
    let line = CallLine {
        shared: shared.clone(),
        commands: command_receiver,
    };
    let call = tokio::spawn(body(line));
    tokio::spawn(async move {
        let outcome = call.await;
        let mut state = lock(&shared);
        let outcome = outcome.unwrap_or_else(|error| {
            if error.is_panic() {
                tracing::error!(%error, "a call's task panicked");
            } else {
                tracing::debug!(%error, "a call's task was cancelled");
            }
            CallOutcome {
                cause: HangupCause::NORMAL_TEMPORARY_FAILURE,
                sip_code: None,
                answered_at: state.answered_at,
                ended_at: SystemTime::now(),
                recording: None,
            }
        });
        if let Some(events) = state.events.take() {
            let _ = events.send(CallEvent::Ended(outcome));
        }
    });
    CallHandle {
        events: event_receiver,
        control: CallControl(command_sender),
    }
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
    /// the handle's events (a back end runs its call with [`spawn_call`], which keeps that
    /// promise). Must not block.
    fn place_call(&self, request: CallRequest) -> CallHandle;
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_secs(10);

    fn outcome(cause: HangupCause, answered_at: Option<SystemTime>) -> CallOutcome {
        CallOutcome {
            cause,
            sip_code: Some(200),
            answered_at,
            ended_at: SystemTime::now(),
            recording: None,
        }
    }

    /// The next event, or `None` once the channel is closed.
    async fn next(handle: &mut CallHandle) -> Option<CallEvent> {
        tokio::time::timeout(BOUND, handle.events.recv())
            .await
            .expect("an event or the end of the channel in time")
    }

    #[tokio::test]
    async fn a_call_ends_once_with_what_its_body_returns() {
        let mut handle = spawn_call(|_line| async { outcome(HangupCause::USER_BUSY, None) });
        let Some(CallEvent::Ended(ended)) = next(&mut handle).await else {
            panic!("Ended first");
        };
        assert_eq!(ended.cause, HangupCause::USER_BUSY);
        assert_eq!(ended.sip_code, Some(200));
        assert_eq!(next(&mut handle).await, None, "nothing after Ended");
    }

    #[tokio::test]
    async fn events_arrive_in_order_before_ended() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut handle = spawn_call(move |line| async move {
            line.progress(false);
            line.progress(true);
            line.answered(at);
            line.digit('1');
            line.digit('#');
            outcome(HangupCause::NORMAL_CLEARING, Some(at))
        });
        let mut seen = Vec::new();
        while let Some(event) = next(&mut handle).await {
            seen.push(event);
        }
        let ended = outcome(HangupCause::NORMAL_CLEARING, Some(at));
        let CallEvent::Ended(got) = seen.last().expect("events").clone() else {
            panic!("Ended last: {seen:?}");
        };
        assert_eq!(
            (got.cause, got.answered_at),
            (ended.cause, ended.answered_at)
        );
        assert_eq!(
            seen[..seen.len() - 1],
            [
                CallEvent::Progress { early_media: false },
                CallEvent::Progress { early_media: true },
                CallEvent::Answered { at },
                CallEvent::Digit('1'),
                CallEvent::Digit('#'),
            ]
        );
    }

    #[tokio::test]
    async fn a_panicking_body_still_ends_the_call() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut handle = spawn_call(move |line| async move {
            line.answered(at);
            if at > SystemTime::UNIX_EPOCH {
                panic!("a bug in a back end");
            }
            outcome(HangupCause::NORMAL_CLEARING, Some(at))
        });
        assert_eq!(next(&mut handle).await, Some(CallEvent::Answered { at }));
        let Some(CallEvent::Ended(ended)) = next(&mut handle).await else {
            panic!("Ended after the panic");
        };
        assert_eq!(ended.cause, HangupCause::NORMAL_TEMPORARY_FAILURE);
        assert_eq!(ended.sip_code, None);
        assert_eq!(ended.answered_at, Some(at), "the answer is not forgotten");
        assert_eq!(next(&mut handle).await, None);
    }

    #[tokio::test]
    async fn the_dialers_hang_up_reaches_the_body() {
        let mut handle = spawn_call(|mut line| async move {
            line.progress(false);
            let cause = line.hang_up_requested().await.expect("a hang-up");
            outcome(cause, None)
        });
        assert_eq!(
            next(&mut handle).await,
            Some(CallEvent::Progress { early_media: false })
        );
        handle.control.hang_up(HangupCause::ORIGINATOR_CANCEL);
        let Some(CallEvent::Ended(ended)) = next(&mut handle).await else {
            panic!("Ended after the hang-up");
        };
        assert_eq!(ended.cause, HangupCause::ORIGINATOR_CANCEL);
    }

    #[tokio::test]
    async fn a_dropped_handle_means_nobody_hangs_up() {
        let (heard, hearing) = tokio::sync::oneshot::channel();
        let handle = spawn_call(|mut line| async move {
            let first = line.hang_up_requested().await;
            let second = line.hang_up_requested().await;
            let _ = heard.send((first, second));
            outcome(HangupCause::NORMAL_CLEARING, None)
        });
        drop(handle);
        let heard = tokio::time::timeout(BOUND, hearing).await.expect("in time");
        assert_eq!(heard.expect("the body ran"), (None, None));
    }

    #[tokio::test]
    async fn no_event_follows_ended_even_from_a_task_left_behind() {
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let (sent, sending) = tokio::sync::oneshot::channel();
        let mut handle = spawn_call(|line| async move {
            tokio::spawn(async move {
                let _ = wait.await;
                line.digit('5');
                line.progress(false);
                let _ = sent.send(());
            });
            outcome(HangupCause::NORMAL_CLEARING, None)
        });
        assert!(matches!(next(&mut handle).await, Some(CallEvent::Ended(_))));
        go.send(()).expect("the leftover task waits");
        tokio::time::timeout(BOUND, sending)
            .await
            .expect("in time")
            .expect("the leftover task sent");
        assert_eq!(next(&mut handle).await, None);
    }

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
