//! `site celery bench` on PostgreSQL: the server's own ceiling for enqueueing, measured in the
//! same run as our figures so that a ratio survives a noisy machine.
//!
//! The ceiling is what the database does without celery-web in the way: one plain one-row
//! `INSERT` per transaction (autocommit), from 1 and from N connections at once, into a scratch
//! copy of `celery_message` (`LIKE celery_message INCLUDING ALL`: the same columns, defaults
//! and claim index; no wake-up trigger), with rows the size of the benchmark's own messages.
//! The copy starts empty for every measurement, as our enqueue phase starts with an empty
//! queue, and is dropped afterwards.

use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use crate::db::Db;
use crate::{Error, Result};

/// The scratch table; never one of ours.
const SCRATCH: &str = "celery_web_bench_ceiling";

/// One row as the benchmark's messages look in `celery_message`.
#[derive(Debug, Clone)]
pub(super) struct SampleRow {
    pub(super) queue: String,
    pub(super) task_name: String,
    pub(super) payload: String,
}

/// Plain one-row inserts per second into the scratch table with `connections` connections
/// at once, `rows` in all. The pool must hold at least `connections` connections.
pub(super) fn inserts_per_second(
    db: &Db,
    sample: &SampleRow,
    rows: u64,
    connections: u64,
) -> Result<f64> {
    let Db::Postgres(pool) = db else {
        return Err(Error::Config(
            "the enqueue ceiling is measured on PostgreSQL only".into(),
        ));
    };
    let connections = connections.clamp(1, rows.max(1));
    {
        let conn = &mut *pool.get()?;
        diesel::sql_query(format!("DROP TABLE IF EXISTS {SCRATCH}")).execute(conn)?;
        diesel::sql_query(format!(
            "CREATE TABLE {SCRATCH} (LIKE celery_message INCLUDING ALL)"
        ))
        .execute(conn)?;
    }
    let statement = format!(
        "INSERT INTO {SCRATCH} (queue, priority, task_id, task_name, payload, visible_at, \
         created_at) VALUES ($1, 0, $2, $3, $4, $5, $5)"
    );
    // Every connection is open before the clock starts.
    let mut held = Vec::new();
    for _ in 0..connections {
        held.push(pool.get()?);
    }
    let clock = Instant::now();
    let ended: Vec<Result<()>> = std::thread::scope(|scope| {
        let workers: Vec<_> = held
            .into_iter()
            .enumerate()
            .map(|(index, mut conn)| {
                let share = rows / connections + u64::from((index as u64) < rows % connections);
                let statement = &statement;
                scope.spawn(move || -> Result<()> {
                    for n in 0..share {
                        let now = chrono::Utc::now().timestamp_micros();
                        diesel::sql_query(statement)
                            .bind::<Text, _>(&sample.queue)
                            .bind::<Text, _>(format!("ceiling-{index}-{n}"))
                            .bind::<Text, _>(&sample.task_name)
                            .bind::<Text, _>(&sample.payload)
                            .bind::<BigInt, _>(now)
                            .execute(&mut *conn)?;
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|_| Err(Error::broker("bench ceiling thread panicked")))
            })
            .collect()
    });
    let elapsed = clock.elapsed().max(Duration::from_micros(1));
    let dropped = diesel::sql_query(format!("DROP TABLE {SCRATCH}")).execute(&mut *pool.get()?);
    ended.into_iter().collect::<Result<Vec<()>>>()?;
    dropped?;
    Ok(rows as f64 / elapsed.as_secs_f64())
}
