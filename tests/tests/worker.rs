//! Worker behaviour on real databases: retries, eta, expiry, time and rate limits, panics,
//! unknown tasks, malformed messages and bad arguments. Each scenario runs on SQLite and on
//! PostgreSQL, with a worker running in the test process against the real database.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use celery_web::backend::TaskRecord;
use celery_web::broker::database::DatabaseBroker;
use celery_web::broker::{Broker, Delivery, DeliveryTag, FetchRequest};
use celery_web::db::Db;
use celery_web::task::{Signature, State};
use celery_web::worker::{Shutdown, Worker};
use celery_web::{Celery, Error};
use celery_web_tests::{Database, TestDb};
use example_site::demo::tasks::{
    add, always_fails, explode, flaky, limited, notices_soft_limit, overrun,
};
use serde_json::{json, Value};

/// A migrated app and a running worker on a fresh database; the worker stops with the guard.
struct Harness {
    app: Celery,
    db: TestDb,
    shutdown: Shutdown,
    worker: Option<tokio::task::JoinHandle<celery_web::Result<celery_web::worker::WorkerStats>>>,
}

impl Harness {
    fn start(kind: Database) -> Option<Harness> {
        let db = TestDb::new(kind)?;
        let app = db.app();
        let shutdown = Shutdown::new();
        let worker = tokio::spawn(
            Worker::new(&app)
                .queues(["celery"])
                .concurrency(4)
                .hostname("test@%h")
                .run(shutdown.clone()),
        );
        Some(Harness {
            app,
            db,
            shutdown,
            worker: Some(worker),
        })
    }

    async fn record(&self, id: &str, limit: Duration) -> TaskRecord {
        self.app
            .backend()
            .expect("results on")
            .wait(id, limit)
            .await
            .expect("backend answers")
            .filter(|r| r.status.is_ready())
            .unwrap_or_else(|| panic!("task {id} not finished within {limit:?}"))
    }

    async fn stop(mut self) {
        self.shutdown.warm();
        if let Some(worker) = self.worker.take() {
            worker.await.expect("worker task").expect("worker ran");
        }
    }
}

macro_rules! on_both_databases {
    ($scenario:ident) => {
        mod $scenario {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                if let Some(harness) = Harness::start(Database::Sqlite) {
                    super::$scenario(&harness).await;
                    harness.stop().await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(harness) = Harness::start(Database::Postgres) {
                    super::$scenario(&harness).await;
                    harness.stop().await;
                }
            }
        }
    };
}

async fn retries_with_backoff(h: &Harness) {
    let clock = Instant::now();
    let result = flaky::s(2).apply_async_on(&h.app).await.unwrap();
    let retries: u32 = result.get(Duration::from_secs(20)).await.unwrap();
    assert_eq!(retries, 2);
    // backoff 0.2 s then 0.4 s, no jitter
    assert!(
        clock.elapsed() >= Duration::from_millis(600),
        "{:?}",
        clock.elapsed()
    );
    let record = result.info().await.unwrap().unwrap();
    assert_eq!(record.retries, 2);
}
on_both_databases!(retries_with_backoff);

async fn autoretry_then_failure(h: &Harness) {
    let result = always_fails::s("x".into())
        .apply_async_on(&h.app)
        .await
        .unwrap();
    let record = h.record(result.id(), Duration::from_secs(20)).await;
    assert_eq!(record.status, State::Failure);
    let (exc_type, message) = record.exception_parts();
    assert_eq!(exc_type, "MaxRetriesExceededError");
    assert!(message.contains("ParseIntError"), "{message}");
    assert_eq!(record.retries, 2);
}
on_both_databases!(autoretry_then_failure);

async fn countdown_waits_in_the_database(h: &Harness) {
    let result = add::s(2, 3)
        .countdown(1.5)
        .apply_async_on(&h.app)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        result.state().await.unwrap(),
        State::Pending,
        "not before its eta"
    );
    assert_eq!(result.get(Duration::from_secs(10)).await.unwrap(), 5);
}
on_both_databases!(countdown_waits_in_the_database);

