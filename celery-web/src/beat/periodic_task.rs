//! A periodic task as beat sees it: its row, its schedule, and when it fires next.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use serde_json::Value;

use super::definition::PeriodicTaskDefinition;
use super::schedule::Schedule;
use crate::task::Signature;

/// Who owns a periodic task row. Rows from settings and code are rewritten (or deleted) when
/// beat starts; rows made in the admin or with SQL are left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Made in the admin, the JSON API or with SQL.
    Database,
    /// A `beat_schedule` entry of the settings.
    Settings,
    /// [`Celery::add_periodic_task`](crate::Celery::add_periodic_task).
    Code,
}

impl Source {
    /// The value of the `source` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Database => "db",
            Source::Settings => "settings",
            Source::Code => "code",
        }
    }

    pub(crate) fn from_column(value: &str) -> Source {
        match value {
            "settings" => Source::Settings,
            "code" => Source::Code,
            _ => Source::Database,
        }
    }
}

/// One row of `celery_periodic_task`: its definition, decoded, and beat's state.
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodicTask {
    /// Row id.
    pub id: i64,
    /// What fires, when, and how it is sent.
    pub definition: PeriodicTaskDefinition,
    /// No firing after this time; beat disables the task then.
    pub expires: Option<DateTime<Utc>>,
    /// Whether beat fires it.
    pub enabled: bool,
    /// The last firing's bookkeeping time: its slot when it fired on time, the time it fired
    /// when it caught up after downtime.
    pub last_run_at: Option<DateTime<Utc>>,
    /// How many times it fired.
    pub total_run_count: i64,
    /// When it was last edited.
    pub date_changed: DateTime<Utc>,
    /// Who owns the row.
    pub source: Source,
}

/// How long past due a further slot must be for a firing to count as catching up after
/// downtime (then the missed slots are skipped). Shorter stalls fire each slot.
pub const CATCH_UP_AFTER: Duration = Duration::seconds(2);

/// Intervals shorter than this are refused: beat would spin on the database.
pub const SHORTEST_INTERVAL: Duration = Duration::milliseconds(100);

/// Why a periodic task will not fire again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finished {
    /// `enabled` is false.
    Disabled,
    /// A one-off task that fired.
    OneOffDone,
    /// Its next slot is past `expires`.
    Expired,
    /// The schedule has no further slot (a clocked time that passed).
    NoMoreSlots,
}

impl PeriodicTask {
    /// The row `definition` becomes when beat writes it at `now`, without storing it (for
    /// previews such as `beat --list` before beat has run).
    pub fn unsaved(
        definition: &PeriodicTaskDefinition,
        source: Source,
        now: DateTime<Utc>,
    ) -> Self {
        PeriodicTask {
            id: 0,
            definition: definition.clone(),
            expires: None,
            enabled: true,
            last_run_at: None,
            total_run_count: 0,
            date_changed: now,
            source,
        }
    }

    /// The slot it fires at next, or why it never fires again. Computed from the row alone,
    /// so every beat process reading the same row agrees on the slot (the firing key).
    pub(crate) fn next_slot(&self) -> Result<DateTime<Utc>, Finished> {
        if !self.enabled {
            return Err(Finished::Disabled);
        }
        if self.definition.one_off && self.total_run_count > 0 {
            return Err(Finished::OneOffDone);
        }
        let just_before = |t: DateTime<Utc>| t - Duration::microseconds(1);
        let slot = match (self.last_run_at, &self.definition.schedule) {
            (Some(last), schedule) => schedule.next_after(last),
            // Never fired: an interval starts at start_time, or one period after the row was
            // made or last edited (Celery: one interval after beat first sees the entry).
            (None, Schedule::Interval(interval)) => Some(
                self.definition
                    .start_time
                    .unwrap_or(self.date_changed + interval.duration()),
            ),
            (None, Schedule::Clocked(clocked)) => Some(clocked.at()),
            (None, schedule) => schedule.next_after(
                self.definition
                    .start_time
                    .map_or(self.date_changed, just_before),
            ),
        }
        .ok_or(Finished::NoMoreSlots)?;
        let slot = match self.definition.start_time {
            Some(start) if slot < start => match &self.definition.schedule {
                Schedule::Interval(_) => start,
                schedule => schedule
                    .next_after(just_before(start))
                    .ok_or(Finished::NoMoreSlots)?,
            },
            _ => slot,
        };
        if self.expires.is_some_and(|expires| slot > expires) {
            return Err(Finished::Expired);
        }
        Ok(slot.trunc_subsecs(6))
    }

