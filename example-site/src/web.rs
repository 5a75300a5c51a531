//! The site's pages and JSON endpoints.

use actix_web::{get, post, web, HttpResponse};
use celery_web::task::State;
use celery_web::Celery;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::demo::tasks::add;
use crate::reports::tasks::generate_report;

/// Registers every route of the site.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(home)
        .service(enqueue_add)
        .service(enqueue_report)
        .service(crate::accounts::views::signup)
        .service(task_page)
        .service(task_json);
}

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;\
    padding:0 1rem;color:#222}form{margin:1rem 0}input{margin-right:.5rem}\
    pre{background:#f4f4f4;padding:1rem;overflow:auto}";

#[get("/")]
async fn home() -> HttpResponse {
    let page = format!(
        "<!doctype html><html><head><meta charset=utf-8><title>Example site</title>\
         <style>{STYLE}</style></head><body><h1>Example site</h1>\
         <p>Every form below enqueues a task and answers with its id at once; a worker runs it.</p>\
         <h2>Add two numbers</h2><form method=post action=/add>\
         <input name=x value=2 size=4> + <input name=y value=3 size=4><button>Add</button></form>\
         <h2>Sign up</h2><form method=post action=/signup>\
         <input name=email type=email placeholder=you@example.com><button>Sign up</button></form>\
         <h2>Report</h2><form method=post action=/reports/sales>\
         <input name=rows value=1000 size=8><button>Generate</button></form>\
         <p>Results: <code>/tasks/&lt;id&gt;</code> (page) or <code>/api/tasks/&lt;id&gt;</code> (JSON).</p>\
         <p><a href=/admin/celery/ id=admin>Celery admin</a>: periodic tasks, results, workers and \
         queues (demo login: admin / admin).</p>\
         </body></html>"
    );
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(page)
}

/// Operands of `/add`.
#[derive(Debug, Deserialize)]
struct AddForm {
    x: i64,
    y: i64,
}

#[post("/add")]
// Handlers return `celery_web::Result`: an error becomes a response through its
// `ResponseError` (409 for a duplicate, 503 when the broker or database is away, 500 otherwise;
// the details go to the log, not to the client).
async fn enqueue_add(
    form: web::Either<web::Form<AddForm>, web::Json<AddForm>>,
) -> celery_web::Result<HttpResponse> {
    let AddForm { x, y } = form.into_inner();
    let result = add::delay(x, y).await?;
    Ok(HttpResponse::Accepted().json(json!({ "task_id": result.id() })))
}

/// Size of a report.
#[derive(Debug, Deserialize)]
struct ReportForm {
    rows: u64,
}

#[post("/reports/{kind}")]
async fn enqueue_report(
    kind: web::Path<String>,
    form: web::Form<ReportForm>,
) -> celery_web::Result<HttpResponse> {
    let result = generate_report::delay(kind.into_inner(), form.rows).await?;
    Ok(HttpResponse::Accepted().json(json!({ "task_id": result.id() })))
}

async fn task_state(app: &Celery, id: &str) -> celery_web::Result<Value> {
    let record = app.async_result::<Value>(id).info().await?;
    Ok(match record {
        None => json!({ "id": id, "state": State::Pending }),
        Some(record) => json!({
            "id": id,
            "state": record.status,
            "task": record.task_name,
            "result": record.result,
            "traceback": record.traceback,
            "worker": record.worker,
            "retries": record.retries,
            "date_done": record.date_done,
        }),
    })
}

#[get("/api/tasks/{id}")]
async fn task_json(
    app: web::Data<Celery>,
    id: web::Path<String>,
) -> celery_web::Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(task_state(&app, &id).await?))
}

#[get("/tasks/{id}")]
async fn task_page(
    app: web::Data<Celery>,
    id: web::Path<String>,
) -> celery_web::Result<HttpResponse> {
    let state = task_state(&app, &id).await?;
    let field = |name: &str| match &state[name] {
        Value::Null => "—".to_owned(),
        Value::String(text) => escape(text),
        other => escape(&other.to_string()),
    };
    let ready = state["state"]
        .as_str()
        .and_then(|name| name.parse::<State>().ok())
        .is_some_and(State::is_ready);
    let refresh = if ready {
        ""
    } else {
        "<meta http-equiv=refresh content=1>"
    };
    let page = format!(
        "<!doctype html><html><head><meta charset=utf-8>{refresh}<title>Task {id}</title>\
         <style>{STYLE}</style></head><body><h1>Task <code>{id}</code></h1>\
         <dl><dt>State</dt><dd id=state>{state_text}</dd><dt>Task</dt><dd>{task}</dd>\
         <dt>Result</dt><dd><pre id=result>{result}</pre></dd><dt>Worker</dt><dd>{worker}</dd>\
         <dt>Finished</dt><dd>{done}</dd></dl><pre id=traceback>{traceback}</pre>\
         <p><a href=/>Back</a></p></body></html>",
        id = escape(&id),
        state_text = field("state"),
        task = field("task"),
        result = field("result"),
        worker = field("worker"),
        done = field("date_done"),
        traceback = field("traceback"),
    );
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(page))
}
