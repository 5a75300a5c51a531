//! `site celery worker`.

use crate::worker::{Shutdown, Worker};
use crate::{Celery, Result};

/// Options of `site celery worker`, named as Celery's.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// Tasks run at once (default: `worker_concurrency`, else the number of CPUs).
    #[arg(short = 'c', long)]
    pub concurrency: Option<usize>,
    /// Comma-separated queues to consume (default: the queues of `task_queues`, else `task_default_queue`).
    #[arg(short = 'Q', long, value_delimiter = ',')]
    pub queues: Vec<String>,
    /// Node name; `%h` is the host name.
    #[arg(short = 'n', long)]
    pub hostname: Option<String>,
    /// Log level: debug, info, warning, error.
    #[arg(short = 'l', long, default_value = "info")]
    pub loglevel: String,
    /// Messages held per execution slot (default: `worker_prefetch_multiplier`).
    #[arg(long)]
    pub prefetch_multiplier: Option<usize>,
    /// Also run beat in this process (safe on every replica: each firing is sent once).
    #[arg(short = 'B', long)]
    pub beat: bool,
    /// Write the process id here; refuse to start while the process it names is alive.
    #[arg(long, value_name = "PATH")]
    pub pidfile: Option<std::path::PathBuf>,
    /// Log file and format.
    #[command(flatten)]
    pub log: super::LogArgs,
}

pub(super) async fn run(app: &Celery, args: WorkerArgs) -> Result<i32> {
    let _pidfile = args
        .pidfile
        .as_deref()
        .map(super::pidfile::PidFile::create)
        .transpose()?;
    super::init_logging_with(&args.loglevel, &args.log)?;
    crate::worker::log_panics_with_tracing();
    let mut worker = Worker::new(app);
    if let Some(concurrency) = args.concurrency {
        worker = worker.concurrency(concurrency);
    }
    if !args.queues.is_empty() {
        worker = worker.queues(args.queues);
    }
    if let Some(hostname) = &args.hostname {
        worker = worker.hostname(hostname);
    }
    if let Some(multiplier) = args.prefetch_multiplier {
        worker = worker.prefetch_multiplier(multiplier);
    }
    worker = worker.beat(args.beat);
    let shutdown = Shutdown::new();
    shutdown.on_signals()?;
    worker.run(shutdown).await?;
    Ok(0)
}
