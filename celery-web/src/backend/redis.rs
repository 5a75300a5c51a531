//! The Redis result backend (`result_backend = "redis://..."`), in Celery's format, so Python's
//! `AsyncResult(id).get()` reads what celery-web workers store and the reverse.
//!
//! - Each task's meta is the JSON document Celery writes under `celery-task-meta-<id>`:
//!   `status`, `result` (the return value; `{"exc_type", "exc_message", "exc_module"}` for
//!   failures), `traceback`, `children`, `date_done` (ISO-8601 with offset, only when ready),
//!   `task_id`, and the `result_extended` fields `name`, `args`, `kwargs`, `worker`, `retries`,
//!   `queue` when known. celery-web adds `date_created`, `date_started` and
//!   `periodic_task_name`; Python ignores them.
//! - Writes are `SET ... EX result_expires` (no expiry when `result_expires` is 0) plus
//!   `PUBLISH` on a channel named like the key, pipelined per batch. As in Celery, a task
//!   already SUCCESS is not overwritten.
//! - [`wait`](ResultBackend::wait) reads the key; if the task is not ready, it subscribes to the
//!   task's channel, reads again (so a result stored in between is not missed), then sleeps
//!   until a message arrives: no polling. While the server is unreachable it keeps trying until
//!   its timeout, so a `get` rides out a Redis restart.
//!   If the subscription cannot be made or is lost, it reads again and resubscribes.
//! - Redis expires results by itself, so workers run no periodic cleanup;
//!   [`delete_expired`](ResultBackend::delete_expired) (`site celery expire-results`) still
//!   removes ready results older than a cut-off (a `SCAN` over `celery-task-meta-*`).

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use redis::aio::ConnectionManager;
use redis::{AsyncConnectionConfig, Client, ProtocolVersion, PushInfo, PushKind};
use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

use super::{latest_per_task, ResultBackend, TaskRecord};
use crate::broker::redis::{Redis, Role};
use crate::task::{BoxFuture, State};
use crate::{Error, Result};

/// Celery's key prefix of task results.
const META_PREFIX: &str = "celery-task-meta-";
/// How long a store keeps trying to reach a Redis that went away.
const STORE_PATIENCE: Duration = Duration::from_secs(20);
/// Keys examined per `SCAN` step of [`ResultBackend::delete_expired`].
const SCAN_BATCH: usize = 1_000;

/// Results in Redis, in Celery's layout.
#[derive(Debug)]
pub struct RedisBackend {
    redis: Redis,
    /// A RESP3 client for subscriptions (pushes arrive on the connection's channel).
    subscriber: Client,
    expires: Option<Duration>,
}

impl RedisBackend {
    /// Results in the Redis named by `url`, kept for `expires` (forever when `None`).
    /// Connects on first use.
    pub fn new(url: &str, expires: Option<Duration>) -> Result<Self> {
        let redis = Redis::open(url, Role::Results)?;
        let mut info = redis.client().get_connection_info().clone();
        info.redis.protocol = ProtocolVersion::RESP3;
        let subscriber = Client::open(info).map_err(|e| redis.error(e))?;
        Ok(RedisBackend {
            redis,
            subscriber,
            expires,
        })
    }

    async fn run<T, F, Fut>(&self, patience: Duration, attempt: F) -> Result<T>
    where
        F: FnMut(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        self.redis.run(patience, attempt).await
    }

    /// A subscription to `channel`: the connection (kept alive by holding it) and its pushes.
    async fn subscribe(
        &self,
        channel: &str,
    ) -> Result<(
        redis::aio::MultiplexedConnection,
        mpsc::UnboundedReceiver<PushInfo>,
    )> {
        let (sender, receiver) = mpsc::unbounded_channel();
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Duration::from_secs(5))
            .set_push_sender(sender);
        let mut connection = self
            .subscriber
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| self.redis.error(e))?;
        connection
            .subscribe(channel)
            .await
            .map_err(|e| self.redis.error(e))?;
        Ok((connection, receiver))
    }
}

