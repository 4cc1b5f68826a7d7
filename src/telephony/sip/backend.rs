//! The SIP back end: a user agent on `rsipstack` that places each call through a trunk, and runs
//! the answered call's script (confirm key, then playback / transfer / hang-up) over our own RTP.

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use anyhow::Context;
use rsipstack::{
    dialog::{
        authenticate::Credential,
        dialog::{DialogState, DialogStateReceiver, TerminatedReason},
        dialog_layer::DialogLayer,
        invitation::{InviteAsyncResult, InviteOption},
        invite_dialog::InviteDialog,
        registration::{RefreshOutcome, Registration},
    },
    sip::prelude::HeadersExt,
    sip::{Method, StatusCode, StatusCodeKind, Transport},
    transaction::{endpoint::EndpointOption, transaction::Transaction, TransactionReceiver},
    transport::{udp::UdpConnection, SipAddr, TransportLayer},
    EndpointBuilder,
};
use tokio::{
    sync::{mpsc, Semaphore},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

use super::{
    call_media::{CallMedia, CallMediaError, MediaKit},
    causes::{cause_of_sip_status, ring_outcome, RingResult},
    config::{SipConfig, SipTransport, Trunk},
    guard::{GuardInspector, IncomingGuard, LiveCalls},
};
use crate::telephony::{
    spawn_call, AfterAnswer, CallHandle, CallLine, CallOutcome, CallRequest, CallSettings,
    HangupCause, Telephony,
};
/// How long to wait for the far end's final answer to our CANCEL or BYE before giving up on it.
const SETTLE: Duration = Duration::from_secs(5);
/// rsipstack's 64*T1: how long a transaction lingers after its final answer (an answered
/// INVITE's, with its dialog and channels, about 22 KiB a call) and the give-up time of a request
/// nobody answers. RFC 3261's 32 s kept some 3,200 finished calls in memory at 100 CAPS; 8 s
/// (16 x T1) still spans two retransmissions at T2 (4 s) of a lost answer or ACK, and our own
/// ring timer (calling_time) ends an INVITE nobody answers either way.
const TRANSACTION_LINGER: Duration = Duration::from_secs(8);
/// Registration lifetime asked of the registrar; refreshed at three quarters of what it grants.
const REGISTER_EXPIRES: u32 = 600;

pub struct SipBackend {
    inner: Arc<SipInner>,
}

struct SipInner {
    config: SipConfig,
    dialog_layer: Arc<DialogLayer>,
    /// Our SIP address as peers should reach it.
    local: SocketAddr,
    media: Arc<MediaKit>,
    recordings: PathBuf,
    stop: CancellationToken,
    /// The Call-IDs of our calls in progress: their requests pass the incoming guard.
    live_calls: Arc<LiveCalls>,
}

impl SipBackend {
    /// Binds the SIP socket and starts the user agent.
    pub async fn start(config: SipConfig, data_dir: &Path) -> anyhow::Result<Self> {
        if config.trunks.is_empty() {
            anyhow::bail!("the sip back end needs a trunk: set --sip-trunk / OUTCALL_SIP_TRUNK");
        }
        let stop = CancellationToken::new();
        let transport_layer = TransportLayer::new(stop.clone());
        let udp = UdpConnection::create_connection(config.bind, None, Some(stop.child_token()))
            .await
            .with_context(|| format!("binding SIP on {}", config.bind))?;
        transport_layer.add_transport(udp.into());
        let live_calls = Arc::new(LiveCalls::default());
        let trunk_addresses: Vec<SocketAddr> = config
            .trunks
            .iter()
            .filter_map(|trunk| trunk.host_port.parse().ok())
            .collect();
        let guard = Arc::new(IncomingGuard::new(live_calls.clone(), &trunk_addresses));
        let endpoint = EndpointBuilder::new()
            .with_cancel_token(stop.clone())
            .with_transport_layer(transport_layer)
            // No version: anyone can ask with an OPTIONS, and it would tell them what to attack.
            .with_user_agent("outcall")
            .with_option(EndpointOption {
                t1x64: TRANSACTION_LINGER,
                ..EndpointOption::default()
            })
            .with_transport_inspector(Box::new(GuardInspector(guard)))
            .build();
        let local = endpoint
            .get_addrs()
            .first()
            .and_then(|addr| addr.addr.to_string().parse::<SocketAddr>().ok())
            .context("the SIP transport has no local address")?;
        let incoming = endpoint.incoming_transactions()?;
        let dialog_layer = Arc::new(DialogLayer::new(endpoint.inner.clone()));
        if config.register {
            let mut registration =
                Registration::new(endpoint.inner.clone(), Some(credential(&config)));
            let trunk = config
                .trunk_for("")
                .expect("checked above: there is a trunk");
            let registrar: rsipstack::sip::Uri = match trunk.transport {
                SipTransport::Udp => format!("sip:{}", trunk.host_port),
                SipTransport::Tcp => format!("sip:{};transport=tcp", trunk.host_port),
            }
            .as_str()
            .try_into()
            .with_context(|| format!("the registrar address sip:{}", trunk.host_port))?;
            let token = stop.child_token();
            tokio::spawn(async move {
                registration
                    .keep_alive(registrar, REGISTER_EXPIRES, token, |outcome| match outcome {
                        RefreshOutcome::Registered(_) => tracing::info!("registered with the trunk"),
                        RefreshOutcome::Rejected(response) => {
                            tracing::warn!(status = %response.status_code, "the trunk refused our REGISTER")
                        }
                        RefreshOutcome::Failed(error) => tracing::warn!(%error, "REGISTER failed"),
                    })
                    .await
            });
        }
        tokio::spawn(async move { endpoint.serve().await });
        tokio::spawn(route_incoming(
            dialog_layer.clone(),
            live_calls.clone(),
            incoming,
        ));
        let recordings = crate::telephony::recordings_dir(data_dir);
        std::fs::create_dir_all(&recordings)
            .with_context(|| format!("creating {}", recordings.display()))?;
        let media = Arc::new(MediaKit::new(
            config.rtp_ports,
            config.symmetric_rtp,
            data_dir,
        )?);
        tracing::info!(sip = %local, trunks = ?config.trunks, "SIP user agent ready");
        Ok(SipBackend {
            inner: Arc::new(SipInner {
                config,
                dialog_layer,
                local,
                media,
                recordings,
                stop,
                live_calls,
            }),
        })
    }

    pub fn local_address(&self) -> SocketAddr {
        self.inner.local
    }
}

impl Drop for SipBackend {
    fn drop(&mut self) {
        self.inner.stop.cancel();
    }
}

/// Incoming requests handled at once; beyond this, a request is answered 503 on the spot.
const MAX_INCOMING_HANDLERS: usize = 256;

/// Routes each incoming request (the guard has already dropped strangers over their budget) to
/// its call's dialog, or answers it. At most [`MAX_INCOMING_HANDLERS`] are handled at once.
async fn route_incoming(
    dialog_layer: Arc<DialogLayer>,
    live_calls: Arc<LiveCalls>,
    mut incoming: TransactionReceiver,
) {
    let handlers = Arc::new(Semaphore::new(MAX_INCOMING_HANDLERS));
    while let Some(mut transaction) = incoming.recv().await {
        if transaction.original.method == Method::Ack {
            continue;
        }
        let Ok(permit) = handlers.clone().try_acquire_owned() else {
            let _ = transaction.reply(StatusCode::ServiceUnavailable).await;
            continue;
        };
        let (dialog_layer, live_calls) = (dialog_layer.clone(), live_calls.clone());
        tokio::spawn(async move {
            route_request(dialog_layer, transaction, &live_calls).await;
            drop(permit);
        });
    }
}

/// How long an in-dialog request of one of our calls may wait for its dialog: the stack
/// registers an answered call's dialog just after sending the ACK, so a callee quick to send a
/// request can beat it.
const DIALOG_MATCH_WAIT: Duration = Duration::from_secs(1);

/// Hands a request to its call's dialog, or answers it when it belongs to none. Only a request
/// of one of our calls (`live_calls`) waits for a dialog that is not registered yet; anyone
/// else's is answered at once.
async fn route_request(
    dialog_layer: Arc<DialogLayer>,
    mut transaction: Transaction,
    live_calls: &LiveCalls,
) {
    let in_dialog = transaction
        .original
        .to_header()
        .ok()
        .and_then(|to| to.tag().ok().flatten())
        .is_some();
    let give_up = tokio::time::Instant::now() + DIALOG_MATCH_WAIT;
    let mut dialog = dialog_layer.match_dialog(&transaction);
    // Looked up only when the dialog is missing, the rare case.
    let of_our_call = || {
        transaction
            .original
            .call_id_header()
            .is_ok_and(|call_id| live_calls.contains(call_id.value()))
    };
    let ours = dialog.is_none() && in_dialog && of_our_call();
    while dialog.is_none() && ours && tokio::time::Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(10)).await;
        dialog = dialog_layer.match_dialog(&transaction);
    }
    let outcome = match dialog {
        Some(mut dialog) => dialog.handle(&mut transaction).await,
        None => {
            let status = match transaction.original.method {
                Method::Options if !in_dialog => StatusCode::OK,
                Method::Invite if !in_dialog => StatusCode::Decline,
                _ => StatusCode::CallTransactionDoesNotExist,
            };
            transaction.reply(status).await
        }
    };
    if let Err(error) = outcome {
        tracing::debug!(%error, "could not answer a request");
    }
}

