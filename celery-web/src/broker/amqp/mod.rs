//! The RabbitMQ broker (AMQP 0-9-1 through lapin), sharing queues with Python Celery.
//!
//! Work in progress (issue #11). What exists so far:
//!
//! | part | file | state |
//! |---|---|---|
//! | broker URLs: `amqp://user:pass@host:port/vhost`, `pyamqp://` (Celery's alias), Celery's vhost rules | `url.rs` | done |
//! | kombu's declarations (durable direct exchange named like the queue, durable queue, routing key = queue name, `x-max-priority` only when configured) | — | not yet |
//! | publish with confirms, consume with `basic_qos`, ack / reject / dead-letter | — | not yet |
//!
//! **URLs.** `amqp://h`, `amqp://h/`, `amqp://h//` and `amqp://h/%2f` all mean vhost `/`, as in
//! kombu; lapin alone would read `amqp://h/` as the empty vhost, so URLs are normalised
//! ([`url::AmqpUrl::to_lapin_uri`]). `localhost` becomes `127.0.0.1`. `amqps://` is refused
//! with a clear error: lapin is built without its TLS stack.

pub mod url;
