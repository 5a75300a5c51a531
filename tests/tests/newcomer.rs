//! What a new user meets in a fresh folder before running `site migrate`: every command that
//! needs celery-web's tables says they are missing and names the command that creates them,
//! and a worker on Redis with an unmigrated default database says so once, then goes on.

use std::process::Command;
use std::time::Duration;

use celery_web_tests::redis_server::TestRedis;
use celery_web_tests::{site_binary, site_config, Process, ScratchDir};

const HINT: &str = "run `site migrate` first";

/// `site args...` in `dir` with the shipped config (its SQLite file is relative: it lands in
/// `dir`) and no `CELERY_*` overrides from the test's environment.
fn site(dir: &ScratchDir, args: &[&str]) -> Command {
    let mut command = Command::new(site_binary());
    command
        .args(args)
        .current_dir(dir.path())
        .env("SITE_CONFIG", site_config())
        .env_remove("RUST_LOG");
    for (key, _) in std::env::vars() {
        if key.starts_with("CELERY_") && !key.starts_with("CELERY_WEB_") {
            command.env_remove(key);
        }
    }
    command
}

#[test]
fn commands_in_an_unmigrated_folder_name_the_migrate_command() {
    let dir = ScratchDir::new();
    for (args, table) in [
        (&["celery", "beat", "--list"][..], "celery_periodic_task"),
        (&["celery", "bench", "--tasks", "5"][..], "celery_message"),
        (
            &["celery", "call", "tasks.add", "--args", "[1, 2]"][..],
            "celery_message",
        ),
        (
            &["celery", "purge", "-Q", "celery", "-f"][..],
            "celery_message",
        ),
        (&["celery", "result", "some-id"][..], "celery_taskresult"),
        (&["celery", "expire-results"][..], "celery_taskresult"),
        (
            &["celery", "control", "revoke", "some-id"][..],
            "celery_revoked",
        ),
        (&["celery", "worker", "-l", "info"][..], "celery_message"),
    ] {
        let output = site(&dir, args)
            .output()
            .unwrap_or_else(|e| panic!("site {args:?}: {e}"));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "site {args:?} succeeded: {stderr}"
        );
        assert!(
            stderr.contains(&format!("no such table: {table}")) && stderr.contains(HINT),
            "site {args:?} said:\n{stderr}"
        );
    }
    // After the command the hint names, the same commands work.
    let migrated = site(&dir, &["migrate"]).output().unwrap();
    assert!(migrated.status.success(), "{migrated:?}");
    let listed = site(&dir, &["celery", "beat", "--list"]).output().unwrap();
    assert!(listed.status.success(), "{listed:?}");
}

#[test]
fn a_redis_worker_without_migrations_says_it_once_and_goes_on() {
    let Some(redis) = TestRedis::shared(11) else {
        return;
    };
    let dir = ScratchDir::new();
    let url = redis.url.clone();
    let mut command = site(
        &dir,
        &["celery", "worker", "-l", "info", "-n", "newcomer@%h"],
    );
    command
        .env("CELERY_BROKER_URL", &url)
        .env("CELERY_RESULT_BACKEND", &url);
    let worker = Process::start(command, dir.path().join("worker.log"), "the worker");
    worker.wait_for_log("worker ready", Duration::from_secs(20));
    // Three heartbeats' worth (every 2 s).
    std::thread::sleep(Duration::from_secs(7));
    let log = worker.log();
    let hints = log.lines().filter(|line| line.contains(HINT)).count();
    assert_eq!(hints, 1, "the missing tables are reported once:\n{log}");
    assert!(log.contains("no such table: celery_worker"), "{log}");
    // It goes on: a task sent now runs.
    let call = site(&dir, &["celery", "call", "tasks.add", "--args", "[20, 22]"])
        .env("CELERY_BROKER_URL", &url)
        .env("CELERY_RESULT_BACKEND", &url)
        .output()
        .unwrap();
    assert!(call.status.success(), "{call:?}");
    let id = String::from_utf8_lossy(&call.stdout).trim().to_owned();
    let result = site(&dir, &["celery", "result", &id, "--wait", "20"])
        .env("CELERY_BROKER_URL", &url)
        .env("CELERY_RESULT_BACKEND", &url)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&result.stdout);
    assert!(printed.contains("42"), "{printed} {result:?}");
}
