//! Sending remote-control requests and collecting replies, as Celery's `app.control`
//! does: the request goes to `celery.pidbox`; replies come back on `reply.celery.pidbox`
//! with the caller's oid as routing key and are matched by their `ticket`. Works against
//! Python and celery-web workers alike.
//!
//! ```no_run
//! # async fn demo(app: celery_web::Celery) -> celery_web::Result<()> {
//! use std::time::Duration;
//! use celery_web::control::Control;
//!
//! let replies = Control::new(&app)?
//!     .call("ping", serde_json::Map::new(), None, Duration::from_secs(1))
//!     .await?;
//! for (node, reply) in replies {
//!     println!("{node}: {reply}");
//! }
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::{pidbox_exchange, reply_exchange, ReplyTo, Request};
use crate::broker::Broker;
use crate::events::Clock;
use crate::{Celery, Error, Result};

/// A remote-control client on the app's broker.
#[derive(Debug, Clone)]
pub struct Control {
    broker: Arc<dyn Broker>,
    clock: Arc<Clock>,
}

impl Control {
    /// A client; an [`Error::Config`] when the broker carries no broadcast (the database
    /// broker).
    pub fn new(app: &Celery) -> Result<Self> {
        if app.broker().broadcast().is_none() {
            return Err(Error::Config(
                "this broker has no remote control (inspect and control need Redis or \
                 RabbitMQ); the database broker's workers are on the admin's workers page"
                    .into(),
            ));
        }
        Ok(Control {
            broker: app.broker().clone(),
            clock: Arc::new(Clock::default()),
        })
    }

    /// Sends `method` to every node (or `destination`) without waiting for replies.
    pub async fn cast(
        &self,
        method: &str,
        arguments: Map<String, Value>,
        destination: Option<Vec<String>>,
    ) -> Result<()> {
        let request = self.request(method, arguments, destination, None);
        self.send(&request).await
    }

    /// Sends `method` and collects the replies for `timeout` (or until every node of
    /// `destination` answered): `(node, reply)` in arrival order.
    pub async fn call(
        &self,
        method: &str,
        arguments: Map<String, Value>,
        destination: Option<Vec<String>>,
        timeout: Duration,
    ) -> Result<Vec<(String, Value)>> {
        let broadcast = self.broker.broadcast().expect("checked in Control::new");
        let oid = uuid::Uuid::new_v4().to_string();
        let ticket = uuid::Uuid::new_v4().to_string();
        let limit = destination.as_ref().map(Vec::len);
        let mut replies = broadcast.subscribe(&reply_exchange(), &oid).await?;
        let reply_to = ReplyTo {
            exchange: reply_exchange().name,
            routing_key: oid,
        };
        let request = self.request(
            method,
            arguments,
            destination,
            Some((ticket.clone(), reply_to)),
        );
        self.send(&request).await?;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut out = Vec::new();
        while limit.is_none_or(|limit| out.len() < limit) {
            let next = tokio::time::timeout_at(deadline, replies.next()).await;
            let Ok(Some(message)) = next else { break };
            let Ok(message) = message else { continue };
            let matches = match message.envelope.headers.get("ticket") {
                None | Some(Value::Null) => true,
                Some(got) => got.as_str() == Some(ticket.as_str()),
            };
            if !matches {
                continue;
            }
            if let Some(clock) = message
                .envelope
                .headers
                .get("clock")
                .and_then(Value::as_u64)
            {
                self.clock.adjust(clock);
            }
            let Ok(Value::Object(body)) = message.envelope.json_body() else {
                tracing::warn!("dropped a malformed remote-control reply");
                continue;
            };
            out.extend(body);
        }
        Ok(out)
    }

    fn request(
        &self,
        method: &str,
        arguments: Map<String, Value>,
        destination: Option<Vec<String>>,
        reply: Option<(String, ReplyTo)>,
    ) -> Request {
        let (ticket, reply_to) = reply.unzip();
        Request {
            method: method.to_owned(),
            arguments,
            destination,
            pattern: None,
            matcher: None,
            ticket,
            reply_to,
            clock: Some(self.clock.forward()),
        }
    }

    async fn send(&self, request: &Request) -> Result<()> {
        let broadcast = self.broker.broadcast().expect("checked in Control::new");
        broadcast
            .send(&pidbox_exchange(), "", &request.encode())
            .await
    }
}
