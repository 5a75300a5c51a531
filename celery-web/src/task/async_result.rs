//! Following a sent task: state, result, traceback.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::State;
use crate::backend::TaskRecord;
use crate::{Celery, Error, Result};

/// A handle on a task that was sent: its id, and reads of its state from the result backend.
///
/// `T` is the task's return type; [`AsyncResult::get`] deserializes into it.
pub struct AsyncResult<T = Value> {
    id: String,
    app: Celery,
    /// The outcome of a task run in eager mode, which the backend never sees.
    eager: Option<Arc<TaskRecord>>,
    output: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult").field("id", &self.id).finish()
    }
}

impl<T> Clone for AsyncResult<T> {
    fn clone(&self) -> Self {
        AsyncResult {
            id: self.id.clone(),
            app: self.app.clone(),
            eager: self.eager.clone(),
            output: PhantomData,
        }
    }
}

impl<T> AsyncResult<T> {
    pub(crate) fn new(id: &str, app: Celery) -> Self {
        AsyncResult {
            id: id.to_owned(),
            app,
            eager: None,
            output: PhantomData,
        }
    }

    /// The result of a task that ran in eager mode.
    pub(crate) fn eager(record: TaskRecord, app: Celery) -> Self {
        AsyncResult {
            id: record.task_id.clone(),
            app,
            eager: Some(Arc::new(record)),
            output: PhantomData,
        }
    }

    /// Task id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The backend's record of the task; `None` while it is PENDING (or unknown).
    pub async fn info(&self) -> Result<Option<TaskRecord>> {
        if let Some(record) = &self.eager {
            return Ok(Some(TaskRecord::clone(record)));
        }
        self.app.result_backend()?.fetch(&self.id).await
    }

    /// Current state; PENDING for an id the backend does not know, as in Celery.
    pub async fn state(&self) -> Result<State> {
        Ok(self.info().await?.map_or(State::Pending, |r| r.status))
    }

    /// Whether the task finished (SUCCESS, FAILURE or REVOKED).
    pub async fn ready(&self) -> Result<bool> {
        Ok(self.state().await?.is_ready())
    }

    /// Whether the task finished with SUCCESS.
    pub async fn successful(&self) -> Result<bool> {
        Ok(self.state().await? == State::Success)
    }

    /// Whether the task finished with FAILURE.
    pub async fn failed(&self) -> Result<bool> {
        Ok(self.state().await? == State::Failure)
    }

    /// The traceback of a failed task.
    pub async fn traceback(&self) -> Result<Option<String>> {
        Ok(self.info().await?.and_then(|r| r.traceback))
    }

    /// Deletes the stored result; the task then reads as PENDING.
    pub async fn forget(&self) -> Result<()> {
        if self.eager.is_some() {
            return Ok(());
        }
        self.app.result_backend()?.forget(&self.id).await
    }
}

impl<T: DeserializeOwned> AsyncResult<T> {
    /// Waits for the task to finish and returns its value.
    ///
    /// FAILURE and REVOKED become [`Error::TaskFailed`] with the exception type and message;
    /// not finishing within `timeout` is [`Error::Timeout`].
    pub async fn get(&self, timeout: Duration) -> Result<T> {
        let record = match &self.eager {
            Some(record) => Some(TaskRecord::clone(record)),
            None => self.app.result_backend()?.wait(&self.id, timeout).await?,
        };
        let Some(record) = record.filter(|r| r.status.is_ready()) else {
            return Err(Error::Timeout {
                task_id: self.id.clone(),
                waited: timeout,
            });
        };
        if record.status.propagates() {
            return Err(failed(record));
        }
        serde_json::from_value(record.result.unwrap_or(Value::Null)).map_err(|e| {
            Error::ResultType {
                task_id: self.id.clone(),
                reason: e.to_string(),
            }
        })
    }
}

/// The error of a FAILURE or REVOKED record.
pub(crate) fn failed(record: TaskRecord) -> Error {
    let (exc_type, exc_message) = record.exception_parts();
    Error::TaskFailed {
        task_id: record.task_id,
        exc_type,
        exc_message,
        traceback: record.traceback,
    }
}
