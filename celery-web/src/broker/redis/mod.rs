//! The Redis broker (`redis://[:password@]host:port/db`), in kombu's layout, so Python Celery
//! workers and producers share the queues with celery-web.
//!
//! What a Python Celery site sees:
//!
//! - **Queues** are kombu's lists, one per priority step: `<queue>` (step 0) and
//!   `<queue>\x06\x16<step>` (steps 3, 6, 9). Producers `LPUSH`, consumers pop from the right.
//!   Messages are kombu's JSON envelope with a base64 body and a fresh `delivery_tag`.
//! - **Priorities.** celery-web's priorities mean what they mean on RabbitMQ and the database
//!   broker: 9 is the most urgent. kombu's Redis transport reads them the other way (0 is the
//!   most urgent), so on Redis the envelope carries `9 - priority`: a celery-web task sent with
//!   priority 9 is a kombu priority 0 message in the plain `<queue>` list, and a Python task
//!   sent with `priority=0` reaches a celery-web task as priority 9. Both sides agree on which
//!   message is more urgent. Only kombu's four steps are distinct (celery-web 9–7, 6–4, 3–1, 0);
//!   celery-web's default priority 0 is kombu's 9, the last step, while Python's default
//!   (kombu 0) is served first.
//! - **Claims** are one Lua script (`scripts.rs`): it pops the messages and records each in
//!   kombu's `unacked` hash and `unacked_index` sorted set before it returns, so no message
//!   is ever held only by a worker. A claim whose lease runs out (score older than the
//!   visibility timeout) is pushed back by whoever sweeps first, under `unacked_mutex`:
//!   celery-web restores what a killed Python worker held and Python restores what a killed
//!   celery-web worker held. Both sides must use the same `visibility_timeout`.
//! - **Waiting** for an empty queue blocks on the server (`BLMOVE <list> <list> RIGHT RIGHT`,
//!   which moves nothing: the tail goes back where it was), one dedicated connection per list,
//!   and then claims with the script. No polling.
//! - **ETA / countdown** messages are parked in the sorted set `_celery_web.eta.<queue>`
//!   (member `<step>|<envelope>`, score = eta) and moved to their list by the claim script
//!   when due, so a worker holds none of them in memory and the visibility timeout never
//!   re-runs them. A Python producer's eta message lands in the list; a celery-web worker that
//!   claims it before its eta parks it in the same set. A Python worker does not know this
//!   set, so a producer parks only for queues a celery-web worker consumes: each fetching
//!   worker keeps the marker `_celery_web.consumers.<queue>` set (60 s expiry), and for a queue
//!   without one countdowns go to the list, as kombu does. Messages parked when the last
//!   celery-web consumer of a queue goes away wait for one to come back.
//! - **Bad messages** (not JSON, bad base64, missing headers, unknown task) are moved by the
//!   worker to the list `_celery_web.dead.<queue>`, one JSON object per message:
//!   `{"reason", "queue", "retired_at", "unacked"}`.
//! - **Broadcast** (events, remote control): exchanges are pub/sub channels with kombu's
//!   `/{db}.` prefix ([`Broker::broadcast`]; see `broadcast.rs`).
//! - `_kombu.binding.<queue>` gets Celery's default binding of every queue celery-web
//!   consumes or publishes to, so a Python restore or a Python producer routing through the
//!   queue's exchange finds it.
//!
//! Needs Redis 6.2 or later (`BLMOVE`, `RPOP` with a count). The scripts touch keys they derive
//! from queue names (eta sets and their lists), so Redis Cluster is not supported; nor are
//! kombu's transport options `global_keyprefix`, `sep`, `priority_steps` and
//! `queue_order_strategy` other than the defaults.

mod broadcast;
mod connection;
mod keys;
mod probe;
mod scripts;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;
use serde_json::Value;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{Broadcast, Broker, Delivery, DeliveryTag, FetchRequest, Leases, Payload, QueueStats};
use crate::protocol::{Envelope, Message};
use crate::task::BoxFuture;
use crate::Result;
pub(crate) use connection::{Redis, Role};
pub use keys::fanout_channel;
use probe::Probe;

/// How long a producer keeps trying to reach a Redis that went away before the call fails.
const PUBLISH_PATIENCE: Duration = Duration::from_secs(30);
/// How long one blocking wait lasts at most before the fetch loop looks around again.
const LONGEST_WAIT: Duration = Duration::from_secs(1);
/// The most messages one claim takes.
const MOST_PER_CLAIM: usize = 1_000;
/// The most timed-out claims one sweep restores.
const MOST_PER_RESTORE: isize = 1_000;

