//! Signup: a row of the site's own table and a task, committed together.

use actix_web::{post, web, HttpResponse};
use celery_web::db::Db;
use celery_web::Celery;
use diesel::prelude::*;
use serde::Deserialize;
use serde_json::json;

use super::tasks::send_welcome_email;
use crate::schema::signups;

/// The signup form.
#[derive(Debug, Deserialize)]
pub struct SignupForm {
    /// The new user's address.
    pub email: String,
}

/// Inserts the signup and enqueues its welcome email in one transaction: if the insert fails
/// (a duplicate email), no email is sent.
#[post("/signup")]
pub(crate) async fn signup(
    app: web::Data<Celery>,
    form: web::Form<SignupForm>,
) -> celery_web::Result<HttpResponse> {
    let Some(db) = app.db().cloned() else {
        return Ok(HttpResponse::InternalServerError().body("the site needs a database"));
    };
    let email = form.into_inner().email;
    // A duplicate email is a unique violation: `?` answers it with 409 (ResponseError).
    let (user_id, task_id) = db.run(move |db| create_signup(db, &email)).await?;
    Ok(HttpResponse::Created().json(json!({"user_id": user_id, "task_id": task_id})))
}

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
