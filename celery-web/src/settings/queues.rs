//! `task_queues`: the queues a site declares, as in Celery's `task_queues` (Celery 3's
//! `CELERY_QUEUES`), written as a list of tables.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use toml::Value;

/// Exchange types an AMQP broker knows.
pub(super) const EXCHANGE_TYPES: &[&str] = &["direct", "topic", "fanout", "headers"];

/// One entry of `task_queues`: a queue, the exchange it is bound to and how.
///
/// ```toml
/// [[celery.task_queues]]
/// name = "default"
///
/// [[celery.task_queues]]
/// name = "reports"
/// exchange = "media"
/// exchange_type = "topic"
/// routing_key = "media.#"
/// queue_arguments = { "x-max-priority" = 10 }
/// ```
///
/// ```
/// use celery_web::Settings;
///
/// let settings = Settings::from_toml_str(
///     "[[celery.task_queues]]\nname = \"reports\"\nexchange_type = \"topic\"",
/// )?;
/// let queue = &settings.queues()[0];
/// assert_eq!(queue.exchange(), "reports");
/// assert_eq!(queue.routing_key(), "reports");
/// assert_eq!(queue.exchange_type, "topic");
/// assert!(queue.durable && !queue.auto_delete);
/// # Ok::<(), celery_web::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueDeclaration {
    /// The queue's name.
    pub name: String,
    /// Exchange the queue is bound to; see [`QueueDeclaration::exchange`]. Defaults to unset
    /// (an exchange named as the queue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange: Option<String>,
    /// `direct`, `topic`, `fanout` or `headers`. Defaults to `"direct"`.
    #[serde(default = "direct")]
    pub exchange_type: String,
    /// Binding key; see [`QueueDeclaration::routing_key`]. Defaults to unset (the queue's
    /// name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_key: Option<String>,
    /// Broker arguments of the queue, such as `x-max-priority` or `x-queue-type`.
    /// Defaults to none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub queue_arguments: BTreeMap<String, Value>,
    /// The queue survives a broker restart. Defaults to `true`.
    #[serde(default = "yes")]
    pub durable: bool,
    /// The broker deletes the queue when its last consumer leaves. Defaults to `false`.
    #[serde(default)]
    pub auto_delete: bool,
}

fn direct() -> String {
    "direct".to_owned()
}

fn yes() -> bool {
    true
}

impl QueueDeclaration {
    /// A durable queue on a direct exchange of the same name, bound with its name.
    pub fn new(name: impl Into<String>) -> QueueDeclaration {
        QueueDeclaration {
            name: name.into(),
            exchange: None,
            exchange_type: direct(),
            routing_key: None,
            queue_arguments: BTreeMap::new(),
            durable: true,
            auto_delete: false,
        }
    }

    /// The exchange: `exchange`, or the queue's name when unset (as in Celery).
    pub fn exchange(&self) -> &str {
        self.exchange.as_deref().unwrap_or(&self.name)
    }

    /// The binding key: `routing_key`, or the queue's name when unset (as in Celery).
    pub fn routing_key(&self) -> &str {
        self.routing_key.as_deref().unwrap_or(&self.name)
    }
}
