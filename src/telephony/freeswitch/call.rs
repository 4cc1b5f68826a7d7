//! One call's result from FreeSWITCH's events, as a pure state machine: [`CallTracker`] is fed
//! what the event socket says about the call's channels and its originate job, and answers
//! what the call's body must do ([`Action`]). No I/O, no clock of its own.
//!
//! What the live switch shows (and the captures in `tests/fixtures/esl/`):
//! - The channel we originate has our `origination_uuid` as its `Unique-ID`. Through the
//!   default `loopback/…` dial string it is the loopback's A leg; its B leg carries our uuid in
//!   `variable_origination_uuid`, and the SIP leg the B leg bridges to names the B leg in
//!   `Other-Leg-Unique-ID`. Those other legs are followed too: the SIP code
//!   (`variable_sip_term_status`), the first answer and the callee's keys come from them.
//! - Keys: every leg a digit crosses reports it, so only keys reported by a leg that is not a
//!   loopback leg are counted (the SIP leg, or our own channel when it is not a loopback).
//! - Busy: our channel's `CHANNEL_HANGUP_COMPLETE` comes before the job's `-ERR USER_BUSY`; no
//!   answer: the job's `-ERR NO_ANSWER` comes first, the hangup after. A job error with no
//!   channel ever created (unreachable gateway, bad dial string, a switch shutting down) ends
//!   the call at once; with a channel, its hangup is awaited, at most [`HANGUP_AFTER_JOB`].
//! - Confirm: FreeSWITCH plays `group_confirm_file` and waits for `group_confirm_key` itself; the
//!   job's `+OK` arrives only after the right key. A wrong key or silence ends the answered
//!   call `NO_ANSWER` at the originate timeout. Such a call is reported with the shared confirm
//!   policy's causes instead ([`WRONG_KEY`] when the keys pressed are wrong, else
//!   [`NO_KEY`]), so that results read as with the sim and sip back ends; a wrong key also
//!   hangs the call up at once rather than at the originate timeout.

use std::{
    collections::HashMap,
    path::PathBuf,
    time::{Duration, Instant, SystemTime},
};

use crate::telephony::{
    esl::Event, CallOutcome, Confirm, HangupCause, KeyCheck, NO_KEY, WRONG_KEY,
};

/// After a job error, how long the channel's own hangup is awaited (it carries the SIP code and
/// the end time).
pub const HANGUP_AFTER_JOB: Duration = Duration::from_secs(10);
/// After our channel's hangup, how long the call's other legs are awaited for their SIP code.
pub const OTHER_LEGS_GRACE: Duration = Duration::from_secs(1);

/// The cause of a call whose outcome is unknown: it was alive (or its originate unacknowledged)
/// when the event socket was lost, and FreeSWITCH no longer knows it after the reconnect. Never
/// produced otherwise by this back end; such a number is not dialed again.
pub const OUTCOME_UNKNOWN: HangupCause = HangupCause::UNSPECIFIED;

/// A channel event that concerns a call, as the tracker needs it.
#[derive(Debug, Clone, PartialEq)]
pub enum ChannelUpdate {
    Created,
    Progress {
        early_media: bool,
    },
    Answered {
        at: SystemTime,
    },
    Digit(char),
    RecordStarted,
    HangupComplete {
        cause: HangupCause,
        sip_code: Option<u16>,
        at: SystemTime,
    },
}

/// Which of the call's channels an update is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leg {
    pub uuid: String,
    /// Ours: its `Unique-ID` is the call's `origination_uuid`.
    pub main: bool,
    /// A `loopback/…` channel (the default dial string makes two).
    pub loopback: bool,
    /// A `sofia/…` channel: a SIP call.
    pub sip: bool,
}

/// What the originate's `BACKGROUND_JOB` said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobResult {
    /// `+OK <uuid>`: answered (and confirmed, with a confirm key).
    Placed,
    /// `-ERR <CAUSE>`.
    Failed(HangupCause),
}

