//! `site celery bench`: enqueue, drain and latency figures for the configured broker and
//! result backend, measured in one process.
//!
//! 1. enqueue: `--tasks` no-op tasks sent one call at a time (no worker running);
//! 2. drain: a worker starts and runs them all; the clock stops when the worker has stored
//!    the last result and stopped;
//! 3. latency: with the worker idle, `--latency-tasks` tasks are sent 2 ms apart and each
//!    records the time from its send to its start.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::task::{
    BoxFuture, Signature, TaskArgs, TaskContext, TaskError, TaskOptions, TaskRegistration,
    TaskRunner,
};
use crate::worker::{Shutdown, Worker};
use crate::{Celery, Error, Result};

/// The queue the benchmark uses, so it never touches real work.
const QUEUE: &str = "celery_web.bench";
/// The benchmark's no-op task.
pub(crate) const NOOP: &str = "celery_web.bench.noop";

static STARTED: AtomicU64 = AtomicU64::new(0);
static RECORD_LATENCY: AtomicBool = AtomicBool::new(false);
static LATENCIES: Mutex<Vec<i64>> = Mutex::new(Vec::new());

fn noop(_: TaskContext, mut args: TaskArgs) -> BoxFuture<'static, Result<Value, TaskError>> {
    Box::pin(async move {
        let sent_at: i64 = args.take(0, "sent_at")?;
        args.finish()?;
        if RECORD_LATENCY.load(Ordering::Relaxed) {
            let latency = chrono::Utc::now().timestamp_micros() - sent_at;
            LATENCIES
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(latency);
        }
        STARTED.fetch_add(1, Ordering::Relaxed);
        Ok(Value::Null)
    })
}

inventory::submit! {
    TaskRegistration {
        name: Some(NOOP),
        module_path: module_path!(),
        options: TaskOptions::DEFAULT,
        runner: TaskRunner::Async(noop),
    }
}

/// Options of `site celery bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Tasks to enqueue and drain.
    #[arg(long, default_value_t = 20_000)]
    pub tasks: u64,
    /// Worker concurrency during the drain.
    #[arg(short = 'c', long, default_value_t = 64)]
    pub concurrency: usize,
    /// Worker prefetch multiplier during the drain.
    #[arg(long, default_value_t = 4)]
    pub prefetch_multiplier: usize,
    /// Tasks sent one by one to measure enqueue→start latency.
    #[arg(long, default_value_t = 1_000)]
    pub latency_tasks: u64,
}

fn signature() -> Signature {
    Signature::new(NOOP)
        .arg(chrono::Utc::now().timestamp_micros())
        .queue(QUEUE)
}

async fn wait_for_starts(target: u64, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    while STARTED.load(Ordering::Relaxed) < target {
        if Instant::now() > deadline {
            return Err(Error::Broker(format!(
                "bench: only {} of {target} tasks started within {limit:?}",
                STARTED.load(Ordering::Relaxed)
            )));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

fn percentile(sorted: &[i64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)] as f64 / 1000.0
}

pub(super) async fn run(app: &Celery, args: BenchArgs) -> Result<i32> {
    let queues = vec![QUEUE.to_owned()];
    app.broker().purge(&queues).await?;
    let worker = || {
        Worker::new(app)
            .queues([QUEUE])
            .concurrency(args.concurrency)
            .prefetch_multiplier(args.prefetch_multiplier)
            .hostname("bench@%h")
    };

    // 1. enqueue, one call at a time
    let clock = Instant::now();
    for _ in 0..args.tasks {
        app.send(signature()).await?;
    }
    let enqueue = clock.elapsed();

    // 2. drain until the last result is stored
    STARTED.store(0, Ordering::Relaxed);
    let shutdown = Shutdown::new();
    let clock = Instant::now();
    let running = tokio::spawn(worker().run(shutdown.clone()));
    wait_for_starts(args.tasks, Duration::from_secs(600)).await?;
    shutdown.warm();
    running
        .await
        .map_err(|e| Error::Broker(format!("bench worker crashed: {e}")))??;
    let drain = clock.elapsed();

    // 3. latency, worker idle and waiting
    STARTED.store(0, Ordering::Relaxed);
    LATENCIES.lock().unwrap_or_else(|p| p.into_inner()).clear();
    RECORD_LATENCY.store(true, Ordering::Relaxed);
    let shutdown = Shutdown::new();
    let running = tokio::spawn(worker().run(shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..args.latency_tasks {
        app.send(signature()).await?;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    wait_for_starts(args.latency_tasks, Duration::from_secs(120)).await?;
    RECORD_LATENCY.store(false, Ordering::Relaxed);
    shutdown.warm();
    running
        .await
        .map_err(|e| Error::Broker(format!("bench worker crashed: {e}")))??;
    let mut latencies = std::mem::take(&mut *LATENCIES.lock().unwrap_or_else(|p| p.into_inner()));
    latencies.sort_unstable();

    let report = json!({
        "broker": crate::settings::masked_url(&app.settings().broker_url),
        "result_backend": crate::settings::masked_url(&app.settings().result_backend),
        "tasks": args.tasks,
        "concurrency": args.concurrency,
        "prefetch_multiplier": args.prefetch_multiplier,
        "enqueue_per_s": (args.tasks as f64 / enqueue.as_secs_f64()).round(),
        "drain_per_s": (args.tasks as f64 / drain.as_secs_f64()).round(),
        "latency_tasks": args.latency_tasks,
        "latency_p50_ms": percentile(&latencies, 50.0),
        "latency_p99_ms": percentile(&latencies, 99.0),
    });
    println!("{report}");
    Ok(0)
}
