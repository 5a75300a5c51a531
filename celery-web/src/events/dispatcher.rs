//! The worker's event dispatcher: worker events go out at once; task events are buffered
//! and sent by the [`Flusher`] as lists on `task.multi` (Celery's `groups=['task']` buffer),
//! so a busy worker sends one message per batch instead of one per event. A task event is
//! written as JSON text into its batch when it happens, so sending a batch copies nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use tokio::sync::Notify;

use super::{envelope_of_text, event, exchange, routing_key, write_event, Clock};
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
    buffer: Mutex<Batches>,
    wake: Notify,
}

/// Task events waiting to be sent: JSON lists of at most [`BATCH`] events, the last one
/// still open (no closing `]`).
#[derive(Debug, Default)]
struct Batches {
    full: Vec<Vec<u8>>,
    open: Vec<u8>,
    in_open: usize,
}

impl Batches {
    /// Appends one event, written by `write` into the open batch.
    fn push(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        if self.in_open == BATCH {
            self.close();
        }
        self.open.push(if self.in_open == 0 { b'[' } else { b',' });
        write(&mut self.open);
        self.in_open += 1;
    }

    fn close(&mut self) {
        if self.in_open > 0 {
            self.open.push(b']');
            self.full.push(std::mem::take(&mut self.open));
            self.in_open = 0;
        }
    }

    /// Every batch, each a complete JSON list; leaves none.
    fn take(&mut self) -> Vec<Vec<u8>> {
        self.close();
        std::mem::take(&mut self.full)
    }
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
            buffer: Mutex::new(Batches::default()),
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
        self.publish(body.to_string().as_bytes(), &key).await
    }

    /// Buffers a task event with Celery's standard fields and `fields`, if task events are
    /// on; the [`Flusher`] sends it.
    pub(crate) fn task(&self, event_type: &str, fields: &[(&str, Value)]) {
        if !self.task_events() {
            return;
        }
        self.buffer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(|out| {
                write_event(
                    out,
                    event_type,
                    &self.hostname,
                    self.clock.forward(),
                    fields,
                );
            });
        self.wake.notify_one();
    }

    /// Sends events written as JSON text (one object, or a list) with `key`.
    async fn publish(&self, json: &[u8], key: &str) -> Result<()> {
        let Some(broadcast) = self.broker.broadcast() else {
            return Ok(());
        };
        let envelope = envelope_of_text(json, &self.hostname, key);
        broadcast.send(&self.exchange, key, &envelope).await
    }

    /// Sends every buffered task event, [`BATCH`] per message, the messages all at once
    /// and in order: sent one after another, each waiting for the broker's answer, a busy
    /// worker's flusher fell behind its events (and a warm shutdown waited for the backlog).
    async fn flush(&self) {
        let batches = self.buffer.lock().unwrap_or_else(|p| p.into_inner()).take();
        let mut sending: Vec<Option<_>> = batches
            .iter()
            .map(|batch| Some(Box::pin(self.send_batch(batch))))
            .collect();
        // Each is first polled in order (the broker gets them in order), then all together.
        std::future::poll_fn(|cx| {
            let mut pending = false;
            for slot in &mut sending {
                if let Some(send) = slot {
                    if std::future::Future::poll(send.as_mut(), cx).is_ready() {
                        *slot = None;
                    } else {
                        pending = true;
                    }
                }
            }
            if pending {
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(())
            }
        })
        .await;
    }

    async fn send_batch(&self, batch: &[u8]) {
        if let Err(error) = self.publish(batch, "task.multi").await {
            tracing::warn!(%error, "could not send a batch of task events; dropped");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_json_lists_of_at_most_24_events() {
        let mut batches = Batches::default();
        for n in 0..BATCH + 1 {
            batches.push(|out| out.extend_from_slice(format!("{{\"n\":{n}}}").as_bytes()));
        }
        let taken = batches.take();
        let lists: Vec<Vec<Value>> = taken
            .iter()
            .map(|batch| serde_json::from_slice(batch).unwrap())
            .collect();
        assert_eq!(lists.iter().map(Vec::len).collect::<Vec<_>>(), [BATCH, 1]);
        assert_eq!(lists[1][0]["n"], BATCH);
        assert!(batches.take().is_empty());
    }
}
