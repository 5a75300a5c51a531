//! A periodic task as the admin's form and JSON API send it, checked field by field into a
//! [`PeriodicTaskDefinition`]. Both go through [`PeriodicTaskInput::to_definition`], so the
//! form's inline errors and the API's errors say the same thing.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::beat::schedule::{Clocked, Crontab, Interval, Schedule, ScheduleError, Solar};
use crate::beat::{PeriodicTask, PeriodicTaskDefinition};

/// Field name → what is wrong with it.
pub(crate) type FieldErrors = BTreeMap<String, String>;

/// A periodic task as sent to the API (and built from the form).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PeriodicTaskInput {
    pub(crate) name: String,
    pub(crate) task: String,
    pub(crate) schedule: ScheduleInput,
    #[serde(default)]
    pub(crate) args: Vec<Value>,
    #[serde(default)]
    pub(crate) kwargs: Map<String, Value>,
    #[serde(default)]
    pub(crate) queue: Option<String>,
    #[serde(default)]
    pub(crate) priority: Option<u8>,
    #[serde(default)]
    pub(crate) expire_seconds: Option<i64>,
    #[serde(default)]
    pub(crate) headers: Map<String, Value>,
    #[serde(default)]
    pub(crate) one_off: bool,
    #[serde(default)]
    pub(crate) start_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub(crate) description: String,
    /// Absent: new tasks are enabled, existing ones keep their state.
    #[serde(default)]
    pub(crate) enabled: Option<bool>,
}

/// One of the four schedule kinds, as `{"interval": {...}}`, `{"crontab": {...}}`, ...
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum ScheduleInput {
    Interval {
        every: i64,
        period: String,
    },
    Crontab {
        #[serde(default = "star")]
        minute: String,
        #[serde(default = "star")]
        hour: String,
        #[serde(default = "star")]
        day_of_week: String,
        #[serde(default = "star")]
        day_of_month: String,
        #[serde(default = "star")]
        month_of_year: String,
        /// IANA name; absent: the app's `timezone` setting.
        #[serde(default)]
        timezone: Option<String>,
    },
    Solar {
        event: String,
        latitude: f64,
        longitude: f64,
    },
    Clocked {
        clocked_time: DateTime<Utc>,
    },
}

fn star() -> String {
    "*".to_owned()
}

impl ScheduleInput {
    /// The input that describes `schedule`.
    pub(crate) fn of(schedule: &Schedule) -> ScheduleInput {
        match schedule {
            Schedule::Interval(interval) => ScheduleInput::Interval {
                every: interval.every(),
                period: interval.period().as_str().to_owned(),
            },
            Schedule::Crontab(crontab) => ScheduleInput::Crontab {
                minute: crontab.minute().to_owned(),
                hour: crontab.hour().to_owned(),
                day_of_week: crontab.day_of_week().to_owned(),
                day_of_month: crontab.day_of_month().to_owned(),
                month_of_year: crontab.month_of_year().to_owned(),
                timezone: Some(crontab.timezone().name().to_owned()),
            },
            Schedule::Solar(solar) => ScheduleInput::Solar {
                event: solar.event().as_str().to_owned(),
                latitude: solar.latitude(),
                longitude: solar.longitude(),
            },
            Schedule::Clocked(clocked) => ScheduleInput::Clocked {
                clocked_time: clocked.at(),
            },
        }
    }

    fn to_schedule(&self, default_timezone: Tz) -> Result<Schedule, ScheduleError> {
        Ok(match self {
            ScheduleInput::Interval { every, period } => {
                Schedule::Interval(Interval::new(*every, period.parse()?)?)
            }
            ScheduleInput::Crontab {
                minute,
                hour,
                day_of_week,
                day_of_month,
                month_of_year,
                timezone,
            } => {
                let timezone = match timezone.as_deref().map(str::trim) {
                    None | Some("") => default_timezone,
                    Some(name) => name.parse::<Tz>().map_err(|_| {
                        ScheduleError::new(
                            "timezone",
                            format!(
                                "{name:?} is not a time zone name; use an IANA name such as \
                                 \"UTC\" or \"Europe/Oslo\""
                            ),
                        )
                    })?,
                };
                Schedule::Crontab(Crontab::new(
                    minute,
                    hour,
                    day_of_week,
                    day_of_month,
                    month_of_year,
                    timezone,
                )?)
            }
            ScheduleInput::Solar {
                event,
                latitude,
                longitude,
            } => Schedule::Solar(Solar::new(event.parse()?, *latitude, *longitude)?),
            ScheduleInput::Clocked { clocked_time } => {
                Schedule::Clocked(Clocked::new(*clocked_time))
            }
        })
    }
}

