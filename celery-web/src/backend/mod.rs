//! Result backends: where workers store task states and results, and where
//! [`AsyncResult`](crate::task::AsyncResult) reads them.

pub mod database;
pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::settings::ResultBackendKind;
use crate::task::{BoxFuture, State};
use crate::Result;

/// What the backend knows of one task (django-celery-results' `TaskResult` row, Celery's
/// result meta).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    /// Task id.
    pub task_id: String,
    /// Current state.
    pub status: State,
    /// The return value on SUCCESS; Celery's exception dict (`exc_type`, `exc_message`,
    /// `exc_module`) on FAILURE, RETRY and REVOKED; `{pid, hostname}` on STARTED.
    pub result: Option<Value>,
    /// Traceback text for failures.
    pub traceback: Option<String>,
    /// Task name.
    pub task_name: Option<String>,
    /// Positional arguments, as JSON.
    pub args: Option<Value>,
    /// Keyword arguments, as JSON.
    pub kwargs: Option<Value>,
    /// Hostname of the worker that ran it.
    pub worker: Option<String>,
    /// Retries so far.
    pub retries: u32,
    /// Queue it came from.
    pub queue: Option<String>,
    /// Periodic task that sent it, when beat did.
    pub periodic_task_name: Option<String>,
    /// When the record was first written.
    pub date_created: Option<DateTime<Utc>>,
    /// When it started running (with `task_track_started`).
    pub date_started: Option<DateTime<Utc>>,
    /// When the record was last written.
    pub date_done: Option<DateTime<Utc>>,
    /// The task that sent this one (Celery's meta `parent_id`).
    pub parent_id: Option<String>,
    /// The group it belongs to (Celery's meta `group_id`).
    pub group_id: Option<String>,
}

impl TaskRecord {
    /// A record of `task_id` in `status`, everything else empty.
    pub fn new(task_id: &str, status: State) -> Self {
        TaskRecord {
            task_id: task_id.to_owned(),
            status,
            result: None,
            traceback: None,
            task_name: None,
            args: None,
            kwargs: None,
            worker: None,
            retries: 0,
            queue: None,
            periodic_task_name: None,
            date_created: None,
            date_started: None,
            date_done: None,
            parent_id: None,
            group_id: None,
        }
    }

    /// Celery's exception dict.
    pub fn exception(exc_type: &str, message: &str) -> Value {
        json!({"exc_type": exc_type, "exc_message": [message], "exc_module": "builtins"})
    }

    /// `(exc_type, exc_message)` of a failure record.
    pub fn exception_parts(&self) -> (String, String) {
        let result = self.result.as_ref();
        let exc_type = result
            .and_then(|r| r.get("exc_type"))
            .and_then(Value::as_str)
            .unwrap_or(self.status.as_str())
            .to_owned();
        let exc_message = match result.and_then(|r| r.get("exc_message")) {
            Some(Value::Array(parts)) => parts
                .iter()
                .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(", "),
            Some(Value::String(text)) => text.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        (exc_type, exc_message)
    }
}

/// One record per task of a batch, in order of first appearance: a later record replaces an
/// earlier one (keeping its `date_started` when it has none), but nothing replaces SUCCESS.
/// Backends that write a batch in one statement need this: a statement may not touch a row
/// twice.
pub(crate) fn latest_per_task(records: &[TaskRecord]) -> Vec<TaskRecord> {
    let mut position = std::collections::HashMap::with_capacity(records.len());
    let mut latest: Vec<TaskRecord> = Vec::with_capacity(records.len());
    for record in records {
        match position.get(record.task_id.as_str()) {
            None => {
                position.insert(record.task_id.as_str(), latest.len());
                latest.push(record.clone());
            }
            Some(&at) => {
                let earlier: &mut TaskRecord = &mut latest[at];
                if earlier.status != State::Success {
                    let started = earlier.date_started;
                    *earlier = record.clone();
                    earlier.date_started = earlier.date_started.or(started);
                }
            }
        }
    }
    latest
}

/// A store of task states and results.
pub trait ResultBackend: Send + Sync + fmt::Debug + 'static {
    /// Stores records (one batch, one transaction where the backend has them). A record whose
    /// task is already SUCCESS is not overwritten, as in Celery; `date_created` and
    /// `date_started` of an existing record are kept.
    fn store<'a>(&'a self, records: &'a [TaskRecord]) -> BoxFuture<'a, Result<()>>;

    /// The record of `task_id`; `None` means PENDING (unknown).
    fn fetch<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Result<Option<TaskRecord>>>;

    /// Deletes the record of `task_id`.
    fn forget<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Result<()>>;

