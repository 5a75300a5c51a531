//! Warm and cold shutdown, as in Celery: the first SIGTERM or Ctrl-C stops fetching, lets
//! running tasks finish and returns unstarted ones to the broker; the second one stops now.
//! A worker and a beat ([`crate::beat::Beat::run`]) both stop on a [`Shutdown`].

use tokio::sync::watch;

/// Where the worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Fetching and running.
    Running,
    /// Finishing running tasks; fetching nothing new.
    Warm,
    /// Stopping now; leases of running tasks are released so they run again elsewhere.
    Cold,
}

/// Asks a worker to stop. Cloneable; every clone controls the same worker.
#[derive(Debug, Clone)]
pub struct Shutdown {
    sender: watch::Sender<Phase>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            sender: watch::Sender::new(Phase::Running),
        }
    }
}

impl Shutdown {
    /// A controller for a running worker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Warm shutdown, then cold on a second call.
    pub fn escalate(&self) -> Phase {
        let mut next = Phase::Warm;
        self.sender.send_modify(|phase| {
            *phase = if *phase == Phase::Running {
                Phase::Warm
            } else {
                Phase::Cold
            };
            next = *phase;
        });
        next
    }

    /// Warm shutdown.
    pub fn warm(&self) {
        self.sender.send_if_modified(|phase| {
            let change = *phase == Phase::Running;
            if change {
                *phase = Phase::Warm;
            }
            change
        });
    }

    /// Cold shutdown.
    pub fn cold(&self) {
        self.sender.send_replace(Phase::Cold);
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        *self.sender.borrow()
    }

    /// Completes once the worker is at `phase` or past it.
    pub async fn reached(&self, phase: Phase) {
        reached(&mut self.subscribe(), phase).await;
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Phase> {
        self.sender.subscribe()
    }

    /// Escalates on every SIGTERM, SIGINT (Ctrl-C) and SIGQUIT, logging each step.
    pub fn on_signals(&self) -> std::io::Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut quit = signal(SignalKind::quit())?;
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let cold_now = tokio::select! {
                    _ = terminate.recv() => false,
                    _ = interrupt.recv() => false,
                    _ = quit.recv() => true,
                };
                if cold_now {
                    this.cold();
                    tracing::warn!("worker: cold shutdown (SIGQUIT)");
                    continue;
                }
                match this.escalate() {
                    Phase::Warm => tracing::warn!(
                        "worker: warm shutdown: finishing running tasks, returning the rest \
                         (signal again to stop now)"
                    ),
                    _ => tracing::warn!("worker: cold shutdown"),
                }
            }
        });
        Ok(())
    }
}

/// Waits until the phase is at least `phase`.
pub(crate) async fn reached(receiver: &mut watch::Receiver<Phase>, phase: Phase) {
    // An error means every sender is gone: nobody can stop us any more, so wait forever.
    if receiver
        .wait_for(|current| *current >= phase)
        .await
        .is_err()
    {
        std::future::pending::<()>().await;
    }
}
