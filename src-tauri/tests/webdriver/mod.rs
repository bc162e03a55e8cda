//! A small W3C WebDriver client for the end-to-end test: plain JSON over HTTP (reqwest on a
//! current-thread tokio runtime, blocking calls), the commands the test needs and a polling
//! `wait_until` whose failure names what was awaited and what was last seen. Every failure of
//! the remote end panics with the command, the W3C error code and its message.

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// The key W3C WebDriver uses for an element reference in JSON (WebDriver §12.1).
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// The longest one command may take: starting a session launches a debug build of the app, and
/// an async script waits for the capture check; the test's own waits are shorter than this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// How long `DELETE /session` may take when the driver is dropped: the app closes its window.
const QUIT_TIMEOUT: Duration = Duration::from_secs(20);
/// Pause between two polls of `wait_until`: fast enough to see a progress bar move, slow enough
/// not to busy the two cores the app trains on.
const POLL_INTERVAL: Duration = Duration::from_millis(150);

/// An element of the page, by its WebDriver reference.
#[derive(Clone, Debug)]
pub struct Element(String);

/// A WebDriver session on a remote end (tauri-driver), closed when dropped.
pub struct Driver {
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
    base: String,
    session: String,
}

impl Driver {
    /// Waits until the remote end on `127.0.0.1:port` is ready (`GET /status`), then starts a
    /// session with `capabilities` (the W3C `capabilities` object).
    pub fn start(port: u16, capabilities: Value, ready_timeout: Duration) -> Driver {
        // reqwest is built as the workspace builds it (`rustls-no-provider`): a client needs a
        // rustls provider even for plain HTTP (ring, as the workspace's other clients; its lack of
        // post-quantum suites is the deprecation, and plain HTTP uses none). Already installed by
        // another test is fine.
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // 127.0.0.1, not localhost: tauri-driver forwards to the native driver at the host this
        // request names, and the native driver listens on IPv4 loopback only.
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder().no_proxy().timeout(REQUEST_TIMEOUT).build().unwrap();
        let mut driver = Driver { runtime, http, base, session: String::new() };
        let started = Instant::now();
        loop {
            match driver.request(reqwest::Method::GET, "/status", None) {
                Ok(status) if status["ready"] == true => break,
                seen => assert!(
                    started.elapsed() < ready_timeout,
                    "the WebDriver server on port {port} was not ready after {ready_timeout:?}: {seen:?}"
                ),
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        let value = driver.post_root("/session", json!({ "capabilities": capabilities }));
        driver.session = value["sessionId"].as_str().unwrap_or_else(|| panic!("no sessionId in {value}")).to_string();
        driver
    }

    /// One command; `Err` carries the W3C error (`error: message`) or the transport's failure.
    fn request(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        self.runtime.block_on(async {
            let mut request = self.http.request(method, &url);
            if let Some(body) = body {
                request = request.json(&body);
            }
            let response = request.send().await.map_err(|e| format!("no answer: {e}"))?;
            let status = response.status();
            let answer: Value = response.json().await.map_err(|e| format!("HTTP {status}, not JSON: {e}"))?;
            let value = answer.get("value").cloned().unwrap_or(Value::Null);
            if status.is_success() {
                Ok(value)
            } else {
                Err(format!("HTTP {status}: {}: {}", value["error"], value["message"]))
            }
        })
    }

    fn post_root(&self, path: &str, body: Value) -> Value {
        self.request(reqwest::Method::POST, path, Some(body)).unwrap_or_else(|e| panic!("WebDriver POST {path}: {e}"))
    }

    fn get(&self, path: &str) -> Value {
        let path = format!("/session/{}{path}", self.session);
        self.request(reqwest::Method::GET, &path, None).unwrap_or_else(|e| panic!("WebDriver GET {path}: {e}"))
    }

    fn post(&self, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{path}", self.session);
        self.request(reqwest::Method::POST, &path, Some(body)).unwrap_or_else(|e| panic!("WebDriver POST {path}: {e}"))
    }

    /// Sets the session's script timeout (how long an async script may run).
    pub fn set_script_timeout(&self, timeout: Duration) {
        self.post("/timeouts", json!({ "script": timeout.as_millis() as u64 }));
    }

    /// The document's title.
    pub fn title(&self) -> String {
        self.get("/title").as_str().unwrap_or_default().to_string()
    }

    /// The first element matching the CSS selector; panics when there is none.
    pub fn find(&self, css: &str) -> Element {
        element(&self.post("/element", json!({ "using": "css selector", "value": css })))
    }

    /// Every element matching the CSS selector.
    pub fn find_all(&self, css: &str) -> Vec<Element> {
        let found = self.post("/elements", json!({ "using": "css selector", "value": css }));
        found.as_array().map(|all| all.iter().map(element).collect()).unwrap_or_default()
    }

    pub fn click(&self, element: &Element) {
        self.post(&format!("/element/{}/click", element.0), json!({}));
    }

    /// Clicks the first element matching `css`, found afresh at each try until one click lands
    /// within `timeout`: a pane that renders again between the find and the click (a late answer
    /// of the app) makes the element found stale, not the click wrong.
    pub fn click_css(&self, css: &str, timeout: Duration) {
        self.wait_until(&format!("a click on {css}"), timeout, |d| {
            let session = format!("/session/{}", d.session);
            let found = d.request(
                reqwest::Method::POST,
                &format!("{session}/element"),
                Some(json!({ "using": "css selector", "value": css })),
            )?;
            let path = format!("{session}/element/{}/click", element(&found).0);
            d.request(reqwest::Method::POST, &path, Some(json!({}))).map(drop)
        });
    }

    /// The element's rendered text.
    pub fn text(&self, element: &Element) -> String {
        self.get(&format!("/element/{}/text", element.0)).as_str().unwrap_or_default().to_string()
    }

    /// A DOM property of the element (`checked`, `value`, …).
    pub fn property(&self, element: &Element, name: &str) -> Value {
        self.get(&format!("/element/{}/property/{name}", element.0))
    }

    pub fn clear(&self, element: &Element) {
        self.post(&format!("/element/{}/clear", element.0), json!({}));
    }

    /// Types `text` into the element (WebDriver's key codes, e.g. `\u{E014}` for →, included).
    pub fn send_keys(&self, element: &Element, text: &str) {
        self.post(&format!("/element/{}/value", element.0), json!({ "text": text }));
    }

    /// Runs `script` as a function body with `args`; what it returns.
    pub fn execute(&self, script: &str, args: &[Value]) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": args }))
    }

    /// Runs `script` as a function body whose last argument is the callback that ends it; the
    /// value passed to the callback.
    pub fn execute_async(&self, script: &str, args: &[Value]) -> Value {
        self.post("/execute/async", json!({ "script": script, "args": args }))
    }

    /// A PNG of the whole window.
    pub fn screenshot(&self) -> Vec<u8> {
        decode_png_value(&self.get("/screenshot"))
    }

    /// A PNG of the element's box, scrolled into view.
    pub fn element_screenshot(&self, element: &Element) -> Vec<u8> {
        decode_png_value(&self.get(&format!("/element/{}/screenshot", element.0)))
    }

    /// Polls `probe` until it returns `Ok`; `Err` is what it saw instead. Panics after `timeout`
    /// naming `what` was awaited and the last thing seen.
    pub fn wait_until<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut probe: impl FnMut(&Driver) -> Result<T, String>,
    ) -> T {
        let started = Instant::now();
        loop {
            match probe(self) {
                Ok(value) => return value,
                Err(seen) => assert!(started.elapsed() < timeout, "waited {timeout:?} for {what}; last seen: {seen}"),
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for Driver {
    /// Ends the session, which closes the app; best effort (the test's process guard kills what
    /// is left).
    fn drop(&mut self) {
        if self.session.is_empty() {
            return;
        }
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = self.runtime.block_on(async { self.http.delete(&url).timeout(QUIT_TIMEOUT).send().await });
    }
}

fn element(value: &Value) -> Element {
    Element(value[ELEMENT_KEY].as_str().unwrap_or_else(|| panic!("not an element reference: {value}")).to_string())
}

fn decode_png_value(value: &Value) -> Vec<u8> {
    let text = value.as_str().unwrap_or_else(|| panic!("a screenshot is a base64 string, not {value}"));
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap_or_else(|e| panic!("a screenshot that is not base64: {e}"))
}
