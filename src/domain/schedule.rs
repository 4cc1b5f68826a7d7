//! When a task may start calls: its calling windows on its calling days, in its time zone.
//!
//! Windows are `[start, end)` in local time; a window whose end is not after its start runs across
//! midnight and belongs to the day it starts (so days `1-5` with `22:00-02:00` allow Friday 23:00
//! and Saturday 01:00, not Saturday 23:00). No window: all day; no day: every day. Local times are
//! turned into instants with daylight saving in mind: a window start or end skipped by a jump
//! forward moves to the first minute after the jump, and a repeated hour keeps the earlier reading
//! for a start and the later for an end (so every instant whose local time is in the window is).

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;

use super::{CallWindows, Weekdays};

/// How many days ahead the next opening is looked for: a calling day comes every week.
const DAYS_AHEAD: i64 = 8;
/// Longest daylight-saving (or calendar) jump looked past, in minutes (a whole skipped day, as
/// Samoa's in 2011, included).
const LONGEST_GAP_MINUTES: i64 = 48 * 60;

/// Whether a task may start a call at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallTime {
    /// Inside a window on a calling day.
    Now,
    /// Outside; the next window opens at this unix second.
    OpensAt(i64),
    /// No window opens in the next week (cannot happen with checked values).
    Never,
}

/// A task's calling windows and days.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CallSchedule {
    pub windows: CallWindows,
    pub weekdays: Weekdays,
}

impl CallSchedule {
    pub fn new(windows: CallWindows, weekdays: Weekdays) -> Self {
        CallSchedule { windows, weekdays }
    }

    /// Any time of any day: nothing to check.
    pub fn is_always(&self) -> bool {
        self.windows.is_always() && self.weekdays.is_every_day()
    }

    /// Whether calls may start at unix second `now` in zone `tz`, or when they next may.
    pub fn call_time(&self, tz: Tz, now: i64) -> CallTime {
        call_time(&self.windows, &self.weekdays, tz, now)
    }
}

/// Whether calls may start at unix second `now` under `windows` on `weekdays` in zone `tz`, and if
/// not, when the next window opens.
pub fn call_time(windows: &CallWindows, weekdays: &Weekdays, tz: Tz, now: i64) -> CallTime {
    let Some(today) = DateTime::from_timestamp(now, 0).map(|t| t.with_timezone(&tz).date_naive())
    else {
        return CallTime::Never;
    };
    let all_day = [(0u16, 24 * 60u16)];
    let spans: Vec<(u16, u16)> = if windows.is_always() {
        all_day.to_vec()
    } else {
        windows
            .windows()
            .iter()
            .map(|w| {
                // Ends on the next day when it crosses midnight.
                let end = if w.crosses_midnight() {
                    w.end + 24 * 60
                } else {
                    w.end
                };
                (w.start, end)
            })
            .collect()
    };
    let mut next: Option<i64> = None;
    // Yesterday's windows may run past midnight into today.
    for offset in -1..=DAYS_AHEAD {
        let Some(day) = today.checked_add_signed(Duration::days(offset)) else {
            continue;
        };
        if !weekdays.allows(day.weekday().number_from_monday()) {
            continue;
        }
        for &(start, end) in &spans {
            let (Some(opens), Some(closes)) = (
                instant(tz, day, start, Reading::Earliest),
                instant(tz, day, end, Reading::Latest),
            ) else {
                continue;
            };
            if opens >= closes {
                // Wholly inside a jump forward: that window does not happen that day.
                continue;
            }
            if opens <= now && now < closes {
                return CallTime::Now;
            }
            if opens > now && next.is_none_or(|n| opens < n) {
                next = Some(opens);
            }
        }
    }
    next.map_or(CallTime::Never, CallTime::OpensAt)
}

#[derive(Clone, Copy)]
enum Reading {
    Earliest,
    Latest,
}

