//! `site celery worker`.

use crate::worker::{PoolKind, Shutdown, Worker};
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
    /// Where task bodies run: `process` (alias `prefork`: `-c` child processes; hard time
    /// limits stop any task) or `threads` (alias `solo`: in this process).
    #[arg(short = 'P', long, default_value = "threads")]
    pub pool: PoolKind,
    /// Tasks a process-pool child runs before it is replaced (default:
    /// `worker_max_tasks_per_child`; 0: no limit).
    #[arg(long, value_name = "TASKS")]
    pub max_tasks_per_child: Option<u64>,
    /// Peak resident memory in KiB past which a process-pool child is replaced after its
    /// task (default: `worker_max_memory_per_child`; 0: no limit).
    #[arg(long, value_name = "KIB")]
    pub max_memory_per_child: Option<u64>,
    /// Also run beat in this process (safe on every replica: each firing is sent once).
    #[arg(short = 'B', long)]
    pub beat: bool,
    /// Send task events (for Flower and `celery events`); also `worker_send_task_events`.
    #[arg(short = 'E', long = "task-events")]
    pub task_events: bool,
    /// Do not ask the other workers for their revoked tasks at start.
    #[arg(long)]
    pub without_mingle: bool,
    /// Write the process id here; refuse to start while the process it names is alive.
    #[arg(long, value_name = "PATH")]
    pub pidfile: Option<std::path::PathBuf>,
    /// Log file and format.
    #[command(flatten)]
    pub log: super::LogArgs,
}

pub(super) async fn run(app: &Celery, args: WorkerArgs) -> Result<i32> {
    // A process-pool child re-executes this command line: it serves its worker instead.
    if crate::worker::pool::is_pool_child() {
        super::init_logging_with(&args.loglevel, &args.log)?;
        crate::worker::log_panics_with_tracing();
        return crate::worker::pool::serve_pool_child(app).await;
    }
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
    worker = worker
        .beat(args.beat)
        .mingle(!args.without_mingle)
        .pool(args.pool);
    if args.task_events {
        worker = worker.task_events(true);
    }
    if let Some(tasks) = args.max_tasks_per_child {
        worker = worker.max_tasks_per_child(tasks);
    }
    if let Some(kib) = args.max_memory_per_child {
        worker = worker.max_memory_per_child(kib);
    }
    let shutdown = Shutdown::new();
    shutdown.on_signals()?;
    worker.run(shutdown).await?;
    Ok(0)
}
