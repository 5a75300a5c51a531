//! Beat's tables: periodic tasks and schedules, the change marker, and firing keys.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde_json::{Map, Value};

use super::definition::PeriodicTaskDefinition;
use super::periodic_task::{PeriodicTask, Source};
use super::schedule::{Clocked, Crontab, Interval, Period, Schedule, Solar, SolarEvent};
use crate::db::schema::{
    celery_beat_change, celery_beat_clocked, celery_beat_crontab, celery_beat_firing,
    celery_beat_interval, celery_beat_solar, celery_periodic_task,
};
use crate::db::{with_connection, Db, WriteTransaction};
use crate::protocol::Message;
use crate::{Error, Result};

/// Reads and writes beat's tables in the site's database.
#[derive(Debug, Clone)]
pub struct BeatStore {
    db: Db,
}

/// A row that cannot become a [`PeriodicTask`] (a schedule edited into something invalid
/// with SQL, arguments that are not JSON); beat logs it at every reload and skips it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    /// Row id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// What is wrong.
    pub reason: String,
}

/// What [`BeatStore::fire`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fired {
    /// This process holds the firing; the message is in the broker when `enqueued`, or is
    /// this process's to publish.
    Claimed {
        /// The message was inserted in the same transaction (database broker).
        enqueued: bool,
    },
    /// Another beat fired this slot already, or the row changed since it was read.
    Taken,
}

/// One firing of a periodic task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firing {
    /// The periodic task.
    pub periodic_task_id: i64,
    /// The slot it was for.
    pub scheduled_at: DateTime<Utc>,
    /// When a beat took it.
    pub fired_at: DateTime<Utc>,
    /// The id of the task sent.
    pub task_id: String,
    /// Which beat (`host:pid`).
    pub beat: String,
}

/// A row of `celery_periodic_task`: its definition and beat's state.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = celery_periodic_task)]
struct PeriodicTaskRow {
    id: i64,
    #[diesel(embed)]
    definition: DefinitionColumns,
    expires: Option<NaiveDateTime>,
    enabled: bool,
    last_run_at: Option<NaiveDateTime>,
    total_run_count: i64,
    date_changed: NaiveDateTime,
}

/// The columns a definition sets (everything but beat's state, `expires` and `enabled`).
#[derive(Debug, PartialEq, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = celery_periodic_task, treat_none_as_null = true)]
struct DefinitionColumns {
    name: String,
    task: String,
    interval_id: Option<i64>,
    crontab_id: Option<i64>,
    solar_id: Option<i64>,
    clocked_id: Option<i64>,
    args: String,
    kwargs: String,
    queue: Option<String>,
    headers: String,
    priority: Option<i32>,
    expire_seconds: Option<i64>,
    one_off: bool,
    start_time: Option<NaiveDateTime>,
    description: String,
    source: String,
}

/// The schedule rows a periodic task can point at, by id.
#[derive(Default)]
struct Schedules {
    interval: HashMap<i64, std::result::Result<Schedule, String>>,
    crontab: HashMap<i64, std::result::Result<Schedule, String>>,
    solar: HashMap<i64, std::result::Result<Schedule, String>>,
    clocked: HashMap<i64, std::result::Result<Schedule, String>>,
}

type CrontabRow = (i64, String, String, String, String, String, String);

