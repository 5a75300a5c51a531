//! Diesel schema of celery-web's tables (the same for SQLite and PostgreSQL). Times in
//! `celery_message` are microseconds since the Unix epoch; timestamps elsewhere are UTC.

diesel::table! {
    /// Messages of the database broker.
    celery_message (id) {
        /// Row id; with `delivery_count` it makes the delivery tag.
        id -> BigInt,
        /// Queue the message waits in.
        queue -> Text,
        /// 0 (lowest) to 9 (highest).
        priority -> Integer,
        /// Task id (the message's `id` header).
        task_id -> Text,
        /// Task name.
        task_name -> Text,
        /// The kombu envelope, JSON.
        payload -> Text,
        /// When the message can be claimed: its eta, or the end of its current lease.
        visible_at -> BigInt,
        /// The eta it was sent with.
        eta -> Nullable<BigInt>,
        /// How many times it was claimed.
        delivery_count -> Integer,
        /// The worker holding its lease, if any.
        lease_owner -> Nullable<Text>,
        /// When it was enqueued.
        created_at -> BigInt,
    }
}

diesel::table! {
    /// Messages kept for inspection after a worker could not run them.
    celery_dead_message (id) {
        /// Row id.
        id -> BigInt,
        /// Queue it came from.
        queue -> Text,
        /// The message as it was received.
        payload -> Text,
        /// Why it could not run.
        reason -> Text,
        /// When it was set aside.
        created_at -> BigInt,
    }
}

diesel::table! {
    /// Task results (django-celery-results' `TaskResult`).
    celery_taskresult (id) {
        /// Row id.
        id -> BigInt,
        /// Task id, unique.
        task_id -> Text,
        /// The periodic task that sent it, when beat did.
        periodic_task_name -> Nullable<Text>,
        /// Task name.
        task_name -> Nullable<Text>,
        /// Positional arguments, JSON.
        task_args -> Nullable<Text>,
        /// Keyword arguments, JSON.
        task_kwargs -> Nullable<Text>,
        /// PENDING, RECEIVED, STARTED, SUCCESS, FAILURE, RETRY or REVOKED.
        status -> Text,
        /// Hostname of the worker that ran it.
        worker -> Nullable<Text>,
        /// Content type of `result`: `application/json`.
        content_type -> Text,
        /// Encoding of `result`: `utf-8`.
        content_encoding -> Text,
        /// Return value, or Celery's exception dict, JSON.
        result -> Nullable<Text>,
        /// When the row was created.
        date_created -> Timestamp,
        /// When the task started (with `task_track_started`).
        date_started -> Nullable<Timestamp>,
        /// When the row was last written.
        date_done -> Timestamp,
        /// Traceback of a failure.
        traceback -> Nullable<Text>,
        /// Extra metadata, JSON (Celery's `children` and request meta).
        meta -> Nullable<Text>,
        /// Retries before this outcome.
        retries -> Integer,
        /// Queue the task came from.
        queue -> Nullable<Text>,
    }
}

