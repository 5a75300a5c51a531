//! The `Celery` handle: settings, task registry, broker, result backend.

use std::sync::{Arc, RwLock};

use chrono::Utc;
use serde_json::{Map, Value};

use crate::backend::ResultBackend;
use crate::broker::Broker;
use crate::db::{Db, DbKind};
use crate::protocol::Message;
use crate::task::{AsyncResult, Registry, Signature, TaskOptions};
use crate::{Error, Result, Settings};

/// The app: what tasks exist, where messages go and where results are kept.
/// Cheap to clone; clones share everything.
///
/// Build it once at startup and [`install`](Celery::install) it, so `my_task::delay(...)`
/// can find it, as Celery's `current_app`.
#[derive(Clone)]
pub struct Celery {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    registry: Registry,
    broker: Arc<dyn Broker>,
    backend: Option<Arc<dyn ResultBackend>>,
    db: Option<Db>,
    /// Every database the app uses (celery-web's tables, the broker's, the results').
    databases: Vec<Db>,
    /// The broker's messages are in `db` itself (same URL), so beat can enqueue in the same
    /// transaction as its firing key ([`Celery::broker_in_db`]).
    broker_in_db: bool,
    /// Periodic tasks added in code ([`Celery::add_periodic_task`]).
    periodic_tasks: RwLock<Vec<crate::beat::PeriodicTaskDefinition>>,
}

impl std::fmt::Debug for Celery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Celery")
            .field("broker", &self.inner.broker)
            .field("backend", &self.inner.backend)
            .field("tasks", &self.inner.registry.len())
            .finish()
    }
}

static CURRENT: RwLock<Option<Celery>> = RwLock::new(None);

impl Celery {
    /// Builds the app from settings: opens the database (if any), the broker and the result
    /// backend, and collects every `#[task]` linked into the binary. Tables are not created
    /// here: call [`Celery::migrate`] (or run `site migrate`).
    pub fn from_settings(settings: Settings) -> Result<Self> {
        Self::with_registry(settings, Registry::from_inventory()?)
    }

    /// Reads the `[celery]` table of the site's config file (with `CELERY_*` overrides from
    /// the environment) and builds the app.
    pub fn from_config_file(path: impl AsRef<std::path::Path>) -> Result<Self> {
        Self::from_settings(Settings::from_file(path)?)
    }

    /// Builds the app with an explicit task registry.
    pub fn with_registry(settings: Settings, registry: Registry) -> Result<Self> {
        Self::build(settings, registry, None)
    }

    /// Builds the app around a broker of the caller's (an out-of-tree driver, a test
    /// double) instead of the one `broker_url` names; the rest comes from `settings` as in
    /// [`Celery::from_settings`]. Such a broker never shares a transaction with celery-web's
    /// tables (beat publishes after claiming a firing).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use celery_web::broker::memory::MemoryBroker;
    /// use celery_web::task::Registry;
    /// use celery_web::{Celery, Settings};
    ///
    /// let broker = Arc::new(MemoryBroker::new(Duration::from_secs(30)).delivering_eta_early());
    /// let settings = Settings { result_backend: "memory://".into(), ..Settings::default() };
    /// let app = Celery::with_broker(settings, Registry::default(), broker)?;
    /// assert!(!app.broker().delays_eta());
    /// # Ok::<(), celery_web::Error>(())
    /// ```
    pub fn with_broker(
        settings: Settings,
        registry: Registry,
        broker: Arc<dyn Broker>,
    ) -> Result<Self> {
        Self::build(settings, registry, Some(broker))
    }

