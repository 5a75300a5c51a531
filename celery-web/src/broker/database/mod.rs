//! The database broker: messages are rows of `celery_message` in SQLite or PostgreSQL.
//!
//! - A claim is a lease: `visible_at` moves to now + visibility timeout and `delivery_count`
//!   goes up, so a killed worker's messages become visible again by themselves, and an ack
//!   or release that carries a stale `delivery_count` does nothing.
//! - ETA and countdown messages wait in the table with a future `visible_at`: they cost a
//!   worker no memory.
//! - PostgreSQL claims with `FOR UPDATE SKIP LOCKED`, so any number of workers claim
//!   different rows without waiting on each other; SQLite claims inside `BEGIN IMMEDIATE`
//!   (one writer at a time is all SQLite has).
//! - Claims, acks and releases are batched: one statement or one transaction per batch.
//! - [`publish_in`] enqueues inside the caller's open transaction.
//! - Idle fetchers are woken when any process enqueues ([`wakeup`]), and poll as a fallback.
//!   On PostgreSQL an enqueue notifies only when a fetcher is waiting for one, so enqueueing
//!   transactions do not queue up behind NOTIFY's database-wide commit lock.
//! - A batch publish is one statement on PostgreSQL (a multi-row `INSERT` up to
//!   [`COPY_ABOVE_POSTGRES`] messages, a binary `COPY` above), and on SQLite one multi-row
//!   `INSERT` per [`PUBLISH_CHUNK_SQLITE`] messages, all in one transaction.

mod wakeup;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "postgres")]
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
#[cfg(feature = "postgres")]
use diesel::sql_types::{Array, Integer};
#[cfg(feature = "sqlite")]
use diesel::sqlite::SqliteConnection;
use tokio::sync::Notify;

use super::{
    stats_for, Broker, Delivery, DeliveryTag, FetchRequest, Leases, Payload, QueueStats,
    Transactional,
};
use crate::db::schema::{celery_dead_message, celery_message};
use crate::db::{micros, now_micros, with_connection, Db};
use crate::protocol::{Envelope, Message};
use crate::task::BoxFuture;
use crate::{Error, Result};

/// The broker of `sqlite://` and `postgres://` URLs.
#[derive(Debug, Clone)]
pub struct DatabaseBroker {
    db: Db,
    visibility_timeout: Duration,
    /// Wakes fetchers of this process when this process publishes.
    published: Arc<Notify>,
    /// The database URL, for the wake-up listener started by the first fetch.
    listener: Arc<std::sync::Mutex<Option<String>>>,
    /// Whether fetchers arm PostgreSQL's transition-only wake-up: while the listener listens.
    arming: Arc<AtomicBool>,
    /// The longest pause between two polls of an idle fetch.
    max_poll: Duration,
}

/// The columns a message row binds: eight parameters per row in a multi-row `INSERT`.
const MESSAGE_COLUMNS: usize = 8;

/// Above this many rows, a PostgreSQL batch publish is one binary `COPY` rather than
/// one multi-row `INSERT`: a few more round trips, but rows stream without binds and without
/// the 65,535-parameter limit of a statement.
pub const COPY_ABOVE_POSTGRES: usize = 64;

/// Rows per `INSERT` on SQLite: its default limit is 999 parameters a statement before
/// 3.32 (32,766 since), and a site may link either.
pub const PUBLISH_CHUNK_SQLITE: usize = 999 / MESSAGE_COLUMNS;

/// The default longest pause between polls of an idle fetch; see
/// [`DatabaseBroker::polling_at_most`].
pub const MAX_POLL: Duration = Duration::from_millis(100);

#[derive(Insertable)]
#[diesel(table_name = celery_message)]
// `eta: None` is NULL, written as such (binary COPY has no DEFAULT).
#[diesel(treat_none_as_default_value = false)]
struct NewMessage {
    queue: String,
    priority: i32,
    task_id: String,
    task_name: String,
    payload: String,
    visible_at: i64,
    eta: Option<i64>,
    created_at: i64,
}

