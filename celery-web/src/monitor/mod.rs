//! Read-only views of what workers and tasks are doing, for admin pages, JSON APIs and
//! `/metrics`: worker heartbeats ([`workers`]), task results with keyset pagination
//! ([`list_results`]) and aggregate counts ([`counts_per_minute`], [`runtime_histograms`]).
//!
//! Everything reads the site's database ([`Db`](crate::db::Db)): the `celery_worker` rows
//! workers upsert every 2 seconds and the `celery_taskresult` rows of the `db` result
//! backend. Result queries use the composite `(filter column, date_done, id)` indexes, so a
//! page costs the same on a million rows as on a hundred.
//!
//! ```no_run
//! # async fn demo(db: &celery_web::db::Db) -> celery_web::Result<()> {
//! use celery_web::monitor::{list_results, ResultFilter};
//! use celery_web::task::State;
//!
//! let failures = ResultFilter { status: Some(State::Failure), ..ResultFilter::default() };
//! let first = list_results(db, &failures, None, 50).await?;
//! if let Some(next) = first.next {
//!     let token = next.to_token(); // put it in the "next page" link
//!     let cursor = celery_web::monitor::ResultCursor::from_token(&token)?;
//!     let second = list_results(db, &failures, Some(cursor), 50).await?;
//! }
//! # Ok(()) }
//! ```

mod cursor;
mod results;
mod stats;
pub(crate) mod workers;

pub use cursor::ResultCursor;
pub use results::{
    get_result, latest_failures, list_results, ResultFilter, ResultPage, ResultRow, MAX_PAGE,
};
pub use stats::{
    counts_by_name_and_state, counts_per_minute, runtime_histograms, MinuteCount, RuntimeHistogram,
    StateCount, RUNTIME_BUCKETS,
};
pub use workers::{forget_worker, workers, WorkerInfo, ONLINE_WITHIN};
