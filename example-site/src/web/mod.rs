//! The site's routes. Pages are askama templates (`example-site/templates/`), checked and
//! compiled with the binary; JSON endpoints sit under `/api/`.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the home page: a form per kind of task |
//! | `POST /add`, `POST /signup`, `POST /reports/{kind}` | send a task; see [`sent`] for the answer |
//! | `GET /tasks` | recent tasks, from the result backend's table |
//! | `GET /tasks/{id}` | one task: its state, then its result, updated in place |
//! | `GET /api/tasks/{id}` | the same as JSON (what the task page polls) |
//!
//! Each app keeps its views next to its tasks (`demo::views`, `accounts::views`,
//! `reports::views`), as a Django project would; this module holds what they share.

pub mod home;
pub mod sent;
pub mod tasks;

use actix_web::web;

/// Registers every route of the site (the admin is mounted separately, in `manage.rs`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(home::home)
        .service(crate::demo::views::enqueue_add)
        .service(crate::accounts::views::signup)
        .service(crate::reports::views::enqueue_report)
        .service(tasks::recent)
        .service(tasks::task_page)
        .service(tasks::task_json);
}

/// Renders a template as an HTML response with `status`.
///
/// askama checks templates at compile time; rendering can only fail in a value's `Display`
/// implementation, which is a bug worth a 500 and a log line.
pub fn render(
    template: &impl askama::Template,
    status: actix_web::http::StatusCode,
) -> actix_web::HttpResponse {
    match template.render() {
        Ok(page) => actix_web::HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .body(page),
        Err(error) => {
            tracing::error!(%error, "a page did not render");
            actix_web::HttpResponse::InternalServerError().body("the page did not render")
        }
    }
}
