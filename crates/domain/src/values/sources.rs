//! Saved sources: their ids, names and schedules (decision 0031).
//!
//! A schedule is a five-field cron expression (minute, hour, day of month, month, day of week,
//! as crontab writes it) read in an explicit IANA time zone: `0 3 * * *` in `Europe/Zurich` is
//! 03:00 in Zurich, summer and winter. The computations are pure: the caller passes the times.

use std::sync::Arc;

use chrono::TimeZone as _;
use croner::Cron;
use croner::errors::CronError;
use croner::parser::{CronParser, Seconds, Year};
use serde::{Deserialize, Serialize};

use super::{SourceId, SourceName, ValidationError, generated_id, text};
use crate::time::Timestamp;

impl SourceId {
    pub const PREFIX: &'static str = "src_";
    pub fn parse(raw: &str) -> Result<SourceId, ValidationError> {
        generated_id("id", Self::PREFIX, raw).map(|value| SourceId(value.into()))
    }
}

impl SourceName {
    pub fn parse(raw: &str) -> Result<SourceName, ValidationError> {
        text("name", raw, 64).map(|value| SourceName(value.into()))
    }
}

/// A validated cron expression and the time zone it is read in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    cron: Arc<str>,
    timezone: Arc<str>,
}

impl Schedule {
    /// Parses a schedule as a user sends it: `schedule` (five cron fields; six, with seconds,
    /// are refused) and `timezone` (an IANA name such as `Europe/Zurich` or `UTC`, required).
    pub fn parse(cron: &str, timezone: Option<&str>) -> Result<Schedule, ValidationError> {
        let cron = cron.trim();
        let fields = cron.split_whitespace().count();
        if fields != 5 {
            return Err(ValidationError::new(
                "schedule",
                format!(
                    "a schedule has 5 cron fields (minute hour day-of-month month day-of-week, \
                     such as `0 3 * * *`); this one has {fields}"
                ),
            ));
        }
        // croner's messages quote the pattern: refusals never repeat what was sent.
        let parsed = parser().parse(cron).map_err(|error| {
            let why = match error {
                CronError::IllegalCharacters(_) => {
                    "a field holds a character cron does not allow (digits, `*`, `,`, `-`, `/`, \
                     and names such as MON or JAN)"
                }
                CronError::ComponentError(_) => {
                    "a value is outside its field's range (minute 0-59, hour 0-23, day of month \
                     1-31, month 1-12, day of week 0-7)"
                }
                _ => "write 5 fields such as `0 3 * * *`",
            };
            ValidationError::new("schedule", format!("not a cron expression: {why}"))
        })?;
        let Some(timezone) = timezone.map(str::trim).filter(|t| !t.is_empty()) else {
            return Err(ValidationError::new(
                "timezone",
                "a schedule needs an explicit IANA time zone, such as `Europe/Zurich` or `UTC`",
            ));
        };
        let zone: chrono_tz::Tz = timezone.parse().map_err(|_| {
            ValidationError::new(
                "timezone",
                "not an IANA time zone name: use one such as `Europe/Zurich`, \
                 `America/New_York` or `UTC`",
            )
        })?;
        // A pattern that never occurs (the 31st of February) would never run.
        let probe = zone.timestamp_millis_opt(0).single();
        if probe.is_none_or(|start| parsed.find_next_occurrence(&start, false).is_err()) {
            return Err(ValidationError::new(
                "schedule",
                "this cron expression never occurs: check the day of month and the month",
            ));
        }
        Ok(Schedule {
            cron: cron.into(),
            timezone: zone.name().into(),
        })
    }

    /// A schedule read back from the log, where it was validated when it was saved.
    pub fn from_trusted(cron: &str, timezone: &str) -> Schedule {
        Schedule {
            cron: cron.into(),
            timezone: timezone.into(),
        }
    }

    pub fn cron(&self) -> &str {
        &self.cron
    }

    pub fn timezone(&self) -> &str {
        &self.timezone
    }

    /// The first occurrence strictly after `after`; `None` if there is none (or the stored
    /// schedule no longer parses).
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let (cron, zone) = self.compiled()?;
        let start = zone.timestamp_millis_opt(after.as_millis()).single()?;
        let next = cron.find_next_occurrence(&start, false).ok()?;
        Some(Timestamp::from_millis(next.timestamp_millis()))
    }

    /// The latest occurrence in `(after, now]`: what a scheduler that last looked at `after`
    /// owes at `now`, however many occurrences it missed (they run once, as this one).
    pub fn latest_due(&self, after: Timestamp, now: Timestamp) -> Option<Timestamp> {
        let (cron, zone) = self.compiled()?;
        let at = zone.timestamp_millis_opt(now.as_millis()).single()?;
        let latest = cron.find_previous_occurrence(&at, true).ok()?;
        let latest = Timestamp::from_millis(latest.timestamp_millis());
        (latest > after).then_some(latest)
    }

    fn compiled(&self) -> Option<(Cron, chrono_tz::Tz)> {
        let cron = parser().parse(&self.cron).ok()?;
        let zone = self.timezone.parse().ok()?;
        Some((cron, zone))
    }
}

fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(cron: &str, timezone: Option<&str>, expect: Result<(), (&str, &str)>) {
        let got = Schedule::parse(cron, timezone).map(|_| ());
        match expect {
            Ok(()) => assert!(got.is_ok(), "{cron} {timezone:?}: {got:?}"),
            Err((field, fragment)) => {
                let error = got.expect_err(cron);
                assert_eq!(error.field, field, "{cron}");
                assert!(error.message.contains(fragment), "{cron}: {error}");
            }
        }
    }

    #[test]
    fn schedules_are_parsed_at_the_edge() {
        check("0 3 * * *", Some("Europe/Zurich"), Ok(()));
        check("*/15 * * * 1-5", Some("UTC"), Ok(()));
        check("0 3 * * *", None, Err(("timezone", "explicit IANA")));
        check("0 3 * * *", Some(" "), Err(("timezone", "explicit IANA")));
        check(
            "0 3 * * *",
            Some("Mars/Olympus"),
            Err(("timezone", "not an IANA")),
        );
        check("0 0 3 * * *", Some("UTC"), Err(("schedule", "has 6")));
        check("0 3 * *", Some("UTC"), Err(("schedule", "has 4")));
        check("61 3 * * *", Some("UTC"), Err(("schedule", "not a cron")));
        check("0 0 31 2 *", Some("UTC"), Err(("schedule", "never occurs")));
    }

    #[test]
    fn occurrences_follow_the_time_zone() {
        let schedule = Schedule::parse("0 3 * * *", Some("Europe/Zurich")).unwrap();
        // 2026-07-01T00:00Z: 03:00 in Zurich (summer, UTC+2) is 01:00Z.
        let midnight = Timestamp::parse_rfc3339("2026-07-01T00:00:00Z").unwrap();
        let next = schedule.next_after(midnight).unwrap();
        assert_eq!(next.to_rfc3339(), "2026-07-01T01:00:00.000Z");
        // Three days later, the latest missed occurrence is the third day's.
        let later = Timestamp::parse_rfc3339("2026-07-04T12:00:00Z").unwrap();
        let due = schedule.latest_due(midnight, later).unwrap();
        assert_eq!(due.to_rfc3339(), "2026-07-04T01:00:00.000Z");
        assert_eq!(schedule.latest_due(due, later), None);
    }
}
