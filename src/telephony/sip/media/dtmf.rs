//! Keys pressed by the callee, as RFC 4733 telephone-event packets (`telephone-event/8000`).
//!
//! One key press is a run of packets sharing one RTP timestamp (the event's start), whose duration
//! grows, ending with the end bit set; the end packet is usually sent three times. So a key is
//! counted once per timestamp, on whichever of its packets arrives first: losing the start packets
//! loses nothing, and the same key pressed twice (a new timestamp) counts twice.

/// The 4-byte payload of a telephone-event packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// 0–9 the digits, 10 `*`, 11 `#`, 12–15 `A`–`D`, 16 flash; others are not digits.
    pub event: u8,
    /// Set on the last packets of the event.
    pub end: bool,
    /// Power level in -dBm0, 0–63.
    pub volume: u8,
    /// In RTP timestamp units (1/8000 s) since the event's timestamp.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Reads the first event of a payload; `None` when it is shorter than 4 bytes. Bytes beyond
    /// the first 4 (never sent by the senders we meet) are ignored.
    pub fn parse(payload: &[u8]) -> Option<TelephoneEvent> {
        let bytes: [u8; 4] = payload.get(..4)?.try_into().ok()?;
        Some(TelephoneEvent {
            event: bytes[0],
            end: bytes[1] & 0x80 != 0,
            volume: bytes[1] & 0x3F,
            duration: u16::from_be_bytes([bytes[2], bytes[3]]),
        })
    }

    pub fn to_bytes(&self) -> [u8; 4] {
        let duration = self.duration.to_be_bytes();
        [
            self.event,
            if self.end { 0x80 } else { 0 } | (self.volume & 0x3F),
            duration[0],
            duration[1],
        ]
    }

    /// The digit (a key of the keypad), for events 0–15.
    pub fn digit(&self) -> Option<char> {
        digit_of_event(self.event)
    }
}

/// `0`–`9`, `*`, `#`, `A`–`D` for events 0–15.
pub fn digit_of_event(event: u8) -> Option<char> {
    match event {
        0..=9 => Some((b'0' + event) as char),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some((b'A' + event - 12) as char),
        _ => None,
    }
}

