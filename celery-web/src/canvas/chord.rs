//! Chords: each header task reports its part to the result backend when it ends (any
//! state); the backend's join tells the one worker that stored the last part to fire the
//! body (Celery's `on_chord_part_return`).
//!
//! The body gets the header's results in `group_index` order, or, when a member failed or
//! was revoked, Celery's `ChordError("Dependency <id> raised <Exc>('<message>')")` stored as
//! its FAILURE.

use serde_json::{json, Value};

use crate::backend::TaskRecord;
use crate::protocol::Message;
use crate::task::State;

/// One finished header task of a chord.
#[derive(Debug, Clone, PartialEq)]
pub struct ChordPart {
    /// The header's group id (the message's `group` header).
    pub group_id: String,
    /// Position in the header (`group_index`); `None` sorts last, as in Celery.
    pub group_index: Option<i64>,
    /// The header task's id.
    pub task_id: String,
    /// The header task's root id.
    pub root_id: String,
    /// How it ended.
    pub state: State,
    /// Its return value, or Celery's exception dict when it failed.
    pub result: Value,
    /// The chord body's signature dict (the message's `embed.chord`).
    pub body: Value,
}

/// A chord whose last part was just stored: its body must be sent (or failed) now.
#[derive(Debug, Clone, PartialEq)]
pub struct ChordReady {
    /// The part that completed the chord (the body's parent).
    pub last: ChordPart,
    /// The header's results in order, or the `ChordError` message.
    pub results: Result<Vec<Value>, String>,
}

impl ChordPart {
    /// The part `message` plays in a chord, if it is a chord header task that ended with
    /// `record` (SUCCESS, FAILURE or REVOKED).
    pub(crate) fn of(message: &Message, record: &TaskRecord) -> Option<ChordPart> {
        let body = message.embed.chord.as_ref().filter(|c| !c.is_null())?;
        let group_id = message.headers.group.clone()?;
        if !record.status.is_ready() {
            return None;
        }
        Some(ChordPart {
            group_id,
            group_index: message.headers.group_index,
            task_id: message.id().to_owned(),
            root_id: message
                .headers
                .root_id
                .clone()
                .unwrap_or_else(|| message.id().to_owned()),
            state: record.status,
            result: record.result.clone().unwrap_or(Value::Null),
            body: body.clone(),
        })
    }

    /// The id the body's result is stored under (`options.task_id` of its signature).
    pub fn body_id(&self) -> Option<&str> {
        self.body
            .pointer("/options/task_id")
            .and_then(Value::as_str)
    }
}

/// The error of a member that sinks the chord, as Celery's `_unpack_chord_result` words
/// it: `Dependency <id> raised ValueError('boom')`; `None` for a member that succeeded.
pub fn dependency_error(task_id: &str, state: &str, result: &Value) -> Option<String> {
    if state != State::Failure.as_str() && state != State::Revoked.as_str() {
        return None;
    }
    let exc_type = result
        .get("exc_type")
        .and_then(Value::as_str)
        .unwrap_or(state);
    let arguments = match result.get("exc_message") {
        Some(Value::Array(parts)) => parts.iter().map(python_repr).collect::<Vec<_>>(),
        Some(Value::Null) | None => Vec::new(),
        Some(one) => vec![python_repr(one)],
    };
    Some(format!(
        "Dependency {task_id} raised {exc_type}({})",
        arguments.join(", ")
    ))
}

/// Celery's `ChordError` exception dict with `message`.
pub fn chord_error(message: &str) -> Value {
    json!({"exc_type": "ChordError", "exc_message": [message], "exc_module": "celery.exceptions"})
}

fn python_repr(value: &Value) -> String {
    match value {
        Value::String(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        Value::Null => "None".to_owned(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_member_is_worded_as_celery_words_it() {
        let result =
            json!({"exc_type": "ValueError", "exc_message": ["boom 1"], "exc_module": "builtins"});
        assert_eq!(
            dependency_error("49c2", "FAILURE", &result).as_deref(),
            Some("Dependency 49c2 raised ValueError('boom 1')")
        );
        assert_eq!(dependency_error("49c2", "SUCCESS", &json!(3)), None);
    }
}
