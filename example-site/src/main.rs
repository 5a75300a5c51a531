//! `example-site`: the site's binary is its manage command.
//!
//! Run with (from the repository root, where `cargo run` picks this binary):
//!
//! ```sh
//! cargo run                          # dev: migrations, web server, worker and beat in one process
//! cargo run -- migrate               # apply celery-web's and the site's migrations
//! cargo run -- runserver             # the web server only
//! cargo run -- celery worker -l info # a worker (add -Q reports for the reports queue)
//! cargo run -- celery beat           # the periodic task scheduler
//! ```
//!
//! Then open <http://127.0.0.1:8000/>. Everything is in `manage.rs`, so that tests and other
//! binaries can run the same commands.

fn main() -> std::process::ExitCode {
    example_site::manage::main()
}
