//! A real browser for the web tests: Debian's `/usr/bin/chromium`, headless, with JavaScript
//! disabled, driven over WebDriver by `chromedriver` (fantoccini as the client). Each page the
//! test visits is checked the same way ([`Browser::check_page`]): every network request it made
//! stays on the service's origin, it contains no script, every field has a label, its controls
//! fit the window, and a full-page screenshot at the current width and at a desktop width is
//! saved under `target/web-screenshots/`.
//!
//! Missing binaries are a failure, not a skip: `scripts/test-deps.sh` installs them.
#![allow(dead_code)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The width of a desktop window, for the second screenshot of every page.
pub const DESKTOP_WIDTH: u32 = 1280;
const HEIGHT: u32 = 900;

/// Form controls a person fills in (everything but hidden fields and buttons).
const FIELDS: &str = "input:not([type=hidden]):not([type=submit]):not([type=button]):not([type=reset]):not([type=image]), textarea, select";
/// Whatever submits a form.
pub const BUTTONS: &str = "button:not([type]), button[type=submit], input[type=submit]";

/// A headless Chromium session with its own chromedriver and a fresh profile.
pub struct Browser {
    pub client: Client,
    /// The width the test runs at (the screenshots are taken at this and at [`DESKTOP_WIDTH`]).
    pub width: u32,
    /// `http://127.0.0.1:PORT`: the only origin any page may load from.
    pub origin: String,
    driver: Child,
    shots: PathBuf,
    shot_count: usize,
    _profile: tempfile::TempDir,
}

/// What the browser saw of one page.
#[derive(Debug)]
pub struct Page {
    pub url: String,
    /// HTTP status of the page's document (the last document response since the previous page).
    pub status: u16,
    /// Response headers of that document, names in lower case.
    pub headers: Vec<(String, String)>,
    pub source: String,
    /// The page's visible text.
    pub text: String,
}

