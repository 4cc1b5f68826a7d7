//! The dialer: a supervisor that starts a runner for every running task (and starts auto_dial
//! tasks when their time comes), the box-wide limits all runners share, and orderly shutdown.

pub mod activity;
pub mod pacing;
pub mod runner;

use std::{
    collections::HashMap,
    // A lock poisoned by a panicking runner (a back end bug) still guards consistent data: every
    // critical section here is a single update.
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use tokio::{
    sync::{broadcast, mpsc, Notify, Semaphore},
    task::JoinHandle,
    time::{sleep_until, MissedTickBehavior},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use self::{
    activity::{Activity, TaskPace},
    pacing::Pacer,
    runner::TaskRunner,
};
use crate::{
    clock::{self, Clock, TimeZone},
    db::{self, Db},
    domain::{MaxCaps, Task},
    metrics::Metrics,
    telephony::{BackendHealth, CallControl, HangupCause, Telephony},
};

#[derive(Debug, Clone)]
pub struct DialerConfig {
    /// Calls started per second by all tasks together.
    pub max_caps: f64,
    /// Calls alive at once across all tasks.
    pub max_channels: usize,
    /// On shutdown, how long live calls may go on before they are hung up.
    pub shutdown_grace: Duration,
    /// Most calls to one number over any 24 hours across all tasks (`None`: no cap).
    pub max_attempts_per_day: Option<u32>,
}

/// How often the supervisor looks for auto_dial starts and runnerless running tasks, besides
/// whenever the API reports a change.
const SUPERVISOR_PERIOD: Duration = Duration::from_millis(500);
/// A runner that fails (panics) is replaced after a wait that doubles with each failure in a
/// row, from this…
const RUNNER_BACKOFF_FIRST: Duration = Duration::from_millis(500);
/// …up to this.
const RUNNER_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// After this many failures in a row the task is stopped, with the reason in the log.
pub const RUNNER_MAX_FAILURES: u32 = 5;
/// After the grace period and the hang-ups, how long to wait for the results to be written.
const HANGUP_WAIT: Duration = Duration::from_secs(10);
/// Task changes kept for a follower that is behind; older ones are skipped.
const ANNOUNCEMENTS_BUFFER: usize = 1024;

/// The limits that protect the trunk across all tasks.
pub struct GlobalLimits {
    pacer: Mutex<Pacer>,
    pub channels: Arc<Semaphore>,
}

impl GlobalLimits {
    fn new(config: &DialerConfig) -> Self {
        GlobalLimits {
            pacer: Mutex::new(Pacer::new(MaxCaps::clamped(config.max_caps))),
            channels: Arc::new(Semaphore::new(config.max_channels)),
        }
    }

    pub fn earliest_start(&self, now: Instant) -> Instant {
        self.pacer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .earliest_start(now)
    }

    /// Waits for the box-wide pace to allow a start, then starts the call with `place` and records
    /// the start. The instant recorded is taken after `place` returns, so that whoever else
    /// timestamps the start (the back end) can only see it earlier: the window rule then holds on
    /// their clock too, however the thread is scheduled. `place` must not block.
    pub async fn start_call<T>(&self, place: impl FnOnce() -> T) -> (T, Instant) {
        let mut place = Some(place);
        loop {
            let earliest = {
                let mut pacer = self.pacer.lock().unwrap_or_else(PoisonError::into_inner);
                let now = Instant::now();
                let earliest = pacer.earliest_start(now);
                if earliest <= now {
                    let placed = (place.take().expect("placed once"))();
                    let started = Instant::now();
                    pacer.record_start(started);
                    return (placed, started);
                }
                earliest
            };
            sleep_until(earliest.into()).await;
        }
    }
}

/// Why a running task starts no call now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum WaitReason {
    /// Outside its calling windows or days.
    CallWindow,
    /// Nothing to dial before a retry (or a number held back by the per-day cap) is due.
    Retry,
}

impl WaitReason {
    /// As `stats` shows it: `call_window`, `retry`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A running task that waits: why, and until when (unix seconds) at the latest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiting {
    pub reason: WaitReason,
    pub until: i64,
}

/// What the supervisor, its runners and their calls share.
pub struct DialerContext {
    pub db: Db,
    /// The wall clock of schedules (retries, windows, the per-day cap, auto_dial).
    pub clock: Clock,
    /// The server's zone (`--tz`): a task's calling windows are in it unless it names its own.
    pub time_zone: TimeZone,
    /// Most calls to one number over any 24 hours across all tasks.
    pub max_attempts_per_day: Option<u32>,
    /// Calls started, answered and ended, for `/metrics`.
    pub metrics: Metrics,
    /// Notified after each call result is written: the webhook sender looks for new rows.
    pub results_written: Arc<Notify>,
    pub backend: Arc<dyn Telephony>,
    pub limits: GlobalLimits,
    pub shutdown: CancellationToken,
    /// Every call being followed, so that shutdown can wait for their results.
    pub calls: TaskTracker,
    live_calls: Mutex<HashMap<String, CallControl>>,
    /// When the supervisor last finished a pass, for `/healthz`.
    last_pass: Mutex<Instant>,
    /// Each task's recent starts and live calls, for its stats.
    activity: Mutex<Activity>,
    /// Running tasks that start no call now, and why (for `stats`).
    waiting: Mutex<HashMap<i64, Waiting>>,
    /// Ids of tasks whose state, settings or numbers changed (by the API or by the dialer), for
    /// whoever follows them (the event stream).
    announcements: broadcast::Sender<i64>,
}

impl DialerContext {
    /// Keeps a way to hang the call up until the guard is dropped, and counts the call as started
    /// at `started` and alive for its task's stats.
    pub fn register_call(
        self: &Arc<Self>,
        task_id: i64,
        uuid: &str,
        control: CallControl,
        started: Instant,
    ) -> LiveCall {
        self.live_calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(uuid.to_owned(), control);
        self.activity
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .call_started(task_id, started);
        LiveCall {
            context: self.clone(),
            task_id,
            uuid: uuid.to_owned(),
        }
    }

    /// Records whether a task waits (`None`: it dials, or is not running); followers are told
    /// when that changes.
    pub fn set_waiting(&self, task_id: i64, waiting: Option<Waiting>) {
        let changed = {
            let mut all = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
            let before = match waiting {
                Some(waiting) => all.insert(task_id, waiting),
                None => all.remove(&task_id),
            };
            before != waiting
        };
        if changed {
            self.announce(task_id);
        }
    }

    /// Tells followers that a task changed (nobody listening is fine).
    pub fn announce(&self, task_id: i64) {
        let _ = self.announcements.send(task_id);
    }

    fn hang_up_all(&self, cause: HangupCause) -> usize {
        let calls = self
            .live_calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for control in calls.values() {
            control.hang_up(cause);
        }
        calls.len()
    }
}

pub struct LiveCall {
    context: Arc<DialerContext>,
    task_id: i64,
    uuid: String,
}

impl Drop for LiveCall {
    fn drop(&mut self) {
        self.context
            .live_calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.uuid);
        self.context
            .activity
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .call_ended(self.task_id, Instant::now());
    }
}

