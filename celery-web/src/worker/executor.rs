//! Running one delivery: decode, check, wait for a slot, run, and turn the outcome into
//! completions.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{json, Value};
use tokio::sync::{watch, AcquireError, OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

use super::completer::{Completion, CompletionSender};
use super::heartbeat::{Counters, Revocations};
use super::outcome::{execute, failure, Ending, Exception, RetryRequest, Verdict};
use super::pool::process::JobRequest;
use super::pool::Pool;
use super::rate_limit::RateLimiter;
use super::RateLimit;
use crate::backend::TaskRecord;
use crate::broker::Delivery;
use crate::protocol::Message;
use crate::shutdown::{reached, Phase};
use crate::task::{RegisteredTask, State, TaskArgs, TaskContext};
use crate::Celery;

/// What every execution of one worker shares.
#[derive(Debug)]
pub(crate) struct Executor {
    pub(crate) app: Celery,
    pub(crate) hostname: String,
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) rate_limiter: RateLimiter,
    pub(crate) completions: CompletionSender,
    pub(crate) acks_late_default: bool,
    pub(crate) track_started: bool,
    /// `false` with `worker_disable_rate_limits`: no task is rate limited.
    pub(crate) rate_limits: bool,
    /// `task_default_rate_limit`, for tasks that set none.
    pub(crate) default_rate_limit: Option<RateLimit>,
    /// Outcomes counted for the heartbeat.
    pub(crate) counters: Arc<Counters>,
    /// Revoked task ids, kept current by the heartbeat.
    pub(crate) revocations: Arc<Revocations>,
    /// Task events, where the broker carries them.
    pub(crate) events: Option<Arc<crate::events::Dispatcher>>,
    /// The requests held, for remote control.
    pub(crate) requests: Arc<super::requests::Requests>,
    /// Limits changed by remote control.
    pub(crate) tuning: Arc<super::tuning::Tuning>,
    /// Where bodies run.
    pub(crate) pool: Pool,
    /// `task_reject_on_worker_lost`: with `acks_late`, a task whose child died goes back to
    /// the queue instead of failing with `WorkerLostError`.
    pub(crate) reject_on_worker_lost: bool,
}

/// A decoded message of a registered task, not expired: ready to run.
#[derive(Debug)]
pub(crate) struct Received {
    pub(crate) task: RegisteredTask,
    /// Shared with the request registry (`inspect`).
    message: Arc<Message>,
    delivery: Delivery,
    ignore_result: bool,
}

/// A place in line for an execution slot.
pub(crate) type SlotRequest =
    Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

impl Received {
    /// When the message is due, if it has an eta.
    pub(crate) fn eta(&self) -> Option<chrono::DateTime<Utc>> {
        self.message.eta()
    }

    /// Its task id.
    pub(crate) fn id(&self) -> &str {
        self.message.id()
    }

    /// Held by the worker (for remote control), scheduled when it waits for `eta`.
    pub(crate) fn track(
        &self,
        requests: &super::requests::Requests,
        eta: Option<chrono::DateTime<Utc>>,
    ) {
        requests.hold(&self.message, &self.delivery, eta);
    }

    /// Its delivery's tag.
    pub(crate) fn tag(&self) -> &crate::broker::DeliveryTag {
        &self.delivery.tag
    }
}

impl Executor {
    /// Gives a message back to the broker, ready now (a held ETA message at shutdown).
    pub(crate) fn release(&self, tag: crate::broker::DeliveryTag) {
        self.complete(Completion::Release(tag));
    }

    /// The rate limit of `task`: its own, else `task_default_rate_limit`.
    pub(crate) fn rate_limit(&self, task: &RegisteredTask) -> Option<RateLimit> {
        if !self.rate_limits {
            return None;
        }
        if let Some(changed) = self.tuning.rate_limit(&task.name) {
            return changed;
        }
        task.rate_limit.or(self.default_rate_limit)
    }

    fn complete(&self, completion: Completion) {
        // The completer outlives every execution; a send fails only when it has crashed.
        if self.completions.send(completion).is_err() {
            tracing::error!("the completer is gone; an outcome was dropped");
        }
    }

