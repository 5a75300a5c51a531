//! The parent side of the process pool: starts children, gives each job to an idle one,
//! enforces the hard time limit with signals, and replaces children that time out, die, or
//! reach `max_tasks_per_child` / `max_memory_per_child`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Semaphore;

use super::child::CHILD_ENV;
use super::frame::{self, FrameError, FrameReader};
use super::protocol::{FromChild, Job, ToChild};
use crate::worker::outcome::Ending;
use crate::{Error, Result};

/// How long a new child may take to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Between SIGTERM and SIGKILL at a hard time limit (billiard's `_trywaitkill`).
const KILL_GRACE: Duration = Duration::from_millis(100);
/// How long a child let go at shutdown may take to exit before it is killed.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// How to start children and when to replace them.
#[derive(Debug, Clone)]
pub(crate) struct ProcessPoolOptions {
    /// Children (`-c`).
    pub(crate) size: usize,
    /// Tasks a child runs before it is replaced.
    pub(crate) max_tasks_per_child: Option<u64>,
    /// Peak resident memory (KiB) past which a child is replaced after its task.
    pub(crate) max_memory_per_child: Option<u64>,
    /// The program children run: the worker's own binary.
    pub(crate) program: PathBuf,
    /// Its arguments: the worker's own.
    pub(crate) args: Vec<OsString>,
}

impl ProcessPoolOptions {
    /// Children that re-execute this binary with this process's arguments.
    pub(crate) fn this_binary(size: usize) -> Result<Self> {
        let program = std::env::current_exe().map_err(|error| {
            Error::Config(format!(
                "the process pool cannot find its own binary: {error}"
            ))
        })?;
        Ok(ProcessPoolOptions {
            size: size.max(1),
            max_tasks_per_child: None,
            max_memory_per_child: None,
            program,
            args: std::env::args_os().skip(1).collect(),
        })
    }
}

/// A child as the heartbeat and `stats` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChildStats {
    pub(crate) pid: u32,
    /// Tasks it finished.
    pub(crate) tasks: u64,
    /// Its peak resident memory after its last task, KiB.
    pub(crate) peak_rss_kib: Option<u64>,
}

/// Children of one worker.
#[derive(Debug, Clone)]
pub(crate) struct ProcessPool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    options: ProcessPoolOptions,
    idle: Mutex<Vec<Child>>,
    /// One permit per idle child: waiting on it is waiting for an idle child.
    available: Semaphore,
    /// Live children, by pid.
    children: Mutex<BTreeMap<u32, ChildStats>>,
    jobs: AtomicU64,
    closed: AtomicBool,
}

#[derive(Debug)]
struct Child {
    pid: u32,
    process: tokio::process::Child,
    reader: FrameReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    tasks: u64,
}

/// What a job needs besides its number.
#[derive(Debug)]
pub(crate) struct JobRequest {
    pub(crate) task: String,
    pub(crate) id: String,
    pub(crate) args: Vec<serde_json::Value>,
    pub(crate) kwargs: serde_json::Map<String, serde_json::Value>,
    pub(crate) retries: u32,
    pub(crate) hostname: String,
    pub(crate) eta: Option<chrono::DateTime<chrono::Utc>>,
    pub(crate) periodic_task_name: Option<String>,
    pub(crate) soft_time_limit: Option<f64>,
}

impl ProcessPool {
    /// Starts every child and waits until each is ready.
    pub(crate) async fn start(options: ProcessPoolOptions) -> Result<Self> {
        let inner = Arc::new(Inner {
            idle: Mutex::new(Vec::with_capacity(options.size)),
            available: Semaphore::new(0),
            children: Mutex::default(),
            jobs: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            options,
        });
        let mut starting = Vec::new();
        for _ in 0..inner.options.size {
            starting.push(spawn(&inner.options));
        }
        for child in starting {
            let child = child.await?;
            inner.give_back(child);
        }
        Ok(ProcessPool { inner })
    }

    /// The live children.
    pub(crate) fn children(&self) -> Vec<ChildStats> {
        lock(&self.inner.children).values().copied().collect()
    }

    /// Its options (size, recycling limits).
    pub(crate) fn options(&self) -> &ProcessPoolOptions {
        &self.inner.options
    }

    /// Runs `request` on the next idle child; `hard_limit` seconds stop it.
    ///
    /// Dropping the future (a cold shutdown) kills the child running the job.
    pub(crate) async fn run(&self, request: JobRequest, hard_limit: Option<f64>) -> Ending {
        let number = self.inner.jobs.fetch_add(1, Ordering::Relaxed) + 1;
        let job = ToChild::Run(Job {
            job: number,
            task: request.task,
            id: request.id,
            args: request.args,
            kwargs: request.kwargs,
            retries: request.retries,
            hostname: request.hostname,
            eta: request.eta,
            periodic_task_name: request.periodic_task_name,
            soft_time_limit: request.soft_time_limit,
        });
        let frame = match frame::encode(&job) {
            Ok(frame) => frame,
            Err(error) => {
                return Ending::Panicked(format!("cannot send the task to a child: {error}"))
            }
        };
        // A child that died while idle fails the write: try the next one (it was replaced).
        for _ in 0..=self.inner.options.size {
            let mut busy = self.inner.take().await;
            let child = busy.child.as_mut().expect("a taken child");
            if let Err(error) = write_frame(&mut child.writer, &frame).await {
                tracing::warn!(pid = child.pid, %error, "an idle child is gone; replacing it");
                busy.lost();
                continue;
            }
            return busy.finish(number, hard_limit).await;
        }
        Ending::Panicked("no pool child could take the task".to_owned())
    }

