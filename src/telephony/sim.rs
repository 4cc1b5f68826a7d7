//! The simulated callee: a deterministic back end that needs no phone system. What a call does
//! depends only on the last digit of the dialed number (see [`callee_for`] and README), and every
//! duration, including the ring timeout, is multiplied by the time scale.

use std::{
    fs::File,
    io::Write,
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use tokio::time::sleep;

use super::{
    call_channels, AfterAnswer, CallChannels, CallCommand, CallEvent, CallHandle, CallOutcome,
    CallRequest, CallSettings, HangupCause, Telephony,
};

/// What the simulated callee does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callee {
    /// Answers after `ring`, optionally presses a key `press_after` the answer, hangs up `talk`
    /// after the answer.
    Answers {
        ring: Duration,
        talk: Duration,
        press: Option<Press>,
    },
    /// Answers nothing: a final failure after `ring`.
    Fails {
        ring: Duration,
        cause: HangupCause,
        sip_code: u16,
    },
    /// Rings until the ring timeout.
    NeverAnswers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Press {
    /// The task's confirm key (`1` when it has none).
    ConfirmKey,
    /// A key that is not the confirm key.
    WrongKey,
}

pub const PRESS_AFTER: Duration = Duration::from_secs(1);

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The rules, by the last digit of the number.
pub fn callee_for(dest_number: &str) -> Callee {
    let last = dest_number
        .bytes()
        .rev()
        .find(u8::is_ascii_digit)
        .unwrap_or(b'0');
    match last {
        b'0' => Callee::Answers {
            ring: secs(1),
            talk: secs(5),
            press: None,
        },
        b'1' => Callee::Answers {
            ring: secs(2),
            talk: secs(3),
            press: None,
        },
        b'2' => Callee::Answers {
            ring: secs(1),
            talk: secs(20),
            press: None,
        },
        b'3' => Callee::Answers {
            ring: Duration::from_millis(500),
            talk: secs(1),
            press: None,
        },
        b'4' => Callee::Fails {
            ring: secs(1),
            cause: HangupCause::USER_BUSY,
            sip_code: 486,
        },
        b'5' => Callee::NeverAnswers,
        b'6' => Callee::Fails {
            ring: secs(1),
            cause: HangupCause::CALL_REJECTED,
            sip_code: 603,
        },
        b'7' => Callee::Answers {
            ring: secs(1),
            talk: secs(4),
            press: Some(Press::ConfirmKey),
        },
        b'8' => Callee::Answers {
            ring: secs(1),
            talk: secs(4),
            press: Some(Press::WrongKey),
        },
        _ => Callee::Fails {
            ring: Duration::from_millis(200),
            cause: HangupCause::UNALLOCATED_NUMBER,
            sip_code: 404,
        },
    }
}

/// How a call to a number ends when the dialer does not hang it up first: the sim's table read
/// with a task's settings, for whoever checks results (tests, benchmarks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub cause: HangupCause,
    /// The keys the callee pressed.
    pub dtmf: String,
    pub answered: bool,
}

pub fn expected_outcome(dest_number: &str, settings: &CallSettings) -> Expected {
    let unanswered = |cause| Expected {
        cause,
        dtmf: String::new(),
        answered: false,
    };
    let answered = |cause, dtmf: &str| Expected {
        cause,
        dtmf: dtmf.to_owned(),
        answered: true,
    };
    let (talk, press) = match callee_for(dest_number) {
        Callee::NeverAnswers => return unanswered(HangupCause::NO_ANSWER),
        Callee::Fails { ring, .. } | Callee::Answers { ring, .. }
            if ring >= settings.calling_time =>
        {
            return unanswered(HangupCause::NO_ANSWER)
        }
        Callee::Fails { cause, .. } => return unanswered(cause),
        Callee::Answers { talk, press, .. } => (talk, press),
    };
    let confirm_key = settings.confirm.as_ref().map(|c| c.key.as_str());
    let pressed = press.map(|press| pressed_keys(press, confirm_key));
    match &settings.confirm {
        Some(confirm) => {
            match pressed.filter(|_| PRESS_AFTER < confirm.timeout && PRESS_AFTER < talk) {
                Some(keys) if keys == confirm.key => answered(HangupCause::NORMAL_CLEARING, &keys),
                Some(keys) => answered(HangupCause::CALL_REJECTED, &keys),
                None if talk <= confirm.timeout => answered(HangupCause::NORMAL_CLEARING, ""),
                None => answered(HangupCause::NO_USER_RESPONSE, ""),
            }
        }
        None => {
            let keys = pressed.filter(|_| PRESS_AFTER < talk).unwrap_or_default();
            answered(HangupCause::NORMAL_CLEARING, &keys)
        }
    }
}

