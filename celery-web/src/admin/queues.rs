//! The queues page: per queue, messages waiting, scheduled (eta) and in flight, from the
//! broker; purge with a confirmation step.

use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::error::AdminError;
use super::layout::{encode, html, redirect, Layout};
use super::workers::{self, WorkerView};
use super::Mounted;
use crate::broker::QueueStats;
use crate::settings::masked_url;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/queues", web::get().to(list))
        .route("/queues/{name}/purge", web::get().to(confirm_purge))
        .route("/queues/{name}/purge", web::post().to(purge));
}

/// The queues the app knows (defaults, routes), those `workers` consume and any the broker
/// has, with their counts.
pub(crate) async fn stats(
    mounted: &Mounted,
    workers: &[WorkerView],
) -> Result<Vec<QueueStats>, AdminError> {
    let mut names = mounted.app().known_queues();
    for worker in workers {
        names.extend(worker.info.queues.iter().cloned());
    }
    names.sort();
    names.dedup();
    let mut stats = mounted.app().broker().queue_stats(&names).await?;
    stats.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(stats)
}

/// The broker's URL with its password masked.
pub(crate) fn broker_url(mounted: &Mounted) -> String {
    masked_url(&mounted.app().settings().broker_url)
}

#[derive(Template)]
#[template(path = "admin/queues.html")]
struct QueuesPage {
    layout: Layout,
    broker: String,
    queues: Vec<QueueStats>,
}

impl QueuesPage {
    fn path(name: &str) -> String {
        encode(name)
    }
}

async fn list(req: HttpRequest, mounted: web::Data<Mounted>) -> Result<HttpResponse, AdminError> {
    html(&QueuesPage {
        layout: Layout::new(&req, &mounted, "queues"),
        broker: broker_url(&mounted),
        queues: stats(
            &mounted,
            &workers::views(&mounted).await.unwrap_or_default(),
        )
        .await?,
    })
}

#[derive(Template)]
#[template(path = "admin/purge.html")]
struct PurgePage {
    layout: Layout,
    queue: String,
    waiting: u64,
}

impl PurgePage {
    fn path(&self) -> String {
        encode(&self.queue)
    }
}

async fn confirm_purge(
    req: HttpRequest,
    mounted: web::Data<Mounted>,
    name: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let queue = name.into_inner();
    let counts = mounted
        .app()
        .broker()
        .queue_stats(std::slice::from_ref(&queue))
        .await?;
    let waiting = counts
        .iter()
        .find(|q| q.name == queue)
        .map_or(0, QueueStats::pending);
    html(&PurgePage {
        layout: Layout::new(&req, &mounted, "queues"),
        queue,
        waiting,
    })
}

async fn purge(
    mounted: web::Data<Mounted>,
    name: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let queue = name.into_inner();
    let purged = mounted
        .app()
        .broker()
        .purge(std::slice::from_ref(&queue))
        .await?;
    tracing::warn!(%queue, purged, "admin purged a queue");
    Ok(redirect(
        &mounted.url("/queues"),
        Some(&format!("Purged {purged} messages from {queue}.")),
    ))
}