/// The `redis://` broker.
#[derive(Debug)]
pub struct RedisBroker {
    redis: Redis,
    visibility_timeout: Duration,
    /// Queues whose `_kombu.binding` entry this process has written.
    declared: Mutex<HashSet<String>>,
    /// When this process last looked for timed-out claims.
    last_restore: Mutex<Option<Instant>>,
    /// Rotates the order queues are served in (kombu's round-robin).
    rotation: AtomicUsize,
    /// Whether published eta messages may go to the eta set (else to their list, as kombu
    /// does); they do only for queues a celery-web worker consumes (its marker is set).
    park_eta: bool,
    /// When this process last set the consumer marker of each queue it fetches from.
    markers_set: Mutex<HashMap<String, Instant>>,
    /// Whether each queue had a consumer marker, and when this process last looked.
    markers_seen: Mutex<HashMap<String, (Instant, bool)>>,
}

/// How long a consumer marker lives; a fetching worker renews it every third of that.
const CONSUMER_MARKER_TTL: Duration = Duration::from_secs(60);
/// How long a producer trusts what it last saw of a queue's consumer marker.
const CONSUMER_MARKER_CACHE: Duration = Duration::from_secs(5);

impl RedisBroker {
    /// A broker on the Redis named by `url` whose claims last `visibility_timeout`. Connects on
    /// first use, and reconnects by itself after losing the server.
    pub fn new(url: &str, visibility_timeout: Duration) -> Result<Self> {
        Ok(RedisBroker {
            redis: Redis::open(url, Role::Broker)?,
            visibility_timeout,
            declared: Mutex::default(),
            last_restore: Mutex::default(),
            rotation: AtomicUsize::new(0),
            park_eta: true,
            markers_set: Mutex::default(),
            markers_seen: Mutex::default(),
        })
    }

    /// Applies the `broker_transport_options` this broker reads:
    ///
    /// - `eta_parking` (default `true`): published countdown/eta messages for a queue that a
    ///   celery-web worker consumes wait in `_celery_web.eta.<queue>` until due. `false`
    ///   writes them to the list always, as kombu does. (A celery-web worker that claims one
    ///   early still parks it.)
    ///
    /// kombu's options that would change the key layout (`global_keyprefix`, `sep`,
    /// `priority_steps`, `queue_order_strategy`, `unacked_key`, ...) are refused unless they
    /// hold kombu's default: a Python side with other keys would not see these queues.
    /// `visibility_timeout` is read elsewhere; connection tuning options are ignored.
    pub fn with_transport_options(
        mut self,
        options: &std::collections::BTreeMap<String, toml::Value>,
    ) -> Result<Self> {
        let layout: [(&str, toml::Value); 7] = [
            ("global_keyprefix", toml::Value::from("")),
            ("sep", toml::Value::from(keys::SEP)),
            (
                "priority_steps",
                toml::Value::from(keys::PRIORITY_STEPS.map(i64::from).to_vec()),
            ),
            ("queue_order_strategy", toml::Value::from("round_robin")),
            ("unacked_key", toml::Value::from(keys::UNACKED)),
            ("unacked_index_key", toml::Value::from(keys::UNACKED_INDEX)),
            ("unacked_mutex_key", toml::Value::from(keys::UNACKED_MUTEX)),
        ];
        for (key, default) in layout {
            if let Some(value) = options.get(key).filter(|value| **value != default) {
                return Err(crate::Error::Config(format!(
                    "setting `broker_transport_options`: {key} = {value} is not supported by \
                     the Redis broker (only kombu's default, {default}, so the keys match \
                     Python Celery's)"
                )));
            }
        }
        if let Some(value) = options.get("eta_parking") {
            self.park_eta = value.as_bool().ok_or_else(|| {
                crate::Error::Config(format!(
                    "setting `broker_transport_options`: eta_parking: expected true or false, \
                     got {value}"
                ))
            })?;
        }
        Ok(self)
    }

    /// The messages kept aside for inspection from `queue` (the `_celery_web.dead.<queue>`
    /// list), newest first.
    pub async fn dead_messages(&self, queue: &str) -> Result<Vec<Value>> {
        let key = keys::dead(queue);
        let entries: Vec<String> = self
            .run(Duration::ZERO, |mut redis| {
                let key = key.clone();
                async move {
                    redis::cmd("LRANGE")
                        .arg(key)
                        .arg(0)
                        .arg(-1)
                        .query_async(&mut redis)
                        .await
                }
            })
            .await?;
        Ok(entries
            .iter()
            .map(|entry| {
                serde_json::from_str(entry).unwrap_or_else(|_| Value::String(entry.clone()))
            })
            .collect())
    }

    /// How many messages wait for their eta in `queue`'s `_celery_web.eta.<queue>` set.
    pub async fn scheduled_count(&self, queue: &str) -> Result<u64> {
        let key = keys::eta(queue);
        self.run(Duration::ZERO, |mut redis| {
            let key = key.clone();
            async move { redis::cmd("ZCARD").arg(key).query_async(&mut redis).await }
        })
        .await
    }

