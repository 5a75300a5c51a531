//! A real headless Chromium for browser tests, driven over W3C WebDriver by `chromedriver`.
//!
//! The client is a few JSON calls over `ureq` (already a dependency of the tests) rather than a
//! WebDriver crate, which would bring its own HTTP and TLS stack into a workspace built on two
//! cores.
//!
//! `chromedriver` is found on `PATH`, or at `CELERY_WEB_CHROMEDRIVER`; the browser is
//! `/usr/bin/chromium`, or `CELERY_WEB_CHROMIUM`. When `chromedriver` is missing,
//! [`Browser::start`] skips the test ([`skip`]), which fails it when services are required.
//!
//! Every command that fails panics with WebDriver's error and the paths of a screenshot and the
//! page source saved at that moment. They are kept in the browser's directory under the system
//! temp dir (`celery-web-browser-<uuid>`, beside the tests' scratch directories), which is
//! removed when the browser is dropped, unless the test is panicking.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::{free_port, skip, Process};

/// The key under which W3C WebDriver returns an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Arguments Chromium runs with: headless, no sandbox (CI runs as root), one window size so
/// layouts do not depend on the machine.
const CHROMIUM_ARGS: [&str; 5] = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
];

/// A WebDriver command that failed: what was asked, and WebDriver's answer.
#[derive(Debug)]
struct CommandError {
    /// `METHOD /path`.
    command: String,
    /// WebDriver's error code (`no such element`), or the HTTP failure.
    error: String,
    /// WebDriver's message.
    message: String,
}

impl CommandError {
    fn is(&self, error: &str) -> bool {
        self.error == error
    }
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.command, self.error, self.message)
    }
}

/// A headless Chromium session. Dropping it deletes the session and stops `chromedriver`.
#[derive(Debug)]
pub struct Browser {
    agent: ureq::Agent,
    /// `http://127.0.0.1:<port>/session/<id>`.
    session: String,
    /// Holds `chromedriver.log` and the screenshots and page sources of failures.
    dir: PathBuf,
    failures: std::cell::Cell<u32>,
    driver: Process,
}

