//! Tasks only the integration tests need. They live here, not in the example site, because
//! one writes to any file its arguments name. The test package's `site` binary links them.

use std::io::Write;
use std::time::Duration;

use celery_web::prelude::*;

/// Appends `line` to the file at `path`, then sleeps `seconds`: shows how often and how long
/// a task ran, across processes.
#[task(acks_late)]
pub async fn mark_and_sleep(path: String, line: String, seconds: f64) -> TaskResult<String> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    writeln!(file, "{line}")?;
    drop(file);
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    Ok(line)
}

/// Called by the `site` binary so the linker keeps this module, and with it the tasks'
/// registrations.
pub fn link() {}
