use celery_web::prelude::*;

#[task(queues = "emails")]
fn send(to: String) {
    let _ = to;
}

#[task(autoretry_for = "Exception")]
fn retrying() {}

fn main() {
    // The functions stay, so only the options are reported.
    send("a@example.com".to_owned());
    retrying();
}
