//! The worker: fetches messages, runs tasks, stores outcomes.
//!
//! - Prefetch is bounded: at most `concurrency × prefetch_multiplier` messages are held
//!   (running or waiting for a slot); the next fetch asks only for the free room.
//! - Async tasks run on tokio; sync tasks on the blocking pool.
//! - Outcomes go to the [batched completer](completer).
//! - Held messages' leases are extended while they are held, so a long task is not
//!   redelivered; if the worker dies the leases run out and the messages come back.
//! - [`Shutdown`]: warm (finish running tasks, release the rest), then cold.
//! - With a database (`app.db()`), a heartbeat upserts the worker's `celery_worker` row every
//!   2 s (counters, tasks running now; `stopped_at` at a clean stop; see
//!   [`monitor::workers`](crate::monitor::workers)) and loads new revocations: a revoked task
//!   ([`control::revoke`](crate::control::revoke)) is skipped when received, marked REVOKED
//!   and acked. A task already running is not stopped.
//!
//! ```no_run
//! # async fn demo(app: celery_web::Celery) -> celery_web::Result<()> {
//! use celery_web::worker::{Shutdown, Worker};
//! let shutdown = Shutdown::new();
//! shutdown.on_signals()?;
//! Worker::new(&app).queues(["emails", "celery"]).concurrency(8).run(shutdown).await?;
//! # Ok(()) }
//! ```

mod completer;
mod executor;
mod heartbeat;
pub(crate) mod outcome;
mod rate_limit;
mod shutdown;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio::task::JoinSet;

use crate::broker::{DeliveryTag, FetchRequest};
use crate::{Celery, Error, Result};
use executor::Executor;

pub use rate_limit::RateLimit;
pub(crate) use rate_limit::RateLimiter;
pub use shutdown::{Phase, Shutdown};

/// A worker bound to an app. Configure it with the builder methods, then [`Worker::run`].
#[derive(Debug, Clone)]
pub struct Worker {
    app: Celery,
    queues: Vec<String>,
    concurrency: usize,
    prefetch_multiplier: usize,
    hostname: String,
    embedded_beat: bool,
}

/// What a worker did, returned when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Messages received.
    pub received: u64,
}

impl Worker {
    /// A worker with the app's settings: `task_default_queue`, `worker_concurrency`,
    /// `worker_prefetch_multiplier`, hostname `celery@<host>`.
    pub fn new(app: &Celery) -> Self {
        let settings = app.settings();
        Worker {
            app: app.clone(),
            queues: vec![settings.task_default_queue.clone()],
            concurrency: settings.concurrency(),
            prefetch_multiplier: settings.worker_prefetch_multiplier.max(1),
            hostname: settings
                .worker_hostname
                .as_deref()
                .map(expand_hostname)
                .unwrap_or_else(|| expand_hostname("celery@%h")),
            embedded_beat: false,
        }
    }

    /// Runs beat inside the worker too (`-B`). Safe on every replica: firings are keyed in
    /// the database, so each is sent once however many beats run.
    pub fn beat(mut self, embedded: bool) -> Self {
        self.embedded_beat = embedded;
        self
    }

    /// Queues to consume (`-Q a,b`).
    pub fn queues<I, S>(mut self, queues: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.queues = queues.into_iter().map(Into::into).collect();
        self
    }

    /// Tasks run at once (`-c`).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Messages held per execution slot (`--prefetch-multiplier`).
    pub fn prefetch_multiplier(mut self, multiplier: usize) -> Self {
        self.prefetch_multiplier = multiplier.max(1);
        self
    }

    /// Node name (`-n`); `%h` is the host name, `%n` the part before the first dot, `%d`
    /// the domain.
    pub fn hostname(mut self, hostname: &str) -> Self {
        self.hostname = expand_hostname(hostname);
        self
    }

    /// The node name.
    pub fn name(&self) -> &str {
        &self.hostname
    }

