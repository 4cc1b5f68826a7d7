//! Admission of incoming SIP requests, before the stack spends anything on them.
//!
//! We place calls and take none, so the only requests that matter are those of our own calls
//! (their Call-ID is one we chose, unguessable) and the odd OPTIONS ping, mostly from our trunks.
//! A trunk's address has a budget of its own. Everything else is a stranger's request: each
//! source IP gets a small budget, and all strangers together another, so that a flood costs a
//! constant per datagram (a hash lookup) instead of a transaction, a task and its timers, and
//! cannot starve the trunks. Requests over budget are dropped unanswered, as UDP allows.

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    time::Instant,
};

use rsipstack::{
    sip::{prelude::HeadersExt, Method, SipMessage},
    transaction::endpoint::TransportEventInspector,
    transport::TransportEvent,
};

/// Requests a second from one source outside our calls, and the burst it may save up.
const PER_SOURCE_RATE: f64 = 20.0;
const PER_SOURCE_BURST: f64 = 40.0;
/// Requests a second from all strangers together, and their burst.
const STRANGERS_RATE: f64 = 200.0;
const STRANGERS_BURST: f64 = 400.0;
/// Sources remembered at once; beyond this, idle ones are forgotten, and while none is idle a
/// new source has no budget of its own (the strangers' budget still applies).
const MAX_SOURCES: usize = 4096;

/// The Call-IDs of the calls we have placed and not yet finished.
#[derive(Debug, Default)]
pub struct LiveCalls {
    call_ids: Mutex<HashSet<String>>,
}

impl LiveCalls {
    fn lock(&self) -> MutexGuard<'_, HashSet<String>> {
        self.call_ids
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Marks `call_id` as ours until the returned guard is dropped.
    pub fn register(self: &Arc<Self>, call_id: &str) -> LiveCall {
        self.lock().insert(call_id.to_owned());
        LiveCall {
            calls: self.clone(),
            call_id: call_id.to_owned(),
        }
    }

    pub fn contains(&self, call_id: &str) -> bool {
        self.lock().contains(call_id)
    }
}

/// One of our calls, known as ours while this lives.
pub struct LiveCall {
    calls: Arc<LiveCalls>,
    call_id: String,
}

impl Drop for LiveCall {
    fn drop(&mut self) {
        self.calls.lock().remove(&self.call_id);
    }
}