/// The keys a callee presses: the confirm key (`1` without one), or a wrong one.
fn pressed_keys(press: Press, confirm_key: Option<&str>) -> String {
    match press {
        Press::ConfirmKey => confirm_key.unwrap_or("1").to_owned(),
        Press::WrongKey => wrong_key(confirm_key.unwrap_or("1")).to_string(),
    }
}

/// What the sim's own log keeps of each call, for tests and benchmarks.
#[derive(Debug, Clone)]
pub struct SimCall {
    pub task_id: i64,
    pub uuid: String,
    pub dest_number: String,
    pub started: Instant,
    pub ended: Option<Instant>,
    pub cause: Option<&'static str>,
}

pub struct SimBackend {
    time_scale: f64,
    /// Every call placed, kept only when asked for (`with_history`): a long-running sim would
    /// otherwise grow without bound.
    calls: Option<Arc<Mutex<Vec<SimCall>>>>,
    /// One line a call start, appended as the call is placed: survives a crash of the process.
    call_log: Option<Mutex<File>>,
}

impl SimBackend {
    pub fn new(time_scale: f64) -> Self {
        assert!(
            time_scale > 0.0 && time_scale.is_finite(),
            "the time scale must be positive"
        );
        SimBackend {
            time_scale,
            calls: None,
            call_log: None,
        }
    }

    /// Keeps every call placed in memory, for [`SimBackend::calls`] (tests and benchmarks).
    pub fn with_history(mut self) -> Self {
        self.calls = Some(Arc::default());
        self
    }

    /// Also appends `<unix ms> <uuid> <number>` to `path` for every call placed.
    pub fn with_call_log(mut self, path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        self.call_log = Some(Mutex::new(file));
        Ok(self)
    }

    /// Every call placed so far, in order of placing; empty unless made `with_history`.
    pub fn calls(&self) -> Vec<SimCall> {
        self.calls
            .as_ref()
            .map(|calls| calls.lock().expect("sim log lock").clone())
            .unwrap_or_default()
    }
}

impl Telephony for SimBackend {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn place_call(&self, request: CallRequest) -> CallHandle {
        let (handle, channels) = call_channels();
        let index = self.calls.as_ref().map(|calls| {
            let mut calls = calls.lock().expect("sim log lock");
            calls.push(SimCall {
                task_id: request.settings.task_id,
                uuid: request.uuid.clone(),
                dest_number: request.dest_number.clone(),
                started: Instant::now(),
                ended: None,
                cause: None,
            });
            calls.len() - 1
        });
        if let Some(log) = &self.call_log {
            let millis = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis();
            let line = format!("{millis} {} {}\n", request.uuid, request.dest_number);
            if let Err(error) = log
                .lock()
                .expect("sim call log lock")
                .write_all(line.as_bytes())
            {
                tracing::warn!(%error, "could not append to the sim call log");
            }
        }
        let plan = CallPlan::new(&request, self.time_scale);
        let calls = self.calls.clone();
        let mut channels = channels;
        tokio::spawn(async move {
            let outcome = plan.run(&mut channels).await;
            if let (Some(calls), Some(index)) = (calls, index) {
                if let Some(call) = calls.lock().expect("sim log lock").get_mut(index) {
                    call.ended = Some(Instant::now());
                    call.cause = Some(outcome.cause.as_str());
                }
            }
            let _ = channels.events.send(CallEvent::Ended(outcome));
        });
        handle
    }
}

