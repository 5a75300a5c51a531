//! Brokers: where messages wait until a worker takes them.
//!
//! The [`Broker`] trait is a small core every driver implements: publish, fetch, ack,
//! release, retire (keep a bad message for inspection), purge and queue statistics. What
//! only some brokers can do is an optional capability the driver declares and callers ask
//! for, instead of reaching around the trait:
//!
//! | capability | asked with | database | Redis | memory |
//! |---|---|---|---|---|
//! | leases with a visibility timeout, [`Leases::extend`] | [`Broker::leases`] | yes | yes | yes |
//! | ETA messages held back by the broker | [`Broker::delays_eta`] | yes | yes (parking) | yes (or not: [`MemoryBroker::delivering_eta_early`](memory::MemoryBroker::delivering_eta_early)) |
//! | non-task messages to exchanges, subscriptions ([`Broadcast`]) | [`Broker::broadcast`] | no | pub/sub | yes |
//! | enqueue inside the caller's database transaction ([`Transactional`]) | [`Broker::transactional`] | yes | no | no |
//!
//! A message's content is kombu's [`Envelope`](crate::protocol::Envelope), so what a broker
//! holds is what Python Celery would hold; a driver hands it to the worker as stored bytes
//! or already decoded ([`Payload`]). A broker is chosen by URL ([`connect`]).
//!
//! ```
//! # async fn demo() -> celery_web::Result<()> {
//! use std::time::Duration;
//! use celery_web::broker::{memory::MemoryBroker, Broker};
//!
//! let broker = MemoryBroker::new(Duration::from_secs(30));
//! // A caller that needs a capability asks for it:
//! let leases = broker.leases().expect("the memory broker leases its deliveries");
//! assert_eq!(leases.visibility_timeout(), Duration::from_secs(30));
//! assert!(broker.delays_eta());
//! assert!(broker.transactional().is_none());
//! # Ok(()) }
//! ```

#[cfg(feature = "amqp")]
pub mod amqp;
mod broadcast;
mod connect;
pub mod database;
pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;

pub use broadcast::{
    binding_matches, Broadcast, BroadcastMessage, Exchange, ExchangeKind, Subscription,
};
pub use connect::connect;

use std::fmt;
use std::time::Duration;

use tokio::sync::watch;

use crate::protocol::{Envelope, Message, ProtocolError};
use crate::task::BoxFuture;
use crate::Result;

/// Identifies one delivery of one message; acking or releasing it with a stale tag (the lease
/// ran out and another worker took the message) does nothing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeliveryTag(pub String);

impl DeliveryTag {
    /// The tag of delivery number `count` of the stored message `id` (database and memory
    /// brokers).
    pub(crate) fn numbered(id: i64, count: i32) -> Self {
        DeliveryTag(format!("{id}.{count}"))
    }

    /// `(id, count)` of a [`numbered`](DeliveryTag::numbered) tag.
    pub(crate) fn number(&self) -> crate::Result<(i64, i32)> {
        self.0
            .split_once('.')
            .and_then(|(id, count)| Some((id.parse().ok()?, count.parse().ok()?)))
            .ok_or_else(|| {
                crate::Error::broker(format!("`{self}` is not a delivery tag of this broker"))
            })
    }
}

impl fmt::Display for DeliveryTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a delivery carries: kombu's envelope, as the broker stored it.
#[derive(Debug, Clone)]
pub enum Payload {
    /// The envelope's JSON bytes, not yet decoded (brokers that store the document: database,
    /// Redis, memory). Decoding may fail; the bytes are kept for inspection.
    Json(Vec<u8>),
    /// An envelope the driver built from the broker's own fields (AMQP headers, properties
    /// and body).
    Envelope(Envelope),
}

impl Payload {
    /// The envelope, decoded from JSON when needed.
    pub fn envelope(&self) -> Result<Envelope, ProtocolError> {
        match self {
            Payload::Json(bytes) => Envelope::decode(bytes),
            Payload::Envelope(envelope) => Ok(envelope.clone()),
        }
    }