impl PeriodicTaskInput {
    /// The input that describes `task`.
    pub(crate) fn of(task: &PeriodicTask) -> PeriodicTaskInput {
        let d = &task.definition;
        PeriodicTaskInput {
            name: d.name.clone(),
            task: d.task.clone(),
            schedule: ScheduleInput::of(&d.schedule),
            args: d.args.clone(),
            kwargs: d.kwargs.clone(),
            queue: d.queue.clone(),
            priority: d.priority,
            expire_seconds: d.expire_seconds,
            headers: d.headers.clone(),
            one_off: d.one_off,
            start_time: d.start_time,
            description: d.description.clone(),
            enabled: Some(task.enabled),
        }
    }

    /// The definition, or every field that is wrong. A clocked schedule fires once, so it is
    /// made one-off.
    pub(crate) fn to_definition(
        &self,
        default_timezone: Tz,
    ) -> Result<PeriodicTaskDefinition, FieldErrors> {
        let mut errors = FieldErrors::new();
        let name = self.name.trim();
        if name.is_empty() {
            errors.insert("name".into(), "give the periodic task a name".into());
        } else if name.chars().count() > 200 {
            errors.insert("name".into(), "at most 200 characters".into());
        }
        let task = self.task.trim();
        if task.is_empty() {
            errors.insert(
                "task".into(),
                "name the task to send, such as proj.tasks.add".into(),
            );
        }
        if self.priority.is_some_and(|p| p > 9) {
            errors.insert("priority".into(), "0 (lowest) to 9 (highest)".into());
        }
        if self.expire_seconds.is_some_and(|s| s < 1) {
            errors.insert(
                "expire_seconds".into(),
                "a whole number of seconds, at least 1".into(),
            );
        }
        let schedule = match self.schedule.to_schedule(default_timezone) {
            Ok(schedule) => Some(schedule),
            Err(error) => {
                let field = match error.field() {
                    "solar" => "event",
                    "crontab" | "clocked" | "schedule" => "schedule",
                    field => field,
                };
                errors.insert(field.to_owned(), error.message().to_owned());
                None
            }
        };
        match schedule {
            Some(schedule) if errors.is_empty() => Ok(PeriodicTaskDefinition {
                name: name.to_owned(),
                task: task.to_owned(),
                one_off: self.one_off || matches!(schedule, Schedule::Clocked(_)),
                schedule,
                args: self.args.clone(),
                kwargs: self.kwargs.clone(),
                queue: self
                    .queue
                    .as_deref()
                    .map(str::trim)
                    .filter(|q| !q.is_empty())
                    .map(str::to_owned),
                priority: self.priority,
                expire_seconds: self.expire_seconds,
                headers: self.headers.clone(),
                start_time: self.start_time,
                description: self.description.trim().to_owned(),
            }),
            _ => Err(errors),
        }
    }
}

/// The periodic task form: every input as typed, so a refused form comes back as it was sent.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct PeriodicTaskForm {
    pub(crate) name: String,
    /// The task name typed in the text input (a task of another service, say).
    pub(crate) task: String,
    /// The task picked from the select of the site's registered tasks; wins over `task` when
    /// not empty.
    pub(crate) task_choice: String,
    pub(crate) description: String,
    pub(crate) enabled: Option<String>,
    pub(crate) kind: String,
    pub(crate) every: String,
    pub(crate) period: String,
    pub(crate) minute: String,
    pub(crate) hour: String,
    pub(crate) day_of_week: String,
    pub(crate) day_of_month: String,
    pub(crate) month_of_year: String,
    pub(crate) timezone: String,
    pub(crate) event: String,
    pub(crate) latitude: String,
    pub(crate) longitude: String,
    pub(crate) clocked_time: String,
    pub(crate) args: String,
    pub(crate) kwargs: String,
    pub(crate) queue: String,
    pub(crate) priority: String,
    pub(crate) expire_seconds: String,
    pub(crate) headers: String,
    pub(crate) one_off: Option<String>,
    pub(crate) start_time: String,
    /// The CSRF token (checked by the middleware).
    pub(crate) csrf_token: String,
}