/// The API's side of the dialer.
#[derive(Clone)]
pub struct DialerHandle {
    changes: mpsc::UnboundedSender<i64>,
    context: Arc<DialerContext>,
    shutdown_grace: Duration,
}

impl DialerHandle {
    /// A task's state, settings or numbers changed: look at it now.
    pub fn task_changed(&self, task_id: i64) {
        let _ = self.changes.send(task_id);
        self.context.announce(task_id);
    }

    /// The ids of tasks that change from now on, by the API or by the dialer (a task done, an
    /// auto_dial start, a failing task stopped). A receiver that falls behind skips ids.
    pub fn task_changes(&self) -> broadcast::Receiver<i64> {
        self.context.announcements.subscribe()
    }

    /// A task's calls started in the last 10 s ÷ 10, and its calls alive now.
    pub fn task_pace(&self, task_id: i64) -> TaskPace {
        self.context
            .activity
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pace(task_id, Instant::now())
    }

    /// Whether a running task waits, why and until when.
    pub fn waiting(&self, task_id: i64) -> Option<Waiting> {
        self.context
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&task_id)
            .copied()
    }

    /// Tasks with a call alive or started in the last 10 s.
    pub fn active_tasks(&self) -> Vec<i64> {
        self.context
            .activity
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .active_tasks(Instant::now())
    }

    /// Whether the back end can run this task at all.
    pub fn check_task(&self, task: &Task) -> Result<(), String> {
        self.context
            .backend
            .check_task(&runner::call_settings(task))
    }

    /// The metrics the dialer reports to.
    pub fn metrics(&self) -> &Metrics {
        &self.context.metrics
    }

    /// Notified after each call result is written (for the webhook sender).
    pub fn results_written(&self) -> Arc<Notify> {
        self.context.results_written.clone()
    }

    pub fn backend_name(&self) -> &'static str {
        self.context.backend.name()
    }

    pub fn backend_health(&self) -> BackendHealth {
        self.context.backend.health()
    }

    /// How long ago the supervisor last finished a pass (it makes one at least every
    /// `SUPERVISOR_PERIOD` while it is alive and the database answers).
    pub fn since_last_pass(&self) -> Duration {
        self.context
            .last_pass
            .lock()
            .expect("last pass lock")
            .elapsed()
    }

    /// Stops starting calls, lets live calls go on for the grace period, hangs up the rest with
    /// SYSTEM_SHUTDOWN, and waits (bounded) for every result to be written. Tasks stay `running`
    /// in the database, so they resume at the next start.
    pub async fn shutdown(&self) {
        let context = &self.context;
        context.shutdown.cancel();
        context.calls.close();
        if tokio::time::timeout(self.shutdown_grace, context.calls.wait())
            .await
            .is_err()
        {
            let count = context.hang_up_all(HangupCause::SYSTEM_SHUTDOWN);
            tracing::info!(count, "grace period over: hanging up the calls still alive");
            if tokio::time::timeout(HANGUP_WAIT, context.calls.wait())
                .await
                .is_err()
            {
                tracing::error!("some calls did not end after being hung up; their numbers finish at the next start");
            }
        }
    }
}

