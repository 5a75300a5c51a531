//! When a periodic task fires: the four kinds of schedule django-celery-beat knows.
//!
//! A [`Schedule`] is pure data plus arithmetic: [`Schedule::next_after`] gives the next firing
//! strictly after an instant, [`Schedule::describe`] says it in words, and
//! [`Schedule::from_setting`] reads the `schedule` value of a `[celery.beat_schedule.<name>]`
//! table. Nothing here touches the database or the clock.
//!
//! - [`Interval`]: every N days, hours, minutes, seconds or microseconds.
//! - [`Crontab`]: Celery's crontab (all five fields must match, `0` = Sunday) in an IANA time
//!   zone, correct across daylight saving time changes.
//! - [`Clocked`]: once, at a given instant.
//! - [`Solar`]: at sunrise, sunset, dawn, dusk or solar noon at a latitude and longitude.
//!
//! ```
//! use celery_web::beat::schedule::Schedule;
//! use chrono::{TimeZone, Utc};
//!
//! let schedule: toml::Value = toml::from_str::<toml::Table>(r#"schedule = "30 7 * * mon""#)?
//!     .remove("schedule")
//!     .unwrap();
//! let schedule = Schedule::from_setting(&schedule, chrono_tz::Europe::Oslo)?;
//! assert_eq!(schedule.describe(), "At 07:30 on Monday (Europe/Oslo)");
//! let after = Utc.with_ymd_and_hms(2026, 11, 18, 12, 0, 0).unwrap(); // a Wednesday
//! assert_eq!(
//!     schedule.next_after(after),
//!     Some(Utc.with_ymd_and_hms(2026, 11, 23, 6, 30, 0).unwrap()), // 07:30 in Oslo (UTC+1)
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod clocked;
mod crontab;
mod crontab_description;
mod crontab_field;
mod interval;
mod setting;
mod solar;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};

pub use clocked::Clocked;
pub use crontab::Crontab;
pub use interval::{Interval, Period};
pub use solar::{Solar, SolarEvent};

/// When a periodic task fires.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// Every N units of time after the last run.
    Interval(Interval),
    /// At the minutes matching a crontab, in a time zone.
    Crontab(Crontab),
    /// Once, at an instant.
    Clocked(Clocked),
    /// At a solar event (sunrise, sunset, ...) at a place.
    Solar(Solar),
}

