//! Crontab schedules with Celery's semantics, in an IANA time zone.
//!
//! The next firing is found by walking local dates (skipping whole months that do not match),
//! then the matching hours and minutes of a matching date, in order, and converting each local
//! time to UTC:
//!
//! - a local time in a daylight-saving gap (it does not exist) is skipped;
//! - an ambiguous local time (clocks went back) fires once, at its first occurrence.
//!
//! Mapping each existing local time to its first occurrence is increasing in local time, so the
//! first candidate later than `after` is the answer. The `cron` crate was not used: its
//! day-of-week numbering (1 = Sunday) and its day-of-month/day-of-week rules differ from
//! Celery's, and it has no "fire once at the first occurrence" rule for ambiguous times.

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::crontab_field::{Field, FieldKind};
use super::ScheduleError;

/// How far ahead [`Crontab::next_after`] looks: the Gregorian calendar (weekdays included)
/// repeats every 400 years, so a crontab that matches no date in that span never will.
const SEARCH_YEARS: u32 = 400;

/// Celery's crontab: fires at every minute whose minute, hour, day of week, day of month and
/// month all match (all five must match, unlike Vixie cron, which fires when *either* day field
/// matches), reading the wall clock of [`Crontab::timezone`].
///
/// Day of week `0` is Sunday (`6` is Saturday; `7` is rejected, as in Celery). Each field takes
/// `*`, numbers, lists `1,5`, ranges `1-5`, steps `*/15` and `1-30/5`, and in the day and month
/// fields names (`mon`, `Monday`, `jan`, `January`); a range whose end is below its start wraps
/// around as in Celery (`fri-mon`, hour `22-2`).
///
/// ```
/// use celery_web::beat::schedule::Crontab;
/// use chrono::{TimeZone, Utc};
///
/// // Celery: crontab(minute='30', hour='7', day_of_week='mon-fri')
/// let crontab = Crontab::new("30", "7", "mon-fri", "*", "*", chrono_tz::America::New_York)?;
/// assert_eq!(crontab.day_of_week(), "mon-fri");
/// let saturday = Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap();
/// assert_eq!(
///     crontab.next_after(saturday),
///     Some(Utc.with_ymd_and_hms(2026, 11, 23, 12, 30, 0).unwrap()), // Monday 07:30 EST
/// );
///
/// let error = Crontab::new("0", "0", "7", "*", "*", chrono_tz::UTC).unwrap_err();
/// assert_eq!(
///     error.to_string(),
///     "day_of_week: 7 is out of range 0-6 (0 = Sunday; use 0 or sun for Sunday)",
/// );
/// # Ok::<(), celery_web::beat::schedule::ScheduleError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Crontab {
    /// Boxed so that a [`Schedule`](super::Schedule) stays small.
    fields: Box<Fields>,
    timezone: Tz,
}

#[derive(Debug, Clone, PartialEq)]
struct Fields {
    minute: Field,
    hour: Field,
    day_of_week: Field,
    day_of_month: Field,
    month_of_year: Field,
}

impl Crontab {
    /// A crontab from its fields in Celery's `crontab()` argument order (minute, hour,
    /// day_of_week, day_of_month, month_of_year), read in `timezone`.
    ///
    /// Fails on values out of range, empty fields or items, a step of 0, unknown names, and on
    /// day/month combinations that never occur (`day_of_month = "31"`, `month_of_year = "2"`).
    pub fn new(
        minute: &str,
        hour: &str,
        day_of_week: &str,
        day_of_month: &str,
        month_of_year: &str,
        timezone: Tz,
    ) -> Result<Crontab, ScheduleError> {
        let crontab = Crontab {
            fields: Box::new(Fields {
                minute: Field::parse(FieldKind::Minute, minute)?,
                hour: Field::parse(FieldKind::Hour, hour)?,
                day_of_week: Field::parse(FieldKind::DayOfWeek, day_of_week)?,
                day_of_month: Field::parse(FieldKind::DayOfMonth, day_of_month)?,
                month_of_year: Field::parse(FieldKind::MonthOfYear, month_of_year)?,
            }),
            timezone,
        };
        crontab.check_some_date_exists()?;
        Ok(crontab)
    }

