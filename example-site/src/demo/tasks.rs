//! Demonstration tasks.

use std::time::Duration;

use celery_web::prelude::*;

/// Adds two numbers: the task for quick trials (`site celery call example_site.demo.tasks.add --args '[2, 3]'`).
#[task]
pub fn add(x: i64, y: i64) -> i64 {
    x + y
}

/// Same as [`add()`], under the short name a Python service would use.
#[task(name = "tasks.add")]
pub fn add_shared(x: i64, y: i64) -> i64 {
    x + y
}

/// Fails until it has been retried `failures` times, with a short exponential backoff.
#[task(bind, max_retries = 4, retry_backoff = 0.2, retry_jitter = false)]
pub async fn flaky(ctx: TaskContext, failures: u32) -> TaskResult<u32> {
    if ctx.retries() < failures {
        return Err(ctx
            .retry()
            .reason(format!(
                "failing on purpose ({} of {failures})",
                ctx.retries() + 1
            ))
            .into());
    }
    Ok(ctx.retries())
}

/// Fails every time with a parse error; `autoretry` retries it twice, then FAILURE.
#[task(autoretry, max_retries = 2, default_retry_delay = 0.1)]
pub fn always_fails(text: String) -> TaskResult<i64> {
    Ok(text.parse::<i64>()?)
}

/// Panics: the worker records FAILURE with the panic message and goes on.
#[task]
pub fn explode(message: String) -> i64 {
    panic!("{message}")
}

/// Sleeps past its hard time limit.
#[task(time_limit = 0.5)]
pub async fn overrun(seconds: f64) -> f64 {
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    seconds
}

/// Reports whether its soft time limit passed while it slept.
#[task(bind, soft_time_limit = 0.2)]
pub async fn notices_soft_limit(ctx: TaskContext, seconds: f64) -> bool {
    tokio::select! {
        () = ctx.soft_time_limit() => true,
        () = tokio::time::sleep(Duration::from_secs_f64(seconds)) => false,
    }
}

/// At most five starts per second on each worker; returns its start time in milliseconds.
#[task(rate_limit = "5/s")]
pub fn limited() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
