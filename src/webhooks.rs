//! Result webhooks: sends the rows of the outbox (`webhook_outbox`, queued by the database with
//! each finished attempt of a task that has a `webhook_url`) as `POST`s, a few at a time, oldest
//! due first, until each is delivered (a 2xx within 10 s) or has failed for 24 hours.
//!
//! Delivery is at least once: a row is marked delivered after its 2xx, so a stop between the two
//! sends it again at the next start (receivers drop repeats by `X-Outcall-Delivery`). Every
//! schedule reads the dialer's clock (a test's manual one moves hours in an instant).

use std::{collections::HashMap, sync::Arc, time::Duration};

use hmac::{Hmac, Mac};
use reqwest::header::{CONTENT_TYPE, USER_AGENT};
use sha2::Sha256;
use tokio::{
    sync::Notify,
    task::{Id, JoinHandle, JoinSet},
};
use tokio_util::sync::CancellationToken;

use crate::{
    api::webhook_body,
    clock::{self, Clock, TimeZone},
    db::{self, webhooks::Outgoing, Db},
};

/// POSTs in flight at once.
const IN_FLIGHT: usize = 8;
/// A try that has no answer's head within this long fails (`timed out`).
pub const TRY_TIMEOUT: Duration = Duration::from_secs(10);
/// The wait after the first failed try, doubling with each one after…
const BACKOFF_FIRST: Duration = Duration::from_secs(5);
/// …up to this.
const BACKOFF_MOST: Duration = Duration::from_secs(3600);
/// A row not delivered this long after it was queued (its call's end) has failed for good.
pub const GIVE_UP_AFTER_SECONDS: i64 = 24 * 3600;
/// The longest real-time wait before looking at the outbox again: a manual clock, or a row queued
/// without a wake-up (crash recovery's), is seen within it.
const LONGEST_WAIT: Duration = Duration::from_secs(1);
/// `last_error` is kept short.
const ERROR_CHARS: usize = 200;

/// `sha256=<hex HMAC-SHA256 of body keyed by secret>`, the `X-Outcall-Signature` header's value.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// What the sender needs: its own database pool, the schedules' clock, the zone of the bodies'
/// times, and the signing key (none: no signature header).
pub struct Sender {
    pub db: Db,
    pub clock: Clock,
    pub time_zone: TimeZone,
    pub secret: Option<String>,
}

/// Starts sending on `runtime` until `stop` is cancelled; `queued` wakes it when a call's result
/// (and perhaps its webhook) was written.
pub fn start(
    sender: Sender,
    queued: Arc<Notify>,
    stop: CancellationToken,
    runtime: &tokio::runtime::Handle,
) -> anyhow::Result<JoinHandle<()>> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TRY_TIMEOUT)
        .build()?;
    let sending = Arc::new(Sending {
        db: sender.db,
        clock: sender.clock,
        time_zone: sender.time_zone,
        secret: sender.secret.map(String::into_bytes),
        client,
    });
    Ok(runtime.spawn(run(sending, queued, stop)))
}

struct Sending {
    db: Db,
    clock: Clock,
    time_zone: TimeZone,
    secret: Option<Vec<u8>>,
    client: reqwest::Client,
}

/// Why a try did not deliver.
enum Failure {
    /// Tried again later (a refused connection, a timeout, a non-2xx answer).
    Again(String),
    /// Never sendable (a URL that is not http(s), a damaged stored body): failed at once.
    Never(String),
}