    /// Decodes a delivery and settles what needs no execution: malformed messages, unknown
    /// tasks and expired messages. Returns what is left to run.
    pub(crate) fn receive(&self, delivery: Delivery) -> Option<Received> {
        let decoded = delivery.payload.envelope().and_then(Message::try_from);
        let message = match decoded {
            Ok(message) => message,
            Err(error) => {
                tracing::error!(
                    queue = %delivery.queue, tag = %delivery.tag, %error,
                    "rejected a malformed message; kept it for inspection"
                );
                self.retire(None, delivery, format!("malformed message: {error}"));
                return None;
            }
        };
        if let Err(problem) = check_time_limits(&message) {
            tracing::error!(task = %message.task(), id = %message.id(), "rejected a message: {problem}");
            let mut record = self.record(&message, &delivery, State::Failure);
            record.result = Some(TaskRecord::exception("InvalidMessage", &problem));
            self.retire(Some(record), delivery, problem);
            return None;
        }
        let Some(task) = self.app.registry().get(message.task()).cloned() else {
            tracing::error!(
                task = %message.task(), id = %message.id(),
                "received unregistered task `{}`; the message is kept for inspection. Is the \
                 module that defines it linked into this binary, and is the name the same?",
                message.task()
            );
            let mut record = self.record(&message, &delivery, State::Failure);
            record.result = Some(TaskRecord::exception("NotRegistered", message.task()));
            let reason = format!("unregistered task `{}`", message.task());
            self.retire(Some(record), delivery, reason);
            return None;
        };
        // The sender resolved the call option, the task option and the setting into the header.
        let ignore_result = message.headers.ignore_result;
        if message.is_expired(Utc::now()) {
            tracing::info!(task = %task.name, id = %message.id(), "expired before it ran; revoked");
            self.finish_revoked(&message, &delivery, ignore_result, "expired");
            return None;
        }
        if self.revocations.contains(message.id()) {
            tracing::info!(task = %task.name, id = %message.id(), "revoked; skipped");
            self.finish_revoked(&message, &delivery, ignore_result, "revoked");
            return None;
        }
        if let Some(events) = &self.events {
            super::task_events::received(events, &message);
        }
        Some(Received {
            task,
            message: Arc::new(message),
            delivery,
            ignore_result,
        })
    }

    /// Queues for an execution slot now, so slots go to messages in the order they were
    /// fetched (the semaphore is fair in the order waiters first ask).
    pub(crate) async fn queue_for_slot(&self) -> SlotRequest {
        let mut request: SlotRequest = Box::pin(self.slots.clone().acquire_owned());
        // One poll registers the waiter in line; the spawned execution awaits the rest.
        if let Poll::Ready(permit) =
            std::future::poll_fn(|cx| Poll::Ready(request.as_mut().poll(cx))).await
        {
            request = Box::pin(std::future::ready(permit));
        }
        request
    }

    /// Runs a received message: waits for its rate limit and a slot, then executes it.
    /// `slot` is the place in line taken by [`Executor::queue_for_slot`]; rate-limited
    /// messages queue for a slot only once their rate allows.
    pub(crate) async fn run(
        self: Arc<Self>,
        received: Received,
        slot: Option<SlotRequest>,
        mut phase: watch::Receiver<Phase>,
    ) {
        let span =
            tracing::info_span!("task", name = %received.task.name, id = %received.message.id());
        let id = received.message.id().to_owned();
        self.execute(received, slot, &mut phase)
            .instrument(span)
            .await;
        self.requests.forget(&id);
    }

