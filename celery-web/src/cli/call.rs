//! `site celery call` and `site celery result`.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::task::{Signature, State};
use crate::{Celery, Error, Result};

/// Options of `site celery call NAME`.
#[derive(Debug, Clone, clap::Args)]
pub struct CallArgs {
    /// Task name.
    pub name: String,
    /// Positional arguments as a JSON list.
    #[arg(short = 'a', long, default_value = "[]")]
    pub args: String,
    /// Keyword arguments as a JSON object.
    #[arg(short = 'k', long, default_value = "{}")]
    pub kwargs: String,
    /// Seconds to wait before running.
    #[arg(long)]
    pub countdown: Option<f64>,
    /// Seconds after which the task is revoked if not started.
    #[arg(long)]
    pub expires: Option<f64>,
    /// Target queue.
    #[arg(long)]
    pub queue: Option<String>,
    /// Priority, 0 to 9.
    #[arg(long)]
    pub priority: Option<u8>,
}

/// Options of `site celery result ID`.
#[derive(Debug, Clone, clap::Args)]
pub struct ResultArgs {
    /// Task id.
    pub task_id: String,
    /// Wait up to this many seconds for the task to finish.
    #[arg(long)]
    pub wait: Option<f64>,
}

pub(super) async fn call(app: &Celery, args: CallArgs) -> Result<i32> {
    let positional: Vec<Value> = serde_json::from_str(&args.args)
        .map_err(|e| Error::Config(format!("--args must be a JSON list: {e}")))?;
    let keywords: Map<String, Value> = serde_json::from_str(&args.kwargs)
        .map_err(|e| Error::Config(format!("--kwargs must be a JSON object: {e}")))?;
    let mut signature = Signature::new(args.name).with_arguments(positional, keywords);
    if let Some(countdown) = args.countdown {
        signature = signature.countdown(countdown);
    }
    if let Some(expires) = args.expires {
        signature = signature.expires_in(seconds("--expires", expires)?);
    }
    if let Some(queue) = args.queue {
        signature = signature.queue(queue);
    }
    if let Some(priority) = args.priority {
        signature = signature.priority(priority);
    }
    let result = app.send(signature).await?;
    println!("{}", result.id());
    Ok(0)
}

pub(super) async fn result(app: &Celery, args: ResultArgs) -> Result<i32> {
    let handle = app.async_result::<Value>(&args.task_id);
    let record = match args.wait {
        Some(seconds) => {
            let backend = app.result_backend()?;
            backend
                .wait(&args.task_id, self::seconds("--wait", seconds)?)
                .await?
        }
        None => handle.info().await?,
    };
    let Some(record) = record else {
        println!("{}", State::Pending);
        return Ok(0);
    };
    println!("{}", record.status);
    if let Some(result) = &record.result {
        println!("{result}");
    }
    if let Some(traceback) = &record.traceback {
        println!("{traceback}");
    }
    Ok(if record.status.propagates() { 1 } else { 0 })
}

/// A command-line number of seconds as a duration, or an error naming the option.
fn seconds(option: &str, value: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        Error::Config(format!(
            "{option} must be a non-negative number of seconds, got {value}"
        ))
    })
}
