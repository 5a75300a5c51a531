//! Setting names: the settings celery-web knows, the Celery 3 / Django spellings it accepts,
//! and "did you mean" suggestions for typos.

/// One setting, with the type it expects as said in error messages.
#[derive(Debug)]
pub(super) struct Known {
    /// Celery's (lower-case) name, which is also the [`Settings`](super::Settings) field.
    pub(super) name: &'static str,
    /// What a value must be, completing "expected ...".
    pub(super) expected: &'static str,
}

const BOOLEAN: &str = "a boolean (true or false)";
const SECONDS: &str = "a positive number of seconds";

/// Every setting, in the order of the [`Settings`](super::Settings) fields.
pub(super) const KNOWN: &[Known] = &[
    Known {
        name: "broker_url",
        expected: "a broker URL string such as \"sqlite://celery.sqlite3\"",
    },
    Known {
        name: "result_backend",
        expected: "a string: db, disabled, memory:// or a sqlite://, postgres:// or redis:// URL",
    },
    Known {
        name: "database_url",
        expected: "a sqlite:// or postgres:// URL string",
    },
    Known {
        name: "timezone",
        expected: "a time zone name string such as \"UTC\" or \"Europe/Paris\"",
    },
    Known {
        name: "enable_utc",
        expected: BOOLEAN,
    },
    Known {
        name: "task_serializer",
        expected: "\"json\"",
    },
    Known {
        name: "result_serializer",
        expected: "\"json\"",
    },
    Known {
        name: "accept_content",
        expected: "an array of content types such as [\"json\"]",
    },
    Known {
        name: "result_expires",
        expected: "a whole number of seconds (0 disables expiry)",
    },
    Known {
        name: "result_extended",
        expected: BOOLEAN,
    },
    Known {
        name: "task_track_started",
        expected: BOOLEAN,
    },
    Known {
        name: "task_always_eager",
        expected: BOOLEAN,
    },
    Known {
        name: "task_eager_propagates",
        expected: BOOLEAN,
    },
    Known {
        name: "task_store_eager_result",
        expected: BOOLEAN,
    },
    Known {
        name: "task_ignore_result",
        expected: BOOLEAN,
    },
    Known {
        name: "task_acks_late",
        expected: BOOLEAN,
    },
    Known {
        name: "task_reject_on_worker_lost",
        expected: BOOLEAN,
    },
    Known {
        name: "task_default_queue",
        expected: "a queue name string",
    },
    Known {
        name: "task_default_priority",
        expected: "an integer priority from 0 to 9",
    },
    Known {
        name: "task_routes",
        expected: "a table mapping task names (or globs with `*`) to a queue name or to \
                   { queue = \"...\", priority = N }; quote names that contain dots: \
                   \"proj.tasks.add\" = \"math\"",
    },
    Known {
        name: "task_queues",
        expected: "an array of queue tables such as [{ name = \"celery\" }, { name = \"mail\", \
                   exchange_type = \"topic\", routing_key = \"mail.#\" }]",
    },
    Known {
        name: "task_create_missing_queues",
        expected: BOOLEAN,
    },
    Known {
        name: "task_queue_max_priority",
        expected: "an integer priority from 1 to 255 (RabbitMQ's x-max-priority)",
    },
    Known {
        name: "task_default_queue_type",
        expected: "\"classic\" or \"quorum\"",
    },
    Known {
        name: "broker_native_delayed_delivery_queue_type",
        expected: "\"classic\" or \"quorum\"",
    },
    Known {
        name: "task_time_limit",
        expected: SECONDS,
    },
    Known {
        name: "task_soft_time_limit",
        expected: SECONDS,
    },
    Known {
        name: "task_default_rate_limit",
        expected: "a rate limit string such as \"10/s\", \"100/m\" or \"1000/h\" (\"0\" for no \
                   limit)",
    },
    Known {
        name: "worker_disable_rate_limits",
        expected: BOOLEAN,
    },
    Known {
        name: "worker_concurrency",
        expected: "a positive integer",
    },
    Known {
        name: "worker_prefetch_multiplier",
        expected: "a positive integer",
    },
    Known {
        name: "worker_max_tasks_per_child",
        expected: "a whole number of tasks (0 means no limit)",
    },
    Known {
        name: "worker_max_memory_per_child",
        expected: "a whole number of KiB (0 means no limit)",
    },
    Known {
        name: "worker_send_task_events",
        expected: BOOLEAN,
    },
    Known {
        name: "task_send_sent_event",
        expected: BOOLEAN,
    },
    Known {
        name: "worker_hostname",
        expected: "a node name string such as \"worker1@%h\"",
    },
    Known {
        name: "broker_visibility_timeout",
        expected: "a whole number of seconds",
    },
    Known {
        name: "broker_transport_options",
        expected: "a table of transport options such as { visibility_timeout = 3600 }",
    },
    Known {
        name: "broker_pool_limit",
        expected: "a whole number of connections",
    },
    Known {
        name: "beat_schedule",
        expected: "a table of schedule entries, each a table",
    },
    Known {
        name: "beat_max_loop_interval",
        expected: "a non-negative number of seconds",
    },
    Known {
        name: "admin_users",
        expected: "a table of user name = Argon2 password hash (from `celery admin hash-password`)",
    },
    Known {
        name: "admin_secret_key",
        expected: "a string of at least 32 characters",
    },
];

