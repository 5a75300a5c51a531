//! The broker and result-backend conformance suites against every driver and real database.

use std::time::Duration;

use celery_web::backend::memory::MemoryBackend;
use celery_web::broker::memory::MemoryBroker;
use celery_web::testing::{exercise_backend, exercise_broker};
use celery_web_tests::{Database, TestDb};

async fn database_drivers(kind: Database) {
    let Some(db) = TestDb::new(kind) else { return };
    let app = db.app();
    exercise_broker(app.broker().as_ref()).await;
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
    exercise_broker(&MemoryBroker::new(Duration::from_millis(500))).await;
    exercise_backend(&MemoryBackend::default()).await;
}
