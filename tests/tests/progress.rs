//! Progress of long commands when stderr is not a terminal (a pipe here, as under CI or
//! supervisor): plain lines, no escape codes, and standard output unchanged.

use std::process::Output;

use celery_web::backend::TaskRecord;
use celery_web::task::{Signature, State};
use celery_web_tests::{Database, TestDb};

/// Runs `site args...` with stderr piped; returns (stdout, stderr), checked to succeed.
fn run(db: &TestDb, args: &[&str]) -> (String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = db.site(args).output().expect("site runs");
    let stdout = String::from_utf8(stdout).expect("utf-8");
    let stderr = String::from_utf8(stderr).expect("utf-8");
    assert!(status.success(), "site {args:?}: {stdout}{stderr}");
    (stdout, stderr)
}

/// The lines of `stderr` that report progress of `label`; none may carry a terminal escape
/// code or a carriage return (what a bar redraws itself with).
fn progress_lines<'a>(stderr: &'a str, label: &str) -> Vec<&'a str> {
    assert!(
        !stderr.contains('\x1b') && !stderr.contains('\r'),
        "escape codes in {stderr:?}"
    );
    stderr
        .lines()
        .filter(|line| line.starts_with(&format!("{label}: ")))
        .collect()
}

#[test]
fn migrate_purge_and_expire_print_plain_lines() {
    let db = TestDb::new(Database::Sqlite).expect("sqlite is always there");

    let (stdout, stderr) = run(&db, &["migrate"]);
    let applied: usize = stdout
        .trim()
        .strip_prefix("Applied ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(applied > 1, "{stdout}");
    let lines = progress_lines(&stderr, "migrate");
    assert!(
        lines.contains(&format!("migrate: {applied}/{applied} migrations (100%)").as_str()),
        "{stderr}"
    );
    assert!(
        lines
            .last()
            .is_some_and(|last| last.starts_with("migrate: done in ")
                && last.ends_with(&format!(": {applied} migrations"))),
        "{stderr}"
    );

    let app = db.app();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        for queue in ["a", "b", "b", "c"] {
            Signature::<i64>::with_output("example_site.demo.tasks.add")
                .arg(1)
                .arg(2)
                .queue(queue)
                .apply_async_on(&app)
                .await
                .unwrap();
        }
        // Three results from two days ago (past `result_expires`, one day) and one of now.
        let old = chrono::Utc::now() - chrono::Duration::days(2);
        let mut records: Vec<TaskRecord> = (0..3)
            .map(|n| {
                let mut record = TaskRecord::new(&format!("old-{n}"), State::Success);
                record.date_done = Some(old);
                record
            })
            .collect();
        records.push(TaskRecord::new("recent", State::Success));
        app.backend().unwrap().store(&records).await.unwrap();
    });

    let (stdout, stderr) = run(&db, &["celery", "purge", "-Q", "a,b,c", "-f"]);
    assert_eq!(stdout.trim(), "Purged 4 messages from 3 queues.");
    let lines = progress_lines(&stderr, "purge");
    assert_eq!(lines.first(), Some(&"purge: 1/3 queues (33%)"), "{stderr}");
    assert!(lines.contains(&"purge: 3/3 queues (100%)"), "{stderr}");
    assert!(
        lines
            .last()
            .is_some_and(|last| last.ends_with(": 4 messages")),
        "{stderr}"
    );

    let (stdout, stderr) = run(&db, &["celery", "expire-results"]);
    assert!(
        stdout.starts_with("Deleted 3 results finished before "),
        "{stdout}"
    );
    let lines = progress_lines(&stderr, "expire-results");
    assert_eq!(
        lines.first(),
        Some(&"expire-results: 3 results deleted"),
        "{stderr}"
    );
    assert!(
        lines
            .last()
            .is_some_and(|last| last.ends_with(": 3 results")),
        "{stderr}"
    );
    let left = runtime.block_on(async {
        let backend = app.backend().unwrap();
        (
            backend.fetch("old-0").await.unwrap(),
            backend.fetch("recent").await.unwrap(),
        )
    });
    assert!(left.0.is_none() && left.1.is_some(), "{left:?}");
}