async fn expired_tasks_are_revoked(h: &Harness) {
    let result = add::s(1, 1)
        .countdown(0.5)
        .expires_in(Duration::from_millis(100))
        .apply_async_on(&h.app)
        .await
        .unwrap();
    let record = h.record(result.id(), Duration::from_secs(10)).await;
    assert_eq!(record.status, State::Revoked);
    let error = result.get(Duration::from_secs(1)).await.unwrap_err();
    assert!(
        matches!(error, Error::TaskFailed { ref exc_type, .. } if exc_type == "TaskRevokedError")
    );
}
on_both_databases!(expired_tasks_are_revoked);

async fn hard_time_limit_fails_the_task(h: &Harness) {
    let clock = Instant::now();
    let result = overrun::s(30.0).apply_async_on(&h.app).await.unwrap();
    let record = h.record(result.id(), Duration::from_secs(10)).await;
    assert_eq!(record.status, State::Failure);
    assert_eq!(record.exception_parts().0, "TimeLimitExceeded");
    assert!(clock.elapsed() < Duration::from_secs(5));
}
on_both_databases!(hard_time_limit_fails_the_task);

async fn soft_time_limit_is_observable(h: &Harness) {
    let result = notices_soft_limit::s(5.0)
        .apply_async_on(&h.app)
        .await
        .unwrap();
    assert!(result.get(Duration::from_secs(10)).await.unwrap());
}
on_both_databases!(soft_time_limit_is_observable);

async fn rate_limit_spaces_starts(h: &Harness) {
    let mut results = Vec::new();
    for _ in 0..6 {
        results.push(limited::s().apply_async_on(&h.app).await.unwrap());
    }
    let mut starts = Vec::new();
    for result in results {
        starts.push(result.get(Duration::from_secs(20)).await.unwrap());
    }
    starts.sort_unstable();
    // 5/s: six starts span at least one second (with a little clock slack).
    let span = starts[5] - starts[0];
    assert!(span >= 950, "six starts within {span} ms");
}
on_both_databases!(rate_limit_spaces_starts);

async fn panics_are_failures_and_the_worker_goes_on(h: &Harness) {
    let boom = explode::s("kaboom".into())
        .apply_async_on(&h.app)
        .await
        .unwrap();
    let record = h.record(boom.id(), Duration::from_secs(10)).await;
    assert_eq!(record.status, State::Failure);
    assert_eq!(
        record.exception_parts(),
        ("Panic".to_owned(), "kaboom".to_owned())
    );
    let after = add::s(20, 22).apply_async_on(&h.app).await.unwrap();
    assert_eq!(after.get(Duration::from_secs(10)).await.unwrap(), 42);
}
on_both_databases!(panics_are_failures_and_the_worker_goes_on);

async fn unknown_tasks_fail_and_are_kept(h: &Harness) {
    let result = h
        .app
        .send_task("no.such.task", vec![json!(1)], Default::default())
        .await
        .unwrap();
    let record = h.record(result.id(), Duration::from_secs(10)).await;
    assert_eq!(record.status, State::Failure);
    assert_eq!(
        record.exception_parts(),
        ("NotRegistered".to_owned(), "no.such.task".to_owned())
    );
    let dead = celery_web_tests::eventually(Duration::from_secs(5), "the dead letter", || {
        let dead = celery_web::broker::database::dead_messages(h.app.db().unwrap(), 10).unwrap();
        (!dead.is_empty()).then_some(dead)
    });
    assert!(dead[0].1.contains("no.such.task"), "{dead:?}");
    assert!(
        dead[0].2.contains(result.id()),
        "the message itself is kept"
    );
}
on_both_databases!(unknown_tasks_fail_and_are_kept);

