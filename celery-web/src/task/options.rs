//! Per-task options, as given to `#[task(...)]`.

use std::time::Duration;

/// The options of one task. `None` means "use the app setting or Celery's default".
///
/// `#[task]` builds this as a constant; code registering tasks by hand starts from
/// [`TaskOptions::DEFAULT`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TaskOptions {
    /// Default queue for this task (routing settings and call options win).
    pub queue: Option<&'static str>,
    /// Default priority, 0 (lowest) to 9 (highest).
    pub priority: Option<u8>,
    /// Retries allowed before FAILURE. Defaults to 3.
    pub max_retries: Option<u32>,
    /// Seconds before a retry when the task gives none and has no backoff. Defaults to 180.
    pub default_retry_delay: Option<f64>,
    /// Exponential backoff factor in seconds: retry n waits `factor * 2^n`.
    pub retry_backoff: Option<f64>,
    /// Cap of the backoff in seconds. Defaults to 600.
    pub retry_backoff_max: Option<f64>,
    /// Full jitter on backoff delays. Defaults to true.
    pub retry_jitter: Option<bool>,
    /// Retry on any `Err` the body returns (Celery's `autoretry_for=(Exception,)`).
    pub autoretry: bool,
    /// Do not store the result. Defaults to the `task_ignore_result` setting.
    pub ignore_result: Option<bool>,
    /// Acknowledge after the task ran (at-least-once) rather than when it starts
    /// (at-most-once). Defaults to the `task_acks_late` setting.
    pub acks_late: Option<bool>,
    /// Hard time limit in seconds: the task is stopped and fails with `TimeLimitExceeded`.
    pub time_limit: Option<f64>,
    /// Soft time limit in seconds: the task can observe it through its context.
    pub soft_time_limit: Option<f64>,
    /// Rate limit per worker: `"10/s"`, `"100/m"`, `"5/h"` or a number per second.
    pub rate_limit: Option<&'static str>,
}

impl TaskOptions {
    /// Every option unset.
    pub const DEFAULT: TaskOptions = TaskOptions {
        queue: None,
        priority: None,
        max_retries: None,
        default_retry_delay: None,
        retry_backoff: None,
        retry_backoff_max: None,
        retry_jitter: None,
        autoretry: false,
        ignore_result: None,
        acks_late: None,
        time_limit: None,
        soft_time_limit: None,
        rate_limit: None,
    };

    /// Retries allowed (Celery's default: 3).
    pub fn max_retries(&self) -> u32 {
        self.max_retries.unwrap_or(3)
    }

    /// The delay before retry number `retries + 1` when the task did not name one.
    ///
    /// ```
    /// use celery_web::task::TaskOptions;
    /// use std::time::Duration;
    ///
    /// let backoff = TaskOptions { retry_backoff: Some(2.0), retry_jitter: Some(false), ..TaskOptions::DEFAULT };
    /// assert_eq!(backoff.retry_delay(3), Duration::from_secs(16));
    /// assert_eq!(TaskOptions::DEFAULT.retry_delay(0), Duration::from_secs(180));
    /// ```
    pub fn retry_delay(&self, retries: u32) -> Duration {
        let Some(factor) = self.retry_backoff else {
            return Duration::from_secs_f64(self.default_retry_delay.unwrap_or(180.0).max(0.0));
        };
        let cap = self.retry_backoff_max.unwrap_or(600.0);
        let exponent = retries.min(62) as i32;
        let countdown = (factor * 2f64.powi(exponent)).min(cap).max(0.0);
        let countdown = if self.retry_jitter.unwrap_or(true) {
            // Celery's "full jitter": uniformly in [0, countdown].
            fastrand::f64() * countdown
        } else {
            countdown
        };
        Duration::from_secs_f64(countdown)
    }
}

impl Default for TaskOptions {
    fn default() -> Self {
        Self::DEFAULT
    }
}
