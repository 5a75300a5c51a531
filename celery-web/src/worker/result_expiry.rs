//! Result expiry: deletes results older than `result_expires`, when the worker starts and
//! then every hour (Celery's `celery.backend_cleanup`, run by the worker instead of beat).

use std::sync::Arc;
use std::time::Duration;

use crate::backend::ResultBackend;
use crate::service::{Service, Stop};
use crate::task::BoxFuture;
use crate::Result;

/// How often expired results are deleted.
const EVERY: Duration = Duration::from_secs(3600);

/// Deletes expired results.
#[derive(Debug)]
pub(crate) struct ResultExpiry {
    pub(crate) backend: Arc<dyn ResultBackend>,
    /// How long results are kept.
    pub(crate) keep: chrono::Duration,
}

impl Service for ResultExpiry {
    fn name(&self) -> &'static str {
        "result expiry"
    }

    fn run(self: Box<Self>, mut stop: Stop) -> BoxFuture<'static, Result<()>> {
        Box::pin(async move {
            loop {
                let Some(before) = chrono::Utc::now().checked_sub_signed(self.keep) else {
                    return Ok(());
                };
                tokio::select! {
                    deleted = self.backend.delete_expired(before) => match deleted {
                        Ok(0) => {}
                        Ok(n) => tracing::info!("deleted {n} expired results"),
                        Err(error) => tracing::warn!(%error, "could not delete expired results"),
                    },
                    () = stop.requested() => return Ok(()),
                }
                tokio::select! {
                    () = tokio::time::sleep(EVERY) => {}
                    () = stop.requested() => return Ok(()),
                }
            }
        })
    }
}
