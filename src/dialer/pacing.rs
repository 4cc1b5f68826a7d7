//! When may the next call start? A pure decision from the starts so far, the clock, and the
//! number of live calls, so that it can be tested without sleeping.
//!
//! Starts follow an even grid of `1 / max_caps` seconds. A start that is late by less than two
//! intervals (timer latency, other tasks ahead of it at the box-wide limit) keeps the grid, so the
//! pace does not drift below what was asked; the next start then comes at least half an interval
//! later, so catching up never bunches starts together. After a longer pause (no slot free, nothing
//! to dial) the grid starts afresh instead of catching up. On top of the grid, a hard rule: never
//! more than `ceil(max_caps)` starts in any one-second window.

use std::{collections::VecDeque, time::Duration, time::Instant};

use crate::domain::MaxCaps;

/// The window of the hard rule, with a millisecond to spare so that starts measured a little
/// later by someone else (the back end's own clock) still keep to it.
pub const WINDOW: Duration = Duration::from_millis(1001);

#[derive(Debug, Clone)]
pub struct Pacer {
    caps: MaxCaps,
    interval: Duration,
    per_window: usize,
    /// The last `per_window` starts, oldest first.
    recent: VecDeque<Instant>,
    /// The grid's next slot.
    next_slot: Option<Instant>,
    /// Half an interval after the last start.
    min_next: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A call may start now.
    StartNow,
    /// The pace allows the next start at this instant.
    WaitUntil(Instant),
    /// Every slot is taken: wait for a call to end.
    WaitForHangup,
}

impl Pacer {
    /// `caps` calls a second.
    pub fn new(caps: MaxCaps) -> Self {
        let (interval, per_window) = pace(caps);
        Pacer {
            caps,
            interval,
            per_window,
            recent: VecDeque::new(),
            next_slot: None,
            min_next: None,
        }
    }

    pub fn caps(&self) -> MaxCaps {
        self.caps
    }

    /// Changes the pace from now on; the starts already made still count. `MaxCaps`'s range
    /// bounds the interval (at most 1,000 s) and the window (at most 10,000 starts).
    pub fn set_caps(&mut self, caps: MaxCaps) {
        if caps == self.caps {
            return;
        }
        self.caps = caps;
        (self.interval, self.per_window) = pace(caps);
        while self.recent.len() > self.per_window {
            self.recent.pop_front();
        }
        // Re-anchor the grid one new interval after the last start, not one old interval.
        self.next_slot = self.recent.back().map(|last| later(*last, self.interval));
        self.min_next = self
            .recent
            .back()
            .map(|last| later(*last, self.interval / 2));
    }

    /// The earliest instant, not before `now`, at which the pace allows a start.
    pub fn earliest_start(&self, now: Instant) -> Instant {
        let mut earliest = now;
        for bound in [self.next_slot, self.min_next].into_iter().flatten() {
            earliest = earliest.max(bound);
        }
        if self.recent.len() >= self.per_window {
            let oldest = self.recent[self.recent.len() - self.per_window];
            earliest = earliest.max(later(oldest, WINDOW));
        }
        earliest
    }

    /// Records a start made at `at`.
    pub fn record_start(&mut self, at: Instant) {
        let on_grid = match self.next_slot {
            Some(slot) if at.saturating_duration_since(slot) < self.interval.saturating_mul(2) => {
                slot
            }
            _ => at,
        };
        self.next_slot = Some(later(on_grid, self.interval));
        self.min_next = Some(later(at, self.interval / 2));
        self.recent.push_back(at);
        if self.recent.len() > self.per_window {
            self.recent.pop_front();
        }
    }
}

/// The grid's interval and the window's most starts of a pace.
fn pace(caps: MaxCaps) -> (Duration, usize) {
    let interval = Duration::try_from_secs_f64(1.0 / caps.get()).unwrap_or(Duration::MAX);
    (interval, (caps.get().ceil() as usize).max(1))
}

/// `at + by`, or as far ahead as the clock can say: arithmetic on instants never panics.
fn later(at: Instant, by: Duration) -> Instant {
    at.checked_add(by).unwrap_or_else(|| {
        // Halve until it fits: only an absurd pace (ruled out by MaxCaps) gets here.
        let mut by = by;
        loop {
            by /= 2;
            if let Some(instant) = at.checked_add(by) {
                return instant;
            }
        }
    })
}

