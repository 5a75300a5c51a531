//! The monitoring data layer on real databases: worker heartbeats from a real worker
//! process, revocation, keyset pagination of results and aggregate counts.

use std::collections::HashSet;
use std::time::Duration;

use celery_web::backend::TaskRecord;
use celery_web::monitor::{
    self, counts_per_minute, get_result, list_results, runtime_histograms, workers, ResultCursor,
    ResultFilter, ResultRow,
};
use celery_web::task::State;
use celery_web::worker::{Shutdown, Worker};
use celery_web::{Celery, Error};
use celery_web_tests::{Database, TestDb};
use chrono::{DateTime, TimeZone, Utc};
use example_site::demo::tasks::add;
use serde_json::json;

/// `scenario::sqlite` and `scenario::postgres` tests running `scenario(kind)`.
macro_rules! on_both_databases {
    ($scenario:ident) => {
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario(super::Database::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$scenario(super::Database::Postgres).await;
            }
        }
    };
}

/// Polls `check` every 100 ms until it returns `Some`; panics after `limit`.
async fn until<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn db_of(app: &Celery) -> celery_web::db::Db {
    app.db().expect("a database app").clone()
}

async fn worker_named(db: &celery_web::db::Db, prefix: &str) -> Option<monitor::WorkerInfo> {
    workers(db)
        .await
        .unwrap()
        .into_iter()
        .find(|w| w.hostname.starts_with(prefix))
}

async fn heartbeats(kind: Database) {
    let Some(test_db) = TestDb::new(kind) else {
        return;
    };
    let app = test_db.app();
    let db = db_of(&app);
    let mut process = test_db.spawn_worker("beating", &["-c", "3", "-Q", "celery,other"]);
    let first = until(Duration::from_secs(30), "the first heartbeat", || {
        worker_named(&db, "beating@")
    })
    .await;
    assert_eq!(first.pid, i64::from(process.child.id()));
    assert_eq!(first.concurrency, 3);
    assert_eq!(first.pool, "tokio");
    assert_eq!(first.queues, ["celery", "other"]);
    assert!(
        first.software.starts_with("celery-web "),
        "{}",
        first.software
    );
    assert!(first.is_online(Utc::now()));
    assert_eq!(first.stopped_at, None);
    until(Duration::from_secs(10), "a later heartbeat", || async {
        let now = worker_named(&db, "beating@").await?;
        (now.last_heartbeat > first.last_heartbeat).then_some(())
    })
    .await;
    assert!(
        !monitor::forget_worker(&db, &first.hostname).await.unwrap(),
        "an online worker is not forgotten"
    );

    let results: Vec<_> = futures_join(&app, 5).await;
    for result in results {
        assert_eq!(result.get(Duration::from_secs(30)).await.unwrap(), 3);
    }
    let counted = until(Duration::from_secs(10), "the counters", || async {
        let now = worker_named(&db, "beating@").await?;
        (now.processed >= 5).then_some(now)
    })
    .await;
    assert_eq!(
        (counted.processed, counted.succeeded, counted.failed),
        (5, 5, 0)
    );
    assert_eq!(counted.started_at, first.started_at);

    process.signal("TERM");
    assert!(
        process.wait_exit(Duration::from_secs(20)).is_some(),
        "the worker stops on SIGTERM:\n{}",
        process.log()
    );
    let stopped = worker_named(&db, "beating@").await.expect("row kept");
    assert!(stopped.stopped_at.is_some(), "stopped_at written");
    assert!(!stopped.is_online(Utc::now()));
    assert!(monitor::forget_worker(&db, &first.hostname).await.unwrap());
    assert!(worker_named(&db, "beating@").await.is_none());
}
on_both_databases!(heartbeats);

/// Sends `count` × `add(1, 2)`.
async fn futures_join(app: &Celery, count: usize) -> Vec<celery_web::task::AsyncResult<i64>> {
    let mut results = Vec::new();
    for _ in 0..count {
        results.push(add::s(1, 2).apply_async_on(app).await.unwrap());
    }
    results
}

async fn revoked_record(app: &Celery, id: &str) -> TaskRecord {
    let record = app
        .backend()
        .unwrap()
        .fetch(id)
        .await
        .unwrap()
        .expect("a record");
    assert_eq!(record.status, State::Revoked, "{record:?}");
    assert_eq!(
        record.result.as_ref().unwrap()["exc_type"],
        "TaskRevokedError"
    );
    record
}