/// The failures in a row of a task's runners.
struct RunnerFailures {
    count: u32,
    retry_at: Instant,
}

struct RunnerEntry {
    wake: Arc<Notify>,
    join: JoinHandle<Pacer>,
}

/// Starts the dialer. Calls left `calling` by a crash are finished first (they are never redialed),
/// then running tasks resume. Answers the API's handle and the supervisor, which ends after a
/// shutdown once every runner has.
pub async fn start(
    db: Db,
    backend: Arc<dyn Telephony>,
    config: DialerConfig,
    schedule: (Clock, TimeZone),
    runtime: &tokio::runtime::Handle,
) -> db::DbResult<(DialerHandle, JoinHandle<()>)> {
    let (clock, time_zone) = schedule;
    let interrupted = db
        .run(|conn| db::numbers::finish_interrupted(conn, HangupCause::SYSTEM_SHUTDOWN))
        .await?;
    if interrupted > 0 {
        tracing::warn!(
            count = interrupted,
            "finished calls interrupted by the last stop with SYSTEM_SHUTDOWN"
        );
    }
    let context = Arc::new(DialerContext {
        db,
        clock,
        time_zone,
        max_attempts_per_day: config.max_attempts_per_day,
        metrics: Metrics::new(),
        results_written: Arc::new(Notify::new()),
        backend,
        limits: GlobalLimits::new(&config),
        shutdown: CancellationToken::new(),
        calls: TaskTracker::new(),
        live_calls: Mutex::default(),
        last_pass: Mutex::new(Instant::now()),
        activity: Mutex::new(Activity::new(Instant::now())),
        waiting: Mutex::default(),
        announcements: broadcast::channel(ANNOUNCEMENTS_BUFFER).0,
    });
    let (changes_sender, changes) = mpsc::unbounded_channel();
    let handle = DialerHandle {
        changes: changes_sender,
        context: context.clone(),
        shutdown_grace: config.shutdown_grace,
    };
    let supervisor = Supervisor {
        context,
        changes,
        runners: HashMap::new(),
        pacers: HashMap::new(),
        failures: HashMap::new(),
    };
    Ok((handle, runtime.spawn(supervisor.run())))
}

struct Supervisor {
    context: Arc<DialerContext>,
    changes: mpsc::UnboundedReceiver<i64>,
    runners: HashMap<i64, RunnerEntry>,
    /// The pacers of tasks whose runner ended, for their next runner.
    pacers: HashMap<i64, Pacer>,
    failures: HashMap<i64, RunnerFailures>,
}

