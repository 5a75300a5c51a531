//! The broker and result-backend conformance suites against every driver and real database.

use std::time::Duration;

use celery_web::backend::memory::MemoryBackend;
use celery_web::broker::memory::MemoryBroker;
use celery_web::testing::{exercise_backend, exercise_broker};
use celery_web_tests::{Database, TestDb};

async fn database_drivers(kind: Database) {
    let Some(db) = TestDb::new(kind) else { return };
    let app = db.app();
    let exercised = exercise_broker(app.broker().as_ref()).await;
    assert!(exercised.leases && exercised.delays_eta && exercised.transactional);
    assert!(!exercised.broadcast, "no broadcast on a database");
    exercise_backend(app.backend().expect("db backend").as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_broker_and_backend() {
    database_drivers(Database::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_broker_and_backend() {
    database_drivers(Database::Postgres).await;
}

#[tokio::test]
async fn memory_broker_and_backend() {
    let exercised = exercise_broker(&MemoryBroker::new(Duration::from_millis(500))).await;
    assert!(exercised.leases && exercised.delays_eta && exercised.broadcast);
    exercise_backend(&MemoryBackend::default()).await;
}

/// The path an AMQP broker takes: ETA messages delivered at once, held by the worker.
#[tokio::test]
async fn memory_broker_delivering_eta_early() {
    let broker = MemoryBroker::new(Duration::from_millis(500)).delivering_eta_early();
    let exercised = exercise_broker(&broker).await;
    assert!(!exercised.delays_eta);
}
