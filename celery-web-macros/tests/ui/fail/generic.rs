use celery_web::prelude::*;

#[task]
fn echo<T: serde::Serialize>(value: T) -> T {
    value
}

#[task]
fn borrow<'a>(text: std::borrow::Cow<'a, str>) -> usize {
    text.len()
}

fn main() {
    let _ = echo(1);
    let _ = borrow("x".into());
}
