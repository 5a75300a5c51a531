//! What a worker answers to remote control: Celery's `celery/worker/control.py` commands,
//! with its reply shapes (`{"ok": ...}`, `{"error": ...}`, or the data asked for).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use tokio::sync::Notify;

use super::Request;
use crate::events::{Clock, Dispatcher};
use crate::shutdown::Shutdown;
use crate::worker::RateLimit;
use crate::worker::{current_queues, Requests, Revocations, SharedQueues, Stage, Tuning};
use crate::Celery;

/// How long a revocation received by remote control is kept (Celery's `REVOKE_EXPIRES`).
pub(crate) const REVOKE_EXPIRES: std::time::Duration = std::time::Duration::from_secs(10_800);

/// What a command did: a reply to send, or none (`shutdown`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Answer {
    /// Reply with this value (when the request wants a reply).
    Reply(Value),
    /// Send nothing, as Celery sends nothing after `shutdown`.
    Silent,
}

fn ok(text: impl Into<String>) -> Answer {
    Answer::Reply(json!({"ok": text.into()}))
}

fn nok(text: impl Into<String>) -> Answer {
    Answer::Reply(json!({"error": text.into()}))
}

/// The worker state remote control reads and changes.
#[derive(Debug, Clone)]
pub(crate) struct Panel {
    pub(crate) app: Celery,
    pub(crate) hostname: String,
    pub(crate) started: Instant,
    pub(crate) concurrency: usize,
    pub(crate) prefetch_count: usize,
    pub(crate) clock: Arc<Clock>,
    pub(crate) queues: SharedQueues,
    pub(crate) requests: Arc<Requests>,
    pub(crate) revocations: Arc<Revocations>,
    pub(crate) tuning: Arc<Tuning>,
    pub(crate) events: Option<Arc<Dispatcher>>,
    /// The process pool's children, when bodies run in them (`--pool process`).
    pub(crate) process_pool: Option<crate::worker::pool::process::ProcessPool>,
    /// Rings the event heart for an extra beat.
    pub(crate) ring: Arc<Notify>,
    pub(crate) shutdown: Shutdown,
}

/// Task ids from `task_id` / `ids`: a string or a list of strings.
fn ids(arguments: &Map<String, Value>, key: &str) -> Result<Vec<String>, String> {
    match arguments.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(id)) => Ok(vec![id.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| format!("TypeError('{key} must be a task id or a list of task ids')")),
        Some(_) => Err(format!(
            "TypeError('{key} must be a task id or a list of task ids')"
        )),
    }
}

/// Python's truth of an argument (Flower sends `terminate` as `1`).
fn truthy(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
    }
}

fn string_arg<'a>(arguments: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    arguments.get(key).and_then(Value::as_str)
}

/// A seconds argument: a number, a numeric string, or null.
fn seconds_arg(arguments: &Map<String, Value>, key: &str) -> Result<Option<f64>, String> {
    match arguments.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::String(text)) => text
            .trim()
            .parse::<f64>()
            .map(Some)
            .map_err(|_| format!("ValueError('{key}: not a number')")),
        Some(_) => Err(format!("TypeError('{key}: not a number')")),
    }
    .and_then(|value| match value {
        Some(v) if !(v.is_finite() && v >= 0.0) => {
            Err(format!("ValueError('{key}: not a duration')"))
        }
        other => Ok(other),
    })
}

/// Python's repr of a set of strings: `{'a', 'b'}`, or `set()`.
fn set_repr(ids: &[String]) -> String {
    if ids.is_empty() {
        return "set()".to_owned();
    }
    let items: Vec<String> = ids
        .iter()
        .map(|id| crate::events::py_repr(&Value::from(id.as_str())))
        .collect();
    format!("{{{}}}", items.join(", "))
}

