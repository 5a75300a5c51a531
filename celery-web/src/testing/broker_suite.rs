//! The broker conformance suite.

use std::time::Duration;

use serde_json::{json, Map};

use crate::broker::{
    Broadcast, Broker, Delivery, Exchange, FetchRequest, Leases, QueueStats, Transactional,
};
use crate::protocol::{Envelope, Message};

fn request(queues: &[&str], limit: usize) -> FetchRequest {
    FetchRequest {
        queues: queues.iter().map(|q| (*q).to_owned()).collect(),
        limit,
        wait: Duration::from_millis(50),
        consumer: "suite@test".to_owned(),
        stop: None,
    }
}

fn message(queue: &str, n: i64) -> Message {
    Message::new("suite.task", vec![json!(n)], Map::new()).with_queue(queue)
}

fn decoded(delivery: &Delivery) -> Message {
    let envelope = delivery
        .payload
        .envelope()
        .expect("broker returns what was stored");
    Message::from_envelope(&envelope).expect("stored envelopes decode")
}

fn numbers(deliveries: &[Delivery]) -> Vec<i64> {
    deliveries
        .iter()
        .map(|d| decoded(d).args[0].as_i64().expect("suite args are numbers"))
        .collect()
}

fn q(name: &str) -> String {
    format!("suite.{name}.{}", uuid::Uuid::new_v4().simple())
}

/// Fetches from `queues` until `expected` deliveries came (at most `limit`) or a fetch
/// returns none: a broker that receives pushed messages (AMQP) may hand a batch over in
/// several fetches, in order.
async fn fetch_expecting(
    broker: &dyn Broker,
    queues: &[&str],
    limit: usize,
    expected: usize,
) -> Vec<Delivery> {
    let mut got = Vec::new();
    while got.len() < expected.min(limit) {
        let more = broker
            .fetch(&request(queues, limit - got.len()))
            .await
            .unwrap();
        if more.is_empty() {
            break;
        }
        got.extend(more);
    }
    got
}

async fn ack_all(broker: &dyn Broker, deliveries: &[Delivery]) {
    broker
        .ack(&deliveries.iter().map(|d| d.tag.clone()).collect::<Vec<_>>())
        .await
        .unwrap();
}

/// What [`exercise_broker`] checked: the core always, each optional capability where the
/// broker declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Exercised {
    /// Leases: visibility timeout, redelivery, stale tags, extend.
    pub leases: bool,
    /// ETA messages invisible until due (else: delivered at once with their eta intact).
    pub delays_eta: bool,
    /// Broadcast send and subscribe.
    pub broadcast: bool,
    /// Enqueue inside the caller's transaction, discard by task id.
    pub transactional: bool,
}

/// Runs every broker behaviour celery-web relies on against `broker`: the core of the
/// [`Broker`] trait, then each capability the broker declares (others are skipped, and the
/// result says which ran). The broker must be empty, and a broker with leases must have a
/// visibility timeout under two seconds. Panics on the first failure.
pub async fn exercise_broker(broker: &dyn Broker) -> Exercised {
    if let Some(leases) = broker.leases() {
        assert!(
            leases.visibility_timeout() < Duration::from_secs(2),
            "the suite needs a short visibility timeout"
        );
    }
    fifo_and_limits(broker).await;
    queues_are_separate(broker).await;
    higher_priority_first(broker).await;
    release_and_retire(broker).await;
    purge_named_queues_only(broker).await;
    queue_statistics(broker).await;
    fetch_waits_and_stops(broker).await;
    if broker.delays_eta() {
        eta_waits_in_the_broker(broker).await;
    } else {
        eta_is_delivered_early(broker).await;
    }
    if let Some(leases) = broker.leases() {
        leases_run_out_and_extend(broker, leases).await;
    }
    if let Some(broadcast) = broker.broadcast() {
        broadcast_reaches_matching_subscriptions(broadcast).await;
    }
    if let Some(transactional) = broker.transactional() {
        enqueue_follows_the_transaction(broker, transactional).await;
    }
    Exercised {
        leases: broker.leases().is_some(),
        delays_eta: broker.delays_eta(),
        broadcast: broker.broadcast().is_some(),
        transactional: broker.transactional().is_some(),
    }
}

