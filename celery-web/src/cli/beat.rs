//! `site celery beat`: run the scheduler, list the schedule, or measure its precision.

use std::time::Duration;

use chrono::{SubsecRound, Utc};

use crate::beat::schedule::{Interval, Period, Schedule};
use crate::beat::{Beat, BeatStore, PeriodicTask, PeriodicTaskDefinition, Source};
use crate::shutdown::Shutdown;
use crate::task::Signature;
use crate::{Celery, Result};

/// Options of `site celery beat`.
#[derive(Debug, Clone, clap::Args)]
pub struct BeatArgs {
    /// Log level: debug, info, warning, error.
    #[arg(short = 'l', long, default_value = "info")]
    pub loglevel: String,
    /// Print every periodic task with its schedule in words and its next firing, then exit
    /// (settings and code definitions not yet in the table are listed too; nothing is written).
    #[arg(long)]
    pub list: bool,
    /// Benchmark: fire an every-second schedule for SECONDS and print how late the firings
    /// were (p50, p99, max) and whether each was sent once, then exit.
    #[arg(long, value_name = "SECONDS")]
    pub bench: Option<u64>,
    /// Beats racing for the benchmark's firings (each firing must still be sent once).
    #[arg(long, default_value_t = 1, requires = "bench")]
    pub bench_beats: usize,
    /// Write the process id here; refuse to start while the process it names is alive.
    #[arg(long, value_name = "PATH")]
    pub pidfile: Option<std::path::PathBuf>,
    /// Log file and format.
    #[command(flatten)]
    pub log: super::LogArgs,
}

pub(super) async fn run(app: &Celery, args: BeatArgs) -> Result<i32> {
    if args.list || args.bench.is_some() {
        super::init_logging("warning");
    }
    if args.list {
        return list(app).await;
    }
    if let Some(seconds) = args.bench {
        return bench(app, seconds, args.bench_beats.max(1)).await;
    }
    let _pidfile = args
        .pidfile
        .as_deref()
        .map(super::pidfile::PidFile::create)
        .transpose()?;
    super::init_logging_with(&args.loglevel, &args.log)?;
    let shutdown = Shutdown::new();
    shutdown.on_signals()?;
    Beat::new(app)?.run(shutdown).await?;
    Ok(0)
}

/// Prints every periodic task of the table, then the settings' and code's definitions that
/// beat has not written into it yet. Writes nothing.
async fn list(app: &Celery) -> Result<i32> {
    let store = BeatStore::for_app(app)?;
    let rows = blocking(&store, BeatStore::load).await?;
    let stored: std::collections::HashSet<String> = rows
        .iter()
        .map(|row| match row {
            Ok(task) => task.definition.name.clone(),
            Err(bad) => bad.name.clone(),
        })
        .collect();
    let now = Utc::now();
    let mut unsaved: Vec<PeriodicTask> = Vec::new();
    for (definitions, source) in [
        (
            PeriodicTaskDefinition::all_from_settings(app.settings())?,
            Source::Settings,
        ),
        (app.periodic_tasks(), Source::Code),
    ] {
        unsaved.extend(
            definitions
                .iter()
                .filter(|d| !stored.contains(&d.name))
                .map(|d| PeriodicTask::unsaved(d, source, now)),
        );
    }
    if rows.is_empty() && unsaved.is_empty() {
        println!("No periodic tasks.");
        return Ok(0);
    }
    for row in rows {
        match row {
            Ok(task) => print_task(&task, None),
            Err(bad) => println!("{}\n    cannot be scheduled: {}", bad.name, bad.reason),
        }
    }
    for task in &unsaved {
        print_task(
            task,
            Some("not in the table yet: beat writes it when it starts"),
        );
    }
    Ok(0)
}

fn print_task(task: &PeriodicTask, note: Option<&str>) {
    let time = |t: chrono::DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    let next = match task.next_firing() {
        Some(next) => time(next),
        None if !task.enabled => "never (disabled)".to_owned(),
        None => "never".to_owned(),
    };
    println!("{}", task.definition.name);
    println!("    task:     {}", task.definition.task);
    println!("    schedule: {}", task.definition.schedule.describe());
    println!("    next:     {next}");
    println!(
        "    runs:     {} (last {}); from {}",
        task.total_run_count,
        task.last_run_at.map_or("never".to_owned(), time),
        task.source.as_str()
    );
    if let Some(note) = note {
        println!("    note:     {note}");
    }
}

