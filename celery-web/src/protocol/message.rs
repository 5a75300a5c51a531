//! The decoded message: headers, properties and body.

use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The headers of a protocol-v2 task message (`as_task_v2` in Celery).
///
/// Unknown headers (Python merges any `headers=` option here, for example
/// `periodic_task_name`) are kept in [`Headers::extra`] and survive a round trip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Headers {
    /// Producer language; `"py"` from Python, `"rs"` from us.
    #[serde(default = "default_lang")]
    pub lang: String,
    /// Registered task name: the dispatch key.
    pub task: String,
    /// Task id (a UUID in practice); equals the `correlation_id` property.
    pub id: String,
    /// Display name override.
    #[serde(default)]
    pub shadow: Option<String>,
    /// Earliest execution time, ISO-8601.
    #[serde(default, with = "iso_time")]
    pub eta: Option<DateTime<FixedOffset>>,
    /// Expiry time, ISO-8601: a message received after it is REVOKED, not run.
    #[serde(default, with = "iso_time")]
    pub expires: Option<DateTime<FixedOffset>>,
    /// Group id when the task is part of a group.
    #[serde(default)]
    pub group: Option<String>,
    /// Position within the group.
    #[serde(default)]
    pub group_index: Option<i64>,
    /// How many times this task has been retried.
    #[serde(default)]
    pub retries: u32,
    /// `[hard, soft]` time limits in seconds (Celery's code order, not its docs').
    #[serde(default = "no_time_limits")]
    pub timelimit: (Option<f64>, Option<f64>),
    /// Id of the first task of the workflow.
    #[serde(default)]
    pub root_id: Option<String>,
    /// Id of the task that sent this one.
    #[serde(default)]
    pub parent_id: Option<String>,
    /// Printable arguments, for logs and monitoring.
    #[serde(default)]
    pub argsrepr: Option<String>,
    /// Printable keyword arguments.
    #[serde(default)]
    pub kwargsrepr: Option<String>,
    /// `gen<pid>@<hostname>` of the producer.
    #[serde(default)]
    pub origin: Option<String>,
    /// Whether the worker should skip storing the result.
    #[serde(default)]
    pub ignore_result: bool,
    /// Every other header, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn default_lang() -> String {
    "py".to_owned()
}

fn no_time_limits() -> (Option<f64>, Option<f64>) {
    (None, None)
}

/// Routing facts kombu keeps in `properties.delivery_info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct DeliveryInfo {
    /// Exchange name; `""` is the default direct exchange.
    #[serde(default)]
    pub exchange: String,
    /// Routing key: the queue name for the default exchange.
    #[serde(default)]
    pub routing_key: String,
}

/// AMQP-style message properties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Properties {
    /// Task id.
    pub correlation_id: String,
    /// Reply queue of the producer (used only by the `rpc://` backend).
    #[serde(default)]
    pub reply_to: Option<String>,
    /// 2 = persistent.
    #[serde(default = "persistent")]
    pub delivery_mode: u8,
    /// Where the message is routed.
    #[serde(default)]
    pub delivery_info: DeliveryInfo,
    /// 0 to 9.
    #[serde(default)]
    pub priority: u8,
    /// How the body is encoded inside the envelope; kombu uses `"base64"`.
    #[serde(default = "base64_encoding")]
    pub body_encoding: String,
    /// Transport-specific delivery tag (kombu: a fresh UUID per publish).
    #[serde(default)]
    pub delivery_tag: Option<String>,
    /// Per-message TTL in milliseconds as a string (RabbitMQ honours it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<String>,
}

fn persistent() -> u8 {
    2
}

fn base64_encoding() -> String {
    "base64".to_owned()
}

/// The third element of the body: workflow links.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Embed {
    /// Signatures called with the result on success.
    #[serde(default)]
    pub callbacks: Option<Vec<Value>>,
    /// Signatures called on failure.
    #[serde(default)]
    pub errbacks: Option<Vec<Value>>,
    /// Remaining chain, last element next.
    #[serde(default)]
    pub chain: Option<Vec<Value>>,
    /// Chord body.
    #[serde(default)]
    pub chord: Option<Value>,
}

/// One task invocation, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Protocol headers.
    pub headers: Headers,
    /// Message properties.
    pub properties: Properties,
    /// Positional arguments.
    pub args: Vec<Value>,
    /// Keyword arguments.
    pub kwargs: Map<String, Value>,
    /// Workflow links.
    pub embed: Embed,
}

impl Message {
    /// A message for `task` with a fresh id, routed to the `celery` queue.
    pub fn new(task: &str, args: Vec<Value>, kwargs: Map<String, Value>) -> Self {
        let id = uuid::Uuid::new_v4().to_string();
        let argsrepr = python_repr_args(&args);
        let kwargsrepr = python_repr_kwargs(&kwargs);
        Message {
            headers: Headers {
                lang: "rs".to_owned(),
                task: task.to_owned(),
                id: id.clone(),
                shadow: None,
                eta: None,
                expires: None,
                group: None,
                group_index: None,
                retries: 0,
                timelimit: (None, None),
                root_id: Some(id.clone()),
                parent_id: None,
                argsrepr: Some(argsrepr),
                kwargsrepr: Some(kwargsrepr),
                origin: Some(origin()),
                ignore_result: false,
                extra: Map::new(),
            },
            properties: Properties {
                correlation_id: id,
                reply_to: None,
                delivery_mode: 2,
                delivery_info: DeliveryInfo {
                    exchange: String::new(),
                    routing_key: "celery".to_owned(),
                },
                priority: 0,
                body_encoding: base64_encoding(),
                delivery_tag: None,
                expiration: None,
            },
            args,
            kwargs,
            embed: Embed::default(),
        }
    }