/// The pacing decision for one task (or for the whole box, with its global pacer).
pub fn decide(now: Instant, pacer: &Pacer, live_calls: usize, max_concurrency: usize) -> Decision {
    if live_calls >= max_concurrency {
        return Decision::WaitForHangup;
    }
    let earliest = pacer.earliest_start(now);
    if earliest <= now {
        Decision::StartNow
    } else {
        Decision::WaitUntil(earliest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(value: f64) -> MaxCaps {
        MaxCaps::new(value).unwrap()
    }

    /// Runs the pacer for `duration` of simulated time with calls that never end and a timer that
    /// fires `latency` late, and answers the start instants.
    fn simulate(caps: f64, duration: Duration, latency: Duration) -> Vec<Instant> {
        let origin = Instant::now();
        let mut pacer = Pacer::new(self::caps(caps));
        let mut now = origin;
        let mut starts = Vec::new();
        while now < origin + duration {
            match decide(now, &pacer, 0, usize::MAX) {
                Decision::StartNow => {
                    pacer.record_start(now);
                    starts.push(now);
                }
                Decision::WaitUntil(at) => now = at + latency,
                Decision::WaitForHangup => unreachable!(),
            }
        }
        starts
    }

    fn max_in_any_window(starts: &[Instant]) -> usize {
        (0..starts.len())
            .map(|i| {
                starts[i..]
                    .iter()
                    .take_while(|t| t.duration_since(starts[i]) <= Duration::from_secs(1))
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn keeps_the_asked_pace_despite_timer_latency() {
        for latency in [
            Duration::ZERO,
            Duration::from_micros(300),
            Duration::from_millis(2),
        ] {
            let starts = simulate(20.0, Duration::from_secs(60), latency);
            let achieved = starts.len() as f64 / 60.0;
            assert!(
                (achieved - 20.0).abs() / 20.0 <= 0.01,
                "latency {latency:?}: {achieved} CAPS"
            );
            assert!(max_in_any_window(&starts) <= 20, "latency {latency:?}");
        }
    }

    #[test]
    fn fractional_caps_space_starts_evenly() {
        let starts = simulate(0.2, Duration::from_secs(60), Duration::from_millis(1));
        assert_eq!(starts.len(), 12);
        for pair in starts.windows(2) {
            let gap = pair[1].duration_since(pair[0]);
            assert!(
                gap >= Duration::from_millis(4500) && gap <= Duration::from_millis(5100),
                "{gap:?}"
            );
        }
        let starts = simulate(2.5, Duration::from_secs(10), Duration::ZERO);
        assert_eq!(starts.len(), 25);
        assert!(max_in_any_window(&starts) <= 3);
    }

    #[test]
    fn no_burst_after_a_pause() {
        let origin = Instant::now();
        let mut pacer = Pacer::new(caps(10.0));
        pacer.record_start(origin);
        // Nothing could start for 5 s (no free slot); then several are possible at once.
        let later = origin + Duration::from_secs(5);
        assert_eq!(decide(later, &pacer, 0, 10), Decision::StartNow);
        pacer.record_start(later);
        match decide(later, &pacer, 0, 10) {
            Decision::WaitUntil(at) => {
                assert!(at.duration_since(later) >= Duration::from_millis(100))
            }
            other => panic!("a second start right away would be a burst: {other:?}"),
        }
    }

    #[test]
    fn the_window_rule_holds_when_the_grid_would_allow_more() {
        // Late starts let the grid catch up by half an interval each; the window rule still caps them.
        let origin = Instant::now();
        let mut pacer = Pacer::new(caps(4.0));
        let mut starts = Vec::new();
        let mut now = origin;
        for _ in 0..40 {
            let at = pacer.earliest_start(now);
            pacer.record_start(at);
            starts.push(at);
            now = at + Duration::from_millis(120); // each timer fires 120 ms late
        }
        assert!(max_in_any_window(&starts) <= 4);
    }

    #[test]
    fn concurrency_caps_live_calls() {
        let pacer = Pacer::new(caps(100.0));
        let now = Instant::now();
        assert_eq!(decide(now, &pacer, 4, 5), Decision::StartNow);
        assert_eq!(decide(now, &pacer, 5, 5), Decision::WaitForHangup);
        assert_eq!(decide(now, &pacer, 6, 5), Decision::WaitForHangup);
    }

    #[test]
    fn a_new_pace_applies_from_the_last_start() {
        let origin = Instant::now();
        let mut pacer = Pacer::new(caps(1.0));
        pacer.record_start(origin);
        assert_eq!(pacer.earliest_start(origin), origin + WINDOW);
        pacer.set_caps(caps(10.0));
        assert_eq!(
            pacer.earliest_start(origin),
            origin + Duration::from_millis(100)
        );
    }

    #[test]
    fn the_slowest_pace_and_a_stored_absurd_one_never_panic() {
        let origin = Instant::now();
        for stored in [1e-20, 0.0, -5.0, f64::NAN, 1e300] {
            let mut pacer = Pacer::new(MaxCaps::clamped(stored));
            assert_eq!(decide(origin, &pacer, 0, 1), Decision::StartNow);
            pacer.record_start(origin);
            match decide(origin, &pacer, 0, 1) {
                Decision::WaitUntil(at) => assert!(at > origin),
                other => panic!("{stored}: {other:?}"),
            }
        }
        let mut pacer = Pacer::new(caps(MaxCaps::MIN));
        pacer.record_start(origin);
        assert_eq!(
            pacer.earliest_start(origin),
            origin + Duration::from_secs(1000)
        );
        assert_eq!(
            later(origin, Duration::MAX).cmp(&origin),
            std::cmp::Ordering::Greater
        );
    }
}