impl Schedules {
    fn from_rows(
        intervals: Vec<(i64, i64, String)>,
        crontabs: Vec<CrontabRow>,
        solars: Vec<(i64, String, f64, f64)>,
        clockeds: Vec<(i64, NaiveDateTime)>,
    ) -> Self {
        let text = |e: super::schedule::ScheduleError| e.to_string();
        Schedules {
            interval: intervals
                .into_iter()
                .map(|(id, every, period)| {
                    let schedule = period
                        .parse::<Period>()
                        .and_then(|period| Interval::new(every, period))
                        .map(Schedule::Interval)
                        .map_err(text);
                    (id, schedule)
                })
                .collect(),
            crontab: crontabs
                .into_iter()
                .map(|(id, minute, hour, dow, dom, moy, timezone)| {
                    let schedule = timezone
                        .parse::<chrono_tz::Tz>()
                        .map_err(|_| format!("timezone `{timezone}` is not an IANA name"))
                        .and_then(|tz| {
                            Crontab::new(&minute, &hour, &dow, &dom, &moy, tz)
                                .map(Schedule::Crontab)
                                .map_err(text)
                        });
                    (id, schedule)
                })
                .collect(),
            solar: solars
                .into_iter()
                .map(|(id, event, latitude, longitude)| {
                    let schedule = event
                        .parse::<SolarEvent>()
                        .and_then(|event| Solar::new(event, latitude, longitude))
                        .map(Schedule::Solar)
                        .map_err(text);
                    (id, schedule)
                })
                .collect(),
            clocked: clockeds
                .into_iter()
                .map(|(id, at)| (id, Ok(Schedule::Clocked(Clocked::new(at.and_utc())))))
                .collect(),
        }
    }

    fn schedule_of(&self, row: &DefinitionColumns) -> std::result::Result<Schedule, String> {
        let (kind, id, table) = match (
            row.interval_id,
            row.crontab_id,
            row.solar_id,
            row.clocked_id,
        ) {
            (Some(id), None, None, None) => ("interval", id, &self.interval),
            (None, Some(id), None, None) => ("crontab", id, &self.crontab),
            (None, None, Some(id), None) => ("solar", id, &self.solar),
            (None, None, None, Some(id)) => ("clocked", id, &self.clocked),
            _ => return Err("exactly one schedule must be set".to_owned()),
        };
        table
            .get(&id)
            .cloned()
            .unwrap_or_else(|| Err(format!("its {kind} schedule {id} does not exist")))
    }
}

/// Loads the periodic task rows `filter` selects, then every schedule row (in that order, so
/// a task committed with a new schedule finds it), with one connection.
macro_rules! load_tasks {
    ($conn:ident, $filter:expr) => {{
        use celery_periodic_task::dsl as p;
        let rows: Vec<std::result::Result<PeriodicTaskRow, BadRow>> = match p::celery_periodic_task
            .filter($filter)
            .order(p::name)
            .select(PeriodicTaskRow::as_select())
            .load($conn)
        {
            Ok(rows) => rows.into_iter().map(Ok).collect(),
            // A value its column cannot hold (SQLite stores anything in any column): read
            // the rows one by one, so one bad row is reported and the others still run.
            Err(diesel::result::Error::DeserializationError(_)) => {
                let names = p::celery_periodic_task
                    .filter($filter)
                    .order(p::name)
                    .select((p::id, p::name))
                    .load::<(i64, String)>($conn)?;
                names
                    .into_iter()
                    .map(|(id, name)| {
                        p::celery_periodic_task
                            .filter(p::id.eq(id))
                            .select(PeriodicTaskRow::as_select())
                            .first($conn)
                            .map_err(|e| BadRow {
                                id,
                                name,
                                reason: format!("a column holds a value of the wrong type: {e}"),
                            })
                    })
                    .collect()
            }
            Err(e) => return Err(e.into()),
        };
        let intervals = celery_beat_interval::table
            .select((
                celery_beat_interval::id,
                celery_beat_interval::every,
                celery_beat_interval::period,
            ))
            .load::<(i64, i64, String)>($conn)?;
        let crontabs = celery_beat_crontab::table
            .select((
                celery_beat_crontab::id,
                celery_beat_crontab::minute,
                celery_beat_crontab::hour,
                celery_beat_crontab::day_of_week,
                celery_beat_crontab::day_of_month,
                celery_beat_crontab::month_of_year,
                celery_beat_crontab::timezone,
            ))
            .load::<CrontabRow>($conn)?;
        let solars = celery_beat_solar::table
            .select((
                celery_beat_solar::id,
                celery_beat_solar::event,
                celery_beat_solar::latitude,
                celery_beat_solar::longitude,
            ))
            .load::<(i64, String, f64, f64)>($conn)?;
        let clockeds = celery_beat_clocked::table
            .select((celery_beat_clocked::id, celery_beat_clocked::clocked_time))
            .load::<(i64, NaiveDateTime)>($conn)?;
        let schedules = Schedules::from_rows(intervals, crontabs, solars, clockeds);
        rows.into_iter()
            .map(|row| row.and_then(|row| decode(row, &schedules)))
            .collect::<Vec<_>>()
    }};
}

