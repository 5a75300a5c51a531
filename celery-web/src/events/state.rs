//! What a monitor knows from the events it received, as Celery's `events.state.State`
//! keeps it for Flower and `celery events`: every worker (online while its heartbeats keep
//! coming: within twice its `freq`) and the latest tasks with the state their last event
//! says. Events are untrusted input: a field of the wrong type is ignored, never a panic.
//!
//! ```
//! use celery_web::events::State;
//! use serde_json::json;
//!
//! let mut state = State::new(100);
//! let event = |value: serde_json::Value| value.as_object().unwrap().clone();
//! state.apply(&event(json!({"type": "worker-heartbeat", "hostname": "w1@h", "freq": 2.0,
//!     "active": 1, "processed": 7, "loadavg": [0.5, 0.4, 0.3], "timestamp": 1e9})));
//! state.apply(&event(json!({"type": "task-received", "uuid": "a", "name": "proj.add",
//!     "args": "(2, 2)", "hostname": "w1@h", "timestamp": 1e9})));
//! state.apply(&event(json!({"type": "task-succeeded", "uuid": "a", "result": "4",
//!     "runtime": 0.01, "hostname": "w1@h", "timestamp": 1e9})));
//! let task = state.tasks().next().unwrap();
//! assert_eq!((task.name.as_str(), task.state.as_str(), task.result.as_deref()),
//!            ("proj.add", "SUCCESS", Some("4")));
//! assert_eq!(state.workers().next().unwrap().processed, 7);
//! ```

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

/// Celery's default `freq` when a worker event has none (a 2-minute online window).
const DEFAULT_FREQ: f64 = 60.0;

/// A worker as its events describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerState {
    /// Its node name, `name@host`.
    pub hostname: String,
    /// Seconds between its heartbeats.
    pub freq: f64,
    /// Tasks running at its last heartbeat.
    pub active: u64,
    /// Tasks it had handled at its last heartbeat.
    pub processed: u64,
    /// Its 1, 5 and 15 minute load averages.
    pub loadavg: Vec<f64>,
    /// What it runs (`sw_ident sw_ver`, for example `py-celery 5.5.3`).
    pub software: String,
    /// Whether it said `worker-offline`.
    pub offline: bool,
    /// When its last event arrived here.
    pub last_seen: Instant,
}

impl WorkerState {
    /// Online: not gone offline, and heard from within twice its heartbeat interval.
    pub fn is_online(&self, now: Instant) -> bool {
        !self.offline
            && now.saturating_duration_since(self.last_seen)
                < Duration::from_secs_f64((self.freq * 2.0).clamp(0.0, 86_400.0))
    }
}

/// A task as its events describe it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TaskState {
    /// Its id.
    pub uuid: String,
    /// Its name (from `task-received` or `task-sent`; empty until one of them arrives).
    pub name: String,
    /// Celery's state name: `PENDING`, `RECEIVED`, `STARTED`, `SUCCESS`, `FAILURE`,
    /// `RETRY`, `REVOKED` or `REJECTED`.
    pub state: String,
    /// The worker that sent its latest event.
    pub worker: String,
    /// Its arguments' repr.
    pub args: String,
    /// Its result's repr, once succeeded.
    pub result: Option<String>,
    /// Its exception's repr, once failed or retried.
    pub exception: Option<String>,
    /// Seconds it ran, once succeeded.
    pub runtime: Option<f64>,
    /// The UNIX time of its latest event.
    pub timestamp: f64,
}

/// Workers and the latest tasks; see the [module documentation](self).
#[derive(Debug, Clone)]
pub struct State {
    workers: BTreeMap<String, WorkerState>,
    /// Each task with the number of its latest change.
    tasks: HashMap<String, (u64, TaskState)>,
    /// Task ids by the number of their latest change: the oldest first.
    order: BTreeMap<u64, String>,
    changes: u64,
    max_tasks: usize,
    events: u64,
}

