//! Periodic tasks defined in settings (`beat_schedule`) or in code, before they are rows.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value};

use super::schedule::Schedule;
use crate::task::Signature;
use crate::{Error, Result};

/// A periodic task as settings or code define it. Beat writes it into `celery_periodic_task`
/// when it starts (see [`BeatStore::sync`](super::BeatStore::sync)).
///
/// ```
/// use celery_web::beat::PeriodicTaskDefinition;
/// use celery_web::beat::schedule::{Interval, Period, Schedule};
/// use celery_web::task::Signature;
///
/// let every_hour = Schedule::Interval(Interval::new(1, Period::Hours).unwrap());
/// let cleanup = PeriodicTaskDefinition::new(
///     "hourly cleanup",
///     every_hour,
///     Signature::new("reports.tasks.cleanup").arg(30).queue("maintenance"),
/// );
/// assert_eq!(cleanup.task, "reports.tasks.cleanup");
/// assert_eq!(cleanup.queue.as_deref(), Some("maintenance"));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodicTaskDefinition {
    /// Unique name.
    pub name: String,
    /// Task name.
    pub task: String,
    /// When it fires.
    pub schedule: Schedule,
    /// Positional arguments.
    pub args: Vec<Value>,
    /// Keyword arguments.
    pub kwargs: Map<String, Value>,
    /// Queue override.
    pub queue: Option<String>,
    /// Priority, 0-9.
    pub priority: Option<u8>,
    /// Each message expires this many seconds after it is sent.
    pub expire_seconds: Option<i64>,
    /// Extra message headers.
    pub headers: Map<String, Value>,
    /// Fire once, then disable.
    pub one_off: bool,
    /// No firing before this time.
    pub start_time: Option<DateTime<Utc>>,
    /// Free text.
    pub description: String,
}

impl PeriodicTaskDefinition {
    /// `signature` (its task, arguments, queue, priority, headers and expiry) sent on
    /// `schedule` under `name`, as Celery's `app.add_periodic_task(schedule, sig, name=...)`.
    pub fn new<T>(name: impl Into<String>, schedule: Schedule, signature: Signature<T>) -> Self {
        let options = signature.options();
        // A clocked schedule fires once (django-celery-beat requires one_off for it).
        let one_off = matches!(schedule, Schedule::Clocked(_));
        PeriodicTaskDefinition {
            name: name.into(),
            task: signature.task().to_owned(),
            schedule,
            args: signature.args().to_vec(),
            kwargs: signature.kwargs().clone(),
            queue: options.queue.clone(),
            priority: options.priority,
            // `expires_in(30 s)` is 30 seconds after each firing, not 29.
            expire_seconds: options.expires.map(|when| {
                let millis = (when - Utc::now()).num_milliseconds().max(0);
                (millis + 999) / 1000
            }),
            headers: options.headers.clone(),
            one_off,
            start_time: None,
            description: String::new(),
        }
    }

    /// Parses the `beat_schedule` entry `name` of the settings:
    ///
    /// ```toml
    /// [celery.beat_schedule."add every 10s"]
    /// task = "tasks.add"
    /// schedule = "10s"                 # or 10.0, { every = 1, period = "hours" },
    ///                                  # "crontab(minute='30', hour='7')", "30 7 * * mon", ...
    /// args = [2, 3]
    /// kwargs = {}
    /// options = { queue = "math", priority = 5, expires = 30 }
    /// ```
    ///
    /// `one_off`, `start_time` (RFC 3339) and `description` are accepted beside `task`.
    /// Errors name the entry and the key.
    pub fn from_setting(name: &str, entry: &toml::Value, timezone: Tz) -> Result<Self> {
        let bad = |reason: String| {
            Error::Config(format!(
                "setting `beat_schedule`: entry \"{name}\": {reason}"
            ))
        };
        let table = entry
            .as_table()
            .ok_or_else(|| bad("expected a table with `task` and `schedule`".to_owned()))?;
        let task = match table.get("task") {
            Some(toml::Value::String(task)) if !task.trim().is_empty() => task.clone(),
            Some(other) => return Err(bad(format!("`task` must be a task name, got {other}"))),
            None => return Err(bad("`task` is missing".to_owned())),
        };
        let schedule = table
            .get("schedule")
            .ok_or_else(|| bad("`schedule` is missing".to_owned()))?;
        let schedule = Schedule::from_setting(schedule, timezone)
            .map_err(|e| bad(format!("`schedule`: {e}")))?;
        let mut definition = PeriodicTaskDefinition {
            name: name.to_owned(),
            task,
            schedule,
            args: Vec::new(),
            kwargs: Map::new(),
            queue: None,
            priority: None,
            expire_seconds: None,
            headers: Map::new(),
            one_off: false,
            start_time: None,
            description: String::new(),
        };
        for (key, value) in table {
            match key.as_str() {
                "task" | "schedule" => {}
                "args" => {
                    definition.args = match json(value) {
                        Value::Array(args) => args,
                        other => return Err(bad(format!("`args` must be a list, got {other}"))),
                    }
                }
                "kwargs" => {
                    definition.kwargs = match json(value) {
                        Value::Object(kwargs) => kwargs,
                        other => return Err(bad(format!("`kwargs` must be a table, got {other}"))),
                    }
                }
                "options" => definition.read_options(value).map_err(bad)?,
                "one_off" => {
                    definition.one_off = value.as_bool().ok_or_else(|| {
                        bad(format!("`one_off` must be true or false, got {value}"))
                    })?
                }
                "description" => {
                    definition.description = value
                        .as_str()
                        .ok_or_else(|| bad(format!("`description` must be a string, got {value}")))?
                        .to_owned()
                }
                "start_time" => definition.start_time = Some(time(value).map_err(bad)?),
                // Celery's `relative` flag rounds intervals to the period; rows don't need it.
                "relative" => {}
                other => {
                    return Err(bad(format!(
                        "unknown key `{other}` (expected task, schedule, args, kwargs, options, \
                         one_off, start_time, description)"
                    )))
                }
            }
        }
        match &definition.schedule {
            Schedule::Clocked(_) => definition.one_off = true,
            Schedule::Interval(interval)
                if interval.duration() < super::periodic_task::SHORTEST_INTERVAL =>
            {
                return Err(bad(format!(
                    "`schedule`: {} is shorter than the shortest interval beat runs, 100 ms",
                    interval.describe()
                )))
            }
            _ => {}
        }
        Ok(definition)
    }