impl Telephony for SipBackend {
    fn name(&self) -> &'static str {
        "sip"
    }

    fn check_task(&self, settings: &CallSettings) -> Result<(), String> {
        if self
            .inner
            .config
            .trunk_for(&settings.dest_context)
            .is_none()
        {
            return Err("no SIP trunk is configured".into());
        }
        if let Some(confirm) = &settings.confirm {
            if let Some(prompt) = &confirm.prompt {
                self.inner
                    .media
                    .check(prompt)
                    .map_err(|e| format!("group_confirm_file: {e}"))?;
            }
        }
        if let AfterAnswer::Playback(media) = &settings.action {
            self.inner
                .media
                .check(media)
                .map_err(|e| format!("data: {e}"))?;
        }
        Ok(())
    }

    fn place_call(&self, request: CallRequest) -> CallHandle {
        let inner = self.inner.clone();
        spawn_call(|mut line| async move { Call { inner, request }.run(&mut line).await })
    }
}

struct Call {
    inner: Arc<SipInner>,
    request: CallRequest,
}

/// How the ringing phase ended.
enum Ringing {
    Answered {
        dialog: InviteDialog,
        answer_sdp: Vec<u8>,
    },
    Ended(CallOutcome),
}

fn ended(
    cause: HangupCause,
    sip_code: Option<u16>,
    answered_at: Option<SystemTime>,
) -> CallOutcome {
    CallOutcome {
        cause,
        sip_code,
        answered_at,
        ended_at: SystemTime::now(),
        recording: None,
    }
}