fn key(task_id: &str) -> String {
    format!("{META_PREFIX}{task_id}")
}

fn iso(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, false)
}

/// A time Celery wrote: ISO-8601 with or without offset (naive = UTC, Celery ≤ 5.3).
fn parse_time(value: Option<&Value>) -> Option<DateTime<Utc>> {
    let text = value?.as_str()?;
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|naive| naive.and_utc())
}

/// Celery's meta document of a record, as written (celery-web's extra fields at the end).
#[derive(Serialize)]
struct Meta<'a> {
    status: &'a str,
    result: &'a Option<Value>,
    traceback: Option<&'a str>,
    children: &'a [Value],
    date_done: Option<String>,
    task_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    group_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    args: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kwargs: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    worker: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    queue: Option<&'a str>,
    retries: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    periodic_task_name: Option<&'a str>,
    date_created: Cow<'a, str>,
    date_started: Option<Cow<'a, str>>,
}

/// What a store needs of the meta already stored: its status and dates, borrowed.
#[derive(Deserialize)]
struct Stored<'a> {
    #[serde(borrow)]
    status: Cow<'a, str>,
    #[serde(borrow, default)]
    date_created: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    date_started: Option<Cow<'a, str>>,
}

/// The meta document of `record`, keeping `date_created` / `date_started` of `previous`.
fn meta(record: &TaskRecord, previous: Option<&Stored<'_>>, now: DateTime<Utc>) -> String {
    let done = record
        .status
        .is_ready()
        .then(|| iso(record.date_done.unwrap_or(now)));
    let created = match (
        previous.and_then(|p| p.date_created.as_deref()),
        record.date_created,
    ) {
        (Some(kept), _) => Cow::Borrowed(kept),
        (None, Some(created)) => Cow::Owned(iso(created)),
        (None, None) => Cow::Owned(iso(now)),
    };
    let started = match (
        record.date_started,
        previous.and_then(|p| p.date_started.as_deref()),
    ) {
        (Some(started), _) => Some(Cow::Owned(iso(started))),
        (None, Some(kept)) => Some(Cow::Borrowed(kept)),
        (None, None) => None,
    };
    let meta = Meta {
        status: record.status.as_str(),
        result: &record.result,
        traceback: record.traceback.as_deref(),
        children: &[],
        date_done: done,
        task_id: &record.task_id,
        group_id: record.group_id.as_deref(),
        parent_id: record.parent_id.as_deref(),
        name: record.task_name.as_deref(),
        args: record.args.as_ref(),
        kwargs: record.kwargs.as_ref(),
        worker: record.worker.as_deref(),
        queue: record.queue.as_deref(),
        retries: record.retries,
        periodic_task_name: record.periodic_task_name.as_deref(),
        date_created: created,
        date_started: started,
    };
    serde_json::to_string(&meta).expect("a meta document always serializes")
}

/// The record of a meta document (ours or Python's). `None` when it is not one.
fn record(task_id: &str, raw: &[u8]) -> Option<TaskRecord> {
    let meta: Value = serde_json::from_slice(raw).ok()?;
    let status: State = meta.get("status")?.as_str()?.parse().ok()?;
    let text = |name: &str| meta.get(name).and_then(Value::as_str).map(str::to_owned);
    let mut record = TaskRecord::new(task_id, status);
    record.result = meta.get("result").filter(|v| !v.is_null()).cloned();
    record.traceback = text("traceback");
    record.task_name = text("name");
    record.args = meta.get("args").filter(|v| !v.is_null()).cloned();
    record.kwargs = meta.get("kwargs").filter(|v| !v.is_null()).cloned();
    record.worker = text("worker");
    record.retries = meta
        .get("retries")
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0);
    record.queue = text("queue");
    record.parent_id = text("parent_id");
    record.group_id = text("group_id");
    record.periodic_task_name = text("periodic_task_name");
    record.date_created = parse_time(meta.get("date_created"));
    record.date_started = parse_time(meta.get("date_started"));
    record.date_done = parse_time(meta.get("date_done")).filter(|_| status.is_ready());
    Some(record)
}

