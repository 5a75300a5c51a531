//! The site's handlers, tested without a worker: with `task_always_eager` a task runs inside
//! `delay`, and with `task_store_eager_result` its outcome lands in the result backend, where
//! the task pages read it. Copy this file to test your own views.
//!
//! `delay` sends through the installed app (one per process), so every test here shares one
//! app, on a SQLite file of its own.

use std::sync::OnceLock;

use actix_web::http::header;
use actix_web::{test, web, App};
use celery_web::{Celery, Settings};
use example_site::demo::tasks::explode;
use serde_json::{json, Value};

/// What Chromium sends as `Accept` when it submits a form.
const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

/// The app every test uses: eager, results stored, on a fresh SQLite file, migrated.
fn app() -> Celery {
    static APP: OnceLock<Celery> = OnceLock::new();
    APP.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("example-site-handlers-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let settings = Settings {
            // The database broker: signup's `apply_in` enqueues inside the site's transaction.
            broker_url: format!("sqlite://{}", dir.join("site.sqlite3").display()),
            result_backend: "db".to_owned(),
            task_always_eager: true,
            task_store_eager_result: true,
            ..Settings::default()
        };
        let app = Celery::from_settings(settings).expect("app");
        example_site::manage::migrate(&app).expect("migrations");
        app.install();
        app
    })
    .clone()
}

/// The site's routes, as `manage.rs` mounts them, on `celery`.
macro_rules! site {
    ($celery:expr) => {
        test::init_service(
            App::new()
                .app_data(web::Data::new($celery))
                .configure(example_site::web::configure),
        )
        .await
    };
}

/// The body of a response as text.
async fn text(response: actix_web::dev::ServiceResponse) -> String {
    String::from_utf8(test::read_body(response).await.to_vec()).expect("UTF-8")
}

/// The `Location` of a redirect, checked to be a task page; returns the task id.
fn task_id_of(response: &actix_web::dev::ServiceResponse) -> String {
    let location = response
        .headers()
        .get(header::LOCATION)
        .expect("a Location header")
        .to_str()
        .unwrap();
    location
        .strip_prefix("/tasks/")
        .unwrap_or_else(|| panic!("not a task page: {location}"))
        .to_owned()
}

