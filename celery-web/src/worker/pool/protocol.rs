//! What the worker and a pool child say to each other, one [frame](super::frame) each.
//!
//! The child speaks first with [`FromChild::Ready`]. Then, one at a time: the worker sends
//! [`ToChild::Run`], the child answers [`FromChild::Done`] with how the body ended and its
//! peak resident memory. The worker closes the socket to let a child go; a child that stops
//! answering is signalled.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::task::{Retry, TaskError};
use crate::worker::outcome::Ending;

/// From the worker to a child.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToChild {
    /// Run one task.
    Run(Job),
}

/// One task to run, with its request context and soft limit (the hard limit is the
/// worker's business: it signals the child).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Job {
    /// The pool's number for this job (Celery's `Job: N` in `WorkerLostError`).
    pub(crate) job: u64,
    pub(crate) task: String,
    pub(crate) id: String,
    pub(crate) args: Vec<Value>,
    pub(crate) kwargs: Map<String, Value>,
    pub(crate) retries: u32,
    pub(crate) hostname: String,
    pub(crate) eta: Option<DateTime<Utc>>,
    pub(crate) periodic_task_name: Option<String>,
    /// Seconds, from when the child starts the body.
    pub(crate) soft_time_limit: Option<f64>,
}

/// From a child to the worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FromChild {
    /// Started and ready for a job.
    Ready {
        /// The child's process id.
        pid: u32,
    },
    /// A job ended.
    Done {
        job: u64,
        ending: WireEnding,
        /// Peak resident memory of the child so far (`VmHWM`, Linux's `ru_maxrss`), KiB.
        peak_rss_kib: Option<u64>,
    },
}

/// An [`Ending`] on the wire.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum WireEnding {
    Returned(Value),
    Failed {
        exc_type: String,
        message: String,
        traceback: Option<String>,
    },
    Retry {
        countdown: Option<f64>,
        eta: Option<DateTime<Utc>>,
        max_retries: Option<u32>,
        reason: Option<String>,
    },
    Reject {
        reason: String,
    },
    Ignore,
    Panicked(String),
}

impl WireEnding {
    /// How a body in the child ended (the child enforces no hard limit, so never `TimedOut`).
    pub(crate) fn from_ending(ending: Ending) -> Self {
        match ending {
            Ending::Returned(Ok(value)) => WireEnding::Returned(value),
            Ending::Returned(Err(TaskError::Failed {
                exc_type,
                message,
                traceback,
            })) => WireEnding::Failed {
                exc_type,
                message,
                traceback,
            },
            Ending::Returned(Err(TaskError::Retry(retry))) => WireEnding::Retry {
                countdown: retry.countdown.map(|d| d.as_secs_f64()),
                eta: retry.eta,
                max_retries: retry.max_retries,
                reason: retry.reason,
            },
            Ending::Returned(Err(TaskError::Reject { reason })) => WireEnding::Reject { reason },
            Ending::Returned(Err(TaskError::Ignore)) => WireEnding::Ignore,
            Ending::Panicked(message) => WireEnding::Panicked(message),
            Ending::TimedOut(limit) => {
                WireEnding::Panicked(format!("the child reported a timeout of {limit} s"))
            }
            Ending::Lost(message) => WireEnding::Panicked(message),
        }
    }

    /// Back to an [`Ending`] in the worker.
    pub(crate) fn into_ending(self) -> Ending {
        match self {
            WireEnding::Returned(value) => Ending::Returned(Ok(value)),
            WireEnding::Failed {
                exc_type,
                message,
                traceback,
            } => Ending::Returned(Err(TaskError::Failed {
                exc_type,
                message,
                traceback,
            })),
            WireEnding::Retry {
                countdown,
                eta,
                max_retries,
                reason,
            } => Ending::Returned(Err(TaskError::Retry(Retry {
                countdown: countdown.and_then(|s| Duration::try_from_secs_f64(s).ok()),
                eta,
                max_retries,
                reason,
            }))),
            WireEnding::Reject { reason } => Ending::Returned(Err(TaskError::Reject { reason })),
            WireEnding::Ignore => Ending::Returned(Err(TaskError::Ignore)),
            WireEnding::Panicked(message) => Ending::Panicked(message),
        }
    }
}