    async fn execute(
        &self,
        received: Received,
        slot: Option<SlotRequest>,
        phase: &mut watch::Receiver<Phase>,
    ) {
        let Received {
            task,
            message,
            delivery,
            ignore_result,
        } = received;
        tracing::debug!(redelivered = delivery.redelivered, "received");
        let slot = match slot {
            Some(slot) => slot,
            None => {
                if let Some(limit) = self.rate_limit(&task) {
                    tokio::select! {
                        () = self.rate_limiter.acquire(&task.name, limit) => {}
                        () = reached(phase, Phase::Warm) => {
                            self.complete(Completion::Release(delivery.tag));
                            return;
                        }
                    }
                }
                self.queue_for_slot().await
            }
        };
        let permit = tokio::select! {
            biased;
            () = reached(phase, Phase::Warm) => {
                // Not started: back to the broker for another worker.
                self.complete(Completion::Release(delivery.tag));
                return;
            }
            permit = slot => permit.expect("the slot semaphore is never closed"),
        };
        // Expiry and revocation are checked again: the message may have waited for a slot.
        if message.is_expired(Utc::now()) {
            self.finish_revoked(&message, &delivery, ignore_result, "expired");
            return;
        }
        if self.revocations.contains(message.id()) {
            tracing::info!("revoked while it waited for a slot; skipped");
            self.finish_revoked(&message, &delivery, ignore_result, "revoked");
            return;
        }
        let acks_late = task.options.acks_late.unwrap_or(self.acks_late_default);
        if !acks_late {
            self.complete(Completion::Ack(delivery.tag.clone()));
        }
        let terminated = self.requests.start(message.id(), !acks_late);
        if let Some(events) = &self.events {
            super::task_events::started(events, message.id());
        }
        let started_at = Utc::now();
        if self.track_started && !ignore_result {
            let mut record = self.record(&message, &delivery, State::Started);
            record.result = Some(json!({"pid": std::process::id(), "hostname": self.hostname}));
            record.date_started = Some(started_at);
            self.complete(Completion::Record(record));
        }
        let (hard, soft) = match self.tuning.time_limits(&task.name) {
            Some((soft, hard)) => (hard, soft),
            None => message.headers.timelimit,
        };
        let hard = hard.or(task.options.time_limit).filter(|s| *s > 0.0);
        let soft = soft.or(task.options.soft_time_limit).filter(|s| *s > 0.0);
        let context = TaskContext::new(
            message.id(),
            &task.name,
            message.headers.retries,
            &self.hostname,
            message.eta(),
            message.extra_header("periodic_task_name"),
            soft.map(Duration::from_secs_f64),
        );
        let clock = Instant::now();
        let body = async {
            match &self.pool {
                Pool::InProcess => {
                    let args =
                        TaskArgs::new(&task.name, message.args.clone(), message.kwargs.clone());
                    execute(task.runner, context, args, hard, Some(permit)).await
                }
                Pool::Process(pool) => {
                    let request = JobRequest {
                        task: task.name.clone(),
                        id: message.id().to_owned(),
                        args: message.args.clone(),
                        kwargs: message.kwargs.clone(),
                        retries: message.headers.retries,
                        hostname: self.hostname.clone(),
                        eta: message.eta(),
                        periodic_task_name: message
                            .extra_header("periodic_task_name")
                            .map(str::to_owned),
                        soft_time_limit: soft,
                    };
                    drop(context);
                    let ending = pool.run(request, hard).await;
                    drop(permit);
                    ending
                }
            }
        };
        let ending = tokio::select! {
            ending = body => ending,
            Ok(()) = terminated => {
                // `revoke --terminate`: the task's future is dropped, which stops it.
                tracing::info!("terminated by remote control");
                self.counters.finished(false, false);
                let mut record = self.record(&message, &delivery, State::Revoked);
                record.result = Some(crate::control::revoked_result("terminated"));
                if let Some(events) = &self.events {
                    super::task_events::revoked(events, message.id(), true, false);
                }
                // As Celery's mark_as_revoked: a chord part still counts (and fails the body).
                let mut follow_ups = Vec::new();
                let workflow = crate::canvas::follow_ups::after_task(
                    &self.app,
                    &message,
                    &record,
                    &mut follow_ups,
                );
                self.complete(Completion::Finished {
                    record: Some(record).filter(|_| !ignore_result),
                    follow_ups,
                    ack: acks_late.then_some(delivery.tag),
                    workflow,
                });
                return;
            }
            () = reached(phase, Phase::Cold) => {
                tracing::warn!("cold shutdown: abandoning the task; its message is released");
                if acks_late {
                    self.complete(Completion::Release(delivery.tag));
                }
                return;
            }
        };
        let runtime = clock.elapsed();
        if matches!(ending, Ending::Lost(_)) && acks_late && self.reject_on_worker_lost {
            tracing::error!("its process was lost; the message goes back to the queue");
            self.complete(Completion::Release(delivery.tag));
            return;
        }
        let mut record = self.record(&message, &delivery, State::Success);
        record.date_started = Some(started_at);
        let (record, retry) = match ending.verdict(&task.options) {
            Verdict::Success(value) => {
                tracing::info!(
                    "succeeded in {:.6}s: {}",
                    runtime.as_secs_f64(),
                    abbreviate(&value)
                );
                record.result = Some(value);
                (Some(record), None)
            }
            Verdict::Ignore => {
                tracing::info!("ignored in {:.6}s", runtime.as_secs_f64());
                (None, None)
            }
            Verdict::Retry(retry) => self.retry_or_fail(&task, &message, record, retry),
            Verdict::Failure(exception) => {
                tracing::error!(
                    "failed in {:.6}s: {}: {}",
                    runtime.as_secs_f64(),
                    exception.exc_type,
                    exception.message
                );
                (Some(failure(record, exception)), None)
            }
        };
        if let Some(events) = &self.events {
            announce(
                events,
                message.id(),
                record.as_ref(),
                retry.is_some(),
                runtime,
            );
        }
        let status = record.as_ref().map(|r| r.status);
        self.counters.finished(
            status == Some(State::Success),
            status == Some(State::Failure),
        );
        let mut follow_ups: Vec<Message> = retry.into_iter().collect();
        let workflow = record.as_ref().and_then(|record| {
            crate::canvas::follow_ups::after_task(&self.app, &message, record, &mut follow_ups)
        });
        self.complete(Completion::Finished {
            record: record.filter(|_| !ignore_result),
            follow_ups,
            ack: acks_late.then_some(delivery.tag),
            workflow,
        });
    }

