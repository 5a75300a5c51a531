//! Signup: a row of the site's own table and a task, committed together.

use actix_web::http::StatusCode;
use actix_web::{post, web, HttpRequest, HttpResponse};
use celery_web::db::Db;
use celery_web::Celery;
use diesel::prelude::*;
use serde::Deserialize;
use serde_json::{json, Map};

use super::tasks::send_welcome_email;
use crate::schema::signups;
use crate::web::home::HomePage;
use crate::web::sent::{task_sent, wants_json};

/// The signup form.
#[derive(Debug, Deserialize)]
pub struct SignupForm {
    /// The new user's address.
    pub email: String,
}

/// Inserts the signup and enqueues its welcome email in one transaction: if the insert fails
/// (a duplicate email), no email is sent. Then to the email task's page, or for API clients
/// `201 {"task_id", "url", "user_id"}`.
#[post("/signup")]
pub(crate) async fn signup(
    req: HttpRequest,
    app: web::Data<Celery>,
    form: web::Form<SignupForm>,
) -> celery_web::Result<HttpResponse> {
    let Some(db) = app.db().cloned() else {
        return Ok(HttpResponse::InternalServerError().body("the site needs a database"));
    };
    let email = form.into_inner().email;
    let entered = email.clone();
    match db.run(move |db| create_signup(db, &email)).await {
        Ok((user_id, task_id)) => {
            let mut extra = Map::new();
            extra.insert("user_id".to_owned(), json!(user_id));
            Ok(task_sent(&req, &task_id, StatusCode::CREATED, extra))
        }
        // A duplicate email is a unique violation. A person gets the form back with a word
        // of why; an API client gets 409 through `?` (celery_web::Error's ResponseError).
        Err(error) if error.is_unique_violation() && !wants_json(req.headers()) => {
            let page = HomePage {
                error: Some(format!("{entered} has already signed up.")),
                email: entered,
            };
            Ok(crate::web::render(&page, StatusCode::CONFLICT))
        }
        Err(error) => Err(error),
    }
}

/// The transaction, written once for both connection types (diesel's connections are
/// distinct types, so a function generic over them needs more bounds than this is worth).
macro_rules! in_transaction {
    ($conn:expr, $email:expr) => {
        (&mut *$conn).transaction::<_, celery_web::Error, _>(|conn| {
            let user_id: i64 = diesel::insert_into(signups::table)
                .values((
                    signups::email.eq($email),
                    signups::created_at.eq(chrono::Utc::now().naive_utc()),
                ))
                .returning(signups::id)
                .get_result(conn)?;
            // `apply_in`: the message is a row of this same transaction, so it exists if and
            // only if the signup does (this needs the database broker: `broker_url` is the site's
            // database).
            let sent = send_welcome_email::s(user_id, $email.to_owned()).apply_in(conn)?;
            Ok((user_id, sent.id().to_owned()))
        })
    };
}

fn create_signup(db: &Db, email: &str) -> celery_web::Result<(i64, String)> {
    match db {
        Db::Sqlite(pool) => in_transaction!(pool.get()?, email),
        Db::Postgres(pool) => in_transaction!(pool.get()?, email),
    }
}
