//! The batched completer: every outcome (results to store, retries to publish, messages to
//! ack, release or retire) goes through one channel and is written in batches, one
//! transaction per kind per batch. Under load a batch holds hundreds of tasks; when idle it
//! holds one and goes out at once.
//!
//! At-least-once hangs on the order within a task: its result is stored and its follow-up
//! messages (a retry; next, a chain's next link, a callback, a chord's body) published before
//! its message is acknowledged (or retired). A task whose result or follow-ups could not be
//! written is not acknowledged: its message is released to run again (or, if even that
//! fails, comes back when its lease runs out). The other tasks of the batch are not held
//! back.
//!
//! It runs as a [`Service`]: asked to stop, it takes no new outcome and returns once the
//! ones already sent are written.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::backend::{ResultBackend, TaskRecord};
use crate::broker::{Broker, Delivery, DeliveryTag};
use crate::protocol::Message;
use crate::service::{Service, Stop};
use crate::task::BoxFuture;

/// The most outcomes written in one batch.
const MAX_BATCH: usize = 2_000;

/// One thing the completer must write.
#[derive(Debug)]
pub(crate) enum Completion {
    /// A state that gates nothing (STARTED).
    Record(TaskRecord),
    /// Remove a message for good, unconditionally (`acks_late = false`: acked at start).
    Ack(DeliveryTag),
    /// Give a message back, ready now.
    Release(DeliveryTag),
    /// The end of an execution: its record is stored and its follow-up messages published,
    /// then its message is acked (if `ack` is set); if a write fails, the ack is skipped and
    /// the message is released to run again.
    Finished {
        record: Option<TaskRecord>,
        follow_ups: Vec<Message>,
        ack: Option<DeliveryTag>,
    },
    /// Keep a message aside for inspection, once its record (if any) is stored.
    Retire {
        record: Option<TaskRecord>,
        delivery: Box<Delivery>,
        reason: String,
    },
}

/// Sends outcomes to the completer.
pub(crate) type CompletionSender = mpsc::UnboundedSender<Completion>;

/// The completer service: writes outcomes until it is stopped (or every sender is
/// dropped), then returns after the last batch.
#[derive(Debug)]
pub(crate) struct Completer {
    pub(crate) receiver: mpsc::UnboundedReceiver<Completion>,
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) backend: Option<Arc<dyn ResultBackend>>,
}

impl Completer {
    /// A completer writing to `broker` and `backend`, and the sender its outcomes come by.
    pub(crate) fn new(
        broker: Arc<dyn Broker>,
        backend: Option<Arc<dyn ResultBackend>>,
    ) -> (Self, CompletionSender) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let completer = Completer {
            receiver,
            broker,
            backend,
        };
        (completer, sender)
    }
}

impl Service for Completer {
    fn name(&self) -> &'static str {
        "completer"
    }

    fn run(self: Box<Self>, mut stop: Stop) -> BoxFuture<'static, crate::Result<()>> {
        let Completer {
            mut receiver,
            broker,
            backend,
        } = *self;
        Box::pin(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            let mut stopping = false;
            loop {
                let received = if stopping {
                    receiver.recv_many(&mut batch, MAX_BATCH).await
                } else {
                    // `recv_many` is cancel-safe: nothing is lost when the stop wins.
                    tokio::select! {
                        received = receiver.recv_many(&mut batch, MAX_BATCH) => received,
                        () = stop.requested() => {
                            // What is already sent is still written; nothing new is taken.
                            stopping = true;
                            receiver.close();
                            continue;
                        }
                    }
                };
                if received == 0 {
                    return Ok(());
                }
                write_batch(std::mem::take(&mut batch), &*broker, backend.as_deref()).await;
            }
        })
    }
}

