//! What a running task knows about itself (`self.request` in Celery).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::Retry;

/// The context of one execution, given to `#[task(bind)]` functions as their first parameter.
///
/// ```
/// use celery_web::prelude::*;
///
/// #[task(bind, max_retries = 2)]
/// async fn flaky(ctx: TaskContext, n: i64) -> TaskResult<i64> {
///     if ctx.retries() < 2 {
///         return Err(ctx.retry().reason("not yet").into());
///     }
///     Ok(n)
/// }
/// # fn main() {}
/// ```
#[derive(Debug, Clone)]
pub struct TaskContext {
    inner: Arc<ContextInner>,
}

#[derive(Debug)]
struct ContextInner {
    id: String,
    task: String,
    retries: u32,
    hostname: String,
    eta: Option<DateTime<Utc>>,
    periodic_task_name: Option<String>,
    soft_deadline: Option<Instant>,
}

impl TaskContext {
    pub(crate) fn new(
        id: &str,
        task: &str,
        retries: u32,
        hostname: &str,
        eta: Option<DateTime<Utc>>,
        periodic_task_name: Option<&str>,
        soft_time_limit: Option<Duration>,
    ) -> Self {
        TaskContext {
            inner: Arc::new(ContextInner {
                id: id.to_owned(),
                task: task.to_owned(),
                retries,
                hostname: hostname.to_owned(),
                eta,
                periodic_task_name: periodic_task_name.map(str::to_owned),
                soft_deadline: soft_time_limit.map(|limit| Instant::now() + limit),
            }),
        }
    }

    /// A context for calling a bound task directly, outside a worker (tests, eager mode).
    pub fn detached(task: &str) -> Self {
        TaskContext::new(
            &uuid::Uuid::new_v4().to_string(),
            task,
            0,
            "detached",
            None,
            None,
            None,
        )
    }

    /// Task id.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// Task name.
    pub fn task(&self) -> &str {
        &self.inner.task
    }

    /// How many times this task was retried before this run.
    pub fn retries(&self) -> u32 {
        self.inner.retries
    }

    /// Hostname of the worker running the task.
    pub fn hostname(&self) -> &str {
        &self.inner.hostname
    }

    /// The eta the message carried, if any.
    pub fn eta(&self) -> Option<DateTime<Utc>> {
        self.inner.eta
    }

    /// Name of the periodic task that sent this one, when beat did.
    pub fn periodic_task_name(&self) -> Option<&str> {
        self.inner.periodic_task_name.as_deref()
    }

    /// Ask the worker to run the task again (`self.retry()` in Celery).
    pub fn retry(&self) -> Retry {
        Retry::default()
    }

    /// Whether the soft time limit has passed (Celery raises `SoftTimeLimitExceeded`; here
    /// the task checks, or awaits [`TaskContext::soft_time_limit`]).
    pub fn soft_time_limit_exceeded(&self) -> bool {
        self.inner
            .soft_deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
    }

    /// Completes when the soft time limit passes; never, when the task has none.
    /// Use it in `tokio::select!` to clean up before the hard limit.
    pub async fn soft_time_limit(&self) {
        match self.inner.soft_deadline {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => std::future::pending().await,
        }
    }
}
