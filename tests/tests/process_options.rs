//! The options operators expect of `worker` and `beat`: `--pidfile` (a second process refuses
//! to start), `--logfile` (reopened on SIGUSR1 and SIGHUP, for logrotate), `--log-format json`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use celery_web_tests::{eventually, Database, Process, TestDb};
use serde_json::Value;

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn wait_for_line(path: &Path, text: &str) {
    eventually(Duration::from_secs(30), text, || {
        read(path).contains(text).then_some(())
    });
}

fn signal(process: &Process, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &process.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// A worker and a beat with the same pidfile as a running one refuse to start and say why;
/// the file goes at a warm exit; a stale file (its process is dead) is replaced.
#[test]
fn pidfile_refuses_a_second_process() {
    let db = TestDb::new(Database::Sqlite).expect("sqlite is always there");
    db.run_site(&["migrate"]);
    let pidfile = db.dir.path().join("worker.pid");
    let pidfile_arg = pidfile.display().to_string();
    let mut first = db.spawn_worker("first", &["--pidfile", &pidfile_arg]);
    first.wait_for_log("worker ready", Duration::from_secs(30));
    assert_eq!(read(&pidfile).trim(), first.child.id().to_string());

    for command in [["worker", "-c", "1"], ["beat", "-l", "info"]] {
        let output = db
            .site(&["celery", command[0], command[1], command[2]])
            .args(["--pidfile", &pidfile_arg])
            .output()
            .unwrap();
        assert!(!output.status.success(), "{command:?} started");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("still running") && stderr.contains(&first.child.id().to_string()),
            "{stderr}"
        );
    }
    assert_eq!(read(&pidfile).trim(), first.child.id().to_string());

    signal(&first, "TERM");
    let status = first.wait_exit(Duration::from_secs(20)).expect("exits");
    assert!(status.success(), "{}", first.log());
    assert!(!pidfile.exists(), "removed at exit");

    // A pid file left by a dead process (kill -9 leaves one) does not stop the next start.
    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    std::fs::write(&pidfile, format!("{dead_pid}\n")).unwrap();
    let second = db.spawn_worker("second", &["--pidfile", &pidfile_arg]);
    second.wait_for_log("worker ready", Duration::from_secs(30));
    assert_eq!(read(&pidfile).trim(), second.child.id().to_string());
}

/// logrotate's way: move the file, signal; the process writes to a new file at the old path.
/// Worker on SIGUSR1, beat on SIGHUP.
#[test]
fn logfile_is_reopened_on_signal() {
    let db = TestDb::new(Database::Sqlite).expect("sqlite is always there");
    db.run_site(&["migrate"]);
    let dir = db.dir.path();
    for (role, signal_name, ready) in [
        ("worker", "USR1", "worker ready"),
        ("beat", "HUP", "beat: starting"),
    ] {
        let logfile = dir.join(format!("{role}.log"));
        let rotated = dir.join(format!("{role}.log.1"));
        let logfile_arg = logfile.display().to_string();
        let process = Process::start(
            db.site(&["celery", role, "-l", "info", "--logfile", &logfile_arg]),
            dir.join(format!("{role}.stderr")),
            role,
        );
        wait_for_line(&logfile, ready);
        assert_eq!(
            read(&dir.join(format!("{role}.stderr"))),
            "",
            "nothing on stderr"
        );
        std::fs::rename(&logfile, &rotated).unwrap();
        signal(&process, signal_name);
        wait_for_line(&logfile, "log file reopened");
        let old = read(&rotated);
        assert!(!old.contains("log file reopened"), "{old}");
        assert!(old.contains(ready), "{old}");
    }
}

/// `--log-format json`: every line is a JSON object with timestamp, level, target, message.
#[test]
fn json_log_lines_parse() {
    let db = TestDb::new(Database::Sqlite).expect("sqlite is always there");
    db.run_site(&["migrate"]);
    let logfile = db.dir.path().join("worker.json");
    let logfile_arg = logfile.display().to_string();
    let worker = db.spawn_worker("json", &["--log-format", "json", "--logfile", &logfile_arg]);
    wait_for_line(&logfile, "worker ready");
    let output = db.run_site(&["celery", "call", "tasks.add", "--args", "[1, 2]"]);
    let id = output.trim();
    let result = db.run_site(&["celery", "result", id, "--wait", "20"]);
    assert!(result.starts_with("SUCCESS"), "{result}");
    drop(worker);
    let text = read(&logfile);
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert!(lines.len() >= 2, "{text}");
    for line in &lines {
        for key in ["timestamp", "level", "target", "message"] {
            assert!(line[key].is_string(), "{key} missing: {line}");
        }
        chrono::DateTime::parse_from_rfc3339(line["timestamp"].as_str().unwrap()).unwrap();
    }
    assert!(
        lines
            .iter()
            .any(|line| line["message"] == "worker ready" && line["level"] == "INFO"),
        "{text}"
    );
}