    /// Runs until `shutdown` asks it to stop.
    ///
    /// A binary that links no task is an error: a worker without tasks can only fail every
    /// message it takes.
    pub async fn run(self, shutdown: Shutdown) -> Result<WorkerStats> {
        let user_tasks = self
            .app
            .registry()
            .names()
            .filter(|n| !n.starts_with("celery_web."));
        if user_tasks.count() == 0 {
            return Err(Error::Registry(
                "this binary links no tasks: mark functions with #[task] in a module the \
                 binary uses (a module never referenced from main is not linked)"
                    .to_owned(),
            ));
        }
        if self.queues.is_empty() {
            return Err(Error::Config(
                "the worker needs at least one queue (-Q)".into(),
            ));
        }
        let settings = self.app.settings();
        let broker = self.app.broker().clone();
        let (completions, receiver) = mpsc::unbounded_channel();
        let completer = tokio::spawn(completer::run(
            receiver,
            broker.clone(),
            self.app.backend().cloned(),
        ));
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let counters = Arc::new(heartbeat::Counters::default());
        let revocations = Arc::new(heartbeat::Revocations::default());
        let executor = Arc::new(Executor {
            app: self.app.clone(),
            hostname: self.hostname.clone(),
            slots: slots.clone(),
            counters: counters.clone(),
            revocations: revocations.clone(),
            rate_limiter: RateLimiter::default(),
            completions,
            acks_late_default: settings.task_acks_late,
            track_started: settings.task_track_started,
            default_rate_limit: settings.default_rate_limit()?,
        });
        if settings.worker_max_tasks_per_child.is_some_and(|n| n > 0) {
            tracing::warn!(
                "worker_max_tasks_per_child is not supported yet (it needs the process pool); \
                 ignored"
            );
        }
        if settings.worker_send_task_events {
            tracing::warn!("worker_send_task_events: task events are not sent yet; ignored");
        }
        tracing::info!(
            hostname = %self.hostname,
            queues = ?self.queues,
            concurrency = self.concurrency,
            tasks = self.app.registry().len(),
            "worker ready"
        );
        // Heartbeats and revocations need the database; without one the worker runs blind.
        let pulse = self.app.db().map(|db| heartbeat::Pulse {
            db: db.clone(),
            identity: heartbeat::Identity {
                hostname: self.hostname.clone(),
                concurrency: self.concurrency,
                queues: self.queues.clone(),
                started_at: chrono::Utc::now(),
            },
            counters,
            revocations,
            slots,
        });
        let heart = match &pulse {
            Some(pulse) => {
                let loaded_at = pulse.start().await;
                let (stop, stopped) = tokio::sync::oneshot::channel();
                Some((stop, tokio::spawn(pulse.clone().run(loaded_at, stopped))))
            }
            None => None,
        };
        let beat = if self.embedded_beat {
            let beat = crate::beat::Beat::new(&self.app)?;
            Some(tokio::spawn(beat.run(shutdown.clone())))
        } else {
            None
        };
        let held: Arc<Mutex<HashSet<DeliveryTag>>> = Arc::default();
        let freed = Arc::new(Notify::new());
        let capacity = self.concurrency * self.prefetch_multiplier;
        let leases = tokio::spawn(extend_leases(self.app.clone(), held.clone()));
        let expiry = tokio::spawn(expire_results(self.app.clone()));
        let mut phase = shutdown.subscribe();
        let (stop_fetching, stop) = watch::channel(false);
        let stopper = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                shutdown.reached(Phase::Warm).await;
                stop_fetching.send_replace(true);
            })
        };
        let mut running = JoinSet::new();
        let mut stats = WorkerStats::default();
        let mut fetch_errors = 0u32;
        while *phase.borrow() == Phase::Running {
            while let Some(joined) = running.try_join_next() {
                log_crash(joined);
            }
            let room = capacity.saturating_sub(lock(&held).len());
            if room == 0 {
                tokio::select! {
                    () = freed.notified() => {}
                    () = shutdown::reached(&mut phase, Phase::Warm) => {}
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
                continue;
            }
            let request = FetchRequest {
                queues: self.queues.clone(),
                limit: room,
                wait: Duration::from_secs(1),
                consumer: self.hostname.clone(),
                stop: Some(stop.clone()),
            };
            // Not raced against shutdown (a fetch dropped mid-claim would leave the rows it
            // claimed leased to nobody): the stop signal ends its wait instead.
            let fetched = broker.fetch(&request).await;
            if *phase.borrow() != Phase::Running {
                if let Ok(deliveries) = &fetched {
                    let tags: Vec<DeliveryTag> = deliveries.iter().map(|d| d.tag.clone()).collect();
                    if let Err(error) = broker.release(&tags).await {
                        tracing::warn!(%error, "could not release messages fetched at shutdown");
                    }
                }
                break;
            }
            let deliveries = match fetched {
                Ok(deliveries) => {
                    fetch_errors = 0;
                    deliveries
                }
                Err(error) => {
                    fetch_errors += 1;
                    let pause = Duration::from_millis(100 * 2u64.pow(fetch_errors.min(6)));
                    tracing::error!(%error, "fetch failed; retrying in {pause:?}");
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = shutdown::reached(&mut phase, Phase::Warm) => {}
                    }
                    continue;
                }
            };
            for delivery in deliveries {
                stats.received += 1;
                let tag = delivery.tag.clone();
                let Some(received) = executor.receive(delivery) else {
                    continue;
                };
                let slot = match executor.rate_limit(&received.task) {
                    None => Some(executor.queue_for_slot().await),
                    Some(_) => None,
                };
                lock(&held).insert(tag.clone());
                let (executor, held, freed) = (executor.clone(), held.clone(), freed.clone());
                let phase = shutdown.subscribe();
                running.spawn(async move {
                    // Frees the room even if the execution panics.
                    let _held = Held { held, tag, freed };
                    executor.run(received, slot, phase).await;
                });
            }
        }
        tracing::info!(
            running = running.len(),
            "worker stopping: no more fetches; waiting for running tasks"
        );
        while let Some(joined) = running.join_next().await {
            log_crash(joined);
        }
        leases.abort();
        expiry.abort();
        if let Some((stop, heart)) = heart {
            let _ = stop.send(());
            let _ = heart.await;
        }
        stopper.abort();
        if let Some(beat) = beat {
            match beat.await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => tracing::error!(%error, "beat stopped with an error"),
                Err(error) => tracing::error!(%error, "beat crashed"),
            }
        }
        drop(executor);
        // The last outcomes are written before the worker stops, unless it is told to stop
        // now and they cannot be written quickly (the database is away): then their messages
        // come back when their leases run out.
        let mut completer = completer;
        let finished = tokio::select! {
            finished = &mut completer => Some(finished),
            () = async {
                shutdown.reached(Phase::Cold).await;
                tokio::time::sleep(COLD_GRACE).await;
            } => None,
        };
        match finished {
            Some(finished) => {
                finished.map_err(|e| Error::Broker(format!("the completer crashed: {e}")))?
            }
            None => {
                completer.abort();
                tracing::warn!("cold shutdown: outcomes not yet written are dropped");
            }
        }
        if let Some(pulse) = &pulse {
            pulse.stop().await;
        }
        tracing::info!(hostname = %self.hostname, "worker stopped");
        Ok(stats)
    }
}

