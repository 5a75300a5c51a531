//! The requests a worker holds, for remote control: reserved (prefetched, waiting for a
//! slot), scheduled (held until their eta) and active (running), with what Celery's
//! `inspect active / reserved / scheduled / query_task` report, and a way to terminate a
//! running one (`revoke --terminate`). Also the per-task counts of `stats.total`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use tokio::sync::oneshot;

use crate::broker::Delivery;
use crate::events::{args_repr, py_repr};
use crate::protocol::Message;

/// Where a held request is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Stage {
    /// Prefetched, waiting for a slot (or its rate limit).
    Reserved,
    /// Held until its eta.
    Scheduled(DateTime<Utc>),
    /// Running since this UNIX time.
    Active(f64),
}

#[derive(Debug)]
struct Held {
    /// The message, shared with its execution: what `inspect` shows is read from it only
    /// when asked, so holding a request costs no copy of its arguments.
    message: Arc<Message>,
    queue: String,
    redelivered: bool,
    stage: Stage,
    acknowledged: bool,
    terminate: Option<oneshot::Sender<()>>,
}

/// Every request a worker holds, by task id.
#[derive(Debug, Default)]
pub(crate) struct Requests {
    held: Mutex<HashMap<String, Held>>,
    total: Mutex<BTreeMap<String, u64>>,
}

impl Requests {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A received request: reserved, or scheduled when it waits for `eta`.
    pub(crate) fn hold(
        &self,
        message: &Arc<Message>,
        delivery: &Delivery,
        eta: Option<DateTime<Utc>>,
    ) {
        let held = Held {
            message: message.clone(),
            queue: delivery.queue.clone(),
            redelivered: delivery.redelivered,
            stage: eta.map_or(Stage::Reserved, Stage::Scheduled),
            acknowledged: false,
            terminate: None,
        };
        self.lock().insert(message.id().to_owned(), held);
    }

    /// The request starts running; the receiver fires if it is terminated.
    pub(crate) fn start(&self, id: &str, acknowledged: bool) -> oneshot::Receiver<()> {
        let (sender, receiver) = oneshot::channel();
        let mut held = self.lock();
        if let Some(request) = held.get_mut(id) {
            request.stage = Stage::Active(crate::events::timestamp());
            request.acknowledged = acknowledged;
            request.terminate = Some(sender);
            let message = request.message.clone();
            drop(held);
            let mut total = self.total.lock().unwrap_or_else(|p| p.into_inner());
            match total.get_mut(message.task()) {
                Some(count) => *count += 1,
                None => {
                    total.insert(message.task().to_owned(), 1);
                }
            }
        }
        receiver
    }

    /// The request is no longer held (finished, released or skipped).
    pub(crate) fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Terminates the running requests among `ids`; returns those it terminated.
    pub(crate) fn terminate(&self, ids: &[String]) -> Vec<String> {
        let mut held = self.lock();
        let mut done = Vec::new();
        for id in ids {
            if let Some(sender) = held.get_mut(id).and_then(|r| r.terminate.take()) {
                if sender.send(()).is_ok() {
                    done.push(id.clone());
                }
            }
        }
        done
    }

    /// Executions started, per task name (`stats.total`).
    pub(crate) fn totals(&self) -> BTreeMap<String, u64> {
        self.total.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Celery's `Request.info()` of the held requests in `stage` (compared by kind):
    /// `safe` gives args and kwargs as repr strings, as Flower asks.
    pub(crate) fn infos(
        &self,
        hostname: &str,
        wanted: fn(&Stage) -> bool,
        safe: bool,
    ) -> Vec<(Stage, u8, Value)> {
        let held = self.lock();
        let mut out: Vec<(Stage, u8, Value)> = held
            .iter()
            .filter(|(_, r)| wanted(&r.stage))
            .map(|(id, r)| {
                let priority = r.message.properties.priority;
                (r.stage, priority, info(id, r, hostname, safe))
            })
            .collect();
        out.sort_by(|a, b| a.2["id"].as_str().cmp(&b.2["id"].as_str()));
        out
    }

    /// `query_task`: `{id: [state, info]}` for the held ones among `ids`.
    pub(crate) fn query(&self, hostname: &str, ids: &[String]) -> Map<String, Value> {
        let held = self.lock();
        ids.iter()
            .filter_map(|id| {
                let request = held.get(id)?;
                let state = match request.stage {
                    Stage::Active(_) => "active",
                    Stage::Reserved | Stage::Scheduled(_) => "reserved",
                };
                Some((
                    id.clone(),
                    json!([state, info(id, request, hostname, false)]),
                ))
            })
            .collect()
    }
}

fn info(id: &str, request: &Held, hostname: &str, safe: bool) -> Value {
    let message = &*request.message;
    let (args, kwargs) = if safe {
        (
            Value::from(
                message
                    .headers
                    .argsrepr
                    .clone()
                    .unwrap_or_else(|| args_repr(&message.args)),
            ),
            Value::from(
                message
                    .headers
                    .kwargsrepr
                    .clone()
                    .unwrap_or_else(|| py_repr(&Value::Object(message.kwargs.clone()))),
            ),
        )
    } else {
        (
            Value::Array(message.args.clone()),
            Value::Object(message.kwargs.clone()),
        )
    };
    let (time_start, worker_pid) = match request.stage {
        Stage::Active(started) => (Value::from(started), Value::from(std::process::id())),
        _ => (Value::Null, Value::Null),
    };
    let delivery = &message.properties.delivery_info;
    let routing_key = if delivery.routing_key.is_empty() {
        &request.queue
    } else {
        &delivery.routing_key
    };
    json!({
        "id": id,
        "name": message.task(),
        "args": args,
        "kwargs": kwargs,
        "type": message.task(),
        "hostname": hostname,
        "time_start": time_start,
        "acknowledged": request.acknowledged,
        "delivery_info": {
            "exchange": delivery.exchange,
            "routing_key": routing_key,
            "priority": message.properties.priority,
            "redelivered": request.redelivered,
        },
        "worker_pid": worker_pid,
    })
}
