//! Tasks: declaring them (`#[task]`), calling them ([`Signature`]), following them
//! ([`AsyncResult`]), and what a body returns ([`TaskResult`], [`TaskError`]).

mod args;
mod async_result;
mod context;
mod eager;
mod options;
mod outcome;
mod rate_limit;
mod registry;
mod signature;
mod state;

pub use args::TaskArgs;
pub(crate) use async_result::failed;
pub use async_result::AsyncResult;
pub use context::TaskContext;
pub(crate) use eager::apply as apply_eagerly;
pub use options::TaskOptions;
pub use outcome::{Retry, TaskError, TaskResult};
pub use rate_limit::RateLimit;
pub use registry::{task_name, BoxFuture, RegisteredTask, Registry, TaskRegistration, TaskRunner};
pub use signature::{SendOptions, Signature};
pub use state::State;
