//! Brokers: where messages wait until a worker takes them.
//!
//! The [`Broker`] trait is small: publish, fetch (claim with a lease), ack, release, retire
//! (keep a bad message for inspection) and purge. Every broker stores the same
//! [`Envelope`](crate::protocol::Envelope), so what a broker holds is what Python Celery would
//! hold. A broker is chosen by URL ([`connect`]).

mod connect;
pub mod database;
pub mod memory;
pub mod redis;

pub use connect::connect;

use std::fmt;
use std::time::Duration;

use tokio::sync::watch;

use crate::protocol::Message;
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
                crate::Error::Broker(format!("`{self}` is not a delivery tag of this broker"))
            })
    }
}

impl fmt::Display for DeliveryTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A message handed to a worker, not yet decoded (decoding may fail; the raw payload is kept).
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Ack/release handle.
    pub tag: DeliveryTag,
    /// Queue the message came from.
    pub queue: String,
    /// The envelope's JSON bytes.
    pub payload: Vec<u8>,
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

/// How many messages one queue holds, by where they are in their life.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Queue name.
    pub name: String,
    /// Ready to be claimed now.
    pub waiting: u64,
    /// Waiting for their eta (countdown) to come.
    pub scheduled: u64,
    /// Claimed by a worker and not acknowledged yet.
    pub in_flight: u64,
}

impl QueueStats {
    /// Zero messages in `name`.
    pub fn empty(name: &str) -> Self {
        QueueStats {
            name: name.to_owned(),
            ..QueueStats::default()
        }
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

/// A message store workers claim from.
///
/// Claims are leases: a fetched message stays invisible for the broker's visibility timeout
/// and comes back when it runs out (the worker died), unless the worker acks it, releases it,
/// or [`extend`](Broker::extend)s the lease.
pub trait Broker: Send + Sync + fmt::Debug + 'static {
    /// Stores messages; each goes to [`Message::queue`], visible at its eta (or now).
    fn publish<'a>(&'a self, messages: &'a [Message]) -> BoxFuture<'a, Result<()>>;

    /// Claims up to `request.limit` ready messages, highest priority first, oldest first.
    /// Returns an empty list after `request.wait` when nothing is ready.
    fn fetch<'a>(&'a self, request: &'a FetchRequest) -> BoxFuture<'a, Result<Vec<Delivery>>>;

    /// Removes delivered messages for good.
    fn ack<'a>(&'a self, tags: &'a [DeliveryTag]) -> BoxFuture<'a, Result<()>>;

    /// Puts delivered messages back, ready now (warm shutdown returns unstarted work).
    fn release<'a>(&'a self, tags: &'a [DeliveryTag]) -> BoxFuture<'a, Result<()>>;

    /// Keeps delivered messages invisible for another `lease` (long-running tasks).
    fn extend<'a>(&'a self, tags: &'a [DeliveryTag], lease: Duration) -> BoxFuture<'a, Result<()>>;

    /// Moves a delivered message aside for inspection, with the reason it could not run.
    fn retire<'a>(&'a self, delivery: &'a Delivery, reason: &'a str) -> BoxFuture<'a, Result<()>>;

    /// Deletes every waiting message of `queues`; returns how many.
    fn purge<'a>(&'a self, queues: &'a [String]) -> BoxFuture<'a, Result<u64>>;

    /// How long a claim lasts before the message comes back.
    fn visibility_timeout(&self) -> Duration;

    /// Message counts of `queues`: one entry per requested queue, in order (zeros when it
    /// is empty), followed, where the broker can list them cheaply (database and memory
    /// brokers), by every other queue that holds messages.
    fn queue_stats<'a>(&'a self, queues: &'a [String]) -> BoxFuture<'a, Result<Vec<QueueStats>>>;
}
