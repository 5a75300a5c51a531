//! An HTTP client for the admin pages as a browser uses them: cookies, the CSRF token of
//! the forms, the demo user's login; and the JSON API with basic authentication.

use std::time::Duration;

use serde_json::Value;

/// The example site's demo user (example-site/config/site.toml).
pub const USER: (&str, &str) = ("admin", "admin");

/// An HTTP client that does not follow redirects (so a 303 can be checked).
pub fn client() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .redirects(0)
        .timeout(Duration::from_secs(20))
        .build()
}

/// Status, headers we look at, and body of any answer (errors included).
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// `Location`, on a redirect.
    pub location: Option<String>,
    /// `WWW-Authenticate`, on a 401.
    pub www_authenticate: Option<String>,
    /// The cookies set, as `name=value`.
    pub cookies: Vec<String>,
    /// The body as text.
    pub body: String,
}

impl Answer {
    /// The answer of a request, error statuses included; panics when none came.
    pub fn of(result: Result<ureq::Response, ureq::Error>) -> Answer {
        let response = match result {
            Ok(response) => response,
            Err(ureq::Error::Status(_, response)) => response,
            Err(error) => panic!("request failed: {error}"),
        };
        Answer {
            status: response.status(),
            location: response.header("location").map(str::to_owned),
            www_authenticate: response.header("www-authenticate").map(str::to_owned),
            cookies: response
                .all("set-cookie")
                .iter()
                .map(|c| c.split(';').next().unwrap_or("").to_owned())
                .collect(),
            body: response.into_string().unwrap_or_default(),
        }
    }

    /// The body as JSON; panics when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// An `Authorization` header value for HTTP basic authentication.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    let pair = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// A GET, with an `Authorization` header when given.
pub fn get(url: &str, auth: Option<&str>) -> Answer {
    let mut request = client().get(url);
    if let Some(auth) = auth {
        request = request.set("Authorization", auth);
    }
    Answer::of(request.call())
}

/// A JSON request to the API as the demo user.
pub fn send_json(method: &str, url: &str, body: &Value) -> Answer {
    Answer::of(
        client()
            .request(method, url)
            .set("Authorization", &basic(USER.0, USER.1))
            .send_json(body.clone()),
    )
}

/// A browser-like session: the cookies the admin set, and the CSRF token of its forms.
#[derive(Debug)]
pub struct Session {
    /// The cookies, as `name=value`.
    pub cookies: Vec<String>,
    /// The CSRF token its forms carry.
    pub token: String,
}

impl Session {
    /// Opens the login page of the admin at `admin` (its base URL) for its CSRF cookie and
    /// token, and logs in as the demo user with `password`.
    pub fn log_in(admin: &str, password: &str) -> (Session, Answer) {
        let page = get(&format!("{admin}/login"), None);
        assert_eq!(page.status, 200, "{}", page.body);
        let mut session = Session {
            cookies: page.cookies.clone(),
            token: form_token(&page.body),
        };
        let answer = session.post_form(
            &format!("{admin}/login"),
            &[
                ("username", USER.0),
                ("password", password),
                ("next", "/admin/celery/results"),
            ],
        );
        session.remember(&answer.cookies);
        if answer.status == 303 {
            // CSRF tokens are signed for their user: a logged-in page hands out a new one.
            let page = session.get(&format!("{admin}/periodic-tasks/new"));
            assert_eq!(page.status, 200, "{}", page.body);
            session.remember(&page.cookies);
            session.token = form_token(&page.body);
        }
        (session, answer)
    }

    /// Keeps `cookies` (`name=value`), replacing earlier ones of the same name.
    pub fn remember(&mut self, cookies: &[String]) {
        for cookie in cookies {
            let name = cookie.split('=').next().unwrap_or_default();
            self.cookies
                .retain(|kept| kept.split('=').next().unwrap_or_default() != name);
            self.cookies.push(cookie.clone());
        }
    }

    /// The `Cookie` header of its requests.
    pub fn cookie_header(&self) -> String {
        self.cookies.join("; ")
    }

    /// A GET with its cookies.
    pub fn get(&self, url: &str) -> Answer {
        Answer::of(
            client()
                .get(url)
                .set("Cookie", &self.cookie_header())
                .call(),
        )
    }

    /// Posts a form with this session's CSRF token.
    pub fn post_form(&self, url: &str, fields: &[(&str, &str)]) -> Answer {
        let mut form = vec![("csrf_token", self.token.as_str())];
        form.extend_from_slice(fields);
        self.post_raw(url, &form)
    }

    /// Posts exactly `fields`.
    pub fn post_raw(&self, url: &str, fields: &[(&str, &str)]) -> Answer {
        Answer::of(
            client()
                .post(url)
                .set("Cookie", &self.cookie_header())
                .send_form(fields),
        )
    }
}

/// The `csrf_token` hidden input of a page.
pub fn form_token(html: &str) -> String {
    let marker = "name=\"csrf_token\" value=\"";
    let start = html.find(marker).expect("a form with a CSRF token") + marker.len();
    html[start..]
        .split('"')
        .next()
        .expect("token value")
        .to_owned()
}
