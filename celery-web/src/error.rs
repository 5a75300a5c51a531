//! The crate's error type.

use crate::protocol::ProtocolError;

/// Every error celery-web returns to the site's code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is unknown or has a bad value; the message names the key.
    #[error("configuration error: {0}")]
    Config(String),
    /// The task registry is inconsistent (duplicate names, bad options, no tasks linked).
    #[error("task registry error: {0}")]
    Registry(String),
    /// No app was installed before a task was sent through `delay`.
    #[error(
        "no celery-web app is installed: build one with `Celery::from_settings(...)` \
         (or `Celery::from_config_file`) and call `.install()` at startup"
    )]
    NoApp,
    /// Arguments could not be serialized to JSON.
    #[error("cannot serialize the arguments of `{task}`: {reason}")]
    Arguments {
        /// Task name.
        task: String,
        /// What serde said.
        reason: String,
    },
    /// The broker failed (connection, query, ...).
    #[error("broker error: {0}")]
    Broker(String),
    /// The result backend failed.
    #[error("result backend error: {0}")]
    Backend(String),
    /// A database operation failed.
    #[error("database error: {0}")]
    Database(String),
    /// A message could not be decoded.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// `AsyncResult::get` gave up waiting.
    #[error("task {task_id} did not finish within {waited:?}")]
    Timeout {
        /// Task id.
        task_id: String,
        /// How long we waited.
        waited: std::time::Duration,
    },
    /// The task ended in FAILURE (or REVOKED); the fields are Celery's exception description.
    #[error("task {task_id} failed: {exc_type}: {exc_message}")]
    TaskFailed {
        /// Task id.
        task_id: String,
        /// Exception class name, for example `ValueError` or `TimeLimitExceeded`.
        exc_type: String,
        /// Exception message.
        exc_message: String,
        /// Traceback text, if the worker stored one.
        traceback: Option<String>,
    },
    /// The stored result does not deserialize into the type the caller asked for.
    #[error("result of task {task_id} has an unexpected type: {reason}")]
    ResultType {
        /// Task id.
        task_id: String,
        /// What serde said.
        reason: String,
    },
    /// A worker's background service (completer, heartbeat, embedded beat, ...) failed.
    #[error("background service `{name}` failed: {reason}")]
    Service {
        /// The service.
        name: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// Any other I/O failure.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// `Result` with celery-web's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<diesel::result::Error> for Error {
    fn from(error: diesel::result::Error) -> Self {
        Error::Database(error.to_string())
    }
}

impl From<diesel::r2d2::PoolError> for Error {
    fn from(error: diesel::r2d2::PoolError) -> Self {
        Error::Database(format!("connection pool: {error}"))
    }
}
