//! Settings, with Celery's own names, read from the `[celery]` table of the site's config file
//! and from `CELERY_<NAME>` environment variables.
//!
//! ```
//! use celery_web::Settings;
//!
//! let settings = Settings::from_toml_str("[celery]\nbroker_url = \"postgres://localhost/app\"")?;
//! assert_eq!(settings.broker_url, "postgres://localhost/app");
//! // The result backend defaults to "db": the broker's own database.
//! assert_eq!(settings.database_url(), "postgres://localhost/app");
//! assert_eq!(settings.worker_prefetch_multiplier, 4);
//! # Ok::<(), celery_web::Error>(())
//! ```
//!
//! # Where settings come from
//!
//! 1. Defaults ([`Settings::default`]) that work with nothing installed: an SQLite database
//!    broker, results in the same database, UTC.
//! 2. The `[celery]` table of the site's config file ([`Settings::from_file`]). Other tables
//!    belong to the site and are ignored. Unknown keys are errors, with a suggestion when the key
//!    looks like a typo: `unknown setting `broker_ulr` in [celery] (did you mean `broker_url`?)`.
//! 3. Environment variables `CELERY_<NAME>`, with the setting's name upper-cased
//!    (`CELERY_BROKER_URL`, `CELERY_WORKER_CONCURRENCY`), which beat the file. A value is read as a
//!    TOML value when that fits the setting (`8`, `true`, `["json"]`,
//!    `{ "proj.tasks.add" = "math" }`), as JSON for tables and arrays
//!    (`{"proj.tasks.add": "math"}`), and otherwise as plain text (`redis://localhost:6379/0`);
//!    lists also take `json,application/json`. Empty variables are ignored, and so are `CELERY_*`
//!    variables that name no setting (they are logged at debug level).
//!
//! Celery 3 and Django-era names (`BROKER_URL`, `CELERYD_CONCURRENCY`, `CELERY_ROUTES`,
//! `CELERYBEAT_SCHEDULE`, ...) are accepted in the file, in any case, and as environment
//! variables, with a deprecation warning naming the new setting. Inside the `[celery]` table,
//! Django's `CELERY_`-namespaced names (`CELERY_BROKER_URL = ...`, `CELERY_TIMEZONE = ...`) read as
//! the plain name without a warning: they are still what Django projects write. Giving one setting
//! twice in one place (`BROKER_URL` and `broker_url` in the file, or `BROKER_URL` and
//! `CELERY_BROKER_URL` in the environment) is an error naming both.
//!
//! Every other Celery 5.5 setting, and its Celery 3 name, loads too when celery-web gives it no
//! effect (`CELERYD_FORCE_EXECV`, `task_compression`, `broker_heartbeat`, `beat_scheduler`,
//! `security_key`, ...): its value is not read, and a warning says it has no effect and what
//! replaces it or would give it effect (`CELERYD_FORCE_EXECV`: "no effect: use --pool
//! process"). So a Django project's Celery config starts unchanged. When settings are read
//! before logging is set up, warnings go to stderr.
//!
//! Values are checked at load time, and errors name the setting, where it came from and what it
//! expects: ``setting `worker_concurrency`: expected a positive integer, got "eight"``. URLs in
//! messages and in `Debug` output have their passwords masked ([`masked_url`]).
//!
//! A site that builds [`Settings`] in code should call [`Settings::validate`] (the app does when
//! it starts).
//!
//! # Every setting
//!
//! The crate's `config/reference.toml`, which a test checks against [`Settings::default`]:
//!
//! ```toml
#![doc = include_str!("../../config/reference.toml")]
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroUsize;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Value;

use crate::task::RateLimit;
use crate::{Error, Result};

mod accepted;
mod env;
mod keys;
mod kinds;
mod queues;
mod report;
mod routes;
#[cfg(test)]
mod tests;
mod url;
mod validate;

pub use kinds::{BrokerKind, DbKind, ResultBackendKind};
pub use queues::QueueDeclaration;
pub use routes::TaskRoute;
pub use url::masked_url;

use keys::{EnvKey, Spelling};
use validate::{shown_value, Invalid};

/// Where the embedded database lives when nothing else says so.
const DEFAULT_DATABASE_URL: &str = "sqlite://celery.sqlite3";

