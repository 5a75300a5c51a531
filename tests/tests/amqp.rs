//! The RabbitMQ broker against a real RabbitMQ server (a virtual host per test).

use std::time::Duration;

use celery_web::broker::amqp::{AmqpBroker, Topology};
use celery_web::broker::{Broker, FetchRequest};
use celery_web::protocol::Message;
use celery_web::testing::exercise_broker;
use celery_web_tests::amqp_server::TestVhost;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_conformance() {
    let Some(vhost) = TestVhost::create() else {
        return;
    };
    // Priorities need x-max-priority (task_queue_max_priority).
    let broker = AmqpBroker::new(&vhost.url, Topology::default().with_max_priority(10)).unwrap();
    let exercised = exercise_broker(&broker).await;
    assert!(exercised.delays_eta && exercised.broadcast);
    assert!(!exercised.leases && !exercised.transactional);
}

fn request(queue: &str, limit: usize) -> FetchRequest {
    FetchRequest {
        queues: vec![queue.to_owned()],
        limit,
        wait: Duration::from_millis(500),
        consumer: "test@amqp".to_owned(),
        stop: None,
    }
}

/// A countdown waits in the delay levels (not in the queue, not in the worker) and arrives
/// then, with its eta intact; a message with a future eta put straight into the queue (as a
/// Python producer on a classic queue does) is moved into the levels when fetched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn countdowns_wait_in_the_delay_levels() {
    let Some(vhost) = TestVhost::create() else {
        return;
    };
    let broker = AmqpBroker::new(&vhost.url, Topology::default()).unwrap();
    // The first countdown declares the 28 delay levels (quorum queues: slow to create).
    let mut warm_up = Message::new("t.warm", vec![], Default::default()).with_queue("warm-up");
    warm_up.headers.eta = Some((chrono::Utc::now() + chrono::Duration::hours(1)).fixed_offset());
    broker.publish(&[warm_up]).await.unwrap();
    let due = chrono::Utc::now() + chrono::Duration::seconds(3);
    let mut later = Message::new("t.later", vec![], Default::default()).with_queue("delayed");
    later.headers.eta = Some(due.fixed_offset());
    broker.publish(&[later.clone()]).await.unwrap();
    assert!(
        broker
            .fetch(&request("delayed", 10))
            .await
            .unwrap()
            .is_empty(),
        "nothing to fetch a second before"
    );
    assert!(
        chrono::Utc::now() < due - chrono::Duration::seconds(1),
        "the test was slow"
    );
    let clock = std::time::Instant::now();
    let mut got = Vec::new();
    while got.is_empty() {
        assert!(
            clock.elapsed() < Duration::from_secs(10),
            "the countdown never ended"
        );
        got = broker.fetch(&request("delayed", 10)).await.unwrap();
    }
    let arrived = chrono::Utc::now();
    assert!(
        arrived >= due - chrono::Duration::seconds(1),
        "at most a second early"
    );
    let message = Message::try_from(got[0].payload.envelope().unwrap()).unwrap();
    assert_eq!(message.id(), later.id());
    assert_eq!(
        message.eta().unwrap().timestamp_micros(),
        due.timestamp_micros()
    );
    broker.ack(&[got[0].tag.clone()]).await.unwrap();
}