    fn build(
        settings: Settings,
        registry: Registry,
        injected: Option<Arc<dyn Broker>>,
    ) -> Result<Self> {
        settings.validate()?;
        // Bad schedules fail at startup, naming the entry (not when beat first reads them).
        crate::beat::PeriodicTaskDefinition::all_from_settings(&settings)?;
        let pool_size = u32::try_from(settings.broker_pool_limit.max(4)).unwrap_or(10);
        // One pool per database, however many settings name it.
        let mut databases: Vec<(String, Db)> = Vec::new();
        let mut open = |url: &str| -> Result<Option<Db>> {
            if DbKind::of(url).is_none() {
                return Ok(None);
            }
            if let Some((_, db)) = databases.iter().find(|(open, _)| same_database(open, url)) {
                return Ok(Some(db.clone()));
            }
            let db = Db::connect(url, pool_size)?;
            databases.push((url.to_owned(), db.clone()));
            Ok(Some(db))
        };
        let db = open(&settings.database_url())?;
        let broker_db = match injected {
            Some(_) => None,
            None => open(&settings.broker_url)?,
        };
        let backend_db = match open(&settings.result_backend)? {
            Some(own) => Some(own),
            None => db.clone(),
        };
        let broker = match injected {
            Some(broker) => broker,
            None => crate::broker::connect(&settings, broker_db.as_ref())?,
        };
        let backend = crate::backend::connect(
            &settings.result_backend_kind()?,
            backend_db.as_ref(),
            settings.result_expiry(),
        )?;
        let broker_in_db = broker_db.is_some()
            && db.is_some()
            && same_database(&settings.broker_url, &settings.database_url());
        Ok(Celery {
            inner: Arc::new(Inner {
                settings,
                registry,
                broker,
                backend,
                db,
                databases: databases.into_iter().map(|(_, db)| db).collect(),
                broker_in_db,
                periodic_tasks: RwLock::default(),
            }),
        })
    }

    /// Makes this app the one `delay` and `apply_async` use.
    pub fn install(&self) {
        *CURRENT.write().unwrap_or_else(|p| p.into_inner()) = Some(self.clone());
    }

    /// The installed app.
    pub fn current() -> Result<Celery> {
        CURRENT
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(Error::NoApp)
    }

    /// Settings.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Tasks linked into this binary.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The broker.
    pub fn broker(&self) -> &Arc<dyn Broker> {
        &self.inner.broker
    }

    /// The result backend, unless results are disabled.
    pub fn backend(&self) -> Option<&Arc<dyn ResultBackend>> {
        self.inner.backend.as_ref()
    }

    pub(crate) fn result_backend(&self) -> Result<&Arc<dyn ResultBackend>> {
        self.backend()
            .ok_or_else(|| Error::backend("results are disabled (result_backend = \"disabled\")"))
    }

    /// The database of celery-web's tables, when there is one.
    pub fn db(&self) -> Option<&Db> {
        self.inner.db.as_ref()
    }

    /// The broker's [`Transactional`](crate::broker::Transactional) capability, when its
    /// messages live in [`Celery::db`] itself: then a write to celery-web's tables and an
    /// enqueue can share one transaction (beat's exactly-once firing).
    pub(crate) fn broker_in_db(&self) -> Option<&dyn crate::broker::Transactional> {
        self.inner
            .broker
            .transactional()
            .filter(|_| self.inner.broker_in_db)
    }

    /// Adds a periodic task defined in code, as Celery's `app.add_periodic_task`: beat
    /// writes it into `celery_periodic_task` when it starts (marked as coming from code) and
    /// deletes code-defined rows that are no longer added. Call it before starting beat.
    ///
    /// ```no_run
    /// # fn demo(app: &celery_web::Celery) {
    /// use celery_web::beat::schedule::{Interval, Period, Schedule};
    /// use celery_web::task::Signature;
    ///
    /// app.add_periodic_task(
    ///     "add every 10 seconds",
    ///     Schedule::Interval(Interval::new(10, Period::Seconds).unwrap()),
    ///     Signature::new("tasks.add").arg(2).arg(3),
    /// );
    /// # }
    /// ```
    pub fn add_periodic_task<T>(
        &self,
        name: impl Into<String>,
        schedule: crate::beat::schedule::Schedule,
        signature: Signature<T>,
    ) {
        let definition = crate::beat::PeriodicTaskDefinition::new(name, schedule, signature);
        let mut tasks = self
            .inner
            .periodic_tasks
            .write()
            .unwrap_or_else(|p| p.into_inner());
        tasks.retain(|existing| existing.name != definition.name);
        tasks.push(definition);
    }

