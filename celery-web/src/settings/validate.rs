//! Checks of setting values beyond their types.

use std::fmt::Display;

use super::queues::EXCHANGE_TYPES;
use super::url::{masked_url, scheme, without_db_prefix};
use super::{keys, BrokerKind, DbKind, ResultBackendKind, Settings};
use crate::task::RateLimit;

/// Content types celery-web can encode and decode.
const JSON: &[&str] = &["json", "application/json"];

/// A setting whose value is wrong.
#[derive(Debug)]
pub(super) struct Invalid {
    /// The setting.
    pub(super) key: &'static str,
    /// What is wrong, for example `expected a positive integer, got 0`.
    pub(super) message: String,
}

impl Invalid {
    /// `expected <what the setting takes>, got <got>`.
    pub(super) fn expected(key: &'static str, got: impl Display) -> Invalid {
        Invalid {
            key,
            message: format!("expected {}, got {got}", keys::expected(key)),
        }
    }

    fn message(key: &'static str, message: String) -> Invalid {
        Invalid { key, message }
    }
}

/// A string as shown in messages: quoted, passwords masked, long text cut.
pub(super) fn shown(text: &str) -> String {
    cut(format!("{:?}", masked_url(text)))
}

/// A TOML value as shown in messages: strings as [`shown`], other values inline, passwords
/// masked, long text cut.
pub(super) fn shown_value(value: &toml::Value) -> String {
    match value {
        toml::Value::String(text) => shown(text),
        other => cut(masked_url(&other.to_string())),
    }
}

fn cut(text: String) -> String {
    if text.chars().count() > 120 {
        text.chars().take(117).collect::<String>() + "..."
    } else {
        text
    }
}

/// Checks every setting's value, stopping at the first problem (in field order).
pub(super) fn check(settings: &Settings) -> Result<(), Invalid> {
    broker_kind(&settings.broker_url)?;
    result_backend_kind(settings)?;
    if let Some(url) = &settings.database_url {
        if DbKind::of(url).is_none() {
            return Err(Invalid::expected("database_url", shown(url)));
        }
    }
    if settings.timezone.parse::<chrono_tz::Tz>().is_err() {
        return Err(Invalid::expected("timezone", shown(&settings.timezone)));
    }
    for key in ["task_serializer", "result_serializer"] {
        let value = match key {
            "task_serializer" => &settings.task_serializer,
            _ => &settings.result_serializer,
        };
        if !JSON.contains(&value.as_str()) {
            return Err(Invalid::message(
                key,
                format!(
                    "only \"json\" (or \"application/json\") is supported, got {}",
                    shown(value)
                ),
            ));
        }
    }
    if settings.accept_content.is_empty() {
        return Err(Invalid::message(
            "accept_content",
            "must list at least \"json\"".to_owned(),
        ));
    }
    if let Some(other) = settings
        .accept_content
        .iter()
        .find(|content| !JSON.contains(&content.as_str()))
    {
        return Err(Invalid::message(
            "accept_content",
            format!(
                "only \"json\" (or \"application/json\") is supported, got {}",
                shown(other)
            ),
        ));
    }
    if settings.task_default_queue.trim().is_empty() {
        return Err(Invalid::expected(
            "task_default_queue",
            shown(&settings.task_default_queue),
        ));
    }
    if let Some(priority) = settings.task_default_priority.filter(|&p| p > 9) {
        return Err(Invalid::expected("task_default_priority", priority));
    }
    if settings.task_queue_max_priority == Some(0) {
        return Err(Invalid::expected("task_queue_max_priority", 0));
    }
    for (key, value) in [
        ("task_default_queue_type", &settings.task_default_queue_type),
        (
            "broker_native_delayed_delivery_queue_type",
            &settings.broker_native_delayed_delivery_queue_type,
        ),
    ] {
        if value != "classic" && value != "quorum" {
            return Err(Invalid::expected(key, shown(value)));
        }
    }
    for (pattern, route) in &settings.task_routes {
        if pattern.is_empty() {
            return Err(Invalid::message(
                "task_routes",
                "a route has an empty task name".to_owned(),
            ));
        }
        if let Some(priority) = route.priority.filter(|&p| p > 9) {
            return Err(Invalid::message(
                "task_routes",
                format!(
                    "route {}: expected a priority from 0 to 9, got {priority}",
                    shown(pattern)
                ),
            ));
        }
        if route.queue.as_deref().is_some_and(|q| q.trim().is_empty()) {
            return Err(Invalid::message(
                "task_routes",
                format!("route {}: the queue name is empty", shown(pattern)),
            ));
        }
    }
    check_queues(settings)?;
    check_seconds("task_time_limit", settings.task_time_limit)?;
    check_seconds("task_soft_time_limit", settings.task_soft_time_limit)?;
    if let Some(limit) = &settings.task_default_rate_limit {
        RateLimit::parse(limit)
            .map_err(|message| Invalid::message("task_default_rate_limit", message))?;
    }
    if settings.worker_concurrency == Some(0) {
        return Err(Invalid::expected("worker_concurrency", 0));
    }
    if settings.worker_prefetch_multiplier == 0 {
        return Err(Invalid::expected("worker_prefetch_multiplier", 0));
    }
    if let Some(hostname) = &settings.worker_hostname {
        if hostname.trim().is_empty() {
            return Err(Invalid::expected("worker_hostname", shown(hostname)));
        }
    }
    // A message claimed with no visibility at all would be claimed again at once.
    if settings.visibility_timeout().is_zero() {
        return Err(Invalid::message(
            "broker_visibility_timeout",
            "must be at least 1 second: a claimed message comes back after it".to_owned(),
        ));
    }
    if let Some(timeout) = settings.broker_transport_options.get("visibility_timeout") {
        if transport_seconds(timeout).is_none() {
            return Err(Invalid::message(
                "broker_transport_options",
                format!(
                    "visibility_timeout: expected a whole number of seconds, got {}",
                    shown_value(timeout)
                ),
            ));
        }
    }
    if let Some((name, entry)) = settings
        .beat_schedule
        .iter()
        .find(|(_, entry)| !entry.is_table())
    {
        return Err(Invalid::message(
            "beat_schedule",
            format!(
                "entry {}: expected a table such as {{ task = \"proj.tasks.add\", schedule = 30 }}, got {}",
                shown(name),
                shown_value(entry)
            ),
        ));
    }
    if let Some(interval) = settings.beat_max_loop_interval {
        if !(interval.is_finite() && interval >= 0.0) {
            return Err(Invalid::expected("beat_max_loop_interval", interval));
        }
    }
    if let Some((user, _)) = settings
        .admin_users
        .iter()
        .find(|(_, hash)| !hash.starts_with("$argon2"))
    {
        return Err(Invalid::message(
            "admin_users",
            format!(
                "user {}: expected an Argon2 password hash (\"$argon2id$...\"), not a password; \
                 make one with `celery admin hash-password`",
                shown(user)
            ),
        ));
    }
    if let Some(key) = &settings.admin_secret_key {
        if key.chars().count() < 32 {
            return Err(Invalid::message(
                "admin_secret_key",
                format!(
                    "expected at least 32 characters, got {}",
                    key.chars().count()
                ),
            ));
        }
    }
    Ok(())
}