#[actix_web::test]
async fn home_page_has_a_form_per_task() {
    let site = site!(app());
    let response = test::call_service(&site, test::TestRequest::get().uri("/").to_request()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get(header::CONTENT_TYPE).unwrap(),
        "text/html; charset=utf-8"
    );
    let page = text(response).await;
    assert!(page.contains("<title>Example site</title>"), "{page}");
    for action in ["/add", "/signup", "/reports/sales"] {
        assert!(
            page.contains(&format!(r#"<form method="post" action="{action}">"#)),
            "no form for {action}: {page}"
        );
    }
}

#[actix_web::test]
async fn the_add_form_leads_to_the_task_page_and_its_result() {
    let site = site!(app());
    let submitted = test::TestRequest::post()
        .uri("/add")
        .insert_header((header::ACCEPT, BROWSER_ACCEPT))
        .set_form([("x", "2"), ("y", "3")])
        .to_request();
    let response = test::call_service(&site, submitted).await;
    // 303: the browser follows with a GET, so reloading the task page never adds again.
    assert_eq!(response.status(), 303);
    let id = task_id_of(&response);

    let response = test::call_service(
        &site,
        test::TestRequest::get()
            .uri(&format!("/tasks/{id}"))
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), 200);
    let page = text(response).await;
    assert!(
        page.contains(&format!("<title>Task {id}</title>")),
        "{page}"
    );
    assert!(
        page.contains(r#"<span id="state" class="state SUCCESS">SUCCESS</span>"#),
        "{page}"
    );
    assert!(page.contains(r#"<pre id="result">5</pre>"#), "{page}");
    assert!(page.contains("example_site.demo.tasks.add"), "{page}");
    // Done: the page's script does not poll.
    assert!(page.contains(r#"data-ready="true""#), "{page}");

    let json: Value = test::call_and_read_body_json(
        &site,
        test::TestRequest::get()
            .uri(&format!("/api/tasks/{id}"))
            .to_request(),
    )
    .await;
    assert_eq!(json["state"], "SUCCESS");
    assert_eq!(json["ready"], true);
    assert_eq!(json["result"], 5);
    assert_eq!(json["task"], "example_site.demo.tasks.add");

    let recent =
        test::call_service(&site, test::TestRequest::get().uri("/tasks").to_request()).await;
    assert_eq!(recent.status(), 200);
    let recent = text(recent).await;
    assert!(
        recent.contains(&format!(r#"<a href="/tasks/{id}">"#)),
        "{recent}"
    );
}

#[actix_web::test]
async fn api_clients_get_json() {
    let site = site!(app());
    for request in [
        test::TestRequest::post()
            .uri("/add")
            .insert_header((header::ACCEPT, "application/json"))
            .set_form([("x", "20"), ("y", "1")]),
        test::TestRequest::post()
            .uri("/add")
            .set_json(json!({ "x": 20, "y": 1 })),
    ] {
        let response = test::call_service(&site, request.to_request()).await;
        assert_eq!(response.status(), 202);
        let location = response.headers().get(header::LOCATION).cloned().unwrap();
        let body: Value = test::read_body_json(response).await;
        let id = body["task_id"].as_str().expect("task_id").to_owned();
        assert_eq!(body["url"], format!("/tasks/{id}"));
        assert_eq!(location.to_str().unwrap(), format!("/tasks/{id}"));
        let json: Value = test::call_and_read_body_json(
            &site,
            test::TestRequest::get()
                .uri(&format!("/api/tasks/{id}"))
                .to_request(),
        )
        .await;
        assert_eq!(json["result"], 21);
    }
}

#[actix_web::test]
async fn an_unknown_task_is_pending_and_its_page_polls() {
    let site = site!(app());
    let page = text(
        test::call_service(
            &site,
            test::TestRequest::get()
                .uri("/tasks/not-sent-yet")
                .to_request(),
        )
        .await,
    )
    .await;
    assert!(page.contains(">PENDING</span>"), "{page}");
    assert!(page.contains(r#"data-ready="false""#), "{page}");
    assert!(
        page.contains(r#"data-api="/api/tasks/not-sent-yet""#),
        "{page}"
    );
    // Without JavaScript, the page reloads itself instead.
    assert!(
        page.contains(r#"<noscript><meta http-equiv="refresh""#),
        "{page}"
    );
    let json: Value = test::call_and_read_body_json(
        &site,
        test::TestRequest::get()
            .uri("/api/tasks/not-sent-yet")
            .to_request(),
    )
    .await;
    assert_eq!(json["state"], "PENDING");
    assert_eq!(json["ready"], false);
}

#[actix_web::test]
async fn a_failure_shows_its_traceback() {
    let celery = app();
    let failed = explode::s("out of coffee".to_owned())
        .apply_async_on(&celery)
        .await
        .unwrap();
    let site = site!(celery);
    let page = text(
        test::call_service(
            &site,
            test::TestRequest::get()
                .uri(&format!("/tasks/{}", failed.id()))
                .to_request(),
        )
        .await,
    )
    .await;
    assert!(page.contains(r#"class="state FAILURE">FAILURE"#), "{page}");
    assert!(
        page.contains(r#"<pre id="traceback" >"#),
        "a visible traceback: {page}"
    );
    assert!(page.contains("out of coffee"), "{page}");
}

#[actix_web::test]
async fn what_users_typed_is_shown_escaped() {
    let site = site!(app());
    let response = test::call_service(
        &site,
        test::TestRequest::post()
            .uri("/reports/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
            .set_form([("rows", "3")])
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), 303);
    let id = task_id_of(&response);
    let page = text(
        test::call_service(
            &site,
            test::TestRequest::get()
                .uri(&format!("/tasks/{id}"))
                .to_request(),
        )
        .await,
    )
    .await;
    assert!(
        page.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "{page}"
    );
    assert!(!page.contains("<script>alert(1)"), "{page}");
    assert!(page.contains("&#34;total&#34;:6"), "{page}");
}

#[actix_web::test]
async fn signup_commits_its_row_and_its_email_together() {
    let celery = app();
    let site = site!(celery.clone());
    let queued = || async {
        celery
            .broker()
            .queue_stats(&["emails".to_owned()])
            .await
            .unwrap()[0]
            .pending()
    };
    let before = queued().await;
    let signup = || {
        test::TestRequest::post()
            .uri("/signup")
            .insert_header((header::ACCEPT, BROWSER_ACCEPT))
            .set_form([("email", "grace@example.com")])
            .to_request()
    };
    let response = test::call_service(&site, signup()).await;
    assert_eq!(response.status(), 303);
    let id = task_id_of(&response);
    // `apply_in` enqueues even in eager mode (it runs inside the transaction): the email
    // waits for a worker, and its page says so.
    assert_eq!(queued().await, before + 1);
    let page = text(
        test::call_service(
            &site,
            test::TestRequest::get()
                .uri(&format!("/tasks/{id}"))
                .to_request(),
        )
        .await,
    )
    .await;
    assert!(page.contains(">PENDING</span>"), "{page}");

    // The same address again: the form comes back with the reason, and nothing is enqueued.
    let response = test::call_service(&site, signup()).await;
    assert_eq!(response.status(), 409);
    let page = text(response).await;
    assert!(
        page.contains("grace@example.com has already signed up."),
        "{page}"
    );
    assert!(page.contains(r#"value="grace@example.com""#), "{page}");
    assert_eq!(queued().await, before + 1);

    // An API client gets the status and a JSON error.
    let response = test::call_service(
        &site,
        test::TestRequest::post()
            .uri("/signup")
            .insert_header((header::ACCEPT, "application/json"))
            .set_form([("email", "grace@example.com")])
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), 409);
    let body: Value = test::read_body_json(response).await;
    assert_eq!(body["error"], "already exists");
}

#[actix_web::test]
async fn recent_tasks_are_paged_newest_first() {
    let celery = app();
    let site = site!(celery.clone());
    let mut sent = Vec::new();
    for n in 0..30 {
        let result = example_site::demo::tasks::add::s(n, 1000)
            .apply_async_on(&celery)
            .await
            .unwrap();
        sent.push(result.id().to_owned());
    }
    let rows = |page: &str| page.matches("<tr data-state=").count();
    let first =
        text(test::call_service(&site, test::TestRequest::get().uri("/tasks").to_request()).await)
            .await;
    assert_eq!(rows(&first), 25, "{first}");
    let newest = first.find(&sent[29]).expect("the newest task is on page 1");
    let older = first.find(&sent[28]).expect("the next newest too");
    assert!(newest < older, "newest first");
    let next = first
        .split(r#"<a href="/tasks?cursor="#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no link to older tasks: {first}"));
    let second = text(
        test::call_service(
            &site,
            test::TestRequest::get()
                .uri(&format!("/tasks?cursor={next}"))
                .to_request(),
        )
        .await,
    )
    .await;
    assert!(rows(&second) >= 5, "{second}");
    // 29 of this test's own tasks are newer than its first: that one is on a later page.
    assert!(!first.contains(&sent[0]), "{first}");

    let broken = test::call_service(
        &site,
        test::TestRequest::get()
            .uri("/tasks?cursor=garbage")
            .to_request(),
    )
    .await;
    assert_eq!(broken.status(), 400);
    assert!(text(broken).await.contains("That page link is broken"));
}

#[actix_web::test]
async fn recent_tasks_need_the_database_result_backend() {
    // Not installed: this app only serves the page (which reads `web::Data<Celery>`).
    let settings = Settings {
        broker_url: "memory://".to_owned(),
        result_backend: "memory://".to_owned(),
        ..Settings::default()
    };
    let site = site!(Celery::from_settings(settings).unwrap());
    let page =
        text(test::call_service(&site, test::TestRequest::get().uri("/tasks").to_request()).await)
            .await;
    assert!(page.contains(r#"id="no-listing""#), "{page}");
}
