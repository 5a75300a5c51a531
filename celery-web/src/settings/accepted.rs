//! Celery settings that celery-web reads without giving them an effect (yet), in one table:
//! each is accepted with a warning that says what has no effect and what replaces it or would
//! give it effect, so that a Django project's Celery config loads unchanged.

/// One accepted setting: its spellings and the warning's text.
#[derive(Debug)]
pub(super) struct Accepted {
    /// Celery's current (lower-case) name first, then its Celery 3 upper-case names. For a
    /// setting Celery itself removed, the old name only.
    pub(super) names: &'static [&'static str],
    /// What the warning says after the key: `accepted; no effect yet: ...` or `no effect: ...`.
    pub(super) note: &'static str,
}

const fn yet(names: &'static [&'static str], note: &'static str) -> Accepted {
    Accepted { names, note }
}

/// Every Celery 5.5 setting (and Celery 3 name) that celery-web accepts without an effect.
/// Settings with an effect are [`KNOWN`](super::keys::KNOWN).
pub(super) const ACCEPTED: &[Accepted] = &[
    // --- Removed by Celery itself --------------------------------------------------------------
    yet(&["CELERYD_FORCE_EXECV"], "no effect: use --pool process (celery-web's process pool always starts fresh children)"),
    yet(&["CELERY_CHORD_PROPAGATES"], "no effect: chord errors always propagate, as in Celery 4+"),
    yet(&["CELERYD_LOG_LEVEL", "CELERYBEAT_LOG_LEVEL"], "no effect: use --loglevel or RUST_LOG"),
    yet(&["CELERYD_LOG_FILE", "CELERYBEAT_LOG_FILE"], "no effect: logs go to stderr; redirect them"),
    yet(&["CELERYD_LOG_COLOR", "worker_log_color"], "accepted; no effect yet: log colours follow the terminal"),
    yet(&["CELERY_QUEUE_HA_POLICY"], "no effect: set the policy on the RabbitMQ server (or x-queue-type = \"quorum\" in task_queues' queue_arguments)"),
    yet(&["CELERY_REDIRECT_STDOUTS", "worker_redirect_stdouts"], "accepted; no effect yet: a task's stdout and stderr are the worker's"),
    yet(&["CELERY_REDIRECT_STDOUTS_LEVEL", "worker_redirect_stdouts_level"], "accepted; no effect yet: a task's stdout and stderr are the worker's"),
    yet(&["BROKER_HOST", "BROKER_PORT", "BROKER_USER", "BROKER_PASSWORD", "BROKER_VHOST"], "no effect: put host, port, user, password and virtual host in broker_url"),
    yet(&["broker_transport"], "no effect: broker_url's scheme names the transport"),
    yet(&["CELERY_RESULT_DBURI", "sqlalchemy_dburi"], "no effect: use result_backend = \"db+<url>\" or database_url"),
    yet(&["CELERY_RESULT_ENGINE_OPTIONS", "database_engine_options", "sqlalchemy_engine_options"], "accepted; no effect yet: celery-web's database pool is configured by the URL"),
    // --- General --------------------------------------------------------------------------------
    yet(&["result_accept_content"], "accepted; no effect yet: results are always JSON (accept_content)"),
    yet(&["imports", "CELERY_IMPORTS"], "no effect: Rust tasks are registered in code (App::builder().task(...))"),
    yet(&["include", "CELERY_INCLUDE"], "no effect: Rust tasks are registered in code (App::builder().task(...))"),
    // --- Tasks ----------------------------------------------------------------------------------
    yet(&["task_annotations", "CELERY_ANNOTATIONS"], "accepted; no effect yet: set options on the task (#[task(rate_limit = ...)]) instead"),
    yet(&["task_compression", "CELERY_MESSAGE_COMPRESSION"], "accepted; no effect yet: messages are sent uncompressed"),
    yet(&["task_protocol", "CELERY_TASK_PROTOCOL"], "no effect: celery-web always speaks task protocol 2"),
    yet(&["task_publish_retry", "CELERY_TASK_PUBLISH_RETRY"], "accepted; no effect yet: a failed send is returned as an error"),
    yet(&["task_publish_retry_policy", "CELERY_TASK_PUBLISH_RETRY_POLICY"], "accepted; no effect yet: a failed send is returned as an error"),
    yet(&["task_remote_tracebacks", "CELERY_TASK_REMOTE_TRACEBACKS"], "no effect: a failed task's error is always stored with its result"),
    yet(&["task_store_errors_even_if_ignored", "CELERY_STORE_ERRORS_EVEN_IF_IGNORED"], "accepted; no effect yet: ignored results are never stored"),
    yet(&["task_acks_on_failure_or_timeout"], "accepted; no effect yet: with task_acks_late a failed task's message is acknowledged"),
    yet(&["task_allow_error_cb_on_chord_header"], "accepted; no effect yet"),
    yet(&["task_inherit_parent_priority", "CELERY_INHERIT_PARENT_PRIORITY"], "accepted; no effect yet: set the priority when sending"),
    yet(&["task_create_missing_queue_type", "task_create_missing_queue_exchange_type"], "accepted; no effect yet"),
    yet(&["task_default_exchange", "CELERY_DEFAULT_EXCHANGE"], "accepted; no effect yet: messages go to the queue's own exchange; declare exchanges in task_queues"),
    yet(&["task_default_exchange_type", "CELERY_DEFAULT_EXCHANGE_TYPE"], "accepted; no effect yet: declare exchange types in task_queues"),
    yet(&["task_default_routing_key", "CELERY_DEFAULT_ROUTING_KEY"], "accepted; no effect yet: the routing key is the queue's name"),
    yet(&["task_default_delivery_mode", "CELERY_DEFAULT_DELIVERY_MODE"], "accepted; no effect yet: messages are persistent"),
    yet(&["worker_direct", "CELERY_WORKER_DIRECT"], "accepted; no effect yet: workers consume no per-worker queue"),
    yet(&["worker_detect_quorum_queues"], "accepted; no effect yet"),
    // --- Results --------------------------------------------------------------------------------
    yet(&["result_backend_always_retry", "result_backend_max_retries", "result_backend_base_sleep_between_retries_ms", "result_backend_max_sleep_between_retries_ms"], "accepted; no effect yet: a failed store is logged and not retried"),
    yet(&["result_backend_thread_safe"], "no effect: celery-web's backends are always shared between threads"),
    yet(&["result_backend_transport_options", "CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS"], "accepted; no effect yet"),
    yet(&["result_compression", "CELERY_RESULT_COMPRESSION"], "accepted; no effect yet: results are stored uncompressed"),
    yet(&["result_cache_max", "CELERY_MAX_CACHED_RESULTS"], "no effect: results are not cached in the client"),
    yet(&["result_chord_join_timeout", "result_chord_retry_interval"], "accepted; no effect yet"),
    yet(&["result_persistent", "CELERY_RESULT_PERSISTENT"], "no effect: celery-web's result backends are persistent"),
    yet(&["result_exchange", "CELERY_RESULT_EXCHANGE", "result_exchange_type", "CELERY_RESULT_EXCHANGE_TYPE"], "no effect: there is no rpc:// (AMQP) result backend"),
    yet(&["override_backends"], "no effect: result_backend names the backend"),
    yet(&["database_short_lived_sessions", "CELERY_RESULT_DB_SHORT_LIVED_SESSIONS", "database_table_schemas", "CELERY_RESULT_DB_TABLE_SCHEMAS", "database_table_names", "CELERY_RESULT_DB_TABLENAMES", "database_create_tables_at_setup"], "no effect: celery-web's tables are celery_taskresult and friends, made by the migrate command"),
    yet(&["cache_backend", "CELERY_CACHE_BACKEND", "cache_backend_options", "CELERY_CACHE_BACKEND_OPTIONS"], "no effect: there is no cache (memcached) result backend; use result_backend = \"redis://...\" or \"db\""),
    yet(&["mongodb_backend_settings", "CELERY_MONGODB_BACKEND_SETTINGS", "riak_backend_settings", "CELERY_RIAK_BACKEND_SETTINGS", "couchbase_backend_settings", "CELERY_COUCHBASE_BACKEND_SETTINGS", "arangodb_backend_settings"], "no effect: this result backend does not exist in celery-web; use result_backend = \"db\" or \"redis://...\""),
    yet(&["cassandra_servers", "cassandra_port", "cassandra_keyspace", "cassandra_table", "CASSANDRA_COLUMN_FAMILY", "cassandra_read_consistency", "cassandra_write_consistency", "cassandra_entry_ttl", "cassandra_auth_provider", "cassandra_auth_kwargs", "cassandra_options", "cassandra_secure_bundle_path"], "no effect: there is no Cassandra result backend; use result_backend = \"db\" or \"redis://...\""),
    yet(&["s3_access_key_id", "s3_secret_access_key", "s3_bucket", "s3_base_path", "s3_endpoint_url", "s3_region"], "no effect: there is no S3 result backend; use result_backend = \"db\" or \"redis://...\""),
    yet(&["azureblockblob_container_name", "azureblockblob_base_path", "azureblockblob_retry_initial_backoff_sec", "azureblockblob_retry_increment_base", "azureblockblob_retry_max_attempts", "azureblockblob_connection_timeout", "azureblockblob_read_timeout"], "no effect: there is no Azure Blob result backend; use result_backend = \"db\" or \"redis://...\""),
    yet(&["gcs_bucket", "gcs_project", "gcs_base_path", "gcs_ttl", "gcs_threadpool_maxsize"], "no effect: there is no Google Cloud Storage result backend; use result_backend = \"db\" or \"redis://...\""),
    yet(&["elasticsearch_retry_on_timeout", "elasticsearch_max_retries", "elasticsearch_timeout", "elasticsearch_save_meta_as_text"], "no effect: there is no Elasticsearch result backend; use result_backend = \"db\" or \"redis://...\""),
    yet(&["cosmosdbsql_database_name", "cosmosdbsql_collection_name", "cosmosdbsql_consistency_level", "cosmosdbsql_max_retry_attempts", "cosmosdbsql_max_retry_wait_time"], "no effect: there is no CosmosDB result backend; use result_backend = \"db\" or \"redis://...\""),
    yet(&["redis_backend_health_check_interval", "redis_backend_use_ssl", "redis_max_connections", "CELERY_REDIS_MAX_CONNECTIONS", "redis_socket_connect_timeout", "redis_socket_timeout", "redis_retry_on_timeout", "redis_socket_keepalive", "redis_username"], "accepted; no effect yet: the Redis result backend takes its options from its URL"),
    yet(&["redis_host", "CELERY_REDIS_HOST", "redis_port", "CELERY_REDIS_PORT", "redis_db", "CELERY_REDIS_DB", "redis_password", "CELERY_REDIS_PASSWORD"], "no effect: put host, port, database and password in result_backend = \"redis://...\""),
    // --- Broker ---------------------------------------------------------------------------------
    yet(&["broker_read_url", "broker_write_url"], "accepted; no effect yet: broker_url is used to read and write"),
    yet(&["broker_failover_strategy"], "accepted; no effect yet: fail-over URLs (separated by `;`) are tried in order"),
    yet(&["broker_heartbeat", "broker_heartbeat_checkrate"], "accepted; no effect yet: AMQP heartbeats use the client's default"),
    yet(&["broker_use_ssl"], "no effect: use a rediss:// or amqps:// broker_url"),
    yet(&["broker_connection_timeout"], "accepted; no effect yet: connections use the driver's timeout"),
    yet(&["broker_connection_retry", "broker_connection_retry_on_startup", "broker_connection_max_retries", "broker_channel_error_retry"], "accepted; no effect yet: a worker retries a lost broker connection until it stops"),
    yet(&["broker_login_method"], "accepted; no effect yet: AMQP logs in with PLAIN"),
    // --- Worker ---------------------------------------------------------------------------------
    yet(&["worker_deduplicate_successful_tasks"], "accepted; no effect yet"),
    yet(&["worker_enable_prefetch_count_reduction"], "accepted; no effect yet"),
    yet(&["worker_lost_wait", "CELERYD_WORKER_LOST_WAIT"], "accepted; no effect yet"),
    yet(&["worker_state_db", "CELERYD_STATE_DB"], "no effect: revoked tasks are kept by the broker and result backend, not in a state file"),
    yet(&["worker_timer_precision", "CELERYD_TIMER_PRECISION"], "no effect: timers are precise"),
    yet(&["worker_enable_remote_control", "CELERY_ENABLE_REMOTE_CONTROL"], "accepted; no effect yet"),
    yet(&["worker_proc_alive_timeout", "CELERYD_PROC_ALIVE_TIMEOUT"], "accepted; no effect yet"),
    yet(&["worker_cancel_long_running_tasks_on_connection_loss"], "accepted; no effect yet"),
    yet(&["worker_soft_shutdown_timeout", "worker_enable_soft_shutdown_on_idle"], "accepted; no effect yet: a worker waits for running tasks when it stops"),
    yet(&["worker_pool", "CELERYD_POOL"], "no effect: use the worker's --pool option"),
    yet(&["worker_pool_putlocks", "CELERYD_POOL_PUTLOCKS"], "no effect"),
    yet(&["worker_pool_restarts", "CELERYD_POOL_RESTARTS"], "accepted; no effect yet: there is no pool_restart remote control command"),
    yet(&["worker_autoscaler", "CELERYD_AUTOSCALER", "worker_consumer", "CELERYD_CONSUMER", "worker_timer", "CELERYD_TIMER", "worker_agent", "CELERYD_AGENT"], "no effect: Celery's component classes are Python classes"),
    yet(&["worker_hijack_root_logger", "CELERYD_HIJACK_ROOT_LOGGER"], "no effect: logging is set up with tracing (RUST_LOG)"),
    yet(&["worker_log_format", "CELERYD_LOG_FORMAT", "worker_task_log_format", "CELERYD_TASK_LOG_FORMAT"], "accepted; no effect yet: logs use tracing's format"),
    // --- Events and remote control --------------------------------------------------------------
    yet(&["event_queue_ttl", "CELERY_EVENT_QUEUE_TTL", "event_queue_expires", "CELERY_EVENT_QUEUE_EXPIRES", "event_queue_prefix", "event_exchange", "event_serializer", "CELERY_EVENT_SERIALIZER"], "accepted; no effect yet: events use Celery's default exchange, queues and JSON"),
    yet(&["control_queue_ttl", "control_queue_expires", "control_exchange"], "accepted; no effect yet: remote control uses Celery's defaults"),
    // --- Security -------------------------------------------------------------------------------
    yet(&["security_key", "CELERY_SECURITY_KEY", "security_key_password", "security_certificate", "CELERY_SECURITY_CERTIFICATE", "security_cert_store", "CELERY_SECURITY_CERT_STORE", "security_digest"], "accepted; no effect yet: messages are not signed (the auth serializer is not supported)"),
    // --- Beat -----------------------------------------------------------------------------------
    yet(&["beat_scheduler", "CELERYBEAT_SCHEDULER"], "no effect: beat keeps its schedule in celery-web's database (like django_celery_beat's DatabaseScheduler)"),
    yet(&["beat_schedule_filename", "CELERYBEAT_SCHEDULE_FILENAME"], "no effect: beat keeps its schedule in celery-web's database, not a file"),
    yet(&["beat_sync_every", "CELERYBEAT_SYNC_EVERY"], "no effect: beat writes each run to the database at once"),
    yet(&["beat_cron_starting_deadline"], "accepted; no effect yet"),
];