/// The most call starts within any window of `window` (closed at both ends), for checking pacing
/// from the callee's side.
pub fn max_starts_in_window<'a>(
    calls: impl IntoIterator<Item = &'a SimCall>,
    window: Duration,
) -> usize {
    let mut starts: Vec<Instant> = calls.into_iter().map(|call| call.started).collect();
    starts.sort();
    let mut most = 0;
    let mut first = 0;
    for last in 0..starts.len() {
        while starts[last].duration_since(starts[first]) > window {
            first += 1;
        }
        most = most.max(last - first + 1);
    }
    most
}

/// The most calls alive at one instant; a call is alive from its start until its end (or now).
pub fn max_concurrent<'a>(calls: impl IntoIterator<Item = &'a SimCall>) -> usize {
    let now = Instant::now();
    let mut events: Vec<(Instant, i32)> = Vec::new();
    for call in calls {
        events.push((call.started, 1));
        events.push((call.ended.unwrap_or(now), -1));
    }
    // At equal instants an end comes before a start: the slot is free again.
    events.sort_by_key(|&(at, delta)| (at, delta));
    let (mut alive, mut most) = (0i32, 0i32);
    for (_, delta) in events {
        alive += delta;
        most = most.max(alive);
    }
    most as usize
}

/// One simulated call, its durations already scaled.
struct CallPlan {
    callee: Callee,
    scale: f64,
    ring_timeout: Duration,
    confirm: Option<(String, Duration)>,
    action: AfterAnswer,
}

enum Interrupted {
    HangUp(HangupCause),
}

impl CallPlan {
    fn new(request: &CallRequest, scale: f64) -> Self {
        let settings = &request.settings;
        CallPlan {
            callee: callee_for(&request.dest_number),
            scale,
            ring_timeout: settings.calling_time.mul_f64(scale),
            confirm: settings
                .confirm
                .as_ref()
                .map(|c| (c.key.clone(), c.timeout.mul_f64(scale))),
            action: settings.action.clone(),
        }
    }

    fn scaled(&self, duration: Duration) -> Duration {
        duration.mul_f64(self.scale)
    }

    /// Waits `duration` unless the dialer hangs up first.
    async fn wait(
        &self,
        channels: &mut CallChannels,
        duration: Duration,
    ) -> Result<(), Interrupted> {
        tokio::select! {
            _ = sleep(duration) => Ok(()),
            command = channels.commands.recv() => match command {
                Some(CallCommand::HangUp(cause)) => Err(Interrupted::HangUp(cause)),
                // The dialer dropped its handle: nobody will hang up, let the call run its course.
                None => { sleep(duration).await; Ok(()) }
            },
        }
    }

