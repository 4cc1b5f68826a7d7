//! The confirm step every back end runs after the answer: the callee presses the task's key
//! (`group_confirm_key`) within its timeout, or the call ends. Keys are matched as they come, so
//! the first wrong key ends the call at once.

use std::time::Duration;

use super::{HangupCause, MediaRef};

/// After answer, ask the callee to press `key` before the action runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirm {
    pub key: String,
    pub timeout: Duration,
    pub prompt: Option<MediaRef>,
}

/// Where the keys pressed so far leave the confirm step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCheck {
    /// A prefix of the key: wait for the next one.
    Incomplete,
    /// The whole key: the action runs.
    Confirmed,
    /// Not the key: hang up with [`WRONG_KEY`].
    Wrong,
}

/// The cause of a call whose callee pressed a wrong key.
pub const WRONG_KEY: HangupCause = HangupCause::CALL_REJECTED;
/// The cause of a call whose callee did not press the whole key in time.
pub const NO_KEY: HangupCause = HangupCause::NO_USER_RESPONSE;

impl Confirm {
    /// Checks the keys pressed so far, in order, against the key.
    pub fn check(&self, pressed: &str) -> KeyCheck {
        if !self.key.starts_with(pressed) {
            KeyCheck::Wrong
        } else if pressed.len() == self.key.len() {
            KeyCheck::Confirmed
        } else {
            KeyCheck::Incomplete
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confirm(key: &str) -> Confirm {
        Confirm {
            key: key.to_owned(),
            timeout: Duration::from_secs(5),
            prompt: None,
        }
    }

    #[test]
    fn keys_are_matched_as_they_come() {
        use KeyCheck::*;
        for (key, pressed, check) in [
            ("1", "", Incomplete),
            ("1", "1", Confirmed),
            ("1", "2", Wrong),
            ("1", "11", Wrong),
            ("1#", "1", Incomplete),
            ("1#", "1#", Confirmed),
            ("1#", "#", Wrong),
            ("1#", "12", Wrong),
            ("*90", "*9", Incomplete),
            ("*90", "*90", Confirmed),
            ("*90", "*91", Wrong),
        ] {
            assert_eq!(
                confirm(key).check(pressed),
                check,
                "{key:?} after {pressed:?}"
            );
        }
    }
}
