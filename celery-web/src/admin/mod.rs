//! Admin pages and a JSON API inside the site: periodic tasks (django-celery-beat's admin),
//! task results (django-celery-results'), and workers and queues (Flower's), plus `/metrics`
//! for Prometheus.
//!
//! Mount it under a path of the site's choosing:
//!
//! ```no_run
//! use actix_web::{App, HttpServer};
//! use celery_web::admin::Admin;
//!
//! # async fn demo(app: celery_web::Celery) -> std::io::Result<()> {
//! let admin = Admin::new(app).expect("the admin needs celery-web's database");
//! HttpServer::new(move || App::new().service(admin.mount("/admin/celery")))
//!     .bind("127.0.0.1:8000")?
//!     .run()
//!     .await
//! # }
//! ```
//!
//! Every page and API call needs an authenticated user: the site's own check
//! ([`Admin::guard`]) or a user of the `admin_users` setting, who logs in with the form (pages)
//! or HTTP basic auth (API, `/metrics`). Forms carry a CSRF token; pages are server-rendered
//! with compile-time templates that escape everything, and work without JavaScript.

mod api;
mod auth;
mod chart;
mod csrf;
mod dashboard;
mod error;
mod layout;
mod login;
mod metrics;
mod periodic_task_input;
mod periodic_tasks;
mod queues;
mod results;
mod signing;
mod workers;

use std::sync::Arc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{HttpServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse, ResponseError};

use crate::db::Db;
use crate::{Celery, Error, Result};

pub use auth::{hash_password, Guard};
use auth::{Identity, Users};
use signing::Signer;

/// The admin of one app. Cheap to clone; build it once and mount it in every worker thread's
/// `App`.
#[derive(Clone)]
pub struct Admin {
    shared: Arc<Shared>,
    guard: Option<Guard>,
    login_url: Option<String>,
}

/// What every request of every mount shares.
#[derive(Debug)]
struct Shared {
    app: Celery,
    db: Db,
    users: Users,
    signer: Signer,
}

/// One mount: the admin and the path it lives under.
#[derive(Clone)]
pub(crate) struct Mounted {
    shared: Arc<Shared>,
    guard: Option<Guard>,
    login_url: Option<String>,
    /// Path prefix without a trailing slash, `/admin/celery`.
    prefix: String,
}

impl Admin {
    /// The admin of `app`, with the users of its `admin_users` setting and its
    /// `admin_secret_key`. Fails when the app has no database (the admin reads and writes
    /// celery-web's tables: results, periodic tasks, worker heartbeats).
    pub fn new(app: Celery) -> Result<Admin> {
        let db = app.db().cloned().ok_or_else(|| {
            Error::Config(
                "the admin pages need celery-web's database: set database_url, or use a \
                 database broker or result backend"
                    .to_owned(),
            )
        })?;
        let settings = app.settings();
        let users = Users::new(settings.admin_users.clone().into_iter().collect());
        let signer = Signer::new(settings.admin_secret_key.as_deref());
        Ok(Admin {
            shared: Arc::new(Shared {
                app,
                db,
                users,
                signer,
            }),
            guard: None,
            login_url: None,
        })
    }

    /// Lets the site decide who may use the admin: `check` returns the user's name, or `None`
    /// to refuse. Users of the `admin_users` setting can still log in.
    ///
    /// ```no_run
    /// # fn demo(app: celery_web::Celery) -> celery_web::Result<()> {
    /// use actix_web::HttpMessage;
    ///
    /// /// What the site's own (verified) session middleware stores for a logged-in staff user.
    /// struct Staff {
    ///     name: String,
    /// }
    ///
    /// let admin = celery_web::admin::Admin::new(app)?
    ///     .guard(|req| req.extensions().get::<Staff>().map(|staff| staff.name.clone()))
    ///     .login_url("/accounts/login");
    /// # Ok(()) }
    /// ```
    pub fn guard(
        mut self,
        check: impl Fn(&HttpRequest) -> Option<String> + Send + Sync + 'static,
    ) -> Admin {
        self.guard = Some(Arc::new(check));
        self
    }

    /// Where a browser the guard refuses is sent (with `?next=<path>`), for example the
    /// site's own login page. Without it, and without `admin_users`, refused pages answer 401.
    pub fn login_url(mut self, url: impl Into<String>) -> Admin {
        self.login_url = Some(url.into());
        self
    }

    /// The admin's pages, API and `/metrics` under `path` (for example `/admin/celery`).
    pub fn mount(&self, path: &str) -> impl HttpServiceFactory {
        let prefix = path.trim_end_matches('/').to_owned();
        let mounted = Mounted {
            shared: self.shared.clone(),
            guard: self.guard.clone(),
            login_url: self.login_url.clone(),
            prefix: prefix.clone(),
        };
        let scope = if prefix.is_empty() {
            web::scope("")
        } else {
            web::scope(&prefix)
        };
        scope
            .app_data(web::Data::new(mounted))
            .app_data(web::FormConfig::default().limit(256 * 1024))
            .app_data(
                web::JsonConfig::default()
                    .limit(256 * 1024)
                    .error_handler(api::json_error),
            )
            .app_data(web::QueryConfig::default().error_handler(error::query_error))
            .wrap(from_fn(gate))
            .configure(login::routes)
            .configure(dashboard::routes)
            .configure(periodic_tasks::routes)
            .configure(results::routes)
            .configure(workers::routes)
            .configure(queues::routes)
            .configure(api::routes)
            .configure(metrics::routes)
    }
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("users", &self.shared.users)
            .field("guard", &self.guard.is_some())
            .field("login_url", &self.login_url)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Mounted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mounted")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Mounted {
    pub(crate) fn app(&self) -> &Celery {
        &self.shared.app
    }

