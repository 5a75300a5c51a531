//! Turning environment variable text into setting values.
//!
//! An environment variable is only text, so its value is read the way that fits the setting:
//! first as a TOML value (`8`, `true`, `2.5`, `["json"]`, `{ "proj.add" = "math" }`), then as
//! JSON (`{"proj.add": "math"}`), then as a plain string (`redis://localhost`, `Europe/Paris`),
//! then as a comma-separated list (`json,application/json`). The first reading the setting's type
//! accepts wins; when none does, the plain string is kept so the error message shows it.

use toml::Value;

/// The value the environment variable text `raw` gives setting `name`.
pub(super) fn env_value(name: &str, raw: &str) -> Value {
    let plain = Value::String(raw.to_owned());
    let list = Value::Array(
        raw.split(',')
            .map(|item| Value::String(item.trim().to_owned()))
            .collect(),
    );
    [
        toml_value(raw),
        json_value(raw),
        Some(plain.clone()),
        Some(list),
    ]
    .into_iter()
    .flatten()
    .find(|value| super::deserialize_one(name, value.clone()).is_ok())
    .unwrap_or(plain)
}

/// `raw` read as one TOML value, if it is exactly one.
fn toml_value(raw: &str) -> Option<Value> {
    let mut table: toml::Table = format!("value = {raw}").parse().ok()?;
    if table.len() != 1 {
        return None;
    }
    table.remove("value")
}

/// `raw` read as a JSON array or object, if it is one without `null`s (TOML has no null).
fn json_value(raw: &str) -> Option<Value> {
    let trimmed = raw.trim_start();
    if !(trimmed.starts_with('{') || trimmed.starts_with('[')) {
        return None;
    }
    from_json(serde_json::from_str(raw).ok()?)
}

fn from_json(json: serde_json::Value) -> Option<Value> {
    Some(match json {
        serde_json::Value::Null => return None,
        serde_json::Value::Bool(b) => Value::Boolean(b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Float(n.as_f64()?),
        },
        serde_json::Value::String(s) => Value::String(s),
        serde_json::Value::Array(items) => {
            Value::Array(items.into_iter().map(from_json).collect::<Option<_>>()?)
        }
        serde_json::Value::Object(map) => Value::Table(
            map.into_iter()
                .map(|(key, value)| Some((key, from_json(value)?)))
                .collect::<Option<_>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_booleans_and_strings_follow_the_field() {
        assert_eq!(env_value("worker_concurrency", "8"), Value::Integer(8));
        assert_eq!(env_value("task_time_limit", "2.5"), Value::Float(2.5));
        assert_eq!(env_value("task_time_limit", "30"), Value::Integer(30));
        assert_eq!(env_value("task_acks_late", "false"), Value::Boolean(false));
        assert_eq!(
            env_value("broker_url", "redis://localhost:6379/0"),
            Value::String("redis://localhost:6379/0".into())
        );
        // Valid TOML of the wrong type for the field: kept as the string.
        assert_eq!(
            env_value("task_default_queue", "true"),
            Value::String("true".into())
        );
        assert_eq!(
            env_value("task_default_rate_limit", "10"),
            Value::String("10".into())
        );
        // A quoted TOML string is unquoted.
        assert_eq!(
            env_value("timezone", "\"Europe/Paris\""),
            Value::String("Europe/Paris".into())
        );
    }

    #[test]
    fn arrays_from_toml_json_or_commas() {
        let both = Value::Array(vec![
            Value::String("json".into()),
            Value::String("application/json".into()),
        ]);
        assert_eq!(
            env_value("accept_content", r#"["json", "application/json"]"#),
            both
        );
        assert_eq!(env_value("accept_content", "json, application/json"), both);
        assert_eq!(
            env_value("accept_content", "json"),
            Value::Array(vec![Value::String("json".into())])
        );
    }

    #[test]
    fn tables_from_toml_or_json() {
        let toml_text = env_value("task_routes", r#"{ "a.b.add" = "math" }"#);
        let json_text = env_value("task_routes", r#"{"a.b.add": "math"}"#);
        assert_eq!(toml_text, json_text);
        assert_eq!(toml_text["a.b.add"], Value::String("math".into()));
    }

    #[test]
    fn unreadable_values_stay_strings() {
        assert_eq!(
            env_value("worker_concurrency", "eight"),
            Value::String("eight".into())
        );
        assert_eq!(
            env_value("task_routes", r#"{"a": null}"#),
            Value::String(r#"{"a": null}"#.into())
        );
        assert_eq!(
            env_value("worker_concurrency", "1\nother = 2"),
            Value::String("1\nother = 2".into())
        );
    }
}
