//! The consumer: fetches as many messages as there is room for, hands each to the executor,
//! and at warm shutdown stops fetching and waits for what runs.
//!
//! - Room is `concurrency × prefetch_multiplier` minus what is held (waiting for a slot or
//!   running); the next fetch asks only for that.
//! - On a broker that does not delay ETA messages ([`Broker::delays_eta`] is `false`: AMQP),
//!   an early message is held here until it is due, outside the prefetch room, and given
//!   back to the broker at warm shutdown if it has not started.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::executor::Executor;
use super::held::{Held, Hold};
use super::WorkerStats;
use crate::broker::{Broker, DeliveryTag, FetchRequest};
use crate::shutdown::{reached, Phase, Shutdown};

/// The queues a worker consumes, changed at run time by remote control.
pub(crate) type SharedQueues = Arc<std::sync::RwLock<Vec<String>>>;

/// The queues consumed now.
pub(crate) fn current(queues: &SharedQueues) -> Vec<String> {
    queues.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// The fetch loop of one worker.
#[derive(Debug)]
pub(crate) struct Consumer {
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) executor: Arc<Executor>,
    pub(crate) held: Arc<Held>,
    /// The queues consumed now (remote control's `add_consumer` / `cancel_consumer` change them).
    pub(crate) queues: SharedQueues,
    pub(crate) hostname: String,
    /// The most messages held against the prefetch limit.
    pub(crate) capacity: usize,
}

impl Consumer {
    /// Fetches and runs until warm shutdown, then waits for every execution to end.
    pub(crate) async fn run(self, shutdown: &Shutdown) -> WorkerStats {
        let mut phase = shutdown.subscribe();
        let (stop_fetching, stop) = watch::channel(false);
        let stopper = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                shutdown.reached(Phase::Warm).await;
                stop_fetching.send_replace(true);
            })
        };
        let mut running = JoinSet::new();
        let mut stats = WorkerStats::default();
        let mut fetch_errors = 0u32;
        while *phase.borrow() == Phase::Running {
            while let Some(joined) = running.try_join_next() {
                log_crash(joined);
            }
            let room = self.capacity.saturating_sub(self.held.prefetched());
            if room == 0 {
                tokio::select! {
                    () = self.held.freed() => {}
                    () = reached(&mut phase, Phase::Warm) => {}
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
                continue;
            }
            let queues = current(&self.queues);
            if queues.is_empty() {
                // Every queue cancelled by remote control: wait for an `add_consumer`.
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                    () = reached(&mut phase, Phase::Warm) => {}
                }
                continue;
            }
            let request = FetchRequest {
                queues,
                limit: room,
                wait: Duration::from_secs(1),
                consumer: self.hostname.clone(),
                stop: Some(stop.clone()),
            };
            // Not raced against shutdown (a fetch dropped mid-claim would leave the rows it
            // claimed leased to nobody): the stop signal ends its wait instead.
            let fetched = self.broker.fetch(&request).await;
            if *phase.borrow() != Phase::Running {
                if let Ok(deliveries) = &fetched {
                    let tags: Vec<DeliveryTag> = deliveries.iter().map(|d| d.tag.clone()).collect();
                    if let Err(error) = self.broker.release(&tags).await {
                        tracing::warn!(%error, "could not release messages fetched at shutdown");
                    }
                }
                break;
            }
            let deliveries = match fetched {
                Ok(deliveries) => {
                    fetch_errors = 0;
                    deliveries
                }
                Err(error) => {
                    fetch_errors += 1;
                    let pause = Duration::from_millis(100 * 2u64.pow(fetch_errors.min(6)));
                    tracing::error!(%error, "fetch failed; retrying in {pause:?}");
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = reached(&mut phase, Phase::Warm) => {}
                    }
                    continue;
                }
            };
            for delivery in deliveries {
                stats.received += 1;
                let tag = delivery.tag.clone();
                let Some(received) = self.executor.receive(delivery) else {
                    continue;
                };
                // Early even where the broker delays etas: AMQP's delay levels count whole
                // seconds, and a producer's clock may run ahead of ours.
                let wait = received
                    .eta()
                    .and_then(|eta| (eta - chrono::Utc::now()).to_std().ok())
                    .filter(|wait| !wait.is_zero());
                received.track(&self.executor.requests, wait.and(received.eta()));
                let executor = self.executor.clone();
                let mut phase = shutdown.subscribe();
                if let Some(wait) = wait {
                    tracing::debug!(tag = %received.tag(), ?wait, "holding a message until its eta");
                    let hold = self.held.hold(tag, Hold::Eta);
                    running.spawn(async move {
                        tokio::select! {
                            () = tokio::time::sleep(wait) => {}
                            () = reached(&mut phase, Phase::Warm) => {
                                // Not started: back to the broker for another worker.
                                executor.release(received.tag().clone());
                                executor.requests.forget(received.id());
                                drop(hold);
                                return;
                            }
                        }
                        hold.now_prefetched();
                        executor.run(received, None, phase).await;
                        drop(hold);
                    });
                    continue;
                }
                let slot = match executor.rate_limit(&received.task) {
                    None => Some(executor.queue_for_slot().await),
                    Some(_) => None,
                };
                let hold = self.held.hold(tag, Hold::Prefetched);
                running.spawn(async move {
                    executor.run(received, slot, phase).await;
                    drop(hold);
                });
            }
        }
        if let Err(error) = self.broker.stop_fetching(&current(&self.queues)).await {
            tracing::warn!(%error, "could not stop the broker's consumers");
        }
        tracing::info!(
            running = running.len(),
            "worker stopping: no more fetches; waiting for running tasks"
        );
        while let Some(joined) = running.join_next().await {
            log_crash(joined);
        }
        stopper.abort();
        stats
    }
}

/// An execution that ended by panicking outside the task body (the body's own panics are
/// FAILUREs): a bug in celery-web, logged loudly. Its message's lease runs out and it is
/// delivered again.
fn log_crash(joined: Result<(), tokio::task::JoinError>) {
    if let Err(error) = joined {
        tracing::error!(%error, "a task execution crashed; its message will be delivered again");
    }
}
