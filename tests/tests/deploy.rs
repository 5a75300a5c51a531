//! `site celery deploy`: the generated files run the site under a real supervisord (the
//! `supervisor` package from PyPI) and a stop, a `kill -9` and a restart under load lose no task;
//! the systemd units pass `systemd-analyze verify` where it exists.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use celery_web_tests::{eventually, free_port, http_get, skip, Database, Process, TestDb};

/// A private supervisord (own config, socket, pid and log files in the test's scratch
/// directory); shut down, with every program it runs, when dropped.
struct Supervisord {
    process: Process,
    config: PathBuf,
}

impl Supervisord {
    /// Starts `supervisord -n` with `programs` (an include file) in `dir`; `None` when
    /// supervisord is not installed.
    fn start(dir: &Path, programs: &Path) -> Option<Supervisord> {
        if Command::new("supervisord")
            .arg("--version")
            .output()
            .is_err()
        {
            skip("supervisord not installed (python3 -m pip install supervisor)");
            return None;
        }
        let config = dir.join("supervisord.conf");
        let d = dir.display();
        std::fs::write(
            &config,
            format!(
                "[unix_http_server]\nfile={d}/supervisor.sock\n\n\
                 [supervisord]\nlogfile={d}/supervisord.log\npidfile={d}/supervisord.pid\n\
                 childlogdir={d}\n\n\
                 [rpcinterface:supervisor]\n\
                 supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n\
                 [supervisorctl]\nserverurl=unix://{d}/supervisor.sock\n\n\
                 [include]\nfiles={}\n",
                programs.display()
            ),
        )
        .expect("supervisord.conf");
        let mut command = Command::new("supervisord");
        command.args(["-n", "-c"]).arg(&config);
        let process = Process::start(command, dir.join("supervisord.out"), "supervisord");
        let supervisord = Supervisord { process, config };
        eventually(Duration::from_secs(20), "supervisord's socket", || {
            supervisord.try_ctl(&["pid"]).map(|_| ())
        });
        Some(supervisord)
    }

    /// `supervisorctl args...`'s stdout, or `None` when it fails.
    fn try_ctl(&self, args: &[&str]) -> Option<String> {
        let output = Command::new("supervisorctl")
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .output()
            .ok()?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        output.status.success().then_some(stdout)
    }

    /// `supervisorctl args...`'s stdout; panics when it fails.
    fn ctl(&self, args: &[&str]) -> String {
        self.try_ctl(args).unwrap_or_else(|| {
            panic!(
                "supervisorctl {args:?} failed; supervisord log:\n{}",
                self.process.log()
            )
        })
    }

    /// The pid of a running program.
    fn pid(&self, program: &str) -> u32 {
        self.ctl(&["pid", program])
            .trim()
            .parse()
            .expect("a running program's pid")
    }
}

impl Drop for Supervisord {
    fn drop(&mut self) {
        // Stops the programs (warmly) before supervisord exits; the Process drop kills what
        // is left, should shutdown have failed.
        let _ = self.try_ctl(&["shutdown"]);
        let _ = self.process.wait_exit(Duration::from_secs(30));
    }
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |text| text.lines().count())
}