impl JobResult {
    /// From the job's body: `+OK <uuid>\n`, `-ERR USER_BUSY\n`; anything else (usage errors)
    /// is a failure to place the call.
    pub fn parse(body: &str) -> JobResult {
        let body = body.trim();
        if body.starts_with("+OK") {
            return JobResult::Placed;
        }
        let cause = body
            .strip_prefix("-ERR")
            .map(str::trim)
            .and_then(|name| name.split_whitespace().next())
            .and_then(|name| name.parse::<HangupCause>().ok())
            .unwrap_or(HangupCause::NORMAL_TEMPORARY_FAILURE);
        JobResult::Failed(cause)
    }
}

/// What the call's body must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Progress {
        early_media: bool,
    },
    Answered {
        at: SystemTime,
    },
    Digit(char),
    /// `uuid_kill` our channel with this cause.
    Kill(HangupCause),
    /// The call is over: its one and only outcome.
    End(CallOutcome),
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Hangup {
    cause: HangupCause,
    at: SystemTime,
}

#[derive(Debug)]
pub struct CallTracker {
    confirm: Option<Confirm>,
    recording: Option<PathBuf>,
    /// Every leg seen, by uuid: hung up or not.
    legs: HashMap<String, bool>,
    main_seen: bool,
    progress_sent: Option<bool>,
    answered_at: Option<SystemTime>,
    digits: String,
    /// Where the keys left the confirm step; keys after the whole key do not count against it.
    key_check: KeyCheck,
    recording_started: bool,
    job: Option<JobResult>,
    hangup: Option<Hangup>,
    sip_code: Option<u16>,
    /// A SIP leg answered: its INVITE got a 200, whoever sent the BYE (FreeSWITCH gives no
    /// `sip_term_status` when it hangs up itself).
    sip_answered: bool,
    /// A hang-up the dialer asked for, sent once our channel exists.
    kill: Option<HangupCause>,
    kill_sent: bool,
    /// When to give up waiting (for the hangup after a job error, or for the other legs).
    deadline: Option<Instant>,
    ended: bool,
}