/// What the broker URL names. Each URL of a `;`-separated fail-over list is checked, and they
/// must all be Redis or all AMQP URLs.
pub(super) fn broker_kind(url: &str) -> Result<BrokerKind, Invalid> {
    let kinds = url
        .split(';')
        .map(|one| BrokerKind::of_one(one).ok_or_else(|| unknown_broker(url, one)))
        .collect::<Result<Vec<_>, _>>()?;
    let [first, rest @ ..] = kinds.as_slice() else {
        return Err(unknown_broker(url, url));
    };
    if rest.is_empty() {
        return Ok(first.clone());
    }
    let failover = matches!(first, BrokerKind::Redis { .. } | BrokerKind::Amqp { .. })
        && rest.iter().all(|kind| kind.name() == first.name());
    if !failover {
        return Err(Invalid::message(
            "broker_url",
            format!(
                "a fail-over list (URLs separated by `;`) must be all redis:// or all amqp:// \
                 URLs, got {}",
                shown(url)
            ),
        ));
    }
    let url = url.trim().to_owned();
    Ok(match first {
        BrokerKind::Redis { .. } => BrokerKind::Redis { url },
        _ => BrokerKind::Amqp { url },
    })
}

fn unknown_broker(url: &str, one: &str) -> Invalid {
    let hint = match scheme(one).as_deref() {
        Some("pyamqp" | "librabbitmq") => " (write amqp:// for RabbitMQ)",
        Some("postgresql+psycopg2" | "postgresql+psycopg" | "db+postgresql" | "db+sqlite") => {
            " (write the plain sqlite:// or postgres:// URL)"
        }
        _ => "",
    };
    Invalid::message(
        "broker_url",
        format!(
            "expected a URL with scheme sqlite://, postgres://, postgresql://, redis://, \
             rediss://, amqp://, amqps:// or memory://, got {}{hint}",
            shown(url)
        ),
    )
}

