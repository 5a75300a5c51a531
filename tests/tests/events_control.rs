//! Events and remote control of celery-web workers, checked with the real Python side:
//! Celery's event receiver (`tests/python/events.py`), Flower 2.2's HTTP API, and Python's
//! `celery inspect / control` CLI. Every test runs twice: on Redis (its own `redis-server`,
//! no shared database number) and on RabbitMQ (a virtual host of its own, results on a
//! private Redis). Needs `python3` with celery 5.5.3, redis and flower (CI installs them).

use std::process::{Command, Stdio};
use std::time::Duration;

use celery_web_tests::admin_client::{Session, USER};
use celery_web_tests::amqp_server::TestVhost;
use celery_web_tests::redis_server::{
    python, python_celery_available, python_dir, PrivateRedis, RedisSite,
};
use celery_web_tests::tmux::Tmux;
use celery_web_tests::{eventually, free_port, http_get, skip, Process};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);
const SLEEPY: &str = "celery_web_tests.tasks.mark_and_sleep";

/// The servers a test's site uses, kept until its end.
struct Servers {
    _redis: PrivateRedis,
    _vhost: Option<TestVhost>,
}

/// A site on a private Redis, with its broker on RabbitMQ when `rabbitmq`.
fn setup(rabbitmq: bool) -> Option<(Servers, RedisSite)> {
    let vhost = if rabbitmq {
        Some(TestVhost::create()?)
    } else {
        None
    };
    let redis = PrivateRedis::start()?;
    if !python_celery_available() {
        return None;
    }
    let mut site = RedisSite::new(&redis.url(), 60);
    if let Some(vhost) = &vhost {
        site = site.with_broker(&vhost.url);
    }
    let servers = Servers {
        _redis: redis,
        _vhost: vhost,
    };
    Some((servers, site))
}

/// Whether the site's broker is RabbitMQ.
fn on_rabbitmq(site: &RedisSite) -> bool {
    site.broker.starts_with("amqp")
}

/// One `#[test]` per broker for each test function, in modules `redis` and `rabbitmq`.
macro_rules! on_each_broker {
    ($($test:ident),* $(,)?) => {
        mod redis {
            $(#[test]
            fn $test() {
                if let Some((_servers, site)) = super::setup(false) {
                    super::$test(&site);
                }
            })*
        }
        mod rabbitmq {
            $(#[test]
            fn $test() {
                if let Some((_servers, site)) = super::setup(true) {
                    super::$test(&site);
                }
            })*
        }
    };
}

on_each_broker!(
    python_receivers_and_flower_see_a_rust_worker_and_its_tasks,
    pythons_inspect_and_control_command_a_rust_worker,
    revocations_are_shared_with_python_workers,
    the_sites_cli_commands_python_and_rust_workers,
    the_admin_asks_and_commands_workers_it_has_no_heartbeat_of,
);

