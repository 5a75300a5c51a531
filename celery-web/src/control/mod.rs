//! Remote control of workers through the database: revoking tasks.
//!
//! [`revoke`] records the task id in `celery_revoked`, stores its REVOKED result, and on the
//! database broker deletes its waiting messages. Every worker loads new revocations with its
//! heartbeat (every 2 s) and skips a revoked task it receives, as it skips an expired one:
//! the task is marked REVOKED and its message acknowledged. A task that is already running
//! is not stopped; revocations are forgotten after `result_expires` (24 hours when unset).

mod revoke;

pub use revoke::revoke;
pub(crate) use revoke::{prune_revoked, revoked_result, revoked_since};
