//! The RabbitMQ broker (AMQP 0-9-1 through lapin), sharing queues with Python Celery.
//!
//! | part | file |
//! |---|---|
//! | broker URLs: `amqp://user:pass@host:port/vhost`, `pyamqp://` (Celery's alias), Celery's vhost rules | `url.rs` |
//! | kombu's declarations: queues, exchanges, bindings, Celery 5.5's native delayed delivery, dead-letter queues | `topology.rs` |
//! | field tables to and from JSON; a task message to and from AMQP properties, headers and body | `fields.rs` |
//! | the connection: channels, consumers, reconnection | `link.rs` |
//! | events and remote control: `celeryev`, `celery.pidbox`, `reply.celery.pidbox` | `broadcast.rs` |
//! | the [`Broker`] implementation | this file |
//!
//! **Messages** travel as Celery sends them: a raw JSON body with Celery's properties and
//! headers, published with confirms (a `delay` returns once RabbitMQ has the message).
//!
//! **Consuming** uses `basic.consume` with a prefetch (`basic.qos`) of the largest fetch a
//! worker asks for (its concurrency × prefetch multiplier), global as Celery sets it on
//! classic queues and per consumer on quorum queues. Messages stay unacknowledged until the
//! worker acks (acks late or early, per task), releases (`basic.reject` with requeue: warm
//! shutdown) or retires them (a copy with the reason goes to `_celery_web.dead.<queue>`, then
//! the original is acked: a malformed message or an unknown task is kept, never requeued in a
//! loop). A worker that dies leaves its messages to RabbitMQ, which delivers them again.
//!
//! **ETA and countdown** never wait in worker memory: a message due in a second or more is
//! published into Celery 5.5's native delayed delivery levels (`celery_delayed_27` …
//! `celery_delayed_0`, declared as Celery's `DelayedDelivery` bootstep declares them), and a
//! message with a future eta that arrives straight in a queue (a Python producer on a classic
//! queue) is moved there by the worker and acked. Such messages come back up to a second
//! early (whole seconds), and the worker holds them for the rest.
//!
//! **Connection loss**: every operation runs on the current connection; when it has died the
//! next one reconnects, declares again and consumes again. Acks of messages delivered on a
//! dead connection are not sent (RabbitMQ delivers those messages again); publishes are
//! retried as Celery retries them.
//!
//! ```no_run
//! # async fn demo() -> celery_web::Result<()> {
//! use celery_web::broker::amqp::{AmqpBroker, Topology};
//! use celery_web::broker::Broker;
//! use celery_web::protocol::Message;
//!
//! let broker = AmqpBroker::new("amqp://guest:guest@localhost:5672//", Topology::default())?;
//! broker.publish(&[Message::new("tasks.add", vec![2.into(), 2.into()], Default::default())]).await?;
//! # Ok(()) }
//! ```

mod broadcast;
mod fields;
mod link;
mod topology;
pub mod url;

pub use topology::Topology;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use lapin::types::{AMQPValue, LongString};
use lapin::BasicProperties;

use self::link::{Incoming, Link, Shared};
use super::{
    stats_for, Broadcast, Broker, Delivery, DeliveryTag, FetchRequest, Payload, QueueStats,
};
use crate::protocol::Message;
use crate::task::BoxFuture;
use crate::{Error, Result};

/// Celery's publish retry policy (`task_publish_retry_policy`): 3 retries, 0 s then 0.2 s
/// more each time, at most 1 s.
const PUBLISH_RETRIES: u32 = 3;

/// How long a fetch that has messages waits for the next one to stream in.
const LINGER: Duration = Duration::from_micros(250);

/// The RabbitMQ broker; see the [module documentation](self).
pub struct AmqpBroker {
    uri: String,
    shown: String,
    topology: Topology,
    current: tokio::sync::Mutex<Option<Arc<Link>>>,
    shared: Arc<Shared>,
    /// Deliveries handed to the worker and not settled yet, by tag.
    unacked: Mutex<HashMap<String, Unacked>>,
}

/// What the broker keeps of a delivery until it is settled: enough to ack it on the channel
/// that delivered it, or to copy it into the dead-letter queue unchanged.
struct Unacked {
    generation: u64,
    delivery_tag: u64,
    queue: String,
    data: Vec<u8>,
    properties: BasicProperties,
}

