//! The task registry, built from every `#[task]` linked into the binary.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use serde_json::Value;

use super::{RateLimit, TaskArgs, TaskContext, TaskError, TaskOptions};
use crate::{Error, Result};

/// A boxed future that can move between threads.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How a task's body is called.
#[derive(Clone, Copy)]
pub enum TaskRunner {
    /// An `async fn`: runs on the tokio runtime.
    Async(fn(TaskContext, TaskArgs) -> BoxFuture<'static, Result<Value, TaskError>>),
    /// A plain `fn`: runs on the blocking pool so it never stalls the reactor.
    Blocking(fn(TaskContext, TaskArgs) -> Result<Value, TaskError>),
}

impl std::fmt::Debug for TaskRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TaskRunner::Async(_) => "TaskRunner::Async",
            TaskRunner::Blocking(_) => "TaskRunner::Blocking",
        })
    }
}

/// One task as `#[task]` submits it to the registry (through `inventory`).
#[derive(Debug)]
pub struct TaskRegistration {
    /// `name = "..."` from the attribute, if given.
    pub name: Option<&'static str>,
    /// `module_path!()` of the module `#[task]` generates, which ends with the function name.
    pub module_path: &'static str,
    /// The attribute's options.
    pub options: TaskOptions,
    /// The body.
    pub runner: TaskRunner,
}

inventory::collect!(TaskRegistration);

impl TaskRegistration {
    /// The task's wire name: `name = "..."` or Celery's rule, the module path joined with dots
    /// (`example_site::accounts::tasks::send_welcome_email` →
    /// `example_site.accounts.tasks.send_welcome_email`).
    pub fn task_name(&self) -> String {
        task_name(self.module_path, self.name)
    }
}

/// Celery's default task name for a task generated at `module_path`.
///
/// ```
/// assert_eq!(celery_web::task::task_name("site::accounts::add", None), "site.accounts.add");
/// assert_eq!(celery_web::task::task_name("site::accounts::add", Some("math.add")), "math.add");
/// ```
pub fn task_name(module_path: &str, explicit: Option<&str>) -> String {
    match explicit {
        Some(name) => name.to_owned(),
        None => module_path.replace("::", "."),
    }
}

/// A registered task with its options checked.
#[derive(Debug, Clone)]
pub struct RegisteredTask {
    /// Wire name.
    pub name: String,
    /// Options from the attribute.
    pub options: TaskOptions,
    /// Parsed `rate_limit` ([`RateLimit::UNLIMITED`] for `"0"`, which also overrides
    /// `task_default_rate_limit`, as in Celery).
    pub rate_limit: Option<RateLimit>,
    /// The body.
    pub runner: TaskRunner,
}

/// Every task this binary can run, by name.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    tasks: BTreeMap<String, RegisteredTask>,
}

impl Registry {
    /// Builds the registry from every `#[task]` linked into the binary.
    ///
    /// Two tasks with one name, or a bad option value, is an [`Error::Registry`] that says
    /// where to look.
    pub fn from_inventory() -> Result<Self> {
        Self::from_registrations(inventory::iter::<TaskRegistration>)
    }

    /// Builds a registry from explicit registrations.
    pub fn from_registrations<'a>(
        registrations: impl IntoIterator<Item = &'a TaskRegistration>,
    ) -> Result<Self> {
        let mut tasks: BTreeMap<String, RegisteredTask> = BTreeMap::new();
        let mut origins: BTreeMap<String, &'static str> = BTreeMap::new();
        for registration in registrations {
            let name = registration.task_name();
            if let Some(first) = origins.get(&name) {
                return Err(Error::Registry(format!(
                    "two tasks are registered as `{name}` (in `{first}` and `{}`); give one of \
                     them another name with #[task(name = \"...\")]",
                    registration.module_path
                )));
            }
            let rate_limit = registration
                .options
                .rate_limit
                .map(|text| {
                    RateLimit::parse(text)
                        .map_err(|e| Error::Registry(format!("task `{name}`: rate_limit: {e}")))
                })
                .transpose()?;
            if let Some(priority) = registration.options.priority {
                if priority > 9 {
                    return Err(Error::Registry(format!(
                        "task `{name}`: priority must be 0..=9, got {priority}"
                    )));
                }
            }
            origins.insert(name.clone(), registration.module_path);
            tasks.insert(
                name.clone(),
                RegisteredTask {
                    name,
                    options: registration.options,
                    rate_limit,
                    runner: registration.runner,
                },
            );
        }
        Ok(Registry { tasks })
    }

    /// The task called `name`.
    pub fn get(&self, name: &str) -> Option<&RegisteredTask> {
        self.tasks.get(name)
    }

    /// Task names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tasks.keys().map(String::as_str)
    }

    /// Number of tasks.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether no task is registered.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(_: TaskContext, _: TaskArgs) -> Result<Value, TaskError> {
        Ok(Value::Null)
    }

    fn registration(module_path: &'static str, name: Option<&'static str>) -> TaskRegistration {
        TaskRegistration {
            name,
            module_path,
            options: TaskOptions::DEFAULT,
            runner: TaskRunner::Blocking(body),
        }
    }

    #[test]
    fn duplicate_names_say_where_and_what_to_do() {
        let first = registration("site::accounts::send", None);
        let second = registration("site::mail::send", Some("site.accounts.send"));
        let error = Registry::from_registrations([&first, &second]).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("`site.accounts.send`"), "{message}");
        assert!(message.contains("site::accounts::send") && message.contains("site::mail::send"));
        assert!(message.contains("#[task(name = \"...\")]"), "{message}");
    }

    #[test]
    fn bad_options_are_startup_errors() {
        let mut limited = registration("site::a", None);
        limited.options.rate_limit = Some("fast");
        let message = Registry::from_registrations([&limited])
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("site.a") && message.contains("rate_limit"),
            "{message}"
        );
        let mut urgent = registration("site::b", None);
        urgent.options.priority = Some(12);
        let message = Registry::from_registrations([&urgent])
            .unwrap_err()
            .to_string();
        assert!(message.contains("priority must be 0..=9"), "{message}");
    }

    #[test]
    fn rate_limits_use_celery_rules() {
        let mut zero = registration("site::zero", None);
        zero.options.rate_limit = Some("0");
        let mut fast = registration("site::fast", None);
        fast.options.rate_limit = Some("10/s");
        let registry = Registry::from_registrations([&zero, &fast]).unwrap();
        // "0" is an explicit "no limit", which beats task_default_rate_limit.
        assert_eq!(
            registry.get("site.zero").unwrap().rate_limit,
            Some(RateLimit::UNLIMITED)
        );
        assert_eq!(
            registry.get("site.fast").unwrap().rate_limit,
            Some(RateLimit::parse("10/s").unwrap())
        );
    }

    #[test]
    fn names_follow_celery() {
        let registry = Registry::from_registrations([
            &registration("site::accounts::tasks::send", None),
            &registration("site::x", Some("tasks.add")),
        ])
        .unwrap();
        let names: Vec<&str> = registry.names().collect();
        assert_eq!(names, ["site.accounts.tasks.send", "tasks.add"]);
    }
}
