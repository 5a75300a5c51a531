//! celery-web workers on RabbitMQ, as processes (results on Redis): malformed messages kept
//! aside, a worker killed with SIGKILL mid-run, RabbitMQ restarted mid-run, 100,000
//! countdowns that wait in RabbitMQ rather than in the worker, a Python worker and a
//! celery-web worker on one queue, and priorities both ways.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use celery_web::protocol::Message;
use celery_web::task::Signature;
use celery_web::Celery;
use celery_web_tests::amqp_server::{PrivateRabbit, RawAmqp, TestVhost};
use celery_web_tests::redis_server::{python_celery_available, RedisSite, TestRedis};
use celery_web_tests::{eventually, Process};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// A vhost of the test's own, results in Redis database `db`; `None` when a service is
/// missing (a failure in CI).
fn site(db: u8) -> Option<(TestVhost, RedisSite)> {
    let vhost = TestVhost::create()?;
    let redis = TestRedis::shared(db)?;
    let site = RedisSite::new(&redis.url, 60).with_broker(&vhost.url);
    Some((vhost, site))
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// One line of `interop.shared.record`: `label side eta start`.
#[derive(Debug)]
struct Run {
    label: String,
    side: String,
    eta_us: Option<i64>,
    started_us: i64,
}

fn runs(path: &Path) -> Vec<Run> {
    lines(path)
        .iter()
        .map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            assert_eq!(fields.len(), 4, "a whole line: `{line}`");
            Run {
                label: fields[0].to_owned(),
                side: fields[1].to_owned(),
                eta_us: fields[2].parse().ok(),
                started_us: fields[3].parse().expect("start time"),
            }
        })
        .collect()
}

fn shared_record(path: &Path, label: &str) -> Signature<String> {
    Signature::with_output("interop.shared.record")
        .arg(path.to_str().unwrap())
        .arg(label)
}

/// Builds the messages of `signatures` and publishes them in calls of 5,000.
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

