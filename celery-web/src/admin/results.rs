//! Task result pages (django-celery-results' admin): a filtered list with keyset pagination,
//! a detail page, and retry and revoke.

use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::error::AdminError;
use super::layout::{encode, html, redirect, when, Layout};
use super::Mounted;
use crate::monitor::{self, ResultCursor, ResultFilter, ResultRow};
use crate::task::State;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/results", web::get().to(list))
        .route("/results/{task_id}", web::get().to(detail))
        .route("/results/{task_id}/retry", web::post().to(retry))
        .route("/results/{task_id}/revoke", web::post().to(revoke));
}

/// Rows per page.
pub(crate) const PAGE_SIZE: usize = 50;

/// The list's filters as the query string carries them (also the API's).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct ResultQuery {
    pub(crate) status: String,
    pub(crate) task: String,
    pub(crate) worker: String,
    pub(crate) periodic_task: String,
    /// `2026-11-21` (from the start of that day, UTC) or RFC 3339.
    pub(crate) after: String,
    /// `2026-11-21` (to the end of that day, UTC) or RFC 3339.
    pub(crate) before: String,
    /// A task id (exact).
    pub(crate) id: String,
    /// Where the page starts: the previous page's `next` token.
    pub(crate) cursor: String,
    /// Rows per page (API only; pages show 50).
    pub(crate) limit: Option<usize>,
}

impl ResultQuery {
    /// The filter, or what is wrong with the query.
    pub(crate) fn filter(&self) -> Result<ResultFilter, String> {
        let text = |value: &str| Some(value.trim().to_owned()).filter(|v| !v.is_empty());
        let status = match text(&self.status) {
            None => None,
            Some(status) => Some(status.to_uppercase().parse::<State>().map_err(|_| {
                format!(
                    "status {status:?} is not a task state: PENDING, RECEIVED, STARTED, SUCCESS, \
                     FAILURE, RETRY or REVOKED"
                )
            })?),
        };
        Ok(ResultFilter {
            status,
            task_name: text(&self.task),
            worker: text(&self.worker),
            periodic_task: text(&self.periodic_task),
            done_after: bound(&self.after, "after", false)?,
            done_before: bound(&self.before, "before", true)?,
            task_id: text(&self.id),
        })
    }

    pub(crate) fn cursor(&self) -> Result<Option<ResultCursor>, String> {
        if self.cursor.trim().is_empty() {
            return Ok(None);
        }
        ResultCursor::from_token(self.cursor.trim())
            .map(Some)
            .map_err(|e| format!("cursor: {e}"))
    }

    /// This query's string with `cursor` replaced.
    fn with_cursor(&self, cursor: &str) -> String {
        let pairs = [
            ("status", self.status.as_str()),
            ("task", &self.task),
            ("worker", &self.worker),
            ("periodic_task", &self.periodic_task),
            ("after", &self.after),
            ("before", &self.before),
            ("id", &self.id),
            ("cursor", cursor),
        ];
        let kept: Vec<(&str, &str)> = pairs.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        serde_urlencoded::to_string(kept).unwrap_or_default()
    }
}

/// A date-range bound: a day (its start, or for `before` its end) or an RFC 3339 time.
fn bound(text: &str, field: &str, end_of_day: bool) -> Result<Option<DateTime<Utc>>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let day = if end_of_day {
            day.succ_opt().unwrap_or(day)
        } else {
            day
        };
        return Ok(Some(day.and_hms_opt(0, 0, 0).expect("midnight").and_utc()));
    }
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(Some(time.with_timezone(&Utc)));
    }
    for format in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(time) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(Some(time.and_utc()));
        }
    }
    Err(format!(
        "{field} {text:?} is not a date: write 2026-11-21 or 2026-11-21T08:00:00Z"
    ))
}

/// A result as a list row or detail page shows it.
pub(crate) struct ResultView {
    pub(crate) row: ResultRow,
}

impl ResultView {
    pub(crate) fn task_name(&self) -> &str {
        self.row.task_name.as_deref().unwrap_or("")
    }

    pub(crate) fn worker(&self) -> &str {
        self.row.worker.as_deref().unwrap_or("")
    }

    pub(crate) fn done(&self) -> String {
        when(&self.row.date_done)
    }

    pub(crate) fn created(&self) -> String {
        when(&self.row.date_created)
    }

    pub(crate) fn started(&self) -> String {
        self.row.date_started.as_ref().map(when).unwrap_or_default()
    }

