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
//! Acks that wait for nothing (`acks_late = false`: acked when the task starts, as Celery
//! does) take a lane of their own, batched too but never queued behind another task's result
//! write: on RabbitMQ the prefetch window refills as tasks start, not as results are stored.
//!
//! It runs as a [`Service`]: asked to stop, it takes no new outcome and returns once the
//! ones already sent are written.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::backend::{ResultBackend, TaskRecord};
use crate::broker::{Broker, Delivery, DeliveryTag};
use crate::canvas::{ChordPart, ChordReady};
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
        /// Its part in a workflow beyond plain follow-ups (chain FAILUREs, a chord part).
        workflow: Option<Box<Workflow>>,
    },
    /// Keep a message aside for inspection, once its record (if any) is stored.
    Retire {
        record: Option<TaskRecord>,
        delivery: Box<Delivery>,
        reason: String,
    },
}

/// What a finished task adds to a workflow, written with its record.
#[derive(Debug, Default)]
pub(crate) struct Workflow {
    /// Records stored in the same batch (the FAILURE of the rest of a failed chain).
    pub(crate) records: Vec<TaskRecord>,
    /// Its part of a chord: counted after its record is stored and before its ack; the
    /// worker whose part completes the chord sends the body.
    pub(crate) chord: Option<ChordPart>,
}

/// Sends outcomes to the completer: unconditional acks to their own lane, the rest in order.
#[derive(Debug, Clone)]
pub(crate) struct CompletionSender {
    outcomes: mpsc::UnboundedSender<Completion>,
    acks: mpsc::UnboundedSender<DeliveryTag>,
}

/// The completer has stopped: an outcome sent now is not written.
#[derive(Debug)]
pub(crate) struct CompleterGone;

impl CompletionSender {
    /// Hands `completion` to the completer.
    pub(crate) fn send(&self, completion: Completion) -> Result<(), CompleterGone> {
        match completion {
            Completion::Ack(tag) => self.acks.send(tag).map_err(|_| CompleterGone),
            other => self.outcomes.send(other).map_err(|_| CompleterGone),
        }
    }
}

/// The completer service: writes outcomes until it is stopped (or every sender is
/// dropped), then returns after the last batch.
#[derive(Debug)]
pub(crate) struct Completer {
    pub(crate) receiver: mpsc::UnboundedReceiver<Completion>,
    /// Unconditional acks, written as they come, beside the outcomes.
    pub(crate) acks: mpsc::UnboundedReceiver<DeliveryTag>,
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) backend: Option<Arc<dyn ResultBackend>>,
    /// Routes chord bodies (as `app.send_task` would).
    pub(crate) app: Option<crate::Celery>,
}

impl Completer {
    /// A completer writing to `broker` and `backend`, and the sender its outcomes come by.
    pub(crate) fn new(
        broker: Arc<dyn Broker>,
        backend: Option<Arc<dyn ResultBackend>>,
    ) -> (Self, CompletionSender) {
        let (outcomes, receiver) = mpsc::unbounded_channel();
        let (acks, ack_receiver) = mpsc::unbounded_channel();
        let completer = Completer {
            receiver,
            acks: ack_receiver,
            broker,
            backend,
            app: None,
        };
        (completer, CompletionSender { outcomes, acks })
    }

    /// Chord bodies are sent through `app`'s routing.
    pub(crate) fn with_app(mut self, app: crate::Celery) -> Self {
        self.app = Some(app);
        self
    }
}

