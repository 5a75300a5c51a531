//! What the broker must know of a claimed message without decoding it: its eta, whether kombu
//! marked it redelivered, its priority; and the priority rewritten in place (kombu's meaning to
//! celery-web's) without re-encoding the envelope.

use std::borrow::Cow;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;

/// The fields of an envelope the broker reads. Everything else is skipped unparsed.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Probe<'a> {
    #[serde(borrow, default)]
    headers: ProbeHeaders<'a>,
    #[serde(default)]
    properties: ProbeProperties,
}

#[derive(Debug, Default, Deserialize)]
struct ProbeHeaders<'a> {
    #[serde(borrow, default)]
    eta: Option<Cow<'a, str>>,
    #[serde(default)]
    redelivered: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
struct ProbeProperties {
    #[serde(default)]
    priority: Option<i64>,
    #[serde(default)]
    delivery_info: Option<ProbeDeliveryInfo>,
}

#[derive(Debug, Default, Deserialize)]
struct ProbeDeliveryInfo {
    #[serde(default)]
    redelivered: Option<bool>,
}

impl<'a> Probe<'a> {
    /// Reads `payload`; `None` when it is not an envelope of kombu's shape (the worker then
    /// decodes it, fails and keeps it aside).
    pub(super) fn read(payload: &'a [u8]) -> Option<Self> {
        serde_json::from_slice(payload).ok()
    }

    /// The eta header, when there is one and it parses (naive times are UTC).
    pub(super) fn eta(&self) -> Option<DateTime<Utc>> {
        let text = self.headers.eta.as_deref()?;
        if let Ok(eta) = DateTime::parse_from_rfc3339(text) {
            return Some(eta.with_timezone(&Utc));
        }
        NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
            .ok()
            .map(|naive| naive.and_utc())
    }

    /// Whether kombu restored the message (`headers.redelivered` or
    /// `properties.delivery_info.redelivered`).
    pub(super) fn redelivered(&self) -> bool {
        self.headers.redelivered == Some(true)
            || self
                .properties
                .delivery_info
                .as_ref()
                .and_then(|info| info.redelivered)
                == Some(true)
    }

    /// `properties.priority` as written (kombu's meaning on Redis), when present.
    pub(super) fn priority(&self) -> Option<i64> {
        self.properties.priority
    }
}

/// `payload` with its `properties.priority` number replaced by `priority`, or `None` when the
/// envelope is not laid out as expected (then the caller re-encodes it).
///
/// kombu and celery-web both write `properties` as the envelope's last key, so the last
/// `"priority":` key in the text is the property; the number found there must be the one the
/// probe read, or nothing is changed.
pub(super) fn with_priority(payload: &[u8], read: i64, priority: u8) -> Option<Vec<u8>> {
    const KEY: &[u8] = b"\"priority\":";
    let key_at = payload.windows(KEY.len()).rposition(|w| w == KEY)?;
    let mut start = key_at + KEY.len();
    while payload.get(start).is_some_and(u8::is_ascii_whitespace) {
        start += 1;
    }
    let mut end = start;
    if payload.get(end) == Some(&b'-') {
        end += 1;
    }
    while payload.get(end).is_some_and(u8::is_ascii_digit) {
        end += 1;
    }
    let found: i64 = std::str::from_utf8(&payload[start..end])
        .ok()?
        .parse()
        .ok()?;
    if found != read {
        return None;
    }
    let mut patched = Vec::with_capacity(payload.len());
    patched.extend_from_slice(&payload[..start]);
    patched.push(b'0' + priority.min(9));
    patched.extend_from_slice(&payload[end..]);
    Some(patched)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PYTHON: &str = r#"{"body": "W10=", "headers": {"task": "t", "priority": 3, "eta": "2026-08-22T10:15:30.123456+00:00", "redelivered": true}, "properties": {"correlation_id": "x", "delivery_info": {"exchange": "", "routing_key": "celery"}, "priority": 7, "body_encoding": "base64", "delivery_tag": "d"}}"#;

    #[test]
    fn reads_what_the_broker_needs() {
        let probe = Probe::read(PYTHON.as_bytes()).unwrap();
        assert_eq!(probe.priority(), Some(7));
        assert!(probe.redelivered());
        assert_eq!(
            probe.eta().unwrap().to_rfc3339(),
            "2026-08-22T10:15:30.123456+00:00"
        );
        let naive = Probe::read(br#"{"headers": {"eta": "2026-08-22T10:15:30"}}"#).unwrap();
        assert_eq!(
            naive.eta().unwrap().to_rfc3339(),
            "2026-08-22T10:15:30+00:00"
        );
        assert!(!naive.redelivered());
        assert_eq!(naive.priority(), None);
        assert!(Probe::read(b"not json").is_none());
    }

    #[test]
    fn rewrites_the_property_not_a_header() {
        let patched = with_priority(PYTHON.as_bytes(), 7, 2).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&patched).unwrap();
        assert_eq!(value["properties"]["priority"], 2);
        assert_eq!(value["headers"]["priority"], 3);
        let compact = br#"{"headers":{},"properties":{"priority":12}}"#;
        let patched = with_priority(compact, 12, 0).unwrap();
        assert_eq!(patched, br#"{"headers":{},"properties":{"priority":0}}"#);
        // Not the number the probe read: left to the caller.
        assert!(with_priority(PYTHON.as_bytes(), 3, 2).is_none());
        assert!(with_priority(br#"{"properties": {}}"#, 0, 9).is_none());
    }
}