diesel::table! {
    /// Workers, one row per node name: upserted by the worker's heartbeat every 2 seconds.
    celery_worker (hostname) {
        /// Node name (`celery@host`).
        hostname -> Text,
        /// Process id.
        pid -> BigInt,
        /// Execution slots.
        concurrency -> BigInt,
        /// Execution pool: `tokio`.
        pool -> Text,
        /// Queues it consumes, a JSON list.
        queues -> Text,
        /// Tasks running at the last heartbeat.
        active -> BigInt,
        /// Tasks run since it started.
        processed -> BigInt,
        /// Of those, how many succeeded.
        succeeded -> BigInt,
        /// Of those, how many failed.
        failed -> BigInt,
        /// `celery-web <version>`.
        software -> Text,
        /// When it started (UTC).
        started_at -> Timestamp,
        /// Its last heartbeat (UTC).
        last_heartbeat -> Timestamp,
        /// When it stopped cleanly (UTC); NULL while it runs, or if it died.
        stopped_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    /// Revoked task ids: workers skip these tasks until the revocation expires.
    celery_revoked (task_id) {
        /// Task id.
        task_id -> Text,
        /// When it was revoked (UTC).
        revoked_at -> Timestamp,
        /// When the revocation is forgotten (UTC).
        expires_at -> Timestamp,
    }
}

diesel::table! {
    /// Interval schedules (django-celery-beat's `IntervalSchedule`).
    celery_beat_interval (id) {
        /// Row id.
        id -> BigInt,
        /// How many periods between firings, at least 1.
        every -> BigInt,
        /// `days`, `hours`, `minutes`, `seconds` or `microseconds`.
        period -> Text,
    }
}

diesel::table! {
    /// Crontab schedules, Celery's five fields and an IANA timezone.
    celery_beat_crontab (id) {
        /// Row id.
        id -> BigInt,
        /// Minutes, 0-59.
        minute -> Text,
        /// Hours, 0-23.
        hour -> Text,
        /// Days of the week, 0-6 with 0 = Sunday, or `mon`..`sun`.
        day_of_week -> Text,
        /// Days of the month, 1-31.
        day_of_month -> Text,
        /// Months, 1-12 or `jan`..`dec`.
        month_of_year -> Text,
        /// IANA timezone the fields are read in.
        timezone -> Text,
    }
}

diesel::table! {
    /// Solar schedules: an event at a place.
    celery_beat_solar (id) {
        /// Row id.
        id -> BigInt,
        /// `sunrise`, `sunset`, `solar_noon`, `dawn_civil`, ...
        event -> Text,
        /// Degrees north.
        latitude -> Double,
        /// Degrees east.
        longitude -> Double,
    }
}

diesel::table! {
    /// Clocked schedules: one firing at a time.
    celery_beat_clocked (id) {
        /// Row id.
        id -> BigInt,
        /// When, UTC.
        clocked_time -> Timestamp,
    }
}

diesel::table! {
    /// Periodic tasks (django-celery-beat's `PeriodicTask`); exactly one schedule is set.
    celery_periodic_task (id) {
        /// Row id.
        id -> BigInt,
        /// Unique human name; sent as the `periodic_task_name` header.
        name -> Text,
        /// Task name.
        task -> Text,
        /// Interval schedule.
        interval_id -> Nullable<BigInt>,
        /// Crontab schedule.
        crontab_id -> Nullable<BigInt>,
        /// Solar schedule.
        solar_id -> Nullable<BigInt>,
        /// Clocked schedule (requires `one_off`).
        clocked_id -> Nullable<BigInt>,
        /// Positional arguments, a JSON list.
        args -> Text,
        /// Keyword arguments, a JSON object.
        kwargs -> Text,
        /// Queue override.
        queue -> Nullable<Text>,
        /// Exchange override (AMQP).
        exchange -> Nullable<Text>,
        /// Routing key override (AMQP).
        routing_key -> Nullable<Text>,
        /// Extra message headers, a JSON object.
        headers -> Text,
        /// Message priority.
        priority -> Nullable<Integer>,
        /// No firing after this time (UTC); the task is disabled then.
        expires -> Nullable<Timestamp>,
        /// Each message expires this many seconds after it is sent.
        expire_seconds -> Nullable<BigInt>,
        /// Fire once, then disable.
        one_off -> Bool,
        /// No firing before this time (UTC).
        start_time -> Nullable<Timestamp>,
        /// Whether beat fires it.
        enabled -> Bool,
        /// When it last fired (UTC).
        last_run_at -> Nullable<Timestamp>,
        /// How many times it fired.
        total_run_count -> BigInt,
        /// When it was last edited (UTC).
        date_changed -> Timestamp,
        /// Free text.
        description -> Text,
        /// Who owns the row: `db` (the admin, SQL), `settings` (`beat_schedule`) or `code`.
        source -> Text,
    }
}

diesel::table! {
    /// The single-row change marker beat polls.
    celery_beat_change (id) {
        /// Always 1.
        id -> Integer,
        /// Goes up on every edit of a periodic task or schedule.
        version -> BigInt,
        /// When it last went up.
        changed_at -> Timestamp,
    }
}

diesel::table! {
    /// Firings: one row per (periodic task, scheduled time), unique.
    celery_beat_firing (id) {
        /// Row id.
        id -> BigInt,
        /// The periodic task.
        periodic_task_id -> BigInt,
        /// The slot this firing is for (UTC).
        scheduled_at -> Timestamp,
        /// When beat sent it (UTC).
        fired_at -> Timestamp,
        /// The id of the task it sent.
        task_id -> Text,
        /// The beat process that sent it (`host:pid`).
        beat -> Text,
    }
}

diesel::table! {
    /// Chord joins of the database backend (django-celery-results' `ChordCounter`).
    celery_chordcounter (id) {
        /// Row id.
        id -> BigInt,
        /// The chord header's group id.
        group_id -> Text,
        /// The header's results as Celery's tuples, JSON: `[[["<id>", null], null], ...]`.
        sub_tasks -> Text,
        /// Header tasks not finished yet.
        count -> BigInt,
    }
}

diesel::joinable!(celery_periodic_task -> celery_beat_interval (interval_id));
diesel::joinable!(celery_periodic_task -> celery_beat_crontab (crontab_id));
diesel::joinable!(celery_periodic_task -> celery_beat_solar (solar_id));
diesel::joinable!(celery_periodic_task -> celery_beat_clocked (clocked_id));
diesel::joinable!(celery_beat_firing -> celery_periodic_task (periodic_task_id));
diesel::allow_tables_to_appear_in_same_query!(
    celery_periodic_task,
    celery_beat_interval,
    celery_beat_crontab,
    celery_beat_solar,
    celery_beat_clocked,
    celery_beat_firing,
);
