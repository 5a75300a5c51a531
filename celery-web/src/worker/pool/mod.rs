//! Where task bodies run: in the worker's own process (threads and tokio, the default), or
//! in child processes (`--pool process`, Celery's prefork).
//!
//! The process pool starts `-c N` children, each a re-execution of the site's own binary
//! (so every `#[task]` is there) serving the worker over a socket pair with
//! [length-prefixed JSON frames](frame). A job goes only to an idle child (Celery's fair
//! scheduling). What only a separate process allows:
//!
//! - a hard time limit stops any body, a synchronous endless loop included: the child's
//!   process group gets SIGTERM, then SIGKILL 0.1 s later, the task is FAILURE
//!   `TimeLimitExceeded`, and a new child takes the slot;
//! - `max_tasks_per_child` and `max_memory_per_child` (KiB of peak resident memory, checked
//!   after each task) replace a child after the task that crossed the line;
//! - a child that dies mid-task (killed, out of memory, a segfault or abort in C code) fails
//!   its task with `WorkerLostError`, or gives the message back with
//!   `task_reject_on_worker_lost`; the others run on.
//!
//! The worker keeps doing everything else (acks, results, retries, revocations) as with the
//! in-process pool: the pool only turns a task into its [`Ending`](crate::worker::outcome).

pub(crate) mod child;
pub(crate) mod frame;
pub(crate) mod process;
pub(crate) mod protocol;

use std::str::FromStr;

pub use child::{is_pool_child, serve as serve_pool_child};

/// Which pool runs task bodies (`--pool`).
///
/// ```
/// use celery_web::worker::PoolKind;
/// assert_eq!("prefork".parse::<PoolKind>().unwrap(), PoolKind::Process);
/// assert_eq!("solo".parse::<PoolKind>().unwrap(), PoolKind::Threads);
/// assert!("gevent".parse::<PoolKind>().unwrap_err().contains("process"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PoolKind {
    /// In the worker's process: async bodies on tokio, sync bodies on its blocking threads
    /// (`threads`, `solo`). The lightest; a hard limit cannot stop a sync body.
    #[default]
    Threads,
    /// In child processes (`process`, `prefork`).
    Process,
}

impl FromStr for PoolKind {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "threads" | "solo" => Ok(PoolKind::Threads),
            "process" | "prefork" => Ok(PoolKind::Process),
            other => Err(format!(
                "unknown pool `{other}`: use `process` (alias `prefork`) or `threads` (alias `solo`)"
            )),
        }
    }
}

/// The pool a worker runs.
#[derive(Debug)]
pub(crate) enum Pool {
    InProcess,
    Process(process::ProcessPool),
}
