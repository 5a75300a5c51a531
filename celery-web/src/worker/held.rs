//! What a worker holds: messages fetched and not yet settled. Those waiting for a slot or
//! running count against the prefetch limit; those held until their eta (brokers that do
//! not delay ETA messages) do not, as in Celery, where an ETA task raises the prefetch count
//! instead of taking a place.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::broker::DeliveryTag;

/// Why a message is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hold {
    /// Waiting for a slot, or running: counts against the prefetch limit.
    Prefetched,
    /// Waiting for its eta.
    Eta,
}

/// The messages a worker holds.
#[derive(Debug, Default)]
pub(crate) struct Held {
    state: Mutex<State>,
    freed: Notify,
}

#[derive(Debug, Default)]
struct State {
    tags: HashMap<DeliveryTag, Hold>,
    /// How many of `tags` are [`Hold::Prefetched`] (kept, not counted: many may wait for
    /// their eta).
    prefetched: usize,
}

impl State {
    fn set(&mut self, tag: DeliveryTag, why: Hold) {
        if let Some(Hold::Prefetched) = self.tags.insert(tag, why) {
            self.prefetched -= 1;
        }
        if why == Hold::Prefetched {
            self.prefetched += 1;
        }
    }

    fn remove(&mut self, tag: &DeliveryTag) {
        if let Some(Hold::Prefetched) = self.tags.remove(tag) {
            self.prefetched -= 1;
        }
    }
}

impl Held {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds `tag` until the returned guard is dropped.
    pub(crate) fn hold(self: &Arc<Self>, tag: DeliveryTag, why: Hold) -> HeldMessage {
        self.lock().set(tag.clone(), why);
        HeldMessage {
            held: self.clone(),
            tag,
        }
    }

    /// How many held messages count against the prefetch limit.
    pub(crate) fn prefetched(&self) -> usize {
        self.lock().prefetched
    }

    /// Every held message.
    pub(crate) fn tags(&self) -> Vec<DeliveryTag> {
        self.lock().tags.keys().cloned().collect()
    }

    /// Completes when a held message is let go (room may have been freed).
    pub(crate) async fn freed(&self) {
        self.freed.notified().await;
    }
}

/// A held message: let go, and its room announced, when dropped (even by a panic).
#[derive(Debug)]
pub(crate) struct HeldMessage {
    held: Arc<Held>,
    tag: DeliveryTag,
}

impl HeldMessage {
    /// The message no longer waits for its eta: it now counts against the prefetch limit.
    pub(crate) fn now_prefetched(&self) {
        self.held.lock().set(self.tag.clone(), Hold::Prefetched);
    }
}

impl Drop for HeldMessage {
    fn drop(&mut self) {
        self.held.lock().remove(&self.tag);
        self.held.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_holds_do_not_take_prefetch_room() {
        let held = Arc::new(Held::default());
        let running = held.hold(DeliveryTag("1".into()), Hold::Prefetched);
        let waiting = held.hold(DeliveryTag("2".into()), Hold::Eta);
        assert_eq!(held.prefetched(), 1);
        assert_eq!(held.tags().len(), 2);
        waiting.now_prefetched();
        assert_eq!(held.prefetched(), 2);
        drop(running);
        drop(waiting);
        assert!(held.tags().is_empty());
    }
}