impl CallTracker {
    /// `recording`: the file `record_session` writes, when the task records.
    pub fn new(confirm: Option<Confirm>, recording: Option<PathBuf>) -> Self {
        CallTracker {
            confirm,
            recording,
            legs: HashMap::new(),
            main_seen: false,
            progress_sent: None,
            answered_at: None,
            digits: String::new(),
            key_check: KeyCheck::Incomplete,
            recording_started: false,
            job: None,
            hangup: None,
            sip_code: None,
            sip_answered: false,
            kill: None,
            kill_sent: false,
            deadline: None,
            ended: false,
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Whether our channel has been seen (so `uuid_kill` can reach it).
    pub fn channel_exists(&self) -> bool {
        self.main_seen && self.hangup.is_none()
    }

    pub fn on_channel(&mut self, leg: &Leg, update: ChannelUpdate, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.ended {
            return actions;
        }
        let first_sight = !self.legs.contains_key(&leg.uuid);
        if first_sight {
            self.legs.insert(leg.uuid.clone(), false);
        }
        if leg.main && !self.main_seen {
            self.main_seen = true;
            if let Some(cause) = self.kill.filter(|_| !self.kill_sent) {
                self.kill_sent = true;
                actions.push(Action::Kill(cause));
            }
        }
        match update {
            ChannelUpdate::Created => {}
            ChannelUpdate::Progress { early_media } => {
                if self.answered_at.is_none()
                    && !leg.loopback
                    && self.progress_sent != Some(early_media)
                {
                    self.progress_sent = Some(early_media);
                    actions.push(Action::Progress { early_media });
                }
            }
            ChannelUpdate::Answered { at } => {
                self.sip_answered |= leg.sip;
                if self.answered_at.is_none() {
                    self.answered_at = Some(at);
                    actions.push(Action::Answered { at });
                }
            }
            ChannelUpdate::Digit(digit) => {
                if !leg.loopback {
                    self.digits.push(digit);
                    actions.push(Action::Digit(digit));
                    if let Some(confirm) = &self.confirm {
                        if self.key_check == KeyCheck::Incomplete {
                            self.key_check = confirm.check(&self.digits);
                            let unconfirmed = self.job != Some(JobResult::Placed);
                            if self.key_check == KeyCheck::Wrong
                                && unconfirmed
                                && self.kill.is_none()
                            {
                                // FreeSWITCH would replay the prompt until the originate timeout.
                                self.kill = Some(WRONG_KEY);
                                if self.channel_exists() {
                                    self.kill_sent = true;
                                    actions.push(Action::Kill(WRONG_KEY));
                                }
                            }
                        }
                    }
                }
            }
            ChannelUpdate::RecordStarted => {
                if leg.main {
                    self.recording_started = true;
                }
            }
            ChannelUpdate::HangupComplete {
                cause,
                sip_code,
                at,
            } => {
                self.legs.insert(leg.uuid.clone(), true);
                if sip_code.is_some() {
                    self.sip_code = sip_code;
                }
                if leg.main && self.hangup.is_none() {
                    self.hangup = Some(Hangup { cause, at });
                    self.deadline = Some(now + OTHER_LEGS_GRACE);
                }
                if self.hangup.is_some() && self.legs.values().all(|hung_up| *hung_up) {
                    actions.push(self.end(now, SystemTime::now()));
                }
            }
        }
        actions
    }

    pub fn on_job(&mut self, result: JobResult, now: Instant, wall: SystemTime) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.ended || self.job.is_some() {
            return actions;
        }
        self.job = Some(result);
        match result {
            JobResult::Placed => {
                // The job names our channel: it exists even if its CHANNEL_CREATE was missed.
                self.main_seen = true;
                if let Some(cause) = self.kill.filter(|_| !self.kill_sent) {
                    self.kill_sent = true;
                    actions.push(Action::Kill(cause));
                }
            }
            JobResult::Failed(_) if self.hangup.is_some() => {}
            JobResult::Failed(_) if self.legs.is_empty() => actions.push(self.end(now, wall)),
            JobResult::Failed(_) => self.deadline = Some(now + HANGUP_AFTER_JOB),
        }
        actions
    }

    /// The dialer asks to hang up.
    pub fn on_hang_up(&mut self, cause: HangupCause) -> Vec<Action> {
        if self.ended || self.kill_sent {
            return Vec::new();
        }
        self.kill = Some(self.kill.unwrap_or(cause));
        if self.channel_exists() {
            self.kill_sent = true;
            return vec![Action::Kill(self.kill.unwrap_or(cause))];
        }
        Vec::new()
    }

    /// The deadline passed: end with what is known.
    pub fn on_deadline(&mut self, now: Instant, wall: SystemTime) -> Vec<Action> {
        match self.deadline {
            Some(deadline) if !self.ended && now >= deadline => vec![self.end(now, wall)],
            _ => Vec::new(),
        }
    }

    /// FreeSWITCH does not know the call (after a lost connection), or its originate could not
    /// be sent: its outcome is unknown.
    pub fn on_lost(&mut self, wall: SystemTime) -> Vec<Action> {
        if self.ended {
            return Vec::new();
        }
        self.ended = true;
        self.deadline = None;
        vec![Action::End(CallOutcome {
            cause: OUTCOME_UNKNOWN,
            sip_code: None,
            answered_at: self.answered_at,
            ended_at: wall,
            recording: None,
        })]
    }

    fn end(&mut self, _now: Instant, wall: SystemTime) -> Action {
        self.ended = true;
        self.deadline = None;
        let (cause, ended_at) = match (self.hangup, self.job) {
            (Some(hangup), _) => (hangup.cause, hangup.at),
            (None, Some(JobResult::Failed(cause))) => (cause, wall),
            (None, _) => (HangupCause::NORMAL_TEMPORARY_FAILURE, wall),
        };
        let cause = match self.key_check {
            _ if self.confirm.is_none()
                || self.answered_at.is_none()
                || self.job == Some(JobResult::Placed) =>
            {
                cause
            }
            KeyCheck::Wrong => WRONG_KEY,
            KeyCheck::Confirmed => cause,
            KeyCheck::Incomplete => NO_KEY,
        };
        let recording = self
            .recording
            .clone()
            .filter(|path| self.recording_started || path.exists());
        Action::End(CallOutcome {
            cause,
            sip_code: self.sip_code.or(self.sip_answered.then_some(200)),
            answered_at: self.answered_at,
            ended_at,
            recording,
        })
    }
}

/// Where an event belongs.
#[derive(Debug, Clone, PartialEq)]
pub enum Routed {
    /// A channel event; `call` is whichever of the call's uuids matched the event.
    Channel {
        unique_id: String,
        origination_uuid: Option<String>,
        other_leg: Option<String>,
        loopback: bool,
        sip: bool,
        update: ChannelUpdate,
    },
    Job {
        job_uuid: String,
        result: JobResult,
    },
    Shutdown,
    Other,
}

/// Reads what matters of an event.
pub fn classify(event: &Event, now: SystemTime) -> Routed {
    let update = match event.name() {
        "BACKGROUND_JOB" => {
            return match event.get("Job-UUID") {
                Some(job_uuid) => Routed::Job {
                    job_uuid: job_uuid.to_owned(),
                    result: JobResult::parse(event.body().unwrap_or_default()),
                },
                None => Routed::Other,
            }
        }
        "SHUTDOWN" => return Routed::Shutdown,
        "CHANNEL_CREATE" => ChannelUpdate::Created,
        "CHANNEL_PROGRESS" => ChannelUpdate::Progress { early_media: false },
        "CHANNEL_PROGRESS_MEDIA" => ChannelUpdate::Progress { early_media: true },
        "CHANNEL_ANSWER" => ChannelUpdate::Answered {
            at: microseconds(event, "Caller-Channel-Answered-Time")
                .or_else(|| microseconds(event, "Event-Date-Timestamp"))
                .unwrap_or(now),
        },
        "DTMF" => match event
            .get("DTMF-Digit")
            .and_then(|digit| digit.chars().next())
        {
            Some(digit) => ChannelUpdate::Digit(digit),
            None => return Routed::Other,
        },
        "RECORD_START" => ChannelUpdate::RecordStarted,
        "CHANNEL_HANGUP_COMPLETE" => ChannelUpdate::HangupComplete {
            cause: event
                .get("Hangup-Cause")
                .and_then(|cause| cause.parse().ok())
                .unwrap_or(HangupCause::NORMAL_UNSPECIFIED),
            // The final response received; after our CANCEL (no answer) only the failure
            // status says 487.
            sip_code: [
                "variable_sip_term_status",
                "variable_sip_invite_failure_status",
            ]
            .into_iter()
            .find_map(|header| event.get(header)?.trim().parse().ok()),
            at: microseconds(event, "Event-Date-Timestamp").unwrap_or(now),
        },
        _ => return Routed::Other,
    };
    let Some(unique_id) = event.get("Unique-ID") else {
        return Routed::Other;
    };
    Routed::Channel {
        unique_id: unique_id.to_owned(),
        origination_uuid: event.get("variable_origination_uuid").map(str::to_owned),
        other_leg: event.get("Other-Leg-Unique-ID").map(str::to_owned),
        loopback: event
            .get("Channel-Name")
            .is_some_and(|name| name.starts_with("loopback/")),
        sip: event
            .get("Channel-Name")
            .is_some_and(|name| name.starts_with("sofia/")),
        update,
    }
}

/// A FreeSWITCH time in microseconds since the epoch; `0` means never.
fn microseconds(event: &Event, header: &str) -> Option<SystemTime> {
    let micros: u64 = event.get(header)?.trim().parse().ok()?;
    (micros > 0).then(|| SystemTime::UNIX_EPOCH + Duration::from_micros(micros))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leg(uuid: &str, main: bool, loopback: bool) -> Leg {
        Leg {
            uuid: uuid.into(),
            main,
            loopback,
            sip: !loopback,
        }
    }

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + seconds)
    }

    fn hangup(cause: HangupCause, sip_code: Option<u16>, seconds: u64) -> ChannelUpdate {
        ChannelUpdate::HangupComplete {
            cause,
            sip_code,
            at: at(seconds),
        }
    }

    fn ended(actions: &[Action]) -> Option<&CallOutcome> {
        actions.iter().find_map(|action| match action {
            Action::End(outcome) => Some(outcome),
            _ => None,
        })
    }

    fn confirm(key: &str) -> Option<Confirm> {
        Some(Confirm {
            key: key.into(),
            timeout: Duration::from_secs(5),
            prompt: None,
        })
    }

    /// The default dial string's three channels: our loopback A leg, its B leg, the SIP leg.
    fn loopback_call(tracker: &mut CallTracker, now: Instant) -> (Leg, Leg, Leg) {
        let (a, b, sip) = (
            leg("a", true, true),
            leg("b", false, true),
            leg("s", false, false),
        );
        for each in [&a, &b, &sip] {
            assert!(tracker
                .on_channel(each, ChannelUpdate::Created, now)
                .is_empty());
        }
        (a, b, sip)
    }

    #[test]
    fn through_loopback_the_sip_leg_gives_the_keys_the_answer_and_the_code() {
        let now = Instant::now();
        let mut tracker = CallTracker::new(None, None);
        let (a, b, sip) = loopback_call(&mut tracker, now);
        let progress = tracker.on_channel(&a, ChannelUpdate::Progress { early_media: true }, now);
        assert!(progress.is_empty(), "a loopback's early media is its own");
        assert_eq!(
            tracker.on_channel(&sip, ChannelUpdate::Progress { early_media: false }, now),
            [Action::Progress { early_media: false }]
        );
        assert_eq!(
            tracker.on_channel(&sip, ChannelUpdate::Answered { at: at(1) }, now),
            [Action::Answered { at: at(1) }]
        );
        assert!(tracker
            .on_channel(&a, ChannelUpdate::Answered { at: at(2) }, now)
            .is_empty());
        // The same key crosses all three legs; it counts once.
        assert_eq!(
            tracker.on_channel(&sip, ChannelUpdate::Digit('5'), now),
            [Action::Digit('5')]
        );
        assert!(tracker
            .on_channel(&b, ChannelUpdate::Digit('5'), now)
            .is_empty());
        assert!(tracker
            .on_channel(&a, ChannelUpdate::Digit('5'), now)
            .is_empty());
        assert!(tracker.on_job(JobResult::Placed, now, at(2)).is_empty());
        // Our leg hangs up first (we hung up): the SIP leg's code is awaited.
        assert!(tracker
            .on_channel(&a, hangup(HangupCause::NORMAL_CLEARING, None, 9), now)
            .is_empty());
        assert!(tracker
            .on_channel(&b, hangup(HangupCause::NORMAL_CLEARING, None, 9), now)
            .is_empty());
        let actions = tracker.on_channel(
            &sip,
            hangup(HangupCause::NORMAL_CLEARING, Some(200), 9),
            now,
        );
        let outcome = ended(&actions).expect("ended");
        assert_eq!(outcome.cause, HangupCause::NORMAL_CLEARING);
        assert_eq!(outcome.sip_code, Some(200));
        assert_eq!(outcome.answered_at, Some(at(1)));
        assert_eq!(outcome.ended_at, at(9));
        assert!(tracker.is_ended());
        assert!(tracker
            .on_channel(&sip, ChannelUpdate::Digit('1'), now)
            .is_empty());
    }

    #[test]
    fn other_legs_that_never_hang_up_are_awaited_a_moment_only() {
        let now = Instant::now();
        let mut tracker = CallTracker::new(None, None);
        let (a, _, _) = loopback_call(&mut tracker, now);
        assert!(tracker
            .on_channel(&a, hangup(HangupCause::USER_BUSY, None, 3), now)
            .is_empty());
        assert_eq!(tracker.deadline(), Some(now + OTHER_LEGS_GRACE));
        assert!(tracker.on_deadline(now, at(4)).is_empty(), "not yet");
        let actions = tracker.on_deadline(now + OTHER_LEGS_GRACE, at(4));
        let outcome = ended(&actions).unwrap();
        assert_eq!(
            (outcome.cause, outcome.ended_at),
            (HangupCause::USER_BUSY, at(3))
        );
    }

    #[test]
    fn a_job_error_with_no_channel_ends_at_once() {
        let now = Instant::now();
        let mut tracker = CallTracker::new(None, None);
        let actions = tracker.on_job(JobResult::parse("-ERR CHAN_NOT_IMPLEMENTED\n"), now, at(5));
        let outcome = ended(&actions).unwrap();
        assert_eq!(outcome.cause, HangupCause::CHAN_NOT_IMPLEMENTED);
        assert_eq!((outcome.sip_code, outcome.ended_at), (None, at(5)));
    }

    #[test]
    fn a_job_error_with_a_channel_waits_for_its_hangup_but_not_forever() {
        let now = Instant::now();
        let mut tracker = CallTracker::new(None, None);
        tracker.on_channel(&leg("a", true, false), ChannelUpdate::Created, now);
        assert!(tracker
            .on_job(JobResult::Failed(HangupCause::NO_ANSWER), now, at(1))
            .is_empty());
        assert_eq!(tracker.deadline(), Some(now + HANGUP_AFTER_JOB));
        let actions = tracker.on_deadline(now + HANGUP_AFTER_JOB, at(11));
        let outcome = ended(&actions).unwrap();
        assert_eq!(
            (outcome.cause, outcome.ended_at),
            (HangupCause::NO_ANSWER, at(11))
        );
    }

    #[test]
    fn job_bodies() {
        assert_eq!(JobResult::parse("+OK 1234\n"), JobResult::Placed);
        assert_eq!(
            JobResult::parse("-ERR USER_BUSY\n"),
            JobResult::Failed(HangupCause::USER_BUSY)
        );
        assert_eq!(
            JobResult::parse("-USAGE: <call url> <exten>"),
            JobResult::Failed(HangupCause::NORMAL_TEMPORARY_FAILURE)
        );
        assert_eq!(
            JobResult::parse("-ERR no such thing"),
            JobResult::Failed(HangupCause::NORMAL_TEMPORARY_FAILURE)
        );
    }

    #[test]
    fn a_hang_up_before_the_channel_exists_is_sent_when_it_does() {
        let now = Instant::now();
        let mut tracker = CallTracker::new(None, None);
        assert!(tracker.on_hang_up(HangupCause::SYSTEM_SHUTDOWN).is_empty());
        assert_eq!(
            tracker.on_channel(&leg("a", true, false), ChannelUpdate::Created, now),
            [Action::Kill(HangupCause::SYSTEM_SHUTDOWN)]
        );
        assert!(
            tracker.on_hang_up(HangupCause::SYSTEM_SHUTDOWN).is_empty(),
            "once"
        );

        // Or when the job says the call is placed, if its CHANNEL_CREATE was missed.
        let mut tracker = CallTracker::new(None, None);
        tracker.on_hang_up(HangupCause::ALLOTTED_TIMEOUT);
        assert_eq!(
            tracker.on_job(JobResult::Placed, now, at(1)),
            [Action::Kill(HangupCause::ALLOTTED_TIMEOUT)]
        );

        // A live channel is killed at once.
        let mut tracker = CallTracker::new(None, None);
        tracker.on_channel(&leg("a", true, false), ChannelUpdate::Created, now);
        assert_eq!(
            tracker.on_hang_up(HangupCause::NORMAL_CLEARING),
            [Action::Kill(HangupCause::NORMAL_CLEARING)]
        );
    }

    #[test]
    fn confirm_without_the_jobs_ok_reads_as_the_shared_policy() {
        let now = Instant::now();
        let main = leg("a", true, false);
        let run = |pressed: &str, key: &str| {
            let mut tracker = CallTracker::new(confirm(key), None);
            let mut actions = tracker.on_channel(&main, ChannelUpdate::Created, now);
            actions.extend(tracker.on_channel(&main, ChannelUpdate::Answered { at: at(1) }, now));
            for digit in pressed.chars() {
                actions.extend(tracker.on_channel(&main, ChannelUpdate::Digit(digit), now));
            }
            // FreeSWITCH ends an unconfirmed call NO_ANSWER at the originate timeout.
            actions.extend(tracker.on_job(JobResult::Failed(HangupCause::NO_ANSWER), now, at(30)));
            actions.extend(tracker.on_channel(
                &main,
                hangup(HangupCause::NO_ANSWER, Some(200), 30),
                now,
            ));
            actions
        };
        let silent = run("", "1");
        assert_eq!(ended(&silent).unwrap().cause, NO_KEY);
        let wrong = run("9", "1");
        assert_eq!(ended(&wrong).unwrap().cause, WRONG_KEY);
        assert!(
            wrong.contains(&Action::Kill(WRONG_KEY)),
            "hung up at the wrong key"
        );
        let half = run("1", "12");
        assert_eq!(ended(&half).unwrap().cause, NO_KEY);
        assert!(!half.iter().any(|action| matches!(action, Action::Kill(_))));
        let more_after_the_key = run("11", "1");
        assert_eq!(
            ended(&more_after_the_key).unwrap().cause,
            HangupCause::NO_ANSWER
        );
        assert!(!more_after_the_key
            .iter()
            .any(|action| matches!(action, Action::Kill(_))));
        let wrong_second = run("13", "12");
        assert_eq!(ended(&wrong_second).unwrap().cause, WRONG_KEY);
        // Not answered at all: the switch's cause stands.
        let mut tracker = CallTracker::new(confirm("1"), None);
        tracker.on_channel(&main, ChannelUpdate::Created, now);
        let actions = tracker.on_channel(&main, hangup(HangupCause::USER_BUSY, Some(486), 2), now);
        assert_eq!(ended(&actions).unwrap().cause, HangupCause::USER_BUSY);
    }

    #[test]
    fn a_call_the_switch_forgot_ends_with_an_unknown_outcome() {
        let now = Instant::now();
        let mut tracker = CallTracker::new(None, None);
        tracker.on_channel(
            &leg("a", true, false),
            ChannelUpdate::Answered { at: at(1) },
            now,
        );
        let actions = tracker.on_lost(at(7));
        let outcome = ended(&actions).unwrap();
        assert_eq!(outcome.cause, OUTCOME_UNKNOWN);
        assert_eq!(outcome.sip_code, None);
        assert_eq!(outcome.answered_at, Some(at(1)));
        assert!(tracker.on_lost(at(8)).is_empty(), "ends once");
    }

    #[test]
    fn the_recording_is_reported_once_it_started() {
        let now = Instant::now();
        let path = PathBuf::from("/nonexistent/recordings/a.wav");
        let main = leg("a", true, false);
        let mut tracker = CallTracker::new(None, Some(path.clone()));
        tracker.on_channel(&main, ChannelUpdate::Answered { at: at(1) }, now);
        tracker.on_channel(&main, ChannelUpdate::RecordStarted, now);
        let actions = tracker.on_channel(&main, hangup(HangupCause::NORMAL_CLEARING, None, 4), now);
        assert_eq!(ended(&actions).unwrap().recording, Some(path.clone()));
        // Never answered: no recording was made.
        let mut tracker = CallTracker::new(None, Some(path));
        tracker.on_channel(&main, ChannelUpdate::Created, now);
        let actions = tracker.on_channel(&main, hangup(HangupCause::USER_BUSY, None, 4), now);
        assert_eq!(ended(&actions).unwrap().recording, None);
    }
}
