//! `Schedule::from_setting`: the `schedule` value of a `[celery.beat_schedule.<name>]` table.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use toml::Value;

use super::{Clocked, Crontab, Interval, Period, Schedule, ScheduleError, Solar};

/// Every accepted form, for messages about values that are none of them.
const FORMS: &str = "write seconds (10 or 2.5), a duration (\"10s\", \"5m\", \"2h\", \"1d\", \
     \"every 10 minutes\"), a cron line (\"30 7 * * mon\": minute hour day_of_month month_of_year \
     day_of_week, 0 = Sunday), \"crontab(minute='30', hour='7', day_of_week='mon')\", or a table: \
     { every = 1, period = \"hours\" }, { crontab = \"30 7 * * mon\", timezone = \"Europe/Oslo\" }, \
     { clocked = \"2026-12-01T08:00:00Z\" }, { solar = \"sunrise\", latitude = 59.9, longitude = 10.7 }";

/// The crontab fields in Celery's `crontab()` argument order.
const CRONTAB_FIELDS: [&str; 5] = [
    "minute",
    "hour",
    "day_of_week",
    "day_of_month",
    "month_of_year",
];

pub(super) fn parse(value: &Value, default_timezone: Tz) -> Result<Schedule, ScheduleError> {
    match value {
        Value::Integer(seconds) => whole_seconds(*seconds),
        Value::Float(seconds) => fractional_seconds(*seconds),
        Value::String(text) => parse_text(text, default_timezone),
        Value::Table(table) => parse_table(table, default_timezone),
        other => Err(not_a_schedule(other)),
    }
}

fn not_a_schedule(value: &Value) -> ScheduleError {
    let shown = match value {
        Value::String(text) => format!("{text:?}"),
        Value::Table(_) => "this table".to_owned(),
        other => other.to_string(),
    };
    ScheduleError::new("schedule", format!("{shown} is not a schedule; {FORMS}"))
}

fn whole_seconds(seconds: i64) -> Result<Schedule, ScheduleError> {
    if seconds < 1 {
        return Err(ScheduleError::new(
            "schedule",
            format!("{seconds} seconds is not an interval; it must be positive"),
        ));
    }
    Ok(Schedule::Interval(Interval::new(seconds, Period::Seconds)?))
}

fn fractional_seconds(seconds: f64) -> Result<Schedule, ScheduleError> {
    if !seconds.is_finite() || seconds <= 0.0 || seconds > 1e12 {
        return Err(ScheduleError::new(
            "schedule",
            format!("{seconds} seconds is not an interval; it must be positive"),
        ));
    }
    if seconds.fract() == 0.0 {
        return whole_seconds(seconds as i64);
    }
    let microseconds = (seconds * 1e6).round() as i64;
    if microseconds < 1 {
        return Err(ScheduleError::new(
            "schedule",
            format!("{seconds} seconds is shorter than a microsecond"),
        ));
    }
    Ok(Schedule::Interval(Interval::new(
        microseconds,
        Period::Microseconds,
    )?))
}

fn parse_text(text: &str, default_timezone: Tz) -> Result<Schedule, ScheduleError> {
    let trimmed = text.trim();
    if let Some(arguments) = trimmed
        .strip_prefix("crontab(")
        .and_then(|rest| rest.strip_suffix(')'))
    {
        return Ok(Schedule::Crontab(parse_crontab_call(
            arguments,
            default_timezone,
        )?));
    }
    if trimmed.split_whitespace().count() == 5 {
        return Ok(Schedule::Crontab(Crontab::parse(
            trimmed,
            default_timezone,
        )?));
    }
    match parse_duration(trimmed) {
        Some(Ok(interval)) => Ok(Schedule::Interval(interval)),
        Some(Err(error)) => Err(error),
        None => Err(not_a_schedule(&Value::String(text.to_owned()))),
    }
}

