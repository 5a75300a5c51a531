//! A task's page and JSON, and the list of recent tasks.
//!
//! Both read the result backend: a task's state is whatever the worker last wrote there, and
//! an id the backend does not know is PENDING, as in Celery (queued, or never sent).

use actix_web::http::StatusCode;
use actix_web::{get, web, HttpResponse};
use askama::Template;
use celery_web::backend::TaskRecord;
use celery_web::monitor::{self, ResultCursor, ResultFilter, ResultRow};
use celery_web::settings::ResultBackendKind;
use celery_web::task::State;
use celery_web::Celery;
use serde::Deserialize;
use serde_json::{json, Value};

/// Rows on a page of recent tasks.
const PAGE_SIZE: usize = 25;

/// What the page and the JSON say about one task.
#[derive(Debug)]
pub struct TaskView {
    /// The task id.
    pub id: String,
    /// Its state (PENDING when the backend has no record).
    pub state: State,
    /// Whether the state is final (SUCCESS, FAILURE, REVOKED): the page stops polling.
    pub ready: bool,
    /// The backend's record, when there is one.
    pub record: Option<TaskRecord>,
    /// The traceback of a failure.
    pub traceback: Option<String>,
    /// Retries so far.
    pub retries: u32,
}

impl TaskView {
    /// Reads the task `id` from `app`'s result backend.
    pub async fn load(app: &Celery, id: &str) -> celery_web::Result<TaskView> {
        // `Value`: this page shows any task's result, whatever its Rust type.
        let record = app.async_result::<Value>(id).info().await?;
        let state = record.as_ref().map_or(State::Pending, |r| r.status);
        Ok(TaskView {
            id: id.to_owned(),
            state,
            ready: state.is_ready(),
            traceback: record.as_ref().and_then(|r| r.traceback.clone()),
            retries: record.as_ref().map_or(0, |r| r.retries),
            record,
        })
    }

    /// The JSON of `/api/tasks/<id>`; the page's script reads the same fields.
    pub fn to_json(&self) -> Value {
        let record = self.record.as_ref();
        json!({
            "id": self.id,
            "state": self.state,
            "ready": self.ready,
            "task": record.and_then(|r| r.task_name.clone()),
            "result": record.and_then(|r| r.result.clone()),
            "traceback": self.traceback,
            "worker": record.and_then(|r| r.worker.clone()),
            "retries": self.retries,
            "date_done": record.and_then(|r| r.date_done),
        })
    }

    /// The task's name, or a dash.
    pub fn task_name(&self) -> &str {
        self.record
            .as_ref()
            .and_then(|r| r.task_name.as_deref())
            .unwrap_or("—")
    }

    /// The result as the page shows it: a string as itself, other values as JSON.
    pub fn result_text(&self) -> String {
        match self.record.as_ref().and_then(|r| r.result.as_ref()) {
            None | Some(Value::Null) => "—".to_owned(),
            Some(Value::String(text)) => text.clone(),
            Some(other) => other.to_string(),
        }
    }

    /// The worker that ran it, or a dash.
    pub fn worker(&self) -> &str {
        self.record
            .as_ref()
            .and_then(|r| r.worker.as_deref())
            .unwrap_or("—")
    }

    /// When it finished (RFC 3339, as in the JSON), or a dash.
    pub fn date_done(&self) -> String {
        match self.record.as_ref().and_then(|r| r.date_done) {
            Some(done) if self.ready => done.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            _ => "—".to_owned(),
        }
    }

    /// The traceback, or nothing.
    pub fn traceback(&self) -> &str {
        self.traceback.as_deref().unwrap_or("")
    }
}

/// `templates/task.html`.
#[derive(Debug, Template)]
#[template(path = "task.html")]
struct TaskPage {
    task: TaskView,
}

/// The task's page: its state now, then (through the page's script polling [`task_json`]) its
/// result as soon as a worker stores it.
#[get("/tasks/{id}")]
pub(crate) async fn task_page(
    app: web::Data<Celery>,
    id: web::Path<String>,
) -> celery_web::Result<HttpResponse> {
    let task = TaskView::load(&app, &id).await?;
    Ok(super::render(&TaskPage { task }, StatusCode::OK))
}

/// The task as JSON, for API clients and the task page's script.
#[get("/api/tasks/{id}")]
pub(crate) async fn task_json(
    app: web::Data<Celery>,
    id: web::Path<String>,
) -> celery_web::Result<HttpResponse> {
    let task = TaskView::load(&app, &id).await?;
    Ok(HttpResponse::Ok().json(task.to_json()))
}

/// One row of the recent tasks page.
#[derive(Debug)]
struct TaskRow {
    id: String,
    task_name: String,
    state: String,
    result: String,
    date_done: String,
}

impl From<ResultRow> for TaskRow {
    fn from(row: ResultRow) -> Self {
        let mut result = row.result.unwrap_or_default();
        if result.chars().count() > 60 {
            result = format!("{}…", result.chars().take(59).collect::<String>());
        }
        TaskRow {
            task_name: row.task_name.unwrap_or_default(),
            state: row.status,
            date_done: row.date_done.format("%Y-%m-%d %H:%M:%S").to_string(),
            id: row.task_id,
            result,
        }
    }
}

/// `templates/tasks.html`.
#[derive(Debug, Default, Template)]
#[template(path = "tasks.html")]
struct RecentPage {
    /// Why there is no list (the result backend keeps no table).
    unavailable: Option<String>,
    rows: Vec<TaskRow>,
    /// The `cursor` of the next (older) page.
    next: Option<String>,
    /// What is wrong with the query.
    error: Option<String>,
}

/// `/tasks?cursor=...`: where a page of recent tasks starts.
#[derive(Debug, Deserialize)]
struct RecentQuery {
    cursor: Option<String>,
}

/// Recent tasks, newest first, 25 a page.
///
/// The list comes from the `db` result backend's `celery_taskresult` table through
/// [`monitor::list_results`] (what the admin's results page uses too), paged with keyset
/// cursors so page 1000 costs what page 1 does. Redis keeps results as keys with no order, so
/// with a Redis result backend this page says so rather than scanning the keyspace.
#[get("/tasks")]
pub(crate) async fn recent(
    app: web::Data<Celery>,
    query: web::Query<RecentQuery>,
) -> celery_web::Result<HttpResponse> {
    let mut page = RecentPage::default();
    // `app.db()` is the database of celery-web's tables (`database_url`); results are there
    // with `result_backend = "db"` (or that same URL), not with Redis or another database.
    let db = match app.settings().result_backend_kind()? {
        ResultBackendKind::Database { url } if url == app.settings().database_url() => app.db(),
        _ => None,
    };
    let Some(db) = db else {
        page.unavailable = Some(
            "Task results are not kept in the table of the site's database this page reads \
             (result_backend is not \"db\"), so there is no list to show; each task's own \
             page still works."
                .to_owned(),
        );
        return Ok(super::render(&page, StatusCode::OK));
    };
    let cursor = match query.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(token) => match ResultCursor::from_token(token) {
            Ok(cursor) => Some(cursor),
            Err(_) => {
                page.error = Some("That page link is broken: start from the newest.".to_owned());
                return Ok(super::render(&page, StatusCode::BAD_REQUEST));
            }
        },
    };
    let found = monitor::list_results(db, &ResultFilter::default(), cursor, PAGE_SIZE).await?;
    page.next = found.next.map(|cursor| cursor.to_token());
    page.rows = found.rows.into_iter().map(TaskRow::from).collect();
    Ok(super::render(&page, StatusCode::OK))
}
