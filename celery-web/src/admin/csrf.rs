//! CSRF protection. Every admin form carries a `csrf_token` field that must equal the token in
//! the `celery_web_admin_csrf` cookie (a double-submit cookie), and the token must be signed
//! for the user sending it (the login form's for nobody): a token someone else obtained and
//! planted as a cookie does not pass for another user. The middleware refuses a form POST
//! without it. JSON API writes must be sent as `application/json`, which a
//! cross-site form cannot do (and the admin answers no CORS preflight).

use actix_web::cookie::{Cookie, SameSite};
use actix_web::{HttpMessage, HttpRequest};

use super::signing::{random_token, Signer};

/// Name of the CSRF cookie.
pub(crate) const CSRF_COOKIE: &str = "celery_web_admin_csrf";
/// Name of the form field that repeats it.
pub(crate) const CSRF_FIELD: &str = "csrf_token";

/// The request's CSRF token, put into its extensions by the middleware; `fresh` when the
/// response must set the cookie.
#[derive(Clone, Debug)]
pub(crate) struct CsrfToken {
    pub(crate) value: String,
    pub(crate) fresh: bool,
}

/// The token of the request's cookie when it is one we signed for `user` (empty: not logged
/// in), else a new one.
pub(crate) fn token_for(req: &HttpRequest, signer: &Signer, user: &str) -> CsrfToken {
    if let Some(cookie) = req.cookie(CSRF_COOKIE) {
        if is_signed(cookie.value(), signer, user) {
            return CsrfToken {
                value: cookie.value().to_owned(),
                fresh: false,
            };
        }
    }
    let nonce = random_token();
    let signature = signer.sign("csrf", &[&nonce, user]);
    CsrfToken {
        value: format!("{nonce}.{signature}"),
        fresh: true,
    }
}

fn is_signed(token: &str, signer: &Signer, user: &str) -> bool {
    token
        .split_once('.')
        .is_some_and(|(nonce, signature)| signer.verify("csrf", &[nonce, user], signature))
}

/// Whether a submitted form token matches the request's cookie and is signed for `user`.
pub(crate) fn form_token_matches(
    req: &HttpRequest,
    submitted: &str,
    signer: &Signer,
    user: &str,
) -> bool {
    let Some(cookie) = req.cookie(CSRF_COOKIE) else {
        return false;
    };
    // Both are signed by us, so comparing them in plain is not an oracle for the key.
    is_signed(cookie.value(), signer, user) && cookie.value() == submitted
}

/// The cookie that carries `token`.
pub(crate) fn cookie(token: &str, path: &str, secure: bool) -> Cookie<'static> {
    Cookie::build(CSRF_COOKIE, token.to_owned())
        .path(path.to_owned())
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Strict)
        .finish()
}

/// The token a page puts into its forms.
pub(crate) fn current(req: &HttpRequest) -> String {
    req.extensions()
        .get::<CsrfToken>()
        .map(|token| token.value.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn a_form_token_must_repeat_a_signed_cookie() {
        let signer = Signer::new(Some(&"k".repeat(32)));
        let bare = TestRequest::default().to_http_request();
        let token = token_for(&bare, &signer, "ann");
        assert!(token.fresh);
        assert!(!form_token_matches(&bare, &token.value, &signer, "ann"));

        let with_cookie = TestRequest::default()
            .cookie(cookie(&token.value, "/", false))
            .to_http_request();
        assert!(!token_for(&with_cookie, &signer, "ann").fresh);
        assert!(form_token_matches(
            &with_cookie,
            &token.value,
            &signer,
            "ann"
        ));
        assert!(!form_token_matches(&with_cookie, "other", &signer, "ann"));

        // A cookie planted by someone without the key is replaced, and never matches.
        let planted = TestRequest::default()
            .cookie(cookie("abc.def", "/", false))
            .to_http_request();
        assert!(token_for(&planted, &signer, "ann").fresh);
        assert!(!form_token_matches(&planted, "abc.def", &signer, "ann"));

        // A genuine token of another user (or of the login page) planted as a cookie does not
        // pass for ann, and ann gets a fresh one.
        let anonymous = token_for(&bare, &signer, "");
        let planted = TestRequest::default()
            .cookie(cookie(&anonymous.value, "/", false))
            .to_http_request();
        assert!(!form_token_matches(
            &planted,
            &anonymous.value,
            &signer,
            "ann"
        ));
        assert!(form_token_matches(&planted, &anonymous.value, &signer, ""));
        assert!(token_for(&planted, &signer, "ann").fresh);
    }
}
