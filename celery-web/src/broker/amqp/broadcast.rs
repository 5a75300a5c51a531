//! Broadcast on RabbitMQ, declared as kombu declares it, so Python's `celery inspect`,
//! `celery events` and Flower share the exchanges with celery-web:
//!
//! | exchange | kind | durable | a subscription's queue | `x-message-ttl` | `x-expires` |
//! |---|---|---|---|---|---|
//! | `celeryev` (events) | topic | yes | `celeryev.<uuid>` | 5 s | 60 s |
//! | `celery.pidbox` (requests) | fanout | no | `<hostname>.celery.pidbox` | 300 s | 10 s |
//! | `reply.celery.pidbox` (replies) | direct | no | `<oid>.reply.celery.pidbox` | 300 s | 10 s |
//!
//! Subscription queues are not durable, deleted with their last consumer, and consumed
//! without acknowledgements. Bodies are raw JSON, as with tasks (no base64 envelope); the
//! `headers` property carries Celery's headers (`hostname` for events, `clock` and `ticket`
//! for remote control).
//!
//! Sending goes through the broker's publishing channel with confirms. Each subscription
//! has a connection of its own, so its consumer neither shares the task consumers' prefetch
//! nor waits behind their deliveries; when that connection dies the subscription connects,
//! declares and consumes again by itself (what was sent in between is not received, as with
//! any broadcast).

use std::time::Duration;

use futures_core::Stream;
use lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::{fields, link, AmqpBroker};
use crate::broker::{Broadcast, BroadcastMessage, Exchange, ExchangeKind, Subscription};
use crate::protocol::{Envelope, ProtocolError};
use crate::task::BoxFuture;
use crate::{Error, Result};

/// Messages a subscription may hold unread before it waits for its reader.
const BACKLOG: usize = 1024;

/// The longest pause between two attempts to connect a subscription again.
const MOST_PATIENT: Duration = Duration::from_secs(5);