/// The event number of a digit (`a`–`d` accepted as well).
pub fn event_of_digit(digit: char) -> Option<u8> {
    match digit {
        '0'..='9' => Some(digit as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(digit as u8 - b'A' + 12),
        'a'..='d' => Some(digit as u8 - b'a' + 12),
        _ => None,
    }
}

/// How many recently seen events are remembered, so that a late or reordered packet of an
/// earlier key is not taken for a new press.
const REMEMBERED_EVENTS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EventIdentity {
    ssrc: u32,
    timestamp: u32,
    event: u8,
}

/// The latest event, for recognising the continuation of a very long press.
#[derive(Debug, Clone, Copy)]
struct LatestEvent {
    identity: EventIdentity,
    longest_duration: u16,
    ended: bool,
}

/// Turns a stream of telephone-event packets into digits, each press once. Memory is fixed.
#[derive(Debug, Default)]
pub struct DigitDetector {
    remembered: [Option<EventIdentity>; REMEMBERED_EVENTS],
    next_slot: usize,
    latest: Option<LatestEvent>,
}

impl DigitDetector {
    pub fn new() -> DigitDetector {
        DigitDetector::default()
    }

    /// Feeds one packet; returns the digit when this packet is the first seen of a new press.
    pub fn push(&mut self, ssrc: u32, timestamp: u32, event: &TelephoneEvent) -> Option<char> {
        let digit = event.digit()?;
        let identity = EventIdentity {
            ssrc,
            timestamp,
            event: event.event,
        };
        if let Some(latest) = self.latest.as_mut().filter(|l| l.identity == identity) {
            latest.longest_duration = latest.longest_duration.max(event.duration);
            latest.ended |= event.end;
            return None;
        }
        if self.remembered.contains(&Some(identity)) {
            return None;
        }
        // A press longer than the 16-bit duration allows (about 8 s) goes on in a new segment
        // whose timestamp is where the previous one's duration ran out (RFC 4733 §2.5.1.3).
        let continues_latest = self.latest.is_some_and(|latest| {
            !latest.ended
                && latest.identity.ssrc == ssrc
                && latest.identity.event == event.event
                && latest.longest_duration > 0
                && latest
                    .identity
                    .timestamp
                    .wrapping_add(latest.longest_duration as u32)
                    == timestamp
        });
        self.remembered[self.next_slot] = Some(identity);
        self.next_slot = (self.next_slot + 1) % REMEMBERED_EVENTS;
        self.latest = Some(LatestEvent {
            identity,
            longest_duration: event.duration,
            ended: event.end,
        });
        if continues_latest {
            None
        } else {
            Some(digit)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event: u8, end: bool, duration: u16) -> TelephoneEvent {
        TelephoneEvent {
            event,
            end,
            volume: 10,
            duration,
        }
    }

    /// The packets a typical sender emits for one press: start, growing durations, three ends.
    fn press(event_number: u8) -> Vec<TelephoneEvent> {
        let mut packets: Vec<_> = (1..=5)
            .map(|step| event(event_number, false, step * 160))
            .collect();
        packets.extend([event(event_number, true, 960); 3]);
        packets
    }

    fn detect(
        detector: &mut DigitDetector,
        ssrc: u32,
        timestamp: u32,
        packets: &[TelephoneEvent],
    ) -> String {
        packets
            .iter()
            .filter_map(|packet| detector.push(ssrc, timestamp, packet))
            .collect()
    }

    #[test]
    fn payload_layout() {
        let bytes = [11, 0x80 | 10, 0x03, 0x20];
        let parsed = TelephoneEvent::parse(&bytes).unwrap();
        assert_eq!(parsed, event(11, true, 800));
        assert_eq!(parsed.digit(), Some('#'));
        assert_eq!(parsed.to_bytes(), bytes);
        // The reserved bit is ignored.
        assert_eq!(
            TelephoneEvent::parse(&[1, 0x40 | 5, 0, 0]).unwrap().volume,
            5
        );
        assert_eq!(TelephoneEvent::parse(&[1, 2, 3]), None);
        assert!(TelephoneEvent::parse(&[1, 2, 3, 4, 5]).is_some());
    }

    #[test]
    fn key_names() {
        let keys: String = (0..=16).filter_map(digit_of_event).collect();
        assert_eq!(keys, "0123456789*#ABCD");
        for key in keys.chars() {
            assert_eq!(digit_of_event(event_of_digit(key).unwrap()), Some(key));
        }
        assert_eq!(event_of_digit('d'), Some(15));
        assert_eq!(event_of_digit('x'), None);
        assert_eq!(digit_of_event(16), None);
    }

    #[test]
    fn one_key_per_press() {
        let mut detector = DigitDetector::new();
        let mut keys = detect(&mut detector, 1, 1000, &press(1));
        keys += &detect(&mut detector, 1, 3000, &press(11));
        keys += &detect(&mut detector, 1, 5000, &press(1));
        assert_eq!(keys, "1#1");
    }

    #[test]
    fn same_key_twice_counts_twice() {
        let mut detector = DigitDetector::new();
        let mut keys = detect(&mut detector, 1, 1000, &press(1));
        keys += &detect(&mut detector, 1, 2600, &press(1));
        assert_eq!(keys, "11");
    }

    #[test]
    fn lost_start_packets_still_count() {
        let mut detector = DigitDetector::new();
        let ends_only = [event(5, true, 960); 3];
        assert_eq!(detect(&mut detector, 1, 1000, &ends_only), "5");
        assert_eq!(detect(&mut detector, 1, 2000, &[event(6, false, 480)]), "6");
    }

    #[test]
    fn late_packets_of_an_earlier_press_are_not_new_presses() {
        let mut detector = DigitDetector::new();
        assert_eq!(detect(&mut detector, 1, 1000, &press(2)[..3]), "2");
        assert_eq!(detect(&mut detector, 1, 3000, &press(3)[..3]), "3");
        // The delayed end packets of "2" arrive after "3" started.
        assert_eq!(
            detect(&mut detector, 1, 1000, &[event(2, true, 960); 3]),
            ""
        );
        assert_eq!(detect(&mut detector, 1, 3000, &press(3)[3..]), "");
    }

    #[test]
    fn non_keys_are_ignored() {
        let mut detector = DigitDetector::new();
        assert_eq!(detect(&mut detector, 1, 1000, &[event(16, false, 160)]), "");
        assert_eq!(detect(&mut detector, 1, 1000, &[event(200, true, 160)]), "");
        assert_eq!(detect(&mut detector, 1, 1000, &press(0)), "0");
    }

    #[test]
    fn a_new_source_starts_afresh() {
        let mut detector = DigitDetector::new();
        assert_eq!(detect(&mut detector, 1, 1000, &press(4)), "4");
        assert_eq!(detect(&mut detector, 2, 1000, &press(4)), "4");
    }

    #[test]
    fn a_press_longer_than_one_segment_counts_once() {
        let mut detector = DigitDetector::new();
        let first_segment = [event(7, false, 160), event(7, false, 0xFFFF)];
        let second_segment = [event(7, false, 160), event(7, true, 4000)];
        let mut keys = detect(&mut detector, 1, 0xFFFF_0000, &first_segment);
        keys += &detect(
            &mut detector,
            1,
            0xFFFF_0000u32.wrapping_add(0xFFFF),
            &second_segment,
        );
        assert_eq!(keys, "7");
    }
}