    /// Lets every idle child go and waits for them to exit (warm shutdown: the running ones
    /// have finished). Children still busy are let go when their job ends.
    pub(crate) async fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        let idle = std::mem::take(&mut *lock(&self.inner.idle));
        let waits: Vec<_> = idle.into_iter().map(|c| self.inner.retire(c)).collect();
        for wait in waits {
            let _ = wait.await;
        }
    }
}

impl Inner {
    async fn take(self: &Arc<Self>) -> Busy {
        let permit = self
            .available
            .acquire()
            .await
            .expect("the idle semaphore is never closed");
        permit.forget();
        let child = lock(&self.idle).pop().expect("a permit per idle child");
        Busy {
            pool: self.clone(),
            child: Some(child),
        }
    }

    fn give_back(&self, child: Child) {
        if self.closed.load(Ordering::SeqCst) {
            drop(self.retire(child));
            return;
        }
        lock(&self.children).entry(child.pid).or_insert(ChildStats {
            pid: child.pid,
            tasks: child.tasks,
            peak_rss_kib: None,
        });
        lock(&self.idle).push(child);
        self.available.add_permits(1);
    }

    /// Lets `child` go: closes its socket, so it exits; kills it if it does not.
    fn retire(&self, child: Child) -> tokio::task::JoinHandle<()> {
        lock(&self.children).remove(&child.pid);
        let Child {
            pid,
            mut process,
            writer,
            ..
        } = child;
        drop(writer);
        tokio::spawn(async move {
            match tokio::time::timeout(EXIT_TIMEOUT, process.wait()).await {
                Ok(_) => tracing::debug!(pid, "pool child exited"),
                Err(_) => {
                    tracing::warn!(pid, "pool child did not exit when let go; killing it");
                    let _ = process.kill().await;
                }
            }
        })
    }

    /// Starts a child in the place of one that is gone, retrying while it fails.
    fn replace(self: &Arc<Self>) {
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        let pool = self.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(100);
            while !pool.closed.load(Ordering::SeqCst) {
                match spawn(&pool.options).await {
                    Ok(child) => {
                        tracing::debug!(pid = child.pid, "pool child started");
                        pool.give_back(child);
                        return;
                    }
                    Err(error) => {
                        tracing::error!(%error, "cannot start a pool child; retrying in {delay:?}");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(10));
                    }
                }
            }
        });
    }
}

/// A child running a job. Dropped while it still holds the child (the job's future was
/// dropped), it kills the child and starts another.
struct Busy {
    pool: Arc<Inner>,
    child: Option<Child>,
}

impl Busy {
    async fn finish(mut self, number: u64, hard_limit: Option<f64>) -> Ending {
        let child = self.child.as_mut().expect("a busy child");
        let limit = hard_limit.and_then(|s| Duration::try_from_secs_f64(s).ok());
        let reply = match limit {
            None => child.reader.read::<FromChild>().await,
            Some(limit) => {
                match tokio::time::timeout(limit, child.reader.read::<FromChild>()).await {
                    Ok(reply) => reply,
                    Err(_) => {
                        let seconds = hard_limit.unwrap_or_default();
                        tracing::error!(
                            pid = child.pid,
                            "hard time limit ({seconds}s) exceeded; terminating the child"
                        );
                        terminate(child).await;
                        self.lost();
                        return Ending::TimedOut(seconds);
                    }
                }
            }
        };
        match reply {
            Ok(Some(FromChild::Done {
                job,
                ending,
                peak_rss_kib,
            })) if job == number => {
                child.tasks += 1;
                let options = &self.pool.options;
                let tasks_done = options
                    .max_tasks_per_child
                    .is_some_and(|n| child.tasks >= n);
                let too_big = options
                    .max_memory_per_child
                    .zip(peak_rss_kib)
                    .is_some_and(|(limit, rss)| rss > limit);
                if let Some(stats) = lock(&self.pool.children).get_mut(&child.pid) {
                    stats.tasks = child.tasks;
                    stats.peak_rss_kib = peak_rss_kib;
                }
                let child = self.child.take().expect("a busy child");
                if tasks_done || too_big {
                    tracing::info!(
                        pid = child.pid,
                        tasks = child.tasks,
                        peak_rss_kib,
                        "pool child reached its {}; replacing it",
                        if too_big {
                            "memory limit"
                        } else {
                            "task limit"
                        }
                    );
                    drop(self.pool.retire(child));
                    self.pool.replace();
                } else {
                    self.pool.give_back(child);
                }
                ending.into_ending()
            }
            other => {
                let problem = match other {
                    Ok(Some(reply)) => format!("unexpected answer {reply:?}"),
                    Ok(None) => "end of stream".to_owned(),
                    Err(FrameError::Io(error)) => error.to_string(),
                    Err(error) => error.to_string(),
                };
                let status = exit_status(child).await;
                let message = format!(
                    "Worker exited prematurely: {} Job: {number}.",
                    human_status(status)
                );
                tracing::error!(pid = child.pid, %problem, "{message}");
                self.lost();
                Ending::Lost(message)
            }
        }
    }

