//! Python Celery 5.5 and celery-web on one Redis: each sends tasks the other runs and reads the
//! other's results. Needs `python3` with `celery==5.5.3` and `redis` (CI installs them).

use std::time::{Duration, Instant};

use celery_web::task::Signature;
use celery_web::Error;
use celery_web_tests::redis_server::{python_celery_available, RedisSite, TestRedis};
use celery_web_tests::{eventually, Process};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

fn unix_now() -> f64 {
    chrono::Utc::now().timestamp_micros() as f64 / 1e6
}

fn site(db: u8, visibility_timeout: u64) -> Option<RedisSite> {
    let redis = TestRedis::shared(db)?;
    if !python_celery_available() {
        return None;
    }
    Some(RedisSite::new(&redis.url, visibility_timeout))
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn wait_ready(worker: &Process, text: &str) {
    worker.wait_for_log(text, Duration::from_secs(30));
}

#[test]
fn python_sends_a_rust_worker_runs_python_reads_the_result() {
    let Some(site) = site(4, 60) else { return };
    let queue = "py-to-rs";
    let worker = site.spawn_worker("rs", &["-Q", queue, "-c", "4"]);
    wait_ready(&worker, "worker ready");

    // A plain call.
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

    // Args, kwargs, retries and countdown survive.
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
        "1.5",
        "--queue",
        queue,
    ]);
    let got = site.python_get(&id);
    assert_eq!(got["status"], "SUCCESS", "{got}");
    let described = &got["result"];
    assert_eq!(described["x"], 7);
    assert_eq!(described["label"], "hé");
    assert_eq!(described["flag"], true);
    assert_eq!(described["retries"], 2);
    // Not before the eta Python computed (Python's start-up time does not count).
    let eta = chrono::DateTime::parse_from_rfc3339(described["eta"].as_str().unwrap())
        .unwrap_or_else(|e| panic!("eta {described}: {e}"));
    let eta = eta.timestamp_micros() as f64 / 1e6;
    assert!(
        eta >= sent_at + 1.4,
        "eta {eta} is the countdown from {sent_at}"
    );
    let started_at = described["started_at"].as_f64().unwrap();
    assert!(
        started_at >= eta - 0.01,
        "ran {:.3} s before its eta",
        eta - started_at
    );

    // Retries done by the Rust worker: Python reads the final count.
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

    // A failure reaches Python as an exception with its message.
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

    // Expired before it could run (its countdown outlives its expiry): REVOKED, not run.
    let id = site.interop(&[
        "send",
        "interop.rust.add",
        "--args",
        "[1, 1]",
        "--countdown",
        "1.0",
        "--expires",
        "0.5",
        "--queue",
        queue,
    ]);
    let revoked = site.python_get(&id);
    assert_eq!(revoked["status"], "REVOKED", "{revoked}");
}

