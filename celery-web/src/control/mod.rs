//! Remote control of workers.
//!
//! - **Pidbox** (Redis, RabbitMQ): Celery's remote control. Every worker consumes the
//!   `celery.pidbox` broadcast and answers `inspect` and `control` commands with Celery's
//!   reply shapes, Python and celery-web workers alike; [`Control`] sends them (what
//!   `site celery inspect / control / status` use). See [`Request`] for the wire format.
//! - **Database** revocation: [`revoke`] records the task id in `celery_revoked`, stores its
//!   REVOKED result, and on the database broker deletes its waiting messages. Every worker
//!   with a database loads new revocations with its heartbeat (every 2 s) and skips a
//!   revoked task it receives, as it skips an expired one: the task is marked REVOKED and
//!   its message acknowledged. Revocations are forgotten after `result_expires` (24 hours
//!   when unset).

mod client;
#[cfg(test)]
mod fuzz_tests;
pub(crate) mod mailbox;
mod mingle;
pub(crate) mod panel;
mod request;
mod revoke;

pub use client::Control;
pub(crate) use mingle::mingle;
pub use request::{ReplyTo, Request, RequestError};
pub use revoke::revoke;
pub(crate) use revoke::{prune_revoked, revoked_result, revoked_since};

use crate::broker::Exchange;

/// The request exchange (fanout).
pub const PIDBOX: &str = "celery.pidbox";

/// The request exchange: fanout, not durable, as kombu declares it.
pub fn pidbox_exchange() -> Exchange {
    Exchange::fanout(PIDBOX).transient()
}

/// The reply exchange (direct, not durable; the caller's oid is the routing key).
pub fn reply_exchange() -> Exchange {
    Exchange::direct("reply.celery.pidbox").transient()
}

/// The queue of a node's mailbox on RabbitMQ: `<hostname>.celery.pidbox`.
pub(crate) fn mailbox_queue(hostname: &str) -> String {
    format!("{hostname}.{PIDBOX}")
}
