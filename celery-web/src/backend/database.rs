//! The database result backend (`result_backend = "db"`): the `celery_taskresult` table,
//! modeled on django-celery-results' `TaskResult`.

use std::sync::Arc;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

#[cfg(feature = "postgres")]
use diesel::dsl::sql;
#[cfg(feature = "postgres")]
use diesel::sql_types::{Nullable, Timestamp};
#[cfg(feature = "postgres")]
use diesel::upsert::excluded;

use serde_json::{json, Value};

use super::{latest_per_task, ResultBackend, TaskRecord};
use crate::canvas::{ChordPart, ChordReady};
use crate::db::schema::celery_taskresult;
use crate::db::{with_connection, Db};
use crate::task::{BoxFuture, State};
use crate::Result;

/// Results in the `celery_taskresult` table of SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct DatabaseBackend {
    db: Db,
}

/// How many expired rows one `DELETE` removes, so cleanup never holds a long lock.
const EXPIRY_BATCH: i64 = 10_000;

#[derive(Insertable)]
#[diesel(table_name = celery_taskresult)]
struct NewResult<'a> {
    task_id: &'a str,
    periodic_task_name: Option<&'a str>,
    task_name: Option<&'a str>,
    task_args: Option<String>,
    task_kwargs: Option<String>,
    status: &'a str,
    worker: Option<&'a str>,
    result: Option<String>,
    date_created: NaiveDateTime,
    date_started: Option<NaiveDateTime>,
    date_done: NaiveDateTime,
    traceback: Option<&'a str>,
    retries: i32,
    queue: Option<&'a str>,
}

impl<'a> NewResult<'a> {
    fn new(record: &'a TaskRecord, now: NaiveDateTime) -> Self {
        NewResult {
            task_id: &record.task_id,
            periodic_task_name: record.periodic_task_name.as_deref(),
            task_name: record.task_name.as_deref(),
            task_args: json_text(&record.args),
            task_kwargs: json_text(&record.kwargs),
            status: record.status.as_str(),
            worker: record.worker.as_deref(),
            result: json_text(&record.result),
            date_created: record.date_created.map_or(now, |t| t.naive_utc()),
            date_started: record.date_started.map(|t| t.naive_utc()),
            date_done: record.date_done.map_or(now, |t| t.naive_utc()),
            traceback: record.traceback.as_deref(),
            retries: i32::try_from(record.retries).unwrap_or(i32::MAX),
            queue: record.queue.as_deref(),
        }
    }

    /// The same values as an update of an existing row (keeping its `date_created`, and its
    /// `date_started` when this record has none).
    #[cfg(feature = "sqlite")]
    fn changes(&self) -> ResultChanges<'_> {
        ResultChanges {
            status: self.status,
            result: self.result.clone(),
            traceback: Some(self.traceback),
            task_name: self.task_name,
            task_args: self.task_args.clone(),
            task_kwargs: self.task_kwargs.clone(),
            worker: self.worker,
            retries: self.retries,
            queue: self.queue,
            periodic_task_name: self.periodic_task_name,
            date_started: self.date_started,
            date_done: self.date_done,
        }
    }
}

/// The update of an existing row: `None` leaves a column as it is.
#[cfg(feature = "sqlite")]
#[derive(AsChangeset)]
#[diesel(table_name = celery_taskresult)]
struct ResultChanges<'a> {
    status: &'a str,
    result: Option<String>,
    traceback: Option<Option<&'a str>>,
    task_name: Option<&'a str>,
    task_args: Option<String>,
    task_kwargs: Option<String>,
    worker: Option<&'a str>,
    retries: i32,
    queue: Option<&'a str>,
    periodic_task_name: Option<&'a str>,
    date_started: Option<NaiveDateTime>,
    date_done: NaiveDateTime,
}

type ResultRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    i32,
    Option<String>,
    Option<String>,
    NaiveDateTime,
    Option<NaiveDateTime>,
    NaiveDateTime,
);

fn json_text(value: &Option<serde_json::Value>) -> Option<String> {
    value.as_ref().map(serde_json::Value::to_string)
}

fn parse_json(text: Option<String>) -> Option<serde_json::Value> {
    text.map(|t| serde_json::from_str(&t).unwrap_or(serde_json::Value::String(t)))
}

