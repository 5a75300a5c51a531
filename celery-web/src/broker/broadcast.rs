//! Broadcast: non-task messages sent to an exchange with a routing key, received by every
//! subscription whose binding matches (Celery's events on `celeryev`, remote control on
//! `celery.pidbox`). Unlike task messages, nobody claims or acks them: a subscriber that is
//! not listening when one is sent never sees it.
//!
//! Bindings follow AMQP's rules for the exchange's kind: a fanout exchange delivers
//! everything, a direct one the exact routing key, a topic one matches dot-separated words
//! with `*` (one word) and `#` (zero or more words).
//!
//! ```
//! use celery_web::broker::{binding_matches, ExchangeKind};
//!
//! assert!(binding_matches(ExchangeKind::Topic, "task.#", "task.succeeded"));
//! assert!(binding_matches(ExchangeKind::Topic, "#", "worker.heartbeat"));
//! assert!(binding_matches(ExchangeKind::Topic, "*.heartbeat", "worker.heartbeat"));
//! assert!(!binding_matches(ExchangeKind::Topic, "worker.*", "task.succeeded"));
//! assert!(binding_matches(ExchangeKind::Fanout, "", "anything"));
//! assert!(!binding_matches(ExchangeKind::Direct, "a", "b"));
//! ```

use tokio::sync::mpsc;

use crate::protocol::{Envelope, ProtocolError};
use crate::task::BoxFuture;
use crate::Result;

/// How an exchange routes (AMQP's exchange types; kombu declares `celeryev` as topic and
/// `celery.pidbox` as fanout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExchangeKind {
    /// Every bound queue gets every message.
    Fanout,
    /// The routing key must equal the binding.
    Direct,
    /// Dot-separated words, `*` one word, `#` zero or more.
    Topic,
}

/// A named exchange and how it routes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Exchange {
    /// Its name, for example `celeryev`.
    pub name: String,
    /// How it routes.
    pub kind: ExchangeKind,
    /// Whether a broker that keeps exchanges (RabbitMQ) declares it durable. It must match
    /// what other clients declare: kombu's `celeryev` is durable, `celery.pidbox` and
    /// `reply.celery.pidbox` are not.
    pub durable: bool,
}

impl Exchange {
    fn new(name: &str, kind: ExchangeKind) -> Self {
        Exchange {
            name: name.to_owned(),
            kind,
            durable: true,
        }
    }

    /// A durable fanout exchange.
    pub fn fanout(name: &str) -> Self {
        Exchange::new(name, ExchangeKind::Fanout)
    }

    /// A durable topic exchange.
    pub fn topic(name: &str) -> Self {
        Exchange::new(name, ExchangeKind::Topic)
    }

    /// A durable direct exchange.
    pub fn direct(name: &str) -> Self {
        Exchange::new(name, ExchangeKind::Direct)
    }

    /// The same exchange, not durable.
    ///
    /// ```
    /// use celery_web::broker::Exchange;
    /// assert!(!Exchange::fanout("celery.pidbox").transient().durable);
    /// ```
    pub fn transient(self) -> Self {
        Exchange {
            durable: false,
            ..self
        }
    }
}

/// Whether a message sent with `routing_key` reaches a subscription bound with `binding` on
/// an exchange of `kind`.
pub fn binding_matches(kind: ExchangeKind, binding: &str, routing_key: &str) -> bool {
    match kind {
        ExchangeKind::Fanout => true,
        ExchangeKind::Direct => binding == routing_key,
        ExchangeKind::Topic => {
            let pattern: Vec<&str> = binding.split('.').collect();
            let words: Vec<&str> = routing_key.split('.').collect();
            topic_matches(&pattern, &words)
        }
    }
}

fn topic_matches(pattern: &[&str], words: &[&str]) -> bool {
    match pattern.split_first() {
        None => words.is_empty(),
        Some((&"#", rest)) => (0..=words.len()).any(|skip| topic_matches(rest, &words[skip..])),
        Some((&word, rest)) => words.split_first().is_some_and(|(first, others)| {
            (word == "*" || word == *first) && topic_matches(rest, others)
        }),
    }
}

