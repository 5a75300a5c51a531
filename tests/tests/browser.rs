//! The example site in a real headless Chromium: what a user clicks, the browser submits.

use std::time::{Duration, Instant};

use celery_web_tests::browser::Browser;
use celery_web_tests::{Database, TestDb};
use serde_json::Value;

/// The home page's "Add two numbers" form, filled and submitted in the browser, enqueues
/// `add(2, 3)`; the dev server's worker runs it and the task page (which reloads itself until
/// the task is done) shows 5.
#[test]
fn add_form_to_task_page() {
    let clock = Instant::now();
    let db = TestDb::new(Database::Sqlite).expect("sqlite is always there");
    let Some(browser) = Browser::start() else {
        return;
    };
    let (_dev, base) = db.dev_server();

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

    // The form answers 202 with JSON, which Chromium shows as text.
    let answer = browser.wait_for("pre", Duration::from_secs(10)).text();
    assert_eq!(browser.current_url(), format!("{base}/add"));
    let answer: Value = serde_json::from_str(&answer)
        .unwrap_or_else(|e| panic!("the form's answer is not JSON ({e}): {answer}"));
    let id = answer["task_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no task_id in {answer}"));

    browser.goto(&format!("{base}/tasks/{id}"));
    assert_eq!(browser.title(), format!("Task {id}"));
    browser.wait_for_text("#state", "SUCCESS", Duration::from_secs(15));
    assert_eq!(browser.find("#result").text(), "5");
    assert!(
        browser
            .page_source()
            .contains("example_site.demo.tasks.add"),
        "the task page names the task"
    );

    browser.goto(&format!("{base}/api/tasks/{id}"));
    let json: Value = serde_json::from_str(&browser.find("pre").text()).expect("JSON");
    assert_eq!(json["state"], "SUCCESS");
    assert_eq!(json["result"], 5);

    browser.goto(&format!("{base}/tasks/{id}"));
    browser.find("a[href='/']").click();
    assert_eq!(browser.current_url(), format!("{base}/"));
    eprintln!("browser test took {:?}", clock.elapsed());
}
