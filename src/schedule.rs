//! Recurring schedules: their specs, and the slots they fall due at.
//!
//! A spec is `every DURATION` (the slots are the multiples of the duration since the Unix
//! epoch) or a 5-field cron expression in UTC (minute, hour, day of month, month, day of
//! week, as POSIX cron reads them: a day matches when either day field does), evaluated by
//! the `croner` crate. Both backends store the spec as written and call [`due`] inside the
//! transaction that pushes a due slot's instance, so the slot arithmetic lives here once.

use crate::duration::parse_duration;
use crate::error::{Error, Result};
use chrono::{DateTime, TimeZone, Utc};
use croner::Cron;
use std::str::FromStr;

/// A parsed schedule spec.
#[derive(Debug, Clone)]
pub(crate) enum Spec {
    /// `every DURATION`, in milliseconds (at least 1).
    Every(i64),
    /// A 5-field cron expression, in UTC.
    Cron(Box<Cron>),
}

/// The latest instant cron arithmetic is asked about: far beyond any real schedule, and
/// within chrono's range.
const HORIZON_MS: i64 = 253_402_300_799_000; // 9999-12-31T23:59:59Z

impl Spec {
    /// Parses `every DURATION` or a 5-field cron expression; anything else is
    /// [`Error::Invalid`] naming the spec.
    pub fn parse(spec: &str) -> Result<Spec> {
        let trimmed = spec.trim();
        if let Some(d) = trimmed.strip_prefix("every ") {
            let d = parse_duration(d.trim())
                .map_err(|e| Error::invalid(format!("schedule spec {spec:?}: {e}")))?;
            let ms = d.as_millis();
            if ms == 0 || ms > 100 * 365 * 86_400_000 {
                return Err(Error::invalid(format!(
                    "schedule spec {spec:?}: the interval must be between 1ms and 100 years"
                )));
            }
            return Ok(Spec::Every(ms as i64));
        }
        let fields = trimmed.split_whitespace().count();
        if fields != 5 || trimmed.starts_with('@') {
            return Err(Error::invalid(format!(
                "schedule spec {spec:?} is neither `every DURATION` nor a 5-field cron expression \
                 ('MIN HOUR DOM MON DOW', UTC)"
            )));
        }
        let cron = Cron::from_str(trimmed).map_err(|e| {
            Error::invalid(format!("schedule spec {spec:?} is not a valid cron expression: {e}"))
        })?;
        let spec = Spec::Cron(Box::new(cron));
        // A pattern that never matches (say, February 30th) would never fall due.
        spec.next_at_or_after(0)?;
        Ok(spec)
    }

    /// The first slot at or after `t` (epoch ms).
    pub fn next_at_or_after(&self, t: i64) -> Result<i64> {
        match self {
            Spec::Every(d) => Ok(t.div_euclid(*d) * d + if t.rem_euclid(*d) == 0 { 0 } else { *d }),
            Spec::Cron(c) => {
                // Cron slots are whole minutes: start from the minute at or after t.
                let start =
                    t.div_euclid(60_000) * 60_000 + if t.rem_euclid(60_000) == 0 { 0 } else { 60_000 };
                let found = c
                    .find_next_occurrence(&to_utc(start)?, true)
                    .map_err(|e| Error::invalid(format!("cron expression never falls due: {e}")))?;
                Ok(found.timestamp_millis())
            }
        }
    }

    /// The latest slot at or before `t`, if any since the epoch.
    fn latest_at_or_before(&self, t: i64) -> Option<i64> {
        match self {
            Spec::Every(d) => Some(t.div_euclid(*d) * d),
            Spec::Cron(c) => {
                let minute = t.div_euclid(60_000) * 60_000;
                c.find_previous_occurrence(&to_utc(minute).ok()?, true).ok().map(|d| d.timestamp_millis())
            }
        }
    }
}

/// Checks a schedule's name (1 to 64 characters of `[A-Za-z0-9_.-]`) and spec (`every
/// DURATION` or a 5-field cron expression in UTC) without storing anything: what
/// [`Db::schedule`](crate::Db::schedule) refuses, for a caller that checks its arguments first.
pub fn check_schedule(name: &str, spec: &str) -> Result<()> {
    crate::options::check_name("schedule", name)?;
    Spec::parse(spec).map(|_| ())
}

