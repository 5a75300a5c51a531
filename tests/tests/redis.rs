//! The Redis broker and result backend against a real Redis server.

use std::time::Duration;

use celery_web::backend::redis::RedisBackend;
use celery_web::backend::ResultBackend;
use celery_web::broker::redis::RedisBroker;
use celery_web::testing::{exercise_backend, exercise_broker};
use celery_web_tests::redis_server::TestRedis;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_conformance() {
    let Some(redis) = TestRedis::shared(1) else {
        return;
    };
    let broker = RedisBroker::new(&redis.url, Duration::from_millis(800)).unwrap();
    let exercised = exercise_broker(&broker).await;
    assert!(exercised.leases && exercised.delays_eta && exercised.broadcast);
    assert!(!exercised.transactional);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_conformance() {
    let Some(redis) = TestRedis::shared(2) else {
        return;
    };
    let backend = RedisBackend::new(&redis.url, Some(Duration::from_secs(600))).unwrap();
    exercise_backend(&backend).await;
    // Keys carry their TTL: workers run no periodic cleanup of this backend...
    assert!(backend.expires_by_itself());
    // ...unless results are kept forever (`result_expires = 0`), where nothing expires.
    let forever = RedisBackend::new(&redis.url, None).unwrap();
    assert!(!forever.expires_by_itself());
}

/// On a single-thread runtime (each actix-web worker runs one) the broker sends commands over
/// a connection of the thread's own, whose I/O task ends with that runtime. Publishing must
/// keep working, promptly, when such runtimes come and go on one thread (the broker notices
/// the runtime ended and connects again; redis-rs would also reconnect by itself, after a
/// failed command and a retry pause).
#[test]
fn each_single_thread_runtime_gets_a_live_connection() {
    use celery_web::broker::Broker;
    use celery_web::protocol::Message;

    let Some(redis) = TestRedis::shared(14) else {
        return;
    };
    let broker = RedisBroker::new(&redis.url, Duration::from_secs(5)).unwrap();
    let queue = "single_thread_runtimes";
    for round in 0..3 {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let message = Message::new("t", vec![round.into()], Default::default()).with_queue(queue);
        let sent = runtime.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(5),
                broker.publish(std::slice::from_ref(&message)),
            )
            .await
        });
        assert!(
            matches!(sent, Ok(Ok(()))),
            "round {round}: publish on a new runtime failed or hung: {sent:?}"
        );
    }
    // A multi-thread runtime uses the shared connection, and sees all three.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let stats = runtime
        .block_on(broker.queue_stats(&[queue.to_owned()]))
        .unwrap();
    assert_eq!(stats[0].waiting, 3);
}