/// Waits until the labels `0..count` have all run at least once; returns the runs.
async fn wait_for_labels(path: &Path, count: usize, limit: Duration) -> Vec<Run> {
    let path = path.to_owned();
    blocking(move || {
        let deadline = Instant::now() + limit;
        loop {
            let runs = runs(&path);
            let seen: HashSet<&str> = runs.iter().map(|r| r.label.as_str()).collect();
            if seen.len() >= count {
                return runs;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {count} tasks ran in {limit:?}",
                seen.len()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
}

fn string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

/// Celery's headers and properties for a message of `task` (what kombu sends), with the
/// headers `drop` left out.
fn celery_properties(task: &str, drop: &[&str]) -> BasicProperties {
    let id = uuid::Uuid::new_v4().to_string();
    let mut headers = FieldTable::default();
    for (name, value) in [
        ("lang", "py"),
        ("task", task),
        ("id", id.as_str()),
        ("root_id", id.as_str()),
    ] {
        if !drop.contains(&name) {
            headers.insert(ShortString::from(name), string(value));
        }
    }
    headers.insert("retries".into(), AMQPValue::LongLongInt(0));
    headers.insert("argsrepr".into(), string("()"));
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("utf-8".into())
        .with_correlation_id(id.as_str().into())
        .with_delivery_mode(2)
        .with_priority(0)
        .with_headers(headers)
}

/// Every kind of bad input a worker can receive from RabbitMQ is moved to
/// `_celery_web.dead.<queue>` with its reason, unchanged, acked (never requeued in a loop),
/// and the worker goes on with the next task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_kept_aside_and_the_worker_goes_on() {
    let Some((vhost, site)) = site(1) else {
        return;
    };
    let queue = "bad-input";
    let mut worker = site.spawn_worker("rs", &["-Q", queue]);
    worker.wait_for_log("worker ready", Duration::from_secs(30));
    // A message published to a queue that does not exist yet is dropped by RabbitMQ: wait
    // for the worker's declaration (its first fetch).
    eventually(
        Duration::from_secs(30),
        "the worker declared its queue",
        || {
            vhost
                .queues(&["name"])
                .iter()
                .any(|row| row[0] == queue)
                .then_some(())
        },
    );
    let raw = RawAmqp::connect(&vhost.url).await;
    let good_body =
        br#"[[2, 3], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]"#;
    let add = "interop.rust.add";
    let bad: Vec<(&str, Vec<u8>, BasicProperties)> = vec![
        (
            "body is not JSON",
            b"this is not JSON".to_vec(),
            celery_properties(add, &[]),
        ),
        (
            "body is not [args, kwargs, embed]",
            br#"{"args": [2, 3]}"#.to_vec(),
            celery_properties(add, &[]),
        ),
        (
            "no task header",
            good_body.to_vec(),
            celery_properties(add, &["task"]),
        ),
        (
            "no id header",
            good_body.to_vec(),
            celery_properties(add, &["id", "root_id"]),
        ),
        (
            "no headers at all (protocol 1)",
            good_body.to_vec(),
            BasicProperties::default().with_content_type("application/json".into()),
        ),
        (
            "pickle",
            b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00]\x94.".to_vec(),
            celery_properties(add, &[]).with_content_type("application/x-python-serialize".into()),
        ),
        (
            "unregistered task",
            good_body.to_vec(),
            celery_properties("nobody.registered.this", &[]),
        ),
    ];
    for (what, body, properties) in &bad {
        // The message id names the case, to find it among the dead letters.
        let properties = properties.clone().with_message_id((*what).into());
        raw.publish(queue, body, properties).await;
    }
    // Wrong argument types are the task's failure, stored as its result, not bad input.
    let wrong_types = celery_properties(add, &[]);
    let wrong_id = wrong_types
        .correlation_id()
        .as_ref()
        .unwrap()
        .as_str()
        .to_owned();
    raw.publish(queue, br#"[["two", 3], {}, {}]"#, wrong_types)
        .await;
    let app = site.app();
    let after = app
        .send(
            Signature::<i64>::with_output(add)
                .arg(2)
                .arg(2)
                .queue(queue),
        )
        .await
        .unwrap();
    assert_eq!(after.get(WAIT).await.unwrap(), 4, "the worker went on");
    assert!(worker.child.try_wait().unwrap().is_none(), "still running");
    let failed = app
        .async_result::<i64>(&wrong_id)
        .get(WAIT)
        .await
        .expect_err("`two` is not an integer");
    assert!(
        failed.to_string().contains("two") || failed.to_string().contains("integer"),
        "{failed}; the worker's log:\n{}",
        worker.log()
    );

    let dead_queue = format!("_celery_web.dead.{queue}");
    eventually(
        Duration::from_secs(20),
        "every bad message kept aside",
        || (vhost.messages(&dead_queue) == bad.len() as u64).then_some(()),
    );
    assert_eq!(vhost.messages(queue), 0, "nothing left in the queue");
    let dead = raw.take_all(&dead_queue).await;
    assert_eq!(dead.len(), bad.len());
    let mut reasons = Vec::new();
    for message in &dead {
        let headers = message.properties.headers().clone().unwrap_or_default();
        let reason = match headers.inner().get("x-celery-web-reason") {
            Some(AMQPValue::LongString(reason)) => reason.to_string(),
            other => panic!("no reason header: {other:?}"),
        };
        assert_eq!(
            headers.inner().get("x-celery-web-queue"),
            Some(&string(queue))
        );
        // Kept unchanged: the body and the sender's headers as they arrived.
        let case = message.properties.message_id().clone().expect("the case");
        let (what, body, properties) = bad
            .iter()
            .find(|(what, _, _)| *what == case.as_str())
            .unwrap_or_else(|| panic!("a message we did not send: {reason}"));
        assert_eq!(body, &message.data, "{what}");
        for (name, value) in properties.headers().clone().unwrap_or_default().inner() {
            assert_eq!(
                headers.inner().get(name),
                Some(value),
                "{what}: header {name}"
            );
        }
        reasons.push(reason);
    }
    eprintln!("reasons: {reasons:#?}");
    for expected in [
        "body is not [args, kwargs, embed]: expected ident",
        "body is not [args, kwargs, embed]: expected a JSON array",
        "protocol v1 message (no `task` header)",
        "missing field `id`",
        "unsupported content type `application/x-python-serialize`",
        "unregistered task `nobody.registered.this`",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(expected)),
            "no reason says `{expected}`: {reasons:#?}"
        );
    }
    let log = worker.log();
    assert!(
        log.contains("received unregistered task `nobody.registered.this`"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    worker.signal("TERM");
    worker.wait_exit(Duration::from_secs(20)).expect("stopped");
    assert_eq!(vhost.messages(queue), 0, "nothing requeued at shutdown");
}

/// A worker killed with SIGKILL in the middle of a run: RabbitMQ gets its unacknowledged
/// messages back when the connection drops, and the next worker runs them (the task that
/// was running at the kill again, marked redelivered); every task completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_leaves_its_messages_to_rabbitmq() {
    let Some((vhost, site)) = site(2) else {
        return;
    };
    let queue = "killed";
    let app = site.app();
    let marks = site.dir.path().join("marks.txt");
    let path = site.dir.path().join("runs.txt");
    // The long task first: it is running when the worker dies.
    app.send(
        Signature::<String>::with_output("celery_web_tests.tasks.mark_and_sleep")
            .arg(marks.to_str().unwrap())
            .arg("long")
            .arg(30.0)
            .queue(queue),
    )
    .await
    .unwrap();
    publish_all(
        &app,
        (0..2_000).map(|n| shared_record(&path, &n.to_string()).queue(queue)),
    )
    .await;
    let mut first = site.spawn_worker("first", &["-Q", queue, "-c", "8"]);
    let watched = path.clone();
    blocking(move || {
        eventually(WAIT, "300 tasks ran", || {
            (lines(&watched).len() >= 300).then_some(())
        })
    })
    .await;
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(5)).expect("killed");
    let ran_before = runs(&path).len();
    assert!(ran_before < 2_000, "killed mid-run ({ran_before} had run)");
    // Nothing is lost with the process: RabbitMQ holds every message not acked.
    let unfinished = 2_000 - ran_before as u64;
    let held = eventually(
        Duration::from_secs(10),
        "RabbitMQ took the killed worker's messages back",
        || {
            let held = vhost.messages(queue);
            (held >= unfinished).then_some(held)
        },
    );
    // At most a prefetch (8 × 4) of tasks had run and were not acked yet, plus the long one.
    assert!(
        held <= unfinished + 1 + 32,
        "{held} messages held, {unfinished} unfinished"
    );

    // At debug level the worker logs each message it receives, redelivered or not.
    let second = Process::start(
        site.site(&[
            "celery",
            "worker",
            "-l",
            "debug",
            "-n",
            "second@%h",
            "-Q",
            queue,
            "-c",
            "8",
        ]),
        site.dir.path().join("worker-second.log"),
        "the second worker",
    );
    let all = wait_for_labels(&path, 2_000, WAIT).await;
    let counts = all
        .iter()
        .fold(HashMap::<&str, u32>::new(), |mut counts, run| {
            *counts.entry(run.label.as_str()).or_default() += 1;
            counts
        });
    let twice = counts.values().filter(|&&n| n > 1).count();
    assert!(
        twice <= 32,
        "only tasks running at the kill run again: {twice} ran twice"
    );
    let watched = marks.clone();
    blocking(move || {
        eventually(WAIT, "the long task ran again", || {
            (lines(&watched) == ["long", "long"]).then_some(())
        })
    })
    .await;
    assert!(
        second.log().contains("redelivered=true"),
        "the second worker saw redelivered messages"
    );
}

/// The RabbitMQ node stops and starts again while a worker runs 10,000 `acks_late` tasks: the
/// worker reconnects by itself (never restarted), messages whose acks were lost come back,
/// and every task completes; the producer's app, kept from before the outage, sends again
/// once the node is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rabbitmq_restart_mid_run_loses_nothing() {
    let Some(rabbit) = PrivateRabbit::start() else {
        return;
    };
    let Some(redis) = TestRedis::shared(3) else {
        return;
    };
    let site = RedisSite::new(&redis.url, 60).with_broker(&rabbit.url());
    let app = site.app();
    let queue = "restarted";
    let path = site.dir.path().join("runs.txt");
    publish_all(
        &app,
        (0..10_000).map(|n| shared_record(&path, &n.to_string()).queue(queue)),
    )
    .await;
    let mut worker = site.spawn_worker("rs", &["-Q", queue, "-c", "16"]);
    let watched = path.clone();
    blocking(move || {
        eventually(WAIT, "2,000 tasks ran", || {
            (lines(&watched).len() >= 2_000).then_some(())
        })
    })
    .await;
    rabbit.stop();
    let before_restart = lines(&path).len();
    // While the node is down a send fails after Celery's retries, with the broker named.
    let refused = app
        .send(shared_record(&path, "refused").queue(queue))
        .await
        .expect_err("no broker");
    assert!(refused.to_string().contains("127.0.0.1"), "{refused}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    rabbit.restart();
    for n in 10_000..10_200 {
        app.send(shared_record(&path, &n.to_string()).queue(queue))
            .await
            .unwrap();
    }
    let all = wait_for_labels(&path, 10_200, Duration::from_secs(180)).await;
    let seen: HashSet<&str> = all.iter().map(|r| r.label.as_str()).collect();
    assert!(
        !seen.contains("refused"),
        "the refused send was not half sent"
    );
    assert!(
        before_restart < 10_000,
        "the restart happened mid-run ({before_restart} had run)"
    );
    assert!(
        worker.child.try_wait().unwrap().is_none(),
        "the worker kept running through the restart"
    );
    let log = worker.log();
    assert!(
        log.contains("RabbitMQ connection lost; reconnecting"),
        "the worker saw the outage: {log}"
    );
    eprintln!(
        "{} runs for 10,200 tasks; {before_restart} before the restart",
        all.len()
    );
    worker.signal("TERM");
    worker.wait_exit(Duration::from_secs(30)).expect("stopped");
    eprintln!("node data: {}", rabbit.dir().display());
}

/// Resident memory of a process, from `/proc/<pid>/status`: (now, peak), in kB.
fn rss_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {status}"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// 100,000 countdown tasks wait in Celery's delay levels, not in the worker: while they
/// wait its memory stays small, none of them reaches the queue or runs, and RabbitMQ holds
/// every one. 1,000 shorter countdowns sent behind them pass through the same levels and run
/// once each, none before its eta.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_countdowns_wait_in_rabbitmq_not_in_the_worker() {
    let Some((vhost, site)) = site(4) else {
        return;
    };
    const WAITING: usize = 100_000;
    const SHORT: usize = 1_000;
    let queue = "countdowns";
    let worker = site.spawn_worker("rs", &["-Q", queue, "-c", "8"]);
    worker.wait_for_log("worker ready", Duration::from_secs(30));
    let (idle_rss, _) = rss_kb(worker.child.id());
    let app = site.app();
    let path = site.dir.path().join("runs.txt");
    let clock = Instant::now();
    // An hour ahead: still waiting however long RabbitMQ takes to route 100,000 messages
    // through the levels' exchanges (minutes on this 2-core machine).
    let in_an_hour = chrono::Utc::now() + chrono::Duration::hours(1);
    let waiting: Vec<Message> = (0..WAITING)
        .map(|n| {
            let signature = shared_record(&path, &format!("w{n}"))
                .eta(in_an_hour + chrono::Duration::milliseconds(n as i64))
                .queue(queue);
            app.message_for(&signature).unwrap()
        })
        .collect();
    // RabbitMQ routes a message through the levels in its channel's process: two
    // connections publish on both cores.
    let second_app = site.app();
    let publish = |app: &Celery, half: &[Message]| {
        let (app, half) = (app.clone(), half.to_vec());
        tokio::spawn(async move {
            for batch in half.chunks(5_000) {
                app.broker().publish(batch).await.unwrap();
            }
        })
    };
    let (first_half, second_half) = waiting.split_at(WAITING / 2);
    let publishers = [publish(&app, first_half), publish(&second_app, second_half)];
    for publisher in publishers {
        publisher.await.unwrap();
    }
    eprintln!("published {WAITING} countdowns in {:?}", clock.elapsed());

    let short: Vec<Message> = (0..SHORT)
        .map(|n| {
            let signature = shared_record(&path, &n.to_string())
                .countdown(5.0 + (n % 300) as f64 / 100.0)
                .queue(queue);
            app.message_for(&signature).unwrap()
        })
        .collect();
    app.broker().publish(&short).await.unwrap();
    let (waiting_rss, _) = rss_kb(worker.child.id());
    let ran = wait_for_labels(&path, SHORT, WAIT).await;
    let (now_rss, peak_rss) = rss_kb(worker.child.id());
    eprintln!(
        "worker RSS idle: {idle_rss} kB, with {WAITING} waiting: {waiting_rss} kB, after \
         the short ones ran: {now_rss} kB, peak: {peak_rss} kB"
    );
    // What the waiting tasks add, not the absolute figure: this is a debug build, whose
    // idle resident size (its own code, mapped) is already past 50 MB; a release worker's
    // is in BENCHMARKS.md. Held in memory, each message would take a kilobyte or more
    // (100 MB in all); 10 MB is 100 bytes a task.
    assert!(
        peak_rss.saturating_sub(idle_rss) < 10 * 1024,
        "peak RSS {peak_rss} kB against {idle_rss} kB idle with {WAITING} countdowns waiting"
    );
    assert_eq!(
        ran.len(),
        SHORT,
        "each short countdown ran once, none of the waiting ones"
    );
    let early: Vec<&Run> = ran
        .iter()
        .filter(|run| run.started_us < run.eta_us.expect("an eta") - 10_000)
        .collect();
    assert!(
        early.is_empty(),
        "{} ran before their eta: {:?}",
        early.len(),
        &early[..early.len().min(3)]
    );
    // Every waiting one is in RabbitMQ, in the levels: none in the queue, none lost.
    assert_eq!(vhost.messages(queue), 0, "none waits in the queue itself");
    let queues = vhost.queues(&["name", "messages"]);
    let in_levels: u64 = queues
        .iter()
        .filter(|row| row[0].starts_with("celery_delayed_"))
        .map(|row| row[1].trim().parse::<u64>().unwrap())
        .sum();
    // At least once: a publish retried after a lost confirm may store a message twice.
    assert!(
        in_levels >= WAITING as u64,
        "RabbitMQ holds every waiting countdown: {in_levels} of {WAITING}"
    );
    worker.signal("TERM");
}

