//! Celery's message protocol, version 2: what travels between producers and workers.
//!
//! A [`Message`] is one task invocation: the `headers` (task name, id, eta, expires, retries,
//! time limits, ...), the `properties` (correlation id, priority, delivery info) and the body
//! `[args, kwargs, embed]`. Every broker carries the same [`Envelope`], the JSON document kombu
//! stores in Redis (`body` base64-encoded), so a message parked in the database broker, a Redis
//! list or a RabbitMQ queue is the message a Python Celery worker would read.
//!
//! Decoding is strict: [`Envelope::decode`] and [`Message::from_envelope`] return a
//! [`ProtocolError`] that says which part is wrong, and never panic on untrusted input.
//!
//! ```
//! use celery_web::protocol::{Envelope, Message};
//!
//! let message = Message::new("proj.tasks.add", vec![2.into(), 3.into()], Default::default())
//!     .with_queue("math");
//! let wire = Envelope::from_message(&message).unwrap().encode();
//! let back = Message::from_envelope(&Envelope::decode(wire.as_bytes()).unwrap()).unwrap();
//! assert_eq!(back.headers.task, "proj.tasks.add");
//! assert_eq!(back.args, vec![serde_json::json!(2), serde_json::json!(3)]);
//! assert_eq!(back.queue(), "math");
//! ```

mod envelope;
mod message;

pub use envelope::{Envelope, ProtocolError};
#[cfg(feature = "amqp")]
pub(crate) use message::parse_iso_time;
pub use message::{DeliveryInfo, Embed, Headers, Message, Properties};

#[cfg(test)]
pub(crate) mod fuzz_tests;
