//! How a handler answers once it has sent a task: browsers go to the task's page, API clients
//! get JSON.
//!
//! A browser that submits a form gets `303 See Other` to `/tasks/<id>` (Post/Redirect/Get: a
//! reload of that page never sends the form twice). A client that asks for JSON (an `Accept`
//! header naming `application/json` but not `text/html`, or a JSON request body) gets the
//! task id at once, with the page's address in `Location`:
//!
//! ```text
//! $ curl -H 'Accept: application/json' -d x=2 -d y=3 http://127.0.0.1:8000/add
//! {"task_id":"…","url":"/tasks/…"}
//! ```

use actix_web::http::header::{self, HeaderMap};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use serde_json::{Map, Value};

/// Whether the request asks for JSON rather than a page.
pub fn wants_json(headers: &HeaderMap) -> bool {
    let has = |name: header::HeaderName, what: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.to_ascii_lowercase().contains(what))
    };
    has(header::CONTENT_TYPE, "application/json")
        || (has(header::ACCEPT, "application/json") && !has(header::ACCEPT, "text/html"))
}

/// The task page's path: `/tasks/<id>` (ids are UUIDs; anything else is percent-encoded).
pub fn task_path(task_id: &str) -> String {
    let encoded: String = task_id
        .bytes()
        .map(|byte| match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                char::from(byte).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect();
    format!("/tasks/{encoded}")
}

/// The answer to a request that sent `task_id`: a redirect to its page, or for API clients
/// `status` with `{"task_id", "url", ...extra}`.
pub fn task_sent(
    req: &HttpRequest,
    task_id: &str,
    status: StatusCode,
    extra: Map<String, Value>,
) -> HttpResponse {
    let path = task_path(task_id);
    if !wants_json(req.headers()) {
        return HttpResponse::SeeOther()
            .insert_header((header::LOCATION, path))
            .finish();
    }
    let mut body = Map::new();
    body.insert("task_id".to_owned(), Value::from(task_id));
    body.insert("url".to_owned(), Value::from(path.clone()));
    body.extend(extra);
    HttpResponse::build(status)
        .insert_header((header::LOCATION, path))
        .json(body)
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;

    use super::*;

    fn headers(pairs: &[(header::HeaderName, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(name.clone(), HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn browsers_get_pages_and_api_clients_get_json() {
        let chromium = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert!(!wants_json(&headers(&[(header::ACCEPT, chromium)])));
        assert!(!wants_json(&headers(&[])));
        assert!(!wants_json(&headers(&[(header::ACCEPT, "*/*")])));
        assert!(wants_json(&headers(&[(
            header::ACCEPT,
            "application/json"
        )])));
        assert!(wants_json(&headers(&[(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8"
        )])));
    }

    #[test]
    fn task_paths_encode_what_is_not_an_id() {
        assert_eq!(
            task_path("0f9a2c1e-5b7d-4c3a-9e8f-1a2b3c4d5e6f"),
            "/tasks/0f9a2c1e-5b7d-4c3a-9e8f-1a2b3c4d5e6f"
        );
        assert_eq!(task_path("a/b?c d"), "/tasks/a%2Fb%3Fc%20d");
    }
}
