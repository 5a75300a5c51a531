//! What the broker and result-backend URLs name, parsed once: the scheme is read here and
//! nowhere else, and connections only `match` on these kinds.

use super::url::scheme;

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    /// `sqlite://path` (also `sqlite:path`)
    Sqlite,
    /// `postgres://...` or `postgresql://...`
    Postgres,
}

impl DbKind {
    /// The kind of database `url` names (a `db+` prefix, as in Celery's result backend URLs,
    /// is ignored; the scheme's case and surrounding spaces do not matter), or `None` for a
    /// non-database URL.
    ///
    /// ```
    /// use celery_web::db::DbKind;
    /// assert_eq!(DbKind::of("sqlite://celery.sqlite3"), Some(DbKind::Sqlite));
    /// assert_eq!(DbKind::of("postgresql://localhost/app"), Some(DbKind::Postgres));
    /// assert_eq!(DbKind::of("db+postgres://localhost/app"), Some(DbKind::Postgres));
    /// assert_eq!(DbKind::of("redis://localhost"), None);
    /// ```
    pub fn of(url: &str) -> Option<DbKind> {
        let scheme = scheme(url)?;
        DbKind::of_scheme(scheme.strip_prefix("db+").unwrap_or(&scheme))
    }

    /// The kind of database a lower-case scheme names (no `db+`).
    fn of_scheme(scheme: &str) -> Option<DbKind> {
        match scheme {
            "sqlite" => Some(DbKind::Sqlite),
            "postgres" | "postgresql" => Some(DbKind::Postgres),
            _ => None,
        }
    }
}

/// What the `broker_url` setting names; see [`Settings::broker_kind`](super::Settings::broker_kind).
///
/// ```
/// use celery_web::settings::{BrokerKind, DbKind, Settings};
///
/// let settings = Settings::from_toml_str("[celery]\nbroker_url = \"postgres://db/app\"")?;
/// assert_eq!(
///     settings.broker_kind()?,
///     BrokerKind::Database { url: "postgres://db/app".into(), kind: DbKind::Postgres }
/// );
/// # Ok::<(), celery_web::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BrokerKind {
    /// The database broker: celery-web's own tables in SQLite or PostgreSQL.
    Database {
        /// The database's URL.
        url: String,
        /// Which database it is.
        kind: DbKind,
    },
    /// kombu's Redis layout (`redis://` or `rediss://`; a `;`-separated fail-over list is kept
    /// whole).
    Redis {
        /// The Redis URL.
        url: String,
    },
    /// RabbitMQ (`amqp://` or `amqps://`).
    Amqp {
        /// The AMQP URL.
        url: String,
    },
    /// Messages kept in the process (`memory://`), for tests.
    Memory,
}

impl BrokerKind {
    /// The broker one URL (not a fail-over list) names, or `None` for an unknown scheme.
    pub(super) fn of_one(url: &str) -> Option<BrokerKind> {
        let url = url.trim();
        let scheme = scheme(url)?;
        if let Some(kind) = DbKind::of_scheme(&scheme) {
            return Some(BrokerKind::Database {
                url: url.to_owned(),
                kind,
            });
        }
        let url = url.to_owned();
        match scheme.as_str() {
            "redis" | "rediss" => Some(BrokerKind::Redis { url }),
            "amqp" | "amqps" => Some(BrokerKind::Amqp { url }),
            "memory" => Some(BrokerKind::Memory),
            _ => None,
        }
    }

    /// The broker's name in messages: `database`, `redis`, `amqp` or `memory`.
    pub fn name(&self) -> &'static str {
        match self {
            BrokerKind::Database { .. } => "database",
            BrokerKind::Redis { .. } => "redis",
            BrokerKind::Amqp { .. } => "amqp",
            BrokerKind::Memory => "memory",
        }
    }

    /// The URL of a database broker, or `None` for the other brokers.
    pub fn database_url(&self) -> Option<&str> {
        match self {
            BrokerKind::Database { url, .. } => Some(url),
            _ => None,
        }
    }
}

/// What the `result_backend` setting resolves to; see
/// [`Settings::result_backend_kind`](super::Settings::result_backend_kind).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResultBackendKind {
    /// The `celery_taskresult` table of a database (`db`, `database`, `django-db`, or a
    /// `sqlite://` / `postgres://` URL, `db+` stripped).
    Database {
        /// The database's URL.
        url: String,
    },
    /// Celery's Redis layout (`redis://` or `rediss://`).
    Redis {
        /// The Redis URL.
        url: String,
    },
    /// Results kept in the process (`memory://`), for tests.
    Memory,
    /// No results are stored (`disabled`).
    Disabled,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_kinds() {
        assert_eq!(DbKind::of("sqlite://x.db"), Some(DbKind::Sqlite));
        assert_eq!(DbKind::of("sqlite:x.db"), Some(DbKind::Sqlite));
        assert_eq!(DbKind::of("  SQLite://x.db "), Some(DbKind::Sqlite));
        assert_eq!(DbKind::of("db+sqlite://x.db"), Some(DbKind::Sqlite));
        assert_eq!(DbKind::of("postgres://h/app"), Some(DbKind::Postgres));
        assert_eq!(DbKind::of("PostgreSQL://h/app"), Some(DbKind::Postgres));
        assert_eq!(DbKind::of("db+postgresql://h/app"), Some(DbKind::Postgres));
        assert_eq!(DbKind::of("redis://h"), None);
        assert_eq!(DbKind::of("db"), None);
        assert_eq!(DbKind::of("sqlitex://x"), None);
    }

    #[test]
    fn broker_kinds() {
        assert_eq!(
            BrokerKind::of_one(" sqlite://celery.sqlite3 "),
            Some(BrokerKind::Database {
                url: "sqlite://celery.sqlite3".into(),
                kind: DbKind::Sqlite
            })
        );
        assert_eq!(
            BrokerKind::of_one("POSTGRESQL://h/app"),
            Some(BrokerKind::Database {
                url: "POSTGRESQL://h/app".into(),
                kind: DbKind::Postgres
            })
        );
        assert_eq!(
            BrokerKind::of_one("Redis://h:6379/0"),
            Some(BrokerKind::Redis {
                url: "Redis://h:6379/0".into()
            })
        );
        assert_eq!(
            BrokerKind::of_one("rediss://h"),
            Some(BrokerKind::Redis {
                url: "rediss://h".into()
            })
        );
        assert_eq!(
            BrokerKind::of_one("amqps://guest@h//"),
            Some(BrokerKind::Amqp {
                url: "amqps://guest@h//".into()
            })
        );
        assert_eq!(BrokerKind::of_one("MEMORY://"), Some(BrokerKind::Memory));
        // Celery's result-backend spelling is not a broker.
        assert_eq!(BrokerKind::of_one("db+sqlite://x"), None);
        assert_eq!(BrokerKind::of_one("pyamqp://h"), None);
        assert_eq!(BrokerKind::of_one("localhost:6379"), None);
        assert_eq!(BrokerKind::Memory.name(), "memory");
        assert_eq!(BrokerKind::Memory.database_url(), None);
    }
}
