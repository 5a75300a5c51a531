//! The dashboard: workers online, queue depths, tasks per minute by state over the last hour,
//! and the latest failures.

use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use chrono::{TimeDelta, Utc};

use super::chart::{self, Chart};
use super::error::AdminError;
use super::layout::{html, Layout};
use super::results::ResultView;
use super::workers::{self, WorkerView};
use super::{queues, Mounted};
use crate::broker::QueueStats;
use crate::monitor;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("", web::get().to(show))
        .route("/", web::get().to(show));
}

#[derive(Template)]
#[template(path = "admin/dashboard.html")]
struct Dashboard {
    layout: Layout,
    workers: Vec<WorkerView>,
    online: usize,
    queues: Vec<QueueStats>,
    /// Why queue depths are missing (the broker did not answer).
    queue_error: Option<String>,
    chart: Chart,
    failures: Vec<ResultView>,
}

async fn show(req: HttpRequest, mounted: web::Data<Mounted>) -> Result<HttpResponse, AdminError> {
    let now = Utc::now();
    // Workers that answer remote control count too (no database heartbeat needed).
    let (workers, _) = workers::live_views(&mounted).await?;
    let online = workers.iter().filter(|w| w.online).count();
    let (queues, queue_error) = match queues::stats(&mounted, &workers).await {
        Ok(queues) => (queues, None),
        Err(error) => (Vec::new(), Some(error.to_string())),
    };
    let counts = monitor::counts_per_minute(mounted.db(), now - TimeDelta::minutes(60)).await?;
    let failures = monitor::latest_failures(mounted.db(), 10)
        .await?
        .into_iter()
        .map(|row| ResultView { row })
        .collect();
    html(&Dashboard {
        layout: Layout::new(&req, &mounted, "dashboard"),
        workers,
        online,
        queues,
        queue_error,
        chart: chart::per_minute(&counts, now, 60),
        failures,
    })
}
