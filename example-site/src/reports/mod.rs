//! Reports: slow, CPU-bound work that belongs on a worker.

pub mod tasks;
pub mod views;

use celery_web::beat::schedule::{Crontab, Schedule};
use celery_web::Celery;

/// The reports app's periodic tasks, defined in code (beat writes them into its table at
/// start; `[celery.beat_schedule]` in the config file is the other way).
pub fn add_periodic_tasks(app: &Celery) -> celery_web::Result<()> {
    let monday_morning = Crontab::parse("0 7 * * mon", chrono_tz::Europe::Oslo)
        .map_err(|e| celery_web::Error::Config(e.to_string()))?;
    app.add_periodic_task(
        "weekly sales report",
        Schedule::Crontab(monday_morning),
        tasks::generate_report::s("sales".to_owned(), 1_000),
    );
    Ok(())
}
