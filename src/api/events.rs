//! `GET /api/events`: a server-sent-events stream of task stats. One publisher does the work for
//! every client: once a second it reads the counters of the tasks that are running or calling (a
//! point lookup each) and the dialer's live record, and broadcasts the stats that changed; a task
//! whose status changes is sent at once. Each client only copies the broadcast out, and a client
//! that falls behind skips events rather than holding them.

use std::{
    collections::{HashMap, VecDeque},
    convert::Infallible,
    time::Duration,
};

use actix_web::{
    http::header,
    web::{self, Bytes},
    HttpResponse,
};
use serde_json::Value;
use tokio::{
    sync::broadcast::{self, error::RecvError},
    time::{interval, interval_at, MissedTickBehavior},
};
use tokio_util::sync::CancellationToken;

use super::{
    error::ApiResult,
    stats::{add_waiting, stats_object},
    AppState,
};
use crate::{
    clock::TimeZone,
    db::{self, stats::TaskCounts, Db, DbResult},
    dialer::DialerHandle,
};

/// How often the stats of running tasks are looked at (and at most how often a task's are sent).
const REFRESH_PERIOD: Duration = Duration::from_secs(1);
/// How often every client gets `event: ping`.
const PING_PERIOD: Duration = Duration::from_secs(15);
/// Events kept for a slow client; beyond, it skips the oldest.
const CLIENT_BUFFER: usize = 256;
/// How long a browser waits before reconnecting after the stream ends (milliseconds).
const RECONNECT_MS: u32 = 2000;

/// The event stream's publisher, shared by every client.
#[derive(Clone)]
pub struct Events {
    sender: broadcast::Sender<Bytes>,
    shutdown: CancellationToken,
}

impl Events {
    /// Starts the publisher on the current runtime.
    pub fn start(db: Db, dialer: DialerHandle, time_zone: TimeZone) -> Events {
        let (sender, _) = broadcast::channel(CLIENT_BUFFER);
        let events = Events {
            sender: sender.clone(),
            shutdown: CancellationToken::new(),
        };
        let publisher = Publisher {
            db,
            changes: dialer.task_changes(),
            dialer,
            time_zone,
            sender,
            sent: HashMap::new(),
        };
        tokio::spawn(publisher.run(events.shutdown.clone()));
        events
    }

    /// Ends the publisher and every client's stream (before the HTTP server's graceful stop,
    /// which would otherwise wait for the streams).
    pub fn close(&self) {
        self.shutdown.cancel();
    }
}

fn task_event(stats: &Value) -> Bytes {
    Bytes::from(format!("event: task\ndata: {stats}\n\n"))
}

const PING_EVENT: &[u8] = b"event: ping\ndata: {}\n\n";

struct Publisher {
    db: Db,
    dialer: DialerHandle,
    changes: broadcast::Receiver<i64>,
    time_zone: TimeZone,
    sender: broadcast::Sender<Bytes>,
    /// The last stats sent of each task being followed: running, calling, or just changed.
    sent: HashMap<i64, Value>,
}