/// celery-web's settings: the `[celery]` table of the site's config file, with Celery's names.
///
/// Build it with [`Settings::from_file`], [`Settings::from_env_and_file`] or
/// [`Settings::from_toml_str`], or in code with `Settings { ..Settings::default() }` followed by
/// [`Settings::validate`]. Deserializing it directly with serde (as a field of the site's own
/// config struct) works too, but then only the current names are accepted and values are not
/// checked until [`Settings::validate`].
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Broker URL: `sqlite://path` or `postgres://...` (the database broker), `redis://...`,
    /// `rediss://...`, `amqp://...`, `amqps://...` or `memory://` (one process, for tests).
    /// Defaults to `"sqlite://celery.sqlite3"`.
    pub broker_url: String,
    /// Where task results go: `db` (also `database`, `django-db`: the `celery_taskresult` table
    /// in [`Settings::database_url`]), a `sqlite://` or `postgres://` URL (optionally written
    /// `db+<url>` as in Celery), a `redis://` URL, `memory://` or `disabled`.
    /// Defaults to `"db"`.
    pub result_backend: String,
    /// Database for celery-web's own tables (results, periodic tasks) when the broker is not a
    /// database; see [`Settings::database_url()`] for how it is resolved when unset.
    /// Defaults to unset (the broker's database, or `sqlite://celery.sqlite3`).
    pub database_url: Option<String>,
    /// Time zone of crontab schedules and of naive times, an IANA name such as `Europe/Paris`.
    /// Defaults to `"UTC"`.
    pub timezone: String,
    /// Keep message times in UTC. Defaults to `true`.
    pub enable_utc: bool,
    /// Serializer of task messages; only `json` is supported. Defaults to `"json"`.
    pub task_serializer: String,
    /// Serializer of task results; only `json` is supported. Defaults to `"json"`.
    pub result_serializer: String,
    /// Content types workers accept; only `json` / `application/json` are supported.
    /// Defaults to `["json"]`.
    pub accept_content: Vec<String>,
    /// Seconds after which stored results are deleted; `0` keeps them forever.
    /// Defaults to `86400` (one day).
    pub result_expires: Option<u64>,
    /// Celery's switch for storing the task's name, arguments, worker, retries and queue with
    /// its result. Accepted for compatibility; celery-web always stores them (the admin pages
    /// need them to filter and to retry a task with its arguments). Defaults to `false`.
    pub result_extended: bool,
    /// Report the STARTED state when a worker starts a task. Defaults to `false`.
    pub task_track_started: bool,
    /// Run tasks in the calling process when they are sent, instead of sending them (for
    /// tests): `delay` returns once the task ran, and its result is kept in the returned
    /// `AsyncResult` (and stored in the result backend only with `task_store_eager_result`).
    /// Defaults to `false`.
    pub task_always_eager: bool,
    /// With `task_always_eager`, make `delay`/`apply_async` return the task's failure as an
    /// error. Defaults to `false`.
    pub task_eager_propagates: bool,
    /// With `task_always_eager`, also store each eager task's outcome in the result backend
    /// (unless its result is ignored), as Celery does: pages and tests that read results by
    /// id (`/tasks/<id>`, the admin) then see them. Defaults to `false`.
    pub task_store_eager_result: bool,
    /// Do not store task results (tasks may override it). Defaults to `false`.
    pub task_ignore_result: bool,
    /// Acknowledge a message after its task finishes rather than before it starts, so a task
    /// whose worker dies runs again (at-least-once). **Unlike Celery, whose default is `false`
    /// (at-most-once)**: the database broker's leases make redelivery cheap and safe, so
    /// celery-web chooses at-least-once. Set it to `false` for Celery's behaviour.
    /// Defaults to `true`.
    pub task_acks_late: bool,
    /// With `task_acks_late`, a task whose process-pool child died mid-task goes back to the
    /// queue instead of failing with `WorkerLostError`. Defaults to `false`.
    pub task_reject_on_worker_lost: bool,
    /// Queue of tasks that no route or option sends elsewhere. Defaults to `"celery"`.
    pub task_default_queue: String,
    /// Priority (0 to 9) of tasks that set none. Defaults to unset (the broker's default, 0).
    pub task_default_priority: Option<u8>,
    /// Routes by task name: an exact name or a glob with `*`, to a queue name or to
    /// `{ queue = "...", priority = N }`; see [`Settings::route_for`]. Defaults to no routes.
    pub task_routes: BTreeMap<String, TaskRoute>,
    /// Queues the site declares (Celery 3: `CELERY_QUEUES`), as a list of tables; see
    /// [`QueueDeclaration`], [`Settings::queues`] and [`Settings::default_worker_queues`].
    /// Defaults to none (only `task_default_queue` and the routes' queues).
    pub task_queues: Vec<QueueDeclaration>,
    /// Let routes and `task_default_queue` name queues that `task_queues` does not declare.
    /// When `false` and `task_queues` is set, such a queue is a configuration error.
    /// Defaults to `true`.
    pub task_create_missing_queues: bool,
    /// `x-max-priority` of every queue declared on RabbitMQ (quorum queues excepted: they
    /// refuse it), so priorities 0 to N order delivery. Defaults to unset (no priorities on
    /// AMQP queues).
    pub task_queue_max_priority: Option<u8>,
    /// `"classic"` or `"quorum"`: the type of `task_default_queue` on RabbitMQ.
    /// Defaults to `"classic"`.
    pub task_default_queue_type: String,
    /// `"quorum"` or `"classic"`: the queues of Celery 5.5's native delayed delivery on
    /// RabbitMQ (countdowns and etas wait there, not in worker memory). Defaults to
    /// `"quorum"`.
    pub broker_native_delayed_delivery_queue_type: String,
    /// Hard time limit in seconds: the task is stopped. Defaults to unset (no limit).
    pub task_time_limit: Option<f64>,
    /// Soft time limit in seconds: the task is told, and may clean up. Defaults to unset
    /// (no limit).
    pub task_soft_time_limit: Option<f64>,
    /// Rate limit of tasks that set none: `"N"` or `"N/s"` per second, `"N/m"` per minute,
    /// `"N/h"` per hour, `"0"` for no limit (see [`RateLimit`] and
    /// [`Settings::default_rate_limit`]). Defaults to unset (no limit).
    pub task_default_rate_limit: Option<String>,
    /// Ignore every rate limit, the tasks' own and `task_default_rate_limit` (Celery 3:
    /// `CELERY_DISABLE_RATE_LIMITS`); read it with [`Settings::rate_limits_enabled`].
    /// Defaults to `false`.
    pub worker_disable_rate_limits: bool,
    /// Tasks a worker runs at once; must be positive; see [`Settings::concurrency`].
    /// Defaults to unset (the number of CPUs).
    pub worker_concurrency: Option<usize>,
    /// Messages a worker reserves per free execution slot; must be positive. Defaults to `4`.
    pub worker_prefetch_multiplier: usize,
    /// Tasks a process-pool child runs before it is replaced; `0` means no limit, as in Celery.
    /// Defaults to unset (no limit).
    pub worker_max_tasks_per_child: Option<u64>,
    /// Peak resident memory (KiB) past which a process-pool child is replaced after its task;
    /// `0` means no limit, as in Celery. Defaults to unset (no limit).
    pub worker_max_memory_per_child: Option<u64>,
    /// Send Celery task events (for Flower and `celery events`). Defaults to `false`.
    pub worker_send_task_events: bool,
    /// Send a `task-sent` event for every task this app sends (on brokers that carry
    /// events). Defaults to `false`.
    pub task_send_sent_event: bool,
    /// Node name of the worker, such as `worker1@%h`. Defaults to unset (`celery@<hostname>`).
    pub worker_hostname: Option<String>,
    /// Seconds a fetched, unacknowledged message stays invisible before it is delivered again
    /// (`broker_transport_options.visibility_timeout` wins when given; see
    /// [`Settings::visibility_timeout`]). Defaults to `3600`.
    pub broker_visibility_timeout: u64,
    /// Broker-specific options, as in Celery (`visibility_timeout`, ...). Defaults to none.
    pub broker_transport_options: BTreeMap<String, Value>,
    /// Most connections a broker keeps open. Defaults to `10`.
    pub broker_pool_limit: usize,
    /// Periodic tasks by name, as raw tables (beat reads them). Defaults to none.
    pub beat_schedule: BTreeMap<String, Value>,
    /// Longest time in seconds beat sleeps between checks of the schedule.
    /// Defaults to unset (beat's own default).
    pub beat_max_loop_interval: Option<f64>,
    /// Users of the admin pages and JSON API by name, each with an Argon2 password hash in PHC
    /// form (make one with `site celery admin hash-password`). Defaults to none (with no users
    /// and no site guard, the admin refuses everyone).
    pub admin_users: BTreeMap<String, String>,
    /// Key that signs admin sessions and CSRF tokens; at least 32 characters. Every web process
    /// of a site needs the same key. Unset: a random key per process (sessions end when the
    /// process restarts).
    pub admin_secret_key: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            broker_url: DEFAULT_DATABASE_URL.to_owned(),
            result_backend: "db".to_owned(),
            database_url: None,
            timezone: "UTC".to_owned(),
            enable_utc: true,
            task_serializer: "json".to_owned(),
            result_serializer: "json".to_owned(),
            accept_content: vec!["json".to_owned()],
            result_expires: Some(86_400),
            result_extended: false,
            task_track_started: false,
            task_always_eager: false,
            task_eager_propagates: false,
            task_store_eager_result: false,
            task_ignore_result: false,
            task_acks_late: true,
            task_reject_on_worker_lost: false,
            task_default_queue: "celery".to_owned(),
            task_default_priority: None,
            task_routes: BTreeMap::new(),
            task_queues: Vec::new(),
            task_create_missing_queues: true,
            task_queue_max_priority: None,
            task_default_queue_type: "classic".to_owned(),
            broker_native_delayed_delivery_queue_type: "quorum".to_owned(),
            task_time_limit: None,
            task_soft_time_limit: None,
            task_default_rate_limit: None,
            worker_disable_rate_limits: false,
            worker_concurrency: None,
            worker_prefetch_multiplier: 4,
            worker_max_tasks_per_child: None,
            worker_max_memory_per_child: None,
            worker_send_task_events: false,
            task_send_sent_event: false,
            worker_hostname: None,
            broker_visibility_timeout: 3600,
            broker_transport_options: BTreeMap::new(),
            broker_pool_limit: 10,
            beat_schedule: BTreeMap::new(),
            beat_max_loop_interval: None,
            admin_users: BTreeMap::new(),
            admin_secret_key: None,
        }
    }
}

