//! Who is asking: the site's own guard, a signed session cookie from the login form, or HTTP
//! basic auth against the users of the `admin_users` setting (Argon2 hashes).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use actix_web::cookie::{Cookie, SameSite};
use actix_web::{HttpMessage, HttpRequest};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;

use super::signing::Signer;

/// Name of the session cookie the login form sets.
pub(crate) const SESSION_COOKIE: &str = "celery_web_admin_session";
/// How long a login lasts.
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Most Argon2 checks running at once (each takes ~19 MiB and tens of milliseconds of CPU).
const CONCURRENT_CHECKS: usize = 2;
/// How long a checked basic-auth password is remembered (Argon2 takes tens of milliseconds).
const BASIC_AUTH_MEMORY: Duration = Duration::from_secs(300);

/// The site's own check: the user name of whoever sent the request, or `None` to refuse.
pub type Guard = Arc<dyn Fn(&HttpRequest) -> Option<String> + Send + Sync>;

/// The authenticated user of a request, put into its extensions by the admin's middleware.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    /// User name as the guard or the settings know it.
    pub(crate) user: String,
    /// Whether it came from the login form (then the page shows "Log out").
    pub(crate) session: bool,
}

/// The users of the `admin_users` setting and what is needed to check them.
pub(crate) struct Users {
    hashes: HashMap<String, String>,
    /// Turns for running Argon2.
    checking: tokio::sync::Semaphore,
    /// Signatures of recently checked basic-auth credentials, with when they were checked.
    remembered: Mutex<HashMap<String, Instant>>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users")
            .field("names", &self.hashes.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Users {
    pub(crate) fn new(hashes: HashMap<String, String>) -> Users {
        Users {
            hashes,
            checking: tokio::sync::Semaphore::new(CONCURRENT_CHECKS),
            remembered: Mutex::new(HashMap::new()),
        }
    }

    /// Whether any user is configured (then the login form is offered).
    pub(crate) fn any(&self) -> bool {
        !self.hashes.is_empty()
    }

    /// Whether `password` is `user`'s. Runs Argon2 (on a blocking thread, at most
    /// [`CONCURRENT_CHECKS`] at a time, so a flood of guesses costs a bounded amount of memory
    /// and CPU); an unknown user costs as much as a known one, so timing does not tell which
    /// names exist. With no users configured nothing is checked.
    pub(crate) async fn check(&self, user: &str, password: &str) -> bool {
        if self.hashes.is_empty() {
            return false;
        }
        let hash = self
            .hashes
            .get(user)
            .cloned()
            .unwrap_or_else(|| unknown_user_hash().to_owned());
        let known = self.hashes.contains_key(user);
        let password = password.to_owned();
        let Ok(_turn) = self.checking.acquire().await else {
            return false;
        };
        let verified = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
            .await
            .unwrap_or(false);
        known && verified
    }

    /// [`Users::check`] for a basic-auth header, remembering a success for a few minutes
    /// (by a keyed signature of the credentials, never the password itself).
    async fn check_basic(&self, signer: &Signer, user: &str, password: &str) -> bool {
        let key = signer.sign("basic-auth", &[user, password, self.stamp(user)]);
        {
            let mut remembered = self.remembered.lock().expect("not poisoned");
            remembered.retain(|_, at| at.elapsed() < BASIC_AUTH_MEMORY);
            if remembered.contains_key(&key) {
                return true;
            }
        }
        let ok = self.check(user, password).await;
        if ok {
            let mut remembered = self.remembered.lock().expect("not poisoned");
            remembered.insert(key, Instant::now());
        }
        ok
    }

    /// A value that changes when `user`'s password hash changes (sessions signed with the old
    /// one stop working).
    fn stamp(&self, user: &str) -> &str {
        self.hashes.get(user).map_or("", String::as_str)
    }

    /// The session cookie for `user`, valid for [`SESSION_LIFETIME`].
    pub(crate) fn session_cookie(
        &self,
        signer: &Signer,
        user: &str,
        path: &str,
        secure: bool,
    ) -> Cookie<'static> {
        let expires =
            (chrono::Utc::now().timestamp() as u64 + SESSION_LIFETIME.as_secs()).to_string();
        let user_b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(user);
        let signature = signer.sign("session", &[user, &expires, self.stamp(user)]);
        Cookie::build(SESSION_COOKIE, format!("{user_b64}.{expires}.{signature}"))
            .path(path.to_owned())
            .http_only(true)
            .secure(secure)
            .same_site(SameSite::Lax)
            .max_age(actix_web::cookie::time::Duration::seconds(
                SESSION_LIFETIME.as_secs() as i64,
            ))
            .finish()
    }

    /// The user of a session cookie value, if it is signed, unexpired and the user still
    /// exists with the same password.
    fn session_user(&self, signer: &Signer, value: &str) -> Option<String> {
        let mut parts = value.splitn(3, '.');
        let (user_b64, expires, signature) = (parts.next()?, parts.next()?, parts.next()?);
        let user = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(user_b64)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())?;
        if !self.hashes.contains_key(&user) {
            return None;
        }
        if !signer.verify("session", &[&user, expires, self.stamp(&user)], signature) {
            return None;
        }
        let expires: i64 = expires.parse().ok()?;
        (expires > chrono::Utc::now().timestamp()).then_some(user)
    }
}

