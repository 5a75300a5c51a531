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
        "#,
        &[],
    );
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