fn decode(
    row: PeriodicTaskRow,
    schedules: &Schedules,
) -> std::result::Result<PeriodicTask, BadRow> {
    let columns = row.definition;
    let bad = |reason: String| BadRow {
        id: row.id,
        name: columns.name.clone(),
        reason,
    };
    let schedule = schedules.schedule_of(&columns).map_err(bad)?;
    if let Schedule::Interval(interval) = &schedule {
        if interval.duration() < super::periodic_task::SHORTEST_INTERVAL {
            return Err(bad(format!(
                "its interval ({}) is shorter than 100 ms",
                interval.describe()
            )));
        }
    }
    let args = match serde_json::from_str(&columns.args) {
        Ok(Value::Array(args)) => args,
        _ => return Err(bad(format!("args `{}` is not a JSON list", columns.args))),
    };
    let object = |column: &str, text: &str| match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(bad(format!("{column} `{text}` is not a JSON object"))),
    };
    let kwargs = object("kwargs", &columns.kwargs)?;
    let headers = if columns.headers.trim().is_empty() {
        Map::new()
    } else {
        object("headers", &columns.headers)?
    };
    let priority = match columns.priority {
        None => None,
        Some(p) => Some(
            u8::try_from(p)
                .ok()
                .filter(|p| *p <= 9)
                .ok_or_else(|| bad(format!("priority {p} is outside 0-9")))?,
        ),
    };
    Ok(PeriodicTask {
        id: row.id,
        definition: PeriodicTaskDefinition {
            name: columns.name,
            task: columns.task,
            schedule,
            args,
            kwargs,
            queue: columns.queue.filter(|q| !q.is_empty()),
            priority,
            expire_seconds: columns.expire_seconds,
            headers,
            one_off: columns.one_off,
            start_time: columns.start_time.map(|t| t.and_utc()),
            description: columns.description,
        },
        expires: row.expires.map(|t| t.and_utc()),
        enabled: row.enabled,
        last_run_at: row.last_run_at.map(|t| t.and_utc()),
        total_run_count: row.total_run_count,
        date_changed: row.date_changed.and_utc(),
        source: Source::from_column(&columns.source),
    })
}

