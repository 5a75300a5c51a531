//! The child side of the process pool: a re-executed copy of the site's binary that runs one
//! task at a time for the worker that started it.
//!
//! The worker starts the child with its own command line and `CELERY_WEB_POOL_CHILD` set to
//! its pid; `site celery worker` sees the variable and calls [`serve`] instead of starting a
//! worker. The child's standard input is its end of a socket pair: frames of the
//! [pool protocol](super::protocol) go both ways on it, so a task's `println!` still reaches
//! the worker's standard output, as with Celery's prefork pool.

use std::os::fd::AsFd;

use super::frame::{self, FrameReader};
use super::protocol::{FromChild, Job, ToChild, WireEnding};
use crate::task::{TaskArgs, TaskContext};
use crate::worker::outcome::{execute, Ending};
use crate::{Celery, Error, Result};

/// The variable that makes `site celery worker` a pool child; its value is the worker's pid.
pub(crate) const CHILD_ENV: &str = "CELERY_WEB_POOL_CHILD";

/// Whether this process was started as a pool child.
pub fn is_pool_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

/// Serves the worker on standard input until it closes the socket. Returns the exit code.
pub async fn serve(app: &Celery) -> Result<i32> {
    watch_parent()?;
    let socket = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map(std::os::unix::net::UnixStream::from)?;
    socket.set_nonblocking(true)?;
    let socket = tokio::net::UnixStream::from_std(socket).map_err(|error| {
        Error::Config(format!(
            "pool child: standard input is not the worker's socket ({error}); this \
             process is started by `site celery worker --pool process`, not by hand"
        ))
    })?;
    let (reader, mut writer) = socket.into_split();
    let mut reader = FrameReader::new(reader);
    let pid = std::process::id();
    write(&mut writer, &FromChild::Ready { pid }).await?;
    tracing::debug!(pid, "pool child ready");
    loop {
        let job = match reader.read::<ToChild>().await {
            Ok(Some(ToChild::Run(job))) => job,
            // The worker let this child go (a recycle, or its shutdown).
            Ok(None) => return Ok(0),
            Err(error) => {
                tracing::error!(pid, %error, "pool child: bad frame from the worker; exiting");
                return Ok(1);
            }
        };
        let number = job.job;
        let ending = run(app, job).await;
        let done = FromChild::Done {
            job: number,
            ending: WireEnding::from_ending(ending),
            peak_rss_kib: peak_rss_kib(),
        };
        write(&mut writer, &done).await?;
    }
}

async fn run(app: &Celery, job: Job) -> Ending {
    let Some(task) = app.registry().get(&job.task).cloned() else {
        return Ending::Returned(Err(crate::task::TaskError::Failed {
            exc_type: "NotRegistered".to_owned(),
            message: job.task,
            traceback: None,
        }));
    };
    let soft = job
        .soft_time_limit
        .and_then(|s| std::time::Duration::try_from_secs_f64(s).ok());
    let context = TaskContext::new(
        &job.id,
        &task.name,
        job.retries,
        &job.hostname,
        job.eta,
        job.periodic_task_name.as_deref(),
        soft,
    );
    let args = TaskArgs::new(&task.name, job.args, job.kwargs);
    let span = tracing::info_span!("task", name = %task.name, id = %job.id);
    tracing::Instrument::instrument(execute(task.runner, context, args, None, None), span).await
}

async fn write(writer: &mut tokio::net::unix::OwnedWriteHalf, value: &FromChild) -> Result<()> {
    frame::write(writer, value)
        .await
        .map_err(|error| Error::Config(format!("pool child: cannot answer the worker: {error}")))
}

/// Dies with the worker: a child never outlives the process that feeds it.
fn watch_parent() -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::Kill))
            .map_err(std::io::Error::from)?;
        let expected = std::env::var(CHILD_ENV)
            .ok()
            .and_then(|v| v.parse::<i32>().ok());
        let parent = rustix::process::getppid().map(rustix::process::Pid::as_raw_nonzero);
        if expected.is_some() && parent.map(|p| p.get()) != expected {
            return Err(Error::Config(
                "pool child: the worker that started it is gone".to_owned(),
            ));
        }
    }
    Ok(())
}

/// Peak resident memory (`VmHWM` of `/proc/self/status`, what `ru_maxrss` reports), KiB.
pub(crate) fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn peak_rss_is_read() {
        let kib = super::peak_rss_kib().expect("VmHWM");
        assert!(kib > 100, "{kib} KiB");
    }
}
