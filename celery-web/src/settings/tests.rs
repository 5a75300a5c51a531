use std::collections::BTreeSet;
use std::time::Duration;

use super::*;

/// `text` read as the contents of the `[celery]` table.
fn table(text: &str) -> toml::Table {
    text.parse().expect("test TOML parses")
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Settings from a `[celery]` file text and an environment.
fn read(text: &str, env: &[(&str, &str)]) -> Result<Loaded> {
    resolve(table(text), vars(env))
}

fn settings(text: &str, env: &[(&str, &str)]) -> Settings {
    match read(text, env) {
        Ok(loaded) => loaded.settings,
        Err(error) => panic!("settings should load: {error}"),
    }
}

/// The message of the configuration error `text` + `env` gives.
fn error(text: &str, env: &[(&str, &str)]) -> String {
    match read(text, env) {
        Ok(loaded) => panic!("expected an error, got {:?}", loaded.settings),
        Err(Error::Config(message)) => message,
        Err(other) => panic!("expected a configuration error, got {other:?}"),
    }
}

// --- Defaults and the reference file ---------------------------------------------------------

#[test]
fn defaults_without_a_file() {
    assert_eq!(settings("", &[]), Settings::default());
    assert_eq!(Settings::from_toml_str("").unwrap(), Settings::default());
    assert_eq!(
        Settings::from_toml_str("[site]\ntitle = \"Shop\"\n[database]\nurl = 1").unwrap(),
        Settings::default()
    );
    let defaults = Settings::default();
    assert_eq!(defaults.broker_url, "sqlite://celery.sqlite3");
    assert_eq!(defaults.result_backend, "db");
    assert_eq!(defaults.timezone, "UTC");
    assert!(defaults.enable_utc);
    assert_eq!(defaults.accept_content, ["json"]);
    assert_eq!(defaults.result_expires, Some(86_400));
    assert!(defaults.task_acks_late);
    assert_eq!(defaults.task_default_queue, "celery");
    assert_eq!(defaults.worker_prefetch_multiplier, 4);
    assert_eq!(defaults.broker_pool_limit, 10);
    assert_eq!(defaults.visibility_timeout(), Duration::from_secs(3600));
    assert_eq!(defaults.result_expiry(), Some(Duration::from_secs(86_400)));
    assert_eq!(defaults.database_url(), "sqlite://celery.sqlite3");
    assert!(defaults.concurrency() >= 1);
    defaults.validate().unwrap();
}

const REFERENCE: &str = include_str!("../../config/reference.toml");

#[test]
fn the_reference_file_lists_the_defaults() {
    assert_eq!(
        Settings::from_toml_str(REFERENCE).unwrap(),
        Settings::default()
    );
}

#[test]
fn the_reference_file_mentions_every_setting() {
    for known in keys::KNOWN {
        let mentioned = REFERENCE.lines().any(|line| {
            let line = line.trim_start_matches(['#', ' ']);
            line.starts_with(&format!("{} =", known.name))
                || line.starts_with(&format!("[celery.{}]", known.name))
        });
        assert!(mentioned, "reference.toml does not show `{}`", known.name);
    }
}

#[test]
fn the_known_names_are_the_fields() {
    let json = serde_json::to_value(Settings::default()).unwrap();
    let fields: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let known: BTreeSet<&str> = keys::KNOWN.iter().map(|known| known.name).collect();
    assert_eq!(fields, known.into_iter().collect::<Vec<_>>());
}

#[test]
fn settings_round_trip_through_toml() {
    let mut original = settings(
        r#"
        broker_url = "redis://localhost:6379/0"
        worker_concurrency = 3
        task_time_limit = 30.5
        task_routes = { "a.b" = "math", "c.*" = { queue = "x", priority = 2 } }
        beat_schedule = { tick = { task = "a.b", schedule = 5 } }
        task_queues = [{ name = "a" }, { name = "b", exchange_type = "topic", queue_arguments = { "x-max-priority" = 10 } }]
        worker_disable_rate_limits = true
        "#,
        &[],
    );
    assert_eq!(original.queues().len(), 2);
    original.database_url = Some("postgres://db/app".into());
    #[derive(Serialize)]
    struct File<'a> {
        celery: &'a Settings,
    }
    let text = toml::to_string(&File { celery: &original }).unwrap();
    assert_eq!(Settings::from_toml_str(&text).unwrap(), original);
}

// --- File values ----------------------------------------------------------------------------

#[test]
fn file_values() {
    let s = settings(
        r#"
        broker_url = "redis://localhost:6379/0"
        result_backend = "redis://localhost:6379/1"
        database_url = "postgres://app@localhost/app"
        timezone = "Europe/Paris"
        enable_utc = false
        accept_content = ["json", "application/json"]
        result_expires = 0
        result_extended = true
        task_track_started = true
        task_ignore_result = true
        task_acks_late = false
        task_default_queue = "default"
        task_default_priority = 5
        task_time_limit = 30
        task_soft_time_limit = 25.5
        task_default_rate_limit = "100/m"
        worker_concurrency = 8
        worker_prefetch_multiplier = 1
        worker_max_tasks_per_child = 100
        worker_send_task_events = true
        worker_hostname = "w1@%h"
        broker_visibility_timeout = 60
        broker_pool_limit = 0
        beat_max_loop_interval = 5
        [beat_schedule.tick]
        task = "proj.tasks.tick"
        schedule = 10
        "#,
        &[],
    );
    assert_eq!(s.broker_url, "redis://localhost:6379/0");
    assert_eq!(
        s.result_backend_kind().unwrap(),
        ResultBackendKind::Redis {
            url: "redis://localhost:6379/1".into()
        }
    );
    assert_eq!(s.database_url(), "postgres://app@localhost/app");
    assert_eq!(s.timezone, "Europe/Paris");
    assert!(!s.enable_utc);
    assert_eq!(s.accept_content, ["json", "application/json"]);
    assert_eq!(s.result_expiry(), None);
    assert!(s.result_extended && s.task_track_started && s.task_ignore_result);
    assert!(!s.task_acks_late);
    assert_eq!(s.task_default_queue, "default");
    assert_eq!(s.task_default_priority, Some(5));
    assert_eq!(s.task_time_limit, Some(30.0));
    assert_eq!(s.task_soft_time_limit, Some(25.5));
    assert_eq!(s.task_default_rate_limit.as_deref(), Some("100/m"));
    assert_eq!(s.concurrency(), 8);
    assert_eq!(s.worker_prefetch_multiplier, 1);
    assert_eq!(s.worker_max_tasks_per_child, Some(100));
    assert!(s.worker_send_task_events);
    assert_eq!(s.worker_hostname.as_deref(), Some("w1@%h"));
    assert_eq!(s.visibility_timeout(), Duration::from_secs(60));
    assert_eq!(s.broker_pool_limit, 0);
    assert_eq!(s.beat_max_loop_interval, Some(5.0));
    assert_eq!(s.beat_schedule["tick"]["schedule"].as_integer(), Some(10));
}