impl Service for Completer {
    fn name(&self) -> &'static str {
        "completer"
    }

    fn run(self: Box<Self>, stop: Stop) -> BoxFuture<'static, crate::Result<()>> {
        let Completer {
            receiver,
            acks,
            broker,
            backend,
            app,
        } = *self;
        Box::pin(async move {
            let mut ack_lane = Lane::new(acks, stop.clone());
            let mut outcome_lane = Lane::new(receiver, stop);
            let acking = async {
                let mut tags = Vec::with_capacity(MAX_BATCH);
                while ack_lane.next_batch(&mut tags).await {
                    if let Err(e) = with_retries("ack messages", || broker.ack(&tags)).await {
                        tracing::error!(error = %e, "could not ack messages; they will run again");
                    }
                    tags.clear();
                }
            };
            let writing = async {
                let mut batch = Vec::with_capacity(MAX_BATCH);
                while outcome_lane.next_batch(&mut batch).await {
                    let batch = std::mem::take(&mut batch);
                    write_batch(batch, &*broker, backend.as_deref(), app.as_ref()).await;
                }
            };
            tokio::join!(acking, writing);
            Ok(())
        })
    }
}

/// A channel of the completer, read in batches until it is stopped.
struct Lane<T> {
    receiver: mpsc::UnboundedReceiver<T>,
    stop: Stop,
    stopping: bool,
}

impl<T> Lane<T> {
    fn new(receiver: mpsc::UnboundedReceiver<T>, stop: Stop) -> Self {
        Lane {
            receiver,
            stop,
            stopping: false,
        }
    }

    /// Waits for what has been sent and appends it to `batch` (at most [`MAX_BATCH`]);
    /// `false` once the lane is done: stopped (what was sent before is still given) or every
    /// sender dropped.
    async fn next_batch(&mut self, batch: &mut Vec<T>) -> bool {
        loop {
            let received = if self.stopping {
                self.receiver.recv_many(batch, MAX_BATCH).await
            } else {
                // `recv_many` is cancel-safe: nothing is lost when the stop wins.
                tokio::select! {
                    received = self.receiver.recv_many(batch, MAX_BATCH) => received,
                    () = self.stop.requested() => {
                        // What is already sent is still written; nothing new is taken.
                        self.stopping = true;
                        self.receiver.close();
                        continue;
                    }
                }
            };
            return received > 0;
        }
    }
}