    /// Runs `attempt` on the shared connection, retrying connection failures for `patience`.
    async fn run<T, F, Fut>(&self, patience: Duration, attempt: F) -> Result<T>
    where
        F: FnMut(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        self.redis.run(patience, attempt).await
    }

    /// Writes Celery's default binding of the queues not declared yet by this process.
    fn undeclared(&self, queues: &[&str]) -> Vec<String> {
        let declared = lock(&self.declared);
        let mut new: Vec<String> = queues
            .iter()
            .filter(|q| !declared.contains(**q))
            .map(|q| (*q).to_owned())
            .collect();
        new.sort_unstable();
        new.dedup();
        new
    }

    /// Sets (renews) the consumer marker of `queues` that this process has not renewed for a
    /// third of its lifetime.
    async fn mark_consumed(&self, queues: &[String]) -> Result<()> {
        let stale: Vec<String> = {
            let set = lock(&self.markers_set);
            queues
                .iter()
                .filter(|q| {
                    set.get(*q)
                        .is_none_or(|at| at.elapsed() >= CONSUMER_MARKER_TTL / 3)
                })
                .cloned()
                .collect()
        };
        if stale.is_empty() {
            return Ok(());
        }
        self.run(Duration::ZERO, |mut redis| {
            let stale = &stale;
            async move {
                let mut pipe = redis::pipe();
                for queue in stale {
                    pipe.cmd("SET")
                        .arg(keys::consumers(queue))
                        .arg(1)
                        .arg("EX")
                        .arg(CONSUMER_MARKER_TTL.as_secs())
                        .ignore();
                }
                pipe.query_async::<()>(&mut redis).await
            }
        })
        .await?;
        let now = Instant::now();
        lock(&self.markers_set).extend(stale.into_iter().map(|q| (q, now)));
        Ok(())
    }

    /// Whether eta messages for `queue` are parked: parking is on and a celery-web worker
    /// consumes the queue (else they go to the list, where a Python worker finds them).
    async fn parks(&self, queue: &str) -> Result<bool> {
        if !self.park_eta {
            return Ok(false);
        }
        if let Some((at, seen)) = lock(&self.markers_seen).get(queue) {
            if at.elapsed() < CONSUMER_MARKER_CACHE {
                return Ok(*seen);
            }
        }
        let seen: bool = self
            .run(PUBLISH_PATIENCE, |mut redis| async move {
                redis::cmd("EXISTS")
                    .arg(keys::consumers(queue))
                    .query_async(&mut redis)
                    .await
            })
            .await?;
        lock(&self.markers_seen).insert(queue.to_owned(), (Instant::now(), seen));
        Ok(seen)
    }

    fn mark_declared(&self, queues: Vec<String>) {
        lock(&self.declared).extend(queues);
    }

    /// Turns claimed `(tag, queue, payload)` triples into deliveries, parking the messages whose
    /// eta has not come (a Python producer's countdown). The envelope is not decoded: the
    /// worker does that; only the priority is rewritten into celery-web's meaning.
    async fn deliveries(&self, claimed: Vec<Claimed>) -> Result<Vec<Delivery>> {
        let now = Utc::now();
        let mut deliveries = Vec::with_capacity(claimed.len());
        let mut parked = Vec::new();
        for claim in claimed {
            let Some((eta, redelivered, kombu)) = Probe::read(&claim.payload)
                .map(|probe| (probe.eta(), probe.redelivered(), probe.priority()))
            else {
                // Not an envelope: the worker rejects it and keeps it aside.
                deliveries.push(Delivery {
                    tag: DeliveryTag(claim.tag),
                    queue: claim.queue,
                    payload: Payload::Json(claim.payload),
                    redelivered: false,
                });
                continue;
            };
            let kombu_or_default = kombu.unwrap_or(0);
            if let Some(eta) = eta.filter(|eta| *eta > now) {
                parked.push((claim, eta, keys::step(kombu_or_default.clamp(0, 9) as u8)));
                continue;
            }
            let priority = keys::celery_web_priority(kombu_or_default);
            let payload = kombu
                .and_then(|kombu| probe::with_priority(&claim.payload, kombu, priority))
                .or_else(|| reencoded(&claim.payload, priority))
                .unwrap_or(claim.payload);
            deliveries.push(Delivery {
                tag: DeliveryTag(claim.tag),
                queue: claim.queue,
                payload: Payload::Json(payload),
                redelivered,
            });
        }
        for (claim, eta, step) in parked {
            let member = format!("{step}|{}", String::from_utf8_lossy(&claim.payload));
            let score = seconds(eta);
            let eta_key = keys::eta(&claim.queue);
            self.run(PUBLISH_PATIENCE, |mut redis| {
                let (member, eta_key) = (member.clone(), eta_key.clone());
                let tag = claim.tag.clone();
                async move {
                    scripts::PARK
                        .key(keys::UNACKED)
                        .key(keys::UNACKED_INDEX)
                        .key(eta_key)
                        .arg(tag)
                        .arg(score)
                        .arg(member)
                        .invoke_async::<i64>(&mut redis)
                        .await
                }
            })
            .await?;
            tracing::debug!(queue = %claim.queue, %eta, "parked a message until its eta");
        }
        Ok(deliveries)
    }

