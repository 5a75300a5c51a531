//! The worker's heart: `worker-online` when it starts, `worker-heartbeat` every 2 s and
//! `worker-offline` when it stops, with Celery's fields (`freq`, `active`, `processed`,
//! `loadavg`, `sw_ident`, `sw_ver`, `sw_sys`). Flower lists a worker from these and
//! shows it online while one arrived within 2 × `freq`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::sync::{Notify, Semaphore};

use super::{loadavg, Dispatcher};
use crate::service::{Service, Stop};
use crate::task::BoxFuture;
use crate::Result;

/// Celery's heartbeat interval (`Heart.interval`, `--heartbeat-interval`).
pub(crate) const FREQ: Duration = Duration::from_secs(2);

/// The heartbeat events of one worker.
#[derive(Debug)]
pub(crate) struct Heart {
    pub(crate) dispatcher: Arc<Dispatcher>,
    /// The worker's counters (`processed`).
    pub(crate) counters: Arc<crate::worker::Counters>,
    /// Free execution slots, to count the active ones.
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) concurrency: usize,
    /// Rings for an extra beat now (remote control's `heartbeat`).
    pub(crate) ring: Arc<Notify>,
}

impl Heart {
    fn fields(&self, freq: f64) -> Map<String, Value> {
        let active = self
            .concurrency
            .saturating_sub(self.slots.available_permits());
        let fields = json!({
            "freq": freq,
            "active": active,
            "processed": self.counters.processed.load(Ordering::Relaxed),
            "loadavg": loadavg(),
            "sw_ident": "celery-web",
            "sw_ver": env!("CARGO_PKG_VERSION"),
            "sw_sys": sw_sys(),
        });
        match fields {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    async fn beat(&self, event_type: &str, freq: f64) {
        if let Err(error) = self.dispatcher.send(event_type, self.fields(freq)).await {
            tracing::debug!(%error, "could not send {event_type}");
        }
    }
}

/// Python's `platform.system()`.
fn sw_sys() -> &'static str {
    match std::env::consts::OS {
        "linux" => "Linux",
        "macos" => "Darwin",
        "windows" => "Windows",
        "freebsd" => "FreeBSD",
        other => other,
    }
}

impl Service for Heart {
    fn name(&self) -> &'static str {
        "event heart"
    }

    fn prepare(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.beat("worker-online", FREQ.as_secs_f64()).await;
            Ok(())
        })
    }

    fn run(self: Box<Self>, mut stop: Stop) -> BoxFuture<'static, Result<()>> {
        Box::pin(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + FREQ, FREQ);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => self.beat("worker-heartbeat", FREQ.as_secs_f64()).await,
                    // Celery's `heartbeat` command: one beat with freq 5.
                    () = self.ring.notified() => self.beat("worker-heartbeat", 5.0).await,
                    () = stop.requested() => break,
                }
            }
            self.beat("worker-offline", FREQ.as_secs_f64()).await;
            Ok(())
        })
    }
}
