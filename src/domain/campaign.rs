//! The settings of issue 11 beyond XSwitch's: retries by outcome, calling windows and days, the
//! windows' time zone, and the result webhook. Each keeps the text the client sent (shown back as
//! sent) next to what it means.

use std::fmt;

use super::{BoundedInt, HangupCause, ValueError};
use crate::clock::TimeZone;

fn refuse<T>(message: impl Into<String>) -> Result<T, ValueError> {
    Err(ValueError(message.into()))
}

/// `max_attempts`: calls per number in all, the first included (1: no retry).
pub type MaxAttempts = BoundedInt<1, 100>;
/// `retry_interval`: the least wait, in seconds, before a number is dialed again (up to 30 days).
pub type RetryInterval = BoundedInt<1, 2_592_000>;

/// `retry_causes`: the hangup causes after which a number is dialed again, comma-separated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryCauses(Vec<HangupCause>);

impl RetryCauses {
    pub const DEFAULT: &'static str = "USER_BUSY,NO_ANSWER,NO_USER_RESPONSE,NORMAL_TEMPORARY_FAILURE,NORMAL_CIRCUIT_CONGESTION,RECOVERY_ON_TIMER_EXPIRE";

    /// Cause names separated by commas (spaces around them ignored); empty retries nothing.
    pub fn new(text: &str) -> Result<Self, ValueError> {
        let mut causes = Vec::new();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let cause = name.parse::<HangupCause>().map_err(|_| {
                ValueError(format!(
                    "names an unknown hangup cause {name:?} (expected names such as USER_BUSY,NO_ANSWER)"
                ))
            })?;
            if !causes.contains(&cause) {
                causes.push(cause);
            }
        }
        Ok(RetryCauses(causes))
    }

    /// A stored value; unknown names (none are written) are skipped.
    pub fn stored(text: &str) -> Self {
        RetryCauses(
            text.split(',')
                .filter_map(|name| name.trim().parse().ok())
                .collect(),
        )
    }

    pub fn contains(&self, cause: HangupCause) -> bool {
        self.0.contains(&cause)
    }

    pub fn causes(&self) -> &[HangupCause] {
        &self.0
    }
}

impl Default for RetryCauses {
    fn default() -> Self {
        RetryCauses::stored(Self::DEFAULT)
    }
}

impl fmt::Display for RetryCauses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, cause) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(cause.as_str())?;
        }
        Ok(())
    }
}

/// One calling window, minutes after midnight: `start` included, `end` excluded. `end <= start`
/// runs across midnight (the window belongs to the day it starts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: u16,
    pub end: u16,
}

impl Window {
    pub fn crosses_midnight(&self) -> bool {
        self.end <= self.start
    }
}

/// `call_windows`: `HH:MM-HH:MM` windows separated by commas; empty: any time of day.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CallWindows {
    text: String,
    windows: Vec<Window>,
}

fn minutes(text: &str) -> Option<u16> {
    let (h, m) = text.trim().split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    // 24:00 ends a window at midnight.
    ((h < 24 && m < 60) || (h == 24 && m == 0)).then_some(h * 60 + m)
}

impl CallWindows {
    pub const MAX_CHARS: usize = 512;

    pub fn new(text: &str) -> Result<Self, ValueError> {
        let text = text.trim();
        if text.len() > Self::MAX_CHARS {
            return refuse(format!("is over {} characters", Self::MAX_CHARS));
        }
        let mut windows = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let window = part
                .split_once('-')
                .and_then(|(start, end)| Some((minutes(start)?, minutes(end)?)))
                .filter(|(start, end)| start != end && *start < 24 * 60)
                .map(|(start, end)| Window {
                    start,
                    end: end % (24 * 60),
                })
                .ok_or_else(|| {
                    ValueError(format!(
                        "has {part:?}, not a window HH:MM-HH:MM (e.g. 09:00-12:00,14:00-18:00; 22:00-02:00 runs across midnight)"
                    ))
                })?;
            windows.push(window);
        }
        Ok(CallWindows {
            text: text.to_owned(),
            windows,
        })
    }

    /// A stored value (checked when it was written).
    pub fn stored(text: &str) -> Self {
        CallWindows::new(text).unwrap_or_default()
    }

    /// No window: any time of day.
    pub fn is_always(&self) -> bool {
        self.windows.is_empty()
    }

    pub fn windows(&self) -> &[Window] {
        &self.windows
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// `call_weekdays`: ISO days (1 Monday … 7 Sunday) as `1,2,3`, ranges `1-5`, or both; empty: every
/// day.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Weekdays {
    text: String,
    /// Bit `d` set: ISO day `d` allowed; 0: every day.
    mask: u8,
}