/// The instant of `minutes` after the start of local `day` (24:00 and later are on the next days).
fn instant(tz: Tz, day: NaiveDate, minutes: u16, reading: Reading) -> Option<i64> {
    let local: NaiveDateTime = day
        .and_hms_opt(0, 0, 0)?
        .checked_add_signed(Duration::minutes(minutes.into()))?;
    // A local time skipped by a jump forward: the first minute that exists after it.
    for skipped in 0..=LONGEST_GAP_MINUTES {
        let candidate = local.checked_add_signed(Duration::minutes(skipped))?;
        match (tz.from_local_datetime(&candidate), reading) {
            (LocalResult::Single(t), _) => return Some(t.timestamp()),
            (LocalResult::Ambiguous(a, b), Reading::Earliest) => {
                return Some(a.timestamp().min(b.timestamp()))
            }
            (LocalResult::Ambiguous(a, b), Reading::Latest) => {
                return Some(a.timestamp().max(b.timestamp()))
            }
            (LocalResult::None, _) => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(windows: &str, days: &str) -> CallSchedule {
        CallSchedule::new(
            CallWindows::new(windows).unwrap(),
            Weekdays::new(days).unwrap(),
        )
    }

    fn tz(name: &str) -> Tz {
        name.parse().unwrap()
    }

    /// Unix seconds of a local time in `zone` (the earlier reading when repeated).
    fn at(zone: &str, text: &str) -> i64 {
        let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").unwrap();
        tz(zone)
            .from_local_datetime(&naive)
            .earliest()
            .unwrap()
            .timestamp()
    }

    fn utc(text: &str) -> i64 {
        at("UTC", text)
    }

    // 2026-11-30 is a Monday; 2026-12-05 a Saturday.

    #[test]
    fn no_window_and_no_day_is_always_open() {
        let s = schedule("", "");
        assert!(s.is_always());
        for t in [0, utc("2026-12-05 03:00"), utc("2026-12-06 23:59")] {
            assert_eq!(s.call_time(Tz::UTC, t), CallTime::Now);
        }
    }

    #[test]
    fn inside_and_outside_plain_windows() {
        let s = schedule("09:00-12:00,14:00-18:00", "");
        assert!(!s.is_always());
        let z = Tz::UTC;
        assert_eq!(s.call_time(z, utc("2026-11-30 09:00")), CallTime::Now);
        assert_eq!(s.call_time(z, utc("2026-11-30 11:59")), CallTime::Now);
        assert_eq!(
            s.call_time(z, utc("2026-11-30 12:00")),
            CallTime::OpensAt(utc("2026-11-30 14:00"))
        );
        assert_eq!(
            s.call_time(z, utc("2026-11-30 08:59")),
            CallTime::OpensAt(utc("2026-11-30 09:00"))
        );
        assert_eq!(
            s.call_time(z, utc("2026-11-30 18:00")),
            CallTime::OpensAt(utc("2026-12-01 09:00"))
        );
        // The opening itself is inside; one second before it is not.
        assert_eq!(
            s.call_time(z, utc("2026-11-30 14:00") - 1),
            CallTime::OpensAt(utc("2026-11-30 14:00"))
        );
    }

    #[test]
    fn a_window_across_midnight_belongs_to_the_day_it_starts() {
        let s = schedule("22:00-02:00", "1-5");
        let z = Tz::UTC;
        // Friday 23:00 and Saturday 01:00 (Friday's window) are inside.
        assert_eq!(s.call_time(z, utc("2026-12-04 23:00")), CallTime::Now);
        assert_eq!(s.call_time(z, utc("2026-12-05 01:00")), CallTime::Now);
        // Saturday 02:00 ends it; Saturday 23:00 is not a calling day's window: Monday 22:00.
        let monday = CallTime::OpensAt(utc("2026-12-07 22:00"));
        assert_eq!(s.call_time(z, utc("2026-12-05 02:00")), monday);
        assert_eq!(s.call_time(z, utc("2026-12-05 23:00")), monday);
        assert_eq!(s.call_time(z, utc("2026-12-06 01:00")), monday);
        // Monday 01:00: Sunday's window would have been, but Sunday is not a calling day.
        assert_eq!(s.call_time(z, utc("2026-12-07 01:00")), monday);
        // Tuesday 01:00 is Monday's window.
        assert_eq!(s.call_time(z, utc("2026-12-08 01:00")), CallTime::Now);
        assert_eq!(
            s.call_time(z, utc("2026-12-08 03:00")),
            CallTime::OpensAt(utc("2026-12-08 22:00"))
        );
    }

    #[test]
    fn a_window_to_midnight_and_all_day_on_some_days() {
        let s = schedule("18:00-24:00", "");
        let z = Tz::UTC;
        assert_eq!(s.call_time(z, utc("2026-11-30 23:59")), CallTime::Now);
        assert_eq!(
            s.call_time(z, utc("2026-12-01 00:00")),
            CallTime::OpensAt(utc("2026-12-01 18:00"))
        );
        let weekend = schedule("", "6,7");
        assert_eq!(
            weekend.call_time(z, utc("2026-12-02 10:00")),
            CallTime::OpensAt(utc("2026-12-05 00:00"))
        );
        assert_eq!(weekend.call_time(z, utc("2026-12-06 23:59")), CallTime::Now);
        assert_eq!(
            weekend.call_time(z, utc("2026-12-07 00:00")),
            CallTime::OpensAt(utc("2026-12-12 00:00"))
        );
    }

    #[test]
    fn weekdays_skip_to_the_next_calling_day() {
        let s = schedule("09:00-17:00", "1-5");
        let z = Tz::UTC;
        let monday = CallTime::OpensAt(utc("2026-12-07 09:00"));
        assert_eq!(s.call_time(z, utc("2026-12-04 17:00")), monday);
        assert_eq!(s.call_time(z, utc("2026-12-05 10:00")), monday);
        assert_eq!(s.call_time(z, utc("2026-12-06 10:00")), monday);
        assert_eq!(s.call_time(z, utc("2026-12-07 10:00")), CallTime::Now);
        // One day a week: the next one is up to a week ahead.
        let sundays = schedule("09:00-10:00", "7");
        assert_eq!(
            sundays.call_time(z, utc("2026-12-06 10:00")),
            CallTime::OpensAt(utc("2026-12-13 09:00"))
        );
    }

    #[test]
    fn the_zone_decides_the_day_and_the_hour() {
        let s = schedule("09:00-18:00", "1-5");
        let shanghai = tz("Asia/Shanghai");
        // Monday 09:00 in Shanghai is Monday 01:00 UTC, Sunday 17:00 UTC.
        assert_eq!(
            s.call_time(shanghai, utc("2026-11-29 17:00")),
            CallTime::OpensAt(utc("2026-11-30 01:00"))
        );
        assert_eq!(
            s.call_time(shanghai, utc("2026-11-30 01:00")),
            CallTime::Now
        );
        assert_eq!(
            s.call_time(shanghai, utc("2026-11-30 10:00")),
            CallTime::OpensAt(utc("2026-12-01 01:00"))
        );
        // Friday 18:00 Shanghai: Monday 09:00 Shanghai.
        assert_eq!(
            s.call_time(shanghai, utc("2026-12-04 10:00")),
            CallTime::OpensAt(utc("2026-12-07 01:00"))
        );
        // New York: Friday 20:00 local is Saturday 01:00 UTC, still Friday there.
        let evening = schedule("19:00-21:00", "5");
        assert_eq!(
            evening.call_time(tz("America/New_York"), utc("2026-12-05 01:00")),
            CallTime::Now
        );
    }

    #[test]
    fn a_jump_forward_moves_a_skipped_opening_to_after_the_jump() {
        // New York skips 02:00-03:00 on Sunday 2027-03-14.
        let ny = tz("America/New_York");
        let s = schedule("02:30-04:00", "");
        assert_eq!(
            s.call_time(ny, at("America/New_York", "2027-03-14 01:00")),
            CallTime::OpensAt(at("America/New_York", "2027-03-14 03:00"))
        );
        assert_eq!(
            s.call_time(ny, at("America/New_York", "2027-03-14 03:30")),
            CallTime::Now
        );
        // A window wholly inside the skipped hour does not happen that day.
        let skipped = schedule("02:10-02:50", "");
        assert_eq!(
            skipped.call_time(ny, at("America/New_York", "2027-03-14 01:00")),
            CallTime::OpensAt(at("America/New_York", "2027-03-15 02:10"))
        );
        // A window across the jump lasts an hour less.
        let across = schedule("01:00-04:00", "");
        let opens = at("America/New_York", "2027-03-14 01:00");
        assert_eq!(
            across.call_time(ny, opens + 2 * 3600 - 1),
            CallTime::Now,
            "03:59 EDT is inside"
        );
        assert_eq!(
            across.call_time(ny, opens + 2 * 3600),
            CallTime::OpensAt(at("America/New_York", "2027-03-15 01:00"))
        );
    }

    #[test]
    fn a_repeated_hour_keeps_every_reading_inside_the_window() {
        // Berlin repeats 02:00-03:00 on Sunday 2026-10-25 (CEST, then CET).
        let berlin = tz("Europe/Berlin");
        let s = schedule("02:00-02:30", "");
        let first = at("Europe/Berlin", "2026-10-25 02:00");
        assert_eq!(s.call_time(berlin, first - 1), CallTime::OpensAt(first));
        assert_eq!(s.call_time(berlin, first + 10 * 60), CallTime::Now);
        // 02:10 CET, the second reading, an hour later.
        assert_eq!(s.call_time(berlin, first + 70 * 60), CallTime::Now);
        // 02:30 CET ends it.
        assert_eq!(
            s.call_time(berlin, first + 90 * 60),
            CallTime::OpensAt(at("Europe/Berlin", "2026-10-26 02:00"))
        );
    }

    #[test]
    fn every_minute_across_daylight_saving_changes_answers_without_looping() {
        // Each answer is Now or an opening after now within the search, open when it comes.
        for (zone, from) in [
            ("America/New_York", "2027-03-13 00:00"),
            ("America/New_York", "2026-10-31 00:00"),
            ("Europe/Berlin", "2026-03-28 00:00"),
            ("Europe/Berlin", "2026-10-24 00:00"),
            ("Australia/Lord_Howe", "2026-10-03 00:00"),
            ("Pacific/Apia", "2011-12-29 00:00"),
        ] {
            let z = tz(zone);
            let start = at(zone, from);
            for s in [
                schedule("01:30-02:30,02:45-03:15", "1-5"),
                schedule("23:30-02:30", "6,7"),
                schedule("", "3"),
            ] {
                // Every 5 minutes (the jumps are on whole half hours) and the second before.
                for step in 0..(3 * 24 * 12) {
                    for now in [start + step * 300 - 1, start + step * 300] {
                        match s.call_time(z, now) {
                            CallTime::Now => {}
                            CallTime::OpensAt(at) => {
                                assert!(at > now && at <= now + 8 * 86_400, "{zone} {now} {at}");
                                assert_eq!(s.call_time(z, at), CallTime::Now, "{zone} {at}");
                            }
                            CallTime::Never => panic!("{zone} {now}: never"),
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn far_times_are_total() {
        let s = schedule("09:00-10:00", "1");
        for t in [i64::MIN, i64::MAX, -1, 253_402_300_799, 8_210_266_876_799] {
            let _ = s.call_time(Tz::UTC, t);
        }
    }
}