    /// The envelope, consuming the payload (no copy of a decoded one).
    pub fn into_envelope(self) -> Result<Envelope, ProtocolError> {
        match self {
            Payload::Json(bytes) => Envelope::decode(&bytes),
            Payload::Envelope(envelope) => Ok(envelope),
        }
    }

    /// The envelope as text, for keeping a bad message aside (invalid UTF-8 replaced).
    pub fn to_text(&self) -> String {
        match self {
            Payload::Json(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            Payload::Envelope(envelope) => envelope.encode(),
        }
    }
}

/// A message handed to a worker, not yet decoded (decoding may fail; the payload is kept).
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Ack/release handle.
    pub tag: DeliveryTag,
    /// Queue the message came from.
    pub queue: String,
    /// The envelope.
    pub payload: Payload,
    /// Whether the message was delivered before (its previous lease ran out or was released).
    pub redelivered: bool,
}

/// What a worker asks for.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    /// Queues to take from.
    pub queues: Vec<String>,
    /// At most this many messages.
    pub limit: usize,
    /// Wait at most this long for a first message when none is ready.
    pub wait: Duration,
    /// The worker's name, recorded as the lease owner.
    pub consumer: String,
    /// When it turns `true` (the worker is shutting down) the fetch stops waiting and returns
    /// what it has; a claim already under way completes, so nothing is left leased to nobody.
    pub stop: Option<watch::Receiver<bool>>,
}

impl FetchRequest {
    /// Completes when [`FetchRequest::stop`] turns `true`; never without one.
    pub async fn stopped(&self) {
        match self.stop.clone() {
            Some(mut stop) => {
                if stop.wait_for(|stop| *stop).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending().await,
        }
    }

    /// Whether [`FetchRequest::stop`] is `true`.
    pub fn is_stopped(&self) -> bool {
        self.stop.as_ref().is_some_and(|stop| *stop.borrow())
    }
}

/// How many messages one queue holds, by where they are in their life. A count the broker
/// cannot tell (AMQP knows what is ready, not what its consumers hold) is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Queue name.
    pub name: String,
    /// Ready to be claimed now.
    pub waiting: u64,
    /// Waiting for their eta (countdown) to come.
    pub scheduled: Option<u64>,
    /// Claimed by a worker and not acknowledged yet.
    pub in_flight: Option<u64>,
}

impl QueueStats {
    /// Zero messages in `name`, every count known.
    pub fn empty(name: &str) -> Self {
        QueueStats {
            name: name.to_owned(),
            waiting: 0,
            scheduled: Some(0),
            in_flight: Some(0),
        }
    }

    /// Messages that will run without a new publish: waiting plus scheduled (as far as
    /// known).
    pub fn pending(&self) -> u64 {
        self.waiting + self.scheduled.unwrap_or(0)
    }
}

/// One entry per queue of `requested`, in that order (zeros where `found` has none), then
/// the other queues of `found` by name.
pub(crate) fn stats_for(requested: &[String], found: Vec<QueueStats>) -> Vec<QueueStats> {
    let mut found: std::collections::BTreeMap<String, QueueStats> =
        found.into_iter().map(|s| (s.name.clone(), s)).collect();
    let mut stats: Vec<QueueStats> = Vec::with_capacity(requested.len() + found.len());
    for name in requested {
        if stats.iter().any(|s| &s.name == name) {
            continue;
        }
        stats.push(
            found
                .remove(name)
                .unwrap_or_else(|| QueueStats::empty(name)),
        );
    }
    stats.extend(found.into_values());
    stats
}