fn from_row(row: ResultRow) -> TaskRecord {
    let (
        task_id,
        status,
        result,
        traceback,
        task_name,
        task_args,
        task_kwargs,
        worker,
        retries,
        queue,
        periodic_task_name,
        date_created,
        date_started,
        date_done,
    ) = row;
    let status = status.parse().unwrap_or(State::Pending);
    TaskRecord {
        task_id,
        status,
        result: parse_json(result),
        traceback,
        task_name,
        args: parse_json(task_args),
        kwargs: parse_json(task_kwargs),
        worker,
        retries: u32::try_from(retries).unwrap_or(0),
        queue,
        periodic_task_name,
        date_created: Some(date_created.and_utc()),
        date_started: date_started.map(|t| t.and_utc()),
        date_done: status.is_ready().then(|| date_done.and_utc()),
        parent_id: None,
        group_id: None,
    }
}

impl DatabaseBackend {
    /// A backend on `db` (its tables must be migrated).
    pub fn new(db: Db) -> Self {
        DatabaseBackend { db }
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    fn store_blocking(db: &Db, records: &[TaskRecord]) -> Result<()> {
        let now = Utc::now().naive_utc();
        let records = latest_per_task(records);
        let rows: Vec<NewResult<'_>> = records.iter().map(|r| NewResult::new(r, now)).collect();
        match db {
            // One statement per chunk: INSERT ... ON CONFLICT DO UPDATE ... WHERE not SUCCESS.
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => {
                let conn = &mut *pool.get()?;
                store_rows_postgres(conn, &rows)
            }
            // SQLite's upsert has no WHERE through diesel; statements are local calls, so an
            // update, and an insert when there was nothing to update, per row is cheap.
            #[cfg(feature = "sqlite")]
            Db::Sqlite(pool) => {
                let conn = &mut *pool.get()?;
                conn.immediate_transaction(|conn| store_rows_sqlite(conn, &rows))
            }
        }
    }

    /// Stores `records` and counts the chord `parts` in one transaction: a part is counted
    /// (its chord's `count` decremented) only if its task was not already ready, so a message
    /// run again after a crash counts once; the part that brings `count` to 0 completes the
    /// chord, and so does a rerun of a part already counted while the row is still there
    /// (the body was maybe not sent before the crash; the row goes once it is).
    fn store_and_join_blocking(
        db: &Db,
        records: &[TaskRecord],
        parts: &[ChordPart],
    ) -> Result<Vec<ChordReady>> {
        let now = Utc::now().naive_utc();
        let records = latest_per_task(records);
        let rows: Vec<NewResult<'_>> = records.iter().map(|r| NewResult::new(r, now)).collect();
        macro_rules! join {
            ($conn:expr, $store:expr) => {{
                use crate::db::schema::celery_chordcounter::dsl as c;
                use celery_taskresult::dsl as r;
                let conn = $conn;
                let ids: Vec<&str> = parts.iter().map(|p| p.task_id.as_str()).collect();
                let counted_before: Vec<String> = r::celery_taskresult
                    .filter(r::task_id.eq_any(&ids))
                    .filter(r::status.eq_any(READY))
                    .select(r::task_id)
                    .load(conn)?;
                $store(&mut *conn, &rows)?;
                let mut ready = Vec::new();
                for part in parts {
                    let rerun = counted_before.contains(&part.task_id);
                    let decremented = !rerun
                        && diesel::update(
                            c::celery_chordcounter
                                .filter(c::group_id.eq(&part.group_id))
                                .filter(c::count.gt(0)),
                        )
                        .set(c::count.eq(c::count - 1))
                        .execute(conn)?
                            > 0;
                    let row: Option<(i64, String)> = c::celery_chordcounter
                        .filter(c::group_id.eq(&part.group_id))
                        .select((c::count, c::sub_tasks))
                        .first(conn)
                        .optional()?;
                    let Some((0, sub_tasks)) = row else {
                        if row.is_none() && !rerun {
                            tracing::warn!(group_id = %part.group_id, "no chord counter for this group");
                        }
                        continue;
                    };
                    if !(decremented || rerun) {
                        continue;
                    }
                    let header = header_ids(&sub_tasks)?;
                    let stored: Vec<(String, String, Option<String>)> = r::celery_taskresult
                        .filter(r::task_id.eq_any(&header))
                        .select((r::task_id, r::status, r::result))
                        .load(conn)?;
                    if let Some(results) = chord_results(&part.group_id, &header, &stored) {
                        ready.push(ChordReady { last: part.clone(), results });
                    }
                }
                Ok(ready)
            }};
        }
        match db {
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => {
                let conn = &mut *pool.get()?;
                conn.transaction(|conn| join!(conn, store_rows_postgres))
            }
            #[cfg(feature = "sqlite")]
            Db::Sqlite(pool) => {
                let conn = &mut *pool.get()?;
                conn.immediate_transaction(|conn| join!(conn, store_rows_sqlite))
            }
        }
    }
    fn fetch_blocking(db: &Db, task_id: &str) -> Result<Option<TaskRecord>> {
        use celery_taskresult::dsl as r;
        let row: Option<ResultRow> = with_connection!(db, |conn| r::celery_taskresult
            .filter(r::task_id.eq(task_id))
            .select((
                r::task_id,
                r::status,
                r::result,
                r::traceback,
                r::task_name,
                r::task_args,
                r::task_kwargs,
                r::worker,
                r::retries,
                r::queue,
                r::periodic_task_name,
                r::date_created,
                r::date_started,
                r::date_done,
            ))
            .first(conn)
            .optional()?);
        Ok(row.map(from_row))
    }
}

/// Django-celery-results' ready states.
const READY: [&str; 3] = ["SUCCESS", "FAILURE", "REVOKED"];

/// Writes result rows on PostgreSQL: one statement per chunk, INSERT ... ON CONFLICT DO
/// UPDATE ... WHERE not SUCCESS.
#[cfg(feature = "postgres")]
fn store_rows_postgres(conn: &mut diesel::PgConnection, rows: &[NewResult<'_>]) -> Result<()> {
    use celery_taskresult::dsl as r;
    // The WHERE of `ON CONFLICT DO UPDATE`; in scope here only, as it shadows
    // QueryDsl::filter.
    use diesel::query_dsl::methods::FilterDsl;
    // 14 columns a row: 500 rows stay far below PostgreSQL's 65,535 binds.
    for chunk in rows.chunks(500) {
        diesel::insert_into(r::celery_taskresult)
            .values(chunk)
            .on_conflict(r::task_id)
            .do_update()
            .set((
                r::status.eq(excluded(r::status)),
                r::result.eq(excluded(r::result)),
                r::traceback.eq(excluded(r::traceback)),
                r::task_name.eq(excluded(r::task_name)),
                r::task_args.eq(excluded(r::task_args)),
                r::task_kwargs.eq(excluded(r::task_kwargs)),
                r::worker.eq(excluded(r::worker)),
                r::retries.eq(excluded(r::retries)),
                r::queue.eq(excluded(r::queue)),
                r::periodic_task_name.eq(excluded(r::periodic_task_name)),
                r::date_started.eq(sql::<Nullable<Timestamp>>(
                    "COALESCE(excluded.date_started, celery_taskresult.date_started)",
                )),
                r::date_done.eq(excluded(r::date_done)),
            ))
            .filter(r::status.ne(State::Success.as_str()))
            .execute(conn)?;
    }
    Ok(())
}

/// Writes result rows on SQLite (inside the caller's transaction): an update, and an insert
/// when there was nothing to update, per row.
#[cfg(feature = "sqlite")]
fn store_rows_sqlite(conn: &mut diesel::SqliteConnection, rows: &[NewResult<'_>]) -> Result<()> {
    use celery_taskresult::dsl as r;
    for row in rows {
        let updated = diesel::update(
            r::celery_taskresult
                .filter(r::task_id.eq(row.task_id))
                .filter(r::status.ne(State::Success.as_str())),
        )
        .set(&row.changes())
        .execute(conn)?;
        if updated == 0 {
            // Already there (SUCCESS, or a racing writer): keep what is there.
            diesel::insert_into(r::celery_taskresult)
                .values(row)
                .on_conflict(r::task_id)
                .do_nothing()
                .execute(conn)?;
        }
    }
    Ok(())
}

/// The header task ids of a counter's `sub_tasks` (`[[["<id>", null], null], ...]`).
fn header_ids(sub_tasks: &str) -> Result<Vec<String>> {
    let tuples: Vec<Value> = serde_json::from_str(sub_tasks).map_err(crate::Error::backend)?;
    tuples
        .iter()
        .map(|t| {
            t.pointer("/0/0")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| crate::Error::backend(format!("a chord counter holds {t}")))
        })
        .collect()
}

/// The header's results in order, or the `ChordError`; `None` when some are missing
/// (`ignore_result`), as Celery never fires such a chord.
fn chord_results(
    group_id: &str,
    header: &[String],
    stored: &[(String, String, Option<String>)],
) -> Option<std::result::Result<Vec<Value>, String>> {
    let mut results = Vec::with_capacity(header.len());
    for id in header {
        let Some((_, status, result)) = stored.iter().find(|(task, _, _)| task == id) else {
            tracing::error!(%group_id, task_id = %id, "a chord header result is missing; the body is not sent");
            return None;
        };
        let value = parse_json(result.clone()).unwrap_or(Value::Null);
        if let Some(error) = crate::canvas::chord::dependency_error(id, status, &value) {
            return Some(Err(error));
        }
        results.push(value);
    }
    Some(Ok(results))
}

impl ResultBackend for DatabaseBackend {
    fn store<'a>(&'a self, records: &'a [TaskRecord]) -> BoxFuture<'a, Result<()>> {
        let records = records.to_vec();
        Box::pin(self.db.run(move |db| Self::store_blocking(db, &records)))
    }

    fn fetch<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Result<Option<TaskRecord>>> {
        let task_id = task_id.to_owned();
        Box::pin(self.db.run(move |db| Self::fetch_blocking(db, &task_id)))
    }

    fn joins_chords(&self) -> bool {
        true
    }

    fn store_and_join<'a>(
        &'a self,
        records: &'a [TaskRecord],
        parts: &'a [ChordPart],
    ) -> BoxFuture<'a, Result<Vec<ChordReady>>> {
        let (records, parts) = (records.to_vec(), parts.to_vec());
        Box::pin(
            self.db
                .run(move |db| Self::store_and_join_blocking(db, &records, &parts)),
        )
    }

