//! Task states, with Celery's names and meaning.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The state of a task as the result backend knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    /// Unknown to the backend: waiting, or never sent, or forgotten.
    Pending,
    /// A worker took the message.
    Received,
    /// Running (recorded only with `task_track_started`).
    Started,
    /// Finished and returned a value.
    Success,
    /// Finished with an error, or lost its arguments, or was not registered.
    Failure,
    /// Failed and will run again.
    Retry,
    /// Cancelled or expired before it ran.
    Revoked,
}

impl State {
    /// Every state, in lifecycle order.
    pub const ALL: [State; 7] = [
        State::Pending,
        State::Received,
        State::Started,
        State::Success,
        State::Failure,
        State::Retry,
        State::Revoked,
    ];

    /// The state's name as Celery writes it (`"SUCCESS"`).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "PENDING",
            State::Received => "RECEIVED",
            State::Started => "STARTED",
            State::Success => "SUCCESS",
            State::Failure => "FAILURE",
            State::Retry => "RETRY",
            State::Revoked => "REVOKED",
        }
    }

    /// SUCCESS, FAILURE and REVOKED: the task will not change any more.
    pub fn is_ready(self) -> bool {
        matches!(self, State::Success | State::Failure | State::Revoked)
    }

    /// FAILURE and REVOKED: `get` raises.
    pub fn propagates(self) -> bool {
        matches!(self, State::Failure | State::Revoked)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        State::ALL
            .into_iter()
            .find(|state| state.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown task state `{s}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for state in State::ALL {
            assert_eq!(state.as_str().parse::<State>().unwrap(), state);
        }
        assert!("DONE".parse::<State>().is_err());
        assert!(State::Revoked.is_ready() && !State::Retry.is_ready());
    }
}
