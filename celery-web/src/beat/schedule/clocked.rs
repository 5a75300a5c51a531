//! Clocked schedules: once, at an instant (django-celery-beat's `ClockedSchedule`).

use chrono::{DateTime, Timelike, Utc};

/// Fires once, at [`Clocked::at`]. django-celery-beat requires such tasks to be `one_off`.
///
/// ```
/// use celery_web::beat::schedule::Clocked;
/// use chrono::{TimeZone, Utc};
///
/// let at = Utc.with_ymd_and_hms(2026, 12, 1, 8, 0, 0).unwrap();
/// let clocked = Clocked::new(at);
/// assert_eq!(clocked.next_after(at - chrono::TimeDelta::seconds(1)), Some(at));
/// assert_eq!(clocked.next_after(at), None);
/// assert_eq!(clocked.describe(), "once at 2026-12-01 08:00 UTC");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Clocked {
    at: DateTime<Utc>,
}

impl Clocked {
    /// Once, at `at`.
    pub fn new(at: DateTime<Utc>) -> Clocked {
        Clocked { at }
    }

    /// The instant it fires.
    pub fn at(&self) -> DateTime<Utc> {
        self.at
    }

    /// [`Clocked::at`] if it is strictly after `after`, else `None`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        (self.at > after).then_some(self.at)
    }

    /// `once at 2026-12-01 08:00 UTC` (seconds shown when not zero).
    pub fn describe(&self) -> String {
        let format = if self.at.second() == 0 && self.at.nanosecond() == 0 {
            "%Y-%m-%d %H:%M"
        } else if self.at.nanosecond() == 0 {
            "%Y-%m-%d %H:%M:%S"
        } else {
            "%Y-%m-%d %H:%M:%S%.f"
        };
        format!("once at {} UTC", self.at.format(format))
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeDelta, TimeZone};

    use super::*;

    #[test]
    fn fires_only_before_its_time() {
        let at = Utc.with_ymd_and_hms(2026, 12, 1, 8, 0, 0).unwrap();
        let clocked = Clocked::new(at);
        assert_eq!(clocked.at(), at);
        assert_eq!(clocked.next_after(at - TimeDelta::days(400)), Some(at));
        assert_eq!(
            clocked.next_after(at - TimeDelta::microseconds(1)),
            Some(at)
        );
        assert_eq!(clocked.next_after(at), None);
        assert_eq!(clocked.next_after(at + TimeDelta::seconds(1)), None);
    }

    #[test]
    fn describe_shows_seconds_only_when_set() {
        let at = Utc.with_ymd_and_hms(2026, 12, 1, 8, 0, 5).unwrap();
        assert_eq!(
            Clocked::new(at).describe(),
            "once at 2026-12-01 08:00:05 UTC"
        );
        assert_eq!(
            Clocked::new(at + TimeDelta::milliseconds(250)).describe(),
            "once at 2026-12-01 08:00:05.250 UTC"
        );
    }
}
