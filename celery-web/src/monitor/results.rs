//! Task results, newest first, filtered and paged by keyset on `(date_done, id)`.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use super::ResultCursor;
use crate::db::schema::celery_taskresult;
use crate::db::{with_connection, Db};
use crate::task::State;
use crate::Result;

/// The most rows [`list_results`] returns in one page; larger limits are cut to it.
pub const MAX_PAGE: usize = 1_000;

/// Which results to list. Every field set narrows the list; dates combine with the rest.
#[derive(Default, Clone, Debug, PartialEq)]
pub struct ResultFilter {
    /// Only this state.
    pub status: Option<State>,
    /// Only this task name (exact).
    pub task_name: Option<String>,
    /// Only results of this worker (node name, exact).
    pub worker: Option<String>,
    /// Only results of tasks this periodic task sent (its name, exact).
    pub periodic_task: Option<String>,
    /// Only results done at or after this time.
    pub done_after: Option<DateTime<Utc>>,
    /// Only results done before this time.
    pub done_before: Option<DateTime<Utc>>,
    /// Only the result of this task id (exact match).
    pub task_id: Option<String>,
}

/// One row of `celery_taskresult`, as stored (JSON columns as text).
#[derive(Clone, Debug, PartialEq)]
pub struct ResultRow {
    /// Row id.
    pub id: i64,
    /// Task id.
    pub task_id: String,
    /// Task name.
    pub task_name: Option<String>,
    /// The periodic task that sent it, when beat did.
    pub periodic_task_name: Option<String>,
    /// State name (`SUCCESS`, ...); see [`ResultRow::state`].
    pub status: String,
    /// Node name of the worker that ran it.
    pub worker: Option<String>,
    /// Queue it came from.
    pub queue: Option<String>,
    /// Positional arguments, JSON.
    pub task_args: Option<String>,
    /// Keyword arguments, JSON.
    pub task_kwargs: Option<String>,
    /// Return value, or Celery's exception dict, JSON.
    pub result: Option<String>,
    /// Traceback of a failure.
    pub traceback: Option<String>,
    /// Extra metadata, JSON.
    pub meta: Option<String>,
    /// Retries before this outcome.
    pub retries: i32,
    /// When the row was created.
    pub date_created: DateTime<Utc>,
    /// When the task started (with `task_track_started`, and for every finished run).
    pub date_started: Option<DateTime<Utc>>,
    /// When the row was last written.
    pub date_done: DateTime<Utc>,
}

impl ResultRow {
    /// The state, or `None` for a status celery-web does not know (written by hand).
    pub fn state(&self) -> Option<State> {
        self.status.parse().ok()
    }

    /// How long the task ran: `date_done - date_started` for ready states (SUCCESS,
    /// FAILURE, REVOKED) that have a start time; `None` otherwise, or if the clock went back.
    pub fn runtime(&self) -> Option<std::time::Duration> {
        if !self.state()?.is_ready() {
            return None;
        }
        (self.date_done - self.date_started?).to_std().ok()
    }

    /// The cursor that continues a listing after this row.
    pub fn cursor(&self) -> ResultCursor {
        ResultCursor {
            date_done: self.date_done,
            id: self.id,
        }
    }
}

/// One page of [`list_results`].
#[derive(Clone, Debug, PartialEq)]
pub struct ResultPage {
    /// The rows, newest `date_done` first (higher `id` first among equals).
    pub rows: Vec<ResultRow>,
    /// Where the next page starts, or `None` when this is the last page.
    pub next: Option<ResultCursor>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = celery_taskresult)]
struct Row {
    id: i64,
    task_id: String,
    task_name: Option<String>,
    periodic_task_name: Option<String>,
    status: String,
    worker: Option<String>,
    queue: Option<String>,
    task_args: Option<String>,
    task_kwargs: Option<String>,
    result: Option<String>,
    traceback: Option<String>,
    meta: Option<String>,
    retries: i32,
    date_created: NaiveDateTime,
    date_started: Option<NaiveDateTime>,
    date_done: NaiveDateTime,
}

impl From<Row> for ResultRow {
    fn from(row: Row) -> Self {
        ResultRow {
            id: row.id,
            task_id: row.task_id,
            task_name: row.task_name,
            periodic_task_name: row.periodic_task_name,
            status: row.status,
            worker: row.worker,
            queue: row.queue,
            task_args: row.task_args,
            task_kwargs: row.task_kwargs,
            result: row.result,
            traceback: row.traceback,
            meta: row.meta,
            retries: row.retries,
            date_created: row.date_created.and_utc(),
            date_started: row.date_started.map(|t| t.and_utc()),
            date_done: row.date_done.and_utc(),
        }
    }
}

