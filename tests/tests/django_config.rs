//! A Django project's Celery config (Celery 3 UPPERCASE names, CELERY_QUEUES, CELERYD_FORCE_EXECV,
//! ...) runs the example site's worker unchanged: it starts, warns about what has no effect, and
//! runs a task.

use std::path::PathBuf;
use std::time::Duration;

use celery_web_tests::{eventually, Database, TestDb};

/// celery-web's fixture of a Django project's Celery config.
fn django_config() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../celery-web/src/settings/fixtures/django_project.toml")
}

#[test]
fn a_django_projects_celery_config_runs_the_worker() {
    let db = TestDb::new(Database::Sqlite).expect("SQLite is always available");
    let site = |args: &[&str]| {
        let mut command = db.site(args);
        command.env("SITE_CONFIG", django_config());
        command
    };
    let output = site(&["migrate"]).output().expect("site runs");
    assert!(
        output.status.success(),
        "migrate failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let log = db.dir.path().join("worker-django.log");
    let worker = celery_web_tests::Process::start(
        site(&["celery", "worker", "-l", "info", "-n", "django@%h"]),
        log,
        "the worker",
    );
    worker.wait_for_log("worker ready", Duration::from_secs(20));

    // CELERY_DEFAULT_QUEUE = "default": the task goes there, and the worker consumes it.
    let marks = db.dir.path().join("marks.txt");
    let args = format!("[\"{}\", \"ran\", 0.0]", marks.display());
    let output = site(&[
        "celery",
        "call",
        "celery_web_tests.tasks.mark_and_sleep",
        "--args",
        &args,
    ])
    .output()
    .expect("site runs");
    assert!(
        output.status.success(),
        "call failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    eventually(Duration::from_secs(15), "the task's mark", || {
        std::fs::read_to_string(&marks)
            .ok()
            .filter(|text| text.contains("ran"))
    });

    let log = worker.log();
    assert!(log.contains("CELERYD_FORCE_EXECV"), "{log}");
    assert!(log.contains("no effect: use --pool process"), "{log}");
    assert!(log.contains("rename it to `task_queues`"), "{log}");
}
