//! Building workflows in Rust: [`chain`], [`group`] and [`chord`] of [`Signature`]s, sent
//! in Celery's wire format, so Python workers run them as they run Python's canvases (and
//! celery-web workers run Python's).
//!
//! The result type flows to the end: a chain's result is its last link's, a group's is a
//! `Vec` of its members', a chord's is its body's. Arguments are JSON (a link's input
//! type is not checked against the previous link's output).
//!
//! ```no_run
//! # async fn demo(app: &celery_web::Celery) -> celery_web::Result<()> {
//! use celery_web::canvas::{chain, chord, group};
//! use celery_web::task::Signature;
//! use std::time::Duration;
//!
//! let add = |x: i64| Signature::<i64>::with_output("proj.add").arg(x);
//! // add(1, 2) | add(3) | add(4): each link gets the previous result prepended.
//! let total = chain(add(1).arg(2)).then(add(3)).then(add(4)).apply_async_on(app).await?;
//! assert_eq!(total.get(Duration::from_secs(10)).await?, 10);
//!
//! let sums = group((0..10).map(|i| add(i).arg(i)).collect());
//! let body = Signature::<i64>::with_output("proj.tsum");
//! let result = chord(sums, body).apply_async_on(app).await?;
//! assert_eq!(result.get(Duration::from_secs(10)).await?, 90);
//! # Ok(()) }
//! ```

use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::follow_ups::messages_for;
use crate::task::{AsyncResult, Signature, State};
use crate::{Celery, Error, Result};

/// Tasks run one after the other, each called with the previous one's result prepended
/// (unless its signature is [immutable](Signature::immutable)). `T`: the last link's output.
#[derive(Debug, Clone)]
pub struct Chain<T = Value> {
    links: Vec<Value>,
    output: PhantomData<fn() -> T>,
}

/// A chain that starts with `first`.
pub fn chain<T>(first: Signature<T>) -> Chain<T> {
    Chain {
        links: vec![first.to_dict()],
        output: PhantomData,
    }
}

impl<T> Chain<T> {
    /// Appends `next`; the chain's result becomes its result.
    pub fn then<U>(mut self, next: Signature<U>) -> Chain<U> {
        self.links.push(next.to_dict());
        Chain {
            links: self.links,
            output: PhantomData,
        }
    }

    /// The chain as Celery's `celery.chain` signature dict.
    pub fn to_dict(&self) -> Value {
        json!({"task": "celery.chain", "args": [], "kwargs": {"tasks": self.links},
               "options": {}, "subtask_type": "chain", "immutable": false})
    }

    /// Sends the first link (carrying the rest, in Celery's reversed order) through `app`;
    /// returns the result of the last link.
    pub async fn apply_async_on(mut self, app: &Celery) -> Result<AsyncResult<T>> {
        for link in &mut self.links {
            freeze(link);
        }
        let last = task_id_of(self.links.last().expect("a chain has a first link"));
        let messages = messages_for(app, &self.to_dict(), None, None, None)?;
        app.broker().publish(&messages).await?;
        Ok(app.async_result(&last))
    }
}

/// Tasks run in parallel; `T`: each member's output.
#[derive(Debug, Clone)]
pub struct Group<T = Value> {
    members: Vec<Value>,
    output: PhantomData<fn() -> T>,
}

/// A group of `members`.
pub fn group<T>(members: Vec<Signature<T>>) -> Group<T> {
    Group {
        members: members.iter().map(Signature::to_dict).collect(),
        output: PhantomData,
    }
}

impl<T> Group<T> {
    /// How many tasks it has.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether it has none.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Sends every member (header `group` = the group id, `group_index` = its position).
    pub async fn apply_async_on(self, app: &Celery) -> Result<GroupResult<T>> {
        let (id, messages) = self.messages(app, None)?;
        app.broker().publish(&messages).await?;
        Ok(GroupResult {
            id,
            results: messages.iter().map(|m| app.async_result(m.id())).collect(),
        })
    }

