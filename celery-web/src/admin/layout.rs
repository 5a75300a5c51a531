//! What every admin page shows around its content: navigation, the user, the CSRF token its
//! forms carry, and a notice left by the action that redirected here.

use actix_web::{HttpRequest, HttpResponse};
use askama::Template;

use super::error::AdminError;
use super::Mounted;

/// The frame of a page, a field of every page template.
#[derive(Debug)]
pub(crate) struct Layout {
    /// Mount path, `/admin/celery`.
    pub(crate) prefix: String,
    /// Who is logged in.
    pub(crate) user: String,
    /// Whether they logged in with the form (then "Log out" is shown).
    pub(crate) session: bool,
    /// The token every form repeats.
    pub(crate) csrf: String,
    /// Which navigation entry is active.
    pub(crate) section: &'static str,
    /// A message from the previous action ("Task sent").
    pub(crate) notice: Option<String>,
}

impl Layout {
    pub(crate) fn new(req: &HttpRequest, mounted: &Mounted, section: &'static str) -> Layout {
        let identity = super::auth::identity(req);
        let notice = web_query_value(req, "notice");
        Layout {
            prefix: mounted.prefix().to_owned(),
            user: identity
                .as_ref()
                .map(|i| i.user.clone())
                .unwrap_or_default(),
            session: identity.is_some_and(|i| i.session),
            csrf: super::csrf::current(req),
            section,
            notice,
        }
    }
}

/// One value of the request's query string.
fn web_query_value(req: &HttpRequest, name: &str) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(req.query_string())
        .ok()?
        .into_iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

/// A rendered page as a response.
pub(crate) fn html(page: &impl Template) -> Result<HttpResponse, AdminError> {
    let body = page.render().map_err(|error| {
        AdminError::Internal(crate::Error::Config(format!("template: {error}")))
    })?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(body))
}

/// A redirect after a form (303, so the browser follows with GET), with a notice to show.
pub(crate) fn redirect(location: &str, notice: Option<&str>) -> HttpResponse {
    let location = match notice {
        Some(text) => {
            let separator = if location.contains('?') { '&' } else { '?' };
            let query = serde_urlencoded::to_string([("notice", text)]).unwrap_or_default();
            format!("{location}{separator}{query}")
        }
        None => location.to_owned(),
    };
    HttpResponse::SeeOther()
        .insert_header((actix_web::http::header::LOCATION, location))
        .finish()
}

/// A path segment or query value, percent-encoded for a URL: everything but letters, digits
/// and `-._~` (so `/` cannot add a segment and a space is `%20`, which paths decode).
pub(crate) fn encode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// A time for a table cell: `2026-11-21 17:03:04`.
pub(crate) fn when(time: &chrono::DateTime<chrono::Utc>) -> String {
    time.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// How long ago `time` was, in a few words: `3 s ago`, `5 min ago`, `2 h ago`, `4 days ago`.
pub(crate) fn ago(
    time: &chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let seconds = (now - *time).num_seconds();
    match seconds {
        s if s < 0 => "in the future".to_owned(),
        s if s < 90 => format!("{s} s ago"),
        s if s < 90 * 60 => format!("{} min ago", s / 60),
        s if s < 48 * 3600 => format!("{} h ago", s / 3600),
        s => format!("{} days ago", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    #[test]
    fn redirects_carry_an_encoded_notice() {
        let response = redirect("/admin/results?status=FAILURE", Some("Sent <b>&</b>"));
        assert_eq!(response.status(), 303);
        let location = response
            .headers()
            .get("location")
            .unwrap()
            .to_str()
            .unwrap();
        assert_eq!(
            location,
            "/admin/results?status=FAILURE&notice=Sent+%3Cb%3E%26%3C%2Fb%3E"
        );
    }

    #[test]
    fn ages_in_words() {
        let now = Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap();
        let before = |s| now - chrono::Duration::seconds(s);
        assert_eq!(ago(&before(3), now), "3 s ago");
        assert_eq!(ago(&before(600), now), "10 min ago");
        assert_eq!(ago(&before(7200), now), "2 h ago");
        assert_eq!(ago(&before(5 * 86_400), now), "5 days ago");
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
        assert_eq!(encode("celery@host-1.x_y~"), "celery%40host-1.x_y~");
    }
}