    fn chord_part_return<'a>(
        &'a self,
        parts: &'a [ChordPart],
    ) -> BoxFuture<'a, Result<Vec<ChordReady>>> {
        self.store_and_join(&[], parts)
    }

    fn chord_started<'a>(
        &'a self,
        group_id: &'a str,
        header: &'a [String],
    ) -> BoxFuture<'a, Result<()>> {
        let group_id = group_id.to_owned();
        let sub_tasks: Vec<Value> = header.iter().map(|id| json!([[id, null], null])).collect();
        let sub_tasks = Value::Array(sub_tasks).to_string();
        let count = i64::try_from(header.len()).unwrap_or(i64::MAX);
        Box::pin(self.db.run(move |db| {
            use crate::db::schema::celery_chordcounter::dsl as c;
            with_connection!(db, |conn| diesel::insert_into(c::celery_chordcounter)
                .values((
                    c::group_id.eq(&group_id),
                    c::sub_tasks.eq(&sub_tasks),
                    c::count.eq(count),
                ))
                .execute(conn)?);
            Ok(())
        }))
    }

    fn chord_fired<'a>(&'a self, group_id: &'a str) -> BoxFuture<'a, Result<()>> {
        let group_id = group_id.to_owned();
        Box::pin(self.db.run(move |db| {
            use crate::db::schema::celery_chordcounter::dsl as c;
            with_connection!(db, |conn| diesel::delete(
                c::celery_chordcounter.filter(c::group_id.eq(&group_id))
            )
            .execute(conn)?);
            Ok(())
        }))
    }

    fn forget<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Result<()>> {
        let task_id = task_id.to_owned();
        Box::pin(self.db.run(move |db| {
            use celery_taskresult::dsl as r;
            with_connection!(db, |conn| diesel::delete(
                r::celery_taskresult.filter(r::task_id.eq(&task_id))
            )
            .execute(conn)?);
            Ok(())
        }))
    }

    fn delete_expired<'a>(&'a self, before: DateTime<Utc>) -> BoxFuture<'a, Result<u64>> {
        self.delete_expired_reporting(before, Arc::new(|_| {}))
    }

    fn delete_expired_reporting<'a>(
        &'a self,
        before: DateTime<Utc>,
        deleted: Arc<dyn Fn(u64) + Send + Sync>,
    ) -> BoxFuture<'a, Result<u64>> {
        Box::pin(self.db.run(move |db| {
            use celery_taskresult::dsl as r;
            let before = before.naive_utc();
            let ready: Vec<&str> = State::ALL
                .iter()
                .filter(|s| s.is_ready())
                .map(|s| s.as_str())
                .collect();
            let mut total = 0u64;
            loop {
                let removed = with_connection!(db, |conn| {
                    let batch: Vec<i64> = r::celery_taskresult
                        .select(r::id)
                        .filter(r::date_done.lt(before))
                        .filter(r::status.eq_any(&ready))
                        .limit(EXPIRY_BATCH)
                        .load(conn)?;
                    diesel::delete(r::celery_taskresult.filter(r::id.eq_any(&batch)))
                        .execute(conn)?
                });
                total += removed as u64;
                deleted(total);
                if (removed as i64) < EXPIRY_BATCH {
                    return Ok(total);
                }
            }
        }))
    }
}
