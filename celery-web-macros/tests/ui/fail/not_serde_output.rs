use celery_web::prelude::*;

struct Summary {
    total: i64,
}

#[task]
fn summarize(values: Vec<i64>) -> Summary {
    Summary {
        total: values.iter().sum(),
    }
}

#[derive(Debug)]
struct NotAnError;

#[task]
fn fallible(n: i64) -> Result<i64, NotAnError> {
    Ok(n)
}

#[task(bind)]
fn wrong_context(ctx: String, n: i64) -> i64 {
    let _ = ctx;
    n
}

fn main() {
    let _ = summarize(vec![1]).total;
    let _ = fallible(1);
    let _ = wrong_context(String::new(), 1);
}
