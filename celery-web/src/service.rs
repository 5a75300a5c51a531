//! Background services with one lifecycle: the worker's completer, heartbeat, embedded
//! beat, lease keeper and result expiry (and, as they come, the event dispatcher, the control
//! consumer and the process pool) all start and stop the same way.
//!
//! - [`Services::start`] runs a service's [`prepare`](Service::prepare) step (the first
//!   heartbeat, loading revocations: what must be done before the worker takes work), then
//!   spawns its [`run`](Service::run).
//! - [`Services::stop`] stops them in the reverse order of their start, one at a time, so a
//!   service can rely on those started before it (the completer writes its last outcomes
//!   while the heartbeat still beats). Each is told to stop and awaited; after a cold
//!   shutdown it gets [`COLD_GRACE`] and is then abandoned.
//! - A service that fails or panics is logged with its name and makes the worker's run an
//!   error, after the others have stopped.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::shutdown::{Phase, Shutdown};
use crate::task::BoxFuture;
use crate::{Error, Result};

/// How long a service still gets to finish after a cold shutdown.
pub(crate) const COLD_GRACE: Duration = Duration::from_secs(2);

/// One background job of a worker.
pub(crate) trait Service: Send + 'static {
    /// Its name in logs and errors.
    fn name(&self) -> &'static str;

    /// What must be done before the worker takes work. Runs inside [`Services::start`].
    fn prepare(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    /// Runs until `stop` is requested, then finishes what it holds and returns.
    fn run(self: Box<Self>, stop: Stop) -> BoxFuture<'static, Result<()>>;
}

/// Tells a running service to stop.
#[derive(Debug, Clone)]
pub(crate) struct Stop(watch::Receiver<bool>);

impl Stop {
    /// Completes once stopping is requested.
    pub(crate) async fn requested(&mut self) {
        if self.0.wait_for(|stop| *stop).await.is_err() {
            // The runner is gone without asking: nobody will ask any more.
            std::future::pending::<()>().await;
        }
    }
}

struct Running {
    name: &'static str,
    stop: watch::Sender<bool>,
    handle: JoinHandle<Result<()>>,
}

/// Started services, stopped in reverse order.
pub(crate) struct Services {
    running: Vec<Running>,
    shutdown: Shutdown,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.running.iter().map(|r| r.name))
            .finish()
    }
}

impl Services {
    /// No service yet; `shutdown` tells when stopping must not wait long (cold).
    pub(crate) fn new(shutdown: &Shutdown) -> Self {
        Services {
            running: Vec::new(),
            shutdown: shutdown.clone(),
        }
    }

    /// Prepares `service` and spawns it. A failed preparation is returned (the services
    /// already started keep running; [`Services::stop`] them).
    pub(crate) async fn start<S: Service>(&mut self, mut service: S) -> Result<()> {
        let name = service.name();
        service.prepare().await?;
        let (stop, receiver) = watch::channel(false);
        let handle = tokio::spawn(Box::new(service).run(Stop(receiver)));
        tracing::debug!(service = name, "started");
        self.running.push(Running { name, stop, handle });
        Ok(())
    }

    /// Stops every service, last started first; the first failure is returned once all
    /// have stopped.
    pub(crate) async fn stop(mut self) -> Result<()> {
        let mut first_error = None;
        while let Some(Running {
            name,
            stop,
            mut handle,
        }) = self.running.pop()
        {
            stop.send_replace(true);
            let ended = tokio::select! {
                ended = &mut handle => Some(ended),
                () = async {
                    self.shutdown.reached(Phase::Cold).await;
                    tokio::time::sleep(COLD_GRACE).await;
                } => None,
            };
            let error = match ended {
                Some(Ok(Ok(()))) => {
                    tracing::debug!(service = name, "stopped");
                    continue;
                }
                Some(Ok(Err(error))) => error,
                Some(Err(crashed)) => Error::Service {
                    name,
                    reason: format!("it crashed: {crashed}"),
                },
                None => {
                    handle.abort();
                    tracing::warn!(
                        service = name,
                        "cold shutdown: {name} did not stop within {COLD_GRACE:?}; abandoned"
                    );
                    continue;
                }
            };
            tracing::error!(service = name, %error, "{name} stopped with an error");
            first_error.get_or_insert(error);
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Records its start, its stop and the order of both.
    struct Probe {
        name: &'static str,
        log: Arc<Mutex<Vec<String>>>,
        fail: bool,
        ignore_stop: bool,
    }

    impl Service for Probe {
        fn name(&self) -> &'static str {
            self.name
        }

        fn prepare(&mut self) -> BoxFuture<'_, Result<()>> {
            self.log
                .lock()
                .unwrap()
                .push(format!("prepare {}", self.name));
            Box::pin(async { Ok(()) })
        }

        fn run(self: Box<Self>, mut stop: Stop) -> BoxFuture<'static, Result<()>> {
            Box::pin(async move {
                if self.ignore_stop {
                    std::future::pending::<()>().await;
                }
                stop.requested().await;
                self.log.lock().unwrap().push(format!("stop {}", self.name));
                if self.fail {
                    return Err(Error::Service {
                        name: self.name,
                        reason: "probe failure".to_owned(),
                    });
                }
                Ok(())
            })
        }
    }

    fn probe(name: &'static str, log: &Arc<Mutex<Vec<String>>>) -> Probe {
        Probe {
            name,
            log: log.clone(),
            fail: false,
            ignore_stop: false,
        }
    }

    #[tokio::test]
    async fn services_stop_in_reverse_order_and_report_the_failure() {
        let log = Arc::default();
        let mut services = Services::new(&Shutdown::new());
        services.start(probe("first", &log)).await.unwrap();
        services
            .start(Probe {
                fail: true,
                ..probe("second", &log)
            })
            .await
            .unwrap();
        services.start(probe("third", &log)).await.unwrap();
        let error = services.stop().await.unwrap_err();
        assert!(error.to_string().contains("second"), "{error}");
        assert_eq!(
            *log.lock().unwrap(),
            [
                "prepare first",
                "prepare second",
                "prepare third",
                "stop third",
                "stop second",
                "stop first"
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stuck_service_is_abandoned_after_a_cold_shutdown() {
        let log = Arc::default();
        let shutdown = Shutdown::new();
        let mut services = Services::new(&shutdown);
        services.start(probe("polite", &log)).await.unwrap();
        services
            .start(Probe {
                ignore_stop: true,
                ..probe("stuck", &log)
            })
            .await
            .unwrap();
        shutdown.cold();
        let clock = tokio::time::Instant::now();
        services.stop().await.unwrap();
        assert!(clock.elapsed() >= COLD_GRACE);
        assert_eq!(
            *log.lock().unwrap(),
            ["prepare polite", "prepare stuck", "stop polite"]
        );
    }
}
