//! The position of a page of results: the `(date_done, id)` of its last row.

use chrono::{DateTime, Utc};

use crate::{Error, Result};

/// Where the next page of [`list_results`](super::list_results) starts: strictly older than
/// this `(date_done, id)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResultCursor {
    /// `date_done` of the last row shown.
    pub date_done: DateTime<Utc>,
    /// `id` of the last row shown (breaks ties between rows done at the same instant).
    pub id: i64,
}

impl ResultCursor {
    /// A URL-safe token for the cursor (`<nanoseconds since the epoch>_<id>`), exact to the
    /// nanosecond, so the next page neither repeats nor skips a row.
    ///
    /// ```
    /// use celery_web::monitor::ResultCursor;
    /// let cursor = ResultCursor { date_done: chrono::Utc::now(), id: 42 };
    /// assert_eq!(ResultCursor::from_token(&cursor.to_token()).unwrap(), cursor);
    /// ```
    pub fn to_token(&self) -> String {
        let seconds = self.date_done.timestamp();
        let nanos = self.date_done.timestamp_subsec_nanos();
        format!("{seconds}.{nanos:09}_{}", self.id)
    }

    /// Reads a token made by [`ResultCursor::to_token`]; anything else (a token edited by
    /// hand, cut short, out of range) is an [`Error::Config`] that says what is wrong.
    pub fn from_token(token: &str) -> Result<Self> {
        let bad = |why: &str| {
            let shown: String = token.chars().take(60).collect();
            Error::Config(format!(
                "bad result cursor `{shown}`: {why} (expected `<seconds>.<nanoseconds>_<id>`)"
            ))
        };
        let (time, id) = token.split_once('_').ok_or_else(|| bad("no `_`"))?;
        let (seconds, nanos) = time
            .split_once('.')
            .ok_or_else(|| bad("no `.` in the time"))?;
        if nanos.len() != 9 || !nanos.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("the nanoseconds are not 9 digits"));
        }
        let seconds: i64 = seconds
            .parse()
            .map_err(|_| bad("the seconds are not a number"))?;
        let nanos: u32 = nanos.parse().map_err(|_| bad("bad nanoseconds"))?;
        let id: i64 = id.parse().map_err(|_| bad("the id is not a number"))?;
        let date_done =
            DateTime::from_timestamp(seconds, nanos).ok_or_else(|| bad("time out of range"))?;
        Ok(ResultCursor { date_done, id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_to_the_nanosecond() {
        for (seconds, nanos, id) in [
            (0, 0, 1),
            (1_790_000_000, 123_456_789, 987_654_321),
            (1_790_000_000, 1, i64::MAX),
            (-86_400, 500_000_000, 7),
        ] {
            let cursor = ResultCursor {
                date_done: DateTime::from_timestamp(seconds, nanos).unwrap(),
                id,
            };
            let token = cursor.to_token();
            assert!(token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
            assert_eq!(ResultCursor::from_token(&token).unwrap(), cursor, "{token}");
        }
    }

    #[test]
    fn garbage_tokens_are_clear_errors() {
        for token in [
            "",
            "garbage",
            "12_34",
            "12.34_5",
            "12.000000000",
            "x.000000000_5",
            "12.000000000_x",
            "12.00000000a_5",
            "99999999999999999.000000000_5",
            "12.000000000_5_6",
        ] {
            let error = ResultCursor::from_token(token).unwrap_err();
            assert!(
                error.to_string().contains("bad result cursor"),
                "{token}: {error}"
            );
        }
    }
}