async fn malformed_messages_are_kept_and_the_worker_goes_on(h: &Harness) {
    use celery_web::db::schema::celery_message::dsl as m;
    use diesel::prelude::*;
    let now = chrono::Utc::now().timestamp_micros();
    let garbage = [
        "not json at all",
        r#"{"body": "!!!", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"task": "x", "id": "1"}, "properties": {"correlation_id": "1", "body_encoding": "base64"}}"#,
        r#"{"body": "W10=", "content-encoding": "binary", "content-type": "application/x-python-serialize", "headers": {"task": "x", "id": "2"}, "properties": {"correlation_id": "2"}}"#,
    ];
    let rows: Vec<_> = garbage
        .iter()
        .map(|payload| {
            (
                m::queue.eq("celery"),
                m::task_id.eq("garbage"),
                m::task_name.eq("garbage"),
                m::payload.eq(*payload),
                m::visible_at.eq(now),
                m::created_at.eq(now),
            )
        })
        .collect();
    let db = h.app.db().unwrap().clone();
    let insert = || -> celery_web::Result<()> {
        celery_web::db::with_connection!(&db, |conn| {
            for row in &rows {
                diesel::insert_into(m::celery_message)
                    .values(*row)
                    .execute(conn)?;
            }
        });
        Ok(())
    };
    insert().unwrap();
    let after = add::s(1, 2).apply_async_on(&h.app).await.unwrap();
    assert_eq!(after.get(Duration::from_secs(10)).await.unwrap(), 3);
    let dead = celery_web_tests::eventually(Duration::from_secs(5), "three dead letters", || {
        let dead = celery_web::broker::database::dead_messages(&db, 10).unwrap();
        (dead.len() == 3).then_some(dead)
    });
    let reasons: Vec<&str> = dead.iter().map(|d| d.1.as_str()).collect();
    assert!(
        reasons.iter().any(|r| r.contains("not valid JSON")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("base64")), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("content type")),
        "{reasons:?}"
    );
}
on_both_databases!(malformed_messages_are_kept_and_the_worker_goes_on);

async fn wrong_argument_types_are_type_errors(h: &Harness) {
    let result = Signature::new(add::name())
        .arg("two")
        .arg(3)
        .apply_async_on(&h.app)
        .await
        .unwrap();
    let record = h.record(result.id(), Duration::from_secs(10)).await;
    assert_eq!(record.status, State::Failure);
    let (exc_type, message) = record.exception_parts();
    assert_eq!(exc_type, "TypeError");
    assert!(message.contains("argument 'x'"), "{message}");
    // keyword arguments, as Python callers send them
    let by_name = Signature::new(add::name())
        .kwarg("x", 40)
        .kwarg("y", 2)
        .apply_async_on(&h.app)
        .await
        .unwrap();
    assert_eq!(
        h.record(by_name.id(), Duration::from_secs(10)).await.result,
        Some(json!(42))
    );
}
on_both_databases!(wrong_argument_types_are_type_errors);

async fn results_are_typed(h: &Harness) {
    let result = add::s(2, 2).apply_async_on(&h.app).await.unwrap();
    assert_eq!(result.get(Duration::from_secs(10)).await.unwrap(), 4);
    assert!(result.successful().await.unwrap());
    let as_text = h.app.async_result::<String>(result.id());
    assert!(matches!(
        as_text.get(Duration::from_secs(1)).await,
        Err(Error::ResultType { .. })
    ));
    result.forget().await.unwrap();
    assert_eq!(result.state().await.unwrap(), State::Pending);
    let unknown = h
        .app
        .async_result::<Value>("00000000-0000-0000-0000-000000000000");
    assert_eq!(unknown.state().await.unwrap(), State::Pending);
    let _ = &h.db;
}
on_both_databases!(results_are_typed);

