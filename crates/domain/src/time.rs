//! Time as the domain sees it: milliseconds since the Unix epoch, passed in, never read.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time, in milliseconds since 1970-01-01T00:00:00Z.
///
/// Binary encodings (the log) store the integer; human-readable ones (JSON) use RFC 3339.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

pub const MILLIS_PER_MINUTE: i64 = 60_000;
pub const MILLIS_PER_DAY: i64 = 86_400_000;

impl Timestamp {
    pub const fn from_millis(millis: i64) -> Timestamp {
        Timestamp(millis)
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }

    pub fn plus_millis(self, millis: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(millis))
    }

    pub fn plus_days(self, days: u32) -> Timestamp {
        self.plus_millis(i64::from(days) * MILLIS_PER_DAY)
    }

    /// Formats as `2026-11-26T16:24:57.123Z`.
    pub fn to_rfc3339(self) -> String {
        let millis = self.0.rem_euclid(1000);
        let secs = self.0.div_euclid(1000);
        let days = secs.div_euclid(86_400);
        let secs_of_day = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
            secs_of_day / 3600,
            secs_of_day / 60 % 60,
            secs_of_day % 60
        )
    }

    /// Parses RFC 3339 with `Z` or a numeric offset, optional fractional seconds, or a bare date
    /// (`2026-11-26`, meaning midnight UTC).
    pub fn parse_rfc3339(text: &str) -> Result<Timestamp, TimeParseError> {
        let err = || TimeParseError(text.chars().take(64).collect());
        let bytes = text.as_bytes();
        let number = |range: std::ops::Range<usize>| -> Result<i64, TimeParseError> {
            let part = text.get(range).ok_or_else(err)?;
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err());
            }
            part.parse().map_err(|_| err())
        };
        if bytes.len() < 10 || bytes[4] != b'-' || bytes[7] != b'-' {
            return Err(err());
        }
        let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return Err(err());
        }
        let days = days_from_civil(year, month, day);
        if bytes.len() == 10 {
            return Ok(Timestamp(days * MILLIS_PER_DAY));
        }
        if bytes.len() < 20
            || !matches!(bytes[10], b'T' | b't' | b' ')
            || bytes[13] != b':'
            || bytes[16] != b':'
        {
            return Err(err());
        }
        let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
        if hour > 23 || minute > 59 || second > 60 {
            return Err(err());
        }
        let mut rest = &text[19..];
        let mut millis = 0;
        if let Some(fraction) = rest.strip_prefix('.') {
            let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(err());
            }
            let first_three = format!("{:0<3}", &fraction[..digits.min(3)]);
            millis = first_three.parse::<i64>().map_err(|_| err())?;
            rest = &fraction[digits..];
        }
        let offset_minutes = match rest {
            "Z" | "z" => 0,
            _ if rest.len() == 6
                && (rest.starts_with('+') || rest.starts_with('-'))
                && &rest[3..4] == ":" =>
            {
                let sign = if rest.starts_with('-') { -1 } else { 1 };
                let hours: i64 = rest[1..3].parse().map_err(|_| err())?;
                let minutes: i64 = rest[4..6].parse().map_err(|_| err())?;
                sign * (hours * 60 + minutes)
            }
            _ => return Err(err()),
        };
        let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
        Ok(Timestamp(secs * 1000 + millis))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a time: use RFC 3339, e.g. 2026-11-26T16:00:00Z, or a date like 2026-11-26")]
pub struct TimeParseError(String);

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_rfc3339())
        } else {
            serializer.serialize_i64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            Timestamp::parse_rfc3339(&text).map_err(serde::de::Error::custom)
        } else {
            i64::deserialize(deserializer).map(Timestamp)
        }
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's civil-calendar algorithms (public domain).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expect: Option<&str>) {
        let parsed = Timestamp::parse_rfc3339(text)
            .ok()
            .map(Timestamp::to_rfc3339);
        assert_eq!(parsed.as_deref(), expect, "{text}");
    }

    #[test]
    fn parses_and_formats() {
        check("1970-01-01T00:00:00Z", Some("1970-01-01T00:00:00.000Z"));
        check("2026-11-26T16:24:57.123Z", Some("2026-11-26T16:24:57.123Z"));
        check(
            "2026-11-26T16:24:57.1234567Z",
            Some("2026-11-26T16:24:57.123Z"),
        );
        check(
            "2026-11-26T18:24:57+02:00",
            Some("2026-11-26T16:24:57.000Z"),
        );
        check("2024-02-29", Some("2024-02-29T00:00:00.000Z"));
        check("2023-02-29", None);
        check("2026-13-01", None);
        check("yesterday", None);
        check("2026-11-26T25:00:00Z", None);
        check("2026-11-26T10:00:00", None);
        check("", None);
    }

    #[test]
    fn round_trips_across_eras() {
        for millis in [
            0,
            -1,
            1,
            951_782_400_000,
            4_102_444_800_000,
            -62_135_596_800_000,
        ] {
            let ts = Timestamp::from_millis(millis);
            assert_eq!(Timestamp::parse_rfc3339(&ts.to_rfc3339()), Ok(ts));
        }
    }
}