    /// The periodic tasks added in code.
    pub fn periodic_tasks(&self) -> Vec<crate::beat::PeriodicTaskDefinition> {
        self.inner
            .periodic_tasks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Applies celery-web's pending migrations to every database the app uses (broker,
    /// results, `database_url`); returns how many ran.
    pub fn migrate(&self) -> Result<usize> {
        self.migrate_each(&mut || {})
    }

    /// How many of celery-web's migrations [`Celery::migrate`] would apply.
    pub fn pending_migrations(&self) -> Result<usize> {
        self.inner
            .databases
            .iter()
            .try_fold(0, |pending, db| Ok(pending + db.pending_migrations()?))
    }

    /// [`Celery::migrate`], calling `applied` after each migration (for progress).
    pub fn migrate_each(&self, applied: &mut dyn FnMut()) -> Result<usize> {
        self.inner
            .databases
            .iter()
            .try_fold(0, |count, db| Ok(count + db.migrate_each(applied)?))
    }

    /// Every queue the app's tasks can go to: `task_default_queue`, the queues of
    /// `task_routes`, and those the tasks name in `#[task(queue = ...)]`; sorted. A worker
    /// that should run everything (the example site's dev mode) consumes them all.
    pub fn known_queues(&self) -> Vec<String> {
        let settings = self.settings();
        let mut queues: Vec<String> = std::iter::once(settings.task_default_queue.clone())
            .chain(
                settings
                    .task_routes
                    .values()
                    .filter_map(|route| route.queue.clone()),
            )
            .chain(self.registry().names().filter_map(|name| {
                let task = self.registry().get(name)?;
                task.options.queue.map(str::to_owned)
            }))
            .collect();
        queues.sort();
        queues.dedup();
        queues
    }

    /// A handle on the task `id`.
    pub fn async_result<T>(&self, id: &str) -> AsyncResult<T> {
        AsyncResult::new(id, self.clone())
    }

    /// Builds the message a signature sends: routing (call options, then `task_routes`, then
    /// the task's own options, then `task_default_queue`), eta from countdown, limits.
    pub fn message_for<T>(&self, signature: &Signature<T>) -> Result<Message> {
        signature.check()?;
        let settings = self.settings();
        let name = signature.task();
        let options = self
            .registry()
            .get(name)
            .map_or(TaskOptions::DEFAULT, |task| task.options);
        let call = signature.options();
        let route = settings.route_for(name);
        let queue = call
            .queue
            .clone()
            .or_else(|| route.and_then(|r| r.queue.clone()))
            .or_else(|| options.queue.map(str::to_owned))
            .unwrap_or_else(|| settings.task_default_queue.clone());
        let priority = call
            .priority
            .or_else(|| route.and_then(|r| r.priority))
            .or(options.priority)
            .or(settings.task_default_priority)
            .unwrap_or(0);
        if priority > 9 {
            return Err(Error::Arguments {
                task: name.to_owned(),
                reason: format!("priority must be 0..=9, got {priority}"),
            });
        }
        let mut message = Message::new(name, signature.args().to_vec(), signature.kwargs().clone())
            .with_queue(&queue);
        if let Some(id) = &call.task_id {
            message = message.with_id(id);
        }
        message.properties.priority = priority;
        let eta = match call.countdown {
            None => call.eta,
            Some(seconds) => Some(countdown_eta(seconds).ok_or_else(|| Error::Arguments {
                task: name.to_owned(),
                reason: format!(
                    "countdown must be a number of seconds from 0 to 10 years, got {seconds}"
                ),
            })?),
        };
        message.headers.eta = eta.map(|t| t.fixed_offset());
        if let Some(expires) = call.expires {
            message.headers.expires = Some(expires.fixed_offset());
            let millis = (expires - Utc::now()).num_milliseconds().max(0);
            message.properties.expiration = Some(millis.to_string());
        }
        for (option, limit) in [
            ("time_limit", call.time_limit),
            ("soft_time_limit", call.soft_time_limit),
        ] {
            if let Some(seconds) = limit.filter(|s| countdown_eta(*s).is_none()) {
                return Err(Error::Arguments {
                    task: name.to_owned(),
                    reason: format!(
                        "{option} must be a number of seconds from 0 to 10 years, got {seconds}"
                    ),
                });
            }
        }
        message.headers.timelimit = (
            call.time_limit
                .or(options.time_limit)
                .or(settings.task_time_limit),
            call.soft_time_limit
                .or(options.soft_time_limit)
                .or(settings.task_soft_time_limit),
        );
        message.headers.ignore_result = call
            .ignore_result
            .or(options.ignore_result)
            .unwrap_or(settings.task_ignore_result);
        for (key, value) in &call.headers {
            message.headers.extra.insert(key.clone(), value.clone());
        }
        message.embed.callbacks = (!call.link.is_empty()).then(|| call.link.clone());
        message.embed.errbacks = (!call.link_error.is_empty()).then(|| call.link_error.clone());
        Ok(message)
    }

    /// Sends a signature; with `task_always_eager`, runs it here instead.
    pub async fn send<T>(&self, signature: Signature<T>) -> Result<AsyncResult<T>> {
        let message = self.message_for(&signature)?;
        if self.settings().task_always_eager {
            let record = crate::task::apply_eagerly(self, &message).await?;
            // Celery's `task_store_eager_result`: the outcome also goes where a worker's would.
            if self.settings().task_store_eager_result && !message.headers.ignore_result {
                if let Some(backend) = self.backend() {
                    backend.store(std::slice::from_ref(&record)).await?;
                }
            }
            if self.settings().task_eager_propagates && record.status.propagates() {
                return Err(crate::task::failed(record));
            }
            return Ok(AsyncResult::eager(record, self.clone()));
        }
        self.broker()
            .publish(std::slice::from_ref(&message))
            .await?;
        if self.settings().task_send_sent_event {
            crate::events::announce_sent(self, std::slice::from_ref(&message)).await;
        }
        Ok(self.async_result(message.id()))
    }

    /// Sends many signatures in one go and returns their results in the same order.
    ///
    /// Every message is built first, so a signature that is not valid sends nothing at all;
    /// then the broker gets them in one [`Broker::publish`](crate::broker::Broker::publish)
    /// call: on the database broker one multi-row `INSERT` per few thousand messages (the
    /// database's bind-parameter limit), all in one transaction; on Redis one pipeline. With
    /// `task_always_eager` each runs here in turn, as [`Celery::send`] would.
    ///
    /// To enqueue inside your own transaction, call
    /// [`publish_in`](crate::broker::database::publish_in) per message instead.
    ///
    /// ```
    /// use celery_web::task::Signature;
    /// use celery_web::{Celery, Settings};
    ///
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let settings = Settings {
    ///     broker_url: "memory://".into(),
    ///     result_backend: "memory://".into(),
    ///     ..Settings::default()
    /// };
    /// let app = Celery::from_settings(settings)?;
    /// let results = app
    ///     .send_many((0..100).map(|n| Signature::new("add").arg(n).arg(n)))
    ///     .await?;
    /// assert_eq!(results.len(), 100);
    /// assert_eq!(app.broker().queue_stats(&["celery".into()]).await?[0].waiting, 100);
    /// # Ok::<(), celery_web::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn send_many<T>(
        &self,
        signatures: impl IntoIterator<Item = Signature<T>>,
    ) -> Result<Vec<AsyncResult<T>>> {
        if self.settings().task_always_eager {
            let mut results = Vec::new();
            for signature in signatures {
                results.push(self.send(signature).await?);
            }
            return Ok(results);
        }
        let messages = signatures
            .into_iter()
            .map(|signature| self.message_for(&signature))
            .collect::<Result<Vec<_>>>()?;
        self.broker().publish(&messages).await?;
        if self.settings().task_send_sent_event {
            crate::events::announce_sent(self, &messages).await;
        }
        Ok(messages
            .iter()
            .map(|message| self.async_result(message.id()))
            .collect())
    }

    /// Sends the task called `name`, which need not be linked into this binary (Celery's
    /// `send_task`).
    pub async fn send_task(
        &self,
        name: &str,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
    ) -> Result<AsyncResult<Value>> {
        self.send(Signature::new(name).with_arguments(args, kwargs))
            .await
    }
}

/// Now plus `seconds`, for a sane countdown (0 to 10 years).
fn countdown_eta(seconds: f64) -> Option<chrono::DateTime<Utc>> {
    const TEN_YEARS: f64 = 10.0 * 365.0 * 24.0 * 3600.0;
    if !(seconds.is_finite() && (0.0..=TEN_YEARS).contains(&seconds)) {
        return None;
    }
    Some(Utc::now() + chrono::Duration::microseconds((seconds * 1e6) as i64))
}

/// Whether two database URLs name the same database (then the broker shares the pool).
fn same_database(a: &str, b: &str) -> bool {
    let strip = |url: &str| url.strip_prefix("db+").unwrap_or(url).to_owned();
    strip(a) == strip(b)
}
