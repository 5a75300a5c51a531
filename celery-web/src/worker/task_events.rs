//! The task events a worker sends (Celery's `task-*` events, with the fields Flower and
//! `celery events` read), built from the message being run.

use serde_json::{json, Map, Value};

use crate::events::{args_repr, py_repr, truncated, Dispatcher};
use crate::protocol::Message;

fn fields(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

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
        fields(json!({
            "uuid": message.id(),
            "name": message.task(),
            "args": args,
            "kwargs": kwargs,
            "root_id": headers.root_id,
            "parent_id": headers.parent_id,
            "retries": headers.retries,
            "eta": iso(headers.eta),
            "expires": iso(headers.expires),
        })),
    );
}

/// `task-started`.
pub(crate) fn started(events: &Dispatcher, id: &str) {
    events.task("task-started", fields(json!({"uuid": id})));
}

/// `task-succeeded`: the result's repr, the runtime in seconds.
pub(crate) fn succeeded(events: &Dispatcher, id: &str, result: &Value, runtime: f64) {
    if !events.task_events() {
        return;
    }
    events.task(
        "task-succeeded",
        fields(json!({"uuid": id, "result": truncated(py_repr(result)), "runtime": runtime})),
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
        fields(json!({"uuid": id, "exception": truncated(exception), "traceback": traceback})),
    );
}

/// `task-rejected`.
pub(crate) fn rejected(events: &Dispatcher, id: &str, requeue: bool) {
    events.task(
        "task-rejected",
        fields(json!({"uuid": id, "requeue": requeue})),
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
        fields(json!({"uuid": id, "terminated": terminated, "signum": signum, "expired": expired})),
    );
}
