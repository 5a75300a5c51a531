//! Beat inside the worker (`worker -B`): it stops with the worker's warm shutdown (no
//! firing while the worker drains) or when the worker stops its services.

use crate::beat::Beat;
use crate::service::{Service, Stop};
use crate::shutdown::{Phase, Shutdown};
use crate::task::BoxFuture;
use crate::Result;

/// A beat run by the worker.
#[derive(Debug)]
pub(crate) struct EmbeddedBeat {
    pub(crate) beat: Beat,
    /// The worker's shutdown.
    pub(crate) worker: Shutdown,
}

impl Service for EmbeddedBeat {
    fn name(&self) -> &'static str {
        "beat"
    }

    fn run(self: Box<Self>, mut stop: Stop) -> BoxFuture<'static, Result<()>> {
        Box::pin(async move {
            let own = Shutdown::new();
            let beating = self.beat.run(own.clone());
            tokio::pin!(beating);
            let ended = tokio::select! {
                ended = &mut beating => Some(ended),
                () = self.worker.reached(Phase::Warm) => None,
                () = stop.requested() => None,
            };
            let ended = match ended {
                Some(ended) => ended,
                None => {
                    own.warm();
                    beating.await
                }
            };
            ended.map(|_stats| ())
        })
    }
}
