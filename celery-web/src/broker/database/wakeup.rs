//! Waking idle fetchers when another process enqueues.
//!
//! Publishers in this process wake fetchers directly. Other processes' inserts are noticed by
//! one listener thread per broker, started with the first fetch:
//!
//! - PostgreSQL: the thread keeps a `LISTEN celery_message` connection and reads it every
//!   [`CHECK_EVERY`] (notifications already delivered to the socket cost no round trip). An
//!   insert statement's trigger sends the notification only on a transition, while the
//!   one-row `celery_wakeup` table is *armed*: a fetcher that finds nothing arms it before it
//!   waits ([`ARM`]), and the listener that receives the notification disarms it ([`DISARM`])
//!   before waking its fetchers; an arming nobody renews lapses after 5 s. A NOTIFY holds a
//!   database-wide lock through its commit; this way busy workers, or none, cost enqueuers one
//!   read of a one-row table instead of that lock.
//! - SQLite: the thread reads `PRAGMA data_version` every [`SQLITE_CHECK_EVERY`]; it changes
//!   when another connection commits (this process's other connections too: a spurious
//!   wake-up costs one cheap read).
//!
//! Either way the fetch loop also polls, so a lost wake-up costs latency, never a message.

use std::sync::atomic::AtomicBool;
#[cfg(feature = "postgres")]
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use diesel::prelude::*;
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

/// Arms the wake-up (PostgreSQL), from a fetcher's claim transaction that found nothing: the
/// next enqueue notifies. An arming lasts 5 s, so one left by a worker that stopped or was
/// killed lapses by itself; a waiting fetcher claims at least every [`ARM_REFRESH`] and arms
/// again once less than 4 s remain (a write at most once a second, whatever the number of
/// fetchers). Each arming bumps `version`, so a listener disarming an older one leaves it on.
#[cfg(feature = "postgres")]
pub(super) const ARM: &str = "UPDATE celery_wakeup \
     SET armed_until = clock_timestamp() + interval '5 seconds', version = version + 1 \
     WHERE id = 1 AND armed_until < clock_timestamp() + interval '4 seconds'";

/// The longest a fetcher that arms the wake-up waits between two claims.
#[cfg(feature = "postgres")]
pub(super) const ARM_REFRESH: Duration = Duration::from_secs(1);

/// Disarms the wake-up up to the version a notification carried (PostgreSQL).
#[cfg(feature = "postgres")]
const DISARM: &str = "UPDATE celery_wakeup SET armed_until = '-infinity' \
     WHERE id = 1 AND armed_until <> '-infinity' AND version <= $1";

/// Puts the wake-up row back (disarmed: waiting fetchers arm it) after a crash emptied the
/// unlogged table.
#[cfg(feature = "postgres")]
const RESTORE: &str = "INSERT INTO celery_wakeup (id, armed_until, version) \
     VALUES (1, '-infinity', 0) ON CONFLICT (id) DO NOTHING";

/// Starts the listener thread for the database at `url`; it ends when `wake` is dropped.
/// `arming` is true while the thread listens on a PostgreSQL database with transition-only
/// wake-ups: only then may fetchers arm them (an armed wake-up nobody disarms would make
/// every enqueue notify).
pub(super) fn spawn_listener(url: String, wake: &Arc<Notify>, arming: Arc<AtomicBool>) {
    let Some(kind) = DbKind::of(&url) else { return };
    let wake = Arc::downgrade(wake);
    #[cfg(not(feature = "postgres"))]
    drop(arming);
    let spawned = std::thread::Builder::new()
        .name("celery-wakeup".to_owned())
        .spawn(move || loop {
            let ended = match kind {
                #[cfg(feature = "postgres")]
                DbKind::Postgres => {
                    let ended = listen_postgres(&url, &wake, &arming);
                    arming.store(false, Ordering::Relaxed);
                    ended
                }
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
fn listen_postgres(url: &str, wake: &Weak<Notify>, arming: &AtomicBool) -> Result<(), String> {
    let url = url.strip_prefix("db+").unwrap_or(url);
    let mut conn = PgConnection::establish(url).map_err(|e| e.to_string())?;
    diesel::sql_query("LISTEN celery_message")
        .execute(&mut conn)
        .map_err(|e| e.to_string())?;
    // A database migrated before transition-only wake-ups notifies on every insert: listen,
    // never arm.
    let transitions = match diesel::sql_query(RESTORE).execute(&mut conn) {
        Ok(_) => true,
        Err(error) => {
            tracing::debug!(%error, "no celery_wakeup table: every enqueue notifies");
            false
        }
    };
    arming.store(transitions, Ordering::Relaxed);
    loop {
        let Some(notify) = wake.upgrade() else {
            return Ok(());
        };
        let mut woken = false;
        let mut version = None;
        for notification in conn.notifications_iter() {
            let notification = notification.map_err(|e| e.to_string())?;
            woken = true;
            if let Ok(armed) = notification.payload.parse::<i64>() {
                version = version.max(Some(armed));
            }
        }
        // Disarm before waking: a fetcher that finds nothing then arms again after this, so
        // it is not left waiting with the wake-up off.
        if let (true, Some(version)) = (transitions, version) {
            diesel::sql_query(DISARM)
                .bind::<BigInt, _>(version)
                .execute(&mut conn)
                .map_err(|e| e.to_string())?;
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