impl NewMessage {
    fn from_message(message: &Message) -> Result<Self> {
        let now = now_micros();
        let eta = message.eta().map(micros);
        Ok(NewMessage {
            queue: message.queue().to_owned(),
            priority: i32::from(message.properties.priority.min(9)),
            task_id: message.id().to_owned(),
            task_name: message.task().to_owned(),
            payload: Envelope::from_message(message)?.encode(),
            visible_at: eta.unwrap_or(now).max(0),
            eta,
            created_at: now,
        })
    }
}

/// A database connection that can enqueue inside its own open transaction.
pub trait TransactionalConnection: sealed::Sealed {
    /// The database this connection talks to.
    #[doc(hidden)]
    const KIND: crate::db::DbKind;

    /// Inserts `rows` with this connection.
    #[doc(hidden)]
    fn insert_messages(&mut self, rows: &[NewMessageRow]) -> Result<()>;
}

/// A message row ready to insert (opaque).
#[derive(Debug)]
#[doc(hidden)]
pub struct NewMessageRow(NewMessage);

impl std::fmt::Debug for NewMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewMessage")
            .field("queue", &self.queue)
            .field("task_id", &self.task_id)
            .finish_non_exhaustive()
    }
}

mod sealed {
    pub trait Sealed {}
    #[cfg(feature = "sqlite")]
    impl Sealed for diesel::SqliteConnection {}
    #[cfg(feature = "postgres")]
    impl Sealed for diesel::PgConnection {}
}

macro_rules! impl_transactional {
    ($conn:ty, $kind:ident) => {
        impl TransactionalConnection for $conn {
            const KIND: crate::db::DbKind = crate::db::DbKind::$kind;

            fn insert_messages(&mut self, rows: &[NewMessageRow]) -> Result<()> {
                for NewMessageRow(row) in rows {
                    diesel::insert_into(celery_message::table)
                        .values(row)
                        .execute(self)?;
                }
                Ok(())
            }
        }
    };
}
#[cfg(feature = "sqlite")]
impl_transactional!(SqliteConnection, Sqlite);
#[cfg(feature = "postgres")]
impl_transactional!(PgConnection, Postgres);

/// Enqueues `message` with `conn`, typically inside the caller's transaction, so the task is
/// sent only if that transaction commits. The worker notices it at its next poll.
pub fn publish_in<C: TransactionalConnection>(conn: &mut C, message: &Message) -> Result<()> {
    conn.insert_messages(&[NewMessageRow(NewMessage::from_message(message)?)])
}

fn parse_tags(tags: &[DeliveryTag]) -> Result<(Vec<i64>, Vec<i32>)> {
    let mut ids = Vec::with_capacity(tags.len());
    let mut counts = Vec::with_capacity(tags.len());
    for tag in tags {
        let (id, count) = tag.number()?;
        ids.push(id);
        counts.push(count);
    }
    Ok((ids, counts))
}

type ClaimedRow = (i64, String, String, i32);

impl DatabaseBroker {
    /// A broker on `db`, whose claims last `visibility_timeout`. Its fetchers poll for
    /// other processes' messages; see [`DatabaseBroker::listening`].
    pub fn new(db: Db, visibility_timeout: Duration) -> Self {
        DatabaseBroker {
            db,
            visibility_timeout,
            published: Arc::new(Notify::new()),
            listener: Arc::default(),
            arming: Arc::default(),
            max_poll: MAX_POLL,
        }
    }

    /// Sets the longest pause between two polls of an idle fetch ([`MAX_POLL`] unless set):
    /// an idle fetch looks after 5 ms, then doubles its pause up to this. Polling is what
    /// delivers a message whose wake-up was lost, or every message of another process when
    /// the broker is not [listening](DatabaseBroker::listening).
    pub fn polling_at_most(mut self, max_poll: Duration) -> Self {
        self.max_poll = max_poll.max(Duration::from_millis(1));
        self
    }

    /// Wakes this broker's fetchers as soon as another process enqueues into the database at
    /// `url` (the one `db` connects to), instead of at their next poll.
    pub fn listening(self, url: &str) -> Self {
        *self.listener.lock().unwrap_or_else(|p| p.into_inner()) = Some(url.to_owned());
        self
    }

