//! Redis for the integration tests: the shared server named by `CELERY_WEB_TEST_REDIS_URL`
//! (one database number per test, flushed first, so tests never see each other's keys), and
//! private `redis-server` processes for tests that restart their server; site and Python
//! Celery processes on them ([`RedisSite`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use celery_web::{Celery, Settings};

use crate::{free_port, site_binary, site_config, skip, Process, ScratchDir};

/// A Redis database for one test.
#[derive(Debug)]
pub struct TestRedis {
    /// `redis://host:port/<db>`.
    pub url: String,
    /// The database number.
    pub db: u8,
}

impl TestRedis {
    /// Database `db` of the shared server, emptied; `None` (after [`skip`]) when there is no
    /// server. Each test uses its own `db` (1 to 15; 0 is left to other users).
    pub fn shared(db: u8) -> Option<Self> {
        assert!((1..16).contains(&db), "test databases are 1..=15");
        let Ok(base) = std::env::var("CELERY_WEB_TEST_REDIS_URL") else {
            skip("CELERY_WEB_TEST_REDIS_URL is not set");
            return None;
        };
        let url = format!("{}/{db}", base.trim_end_matches('/'));
        let flushed = redis::Client::open(url.as_str())
            .and_then(|client| client.get_connection())
            .and_then(|mut connection| redis::cmd("FLUSHDB").query::<()>(&mut connection));
        if let Err(error) = flushed {
            skip(&format!("Redis at {url}: {error}"));
            return None;
        }
        Some(TestRedis { url, db })
    }

    /// A synchronous connection, for looking at keys.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url.as_str())
            .and_then(|client| client.get_connection())
            .expect("redis connection")
    }
}

/// A `redis-server` of the test's own on a free port, with an append-only file so a restart
/// keeps its data. Killed when dropped.
#[derive(Debug)]
pub struct PrivateRedis {
    /// The server's port.
    pub port: u16,
    password: Option<String>,
    dir: ScratchDir,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts one, or returns `None` (after [`skip`]) when `redis-server` is not installed.
    pub fn start() -> Option<Self> {
        Self::start_with_password(None)
    }

    /// Starts one that requires `password` (`--requirepass`), when given.
    pub fn start_with_password(password: Option<&str>) -> Option<Self> {
        let dir = ScratchDir::new();
        let mut server = PrivateRedis {
            port: free_port(),
            password: password.map(str::to_owned),
            dir,
            child: None,
        };
        if let Err(error) = server.launch() {
            skip(&format!("redis-server: {error}"));
            return None;
        }
        Some(server)
    }

    /// `redis://[:password@]127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/0", self.port),
            None => format!("redis://127.0.0.1:{}/0", self.port),
        }
    }

    fn launch(&mut self) -> std::io::Result<()> {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .args(
                self.password
                    .iter()
                    .flat_map(|password| ["--requirepass", password.as_str()]),
            )
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ping() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(std::io::Error::other("did not answer PING within 10 s"))
    }

    fn ping(&self) -> bool {
        redis::Client::open(self.url())
            .and_then(|client| client.get_connection_with_timeout(Duration::from_millis(200)))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok()
    }

    /// Kills the server with SIGKILL (everything written so far is in the append-only file).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and files.
    pub fn restart(&mut self) {
        self.kill();
        self.launch().expect("redis-server restarts");
    }

    /// The server's data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Site processes, Python Celery processes and in-process apps sharing one Redis database
/// for broker and results.
#[derive(Debug)]
pub struct RedisSite {
    /// The Redis URL: result backend, and broker unless [`RedisSite::with_broker`] says
    /// otherwise.
    pub url: String,
    /// The broker URL (`url` unless replaced).
    pub broker: String,
    /// Scratch directory: working directory of the processes, logs, files tasks write.
    pub dir: ScratchDir,
    /// Visibility timeout of every side, seconds.
    pub visibility_timeout: u64,
}

impl RedisSite {
    /// Processes on `url` whose claims last `visibility_timeout` seconds.
    pub fn new(url: &str, visibility_timeout: u64) -> Self {
        RedisSite {
            url: url.to_owned(),
            broker: url.to_owned(),
            dir: ScratchDir::new(),
            visibility_timeout,
        }
    }

    /// The same with another broker (RabbitMQ), results still on Redis.
    pub fn with_broker(mut self, broker_url: &str) -> Self {
        broker_url.clone_into(&mut self.broker);
        self
    }

