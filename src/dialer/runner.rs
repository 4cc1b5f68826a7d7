//! One runner per running task: claims its numbers in id order and places their calls at the
//! task's pace, within its concurrency and the box's global limits.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use tokio::{
    sync::{mpsc, Notify, OwnedSemaphorePermit},
    time::sleep_until,
};

use super::{
    pacing::{self, Decision, Pacer},
    DialerContext, LiveCall, WaitReason, Waiting,
};
use crate::{
    db::{
        self,
        numbers::{CallResult, ClaimOptions},
    },
    domain::{Action, CallSchedule, CallTime, MaxCaps, Task, TaskStatus},
    telephony::{
        AfterAnswer, CallEvent, CallHandle, CallRequest, CallSettings, Confirm, HangupCause,
        MediaRef, DEFAULT_CONFIRM_TIMEOUT,
    },
};

/// Outside its calling windows a task looks again at least this often (real time), so that the
/// system clock and a test's manual clock both work.
const WINDOW_RECHECK: Duration = Duration::from_secs(1);
/// How long to back off after a database error before trying again.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// How often a runner looks again whether a back end that cannot dial now is back.
const NOT_READY_RETRY: Duration = Duration::from_millis(200);
/// A call result that could not be written is tried again after this, doubling up to
/// [`RESULT_RETRY_MOST`]: a result is never given up on.
const RESULT_RETRY_FIRST: Duration = Duration::from_millis(100);
const RESULT_RETRY_MOST: Duration = Duration::from_secs(5);
/// While numbers wait for a retry (or the per-day cap), the longest real-time wait before the
/// runner looks again, and the shortest.
const RETRY_WAIT_MOST: Duration = Duration::from_secs(1);
const RETRY_WAIT_LEAST: Duration = Duration::from_millis(20);

/// The call settings a task's settings give.
pub fn call_settings(task: &Task) -> CallSettings {
    let confirm = (!task.group_confirm_key.is_empty()).then(|| Confirm {
        key: task.group_confirm_key.clone(),
        timeout: task
            .group_confirm_read_timeout
            .map(|s| Duration::from_secs(s.get() as u64))
            .unwrap_or(DEFAULT_CONFIRM_TIMEOUT),
        prompt: MediaRef::parse(&task.group_confirm_file),
    });
    let action = match task.action {
        Action::Playback => MediaRef::parse(&task.data)
            .map(AfterAnswer::Playback)
            .unwrap_or(AfterAnswer::Hangup),
        Action::Transfer if !task.data.trim().is_empty() => {
            AfterAnswer::Transfer(task.data.trim().to_owned())
        }
        Action::Transfer | Action::None => AfterAnswer::Hangup,
    };
    CallSettings {
        task_id: task.id,
        context: task.context.clone(),
        dest_context: task.dest_context.clone(),
        cid_number: task.cid_number.clone(),
        cid_name: task.cid_name.clone(),
        calling_time: Duration::from_secs(task.calling_time.get() as u64),
        confirm,
        action,
        auto_record: task.auto_record,
        disable_ring_back: task.disable_ring_back,
    }
}

/// What the runner does after a step.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Take another step at once.
    Continue,
    /// Wait for a call to end, a change of the task, or this instant.
    Wait(Option<Instant>),
    /// Nothing left to do: no call alive and nothing to dial.
    Exit,
}

pub struct TaskRunner {
    task_id: i64,
    context: Arc<DialerContext>,
    wake: Arc<Notify>,
    /// From the task, reloaded when it changes; `None` once it is not running.
    settings: Option<Arc<CallSettings>>,
    max_concurrency: usize,
    pacer: Pacer,
    live_calls: usize,
    /// The last claim found no waiting number.
    exhausted: bool,
    /// The claim's cursor and the per-day cap, kept between claims.
    claim: ClaimOptions,
    reload: bool,
    /// The task's calling windows and days and their zone; `None`: any time.
    schedule: Option<(CallSchedule, chrono_tz::Tz)>,
    /// This runner announced that the task waits for its calling window.
    window_waiting: bool,
    call_ended_sender: mpsc::UnboundedSender<()>,
    call_ended: mpsc::UnboundedReceiver<()>,
}

