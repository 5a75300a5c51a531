//! Tasks of the accounts app.

use celery_web::prelude::*;

/// Sends the welcome email of a new user. Retries with exponential backoff when the mail
/// server is unhappy.
#[task(queue = "emails", max_retries = 5, retry_backoff = true)]
pub async fn send_welcome_email(user_id: i64, email: String) -> TaskResult<String> {
    if email.ends_with(".invalid") {
        return Err(TaskError::reject(format!("`{email}` cannot receive mail")));
    }
    // A real site talks to its mail server here.
    tracing::info!(user_id, %email, "welcome email sent");
    Ok(format!("welcome sent to {email}"))
}