async fn revoke_before_it_runs(kind: Database) {
    let Some(test_db) = TestDb::new(kind) else {
        return;
    };
    let app = test_db.app();
    // Waiting in the broker with a countdown: the message is deleted at once.
    let waiting = add::s(1, 2)
        .countdown(2)
        .apply_async_on(&app)
        .await
        .unwrap();
    celery_web::control::revoke(&app, waiting.id())
        .await
        .unwrap();
    celery_web::control::revoke(&app, waiting.id())
        .await
        .expect("revoking twice is harmless");
    revoked_record(&app, waiting.id()).await;
    let stats = app
        .broker()
        .queue_stats(&["celery".to_owned()])
        .await
        .unwrap();
    assert_eq!(stats[0].pending(), 0, "{stats:?}");

    // Revoked before it was even sent: the worker skips it when it receives it.
    let id = uuid::Uuid::new_v4().to_string();
    celery_web::control::revoke(&app, &id).await.unwrap();
    assert_eq!(revoked_record(&app, &id).await.worker, None);
    let late = add::s(1, 2)
        .task_id(id.clone())
        .apply_async_on(&app)
        .await
        .unwrap();
    let control = add::s(2, 2).apply_async_on(&app).await.unwrap();

    let shutdown = Shutdown::new();
    let worker = tokio::spawn(
        Worker::new(&app)
            .hostname("revoker@%h")
            .run(shutdown.clone()),
    );
    assert_eq!(control.get(Duration::from_secs(30)).await.unwrap(), 4);
    let skipped = until(Duration::from_secs(10), "the worker to skip it", || async {
        let record = app.backend().unwrap().fetch(&id).await.unwrap()?;
        record.worker.is_some().then_some(record)
    })
    .await;
    assert_eq!(skipped.status, State::Revoked);
    assert_eq!(skipped.result.unwrap()["exc_message"], json!(["revoked"]));
    let error = late.get(Duration::from_secs(1)).await.unwrap_err();
    assert!(error.to_string().contains("TaskRevokedError"), "{error}");
    // The countdown passes: the deleted message never runs.
    tokio::time::sleep(Duration::from_secs(2)).await;
    revoked_record(&app, waiting.id()).await;
    let stats = app
        .broker()
        .queue_stats(&["celery".to_owned()])
        .await
        .unwrap();
    assert_eq!(
        (stats[0].waiting, stats[0].scheduled, stats[0].in_flight),
        (0, Some(0), Some(0)),
        "the skipped message was acked: {stats:?}"
    );
    shutdown.warm();
    worker.await.unwrap().unwrap();
}
on_both_databases!(revoke_before_it_runs);

async fn revoke_keeps_a_finished_result(kind: Database) {
    let Some(test_db) = TestDb::new(kind) else {
        return;
    };
    let app = test_db.app();
    let shutdown = Shutdown::new();
    let worker = tokio::spawn(Worker::new(&app).run(shutdown.clone()));
    let done = add::s(20, 22).apply_async_on(&app).await.unwrap();
    assert_eq!(done.get(Duration::from_secs(30)).await.unwrap(), 42);
    celery_web::control::revoke(&app, done.id()).await.unwrap();
    let record = app
        .backend()
        .unwrap()
        .fetch(done.id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, State::Success);
    assert_eq!(record.result, Some(json!(42)));
    shutdown.warm();
    worker.await.unwrap().unwrap();
}
on_both_databases!(revoke_keeps_a_finished_result);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_nothing_is_a_clear_error() {
    let Some(test_db) = TestDb::new(Database::Sqlite) else {
        return;
    };
    let app = test_db.app();
    let error = celery_web::control::revoke(&app, " ").await.unwrap_err();
    assert!(
        matches!(&error, Error::Config(m) if m.contains("task id is empty")),
        "{error}"
    );
}

/// Which rows a filter should keep, computed in Rust.
type Keep = Box<dyn Fn(&ResultRow) -> bool>;

const NAMES: [&str; 3] = ["shop.charge", "shop.refund", "mail.send"];
const WORKERS: [&str; 2] = ["w1@h", "w2@h"];

fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

