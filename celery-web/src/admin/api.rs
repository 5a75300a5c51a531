//! The JSON API: the admin pages' data for scripts and dashboards (Flower's API shape where
//! there is one). Writes must be sent as `application/json` (see the middleware).
//!
//! | Method and path | What |
//! |---|---|
//! | `GET /api/tasks?status=&task=&worker=&periodic_task=&after=&before=&limit=&cursor=` | results, newest first, `{"tasks": [...], "next": cursor}` |
//! | `GET /api/task/{id}` | one result |
//! | `POST /api/task/apply/{name}` | send a task: `{"args": [], "kwargs": {}, "queue", "countdown", "priority"}` |
//! | `POST /api/task/revoke/{id}`, `POST /api/task/retry/{id}` | revoke; send again |
//! | `GET /api/workers`, `GET /api/queues` | workers from heartbeats; queue counts |
//! | `GET, POST /api/periodic-tasks`, `GET, PUT, DELETE /api/periodic-tasks/{id}` | periodic tasks |

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::error::AdminError;
use super::periodic_task_input::{FieldErrors, PeriodicTaskInput};
use super::periodic_tasks::{store_definition, with_store};
use super::results::{resend, ResultQuery, PAGE_SIZE};
use super::{queues, workers, Mounted};
use crate::beat::{PeriodicTask, Source};
use crate::monitor::{self, ResultRow};
use crate::task::Signature;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/tasks", web::get().to(tasks))
        .route("/api/task/apply/{name}", web::post().to(apply))
        .route("/api/task/revoke/{id}", web::post().to(revoke))
        .route("/api/task/retry/{id}", web::post().to(retry))
        .route("/api/task/{id}", web::get().to(task))
        .route("/api/workers", web::get().to(workers_list))
        .route("/api/queues", web::get().to(queues_list))
        .route("/api/periodic-tasks", web::get().to(periodic_list))
        .route("/api/periodic-tasks", web::post().to(periodic_create))
        .route("/api/periodic-tasks/{id}", web::get().to(periodic_get))
        .route("/api/periodic-tasks/{id}", web::put().to(periodic_update))
        .route(
            "/api/periodic-tasks/{id}",
            web::delete().to(periodic_delete),
        );
}

/// Most rows one `/api/tasks` call returns.
const MAX_LIMIT: usize = 1000;

/// An API failure: `{"error": "...", "fields": {...}}` with a status.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    fields: Option<FieldErrors>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            fields: None,
        }
    }

    fn invalid(fields: FieldErrors) -> ApiError {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: "the periodic task is not valid; see fields".to_owned(),
            fields: Some(fields),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<AdminError> for ApiError {
    fn from(error: AdminError) -> ApiError {
        use actix_web::ResponseError;
        if let AdminError::Internal(inner) = &error {
            tracing::error!(error = %inner, "admin API request failed");
        }
        ApiError::new(error.status_code(), error.to_string())
    }
}

impl From<crate::Error> for ApiError {
    fn from(error: crate::Error) -> ApiError {
        AdminError::Internal(error).into()
    }
}

impl actix_web::ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        error_response(self.status, &self.message, self.fields.as_ref())
    }
}

/// A JSON error body with `status`.
pub(crate) fn error_response(
    status: StatusCode,
    message: &str,
    fields: Option<&FieldErrors>,
) -> HttpResponse {
    let mut body = json!({ "error": message });
    if let Some(fields) = fields {
        body["fields"] = json!(fields);
    }
    HttpResponse::build(status).json(body)
}

/// A body that is not the JSON a handler expects: 400 with serde's reason.
pub(crate) fn json_error(
    error: actix_web::error::JsonPayloadError,
    _req: &HttpRequest,
) -> actix_web::Error {
    ApiError::new(StatusCode::BAD_REQUEST, format!("bad JSON body: {error}")).into()
}

type ApiResult = Result<HttpResponse, ApiError>;

/// A stored JSON column as JSON (or as a string when it is not JSON).
fn stored(text: Option<&str>) -> Value {
    match text {
        None => Value::Null,
        Some(text) => serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned())),
    }
}

