//! Parsing the options of `#[task(...)]`.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Lit, LitStr, Meta, Path, Token, UnOp};

/// Every key `#[task(...)]` accepts, in the order the error message lists them.
pub(crate) const VALID_KEYS: &[&str] = &[
    "name",
    "queue",
    "priority",
    "max_retries",
    "default_retry_delay",
    "retry_backoff",
    "retry_backoff_max",
    "retry_jitter",
    "autoretry",
    "ignore_result",
    "acks_late",
    "time_limit",
    "soft_time_limit",
    "rate_limit",
    "bind",
    "crate",
];

/// Keys people may bring from Python Celery or other crates, with the spelling to use here.
const RENAMED_KEYS: &[(&str, &str)] = &[
    (
        "serializer",
        "(none: arguments and results are always JSON)",
    ),
    ("autoretry_for", "autoretry"),
    ("retry_kwargs", "max_retries"),
    ("routing_key", "queue"),
    ("bound", "bind"),
    ("backoff", "retry_backoff"),
    ("jitter", "retry_jitter"),
    ("soft_timeout", "soft_time_limit"),
    ("timeout", "time_limit"),
    ("ack_late", "acks_late"),
    ("retries", "max_retries"),
    ("krate", "crate"),
];

/// The options given to `#[task(...)]`, checked. Values are what ends up in `TaskOptions`.
#[derive(Default)]
pub(crate) struct TaskAttr {
    /// `name = "..."`: the explicit wire name.
    pub(crate) name: Option<LitStr>,
    /// `queue = "..."`.
    pub(crate) queue: Option<LitStr>,
    /// `priority = 0..=9`.
    pub(crate) priority: Option<u8>,
    /// `max_retries = n`.
    pub(crate) max_retries: Option<u32>,
    /// `default_retry_delay = seconds`.
    pub(crate) default_retry_delay: Option<f64>,
    /// `retry_backoff = bool | factor`: `Some(None)` when given as `false`.
    pub(crate) retry_backoff: Option<Option<f64>>,
    /// `retry_backoff_max = seconds`.
    pub(crate) retry_backoff_max: Option<f64>,
    /// `retry_jitter = bool`.
    pub(crate) retry_jitter: Option<bool>,
    /// `autoretry` or `autoretry = bool`.
    pub(crate) autoretry: Option<bool>,
    /// `ignore_result` or `ignore_result = bool`.
    pub(crate) ignore_result: Option<bool>,
    /// `acks_late` or `acks_late = bool`.
    pub(crate) acks_late: Option<bool>,
    /// `time_limit = seconds`.
    pub(crate) time_limit: Option<f64>,
    /// `soft_time_limit = seconds`.
    pub(crate) soft_time_limit: Option<f64>,
    /// `rate_limit = "10/s"`.
    pub(crate) rate_limit: Option<LitStr>,
    /// `bind`: the first parameter is the `TaskContext`. Holds the `bind` token for spans.
    pub(crate) bind: Option<Path>,
    /// `crate = "path"`.
    pub(crate) krate: Option<Path>,
}

impl TaskAttr {
    /// Parses the tokens between the parentheses of `#[task(...)]`.
    pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Self> {
        let metas = Punctuated::<Meta, Token![,]>::parse_terminated.parse2(tokens)?;
        let mut attr = TaskAttr::default();
        let mut errors: Option<syn::Error> = None;
        for meta in metas {
            if let Err(error) = attr.apply(&meta) {
                match &mut errors {
                    Some(all) => all.combine(error),
                    None => errors = Some(error),
                }
            }
        }
        match errors {
            Some(error) => Err(error),
            None => Ok(attr),
        }
    }

    /// The path generated code starts from: `crate = "..."` or `::celery_web`.
    pub(crate) fn crate_path(&self) -> TokenStream {
        match &self.krate {
            Some(path) => path.to_token_stream(),
            None => quote::quote!(::celery_web),
        }
    }