/// Declares `exchange` as kombu does (never auto-deleted).
pub(super) async fn declare_exchange(channel: &Channel, exchange: &Exchange) -> Result<()> {
    let kind = match exchange.kind {
        ExchangeKind::Fanout => lapin::ExchangeKind::Fanout,
        ExchangeKind::Direct => lapin::ExchangeKind::Direct,
        ExchangeKind::Topic => lapin::ExchangeKind::Topic,
    };
    channel
        .exchange_declare(
            exchange.name.as_str().into(),
            kind,
            ExchangeDeclareOptions {
                durable: exchange.durable,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| {
            Error::broker(format!(
                "RabbitMQ refused to declare exchange `{}`: {e}",
                exchange.name
            ))
        })
}

/// The queue kombu would give a subscription to `binding` on `exchange`: a reply queue is
/// `<binding>.<exchange>`, an events receiver's `<exchange>.<uuid>`.
fn queue_name(exchange: &Exchange, binding: &str) -> String {
    match exchange.kind {
        ExchangeKind::Direct => format!("{binding}.{}", exchange.name),
        _ => format!("{}.{}", exchange.name, uuid::Uuid::new_v4()),
    }
}

/// kombu's arguments for a subscription's queue: events are worth 5 s and their queue
/// outlives a lost receiver by a minute; remote-control messages are worth 5 minutes and
/// their queues go 10 s after their consumer.
fn queue_arguments(exchange: &Exchange) -> FieldTable {
    let (ttl, expires) = match exchange.kind {
        ExchangeKind::Topic => (5_000, 60_000),
        ExchangeKind::Fanout | ExchangeKind::Direct => (300_000, 10_000),
    };
    let mut arguments = FieldTable::default();
    arguments.insert("x-message-ttl".into(), AMQPValue::LongInt(ttl));
    arguments.insert("x-expires".into(), AMQPValue::LongInt(expires));
    arguments
}

/// An envelope as an AMQP message: the JSON body raw (as it came: the sender wrote it),
/// Celery's headers as a field table.
fn to_amqp(envelope: &Envelope) -> Result<(Vec<u8>, BasicProperties), ProtocolError> {
    let body = envelope.json_text()?;
    let delivery_mode = envelope
        .properties
        .get("delivery_mode")
        .and_then(Value::as_u64)
        .and_then(|mode| u8::try_from(mode).ok())
        .unwrap_or(1);
    let properties = BasicProperties::default()
        .with_content_type(envelope.content_type.as_str().into())
        .with_content_encoding("utf-8".into())
        .with_delivery_mode(delivery_mode)
        .with_headers(fields::to_table(&envelope.headers)?);
    Ok((body, properties))
}

/// What one subscription binds and where.
#[derive(Clone)]
struct Binding {
    uri: String,
    shown: String,
    exchange: Exchange,
    key: String,
    queue: String,
}

impl Binding {
    /// Connects, declares the exchange and the queue, binds and consumes.
    async fn open(&self) -> Result<(Connection, lapin::Consumer)> {
        let connection = link::connect(&self.uri, &self.shown).await?;
        match self.consume(&connection).await {
            Ok(consumer) => Ok((connection, consumer)),
            Err(error) => {
                let _ = connection.close(200, "subscription refused".into()).await;
                Err(error)
            }
        }
    }

    async fn consume(&self, connection: &Connection) -> Result<lapin::Consumer> {
        let failed = |what: &str, e: lapin::Error| {
            Error::broker(format!("RabbitMQ {what} of `{}` failed: {e}", self.queue))
        };
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| failed("channel.open", e))?;
        declare_exchange(&channel, &self.exchange).await?;
        channel
            .queue_declare(
                self.queue.as_str().into(),
                QueueDeclareOptions {
                    durable: false,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                queue_arguments(&self.exchange),
            )
            .await
            .map_err(|e| failed("queue.declare", e))?;
        channel
            .queue_bind(
                self.queue.as_str().into(),
                self.exchange.name.as_str().into(),
                self.key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| failed("queue.bind", e))?;
        channel
            .basic_consume(
                self.queue.as_str().into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| failed("basic.consume", e))
    }
}

/// Forwards what `consumer` receives to `sender` until the consumer ends (`Ok`) or the
/// reader or `stop` went away (`Err`).
async fn forward(
    consumer: &mut lapin::Consumer,
    binding: &Binding,
    sender: &mpsc::Sender<Result<BroadcastMessage, ProtocolError>>,
    stop: &mut oneshot::Receiver<()>,
) -> std::result::Result<(), ()> {
    loop {
        let next = tokio::select! {
            next = std::future::poll_fn(|cx| Pin::new(&mut *consumer).poll_next(cx)) => next,
            _ = &mut *stop => return Err(()),
        };
        let delivery = match next {
            Some(Ok(delivery)) => delivery,
            Some(Err(error)) => {
                tracing::debug!(%error, queue = %binding.queue, "broadcast consumer failed");
                return Ok(());
            }
            None => return Ok(()),
        };
        let routing_key = delivery.routing_key.as_str().to_owned();
        let envelope = fields::to_envelope(
            &delivery.data,
            &delivery.properties,
            delivery.exchange.as_str(),
            &routing_key,
            &delivery.delivery_tag.to_string(),
        );
        let message = BroadcastMessage {
            routing_key,
            envelope,
        };
        if sender.send(Ok(message)).await.is_err() {
            return Err(());
        }
    }
}

/// Feeds a subscription: forwards, and when the connection dies connects again with a
/// growing pause. Closes the connection when the subscription is dropped.
async fn listen(
    binding: Binding,
    first: (Connection, lapin::Consumer),
    sender: mpsc::Sender<Result<BroadcastMessage, ProtocolError>>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut current = Some(first);
    let mut pause = Duration::from_millis(100);
    loop {
        let (connection, mut consumer) = match current.take() {
            Some(open) => open,
            None => {
                let opened = tokio::select! {
                    opened = binding.open() => opened,
                    _ = &mut stop => return,
                };
                match opened {
                    Ok(open) => {
                        pause = Duration::from_millis(100);
                        open
                    }
                    Err(error) => {
                        tracing::debug!(%error, "broadcast subscription: reconnecting");
                        tokio::select! {
                            () = tokio::time::sleep(pause) => {}
                            _ = &mut stop => return,
                        }
                        pause = (pause * 2).min(MOST_PATIENT);
                        continue;
                    }
                }
            }
        };
        let ended = forward(&mut consumer, &binding, &sender, &mut stop).await;
        drop(consumer);
        if connection.status().connected() {
            let _ = connection.close(200, "unsubscribed".into()).await;
        }
        if ended.is_err() {
            return;
        }
        tracing::debug!(queue = %binding.queue, "broadcast subscription lost; reconnecting");
    }
}

impl Broadcast for AmqpBroker {
    fn send<'a>(
        &'a self,
        exchange: &'a Exchange,
        routing_key: &'a str,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let (body, properties) = to_amqp(envelope)?;
            let link = self.link().await?;
            link.declare_exchange(exchange).await?;
            let confirm = link
                .publish(&exchange.name, routing_key, &body, properties)
                .await?;
            link::confirmed(confirm, "a broadcast message").await
        })
    }

    fn subscribe<'a>(
        &'a self,
        exchange: &'a Exchange,
        binding: &'a str,
    ) -> BoxFuture<'a, Result<Subscription>> {
        Box::pin(async move {
            let queue = queue_name(exchange, binding);
            self.subscribe_as(exchange, binding, &queue).await
        })
    }

    fn subscribe_as<'a>(
        &'a self,
        exchange: &'a Exchange,
        binding: &'a str,
        queue: &'a str,
    ) -> BoxFuture<'a, Result<Subscription>> {
        Box::pin(async move {
            let binding = Binding {
                uri: self.uri.clone(),
                shown: self.shown.clone(),
                exchange: exchange.clone(),
                key: binding.to_owned(),
                queue: queue.to_owned(),
            };
            // Consuming before returning, so nothing sent after is missed.
            let first = binding.open().await?;
            let (sender, receiver) = mpsc::channel(BACKLOG);
            let (stopper, stop) = oneshot::channel();
            tokio::spawn(listen(binding, first, sender, stop));
            Ok(Subscription::new(receiver, None).with_cleanup(move || {
                let _ = stopper.send(());
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_are_named_as_kombu_names_them() {
        let reply = Exchange::direct("reply.celery.pidbox").transient();
        assert_eq!(queue_name(&reply, "abc"), "abc.reply.celery.pidbox");
        let events = queue_name(&Exchange::topic("celeryev"), "#");
        assert!(events.starts_with("celeryev.") && events.len() == "celeryev.".len() + 36);
    }

    #[test]
    fn envelopes_travel_as_raw_json_with_their_headers() {
        let mut headers = serde_json::Map::new();
        headers.insert("hostname".into(), "w1@host".into());
        let event = serde_json::json!([{"type": "task-received", "uuid": "u"}]);
        let envelope = Envelope::with_json_body(&event, headers, "celeryev", "task.multi");
        let (body, properties) = to_amqp(&envelope).unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), event);
        assert_eq!(*properties.delivery_mode(), Some(1));
        let back = fields::to_envelope(&body, &properties, "celeryev", "task.multi", "1");
        assert_eq!(back.json_body().unwrap(), event);
        assert_eq!(back.headers["hostname"], "w1@host");
    }
}