/// `"10s"`, `"5 m"`, `"90 seconds"`, `"every 10 minutes"`, `"every hour"`; `None` when the text
/// is not shaped like a duration.
fn parse_duration(text: &str) -> Option<Result<Interval, ScheduleError>> {
    let lower = text.to_ascii_lowercase();
    let rest = lower.strip_prefix("every ").unwrap_or(&lower).trim();
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = rest.split_at(digits);
    let unit = unit.trim();
    let (scale, period) = match unit {
        // A bare number in a string, "10", is seconds as a bare number is.
        "" if !number.is_empty() && rest.len() == lower.len() => (1, Period::Seconds),
        "d" | "day" | "days" => (1, Period::Days),
        "h" | "hr" | "hrs" | "hour" | "hours" => (1, Period::Hours),
        "m" | "min" | "mins" | "minute" | "minutes" => (1, Period::Minutes),
        "s" | "sec" | "secs" | "second" | "seconds" => (1, Period::Seconds),
        "ms" | "millisecond" | "milliseconds" => (1000, Period::Microseconds),
        "us" | "µs" | "microsecond" | "microseconds" => (1, Period::Microseconds),
        _ => return None,
    };
    let every = if number.is_empty() {
        // "every hour", but not a bare "hour".
        if rest.len() == lower.len() {
            return None;
        }
        1
    } else {
        match number
            .parse::<i64>()
            .ok()
            .and_then(|n| n.checked_mul(scale))
        {
            Some(every) => every,
            None => {
                return Some(Err(ScheduleError::new(
                    "schedule",
                    format!("{text:?} is too long; use a shorter interval"),
                )))
            }
        }
    };
    Some(
        Interval::new(every, period).map_err(|error| {
            ScheduleError::new("schedule", format!("{text:?}: {}", error.message()))
        }),
    )
}

/// The arguments of Python's `crontab(minute='30', hour='7', day_of_week='mon')`: keywords or
/// leading positional values in Celery's order, quoted with `'` or `"`, or bare (`minute=0`).
fn parse_crontab_call(arguments: &str, timezone: Tz) -> Result<Crontab, ScheduleError> {
    let mut fields: [Option<String>; 5] = Default::default();
    let mut rest = arguments.trim();
    let mut position = 0;
    let mut seen_keyword = false;
    let error = |message: String| {
        ScheduleError::new(
            "schedule",
            format!("crontab({arguments}): {message}; write for example crontab(minute='30', hour='7', day_of_week='mon')"),
        )
    };
    while !rest.is_empty() {
        let name_length = rest
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count();
        let after_name = rest[name_length..].trim_start();
        let index = if name_length > 0 && after_name.starts_with('=') {
            let name = &rest[..name_length];
            let index = CRONTAB_FIELDS
                .iter()
                .position(|field| *field == name)
                .ok_or_else(|| {
                    error(format!(
                        "unknown argument `{name}`; the arguments are minute, hour, \
                         day_of_week, day_of_month and month_of_year"
                    ))
                })?;
            rest = after_name[1..].trim_start();
            seen_keyword = true;
            index
        } else {
            if seen_keyword {
                return Err(error(
                    "a positional argument follows a keyword argument".to_owned(),
                ));
            }
            if position >= CRONTAB_FIELDS.len() {
                return Err(error("too many arguments".to_owned()));
            }
            position += 1;
            position - 1
        };
        let (value, after_value) = match rest.chars().next() {
            Some(quote @ ('\'' | '"')) => {
                let end = rest[1..]
                    .find(quote)
                    .ok_or_else(|| error(format!("a {quote} quote is not closed")))?;
                (&rest[1..1 + end], &rest[end + 2..])
            }
            _ => {
                let end = rest.find(',').unwrap_or(rest.len());
                (rest[..end].trim(), &rest[end..])
            }
        };
        if fields[index].is_some() {
            return Err(error(format!(
                "`{}` is given more than once",
                CRONTAB_FIELDS[index]
            )));
        }
        fields[index] = Some(value.to_owned());
        rest = after_value.trim_start();
        if let Some(after_comma) = rest.strip_prefix(',') {
            rest = after_comma.trim_start();
        } else if !rest.is_empty() {
            return Err(error(format!("expected a comma before {rest:?}")));
        }
    }
    let field = |index: usize| fields[index].as_deref().unwrap_or("*");
    Crontab::new(field(0), field(1), field(2), field(3), field(4), timezone)
}

