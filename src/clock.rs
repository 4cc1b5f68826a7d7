//! Wall-clock times as the API shows them: `YYYY-MM-DD HH:MM:SS` in the configured time zone.
//! The database keeps unix seconds, so changing the time zone changes only how times are shown.

use chrono::{LocalResult, NaiveDateTime, TimeZone as _, Utc};
use chrono_tz::Tz;

pub const FORMAT: &str = "%Y-%m-%d %H:%M:%S";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeZone(Tz);

impl TimeZone {
    /// An IANA name such as `Asia/Shanghai` or `UTC`.
    pub fn named(name: &str) -> Result<Self, String> {
        name.parse::<Tz>().map(TimeZone).map_err(|_| {
            format!("unknown time zone {name:?} (expected an IANA name such as Asia/Shanghai)")
        })
    }

    /// The host's zone: `TZ` if set, else the system setting, else UTC.
    pub fn host() -> Self {
        let from_env = std::env::var("TZ")
            .ok()
            .map(|tz| tz.trim_start_matches(':').to_owned());
        from_env
            .into_iter()
            .chain(iana_time_zone::get_timezone().ok())
            .find_map(|name| Self::named(&name).ok())
            .unwrap_or(TimeZone(Tz::UTC))
    }

    pub fn name(&self) -> &'static str {
        self.0.name()
    }

    /// The zone itself, for local-time arithmetic (calling windows).
    pub fn tz(&self) -> Tz {
        self.0
    }

    pub fn format(&self, unix_seconds: i64) -> String {
        match Utc.timestamp_opt(unix_seconds, 0) {
            LocalResult::Single(utc) => utc.with_timezone(&self.0).format(FORMAT).to_string(),
            _ => String::new(),
        }
    }

    /// An unset time is `""`, never `null`.
    pub fn format_optional(&self, unix_seconds: Option<i64>) -> String {
        unix_seconds.map(|t| self.format(t)).unwrap_or_default()
    }

    /// Parses `YYYY-MM-DD HH:MM:SS` as a time in this zone. A time skipped by a daylight-saving
    /// jump is refused; an ambiguous one takes the earlier instant.
    pub fn parse(&self, text: &str) -> Result<i64, String> {
        let naive = NaiveDateTime::parse_from_str(text, FORMAT)
            .ok()
            .filter(|_| text.len() == 19)
            .ok_or_else(|| format!("{text:?} is not a time of the form YYYY-MM-DD HH:MM:SS"))?;
        match self.0.from_local_datetime(&naive) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Ok(t.timestamp()),
            LocalResult::None => Err(format!(
                "{text:?} does not exist in time zone {}",
                self.name()
            )),
        }
    }
}

pub fn now() -> i64 {
    Utc::now().timestamp()
}

/// The wall clock of the dialer's schedules (retries, calling windows, the per-day cap, webhook
/// backoff, auto_dial starts and stops): the system's, or for tests a manual one that only moves
/// when told, so that hours of schedule pass in milliseconds. Clones share one clock.
#[derive(Debug, Clone, Default)]
pub struct Clock(Option<std::sync::Arc<ManualClock>>);

#[derive(Debug)]
struct ManualClock {
    /// Unix seconds.
    now: std::sync::atomic::AtomicI64,
    moved: tokio::sync::watch::Sender<i64>,
}

impl Clock {
    pub fn system() -> Self {
        Clock(None)
    }

    /// A clock standing at `unix_seconds` until `set` or `advance` moves it.
    pub fn manual(unix_seconds: i64) -> Self {
        Clock(Some(std::sync::Arc::new(ManualClock {
            now: unix_seconds.into(),
            moved: tokio::sync::watch::channel(unix_seconds).0,
        })))
    }

    pub fn is_manual(&self) -> bool {
        self.0.is_some()
    }

    /// Unix seconds.
    pub fn now(&self) -> i64 {
        match &self.0 {
            None => now(),
            Some(manual) => manual.now.load(std::sync::atomic::Ordering::SeqCst),
        }
    }

    /// Moves a manual clock to `unix_seconds` and wakes whoever waits on [`Clock::moved`].
    /// Panics on the system clock.
    pub fn set(&self, unix_seconds: i64) {
        let manual = self.0.as_ref().expect("only a manual clock can be set");
        manual
            .now
            .store(unix_seconds, std::sync::atomic::Ordering::SeqCst);
        manual.moved.send_replace(unix_seconds);
    }

    /// Moves a manual clock forward by `seconds`.
    pub fn advance(&self, seconds: i64) {
        self.set(self.now() + seconds);
    }

    /// Resolves when a manual clock is moved after this call; never for the system clock.
    pub async fn moved(&self) {
        match &self.0 {
            None => std::future::pending().await,
            Some(manual) => {
                let mut moved = manual.moved.subscribe();
                let _ = moved.changed().await;
            }
        }
    }

    /// How long to sleep, in real time, before unix second `at` comes, at most `most`. With a
    /// manual clock the sleep is `most` at once unless `at` has come (pair it with `moved`).
    pub fn until(&self, at: i64, most: std::time::Duration) -> std::time::Duration {
        let seconds = at.saturating_sub(self.now());
        if seconds <= 0 {
            return std::time::Duration::ZERO;
        }
        std::time::Duration::from_secs(seconds as u64).min(most)
    }
}

/// `first` doubled `doublings` times, at most `most`: a backoff's wait.
pub fn doubled(
    first: std::time::Duration,
    doublings: u32,
    most: std::time::Duration,
) -> std::time::Duration {
    first.saturating_mul(1 << doublings.min(16)).min(most)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_in_a_named_zone() {
        let shanghai = TimeZone::named("Asia/Shanghai").unwrap();
        let t = shanghai.parse("2026-04-24 05:18:23").unwrap();
        assert_eq!(t, 1776979103);
        assert_eq!(shanghai.format(t), "2026-04-24 05:18:23");
        assert_eq!(
            TimeZone::named("UTC").unwrap().format(t),
            "2026-04-23 21:18:23"
        );
    }

    #[test]
    fn refuses_other_shapes() {
        let utc = TimeZone::named("UTC").unwrap();
        for bad in [
            "",
            "2026-04-24",
            "2026-04-24T05:18:23",
            "2026-4-24 5:18:23",
            "2026-02-30 00:00:00",
            "now()",
        ] {
            assert!(utc.parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(TimeZone::named("Mars/Olympus").is_err());
    }

    #[tokio::test]
    async fn a_manual_clock_moves_only_when_told_and_wakes_its_waiters() {
        let clock = Clock::manual(1_000);
        let shared = clock.clone();
        assert_eq!(clock.now(), 1_000);
        let waiter = tokio::spawn(async move { shared.moved().await });
        tokio::task::yield_now().await;
        clock.advance(300);
        waiter.await.unwrap();
        assert_eq!(clock.now(), 1_300);
        let most = std::time::Duration::from_secs(1);
        assert_eq!(clock.until(1_200, most), std::time::Duration::ZERO);
        assert_eq!(clock.until(5_000, most), most);
        assert!(!Clock::system().is_manual());
        assert!((Clock::system().now() - now()).abs() <= 1);
    }

    #[test]
    fn unset_is_empty() {
        assert_eq!(TimeZone::named("UTC").unwrap().format_optional(None), "");
    }
}
