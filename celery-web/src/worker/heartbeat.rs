//! Heartbeats: while it runs, a worker with a database upserts its `celery_worker` row
//! every 2 seconds (counters, tasks running now, last heartbeat) and loads new revocations;
//! at a clean stop it writes `stopped_at`. A failed beat is logged and tried again at the
//! next one: the database being away never stops the worker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use tokio::sync::{oneshot, Semaphore};

use crate::db::schema::celery_worker;
use crate::db::{with_connection, Db};
use crate::service::{Service, Stop};
use crate::task::BoxFuture;
use crate::Result;

/// How often a worker beats.
pub(crate) const EVERY: Duration = Duration::from_secs(2);

/// How far back each load of revocations looks before the previous load: covers
/// revocations whose transaction committed after a load began, and clock differences.
const REVOCATION_OVERLAP: Duration = Duration::from_secs(30);

/// What a worker counts, for its heartbeat: one relaxed atomic add per task.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Executions finished (whatever their outcome).
    pub(crate) processed: AtomicU64,
    /// Of those, SUCCESS.
    pub(crate) succeeded: AtomicU64,
    /// Of those, FAILURE.
    pub(crate) failed: AtomicU64,
}

impl Counters {
    pub(crate) fn finished(&self, succeeded: bool, failed: bool) {
        self.processed.fetch_add(1, Ordering::Relaxed);
        if succeeded {
            self.succeeded.fetch_add(1, Ordering::Relaxed);
        }
        if failed {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Revoked task ids this worker knows of, with when each revocation expires.
///
/// Checked for every received task: while no revocation is known (the usual case) the
/// check is one atomic load; otherwise an uncontended read lock.
#[derive(Debug, Default)]
pub(crate) struct Revocations {
    known: AtomicUsize,
    ids: RwLock<HashMap<String, DateTime<Utc>>>,
}

impl Revocations {
    /// Whether `task_id` is revoked.
    pub(crate) fn contains(&self, task_id: &str) -> bool {
        if self.known.load(Ordering::Acquire) == 0 {
            return false;
        }
        self.ids
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(task_id)
    }

    /// Adds revocations (remote control's `revoke`, mingle), keeping the later expiry of an
    /// id known already, and forgets expired ones.
    pub(crate) fn add(&self, revoked: Vec<(String, DateTime<Utc>)>) {
        let now = Utc::now();
        let mut ids = self.ids.write().unwrap_or_else(|p| p.into_inner());
        ids.retain(|_, expires| *expires > now);
        for (id, expires) in revoked {
            let slot = ids.entry(id).or_insert(expires);
            *slot = (*slot).max(expires);
        }
        self.known.store(ids.len(), Ordering::Release);
    }

    /// The revoked ids with when each expires, sorted by id.
    pub(crate) fn snapshot(&self) -> Vec<(String, DateTime<Utc>)> {
        let now = Utc::now();
        let ids = self.ids.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<_> = ids
            .iter()
            .filter(|(_, expires)| **expires > now)
            .map(|(id, expires)| (id.clone(), *expires))
            .collect();
        out.sort();
        out
    }

    /// Adds loaded revocations and forgets expired ones.
    pub(crate) fn merge(&self, loaded: Vec<(String, DateTime<Utc>)>, now: DateTime<Utc>) {
        let mut ids = self.ids.write().unwrap_or_else(|p| p.into_inner());
        ids.retain(|_, expires| *expires > now);
        ids.extend(loaded);
        self.known.store(ids.len(), Ordering::Release);
    }
}

/// What the heartbeat reports of one worker.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub(crate) hostname: String,
    pub(crate) concurrency: usize,
    pub(crate) queues: Vec<String>,
    pub(crate) started_at: DateTime<Utc>,
}

/// What one heartbeat writes.
type Beat = crate::monitor::workers::Row;

/// What a running worker shares with its heartbeat.
#[derive(Debug, Clone)]
pub(crate) struct Pulse {
    pub(crate) db: Db,
    pub(crate) identity: Identity,
    pub(crate) counters: Arc<Counters>,
    pub(crate) revocations: Arc<Revocations>,
    pub(crate) slots: Arc<Semaphore>,
}

impl Pulse {
    fn beat(&self, now: DateTime<Utc>, stopped: bool) -> Beat {
        let count = |n: &AtomicU64| i64::try_from(n.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
        let identity = &self.identity;
        let active = if stopped {
            0
        } else {
            identity
                .concurrency
                .saturating_sub(self.slots.available_permits())
        };
        Beat {
            hostname: identity.hostname.clone(),
            pid: i64::from(std::process::id()),
            concurrency: identity.concurrency as i64,
            pool: "tokio".to_owned(),
            queues: serde_json::to_string(&identity.queues).unwrap_or_else(|_| "[]".into()),
            active: active as i64,
            processed: count(&self.counters.processed),
            succeeded: count(&self.counters.succeeded),
            failed: count(&self.counters.failed),
            software: format!("celery-web {}", env!("CARGO_PKG_VERSION")),
            started_at: identity.started_at.naive_utc(),
            last_heartbeat: now.naive_utc(),
            stopped_at: stopped.then(|| now.naive_utc()),
        }
    }

    /// Upserts the worker's row.
    async fn write(&self, stopped: bool) -> Result<()> {
        let beat = self.beat(Utc::now(), stopped);
        self.db
            .run(move |db| {
                use celery_worker::dsl as w;
                with_connection!(db, |conn| diesel::insert_into(w::celery_worker)
                    .values(&beat)
                    .on_conflict(w::hostname)
                    .do_update()
                    .set(&beat)
                    .execute(conn)?);
                Ok(())
            })
            .await
    }

    /// Loads revocations made since `since`; returns when this load started.
    async fn load_revocations(&self, since: DateTime<Utc>, prune: bool) -> Result<DateTime<Utc>> {
        let started = Utc::now();
        let from = since - chrono::Duration::from_std(REVOCATION_OVERLAP).unwrap_or_default();
        let loaded = self
            .db
            .run(move |db| {
                if prune {
                    crate::control::prune_revoked(db)?;
                }
                crate::control::revoked_since(db, from)
            })
            .await?;
        self.revocations.merge(loaded, started);
        Ok(started)
    }

    /// Beats until `stop` fires (or is dropped); a beat under way is finished first, so it
    /// cannot land after the stop is recorded. The first revocations are loaded before the
    /// worker fetches (see [`Pulse::start`]), so this only keeps them current.
    /// `failing` says the first beat failed (and was reported) at start.
    pub(crate) async fn run(
        self,
        mut loaded_at: DateTime<Utc>,
        failing: bool,
        mut stop: oneshot::Receiver<()>,
    ) {
        let mut failures = u32::from(failing);
        let mut beats = 0u64;
        loop {
            tokio::select! {
                () = tokio::time::sleep(EVERY) => {}
                _ = &mut stop => return,
            }
            beats += 1;
            let written = self.write(false).await;
            // Expired revocations are deleted about once a minute.
            let loaded = self
                .load_revocations(loaded_at, beats.is_multiple_of(30))
                .await;
            match written.and(loaded) {
                Ok(at) => {
                    loaded_at = at;
                    if failures > 0 {
                        tracing::info!("heartbeat written again after {failures} failure(s)");
                    }
                    failures = 0;
                }
                Err(error) => {
                    failures += 1;
                    // Loud once, then quietly until it works again.
                    if failures == 1 {
                        tracing::warn!(%error, "could not write the heartbeat; retrying every {EVERY:?}");
                    } else {
                        tracing::debug!(%error, "heartbeat still failing");
                    }
                }
            }
        }
    }

    /// Writes the first heartbeat and loads every current revocation; returns when they
    /// were loaded, and whether that failed. A failure is logged once, saying what it costs
    /// (and, when celery-web's tables are missing, what to run): the worker starts anyway,
    /// and later beats retry quietly until one works.
    pub(crate) async fn start(&self) -> (DateTime<Utc>, bool) {
        let written = self.write(false).await;
        let loaded = self.load_revocations(DateTime::UNIX_EPOCH, true).await;
        match written.and(loaded) {
            Ok(at) => (at, false),
            Err(error) => {
                tracing::warn!(
                    %error,
                    "no heartbeats and no revocations for now: the admin shows this worker \
                     offline and revoked tasks still run; retrying every {EVERY:?}"
                );
                (DateTime::UNIX_EPOCH, true)
            }
        }
    }

    /// Writes the last heartbeat, with `stopped_at`, at a clean stop.
    pub(crate) async fn stop(&self) {
        match tokio::time::timeout(Duration::from_secs(5), self.write(true)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "could not record the worker's stop"),
            Err(_) => tracing::warn!("recording the worker's stop timed out"),
        }
    }
}

/// The heartbeat as a worker [`Service`]: the first beat and revocations before the worker
/// fetches, beats while it runs, `stopped_at` when it stops (the last service to stop).
#[derive(Debug)]
pub(crate) struct Heartbeat {
    pulse: Pulse,
    loaded_at: DateTime<Utc>,
    /// The first beat failed (and said so).
    failing: bool,
}

impl Heartbeat {
    pub(crate) fn new(pulse: Pulse) -> Self {
        Heartbeat {
            pulse,
            loaded_at: DateTime::UNIX_EPOCH,
            failing: false,
        }
    }
}

impl Service for Heartbeat {
    fn name(&self) -> &'static str {
        "heartbeat"
    }

    fn prepare(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            (self.loaded_at, self.failing) = self.pulse.start().await;
            Ok(())
        })
    }

    fn run(self: Box<Self>, mut stop: Stop) -> BoxFuture<'static, Result<()>> {
        Box::pin(async move {
            let (end, ended) = oneshot::channel();
            let beating = self.pulse.clone().run(self.loaded_at, self.failing, ended);
            tokio::pin!(beating);
            tokio::select! {
                () = &mut beating => {}
                () = stop.requested() => {
                    let _ = end.send(());
                    beating.await;
                }
            }
            self.pulse.stop().await;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocations_expire_and_an_empty_set_is_cheap() {
        let revocations = Revocations::default();
        assert!(!revocations.contains("a"));
        let now = Utc::now();
        let hour = chrono::Duration::hours(1);
        revocations.merge(
            vec![("a".into(), now + hour), ("b".into(), now + hour)],
            now,
        );
        assert!(revocations.contains("a") && revocations.contains("b"));
        assert!(!revocations.contains("c"));
        revocations.merge(vec![("c".into(), now + hour * 3)], now + hour * 2);
        assert!(!revocations.contains("a"), "expired");
        assert!(revocations.contains("c"));
        assert_eq!(revocations.known.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn counters_count_outcomes() {
        let counters = Counters::default();
        counters.finished(true, false);
        counters.finished(false, true);
        counters.finished(false, false);
        assert_eq!(counters.processed.load(Ordering::Relaxed), 3);
        assert_eq!(counters.succeeded.load(Ordering::Relaxed), 1);
        assert_eq!(counters.failed.load(Ordering::Relaxed), 1);
    }
}