/// What the ringing phase has seen so far.
#[derive(Default)]
struct RingState {
    /// Whether anything (even a 100 Trying) came back for the INVITE.
    heard_back: bool,
    /// Set when we gave up ringing: the cause the call ends with whatever the far end answers.
    our_cause: Option<HangupCause>,
}

impl RingState {
    /// A dialog state while ringing: progress is passed on, plain requests answered.
    async fn heard(&mut self, state: DialogState, line: &CallLine) {
        match state {
            DialogState::Trying(_) => self.heard_back = true,
            DialogState::Early(_, response) => {
                self.heard_back = true;
                line.progress(response.status_code == StatusCode::SessionProgress);
            }
            // The callee may send a request as soon as the dialog is confirmed, before the
            // INVITE's future is seen complete: answer it rather than drop it (a dropped request
            // handle is answered 501).
            other => answer_plain_request(other).await,
        }
    }
}

/// The INVITE task's result as a [`RingResult`], with the answer's SDP when it was answered.
fn ring_result(
    uuid: &str,
    result: Result<InviteAsyncResult, tokio::task::JoinError>,
) -> (RingResult, Vec<u8>) {
    match result {
        Ok(Ok((_, Some(response))))
            if response.status_code.kind() == StatusCodeKind::Successful =>
        {
            (RingResult::Answered, response.body)
        }
        Ok(Ok((_, Some(response)))) => (RingResult::Final(response.status_code.code()), Vec::new()),
        Ok(Ok((_, None))) => (RingResult::TimedOut, Vec::new()),
        Ok(Err(error)) => {
            tracing::warn!(%uuid, %error, "INVITE failed");
            (RingResult::TransportError, Vec::new())
        }
        Err(error) => {
            tracing::error!(%uuid, %error, "the INVITE task failed");
            (RingResult::TransportError, Vec::new())
        }
    }
}

