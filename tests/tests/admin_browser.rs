//! The admin pages (`/admin/celery` on the example site) in a real headless Chromium: what a
//! staff user does, from logging in to logging out, on one dev server (web, worker and beat in
//! one process, SQLite).

use std::time::{Duration, Instant};

use base64::Engine;
use celery_web_tests::browser::Browser;
use celery_web_tests::{Database, TestDb};
use serde_json::{json, Value};

/// Where the example site mounts the admin.
const ADMIN: &str = "/admin/celery";

/// The periodic task the test creates through the form.
const PERIODIC: &str = "browser add";

/// What the failing task panics with.
const BOOM: &str = "boom from the browser test";

/// An argument that would run as script if a page printed it unescaped.
const SCRIPT: &str = "<script>alert('admin')</script>";

/// How long a click's page may take to come. chromedriver waits for a navigation only once it
/// has started, and a form's submission may start after the click returned: after a click
/// that leaves the page, wait for something only the next page has.
const WAIT: Duration = Duration::from_secs(5);

/// Waits until the browser's URL contains `part` (a click that reloads the same page).
fn wait_for_url(browser: &Browser, part: &str) {
    let deadline = Instant::now() + WAIT;
    while !browser.current_url().contains(part) {
        assert!(
            Instant::now() < deadline,
            "the URL has no `{part}` after {WAIT:?}: {}",
            browser.current_url()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Opens `url` every 250 ms until `check` finds what it waits for on the page; panics after
/// `limit`. For pages that do not refresh themselves (worker counts, result lists).
fn reload_until<T>(
    browser: &Browser,
    url: &str,
    limit: Duration,
    what: &str,
    mut check: impl FnMut(&Browser) -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        browser.goto(url);
        if let Some(found) = check(browser) {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not shown on {url} within {limit:?}; the page:\n{}",
            browser.page_source()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The `data-status` of every row of the results table on the current page.
fn result_statuses(browser: &Browser) -> Vec<String> {
    browser
        .find_all("#results tbody tr")
        .iter()
        .map(|row| row.attribute("data-status").unwrap_or_default())
        .collect()
}

/// Sends `task` with `args` through the admin's JSON API (basic auth); returns its task id.
fn apply(base: &str, task: &str, args: Value) -> String {
    let credentials = base64::engine::general_purpose::STANDARD.encode("admin:admin");
    let response = ureq::post(&format!("{base}{ADMIN}/api/task/apply/{task}"))
        .set("Authorization", &format!("Basic {credentials}"))
        .send_json(json!({ "args": args }))
        .unwrap_or_else(|e| panic!("POST apply {task}: {e}"));
    assert_eq!(response.status(), 201, "apply {task}");
    let answer: Value = response.into_json().expect("JSON answer");
    answer["task_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no task_id in {answer}"))
        .to_owned()
}

/// Types `text` into the input `css` in place of what it holds.
fn fill(browser: &Browser, css: &str, text: &str) {
    let input = browser.find(css);
    input.clear();
    input.send_keys(text);
}

#[test]
fn staff_user_walks_the_admin() {
    let clock = Instant::now();
    let db = TestDb::new(Database::Sqlite).expect("sqlite is always there");
    let Some(browser) = Browser::start() else {
        return;
    };
    let (_dev, base) = db.dev_server();
    let admin = format!("{base}{ADMIN}");

    // 1. Not logged in: the dashboard sends the browser to the login form.
    browser.goto(&format!("{admin}/"));
    assert!(
        browser
            .current_url()
            .starts_with(&format!("{admin}/login?next=")),
        "not sent to the login page: {}",
        browser.current_url()
    );
    assert!(browser.find_all("#login-error").is_empty());
    fill(&browser, "#username", "admin");
    fill(&browser, "#password", "not the password");
    browser.find("#login").click();
    assert_eq!(
        browser.wait_for("#login-error", WAIT).text(),
        "Wrong user name or password."
    );
    assert!(browser.find_all("#workers-online").is_empty(), "let in");
    fill(&browser, "#username", "admin");
    fill(&browser, "#password", "admin");
    browser.find("#login").click();
    browser.wait_for("#workers-online", WAIT);
    assert_eq!(
        browser.current_url(),
        format!("{admin}/"),
        "back where it was"
    );
    assert_eq!(browser.find("#user").text(), "admin");
    // The dev server's worker writes a heartbeat every 2 s.
    let online = reload_until(
        &browser,
        &format!("{admin}/"),
        Duration::from_secs(10),
        "a worker online",
        |b| {
            let n: u32 = b.find("#workers-online").text().parse().expect("a count");
            (n >= 1).then_some(n)
        },
    );
    assert_eq!(online, 1, "dev mode runs one worker");

    // 2. A periodic task through the form, refused twice with the field's error first.
    browser.goto(&format!("{admin}/periodic-tasks/new"));
    fill(&browser, "#name", PERIODIC);
    fill(&browser, "#task", "example_site.demo.tasks.add");
    fill(&browser, "#args", "[2, 3]");
    // The crontab fields show only once "Crontab" is picked (CSS :has); hidden inputs would
    // not take keys.
    browser.find("#kind-crontab").click();
    fill(&browser, "#day_of_week", "7");
    browser.find("#save").click();
    let error = browser.wait_for("#error-day_of_week", WAIT).text();
    assert!(
        error.contains("out of range 0-6"),
        "day_of_week error: {error}"
    );
    assert!(browser.find_all("#error-every").is_empty());
    // The refused form comes back as it was typed.
    assert_eq!(
        browser.find("#name").property("value").as_deref(),
        Some(PERIODIC)
    );
    assert_eq!(
        browser.find("#args").property("value").as_deref(),
        Some("[2, 3]")
    );
    // A registered task typed by hand comes back picked in the select of the site's tasks.
    assert_eq!(
        browser.find("#task-choice").property("value").as_deref(),
        Some("example_site.demo.tasks.add")
    );
    assert_eq!(browser.find("#task").property("value").as_deref(), Some(""));

    browser.find("#kind-interval").click();
    fill(&browser, "#every", "0");
    browser.find("#period").select_option("seconds");
    browser.find("#save").click();
    let error = browser.wait_for("#error-every", WAIT).text();
    assert!(error.contains("at least 1"), "every error: {error}");
    assert!(browser.find_all("#error-day_of_week").is_empty());

    browser.goto(&format!("{admin}/periodic-tasks"));
    let row = format!("#periodic-tasks tr[data-name='{PERIODIC}']");
    assert!(
        browser.find_all(&row).is_empty(),
        "a refused form created the periodic task"
    );
    // The one from the site's settings is listed: the list is not just empty.
    let from_settings = browser.find("#periodic-tasks tr[data-name='add every 30 seconds']");
    assert!(from_settings.text().contains("from settings"));

    browser.goto(&format!("{admin}/periodic-tasks/new"));
    fill(&browser, "#name", PERIODIC);
    // The task select offers the tasks the site registers (free text stays for others).
    let options: Vec<String> = browser
        .find_all("#task-choice option")
        .iter()
        .map(|option| option.property("value").unwrap_or_default())
        .collect();
    assert!(
        options.iter().any(|o| o == "example_site.demo.tasks.add")
            && options.iter().any(|o| o == "tasks.add")
            && options[0].is_empty(),
        "{options:?}"
    );
    browser
        .find("#task-choice")
        .select_option("example_site.demo.tasks.add");
    fill(&browser, "#every", "1");
    browser.find("#period").select_option("seconds");
    fill(&browser, "#args", "[2, 3]");
    browser.find("#save").click();
    browser.wait_for("#periodic-tasks", WAIT);
    assert!(browser
        .current_url()
        .starts_with(&format!("{admin}/periodic-tasks?")));
    assert_eq!(
        browser.find("#notice").text(),
        format!("Created periodic task “{PERIODIC}”.")
    );
    let cells: Vec<String> = browser
        .find(&row)
        .find_all("td")
        .iter()
        .map(|cell| cell.text())
        .collect();
    assert_eq!(cells[0], PERIODIC);
    assert_eq!(cells[1], "example_site.demo.tasks.add");
    assert_eq!(cells[2], "every second");
    assert_eq!(cells[3], "yes", "enabled");

    // 3. Beat fires it; the results filtered by periodic task show it succeeding.
    let by_periodic = format!("{admin}/results?periodic_task=browser+add");
    reload_until(
        &browser,
        &by_periodic,
        Duration::from_secs(10),
        "a SUCCESS row of the periodic task",
        |b| {
            result_statuses(b)
                .contains(&"SUCCESS".to_owned())
                .then_some(())
        },
    );
    assert_eq!(
        browser
            .find("#filter-periodic-task")
            .property("value")
            .as_deref(),
        Some(PERIODIC)
    );
    for row in browser.find_all("#results tbody tr") {
        let text = row.text();
        assert!(
            text.contains("example_site.demo.tasks.add") && text.contains(PERIODIC),
            "a row of another task: {text}"
        );
    }
    browser
        .find("#results tr[data-status=SUCCESS] td a")
        .click();
    browser.wait_for("#result-facts", WAIT);
    assert_eq!(browser.find("#status").text(), "SUCCESS");
    assert_eq!(
        browser.find("#task-name").text(),
        "example_site.demo.tasks.add"
    );
    assert_eq!(browser.find("#result").text(), "5");
    assert_eq!(
        browser
            .find("#args")
            .text()
            .split_whitespace()
            .collect::<String>(),
        "[2,3]"
    );
    assert!(browser.find_all("#traceback").is_empty());

    // 4. A failure, and a hostile argument, sent through the API.
    let failed = apply(&base, "example_site.demo.tasks.explode", json!([BOOM]));
    let hostile = apply(&base, "example_site.demo.tasks.explode", json!([SCRIPT]));
    let all_results = format!("{admin}/results");
    reload_until(
        &browser,
        &all_results,
        Duration::from_secs(10),
        "both failures",
        |b| {
            let source = b.page_source();
            (source.contains(&failed) && source.contains(&hostile)).then_some(())
        },
    );
    let statuses = result_statuses(&browser);
    assert!(
        statuses.contains(&"SUCCESS".to_owned()) && statuses.contains(&"FAILURE".to_owned()),
        "unfiltered list: {statuses:?}"
    );
    browser.find("#filter-status").select_option("FAILURE");
    browser.find("#apply-filters").click();
    wait_for_url(&browser, "status=FAILURE");
    let statuses = result_statuses(&browser);
    assert_eq!(statuses, ["FAILURE", "FAILURE"], "only the two failures");
    browser
        .find(&format!("#results a[href='{ADMIN}/results/{failed}']"))
        .click();
    browser.wait_for("#traceback", WAIT);
    assert_eq!(browser.find("#task-id").text(), failed);
    assert_eq!(browser.find("#status").text(), "FAILURE");
    assert_eq!(
        browser.find("#task-name").text(),
        "example_site.demo.tasks.explode"
    );
    // A panic is stored with its message, and "task panicked: <message>" as traceback.
    let traceback = browser.find("#traceback").text();
    assert!(
        traceback.contains(&format!("task panicked: {BOOM}")),
        "traceback: {traceback}"
    );
    let result = browser.find("#result").text();
    assert!(result.contains(BOOM), "result: {result}");

    // The hostile argument is text on the page, never markup.
    browser.goto(&format!("{admin}/results/{hostile}"));
    assert_eq!(browser.find("#status").text(), "FAILURE");
    let args = browser.find("#args").text();
    assert!(args.contains(SCRIPT), "#args shows {args}");
    assert!(browser.find("#traceback").text().contains(SCRIPT));
    assert!(
        browser.find_all("main script").is_empty(),
        "a script element in the page"
    );
    let source = browser.page_source();
    assert!(!source.contains("<script>alert"), "raw script:\n{source}");
    assert!(source.contains("&lt;script&gt;alert"), "{source}");
    browser.goto(&format!("{all_results}?status=FAILURE"));
    assert!(browser.find_all("main script").is_empty());
    assert!(!browser.page_source().contains("<script>alert"));

    // 5. Disable it from the list; beat stops firing it.
    browser.goto(&format!("{admin}/periodic-tasks"));
    browser.find(&format!("{row} button[name=disable]")).click();
    assert_eq!(
        browser.wait_for("#notice", WAIT).text(),
        format!("Disabled periodic task “{PERIODIC}”.")
    );
    let disabled = browser.find(&row);
    assert_eq!(disabled.find_all("td")[3].text(), "no");
    assert!(disabled.find_all("button[name=disable]").is_empty());
    assert_eq!(disabled.find_all("button[name=enable]").len(), 1);
    // A firing sent just before the click may still be running: let it finish.
    std::thread::sleep(Duration::from_millis(1000));
    browser.goto(&by_periodic);
    let before = result_statuses(&browser).len();
    assert!(before >= 1);
    std::thread::sleep(Duration::from_millis(2500));
    browser.goto(&by_periodic);
    let after = result_statuses(&browser).len();
    assert_eq!(after, before, "the disabled periodic task still fired");

    // 6. Log out: pages ask for the login again.
    browser.find("#logout").click();
    browser.wait_for("#login", WAIT);
    assert!(
        browser.current_url().starts_with(&format!("{admin}/login")),
        "{}",
        browser.current_url()
    );
    browser.goto(&all_results);
    assert!(
        browser
            .current_url()
            .starts_with(&format!("{admin}/login?next=")),
        "still logged in: {}",
        browser.current_url()
    );
    assert!(browser.find_all("#results").is_empty());
    eprintln!("admin browser test took {:?}", clock.elapsed());
}
