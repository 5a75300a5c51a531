//! The transport envelope: kombu's JSON document with a base64 body.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::message::{Embed, Headers, Message, Properties};

const JSON: &str = "application/json";

/// Why a message could not be decoded. The worker keeps such messages for inspection.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The envelope is not a JSON object of kombu's shape.
    #[error("envelope is not valid JSON: {0}")]
    EnvelopeNotJson(String),
    /// The body is serialized with something other than JSON (pickle, yaml, msgpack).
    #[error("unsupported content type `{0}`: only application/json is accepted")]
    UnsupportedContentType(String),
    /// `body_encoding` names an encoding we do not read.
    #[error("unsupported body encoding `{0}`")]
    UnsupportedBodyEncoding(String),
    /// The body is not valid base64.
    #[error("body is not valid base64: {0}")]
    BadBase64(String),
    /// The body is not JSON, or not `[args, kwargs, embed]`.
    #[error("body is not [args, kwargs, embed]: {0}")]
    BadBody(String),
    /// A header every protocol-v2 message carries is missing or of the wrong type.
    #[error("bad or missing header: {0}")]
    BadHeaders(String),
    /// A protocol-v1 message (no `task` header): not supported.
    #[error("protocol v1 message (no `task` header); only protocol v2 is supported")]
    ProtocolV1,
}

/// The JSON document a broker stores: kombu's envelope, byte-compatible with what Python
/// Celery puts in Redis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The body, encoded per `properties.body_encoding` (base64).
    pub body: String,
    /// `utf-8` for JSON bodies.
    #[serde(rename = "content-encoding")]
    pub content_encoding: String,
    /// `application/json`.
    #[serde(rename = "content-type")]
    pub content_type: String,
    /// Protocol headers, raw.
    pub headers: Map<String, Value>,
    /// Message properties, raw.
    pub properties: Map<String, Value>,
}

impl Envelope {
    /// Builds the envelope of `message`, with a fresh delivery tag.
    pub fn from_message(message: &Message) -> Result<Self, ProtocolError> {
        let body = serde_json::to_vec(&(&message.args, &message.kwargs, &message.embed))
            .map_err(|e| ProtocolError::BadBody(e.to_string()))?;
        let headers = to_object(&message.headers).map_err(ProtocolError::BadHeaders)?;
        let mut properties = to_object(&message.properties).map_err(ProtocolError::BadHeaders)?;
        properties.insert(
            "delivery_tag".to_owned(),
            Value::String(uuid::Uuid::new_v4().to_string()),
        );
        Ok(Envelope {
            body: base64::engine::general_purpose::STANDARD.encode(body),
            content_encoding: "utf-8".to_owned(),
            content_type: JSON.to_owned(),
            headers,
            properties,
        })
    }

    /// The envelope of a non-task message (an event, a remote-control request or reply):
    /// `body` as JSON, base64-encoded as kombu does; `headers` as given; kombu's properties
    /// for a transient message sent to `exchange` with `routing_key`.
    ///
    /// ```
    /// use celery_web::protocol::Envelope;
    /// use serde_json::json;
    ///
    /// let event = json!({"type": "worker-heartbeat", "hostname": "w1@host"});
    /// let envelope = Envelope::with_json_body(
    ///     &event,
    ///     json!({"hostname": "w1@host"}).as_object().unwrap().clone(),
    ///     "celeryev",
    ///     "worker.heartbeat",
    /// );
    /// assert_eq!(envelope.json_body()?, event);
    /// assert_eq!(envelope.properties["delivery_info"]["routing_key"], "worker.heartbeat");
    /// # Ok::<(), celery_web::protocol::ProtocolError>(())
    /// ```
    pub fn with_json_body(
        body: &Value,
        headers: Map<String, Value>,
        exchange: &str,
        routing_key: &str,
    ) -> Self {
        Envelope::with_json_text(body.to_string().as_bytes(), headers, exchange, routing_key)
    }