fn parse_table(table: &toml::Table, default_timezone: Tz) -> Result<Schedule, ScheduleError> {
    let kinds: Vec<&str> = ["every", "crontab", "clocked", "solar"]
        .into_iter()
        .filter(|key| table.contains_key(*key))
        .collect();
    let (kind, allowed): (&str, &[&str]) = match kinds[..] {
        ["every"] => ("an interval", &["every", "period"]),
        ["crontab"] => ("a crontab", &["crontab", "timezone"]),
        ["clocked"] => ("a clocked", &["clocked"]),
        ["solar"] => ("a solar", &["solar", "latitude", "longitude"]),
        [] => {
            return Err(match table.keys().next() {
                Some(key) => ScheduleError::new(
                    "schedule",
                    format!("unknown key `{key}` in the schedule table; {FORMS}"),
                ),
                None => not_a_schedule(&Value::Table(table.clone())),
            })
        }
        _ => {
            return Err(ScheduleError::new(
                "schedule",
                format!(
                    "the table has {}; a schedule has exactly one of every, crontab, clocked \
                     or solar",
                    kinds.join(" and ")
                ),
            ))
        }
    };
    if let Some(key) = table.keys().find(|key| !allowed.contains(&key.as_str())) {
        return Err(ScheduleError::new(
            "schedule",
            format!(
                "unknown key `{key}` in {kind} schedule table; allowed keys: {}",
                allowed.join(", ")
            ),
        ));
    }
    match kinds[0] {
        "every" => parse_interval_table(table),
        "crontab" => parse_crontab_table(table, default_timezone),
        "clocked" => parse_clocked(&table["clocked"], default_timezone),
        _ => parse_solar_table(table),
    }
}

fn parse_interval_table(table: &toml::Table) -> Result<Schedule, ScheduleError> {
    let every = match &table["every"] {
        Value::Integer(every) => *every,
        other => {
            return Err(ScheduleError::new(
                "every",
                format!("{other} is not a whole number; write for example every = 10"),
            ))
        }
    };
    let period = match table.get("period") {
        Some(Value::String(period)) => period.parse::<Period>()?,
        Some(other) => {
            return Err(ScheduleError::new(
                "period",
                format!(
                    "{other} is not a period; use \"days\", \"hours\", \"minutes\", \
                     \"seconds\" or \"microseconds\""
                ),
            ))
        }
        None => {
            return Err(ScheduleError::new(
                "period",
                "missing; write for example { every = 10, period = \"minutes\" }",
            ))
        }
    };
    Ok(Schedule::Interval(Interval::new(every, period)?))
}

fn parse_crontab_table(
    table: &toml::Table,
    default_timezone: Tz,
) -> Result<Schedule, ScheduleError> {
    let timezone = match table.get("timezone") {
        None => default_timezone,
        Some(Value::String(name)) => parse_timezone(name)?,
        Some(other) => {
            return Err(ScheduleError::new(
                "timezone",
                format!(
                    "{other} is not a time zone name; write for example timezone = \"Europe/Oslo\""
                ),
            ))
        }
    };
    let crontab = match &table["crontab"] {
        Value::String(line) => Crontab::parse(line, timezone)?,
        Value::Table(fields) => {
            if let Some(key) = fields
                .keys()
                .find(|key| !CRONTAB_FIELDS.contains(&key.as_str()))
            {
                return Err(ScheduleError::new(
                    "crontab",
                    format!(
                        "unknown key `{key}`; the fields are minute, hour, day_of_week, \
                         day_of_month and month_of_year"
                    ),
                ));
            }
            let mut texts = Vec::with_capacity(5);
            for name in CRONTAB_FIELDS {
                texts.push(match fields.get(name) {
                    None => "*".to_owned(),
                    Some(Value::String(text)) => text.clone(),
                    Some(Value::Integer(number)) => number.to_string(),
                    Some(other) => {
                        return Err(ScheduleError::new(
                            name,
                            format!(
                            "{other} is not a crontab field; write for example {name} = \"*/15\""
                        ),
                        ))
                    }
                });
            }
            Crontab::new(
                &texts[0], &texts[1], &texts[2], &texts[3], &texts[4], timezone,
            )?
        }
        other => {
            return Err(ScheduleError::new(
                "crontab",
                format!(
                    "{other} is not a crontab; write crontab = \"30 7 * * mon\" or crontab = \
                     {{ minute = \"30\", hour = \"7\", day_of_week = \"mon\" }}"
                ),
            ))
        }
    };
    Ok(Schedule::Crontab(crontab))
}

