//! Settings as others may see them: `inspect conf`, `inspect report` and `site celery
//! report` (Celery's `app.conf.humanize(censored=True)` and `bugreport`). Secrets are masked,
//! URLs keep everything but their password.

use serde_json::{Map, Value};

use super::{masked_url, Settings};

/// Whether a setting's value is a secret: its name says secret, pass(word), key, token or
/// signature (as Celery's censoring does), or it holds the admin users' password hashes.
/// URLs are shown without their password instead.
fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "secret",
        "password",
        "pass",
        "key",
        "token",
        "signature",
        "admin_users",
    ]
    .iter()
    .any(|word| key.contains(word))
}

impl Settings {
    /// The settings by name, secrets masked (`********`) and URLs without their password;
    /// only those that differ from the defaults unless `with_defaults`.
    ///
    /// ```
    /// use celery_web::Settings;
    ///
    /// let settings = Settings {
    ///     broker_url: "redis://:hunter2@cache:6379/0".into(),
    ///     ..Settings::default()
    /// };
    /// let shown = settings.censored(false);
    /// assert_eq!(shown["broker_url"], "redis://:***@cache:6379/0");
    /// assert!(shown.get("task_default_queue").is_none(), "a default");
    /// ```
    pub fn censored(&self, with_defaults: bool) -> Map<String, Value> {
        let settings = serde_json::to_value(self).unwrap_or(Value::Null);
        let defaults = serde_json::to_value(Settings::default()).unwrap_or(Value::Null);
        let (Value::Object(settings), Value::Object(defaults)) = (settings, defaults) else {
            return Map::new();
        };
        settings
            .into_iter()
            .filter(|(key, value)| with_defaults || defaults.get(key) != Some(value))
            .map(|(key, value)| {
                let value = if is_secret(&key) {
                    Value::from("********")
                } else {
                    match value {
                        Value::String(text) if key.ends_with("_url") || key == "result_backend" => {
                            Value::from(masked_url(&text))
                        }
                        other => other,
                    }
                };
                (key, value)
            })
            .collect()
    }

    /// Celery's bug report: software, platform, where tasks and results go, then every
    /// setting that differs from the defaults (censored), one `name: value` a line.
    pub fn report(&self, node: &str) -> String {
        let mut text = format!(
            "software -> celery-web:{} (Rust) node:{node}\n\
             platform -> system:{} arch:{}\n\
             settings -> transport:{} results:{}\n\n",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::env::consts::ARCH,
            self.broker_url.split("://").next().unwrap_or_default(),
            masked_url(&self.result_backend),
        );
        for (key, value) in self.censored(false) {
            let value = match value {
                Value::String(text) => format!("'{text}'"),
                other => other.to_string(),
            };
            text.push_str(&format!("{key}: {value}\n"));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_in_the_report() {
        let settings = Settings {
            broker_url: "amqp://guest:guest@rabbit:5672//".into(),
            admin_secret_key: Some("do-not-print".into()),
            ..Settings::default()
        };
        let report = settings.report("w1@host");
        assert!(report.starts_with("software -> celery-web:"), "{report}");
        assert!(report.contains("transport:amqp"), "{report}");
        assert!(
            !report.contains("do-not-print") && !report.contains(":guest@"),
            "{report}"
        );
        assert!(report.contains("admin_secret_key: '********'"), "{report}");
    }
}