/// Celery 3 (and Django-era) upper-case names, with the setting each became.
///
/// The first six are also `CELERY_` + the new name, so they read as the Django-style spelling of
/// the new name (no deprecation warning); the table still lists them for completeness.
pub(super) const LEGACY: &[(&str, &str)] = &[
    ("CELERY_RESULT_BACKEND", "result_backend"),
    ("CELERY_TIMEZONE", "timezone"),
    ("CELERY_ENABLE_UTC", "enable_utc"),
    ("CELERY_TASK_SERIALIZER", "task_serializer"),
    ("CELERY_RESULT_SERIALIZER", "result_serializer"),
    ("CELERY_ACCEPT_CONTENT", "accept_content"),
    ("BROKER_URL", "broker_url"),
    ("CELERY_TASK_RESULT_EXPIRES", "result_expires"),
    ("CELERY_IGNORE_RESULT", "task_ignore_result"),
    ("CELERY_TRACK_STARTED", "task_track_started"),
    ("CELERY_ALWAYS_EAGER", "task_always_eager"),
    (
        "CELERY_EAGER_PROPAGATES_EXCEPTIONS",
        "task_eager_propagates",
    ),
    ("CELERY_ACKS_LATE", "task_acks_late"),
    ("CELERY_DEFAULT_QUEUE", "task_default_queue"),
    ("CELERY_ROUTES", "task_routes"),
    ("CELERY_QUEUES", "task_queues"),
    ("CELERY_CREATE_MISSING_QUEUES", "task_create_missing_queues"),
    ("CELERY_QUEUE_MAX_PRIORITY", "task_queue_max_priority"),
    ("CELERY_DISABLE_RATE_LIMITS", "worker_disable_rate_limits"),
    ("CELERYD_TASK_TIME_LIMIT", "task_time_limit"),
    ("CELERYD_TASK_SOFT_TIME_LIMIT", "task_soft_time_limit"),
    ("CELERY_DEFAULT_RATE_LIMIT", "task_default_rate_limit"),
    ("CELERYD_CONCURRENCY", "worker_concurrency"),
    ("CELERYD_PREFETCH_MULTIPLIER", "worker_prefetch_multiplier"),
    ("CELERYD_MAX_TASKS_PER_CHILD", "worker_max_tasks_per_child"),
    (
        "CELERYD_MAX_MEMORY_PER_CHILD",
        "worker_max_memory_per_child",
    ),
    ("CELERY_REJECT_ON_WORKER_LOST", "task_reject_on_worker_lost"),
    ("CELERY_SEND_EVENTS", "worker_send_task_events"),
    ("CELERY_SEND_TASK_SENT_EVENT", "task_send_sent_event"),
    ("BROKER_TRANSPORT_OPTIONS", "broker_transport_options"),
    ("BROKER_POOL_LIMIT", "broker_pool_limit"),
    ("CELERYBEAT_SCHEDULE", "beat_schedule"),
    ("CELERYBEAT_MAX_LOOP_INTERVAL", "beat_max_loop_interval"),
];

/// How a key spelled a setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Spelling {
    /// Celery's current name (`broker_url`; `CELERY_BROKER_URL` for an environment variable).
    Current,
    /// Django's `CELERY_`-namespaced current name inside the `[celery]` table
    /// (`CELERY_BROKER_URL = ...`).
    Namespaced,
    /// A deprecated Celery 3 name (`BROKER_URL`, `CELERYD_CONCURRENCY`, ...).
    Legacy,
}

/// What an environment variable is to the settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum EnvKey {
    /// It sets this setting.
    Setting(&'static str, Spelling),
    /// It starts with `CELERY` but names no setting (for example `CELERY_WEB_REQUIRE_SERVICES`).
    UnknownCelery,
    /// Not ours.
    Other,
}

/// The setting called exactly `name`.
pub(super) fn known(name: &str) -> Option<&'static Known> {
    KNOWN.iter().find(|known| known.name == name)
}

/// What a value of setting `name` must be.
pub(super) fn expected(name: &str) -> &'static str {
    known(name).map_or("a valid value", |known| known.expected)
}

/// The setting a Celery 3 name (any case) became.
fn legacy(key: &str) -> Option<&'static str> {
    LEGACY
        .iter()
        .find(|(old, _)| old.eq_ignore_ascii_case(key))
        .map(|&(_, new)| new)
}

