//! `site celery bench --results-list ROWS`: fills `celery_taskresult` up to ROWS rows with a
//! realistic mix, then times the result listings the admin pages run.

use std::time::{Duration, Instant};

use chrono::{NaiveDateTime, TimeDelta, Utc};
use diesel::prelude::*;

use crate::db::schema::celery_taskresult;
use crate::db::{with_connection, Db, WriteTransaction};
use crate::monitor::{self, ResultCursor, ResultFilter};
use crate::task::State;
use crate::{Celery, Error, Result};

/// Task names of the seeded rows; the last one is rare (about 1 row in 1,000).
const TASK_NAMES: [&str; 20] = [
    "shop.orders.send_confirmation",
    "shop.orders.charge_card",
    "shop.orders.refund",
    "shop.stock.reserve",
    "shop.stock.release",
    "shop.search.reindex_product",
    "shop.search.reindex_category",
    "accounts.emails.send_welcome",
    "accounts.emails.send_password_reset",
    "accounts.cleanup.expire_sessions",
    "media.images.thumbnail",
    "media.images.optimize",
    "media.video.transcode",
    "reports.daily.sales",
    "reports.daily.traffic",
    "reports.weekly.digest",
    "billing.invoices.render_pdf",
    "billing.invoices.send",
    "integrations.crm.sync_contact",
    "reports.yearly.audit",
];
/// The rare task name the benchmark filters on.
const RARE: &str = "reports.yearly.audit";
/// Worker node names of the seeded rows.
const WORKERS: [&str; 4] = [
    "w1@bench-host",
    "w2@bench-host",
    "w3@bench-host",
    "w4@bench-host",
];
/// Rows per INSERT statement (14 columns: far below both databases' bind limits).
const ROWS_PER_STATEMENT: usize = 1_000;
/// Rows per transaction.
const ROWS_PER_TRANSACTION: usize = 50_000;
/// How many times each query runs.
const REPETITIONS: usize = 20;

#[derive(Insertable)]
#[diesel(table_name = celery_taskresult)]
struct Seed {
    task_id: String,
    periodic_task_name: Option<&'static str>,
    task_name: Option<&'static str>,
    task_args: Option<String>,
    task_kwargs: Option<&'static str>,
    status: &'static str,
    worker: Option<&'static str>,
    result: Option<String>,
    date_created: NaiveDateTime,
    date_started: Option<NaiveDateTime>,
    date_done: NaiveDateTime,
    traceback: Option<&'static str>,
    retries: i32,
    queue: Option<&'static str>,
}

const TRACEBACK: &str = "Traceback (most recent call last):\n  File \"shop/orders.rs\", line 120, \
in charge_card\n    gateway.charge(order.total)\n  File \"shop/gateway.rs\", line 88, in charge\n    \
raise GatewayError(response.status)\nGatewayError: the payment gateway answered 502 Bad Gateway \
after 30 s; the charge was not made and will be retried by the customer";

fn seed_row(rng: &mut fastrand::Rng, now: NaiveDateTime) -> Seed {
    // Names: the rare one about 1 in 1,000; the others with a long tail.
    let name = if rng.u32(0..1_000) == 0 {
        RARE
    } else {
        let skew = rng.f64() * rng.f64();
        TASK_NAMES[((skew * 19.0) as usize).min(18)]
    };
    let status = match rng.u32(0..100) {
        0..=94 => State::Success,
        95..=98 => State::Failure,
        _ => [State::Retry, State::Revoked, State::Started][rng.usize(0..3)],
    };
    let done = now - chrono::Duration::milliseconds(rng.i64(0..30 * 24 * 3600 * 1000));
    let runtime = chrono::Duration::microseconds(rng.i64(500..3_000_000));
    let periodic = match rng.u32(0..10) {
        0 => Some("every minute: sync"),
        1 => Some("nightly reports"),
        _ => None,
    };
    Seed {
        task_id: uuid::Builder::from_random_bytes(rng.u128(..).to_le_bytes())
            .into_uuid()
            .to_string(),
        periodic_task_name: periodic,
        task_name: Some(name),
        task_args: Some(format!("[{}, \"order-{}\"]", rng.u32(..), rng.u32(..))),
        task_kwargs: Some("{}"),
        status: status.as_str(),
        worker: Some(WORKERS[rng.usize(0..WORKERS.len())]),
        result: Some(match status {
            State::Success => format!("{{\"ok\": true, \"n\": {}}}", rng.u32(..)),
            _ => "{\"exc_type\": \"GatewayError\", \"exc_message\": [\"502\"], \
                  \"exc_module\": \"builtins\"}"
                .to_owned(),
        }),
        date_created: done - runtime - chrono::Duration::milliseconds(rng.i64(1..2_000)),
        date_started: (status != State::Revoked).then_some(done - runtime),
        date_done: done,
        traceback: (status == State::Failure).then_some(TRACEBACK),
        retries: i32::from(status == State::Retry),
        queue: Some("celery"),
    }
}

