//! Property tests of remote control and event decoding: Celery's own request shapes (as
//! captured from Python 5.5.3's CLI and Flower) and events are mutated at random (JSON
//! values replaced, removed or retyped; bytes flipped, cut or inserted) and fed to
//! [`Request::decode`], to the worker's command panel and to [`decode_events`]. Nothing
//! may panic; every rejection has a message. The seed is printed and replayed with
//! `CELERY_WEB_FUZZ_SEED`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use serde_json::{json, Value};

use super::panel::Panel;
use super::Request;
use crate::events::{decode_events, envelope as event_envelope};
use crate::protocol::fuzz_tests::{mutate_bytes, mutate_json, random_value, seeded};
use crate::protocol::Envelope;
use crate::task::Registry;
use crate::{Celery, Settings};

/// Request bodies as Python's CLI and Flower send them (B.2, B.4 of the reference).
fn requests() -> Vec<Value> {
    let reply = json!({"exchange": "reply.celery.pidbox", "routing_key": "15ceedc1-84cb-3250-9148-b146fd6b2e2a"});
    let call = |method: &str, arguments: Value| {
        json!({"method": method, "arguments": arguments, "destination": null, "pattern": null,
               "matcher": null, "ticket": "cbda756e-0000-4000-8000-000000000000", "reply_to": reply})
    };
    vec![
        call("ping", json!({})),
        call("stats", json!({})),
        call("active", json!({"safe": true})),
        call("reserved", json!({})),
        call("scheduled", json!({})),
        call("registered", json!({"taskinfoitems": []})),
        call("revoked", json!({})),
        call("active_queues", json!({})),
        call("conf", json!({"with_defaults": false})),
        call("query_task", json!({"ids": ["a", "b"]})),
        call("report", json!({})),
        call("clock", json!({})),
        call(
            "hello",
            json!({"from_node": "w2@h", "revoked": {"x": 1796223929.6}}),
        ),
        call("revoke", json!({"task_id": ["a", "b"]})),
        call(
            "revoke",
            json!({"task_id": "a", "terminate": 1, "signal": "SIGTERM"}),
        ),
        call("terminate", json!({"signal": "SIGKILL", "task_id": ["a"]})),
        call(
            "rate_limit",
            json!({"task_name": "t", "rate_limit": "10/m"}),
        ),
        call(
            "time_limit",
            json!({"task_name": "t", "soft": 10.0, "hard": 20.0}),
        ),
        call(
            "add_consumer",
            json!({"queue": "q", "exchange": null, "exchange_type": "direct", "routing_key": null}),
        ),
        call("cancel_consumer", json!({"queue": "q"})),
        call("enable_events", json!({})),
        call("disable_events", json!({})),
        call("pool_grow", json!({"n": 2})),
        call("no_such_method", json!({})),
        json!({"method": "heartbeat", "arguments": {}, "destination": ["w1@h"], "pattern": null, "matcher": null}),
        json!({"method": "ping", "arguments": {}, "destination": null, "pattern": "w*@h", "matcher": "glob"}),
    ]
}

fn panel() -> Panel {
    let settings = Settings {
        broker_url: "memory://".to_owned(),
        result_backend: "memory://".to_owned(),
        ..Settings::default()
    };
    let app = Celery::with_registry(settings, Registry::default()).expect("an app");
    Panel {
        app,
        hostname: "w1@h".to_owned(),
        started: std::time::Instant::now(),
        concurrency: 2,
        prefetch_count: 8,
        clock: Arc::default(),
        queues: Arc::new(std::sync::RwLock::new(vec!["celery".to_owned()])),
        requests: Arc::default(),
        revocations: Arc::default(),
        tuning: Arc::default(),
        events: None,
        process_pool: None,
        ring: Arc::default(),
        shutdown: crate::shutdown::Shutdown::new(),
    }
}

fn envelope_of(body: &Value) -> Envelope {
    let headers = json!({"clock": 1, "expires": 1796223929.6457303});
    Envelope::with_json_body(
        body,
        headers.as_object().cloned().unwrap_or_default(),
        "celery.pidbox",
        "",
    )
}