impl Schedule {
    /// The earliest firing strictly after `after`; `None` when it never fires again.
    ///
    /// For [`Interval`] this is `after + every`: the caller passes the last run (or the start
    /// time). For [`Clocked`] it is the clocked time if that is later than `after`. For
    /// [`Crontab`] and [`Solar`] it is the next matching instant.
    ///
    /// ```
    /// use celery_web::beat::schedule::{Crontab, Interval, Period, Schedule};
    /// use chrono::{TimeZone, Utc};
    ///
    /// let after = Utc.with_ymd_and_hms(2026, 3, 29, 0, 10, 0).unwrap();
    ///
    /// let every_ten_seconds = Schedule::Interval(Interval::new(10, Period::Seconds)?);
    /// assert_eq!(
    ///     every_ten_seconds.next_after(after),
    ///     Some(Utc.with_ymd_and_hms(2026, 3, 29, 0, 10, 10).unwrap()),
    /// );
    ///
    /// // 02:30 does not exist in Oslo on 2026-03-29 (clocks jump from 02:00 to 03:00): skipped.
    /// let half_past_two = Crontab::new("30", "2", "*", "*", "*", chrono_tz::Europe::Oslo)?;
    /// assert_eq!(
    ///     Schedule::Crontab(half_past_two).next_after(after),
    ///     Some(Utc.with_ymd_and_hms(2026, 3, 30, 0, 30, 0).unwrap()),
    /// );
    /// # Ok::<(), celery_web::beat::schedule::ScheduleError>(())
    /// ```
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Interval(interval) => interval.next_after(after),
            Schedule::Crontab(crontab) => crontab.next_after(after),
            Schedule::Clocked(clocked) => clocked.next_after(after),
            Schedule::Solar(solar) => solar.next_after(after),
        }
    }

    /// The schedule in words, for `celery beat --list` and the admin pages: `every 10 seconds`,
    /// `At 07:30 on Monday (Europe/Oslo)`, `at sunrise at 59.91, 10.75`,
    /// `once at 2026-12-01 08:00 UTC`.
    pub fn describe(&self) -> String {
        match self {
            Schedule::Interval(interval) => interval.describe(),
            Schedule::Crontab(crontab) => crontab.describe(),
            Schedule::Clocked(clocked) => clocked.describe(),
            Schedule::Solar(solar) => solar.describe(),
        }
    }

    /// Parses the `schedule` value of a `[celery.beat_schedule.<name>]` table.
    ///
    /// `default_timezone` is the zone of crontabs that do not name one (the `timezone` setting).
    /// Accepted forms:
    ///
    /// | form | example |
    /// |---|---|
    /// | seconds | `10`, `2.5`, `"10"` |
    /// | a duration | `"10s"`, `"5m"`, `"2h"`, `"1d"`, `"90 seconds"`, `"every 10 minutes"` |
    /// | a cron line (m h dom mon dow, 0 = Sunday) | `"30 7 * * mon"` |
    /// | Celery's call | `"crontab(minute='30', hour='7', day_of_week='mon')"` |
    /// | an interval table | `{ every = 1, period = "hours" }` |
    /// | a crontab table | `{ crontab = "30 7 * * mon", timezone = "Europe/Oslo" }` |
    /// | | `{ crontab = { minute = "30", hour = "7" }, timezone = "Europe/Oslo" }` |
    /// | a clocked table | `{ clocked = "2026-12-01T08:00:00Z" }` (RFC 3339 or a TOML datetime) |
    /// | a solar table | `{ solar = "sunrise", latitude = 59.9, longitude = 10.7 }` |
    ///
    /// ```
    /// use celery_web::beat::schedule::{Interval, Period, Schedule};
    ///
    /// let table: toml::Table = toml::from_str(r#"
    ///     a = 10
    ///     b = "every 10 minutes"
    ///     c = { crontab = "0 4 * * *", timezone = "America/New_York" }
    ///     d = { solar = "sunrise", latitude = 59.9, longitude = 10.7 }
    ///     e = { every = 1, period = "fortnights" }
    /// "#)?;
    /// let utc = chrono_tz::UTC;
    /// assert_eq!(
    ///     Schedule::from_setting(&table["a"], utc)?,
    ///     Schedule::Interval(Interval::new(10, Period::Seconds)?),
    /// );
    /// assert_eq!(Schedule::from_setting(&table["b"], utc)?.describe(), "every 10 minutes");
    /// assert_eq!(
    ///     Schedule::from_setting(&table["c"], utc)?.describe(),
    ///     "At 04:00 (America/New_York)",
    /// );
    /// assert_eq!(
    ///     Schedule::from_setting(&table["d"], utc)?.describe(),
    ///     "at sunrise at 59.9, 10.7",
    /// );
    /// assert_eq!(
    ///     Schedule::from_setting(&table["e"], utc).unwrap_err().to_string(),
    ///     "period: \"fortnights\" is not a period; use days, hours, minutes, seconds or microseconds",
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_setting(
        value: &toml::Value,
        default_timezone: chrono_tz::Tz,
    ) -> Result<Schedule, ScheduleError> {
        setting::parse(value, default_timezone)
    }
}

impl std::fmt::Display for Schedule {
    /// The same words as [`Schedule::describe`].
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl From<Interval> for Schedule {
    fn from(interval: Interval) -> Self {
        Schedule::Interval(interval)
    }
}

impl From<Crontab> for Schedule {
    fn from(crontab: Crontab) -> Self {
        Schedule::Crontab(crontab)
    }
}

impl From<Clocked> for Schedule {
    fn from(clocked: Clocked) -> Self {
        Schedule::Clocked(clocked)
    }
}

impl From<Solar> for Schedule {
    fn from(solar: Solar) -> Self {
        Schedule::Solar(solar)
    }
}

/// A schedule that cannot be built: the message names the field, the value and what is allowed,
/// for example `day_of_week: 7 is out of range 0-6 (0 = Sunday; use 0 or sun for Sunday)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ScheduleError {
    field: String,
    message: String,
}

impl ScheduleError {
    /// An error about `field` (`minute`, `period`, `schedule`, ...).
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> ScheduleError {
        ScheduleError {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The field that is wrong, for example `day_of_week` or `timezone`.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong with it (the message without the field name).
    pub fn message(&self) -> &str {
        &self.message
    }
}
