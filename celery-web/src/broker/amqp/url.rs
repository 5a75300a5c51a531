//! Broker URLs as Celery reads them, normalised for lapin.
//!
//! Celery (kombu) and the AMQP URI spec that lapin follows disagree on the vhost of
//! `amqp://h/`: kombu gives `/`, lapin gives `""`. kombu maps `amqp://h`, `amqp://h/`,
//! `amqp://h//` and `amqp://h/%2f` all to vhost `/`; any other path is the percent-decoded
//! text after the first `/`. `pyamqp://` is Celery's alias for `amqp://`. `amqps://` needs a
//! TLS stack, which this build does not link, so it is refused with a clear error.

use crate::{Error, Result};

/// A parsed Celery AMQP broker URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpUrl {
    /// Host name; `localhost` is rewritten to `127.0.0.1` as kombu does.
    pub host: String,
    /// TCP port (5672 unless given).
    pub port: u16,
    /// Login name (`guest` unless given).
    pub user: String,
    /// Password (`guest` unless given).
    pub password: String,
    /// The virtual host after Celery's rules (`/` for an empty path).
    pub vhost: String,
    /// The query string without `?`, passed on to lapin (`heartbeat=...`), empty if none.
    pub query: String,
}

fn bad(url: &str, why: &str) -> Error {
    Error::Config(format!("bad AMQP broker URL {}: {why}", redact(url)))
}

/// The URL with its password replaced by `***`, for error messages and logs.
pub fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (auth, tail) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if let Some((cred, host)) = auth.rsplit_once('@') {
            if let Some((user, _)) = cred.split_once(':') {
                return format!("{scheme}://{user}:***@{host}{tail}");
            }
        }
    }
    url.to_string()
}

fn decode(url: &str, s: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| bad(url, "a `%` is not followed by two hex digits"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad(url, "percent-decoded text is not UTF-8"))
}

impl AmqpUrl {
    /// Parses `amqp://` or `pyamqp://` URLs; refuses `amqps://` and anything else.
    pub fn parse(url: &str) -> Result<AmqpUrl> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad(url, "expected amqp://user:pass@host:port/vhost"))?;
        match scheme {
            "amqp" | "pyamqp" => {}
            "amqps" | "pyamqps" => {
                return Err(bad(
                    url,
                    "amqps:// (TLS) is not supported by this build; use amqp:// \
                     (e.g. through a local TLS tunnel)",
                ))
            }
            other => {
                return Err(bad(
                    url,
                    &format!("scheme {other:?} is not amqp:// or pyamqp://"),
                ))
            }
        }
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, q.to_string()),
            None => (rest, String::new()),
        };
        let (authority, path) = match rest.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (rest, None),
        };
        let (cred, hostport) = match authority.rsplit_once('@') {
            Some((c, h)) => (Some(c), h),
            None => (None, authority),
        };
        let (user, password) = match cred {
            Some(c) => match c.split_once(':') {
                Some((u, p)) => (decode(url, u)?, decode(url, p)?),
                None => (decode(url, c)?, "guest".to_string()),
            },
            None => ("guest".to_string(), "guest".to_string()),
        };
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            let (h, after) = h
                .split_once(']')
                .ok_or_else(|| bad(url, "unclosed `[` in an IPv6 host"))?;
            (h.to_string(), after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        let port = match port {
            None | Some("") => 5672,
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| bad(url, &format!("port {p:?} is not a number 0-65535")))?,
        };
        let host = match host.as_str() {
            "" | "localhost" => "127.0.0.1".to_string(),
            _ => host,
        };
        let vhost = match path {
            None | Some("") | Some("/") => "/".to_string(),
            Some(p) => decode(url, p)?,
        };
        Ok(AmqpUrl {
            host,
            port,
            user,
            password,
            vhost,
            query,
        })
    }

    /// The URI lapin reads: the vhost percent-encoded so lapin's rules give Celery's vhost.
    pub fn to_lapin_uri(&self) -> String {
        fn enc(s: &str) -> String {
            let mut out = String::with_capacity(s.len());
            for b in s.bytes() {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    out.push(b as char);
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            out
        }
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let mut uri = format!(
            "amqp://{}:{}@{}:{}/{}",
            enc(&self.user),
            enc(&self.password),
            host,
            self.port,
            enc(&self.vhost)
        );
        if !self.query.is_empty() {
            uri.push('?');
            uri.push_str(&self.query);
        }
        uri
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn celery_vhost_rules() {
        for u in [
            "amqp://h",
            "amqp://h/",
            "amqp://h//",
            "amqp://h/%2f",
            "pyamqp://h/%2F",
        ] {
            assert_eq!(AmqpUrl::parse(u).unwrap().vhost, "/", "{u}");
        }
        assert_eq!(AmqpUrl::parse("amqp://h/prod").unwrap().vhost, "prod");
        assert_eq!(AmqpUrl::parse("amqp://h/a%2Fb").unwrap().vhost, "a/b");
    }

    #[test]
    fn credentials_host_port_defaults() {
        let u = AmqpUrl::parse("amqp://localhost").unwrap();
        assert_eq!(
            (
                u.host.as_str(),
                u.port,
                u.user.as_str(),
                u.password.as_str()
            ),
            ("127.0.0.1", 5672, "guest", "guest")
        );
        let u = AmqpUrl::parse("amqp://bob:p%40ss@rabbit:5673/v?heartbeat=30").unwrap();
        assert_eq!(
            (
                u.user.as_str(),
                u.password.as_str(),
                u.host.as_str(),
                u.port
            ),
            ("bob", "p@ss", "rabbit", 5673)
        );
        assert_eq!(u.query, "heartbeat=30");
        assert_eq!(
            u.to_lapin_uri(),
            "amqp://bob:p%40ss@rabbit:5673/v?heartbeat=30"
        );
        assert_eq!(
            AmqpUrl::parse("amqp://h/").unwrap().to_lapin_uri(),
            "amqp://guest:guest@h:5672/%2F"
        );
    }

    #[test]
    fn bad_urls_are_errors_without_the_password() {
        for u in [
            "amqps://h",
            "redis://h",
            "amqp://h:notaport",
            "amqp://h/%zz",
            "nourl",
        ] {
            assert!(AmqpUrl::parse(u).is_err(), "{u}");
        }
        let e = AmqpUrl::parse("amqp://bob:secret@h:x/")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("secret"), "{e}");
    }
}