impl PeriodicTaskForm {
    /// The task to send: the one picked from the select, else the one typed.
    pub(crate) fn task_name(&self) -> &str {
        if self.task_choice.trim().is_empty() {
            &self.task
        } else {
            &self.task_choice
        }
    }

    /// An empty form for a new task: every 10 seconds, enabled.
    pub(crate) fn blank(timezone: &str) -> PeriodicTaskForm {
        PeriodicTaskForm {
            enabled: Some("on".into()),
            kind: "interval".into(),
            every: "10".into(),
            period: "seconds".into(),
            minute: "*".into(),
            hour: "*".into(),
            day_of_week: "*".into(),
            day_of_month: "*".into(),
            month_of_year: "*".into(),
            timezone: timezone.into(),
            event: "sunrise".into(),
            args: "[]".into(),
            kwargs: "{}".into(),
            headers: "{}".into(),
            ..PeriodicTaskForm::default()
        }
    }

    /// The form showing `task`.
    pub(crate) fn of(task: &PeriodicTask, timezone: &str) -> PeriodicTaskForm {
        let input = PeriodicTaskInput::of(task);
        let mut form = PeriodicTaskForm::blank(timezone);
        form.name = input.name;
        form.task = input.task;
        form.description = input.description;
        form.enabled = task.enabled.then(|| "on".to_owned());
        match input.schedule {
            ScheduleInput::Interval { every, period } => {
                form.kind = "interval".into();
                form.every = every.to_string();
                form.period = period;
            }
            ScheduleInput::Crontab {
                minute,
                hour,
                day_of_week,
                day_of_month,
                month_of_year,
                timezone,
            } => {
                form.kind = "crontab".into();
                form.minute = minute;
                form.hour = hour;
                form.day_of_week = day_of_week;
                form.day_of_month = day_of_month;
                form.month_of_year = month_of_year;
                form.timezone = timezone.unwrap_or_default();
            }
            ScheduleInput::Solar {
                event,
                latitude,
                longitude,
            } => {
                form.kind = "solar".into();
                form.event = event;
                form.latitude = latitude.to_string();
                form.longitude = longitude.to_string();
            }
            ScheduleInput::Clocked { clocked_time } => {
                form.kind = "clocked".into();
                form.clocked_time = clocked_time.format("%Y-%m-%dT%H:%M:%S").to_string();
            }
        }
        form.args = Value::Array(input.args).to_string();
        form.kwargs = Value::Object(input.kwargs).to_string();
        form.headers = Value::Object(input.headers).to_string();
        form.queue = input.queue.unwrap_or_default();
        form.priority = input.priority.map(|p| p.to_string()).unwrap_or_default();
        form.expire_seconds = input
            .expire_seconds
            .map(|s| s.to_string())
            .unwrap_or_default();
        form.one_off = input.one_off.then(|| "on".to_owned());
        form.start_time = input
            .start_time
            .map(|t| t.format("%Y-%m-%dT%H:%M:%S").to_string())
            .unwrap_or_default();
        form
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.enabled.is_some()
    }

    pub(crate) fn is_one_off(&self) -> bool {
        self.one_off.is_some()
    }

