//! Connections to Redis: one shared, self-reconnecting connection for commands, and dedicated
//! connections for blocking waits.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, RedisError};
use tokio::sync::OnceCell;

use crate::settings::masked_url;
use crate::{Error, Result};

/// A Redis server named by a `redis://[:password@]host:port/db` URL, connected on first use.
///
/// Commands go through one [`ConnectionManager`], which reconnects with exponential backoff
/// when the server goes away; a command that fails meanwhile returns an error, and the caller
/// (a producer, the worker's fetch loop, the completer) tries again.
pub(crate) struct Redis {
    /// Tells this server's connections apart in [`THREAD_CONNECTIONS`].
    id: usize,
    role: Role,
    client: Client,
    url: String,
    shared: OnceCell<ConnectionManager>,
    /// Set once the server's version was found recent enough.
    version_checked: OnceCell<()>,
    blocking: Mutex<HashMap<String, MultiplexedConnection>>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis").field("url", &self.url).finish()
    }
}

/// What a connection is for: its errors name the setting and are of that kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// `broker_url`: [`Error::Broker`].
    Broker,
    /// `result_backend`: [`Error::Backend`].
    Results,
}

impl Role {
    fn setting(self) -> &'static str {
        match self {
            Role::Broker => "broker_url",
            Role::Results => "result_backend",
        }
    }
}

/// A command connection of a single-thread runtime, with a sign that the runtime still runs.
type RuntimeConnection = (ConnectionManager, Weak<()>);

thread_local! {
    /// The command connections made on single-thread runtimes of this thread (an actix-web
    /// worker's), by [`Redis::id`] and runtime.
    static THREAD_CONNECTIONS: RefCell<HashMap<(usize, tokio::runtime::Id), RuntimeConnection>> =
        RefCell::new(HashMap::new());
}

/// Numbers [`Redis`] instances for [`THREAD_CONNECTIONS`].
static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

/// How long a command may take before the connection is taken for dead.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Redis {
    /// Parses `url` (`redis://`; `rediss://` is refused: TLS is not built in). Does not
    /// connect.
    pub(crate) fn open(url: &str, role: Role) -> Result<Self> {
        let what = role.setting();
        if url.starts_with("rediss://") {
            return Err(Error::Config(format!(
                "{what}: rediss:// (Redis over TLS) is not supported by this build; use redis://"
            )));
        }
        let client = Client::open(url).map_err(|e| {
            Error::Config(format!(
                "{what}: `{}` is not a Redis URL: {e}",
                masked_url(url)
            ))
        })?;
        Ok(Redis {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            role,
            client,
            url: masked_url(url),
            shared: OnceCell::new(),
            version_checked: OnceCell::new(),
            blocking: Mutex::default(),
        })
    }

    /// The database number of the URL (`/0` when absent).
    pub(crate) fn db(&self) -> i64 {
        self.client.get_connection_info().redis.db
    }

    /// The client, for connections of one's own (pub/sub).
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// The command connection (a cheap handle).
    ///
    /// A connection's I/O runs as a task on the runtime that made it, so a command sent from
    /// another thread costs two cross-thread wake-ups. On a single-thread runtime (each
    /// actix-web worker runs one) the connection is therefore the thread's own: a handler's
    /// command and its reply stay on its thread. Multi-thread runtimes share one connection.
    pub(crate) async fn connection(&self) -> Result<ConnectionManager> {
        let runtime = tokio::runtime::Handle::try_current()
            .ok()
            .filter(|runtime| {
                runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread
            });
        let Some(runtime) = runtime else {
            let manager = self.shared.get_or_try_init(|| self.connect()).await?;
            return Ok(manager.clone());
        };
        let key = (self.id, runtime.id());
        let mine = THREAD_CONNECTIONS.with(|connections| {
            connections
                .borrow()
                .get(&key)
                .map(|(manager, _)| manager.clone())
        });
        if let Some(manager) = mine {
            return Ok(manager);
        }
        let manager = self.connect().await?;
        // Dropped with the runtime's tasks when the runtime shuts down: connections of
        // runtimes that are gone are forgotten (their sockets closed) at the next insert.
        let alive = Arc::new(());
        let runtime_alive = Arc::downgrade(&alive);
        tokio::spawn(async move {
            let _alive = alive;
            std::future::pending::<()>().await;
        });
        THREAD_CONNECTIONS.with(|connections| {
            let mut connections = connections.borrow_mut();
            connections.retain(|_, (_, alive)| alive.strong_count() > 0);
            connections.insert(key, (manager.clone(), runtime_alive));
        });
        Ok(manager)
    }

    /// A new self-reconnecting command connection, its I/O on the current runtime.
    async fn connect(&self) -> Result<ConnectionManager> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_response_timeout(RESPONSE_TIMEOUT)
            .set_exponent_base(2)
            .set_factor(50)
            .set_max_delay(2_000)
            .set_number_of_retries(8);
        let mut manager = self
            .client
            .get_connection_manager_with_config(config)
            .await
            .map_err(|e| self.error(e))?;
        self.version_checked
            .get_or_try_init(|| async {
                let info: String = redis::cmd("INFO")
                    .arg("server")
                    .query_async(&mut manager)
                    .await
                    .map_err(|e| self.error(e))?;
                check_version(&info).map_err(|problem| {
                    Error::Config(format!(
                        "{}: redis at {}: {problem}",
                        self.role.setting(),
                        self.url
                    ))
                })
            })
            .await?;
        Ok(manager)
    }

    /// A connection of its own for blocking commands on `key` (one per key, reused).
    pub(crate) async fn blocking(&self, key: &str) -> Result<MultiplexedConnection> {
        if let Some(connection) = lock(&self.blocking).get(key) {
            return Ok(connection.clone());
        }
        let config = AsyncConnectionConfig::new().set_connection_timeout(CONNECT_TIMEOUT);
        let connection = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| self.error(e))?;
        lock(&self.blocking).insert(key.to_owned(), connection.clone());
        Ok(connection)
    }

    /// Forgets the blocking connection of `key` (it failed; the next wait opens a new one).
    pub(crate) fn drop_blocking(&self, key: &str) {
        lock(&self.blocking).remove(key);
    }

    /// A broker or backend error naming the server (password masked); the Redis error is
    /// its source.
    pub(crate) fn error(&self, error: RedisError) -> Error {
        let failure = RedisFailure {
            url: self.url.clone(),
            source: error,
        };
        match self.role {
            Role::Broker => Error::broker(failure),
            Role::Results => Error::backend(failure),
        }
    }

    /// Runs `attempt` on the shared connection, retrying connection failures for `patience`.
    pub(crate) async fn run<T, F, Fut>(&self, patience: Duration, mut attempt: F) -> Result<T>
    where
        F: FnMut(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let deadline = tokio::time::Instant::now() + patience;
        let mut pause = Duration::from_millis(50);
        loop {
            let result = match self.connection().await {
                Ok(connection) => attempt(connection).await.map_err(|e| {
                    let retry = is_connection_error(&e);
                    (self.error(e), retry)
                }),
                Err(error) => Err((error, true)),
            };
            match result {
                Ok(value) => return Ok(value),
                Err((error, true)) if tokio::time::Instant::now() + pause <= deadline => {
                    tracing::warn!(%error, "redis unreachable; retrying in {pause:?}");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Err((error, _)) => return Err(error),
            }
        }
    }
}

