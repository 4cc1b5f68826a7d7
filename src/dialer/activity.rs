//! What each task's calls are doing right now, in memory: its call starts over the last 10 s (for
//! the achieved CAPS) and its live calls. Cheap to record and to read: a fixed ring of 100 ms
//! buckets per task, never a list that grows with the pace.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

/// The window over which the achieved pace is measured.
pub const CAPS_WINDOW: Duration = Duration::from_secs(10);
const BUCKET: Duration = Duration::from_millis(100);
const BUCKETS: usize = (CAPS_WINDOW.as_millis() / BUCKET.as_millis()) as usize;

/// One task's recent starts and live calls.
#[derive(Debug, Clone)]
struct TaskActivity {
    /// Bucket `i` counts the starts of the 100 ms slot `slots[i]` (slot numbers since `origin`).
    slots: [u64; BUCKETS],
    starts: [u32; BUCKETS],
    live: usize,
}

impl TaskActivity {
    fn new() -> Self {
        TaskActivity {
            slots: [u64::MAX; BUCKETS],
            starts: [0; BUCKETS],
            live: 0,
        }
    }

    fn starts_within(&self, now_slot: u64) -> u64 {
        self.slots
            .iter()
            .zip(self.starts.iter())
            .filter(|(slot, _)| {
                **slot != u64::MAX && now_slot.saturating_sub(**slot) < BUCKETS as u64
            })
            .map(|(_, starts)| *starts as u64)
            .sum()
    }
}

/// The calls of all tasks, as the dialer starts and ends them.
#[derive(Debug)]
pub struct Activity {
    origin: Instant,
    tasks: HashMap<i64, TaskActivity>,
}

/// A task's pace and live calls now.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TaskPace {
    /// Calls started in the last [`CAPS_WINDOW`], divided by its length in seconds.
    pub caps: f64,
    pub live: usize,
}

impl Activity {
    pub fn new(origin: Instant) -> Self {
        Activity {
            origin,
            tasks: HashMap::new(),
        }
    }

    fn slot(&self, at: Instant) -> u64 {
        (at.saturating_duration_since(self.origin).as_millis() / BUCKET.as_millis()) as u64
    }

    /// A call of `task_id` started at `at` and is alive.
    pub fn call_started(&mut self, task_id: i64, at: Instant) {
        let slot = self.slot(at);
        let task = self.tasks.entry(task_id).or_insert_with(TaskActivity::new);
        let index = (slot % BUCKETS as u64) as usize;
        if task.slots[index] != slot {
            task.slots[index] = slot;
            task.starts[index] = 0;
        }
        task.starts[index] = task.starts[index].saturating_add(1);
        task.live += 1;
    }

    /// A call of `task_id` ended. A task with no live call and no recent start is forgotten, so
    /// the record holds only tasks that are calling.
    pub fn call_ended(&mut self, task_id: i64, now: Instant) {
        let now_slot = self.slot(now);
        if let Some(task) = self.tasks.get_mut(&task_id) {
            task.live = task.live.saturating_sub(1);
        }
        self.tasks
            .retain(|_, task| task.live > 0 || task.starts_within(now_slot) > 0);
    }

    pub fn pace(&self, task_id: i64, now: Instant) -> TaskPace {
        self.tasks
            .get(&task_id)
            .map(|task| TaskPace {
                caps: task.starts_within(self.slot(now)) as f64 / CAPS_WINDOW.as_secs_f64(),
                live: task.live,
            })
            .unwrap_or_default()
    }

    /// Tasks with a live call or a start in the window.
    pub fn active_tasks(&self, now: Instant) -> Vec<i64> {
        let now_slot = self.slot(now);
        self.tasks
            .iter()
            .filter(|(_, task)| task.live > 0 || task.starts_within(now_slot) > 0)
            .map(|(id, _)| *id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_counts_the_starts_of_the_last_ten_seconds() {
        let origin = Instant::now();
        let mut activity = Activity::new(origin);
        for i in 0..50 {
            activity.call_started(7, origin + Duration::from_millis(i * 200));
        }
        let at_10s = origin + Duration::from_millis(9_950);
        assert_eq!(
            activity.pace(7, at_10s),
            TaskPace {
                caps: 5.0,
                live: 50
            }
        );
        // Five seconds later only the starts from 5 s on are within the window.
        let later = origin + Duration::from_millis(14_950);
        assert_eq!(activity.pace(7, later).caps, 2.5);
        for _ in 0..50 {
            activity.call_ended(7, later);
        }
        assert_eq!(activity.pace(7, later).live, 0);
        assert_eq!(activity.active_tasks(later), vec![7]);
        let quiet = origin + Duration::from_secs(30);
        assert_eq!(activity.pace(7, quiet), TaskPace::default());
        assert!(activity.active_tasks(quiet).is_empty());
        assert_eq!(activity.pace(8, quiet), TaskPace::default());
    }

    #[test]
    fn an_old_bucket_is_reused_not_added_to() {
        let origin = Instant::now();
        let mut activity = Activity::new(origin);
        activity.call_started(1, origin);
        activity.call_started(1, origin + CAPS_WINDOW);
        assert_eq!(activity.pace(1, origin + CAPS_WINDOW).caps, 0.1);
    }
}