impl std::fmt::Debug for AmqpBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpBroker")
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

impl AmqpBroker {
    /// A broker for `url` (`amqp://` or `pyamqp://`) declaring what `topology` says. Nothing
    /// connects until the first use.
    pub fn new(url: &str, topology: Topology) -> Result<AmqpBroker> {
        let parsed = url::AmqpUrl::parse(url)?;
        Ok(AmqpBroker {
            uri: parsed.to_lapin_uri(),
            shown: url::redact(url),
            topology,
            current: tokio::sync::Mutex::new(None),
            shared: Arc::new(Shared::default()),
            unacked: Mutex::new(HashMap::new()),
        })
    }

    /// The live connection, opened (or opened again after a loss) when needed.
    async fn link(&self) -> Result<Arc<Link>> {
        let mut current = self.current.lock().await;
        if let Some(link) = current.as_ref() {
            if link.is_alive() {
                return Ok(link.clone());
            }
            tracing::warn!(broker = %self.shown, "RabbitMQ connection lost; reconnecting");
            if let Some(dead) = current.take() {
                tokio::spawn(async move { dead.close().await });
            }
            // What the dead connection delivered goes back to the queue by itself.
            lock(&self.shared.state).forget_buffered();
        }
        let link = Link::open(&self.uri, &self.shown, self.shared.clone()).await?;
        *current = Some(link.clone());
        Ok(link)
    }

    /// Publishes `messages` on `link`, each into its queue or into the delay levels, and
    /// waits for RabbitMQ's confirms.
    async fn publish_on(&self, link: &Link, messages: &[Message]) -> Result<()> {
        let mut outgoing = Vec::with_capacity(messages.len());
        for message in messages {
            let queue = message.queue();
            link.declare(&self.topology, queue).await?;
            let countdown = message.eta().map_or(0, whole_seconds_until);
            let (exchange, routing_key) = self.topology.route(queue);
            let (exchange, routing_key) = if countdown >= 1 {
                link.declare_delayed(&self.topology, queue).await?;
                (
                    topology::delay_level(topology::DELAY_LEVELS - 1),
                    topology::delayed_routing_key(countdown, &routing_key),
                )
            } else {
                (exchange, routing_key)
            };
            let (body, properties) = fields::to_amqp_message(message, countdown >= 1)?;
            outgoing.push((exchange, routing_key, body, properties));
        }
        let sent = link::pipelined(outgoing.iter_mut().map(
            |(exchange, routing_key, body, properties)| {
                link.publish(exchange, routing_key, body, std::mem::take(properties))
            },
        ))
        .await;
        let mut confirms = Vec::with_capacity(sent.len());
        for sent in sent {
            confirms.push(sent?);
        }
        for (message, confirm) in messages.iter().zip(confirms) {
            link::confirmed(confirm, message.id()).await?;
        }
        Ok(())
    }

    /// Turns a delivery into what the worker gets, or moves it into the delay levels when it
    /// is due in a second or more (acked once RabbitMQ confirmed the copy); `None` then.
    async fn accept(&self, link: &Link, incoming: Incoming) -> Option<Delivery> {
        let Incoming {
            queue, delivery, ..
        } = incoming;
        let countdown = header_eta(&delivery.properties).map_or(0, whole_seconds_until);
        if countdown >= 1 {
            match self.postpone(link, &queue, &delivery, countdown).await {
                Ok(()) => return None,
                Err(error) => tracing::warn!(
                    %error, %queue,
                    "could not move a message with a future eta into the delay queues; \
                     the worker holds it instead"
                ),
            }
        }
        let tag = format!("{}.{}", link.generation, delivery.delivery_tag);
        let envelope = fields::to_envelope(
            &delivery.data,
            &delivery.properties,
            delivery.exchange.as_str(),
            &queue,
            &tag,
        );
        lock(&self.unacked).insert(
            tag.clone(),
            Unacked {
                generation: link.generation,
                delivery_tag: delivery.delivery_tag,
                queue: queue.clone(),
                data: delivery.data,
                properties: delivery.properties,
            },
        );
        Some(Delivery {
            tag: DeliveryTag(tag),
            queue,
            payload: Payload::Envelope(envelope),
            redelivered: delivery.redelivered,
        })
    }

