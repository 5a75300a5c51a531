//! The beat loop: sleep until the next slot, take its firing key, send, repeat; reload when
//! the change marker moves.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::definition::PeriodicTaskDefinition;
use super::periodic_task::{Finished, PeriodicTask, Source};
use super::store::{BadRow, BeatStore, Fired};
use crate::shutdown::{Phase, Shutdown};
use crate::{Celery, Result};

/// How often beat reads the change marker: edits are picked up within this.
const CHANGE_CHECK_EVERY: Duration = Duration::from_millis(500);
/// A full reload even when the marker did not move (another beat's bookkeeping, SQL edits of
/// `last_run_at` without a touch).
const RELOAD_EVERY: Duration = Duration::from_secs(60);
/// How long firing keys are kept.
const FIRINGS_KEPT: chrono::TimeDelta = chrono::TimeDelta::hours(24);
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Pause after a database error before trying again.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

/// A beat process (or the beat inside `worker -B`): fires periodic tasks on their schedules.
/// Any number may run against one database; each firing is sent once.
///
/// See the [module documentation](super) for how.
#[derive(Debug)]
pub struct Beat {
    app: Celery,
    store: BeatStore,
    ident: String,
    sync: bool,
    only: Option<String>,
    measure: bool,
}

/// What one beat did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BeatStats {
    /// Firings this beat sent.
    pub sent: u64,
    /// Firings another beat had already taken when this one tried.
    pub taken_elsewhere: u64,
    /// With [`Beat::measure_lateness`]: for each firing this beat sent, milliseconds from its
    /// slot to the moment its message was in the broker.
    pub lateness_ms: Vec<f64>,
}

/// What one attempt to fire did.
enum Firing {
    /// Sent; the task as it is after the firing.
    Sent(Box<PeriodicTask>),
    /// Another beat had taken the slot, or the row changed.
    Taken,
    /// Its message cannot be built (bad options in the row).
    Unsendable,
}

/// A periodic task and its next slot.
#[derive(Debug)]
struct Entry {
    task: PeriodicTask,
    next: std::result::Result<DateTime<Utc>, Finished>,
    /// After a failed attempt, not tried again before this (no busy loop on one bad row).
    held_until: Option<Instant>,
}

impl Entry {
    fn new(task: PeriodicTask) -> Self {
        let next = task.next_slot();
        Entry {
            task,
            next,
            held_until: None,
        }
    }

    /// Its slot, unless it is held after a failure.
    fn ready_slot(&self) -> Option<DateTime<Utc>> {
        match self.held_until {
            Some(until) if Instant::now() < until => None,
            _ => self.next.ok(),
        }
    }
}

impl Beat {
    /// A beat for `app`'s database. It syncs the settings' `beat_schedule` and the tasks
    /// added in code into rows when it starts.
    pub fn new(app: &Celery) -> Result<Beat> {
        let store = BeatStore::for_app(app)?;
        if store.db().kind() == crate::db::DbKind::Sqlite && app.broker_in_db().is_none() {
            tracing::warn!(
                "beat keeps its schedule in a local SQLite file while the broker is elsewhere: \
                 beats on other hosts would each fire every task. Run beat on one host, or set \
                 database_url to a shared PostgreSQL database"
            );
        }
        Ok(Beat {
            app: app.clone(),
            store,
            ident: format!(
                "{}:{}",
                gethostname::gethostname().to_string_lossy(),
                std::process::id()
            ),
            sync: true,
            only: None,
            measure: false,
        })
    }

    /// Names this beat in the firing rows (default `host:pid`).
    pub fn ident(mut self, ident: impl Into<String>) -> Self {
        self.ident = ident.into();
        self
    }

    /// Don't sync settings and code definitions at start (the rows are managed elsewhere).
    pub fn without_sync(mut self) -> Self {
        self.sync = false;
        self
    }

    /// Fires only the periodic task named `name` (benchmarks, tests).
    pub fn only(mut self, name: impl Into<String>) -> Self {
        self.only = Some(name.into());
        self
    }

    /// Records the lateness of every firing in [`BeatStats::lateness_ms`] (benchmarks).
    pub fn measure_lateness(mut self) -> Self {
        self.measure = true;
        self
    }

    /// The store beat reads and writes.
    pub fn store(&self) -> &BeatStore {
        &self.store
    }

    /// Writes the settings' `beat_schedule` and the tasks added in code into rows (see
    /// [`BeatStore::sync`]). A bad entry fails with the entry's name and key.
    pub async fn sync_definitions(&self) -> Result<()> {
        let from_settings = PeriodicTaskDefinition::all_from_settings(self.app.settings())?;
        let from_code = self.app.periodic_tasks();
        for (definitions, source) in [(from_settings, Source::Settings), (from_code, Source::Code)]
        {
            let report = self
                .blocking(move |store| store.sync(&definitions, source))
                .await?;
            if report != Default::default() {
                tracing::info!(
                    source = source.as_str(),
                    created = report.created,
                    updated = report.updated,
                    deleted = report.deleted,
                    "beat: periodic tasks synced"
                );
            }
        }
        Ok(())
    }