/// Finds or creates the schedule row of `schedule`; returns
/// `(interval_id, crontab_id, solar_id, clocked_id)` with exactly one set.
macro_rules! schedule_row {
    ($conn:ident, $schedule:expr) => {{
        match $schedule {
            Schedule::Interval(interval) => {
                use celery_beat_interval::dsl as s;
                let key = (
                    s::every.eq(interval.every()),
                    s::period.eq(interval.period().as_str()),
                );
                diesel::insert_into(s::celery_beat_interval)
                    .values(key)
                    .on_conflict_do_nothing()
                    .execute($conn)?;
                let id = s::celery_beat_interval
                    .filter(s::every.eq(interval.every()))
                    .filter(s::period.eq(interval.period().as_str()))
                    .select(s::id)
                    .first::<i64>($conn)?;
                (Some(id), None, None, None)
            }
            Schedule::Crontab(crontab) => {
                use celery_beat_crontab::dsl as s;
                let timezone = crontab.timezone().name();
                diesel::insert_into(s::celery_beat_crontab)
                    .values((
                        s::minute.eq(crontab.minute()),
                        s::hour.eq(crontab.hour()),
                        s::day_of_week.eq(crontab.day_of_week()),
                        s::day_of_month.eq(crontab.day_of_month()),
                        s::month_of_year.eq(crontab.month_of_year()),
                        s::timezone.eq(timezone),
                    ))
                    .on_conflict_do_nothing()
                    .execute($conn)?;
                let id = s::celery_beat_crontab
                    .filter(s::minute.eq(crontab.minute()))
                    .filter(s::hour.eq(crontab.hour()))
                    .filter(s::day_of_week.eq(crontab.day_of_week()))
                    .filter(s::day_of_month.eq(crontab.day_of_month()))
                    .filter(s::month_of_year.eq(crontab.month_of_year()))
                    .filter(s::timezone.eq(timezone))
                    .select(s::id)
                    .first::<i64>($conn)?;
                (None, Some(id), None, None)
            }
            Schedule::Solar(solar) => {
                use celery_beat_solar::dsl as s;
                let event = solar.event().as_str();
                diesel::insert_into(s::celery_beat_solar)
                    .values((
                        s::event.eq(event),
                        s::latitude.eq(solar.latitude()),
                        s::longitude.eq(solar.longitude()),
                    ))
                    .on_conflict_do_nothing()
                    .execute($conn)?;
                let id = s::celery_beat_solar
                    .filter(s::event.eq(event))
                    .filter(s::latitude.eq(solar.latitude()))
                    .filter(s::longitude.eq(solar.longitude()))
                    .select(s::id)
                    .first::<i64>($conn)?;
                (None, None, Some(id), None)
            }
            Schedule::Clocked(clocked) => {
                use celery_beat_clocked::dsl as s;
                let at = clocked.at().naive_utc();
                diesel::insert_into(s::celery_beat_clocked)
                    .values(s::clocked_time.eq(at))
                    .on_conflict_do_nothing()
                    .execute($conn)?;
                let id = s::celery_beat_clocked
                    .filter(s::clocked_time.eq(at))
                    .select(s::id)
                    .first::<i64>($conn)?;
                (None, None, None, Some(id))
            }
        }
    }};
}

/// What saving a definition did.
enum Saved {
    Created,
    Updated,
    Unchanged,
}

/// Saves `definition` as a row of `source` inside the caller's transaction; evaluates to
/// `(id, Saved)`.
macro_rules! save_in {
    ($conn:ident, $definition:expr, $source:expr) => {{
        use celery_periodic_task::dsl as p;
        let definition: &PeriodicTaskDefinition = $definition;
        let (interval_id, crontab_id, solar_id, clocked_id) =
            schedule_row!($conn, &definition.schedule);
        let columns = DefinitionColumns {
            name: definition.name.clone(),
            task: definition.task.clone(),
            interval_id,
            crontab_id,
            solar_id,
            clocked_id,
            args: Value::Array(definition.args.clone()).to_string(),
            kwargs: Value::Object(definition.kwargs.clone()).to_string(),
            queue: definition.queue.clone(),
            headers: Value::Object(definition.headers.clone()).to_string(),
            priority: definition.priority.map(i32::from),
            expire_seconds: definition.expire_seconds,
            one_off: definition.one_off,
            start_time: definition.start_time.map(|t| t.naive_utc()),
            description: definition.description.clone(),
            source: $source.as_str().to_owned(),
        };
        let now = Utc::now().naive_utc();
        let existing = p::celery_periodic_task
            .filter(p::name.eq(&definition.name))
            .select(PeriodicTaskRow::as_select())
            .first($conn)
            .optional()?;
        match existing {
            Some(row) if row.definition == columns => (row.id, Saved::Unchanged),
            Some(row) => {
                if row.definition.source != columns.source {
                    tracing::warn!(
                        periodic_task = %columns.name, was = %row.definition.source,
                        now = %columns.source,
                        "beat: a periodic task of that name existed; its definition is replaced"
                    );
                }
                diesel::update(p::celery_periodic_task.filter(p::id.eq(row.id)))
                    .set((&columns, p::date_changed.eq(now)))
                    .execute($conn)?;
                (row.id, Saved::Updated)
            }
            None => {
                // Another beat starting at the same moment may insert it first: then theirs
                // stands (it is the same definition).
                let inserted = diesel::insert_into(p::celery_periodic_task)
                    .values((&columns, p::date_changed.eq(now)))
                    .on_conflict(p::name)
                    .do_nothing()
                    .returning(p::id)
                    .get_result::<i64>($conn)
                    .optional()?;
                match inserted {
                    Some(id) => (id, Saved::Created),
                    None => {
                        let id = p::celery_periodic_task
                            .filter(p::name.eq(&definition.name))
                            .select(p::id)
                            .first::<i64>($conn)?;
                        (id, Saved::Unchanged)
                    }
                }
            }
        }
    }};
}

