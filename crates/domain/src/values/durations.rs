//! How long keys and a rolled key's previous secret live.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ValidationError;
use crate::time::{MILLIS_PER_DAY, Timestamp};

/// How long a key lives, fixed at creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyDuration {
    Days(u32),
    Never,
}

/// What the deployment allows for key durations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurationPolicy {
    pub max_days: u32,
    pub allow_never: bool,
}

impl Default for DurationPolicy {
    fn default() -> Self {
        DurationPolicy {
            max_days: 3650,
            allow_never: true,
        }
    }
}

impl KeyDuration {
    /// The presets users see in the console, in order.
    pub const PRESETS: [&'static str; 7] = ["1d", "7d", "30d", "60d", "90d", "1y", "never"];

    /// Accepts `1d`, `7d`, `30d`, `60d`, `90d`, `1y`, `<n>d` or a bare number of days, and `never`.
    pub fn parse(raw: &str, policy: &DurationPolicy) -> Result<KeyDuration, ValidationError> {
        let value = raw.trim().to_ascii_lowercase();
        let invalid = || {
            ValidationError::new(
                "duration",
                format!(
                    "not a duration: use 1d, 7d, 30d, 60d, 90d, 1y, a number of days like 45d{}",
                    if policy.allow_never { ", or never" } else { "" }
                ),
            )
        };
        if value == "never" {
            if !policy.allow_never {
                return Err(ValidationError::new(
                    "duration",
                    "keys that never expire are not allowed here",
                ));
            }
            return Ok(KeyDuration::Never);
        }
        let days: u64 = match value.as_str() {
            "1y" => 365,
            _ => {
                let digits = value.strip_suffix('d').unwrap_or(&value);
                if digits.is_empty()
                    || digits.len() > 9
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(invalid());
                }
                digits.parse().map_err(|_| invalid())?
            }
        };
        if days == 0 {
            return Err(ValidationError::new("duration", "must be at least 1 day"));
        }
        if days > u64::from(policy.max_days) {
            return Err(ValidationError::new(
                "duration",
                format!("must be at most {} days", policy.max_days),
            ));
        }
        Ok(KeyDuration::Days(days as u32))
    }

    pub fn expires_at(self, from: Timestamp) -> Option<Timestamp> {
        match self {
            KeyDuration::Days(days) => Some(from.plus_days(days)),
            KeyDuration::Never => None,
        }
    }
}

impl fmt::Display for KeyDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyDuration::Days(days) => write!(f, "{days}d"),
            KeyDuration::Never => f.write_str("never"),
        }
    }
}

/// How long a rolled key's previous secret keeps working: 0 to 7 days, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GracePeriod(i64);

impl GracePeriod {
    pub const MAX_MILLIS: i64 = 7 * MILLIS_PER_DAY;

    /// Accepts `0`, `30s`, `15m`, `1h`, `24h`, `7d`.
    pub fn parse(raw: &str) -> Result<GracePeriod, ValidationError> {
        let value = raw.trim();
        let invalid = || {
            ValidationError::new(
                "grace",
                "not a grace period: use 0, 30s, 15m, 1h, 24h or up to 7d",
            )
        };
        if value == "0" {
            return Ok(GracePeriod(0));
        }
        // The unit is the last character, which may be more than one byte (`1\u{99}`).
        let unit_at = value.char_indices().last().map_or(0, |(at, _)| at);
        let (digits, unit) = value.split_at(unit_at);
        if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let amount: i64 = digits.parse().map_err(|_| invalid())?;
        let millis = match unit {
            "s" => amount * 1000,
            "m" => amount * 60_000,
            "h" => amount * 3_600_000,
            "d" => amount * MILLIS_PER_DAY,
            _ => return Err(invalid()),
        };
        if millis > Self::MAX_MILLIS {
            return Err(ValidationError::new("grace", "must be at most 7 days"));
        }
        Ok(GracePeriod(millis))
    }

    pub fn from_millis(millis: i64) -> GracePeriod {
        GracePeriod(millis.clamp(0, Self::MAX_MILLIS))
    }

    pub fn as_millis(self) -> i64 {
        self.0
    }
}
