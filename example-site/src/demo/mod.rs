//! Small tasks for quick trials, and tasks that show each worker behaviour (retries, time
//! limits, rate limits, panics). The integration tests drive them through real processes.

pub mod tasks;
pub mod views;
