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
        settings.validate()?;
        let database_url = settings.database_url();
        let db = match DbKind::of(&database_url) {
            Some(_) => {
                let pool_size = u32::try_from(settings.broker_pool_limit.max(4)).unwrap_or(10);
                Some(Db::connect(&database_url, pool_size)?)
            }
            None => None,
        };
        let broker_db = db
            .as_ref()
            .filter(|_| same_database(&settings.broker_url, &database_url));
        let broker = crate::broker::connect(
            &settings.broker_url,
            broker_db,
            settings.visibility_timeout(),
        )?;
        let backend = crate::backend::connect(&settings.result_backend, db.as_ref())?;
        Ok(Celery {
            inner: Arc::new(Inner {
                settings,
                registry,
                broker,
                backend,
                db,
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
        self.backend().ok_or_else(|| {
            Error::Backend("results are disabled (result_backend = \"disabled\")".to_owned())
        })
    }

    /// The database of celery-web's tables, when there is one.
    pub fn db(&self) -> Option<&Db> {
        self.inner.db.as_ref()
    }

    /// Applies celery-web's pending migrations; returns how many ran.
    pub fn migrate(&self) -> Result<usize> {
        match self.db() {
            Some(db) => db.migrate(),
            None => Ok(0),
        }
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
        let eta = call.eta.or_else(|| {
            call.countdown
                .map(|seconds| Utc::now() + chrono::Duration::microseconds((seconds * 1e6) as i64))
        });
        message.headers.eta = eta.map(|t| t.fixed_offset());
        if let Some(expires) = call.expires {
            message.headers.expires = Some(expires.fixed_offset());
            let millis = (expires - Utc::now()).num_milliseconds().max(0);
            message.properties.expiration = Some(millis.to_string());
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
        Ok(message)
    }

    /// Sends a signature; with `task_always_eager`, runs it here instead.
    pub async fn send<T>(&self, signature: Signature<T>) -> Result<AsyncResult<T>> {
        let message = self.message_for(&signature)?;
        if self.settings().task_always_eager {
            let record = crate::task::apply_eagerly(self, &message).await?;
            if self.settings().task_eager_propagates && record.status.propagates() {
                return Err(crate::task::failed(record));
            }
            return Ok(AsyncResult::eager(record, self.clone()));
        }
        self.broker()
            .publish(std::slice::from_ref(&message))
            .await?;
        Ok(self.async_result(message.id()))
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

/// Whether two database URLs name the same database (then the broker shares the pool).
fn same_database(a: &str, b: &str) -> bool {
    let strip = |url: &str| url.strip_prefix("db+").unwrap_or(url).to_owned();
    strip(a) == strip(b)
}