async fn absurd_time_limits_are_rejected(h: &Harness) {
    let mut message = h.app.message_for(&add::s(1, 1)).expect("a message for add");
    message.headers.timelimit = (Some(1e20), None);
    h.app.broker().publish(&[message.clone()]).await.unwrap();
    let record = h.record(message.id(), Duration::from_secs(10)).await;
    assert_eq!(record.status, State::Failure);
    let (exc_type, reason) = record.exception_parts();
    assert_eq!(exc_type, "InvalidMessage");
    assert!(reason.contains("timelimit"), "{reason}");
    let after = add::s(2, 2).apply_async_on(&h.app).await.unwrap();
    assert_eq!(after.get(Duration::from_secs(10)).await.unwrap(), 4);
}
on_both_databases!(absurd_time_limits_are_rejected);

/// PostgreSQL drops every connection of the worker (as on a server restart or a failover):
/// the pool replaces them, the wake-up listener reconnects, and no task is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_dropped_mid_run() {
    use diesel::{Connection, PgConnection, RunQueryDsl};
    let Some(harness) = Harness::start(Database::Postgres) else {
        return;
    };
    let database = harness.db.url.rsplit('/').next().unwrap().to_owned();
    let admin_url = std::env::var("CELERY_WEB_TEST_POSTGRES_URL").unwrap();
    let drop_connections = move || {
        let mut admin = PgConnection::establish(&admin_url).unwrap();
        let others = format!(
            "FROM pg_stat_activity WHERE datname = '{database}' AND pid <> pg_backend_pid()"
        );
        // The pools reconnect lazily after a drop: wait (briefly) until the worker and the
        // sender are connected again, so there is something to drop.
        for _ in 0..60 {
            let open = diesel::sql_query(format!("SELECT pid {others}"))
                .execute(&mut admin)
                .unwrap();
            if open >= 2 {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        diesel::sql_query(format!("SELECT pg_terminate_backend(pid) {others}"))
            .execute(&mut admin)
            .unwrap()
    };
    let mut results = Vec::new();
    let mut refused = 0;
    for round in 0..3 {
        for n in 0..20 {
            // A send may meet a dropped connection: the caller gets an error, nothing is lost.
            match add::s(round * 100, n).apply_async_on(&harness.app).await {
                Ok(result) => results.push((round * 100 + n, result)),
                Err(_) => refused += 1,
            }
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        let dropped = tokio::task::spawn_blocking(drop_connections.clone())
            .await
            .unwrap();
        assert!(
            dropped >= 2,
            "the worker's connections were dropped ({dropped})"
        );
    }
    assert!(refused <= 3, "{refused} sends failed");
    for (expected, result) in results {
        assert_eq!(result.get(Duration::from_secs(30)).await.unwrap(), expected);
    }
    let after = add::s(1, 1).apply_async_on(&harness.app).await.unwrap();
    assert_eq!(after.get(Duration::from_secs(30)).await.unwrap(), 2);
    harness.stop().await;
}

/// The result table disappears while a task runs (a result write that keeps failing): the
/// worker does not acknowledge the message, so the task runs again once the table is back
/// and its result is stored; nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_that_cannot_be_written_is_not_acknowledged() {
    use diesel::RunQueryDsl;
    let Some(test_db) = TestDb::new(Database::Sqlite) else {
        return;
    };
    // A lease longer than the test: only a release brings the message back in time.
    let settings = celery_web::Settings {
        broker_visibility_timeout: 120,
        ..test_db.settings()
    };
    let app = Celery::from_settings(settings).unwrap();
    app.migrate().unwrap();
    let shutdown = Shutdown::new();
    let worker = tokio::spawn(Worker::new(&app).concurrency(2).run(shutdown.clone()));
    let db = app.db().unwrap().clone();
    let rename = |from: &'static str, to: &'static str| {
        let db = db.clone();
        move || -> celery_web::Result<()> {
            celery_web::db::with_connection!(&db, |conn| diesel::sql_query(format!(
                "ALTER TABLE {from} RENAME TO {to}"
            ))
            .execute(conn)?);
            Ok(())
        }
    };
    tokio::task::spawn_blocking(rename("celery_taskresult", "celery_taskresult_away"))
        .await
        .unwrap()
        .unwrap();
    let result = add::s(40, 2).apply_async_on(&app).await.unwrap();
    // Longer than the completer keeps retrying a write (about 11 s): it gives up on this
    // batch and gives the message back instead of acknowledging it.
    tokio::time::sleep(Duration::from_secs(14)).await;
    tokio::task::spawn_blocking(rename("celery_taskresult_away", "celery_taskresult"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(result.get(Duration::from_secs(30)).await.unwrap(), 42);
    shutdown.warm();
    worker.await.unwrap().unwrap();
}

/// A broker that does not delay ETA messages (AMQP's way; here the memory broker told to
/// deliver them early): the worker holds them until due, outside its prefetch room, and
/// gives back the ones still waiting at warm shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_holds_eta_messages_the_broker_delivers_early() {
    use celery_web::broker::memory::MemoryBroker;
    use celery_web::broker::Broker;
    use std::sync::Arc;

    let broker = Arc::new(MemoryBroker::new(Duration::from_secs(30)).delivering_eta_early());
    let settings = celery_web::Settings {
        result_backend: "memory://".to_owned(),
        ..celery_web::Settings::default()
    };
    let registry = celery_web::task::Registry::from_inventory().unwrap();
    let app = Celery::with_broker(settings, registry, broker.clone()).unwrap();
    let shutdown = Shutdown::new();
    // One slot and a prefetch of one: held ETA messages must not take that room.
    let worker = tokio::spawn(
        Worker::new(&app)
            .concurrency(1)
            .prefetch_multiplier(1)
            .run(shutdown.clone()),
    );
    let later: Vec<_> =
        send_each((0..5).map(|n| add::s(n, 0).countdown(600.0).apply_async_on(&app))).await;
    let soon = add::s(1, 1)
        .countdown(1.5)
        .apply_async_on(&app)
        .await
        .unwrap();
    let sent = Instant::now();
    let now = add::s(2, 2).apply_async_on(&app).await.unwrap();
    assert_eq!(
        now.get(Duration::from_secs(5)).await.unwrap(),
        4,
        "not blocked by held ETA messages"
    );
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "{:?}",
        sent.elapsed()
    );
    assert_eq!(soon.get(Duration::from_secs(10)).await.unwrap(), 2);
    assert!(
        sent.elapsed() >= Duration::from_millis(1400),
        "ran before its eta: {:?}",
        sent.elapsed()
    );
    let record = app
        .backend()
        .unwrap()
        .fetch(soon.id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, State::Success);
    // Warm shutdown gives the five held messages back to the broker, unstarted.
    shutdown.warm();
    worker.await.unwrap().unwrap();
    let stats = broker.queue_stats(&["celery".to_owned()]).await.unwrap();
    assert_eq!(
        (stats[0].waiting, stats[0].in_flight),
        (5, Some(0)),
        "{stats:?}"
    );
    for result in later {
        assert_eq!(
            app.backend().unwrap().fetch(result.id()).await.unwrap(),
            None,
            "never started"
        );
    }
}

/// Sends each signature in turn.
async fn send_each<F, T>(sends: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = celery_web::Result<T>>,
{
    let mut sent = Vec::new();
    for send in sends {
        sent.push(send.await.unwrap());
    }
    sent
}

// Wake-ups and batch publish on the database broker.

/// A fetcher's own broker on `db`: not the sender's, so only the database can wake it (a
/// publish through the same broker wakes its fetchers in process).
fn fetching_broker(db: &TestDb, max_poll: Duration) -> Arc<DatabaseBroker> {
    let pool = Db::connect(&db.url, 2).expect("pool");
    Arc::new(
        DatabaseBroker::new(pool, Duration::from_secs(30))
            .listening(&db.url)
            .polling_at_most(max_poll),
    )
}

fn fetch_request(limit: usize, wait: Duration) -> FetchRequest {
    FetchRequest {
        queues: vec!["celery".to_owned()],
        limit,
        wait,
        consumer: "test@wakeups".to_owned(),
        stop: None,
    }
}

/// Starts one fetch of up to `limit` messages, waiting up to 30 s.
fn spawn_fetch(
    broker: &Arc<DatabaseBroker>,
    limit: usize,
) -> tokio::task::JoinHandle<Vec<Delivery>> {
    let broker = broker.clone();
    tokio::spawn(async move {
        broker
            .fetch(&fetch_request(limit, Duration::from_secs(30)))
            .await
            .expect("fetch")
    })
}

fn task_id(delivery: &Delivery) -> String {
    let envelope: Value = serde_json::from_str(&delivery.payload.to_text()).expect("json");
    envelope["headers"]["id"]
        .as_str()
        .expect("a task id")
        .to_owned()
}

/// A fetch idle for seconds (its polls a second apart by then: the most an armed fetch waits)
/// is woken by another process's enqueue within milliseconds, three times over: each wake-up
/// disarms the notification, and each new fetch that finds nothing arms it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_idle_fetch_is_woken_by_another_process() {
    let Some(db) = TestDb::new(Database::Postgres) else {
        return;
    };
    let sender = db.app();
    let broker = fetching_broker(&db, Duration::from_secs(60));
    for round in 0..3 {
        let fetch = spawn_fetch(&broker, 10);
        // Polls at 0, 5, 15, 35, 75, 155, 315, 635, 1275, 2275, 3275, 4275 ms: the next one
        // is some 675 ms after the send.
        tokio::time::sleep(Duration::from_millis(3600)).await;
        let sent = add::s(round, 1).apply_async_on(&sender).await.unwrap();
        let clock = Instant::now();
        let found = fetch.await.unwrap();
        let latency = clock.elapsed();
        assert_eq!(found.len(), 1, "round {round}");
        assert_eq!(task_id(&found[0]), sent.id());
        assert!(
            latency < Duration::from_millis(250),
            "round {round}: woken after {latency:?}"
        );
        broker.ack(&[found[0].tag.clone()]).await.unwrap();
    }
}

/// Enqueues notify only while a fetcher waits: none before any fetcher, none for fifty enqueues
/// after a wake-up, one once a fetch found the queue empty, none once that arming lapsed
/// (5 s) with nobody waiting (a stopped or killed worker).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_enqueues_notify_only_while_a_fetcher_waits() {
    use diesel::{Connection, PgConnection, RunQueryDsl};
    let Some(db) = TestDb::new(Database::Postgres) else {
        return;
    };
    let sender = db.app();
    let broker = fetching_broker(&db, Duration::from_secs(60));
    let mut listen = PgConnection::establish(&db.url).unwrap();
    diesel::sql_query("LISTEN celery_message")
        .execute(&mut listen)
        .unwrap();
    let mut notifications = move || {
        std::thread::sleep(Duration::from_millis(300));
        let mut count = 0;
        for notification in listen.notifications_iter() {
            notification.expect("a notification");
            count += 1;
        }
        count
    };
    add::s(0, 0).apply_async_on(&sender).await.unwrap();
    assert_eq!(notifications(), 0, "no fetcher ever waited: no NOTIFY");
    assert_eq!(spawn_fetch(&broker, 100).await.unwrap().len(), 1);
    let fetch = spawn_fetch(&broker, 100);
    tokio::time::sleep(Duration::from_secs(1)).await;
    add::s(0, 0).apply_async_on(&sender).await.unwrap();
    assert_eq!(fetch.await.unwrap().len(), 1, "woken");
    assert!(notifications() >= 1, "the waiting fetch was notified");
    // Nobody waits now: the listener disarmed the wake-up.
    let sent = send_each((1..=50).map(|n| add::s(n, n).apply_async_on(&sender))).await;
    assert_eq!(notifications(), 0, "no fetcher waits: no NOTIFY");
    let taken = broker
        .fetch(&fetch_request(100, Duration::from_millis(200)))
        .await
        .unwrap();
    assert_eq!(taken.len(), sent.len());
    let empty = broker
        .fetch(&fetch_request(100, Duration::from_millis(200)))
        .await
        .unwrap();
    assert!(empty.is_empty());
    add::s(1, 1).apply_async_on(&sender).await.unwrap();
    assert_eq!(notifications(), 1, "armed by the fetch that found nothing");
    let taken = broker
        .fetch(&fetch_request(100, Duration::from_millis(200)))
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    let empty = broker
        .fetch(&fetch_request(100, Duration::from_millis(200)))
        .await
        .unwrap();
    assert!(empty.is_empty());
    tokio::time::sleep(Duration::from_millis(5500)).await;
    add::s(2, 2).apply_async_on(&sender).await.unwrap();
    assert_eq!(notifications(), 0, "the arming lapsed");
}

