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
                            inner.route(call::classify(&event, std::time::SystemTime::now()))
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