/// Like the derived `Debug`, but with URL passwords masked.
impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Destructured without `..` so a new field cannot be forgotten here.
        let Settings {
            broker_url,
            result_backend,
            database_url,
            timezone,
            enable_utc,
            task_serializer,
            result_serializer,
            accept_content,
            result_expires,
            result_extended,
            task_track_started,
            task_always_eager,
            task_eager_propagates,
            task_store_eager_result,
            task_ignore_result,
            task_acks_late,
            task_reject_on_worker_lost,
            task_default_queue,
            task_default_priority,
            task_routes,
            task_queues,
            task_create_missing_queues,
            task_queue_max_priority,
            task_default_queue_type,
            broker_native_delayed_delivery_queue_type,
            task_time_limit,
            task_soft_time_limit,
            task_default_rate_limit,
            worker_disable_rate_limits,
            worker_concurrency,
            worker_prefetch_multiplier,
            worker_max_tasks_per_child,
            worker_max_memory_per_child,
            worker_send_task_events,
            task_send_sent_event,
            worker_hostname,
            broker_visibility_timeout,
            broker_transport_options,
            broker_pool_limit,
            beat_schedule,
            beat_max_loop_interval,
            admin_users,
            admin_secret_key,
        } = self;
        f.debug_struct("Settings")
            .field("broker_url", &masked_url(broker_url))
            .field("result_backend", &masked_url(result_backend))
            .field("database_url", &database_url.as_deref().map(masked_url))
            .field("timezone", timezone)
            .field("enable_utc", enable_utc)
            .field("task_serializer", task_serializer)
            .field("result_serializer", result_serializer)
            .field("accept_content", accept_content)
            .field("result_expires", result_expires)
            .field("result_extended", result_extended)
            .field("task_track_started", task_track_started)
            .field("task_always_eager", task_always_eager)
            .field("task_eager_propagates", task_eager_propagates)
            .field("task_store_eager_result", task_store_eager_result)
            .field("task_ignore_result", task_ignore_result)
            .field("task_acks_late", task_acks_late)
            .field("task_reject_on_worker_lost", task_reject_on_worker_lost)
            .field("task_default_queue", task_default_queue)
            .field("task_default_priority", task_default_priority)
            .field("task_routes", task_routes)
            .field("task_queues", task_queues)
            .field("task_create_missing_queues", task_create_missing_queues)
            .field("task_queue_max_priority", task_queue_max_priority)
            .field("task_default_queue_type", task_default_queue_type)
            .field(
                "broker_native_delayed_delivery_queue_type",
                broker_native_delayed_delivery_queue_type,
            )
            .field("task_time_limit", task_time_limit)
            .field("task_soft_time_limit", task_soft_time_limit)
            .field("task_default_rate_limit", task_default_rate_limit)
            .field("worker_disable_rate_limits", worker_disable_rate_limits)
            .field("worker_concurrency", worker_concurrency)
            .field("worker_prefetch_multiplier", worker_prefetch_multiplier)
            .field("worker_max_tasks_per_child", worker_max_tasks_per_child)
            .field("worker_max_memory_per_child", worker_max_memory_per_child)
            .field("worker_send_task_events", worker_send_task_events)
            .field("task_send_sent_event", task_send_sent_event)
            .field("worker_hostname", worker_hostname)
            .field("broker_visibility_timeout", broker_visibility_timeout)
            .field("broker_transport_options", broker_transport_options)
            .field("broker_pool_limit", broker_pool_limit)
            .field("beat_schedule", beat_schedule)
            .field("beat_max_loop_interval", beat_max_loop_interval)
            .field("admin_users", &admin_users.keys().collect::<Vec<_>>())
            .field(
                "admin_secret_key",
                &admin_secret_key.as_ref().map(|_| "********"),
            )
            .finish()
    }
}