fn flower_available() -> bool {
    let imported = Command::new(python())
        .args(["-c", "import flower"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !imported {
        skip("python3 with flower (pip install flower==2.2.0)");
    }
    imported
}

/// Python's `celery -b URL <args>`: (exit code, stdout).
fn celery_cli(site: &RedisSite, args: &[&str]) -> (i32, String) {
    let mut full = vec!["-m", "celery", "-b", site.broker.as_str()];
    full.extend_from_slice(args);
    let output = site.python(&full).output().expect("python3 runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// `celery inspect <method> --json` against the nodes: `{node: reply}`.
fn inspect(site: &RedisSite, args: &[&str]) -> Value {
    let mut full = vec!["inspect"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--json", "--timeout", "3"]);
    let (code, stdout) = celery_cli(site, &full);
    assert_eq!(code, 0, "celery {full:?}: {stdout}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("`{stdout}`: {e}"))
}

/// The node name a worker reported in its log.
fn node_name(worker: &Process) -> String {
    let log = worker.log();
    let line = log
        .lines()
        .find(|l| l.contains("worker ready"))
        .expect("worker ready");
    let start = line.find("hostname=").expect("hostname field") + "hostname=".len();
    line[start..].split_whitespace().next().unwrap().to_owned()
}

fn events_seen(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn receiver(site: &RedisSite, seconds: u32) -> (std::process::Child, std::path::PathBuf) {
    let path = site.dir.path().join("events.jsonl");
    let child = site
        .python(&["events.py", &site.broker, &seconds.to_string()])
        .stdout(std::fs::File::create(&path).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("the event receiver starts");
    eventually(WAIT, "the Python event receiver", || {
        events_seen(&path)
            .iter()
            .any(|e| e["type"] == "receiver-ready")
            .then_some(())
    });
    (child, path)
}

fn flower(site: &RedisSite) -> (Process, String) {
    let port = free_port();
    let log = site.dir.path().join("flower.log");
    let port_arg = format!("--port={port}");
    let mut command = site.python(&[
        "-m",
        "celery",
        "-A",
        "interop",
        "flower",
        &port_arg,
        "--address=127.0.0.1",
        "--persistent=False",
    ]);
    command.env("FLOWER_UNAUTHENTICATED_API", "1");
    let process = Process::start(command, log, "Flower");
    let base = format!("http://127.0.0.1:{port}");
    eventually(WAIT, "Flower answers", || {
        ureq::get(&format!("{base}/healthcheck"))
            .call()
            .ok()
            .map(|_| ())
    });
    (process, base)
}

fn get_json(url: &str) -> Option<Value> {
    ureq::get(url).call().ok()?.into_json().ok()
}

fn python_receivers_and_flower_see_a_rust_worker_and_its_tasks(site: &RedisSite) {
    if !flower_available() {
        return;
    }
    let (mut events, events_path) = receiver(site, 120);
    let (_flower, base) = flower(site);
    let mut worker = site.spawn_worker("ev", &["-E", "-c", "2"]);
    worker.wait_for_log("worker ready", WAIT);
    let node = node_name(&worker);

    // Flower lists the worker from its heartbeats alone, with its stats.
    let workers = eventually(WAIT, "Flower lists the worker", || {
        get_json(&format!("{base}/api/workers?refresh=1"))
            .filter(|w| w.get(&node).is_some_and(|w| w.get("stats").is_some()))
    });
    let stats = &workers[&node]["stats"];
    assert_eq!(stats["pool"]["max-concurrency"], 2, "{stats}");
    let transport = if on_rabbitmq(site) { "amqp" } else { "redis" };
    assert_eq!(stats["broker"]["transport"], transport, "{stats}");
    assert!(workers[&node]["registered"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t == "interop.rust.add"));

    // Tasks sent by Python run here; Flower and Celery's receiver see their events.
    let ok = site.interop(&["send", "interop.rust.add", "--args", "[2, 3]"]);
    let bad = site.interop(&["send", "interop.rust.fail", "--args", r#"["nope"]"#]);
    assert_eq!(site.python_get(&ok)["status"], "SUCCESS");
    assert_eq!(site.python_get(&bad)["status"], "FAILURE");
    // A celery-web sender with task_send_sent_event announces what it sends.
    let output = site
        .site(&["celery", "call", "interop.rust.add", "--args", "[4, 4]"])
        .env("CELERY_TASK_SEND_SENT_EVENT", "true")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let sent_id = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert_eq!(site.python_get(&sent_id)["result"], 8);
    let tasks = eventually(WAIT, "Flower lists the tasks", || {
        get_json(&format!("{base}/api/tasks")).filter(|t| {
            t.get(&ok).is_some_and(|t| t["state"] == "SUCCESS")
                && t.get(&bad).is_some_and(|t| t["state"] == "FAILURE")
                && t.get(&sent_id).is_some_and(|t| t["state"] == "SUCCESS")
        })
    });
    assert!(
        tasks.get(&sent_id).is_some_and(|t| t["sent"].is_f64()),
        "{tasks}"
    );
    let succeeded = &tasks[&ok];
    assert_eq!(succeeded["name"], "interop.rust.add", "{succeeded}");
    assert_eq!(succeeded["worker"], node.as_str(), "{succeeded}");
    assert_eq!(succeeded["result"], "5", "{succeeded}");
    assert!(
        succeeded["runtime"].as_f64().is_some_and(|r| r >= 0.0),
        "{succeeded}"
    );
    assert!(tasks[&bad]["exception"]
        .as_str()
        .unwrap()
        .contains("invalid digit"));
    // The worker page renders (it needs stats.total and stats.broker).
    let page = ureq::get(&format!("{base}/worker/{node}"))
        .call()
        .expect("worker page");
    assert_eq!(page.status(), 200);

    // Flower's terminate stops a running async task now.
    let marks = site.dir.path().join("marks.txt");
    let args = json!([marks.to_str().unwrap(), "slept", 60.0]).to_string();
    let sleepy = site.interop(&["send", SLEEPY, "--args", &args]);
    eventually(WAIT, "the sleepy task starts", || {
        marks.exists().then_some(())
    });
    let answer: Value = ureq::post(&format!("{base}/api/task/revoke/{sleepy}?terminate=true"))
        .call()
        .expect("Flower revokes")
        .into_json()
        .unwrap();
    assert!(
        answer["message"].as_str().unwrap().contains("Revoked"),
        "{answer}"
    );
    let revoked = site.python_get(&sleepy);
    assert_eq!(revoked["status"], "REVOKED", "{revoked}");

    // Flower's rate limit reaches the worker (Flower checks the name against its own app:
    // a task both sides define).
    let answer: Value = ureq::post(&format!("{base}/api/task/rate-limit/interop.shared.record"))
        .send_form(&[("workername", node.as_str()), ("ratelimit", "10/m")])
        .expect("Flower sets a rate limit")
        .into_json()
        .unwrap();
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("new rate limit set successfully"),
        "{answer}"
    );
    let registered = inspect(site, &["registered", "-d", &node]);
    assert!(
        registered[&node]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "interop.shared.record [rate_limit=10/m]"),
        "{registered}"
    );

    worker.signal("TERM");
    assert!(worker.wait_exit(WAIT).is_some_and(|s| s.success()));
    eventually(WAIT, "worker-offline", || {
        events_seen(&events_path)
            .iter()
            .any(|e| e["type"] == "worker-offline" && e["hostname"] == node.as_str())
            .then_some(())
    });
    let _ = events.kill();
    let _ = events.wait();

    // What Celery's receiver got, field by field.
    let seen = events_seen(&events_path);
    let of = |kind: &str, uuid: Option<&str>| -> Value {
        seen.iter()
            .find(|e| e["type"] == kind && uuid.is_none_or(|u| e["uuid"] == u))
            .cloned()
            .unwrap_or_else(|| panic!("no {kind} in {seen:#?}"))
    };
    for kind in ["worker-online", "worker-heartbeat", "worker-offline"] {
        let event = of(kind, None);
        for field in [
            "freq",
            "active",
            "processed",
            "loadavg",
            "sw_ident",
            "sw_ver",
            "sw_sys",
            "clock",
            "utcoffset",
            "pid",
            "hostname",
            "timestamp",
        ] {
            assert!(event.get(field).is_some(), "{field} in {event}");
        }
        assert_eq!(event["_routing_key"], kind.replace('-', "."), "{event}");
        assert_eq!(event["_batched"], false, "{event}");
        assert_eq!(event["_headers"], json!({"hostname": node}), "{event}");
    }
    assert_eq!(of("worker-heartbeat", None)["freq"], 2.0);
    let received = of("task-received", Some(&ok));
    for field in [
        "name",
        "args",
        "kwargs",
        "root_id",
        "parent_id",
        "retries",
        "eta",
        "expires",
    ] {
        assert!(received.get(field).is_some(), "{field} in {received}");
    }
    assert_eq!(received["name"], "interop.rust.add");
    assert_eq!(received["_routing_key"], "task.multi");
    assert_eq!(received["_batched"], true);
    of("task-started", Some(&ok));
    let done = of("task-succeeded", Some(&ok));
    assert_eq!(done["result"], "5");
    assert!(done["runtime"].is_f64(), "{done}");
    let failed = of("task-failed", Some(&bad));
    assert!(
        failed["exception"]
            .as_str()
            .unwrap()
            .contains("invalid digit"),
        "{failed}"
    );
    let sent = of("task-sent", Some(&sent_id));
    for field in [
        "name",
        "args",
        "kwargs",
        "retries",
        "eta",
        "expires",
        "queue",
        "exchange",
        "routing_key",
        "root_id",
        "parent_id",
    ] {
        assert!(sent.get(field).is_some(), "{field} in {sent}");
    }
    assert_eq!(sent["name"], "interop.rust.add");
    assert_eq!(sent["_routing_key"], "task.sent");
    assert_eq!(sent["queue"], "celery");
    let terminated = of("task-revoked", Some(&sleepy));
    assert_eq!(terminated["terminated"], true, "{terminated}");
    // Clocks only go forward.
    let clocks: Vec<u64> = seen
        .iter()
        .filter(|e| e["hostname"] == node.as_str())
        .filter_map(|e| e["clock"].as_u64())
        .collect();
    assert!(clocks.windows(2).all(|w| w[0] < w[1]), "{clocks:?}");
}

fn pythons_inspect_and_control_command_a_rust_worker(site: &RedisSite) {
    let mut worker = site.spawn_worker("rc", &["-c", "3", "-Q", "rc-a"]);
    worker.wait_for_log("worker ready", WAIT);
    let node = node_name(&worker);

    let (code, stdout) = celery_cli(site, &["inspect", "ping", "--timeout", "3"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains(&format!("{node}: OK")) && stdout.contains("pong"),
        "{stdout}"
    );
    assert_eq!(inspect(site, &["ping"])[&node], json!({"ok": "pong"}));

    let stats = &inspect(site, &["stats"])[&node];
    for key in [
        "total",
        "pid",
        "clock",
        "uptime",
        "pool",
        "broker",
        "prefetch_count",
        "rusage",
    ] {
        assert!(stats.get(key).is_some(), "{key} in {stats}");
    }
    assert!(
        stats["clock"].is_string(),
        "Celery sends the clock as a string: {stats}"
    );
    assert_eq!(stats["prefetch_count"], 12, "{stats}");

    let queues = &inspect(site, &["active_queues"])[&node];
    assert_eq!(queues[0]["name"], "rc-a", "{queues}");
    for key in [
        "exclusive",
        "durable",
        "routing_key",
        "no_ack",
        "alias",
        "queue_arguments",
        "binding_arguments",
        "auto_delete",
    ] {
        assert!(queues[0].get(key).is_some(), "{key} in {queues}");
    }
    let registered = &inspect(site, &["registered"])[&node];
    assert!(
        registered
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "interop.rust.add"),
        "{registered}"
    );

    // A running task shows in `active`, with Celery's request info.
    let marks = site.dir.path().join("marks.txt");
    let args = json!([marks.to_str().unwrap(), "slept", 60.0]).to_string();
    let sleepy = site.interop(&["send", SLEEPY, "--args", &args, "--queue", "rc-a"]);
    eventually(WAIT, "the sleepy task starts", || {
        marks.exists().then_some(())
    });
    let active = &inspect(site, &["active"])[&node];
    let request = &active[0];
    assert_eq!(request["id"], sleepy.as_str(), "{active}");
    assert_eq!(request["name"], SLEEPY);
    assert_eq!(
        request["args"][2], 60.0,
        "plain JSON args without safe: {request}"
    );
    assert_eq!(request["hostname"], node.as_str());
    assert_eq!(request["delivery_info"]["routing_key"], "rc-a");
    assert!(
        request["time_start"].is_f64() && request["worker_pid"].is_u64(),
        "{request}"
    );
    let queried = &inspect(site, &["query_task", &sleepy])[&node];
    assert_eq!(queried[&sleepy][0], "active", "{queried}");

    // Addressed requests: only the named node answers; others' are ignored.
    let (code, stdout) = celery_cli(
        site,
        &["inspect", "ping", "-d", "nobody@nowhere", "--timeout", "1"],
    );
    assert_ne!(code, 0, "{stdout}");
    // Unknown commands get Celery's error reply (sent as Python's `broadcast` would).
    let reply = site.interop(&["control-call", "no_such_method"]);
    let reply: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(
        reply[0][&node],
        json!({"error": "KeyError('no_such_method')"}),
        "{reply}"
    );

    // Revoke with terminate stops the running task; `revoked` lists it.
    let (code, stdout) = celery_cli(
        site,
        &["control", "terminate", "SIGTERM", &sleepy, "--timeout", "3"],
    );
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains(&format!("terminate: {sleepy}")), "{stdout}");
    assert_eq!(site.python_get(&sleepy)["status"], "REVOKED");
    let revoked = &inspect(site, &["revoked"])[&node];
    assert_eq!(revoked, &json!([sleepy]));

    // add_consumer / cancel_consumer change what it consumes.
    let (code, stdout) = celery_cli(site, &["control", "add_consumer", "rc-b", "--timeout", "3"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("add consumer rc-b"), "{stdout}");
    let id = site.interop(&[
        "send",
        "interop.rust.add",
        "--args",
        "[1, 2]",
        "--queue",
        "rc-b",
    ]);
    assert_eq!(site.python_get(&id)["result"], 3);
    let (_, stdout) = celery_cli(
        site,
        &["control", "cancel_consumer", "rc-b", "--timeout", "3"],
    );
    assert!(stdout.contains("no longer consuming from rc-b"), "{stdout}");
    let names: Vec<Value> = inspect(site, &["active_queues"])[&node]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("rc-a")]);

    // A malformed request is logged and dropped; the worker keeps answering.
    let (junk, dropped) = if on_rabbitmq(site) {
        (
            "from kombu import Connection, Exchange, Producer\n\
             with Connection(URL) as c:\n\
             \x20   Producer(c).publish(b'not json', exchange=Exchange('celery.pidbox', 'fanout', \
             durable=False), routing_key='', content_type='application/json', \
             content_encoding='utf-8')",
            "dropped a malformed remote-control request",
        )
    } else {
        (
            "import redis\nredis.Redis.from_url(URL).publish('/0.celery.pidbox', b'not json')",
            "dropped an unreadable remote-control message",
        )
    };
    let script = format!("URL = '{}'\n{junk}", site.broker);
    let output = site.python(&["-c", &script]).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(inspect(site, &["ping"])[&node], json!({"ok": "pong"}));
    worker.wait_for_log(dropped, WAIT);

    // `control shutdown` stops it warmly (no reply, as Celery: the CLI says no node replied).
    let (code, stdout) = celery_cli(site, &["control", "shutdown", "--timeout", "2"]);
    assert_eq!(code, 69, "{stdout}");
    let status = worker.wait_exit(WAIT).expect("the worker stops");
    assert!(status.success(), "{status:?}: {}", worker.log());
    assert!(worker.log().contains("Got shutdown from remote"));
}

/// How long a task to be revoked waits for its countdown, in seconds (see its use).
const REVOKE_COUNTDOWN: &str = "12";

/// Revocations cross languages: Python's `control revoke` makes our worker skip a task;
/// our `Control` client's revoke makes a Python worker skip one; mingle hands a starting
/// worker the revocations its peers know.
fn revocations_are_shared_with_python_workers(site: &RedisSite) {
    let mut worker = site.spawn_worker("rv", &["-Q", "rv-rs"]);
    worker.wait_for_log("worker ready", WAIT);
    let python_worker = site.spawn_python_worker("pyrv", "rv-py", 1);
    python_worker.wait_for_log("ready", WAIT);

    // Python revokes a task waiting for its countdown on our worker. The countdown leaves
    // room for two Python commands to start on a loaded machine (seconds each) before the
    // task falls due; a revoked task is stored as REVOKED when it does.
    let id = site.interop(&[
        "send",
        "interop.rust.add",
        "--args",
        "[1, 1]",
        "--countdown",
        REVOKE_COUNTDOWN,
        "--queue",
        "rv-rs",
    ]);
    let (code, stdout) = celery_cli(site, &["control", "revoke", &id, "--timeout", "2"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("flagged as revoked"), "{stdout}");
    assert_eq!(site.python_get(&id)["status"], "REVOKED");

    // We revoke a task waiting on the Python worker.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let app = site.app();
    let control = celery_web::control::Control::new(&app).unwrap();
    let id = site.interop(&[
        "send",
        "interop.py.add",
        "--args",
        "[1, 1]",
        "--countdown",
        REVOKE_COUNTDOWN,
        "--queue",
        "rv-py",
    ]);
    let mut arguments = serde_json::Map::new();
    arguments.insert("task_id".into(), json!([id]));
    let replies = runtime
        .block_on(control.call("revoke", arguments, None, Duration::from_secs(2)))
        .unwrap();
    assert!(
        replies.iter().any(|(node, reply)| node.starts_with("pyrv@")
            && reply["ok"]
                .as_str()
                .is_some_and(|t| t.contains("flagged as revoked"))),
        "{replies:?}"
    );
    assert_eq!(site.python_get(&id)["status"], "REVOKED");

    // A worker starting now learns both revocations from its peers (mingle).
    let late = site.spawn_worker("late", &["-Q", "rv-late"]);
    late.wait_for_log("worker ready", WAIT);
    assert!(late.log().contains("mingle: sync with"), "{}", late.log());
    let node = node_name(&late);
    let revoked = &inspect(site, &["revoked", "-d", &node])[&node];
    assert_eq!(revoked.as_array().map(Vec::len), Some(2), "{revoked}");
    worker.signal("TERM");
    worker.wait_exit(WAIT);
    let _ = python_dir();
}

/// A Python worker with Celery's defaults for events and remote control (heartbeats,
/// `-E`), on `queue`.
fn python_worker_with_events(site: &RedisSite, name: &str, queue: &str) -> Process {
    let log = site.dir.path().join(format!("python-{name}.log"));
    let hostname = format!("{name}@%h");
    let command = site.python(&[
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
        queue,
        "-n",
        &hostname,
        "-E",
        "--without-mingle",
        "-l",
        "info",
    ]);
    Process::start(command, log, "the Python worker")
}

/// The site's own `celery inspect / status / control / events --dump` work against a
/// Python worker and a celery-web worker alike.
fn the_sites_cli_commands_python_and_rust_workers(site: &RedisSite) {
    let rust = site.spawn_worker("cli-rs", &["-E", "-Q", "cli-rs"]);
    rust.wait_for_log("worker ready", WAIT);
    let rust_node = node_name(&rust);
    let python_worker = python_worker_with_events(site, "cli-py", "cli-py");
    python_worker.wait_for_log("ready", WAIT);
    let python_node = rust_node.replace("cli-rs@", "cli-py@");

    let dump_path = site.dir.path().join("dump.jsonl");
    let mut dump = site
        .site(&["celery", "events", "--dump", "--json", "--duration", "120"])
        .stdout(std::fs::File::create(&dump_path).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The live view, in a real terminal: listening once it has drawn its first screen.
    let live = Tmux::run(
        &site.site(&["celery", "events", "--duration", "120"]),
        200,
        40,
    );
    if let Some(live) = &live {
        eventually(WAIT, "the live view's first screen", || {
            live.screen().contains("celery events on").then_some(())
        });
    }
    std::thread::sleep(Duration::from_millis(500));

    let run = |args: &[&str]| {
        let output = site.site(args).output().expect("site runs");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let (code, stdout) = run(&["celery", "inspect", "ping", "--json", "--timeout", "2"]);
    assert_eq!(code, 0, "{stdout}");
    let pings: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(pings[&python_node], json!({"ok": "pong"}), "{pings}");
    assert_eq!(pings[&rust_node], json!({"ok": "pong"}), "{pings}");

    let (code, stdout) = run(&["celery", "report"]);
    assert_eq!(code, 0, "{stdout}");
    let transport = if on_rabbitmq(site) { "amqp" } else { "redis" };
    assert!(
        stdout.starts_with("software -> celery-web:")
            && stdout.contains(&format!("settings -> transport:{transport}")),
        "{stdout}"
    );

    let (code, stdout) = run(&["celery", "status", "--timeout", "2"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains(&format!("->  {python_node}: OK")),
        "{stdout}"
    );
    assert!(stdout.contains("2 nodes online."), "{stdout}");

    let (code, stdout) = run(&[
        "celery",
        "inspect",
        "registered",
        "-d",
        &python_node,
        "--json",
    ]);
    assert_eq!(code, 0, "{stdout}");
    let registered: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(
        registered.get(&rust_node).is_none(),
        "only the destination answers"
    );
    assert!(registered[&python_node]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t == "interop.py.add"));

    let (code, stdout) = run(&["celery", "inspect", "stats", "-d", &python_node, "--json"]);
    assert_eq!(code, 0, "{stdout}");
    let stats: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(
        stats[&python_node]["pool"]["max-concurrency"] == 1,
        "{stats}"
    );

    // Our revoke broadcast makes the Python worker skip a task.
    let id = site.interop(&[
        "send",
        "interop.py.add",
        "--args",
        "[1, 1]",
        "--countdown",
        "3",
        "--queue",
        "cli-py",
    ]);
    let (code, stdout) = run(&["celery", "control", "revoke", &id, "--timeout", "2"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains(&format!("->  {python_node}: OK")) && stdout.contains("flagged as revoked"),
        "{stdout}"
    );
    assert_eq!(site.python_get(&id)["status"], "REVOKED");

    // Each runs a task; the dump shows both workers' events.
    let py_task = site.interop(&[
        "send",
        "interop.py.add",
        "--args",
        "[2, 2]",
        "--queue",
        "cli-py",
    ]);
    let rs_task = site.interop(&[
        "send",
        "interop.rust.add",
        "--args",
        "[3, 3]",
        "--queue",
        "cli-rs",
    ]);
    assert_eq!(site.python_get(&py_task)["result"], 4);
    assert_eq!(site.python_get(&rs_task)["result"], 6);
    let (code, _) = run(&[
        "celery",
        "inspect",
        "nobody",
        "-d",
        "nobody@nowhere",
        "--timeout",
        "0.5",
    ]);
    assert_eq!(code, 69, "no node replied");

    // Python's worker flushes its task events on its own schedule: wait for them.
    for (node, task) in [(&python_node, &py_task), (&rust_node, &rs_task)] {
        eventually(WAIT, "both workers' events in the dump", || {
            let events = events_seen(&dump_path);
            let heartbeat = events
                .iter()
                .any(|e| e["type"] == "worker-heartbeat" && e["hostname"] == node.as_str());
            let succeeded = events.iter().any(|e| {
                e["type"] == "task-succeeded"
                    && e["uuid"] == task.as_str()
                    && e["hostname"] == node.as_str()
            });
            (heartbeat && succeeded).then_some(())
        });
    }
    let _ = dump.kill();
    let _ = dump.wait();

    // The live view lists both workers online and both tasks as succeeded; `q` quits it.
    let Some(live) = live else {
        return;
    };
    eventually(WAIT, "both workers and tasks in the live view", || {
        let screen = live.screen();
        let shown = [&python_node, &rust_node].iter().all(|node| {
            screen
                .lines()
                .any(|l| l.contains(node.as_str()) && l.contains("online"))
        }) && [&py_task, &rs_task].iter().all(|task| {
            screen
                .lines()
                .any(|l| l.contains(task.as_str()) && l.contains("SUCCESS"))
        });
        shown.then_some(())
    });
    live.send_keys("q");
    eventually(WAIT, "the live view quits on q", || {
        (!live.is_running()).then_some(())
    });
}

/// The admin's workers page asks the workers over remote control: a Python worker and a
/// celery-web worker whose database is not the admin's (so no heartbeat row) are listed,
/// with the task running on the latter; the page terminates that task and sets a rate
/// limit on the worker.
fn the_admin_asks_and_commands_workers_it_has_no_heartbeat_of(site: &RedisSite) {
    let migrate = |database: &str| {
        let output = site
            .site(&["migrate"])
            .env("CELERY_DATABASE_URL", database)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
    };
    let own = format!(
        "sqlite://{}",
        site.dir.path().join("worker-own.sqlite3").display()
    );
    migrate(&own);
    let mut command = site.site(&["celery", "worker", "-l", "info", "-n", "adm-rs@%h"]);
    command
        .args(["-Q", "adm-rs"])
        .env("CELERY_DATABASE_URL", &own);
    let rust = Process::start(command, site.dir.path().join("worker-adm-rs.log"), "worker");
    rust.wait_for_log("worker ready", WAIT);
    let rust_node = node_name(&rust);
    let python_worker = python_worker_with_events(site, "adm-py", "adm-py");
    python_worker.wait_for_log("ready", WAIT);
    let python_node = rust_node.replace("adm-rs@", "adm-py@");

    // The admin, on the site's own database.
    migrate(&site.dir.sqlite_url());
    let bind = format!("127.0.0.1:{}", free_port());
    let log = site.dir.path().join("web.log");
    let _web = Process::start(site.site(&["runserver", "--bind", &bind]), log, "web");
    eventually(WAIT, "the web server", || {
        http_get(&format!("http://{bind}/"))
    });
    let admin = format!("http://{bind}/admin/celery");
    let (session, answer) = Session::log_in(&admin, USER.1);
    assert_eq!(answer.status, 303, "{}", answer.body);

    let marks = site.dir.path().join("admin-marks.txt");
    let args = json!([marks.to_str().unwrap(), "slept", 60.0]).to_string();
    let sleepy = site.interop(&["send", SLEEPY, "--args", &args, "--queue", "adm-rs"]);
    eventually(WAIT, "the sleepy task starts", || {
        marks.exists().then_some(())
    });
    let page = eventually(WAIT, "the workers page lists both workers", || {
        let page = session.get(&format!("{admin}/workers"));
        let listed = [&python_node, &rust_node, &sleepy]
            .iter()
            .all(|text| page.body.contains(text.as_str()));
        listed.then_some(page)
    });
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("interop.rust.add"),
        "registered tasks offered"
    );
    let dashboard = session.get(&admin);
    assert!(
        dashboard.body.contains(&python_node),
        "the dashboard lists it too"
    );

    let answer = session.post_form(
        &format!("{admin}/workers/revoke"),
        &[("task_id", &sleepy), ("terminate", "1")],
    );
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert!(
        answer
            .location
            .as_deref()
            .unwrap_or_default()
            .contains("Terminated"),
        "{:?}",
        answer.location
    );
    assert_eq!(site.python_get(&sleepy)["status"], "REVOKED");

    let answer = session.post_form(
        &format!("{admin}/workers/rate_limit"),
        &[
            ("task_name", "interop.rust.add"),
            ("rate_limit", "10/m"),
            ("worker", &rust_node),
        ],
    );
    assert_eq!(answer.status, 303, "{}", answer.body);
    let notice = answer.location.unwrap_or_default();
    assert!(
        notice.contains("new+rate+limit+set+successfully"),
        "{notice}"
    );
    rust.wait_for_log(
        "New rate limit for tasks of type interop.rust.add: 10/m",
        WAIT,
    );
    // A bad rate is refused by the page before any worker hears of it.
    let answer = session.post_form(
        &format!("{admin}/workers/rate_limit"),
        &[("task_name", "interop.rust.add"), ("rate_limit", "fast")],
    );
    assert_eq!(answer.status, 400, "{}", answer.body);
}