impl Call {
    async fn run(self, line: &mut CallLine) -> CallOutcome {
        let uuid = self.request.uuid.clone();
        let settings = self.request.settings.clone();
        // The call's requests pass the incoming guard from the INVITE on (its Call-ID is `uuid`).
        let _live = self.inner.live_calls.register(&uuid);
        let Some(trunk) = self.inner.config.trunk_for(&settings.dest_context).cloned() else {
            return ended(HangupCause::NO_ROUTE_DESTINATION, None, None);
        };
        let media = match CallMedia::open(self.inner.media.clone(), self.media_ip()).await {
            Ok(media) => media,
            Err(error) => {
                tracing::error!(%uuid, %error, "no RTP port for the call");
                return ended(HangupCause::NORMAL_TEMPORARY_FAILURE, None, None);
            }
        };
        let (state_sender, mut states) = self.inner.dialog_layer.new_dialog_state_channel();
        let option = match self.invite_option(&trunk, media.sdp_offer()) {
            Ok(option) => option,
            Err(error) => {
                tracing::error!(%uuid, %error, "could not build the INVITE");
                return ended(HangupCause::INVALID_NUMBER_FORMAT, None, None);
            }
        };
        tracing::info!(%uuid, trunk = %trunk.host_port, "INVITE");
        tracing::debug!(%uuid, number = %self.request.dest_number, "INVITE to");
        let ringing = self.ring(option, state_sender, &mut states, line).await;
        let (dialog, answer_sdp) = match ringing {
            Ringing::Answered { dialog, answer_sdp } => (dialog, answer_sdp),
            Ringing::Ended(outcome) => {
                media.close().await;
                return outcome;
            }
        };
        let answered_at = SystemTime::now();
        line.answered(answered_at);
        let recording = settings
            .auto_record
            .then(|| self.inner.recordings.join(format!("{uuid}.wav")));
        let outcome = match media.start(&answer_sdp, recording.clone()).await {
            Ok(()) => {
                self.talk(&dialog, &mut states, line, &media, answered_at)
                    .await
            }
            Err(error) => media_failed(&uuid, &dialog, error, answered_at).await,
        };
        self.inner.dialog_layer.remove_dialog(&dialog.id());
        let recording = media.close().await.or(recording);
        CallOutcome {
            recording,
            ..outcome
        }
    }

    /// The address our SDP offers: the SIP socket's, unless it is a wildcard.
    fn media_ip(&self) -> IpAddr {
        let ip = self.inner.local.ip();
        if ip.is_unspecified() {
            IpAddr::from([127, 0, 0, 1])
        } else {
            ip
        }
    }

    // rsipstack's own error type, made at most once per call.
    #[allow(clippy::result_large_err)]
    fn invite_option(&self, trunk: &Trunk, offer: Vec<u8>) -> rsipstack::Result<InviteOption> {
        let config = &self.inner.config;
        let settings = &self.request.settings;
        let (from_user, from_domain) = config
            .from
            .split_once('@')
            .unwrap_or((config.from.as_str(), ""));
        let from_domain = if from_domain.is_empty() {
            trunk.host_port.as_str()
        } else {
            from_domain
        };
        let caller_user = if settings.cid_number.is_empty() {
            from_user
        } else {
            settings.cid_number.as_str()
        };
        let transport = match trunk.transport {
            SipTransport::Udp => Transport::Udp,
            SipTransport::Tcp => Transport::Tcp,
        };
        let destination = SipAddr::new(transport, trunk.host_port.as_str().try_into()?);
        Ok(InviteOption {
            caller_display_name: display_name(&settings.cid_name),
            caller: format!("sip:{caller_user}@{from_domain}")
                .as_str()
                .try_into()?,
            callee: config
                .request_uri(&self.request.dest_number, trunk)
                .as_str()
                .try_into()?,
            destination: Some(destination),
            content_type: Some("application/sdp".into()),
            offer: Some(offer),
            contact: format!("sip:{from_user}@{}", self.inner.local)
                .as_str()
                .try_into()?,
            credential: config.password.is_some().then(|| credential(config)),
            call_id: Some(self.request.uuid.clone()),
            ..Default::default()
        })
    }

