use celery_web::prelude::*;

struct Payload {
    id: i64,
}

#[task]
fn process(payload: Payload) -> i64 {
    payload.id
}

fn main() {
    // The function itself is still callable.
    let _ = process(Payload { id: 1 });
}