/// `task_queues` entries, and with `task_create_missing_queues = false`, that every queue a
/// route or `task_default_queue` names is declared.
fn check_queues(settings: &Settings) -> Result<(), Invalid> {
    for (index, queue) in settings.task_queues.iter().enumerate() {
        let entry = if queue.name.trim().is_empty() {
            format!("entry {}", index + 1)
        } else {
            format!("queue {}", shown(&queue.name))
        };
        if queue.name.trim().is_empty() {
            return Err(Invalid::message(
                "task_queues",
                format!("{entry}: the queue name is empty"),
            ));
        }
        if !EXCHANGE_TYPES.contains(&queue.exchange_type.as_str()) {
            return Err(Invalid::message(
                "task_queues",
                format!(
                    "{entry}: exchange_type must be one of direct, topic, fanout or headers, got {}",
                    shown(&queue.exchange_type)
                ),
            ));
        }
        if let Some(other) = settings.task_queues[..index]
            .iter()
            .find(|other| other.name == queue.name)
        {
            return Err(Invalid::message(
                "task_queues",
                format!(
                    "{entry} is declared twice: keep one entry for {}",
                    shown(&other.name)
                ),
            ));
        }
    }
    if settings.task_create_missing_queues || settings.task_queues.is_empty() {
        return Ok(());
    }
    let declared = |name: &str| settings.task_queues.iter().any(|q| q.name == name);
    if !declared(&settings.task_default_queue) {
        return Err(Invalid::message(
            "task_default_queue",
            format!(
                "queue {} is not among task_queues and task_create_missing_queues is false: \
                 declare it in task_queues or set task_create_missing_queues = true",
                shown(&settings.task_default_queue)
            ),
        ));
    }
    for (pattern, route) in &settings.task_routes {
        if let Some(queue) = route.queue.as_deref().filter(|q| !declared(q)) {
            return Err(Invalid::message(
                "task_routes",
                format!(
                    "route {}: queue {} is not among task_queues and task_create_missing_queues \
                     is false: declare it in task_queues or set task_create_missing_queues = true",
                    shown(pattern),
                    shown(queue)
                ),
            ));
        }
    }
    Ok(())
}

fn check_seconds(key: &'static str, seconds: Option<f64>) -> Result<(), Invalid> {
    match seconds {
        Some(s) if !(s.is_finite() && s > 0.0) => Err(Invalid::expected(key, s)),
        _ => Ok(()),
    }
}

/// A `broker_transport_options` number of seconds, if it is one.
pub(super) fn transport_seconds(value: &toml::Value) -> Option<std::time::Duration> {
    let seconds = match value {
        toml::Value::Integer(i) => u64::try_from(*i).ok()? as f64,
        toml::Value::Float(f) if f.is_finite() && *f >= 0.0 => *f,
        _ => return None,
    };
    std::time::Duration::try_from_secs_f64(seconds).ok()
}

/// Resolves the `result_backend` string.
pub(super) fn result_backend_kind(settings: &Settings) -> Result<ResultBackendKind, Invalid> {
    let value = settings.result_backend.trim();
    let kind = match value.to_ascii_lowercase().as_str() {
        "db" | "database" | "django-db" => ResultBackendKind::Database {
            url: settings.database_url(),
        },
        "disabled" => ResultBackendKind::Disabled,
        "memory" | "memory://" => ResultBackendKind::Memory,
        _ if DbKind::of(value).is_some() => ResultBackendKind::Database {
            url: without_db_prefix(value).to_owned(),
        },
        _ if matches!(scheme(value).as_deref(), Some("redis" | "rediss")) => {
            ResultBackendKind::Redis {
                url: value.to_owned(),
            }
        }
        _ => {
            return Err(Invalid::expected(
                "result_backend",
                shown(&settings.result_backend),
            ))
        }
    };
    Ok(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_seconds_are_non_negative_numbers() {
        use std::time::Duration;
        assert_eq!(
            transport_seconds(&toml::Value::Integer(60)),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            transport_seconds(&toml::Value::Float(1.5)),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(transport_seconds(&toml::Value::Integer(-1)), None);
        assert_eq!(transport_seconds(&toml::Value::String("60".into())), None);
    }

    #[test]
    fn shown_values_are_quoted_masked_and_short() {
        assert_eq!(shown("eight"), "\"eight\"");
        assert_eq!(shown("redis://:pw@h"), "\"redis://:***@h\"");
        assert_eq!(shown(&"x".repeat(500)).chars().count(), 120);
    }
}
