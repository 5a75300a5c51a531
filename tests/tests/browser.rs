//! The example site in a real headless Chromium: what a user clicks, the browser submits.

use std::time::{Duration, Instant};

use celery_web_tests::browser::Browser;
use celery_web_tests::{Database, TestDb};
use serde_json::Value;

/// The home page's "Add two numbers" form, filled and submitted in the browser, leads to the
/// task's page, which says PENDING while no worker runs; a worker started then runs `add(2, 3)`
/// and the page shows SUCCESS and 5 by itself, without being reloaded. The recent tasks page
/// lists the task and links back to it.
#[test]
fn add_form_to_task_page() {
    let clock = Instant::now();
    let db = TestDb::new(Database::Sqlite).expect("sqlite is always there");
    let Some(browser) = Browser::start() else {
        return;
    };
    db.run_site(&["migrate"]);
    // The web server alone: the task waits in its queue until the test starts a worker.
    let (_web, base) = db.runserver();

    browser.goto(&format!("{base}/"));
    assert_eq!(browser.title(), "Example site");
    let form = browser.find("form[action='/add']");
    let x = form.find("input[name=x]");
    let y = form.find("input[name=y]");
    assert_eq!(x.attribute("value").as_deref(), Some("2"), "default x");
    // Typed over what the page prefilled: a field left unchanged would add to "22" or "33".
    x.clear();
    x.send_keys("2");
    y.clear();
    y.send_keys("3");
    assert_eq!(y.property("value").as_deref(), Some("3"));
    form.find("button").click();

    // 303 to the task's page (the click returns before the next page loads: wait for it).
    browser.wait_for("#state", Duration::from_secs(10));
    let url = browser.current_url();
    let id = url
        .strip_prefix(&format!("{base}/tasks/"))
        .unwrap_or_else(|| panic!("the form led to {url}, not a task page"))
        .to_owned();
    assert_eq!(browser.title(), format!("Task {id}"));
    assert_eq!(browser.find("#state").text(), "PENDING");
    assert_eq!(browser.find("#result").text(), "—");
    assert!(browser
        .find("#waiting")
        .text()
        .contains("Waiting for a worker"));
    // Gone if the page reloads: proves the result arrives in place.
    browser.execute("window.loadedOnce = true;");

    let _worker = db.spawn_worker("browser", &["-c", "1"]);
    browser.wait_for_text("#state", "SUCCESS", Duration::from_secs(20));
    assert_eq!(browser.find("#result").text(), "5");
    assert_eq!(
        browser.find("#task-name").text(),
        "example_site.demo.tasks.add"
    );
    assert!(browser.find("#worker").text().starts_with("browser@"));
    assert_eq!(
        browser.execute("return window.loadedOnce === true;"),
        Value::Bool(true),
        "the task page was reloaded instead of updated"
    );
    assert_eq!(browser.current_url(), url);
    let waiting = browser.find("#waiting");
    assert!(
        waiting.text().is_empty(),
        "the waiting note is hidden once the task is done"
    );

    browser.goto(&format!("{base}/api/tasks/{id}"));
    let json: Value = serde_json::from_str(&browser.find("pre").text()).expect("JSON");
    assert_eq!(json["state"], "SUCCESS");
    assert_eq!(json["result"], 5);

    browser.goto(&format!("{base}/"));
    browser.find("#recent-tasks").click();
    browser.wait_for("#tasks", Duration::from_secs(10));
    assert_eq!(browser.current_url(), format!("{base}/tasks"));
    let row = browser.find(&format!(
        "#tasks tr[data-state=SUCCESS] a[href='/tasks/{id}']"
    ));
    row.click();
    browser.wait_for_text("#result", "5", Duration::from_secs(10));
    assert_eq!(browser.current_url(), url);
    browser.find("a[href='/']").click();
    browser.wait_for("form[action='/add']", Duration::from_secs(10));
    assert_eq!(browser.current_url(), format!("{base}/"));
    eprintln!("browser test took {:?}", clock.elapsed());
}
