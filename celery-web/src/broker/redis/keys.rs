//! Redis key names and priority steps: kombu's layout, plus the two keys only celery-web uses.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `<queue>`, `<queue>\x06\x16<step>` | list | waiting messages, one list per priority step |
//! | `unacked` | hash | delivery tag → `[<envelope>, <exchange>, <routing key>]` |
//! | `unacked_index` | sorted set | delivery tag, scored by its delivery time |
//! | `unacked_mutex` | string | lock taken while restoring timed-out deliveries |
//! | `_kombu.binding.<exchange>` | set | `<routing key>\x06\x16<pattern>\x06\x16<queue>` |
//! | `_celery_web.eta.<queue>` | sorted set | countdown/eta messages, scored by their eta (celery-web only) |
//! | `_celery_web.dead.<queue>` | list | messages a worker could not run, with the reason (celery-web only) |
//! | `_celery_web.consumers.<queue>` | string, expiring | set while a celery-web worker consumes the queue (celery-web only) |

/// kombu's separator between a queue name and its priority step (`sep`).
pub(super) const SEP: &str = "\x06\x16";

/// kombu's default `priority_steps`.
pub(super) const PRIORITY_STEPS: [u8; 4] = [0, 3, 6, 9];

/// The hash of delivered, unacknowledged messages (kombu's `unacked_key`).
pub(super) const UNACKED: &str = "unacked";
/// The delivery times of unacknowledged messages (kombu's `unacked_index_key`).
pub(super) const UNACKED_INDEX: &str = "unacked_index";
/// The lock held while restoring timed-out deliveries (kombu's `unacked_mutex_key`).
pub(super) const UNACKED_MUTEX: &str = "unacked_mutex";
/// How long the restore lock lasts if its holder dies (kombu's `unacked_mutex_expire`).
pub(super) const UNACKED_MUTEX_EXPIRE_MS: u64 = 300_000;

/// kombu's priority (0 is the most urgent, 9 the least) of a celery-web priority (9 is the
/// most urgent, as on RabbitMQ and the database broker). The mapping is its own inverse.
pub(super) fn kombu_priority(priority: u8) -> u8 {
    9 - priority.min(9)
}

/// celery-web's priority of a kombu priority (clamped to 0..=9 as kombu does).
pub(super) fn celery_web_priority(kombu: i64) -> u8 {
    9 - kombu.clamp(0, 9) as u8
}

/// The priority step a kombu priority is stored under: the largest step not above it.
pub(super) fn step(kombu: u8) -> u8 {
    PRIORITY_STEPS
        .iter()
        .copied()
        .filter(|&step| step <= kombu)
        .max()
        .unwrap_or(0)
}

/// The list of `queue` for priority step `step` (`queue` itself for step 0).
pub(super) fn list(queue: &str, step: u8) -> String {
    if step == 0 {
        queue.to_owned()
    } else {
        format!("{queue}{SEP}{step}")
    }
}

/// Every list of `queue`, most urgent first.
pub(super) fn lists(queue: &str) -> impl Iterator<Item = String> + '_ {
    PRIORITY_STEPS.iter().map(move |&step| list(queue, step))
}

/// The sorted set of `queue`'s messages waiting for their eta.
pub(super) fn eta(queue: &str) -> String {
    format!("_celery_web.eta.{queue}")
}

/// The marker a celery-web worker keeps on `queue` while it consumes it: producers park eta
/// messages only for queues that have one (a Python worker would never see the eta set).
pub(super) fn consumers(queue: &str) -> String {
    format!("_celery_web.consumers.{queue}")
}

/// The list of `queue`'s messages kept aside for inspection.
pub(super) fn dead(queue: &str) -> String {
    format!("_celery_web.dead.{queue}")
}

/// The binding set of `exchange`.
pub(super) fn binding(exchange: &str) -> String {
    format!("_kombu.binding.{exchange}")
}

/// The member of `_kombu.binding.<queue>` Celery writes when it declares `queue`: a direct
/// exchange named like the queue, routing key = queue name.
pub(super) fn default_binding(queue: &str) -> String {
    format!("{queue}{SEP}{SEP}{queue}")
}

/// The queues a binding member routes `routing_key` to (`<routing key>␆␖<pattern>␆␖<queue>`).
pub(super) fn bound_queue<'a>(member: &'a str, routing_key: &str) -> Option<&'a str> {
    let mut parts = member.splitn(3, SEP);
    let (key, _pattern, queue) = (parts.next()?, parts.next()?, parts.next()?);
    (key == routing_key).then_some(queue)
}

/// The pub/sub channel of a fanout exchange, kombu's `/{db}.` prefix included
/// (`/0.celeryev/task.succeeded`, `/0.celery.pidbox`).
pub fn fanout_channel(db: i64, exchange: &str, routing_key: &str) -> String {
    if routing_key.is_empty() {
        format!("/{db}.{exchange}")
    } else {
        format!("/{db}.{exchange}/{routing_key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_map_onto_kombu_steps() {
        // celery-web 9 (most urgent) is kombu 0: the plain list, served first.
        assert_eq!(list("q", step(kombu_priority(9))), "q");
        assert_eq!(list("q", step(kombu_priority(7))), "q");
        assert_eq!(list("q", step(kombu_priority(6))), "q\x06\x163");
        assert_eq!(list("q", step(kombu_priority(3))), "q\x06\x166");
        assert_eq!(list("q", step(kombu_priority(0))), "q\x06\x169");
        for p in 0..=9 {
            assert_eq!(celery_web_priority(i64::from(kombu_priority(p))), p);
        }
        assert_eq!(celery_web_priority(-3), 9);
        assert_eq!(celery_web_priority(42), 0);
        assert_eq!(
            lists("q").collect::<Vec<_>>(),
            ["q", "q\x06\x163", "q\x06\x166", "q\x06\x169"]
        );
    }

    #[test]
    fn bindings_and_channels() {
        assert_eq!(default_binding("celery"), "celery\x06\x16\x06\x16celery");
        assert_eq!(bound_queue(&default_binding("a"), "a"), Some("a"));
        assert_eq!(bound_queue(&default_binding("a"), "b"), None);
        assert_eq!(fanout_channel(0, "celery.pidbox", ""), "/0.celery.pidbox");
        assert_eq!(
            fanout_channel(3, "celeryev", "task.succeeded"),
            "/3.celeryev/task.succeeded"
        );
    }
}
