//! An in-process broker (`memory://`) for tests and single-process trials. Nothing survives
//! the process.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::{
    binding_matches, stats_for, Broadcast, BroadcastMessage, Broker, Delivery, DeliveryTag,
    Exchange, FetchRequest, Leases, Payload, QueueStats, Subscription,
};
use crate::protocol::{Envelope, Message};
use crate::task::BoxFuture;
use crate::Result;

/// The `memory://` broker.
#[derive(Debug, Clone)]
pub struct MemoryBroker {
    state: Arc<Mutex<State>>,
    published: Arc<Notify>,
    visibility_timeout: Duration,
    /// Whether eta messages stay invisible until due (else delivered at once, as AMQP does).
    delays_eta: bool,
    /// Broadcast messages: (exchange, routing key, envelope).
    broadcasts: tokio::sync::broadcast::Sender<(String, String, Envelope)>,
}

/// How many broadcast messages a slow subscription may fall behind before it misses some.
const BROADCAST_BACKLOG: usize = 1024;

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    messages: BTreeMap<u64, Entry>,
    dead: Vec<(String, String)>,
}

#[derive(Debug)]
struct Entry {
    queue: String,
    priority: u8,
    visible_at: Instant,
    payload: Vec<u8>,
    deliveries: u32,
    leased: bool,
}

impl MemoryBroker {
    /// An empty broker whose claims last `visibility_timeout`.
    pub fn new(visibility_timeout: Duration) -> Self {
        MemoryBroker {
            state: Arc::default(),
            published: Arc::new(Notify::new()),
            visibility_timeout,
            delays_eta: true,
            broadcasts: tokio::sync::broadcast::Sender::new(BROADCAST_BACKLOG),
        }
    }

    /// Delivers eta messages at once, as AMQP classic queues do, so the worker must hold
    /// them until they are due ([`Broker::delays_eta`] is then `false`). For tests of that
    /// path.
    ///
    /// ```
    /// use celery_web::broker::{memory::MemoryBroker, Broker};
    /// let broker = MemoryBroker::new(std::time::Duration::from_secs(5)).delivering_eta_early();
    /// assert!(!broker.delays_eta());
    /// ```
    pub fn delivering_eta_early(mut self) -> Self {
        self.delays_eta = false;
        self
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Messages kept for inspection: `(reason, payload)`.
    pub fn dead_messages(&self) -> Vec<(String, String)> {
        self.state().dead.clone()
    }

    fn take_ready(&self, request: &FetchRequest) -> Vec<Delivery> {
        let now = Instant::now();
        let mut state = self.state();
        let mut ready: Vec<(std::cmp::Reverse<u8>, Instant, u64)> = state
            .messages
            .iter()
            .filter(|(_, e)| e.visible_at <= now && request.queues.contains(&e.queue))
            .map(|(&id, e)| (std::cmp::Reverse(e.priority), e.visible_at, id))
            .collect();
        ready.sort_unstable();
        ready.truncate(request.limit);
        ready
            .into_iter()
            .filter_map(|(_, _, id)| {
                let entry = state.messages.get_mut(&id)?;
                entry.deliveries += 1;
                entry.leased = true;
                entry.visible_at = now + self.visibility_timeout;
                Some(Delivery {
                    tag: DeliveryTag::numbered(id as i64, entry.deliveries as i32),
                    queue: entry.queue.clone(),
                    payload: Payload::Json(entry.payload.clone()),
                    redelivered: entry.deliveries > 1,
                })
            })
            .collect()
    }

    /// Applies `f` to the entry `tag` names, if the tag is current.
    fn with_entry(&self, tag: &DeliveryTag, f: impl FnOnce(&mut State, u64)) -> Result<()> {
        let (id, deliveries) = tag.number()?;
        let (id, deliveries) = (id as u64, deliveries as u32);
        let mut state = self.state();
        if state
            .messages
            .get(&id)
            .is_some_and(|e| e.deliveries == deliveries)
        {
            f(&mut state, id);
        }
        Ok(())
    }
}

impl Broker for MemoryBroker {
    fn publish<'a>(&'a self, messages: &'a [Message]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let now = Instant::now();
            let utc_now = chrono::Utc::now();
            {
                let mut state = self.state();
                for message in messages {
                    let delay = message
                        .eta()
                        .filter(|_| self.delays_eta)
                        .and_then(|eta| (eta - utc_now).to_std().ok())
                        .unwrap_or_default();
                    let id = state.next_id;
                    state.next_id += 1;
                    state.messages.insert(
                        id,
                        Entry {
                            queue: message.queue().to_owned(),
                            priority: message.properties.priority.min(9),
                            visible_at: now + delay,
                            payload: Envelope::from_message(message)?.encode().into_bytes(),
                            deliveries: 0,
                            leased: false,
                        },
                    );
                }
            }
            self.published.notify_waiters();
            Ok(())
        })
    }

    fn fetch<'a>(&'a self, request: &'a FetchRequest) -> BoxFuture<'a, Result<Vec<Delivery>>> {
        Box::pin(async move {
            let deadline = Instant::now() + request.wait;
            loop {
                let published = self.published.notified();
                let found = self.take_ready(request);
                let now = Instant::now();
                if !found.is_empty() || now >= deadline || request.is_stopped() {
                    return Ok(found);
                }
                let pause = (deadline - now).min(Duration::from_millis(20));
                tokio::select! {
                    () = published => {}
                    () = tokio::time::sleep(pause) => {}
                    () = request.stopped() => {}
                }
            }
        })
    }

    fn ack<'a>(&'a self, tags: &'a [DeliveryTag]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            for tag in tags {
                self.with_entry(tag, |state, id| {
                    state.messages.remove(&id);
                })?;
            }
            Ok(())
        })
    }

    fn release<'a>(&'a self, tags: &'a [DeliveryTag]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            for tag in tags {
                self.with_entry(tag, |state, id| {
                    if let Some(entry) = state.messages.get_mut(&id) {
                        entry.visible_at = Instant::now();
                        entry.leased = false;
                    }
                })?;
            }
            self.published.notify_waiters();
            Ok(())
        })
    }

    fn retire<'a>(&'a self, delivery: &'a Delivery, reason: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.with_entry(&delivery.tag, |state, id| {
                if let Some(entry) = state.messages.remove(&id) {
                    let payload = String::from_utf8_lossy(&entry.payload).into_owned();
                    state.dead.push((reason.to_owned(), payload));
                }
            })
        })
    }

    fn purge<'a>(&'a self, queues: &'a [String]) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let now = Instant::now();
            let mut state = self.state();
            let before = state.messages.len();
            state
                .messages
                .retain(|_, e| !(queues.contains(&e.queue) && (!e.leased || e.visible_at <= now)));
            Ok((before - state.messages.len()) as u64)
        })
    }

    fn queue_stats<'a>(&'a self, queues: &'a [String]) -> BoxFuture<'a, Result<Vec<QueueStats>>> {
        Box::pin(async move {
            let now = Instant::now();
            let mut found: BTreeMap<&str, QueueStats> = BTreeMap::new();
            let state = self.state();
            for entry in state.messages.values() {
                let stats = found
                    .entry(&entry.queue)
                    .or_insert_with(|| QueueStats::empty(&entry.queue));
                if entry.visible_at <= now {
                    stats.waiting += 1;
                } else if entry.leased {
                    *stats.in_flight.get_or_insert(0) += 1;
                } else {
                    *stats.scheduled.get_or_insert(0) += 1;
                }
            }
            Ok(stats_for(queues, found.into_values().collect()))
        })
    }

    fn delays_eta(&self) -> bool {
        self.delays_eta
    }

    fn leases(&self) -> Option<&dyn Leases> {
        Some(self)
    }

    fn broadcast(&self) -> Option<&dyn Broadcast> {
        Some(self)
    }
}

