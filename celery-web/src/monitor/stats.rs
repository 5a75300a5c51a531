//! Aggregates over task results: throughput per minute, counts per task and state, and
//! runtime histograms in Prometheus' shape.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Integer, Text, Timestamp};

use crate::db::schema::celery_taskresult;
use crate::db::{with_connection, DatabaseError, DatabaseErrorKind, Db};
use crate::task::State;
use crate::{Error, Result};

/// How many results reached a state in one minute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MinuteCount {
    /// The minute (UTC, seconds zero) their `date_done` falls in.
    pub minute: DateTime<Utc>,
    /// State name.
    pub status: String,
    /// How many.
    pub count: u64,
}

/// How many results of one task are in one state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateCount {
    /// Task name (empty when the row has none).
    pub task_name: String,
    /// State name.
    pub status: String,
    /// How many.
    pub count: u64,
}

/// The runtimes of one task as a Prometheus histogram.
#[derive(Clone, Debug, PartialEq)]
pub struct RuntimeHistogram {
    /// Task name (empty when the rows have none).
    pub task_name: String,
    /// `(le, cumulative count)`: how many runs took at most `le` seconds, for each of
    /// [`RUNTIME_BUCKETS`] and then `f64::INFINITY` (every run).
    pub buckets: Vec<(f64, u64)>,
    /// Total runtime, seconds.
    pub sum_seconds: f64,
    /// Number of runs.
    pub count: u64,
}

/// Upper bounds of the runtime buckets, seconds (Prometheus' default buckets); a last
/// `+Inf` bucket follows.
pub const RUNTIME_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(QueryableByName)]
struct MinuteRow {
    #[diesel(sql_type = Text)]
    minute: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = BigInt)]
    count: i64,
}

/// Results done since `since`, counted per minute of `date_done` and state; ordered by
/// minute, then state. Minutes without results are absent.
pub async fn counts_per_minute(db: &Db, since: DateTime<Utc>) -> Result<Vec<MinuteCount>> {
    let since = since.naive_utc();
    db.run(move |db| {
        let rows: Vec<MinuteRow> = match db {
            #[cfg(feature = "sqlite")]
            Db::Sqlite(pool) => diesel::sql_query(
                "SELECT strftime('%Y-%m-%d %H:%M', date_done) AS minute, status, \
                 COUNT(*) AS count FROM celery_taskresult WHERE date_done >= ? \
                 GROUP BY 1, 2 ORDER BY 1, 2",
            )
            .bind::<Timestamp, _>(since)
            .load(&mut *pool.get()?)?,
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => diesel::sql_query(
                "SELECT to_char(date_trunc('minute', date_done), 'YYYY-MM-DD HH24:MI') AS minute, \
                 status, COUNT(*) AS count FROM celery_taskresult WHERE date_done >= $1 \
                 GROUP BY 1, 2 ORDER BY 1, 2",
            )
            .bind::<Timestamp, _>(since)
            .load(&mut *pool.get()?)?,
        };
        rows.into_iter()
            .map(|row| {
                let minute = NaiveDateTime::parse_from_str(
                    &format!("{}:00", row.minute),
                    "%Y-%m-%d %H:%M:%S",
                )
                .map_err(|e| {
                    let context = format!("unexpected minute `{}`", row.minute);
                    Error::Database(
                        DatabaseError::new(DatabaseErrorKind::Other, e).context(context),
                    )
                })?;
                Ok(MinuteCount {
                    minute: minute.and_utc(),
                    status: row.status,
                    count: u64::try_from(row.count).unwrap_or(0),
                })
            })
            .collect()
    })
    .await
}

/// Results written since `since`, counted per task name and state (for `/metrics`); ordered by
/// name, then state. Reads the `date_done` index range only (counting a whole table of a
/// million rows takes seconds on SQLite).
pub async fn counts_by_name_and_state(db: &Db, since: DateTime<Utc>) -> Result<Vec<StateCount>> {
    let since = since.naive_utc();
    db.run(move |db| {
        use celery_taskresult::dsl as r;
        let rows: Vec<(Option<String>, String, i64)> = with_connection!(db, |conn| {
            r::celery_taskresult
                .filter(r::date_done.ge(since))
                .group_by((r::task_name, r::status))
                .select((r::task_name, r::status, diesel::dsl::count_star()))
                .order((r::task_name, r::status))
                .load(conn)?
        });
        Ok(rows
            .into_iter()
            .map(|(task_name, status, count)| StateCount {
                task_name: task_name.unwrap_or_default(),
                status,
                count: u64::try_from(count).unwrap_or(0),
            })
            .collect())
    })
    .await
}

#[derive(QueryableByName)]
struct BucketRow {
    #[diesel(sql_type = Text)]
    task_name: String,
    #[diesel(sql_type = Integer)]
    bucket: i32,
    #[diesel(sql_type = BigInt)]
    count: i64,
    #[diesel(sql_type = Double)]
    sum_seconds: f64,
}

/// The SQL `CASE` that puts a runtime `seconds` in its bucket: the index of the first bound
/// of [`RUNTIME_BUCKETS`] it does not exceed, or `RUNTIME_BUCKETS.len()` for `+Inf`.
fn bucket_case(seconds: &str) -> String {
    let mut case = String::from("CASE");
    for (index, le) in RUNTIME_BUCKETS.iter().enumerate() {
        case.push_str(&format!(" WHEN {seconds} <= {le:?} THEN {index}"));
    }
    case.push_str(&format!(" ELSE {} END", RUNTIME_BUCKETS.len()));
    case
}

