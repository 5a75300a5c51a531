//! Celery's events: what Flower, `celery events` and `celery status`-style monitors read.
//!
//! A worker sends them on the `celeryev` exchange (on Redis the pub/sub channels
//! `/{db}.celeryev/<routing key>`, on RabbitMQ a durable topic exchange), with the routing
//! key of the event type (`worker-heartbeat` → `worker.heartbeat`), headers
//! `{"hostname": <node>}` and a JSON body, exactly as Celery 5.5 does:
//!
//! - `worker-online`, `worker-heartbeat` (every 2 s, `freq` 2.0) and `worker-offline`, always
//!   (Flower lists workers from these alone);
//! - with `-E` / `worker_send_task_events` (or after a remote `enable_events`, which Flower
//!   sends every 5 s) the task events `task-received`, `task-started`, `task-succeeded`,
//!   `task-failed`, `task-retried`, `task-revoked` and `task-rejected`, buffered and published
//!   as JSON **lists** on routing key `task.multi`, up to 24 per message, as Celery's worker
//!   does;
//! - `task-sent` from the sender with `task_send_sent_event`.
//!
//! Every event has Celery's standard fields: `type`, `hostname`, `clock` (Lamport),
//! `timestamp` (UNIX seconds), `utcoffset` (hours **west** of UTC, Python's
//! `time.timezone // 3600`) and `pid`. [`decode_events`] reads what others send (a single
//! event or a list), as Celery's receiver does.

mod dispatcher;
mod heart;
mod repr;
mod state;

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value};

pub(crate) use dispatcher::{Dispatcher, Flusher};
pub(crate) use heart::Heart;
pub(crate) use repr::truncated;
pub use repr::{args_repr, py_repr};
pub use state::{State, TaskState, WorkerState};

use crate::broker::Exchange;
use crate::protocol::Envelope;

/// The events exchange (`event_exchange`): a topic exchange, which kombu turns into
/// pub/sub channels on Redis.
pub fn exchange() -> Exchange {
    Exchange::topic("celeryev")
}

/// The routing key of an event type: `task-succeeded` → `task.succeeded`.
///
/// ```
/// assert_eq!(celery_web::events::routing_key("worker-heartbeat"), "worker.heartbeat");
/// ```
pub fn routing_key(event_type: &str) -> String {
    event_type.replace('-', ".")
}

/// A Lamport clock, as Celery keeps one per app: every event and remote-control message
/// carries it, and a received value moves it forward.
#[derive(Debug, Default)]
pub struct Clock(AtomicU64);

impl Clock {
    /// The next value (`forward`).
    pub fn forward(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The current value, unchanged.
    pub fn value(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Moves past a value received from another node (`adjust`): `max(own, other) + 1`.
    pub fn adjust(&self, other: u64) -> u64 {
        let mut current = self.0.load(Ordering::Relaxed);
        loop {
            let next = current.max(other).saturating_add(1);
            match self
                .0
                .compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(seen) => current = seen,
            }
        }
    }
}

/// Hours west of UTC, as Python's `time.timezone // 3600` (`time.altzone` under DST): a
/// host at UTC+2 says −2.
pub fn utcoffset() -> i64 {
    let east = i64::from(chrono::Local::now().offset().local_minus_utc());
    (-east).div_euclid(3600)
}

/// [`utcoffset`] looked up at most once a minute: a busy worker sends thousands of task
/// events a second, and the local time zone is not worth looking up for each.
fn recent_utcoffset() -> i64 {
    use std::sync::atomic::AtomicI64;
    static OFFSET: AtomicI64 = AtomicI64::new(0);
    static UNTIL: AtomicI64 = AtomicI64::new(i64::MIN);
    let now = chrono::Utc::now().timestamp();
    if now < UNTIL.load(Ordering::Relaxed) {
        return OFFSET.load(Ordering::Relaxed);
    }
    let offset = utcoffset();
    OFFSET.store(offset, Ordering::Relaxed);
    UNTIL.store(now + 60, Ordering::Relaxed);
    offset
}

/// Now as UNIX seconds with microseconds (`time.time()`).
pub fn timestamp() -> f64 {
    chrono::Utc::now().timestamp_micros() as f64 / 1e6
}

/// The 1, 5 and 15 minute load averages rounded **up** to two decimals, as Celery's
/// `load_average()`; zeros where the system does not say.
pub fn loadavg() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut out = [0.0; 3];
    for (slot, field) in out.iter_mut().zip(text.split_whitespace()) {
        if let Ok(value) = field.parse::<f64>() {
            *slot = (value * 100.0).ceil() / 100.0;
        }
    }
    out
}

