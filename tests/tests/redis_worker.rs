//! celery-web workers on Redis, as processes: routing, priorities, bad messages, eta tasks,
//! purge, and a Redis restart in the middle of a run.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use celery_web::broker::redis::RedisBroker;
use celery_web::protocol::Message;
use celery_web::task::{Signature, State};
use celery_web::Celery;
use celery_web_tests::eventually;
use celery_web_tests::redis_server::{PrivateRedis, RedisSite, TestRedis};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn record(path: &Path, label: &str) -> Signature<String> {
    Signature::with_output("interop.rust.record")
        .arg(path.to_str().unwrap())
        .arg(label)
}

/// Builds the messages of `signatures` and publishes them in one call per 5,000.
async fn publish_all(app: &Celery, signatures: impl IntoIterator<Item = Signature<String>>) {
    let messages: Vec<Message> = signatures
        .into_iter()
        .map(|s| app.message_for(&s).unwrap())
        .collect();
    for batch in messages.chunks(5_000) {
        app.broker().publish(batch).await.unwrap();
    }
}

/// Runs blocking test code (polling files, sleeping) off the async runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_are_routed_and_priorities_ordered() {
    let Some(redis) = TestRedis::shared(10) else {
        return;
    };
    let site = RedisSite::new(&redis.url, 60);
    let app = site.app();
    let path = site.dir.path().join("order.txt");
    for (label, priority) in [("low", 0), ("middle", 5), ("urgent", 9), ("also-middle", 4)] {
        app.send(record(&path, label).priority(priority).queue("routed-a"))
            .await
            .unwrap();
    }
    let elsewhere = app
        .send(record(&path, "other queue").queue("routed-b"))
        .await
        .unwrap();
    let _worker = site.spawn_worker("rs", &["-Q", "routed-a", "-c", "1"]);
    let order_path = path.clone();
    let order = blocking(move || {
        eventually(WAIT, "the four tasks of routed-a", || {
            let order = lines(&order_path);
            (order.len() == 4).then_some(order)
        })
    })
    .await;
    // Priorities 5 and 4 share a kombu step (kombu 4 and 5 are step 3): first in, first out.
    assert_eq!(order, ["urgent", "middle", "also-middle", "low"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        lines(&path).len(),
        4,
        "routed-b is not consumed by -Q routed-a"
    );
    assert_eq!(elsewhere.state().await.unwrap(), State::Pending);
    let mut connection = redis.connection();
    let waiting: usize = redis::cmd("LLEN")
        .arg("routed-b\x06\x169")
        .query(&mut connection)
        .unwrap();
    assert_eq!(
        waiting, 1,
        "still in its kombu list (default priority 0 = kombu 9)"
    );
    let binding: bool = redis::cmd("SISMEMBER")
        .arg("_kombu.binding.routed-a")
        .arg("routed-a\x06\x16\x06\x16routed-a")
        .query(&mut connection)
        .unwrap();
    assert!(binding, "the consumed queue has Celery's default binding");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_kept_aside_and_the_worker_goes_on() {
    let Some(redis) = TestRedis::shared(9) else {
        return;
    };
    let site = RedisSite::new(&redis.url, 60);
    let app = site.app();
    let queue = "bad-input";
    let good = app
        .message_for(&record(&site.dir.path().join("x"), "x").queue(queue))
        .unwrap();
    let envelope: Value = serde_json::from_str(
        &celery_web::protocol::Envelope::from_message(&good)
            .unwrap()
            .encode(),
    )
    .unwrap();
    let with = |pointer: &str, value: Option<Value>| {
        let mut changed = envelope.clone();
        let (parent, field) = pointer.rsplit_once('/').unwrap();
        let object = changed
            .pointer_mut(parent)
            .unwrap()
            .as_object_mut()
            .unwrap();
        match value {
            Some(value) => object.insert(field.to_owned(), value),
            None => object.remove(field),
        };
        changed.to_string()
    };
    let bad = [
        "this is not JSON".to_owned(),
        "{looks like an object}".to_owned(),
        with("/body", Some(json!("@@@ not base64 @@@"))),
        with("/headers/id", None),
        with("/headers/task", Some(json!("nobody.registered.this"))),
    ];
    let mut connection = redis.connection();
    for payload in &bad {
        let _: () = redis::cmd("LPUSH")
            .arg(queue)
            .arg(payload)
            .query(&mut connection)
            .unwrap();
    }
    let after = app
        .send(
            Signature::<i64>::with_output("interop.rust.add")
                .arg(2)
                .arg(2)
                .queue(queue),
        )
        .await
        .unwrap();
    let mut worker = site.spawn_worker("rs", &["-Q", queue]);
    assert_eq!(after.get(WAIT).await.unwrap(), 4, "the worker went on");
    assert!(worker.child.try_wait().unwrap().is_none(), "still running");
    let broker = RedisBroker::new(&redis.url, Duration::from_secs(60)).unwrap();
    let mut dead = Vec::new();
    for _ in 0..100 {
        dead = broker.dead_messages(queue).await.unwrap();
        if dead.len() >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(dead.len(), 5, "{dead:#?}");
    let reasons: Vec<&str> = dead.iter().map(|d| d["reason"].as_str().unwrap()).collect();
    for expected in [
        // Kept aside by the claim itself, never put in `unacked`.
        "not a JSON object",
        "envelope is not valid JSON",
        "body is not valid base64",
        "bad or missing header",
        "unregistered task `nobody.registered.this`",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(expected)),
            "no dead message says `{expected}`: {reasons:?}"
        );
    }
    // Each entry keeps the message as it was claimed.
    assert!(dead
        .iter()
        .any(|d| d["unacked"].as_str().unwrap().contains("this is not JSON")));
    let log = worker.log();
    assert!(
        log.contains("rejected a malformed message; kept it for inspection"),
        "{log}"
    );
    assert!(
        log.contains("received unregistered task `nobody.registered.this`"),
        "{log}"
    );
    // The last task's ack follows its stored result by a moment.
    let mut held = usize::MAX;
    for _ in 0..100 {
        held = redis::cmd("HLEN")
            .arg("unacked")
            .query(&mut connection)
            .unwrap();
        if held == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(held, 0, "nothing left claimed");
    worker.signal("TERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eta_tasks_wait_in_redis_not_in_the_worker() {
    let Some(redis) = TestRedis::shared(11) else {
        return;
    };
    // A visibility timeout far shorter than the countdowns: they must not be redelivered.
    // (3 s, not 1: the two tasks that run must not lose their leases on a loaded machine.)
    let site = RedisSite::new(&redis.url, 3);
    let app = site.app();
    let queue = "scheduled";
    let path = site.dir.path().join("runs.txt");
    let broker = RedisBroker::new(&redis.url, Duration::from_secs(3)).unwrap();
    let mut connection = redis.connection();
    // No celery-web worker consumes this queue yet: a countdown goes to the list, where a
    // Python worker would find it.
    app.send(
        record(&path, "for python")
            .countdown(3600)
            .queue("nobody-here"),
    )
    .await
    .unwrap();
    assert_eq!(broker.scheduled_count("nobody-here").await.unwrap(), 0);
    // (celery-web's default priority 0 is kombu's 9: the last step's list.)
    let listed: usize = redis::cmd("LLEN")
        .arg("nobody-here\x06\x169")
        .query(&mut connection)
        .unwrap();
    assert_eq!(
        listed, 1,
        "a queue without a celery-web consumer gets kombu's list"
    );
    // Once a celery-web worker consumes the queue, producers park countdowns.
    let worker = site.spawn_worker("rs", &["-Q", queue]);
    let marked = blocking({
        let mut connection = redis.connection();
        move || {
            eventually(WAIT, "the worker's consumer marker", || {
                let marked: bool = redis::cmd("EXISTS")
                    .arg(format!("_celery_web.consumers.{queue}"))
                    .query(&mut connection)
                    .unwrap();
                marked.then_some(())
            })
        }
    });
    marked.await;
    publish_all(
        &app,
        (0..100_000).map(|n| {
            record(&path, &format!("later-{n}"))
                .countdown(3600)
                .queue(queue)
        }),
    )
    .await;
    let sent_at = Instant::now();
    let soon = app
        .send(record(&path, "soon").countdown(4.0).queue(queue))
        .await
        .unwrap();
    assert_eq!(broker.scheduled_count(queue).await.unwrap(), 100_001);
    let now = app.send(record(&path, "now").queue(queue)).await.unwrap();
    assert_eq!(now.get(WAIT).await.unwrap(), "now");
    assert_eq!(soon.get(WAIT).await.unwrap(), "soon");
    assert!(
        sent_at.elapsed() >= Duration::from_millis(3950),
        "not before its countdown (ran after {:?}): {}",
        sent_at.elapsed(),
        worker.log()
    );
    // More than a visibility timeout later: each ran once, nothing claimed, 100,000 still
    // parked.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(lines(&path), ["now", "soon"]);
    let held: usize = redis::cmd("HLEN")
        .arg("unacked")
        .query(&mut connection)
        .unwrap();
    assert_eq!(held, 0, "the worker holds none of the scheduled tasks");
    assert_eq!(broker.scheduled_count(queue).await.unwrap(), 100_000);
    let status = std::fs::read_to_string(format!("/proc/{}/status", worker.child.id())).unwrap();
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    eprintln!("worker RSS with 100,000 scheduled tasks waiting: {rss_kb} kB");
    assert!(
        rss_kb < 64 * 1024,
        "the worker uses {rss_kb} kB: it holds scheduled messages"
    );
    // Purge removes the scheduled messages too.
    assert_eq!(
        app.broker().purge(&[queue.to_owned()]).await.unwrap(),
        100_000
    );
    assert_eq!(broker.scheduled_count(queue).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_command_empties_the_named_queues() {
    let Some(redis) = TestRedis::shared(12) else {
        return;
    };
    let site = RedisSite::new(&redis.url, 60);
    let app = site.app();
    let path = site.dir.path().join("never.txt");
    for priority in [0, 4, 9] {
        app.send(record(&path, "x").priority(priority).queue("purged"))
            .await
            .unwrap();
    }
    app.send(record(&path, "later").countdown(600).queue("purged"))
        .await
        .unwrap();
    app.send(record(&path, "kept").queue("kept")).await.unwrap();
    let output = site
        .site(&["celery", "purge", "-Q", "purged", "-f"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains('4'), "purged 4 messages: {stdout}");
    let mut connection = redis.connection();
    let left: Vec<String> = redis::cmd("KEYS")
        .arg("*purged*")
        .query(&mut connection)
        .unwrap();
    assert!(
        left.iter().all(|key| key.starts_with("_kombu.binding")),
        "{left:?}"
    );
    let kept: usize = redis::cmd("LLEN")
        .arg("kept\x06\x169")
        .query(&mut connection)
        .unwrap();
    assert_eq!(kept, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_publishes_on_kombus_channel_and_subscribes_to_it() {
    use celery_web::broker::{Broker, Exchange};
    use celery_web::protocol::{Envelope, Message};

    let Some(redis) = TestRedis::shared(13) else {
        return;
    };
    let broker = RedisBroker::new(&redis.url, Duration::from_secs(60)).unwrap();
    let broadcast = broker.broadcast().expect("Redis broadcasts over pub/sub");
    let events = Exchange::topic("celeryev");
    // What Flower does: PSUBSCRIBE /{db}.celeryev/*
    let mut listener = redis.connection();
    let mut pubsub = listener.as_pubsub();
    pubsub.psubscribe("/13.celeryev/*").unwrap();
    pubsub
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut ours = broadcast.subscribe(&events, "task.#").await.unwrap();
    let envelope = Envelope::from_message(&Message::new(
        "event",
        vec![serde_json::json!(1)],
        Default::default(),
    ))
    .unwrap();
    broadcast
        .send(&events, "task.succeeded", &envelope)
        .await
        .unwrap();
    let message = pubsub.get_message().unwrap();
    assert_eq!(message.get_channel_name(), "/13.celeryev/task.succeeded");
    let published: Envelope =
        serde_json::from_str(&message.get_payload::<String>().unwrap()).unwrap();
    assert_eq!(published, envelope, "kombu's envelope, as JSON");
    let received = tokio::time::timeout(Duration::from_secs(5), ours.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(received.routing_key, "task.succeeded");
    assert_eq!(received.envelope, envelope);
    // Another process's publish in kombu's layout reaches the subscription; junk is an error
    // item, not the end of the subscription.
    let mut publisher = redis.connection();
    redis::cmd("PUBLISH")
        .arg("/13.celeryev/task.failed")
        .arg("not json")
        .query::<i64>(&mut publisher)
        .unwrap();
    redis::cmd("PUBLISH")
        .arg("/13.celeryev/worker.heartbeat")
        .arg(envelope.encode())
        .query::<i64>(&mut publisher)
        .unwrap();
    redis::cmd("PUBLISH")
        .arg("/13.celeryev/task.sent")
        .arg(envelope.encode())
        .query::<i64>(&mut publisher)
        .unwrap();
    let junk = tokio::time::timeout(Duration::from_secs(5), ours.next())
        .await
        .unwrap()
        .unwrap();
    assert!(junk.is_err(), "{junk:?}");
    let next = tokio::time::timeout(Duration::from_secs(5), ours.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        next.routing_key, "task.sent",
        "worker.heartbeat is not bound"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_mid_run_loses_nothing() {
    let Some(mut server) = PrivateRedis::start() else {
        return;
    };
    let site = RedisSite::new(&server.url(), 2);
    let app = site.app();
    let queue = "restarted";
    let path = site.dir.path().join("runs.txt");
    publish_all(
        &app,
        (0..10_000).map(|n| record(&path, &n.to_string()).queue(queue)),
    )
    .await;
    let mut worker = site.spawn_worker("rs", &["-Q", queue, "-c", "16"]);
    let started = path.clone();
    blocking(move || {
        eventually(WAIT, "2,000 tasks ran", || {
            (lines(&started).len() >= 2_000).then_some(())
        })
    })
    .await;
    // Due after the restart; its result is awaited from before the server goes down.
    let scheduled = app
        .send(record(&path, "10200").countdown(2.5).queue(queue))
        .await
        .unwrap();
    server.kill();
    let awaited = tokio::spawn(async move { scheduled.get(Duration::from_secs(120)).await });
    // A producer sending while the server is down waits for it to come back.
    let producer = {
        let app = app.clone();
        let path = path.clone();
        tokio::spawn(async move {
            for n in 10_000..10_200 {
                app.send(record(&path, &n.to_string()).queue(queue))
                    .await
                    .unwrap();
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before_restart = lines(&path).len();
    server.restart();
    producer.await.unwrap();
    let done = path.clone();
    let missing = blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let lines = lines(&done);
            let ran: HashSet<u32> = lines.iter().filter_map(|l| l.parse().ok()).collect();
            assert!(ran.len() <= lines.len());
            let missing: Vec<u32> = (0..=10_200).filter(|n| !ran.contains(n)).collect();
            if missing.is_empty() || Instant::now() > deadline {
                return missing;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    })
    .await;
    assert!(
        missing.is_empty(),
        "{} tasks never ran after the restart (first: {:?}); {before_restart} had run before it",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert_eq!(
        awaited.await.unwrap().unwrap(),
        "10200",
        "AsyncResult::get waited through the outage"
    );
    let unreadable = lines(&path)
        .iter()
        .filter(|l| l.parse::<u32>().is_err())
        .count();
    assert_eq!(unreadable, 0, "every run wrote one whole line");
    assert!(
        worker.child.try_wait().unwrap().is_none(),
        "the worker kept running through the restart"
    );
    assert!(
        before_restart < 10_000,
        "the restart happened mid-run ({before_restart} had run)"
    );
    let log = worker.log();
    let complaints: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    eprintln!("the worker during the outage:\n{}", complaints.join("\n"));
    assert!(
        complaints.iter().any(|l| l.contains("redis at")),
        "the worker saw the outage: {log}"
    );
    worker.signal("TERM");
    eprintln!("data dir: {}", server.dir().display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_waits_on_the_server_without_polling() {
    // A private server, so the command counts are this worker's alone; with a password.
    let Some(server) = PrivateRedis::start_with_password(Some("s3cret")) else {
        return;
    };
    let site = RedisSite::new(&server.url(), 60);
    let app = site.app();
    let queue = "idle";
    let worker = site.spawn_worker("rs", &["-Q", queue]);
    worker.wait_for_log("worker ready", WAIT);
    let mut connection = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let calls = |connection: &mut redis::Connection, command: &str| -> u64 {
        let stats: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(connection)
            .unwrap();
        stats
            .lines()
            .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (claims, waits) = (
        calls(&mut connection, "evalsha"),
        calls(&mut connection, "blmove"),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let claims = calls(&mut connection, "evalsha") - claims;
    let waits = calls(&mut connection, "blmove") - waits;
    // One claim and one blocking wait per list (4 priority steps) per second.
    assert!(claims <= 4, "{claims} claims in 3 s of idling");
    assert!(waits <= 5 * 4, "{waits} blocking waits in 3 s of idling");
    // And it wakes as soon as a message lands.
    let clock = Instant::now();
    let path = site.dir.path().join("woke.txt");
    let woke = app.send(record(&path, "woke").queue(queue)).await.unwrap();
    assert_eq!(woke.get(WAIT).await.unwrap(), "woke");
    assert!(
        clock.elapsed() < Duration::from_millis(500),
        "took {:?}",
        clock.elapsed()
    );
}