    /// The input the form describes, or every field that does not parse.
    pub(crate) fn to_input(&self) -> Result<PeriodicTaskInput, FieldErrors> {
        let mut errors = FieldErrors::new();
        let schedule = match self.kind.as_str() {
            "interval" => number::<i64>(&self.every, "every", &mut errors).map(|every| {
                ScheduleInput::Interval {
                    every,
                    period: self.period.clone(),
                }
            }),
            "crontab" => Some(ScheduleInput::Crontab {
                minute: self.minute.clone(),
                hour: self.hour.clone(),
                day_of_week: self.day_of_week.clone(),
                day_of_month: self.day_of_month.clone(),
                month_of_year: self.month_of_year.clone(),
                timezone: Some(self.timezone.clone()),
            }),
            "solar" => {
                let latitude = number::<f64>(&self.latitude, "latitude", &mut errors);
                let longitude = number::<f64>(&self.longitude, "longitude", &mut errors);
                latitude
                    .zip(longitude)
                    .map(|(latitude, longitude)| ScheduleInput::Solar {
                        event: self.event.clone(),
                        latitude,
                        longitude,
                    })
            }
            "clocked" => time(&self.clocked_time, "clocked_time", &mut errors)
                .flatten()
                .or_else(|| {
                    errors
                        .entry("clocked_time".into())
                        .or_insert_with(|| "when should it fire? (UTC)".into());
                    None
                })
                .map(|clocked_time| ScheduleInput::Clocked { clocked_time }),
            other => {
                errors.insert(
                    "kind".into(),
                    format!(
                        "{other:?} is not a schedule kind: interval, crontab, solar or clocked"
                    ),
                );
                None
            }
        };
        let args = json::<Vec<Value>>(
            &self.args,
            "args",
            "a JSON array such as [2, 3]",
            &mut errors,
        );
        let kwargs = json::<Map<String, Value>>(
            &self.kwargs,
            "kwargs",
            "a JSON object such as {\"user_id\": 7}",
            &mut errors,
        );
        let headers = json::<Map<String, Value>>(
            &self.headers,
            "headers",
            "a JSON object such as {\"source\": \"admin\"}",
            &mut errors,
        );
        let priority = optional_number::<u8>(&self.priority, "priority", &mut errors);
        let expire_seconds =
            optional_number::<i64>(&self.expire_seconds, "expire_seconds", &mut errors);
        let start_time = time(&self.start_time, "start_time", &mut errors);
        match (
            schedule,
            args,
            kwargs,
            headers,
            priority,
            expire_seconds,
            start_time,
        ) {
            (
                Some(schedule),
                Some(args),
                Some(kwargs),
                Some(headers),
                Some(priority),
                Some(expire_seconds),
                Some(start_time),
            ) if errors.is_empty() => Ok(PeriodicTaskInput {
                name: self.name.clone(),
                task: self.task_name().to_owned(),
                schedule,
                args,
                kwargs,
                queue: Some(self.queue.clone()),
                priority,
                expire_seconds,
                headers,
                one_off: self.is_one_off(),
                start_time,
                description: self.description.clone(),
                enabled: Some(self.is_enabled()),
            }),
            _ => Err(errors),
        }
    }
}

fn number<T: std::str::FromStr>(text: &str, field: &str, errors: &mut FieldErrors) -> Option<T> {
    match text.trim().parse() {
        Ok(value) => Some(value),
        Err(_) => {
            errors.insert(field.into(), format!("{:?} is not a number", text.trim()));
            None
        }
    }
}

/// `Some(None)` for an empty input, `Some(Some(n))` for a number, `None` (with an error) else.
fn optional_number<T: std::str::FromStr>(
    text: &str,
    field: &str,
    errors: &mut FieldErrors,
) -> Option<Option<T>> {
    if text.trim().is_empty() {
        return Some(None);
    }
    number(text, field, errors).map(Some)
}

fn json<T: serde::de::DeserializeOwned + Default>(
    text: &str,
    field: &str,
    expected: &str,
    errors: &mut FieldErrors,
) -> Option<T> {
    if text.trim().is_empty() {
        return Some(T::default());
    }
    match serde_json::from_str(text) {
        Ok(value) => Some(value),
        Err(error) => {
            errors.insert(field.into(), format!("expected {expected}: {error}"));
            None
        }
    }
}