    /// A crontab from a cron line in cron's field order: `"minute hour day_of_month
    /// month_of_year day_of_week"`, for example `"30 7 * * mon"` (day of week `0` = Sunday, as
    /// in Celery).
    ///
    /// ```
    /// use celery_web::beat::schedule::Crontab;
    ///
    /// let crontab = Crontab::parse("0 4 1 * *", chrono_tz::UTC)?;
    /// assert_eq!((crontab.minute(), crontab.hour(), crontab.day_of_month()), ("0", "4", "1"));
    /// assert_eq!(crontab.describe(), "At 04:00 on day 1 of the month");
    /// assert_eq!(
    ///     Crontab::parse("0 4 * *", chrono_tz::UTC).unwrap_err().to_string(),
    ///     "crontab: \"0 4 * *\" has 4 fields; write 5 fields: minute hour day_of_month \
    ///      month_of_year day_of_week, for example \"30 7 * * mon\"",
    /// );
    /// # Ok::<(), celery_web::beat::schedule::ScheduleError>(())
    /// ```
    pub fn parse(line: &str, timezone: Tz) -> Result<Crontab, ScheduleError> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields[..] {
            [minute, hour, day_of_month, month_of_year, day_of_week] => Crontab::new(
                minute,
                hour,
                day_of_week,
                day_of_month,
                month_of_year,
                timezone,
            ),
            _ => Err(ScheduleError::new(
                "crontab",
                format!(
                    "{line:?} has {} fields; write 5 fields: minute hour day_of_month \
                     month_of_year day_of_week, for example \"30 7 * * mon\"",
                    fields.len()
                ),
            )),
        }
    }

    /// The minute field as written, for example `*/15`.
    pub fn minute(&self) -> &str {
        self.fields.minute.text()
    }

    /// The hour field as written.
    pub fn hour(&self) -> &str {
        self.fields.hour.text()
    }

    /// The day of week field as written (`0` = Sunday).
    pub fn day_of_week(&self) -> &str {
        self.fields.day_of_week.text()
    }

    /// The day of month field as written.
    pub fn day_of_month(&self) -> &str {
        self.fields.day_of_month.text()
    }

    /// The month field as written.
    pub fn month_of_year(&self) -> &str {
        self.fields.month_of_year.text()
    }

    /// The fields as a cron line in cron's order, `minute hour day_of_month month_of_year
    /// day_of_week` (what [`Crontab::parse`] reads back), for example `30 7 * * mon`; spaces
    /// inside a field are dropped.
    pub fn cron_line(&self) -> String {
        let fields = [
            self.minute(),
            self.hour(),
            self.day_of_month(),
            self.month_of_year(),
            self.day_of_week(),
        ];
        // Spaces inside a field (`1, 5`) would split it into two cron fields.
        let fields: Vec<String> = fields
            .iter()
            .map(|field| field.split_whitespace().collect())
            .collect();
        fields.join(" ")
    }

    /// The zone whose wall clock the fields are read in.
    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    /// The five fields in Celery's order, for describing.
    pub(super) fn fields(&self) -> [&Field; 5] {
        [
            &self.fields.minute,
            &self.fields.hour,
            &self.fields.day_of_week,
            &self.fields.day_of_month,
            &self.fields.month_of_year,
        ]
    }

    /// The first matching minute strictly after `after`; `None` when none within 400 years.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local_after = after.with_timezone(&self.timezone).naive_local();
        // Local times before this minute map to instants at or before `after`.
        let first_minute = local_after.date().and_hms_opt(
            chrono::Timelike::hour(&local_after),
            chrono::Timelike::minute(&local_after),
            0,
        )?;
        let last_date = first_minute
            .date()
            .checked_add_months(Months::new(12 * SEARCH_YEARS))?;
        let mut date = first_minute.date();
        while date <= last_date {
            if !self.fields.month_of_year.matches(date.month()) {
                date = first_of_next_month(date)?;
                continue;
            }
            if self.date_matches(date) {
                if let Some(found) = self.first_on(date, first_minute, after) {
                    return Some(found);
                }
            }
            date = date.checked_add_days(Days::new(1))?;
        }
        None
    }

    fn date_matches(&self, date: NaiveDate) -> bool {
        self.fields.day_of_month.matches(date.day())
            && self
                .fields
                .day_of_week
                .matches(date.weekday().num_days_from_sunday())
    }

    /// The first matching minute of `date` not before `first_minute` whose first occurrence is
    /// after `after`.
    fn first_on(
        &self,
        date: NaiveDate,
        first_minute: NaiveDateTime,
        after: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        for hour in self.fields.hour.values() {
            for minute in self.fields.minute.values() {
                let local = date.and_hms_opt(hour, minute, 0)?;
                if local < first_minute {
                    continue;
                }
                // `earliest`: an ambiguous time fires at its first occurrence; a time in a gap
                // has none and is skipped.
                let Some(instant) = self.timezone.from_local_datetime(&local).earliest() else {
                    continue;
                };
                let instant = instant.with_timezone(&Utc);
                if instant > after {
                    return Some(instant);
                }
            }
        }
        None
    }

    /// Rejects day-of-month/month combinations that never occur (`31` in `2`), which would
    /// otherwise never fire without a word (django-celery-beat keeps such rows silently).
    fn check_some_date_exists(&self) -> Result<(), ScheduleError> {
        let exists = self.fields.month_of_year.values().any(|month| {
            let longest = match month {
                2 => 29,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            self.fields.day_of_month.values().any(|day| day <= longest)
        });
        if exists {
            Ok(())
        } else {
            Err(ScheduleError::new(
                "day_of_month",
                format!(
                    "{} never falls in month_of_year {}, so the schedule would never fire",
                    self.fields.day_of_month.text(),
                    self.fields.month_of_year.text()
                ),
            ))
        }
    }
}

