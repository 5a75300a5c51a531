//! The batched completer: every outcome (records to store, retries to publish, messages to
//! ack, release or retire) goes through one channel and is written in batches, one
//! transaction per kind per batch. Under load a batch holds hundreds of tasks; when idle it
//! holds one and goes out at once.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::backend::{ResultBackend, TaskRecord};
use crate::broker::{Broker, Delivery, DeliveryTag};
use crate::protocol::Message;

/// The most outcomes written in one batch.
const MAX_BATCH: usize = 2_000;

/// One thing the completer must write.
#[derive(Debug)]
pub(crate) enum Completion {
    /// Store a state.
    Record(TaskRecord),
    /// Publish a message (a retry), before the acks of the same batch.
    Publish(Box<Message>),
    /// Remove a message for good.
    Ack(DeliveryTag),
    /// Give a message back, ready now.
    Release(DeliveryTag),
    /// Keep a message aside for inspection.
    Retire(Delivery, String),
}

/// Sends outcomes to the completer.
pub(crate) type CompletionSender = mpsc::UnboundedSender<Completion>;

/// Writes outcomes until every sender is dropped, then returns after the last batch.
pub(crate) async fn run(
    mut receiver: mpsc::UnboundedReceiver<Completion>,
    broker: Arc<dyn Broker>,
    backend: Option<Arc<dyn ResultBackend>>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        write_batch(std::mem::take(&mut batch), &*broker, backend.as_deref()).await;
    }
}

async fn write_batch(
    batch: Vec<Completion>,
    broker: &dyn Broker,
    backend: Option<&dyn ResultBackend>,
) {
    let mut records = Vec::new();
    let mut publish = Vec::new();
    let mut acks = Vec::new();
    let mut releases = Vec::new();
    let mut retire = Vec::new();
    for completion in batch {
        match completion {
            Completion::Record(record) => records.push(record),
            Completion::Publish(message) => publish.push(*message),
            Completion::Ack(tag) => acks.push(tag),
            Completion::Release(tag) => releases.push(tag),
            Completion::Retire(delivery, reason) => retire.push((delivery, reason)),
        }
    }
    // Order matters for at-least-once: results are stored, then retries published, and only
    // then are the messages that produced them acked. If a write fails for good, this batch's
    // acks are skipped: the leases run out and the tasks run again (storing is idempotent per
    // task id), rather than leaving a task that ran with no result or no retry.
    let mut written = true;
    if let (Some(backend), false) = (backend, records.is_empty()) {
        written &= store(backend, &records).await;
    }
    if !publish.is_empty() {
        if let Err(e) = with_retries("publish retries", || broker.publish(&publish)).await {
            tracing::error!(error = %e, "could not publish retries; their tasks will run again");
            written = false;
        }
    }
    if !acks.is_empty() {
        if !written {
            tracing::error!(
                "not acknowledging {} messages whose outcome was not written",
                acks.len()
            );
        } else if let Err(e) = with_retries("ack messages", || broker.ack(&acks)).await {
            tracing::error!(error = %e, "could not ack messages; they will run again");
        }
    }
    if !releases.is_empty() {
        if let Err(e) = with_retries("release messages", || broker.release(&releases)).await {
            tracing::error!(error = %e, "could not release messages; their leases will expire");
        }
    }
    for (delivery, reason) in retire {
        if let Err(e) = broker.retire(&delivery, &reason).await {
            tracing::error!(error = %e, tag = %delivery.tag, "could not keep a bad message aside");
        }
    }
}

/// Stores a batch of records; when the batch keeps failing, stores them one by one so that
/// one bad record does not sink the others. Returns whether every record was stored.
async fn store(backend: &dyn ResultBackend, records: &[TaskRecord]) -> bool {
    let Err(error) = with_retries("store results", || backend.store(records)).await else {
        return true;
    };
    tracing::error!(%error, "could not store a batch of {} results; storing them one by one", records.len());
    let mut all = true;
    for record in records {
        if let Err(error) = backend.store(std::slice::from_ref(record)).await {
            tracing::error!(%error, task_id = %record.task_id, "could not store the result");
            all = false;
        }
    }
    all
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
