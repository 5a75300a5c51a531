//! RabbitMQ for the integration tests: the server named by `CELERY_WEB_TEST_AMQP_URL`, with
//! a virtual host of each test's own (created with `rabbitmqctl`, deleted when dropped, so
//! tests never see each other's queues and leave nothing behind), and private RabbitMQ
//! nodes on free ports for tests that restart their server.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, skip, ScratchDir};

/// Debian's `rabbitmq-server` and `rabbitmqctl` are wrappers that switch to the `rabbitmq`
/// user, which cannot write a scratch directory; a private node runs the programs behind
/// them as the test's own user instead.
const DEBIAN_RABBITMQ_BIN: &str = "/usr/lib/rabbitmq/bin";

/// `program` for a private node (see [`DEBIAN_RABBITMQ_BIN`]); the one on `PATH` otherwise.
fn private_program(program: &str) -> std::path::PathBuf {
    let behind_wrapper = Path::new(DEBIAN_RABBITMQ_BIN).join(program);
    if behind_wrapper.exists() {
        behind_wrapper
    } else {
        program.into()
    }
}

/// `rabbitmqctl` for the shared server (`node` `None`) or for a private node, which runs
/// with its scratch directory as `HOME` (its Erlang cookie is there).
fn rabbitmqctl(node: Option<(&str, &Path)>, args: &[&str]) -> Result<String, String> {
    let mut command = match node {
        None => Command::new("rabbitmqctl"),
        Some((node, home)) => {
            let mut command = Command::new(private_program("rabbitmqctl"));
            command.env("HOME", home).args(["-n", node]);
            command
        }
    };
    let output = command
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("rabbitmqctl does not run: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "rabbitmqctl {args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// A virtual host of one test on the shared server.
#[derive(Debug)]
pub struct TestVhost {
    /// `amqp://user:pass@host:port/<vhost>`.
    pub url: String,
    /// The virtual host's name.
    pub name: String,
}

impl TestVhost {
    /// A new virtual host on the server of `CELERY_WEB_TEST_AMQP_URL`; `None` (after
    /// [`skip`]) when there is no server or no `rabbitmqctl`.
    pub fn create() -> Option<Self> {
        let Ok(base) = std::env::var("CELERY_WEB_TEST_AMQP_URL") else {
            skip("CELERY_WEB_TEST_AMQP_URL is not set");
            return None;
        };
        match Self::on(&base) {
            Ok(vhost) => Some(vhost),
            Err(error) => {
                skip(&format!("RabbitMQ at {base}: {error}"));
                None
            }
        }
    }

    fn on(base: &str) -> Result<Self, String> {
        let name = format!("celery-web-test-{}", uuid::Uuid::new_v4().simple());
        rabbitmqctl(None, &["add_vhost", &name])?;
        let user = base
            .split_once("://")
            .and_then(|(_, rest)| rest.split_once('@'))
            .and_then(|(auth, _)| auth.split(':').next())
            .unwrap_or("guest")
            .to_owned();
        rabbitmqctl(
            None,
            &["set_permissions", "-p", &name, &user, ".*", ".*", ".*"],
        )?;
        let (scheme, rest) = base
            .split_once("://")
            .ok_or_else(|| format!("`{base}` is not an amqp:// URL"))?;
        let server = format!("{scheme}://{}", rest.split('/').next().unwrap_or(rest));
        Ok(TestVhost {
            url: format!("{server}/{name}"),
            name,
        })
    }

    /// `rabbitmqctl list_queues` columns for this virtual host: one `Vec` per queue.
    pub fn queues(&self, columns: &[&str]) -> Vec<Vec<String>> {
        let mut args = vec!["list_queues", "-q", "--no-table-headers", "-p", &self.name];
        args.extend_from_slice(columns);
        rabbitmqctl(None, &args)
            .expect("list_queues")
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| line.split('\t').map(str::to_owned).collect())
            .collect()
    }

    /// Messages (ready + unacked) of `queue`, 0 when it does not exist.
    pub fn messages(&self, queue: &str) -> u64 {
        self.queues(&["name", "messages"])
            .into_iter()
            .find(|row| row[0] == queue)
            .and_then(|row| row.get(1)?.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Closes every client connection of this virtual host (a network failure, as the
    /// clients see it).
    pub fn close_connections(&self) {
        rabbitmqctl(
            None,
            &[
                "close_all_connections",
                "-p",
                &self.name,
                "test: connection dropped",
            ],
        )
        .expect("close_all_connections");
    }
}

/// A plain lapin connection, for what celery-web would never send (malformed messages) and
/// for reading the dead-letter queues.
#[derive(Debug)]
pub struct RawAmqp {
    _connection: lapin::Connection,
    channel: lapin::Channel,
}

impl RawAmqp {
    /// Connects to `url` (`amqp://user:pass@host:port/vhost`).
    pub async fn connect(url: &str) -> RawAmqp {
        let connection = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
            .await
            .expect("connect to RabbitMQ");
        let channel = connection.create_channel().await.expect("a channel");
        channel
            .confirm_select(lapin::options::ConfirmSelectOptions::default())
            .await
            .expect("confirm mode");
        RawAmqp {
            _connection: connection,
            channel,
        }
    }

    /// Publishes `body` with `properties` to `queue` through the default exchange and waits
    /// for the confirm.
    pub async fn publish(&self, queue: &str, body: &[u8], properties: lapin::BasicProperties) {
        self.channel
            .basic_publish(
                "".into(),
                queue.into(),
                lapin::options::BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .expect("basic.publish")
            .await
            .expect("confirmed");
    }

    /// Takes every message of `queue` (`basic.get` with auto-ack) until it is empty.
    pub async fn take_all(&self, queue: &str) -> Vec<lapin::message::BasicGetMessage> {
        let mut taken = Vec::new();
        while let Some(message) = self
            .channel
            .basic_get(
                queue.into(),
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await
            .expect("basic.get")
        {
            taken.push(message);
        }
        taken
    }
}

impl Drop for TestVhost {
    fn drop(&mut self) {
        let _ = rabbitmqctl(None, &["delete_vhost", &self.name]);
    }
}

/// A RabbitMQ node of the test's own on free ports (no plugins), its data in a scratch
/// directory so a restart keeps durable queues and persistent messages. Stopped when
/// dropped.
#[derive(Debug)]
pub struct PrivateRabbit {
    /// The node's AMQP port.
    pub port: u16,
    /// Erlang node name, for `rabbitmqctl -n`.
    pub node: String,
    dir: ScratchDir,
}

impl PrivateRabbit {
    /// Starts a node; `None` (after [`skip`]) when `rabbitmq-server` is not installed.
    pub fn start() -> Option<Self> {
        if Command::new(private_program("rabbitmq-server"))
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            skip("rabbitmq-server is not installed");
            return None;
        }
        let port = free_port();
        let host = gethostname();
        let rabbit = PrivateRabbit {
            port,
            node: format!("cwtest{port}@{host}"),
            dir: ScratchDir::new(),
        };
        std::fs::write(rabbit.dir.path().join("enabled_plugins"), "[].\n").expect("plugins file");
        rabbit.launch();
        Some(rabbit)
    }

    fn launch(&self) {
        let dir = self.dir.path();
        let status = Command::new(private_program("rabbitmq-server"))
            .arg("-detached")
            .env("HOME", dir)
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", free_port().to_string())
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_PID_FILE", dir.join("rabbit.pid"))
            // Erlang writes a crash dump into the working directory otherwise.
            .env("ERL_CRASH_DUMP", dir.join("erl_crash.dump"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("none"))
            .env(
                "RABBITMQ_ADVANCED_CONFIG_FILE",
                dir.join("none-advanced.config"),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("rabbitmq-server runs");
        assert!(status.success(), "rabbitmq-server -detached failed");
        // `-detached` returns before the node has registered with epmd, and `await_startup`
        // fails at once for a node that is not registered yet.
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Err(error) = self.ctl(&["await_startup", "--timeout", "60"]) {
            assert!(
                Instant::now() < deadline,
                "the private RabbitMQ node did not start (logs in {}): {error}",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        wait_for_port(self.port, Duration::from_secs(30));
    }

    fn ctl(&self, args: &[&str]) -> Result<String, String> {
        rabbitmqctl(Some((&self.node, self.dir.path())), args)
    }

    /// `amqp://guest:guest@127.0.0.1:<port>//`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}//", self.port)
    }

    /// Stops the node (its clients lose their connections).
    pub fn stop(&self) {
        self.ctl(&["stop"]).expect("the node stops");
    }

    /// Starts it again on the same port with the same data.
    pub fn restart(&self) {
        self.launch();
    }

    /// Its data and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        let _ = self.ctl(&["stop"]);
    }
}

fn gethostname() -> String {
    let output = Command::new("hostname")
        .arg("-s")
        .output()
        .expect("hostname runs");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn wait_for_port(port: u16, limit: Duration) {
    let deadline = Instant::now() + limit;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} never opened");
        std::thread::sleep(Duration::from_millis(100));
    }
}
