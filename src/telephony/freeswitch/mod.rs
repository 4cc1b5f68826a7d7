//! The freeswitch back end: drives a FreeSWITCH over its inbound event socket (client in
//! [`crate::telephony::esl`]). Each call is one `bgapi originate` (built in [`originate`]) whose
//! results come from the switch's events ([`call`]); one task keeps the connection ([`link`]).

pub mod call;
pub mod config;
mod link;
pub mod media;
pub mod originate;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use self::{
    call::{Action, CallTracker, ChannelUpdate, JobResult, Leg, Routed},
    config::FreeswitchConfig,
    link::LinkState,
    media::MediaPaths,
    originate::{originate_command, OriginateInputs, PlayableMedia},
};
use super::{
    esl::{EslClient, EslError},
    spawn_call, AfterAnswer, BackendHealth, CallHandle, CallLine, CallOutcome, CallRequest,
    CallSettings, HangupCause, Telephony,
};

/// The events the back end subscribes to, and nothing more: every channel of the switch
/// reports them, so a busy PBX sends many.
pub const EVENTS: [&str; 9] = [
    "CHANNEL_CREATE",
    "CHANNEL_PROGRESS",
    "CHANNEL_PROGRESS_MEDIA",
    "CHANNEL_ANSWER",
    "CHANNEL_HANGUP_COMPLETE",
    "DTMF",
    "BACKGROUND_JOB",
    "RECORD_START",
    "SHUTDOWN",
];

pub struct FreeswitchBackend {
    inner: Arc<Inner>,
}

struct Inner {
    config: FreeswitchConfig,
    media: MediaPaths,
    recordings: PathBuf,
    /// `--max-caps`: the switch's own limit is reported when lower.
    max_caps: f64,
    state: Mutex<LinkState>,
    client: Mutex<Option<EslClient>>,
    registry: Mutex<Registry>,
    stop: CancellationToken,
}

/// Where events go: live calls by uuid, their other legs, their originate jobs.
#[derive(Default)]
struct Registry {
    calls: HashMap<String, CallEntry>,
    /// A leg's uuid → the call's.
    legs: HashMap<String, String>,
    /// A job's uuid → the call's.
    jobs: HashMap<String, String>,
}

struct CallEntry {
    inputs: mpsc::UnboundedSender<CallInput>,
    job_uuid: String,
    legs: Vec<String>,
}

/// What reaches a call's body from the connection.
#[derive(Debug)]
enum CallInput {
    Channel(Leg, ChannelUpdate),
    Job(JobResult),
    /// After a reconnect, the switch still has the call.
    StillThere,
    /// After a reconnect, the switch does not know the call: its outcome is unknown.
    Lost,
}

impl FreeswitchBackend {
    /// Checks the settings and starts the connection task on the current runtime; calls may be
    /// placed once it is connected ([`Telephony::ready_to_dial`]).
    pub fn start(config: FreeswitchConfig, data_dir: &Path, max_caps: f64) -> anyhow::Result<Self> {
        let recordings = crate::telephony::recordings_dir(data_dir);
        std::fs::create_dir_all(&recordings)?;
        originate::check_record_path(&recordings.join("x.wav")).map_err(anyhow::Error::msg)?;
        let inner = Arc::new(Inner {
            media: MediaPaths::new(data_dir)?,
            recordings,
            max_caps,
            state: Mutex::new(LinkState::Connecting),
            client: Mutex::new(None),
            registry: Mutex::new(Registry::default()),
            stop: CancellationToken::new(),
            config,
        });
        tokio::spawn(link::run(inner.clone()));
        Ok(FreeswitchBackend { inner })
    }
}

impl Drop for FreeswitchBackend {
    fn drop(&mut self) {
        self.inner.stop.cancel();
    }
}

impl Inner {
    fn client(&self) -> Option<EslClient> {
        lock(&self.client).clone()
    }

