//! One connection to RabbitMQ: a consuming channel (QoS, consumers, acks), a publishing
//! channel in confirm mode, and short-lived channels for declarations and passive checks, so
//! that a refused declaration (406) or a missing queue (404), which close their channel,
//! never take the consumers' deliveries with them.
//!
//! Each connection has a generation number. Deliveries remember theirs: an ack for a
//! delivery of a dead connection is not sent (RabbitMQ has put the message back already).

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_core::Stream;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    BasicRejectOptions, ConfirmSelectOptions, QueueDeclareOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use lapin::{Confirmation, PublisherConfirm};
use tokio::sync::Notify;

use super::{lock, Topology};
use crate::{Error, Result};

/// `broker_connection_timeout`: how long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(4);

static GENERATIONS: AtomicU64 = AtomicU64::new(1);

/// A message a consumer received and the worker has not fetched yet.
pub(super) struct Incoming {
    pub(super) generation: u64,
    pub(super) queue: String,
    pub(super) delivery: lapin::message::Delivery,
}

/// What the consumers of every connection hand over to `fetch`.
#[derive(Default)]
pub(super) struct Shared {
    pub(super) state: Mutex<Buffers>,
    /// Woken when a message arrives or a consumer ends.
    pub(super) arrived: Notify,
}

/// Received messages by queue, in the order RabbitMQ sent them (priority, then FIFO).
#[derive(Default)]
pub(super) struct Buffers {
    queues: HashMap<String, VecDeque<Incoming>>,
}

impl Buffers {
    /// Up to `limit` messages of `queues`, taken in turn from each.
    pub(super) fn take(&mut self, queues: &[String], limit: usize) -> Vec<Incoming> {
        let mut taken = Vec::new();
        while taken.len() < limit {
            let before = taken.len();
            for queue in queues {
                if taken.len() == limit {
                    break;
                }
                if let Some(incoming) = self.queues.get_mut(queue).and_then(VecDeque::pop_front) {
                    taken.push(incoming);
                }
            }
            if taken.len() == before {
                break;
            }
        }
        taken
    }

    /// Whether any of `queues` has a message.
    pub(super) fn has_any(&self, queues: &[String]) -> bool {
        queues
            .iter()
            .any(|q| self.queues.get(q).is_some_and(|b| !b.is_empty()))
    }

    /// How many messages of `queue` wait here.
    pub(super) fn buffered(&self, queue: &str) -> u64 {
        self.queues.get(queue).map_or(0, |b| b.len() as u64)
    }

    /// Takes every message of `queue` out (purging it).
    pub(super) fn drain(&mut self, queue: &str) -> Vec<Incoming> {
        self.queues.remove(queue).map(Vec::from).unwrap_or_default()
    }

    /// Drops what a dead connection delivered (RabbitMQ delivers it again).
    pub(super) fn forget_buffered(&mut self) {
        self.queues.clear();
    }
}

/// Consumers of one connection.
#[derive(Default)]
struct Consuming {
    queues: HashMap<String, Consumer>,
    prefetch: u16,
}

/// One queue's consumer: its tag, and the task moving its deliveries into the buffers.
struct Consumer {
    tag: String,
    cancelled: Arc<AtomicBool>,
    forwarding: tokio::task::JoinHandle<()>,
}

/// One live connection; see the [module documentation](self).
pub(super) struct Link {
    pub(super) generation: u64,
    connection: Connection,
    consumer: Channel,
    publisher: Channel,
    declared: Mutex<HashSet<String>>,
    consuming: tokio::sync::Mutex<Consuming>,
    /// Delivery tags received on the consuming channel and not settled yet.
    outstanding: Arc<Mutex<BTreeSet<u64>>>,
    /// Held while a settlement is computed and written: a `multiple` ack must not reach
    /// RabbitMQ before, or cover, a settlement of a lower tag still being sent (a tag
    /// settled twice is a channel error).
    settling: tokio::sync::Mutex<()>,
    /// How many queues the consuming channel consumes.
    consumers: AtomicUsize,
    broken: Arc<AtomicBool>,
    shared: Arc<Shared>,
}

fn failed(what: &str, error: impl std::fmt::Display) -> Error {
    Error::broker(format!("RabbitMQ {what} failed: {error}"))
}

/// Opens a connection to `uri` (`shown`, its password masked, names it in errors), giving up
/// after [`CONNECT_TIMEOUT`].
pub(super) async fn connect(uri: &str, shown: &str) -> Result<Connection> {
    tokio::time::timeout(
        CONNECT_TIMEOUT,
        Connection::connect(uri, ConnectionProperties::default()),
    )
    .await
    .map_err(|_| {
        Error::broker(format!(
            "cannot connect to RabbitMQ at {shown}: no answer within {CONNECT_TIMEOUT:?}"
        ))
    })?
    .map_err(|e| Error::broker(format!("cannot connect to RabbitMQ at {shown}: {e}")))
}