impl Weekdays {
    pub fn new(text: &str) -> Result<Self, ValueError> {
        let text = text.trim();
        let mut mask = 0u8;
        let day = |t: &str| t.trim().parse::<u8>().ok().filter(|d| (1..=7).contains(d));
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (first, last) = match part.split_once('-') {
                Some((a, b)) => (day(a), day(b)),
                None => (day(part), day(part)),
            };
            match (first, last) {
                (Some(first), Some(last)) if first <= last => {
                    for d in first..=last {
                        mask |= 1 << d;
                    }
                }
                _ => {
                    return refuse(format!(
                        "has {part:?}, not an ISO weekday 1-7 (Monday is 1) or a range such as 1-5"
                    ))
                }
            }
        }
        Ok(Weekdays {
            text: text.to_owned(),
            mask,
        })
    }

    pub fn stored(text: &str) -> Self {
        Weekdays::new(text).unwrap_or_default()
    }

    /// Whether ISO day `iso_day` (1 Monday … 7 Sunday) is a calling day.
    pub fn allows(&self, iso_day: u32) -> bool {
        self.mask == 0 || (iso_day <= 7 && self.mask & (1 << iso_day) != 0)
    }

    pub fn is_every_day(&self) -> bool {
        self.mask == 0
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// `time_zone`: the zone of a task's windows and days; `None` (shown as `""`) is the server's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaskTimeZone(Option<TimeZone>);

impl TaskTimeZone {
    pub fn new(text: &str) -> Result<Self, ValueError> {
        match text.trim() {
            "" => Ok(TaskTimeZone(None)),
            name => TimeZone::named(name)
                .map(|tz| TaskTimeZone(Some(tz)))
                .map_err(|e| ValueError(format!("is {e}"))),
        }
    }

    pub fn stored(text: &str) -> Self {
        TaskTimeZone::new(text).unwrap_or_default()
    }

    /// This zone, or `server` when the task has none.
    pub fn or(self, server: TimeZone) -> TimeZone {
        self.0.unwrap_or(server)
    }

    pub fn as_str(&self) -> &str {
        self.0.map(|tz| tz.name()).unwrap_or("")
    }
}

/// `webhook_url`: empty (no webhook) or an absolute `http` or `https` URL with a host.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WebhookUrl(String);

impl WebhookUrl {
    pub const MAX_CHARS: usize = 2048;

    pub fn new(text: &str) -> Result<Self, ValueError> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(WebhookUrl(String::new()));
        }
        if text.len() > Self::MAX_CHARS {
            return refuse(format!("is over {} characters", Self::MAX_CHARS));
        }
        let url = url::Url::parse(text)
            .map_err(|e| ValueError(format!("is not a URL ({e}): {text:?}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return refuse(format!(
                "must be an http or https URL, not {:?}",
                url.scheme()
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return refuse(format!("must name a host: {text:?}"));
        }
        Ok(WebhookUrl(url.to_string()))
    }

    pub fn stored(text: &str) -> Self {
        WebhookUrl(text.to_owned())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_causes_read_names_and_show_them_back() {
        let causes = RetryCauses::new(" USER_BUSY , NO_ANSWER,USER_BUSY").unwrap();
        assert_eq!(causes.to_string(), "USER_BUSY,NO_ANSWER");
        assert!(causes.contains(HangupCause::NO_ANSWER));
        assert!(!causes.contains(HangupCause::NORMAL_CLEARING));
        assert!(RetryCauses::new("").unwrap().causes().is_empty());
        let error = RetryCauses::new("USER_BUSY,BUSY").unwrap_err();
        assert!(error.0.contains("\"BUSY\""), "{error}");
        assert_eq!(RetryCauses::default().to_string(), RetryCauses::DEFAULT);
    }

    #[test]
    fn windows_parse_and_cross_midnight() {
        let w = CallWindows::new("09:00-12:00, 14:00-18:30").unwrap();
        assert_eq!(
            w.windows(),
            &[
                Window {
                    start: 540,
                    end: 720
                },
                Window {
                    start: 840,
                    end: 1110
                }
            ]
        );
        assert_eq!(w.as_str(), "09:00-12:00, 14:00-18:30");
        let night = CallWindows::new("22:00-02:00").unwrap();
        assert!(night.windows()[0].crosses_midnight());
        let to_midnight = CallWindows::new("20:00-24:00").unwrap();
        assert_eq!(
            to_midnight.windows()[0],
            Window {
                start: 1200,
                end: 0
            }
        );
        assert!(CallWindows::new("").unwrap().is_always());
        for bad in [
            "9-12",
            "09:00",
            "09:00-09:00",
            "25:00-26:00",
            "09:60-10:00",
            "24:00-01:00",
            "a",
        ] {
            assert!(CallWindows::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn weekdays() {
        let days = Weekdays::new("1-5").unwrap();
        assert!(days.allows(1) && days.allows(5) && !days.allows(6) && !days.allows(7));
        let days = Weekdays::new("1,3, 6-7").unwrap();
        assert!(days.allows(3) && !days.allows(2) && days.allows(7));
        assert!(Weekdays::new("").unwrap().allows(6));
        for bad in ["0", "8", "5-1", "mon", "1-"] {
            assert!(Weekdays::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn zones_and_urls() {
        assert_eq!(TaskTimeZone::new("").unwrap().as_str(), "");
        assert_eq!(
            TaskTimeZone::new("Asia/Shanghai").unwrap().as_str(),
            "Asia/Shanghai"
        );
        assert!(TaskTimeZone::new("Mars/Base").is_err());
        assert_eq!(
            WebhookUrl::new("https://example.com/hook?a=1")
                .unwrap()
                .as_str(),
            "https://example.com/hook?a=1"
        );
        assert!(WebhookUrl::new("").unwrap().is_empty());
        for bad in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "example.com",
            "http://",
        ] {
            assert!(WebhookUrl::new(bad).is_err(), "{bad:?}");
        }
    }
}
