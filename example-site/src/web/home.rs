//! The home page: one form per kind of task.

use actix_web::http::StatusCode;
use actix_web::{get, HttpResponse};
use askama::Template;

/// `templates/home.html`. The signup view renders it again, with an error, when a form
/// cannot be accepted.
#[derive(Debug, Default, Template)]
#[template(path = "home.html")]
pub struct HomePage {
    /// Why the last form was not accepted, shown above the forms.
    pub error: Option<String>,
    /// The signup form's address, kept when the page is shown again.
    pub email: String,
}

#[get("/")]
pub(crate) async fn home() -> HttpResponse {
    super::render(&HomePage::default(), StatusCode::OK)
}
