//! The messages a worker sends when a task ends, from the workflow links of its message
//! (Celery 5.5's `celery/app/trace.py` and `backends/base.py`):
//!
//! - after SUCCESS: each `link` callback is called with the result prepended (several
//!   callbacks go out as one group), then the chain's next link, `chain[-1]`, is sent with
//!   the result prepended and `chain[:-1]` as its own chain; an immutable signature keeps
//!   its arguments as they are;
//! - after FAILURE: each `link_error` errback is sent with the failed task's id prepended
//!   (Celery's old-style calling convention, which is what a worker uses for errbacks it
//!   cannot call in-process, and the only one that crosses languages), and the FAILURE is
//!   stored for every remaining chain link that has a task id, as Celery does, so a
//!   caller waiting on the chain's last result is not left waiting.
//!
//! Each follow-up has `parent_id` = the finished task and `root_id` = its root.
//!
//! ```
//! use celery_web::canvas::follow_ups::messages_for;
//! use celery_web::{Celery, Settings};
//! use serde_json::json;
//!
//! let app = Celery::from_settings(Settings { broker_url: "memory://".into(), ..Settings::default() })?;
//! let next = json!({"task": "proj.add", "args": [3], "kwargs": {}, "options": {"task_id": "t2"},
//!                   "subtask_type": null, "immutable": false});
//! let messages = messages_for(&app, &next, Some(&json!(3)), Some(("t1", "t1")), Some(vec![]))?;
//! assert_eq!(messages[0].args, vec![json!(3), json!(3)]);
//! assert_eq!(messages[0].id(), "t2");
//! assert_eq!(messages[0].headers.parent_id.as_deref(), Some("t1"));
//! assert_eq!(messages[0].embed.chain, Some(vec![]));
//! # Ok::<(), celery_web::Error>(())
//! ```

use serde_json::{Map, Value};

use crate::backend::TaskRecord;
use crate::protocol::Message;
use crate::task::{Signature, State};
use crate::{Celery, Error, Result};

/// What the worker adds after `message` ended with `record`: follow-up messages go into
/// `follow_ups`; the chain FAILUREs and the chord part come back, if any.
pub(crate) fn after_task(
    app: &Celery,
    message: &Message,
    record: &TaskRecord,
    follow_ups: &mut Vec<Message>,
) -> Option<Box<crate::worker::completer::Workflow>> {
    let mut records = Vec::new();
    match record.status {
        State::Success => follow_ups.extend(after_success(
            app,
            message,
            record.result.as_ref().unwrap_or(&Value::Null),
        )),
        State::Failure => {
            let (errbacks, failed) = after_failure(app, message, record);
            follow_ups.extend(errbacks);
            records = failed;
        }
        _ => {}
    }
    let chord = crate::canvas::ChordPart::of(message, record);
    (chord.is_some() || !records.is_empty())
        .then(|| Box::new(crate::worker::completer::Workflow { records, chord }))
}

/// The messages to send after `message` succeeded with `result`. A signature that cannot
/// be turned into a message is logged and skipped (it would fail the same way again).
pub(crate) fn after_success(app: &Celery, message: &Message, result: &Value) -> Vec<Message> {
    let parent = (message.id(), root_of(message));
    let mut out = Vec::new();
    if let Some(callbacks) = message.embed.callbacks.as_deref().filter(|c| !c.is_empty()) {
        out.extend(grouped(app, callbacks, result, parent, message));
    }
    if let Some(chain) = message.embed.chain.as_ref().filter(|c| !c.is_empty()) {
        let mut rest = chain.clone();
        let next = rest.pop().expect("the chain is not empty");
        match messages_for(app, &next, Some(result), Some(parent), Some(rest)) {
            Ok(messages) => out.extend(messages),
            Err(e) => bad_link(message, "the chain's next link", &e),
        }
    }
    out
}

