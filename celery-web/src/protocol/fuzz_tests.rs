//! Property tests of the decoders of untrusted messages: real Python Celery 5.5.3 envelopes
//! (captured from Redis: plain, countdown + expires + priority + limits, link + link_error,
//! a chain, a chord's header) are decoded, then mutated at random — bytes flipped, cut or
//! inserted; JSON values replaced, removed or retyped; the body re-encoded wrong — and
//! decoded again. Nothing may panic, and every rejection must be a [`ProtocolError`] with a
//! message. The seed is printed and can be replayed with `CELERY_WEB_FUZZ_SEED`.

use std::panic::{catch_unwind, AssertUnwindSafe};

use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::{Envelope, Message};

/// Envelopes Python Celery 5.5.3 put in Redis (`LRANGE`), one per line.
const CAPTURES: &str = include_str!("fixtures/celery-5.5.3-redis.jsonl");

fn captures() -> Vec<&'static str> {
    CAPTURES
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect()
}

pub(crate) fn seeded() -> fastrand::Rng {
    let seed = std::env::var("CELERY_WEB_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("fuzz seed: {seed} (CELERY_WEB_FUZZ_SEED={seed} replays it)");
    fastrand::Rng::with_seed(seed)
}

/// Decodes `raw` as the worker does; panics (failing the test) on a panic or an empty error.
fn decode(raw: &[u8]) -> Result<Message, String> {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        Envelope::decode(raw).and_then(Message::try_from)
    }));
    match outcome {
        Ok(Ok(message)) => Ok(message),
        Ok(Err(error)) => {
            let text = error.to_string();
            assert!(
                !text.trim().is_empty(),
                "an error without a message for {raw:?}"
            );
            Err(text)
        }
        Err(_) => panic!("the decoder panicked on: {}", String::from_utf8_lossy(raw)),
    }
}

#[test]
fn python_captures_decode() {
    let captures = captures();
    assert_eq!(captures.len(), 6);
    let messages: Vec<Message> = captures
        .iter()
        .map(|raw| decode(raw.as_bytes()).expect("a Python envelope decodes"))
        .collect();
    assert!(messages.iter().all(|m| m.task() == "tasks.add"));
    let limited = messages
        .iter()
        .find(|m| m.headers.retries == 2)
        .expect("the capture with retries=2");
    assert_eq!(limited.headers.timelimit, (Some(60.0), Some(50.0)));
    assert!(limited.eta().is_some() && limited.expires().is_some());
    assert!(
        messages.iter().any(|m| m.embed.callbacks.is_some()),
        "the link capture carries callbacks"
    );
    assert!(
        messages.iter().any(|m| m.embed.chain.is_some()),
        "the chain capture carries the rest of the chain"
    );
    assert!(
        messages.iter().any(|m| m.embed.chord.is_some()),
        "the chord header carries the body"
    );
}

/// A random JSON value, a few levels deep.
pub(crate) fn random_value(rng: &mut fastrand::Rng, depth: u32) -> Value {
    match rng.u8(..if depth == 0 { 6 } else { 8 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.bool()),
        2 => json!(rng.i64(..)),
        3 => json!(rng.f64() * 1e300 * if rng.bool() { -1.0 } else { 1.0 }),
        4 => Value::String((0..rng.usize(..12)).map(|_| rng.char(..)).collect()),
        5 => Value::String(
            [
                "",
                "json",
                "base64",
                "application/x-python-serialize",
                "1e999",
            ][rng.usize(..5)]
            .to_owned(),
        ),
        6 => Value::Array(
            (0..rng.usize(..4))
                .map(|_| random_value(rng, depth - 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.usize(..4))
                .map(|i| (format!("k{i}"), random_value(rng, depth - 1)))
                .collect(),
        ),
    }
}

/// Replaces, removes or adds one value somewhere in `value`.
pub(crate) fn mutate_json(rng: &mut fastrand::Rng, value: &mut Value) {
    match value {
        Value::Object(map) if !map.is_empty() && rng.u8(..4) != 0 => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let key = &keys[rng.usize(..keys.len())];
            match rng.u8(..4) {
                0 => {
                    map.remove(key);
                }
                1 => {
                    map.insert(key.clone(), random_value(rng, 2));
                }
                _ => mutate_json(rng, map.get_mut(key).expect("key just listed")),
            }
        }
        Value::Array(items) if !items.is_empty() && rng.u8(..4) != 0 => {
            let index = rng.usize(..items.len());
            if rng.bool() {
                items.remove(index);
            } else {
                mutate_json(rng, &mut items[index]);
            }
        }
        other => *other = random_value(rng, 2),
    }
}