    /// Reads `options = { queue, priority, expires, headers }`.
    fn read_options(&mut self, options: &toml::Value) -> std::result::Result<(), String> {
        let table = options
            .as_table()
            .ok_or_else(|| format!("`options` must be a table, got {options}"))?;
        for (key, value) in table {
            match key.as_str() {
                "queue" => {
                    self.queue = Some(
                        value
                            .as_str()
                            .ok_or_else(|| {
                                format!("`options.queue` must be a string, got {value}")
                            })?
                            .to_owned(),
                    )
                }
                "priority" => {
                    self.priority = Some(
                        value
                            .as_integer()
                            .and_then(|p| u8::try_from(p).ok())
                            .filter(|p| *p <= 9)
                            .ok_or_else(|| {
                                format!("`options.priority` must be 0 to 9, got {value}")
                            })?,
                    )
                }
                "expires" => {
                    let seconds = value
                        .as_float()
                        .or_else(|| value.as_integer().map(|s| s as f64))
                        .filter(|s| s.is_finite() && *s >= 0.0)
                        .ok_or_else(|| {
                            format!("`options.expires` must be a number of seconds, got {value}")
                        })?;
                    self.expire_seconds = Some(seconds.ceil() as i64);
                }
                "headers" => match json(value) {
                    Value::Object(headers) => self.headers = headers,
                    other => return Err(format!("`options.headers` must be a table, got {other}")),
                },
                other => {
                    return Err(format!(
                        "unknown option `{other}` (expected queue, priority, expires, headers)"
                    ))
                }
            }
        }
        Ok(())
    }

    /// Every definition of the settings' `beat_schedule`, in name order.
    pub(crate) fn all_from_settings(settings: &crate::Settings) -> Result<Vec<Self>> {
        let timezone = settings_timezone(settings)?;
        settings
            .beat_schedule
            .iter()
            .map(|(name, entry)| Self::from_setting(name, entry, timezone))
            .collect()
    }
}

/// The `timezone` setting as a chrono-tz zone (crontabs without their own zone use it).
pub(crate) fn settings_timezone(settings: &crate::Settings) -> Result<Tz> {
    settings.timezone.parse::<Tz>().map_err(|_| {
        Error::Config(format!(
            "setting `timezone`: `{}` is not an IANA timezone name (for example UTC, \
             Europe/Oslo, America/New_York)",
            settings.timezone
        ))
    })
}

fn json(value: &toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => Value::from(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(items.iter().map(json).collect()),
        toml::Value::Table(table) => Value::Object(
            table
                .iter()
                .map(|(key, value)| (key.clone(), json(value)))
                .collect(),
        ),
    }
}

fn time(value: &toml::Value) -> std::result::Result<DateTime<Utc>, String> {
    let text = match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Datetime(d) => d.to_string(),
        other => {
            return Err(format!(
                "`start_time` must be an RFC 3339 time, got {other}"
            ))
        }
    };
    DateTime::parse_from_rfc3339(&text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            format!(
                "`start_time`: `{text}` is not an RFC 3339 time such as 2026-12-01T08:00:00Z ({e})"
            )
        })
}
