//! Python Celery 5.5 and celery-web on one RabbitMQ (results on Redis): each sends tasks the
//! other runs, and each declares the queues the way the other does (the worker started
//! first declares; the other must not get a 406). Needs `python3` with `celery==5.5.3` and
//! `redis` (CI installs them).

use std::time::Duration;

use celery_web::task::Signature;
use celery_web::Error;
use celery_web_tests::amqp_server::TestVhost;
use celery_web_tests::redis_server::{python_celery_available, RedisSite, TestRedis};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

fn unix_now() -> f64 {
    chrono::Utc::now().timestamp_micros() as f64 / 1e6
}

fn site(db: u8) -> Option<(TestVhost, RedisSite)> {
    let vhost = TestVhost::create()?;
    let redis = TestRedis::shared(db)?;
    if !python_celery_available() {
        return None;
    }
    let site = RedisSite::new(&redis.url, 60).with_broker(&vhost.url);
    Some((vhost, site))
}

/// The celery-web worker declares the queue first; Python publishes into it (a countdown
/// goes straight into the queue, as Celery does on a classic queue with a direct exchange:
/// the worker moves it into the delay levels instead of holding it).
#[test]
fn python_sends_a_rust_worker_runs_python_reads_the_result() {
    let Some((vhost, site)) = site(12) else {
        return;
    };
    let queue = "py-to-rs";
    let worker = site.spawn_worker("rs", &["-Q", queue, "-c", "4"]);
    worker.wait_for_log("worker ready", Duration::from_secs(30));

    let id = site.interop(&[
        "send",
        "interop.rust.add",
        "--args",
        "[2, 3]",
        "--queue",
        queue,
    ]);
    assert_eq!(
        site.python_get(&id),
        json!({"status": "SUCCESS", "result": 5})
    );

    // Args, kwargs, retries and a countdown survive; not run before the eta Python computed.
    let sent_at = unix_now();
    let id = site.interop(&[
        "send",
        "interop.rust.describe",
        "--args",
        "[7]",
        "--kwargs",
        r#"{"label": "hé", "flag": true}"#,
        "--retries",
        "2",
        "--countdown",
        "3",
        "--queue",
        queue,
    ]);
    let got = site.python_get(&id);
    assert_eq!(got["status"], "SUCCESS", "{got}");
    let described = &got["result"];
    assert_eq!(
        (described["x"].clone(), described["label"].clone()),
        (json!(7), json!("hé"))
    );
    assert_eq!(described["flag"], true);
    assert_eq!(described["retries"], 2);
    let eta = chrono::DateTime::parse_from_rfc3339(described["eta"].as_str().unwrap()).unwrap();
    let eta = eta.timestamp_micros() as f64 / 1e6;
    assert!(
        eta >= sent_at + 2.9,
        "eta {eta} is the countdown from {sent_at}"
    );
    let started_at = described["started_at"].as_f64().unwrap();
    assert!(
        started_at >= eta - 0.01,
        "ran {:.3} s before its eta",
        eta - started_at
    );

    // Retries done by the Rust worker, a failure with its message, an expiry.
    let id = site.interop(&[
        "send",
        "interop.rust.flaky",
        "--args",
        "[2]",
        "--queue",
        queue,
    ]);
    assert_eq!(
        site.python_get(&id),
        json!({"status": "SUCCESS", "result": 2})
    );
    let id = site.interop(&[
        "send",
        "interop.rust.fail",
        "--args",
        r#"["nope"]"#,
        "--queue",
        queue,
    ]);
    let failed = site.python_get(&id);
    assert_eq!(failed["status"], "FAILURE", "{failed}");
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .contains("invalid digit"),
        "{failed}"
    );
    let id = site.interop(&[
        "send",
        "interop.rust.add",
        "--args",
        "[1, 1]",
        "--countdown",
        "2.0",
        "--expires",
        "1.0",
        "--queue",
        queue,
    ]);
    assert_eq!(site.python_get(&id)["status"], "REVOKED");

    // An unknown task name is kept aside with the reason, not requeued in a loop.
    let _ = site.interop(&["send", "interop.nobody.has.this", "--queue", queue]);
    celery_web_tests::eventually(
        Duration::from_secs(20),
        "the unknown task kept aside",
        || (vhost.messages(&format!("_celery_web.dead.{queue}")) == 1).then_some(()),
    );
    assert_eq!(vhost.messages(queue), 0);
}

/// The Python worker declares the queue first; celery-web publishes into it, a countdown
/// through the delay levels, which a Python worker on a classic queue receives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sends_a_python_worker_runs_rust_reads_the_result() {
    let Some((_vhost, site)) = site(13) else {
        return;
    };
    let queue = "rs-to-py";
    let worker = site.spawn_python_worker("py", queue, 4);
    worker.wait_for_log("ready.", Duration::from_secs(30));
    let app = site.app();

    let sum: i64 = app
        .send(
            Signature::with_output("interop.py.add")
                .arg(2)
                .arg(3)
                .queue(queue),
        )
        .await
        .unwrap()
        .get(WAIT)
        .await
        .unwrap();
    assert_eq!(sum, 5);

    let sent_at = unix_now();
    let described: Value = app
        .send(
            Signature::with_output("interop.py.describe")
                .arg(1)
                .arg("two")
                .kwarg("k", json!({"nested": [1, 2]}))
                .countdown(2.5)
                .queue(queue),
        )
        .await
        .unwrap()
        .get(WAIT)
        .await
        .unwrap();
    assert_eq!(described["args"], json!([1, "two"]));
    assert_eq!(described["kwargs"], json!({"k": {"nested": [1, 2]}}));
    let started_at = described["started_at"].as_f64().unwrap();
    assert!(
        started_at >= sent_at + 2.4,
        "ran {:.3} s after it was sent, before its countdown of 2.5 s",
        started_at - sent_at
    );

    let error = app
        .send(
            Signature::<Value>::with_output("interop.py.fail")
                .arg("boom")
                .queue(queue),
        )
        .await
        .unwrap()
        .get(WAIT)
        .await
        .unwrap_err();
    match error {
        Error::TaskFailed {
            exc_type,
            exc_message,
            ..
        } => {
            assert_eq!(
                (exc_type.as_str(), exc_message.as_str()),
                ("ValueError", "boom")
            );
        }
        other => panic!("expected the task's ValueError, got {other}"),
    }
    assert!(
        !worker.log().contains("PRECONDITION_FAILED"),
        "{}",
        worker.log()
    );
}
