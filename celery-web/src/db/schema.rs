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