    pub(crate) fn runtime(&self) -> String {
        self.row
            .runtime()
            .map(|d| format!("{:.3} s", d.as_secs_f64()))
            .unwrap_or_default()
    }

    /// A short summary of the arguments for the list: `(2, 3, x=1)`.
    pub(crate) fn call(&self) -> String {
        let args = self.row.task_args.as_deref().unwrap_or("");
        let kwargs = self.row.task_kwargs.as_deref().unwrap_or("");
        let mut parts = Vec::new();
        if let Ok(Value::Array(values)) = serde_json::from_str::<Value>(args) {
            parts.extend(values.iter().map(Value::to_string));
        } else if !args.is_empty() {
            parts.push(args.to_owned());
        }
        if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(kwargs) {
            parts.extend(map.iter().map(|(k, v)| format!("{k}={v}")));
        }
        let text = format!("({})", parts.join(", "));
        if text.chars().count() > 80 {
            format!("{}…", text.chars().take(79).collect::<String>())
        } else {
            text
        }
    }

    /// A JSON column pretty-printed (or as stored when it is not JSON).
    fn pretty(text: Option<&str>) -> String {
        match text {
            None => String::new(),
            Some(text) => serde_json::from_str::<Value>(text)
                .and_then(|v| serde_json::to_string_pretty(&v))
                .unwrap_or_else(|_| text.to_owned()),
        }
    }

    pub(crate) fn args(&self) -> String {
        Self::pretty(self.row.task_args.as_deref())
    }

    pub(crate) fn kwargs(&self) -> String {
        Self::pretty(self.row.task_kwargs.as_deref())
    }

    pub(crate) fn result(&self) -> String {
        Self::pretty(self.row.result.as_deref())
    }

    pub(crate) fn meta(&self) -> String {
        Self::pretty(self.row.meta.as_deref())
    }

    pub(crate) fn traceback(&self) -> &str {
        self.row.traceback.as_deref().unwrap_or("")
    }