    fn start_listener(&self) {
        let url = self
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(url) = url {
            wakeup::spawn_listener(url, &self.published, self.arming.clone());
        }
    }

    /// Leases up to `request.limit` ready messages. When there are none and `arm` is set,
    /// arms the PostgreSQL wake-up in the same transaction; the flag returned says it was
    /// disarmed until now (an enqueue just before may have notified no one: look again).
    fn claim(
        db: &Db,
        request: &FetchRequest,
        lease: Duration,
        arm: bool,
    ) -> Result<(Vec<Delivery>, bool)> {
        use celery_message::dsl as m;
        let now = now_micros();
        let lease_until = now + i64::try_from(lease.as_micros()).unwrap_or(i64::MAX / 2);
        let limit = i64::try_from(request.limit).unwrap_or(i64::MAX);
        let queues = &request.queues;
        let changes = (
            m::visible_at.eq(lease_until),
            m::delivery_count.eq(m::delivery_count + 1),
            m::lease_owner.eq(&request.consumer),
        );
        let returned = (m::id, m::queue, m::payload, m::delivery_count);
        let ready = m::celery_message
            .select(m::id)
            .filter(m::queue.eq_any(queues))
            .filter(m::visible_at.le(now))
            .order((m::priority.desc(), m::visible_at.asc(), m::id.asc()))
            .limit(limit);
        // The lease itself is the same statement on both backends; choosing the rows differs.
        macro_rules! lease {
            ($conn:expr, $ids:expr) => {{
                let ids: Vec<i64> = $ids;
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let mut rows: Vec<ClaimedRow> =
                    diesel::update(m::celery_message.filter(m::id.eq_any(&ids)))
                        .set(changes)
                        .returning(returned)
                        .get_results($conn)?;
                // RETURNING has no order: restore the claim's (priority, then age).
                let rank: std::collections::HashMap<i64, usize> = ids
                    .iter()
                    .enumerate()
                    .map(|(rank, &id)| (id, rank))
                    .collect();
                rows.sort_by_key(|row| rank.get(&row.0).copied());
                Ok::<_, diesel::result::Error>(rows)
            }};
        }
        let mut armed_now = false;
        #[cfg(not(feature = "postgres"))]
        let _ = (arm, &mut armed_now);
        let rows: Vec<ClaimedRow> = match db {
            #[cfg(feature = "sqlite")]
            Db::Sqlite(pool) => {
                let conn = &mut *pool.get()?;
                // Look before taking SQLite's single write lock: idle workers then never
                // hold up the site's writes.
                if ready.clone().limit(1).load::<i64>(conn)?.is_empty() {
                    return Ok((Vec::new(), false));
                }
                conn.immediate_transaction(|conn| lease!(conn, ready.load(conn)?))?
            }
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => {
                let conn = &mut *pool.get()?;
                conn.transaction(|conn| {
                    let ids: Vec<i64> = ready.for_update().skip_locked().load(conn)?;
                    if ids.is_empty() && arm {
                        armed_now = diesel::sql_query(wakeup::ARM).execute(conn)? == 1;
                    }
                    lease!(conn, ids)
                })?
            }
        };
        let deliveries = rows
            .into_iter()
            .map(|(id, queue, payload, count)| Delivery {
                tag: DeliveryTag::numbered(id, count),
                queue,
                payload: Payload::Json(payload.into_bytes()),
                redelivered: count > 1,
            })
            .collect();
        Ok((deliveries, armed_now))
    }

