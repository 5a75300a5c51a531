//! The workers page (Flower's): each worker's last heartbeat, running and processed tasks,
//! concurrency and queues, from the rows workers write every 2 seconds; on a broker with
//! remote control (Redis, RabbitMQ) also what every worker answers right now (`stats`,
//! `active`), Python workers and workers without a database included, with their running
//! tasks to revoke or terminate and a form to change a task's rate limit.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::AdminError;
use super::layout::{ago, encode, html, redirect, when, Layout};
use super::Mounted;
use crate::control::Control;
use crate::monitor::{self, WorkerInfo};

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/workers", web::get().to(list))
        .route("/workers/revoke", web::post().to(revoke))
        .route("/workers/rate_limit", web::post().to(rate_limit))
        .route("/workers/{hostname}/forget", web::post().to(forget));
}

/// How long a page waits for the workers' replies (Celery's CLI waits 1 s).
const REPLIES_WITHIN: Duration = Duration::from_millis(800);

/// A task a worker reports running.
pub(crate) struct ActiveTask {
    pub(crate) worker: String,
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) args: String,
    pub(crate) started: String,
}

/// What the workers answered to remote control: a row per worker and their running tasks.
/// Empty on a broker without remote control, or when none answered.
#[derive(Default)]
pub(crate) struct Live {
    workers: Vec<WorkerInfo>,
    pub(crate) active: Vec<ActiveTask>,
    /// Whether the broker carries remote control at all.
    pub(crate) available: bool,
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A worker row from its `stats` reply (Celery's shape, any worker's language).
fn info_from_stats(hostname: &str, stats: &Value, active: i64, now: DateTime<Utc>) -> WorkerInfo {
    let integer = |value: &Value| value.as_i64().unwrap_or(0);
    let processed = stats["total"]
        .as_object()
        .map_or(0, |total| total.values().map(integer).sum());
    let uptime = stats["uptime"].as_f64().unwrap_or(0.0).clamp(0.0, 1e9);
    let implementation = text(&stats["pool"]["implementation"]);
    WorkerInfo {
        hostname: hostname.to_owned(),
        pid: integer(&stats["pid"]),
        concurrency: integer(&stats["pool"]["max-concurrency"]),
        pool: implementation,
        queues: Vec::new(),
        active,
        processed,
        succeeded: 0,
        failed: 0,
        software: "remote control".to_owned(),
        started_at: now - chrono::Duration::milliseconds((uptime * 1000.0) as i64),
        last_heartbeat: now,
        stopped_at: None,
    }
}

/// Asks every worker for its `stats` and running tasks (`active`, safe reprs).
async fn live(mounted: &Mounted) -> Live {
    let Ok(control) = Control::new(mounted.app()) else {
        return Live::default();
    };
    let mut safe = Map::new();
    safe.insert("safe".into(), Value::Bool(true));
    let (stats, active) = tokio::join!(
        control.call("stats", Map::new(), None, REPLIES_WITHIN),
        control.call("active", safe, None, REPLIES_WITHIN),
    );
    let (stats, active) = match (stats, active) {
        (Ok(stats), Ok(active)) => (stats, active),
        (Err(error), _) | (_, Err(error)) => {
            tracing::warn!(%error, "the workers page could not ask the workers");
            return Live {
                available: true,
                ..Live::default()
            };
        }
    };
    let now = Utc::now();
    let mut tasks = Vec::new();
    for (worker, running) in &active {
        for task in running.as_array().into_iter().flatten() {
            let started = task["time_start"]
                .as_f64()
                .and_then(|t| DateTime::from_timestamp_micros((t * 1e6) as i64))
                .map_or_else(String::new, |t| ago(&t, now));
            tasks.push(ActiveTask {
                worker: worker.clone(),
                id: text(&task["id"]),
                name: text(&task["name"]),
                args: format!("{} {}", text(&task["args"]), text(&task["kwargs"])),
                started,
            });
        }
    }
    let workers = stats
        .iter()
        .map(|(hostname, stats)| {
            let running = tasks.iter().filter(|t| t.worker == *hostname).count();
            info_from_stats(hostname, stats, running as i64, now)
        })
        .collect();
    Live {
        workers,
        active: tasks,
        available: true,
    }
}

/// [`views`] with what the workers answer right now: a worker the database does not know
/// (no database of its own, or a Python worker) gets a row from its `stats`, and a known
/// one its running count from `active`.
pub(crate) async fn live_views(mounted: &Mounted) -> Result<(Vec<WorkerView>, Live), AdminError> {
    let (views, live) = tokio::join!(views(mounted), live(mounted));
    let mut views = views?;
    let now = Utc::now();
    for info in &live.workers {
        match views.iter_mut().find(|v| v.info.hostname == info.hostname) {
            Some(view) => view.info.active = info.active,
            None => views.push(WorkerView::of(info.clone(), now)),
        }
    }
    sort(&mut views);
    Ok((views, live))
}

fn sort(views: &mut [WorkerView]) {
    views.sort_by(|a, b| {
        b.online
            .cmp(&a.online)
            .then(a.info.hostname.cmp(&b.info.hostname))
    });
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
    sort(&mut views);
    Ok(views)
}

#[derive(Template)]
#[template(path = "admin/workers.html")]
struct WorkersPage {
    layout: Layout,
    workers: Vec<WorkerView>,
    live: Live,
    /// The site's registered tasks, offered by the rate-limit form.
    tasks: Vec<String>,
}

async fn list(req: HttpRequest, mounted: web::Data<Mounted>) -> Result<HttpResponse, AdminError> {
    let (workers, live) = live_views(&mounted).await?;
    let mut tasks: Vec<String> = mounted
        .app()
        .registry()
        .names()
        .map(str::to_owned)
        .collect();
    tasks.sort();
    html(&WorkersPage {
        layout: Layout::new(&req, &mounted, "workers"),
        workers,
        live,
        tasks,
    })
}

/// What the page's forms post: a task to revoke (and terminate), or a rate limit.
#[derive(Debug, Deserialize)]
struct CommandForm {
    #[serde(default)]
    task_id: String,
    #[serde(default)]
    terminate: Option<String>,
    #[serde(default)]
    task_name: String,
    #[serde(default)]
    rate_limit: String,
    #[serde(default)]
    worker: String,
}

/// The replies, as one line for the page's notice: `w1@h: ok; w2@h: error`.
fn summary(replies: &[(String, Value)]) -> String {
    if replies.is_empty() {
        return "no worker replied".to_owned();
    }
    replies
        .iter()
        .map(|(node, reply)| {
            let said = reply
                .get("ok")
                .or_else(|| reply.get("error"))
                .map_or_else(|| reply.to_string(), text);
            format!("{node}: {said}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn control(mounted: &Mounted) -> Result<Control, AdminError> {
    Control::new(mounted.app()).map_err(|e| AdminError::BadRequest(e.to_string()))
}

/// Revokes a task on every worker; `terminate` also stops it where it runs (SIGTERM).
async fn revoke(
    mounted: web::Data<Mounted>,
    form: web::Form<CommandForm>,
) -> Result<HttpResponse, AdminError> {
    let task_id = form.task_id.trim();
    if task_id.is_empty() {
        return Err(AdminError::BadRequest("task_id: which task?".into()));
    }
    let terminate = form.terminate.is_some();
    let mut arguments = Map::new();
    arguments.insert("task_id".into(), task_id.into());
    arguments.insert("terminate".into(), terminate.into());
    arguments.insert("signal".into(), "SIGTERM".into());
    let replies = control(&mounted)?
        .call("revoke", arguments, None, REPLIES_WITHIN)
        .await?;
    tracing::info!(%task_id, terminate, "admin revoked a task through remote control");
    let what = if terminate { "Terminated" } else { "Revoked" };
    Ok(redirect(
        &mounted.url("/workers"),
        Some(&format!("{what} {task_id}: {}.", summary(&replies))),
    ))
}

/// Sets a task's rate limit on one worker or all (`""` or `0` lifts it).
async fn rate_limit(
    mounted: web::Data<Mounted>,
    form: web::Form<CommandForm>,
) -> Result<HttpResponse, AdminError> {
    let task_name = form.task_name.trim();
    if task_name.is_empty() {
        return Err(AdminError::BadRequest("task_name: which task?".into()));
    }
    let rate = form.rate_limit.trim();
    if !rate.is_empty() {
        crate::task::RateLimit::parse(rate)
            .map_err(|e| AdminError::BadRequest(format!("rate_limit: {e}")))?;
    }
    let mut arguments = Map::new();
    arguments.insert("task_name".into(), task_name.into());
    arguments.insert(
        "rate_limit".into(),
        if rate.is_empty() { "0" } else { rate }.into(),
    );
    let destination = match form.worker.trim() {
        "" => None,
        worker => Some(vec![worker.to_owned()]),
    };
    let replies = control(&mounted)?
        .call("rate_limit", arguments, destination, REPLIES_WITHIN)
        .await?;
    Ok(redirect(
        &mounted.url("/workers"),
        Some(&format!(
            "Rate limit of {task_name}: {}.",
            summary(&replies)
        )),
    ))
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