async fn write_batch(
    batch: Vec<Completion>,
    broker: &dyn Broker,
    backend: Option<&dyn ResultBackend>,
) {
    let mut records = Vec::new();
    let mut finished = Vec::new();
    let mut acks = Vec::new();
    let mut releases = Vec::new();
    let mut retires = Vec::new();
    for completion in batch {
        match completion {
            Completion::Record(record) => records.push(record),
            Completion::Ack(tag) => acks.push(tag),
            Completion::Release(tag) => releases.push(tag),
            Completion::Finished {
                record,
                follow_ups,
                ack,
            } => {
                records.extend(record.iter().cloned());
                finished.push((record.map(|r| r.task_id), follow_ups, ack));
            }
            Completion::Retire {
                record,
                delivery,
                reason,
            } => {
                records.extend(record.iter().cloned());
                retires.push((record.map(|r| r.task_id), delivery, reason));
            }
        }
    }
    let failed = match backend {
        Some(backend) if !records.is_empty() => store(backend, &records).await,
        _ => HashSet::new(),
    };
    let written = |task: &Option<String>, failed: &HashSet<String>| {
        task.as_ref().is_none_or(|id| !failed.contains(id))
    };
    // Whether each execution's outcome is written: its record, then its follow-ups.
    let mut settled: Vec<(bool, Option<DeliveryTag>)> = Vec::with_capacity(finished.len());
    let mut follow_ups: Vec<Message> = Vec::new();
    let mut with_follow_ups = Vec::new();
    for (task, mut messages, ack) in finished {
        let stored = written(&task, &failed);
        if stored && !messages.is_empty() {
            with_follow_ups.push(settled.len());
            follow_ups.append(&mut messages);
        }
        settled.push((stored, ack));
    }
    if !follow_ups.is_empty() {
        let published =
            with_retries("publish follow-up messages", || broker.publish(&follow_ups)).await;
        if let Err(e) = published {
            tracing::error!(
                error = %e,
                "could not publish follow-up messages (retries, callbacks); their tasks will \
                 run again"
            );
            for index in with_follow_ups {
                settled[index].0 = false;
            }
        }
    }
    for (written, ack) in settled {
        match ack {
            Some(tag) if written => acks.push(tag),
            Some(tag) => {
                tracing::error!(%tag, "the outcome was not written; the message goes back to run again");
                releases.push(tag);
            }
            None => {}
        }
    }
    if !acks.is_empty() {
        if let Err(e) = with_retries("ack messages", || broker.ack(&acks)).await {
            tracing::error!(error = %e, "could not ack messages; they will run again");
        }
    }
    if !releases.is_empty() {
        if let Err(e) = with_retries("release messages", || broker.release(&releases)).await {
            tracing::error!(error = %e, "could not release messages; their leases will expire");
        }
    }
    for (task, delivery, reason) in retires {
        if !written(&task, &failed) {
            continue;
        }
        if let Err(e) = broker.retire(&delivery, &reason).await {
            tracing::error!(error = %e, tag = %delivery.tag, "could not keep a bad message aside");
        }
    }
}

/// Stores a batch of records. When the batch keeps failing, stores them one by one so that
/// one bad record does not sink the others, giving up after a few failures in a row (the
/// database is away, not a record bad). Returns the ids of the tasks whose record failed.
async fn store(backend: &dyn ResultBackend, records: &[TaskRecord]) -> HashSet<String> {
    const FAILURES_IN_A_ROW: usize = 3;
    let Err(error) = with_retries("store results", || backend.store(records)).await else {
        return HashSet::new();
    };
    tracing::error!(%error, "could not store a batch of {} results; trying them one by one", records.len());
    let mut failed = HashSet::new();
    let mut in_a_row = 0;
    for record in records {
        if in_a_row >= FAILURES_IN_A_ROW {
            failed.insert(record.task_id.clone());
            continue;
        }
        match backend.store(std::slice::from_ref(record)).await {
            Ok(()) => in_a_row = 0,
            Err(error) => {
                tracing::error!(%error, task_id = %record.task_id, "could not store the result");
                failed.insert(record.task_id.clone());
                in_a_row += 1;
            }
        }
    }
    failed
}

/// Tries a write a few times with backoff (a busy SQLite, a PostgreSQL restart).
async fn with_retries<'a, F, Fut>(what: &str, mut attempt: F) -> crate::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = crate::Result<()>> + 'a,
{
    let mut pause = std::time::Duration::from_millis(50);
    for _ in 0..8 {
        match attempt().await {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "{what} failed; retrying in {pause:?}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(5));
            }
        }
    }
    attempt().await
}