/// A wake-up that never comes (the notifying trigger disabled): the idle fetch still finds the
/// message by polling, well before its 30 s wait ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_lost_wake_up_is_caught_by_polling() {
    use diesel::{Connection, PgConnection, RunQueryDsl};
    let Some(db) = TestDb::new(Database::Postgres) else {
        return;
    };
    let sender = db.app();
    let mut admin = PgConnection::establish(&db.url).unwrap();
    diesel::sql_query("ALTER TABLE celery_message DISABLE TRIGGER celery_message_notify")
        .execute(&mut admin)
        .unwrap();
    let broker = fetching_broker(&db, celery_web::broker::database::MAX_POLL);
    let fetch = spawn_fetch(&broker, 10);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent = add::s(2, 2).apply_async_on(&sender).await.unwrap();
    let clock = Instant::now();
    let found = fetch.await.unwrap();
    let latency = clock.elapsed();
    assert_eq!(found.len(), 1);
    assert_eq!(task_id(&found[0]), sent.id());
    assert!(
        latency < Duration::from_secs(2),
        "found by polling after {latency:?}"
    );
}

/// A worker idle for seconds starts a task another process sends within milliseconds, round
/// after round. Its fetches restart every second and poll at 0, 5, 15, 35, 75, 155, 315 and
/// 635 ms into each: by polling alone a start within 50 ms of the send is a 1-in-4 chance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_idle_worker_starts_a_task_at_once() {
    let Some(db) = TestDb::new(Database::Postgres) else {
        return;
    };
    let sender = db.app();
    let registry = celery_web::task::Registry::from_inventory().unwrap();
    let broker = fetching_broker(&db, Duration::from_secs(60));
    let app = Celery::with_broker(db.settings(), registry, broker).unwrap();
    let shutdown = Shutdown::new();
    let worker = tokio::spawn(
        Worker::new(&app)
            .queues(["celery"])
            .concurrency(2)
            .hostname("idle@%h")
            .run(shutdown.clone()),
    );
    let mut latencies = Vec::new();
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let sent_at = chrono::Utc::now().timestamp_millis();
        let result = limited::s().apply_async_on(&sender).await.unwrap();
        let started: i64 = result.get(Duration::from_secs(10)).await.unwrap();
        latencies.push(started - sent_at);
    }
    shutdown.warm();
    worker.await.unwrap().unwrap();
    let quick = latencies.iter().filter(|&&ms| ms < 50).count();
    assert!(quick >= 5, "send -> start, ms: {latencies:?}");
}

