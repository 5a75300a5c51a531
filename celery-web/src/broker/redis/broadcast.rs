//! Broadcast on Redis, as kombu does it with `fanout_patterns`: an exchange is a family of
//! pub/sub channels, `/{db}.<exchange>` for an empty routing key and
//! `/{db}.<exchange>/<routing key>` otherwise, and a subscription is a `PSUBSCRIBE` on them.
//! Celery's events go to `/{db}.celeryev/<event type>` (Flower subscribes to
//! `/{db}.celeryev/*`), remote-control requests to `/{db}.celery.pidbox`.
//!
//! Redis's glob `*` also matches dots, so the subscription asks for a little more than the
//! binding and filters by AMQP's rules ([`binding_matches`]). A subscription lost with the
//! connection subscribes again by itself; what was sent in between is not received (as with
//! any broadcast).

use std::time::Duration;

use redis::{AsyncConnectionConfig, ProtocolVersion, PushInfo, PushKind};
use tokio::sync::mpsc;

use super::keys::fanout_channel;
use super::{RedisBroker, PUBLISH_PATIENCE};
use crate::broker::{binding_matches, Broadcast, BroadcastMessage, Exchange, Subscription};
use crate::protocol::{Envelope, ProtocolError};
use crate::task::BoxFuture;
use crate::Result;

/// Messages a subscription may hold unread before it waits for its reader.
const BACKLOG: usize = 1024;

/// The channel pattern that covers `binding` on `exchange`.
fn pattern(db: i64, exchange: &Exchange, binding: &str) -> String {
    let prefix = fanout_channel(db, &exchange.name, "");
    if binding.is_empty() && exchange.kind != crate::broker::ExchangeKind::Topic {
        // Fanout (and direct with an empty key): the bare channel and every keyed one.
        return format!("{}*", glob_escape(&prefix));
    }
    let words: String = binding
        .chars()
        .map(|c| if c == '#' { '*' } else { c })
        .collect();
    format!("{}/{}", glob_escape(&prefix), glob_escape_keep_star(&words))
}

fn glob_escape(text: &str) -> String {
    text.chars().fold(String::new(), |mut out, c| {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
        out
    })
}

fn glob_escape_keep_star(text: &str) -> String {
    text.split('*')
        .map(glob_escape)
        .collect::<Vec<_>>()
        .join("*")
}

/// The routing key of a message received on `channel` (after the exchange's prefix).
fn routing_key<'a>(channel: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = channel.strip_prefix(prefix)?;
    if rest.is_empty() {
        return Some("");
    }
    rest.strip_prefix('/')
}

/// Reads one pushed `pmessage`: `[pattern, channel, payload]`.
fn read_push(
    data: &[redis::Value],
    prefix: &str,
) -> Option<(String, Result<Envelope, ProtocolError>)> {
    let text = |value: &redis::Value| match value {
        redis::Value::BulkString(bytes) => Some(bytes.clone()),
        redis::Value::SimpleString(text) => Some(text.clone().into_bytes()),
        _ => None,
    };
    let (channel, payload) = match data {
        [_, channel, payload] => (text(channel)?, text(payload)?),
        _ => return None,
    };
    let channel = String::from_utf8_lossy(&channel).into_owned();
    let key = routing_key(&channel, prefix)?.to_owned();
    Some((key, Envelope::decode(&payload)))
}

impl Broadcast for RedisBroker {
    fn send<'a>(
        &'a self,
        exchange: &'a Exchange,
        routing_key: &'a str,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let channel = fanout_channel(self.redis.db(), &exchange.name, routing_key);
            let payload = envelope.encode();
            self.run(PUBLISH_PATIENCE, |mut redis| {
                let (channel, payload) = (channel.clone(), payload.clone());
                async move {
                    redis::cmd("PUBLISH")
                        .arg(channel)
                        .arg(payload)
                        .query_async::<i64>(&mut redis)
                        .await
                }
            })
            .await?;
            Ok(())
        })
    }

    fn subscribe<'a>(
        &'a self,
        exchange: &'a Exchange,
        binding: &'a str,
    ) -> BoxFuture<'a, Result<Subscription>> {
        Box::pin(async move {
            let db = self.redis.db();
            let pattern = pattern(db, exchange, binding);
            let prefix = fanout_channel(db, &exchange.name, "");
            let mut info = self.redis.client().get_connection_info().clone();
            info.redis.protocol = ProtocolVersion::RESP3;
            let client = redis::Client::open(info).map_err(|e| self.redis.error(e))?;
            let connect = {
                let (client, pattern) = (client.clone(), pattern.clone());
                move || {
                    let (client, pattern) = (client.clone(), pattern.clone());
                    async move {
                        let (sender, pushes) = mpsc::unbounded_channel();
                        let config = AsyncConnectionConfig::new()
                            .set_connection_timeout(Duration::from_secs(5))
                            .set_push_sender(sender);
                        let mut connection = client
                            .get_multiplexed_async_connection_with_config(&config)
                            .await?;
                        connection.psubscribe(&pattern).await?;
                        Ok::<_, redis::RedisError>((connection, pushes))
                    }
                }
            };
            // The first subscription is made before returning, so nothing sent after is missed.
            let first = connect().await.map_err(|e| self.redis.error(e))?;
            let (sender, receiver) = mpsc::channel(BACKLOG);
            let (exchange, binding) = (exchange.clone(), binding.to_owned());
            let listener = tokio::spawn(async move {
                let mut current = Some(first);
                let mut pause = Duration::from_millis(100);
                loop {
                    let (_connection, mut pushes) = match current.take() {
                        Some(open) => open,
                        None => match connect().await {
                            Ok(open) => {
                                pause = Duration::from_millis(100);
                                open
                            }
                            Err(error) => {
                                tracing::debug!(%error, "broadcast subscription: reconnecting");
                                tokio::time::sleep(pause).await;
                                pause = (pause * 2).min(Duration::from_secs(5));
                                continue;
                            }
                        },
                    };
                    while let Some(PushInfo { kind, data }) = pushes.recv().await {
                        match kind {
                            PushKind::PMessage => {}
                            PushKind::Disconnection => break,
                            _ => continue,
                        }
                        let Some((routing_key, envelope)) = read_push(&data, &prefix) else {
                            continue;
                        };
                        if !binding_matches(exchange.kind, &binding, &routing_key) {
                            continue;
                        }
                        let message = envelope.map(|envelope| BroadcastMessage {
                            routing_key,
                            envelope,
                        });
                        if sender.send(message).await.is_err() {
                            return;
                        }
                    }
                    if sender.is_closed() {
                        return;
                    }
                }
            });
            Ok(Subscription::new(receiver, Some(listener.abort_handle())))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_cover_the_binding() {
        assert_eq!(
            pattern(13, &Exchange::topic("celeryev"), "#"),
            "/13.celeryev/*"
        );
        assert_eq!(
            pattern(13, &Exchange::topic("celeryev"), "worker.#"),
            "/13.celeryev/worker.*"
        );
        assert_eq!(
            pattern(0, &Exchange::fanout("celery.pidbox"), ""),
            "/0.celery.pidbox*"
        );
    }

    #[test]
    fn routing_keys_come_from_the_channel() {
        assert_eq!(
            routing_key("/1.celeryev/task.sent", "/1.celeryev"),
            Some("task.sent")
        );
        assert_eq!(
            routing_key("/1.celery.pidbox", "/1.celery.pidbox"),
            Some("")
        );
        assert_eq!(routing_key("/1.celeryevil/x", "/1.celeryev"), None);
    }
}