/// The oldest Redis celery-web works with: `BLMOVE` and `RPOP` with a count came in 6.2.
const OLDEST_REDIS: (u32, u32) = (6, 2);

/// Checks the `redis_version` of an `INFO server` reply against [`OLDEST_REDIS`]. A reply
/// without a version (a proxy, say) passes.
fn check_version(info: &str) -> std::result::Result<(), String> {
    let Some(version) = info
        .lines()
        .find_map(|line| line.trim().strip_prefix("redis_version:"))
    else {
        return Ok(());
    };
    let mut parts = version
        .split('.')
        .map(|part| part.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if found < OLDEST_REDIS {
        return Err(format!(
            "Redis {version} is too old; celery-web needs Redis {}.{} or later (BLMOVE, RPOP \
             with a count)",
            OLDEST_REDIS.0, OLDEST_REDIS.1
        ));
    }
    Ok(())
}

/// Whether `error` means the server could not be reached (worth retrying), not that it refused
/// the command.
pub(crate) fn is_connection_error(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || matches!(
            error.kind(),
            redis::ErrorKind::BusyLoadingError | redis::ErrorKind::TryAgain
        )
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::check_version;

    #[test]
    fn servers_older_than_6_2_are_refused() {
        let info = |version: &str| {
            format!("# Server\r\nredis_version:{version}\r\nredis_mode:standalone\r\n")
        };
        assert_eq!(check_version(&info("7.0.15")), Ok(()));
        assert_eq!(check_version(&info("6.2.0")), Ok(()));
        assert_eq!(check_version(&info("10.0.1")), Ok(()));
        let refused = check_version(&info("6.0.16")).unwrap_err();
        assert!(refused.starts_with("Redis 6.0.16 is too old; celery-web needs Redis 6.2"));
        assert!(check_version(&info("5.0.7")).is_err());
        assert_eq!(check_version("# Server\r\n"), Ok(()));
    }
}

/// A Redis command that failed, with the server it went to.
#[derive(Debug, thiserror::Error)]
#[error("redis at {url}: {source}")]
pub(crate) struct RedisFailure {
    url: String,
    #[source]
    source: RedisError,
}