    /// What `last_run_at` becomes when `slot` fires at `now`: the slot itself when on time,
    /// so intervals don't drift and slots a short stall delayed still fire one by one; `now`
    /// when the slot after this one was due [`CATCH_UP_AFTER`] ago or more (beat was down), so
    /// the task fires once to catch up rather than once per missed slot.
    pub(crate) fn bookkeeping_after(
        &self,
        slot: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> DateTime<Utc> {
        match self.definition.schedule.next_after(slot) {
            Some(following) if following + CATCH_UP_AFTER <= now => now.trunc_subsecs(6),
            _ => slot,
        }
    }

    /// The call this task makes when it fires at `now`: its arguments, queue, priority and
    /// headers, `periodic_task_name`, and its expiry.
    pub fn signature(&self, now: DateTime<Utc>) -> Signature<Value> {
        let mut signature = Signature::new(&self.definition.task)
            .with_arguments(self.definition.args.clone(), self.definition.kwargs.clone());
        for (name, value) in &self.definition.headers {
            signature = signature.header(name, value.clone());
        }
        // Last, so a stored header of the same name cannot hide which task sent it.
        signature = signature.header("periodic_task_name", self.definition.name.clone());
        if let Some(queue) = &self.definition.queue {
            signature = signature.queue(queue);
        }
        if let Some(priority) = self.definition.priority {
            signature = signature.priority(priority);
        }
        let expires = match (self.definition.expire_seconds, self.expires) {
            (Some(seconds), _) => Some(now + Duration::seconds(seconds)),
            (None, absolute) => absolute,
        };
        if let Some(expires) = expires {
            signature = signature.expires(expires);
        }
        signature
    }

    /// When it fires next, for display (`beat --list`, the admin); `None` when it won't.
    pub fn next_firing(&self) -> Option<DateTime<Utc>> {
        self.next_slot().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::beat::schedule::{Clocked, Crontab, Interval, Period};
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, h, m, s).unwrap()
    }

    fn task(schedule: Schedule) -> PeriodicTask {
        let definition = PeriodicTaskDefinition::new("t", schedule, Signature::new("tasks.add"));
        PeriodicTask::unsaved(&definition, Source::Database, at(12, 0, 0))
    }

    fn every_10s() -> Schedule {
        Schedule::Interval(Interval::new(10, Period::Seconds).unwrap())
    }

    #[test]
    fn a_new_interval_fires_one_period_after_it_was_made() {
        assert_eq!(task(every_10s()).next_slot(), Ok(at(12, 0, 10)));
    }

    #[test]
    fn start_time_moves_the_first_slot() {
        let mut t = task(every_10s());
        t.definition.start_time = Some(at(13, 0, 0));
        assert_eq!(t.next_slot(), Ok(at(13, 0, 0)));
        let mut c = task(Schedule::Crontab(
            Crontab::parse("*/15 * * * *", chrono_tz::UTC).unwrap(),
        ));
        c.definition.start_time = Some(at(13, 0, 0));
        assert_eq!(
            c.next_slot(),
            Ok(at(13, 0, 0)),
            "a slot at start_time counts"
        );
        c.last_run_at = Some(at(12, 45, 0));
        assert_eq!(c.next_slot(), Ok(at(13, 0, 0)));
    }

    #[test]
    fn disabled_one_off_done_expired_and_past_clocked_never_fire() {
        let mut t = task(every_10s());
        t.enabled = false;
        assert_eq!(t.next_slot(), Err(Finished::Disabled));
        let mut t = task(every_10s());
        t.definition.one_off = true;
        t.total_run_count = 1;
        assert_eq!(t.next_slot(), Err(Finished::OneOffDone));
        let mut t = task(every_10s());
        t.expires = Some(at(12, 0, 5));
        assert_eq!(t.next_slot(), Err(Finished::Expired));
        let mut t = task(Schedule::Clocked(Clocked::new(at(11, 0, 0))));
        assert_eq!(
            t.next_slot(),
            Ok(at(11, 0, 0)),
            "a never-run clocked task is due"
        );
        t.last_run_at = Some(at(11, 0, 0));
        assert_eq!(t.next_slot(), Err(Finished::NoMoreSlots));
    }

    #[test]
    fn on_time_firings_keep_the_slot_and_long_downtime_catches_up_once() {
        let mut t = task(every_10s());
        t.last_run_at = Some(at(12, 0, 0));
        let slot = t.next_slot().unwrap();
        assert_eq!(slot, at(12, 0, 10));
        // On time, or a short stall: bookkeeping is the slot (no drift; each slot fires).
        assert_eq!(t.bookkeeping_after(slot, at(12, 0, 10)), slot);
        assert_eq!(t.bookkeeping_after(slot, at(12, 0, 21)), slot);
        // An hour late: bookkeeping jumps to now, so the next slot is in the future.
        let now = at(13, 0, 3);
        let last = t.bookkeeping_after(slot, now);
        assert_eq!(last, now);
        t.last_run_at = Some(last);
        assert!(t.next_slot().unwrap() > now);
    }

    #[test]
    fn the_signature_carries_the_row_and_its_name_last() {
        let mut t = task(every_10s());
        t.definition
            .headers
            .insert("periodic_task_name".into(), Value::from("forged"));
        t.definition.queue = Some("q".into());
        t.definition.expire_seconds = Some(30);
        let now = at(12, 0, 0);
        let signature = t.signature(now);
        let options = signature.options();
        assert_eq!(options.headers["periodic_task_name"], Value::from("t"));
        assert_eq!(options.queue.as_deref(), Some("q"));
        assert_eq!(options.expires, Some(at(12, 0, 30)));
    }
}