impl Page {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn require(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: the real-browser test needs Debian's {package}; \
         run scripts/test-deps.sh (CI does) or `apt-get install chromium chromium-driver`"
    );
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a session at `width` px, for pages
    /// served from `origin`. Screenshots go to `target/web-screenshots/` (cleared first).
    pub async fn start(origin: &str, width: u32) -> Browser {
        require(CHROMIUM, "chromium");
        require(CHROMEDRIVER, "chromium-driver");
        let profile = tempfile::tempdir().unwrap();
        let port = crate::harness::free_port();
        let log = profile.path().join("chromedriver.log");
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .arg(format!("--log-path={}", log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let client = connect(port, &capabilities(profile.path())).await;
        let shots = screenshot_dir();
        let _ = std::fs::remove_dir_all(&shots);
        std::fs::create_dir_all(&shots).unwrap();
        let browser = Browser {
            client,
            width,
            origin: origin.trim_end_matches('/').to_string(),
            driver,
            shots,
            shot_count: 0,
            _profile: profile,
        };
        browser.resize(width).await;
        browser.assert_javascript_is_off().await;
        browser
    }

    /// Proof that pages cannot run scripts in this browser: a page whose script would change its
    /// title keeps its title. (WebDriver itself still reads the DOM through the DevTools
    /// protocol, which the content setting does not block.)
    async fn assert_javascript_is_off(&self) {
        let page = "data:text/html,<title>js-off</title><script>document.title='js-on'</script>";
        self.client.goto(page).await.unwrap();
        assert_eq!(
            self.client.title().await.unwrap(),
            "js-off",
            "JavaScript runs"
        );
        self.drain_network().await;
    }

    /// Opens `path` (relative to the origin) or a full URL.
    pub async fn open(&self, path_or_url: &str) {
        let url = if path_or_url.starts_with("http") {
            path_or_url.to_string()
        } else {
            format!("{}{path_or_url}", self.origin)
        };
        self.client.goto(&url).await.unwrap();
    }

    /// Clicks the first link to `href` on the page and waits for the next page.
    pub async fn click_link(&self, href: &str) {
        let sel = format!("a[href='{href}']");
        let link = self
            .client
            .find(Locator::Css(&sel))
            .await
            .unwrap_or_else(|e| panic!("no link to {href}: {e}"));
        link.click().await.unwrap();
    }

    /// Types `value` into the field named `name` (after clearing it), as a person would.
    pub async fn fill(&self, name: &str, value: &str) {
        let field = self
            .client
            .find(Locator::Css(&format!("[name='{name}']")))
            .await
            .unwrap_or_else(|e| panic!("no field named {name:?}: {e}"));
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
    }

    /// The current value of the field named `name`.
    pub async fn value(&self, name: &str) -> String {
        let field = self
            .client
            .find(Locator::Css(&format!("[name='{name}']")))
            .await
            .unwrap_or_else(|e| panic!("no field named {name:?}: {e}"));
        field.prop("value").await.unwrap().unwrap_or_default()
    }

    /// Clicks the only submit button of the form that holds the field `name` (or of the only
    /// form on the page when `name` is None) and waits for the next page.
    pub async fn submit(&self, name: Option<&str>) {
        let forms = match name {
            Some(n) => format!("//form[.//*[@name='{n}']]"),
            None => "//form".to_string(),
        };
        let forms = self.client.find_all(Locator::XPath(&forms)).await.unwrap();
        assert_eq!(forms.len(), 1, "one form holding {name:?}");
        let buttons = forms[0].find_all(Locator::Css(BUTTONS)).await.unwrap();
        assert_eq!(
            buttons.len(),
            1,
            "one submit button in the form of {name:?}"
        );
        buttons[0].click().await.unwrap();
    }

    /// Checks the page now shown (see the module doc), saves its screenshots as
    /// `NN-name-WIDTH.png`, and returns what the browser saw.
    pub async fn check_page(&mut self, name: &str) -> Page {
        let url = self.client.current_url().await.unwrap().to_string();
        // A click may return before the response of the page it submitted is logged: read
        // the log until the page's document response is in it (bounded: 10 s).
        let (mut requests, mut document) = self.drain_network().await;
        for _ in 0..100 {
            if document.is_some() && requests.iter().any(|r| same_page(r, &url)) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            let (more, doc) = self.drain_network().await;
            for r in more {
                if !requests.contains(&r) {
                    requests.push(r);
                }
            }
            document = doc.or(document);
        }
        let ctx = format!("page {name} ({url})");
        assert!(
            requests.iter().any(|r| same_page(r, &url)),
            "{ctx}: the network log does not show the page itself (no new page loaded? a \
             form the browser refused to submit?): {requests:?}"
        );
        for r in &requests {
            assert!(
                r.starts_with(&format!("{}/", self.origin)),
                "{ctx} loaded {r}, which is not on {}",
                self.origin
            );
        }
        let (status, headers) = document.unwrap_or_else(|| panic!("{ctx}: no document response"));
        let source = self.client.source().await.unwrap();
        assert!(
            !source.to_ascii_lowercase().contains("<script"),
            "{ctx} contains a script:\n{source}"
        );
        let scripts = self.client.find_all(Locator::Css("script")).await.unwrap();
        assert!(
            scripts.is_empty(),
            "{ctx} has {} script elements",
            scripts.len()
        );
        self.assert_console_clean(&ctx).await;
        self.assert_fields_labelled(&ctx).await;
        self.assert_fits(&ctx, self.width).await;
        self.shot_count += 1;
        self.screenshot(name, self.width).await;
        self.resize(DESKTOP_WIDTH).await;
        self.assert_fits(&ctx, DESKTOP_WIDTH).await;
        self.screenshot(name, DESKTOP_WIDTH).await;
        self.resize(self.width).await;
        let body = self.client.find(Locator::Css("body")).await.unwrap();
        let text = body.text().await.unwrap();
        Page {
            url,
            status,
            headers,
            source,
            text,
        }
    }

    /// Every field a person fills in has a label: `<label for=ID>` or an enclosing `<label>`.
    async fn assert_fields_labelled(&self, ctx: &str) {
        for field in self.client.find_all(Locator::Css(FIELDS)).await.unwrap() {
            let name = field.attr("name").await.unwrap().unwrap_or_default();
            let id = field.attr("id").await.unwrap().unwrap_or_default();
            let by_for = if id.is_empty() {
                0
            } else {
                let sel = format!("label[for='{id}']");
                self.client
                    .find_all(Locator::Css(&sel))
                    .await
                    .unwrap()
                    .len()
            };
            let wrapping = field
                .find_all(Locator::XPath("ancestor::label"))
                .await
                .unwrap()
                .len();
            assert!(
                by_for + wrapping > 0,
                "{ctx}: field {name:?} (id {id:?}) has no label"
            );
        }
    }

    /// Every visible control and heading lies within the window's width (nothing to scroll
    /// sideways for).
    async fn assert_fits(&self, ctx: &str, width: u32) {
        let html = self.client.find(Locator::Css("html")).await.unwrap();
        let (_, _, viewport, _) = html.rectangle().await.unwrap();
        assert!(
            viewport <= f64::from(width) + 0.5,
            "{ctx}: at {width} px the page is {viewport} px wide"
        );
        let sel = format!("{FIELDS}, {BUTTONS}, h1, h2, label, main, form");
        for el in self.client.find_all(Locator::Css(&sel)).await.unwrap() {
            if !el.is_displayed().await.unwrap() {
                continue;
            }
            let (x, _, w, _) = el.rectangle().await.unwrap();
            let tag = el.tag_name().await.unwrap();
            assert!(
                x >= -0.5 && x + w <= viewport + 0.5,
                "{ctx}: at {width} px a <{tag}> spans {x}..{} of {viewport} px",
                x + w
            );
        }
    }

    /// No console errors: a blocked resource (CSP) or a failed load shows up there. A 4xx page
    /// itself and a missing favicon are not errors of the page.
    async fn assert_console_clean(&self, ctx: &str) {
        for entry in self.log("browser").await {
            let level = entry["level"].as_str().unwrap_or("");
            let msg = entry["message"].as_str().unwrap_or("");
            let expected =
                msg.contains("Failed to load resource: the server responded with a status of 4");
            if level == "SEVERE" && !expected {
                panic!("{ctx}: console error: {msg}");
            }
            if msg.contains("Content Security Policy") || msg.contains("Refused to") {
                panic!("{ctx}: blocked by the page's own policy: {msg}");
            }
        }
    }

    /// Sets the viewport width through DevTools device emulation: a headless window cannot be
    /// made narrower than 500 px. Narrow widths emulate a phone (the viewport meta tag applies).
    async fn resize(&self, width: u32) {
        let params = json!({
            "width": width,
            "height": HEIGHT,
            "deviceScaleFactor": 1,
            "mobile": width < 600,
        });
        self.cdp("Emulation.setDeviceMetricsOverride", params).await;
    }

    /// A screenshot of the whole page (not only the window), through the DevTools protocol.
    async fn screenshot(&self, name: &str, width: u32) {
        let metrics = self.cdp("Page.getLayoutMetrics", json!({})).await;
        let size = &metrics["cssContentSize"];
        let (w, h) = (
            size["width"].as_f64().unwrap_or(f64::from(width)),
            size["height"].as_f64().unwrap_or(f64::from(HEIGHT)),
        );
        let params = json!({
            "format": "png",
            "captureBeyondViewport": true,
            "clip": {"x": 0, "y": 0, "width": w, "height": h.min(8000.0), "scale": 1},
        });
        let shot = self.cdp("Page.captureScreenshot", params).await;
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .unwrap();
        let file = self
            .shots
            .join(format!("{:02}-{name}-{width}.png", self.shot_count));
        std::fs::write(&file, png).unwrap();
    }

    /// Runs a DevTools command through chromedriver (`goog/cdp/execute`).
    pub async fn cdp(&self, cmd: &str, params: Value) -> Value {
        let body = json!({ "cmd": cmd, "params": params });
        self.client
            .issue_cmd(SessionPost::new("goog/cdp/execute", body))
            .await
            .unwrap_or_else(|e| panic!("{cmd}: {e}"))
    }

    /// Entries of one of chromedriver's logs (`performance`, `browser`) since the last call.
    async fn log(&self, kind: &str) -> Vec<Value> {
        let v = self
            .client
            .issue_cmd(SessionPost::new("se/log", json!({ "type": kind })))
            .await
            .unwrap_or_else(|e| panic!("reading the {kind} log: {e}"));
        v.as_array().cloned().unwrap_or_default()
    }

    /// The URLs requested since the last call, and the status and headers of the last document
    /// response among them.
    async fn drain_network(&self) -> (Vec<String>, Option<(u16, Vec<(String, String)>)>) {
        let mut urls = Vec::new();
        let mut seen = HashSet::new();
        let mut document = None;
        for entry in self.log("performance").await {
            let Some(msg) = entry["message"].as_str() else {
                continue;
            };
            let msg: Value = serde_json::from_str(msg).unwrap();
            let (method, params) = (&msg["message"]["method"], &msg["message"]["params"]);
            match method.as_str().unwrap_or("") {
                "Network.requestWillBeSent" => {
                    let url = params["request"]["url"].as_str().unwrap_or("").to_string();
                    if seen.insert(url.clone()) {
                        urls.push(url);
                    }
                }
                "Network.responseReceived" if params["type"] == "Document" => {
                    let r = &params["response"];
                    let status = r["status"].as_u64().unwrap_or(0) as u16;
                    let headers = r["headers"]
                        .as_object()
                        .map(|h| {
                            h.iter()
                                .map(|(k, v)| {
                                    (k.to_ascii_lowercase(), v.as_str().unwrap_or("").to_string())
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    document = Some((status, headers));
                }
                _ => {}
            }
        }
        (urls, document)
    }

    /// Ends the session and the driver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn same_page(request: &str, page: &str) -> bool {
    request.split('#').next() == page.split('#').next()
}

/// `target/web-screenshots`, next to the test binaries (honours a custom target dir).
pub fn screenshot_dir() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_remailer"));
    exe.ancestors()
        .nth(2)
        .expect("target dir above the binary")
        .join("web-screenshots")
}

/// Chromium headless as root, no network of its own, JavaScript off, a fresh profile.
fn capabilities(profile: &Path) -> Capabilities {
    let args = [
        "--headless".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--disable-default-apps".into(),
        "--disable-extensions".into(),
        "--no-first-run".into(),
        "--no-default-browser-check".into(),
        "--disable-quic".into(),
        "--disable-dev-shm-usage".into(),
        "--blink-settings=scriptEnabled=false".into(),
        "--hide-scrollbars".into(),
        format!("--window-size={DESKTOP_WIDTH},{HEIGHT}"),
        format!("--user-data-dir={}", profile.join("profile").display()),
    ];
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": args,
            "prefs": { "profile.managed_default_content_settings.javascript": 2 },
        },
        "goog:loggingPrefs": { "performance": "ALL", "browser": "ALL" },
    });
    caps.as_object().unwrap().clone()
}

/// Connects to chromedriver once it answers (bounded: 20 s).
async fn connect(port: u16, caps: &Capabilities) -> Client {
    let url = format!("http://127.0.0.1:{port}");
    let mut last = String::new();
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => return c,
                Err(e) => last = e.to_string(),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver on {port} gave no session: {last}");
}

/// A POST to `/session/{id}/{path}`: chromedriver's extensions (logs, DevTools commands).
#[derive(Debug)]
struct SessionPost {
    path: &'static str,
    body: Value,
}

impl SessionPost {
    fn new(path: &'static str, body: Value) -> Self {
        SessionPost { path, body }
    }
}

impl WebDriverCompatibleCommand for SessionPost {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        let id = session_id.unwrap_or_default();
        base_url.join(&format!("session/{id}/{}", self.path))
    }

    fn method_and_body(&self, _url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(self.body.to_string()))
    }
}
