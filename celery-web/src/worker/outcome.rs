//! Running a task body and judging how it ended: shared by the worker and eager mode.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::backend::TaskRecord;
use crate::protocol::Message;
use crate::task::{State, TaskArgs, TaskContext, TaskError, TaskOptions, TaskRunner};

/// How a body ended.
#[derive(Debug)]
pub(crate) enum Ending {
    /// It returned.
    Returned(Result<Value, TaskError>),
    /// It panicked, with this message.
    Panicked(String),
    /// It passed its hard time limit (seconds).
    TimedOut(f64),
    /// The process running it died (process pool): billiard's `WorkerLostError` message.
    Lost(String),
}

/// A failure, as Celery describes exceptions.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Exception {
    pub(crate) exc_type: String,
    pub(crate) message: String,
    pub(crate) traceback: Option<String>,
    /// The stored result when it is not `{exc_type, exc_message: [message], exc_module:
    /// "builtins"}` (billiard's exceptions).
    pub(crate) stored: Option<Value>,
}

/// A request to run the task again.
#[derive(Debug)]
pub(crate) struct RetryRequest {
    pub(crate) countdown: Option<Duration>,
    pub(crate) eta: Option<DateTime<Utc>>,
    pub(crate) max_retries: u32,
    /// Why: the error that triggered an autoretry, or the reason given to `retry()`.
    pub(crate) cause: Exception,
}

/// What to do about an ending.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// SUCCESS with this value.
    Success(Value),
    /// Store nothing.
    Ignore,
    /// Run again, if retries remain.
    Retry(RetryRequest),
    /// FAILURE.
    Failure(Exception),
}

impl Ending {
    /// Judges the ending of a task with `options` (`autoretry`, `max_retries`).
    pub(crate) fn verdict(self, options: &TaskOptions) -> Verdict {
        match self {
            Ending::Returned(Ok(value)) => Verdict::Success(value),
            Ending::Returned(Err(TaskError::Ignore)) => Verdict::Ignore,
            Ending::Returned(Err(TaskError::Retry(retry))) => Verdict::Retry(RetryRequest {
                countdown: retry.countdown,
                eta: retry.eta,
                max_retries: retry.max_retries.unwrap_or_else(|| options.max_retries()),
                cause: Exception {
                    exc_type: "Retry".to_owned(),
                    message: retry.reason.unwrap_or_else(|| "retry requested".to_owned()),
                    traceback: None,
                    stored: None,
                },
            }),
            Ending::Returned(Err(error)) => {
                let (exc_type, message) = error.exception();
                let traceback = match &error {
                    TaskError::Failed { traceback, .. } => traceback.clone(),
                    _ => None,
                };
                let cause = Exception {
                    exc_type,
                    message,
                    traceback,
                    stored: None,
                };
                if options.autoretry && matches!(error, TaskError::Failed { .. }) {
                    Verdict::Retry(RetryRequest {
                        countdown: None,
                        eta: None,
                        max_retries: options.max_retries(),
                        cause,
                    })
                } else {
                    Verdict::Failure(cause)
                }
            }
            Ending::Panicked(panic) => Verdict::Failure(Exception {
                exc_type: "Panic".to_owned(),
                traceback: Some(format!("task panicked: {panic}")),
                message: panic,
                stored: None,
            }),
            // As Celery's parent stores them: billiard's exceptions, no traceback.
            Ending::TimedOut(limit) => {
                let seconds = seconds_value(limit);
                Verdict::Failure(Exception {
                    exc_type: "TimeLimitExceeded".to_owned(),
                    message: seconds.to_string(),
                    traceback: None,
                    stored: Some(billiard_exception("TimeLimitExceeded", seconds)),
                })
            }
            Ending::Lost(message) => Verdict::Failure(Exception {
                exc_type: "WorkerLostError".to_owned(),
                stored: Some(billiard_exception(
                    "WorkerLostError",
                    Value::from(message.clone()),
                )),
                message,
                traceback: None,
            }),
        }
    }
}

impl RetryRequest {
    /// The failure stored when no retry is left (Celery's `MaxRetriesExceededError`).
    pub(crate) fn exhausted(&self, task: &str, message: &Message) -> Exception {
        let Exception {
            exc_type,
            message: reason,
            traceback,
            ..
        } = &self.cause;
        Exception {
            stored: None,
            exc_type: "MaxRetriesExceededError".to_owned(),
            message: format!(
                "Can't retry {task}[{}] args:{} kwargs:{} (max_retries={}): {exc_type}: {reason}",
                message.id(),
                Value::Array(message.args.clone()),
                Value::Object(message.kwargs.clone()),
                self.max_retries,
            ),
            traceback: traceback.clone(),
        }
    }
}

/// Runs the body: async bodies on the runtime, sync bodies on the blocking pool; catches
/// panics; enforces the hard time limit.
///
/// `slot` (the worker's execution permit) is held by the body itself: it is freed when an
/// async body ends or is aborted, and when a sync body's thread really ends, even after its
/// hard time limit was reported. Dropping the returned future aborts an async body.
pub(crate) async fn execute(
    runner: TaskRunner,
    context: TaskContext,
    args: TaskArgs,
    hard_limit: Option<f64>,
    slot: Option<OwnedSemaphorePermit>,
) -> Ending {
    let mut handle = AbortOnDrop(match runner {
        TaskRunner::Async(body) => tokio::spawn(
            async move {
                let _slot = slot;
                body(context, args).await
            }
            .in_current_span(),
        ),
        TaskRunner::Blocking(body) => {
            let span = tracing::Span::current();
            tokio::task::spawn_blocking(move || {
                let _slot = slot;
                span.in_scope(|| body(context, args))
            })
        }
    });
    let joined = match hard_limit {
        None => (&mut handle.0).await,
        Some(limit) => {
            let limit_duration = Duration::try_from_secs_f64(limit).unwrap_or(Duration::MAX);
            match tokio::time::timeout(limit_duration, &mut handle.0).await {
                Ok(joined) => joined,
                // Dropping the handle stops an async body at its next await point. A sync body
                // cannot be stopped from outside its thread: it runs on, and what it returns is
                // discarded.
                Err(_) => return Ending::TimedOut(limit),
            }
        }
    };
    match joined {
        Ok(result) => Ending::Returned(result),
        Err(error) if error.is_panic() => Ending::Panicked(panic_message(&*error.into_panic())),
        Err(error) => Ending::Panicked(format!("task was cancelled: {error}")),
    }
}

/// Aborts the task when dropped (a plain `JoinHandle` detaches it).
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The message of a panic payload (`panic!` with a literal or with a formatted string).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic with a non-string payload".to_owned())
}

/// `record` as a FAILURE with `exception`.
pub(crate) fn failure(mut record: TaskRecord, exception: Exception) -> TaskRecord {
    record.status = State::Failure;
    record.result = Some(
        exception
            .stored
            .unwrap_or_else(|| TaskRecord::exception(&exception.exc_type, &exception.message)),
    );
    record.traceback = exception.traceback;
    record
}

/// A limit in seconds as Python wrote it: `2` for a whole number, else `2.5`.
fn seconds_value(limit: f64) -> Value {
    if limit.fract() == 0.0 && limit.abs() < 1e15 {
        Value::from(limit as i64)
    } else {
        Value::from(limit)
    }
}

/// One of billiard's exceptions as Celery stores it.
fn billiard_exception(exc_type: &str, argument: Value) -> Value {
    serde_json::json!({
        "exc_type": exc_type,
        "exc_message": [argument],
        "exc_module": "billiard.exceptions",
    })
}