    /// Claims up to `limit` messages from `queues` (in this order within a priority step).
    /// Returns the claims and the earliest eta still parked in those queues.
    async fn claim(&self, queues: &[String], limit: usize) -> Result<(Vec<Claimed>, Option<f64>)> {
        let prefix = format!("{}.", uuid::Uuid::new_v4().simple());
        let now = seconds(Utc::now());
        let raw: Vec<Vec<u8>> = self
            .run(Duration::ZERO, |mut redis| {
                let mut invocation = scripts::CLAIM.key(keys::UNACKED);
                invocation.key(keys::UNACKED_INDEX);
                let mut numbers = Vec::new();
                for step in keys::PRIORITY_STEPS {
                    for (number, queue) in queues.iter().enumerate() {
                        invocation.key(keys::list(queue, step));
                        numbers.push(number + 1);
                    }
                }
                invocation
                    .arg(limit.min(MOST_PER_CLAIM))
                    .arg(now)
                    .arg(&prefix)
                    .arg(queues.len());
                for queue in queues {
                    invocation.arg(queue);
                }
                for queue in queues {
                    invocation.arg(Value::String(queue.clone()).to_string());
                }
                for number in numbers {
                    invocation.arg(number);
                }
                invocation.arg(Utc::now().to_rfc3339());
                async move { invocation.invoke_async(&mut redis).await }
            })
            .await?;
        let mut raw = raw.into_iter();
        let next_eta = raw
            .next()
            .and_then(|first| String::from_utf8(first).ok())
            .and_then(|text| text.parse::<f64>().ok());
        let mut claimed = Vec::new();
        while let (Some(tag), Some(number), Some(payload)) = (raw.next(), raw.next(), raw.next()) {
            let number: usize = String::from_utf8_lossy(&number).parse().unwrap_or(1);
            let queue = queues[number.clamp(1, queues.len()) - 1].clone();
            if tag.is_empty() {
                tracing::error!(
                    %queue,
                    payload = %String::from_utf8_lossy(&payload[..payload.len().min(200)]),
                    "a message that is not a JSON object was kept aside in {}",
                    keys::dead(&queue)
                );
                continue;
            }
            claimed.push(Claimed {
                tag: String::from_utf8_lossy(&tag).into_owned(),
                queue,
                payload,
            });
        }
        Ok((claimed, next_eta))
    }