impl Link {
    /// Connects and opens the consuming and publishing channels.
    pub(super) async fn open(uri: &str, shown: &str, shared: Arc<Shared>) -> Result<Arc<Link>> {
        let connection = connect(uri, shown).await?;
        let consumer = connection
            .create_channel()
            .await
            .map_err(|e| failed("channel.open", e))?;
        let publisher = connection
            .create_channel()
            .await
            .map_err(|e| failed("channel.open", e))?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| failed("confirm.select", e))?;
        tracing::debug!(broker = %shown, "connected to RabbitMQ");
        Ok(Arc::new(Link {
            generation: GENERATIONS.fetch_add(1, Ordering::Relaxed),
            connection,
            consumer,
            publisher,
            declared: Mutex::new(HashSet::new()),
            consuming: tokio::sync::Mutex::new(Consuming::default()),
            outstanding: Arc::default(),
            settling: tokio::sync::Mutex::new(()),
            consumers: AtomicUsize::new(0),
            broken: Arc::new(AtomicBool::new(false)),
            shared,
        }))
    }

    /// Whether the connection and both channels are open.
    pub(super) fn is_alive(&self) -> bool {
        !self.broken.load(Ordering::Relaxed)
            && self.connection.status().connected()
            && self.consumer.status().connected()
            && self.publisher.status().connected()
    }

    /// Closes the connection (unacked messages go back to their queues).
    pub(super) async fn close(&self) {
        let _ = self.connection.close(200, "bye".into()).await;
    }

    /// Runs `declare` on a channel of its own, once per connection for `key`.
    async fn declare_once<F>(&self, key: String, declare: F) -> Result<()>
    where
        F: AsyncFnOnce(&Channel) -> Result<()>,
    {
        if lock(&self.declared).contains(&key) {
            return Ok(());
        }
        let channel = self
            .connection
            .create_channel()
            .await
            .map_err(|e| failed("channel.open", e))?;
        let outcome = declare(&channel).await;
        if channel.status().connected() {
            let _ = channel.close(200, "declared".into()).await;
        }
        outcome?;
        lock(&self.declared).insert(key);
        Ok(())
    }

    /// Declares `queue` as kombu would.
    pub(super) async fn declare(&self, topology: &Topology, queue: &str) -> Result<()> {
        self.declare_once(format!("queue:{queue}"), async |channel| {
            topology.declare_queue(channel, queue).await
        })
        .await
    }

    /// Declares a broadcast exchange (events, remote control) as kombu does.
    pub(super) async fn declare_exchange(&self, exchange: &crate::broker::Exchange) -> Result<()> {
        self.declare_once(format!("exchange:{}", exchange.name), async |channel| {
            super::broadcast::declare_exchange(channel, exchange).await
        })
        .await
    }

    /// Declares the delay levels and links `queue` to their end.
    pub(super) async fn declare_delayed(&self, topology: &Topology, queue: &str) -> Result<()> {
        self.declare(topology, queue).await?;
        self.declare_once("delay levels".into(), async |channel| {
            topology.declare_delay_levels(channel).await
        })
        .await?;
        self.declare_once(format!("delayed:{queue}"), async |channel| {
            topology.bind_delayed(channel, queue).await
        })
        .await
    }

    /// Declares the dead-letter queue of `queue`; returns its name.
    pub(super) async fn declare_dead(&self, topology: &Topology, queue: &str) -> Result<String> {
        let dead = super::topology::dead_queue(queue);
        self.declare_once(format!("dead:{queue}"), async |channel| {
            topology.declare_dead(channel, queue).await.map(drop)
        })
        .await?;
        Ok(dead)
    }

    /// Publishes one message on the confirming channel.
    pub(super) async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<PublisherConfirm> {
        self.publisher
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .map_err(|e| failed("basic.publish", e))
    }

    /// Sets the prefetch to at least `limit` and consumes every queue of `queues` not
    /// consumed yet (declaring it first).
    pub(super) async fn consume(
        &self,
        topology: &Topology,
        queues: &[String],
        limit: usize,
        per_consumer: bool,
    ) -> Result<()> {
        let mut consuming = self.consuming.lock().await;
        let prefetch = u16::try_from(limit.max(1)).unwrap_or(u16::MAX);
        if prefetch > consuming.prefetch {
            // Celery: global on classic queues (RabbitMQ shares it among the channel's
            // consumers), per consumer on quorum queues, which refuse a global prefetch.
            self.consumer
                .basic_qos(
                    prefetch,
                    BasicQosOptions {
                        global: !per_consumer,
                    },
                )
                .await
                .map_err(|e| failed("basic.qos", e))?;
            consuming.prefetch = prefetch;
        }
        for queue in queues {
            if consuming.queues.contains_key(queue) {
                continue;
            }
            self.declare(topology, queue).await?;
            let consumer = self
                .consumer
                .basic_consume(
                    queue.as_str().into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| failed("basic.consume", e))?;
            let tag = consumer.tag().to_string();
            let cancelled = Arc::new(AtomicBool::new(false));
            let forwarding = tokio::spawn(forward(
                consumer,
                self.generation,
                queue.clone(),
                self.shared.clone(),
                self.outstanding.clone(),
                Ended {
                    cancelled: cancelled.clone(),
                    broken: self.broken.clone(),
                },
            ));
            self.consumers.fetch_add(1, Ordering::Relaxed);
            consuming.queues.insert(
                queue.clone(),
                Consumer {
                    tag,
                    cancelled,
                    forwarding,
                },
            );
        }
        Ok(())
    }

    /// Cancels the consumers of `queues` (`basic.cancel`) and waits until what they had
    /// received is in the buffers.
    pub(super) async fn cancel(&self, queues: &[String]) -> Result<()> {
        let mut consuming = self.consuming.lock().await;
        for queue in queues {
            let Some(consumer) = consuming.queues.remove(queue) else {
                continue;
            };
            consumer.cancelled.store(true, Ordering::Relaxed);
            self.consumers.fetch_sub(1, Ordering::Relaxed);
            self.consumer
                .basic_cancel(consumer.tag.as_str().into(), BasicCancelOptions::default())
                .await
                .map_err(|e| failed("basic.cancel", e))?;
            // The stream ends after cancel-ok, behind the deliveries sent before it.
            if tokio::time::timeout(Duration::from_secs(5), consumer.forwarding)
                .await
                .is_err()
            {
                tracing::warn!(%queue, "a cancelled RabbitMQ consumer did not end");
            }
        }
        Ok(())
    }

    /// Acknowledges one delivery of this connection.
    pub(super) async fn ack(&self, delivery_tag: u64) -> Result<()> {
        let _settling = self.settling.lock().await;
        lock(&self.outstanding).remove(&delivery_tag);
        self.consumer
            .basic_ack(delivery_tag, BasicAckOptions::default())
            .await
            .map_err(|e| failed("basic.ack", e))
    }

    /// Acknowledges deliveries of this connection with as few frames as it safely can: the
    /// tags below every delivery still outstanding go in one `basic.ack` with `multiple`
    /// (tasks mostly finish in the order they came), the others one by one. Only with a
    /// single consumer on the channel: its deliveries reach the outstanding set in tag
    /// order, so no tag below a settled one can still be on its way there.
    pub(super) async fn ack_many(&self, mut tags: Vec<u64>) -> Result<()> {
        tags.sort_unstable();
        let _settling = self.settling.lock().await;
        let below = {
            let mut outstanding = lock(&self.outstanding);
            for tag in &tags {
                outstanding.remove(tag);
            }
            if self.consumers.load(Ordering::Relaxed) == 1 {
                let first_left = outstanding.first().copied().unwrap_or(u64::MAX);
                tags.partition_point(|&tag| tag < first_left)
            } else {
                0
            }
        };
        let (covered, single) = tags.split_at(below);
        if let Some(&last) = covered.last() {
            self.consumer
                .basic_ack(last, BasicAckOptions { multiple: true })
                .await
                .map_err(|e| failed("basic.ack", e))?;
        }
        pipelined(
            single
                .iter()
                .map(|&tag| self.consumer.basic_ack(tag, BasicAckOptions::default())),
        )
        .await
        .into_iter()
        .collect::<lapin::Result<()>>()
        .map_err(|e| failed("basic.ack", e))
    }

    /// Puts deliveries of this connection back in their queue, marked redelivered.
    pub(super) async fn requeue(&self, tags: Vec<u64>) -> Result<()> {
        let _settling = self.settling.lock().await;
        {
            let mut outstanding = lock(&self.outstanding);
            for tag in &tags {
                outstanding.remove(tag);
            }
        }
        pipelined(tags.iter().map(|&tag| {
            self.consumer
                .basic_reject(tag, BasicRejectOptions { requeue: true })
        }))
        .await
        .into_iter()
        .collect::<lapin::Result<()>>()
        .map_err(|e| failed("basic.reject", e))
    }

    /// Runs `operation` on a channel of its own; a 404 (no such queue) gives 0.
    async fn on_own_channel<F>(&self, what: &str, operation: F) -> Result<u64>
    where
        F: AsyncFnOnce(&Channel) -> lapin::Result<u64>,
    {
        let channel = self
            .connection
            .create_channel()
            .await
            .map_err(|e| failed("channel.open", e))?;
        let outcome = operation(&channel).await;
        if channel.status().connected() {
            let _ = channel.close(200, "done".into()).await;
        }
        match outcome {
            Ok(count) => Ok(count),
            Err(error) if error.to_string().contains("NOT_FOUND") => Ok(0),
            Err(error) => Err(failed(what, error)),
        }
    }

    /// Deletes the ready messages of `queue`; returns how many.
    pub(super) async fn purge(&self, queue: &str) -> Result<u64> {
        self.on_own_channel("queue.purge", async |channel| {
            channel
                .queue_purge(queue.into(), QueuePurgeOptions::default())
                .await
                .map(u64::from)
        })
        .await
    }

    /// How many messages of `queue` are ready (0 when it does not exist).
    pub(super) async fn ready_count(&self, queue: &str) -> Result<u64> {
        self.on_own_channel("queue.declare (passive)", async |channel| {
            channel
                .queue_declare(
                    queue.into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map(|q| u64::from(q.message_count()))
        })
        .await
    }
}