/// One event with Celery's standard fields added to `fields`: `hostname`, `utcoffset`,
/// `pid`, `clock`, `timestamp`, `type`.
pub fn event(event_type: &str, hostname: &str, clock: u64, fields: Map<String, Value>) -> Value {
    let mut body = Map::new();
    body.insert("hostname".into(), hostname.into());
    body.insert("utcoffset".into(), utcoffset().into());
    body.insert("pid".into(), std::process::id().into());
    body.insert("clock".into(), clock.into());
    body.extend(fields);
    body.entry("timestamp")
        .or_insert_with(|| timestamp().into());
    body.insert("type".into(), event_type.into());
    Value::Object(body)
}

/// Writes one event as JSON to `out`, as [`event`] builds it, without building a map: what
/// the worker does for every task event.
///
/// ```
/// use serde_json::Value;
///
/// let mut out = Vec::new();
/// celery_web::events::write_event(&mut out, "task-started", "w@h", 3, &[("uuid", "a".into())]);
/// let event: Value = serde_json::from_slice(&out)?;
/// assert_eq!((&event["type"], &event["uuid"], &event["clock"]), (&"task-started".into(), &"a".into(), &3.into()));
/// # Ok::<(), serde_json::Error>(())
/// ```
pub fn write_event(
    out: &mut Vec<u8>,
    event_type: &str,
    hostname: &str,
    clock: u64,
    fields: &[(&str, Value)],
) {
    use std::io::Write as _;
    out.extend_from_slice(b"{\"hostname\":");
    json(out, hostname);
    let _ = write!(
        out,
        ",\"utcoffset\":{},\"pid\":{},\"clock\":{clock},\"timestamp\":",
        recent_utcoffset(),
        std::process::id()
    );
    json(out, &timestamp());
    out.extend_from_slice(b",\"type\":");
    json(out, event_type);
    for (key, value) in fields {
        out.push(b',');
        json(out, key);
        out.push(b':');
        json(out, value);
    }
    out.push(b'}');
}

/// Appends `value` as JSON (strings escaped).
fn json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    serde_json::to_writer(out, value).expect("JSON into memory cannot fail");
}

/// The envelope Celery sends an event (or a list of events) in: headers `{"hostname"}`,
/// transient, on `celeryev` with `routing_key`.
pub fn envelope(body: &Value, hostname: &str, routing_key: &str) -> Envelope {
    envelope_of_text(body.to_string().as_bytes(), hostname, routing_key)
}

/// [`envelope`] for events already written as JSON text.
pub(crate) fn envelope_of_text(json: &[u8], hostname: &str, routing_key: &str) -> Envelope {
    let mut headers = Map::new();
    headers.insert("hostname".into(), hostname.into());
    Envelope::with_json_text(json, headers, &exchange().name, routing_key)
}

/// Why a received event was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The envelope's body is not JSON (or not base64, or not `application/json`).
    #[error("event body: {0}")]
    Body(String),
    /// The body is neither an event object nor a list of them.
    #[error("event is not an object or a list of objects")]
    NotAnEvent,
    /// An event has no string `type`.
    #[error("event without a `type`")]
    NoType,
}