/// A time from a `datetime-local` input (read as UTC) or RFC 3339; `Some(None)` when empty.
fn time(text: &str, field: &str, errors: &mut FieldErrors) -> Option<Option<DateTime<Utc>>> {
    let text = text.trim();
    if text.is_empty() {
        return Some(None);
    }
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(Some(time.with_timezone(&Utc)));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(time) = NaiveDateTime::parse_from_str(text, format) {
            return Some(Some(time.and_utc()));
        }
    }
    errors.insert(
        field.into(),
        format!("{text:?} is not a time; write 2026-12-01T08:00 (UTC)"),
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(kind: &str) -> PeriodicTaskForm {
        PeriodicTaskForm {
            name: "nightly".into(),
            task: "proj.tasks.cleanup".into(),
            kind: kind.into(),
            ..PeriodicTaskForm::blank("UTC")
        }
    }

    fn errors_of(form: &PeriodicTaskForm) -> FieldErrors {
        match form.to_input() {
            Err(errors) => errors,
            Ok(input) => input.to_definition(chrono_tz::UTC).unwrap_err(),
        }
    }

    #[test]
    fn a_good_form_becomes_a_definition() {
        let mut crontab = form("crontab");
        crontab.minute = "30".into();
        crontab.hour = "7".into();
        crontab.day_of_week = "mon".into();
        crontab.timezone = "Europe/Oslo".into();
        crontab.args = "[1, \"a\"]".into();
        crontab.priority = "7".into();
        let definition = crontab
            .to_input()
            .unwrap()
            .to_definition(chrono_tz::UTC)
            .unwrap();
        assert_eq!(
            definition.schedule.describe(),
            "At 07:30 on Monday (Europe/Oslo)"
        );
        assert_eq!(definition.args, vec![Value::from(1), Value::from("a")]);
        assert_eq!(definition.priority, Some(7));
        assert_eq!(definition.queue, None);
    }

    #[test]
    fn each_wrong_field_is_named() {
        let mut bad = form("crontab");
        bad.day_of_week = "7".into();
        let errors = errors_of(&bad);
        assert!(
            errors["day_of_week"].contains("out of range 0-6"),
            "{errors:?}"
        );

        let mut bad = form("interval");
        bad.every = "ten".into();
        bad.args = "{".into();
        bad.priority = "high".into();
        let errors = errors_of(&bad);
        assert_eq!(errors["every"], "\"ten\" is not a number");
        assert!(errors["args"].starts_with("expected a JSON array"));
        assert!(errors.contains_key("priority"));

        let mut bad = form("interval");
        bad.priority = "12".into();
        assert_eq!(errors_of(&bad)["priority"], "0 (lowest) to 9 (highest)");

        let mut bad = form("interval");
        bad.every = "0".into();
        bad.name = " ".into();
        let errors = errors_of(&bad);
        assert!(
            errors.contains_key("every") && errors.contains_key("name"),
            "{errors:?}"
        );

        let mut bad = form("solar");
        bad.event = "noonish".into();
        bad.latitude = "59.9".into();
        bad.longitude = "10.7".into();
        assert!(errors_of(&bad).contains_key("event"));

        let mut bad = form("crontab");
        bad.timezone = "Mars/Olympus".into();
        assert!(errors_of(&bad)["timezone"].contains("not a time zone"));
    }

    #[test]
    fn clocked_tasks_are_one_off_and_times_are_utc() {
        let mut clocked = form("clocked");
        clocked.clocked_time = "2026-12-01T08:00".into();
        let definition = clocked
            .to_input()
            .unwrap()
            .to_definition(chrono_tz::UTC)
            .unwrap();
        assert!(definition.one_off);
        assert_eq!(
            definition.schedule.describe(),
            "once at 2026-12-01 08:00 UTC"
        );
    }

    #[test]
    fn api_json_uses_the_same_checks() {
        let input: PeriodicTaskInput = serde_json::from_value(serde_json::json!({
            "name": "every minute",
            "task": "proj.tasks.ping",
            "schedule": {"crontab": {"minute": "*/5"}},
        }))
        .unwrap();
        let definition = input.to_definition(chrono_tz::Europe::Oslo).unwrap();
        assert_eq!(
            definition.schedule.describe(),
            "Every 5 minutes (Europe/Oslo)"
        );
        let unknown = serde_json::from_value::<PeriodicTaskInput>(serde_json::json!({
            "name": "x", "task": "y", "schedule": {"interval": {"every": 1, "period": "hours"}},
            "colour": "red",
        }));
        assert!(unknown.unwrap_err().to_string().contains("colour"));
    }
}
