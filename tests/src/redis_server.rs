//! Redis for the integration tests: the shared server named by `CELERY_WEB_TEST_REDIS_URL`
//! (one database number per test, flushed first, so tests never see each other's keys), and
//! private `redis-server` processes for tests that restart their server.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, skip, ScratchDir};

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
    dir: ScratchDir,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts one, or returns `None` (after [`skip`]) when `redis-server` is not installed.
    pub fn start() -> Option<Self> {
        let dir = ScratchDir::new();
        let mut server = PrivateRedis {
            port: free_port(),
            dir,
            child: None,
        };
        if let Err(error) = server.launch() {
            skip(&format!("redis-server: {error}"));
            return None;
        }
        Some(server)
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
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