fn first_of_next_month(date: NaiveDate) -> Option<NaiveDate> {
    date.with_day(1)?.checked_add_months(Months::new(1))
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use chrono_tz::{America, Australia, Europe};

    use super::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    /// The next `count` firings after `after`.
    fn firings(crontab: &Crontab, after: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut at = after;
        while out.len() < count {
            at = crontab.next_after(at).expect("fires");
            out.push(at);
        }
        out
    }

    #[test]
    fn oslo_spring_forward_skips_the_missing_half_past_two() {
        let crontab = Crontab::new("30", "2", "*", "*", "*", Europe::Oslo).unwrap();
        // 2026-03-28 02:30 CET = 01:30 UTC; 2026-03-29 02:30 does not exist;
        // 2026-03-30 02:30 CEST = 00:30 UTC.
        assert_eq!(
            firings(&crontab, utc(2026, 3, 28, 0, 0), 2),
            [utc(2026, 3, 28, 1, 30), utc(2026, 3, 30, 0, 30)]
        );
        // A crontab of every minute jumps from 01:59 CET straight to 03:00 CEST.
        let every_minute = Crontab::new("*", "*", "*", "*", "*", Europe::Oslo).unwrap();
        assert_eq!(
            every_minute.next_after(utc(2026, 3, 29, 0, 59)),
            Some(utc(2026, 3, 29, 1, 0))
        );
    }

    #[test]
    fn oslo_fall_back_fires_half_past_two_once() {
        let crontab = Crontab::new("30", "2", "*", "*", "*", Europe::Oslo).unwrap();
        // 2026-10-25 02:30 happens at 00:30 UTC (CEST) and again at 01:30 UTC (CET).
        assert_eq!(
            firings(&crontab, utc(2026, 10, 24, 12, 0), 2),
            [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]
        );
        // Asked between the two occurrences, it does not fire again that day.
        assert_eq!(
            crontab.next_after(utc(2026, 10, 25, 0, 45)),
            Some(utc(2026, 10, 26, 1, 30))
        );
        // Every 20 minutes between 02:00 and 02:59: 00:00, 00:20, 00:40 UTC, then 03:00 CET.
        let every_twenty = Crontab::new("*/20", "2,3", "*", "*", "*", Europe::Oslo).unwrap();
        assert_eq!(
            firings(&every_twenty, utc(2026, 10, 24, 23, 59), 4),
            [
                utc(2026, 10, 25, 0, 0),
                utc(2026, 10, 25, 0, 20),
                utc(2026, 10, 25, 0, 40),
                utc(2026, 10, 25, 2, 0),
            ]
        );
    }

    #[test]
    fn new_york_transitions() {
        let crontab = Crontab::new("30", "2", "*", "*", "*", America::New_York).unwrap();
        // 2026-03-08: 02:00 EST -> 03:00 EDT, so 02:30 does not exist.
        assert_eq!(
            firings(&crontab, utc(2026, 3, 7, 0, 0), 2),
            [utc(2026, 3, 7, 7, 30), utc(2026, 3, 9, 6, 30)]
        );
        // 2026-11-01: 02:00 EDT -> 01:00 EST, so 01:30 happens twice (05:30 and 06:30 UTC).
        let half_past_one = Crontab::new("30", "1", "*", "*", "*", America::New_York).unwrap();
        assert_eq!(
            firings(&half_past_one, utc(2026, 10, 31, 12, 0), 2),
            [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]
        );
    }

    #[test]
    fn lord_howe_half_hour_shift() {
        // Lord Howe: +10:30 standard, +11:00 summer. 2026-10-04 02:00 -> 02:30 (02:00-02:29
        // missing); 2026-04-05 02:00 -> 01:30 (01:30-01:59 twice).
        let quarter_past_two =
            Crontab::new("15", "2", "*", "*", "*", Australia::Lord_Howe).unwrap();
        assert_eq!(
            firings(&quarter_past_two, utc(2026, 10, 2, 12, 0), 2),
            // 2026-10-03 02:15 +10:30 = 10-02 15:45 UTC; 10-04 skipped; 10-05 02:15 +11 = 10-04 15:15.
            [utc(2026, 10, 2, 15, 45), utc(2026, 10, 4, 15, 15)]
        );
        let forty_five = Crontab::new("45", "1", "*", "*", "*", Australia::Lord_Howe).unwrap();
        // 2026-04-05 01:45 first occurs at +11:00 = 04-04 14:45 UTC (again at 15:15 UTC).
        assert_eq!(
            firings(&forty_five, utc(2026, 4, 4, 12, 0), 2),
            [utc(2026, 4, 4, 14, 45), utc(2026, 4, 5, 15, 15)]
        );
        assert_eq!(
            forty_five.next_after(utc(2026, 4, 4, 15, 0)),
            Some(utc(2026, 4, 5, 15, 15))
        );
    }

    #[test]
    fn all_five_fields_must_match() {
        // Friday the 13th at 09:00 (Vixie cron would also fire on every Friday).
        let crontab = Crontab::new("0", "9", "fri", "13", "*", chrono_tz::UTC).unwrap();
        assert_eq!(
            firings(&crontab, utc(2026, 1, 1, 0, 0), 3),
            [
                utc(2026, 2, 13, 9, 0),
                utc(2026, 3, 13, 9, 0),
                utc(2026, 11, 13, 9, 0)
            ]
        );
    }

    #[test]
    fn sunday_is_zero() {
        let crontab = Crontab::new("0", "0", "0", "*", "*", chrono_tz::UTC).unwrap();
        // 2026-11-22 is a Sunday.
        assert_eq!(
            crontab.next_after(utc(2026, 11, 21, 0, 0)),
            Some(utc(2026, 11, 22, 0, 0))
        );
        let sun = Crontab::new("0", "0", "sun", "*", "*", chrono_tz::UTC).unwrap();
        assert_eq!(
            sun.next_after(utc(2026, 11, 21, 0, 0)),
            crontab.next_after(utc(2026, 11, 21, 0, 0))
        );
    }

    #[test]
    fn strictly_after_and_seconds_are_ignored() {
        let crontab = Crontab::new("*/15", "*", "*", "*", "*", chrono_tz::UTC).unwrap();
        let at = utc(2026, 5, 1, 10, 15);
        assert_eq!(crontab.next_after(at), Some(utc(2026, 5, 1, 10, 30)));
        assert_eq!(
            crontab.next_after(at - TimeDelta::milliseconds(1)),
            Some(at)
        );
        assert_eq!(
            crontab.next_after(at + TimeDelta::seconds(59)),
            Some(utc(2026, 5, 1, 10, 30))
        );
    }

    #[test]
    fn leap_day_and_rare_dates() {
        let leap = Crontab::new("0", "12", "*", "29", "2", chrono_tz::UTC).unwrap();
        assert_eq!(
            leap.next_after(utc(2026, 1, 1, 0, 0)),
            Some(utc(2028, 2, 29, 12, 0))
        );
        // February 29th on a Monday: 2044.
        let leap_monday = Crontab::new("0", "12", "mon", "29", "2", chrono_tz::UTC).unwrap();
        assert_eq!(
            leap_monday.next_after(utc(2026, 1, 1, 0, 0)),
            Some(utc(2044, 2, 29, 12, 0))
        );
    }

    #[test]
    fn impossible_dates_are_rejected() {
        assert_eq!(
            Crontab::new("0", "0", "*", "31", "2", chrono_tz::UTC)
                .unwrap_err()
                .to_string(),
            "day_of_month: 31 never falls in month_of_year 2, so the schedule would never fire"
        );
        assert_eq!(
            Crontab::new("0", "0", "*", "31", "feb,apr,jun,sep,nov", chrono_tz::UTC)
                .unwrap_err()
                .field(),
            "day_of_month"
        );
        assert!(Crontab::new("0", "0", "*", "31", "2,3", chrono_tz::UTC).is_ok());
    }

    #[test]
    fn end_of_time_is_none() {
        let crontab = Crontab::new("0", "0", "*", "*", "*", chrono_tz::UTC).unwrap();
        assert_eq!(crontab.next_after(DateTime::<Utc>::MAX_UTC), None);
    }

    #[test]
    fn parse_uses_cron_order() {
        let crontab = Crontab::parse(" 30  7 1-7 jan,jul mon ", Europe::Oslo).unwrap();
        assert_eq!(crontab.minute(), "30");
        assert_eq!(crontab.hour(), "7");
        assert_eq!(crontab.day_of_month(), "1-7");
        assert_eq!(crontab.month_of_year(), "jan,jul");
        assert_eq!(crontab.day_of_week(), "mon");
        assert_eq!(crontab.timezone(), Europe::Oslo);
        assert_eq!(crontab.cron_line(), "30 7 1-7 jan,jul mon");
        let spaced = Crontab::new("0, 30", "9", "mon - fri", "*", "*", Europe::Oslo).unwrap();
        assert_eq!(spaced.day_of_week(), "mon - fri");
        assert_eq!(spaced.cron_line(), "0,30 9 * * mon-fri");
        assert_eq!(
            Crontab::parse(&spaced.cron_line(), Europe::Oslo)
                .unwrap()
                .describe(),
            spaced.describe()
        );
        assert_eq!(
            crontab,
            Crontab::new("30", "7", "mon", "1-7", "jan,jul", Europe::Oslo).unwrap()
        );
        assert_eq!(
            Crontab::parse("", chrono_tz::UTC).unwrap_err().to_string(),
            "crontab: \"\" has 0 fields; write 5 fields: minute hour day_of_month \
             month_of_year day_of_week, for example \"30 7 * * mon\""
        );
    }
}
