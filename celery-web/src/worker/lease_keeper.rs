//! The lease keeper: while the worker holds messages (running, waiting for a slot, or held
//! until their eta), it extends their leases every third of the visibility timeout, so a long
//! task is not delivered again elsewhere. If the worker dies the leases run out and the
//! messages come back. Started only for brokers with [leases](crate::broker::Broker::leases).

use std::sync::Arc;
use std::time::Duration;

use super::held::Held;
use crate::broker::Broker;
use crate::service::{Service, Stop};
use crate::task::BoxFuture;
use crate::Result;

/// Extends the leases of what the worker holds.
#[derive(Debug)]
pub(crate) struct LeaseKeeper {
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) held: Arc<Held>,
}

impl Service for LeaseKeeper {
    fn name(&self) -> &'static str {
        "lease keeper"
    }

    fn run(self: Box<Self>, mut stop: Stop) -> BoxFuture<'static, Result<()>> {
        Box::pin(async move {
            let Some(leases) = self.broker.leases() else {
                return Ok(());
            };
            let lease = leases.visibility_timeout();
            let every = (lease / 3).max(Duration::from_millis(300));
            loop {
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    () = stop.requested() => return Ok(()),
                }
                let tags = self.held.tags();
                if !tags.is_empty() {
                    if let Err(error) = leases.extend(&tags, lease).await {
                        tracing::warn!(%error, "could not extend leases");
                    }
                }
            }
        })
    }
}