impl Panel {
    /// Runs one request's command.
    pub(crate) fn handle(&self, request: &Request) -> Answer {
        let arguments = &request.arguments;
        match request.method.as_str() {
            "ping" => ok("pong"),
            "clock" => Answer::Reply(json!({"clock": self.clock.forward()})),
            "stats" => Answer::Reply(self.stats()),
            "active" => {
                let safe = truthy(arguments.get("safe"));
                Answer::Reply(self.infos(|s| matches!(s, Stage::Active(_)), safe))
            }
            "reserved" => Answer::Reply(self.infos(|s| matches!(s, Stage::Reserved), false)),
            "scheduled" => Answer::Reply(self.scheduled()),
            "registered" => Answer::Reply(self.registered()),
            "revoked" => {
                let ids: Vec<String> = self.revocations.snapshot().into_iter().map(|(id, _)| id).collect();
                Answer::Reply(json!(ids))
            }
            "active_queues" => Answer::Reply(self.active_queues()),
            "conf" => Answer::Reply(self.conf(truthy(arguments.get("with_defaults")))),
            "query_task" => match ids(arguments, "ids") {
                Ok(ids) => Answer::Reply(Value::Object(self.requests.query(&self.hostname, &ids))),
                Err(error) => nok(error),
            },
            "report" => ok(self.report()),
            "hello" => self.hello(arguments),
            "revoke" | "terminate" => self.revoke(&request.method, arguments),
            "rate_limit" => self.rate_limit(arguments),
            "time_limit" => self.time_limit(arguments),
            "enable_events" => self.set_events(true),
            "disable_events" => self.set_events(false),
            "heartbeat" => {
                self.ring.notify_one();
                Answer::Reply(Value::Null)
            }
            "add_consumer" => self.add_consumer(arguments),
            "cancel_consumer" => self.cancel_consumer(arguments),
            "shutdown" => {
                tracing::warn!("Got shutdown from remote");
                self.shutdown.warm();
                Answer::Silent
            }
            "pool_grow" | "pool_shrink" | "autoscale" | "pool_restart" => nok(format!(
                "NotImplementedError('{}: this worker runs tasks on tokio, whose pool does not resize')",
                request.method
            )),
            other => nok(format!("KeyError({})", crate::events::py_repr(&Value::from(other)))),
        }
    }

    fn infos(&self, wanted: fn(&Stage) -> bool, safe: bool) -> Value {
        Value::Array(
            self.requests
                .infos(&self.hostname, wanted, safe)
                .into_iter()
                .map(|(_, _, info)| info)
                .collect(),
        )
    }

    fn scheduled(&self) -> Value {
        let held = self
            .requests
            .infos(&self.hostname, |s| matches!(s, Stage::Scheduled(_)), false);
        Value::Array(
            held.into_iter()
                .map(|(stage, priority, request)| {
                    let eta = match stage {
                        Stage::Scheduled(eta) => Value::from(eta.to_rfc3339()),
                        _ => Value::Null,
                    };
                    json!({"eta": eta, "priority": priority, "request": request})
                })
                .collect(),
        )
    }

    fn registered(&self) -> Value {
        let registry = self.app.registry();
        let mut names: Vec<String> = registry
            .names()
            .filter(|name| !name.starts_with("celery.") && !name.starts_with("celery_web."))
            .map(|name| {
                let limit = self.tuning.rate_limit_text(name).unwrap_or_else(|| {
                    registry
                        .get(name)
                        .and_then(|t| t.rate_limit)
                        .map(|l| l.to_string())
                });
                match limit {
                    Some(limit) => format!("{name} [rate_limit={limit}]"),
                    None => name.to_owned(),
                }
            })
            .collect();
        names.sort();
        json!(names)
    }

    fn stats(&self) -> Value {
        let settings = self.app.settings();
        let totals: BTreeMap<String, u64> = self.requests.totals();
        json!({
            "total": totals,
            "pid": std::process::id(),
            "clock": self.clock.value().to_string(),
            "uptime": self.started.elapsed().as_secs(),
            "pool": self.pool_stats(),
            "broker": broker_info(&settings.broker_url),
            "prefetch_count": self.prefetch_count,
            "rusage": rusage(),
        })
    }

    /// Celery's `stats.pool`: the process pool's children (pids, and per child the tasks it
    /// ran and its peak resident memory), or the in-process pool as one process.
    fn pool_stats(&self) -> Value {
        let Some(pool) = &self.process_pool else {
            return json!({
                "implementation": "celery_web.worker:TokioPool",
                "max-concurrency": self.concurrency,
                "processes": [std::process::id()],
                "max-tasks-per-child": "N/A",
                "put-guarded-by-semaphore": false,
                "timeouts": [0, 0],
            });
        };
        let children = pool.children();
        let limit = |value: Option<u64>| value.map_or(json!("N/A"), |n| json!(n));
        json!({
            "implementation": "celery_web.worker.pool:ProcessPool",
            "max-concurrency": pool.options().size,
            "processes": children.iter().map(|c| c.pid).collect::<Vec<_>>(),
            "max-tasks-per-child": limit(pool.options().max_tasks_per_child),
            "max-memory-per-child": limit(pool.options().max_memory_per_child),
            "children": children
                .iter()
                .map(|c| json!({"pid": c.pid, "tasks": c.tasks, "peak_rss_kib": c.peak_rss_kib}))
                .collect::<Vec<_>>(),
            "put-guarded-by-semaphore": false,
            "timeouts": [0, 0],
        })
    }

