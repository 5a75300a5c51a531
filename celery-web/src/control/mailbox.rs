//! The worker's mailbox: consumes `celery.pidbox` broadcasts, runs the commands meant for
//! this node and replies to `reply_to` with `{"<hostname>": <reply>}`, headers
//! `{"ticket", "clock"}` (kombu's `Node`). Malformed requests are logged and dropped.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::panel::{Answer, Panel};
use super::{mailbox_queue, pidbox_exchange, reply_exchange, Request};
use crate::broker::{Broker, Exchange, Subscription};
use crate::protocol::Envelope;
use crate::service::{Service, Stop};
use crate::task::BoxFuture;
use crate::Result;

/// The mailbox as a worker service.
#[derive(Debug)]
pub(crate) struct Mailbox {
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) panel: Panel,
    subscription: Option<Subscription>,
}

impl Mailbox {
    pub(crate) fn new(broker: Arc<dyn Broker>, panel: Panel) -> Self {
        Mailbox {
            broker,
            panel,
            subscription: None,
        }
    }

    /// Handles one received message; returns the reply it sent, if any (for tests).
    async fn handle(&self, envelope: &Envelope) {
        let request = match Request::decode(envelope) {
            Ok(request) => request,
            Err(error) => {
                tracing::warn!(%error, "dropped a malformed remote-control request");
                return;
            }
        };
        if !request.is_for(&self.panel.hostname) {
            return;
        }
        if let Some(clock) = request.clock {
            self.panel.clock.adjust(clock);
        }
        tracing::debug!(method = %request.method, "remote control");
        let answer = self.panel.handle(&request);
        let (Answer::Reply(reply), Some(reply_to)) = (answer, &request.reply_to) else {
            return;
        };
        let mut body = Map::new();
        body.insert(self.panel.hostname.clone(), reply);
        let mut headers = Map::new();
        headers.insert(
            "ticket".into(),
            request.ticket.clone().map_or(Value::Null, Value::from),
        );
        headers.insert("clock".into(), self.panel.clock.forward().into());
        let envelope = Envelope::with_json_body(
            &Value::Object(body),
            headers,
            &reply_to.exchange,
            &reply_to.routing_key,
        );
        let exchange = if reply_to.exchange.is_empty() {
            reply_exchange()
        } else {
            Exchange::direct(&reply_to.exchange).transient()
        };
        let Some(broadcast) = self.broker.broadcast() else {
            return;
        };
        if let Err(error) = broadcast
            .send(&exchange, &reply_to.routing_key, &envelope)
            .await
        {
            tracing::warn!(%error, method = %request.method, "could not send a remote-control reply");
        }
    }
}

impl Service for Mailbox {
    fn name(&self) -> &'static str {
        "remote control"
    }

    fn prepare(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let broadcast = self
                .broker
                .broadcast()
                .ok_or_else(|| crate::Error::Config("this broker has no remote control".into()))?;
            let queue = mailbox_queue(&self.panel.hostname);
            self.subscription = Some(
                broadcast
                    .subscribe_as(&pidbox_exchange(), "", &queue)
                    .await?,
            );
            Ok(())
        })
    }

    fn run(mut self: Box<Self>, mut stop: Stop) -> BoxFuture<'static, Result<()>> {
        Box::pin(async move {
            let Some(mut subscription) = self.subscription.take() else {
                return Ok(());
            };
            loop {
                tokio::select! {
                    message = subscription.next() => match message {
                        Some(Ok(message)) => self.handle(&message.envelope).await,
                        Some(Err(error)) => tracing::warn!(%error, "dropped an unreadable remote-control message"),
                        None => break,
                    },
                    () = stop.requested() => break,
                }
            }
            Ok(())
        })
    }
}