    /// Runs `UPDATE/DELETE ... WHERE id = ? AND delivery_count = ?` for every tag.
    /// PostgreSQL does it in one statement over `unnest`ed arrays.
    fn for_each_tag(db: &Db, tags: &[DeliveryTag], statement: TagStatement) -> Result<()> {
        #[cfg(feature = "sqlite")]
        use celery_message::dsl as m;
        let (ids, counts) = parse_tags(tags)?;
        if ids.is_empty() {
            return Ok(());
        }
        match db {
            #[cfg(feature = "sqlite")]
            Db::Sqlite(pool) => {
                let conn = &mut *pool.get()?;
                conn.immediate_transaction(|conn| {
                    for (&id, &count) in ids.iter().zip(&counts) {
                        let row = m::celery_message
                            .filter(m::id.eq(id))
                            .filter(m::delivery_count.eq(count));
                        match statement {
                            TagStatement::Delete => diesel::delete(row).execute(conn)?,
                            TagStatement::Release(now) => diesel::update(row)
                                .set((m::visible_at.eq(now), m::lease_owner.eq(None::<String>)))
                                .execute(conn)?,
                            TagStatement::Extend(until) => {
                                diesel::update(row.filter(m::lease_owner.is_not_null()))
                                    .set(m::visible_at.eq(until))
                                    .execute(conn)?
                            }
                        };
                    }
                    Ok::<_, Error>(())
                })
            }
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => {
                let conn = &mut *pool.get()?;
                const TAGGED: &str = "unnest($1::bigint[], $2::int[]) AS t(id, n) \
                                      WHERE m.id = t.id AND m.delivery_count = t.n";
                let (set, at) = match statement {
                    TagStatement::Delete => {
                        diesel::sql_query(format!("DELETE FROM celery_message m USING {TAGGED}"))
                            .bind::<Array<BigInt>, _>(&ids)
                            .bind::<Array<Integer>, _>(&counts)
                            .execute(conn)?;
                        return Ok(());
                    }
                    TagStatement::Release(now) => ("visible_at = $3, lease_owner = NULL", now),
                    TagStatement::Extend(until) => ("visible_at = $3", until),
                };
                let only_leased = match statement {
                    TagStatement::Extend(_) => " AND m.lease_owner IS NOT NULL",
                    _ => "",
                };
                diesel::sql_query(format!(
                    "UPDATE celery_message m SET {set} FROM {TAGGED}{only_leased}"
                ))
                .bind::<Array<BigInt>, _>(&ids)
                .bind::<Array<Integer>, _>(&counts)
                .bind::<BigInt, _>(at)
                .execute(conn)?;
                Ok(())
            }
        }
    }
}

/// What to do with the rows delivery tags name (only while the tag is current).
#[derive(Debug, Clone, Copy)]
enum TagStatement {
    /// Ack: remove.
    Delete,
    /// Give back, visible at this time, owned by nobody.
    Release(i64),
    /// Keep leased until this time; a released row stays released.
    Extend(i64),
}