/// A message received by a [`Subscription`].
#[derive(Debug, Clone, PartialEq)]
pub struct BroadcastMessage {
    /// The routing key it was sent with (for events, the event type with dots).
    pub routing_key: String,
    /// kombu's envelope: headers, properties and the encoded body.
    pub envelope: Envelope,
}

/// Messages arriving for one binding, in the order the broker delivered them. Dropping it
/// ends the subscription.
pub struct Subscription {
    receiver: mpsc::Receiver<Result<BroadcastMessage, ProtocolError>>,
    listener: Option<tokio::task::AbortHandle>,
    cleanup: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// A subscription fed by `receiver`; `listener`, when given, is the task feeding it and
    /// is stopped when the subscription is dropped.
    pub fn new(
        receiver: mpsc::Receiver<Result<BroadcastMessage, ProtocolError>>,
        listener: Option<tokio::task::AbortHandle>,
    ) -> Self {
        Subscription {
            receiver,
            listener,
            cleanup: std::sync::Mutex::new(None),
        }
    }

    /// Runs `cleanup` when the subscription is dropped (after its listener is stopped): a
    /// broker removes what it declared for it.
    pub fn with_cleanup(mut self, cleanup: impl FnOnce() + Send + 'static) -> Self {
        self.cleanup = std::sync::Mutex::new(Some(Box::new(cleanup)));
        self
    }

    /// The next message; an `Err` is a message that could not be read (it is skipped, the
    /// subscription goes on); `None` once the subscription has ended.
    pub async fn next(&mut self) -> Option<Result<BroadcastMessage, ProtocolError>> {
        self.receiver.recv().await
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(listener) = &self.listener {
            listener.abort();
        }
        let cleanup = self
            .cleanup
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(cleanup) = cleanup {
            cleanup();
        }
    }
}

/// Sending and receiving non-task messages ([`Broker::broadcast`](super::Broker::broadcast)).
pub trait Broadcast: Send + Sync {
    /// Sends `envelope` to `exchange` with `routing_key`, to every subscription whose binding
    /// matches now.
    fn send<'a>(
        &'a self,
        exchange: &'a Exchange,
        routing_key: &'a str,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<()>>;

    /// Subscribes to what `exchange` routes to `binding`; messages sent after this returns
    /// are received.
    fn subscribe<'a>(
        &'a self,
        exchange: &'a Exchange,
        binding: &'a str,
    ) -> BoxFuture<'a, Result<Subscription>>;

    /// Like [`subscribe`](Self::subscribe), naming the queue a broker that routes into
    /// queues (RabbitMQ) declares for the subscription, as kombu names a worker's mailbox
    /// `<hostname>.celery.pidbox`. Brokers without such queues ignore the name.
    fn subscribe_as<'a>(
        &'a self,
        exchange: &'a Exchange,
        binding: &'a str,
        queue: &'a str,
    ) -> BoxFuture<'a, Result<Subscription>> {
        let _ = queue;
        self.subscribe(exchange, binding)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_bindings_follow_amqp() {
        let topic = |binding, key| binding_matches(ExchangeKind::Topic, binding, key);
        assert!(topic("task.succeeded", "task.succeeded"));
        assert!(topic("task.*", "task.succeeded"));
        assert!(!topic("task.*", "task.succeeded.late"));
        assert!(topic("task.#", "task"));
        assert!(topic("task.#", "task.a.b"));
        assert!(topic("#.b", "a.b"));
        assert!(topic("a.#.c", "a.c"));
        assert!(topic("a.#.c", "a.x.y.c"));
        assert!(!topic("a.#.c", "a.x.y"));
        assert!(!topic("worker", "worker.heartbeat"));
        assert!(topic("#", ""));
    }
}