/// Finds who sent `req`: the guard first, then the session cookie, then basic auth.
pub(crate) async fn identify(
    req: &HttpRequest,
    guard: Option<&Guard>,
    users: &Users,
    signer: &Signer,
) -> Option<Identity> {
    if let Some(user) = guard.and_then(|guard| guard(req)) {
        return Some(Identity {
            user,
            session: false,
        });
    }
    if let Some(cookie) = req.cookie(SESSION_COOKIE) {
        if let Some(user) = users.session_user(signer, cookie.value()) {
            return Some(Identity {
                user,
                session: true,
            });
        }
    }
    let (user, password) = basic_credentials(req)?;
    users
        .check_basic(signer, &user, &password)
        .await
        .then_some(Identity {
            user,
            session: false,
        })
}

/// The user and password of an `Authorization: Basic ...` header.
fn basic_credentials(req: &HttpRequest) -> Option<(String, String)> {
    let header = req.headers().get(actix_web::http::header::AUTHORIZATION)?;
    let encoded = header.to_str().ok()?.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The identity the middleware stored for this request.
pub(crate) fn identity(req: &HttpRequest) -> Option<Identity> {
    req.extensions().get::<Identity>().cloned()
}

/// An Argon2id hash of `password` in PHC form, for the `admin_users` setting.
///
/// ```
/// let hash = celery_web::admin::hash_password("correct horse battery staple");
/// assert!(hash.starts_with("$argon2id$"));
/// ```
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::encode_b64(uuid::Uuid::new_v4().as_bytes()).expect("16 bytes of salt");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("Argon2 with default parameters accepts any password")
        .to_string()
}

/// Whether `password` matches the PHC string `hash`; a malformed hash matches nothing.
fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A hash no password is known for, checked for unknown users.
fn unknown_user_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| hash_password(&super::signing::random_token()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn users() -> Users {
        Users::new(HashMap::from([("ann".to_owned(), hash_password("s3cret"))]))
    }

    #[tokio::test]
    async fn passwords_are_checked_against_argon2_hashes() {
        let users = users();
        assert!(users.check("ann", "s3cret").await);
        assert!(!users.check("ann", "S3cret").await);
        assert!(!users.check("bob", "s3cret").await);
    }

    #[test]
    fn sessions_are_signed_and_tied_to_the_password() {
        let signer = Signer::new(Some(&"k".repeat(32)));
        let users = users();
        let cookie = users.session_cookie(&signer, "ann", "/admin", false);
        assert_eq!(
            users.session_user(&signer, cookie.value()),
            Some("ann".to_owned())
        );
        assert!(cookie.http_only().unwrap_or(false));
        // Another user's name with ann's signature, a changed expiry, a changed password.
        let (_, rest) = cookie.value().split_once('.').unwrap();
        let bob = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("bob");
        assert_eq!(users.session_user(&signer, &format!("{bob}.{rest}")), None);
        let (head, signature) = cookie.value().rsplit_once('.').unwrap();
        let (user, expires) = head.split_once('.').unwrap();
        let later = expires.parse::<i64>().unwrap() + 1;
        assert_eq!(
            users.session_user(&signer, &format!("{user}.{later}.{signature}")),
            None
        );
        let changed = Users::new(HashMap::from([("ann".to_owned(), hash_password("new"))]));
        assert_eq!(changed.session_user(&signer, cookie.value()), None);
        assert_eq!(users.session_user(&signer, "garbage"), None);
    }

    #[tokio::test]
    async fn basic_auth_identifies_and_the_guard_comes_first() {
        let signer = Signer::new(Some(&"k".repeat(32)));
        let users = users();
        let basic = |credentials: &str| {
            let header = base64::engine::general_purpose::STANDARD.encode(credentials);
            TestRequest::default()
                .insert_header(("Authorization", format!("Basic {header}")))
                .to_http_request()
        };
        let who = identify(&basic("ann:s3cret"), None, &users, &signer).await;
        assert_eq!(who.map(|i| i.user), Some("ann".to_owned()));
        // Remembered: the second check does not run Argon2 but gives the same answer.
        assert!(identify(&basic("ann:s3cret"), None, &users, &signer)
            .await
            .is_some());
        assert!(identify(&basic("ann:wrong"), None, &users, &signer)
            .await
            .is_none());
        let guard: Guard = Arc::new(|req: &HttpRequest| {
            req.headers()
                .contains_key("x-staff")
                .then(|| "staff".to_owned())
        });
        let staff = TestRequest::default()
            .insert_header(("x-staff", "1"))
            .to_http_request();
        let who = identify(&staff, Some(&guard), &users, &signer).await;
        assert_eq!(who.map(|i| i.user), Some("staff".to_owned()));
        assert!(identify(&basic("x:y"), Some(&guard), &users, &signer)
            .await
            .is_none());
    }
}
