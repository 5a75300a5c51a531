use celery_web::prelude::*;

#[task]
fn greet(name: &str, tags: Vec<&'static str>) -> String {
    format!("{name} {tags:?}")
}

#[task]
fn total(items: impl IntoIterator<Item = i64>) -> i64 {
    items.into_iter().sum()
}

fn main() {
    let _ = greet("x", vec![]);
    let _ = total(vec![1]);
}