/// Celery's key of a group's chord state: `celery-taskset-meta-<gid><suffix>` (`.j` the
/// finished parts, `.s` the header size, `.t` the extra parts of replaced tasks).
fn group_key(group_id: &str, suffix: &str) -> String {
    format!("celery-taskset-meta-{group_id}{suffix}")
}

impl RedisBackend {
    /// One part of Celery 5.5's native chord join: `ZADD .j`, then the header is complete
    /// when the count of `.j` equals `.s` + `.t`. Returns the results (or the `ChordError`
    /// message) when this part completed it.
    async fn join_part(
        &self,
        part: &crate::canvas::ChordPart,
    ) -> Result<Option<std::result::Result<Vec<Value>, String>>> {
        let jkey = group_key(&part.group_id, ".j");
        let tkey = group_key(&part.group_id, ".t");
        let skey = group_key(&part.group_id, ".s");
        let encoded = serde_json::json!([1, part.task_id, part.state.as_str(), part.result]);
        let encoded = serde_json::to_string(&encoded).map_err(Error::backend)?;
        let score = part
            .group_index
            .map_or_else(|| "+inf".to_owned(), |i| i.to_string());
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("ZADD")
            .arg(&jkey)
            .arg(&score)
            .arg(&encoded)
            .ignore()
            .cmd("ZCOUNT")
            .arg(&jkey)
            .arg("-inf")
            .arg("+inf")
            .cmd("GET")
            .arg(&tkey)
            .cmd("GET")
            .arg(&skey);
        if let Some(expires) = self.expires {
            for key in [&jkey, &tkey, &skey] {
                pipe.cmd("EXPIRE")
                    .arg(key)
                    .arg(expires.as_secs().max(1))
                    .ignore();
            }
        }
        let (ready, extra, size): (i64, Option<i64>, Option<i64>) = self
            .run(STORE_PATIENCE, |mut redis| {
                let pipe = &pipe;
                async move { pipe.query_async(&mut redis).await }
            })
            .await?;
        let Some(size) = size else {
            return Ok(None);
        };
        if ready != size + extra.unwrap_or(0) {
            return Ok(None);
        }
        let members: Vec<Vec<u8>> = self
            .run(STORE_PATIENCE, |mut redis| {
                let jkey = &jkey;
                async move {
                    redis::cmd("ZRANGE")
                        .arg(jkey)
                        .arg(0)
                        .arg(-1)
                        .query_async(&mut redis)
                        .await
                }
            })
            .await?;
        let mut results = Vec::with_capacity(members.len());
        for raw in members {
            let member: Value = serde_json::from_slice(&raw).map_err(|e| {
                Error::backend(format!(
                    "{jkey} holds a member that is not JSON ({e}): {}",
                    String::from_utf8_lossy(&raw)
                ))
            })?;
            let (Some(task_id), Some(state), Some(result)) = (
                member.get(1).and_then(Value::as_str),
                member.get(2).and_then(Value::as_str),
                member.get(3),
            ) else {
                return Err(Error::backend(format!(
                    "{jkey} holds a member that is not [1, id, state, result]: {member}"
                )));
            };
            if let Some(error) = crate::canvas::chord::dependency_error(task_id, state, result) {
                return Ok(Some(Err(error)));
            }
            results.push(result.clone());
        }
        Ok(Some(Ok(results)))
    }
}