/// Runtime histograms per task name over results done since `since` that have a start
/// time and are ready (SUCCESS, FAILURE, REVOKED); ordered by name. Runtimes are
/// `date_done - date_started` (to the millisecond on SQLite, the microsecond on PostgreSQL).
pub async fn runtime_histograms(db: &Db, since: DateTime<Utc>) -> Result<Vec<RuntimeHistogram>> {
    let since = since.naive_utc();
    let ready: Vec<String> = State::ALL
        .iter()
        .filter(|s| s.is_ready())
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    let ready = ready.join(", ");
    db.run(move |db| {
        let query = |runtime: &str, placeholder: &str| {
            format!(
                "SELECT task_name, {case} AS bucket, COUNT(*) AS count, \
                 CAST(COALESCE(SUM(runtime), 0) AS DOUBLE PRECISION) AS sum_seconds \
                 FROM (SELECT COALESCE(task_name, '') AS task_name, {runtime} AS runtime \
                       FROM celery_taskresult WHERE date_done >= {placeholder} \
                       AND date_started IS NOT NULL AND status IN ({ready})) AS runs \
                 GROUP BY 1, 2",
                case = bucket_case("runtime"),
            )
        };
        let rows: Vec<BucketRow> = match db {
            #[cfg(feature = "sqlite")]
            Db::Sqlite(pool) => diesel::sql_query(query(
                "(julianday(date_done) - julianday(date_started)) * 86400.0",
                "?",
            ))
            .bind::<Timestamp, _>(since)
            .load(&mut *pool.get()?)?,
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => diesel::sql_query(query(
                "CAST(EXTRACT(EPOCH FROM (date_done - date_started)) AS DOUBLE PRECISION)",
                "$1",
            ))
            .bind::<Timestamp, _>(since)
            .load(&mut *pool.get()?)?,
        };
        Ok(assemble(
            rows.into_iter()
                .map(|r| (r.task_name, r.bucket, r.count, r.sum_seconds)),
        ))
    })
    .await
}

/// Histograms from `(task name, bucket index, runs in that bucket, their runtime sum)`
/// rows: buckets made cumulative, every bound present.
fn assemble(rows: impl IntoIterator<Item = (String, i32, i64, f64)>) -> Vec<RuntimeHistogram> {
    let slots = RUNTIME_BUCKETS.len() + 1;
    let mut per_task: BTreeMap<String, (Vec<u64>, f64)> = BTreeMap::new();
    for (task_name, bucket, count, sum) in rows {
        let entry = per_task
            .entry(task_name)
            .or_insert_with(|| (vec![0; slots], 0.0));
        let index = usize::try_from(bucket).unwrap_or(0).min(slots - 1);
        entry.0[index] += u64::try_from(count).unwrap_or(0);
        entry.1 += sum;
    }
    per_task
        .into_iter()
        .map(|(task_name, (counts, sum_seconds))| {
            let bounds = RUNTIME_BUCKETS.iter().copied().chain([f64::INFINITY]);
            let mut cumulative = 0;
            let buckets: Vec<(f64, u64)> = bounds
                .zip(counts)
                .map(|(le, count)| {
                    cumulative += count;
                    (le, cumulative)
                })
                .collect();
            RuntimeHistogram {
                task_name,
                buckets,
                sum_seconds,
                count: cumulative,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_complete() {
        let histograms = assemble([
            ("b".to_owned(), 0, 2, 0.004),
            ("a".to_owned(), 3, 1, 0.04),
            ("a".to_owned(), 11, 2, 40.0),
            ("a".to_owned(), 0, 1, 0.001),
            ("a".to_owned(), 99, 1, 100.0),
        ]);
        assert_eq!(histograms.len(), 2);
        let a = &histograms[0];
        assert_eq!(a.task_name, "a");
        assert_eq!(a.count, 5);
        assert!((a.sum_seconds - 140.041).abs() < 1e-9);
        assert_eq!(a.buckets.len(), 12);
        assert_eq!(a.buckets[0], (0.005, 1));
        assert_eq!(a.buckets[2], (0.025, 1));
        assert_eq!(a.buckets[3], (0.05, 2));
        assert_eq!(a.buckets[10], (10.0, 2));
        assert_eq!(a.buckets[11], (f64::INFINITY, 5));
        assert!(a
            .buckets
            .windows(2)
            .all(|w| w[0].1 <= w[1].1 && w[0].0 < w[1].0));
        let b = &histograms[1];
        assert_eq!((b.task_name.as_str(), b.count), ("b", 2));
        assert!(b.buckets.iter().all(|&(_, n)| n == 2));
    }

    #[test]
    fn the_sql_case_follows_the_bounds() {
        let case = bucket_case("r");
        assert!(case.starts_with("CASE WHEN r <= 0.005 THEN 0 WHEN r <= 0.01 THEN 1"));
        assert!(
            case.ends_with("WHEN r <= 10.0 THEN 10 ELSE 11 END"),
            "{case}"
        );
    }
}
