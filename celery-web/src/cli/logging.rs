//! Where and how `worker` and `beat` log: stderr or `--logfile` (reopened on SIGUSR1 or SIGHUP,
//! so logrotate can move it away), as text or as one JSON object per line (`--log-format json`)
//! for log shippers.
//!
//! A JSON line has `timestamp` (RFC 3339, UTC), `level`, `target`, `message`, the event's other
//! fields under their own names, and `spans` (the names of the spans it happened in) when any.

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::Result;

/// Log options shared by `worker` and `beat`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LogArgs {
    /// Append the log to this file instead of stderr; SIGUSR1 or SIGHUP reopens it (logrotate:
    /// move the file, then signal; or use `copytruncate`).
    #[arg(short = 'f', long, value_name = "PATH")]
    pub logfile: Option<PathBuf>,
    /// `text`, or `json`: one JSON object per line.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// The shape of log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (`tracing`'s format).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The `tracing` filter for a Celery log level name; `RUST_LOG`, when set, wins.
fn filter(level: &str) -> EnvFilter {
    let level = match level.to_ascii_lowercase().as_str() {
        "warning" | "warn" => "warn",
        "critical" | "fatal" => "error",
        other => match other {
            "trace" | "debug" | "info" | "error" => other,
            _ => "info",
        },
    }
    .to_owned();
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level))
}

/// Sends `tracing` output to stderr at `level` (`debug`, `info`, `warning`, `error`, ...);
/// `RUST_LOG`, when set, wins. Calling it twice is harmless.
pub fn init_logging(level: &str) {
    // Err means a subscriber is already set (tests, a second call): keep it.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter(level))
        .with_writer(io::stderr)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
        .try_init();
}

/// Sets up logging at `level` as `options` say. With a log file, it must be called inside the
/// tokio runtime: a task listens for SIGUSR1 and SIGHUP and reopens the file.
pub fn init_logging_with(level: &str, options: &LogArgs) -> Result<()> {
    let Some(path) = &options.logfile else {
        if options.log_format == LogFormat::Json {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter(level))
                .with_writer(io::stderr)
                .event_format(JsonLines)
                .try_init();
        } else {
            init_logging(level);
        }
        return Ok(());
    };
    let file = LogFile::open(path)?;
    file.reopen_on_signals()?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(level))
        .with_writer(file)
        .with_ansi(false);
    let _ = match options.log_format {
        LogFormat::Json => builder.event_format(JsonLines).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    Ok(())
}

/// A log file that can be reopened at the same path while the process runs.
#[derive(Debug, Clone)]
struct LogFile {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

impl LogFile {
    fn open(path: &Path) -> io::Result<LogFile> {
        Ok(LogFile {
            path: path.to_owned(),
            file: Arc::new(Mutex::new(Self::append(path)?)),
        })
    }

    fn append(path: &Path) -> io::Result<File> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("log file {}: {e}", path.display())))
    }

    fn lock(&self) -> MutexGuard<'_, File> {
        self.file.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Spawns the task that reopens the file on SIGUSR1 and SIGHUP.
    fn reopen_on_signals(&self) -> io::Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut usr1 = signal(SignalKind::user_defined1())?;
        let mut hup = signal(SignalKind::hangup())?;
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let name = tokio::select! {
                    _ = usr1.recv() => "SIGUSR1",
                    _ = hup.recv() => "SIGHUP",
                };
                match Self::append(&this.path) {
                    Ok(file) => {
                        *this.lock() = file;
                        tracing::info!(signal = name, path = %this.path.display(), "log file reopened");
                    }
                    // Keep writing to the old file rather than lose the log.
                    Err(error) => tracing::error!(signal = name, %error, "log file not reopened"),
                }
            }
        });
        Ok(())
    }
}

/// The log file, locked for one event's write.
#[derive(Debug)]
struct LockedFile<'a>(MutexGuard<'a, File>);

impl Write for LockedFile<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<'a> MakeWriter<'a> for LogFile {
    type Writer = LockedFile<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LockedFile(self.lock())
    }
}

/// Formats each event as one JSON object on one line.
#[derive(Debug, Clone, Copy)]
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                .into(),
        );
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        let mut fields = JsonFields(Map::new());
        event.record(&mut fields);
        if !fields.0.contains_key("message") {
            line.insert("message".into(), "".into());
        }
        line.extend(fields.0);
        if let Some(scope) = ctx.event_scope() {
            let spans: Vec<Value> = scope.from_root().map(|span| span.name().into()).collect();
            line.insert("spans".into(), spans.into());
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// Collects an event's fields as JSON values.
#[derive(Debug)]
struct JsonFields(Map<String, Value>);

impl Visit for JsonFields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}