/// The events in a received envelope: one object, or a list of them (`task.multi`).
/// Untrusted input: anything else is an [`EventError`], never a panic.
///
/// ```
/// use celery_web::events::{decode_events, envelope};
/// use serde_json::json;
///
/// let sent = json!([{"type": "task-started", "uuid": "a"}, {"type": "task-succeeded", "uuid": "a"}]);
/// let events = decode_events(&envelope(&sent, "w@h", "task.multi")).unwrap();
/// assert_eq!(events.len(), 2);
/// assert_eq!(events[1]["type"], "task-succeeded");
/// ```
pub fn decode_events(envelope: &Envelope) -> Result<Vec<Map<String, Value>>, EventError> {
    let body = envelope
        .json_body()
        .map_err(|e| EventError::Body(e.to_string()))?;
    let items = match body {
        Value::Array(items) => items,
        object @ Value::Object(_) => vec![object],
        _ => return Err(EventError::NotAnEvent),
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::Object(map) if map.get("type").is_some_and(Value::is_string) => Ok(map),
            Value::Object(_) => Err(EventError::NoType),
            _ => Err(EventError::NotAnEvent),
        })
        .collect()
}

/// The clock of this process's senders (`task-sent` events, remote-control clients).
pub(crate) fn process_clock() -> &'static Clock {
    static CLOCK: std::sync::OnceLock<Clock> = std::sync::OnceLock::new();
    CLOCK.get_or_init(Clock::default)
}

/// Celery's `anon_nodename()`: `gen<pid>@<host>`, the hostname of a sender's events.
pub(crate) fn anonymous_nodename() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    format!("gen{}@{host}", std::process::id())
}

/// Sends a `task-sent` event per message (`task_send_sent_event`), as Celery's producer
/// does after publishing: a failure to send is logged, never the sender's error.
pub(crate) async fn announce_sent(app: &crate::Celery, messages: &[crate::protocol::Message]) {
    let Some(broadcast) = app.broker().broadcast() else {
        return;
    };
    let hostname = anonymous_nodename();
    let exchange = exchange();
    for message in messages {
        let headers = &message.headers;
        let iso = |t: Option<chrono::DateTime<chrono::FixedOffset>>| {
            t.map_or(Value::Null, |t| Value::from(t.to_rfc3339()))
        };
        let info = &message.properties.delivery_info;
        let fields = serde_json::json!({
            "uuid": message.id(),
            "root_id": headers.root_id,
            "parent_id": headers.parent_id,
            "name": message.task(),
            "args": headers.argsrepr.clone().unwrap_or_else(|| args_repr(&message.args)),
            "kwargs": headers.kwargsrepr.clone().unwrap_or_else(|| py_repr(&Value::Object(message.kwargs.clone()))),
            "retries": headers.retries,
            "eta": iso(headers.eta),
            "expires": iso(headers.expires),
            "queue": message.queue(),
            "exchange": info.exchange,
            "routing_key": info.routing_key,
        });
        let Value::Object(fields) = fields else {
            continue;
        };
        let body = event("task-sent", &hostname, process_clock().forward(), fields);
        let envelope = envelope(&body, &hostname, "task.sent");
        if let Err(error) = broadcast.send(&exchange, "task.sent", &envelope).await {
            tracing::warn!(%error, task_id = message.id(), "could not send the task-sent event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_move_past_what_they_receive() {
        let clock = Clock::default();
        assert_eq!(clock.forward(), 1);
        assert_eq!(clock.adjust(10), 11);
        assert_eq!(clock.adjust(3), 12);
        assert_eq!(clock.value(), 12);
    }

    #[test]
    fn written_events_are_built_events() {
        let fields = [("uuid", Value::from("a\"b")), ("runtime", Value::from(0.5))];
        let mut out = Vec::new();
        write_event(&mut out, "task-succeeded", "w\u{e9}@h", 9, &fields);
        let written: Value = serde_json::from_slice(&out).unwrap();
        let built = event(
            "task-succeeded",
            "w\u{e9}@h",
            9,
            fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        );
        let without_time = |mut v: Value| {
            v.as_object_mut().unwrap().remove("timestamp");
            v
        };
        assert_eq!(without_time(written), without_time(built));
    }

    #[test]
    fn events_carry_the_standard_fields() {
        let body = event("worker-heartbeat", "w@h", 7, Map::new());
        for key in ["hostname", "utcoffset", "pid", "clock", "timestamp", "type"] {
            assert!(body.get(key).is_some(), "{key} in {body}");
        }
        assert_eq!(body["clock"], 7);
        let loads = loadavg();
        assert!(loads.iter().all(|l| *l >= 0.0));
    }
}