/// The accepted setting `key` (any case, also with Django's `CELERY_` prefix) spells.
pub(super) fn accepted(key: &str) -> Option<&'static Accepted> {
    let find = |key: &str| {
        ACCEPTED.iter().find(|accepted| {
            accepted
                .names
                .iter()
                .any(|name| name.eq_ignore_ascii_case(key))
        })
    };
    find(key).or_else(|| {
        let lower = key.to_ascii_lowercase();
        let rest = lower.strip_prefix("celery_")?;
        // Only current names take Django's prefix (CELERY_TASK_COMPRESSION).
        ACCEPTED
            .iter()
            .find(|accepted| accepted.names.contains(&rest))
    })
}

/// The accepted setting the environment variable `var` sets: an upper-case Celery 3 name
/// (`CELERYD_FORCE_EXECV`) or `CELERY_` + a current name upper-cased (`CELERY_TASK_COMPRESSION`).
/// Exact case only, so that unrelated variables (`INCLUDE`, `IMPORTS`) are not read.
pub(super) fn env_accepted(var: &str) -> Option<&'static Accepted> {
    ACCEPTED.iter().find(|accepted| {
        accepted.names.iter().any(|name| {
            let upper = name.to_ascii_uppercase();
            (*name == upper && *name == var)
                || (*name != upper && var.strip_prefix("CELERY_") == Some(upper.as_str()))
        })
    })
}