fn to_utc(ms: i64) -> Result<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms.clamp(0, HORIZON_MS))
        .single()
        .ok_or_else(|| Error::invalid(format!("instant {ms} is out of range")))
}

/// A schedule whose `next_run` has come (`next_run <= now`): the slot to push an instance for
/// (the latest one at or before `now`: after downtime, the missed slots before it are
/// skipped) and the schedule's next `next_run`, after `now`.
pub(crate) fn due(spec: &str, next_run: i64, now: i64) -> Result<(i64, i64)> {
    let spec = Spec::parse(spec)?;
    let slot = spec.latest_at_or_before(now).unwrap_or(next_run).max(next_run);
    let next = spec.next_at_or_after(now + 1)?;
    Ok((slot, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Epoch ms of a UTC date and time.
    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap().timestamp_millis()
    }

    #[test]
    fn every_slots_are_multiples_of_the_interval() {
        let s = Spec::parse("every 1s").unwrap();
        assert_eq!(s.next_at_or_after(5_000).unwrap(), 5_000);
        assert_eq!(s.next_at_or_after(5_001).unwrap(), 6_000);
        assert_eq!(due("every 1s", 5_000, 9_500).unwrap(), (9_000, 10_000));
        assert_eq!(due("every 15m", 0, 1_000_000).unwrap(), (900_000, 1_800_000));
    }

    #[test]
    fn cron_next_runs_against_known_dates() {
        // Month ends: the 31st is skipped by months without one.
        let s = Spec::parse("0 0 31 * *").unwrap();
        assert_eq!(s.next_at_or_after(at(2027, 4, 1, 0, 0)).unwrap(), at(2027, 5, 31, 0, 0));
        // Leap day: the next 29 February after 2025 is in 2028.
        let s = Spec::parse("30 12 29 2 *").unwrap();
        assert_eq!(s.next_at_or_after(at(2025, 3, 1, 0, 0)).unwrap(), at(2028, 2, 29, 12, 30));
        // UTC has no DST: 02:30 exists on the last Sunday of March.
        let s = Spec::parse("30 2 * * *").unwrap();
        assert_eq!(s.next_at_or_after(at(2027, 3, 28, 0, 0)).unwrap(), at(2027, 3, 28, 2, 30));
        // Steps, ranges and weekdays (0 is Sunday; 2027-01-04 is a Monday).
        let s = Spec::parse("*/15 9-17 * * 1-5").unwrap();
        assert_eq!(s.next_at_or_after(at(2027, 1, 2, 10, 0)).unwrap(), at(2027, 1, 4, 9, 0));
        assert_eq!(s.next_at_or_after(at(2027, 1, 4, 9, 1)).unwrap(), at(2027, 1, 4, 9, 15));
        // Year end.
        let s = Spec::parse("0 0 1 1 *").unwrap();
        assert_eq!(s.next_at_or_after(at(2026, 12, 31, 23, 59) + 1).unwrap(), at(2027, 1, 1, 0, 0));
    }

    #[test]
    fn cron_catch_up_takes_the_latest_missed_slot_only() {
        let next_run = at(2027, 1, 1, 0, 0);
        let now = at(2027, 1, 1, 5, 30) + 17;
        assert_eq!(due("0 * * * *", next_run, now).unwrap(), (at(2027, 1, 1, 5, 0), at(2027, 1, 1, 6, 0)));
    }

    #[test]
    fn bad_specs_are_refused() {
        for bad in [
            "",
            "every",
            "every 0s",
            "every 5",
            "every -1s",
            "* * * *",
            "* * * * * *",
            "61 * * * *",
            "* 24 * * *",
            "0 0 30 2 *",
            "@hourly",
            "hello",
            "every 1s and more",
        ] {
            assert!(matches!(Spec::parse(bad), Err(Error::Invalid(_))), "{bad:?} was accepted");
        }
    }
}