    /// Settings of an in-process app on this Redis (celery-web's own tables in a scratch
    /// SQLite file).
    pub fn settings(&self) -> Settings {
        Settings {
            broker_url: self.broker.clone(),
            result_backend: self.url.clone(),
            database_url: Some(self.dir.sqlite_url()),
            broker_visibility_timeout: self.visibility_timeout,
            ..Settings::default()
        }
    }

    /// An in-process app on this Redis.
    pub fn app(&self) -> Celery {
        Celery::from_settings(self.settings()).expect("app on redis")
    }

    /// A `site` command on this Redis, run in the scratch directory.
    pub fn site(&self, args: &[&str]) -> Command {
        let mut command = Command::new(site_binary());
        command
            .args(args)
            .current_dir(self.dir.path())
            .env("SITE_CONFIG", site_config())
            .env("CELERY_BROKER_URL", &self.broker)
            .env("CELERY_RESULT_BACKEND", &self.url)
            .env("CELERY_DATABASE_URL", self.dir.sqlite_url())
            .env(
                "CELERY_BROKER_VISIBILITY_TIMEOUT",
                self.visibility_timeout.to_string(),
            )
            .env_remove("RUST_LOG")
            .env_remove("RUST_BACKTRACE");
        command
    }

    /// Starts `site celery worker -n <name>@%h <extra>`; its log goes to the scratch directory.
    pub fn spawn_worker(&self, name: &str, extra: &[&str]) -> Process {
        let log = self.dir.path().join(format!("worker-{name}.log"));
        let hostname = format!("{name}@%h");
        let mut args = vec!["celery", "worker", "-l", "info", "-n", &hostname];
        args.extend_from_slice(extra);
        Process::start(self.site(&args), log, "the worker")
    }

    /// A `python3 <args>` command in `tests/python`, with `interop.py`'s app on this Redis.
    pub fn python(&self, args: &[&str]) -> Command {
        let mut command = Command::new(python());
        command
            .args(args)
            .current_dir(python_dir())
            .env("INTEROP_BROKER", &self.broker)
            .env("INTEROP_BACKEND", &self.url)
            .env("INTEROP_VISIBILITY", self.visibility_timeout.to_string())
            .env("PYTHONDONTWRITEBYTECODE", "1");
        command
    }

    /// Runs `python3 interop.py <args>` and returns its stdout; panics on failure.
    pub fn interop(&self, args: &[&str]) -> String {
        let mut full = vec!["interop.py"];
        full.extend_from_slice(args);
        let output = self.python(&full).output().expect("python3 runs");
        assert!(
            output.status.success(),
            "python interop.py {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout)
            .expect("utf-8")
            .trim()
            .to_owned()
    }

    /// `python interop.py get <id>` as JSON: `{"status", "result"}` or the exception.
    pub fn python_get(&self, id: &str) -> serde_json::Value {
        let output = self.interop(&["get", id, "--timeout", "60"]);
        serde_json::from_str(&output).unwrap_or_else(|e| panic!("`{output}` is not JSON: {e}"))
    }

    /// Starts a Python Celery worker (threads pool) on `queue`; its log goes to the scratch
    /// directory.
    pub fn spawn_python_worker(&self, name: &str, queue: &str, concurrency: u32) -> Process {
        let log = self.dir.path().join(format!("python-{name}.log"));
        let hostname = format!("{name}@%h");
        let concurrency = concurrency.to_string();
        let command = self.python(&[
            "-m",
            "celery",
            "-A",
            "interop",
            "worker",
            "-P",
            "threads",
            "-c",
            &concurrency,
            "-Q",
            queue,
            "-n",
            &hostname,
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "-l",
            "info",
        ]);
        Process::start(command, log, "the Python worker")
    }
}

/// The Python interpreter the interop tests use: `CELERY_WEB_TEST_PYTHON`, else `python3`.
pub fn python() -> String {
    std::env::var("CELERY_WEB_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// `tests/python`: the Python side of the interop tests.
pub fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python")
}

/// Whether Python Celery and redis-py can be imported; else [`skip`] (a failure when services
/// are required: CI installs them).
pub fn python_celery_available() -> bool {
    let imported = Command::new(python())
        .args(["-c", "import celery, redis"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !imported {
        skip("python3 with celery and redis (pip install celery==5.5.3 redis)");
    }
    imported
}