pub(crate) fn mutate_bytes(rng: &mut fastrand::Rng, bytes: &mut Vec<u8>) {
    for _ in 0..rng.usize(1..4) {
        if bytes.is_empty() {
            bytes.push(rng.u8(..));
            continue;
        }
        let at = rng.usize(..bytes.len());
        match rng.u8(..4) {
            0 => bytes[at] = rng.u8(..),
            1 => {
                bytes.remove(at);
            }
            2 => bytes.insert(at, *b"{}[]\",:\\0e-".get(rng.usize(..12)).unwrap_or(&b'x')),
            _ => bytes.truncate(at),
        }
    }
}

/// The envelope with its body decoded from base64, mutated as JSON and encoded again.
pub(crate) fn mutate_body(rng: &mut fastrand::Rng, envelope: &mut Map<String, Value>) {
    let engine = base64::engine::general_purpose::STANDARD;
    let Some(body) = envelope
        .get("body")
        .and_then(Value::as_str)
        .and_then(|b| engine.decode(b).ok())
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    else {
        return;
    };
    let mut body = body;
    mutate_json(rng, &mut body);
    let encoded = if rng.u8(..5) == 0 {
        // Not JSON inside valid base64.
        engine.encode(b"\x80\x04\x95 pickle?")
    } else {
        engine.encode(body.to_string())
    };
    envelope.insert("body".to_owned(), Value::String(encoded));
}

#[test]
fn mutated_python_envelopes_never_panic_and_say_what_is_wrong() {
    let mut rng = seeded();
    let originals: Vec<Map<String, Value>> = captures()
        .iter()
        .map(|raw| serde_json::from_str(raw).expect("captures are JSON objects"))
        .collect();
    let (mut accepted, mut rejected) = (0, 0);
    for round in 0..4000 {
        let mut envelope = originals[round % originals.len()].clone();
        let raw = match rng.u8(..3) {
            0 => {
                let mut value = Value::Object(envelope);
                for _ in 0..rng.usize(1..4) {
                    mutate_json(&mut rng, &mut value);
                }
                value.to_string().into_bytes()
            }
            1 => {
                mutate_body(&mut rng, &mut envelope);
                Value::Object(envelope).to_string().into_bytes()
            }
            _ => {
                let mut bytes = Value::Object(envelope).to_string().into_bytes();
                mutate_bytes(&mut rng, &mut bytes);
                bytes
            }
        };
        match decode(&raw) {
            Ok(message) => {
                accepted += 1;
                // What decodes is usable: it encodes back and decodes to the same message.
                let again = Envelope::from_message(&message)
                    .map(|e| e.encode())
                    .expect("a decoded message encodes");
                let back = decode(again.as_bytes()).expect("a re-encoded message decodes");
                assert_eq!(back.id(), message.id());
                assert_eq!(back.args, message.args);
            }
            Err(_) => rejected += 1,
        }
    }
    println!("accepted {accepted}, rejected {rejected}");
    assert!(
        rejected > 1000,
        "the mutations reach the checks: {rejected} rejected"
    );
    assert!(
        accepted > 100,
        "some mutations stay valid: {accepted} accepted"
    );
}

#[test]
fn random_bytes_are_rejected_without_panicking() {
    let mut rng = seeded();
    for _ in 0..2000 {
        let length = rng.usize(..256);
        let raw: Vec<u8> = (0..length).map(|_| rng.u8(..)).collect();
        assert!(decode(&raw).is_err());
        let value = random_value(&mut rng, 3);
        assert!(decode(value.to_string().as_bytes()).is_err());
    }
}
