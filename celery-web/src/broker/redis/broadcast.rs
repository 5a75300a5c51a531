//! Broadcast on Redis, as kombu does it with `fanout_patterns`: an exchange is a family of
//! pub/sub channels, `/{db}.<exchange>` for an empty routing key and
//! `/{db}.<exchange>/<routing key>` otherwise, and a subscription is a `PSUBSCRIBE` on them.
//! Celery's events go to `/{db}.celeryev/<event type>` (Flower subscribes to
//! `/{db}.celeryev/*`), remote-control requests to `/{db}.celery.pidbox`.
//!
//! A **direct** exchange is kombu's routing table instead (remote-control replies on
//! `reply.celery.pidbox`): sending `LPUSH`es to every queue its `_kombu.binding.<exchange>`
//! set routes the key to, and subscribing declares a queue `<key>.<exchange>` bound with
//! the key and `BRPOP`s it (removed again when the subscription is dropped), as kombu's
//! reply consumer does.
//!
//! Redis's glob `*` also matches dots, so the subscription asks for a little more than the
//! binding and filters by AMQP's rules ([`binding_matches`]). A subscription lost with the
//! connection subscribes again by itself; what was sent in between is not received (as with
//! any broadcast).

use std::time::Duration;

use redis::{AsyncConnectionConfig, ProtocolVersion, PushInfo, PushKind};
use tokio::sync::mpsc;

use super::keys;
use super::keys::fanout_channel;
use super::{RedisBroker, PUBLISH_PATIENCE};
use crate::broker::{
    binding_matches, Broadcast, BroadcastMessage, Exchange, ExchangeKind, Subscription,
};
use crate::protocol::{Envelope, ProtocolError};
use crate::task::BoxFuture;
use crate::Result;

/// Messages a subscription may hold unread before it waits for its reader.
const BACKLOG: usize = 1024;

/// The channel pattern that covers `binding` on `exchange`.
fn pattern(db: i64, exchange: &Exchange, binding: &str) -> String {
    let prefix = fanout_channel(db, &exchange.name, "");
    if binding.is_empty() && exchange.kind != ExchangeKind::Topic {
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

/// How long one `BRPOP` of a direct subscription waits (kombu's 1 s).
const DIRECT_WAIT: f64 = 1.0;

impl RedisBroker {
    /// kombu's `_put` through a direct exchange: `LPUSH` to each queue bound with the key
    /// (nothing when none is: the message is dropped, as kombu drops it).
    async fn send_direct(
        &self,
        exchange: &Exchange,
        routing_key: &str,
        envelope: &Envelope,
    ) -> Result<()> {
        let members: Vec<String> = self
            .run(PUBLISH_PATIENCE, |mut redis| {
                let key = keys::binding(&exchange.name);
                async move {
                    redis::cmd("SMEMBERS")
                        .arg(key)
                        .query_async(&mut redis)
                        .await
                }
            })
            .await?;
        let mut queues: Vec<String> = members
            .iter()
            .filter_map(|member| keys::bound_queue(member, routing_key))
            .map(str::to_owned)
            .collect();
        queues.sort_unstable();
        queues.dedup();
        let payload = envelope.encode();
        for queue in queues {
            self.run(PUBLISH_PATIENCE, |mut redis| {
                let (queue, payload) = (queue.clone(), payload.clone());
                async move {
                    redis::cmd("LPUSH")
                        .arg(queue)
                        .arg(payload)
                        .query_async::<i64>(&mut redis)
                        .await
                }
            })
            .await?;
        }
        Ok(())
    }

    /// A queue `<binding>.<exchange>` bound to `exchange` with `binding`, read with `BRPOP`.
    async fn subscribe_direct(&self, exchange: &Exchange, binding: &str) -> Result<Subscription> {
        let queue = format!("{binding}.{}", exchange.name);
        let set = keys::binding(&exchange.name);
        let member = format!("{binding}{sep}{sep}{queue}", sep = keys::SEP);
        {
            let (set, member) = (set.clone(), member.clone());
            self.run(PUBLISH_PATIENCE, move |mut redis| {
                let (set, member) = (set.clone(), member.clone());
                async move {
                    redis::cmd("SADD")
                        .arg(set)
                        .arg(member)
                        .query_async::<i64>(&mut redis)
                        .await
                }
            })
            .await?;
        }
        let client = self.redis.client().clone();
        let lists: Vec<String> = keys::lists(&queue).collect();
        let (sender, receiver) = mpsc::channel(BACKLOG);
        let routing_key = binding.to_owned();
        let listener = tokio::spawn({
            let lists = lists.clone();
            async move {
                let mut pause = Duration::from_millis(100);
                loop {
                    let mut connection = match client.get_multiplexed_async_connection().await {
                        Ok(connection) => connection,
                        Err(error) => {
                            tracing::debug!(%error, "reply subscription: reconnecting");
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(Duration::from_secs(5));
                            continue;
                        }
                    };
                    loop {
                        let popped: redis::RedisResult<Option<(String, Vec<u8>)>> =
                            redis::cmd("BRPOP")
                                .arg(&lists)
                                .arg(DIRECT_WAIT)
                                .query_async(&mut connection)
                                .await;
                        match popped {
                            Ok(None) => {}
                            Ok(Some((_, payload))) => {
                                let message =
                                    Envelope::decode(&payload).map(|envelope| BroadcastMessage {
                                        routing_key: routing_key.clone(),
                                        envelope,
                                    });
                                if sender.send(message).await.is_err() {
                                    return;
                                }
                            }
                            Err(error) => {
                                tracing::debug!(%error, "reply subscription: BRPOP failed");
                                break;
                            }
                        }
                    }
                }
            }
        });
        let client = self.redis.client().clone();
        let subscription = Subscription::new(receiver, Some(listener.abort_handle()));
        Ok(subscription.with_cleanup(move || {
            // kombu's `after_reply_message_received`: unbind and delete the lists.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    if let Ok(mut connection) = client.get_multiplexed_async_connection().await {
                        let _ = redis::pipe()
                            .cmd("SREM")
                            .arg(set)
                            .arg(member)
                            .ignore()
                            .cmd("DEL")
                            .arg(lists)
                            .ignore()
                            .query_async::<()>(&mut connection)
                            .await;
                    }
                });
            }
        }))
    }
}

impl Broadcast for RedisBroker {
    fn send<'a>(
        &'a self,
        exchange: &'a Exchange,
        routing_key: &'a str,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if exchange.kind == ExchangeKind::Direct {
                return self.send_direct(exchange, routing_key, envelope).await;
            }
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
            if exchange.kind == ExchangeKind::Direct {
                return self.subscribe_direct(exchange, binding).await;
            }
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
