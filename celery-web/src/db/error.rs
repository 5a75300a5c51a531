//! Database errors that keep diesel's or r2d2's error as their source and say what kind of
//! failure it was, so a site can match on it (a duplicate row is a 409, an unreachable database
//! a 503) instead of on message text.

use std::fmt;

use crate::error::BoxError;

/// What kind of database failure a [`DatabaseError`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DatabaseErrorKind {
    /// A unique constraint refused the row (a duplicate).
    UniqueViolation,
    /// A foreign key refused the row.
    ForeignKeyViolation,
    /// A table does not exist: migrations have not run (`site migrate`).
    MissingTable {
        /// The table, when the database named it.
        table: Option<String>,
    },
    /// The database could not be reached (refused, down, wrong host).
    Unavailable,
    /// No connection became free in time, or a statement timed out.
    Timeout,
    /// Anything else.
    Other,
}

/// A failed database operation: its [kind](DatabaseError::kind), what celery-web was doing, and
/// the driver's error as [`source`](std::error::Error::source).
///
/// ```
/// use celery_web::db::{DatabaseError, DatabaseErrorKind};
/// use diesel::result::{DatabaseErrorKind as Diesel, Error};
///
/// let diesel = Error::DatabaseError(Diesel::UniqueViolation, Box::new("UNIQUE constraint failed".to_owned()));
/// let error = DatabaseError::from(diesel);
/// assert_eq!(*error.kind(), DatabaseErrorKind::UniqueViolation);
/// assert!(std::error::Error::source(&error).is_some());
/// ```
#[derive(Debug)]
pub struct DatabaseError {
    kind: DatabaseErrorKind,
    context: Option<String>,
    source: BoxError,
}

impl DatabaseError {
    /// An error of `kind` caused by `source`.
    pub fn new(kind: DatabaseErrorKind, source: impl Into<BoxError>) -> Self {
        DatabaseError {
            kind,
            context: None,
            source: source.into(),
        }
    }

