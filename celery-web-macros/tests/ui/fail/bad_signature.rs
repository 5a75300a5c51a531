use celery_web::prelude::*;

#[task]
fn pair((a, b): (i64, i64)) -> i64 {
    a + b
}

#[task]
unsafe fn dangerous(n: i64) -> i64 {
    n
}

#[task]
fn opaque(n: i64) -> impl serde::Serialize {
    n
}

#[task]
struct NotAFunction;

fn main() {
    let _ = pair((1, 2));
    let _ = opaque(1);
    let _ = NotAFunction;
}