    /// Blocks until one of `lists` has a message, `until` passes, or the fetch is stopped.
    /// Returns whether a message arrived.
    async fn wait_for_messages(
        &self,
        lists: &[String],
        until: Instant,
        request: &FetchRequest,
    ) -> Result<bool> {
        let timeout = until
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(10), LONGEST_WAIT);
        let mut waits = JoinSet::new();
        for list in lists {
            let mut connection = self.redis.blocking(list).await?;
            let list = list.clone();
            waits.spawn(async move {
                let found: redis::RedisResult<Option<Vec<u8>>> = redis::cmd("BLMOVE")
                    .arg(&list)
                    .arg(&list)
                    .arg("RIGHT")
                    .arg("RIGHT")
                    .arg(timeout.as_secs_f64())
                    .query_async(&mut connection)
                    .await;
                (list, found)
            });
        }
        let deadline = tokio::time::sleep_until(until);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                joined = waits.join_next() => match joined {
                    Some(Ok((_, Ok(Some(_))))) => return Ok(true),
                    None | Some(Err(_)) => return Ok(false),
                    Some(Ok((_, Ok(None)))) => {}
                    Some(Ok((list, Err(error)))) => {
                        self.redis.drop_blocking(&list);
                        return Err(self.redis.error(error));
                    }
                },
                () = request.stopped() => return Ok(false),
                () = &mut deadline => return Ok(false),
            }
        }
    }

    /// Pushes back the claims whose lease ran out, at most every quarter of the visibility
    /// timeout, under kombu's `unacked_mutex`.
    async fn restore_timed_out(&self) -> Result<()> {
        let every = (self.visibility_timeout / 4)
            .clamp(Duration::from_millis(100), Duration::from_secs(10));
        {
            let mut last = lock(&self.last_restore);
            if last.is_some_and(|at| at.elapsed() < every) {
                return Ok(());
            }
            *last = Some(Instant::now());
        }
        // Anything timed out at all? (Cheap, and keeps the lock free for Python's sweeps.)
        let cutoff = seconds(Utc::now()) - self.visibility_timeout.as_secs_f64();
        let any: i64 = self
            .run(Duration::ZERO, |mut redis| async move {
                redis::cmd("ZCOUNT")
                    .arg(keys::UNACKED_INDEX)
                    .arg("-inf")
                    .arg(cutoff)
                    .query_async(&mut redis)
                    .await
            })
            .await?;
        if any == 0 {
            return Ok(());
        }
        // The lock, then the list (as kombu): a claim listed before the lock could be extended
        // or claimed again before it is restored; the script checks the score once more.
        let token = uuid::Uuid::new_v4().to_string();
        let locked: Option<String> = self
            .run(Duration::ZERO, |mut redis| {
                let token = token.clone();
                async move {
                    redis::cmd("SET")
                        .arg(keys::UNACKED_MUTEX)
                        .arg(token)
                        .arg("NX")
                        .arg("PX")
                        .arg(keys::UNACKED_MUTEX_EXPIRE_MS)
                        .query_async(&mut redis)
                        .await
                }
            })
            .await?;
        if locked.is_none() {
            return Ok(()); // another worker (maybe a Python one) is restoring
        }
        let ceiling = seconds(Utc::now()) - self.visibility_timeout.as_secs_f64();
        let due: Result<Vec<String>> = self
            .run(Duration::ZERO, |mut redis| async move {
                redis::cmd("ZRANGEBYSCORE")
                    .arg(keys::UNACKED_INDEX)
                    .arg("-inf")
                    .arg(ceiling)
                    .arg("LIMIT")
                    .arg(0)
                    .arg(MOST_PER_RESTORE)
                    .query_async(&mut redis)
                    .await
            })
            .await;
        let restored = match due {
            Ok(due) => self.put_back(&due, Some(ceiling)).await,
            Err(e) => Err(e),
        };
        let unlocked = self
            .run(Duration::ZERO, |mut redis| {
                let token = token.clone();
                async move {
                    scripts::UNLOCK
                        .key(keys::UNACKED_MUTEX)
                        .arg(token)
                        .invoke_async::<i64>(&mut redis)
                        .await
                }
            })
            .await;
        let restored = restored?;
        unlocked?;
        if restored > 0 {
            tracing::warn!(
                restored,
                "restored messages whose visibility timeout ({:?}) ran out; their workers died \
                 or lost the server",
                self.visibility_timeout
            );
        }
        Ok(())
    }

    /// Puts the claims `tags` back at the head of their lists, marked redelivered; returns how
    /// many were still claimed. With `ceiling`, only claims whose lease score is at most it
    /// (still timed out when the script runs); without, any (a release).
    async fn put_back(&self, tags: &[String], ceiling: Option<f64>) -> Result<usize> {
        if tags.is_empty() {
            return Ok(0);
        }
        let values: Vec<Option<Vec<u8>>> = self
            .run(Duration::ZERO, |mut redis| async move {
                let mut pipe = redis::pipe();
                for tag in tags {
                    pipe.cmd("HGET").arg(keys::UNACKED).arg(tag);
                }
                pipe.query_async(&mut redis).await
            })
            .await?;
        let mut restored = 0;
        for (tag, value) in tags.iter().zip(values) {
            let Some(value) = value else {
                // Acked meanwhile, or an index entry without a message: drop it from the index.
                self.run(Duration::ZERO, |mut redis| async move {
                    redis::cmd("ZREM")
                        .arg(keys::UNACKED_INDEX)
                        .arg(tag)
                        .query_async::<i64>(&mut redis)
                        .await
                })
                .await?;
                continue;
            };
            let Some((payload, lists)) = self.restore_target(&value).await? else {
                tracing::error!(%tag, "an unacked entry is not kombu's [message, exchange, routing_key]; kept aside");
                self.retire_tag(tag, "unacked", "unreadable unacked entry")
                    .await?;
                continue;
            };
            let done: i64 = self
                .run(Duration::ZERO, |mut redis| {
                    let mut invocation = scripts::RESTORE.key(keys::UNACKED);
                    invocation.key(keys::UNACKED_INDEX);
                    for list in &lists {
                        invocation.key(list);
                    }
                    invocation.arg(tag).arg(&value).arg(&payload);
                    match ceiling {
                        Some(ceiling) => invocation.arg(ceiling),
                        None => invocation.arg("+inf"),
                    };
                    async move { invocation.invoke_async(&mut redis).await }
                })
                .await?;
            restored += usize::try_from(done).unwrap_or(0);
        }
        Ok(restored)
    }

    /// The payload to push back (marked redelivered) and the lists to push it to, for an
    /// `unacked` value `[message, exchange, routing_key]`, as kombu's restore computes them.
    async fn restore_target(&self, value: &[u8]) -> Result<Option<(String, Vec<String>)>> {
        let Ok((mut message, exchange, routing_key)) =
            serde_json::from_slice::<(Value, String, String)>(value)
        else {
            return Ok(None);
        };
        let kombu = message
            .pointer("/properties/priority")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            .clamp(0, 9) as u8;
        let payload = match &mut message {
            Value::String(raw) => std::mem::take(raw),
            Value::Object(envelope) => {
                if let Some(Value::Object(headers)) = envelope.get_mut("headers") {
                    headers.insert("redelivered".to_owned(), Value::Bool(true));
                }
                if let Some(Value::Object(info)) = envelope
                    .get_mut("properties")
                    .and_then(|p| p.get_mut("delivery_info"))
                {
                    info.insert("redelivered".to_owned(), Value::Bool(true));
                }
                message.to_string()
            }
            _ => return Ok(None),
        };
        let queues = self.lookup(&exchange, &routing_key).await?;
        let step = keys::step(kombu);
        Ok(Some((
            payload,
            queues.iter().map(|queue| keys::list(queue, step)).collect(),
        )))
    }

    /// The queues `exchange` routes `routing_key` to (kombu's `_lookup`): the routing key
    /// itself for the default exchange, else the matching `_kombu.binding` entries. When none
    /// match, the routing key, so a restore never drops a message (kombu would).
    async fn lookup(&self, exchange: &str, routing_key: &str) -> Result<Vec<String>> {
        if exchange.is_empty() {
            return Ok(vec![routing_key.to_owned()]);
        }
        let members: Vec<String> = self
            .run(Duration::ZERO, |mut redis| async move {
                redis::cmd("SMEMBERS")
                    .arg(keys::binding(exchange))
                    .query_async(&mut redis)
                    .await
            })
            .await?;
        let mut queues: Vec<String> = members
            .iter()
            .filter_map(|member| keys::bound_queue(member, routing_key))
            .map(str::to_owned)
            .collect();
        queues.sort_unstable();
        queues.dedup();
        if queues.is_empty() {
            queues.push(routing_key.to_owned());
        }
        Ok(queues)
    }

    async fn retire_tag(&self, tag: &str, queue: &str, reason: &str) -> Result<()> {
        let now = Utc::now().to_rfc3339();
        self.run(PUBLISH_PATIENCE, |mut redis| {
            let now = now.clone();
            async move {
                scripts::RETIRE
                    .key(keys::UNACKED)
                    .key(keys::UNACKED_INDEX)
                    .key(keys::dead(queue))
                    .arg(tag)
                    .arg(reason)
                    .arg(queue)
                    .arg(now)
                    .invoke_async::<i64>(&mut redis)
                    .await
            }
        })
        .await?;
        Ok(())
    }
}

