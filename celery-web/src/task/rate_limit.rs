//! Rate limits as Celery writes them (`"10/s"`, `"100/m"`, `"5/h"`, `"0"` for none): the task
//! option `rate_limit` and the setting `task_default_rate_limit` are read by this one parser.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A rate limit: so many task starts per second, minute or hour, or no limit at all.
///
/// As in Celery, `N` alone means `N/s`, and a count of `0` (`"0"`, `"0/m"`) means no limit.
/// Counts may be fractions (`"0.5/s"`).
///
/// ```
/// use celery_web::task::RateLimit;
/// use std::time::Duration;
///
/// let limit = RateLimit::parse("100/m")?;
/// assert_eq!(limit.interval(), Duration::from_millis(600));
/// assert_eq!(RateLimit::parse("5")?.per_second(), Some(5.0));
/// assert!(RateLimit::parse("0")?.is_unlimited());
/// assert!(RateLimit::parse("ten/s").is_err());
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Starts per second; `0.0` means no limit.
    per_second: f64,
}

impl RateLimit {
    /// No limit (Celery's `"0"`).
    pub const UNLIMITED: RateLimit = RateLimit { per_second: 0.0 };

    /// Reads a Celery rate limit: `N` or `N/s` per second, `N/m` per minute, `N/h` per hour,
    /// where `N` is a non-negative number and `0` means no limit. The error says what is wrong
    /// with `text`.
    pub fn parse(text: &str) -> Result<RateLimit, String> {
        let trimmed = text.trim();
        let (count, unit) = trimmed.split_once('/').unwrap_or((trimmed, "s"));
        let seconds = match unit.trim() {
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => {
                return Err(format!(
                    "{text:?}: the unit {other:?} is not s, m or h (write a rate such as \
                     \"10/s\", \"100/m\" or \"5/h\")"
                ))
            }
        };
        let count: f64 = count.trim().parse().map_err(|_| {
            format!("{text:?} is not a rate such as \"10/s\", \"100/m\" or \"5/h\" (\"0\" means no limit)")
        })?;
        if !count.is_finite() || count < 0.0 {
            return Err(format!(
                "{text:?}: the count must be a non-negative number (\"0\" means no limit)"
            ));
        }
        if count == 0.0 {
            return Ok(RateLimit::UNLIMITED);
        }
        let per_second = count / seconds;
        // The interval between starts must be a duration: not zero, not longer than one can be.
        if per_second > 1e9 || Duration::try_from_secs_f64(1.0 / per_second).is_err() {
            return Err(format!("{text:?} is out of range"));
        }
        Ok(RateLimit { per_second })
    }

    /// Whether this is no limit (`"0"`).
    pub fn is_unlimited(&self) -> bool {
        self.per_second == 0.0
    }

    /// Starts per second, or `None` for no limit.
    pub fn per_second(&self) -> Option<f64> {
        (!self.is_unlimited()).then_some(self.per_second)
    }

    /// Time between two starts; zero for no limit.
    pub fn interval(&self) -> Duration {
        match self.per_second() {
            Some(per_second) => Duration::from_secs_f64(1.0 / per_second),
            None => Duration::ZERO,
        }
    }
}

impl FromStr for RateLimit {
    type Err = String;

    /// [`RateLimit::parse`].
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        RateLimit::parse(text)
    }
}

/// `"N/s"`, or `"0"` for no limit.
impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.per_second() {
            Some(per_second) => write!(f, "{per_second}/s"),
            None => f.write_str("0"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(text: &str) -> Duration {
        RateLimit::parse(text).unwrap().interval()
    }

    #[test]
    fn celery_rates() {
        assert_eq!(interval("10/s"), Duration::from_millis(100));
        assert_eq!(interval("100/m"), Duration::from_millis(600));
        assert_eq!(interval("5/h"), Duration::from_secs(720));
        assert_eq!(interval("2"), Duration::from_millis(500));
        assert_eq!(interval(" 60 / h "), Duration::from_secs(60));
        assert_eq!(RateLimit::parse("0.5/s").unwrap().per_second(), Some(0.5));
        assert_eq!("10/s".parse::<RateLimit>(), RateLimit::parse("10"));
    }

    #[test]
    fn zero_means_no_limit() {
        for zero in ["0", "0/s", "0/m", "0.0/h", " 0 "] {
            let limit = RateLimit::parse(zero).unwrap();
            assert!(limit.is_unlimited(), "{zero}");
            assert_eq!(limit.per_second(), None);
            assert_eq!(limit.interval(), Duration::ZERO);
            assert_eq!(limit, RateLimit::UNLIMITED);
        }
        assert!(!RateLimit::parse("1/h").unwrap().is_unlimited());
    }

    #[test]
    fn bad_rates_say_what_is_wrong() {
        let error = |text: &str| RateLimit::parse(text).unwrap_err();
        assert_eq!(
            error("10/d"),
            "\"10/d\": the unit \"d\" is not s, m or h (write a rate such as \"10/s\", \
             \"100/m\" or \"5/h\")"
        );
        assert_eq!(
            error("ten/s"),
            "\"ten/s\" is not a rate such as \"10/s\", \"100/m\" or \"5/h\" (\"0\" means no \
             limit)"
        );
        assert_eq!(
            error("-1/s"),
            "\"-1/s\": the count must be a non-negative number (\"0\" means no limit)"
        );
        assert_eq!(error("1e-300/s"), "\"1e-300/s\" is out of range");
        for bad in ["", "/s", "10/", "inf", "NaN/m", "10/s/s", "1e300"] {
            assert!(RateLimit::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn display_reads_back() {
        for text in ["10/s", "0", "120/m"] {
            let limit = RateLimit::parse(text).unwrap();
            assert_eq!(RateLimit::parse(&limit.to_string()).unwrap(), limit);
        }
    }
}
