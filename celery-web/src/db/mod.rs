//! The database celery-web keeps its tables in: SQLite or PostgreSQL, through diesel and r2d2.
//!
//! [`Db`] is a connection pool for either backend. Code that is the same for both is written
//! once inside [`with_connection!`], which expands it for each connection type; code that
//! differs (claims with `FOR UPDATE SKIP LOCKED` on PostgreSQL) matches on [`Db`].

mod error;
pub mod schema;

pub use error::{DatabaseError, DatabaseErrorKind};

use std::time::Duration;

#[cfg(feature = "sqlite")]
use diesel::connection::SimpleConnection;
#[cfg(feature = "postgres")]
use diesel::pg::PgConnection;
#[cfg(feature = "sqlite")]
use diesel::r2d2::CustomizeConnection;
use diesel::r2d2::{ConnectionManager, Pool};
#[cfg(feature = "sqlite")]
use diesel::sqlite::SqliteConnection;
use diesel::Connection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::settings::masked_url;
use crate::{Error, Result};

#[cfg(feature = "sqlite")]
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
#[cfg(feature = "postgres")]
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

/// A pool of SQLite connections.
#[cfg(feature = "sqlite")]
pub type SqlitePool = Pool<ConnectionManager<SqliteConnection>>;
/// A pool of PostgreSQL connections.
#[cfg(feature = "postgres")]
pub type PgPool = Pool<ConnectionManager<PgConnection>>;

/// A connection pool to the database that holds celery-web's tables.
#[derive(Clone)]
pub enum Db {
    /// An SQLite file, in WAL mode with a busy timeout.
    #[cfg(feature = "sqlite")]
    Sqlite(SqlitePool),
    /// A PostgreSQL database.
    #[cfg(feature = "postgres")]
    Postgres(PgPool),
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            #[cfg(feature = "sqlite")]
            Db::Sqlite(pool) => write!(f, "Db::Sqlite({:?})", pool.state()),
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => write!(f, "Db::Postgres({:?})", pool.state()),
        }
    }
}

/// Runs `$body` with `$conn` bound to a pooled connection of whichever backend `$db` is.
/// The body is compiled once per backend this build has, so it must be valid diesel for each.
/// (Defined once per feature set: a `#[cfg]` inside the macro would be read in the crate that
/// uses it.)
#[cfg(all(feature = "sqlite", feature = "postgres"))]
#[macro_export]
#[doc(hidden)]
macro_rules! with_connection {
    ($db:expr, |$conn:ident| $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite(pool) => {
                let $conn = &mut *pool.get()?;
                $body
            }
            $crate::db::Db::Postgres(pool) => {
                let $conn = &mut *pool.get()?;
                $body
            }
        }
    };
}

/// See the `sqlite` + `postgres` definition.
#[cfg(all(feature = "sqlite", not(feature = "postgres")))]
#[macro_export]
#[doc(hidden)]
macro_rules! with_connection {
    ($db:expr, |$conn:ident| $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite(pool) => {
                let $conn = &mut *pool.get()?;
                $body
            }
        }
    };
}

/// See the `sqlite` + `postgres` definition.
#[cfg(all(feature = "postgres", not(feature = "sqlite")))]
#[macro_export]
#[doc(hidden)]
macro_rules! with_connection {
    ($db:expr, |$conn:ident| $body:expr) => {
        match $db {
            $crate::db::Db::Postgres(pool) => {
                let $conn = &mut *pool.get()?;
                $body
            }
        }
    };
}
pub use with_connection;

#[cfg(feature = "sqlite")]
/// Sets SQLite up for a queue: WAL (readers never block the writer), a busy timeout instead
/// of instant `database is locked` errors, and `synchronous = NORMAL` (durable at checkpoints,
/// safe against corruption).
#[derive(Debug, Clone, Copy)]
struct SqlitePragmas;

#[cfg(feature = "sqlite")]
impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(
            "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; \
             PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
        )
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

pub use crate::settings::DbKind;

/// The file path of an `sqlite://` URL: `sqlite://celery.sqlite3` is relative to the working
/// directory, `sqlite:///var/lib/site/celery.sqlite3` is absolute.
pub fn sqlite_path<'a>(url: &'a str) -> &'a str {
    // Prefixes in any case, as `DbKind::of` reads them.
    let strip = |url: &'a str, prefix: &str| -> Option<&'a str> {
        url.get(..prefix.len())
            .filter(|head| head.eq_ignore_ascii_case(prefix))
            .map(|_| &url[prefix.len()..])
    };
    let url = url.trim();
    let url = strip(url, "db+").unwrap_or(url);
    strip(url, "sqlite://")
        .or_else(|| strip(url, "sqlite:"))
        .unwrap_or(url)
}