/// The setting a key of the `[celery]` table sets, and how it was spelled.
pub(super) fn file_key(key: &str) -> Option<(&'static str, Spelling)> {
    if let Some(known) = known(key) {
        return Some((known.name, Spelling::Current));
    }
    let lower = key.to_ascii_lowercase();
    if let Some(known) = lower.strip_prefix("celery_").and_then(known) {
        return Some((known.name, Spelling::Namespaced));
    }
    legacy(key).map(|name| (name, Spelling::Legacy))
}

/// What the environment variable `key` sets. `CELERY_<NAME>` is the current spelling, even when
/// it is also a Celery 3 name (`CELERY_RESULT_BACKEND`, `CELERY_TIMEZONE`, ...).
pub(super) fn env_key(key: &str) -> EnvKey {
    if let Some(known) = key
        .strip_prefix("CELERY_")
        .and_then(|rest| self::known(&rest.to_ascii_lowercase()))
    {
        return EnvKey::Setting(known.name, Spelling::Current);
    }
    if let Some(name) = LEGACY
        .iter()
        .find(|(old, _)| *old == key)
        .map(|&(_, new)| new)
    {
        return EnvKey::Setting(name, Spelling::Legacy);
    }
    if key.starts_with("CELERY") {
        EnvKey::UnknownCelery
    } else {
        EnvKey::Other
    }
}

/// The current name of the setting closest to the unknown `key`, if one is close enough to be a
/// likely typo. Compares case-insensitively against current, `celery_`-namespaced and Celery 3
/// spellings, and always suggests the current name.
pub(super) fn suggest(key: &str) -> Option<&'static str> {
    let key = key.to_ascii_lowercase();
    let namespaced = KNOWN
        .iter()
        .map(|known| (format!("celery_{}", known.name), known.name));
    let current = KNOWN
        .iter()
        .map(|known| (known.name.to_owned(), known.name));
    let old = LEGACY
        .iter()
        .map(|&(old, new)| (old.to_ascii_lowercase(), new));
    current
        .chain(namespaced)
        .chain(old)
        .map(|(spelling, name)| (edit_distance(&key, &spelling), name))
        .filter(|&(distance, _)| distance <= 3 && distance * 3 <= key.len())
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, name)| name)
}

/// Levenshtein distance between `a` and `b`, counted in chars.
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("broker_ulr", "broker_url"), 2);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn suggestions_find_typos_in_every_spelling() {
        assert_eq!(suggest("broker_ulr"), Some("broker_url"));
        assert_eq!(suggest("worker_concurency"), Some("worker_concurrency"));
        assert_eq!(suggest("WORKER_CONCURRENCY"), Some("worker_concurrency"));
        assert_eq!(suggest("CELERYD_CONCURENCY"), Some("worker_concurrency"));
        assert_eq!(suggest("CELERY_BROKER_ULR"), Some("broker_url"));
        assert_eq!(suggest("colour"), None);
        assert_eq!(suggest("web_require_services"), None);
    }

    #[test]
    fn file_keys_accept_three_spellings() {
        assert_eq!(
            file_key("broker_url"),
            Some(("broker_url", Spelling::Current))
        );
        assert_eq!(
            file_key("CELERY_BROKER_URL"),
            Some(("broker_url", Spelling::Namespaced))
        );
        assert_eq!(
            file_key("celery_timezone"),
            Some(("timezone", Spelling::Namespaced))
        );
        assert_eq!(
            file_key("BROKER_URL"),
            Some(("broker_url", Spelling::Legacy))
        );
        assert_eq!(
            file_key("celeryd_concurrency"),
            Some(("worker_concurrency", Spelling::Legacy))
        );
        assert_eq!(file_key("broker_ulr"), None);
    }

    #[test]
    fn env_keys() {
        assert_eq!(
            env_key("CELERY_BROKER_URL"),
            EnvKey::Setting("broker_url", Spelling::Current)
        );
        assert_eq!(
            env_key("CELERY_RESULT_BACKEND"),
            EnvKey::Setting("result_backend", Spelling::Current)
        );
        assert_eq!(
            env_key("BROKER_URL"),
            EnvKey::Setting("broker_url", Spelling::Legacy)
        );
        assert_eq!(
            env_key("CELERYD_CONCURRENCY"),
            EnvKey::Setting("worker_concurrency", Spelling::Legacy)
        );
        assert_eq!(
            env_key("CELERY_ROUTES"),
            EnvKey::Setting("task_routes", Spelling::Legacy)
        );
        assert_eq!(
            env_key("CELERY_WEB_REQUIRE_SERVICES"),
            EnvKey::UnknownCelery
        );
        assert_eq!(env_key("PATH"), EnvKey::Other);
        assert_eq!(env_key("broker_url"), EnvKey::Other);
    }

    #[test]
    fn legacy_names_target_known_settings() {
        for (old, new) in LEGACY {
            assert!(known(new).is_some(), "{old} maps to unknown {new}");
            assert_eq!(*old, old.to_ascii_uppercase());
        }
    }
}