async fn fifo_and_limits(broker: &dyn Broker) {
    // Publish and fetch keep the message intact, FIFO within a priority.
    let fifo = q("fifo");
    let sent: Vec<Message> = (0..5).map(|n| message(&fifo, n)).collect();
    broker.publish(&sent).await.unwrap();
    let got = fetch_expecting(broker, &[&fifo], 3, 5).await;
    assert_eq!(numbers(&got), vec![0, 1, 2], "FIFO order and limit");
    assert_eq!(decoded(&got[0]).id(), sent[0].id());
    assert_eq!(got[0].queue, fifo);
    assert!(!got[0].redelivered);
    let rest = fetch_expecting(broker, &[&fifo], 10, 2).await;
    assert_eq!(numbers(&rest), vec![3, 4]);
    broker
        .ack(
            &got.iter()
                .chain(&rest)
                .map(|d| d.tag.clone())
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    assert!(
        broker
            .fetch(&request(&[&fifo], 10))
            .await
            .unwrap()
            .is_empty(),
        "acked is gone"
    );
}

async fn queues_are_separate(broker: &dyn Broker) {
    // Queues are separate.
    let (a, b) = (q("a"), q("b"));
    broker
        .publish(&[message(&a, 1), message(&b, 2)])
        .await
        .unwrap();
    let only_b = broker.fetch(&request(&[&b], 10)).await.unwrap();
    assert_eq!(numbers(&only_b), vec![2]);
    let only_a = broker.fetch(&request(&[&a], 10)).await.unwrap();
    assert_eq!(numbers(&only_a), vec![1]);
    broker
        .ack(&[only_a[0].tag.clone(), only_b[0].tag.clone()])
        .await
        .unwrap();
}

async fn higher_priority_first(broker: &dyn Broker) {
    // Higher priority first.
    let prio = q("priority");
    let mut low = message(&prio, 1);
    low.properties.priority = 1;
    let mut high = message(&prio, 9);
    high.properties.priority = 9;
    broker.publish(&[low, high]).await.unwrap();
    let got = fetch_expecting(broker, &[&prio], 10, 2).await;
    assert_eq!(numbers(&got), vec![9, 1], "priority 9 before priority 1");
    broker
        .ack(&got.iter().map(|d| d.tag.clone()).collect::<Vec<_>>())
        .await
        .unwrap();
}

async fn eta_waits_in_the_broker(broker: &dyn Broker) {
    // ETA messages wait in the broker. (AMQP's delay levels count whole seconds: the message
    // may come up to a second early, and the worker holds it for the rest.)
    let eta = q("eta");
    let mut later = message(&eta, 7);
    later.headers.eta =
        Some((chrono::Utc::now() + chrono::Duration::milliseconds(1600)).fixed_offset());
    broker.publish(&[later]).await.unwrap();
    assert!(
        broker
            .fetch(&request(&[&eta], 10))
            .await
            .unwrap()
            .is_empty(),
        "not before its eta"
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert!(
        broker
            .fetch(&request(&[&eta], 10))
            .await
            .unwrap()
            .is_empty(),
        "not more than a second before its eta"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let due = broker.fetch(&request(&[&eta], 10)).await.unwrap();
    assert_eq!(numbers(&due), vec![7], "due after its eta");
    broker.ack(&[due[0].tag.clone()]).await.unwrap();
}

async fn leases_run_out_and_extend(broker: &dyn Broker, leases: &dyn Leases) {
    let lease = leases.visibility_timeout();
    // A lease that runs out gives the message back, marked redelivered; the old tag is stale.
    let lost = q("lost");
    broker.publish(&[message(&lost, 5)]).await.unwrap();
    let first = broker.fetch(&request(&[&lost], 1)).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(
        broker
            .fetch(&request(&[&lost], 1))
            .await
            .unwrap()
            .is_empty(),
        "leased: invisible"
    );
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    let again = broker.fetch(&request(&[&lost], 1)).await.unwrap();
    assert_eq!(
        numbers(&again),
        vec![5],
        "back after the visibility timeout"
    );
    assert!(again[0].redelivered);
    broker.ack(&[first[0].tag.clone()]).await.unwrap();
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    let still = broker.fetch(&request(&[&lost], 1)).await.unwrap();
    assert_eq!(
        still.len(),
        1,
        "a stale tag's ack does not remove the message"
    );
    broker.ack(&[still[0].tag.clone()]).await.unwrap();

    // Extend keeps a message invisible past its first lease.
    let long = q("long");
    broker.publish(&[message(&long, 6)]).await.unwrap();
    let held = broker.fetch(&request(&[&long], 1)).await.unwrap();
    for _ in 0..3 {
        tokio::time::sleep(lease / 2).await;
        leases.extend(&[held[0].tag.clone()], lease).await.unwrap();
    }
    assert!(
        broker
            .fetch(&request(&[&long], 1))
            .await
            .unwrap()
            .is_empty(),
        "extended lease holds"
    );
    broker.ack(&[held[0].tag.clone()]).await.unwrap();
}

async fn release_and_retire(broker: &dyn Broker) {
    // Release gives a message back at once.
    let back = q("release");
    broker.publish(&[message(&back, 8)]).await.unwrap();
    let held = broker.fetch(&request(&[&back], 1)).await.unwrap();
    broker.release(&[held[0].tag.clone()]).await.unwrap();
    let again = broker.fetch(&request(&[&back], 1)).await.unwrap();
    assert_eq!(numbers(&again), vec![8], "released is ready now");
    broker.ack(&[again[0].tag.clone()]).await.unwrap();

    // Retire removes the message from the queue.
    let bad = q("retire");
    broker.publish(&[message(&bad, 4)]).await.unwrap();
    let held = broker.fetch(&request(&[&bad], 1)).await.unwrap();
    broker.retire(&held[0], "suite: malformed").await.unwrap();
    if let Some(leases) = broker.leases() {
        tokio::time::sleep(leases.visibility_timeout() + Duration::from_millis(100)).await;
    }
    assert!(
        broker.fetch(&request(&[&bad], 1)).await.unwrap().is_empty(),
        "retired is gone"
    );
}

async fn purge_named_queues_only(broker: &dyn Broker) {
    // Purge removes waiting and scheduled messages of the named queues only.
    let (purged, kept) = (q("purge"), q("kept"));
    let mut scheduled = message(&purged, 3);
    scheduled.headers.eta = Some((chrono::Utc::now() + chrono::Duration::hours(1)).fixed_offset());
    broker
        .publish(&[
            message(&purged, 1),
            message(&purged, 2),
            scheduled,
            message(&kept, 4),
        ])
        .await
        .unwrap();
    // What the queue holds, as far as the broker counts it (AMQP keeps scheduled messages in
    // its delay levels, shared by every queue: not counted, not purged per queue).
    let held = &broker
        .queue_stats(std::slice::from_ref(&purged))
        .await
        .unwrap()[0];
    let counted = if held.scheduled.is_some() { 3 } else { 2 };
    assert_eq!(held.pending(), counted, "{held:?}");
    assert_eq!(
        broker.purge(std::slice::from_ref(&purged)).await.unwrap(),
        held.pending()
    );
    assert!(broker
        .fetch(&request(&[&purged], 10))
        .await
        .unwrap()
        .is_empty());
    let survivor = broker.fetch(&request(&[&kept], 10)).await.unwrap();
    assert_eq!(numbers(&survivor), vec![4]);
    broker.ack(&[survivor[0].tag.clone()]).await.unwrap();
}

async fn queue_statistics(broker: &dyn Broker) {
    // Queue statistics: waiting, scheduled (eta ahead) and in flight (claimed, not acked),
    // one entry per queue asked for, in order, zeros for an empty one.
    let (counted, idle) = (q("stats"), q("idle"));
    // A first fetch makes the queue consumed (the Redis broker then parks eta messages).
    assert!(broker
        .fetch(&request(&[&counted], 1))
        .await
        .unwrap()
        .is_empty());
    let mut later = message(&counted, 3);
    later.headers.eta = Some((chrono::Utc::now() + chrono::Duration::hours(1)).fixed_offset());
    broker
        .publish(&[message(&counted, 1), message(&counted, 2), later])
        .await
        .unwrap();
    let held = broker.fetch(&request(&[&counted], 1)).await.unwrap();
    assert_eq!(numbers(&held), vec![1]);
    let stats = broker
        .queue_stats(&[counted.clone(), idle.clone()])
        .await
        .unwrap();
    assert!(stats.len() >= 2, "one entry per queue asked for: {stats:?}");
    // Delivered early, the eta message is waiting like any other.
    let waiting = if broker.delays_eta() { 1 } else { 2 };
    assert_counts(
        &stats[0],
        &counted,
        waiting,
        u64::from(broker.delays_eta()),
        1,
    );
    assert_counts(&stats[1], &idle, 0, 0, 0);
    broker.ack(&[held[0].tag.clone()]).await.unwrap();
    assert_eq!(
        broker.purge(std::slice::from_ref(&counted)).await.unwrap(),
        stats[0].pending()
    );
    let stats = broker
        .queue_stats(std::slice::from_ref(&counted))
        .await
        .unwrap();
    assert_counts(&stats[0], &counted, 0, 0, 0);
}

/// `stats` counts `waiting` exactly, and `scheduled` and `in_flight` where it knows them
/// (AMQP does not: `None`).
fn assert_counts(stats: &QueueStats, name: &str, waiting: u64, scheduled: u64, in_flight: u64) {
    assert_eq!(stats.name, name, "{stats:?}");
    assert_eq!(stats.waiting, waiting, "waiting: {stats:?}");
    assert!(
        stats.scheduled.is_none_or(|n| n == scheduled),
        "scheduled: {stats:?}"
    );
    assert!(
        stats.in_flight.is_none_or(|n| n == in_flight),
        "in flight: {stats:?}"
    );
}

async fn fetch_waits_and_stops(broker: &dyn Broker) {
    // An empty fetch waits about `wait`, not forever.
    let clock = std::time::Instant::now();
    let none = broker
        .fetch(&FetchRequest {
            wait: Duration::from_millis(300),
            ..request(&[&q("empty")], 1)
        })
        .await
        .unwrap();
    assert!(none.is_empty());
    assert!(
        clock.elapsed() >= Duration::from_millis(250),
        "fetch waited"
    );
    assert!(clock.elapsed() < Duration::from_secs(3), "fetch gave up");

    // A stop signal ends the wait at once.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let clock = std::time::Instant::now();
    let waiting = FetchRequest {
        wait: Duration::from_secs(10),
        stop: Some(stopped),
        ..request(&[&q("stopped")], 1)
    };
    let (none, ()) = tokio::join!(broker.fetch(&waiting), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.send_replace(true);
    });
    assert!(none.unwrap().is_empty());
    assert!(
        clock.elapsed() < Duration::from_secs(2),
        "stop ended the wait"
    );
}

async fn eta_is_delivered_early(broker: &dyn Broker) {
    // The worker holds such a message until its eta; the broker must keep the eta intact.
    let eta = q("eta-early");
    let mut later = message(&eta, 7);
    let due = (chrono::Utc::now() + chrono::Duration::hours(1)).fixed_offset();
    later.headers.eta = Some(due);
    broker.publish(&[later]).await.unwrap();
    let got = broker.fetch(&request(&[&eta], 10)).await.unwrap();
    assert_eq!(numbers(&got), vec![7], "delivered at once");
    let eta_read = decoded(&got[0]).eta().expect("the eta header is kept");
    assert_eq!(eta_read.timestamp_micros(), due.timestamp_micros());
    ack_all(broker, &got).await;
}

/// The routing key and number of the next broadcast message.
async fn next_number(subscription: &mut crate::broker::Subscription) -> (String, i64) {
    let received = tokio::time::timeout(Duration::from_secs(5), subscription.next())
        .await
        .expect("a broadcast message arrives")
        .expect("the subscription is open")
        .expect("a readable message");
    let message = Message::from_envelope(&received.envelope).unwrap();
    (received.routing_key, message.args[0].as_i64().unwrap())
}

async fn broadcast_reaches_matching_subscriptions(broadcast: &dyn Broadcast) {
    let events = Exchange::topic(&q("events"));
    let control = Exchange::fanout(&q("control"));
    let mut everything = broadcast.subscribe(&events, "#").await.unwrap();
    let mut workers = broadcast.subscribe(&events, "worker.#").await.unwrap();
    let mut nodes = broadcast.subscribe(&control, "").await.unwrap();
    let envelope = |n: i64| Envelope::from_message(&message("broadcast", n)).unwrap();
    broadcast
        .send(&events, "task.succeeded", &envelope(1))
        .await
        .unwrap();
    broadcast
        .send(&events, "worker.heartbeat", &envelope(2))
        .await
        .unwrap();
    broadcast.send(&control, "", &envelope(3)).await.unwrap();
    assert_eq!(
        next_number(&mut everything).await,
        ("task.succeeded".to_owned(), 1)
    );
    assert_eq!(
        next_number(&mut everything).await,
        ("worker.heartbeat".to_owned(), 2)
    );
    assert_eq!(
        next_number(&mut workers).await,
        ("worker.heartbeat".to_owned(), 2),
        "a topic binding filters"
    );
    assert_eq!(next_number(&mut nodes).await, (String::new(), 3));
    // Nothing else arrives: not the other exchange's message, not task events for `worker.#`.
    for subscription in [&mut everything, &mut workers, &mut nodes] {
        let extra = tokio::time::timeout(Duration::from_millis(200), subscription.next()).await;
        assert!(extra.is_err(), "unexpected broadcast: {extra:?}");
    }
    // A dropped subscription ends; sending to nobody is not an error.
    drop((everything, workers, nodes));
    broadcast
        .send(&events, "task.sent", &envelope(4))
        .await
        .unwrap();
    // A direct exchange (remote-control replies): only the exact key, on a named queue.
    let replies = Exchange::direct(&q("replies")).transient();
    let mut mine = broadcast
        .subscribe_as(&replies, "oid-1", &q("oid-1.replies"))
        .await
        .unwrap();
    let mut theirs = broadcast.subscribe(&replies, "oid-2").await.unwrap();
    broadcast
        .send(&replies, "oid-1", &envelope(5))
        .await
        .unwrap();
    broadcast
        .send(&replies, "oid-3", &envelope(6))
        .await
        .unwrap();
    assert_eq!(next_number(&mut mine).await, ("oid-1".to_owned(), 5));
    for subscription in [&mut mine, &mut theirs] {
        let extra = tokio::time::timeout(Duration::from_millis(200), subscription.next()).await;
        assert!(extra.is_err(), "unexpected reply: {extra:?}");
    }
}

async fn enqueue_follows_the_transaction(broker: &dyn Broker, transactional: &dyn Transactional) {
    use diesel::Connection;

    let queue = q("transactional");
    let (kept, rolled_back) = (message(&queue, 1), message(&queue, 2));
    let db = transactional.db();
    let publish = || -> crate::Result<()> {
        crate::db::with_connection!(db, |conn| {
            conn.transaction::<(), crate::Error, _>(|conn| {
                crate::broker::database::publish_in(conn, &kept)
            })?;
            let rolled = conn.transaction::<(), crate::Error, _>(|conn| {
                crate::broker::database::publish_in(conn, &rolled_back)?;
                Err(crate::Error::Config("suite: roll back".to_owned()))
            });
            assert!(rolled.is_err());
            Ok(())
        })
    };
    publish().unwrap();
    let got = broker.fetch(&request(&[&queue], 10)).await.unwrap();
    assert_eq!(numbers(&got), vec![1], "only the committed message is sent");
    // Discarding by task id removes waiting messages, not delivered ones.
    let waiting = message(&queue, 3);
    broker
        .publish(std::slice::from_ref(&waiting))
        .await
        .unwrap();
    assert_eq!(
        transactional.discard_waiting(waiting.id()).await.unwrap(),
        1
    );
    assert_eq!(
        transactional.discard_waiting(kept.id()).await.unwrap(),
        0,
        "delivered: kept"
    );
    assert!(broker
        .fetch(&request(&[&queue], 10))
        .await
        .unwrap()
        .is_empty());
    ack_all(broker, &got).await;
}