    /// The RETRY record and the message that runs the task again (`retries + 1`), or the
    /// FAILURE record when retries ran out.
    fn retry_or_fail(
        &self,
        task: &RegisteredTask,
        message: &Message,
        mut record: TaskRecord,
        retry: RetryRequest,
    ) -> (Option<TaskRecord>, Option<Message>) {
        let retries = message.headers.retries;
        let max_retries = retry.max_retries;
        if retries >= max_retries {
            let exhausted = retry.exhausted(&task.name, message);
            tracing::error!("{}", exhausted.message);
            return (Some(failure(record, exhausted)), None);
        }
        let eta = retry.eta.unwrap_or_else(|| {
            let delay = retry
                .countdown
                .unwrap_or_else(|| task.options.retry_delay(retries))
                .min(LONGEST_DELAY);
            Utc::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX)
        });
        let mut again = message.clone();
        again.headers.retries = retries + 1;
        again.headers.eta = Some(eta.fixed_offset());
        let Exception {
            exc_type,
            message: reason,
            traceback,
            ..
        } = retry.cause;
        tracing::info!(
            "retry {}/{max_retries} at {eta}: {exc_type}: {reason}",
            retries + 1
        );
        record.status = State::Retry;
        record.result = Some(TaskRecord::exception(&exc_type, &reason));
        record.traceback = traceback;
        (Some(record), Some(again))
    }

    /// Settles a message that will not run: REVOKED (Celery's `TaskRevokedError` with
    /// `reason`, `expired` or `revoked`), acked.
    fn finish_revoked(
        &self,
        message: &Message,
        delivery: &Delivery,
        ignore_result: bool,
        reason: &str,
    ) {
        let mut record = self.record(message, delivery, State::Revoked);
        record.result = Some(crate::control::revoked_result(reason));
        if let Some(events) = &self.events {
            super::task_events::revoked(events, message.id(), false, reason == "expired");
        }
        self.complete(Completion::Finished {
            record: Some(record).filter(|_| !ignore_result),
            follow_ups: Vec::new(),
            ack: Some(delivery.tag.clone()),
            workflow: None,
        });
    }

    /// Keeps a message that cannot run aside, after storing `record` (its FAILURE).
    fn retire(&self, record: Option<TaskRecord>, delivery: Delivery, reason: String) {
        self.complete(Completion::Retire {
            record,
            delivery: Box::new(delivery),
            reason,
        });
    }

    fn record(&self, message: &Message, delivery: &Delivery, status: State) -> TaskRecord {
        let mut record = TaskRecord::new(message.id(), status);
        record.task_name = Some(message.task().to_owned());
        record.args = Some(Value::Array(message.args.clone()));
        record.kwargs = Some(Value::Object(message.kwargs.clone()));
        record.worker = Some(self.hostname.clone());
        record.retries = message.headers.retries;
        record.queue = Some(delivery.queue.clone());
        record.parent_id.clone_from(&message.headers.parent_id);
        record.group_id.clone_from(&message.headers.group);
        record.periodic_task_name = message
            .extra_header("periodic_task_name")
            .map(str::to_owned);
        record
    }
}

/// The task event of an execution's outcome: succeeded, retried, rejected or failed.
fn announce(
    events: &crate::events::Dispatcher,
    id: &str,
    record: Option<&TaskRecord>,
    retried: bool,
    runtime: Duration,
) {
    use super::task_events as sent;
    let Some(record) = record else {
        return;
    };
    let exception = TaskRecord::exception_parts;
    match record.status {
        State::Success => sent::succeeded(
            events,
            id,
            record.result.as_ref().unwrap_or(&Value::Null),
            runtime.as_secs_f64(),
        ),
        _ if retried => {
            let (exc_type, message) = exception(record);
            sent::failed(
                events,
                "task-retried",
                id,
                &exc_type,
                &message,
                record.traceback.as_deref(),
            );
        }
        _ => {
            let (exc_type, message) = exception(record);
            if exc_type == "Reject" {
                sent::rejected(events, id, false);
            } else {
                sent::failed(
                    events,
                    "task-failed",
                    id,
                    &exc_type,
                    &message,
                    record.traceback.as_deref(),
                );
            }
        }
    }
}

fn abbreviate(value: &Value) -> String {
    let text = value.to_string();
    if text.len() <= 200 {
        return text;
    }
    let mut cut = 200;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &text[..cut])
}

/// The longest retry delay: later than this is surely a mistake (and would overflow times).
const LONGEST_DELAY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Time limits of untrusted messages must be sane before they become durations and deadlines.
fn check_time_limits(message: &Message) -> Result<(), String> {
    let (hard, soft) = message.headers.timelimit;
    for (name, limit) in [("hard", hard), ("soft", soft)] {
        if let Some(seconds) = limit {
            if !(seconds.is_finite() && seconds >= 0.0 && seconds <= LONGEST_DELAY.as_secs_f64()) {
                return Err(format!("bad timelimit header: {name} limit {seconds} s"));
            }
        }
    }
    Ok(())
}