    fn media_for(&self, settings: &CallSettings) -> Result<PlayableMedia, String> {
        let confirm_prompt = match settings.confirm.as_ref().and_then(|c| c.prompt.as_ref()) {
            Some(prompt) => Some(
                self.media
                    .playable(prompt)
                    .map_err(|error| format!("group_confirm_file: {error}"))?,
            ),
            None => None,
        };
        let playback = match &settings.action {
            AfterAnswer::Playback(media) => Some(
                self.media
                    .playable(media)
                    .map_err(|error| format!("data: {error}"))?,
            ),
            _ => None,
        };
        Ok(PlayableMedia {
            confirm_prompt,
            playback,
        })
    }

    /// Routes one event to the call it concerns, if any.
    fn route(&self, routed: Routed) {
        let mut registry = lock(&self.registry);
        match routed {
            Routed::Job { job_uuid, result } => {
                if let Some(call) = registry.jobs.get(&job_uuid) {
                    if let Some(entry) = registry.calls.get(call) {
                        let _ = entry.inputs.send(CallInput::Job(result));
                    }
                }
            }
            Routed::Channel {
                unique_id,
                origination_uuid,
                other_leg,
                loopback,
                sip,
                update,
            } => {
                let (call, main) = if registry.calls.contains_key(&unique_id) {
                    (unique_id.clone(), true)
                } else if let Some(call) = registry.legs.get(&unique_id) {
                    (call.clone(), false)
                } else {
                    // A leg not seen before: the loopback's other half carries our uuid, a leg
                    // bridged from one of ours names it as its other leg.
                    let owner = origination_uuid
                        .filter(|uuid| registry.calls.contains_key(uuid))
                        .or_else(|| {
                            other_leg.and_then(|other| {
                                if registry.calls.contains_key(&other) {
                                    Some(other)
                                } else {
                                    registry.legs.get(&other).cloned()
                                }
                            })
                        });
                    let Some(call) = owner else { return };
                    registry.legs.insert(unique_id.clone(), call.clone());
                    if let Some(entry) = registry.calls.get_mut(&call) {
                        entry.legs.push(unique_id.clone());
                    }
                    (call, false)
                };
                if let Some(entry) = registry.calls.get(&call) {
                    let leg = Leg {
                        uuid: unique_id,
                        main,
                        loopback,
                        sip,
                    };
                    let _ = entry.inputs.send(CallInput::Channel(leg, update));
                }
            }
            Routed::Shutdown => {
                tracing::warn!(addr = %self.config.addr, "FreeSWITCH is shutting down");
            }
            Routed::Other => {}
        }
    }

    fn register(&self, uuid: &str, job_uuid: &str) -> mpsc::UnboundedReceiver<CallInput> {
        let (inputs, receiver) = mpsc::unbounded_channel();
        let mut registry = lock(&self.registry);
        registry.jobs.insert(job_uuid.to_owned(), uuid.to_owned());
        registry.calls.insert(
            uuid.to_owned(),
            CallEntry {
                inputs,
                job_uuid: job_uuid.to_owned(),
                legs: Vec::new(),
            },
        );
        receiver
    }

    fn unregister(&self, uuid: &str) {
        let mut registry = lock(&self.registry);
        if let Some(entry) = registry.calls.remove(uuid) {
            registry.jobs.remove(&entry.job_uuid);
            for leg in entry.legs {
                registry.legs.remove(&leg);
            }
        }
    }