/// One claimed message.
struct Claimed {
    tag: String,
    queue: String,
    payload: Vec<u8>,
}

/// UNIX time in seconds, with microseconds.
fn seconds(time: DateTime<Utc>) -> f64 {
    time.timestamp_micros() as f64 / 1e6
}

/// `payload` decoded and encoded again with `properties.priority` set to `priority`; `None`
/// when it does not decode (the worker then rejects it).
fn reencoded(payload: &[u8], priority: u8) -> Option<Vec<u8>> {
    let mut envelope = Envelope::decode(payload).ok()?;
    envelope
        .properties
        .insert("priority".to_owned(), Value::from(priority));
    Some(envelope.encode().into_bytes())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Broker for RedisBroker {
    fn publish<'a>(&'a self, messages: &'a [Message]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if messages.is_empty() {
                return Ok(());
            }
            let now = Utc::now();
            let mut parking = HashMap::new();
            for message in messages
                .iter()
                .filter(|m| m.eta().is_some_and(|eta| eta > now))
            {
                if !parking.contains_key(message.queue()) {
                    let parks = self.parks(message.queue()).await?;
                    parking.insert(message.queue(), parks);
                }
            }
            let mut pipe = redis::pipe();
            for message in messages {
                let mut envelope = Envelope::from_message(message)?;
                let kombu = keys::kombu_priority(message.properties.priority);
                envelope
                    .properties
                    .insert("priority".to_owned(), Value::from(kombu));
                let payload = envelope.encode();
                let queue = message.queue();
                let step = keys::step(kombu);
                let parked = parking.get(message.queue()).copied().unwrap_or(false);
                match message.eta().filter(|eta| parked && *eta > now) {
                    Some(eta) => pipe
                        .cmd("ZADD")
                        .arg(keys::eta(queue))
                        .arg(seconds(eta))
                        .arg(format!("{step}|{payload}"))
                        .ignore(),
                    None => pipe
                        .cmd("LPUSH")
                        .arg(keys::list(queue, step))
                        .arg(payload)
                        .ignore(),
                };
            }
            let queues: Vec<&str> = messages.iter().map(Message::queue).collect();
            let new = self.undeclared(&queues);
            for queue in &new {
                pipe.cmd("SADD")
                    .arg(keys::binding(queue))
                    .arg(keys::default_binding(queue))
                    .ignore();
            }
            self.run(PUBLISH_PATIENCE, |mut redis| {
                let pipe = &pipe;
                async move { pipe.query_async::<()>(&mut redis).await }
            })
            .await?;
            self.mark_declared(new);
            Ok(())
        })
    }

    fn fetch<'a>(&'a self, request: &'a FetchRequest) -> BoxFuture<'a, Result<Vec<Delivery>>> {
        Box::pin(async move {
            if request.queues.is_empty() || request.limit == 0 {
                return Ok(Vec::new());
            }
            let deadline = Instant::now() + request.wait;
            // kombu's round-robin: the queue served first changes from fetch to fetch.
            let mut queues = request.queues.clone();
            queues.dedup();
            let turn = self.rotation.fetch_add(1, Ordering::Relaxed) % queues.len();
            queues.rotate_left(turn);
            let new = self.undeclared(&queues.iter().map(String::as_str).collect::<Vec<_>>());
            if !new.is_empty() {
                self.run(Duration::ZERO, |mut redis| {
                    let new = &new;
                    async move {
                        let mut pipe = redis::pipe();
                        for queue in new {
                            pipe.cmd("SADD")
                                .arg(keys::binding(queue))
                                .arg(keys::default_binding(queue))
                                .ignore();
                        }
                        pipe.query_async::<()>(&mut redis).await
                    }
                })
                .await?;
                self.mark_declared(new);
            }
            self.mark_consumed(&queues).await?;
            let lists: Vec<String> = keys::PRIORITY_STEPS
                .iter()
                .flat_map(|&step| queues.iter().map(move |queue| keys::list(queue, step)))
                .collect();
            loop {
                self.restore_timed_out().await?;
                let (claimed, next_eta) = self.claim(&queues, request.limit).await?;
                let claimed_count = claimed.len();
                let tags: Vec<String> = claimed.iter().map(|c| c.tag.clone()).collect();
                let deliveries = match self.deliveries(claimed).await {
                    Ok(deliveries) => deliveries,
                    Err(e) => {
                        // Not left claimed for a whole visibility timeout: back to the queue.
                        if let Err(release) = self.put_back(&tags, None).await {
                            tracing::warn!(error = %release, "could not return a claimed batch");
                        }
                        return Err(e);
                    }
                };
                if !deliveries.is_empty() {
                    return Ok(deliveries);
                }
                if claimed_count > 0 {
                    // all of them were parked until their eta: look again
                    continue;
                }
                let now = Instant::now();
                if now >= deadline || request.is_stopped() {
                    return Ok(Vec::new());
                }
                let mut until = deadline;
                if let Some(eta) = next_eta {
                    let due_in = Duration::from_secs_f64((eta - seconds(Utc::now())).max(0.0));
                    until = until.min(now + due_in);
                }
                let arrived = self.wait_for_messages(&lists, until, request).await?;
                if !arrived && (Instant::now() >= deadline || request.is_stopped()) {
                    // Nothing came: no need to look again before returning empty.
                    return Ok(Vec::new());
                }
            }
        })
    }

    fn ack<'a>(&'a self, tags: &'a [DeliveryTag]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if tags.is_empty() {
                return Ok(());
            }
            self.run(Duration::ZERO, |mut redis| async move {
                // MULTI, as kombu: never an index entry gone with its message left behind.
                let mut pipe = redis::pipe();
                pipe.atomic();
                let index = pipe.cmd("ZREM").arg(keys::UNACKED_INDEX);
                for tag in tags {
                    index.arg(&tag.0);
                }
                index.ignore();
                let hash = pipe.cmd("HDEL").arg(keys::UNACKED);
                for tag in tags {
                    hash.arg(&tag.0);
                }
                hash.ignore();
                pipe.query_async::<()>(&mut redis).await
            })
            .await
        })
    }

    fn release<'a>(&'a self, tags: &'a [DeliveryTag]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let tags: Vec<String> = tags.iter().map(|tag| tag.0.clone()).collect();
            self.put_back(&tags, None).await?;
            Ok(())
        })
    }

    fn retire<'a>(&'a self, delivery: &'a Delivery, reason: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.retire_tag(&delivery.tag.0, &delivery.queue, reason)
                .await
        })
    }

    fn purge<'a>(&'a self, queues: &'a [String]) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let counts: Vec<u64> = self
                .run(Duration::ZERO, |mut redis| async move {
                    let mut pipe = redis::pipe();
                    pipe.atomic();
                    for queue in queues {
                        for list in keys::lists(queue) {
                            pipe.cmd("LLEN").arg(&list).cmd("DEL").arg(&list).ignore();
                        }
                        let eta = keys::eta(queue);
                        pipe.cmd("ZCARD").arg(&eta).cmd("DEL").arg(&eta).ignore();
                    }
                    pipe.query_async(&mut redis).await
                })
                .await?;
            Ok(counts.iter().sum())
        })
    }

    fn queue_stats<'a>(&'a self, queues: &'a [String]) -> BoxFuture<'a, Result<Vec<QueueStats>>> {
        Box::pin(async move {
            // Waiting: the lists of every priority step; scheduled: the eta set.
            let counts: Vec<u64> = self
                .run(Duration::ZERO, |mut redis| async move {
                    let mut pipe = redis::pipe();
                    for queue in queues {
                        for list in keys::lists(queue) {
                            pipe.cmd("LLEN").arg(list);
                        }
                        pipe.cmd("ZCARD").arg(keys::eta(queue));
                    }
                    pipe.query_async(&mut redis).await
                })
                .await?;
            let per_queue = keys::PRIORITY_STEPS.len() + 1;
            let mut stats: Vec<QueueStats> = queues
                .iter()
                .zip(counts.chunks(per_queue))
                .map(|(queue, counts)| QueueStats {
                    name: queue.clone(),
                    waiting: counts[..per_queue - 1].iter().sum(),
                    scheduled: Some(counts[per_queue - 1]),
                    in_flight: Some(0),
                })
                .collect();
            // In flight: `unacked` entries `[envelope, exchange, routing key]` routed to the
            // queue (celery-web and Celery's default routing use the queue's name).
            let mut cursor = 0u64;
            loop {
                let (next, entries): (u64, Vec<Vec<u8>>) = self
                    .run(Duration::ZERO, |mut redis| async move {
                        redis::cmd("HSCAN")
                            .arg(keys::UNACKED)
                            .arg(cursor)
                            .arg("COUNT")
                            .arg(1_000)
                            .query_async(&mut redis)
                            .await
                    })
                    .await?;
                for value in entries.iter().skip(1).step_by(2) {
                    let Ok((_, _, routing_key)) = serde_json::from_slice::<(
                        serde::de::IgnoredAny,
                        serde::de::IgnoredAny,
                        String,
                    )>(value) else {
                        continue;
                    };
                    if let Some(queue) = stats.iter_mut().find(|s| s.name == routing_key) {
                        *queue.in_flight.get_or_insert(0) += 1;
                    }
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            Ok(stats)
        })
    }

    fn leases(&self) -> Option<&dyn Leases> {
        Some(self)
    }

    fn broadcast(&self) -> Option<&dyn Broadcast> {
        Some(self)
    }
}

impl Leases for RedisBroker {
    fn visibility_timeout(&self) -> Duration {
        self.visibility_timeout
    }

    fn extend<'a>(&'a self, tags: &'a [DeliveryTag], lease: Duration) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if tags.is_empty() {
                return Ok(());
            }
            // kombu scores a claim with its delivery time and restores it a visibility timeout
            // later; a lease of `lease` from now is the score `now + lease - visibility`.
            let score =
                seconds(Utc::now()) + lease.as_secs_f64() - self.visibility_timeout.as_secs_f64();
            self.run(Duration::ZERO, |mut redis| async move {
                let mut command = redis::cmd("ZADD");
                command.arg(keys::UNACKED_INDEX).arg("XX");
                for tag in tags {
                    command.arg(score).arg(&tag.0);
                }
                command.query_async::<i64>(&mut redis).await
            })
            .await?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_options_are_checked_before_connecting() {
        let broker = RedisBroker::new("redis://:secret@127.0.0.1:1/3", Duration::from_secs(5))
            .expect("a URL is parsed, nothing connects");
        assert!(broker.park_eta);
        let error = RedisBroker::new("rediss://127.0.0.1/0", Duration::from_secs(5)).unwrap_err();
        assert!(error.to_string().contains("TLS"), "{error}");
        let error = RedisBroker::new("redis://host:notaport/0", Duration::from_secs(5))
            .unwrap_err()
            .to_string();
        assert!(error.contains("broker_url"), "{error}");

        let mut options = std::collections::BTreeMap::new();
        options.insert("eta_parking".to_owned(), toml::Value::Boolean(false));
        let broker = broker.with_transport_options(&options).unwrap();
        assert!(!broker.park_eta);
        options.insert("eta_parking".to_owned(), toml::Value::String("no".into()));
        let error = broker
            .with_transport_options(&options)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("eta_parking: expected true or false"),
            "{error}"
        );

        let mut layout = std::collections::BTreeMap::new();
        layout.insert("global_keyprefix".to_owned(), toml::Value::from("site:"));
        let error = RedisBroker::new("redis://127.0.0.1:1/3", Duration::from_secs(5))
            .unwrap()
            .with_transport_options(&layout)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("global_keyprefix = \"site:\" is not supported"),
            "{error}"
        );
        layout.insert("global_keyprefix".to_owned(), toml::Value::from(""));
        layout.insert(
            "priority_steps".to_owned(),
            toml::Value::from(vec![0_i64, 3, 6, 9]),
        );
        assert!(
            RedisBroker::new("redis://127.0.0.1:1/3", Duration::from_secs(5))
                .unwrap()
                .with_transport_options(&layout)
                .is_ok(),
            "kombu's defaults are accepted"
        );
    }
}
