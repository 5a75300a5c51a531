//! The crate's error type.

use crate::db::{DatabaseError, DatabaseErrorKind};
use crate::protocol::ProtocolError;

/// Any error, as the source of a [`Error::Broker`] or [`Error::Backend`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

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
    /// The broker failed (connection, query, ...); the driver's error is the source.
    #[error("broker error: {0}")]
    Broker(#[source] BoxError),
    /// The result backend failed; the driver's error is the source.
    #[error("result backend error: {0}")]
    Backend(#[source] BoxError),
    /// A database operation failed; [`DatabaseError::kind`] says how.
    #[error("database error: {0}")]
    Database(#[from] DatabaseError),
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
        Error::Database(error.into())
    }
}

impl From<diesel::r2d2::PoolError> for Error {
    fn from(error: diesel::r2d2::PoolError) -> Self {
        Error::Database(error.into())
    }
}

impl Error {
    /// A broker error from a message or another error.
    pub(crate) fn broker(error: impl Into<BoxError>) -> Self {
        Error::Broker(error.into())
    }

    /// A result-backend error from a message or another error.
    pub(crate) fn backend(error: impl Into<BoxError>) -> Self {
        Error::Backend(error.into())
    }

    /// The kind of a database failure, if this is one.
    ///
    /// ```
    /// use celery_web::db::DatabaseErrorKind;
    /// # fn handle(error: celery_web::Error) -> u16 {
    /// match error.database_kind() {
    ///     Some(DatabaseErrorKind::UniqueViolation) => 409,
    ///     _ if error.is_unavailable() => 503,
    ///     _ => 500,
    /// }
    /// # }
    /// ```
    pub fn database_kind(&self) -> Option<&DatabaseErrorKind> {
        match self {
            Error::Database(error) => Some(error.kind()),
            _ => None,
        }
    }

    /// Whether a unique constraint refused a row (a duplicate).
    pub fn is_unique_violation(&self) -> bool {
        self.database_kind() == Some(&DatabaseErrorKind::UniqueViolation)
    }

    /// Whether a table celery-web needs is missing (migrations have not run).
    pub fn is_missing_table(&self) -> bool {
        matches!(
            self.database_kind(),
            Some(DatabaseErrorKind::MissingTable { .. })
        )
    }

    /// Whether the broker, backend or database could not be reached, or did not answer in
    /// time: a failure worth retrying later (503), not a bug. Looks through the sources for
    /// refused connections and time-outs.
    pub fn is_unavailable(&self) -> bool {
        if matches!(
            self.database_kind(),
            Some(DatabaseErrorKind::Unavailable | DatabaseErrorKind::Timeout)
        ) {
            return true;
        }
        let mut source: Option<&(dyn std::error::Error + 'static)> = match self {
            Error::Broker(error) | Error::Backend(error) => Some(error.as_ref()),
            Error::Io(error) => Some(error),
            _ => None,
        };
        while let Some(error) = source {
            if let Some(io) = error.downcast_ref::<std::io::Error>() {
                use std::io::ErrorKind as K;
                if matches!(
                    io.kind(),
                    K::ConnectionRefused
                        | K::ConnectionReset
                        | K::ConnectionAborted
                        | K::NotConnected
                        | K::TimedOut
                        | K::BrokenPipe
                ) {
                    return true;
                }
            }
            #[cfg(feature = "redis")]
            if let Some(redis) = error.downcast_ref::<redis::RedisError>() {
                if redis.is_connection_refusal()
                    || redis.is_timeout()
                    || redis.is_connection_dropped()
                    || redis.is_io_error()
                {
                    return true;
                }
            }
            source = error.source();
        }
        false
    }
}

/// `celery_web::Error` as an actix-web response: 409 for a duplicate, 503 when a broker, backend
/// or database is unreachable, 400 for bad task arguments, else 500. The body is a short JSON
/// text without the details (they go to the log).
impl actix_web::ResponseError for Error {
    fn status_code(&self) -> actix_web::http::StatusCode {
        use actix_web::http::StatusCode;
        if self.is_unique_violation() {
            StatusCode::CONFLICT
        } else if self.is_unavailable() {
            StatusCode::SERVICE_UNAVAILABLE
        } else if matches!(self, Error::Arguments { .. }) {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }

    fn error_response(&self) -> actix_web::HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let text = match status.as_u16() {
            409 => "already exists",
            503 => "try again later",
            400 => "bad arguments",
            _ => "internal error",
        };
        actix_web::HttpResponse::build(status).json(serde_json::json!({ "error": text }))
    }
}

#[cfg(test)]
mod tests {
    use actix_web::ResponseError;

    use super::*;

    #[test]
    fn responses_say_little_and_pick_the_status_by_kind() {
        let duplicate = Error::Database(DatabaseError::new(
            DatabaseErrorKind::UniqueViolation,
            "UNIQUE constraint failed: signups.email",
        ));
        assert_eq!(duplicate.status_code().as_u16(), 409);
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let broker = Error::broker(refused);
        assert!(broker.is_unavailable());
        assert_eq!(broker.status_code().as_u16(), 503);
        let pool = Error::Database(DatabaseError::new(DatabaseErrorKind::Timeout, "pool"));
        assert_eq!(pool.status_code().as_u16(), 503);
        let other = Error::broker("secret internal detail");
        assert!(!other.is_unavailable());
        let response = other.error_response();
        assert_eq!(response.status().as_u16(), 500);
        let body = actix_web::body::to_bytes(response.into_body());
        let body = futures_body(body);
        assert!(!body.contains("secret"), "{body}");
        assert!(body.contains("internal error"), "{body}");
    }

    fn futures_body(
        body: impl std::future::Future<Output = Result<actix_web::web::Bytes, impl std::fmt::Debug>>,
    ) -> String {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        String::from_utf8(runtime.block_on(body).unwrap().to_vec()).unwrap()
    }

    #[test]
    fn sources_are_kept() {
        let error = Error::broker(std::io::Error::other("disk on fire"));
        let source = std::error::Error::source(&error).expect("a source");
        assert_eq!(source.to_string(), "disk on fire");
    }
}
