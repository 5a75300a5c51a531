//! What the AMQP broker declares, exactly as kombu declares it (RabbitMQ closes the channel
//! with 406 PRECONDITION_FAILED when flags or arguments differ, so a Python worker and a
//! celery-web worker could not share a queue otherwise).
//!
//! | entity | declaration |
//! |---|---|
//! | a queue of `task_queues`, or one named by a route or `task_default_queue` | durable, not auto-delete (unless configured), `queue_arguments`; `x-max-priority` on every queue when `task_queue_max_priority` is set; `x-queue-type: quorum` on the default queue when `task_default_queue_type = "quorum"` |
//! | its exchange (named as the queue unless given) | the queue's `exchange_type`, durable; the queue bound with its routing key |
//! | `celery_delayed_27` … `celery_delayed_0` | Celery 5.5's native delayed delivery: topic exchanges and queues (`broker_native_delayed_delivery_queue_type`, quorum by default) with a TTL of 2^L s that dead-letter into the next level |
//! | `celery_delayed_delivery` | topic exchange the last level ends in, bound to each queue's exchange (`#.<routing key>`); a queue on a direct exchange is bound to it directly (a celery-web addition: Celery skips such queues) |
//! | `_celery_web.dead.<queue>` | durable classic queue: messages a worker could not run, with the reason (celery-web only) |
//!
//! A countdown of `n` whole seconds is routed into level 27 with a key of 28 binary digits
//! of `n` (most significant first, each followed by `.`) and the queue's routing key; each
//! level holds the message 2^L s when its bit is set and passes it on at once when not.

use std::collections::BTreeMap;

use lapin::options::{
    ExchangeBindOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};

use super::fields;
use crate::settings::QueueDeclaration;
use crate::{Error, Result, Settings};

/// Levels of the delay topology: countdowns up to 2^28 − 1 s.
pub(crate) const DELAY_LEVELS: u32 = 28;
/// The exchange the last level dead-letters into.
pub(crate) const DELAYED_DELIVERY: &str = "celery_delayed_delivery";

/// The name of delay level `level`.
pub(crate) fn delay_level(level: u32) -> String {
    format!("celery_delayed_{level}")
}

/// The routing key that carries a message through the delay levels for `countdown` seconds
/// to `routing_key` (kombu's `calculate_routing_key`).
///
/// ```text
/// delayed_routing_key(5, "celery") == "0.0.…0.1.0.1.celery" (28 digits)
/// ```
pub(crate) fn delayed_routing_key(countdown: u64, routing_key: &str) -> String {
    let countdown = countdown.min((1 << DELAY_LEVELS) - 1);
    let mut key = String::with_capacity(2 * DELAY_LEVELS as usize + routing_key.len());
    for bit in (0..DELAY_LEVELS).rev() {
        key.push(if countdown >> bit & 1 == 1 { '1' } else { '0' });
        key.push('.');
    }
    key.push_str(routing_key);
    key
}

/// The queue that keeps messages a worker could not run (celery-web only).
pub(crate) fn dead_queue(queue: &str) -> String {
    format!("_celery_web.dead.{queue}")
}

/// How a site's queues are declared: `task_queues`, `task_default_queue`,
/// `task_queue_max_priority`, `task_default_queue_type` and
/// `broker_native_delayed_delivery_queue_type`.
#[derive(Debug, Clone)]
pub struct Topology {
    queues: Vec<QueueDeclaration>,
    default_queue: String,
    max_priority: Option<u8>,
    default_quorum: bool,
    delayed_quorum: bool,
}

impl Default for Topology {
    fn default() -> Self {
        Topology::from_settings(&Settings::default())
    }
}

impl Topology {
    /// The declarations `settings` asks for.
    pub fn from_settings(settings: &Settings) -> Topology {
        Topology {
            queues: settings.queues().to_vec(),
            default_queue: settings.task_default_queue.clone(),
            max_priority: settings.task_queue_max_priority,
            default_quorum: settings.task_default_queue_type == "quorum",
            delayed_quorum: settings.broker_native_delayed_delivery_queue_type == "quorum",
        }
    }

    /// `x-max-priority` on every queue (what `task_queue_max_priority` does).
    pub fn with_max_priority(mut self, max_priority: u8) -> Topology {
        self.max_priority = Some(max_priority);
        self
    }