/// A Python Celery worker and a celery-web worker consume one queue at once (declared by the
/// Rust worker, then by the Python one, with priorities on: no 406): every task runs once, on
/// one side or the other, and both sides take a share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_and_a_rust_worker_share_one_queue() {
    let Some((_vhost, site)) = site(5) else {
        return;
    };
    if !python_celery_available() {
        return;
    }
    let queue = "shared";
    let rust = site.spawn_worker("rs", &["-Q", queue, "-c", "4"]);
    rust.wait_for_log("worker ready", Duration::from_secs(30));
    let python = site.spawn_python_worker("py", queue, 4);
    python.wait_for_log("ready.", Duration::from_secs(30));
    let app = site.app();
    let path = site.dir.path().join("runs.txt");
    publish_all(
        &app,
        (0..2_000).map(|n| shared_record(&path, &n.to_string()).queue(queue)),
    )
    .await;
    let all = wait_for_labels(&path, 2_000, WAIT).await;
    assert_eq!(all.len(), 2_000, "every task once");
    let by_python = all.iter().filter(|run| run.side == "py").count();
    let by_rust = all.iter().filter(|run| run.side == "rs").count();
    eprintln!("Python ran {by_python}, celery-web {by_rust}");
    assert!(by_python > 0 && by_rust > 0, "both took a share");
    assert!(
        !python.log().contains("PRECONDITION_FAILED"),
        "{}",
        python.log()
    );
    assert!(
        !rust.log().contains("PRECONDITION_FAILED"),
        "{}",
        rust.log()
    );
}

