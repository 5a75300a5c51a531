//! `site celery events`: every event on the broker (Celery's `celeryev` exchange), from
//! Python and celery-web workers alike, until Ctrl-C (or `--duration`): a live view of
//! the workers and the latest tasks on a terminal (`live.rs`), or with `--dump` each
//! event printed as it arrives.

mod live;

use std::time::Duration;

use serde_json::Value;

use crate::events::{decode_events, exchange};
use crate::{Celery, Error, Result};

/// Options of `site celery events`.
#[derive(Debug, Clone, clap::Args)]
pub struct EventsArgs {
    /// Print events as they arrive instead of the live view.
    #[arg(short = 'd', long)]
    pub dump: bool,
    /// One JSON object per line instead of Celery's text.
    #[arg(short = 'j', long)]
    pub json: bool,
    /// Stop after this many seconds.
    #[arg(long)]
    pub duration: Option<f64>,
}

pub(super) async fn run(app: &Celery, args: EventsArgs) -> Result<i32> {
    let broadcast = app.broker().broadcast().ok_or_else(|| {
        Error::Config("this broker carries no events (they need Redis or RabbitMQ)".into())
    })?;
    let mut subscription = broadcast.subscribe(&exchange(), "#").await?;
    let duration = args
        .duration
        .map(|s| Duration::from_secs_f64(s.clamp(0.0, 1e7)));
    if !args.dump {
        let broker = crate::settings::masked_url(&app.settings().broker_url);
        return live::run(subscription, &broker, duration).await;
    }
    eprintln!("-> evdump: starting capture...");
    let deadline = duration.map(|d| tokio::time::Instant::now() + d);
    loop {
        let next = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, subscription.next()).await {
                Ok(next) => next,
                Err(_) => break,
            },
            None => tokio::select! {
                next = subscription.next() => next,
                _ = tokio::signal::ctrl_c() => break,
            },
        };
        let Some(message) = next else { break };
        let events = match message
            .map_err(|e| e.to_string())
            .and_then(|m| decode_events(&m.envelope).map_err(|e| e.to_string()))
        {
            Ok(events) => events,
            Err(error) => {
                eprintln!("(unreadable event: {error})");
                continue;
            }
        };
        for event in events {
            if args.json {
                println!("{}", Value::Object(event));
                continue;
            }
            println!("{}", describe(event));
        }
    }
    Ok(0)
}

/// Celery's dump line: `host [time] type: field=value, ...`.
fn describe(mut event: serde_json::Map<String, Value>) -> String {
    let text = |v: Option<Value>| match v {
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let hostname = text(event.remove("hostname"));
    let kind = text(event.remove("type"));
    let time = event
        .remove("timestamp")
        .and_then(|t| t.as_f64())
        .and_then(|t| chrono::DateTime::from_timestamp_micros((t * 1e6) as i64))
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.6f").to_string())
        .unwrap_or_default();
    let fields: Vec<String> = event
        .into_iter()
        .map(|(key, value)| format!("{key}={}", text(Some(value))))
        .collect();
    format!("{hostname} [{time}] {kind}: {}", fields.join(", "))
}
