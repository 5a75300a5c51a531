//! `site celery bench`: enqueue, drain and latency figures for the configured broker and
//! result backend, measured in one process.
//!
//! 1. enqueue: `--tasks` no-op tasks sent one task per call (no worker running), from a
//!    single-thread runtime as an actix-web worker runs handlers: strictly one after another,
//!    or from `--senders N` concurrent loops;
//! 2. drain: a worker starts and runs them all; the clock stops when the worker has stored
//!    the last result and stopped;
//! 3. latency: with a worker idle, `--latency-tasks` tasks are sent 2 ms apart and each
//!    returns when it started; measured once with the worker in this process, once with a
//!    separate `<binary> celery worker` process (wake-ups then cross processes);
//! 4. batch publish: `--tasks` tasks in one [`Celery::send_many`] call, then purged;
//! 5. on PostgreSQL, before the enqueue, the server's own ceiling (`bench_ceiling`): plain
//!    one-row inserts with 1, 8 and `--senders` connections; the report gives our enqueue as
//!    a share of the ceiling with as many connections as senders.
//!
//! `--results-list ROWS` runs the result-listing benchmark instead (`bench_results`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::progress::Progress;
use crate::task::{
    BoxFuture, Signature, TaskArgs, TaskContext, TaskError, TaskOptions, TaskRegistration,
    TaskRunner,
};
use crate::worker::{Shutdown, Worker};
use crate::{Celery, Error, Result};

/// The queue the benchmark uses, so it never touches real work.
const QUEUE: &str = "celery_web.bench";
use super::BENCH_NOOP as NOOP;

static STARTED: AtomicU64 = AtomicU64::new(0);