impl Leases for MemoryBroker {
    fn visibility_timeout(&self) -> Duration {
        self.visibility_timeout
    }

    fn extend<'a>(&'a self, tags: &'a [DeliveryTag], lease: Duration) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            for tag in tags {
                self.with_entry(tag, |state, id| {
                    // A released message stays released.
                    if let Some(entry) = state.messages.get_mut(&id).filter(|e| e.leased) {
                        entry.visible_at = Instant::now() + lease;
                    }
                })?;
            }
            Ok(())
        })
    }
}

impl Broadcast for MemoryBroker {
    fn send<'a>(
        &'a self,
        exchange: &'a Exchange,
        routing_key: &'a str,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            // No subscription: the message goes nowhere, as on a real broker.
            let _ = self.broadcasts.send((
                exchange.name.clone(),
                routing_key.to_owned(),
                envelope.clone(),
            ));
            Ok(())
        })
    }

    fn subscribe<'a>(
        &'a self,
        exchange: &'a Exchange,
        binding: &'a str,
    ) -> BoxFuture<'a, Result<Subscription>> {
        Box::pin(async move {
            let mut broadcasts = self.broadcasts.subscribe();
            let (sender, receiver) = tokio::sync::mpsc::channel(BROADCAST_BACKLOG);
            let (exchange, binding) = (exchange.clone(), binding.to_owned());
            let listener = tokio::spawn(async move {
                loop {
                    let (name, routing_key, envelope) = match broadcasts.recv().await {
                        Ok(message) => message,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                            tracing::warn!(missed, "a memory-broker subscription fell behind");
                            continue;
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    };
                    if name != exchange.name
                        || !binding_matches(exchange.kind, &binding, &routing_key)
                    {
                        continue;
                    }
                    let message = BroadcastMessage {
                        routing_key,
                        envelope,
                    };
                    if sender.send(Ok(message)).await.is_err() {
                        return;
                    }
                }
            });
            Ok(Subscription::new(receiver, Some(listener.abort_handle())))
        })
    }
}
