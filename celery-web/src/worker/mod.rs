//! The worker: fetches messages, runs tasks, stores outcomes.
//!
//! [`Worker::run`] is wiring: it starts the worker's background [services](crate::service)
//! in order, runs the [consumer](consumer) until warm shutdown, then stops the services in
//! reverse order.
//!
//! - The consumer's prefetch is bounded: at most `concurrency × prefetch_multiplier` messages
//!   are held (running or waiting for a slot); the next fetch asks only for the free room.
//!   On a broker that does not delay ETA messages, early ones are held until due, outside
//!   that room.
//! - Async tasks run on tokio; sync tasks on the blocking pool.
//! - Outcomes go to the [batched completer](completer); an outcome can carry follow-up
//!   messages (a retry), published before the message is acked.
//! - The lease keeper (brokers with [leases](crate::broker::Broker::leases)) extends held
//!   messages' leases, so a long task is not redelivered; if the worker dies the leases run
//!   out and the messages come back.
//! - [`Shutdown`]: warm (finish running tasks, release the rest), then cold.
//! - With a database (`app.db()`), the heartbeat upserts the worker's `celery_worker` row
//!   every 2 s (counters, tasks running now; `stopped_at` at a clean stop; see
//!   [`monitor::workers`](crate::monitor::workers)) and loads new revocations: a revoked task
//!   ([`control::revoke`](crate::control::revoke)) is skipped when received, marked REVOKED
//!   and acked. A task already running is not stopped.
//! - Result expiry deletes results older than `result_expires` every hour; `-B` runs beat
//!   as a service too.
//!
//! ```no_run
//! # async fn demo(app: celery_web::Celery) -> celery_web::Result<()> {
//! use celery_web::worker::{Shutdown, Worker};
//! let shutdown = Shutdown::new();
//! shutdown.on_signals()?;
//! Worker::new(&app).queues(["emails", "celery"]).concurrency(8).run(shutdown).await?;
//! # Ok(()) }
//! ```

pub(crate) mod completer;
mod consumer;
mod embedded_beat;
mod executor;
mod heartbeat;
mod held;
mod lease_keeper;
pub(crate) mod outcome;
pub mod pool;
mod rate_limit;
mod requests;
mod result_expiry;
mod task_events;
mod tuning;

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::service::Services;
use crate::{Celery, Error, Result};
use completer::Completer;
use consumer::Consumer;
use embedded_beat::EmbeddedBeat;
use executor::Executor;
use heartbeat::Heartbeat;
use held::Held;
use lease_keeper::LeaseKeeper;
use result_expiry::ResultExpiry;

pub use crate::shutdown::{Phase, Shutdown};
pub(crate) use consumer::{current as current_queues, SharedQueues};
pub(crate) use heartbeat::{Counters, Revocations};
pub use pool::PoolKind;
pub use rate_limit::RateLimit;
pub(crate) use rate_limit::RateLimiter;
pub(crate) use requests::{Requests, Stage};
pub(crate) use tuning::Tuning;

/// A worker bound to an app. Configure it with the builder methods, then [`Worker::run`].
#[derive(Debug, Clone)]
pub struct Worker {
    app: Celery,
    queues: Vec<String>,
    concurrency: usize,
    prefetch_multiplier: usize,
    hostname: String,
    embedded_beat: bool,
    task_events: bool,
    mingle: bool,
    pool: PoolKind,
    max_tasks_per_child: Option<u64>,
    max_memory_per_child: Option<u64>,
}

/// What a worker did, returned when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Messages received.
    pub received: u64,
}

impl Worker {
    /// A worker with the app's settings: the queues of `task_queues` (else
    /// `task_default_queue`), `worker_concurrency`,
    /// `worker_prefetch_multiplier`, hostname `celery@<host>`.
    pub fn new(app: &Celery) -> Self {
        let settings = app.settings();
        Worker {
            app: app.clone(),
            queues: settings.default_worker_queues(),
            concurrency: settings.concurrency(),
            prefetch_multiplier: settings.worker_prefetch_multiplier.max(1),
            hostname: settings
                .worker_hostname
                .as_deref()
                .map(expand_hostname)
                .unwrap_or_else(|| expand_hostname("celery@%h")),
            embedded_beat: false,
            task_events: settings.worker_send_task_events,
            mingle: true,
            pool: PoolKind::default(),
            max_tasks_per_child: settings.worker_max_tasks_per_child.filter(|n| *n > 0),
            max_memory_per_child: settings.worker_max_memory_per_child.filter(|n| *n > 0),
        }
    }

    /// Sends task events (`-E`; default `worker_send_task_events`). Worker events
    /// (online, heartbeat, offline) are sent either way where the broker carries them.
    pub fn task_events(mut self, on: bool) -> Self {
        self.task_events = on;
        self
    }

    /// Asks the other workers for their revoked ids at start (mingle's `hello`); on by
    /// default, off with `--without-mingle`.
    pub fn mingle(mut self, on: bool) -> Self {
        self.mingle = on;
        self
    }

