//! The `#[task]` attribute of [celery-web](https://docs.rs/celery-web).
//!
//! Use it through `celery_web::task` (or `celery_web::prelude::*`); this crate only generates
//! code, which reaches the runtime through `celery_web::__private`. The API of this crate is
//! not meant for direct use.

mod attr;
mod expand;

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;

/// Turns a function into a Celery task.
///
/// The function stays as it is, so it can still be called directly. Next to it, `#[task]`
/// generates a module with the same name (modules and functions live in different namespaces)
/// holding:
///
/// - `delay(args...)`: sends the task with default options through the installed app and
///   returns its `AsyncResult`;
/// - `s(args...)` (and its alias `signature`): a `Signature` to set call options on
///   (`countdown`, `queue`, `priority`, ...) before `apply_async`;
/// - `name()`: the task's wire name, by default the function's module path joined with dots
///   (`my_site::accounts::tasks::send_welcome` → `my_site.accounts.tasks.send_welcome`), as
///   Python Celery names tasks;
/// - `OPTIONS`: the options below, as a `TaskOptions` constant.
///
/// The task is registered at link time: every `#[task]` in the binary is known to
/// `Celery` and to the worker without being listed anywhere.
///
/// ```no_run
/// use celery_web::prelude::*;
///
/// #[task(queue = "emails", max_retries = 5, retry_backoff = true)]
/// pub async fn send_welcome(user_id: i64, note: String) -> TaskResult<()> {
///     println!("welcome {user_id}: {note}");
///     Ok(())
/// }
///
/// /// A blocking task runs on the worker's blocking pool.
/// #[task(bind, name = "math.add")]
/// fn add(ctx: TaskContext, x: i64, y: i64) -> i64 {
///     println!("{} try {}", ctx.id(), ctx.retries());
///     x + y
/// }
///
/// async fn handler() -> celery_web::Result<()> {
///     // The function itself:
///     assert_eq!(add(TaskContext::detached("math.add"), 2, 3), 5);
///     // The task, through the queue:
///     send_welcome::delay(42, "hello".to_owned()).await?;
///     let sum = add::s(2, 3).countdown(10).apply_async().await?;
///     let value: i64 = sum.get(std::time::Duration::from_secs(30)).await?;
///     assert_eq!(value, 5);
///     assert_eq!(add::name(), "math.add");
///     Ok(())
/// }
/// # fn main() {}
/// ```
///
/// # The function
///
/// - It may be `async` (run on the worker's tokio runtime) or not (run on the blocking pool).
/// - Its parameters are the task's arguments. They travel as JSON, so each must be an owned
///   type implementing serde's `Serialize` and `DeserializeOwned` (no references, no
///   `impl Trait`), and each must be a plain name (`user_id: i64` or `mut user_id: i64`):
///   the name is also the keyword argument Python callers may use. Missing arguments are
///   accepted for `Option<T>` parameters.
/// - It returns nothing, a serializable `T`, or `Result<T, E>` / `TaskResult<T>` where
///   `TaskError: From<E>` (any `std::error::Error` converts). The last path segment decides:
///   a return type named `Result` or `TaskResult` is a result whose `Ok` type is the value.
/// - It cannot be generic, `unsafe`, variadic, or a method, and it must be declared at module
///   level (the generated module reaches it as `super::name`), not inside a function body.
///
/// Mistakes are reported on the offending token, and the function is still emitted so that
/// its callers keep compiling:
///
/// ```compile_fail
/// use celery_web::prelude::*;
///
/// // error: task arguments travel as JSON and must be owned serde types
/// #[task]
/// fn greet(name: &str) -> String {
///     format!("hello {name}")
/// }
/// # fn main() {}
/// ```
///
/// # Options
///
/// Each may be given once:
///
/// | option | value | meaning |
/// |---|---|---|
/// | `name` | string | wire name instead of the module path |
/// | `queue` | string | default queue |
/// | `priority` | 0 to 9 | default priority |
/// | `max_retries` | integer | retries before FAILURE (default 3) |
/// | `default_retry_delay` | seconds | delay before a retry without backoff (default 180) |
/// | `retry_backoff` | `true`, `false` or seconds | exponential backoff factor (`true` = 1) |
/// | `retry_backoff_max` | seconds | cap of the backoff (default 600) |
/// | `retry_jitter` | `true` / `false` | full jitter on backoff delays (default true) |
/// | `autoretry` | flag or bool | retry on any `Err` |
/// | `ignore_result` | flag or bool | do not store the result |
/// | `acks_late` | flag or bool | acknowledge after running rather than before |
/// | `time_limit` | seconds | hard time limit |
/// | `soft_time_limit` | seconds | soft time limit, seen through the `TaskContext` |
/// | `rate_limit` | string | `"10/s"`, `"100/m"`, `"5/h"`; checked when the app starts |
/// | `bind` | flag | the first parameter receives the `TaskContext` and is not an argument |
/// | `crate` | string | path of celery-web when it is renamed, like `crate = "celery"` |
///
/// Set `CELERY_WEB_MACROS_DEBUG=1` while building to print every expansion to stderr.
#[proc_macro_attribute]
pub fn task(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand_attr(attr.into(), item.into()).into()
}

/// Parses the item, expands it, and on error returns the item unchanged plus the error, so that
/// code calling the function keeps compiling and only the real problem is reported.
fn expand_attr(attr: TokenStream2, item: TokenStream2) -> TokenStream2 {
    let result = match syn::parse2::<syn::Item>(item.clone()) {
        Ok(syn::Item::Fn(function)) => expand::expand(attr, function),
        Ok(other) => Err(syn::Error::new_spanned(
            other,
            "`#[task]` goes on a function, like `#[task] async fn send_email(to: String)`",
        )),
        Err(error) => Err(error),
    };
    let expanded = match result {
        Ok(expanded) => expanded,
        Err(error) => {
            let mut tokens = item;
            tokens.extend(error.into_compile_error());
            tokens
        }
    };
    if std::env::var_os("CELERY_WEB_MACROS_DEBUG").is_some_and(|value| value == "1") {
        eprintln!("{expanded}");
    }
    expanded
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::expand_attr;

    #[test]
    fn errors_keep_the_function() {
        let item = quote!(
            fn greet(name: &str) {}
        );
        let out = expand_attr(quote!(), item.clone()).to_string();
        assert!(out.starts_with(&item.to_string()), "{out}");
        assert!(out.contains("compile_error"), "{out}");
        assert!(out.contains("must be owned serde types"), "{out}");
        assert!(!out.contains("mod greet"), "{out}");

        let out = expand_attr(
            quote!(queue = 1),
            quote!(
                fn t() {}
            ),
        )
        .to_string();
        assert!(out.starts_with("fn t () { }"), "{out}");
        assert!(out.contains("`queue` expects a string"), "{out}");
    }

    #[test]
    fn only_functions() {
        let out = expand_attr(
            quote!(),
            quote!(
                struct S;
            ),
        )
        .to_string();
        assert!(out.starts_with("struct S ;"), "{out}");
        assert!(out.contains("`#[task]` goes on a function"), "{out}");
    }

    #[test]
    fn success_has_the_module() {
        let out = expand_attr(
            quote!(),
            quote!(
                fn t() {}
            ),
        )
        .to_string();
        assert!(out.contains("mod t"), "{out}");
        assert!(!out.contains("compile_error"), "{out}");
    }
}