    /// Deletes records finished before `before`, in batches; returns how many.
    fn delete_expired<'a>(&'a self, before: DateTime<Utc>) -> BoxFuture<'a, Result<u64>>;

    /// [`delete_expired`](ResultBackend::delete_expired), telling `deleted` the running total
    /// as it goes (`site celery expire-results` shows it). The default reports once, at the
    /// end; a backend that deletes in batches reports after each.
    fn delete_expired_reporting<'a>(
        &'a self,
        before: DateTime<Utc>,
        deleted: Arc<dyn Fn(u64) + Send + Sync>,
    ) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let total = self.delete_expired(before).await?;
            deleted(total);
            Ok(total)
        })
    }

    /// Whether stored records expire by themselves after `result_expires` (Redis keys with a
    /// TTL): the worker then runs no periodic [`delete_expired`](ResultBackend::delete_expired),
    /// as Celery's `backend_cleanup` does nothing on such backends.
    fn expires_by_itself(&self) -> bool {
        false
    }

    /// Whether [`chord_part_return`](ResultBackend::chord_part_return) works here.
    fn joins_chords(&self) -> bool {
        false
    }

    /// Stores `records` (those of chord header tasks) and counts `parts`, in one
    /// transaction where the backend has them; returns the chords completed. The default:
    /// [`store`](ResultBackend::store), then
    /// [`chord_part_return`](ResultBackend::chord_part_return).
    fn store_and_join<'a>(
        &'a self,
        records: &'a [TaskRecord],
        parts: &'a [crate::canvas::ChordPart],
    ) -> BoxFuture<'a, Result<Vec<crate::canvas::ChordReady>>> {
        Box::pin(async move {
            if !records.is_empty() {
                self.store(records).await?;
            }
            self.chord_part_return(parts).await
        })
    }

    /// Records finished chord header tasks (Celery's `on_chord_part_return`) and returns
    /// the chords each of them completed: the caller, and only it, sends (or fails) their
    /// bodies. Reporting the same part twice (a message run again after a crash) counts it
    /// once. The default: this backend cannot join chords.
    fn chord_part_return<'a>(
        &'a self,
        parts: &'a [crate::canvas::ChordPart],
    ) -> BoxFuture<'a, Result<Vec<crate::canvas::ChordReady>>> {
        Box::pin(async move {
            Err(crate::Error::backend(format!(
                "this result backend ({self:?}) cannot join chords; {} chord part(s) not \
                 counted (use the Redis backend)",
                parts.len()
            )))
        })
    }

    /// Prepares the join of a chord whose header tasks have the ids `header`, before its header is sent
    /// (Celery's `set_chord_size` / `apply_chord`). The default: this backend cannot join.
    fn chord_started<'a>(
        &'a self,
        group_id: &'a str,
        header: &'a [String],
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            Err(crate::Error::Config(format!(
                "this result backend ({self:?}) cannot join chords (chord {group_id} of {}); \
                 use the Redis or a database backend",
                header.len()
            )))
        })
    }

    /// Forgets the join state of a chord whose body was sent (called after the send, so a
    /// crash in between sends the body again rather than never). The default does nothing.
    fn chord_fired<'a>(&'a self, group_id: &'a str) -> BoxFuture<'a, Result<()>> {
        let _ = group_id;
        Box::pin(async { Ok(()) })
    }

    /// Waits until `task_id` is ready (SUCCESS, FAILURE, REVOKED) or `timeout` passes, and
    /// returns its latest record. The default polls with backoff up to 200 ms.
    fn wait<'a>(
        &'a self,
        task_id: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Option<TaskRecord>>> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + timeout;
            let mut pause = Duration::from_millis(5);
            loop {
                let record = self.fetch(task_id).await?;
                let now = tokio::time::Instant::now();
                if record.as_ref().is_some_and(|r| r.status.is_ready()) || now >= deadline {
                    return Ok(record);
                }
                tokio::time::sleep(pause.min(deadline - now)).await;
                pause = (pause * 2).min(Duration::from_millis(200));
            }
        })
    }
}

/// Opens the result backend `kind` names (from
/// [`Settings::result_backend_kind`](crate::Settings::result_backend_kind)).
///
/// A database backend uses `db` when given (the pool of that database), else opens its URL; a
/// Redis backend keeps results for `expires` (`result_expires`; forever when `None`); `Memory`
/// keeps results in the process; `Disabled` stores nothing (`None`).
pub fn connect(
    kind: &ResultBackendKind,
    db: Option<&crate::db::Db>,
    expires: Option<Duration>,
) -> Result<Option<Arc<dyn ResultBackend>>> {
    match kind {
        ResultBackendKind::Disabled => Ok(None),
        ResultBackendKind::Memory => Ok(Some(Arc::new(memory::MemoryBackend::default()))),
        ResultBackendKind::Database { url } => {
            let db = match db {
                Some(db) => db.clone(),
                None => crate::db::Db::connect(url, 8)?,
            };
            Ok(Some(Arc::new(database::DatabaseBackend::new(db))))
        }
        #[cfg(feature = "redis")]
        ResultBackendKind::Redis { url } => {
            Ok(Some(Arc::new(redis::RedisBackend::new(url, expires)?)))
        }
        #[cfg(not(feature = "redis"))]
        ResultBackendKind::Redis { .. } => {
            let _ = expires;
            Err(crate::settings::feature_missing("result_backend", "redis"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_keeps_the_latest_record_per_task_but_never_replaces_success() {
        let started_at = Utc::now();
        let mut started = TaskRecord::new("a", State::Started);
        started.date_started = Some(started_at);
        let other = TaskRecord::new("b", State::Retry);
        let done = TaskRecord::new("a", State::Success);
        let late = TaskRecord::new("a", State::Failure);
        let latest = latest_per_task(&[started, other, done, late]);
        assert_eq!(latest.len(), 2);
        assert_eq!(latest[0].task_id, "a");
        assert_eq!(latest[0].status, State::Success);
        assert_eq!(latest[0].date_started, Some(started_at));
        assert_eq!(latest[1].status, State::Retry);
    }
}