    /// Says what was being done (`cannot open SQLite "x.sqlite3"`); shown before the source.
    pub fn context(mut self, context: impl Into<String>) -> Self {
        self.context = Some(context.into());
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> &DatabaseErrorKind {
        &self.kind
    }

    /// Classifies a driver's message (what diesel gives for errors it has no kind for).
    fn kind_of_message(message: &str) -> DatabaseErrorKind {
        // SQLite: `no such table: celery_message`; PostgreSQL: `relation "x" does not exist`.
        if let Some(rest) = message.split("no such table: ").nth(1) {
            let table = rest.split_whitespace().next().map(str::to_owned);
            return DatabaseErrorKind::MissingTable { table };
        }
        if let Some(rest) = message.split("relation \"").nth(1) {
            if let Some((table, after)) = rest.split_once('"') {
                if after.trim_start().starts_with("does not exist") {
                    let table = Some(table.to_owned());
                    return DatabaseErrorKind::MissingTable { table };
                }
            }
        }
        let lower = message.to_ascii_lowercase();
        if lower.contains("connection refused")
            || lower.contains("could not connect")
            || lower.contains("unable to open database")
            || lower.contains("could not translate host name")
            || lower.contains("server closed the connection")
        {
            return DatabaseErrorKind::Unavailable;
        }
        if lower.contains("timed out") || lower.contains("statement timeout") {
            return DatabaseErrorKind::Timeout;
        }
        DatabaseErrorKind::Other
    }
}

impl fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(context) = &self.context {
            write!(f, "{context}: ")?;
        }
        write!(f, "{}", self.source)?;
        if let DatabaseErrorKind::MissingTable { .. } = self.kind {
            write!(
                f,
                " (celery-web's tables are missing: run `{} migrate` first)",
                program_name()
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for DatabaseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}

/// The name the site's binary was started with (`site`, `example-site`), for hints that name a
/// command.
pub(crate) fn program_name() -> String {
    std::env::args_os()
        .next()
        .as_deref()
        .and_then(|path| std::path::Path::new(path).file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "site".to_owned())
}

impl From<diesel::result::Error> for DatabaseError {
    fn from(error: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind as Diesel, Error as E};
        let kind = match &error {
            E::DatabaseError(Diesel::UniqueViolation, _) => DatabaseErrorKind::UniqueViolation,
            E::DatabaseError(Diesel::ForeignKeyViolation, _) => {
                DatabaseErrorKind::ForeignKeyViolation
            }
            E::DatabaseError(Diesel::ClosedConnection, _) => DatabaseErrorKind::Unavailable,
            E::DatabaseError(_, info) => Self::kind_of_message(info.message()),
            other => Self::kind_of_message(&other.to_string()),
        };
        DatabaseError::new(kind, error)
    }
}

impl From<diesel::r2d2::PoolError> for DatabaseError {
    fn from(error: diesel::r2d2::PoolError) -> Self {
        // r2d2 reports the last connection error in its message after a timeout.
        let kind = match DatabaseError::kind_of_message(&error.to_string()) {
            DatabaseErrorKind::Other => DatabaseErrorKind::Timeout,
            kind => kind,
        };
        DatabaseError::new(kind, error).context("connection pool")
    }
}

impl From<tokio::task::JoinError> for DatabaseError {
    /// Database work on the blocking pool that panicked (or was cancelled).
    fn from(error: tokio::task::JoinError) -> Self {
        DatabaseError::new(DatabaseErrorKind::Other, error).context("database task panicked")
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use diesel::connection::SimpleConnection;
    use diesel::prelude::*;

    use super::*;

    fn sqlite() -> diesel::SqliteConnection {
        let mut conn = diesel::SqliteConnection::establish(":memory:").unwrap();
        conn.batch_execute("CREATE TABLE t (id INTEGER PRIMARY KEY, email TEXT UNIQUE)")
            .unwrap();
        conn
    }

    #[test]
    fn real_sqlite_errors_are_classified() {
        let mut conn = sqlite();
        conn.batch_execute("INSERT INTO t (email) VALUES ('a')")
            .unwrap();
        let duplicate = diesel::sql_query("INSERT INTO t (email) VALUES ('a')")
            .execute(&mut conn)
            .unwrap_err();
        let error = DatabaseError::from(duplicate);
        assert_eq!(*error.kind(), DatabaseErrorKind::UniqueViolation);
        assert!(error.to_string().contains("UNIQUE"), "{error}");

        let missing = diesel::sql_query("SELECT * FROM celery_message")
            .execute(&mut conn)
            .unwrap_err();
        let error = DatabaseError::from(missing);
        assert_eq!(
            *error.kind(),
            DatabaseErrorKind::MissingTable {
                table: Some("celery_message".to_owned())
            }
        );
        let text = error.to_string();
        assert!(
            text.contains("no such table: celery_message") && text.contains(" migrate` first"),
            "{text}"
        );
    }

    #[test]
    fn postgres_messages_are_classified() {
        for (message, kind) in [
            (
                "relation \"celery_worker\" does not exist",
                DatabaseErrorKind::MissingTable {
                    table: Some("celery_worker".to_owned()),
                },
            ),
            (
                "connection to server at \"127.0.0.1\", port 5999 failed: Connection refused",
                DatabaseErrorKind::Unavailable,
            ),
            (
                "canceling statement due to statement timeout",
                DatabaseErrorKind::Timeout,
            ),
            (
                "syntax error at or near \"SELEC\"",
                DatabaseErrorKind::Other,
            ),
        ] {
            assert_eq!(DatabaseError::kind_of_message(message), kind, "{message}");
        }
    }

    #[test]
    fn context_comes_first_and_the_source_stays() {
        let error = DatabaseError::new(DatabaseErrorKind::Unavailable, "refused")
            .context("cannot connect to PostgreSQL at postgres://db/app");
        assert_eq!(
            error.to_string(),
            "cannot connect to PostgreSQL at postgres://db/app: refused"
        );
        assert_eq!(
            std::error::Error::source(&error).unwrap().to_string(),
            "refused"
        );
    }
}
