//! The task events a worker sends (Celery's `task-*` events, with the fields Flower and
//! `celery events` read), built from the message being run.

use serde_json::Value;

use crate::events::{args_repr, py_repr, truncated, Dispatcher};
use crate::protocol::Message;

fn iso(time: Option<chrono::DateTime<chrono::FixedOffset>>) -> Value {
    time.map_or(Value::Null, |t| Value::from(t.to_rfc3339()))
}

/// `task-received`: name, args and kwargs (reprs), root and parent, retries, eta, expires.
pub(crate) fn received(events: &Dispatcher, message: &Message) {
    if !events.task_events() {
        return;
    }
    let headers = &message.headers;
    let args = headers
        .argsrepr
        .clone()
        .unwrap_or_else(|| args_repr(&message.args));
    let kwargs = headers
        .kwargsrepr
        .clone()
        .unwrap_or_else(|| py_repr(&Value::Object(message.kwargs.clone())));
    events.task(
        "task-received",
        &[
            ("uuid", message.id().into()),
            ("name", message.task().into()),
            ("args", args.into()),
            ("kwargs", kwargs.into()),
            ("root_id", headers.root_id.clone().into()),
            ("parent_id", headers.parent_id.clone().into()),
            ("retries", headers.retries.into()),
            ("eta", iso(headers.eta)),
            ("expires", iso(headers.expires)),
        ],
    );
}

/// `task-started`.
pub(crate) fn started(events: &Dispatcher, id: &str) {
    events.task("task-started", &[("uuid", id.into())]);
}

/// `task-succeeded`: the result's repr, the runtime in seconds.
pub(crate) fn succeeded(events: &Dispatcher, id: &str, result: &Value, runtime: f64) {
    if !events.task_events() {
        return;
    }
    events.task(
        "task-succeeded",
        &[
            ("uuid", id.into()),
            ("result", truncated(py_repr(result)).into()),
            ("runtime", runtime.into()),
        ],
    );
}

/// `task-failed` / `task-retried`: the exception's repr (`ValueError('nope')`) and traceback.
pub(crate) fn failed(
    events: &Dispatcher,
    event_type: &str,
    id: &str,
    exc_type: &str,
    message: &str,
    traceback: Option<&str>,
) {
    if !events.task_events() {
        return;
    }
    let exception = format!("{exc_type}({})", py_repr(&Value::from(message)));
    events.task(
        event_type,
        &[
            ("uuid", id.into()),
            ("exception", truncated(exception).into()),
            ("traceback", traceback.into()),
        ],
    );
}

/// `task-rejected`.
pub(crate) fn rejected(events: &Dispatcher, id: &str, requeue: bool) {
    events.task(
        "task-rejected",
        &[("uuid", id.into()), ("requeue", requeue.into())],
    );
}

/// `task-revoked`: why (`expired`, or `terminated` with its signal).
pub(crate) fn revoked(events: &Dispatcher, id: &str, terminated: bool, expired: bool) {
    let signum = if terminated {
        Value::from(15)
    } else {
        Value::Null
    };
    events.task(
        "task-revoked",
        &[
            ("uuid", id.into()),
            ("terminated", terminated.into()),
            ("signum", signum),
            ("expired", expired.into()),
        ],
    );
}
