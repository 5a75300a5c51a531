//! The worker's event dispatcher: worker events go out at once; task events are buffered
//! and sent by the [`Flusher`] as lists on `task.multi` (Celery's `groups=['task']` buffer),
//! so a busy worker sends one message per batch instead of one per event.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use tokio::sync::Notify;

use super::{envelope, event, exchange, routing_key, Clock};
use crate::broker::{Broker, Exchange};
use crate::service::{Service, Stop};
use crate::task::BoxFuture;
use crate::Result;

/// Celery's `buffer_limit`: the most events in one `task.multi` message.
pub(crate) const BATCH: usize = 24;

/// What a worker's events share: who sends, the clock, whether task events are on, and the
/// buffer of task events waiting to be sent.
#[derive(Debug)]
pub(crate) struct Dispatcher {
    broker: Arc<dyn Broker>,
    exchange: Exchange,
    pub(crate) hostname: String,
    pub(crate) clock: Arc<Clock>,
    task_events: AtomicBool,
    buffer: Mutex<Vec<Value>>,
    wake: Notify,
}

impl Dispatcher {
    /// A dispatcher for node `hostname` on a broker that broadcasts; `task_events` says
    /// whether task events start on (`-E`).
    pub(crate) fn new(
        broker: Arc<dyn Broker>,
        hostname: &str,
        clock: Arc<Clock>,
        task_events: bool,
    ) -> Self {
        Dispatcher {
            broker,
            exchange: exchange(),
            hostname: hostname.to_owned(),
            clock,
            task_events: AtomicBool::new(task_events),
            buffer: Mutex::new(Vec::new()),
            wake: Notify::new(),
        }
    }

    /// Whether task events are sent now.
    pub(crate) fn task_events(&self) -> bool {
        self.task_events.load(Ordering::Relaxed)
    }

    /// Turns task events on or off; returns whether they were on.
    pub(crate) fn set_task_events(&self, on: bool) -> bool {
        self.task_events.swap(on, Ordering::Relaxed)
    }

    /// Sends one worker event now (a single object, on its own routing key).
    pub(crate) async fn send(&self, event_type: &str, fields: Map<String, Value>) -> Result<()> {
        let body = event(event_type, &self.hostname, self.clock.forward(), fields);
        let key = routing_key(event_type);
        self.publish(&body, &key).await
    }

    /// Buffers a task event, if task events are on; the [`Flusher`] sends it.
    pub(crate) fn task(&self, event_type: &str, fields: Map<String, Value>) {
        if !self.task_events() {
            return;
        }
        let body = event(event_type, &self.hostname, self.clock.forward(), fields);
        self.buffer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(body);
        self.wake.notify_one();
    }

    async fn publish(&self, body: &Value, key: &str) -> Result<()> {
        let Some(broadcast) = self.broker.broadcast() else {
            return Ok(());
        };
        let envelope = envelope(body, &self.hostname, key);
        broadcast.send(&self.exchange, key, &envelope).await
    }

    /// Sends every buffered task event, [`BATCH`] per message.
    async fn flush(&self) {
        let pending = std::mem::take(&mut *self.buffer.lock().unwrap_or_else(|p| p.into_inner()));
        for batch in pending.chunks(BATCH) {
            let body = Value::Array(batch.to_vec());
            if let Err(error) = self.publish(&body, "task.multi").await {
                tracing::warn!(%error, events = batch.len(), "could not send task events; dropped");
            }
        }
    }
}

/// Sends buffered task events as soon as the one before has gone (the next turn of
/// Celery's event loop), and the rest when the worker stops.
#[derive(Debug)]
pub(crate) struct Flusher(pub(crate) Arc<Dispatcher>);

impl Service for Flusher {
    fn name(&self) -> &'static str {
        "event flusher"
    }

    fn run(self: Box<Self>, mut stop: Stop) -> BoxFuture<'static, Result<()>> {
        Box::pin(async move {
            let dispatcher = self.0;
            loop {
                tokio::select! {
                    () = dispatcher.wake.notified() => dispatcher.flush().await,
                    () = stop.requested() => break,
                }
            }
            dispatcher.flush().await;
            Ok(())
        })
    }
}
