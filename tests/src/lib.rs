//! Shared pieces of the integration tests: real services, scratch databases, site processes.
//!
//! Tests that need PostgreSQL read its URL from `CELERY_WEB_TEST_POSTGRES_URL`. When it is
//! missing or unreachable they skip, unless `CELERY_WEB_REQUIRE_SERVICES=1` (as in CI), where
//! they fail. Tests that need Redis read `CELERY_WEB_TEST_REDIS_URL` the same way
//! ([`redis_server`]). Browser tests drive a headless Chromium ([`browser`]).

pub mod admin_client;
pub mod amqp_server;
pub mod browser;
pub mod interop_tasks;
pub mod redis_server;
pub mod tasks;
pub mod tmux;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use celery_web::{Celery, Settings};
use diesel::{Connection, PgConnection, RunQueryDsl};

/// Whether a missing service fails the test instead of skipping it.
pub fn services_required() -> bool {
    std::env::var("CELERY_WEB_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// Says a test is skipped, or panics when services are required.
pub fn skip(reason: &str) {
    assert!(!services_required(), "required service missing: {reason}");
    eprintln!("SKIPPED: {reason}");
}

/// A directory removed when dropped.
#[derive(Debug)]
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// A new empty directory under the system temp dir.
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!("celery-web-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).expect("temp dir");
        ScratchDir(path)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `sqlite://` URL of a database file inside it.
    pub fn sqlite_url(&self) -> String {
        format!("sqlite://{}", self.0.join("celery.sqlite3").display())
    }
}

impl Default for ScratchDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A PostgreSQL database created for one test and dropped after it.
#[derive(Debug)]
pub struct ScratchPostgres {
    admin_url: String,
    name: String,
    /// URL of the new database.
    pub url: String,
}

impl ScratchPostgres {
    /// Creates a database, or returns `None` (after [`skip`]) when PostgreSQL is not there.
    pub fn create() -> Option<Self> {
        let Ok(admin_url) = std::env::var("CELERY_WEB_TEST_POSTGRES_URL") else {
            skip("CELERY_WEB_TEST_POSTGRES_URL is not set");
            return None;
        };
        let mut admin = match PgConnection::establish(&admin_url) {
            Ok(conn) => conn,
            Err(e) => {
                skip(&format!("PostgreSQL at {admin_url}: {e}"));
                return None;
            }
        };
        let name = format!("celery_web_{}", uuid::Uuid::new_v4().simple());
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .expect("CREATE DATABASE");
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(base, _)| base);
        let url = format!("{base}/{name}");
        Some(ScratchPostgres {
            admin_url,
            name,
            url,
        })
    }
}

impl Drop for ScratchPostgres {
    fn drop(&mut self) {
        if let Ok(mut admin) = PgConnection::establish(&self.admin_url) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut admin);
        }
    }
}

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    /// A scratch SQLite file.
    Sqlite,
    /// A scratch PostgreSQL database.
    Postgres,
}

/// A database for one test: its URL, and what keeps it alive.
#[derive(Debug)]
pub struct TestDb {
    /// Broker and backend URL.
    pub url: String,
    /// Scratch directory (for files tasks write, and the SQLite file).
    pub dir: ScratchDir,
    _postgres: Option<ScratchPostgres>,
}

impl TestDb {
    /// A fresh database of `kind`, or `None` when it is not available (test skipped).
    pub fn new(kind: Database) -> Option<Self> {
        let dir = ScratchDir::new();
        match kind {
            Database::Sqlite => Some(TestDb {
                url: dir.sqlite_url(),
                dir,
                _postgres: None,
            }),
            Database::Postgres => {
                let postgres = ScratchPostgres::create()?;
                Some(TestDb {
                    url: postgres.url.clone(),
                    dir,
                    _postgres: Some(postgres),
                })
            }
        }
    }

    /// Settings using this database for broker and results, with a short visibility timeout.
    pub fn settings(&self) -> Settings {
        Settings {
            broker_url: self.url.clone(),
            result_backend: "db".to_owned(),
            broker_visibility_timeout: 1,
            ..Settings::default()
        }
    }

    /// A migrated app on this database.
    pub fn app(&self) -> Celery {
        let app = Celery::from_settings(self.settings()).expect("app");
        app.migrate().expect("migrations");
        app
    }