fn count_rows(db: &Db) -> Result<i64> {
    use celery_taskresult::dsl as r;
    Ok(with_connection!(db, |conn| r::celery_taskresult
        .count()
        .get_result(conn)?))
}

/// Inserts `missing` rows, `ROWS_PER_STATEMENT` per statement, `ROWS_PER_TRANSACTION` per
/// transaction; prints progress.
fn seed(db: &Db, missing: u64) -> Result<()> {
    let mut rng = fastrand::Rng::with_seed(missing);
    let now = Utc::now().naive_utc();
    let mut done = 0u64;
    let mut progress = super::progress::Progress::new("bench seed", "rows", Some(missing));
    while done < missing {
        let batch = (missing - done).min(ROWS_PER_TRANSACTION as u64) as usize;
        let rows: Vec<Seed> = (0..batch).map(|_| seed_row(&mut rng, now)).collect();
        with_connection!(db, |conn| conn.write_transaction(|conn| {
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                diesel::insert_into(celery_taskresult::table)
                    .values(chunk)
                    .execute(conn)?;
            }
            Ok::<_, Error>(())
        }))?;
        done += batch as u64;
        progress.set(done);
    }
    progress.finish(&format!("{missing} rows"));
    // Fresh statistics, as autovacuum (PostgreSQL) or `PRAGMA optimize` would give a site.
    match db {
        #[cfg(feature = "sqlite")]
        Db::Sqlite(pool) => diesel::sql_query("ANALYZE").execute(&mut *pool.get()?)?,
        #[cfg(feature = "postgres")]
        Db::Postgres(pool) => {
            diesel::sql_query("ANALYZE celery_taskresult").execute(&mut *pool.get()?)?
        }
    };
    Ok(())
}

/// Runs `query` [`REPETITIONS`] times; returns (p50, max) in milliseconds and the rows the
/// last run returned.
async fn time<F, Fut>(mut query: F) -> Result<(f64, f64, usize)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<usize>>,
{
    let mut times = Vec::with_capacity(REPETITIONS);
    let mut rows = 0;
    for _ in 0..REPETITIONS {
        let clock = Instant::now();
        rows = query().await?;
        times.push(clock.elapsed());
    }
    times.sort_unstable();
    let ms = |d: Duration| (d.as_secs_f64() * 1e5).round() / 100.0;
    Ok((ms(times[times.len() / 2]), ms(times[times.len() - 1]), rows))
}

