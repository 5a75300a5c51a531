//! URL helpers: schemes and password masking for logs and error messages.

/// `url` with any password replaced by `***`, for logs and error messages.
///
/// Masks the password of the user-info part (`redis://:secret@host` → `redis://:***@host`,
/// `amqp://guest:guest@host//` → `amqp://guest:***@host//`) and `password=` / `pass=` / `pwd=`
/// query parameters (libpq accepts `postgres://host/db?password=...`). Celery's `;`-separated
/// fail-over lists are masked URL by URL. Anything that is not a URL comes back unchanged.
///
/// The user info is taken to end at the *last* `@`, so a password with unescaped `@`, `/`, `?` or
/// `#` in it is still hidden; the price is that an `@` later in the URL masks a little too much,
/// which is harmless in a log line.
///
/// ```
/// use celery_web::settings::masked_url;
///
/// assert_eq!(masked_url("redis://:s3cret@localhost:6379/0"), "redis://:***@localhost:6379/0");
/// assert_eq!(masked_url("sqlite://celery.sqlite3"), "sqlite://celery.sqlite3");
/// ```
pub fn masked_url(url: &str) -> String {
    url.split(';').map(mask_one).collect::<Vec<_>>().join(";")
}

fn mask_one(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let authority = scheme_end + 3;
    let rest = &url[authority..];
    let mut masked = String::with_capacity(url.len());
    masked.push_str(&url[..authority]);
    let after_userinfo = match rest.rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            match userinfo.find(':') {
                Some(colon) if colon + 1 < userinfo.len() => {
                    masked.push_str(&userinfo[..=colon]);
                    masked.push_str("***");
                }
                _ => masked.push_str(userinfo),
            }
            masked.push('@');
            &rest[at + 1..]
        }
        None => rest,
    };
    match after_userinfo.split_once('?') {
        Some((path, query)) => {
            masked.push_str(path);
            masked.push('?');
            masked.push_str(&mask_query(query));
        }
        None => masked.push_str(after_userinfo),
    }
    masked
}

/// Masks the values of password-like parameters of a query string.
fn mask_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, value))
                if !value.is_empty()
                    && ["password", "passwd", "pass", "pwd"]
                        .iter()
                        .any(|secret| key.eq_ignore_ascii_case(secret)) =>
            {
                format!("{key}=***")
            }
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The scheme of `url`, lower-cased, with spaces around the URL ignored: the text before
/// `://`, or `sqlite` for `sqlite:path`. Every scheme comparison goes through here.
pub(super) fn scheme(url: &str) -> Option<String> {
    let url = url.trim();
    if let Some((scheme, _)) = url.split_once("://") {
        let valid = !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        return valid.then(|| scheme.to_ascii_lowercase());
    }
    let (scheme, _) = url.split_once(':')?;
    scheme
        .eq_ignore_ascii_case("sqlite")
        .then(|| "sqlite".to_owned())
}

/// `url` without Celery's `db+` result-backend prefix (any case).
pub(super) fn without_db_prefix(url: &str) -> &str {
    match url.get(..3) {
        Some(prefix) if prefix.eq_ignore_ascii_case("db+") => &url[3..],
        _ => url,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_the_password_of_the_user_info() {
        assert_eq!(
            masked_url("redis://:secret@localhost:6379/0"),
            "redis://:***@localhost:6379/0"
        );
        assert_eq!(
            masked_url("amqp://guest:guest@localhost:5672//"),
            "amqp://guest:***@localhost:5672//"
        );
        assert_eq!(
            masked_url("postgres://app:hunter2@db.example:5432/app?sslmode=require"),
            "postgres://app:***@db.example:5432/app?sslmode=require"
        );
    }

    #[test]
    fn masks_passwords_with_reserved_characters() {
        assert_eq!(
            masked_url("postgres://app:p@ss/w?r#d@db.example/app"),
            "postgres://app:***@db.example/app"
        );
    }

    #[test]
    fn masks_password_query_parameters() {
        assert_eq!(
            masked_url("postgres://db/app?user=app&password=secret&sslmode=require"),
            "postgres://db/app?user=app&password=***&sslmode=require"
        );
        assert_eq!(
            masked_url("postgres://db/app?PWD=x"),
            "postgres://db/app?PWD=***"
        );
    }

    #[test]
    fn masks_every_url_of_a_failover_list() {
        assert_eq!(
            masked_url("redis://:a@h1:6379;redis://:b@h2:6379"),
            "redis://:***@h1:6379;redis://:***@h2:6379"
        );
    }

    #[test]
    fn leaves_urls_without_password_alone() {
        for url in [
            "sqlite://celery.sqlite3",
            "sqlite:///var/lib/site/celery.sqlite3",
            "memory://",
            "postgres://app@db/app",
            "redis://user:@host/0",
            "redis://localhost:6379/0",
            "not a url",
            "",
        ] {
            assert_eq!(masked_url(url), url);
        }
    }

    #[test]
    fn schemes() {
        assert_eq!(scheme("sqlite://x").as_deref(), Some("sqlite"));
        assert_eq!(scheme("sqlite:x.db").as_deref(), Some("sqlite"));
        assert_eq!(scheme("POSTGRES://x").as_deref(), Some("postgres"));
        assert_eq!(scheme("  Redis://x ").as_deref(), Some("redis"));
        assert_eq!(scheme(" SQLite:x.db").as_deref(), Some("sqlite"));
        assert_eq!(scheme("db+sqlite://x").as_deref(), Some("db+sqlite"));
        assert_eq!(scheme("memory://").as_deref(), Some("memory"));
        assert_eq!(scheme("localhost:6379"), None);
        assert_eq!(scheme("://x"), None);
        assert_eq!(scheme("json"), None);
    }

    #[test]
    fn db_prefixes() {
        assert_eq!(without_db_prefix("db+sqlite://x"), "sqlite://x");
        assert_eq!(without_db_prefix("DB+postgres://x"), "postgres://x");
        assert_eq!(without_db_prefix("redis://x"), "redis://x");
        assert_eq!(without_db_prefix("db"), "db");
    }
}
