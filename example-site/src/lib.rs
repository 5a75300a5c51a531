//! An actix-web site that uses celery-web: copy it to start your own.
//!
//! Run with `cargo run` from the repository root (migrations, web server, worker and beat in
//! one process on a SQLite file), then open <http://127.0.0.1:8000/>; `cargo run -- --help`
//! lists the other commands (`runserver`, `migrate`, `celery worker`, `celery beat`, ...).
//!
//! How it is laid out, as a Django project with Celery would be:
//!
//! - one module per app (`accounts`, `demo`, `reports`), each with its `tasks` (functions
//!   marked `#[task]`) and its `views` (handlers that send them);
//! - [`web`]: the routes, the task pages every form leads to, and the rule for answering
//!   browsers (a redirect to the task's page) and API clients (JSON);
//! - `templates/`: the pages, askama templates checked at compile time;
//! - [`manage`]: the command line, which builds the [`Celery`](celery_web::Celery) app from
//!   `config/site.toml` and runs the web server, workers or beat;
//! - [`schema`] and `migrations/`: the site's own table, next to celery-web's.
//!
//! The tests in `tests/` show how to test handlers without a worker (`task_always_eager`).

pub mod accounts;
pub mod demo;
pub mod manage;
pub mod reports;
pub mod schema;
pub mod web;
