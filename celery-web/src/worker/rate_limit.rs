//! Per-task rate limits (`rate_limit = "10/s"`), per worker as in Celery.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A rate: so many tasks per second, minute or hour.
///
/// ```
/// use celery_web::worker::RateLimit;
/// let limit: RateLimit = "100/m".parse().unwrap();
/// assert_eq!(limit.interval(), std::time::Duration::from_millis(600));
/// assert!("ten/s".parse::<RateLimit>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    per_second: f64,
}

impl RateLimit {
    /// Time between two starts.
    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.per_second)
    }
}

impl FromStr for RateLimit {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (count, unit) = text.trim().split_once('/').unwrap_or((text.trim(), "s"));
        let count: f64 = count
            .trim()
            .parse()
            .map_err(|_| format!("`{text}` is not a rate like \"10/s\", \"100/m\" or \"5/h\""))?;
        let seconds = match unit.trim() {
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => {
                return Err(format!(
                    "`{other}` in `{text}` is not a unit: use s, m or h"
                ))
            }
        };
        if !(count.is_finite() && count > 0.0) {
            return Err(format!("`{text}`: the count must be positive"));
        }
        let per_second = count / seconds;
        // The interval must be a duration: not zero, not longer than a duration can be.
        if Duration::try_from_secs_f64(1.0 / per_second).is_err() || per_second > 1e9 {
            return Err(format!("`{text}` is out of range"));
        }
        Ok(RateLimit { per_second })
    }
}

/// Spaces out the starts of each rate-limited task evenly (a token bucket of capacity one,
/// like kombu's).
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    next_start: Mutex<HashMap<String, Instant>>,
}

impl RateLimiter {
    /// Waits until `task` may start again.
    pub(crate) async fn acquire(&self, task: &str, limit: RateLimit) {
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
    use super::*;

    #[test]
    fn parses_celery_rates() {
        assert_eq!(
            "10/s".parse::<RateLimit>().unwrap().interval(),
            Duration::from_millis(100)
        );
        assert_eq!(
            "2".parse::<RateLimit>().unwrap().interval(),
            Duration::from_millis(500)
        );
        assert_eq!(
            "60/h".parse::<RateLimit>().unwrap().interval(),
            Duration::from_secs(60)
        );
        assert!("0/s".parse::<RateLimit>().is_err());
        assert!("10/d".parse::<RateLimit>().is_err());
        assert!("1e-300/s".parse::<RateLimit>().is_err());
    }

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
}