/// `send_many` of 10,000 messages in one call (one COPY on PostgreSQL; several multi-row
/// INSERTs on SQLite, past its 999 bind parameters): every message is delivered exactly once.
async fn send_many_delivers_each_message_once(kind: Database) {
    let Some(db) = TestDb::new(kind) else { return };
    let app = db.app();
    let sent = app
        .send_many((0..10_000).map(|n| add::s(n, n)))
        .await
        .unwrap();
    let expected: HashSet<String> = sent.iter().map(|r| r.id().to_owned()).collect();
    assert_eq!(expected.len(), 10_000);
    let stats = app.broker().queue_stats(&["celery".into()]).await.unwrap();
    assert_eq!(stats[0].waiting, 10_000);
    let mut seen = HashSet::new();
    loop {
        let found = app
            .broker()
            .fetch(&fetch_request(500, Duration::from_millis(100)))
            .await
            .unwrap();
        if found.is_empty() {
            break;
        }
        for delivery in &found {
            let id = task_id(delivery);
            assert!(!delivery.redelivered, "{id} redelivered");
            assert!(seen.insert(id.clone()), "{id} delivered twice");
        }
        let tags: Vec<DeliveryTag> = found.iter().map(|d| d.tag.clone()).collect();
        app.broker().ack(&tags).await.unwrap();
    }
    assert_eq!(seen, expected);
    // Past the visibility timeout (1 s): nothing comes back.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let again = app
        .broker()
        .fetch(&fetch_request(500, Duration::from_millis(100)))
        .await
        .unwrap();
    assert!(again.is_empty(), "{} delivered again", again.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_many_on_sqlite() {
    send_many_delivers_each_message_once(Database::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_many_on_postgres() {
    send_many_delivers_each_message_once(Database::Postgres).await;
}

/// A large batch on PostgreSQL goes in as one binary COPY: priorities and countdowns survive
/// it (the priority-9 half comes first, the countdown waits), as they do through `INSERT`.
async fn a_batch_keeps_priorities_and_countdowns(kind: Database) {
    let Some(db) = TestDb::new(kind) else { return };
    let app = db.app();
    let batch = (0..200)
        .map(|n| add::s(n, n).priority(if n % 2 == 0 { 9 } else { 0 }))
        .chain([add::s(-1, -1).countdown(3600)]);
    let sent = app.send_many(batch).await.unwrap();
    assert_eq!(sent.len(), 201);
    let first = app
        .broker()
        .fetch(&fetch_request(100, Duration::from_millis(100)))
        .await
        .unwrap();
    assert_eq!(first.len(), 100);
    let urgent: HashSet<String> = sent.iter().step_by(2).map(|r| r.id().to_owned()).collect();
    assert!(first.iter().all(|d| urgent.contains(&task_id(d))));
    let rest = app
        .broker()
        .fetch(&fetch_request(500, Duration::from_millis(100)))
        .await
        .unwrap();
    assert_eq!(rest.len(), 100, "the countdown task waits");
    let waiting = sent[200].id().to_owned();
    assert!(rest.iter().chain(&first).all(|d| task_id(d) != waiting));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_keeps_priorities_and_countdowns_on_postgres() {
    a_batch_keeps_priorities_and_countdowns(Database::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_keeps_priorities_and_countdowns_on_sqlite() {
    a_batch_keeps_priorities_and_countdowns(Database::Sqlite).await;
}

/// A signature that is not valid sends nothing: no partial batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_many_sends_all_or_nothing() {
    let Some(db) = TestDb::new(Database::Sqlite) else {
        return;
    };
    let app = db.app();
    let batch = (0..10)
        .map(|n| add::s(n, n))
        .chain([add::s(1, 1).priority(10)]);
    assert!(app.send_many(batch).await.is_err());
    let stats = app.broker().queue_stats(&["celery".into()]).await.unwrap();
    assert!(stats.iter().all(|s| s.waiting == 0), "{stats:?}");
}