impl Broker for DatabaseBroker {
    fn publish<'a>(&'a self, messages: &'a [Message]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let rows = messages
                .iter()
                .map(NewMessage::from_message)
                .collect::<Result<Vec<_>>>()?;
            if rows.is_empty() {
                return Ok(());
            }
            self.db
                .run(move |db| match db {
                    #[cfg(feature = "postgres")]
                    Db::Postgres(pool) if rows.len() > COPY_ABOVE_POSTGRES => {
                        // One COPY (binary), atomic by itself and with no bind-parameter limit.
                        diesel::copy_from(celery_message::table)
                            .from_insertable(&rows)
                            .execute(&mut *pool.get()?)?;
                        Ok(())
                    }
                    #[cfg(feature = "postgres")]
                    Db::Postgres(pool) => {
                        diesel::insert_into(celery_message::table)
                            .values(&rows)
                            .execute(&mut *pool.get()?)?;
                        Ok(())
                    }
                    #[cfg(feature = "sqlite")]
                    Db::Sqlite(pool) => {
                        let conn = &mut *pool.get()?;
                        if rows.len() <= PUBLISH_CHUNK_SQLITE {
                            // One statement, atomic by itself: no transaction round trips.
                            diesel::insert_into(celery_message::table)
                                .values(&rows)
                                .execute(conn)?;
                        } else {
                            // All or nothing, however many statements the bind limit asks.
                            conn.transaction(|conn| {
                                for rows in rows.chunks(PUBLISH_CHUNK_SQLITE) {
                                    diesel::insert_into(celery_message::table)
                                        .values(rows)
                                        .execute(conn)?;
                                }
                                Ok::<_, Error>(())
                            })?;
                        }
                        Ok(())
                    }
                })
                .await?;
            self.published.notify_waiters();
            Ok(())
        })
    }

    fn fetch<'a>(&'a self, request: &'a FetchRequest) -> BoxFuture<'a, Result<Vec<Delivery>>> {
        Box::pin(async move {
            self.start_listener();
            let deadline = tokio::time::Instant::now() + request.wait;
            let mut pause = Duration::from_millis(5);
            loop {
                // Register for wake-ups before looking, so a publish in between is not missed.
                let published = self.published.notified();
                let (owned, lease) = (request.clone(), self.visibility_timeout);
                let arm = self.arming.load(Ordering::Relaxed);
                let (found, armed_now) = self
                    .db
                    .run(move |db| Self::claim(db, &owned, lease, arm))
                    .await?;
                let now = tokio::time::Instant::now();
                if !found.is_empty() || now >= deadline || request.is_stopped() {
                    return Ok(found);
                }
                if armed_now {
                    // Enqueues from here on notify; one that committed in between did not.
                    continue;
                }
                // A wake-up can be lost (or the listener down): poll, backing off to max_poll.
                let sleep = pause.min(deadline - now);
                // Claim often enough to keep the wake-up armed while we wait.
                #[cfg(feature = "postgres")]
                let sleep = if arm {
                    sleep.min(wakeup::ARM_REFRESH)
                } else {
                    sleep
                };
                tokio::select! {
                    () = published => {}
                    () = tokio::time::sleep(sleep) => {}
                    () = request.stopped() => {}
                }
                pause = (pause * 2).min(self.max_poll);
            }
        })
    }

    fn ack<'a>(&'a self, tags: &'a [DeliveryTag]) -> BoxFuture<'a, Result<()>> {
        let tags = tags.to_vec();
        Box::pin(
            self.db
                .run(move |db| Self::for_each_tag(db, &tags, TagStatement::Delete)),
        )
    }

    fn release<'a>(&'a self, tags: &'a [DeliveryTag]) -> BoxFuture<'a, Result<()>> {
        let tags = tags.to_vec();
        Box::pin(async move {
            let statement = TagStatement::Release(now_micros());
            self.db
                .run(move |db| Self::for_each_tag(db, &tags, statement))
                .await?;
            self.published.notify_waiters();
            Ok(())
        })
    }

    fn retire<'a>(&'a self, delivery: &'a Delivery, reason: &'a str) -> BoxFuture<'a, Result<()>> {
        let (id, count) = match delivery.tag.number() {
            Ok(parsed) => parsed,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        let queue = delivery.queue.clone();
        let payload = delivery.payload.to_text();
        let reason = reason.to_owned();
        Box::pin(self.db.run(move |db| {
            use celery_message::dsl as m;
            with_connection!(db, |conn| conn.transaction(|conn| {
                let removed = diesel::delete(
                    m::celery_message
                        .filter(m::id.eq(id))
                        .filter(m::delivery_count.eq(count)),
                )
                .execute(conn)?;
                // A stale tag: another delivery of the message is being handled; keep one copy.
                if removed == 1 {
                    diesel::insert_into(celery_dead_message::table)
                        .values((
                            celery_dead_message::queue.eq(&queue),
                            celery_dead_message::payload.eq(&payload),
                            celery_dead_message::reason.eq(&reason),
                            celery_dead_message::created_at.eq(now_micros()),
                        ))
                        .execute(conn)?;
                }
                Ok::<_, Error>(())
            }))
        }))
    }

    fn purge<'a>(&'a self, queues: &'a [String]) -> BoxFuture<'a, Result<u64>> {
        let queues = queues.to_vec();
        Box::pin(self.db.run(move |db| {
            use celery_message::dsl as m;
            let now = now_micros();
            // Waiting and scheduled messages; not those a live worker holds a lease on.
            let removed = with_connection!(db, |conn| diesel::delete(
                m::celery_message
                    .filter(m::queue.eq_any(&queues))
                    .filter(m::lease_owner.is_null().or(m::visible_at.le(now)))
            )
            .execute(conn)?);
            Ok(removed as u64)
        }))
    }

    fn queue_stats<'a>(&'a self, queues: &'a [String]) -> BoxFuture<'a, Result<Vec<QueueStats>>> {
        Box::pin(async move {
            let found = self.db.run(Self::count_per_queue).await?;
            Ok(stats_for(queues, found))
        })
    }

    fn leases(&self) -> Option<&dyn Leases> {
        Some(self)
    }

    fn transactional(&self) -> Option<&dyn Transactional> {
        Some(self)
    }
}