/// Moves what one consumer receives into the shared buffers until the consumer ends (its
/// channel or connection closed, or RabbitMQ cancelled it), then marks the connection
/// broken so the next operation reconnects.
async fn forward(
    mut consumer: lapin::Consumer,
    generation: u64,
    queue: String,
    shared: Arc<Shared>,
    outstanding: Arc<Mutex<BTreeSet<u64>>>,
    ended: Ended,
) {
    loop {
        let next = std::future::poll_fn(|cx| Pin::new(&mut consumer).poll_next(cx)).await;
        match next {
            Some(Ok(delivery)) => {
                lock(&outstanding).insert(delivery.delivery_tag);
                lock(&shared.state)
                    .queues
                    .entry(queue.clone())
                    .or_default()
                    .push_back(Incoming {
                        generation,
                        queue: queue.clone(),
                        delivery,
                    });
                shared.arrived.notify_waiters();
            }
            Some(Err(error)) => {
                tracing::warn!(%error, %queue, "RabbitMQ consumer failed");
                break;
            }
            None => break,
        }
    }
    tracing::debug!(%queue, "RabbitMQ consumer ended");
    if !ended.cancelled.load(Ordering::Relaxed) {
        ended.broken.store(true, Ordering::Relaxed);
    }
    shared.arrived.notify_waiters();
}