#[test]
fn from_file_reads_the_celery_table_and_names_missing_files() {
    let dir = std::env::temp_dir().join(format!("celery-web-settings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("site.toml");
    std::fs::write(
        &path,
        "[site]\nname = \"shop\"\n\n[celery]\ntask_default_queue = \"from-file\"\n",
    )
    .unwrap();
    let s = Settings::from_file(&path).unwrap();
    assert_eq!(s.task_default_queue, "from-file");
    assert_eq!(
        Settings::from_env_and_file(Some(&path))
            .unwrap()
            .task_default_queue,
        "from-file"
    );
    std::fs::remove_dir_all(&dir).unwrap();

    let Err(Error::Config(message)) = Settings::from_file(dir.join("missing.toml")) else {
        panic!("a missing file is an error");
    };
    assert!(message.contains("missing.toml"), "{message}");
}

#[test]
fn bad_documents() {
    let Err(Error::Config(message)) = Settings::from_toml_str("[celery]\nbroker_url = ") else {
        panic!("invalid TOML is an error");
    };
    assert!(message.starts_with("invalid TOML"), "{message}");
    let Err(Error::Config(message)) = Settings::from_toml_str("celery = 1") else {
        panic!("a non-table [celery] is an error");
    };
    assert!(message.contains("`celery` must be a table"), "{message}");
}

// --- Environment ----------------------------------------------------------------------------

#[test]
fn env_overrides_beat_the_file() {
    let s = settings(
        "broker_url = \"sqlite://file.db\"\nworker_concurrency = 2\ntask_acks_late = true",
        &[
            ("CELERY_BROKER_URL", "redis://:pw@cache:6379/0"),
            ("CELERY_WORKER_CONCURRENCY", "8"),
            ("CELERY_TASK_ACKS_LATE", "false"),
            ("CELERY_TIMEZONE", "Europe/Paris"),
            ("CELERY_TASK_TIME_LIMIT", "2.5"),
            ("CELERY_ACCEPT_CONTENT", "json,application/json"),
        ],
    );
    assert_eq!(s.broker_url, "redis://:pw@cache:6379/0");
    assert_eq!(s.worker_concurrency, Some(8));
    assert!(!s.task_acks_late);
    assert_eq!(s.timezone, "Europe/Paris");
    assert_eq!(s.task_time_limit, Some(2.5));
    assert_eq!(s.accept_content, ["json", "application/json"]);
}

#[test]
fn env_tables_as_toml_or_json() {
    let s = settings(
        "",
        &[
            (
                "CELERY_TASK_ROUTES",
                r#"{"shop.tasks.add": "math", "shop.mail.*": {"queue": "mail", "priority": 3}}"#,
            ),
            (
                "CELERY_BROKER_TRANSPORT_OPTIONS",
                "{ visibility_timeout = 120 }",
            ),
        ],
    );
    assert_eq!(s.queue_for("shop.tasks.add"), "math");
    assert_eq!(
        s.route_for("shop.mail.send"),
        Some(&TaskRoute {
            queue: Some("mail".into()),
            priority: Some(3)
        })
    );
    assert_eq!(s.visibility_timeout(), Duration::from_secs(120));
}

#[test]
fn unrelated_and_empty_env_vars_are_ignored() {
    let s = settings(
        "worker_concurrency = 2",
        &[
            ("CELERY_WEB_REQUIRE_SERVICES", "1"),
            ("CELERY_BROKER_ULR", "redis://x"),
            ("CELERYD_SOMETHING", "x"),
            ("PATH", "/usr/bin"),
            ("broker_url", "redis://x"),
            ("CELERY_WORKER_CONCURRENCY", ""),
        ],
    );
    assert_eq!(s.worker_concurrency, Some(2));
    assert_eq!(s.broker_url, "sqlite://celery.sqlite3");
}

#[test]
fn env_errors_name_the_variable() {
    assert_eq!(
        error("", &[("CELERY_WORKER_CONCURRENCY", "eight")]),
        "setting `worker_concurrency` (from environment variable `CELERY_WORKER_CONCURRENCY`): \
         expected a positive integer, got \"eight\""
    );
    assert_eq!(
        error("", &[("CELERY_WORKER_CONCURRENCY", "0")]),
        "setting `worker_concurrency` (from environment variable `CELERY_WORKER_CONCURRENCY`): \
         expected a positive integer, got 0"
    );
}

// --- Legacy names ---------------------------------------------------------------------------

#[test]
fn legacy_names_in_the_file_map_with_a_warning() {
    let loaded = read(
        r#"
        BROKER_URL = "redis://localhost"
        CELERYD_CONCURRENCY = 3
        celeryd_prefetch_multiplier = 2
        CELERY_ROUTES = { "a.b" = "math" }
        CELERY_TASK_RESULT_EXPIRES = 60
        CELERY_IGNORE_RESULT = true
        CELERY_SEND_EVENTS = true
        CELERYBEAT_SCHEDULE = { tick = { task = "a.b", schedule = 1 } }
        BROKER_TRANSPORT_OPTIONS = { visibility_timeout = 10 }
        "#,
        &[],
    )
    .unwrap();
    let s = &loaded.settings;
    assert_eq!(s.broker_url, "redis://localhost");
    assert_eq!(s.worker_concurrency, Some(3));
    assert_eq!(s.worker_prefetch_multiplier, 2);
    assert_eq!(s.queue_for("a.b"), "math");
    assert_eq!(s.result_expires, Some(60));
    assert!(s.task_ignore_result);
    assert!(s.worker_send_task_events);
    assert!(s.beat_schedule.contains_key("tick"));
    assert_eq!(s.visibility_timeout(), Duration::from_secs(10));
    assert_eq!(loaded.deprecations.len(), 9, "{:#?}", loaded.deprecations);
    assert!(loaded.deprecations.contains(
        &"setting `CELERYD_CONCURRENCY` in [celery] is a deprecated Celery 3 name: rename it to \
          `worker_concurrency`"
            .to_owned()
    ));
    assert!(loaded
        .deprecations
        .iter()
        .any(|d| d.contains("`celeryd_prefetch_multiplier`")
            && d.contains("`worker_prefetch_multiplier`")));
}

#[test]
fn django_namespaced_names_in_the_file_map_without_a_warning() {
    let loaded = read(
        r#"
        CELERY_BROKER_URL = "postgres://localhost/app"
        CELERY_RESULT_BACKEND = "disabled"
        CELERY_TIMEZONE = "Europe/Berlin"
        celery_task_default_queue = "q"
        "#,
        &[],
    )
    .unwrap();
    assert_eq!(loaded.settings.broker_url, "postgres://localhost/app");
    assert_eq!(
        loaded.settings.result_backend_kind().unwrap(),
        ResultBackendKind::Disabled
    );
    assert_eq!(loaded.settings.timezone, "Europe/Berlin");
    assert_eq!(loaded.settings.task_default_queue, "q");
    assert!(loaded.deprecations.is_empty(), "{:?}", loaded.deprecations);
}

#[test]
fn legacy_env_vars_map_with_a_warning() {
    let loaded = read(
        "broker_url = \"sqlite://file.db\"",
        &[
            ("BROKER_URL", "redis://localhost"),
            ("CELERYD_CONCURRENCY", "5"),
            ("CELERY_RESULT_BACKEND", "memory://"),
        ],
    )
    .unwrap();
    assert_eq!(loaded.settings.broker_url, "redis://localhost");
    assert_eq!(loaded.settings.worker_concurrency, Some(5));
    assert_eq!(
        loaded.settings.result_backend_kind().unwrap(),
        ResultBackendKind::Memory
    );
    // CELERY_RESULT_BACKEND is also CELERY_ + result_backend: no warning for it.
    assert_eq!(
        loaded.deprecations,
        [
            "environment variable `BROKER_URL` is a deprecated Celery 3 name: rename it to \
             `CELERY_BROKER_URL`",
            "environment variable `CELERYD_CONCURRENCY` is a deprecated Celery 3 name: rename it \
             to `CELERY_WORKER_CONCURRENCY`",
        ]
    );
}

#[test]
fn an_env_var_with_the_new_name_beats_a_legacy_name_in_the_file() {
    let s = settings(
        "BROKER_URL = \"redis://file\"",
        &[("CELERY_BROKER_URL", "redis://env")],
    );
    assert_eq!(s.broker_url, "redis://env");
}

#[test]
fn old_and_new_names_together_are_an_error() {
    assert_eq!(
        error(
            "broker_url = \"redis://a\"\nBROKER_URL = \"redis://b\"",
            &[]
        ),
        "settings `BROKER_URL` and `broker_url` in [celery] both set `broker_url`: keep only \
         `broker_url`"
    );
    assert_eq!(
        error(
            "CELERY_BROKER_URL = \"redis://a\"\nBROKER_URL = \"redis://b\"",
            &[]
        ),
        "settings `BROKER_URL` and `CELERY_BROKER_URL` in [celery] both set `broker_url`: keep \
         only `broker_url`"
    );
    assert_eq!(
        error(
            "",
            &[
                ("CELERYD_CONCURRENCY", "2"),
                ("CELERY_WORKER_CONCURRENCY", "3")
            ]
        ),
        "environment variables `CELERYD_CONCURRENCY` and `CELERY_WORKER_CONCURRENCY` both set \
         `worker_concurrency`: keep only `CELERY_WORKER_CONCURRENCY`"
    );
}

#[test]
fn errors_name_the_legacy_spelling() {
    assert_eq!(
        error("CELERYD_CONCURRENCY = \"eight\"", &[]),
        "setting `worker_concurrency` (given as `CELERYD_CONCURRENCY`): expected a positive \
         integer, got \"eight\""
    );
}

// --- Unknown keys ---------------------------------------------------------------------------

#[test]
fn unknown_keys_are_errors_with_a_suggestion() {
    assert_eq!(
        error("broker_ulr = \"redis://x\"", &[]),
        "unknown setting `broker_ulr` in [celery] (did you mean `broker_url`?)"
    );
    assert_eq!(
        error("CELERYD_CONCURENCY = 2", &[]),
        "unknown setting `CELERYD_CONCURENCY` in [celery] (did you mean `worker_concurrency`?)"
    );
    assert_eq!(
        error("colour = \"blue\"", &[]),
        "unknown setting `colour` in [celery]"
    );
}

// --- Bad values -----------------------------------------------------------------------------

#[test]
fn bad_values_name_the_key_and_the_expected_type() {
    let cases = [
        (
            "worker_concurrency = \"eight\"",
            "setting `worker_concurrency`: expected a positive integer, got \"eight\"",
        ),
        (
            "worker_concurrency = 0",
            "setting `worker_concurrency`: expected a positive integer, got 0",
        ),
        (
            "worker_concurrency = -1",
            "setting `worker_concurrency`: expected a positive integer, got -1",
        ),
        (
            "worker_prefetch_multiplier = 0",
            "setting `worker_prefetch_multiplier`: expected a positive integer, got 0",
        ),
        (
            "task_acks_late = \"yes\"",
            "setting `task_acks_late`: expected a boolean (true or false), got \"yes\"",
        ),
        (
            "task_default_priority = 12",
            "setting `task_default_priority`: expected an integer priority from 0 to 9, got 12",
        ),
        (
            "task_default_priority = 300",
            "setting `task_default_priority`: expected an integer priority from 0 to 9, got 300",
        ),
        (
            "task_default_rate_limit = \"10/d\"",
            "setting `task_default_rate_limit`: \"10/d\": the unit \"d\" is not s, m or h (write \
             a rate such as \"10/s\", \"100/m\" or \"5/h\")",
        ),
        (
            "task_default_rate_limit = \"fast\"",
            "setting `task_default_rate_limit`: \"fast\" is not a rate such as \"10/s\", \
             \"100/m\" or \"5/h\" (\"0\" means no limit)",
        ),
        (
            "task_default_rate_limit = 10",
            "setting `task_default_rate_limit`: expected a rate limit string such as \"10/s\", \
             \"100/m\" or \"1000/h\" (\"0\" for no limit), got 10",
        ),
        (
            "task_time_limit = -5",
            "setting `task_time_limit`: expected a positive number of seconds, got -5",
        ),
        (
            "timezone = \"\"",
            "setting `timezone`: expected a time zone name string such as \"UTC\" or \
             \"Europe/Paris\", got \"\"",
        ),
        (
            "timezone = \"Europe/Atlantis\"",
            "setting `timezone`: expected a time zone name string such as \"UTC\" or \
             \"Europe/Paris\", got \"Europe/Atlantis\"",
        ),
        (
            "task_serializer = \"pickle\"",
            "setting `task_serializer`: only \"json\" (or \"application/json\") is supported, \
             got \"pickle\"",
        ),
        (
            "accept_content = [\"json\", \"pickle\"]",
            "setting `accept_content`: only \"json\" (or \"application/json\") is supported, \
             got \"pickle\"",
        ),
        (
            "accept_content = []",
            "setting `accept_content`: must list at least \"json\"",
        ),
        (
            "result_backend = \"rpc://\"",
            "setting `result_backend`: expected a string: db, disabled, memory:// or a \
             sqlite://, postgres:// or redis:// URL, got \"rpc://\"",
        ),
        (
            "database_url = \"redis://x\"",
            "setting `database_url`: expected a sqlite:// or postgres:// URL string, got \
             \"redis://x\"",
        ),
        (
            "task_routes = { \"a.b\" = { queue = \"q\", priority = 10 } }",
            "setting `task_routes`: route \"a.b\": expected a priority from 0 to 9, got 10",
        ),
        (
            "broker_transport_options = { visibility_timeout = \"1h\" }",
            "setting `broker_transport_options`: visibility_timeout: expected a whole number of \
             seconds, got \"1h\"",
        ),
        (
            "beat_schedule = { tick = 5 }",
            "setting `beat_schedule`: entry \"tick\": expected a table such as { task = \
             \"proj.tasks.add\", schedule = 30 }, got 5",
        ),
    ];
    for (text, message) in cases {
        assert_eq!(error(text, &[]), message, "for {text}");
    }
}

#[test]
fn bad_broker_urls_are_masked() {
    assert_eq!(
        error("broker_url = \"sqs://key:secret@queue\"", &[]),
        "setting `broker_url`: expected a URL with scheme sqlite://, postgres://, \
         postgresql://, redis://, rediss://, amqp://, amqps:// or memory://, got \
         \"sqs://key:***@queue\""
    );
    let message = error("broker_url = \"pyamqp://guest:guest@localhost//\"", &[]);
    assert!(
        message.ends_with("got \"pyamqp://guest:***@localhost//\" (write amqp:// for RabbitMQ)"),
        "{message}"
    );
    assert!(error("broker_url = \"localhost:6379\"", &[]).contains("got \"localhost:6379\""));
    // Every URL of a fail-over list is checked.
    let message = error("broker_url = \"redis://:a@h1;sqs://h2\"", &[]);
    assert!(
        message.ends_with("got \"redis://:***@h1;sqs://h2\""),
        "{message}"
    );
    settings("broker_url = \"redis://:a@h1;redis://:b@h2\"", &[]);
}

#[test]
fn compound_type_errors_say_what_part_is_wrong() {
    let message = error("task_routes = { \"a.b\" = { queu = \"math\" } }", &[]);
    assert!(
        message.starts_with("setting `task_routes`: expected a table"),
        "{message}"
    );
    assert!(message.contains("unknown field `queu`"), "{message}");
    // An unquoted dotted task name makes nested tables: the message says to quote it.
    let message = error("[task_routes]\nproj.tasks.add = \"math\"", &[]);
    assert!(
        message.contains("quote names that contain dots"),
        "{message}"
    );
}

#[test]
fn validate_checks_settings_built_in_code() {
    let settings = Settings {
        worker_concurrency: Some(0),
        ..Settings::default()
    };
    let Err(Error::Config(message)) = settings.validate() else {
        panic!("worker_concurrency = 0 is invalid");
    };
    assert_eq!(
        message,
        "setting `worker_concurrency`: expected a positive integer, got 0"
    );
}

// --- Result backend and database ------------------------------------------------------------

#[test]
fn result_backends() {
    let kind = |backend: &str, broker: &str| {
        Settings {
            result_backend: backend.into(),
            broker_url: broker.into(),
            ..Settings::default()
        }
        .result_backend_kind()
        .unwrap()
    };
    let database = |url: &str| ResultBackendKind::Database { url: url.into() };
    assert_eq!(kind("db", "sqlite://x.db"), database("sqlite://x.db"));
    assert_eq!(
        kind("django-db", "postgres://h/app"),
        database("postgres://h/app")
    );
    assert_eq!(
        kind("database", "redis://h"),
        database("sqlite://celery.sqlite3")
    );
    assert_eq!(
        kind("db+postgresql://h/app", "redis://h"),
        database("postgresql://h/app")
    );
    assert_eq!(
        kind("sqlite://results.db", "redis://h"),
        database("sqlite://results.db")
    );
    assert_eq!(
        kind("rediss://h/1", "redis://h"),
        ResultBackendKind::Redis {
            url: "rediss://h/1".into()
        }
    );
    assert_eq!(kind("memory://", "memory://"), ResultBackendKind::Memory);
    assert_eq!(kind("disabled", "memory://"), ResultBackendKind::Disabled);
    let settings = Settings {
        result_backend: "db+redis://h".into(),
        ..Settings::default()
    };
    assert!(settings.result_backend_kind().is_err());
}

#[test]
fn broker_kinds_are_read_once_from_the_url() {
    let kind = |url: &str| {
        settings(&format!("broker_url = {url:?}"), &[])
            .broker_kind()
            .unwrap()
    };
    assert_eq!(
        kind("sqlite://site.db"),
        BrokerKind::Database {
            url: "sqlite://site.db".into(),
            kind: DbKind::Sqlite
        }
    );
    assert_eq!(
        kind(" Postgres://h/app "),
        BrokerKind::Database {
            url: "Postgres://h/app".into(),
            kind: DbKind::Postgres
        }
    );
    assert_eq!(
        kind("redis://:a@h1;redis://:b@h2"),
        BrokerKind::Redis {
            url: "redis://:a@h1;redis://:b@h2".into()
        }
    );
    assert_eq!(
        kind("amqp://guest@h//"),
        BrokerKind::Amqp {
            url: "amqp://guest@h//".into()
        }
    );
    assert_eq!(kind("memory://"), BrokerKind::Memory);
    // The database of celery-web's tables follows the same reading.
    assert_eq!(
        settings("broker_url = \" SQLite://site.db\"", &[]).database_url(),
        "SQLite://site.db"
    );
    assert_eq!(
        error("broker_url = \"redis://h1;sqlite://x.db\"", &[]),
        "setting `broker_url`: a fail-over list (URLs separated by `;`) must be all redis:// or \
         all amqp:// URLs, got \"redis://h1;sqlite://x.db\""
    );
    let unchecked = Settings {
        broker_url: "sqs://h".into(),
        ..Settings::default()
    };
    assert!(unchecked.broker_kind().is_err());
}

#[test]
fn database_url_resolution() {
    let resolve = |broker: &str, database: Option<&str>| {
        Settings {
            broker_url: broker.into(),
            database_url: database.map(Into::into),
            ..Settings::default()
        }
        .database_url()
    };
    assert_eq!(resolve("sqlite://site.db", None), "sqlite://site.db");
    assert_eq!(resolve("postgres://h/app", None), "postgres://h/app");
    assert_eq!(resolve("postgresql://h/app", None), "postgresql://h/app");
    assert_eq!(resolve("redis://h", None), "sqlite://celery.sqlite3");
    assert_eq!(resolve("amqp://h//", None), "sqlite://celery.sqlite3");
    assert_eq!(
        resolve("redis://h", Some("postgres://h/app")),
        "postgres://h/app"
    );
}

// --- Rate limits ---------------------------------------------------------------------------

#[test]
fn default_rate_limits_use_the_task_parser_and_zero_is_no_limit() {
    let limit = |text: &str| {
        settings(&format!("task_default_rate_limit = {text:?}"), &[])
            .default_rate_limit()
            .unwrap()
    };
    assert_eq!(
        limit("10/s").unwrap().interval(),
        Duration::from_millis(100)
    );
    assert_eq!(
        limit("100/m").unwrap().interval(),
        Duration::from_millis(600)
    );
    assert_eq!(limit("5/h").unwrap().interval(), Duration::from_secs(720));
    assert_eq!(limit("0"), None);
    assert_eq!(limit("0/m"), None);
    assert_eq!(Settings::default().default_rate_limit().unwrap(), None);
    let s = settings("", &[("CELERY_TASK_DEFAULT_RATE_LIMIT", "0")]);
    assert_eq!(s.default_rate_limit().unwrap(), None);
    // Built in code without validation: the accessor still names the setting.
    let unchecked = Settings {
        task_default_rate_limit: Some("-3/s".into()),
        ..Settings::default()
    };
    let Err(Error::Config(message)) = unchecked.default_rate_limit() else {
        panic!("a negative rate is an error");
    };
    assert!(
        message.starts_with("setting `task_default_rate_limit`: \"-3/s\""),
        "{message}"
    );
}

// --- Routes ---------------------------------------------------------------------------------

#[test]
fn task_routes_strings_tables_and_globs() {
    let s = settings(
        r#"
        [task_routes]
        "shop.tasks.add" = "math"
        "shop.tasks.*" = { queue = "shop", priority = 2 }
        "shop.*" = "catch-all"
        "*.report" = { priority = 9 }
        "#,
        &[],
    );
    // Exact match wins over globs.
    assert_eq!(
        s.route_for("shop.tasks.add"),
        Some(&TaskRoute::queue("math"))
    );
    // Then the most specific matching glob (most literal characters), whatever the key order.
    assert_eq!(
        s.route_for("shop.tasks.mail"),
        Some(&TaskRoute {
            queue: Some("shop".to_owned()),
            priority: Some(2)
        })
    );
    assert_eq!(
        s.route_for("shop.cart"),
        Some(&TaskRoute::queue("catch-all"))
    );
    assert_eq!(
        s.route_for("shop.report"),
        Some(&TaskRoute {
            queue: None,
            priority: Some(9)
        })
    );
    assert_eq!(s.route_for("blog.ping"), None);
    assert_eq!(s.queue_for("blog.ping"), "celery");
    assert_eq!(s.queue_for("shop.report"), "celery");
    assert_eq!(s.queue_for("shop.tasks.add"), "math");
}

// --- Visibility timeout ---------------------------------------------------------------------

#[test]
fn visibility_timeout_prefers_the_transport_option() {
    let s = settings("broker_visibility_timeout = 60", &[]);
    assert_eq!(s.visibility_timeout(), Duration::from_secs(60));
    let s = settings(
        "broker_visibility_timeout = 60\nbroker_transport_options = { visibility_timeout = 7200 }",
        &[],
    );
    assert_eq!(s.visibility_timeout(), Duration::from_secs(7200));
    let s = settings(
        "[broker_transport_options]\nvisibility_timeout = 1.5\nmax_connections = 20",
        &[],
    );
    assert_eq!(s.visibility_timeout(), Duration::from_millis(1500));
    let s = settings("", &[("CELERY_BROKER_VISIBILITY_TIMEOUT", "90")]);
    assert_eq!(s.visibility_timeout(), Duration::from_secs(90));
}

// --- Output ---------------------------------------------------------------------------------

#[test]
fn debug_output_masks_passwords() {
    let s = Settings {
        broker_url: "redis://:hunter2@cache:6379/0".into(),
        database_url: Some("postgres://app:hunter2@db/app".into()),
        ..Settings::default()
    };
    let debug = format!("{s:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("redis://:***@cache:6379/0"), "{debug}");
}

// --- Queues, accepted Celery settings and a Django project's config ---------------------------

#[test]
fn task_queues_default_their_exchange_routing_key_and_flags() {
    let s = settings(
        r#"
        task_default_queue = "default"
        task_queues = [
            { name = "default" },
            { name = "media", exchange = "media-x", exchange_type = "topic", routing_key = "media.#", durable = false, auto_delete = true, queue_arguments = { "x-queue-type" = "quorum" } },
        ]
        "#,
        &[],
    );
    let [default, media] = s.queues() else {
        panic!("two queues: {:?}", s.queues())
    };
    assert_eq!(default, &QueueDeclaration::new("default"));
    assert_eq!(
        (default.exchange(), default.routing_key()),
        ("default", "default")
    );
    assert_eq!(default.exchange_type, "direct");
    assert!(default.durable && !default.auto_delete);
    assert_eq!(
        (media.exchange(), media.routing_key()),
        ("media-x", "media.#")
    );
    assert_eq!(media.exchange_type, "topic");
    assert!(!media.durable && media.auto_delete);
    assert_eq!(
        media.queue_arguments["x-queue-type"].as_str(),
        Some("quorum")
    );
    assert_eq!(s.default_worker_queues(), ["default", "media"]);
    assert_eq!(
        settings("task_default_queue = \"jobs\"", &[]).default_worker_queues(),
        ["jobs"]
    );
    // Legacy name, and from the environment as JSON.
    let legacy = read("CELERY_QUEUES = [{ name = \"a\" }]", &[]).unwrap();
    assert_eq!(legacy.settings.default_worker_queues(), ["a"]);
    assert!(legacy.deprecations[0].contains("rename it to `task_queues`"));
    let env = settings("", &[("CELERY_TASK_QUEUES", r#"[{"name": "b"}]"#)]);
    assert_eq!(env.default_worker_queues(), ["b"]);
}

#[test]
fn bad_task_queues_name_the_key_and_the_entry() {
    let message = error(
        "task_queues = [{ name = \"a\" }, { name = \"b\", exchange_type = \"fan\" }]",
        &[],
    );
    assert!(message.contains("setting `task_queues`"), "{message}");
    assert!(message.contains("queue \"b\""), "{message}");
    assert!(
        message.contains("direct, topic, fanout or headers, got \"fan\""),
        "{message}"
    );
    let message = error("CELERY_QUEUES = [{ name = \"\" }]", &[]);
    assert!(
        message.contains("setting `task_queues` (given as `CELERY_QUEUES`): entry 1"),
        "{message}"
    );
    let message = error("task_queues = [{ name = \"a\" }, { name = \"a\" }]", &[]);
    assert!(message.contains("declared twice"), "{message}");
    let message = error("task_queues = [{ queue = \"a\" }]", &[]);
    assert!(message.contains("setting `task_queues`"), "{message}");
}

#[test]
fn missing_queues_are_errors_only_when_creation_is_off() {
    let routes = r#"
        task_default_queue = "default"
        task_routes = { "shop.*" = "shop" }
        task_queues = [{ name = "default" }]
    "#;
    settings(routes, &[]);
    let message = error(
        &format!("{routes}\ntask_create_missing_queues = false"),
        &[],
    );
    assert!(message.starts_with("setting `task_routes`"), "{message}");
    assert!(
        message.contains("route \"shop.*\": queue \"shop\""),
        "{message}"
    );
    let message = error(
        "CELERY_CREATE_MISSING_QUEUES = false\ntask_queues = [{ name = \"other\" }]",
        &[],
    );
    assert!(
        message.starts_with("setting `task_default_queue`"),
        "{message}"
    );
    assert!(
        message.contains("\"celery\" is not among task_queues"),
        "{message}"
    );
    // Without task_queues there is nothing to compare with.
    settings("task_create_missing_queues = false", &[]);
}

#[test]
fn disabled_rate_limits_make_the_default_rate_limit_irrelevant() {
    let s = settings(
        "worker_disable_rate_limits = true\ntask_default_rate_limit = \"1/s\"",
        &[],
    );
    assert!(!s.rate_limits_enabled());
    assert_eq!(s.default_rate_limit().unwrap(), None);
    let s = settings("task_default_rate_limit = \"1/s\"", &[]);
    assert!(s.rate_limits_enabled());
    assert!(s.default_rate_limit().unwrap().is_some());
    // A bad limit is still an error when limits are off.
    let message = error(
        "CELERY_DISABLE_RATE_LIMITS = true\ntask_default_rate_limit = \"fast\"",
        &[],
    );
    assert!(message.contains("task_default_rate_limit"), "{message}");
}

/// Celery 5.5's settings ("Configuration and defaults"), lower-case names with their old
/// upper-case names, and settings Celery 4 removed that Django projects still carry.
const CELERY_SETTINGS: &[&str] = &[
    "accept_content",
    "CELERY_ACCEPT_CONTENT",
    "result_accept_content",
    "enable_utc",
    "CELERY_ENABLE_UTC",
    "imports",
    "CELERY_IMPORTS",
    "include",
    "CELERY_INCLUDE",
    "timezone",
    "CELERY_TIMEZONE",
    "task_annotations",
    "CELERY_ANNOTATIONS",
    "task_compression",
    "CELERY_MESSAGE_COMPRESSION",
    "task_protocol",
    "CELERY_TASK_PROTOCOL",
    "task_serializer",
    "CELERY_TASK_SERIALIZER",
    "task_publish_retry",
    "CELERY_TASK_PUBLISH_RETRY",
    "task_publish_retry_policy",
    "CELERY_TASK_PUBLISH_RETRY_POLICY",
    "task_always_eager",
    "CELERY_ALWAYS_EAGER",
    "task_eager_propagates",
    "CELERY_EAGER_PROPAGATES_EXCEPTIONS",
    "task_store_eager_result",
    "task_remote_tracebacks",
    "CELERY_TASK_REMOTE_TRACEBACKS",
    "task_ignore_result",
    "CELERY_IGNORE_RESULT",
    "task_store_errors_even_if_ignored",
    "CELERY_STORE_ERRORS_EVEN_IF_IGNORED",
    "task_track_started",
    "CELERY_TRACK_STARTED",
    "task_time_limit",
    "CELERYD_TASK_TIME_LIMIT",
    "task_allow_error_cb_on_chord_header",
    "task_soft_time_limit",
    "CELERYD_TASK_SOFT_TIME_LIMIT",
    "task_acks_late",
    "CELERY_ACKS_LATE",
    "task_acks_on_failure_or_timeout",
    "task_reject_on_worker_lost",
    "CELERY_REJECT_ON_WORKER_LOST",
    "task_default_rate_limit",
    "CELERY_DEFAULT_RATE_LIMIT",
    "result_backend",
    "CELERY_RESULT_BACKEND",
    "result_backend_always_retry",
    "result_backend_max_sleep_between_retries_ms",
    "result_backend_base_sleep_between_retries_ms",
    "result_backend_max_retries",
    "result_backend_thread_safe",
    "result_backend_transport_options",
    "result_serializer",
    "CELERY_RESULT_SERIALIZER",
    "result_compression",
    "CELERY_RESULT_COMPRESSION",
    "result_extended",
    "result_expires",
    "CELERY_TASK_RESULT_EXPIRES",
    "result_cache_max",
    "CELERY_MAX_CACHED_RESULTS",
    "result_chord_join_timeout",
    "result_chord_retry_interval",
    "override_backends",
    "database_engine_options",
    "CELERY_RESULT_ENGINE_OPTIONS",
    "database_short_lived_sessions",
    "CELERY_RESULT_DB_SHORT_LIVED_SESSIONS",
    "database_table_schemas",
    "database_table_names",
    "CELERY_RESULT_DB_TABLENAMES",
    "database_create_tables_at_setup",
    "sqlalchemy_dburi",
    "CELERY_RESULT_DBURI",
    "result_persistent",
    "CELERY_RESULT_PERSISTENT",
    "result_exchange",
    "CELERY_RESULT_EXCHANGE",
    "result_exchange_type",
    "CELERY_RESULT_EXCHANGE_TYPE",
    "cache_backend",
    "CELERY_CACHE_BACKEND",
    "cache_backend_options",
    "CELERY_CACHE_BACKEND_OPTIONS",
    "mongodb_backend_settings",
    "CELERY_MONGODB_BACKEND_SETTINGS",
    "redis_backend_health_check_interval",
    "redis_backend_use_ssl",
    "redis_max_connections",
    "CELERY_REDIS_MAX_CONNECTIONS",
    "redis_socket_connect_timeout",
    "redis_socket_timeout",
    "redis_retry_on_timeout",
    "redis_socket_keepalive",
    "redis_host",
    "CELERY_REDIS_HOST",
    "redis_port",
    "CELERY_REDIS_PORT",
    "redis_db",
    "CELERY_REDIS_DB",
    "redis_password",
    "CELERY_REDIS_PASSWORD",
    "redis_username",
    "cassandra_servers",
    "CASSANDRA_SERVERS",
    "cassandra_keyspace",
    "cassandra_table",
    "cassandra_read_consistency",
    "cassandra_write_consistency",
    "cassandra_entry_ttl",
    "cassandra_auth_provider",
    "cassandra_auth_kwargs",
    "cassandra_options",
    "cassandra_port",
    "s3_access_key_id",
    "s3_secret_access_key",
    "s3_bucket",
    "s3_base_path",
    "s3_endpoint_url",
    "s3_region",
    "azureblockblob_container_name",
    "azureblockblob_retry_initial_backoff_sec",
    "azureblockblob_retry_increment_base",
    "azureblockblob_retry_max_attempts",
    "azureblockblob_base_path",
    "azureblockblob_connection_timeout",
    "azureblockblob_read_timeout",
    "gcs_bucket",
    "gcs_project",
    "gcs_base_path",
    "gcs_ttl",
    "gcs_threadpool_maxsize",
    "elasticsearch_retry_on_timeout",
    "elasticsearch_max_retries",
    "elasticsearch_timeout",
    "elasticsearch_save_meta_as_text",
    "riak_backend_settings",
    "CELERY_RIAK_BACKEND_SETTINGS",
    "arangodb_backend_settings",
    "cosmosdbsql_database_name",
    "cosmosdbsql_collection_name",
    "cosmosdbsql_consistency_level",
    "cosmosdbsql_max_retry_attempts",
    "cosmosdbsql_max_retry_wait_time",
    "couchbase_backend_settings",
    "CELERY_COUCHBASE_BACKEND_SETTINGS",
    "task_queues",
    "CELERY_QUEUES",
    "task_routes",
    "CELERY_ROUTES",
    "task_queue_max_priority",
    "task_default_priority",
    "task_inherit_parent_priority",
    "worker_direct",
    "CELERY_WORKER_DIRECT",
    "task_create_missing_queues",
    "CELERY_CREATE_MISSING_QUEUES",
    "task_create_missing_queue_type",
    "task_create_missing_queue_exchange_type",
    "task_default_queue",
    "CELERY_DEFAULT_QUEUE",
    "task_default_queue_type",
    "task_default_exchange",
    "CELERY_DEFAULT_EXCHANGE",
    "task_default_exchange_type",
    "CELERY_DEFAULT_EXCHANGE_TYPE",
    "task_default_routing_key",
    "CELERY_DEFAULT_ROUTING_KEY",
    "task_default_delivery_mode",
    "CELERY_DEFAULT_DELIVERY_MODE",
    "worker_detect_quorum_queues",
    "broker_url",
    "BROKER_URL",
    "broker_read_url",
    "broker_write_url",
    "broker_failover_strategy",
    "BROKER_FAILOVER_STRATEGY",
    "broker_heartbeat",
    "BROKER_HEARTBEAT",
    "broker_heartbeat_checkrate",
    "BROKER_HEARTBEAT_CHECKRATE",
    "broker_use_ssl",
    "BROKER_USE_SSL",
    "broker_pool_limit",
    "BROKER_POOL_LIMIT",
    "broker_connection_timeout",
    "BROKER_CONNECTION_TIMEOUT",
    "broker_connection_retry",
    "BROKER_CONNECTION_RETRY",
    "broker_connection_retry_on_startup",
    "broker_connection_max_retries",
    "BROKER_CONNECTION_MAX_RETRIES",
    "broker_channel_error_retry",
    "broker_login_method",
    "BROKER_LOGIN_METHOD",
    "broker_native_delayed_delivery_queue_type",
    "broker_transport_options",
    "BROKER_TRANSPORT_OPTIONS",
    "broker_transport",
    "BROKER_TRANSPORT",
    "BROKER_HOST",
    "BROKER_PORT",
    "BROKER_USER",
    "BROKER_PASSWORD",
    "BROKER_VHOST",
    "worker_concurrency",
    "CELERYD_CONCURRENCY",
    "worker_prefetch_multiplier",
    "CELERYD_PREFETCH_MULTIPLIER",
    "worker_enable_prefetch_count_reduction",
    "worker_lost_wait",
    "CELERYD_WORKER_LOST_WAIT",
    "worker_max_tasks_per_child",
    "CELERYD_MAX_TASKS_PER_CHILD",
    "worker_max_memory_per_child",
    "CELERYD_MAX_MEMORY_PER_CHILD",
    "worker_disable_rate_limits",
    "CELERY_DISABLE_RATE_LIMITS",
    "worker_state_db",
    "CELERYD_STATE_DB",
    "worker_timer_precision",
    "CELERYD_TIMER_PRECISION",
    "worker_enable_remote_control",
    "CELERY_ENABLE_REMOTE_CONTROL",
    "worker_proc_alive_timeout",
    "worker_cancel_long_running_tasks_on_connection_loss",
    "worker_soft_shutdown_timeout",
    "worker_enable_soft_shutdown_on_idle",
    "worker_deduplicate_successful_tasks",
    "worker_send_task_events",
    "CELERY_SEND_EVENTS",
    "task_send_sent_event",
    "CELERY_SEND_TASK_SENT_EVENT",
    "event_queue_ttl",
    "CELERY_EVENT_QUEUE_TTL",
    "event_queue_expires",
    "CELERY_EVENT_QUEUE_EXPIRES",
    "event_queue_prefix",
    "event_exchange",
    "event_serializer",
    "CELERY_EVENT_SERIALIZER",
    "control_queue_ttl",
    "control_queue_expires",
    "control_exchange",
    "worker_hijack_root_logger",
    "CELERYD_HIJACK_ROOT_LOGGER",
    "worker_log_color",
    "worker_log_format",
    "CELERYD_LOG_FORMAT",
    "worker_task_log_format",
    "CELERYD_TASK_LOG_FORMAT",
    "worker_redirect_stdouts",
    "CELERY_REDIRECT_STDOUTS",
    "worker_redirect_stdouts_level",
    "CELERY_REDIRECT_STDOUTS_LEVEL",
    "security_key",
    "CELERY_SECURITY_KEY",
    "security_key_password",
    "security_certificate",
    "CELERY_SECURITY_CERTIFICATE",
    "security_cert_store",
    "CELERY_SECURITY_CERT_STORE",
    "security_digest",
    "worker_pool",
    "CELERYD_POOL",
    "worker_pool_restarts",
    "CELERYD_POOL_RESTARTS",
    "worker_autoscaler",
    "CELERYD_AUTOSCALER",
    "worker_consumer",
    "CELERYD_CONSUMER",
    "worker_timer",
    "CELERYD_TIMER",
    "worker_pool_putlocks",
    "beat_schedule",
    "CELERYBEAT_SCHEDULE",
    "beat_scheduler",
    "CELERYBEAT_SCHEDULER",
    "beat_schedule_filename",
    "CELERYBEAT_SCHEDULE_FILENAME",
    "beat_sync_every",
    "CELERYBEAT_SYNC_EVERY",
    "beat_max_loop_interval",
    "CELERYBEAT_MAX_LOOP_INTERVAL",
    "beat_cron_starting_deadline",
    "CELERYD_FORCE_EXECV",
    "CELERY_CHORD_PROPAGATES",
    "CELERYD_LOG_LEVEL",
    "CELERYD_LOG_FILE",
    "CELERY_QUEUE_HA_POLICY",
];

#[test]
fn every_celery_setting_loads() {
    for name in CELERY_SETTINGS {
        assert!(
            keys::file_key(name).is_some() || accepted::accepted(name).is_some(),
            "Celery's `{name}` is neither a setting nor accepted"
        );
        if keys::file_key(name).is_none() {
            // Accepted without an effect: any value loads, with a warning naming the key.
            let loaded = read(&format!("{name} = 1"), &[])
                .unwrap_or_else(|e| panic!("`{name}` should load: {e}"));
            assert_eq!(loaded.settings, Settings::default(), "{name}");
            let [warning] = loaded.deprecations.as_slice() else {
                panic!("one warning for `{name}`: {:?}", loaded.deprecations)
            };
            assert!(warning.contains(&format!("`{name}`")), "{warning}");
            assert!(warning.contains("no effect"), "{warning}");
            // Django's namespaced spelling of a current name loads too.
            if *name == name.to_ascii_lowercase() {
                let django = format!("CELERY_{}", name.to_ascii_uppercase());
                read(&format!("{django} = 1"), &[])
                    .unwrap_or_else(|e| panic!("`{django}` should load: {e}"));
            }
        }
    }
}

#[test]
fn accepted_settings_from_the_environment_warn_and_unrelated_names_stay_unread() {
    let loaded = read(
        "",
        &[
            ("CELERYD_FORCE_EXECV", "true"),
            ("CELERY_BROKER_HEARTBEAT", "10"),
            ("IMPORTS", "x"),
            ("INCLUDE", "/usr/include"),
        ],
    )
    .unwrap();
    assert_eq!(loaded.settings, Settings::default());
    assert_eq!(loaded.deprecations.len(), 2, "{:?}", loaded.deprecations);
    assert!(loaded.deprecations[0].contains("`CELERYD_FORCE_EXECV`"));
    assert!(loaded.deprecations[0].contains("no effect: use --pool process"));
    assert!(loaded.deprecations[1].contains("`CELERY_BROKER_HEARTBEAT` (broker_heartbeat)"));
}

#[test]
fn accepted_names_do_not_shadow_settings_and_appear_once() {
    let mut seen = BTreeSet::new();
    for entry in accepted::ACCEPTED {
        assert!(!entry.note.is_empty());
        assert!(entry.note.contains("no effect"), "{}", entry.note);
        for name in entry.names {
            assert!(keys::file_key(name).is_none(), "`{name}` is a setting");
            assert!(seen.insert(name.to_ascii_lowercase()), "`{name}` twice");
        }
    }
}

const DJANGO_PROJECT: &str = include_str!("fixtures/django_project.toml");

#[test]
fn a_django_projects_celery_config_loads_with_celerys_meaning() {
    let document: toml::Table = DJANGO_PROJECT.parse().unwrap();
    let loaded = resolve(celery_table(document).unwrap(), std::iter::empty()).unwrap();
    let s = &loaded.settings;
    assert_eq!(s.broker_url, "sqlite://celery.sqlite3");
    assert_eq!(s.result_backend, "django-db");
    assert_eq!(s.database_url(), "sqlite://celery.sqlite3");
    assert_eq!(s.timezone, "Europe/Paris");
    assert_eq!(s.accept_content, ["json", "application/json"]);
    assert_eq!(s.result_expiry(), Some(Duration::from_secs(3600)));
    assert!(s.task_track_started && s.task_acks_late && !s.task_ignore_result);
    assert_eq!(s.task_default_queue, "default");
    assert!(!s.task_create_missing_queues);
    assert!(s.worker_send_task_events);
    assert!(!s.rate_limits_enabled());
    assert_eq!(s.default_rate_limit().unwrap(), None);
    assert_eq!(s.concurrency(), 2);
    assert_eq!(s.worker_prefetch_multiplier, 1);
    assert_eq!(s.worker_max_tasks_per_child, Some(100));
    assert_eq!(s.task_time_limit, Some(300.0));
    assert_eq!(s.task_soft_time_limit, Some(240.0));
    assert_eq!(s.visibility_timeout(), Duration::from_secs(43200));
    assert_eq!(s.default_worker_queues(), ["default", "emails", "priority"]);
    let emails = &s.queues()[1];
    assert_eq!(
        (
            emails.exchange(),
            emails.exchange_type.as_str(),
            emails.routing_key()
        ),
        ("emails", "topic", "emails.#")
    );
    assert_eq!(
        s.queues()[2].queue_arguments["x-max-priority"].as_integer(),
        Some(10)
    );
    assert_eq!(s.queue_for("example_site.accounts.tasks.send"), "emails");
    assert_eq!(
        s.route_for("example_site.reports.tasks.build")
            .unwrap()
            .priority,
        Some(7)
    );
    assert_eq!(s.queue_for("example_site.demo.tasks.add"), "default");
    assert!(s.beat_schedule.contains_key("add every 30 seconds"));

    let warnings = loaded.deprecations.join("\n");
    for expected in [
        "`BROKER_URL` in [celery] is a deprecated Celery 3 name: rename it to `broker_url`",
        "`CELERY_QUEUES` in [celery] is a deprecated Celery 3 name: rename it to `task_queues`",
        "`CELERYD_CONCURRENCY` in [celery] is a deprecated Celery 3 name: rename it to `worker_concurrency`",
        "`CELERY_DISABLE_RATE_LIMITS` in [celery] is a deprecated Celery 3 name: rename it to `worker_disable_rate_limits`",
        "`CELERY_SEND_EVENTS` in [celery] is a deprecated Celery 3 name: rename it to `worker_send_task_events`",
        "`CELERYD_FORCE_EXECV` in [celery] (CELERYD_FORCE_EXECV): no effect: use --pool process",
        "`CELERYD_MAX_MEMORY_PER_CHILD` in [celery] is a deprecated Celery 3 name: rename it to `worker_max_memory_per_child`",
        "`CELERY_SEND_TASK_SENT_EVENT` in [celery] is a deprecated Celery 3 name: rename it to `task_send_sent_event`",
        "`CELERY_REJECT_ON_WORKER_LOST` in [celery] is a deprecated Celery 3 name: rename it to `task_reject_on_worker_lost`",
        "`CELERYBEAT_SCHEDULER` in [celery] (beat_scheduler): no effect",
        "`CELERY_IMPORTS` in [celery] (imports): no effect: Rust tasks are registered in code",
    ] {
        assert!(warnings.contains(expected), "missing {expected:?} in:\n{warnings}");
    }
    // Django-namespaced current names need no warning.
    assert!(!warnings.contains("CELERY_TIMEZONE"), "{warnings}");
}
