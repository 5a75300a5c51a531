//! Diesel schema of celery-web's tables (the same for SQLite and PostgreSQL).

diesel::table! {
    /// Messages of the database broker.
    celery_message (id) {
        id -> BigInt,
        queue -> Text,
        priority -> Integer,
        task_id -> Text,
        task_name -> Text,
        payload -> Text,
        visible_at -> BigInt,
        eta -> Nullable<BigInt>,
        delivery_count -> Integer,
        lease_owner -> Nullable<Text>,
        created_at -> BigInt,
    }
}

diesel::table! {
    /// Messages kept for inspection after a worker could not run them.
    celery_dead_message (id) {
        id -> BigInt,
        queue -> Text,
        payload -> Text,
        reason -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    /// Task results (django-celery-results' `TaskResult`).
    celery_taskresult (id) {
        id -> BigInt,
        task_id -> Text,
        periodic_task_name -> Nullable<Text>,
        task_name -> Nullable<Text>,
        task_args -> Nullable<Text>,
        task_kwargs -> Nullable<Text>,
        status -> Text,
        worker -> Nullable<Text>,
        content_type -> Text,
        content_encoding -> Text,
        result -> Nullable<Text>,
        date_created -> Timestamp,
        date_started -> Nullable<Timestamp>,
        date_done -> Timestamp,
        traceback -> Nullable<Text>,
        meta -> Nullable<Text>,
        retries -> Integer,
        queue -> Nullable<Text>,
    }
}