/// A message store workers claim from: the core every broker implements.
///
/// A fetched message stays with the worker until it acks, releases or retires it. What
/// happens when the worker dies without doing so depends on the broker: a lease runs out
/// ([`Broker::leases`]) or the connection closes (AMQP).
pub trait Broker: Send + Sync + fmt::Debug + 'static {
    /// Stores messages; each goes to [`Message::queue`]. Where the broker
    /// [delays ETA messages](Broker::delays_eta) one with an eta becomes visible then;
    /// otherwise it is delivered at once and the worker holds it.
    fn publish<'a>(&'a self, messages: &'a [Message]) -> BoxFuture<'a, Result<()>>;

    /// Claims up to `request.limit` ready messages, highest priority first, oldest first.
    /// Returns an empty list after `request.wait` when nothing is ready.
    fn fetch<'a>(&'a self, request: &'a FetchRequest) -> BoxFuture<'a, Result<Vec<Delivery>>>;

    /// Removes delivered messages for good.
    fn ack<'a>(&'a self, tags: &'a [DeliveryTag]) -> BoxFuture<'a, Result<()>>;

    /// Puts delivered messages back, ready now (warm shutdown returns unstarted work).
    fn release<'a>(&'a self, tags: &'a [DeliveryTag]) -> BoxFuture<'a, Result<()>>;

    /// Moves a delivered message aside for inspection, with the reason it could not run.
    fn retire<'a>(&'a self, delivery: &'a Delivery, reason: &'a str) -> BoxFuture<'a, Result<()>>;

    /// The worker fetches no more from `queues` (warm shutdown, or an in-process worker
    /// that ends while its app goes on sending). A broker that pushes messages ahead of
    /// fetches (AMQP consumers) stops that and puts back what it received and did not hand
    /// over, so other workers get it now; the others have nothing to do.
    fn stop_fetching<'a>(&'a self, queues: &'a [String]) -> BoxFuture<'a, Result<()>> {
        let _ = queues;
        Box::pin(async { Ok(()) })
    }

    /// Deletes every waiting message of `queues`; returns how many.
    fn purge<'a>(&'a self, queues: &'a [String]) -> BoxFuture<'a, Result<u64>>;

    /// Message counts of `queues`: one entry per requested queue, in order (zeros when it
    /// is empty), followed, where the broker can list them cheaply (database and memory
    /// brokers), by every other queue that holds messages.
    fn queue_stats<'a>(&'a self, queues: &'a [String]) -> BoxFuture<'a, Result<Vec<QueueStats>>>;

    /// Whether a message with an eta stays invisible until then (`true`: database, Redis,
    /// memory), or is delivered at once and must be held by the worker until it is due
    /// (`false`: AMQP classic queues, where Python producers put ETA messages straight into
    /// the queue).
    fn delays_eta(&self) -> bool {
        true
    }

    /// Leases: fetched messages come back by themselves after a visibility timeout unless
    /// extended. `None` where unacked messages stay with the connection (AMQP).
    fn leases(&self) -> Option<&dyn Leases> {
        None
    }

    /// Non-task messages to exchanges (events, remote control). `None` where the broker has
    /// no such channel (database).
    fn broadcast(&self) -> Option<&dyn Broadcast> {
        None
    }

    /// Enqueue inside the caller's database transaction. `Some` only for the database
    /// broker.
    fn transactional(&self) -> Option<&dyn Transactional> {
        None
    }
}

/// Claims that last a visibility timeout ([`Broker::leases`]): a message fetched and not
/// acked, released or extended in time is delivered again, marked redelivered.
pub trait Leases: Send + Sync {
    /// How long a claim lasts before the message comes back.
    fn visibility_timeout(&self) -> Duration;

    /// Keeps delivered messages invisible for another `lease` (long-running tasks).
    fn extend<'a>(&'a self, tags: &'a [DeliveryTag], lease: Duration) -> BoxFuture<'a, Result<()>>;
}

/// A broker whose messages are rows of a database ([`Broker::transactional`]): a message
/// inserted with [`database::publish_in`] on a connection to [`Transactional::db`] is sent
/// only if the caller's transaction commits (`Signature::apply_in`, beat's exactly-once
/// firing).
pub trait Transactional: Send + Sync {
    /// The database holding the messages.
    fn db(&self) -> &crate::db::Db;

    /// Deletes the waiting (not delivered) messages of task `task_id`; returns how many
    /// (revoking a task).
    fn discard_waiting<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Result<u64>>;
}
