//! The demo app's form: add two numbers on a worker.

use actix_web::http::StatusCode;
use actix_web::{post, web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::tasks::add;
use crate::web::sent::task_sent;

/// Operands of `/add`, from the home page's form (or a JSON body).
#[derive(Debug, Deserialize)]
pub struct AddForm {
    /// Left operand.
    pub x: i64,
    /// Right operand.
    pub y: i64,
}

/// Sends `add(x, y)` and answers at once: the worker does the adding.
///
/// Handlers return `celery_web::Result`: an error becomes a response through its
/// `ResponseError` (503 when the broker is away, 500 otherwise; the details go to the log, not
/// to the client).
#[post("/add")]
pub(crate) async fn enqueue_add(
    req: HttpRequest,
    form: web::Either<web::Form<AddForm>, web::Json<AddForm>>,
) -> celery_web::Result<HttpResponse> {
    let AddForm { x, y } = form.into_inner();
    // `delay` sends through the app `manage.rs` installed at start, and returns as soon as
    // the broker has the message; `result.get(timeout)` would wait for the worker, which a
    // handler should not do.
    let result = add::delay(x, y).await?;
    Ok(task_sent(
        &req,
        result.id(),
        StatusCode::ACCEPTED,
        Default::default(),
    ))
}
