//! Real processes: the site's web server and separate worker processes, signals and crashes.

use std::time::{Duration, Instant};

use celery_web_tests::{eventually, http_get, on_both_databases, Database, TestDb};
use serde_json::Value;

/// Runs a site command that must fail; returns its output (stdout, stderr).
fn failing(command: &mut std::process::Command) -> (String, String) {
    let output = command.output().expect("site runs");
    assert!(!output.status.success(), "expected a failure: {command:?}");
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// POSTs a form as an API client would (`Accept: application/json`): the site answers with
/// the task id rather than a redirect to the task's page.
fn http_post_form(url: &str, form: &[(&str, &str)]) -> (u16, Value) {
    match ureq::post(url)
        .set("Accept", "application/json")
        .send_form(form)
    {
        Ok(response) => (
            response.status(),
            response.into_json().unwrap_or(Value::Null),
        ),
        Err(ureq::Error::Status(code, response)) => {
            (code, response.into_json().unwrap_or(Value::Null))
        }
        Err(error) => panic!("POST {url}: {error}"),
    }
}

/// An HTTP request enqueues a task, a separate worker process runs it, the result page shows
/// SUCCESS; a signup commits its row and its task together.
fn request_to_result(kind: Database) {
    let Some(db) = TestDb::new(kind) else { return };
    db.run_site(&["migrate"]);
    let (_web, base) = db.runserver();
    let _worker = db.spawn_worker("e2e", &["-Q", "celery,emails", "-c", "2"]);

    let (status, body) = http_post_form(&format!("{base}/add"), &[("x", "2"), ("y", "40")]);
    assert_eq!(status, 202, "{body}");
    let id = body["task_id"].as_str().expect("task id").to_owned();
    let page = eventually(
        Duration::from_secs(20),
        "SUCCESS on the result page",
        || {
            http_get(&format!("{base}/tasks/{id}"))
                .filter(|page| page.contains(r#"<span id="state" class="state SUCCESS">"#))
        },
    );
    assert!(page.contains(r#"<pre id="result">42</pre>"#), "{page}");
    let json: Value =
        serde_json::from_str(&http_get(&format!("{base}/api/tasks/{id}")).unwrap()).unwrap();
    assert_eq!(json["state"], "SUCCESS");
    assert_eq!(json["result"], 42);
    assert!(json["worker"].as_str().unwrap().starts_with("e2e@"));

    let (status, body) = http_post_form(&format!("{base}/signup"), &[("email", "ada@example.com")]);
    assert_eq!(status, 201, "{body}");
    let welcome = body["task_id"].as_str().unwrap().to_owned();
    let json = eventually(Duration::from_secs(20), "the welcome email", || {
        let json: Value =
            serde_json::from_str(&http_get(&format!("{base}/api/tasks/{welcome}"))?).ok()?;
        (json["state"] == "SUCCESS").then_some(json)
    });
    assert_eq!(json["result"], "welcome sent to ada@example.com");
    // A duplicate signup rolls back: no row, and no second email enqueued.
    let (status, _) = http_post_form(&format!("{base}/signup"), &[("email", "ada@example.com")]);
    assert_eq!(status, 409);
    let purged = db.run_site(&["celery", "purge", "-Q", "emails", "-f"]);
    assert!(purged.contains("Purged 0 messages"), "{purged}");
}

on_both_databases!(request_to_result);

/// Sends `mark_and_sleep(marks, line, seconds)` from the command line; returns the task id.
fn call_mark_and_sleep(db: &TestDb, marks: &std::path::Path, line: &str, seconds: f64) -> String {
    let args = format!("[\"{}\", \"{line}\", {seconds:?}]", marks.display());
    db.run_site(&[
        "celery",
        "call",
        "celery_web_tests.tasks.mark_and_sleep",
        "--args",
        &args,
    ])
    .trim()
    .to_owned()
}

fn lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |text| text.lines().count())
}

/// `kill -9` in the middle of a task: the lease runs out, another worker runs the task again,
/// and its result is stored once.
fn killed_worker(kind: Database) {
    let Some(db) = TestDb::new(kind) else { return };
    db.run_site(&["migrate"]);
    let marks = db.dir.path().join("runs.txt");
    let id = call_mark_and_sleep(&db, &marks, "run", 3.0);
    let mut first = db.spawn_worker("first", &["-c", "1"]);
    eventually(Duration::from_secs(20), "the first run", || {
        (lines(&marks) == 1).then_some(())
    });
    // The example config has task_track_started: the running task shows STARTED.
    let state = eventually(Duration::from_secs(5), "STARTED", || {
        let output = db.run_site(&["celery", "result", &id]);
        output.starts_with("STARTED").then_some(output)
    });
    assert!(state.contains("\"hostname\":\"first@"), "{state}");
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(5)).expect("killed");
    let _second = db.spawn_worker("second", &["-c", "1"]);
    eventually(Duration::from_secs(30), "the second run", || {
        (lines(&marks) == 2).then_some(())
    });
    let output = db.run_site(&["celery", "result", &id, "--wait", "30"]);
    assert!(output.starts_with("SUCCESS"), "{output}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(lines(&marks), 2, "ran exactly twice");
}

on_both_databases!(killed_worker);

/// SIGTERM: the running task finishes and is stored; the unstarted one goes back to the
/// queue at once and another worker runs it.
fn warm_shutdown(kind: Database) {
    let Some(db) = TestDb::new(kind) else { return };
    db.run_site(&["migrate"]);
    let marks = db.dir.path().join("runs.txt");
    let running = call_mark_and_sleep(&db, &marks, "running", 2.0);
    let waiting = call_mark_and_sleep(&db, &marks, "waiting", 2.0);
    let mut worker = db.spawn_worker("warm", &["-c", "1"]);
    eventually(Duration::from_secs(20), "the first task to start", || {
        (lines(&marks) == 1).then_some(())
    });
    let clock = Instant::now();
    worker.signal("TERM");
    let status = worker
        .wait_exit(Duration::from_secs(15))
        .expect("worker exits");
    assert!(status.success(), "exit {status:?}: {}", worker.log());
    assert!(
        clock.elapsed() >= Duration::from_millis(1000),
        "it waited for the running task"
    );
    let output = db.run_site(&["celery", "result", &running]);
    assert!(
        output.starts_with("SUCCESS"),
        "running task finished: {output}"
    );
    let output = db.run_site(&["celery", "result", &waiting]);
    assert!(
        output.starts_with("PENDING"),
        "unstarted task not run: {output}"
    );
    assert_eq!(lines(&marks), 1);
    // Released, not leased: a new worker takes it at once (well within the lease).
    let _next = db.spawn_worker("next", &["-c", "1"]);
    let output = db.run_site(&["celery", "result", &waiting, "--wait", "20"]);
    assert!(output.starts_with("SUCCESS"), "{output}");
}

on_both_databases!(warm_shutdown);

/// Bad configuration stops the site at startup with the key's name.
#[test]
fn bad_config_names_the_key() {
    let db = TestDb::new(Database::Sqlite).expect("sqlite is always there");
    let config = db.dir.path().join("bad.toml");
    std::fs::write(&config, "[celery]\nbroker_ulr = \"sqlite://x.sqlite3\"\n").unwrap();
    let (_, stderr) = failing(db.site(&["migrate"]).env("SITE_CONFIG", &config));
    assert!(
        stderr.contains("broker_ulr") && stderr.contains("broker_url"),
        "{stderr}"
    );

    let (_, stderr) = failing(
        db.site(&["migrate"])
            .env("CELERY_WORKER_CONCURRENCY", "eight"),
    );
    assert!(stderr.contains("worker_concurrency"), "{stderr}");

    let (_, stderr) = failing(
        db.site(&["migrate"])
            .env("CELERY_BROKER_URL", "ftp://nowhere"),
    );
    assert!(stderr.contains("broker_url"), "{stderr}");
}

/// `call`, `inspect registered` and `purge` from the command line.
#[test]
fn manage_commands() {
    let db = TestDb::new(Database::Sqlite).expect("sqlite is always there");
    db.run_site(&["migrate"]);
    let registered = db.run_site(&["celery", "inspect", "registered"]);
    assert!(
        registered.contains("example_site.demo.tasks.add"),
        "{registered}"
    );
    assert!(registered.contains("example_site.accounts.tasks.send_welcome_email [queue=emails]"));
    for _ in 0..3 {
        db.run_site(&[
            "celery",
            "call",
            "example_site.demo.tasks.add",
            "--args",
            "[1, 2]",
            "--queue",
            "spare",
        ]);
    }
    db.run_site(&[
        "celery",
        "call",
        "example_site.demo.tasks.add",
        "--args",
        "[1, 2]",
        "--countdown",
        "600",
        "--queue",
        "spare",
    ]);
    // Without -f and with no answer on stdin, nothing is deleted.
    let (stdout, _) = failing(
        db.site(&["celery", "purge", "-Q", "spare"])
            .stdin(std::process::Stdio::null()),
    );
    assert!(stdout.contains("nothing was deleted"), "{stdout}");
    let purged = db.run_site(&["celery", "purge", "-Q", "spare", "-f"]);
    assert!(
        purged.contains("Purged 4 messages from 1 queue."),
        "{purged}"
    );
    let (_, stderr) = failing(&mut db.site(&["celery", "call", "x", "--args", "{not json"]));
    assert!(stderr.contains("--args must be a JSON list"), "{stderr}");
}

/// A second SIGTERM is a cold shutdown: the worker stops at once, and the task it was running
/// goes back to the queue for another worker.
#[test]
fn cold_shutdown() {
    let db = TestDb::new(Database::Sqlite).expect("sqlite is always there");
    db.run_site(&["migrate"]);
    let marks = db.dir.path().join("runs.txt");
    let id = call_mark_and_sleep(&db, &marks, "run", 30.0);
    let mut worker = db.spawn_worker("cold", &["-c", "1"]);
    eventually(Duration::from_secs(20), "the task to start", || {
        (lines(&marks) == 1).then_some(())
    });
    let clock = Instant::now();
    worker.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    worker.signal("TERM");
    let status = worker
        .wait_exit(Duration::from_secs(10))
        .expect("worker exits");
    assert!(
        clock.elapsed() < Duration::from_secs(10),
        "did not wait for the 30 s task"
    );
    assert!(status.success(), "{}", worker.log());
    assert!(worker.log().contains("cold shutdown"), "{}", worker.log());
    // Released at once: the next worker runs it again without waiting for the lease.
    let _next = db.spawn_worker("after-cold", &["-c", "1"]);
    eventually(Duration::from_secs(10), "the second run", || {
        (lines(&marks) == 2).then_some(())
    });
    let output = db.run_site(&["celery", "result", &id]);
    assert!(output.starts_with("STARTED"), "{output}");
}

/// `site` with no subcommand: migrations, web server and worker in one process.
#[test]
fn dev_mode_runs_web_and_worker() {
    let db = TestDb::new(Database::Sqlite).expect("sqlite is always there");
    let (dev, base) = db.dev_server();
    let (status, body) = http_post_form(&format!("{base}/add"), &[("x", "20"), ("y", "1")]);
    assert_eq!(status, 202, "{body}");
    let id = body["task_id"].as_str().unwrap().to_owned();
    let json = eventually(Duration::from_secs(20), "the result", || {
        let json: Value =
            serde_json::from_str(&http_get(&format!("{base}/api/tasks/{id}"))?).ok()?;
        (json["state"] == "SUCCESS").then_some(json)
    });
    assert_eq!(json["result"], 21);
    dev.signal("INT");
}