    /// Like [`with_json_body`](Self::with_json_body), for a body already serialized as JSON
    /// (`json` is not checked).
    pub fn with_json_text(
        json: &[u8],
        headers: Map<String, Value>,
        exchange: &str,
        routing_key: &str,
    ) -> Self {
        let properties: Map<String, Value> = [
            ("delivery_mode", Value::from(1)),
            (
                "delivery_info",
                serde_json::json!({"exchange": exchange, "routing_key": routing_key}),
            ),
            ("priority", Value::from(0)),
            ("body_encoding", Value::from("base64")),
            (
                "delivery_tag",
                Value::from(uuid::Uuid::new_v4().to_string()),
            ),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect();
        Envelope {
            body: base64::engine::general_purpose::STANDARD.encode(json),
            content_encoding: "utf-8".to_owned(),
            content_type: JSON.to_owned(),
            headers,
            properties,
        }
    }

    /// The body of a non-task message as JSON (events, remote control), decoded per its
    /// `body_encoding`; only `application/json` bodies are read.
    pub fn json_body(&self) -> Result<Value, ProtocolError> {
        let raw = self.json_text()?;
        serde_json::from_slice(&raw).map_err(|e| ProtocolError::BadBody(e.to_string()))
    }

    /// The body of a non-task message decoded per its `body_encoding`, not parsed: JSON
    /// text, unchecked. Only `application/json` bodies are read.
    pub fn json_text(&self) -> Result<Vec<u8>, ProtocolError> {
        let content_type = self.content_type.trim();
        if !content_type.eq_ignore_ascii_case(JSON) {
            return Err(ProtocolError::UnsupportedContentType(
                content_type.to_owned(),
            ));
        }
        let encoding = self
            .properties
            .get("body_encoding")
            .and_then(Value::as_str)
            .unwrap_or("");
        let raw = match encoding {
            "base64" => base64::engine::general_purpose::STANDARD
                .decode(self.body.trim())
                .map_err(|e| ProtocolError::BadBase64(e.to_string()))?,
            "utf-8" | "" => self.body.clone().into_bytes(),
            other => return Err(ProtocolError::UnsupportedBodyEncoding(other.to_owned())),
        };
        Ok(raw)
    }

    /// Parses an envelope from its JSON bytes.
    pub fn decode(raw: &[u8]) -> Result<Self, ProtocolError> {
        serde_json::from_slice(raw).map_err(|e| ProtocolError::EnvelopeNotJson(e.to_string()))
    }

    /// The envelope as one line of JSON.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("an envelope of JSON values always serializes")
    }

    /// The delivery tag kombu assigned at publish time.
    pub fn delivery_tag(&self) -> Option<&str> {
        self.properties.get("delivery_tag").and_then(Value::as_str)
    }
}

impl Message {
    /// Decodes and validates an envelope. Every failure is a [`ProtocolError`]; nothing panics.
    /// (`Message::try_from(envelope)` does the same without copying the envelope's maps.)
    pub fn from_envelope(envelope: &Envelope) -> Result<Self, ProtocolError> {
        Message::try_from(envelope.clone())
    }
}

impl TryFrom<Envelope> for Message {
    type Error = ProtocolError;

    /// [`Message::from_envelope`], consuming the envelope (the worker's path: no copies).
    fn try_from(envelope: Envelope) -> Result<Self, ProtocolError> {
        if !envelope.headers.contains_key("task") {
            return Err(ProtocolError::ProtocolV1);
        }
        let content_type = envelope.content_type.trim();
        if !content_type.eq_ignore_ascii_case(JSON) {
            return Err(ProtocolError::UnsupportedContentType(
                content_type.to_owned(),
            ));
        }
        let headers: Headers = serde_json::from_value(Value::Object(envelope.headers))
            .map_err(|e| ProtocolError::BadHeaders(e.to_string()))?;
        let properties: Properties = serde_json::from_value(Value::Object(envelope.properties))
            .map_err(|e| ProtocolError::BadHeaders(format!("properties: {e}")))?;
        let body = match properties.body_encoding.as_str() {
            "base64" => base64::engine::general_purpose::STANDARD
                .decode(envelope.body.trim())
                .map_err(|e| ProtocolError::BadBase64(e.to_string()))?,
            "utf-8" | "" => envelope.body.into_bytes(),
            other => return Err(ProtocolError::UnsupportedBodyEncoding(other.to_owned())),
        };
        let (args, kwargs, embed) = decode_body(&body)?;
        Ok(Message {
            headers,
            properties,
            args,
            kwargs,
            embed,
        })
    }
}

/// `(args, kwargs, embed)`.
type Body = (Vec<Value>, Map<String, Value>, Embed);

fn decode_body(body: &[u8]) -> Result<Body, ProtocolError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ProtocolError::BadBody(e.to_string()))?;
    let Value::Array(mut parts) = value else {
        return Err(ProtocolError::BadBody("expected a JSON array".to_owned()));
    };
    if parts.len() < 2 || parts.len() > 3 {
        return Err(ProtocolError::BadBody(format!(
            "expected 3 elements, found {}",
            parts.len()
        )));
    }
    let embed = match parts.get(2) {
        Some(Value::Null) | None => Embed::default(),
        Some(value) => serde_json::from_value(value.clone())
            .map_err(|e| ProtocolError::BadBody(format!("embed: {e}")))?,
    };
    parts.truncate(2);
    let kwargs = match parts.pop() {
        Some(Value::Object(map)) => map,
        Some(Value::Null) => Map::new(),
        _ => {
            return Err(ProtocolError::BadBody(
                "kwargs must be an object".to_owned(),
            ))
        }
    };
    let args = match parts.pop() {
        Some(Value::Array(items)) => items,
        Some(Value::Null) => Vec::new(),
        _ => return Err(ProtocolError::BadBody("args must be a list".to_owned())),
    };
    Ok((args, kwargs, embed))
}

