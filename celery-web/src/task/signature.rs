//! Signatures: a task call waiting to be sent, with its options.

use std::marker::PhantomData;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use super::AsyncResult;
use crate::{Celery, Error, Result};

/// Options of one call (`apply_async(**options)` in Celery).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SendOptions {
    /// Run no earlier than this.
    pub eta: Option<DateTime<Utc>>,
    /// Seconds from now (turned into `eta` when sent).
    pub countdown: Option<f64>,
    /// Revoke instead of running after this time.
    pub expires: Option<DateTime<Utc>>,
    /// Target queue.
    pub queue: Option<String>,
    /// 0 (lowest) to 9 (highest).
    pub priority: Option<u8>,
    /// Task id to use instead of a fresh UUID.
    pub task_id: Option<String>,
    /// Extra headers (for example `periodic_task_name`).
    pub headers: Map<String, Value>,
    /// `[hard, soft]` time limits in seconds for this call.
    pub time_limit: Option<f64>,
    /// Soft time limit for this call.
    pub soft_time_limit: Option<f64>,
    /// Don't store the result.
    pub ignore_result: Option<bool>,
    /// Signature dicts called with the result on success (`link`).
    pub link: Vec<Value>,
    /// Signature dicts called with the task id on failure (`link_error`).
    pub link_error: Vec<Value>,
    /// The arguments are final: a chain or callback prepends nothing (`si()` in Celery).
    pub immutable: bool,
}

/// A task call that has not been sent yet: name, arguments and options.
///
/// `T` is the task's return type, so [`AsyncResult::get`] is typed. `#[task]` generates
/// `my_task::s(...)`; [`Signature::new`] builds one by name for tasks defined elsewhere
/// (another service, Python), with `T = serde_json::Value`.
///
/// ```no_run
/// # async fn demo() -> celery_web::Result<()> {
/// use celery_web::task::Signature;
/// let result = Signature::new("proj.tasks.add")
///     .arg(2)
///     .arg(3)
///     .countdown(10)
///     .queue("math")
///     .apply_async()
///     .await?;
/// println!("sent {}", result.id());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Signature<T = Value> {
    task: String,
    args: Vec<Value>,
    kwargs: Map<String, Value>,
    options: SendOptions,
    error: Option<String>,
    output: PhantomData<fn() -> T>,
}

impl<T> Clone for Signature<T> {
    fn clone(&self) -> Self {
        Signature {
            task: self.task.clone(),
            args: self.args.clone(),
            kwargs: self.kwargs.clone(),
            options: self.options.clone(),
            error: self.error.clone(),
            output: PhantomData,
        }
    }
}

impl Signature<Value> {
    /// A call of the task named `task`, with no arguments yet.
    pub fn new(task: impl Into<String>) -> Self {
        Signature::with_output(task)
    }
}

impl<T> Signature<T> {
    /// A call of `task` whose result deserializes into `T`.
    pub fn with_output(task: impl Into<String>) -> Self {
        Signature {
            task: task.into(),
            args: Vec::new(),
            kwargs: Map::new(),
            options: SendOptions::default(),
            error: None,
            output: PhantomData,
        }
    }

    /// Appends a positional argument.
    pub fn arg(mut self, value: impl Serialize) -> Self {
        match serde_json::to_value(value) {
            Ok(value) => self.args.push(value),
            Err(e) => self.error = Some(e.to_string()),
        }
        self
    }

    /// Sets a keyword argument.
    pub fn kwarg(mut self, name: &str, value: impl Serialize) -> Self {
        match serde_json::to_value(value) {
            Ok(value) => {
                self.kwargs.insert(name.to_owned(), value);
            }
            Err(e) => self.error = Some(e.to_string()),
        }
        self
    }

    /// Replaces all positional and keyword arguments with JSON values.
    pub fn with_arguments(mut self, args: Vec<Value>, kwargs: Map<String, Value>) -> Self {
        self.args = args;
        self.kwargs = kwargs;
        self
    }

    /// Run no earlier than `seconds` from when it is sent.
    pub fn countdown(mut self, seconds: impl Into<f64>) -> Self {
        self.options.countdown = Some(seconds.into());
        self
    }

    /// Run no earlier than `eta`.
    pub fn eta(mut self, eta: DateTime<Utc>) -> Self {
        self.options.eta = Some(eta);
        self
    }

    /// Revoke the task if it has not started `after` from now.
    pub fn expires_in(mut self, after: Duration) -> Self {
        let when = chrono::Duration::from_std(after)
            .ok()
            .and_then(|after| Utc::now().checked_add_signed(after));
        match when {
            Some(when) => self.options.expires = Some(when),
            None => self.error = Some(format!("expires_in({after:?}) is too far away")),
        }
        self
    }

    /// Revoke the task if it has not started at `when`.
    pub fn expires(mut self, when: DateTime<Utc>) -> Self {
        self.options.expires = Some(when);
        self
    }