fn parse_timezone(name: &str) -> Result<Tz, ScheduleError> {
    name.trim().parse::<Tz>().map_err(|_| {
        ScheduleError::new(
            "timezone",
            format!("{name:?} is not an IANA time zone name; write for example \"Europe/Oslo\" or \"UTC\""),
        )
    })
}

/// A clocked time: RFC 3339 text or a TOML datetime; without an offset it is read in
/// `default_timezone`.
fn parse_clocked(value: &Value, default_timezone: Tz) -> Result<Schedule, ScheduleError> {
    let text = match value {
        Value::String(text) => text.trim().to_owned(),
        Value::Datetime(datetime) => datetime.to_string(),
        other => {
            return Err(ScheduleError::new(
                "clocked",
                format!("{other} is not a date and time; write for example clocked = \"2026-12-01T08:00:00Z\""),
            ))
        }
    };
    let bad = || {
        ScheduleError::new(
            "clocked",
            format!("{text:?} is not a date and time; write RFC 3339, for example \"2026-12-01T08:00:00Z\""),
        )
    };
    if let Ok(at) = DateTime::parse_from_rfc3339(&text.replace(' ', "T")) {
        return Ok(Schedule::Clocked(Clocked::new(at.with_timezone(&Utc))));
    }
    let local = NaiveDateTime::parse_from_str(&text.replace(' ', "T"), "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(&text.replace(' ', "T"), "%Y-%m-%dT%H:%M"))
        .or_else(|_| {
            NaiveDate::parse_from_str(&text, "%Y-%m-%d").map(|date| date.and_time(NaiveTime::MIN))
        })
        .map_err(|_| bad())?;
    let at = default_timezone
        .from_local_datetime(&local)
        .single()
        .ok_or_else(|| {
            ScheduleError::new(
                "clocked",
                format!(
                    "{text:?} does not exist or happens twice in {} (a daylight saving time \
                     change); give a UTC offset, for example \"2026-12-01T08:00:00Z\"",
                    default_timezone.name()
                ),
            )
        })?;
    Ok(Schedule::Clocked(Clocked::new(at.with_timezone(&Utc))))
}

fn parse_solar_table(table: &toml::Table) -> Result<Schedule, ScheduleError> {
    let event = match &table["solar"] {
        Value::String(event) => event.parse()?,
        other => {
            return Err(ScheduleError::new(
                "solar",
                format!("{other} is not a solar event; write for example solar = \"sunrise\""),
            ))
        }
    };
    let coordinate = |name: &str| match table.get(name) {
        Some(Value::Float(degrees)) => Ok(*degrees),
        Some(Value::Integer(degrees)) => Ok(*degrees as f64),
        Some(other) => Err(ScheduleError::new(
            name,
            format!("{other} is not a number of degrees; write for example {name} = 59.9"),
        )),
        None => Err(ScheduleError::new(
            name,
            "missing; write for example { solar = \"sunrise\", latitude = 59.9, longitude = 10.7 }",
        )),
    };
    Ok(Schedule::Solar(Solar::new(
        event,
        coordinate("latitude")?,
        coordinate("longitude")?,
    )?))
}