    /// `ValueError: bad input` for a failure's stored exception; empty otherwise.
    pub(crate) fn error_summary(&self) -> String {
        let Some(Value::Object(exception)) = self
            .row
            .result
            .as_deref()
            .and_then(|text| serde_json::from_str::<Value>(text).ok())
        else {
            return String::new();
        };
        let kind = exception
            .get("exc_type")
            .and_then(Value::as_str)
            .unwrap_or("");
        let message = match exception.get("exc_message") {
            Some(Value::Array(parts)) => parts
                .iter()
                .map(|part| {
                    part.as_str()
                        .map_or_else(|| part.to_string(), str::to_owned)
                })
                .collect::<Vec<_>>()
                .join(", "),
            Some(Value::String(text)) => text.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        format!("{kind}: {message}")
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.row.state().is_some_and(State::is_ready)
    }
}

#[derive(Template)]
#[template(path = "admin/results.html")]
struct ListPage {
    layout: Layout,
    query: ResultQuery,
    rows: Vec<ResultView>,
    next: Option<String>,
    first: Option<String>,
    error: Option<String>,
    states: Vec<&'static str>,
}

async fn list(
    req: HttpRequest,
    mounted: web::Data<Mounted>,
    query: web::Query<ResultQuery>,
) -> Result<HttpResponse, AdminError> {
    let query = query.into_inner();
    let mut page = ListPage {
        layout: Layout::new(&req, &mounted, "results"),
        query: query.clone(),
        rows: Vec::new(),
        next: None,
        first: (!query.cursor.is_empty()).then(|| query.with_cursor("")),
        error: None,
        states: State::ALL.iter().map(|s| s.as_str()).collect(),
    };
    match query.filter().and_then(|f| Ok((f, query.cursor()?))) {
        Err(error) => {
            page.error = Some(error);
            let mut response = html(&page)?;
            *response.status_mut() = actix_web::http::StatusCode::BAD_REQUEST;
            return Ok(response);
        }
        Ok((filter, cursor)) => {
            let found = monitor::list_results(mounted.db(), &filter, cursor, PAGE_SIZE).await?;
            page.next = found
                .next
                .map(|cursor| query.with_cursor(&cursor.to_token()));
            page.rows = found
                .rows
                .into_iter()
                .map(|row| ResultView { row })
                .collect();
        }
    }
    html(&page)
}

#[derive(Template)]
#[template(path = "admin/result.html")]
struct DetailPage {
    layout: Layout,
    task_id: String,
    result: Option<ResultView>,
}

async fn detail(
    req: HttpRequest,
    mounted: web::Data<Mounted>,
    task_id: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let task_id = task_id.into_inner();
    let row = monitor::get_result(mounted.db(), &task_id).await?;
    html(&DetailPage {
        layout: Layout::new(&req, &mounted, "results"),
        task_id,
        result: row.map(|row| ResultView { row }),
    })
}

/// Sends the task again with the same arguments (and queue), as a new task id.
async fn retry(
    mounted: web::Data<Mounted>,
    task_id: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let task_id = task_id.into_inner();
    let sent = resend(&mounted, &task_id).await?;
    Ok(redirect(
        &mounted.url(&format!("/results/{}", encode(&sent))),
        Some(&format!("Sent again as {sent} (a copy of {task_id}).")),
    ))
}

/// Re-sends the task of the result `task_id`; returns the new task id.
pub(crate) async fn resend(mounted: &Mounted, task_id: &str) -> Result<String, AdminError> {
    let row = monitor::get_result(mounted.db(), task_id)
        .await?
        .ok_or_else(|| AdminError::NotFound(format!("There is no result for task {task_id}.")))?;
    let name = row.task_name.clone().ok_or_else(|| {
        AdminError::BadRequest(format!(
            "The result of {task_id} does not say which task it was (result_extended was off), \
             so it cannot be sent again."
        ))
    })?;
    let args = match row.task_args.as_deref() {
        None | Some("") => Vec::new(),
        Some(text) => serde_json::from_str::<Vec<Value>>(text).map_err(|_| {
            AdminError::BadRequest(format!(
                "The stored arguments of {task_id} are not a JSON array, so it cannot be sent again."
            ))
        })?,
    };
    let kwargs = match row.task_kwargs.as_deref() {
        None | Some("") => serde_json::Map::new(),
        Some(text) => serde_json::from_str(text).map_err(|_| {
            AdminError::BadRequest(format!(
                "The stored keyword arguments of {task_id} are not a JSON object, so it cannot \
                 be sent again."
            ))
        })?,
    };
    let mut signature = crate::task::Signature::<Value>::new(&name).with_arguments(args, kwargs);
    if let Some(queue) = row.queue.as_deref().filter(|q| !q.is_empty()) {
        signature = signature.queue(queue);
    }
    let sent = mounted.app().send(signature).await?;
    tracing::info!(task = %name, from = %task_id, to = %sent.id(), "admin sent a task again");
    Ok(sent.id().to_owned())
}

async fn revoke(
    mounted: web::Data<Mounted>,
    task_id: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let task_id = task_id.into_inner();
    crate::control::revoke(mounted.app(), &task_id).await?;
    tracing::info!(%task_id, "admin revoked a task");
    Ok(redirect(
        &mounted.url(&format!("/results/{}", encode(&task_id))),
        Some("Revoked: workers will not start it (a task already running finishes)."),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_become_filters_with_clear_errors() {
        let query = ResultQuery {
            status: "failure".into(),
            after: "2026-11-20".into(),
            before: "2026-11-20".into(),
            task: " proj.add ".into(),
            ..ResultQuery::default()
        };
        let filter = query.filter().unwrap();
        assert_eq!(filter.status, Some(State::Failure));
        assert_eq!(filter.task_name.as_deref(), Some("proj.add"));
        assert_eq!(
            filter.done_after.unwrap().to_rfc3339(),
            "2026-11-20T00:00:00+00:00"
        );
        assert_eq!(
            filter.done_before.unwrap().to_rfc3339(),
            "2026-11-21T00:00:00+00:00"
        );
        let bad = ResultQuery {
            status: "DONE".into(),
            ..ResultQuery::default()
        };
        assert!(bad.filter().unwrap_err().contains("not a task state"));
        let bad = ResultQuery {
            after: "yesterday".into(),
            ..ResultQuery::default()
        };
        assert!(bad
            .filter()
            .unwrap_err()
            .starts_with("after \"yesterday\" is not a date"));
    }

    #[test]
    fn paging_links_keep_the_filters() {
        let query = ResultQuery {
            status: "FAILURE".into(),
            task: "a b".into(),
            cursor: "old".into(),
            ..ResultQuery::default()
        };
        assert_eq!(
            query.with_cursor("new"),
            "status=FAILURE&task=a+b&cursor=new"
        );
        assert_eq!(query.with_cursor(""), "status=FAILURE&task=a+b");
    }
}