/// How a consumer's end is told apart: cancelled by us, or a broken connection.
struct Ended {
    cancelled: Arc<AtomicBool>,
    broken: Arc<AtomicBool>,
}

/// Runs lapin operations as one batch: polls each once, in order, then awaits them one after
/// another. lapin queues an operation's frames during its first poll and completes it when
/// its I/O loop has written them, so a batch costs one turn of that loop instead of one per
/// message, and the frames leave in the batch's order.
pub(super) async fn pipelined<F: Future>(
    operations: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut started: Vec<Pin<Box<F>>> = operations.into_iter().map(Box::pin).collect();
    let mut done_at_once: Vec<Option<F::Output>> = Vec::with_capacity(started.len());
    std::future::poll_fn(|cx| {
        for operation in &mut started {
            done_at_once.push(match operation.as_mut().poll(cx) {
                std::task::Poll::Ready(output) => Some(output),
                std::task::Poll::Pending => None,
            });
        }
        std::task::Poll::Ready(())
    })
    .await;
    let mut outputs = Vec::with_capacity(started.len());
    for (operation, done) in started.into_iter().zip(done_at_once) {
        outputs.push(match done {
            Some(output) => output,
            None => operation.await,
        });
    }
    outputs
}

/// Waits for RabbitMQ's confirm of one publish.
pub(super) async fn confirmed(confirm: PublisherConfirm, what: &str) -> Result<()> {
    match confirm.await.map_err(|e| failed("publisher confirm", e))? {
        Confirmation::Nack(_) => Err(Error::broker(format!(
            "RabbitMQ refused to store {what} (basic.nack)"
        ))),
        Confirmation::Ack(_) | Confirmation::NotRequested => Ok(()),
    }
}
