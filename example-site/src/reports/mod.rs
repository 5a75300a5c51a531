//! Reports: slow, CPU-bound work that belongs on a worker.

pub mod tasks;
