//! The admin over HTTP, against a real `site runserver` (and a worker where tasks must run):
//! authentication, CSRF, escaping, password masking and the JSON API.

use std::time::Duration;

use celery_web_tests::admin_client::{
    basic, client, form_token, get, send_json, Answer, Session, USER,
};
use celery_web_tests::{eventually, on_both_databases, Database, Process, TestDb};
use serde_json::{json, Value};

const ADMIN: &str = "/admin/celery";

/// A migrated database with the web server running on it.
struct Site {
    db: TestDb,
    _web: Process,
    base: String,
}

impl Site {
    fn start(kind: Database) -> Option<Site> {
        let db = TestDb::new(kind)?;
        Some(Site::on(db))
    }

    fn on(db: TestDb) -> Site {
        db.run_site(&["migrate"]);
        let (web, base) = db.runserver();
        Site {
            db,
            _web: web,
            base: format!("{base}{ADMIN}"),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

#[test]
fn unauthenticated_requests_are_refused() {
    let Some(site) = Site::start(Database::Sqlite) else {
        return;
    };
    // Pages send a browser to the login form, remembering where it was going.
    for path in [
        "/",
        "/results?status=FAILURE",
        "/periodic-tasks",
        "/workers",
        "/queues",
    ] {
        let answer = get(&site.url(path), None);
        assert_eq!(answer.status, 303, "{path}");
        let location = answer.location.expect("a redirect");
        assert!(
            location.starts_with("/admin/celery/login?next=%2Fadmin%2Fcelery"),
            "{path} → {location}"
        );
    }
    // Spellings actix decodes to the login or API routes still need a user.
    for path in ["/logi%6E/../results", "/%72esults", "/api/%74asks"] {
        let answer = get(&site.url(path), None);
        assert!(
            [303, 401].contains(&answer.status),
            "{path} answered {} without a login",
            answer.status
        );
    }
    // Machines get 401 with a basic-auth challenge.
    for path in [
        "/api/tasks",
        "/api/workers",
        "/api/periodic-tasks",
        "/metrics",
    ] {
        let answer = get(&site.url(path), None);
        assert_eq!(answer.status, 401, "{path}");
        assert!(answer
            .www_authenticate
            .as_deref()
            .is_some_and(|h| h.starts_with("Basic ")));
        assert_eq!(answer.json()["error"], "authentication required");
    }
    let wrong = get(&site.url("/api/tasks"), Some(&basic("admin", "nope")));
    assert_eq!(wrong.status, 401);
    let unknown = get(&site.url("/api/tasks"), Some(&basic("mallory", "admin")));
    assert_eq!(unknown.status, 401);
    let right = get(&site.url("/api/tasks"), Some(&basic(USER.0, USER.1)));
    assert_eq!(right.status, 200, "{}", right.body);
    // A write without credentials changes nothing.
    let anonymous = Answer::of(
        client()
            .post(&site.url("/api/periodic-tasks"))
            .send_json(json!({"name": "x"})),
    );
    assert_eq!(anonymous.status, 401);

    // The login form: a wrong password is refused; the right one sets a session cookie
    // that opens the pages, and goes where the user was going.
    let (_, refused) = Session::log_in(&site.base, "wrong");
    assert_eq!(refused.status, 401);
    assert!(refused.body.contains("Wrong user name or password."));
    let (session, answer) = Session::log_in(&site.base, USER.1);
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert_eq!(answer.location.as_deref(), Some("/admin/celery/results"));
    // `next` is followed only to plain paths inside the admin.
    for next in [
        "//evil.example/",
        "https://evil.example/",
        "/admin/celery/\t/x",
        "/elsewhere",
    ] {
        let page = get(&site.url("/login"), None);
        let login = Answer::of(
            client()
                .post(&site.url("/login"))
                .set("Cookie", &page.cookies.join("; "))
                .send_form(&[
                    ("csrf_token", &form_token(&page.body)),
                    ("username", USER.0),
                    ("password", USER.1),
                    ("next", next),
                ]),
        );
        assert_eq!(login.status, 303);
        assert_eq!(
            login.location.as_deref(),
            Some("/admin/celery/"),
            "next={next:?}"
        );
    }
    let page = session.get(&site.url("/results"));
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Task results"));
    // A forged session cookie (another user name, same signature) is worthless.
    let forged = Session {
        cookies: session
            .cookies
            .iter()
            .map(|c| match c.split_once('=') {
                Some(("celery_web_admin_session", value)) => {
                    let (_, rest) = value.split_once('.').unwrap();
                    format!("celery_web_admin_session=Ym9i.{rest}")
                }
                _ => c.clone(),
            })
            .collect(),
        token: session.token.clone(),
    };
    assert_eq!(forged.get(&site.url("/results")).status, 303);
    // Logging out ends the session in the browser.
    let out = session.post_form(&site.url("/logout"), &[]);
    assert_eq!(out.status, 303);
    assert!(out.cookies.iter().any(|c| c == "celery_web_admin_session="));
}

#[test]
fn forms_without_a_csrf_token_are_refused() {
    let Some(site) = Site::start(Database::Sqlite) else {
        return;
    };
    let (session, answer) = Session::log_in(&site.base, USER.1);
    assert_eq!(answer.status, 303);
    let form = [
        ("name", "csrf probe"),
        ("task", "example_site.demo.tasks.add"),
        ("enabled", "on"),
        ("kind", "interval"),
        ("every", "1"),
        ("period", "hours"),
        ("args", "[2, 3]"),
    ];
    let url = site.url("/periodic-tasks/new");
    // No token, an empty one, and a token the admin never signed.
    let mut without = form.to_vec();
    assert_eq!(session.post_raw(&url, &without).status, 403);
    without.push(("csrf_token", ""));
    assert_eq!(session.post_raw(&url, &without).status, 403);
    let mut forged = form.to_vec();
    forged.push(("csrf_token", "0123456789abcdef.deadbeef"));
    let refused = session.post_raw(&url, &forged);
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("CSRF"));
    // A cross-site form can post to the JSON API only as a form: refused before any effect.
    let as_form = Answer::of(
        client()
            .post(&site.url("/api/task/apply/example_site.demo.tasks.add"))
            .set("Authorization", &basic(USER.0, USER.1))
            .send_form(&[("args", "[1,2]")]),
    );
    assert_eq!(as_form.status, 415);
    let listed = get(
        &site.url("/api/periodic-tasks"),
        Some(&basic(USER.0, USER.1)),
    )
    .json();
    assert!(
        !listed.to_string().contains("csrf probe"),
        "created without a token: {listed}"
    );
    // A genuine token handed to someone else (the login page's, anonymous) planted as the
    // user's cookie does not pass: tokens are signed for their user.
    let page = get(&site.url("/login"), None);
    let planted = Session {
        cookies: session
            .cookies
            .iter()
            .filter(|c| !c.starts_with("celery_web_admin_csrf="))
            .cloned()
            .chain(page.cookies.iter().cloned())
            .collect(),
        token: form_token(&page.body),
    };
    assert_eq!(planted.post_form(&url, &form).status, 403);
    // Not a urlencoded form: refused too (the token is read from urlencoded forms only).
    let multipart = Answer::of(
        client()
            .post(&url)
            .set("Cookie", &session.cookie_header())
            .set("Content-Type", "multipart/form-data; boundary=x")
            .send_string(&format!(
                "--x\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n{}\r\n--x--\r\n",
                session.token
            )),
    );
    assert_eq!(multipart.status, 403);
    // The same form with the page's token goes through.
    let created = session.post_form(&url, &form);
    assert_eq!(created.status, 303, "{}", created.body);
    let listed = get(
        &site.url("/api/periodic-tasks"),
        Some(&basic(USER.0, USER.1)),
    )
    .json();
    let probe = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "csrf probe")
        .cloned()
        .expect("created with the token");
    // Editing it through the form: renamed and rescheduled in place, still enabled.
    let id = probe["id"].as_i64().unwrap();
    let edit_url = site.url(&format!("/periodic-tasks/{id}"));
    let edit_page = session.get(&edit_url);
    assert!(
        edit_page.body.contains("value=\"csrf probe\""),
        "the form shows the task"
    );
    let edited = session.post_form(
        &edit_url,
        &[
            ("name", "csrf probe renamed"),
            ("task", "example_site.demo.tasks.add"),
            ("enabled", "on"),
            ("kind", "crontab"),
            ("minute", "30"),
            ("hour", "7"),
            ("day_of_week", "mon"),
            ("day_of_month", "*"),
            ("month_of_year", "*"),
            ("timezone", "UTC"),
            ("args", "[4, 5]"),
        ],
    );
    assert_eq!(edited.status, 303, "{}", edited.body);
    let after = get(
        &site.url(&format!("/api/periodic-tasks/{id}")),
        Some(&basic(USER.0, USER.1)),
    )
    .json();
    assert_eq!(after["name"], "csrf probe renamed");
    assert_eq!(after["schedule_description"], "At 07:30 on Monday");
    assert_eq!(after["args"], json!([4, 5]));
    assert_eq!(after["enabled"], true);
    // The login form itself needs the token too (no login CSRF).
    let login = Answer::of(
        client()
            .post(&site.url("/login"))
            .send_form(&[("username", USER.0), ("password", USER.1)]),
    );
    assert_eq!(login.status, 403);
}

#[test]
fn user_input_is_rendered_escaped() {
    let Some(site) = Site::start(Database::Sqlite) else {
        return;
    };
    let payload = "<script>alert('x')</script>";
    let created = send_json(
        "POST",
        &site.url("/api/periodic-tasks"),
        &json!({
            "name": payload,
            "task": "example_site.demo.tasks.add",
            "schedule": {"interval": {"every": 1, "period": "hours"}},
            "args": [payload, "<img src=x onerror=alert(1)>"],
            "description": "\"><script>alert(2)</script>",
        }),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["id"].as_i64().unwrap();
    let (session, _) = Session::log_in(&site.base, USER.1);
    for path in [
        "/periodic-tasks".to_owned(),
        format!("/periodic-tasks/{id}"),
        "/results?task=%3Cscript%3Ealert(3)%3C%2Fscript%3E".to_owned(),
        "/?notice=%3Cscript%3Ealert(4)%3C%2Fscript%3E".to_owned(),
        "/results/%3Cscript%3Ealert(5)%3C%2Fscript%3E".to_owned(),
    ] {
        let page = session.get(&site.url(&path));
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        assert!(!page.body.contains("<script>"), "{path} has a raw <script>");
        assert!(!page.body.contains("<img"), "{path} has a raw <img>");
        assert!(page.body.contains("&#60;script&#62;alert"), "{path}");
    }
}

/// The PostgreSQL URL with a password in it (trust auth ignores it), to see it masked.
fn with_password(url: &str) -> String {
    url.replacen("postgres@", "postgres:hunter2secret@", 1)
}

fn json_api_round_trips(kind: Database) {
    let Some(mut db) = TestDb::new(kind) else {
        return;
    };
    if kind == Database::Postgres {
        db.url = with_password(&db.url);
    }
    let site = Site::on(db);
    let _worker = site
        .db
        .spawn_worker("api", &["-Q", "celery,emails,reports"]);
    let auth = basic(USER.0, USER.1);

    // Periodic tasks: create, read, update, refuse bad input, delete.
    let created = send_json(
        "POST",
        &site.url("/api/periodic-tasks"),
        &json!({
            "name": "api crontab",
            "task": "example_site.demo.tasks.add",
            "schedule": {"crontab": {"minute": "30", "hour": "7", "day_of_week": "mon",
                                      "timezone": "Europe/Oslo"}},
            "args": [2, 3],
            "enabled": false,
        }),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let task = created.json();
    let id = task["id"].as_i64().unwrap();
    assert_eq!(
        task["schedule_description"],
        "At 07:30 on Monday (Europe/Oslo)"
    );
    assert_eq!(task["enabled"], false);
    assert_eq!(task["source"], "db");
    let read = get(&site.url(&format!("/api/periodic-tasks/{id}")), Some(&auth)).json();
    assert_eq!(read["schedule"]["crontab"]["day_of_week"], "mon");

    let bad = send_json(
        "PUT",
        &site.url(&format!("/api/periodic-tasks/{id}")),
        &json!({
            "name": "api crontab", "task": "example_site.demo.tasks.add",
            "schedule": {"crontab": {"day_of_week": "7"}},
        }),
    );
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(bad.json()["fields"]["day_of_week"]
        .as_str()
        .unwrap()
        .contains("out of range 0-6"));
    let typo = send_json(
        "POST",
        &site.url("/api/periodic-tasks"),
        &json!({"name": "x", "task": "y", "schedule": {"interval": {"every": 1, "period": "hours"}},
                "colour": "red"}),
    );
    assert_eq!(typo.status, 400);
    assert!(typo.json()["error"].as_str().unwrap().contains("colour"));

    let updated = send_json(
        "PUT",
        &site.url(&format!("/api/periodic-tasks/{id}")),
        &json!({
            "name": "api interval", "task": "example_site.demo.tasks.add",
            "schedule": {"interval": {"every": 5, "period": "minutes"}},
            "args": [4, 5], "enabled": true,
        }),
    );
    assert_eq!(updated.status, 200, "{}", updated.body);
    let updated = updated.json();
    assert_eq!(updated["id"], id, "updated in place, not re-created");
    assert_eq!(updated["name"], "api interval");
    assert_eq!(updated["enabled"], true);
    assert_eq!(updated["args"], json!([4, 5]));
    let names: Vec<Value> = get(&site.url("/api/periodic-tasks"), Some(&auth))
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].clone())
        .collect();
    assert!(names.contains(&json!("api interval")) && !names.contains(&json!("api crontab")));
    let deleted = Answer::of(
        client()
            .delete(&site.url(&format!("/api/periodic-tasks/{id}")))
            .set("Authorization", &auth)
            .call(),
    );
    assert_eq!(deleted.status, 204);
    let gone = get(&site.url(&format!("/api/periodic-tasks/{id}")), Some(&auth));
    assert_eq!(gone.status, 404);

    // Tasks: apply, wait for the result, find it in the list; unknown names are refused.
    let applied = send_json(
        "POST",
        &site.url("/api/task/apply/example_site.demo.tasks.add"),
        &json!({"args": [20, 22]}),
    );
    assert_eq!(applied.status, 201, "{}", applied.body);
    let task_id = applied.json()["task_id"].as_str().unwrap().to_owned();
    let done = eventually(Duration::from_secs(20), "the applied task's result", || {
        let answer = get(&site.url(&format!("/api/task/{task_id}")), Some(&auth));
        (answer.status == 200 && answer.json()["status"] == "SUCCESS").then(|| answer.json())
    });
    assert_eq!(done["result"], 42);
    assert_eq!(done["args"], json!([20, 22]));
    assert_eq!(
        done["worker"].as_str().unwrap().split('@').next(),
        Some("api")
    );
    let listed = get(
        &site.url("/api/tasks?status=SUCCESS&task=example_site.demo.tasks.add"),
        Some(&auth),
    )
    .json();
    assert!(listed["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["task_id"] == task_id.as_str()));
    let bad_filter = get(&site.url("/api/tasks?status=DONE"), Some(&auth));
    assert_eq!(bad_filter.status, 400);
    assert!(bad_filter.json()["error"]
        .as_str()
        .unwrap()
        .contains("not a task state"));
    let bad_cursor = get(&site.url("/api/tasks?cursor=garbage"), Some(&auth));
    assert_eq!(bad_cursor.status, 400);
    // A body that is not what apply takes is refused, not sent without its arguments.
    for body in [
        json!({"args": [1, 2], "kwarg": {}}),
        json!({"countdown": "3600"}),
    ] {
        let refused = send_json(
            "POST",
            &site.url("/api/task/apply/example_site.demo.tasks.add"),
            &body,
        );
        assert_eq!(refused.status, 400, "{body}: {}", refused.body);
    }
    let unknown = send_json(
        "POST",
        &site.url("/api/task/apply/example_site.demo.tasks.nope"),
        &json!({}),
    );
    assert_eq!(unknown.status, 404);
    assert!(unknown.json()["error"]
        .as_str()
        .unwrap()
        .contains("unknown task"));

    // Revoke a task that waits (countdown): it never runs, its result says REVOKED.
    let later = send_json(
        "POST",
        &site.url("/api/task/apply/example_site.demo.tasks.add"),
        &json!({"args": [1, 1], "countdown": 3}),
    );
    let later_id = later.json()["task_id"].as_str().unwrap().to_owned();
    let revoked = send_json(
        "POST",
        &site.url(&format!("/api/task/revoke/{later_id}")),
        &json!({}),
    );
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    std::thread::sleep(Duration::from_secs(5));
    let state = get(&site.url(&format!("/api/task/{later_id}")), Some(&auth)).json();
    assert_eq!(state["status"], "REVOKED", "{state}");

    // Workers, queues (password masked) and metrics.
    let workers = eventually(Duration::from_secs(10), "the worker's heartbeat", || {
        let list = get(&site.url("/api/workers"), Some(&auth)).json();
        list.as_array()?
            .iter()
            .find(|w| {
                w["hostname"]
                    .as_str()
                    .is_some_and(|h| h.starts_with("api@"))
            })
            .filter(|w| w["online"] == true)
            .cloned()
    });
    assert!(workers["processed"].as_i64().unwrap() >= 1, "{workers}");
    let queues = get(&site.url("/api/queues"), Some(&auth));
    assert!(!queues.body.contains("hunter2secret"), "{}", queues.body);
    let names: Vec<String> = queues.json()["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        names.iter().any(|n| n == "celery") && names.iter().any(|n| n == "emails"),
        "{names:?}"
    );
    if kind == Database::Postgres {
        assert!(queues.json()["broker"].as_str().unwrap().contains(":***@"));
        let (session, _) = Session::log_in(&site.base, USER.1);
        let page = session.get(&site.url("/queues"));
        assert!(page.body.contains(":***@") && !page.body.contains("hunter2secret"));
    }
    let metrics = get(&site.url("/metrics"), Some(&auth));
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.body.contains(
            "celery_web_task_results_last_hour{task=\"example_site.demo.tasks.add\",state=\"SUCCESS\"} 1"
        ),
        "{}",
        metrics.body
    );
    assert!(metrics.body.contains("celery_web_workers_online 1"));
    assert!(metrics
        .body
        .contains("celery_web_queue_messages{queue=\"celery\",state=\"waiting\"} 0"));
    assert!(metrics
        .body
        .contains("celery_web_task_runtime_seconds_count{task=\"example_site.demo.tasks.add\"} 1"));
}
on_both_databases!(json_api_round_trips);