pub(super) async fn run(app: &Celery, rows: u64) -> Result<i32> {
    let db = app.db().cloned().ok_or_else(|| {
        Error::Config(
            "bench --results-list needs a database: set database_url or use a sqlite:// or \
             postgres:// broker or result backend"
                .to_owned(),
        )
    })?;
    let existing = db.run(count_rows).await?;
    let missing = rows.saturating_sub(u64::try_from(existing).unwrap_or(0));
    if missing > 0 {
        db.run(move |db| seed(db, missing)).await?;
    }
    let total = db.run(count_rows).await?;
    let now = Utc::now();
    let first = monitor::list_results(&db, &ResultFilter::default(), None, 50).await?;
    let second_cursor: Option<ResultCursor> = first.next;
    let day = ResultFilter {
        done_after: Some(now - chrono::Duration::days(15)),
        done_before: Some(now - chrono::Duration::days(14)),
        ..ResultFilter::default()
    };
    // A task id from the middle of the table, for the lookup.
    let deep_id = monitor::list_results(&db, &day, None, 1)
        .await?
        .rows
        .first()
        .map(|row| row.task_id.clone())
        .unwrap_or_default();
    let filters: Vec<(&str, ResultFilter, Option<ResultCursor>)> = vec![
        ("first page", ResultFilter::default(), None),
        ("second page", ResultFilter::default(), second_cursor),
        (
            "status=FAILURE",
            ResultFilter {
                status: Some(State::Failure),
                ..ResultFilter::default()
            },
            None,
        ),
        (
            "task_name=<rare>",
            ResultFilter {
                task_name: Some(RARE.to_owned()),
                ..ResultFilter::default()
            },
            None,
        ),
        (
            "worker=w3",
            ResultFilter {
                worker: Some(WORKERS[2].to_owned()),
                ..ResultFilter::default()
            },
            None,
        ),
        (
            "status=FAILURE+task_name",
            ResultFilter {
                status: Some(State::Failure),
                task_name: Some(TASK_NAMES[5].to_owned()),
                ..ResultFilter::default()
            },
            None,
        ),
        (
            "periodic_task",
            ResultFilter {
                periodic_task: Some("nightly reports".to_owned()),
                ..ResultFilter::default()
            },
            None,
        ),
        ("one-day range", day.clone(), None),
        (
            "one-day range+status=FAILURE",
            ResultFilter {
                status: Some(State::Failure),
                ..day.clone()
            },
            None,
        ),
        (
            "task_id lookup",
            ResultFilter {
                task_id: Some(deep_id),
                ..ResultFilter::default()
            },
            None,
        ),
    ];
    println!(
        "celery_taskresult: {total} rows on {:?}; {REPETITIONS} runs each, list_results limit 50",
        db.kind()
    );
    println!(
        "{:<32} {:>9} {:>9} {:>6}",
        "query", "p50 ms", "max ms", "rows"
    );
    let mut slowest = 0.0f64;
    for (name, filter, after) in &filters {
        let (p50, max, rows) = time(|| async {
            Ok(monitor::list_results(&db, filter, *after, 50)
                .await?
                .rows
                .len())
        })
        .await?;
        slowest = slowest.max(max);
        println!("{name:<32} {p50:>9.2} {max:>9.2} {rows:>6}");
    }
    let hour_ago = now - chrono::Duration::hours(1);
    let (p50, max, rows) =
        time(|| async { Ok(monitor::counts_per_minute(&db, hour_ago).await?.len()) }).await?;
    println!(
        "{:<32} {p50:>9.2} {max:>9.2} {rows:>6}",
        "counts_per_minute(1 h)"
    );
    let (p50, max, rows) =
        time(|| async { Ok(monitor::runtime_histograms(&db, hour_ago).await?.len()) }).await?;
    println!(
        "{:<32} {p50:>9.2} {max:>9.2} {rows:>6}",
        "runtime_histograms(1 h)"
    );
    let (p50, max, rows) =
        time(|| async { Ok(monitor::latest_failures(&db, 10).await?.len()) }).await?;
    println!(
        "{:<32} {p50:>9.2} {max:>9.2} {rows:>6}",
        "latest_failures(10)"
    );
    let (p50, max, rows) = time(|| async {
        Ok(
            monitor::counts_by_name_and_state(&db, Utc::now() - TimeDelta::hours(1))
                .await?
                .len(),
        )
    })
    .await?;
    println!(
        "{:<32} {p50:>9.2} {max:>9.2} {rows:>6}",
        "counts_by_name_and_state (last hour)"
    );
    println!("slowest list_results run: {slowest:.2} ms");
    Ok(0)
}