    async fn run(&self, channels: &mut CallChannels) -> CallOutcome {
        let ended = |cause: HangupCause, sip_code: Option<u16>, answered_at: Option<SystemTime>| {
            CallOutcome {
                cause,
                sip_code,
                answered_at,
                ended_at: SystemTime::now(),
                recording: None,
            }
        };
        let _ = channels
            .events
            .send(CallEvent::Progress { early_media: false });
        // Ringing: until the callee's final answer, or the ring timeout, or our hang-up.
        let final_answer_after = match self.callee {
            Callee::NeverAnswers => None,
            Callee::Fails { ring, .. } | Callee::Answers { ring, .. } => Some(self.scaled(ring)),
        };
        let Some(ring) = final_answer_after.filter(|ring| *ring < self.ring_timeout) else {
            return match self.wait(channels, self.ring_timeout).await {
                Ok(()) => ended(HangupCause::NO_ANSWER, Some(487), None),
                Err(Interrupted::HangUp(cause)) => ended(cause, Some(487), None),
            };
        };
        if let Err(Interrupted::HangUp(cause)) = self.wait(channels, ring).await {
            return ended(cause, Some(487), None);
        }
        let (talk, press) = match self.callee {
            Callee::Answers { talk, press, .. } => (self.scaled(talk), press),
            Callee::Fails {
                cause, sip_code, ..
            } => return ended(cause, Some(sip_code), None),
            Callee::NeverAnswers => unreachable!("a callee that never answers has no final answer"),
        };
        let answered_at = SystemTime::now();
        let answered = Instant::now();
        let _ = channels
            .events
            .send(CallEvent::Answered { at: answered_at });
        let hang_up_at = answered + talk;

        // The key the callee presses, if any, and when.
        let confirm_key = self.confirm.as_ref().map(|(key, _)| key.as_str());
        let pressed = press.map(|press| pressed_keys(press, confirm_key));
        let press_at = answered + self.scaled(PRESS_AFTER);

        if let Some((key, timeout)) = &self.confirm {
            let deadline = answered + *timeout;
            let press_in_time = pressed
                .as_ref()
                .filter(|_| press_at < deadline && press_at < hang_up_at);
            match press_in_time {
                Some(digits) => {
                    if let Err(Interrupted::HangUp(cause)) =
                        self.wait_until(channels, press_at).await
                    {
                        return ended(cause, Some(200), Some(answered_at));
                    }
                    for digit in digits.chars() {
                        let _ = channels.events.send(CallEvent::Digit(digit));
                    }
                    if digits != key {
                        return ended(HangupCause::CALL_REJECTED, Some(200), Some(answered_at));
                    }
                }
                None if hang_up_at <= deadline => {
                    let result = self.wait_until(channels, hang_up_at).await;
                    let cause = match result {
                        Ok(()) => HangupCause::NORMAL_CLEARING,
                        Err(Interrupted::HangUp(cause)) => cause,
                    };
                    return ended(cause, Some(200), Some(answered_at));
                }
                None => {
                    let result = self.wait_until(channels, deadline).await;
                    let cause = match result {
                        Ok(()) => HangupCause::NO_USER_RESPONSE,
                        Err(Interrupted::HangUp(cause)) => cause,
                    };
                    return ended(cause, Some(200), Some(answered_at));
                }
            }
        } else if let Some(digits) = pressed.filter(|_| press_at < hang_up_at) {
            // No confirm asked: the key is only recorded.
            if let Err(Interrupted::HangUp(cause)) = self.wait_until(channels, press_at).await {
                return ended(cause, Some(200), Some(answered_at));
            }
            for digit in digits.chars() {
                let _ = channels.events.send(CallEvent::Digit(digit));
            }
        }

        // The action: hang up at once, or play / transfer for as long as the callee stays.
        if self.action == AfterAnswer::Hangup {
            return ended(HangupCause::NORMAL_CLEARING, Some(200), Some(answered_at));
        }
        let cause = match self.wait_until(channels, hang_up_at).await {
            Ok(()) => HangupCause::NORMAL_CLEARING,
            Err(Interrupted::HangUp(cause)) => cause,
        };
        ended(cause, Some(200), Some(answered_at))
    }

    async fn wait_until(
        &self,
        channels: &mut CallChannels,
        instant: Instant,
    ) -> Result<(), Interrupted> {
        self.wait(channels, instant.saturating_duration_since(Instant::now()))
            .await
    }
}