    pub(crate) fn db(&self) -> &Db {
        &self.shared.db
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn users(&self) -> &Users {
        &self.shared.users
    }

    pub(crate) fn signer(&self) -> &Signer {
        &self.shared.signer
    }

    /// The `timezone` setting's zone, for crontabs entered without one (checked when the app
    /// was built, so the UTC fallback is never used in practice).
    pub(crate) fn default_timezone(&self) -> chrono_tz::Tz {
        crate::beat::settings_timezone(self.app().settings()).unwrap_or(chrono_tz::UTC)
    }

    /// `path` under the mount: `url("/results")` = `/admin/celery/results`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{}", self.prefix, path)
    }

    /// The cookie path: the mount, or `/` at the root.
    fn cookie_path(&self) -> &str {
        if self.prefix.is_empty() {
            "/"
        } else {
            &self.prefix
        }
    }

    /// Whether `path` is a JSON or metrics endpoint (401 rather than a redirect).
    fn is_machine_path(&self, path: &str) -> bool {
        let rest = path.strip_prefix(&self.prefix).unwrap_or(path);
        rest.starts_with("/api/") || rest == "/api" || rest == "/metrics"
    }

    fn is_login_path(&self, path: &str) -> bool {
        path.strip_prefix(&self.prefix) == Some("/login")
    }
}

/// Whether the request came over HTTPS (then cookies are `Secure`).
fn is_https(req: &HttpRequest) -> bool {
    req.connection_info().scheme() == "https"
}

/// Every request passes here: who is asking, CSRF for forms, JSON for API writes, the CSRF
/// cookie on the way out, and headers that keep pages out of frames and caches.
async fn gate(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> std::result::Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let mounted = req
        .app_data::<web::Data<Mounted>>()
        .expect("mounted with its data")
        .clone();
    let path = req.path().to_owned();
    let machine = mounted.is_machine_path(&path);

    let mut user = String::new();
    if !mounted.is_login_path(&path) {
        let who = auth::identify(
            req.request(),
            mounted.guard.as_ref(),
            mounted.users(),
            mounted.signer(),
        )
        .await;
        match who {
            Some(identity) => {
                user = identity.user.clone();
                req.extensions_mut().insert::<Identity>(identity);
            }
            None => {
                let response = refused(&mounted, req.request(), machine);
                return Ok(req.into_response(response));
            }
        }
    }
    let token = csrf::token_for(req.request(), mounted.signer(), &user);
    req.extensions_mut().insert(token.clone());

    let writes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if writes && machine {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/json"));
        if !json && req.method() != Method::DELETE {
            let response = api::error_response(
                actix_web::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the body as JSON with Content-Type: application/json",
                None,
            );
            return Ok(req.into_response(response));
        }
    } else if writes {
        // Read the form to find its token, then hand the same bytes to the handler.
        let body = req.extract::<web::Bytes>().await?;
        let submitted = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body)
            .ok()
            .and_then(|fields| {
                fields
                    .into_iter()
                    .find(|(name, _)| name == csrf::CSRF_FIELD)
                    .map(|(_, value)| value)
            });
        let ok = submitted.is_some_and(|value| {
            csrf::form_token_matches(req.request(), &value, mounted.signer(), &user)
        });
        if !ok {
            let response = error::AdminError::Forbidden(
                "The form's security token is missing or out of date (CSRF check). Go back, \
                 reload the page and send it again."
                    .to_owned(),
            )
            .error_response();
            return Ok(req.into_response(response));
        }
        req.set_payload(actix_web::dev::Payload::from(body));
    }

    let secure = is_https(req.request());
    let mut response = next.call(req).await?.map_into_boxed_body();
    let headers = response.headers_mut();
    headers.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    if token.fresh {
        let cookie = csrf::cookie(&token.value, mounted.cookie_path(), secure);
        response.response_mut().add_cookie(&cookie)?;
    }
    Ok(response)
}

/// The answer to a request nobody authenticated.
fn refused(mounted: &Mounted, req: &HttpRequest, machine: bool) -> HttpResponse {
    let wants_page = !machine
        && matches!(*req.method(), Method::GET | Method::HEAD)
        && (mounted.users().any() || mounted.login_url.is_some());
    if wants_page {
        let next = req
            .uri()
            .path_and_query()
            .map_or_else(|| req.path().to_owned(), |pq| pq.as_str().to_owned());
        let login = match (&mounted.login_url, mounted.users().any()) {
            (Some(url), false) => url.clone(),
            _ => mounted.url("/login"),
        };
        let separator = if login.contains('?') { '&' } else { '?' };
        let location = format!("{login}{separator}next={}", layout::encode(&next));
        return HttpResponse::SeeOther()
            .insert_header((header::LOCATION, location))
            .finish();
    }
    let mut response = if machine {
        api::error_response(
            actix_web::http::StatusCode::UNAUTHORIZED,
            "authentication required",
            None,
        )
    } else {
        error::AdminError::Unauthorized.error_response()
    };
    if mounted.users().any() {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"celery-web admin\", charset=\"UTF-8\""),
        );
    }
    response
}