    /// Where task bodies run (`--pool`); see [`pool`].
    pub fn pool(mut self, kind: PoolKind) -> Self {
        self.pool = kind;
        self
    }

    /// Tasks a process-pool child runs before it is replaced (`--max-tasks-per-child`;
    /// `0`: no limit). Default: `worker_max_tasks_per_child`.
    pub fn max_tasks_per_child(mut self, tasks: u64) -> Self {
        self.max_tasks_per_child = Some(tasks).filter(|n| *n > 0);
        self
    }

    /// Peak resident memory, in KiB, past which a process-pool child is replaced after its
    /// task (`--max-memory-per-child`; `0`: no limit). Default: `worker_max_memory_per_child`.
    pub fn max_memory_per_child(mut self, kib: u64) -> Self {
        self.max_memory_per_child = Some(kib).filter(|n| *n > 0);
        self
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
        self.check()?;
        let app = &self.app;
        let broker = app.broker().clone();
        // A database broker without its tables can deliver nothing: say so once, and stop.
        if broker.transactional().is_some() {
            if let Err(error) = broker.queue_stats(&self.queues).await {
                if error.is_missing_table() {
                    return Err(error);
                }
            }
        }
        let pool = self.start_pool().await?;
        let (completer, completions) = Completer::new(broker.clone(), app.backend().cloned());
        let completer = completer.with_app(app.clone());
        let clock = Arc::new(crate::events::Clock::default());
        let events = broker.broadcast().map(|_| {
            Arc::new(crate::events::Dispatcher::new(
                broker.clone(),
                &self.hostname,
                clock.clone(),
                self.task_events,
            ))
        });
        let executor = Arc::new(Executor {
            app: app.clone(),
            hostname: self.hostname.clone(),
            slots: Arc::new(Semaphore::new(self.concurrency)),
            counters: Arc::default(),
            revocations: Arc::default(),
            rate_limiter: RateLimiter::default(),
            completions,
            acks_late_default: app.settings().task_acks_late,
            track_started: app.settings().task_track_started,
            rate_limits: app.settings().rate_limits_enabled(),
            default_rate_limit: app.settings().default_rate_limit()?,
            events: events.clone(),
            requests: Arc::default(),
            tuning: Arc::default(),
            pool,
            reject_on_worker_lost: app.settings().task_reject_on_worker_lost,
        });
        let queues: SharedQueues = Arc::new(std::sync::RwLock::new(self.queues.clone()));
        let process_pool = match &executor.pool {
            pool::Pool::Process(pool) => Some(pool.clone()),
            pool::Pool::InProcess => None,
        };
        self.warn_unsupported();
        let held = Arc::new(Held::default());
        let mut services = Services::new(&shutdown);
        let started = self
            .start_services(&mut services, completer, &executor, &held, &shutdown)
            .await;
        let started = match started {
            Ok(()) => {
                self.start_remote_services(&mut services, &executor, &queues, &clock, &shutdown)
                    .await
            }
            error => error,
        };
        if let Err(error) = started {
            drop(executor);
            let _ = services.stop().await;
            return Err(error);
        }
        tracing::info!(
            hostname = %self.hostname,
            queues = ?self.queues,
            concurrency = self.concurrency,
            pool = ?self.pool,
            tasks = app.registry().len(),
            "worker ready"
        );
        let consumer = Consumer {
            broker,
            executor,
            held,
            queues,
            hostname: self.hostname.clone(),
            capacity: self.concurrency * self.prefetch_multiplier,
        };
        // The consumer owns the last handle on the executor, so the completer's channel
        // closes once every execution has ended; the outcomes already sent are written
        // before the worker stops, unless a cold shutdown gives up on them (the database is
        // away): then their messages come back when their leases run out.
        let stats = consumer.run(&shutdown).await;
        if let Some(pool) = process_pool {
            pool.close().await;
        }
        services.stop().await?;
        tracing::info!(hostname = %self.hostname, "worker stopped");
        Ok(stats)
    }

    /// Starts the process pool's children (`--pool process`).
    async fn start_pool(&self) -> Result<pool::Pool> {
        match self.pool {
            PoolKind::Threads => {
                if self.max_tasks_per_child.is_some() || self.max_memory_per_child.is_some() {
                    tracing::warn!(
                        "max tasks/memory per child act on the process pool only \
                         (--pool process); ignored"
                    );
                }
                Ok(pool::Pool::InProcess)
            }
            PoolKind::Process => {
                // A child that starts a worker instead of serving would start children of its
                // own, and so on: refuse, so the parent reports a child that did not start.
                if pool::is_pool_child() {
                    return Err(Error::Config(
                        "this process is a pool child but started a worker: the site's \
                         `celery worker` command must reach celery_web::cli::run, which serves \
                         pool children"
                            .to_owned(),
                    ));
                }
                let mut options = pool::process::ProcessPoolOptions::this_binary(self.concurrency)?;
                options.max_tasks_per_child = self.max_tasks_per_child;
                options.max_memory_per_child = self.max_memory_per_child;
                let pool = pool::process::ProcessPool::start(options).await?;
                let pids: Vec<u32> = pool.children().iter().map(|c| c.pid).collect();
                tracing::info!(?pids, "process pool started");
                Ok(pool::Pool::Process(pool))
            }
        }
    }

