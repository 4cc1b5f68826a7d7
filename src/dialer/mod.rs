//! The dialer: runs tasks by placing calls through a telephony back end.

use std::sync::Arc;

use tokio::sync::Notify;

/// How the API tells the dialer that a task's state or numbers changed, so that it looks again
/// without waiting for its next periodic check.
#[derive(Clone, Default)]
pub struct DialerHandle {
    wake: Arc<Notify>,
}

impl DialerHandle {
    pub fn task_changed(&self, _task_id: i64) {
        self.wake.notify_one();
    }
}
