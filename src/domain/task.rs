//! A task as stored, and the settings a client may change.

use super::{
    Action, CallWindows, CallingTime, ConfirmKey, ConfirmTimeout, MaxAttempts, MaxCaps,
    MaxConcurrency, RetryCauses, RetryInterval, TaskName, TaskStatus, TaskTimeZone, Text,
    WebhookUrl, Weekdays,
};

/// A task with its settings and counts, as read from the database.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub id: i64,
    pub group_name: String,
    pub description: String,
    pub status: TaskStatus,
    pub cid_number: String,
    pub cid_name: String,
    pub context: String,
    pub dest_context: String,
    pub calling_time: CallingTime,
    pub max_caps: MaxCaps,
    pub max_concurrency: MaxConcurrency,
    pub task_start_time: Option<i64>,
    pub task_end_time: Option<i64>,
    pub auto_dial: bool,
    pub disable_ring_back: bool,
    pub auto_record: bool,
    pub group_confirm_key: String,
    pub group_confirm_read_timeout: Option<ConfirmTimeout>,
    pub group_confirm_file: String,
    pub action: Action,
    pub data: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub deleted_at: Option<i64>,
    pub max_attempts: MaxAttempts,
    pub retry_interval: RetryInterval,
    pub retry_causes: RetryCauses,
    pub call_windows: CallWindows,
    pub call_weekdays: Weekdays,
    pub time_zone: TaskTimeZone,
    pub webhook_url: WebhookUrl,
    /// Numbers in the task.
    pub total: i64,
    /// Numbers whose call has finished.
    pub done: i64,
}

/// The settings a create or an update sets: one `Option` per field, `None` leaving it as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskSettings {
    pub group_name: Option<TaskName>,
    pub description: Option<Text>,
    pub cid_number: Option<Text>,
    pub cid_name: Option<Text>,
    pub context: Option<Text>,
    pub dest_context: Option<Text>,
    pub calling_time: Option<CallingTime>,
    pub max_caps: Option<MaxCaps>,
    pub max_concurrency: Option<MaxConcurrency>,
    /// `Some(None)` clears the start time.
    pub task_start_time: Option<Option<i64>>,
    /// With auto_dial, when a running task stops by itself; `Some(None)` clears it.
    pub task_end_time: Option<Option<i64>>,
    pub auto_dial: Option<bool>,
    pub disable_ring_back: Option<bool>,
    pub auto_record: Option<bool>,
    pub group_confirm_key: Option<ConfirmKey>,
    /// `Some(None)` goes back to the default wait.
    pub group_confirm_read_timeout: Option<Option<ConfirmTimeout>>,
    pub group_confirm_file: Option<Text>,
    pub action: Option<Action>,
    pub data: Option<Text>,
    pub max_attempts: Option<MaxAttempts>,
    pub retry_interval: Option<RetryInterval>,
    pub retry_causes: Option<RetryCauses>,
    pub call_windows: Option<CallWindows>,
    pub call_weekdays: Option<Weekdays>,
    pub time_zone: Option<TaskTimeZone>,
    pub webhook_url: Option<WebhookUrl>,
}

impl TaskSettings {
    /// Whether an auto_dial start must be rescheduled.
    pub fn touches_schedule(&self) -> bool {
        self.auto_dial.is_some() || self.task_start_time.is_some()
    }
}