impl Leases for DatabaseBroker {
    fn visibility_timeout(&self) -> Duration {
        self.visibility_timeout
    }

    fn extend<'a>(&'a self, tags: &'a [DeliveryTag], lease: Duration) -> BoxFuture<'a, Result<()>> {
        let tags = tags.to_vec();
        let until = now_micros() + i64::try_from(lease.as_micros()).unwrap_or(i64::MAX / 2);
        Box::pin(
            self.db
                .run(move |db| Self::for_each_tag(db, &tags, TagStatement::Extend(until))),
        )
    }
}

impl Transactional for DatabaseBroker {
    fn db(&self) -> &Db {
        &self.db
    }

    fn discard_waiting<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Result<u64>> {
        let task_id = task_id.to_owned();
        Box::pin(self.db.run(move |db| {
            use celery_message::dsl as m;
            let removed = with_connection!(db, |conn| diesel::delete(
                m::celery_message
                    .filter(m::task_id.eq(&task_id))
                    .filter(m::lease_owner.is_null())
            )
            .execute(conn)?);
            Ok(removed as u64)
        }))
    }
}

#[derive(QueryableByName)]
struct QueueCountRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    queue: String,
    #[diesel(sql_type = BigInt)]
    waiting: i64,
    #[diesel(sql_type = BigInt)]
    scheduled: i64,
    #[diesel(sql_type = BigInt)]
    in_flight: i64,
}

impl DatabaseBroker {
    /// Every queue with messages, counted in one `GROUP BY`: ready now (never claimed,
    /// released, or a lease that ran out), scheduled (eta ahead, not claimed), in flight
    /// (leased, lease running).
    fn count_per_queue(db: &Db) -> Result<Vec<QueueStats>> {
        const COUNTS: &str = "SELECT queue, \
             CAST(SUM(CASE WHEN visible_at <= {now} THEN 1 ELSE 0 END) AS BIGINT) AS waiting, \
             CAST(SUM(CASE WHEN visible_at > {now} AND lease_owner IS NULL THEN 1 ELSE 0 END) \
                 AS BIGINT) AS scheduled, \
             CAST(SUM(CASE WHEN visible_at > {now} AND lease_owner IS NOT NULL THEN 1 ELSE 0 END) \
                 AS BIGINT) AS in_flight \
             FROM celery_message GROUP BY queue";
        let now = now_micros();
        // The time is a number this process made: inlined, it needs no bind per use.
        let query = diesel::sql_query(COUNTS.replace("{now}", &now.to_string()));
        let rows: Vec<QueueCountRow> = with_connection!(db, |conn| query.load(conn)?);
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(rows
            .into_iter()
            .map(|row| QueueStats {
                name: row.queue,
                waiting: count(row.waiting),
                scheduled: Some(count(row.scheduled)),
                in_flight: Some(count(row.in_flight)),
            })
            .collect())
    }
}

/// Messages kept for inspection, newest first: `(queue, reason, payload)`.
pub fn dead_messages(db: &Db, limit: i64) -> Result<Vec<(String, String, String)>> {
    use celery_dead_message::dsl as d;
    Ok(with_connection!(db, |conn| d::celery_dead_message
        .select((d::queue, d::reason, d::payload))
        .order(d::id.desc())
        .limit(limit)
        .load(conn)?))
}