impl Db {
    /// Opens a pool of at most `max_size` connections to `url`.
    pub fn connect(url: &str, max_size: u32) -> Result<Db> {
        // How long a query waits for a connection: short, so an unreachable database shows up
        // as an error (and a worker's retries and shutdown stay prompt) rather than a hang.
        let timeout = Duration::from_secs(5);
        match DbKind::of(url) {
            #[cfg(feature = "sqlite")]
            Some(DbKind::Sqlite) => {
                let path = sqlite_path(url);
                let pool = Pool::builder()
                    .max_size(max_size.max(1))
                    .min_idle(Some(0))
                    .connection_timeout(timeout)
                    .connection_customizer(Box::new(SqlitePragmas))
                    .build_unchecked(ConnectionManager::<SqliteConnection>::new(path));
                check(&pool).map_err(|e| e.context(format!("cannot open SQLite `{path}`")))?;
                Ok(Db::Sqlite(pool))
            }
            #[cfg(feature = "postgres")]
            Some(DbKind::Postgres) => {
                let url = url.strip_prefix("db+").unwrap_or(url);
                let pool = Pool::builder()
                    .max_size(max_size.max(1))
                    .min_idle(Some(0))
                    .connection_timeout(timeout)
                    .build_unchecked(ConnectionManager::<PgConnection>::new(url));
                check(&pool).map_err(|e| {
                    e.context(format!(
                        "cannot connect to PostgreSQL at {}",
                        masked_url(url)
                    ))
                })?;
                Ok(Db::Postgres(pool))
            }
            #[cfg(not(feature = "sqlite"))]
            Some(DbKind::Sqlite) => Err(crate::settings::feature_missing("database", "sqlite")),
            #[cfg(not(feature = "postgres"))]
            Some(DbKind::Postgres) => {
                let _ = timeout;
                Err(crate::settings::feature_missing("database", "postgres"))
            }
            None => Err(Error::Config(format!(
                "`{}` is not a database URL (expected sqlite:// or postgres://)",
                masked_url(url)
            ))),
        }
    }

    /// Which database this is.
    pub fn kind(&self) -> DbKind {
        match self {
            #[cfg(feature = "sqlite")]
            Db::Sqlite(_) => DbKind::Sqlite,
            #[cfg(feature = "postgres")]
            Db::Postgres(_) => DbKind::Postgres,
        }
    }

    /// Applies celery-web's pending migrations; returns how many ran.
    pub fn migrate(&self) -> Result<usize> {
        self.migrate_each(&mut || {})
    }

    /// How many of celery-web's migrations this database has not applied yet.
    pub fn pending_migrations(&self) -> Result<usize> {
        match self {
            #[cfg(feature = "sqlite")]
            Db::Sqlite(pool) => Ok(pool
                .get()?
                .pending_migrations(SQLITE_MIGRATIONS)
                .map_err(migration_failed)?
                .len()),
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => Ok(pool
                .get()?
                .pending_migrations(POSTGRES_MIGRATIONS)
                .map_err(migration_failed)?
                .len()),
        }
    }

    /// Applies celery-web's pending migrations one at a time (each in its own transaction),
    /// calling `applied` after each, for progress; returns how many ran.
    pub fn migrate_each(&self, applied: &mut dyn FnMut()) -> Result<usize> {
        /// Runs the pending migrations of `source` on `conn`, one by one.
        fn each<C: MigrationHarness<C::Backend> + Connection>(
            conn: &mut C,
            source: EmbeddedMigrations,
            applied: &mut dyn FnMut(),
        ) -> Result<usize> {
            let pending = conn.pending_migrations(source).map_err(migration_failed)?;
            for migration in &pending {
                conn.run_migration(migration.as_ref())
                    .map_err(migration_failed)?;
                applied();
            }
            Ok(pending.len())
        }
        match self {
            #[cfg(feature = "sqlite")]
            Db::Sqlite(pool) => each(&mut *pool.get()?, SQLITE_MIGRATIONS, applied),
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => each(&mut *pool.get()?, POSTGRES_MIGRATIONS, applied),
        }
    }

    /// Runs blocking database work `f` on tokio's blocking pool.
    pub async fn run<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&Db) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| Error::Database(e.into()))?
    }
}

/// A migration error as celery-web's error.
fn migration_failed(error: Box<dyn std::error::Error + Send + Sync>) -> Error {
    Error::Database(DatabaseError::new(DatabaseErrorKind::Other, error).context("migration failed"))
}

/// A transaction that is going to write: `BEGIN IMMEDIATE` on SQLite, so concurrent writers
/// queue on the busy timeout instead of one failing when it first writes after reading; a
/// plain transaction on PostgreSQL.
pub(crate) trait WriteTransaction: diesel::Connection {
    /// Runs `f` inside the transaction; commits if it returns `Ok`.
    fn write_transaction<T, E, F>(&mut self, f: F) -> std::result::Result<T, E>
    where
        F: FnOnce(&mut Self) -> std::result::Result<T, E>,
        E: From<diesel::result::Error>;
}

#[cfg(feature = "sqlite")]
impl WriteTransaction for SqliteConnection {
    fn write_transaction<T, E, F>(&mut self, f: F) -> std::result::Result<T, E>
    where
        F: FnOnce(&mut Self) -> std::result::Result<T, E>,
        E: From<diesel::result::Error>,
    {
        self.immediate_transaction(f)
    }
}

#[cfg(feature = "postgres")]
impl WriteTransaction for PgConnection {
    fn write_transaction<T, E, F>(&mut self, f: F) -> std::result::Result<T, E>
    where
        F: FnOnce(&mut Self) -> std::result::Result<T, E>,
        E: From<diesel::result::Error>,
    {
        self.transaction(f)
    }
}

/// Takes one connection from the pool now, so a wrong URL fails at startup.
///
/// Pools keep no idle minimum (`min_idle(0)`): r2d2 would otherwise open connections on its
/// background threads whenever the pool runs low, and libpq connecting while the process
/// exits crashes it (seen as SIGSEGV at the end of short commands such as `celery call`).
/// r2d2 still connects on its own threads when asked for a connection, so only work that is
/// under way at exit can meet this.
fn check<M: diesel::r2d2::ManageConnection>(
    pool: &Pool<M>,
) -> std::result::Result<(), DatabaseError> {
    pool.get().map(drop).map_err(DatabaseError::from)
}

/// Microseconds since the Unix epoch: how the broker tables store times.
pub(crate) fn micros(time: chrono::DateTime<chrono::Utc>) -> i64 {
    time.timestamp_micros()
}

/// Now, in microseconds since the Unix epoch.
pub(crate) fn now_micros() -> i64 {
    micros(chrono::Utc::now())
}
