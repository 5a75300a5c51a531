//! Every accepted form of `#[task]`: sync and async, bound, every option, every visibility,
//! awkward parameter names, `super::` paths and a renamed crate path. Warnings are errors here,
//! so the generated code must not trigger any lint in the user's crate.
#![deny(warnings, missing_docs, missing_debug_implementations)]

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use celery_web::prelude::*;
use celery_web::task::{Registry, TaskArgs, TaskRunner};
use serde::{Deserialize, Serialize};

/// A user type used as an argument and a return value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Rows.
    pub rows: Vec<i64>,
    /// Title.
    pub title: Option<String>,
}

/// An error type of the site.
#[derive(Debug)]
pub struct SiteError;

impl std::fmt::Display for SiteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("site error")
    }
}

impl std::error::Error for SiteError {}

/// celery-web under another name, for `crate = "..."`.
pub(crate) use celery_web as celery;

/// A task at the crate root.
#[task]
pub fn x() {}

/// The site's tasks.
pub mod tasks {
    use super::*;

    /// A plain blocking task.
    #[task]
    pub fn add(x: i64, y: i64) -> i64 {
        x + y
    }

    /// An async task returning `TaskResult<()>`.
    #[task(queue = "emails", max_retries = 5)]
    pub async fn send_welcome(user_id: i64, note: String) -> TaskResult<()> {
        if user_id < 0 {
            return Err(TaskError::failed(note));
        }
        Ok(())
    }

    /// A bound async task.
    #[task(bind, max_retries = 2, retry_backoff = true)]
    pub(crate) async fn flaky(ctx: TaskContext, n: i64) -> TaskResult<i64> {
        let _ = ctx.id();
        Ok(n * 2)
    }

    /// A bound blocking task that never reads its context.
    #[task(bind)]
    pub(crate) fn bound_sync(_ctx: TaskContext) -> &'static str {
        "done"
    }

    /// Every option at once; a `super::` path, `mut`, an `Option` and a foreign error type.
    #[task(
        name = "reports.build",
        queue = "reports",
        priority = 9,
        max_retries = 0,
        default_retry_delay = 2,
        retry_backoff = 1.5,
        retry_backoff_max = 60,
        retry_jitter = false,
        autoretry,
        ignore_result = false,
        acks_late,
        time_limit = 30,
        soft_time_limit = 20.5,
        rate_limit = "10/s",
        crate = "crate::celery"
    )]
    pub fn build(mut rows: Vec<i64>, title: Option<String>) -> Result<super::Report, SiteError> {
        rows.sort_unstable();
        Ok(Report { rows, title })
    }

    /// Parameters named like the generated items and locals, and a raw identifier.
    #[task(
        autoretry = false,
        ignore_result,
        acks_late = false,
        retry_backoff = false
    )]
    pub(super) fn collide(name: String, s: i64, args: Vec<i64>, ctx: u8, r#type: String) -> String {
        format!("{name}{s}{args:?}{ctx}{type}", type = r#type)
    }

    /// A private task whose `s`, `delay` and `signature` nobody calls: no `dead_code` warning.
    #[task]
    fn private_task(report: super::Report) -> Report {
        report
    }

    /// The private task's name, from its parent module.
    pub fn private_task_name() -> &'static str {
        private_task::name()
    }

    /// Uses the private task so that the function itself is not dead code either.
    pub fn use_private() -> Report {
        private_task(Report {
            rows: vec![],
            title: None,
        })
    }

    /// Removed by `cfg`, and its module with it.
    #[task]
    #[cfg(any())]
    pub fn gone(n: i64) -> i64 {
        n
    }

    /// A nested module: `pub(super)` becomes `pub(in super::super)` inside the task module.
    pub mod nested {
        use super::*;

        /// A task visible to `tasks` only.
        #[task]
        pub(super) fn deep(
            items: std::collections::BTreeMap<String, Vec<super::super::Report>>,
        ) -> usize {
            items.len()
        }
    }

    /// Reaches `nested::deep` from its parent.
    pub fn deep_name() -> &'static str {
        let _ = nested::deep::s(Default::default());
        nested::deep::name()
    }
}

/// A waker for futures that never wait (`Waker::noop` needs Rust 1.85).
struct NoWake;

impl Wake for NoWake {
    fn wake(self: Arc<Self>) {}
}

/// Runs a future that never waits.
fn now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let waker = Waker::from(Arc::new(NoWake));
    match future.as_mut().poll(&mut Context::from_waker(&waker)) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the task waited"),
    }
}

