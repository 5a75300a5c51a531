//! Tasks of the reports app. They are plain functions: the worker runs them on its blocking
//! pool, so a long computation never stalls the async tasks.

use celery_web::prelude::*;
use serde::{Deserialize, Serialize};

/// A finished report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Which report.
    pub kind: String,
    /// How many rows it covers.
    pub rows: u64,
    /// The sum of the row numbers, standing in for real work.
    pub total: u64,
}

/// Builds a report of `rows` rows.
#[task(time_limit = 300.0, soft_time_limit = 240.0)]
pub fn generate_report(kind: String, rows: u64) -> TaskResult<Report> {
    if rows > 10_000_000 {
        return Err(TaskError::reject("reports are limited to 10 million rows"));
    }
    Ok(Report {
        total: (1..=rows).sum(),
        kind,
        rows,
    })
}
