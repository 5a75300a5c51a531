//! Tasks Python Celery calls in the Redis interop tests (`tests/python/interop.py` is the other
//! side). Named explicitly, as a Python service would name them.

use std::io::Write;

use celery_web::prelude::*;
use serde_json::{json, Value};

/// Adds two numbers.
#[task(name = "interop.rust.add")]
pub fn add(x: i64, y: i64) -> i64 {
    x + y
}

/// What arrived: the arguments (one positional, two by keyword from Python) and the request's
/// retries and eta, with the time it started.
#[task(bind, name = "interop.rust.describe")]
pub fn describe(ctx: TaskContext, x: i64, label: String, flag: Option<bool>) -> Value {
    json!({
        "x": x,
        "label": label,
        "flag": flag,
        "retries": ctx.retries(),
        "eta": ctx.eta().map(|eta| eta.to_rfc3339()),
        "started_at": chrono::Utc::now().timestamp_micros() as f64 / 1e6,
    })
}

/// Fails with a message.
#[task(name = "interop.rust.fail")]
pub fn fail(message: String) -> TaskResult<i64> {
    Ok(message.parse::<i64>()?)
}

/// Retries itself until it has been retried `failures` times; returns the count.
#[task(
    bind,
    name = "interop.rust.flaky",
    max_retries = 5,
    default_retry_delay = 0.05
)]
pub async fn flaky(ctx: TaskContext, failures: u32) -> TaskResult<u32> {
    if ctx.retries() < failures {
        return Err(ctx.retry().reason("failing on purpose").into());
    }
    Ok(ctx.retries())
}

/// Appends the line `label` to the file `path` in one write (lines of tasks running at once
/// never interleave): shows which tasks ran, how often and in what order. Acknowledged after it
/// ran (`acks_late`), so a lost worker or server means it runs again, never not at all.
#[task(name = "interop.rust.record", acks_late)]
pub fn record(path: String, label: String) -> TaskResult<String> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    file.write_all(format!("{label}\n").as_bytes())?;
    Ok(label)
}

/// The task both sides run under one name (`interop.py` has its Python twin): appends
/// `label rs eta start` (microseconds since the epoch; `-` without an eta) in one write, so a
/// test sees which side ran each task, how often, and how long after its eta.
#[task(bind, name = "interop.shared.record", acks_late)]
pub fn shared_record(ctx: TaskContext, path: String, label: String) -> TaskResult<String> {
    let eta = ctx
        .eta()
        .map_or_else(|| "-".to_owned(), |eta| eta.timestamp_micros().to_string());
    let started = chrono::Utc::now().timestamp_micros();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    file.write_all(format!("{label} rs {eta} {started}\n").as_bytes())?;
    Ok(label)
}

/// An old-style errback: appends the id of the task that failed to the file `path`.
#[task(name = "interop.rust.note_failure")]
pub fn note_failure(task_id: String, path: String) -> TaskResult<String> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    file.write_all(format!("{task_id}\n").as_bytes())?;
    Ok(task_id)
}

/// A chord body: the sum of the header's results.
#[task(name = "interop.rust.total")]
pub async fn total(values: Vec<i64>) -> i64 {
    values.iter().sum()
}

/// Called by the `site` binary so the linker keeps this module's tasks.
pub fn link() {}