async fn run(sending: Arc<Sending>, queued: Arc<Notify>, stop: CancellationToken) {
    let mut in_flight = JoinSet::new();
    // The rows being sent, by the task sending each.
    let mut rows: HashMap<Id, i64> = HashMap::new();
    loop {
        let now = sending.clock.now();
        let free = IN_FLIGHT - in_flight.len();
        let mut wait = LONGEST_WAIT;
        if free > 0 {
            let limit = free + rows.len();
            match sending
                .db
                .run(move |conn| db::webhooks::due(conn, now, limit))
                .await
            {
                Ok(due) => {
                    let all_due_seen = due.len() < limit;
                    let fresh: Vec<Outgoing> = due
                        .into_iter()
                        .filter(|row| !rows.values().any(|id| *id == row.id))
                        .take(free)
                        .collect();
                    for row in fresh {
                        let id = row.id;
                        let task = in_flight.spawn(sending.clone().deliver(row));
                        rows.insert(task.id(), id);
                    }
                    if all_due_seen && in_flight.len() < IN_FLIGHT {
                        wait = sending.until_next_due(now).await;
                    }
                }
                Err(error) => tracing::warn!(%error, "webhooks: could not read the outbox"),
            }
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            Some(ended) = in_flight.join_next_with_id(), if !in_flight.is_empty() => {
                let task = match &ended {
                    Ok((task, ())) => *task,
                    Err(error) => error.id(),
                };
                if let Some(id) = rows.remove(&task) {
                    if let Err(error) = ended {
                        tracing::error!(%error, outbox_id = id, "webhooks: a delivery failed");
                    }
                }
            }
            _ = queued.notified() => {}
            _ = sending.clock.moved() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
    // Deliveries cut short stay pending: sent again at the next start.
    in_flight.shutdown().await;
}

impl Sending {
    /// How long (real time) until the next pending row not yet due is, at most `LONGEST_WAIT`.
    async fn until_next_due(&self, now: i64) -> Duration {
        match self
            .db
            .run(move |conn| db::webhooks::next_due_after(conn, now))
            .await
        {
            Ok(Some(at)) => self.clock.until(at, LONGEST_WAIT),
            Ok(None) => LONGEST_WAIT,
            Err(error) => {
                tracing::warn!(%error, "webhooks: could not read the outbox");
                LONGEST_WAIT
            }
        }
    }

    /// One try of a row, and its outcome written. A write that fails leaves the row pending as
    /// it was: it is tried again (at least once).
    async fn deliver(self: Arc<Self>, row: Outgoing) {
        let outcome = self.post(&row).await;
        let now = self.clock.now();
        let id = row.id;
        let written = match &outcome {
            Ok(()) => {
                tracing::debug!(outbox_id = id, task = row.group_id, "webhook delivered");
                self.db
                    .run(move |conn| db::webhooks::mark_delivered(conn, id, now))
                    .await
            }
            Err(failure) => {
                let (error, next_try_at) = match failure {
                    Failure::Again(error) => (error.clone(), next_try(&row, now)),
                    Failure::Never(error) => (error.clone(), None),
                };
                tracing::info!(
                    outbox_id = id,
                    task = row.group_id,
                    tries = row.tries + 1,
                    %error,
                    next_try_at,
                    "webhook not delivered"
                );
                self.db
                    .run(move |conn| db::webhooks::mark_failed_try(conn, id, &error, next_try_at))
                    .await
            }
        };
        if let Err(error) = written {
            tracing::warn!(%error, outbox_id = id, "webhooks: could not record a try");
            // Still counted as being sent meanwhile: not tried again at once while the database
            // fails.
            tokio::time::sleep(LONGEST_WAIT).await;
        }
    }

    async fn post(&self, row: &Outgoing) -> Result<(), Failure> {
        let url =
            reqwest::Url::parse(&row.url).map_err(|e| Failure::Never(format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Failure::Never(format!(
                "not an http or https URL: {:?}",
                url.scheme()
            )));
        }
        let body = webhook_body::render(&row.body, self.time_zone).map_err(Failure::Never)?;
        let mut request = self
            .client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, "outcall")
            .header("X-Outcall-Delivery", row.id.to_string());
        if let Some(secret) = &self.secret {
            request = request.header("X-Outcall-Signature", signature(secret, &body));
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| Failure::Again(describe(&e)))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else if status.is_redirection() {
            Err(Failure::Again(format!(
                "HTTP {} (redirects are not followed)",
                status.as_u16()
            )))
        } else {
            Err(Failure::Again(format!("HTTP {}", status.as_u16())))
        }
    }
}

/// After a failed try: 5 s after the first, doubling up to an hour, never after the row's 24
/// hours are over (the last try is then); `None` once they are: the row has failed.
fn next_try(row: &Outgoing, now: i64) -> Option<i64> {
    let deadline = row.created_at.saturating_add(GIVE_UP_AFTER_SECONDS);
    if now >= deadline {
        return None;
    }
    let doublings = u32::try_from(row.tries).unwrap_or(u32::MAX);
    let wait = clock::doubled(BACKOFF_FIRST, doublings, BACKOFF_MOST).as_secs() as i64;
    Some((now + wait).min(deadline))
}

/// A short account of a failed request: `timed out after 10 s`, or the innermost cause (the
/// connection's error), at most `ERROR_CHARS` characters.
fn describe(error: &reqwest::Error) -> String {
    let text = if error.is_timeout() {
        format!("timed out after {} s", TRY_TIMEOUT.as_secs())
    } else {
        let mut cause: &dyn std::error::Error = error;
        while let Some(source) = cause.source() {
            cause = source;
        }
        if error.is_connect() {
            format!("connection failed: {cause}")
        } else {
            format!("request failed: {cause}")
        }
    };
    text.chars().take(ERROR_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(created_at: i64, tries: i64) -> Outgoing {
        Outgoing {
            id: 1,
            group_id: 1,
            url: String::new(),
            body: String::new(),
            created_at,
            tries,
        }
    }

    #[test]
    fn backoff_doubles_from_5_s_to_an_hour_until_24_hours_are_over() {
        assert_eq!(next_try(&row(1000, 0), 1000), Some(1005));
        assert_eq!(next_try(&row(1000, 1), 1010), Some(1020));
        assert_eq!(next_try(&row(1000, 2), 1020), Some(1040));
        assert_eq!(next_try(&row(1000, 12), 5000), Some(8600));
        assert_eq!(next_try(&row(0, 40), 86_000), Some(86_400));
        assert_eq!(next_try(&row(0, 3), 86_400), None);
    }

    #[test]
    fn the_signature_is_the_hex_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