    /// The declaration of `queue`: its `task_queues` entry or a durable queue on a direct
    /// exchange of its name, with Celery's arguments added.
    pub fn queue(&self, queue: &str) -> QueueDeclaration {
        let mut declaration = self
            .queues
            .iter()
            .find(|q| q.name == queue)
            .cloned()
            .unwrap_or_else(|| QueueDeclaration::new(queue));
        let arguments = &mut declaration.queue_arguments;
        if self.default_quorum && queue == self.default_queue {
            arguments
                .entry("x-queue-type".to_owned())
                .or_insert_with(|| toml::Value::String("quorum".to_owned()));
        }
        let quorum = is_quorum(&declaration);
        if let (Some(max), false) = (self.max_priority, quorum) {
            declaration
                .queue_arguments
                .entry("x-max-priority".to_owned())
                .or_insert(toml::Value::Integer(i64::from(max)));
        }
        declaration
    }

    /// Whether the consumer's QoS must be per consumer: RabbitMQ does not support a global
    /// prefetch on quorum queues (Celery's `worker_detect_quorum_queues`).
    pub(crate) fn any_quorum(&self, queues: &[String]) -> bool {
        queues.iter().any(|q| is_quorum(&self.queue(q)))
    }

    /// Where a message for `queue` is published: Celery sends to the default exchange `""`
    /// with the queue's name when the queue's exchange is direct, else to the exchange with
    /// the queue's routing key.
    pub(crate) fn route(&self, queue: &str) -> (String, String) {
        let declaration = self.queue(queue);
        if declaration.exchange_type == "direct" {
            (String::new(), declaration.name)
        } else {
            (
                declaration.exchange().to_owned(),
                declaration.routing_key().to_owned(),
            )
        }
    }