/// A token bucket: `rate` tokens a second, at most `burst` saved.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: burst,
            updated: now,
        }
    }

    fn refill(&mut self, rate: f64, burst: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.updated = now;
    }

    fn take(&mut self, rate: f64, burst: f64, now: Instant) -> bool {
        self.refill(rate, burst, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Budgets {
    /// One per configured trunk address.
    trunks: HashMap<SocketAddr, Bucket>,
    sources: HashMap<IpAddr, Bucket>,
    strangers: Bucket,
    /// When idle sources were last forgotten: at most once a second, so that a flood of new
    /// sources does not make every datagram walk the whole table.
    last_purge: Instant,
}

/// Decides, per incoming datagram, whether the SIP stack gets to see it.
pub struct IncomingGuard {
    calls: Arc<LiveCalls>,
    budgets: Mutex<Budgets>,
}

/// What the guard made of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A response, or a request of one of our calls.
    Ours,
    /// A request from a trunk's address within its budget.
    Trunk,
    /// A stranger's request within budget.
    Stranger,
    /// Dropped.
    Refused,
}

impl IncomingGuard {
    /// `trunks`: the addresses of the trunks (those given as IP addresses), whose requests do not
    /// compete with strangers'.
    pub fn new(calls: Arc<LiveCalls>, trunks: &[SocketAddr]) -> IncomingGuard {
        let now = Instant::now();
        IncomingGuard {
            calls,
            budgets: Mutex::new(Budgets {
                trunks: trunks
                    .iter()
                    .map(|address| (*address, Bucket::full(PER_SOURCE_BURST, now)))
                    .collect(),
                sources: HashMap::new(),
                strangers: Bucket::full(STRANGERS_BURST, now),
                last_purge: now,
            }),
        }
    }

    pub fn admit(&self, message: &SipMessage, source: Option<SocketAddr>) -> Admission {
        self.admit_at(message, source, Instant::now())
    }

    fn admit_at(
        &self,
        message: &SipMessage,
        source: Option<SocketAddr>,
        now: Instant,
    ) -> Admission {
        let SipMessage::Request(request) = message else {
            // A response matches one of our transactions or is dropped by the stack at once.
            return Admission::Ours;
        };
        let ours = request
            .call_id_header()
            .is_ok_and(|call_id| self.calls.contains(call_id.value()));
        if ours {
            return Admission::Ours;
        }
        if request.method == Method::Ack {
            // An ACK outside our calls has nothing to acknowledge.
            return Admission::Refused;
        }
        let mut budgets = self
            .budgets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(trunk) = source.and_then(|address| budgets.trunks.get_mut(&address)) {
            return if trunk.take(PER_SOURCE_RATE, PER_SOURCE_BURST, now) {
                Admission::Trunk
            } else {
                Admission::Refused
            };
        }
        if let Some(ip) = source.map(|address| address.ip()) {
            if !budgets.sources.contains_key(&ip)
                && budgets.sources.len() >= MAX_SOURCES
                && now.saturating_duration_since(budgets.last_purge).as_secs() >= 1
            {
                budgets.last_purge = now;
                budgets.sources.retain(|_, bucket| {
                    bucket.refill(PER_SOURCE_RATE, PER_SOURCE_BURST, now);
                    bucket.tokens < PER_SOURCE_BURST
                });
            }
            if budgets.sources.len() < MAX_SOURCES || budgets.sources.contains_key(&ip) {
                let bucket = budgets
                    .sources
                    .entry(ip)
                    .or_insert_with(|| Bucket::full(PER_SOURCE_BURST, now));
                if !bucket.take(PER_SOURCE_RATE, PER_SOURCE_BURST, now) {
                    return Admission::Refused;
                }
            }
        }
        if budgets.strangers.take(STRANGERS_RATE, STRANGERS_BURST, now) {
            Admission::Stranger
        } else {
            Admission::Refused
        }
    }
}

/// The guard as rsipstack's hook on every received message.
pub struct GuardInspector(pub Arc<IncomingGuard>);

impl TransportEventInspector for GuardInspector {
    fn handle<'life0, 'async_trait>(
        &'life0 self,
        event: TransportEvent,
    ) -> Pin<Box<dyn Future<Output = Option<TransportEvent>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let admitted = match &event {
            TransportEvent::Incoming(message, _, from) => {
                let source = from.get_socketaddr().ok();
                self.0.admit(message, source) != Admission::Refused
            }
            _ => true,
        };
        Box::pin(std::future::ready(admitted.then_some(event)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn request(method: &str, call_id: &str) -> SipMessage {
        let text = format!(
            "{method} sip:outcall@127.0.0.1 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK{call_id}\r\n\
             From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:outcall@127.0.0.1>\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        );
        SipMessage::try_from(text.as_str()).unwrap()
    }

    #[test]
    fn strangers_are_held_to_their_budget_and_our_calls_are_not() {
        let calls = Arc::new(LiveCalls::default());
        let guard = IncomingGuard::new(calls.clone(), &[]);
        let ours = calls.register("ours");
        let start = Instant::now();
        let attacker = Some(SocketAddr::from(([10, 0, 0, 1], 5060)));
        let stranger = request("INVITE", "forged");
        let admitted = (0..1000)
            .filter(|_| guard.admit_at(&stranger, attacker, start) == Admission::Stranger)
            .count();
        assert_eq!(admitted, PER_SOURCE_BURST as usize);
        // Our call's requests pass whatever the flood did, from anywhere.
        for _ in 0..1000 {
            assert_eq!(
                guard.admit_at(&request("BYE", "ours"), attacker, start),
                Admission::Ours
            );
        }
        // Other ports of the same host share its budget.
        let attacker_port = Some(SocketAddr::from(([10, 0, 0, 1], 5062)));
        assert_eq!(
            guard.admit_at(&request("OPTIONS", "ping"), attacker_port, start),
            Admission::Refused
        );
        // Another source still has its budget; the flooder earns tokens back with time.
        let other = Some(SocketAddr::from(([10, 0, 0, 2], 5060)));
        assert_eq!(
            guard.admit_at(&request("OPTIONS", "ping"), other, start),
            Admission::Stranger
        );
        let later = start + Duration::from_secs(1);
        let admitted = (0..1000)
            .filter(|_| guard.admit_at(&stranger, attacker, later) == Admission::Stranger)
            .count();
        assert_eq!(admitted, PER_SOURCE_RATE as usize);
        // A forged ACK is never passed on; the call's end makes its Call-ID a stranger's.
        assert_eq!(
            guard.admit_at(&request("ACK", "forged2"), other, later),
            Admission::Refused
        );
        drop(ours);
        assert_ne!(
            guard.admit_at(&request("BYE", "ours"), attacker, later),
            Admission::Ours
        );
    }

    #[test]
    fn many_sources_share_one_budget_and_memory_stays_bounded() {
        let trunk = SocketAddr::from(([192, 0, 2, 7], 5060));
        let guard = IncomingGuard::new(Arc::new(LiveCalls::default()), &[trunk]);
        let now = Instant::now();
        let stranger = request("OPTIONS", "spoofed");
        let admitted = (0..100_000u32)
            .filter(|n| {
                let source = Some(SocketAddr::from((n.to_be_bytes(), 5060)));
                guard.admit_at(&stranger, source, now) == Admission::Stranger
            })
            .count();
        assert_eq!(admitted, STRANGERS_BURST as usize);
        assert!(guard.budgets.lock().unwrap().sources.len() <= MAX_SOURCES);
        // The trunk's keep-alive still gets through, from its own address only.
        assert_eq!(
            guard.admit_at(&request("OPTIONS", "keepalive"), Some(trunk), now),
            Admission::Trunk
        );
        let beside_the_trunk = SocketAddr::from(([192, 0, 2, 7], 5070));
        assert_eq!(
            guard.admit_at(
                &request("OPTIONS", "keepalive"),
                Some(beside_the_trunk),
                now
            ),
            Admission::Refused
        );
    }
}
