//! The `celery` subcommands of a site's manage binary (`site celery worker ...`).
//!
//! The site adds [`CeleryCommand`] to its own clap CLI and hands it to [`run`]:
//!
//! ```no_run
//! use clap::Parser;
//!
//! #[derive(Parser)]
//! enum Manage {
//!     /// Task queue commands.
//!     #[command(subcommand)]
//!     Celery(celery_web::cli::CeleryCommand),
//! }
//!
//! # async fn demo(app: celery_web::Celery) -> celery_web::Result<()> {
//! let Manage::Celery(command) = Manage::parse();
//! let code = celery_web::cli::run(&app, command).await?;
//! std::process::exit(code);
//! # }
//! ```

#[cfg(feature = "admin")]
mod admin;
mod beat;
#[cfg(feature = "bench")]
mod bench;
#[cfg(all(feature = "bench", feature = "postgres"))]
mod bench_ceiling;
#[cfg(feature = "bench")]
mod bench_results;
mod call;
mod control;
mod deploy;
mod events;
mod expire;
mod inspect;
mod logging;
mod pidfile;
mod progress;
mod purge;
mod worker;

use crate::{Celery, Result};

#[cfg(feature = "admin")]
pub use admin::{AdminAction, AdminArgs};
pub use beat::BeatArgs;
#[cfg(feature = "bench")]
pub use bench::BenchArgs;
pub use call::{CallArgs, ResultArgs};
pub use control::ControlArgs;
pub use deploy::{DeployArgs, Manager};
pub use events::EventsArgs;
pub use expire::ExpireArgs;
pub use inspect::{InspectArgs, RemoteOptions};
pub use logging::{init_logging, init_logging_with, LogArgs, LogFormat};
pub use progress::{wants_bar, Progress};
pub use purge::PurgeArgs;
pub use worker::WorkerArgs;

/// `site celery <command>`.
#[derive(Debug, clap::Subcommand)]
pub enum CeleryCommand {
    /// Run a worker.
    Worker(WorkerArgs),
    /// Run the periodic task scheduler (or list its schedule, or benchmark it).
    Beat(BeatArgs),
    /// Send a task by name and print its id.
    Call(CallArgs),
    /// Print a task's state and result.
    Result(ResultArgs),
    /// Delete every waiting message of some queues.
    Purge(PurgeArgs),
    /// Delete results older than `result_expires` now (workers also do it every hour).
    ExpireResults(ExpireArgs),
    /// Ask the workers (Python or celery-web): ping, stats, active, registered, ...
    Inspect(InspectArgs),
    /// Tell the workers what to do: revoke, terminate, rate_limit, shutdown, ...
    Control(ControlArgs),
    /// The workers that answer a ping.
    Status(RemoteOptions),
    /// Watch every worker's events: a live view of workers and tasks, or `--dump` them.
    Events(EventsArgs),
    /// Print the software, platform and settings (secrets masked), for a bug report.
    Report,
    /// Print (or write) supervisor or systemd files for the site's web server, worker and beat.
    Deploy(DeployArgs),
    /// Measure enqueue, drain and latency on the configured broker.
    #[cfg(feature = "bench")]
    Bench(BenchArgs),
    /// Admin page helpers (hash a password for `admin_users`).
    #[cfg(feature = "admin")]
    Admin(AdminArgs),
}

/// The name of the benchmarks' no-op task (registered only with feature `bench`; beat's
/// benchmark sends it without running it).
pub(crate) const BENCH_NOOP: &str = "celery_web.bench.noop";

/// Runs a `celery` subcommand; returns the process exit code.
pub async fn run(app: &Celery, command: CeleryCommand) -> Result<i32> {
    match command {
        CeleryCommand::Worker(args) => worker::run(app, args).await,
        CeleryCommand::Beat(args) => beat::run(app, args).await,
        CeleryCommand::Call(args) => call::call(app, args).await,
        CeleryCommand::Result(args) => call::result(app, args).await,
        CeleryCommand::Purge(args) => purge::run(app, args).await,
        CeleryCommand::ExpireResults(args) => expire::run(app, args).await,
        CeleryCommand::Inspect(args) => inspect::run(app, args).await,
        CeleryCommand::Status(options) => inspect::status(app, options).await,
        CeleryCommand::Events(args) => events::run(app, args).await,
        CeleryCommand::Report => {
            print!(
                "{}",
                app.settings().report(&crate::events::anonymous_nodename())
            );
            Ok(0)
        }
        CeleryCommand::Control(args) => control::run(app, args).await,
        CeleryCommand::Deploy(args) => deploy::run(app, args),
        #[cfg(feature = "bench")]
        CeleryCommand::Bench(args) => bench::run(app, args).await,
        #[cfg(feature = "admin")]
        CeleryCommand::Admin(args) => admin::run(args),
    }
}
