//! The states of a task and of a number's call, and the action after answer.

use strum::{EnumString, IntoStaticStr, VariantNames};

/// A task's `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumString, IntoStaticStr, VariantNames)]
#[strum(serialize_all = "lowercase")]
pub enum TaskStatus {
    /// Created, never started.
    Init,
    Running,
    /// Stopped by a user (or because it could not run).
    Stop,
    /// Every number has been called.
    Done,
}

/// A number's `call_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumString, IntoStaticStr, VariantNames)]
#[strum(serialize_all = "lowercase")]
pub enum CallStatus {
    /// Waiting to be dialed.
    Init,
    /// Claimed; its call is alive.
    Calling,
    /// Its call has ended.
    Done,
    /// Its task was stopped before it was dialed.
    Stop,
}

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumString, IntoStaticStr, VariantNames)]
#[strum(serialize_all = "lowercase")]
pub enum Role {
    /// Everything.
    Admin,
    /// Reads only (lists, views, downloads, events), and changing their own password.
    Readonly,
}

/// What a task does once a call is answered (and confirmed). The vendor's API writes it as a
/// string: `""`, `"playback"` or `"transfer"`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, EnumString, IntoStaticStr, VariantNames,
)]
#[strum(serialize_all = "lowercase")]
pub enum Action {
    /// Hang up at once.
    #[default]
    #[strum(serialize = "")]
    None,
    Playback,
    Transfer,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl CallStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl Role {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl Action {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for status in [
            TaskStatus::Init,
            TaskStatus::Running,
            TaskStatus::Stop,
            TaskStatus::Done,
        ] {
            assert_eq!(status.as_str().parse::<TaskStatus>(), Ok(status));
        }
        assert_eq!(TaskStatus::VARIANTS, ["init", "running", "stop", "done"]);
        assert_eq!(CallStatus::Calling.as_str(), "calling");
        assert_eq!("".parse::<Action>(), Ok(Action::None));
        assert_eq!("playback".parse::<Action>(), Ok(Action::Playback));
        assert_eq!(Action::Transfer.as_str(), "transfer");
        assert!("Playback".parse::<Action>().is_err());
        assert!("paused".parse::<TaskStatus>().is_err());
    }
}
