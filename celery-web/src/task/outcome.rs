//! What a task body returns when it does not simply succeed.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The error side of [`TaskResult`]: a failure, or an instruction to the worker
/// (retry, reject, ignore).
///
/// Any `std::error::Error` converts into a [`TaskError::Failed`], so `?` works in task bodies:
///
/// ```
/// use celery_web::prelude::*;
///
/// fn parse(text: &str) -> TaskResult<i64> {
///     Ok(text.parse::<i64>()?)
/// }
/// let error = parse("x").unwrap_err();
/// assert!(matches!(error, TaskError::Failed { ref exc_type, .. } if exc_type == "ParseIntError"));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum TaskError {
    /// The task failed. Stored as FAILURE (or retried when the task has `autoretry`).
    Failed {
        /// Error type name, shown as the exception class (`exc_type`).
        exc_type: String,
        /// Error message (`exc_message`).
        message: String,
        /// The error's `source()` chain or panic location, shown as the traceback.
        traceback: Option<String>,
    },
    /// Run the task again later: the worker re-sends it with `retries + 1` (state RETRY), or
    /// stores FAILURE with `MaxRetriesExceededError` when the task's `max_retries` is reached.
    Retry(Retry),
    /// The message is bad for good: FAILURE, no retry.
    Reject {
        /// Why.
        reason: String,
    },
    /// Store nothing: the task handled its own outcome.
    Ignore,
}

/// A retry request; build it with [`TaskError::retry`] or `TaskContext::retry`.
#[derive(Debug, Default)]
pub struct Retry {
    pub(crate) countdown: Option<Duration>,
    pub(crate) eta: Option<DateTime<Utc>>,
    pub(crate) max_retries: Option<u32>,
    pub(crate) reason: Option<String>,
}

impl Retry {
    /// Run again after `delay` instead of the task's default retry delay or backoff.
    pub fn countdown(mut self, delay: Duration) -> Self {
        self.countdown = Some(delay);
        self
    }

    /// Run again at `eta`.
    pub fn eta(mut self, eta: DateTime<Utc>) -> Self {
        self.eta = Some(eta);
        self
    }

    /// Override the task's `max_retries` for this decision.
    pub fn max_retries(mut self, max: u32) -> Self {
        self.max_retries = Some(max);
        self
    }

    /// Record why (shown in the RETRY result and in the final failure).
    pub fn reason(mut self, reason: impl std::fmt::Display) -> Self {
        self.reason = Some(reason.to_string());
        self
    }
}

impl From<Retry> for TaskError {
    fn from(retry: Retry) -> Self {
        TaskError::Retry(retry)
    }
}

impl TaskError {
    /// A failure with a message; `exc_type` is `TaskError`.
    pub fn failed(message: impl std::fmt::Display) -> Self {
        TaskError::Failed {
            exc_type: "TaskError".to_owned(),
            message: message.to_string(),
            traceback: None,
        }
    }

    /// A retry request with the task's default delay policy.
    pub fn retry() -> Retry {
        Retry::default()
    }

    /// A permanent rejection: FAILURE without retry.
    pub fn reject(reason: impl std::fmt::Display) -> Self {
        TaskError::Reject {
            reason: reason.to_string(),
        }
    }

    /// Celery's `(exc_type, exc_message)` for this error.
    pub(crate) fn exception(&self) -> (String, String) {
        match self {
            TaskError::Failed {
                exc_type, message, ..
            } => (exc_type.clone(), message.clone()),
            TaskError::Retry(retry) => (
                "Retry".to_owned(),
                retry
                    .reason
                    .clone()
                    .unwrap_or_else(|| "retry requested".to_owned()),
            ),
            TaskError::Reject { reason } => ("Reject".to_owned(), reason.clone()),
            TaskError::Ignore => ("Ignore".to_owned(), String::new()),
        }
    }
}

impl<E> From<E> for TaskError
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn from(error: E) -> Self {
        let full_name = std::any::type_name::<E>();
        let exc_type = short_type_name(full_name);
        let mut chain = Vec::new();
        let mut source = error.source();
        while let Some(cause) = source {
            chain.push(format!("caused by: {cause}"));
            source = cause.source();
        }
        TaskError::Failed {
            exc_type,
            message: error.to_string(),
            traceback: (!chain.is_empty()).then(|| chain.join("\n")),
        }
    }
}

/// `core::num::error::ParseIntError` → `ParseIntError`; generics are dropped.
fn short_type_name(full: &str) -> String {
    let without_generics = full.split('<').next().unwrap_or(full);
    without_generics
        .rsplit("::")
        .next()
        .unwrap_or(without_generics)
        .to_owned()
}

/// What a task body returns: its value, or a [`TaskError`].
pub type TaskResult<T> = Result<T, TaskError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn std_errors_keep_their_type_name_and_chain() {
        let io = std::io::Error::other("disk full");
        let TaskError::Failed {
            exc_type, message, ..
        } = TaskError::from(io)
        else {
            panic!("expected Failed");
        };
        assert_eq!(exc_type, "Error");
        assert_eq!(message, "disk full");
        assert_eq!(short_type_name("a::b::C<d::E>"), "C");
    }
}