    /// Send to `queue`.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.options.queue = Some(queue.into());
        self
    }

    /// Priority, 0 (lowest) to 9 (highest).
    pub fn priority(mut self, priority: u8) -> Self {
        self.options.priority = Some(priority);
        self
    }

    /// Use this task id.
    pub fn task_id(mut self, id: impl Into<String>) -> Self {
        self.options.task_id = Some(id.into());
        self
    }

    /// Adds a message header.
    pub fn header(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.options.headers.insert(name.to_owned(), value.into());
        self
    }

    /// Hard time limit in seconds for this call.
    pub fn time_limit(mut self, seconds: f64) -> Self {
        self.options.time_limit = Some(seconds);
        self
    }

    /// Soft time limit in seconds for this call.
    pub fn soft_time_limit(mut self, seconds: f64) -> Self {
        self.options.soft_time_limit = Some(seconds);
        self
    }

    /// Don't store the result of this call.
    pub fn ignore_result(mut self, ignore: bool) -> Self {
        self.options.ignore_result = Some(ignore);
        self
    }

    /// An immutable signature (Celery's `.si()`): as a chain link or callback it is called
    /// with its own arguments only, the previous result is not prepended.
    pub fn immutable(mut self) -> Self {
        self.options.immutable = true;
        self
    }

    /// On success, `callback` is called with this task's result prepended (Celery's `link`).
    pub fn link<U>(mut self, callback: &Signature<U>) -> Self {
        self.options.link.push(callback.to_dict());
        self
    }

    /// On failure, `errback` is called with this task's id prepended (Celery's
    /// `link_error`, old-style convention, which crosses languages).
    pub fn link_error<U>(mut self, errback: &Signature<U>) -> Self {
        self.options.link_error.push(errback.to_dict());
        self
    }

    /// The signature as Celery's JSON dict (`{"task", "args", "kwargs", "options",
    /// "subtask_type": null, "immutable"}`), as carried in workflow links.
    ///
    /// ```
    /// use celery_web::task::Signature;
    /// let dict = Signature::new("proj.add").arg(2).task_id("t1").immutable().to_dict();
    /// assert_eq!(dict["task"], "proj.add");
    /// assert_eq!(dict["args"], serde_json::json!([2]));
    /// assert_eq!(dict["options"]["task_id"], "t1");
    /// assert_eq!(dict["immutable"], true);
    /// ```
    pub fn to_dict(&self) -> Value {
        let call = &self.options;
        let mut options = Map::new();
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                options.insert(key.to_owned(), value);
            }
        };
        put("task_id", call.task_id.clone().map(Value::from));
        put("queue", call.queue.clone().map(Value::from));
        put("priority", call.priority.map(Value::from));
        put("countdown", call.countdown.map(Value::from));
        put("time_limit", call.time_limit.map(Value::from));
        put("soft_time_limit", call.soft_time_limit.map(Value::from));
        put(
            "link",
            (!call.link.is_empty()).then(|| Value::Array(call.link.clone())),
        );
        put(
            "link_error",
            (!call.link_error.is_empty()).then(|| Value::Array(call.link_error.clone())),
        );
        serde_json::json!({
            "task": self.task,
            "args": self.args,
            "kwargs": self.kwargs,
            "options": options,
            "subtask_type": null,
            "immutable": call.immutable,
        })
    }

    /// Task name.
    pub fn task(&self) -> &str {
        &self.task
    }

    /// Positional arguments.
    pub fn args(&self) -> &[Value] {
        &self.args
    }

    /// Keyword arguments.
    pub fn kwargs(&self) -> &Map<String, Value> {
        &self.kwargs
    }

    /// Call options.
    pub fn options(&self) -> &SendOptions {
        &self.options
    }

    /// Fails if an argument could not be serialized.
    pub(crate) fn check(&self) -> Result<()> {
        match &self.error {
            Some(reason) => Err(Error::Arguments {
                task: self.task.clone(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Sends the call through the installed app ([`Celery::install`]).
    pub async fn apply_async(self) -> Result<AsyncResult<T>> {
        let app = Celery::current()?;
        app.send(self).await
    }

    /// Sends the call through `app`.
    pub async fn apply_async_on(self, app: &Celery) -> Result<AsyncResult<T>> {
        app.send(self).await
    }

    /// Sends the call inside the caller's open diesel transaction: the task is enqueued
    /// only if that transaction commits. Needs the database broker on the same database.
    ///
    /// ```no_run
    /// # fn demo(conn: &mut diesel::SqliteConnection) -> celery_web::Result<()> {
    /// use diesel::Connection;
    /// use celery_web::task::Signature;
    /// conn.transaction::<_, celery_web::Error, _>(|conn| {
    ///     // ... insert the site's own rows with `conn` ...
    ///     Signature::new("accounts.send_welcome_email").arg(42).apply_in(conn)?;
    ///     Ok(())
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn apply_in<C>(self, conn: &mut C) -> Result<AsyncResult<T>>
    where
        C: crate::broker::database::TransactionalConnection,
    {
        let app = Celery::current()?;
        if crate::db::DbKind::of(&app.settings().broker_url) != Some(C::KIND) {
            return Err(Error::Config(format!(
                "apply_in enqueues with the site's own database connection, so broker_url must \
                 be that database (a {:?} database); it is `{}`",
                C::KIND,
                crate::settings::masked_url(&app.settings().broker_url)
            )));
        }
        let message = app.message_for(&self)?;
        crate::broker::database::publish_in(conn, &message)?;
        Ok(app.async_result(message.id()))
    }
}