impl TaskRunner {
    /// `pacer` carries the task's recent starts from its previous runner, if it had one, so that
    /// a stop and a start cannot bunch calls together.
    pub fn new(
        task_id: i64,
        context: Arc<DialerContext>,
        wake: Arc<Notify>,
        pacer: Option<Pacer>,
    ) -> Self {
        let (call_ended_sender, call_ended) = mpsc::unbounded_channel();
        let max_attempts_per_day = context.max_attempts_per_day;
        TaskRunner {
            task_id,
            context,
            wake,
            settings: None,
            max_concurrency: 1,
            pacer: pacer.unwrap_or_else(|| Pacer::new(MaxCaps::clamped(1.0))),
            live_calls: 0,
            exhausted: false,
            claim: ClaimOptions {
                max_attempts_per_day,
                ..ClaimOptions::default()
            },
            reload: true,
            schedule: None,
            window_waiting: false,
            call_ended_sender,
            call_ended,
        }
    }

    /// Runs until the task has nothing more to do; answers its pacer for the next runner.
    pub async fn run(mut self) -> Pacer {
        tracing::info!(task = self.task_id, "task runner started");
        loop {
            let step = self.tick().await;
            match step {
                Step::Continue => {}
                Step::Wait(until) => self.wait(until).await,
                Step::Exit => break,
            }
        }
        self.context.set_waiting(self.task_id, None);
        tracing::info!(task = self.task_id, "task runner finished");
        self.pacer
    }

    fn dialing(&self) -> bool {
        self.settings.is_some() && !self.context.shutdown.is_cancelled()
    }

    /// One decision and what it leads to; never sleeps.
    pub async fn tick(&mut self) -> Step {
        if self.reload {
            if let Err(error) = self.reload_task().await {
                tracing::error!(task = self.task_id, %error, "could not read the task; retrying");
                return Step::Wait(Some(Instant::now() + RETRY_AFTER));
            }
        }
        if !self.dialing() || self.exhausted {
            if self.live_calls > 0 {
                return Step::Wait(None);
            }
            if !self.dialing() {
                return Step::Exit;
            }
            return self.finish_if_complete().await;
        }
        if let Some(step) = self.outside_call_window() {
            return step;
        }
        match pacing::decide(
            Instant::now(),
            &self.pacer,
            self.live_calls,
            self.max_concurrency,
        ) {
            Decision::WaitForHangup => Step::Wait(None),
            Decision::WaitUntil(at) => Step::Wait(Some(at)),
            Decision::StartNow => self.start_call().await,
        }
    }

    async fn reload_task(&mut self) -> Result<(), db::DbError> {
        let id = self.task_id;
        let task = self
            .context
            .db
            .run(move |conn| db::tasks::get(conn, id))
            .await?;
        self.reload = false;
        self.exhausted = false;
        // Numbers may be waiting again below the claim's cursor (a start after a stop).
        self.claim.fresh_after = 0;
        match task.filter(|t| t.status == TaskStatus::Running) {
            Some(task) => {
                self.max_concurrency = task.max_concurrency.get() as usize;
                self.pacer.set_caps(task.max_caps);
                self.settings = Some(Arc::new(call_settings(&task)));
                let schedule = CallSchedule::new(task.call_windows, task.call_weekdays);
                let zone = task.time_zone.or(self.context.time_zone).tz();
                self.schedule = (!schedule.is_always()).then_some((schedule, zone));
            }
            None => self.settings = None,
        }
        Ok(())
    }

    /// Outside the task's calling windows or days no call starts (live calls go on): the task
    /// waits, as `stats` shows, until the next window opens, looking again at least every
    /// [`WINDOW_RECHECK`] (and whenever the task changes or a manual clock moves).
    fn outside_call_window(&mut self) -> Option<Step> {
        let now = self.context.clock.now();
        let opens = match &self.schedule {
            Some((schedule, zone)) => match schedule.call_time(*zone, now) {
                CallTime::Now => None,
                CallTime::OpensAt(at) => Some(at),
                // Cannot happen with checked values: shown with no time, looked at again.
                CallTime::Never => Some(i64::MAX),
            },
            None => None,
        };
        let Some(until) = opens else {
            if std::mem::take(&mut self.window_waiting) {
                self.context.set_waiting(self.task_id, None);
            }
            return None;
        };
        if !self.window_waiting {
            tracing::info!(
                task = self.task_id,
                opens = until,
                "outside the calling windows: waiting"
            );
        }
        self.window_waiting = true;
        let reason = WaitReason::CallWindow;
        self.context
            .set_waiting(self.task_id, Some(Waiting { reason, until }));
        let wait = self.context.clock.until(until, WINDOW_RECHECK);
        Some(Step::Wait(Some(Instant::now() + wait)))
    }