fn result_json(row: &ResultRow) -> Value {
    json!({
        "task_id": row.task_id,
        "task_name": row.task_name,
        "status": row.status,
        "periodic_task_name": row.periodic_task_name,
        "worker": row.worker,
        "queue": row.queue,
        "args": stored(row.task_args.as_deref()),
        "kwargs": stored(row.task_kwargs.as_deref()),
        "result": stored(row.result.as_deref()),
        "traceback": row.traceback,
        "meta": stored(row.meta.as_deref()),
        "retries": row.retries,
        "date_created": row.date_created,
        "date_started": row.date_started,
        "date_done": row.date_done,
        "runtime": row.runtime().map(|d| d.as_secs_f64()),
    })
}

async fn tasks(mounted: web::Data<Mounted>, query: web::Query<ResultQuery>) -> ApiResult {
    let query = query.into_inner();
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, message);
    let filter = query.filter().map_err(bad)?;
    let cursor = query.cursor().map_err(bad)?;
    let limit = query.limit.unwrap_or(PAGE_SIZE).clamp(1, MAX_LIMIT);
    let page = monitor::list_results(mounted.db(), &filter, cursor, limit).await?;
    Ok(HttpResponse::Ok().json(json!({
        "tasks": page.rows.iter().map(result_json).collect::<Vec<_>>(),
        "next": page.next.map(|c| c.to_token()),
    })))
}

async fn task(mounted: web::Data<Mounted>, id: web::Path<String>) -> ApiResult {
    let id = id.into_inner();
    match monitor::get_result(mounted.db(), &id).await? {
        Some(row) => Ok(HttpResponse::Ok().json(result_json(&row))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no result stored for task {id} (waiting, unknown or expired)"),
        )),
    }
}

/// The body of `POST /api/task/apply/{name}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ApplyBody {
    args: Vec<Value>,
    kwargs: Map<String, Value>,
    queue: Option<String>,
    priority: Option<u8>,
    countdown: Option<f64>,
    eta: Option<DateTime<Utc>>,
    expires: Option<DateTime<Utc>>,
}

/// Sends a task linked into this site (Flower's `apply-async`); an unknown name is refused, so
/// a typo does not queue a message no worker runs.
async fn apply(
    mounted: web::Data<Mounted>,
    name: web::Path<String>,
    body: web::Bytes,
) -> ApiResult {
    let name = name.into_inner();
    if mounted.app().registry().get(&name).is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("unknown task {name:?}: this site has no task of that name"),
        ));
    }
    // An empty body sends the task without arguments; anything else must be a valid body
    // (a typo must not send the task with none).
    let body: ApplyBody = if body.iter().all(u8::is_ascii_whitespace) {
        ApplyBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("bad JSON body: {e}")))?
    };
    let mut signature = Signature::<Value>::new(&name).with_arguments(body.args, body.kwargs);
    if let Some(queue) = body.queue {
        signature = signature.queue(queue);
    }
    if let Some(priority) = body.priority {
        signature = signature.priority(priority);
    }
    if let Some(countdown) = body.countdown {
        signature = signature.countdown(countdown);
    }
    if let Some(eta) = body.eta {
        signature = signature.eta(eta);
    }
    if let Some(expires) = body.expires {
        signature = signature.expires(expires);
    }
    let sent = mounted
        .app()
        .send(signature)
        .await
        .map_err(|error| match error {
            crate::Error::Arguments { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, error.to_string())
            }
            other => other.into(),
        })?;
    tracing::info!(task = %name, task_id = %sent.id(), "admin API sent a task");
    Ok(HttpResponse::Created().json(json!({ "task_id": sent.id(), "state": "PENDING" })))
}

async fn revoke(mounted: web::Data<Mounted>, id: web::Path<String>) -> ApiResult {
    let id = id.into_inner();
    crate::control::revoke(mounted.app(), &id).await?;
    Ok(HttpResponse::Ok().json(json!({ "task_id": id, "revoked": true })))
}

async fn retry(mounted: web::Data<Mounted>, id: web::Path<String>) -> ApiResult {
    let sent = resend(&mounted, &id).await?;
    Ok(HttpResponse::Created().json(json!({ "task_id": sent, "copy_of": id.into_inner() })))
}

