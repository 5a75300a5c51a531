//! The requests a worker holds, for remote control: reserved (prefetched, waiting for a
//! slot), scheduled (held until their eta) and active (running), with what Celery's
//! `inspect active / reserved / scheduled / query_task` report, and a way to terminate a
//! running one (`revoke --terminate`). Also the per-task counts of `stats.total`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

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
    name: String,
    args: Vec<Value>,
    kwargs: Map<String, Value>,
    argsrepr: Option<String>,
    kwargsrepr: Option<String>,
    delivery_info: Value,
    priority: u8,
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
    pub(crate) fn hold(&self, message: &Message, delivery: &Delivery, eta: Option<DateTime<Utc>>) {
        let info = &message.properties.delivery_info;
        let held = Held {
            name: message.task().to_owned(),
            args: message.args.clone(),
            kwargs: message.kwargs.clone(),
            argsrepr: message.headers.argsrepr.clone(),
            kwargsrepr: message.headers.kwargsrepr.clone(),
            delivery_info: json!({
                "exchange": info.exchange,
                "routing_key": if info.routing_key.is_empty() { delivery.queue.clone() } else { info.routing_key.clone() },
                "priority": message.properties.priority,
                "redelivered": delivery.redelivered,
            }),
            priority: message.properties.priority,
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
            let name = request.name.clone();
            drop(held);
            *self
                .total
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(name)
                .or_default() += 1;
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
            .map(|(id, r)| (r.stage, r.priority, info(id, r, hostname, safe)))
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
    let (args, kwargs) = if safe {
        (
            Value::from(
                request
                    .argsrepr
                    .clone()
                    .unwrap_or_else(|| args_repr(&request.args)),
            ),
            Value::from(
                request
                    .kwargsrepr
                    .clone()
                    .unwrap_or_else(|| py_repr(&Value::Object(request.kwargs.clone()))),
            ),
        )
    } else {
        (
            Value::Array(request.args.clone()),
            Value::Object(request.kwargs.clone()),
        )
    };
    let (time_start, worker_pid) = match request.stage {
        Stage::Active(started) => (Value::from(started), Value::from(std::process::id())),
        _ => (Value::Null, Value::Null),
    };
    json!({
        "id": id,
        "name": request.name,
        "args": args,
        "kwargs": kwargs,
        "type": request.name,
        "hostname": hostname,
        "time_start": time_start,
        "acknowledged": request.acknowledged,
        "delivery_info": request.delivery_info,
        "worker_pid": worker_pid,
    })
}
