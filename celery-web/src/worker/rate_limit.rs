//! Per-task rate limits (`rate_limit = "10/s"`), per worker as in Celery.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::time::Instant;

/// The task option's type, also here where the worker applies it.
pub use crate::task::RateLimit;

/// Spaces out the starts of each rate-limited task evenly (a token bucket of capacity one,
/// like kombu's).
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    next_start: Mutex<HashMap<String, Instant>>,
}

impl RateLimiter {
    /// Waits until `task` may start again.
    pub(crate) async fn acquire(&self, task: &str, limit: RateLimit) {
        if limit.is_unlimited() {
            return;
        }
        let start = {
            let mut next = self.next_start.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let slot = next.get(task).copied().unwrap_or(now).max(now);
            next.insert(task.to_owned(), slot + limit.interval());
            slot
        };
        tokio::time::sleep_until(start).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn starts_are_spaced() {
        let limiter = RateLimiter::default();
        let limit: RateLimit = "4/s".parse().unwrap();
        let begin = Instant::now();
        for _ in 0..5 {
            limiter.acquire("t", limit).await;
        }
        assert_eq!(begin.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn no_limit_never_waits() {
        let limiter = RateLimiter::default();
        let begin = Instant::now();
        for _ in 0..5 {
            limiter.acquire("t", RateLimit::UNLIMITED).await;
        }
        assert_eq!(begin.elapsed(), Duration::ZERO);
    }
}