#[test]
fn python_priorities_order_a_rust_worker() {
    let Some(site) = site(7, 60) else { return };
    let queue = "py-priority";
    let path = site.dir.path().join("order.txt");
    let path = path.to_str().unwrap();
    // kombu's priorities: 0 is the most urgent. Sent before any worker runs.
    for (label, priority) in [
        ("low", "9"),
        ("middle", "4"),
        ("high", "0"),
        ("default", ""),
    ] {
        let args = json!([path, label]).to_string();
        let mut command = vec![
            "send",
            "interop.rust.record",
            "--args",
            &args,
            "--queue",
            queue,
        ];
        if !priority.is_empty() {
            command.extend(["--priority", priority]);
        }
        site.interop(&command);
    }
    let _worker = site.spawn_worker("rs", &["-Q", queue, "-c", "1"]);
    let order = eventually(WAIT, "four tasks ran", || {
        let order = lines(std::path::Path::new(path));
        (order.len() == 4).then_some(order)
    });
    // Python's default priority is kombu 0 too: the same list as "high", sent after it.
    assert_eq!(order, ["high", "default", "middle", "low"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sends_a_python_worker_runs_rust_reads_the_result() {
    let Some(site) = site(5, 60) else { return };
    let queue = "rs-to-py";
    // Only a Python worker consumes this queue: no celery-web consumer marker, so countdowns
    // go straight to the list (the default settings).
    let app = site.app();
    let worker = site.spawn_python_worker("py", queue, 4);
    wait_ready(&worker, "ready.");

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

    // Args, kwargs, countdown and priority survive.
    let sent_at = unix_now();
    let described: Value = app
        .send(
            Signature::with_output("interop.py.describe")
                .arg(1)
                .arg("two")
                .kwarg("k", json!({"nested": [1, 2]}))
                .countdown(1.5)
                .priority(9)
                .queue(queue),
        )
        .await
        .unwrap()
        .get(WAIT)
        .await
        .unwrap();
    assert_eq!(described["args"], json!([1, "two"]));
    assert_eq!(described["kwargs"], json!({"k": {"nested": [1, 2]}}));
    assert_eq!(described["retries"], 0);
    // celery-web's most urgent priority is kombu's most urgent.
    assert_eq!(described["priority"], 0, "{described}");
    assert!(described["eta"].is_string(), "{described}");
    let started_at = described["started_at"].as_f64().unwrap();
    assert!(
        started_at >= sent_at + 1.4,
        "ran {:.3} s after it was sent, before its countdown of 1.5 s",
        started_at - sent_at
    );

    // Retries done by the Python worker on a message celery-web sent.
    let retries: u32 = app
        .send(
            Signature::with_output("interop.py.flaky")
                .arg(2)
                .queue(queue),
        )
        .await
        .unwrap()
        .get(WAIT)
        .await
        .unwrap();
    assert_eq!(retries, 2);

    // A Python exception reaches celery-web with its type and message.
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
            assert_eq!(exc_type, "ValueError");
            assert_eq!(exc_message, "boom");
        }
        other => panic!("expected the task's ValueError, got {other}"),
    }

    // Expired before it could run: the Python worker revokes it.
    let expired = app
        .send(
            Signature::<i64>::with_output("interop.py.add")
                .arg(1)
                .arg(1)
                .countdown(1.0)
                .expires_in(Duration::from_millis(500))
                .queue(queue),
        )
        .await
        .unwrap();
    let error = expired.get(WAIT).await.unwrap_err();
    assert!(
        error.to_string().contains("REVOKED") || error.to_string().contains("Revoked"),
        "{error}"
    );
    assert_eq!(
        expired.state().await.unwrap(),
        celery_web::task::State::Revoked
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_priorities_order_a_python_worker() {
    let Some(site) = site(8, 60) else { return };
    let queue = "rs-priority";
    let app = site.app();
    let path = site.dir.path().join("order.txt");
    let path_text = path.to_str().unwrap().to_owned();
    // celery-web's priorities: 9 is the most urgent. Sent before any worker runs.
    for (label, priority) in [("low", 0), ("middle", 5), ("high", 9)] {
        app.send(
            Signature::<String>::with_output("interop.py.record")
                .arg(&path_text)
                .arg(label)
                .priority(priority)
                .queue(queue),
        )
        .await
        .unwrap();
    }
    let _worker = site.spawn_python_worker("py", queue, 1);
    let order = tokio::task::spawn_blocking(move || {
        eventually(WAIT, "three tasks ran", || {
            let order = lines(&path);
            (order.len() == 3).then_some(order)
        })
    })
    .await
    .unwrap();
    assert_eq!(order, ["high", "middle", "low"]);
}

/// Which kind of worker.
#[derive(Debug, Clone, Copy)]
enum Side {
    Rust,
    Python,
}

impl Side {
    /// A worker of this side on `queue`, one task at a time, ready to take work.
    fn spawn(self, site: &RedisSite, queue: &str) -> Process {
        let (worker, ready) = match self {
            Side::Rust => (
                site.spawn_worker("rs", &["-Q", queue, "-c", "1"]),
                "worker ready",
            ),
            Side::Python => (site.spawn_python_worker("py", queue, 1), "ready."),
        };
        wait_ready(&worker, ready);
        worker
    }
}

/// A `first` worker takes a 20 s task and is killed with SIGKILL mid-task, its claim left in
/// kombu's `unacked` hash; past the visibility timeout (2 s) a `second` worker restores the
/// task and runs it. Returns the second worker and a connection to the database `db`.
async fn killed_mid_task_then_restored(
    site: &RedisSite,
    db: u8,
    queue: &str,
    first: Side,
    second: Side,
) -> (Process, redis::Connection) {
    let path = site.dir.path().join("runs.txt");
    let mut killed = first.spawn(site, queue);
    site.app()
        .send(
            Signature::<String>::with_output("celery_web_tests.tasks.mark_and_sleep")
                .arg(path.to_str().unwrap())
                .arg("run")
                .arg(20.0)
                .queue(queue),
        )
        .await
        .unwrap();
    let runs = |count: usize, what: &'static str| {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            eventually(WAIT, what, || (lines(&path).len() == count).then_some(()))
        })
    };
    runs(1, "the first worker started the task").await.unwrap();
    killed.signal("KILL");
    killed.wait_exit(Duration::from_secs(5)).expect("killed");
    let mut redis = TestRedis {
        url: site.url.clone(),
        db,
    }
    .connection();
    let held: usize = redis::cmd("HLEN").arg("unacked").query(&mut redis).unwrap();
    assert_eq!(
        held, 1,
        "the killed {first:?} worker's claim is in kombu's unacked hash"
    );
    std::thread::sleep(Duration::from_secs(3));
    let clock = Instant::now();
    let restorer = second.spawn(site, queue);
    runs(2, "the second worker ran the restored task")
        .await
        .unwrap();
    assert!(clock.elapsed() < WAIT);
    (restorer, redis)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_worker_restores_what_a_killed_rust_worker_held() {
    let Some(site) = site(6, 2) else { return };
    let (_python, mut redis) =
        killed_mid_task_then_restored(&site, 6, "restored", Side::Rust, Side::Python).await;
    let held: usize = redis::cmd("HLEN").arg("unacked").query(&mut redis).unwrap();
    assert_eq!(held, 1, "now held by the Python worker (acks_late)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_worker_restores_what_a_killed_python_worker_held() {
    let Some(site) = site(3, 2) else { return };
    let (rust, _) =
        killed_mid_task_then_restored(&site, 3, "restored-from-python", Side::Python, Side::Rust)
            .await;
    rust.wait_for_log(
        "restored messages whose visibility timeout",
        Duration::from_secs(5),
    );
}

/// The broadcast capability against Celery's own event dispatcher and receiver: what Python
/// sends on `celeryev` reaches a celery-web subscription, and an event celery-web sends is
/// read by Python's `EventReceiver` (what Flower and `celery events` use).
#[test]
fn events_cross_between_python_and_a_redis_broadcast() {
    use celery_web::broker::Exchange;
    use celery_web::protocol::Envelope;

    let Some(site) = site(15, 60) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _inside = runtime.enter();
    let app = site.app();
    let broadcast = app.broker().broadcast().expect("Redis broadcasts");
    let events = Exchange::topic("celeryev");

    // Python → Rust.
    let mut subscription = runtime
        .block_on(broadcast.subscribe(&events, "worker.#"))
        .unwrap();
    site.interop(&[
        "send-event",
        "worker-heartbeat",
        "--fields",
        r#"{"active": 3}"#,
    ]);
    let received = runtime
        .block_on(tokio::time::timeout(
            Duration::from_secs(10),
            subscription.next(),
        ))
        .expect("Python's event arrives")
        .unwrap()
        .expect("it is an envelope");
    assert_eq!(received.routing_key, "worker.heartbeat");
    let event = received.envelope.json_body().unwrap();
    assert_eq!(event["type"], "worker-heartbeat", "{event}");
    assert_eq!(event["hostname"], "interop-py@host", "{event}");
    assert_eq!(event["active"], 3, "{event}");
    assert_eq!(received.envelope.headers["hostname"], "interop-py@host");

    // Rust → Python: sent until the receiver (started in the background) has one.
    let mut receiver = site
        .python(&["interop.py", "receive-event", "--timeout", "20"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let sent_event = json!({
        "type": "task-succeeded",
        "uuid": "1b0e6f5e-0000-4000-8000-000000000001",
        "result": "42",
        "runtime": 0.01,
        "hostname": "celery-web@host",
        "timestamp": unix_now(),
        "clock": 1,
        "utcoffset": 0,
        "pid": std::process::id(),
    });
    let headers = json!({"hostname": "celery-web@host"})
        .as_object()
        .unwrap()
        .clone();
    let envelope = Envelope::with_json_body(&sent_event, headers, "celeryev", "task.succeeded");
    let deadline = Instant::now() + Duration::from_secs(20);
    let output = loop {
        runtime
            .block_on(broadcast.send(&events, "task.succeeded", &envelope))
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        if Instant::now() > deadline {
            panic!("Python's receiver got nothing");
        }
        if receiver.try_wait().unwrap().is_some() {
            break receiver.wait_with_output().unwrap();
        }
    };
    let got: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(got["type"], "task-succeeded", "{got}");
    assert_eq!(got["uuid"], sent_event["uuid"], "{got}");
    assert_eq!(got["hostname"], "celery-web@host", "{got}");
}