/// Returns the time it started, in microseconds since the epoch.
fn noop(_: TaskContext, mut args: TaskArgs) -> BoxFuture<'static, Result<Value, TaskError>> {
    Box::pin(async move {
        let started_at = chrono::Utc::now().timestamp_micros();
        let _sent_at: i64 = args.take(0, "sent_at")?;
        args.finish()?;
        STARTED.fetch_add(1, Ordering::Relaxed);
        Ok(json!(started_at))
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
    /// Concurrent senders during the enqueue, each sending one task per call (as concurrent
    /// requests of a site do); 1 sends strictly one after another.
    #[arg(long, default_value_t = 1)]
    pub senders: u64,
    /// Skip the latency measurement through a separate `celery worker` process.
    #[arg(long)]
    pub no_worker_process: bool,
    /// Instead of the broker benchmark: fill `celery_taskresult` up to this many rows (in
    /// the configured database) and time the result listings of the admin pages.
    #[arg(long, value_name = "ROWS")]
    pub results_list: Option<u64>,
}

fn signature(sent_at: i64) -> Signature<i64> {
    Signature::with_output(NOOP).arg(sent_at).queue(QUEUE)
}

async fn wait_for_starts(target: u64, limit: Duration, progress: &mut Progress) -> Result<()> {
    let deadline = Instant::now() + limit;
    while STARTED.load(Ordering::Relaxed) < target {
        progress.set(STARTED.load(Ordering::Relaxed));
        if Instant::now() > deadline {
            return Err(Error::broker(format!(
                "bench: only {} of {target} tasks started within {limit:?}",
                STARTED.load(Ordering::Relaxed)
            )));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    progress.set(target);
    Ok(())
}

/// Sends `count` tasks 2 ms apart to a running worker and returns each one's send→start
/// time in microseconds, sorted.
async fn latencies(app: &Celery, count: u64, label: &str) -> Result<Vec<i64>> {
    let mut progress = Progress::new(label, "tasks", Some(count));
    // Let the worker settle into waiting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut sent = Vec::new();
    for _ in 0..count {
        let sent_at = chrono::Utc::now().timestamp_micros();
        let result = app.send(signature(sent_at)).await?;
        sent.push((sent_at, result));
        progress.inc(1);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    progress.finish(&format!("{count} tasks sent"));
    let mut measured = Vec::with_capacity(sent.len());
    for (sent_at, result) in sent {
        let started_at: i64 = result.get(Duration::from_secs(60)).await?;
        measured.push(started_at - sent_at);
    }
    measured.sort_unstable();
    Ok(measured)
}

/// Sends `tasks` no-op tasks, one task per call, from `senders` concurrent loops on a
/// single-thread runtime of its own thread, as handlers on an actix-web worker do; returns
/// how long it took.
async fn enqueue_one_by_one(app: &Celery, tasks: u64, senders: u64) -> Result<Duration> {
    let app = app.clone();
    // Counted by the senders, shown from here: progress never slows the loops it measures.
    let sent = Arc::new(AtomicU64::new(0));
    let counted = sent.clone();
    let senders = senders.clamp(1, tasks.max(1));
    let sender = tokio::task::spawn_blocking(move || -> Result<Duration> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let clock = Instant::now();
            let mut loops = tokio::task::JoinSet::new();
            for index in 0..senders {
                let app = app.clone();
                let counted = counted.clone();
                let share = tasks / senders + u64::from(index < tasks % senders);
                loops.spawn(async move {
                    for _ in 0..share {
                        app.send(signature(chrono::Utc::now().timestamp_micros()))
                            .await?;
                        counted.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok::<_, Error>(())
                });
            }
            while let Some(done) = loops.join_next().await {
                done.map_err(|e| Error::broker(format!("bench sender crashed: {e}")))??;
            }
            Ok(clock.elapsed())
        })
    });
    let mut progress = Progress::new("bench enqueue", "tasks", Some(tasks));
    let mut sender = sender;
    let elapsed = loop {
        tokio::select! {
            ended = &mut sender => {
                break ended.map_err(|e| Error::broker(format!("bench sender crashed: {e}")))??;
            }
            () = tokio::time::sleep(Duration::from_millis(100)) => {
                progress.set(sent.load(Ordering::Relaxed));
            }
        }
    };
    progress.set(sent.load(Ordering::Relaxed));
    progress.finish(&format!("{tasks} tasks sent"));
    Ok(elapsed)
}

/// `<this binary> celery worker` on the bench queue, as the site's manage command runs it.
fn spawn_worker_process(args: &BenchArgs) -> Result<std::process::Child> {
    let exe = std::env::current_exe()?;
    let child = std::process::Command::new(exe)
        .args([
            "celery",
            "worker",
            "-Q",
            QUEUE,
            "-l",
            "warning",
            "-n",
            "bench-child@%h",
            // Latency, not the 1 s mingle waits for peers before the worker consumes.
            "--without-mingle",
        ])
        .args(["-c", &args.concurrency.to_string()])
        .stdout(std::process::Stdio::null())
        .spawn()?;
    Ok(child)
}

fn percentile(sorted: &[i64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)] as f64 / 1000.0
}

pub(super) async fn run(app: &Celery, args: BenchArgs) -> Result<i32> {
    if let Some(rows) = args.results_list {
        return super::bench_results::run(app, rows).await;
    }
    let queues = vec![QUEUE.to_owned()];
    app.broker().purge(&queues).await?;
    let worker = || {
        Worker::new(app)
            .queues([QUEUE])
            .concurrency(args.concurrency)
            .prefetch_multiplier(args.prefetch_multiplier)
            .hostname("bench@%h")
            // Drain time, not the 1 s mingle waits for peers at start.
            .mingle(false)
    };

    // 5. the server's ceiling, measured before our enqueue on the same empty tables
    #[cfg(feature = "postgres")]
    let ceilings = enqueue_ceilings(app, &args)?;
    #[cfg(not(feature = "postgres"))]
    let ceilings: Vec<(u64, f64)> = Vec::new();

    // 1. enqueue, one call at a time
    let enqueue = enqueue_one_by_one(app, args.tasks, args.senders).await?;

    // 2. drain until the last result is stored
    STARTED.store(0, Ordering::Relaxed);
    let shutdown = Shutdown::new();
    let clock = Instant::now();
    let running = tokio::spawn(worker().run(shutdown.clone()));
    let mut progress = Progress::new("bench drain", "tasks", Some(args.tasks));
    wait_for_starts(args.tasks, Duration::from_secs(600), &mut progress).await?;
    progress.finish(&format!("{} tasks started", args.tasks));
    shutdown.warm();
    running
        .await
        .map_err(|e| Error::broker(format!("bench worker crashed: {e}")))??;
    let drain = clock.elapsed();

    // 3. latency, in this process and from a separate worker process
    let shutdown = Shutdown::new();
    let running = tokio::spawn(worker().run(shutdown.clone()));
    let in_process = latencies(app, args.latency_tasks, "bench latency (in process)").await?;
    shutdown.warm();
    running
        .await
        .map_err(|e| Error::broker(format!("bench worker crashed: {e}")))??;
    let cross_process = if args.no_worker_process {
        Vec::new()
    } else {
        let mut child = spawn_worker_process(&args)?;
        let measured = latencies(app, args.latency_tasks, "bench latency (worker process)").await;
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let _ = child.wait();
        measured?
    };

    // 4. batch publish: every task in one call
    let clock = Instant::now();
    let sent = app
        .send_many((0..args.tasks).map(|_| signature(chrono::Utc::now().timestamp_micros())))
        .await?;
    let batch_publish = clock.elapsed();
    drop(sent);
    app.broker().purge(&queues).await?;

    let enqueue_per_s = args.tasks as f64 / enqueue.as_secs_f64();
    let mut report = json!({
        "broker": crate::settings::masked_url(&app.settings().broker_url),
        "result_backend": crate::settings::masked_url(&app.settings().result_backend),
        "tasks": args.tasks,
        "concurrency": args.concurrency,
        "prefetch_multiplier": args.prefetch_multiplier,
        "senders": args.senders,
        "enqueue_per_s": enqueue_per_s.round(),
        "batch_publish_per_s": (args.tasks as f64 / batch_publish.as_secs_f64()).round(),
        "drain_per_s": (args.tasks as f64 / drain.as_secs_f64()).round(),
        "latency_tasks": args.latency_tasks,
        "in_process_latency_p50_ms": percentile(&in_process, 50.0),
        "in_process_latency_p99_ms": percentile(&in_process, 99.0),
        "cross_process_latency_p50_ms": percentile(&cross_process, 50.0),
        "cross_process_latency_p99_ms": percentile(&cross_process, 99.0),
    });
    for (connections, per_s) in &ceilings {
        report[format!("ceiling_insert_{connections}_connections_per_s")] = json!(per_s.round());
        if *connections == args.senders.max(1) {
            report["enqueue_share_of_ceiling"] =
                json!((enqueue_per_s / per_s * 1000.0).round() / 1000.0);
        }
    }
    println!("{report}");
    Ok(0)
}

/// On PostgreSQL, plain one-row inserts per second with 1, 8 and `--senders` connections
/// (see `bench_ceiling`); nothing on other brokers.
#[cfg(feature = "postgres")]
fn enqueue_ceilings(app: &Celery, args: &BenchArgs) -> Result<Vec<(u64, f64)>> {
    let crate::settings::BrokerKind::Database {
        url,
        kind: crate::db::DbKind::Postgres,
    } = app.settings().broker_kind()?
    else {
        return Ok(Vec::new());
    };
    let mut counts = vec![1, 8, args.senders.max(1)];
    counts.sort_unstable();
    counts.dedup();
    let db = crate::db::Db::connect(&url, u32::try_from(counts[counts.len() - 1]).unwrap_or(64))?;
    let message = app.message_for(&signature(chrono::Utc::now().timestamp_micros()))?;
    let sample = super::bench_ceiling::SampleRow {
        queue: QUEUE.to_owned(),
        task_name: NOOP.to_owned(),
        payload: crate::protocol::Envelope::from_message(&message)?.encode(),
    };
    let mut progress = Progress::new("bench ceiling", "runs", Some(counts.len() as u64));
    let mut ceilings = Vec::new();
    for connections in counts {
        let per_s =
            super::bench_ceiling::inserts_per_second(&db, &sample, args.tasks, connections)?;
        ceilings.push((connections, per_s));
        progress.inc(1);
    }
    progress.finish("ceiling measured");
    Ok(ceilings)
}