    /// The calls being followed, for the check after a reconnect.
    fn live_calls(&self) -> Vec<(String, mpsc::UnboundedSender<CallInput>)> {
        lock(&self.registry)
            .calls
            .iter()
            .map(|(uuid, entry)| (uuid.clone(), entry.inputs.clone()))
            .collect()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Telephony for FreeswitchBackend {
    fn name(&self) -> &'static str {
        "freeswitch"
    }

    fn health(&self) -> BackendHealth {
        lock(&self.inner.state).health(&self.inner.config.addr, self.inner.max_caps)
    }

    fn ready_to_dial(&self) -> bool {
        lock(&self.inner.state).is_connected()
    }

    fn check_task(&self, settings: &CallSettings) -> Result<(), String> {
        let media = self.inner.media_for(settings)?;
        // The whole command, for a number that always passes: what cannot be escaped is named.
        let probe = CallRequest {
            uuid: uuid::Uuid::nil().to_string(),
            number_id: 0,
            dest_number: "0".into(),
            settings: Arc::new(settings.clone()),
        };
        let recording = self.inner.recordings.join("probe.wav");
        originate_command(
            &probe,
            &OriginateInputs {
                dial_string: &self.inner.config.dial_string,
                media: &media,
                recording: settings.auto_record.then_some(recording.as_path()),
            },
        )
        .map(|_| ())
    }

    fn place_call(&self, request: CallRequest) -> CallHandle {
        let inner = self.inner.clone();
        spawn_call(move |line| run_call(inner, request, line))
    }
}

/// An outcome for a call that never reached the switch.
fn not_placed(cause: HangupCause) -> CallOutcome {
    CallOutcome {
        cause,
        sip_code: None,
        answered_at: None,
        ended_at: SystemTime::now(),
        recording: None,
    }
}

/// How long a claimed call waits for the connection when it dropped between the dialer's
/// readiness check and the originate.
const LINK_WAIT: Duration = Duration::from_secs(60);

/// The connection to send the originate on. When it dropped (or the switch began shutting down)
/// after the dialer's readiness check, nothing has been sent: the call waits, up to
/// [`LINK_WAIT`], and goes out once the switch can take it, rather than ending undialed. The
/// dialer's hang-up (e.g. its shutdown) ends the wait with that cause.
async fn await_link(inner: &Inner, line: &mut CallLine) -> Result<EslClient, CallOutcome> {
    let give_up = tokio::time::Instant::now() + LINK_WAIT;
    let mut dialer_gone = false;
    loop {
        if lock(&inner.state).is_connected() {
            if let Some(client) = inner.client() {
                return Ok(client);
            }
        }
        if tokio::time::Instant::now() >= give_up {
            tracing::warn!("no connection to FreeSWITCH for {LINK_WAIT:?}: call not placed");
            return Err(not_placed(HangupCause::NORMAL_TEMPORARY_FAILURE));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            cause = line.hang_up_requested(), if !dialer_gone => match cause {
                Some(cause) => return Err(not_placed(cause)),
                None => dialer_gone = true,
            },
        }
    }
}

/// One call, from its originate to its outcome.
async fn run_call(inner: Arc<Inner>, request: CallRequest, mut line: CallLine) -> CallOutcome {
    let uuid = request.uuid.clone();
    let settings = request.settings.clone();
    let media = match inner.media_for(&settings) {
        Ok(media) => media,
        Err(error) => {
            tracing::warn!(%uuid, %error, "the task's media cannot be played: call not placed");
            return not_placed(HangupCause::NORMAL_TEMPORARY_FAILURE);
        }
    };
    let recording = settings
        .auto_record
        .then(|| inner.recordings.join(format!("{uuid}.wav")));
    let command = match originate_command(
        &request,
        &OriginateInputs {
            dial_string: &inner.config.dial_string,
            media: &media,
            recording: recording.as_deref(),
        },
    ) {
        Ok(command) => command,
        Err(error) => {
            tracing::warn!(%uuid, number = %request.dest_number, %error, "call not placed");
            let cause = if error.starts_with("number") {
                HangupCause::INVALID_NUMBER_FORMAT
            } else {
                HangupCause::NORMAL_TEMPORARY_FAILURE
            };
            return not_placed(cause);
        }
    };
    let client = match await_link(&inner, &mut line).await {
        Ok(client) => client,
        Err(outcome) => return outcome,
    };
    let job_uuid = uuid::Uuid::new_v4().to_string();
    // Registered before the command goes out: its first events may come before the reply.
    let mut inputs = inner.register(&uuid, &job_uuid);
    let outcome = follow(
        &inner,
        &client,
        &command,
        &job_uuid,
        &uuid,
        &request,
        &mut inputs,
        &mut line,
    )
    .await;
    inner.unregister(&uuid);
    if let Some(path) = &outcome.recording {
        // Written by FreeSWITCH with its own umask: private, as every file of the data directory.
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    outcome
}

#[allow(clippy::too_many_arguments)]
async fn follow(
    inner: &Arc<Inner>,
    client: &EslClient,
    command: &str,
    job_uuid: &str,
    uuid: &str,
    request: &CallRequest,
    inputs: &mut mpsc::UnboundedReceiver<CallInput>,
    line: &mut CallLine,
) -> CallOutcome {
    let settings = &request.settings;
    let recording = settings
        .auto_record
        .then(|| inner.recordings.join(format!("{uuid}.wav")));
    let mut tracker = CallTracker::new(settings.confirm.clone(), recording);
    let mut pending = Vec::new();
    tracing::debug!(%uuid, %job_uuid, %command, "originate");
    match client.bgapi(command, job_uuid).await {
        Ok(()) => {}
        Err(EslError::CommandFailed(text)) => {
            tracing::warn!(%uuid, %text, "FreeSWITCH refused the originate");
            pending.extend(tracker.on_job(
                JobResult::parse(&text),
                Instant::now(),
                SystemTime::now(),
            ));
        }
        Err(error) if client.is_connected() => {
            // No reply, the connection still up: whether the call exists cannot be told yet.
            tracing::warn!(%uuid, %error, "the originate was not acknowledged: its outcome is unknown");
            pending.extend(tracker.on_lost(SystemTime::now()));
        }
        Err(error) => {
            // The connection dropped: after the reconnect `uuid_exists` decides (see link.rs).
            tracing::warn!(%uuid, %error, "the originate was not acknowledged; waiting for the reconnect");
        }
    }
    let mut unsent_kill: Option<HangupCause> = None;
    let mut dialer_gone = false;
    loop {
        for action in pending.drain(..) {
            match action {
                Action::Progress { early_media } => line.progress(early_media),
                Action::Answered { at } => line.answered(at),
                Action::Digit(digit) => line.digit(digit),
                Action::Kill(cause) => {
                    if !kill(inner, uuid, cause) {
                        unsent_kill = Some(cause);
                    }
                }
                Action::End(outcome) => return outcome,
            }
        }
        let deadline = tracker.deadline();
        tokio::select! {
            input = inputs.recv() => {
                let Some(input) = input else {
                    return not_placed(call::OUTCOME_UNKNOWN);
                };
                match input {
                    CallInput::Channel(leg, update) => {
                        pending.extend(tracker.on_channel(&leg, update, Instant::now()));
                    }
                    CallInput::Job(result) => {
                        pending.extend(tracker.on_job(result, Instant::now(), SystemTime::now()));
                    }
                    CallInput::StillThere => {
                        if let Some(cause) = unsent_kill.take() {
                            if !kill(inner, uuid, cause) {
                                unsent_kill = Some(cause);
                            }
                        }
                    }
                    CallInput::Lost => pending.extend(tracker.on_lost(SystemTime::now())),
                }
            }
            cause = line.hang_up_requested(), if !dialer_gone => match cause {
                Some(cause) => pending.extend(tracker.on_hang_up(cause)),
                None => dialer_gone = true,
            },
            _ = async { tokio::time::sleep_until(deadline.expect("guarded").into()).await }, if deadline.is_some() => {
                pending.extend(tracker.on_deadline(Instant::now(), SystemTime::now()));
            }
        }
    }
}

/// Sends `uuid_kill` without waiting for its answer; false when there is no connection.
fn kill(inner: &Arc<Inner>, uuid: &str, cause: HangupCause) -> bool {
    let Some(client) = inner.client() else {
        return false;
    };
    let command = format!("uuid_kill {uuid} {cause}");
    let uuid = uuid.to_owned();
    tokio::spawn(async move {
        match client.api(&command).await {
            Ok(reply) if reply.trim_start().starts_with("+OK") => {}
            // The channel may have ended meanwhile ("-ERR No such channel!").
            Ok(reply) => tracing::debug!(%uuid, reply = reply.trim(), "uuid_kill"),
            Err(error) => tracing::warn!(%uuid, %error, "uuid_kill failed"),
        }
    });
    true
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::BytesMut;
    use tokio_util::codec::Decoder;

    use super::*;
    use crate::telephony::{
        esl::{Event, FrameCodec},
        Confirm,
    };

    /// Every event FreeSWITCH sent in a capture of `tests/fixtures/esl/`, in order.
    fn capture_events(name: &str) -> Vec<Event> {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/esl")
            .join(format!("{name}.s2c.txt"));
        let mut bytes = BytesMut::from(&std::fs::read(&path).unwrap()[..]);
        let mut codec = FrameCodec::new();
        let mut events = Vec::new();
        while let Some(frame) = codec.decode(&mut bytes).unwrap() {
            if frame
                .content_type()
                .is_some_and(|kind| kind.starts_with("text/event-"))
            {
                events.push(Event::from_frame(&frame).unwrap());
            }
        }
        assert!(!events.is_empty(), "{name}");
        events
    }

    fn inner(data_dir: &Path) -> Arc<Inner> {
        Arc::new(Inner {
            config: FreeswitchConfig::new("127.0.0.1:1", "ClueCon", config::DEFAULT_DIAL_STRING)
                .unwrap(),
            media: MediaPaths::new(data_dir).unwrap(),
            recordings: data_dir.join("recordings"),
            max_caps: 200.0,
            state: Mutex::new(LinkState::Connecting),
            client: Mutex::new(None),
            registry: Mutex::new(Registry::default()),
            stop: CancellationToken::new(),
        })
    }

    /// What one call of a capture comes to: the call is the originate's (its uuid and job
    /// taken from the capture), every event is routed as the connection routes it, and what
    /// reaches the call is fed to its tracker, as the call's body does.
    struct Replay {
        actions: Vec<Action>,
        /// The order the call's inputs arrived in: `job` or the channel event's name.
        order: Vec<String>,
    }

    fn replay(name: &str, confirm: Option<Confirm>) -> Replay {
        let data = tempfile::tempdir().unwrap();
        let inner = inner(data.path());
        let events = capture_events(name);
        let uuid = events
            .iter()
            .find(|event| event.name() == "CHANNEL_CREATE")
            .and_then(|event| event.get("variable_origination_uuid"))
            .expect("an originated channel")
            .to_owned();
        let job_uuid = events
            .iter()
            .filter(|event| event.name() == "BACKGROUND_JOB")
            .find(|event| {
                event
                    .get("Job-Command-Arg")
                    .is_some_and(|arg| arg.contains(&uuid))
            })
            .and_then(|event| event.get("Job-UUID"))
            .expect("the originate's job")
            .to_owned();
        let mut inputs = inner.register(&uuid, &job_uuid);
        let now = SystemTime::now();
        for event in &events {
            inner.route(call::classify(event, now));
        }
        let mut tracker = CallTracker::new(confirm, None);
        let start = Instant::now();
        let mut actions = Vec::new();
        let mut order = Vec::new();
        while let Ok(input) = inputs.try_recv() {
            match input {
                CallInput::Channel(leg, update) => {
                    order.push(
                        format!("{update:?}")
                            .split([' ', '{', '('])
                            .next()
                            .unwrap()
                            .to_owned(),
                    );
                    actions.extend(tracker.on_channel(&leg, update, start));
                }
                CallInput::Job(result) => {
                    order.push("job".into());
                    actions.extend(tracker.on_job(result, start, now));
                }
                other => panic!("{other:?}"),
            }
        }
        inner.unregister(&uuid);
        assert!(lock(&inner.registry).calls.is_empty());
        assert!(lock(&inner.registry).legs.is_empty());
        assert!(lock(&inner.registry).jobs.is_empty());
        Replay { actions, order }
    }

    fn outcome(replay: &Replay) -> &CallOutcome {
        let ends: Vec<&CallOutcome> = replay
            .actions
            .iter()
            .filter_map(|action| match action {
                Action::End(outcome) => Some(outcome),
                _ => None,
            })
            .collect();
        assert_eq!(ends.len(), 1, "{:?}", replay.actions);
        ends[0]
    }

    fn digits(replay: &Replay) -> String {
        replay
            .actions
            .iter()
            .filter_map(|action| match action {
                Action::Digit(digit) => Some(*digit),
                _ => None,
            })
            .collect()
    }

    fn answered(replay: &Replay) -> bool {
        replay
            .actions
            .iter()
            .any(|action| matches!(action, Action::Answered { .. }))
    }

    #[test]
    fn an_answered_call_that_plays_and_hangs_up() {
        for capture in [
            "02_originate_answer_playback_plain",
            "06_originate_answer_playback_json",
        ] {
            let replay = replay(capture, None);
            let outcome = outcome(&replay);
            assert_eq!(outcome.cause, HangupCause::NORMAL_CLEARING, "{capture}");
            // FreeSWITCH hung up (no sip_term_status): the INVITE's 200 is the code.
            assert_eq!(outcome.sip_code, Some(200), "{capture}");
            assert!(answered(&replay), "{capture}");
            let answered_at = outcome.answered_at.expect("answer time");
            assert!(answered_at <= outcome.ended_at, "{capture}");
            // The tone played 2.25 s: the call lasted at least that long after the answer.
            let talk = outcome.ended_at.duration_since(answered_at).unwrap();
            assert!(talk >= Duration::from_secs(2), "{capture}: {talk:?}");
            assert_eq!(digits(&replay), "", "{capture}");
        }
    }

    #[test]
    fn keys_and_the_callee_hanging_up() {
        let replay = replay("03_originate_dtmf_remote_bye_plain", None);
        let outcome = outcome(&replay);
        assert_eq!(outcome.cause, HangupCause::NORMAL_CLEARING);
        assert_eq!(outcome.sip_code, Some(200));
        // One key by RFC 2833, one by SIP INFO.
        assert_eq!(digits(&replay), "11");
    }

    #[test]
    fn busy_ends_with_the_hangup_before_the_job() {
        let replay = replay("04_originate_user_busy_plain", None);
        let outcome = outcome(&replay);
        assert_eq!(outcome.cause, HangupCause::USER_BUSY);
        assert_eq!(outcome.sip_code, Some(486));
        assert_eq!(outcome.answered_at, None);
        let hangup = replay
            .order
            .iter()
            .position(|kind| kind == "HangupComplete");
        let job = replay.order.iter().position(|kind| kind == "job");
        assert!(hangup < job, "{:?}", replay.order);
    }

    #[test]
    fn no_answer_waits_for_the_hangup_after_the_job() {
        let replay = replay("05_originate_no_answer_plain", None);
        let job = replay.order.iter().position(|kind| kind == "job");
        let hangup = replay
            .order
            .iter()
            .position(|kind| kind == "HangupComplete");
        assert!(job < hangup, "{:?}", replay.order);
        let outcome = outcome(&replay);
        assert_eq!(outcome.cause, HangupCause::NO_ANSWER);
        assert_eq!(outcome.sip_code, Some(487));
        assert_eq!(outcome.answered_at, None);
    }

    /// Confirm key `key`, 3 s to press it, no prompt.
    fn confirm_key(key: &str) -> Confirm {
        Confirm {
            key: key.into(),
            timeout: Duration::from_secs(3),
            prompt: None,
        }
    }

    #[test]
    fn a_confirmed_call_keeps_its_cause() {
        let replay = replay("07_originate_group_confirm_plain", Some(confirm_key("1")));
        let outcome = outcome(&replay);
        assert_eq!(outcome.cause, HangupCause::NORMAL_CLEARING);
        assert!(digits(&replay).starts_with('1'));
        assert!(!replay
            .actions
            .iter()
            .any(|action| matches!(action, Action::Kill(_))));
    }

    #[test]
    fn the_same_capture_with_another_key_is_a_wrong_key() {
        // The callee pressed 1; had the task asked for 2, the call ends as the shared policy says.
        let replay = replay("07_originate_group_confirm_plain", Some(confirm_key("2")));
        assert!(replay
            .actions
            .contains(&Action::Kill(crate::telephony::WRONG_KEY)));
        // The capture's job says +OK (FreeSWITCH's key was 1): the switch's word wins.
        assert_eq!(outcome(&replay).cause, HangupCause::NORMAL_CLEARING);
    }

    #[test]
    fn a_killed_call() {
        let replay = replay("08_originate_park_uuid_kill_plain", None);
        assert_eq!(outcome(&replay).cause, HangupCause::NORMAL_CLEARING);
    }

    #[test]
    fn an_unreachable_gateway() {
        let replay = replay("09_originate_unreachable_plain", None);
        let outcome = outcome(&replay);
        assert_eq!(outcome.cause, HangupCause::NORMAL_TEMPORARY_FAILURE);
        assert_eq!(outcome.sip_code, Some(503));
        assert!(!answered(&replay));
    }
}