impl ResultBackend for RedisBackend {
    fn store<'a>(&'a self, records: &'a [TaskRecord]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let records = latest_per_task(records);
            if records.is_empty() {
                return Ok(());
            }
            let keys: Vec<String> = records.iter().map(|r| key(&r.task_id)).collect();
            let stored: Vec<Option<Vec<u8>>> = self
                .run(STORE_PATIENCE, |mut redis| {
                    let keys = &keys;
                    async move { redis::cmd("MGET").arg(keys).query_async(&mut redis).await }
                })
                .await?;
            let now = Utc::now();
            let mut pipe = redis::pipe();
            for ((record, key), stored) in records.iter().zip(&keys).zip(&stored) {
                let previous = stored
                    .as_deref()
                    .and_then(|raw| serde_json::from_slice::<Stored<'_>>(raw).ok());
                if previous
                    .as_ref()
                    .is_some_and(|p| p.status == State::Success.as_str())
                {
                    continue; // SUCCESS is final, as in Celery
                }
                let value = meta(record, previous.as_ref(), now);
                match self.expires {
                    Some(expires) => pipe
                        .cmd("SET")
                        .arg(key)
                        .arg(&value)
                        .arg("EX")
                        .arg(expires.as_secs().max(1)),
                    None => pipe.cmd("SET").arg(key).arg(&value),
                }
                .ignore();
                pipe.cmd("PUBLISH").arg(key).arg(&value).ignore();
            }
            self.run(STORE_PATIENCE, |mut redis| {
                let pipe = &pipe;
                async move { pipe.query_async::<()>(&mut redis).await }
            })
            .await
        })
    }

    fn fetch<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Result<Option<TaskRecord>>> {
        Box::pin(async move {
            let raw: Option<Vec<u8>> = self
                .run(Duration::ZERO, |mut redis| async move {
                    redis::cmd("GET")
                        .arg(key(task_id))
                        .query_async(&mut redis)
                        .await
                })
                .await?;
            match raw {
                None => Ok(None),
                Some(raw) => record(task_id, &raw).map(Some).ok_or_else(|| {
                    Error::backend(format!(
                        "{}{task_id} is not a Celery result: {}",
                        META_PREFIX,
                        String::from_utf8_lossy(&raw)
                    ))
                }),
            }
        })
    }

    fn forget<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.run(Duration::ZERO, |mut redis| async move {
                redis::cmd("DEL")
                    .arg(key(task_id))
                    .query_async::<i64>(&mut redis)
                    .await
            })
            .await?;
            Ok(())
        })
    }

    fn delete_expired<'a>(&'a self, before: DateTime<Utc>) -> BoxFuture<'a, Result<u64>> {
        self.delete_expired_reporting(before, std::sync::Arc::new(|_| {}))
    }

    fn delete_expired_reporting<'a>(
        &'a self,
        before: DateTime<Utc>,
        report: std::sync::Arc<dyn Fn(u64) + Send + Sync>,
    ) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let mut cursor: u64 = 0;
            let mut deleted = 0;
            loop {
                let (next, found): (u64, Vec<String>) = self
                    .run(Duration::ZERO, |mut redis| async move {
                        redis::cmd("SCAN")
                            .arg(cursor)
                            .arg("MATCH")
                            .arg(format!("{META_PREFIX}*"))
                            .arg("COUNT")
                            .arg(SCAN_BATCH)
                            .query_async(&mut redis)
                            .await
                    })
                    .await?;
                if !found.is_empty() {
                    let values: Vec<Option<Vec<u8>>> = self
                        .run(Duration::ZERO, |mut redis| {
                            let found = &found;
                            async move { redis::cmd("MGET").arg(found).query_async(&mut redis).await }
                        })
                        .await?;
                    let old: Vec<&String> = found
                        .iter()
                        .zip(values)
                        .filter(|(key, value)| {
                            let id = key.strip_prefix(META_PREFIX).unwrap_or(key);
                            value
                                .as_deref()
                                .and_then(|raw| record(id, raw))
                                .is_some_and(|r| {
                                    r.status.is_ready()
                                        && r.date_done.is_some_and(|done| done < before)
                                })
                        })
                        .map(|(key, _)| key)
                        .collect();
                    if !old.is_empty() {
                        let removed: u64 = self
                            .run(Duration::ZERO, |mut redis| {
                                let old = &old;
                                async move { redis::cmd("DEL").arg(old).query_async(&mut redis).await }
                            })
                            .await?;
                        deleted += removed;
                        report(deleted);
                    }
                }
                if next == 0 {
                    return Ok(deleted);
                }
                cursor = next;
            }
        })
    }

    fn expires_by_itself(&self) -> bool {
        self.expires.is_some()
    }

    fn joins_chords(&self) -> bool {
        true
    }

    fn chord_part_return<'a>(
        &'a self,
        parts: &'a [crate::canvas::ChordPart],
    ) -> BoxFuture<'a, Result<Vec<crate::canvas::ChordReady>>> {
        Box::pin(async move {
            let mut ready = Vec::new();
            for part in parts {
                if let Some(results) = self.join_part(part).await? {
                    ready.push(crate::canvas::ChordReady {
                        last: part.clone(),
                        results,
                    });
                }
            }
            Ok(ready)
        })
    }

    fn chord_started<'a>(
        &'a self,
        group_id: &'a str,
        header: &'a [String],
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let size = header.len();
            let key = group_key(group_id, ".s");
            let seconds = self.expires.map_or(86_400, |e| e.as_secs().max(1));
            self.run(STORE_PATIENCE, |mut redis| {
                let key = &key;
                async move {
                    redis::cmd("SETEX")
                        .arg(key)
                        .arg(seconds)
                        .arg(size)
                        .query_async::<()>(&mut redis)
                        .await
                }
            })
            .await
        })
    }

    fn chord_fired<'a>(&'a self, group_id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let keys = [".j", ".t", ".s"].map(|suffix| group_key(group_id, suffix));
            self.run(STORE_PATIENCE, |mut redis| {
                let keys = &keys;
                async move {
                    redis::cmd("DEL")
                        .arg(keys)
                        .query_async::<i64>(&mut redis)
                        .await
                }
            })
            .await
            .map(drop)
        })
    }

    fn wait<'a>(
        &'a self,
        task_id: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Option<TaskRecord>>> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + timeout;
            let channel = key(task_id);
            // Already done: no subscription needed.
            let first = self.fetch(task_id).await;
            if timeout.is_zero()
                || first
                    .as_ref()
                    .is_ok_and(|latest| latest.as_ref().is_some_and(|r| r.status.is_ready()))
            {
                return first;
            }
            loop {
                // Subscribe first, then read: a result stored in between is not missed.
                let subscription = self.subscribe(&channel).await;
                let read = self.fetch(task_id).await;
                let now = tokio::time::Instant::now();
                match read {
                    Ok(latest) if latest.as_ref().is_some_and(|r| r.status.is_ready()) => {
                        return Ok(latest)
                    }
                    read if now >= deadline => return read,
                    Err(error) => {
                        // The server is away: wait for it until the deadline.
                        tracing::debug!(%error, task_id, "waiting for the result backend");
                        tokio::time::sleep(Duration::from_millis(200).min(deadline - now)).await;
                        continue;
                    }
                    Ok(_) => {}
                }
                let Ok((_connection, mut pushes)) = subscription else {
                    // No subscription (the server is away): look again shortly.
                    tokio::time::sleep(Duration::from_millis(200).min(deadline - now)).await;
                    continue;
                };
                loop {
                    tokio::select! {
                        push = pushes.recv() => match push {
                            Some(PushInfo { kind: PushKind::Message, data }) => {
                                let ready = data.last().and_then(|payload| match payload {
                                    redis::Value::BulkString(raw) => record(task_id, raw),
                                    _ => None,
                                }).filter(|r| r.status.is_ready());
                                if ready.is_some() {
                                    return Ok(ready);
                                }
                            }
                            Some(PushInfo { kind: PushKind::Disconnection, .. }) | None => break,
                            Some(_) => {}
                        },
                        () = tokio::time::sleep_until(deadline) => return self.fetch(task_id).await,
                    }
                }
            }
        })
    }
}