impl Settings {
    /// Reads the `[celery]` table of a config file's text; a file without one gives the
    /// defaults, and the file's other tables (the site's) are ignored. Environment variables are
    /// *not* applied: use [`Settings::from_file`] or [`Settings::from_env_and_file`] for that.
    ///
    /// ```
    /// use celery_web::Settings;
    ///
    /// let settings = Settings::from_toml_str(
    ///     "[site]\ntitle = \"Shop\"\n\n[celery]\nworker_concurrency = 8",
    /// )?;
    /// assert_eq!(settings.concurrency(), 8);
    /// # Ok::<(), celery_web::Error>(())
    /// ```
    pub fn from_toml_str(text: &str) -> Result<Settings> {
        let document = text
            .parse::<toml::Table>()
            .map_err(|e| Error::Config(format!("invalid TOML: {e}")))?;
        load(celery_table(document)?, std::iter::empty())
    }

    /// Reads the `[celery]` table of the config file at `path`, then applies `CELERY_<NAME>`
    /// environment variables. A missing or unreadable file is an error naming the path.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Settings> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!("cannot read config file `{}`: {e}", path.display()))
        })?;
        let document = text.parse::<toml::Table>().map_err(|e| {
            Error::Config(format!(
                "config file `{}` is not valid TOML: {e}",
                path.display()
            ))
        })?;
        load(celery_table(document)?, process_env())
    }

    /// The defaults with `CELERY_<NAME>` environment variables applied.
    pub fn from_env() -> Result<Settings> {
        load(toml::Table::new(), process_env())
    }

    /// [`Settings::from_file`] when a path is given, else [`Settings::from_env`].
    pub fn from_env_and_file(path: Option<&Path>) -> Result<Settings> {
        match path {
            Some(path) => Settings::from_file(path),
            None => Settings::from_env(),
        }
    }

    /// Checks every value (URL schemes, serializers, priorities, rate limits, positive counts,
    /// ...). The loaders call it; call it yourself for settings built in code.
    pub fn validate(&self) -> Result<()> {
        validate::check(self).map_err(|invalid| invalid_error(&invalid, None))
    }

    /// The database of celery-web's own tables: `database_url` when set, else the broker's URL
    /// when the broker is a database (`sqlite:` or `postgres://`), else
    /// `sqlite://celery.sqlite3`.
    pub fn database_url(&self) -> String {
        if let Some(url) = &self.database_url {
            return url.clone();
        }
        match validate::broker_kind(&self.broker_url) {
            Ok(BrokerKind::Database { url, .. }) => url,
            _ => DEFAULT_DATABASE_URL.to_owned(),
        }
    }

    /// What `broker_url` names, read once: the database broker (with which database), Redis,
    /// AMQP or the in-process broker. Errors as [`Settings::validate`] does for a bad URL.
    ///
    /// ```
    /// use celery_web::settings::{BrokerKind, Settings};
    ///
    /// let settings = Settings::from_toml_str("[celery]\nbroker_url = \"redis://cache:6379/0\"")?;
    /// assert_eq!(settings.broker_kind()?, BrokerKind::Redis { url: "redis://cache:6379/0".into() });
    /// assert_eq!(Settings::default().broker_kind()?.name(), "database");
    /// # Ok::<(), celery_web::Error>(())
    /// ```
    pub fn broker_kind(&self) -> Result<BrokerKind> {
        validate::broker_kind(&self.broker_url).map_err(|invalid| invalid_error(&invalid, None))
    }

    /// What `result_backend` names, with `db` resolved to [`Settings::database_url()`].
    pub fn result_backend_kind(&self) -> Result<ResultBackendKind> {
        validate::result_backend_kind(self).map_err(|invalid| invalid_error(&invalid, None))
    }

    /// How long results are kept: `result_expires`, or `None` when it is unset or `0`.
    pub fn result_expiry(&self) -> Option<Duration> {
        self.result_expires
            .filter(|&seconds| seconds > 0)
            .map(Duration::from_secs)
    }

    /// `task_default_rate_limit`, parsed: the limit of tasks that set none, or `None` when it
    /// is unset or `"0"` (no limit, as in Celery), or when `worker_disable_rate_limits` turns
    /// rate limits off. An error only for settings built in code and not validated.
    ///
    /// ```
    /// use celery_web::Settings;
    /// use std::time::Duration;
    ///
    /// let settings = Settings::from_toml_str("[celery]\ntask_default_rate_limit = \"100/m\"")?;
    /// let limit = settings.default_rate_limit()?.unwrap();
    /// assert_eq!(limit.interval(), Duration::from_millis(600));
    ///
    /// let unlimited = Settings::from_toml_str("[celery]\ntask_default_rate_limit = \"0\"")?;
    /// assert_eq!(unlimited.default_rate_limit()?, None);
    /// # Ok::<(), celery_web::Error>(())
    /// ```
    pub fn default_rate_limit(&self) -> Result<Option<RateLimit>> {
        let Some(text) = &self.task_default_rate_limit else {
            return Ok(None);
        };
        if !self.rate_limits_enabled() {
            return Ok(None);
        }
        let limit = RateLimit::parse(text).map_err(|message| {
            Error::Config(format!("setting `task_default_rate_limit`: {message}"))
        })?;
        Ok((!limit.is_unlimited()).then_some(limit))
    }

    /// Whether rate limits apply: `false` when `worker_disable_rate_limits` is set. Then
    /// `task_default_rate_limit` reads as `None` from [`Settings::default_rate_limit`], and a
    /// worker must not apply the tasks' own `rate_limit` either (Celery's meaning).
    ///
    /// ```
    /// use celery_web::Settings;
    ///
    /// let settings = Settings::from_toml_str(
    ///     "[celery]\nCELERY_DISABLE_RATE_LIMITS = true\ntask_default_rate_limit = \"10/s\"",
    /// )?;
    /// assert!(!settings.rate_limits_enabled());
    /// assert_eq!(settings.default_rate_limit()?, None);
    /// assert!(Settings::default().rate_limits_enabled());
    /// # Ok::<(), celery_web::Error>(())
    /// ```
    pub fn rate_limits_enabled(&self) -> bool {
        !self.worker_disable_rate_limits
    }

    /// The declared queues, `task_queues` (empty when unset).
    ///
    /// ```
    /// use celery_web::Settings;
    ///
    /// let settings = Settings::from_toml_str(
    ///     r#"
    ///     [[celery.task_queues]]
    ///     name = "default"
    ///
    ///     [[celery.task_queues]]
    ///     name = "priority"
    ///     routing_key = "priority.#"
    ///     exchange_type = "topic"
    ///     queue_arguments = { "x-max-priority" = 10 }
    ///     "#,
    /// )?;
    /// let queues = settings.queues();
    /// assert_eq!(queues.len(), 2);
    /// assert_eq!(queues[1].routing_key(), "priority.#");
    /// assert_eq!(queues[1].exchange(), "priority");
    /// assert_eq!(queues[1].queue_arguments["x-max-priority"].as_integer(), Some(10));
    /// # Ok::<(), celery_web::Error>(())
    /// ```
    pub fn queues(&self) -> &[QueueDeclaration] {
        &self.task_queues
    }

    /// The queues a worker consumes when it is not told which: every queue of `task_queues`
    /// when it is set (as Celery does), else `task_default_queue`.
    ///
    /// ```
    /// use celery_web::Settings;
    ///
    /// assert_eq!(Settings::default().default_worker_queues(), ["celery"]);
    /// let settings = Settings::from_toml_str(
    ///     "[celery]\ntask_queues = [{ name = \"mail\" }, { name = \"celery\" }]",
    /// )?;
    /// assert_eq!(settings.default_worker_queues(), ["mail", "celery"]);
    /// # Ok::<(), celery_web::Error>(())
    /// ```
    pub fn default_worker_queues(&self) -> Vec<String> {
        if self.task_queues.is_empty() {
            vec![self.task_default_queue.clone()]
        } else {
            self.task_queues.iter().map(|q| q.name.clone()).collect()
        }
    }

    /// Execution slots of a worker: `worker_concurrency`, or the number of CPUs when unset.
    pub fn concurrency(&self) -> usize {
        match self.worker_concurrency {
            Some(n) if n > 0 => n,
            _ => std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
        }
    }

    /// The broker's visibility timeout: `broker_transport_options.visibility_timeout` when
    /// given (as in Celery), else `broker_visibility_timeout`.
    pub fn visibility_timeout(&self) -> Duration {
        self.broker_transport_options
            .get("visibility_timeout")
            .and_then(validate::transport_seconds)
            .unwrap_or(Duration::from_secs(self.broker_visibility_timeout))
    }

    /// The `task_routes` entry for `task`: its exact name first, then the most specific glob
    /// pattern (a key with `*`) that matches.
    ///
    /// ```
    /// use celery_web::settings::{Settings, TaskRoute};
    ///
    /// let settings = Settings::from_toml_str(
    ///     r#"
    ///     [celery.task_routes]
    ///     "shop.*" = "shop"
    ///     "shop.tasks.*" = "shop-tasks"
    ///     "shop.tasks.invoice" = { queue = "billing", priority = 7 }
    ///     "#,
    /// )?;
    /// assert_eq!(settings.route_for("shop.tasks.invoice").unwrap().priority, Some(7));
    /// assert_eq!(settings.route_for("shop.tasks.email"), Some(&TaskRoute::queue("shop-tasks")));
    /// assert_eq!(settings.route_for("shop.cart.clear"), Some(&TaskRoute::queue("shop")));
    /// assert_eq!(settings.route_for("blog.tasks.ping"), None);
    /// # Ok::<(), celery_web::Error>(())
    /// ```
    pub fn route_for(&self, task: &str) -> Option<&TaskRoute> {
        self.task_routes.get(task).or_else(|| {
            // TOML tables don't keep the order routes were written in (Celery's rule), so the
            // most specific pattern wins: the one with the most literal characters.
            self.task_routes
                .iter()
                .filter(|(pattern, _)| pattern.contains('*') && routes::glob_matches(pattern, task))
                .max_by_key(|(pattern, _)| pattern.chars().filter(|c| *c != '*').count())
                .map(|(_, route)| route)
        })
    }

    /// The queue `task` goes to by the settings: its route's queue, else `task_default_queue`.
    pub fn queue_for(&self, task: &str) -> &str {
        self.route_for(task)
            .and_then(|route| route.queue.as_deref())
            .unwrap_or(&self.task_default_queue)
    }
}

