//! Remote-control requests (kombu's pidbox), as Celery's `app.control` sends them:
//! body `{"method", "arguments", "destination", "pattern", "matcher", "ticket", "reply_to"}`,
//! headers `{"clock", "expires"}`. Requests are untrusted: [`Request::decode`] checks every
//! field and never panics.

use serde_json::{Map, Value};

use crate::protocol::Envelope;

/// Where a reply goes (`reply_to`): the reply exchange and the caller's routing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTo {
    /// `reply.celery.pidbox`.
    pub exchange: String,
    /// The caller's oid.
    pub routing_key: String,
}

/// One decoded request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The command (`ping`, `revoke`, ...).
    pub method: String,
    /// Its arguments.
    pub arguments: Map<String, Value>,
    /// The nodes it is for; `None` is every node.
    pub destination: Option<Vec<String>>,
    /// A node-name pattern, with `matcher` (`glob`, the default, or `pcre`).
    pub pattern: Option<String>,
    /// How `pattern` matches.
    pub matcher: Option<String>,
    /// Matches replies to the call; present when a reply is wanted.
    pub ticket: Option<String>,
    /// Where to reply; present when a reply is wanted.
    pub reply_to: Option<ReplyTo>,
    /// The sender's Lamport clock.
    pub clock: Option<u64>,
}

/// Why a request was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The body could not be read as JSON.
    #[error("request body: {0}")]
    Body(String),
    /// A field is missing or of the wrong type.
    #[error("request field `{0}` is missing or malformed")]
    Field(&'static str),
}

fn optional_string(
    body: &Map<String, Value>,
    key: &'static str,
) -> Result<Option<String>, RequestError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(RequestError::Field(key)),
    }
}

impl Request {
    /// Reads a request from its envelope.
    pub fn decode(envelope: &Envelope) -> Result<Self, RequestError> {
        let body = envelope
            .json_body()
            .map_err(|e| RequestError::Body(e.to_string()))?;
        let Value::Object(body) = body else {
            return Err(RequestError::Field("method"));
        };
        let method = match body.get("method") {
            Some(Value::String(method)) if !method.is_empty() => method.clone(),
            _ => return Err(RequestError::Field("method")),
        };
        let arguments = match body.get("arguments") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(arguments)) => arguments.clone(),
            Some(_) => return Err(RequestError::Field("arguments")),
        };
        let destination = match body.get("destination") {
            None | Some(Value::Null) => None,
            Some(Value::String(node)) => Some(vec![node.clone()]),
            Some(Value::Array(nodes)) => Some(
                nodes
                    .iter()
                    .map(|n| n.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .ok_or(RequestError::Field("destination"))?,
            ),
            Some(_) => return Err(RequestError::Field("destination")),
        };
        let reply_to = match body.get("reply_to") {
            None | Some(Value::Null) => None,
            Some(Value::Object(reply)) => {
                let field = |key| reply.get(key).and_then(Value::as_str).map(str::to_owned);
                Some(ReplyTo {
                    exchange: field("exchange").ok_or(RequestError::Field("reply_to"))?,
                    routing_key: field("routing_key").ok_or(RequestError::Field("reply_to"))?,
                })
            }
            Some(_) => return Err(RequestError::Field("reply_to")),
        };
        let clock = envelope.headers.get("clock").and_then(|c| {
            c.as_u64().or_else(|| {
                c.as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0)
                    .map(|f| f as u64)
            })
        });
        Ok(Request {
            method,
            arguments,
            destination: destination.filter(|nodes| !nodes.is_empty()),
            pattern: optional_string(&body, "pattern")?,
            matcher: optional_string(&body, "matcher")?,
            ticket: optional_string(&body, "ticket")?,
            reply_to,
            clock,
        })
    }

    /// Whether node `hostname` runs this request: it is in `destination`; else `pattern`
    /// matches (glob; `pcre` patterns are matched as globs of their literal text); else
    /// every node does (kombu's `Node.handle_message`).
    pub fn is_for(&self, hostname: &str) -> bool {
        if let Some(nodes) = &self.destination {
            return nodes.iter().any(|node| node == hostname);
        }
        if let Some(pattern) = &self.pattern {
            return glob_matches(pattern, hostname);
        }
        true
    }

    /// The request's envelope (what `app.control` publishes), for senders.
    pub fn encode(&self) -> Envelope {
        let mut body = Map::new();
        body.insert("method".into(), self.method.clone().into());
        body.insert("arguments".into(), Value::Object(self.arguments.clone()));
        body.insert(
            "destination".into(),
            self.destination.clone().map_or(Value::Null, Value::from),
        );
        body.insert("pattern".into(), self.pattern.clone().into());
        body.insert("matcher".into(), self.matcher.clone().into());
        if let Some(ticket) = &self.ticket {
            body.insert("ticket".into(), ticket.clone().into());
        }
        if let Some(reply) = &self.reply_to {
            body.insert(
                "reply_to".into(),
                serde_json::json!({"exchange": reply.exchange, "routing_key": reply.routing_key}),
            );
        }
        let mut headers = Map::new();
        headers.insert("clock".into(), self.clock.unwrap_or(0).into());
        headers.insert("expires".into(), (crate::events::timestamp() + 10.0).into());
        let mut envelope =
            Envelope::with_json_body(&Value::Object(body), headers, super::PIDBOX, "");
        envelope.properties.insert("delivery_mode".into(), 2.into());
        envelope
    }
}

/// Shell-style `*`, `?` matching (fnmatch without character classes).
pub(crate) fn glob_matches(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope(body: Value) -> Envelope {
        Envelope::with_json_body(
            &body,
            json!({"clock": 3}).as_object().unwrap().clone(),
            "celery.pidbox",
            "",
        )
    }

    #[test]
    fn celery_requests_decode() {
        let request = Request::decode(&envelope(json!({
            "method": "ping", "arguments": {}, "destination": ["a@h", "b@h"],
            "pattern": null, "matcher": null, "ticket": "t",
            "reply_to": {"exchange": "reply.celery.pidbox", "routing_key": "oid"}
        })))
        .unwrap();
        assert_eq!(request.method, "ping");
        assert!(request.is_for("b@h") && !request.is_for("c@h"));
        assert_eq!(request.reply_to.unwrap().routing_key, "oid");
        assert_eq!(request.clock, Some(3));
        let round = Request::decode(
            &Request::decode(&envelope(json!({"method": "x"})))
                .unwrap()
                .encode(),
        )
        .unwrap();
        assert_eq!(round.method, "x");
    }

    #[test]
    fn malformed_requests_are_errors() {
        for body in [
            json!([]),
            json!({"method": 1}),
            json!({"method": "p", "arguments": []}),
            json!({"method": "p", "destination": [1]}),
            json!({"method": "p", "reply_to": "x"}),
        ] {
            assert!(Request::decode(&envelope(body.clone())).is_err(), "{body}");
        }
    }

    #[test]
    fn globs_match_node_names() {
        assert!(glob_matches("w*@host", "w1@host"));
        assert!(glob_matches("*", ""));
        assert!(glob_matches("w?@*", "w1@h"));
        assert!(!glob_matches("w?@h", "w12@h"));
    }
}