async fn workers_list(mounted: web::Data<Mounted>) -> ApiResult {
    let views = workers::views(&mounted).await?;
    let list: Vec<Value> = views
        .iter()
        .map(|w| {
            json!({
                "hostname": w.info.hostname,
                "status": w.status(),
                "online": w.online,
                "pid": w.info.pid,
                "concurrency": w.info.concurrency,
                "pool": w.info.pool,
                "queues": w.info.queues,
                "active": w.info.active,
                "processed": w.info.processed,
                "succeeded": w.info.succeeded,
                "failed": w.info.failed,
                "software": w.info.software,
                "started_at": w.info.started_at,
                "last_heartbeat": w.info.last_heartbeat,
                "stopped_at": w.info.stopped_at,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(list))
}

async fn queues_list(mounted: web::Data<Mounted>) -> ApiResult {
    let workers = workers::views(&mounted).await.unwrap_or_default();
    let stats = queues::stats(&mounted, &workers).await?;
    let list: Vec<Value> = stats
        .iter()
        .map(|q| {
            json!({
                "name": q.name, "waiting": q.waiting, "scheduled": q.scheduled,
                "in_flight": q.in_flight,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "broker": queues::broker_url(&mounted), "queues": list })))
}

fn periodic_json(task: &PeriodicTask) -> Value {
    let input = PeriodicTaskInput::of(task);
    let mut value = serde_json::to_value(&input).unwrap_or_default();
    value["id"] = json!(task.id);
    value["enabled"] = json!(task.enabled);
    value["schedule_description"] = json!(task.definition.schedule.describe());
    value["source"] = json!(task.source.as_str());
    value["last_run_at"] = json!(task.last_run_at);
    value["total_run_count"] = json!(task.total_run_count);
    value["date_changed"] = json!(task.date_changed);
    value["next_run_at"] = json!(if task.enabled {
        task.next_firing()
    } else {
        None
    });
    value
}

async fn periodic_list(mounted: web::Data<Mounted>) -> ApiResult {
    let loaded = with_store(&mounted, |store| store.load()).await?;
    let list: Vec<Value> = loaded
        .iter()
        .map(|entry| match entry {
            Ok(task) => periodic_json(task),
            Err(bad) => json!({ "id": bad.id, "name": bad.name, "error": bad.reason }),
        })
        .collect();
    Ok(HttpResponse::Ok().json(list))
}

async fn load(mounted: &Mounted, id: i64) -> Result<PeriodicTask, ApiError> {
    match with_store(mounted, move |store| store.load_one(id)).await? {
        Some(Ok(task)) => Ok(task),
        Some(Err(bad)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "periodic task {:?} cannot be read: {}",
                bad.name, bad.reason
            ),
        )),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("there is no periodic task {id}"),
        )),
    }
}

async fn periodic_get(mounted: web::Data<Mounted>, id: web::Path<i64>) -> ApiResult {
    let task = load(&mounted, id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(periodic_json(&task)))
}

async fn periodic_create(
    mounted: web::Data<Mounted>,
    body: web::Json<PeriodicTaskInput>,
) -> ApiResult {
    let input = body.into_inner();
    let definition = input
        .to_definition(mounted.default_timezone())
        .map_err(ApiError::invalid)?;
    let enabled = input.enabled.unwrap_or(true);
    let id = store_definition(&mounted, None, definition, enabled)
        .await?
        .map_err(ApiError::invalid)?;
    let task = load(&mounted, id).await?;
    Ok(HttpResponse::Created().json(periodic_json(&task)))
}

async fn periodic_update(
    mounted: web::Data<Mounted>,
    id: web::Path<i64>,
    body: web::Json<PeriodicTaskInput>,
) -> ApiResult {
    let id = id.into_inner();
    let task = load(&mounted, id).await?;
    if task.source != Source::Database {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "periodic task {:?} comes from the site's {}; change it there",
                task.definition.name,
                task.source.as_str()
            ),
        ));
    }
    let input = body.into_inner();
    let definition = input
        .to_definition(mounted.default_timezone())
        .map_err(ApiError::invalid)?;
    let enabled = input.enabled.unwrap_or(task.enabled);
    store_definition(&mounted, Some(&task), definition, enabled)
        .await?
        .map_err(ApiError::invalid)?;
    let task = load(&mounted, id).await?;
    Ok(HttpResponse::Ok().json(periodic_json(&task)))
}

async fn periodic_delete(mounted: web::Data<Mounted>, id: web::Path<i64>) -> ApiResult {
    let task = load(&mounted, id.into_inner()).await?;
    let name = task.definition.name.clone();
    with_store(&mounted, move |store| store.delete(&name)).await?;
    Ok(HttpResponse::NoContent().finish())
}
