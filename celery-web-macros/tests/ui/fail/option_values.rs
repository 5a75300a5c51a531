use celery_web::prelude::*;

#[task(priority = 10, time_limit = 0, queue = 3, retry_jitter, bind = true)]
fn bad(ctx: TaskContext) {
    let _ = ctx;
}

#[task(bind)]
fn unbound() {}

fn main() {
    bad(TaskContext::detached("bad"));
    unbound();
}