    fn active_queues(&self) -> Value {
        Value::Array(
            current_queues(&self.queues)
                .iter()
                .map(|q| queue_declaration(q))
                .collect(),
        )
    }

    fn conf(&self, with_defaults: bool) -> Value {
        Value::Object(self.app.settings().censored(with_defaults))
    }

    fn report(&self) -> String {
        self.app.settings().report(&self.hostname)
    }

    /// Mingle's `hello`: merge the peer's revocations, answer with ours and our clock.
    fn hello(&self, arguments: &Map<String, Value>) -> Answer {
        let from = string_arg(arguments, "from_node").unwrap_or_default();
        if from == self.hostname {
            return Answer::Reply(Value::Null);
        }
        if let Some(Value::Object(revoked)) = arguments.get("revoked") {
            let now = Utc::now();
            let merged: Vec<(String, DateTime<Utc>)> = revoked
                .iter()
                .filter_map(|(id, at)| {
                    let at = at.as_f64().filter(|f| f.is_finite())?;
                    let revoked_at = DateTime::from_timestamp_micros((at * 1e6) as i64)?;
                    Some((id.clone(), revoked_at + expiry()))
                })
                .filter(|(_, expires)| *expires > now)
                .collect();
            self.revocations.add(merged);
        }
        Answer::Reply(json!({"revoked": self.revoked_with_times(), "clock": self.clock.forward()}))
    }

    /// Our revocations as Celery's `LimitedSet._data`: id → when revoked (float seconds).
    pub(crate) fn revoked_with_times(&self) -> Map<String, Value> {
        self.revocations
            .snapshot()
            .into_iter()
            .map(|(id, expires)| {
                let at = (expires - expiry()).timestamp_micros() as f64 / 1e6;
                (id, Value::from(at))
            })
            .collect()
    }

    fn revoke(&self, method: &str, arguments: &Map<String, Value>) -> Answer {
        let task_ids = match ids(arguments, "task_id") {
            Ok(ids) => ids,
            Err(error) => return nok(error),
        };
        let terminate = method == "terminate" || truthy(arguments.get("terminate"));
        let expires = Utc::now() + expiry();
        self.revocations
            .add(task_ids.iter().map(|id| (id.clone(), expires)).collect());
        if terminate {
            let terminated = self.requests.terminate(&task_ids);
            if terminated.is_empty() {
                return ok("terminate: tasks unknown");
            }
            tracing::info!("Terminating {}", terminated.join(", "));
            return ok(format!("terminate: {}", terminated.join(", ")));
        }
        tracing::info!("Tasks flagged as revoked: {}", task_ids.join(", "));
        ok(format!("tasks {} flagged as revoked", set_repr(&task_ids)))
    }

    fn known_task(&self, arguments: &Map<String, Value>) -> Option<String> {
        let name = string_arg(arguments, "task_name")?;
        self.app.registry().get(name).map(|_| name.to_owned())
    }

    fn rate_limit(&self, arguments: &Map<String, Value>) -> Answer {
        let Some(task) = self.known_task(arguments) else {
            return nok("unknown task");
        };
        let text = match arguments.get("rate_limit") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(text)) => text.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(other) => other.to_string(),
        };
        if text.trim().is_empty() || text.trim() == "0" {
            self.tuning.set_rate_limit(&task, None, "");
            return ok("rate limit disabled successfully");
        }
        match RateLimit::parse(text.trim()) {
            Ok(limit) => {
                self.tuning.set_rate_limit(
                    &task,
                    Some(limit).filter(|l| !l.is_unlimited()),
                    text.trim(),
                );
                tracing::info!("New rate limit for tasks of type {task}: {text}.");
                ok("new rate limit set successfully")
            }
            Err(error) => nok(format!(
                "Invalid rate limit string: ValueError({})",
                crate::events::py_repr(&Value::from(error))
            )),
        }
    }

    fn time_limit(&self, arguments: &Map<String, Value>) -> Answer {
        let Some(task) = self.known_task(arguments) else {
            return nok("unknown task");
        };
        let (soft, hard) = match (
            seconds_arg(arguments, "soft"),
            seconds_arg(arguments, "hard"),
        ) {
            (Ok(soft), Ok(hard)) => (soft, hard),
            (Err(error), _) | (_, Err(error)) => return nok(error),
        };
        self.tuning.set_time_limits(&task, soft, hard);
        tracing::info!("New time limits for tasks of type {task}: soft={soft:?} hard={hard:?}");
        ok("time limits set successfully")
    }

    fn set_events(&self, on: bool) -> Answer {
        let Some(events) = &self.events else {
            return nok("this broker carries no events");
        };
        let was = events.set_task_events(on);
        match (on, was) {
            (true, false) => {
                tracing::info!("Events of group {{task}} enabled by remote.");
                ok("task events enabled")
            }
            (true, true) => ok("task events already enabled"),
            (false, true) => {
                tracing::info!("Events of group {{task}} disabled by remote.");
                ok("task events disabled")
            }
            (false, false) => ok("task events already disabled"),
        }
    }

    fn add_consumer(&self, arguments: &Map<String, Value>) -> Answer {
        let Some(queue) = string_arg(arguments, "queue").filter(|q| !q.trim().is_empty()) else {
            return nok("TypeError('add_consumer needs a queue')");
        };
        let mut queues = self.queues.write().unwrap_or_else(|p| p.into_inner());
        if !queues.iter().any(|q| q == queue) {
            queues.push(queue.to_owned());
            tracing::info!("Started consuming from {queue}");
        }
        ok(format!("add consumer {queue}"))
    }

    fn cancel_consumer(&self, arguments: &Map<String, Value>) -> Answer {
        let Some(queue) = string_arg(arguments, "queue") else {
            return nok("TypeError('cancel_consumer needs a queue')");
        };
        self.queues
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|q| q != queue);
        ok(format!("no longer consuming from {queue}"))
    }
}

