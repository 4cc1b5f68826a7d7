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

use super::{
    spawn_call, AfterAnswer, CallHandle, CallLine, CallOutcome, CallRequest, CallSettings, Confirm,
    HangupCause, KeyCheck, Telephony, NO_KEY, WRONG_KEY,
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
    let script = Script::of(
        callee_for(dest_number),
        settings.calling_time,
        settings.confirm.as_ref(),
        &settings.action,
    );
    match script {
        Script::Unanswered { cause, .. } => Expected {
            cause,
            dtmf: String::new(),
            answered: false,
        },
        Script::Answered { keys, cause, .. } => Expected {
            cause,
            dtmf: keys.map(|(_, keys)| keys).unwrap_or_default(),
            answered: true,
        },
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
        spawn_call(|mut line| async move {
            let outcome = plan.run(&mut line).await;
            if let (Some(calls), Some(index)) = (calls, index) {
                if let Some(call) = calls.lock().expect("sim log lock").get_mut(index) {
                    call.ended = Some(Instant::now());
                    call.cause = Some(outcome.cause.as_str());
                }
            }
            outcome
        })
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

/// How a simulated call goes when the dialer lets it run, in the table's (unscaled) time.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Script {
    /// A final failure `after` the INVITE, or the ring timeout (`NO_ANSWER`, 487).
    Unanswered {
        after: Duration,
        cause: HangupCause,
        sip_code: u16,
    },
    /// Answered `ring` after the INVITE; then, counted from the answer, the keys pressed and when,
    /// and the end.
    Answered {
        ring: Duration,
        keys: Option<(Duration, String)>,
        end: Duration,
        cause: HangupCause,
    },
}

impl Script {
    fn of(
        callee: Callee,
        calling_time: Duration,
        confirm: Option<&Confirm>,
        action: &AfterAnswer,
    ) -> Script {
        let ring_timeout = Script::Unanswered {
            after: calling_time,
            cause: HangupCause::NO_ANSWER,
            sip_code: 487,
        };
        match callee {
            Callee::NeverAnswers => ring_timeout,
            Callee::Fails { ring, .. } | Callee::Answers { ring, .. } if ring >= calling_time => {
                ring_timeout
            }
            Callee::Fails {
                ring,
                cause,
                sip_code,
            } => Script::Unanswered {
                after: ring,
                cause,
                sip_code,
            },
            Callee::Answers { ring, talk, press } => {
                let (keys, end, cause) = after_answer(talk, press, confirm, action);
                Script::Answered {
                    ring,
                    keys,
                    end,
                    cause,
                }
            }
        }
    }
}

/// The answered call: the keys the callee presses [`PRESS_AFTER`] the answer (those the confirm
/// step reads, up to its verdict), when the call ends and why.
fn after_answer(
    talk: Duration,
    press: Option<Press>,
    confirm: Option<&Confirm>,
    action: &AfterAnswer,
) -> (Option<(Duration, String)>, Duration, HangupCause) {
    let pressed = press.map(|press| pressed_keys(press, confirm.map(|c| c.key.as_str())));
    let Some(confirm) = confirm else {
        // No confirm asked: a key is only recorded.
        let keys = pressed
            .filter(|_| PRESS_AFTER < talk)
            .map(|keys| (PRESS_AFTER, keys));
        let started = keys.as_ref().map_or(Duration::ZERO, |(at, _)| *at);
        return (
            keys,
            action_end(action, started, talk),
            HangupCause::NORMAL_CLEARING,
        );
    };
    let in_time = pressed.filter(|_| PRESS_AFTER < confirm.timeout && PRESS_AFTER < talk);
    let mut read = String::new();
    let mut check = confirm.check(&read);
    for key in in_time.iter().flat_map(|keys| keys.chars()) {
        read.push(key);
        check = confirm.check(&read);
        if check != KeyCheck::Incomplete {
            break;
        }
    }
    let keys = Some((PRESS_AFTER, read)).filter(|(_, keys)| !keys.is_empty());
    match check {
        KeyCheck::Confirmed => {
            let started = keys.as_ref().map_or(Duration::ZERO, |(at, _)| *at);
            let end = action_end(action, started, talk);
            (keys, end, HangupCause::NORMAL_CLEARING)
        }
        KeyCheck::Wrong => (keys, PRESS_AFTER, WRONG_KEY),
        KeyCheck::Incomplete if talk <= confirm.timeout => {
            (keys, talk, HangupCause::NORMAL_CLEARING)
        }
        KeyCheck::Incomplete => (keys, confirm.timeout, NO_KEY),
    }
}

/// When the action started at `started` ends: `Hangup` at once, anything else when the callee
/// hangs up after `talk`.
fn action_end(action: &AfterAnswer, started: Duration, talk: Duration) -> Duration {
    match action {
        AfterAnswer::Hangup => started,
        AfterAnswer::Playback(_) | AfterAnswer::Transfer(_) => talk,
    }
}

/// One simulated call: its script, played at the back end's time scale.
struct CallPlan {
    script: Script,
    scale: f64,
}

impl CallPlan {
    fn new(request: &CallRequest, scale: f64) -> Self {
        let settings = &request.settings;
        let script = Script::of(
            callee_for(&request.dest_number),
            settings.calling_time,
            settings.confirm.as_ref(),
            &settings.action,
        );
        CallPlan { script, scale }
    }

    async fn run(self, line: &mut CallLine) -> CallOutcome {
        let ended = |cause, sip_code, answered_at| CallOutcome {
            cause,
            sip_code: Some(sip_code),
            answered_at,
            ended_at: SystemTime::now(),
            recording: None,
        };
        line.progress(false);
        match self.script {
            Script::Unanswered {
                after,
                cause,
                sip_code,
            } => match self.wait(line, Instant::now() + self.scaled(after)).await {
                Ok(()) => ended(cause, sip_code, None),
                Err(ours) => ended(ours, 487, None),
            },
            Script::Answered {
                ring,
                ref keys,
                end,
                cause,
            } => {
                if let Err(ours) = self.wait(line, Instant::now() + self.scaled(ring)).await {
                    return ended(ours, 487, None);
                }
                let answered_at = SystemTime::now();
                line.answered(answered_at);
                let cause = self.talk(line, keys.as_ref(), end, cause).await;
                ended(cause, 200, Some(answered_at))
            }
        }
    }

    /// From the answer on: the keys, then the end, unless the dialer hangs up first.
    async fn talk(
        &self,
        line: &mut CallLine,
        keys: Option<&(Duration, String)>,
        end: Duration,
        cause: HangupCause,
    ) -> HangupCause {
        let answered = Instant::now();
        if let Some((at, keys)) = keys {
            if let Err(ours) = self.wait(line, answered + self.scaled(*at)).await {
                return ours;
            }
            keys.chars().for_each(|key| line.digit(key));
        }
        match self.wait(line, answered + self.scaled(end)).await {
            Ok(()) => cause,
            Err(ours) => ours,
        }
    }

    fn scaled(&self, duration: Duration) -> Duration {
        duration.mul_f64(self.scale)
    }

    /// Waits until `instant` unless the dialer hangs up first (then the error is its cause).
    async fn wait(&self, line: &mut CallLine, instant: Instant) -> Result<(), HangupCause> {
        let until = tokio::time::Instant::from_std(instant);
        if until <= tokio::time::Instant::now() {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep_until(until) => Ok(()),
            Some(cause) = line.hang_up_requested() => Err(cause),
        }
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
    use crate::telephony::CallEvent;

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
            settings: Arc::new(CallSettings::for_test("")),
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
            calling_time: Duration::from_secs(calling_time),
            confirm: confirm.map(|(key, timeout)| super::super::Confirm {
                key: key.to_owned(),
                timeout: Duration::from_secs(timeout),
                prompt: None,
            }),
            action,
            ..CallSettings::for_test("")
        }
    }

    /// The confirm policy read through the table: keys checked as they come, a wrong one ends the
    /// call, a missing one times out, unless the callee hangs up first.
    #[test]
    fn the_table_under_each_confirm_setting() {
        let playback = AfterAnswer::Transfer("1000".into());
        let expect = |cause, dtmf: &str, answered| Expected {
            cause,
            dtmf: dtmf.to_owned(),
            answered,
        };
        for (number, settings, expected) in [
            (
                "7",
                settings(Some(("1#", 5)), playback.clone(), 30),
                expect(HangupCause::NORMAL_CLEARING, "1#", true),
            ),
            (
                "8",
                settings(Some(("1#", 5)), playback.clone(), 30),
                expect(WRONG_KEY, "9", true),
            ),
            (
                "8",
                settings(Some(("9", 5)), playback.clone(), 30),
                expect(WRONG_KEY, "8", true),
            ),
            // Talks 5 s, the key is never pressed: the confirm step gives up at 2 s.
            (
                "0",
                settings(Some(("1", 2)), playback.clone(), 30),
                expect(NO_KEY, "", true),
            ),
            // Hangs up after 1 s, before the 5 s are over.
            (
                "3",
                settings(Some(("1", 5)), playback.clone(), 30),
                expect(HangupCause::NORMAL_CLEARING, "", true),
            ),
            // Without a confirm step the key is only recorded.
            (
                "7",
                settings(None, AfterAnswer::Hangup, 30),
                expect(HangupCause::NORMAL_CLEARING, "1", true),
            ),
            (
                "1",
                settings(None, playback.clone(), 2),
                expect(HangupCause::NO_ANSWER, "", false),
            ),
            (
                "4",
                settings(None, playback, 30),
                expect(HangupCause::USER_BUSY, "", false),
            ),
        ] {
            assert_eq!(
                expected_outcome(number, &settings),
                expected,
                "{number} {settings:?}"
            );
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