    fn apply(&mut self, meta: &Meta) -> syn::Result<()> {
        let path = meta.path();
        let Some(key) = path.get_ident().map(|ident| ident.to_string()) else {
            return Err(unknown_key(path, &path.to_token_stream().to_string()));
        };
        match key.as_str() {
            "name" => {
                let value = string(meta, &key)?;
                if value.value().trim().is_empty() {
                    return Err(syn::Error::new_spanned(&value, "`name` must not be empty"));
                }
                set(&mut self.name, value, path, &key)
            }
            "queue" => {
                let value = string(meta, &key)?;
                if value.value().trim().is_empty() {
                    return Err(syn::Error::new_spanned(&value, "`queue` must not be empty"));
                }
                set(&mut self.queue, value, path, &key)
            }
            "priority" => {
                let (value, expr) = integer(meta, &key)?;
                let priority = u8::try_from(value)
                    .ok()
                    .filter(|priority| *priority <= 9)
                    .ok_or_else(|| {
                        syn::Error::new_spanned(
                            expr,
                            format!("`priority` must be 0 (lowest) to 9 (highest), got {value}"),
                        )
                    })?;
                set(&mut self.priority, priority, path, &key)
            }
            "max_retries" => {
                let (value, expr) = integer(meta, &key)?;
                let max = u32::try_from(value).map_err(|_| {
                    syn::Error::new_spanned(
                        expr,
                        format!("`max_retries` must be 0 to {}, got {value}", u32::MAX),
                    )
                })?;
                set(&mut self.max_retries, max, path, &key)
            }
            "default_retry_delay" => {
                let value = seconds(meta, &key, false)?;
                set(&mut self.default_retry_delay, value, path, &key)
            }
            "retry_backoff" => {
                let expr = value_of(meta, &key, "`true`, `false` or a factor in seconds")?;
                let factor = match literal(expr) {
                    Some(Lit::Bool(flag)) => flag.value.then_some(1.0),
                    _ => Some(seconds(meta, &key, false)?),
                };
                set(&mut self.retry_backoff, factor, path, &key)
            }
            "retry_backoff_max" => {
                let value = seconds(meta, &key, false)?;
                set(&mut self.retry_backoff_max, value, path, &key)
            }
            "retry_jitter" => {
                let value = boolean(meta, &key, false)?;
                set(&mut self.retry_jitter, value, path, &key)
            }
            "autoretry" => {
                let value = boolean(meta, &key, true)?;
                set(&mut self.autoretry, value, path, &key)
            }
            "ignore_result" => {
                let value = boolean(meta, &key, true)?;
                set(&mut self.ignore_result, value, path, &key)
            }
            "acks_late" => {
                let value = boolean(meta, &key, true)?;
                set(&mut self.acks_late, value, path, &key)
            }
            "time_limit" => {
                let value = seconds(meta, &key, true)?;
                set(&mut self.time_limit, value, path, &key)
            }
            "soft_time_limit" => {
                let value = seconds(meta, &key, true)?;
                set(&mut self.soft_time_limit, value, path, &key)
            }
            "rate_limit" => {
                let value = string(meta, &key)?;
                set(&mut self.rate_limit, value, path, &key)
            }
            "bind" => match meta {
                Meta::Path(path) => set(&mut self.bind, path.clone(), path, &key),
                _ => Err(syn::Error::new_spanned(
                    meta,
                    "`bind` takes no value: write `#[task(bind)]`",
                )),
            },
            "crate" => {
                let expr = value_of(
                    meta,
                    &key,
                    "a path in a string, like `crate = \"my_celery\"`",
                )?;
                let krate = match expr {
                    Expr::Lit(ExprLit {
                        lit: Lit::Str(text),
                        ..
                    }) => text.parse::<Path>().map_err(|_| {
                        syn::Error::new_spanned(
                            text,
                            "`crate` must name a path, like `crate = \"my_celery\"`",
                        )
                    })?,
                    Expr::Path(expr) if expr.qself.is_none() => expr.path.clone(),
                    other => {
                        return Err(syn::Error::new_spanned(
                            other,
                            "`crate` expects a path in a string, like `crate = \"my_celery\"`",
                        ))
                    }
                };
                set(&mut self.krate, krate, path, &key)
            }
            _ => Err(unknown_key(path, &key)),
        }
    }
}

