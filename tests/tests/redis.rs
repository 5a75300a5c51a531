//! The Redis broker and result backend against a real Redis server.

use std::time::Duration;

use celery_web::backend::redis::RedisBackend;
use celery_web::broker::redis::RedisBroker;
use celery_web::testing::{exercise_backend, exercise_broker};
use celery_web_tests::redis_server::TestRedis;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_conformance() {
    let Some(redis) = TestRedis::shared(1) else {
        return;
    };
    let broker = RedisBroker::new(&redis.url, Duration::from_millis(800)).unwrap();
    exercise_broker(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_conformance() {
    let Some(redis) = TestRedis::shared(2) else {
        return;
    };
    let backend = RedisBackend::new(&redis.url, Some(Duration::from_secs(600))).unwrap();
    exercise_backend(&backend).await;
}