    /// Runs until `shutdown` reaches [`Phase::Warm`].
    ///
    /// Database errors never stop it: it logs them and tries again a second later (the
    /// definitions sync at start included).
    pub async fn run(self, shutdown: Shutdown) -> Result<BeatStats> {
        while self.sync && shutdown.phase() < Phase::Warm {
            match self.sync_definitions().await {
                Ok(()) => break,
                Err(e @ crate::Error::Config(_)) => return Err(e),
                Err(e) => {
                    tracing::error!(error = %e, "beat: cannot sync periodic task definitions");
                    pause(&shutdown, ERROR_PAUSE).await;
                }
            }
        }
        tracing::info!(beat = %self.ident, "beat: starting");
        let mut stats = BeatStats::default();
        let mut entries = BTreeMap::new();
        let mut version = None;
        let mut last_reload = Instant::now();
        let mut last_check = Instant::now();
        let mut last_prune: Option<Instant> = None;
        loop {
            if shutdown.phase() >= Phase::Warm {
                break;
            }
            // Reload when the marker moved (or on the first pass, or every RELOAD_EVERY).
            if version.is_none() || last_check.elapsed() >= CHANGE_CHECK_EVERY {
                last_check = Instant::now();
                match self.blocking(BeatStore::version).await {
                    Ok(current)
                        if Some(current) != version || last_reload.elapsed() >= RELOAD_EVERY =>
                    {
                        match self.reload().await {
                            Ok(loaded) => {
                                entries = loaded;
                                version = Some(current);
                                last_reload = Instant::now();
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "beat: cannot load periodic tasks");
                                pause(&shutdown, ERROR_PAUSE).await;
                                continue;
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "beat: cannot read the change marker");
                        pause(&shutdown, ERROR_PAUSE).await;
                        continue;
                    }
                }
            }
            if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
                last_prune = Some(Instant::now());
                let before = Utc::now() - FIRINGS_KEPT;
                if let Err(e) = self.blocking(move |s| s.prune_firings(before)).await {
                    tracing::warn!(error = %e, "beat: cannot prune old firing keys");
                }
            }
            if let Err(e) = self.fire_due(&mut entries, &mut stats).await {
                tracing::error!(error = %e, "beat: every firing failed; pausing");
                pause(&shutdown, ERROR_PAUSE).await;
                continue;
            }
            let until_next = entries
                .values()
                .filter_map(Entry::ready_slot)
                .min()
                .map(|next| (next - Utc::now()).to_std().unwrap_or(Duration::ZERO));
            let check_in = CHANGE_CHECK_EVERY.saturating_sub(last_check.elapsed());
            let wait = until_next.map_or(check_in, |until| until.min(check_in));
            pause(&shutdown, wait).await;
        }
        tracing::info!(beat = %self.ident, sent = stats.sent, "beat: stopped");
        Ok(stats)
    }

    /// Sends every entry whose slot has come, earliest first. An error on one entry is
    /// logged and that entry re-read; the others still fire. Returns an error only if every
    /// attempt failed (the database is away), so the caller pauses.
    async fn fire_due(
        &self,
        entries: &mut BTreeMap<i64, Entry>,
        stats: &mut BeatStats,
    ) -> Result<()> {
        let now = Utc::now();
        let mut due: Vec<(DateTime<Utc>, i64)> = entries
            .iter()
            .filter_map(|(id, entry)| {
                entry
                    .ready_slot()
                    .filter(|slot| *slot <= now)
                    .map(|slot| (slot, *id))
            })
            .collect();
        due.sort();
        let mut last_error = None;
        let attempts = due.len();
        let mut failures = 0;
        for (slot, id) in due {
            let Some(entry) = entries.get(&id) else {
                continue;
            };
            let task = entry.task.clone();
            match self.fire(&task, slot, stats).await {
                Ok(Firing::Sent(after)) => {
                    stats.sent += 1;
                    let entry = self.settle(*after).await;
                    entries.insert(id, entry);
                }
                Ok(Firing::Unsendable) => {
                    // Logged; left out until the row changes or the next full reload.
                    entries.remove(&id);
                }
                Ok(Firing::Taken) => {
                    stats.taken_elsewhere += 1;
                    self.refresh(entries, id).await;
                }
                Err(e) => {
                    tracing::error!(
                        periodic_task = %task.definition.name, %slot, error = %e,
                        "beat: cannot fire a periodic task; will retry"
                    );
                    failures += 1;
                    last_error = Some(e);
                    // Deleted meanwhile (its firing key's foreign key fails), or changed.
                    self.refresh(entries, id).await;
                    if let Some(entry) = entries.get_mut(&id) {
                        entry.held_until = Some(Instant::now() + ERROR_PAUSE);
                    }
                }
            }
        }
        match last_error {
            Some(e) if failures == attempts => Err(e),
            _ => Ok(()),
        }
    }

    /// Re-reads one periodic task after another beat or an edit changed it.
    async fn refresh(&self, entries: &mut BTreeMap<i64, Entry>, id: i64) {
        match self.blocking(move |s| s.load_one(id)).await {
            Ok(Some(Ok(task))) => {
                let entry = self.settle(task).await;
                entries.insert(id, entry);
            }
            Ok(Some(Err(bad))) => {
                log_bad_row(&bad);
                entries.remove(&id);
            }
            Ok(None) => {
                entries.remove(&id);
            }
            // Keep the entry as it is: the next attempt or reload sorts it out.
            Err(e) => tracing::warn!(error = %e, "beat: cannot re-read a periodic task"),
        }
    }

    /// Fires `task` for `slot`.
    async fn fire(
        &self,
        task: &PeriodicTask,
        slot: DateTime<Utc>,
        stats: &mut BeatStats,
    ) -> Result<Firing> {
        let now = Utc::now();
        let message = match self.app.message_for(&task.signature(now)) {
            Ok(message) => message,
            Err(e) => {
                tracing::error!(
                    periodic_task = %task.definition.name, error = %e,
                    "beat: cannot build the message of a periodic task; it does not fire \
                     until its row is fixed"
                );
                return Ok(Firing::Unsendable);
            }
        };
        let enqueue_here = self.app.broker_in_db().is_some();
        let fired = {
            let (task, message, ident) = (task.clone(), message.clone(), self.ident.clone());
            self.blocking(move |store| store.fire(&task, slot, now, &message, &ident, enqueue_here))
                .await?
        };
        let Fired::Claimed { enqueued } = fired else {
            return Ok(Firing::Taken);
        };
        if !enqueued {
            if let Err(e) = self
                .app
                .broker()
                .publish(std::slice::from_ref(&message))
                .await
            {
                tracing::error!(
                    periodic_task = %task.definition.name, task_id = %message.id(), %slot, error = %e,
                    "beat: the firing was claimed but publishing failed; this firing is lost \
                     (its key stays in celery_beat_firing)"
                );
            }
        }
        let late_ms = (Utc::now() - slot).num_microseconds().unwrap_or(0) as f64 / 1000.0;
        if self.measure {
            stats.lateness_ms.push(late_ms);
        }
        tracing::info!(
            periodic_task = %task.definition.name, task = %task.definition.task, task_id = %message.id(),
            %slot, late_ms,
            "beat: sending due task {} ({})", task.definition.name, task.definition.task
        );
        let mut after = task.clone();
        after.last_run_at = Some(task.bookkeeping_after(slot, now));
        after.total_run_count += 1;
        after.enabled = !task.definition.one_off;
        Ok(Firing::Sent(Box::new(after)))
    }

    /// Loads every periodic task; disables those whose `expires` passed; logs bad rows.
    async fn reload(&self) -> Result<BTreeMap<i64, Entry>> {
        let loaded = self.blocking(BeatStore::load).await?;
        let mut entries = BTreeMap::new();
        for row in loaded {
            match row {
                Ok(task)
                    if self
                        .only
                        .as_ref()
                        .is_some_and(|only| *only != task.definition.name) => {}
                Ok(task) => {
                    let entry = self.settle(task).await;
                    entries.insert(entry.task.id, entry);
                }
                Err(bad) if self.only.as_ref().is_some_and(|only| *only != bad.name) => {}
                Err(bad) => log_bad_row(&bad),
            }
        }
        tracing::debug!(tasks = entries.len(), "beat: periodic tasks loaded");
        Ok(entries)
    }

    /// The entry of `task`; a task whose `expires` has passed is disabled in its row too (if
    /// that write fails, the next reload tries again).
    async fn settle(&self, task: PeriodicTask) -> Entry {
        let entry = Entry::new(task);
        if entry.next == Err(Finished::Expired) {
            let id = entry.task.id;
            tracing::info!(periodic_task = %entry.task.definition.name, "beat: expired; disabling");
            if let Err(e) = self.blocking(move |s| s.expire(id)).await {
                tracing::warn!(error = %e, "beat: cannot disable an expired periodic task");
            }
        }
        entry
    }

    async fn blocking<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&BeatStore) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| crate::Error::Database(e.into()))?
    }
}

fn log_bad_row(bad: &BadRow) {
    tracing::error!(
        periodic_task = %bad.name, id = bad.id, reason = %bad.reason,
        "beat: periodic task cannot be scheduled; fix or delete the row"
    );
}

/// Sleeps `wait`, or less if a shutdown starts.
async fn pause(shutdown: &Shutdown, wait: Duration) {
    tokio::select! {
        () = tokio::time::sleep(wait) => {}
        () = shutdown.reached(Phase::Warm) => {}
    }
}