    /// Environment variables that point a site process at this database.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("CELERY_BROKER_URL".into(), self.url.clone()),
            ("CELERY_RESULT_BACKEND".into(), "db".into()),
            ("CELERY_BROKER_VISIBILITY_TIMEOUT".into(), "1".into()),
        ]
    }

    /// A `site` command with this database, run in the scratch directory.
    pub fn site(&self, args: &[&str]) -> Command {
        let mut command = Command::new(site_binary());
        command
            .args(args)
            .current_dir(self.dir.path())
            .envs(self.env())
            .env("SITE_CONFIG", site_config())
            .env_remove("RUST_LOG")
            .env_remove("RUST_BACKTRACE");
        command
    }

    /// Runs `site args...` to completion and returns its stdout; panics on failure.
    pub fn run_site(&self, args: &[&str]) -> String {
        self.run_site_with(args, &[])
    }

    /// [`TestDb::run_site`] with extra environment variables.
    pub fn run_site_with(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let output = self
            .site(args)
            .envs(env.iter().copied())
            .output()
            .expect("site runs");
        assert!(
            output.status.success(),
            "site {args:?} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8")
    }

    /// Starts `site runserver --bind <free port>` (the web server alone) and waits until it
    /// answers; returns the process and the base URL (`http://127.0.0.1:<port>`).
    pub fn runserver(&self) -> (Process, String) {
        self.start_web(&["runserver"])
    }

    /// Starts `site --bind <free port>`, dev mode: migrations, web server and worker in one
    /// process; waits until it answers and returns the process and the base URL.
    pub fn dev_server(&self) -> (Process, String) {
        self.start_web(&[])
    }

    fn start_web(&self, subcommand: &[&str]) -> (Process, String) {
        let bind = format!("127.0.0.1:{}", free_port());
        let log = self.dir.path().join("web.log");
        let mut args = subcommand.to_vec();
        args.extend(["--bind", &bind]);
        let web = Process::start(self.site(&args), log, "the web server");
        let base = format!("http://{bind}");
        eventually(Duration::from_secs(20), "the web server", || {
            http_get(&format!("{base}/"))
        });
        (web, base)
    }

    /// Starts a worker process; its log goes to `worker-<name>.log` in the scratch directory.
    pub fn spawn_worker(&self, name: &str, extra: &[&str]) -> Process {
        let log = self.dir.path().join(format!("worker-{name}.log"));
        let mut args = vec!["celery", "worker", "-l", "info", "-n"];
        let hostname = format!("{name}@%h");
        args.push(&hostname);
        args.extend_from_slice(extra);
        Process::start(self.site(&args), log, "the worker")
    }
}

/// The `site` binary of this package. Integration tests run from `target/<profile>/deps/`;
/// cargo builds the package's binaries next to that folder before running them.
pub fn site_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binaries live in target/<profile>/deps");
    profile_dir.join("site")
}

/// The example site's config file (the one the site ships).
pub fn site_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../example-site/config/site.toml")
}

/// A child process killed when dropped.
#[derive(Debug)]
pub struct Process {
    /// The child.
    pub child: Child,
    /// Its stderr log file.
    pub log: PathBuf,
}

impl Process {
    /// Starts `command` with stdout discarded and stderr written to `log`; `what` names it in
    /// the panic if it cannot start.
    pub fn start(mut command: Command, log: PathBuf, what: &str) -> Process {
        let child = command
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("{what} does not start: {e}"));
        Process { child, log }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal (`"TERM"`, `"KILL"`, `"INT"`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits up to `limit` for the process to exit; returns whether it did.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Waits until the log contains `text`.
    pub fn wait_for_log(&self, text: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.log().contains(text) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "`{text}` did not appear in the log within {limit:?}:\n{}",
            self.log()
        );
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `limit`.
pub fn eventually<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The body of a successful `GET url`, or `None` (connection refused, error status).
pub fn http_get(url: &str) -> Option<String> {
    ureq::get(url).call().ok()?.into_string().ok()
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `scenario::sqlite` and `scenario::postgres` tests, each calling `scenario(kind)`.
#[macro_export]
macro_rules! on_both_databases {
    ($scenario:ident) => {
        mod $scenario {
            #[test]
            fn sqlite() {
                super::$scenario($crate::Database::Sqlite);
            }

            #[test]
            fn postgres() {
                super::$scenario($crate::Database::Postgres);
            }
        }
    };
}