    fn messages(
        mut self,
        app: &Celery,
        chord: Option<&Value>,
    ) -> Result<(String, Vec<crate::protocol::Message>)> {
        let id = uuid::Uuid::new_v4().to_string();
        for member in &mut self.members {
            freeze(member);
            if let Some(body) = chord {
                member["options"]["chord"] = body.clone();
            }
        }
        let dict = json!({"task": "celery.group", "args": [], "kwargs": {"tasks": self.members},
                          "options": {"task_id": id}, "subtask_type": "group",
                          "immutable": false});
        Ok((id, messages_for(app, &dict, None, None, None)?))
    }
}

/// A group whose results are all passed, as one `Vec` in header order, to a body.
#[derive(Debug, Clone)]
pub struct Chord<U = Value> {
    header: Group<Value>,
    body: Value,
    output: PhantomData<fn() -> U>,
}

/// A chord: `body` is called with the `Vec` of `header`'s results once all succeeded, or
/// fails with Celery's `ChordError` when one did not. Needs a backend that joins chords
/// (Redis, or the database's `celery_chordcounter`).
pub fn chord<T, U>(header: Group<T>, body: Signature<U>) -> Chord<U> {
    Chord {
        header: Group {
            members: header.members,
            output: PhantomData,
        },
        body: body.to_dict(),
        output: PhantomData,
    }
}

impl<U> Chord<U> {
    /// Prepares the join in the backend, then sends the header; returns the body's result.
    pub async fn apply_async_on(mut self, app: &Celery) -> Result<AsyncResult<U>> {
        let backend = app.backend().ok_or_else(|| {
            Error::Config("a chord needs a result backend to join its header".to_owned())
        })?;
        freeze(&mut self.body);
        let body_id = task_id_of(&self.body);
        let (group_id, messages) = self.header.messages(app, Some(&self.body))?;
        let header: Vec<String> = messages.iter().map(|m| m.id().to_owned()).collect();
        backend.chord_started(&group_id, &header).await?;
        app.broker().publish(&messages).await?;
        Ok(app.async_result(&body_id))
    }
}

/// The results of a group's members, in order.
#[derive(Debug)]
pub struct GroupResult<T = Value> {
    id: String,
    results: Vec<AsyncResult<T>>,
}

impl<T: DeserializeOwned> GroupResult<T> {
    /// The group id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Each member's result.
    pub fn results(&self) -> &[AsyncResult<T>] {
        &self.results
    }

    /// How many members succeeded.
    pub async fn completed_count(&self) -> Result<usize> {
        let mut count = 0;
        for result in &self.results {
            if result.state().await? == State::Success {
                count += 1;
            }
        }
        Ok(count)
    }

    /// Whether every member is ready.
    pub async fn ready(&self) -> Result<bool> {
        for result in &self.results {
            if !result.ready().await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Whether every member succeeded.
    pub async fn successful(&self) -> Result<bool> {
        Ok(self.completed_count().await? == self.results.len())
    }

    /// Every member's value in order, waiting up to `timeout` for each; the first failure
    /// is returned as the error.
    pub async fn join(&self, timeout: Duration) -> Result<Vec<T>> {
        let mut values = Vec::with_capacity(self.results.len());
        for result in &self.results {
            values.push(result.get(timeout).await?);
        }
        Ok(values)
    }
}

/// Gives a signature dict a task id, so its result can be awaited before it is sent.
fn freeze(signature: &mut Value) {
    if signature.pointer("/options/task_id").is_none() {
        if !signature["options"].is_object() {
            signature["options"] = json!({});
        }
        signature["options"]["task_id"] = Value::String(uuid::Uuid::new_v4().to_string());
    }
}

fn task_id_of(signature: &Value) -> String {
    signature
        .pointer("/options/task_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}
