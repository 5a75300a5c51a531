//! The reports app's form: a report generated on the `reports` queue.

use actix_web::http::StatusCode;
use actix_web::{post, web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::tasks::generate_report;
use crate::web::sent::task_sent;

/// Size of a report.
#[derive(Debug, Deserialize)]
pub struct ReportForm {
    /// How many rows the report covers.
    pub rows: u64,
}

/// Sends `generate_report(kind, rows)`. No queue is named here: `task_routes` in
/// `config/site.toml` sends every `example_site.reports.tasks.*` task to `reports`, so
/// operators can give slow work its own workers without touching the code.
#[post("/reports/{kind}")]
pub(crate) async fn enqueue_report(
    req: HttpRequest,
    kind: web::Path<String>,
    form: web::Form<ReportForm>,
) -> celery_web::Result<HttpResponse> {
    let result = generate_report::delay(kind.into_inner(), form.rows).await?;
    Ok(task_sent(
        &req,
        result.id(),
        StatusCode::ACCEPTED,
        Default::default(),
    ))
}