/// The `[celery]` table of a config document (empty when there is none).
fn celery_table(mut document: toml::Table) -> Result<toml::Table> {
    match document.remove("celery") {
        None => Ok(toml::Table::new()),
        Some(Value::Table(table)) => Ok(table),
        Some(other) => Err(Error::Config(format!(
            "`celery` must be a table ([celery]), got {}",
            shown_value(&other)
        ))),
    }
}

/// The process's environment, skipping variables that are not UTF-8.
fn process_env() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os().filter_map(
        |(key, value)| match (key.into_string(), value.into_string()) {
            (Ok(key), Ok(value)) => Some((key, value)),
            (Ok(key), Err(_)) if key.starts_with("CELERY") => {
                tracing::warn!("environment variable `{key}` is not UTF-8; ignored");
                None
            }
            _ => None,
        },
    )
}

/// Where a setting's value came from, for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Origin {
    /// A key of the `[celery]` table.
    File(String),
    /// An environment variable.
    Env(String),
}

impl Origin {
    /// " (given as `KEY`)" / " (from environment variable `VAR`)", or nothing for the plain
    /// name in the file.
    fn suffix(&self, name: &str) -> String {
        match self {
            Origin::File(key) if key == name => String::new(),
            Origin::File(key) => format!(" (given as `{key}`)"),
            Origin::Env(var) => format!(" (from environment variable `{var}`)"),
        }
    }
}