    /// From INVITE to the final answer, within the ring timeout; our hang-up cancels.
    async fn ring(
        &self,
        option: InviteOption,
        state_sender: rsipstack::dialog::dialog::DialogStateSender,
        states: &mut DialogStateReceiver,
        line: &mut CallLine,
    ) -> Ringing {
        let uuid = &self.request.uuid;
        let mut ring = RingState::default();
        let (result, answer_sdp, dialog) = match self
            .inner
            .dialog_layer
            .do_invite_async(option, state_sender)
        {
            Ok((dialog, invite)) => {
                let (result, answer) = self
                    .await_final(&dialog, invite, states, line, &mut ring)
                    .await;
                (result, answer, Some(dialog))
            }
            Err(error) => {
                tracing::warn!(%uuid, %error, "INVITE could not be sent");
                (RingResult::TransportError, Vec::new(), None)
            }
        };
        match (result, dialog) {
            (RingResult::Answered, Some(dialog)) if ring.our_cause.is_none() => {
                Ringing::Answered { dialog, answer_sdp }
            }
            // Also a call answered as we cancelled it: the stack ends it with a BYE.
            (result, _) => {
                let (cause, code) = ring_outcome(result, ring.our_cause, ring.heard_back);
                tracing::info!(%uuid, ?code, cause = cause.as_str(), "call failed");
                Ringing::Ended(ended(cause, code, None))
            }
        }
    }

    /// Waits for the INVITE's final answer. The ring timeout or the dialer's hang-up cancels the
    /// INVITE, or abandons it when nothing came back yet (CANCEL is not allowed then); a CANCEL
    /// nobody answers is given up after [`SETTLE`]. Answers the result and the answer's SDP.
    async fn await_final(
        &self,
        dialog: &InviteDialog,
        mut invite: JoinHandle<InviteAsyncResult>,
        states: &mut DialogStateReceiver,
        line: &mut CallLine,
        ring: &mut RingState,
    ) -> (RingResult, Vec<u8>) {
        let uuid = &self.request.uuid;
        let ring_timeout = tokio::time::sleep(self.request.settings.calling_time);
        tokio::pin!(ring_timeout);
        let settle = tokio::time::sleep(Duration::MAX);
        tokio::pin!(settle);
        loop {
            let give_up = tokio::select! {
                result = &mut invite => return ring_result(uuid, result),
                Some(state) = states.recv() => {
                    ring.heard(state, line).await;
                    continue;
                }
                _ = &mut ring_timeout, if ring.our_cause.is_none() => {
                    if !ring.heard_back {
                        tracing::info!(%uuid, "no reply from the trunk within the ring timeout");
                    }
                    // Nothing heard back: the trunk is silent, not the callee.
                    ring.heard_back.then_some(HangupCause::NO_ANSWER)
                }
                Some(cause) = line.hang_up_requested(), if ring.our_cause.is_none() => Some(cause),
                _ = &mut settle => {
                    invite.abort();
                    return (RingResult::NoResponse, Vec::new());
                }
            };
            ring.our_cause = give_up;
            if !ring.heard_back {
                invite.abort();
                let _ = dialog.cancel().await;
                return (RingResult::NoResponse, Vec::new());
            }
            let _ = dialog.cancel().await;
            settle.as_mut().reset(tokio::time::Instant::now() + SETTLE);
        }
    }

