//! Revoking tasks: the `celery_revoked` table and what `revoke` writes.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use crate::backend::TaskRecord;
use crate::db::schema::celery_revoked;
use crate::db::{with_connection, Db};
use crate::task::State;
use crate::{Celery, Error, Result};

/// How long a revocation is kept when `result_expires` is unset.
const DEFAULT_KEEP: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The REVOKED result Celery stores for a revoked task (`TaskRevokedError`).
pub(crate) fn revoked_result(reason: &str) -> serde_json::Value {
    serde_json::json!({
        "exc_type": "TaskRevokedError",
        "exc_message": [reason],
        "exc_module": "celery.exceptions",
    })
}

/// Revokes `task_id`: workers will not run it.
///
/// - The id goes into `celery_revoked` (revoking twice is harmless); workers load it within
///   a heartbeat (2 s) and skip the task when they receive it, marking it REVOKED and
///   acknowledging its message, as for an expired task.
/// - Its result becomes REVOKED (Celery's `TaskRevokedError`), unless it is already ready
///   (SUCCESS, FAILURE, REVOKED): a finished result is never overwritten.
/// - Where the broker can find a task's messages ([`Transactional`](crate::broker::Transactional):
///   the database broker), its waiting and scheduled messages are deleted at once.
///
/// A task already running is **not** stopped. The revocation is kept for `result_expires`
/// (24 hours when unset): a task whose eta is later than that runs.
///
/// Needs a database (`app.db()`): without one this is an [`Error::Config`].
pub async fn revoke(app: &Celery, task_id: &str) -> Result<()> {
    let db = app.db().cloned().ok_or_else(|| {
        Error::Config(
            "revoking a task needs a database (set database_url, or use a sqlite:// or \
             postgres:// broker or result backend): workers read revocations from it"
                .to_owned(),
        )
    })?;
    if task_id.trim().is_empty() {
        return Err(Error::Config("revoke: the task id is empty".to_owned()));
    }
    let keep = app.settings().result_expiry().unwrap_or(DEFAULT_KEEP);
    let now = Utc::now();
    let expires = now + chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::days(1));
    let id = task_id.to_owned();
    db.run(move |db| record_revocation(db, &id, now.naive_utc(), expires.naive_utc()))
        .await?;
    // A broker that can find a task's messages (the database broker) drops them now.
    if let Some(broker) = app.broker().transactional() {
        broker.discard_waiting(task_id).await?;
    }
    if let Some(backend) = app.backend() {
        let current = backend.fetch(task_id).await?;
        if !current.as_ref().is_some_and(|r| r.status.is_ready()) {
            let mut record = current.unwrap_or_else(|| TaskRecord::new(task_id, State::Revoked));
            record.status = State::Revoked;
            record.result = Some(revoked_result("revoked"));
            record.traceback = None;
            record.date_done = None;
            backend.store(std::slice::from_ref(&record)).await?;
        }
    }
    tracing::info!(task_id, "revoked");
    Ok(())
}

fn record_revocation(
    db: &Db,
    task_id: &str,
    now: NaiveDateTime,
    expires: NaiveDateTime,
) -> Result<()> {
    use celery_revoked::dsl as v;
    with_connection!(db, |conn| {
        diesel::delete(v::celery_revoked.filter(v::expires_at.lt(now))).execute(conn)?;
        diesel::insert_into(v::celery_revoked)
            .values((
                v::task_id.eq(task_id),
                v::revoked_at.eq(now),
                v::expires_at.eq(expires),
            ))
            .on_conflict(v::task_id)
            .do_nothing()
            .execute(conn)?
    });
    Ok(())
}

/// Revocations recorded at or after `since` and not yet expired: `(task id, expires at)`.
pub(crate) fn revoked_since(db: &Db, since: DateTime<Utc>) -> Result<Vec<(String, DateTime<Utc>)>> {
    use celery_revoked::dsl as v;
    let now = Utc::now().naive_utc();
    let rows: Vec<(String, NaiveDateTime)> = with_connection!(db, |conn| v::celery_revoked
        .select((v::task_id, v::expires_at))
        .filter(v::revoked_at.ge(since.naive_utc()))
        .filter(v::expires_at.gt(now))
        .load(conn)?);
    Ok(rows
        .into_iter()
        .map(|(id, expires)| (id, expires.and_utc()))
        .collect())
}

/// Deletes expired revocations; returns how many.
pub(crate) fn prune_revoked(db: &Db) -> Result<usize> {
    use celery_revoked::dsl as v;
    let now = Utc::now().naive_utc();
    Ok(with_connection!(db, |conn| diesel::delete(
        v::celery_revoked.filter(v::expires_at.lt(now))
    )
    .execute(conn)?))
}