    /// Republishes a delivery unchanged into the delay levels for `countdown` seconds, then
    /// acks it.
    async fn postpone(
        &self,
        link: &Link,
        queue: &str,
        delivery: &lapin::message::Delivery,
        countdown: u64,
    ) -> Result<()> {
        link.declare_delayed(&self.topology, queue).await?;
        let (_, routing_key) = self.topology.route(queue);
        let properties = fields::without_expiration(&delivery.properties);
        let confirm = link
            .publish(
                &topology::delay_level(topology::DELAY_LEVELS - 1),
                &topology::delayed_routing_key(countdown, &routing_key),
                &delivery.data,
                properties,
            )
            .await?;
        link::confirmed(confirm, "a postponed message").await?;
        link.ack(delivery.delivery_tag).await?;
        tracing::debug!(%queue, countdown, "moved a message with a future eta into the delay queues");
        Ok(())
    }

    /// Takes the settled deliveries `tags` out of the unacked table; those delivered on the
    /// live connection are returned with their AMQP tags (others: RabbitMQ delivers them again).
    fn settle(&self, link: &Link, tags: &[DeliveryTag]) -> Vec<u64> {
        let mut unacked = lock(&self.unacked);
        tags.iter()
            .filter_map(|tag| unacked.remove(&tag.0))
            .filter_map(|entry| {
                if entry.generation == link.generation {
                    Some(entry.delivery_tag)
                } else {
                    tracing::debug!(
                        queue = %entry.queue,
                        "not settling a message delivered on a lost connection; RabbitMQ delivers it again"
                    );
                    None
                }
            })
            .collect()
    }
}

/// Whole seconds from now until `eta` (0 when past), as Celery's `int(eta - now)`.
fn whole_seconds_until(eta: DateTime<Utc>) -> u64 {
    u64::try_from((eta - Utc::now()).num_seconds()).unwrap_or(0)
}