/// Fires an every-second schedule for `seconds` with `beats` beats racing (and only that
/// schedule), then reports the lateness of each firing (from its slot to its message being in
/// the broker) and checks that every slot was sent exactly once. The temporary periodic task
/// is deleted at the end, also after Ctrl-C.
async fn bench(app: &Celery, seconds: u64, beats: usize) -> Result<i32> {
    let store = BeatStore::for_app(app)?;
    let name = format!("celery-web beat bench {}", std::process::id());
    let queue = format!("celery-web-beat-bench-{}", std::process::id());
    let start = (Utc::now() + chrono::Duration::seconds(2)).trunc_subsecs(0);
    let mut definition = PeriodicTaskDefinition::new(
        &name,
        Schedule::Interval(Interval::new(1, Period::Seconds).map_err(config)?),
        Signature::new(super::BENCH_NOOP).queue(&queue),
    );
    definition.start_time = Some(start);
    definition.description = "temporary: celery beat --bench".to_owned();
    let id = blocking(&store, move |s| s.save(&definition, Source::Database)).await?;
    println!(
        "beat bench: every-second schedule for {seconds} s, {beats} beat(s) racing, broker {}",
        crate::settings::masked_url(&app.settings().broker_url)
    );
    let shutdown = Shutdown::new();
    let mut running = Vec::new();
    for n in 0..beats {
        let beat = Beat::new(app)?
            .without_sync()
            .only(&name)
            .measure_lateness()
            .ident(format!("bench-{n}"));
        running.push(tokio::spawn(beat.run(shutdown.clone())));
    }
    let interrupted = tokio::select! {
        () = tokio::time::sleep(Duration::from_secs(seconds + 2)) => false,
        _ = tokio::signal::ctrl_c() => true,
    };
    shutdown.warm();
    let end = Utc::now();
    let mut lateness = Vec::new();
    for beat in running {
        match beat.await {
            Ok(Ok(stats)) => lateness.extend(stats.lateness_ms),
            Ok(Err(e)) => eprintln!("a bench beat failed: {e}"),
            Err(e) => eprintln!("a bench beat crashed: {e}"),
        }
    }
    let firings = blocking(&store, move |s| s.firings(id)).await;
    let messages = app.broker().purge(std::slice::from_ref(&queue)).await;
    let deleted = blocking(&store, move |s| s.delete(&name)).await;
    let (firings, messages) = (firings?, messages?);
    deleted?;
    if interrupted {
        println!("interrupted; the temporary periodic task is deleted");
        return Ok(130);
    }
    lateness.sort_by(f64::total_cmp);
    let percentile = |p: f64| {
        lateness
            .get(((lateness.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    let slots = usize::try_from((end - start).num_seconds() + 1).unwrap_or(0);
    println!(
        "slots due: {slots}, firings: {}, messages in the broker: {messages}",
        firings.len()
    );
    println!(
        "lateness (slot to message in the broker): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(0.5),
        percentile(0.99),
        lateness.last().copied().unwrap_or(f64::NAN)
    );
    // The last slot may fall in the moment the beats stop.
    let every_slot_once = usize::try_from(messages).ok() == Some(firings.len())
        && (slots.saturating_sub(1)..=slots).contains(&firings.len());
    println!(
        "every slot sent exactly once: {}",
        if every_slot_once { "yes" } else { "NO" }
    );
    Ok(if every_slot_once { 0 } else { 1 })
}

async fn blocking<R, F>(store: &BeatStore, f: F) -> Result<R>
where
    F: FnOnce(&BeatStore) -> Result<R> + Send + 'static,
    R: Send + 'static,
{
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| crate::Error::Database(e.into()))?
}

fn config(e: crate::beat::schedule::ScheduleError) -> crate::Error {
    crate::Error::Config(e.to_string())
}
