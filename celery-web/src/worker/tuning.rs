//! Limits changed at run time by remote control (`rate_limit`, `time_limit`), over the
//! tasks' own. While nothing was changed (the usual case) a lookup is one atomic load.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

use super::RateLimit;

/// A rate limit set by remote control (`None` disables it) and its text as given.
type RateLimitOverride = (Option<RateLimit>, String);

/// `(soft, hard)` time limits in seconds; `None` removes that limit.
type TimeLimits = (Option<f64>, Option<f64>);

/// Run-time overrides of task limits, by task name.
#[derive(Debug, Default)]
pub(crate) struct Tuning {
    changed: AtomicBool,
    /// `None` disables the task's rate limit; the text is as it was given (`10/m`).
    rate_limits: RwLock<HashMap<String, RateLimitOverride>>,
    /// `(soft, hard)` seconds; `None` removes that limit.
    time_limits: RwLock<HashMap<String, TimeLimits>>,
}

impl Tuning {
    /// The overridden rate limit of `task`: `Some(None)` = disabled, `None` = not overridden.
    pub(crate) fn rate_limit(&self, task: &str) -> Option<Option<RateLimit>> {
        if !self.changed.load(Ordering::Acquire) {
            return None;
        }
        self.rate_limits
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(task)
            .map(|(limit, _)| *limit)
    }

    /// The overridden rate limit of `task` as it was given, if one is set.
    pub(crate) fn rate_limit_text(&self, task: &str) -> Option<Option<String>> {
        if !self.changed.load(Ordering::Acquire) {
            return None;
        }
        self.rate_limits
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(task)
            .map(|(limit, text)| limit.map(|_| text.clone()))
    }

    /// The overridden `(soft, hard)` time limits of `task`.
    pub(crate) fn time_limits(&self, task: &str) -> Option<TimeLimits> {
        if !self.changed.load(Ordering::Acquire) {
            return None;
        }
        self.time_limits
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(task)
            .copied()
    }

    pub(crate) fn set_rate_limit(&self, task: &str, limit: Option<RateLimit>, text: &str) {
        self.rate_limits
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(task.to_owned(), (limit, text.to_owned()));
        self.changed.store(true, Ordering::Release);
    }

    pub(crate) fn set_time_limits(&self, task: &str, soft: Option<f64>, hard: Option<f64>) {
        self.time_limits
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(task.to_owned(), (soft, hard));
        self.changed.store(true, Ordering::Release);
    }
}
