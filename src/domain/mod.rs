//! The typed domain: the states, actions, causes and range-checked values that cross between the
//! API, the database and the dialer. A value of these types has been checked; the layers on either
//! side only convert to and from them.

mod campaign;
mod cause;
mod schedule;
mod states;
mod task;
mod values;

pub use campaign::{
    CallWindows, MaxAttempts, RetryCauses, RetryInterval, TaskTimeZone, WebhookUrl, Weekdays,
    Window,
};
pub use cause::HangupCause;
pub use schedule::{call_time, CallSchedule, CallTime};
pub use states::{Action, CallStatus, Role, TaskStatus};
pub use task::{Task, TaskSettings};
pub use values::{
    BoundedInt, CallingTime, ConfirmKey, ConfirmTimeout, DestNumber, MaxCaps, MaxConcurrency,
    TaskName, Text, ValueError,
};
