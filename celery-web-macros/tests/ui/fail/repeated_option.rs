use celery_web::prelude::*;

#[task(queue = "emails", max_retries = 3, queue = "other")]
fn send(to: String) {
    let _ = to;
}

fn main() {
    send("a@example.com".to_owned());
}