fn unknown_key(path: &Path, key: &str) -> syn::Error {
    let valid = VALID_KEYS
        .iter()
        .map(|key| format!("`{key}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let hint = RENAMED_KEYS
        .iter()
        .find(|(old, _)| *old == key)
        .map(|(_, new)| {
            if new.starts_with('(') {
                format!("; `{key}` has no equivalent here {new}")
            } else {
                format!("; did you mean `{new}`?")
            }
        })
        .unwrap_or_default();
    syn::Error::new_spanned(
        path,
        format!("unknown `#[task]` option `{key}`, expected one of: {valid}{hint}"),
    )
}

/// Stores `value` unless the key was already given.
fn set<T>(slot: &mut Option<T>, value: T, path: &Path, key: &str) -> syn::Result<()> {
    if slot.is_some() {
        return Err(syn::Error::new_spanned(
            path,
            format!("`{key}` specified more than once"),
        ));
    }
    *slot = Some(value);
    Ok(())
}

/// The value of `key = value`, or an error saying what `key` expects.
fn value_of<'a>(meta: &'a Meta, key: &str, expected: &str) -> syn::Result<&'a Expr> {
    match meta {
        Meta::NameValue(pair) => Ok(&pair.value),
        Meta::Path(path) => Err(syn::Error::new_spanned(
            path,
            format!("`{key}` needs a value: {expected}"),
        )),
        Meta::List(list) => Err(syn::Error::new_spanned(
            list,
            format!("`{key}` is written `{key} = ...`, with {expected}"),
        )),
    }
}

/// The literal of an expression, seeing through invisible groups (from `macro_rules!`).
fn literal(expr: &Expr) -> Option<&Lit> {
    match expr {
        Expr::Lit(ExprLit { lit, .. }) => Some(lit),
        Expr::Group(group) => literal(&group.expr),
        _ => None,
    }
}

fn string(meta: &Meta, key: &str) -> syn::Result<LitStr> {
    let expr = value_of(meta, key, "a string")?;
    match literal(expr) {
        Some(Lit::Str(text)) => Ok(text.clone()),
        _ => Err(syn::Error::new_spanned(
            expr,
            format!("`{key}` expects a string, like `{key} = \"...\"`"),
        )),
    }
}

/// A bare `key` (true, when `flag_allowed`) or `key = true|false`.
fn boolean(meta: &Meta, key: &str, flag_allowed: bool) -> syn::Result<bool> {
    if flag_allowed {
        if let Meta::Path(_) = meta {
            return Ok(true);
        }
    }
    let expr = value_of(meta, key, "`true` or `false`")?;
    match literal(expr) {
        Some(Lit::Bool(flag)) => Ok(flag.value),
        _ => Err(syn::Error::new_spanned(
            expr,
            format!("`{key}` expects `true` or `false`"),
        )),
    }
}

/// An integer, possibly negated so that the range error can say what was given.
fn integer<'a>(meta: &'a Meta, key: &str) -> syn::Result<(i128, &'a Expr)> {
    let expr = value_of(meta, key, "an integer")?;
    let (negative, inner) = match expr {
        Expr::Unary(unary) if matches!(unary.op, UnOp::Neg(_)) => (true, &*unary.expr),
        other => (false, other),
    };
    match literal(inner) {
        Some(Lit::Int(int)) => {
            let value = int
                .base10_parse::<i128>()
                .map_err(|_| syn::Error::new_spanned(expr, format!("`{key}` is out of range")))?;
            Ok((if negative { -value } else { value }, expr))
        }
        _ => Err(syn::Error::new_spanned(
            expr,
            format!("`{key}` expects an integer, like `{key} = 3`"),
        )),
    }
}

/// A number of seconds, integer or float: finite, not negative, and not zero when
/// `positive`.
fn seconds(meta: &Meta, key: &str, positive: bool) -> syn::Result<f64> {
    let expr = value_of(meta, key, "a number of seconds")?;
    let (negative, inner) = match expr {
        Expr::Unary(unary) if matches!(unary.op, UnOp::Neg(_)) => (true, &*unary.expr),
        other => (false, other),
    };
    let value = match literal(inner) {
        Some(Lit::Int(int)) => int.base10_parse::<f64>()?,
        Some(Lit::Float(float)) => float.base10_parse::<f64>()?,
        _ => {
            return Err(syn::Error::new_spanned(
                expr,
                format!("`{key}` expects a number of seconds, like `{key} = 30` or `{key} = 0.5`"),
            ))
        }
    };
    let value = if negative { -value } else { value };
    if !value.is_finite() || value < 0.0 || (positive && value == 0.0) {
        let bound = if positive {
            "greater than 0"
        } else {
            "0 or more"
        };
        return Err(syn::Error::new_spanned(
            expr,
            format!("`{key}` must be a number of seconds {bound}"),
        ));
    }
    Ok(value)
}