    async fn finish_if_complete(&mut self) -> Step {
        let (id, now) = (self.task_id, self.context.clock.now());
        match self
            .context
            .db
            .run(move |conn| db::tasks::finish_if_complete(conn, id, now))
            .await
        {
            Ok(true) => {
                tracing::info!(task = id, "task done: every number has been called");
                self.context.announce(id);
                Step::Exit
            }
            // Numbers arrived, or the task was stopped meanwhile: look again. Not at once: when
            // neither happened (a number still `calling` with no live call of this runner), going
            // round at once would spin on the database; a change of the task wakes the wait.
            Ok(false) => {
                self.reload = true;
                Step::Wait(Some(Instant::now() + RETRY_AFTER))
            }
            Err(error) => {
                tracing::error!(task = id, %error, "could not finish the task; retrying");
                Step::Wait(Some(Instant::now() + RETRY_AFTER))
            }
        }
    }

    async fn start_call(&mut self) -> Step {
        if !self.context.backend.ready_to_dial() {
            // E.g. the freeswitch back end's event socket is down: no number is claimed until it
            // is back (its health says why).
            return Step::Wait(Some(Instant::now() + NOT_READY_RETRY));
        }
        let limits = &self.context.limits;
        let Ok(channel) = limits.channels.clone().try_acquire_owned() else {
            // The box's channel ceiling is reached by all tasks together: look again shortly.
            return Step::Wait(Some(Instant::now() + Duration::from_millis(20)));
        };
        let global_earliest = limits.earliest_start(Instant::now());
        if global_earliest > Instant::now() {
            return Step::Wait(Some(global_earliest));
        }
        let settings = self.settings.clone().expect("dialing implies settings");
        let uuid = uuid::Uuid::new_v4().to_string();
        let (task_id, claim_uuid, now) = (self.task_id, uuid.clone(), self.context.clock.now());
        let mut options = self.claim.clone();
        let claimed = self
            .context
            .db
            .run(move |conn| {
                db::numbers::claim_next(conn, task_id, &claim_uuid, now, &mut options)
                    .map(|claimed| (claimed, options))
            })
            .await;
        let number = match claimed {
            Ok((Some(number), options)) => {
                self.claim = options;
                self.context.set_waiting(task_id, None);
                number
            }
            Ok((None, options)) => {
                self.claim = options;
                if self.claim.more {
                    return Step::Continue;
                }
                return self.wait_for_retries().await;
            }
            Err(error) => {
                tracing::error!(task = task_id, %error, "could not claim a number; retrying");
                return Step::Wait(Some(Instant::now() + RETRY_AFTER));
            }
        };
        // Shutdown may have begun while we claimed: give the number back rather than start a call
        // that nothing would wait for. The tracker token keeps shutdown waiting from here on.
        let in_flight = self.context.calls.token();
        if self.context.shutdown.is_cancelled() {
            let (id, claim_uuid) = (number.id, uuid.clone());
            if let Err(error) = self
                .context
                .db
                .run(move |conn| db::numbers::release_claim(conn, id, &claim_uuid))
                .await
            {
                tracing::error!(%error, %uuid, "could not give back a claimed number; it ends SYSTEM_SHUTDOWN at the next start");
            }
            return Step::Continue;
        }
        tracing::debug!(task = task_id, number = %number.dest_number, %uuid, "placing a call");
        let request = CallRequest {
            uuid,
            number_id: number.id,
            dest_number: number.dest_number,
            settings,
        };
        let backend = &self.context.backend;
        // Another task may have taken the global slot while we claimed: this waits for the next one.
        let (call, started) = limits
            .start_call(|| backend.place_call(request.clone()))
            .await;
        self.pacer.record_start(started);
        self.context.metrics.call_started(self.task_id);
        self.live_calls += 1;
        let live =
            self.context
                .register_call(self.task_id, &request.uuid, call.control.clone(), started);
        let context = self.context.clone();
        let ended = self.call_ended_sender.clone();
        self.context
            .calls
            .spawn(follow_call(context, request, call, live, channel, ended));
        drop(in_flight);
        Step::Continue
    }

    /// Nothing to dial now: when numbers wait for a retry (or the per-day cap), waits for the
    /// first of them (at most [`RETRY_WAIT_MOST`] at once, then looks again), as the task's
    /// waiting state when no call is alive; otherwise the task has nothing left to dial.
    async fn wait_for_retries(&mut self) -> Step {
        let task_id = self.task_id;
        match self
            .context
            .db
            .run(move |conn| db::numbers::next_due(conn, task_id))
            .await
        {
            Ok(Some(until)) => {
                if self.live_calls == 0 {
                    let waiting = Waiting {
                        reason: WaitReason::Retry,
                        until,
                    };
                    self.context.set_waiting(task_id, Some(waiting));
                }
                let wait = self
                    .context
                    .clock
                    .until(until, RETRY_WAIT_MOST)
                    .max(RETRY_WAIT_LEAST);
                Step::Wait(Some(Instant::now() + wait))
            }
            Ok(None) => {
                self.exhausted = true;
                Step::Continue
            }
            Err(error) => {
                tracing::error!(task = task_id, %error, "could not read the task's retries; retrying");
                Step::Wait(Some(Instant::now() + RETRY_AFTER))
            }
        }
    }

