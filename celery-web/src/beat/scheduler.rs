//! The beat loop: sleep until the next slot, take its firing key, send, repeat; reload when
//! the change marker moves.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::definition::PeriodicTaskDefinition;
use super::periodic_task::{Finished, PeriodicTask, Source};
use super::store::{BadRow, BeatStore, Fired};
use crate::worker::{Phase, Shutdown};
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
}

/// What one beat did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BeatStats {
    /// Firings this beat sent.
    pub sent: u64,
    /// Firings another beat had already taken when this one tried.
    pub taken_elsewhere: u64,
}

/// A periodic task and its next slot.
#[derive(Debug)]
struct Entry {
    task: PeriodicTask,
    next: std::result::Result<DateTime<Utc>, Finished>,
}

impl Entry {
    fn new(task: PeriodicTask) -> Self {
        let next = task.next_slot();
        Entry { task, next }
    }
}

impl Beat {
    /// A beat for `app`'s database. It syncs the settings' `beat_schedule` and the tasks
    /// added in code into rows when it starts.
    pub fn new(app: &Celery) -> Result<Beat> {
        Ok(Beat {
            app: app.clone(),
            store: BeatStore::for_app(app)?,
            ident: format!(
                "{}:{}",
                gethostname::gethostname().to_string_lossy(),
                std::process::id()
            ),
            sync: true,
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
    pub async fn run(self, shutdown: Shutdown) -> Result<BeatStats> {
        if self.sync {
            self.sync_definitions().await?;
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
                tracing::error!(error = %e, "beat: cannot fire periodic tasks");
                pause(&shutdown, ERROR_PAUSE).await;
                continue;
            }
            let until_next = entries
                .values()
                .filter_map(|entry| entry.next.ok())
                .min()
                .map(|next| (next - Utc::now()).to_std().unwrap_or(Duration::ZERO));
            let check_in = CHANGE_CHECK_EVERY.saturating_sub(last_check.elapsed());
            let wait = until_next.map_or(check_in, |until| until.min(check_in));
            pause(&shutdown, wait).await;
        }
        tracing::info!(beat = %self.ident, sent = stats.sent, "beat: stopped");
        Ok(stats)
    }

    /// Sends every entry whose slot has come, earliest first.
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
                    .next
                    .ok()
                    .filter(|slot| *slot <= now)
                    .map(|s| (s, *id))
            })
            .collect();
        due.sort();
        for (slot, id) in due {
            let Some(entry) = entries.get(&id) else {
                continue;
            };
            let task = entry.task.clone();
            match self.fire(&task, slot).await? {
                Some(fired) => {
                    stats.sent += 1;
                    let entry = entries.get_mut(&id).expect("entry exists");
                    entry.task = fired;
                    entry.next = entry.task.next_slot();
                }
                None => {
                    stats.taken_elsewhere += 1;
                    let reloaded = self.blocking(move |s| s.load_one(id)).await?;
                    match reloaded {
                        Some(Ok(task)) => {
                            entries.insert(id, Entry::new(task));
                        }
                        Some(Err(bad)) => {
                            log_bad_row(&bad);
                            entries.remove(&id);
                        }
                        None => {
                            entries.remove(&id);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Fires `task` for `slot`; returns the task as it is after the firing, or `None` when
    /// another beat had taken the slot (or the row changed).
    async fn fire(&self, task: &PeriodicTask, slot: DateTime<Utc>) -> Result<Option<PeriodicTask>> {
        let now = Utc::now();
        let message = match self.app.message_for(&task.signature(now)) {
            Ok(message) => message,
            Err(e) => {
                // Bad options in the row: say so at every slot rather than skip silently.
                tracing::error!(
                    periodic_task = %task.name, error = %e,
                    "beat: cannot build the message of a periodic task; skipping this slot"
                );
                let mut skipped = task.clone();
                skipped.last_run_at = Some(slot);
                return Ok(Some(skipped));
            }
        };
        let enqueue_here = self.app.broker_in_db();
        let fired = {
            let (task, message, ident) = (task.clone(), message.clone(), self.ident.clone());
            self.blocking(move |store| store.fire(&task, slot, now, &message, &ident, enqueue_here))
                .await?
        };
        match fired {
            Fired::Taken => Ok(None),
            Fired::Claimed { enqueued } => {
                if !enqueued {
                    if let Err(e) = self
                        .app
                        .broker()
                        .publish(std::slice::from_ref(&message))
                        .await
                    {
                        tracing::error!(
                            periodic_task = %task.name, task_id = %message.id(), %slot, error = %e,
                            "beat: the firing was claimed but publishing failed; this firing is lost \
                             (its key stays in celery_beat_firing)"
                        );
                    }
                }
                let late_ms = (Utc::now() - slot).num_microseconds().unwrap_or(0) as f64 / 1000.0;
                tracing::info!(
                    periodic_task = %task.name, task = %task.task, task_id = %message.id(),
                    %slot, late_ms,
                    "beat: sending due task {} ({})", task.name, task.task
                );
                let mut after = task.clone();
                after.last_run_at = Some(task.bookkeeping_after(slot, now));
                after.total_run_count += 1;
                if after.one_off {
                    after.enabled = false;
                }
                Ok(Some(after))
            }
        }
    }

    /// Loads every periodic task; disables those whose `expires` passed; logs bad rows.
    async fn reload(&self) -> Result<BTreeMap<i64, Entry>> {
        let loaded = self.blocking(BeatStore::load).await?;
        let mut entries = BTreeMap::new();
        for row in loaded {
            match row {
                Ok(task) => {
                    let entry = Entry::new(task);
                    if entry.next == Err(Finished::Expired) {
                        let id = entry.task.id;
                        tracing::info!(periodic_task = %entry.task.name, "beat: expired; disabling");
                        self.blocking(move |s| s.expire(id)).await?;
                    }
                    entries.insert(entry.task.id, entry);
                }
                Err(bad) => log_bad_row(&bad),
            }
        }
        tracing::debug!(tasks = entries.len(), "beat: periodic tasks loaded");
        Ok(entries)
    }

    async fn blocking<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&BeatStore) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| crate::Error::Database(format!("beat's database task panicked: {e}")))?
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