impl Publisher {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut refresh = interval(REFRESH_PERIOD);
        refresh.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut ping = interval_at(tokio::time::Instant::now() + PING_PERIOD, PING_PERIOD);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut changes_open = true;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = refresh.tick() => self.refresh().await,
                _ = ping.tick() => {
                    let _ = self.sender.send(Bytes::from_static(PING_EVENT));
                }
                change = self.changes.recv(), if changes_open => match change {
                    Ok(task_id) => self.changed(task_id).await,
                    // Skipped changes are caught by the next refresh.
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => changes_open = false,
                },
            }
        }
    }

    fn stats(&self, counts: &TaskCounts) -> Value {
        let mut stats = stats_object(counts, self.dialer.task_pace(counts.id), self.time_zone);
        let waiting = self.dialer.waiting(counts.id);
        add_waiting(&mut stats, counts, waiting, self.time_zone);
        stats
    }

    fn send(&mut self, stats: Value) {
        let id = stats["id"].as_i64().unwrap_or_default();
        // Nobody listening is fine.
        let _ = self.sender.send(task_event(&stats));
        self.sent.insert(id, stats);
    }

    /// With no client connected there is nothing to do (a client that connects reads the running
    /// tasks itself), and nothing to remember.
    fn nobody_listens(&mut self) -> bool {
        let idle = self.sender.receiver_count() == 0;
        if idle {
            self.sent.clear();
        }
        idle
    }

    /// A task changed: its stats are sent at once when its status or its waiting state did (or it
    /// was not followed).
    async fn changed(&mut self, task_id: i64) {
        if self.nobody_listens() {
            return;
        }
        let counts = match self
            .db
            .run(move |conn| db::stats::of_task(conn, task_id))
            .await
        {
            Ok(Some(counts)) => counts,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, task = task_id, "events: could not read a task's stats");
                return;
            }
        };
        let stats = self.stats(&counts);
        let status_changed = self.sent.get(&task_id).is_none_or(|last| {
            last["status"] != stats["status"]
                || last.get("deleted") != stats.get("deleted")
                || last["waiting"] != stats["waiting"]
                || last["waiting_until"] != stats["waiting_until"]
        });
        if status_changed {
            self.send(stats);
        }
    }

    /// Sends the stats that changed of every followed task, and stops following the tasks that
    /// neither run nor call any more.
    async fn refresh(&mut self) {
        if self.nobody_listens() {
            return;
        }
        let mut others: Vec<i64> = self.sent.keys().copied().collect();
        others.extend(self.dialer.active_tasks());
        let read = self
            .db
            .run(move |conn| -> DbResult<Vec<TaskCounts>> {
                let mut tasks = db::stats::of_running_tasks(conn)?;
                others.sort_unstable();
                others.dedup();
                others.retain(|id| !tasks.iter().any(|t| t.id == *id));
                for id in others {
                    tasks.extend(db::stats::of_task(conn, id)?);
                }
                Ok(tasks)
            })
            .await;
        let tasks = match read {
            Ok(tasks) => tasks,
            Err(error) => {
                tracing::warn!(%error, "events: could not read the running tasks' stats");
                return;
            }
        };
        let mut followed = HashMap::with_capacity(tasks.len());
        for counts in &tasks {
            let stats = self.stats(counts);
            if self.sent.get(&counts.id) != Some(&stats) {
                let _ = self.sender.send(task_event(&stats));
            }
            let still_followed = counts.status == crate::domain::TaskStatus::Running
                && !counts.deleted
                || stats["live"].as_u64() != Some(0)
                || stats["caps"].as_f64() != Some(0.0);
            if still_followed {
                followed.insert(counts.id, stats);
            }
        }
        self.sent = followed;
    }
}

/// The stream of one client: the current stats of every running task, a ping, then the broadcast,
/// until the client goes or the server stops.
pub async fn stream(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    // Subscribed before reading, so nothing between the read and the first event is missed.
    let receiver = state.events.sender.subscribe();
    let shutdown = state.events.shutdown.clone();
    let tasks = state
        .db
        .run(|conn| db::stats::of_running_tasks(conn))
        .await?;
    let mut first: VecDeque<Bytes> = VecDeque::with_capacity(tasks.len() + 1);
    first.push_back(Bytes::from(format!("retry: {RECONNECT_MS}\n\n")));
    for counts in &tasks {
        let pace = state.dialer.task_pace(counts.id);
        let mut stats = stats_object(counts, pace, state.time_zone);
        add_waiting(
            &mut stats,
            counts,
            state.dialer.waiting(counts.id),
            state.time_zone,
        );
        first.push_back(task_event(&stats));
    }
    // Then a ping at once: the client knows the stream is up even when nothing runs.
    first.push_back(Bytes::from_static(PING_EVENT));
    let events = futures_util::stream::unfold(
        (first, receiver, shutdown),
        |(mut first, mut receiver, shutdown)| async move {
            if let Some(event) = first.pop_front() {
                return Some((Ok::<_, Infallible>(event), (first, receiver, shutdown)));
            }
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    received = receiver.recv() => match received {
                        Ok(event) => return Some((Ok(event), (first, receiver, shutdown))),
                        Err(RecvError::Lagged(_)) => continue,
                        Err(RecvError::Closed) => return None,
                    },
                }
            }
        },
    );
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(events))
}