async fn write_batch(
    batch: Vec<Completion>,
    broker: &dyn Broker,
    backend: Option<&dyn ResultBackend>,
    app: Option<&crate::Celery>,
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
                workflow,
            } => {
                let task_id = record.as_ref().map(|r| r.task_id.clone());
                records.extend(record);
                let chord = workflow.and_then(|w| {
                    let Workflow {
                        records: more,
                        chord,
                    } = *w;
                    records.extend(more);
                    chord
                });
                finished.push((task_id, follow_ups, ack, chord));
            }
            Completion::Retire {
                record,
                delivery,
                reason,
            } => {
                retires.push((record.as_ref().map(|r| r.task_id.clone()), delivery, reason));
                records.extend(record);
            }
        }
    }
    // Chord parts are stored with their count (one transaction on the database backend).
    let joins = backend.is_some_and(ResultBackend::joins_chords);
    let mut parts: Vec<(usize, ChordPart)> = Vec::new();
    for (index, entry) in finished.iter_mut().enumerate() {
        if let Some(part) = entry.3.take() {
            if joins {
                parts.push((index, part));
            } else {
                tracing::error!(
                    group_id = %part.group_id,
                    "the result backend cannot join chords: this chord part is not counted \
                     and the body will not run (use the Redis or a database backend)"
                );
            }
        }
    }
    let part_ids: HashSet<&str> = parts.iter().map(|(_, p)| p.task_id.as_str()).collect();
    let (chord_records, records): (Vec<TaskRecord>, Vec<TaskRecord>) = records
        .into_iter()
        .partition(|r| part_ids.contains(r.task_id.as_str()));
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
    let mut fired = Vec::new();
    if let (Some(backend), false) = (backend, parts.is_empty()) {
        let (bodies, stuck, groups) = join_chords(backend, app, &parts, &chord_records).await;
        for index in stuck {
            finished[index].0 = Some(JOIN_FAILED.to_owned());
        }
        for (index, mut messages) in bodies {
            finished[index].1.append(&mut messages);
        }
        fired = groups;
    }
    for (task, mut messages, ack, _) in finished {
        let stored = written(&task, &failed) && task.as_deref() != Some(JOIN_FAILED);
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
    if !fired.is_empty() && settled.iter().all(|(written, _)| *written) {
        if let Some(backend) = backend {
            for group_id in &fired {
                if let Err(e) = backend.chord_fired(group_id).await {
                    tracing::warn!(error = %e, %group_id, "could not clear a fired chord's join keys; they expire");
                }
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

/// Marks an execution whose chord part could not be counted: it is not acked.
const JOIN_FAILED: &str = "\u{0}chord part not counted";

/// Counts the chord parts of a batch; returns the bodies to send per execution, the
/// executions whose part could not be counted (released to run again: counting a part
/// twice counts it once), and the groups whose body is sent.
async fn join_chords(
    backend: &dyn ResultBackend,
    app: Option<&crate::Celery>,
    parts: &[(usize, ChordPart)],
    records: &[TaskRecord],
) -> (Vec<(usize, Vec<Message>)>, Vec<usize>, Vec<String>) {
    let only_parts: Vec<ChordPart> = parts.iter().map(|(_, p)| p.clone()).collect();
    let mut pause = std::time::Duration::from_millis(50);
    let mut attempts = 0;
    let ready = loop {
        match backend.store_and_join(records, &only_parts).await {
            Ok(ready) => break ready,
            Err(e) if attempts < 8 => {
                tracing::warn!(error = %e, "counting chord parts failed; retrying in {pause:?}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(5));
                attempts += 1;
            }
            Err(e) => {
                tracing::error!(error = %e, "could not count chord parts; their tasks will run again");
                return (
                    Vec::new(),
                    parts.iter().map(|(i, _)| *i).collect(),
                    Vec::new(),
                );
            }
        }
    };
    let mut bodies = Vec::new();
    let mut groups = Vec::new();
    for ChordReady { last, results } in ready {
        let index = parts
            .iter()
            .find(|(_, p)| p.task_id == last.task_id && p.group_id == last.group_id)
            .map_or(0, |(i, _)| *i);
        let Some(app) = app else {
            tracing::error!(group_id = %last.group_id, "no app to route the chord body; it is not sent");
            continue;
        };
        let messages = match results {
            Ok(results) => crate::canvas::follow_ups::messages_for(
                app,
                &last.body,
                Some(&serde_json::Value::Array(results)),
                Some((&last.task_id, &last.root_id)),
                None,
            ),
            Err(error) => chord_failed(backend, app, &last, &error).await,
        };
        match messages {
            Ok(messages) => {
                bodies.push((index, messages));
                groups.push(last.group_id.clone());
            }
            Err(e) => tracing::error!(
                error = %e, group_id = %last.group_id,
                "the chord body cannot be sent and is dropped"
            ),
        }
    }
    (bodies, Vec::new(), groups)
}

/// A member failed: the body is stored as FAILURE with Celery's `ChordError`, and its
/// `link_error` errbacks are sent with its id.
async fn chord_failed(
    backend: &dyn ResultBackend,
    app: &crate::Celery,
    last: &ChordPart,
    error: &str,
) -> crate::Result<Vec<Message>> {
    tracing::error!(group_id = %last.group_id, "chord failed: {error}");
    let body_id = last
        .body_id()
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let mut record = TaskRecord::new(&body_id, crate::task::State::Failure);
    record.result = Some(crate::canvas::chord::chord_error(error));
    record.task_name = last
        .body
        .get("task")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    with_retries("store a chord's failure", || {
        backend.store(std::slice::from_ref(&record))
    })
    .await?;
    let mut errbacks = Vec::new();
    let list = match last.body.pointer("/options/link_error") {
        Some(serde_json::Value::Array(list)) => list.clone(),
        Some(serde_json::Value::Null) | None => Vec::new(),
        Some(one) => vec![one.clone()],
    };
    let id = serde_json::Value::String(body_id.clone());
    for errback in &list {
        errbacks.extend(crate::canvas::follow_ups::messages_for(
            app,
            errback,
            Some(&id),
            Some((&body_id, &last.root_id)),
            None,
        )?);
    }
    Ok(errbacks)
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
