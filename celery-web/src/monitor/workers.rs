//! Workers as their heartbeats in `celery_worker` describe them.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use crate::db::schema::celery_worker;
use crate::db::{with_connection, Db};
use crate::Result;

/// A worker is online when it has not stopped and its last heartbeat (sent every 2 s) is
/// at most this old.
pub const ONLINE_WITHIN: Duration = Duration::from_secs(10);

/// One worker, as of its last heartbeat.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerInfo {
    /// Node name (`celery@host`).
    pub hostname: String,
    /// Process id.
    pub pid: i64,
    /// Execution slots.
    pub concurrency: i64,
    /// Execution pool (`tokio`).
    pub pool: String,
    /// Queues it consumes.
    pub queues: Vec<String>,
    /// Tasks running at the last heartbeat.
    pub active: i64,
    /// Tasks run since it started.
    pub processed: i64,
    /// Of those, how many succeeded.
    pub succeeded: i64,
    /// Of those, how many failed.
    pub failed: i64,
    /// `celery-web <version>`.
    pub software: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Its last heartbeat.
    pub last_heartbeat: DateTime<Utc>,
    /// When it stopped cleanly; `None` while it runs, or if it died.
    pub stopped_at: Option<DateTime<Utc>>,
}

impl WorkerInfo {
    /// Whether it is running: not stopped, and heard from within [`ONLINE_WITHIN`] of `now`.
    pub fn is_online(&self, now: DateTime<Utc>) -> bool {
        self.stopped_at.is_none()
            && chrono::Duration::from_std(ONLINE_WITHIN)
                .is_ok_and(|within| now - self.last_heartbeat <= within)
    }
}

/// A `celery_worker` row, as the heartbeat writes it and the admin reads it.
#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = celery_worker)]
#[diesel(treat_none_as_null = true)]
pub(crate) struct Row {
    pub(crate) hostname: String,
    pub(crate) pid: i64,
    pub(crate) concurrency: i64,
    pub(crate) pool: String,
    /// JSON list.
    pub(crate) queues: String,
    pub(crate) active: i64,
    pub(crate) processed: i64,
    pub(crate) succeeded: i64,
    pub(crate) failed: i64,
    pub(crate) software: String,
    pub(crate) started_at: NaiveDateTime,
    pub(crate) last_heartbeat: NaiveDateTime,
    pub(crate) stopped_at: Option<NaiveDateTime>,
}

impl From<Row> for WorkerInfo {
    fn from(row: Row) -> Self {
        WorkerInfo {
            hostname: row.hostname,
            pid: row.pid,
            concurrency: row.concurrency,
            pool: row.pool,
            // Written by the worker as a JSON list; a row edited by hand shows no queues.
            queues: serde_json::from_str(&row.queues).unwrap_or_default(),
            active: row.active,
            processed: row.processed,
            succeeded: row.succeeded,
            failed: row.failed,
            software: row.software,
            started_at: row.started_at.and_utc(),
            last_heartbeat: row.last_heartbeat.and_utc(),
            stopped_at: row.stopped_at.map(|t| t.and_utc()),
        }
    }
}

/// Every worker that has sent a heartbeat (online, stopped or gone silent), by node name.
pub async fn workers(db: &Db) -> Result<Vec<WorkerInfo>> {
    db.run(|db| {
        use celery_worker::dsl as w;
        let rows: Vec<Row> = with_connection!(db, |conn| w::celery_worker
            .select(Row::as_select())
            .order(w::hostname)
            .load(conn)?);
        Ok(rows.into_iter().map(WorkerInfo::from).collect())
    })
    .await
}

/// Deletes the row of `hostname` if that worker is offline (stopped, or silent for longer
/// than [`ONLINE_WITHIN`]); returns whether a row was deleted. An online worker's row is
/// kept: its next heartbeat would write it again anyway.
pub async fn forget_worker(db: &Db, hostname: &str) -> Result<bool> {
    let hostname = hostname.to_owned();
    db.run(move |db| {
        use celery_worker::dsl as w;
        let silent_since = (Utc::now()
            - chrono::Duration::from_std(ONLINE_WITHIN).unwrap_or_default())
        .naive_utc();
        let deleted = with_connection!(db, |conn| diesel::delete(
            w::celery_worker.filter(w::hostname.eq(&hostname)).filter(
                w::stopped_at
                    .is_not_null()
                    .or(w::last_heartbeat.lt(silent_since))
            )
        )
        .execute(conn)?);
        Ok(deleted > 0)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn online_means_not_stopped_and_heard_from_lately() {
        let now = Utc::now();
        let mut worker = WorkerInfo {
            hostname: "w@h".into(),
            pid: 1,
            concurrency: 4,
            pool: "tokio".into(),
            queues: vec!["celery".into()],
            active: 0,
            processed: 0,
            succeeded: 0,
            failed: 0,
            software: "celery-web".into(),
            started_at: now,
            last_heartbeat: now - chrono::Duration::seconds(3),
            stopped_at: None,
        };
        assert!(worker.is_online(now));
        worker.last_heartbeat = now - chrono::Duration::seconds(11);
        assert!(!worker.is_online(now));
        worker.last_heartbeat = now;
        worker.stopped_at = Some(now);
        assert!(!worker.is_online(now));
    }
}
