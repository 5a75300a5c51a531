//! Beat: periodic tasks kept in the database, edited at runtime, fired exactly once by any
//! number of beat processes (django-celery-beat without its duplicate firings).
//!
//! - [`schedule`]: interval, crontab, clocked and solar schedules, pure logic.
//! - Periodic tasks are rows of `celery_periodic_task`, each with one schedule row
//!   ([`PeriodicTask`]); `beat_schedule` entries of the settings and
//!   [`Celery::add_periodic_task`](crate::Celery::add_periodic_task) calls are synced into
//!   rows when beat starts ([`PeriodicTaskDefinition`]).
//! - Every firing has a key, (periodic task, scheduled time), kept unique by the database in
//!   `celery_beat_firing`. A beat sends a firing only after inserting its key; with the
//!   database broker on the same database the key, the row's bookkeeping and the message
//!   commit in one transaction, so a firing is enqueued exactly once however many beats run.
//!   With another broker (Redis, RabbitMQ) the key is committed first and the message
//!   published right after: a beat that dies between the two loses that one firing (it is
//!   never sent twice); the firing's row records it with no message behind it.
//! - Edits by anyone (the admin, raw SQL) bump a change marker (`celery_beat_change`, kept
//!   by triggers); every beat polls it twice a second and reloads.
//! - After downtime a schedule fires once to catch up, not once per missed slot (a stall
//!   shorter than [`CATCH_UP_AFTER`] still fires each slot).
//!
//! ```no_run
//! # async fn demo(app: celery_web::Celery) -> celery_web::Result<()> {
//! use celery_web::beat::Beat;
//! use celery_web::shutdown::Shutdown;
//!
//! let shutdown = Shutdown::new();
//! shutdown.on_signals()?;
//! Beat::new(&app)?.run(shutdown).await?;
//! # Ok(()) }
//! ```

mod definition;
mod periodic_task;
pub mod schedule;
mod scheduler;
mod store;

#[cfg(feature = "admin")]
pub(crate) use definition::settings_timezone;
pub use definition::PeriodicTaskDefinition;
pub use periodic_task::{PeriodicTask, Source, CATCH_UP_AFTER, SHORTEST_INTERVAL};
pub use scheduler::{Beat, BeatStats};
pub use store::{BadRow, BeatStore, Fired, Firing, SyncReport};