    /// Declares `queue`, its exchange and binding, and its link from the delay topology.
    pub(crate) async fn declare_queue(&self, channel: &Channel, queue: &str) -> Result<()> {
        let declaration = self.queue(queue);
        let exchange = declaration.exchange().to_owned();
        let key = declaration.routing_key().to_owned();
        let arguments = arguments(&declaration.queue_arguments)?;
        channel
            .exchange_declare(
                exchange.as_str().into(),
                exchange_kind(&declaration.exchange_type),
                ExchangeDeclareOptions {
                    durable: declaration.durable,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| refused("exchange", &exchange, e))?;
        channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    durable: declaration.durable,
                    auto_delete: declaration.auto_delete,
                    ..QueueDeclareOptions::default()
                },
                arguments,
            )
            .await
            .map_err(|e| refused("queue", queue, e))?;
        channel
            .queue_bind(
                queue.into(),
                exchange.as_str().into(),
                key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| refused("binding of queue", queue, e))?;
        Ok(())
    }

    /// Binds `queue` to the end of the delay topology (which must be declared): its
    /// exchange gets what `celery_delayed_delivery` routes with `#.<routing key>`, or, on a
    /// direct exchange, the queue itself does.
    pub(crate) async fn bind_delayed(&self, channel: &Channel, queue: &str) -> Result<()> {
        let declaration = self.queue(queue);
        let (exchange, key) = self.route(queue);
        let key = if key.starts_with('#') {
            key
        } else {
            format!("#.{key}")
        };
        if exchange.is_empty() {
            channel
                .queue_bind(
                    queue.into(),
                    DELAYED_DELIVERY.into(),
                    key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| refused("delayed binding of queue", queue, e))?;
        } else {
            channel
                .exchange_bind(
                    exchange.as_str().into(),
                    DELAYED_DELIVERY.into(),
                    key.as_str().into(),
                    ExchangeBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| refused("delayed binding of exchange", &exchange, e))?;
            channel
                .queue_bind(
                    queue.into(),
                    declaration.exchange().into(),
                    key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| refused("delayed binding of queue", queue, e))?;
        }
        Ok(())
    }

    /// Declares Celery 5.5's native delayed delivery levels as its `DelayedDelivery` bootstep
    /// does.
    pub(crate) async fn declare_delay_levels(&self, channel: &Channel) -> Result<()> {
        let topic = || ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        channel
            .exchange_declare(
                DELAYED_DELIVERY.into(),
                ExchangeKind::Topic,
                topic(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| refused("exchange", DELAYED_DELIVERY, e))?;
        // Every exchange first: each level's exchange is bound to the next one's.
        for level in (0..DELAY_LEVELS).rev() {
            let name = delay_level(level);
            channel
                .exchange_declare(
                    name.as_str().into(),
                    ExchangeKind::Topic,
                    topic(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| refused("exchange", &name, e))?;
        }
        for level in (0..DELAY_LEVELS).rev() {
            let name = delay_level(level);
            let next = match level {
                0 => DELAYED_DELIVERY.to_owned(),
                _ => delay_level(level - 1),
            };
            let mut arguments = FieldTable::default();
            let queue_type = if self.delayed_quorum {
                "quorum"
            } else {
                "classic"
            };
            arguments.insert("x-queue-type".into(), long_string(queue_type));
            arguments.insert("x-overflow".into(), long_string("reject-publish"));
            arguments.insert(
                "x-message-ttl".into(),
                fields::to_amqp(&serde_json::Value::from((1u64 << level) * 1000))
                    .expect("a number converts"),
            );
            arguments.insert("x-dead-letter-exchange".into(), long_string(&next));
            if self.delayed_quorum {
                arguments.insert(
                    "x-dead-letter-strategy".into(),
                    long_string("at-least-once"),
                );
            }
            channel
                .queue_declare(
                    name.as_str().into(),
                    QueueDeclareOptions {
                        durable: true,
                        ..QueueDeclareOptions::default()
                    },
                    arguments,
                )
                .await
                .map_err(|e| refused("queue", &name, e))?;
            let skip = "*.".repeat((DELAY_LEVELS - 1 - level) as usize);
            channel
                .queue_bind(
                    name.as_str().into(),
                    name.as_str().into(),
                    format!("{skip}1.#").into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| refused("binding of queue", &name, e))?;
            channel
                .exchange_bind(
                    next.as_str().into(),
                    name.as_str().into(),
                    format!("{skip}0.#").into(),
                    ExchangeBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| refused("binding of exchange", &name, e))?;
        }
        Ok(())
    }

    /// Declares the queue that keeps `queue`'s bad messages.
    pub(crate) async fn declare_dead(&self, channel: &Channel, queue: &str) -> Result<String> {
        let dead = dead_queue(queue);
        channel
            .queue_declare(
                dead.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| refused("queue", &dead, e))?;
        Ok(dead)
    }
}

fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

fn is_quorum(declaration: &QueueDeclaration) -> bool {
    declaration
        .queue_arguments
        .get("x-queue-type")
        .and_then(toml::Value::as_str)
        == Some("quorum")
}

fn exchange_kind(kind: &str) -> ExchangeKind {
    match kind {
        "direct" => ExchangeKind::Direct,
        "topic" => ExchangeKind::Topic,
        "fanout" => ExchangeKind::Fanout,
        "headers" => ExchangeKind::Headers,
        other => ExchangeKind::Custom(other.to_owned()),
    }
}

/// `queue_arguments` (TOML) as a field table.
fn arguments(arguments: &BTreeMap<String, toml::Value>) -> Result<FieldTable> {
    let json = serde_json::to_value(arguments)
        .map_err(|e| Error::Config(format!("queue_arguments: {e}")))?;
    let serde_json::Value::Object(map) = json else {
        unreachable!("a map serializes as an object")
    };
    fields::to_table(&map).map_err(|e| Error::Config(format!("queue_arguments: {e}")))
}

/// A declaration the broker refused, naming what and why (a 406 means another client
/// declared it with other flags or arguments).
fn refused(what: &str, name: &str, error: lapin::Error) -> Error {
    let hint = if error.to_string().contains("PRECONDITION_FAILED") {
        " (it exists with other flags or arguments: match task_queues, \
         task_queue_max_priority and task_default_queue_type to the other clients')"
    } else {
        ""
    };
    Error::broker(format!(
        "RabbitMQ refused to declare {what} `{name}`: {error}{hint}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delayed_keys_are_kombus() {
        // Captured from Celery 5.5.3, countdown 5.
        assert_eq!(
            delayed_routing_key(5, "cwres_qq"),
            "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.1.cwres_qq"
        );
        assert!(delayed_routing_key(u64::MAX, "q").starts_with(&"1.".repeat(28)));
    }

    #[test]
    fn celery_arguments_are_added() {
        let settings = Settings::from_toml_str(
            "[celery]\ntask_queue_max_priority = 10\ntask_default_queue_type = \"quorum\"\n\
             task_queues = [{ name = \"media\", exchange_type = \"topic\", routing_key = \"media.#\" }, { name = \"celery\" }]",
        )
        .unwrap();
        let topology = Topology::from_settings(&settings);
        let default = topology.queue("celery");
        assert_eq!(
            default.queue_arguments["x-queue-type"].as_str(),
            Some("quorum")
        );
        assert!(
            !default.queue_arguments.contains_key("x-max-priority"),
            "quorum queues refuse x-max-priority"
        );
        let media = topology.queue("media");
        assert_eq!(
            media.queue_arguments["x-max-priority"].as_integer(),
            Some(10)
        );
        assert_eq!(topology.route("media"), ("media".into(), "media.#".into()));
        assert_eq!(topology.route("celery"), (String::new(), "celery".into()));
        assert_eq!(topology.route("other"), (String::new(), "other".into()));
        assert!(topology.any_quorum(&["media".into(), "celery".into()]));
        assert!(!topology.any_quorum(&["media".into()]));
    }
}
