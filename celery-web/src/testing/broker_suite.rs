//! The broker conformance suite.

use std::time::Duration;

use serde_json::{json, Map};

use crate::broker::{Broker, Delivery, FetchRequest, QueueStats};
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
    let envelope = Envelope::decode(&delivery.payload).expect("broker returns what was stored");
    Message::from_envelope(&envelope).expect("stored envelopes decode")
}

fn numbers(deliveries: &[Delivery]) -> Vec<i64> {
    deliveries
        .iter()
        .map(|d| decoded(d).args[0].as_i64().expect("suite args are numbers"))
        .collect()
}

/// Runs every broker behaviour celery-web relies on against `broker`, which must be empty
/// and have a visibility timeout under two seconds. Panics on the first failure.
pub async fn exercise_broker(broker: &dyn Broker) {
    let lease = broker.visibility_timeout();
    assert!(
        lease < Duration::from_secs(2),
        "the suite needs a short visibility timeout"
    );
    let q = |name: &str| format!("suite.{name}.{}", uuid::Uuid::new_v4().simple());

    // Publish and fetch keep the message intact, FIFO within a priority.
    let fifo = q("fifo");
    let sent: Vec<Message> = (0..5).map(|n| message(&fifo, n)).collect();
    broker.publish(&sent).await.unwrap();
    let got = broker.fetch(&request(&[&fifo], 3)).await.unwrap();
    assert_eq!(numbers(&got), vec![0, 1, 2], "FIFO order and limit");
    assert_eq!(decoded(&got[0]).id(), sent[0].id());
    assert_eq!(got[0].queue, fifo);
    assert!(!got[0].redelivered);
    let rest = broker.fetch(&request(&[&fifo], 10)).await.unwrap();
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

    // Higher priority first.
    let prio = q("priority");
    let mut low = message(&prio, 1);
    low.properties.priority = 1;
    let mut high = message(&prio, 9);
    high.properties.priority = 9;
    broker.publish(&[low, high]).await.unwrap();
    let got = broker.fetch(&request(&[&prio], 10)).await.unwrap();
    assert_eq!(numbers(&got), vec![9, 1], "priority 9 before priority 1");
    broker
        .ack(&got.iter().map(|d| d.tag.clone()).collect::<Vec<_>>())
        .await
        .unwrap();

    // ETA messages wait in the broker.
    let eta = q("eta");
    let mut later = message(&eta, 7);
    later.headers.eta =
        Some((chrono::Utc::now() + chrono::Duration::milliseconds(600)).fixed_offset());
    broker.publish(&[later]).await.unwrap();
    assert!(
        broker
            .fetch(&request(&[&eta], 10))
            .await
            .unwrap()
            .is_empty(),
        "not before its eta"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    let due = broker.fetch(&request(&[&eta], 10)).await.unwrap();
    assert_eq!(numbers(&due), vec![7], "due after its eta");
    broker.ack(&[due[0].tag.clone()]).await.unwrap();

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
        broker.extend(&[held[0].tag.clone()], lease).await.unwrap();
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
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    assert!(
        broker.fetch(&request(&[&bad], 1)).await.unwrap().is_empty(),
        "retired is gone"
    );

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
    assert_eq!(
        broker.purge(std::slice::from_ref(&purged)).await.unwrap(),
        3
    );
    assert!(broker
        .fetch(&request(&[&purged], 10))
        .await
        .unwrap()
        .is_empty());
    let survivor = broker.fetch(&request(&[&kept], 10)).await.unwrap();
    assert_eq!(numbers(&survivor), vec![4]);
    broker.ack(&[survivor[0].tag.clone()]).await.unwrap();

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
    assert_eq!(
        stats[0],
        QueueStats {
            name: counted.clone(),
            waiting: 1,
            scheduled: 1,
            in_flight: 1
        },
        "{stats:?}"
    );
    assert_eq!(stats[1], QueueStats::empty(&idle));
    broker.ack(&[held[0].tag.clone()]).await.unwrap();
    assert_eq!(
        broker.purge(std::slice::from_ref(&counted)).await.unwrap(),
        2
    );
    let stats = broker
        .queue_stats(std::slice::from_ref(&counted))
        .await
        .unwrap();
    assert_eq!(stats[0], QueueStats::empty(&counted), "{stats:?}");

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