/// Runs the task of `signature` as the worker would, with the signature's arguments.
/// Returns the task's value as JSON text.
fn run<T>(registry: &Registry, signature: &Signature<T>) -> String {
    let task = registry.get(signature.task()).expect("task is registered");
    let args = TaskArgs::new(
        signature.task(),
        signature.args().to_vec(),
        signature.kwargs().clone(),
    );
    let context = TaskContext::detached(signature.task());
    let outcome = match task.runner {
        TaskRunner::Blocking(run) => run(context, args),
        TaskRunner::Async(run) => now(run(context, args)),
    };
    outcome.expect("task succeeded").to_string()
}

fn main() {
    // The functions are still plain functions.
    assert_eq!(tasks::add(2, 3), 5);
    assert_eq!(now(tasks::flaky(TaskContext::detached("t"), 4)).unwrap(), 8);
    assert_eq!(tasks::use_private().rows, Vec::<i64>::new());

    // Names follow the module path, or `name = "..."`.
    assert!(x::name().ends_with(".x"), "{}", x::name());
    assert!(!x::name().contains("::"));
    assert!(
        tasks::add::name().ends_with(".tasks.add"),
        "{}",
        tasks::add::name()
    );
    assert_eq!(tasks::build::name(), "reports.build");
    assert!(tasks::deep_name().ends_with(".tasks.nested.deep"));

    // Options.
    assert_eq!(tasks::send_welcome::OPTIONS.queue, Some("emails"));
    assert_eq!(tasks::send_welcome::OPTIONS.max_retries, Some(5));
    assert_eq!(tasks::flaky::OPTIONS.retry_backoff, Some(1.0));
    let build = tasks::build::OPTIONS;
    assert_eq!(build.queue, Some("reports"));
    assert_eq!(build.priority, Some(9));
    assert_eq!(build.max_retries, Some(0));
    assert_eq!(build.default_retry_delay, Some(2.0));
    assert_eq!(build.retry_backoff, Some(1.5));
    assert_eq!(build.retry_backoff_max, Some(60.0));
    assert_eq!(build.retry_jitter, Some(false));
    assert!(build.autoretry);
    assert_eq!(build.ignore_result, Some(false));
    assert_eq!(build.acks_late, Some(true));
    assert_eq!(build.time_limit, Some(30.0));
    assert_eq!(build.soft_time_limit, Some(20.5));
    assert_eq!(build.rate_limit, Some("10/s"));
    let collide = tasks::collide::OPTIONS;
    assert!(!collide.autoretry);
    assert_eq!(collide.ignore_result, Some(true));
    assert_eq!(collide.acks_late, Some(false));
    assert_eq!(collide.retry_backoff, None);
    assert_eq!(tasks::add::OPTIONS, celery_web::task::TaskOptions::DEFAULT);

    // Signatures carry the arguments (not the context) and the output type.
    let add: Signature<i64> = tasks::add::s(2, 3);
    assert_eq!(add.task(), tasks::add::name());
    assert_eq!(add.args().len(), 2);
    let _: Signature<()> = tasks::send_welcome::signature(1, "hi".to_owned());
    let flaky: Signature<i64> = tasks::flaky::s(21);
    assert_eq!(flaky.args().len(), 1);
    let _: Signature<&'static str> = tasks::bound_sync::s();
    let _: Signature<Report> = tasks::build::s(vec![3, 1, 2], None).countdown(5);
    let _: Signature<()> = x::s();
    // `delay` exists and is async (not run: there is no app here).
    drop(tasks::add::delay(1, 2));
    drop(tasks::send_welcome::delay(1, "hi".to_owned()));

    // The registry holds every task and runs it like the worker does.
    let registry = Registry::from_inventory().expect("registry");
    assert_eq!(run(&registry, &tasks::add::s(2, 3)), "5");
    assert_eq!(run(&registry, &tasks::flaky::s(21)), "42");
    assert_eq!(run(&registry, &tasks::bound_sync::s()), r#""done""#);
    assert_eq!(
        run(&registry, &tasks::send_welcome::s(1, "hi".to_owned())),
        "null"
    );
    assert_eq!(run(&registry, &x::s()), "null");
    let build = tasks::build::s(vec![3, 1, 2], Some("t".to_owned()));
    assert_eq!(run(&registry, &build), r#"{"rows":[1,2,3],"title":"t"}"#);
    let collide = tasks::collide::s("n".to_owned(), 1, vec![2], 3, "t".to_owned());
    assert_eq!(run(&registry, &collide), r#""n1[2]3t""#);
    assert!(registry.get(tasks::private_task_name()).is_some());
}