/// The `eta` header of an AMQP message, if it has a readable one.
fn header_eta(properties: &BasicProperties) -> Option<DateTime<Utc>> {
    let value = properties.headers().as_ref()?.inner().get("eta")?;
    let text = match value {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_owned(),
        _ => return None,
    };
    crate::protocol::parse_iso_time(&text)
        .ok()
        .map(|eta| eta.with_timezone(&Utc))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Broker for AmqpBroker {
    fn publish<'a>(&'a self, messages: &'a [Message]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut attempt = 0;
            loop {
                let outcome = match self.link().await {
                    Ok(link) => self.publish_on(&link, messages).await,
                    Err(error) => Err(error),
                };
                match outcome {
                    Err(Error::Broker(error)) if attempt < PUBLISH_RETRIES => {
                        let pause = Duration::from_millis(200 * u64::from(attempt))
                            .min(Duration::from_secs(1));
                        attempt += 1;
                        tracing::warn!(%error, ?pause, attempt, "publish to RabbitMQ failed; retrying");
                        tokio::time::sleep(pause).await;
                    }
                    other => return other,
                }
            }
        })
    }

    fn fetch<'a>(&'a self, request: &'a FetchRequest) -> BoxFuture<'a, Result<Vec<Delivery>>> {
        Box::pin(async move {
            let link = self.link().await?;
            let quorum = self.topology.any_quorum(&request.queues);
            link.consume(&self.topology, &request.queues, request.limit, quorum)
                .await?;
            let deadline = tokio::time::Instant::now() + request.wait;
            let mut deliveries = Vec::new();
            loop {
                let taken = lock(&self.shared.state)
                    .take(&request.queues, request.limit - deliveries.len());
                for incoming in taken {
                    if incoming.generation != link.generation {
                        continue;
                    }
                    if let Some(delivery) = self.accept(&link, incoming).await {
                        deliveries.push(delivery);
                    }
                }
                if !deliveries.is_empty() && deliveries.len() < request.limit && link.is_alive() {
                    // Messages stream in one by one: give those right behind the first a
                    // moment to be forwarded (yielding, as a timer's millisecond would cost
                    // every lone message its latency), and take them too.
                    let lingering = std::time::Instant::now();
                    while !lock(&self.shared.state).has_any(&request.queues) {
                        if lingering.elapsed() >= LINGER {
                            return Ok(deliveries);
                        }
                        tokio::task::yield_now().await;
                    }
                    continue;
                }
                if !deliveries.is_empty()
                    || request.is_stopped()
                    || !link.is_alive()
                    || tokio::time::Instant::now() >= deadline
                {
                    return Ok(deliveries);
                }
                let arrived = self.shared.arrived.notified();
                if lock(&self.shared.state).has_any(&request.queues) {
                    continue;
                }
                tokio::select! {
                    () = arrived => {}
                    () = tokio::time::sleep_until(deadline) => {}
                    () = request.stopped() => {}
                }
            }
        })
    }

    fn ack<'a>(&'a self, tags: &'a [DeliveryTag]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let Some(link) = self.current.lock().await.clone() else {
                return Ok(());
            };
            link.ack_many(self.settle(&link, tags)).await
        })
    }

    fn release<'a>(&'a self, tags: &'a [DeliveryTag]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let Some(link) = self.current.lock().await.clone() else {
                return Ok(());
            };
            link.requeue(self.settle(&link, tags)).await
        })
    }

    fn retire<'a>(&'a self, delivery: &'a Delivery, reason: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let link = self.link().await?;
            let Some(entry) = lock(&self.unacked).remove(&delivery.tag.0) else {
                return Ok(());
            };
            if entry.generation != link.generation {
                // Delivered again by RabbitMQ; that delivery is retired in its turn.
                return Ok(());
            }
            let dead = link.declare_dead(&self.topology, &entry.queue).await?;
            let mut headers = entry.properties.headers().clone().unwrap_or_default();
            headers.insert(
                "x-celery-web-reason".into(),
                AMQPValue::LongString(LongString::from(reason)),
            );
            headers.insert(
                "x-celery-web-queue".into(),
                AMQPValue::LongString(LongString::from(entry.queue.as_str())),
            );
            let properties = fields::without_expiration(&entry.properties).with_headers(headers);
            let confirm = link.publish("", &dead, &entry.data, properties).await?;
            link::confirmed(confirm, "a retired message").await?;
            link.ack(entry.delivery_tag).await?;
            tracing::warn!(queue = %entry.queue, %dead, %reason, "message kept for inspection");
            Ok(())
        })
    }

    fn stop_fetching<'a>(&'a self, queues: &'a [String]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let Some(link) = self.current.lock().await.clone() else {
                return Ok(());
            };
            if !link.is_alive() {
                return Ok(());
            }
            link.cancel(queues).await?;
            // Received, never handed to the worker: back to the queue for other workers.
            let mut returned = Vec::new();
            for queue in queues {
                returned.extend(
                    lock(&self.shared.state)
                        .drain(queue)
                        .into_iter()
                        .filter(|incoming| incoming.generation == link.generation)
                        .map(|incoming| incoming.delivery.delivery_tag),
                );
            }
            tracing::debug!(returned = returned.len(), "stopped consuming");
            link.requeue(returned).await
        })
    }

    fn purge<'a>(&'a self, queues: &'a [String]) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let link = self.link().await?;
            let mut purged = 0;
            for queue in queues {
                purged += link.purge(queue).await?;
                // Received here and not fetched yet: waiting too, and unacked for RabbitMQ,
                // which purges only ready messages.
                let buffered = lock(&self.shared.state).drain(queue);
                for incoming in buffered {
                    if incoming.generation == link.generation {
                        link.ack(incoming.delivery.delivery_tag).await?;
                        purged += 1;
                    }
                }
            }
            Ok(purged)
        })
    }

    fn queue_stats<'a>(&'a self, queues: &'a [String]) -> BoxFuture<'a, Result<Vec<QueueStats>>> {
        Box::pin(async move {
            let link = self.link().await?;
            let mut found = Vec::with_capacity(queues.len());
            for queue in queues {
                let ready = link.ready_count(queue).await?;
                let buffered = lock(&self.shared.state).buffered(queue);
                found.push(QueueStats {
                    name: queue.clone(),
                    // Delivered to this process and not yet fetched: still waiting.
                    waiting: ready + buffered,
                    // The delay levels hold every queue's messages together.
                    scheduled: None,
                    // Other consumers' unacked messages are RabbitMQ's to count.
                    in_flight: None,
                });
            }
            Ok(stats_for(queues, found))
        })
    }

    fn broadcast(&self) -> Option<&dyn Broadcast> {
        Some(self)
    }

    fn delays_eta(&self) -> bool {
        true
    }
}