    async fn wait(&mut self, until: Option<Instant>) {
        let shutting_down = self.context.shutdown.is_cancelled();
        tokio::select! {
            _ = async { sleep_until(until.expect("guarded").into()).await }, if until.is_some() => {}
            Some(()) = self.call_ended.recv() => {
                self.live_calls -= 1;
                // The call may have left its number waiting for a retry.
                self.exhausted = false;
            }
            _ = self.wake.notified() => {
                self.reload = true;
            }
            _ = self.context.shutdown.cancelled(), if !shutting_down => {}
            // A test's manual clock moved: a retry or a calling window may have come due.
            _ = self.context.clock.moved() => {}
        }
    }
}

/// Follows one call to its end and writes its result; the channel permit and the task's slot
/// are given back only after that, at the final hangup.
async fn follow_call(
    context: Arc<DialerContext>,
    request: CallRequest,
    mut call: CallHandle,
    live: LiveCall,
    channel: OwnedSemaphorePermit,
    ended: mpsc::UnboundedSender<()>,
) {
    let mut digits = String::new();
    let mut answered_at = None;
    let outcome = loop {
        match call.events.recv().await {
            Some(CallEvent::Progress { .. }) => {}
            Some(CallEvent::Answered { at }) => {
                context.metrics.call_answered(request.settings.task_id);
                let at = clock_seconds(&context, at);
                answered_at = Some(at);
                let (id, uuid) = (request.number_id, request.uuid.clone());
                if let Err(error) = context
                    .db
                    .run(move |conn| db::numbers::record_answer(conn, id, &uuid, at))
                    .await
                {
                    tracing::warn!(%error, uuid = %request.uuid, "could not record the answer time");
                }
            }
            Some(CallEvent::Digit(digit)) => digits.push(digit),
            Some(CallEvent::Ended(outcome)) => {
                break CallResult {
                    cause: outcome.cause,
                    sip_code: outcome.sip_code,
                    answered_at: outcome
                        .answered_at
                        .map(|at| clock_seconds(&context, at))
                        .or(answered_at),
                    ended_at: clock_seconds(&context, outcome.ended_at),
                    dtmf: std::mem::take(&mut digits),
                    record_path: outcome
                        .recording
                        .map(|path| path.display().to_string())
                        .unwrap_or_default(),
                }
            }
            None => {
                tracing::error!(uuid = %request.uuid, "the back end lost the call without a result");
                break CallResult {
                    cause: HangupCause::NORMAL_TEMPORARY_FAILURE,
                    sip_code: None,
                    answered_at,
                    ended_at: context.clock.now(),
                    dtmf: std::mem::take(&mut digits),
                    record_path: String::new(),
                };
            }
        }
    };
    write_result(&context, &request, &outcome).await;
    context
        .metrics
        .call_ended(request.settings.task_id, outcome.cause);
    drop(live);
    drop(channel);
    let _ = ended.send(());
}

/// Writes a result, retrying until it is written (a database stall only delays it), with a
/// capped exponential backoff between attempts. A result lost here would leave the number
/// `calling` until the next start, which would finish it with SYSTEM_SHUTDOWN.
async fn write_result(context: &DialerContext, request: &CallRequest, result: &CallResult) {
    let mut backoff = RESULT_RETRY_FIRST;
    for attempt in 1u64.. {
        let (id, uuid, result) = (request.number_id, request.uuid.clone(), result.clone());
        match context
            .db
            .run(move |conn| db::numbers::finish(conn, id, &uuid, &result))
            .await
        {
            Ok(_) => {
                tracing::debug!(uuid = %request.uuid, number = %request.dest_number, "call ended");
                context.results_written.notify_one();
                return;
            }
            Err(error) => {
                tracing::warn!(%error, attempt, uuid = %request.uuid, "could not write a call result; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RESULT_RETRY_MOST);
            }
        }
    }
}

/// A time the back end reports, on the dialer's clock: a manual clock (tests) stands for the
/// wall clock, so that retries and the per-day cap count from the times written.
fn clock_seconds(context: &DialerContext, time: SystemTime) -> i64 {
    if context.clock.is_manual() {
        context.clock.now()
    } else {
        unix_seconds(time)
    }
}

fn unix_seconds(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
