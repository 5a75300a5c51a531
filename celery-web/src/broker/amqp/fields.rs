//! AMQP field tables to and from JSON, and a task message to and from AMQP's headers,
//! properties and body.
//!
//! On AMQP a Celery message is a raw JSON body `[args, kwargs, embed]`; the protocol headers
//! travel in the `headers` property as a field table and the rest in basic properties
//! (`content_type`, `content_encoding`, `delivery_mode`, `priority`, `correlation_id`,
//! `reply_to`, `expiration`). py-amqp writes strings as `S`, integers as `I` or `L`, `None`
//! as `V`, dates as `T`; RabbitMQ adds `x-death` (arrays of tables with timestamps). Every
//! type decodes; what JSON has no word for becomes the nearest JSON value (timestamps are
//! seconds since the epoch, byte arrays lossy text, decimals numbers).

use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use serde_json::{Map, Number, Value};

use crate::protocol::{Envelope, Message, ProtocolError};

/// A JSON value as an AMQP field value (as py-amqp would write it: integers as 32- or 64-bit
/// signed, `null` as void).
pub(crate) fn to_amqp(value: &Value) -> Result<AMQPValue, ProtocolError> {
    Ok(match value {
        Value::Null => AMQPValue::Void,
        Value::Bool(b) => AMQPValue::Boolean(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                match i32::try_from(i) {
                    Ok(small) => AMQPValue::LongInt(small),
                    Err(_) => AMQPValue::LongLongInt(i),
                }
            } else {
                // Above i64::MAX or a float: AMQP has no unsigned 64-bit type.
                AMQPValue::Double(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => AMQPValue::LongString(LongString::from(s.as_str())),
        Value::Array(items) => AMQPValue::FieldArray(FieldArray::from(
            items.iter().map(to_amqp).collect::<Result<Vec<_>, _>>()?,
        )),
        Value::Object(map) => AMQPValue::FieldTable(to_table(map)?),
    })
}

/// A JSON object as a field table; keys longer than 255 bytes cannot be sent.
pub(crate) fn to_table(map: &Map<String, Value>) -> Result<FieldTable, ProtocolError> {
    let mut table = FieldTable::default();
    for (key, value) in map {
        let name = ShortString::try_new(key.as_str()).map_err(|_| {
            ProtocolError::BadHeaders(format!(
                "header name of {} bytes: AMQP allows 255",
                key.len()
            ))
        })?;
        table.insert(name, to_amqp(value)?);
    }
    Ok(table)
}

/// An AMQP field value as JSON.
pub(crate) fn to_json(value: &AMQPValue) -> Value {
    match value {
        AMQPValue::Boolean(b) => Value::Bool(*b),
        AMQPValue::ShortShortInt(i) => Value::from(*i),
        AMQPValue::ShortShortUInt(i) => Value::from(*i),
        AMQPValue::ShortInt(i) => Value::from(*i),
        AMQPValue::ShortUInt(i) => Value::from(*i),
        AMQPValue::LongInt(i) => Value::from(*i),
        AMQPValue::LongUInt(i) => Value::from(*i),
        AMQPValue::LongLongInt(i) => Value::from(*i),
        AMQPValue::Float(f) => float(f64::from(*f)),
        AMQPValue::Double(f) => float(*f),
        AMQPValue::DecimalValue(d) => float(f64::from(d.value) / 10f64.powi(i32::from(d.scale))),
        AMQPValue::ShortString(s) => Value::String(s.as_str().to_owned()),
        AMQPValue::LongString(s) => Value::String(String::from_utf8_lossy(s.as_bytes()).into()),
        AMQPValue::FieldArray(items) => {
            Value::Array(items.as_slice().iter().map(to_json).collect())
        }
        AMQPValue::Timestamp(t) => Value::from(*t),
        AMQPValue::FieldTable(table) => Value::Object(from_table(table)),
        AMQPValue::ByteArray(bytes) => {
            Value::String(String::from_utf8_lossy(bytes.as_slice()).into_owned())
        }
        AMQPValue::Void => Value::Null,
    }
}

/// NaN and infinities have no JSON form: null.
fn float(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// A field table as a JSON object.
pub(crate) fn from_table(table: &FieldTable) -> Map<String, Value> {
    table
        .inner()
        .iter()
        .map(|(key, value)| (key.as_str().to_owned(), to_json(value)))
        .collect()
}

/// A task message as AMQP: the raw JSON body and Celery's properties (no `message_id`,
/// `timestamp`, `type` or `app_id`, as Celery). `expiration` is the message's, or the time
/// left until `expires` when it has none, unless `delayed` (a per-message TTL inside the
/// delay queues would dead-letter it to the wrong level).
pub(crate) fn to_amqp_message(
    message: &Message,
    delayed: bool,
) -> Result<(Vec<u8>, BasicProperties), ProtocolError> {
    let body = serde_json::to_vec(&(&message.args, &message.kwargs, &message.embed))
        .map_err(|e| ProtocolError::BadBody(e.to_string()))?;
    let headers = match serde_json::to_value(&message.headers) {
        Ok(Value::Object(map)) => to_table(&map)?,
        Ok(_) => {
            return Err(ProtocolError::BadHeaders(
                "headers are not an object".into(),
            ))
        }
        Err(e) => return Err(ProtocolError::BadHeaders(e.to_string())),
    };
    let properties = &message.properties;
    let mut amqp = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("utf-8".into())
        .with_delivery_mode(properties.delivery_mode)
        .with_priority(properties.priority)
        .with_correlation_id(
            ShortString::try_new(properties.correlation_id.as_str()).map_err(|_| {
                ProtocolError::BadHeaders("correlation_id longer than 255 bytes".into())
            })?,
        )
        .with_headers(headers);
    if let Some(reply_to) = &properties.reply_to {
        if let Ok(reply_to) = ShortString::try_new(reply_to.as_str()) {
            amqp = amqp.with_reply_to(reply_to);
        }
    }
    let expiration = properties.expiration.clone().or_else(|| {
        let left = message.expires()? - chrono::Utc::now();
        Some(left.num_milliseconds().max(0).to_string())
    });
    if let (Some(expiration), false) = (expiration, delayed) {
        if let Ok(expiration) = ShortString::try_new(expiration) {
            amqp = amqp.with_expiration(expiration);
        }
    }
    Ok((body, amqp))
}

/// `properties` without `expiration` (a per-message TTL inside the delay queues, or in a
/// dead-letter queue, would drop the message) and without `user_id` (RabbitMQ refuses one
/// that is not the publishing connection's user).
pub(crate) fn without_expiration(properties: &BasicProperties) -> BasicProperties {
    let mut copy = BasicProperties::default();
    if let Some(v) = properties.content_type() {
        copy = copy.with_content_type(v.clone());
    }
    if let Some(v) = properties.content_encoding() {
        copy = copy.with_content_encoding(v.clone());
    }
    if let Some(v) = properties.headers() {
        copy = copy.with_headers(v.clone());
    }
    if let Some(v) = properties.delivery_mode() {
        copy = copy.with_delivery_mode(*v);
    }
    if let Some(v) = properties.priority() {
        copy = copy.with_priority(*v);
    }
    if let Some(v) = properties.correlation_id() {
        copy = copy.with_correlation_id(v.clone());
    }
    if let Some(v) = properties.reply_to() {
        copy = copy.with_reply_to(v.clone());
    }
    if let Some(v) = properties.message_id() {
        copy = copy.with_message_id(v.clone());
    }
    if let Some(v) = properties.timestamp() {
        copy = copy.with_timestamp(*v);
    }
    if let Some(v) = properties.kind() {
        copy = copy.with_type(v.clone());
    }
    if let Some(v) = properties.app_id() {
        copy = copy.with_app_id(v.clone());
    }
    copy
}

/// What arrived over AMQP as kombu's envelope: the body as text (`body_encoding` `utf-8`),
/// the `headers` property as the protocol headers, the other properties and the delivery
/// facts as kombu's `properties`. `tag` is the delivery's tag.
pub(crate) fn to_envelope(
    data: &[u8],
    properties: &BasicProperties,
    exchange: &str,
    routing_key: &str,
    tag: &str,
) -> Envelope {
    let headers = properties
        .headers()
        .as_ref()
        .map(from_table)
        .unwrap_or_default();
    let mut kombu = Map::new();
    if let Some(id) = properties.correlation_id() {
        kombu.insert("correlation_id".into(), Value::from(id.as_str()));
    } else if let Some(id) = headers.get("id") {
        // A message without the property: the header names the task.
        kombu.insert("correlation_id".into(), id.clone());
    }
    if let Some(reply_to) = properties.reply_to() {
        kombu.insert("reply_to".into(), Value::from(reply_to.as_str()));
    }
    kombu.insert(
        "delivery_mode".into(),
        Value::from(properties.delivery_mode().unwrap_or(2)),
    );
    kombu.insert(
        "priority".into(),
        Value::from(properties.priority().unwrap_or(0)),
    );
    if let Some(expiration) = properties.expiration() {
        kombu.insert("expiration".into(), Value::from(expiration.as_str()));
    }
    kombu.insert(
        "delivery_info".into(),
        serde_json::json!({"exchange": exchange, "routing_key": routing_key}),
    );
    kombu.insert("body_encoding".into(), Value::from("utf-8"));
    kombu.insert("delivery_tag".into(), Value::from(tag));
    Envelope {
        body: String::from_utf8_lossy(data).into_owned(),
        content_encoding: properties
            .content_encoding()
            .as_ref()
            .map_or("utf-8", |e| e.as_str())
            .to_owned(),
        content_type: properties
            .content_type()
            .as_ref()
            .map_or("application/json", |t| t.as_str())
            .to_owned(),
        headers,
        properties: kombu,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_round_trips_through_field_values() {
        let value = json!({
            "lang": "py", "retries": 0, "big": 5_000_000_000i64, "eta": null,
            "timelimit": [null, 30.5], "ignore_result": false, "stamps": {}
        });
        let amqp = to_amqp(&value).unwrap();
        let AMQPValue::FieldTable(table) = &amqp else {
            panic!("an object is a table")
        };
        assert_eq!(table.inner()["retries"], AMQPValue::LongInt(0));
        assert_eq!(table.inner()["big"], AMQPValue::LongLongInt(5_000_000_000));
        assert_eq!(table.inner()["eta"], AMQPValue::Void);
        assert_eq!(to_json(&amqp), value);
    }

    #[test]
    fn every_field_type_decodes() {
        // The types py-amqp and RabbitMQ write that JSON lacks.
        let mut death = FieldTable::default();
        death.insert("time".into(), AMQPValue::Timestamp(1_796_223_929));
        death.insert("count".into(), AMQPValue::LongLongInt(1));
        death.insert("reason".into(), AMQPValue::ShortString("expired".into()));
        let value = AMQPValue::FieldArray(FieldArray::from(vec![
            AMQPValue::FieldTable(death),
            AMQPValue::DecimalValue(lapin::types::DecimalValue {
                scale: 2,
                value: 125,
            }),
            AMQPValue::Float(0.5),
            AMQPValue::Double(f64::NAN),
            AMQPValue::ShortShortUInt(7),
            AMQPValue::ByteArray(vec![b'h', b'i'].into()),
        ]));
        assert_eq!(
            to_json(&value),
            json!([{"time": 1_796_223_929, "count": 1, "reason": "expired"}, 1.25, 0.5, null, 7, "hi"])
        );
    }

    #[test]
    fn header_names_over_255_bytes_are_refused() {
        let mut map = Map::new();
        map.insert("x".repeat(256), json!(1));
        let error = to_table(&map).unwrap_err();
        assert!(error.to_string().contains("255"), "{error}");
    }

    #[test]
    fn a_message_crosses_as_celery_sends_it() {
        let mut message =
            Message::new("tasks.add", vec![json!(2), json!(2)], Map::new()).with_queue("celery");
        message.properties.priority = 5;
        message.headers.expires = Some((chrono::Utc::now() + chrono::Duration::hours(1)).into());
        let (body, properties) = to_amqp_message(&message, false).unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body[0], json!([2, 2]));
        let expiration: i64 = properties
            .expiration()
            .as_ref()
            .unwrap()
            .as_str()
            .parse()
            .unwrap();
        assert!(
            (3_590_000..=3_600_000).contains(&expiration),
            "{expiration}"
        );
        assert_eq!(properties.priority(), &Some(5));
        let (_, delayed) = to_amqp_message(&message, true).unwrap();
        assert_eq!(
            delayed.expiration(),
            &None,
            "no TTL inside the delay queues"
        );

        let envelope = to_envelope(
            &serde_json::to_vec(&body).unwrap(),
            &properties,
            "",
            "celery",
            "1.1",
        );
        let back = Message::try_from(envelope).unwrap();
        assert_eq!(back.id(), message.id());
        assert_eq!(back.task(), "tasks.add");
        assert_eq!(back.args, message.args);
        assert_eq!(back.properties.priority, 5);
        assert_eq!(back.queue(), "celery");
    }

    #[test]
    fn a_bare_python_message_decodes() {
        // A 5.5.3 worker accepts only lang, task and id headers and no content_encoding; so do we.
        let mut headers = FieldTable::default();
        headers.insert("lang".into(), AMQPValue::LongString("py".into()));
        headers.insert("task".into(), AMQPValue::LongString("tasks.add".into()));
        headers.insert("id".into(), AMQPValue::LongString("abc".into()));
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_headers(headers);
        let envelope = to_envelope(br#"[[1, 2], {}, {}]"#, &properties, "", "celery", "1.1");
        let message = Message::try_from(envelope).unwrap();
        assert_eq!(message.id(), "abc");
        assert_eq!(message.args, vec![json!(1), json!(2)]);
    }

    fn random_value(rng: &mut fastrand::Rng, depth: u32) -> AMQPValue {
        match rng.u8(..if depth == 0 { 9 } else { 11 }) {
            0 => AMQPValue::Boolean(rng.bool()),
            1 => AMQPValue::ShortShortInt(rng.i8(..)),
            2 => AMQPValue::LongInt(rng.i32(..)),
            3 => AMQPValue::LongLongInt(rng.i64(..)),
            4 => AMQPValue::Double(f64::from_bits(rng.u64(..))),
            5 => AMQPValue::Timestamp(rng.u64(..)),
            6 => AMQPValue::LongString(
                (0..rng.usize(..12))
                    .map(|_| rng.u8(..))
                    .collect::<Vec<u8>>()
                    .into(),
            ),
            7 => AMQPValue::DecimalValue(lapin::types::DecimalValue {
                scale: rng.u8(..),
                value: rng.u32(..),
            }),
            8 => AMQPValue::Void,
            9 => AMQPValue::FieldArray(
                (0..rng.usize(..5))
                    .map(|_| random_value(rng, depth - 1))
                    .collect::<Vec<_>>()
                    .into(),
            ),
            _ => AMQPValue::FieldTable(random_table(rng, depth - 1)),
        }
    }

    fn random_table(rng: &mut fastrand::Rng, depth: u32) -> FieldTable {
        const NAMES: &[&str] = &[
            "lang",
            "task",
            "id",
            "eta",
            "expires",
            "retries",
            "timelimit",
            "root_id",
            "x-death",
            "argsrepr",
            "group",
            "stamps",
        ];
        let mut table = FieldTable::default();
        for _ in 0..rng.usize(..8) {
            table.insert(
                NAMES[rng.usize(..NAMES.len())].into(),
                random_value(rng, depth),
            );
        }
        table
    }

    /// Random headers (every field type, nested) and random or mutated bodies: an envelope
    /// always comes out, decoding it fails cleanly or succeeds, and its headers encode again.
    #[test]
    fn any_delivery_decodes_without_panicking() {
        let seed = std::env::var("CELERY_WEB_FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| fastrand::u64(..));
        println!("fuzz seed: {seed} (CELERY_WEB_FUZZ_SEED={seed} replays it)");
        let mut rng = fastrand::Rng::with_seed(seed);
        let good = br#"[[1, 2], {"z": 1}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]"#;
        let mut decoded = 0;
        for _ in 0..3000 {
            let mut headers = random_table(&mut rng, 3);
            if rng.bool() {
                headers.insert("task".into(), AMQPValue::LongString("tasks.add".into()));
                headers.insert("id".into(), AMQPValue::LongString("x".into()));
            }
            let mut data = good.to_vec();
            for _ in 0..rng.usize(..4) {
                let at = rng.usize(..data.len());
                match rng.u8(..3) {
                    0 => data[at] = rng.u8(..),
                    1 => data.truncate(at),
                    _ => data.insert(at, rng.u8(..)),
                }
                if data.is_empty() {
                    break;
                }
            }
            let properties = BasicProperties::default().with_headers(headers);
            let envelope = to_envelope(&data, &properties, "", "q", "1.1");
            if Message::try_from(envelope.clone()).is_ok() {
                decoded += 1;
            }
            let _ = envelope.json_body();
            to_table(&envelope.headers).expect("decoded headers encode again");
        }
        assert!(decoded > 0, "some random deliveries are valid tasks");
    }
}