fn to_object<T: Serialize>(value: &T) -> Result<Map<String, Value>, String> {
    match serde_json::to_value(value) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("not an object".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The envelope Celery 5.2 put in Redis for `tobedone(4, 3)` (celery-protocol.md §2.4).
    const PYTHON_CAPTURE: &str = r#"{"body": "W1s0LCAzXSwge30sIHsiY2FsbGJhY2tzIjogbnVsbCwgImVycmJhY2tzIjogbnVsbCwgImNoYWluIjogbnVsbCwgImNob3JkIjogbnVsbH1d", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"lang": "py", "task": "tobedone", "id": "d0bc737e-e5fe-4ca1-b6ee-1ab5e78e85a9", "shadow": null, "eta": null, "expires": null, "group": null, "retries": 0, "timelimit": [null, null], "root_id": "d0bc737e-e5fe-4ca1-b6ee-1ab5e78e85a9", "parent_id": null, "argsrepr": "(4, 3)", "kwargsrepr": "{}", "origin": "gen9645@macbook.local"}, "properties": {"correlation_id": "d0bc737e-e5fe-4ca1-b6ee-1ab5e78e85a9", "reply_to": "5afc8388-8624-3c0b-90f3-ba3c5c2c38d3", "delivery_mode": 2, "delivery_info": {"exchange": "", "routing_key": "celery"}, "priority": 0, "body_encoding": "base64", "delivery_tag": "02294572-2692-4176-a505-208d515e0105"}}"#;

    #[test]
    fn decodes_a_python_message() {
        let envelope = Envelope::decode(PYTHON_CAPTURE.as_bytes()).unwrap();
        let message = Message::from_envelope(&envelope).unwrap();
        assert_eq!(message.task(), "tobedone");
        assert_eq!(message.args, vec![json!(4), json!(3)]);
        assert!(message.kwargs.is_empty());
        assert_eq!(message.queue(), "celery");
        assert_eq!(message.headers.lang, "py");
        assert_eq!(
            envelope.delivery_tag(),
            Some("02294572-2692-4176-a505-208d515e0105")
        );
    }

    #[test]
    fn round_trip_keeps_everything() {
        let mut message = Message::new("a.b", vec![json!("x")], Map::new()).with_queue("q");
        message
            .headers
            .extra
            .insert("periodic_task_name".into(), json!("nightly"));
        // Python keeps microseconds; so does the wire.
        let now = chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 6);
        message.headers.eta = Some(now.fixed_offset());
        message.headers.timelimit = (Some(10.0), Some(5.0));
        let wire = Envelope::from_message(&message).unwrap().encode();
        let back = Message::from_envelope(&Envelope::decode(wire.as_bytes()).unwrap()).unwrap();
        let mut expected = message.clone();
        expected.properties.delivery_tag = back.properties.delivery_tag.clone();
        assert_eq!(back, expected);
        assert_eq!(back.extra_header("periodic_task_name"), Some("nightly"));
        // timelimit travels as [hard, soft]
        assert!(wire.contains(r#""timelimit":[10.0,5.0]"#));
    }

    fn decode_error(raw: &str) -> ProtocolError {
        Envelope::decode(raw.as_bytes())
            .and_then(|e| Message::from_envelope(&e))
            .unwrap_err()
    }

    fn with(field: &str, value: Value) -> String {
        let mut envelope: Value = serde_json::from_str(PYTHON_CAPTURE).unwrap();
        let (object, key) = field.split_once('.').unwrap_or(("", field));
        if object.is_empty() {
            envelope[key] = value;
        } else {
            envelope[object][key] = value;
        }
        envelope.to_string()
    }

    #[test]
    fn malformed_input_is_named() {
        assert!(matches!(
            decode_error("not json"),
            ProtocolError::EnvelopeNotJson(_)
        ));
        assert!(matches!(
            decode_error(&with("body", json!("@@@"))),
            ProtocolError::BadBase64(_)
        ));
        assert!(matches!(
            decode_error(&with(
                "content-type",
                json!("application/x-python-serialize")
            )),
            ProtocolError::UnsupportedContentType(_)
        ));
        assert!(matches!(
            decode_error(&with("headers.id", json!(17))),
            ProtocolError::BadHeaders(_)
        ));
        let mut no_task: Value = serde_json::from_str(PYTHON_CAPTURE).unwrap();
        no_task["headers"].as_object_mut().unwrap().remove("task");
        assert_eq!(
            decode_error(&no_task.to_string()),
            ProtocolError::ProtocolV1
        );
        let body = base64::engine::general_purpose::STANDARD.encode(r#"{"args": 1}"#);
        assert!(matches!(
            decode_error(&with("body", json!(body))),
            ProtocolError::BadBody(_)
        ));
        let body = base64::engine::general_purpose::STANDARD.encode(r#"[1, {}, null]"#);
        assert!(matches!(
            decode_error(&with("body", json!(body))),
            ProtocolError::BadBody(_)
        ));
    }
}