#[test]
fn celerys_requests_get_celerys_replies() {
    let panel = panel();
    let decoded: Vec<Request> = requests()
        .iter()
        .map(|body| Request::decode(&envelope_of(body)).expect("Celery's requests decode"))
        .collect();
    let reply =
        |method: &str| match panel.handle(decoded.iter().find(|r| r.method == method).unwrap()) {
            super::panel::Answer::Reply(value) => value,
            super::panel::Answer::Silent => Value::Null,
        };
    assert_eq!(reply("ping"), json!({"ok": "pong"}));
    assert_eq!(
        reply("no_such_method"),
        json!({"error": "KeyError('no_such_method')"})
    );
    assert_eq!(reply("rate_limit"), json!({"error": "unknown task"}));
    assert_eq!(reply("revoke")["ok"], "tasks {'a', 'b'} flagged as revoked");
    let mut hello = decoded
        .iter()
        .find(|r| r.method == "hello")
        .unwrap()
        .clone();
    hello.arguments["revoked"] = json!({"x": crate::events::timestamp() - 60.0, "old": 1.0});
    let answer = match panel.handle(&hello) {
        super::panel::Answer::Reply(value) => value,
        super::panel::Answer::Silent => Value::Null,
    };
    assert!(
        answer["revoked"]["a"].is_f64() && answer["clock"].is_u64(),
        "{answer}"
    );
    assert_eq!(
        reply("revoked"),
        json!(["a", "b", "x"]),
        "hello merged x, revoke added a and b"
    );
    assert_eq!(reply("add_consumer"), json!({"ok": "add consumer q"}));
    assert!(reply("stats")["clock"].is_string());
}

#[test]
fn mutated_requests_and_events_never_panic() {
    let mut rng = seeded();
    let panel = panel();
    let originals = requests();
    let events = [
        json!({"hostname": "w@h", "utcoffset": 0, "pid": 1, "clock": 1, "freq": 2.0, "active": 0,
               "processed": 0, "loadavg": [1.12, 0.81, 0.37], "sw_ident": "py-celery", "sw_ver": "5.5.3",
               "sw_sys": "Linux", "timestamp": 1796223906.4605927, "type": "worker-online"}),
        json!([{"hostname": "w@h", "uuid": "77e0", "name": "t", "args": "(3,)", "kwargs": "{}",
                "retries": 0, "eta": null, "timestamp": 1.0, "type": "task-received"}]),
    ];
    let mut state = crate::events::State::new(50);
    let (mut accepted, mut rejected) = (0, 0);
    for round in 0..3000 {
        let mut body = originals[round % originals.len()].clone();
        for _ in 0..rng.usize(1..4) {
            mutate_json(&mut rng, &mut body);
        }
        let mut envelope = envelope_of(&body);
        if rng.u8(..4) == 0 {
            envelope
                .headers
                .insert("clock".into(), random_value(&mut rng, 1));
        }
        let mut raw = envelope.encode().into_bytes();
        if rng.u8(..3) == 0 {
            mutate_bytes(&mut rng, &mut raw);
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let envelope = Envelope::decode(&raw).map_err(|e| e.to_string())?;
            let request = Request::decode(&envelope).map_err(|e| e.to_string())?;
            // The worker's mailbox runs what decodes (shutdown only flags the phase here).
            let _ = request.is_for("w1@h");
            let _ = panel.handle(&request);
            Ok::<_, String>(())
        }));
        match outcome {
            Ok(Ok(())) => accepted += 1,
            Ok(Err(error)) => {
                assert!(!error.trim().is_empty());
                rejected += 1;
            }
            Err(_) => panic!(
                "remote control panicked on {}",
                String::from_utf8_lossy(&raw)
            ),
        }

        let mut event = events[round % events.len()].clone();
        mutate_json(&mut rng, &mut event);
        let envelope = event_envelope(&event, "w@h", "task.multi");
        // What decodes goes into a monitor's state (`celery events`' live view).
        let decoded = catch_unwind(AssertUnwindSafe(|| {
            decode_events(&envelope).map(|events| events.iter().for_each(|e| state.apply(e)))
        }));
        match decoded {
            Ok(Err(error)) => assert!(!error.to_string().is_empty()),
            Ok(Ok(())) => {}
            Err(_) => panic!("decoding or applying an event panicked on {event}"),
        }
    }
    assert!(
        accepted > 300 && rejected > 300,
        "accepted {accepted}, rejected {rejected}"
    );
}
