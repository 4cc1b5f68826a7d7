//! The confirm step every back end runs after the answer: the callee presses the task's key
//! (`group_confirm_key`) within its timeout, or the call ends. Keys are matched as they come, so
//! the first wrong key ends the call at once.

use std::time::Duration;

use tokio::sync::mpsc;

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

    /// The confirm step once its prompt has played: reads keys as they come, within the timeout
    /// from now. `Ok` for the whole key; else the cause to hang up with, [`WRONG_KEY`] at the
    /// first wrong key or [`NO_KEY`] at the timeout (a closed channel brings no more keys).
    pub async fn read_key(
        &self,
        keys: &mut mpsc::UnboundedReceiver<char>,
    ) -> Result<(), HangupCause> {
        let timeout = tokio::time::sleep(self.timeout);
        tokio::pin!(timeout);
        let mut pressed = String::new();
        loop {
            match self.check(&pressed) {
                KeyCheck::Confirmed => return Ok(()),
                KeyCheck::Wrong => return Err(WRONG_KEY),
                KeyCheck::Incomplete => {}
            }
            tokio::select! {
                Some(key) = keys.recv() => pressed.push(key),
                _ = &mut timeout => return Err(NO_KEY),
            }
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

    /// The keys, then the channel left open (`open`) or closed.
    fn keys(
        pressed: &str,
        open: bool,
    ) -> (mpsc::UnboundedSender<char>, mpsc::UnboundedReceiver<char>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        pressed.chars().for_each(|key| sender.send(key).unwrap());
        if open {
            (sender, receiver)
        } else {
            (mpsc::unbounded_channel().0, receiver)
        }
    }

    #[tokio::test]
    async fn the_step_ends_at_the_whole_key_or_the_first_wrong_one() {
        for (key, pressed, result) in [
            ("1", "1", Ok(())),
            ("1#", "1#", Ok(())),
            ("1#", "1#5", Ok(())),
            ("1", "2", Err(WRONG_KEY)),
            ("1#", "#1", Err(WRONG_KEY)),
            ("*90", "*91", Err(WRONG_KEY)),
        ] {
            // The channel stays open and the timeout is long: only the keys can end the step.
            let (_sender, mut receiver) = keys(pressed, true);
            let confirm = confirm(key);
            let read =
                tokio::time::timeout(Duration::from_secs(4), confirm.read_key(&mut receiver));
            assert_eq!(read.await, Ok(result), "{key:?} after {pressed:?}");
        }
    }

    #[tokio::test]
    async fn a_missing_key_times_out() {
        let short = Confirm {
            timeout: Duration::from_millis(50),
            ..confirm("1#")
        };
        for (pressed, open) in [("", true), ("1", true), ("1", false), ("", false)] {
            let (_sender, mut receiver) = keys(pressed, open);
            let started = std::time::Instant::now();
            assert_eq!(
                short.read_key(&mut receiver).await,
                Err(NO_KEY),
                "{pressed:?}"
            );
            assert!(started.elapsed() >= short.timeout, "not before the timeout");
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