    /// The child is gone or killed: reap it and start another.
    fn lost(&mut self) {
        if let Some(child) = self.child.take() {
            drop(self.pool.retire(child));
            self.pool.replace();
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The job was abandoned (cold shutdown): its child must not run on.
            let _ = child.process.start_kill();
            drop(self.pool.retire(child));
            self.pool.replace();
        }
    }
}

/// SIGTERM to the child's process group, then SIGKILL after [`KILL_GRACE`]; reaps it.
async fn terminate(child: &mut Child) {
    let group = i32::try_from(child.pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    if let Some(group) = group {
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::Term);
    }
    if tokio::time::timeout(KILL_GRACE, child.process.wait())
        .await
        .is_err()
    {
        if let Some(group) = group {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::Kill);
        }
        let _ = child.process.kill().await;
    }
}

/// How the child ended, once it has (it closed its socket, so it is exiting).
async fn exit_status(child: &mut Child) -> Option<ExitStatus> {
    match tokio::time::timeout(Duration::from_secs(2), child.process.wait()).await {
        Ok(Ok(status)) => Some(status),
        _ => {
            let _ = child.process.kill().await;
            None
        }
    }
}

/// billiard's `human_status`: `signal 9 (SIGKILL)` or `exitcode 1`.
fn human_status(status: Option<ExitStatus>) -> String {
    match status {
        Some(status) => match (status.signal(), status.code()) {
            (Some(signal), _) => match signal_name(signal) {
                Some(name) => format!("signal {signal} ({name})"),
                None => format!("signal {signal}"),
            },
            (None, Some(code)) => format!("exitcode {code}"),
            (None, None) => "exitcode None".to_owned(),
        },
        None => "exitcode None".to_owned(),
    }
}

fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        _ => return None,
    })
}

async fn write_frame(writer: &mut OwnedWriteHalf, frame: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    writer.write_all(frame).await?;
    writer.flush().await
}

/// Starts one child and waits for its `Ready`.
async fn spawn(options: &ProcessPoolOptions) -> Result<Child> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    let mut command = tokio::process::Command::new(&options.program);
    command
        .args(&options.args)
        .env(CHILD_ENV, std::process::id().to_string())
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        // Its own process group: a Ctrl-C at the terminal reaches the worker only (which
        // shuts down through the children), and a hard limit signals what the task started.
        .process_group(0)
        .kill_on_drop(true);
    let mut process = command.spawn().map_err(|error| {
        Error::Config(format!(
            "cannot start a pool child ({}): {error}",
            options.program.display()
        ))
    })?;
    // Our copy of the child's end must close, or its exit would not end our reads.
    drop(command);
    let pid = process.id().unwrap_or_default();
    ours.set_nonblocking(true)?;
    let (reader, writer) = tokio::net::UnixStream::from_std(ours)?.into_split();
    let mut reader = FrameReader::new(reader);
    let ready = tokio::time::timeout(READY_TIMEOUT, reader.read::<FromChild>()).await;
    match ready {
        Ok(Ok(Some(FromChild::Ready { pid: said }))) if said == pid => Ok(Child {
            pid,
            process,
            reader,
            writer,
            tasks: 0,
        }),
        other => {
            let _ = process.start_kill();
            let status = process.wait().await.ok();
            let why = match other {
                Err(_) => format!("it was not ready after {READY_TIMEOUT:?}"),
                Ok(Ok(Some(reply))) => format!("it said {reply:?} instead of Ready"),
                Ok(Ok(None)) => format!("it exited first ({})", human_status(status)),
                Ok(Err(error)) => error.to_string(),
            };
            Err(Error::Config(format!(
                "a pool child ({} with this worker's arguments) did not start: {why}. The \
                 site's `celery worker` command must reach celery_web::cli::run, which serves \
                 pool children",
                options.program.display()
            )))
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_as_billiard_writes_them() {
        assert_eq!(
            human_status(Some(ExitStatus::from_raw(9))),
            "signal 9 (SIGKILL)"
        );
        assert_eq!(
            human_status(Some(ExitStatus::from_raw(1 << 8))),
            "exitcode 1"
        );
        assert_eq!(
            human_status(Some(ExitStatus::from_raw(6))),
            "signal 6 (SIGABRT)"
        );
    }
}
