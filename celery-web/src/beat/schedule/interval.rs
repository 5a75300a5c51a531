//! Interval schedules: every N units of time (django-celery-beat's `IntervalSchedule`).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};

use super::ScheduleError;

/// The unit of an [`Interval`], as stored in django-celery-beat's `period` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    /// `days`
    Days,
    /// `hours`
    Hours,
    /// `minutes`
    Minutes,
    /// `seconds`
    Seconds,
    /// `microseconds`
    Microseconds,
}

impl Period {
    /// Every period, longest first.
    pub const ALL: [Period; 5] = [
        Period::Days,
        Period::Hours,
        Period::Minutes,
        Period::Seconds,
        Period::Microseconds,
    ];

    /// The column value: `days`, `hours`, `minutes`, `seconds` or `microseconds`.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Days => "days",
            Period::Hours => "hours",
            Period::Minutes => "minutes",
            Period::Seconds => "seconds",
            Period::Microseconds => "microseconds",
        }
    }

    /// The singular word: `day`, `hour`, ...
    fn singular(self) -> &'static str {
        let plural = self.as_str();
        &plural[..plural.len() - 1]
    }

    /// `count` of this period, or `None` when that overflows.
    fn times(self, count: i64) -> Option<TimeDelta> {
        match self {
            Period::Days => TimeDelta::try_days(count),
            Period::Hours => TimeDelta::try_hours(count),
            Period::Minutes => TimeDelta::try_minutes(count),
            Period::Seconds => TimeDelta::try_seconds(count),
            Period::Microseconds => Some(TimeDelta::microseconds(count)),
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Period {
    type Err = ScheduleError;

    /// Parses `days`, `hours`, `minutes`, `seconds` or `microseconds` (also singular, any case).
    fn from_str(text: &str) -> Result<Period, ScheduleError> {
        let lower = text.trim().to_ascii_lowercase();
        Period::ALL
            .into_iter()
            .find(|period| lower == period.as_str() || lower == period.singular())
            .ok_or_else(|| {
                ScheduleError::new(
                    "period",
                    format!(
                        "{text:?} is not a period; use days, hours, minutes, seconds or microseconds"
                    ),
                )
            })
    }
}

/// Every `every` [`Period`]s: the task runs that long after its last run.
///
/// ```
/// use celery_web::beat::schedule::{Interval, Period};
///
/// let interval = Interval::new(10, Period::Minutes)?;
/// assert_eq!(interval.duration(), chrono::TimeDelta::minutes(10));
/// assert!(Interval::new(0, Period::Seconds).is_err());
/// # Ok::<(), celery_web::beat::schedule::ScheduleError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Interval {
    every: i64,
    period: Period,
    duration: TimeDelta,
}

impl Interval {
    /// Every `every` periods; `every` must be at least 1 (django-celery-beat's validator).
    pub fn new(every: i64, period: Period) -> Result<Interval, ScheduleError> {
        if every < 1 {
            return Err(ScheduleError::new(
                "every",
                format!("{every} is not allowed; the interval must be at least 1 {period}"),
            ));
        }
        let duration = period.times(every).ok_or_else(|| {
            ScheduleError::new(
                "every",
                format!("{every} {period} is too long; use a shorter interval"),
            )
        })?;
        Ok(Interval {
            every,
            period,
            duration,
        })
    }

    /// How many periods.
    pub fn every(&self) -> i64 {
        self.every
    }

    /// The unit.
    pub fn period(&self) -> Period {
        self.period
    }

    /// `every` periods as a duration.
    pub fn duration(&self) -> TimeDelta {
        self.duration
    }

    /// `after + every`; `None` only past the end of representable time.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        after.checked_add_signed(self.duration)
    }

    /// `every 10 seconds`, `every hour`.
    pub fn describe(&self) -> String {
        if self.every == 1 {
            format!("every {}", self.period.singular())
        } else {
            format!("every {} {}", self.every, self.period)
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn next_after_adds_the_interval() {
        let start = Utc.with_ymd_and_hms(2026, 1, 31, 23, 59, 50).unwrap();
        let cases = [
            (
                1,
                Period::Days,
                Utc.with_ymd_and_hms(2026, 2, 1, 23, 59, 50),
            ),
            (
                2,
                Period::Hours,
                Utc.with_ymd_and_hms(2026, 2, 1, 1, 59, 50),
            ),
            (
                5,
                Period::Minutes,
                Utc.with_ymd_and_hms(2026, 2, 1, 0, 4, 50),
            ),
            (
                10,
                Period::Seconds,
                Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0),
            ),
        ];
        for (every, period, expected) in cases {
            let interval = Interval::new(every, period).unwrap();
            assert_eq!(
                interval.next_after(start),
                Some(expected.unwrap()),
                "{every} {period}"
            );
        }
        let micro = Interval::new(250_000, Period::Microseconds).unwrap();
        assert_eq!(
            micro.next_after(start),
            Some(start + TimeDelta::milliseconds(250))
        );
        assert_eq!(micro.duration(), TimeDelta::milliseconds(250));
    }

    #[test]
    fn next_after_at_the_end_of_time_is_none() {
        let interval = Interval::new(1, Period::Days).unwrap();
        assert_eq!(interval.next_after(DateTime::<Utc>::MAX_UTC), None);
    }

    #[test]
    fn every_must_be_positive_and_representable() {
        assert_eq!(
            Interval::new(0, Period::Seconds).unwrap_err().to_string(),
            "every: 0 is not allowed; the interval must be at least 1 seconds"
        );
        assert_eq!(
            Interval::new(-3, Period::Days).unwrap_err().to_string(),
            "every: -3 is not allowed; the interval must be at least 1 days"
        );
        assert_eq!(
            Interval::new(i64::MAX, Period::Days)
                .unwrap_err()
                .to_string(),
            format!(
                "every: {} days is too long; use a shorter interval",
                i64::MAX
            )
        );
    }

    #[test]
    fn periods_round_trip_through_their_names() {
        for period in Period::ALL {
            assert_eq!(period.as_str().parse::<Period>(), Ok(period));
        }
        assert_eq!("Hour".parse::<Period>(), Ok(Period::Hours));
        assert_eq!(
            "weeks".parse::<Period>().unwrap_err().to_string(),
            "period: \"weeks\" is not a period; use days, hours, minutes, seconds or microseconds"
        );
    }

    #[test]
    fn describe_uses_singular_for_one() {
        let describe = |every, period| Interval::new(every, period).unwrap().describe();
        assert_eq!(describe(10, Period::Seconds), "every 10 seconds");
        assert_eq!(describe(1, Period::Hours), "every hour");
        assert_eq!(describe(3, Period::Days), "every 3 days");
        assert_eq!(describe(1, Period::Microseconds), "every microsecond");
    }
}
