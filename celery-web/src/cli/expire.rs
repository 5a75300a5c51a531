//! `site celery expire-results`: deletes results older than `result_expires` now, with
//! progress (what the worker's result expiry service does every hour; Celery's
//! `celery.backend_cleanup`).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::progress::Progress;
use crate::{Celery, Error, Result};

/// Options of `site celery expire-results`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExpireArgs {
    /// Delete ready results finished more than this many seconds ago (default:
    /// `result_expires`).
    #[arg(long, value_name = "SECONDS")]
    pub older_than: Option<u64>,
}

pub(super) async fn run(app: &Celery, args: ExpireArgs) -> Result<i32> {
    let keep = match args.older_than {
        Some(seconds) => Duration::from_secs(seconds),
        None => app.settings().result_expiry().ok_or_else(|| {
            Error::Config(
                "result_expires is 0 or unset, so results never expire: pass --older-than \
                 SECONDS to delete old ones anyway"
                    .to_owned(),
            )
        })?,
    };
    let keep = chrono::Duration::from_std(keep)
        .map_err(|_| Error::Config(format!("--older-than {}: too long", keep.as_secs())))?;
    let before = chrono::Utc::now()
        .checked_sub_signed(keep)
        .ok_or_else(|| Error::Config("--older-than reaches before the calendar".to_owned()))?;
    // How many there are is not known before the last batch: progress counts up.
    let progress = Arc::new(Mutex::new(Progress::new(
        "expire-results",
        "results deleted",
        None,
    )));
    let report = progress.clone();
    let deleted = app
        .result_backend()?
        .delete_expired_reporting(
            before,
            Arc::new(move |total| {
                report
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .set(total)
            }),
        )
        .await?;
    if let Ok(progress) = Arc::try_unwrap(progress) {
        progress
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .finish(&format!("{deleted} results"));
    }
    println!(
        "Deleted {deleted} result{} finished before {}.",
        if deleted == 1 { "" } else { "s" },
        before.format("%Y-%m-%d %H:%M:%S UTC")
    );
    Ok(0)
}