/// Settings read, with the deprecation warnings they earned.
#[derive(Debug)]
struct Loaded {
    settings: Settings,
    deprecations: Vec<String>,
}

/// Reads the `[celery]` table and the environment `env`, logs deprecations and validates.
fn load(celery: toml::Table, env: impl IntoIterator<Item = (String, String)>) -> Result<Settings> {
    let loaded = resolve(celery, env)?;
    // Settings are often read before logging is set up (the command line reads them to know
    // how to log); then the warnings go to stderr, so that they are not lost.
    let logging = tracing::dispatcher::has_been_set();
    for deprecation in &loaded.deprecations {
        if logging {
            tracing::warn!("{deprecation}");
        } else {
            eprintln!("warning: {deprecation}");
        }
    }
    Ok(loaded.settings)
}

fn resolve(celery: toml::Table, env: impl IntoIterator<Item = (String, String)>) -> Result<Loaded> {
    let mut deprecations = Vec::new();
    let mut values: BTreeMap<&'static str, (Origin, Value)> = BTreeMap::new();

    for (key, value) in celery {
        if keys::file_key(&key).is_none() {
            if let Some(accepted) = accepted::accepted(&key) {
                deprecations.push(format!(
                    "setting `{key}` in [celery] ({}): {}",
                    accepted.names[0], accepted.note
                ));
                continue;
            }
        }
        let Some((name, spelling)) = keys::file_key(&key) else {
            let hint = keys::suggest(&key)
                .map(|name| format!(" (did you mean `{name}`?)"))
                .unwrap_or_default();
            return Err(Error::Config(format!(
                "unknown setting `{key}` in [celery]{hint}"
            )));
        };
        match spelling {
            Spelling::Current => {}
            Spelling::Namespaced => tracing::debug!("`{key}` in [celery] read as `{name}`"),
            Spelling::Legacy => deprecations.push(format!(
                "setting `{key}` in [celery] is a deprecated Celery 3 name: rename it to `{name}`"
            )),
        }
        if let Some((Origin::File(other), _)) = values.get(name) {
            let (first, second) = sorted(other, &key);
            return Err(Error::Config(format!(
                "settings `{first}` and `{second}` in [celery] both set `{name}`: keep only `{name}`"
            )));
        }
        values.insert(name, (Origin::File(key), value));
    }

    let mut env: Vec<(String, String)> = env.into_iter().collect();
    env.sort();
    let mut from_env: BTreeMap<&'static str, String> = BTreeMap::new();
    for (var, raw) in env {
        let key = keys::env_key(&var);
        if !matches!(key, EnvKey::Setting(..)) && !raw.is_empty() {
            if let Some(accepted) = accepted::env_accepted(&var) {
                deprecations.push(format!(
                    "environment variable `{var}` ({}): {}",
                    accepted.names[0], accepted.note
                ));
                continue;
            }
        }
        let (name, spelling) = match key {
            EnvKey::Setting(name, spelling) => (name, spelling),
            EnvKey::UnknownCelery => {
                let hint = keys::suggest(var.strip_prefix("CELERY_").unwrap_or(&var))
                    .map(|name| format!(" (did you mean `CELERY_{}`?)", name.to_uppercase()))
                    .unwrap_or_default();
                tracing::debug!("environment variable `{var}` names no setting; ignored{hint}");
                continue;
            }
            EnvKey::Other => continue,
        };
        if raw.is_empty() {
            tracing::debug!("environment variable `{var}` is empty; ignored");
            continue;
        }
        let current = format!("CELERY_{}", name.to_uppercase());
        if spelling == Spelling::Legacy {
            deprecations.push(format!(
                "environment variable `{var}` is a deprecated Celery 3 name: rename it to \
                 `{current}`"
            ));
        }
        if let Some(other) = from_env.get(name) {
            let (first, second) = sorted(other, &var);
            return Err(Error::Config(format!(
                "environment variables `{first}` and `{second}` both set `{name}`: keep only \
                 `{current}`"
            )));
        }
        let value = env::env_value(name, &raw);
        values.insert(name, (Origin::Env(var.clone()), value));
        from_env.insert(name, var);
    }

    let mut table = toml::Table::new();
    for (name, (origin, value)) in &values {
        if let Err(error) = deserialize_one(name, value.clone()) {
            return Err(type_error(name, origin, value, &error));
        }
        table.insert((*name).to_owned(), value.clone());
    }
    let settings: Settings = Value::Table(table)
        .try_into()
        .map_err(|e| Error::Config(format!("[celery]: {e}")))?;
    validate::check(&settings).map_err(|invalid| {
        let origin = values.get(invalid.key).map(|(origin, _)| origin);
        invalid_error(&invalid, origin)
    })?;
    Ok(Loaded {
        settings,
        deprecations,
    })
}