fn text(event: &Map<String, Value>, key: &str) -> Option<String> {
    match event.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn number(event: &Map<String, Value>, key: &str) -> Option<f64> {
    event
        .get(key)
        .and_then(Value::as_f64)
        .filter(|n| n.is_finite())
}

fn count(event: &Map<String, Value>, key: &str) -> Option<u64> {
    event.get(key).and_then(Value::as_u64)
}

impl State {
    /// An empty state keeping at most `max_tasks` tasks (the oldest go first).
    pub fn new(max_tasks: usize) -> Self {
        State {
            workers: BTreeMap::new(),
            tasks: HashMap::new(),
            order: BTreeMap::new(),
            changes: 0,
            max_tasks: max_tasks.max(1),
            events: 0,
        }
    }

    /// Takes one event in; events of unknown types only count.
    pub fn apply(&mut self, event: &Map<String, Value>) {
        self.events += 1;
        let Some(kind) = event.get("type").and_then(Value::as_str) else {
            return;
        };
        if let Some(kind) = kind.strip_prefix("worker-") {
            self.apply_worker(kind, event);
        } else if let Some(kind) = kind.strip_prefix("task-") {
            self.apply_task(kind, event);
        }
    }

    fn apply_worker(&mut self, kind: &str, event: &Map<String, Value>) {
        let Some(hostname) = text(event, "hostname") else {
            return;
        };
        let worker = self
            .workers
            .entry(hostname.clone())
            .or_insert_with(|| WorkerState {
                hostname,
                freq: DEFAULT_FREQ,
                active: 0,
                processed: 0,
                loadavg: Vec::new(),
                software: String::new(),
                offline: false,
                last_seen: Instant::now(),
            });
        worker.last_seen = Instant::now();
        worker.offline = kind == "offline";
        if let Some(freq) = number(event, "freq") {
            worker.freq = freq;
        }
        if let Some(active) = count(event, "active") {
            worker.active = active;
        }
        if let Some(processed) = count(event, "processed") {
            worker.processed = processed;
        }
        if let Some(Value::Array(loads)) = event.get("loadavg") {
            worker.loadavg = loads.iter().filter_map(Value::as_f64).collect();
        }
        if let Some(ident) = text(event, "sw_ident") {
            let version = text(event, "sw_ver").unwrap_or_default();
            worker.software = format!("{ident} {version}").trim().to_owned();
        }
    }

    fn apply_task(&mut self, kind: &str, event: &Map<String, Value>) {
        let Some(uuid) = text(event, "uuid") else {
            return;
        };
        let state = match kind {
            "sent" => "PENDING",
            "received" => "RECEIVED",
            "started" => "STARTED",
            "succeeded" => "SUCCESS",
            "failed" => "FAILURE",
            "retried" => "RETRY",
            "revoked" => "REVOKED",
            "rejected" => "REJECTED",
            _ => return,
        };
        // The most recently changed task comes first: renumber its change.
        self.changes += 1;
        let (change, task) = self.tasks.entry(uuid.clone()).or_insert_with(|| {
            (
                0,
                TaskState {
                    uuid: uuid.clone(),
                    ..TaskState::default()
                },
            )
        });
        self.order.remove(change);
        *change = self.changes;
        self.order.insert(self.changes, uuid);
        // A late `received` after `started` (events of one batch) must not move it back.
        let settled = matches!(
            task.state.as_str(),
            "SUCCESS" | "FAILURE" | "REVOKED" | "REJECTED"
        );
        if !settled || matches!(state, "SUCCESS" | "FAILURE" | "REVOKED" | "REJECTED") {
            task.state = state.to_owned();
        }
        if let Some(name) = text(event, "name") {
            task.name = name;
        }
        if let Some(args) = text(event, "args") {
            task.args = args;
        }
        if let Some(worker) = text(event, "hostname") {
            task.worker = worker;
        }
        if let Some(result) = text(event, "result") {
            task.result = Some(result);
        }
        if let Some(exception) = text(event, "exception") {
            task.exception = Some(exception);
        }
        if let Some(runtime) = number(event, "runtime") {
            task.runtime = Some(runtime);
        }
        if let Some(timestamp) = number(event, "timestamp") {
            task.timestamp = timestamp;
        }
        while self.order.len() > self.max_tasks {
            if let Some((_, oldest)) = self.order.pop_first() {
                self.tasks.remove(&oldest);
            }
        }
    }

    /// Every worker heard from, by name.
    pub fn workers(&self) -> impl Iterator<Item = &WorkerState> {
        self.workers.values()
    }

    /// The tasks kept, most recently changed first.
    pub fn tasks(&self) -> impl Iterator<Item = &TaskState> {
        self.order
            .values()
            .rev()
            .filter_map(|id| self.tasks.get(id).map(|(_, task)| task))
    }

    /// How many events were taken in.
    pub fn event_count(&self) -> u64 {
        self.events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn workers_go_offline_and_tasks_keep_their_final_state() {
        let mut state = State::new(2);
        state.apply(&event(
            json!({"type": "worker-online", "hostname": "w@h", "freq": 2.0}),
        ));
        state.apply(&event(
            json!({"type": "task-started", "uuid": "a", "hostname": "w@h"}),
        ));
        state.apply(&event(
            json!({"type": "task-succeeded", "uuid": "a", "result": "1"}),
        ));
        state.apply(&event(
            json!({"type": "task-received", "uuid": "a", "name": "t"}),
        ));
        let task = state.tasks().next().unwrap();
        assert_eq!((task.state.as_str(), task.name.as_str()), ("SUCCESS", "t"));
        let now = Instant::now();
        assert!(state.workers().next().unwrap().is_online(now));
        state.apply(&event(json!({"type": "worker-offline", "hostname": "w@h"})));
        assert!(!state.workers().next().unwrap().is_online(now));
        // Only the two latest tasks are kept.
        for id in ["b", "c"] {
            state.apply(&event(json!({"type": "task-received", "uuid": id})));
        }
        let ids: Vec<&str> = state.tasks().map(|t| t.uuid.as_str()).collect();
        assert_eq!(ids, ["c", "b"]);
    }

    #[test]
    fn fields_of_the_wrong_type_are_ignored() {
        let mut state = State::new(10);
        for junk in [
            json!({"type": 3}),
            json!({"type": "worker-heartbeat"}),
            json!({"type": "worker-heartbeat", "hostname": "w", "freq": "x", "active": -1,
                   "loadavg": "high"}),
            json!({"type": "task-succeeded", "uuid": ["x"], "runtime": "long"}),
            json!({"type": "task-exploded", "uuid": "y"}),
        ] {
            state.apply(&event(junk));
        }
        assert_eq!(state.event_count(), 5);
        let worker = state.workers().next().unwrap();
        assert_eq!((worker.freq, worker.active), (DEFAULT_FREQ, 0));
        assert_eq!(state.tasks().count(), 1, "the list id is kept as text");
    }
}