/// Lists results matching `filter`, newest `date_done` first (ties: higher `id` first),
/// starting after `after` (the `next` of the previous page; `None` for the first page).
/// At most `limit` rows (1 to [`MAX_PAGE`]); `next` is set when more rows follow.
///
/// Keyset pagination: each page is an index range scan whatever its depth, and rows written
/// while someone pages never shift a page (new rows are newer than every cursor).
pub async fn list_results(
    db: &Db,
    filter: &ResultFilter,
    after: Option<ResultCursor>,
    limit: usize,
) -> Result<ResultPage> {
    let filter = filter.clone();
    let limit = limit.clamp(1, MAX_PAGE);
    db.run(move |db| {
        use celery_taskresult::dsl as r;
        let rows: Vec<Row> = with_connection!(db, |conn| {
            let mut query = r::celery_taskresult.select(Row::as_select()).into_boxed();
            if let Some(status) = filter.status {
                query = query.filter(r::status.eq(status.as_str()));
            }
            if let Some(name) = &filter.task_name {
                query = query.filter(r::task_name.eq(name.clone()));
            }
            if let Some(worker) = &filter.worker {
                query = query.filter(r::worker.eq(worker.clone()));
            }
            if let Some(periodic) = &filter.periodic_task {
                query = query.filter(r::periodic_task_name.eq(periodic.clone()));
            }
            if let Some(id) = &filter.task_id {
                query = query.filter(r::task_id.eq(id.clone()));
            }
            if let Some(after) = filter.done_after {
                query = query.filter(r::date_done.ge(after.naive_utc()));
            }
            if let Some(before) = filter.done_before {
                query = query.filter(r::date_done.lt(before.naive_utc()));
            }
            if let Some(cursor) = after {
                // `(date_done, id) < cursor`, written so both databases see the range
                // `date_done <= cursor` on the index and check the tie on the few rows
                // sharing the cursor's instant.
                let done = cursor.date_done.naive_utc();
                query = query
                    .filter(r::date_done.le(done))
                    .filter(r::date_done.lt(done).or(r::id.lt(cursor.id)));
            }
            query
                .order((r::date_done.desc(), r::id.desc()))
                .limit(limit as i64 + 1)
                .load(conn)?
        });
        let mut rows: Vec<ResultRow> = rows.into_iter().map(ResultRow::from).collect();
        let next = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(ResultRow::cursor)
        } else {
            None
        };
        Ok(ResultPage { rows, next })
    })
    .await
}

/// The result of `task_id`, if there is a row.
pub async fn get_result(db: &Db, task_id: &str) -> Result<Option<ResultRow>> {
    let task_id = task_id.to_owned();
    db.run(move |db| {
        use celery_taskresult::dsl as r;
        let row: Option<Row> = with_connection!(db, |conn| r::celery_taskresult
            .select(Row::as_select())
            .filter(r::task_id.eq(&task_id))
            .first(conn)
            .optional()?);
        Ok(row.map(ResultRow::from))
    })
    .await
}

/// The `limit` (at most [`MAX_PAGE`]) most recent FAILUREs, newest first.
pub async fn latest_failures(db: &Db, limit: usize) -> Result<Vec<ResultRow>> {
    let filter = ResultFilter {
        status: Some(State::Failure),
        ..ResultFilter::default()
    };
    Ok(list_results(db, &filter, None, limit).await?.rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: &str, started: Option<i64>, done: i64) -> ResultRow {
        let at = |ms: i64| DateTime::from_timestamp_millis(ms).unwrap();
        ResultRow {
            id: 1,
            task_id: "t".into(),
            task_name: None,
            periodic_task_name: None,
            status: status.into(),
            worker: None,
            queue: None,
            task_args: None,
            task_kwargs: None,
            result: None,
            traceback: None,
            meta: None,
            retries: 0,
            date_created: at(0),
            date_started: started.map(at),
            date_done: at(done),
        }
    }

    #[test]
    fn runtime_is_known_for_finished_runs_only() {
        let ms = std::time::Duration::from_millis;
        assert_eq!(row("SUCCESS", Some(1_000), 1_250).runtime(), Some(ms(250)));
        assert_eq!(
            row("FAILURE", Some(1_000), 3_000).runtime(),
            Some(ms(2_000))
        );
        assert_eq!(row("STARTED", Some(1_000), 1_250).runtime(), None);
        assert_eq!(row("RETRY", Some(1_000), 1_250).runtime(), None);
        assert_eq!(row("SUCCESS", None, 1_250).runtime(), None);
        assert_eq!(
            row("SUCCESS", Some(2_000), 1_250).runtime(),
            None,
            "clock went back"
        );
        assert_eq!(row("WEIRD", Some(1_000), 1_250).state(), None);
        assert_eq!(row("REVOKED", None, 1).state(), Some(State::Revoked));
    }
}
