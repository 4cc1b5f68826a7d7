//! Prometheus metrics (`GET /metrics`). The dialer reports its calls through the hooks below.
//!
//! Skeleton: the hooks are called from the dialer; their bodies and the exposition are to come
//! (issue 11, metrics part).

/// The process's metrics; clones share them.
#[derive(Debug, Clone, Default)]
pub struct Metrics {}

impl Metrics {
    pub fn new() -> Self {
        Metrics::default()
    }

    /// A call of `task_id` was placed.
    pub fn call_started(&self, task_id: i64) {
        let _ = task_id;
    }

    /// A call of `task_id` was answered.
    pub fn call_answered(&self, task_id: i64) {
        let _ = task_id;
    }

    /// A call of `task_id` ended with `cause`.
    pub fn call_ended(&self, task_id: i64, cause: crate::domain::HangupCause) {
        let _ = (task_id, cause);
    }
}