impl Supervisor {
    async fn run(mut self) {
        let mut ticker = tokio::time::interval(SUPERVISOR_PERIOD);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let shutdown = self.context.shutdown.clone();
        let clock = self.context.clock.clone();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
                // A test's manual clock moved: schedules may have come due.
                _ = clock.moved() => {}
                Some(task_id) = self.changes.recv() => {
                    if let Some(runner) = self.runners.get(&task_id) {
                        runner.wake.notify_one();
                    }
                }
            }
            self.pass().await;
            *self.context.last_pass.lock().expect("last pass lock") = Instant::now();
        }
        // Shutdown: wake every runner so it sees it, and wait for them to end with their calls.
        for (_, runner) in self.runners.drain() {
            runner.wake.notify_one();
            if let Err(error) = runner.join.await {
                tracing::error!(%error, "a task runner failed during shutdown");
            }
        }
        tracing::info!("dialer stopped");
    }

    /// A task started by itself skipped the API's check that the back end can run it (its media
    /// may also have changed since it was scheduled): one it cannot run is stopped again.
    async fn refuse_if_unrunnable(&self, id: i64) {
        let task = match self
            .context
            .db
            .run(move |conn| db::tasks::get(conn, id))
            .await
        {
            Ok(Some(task)) => task,
            Ok(None) => return,
            Err(error) => {
                tracing::error!(task = id, %error, "could not read an auto_dial task");
                return;
            }
        };
        if let Err(reason) = self
            .context
            .backend
            .check_task(&runner::call_settings(&task))
        {
            tracing::error!(task = id, %reason, "auto_dial: the back end cannot run this task; stopping it");
            let now = self.context.clock.now();
            if let Err(error) = self
                .context
                .db
                .run(move |conn| db::tasks::stop(conn, &[id], now))
                .await
            {
                tracing::error!(task = id, %error, "could not stop the task");
            }
        }
    }

    /// A runner failed: the next one waits longer each time, and after too many failures in a
    /// row the task is stopped rather than failing forever.
    async fn runner_failed(&mut self, task_id: i64, error: &str) {
        let failures = self.failures.entry(task_id).or_insert(RunnerFailures {
            count: 0,
            retry_at: Instant::now(),
        });
        failures.count += 1;
        let count = failures.count;
        if count >= RUNNER_MAX_FAILURES {
            self.failures.remove(&task_id);
            tracing::error!(
                task = task_id,
                failures = count,
                %error,
                "the task's runner failed {count} times in a row; stopping the task"
            );
            let now = self.context.clock.now();
            if let Err(error) = self
                .context
                .db
                .run(move |conn| db::tasks::stop(conn, &[task_id], now))
                .await
            {
                tracing::error!(task = task_id, %error, "could not stop the task");
            }
            self.context.announce(task_id);
            return;
        }
        let wait = clock::doubled(RUNNER_BACKOFF_FIRST, count - 1, RUNNER_BACKOFF_MAX);
        failures.retry_at = Instant::now() + wait;
        tracing::error!(
            task = task_id,
            failures = count,
            %error,
            retry_in_ms = wait.as_millis() as u64,
            "a task runner failed; a new one takes over after a wait"
        );
    }

    /// Stops the running auto_dial tasks whose `task_end_time` has come (their runners see the
    /// stop, as after a manual one).
    async fn stop_due(&self, now: i64) {
        match self
            .context
            .db
            .run(move |conn| db::tasks::stop_due(conn, now))
            .await
        {
            Ok(stopped) => {
                for id in stopped {
                    tracing::info!(task = id, "auto_dial: task stopped at its end time");
                    if let Some(runner) = self.runners.get(&id) {
                        runner.wake.notify_one();
                    }
                    self.context.announce(id);
                }
            }
            Err(error) => tracing::error!(%error, "could not stop auto_dial tasks"),
        }
    }

    /// Starts due auto_dial tasks and gives every running task a runner.
    async fn pass(&mut self) {
        let now = self.context.clock.now();
        match self
            .context
            .db
            .run(move |conn| db::tasks::start_due(conn, now))
            .await
        {
            Ok(started) => {
                for id in started {
                    tracing::info!(task = id, "auto_dial: task started at its start time");
                    self.refuse_if_unrunnable(id).await;
                    self.context.announce(id);
                }
            }
            Err(error) => tracing::error!(%error, "could not start auto_dial tasks"),
        }
        self.stop_due(now).await;
        let finished: Vec<i64> = self
            .runners
            .iter()
            .filter(|(_, runner)| runner.join.is_finished())
            .map(|(id, _)| *id)
            .collect();
        for task_id in finished {
            let runner = self.runners.remove(&task_id).expect("listed above");
            match runner.join.await {
                Ok(pacer) => {
                    self.pacers.insert(task_id, pacer);
                    self.failures.remove(&task_id);
                }
                Err(error) => self.runner_failed(task_id, &error.to_string()).await,
            }
        }
        let running = match self
            .context
            .db
            .run(|conn| db::tasks::running_ids(conn))
            .await
        {
            Ok(ids) => ids,
            Err(error) => {
                tracing::error!(%error, "could not list running tasks");
                return;
            }
        };
        let now = Instant::now();
        for task_id in running {
            if self
                .failures
                .get(&task_id)
                .is_some_and(|failures| failures.retry_at > now)
            {
                continue;
            }
            self.runners.entry(task_id).or_insert_with(|| {
                let wake = Arc::new(Notify::new());
                let pacer = self.pacers.remove(&task_id);
                let runner = TaskRunner::new(task_id, self.context.clone(), wake.clone(), pacer);
                RunnerEntry {
                    wake,
                    // The supervisor runs on the dialer's runtime: so do its runners.
                    join: tokio::spawn(runner.run()),
                }
            });
        }
    }
}