    /// The answered call: the script runs while we answer in-dialog requests, pass digits on, and
    /// watch for the callee's BYE, our hang-up and the time limit.
    async fn talk(
        &self,
        dialog: &InviteDialog,
        states: &mut DialogStateReceiver,
        line: &mut CallLine,
        media: &CallMedia,
        answered_at: SystemTime,
    ) -> CallOutcome {
        let uuid = &self.request.uuid;
        let (script_digits_sender, script_digits) = mpsc::unbounded_channel();
        let (transfer_sender, transfer_results) = mpsc::unbounded_channel();
        let script = self.script(dialog, media, script_digits, transfer_results);
        tokio::pin!(script);
        let limit = tokio::time::sleep(self.inner.config.max_call_duration);
        tokio::pin!(limit);
        let mut digits = media.digits();
        let our_end = loop {
            tokio::select! {
                cause = &mut script => break cause,
                Some(digit) = digits.recv() => {
                    line.digit(digit);
                    let _ = script_digits_sender.send(digit);
                }
                state = states.recv() => match state {
                    Some(state) => {
                        if let Some(cause) = in_call(state, media, &transfer_sender, uuid).await {
                            return ended(cause, Some(200), Some(answered_at));
                        }
                    }
                    None => break HangupCause::NORMAL_CLEARING,
                },
                Some(cause) = line.hang_up_requested() => break cause,
                _ = &mut limit => {
                    tracing::warn!(%uuid, "call reached the maximum duration");
                    break HangupCause::ALLOTTED_TIMEOUT;
                }
            }
        };
        if tokio::time::timeout(SETTLE, dialog.bye()).await.is_err() {
            tracing::warn!(%uuid, "no answer to our BYE");
        }
        ended(our_end, Some(200), Some(answered_at))
    }

    /// After the answer: the confirm step, then the action. Answers the cause we hang up with.
    async fn script(
        &self,
        dialog: &InviteDialog,
        media: &CallMedia,
        mut digits: mpsc::UnboundedReceiver<char>,
        mut transfer_results: mpsc::UnboundedReceiver<u16>,
    ) -> HangupCause {
        let settings = &self.request.settings;
        if let Some(confirm) = &settings.confirm {
            if let Some(prompt) = &confirm.prompt {
                media.play(prompt).await;
            }
            if let Err(cause) = confirm.read_key(&mut digits).await {
                return cause;
            }
        }
        match &settings.action {
            AfterAnswer::Hangup => HangupCause::NORMAL_CLEARING,
            AfterAnswer::Playback(prompt) => {
                media.play(prompt).await;
                HangupCause::NORMAL_CLEARING
            }
            AfterAnswer::Transfer(extension) => {
                let Some(trunk) = self.inner.config.trunk_for(&settings.dest_context) else {
                    return HangupCause::NO_ROUTE_DESTINATION;
                };
                let target = self.inner.config.request_uri(extension, trunk);
                let Ok(refer_to) = rsipstack::sip::Uri::try_from(target.as_str()) else {
                    return HangupCause::INVALID_NUMBER_FORMAT;
                };
                match dialog.refer(refer_to, None, None).await {
                    Ok(Some(response))
                        if response.status_code.kind() == StatusCodeKind::Successful => {}
                    Ok(Some(response)) => return cause_of_sip_status(response.status_code.code()),
                    Ok(None) | Err(_) => return HangupCause::NORMAL_TEMPORARY_FAILURE,
                }
                // The REFER was accepted; the transfer's own outcome comes in NOTIFYs.
                let give_up = tokio::time::sleep(settings.calling_time + SETTLE);
                tokio::pin!(give_up);
                loop {
                    tokio::select! {
                        Some(code) = transfer_results.recv() => match code {
                            100..=199 => continue,
                            200..=299 => return HangupCause::NORMAL_CLEARING,
                            code => return cause_of_sip_status(code),
                        },
                        _ = &mut give_up => return HangupCause::NO_ANSWER,
                    }
                }
            }
        }
    }
}