/// 230 results over about 4 hours; groups of 3 share a `date_done` (ties broken by id),
/// some times carry nanoseconds.
fn seeded_records() -> Vec<TaskRecord> {
    (0..230u32)
        .map(|n| {
            let status = match n % 10 {
                0 => State::Failure,
                1 => State::Retry,
                _ => State::Success,
            };
            let mut record = TaskRecord::new(&format!("task-{n:04}"), status);
            record.task_name = Some(NAMES[(n % 3) as usize].to_owned());
            record.worker = Some(WORKERS[(n % 7 % 2) as usize].to_owned());
            record.periodic_task_name = (n % 4 == 0).then(|| "nightly".to_owned());
            let done = base_time()
                + chrono::Duration::seconds(i64::from(n / 3) * 190)
                + chrono::Duration::nanoseconds(i64::from(n / 3 % 5) * 123_456_789);
            record.date_done = Some(done);
            record.date_started = Some(
                done - chrono::Duration::milliseconds(i64::from(
                    [3, 40, 700, 20_000][(n % 4) as usize],
                )),
            );
            record.result = Some(json!(n));
            record
        })
        .collect()
}

/// Reads every page of `filter` with `limit` rows a page.
async fn every_page(
    db: &celery_web::db::Db,
    filter: &ResultFilter,
    limit: usize,
) -> Vec<ResultRow> {
    let mut rows = Vec::new();
    let mut after: Option<ResultCursor> = None;
    loop {
        let page = list_results(db, filter, after, limit).await.unwrap();
        assert!(page.rows.len() <= limit);
        rows.extend(page.rows);
        match page.next {
            // The cursor goes through its token, as it does through a link.
            Some(next) => after = Some(ResultCursor::from_token(&next.to_token()).unwrap()),
            None => return rows,
        }
    }
}

async fn keyset_paging(kind: Database) {
    let Some(test_db) = TestDb::new(kind) else {
        return;
    };
    let app = test_db.app();
    let db = db_of(&app);
    let records = seeded_records();
    app.backend().unwrap().store(&records).await.unwrap();

    let all = every_page(&db, &ResultFilter::default(), 1_000).await;
    assert_eq!(all.len(), records.len());
    assert!(
        all.windows(2)
            .all(|w| (w[0].date_done, w[0].id) > (w[1].date_done, w[1].id)),
        "newest first, id breaking ties"
    );
    assert!(
        all.windows(2).any(|w| w[0].date_done == w[1].date_done),
        "the data has ties"
    );

    let day_start = base_time() + chrono::Duration::hours(1);
    let day_end = base_time() + chrono::Duration::hours(3);
    let filters: Vec<(ResultFilter, Keep)> = vec![
        (ResultFilter::default(), Box::new(|_| true)),
        (
            ResultFilter {
                status: Some(State::Failure),
                ..ResultFilter::default()
            },
            Box::new(|r| r.status == "FAILURE"),
        ),
        (
            ResultFilter {
                task_name: Some("mail.send".into()),
                ..ResultFilter::default()
            },
            Box::new(|r| r.task_name.as_deref() == Some("mail.send")),
        ),
        (
            ResultFilter {
                worker: Some("w2@h".into()),
                ..ResultFilter::default()
            },
            Box::new(|r| r.worker.as_deref() == Some("w2@h")),
        ),
        (
            ResultFilter {
                periodic_task: Some("nightly".into()),
                ..ResultFilter::default()
            },
            Box::new(|r| r.periodic_task_name.as_deref() == Some("nightly")),
        ),
        (
            ResultFilter {
                done_after: Some(day_start),
                done_before: Some(day_end),
                ..ResultFilter::default()
            },
            Box::new(move |r| r.date_done >= day_start && r.date_done < day_end),
        ),
        (
            ResultFilter {
                status: Some(State::Success),
                task_name: Some("shop.charge".into()),
                done_after: Some(day_start),
                ..ResultFilter::default()
            },
            Box::new(move |r| {
                r.status == "SUCCESS"
                    && r.task_name.as_deref() == Some("shop.charge")
                    && r.date_done >= day_start
            }),
        ),
        (
            ResultFilter {
                task_id: Some("task-0117".into()),
                ..ResultFilter::default()
            },
            Box::new(|r| r.task_id == "task-0117"),
        ),
    ];
    for (filter, keep) in &filters {
        let expected: Vec<i64> = all.iter().filter(|r| keep(r)).map(|r| r.id).collect();
        assert!(!expected.is_empty(), "{filter:?} matches rows");
        for limit in [1, 7, 50] {
            let got: Vec<i64> = every_page(&db, filter, limit)
                .await
                .iter()
                .map(|r| r.id)
                .collect();
            assert_eq!(got, expected, "{filter:?}, {limit} a page");
            let unique: HashSet<i64> = got.iter().copied().collect();
            assert_eq!(unique.len(), got.len(), "no row twice");
        }
    }
    let last = list_results(&db, &ResultFilter::default(), None, 230)
        .await
        .unwrap();
    assert_eq!(
        (last.rows.len(), last.next),
        (230, None),
        "exactly one page: no next"
    );

    let row = get_result(&db, "task-0042").await.unwrap().expect("a row");
    assert_eq!(row.state(), Some(State::Success));
    assert_eq!(row.result.as_deref(), Some("42"));
    assert_eq!(row.runtime(), Some(Duration::from_millis(700)));
    assert!(get_result(&db, "no-such-task").await.unwrap().is_none());
    let failures = monitor::latest_failures(&db, 3).await.unwrap();
    let names: Vec<&str> = failures.iter().map(|r| r.task_id.as_str()).collect();
    assert_eq!(names, ["task-0220", "task-0210", "task-0200"]);

    let error = ResultCursor::from_token("not-a-cursor").unwrap_err();
    assert!(error.to_string().contains("bad result cursor"), "{error}");
}
on_both_databases!(keyset_paging);

