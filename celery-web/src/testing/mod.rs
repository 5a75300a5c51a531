//! Helpers for tests: the conformance suites every broker and result backend must pass.
//!
//! A new driver is done when [`exercise_broker`] and [`exercise_backend`] pass against the
//! real server:
//!
//! ```no_run
//! # async fn demo() {
//! use std::time::Duration;
//! use celery_web::broker::memory::MemoryBroker;
//! celery_web::testing::exercise_broker(&MemoryBroker::new(Duration::from_millis(300))).await;
//! # }
//! ```

mod backend_suite;
mod broker_suite;

pub use backend_suite::exercise_backend;
pub use broker_suite::exercise_broker;
