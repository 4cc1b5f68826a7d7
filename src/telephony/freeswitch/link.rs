//! The connection to the switch: connect, subscribe, route events to calls, and reconnect with a
//! growing wait after a loss. Its state is the back end's health.

use std::{sync::Arc, time::Duration};

use super::{call, lock, CallInput, Inner, EVENTS};
use crate::telephony::{
    esl::{EslClient, EslError},
    BackendHealth,
};

const BACKOFF_FIRST: Duration = Duration::from_millis(200);
const BACKOFF_MOST: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    Connecting,
    Connected {
        /// The switch's `sessions-per-second`, when `api status` told it.
        max_sessions_per_second: Option<u32>,
    },
    AuthFailed,
    /// `text/rude-rejection`: the switch's ACL refused us; its text.
    Rejected(String),
    /// Lost, or not reached: why.
    Disconnected(String),
}

impl LinkState {
    pub fn is_connected(&self) -> bool {
        matches!(self, LinkState::Connected { .. })
    }

    pub fn health(&self, addr: &str, max_caps: f64) -> BackendHealth {
        let (healthy, detail) = match self {
            LinkState::Connecting => (false, format!("connecting to the event socket at {addr}")),
            LinkState::Connected { .. } => (true, format!("connected to FreeSWITCH at {addr}")),
            LinkState::AuthFailed => (
                false,
                format!("event socket authentication failed at {addr}"),
            ),
            LinkState::Rejected(text) => (
                false,
                format!("the event socket at {addr} rejected outcall: {text}"),
            ),
            LinkState::Disconnected(why) => (
                false,
                format!("no event socket connection to {addr} ({why}); reconnecting"),
            ),
        };
        let switch_max_sps = match self {
            LinkState::Connected {
                max_sessions_per_second: Some(sps),
            } if f64::from(*sps) < max_caps => Some(*sps),
            _ => None,
        };
        let detail = match switch_max_sps {
            Some(sps) => format!(
                "{detail}; its sessions-per-second ({sps}) is lower than --max-caps ({max_caps})"
            ),
            None => detail,
        };
        BackendHealth {
            healthy,
            detail,
            switch_max_sps,
        }
    }
}