async fn aggregates(kind: Database) {
    let Some(test_db) = TestDb::new(kind) else {
        return;
    };
    let app = test_db.app();
    let db = db_of(&app);
    let records = seeded_records();
    app.backend().unwrap().store(&records).await.unwrap();

    // Three results every 190 s: per minute, per state, they add up.
    let since = base_time() + chrono::Duration::hours(2);
    let minutes = counts_per_minute(&db, since).await.unwrap();
    let expected: Vec<&TaskRecord> = records
        .iter()
        .filter(|r| r.date_done.unwrap() >= since)
        .collect();
    let total: u64 = minutes.iter().map(|m| m.count).sum();
    assert_eq!(total, expected.len() as u64);
    for minute in &minutes {
        assert_eq!(minute.minute.timestamp() % 60, 0, "{minute:?}");
        let here = expected
            .iter()
            .filter(|r| {
                let done = r.date_done.unwrap();
                done.timestamp() / 60 == minute.minute.timestamp() / 60
                    && r.status.as_str() == minute.status
            })
            .count();
        assert_eq!(minute.count, here as u64, "{minute:?}");
    }
    assert!(minutes
        .windows(2)
        .all(|w| (w[0].minute, &w[0].status) < (w[1].minute, &w[1].status)));

    let by_state =
        monitor::counts_by_name_and_state(&db, chrono::Utc::now() - chrono::TimeDelta::days(3650))
            .await
            .unwrap();
    let failures: u64 = by_state
        .iter()
        .filter(|c| c.status == "FAILURE")
        .map(|c| c.count)
        .sum();
    assert_eq!(failures, 23);
    assert_eq!(by_state.iter().map(|c| c.count).sum::<u64>(), 230);

    // Runtimes 3 ms, 40 ms, 700 ms and 20 s in turn; RETRY rows are not ready: left out.
    let histograms = runtime_histograms(&db, base_time()).await.unwrap();
    assert_eq!(histograms.len(), 3);
    let ready: Vec<(u32, &TaskRecord)> = (0u32..)
        .zip(&records)
        .filter(|(_, r)| r.status.is_ready())
        .collect();
    for histogram in &histograms {
        let runs: Vec<u32> = ready
            .iter()
            .filter(|(_, r)| r.task_name.as_deref() == Some(histogram.task_name.as_str()))
            .map(|(n, _)| n % 4)
            .collect();
        let within = |kind: u32| runs.iter().filter(|&&k| k <= kind).count() as u64;
        let at = |le: f64| {
            histogram
                .buckets
                .iter()
                .find(|(bound, _)| *bound == le)
                .unwrap()
                .1
        };
        assert_eq!(histogram.count, runs.len() as u64);
        assert_eq!(at(0.005), within(0), "{histogram:?}");
        assert_eq!(at(0.05), within(1), "{histogram:?}");
        assert_eq!(at(1.0), within(2), "{histogram:?}");
        assert_eq!(at(10.0), within(2), "{histogram:?}");
        assert_eq!(at(f64::INFINITY), within(3), "{histogram:?}");
        let sum: f64 = runs
            .iter()
            .map(|&k| [0.003, 0.04, 0.7, 20.0][k as usize])
            .sum();
        assert!(
            (histogram.sum_seconds - sum).abs() < 0.05,
            "{histogram:?} vs {sum}"
        );
    }
}
on_both_databases!(aggregates);