/// An answered call whose media could not start: we hang up at once.
async fn media_failed(
    uuid: &str,
    dialog: &InviteDialog,
    error: CallMediaError,
    answered_at: SystemTime,
) -> CallOutcome {
    let cause = match error {
        CallMediaError::Negotiation(reason) => {
            tracing::warn!(%uuid, %reason, "the answer's SDP has nothing we can use");
            HangupCause::INCOMPATIBLE_DESTINATION
        }
        error => {
            tracing::error!(%uuid, %error, "media failed");
            HangupCause::NORMAL_TEMPORARY_FAILURE
        }
    };
    let _ = dialog.bye().await;
    ended(cause, Some(200), Some(answered_at))
}

/// Handles an in-dialog state of an answered call; answers the cause when the far end ended it.
async fn in_call(
    state: DialogState,
    media: &CallMedia,
    transfer_results: &mpsc::UnboundedSender<u16>,
    uuid: &str,
) -> Option<HangupCause> {
    match state {
        DialogState::Terminated(_, reason) => {
            tracing::info!(%uuid, ?reason, "call ended by the far end");
            return Some(match reason {
                TerminatedReason::UasBye => HangupCause::NORMAL_CLEARING,
                TerminatedReason::Timeout => HangupCause::MEDIA_TIMEOUT,
                _ => HangupCause::NORMAL_CLEARING,
            });
        }
        DialogState::Updated(_, request, handle) => {
            // A re-INVITE (or UPDATE): keep the media, answer with our SDP again.
            if request.method == Method::Invite && !request.body.is_empty() {
                media.update_remote(&request.body);
            }
            let content_type = rsipstack::sip::Header::ContentType("application/sdp".into());
            let _ = handle
                .respond(
                    StatusCode::OK,
                    Some(vec![content_type]),
                    Some(media.sdp_offer()),
                )
                .await;
        }
        DialogState::Notify(_, request, handle) => {
            let _ = handle.reply(StatusCode::OK).await;
            if let Some(code) = sipfrag_status(&request.body) {
                let _ = transfer_results.send(code);
            }
        }
        DialogState::Refer(_, _, handle) => {
            let _ = handle.reply(StatusCode::Forbidden).await;
        }
        other => answer_plain_request(other).await,
    }
    None
}

/// Digest credentials: the configured user (else the From user) and password.
fn credential(config: &SipConfig) -> Credential {
    let from_user = config
        .from
        .split_once('@')
        .map_or(config.from.as_str(), |(user, _)| user);
    Credential {
        username: config
            .username
            .clone()
            .unwrap_or_else(|| from_user.to_owned()),
        password: config.password.clone().unwrap_or_default(),
        realm: None,
        auth_username: None,
    }
}

/// The status code of a `message/sipfrag` body such as `SIP/2.0 200 OK`.
fn sipfrag_status(body: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(body).ok()?;
    let mut words = text.lines().next()?.split_whitespace();
    if !words.next()?.starts_with("SIP/") {
        return None;
    }
    words.next()?.parse().ok()
}
/// Answers 200 to an in-dialog OPTIONS, INFO or MESSAGE, which need nothing of the call; other
/// states are left alone.
async fn answer_plain_request(state: DialogState) {
    if let DialogState::Options(_, _, handle)
    | DialogState::Info(_, _, handle)
    | DialogState::Message(_, _, handle) = state
    {
        let _ = handle.reply(StatusCode::OK).await;
    }
}

/// The caller's display name as the inside of a SIP quoted-string (rsipstack adds the quotes but
/// escapes nothing): control characters are dropped and `"` and `\` escaped, so no name can end
/// the quote or the header, whatever reached the database.
fn display_name(name: &str) -> Option<String> {
    let mut quoted = String::with_capacity(name.len());
    for c in name.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    Some(quoted).filter(|name| !name.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_cannot_break_the_header() {
        assert_eq!(display_name("客服 1000").as_deref(), Some("客服 1000"));
        assert_eq!(
            display_name("a\r\nP-Asserted-Identity: <sip:x@y>").as_deref(),
            Some("aP-Asserted-Identity: <sip:x@y>")
        );
        assert_eq!(
            display_name(r#"x" <sip:evil@y>"#).as_deref(),
            Some(r#"x\" <sip:evil@y>"#)
        );
        assert_eq!(display_name("a\\").as_deref(), Some("a\\\\"));
        assert_eq!(display_name(""), None);
        assert_eq!(display_name("\r\n"), None);
    }
}