/// `a` and `b` in alphabetical order.
fn sorted<'a>(a: &'a str, b: &'a str) -> (&'a str, &'a str) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

/// Settings with only `name` set to `value`: whether the value has the setting's type.
fn deserialize_one(name: &str, value: Value) -> std::result::Result<Settings, toml::de::Error> {
    let mut table = toml::Table::new();
    table.insert(name.to_owned(), value);
    Value::Table(table).try_into()
}

fn type_error(name: &str, origin: &Origin, value: &Value, error: &toml::de::Error) -> Error {
    // For tables and arrays serde knows which part is wrong; for scalars it adds nothing.
    let detail = if matches!(value, Value::Table(_) | Value::Array(_)) {
        let message = error.to_string();
        format!(" ({})", message.lines().next().unwrap_or_default())
    } else {
        String::new()
    };
    Error::Config(format!(
        "setting `{name}`{}: expected {}, got {}{detail}",
        origin.suffix(name),
        keys::expected(name),
        shown_value(value),
    ))
}

fn invalid_error(invalid: &Invalid, origin: Option<&Origin>) -> Error {
    let suffix = origin.map_or_else(String::new, |origin| origin.suffix(invalid.key));
    Error::Config(format!(
        "setting `{}`{suffix}: {}",
        invalid.key, invalid.message
    ))
}

/// The error for a setting that names a driver this build leaves out: which Cargo feature
/// of celery-web brings it. (Unused in a build with every driver.)
#[cfg_attr(
    all(feature = "sqlite", feature = "postgres", feature = "redis"),
    allow(dead_code)
)]
pub(crate) fn feature_missing(key: &str, feature: &str) -> Error {
    Error::Config(format!(
        "{key}: this binary is built without celery-web's `{feature}` feature; enable it in \
         the site's Cargo.toml (celery-web = {{ version = \"...\", features = [\"{feature}\"] }})"
    ))
}