/// `api status` says `… session(s) per Sec out of max 30, peak …`.
pub fn sessions_per_second(status: &str) -> Option<u32> {
    let line = status.lines().find(|line| line.contains("per Sec"))?;
    let (_, after) = line.split_once("out of max")?;
    after
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Runs until the back end is dropped.
pub async fn run(inner: Arc<Inner>) {
    let addr = inner.config.addr.clone();
    let mut backoff = BACKOFF_FIRST;
    loop {
        let connecting =
            EslClient::connect(&addr, &inner.config.password, &EVENTS, inner.config.timeout);
        let connected = tokio::select! {
            _ = inner.stop.cancelled() => return,
            connected = connecting => connected,
        };
        match connected {
            Ok((client, mut events)) => {
                backoff = BACKOFF_FIRST;
                let status = client.api("status").await.unwrap_or_default();
                let max_sessions_per_second = sessions_per_second(&status);
                // Taken before calls can start on this connection: only those are asked about.
                let followed = inner.live_calls();
                *lock(&inner.client) = Some(client.clone());
                set_state(
                    &inner,
                    LinkState::Connected {
                        max_sessions_per_second,
                    },
                );
                tokio::spawn(find_calls_again(followed, client.clone()));
                let why = loop {
                    let event = tokio::select! {
                        _ = inner.stop.cancelled() => return,
                        event = events.next() => event,
                    };
                    match event {
                        Ok(event) => {
                            let routed = call::classify(&event, std::time::SystemTime::now());
                            if routed == call::Routed::Shutdown {
                                // Its live calls end SYSTEM_SHUTDOWN, their events still come;
                                // an originate now would fail CHAN_NOT_IMPLEMENTED: dial no more.
                                set_state(
                                    &inner,
                                    LinkState::Disconnected("FreeSWITCH is shutting down".into()),
                                );
                            }
                            inner.route(routed);
                        }
                        Err(error) => break error,
                    }
                };
                *lock(&inner.client) = None;
                set_state(&inner, state_after(why));
            }
            Err(error) => set_state(&inner, state_after(error)),
        }
        tokio::select! {
            _ = inner.stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MOST);
    }
}

fn state_after(error: EslError) -> LinkState {
    match error {
        EslError::AuthFailed(_) => LinkState::AuthFailed,
        EslError::Rejected(text) => LinkState::Rejected(text.trim().to_owned()),
        other => LinkState::Disconnected(other.to_string()),
    }
}

/// Logs a change of state once (not every retry of the same failure).
fn set_state(inner: &Inner, state: LinkState) {
    let mut current = lock(&inner.state);
    let same_kind = std::mem::discriminant(&*current) == std::mem::discriminant(&state);
    if !same_kind {
        let health = state.health(&inner.config.addr, inner.max_caps);
        match &state {
            LinkState::Connected { .. } => {
                tracing::info!(detail = %health.detail, "freeswitch back end")
            }
            _ => tracing::warn!(detail = %health.detail, "freeswitch back end"),
        }
    }
    *current = state;
}

/// After a (re)connect: each call still followed is asked about; the switch keeps sending the
/// events of those it knows, the others' outcome is unknown.
async fn find_calls_again(
    followed: Vec<(String, tokio::sync::mpsc::UnboundedSender<CallInput>)>,
    client: EslClient,
) {
    for (uuid, inputs) in followed {
        match client.api(&format!("uuid_exists {uuid}")).await {
            Ok(answer) if answer.trim() == "true" => {
                let _ = inputs.send(CallInput::StillThere);
            }
            Ok(_) => {
                tracing::warn!(%uuid, "after the reconnect FreeSWITCH no longer knows the call: its outcome is unknown");
                let _ = inputs.send(CallInput::Lost);
            }
            // The connection dropped again: the next connect asks again.
            Err(error) => {
                tracing::warn!(%error, "could not ask FreeSWITCH about the calls it had");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_per_second_from_api_status() {
        let status = "UP 0 years, 0 days, 0 hours, 1 minute\nFreeSWITCH (Version 1.11.2-release  64bit) is ready\n\
                      0 session(s) since startup\n0 session(s) - peak 0, last 5min 0 \n\
                      0 session(s) per Sec out of max 30, peak 0, last 5min 0 \n1000 session(s) max\n";
        assert_eq!(sessions_per_second(status), Some(30));
        assert_eq!(sessions_per_second("nothing"), None);
    }

    #[test]
    fn health_names_each_state() {
        let addr = "127.0.0.1:8021";
        let connected = LinkState::Connected {
            max_sessions_per_second: Some(100),
        };
        let health = connected.health(addr, 200.0);
        assert!(health.healthy);
        assert_eq!(health.switch_max_sps, Some(100));
        assert!(
            health
                .detail
                .contains("(100) is lower than --max-caps (200)"),
            "{}",
            health.detail
        );
        assert_eq!(connected.health(addr, 50.0).switch_max_sps, None);
        let failed = LinkState::AuthFailed.health(addr, 200.0);
        assert!(!failed.healthy);
        assert_eq!(
            failed.detail,
            "event socket authentication failed at 127.0.0.1:8021"
        );
        let rejected = LinkState::Rejected("Hangup! You are not allowed.".into()).health(addr, 1.0);
        assert!(!rejected.healthy);
        assert!(
            rejected.detail.contains("You are not allowed"),
            "{}",
            rejected.detail
        );
        let lost =
            LinkState::Disconnected("event socket disconnected: EOF".into()).health(addr, 1.0);
        assert!(
            !lost.healthy && lost.detail.contains("EOF"),
            "{}",
            lost.detail
        );
        assert!(!LinkState::Connecting.health(addr, 1.0).healthy);
        assert!(!LinkState::Connecting.is_connected());
        assert!(connected.is_connected());
    }
}

#[cfg(test)]
mod peer_tests {
    //! The connection manager against a scripted event-socket peer on loopback (the real client,
    //! a real socket): connect, health, the switch's sessions-per-second, a shutdown notice, a
    //! reconnect.

    use std::time::Duration;

    use tokio::{
        io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
        net::{TcpListener, TcpStream},
    };

    use crate::telephony::{
        freeswitch::{config::FreeswitchConfig, FreeswitchBackend},
        Telephony,
    };

    /// Reads one command (lines up to a blank line).
    async fn command(reader: &mut BufReader<TcpStream>) -> String {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            assert!(
                reader.read_line(&mut line).await.unwrap() > 0,
                "peer: EOF after {text:?}"
            );
            if line == "\n" {
                return text;
            }
            text.push_str(&line);
        }
    }

    async fn reply(reader: &mut BufReader<TcpStream>, text: &str) {
        reader.get_mut().write_all(text.as_bytes()).await.unwrap();
    }

    /// The switch's greeting to the next connection, `auth <password>` and its answer
    /// `reply_text`.
    async fn greet(
        listener: &TcpListener,
        password: &str,
        reply_text: &str,
    ) -> BufReader<TcpStream> {
        let (socket, _) = listener.accept().await.unwrap();
        let mut peer = BufReader::new(socket);
        reply(&mut peer, "Content-Type: auth/request\n\n").await;
        assert_eq!(command(&mut peer).await, format!("auth {password}\n"));
        reply(
            &mut peer,
            &format!("Content-Type: command/reply\nReply-Text: {reply_text}\n\n"),
        )
        .await;
        peer
    }

    /// The switch's side of a connect, up to and including `api status`.
    async fn accept(listener: &TcpListener) -> BufReader<TcpStream> {
        let mut peer = greet(listener, "ClueCon", "+OK accepted").await;
        let subscription = command(&mut peer).await;
        assert!(subscription.starts_with("event plain "), "{subscription}");
        for name in super::EVENTS {
            assert!(subscription.contains(name), "{subscription}");
        }
        assert!(!subscription.contains("ALL"), "{subscription}");
        reply(
            &mut peer,
            "Content-Type: command/reply\nReply-Text: +OK event listener enabled plain\n\n",
        )
        .await;
        assert_eq!(command(&mut peer).await, "api status\n");
        let status = "UP 0 years\n0 session(s) per Sec out of max 30, peak 0, last 5min 0 \n";
        reply(
            &mut peer,
            &format!(
                "Content-Type: api/response\nContent-Length: {}\n\n{status}",
                status.len()
            ),
        )
        .await;
        peer
    }

    /// A back end dialing a scripted switch on a fresh 127.0.0.1 port with `password`: the switch's
    /// listener, its address, the back end's data directory and the back end.
    async fn start_backend(
        password: &str,
    ) -> (TcpListener, String, tempfile::TempDir, FreeswitchBackend) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let data = tempfile::tempdir().unwrap();
        let config =
            FreeswitchConfig::new(&addr, password, "loopback/{number}/{dest_context}").unwrap();
        let backend = FreeswitchBackend::start(config, data.path(), 200.0).unwrap();
        (listener, addr, data, backend)
    }

    async fn until(what: &str, mut check: impl FnMut() -> bool) {
        for _ in 0..400 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test]
    async fn connect_health_shutdown_and_reconnect() {
        let (listener, _, _data, backend) = start_backend("ClueCon").await;
        assert!(!backend.ready_to_dial());
        assert!(!backend.health().healthy);

        let mut peer = accept(&listener).await;
        until("connected", || backend.ready_to_dial()).await;
        let health = backend.health();
        assert!(health.healthy, "{health:?}");
        assert_eq!(health.switch_max_sps, Some(30));

        let body = "Event-Name: SHUTDOWN\nCore-UUID: x\n\n";
        reply(
            &mut peer,
            &format!(
                "Content-Length: {}\nContent-Type: text/event-plain\n\n{body}",
                body.len()
            ),
        )
        .await;
        until("no dialing after SHUTDOWN", || !backend.ready_to_dial()).await;
        assert!(backend.health().detail.contains("shutting down"));

        // The socket closes; the back end connects again by itself.
        drop(peer);
        let _peer = accept(&listener).await;
        until("connected again", || backend.ready_to_dial()).await;
        assert!(backend.health().healthy);
    }

    #[tokio::test]
    async fn a_refused_password_is_named() {
        let (listener, addr, _data, backend) = start_backend("wrong").await;
        let mut peer = greet(&listener, "wrong", "-ERR invalid").await;
        reply(
            &mut peer,
            "Content-Type: text/disconnect-notice\nContent-Length: 0\n\n",
        )
        .await;
        until("auth failure", || {
            backend.health().detail == format!("event socket authentication failed at {addr}")
        })
        .await;
        assert!(!backend.ready_to_dial());
        assert!(!backend.health().healthy);
    }

    fn event(peer_headers: &[(&str, &str)]) -> String {
        let body: String = peer_headers
            .iter()
            .map(|(name, value)| format!("{name}: {value}\n"))
            .collect::<String>()
            + "\n";
        format!(
            "Content-Length: {}\nContent-Type: text/event-plain\n\n{body}",
            body.len()
        )
    }

    fn request(uuid: &str) -> crate::telephony::CallRequest {
        crate::telephony::CallRequest {
            uuid: uuid.into(),
            number_id: 1,
            dest_number: "1000".into(),
            settings: std::sync::Arc::new(crate::telephony::CallSettings::for_test("context-1")),
        }
    }

    /// Reads a `bgapi originate` and acknowledges it; answers the call's uuid.
    async fn originate(peer: &mut BufReader<TcpStream>) -> String {
        let text = command(peer).await;
        assert!(
            text.starts_with("bgapi originate {origination_uuid="),
            "{text}"
        );
        let uuid = text["bgapi originate {origination_uuid=".len()..][..36].to_owned();
        let job = text
            .lines()
            .find_map(|line| line.strip_prefix("Job-UUID: "))
            .expect("a Job-UUID header")
            .to_owned();
        reply(
            peer,
            &format!(
                "Content-Type: command/reply\nReply-Text: +OK Job-UUID: {job}\nJob-UUID: {job}\n\n"
            ),
        )
        .await;
        uuid
    }

    async fn api_reply(peer: &mut BufReader<TcpStream>, text: &str) {
        reply(
            peer,
            &format!(
                "Content-Type: api/response\nContent-Length: {}\n\n{text}",
                text.len()
            ),
        )
        .await;
    }

    async fn ended(handle: &mut crate::telephony::CallHandle) -> crate::telephony::CallOutcome {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::time::timeout_at(deadline, handle.events.recv()).await {
                Ok(Some(crate::telephony::CallEvent::Ended(outcome))) => return outcome,
                Ok(Some(_)) => {}
                other => panic!("no end: {other:?}"),
            }
        }
    }

    /// A call placed while the switch is unreachable (the connection dropped after the dialer's
    /// readiness check) is not ended undialed: its originate goes out once connected; a call the
    /// dialer hangs up meanwhile ends with that cause, never sent.
    #[tokio::test]
    async fn a_call_placed_while_disconnected_waits_for_the_connection() {
        use crate::telephony::HangupCause;
        let (listener, _, _data, backend) = start_backend("ClueCon").await;
        assert!(!backend.ready_to_dial());
        let waiting_uuid = "cccccccc-0000-4000-8000-000000000003";
        let dropped_uuid = "dddddddd-0000-4000-8000-000000000004";
        let _waiting = backend.place_call(request(waiting_uuid));
        let mut dropped = backend.place_call(request(dropped_uuid));
        dropped.control.hang_up(HangupCause::SYSTEM_SHUTDOWN);
        let outcome = ended(&mut dropped).await;
        assert_eq!(outcome.cause, HangupCause::SYSTEM_SHUTDOWN);
        assert_eq!(outcome.answered_at, None);

        let mut peer = accept(&listener).await;
        let sent = tokio::time::timeout(Duration::from_secs(10), originate(&mut peer))
            .await
            .expect("the waiting call is placed once connected");
        assert_eq!(sent, waiting_uuid, "the waiting call goes out, and only it");
    }

    #[tokio::test]
    async fn calls_alive_across_a_reconnect_are_followed_or_end_unknown() {
        use crate::telephony::HangupCause;
        let (listener, _, _data, backend) = start_backend("ClueCon").await;
        let mut peer = accept(&listener).await;
        until("connected", || backend.ready_to_dial()).await;

        let kept_uuid = "aaaaaaaa-0000-4000-8000-000000000001";
        let gone_uuid = "bbbbbbbb-0000-4000-8000-000000000002";
        let mut kept = backend.place_call(request(kept_uuid));
        assert_eq!(originate(&mut peer).await, kept_uuid);
        let mut gone = backend.place_call(request(gone_uuid));
        assert_eq!(originate(&mut peer).await, gone_uuid);
        for uuid in [kept_uuid, gone_uuid] {
            let created = event(&[
                ("Event-Name", "CHANNEL_CREATE"),
                ("Unique-ID", uuid),
                ("Channel-Name", "sofia/external/1000"),
            ]);
            reply(&mut peer, &created).await;
        }
        let answered = event(&[
            ("Event-Name", "CHANNEL_ANSWER"),
            ("Unique-ID", kept_uuid),
            ("Channel-Name", "sofia/external/1000"),
            ("Caller-Channel-Answered-Time", "1800000000000000"),
        ]);
        reply(&mut peer, &answered).await;

        // The connection is lost; the calls stay, no new one may start.
        drop(peer);
        until("not ready", || !backend.ready_to_dial()).await;
        let mut peer = accept(&listener).await;
        for _ in 0..2 {
            let asked = command(&mut peer).await;
            let known = asked == format!("api uuid_exists {kept_uuid}\n");
            assert!(
                known || asked == format!("api uuid_exists {gone_uuid}\n"),
                "{asked}"
            );
            api_reply(&mut peer, if known { "true" } else { "false" }).await;
        }
        let outcome = ended(&mut gone).await;
        assert_eq!(outcome.cause, super::call::OUTCOME_UNKNOWN);
        assert_eq!(outcome.sip_code, None);

        // The kept call is followed on: the dialer's hang-up reaches the switch as uuid_kill.
        kept.control.hang_up(HangupCause::ALLOTTED_TIMEOUT);
        assert_eq!(
            command(&mut peer).await,
            format!("api uuid_kill {kept_uuid} ALLOTTED_TIMEOUT\n")
        );
        api_reply(&mut peer, "+OK\n").await;
        let hangup = event(&[
            ("Event-Name", "CHANNEL_HANGUP_COMPLETE"),
            ("Unique-ID", kept_uuid),
            ("Channel-Name", "sofia/external/1000"),
            ("Hangup-Cause", "ALLOTTED_TIMEOUT"),
            ("Event-Date-Timestamp", "1800000009000000"),
        ]);
        reply(&mut peer, &hangup).await;
        let outcome = ended(&mut kept).await;
        assert_eq!(outcome.cause, HangupCause::ALLOTTED_TIMEOUT);
        assert_eq!(outcome.sip_code, Some(200), "answered on a SIP leg");
        let answered_at = std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(outcome.answered_at, Some(answered_at));
        assert_eq!(outcome.ended_at, answered_at + Duration::from_secs(9));
    }
}