/// Priorities on RabbitMQ (`x-max-priority` from `task_queue_max_priority`, declared the same
/// by both sides): tasks sent before any worker runs come out most urgent first, Python's
/// sent to a celery-web worker and celery-web's to a Python worker (AMQP: higher is more
/// urgent, on both sides).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priorities_order_workers_of_either_side() {
    let Some((_vhost, site)) = site(6) else {
        return;
    };
    if !python_celery_available() {
        return;
    }
    let site = PrioritySite(site);
    let order = |path: PathBuf, count: usize| {
        blocking(move || {
            eventually(WAIT, "every task ran", || {
                let runs = runs(&path);
                (runs.len() == count).then(|| runs.into_iter().map(|r| r.label).collect::<Vec<_>>())
            })
        })
    };

    // Python sends, celery-web runs.
    let path = site.0.dir.path().join("py-to-rs.txt");
    for (label, priority) in [("low", "1"), ("middle", "5"), ("high", "9")] {
        let args = json!([path.to_str().unwrap(), label]).to_string();
        site.interop(&[
            "send",
            "interop.shared.record",
            "--args",
            &args,
            "--priority",
            priority,
            "--queue",
            "py-priority",
        ]);
    }
    let rust = Process::start(
        site.worker_command(&[
            "celery",
            "worker",
            "-l",
            "info",
            "-Q",
            "py-priority",
            "-c",
            "1",
        ]),
        site.0.dir.path().join("worker-rs.log"),
        "the worker",
    );
    assert_eq!(order(path, 3).await, ["high", "middle", "low"]);
    drop(rust);

    // celery-web sends, Python runs.
    let app = Celery::from_settings(celery_web::Settings {
        task_queue_max_priority: Some(10),
        ..site.0.settings()
    })
    .unwrap();
    let path = site.0.dir.path().join("rs-to-py.txt");
    for (label, priority) in [("low", 1), ("middle", 5), ("high", 9)] {
        app.send(
            shared_record(&path, label)
                .priority(priority)
                .queue("rs-priority"),
        )
        .await
        .unwrap();
    }
    let mut command = site.0.python(&[
        "-m",
        "celery",
        "-A",
        "interop",
        "worker",
        "-P",
        "threads",
        "-c",
        "1",
        "-Q",
        "rs-priority",
        "-n",
        "py@%h",
        "--without-heartbeat",
        "--without-gossip",
        "--without-mingle",
        "-l",
        "info",
    ]);
    command.env("INTEROP_MAX_PRIORITY", "10");
    let python = Process::start(
        command,
        site.0.dir.path().join("python.log"),
        "the Python worker",
    );
    let ran = order(path, 3).await;
    assert!(
        !python.log().contains("PRECONDITION_FAILED"),
        "{}",
        python.log()
    );
    assert_eq!(ran, ["high", "middle", "low"]);
}

/// Both sides with `task_queue_max_priority = 10`.
struct PrioritySite(RedisSite);

impl PrioritySite {
    fn interop(&self, args: &[&str]) -> String {
        let mut full = vec!["interop.py"];
        full.extend_from_slice(args);
        let output = self
            .0
            .python(&full)
            .env("INTEROP_MAX_PRIORITY", "10")
            .output()
            .expect("python3 runs");
        assert!(
            output.status.success(),
            "interop.py {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    fn worker_command(&self, args: &[&str]) -> std::process::Command {
        let mut command = self.0.site(args);
        command.env("CELERY_TASK_QUEUE_MAX_PRIORITY", "10");
        command
    }
}
