//! The workers page (Flower's): each worker's last heartbeat, running and processed tasks,
//! concurrency and queues, from the rows workers write every 2 seconds.

use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use chrono::{DateTime, Utc};

use super::error::AdminError;
use super::layout::{ago, encode, html, redirect, when, Layout};
use super::Mounted;
use crate::monitor::{self, WorkerInfo};

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/workers", web::get().to(list))
        .route("/workers/{hostname}/forget", web::post().to(forget));
}

/// A worker as the pages show it.
pub(crate) struct WorkerView {
    pub(crate) info: WorkerInfo,
    pub(crate) online: bool,
    pub(crate) heartbeat_ago: String,
    pub(crate) started: String,
}

impl WorkerView {
    pub(crate) fn of(info: WorkerInfo, now: DateTime<Utc>) -> WorkerView {
        WorkerView {
            online: info.is_online(now),
            heartbeat_ago: ago(&info.last_heartbeat, now),
            started: when(&info.started_at),
            info,
        }
    }

    pub(crate) fn queues(&self) -> String {
        self.info.queues.join(", ")
    }

    pub(crate) fn hostname_path(&self) -> String {
        encode(&self.info.hostname)
    }

    pub(crate) fn status(&self) -> &'static str {
        match (self.online, self.info.stopped_at.is_some()) {
            (true, _) => "online",
            (false, true) => "stopped",
            (false, false) => "offline",
        }
    }
}

/// Every worker that has written a heartbeat, online ones first.
pub(crate) async fn views(mounted: &Mounted) -> Result<Vec<WorkerView>, AdminError> {
    let now = Utc::now();
    let mut views: Vec<WorkerView> = monitor::workers(mounted.db())
        .await?
        .into_iter()
        .map(|info| WorkerView::of(info, now))
        .collect();
    views.sort_by(|a, b| {
        b.online
            .cmp(&a.online)
            .then(a.info.hostname.cmp(&b.info.hostname))
    });
    Ok(views)
}

#[derive(Template)]
#[template(path = "admin/workers.html")]
struct WorkersPage {
    layout: Layout,
    workers: Vec<WorkerView>,
}

async fn list(req: HttpRequest, mounted: web::Data<Mounted>) -> Result<HttpResponse, AdminError> {
    html(&WorkersPage {
        layout: Layout::new(&req, &mounted, "workers"),
        workers: views(&mounted).await?,
    })
}

/// Removes the row of a worker that is gone (an online worker would write it again).
async fn forget(
    mounted: web::Data<Mounted>,
    hostname: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let hostname = hostname.into_inner();
    // `forget_worker` keeps an online worker's row; only then say why.
    if !monitor::forget_worker(mounted.db(), &hostname).await? {
        let now = Utc::now();
        let online = monitor::workers(mounted.db())
            .await?
            .into_iter()
            .any(|w| w.hostname == hostname && w.is_online(now));
        if online {
            return Err(AdminError::BadRequest(format!(
                "{hostname} is online; stop it first."
            )));
        }
    }
    Ok(redirect(
        &mounted.url("/workers"),
        Some(&format!("Forgot worker {hostname}.")),
    ))
}