    /// Starts the background services, in an order that [`Services::stop`] reverses: the
    /// heartbeat (which loads revocations before anything is fetched) outlives the completer,
    /// which outlives everything that publishes or holds messages.
    async fn start_services(
        &self,
        services: &mut Services,
        completer: Completer,
        executor: &Executor,
        held: &Arc<Held>,
        shutdown: &Shutdown,
    ) -> Result<()> {
        let app = &self.app;
        // Heartbeats and revocations need the database; without one the worker runs blind.
        if let Some(db) = app.db() {
            let pulse = heartbeat::Pulse {
                db: db.clone(),
                identity: heartbeat::Identity {
                    hostname: self.hostname.clone(),
                    concurrency: self.concurrency,
                    queues: self.queues.clone(),
                    started_at: chrono::Utc::now(),
                },
                counters: executor.counters.clone(),
                revocations: executor.revocations.clone(),
                slots: executor.slots.clone(),
            };
            services.start(Heartbeat::new(pulse)).await?;
        }
        services.start(completer).await?;
        if self.embedded_beat {
            let beat = crate::beat::Beat::new(app)?;
            let worker = shutdown.clone();
            services.start(EmbeddedBeat { beat, worker }).await?;
        }
        if app.broker().leases().is_some() {
            let (broker, held) = (app.broker().clone(), held.clone());
            services.start(LeaseKeeper { broker, held }).await?;
        }
        let expiry = app.backend().zip(app.settings().result_expiry());
        // A scan of a backend whose records carry their own expiry would only compete with
        // the tasks for the server (on Redis: every result key read, at every start).
        let expiry = expiry.filter(|(backend, _)| !backend.expires_by_itself());
        if let Some((backend, keep)) = expiry {
            if let Ok(keep) = chrono::Duration::from_std(keep) {
                let backend = backend.clone();
                services.start(ResultExpiry { backend, keep }).await?;
            }
        }
        Ok(())
    }

    /// Services on brokers that broadcast (Redis, RabbitMQ): events (the heart first, so
    /// `worker-offline` is the last event sent), the task-event flusher, and the remote
    /// control mailbox, after mingle's `hello` has gathered the peers' revocations.
    async fn start_remote_services(
        &self,
        services: &mut Services,
        executor: &Arc<Executor>,
        queues: &SharedQueues,
        clock: &Arc<crate::events::Clock>,
        shutdown: &Shutdown,
    ) -> Result<()> {
        let app = &self.app;
        let Some(events) = executor.events.clone() else {
            return Ok(());
        };
        let ring = Arc::new(tokio::sync::Notify::new());
        let panel = crate::control::panel::Panel {
            app: app.clone(),
            hostname: self.hostname.clone(),
            started: std::time::Instant::now(),
            concurrency: self.concurrency,
            prefetch_count: self.concurrency * self.prefetch_multiplier,
            clock: clock.clone(),
            queues: queues.clone(),
            requests: executor.requests.clone(),
            revocations: executor.revocations.clone(),
            tuning: executor.tuning.clone(),
            events: Some(events.clone()),
            process_pool: match &executor.pool {
                pool::Pool::Process(pool) => Some(pool.clone()),
                pool::Pool::InProcess => None,
            },
            ring: ring.clone(),
            shutdown: shutdown.clone(),
        };
        // Celery mingles on the transports shared between processes (Redis, RabbitMQ), not
        // on in-process ones: a memory broker has no peers to ask.
        let shared = ["redis", "rediss", "amqp", "amqps"].iter().any(|scheme| {
            app.settings()
                .broker_url
                .starts_with(&format!("{scheme}://"))
        });
        if self.mingle && shared {
            crate::control::mingle(app, &panel).await;
        }
        services
            .start(crate::events::Heart {
                dispatcher: events.clone(),
                counters: executor.counters.clone(),
                slots: executor.slots.clone(),
                concurrency: self.concurrency,
                ring,
            })
            .await?;
        services.start(crate::events::Flusher(events)).await?;
        let mailbox = crate::control::mailbox::Mailbox::new(app.broker().clone(), panel);
        services.start(mailbox).await?;
        Ok(())
    }

    /// Refuses to start without tasks or queues.
    fn check(&self) -> Result<()> {
        let mut user_tasks = self
            .app
            .registry()
            .names()
            .filter(|n| !n.starts_with("celery_web."));
        if user_tasks.next().is_none() {
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
        Ok(())
    }

    /// Warns about settings that have no effect yet.
    fn warn_unsupported(&self) {
        if self.task_events && self.app.broker().broadcast().is_none() {
            tracing::warn!(
                "task events (-E, worker_send_task_events) need a broker that broadcasts \
                 (Redis or RabbitMQ); this one does not: none are sent"
            );
        }
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