/// Why a firing transaction rolled back without an error.
enum FireAbort {
    /// The row changed since this beat read it (another beat fired it, someone edited it).
    Stale,
    Failed(Error),
}

impl From<diesel::result::Error> for FireAbort {
    fn from(e: diesel::result::Error) -> Self {
        FireAbort::Failed(e.into())
    }
}

impl From<Error> for FireAbort {
    fn from(e: Error) -> Self {
        FireAbort::Failed(e)
    }
}

/// What [`BeatStore::sync`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Rows created.
    pub created: usize,
    /// Rows whose definition changed.
    pub updated: usize,
    /// Rows of the same source no longer defined, deleted.
    pub deleted: usize,
}

impl BeatStore {
    /// Beat's tables in `db` (run the migrations first).
    pub fn new(db: Db) -> Self {
        BeatStore { db }
    }

    /// Beat's tables in the database of `app` (`database_url`).
    pub fn for_app(app: &crate::Celery) -> Result<Self> {
        app.db().cloned().map(BeatStore::new).ok_or_else(|| {
            Error::Config(
                "beat keeps its schedule in the database: set database_url (or use a \
                 sqlite:// or postgres:// broker)"
                    .to_owned(),
            )
        })
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The change marker: it goes up whenever a periodic task or a schedule is edited.
    pub fn version(&self) -> Result<i64> {
        // A missing marker row (deleted by hand) reads as 0 rather than stopping beat.
        with_connection!(&self.db, |conn| Ok(celery_beat_change::table
            .select(celery_beat_change::version)
            .first::<i64>(conn)
            .optional()?
            .unwrap_or(0)))
    }

    /// Bumps the change marker, for edits beat would not otherwise notice (resetting
    /// `last_run_at` with SQL, as django-celery-beat's `PeriodicTasks.update_changed()`).
    pub fn touch(&self) -> Result<()> {
        use celery_beat_change::dsl as c;
        with_connection!(&self.db, |conn| {
            diesel::update(c::celery_beat_change)
                .set((
                    c::version.eq(c::version + 1),
                    c::changed_at.eq(Utc::now().naive_utc()),
                ))
                .execute(conn)?;
        });
        Ok(())
    }

    /// Every periodic task, by name; rows that cannot be decoded come back as [`BadRow`].
    pub fn load(&self) -> Result<Vec<std::result::Result<PeriodicTask, BadRow>>> {
        with_connection!(&self.db, |conn| Ok(load_tasks!(
            conn,
            celery_periodic_task::id.ge(0)
        )))
    }

    /// The periodic task with row id `id`, if it still exists.
    pub fn load_one(&self, id: i64) -> Result<Option<std::result::Result<PeriodicTask, BadRow>>> {
        with_connection!(&self.db, |conn| Ok(load_tasks!(
            conn,
            celery_periodic_task::id.eq(id)
        )
        .into_iter()
        .next()))
    }

    /// The periodic task named `name`.
    pub fn get(&self, name: &str) -> Result<Option<std::result::Result<PeriodicTask, BadRow>>> {
        let name = name.to_owned();
        with_connection!(&self.db, |conn| Ok(load_tasks!(
            conn,
            celery_periodic_task::name.eq(&name)
        )
        .into_iter()
        .next()))
    }

    /// Creates the periodic task `definition` names, or rewrites its definition if it
    /// differs (its `enabled`, `last_run_at` and `total_run_count` are kept); returns its id.
    pub fn save(&self, definition: &PeriodicTaskDefinition, source: Source) -> Result<i64> {
        with_connection!(&self.db, |conn| conn.write_transaction(|conn| {
            Ok::<_, Error>(save_in!(conn, definition, source).0)
        }))
    }

    /// Makes the rows of `source` exactly `definitions`: creates and updates them by name, and
    /// deletes the rows of `source` whose name is no longer defined. Beat runs it at start
    /// for the settings' `beat_schedule` and for the tasks added in code.
    pub fn sync(
        &self,
        definitions: &[PeriodicTaskDefinition],
        source: Source,
    ) -> Result<SyncReport> {
        use celery_periodic_task::dsl as p;
        with_connection!(&self.db, |conn| conn.write_transaction(|conn| {
            let mut report = SyncReport::default();
            for definition in definitions {
                match save_in!(conn, definition, source).1 {
                    Saved::Created => report.created += 1,
                    Saved::Updated => report.updated += 1,
                    Saved::Unchanged => {}
                }
            }
            let names: Vec<&str> = definitions.iter().map(|d| d.name.as_str()).collect();
            report.deleted = diesel::delete(
                p::celery_periodic_task
                    .filter(p::source.eq(source.as_str()))
                    .filter(p::name.ne_all(names)),
            )
            .execute(conn)?;
            Ok::<_, Error>(report)
        }))
    }

    /// Enables or disables a periodic task. Disabling clears `last_run_at` (as
    /// django-celery-beat), so re-enabling starts from then rather than catching up.
    pub fn set_enabled(&self, id: i64, enabled: bool) -> Result<bool> {
        use celery_periodic_task::dsl as p;
        let now = Utc::now().naive_utc();
        let changed = with_connection!(&self.db, |conn| {
            let row = p::celery_periodic_task.filter(p::id.eq(id));
            if enabled {
                diesel::update(row)
                    .set((p::enabled.eq(true), p::date_changed.eq(now)))
                    .execute(conn)?
            } else {
                diesel::update(row)
                    .set((
                        p::enabled.eq(false),
                        p::last_run_at.eq(None::<NaiveDateTime>),
                        p::date_changed.eq(now),
                    ))
                    .execute(conn)?
            }
        });
        Ok(changed > 0)
    }

    /// Renames the periodic task `id` (its history stays); returns whether it existed. Fails
    /// when another periodic task already has the name.
    pub fn rename(&self, id: i64, name: &str) -> Result<bool> {
        use celery_periodic_task::dsl as p;
        let now = Utc::now().naive_utc();
        let changed = with_connection!(&self.db, |conn| diesel::update(
            p::celery_periodic_task.filter(p::id.eq(id))
        )
        .set((p::name.eq(name), p::date_changed.eq(now)))
        .execute(conn)?);
        Ok(changed > 0)
    }

    /// Deletes the periodic task named `name`; returns whether it existed.
    pub fn delete(&self, name: &str) -> Result<bool> {
        use celery_periodic_task::dsl as p;
        let deleted = with_connection!(&self.db, |conn| diesel::delete(
            p::celery_periodic_task.filter(p::name.eq(name))
        )
        .execute(conn)?);
        Ok(deleted > 0)
    }

    /// Takes the firing of `task` for `slot` at `now`, keyed by (task, slot): inserts the
    /// key, moves the row's `last_run_at` and `total_run_count` on (only if the row is as
    /// `task` read it), disables a one-off task, and, when `enqueue` is true (the database
    /// broker on this same database), inserts `message` in the same transaction.
    pub fn fire(
        &self,
        task: &PeriodicTask,
        slot: DateTime<Utc>,
        now: DateTime<Utc>,
        message: &Message,
        beat: &str,
        enqueue: bool,
    ) -> Result<Fired> {
        use celery_beat_firing::dsl as f;
        use celery_periodic_task::dsl as p;
        let last_run_at = task.bookkeeping_after(slot, now).naive_utc();
        let key = (
            f::periodic_task_id.eq(task.id),
            f::scheduled_at.eq(slot.naive_utc()),
            f::fired_at.eq(now.naive_utc()),
            f::task_id.eq(message.id()),
            f::beat.eq(beat),
        );
        let outcome = with_connection!(&self.db, |conn| conn.write_transaction(|conn| {
            let inserted = diesel::insert_into(f::celery_beat_firing)
                .values(key)
                .on_conflict_do_nothing()
                .execute(conn)?;
            if inserted == 0 {
                return Err(FireAbort::Stale);
            }
            let updated = diesel::update(
                p::celery_periodic_task
                    .filter(p::id.eq(task.id))
                    .filter(p::enabled.eq(true))
                    .filter(p::total_run_count.eq(task.total_run_count)),
            )
            .set((
                p::last_run_at.eq(last_run_at),
                p::total_run_count.eq(p::total_run_count + 1),
                // Not an edit for the change marker: total_run_count moves in the same update.
                p::enabled.eq(!task.definition.one_off),
            ))
            .execute(conn)?;
            if updated == 0 {
                return Err(FireAbort::Stale);
            }
            if enqueue {
                crate::broker::database::publish_in(conn, message)?;
            }
            Ok(Fired::Claimed { enqueued: enqueue })
        }));
        match outcome {
            Ok(fired) => Ok(fired),
            Err(FireAbort::Stale) => Ok(Fired::Taken),
            Err(FireAbort::Failed(e)) => Err(e),
        }
    }

    /// Disables a periodic task whose `expires` has passed.
    pub(crate) fn expire(&self, id: i64) -> Result<()> {
        use celery_periodic_task::dsl as p;
        with_connection!(&self.db, |conn| {
            diesel::update(p::celery_periodic_task.filter(p::id.eq(id)))
                .set(p::enabled.eq(false))
                .execute(conn)?;
        });
        Ok(())
    }

    /// The firings of a periodic task, oldest first.
    pub fn firings(&self, periodic_task_id: i64) -> Result<Vec<Firing>> {
        use celery_beat_firing::dsl as f;
        let rows = with_connection!(&self.db, |conn| f::celery_beat_firing
            .filter(f::periodic_task_id.eq(periodic_task_id))
            .order(f::scheduled_at)
            .select((
                f::periodic_task_id,
                f::scheduled_at,
                f::fired_at,
                f::task_id,
                f::beat
            ))
            .load::<(i64, NaiveDateTime, NaiveDateTime, String, String)>(conn)?);
        Ok(rows
            .into_iter()
            .map(
                |(periodic_task_id, scheduled_at, fired_at, task_id, beat)| Firing {
                    periodic_task_id,
                    scheduled_at: scheduled_at.and_utc(),
                    fired_at: fired_at.and_utc(),
                    task_id,
                    beat,
                },
            )
            .collect())
    }

    /// Deletes firing keys older than `before`, in batches; returns how many. Keys only need
    /// to outlive the slowest beat's stale view of a row (seconds); beat keeps a day of them
    /// as history.
    pub fn prune_firings(&self, before: DateTime<Utc>) -> Result<usize> {
        use celery_beat_firing::dsl as f;
        let before = before.naive_utc();
        let mut total = 0;
        loop {
            let deleted = with_connection!(&self.db, |conn| {
                let batch = f::celery_beat_firing
                    .filter(f::fired_at.lt(before))
                    .select(f::id)
                    .limit(10_000)
                    .load::<i64>(conn)?;
                diesel::delete(f::celery_beat_firing.filter(f::id.eq_any(batch))).execute(conn)?
            });
            total += deleted;
            if deleted < 10_000 {
                return Ok(total);
            }
        }
    }
}