fn expiry() -> chrono::Duration {
    chrono::Duration::from_std(REVOKE_EXPIRES).unwrap_or(chrono::Duration::hours(3))
}

/// kombu's `Queue.as_dict()` of a queue declared with Celery's defaults.
fn queue_declaration(queue: &str) -> Value {
    json!({
        "name": queue,
        "exchange": {"name": queue, "type": "direct", "arguments": null, "durable": true,
                     "passive": false, "auto_delete": false, "delivery_mode": null, "no_declare": false},
        "routing_key": queue,
        "queue_arguments": null,
        "binding_arguments": null,
        "consumer_arguments": null,
        "durable": true,
        "exclusive": false,
        "auto_delete": false,
        "no_ack": false,
        "alias": null,
        "bindings": [],
        "no_declare": null,
        "expires": null,
        "message_ttl": null,
        "max_length": null,
        "max_length_bytes": null,
        "max_priority": null,
    })
}

/// kombu's `Connection.info()` of a broker URL (password left out).
fn broker_info(url: &str) -> Value {
    let (transport, rest) = url.split_once("://").unwrap_or((url, ""));
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((user, host)) => (Some(user), host),
        None => (None, authority),
    };
    let userid = userinfo.map(|u| u.split(':').next().unwrap_or_default().to_owned());
    let (hostname, port) = match hostport.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => {
            (host, port.parse::<u16>().ok())
        }
        _ => (hostport, None),
    };
    let transport = match transport {
        "amqp" | "pyamqp" => "amqp",
        other => other,
    };
    let default_port = match transport {
        "redis" | "rediss" => Some(6379),
        "amqp" | "amqps" => Some(5672),
        _ => None,
    };
    json!({
        "hostname": if hostname.is_empty() { "localhost" } else { hostname },
        "userid": userid,
        "virtual_host": if path.is_empty() { "/" } else { path.split('?').next().unwrap_or("/") },
        "port": port.or(default_port),
        "insist": false,
        "ssl": transport.ends_with('s') && transport != "redis",
        "transport": transport,
        "connect_timeout": 4,
        "transport_options": {},
        "login_method": null,
        "uri_prefix": null,
        "heartbeat": 120.0,
        "failover_strategy": "round-robin",
        "alternates": [],
    })
}

/// The process's resource use, in `getrusage`'s terms where Linux's `/proc` says them.
fn rusage() -> Value {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let maxrss = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime is the 14th, stime the 15th.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 100.0
    };
    json!({"utime": ticks(11), "stime": ticks(12), "maxrss": maxrss})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_become_connection_info() {
        let info = broker_info("redis://:secret@10.0.0.1:6380/3");
        assert_eq!(info["hostname"], "10.0.0.1");
        assert_eq!(info["port"], 6380);
        assert_eq!(info["virtual_host"], "3");
        assert_eq!(info["transport"], "redis");
        assert!(!info.to_string().contains("secret"));
        let info = broker_info("amqp://guest:guest@localhost//");
        assert_eq!(info["userid"], "guest");
        assert_eq!(info["port"], 5672);
    }

    #[test]
    fn sets_print_as_python_does() {
        assert_eq!(set_repr(&["a".into()]), "{'a'}");
        assert_eq!(set_repr(&[]), "set()");
    }
}
