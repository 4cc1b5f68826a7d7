//! Range-checked values. Each type's constructor is the only way in, so a value that reaches the
//! database, the pacer or a SIP header has been checked once, where it entered.

use std::fmt;

/// Why a value was refused; the API puts the field's name in front.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValueError(pub String);

fn refuse<T>(message: impl Into<String>) -> Result<T, ValueError> {
    Err(ValueError(message.into()))
}

/// Text without control characters (CR, LF, NUL, TAB, …), at most `max_chars` characters. Such a
/// value can be put in a SIP header, a log line or a CSV cell without escaping surprises.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct Text(String);

impl Text {
    pub fn new(text: impl Into<String>, max_chars: usize) -> Result<Self, ValueError> {
        let text = text.into();
        if let Some(c) = text.chars().find(|c| c.is_control()) {
            return refuse(format!(
                "must not contain control characters (CR, LF, NUL, …); found U+{:04X}",
                c as u32
            ));
        }
        let chars = text.chars().count();
        if chars > max_chars {
            return refuse(format!(
                "is {chars} characters long; at most {max_chars} are allowed"
            ));
        }
        Ok(Text(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A task's `group_name`: non-blank text of at most 128 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskName(Text);

impl TaskName {
    pub const MAX_CHARS: usize = 128;

    pub fn new(text: impl Into<String>) -> Result<Self, ValueError> {
        let text = Text::new(text, Self::MAX_CHARS)?;
        if text.as_str().trim().is_empty() {
            return refuse("must not be empty");
        }
        Ok(TaskName(text))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// An integer within `MIN..=MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BoundedInt<const MIN: i64, const MAX: i64>(i64);

impl<const MIN: i64, const MAX: i64> BoundedInt<MIN, MAX> {
    pub const MIN: i64 = MIN;
    pub const MAX: i64 = MAX;

    pub fn new(value: i64) -> Result<Self, ValueError> {
        if (MIN..=MAX).contains(&value) {
            Ok(BoundedInt(value))
        } else {
            refuse(format!("must be from {MIN} to {MAX}, not {value}"))
        }
    }

    /// A stored value brought into range (rows written before the range was enforced).
    pub fn clamped(value: i64) -> Self {
        BoundedInt(value.clamp(MIN, MAX))
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// `calling_time`: seconds to wait for an answer.
pub type CallingTime = BoundedInt<5, 300>;
/// `max_concurrency`: live calls of one task.
pub type MaxConcurrency = BoundedInt<1, 100_000>;
/// `group_confirm_read_timeout`: seconds to wait for the confirm key.
pub type ConfirmTimeout = BoundedInt<1, 600>;

/// `max_caps`: calls started per second, fractions allowed, from 0.001 (one call every 1,000 s)
/// to 10,000.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct MaxCaps(f64);

impl MaxCaps {
    pub const MIN: f64 = 0.001;
    pub const MAX: f64 = 10_000.0;

    pub fn new(value: f64) -> Result<Self, ValueError> {
        if value.is_finite() && (Self::MIN..=Self::MAX).contains(&value) {
            Ok(MaxCaps(value))
        } else {
            refuse(format!(
                "must be from {} to {}, not {value}",
                Self::MIN,
                Self::MAX
            ))
        }
    }

    /// A stored value brought into range (rows written before the range was enforced).
    pub fn clamped(value: f64) -> Self {
        if value.is_nan() {
            return MaxCaps(Self::MIN);
        }
        MaxCaps(value.clamp(Self::MIN, Self::MAX))
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

/// `group_confirm_key`: up to 8 DTMF keys (0-9, *, #); empty means no confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct ConfirmKey(String);

impl ConfirmKey {
    pub const MAX_KEYS: usize = 8;

    pub fn new(keys: impl Into<String>) -> Result<Self, ValueError> {
        let keys = keys.into();
        if keys.len() > Self::MAX_KEYS || !keys.chars().all(is_dtmf_key) {
            return refuse(format!(
                "must be at most {} DTMF keys (0-9, *, #), not {keys:?}",
                Self::MAX_KEYS
            ));
        }
        Ok(ConfirmKey(keys))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn is_dtmf_key(c: char) -> bool {
    c.is_ascii_digit() || c == '*' || c == '#'
}

/// A number to dial: digits with an optional leading `+`, and `*` / `#`, 1 to 32 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DestNumber(String);

impl DestNumber {
    pub const MAX_CHARS: usize = 32;

    pub fn new(number: impl Into<String>) -> Result<Self, ValueError> {
        let number = number.into();
        let digits = number.strip_prefix('+').unwrap_or(&number);
        if digits.is_empty() || number.len() > Self::MAX_CHARS || !digits.chars().all(is_dtmf_key) {
            return refuse(format!(
                "{number:?} is not dialable: digits with an optional leading +, * or #, 1 to {} characters",
                Self::MAX_CHARS
            ));
        }
        Ok(DestNumber(number))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_refuses_control_characters() {
        assert!(Text::new("张三", 2).is_ok());
        assert!(Text::new("张三丰", 2).is_err());
        for bad in [
            "a\r\nP-Asserted-Identity: x",
            "a\nb",
            "a\0b",
            "a\tb",
            "\u{7f}",
        ] {
            let error = Text::new(bad, 100).unwrap_err();
            assert!(error.0.contains("control characters"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn ranges() {
        assert!(MaxCaps::new(0.001).is_ok());
        assert!(MaxCaps::new(0.0009).is_err());
        assert!(MaxCaps::new(1e-20).is_err());
        assert!(MaxCaps::new(f64::NAN).is_err());
        assert!(MaxCaps::new(f64::INFINITY).is_err());
        assert!(MaxCaps::new(10_000.0).is_ok());
        assert!(MaxCaps::new(10_000.5).is_err());
        assert_eq!(MaxCaps::clamped(1e-20).get(), MaxCaps::MIN);
        assert_eq!(MaxCaps::clamped(f64::NAN).get(), MaxCaps::MIN);
        assert!(CallingTime::new(4).is_err());
        assert_eq!(CallingTime::new(30).unwrap().get(), 30);
        assert_eq!(CallingTime::clamped(1000).get(), 300);
        assert!(MaxConcurrency::new(0).is_err());
        assert!(ConfirmTimeout::new(601).is_err());
    }

    #[test]
    fn keys_names_and_numbers() {
        assert!(ConfirmKey::new("").unwrap().is_empty());
        assert!(ConfirmKey::new("1#").is_ok());
        assert!(ConfirmKey::new("a").is_err());
        assert!(ConfirmKey::new("123456789").is_err());
        assert!(TaskName::new("  ").is_err());
        assert!(TaskName::new("t\r\n").is_err());
        assert!(DestNumber::new("+8613800000000").is_ok());
        assert!(DestNumber::new("*#1").is_ok());
        assert!(DestNumber::new("+").is_err());
        assert!(DestNumber::new("12a").is_err());
        assert!(DestNumber::new("1".repeat(33)).is_err());
    }
}