/// The errback messages to send and the FAILURE records to store for the rest of the
/// chain after `message` failed; `failure` is its FAILURE record.
pub(crate) fn after_failure(
    app: &Celery,
    message: &Message,
    failure: &TaskRecord,
) -> (Vec<Message>, Vec<TaskRecord>) {
    let parent = (message.id(), root_of(message));
    let task_id = Value::String(message.id().to_owned());
    let mut out = Vec::new();
    if let Some(errbacks) = message.embed.errbacks.as_deref().filter(|e| !e.is_empty()) {
        out.extend(grouped(app, errbacks, &task_id, parent, message));
    }
    let mut records = Vec::new();
    for link in message.embed.chain.iter().flatten() {
        if let Some(id) = link
            .pointer("/options/task_id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
        {
            let mut record = TaskRecord::new(id, State::Failure);
            record.result.clone_from(&failure.result);
            record.traceback.clone_from(&failure.traceback);
            record.task_name = link.get("task").and_then(Value::as_str).map(str::to_owned);
            records.push(record);
        }
    }
    (out, records)
}

/// Celery calls one callback on its own and several as one group (a fresh group id).
fn grouped(
    app: &Celery,
    signatures: &[Value],
    argument: &Value,
    parent: (&str, &str),
    message: &Message,
) -> Vec<Message> {
    let group_id = (signatures.len() > 1).then(|| uuid::Uuid::new_v4().to_string());
    let mut out = Vec::new();
    for (index, signature) in signatures.iter().enumerate() {
        match messages_for(app, signature, Some(argument), Some(parent), None) {
            Ok(messages) => {
                for mut sent in messages {
                    if let Some(group_id) = &group_id {
                        if sent.headers.group.is_none() {
                            sent.headers.group = Some(group_id.clone());
                            sent.headers.group_index = i64::try_from(index).ok();
                        }
                    }
                    out.push(sent);
                }
            }
            Err(e) => bad_link(message, "a link", &e),
        }
    }
    out
}

fn bad_link(message: &Message, what: &str, error: &Error) {
    tracing::error!(
        task_id = %message.id(),
        "{what} of this task cannot be sent and is dropped: {error}"
    );
}

fn root_of(message: &Message) -> &str {
    message.headers.root_id.as_deref().unwrap_or(message.id())
}

/// The messages that call the signature dict `signature` (a task, a `chain` or a `group`),
/// with `prepend` put before its arguments unless it is immutable, as sent by the task
/// `parent` (`(id, root_id)`; `None`: from outside any task). `chain` is the rest of the
/// chain the first message carries on (`None` when it is not part of a chain).
///
/// Routing (queue, priority) follows the app's settings, as `app.send_task` would, unless
/// the signature's options name them.
pub fn messages_for(
    app: &Celery,
    signature: &Value,
    prepend: Option<&Value>,
    parent: Option<(&str, &str)>,
    chain: Option<Vec<Value>>,
) -> Result<Vec<Message>> {
    let invalid = |reason: String| Error::Arguments {
        task: signature
            .get("task")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned(),
        reason,
    };
    let object = signature
        .as_object()
        .ok_or_else(|| invalid(format!("a signature is a JSON object, got {signature}")))?;
    let empty = Map::new();
    let options = object
        .get("options")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let immutable = object
        .get("immutable")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let prepend = prepend.filter(|_| !immutable);
    let members = || {
        object
            .get("kwargs")
            .and_then(|k| k.get("tasks"))
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("its kwargs have no `tasks` list".to_owned()))
    };
    match object.get("subtask_type").and_then(Value::as_str) {
        None | Some("") => {}
        Some("chain") => {
            let tasks = members()?;
            let Some((first, rest)) = tasks.split_first() else {
                return Ok(Vec::new());
            };
            let mut carried = chain.unwrap_or_default();
            carried.extend(rest.iter().rev().cloned());
            return messages_for(app, first, prepend, parent, Some(carried));
        }
        Some("group") => {
            if chain.as_ref().is_some_and(|c| !c.is_empty()) {
                return Err(invalid(
                    "a group followed by more chain links is a chord; not supported here"
                        .to_owned(),
                ));
            }
            let group_id = options
                .get("task_id")
                .and_then(Value::as_str)
                .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
            let mut out = Vec::new();
            for (index, member) in members()?.iter().enumerate() {
                for mut sent in messages_for(app, member, prepend, parent, None)? {
                    sent.headers.group = Some(group_id.clone());
                    sent.headers.group_index = i64::try_from(index).ok();
                    out.push(sent);
                }
            }
            return Ok(out);
        }
        Some(other) => {
            return Err(invalid(format!(
                "signatures of type `{other}` are not supported as workflow links yet"
            )))
        }
    }
    let task = object
        .get("task")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("it has no `task` name".to_owned()))?;
    let mut args = match object.get("args") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(args)) => args.clone(),
        Some(other) => return Err(invalid(format!("`args` must be a list, got {other}"))),
    };
    let kwargs = match object.get("kwargs") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(kwargs)) => kwargs.clone(),
        Some(other) => return Err(invalid(format!("`kwargs` must be a dict, got {other}"))),
    };
    if let Some(value) = prepend {
        args.insert(0, value.clone());
    }
    let mut call = Signature::new(task).with_arguments(args, kwargs);
    if let Some(id) = options.get("task_id").and_then(Value::as_str) {
        call = call.task_id(id);
    }
    if let Some(queue) = options.get("queue").and_then(Value::as_str) {
        call = call.queue(queue);
    }
    if let Some(priority) = options.get("priority").and_then(Value::as_u64) {
        call = call.priority(u8::try_from(priority).unwrap_or(u8::MAX));
    }
    if let Some(seconds) = options.get("countdown").and_then(Value::as_f64) {
        call = call.countdown(seconds);
    }
    if let Some(seconds) = options.get("time_limit").and_then(Value::as_f64) {
        call = call.time_limit(seconds);
    }
    if let Some(seconds) = options.get("soft_time_limit").and_then(Value::as_f64) {
        call = call.soft_time_limit(seconds);
    }
    let mut message = app.message_for(&call)?;
    message.properties.reply_to = options
        .get("reply_to")
        .and_then(Value::as_str)
        .map(str::to_owned);
    message.embed.callbacks = signature_list(options.get("link"));
    message.embed.errbacks = signature_list(options.get("link_error"));
    message.embed.chord = options.get("chord").filter(|c| !c.is_null()).cloned();
    message.embed.chain = chain;
    if let Some(group) = options.get("group_id").and_then(Value::as_str) {
        message.headers.group = Some(group.to_owned());
        message.headers.group_index = options.get("group_index").and_then(Value::as_i64);
    }
    if let Some((parent_id, root_id)) = parent {
        message.headers.parent_id = Some(parent_id.to_owned());
        message.headers.root_id = Some(root_id.to_owned());
    }
    Ok(vec![message])
}

/// `link` / `link_error` options: Python keeps one signature or a list of them.
fn signature_list(value: Option<&Value>) -> Option<Vec<Value>> {
    match value? {
        Value::Null => None,
        Value::Array(list) => Some(list.clone()),
        one => Some(vec![one.clone()]),
    }
}