/// Sends `mark_and_sleep(marks, line, seconds)`; returns the task id.
fn send(db: &TestDb, marks: &Path, line: &str, seconds: f64) -> String {
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

fn succeeded(db: &TestDb, id: &str) {
    let output = db.run_site(&["celery", "result", id, "--wait", "60"]);
    assert!(output.starts_with("SUCCESS"), "task {id}: {output}");
}

/// supervisord runs the generated programs; stopping the worker mid-task lets the task finish,
/// `kill -9` gets it restarted and the task run again, and a restart under load loses nothing.
#[test]
fn supervisord_runs_the_generated_programs() {
    let db = TestDb::new(Database::Sqlite).expect("sqlite is always there");
    db.run_site(&["migrate"]);
    let dir = db.dir.path();
    let bind = format!("127.0.0.1:{}", free_port());
    let written = db.run_site_with(
        &[
            "celery",
            "deploy",
            "supervisor",
            "--name",
            "site",
            "--workdir",
            &dir.display().to_string(),
            "--logdir",
            &dir.display().to_string(),
            "--output",
            &dir.join("conf").display().to_string(),
        ],
        &[("SITE_BIND", &bind)],
    );
    let programs = dir.join("conf/site.conf");
    assert_eq!(written.trim(), programs.display().to_string());
    let text = std::fs::read_to_string(&programs).unwrap();
    assert!(text.contains(&format!("SITE_BIND=\"{bind}\"")), "{text}");
    assert!(text.contains("stopsignal=TERM\n"), "{text}");
    let Some(supervisord) = Supervisord::start(dir, &programs) else {
        return;
    };

    // All three start: the web server answers, the worker and beat say so in their logs.
    eventually(Duration::from_secs(30), "the web server", || {
        http_get(&format!("http://{bind}/"))
    });
    for (log, line) in [
        ("worker.log", "worker ready"),
        ("beat.log", "beat: starting"),
    ] {
        eventually(Duration::from_secs(30), line, || {
            std::fs::read_to_string(dir.join(log))
                .ok()
                .filter(|text| text.contains(line))
        });
    }

    // `supervisorctl stop` while a task runs: the task finishes before the worker exits.
    let marks = dir.join("runs.txt");
    let running = send(&db, &marks, "stopped-during", 2.0);
    eventually(Duration::from_secs(20), "the task to start", || {
        (lines(&marks) == 1).then_some(())
    });
    // (supervisorctl waits until the program has exited.)
    let stopped = supervisord.ctl(&["stop", "site:site-worker"]);
    assert!(stopped.contains("stopped"), "{stopped}");
    let output = db.run_site(&["celery", "result", &running]);
    assert!(output.starts_with("SUCCESS"), "finished on stop: {output}");
    supervisord.ctl(&["start", "site:site-worker"]);

    // `kill -9`: supervisord starts a new worker, which runs the task again (acks_late).
    let old = supervisord.pid("site:site-worker");
    let killed = send(&db, &marks, "killed-during", 2.0);
    eventually(Duration::from_secs(20), "the task to start", || {
        (lines(&marks) == 2).then_some(())
    });
    let status = Command::new("kill")
        .args(["-KILL", &old.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let new = eventually(Duration::from_secs(30), "a restarted worker", || {
        supervisord
            .try_ctl(&["pid", "site:site-worker"])
            .and_then(|pid| pid.trim().parse::<u32>().ok())
            .filter(|pid| *pid != 0 && *pid != old)
    });
    assert_ne!(new, old);
    succeeded(&db, &killed);

    // `supervisorctl restart` under load: every task completes.
    let load: Vec<String> = (0..12)
        .map(|n| send(&db, &marks, &format!("load-{n}"), 0.3))
        .collect();
    supervisord.ctl(&["restart", "site:site-worker"]);
    for id in &load {
        succeeded(&db, id);
    }
    let status = supervisord.ctl(&["status"]);
    for program in ["site-web", "site-worker", "site-beat"] {
        assert!(
            status
                .lines()
                .any(|line| line.contains(program) && line.contains("RUNNING")),
            "{status}"
        );
    }
}

/// The systemd units name the binary and pass `systemd-analyze verify` where it exists.
#[test]
fn systemd_units_verify() {
    let db = TestDb::new(Database::Sqlite).expect("sqlite is always there");
    let folder = db.dir.path().join("units");
    let written = db.run_site(&[
        "celery",
        "deploy",
        "systemd",
        "--name",
        "site",
        "--output",
        &folder.display().to_string(),
    ]);
    let units: Vec<&str> = written.lines().collect();
    assert_eq!(units.len(), 3, "{written}");
    let worker = std::fs::read_to_string(folder.join("site-worker.service")).unwrap();
    let binary = celery_web_tests::site_binary();
    assert!(
        worker.contains(&format!("ExecStart={} celery worker\n", binary.display())),
        "{worker}"
    );
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze not installed: the units' syntax is not verified");
        return;
    }
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .output()
        .expect("systemd-analyze runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The `deploy/` folder's examples are what the generator writes (regenerated as its README says).
#[test]
fn examples_match_the_generator() {
    let db = TestDb::new(Database::Sqlite).expect("sqlite is always there");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let binary = celery_web_tests::site_binary();
    for manager in ["supervisor", "systemd"] {
        let folder = db.dir.path().join(manager);
        let status = Command::new(&binary)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("SITE_CONFIG", "/srv/example-site/config/site.toml")
            .env("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
            .env("CELERY_RESULT_BACKEND", "db")
            .arg("--config")
            .arg(celery_web_tests::site_config())
            .args(["celery", "deploy", manager, "--name", "example-site"])
            .args(["--user", "www-data", "--workdir", "/srv/example-site", "-o"])
            .arg(&folder)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("site runs");
        assert!(status.success());
        let mut names: Vec<_> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        names.sort();
        assert!(!names.is_empty());
        for name in names {
            let generated = std::fs::read_to_string(folder.join(&name))
                .unwrap()
                .replace(
                    &binary.display().to_string(),
                    "/srv/example-site/bin/example-site",
                );
            let example = examples.join(manager).join(&name);
            let stored = std::fs::read_to_string(&example)
                .unwrap_or_else(|e| panic!("{}: {e}", example.display()));
            assert_eq!(
                generated,
                stored,
                "{} differs from the generator",
                example.display()
            );
        }
    }
}
