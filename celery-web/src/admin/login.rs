//! The login form for the users of the `admin_users` setting, and logging out.

use actix_web::cookie::Cookie;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::error::AdminError;
use super::layout::{html, redirect};
use super::{auth, csrf, is_https, Mounted};

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/login", web::get().to(form))
        .route("/login", web::post().to(log_in))
        .route("/logout", web::post().to(log_out));
}

#[derive(Template)]
#[template(path = "admin/login.html")]
struct LoginPage {
    prefix: String,
    csrf: String,
    next: String,
    username: String,
    error: Option<String>,
    /// Whether any user is configured (else the page says how to add one).
    users: bool,
}

#[derive(Debug, Deserialize)]
struct NextQuery {
    #[serde(default)]
    next: String,
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

async fn form(
    req: HttpRequest,
    mounted: web::Data<Mounted>,
    query: web::Query<NextQuery>,
) -> Result<HttpResponse, AdminError> {
    html(&LoginPage {
        prefix: mounted.prefix().to_owned(),
        csrf: csrf::current(&req),
        next: query.into_inner().next,
        username: String::new(),
        error: None,
        users: mounted.users().any(),
    })
}

async fn log_in(
    req: HttpRequest,
    mounted: web::Data<Mounted>,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, AdminError> {
    let form = form.into_inner();
    if mounted.users().check(&form.username, &form.password).await {
        tracing::info!(user = %form.username, "admin login");
        let cookie = mounted.users().session_cookie(
            mounted.signer(),
            &form.username,
            mounted.cookie_path(),
            is_https(&req),
        );
        let mut response = redirect(&safe_next(mounted.prefix(), &form.next), None);
        response
            .add_cookie(&cookie)
            .map_err(|e| AdminError::BadRequest(e.to_string()))?;
        return Ok(response);
    }
    tracing::warn!(user = %form.username, "admin login refused");
    let mut response = html(&LoginPage {
        prefix: mounted.prefix().to_owned(),
        csrf: csrf::current(&req),
        next: form.next,
        username: form.username,
        error: Some("Wrong user name or password.".to_owned()),
        users: mounted.users().any(),
    })?;
    *response.status_mut() = actix_web::http::StatusCode::UNAUTHORIZED;
    Ok(response)
}

async fn log_out(mounted: web::Data<Mounted>) -> HttpResponse {
    let mut response = redirect(&mounted.url("/login"), None);
    let mut gone = Cookie::build(auth::SESSION_COOKIE, "")
        .path(mounted.cookie_path().to_owned())
        .finish();
    gone.make_removal();
    let _ = response.add_cookie(&gone);
    response
}

/// Where to go after logging in: `next` when it is a path inside the admin (never another
/// site: an open redirect would help phishing), else the dashboard. `next` must be a plain
/// absolute path: no scheme, no `//` or `/\\` start (other hosts to a browser), no control
/// characters or whitespace (browsers drop tabs, turning `/\t/evil` into `//evil`).
fn safe_next(prefix: &str, next: &str) -> String {
    let plain = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && !next.contains('\\')
        && !next.chars().any(|c| c.is_control() || c.is_whitespace());
    if plain && next.starts_with(&format!("{prefix}/")) {
        next.to_owned()
    } else {
        format!("{prefix}/")
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_plain_paths_inside_the_admin_are_followed() {
        assert_eq!(
            safe_next("/admin", "/admin/results?status=FAILURE"),
            "/admin/results?status=FAILURE"
        );
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/other",
            "/adminx/",
            "",
        ] {
            assert_eq!(safe_next("/admin", bad), "/admin/", "{bad:?}");
        }
        // Mounted at the root, every path is inside: the shape checks do the work.
        assert_eq!(safe_next("", "/results"), "/results");
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "/ /evil",
            "http://x",
        ] {
            assert_eq!(safe_next("", bad), "/", "{bad:?}");
        }
    }
}
