//! shim until i10-refactor merges: `telephony::spawn_call` / `CallLine` and the shared confirm
//! policy (`telephony::confirm`), with the signatures agreed with engineer A. At merge, delete
//! this file and use `crate::telephony::{spawn_call, CallLine, KeyCheck, WRONG_KEY, NO_KEY}`.

use std::{future::Future, time::SystemTime};

use tokio::sync::mpsc;

use crate::telephony::{
    call_channels, CallCommand, CallEvent, CallHandle, CallOutcome, Confirm, HangupCause,
};

/// What a back end's call body gets: send progress/answer/digits; read the dialer's hang-up.
pub struct CallLine {
    events: mpsc::UnboundedSender<CallEvent>,
    commands: mpsc::UnboundedReceiver<CallCommand>,
}

impl CallLine {
    pub fn progress(&self, early_media: bool) {
        let _ = self.events.send(CallEvent::Progress { early_media });
    }

    pub fn answered(&self, at: SystemTime) {
        let _ = self.events.send(CallEvent::Answered { at });
    }

    pub fn digit(&self, digit: char) {
        let _ = self.events.send(CallEvent::Digit(digit));
    }

    /// Resolves when the dialer asks to hang up; `None` when the dialer dropped its handle
    /// (then it never asks again).
    pub async fn hang_up_requested(&mut self) -> Option<HangupCause> {
        self.commands
            .recv()
            .await
            .map(|CallCommand::HangUp(cause)| cause)
    }
}

/// Spawns the call's body and returns the dialer's handle; the body's outcome is the one and
/// only `Ended` (NORMAL_TEMPORARY_FAILURE when the body panics).
pub fn spawn_call<F, Fut>(body: F) -> CallHandle
where
    F: FnOnce(CallLine) -> Fut,
    Fut: Future<Output = CallOutcome> + Send + 'static,
{
    let (handle, channels) = call_channels();
    let events = channels.events.clone();
    let work = body(CallLine {
        events: channels.events,
        commands: channels.commands,
    });
    tokio::spawn(async move {
        let outcome = match tokio::spawn(work).await {
            Ok(outcome) => outcome,
            Err(error) => {
                tracing::error!(%error, "a call's body failed");
                CallOutcome {
                    cause: HangupCause::NORMAL_TEMPORARY_FAILURE,
                    sip_code: None,
                    answered_at: None,
                    ended_at: SystemTime::now(),
                    recording: None,
                }
            }
        };
        let _ = events.send(CallEvent::Ended(outcome));
    });
    handle
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCheck {
    Incomplete,
    Confirmed,
    Wrong,
}

pub const WRONG_KEY: HangupCause = HangupCause::CALL_REJECTED;
pub const NO_KEY: HangupCause = HangupCause::NO_USER_RESPONSE;

/// Prefix match, key by key.
pub fn check(confirm: &Confirm, pressed: &str) -> KeyCheck {
    if pressed.starts_with(confirm.key.as_str()) {
        KeyCheck::Confirmed
    } else if confirm.key.starts_with(pressed) {
        KeyCheck::Incomplete
    } else {
        KeyCheck::Wrong
    }
}