/// A key that differs from the first key of `confirm_key`.
fn wrong_key(confirm_key: &str) -> char {
    if confirm_key.starts_with('9') {
        '8'
    } else {
        '9'
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(started_ms: u64, ended_ms: u64, origin: Instant) -> SimCall {
        SimCall {
            task_id: 1,
            uuid: String::new(),
            dest_number: String::new(),
            started: origin + Duration::from_millis(started_ms),
            ended: Some(origin + Duration::from_millis(ended_ms)),
            cause: None,
        }
    }

    fn request(number: &str) -> CallRequest {
        CallRequest {
            uuid: "u".into(),
            number_id: 1,
            dest_number: number.into(),
            settings: Arc::new(super::super::CallSettings {
                task_id: 1,
                context: String::new(),
                dest_context: String::new(),
                cid_number: String::new(),
                cid_name: String::new(),
                calling_time: Duration::from_secs(30),
                confirm: None,
                action: AfterAnswer::Hangup,
                auto_record: false,
                disable_ring_back: false,
            }),
        }
    }

    async fn ended(mut handle: CallHandle) -> CallOutcome {
        loop {
            match handle.events.recv().await.expect("the call ends") {
                CallEvent::Ended(outcome) => return outcome,
                _ => continue,
            }
        }
    }

    #[tokio::test]
    async fn calls_are_remembered_only_when_asked() {
        let plain = SimBackend::new(0.001);
        let outcome = ended(plain.place_call(request("1009"))).await;
        assert_eq!(outcome.cause, HangupCause::UNALLOCATED_NUMBER);
        assert!(plain.calls().is_empty(), "no history by default");
        assert!(plain.calls.is_none());

        let remembering = SimBackend::new(0.001).with_history();
        ended(remembering.place_call(request("1009"))).await;
        let calls = remembering.calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].dest_number, "1009");
    }

    #[test]
    fn window_and_concurrency_counts() {
        let origin = Instant::now();
        let calls = [
            call(0, 500, origin),
            call(400, 900, origin),
            call(500, 2000, origin),
            call(1000, 1100, origin),
        ];
        assert_eq!(max_starts_in_window(&calls, Duration::from_secs(1)), 4);
        assert_eq!(max_starts_in_window(&calls, Duration::from_millis(999)), 3);
        // At 500 ms the first ends as the third starts: two alive, not three.
        assert_eq!(max_concurrent(&calls), 2);
    }

    #[test]
    fn rules_by_last_digit() {
        assert!(matches!(
            callee_for("1004"),
            Callee::Fails {
                cause: HangupCause::USER_BUSY,
                sip_code: 486,
                ..
            }
        ));
        assert_eq!(callee_for("+861385"), Callee::NeverAnswers);
        assert!(matches!(
            callee_for("7"),
            Callee::Answers {
                press: Some(Press::ConfirmKey),
                ..
            }
        ));
        assert!(
            matches!(callee_for("1#"), Callee::Answers { press: None, .. }),
            "the last digit, not the last key"
        );
    }

    fn settings(
        confirm: Option<(&str, u64)>,
        action: AfterAnswer,
        calling_time: u64,
    ) -> CallSettings {
        CallSettings {
            task_id: 1,
            context: String::new(),
            dest_context: String::new(),
            cid_number: String::new(),
            cid_name: String::new(),
            calling_time: Duration::from_secs(calling_time),
            confirm: confirm.map(|(key, timeout)| super::super::Confirm {
                key: key.to_owned(),
                timeout: Duration::from_secs(timeout),
                prompt: None,
            }),
            action,
            auto_record: false,
            disable_ring_back: false,
        }
    }

    /// The table the tests read agrees with what a simulated call really does, for every digit.
    #[tokio::test]
    async fn calls_end_as_the_table_says() {
        let playback = AfterAnswer::Playback(super::super::MediaRef {
            media_id: None,
            media_path: "p.wav".into(),
            media_type: String::new(),
            media_name: String::new(),
        });
        let cases = [
            settings(None, playback.clone(), 30),
            settings(None, AfterAnswer::Hangup, 30),
            settings(Some(("1", 5)), playback.clone(), 30),
            settings(Some(("9", 5)), playback.clone(), 30),
            settings(Some(("1", 2)), playback.clone(), 30),
            settings(Some(("1#", 3)), AfterAnswer::Hangup, 30),
            settings(None, playback, 1),
        ];
        let sim = SimBackend::new(0.01);
        let mut checks = Vec::new();
        for (case, settings) in cases.into_iter().enumerate() {
            let settings = Arc::new(settings);
            for digit in 0..10 {
                let number = format!("100{digit}");
                let expected = expected_outcome(&number, &settings);
                let handle = sim.place_call(CallRequest {
                    uuid: format!("{case}-{digit}"),
                    number_id: 1,
                    dest_number: number.clone(),
                    settings: settings.clone(),
                });
                checks.push(tokio::spawn(async move {
                    let mut events = handle.events;
                    let (mut dtmf, mut answered) = (String::new(), false);
                    loop {
                        match events.recv().await.expect("a call ends with Ended") {
                            CallEvent::Digit(key) => dtmf.push(key),
                            CallEvent::Answered { .. } => answered = true,
                            CallEvent::Progress { .. } => {}
                            CallEvent::Ended(outcome) => {
                                let seen = Expected {
                                    cause: outcome.cause,
                                    dtmf,
                                    answered,
                                };
                                assert_eq!(seen, expected, "case {case}, number {number}");
                                return;
                            }
                        }
                    }
                }));
            }
        }
        for check in checks {
            check.await.unwrap();
        }
    }
}