/// How long a cold shutdown still waits for the last outcomes to be written.
const COLD_GRACE: Duration = Duration::from_secs(2);

/// A held message: removed from the held set, and its room announced, when dropped.
struct Held {
    held: Arc<Mutex<HashSet<DeliveryTag>>>,
    tag: DeliveryTag,
    freed: Arc<Notify>,
}

impl Drop for Held {
    fn drop(&mut self) {
        lock(&self.held).remove(&self.tag);
        self.freed.notify_one();
    }
}

/// An execution that ended by panicking outside the task body (the body's own panics are
/// FAILUREs): a bug in celery-web, logged loudly. Its message's lease runs out and it is
/// delivered again.
fn log_crash(joined: Result<(), tokio::task::JoinError>) {
    if let Err(error) = joined {
        tracing::error!(%error, "a task execution crashed; its message will be delivered again");
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Keeps the leases of held messages from running out while they are held.
async fn extend_leases(app: Celery, held: Arc<Mutex<HashSet<DeliveryTag>>>) {
    let lease = app.broker().visibility_timeout();
    let every = (lease / 3).max(Duration::from_millis(300));
    loop {
        tokio::time::sleep(every).await;
        let tags: Vec<DeliveryTag> = lock(&held).iter().cloned().collect();
        if !tags.is_empty() {
            if let Err(error) = app.broker().extend(&tags, lease).await {
                tracing::warn!(%error, "could not extend leases");
            }
        }
    }
}

/// Deletes results older than `result_expires`, at start and then every hour.
async fn expire_results(app: Celery) {
    let (Some(backend), Some(expires)) = (app.backend(), app.settings().result_expiry()) else {
        return;
    };
    let Some(age) = chrono::Duration::from_std(expires).ok() else {
        return;
    };
    loop {
        let Some(before) = chrono::Utc::now().checked_sub_signed(age) else {
            return;
        };
        match backend.delete_expired(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!("deleted {n} expired results"),
            Err(error) => tracing::warn!(%error, "could not delete expired results"),
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}

/// Expands `%h` (host name), `%n` (its first label) and `%d` (its domain), as Celery does.
///
/// ```
/// let name = celery_web::worker::expand_hostname("w1@%h");
/// assert!(name.starts_with("w1@") && !name.contains('%'));
/// ```
pub fn expand_hostname(template: &str) -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let (short, domain) = host.split_once('.').unwrap_or((host.as_str(), ""));
    template
        .replace("%h", &host)
        .replace("%n", short)
        .replace("%d", domain)
}

/// Replaces the default panic output (a stderr dump, with a backtrace when `RUST_BACKTRACE`
/// is set) by one `tracing` line. A task's panic is already recorded as its FAILURE; this
/// keeps the worker's log readable. `site celery worker` calls it.
pub fn log_panics_with_tracing() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = outcome::panic_message(info.payload());
        tracing::debug!(%location, "panic: {message}");
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::Registry;
    use crate::Settings;

    #[tokio::test]
    async fn a_worker_without_tasks_refuses_to_start() {
        let settings = Settings {
            broker_url: "memory://".to_owned(),
            result_backend: "memory://".to_owned(),
            ..Settings::default()
        };
        let app = Celery::with_registry(settings, Registry::default()).unwrap();
        let error = Worker::new(&app).run(Shutdown::new()).await.unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("links no tasks") && message.contains("#[task]"),
            "{message}"
        );
    }
}