impl Browser {
    /// Starts `chromedriver` on a free port and opens a headless Chromium session; `None`
    /// (after [`skip`]) when `chromedriver` is not installed.
    pub fn start() -> Option<Browser> {
        let chromedriver =
            std::env::var("CELERY_WEB_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".to_owned());
        let chromium =
            std::env::var("CELERY_WEB_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
        let installed = Command::new(&chromedriver)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !installed {
            skip(&format!(
                "{chromedriver} is not installed (apt-get install chromium chromium-driver)"
            ));
            return None;
        }
        assert!(
            Path::new(&chromium).exists(),
            "Chromium is not at {chromium} (set CELERY_WEB_CHROMIUM)"
        );

        let dir = std::env::temp_dir().join(format!("celery-web-browser-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("browser dir");
        let port = free_port();
        let mut command = Command::new(&chromedriver);
        command.arg(format!("--port={port}"));
        let driver = Process::start(command, dir.join("chromedriver.log"), "chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build();

        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = call(&agent, "GET", &format!("{base}/status"), None);
            if status.is_ok_and(|value| value["ready"] == true) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver is not ready after 20 s; its log:\n{}",
                driver.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }

        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "timeouts": { "implicit": 0, "pageLoad": 20_000, "script": 10_000 },
            "goog:chromeOptions": { "binary": chromium, "args": CHROMIUM_ARGS },
        }}});
        let created = call(
            &agent,
            "POST",
            &format!("{base}/session"),
            Some(capabilities),
        )
        .unwrap_or_else(|error| {
            panic!(
                "no Chromium session: {error}\nchromedriver log:\n{}",
                driver.log()
            )
        });
        let id = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no sessionId in {created}"));
        Some(Browser {
            agent,
            session: format!("{base}/session/{id}"),
            dir,
            failures: std::cell::Cell::new(0),
            driver,
        })
    }

    /// Opens `url` and waits for it to load.
    pub fn goto(&self, url: &str) {
        self.run("POST", "/url", Some(json!({ "url": url })));
    }

    /// The URL of the current page.
    pub fn current_url(&self) -> String {
        self.string("GET", "/url")
    }

    /// The current page's title.
    pub fn title(&self) -> String {
        self.string("GET", "/title")
    }

    /// The current page's HTML as the browser has it now (after scripts ran).
    pub fn page_source(&self) -> String {
        self.string("GET", "/source")
    }

    /// The first element matching the CSS selector; panics when there is none.
    pub fn find(&self, css: &str) -> Element<'_> {
        match self.try_find("", css) {
            Ok(element) => element,
            Err(error) => self.fail(&format!("find `{css}`"), &error),
        }
    }

    /// Every element matching the CSS selector, in document order (empty when none).
    pub fn find_all(&self, css: &str) -> Vec<Element<'_>> {
        self.elements("", css)
    }

    /// Polls every 100 ms until an element matches the CSS selector and returns it; panics
    /// after `timeout`.
    pub fn wait_for(&self, css: &str, timeout: Duration) -> Element<'_> {
        self.wait_until(&format!("`{css}`"), timeout, |browser| {
            browser.try_find("", css)
        })
    }

    /// Polls every 100 ms until an element matching the CSS selector contains `text` and
    /// returns it; panics after `timeout`. The page may reload meanwhile (a refreshing status
    /// page, a form submission).
    pub fn wait_for_text(&self, css: &str, text: &str, timeout: Duration) -> Element<'_> {
        self.wait_until(&format!("`{text}` in `{css}`"), timeout, |browser| {
            let element = browser.try_find("", css)?;
            let found = element.try_text()?;
            if found.contains(text) {
                Ok(element)
            } else {
                Err(CommandError {
                    command: format!("text of `{css}`"),
                    error: "unexpected text".to_owned(),
                    message: found,
                })
            }
        })
    }

    /// Runs `script` (a function body: `return document.title;`) in the page and returns
    /// what it returns. For what no element shows, such as whether the page was reloaded:
    /// a value set on `window` lives exactly as long as the page.
    pub fn execute(&self, script: &str) -> Value {
        self.run(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// Saves a screenshot of the viewport as a PNG file.
    pub fn screenshot_png(&self, path: &Path) {
        if let Err(error) = self.try_screenshot(path) {
            panic!("screenshot to {}: {error}", path.display());
        }
    }

    /// Polls `check` until it succeeds; on timeout, fails with its last error.
    fn wait_until<'a, T>(
        &'a self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&'a Browser) -> Result<T, CommandError>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            match check(self) {
                Ok(value) => return value,
                // Anything else than "not there yet" is a failure at once.
                Err(error)
                    if Instant::now() < deadline
                        && (error.is("no such element")
                            || error.is("stale element reference")
                            || error.is("unexpected text")) => {}
                Err(error) => self.fail(&format!("waiting {timeout:?} for {what}"), &error),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn try_find(&self, scope: &str, css: &str) -> Result<Element<'_>, CommandError> {
        let value = self.call(
            "POST",
            &format!("{scope}/element"),
            Some(json!({ "using": "css selector", "value": css })),
        )?;
        Ok(self.element(&value))
    }

    fn elements(&self, scope: &str, css: &str) -> Vec<Element<'_>> {
        let value = self.run(
            "POST",
            &format!("{scope}/elements"),
            Some(json!({ "using": "css selector", "value": css })),
        );
        value
            .as_array()
            .map(|list| list.iter().map(|item| self.element(item)).collect())
            .unwrap_or_default()
    }

    fn element(&self, reference: &Value) -> Element<'_> {
        let id = reference[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("not an element reference: {reference}"));
        Element {
            browser: self,
            id: id.to_owned(),
        }
    }

    fn try_screenshot(&self, path: &Path) -> Result<(), CommandError> {
        let encoded = self.call("GET", "/screenshot", None)?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap_or_default())
            .map_err(|error| CommandError {
                command: "GET /screenshot".to_owned(),
                error: "bad base64".to_owned(),
                message: error.to_string(),
            })?;
        std::fs::write(path, png).map_err(|error| CommandError {
            command: format!("write {}", path.display()),
            error: "io".to_owned(),
            message: error.to_string(),
        })
    }

    /// Saves a screenshot and the page source, and panics with their paths.
    fn fail(&self, what: &str, error: &CommandError) -> ! {
        let n = self.failures.get() + 1;
        self.failures.set(n);
        let screenshot = self.dir.join(format!("failure-{n}.png"));
        let source = self.dir.join(format!("failure-{n}.html"));
        let screenshot_note = match self.try_screenshot(&screenshot) {
            Ok(()) => screenshot.display().to_string(),
            Err(error) => format!("none ({error})"),
        };
        let source_note = match self
            .call("GET", "/source", None)
            .map(|html| std::fs::write(&source, html.as_str().unwrap_or_default()))
        {
            Ok(Ok(())) => source.display().to_string(),
            Ok(Err(error)) => format!("none ({error})"),
            Err(error) => format!("none ({error})"),
        };
        let url = self
            .call("GET", "/url", None)
            .map_or_else(|error| error.to_string(), |url| url.to_string());
        panic!(
            "browser: {what} failed: {error}\n  page: {url}\n  screenshot: {screenshot_note}\n  \
             page source: {source_note}"
        );
    }

    /// A command on this session; panics (saving a screenshot) when it fails.
    fn run(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, path, body)
            .unwrap_or_else(|error| self.fail(&format!("{method} {path}"), &error))
    }

    fn string(&self, method: &str, path: &str) -> String {
        match self.run(method, path, None) {
            Value::String(text) => text,
            other => panic!("browser: {method} {path} answered {other}, not a string"),
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, CommandError> {
        call(
            &self.agent,
            method,
            &format!("{}{path}", self.session),
            body,
        )
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = call(&self.agent, "DELETE", &self.session, None);
        let _ = self.driver.child.kill();
        let _ = self.driver.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "browser files (chromedriver.log, failure screenshots): {}",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// An element of the page it was found on. It goes stale when that page is left or reloaded.
#[derive(Debug)]
pub struct Element<'a> {
    browser: &'a Browser,
    id: String,
}

impl<'a> Element<'a> {
    /// Clicks it (scrolling it into view first). chromedriver waits for a page load only once
    /// it has started, and a form's submission can start after the click returned: the next
    /// command may still see the old page. After a click that leaves the page, wait
    /// ([`Browser::wait_for`]) for something only the next page has.
    pub fn click(&self) {
        self.run("POST", "/click", Some(json!({})));
    }

    /// Types `text` into it, after what it already holds.
    pub fn send_keys(&self, text: &str) {
        self.run("POST", "/value", Some(json!({ "text": text })));
    }

    /// Empties an input or textarea.
    pub fn clear(&self) {
        self.run("POST", "/clear", Some(json!({})));
    }

    /// Its rendered text (what a user sees, whitespace collapsed).
    pub fn text(&self) -> String {
        self.try_text()
            .unwrap_or_else(|error| self.browser.fail("text", &error))
    }

    /// An HTML attribute as written in the page (`None` when absent). For the current value
    /// of an input, use [`Element::property`]`("value")`.
    pub fn attribute(&self, name: &str) -> Option<String> {
        self.optional_string(&format!("/attribute/{name}"))
    }

    /// A DOM property (`value`, `checked`, ...) as a string (`None` when null or undefined).
    pub fn property(&self, name: &str) -> Option<String> {
        self.optional_string(&format!("/property/{name}"))
    }

    /// The first descendant matching the CSS selector; panics when there is none.
    pub fn find(&self, css: &str) -> Element<'a> {
        match self.browser.try_find(&self.scope(), css) {
            Ok(element) => element,
            Err(error) => self
                .browser
                .fail(&format!("find `{css}` in element"), &error),
        }
    }

    /// Every descendant matching the CSS selector.
    pub fn find_all(&self, css: &str) -> Vec<Element<'a>> {
        self.browser.elements(&self.scope(), css)
    }

    /// In a `<select>`, selects the option whose visible text or `value` is `choice`; panics
    /// (listing the options) when there is none.
    pub fn select_option(&self, choice: &str) {
        let options = self.find_all("option");
        let mut seen = Vec::new();
        for option in &options {
            let text = option.text();
            let value = option.property("value").unwrap_or_default();
            if text.trim() == choice || value == choice {
                option.click();
                return;
            }
            seen.push(format!("{text:?} (value {value:?})"));
        }
        let error = CommandError {
            command: format!("select_option({choice:?})"),
            error: "no such option".to_owned(),
            message: format!("options: [{}]", seen.join(", ")),
        };
        self.browser.fail("select_option", &error);
    }

    fn try_text(&self) -> Result<String, CommandError> {
        let value = self
            .browser
            .call("GET", &format!("{}/text", self.scope()), None)?;
        Ok(value.as_str().unwrap_or_default().to_owned())
    }

    fn optional_string(&self, path: &str) -> Option<String> {
        match self.run("GET", path, None) {
            Value::Null => None,
            Value::String(text) => Some(text),
            other => Some(other.to_string()),
        }
    }

    fn scope(&self) -> String {
        format!("/element/{}", self.id)
    }

    fn run(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.browser
            .run(method, &format!("{}{path}", self.scope()), body)
    }
}

/// One WebDriver request; returns the answer's `value`, or WebDriver's error.
fn call(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    body: Option<Value>,
) -> Result<Value, CommandError> {
    let command = format!("{method} {url}");
    let request = agent.request(method, url);
    let response = match body {
        Some(body) => request.send_json(body),
        None => request.call(),
    };
    let failed = |error: String, message: String| CommandError {
        command: command.clone(),
        error,
        message,
    };
    match response {
        Ok(response) => {
            let mut answer: Value = response
                .into_json()
                .map_err(|error| failed("bad answer".to_owned(), error.to_string()))?;
            Ok(answer["value"].take())
        }
        Err(ureq::Error::Status(code, response)) => {
            let answer: Value = response.into_json().unwrap_or(Value::Null);
            let value = &answer["value"];
            Err(failed(
                value["error"]
                    .as_str()
                    .map_or_else(|| format!("HTTP {code}"), str::to_owned),
                value["message"]
                    .as_str()
                    .map_or_else(|| answer.to_string(), str::to_owned),
            ))
        }
        Err(error) => Err(failed("no answer".to_owned(), error.to_string())),
    }
}
