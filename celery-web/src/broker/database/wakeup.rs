//! Waking idle fetchers when another process enqueues.
//!
//! Publishers in this process wake fetchers directly. Other processes' inserts are noticed by
//! one listener thread per broker, started with the first fetch:
//!
//! - PostgreSQL: a trigger sends `NOTIFY celery_message` after each insert statement; the
//!   thread keeps a `LISTEN` connection and reads it every [`CHECK_EVERY`] (notifications
//!   already delivered to the socket cost no round trip).
//! - SQLite: the thread reads `PRAGMA data_version` every [`SQLITE_CHECK_EVERY`]; it changes
//!   when another connection commits (this process's other connections too: a spurious
//!   wake-up costs one cheap read).
//!
//! Either way the fetch loop also polls, so a lost wake-up costs latency, never a message.

use std::sync::{Arc, Weak};
use std::time::Duration;

use diesel::prelude::*;
#[cfg(feature = "sqlite")]
use diesel::sql_types::BigInt;
use tokio::sync::Notify;

#[cfg(feature = "sqlite")]
use crate::db::sqlite_path;
use crate::db::DbKind;

/// How often the PostgreSQL listener reads its connection: a local read, no round trip.
#[cfg(feature = "postgres")]
const CHECK_EVERY: Duration = Duration::from_millis(2);
/// How often the SQLite watcher asks for the data version: a query, though a cheap one.
#[cfg(feature = "sqlite")]
const SQLITE_CHECK_EVERY: Duration = Duration::from_millis(5);
/// How long it waits before reconnecting after an error.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// Starts the listener thread for the database at `url`; it ends when `wake` is dropped.
pub(super) fn spawn_listener(url: String, wake: &Arc<Notify>) {
    let Some(kind) = DbKind::of(&url) else { return };
    let wake = Arc::downgrade(wake);
    let spawned = std::thread::Builder::new()
        .name("celery-wakeup".to_owned())
        .spawn(move || loop {
            let ended = match kind {
                #[cfg(feature = "postgres")]
                DbKind::Postgres => listen_postgres(&url, &wake),
                #[cfg(feature = "sqlite")]
                DbKind::Sqlite => watch_sqlite(sqlite_path(&url), &wake),
                // A database this build leaves out: never opened, nothing to watch.
                #[allow(unreachable_patterns)]
                _ => return,
            };
            match ended {
                Ok(()) => return,
                Err(error) => {
                    tracing::debug!(%error, "wake-up listener lost its connection; reconnecting");
                    std::thread::sleep(RECONNECT_AFTER);
                }
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "no wake-up listener: workers will poll only");
    }
}

/// Returns `Ok` when the broker is gone, `Err` when the connection failed.
#[cfg(feature = "postgres")]
fn listen_postgres(url: &str, wake: &Weak<Notify>) -> Result<(), String> {
    let url = url.strip_prefix("db+").unwrap_or(url);
    let mut conn = PgConnection::establish(url).map_err(|e| e.to_string())?;
    diesel::sql_query("LISTEN celery_message")
        .execute(&mut conn)
        .map_err(|e| e.to_string())?;
    loop {
        let Some(notify) = wake.upgrade() else {
            return Ok(());
        };
        let mut woken = false;
        for notification in conn.notifications_iter() {
            notification.map_err(|e| e.to_string())?;
            woken = true;
        }
        if woken {
            notify.notify_waiters();
        }
        drop(notify);
        std::thread::sleep(CHECK_EVERY);
    }
}

#[cfg(feature = "sqlite")]
#[derive(QueryableByName)]
struct DataVersion {
    #[diesel(sql_type = BigInt)]
    data_version: i64,
}

#[cfg(feature = "sqlite")]
fn watch_sqlite(path: &str, wake: &Weak<Notify>) -> Result<(), String> {
    let mut conn = SqliteConnection::establish(path).map_err(|e| e.to_string())?;
    let mut last = None;
    loop {
        let Some(notify) = wake.upgrade() else {
            return Ok(());
        };
        let version = diesel::sql_query("PRAGMA data_version")
            .get_result::<DataVersion>(&mut conn)
            .map_err(|e| e.to_string())?
            .data_version;
        if last.is_some_and(|last| last != version) {
            notify.notify_waiters();
        }
        last = Some(version);
        drop(notify);
        std::thread::sleep(SQLITE_CHECK_EVERY);
    }
}