    /// Routes the message to `queue`.
    pub fn with_queue(mut self, queue: &str) -> Self {
        queue.clone_into(&mut self.properties.delivery_info.routing_key);
        self
    }

    /// Replaces the task id (keeping `root_id` in step when it was the id).
    pub fn with_id(mut self, id: &str) -> Self {
        if self.headers.root_id.as_deref() == Some(self.headers.id.as_str()) {
            self.headers.root_id = Some(id.to_owned());
        }
        id.clone_into(&mut self.headers.id);
        id.clone_into(&mut self.properties.correlation_id);
        self
    }

    /// Task id.
    pub fn id(&self) -> &str {
        &self.headers.id
    }

    /// Task name.
    pub fn task(&self) -> &str {
        &self.headers.task
    }

    /// The queue the message is routed to (the routing key of the default exchange).
    pub fn queue(&self) -> &str {
        &self.properties.delivery_info.routing_key
    }

    /// Earliest execution time in UTC, if any.
    pub fn eta(&self) -> Option<DateTime<Utc>> {
        self.headers.eta.map(|t| t.with_timezone(&Utc))
    }

    /// Expiry time in UTC, if any.
    pub fn expires(&self) -> Option<DateTime<Utc>> {
        self.headers.expires.map(|t| t.with_timezone(&Utc))
    }

    /// Whether the message expired at `now`.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires().is_some_and(|expires| expires <= now)
    }

    /// A header outside the standard set (for example `periodic_task_name`) as a string.
    pub fn extra_header(&self, name: &str) -> Option<&str> {
        self.headers.extra.get(name).and_then(Value::as_str)
    }
}

/// `gen<pid>@<hostname>`, Celery's anonymous node name. Worked out once per process: every
/// message carries it, and asking the kernel each time cost two system calls per message.
pub(crate) fn origin() -> String {
    static ORIGIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ORIGIN
        .get_or_init(|| {
            format!(
                "gen{}@{}",
                std::process::id(),
                gethostname::gethostname().to_string_lossy()
            )
        })
        .clone()
}

/// A Python-like `repr` of positional arguments, truncated as Celery's `saferepr` does.
fn python_repr_args(args: &[Value]) -> String {
    let items: Vec<String> = args.iter().map(python_repr).collect();
    let repr = if items.len() == 1 {
        format!("({},)", items[0])
    } else {
        format!("({})", items.join(", "))
    };
    truncate_repr(repr)
}

fn python_repr_kwargs(kwargs: &Map<String, Value>) -> String {
    truncate_repr(python_repr(&Value::Object(kwargs.clone())))
}

fn truncate_repr(mut repr: String) -> String {
    const MAX: usize = 1024;
    if repr.len() > MAX {
        let mut cut = MAX;
        while !repr.is_char_boundary(cut) {
            cut -= 1;
        }
        repr.truncate(cut);
        repr.push_str("...");
    }
    repr
}

fn python_repr(value: &Value) -> String {
    match value {
        Value::Null => "None".to_owned(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(python_repr).collect();
            format!("[{}]", inner.join(", "))
        }
        Value::Object(map) => {
            let inner: Vec<String> = map
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}: {}",
                        python_repr(&Value::String(k.clone())),
                        python_repr(v)
                    )
                })
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
    }
}

/// ISO-8601 times as Python writes them: with or without fraction, with or without offset
/// (naive values are read as UTC).
/// Parses an ISO-8601 time as Celery writes it (aware, or naive meaning UTC).
#[cfg(feature = "amqp")]
pub(crate) fn parse_iso_time(text: &str) -> Result<DateTime<FixedOffset>, String> {
    iso_time::parse(text)
}

mod iso_time {
    use chrono::{DateTime, FixedOffset, NaiveDateTime, SecondsFormat};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &Option<DateTime<FixedOffset>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(t) => serializer.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Micros, false)),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<DateTime<FixedOffset>>, D::Error> {
        let Some(text) = Option::<String>::deserialize(deserializer)? else {
            return Ok(None);
        };
        parse(&text).map(Some).map_err(serde::de::Error::custom)
    }

    pub(crate) fn parse(text: &str) -> Result<DateTime<FixedOffset>, String> {
        if let Ok(t) = DateTime::parse_from_rfc3339(text) {
            return Ok(t);
        }
        NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
            .map(|naive| naive.and_utc().fixed_offset())
            .map_err(|_| format!("`{text}` is not an ISO-8601 time"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn repr_matches_python() {
        assert_eq!(python_repr_args(&[json!(4), json!(3)]), "(4, 3)");
        assert_eq!(python_repr_args(&[json!("a")]), "('a',)");
        assert_eq!(python_repr_args(&[]), "()");
        assert_eq!(
            python_repr_args(&[json!(null), json!(true), json!([1, "x"])]),
            "(None, True, [1, 'x'])"
        );
    }

    #[test]
    fn naive_and_fractionless_times_parse() {
        let t = iso_time::parse("2026-08-22T10:15:30").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-08-22T10:15:30+00:00");
        let t = iso_time::parse("2026-08-22T10:15:30.123456+02:00").unwrap();
        assert_eq!(t.offset().local_minus_utc(), 7200);
        assert!(iso_time::parse("yesterday").is_err());
    }
}
