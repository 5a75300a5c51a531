//! `site celery beat`: run the scheduler, list the schedule, or measure its precision.

use std::time::Duration;

use chrono::{SubsecRound, Utc};

use crate::beat::schedule::{Interval, Period, Schedule};
use crate::beat::{Beat, BeatStore, PeriodicTaskDefinition, Source};
use crate::task::Signature;
use crate::worker::Shutdown;
use crate::{Celery, Result};

/// Options of `site celery beat`.
#[derive(Debug, Clone, clap::Args)]
pub struct BeatArgs {
    /// Log level: debug, info, warning, error.
    #[arg(short = 'l', long, default_value = "info")]
    pub loglevel: String,
    /// Print every periodic task with its schedule in words and its next firing, then exit
    /// (after syncing the settings' `beat_schedule` into the table).
    #[arg(long)]
    pub list: bool,
    /// Benchmark: fire an every-second schedule for SECONDS and print how late the firings
    /// were (p50, p99, max) and whether each was sent once, then exit.
    #[arg(long, value_name = "SECONDS")]
    pub bench: Option<u64>,
    /// Beats racing for the benchmark's firings (each firing must still be sent once).
    #[arg(long, default_value_t = 1, requires = "bench")]
    pub bench_beats: usize,
}

pub(super) async fn run(app: &Celery, args: BeatArgs) -> Result<i32> {
    super::init_logging(if args.list || args.bench.is_some() {
        "warning"
    } else {
        &args.loglevel
    });
    if args.list {
        return list(app).await;
    }
    if let Some(seconds) = args.bench {
        return bench(app, seconds, args.bench_beats.max(1)).await;
    }
    let shutdown = Shutdown::new();
    shutdown.on_signals()?;
    Beat::new(app)?.run(shutdown).await?;
    Ok(0)
}

async fn list(app: &Celery) -> Result<i32> {
    let beat = Beat::new(app)?;
    beat.sync_definitions().await?;
    let store = beat.store().clone();
    let rows = tokio::task::spawn_blocking(move || store.load())
        .await
        .map_err(|e| crate::Error::Database(e.to_string()))??;
    if rows.is_empty() {
        println!("No periodic tasks.");
        return Ok(0);
    }
    for row in rows {
        match row {
            Ok(task) => {
                let next = match task.next_firing() {
                    Some(next) => next.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                    None if !task.enabled => "never (disabled)".to_owned(),
                    None => "never".to_owned(),
                };
                println!("{}", task.name);
                println!("    task:     {}", task.task);
                println!("    schedule: {}", task.schedule.describe());
                println!("    next:     {next}");
                println!(
                    "    runs:     {} (last {}); from {}",
                    task.total_run_count,
                    task.last_run_at.map_or("never".to_owned(), |t| t
                        .format("%Y-%m-%d %H:%M:%S UTC")
                        .to_string()),
                    task.source.as_str()
                );
            }
            Err(bad) => println!("{}\n    cannot be scheduled: {}", bad.name, bad.reason),
        }
    }
    Ok(0)
}

/// Fires an every-second schedule for `seconds` with `beats` beats racing, then reports the
/// lateness of each firing (when a beat took it minus its slot) and checks that the broker
/// received exactly one message per firing.
async fn bench(app: &Celery, seconds: u64, beats: usize) -> Result<i32> {
    let store = BeatStore::for_app(app)?;
    let name = format!("celery-web beat bench {}", std::process::id());
    let queue = format!("celery-web-beat-bench-{}", std::process::id());
    let start = (Utc::now() + chrono::Duration::seconds(2)).trunc_subsecs(0);
    let mut definition = PeriodicTaskDefinition::new(
        &name,
        Schedule::Interval(Interval::new(1, Period::Seconds).map_err(config)?),
        Signature::new(super::bench::NOOP).queue(&queue),
    );
    definition.start_time = Some(start);
    definition.description = "temporary: celery beat --bench".to_owned();
    let id = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.save(&definition, Source::Database))
            .await
            .map_err(|e| crate::Error::Database(e.to_string()))??
    };
    println!(
        "beat bench: every-second schedule for {seconds} s, {beats} beat(s) racing, broker {}",
        crate::settings::masked_url(&app.settings().broker_url)
    );
    let shutdown = Shutdown::new();
    let mut running = Vec::new();
    for n in 0..beats {
        let beat = Beat::new(app)?.without_sync().ident(format!("bench-{n}"));
        running.push(tokio::spawn(beat.run(shutdown.clone())));
    }
    tokio::time::sleep(Duration::from_secs(seconds) + Duration::from_secs(2)).await;
    shutdown.warm();
    for beat in running {
        beat.await
            .map_err(|e| crate::Error::Database(e.to_string()))??;
    }
    let firings = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.firings(id))
            .await
            .map_err(|e| crate::Error::Database(e.to_string()))??
    };
    let messages = app.broker().purge(std::slice::from_ref(&queue)).await?;
    let _ = tokio::task::spawn_blocking(move || store.delete(&name)).await;
    let mut lateness: Vec<f64> = firings
        .iter()
        .map(|f| {
            (f.fired_at - f.scheduled_at)
                .num_microseconds()
                .unwrap_or(0) as f64
                / 1000.0
        })
        .collect();
    lateness.sort_by(f64::total_cmp);
    let percentile = |p: f64| {
        lateness
            .get(((lateness.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    let mut slots: Vec<_> = firings.iter().map(|f| f.scheduled_at).collect();
    slots.dedup();
    println!(
        "firings: {} (expected about {seconds}), distinct slots: {}, messages in the broker: {messages}",
        firings.len(),
        slots.len()
    );
    println!(
        "lateness: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(0.5),
        percentile(0.99),
        lateness.last().copied().unwrap_or(f64::NAN)
    );
    let once =
        usize::try_from(messages).ok() == Some(firings.len()) && slots.len() == firings.len();
    println!("each firing sent once: {}", if once { "yes" } else { "NO" });
    Ok(if once { 0 } else { 1 })
}

fn config(e: crate::beat::schedule::ScheduleError) -> crate::Error {
    crate::Error::Config(e.to_string())
}
