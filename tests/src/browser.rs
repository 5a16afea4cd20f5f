//! Headless Chromium for tests of the review console, driven through `chromedriver`
//! (WebDriver, via `fantoccini`).
//!
//! [`Browser::start`] runs Debian's `chromedriver` on a free loopback port, in a process
//! group of its own, and opens a session of `chromium --headless=new` with a temporary
//! profile and download directory; dropping the [`Browser`] kills that process group
//! (chromedriver and the Chromium it started), so nothing outlives a failed test.
//!
//! Elements are found as a person (or a screen reader) finds them: by their
//! *accessible name* as Chromium computes it (WebDriver's "computed label"), e.g.
//! `browser.field("Username")`, `browser.button("Sign in")`, `browser.link("Download")`.
//! Every wait polls a condition with a bound (default [`WAIT`]); a timeout saves a
//! screenshot `fail-<n>` and reports the page's address, its visible text and the
//! browser console.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use ringfence_tests::browser::Browser;
//! let b = Browser::start("https://127.0.0.1:8443").await?;
//! b.goto("/").await?;
//! b.field("Username").await?.send_keys("pia").await?;
//! b.field("Password").await?.send_keys("secret").await?;
//! b.button("Sign in").await?.click().await?;
//! b.screenshot("signed-in").await?;
//! b.close().await;
//! # Ok(()) }
//! ```

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::elements::{Element, ElementRef};
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};

/// How long a wait polls before it fails, unless told otherwise.
pub const WAIT: Duration = Duration::from_secs(20);
/// How often a wait polls.
const POLL: Duration = Duration::from_millis(50);

/// The Chromium and chromedriver of Debian's `chromium` and `chromium-driver`.
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The W3C WebDriver key of an element reference in JSON.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// WebDriver key codes.
pub const TAB: char = '\u{E004}';
pub const ENTER: char = '\u{E007}';

/// `target/` of the workspace the running test (or example) was built in: the
/// executable is `target/<profile>/deps/<name>-<hash>` (tests) or
/// `target/<profile>/examples/<name>` (examples).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("cannot get the executable path");
    // Cargo marks its target directory with CACHEDIR.TAG.
    if let Some(dir) = exe.ancestors().find(|d| d.join("CACHEDIR.TAG").is_file()) {
        return dir.to_path_buf();
    }
    let mut dir = exe
        .parent()
        .expect("executable has no parent")
        .to_path_buf();
    if dir
        .file_name()
        .is_some_and(|n| n == "deps" || n == "examples")
    {
        dir.pop();
    }
    dir.pop();
    dir
}

/// Where screenshots go: `target/ui-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    target_dir().join("ui-screenshots")
}

/// One raw WebDriver request inside the session: `path` is relative to
/// `/session/{id}/` (e.g. `element/ID/computedlabel`, `goog/cdp/execute`).
#[derive(Debug)]
struct Raw {
    method: http::Method,
    path: String,
    body: Option<Value>,
}

impl WebDriverCompatibleCommand for Raw {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/{}",
            session_id.unwrap_or_default(),
            self.path
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (
            self.method.clone(),
            self.body.as_ref().map(Value::to_string),
        )
    }
}

/// What kind of control a name lookup is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `input`, `select`, `textarea` (or an ARIA text box / combo box).
    Field,
    /// `button`, `input[type=submit|button]`, `[role=button]`.
    Button,
    /// `a[href]`, `[role=link]`.
    Link,
}

impl Kind {
    fn selector(self) -> &'static str {
        match self {
            Kind::Field => {
                "input:not([type=hidden]):not([type=submit]):not([type=button]),select,textarea,\
                 [role=textbox],[role=combobox],[role=searchbox],[role=spinbutton]"
            }
            Kind::Button => "button,input[type=submit],input[type=button],[role=button]",
            Kind::Link => "a[href],[role=link]",
        }
    }
    fn name(self) -> &'static str {
        match self {
            Kind::Field => "field",
            Kind::Button => "button",
            Kind::Link => "link",
        }
    }
}

/// A headless Chromium session. Dropping it kills chromedriver and Chromium.
pub struct Browser {
    pub client: Client,
    /// The site, e.g. `https://127.0.0.1:8443` (no trailing slash).
    pub base: String,
    driver: Option<Child>,
    _profile: tempfile::TempDir,
    downloads: tempfile::TempDir,
    failures: AtomicUsize,
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(mut child) = self.driver.take() {
            // chromedriver leads its own process group (see `start`), and Chromium
            // stays in it: end the group, then reap our child.
            if let Ok(pgid) = libc::pid_t::try_from(child.id()) {
                // SAFETY: kill(2) on the process group our own child leads.
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The flags the console tests run Chromium with (besides the profile directory).
pub const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--ignore-certificate-errors",
    "--autoplay-policy=no-user-gesture-required",
    "--window-size=1280,900",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--lang=en-US",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--password-store=basic",
    "--use-mock-keychain",
];

impl Browser {
    /// Starts chromedriver and a headless Chromium session for the site at `base`.
    pub async fn start(base: &str) -> Result<Browser> {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(bin).exists() {
                bail!(
                    "{bin} is missing: run `bash scripts/install-deps.sh` (chromium, chromium-driver)"
                );
            }
        }
        let profile = tempfile::Builder::new()
            .prefix("ringfence-chromium-")
            .tempdir()?;
        let downloads = tempfile::Builder::new()
            .prefix("ringfence-downloads-")
            .tempdir()?;
        let port = crate::free_port();
        let log = std::fs::File::create(profile.path().join("chromedriver.log"))?;
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {CHROMEDRIVER}"))?;
        let mut b = BrowserStart {
            driver: Some(driver),
        };
        // Wait until chromedriver listens.
        let up = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(c) = b.driver.as_mut()
                && let Some(s) = c.try_wait()?
            {
                bail!("chromedriver exited at start ({s})");
            }
            if up.elapsed() > WAIT {
                bail!("chromedriver did not listen on port {port} within {WAIT:?}");
            }
            tokio::time::sleep(POLL).await;
        }
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let dl = downloads.path().to_string_lossy().into_owned();
        let caps = json!({
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": args,
                "prefs": {
                    "download.default_directory": dl,
                    "download.prompt_for_download": false,
                    "download.directory_upgrade": true,
                    "safebrowsing.enabled": false,
                    "intl.accept_languages": "en-US,en",
                },
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        });
        let caps = match caps {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}/"))
            .await
            .context("cannot open a Chromium session through chromedriver")?;
        let browser = Browser {
            client,
            base: base.trim_end_matches('/').to_string(),
            driver: b.driver.take(),
            _profile: profile,
            downloads,
            failures: AtomicUsize::new(0),
        };
        // Downloads go to our directory, without asking (headless too).
        browser
            .cdp(
                "Browser.setDownloadBehavior",
                json!({"behavior": "allow", "downloadPath": dl, "eventsEnabled": true}),
            )
            .await
            .context("Browser.setDownloadBehavior")?;
        Ok(browser)
    }

    /// Ends the WebDriver session (closing Chromium); the drop then ends chromedriver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }

    async fn raw(&self, method: http::Method, path: String, body: Option<Value>) -> Result<Value> {
        let what = format!("{method} {path}");
        self.client
            .issue_cmd(Raw { method, path, body })
            .await
            .map_err(|e| anyhow!("WebDriver {what}: {e}"))
    }

    /// A Chrome DevTools Protocol command through chromedriver.
    pub async fn cdp(&self, cmd: &str, params: Value) -> Result<Value> {
        self.raw(
            http::Method::POST,
            "goog/cdp/execute".into(),
            Some(json!({"cmd": cmd, "params": params})),
        )
        .await
    }

    /// The accessible name Chromium computes for `el`.
    pub async fn label(&self, el: &Element) -> Result<String> {
        let v = self
            .raw(
                http::Method::GET,
                format!("element/{}/computedlabel", el.element_id()),
                None,
            )
            .await?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    /// The ARIA role Chromium computes for `el`.
    pub async fn role(&self, el: &Element) -> Result<String> {
        let v = self
            .raw(
                http::Method::GET,
                format!("element/{}/computedrole", el.element_id()),
                None,
            )
            .await?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    /// What the browser console said (errors, warnings, logs) since the last call.
    pub async fn console_log(&self) -> Vec<String> {
        match self
            .raw(
                http::Method::POST,
                "se/log".into(),
                Some(json!({"type": "browser"})),
            )
            .await
        {
            Ok(Value::Array(entries)) => entries
                .iter()
                .map(|e| {
                    format!(
                        "{} {}",
                        e["level"].as_str().unwrap_or(""),
                        e["message"].as_str().unwrap_or("")
                    )
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Opens `path` of the site (`/`, `/audit`, `/cameras/gate?at=…`), or a full URL.
    pub async fn goto(&self, path: &str) -> Result<()> {
        let url = if path.starts_with('/') {
            format!("{}{path}", self.base)
        } else {
            path.to_string()
        };
        self.client
            .goto(&url)
            .await
            .with_context(|| format!("cannot open {url}"))
    }

    /// Runs `script` (a function body: `return …`; `arguments` are `args`).
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        self.client
            .execute(script, args)
            .await
            .map_err(|e| anyhow!("script failed: {e}\n{script}"))
    }

    /// An element as a script argument.
    pub fn arg(el: &Element) -> Value {
        json!({ ELEMENT_KEY: el.element_id().to_string() })
    }

    /// The element a script returned (`None` if it returned no element).
    pub fn element(&self, v: &Value) -> Option<Element> {
        v.get(ELEMENT_KEY).and_then(Value::as_str).map(|id| {
            Element::from_element_id(self.client.clone(), ElementRef::from(id.to_string()))
        })
    }

    /// Polls `script` until it returns something other than `null`, `false`, `0` or
    /// `""`, at most `timeout`; returns that value. `what` names the condition in the
    /// error, which also carries the page's state (and saves a screenshot).
    pub async fn wait_js_for(
        &self,
        what: &str,
        timeout: Duration,
        script: &str,
        args: Vec<Value>,
    ) -> Result<Value> {
        let start = Instant::now();
        let mut last_err = None;
        loop {
            match self.client.execute(script, args.clone()).await {
                Ok(v) if truthy(&v) => return Ok(v),
                Ok(_) => {}
                Err(e) => last_err = Some(e.to_string()),
            }
            if start.elapsed() > timeout {
                let mut msg = format!("timed out after {timeout:?} waiting for {what}");
                if let Some(e) = last_err {
                    msg.push_str(&format!(" (last script error: {e})"));
                }
                return Err(anyhow!(self.describe_failure(&msg).await));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// [`wait_js_for`](Self::wait_js_for) with the default bound [`WAIT`].
    pub async fn wait_js(&self, what: &str, script: &str, args: Vec<Value>) -> Result<Value> {
        self.wait_js_for(what, WAIT, script, args).await
    }

    /// The page's address, visible text and console, and a screenshot, for an error.
    pub async fn describe_failure(&self, msg: &str) -> String {
        let n = self.failures.fetch_add(1, Ordering::Relaxed);
        let shot = self
            .screenshot(&format!("fail-{}-{n}", std::process::id()))
            .await
            .map(|p| p.display().to_string())
            .unwrap_or_else(|e| format!("(no screenshot: {e})"));
        let url = self
            .client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default();
        let text = self
            .client
            .execute(
                "return document.body ? document.body.innerText : ''",
                vec![],
            )
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let text: String = text.chars().take(3000).collect();
        let console = self.console_log().await.join("\n");
        format!(
            "{msg}\npage: {url}\nscreenshot: {shot}\n--- visible text ---\n{text}\n--- console ---\n{console}"
        )
    }

    /// Saves a PNG of the viewport to `target/ui-screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> Result<PathBuf> {
        let png = self
            .client
            .screenshot()
            .await
            .map_err(|e| anyhow!("screenshot: {e}"))?;
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    /// The visible elements of `kind` under `scope` (the document if `None`) whose
    /// accessible name is exactly `name` (whitespace collapsed).
    pub async fn find_named(
        &self,
        kind: Kind,
        name: &str,
        scope: Option<&Element>,
    ) -> Result<Vec<Element>> {
        // A cheap pre-selection in the page (names that could contain `name`), then the
        // accessible name as Chromium computes it decides.
        let found = self
            .js(
                r#"const [sel, name, scope] = arguments;
const norm = (s) => (s || '').replace(/\s+/g, ' ').trim();
const root = scope || document;
const visible = (el) => {
  if (!el.isConnected || el.closest('[hidden],[inert]')) return false;
  const r = el.getClientRects();
  if (!r.length) return false;
  const cs = getComputedStyle(el);
  return cs.visibility !== 'hidden' && cs.display !== 'none';
};
const out = [];
for (const el of root.querySelectorAll(sel)) {
  if (!visible(el)) continue;
  const texts = [el.getAttribute('aria-label'), el.getAttribute('title'), el.getAttribute('placeholder'),
                 el.textContent, el.value];
  for (const l of el.labels || []) texts.push(l.textContent);
  for (const id of (el.getAttribute('aria-labelledby') || '').split(/\s+/)) {
    const l = id && document.getElementById(id);
    if (l) texts.push(l.textContent);
  }
  if (texts.some((t) => norm(t).includes(name))) out.push(el);
}
return out;"#,
                vec![
                    json!(kind.selector()),
                    json!(name),
                    scope.map(Self::arg).unwrap_or(Value::Null),
                ],
            )
            .await?;
        let mut out = Vec::new();
        for v in found.as_array().cloned().unwrap_or_default() {
            let Some(el) = self.element(&v) else { continue };
            let label = match self.label(&el).await {
                Ok(l) => l,
                Err(_) => continue, // gone meanwhile
            };
            if collapse(&label) != name {
                continue;
            }
            let ok = match kind {
                Kind::Field => true,
                Kind::Button => self.role(&el).await.is_ok_and(|r| r == "button"),
                Kind::Link => self.role(&el).await.is_ok_and(|r| r == "link"),
            };
            if ok {
                out.push(el);
            }
        }
        Ok(out)
    }

    /// Waits (at most [`WAIT`]) for exactly one visible `kind` named `name` under
    /// `scope`, and returns it.
    pub async fn named_in(
        &self,
        kind: Kind,
        name: &str,
        scope: Option<&Element>,
    ) -> Result<Element> {
        let start = Instant::now();
        loop {
            let mut found = self.find_named(kind, name, scope).await?;
            if found.len() == 1 {
                return Ok(found.remove(0));
            }
            if start.elapsed() > WAIT {
                let msg = if found.is_empty() {
                    format!("no visible {} named {name:?} within {WAIT:?}", kind.name())
                } else {
                    format!("{} visible {}s named {name:?}", found.len(), kind.name())
                };
                bail!(self.describe_failure(&msg).await);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The one visible form field (input, select, textarea) whose accessible name is `name`.
    pub async fn field(&self, name: &str) -> Result<Element> {
        self.named_in(Kind::Field, name, None).await
    }

    /// The one visible button whose accessible name is `name`.
    pub async fn button(&self, name: &str) -> Result<Element> {
        self.named_in(Kind::Button, name, None).await
    }

    /// The one visible link whose accessible name is `name`.
    pub async fn link(&self, name: &str) -> Result<Element> {
        self.named_in(Kind::Link, name, None).await
    }

    /// Clears the field named `name` and types `text` into it.
    pub async fn fill(&self, name: &str, text: &str) -> Result<Element> {
        let f = self.field(name).await?;
        f.clear()
            .await
            .map_err(|e| anyhow!("clear {name:?}: {e}"))?;
        f.send_keys(text)
            .await
            .map_err(|e| anyhow!("type into {name:?}: {e}"))?;
        Ok(f)
    }

    /// Clicks the button named `name`.
    pub async fn click_button(&self, name: &str) -> Result<()> {
        let b = self.button(name).await?;
        b.click()
            .await
            .map_err(|e| anyhow!("click button {name:?}: {e}"))
    }

    /// Waits for the first visible element matching the CSS selector `css`.
    pub async fn wait_css(&self, css: &str) -> Result<Element> {
        let v = self
            .wait_js(
                &format!("a visible element {css}"),
                "for (const el of document.querySelectorAll(arguments[0])) \
                   if (el.getClientRects().length && getComputedStyle(el).visibility !== 'hidden') return el; \
                 return null;",
                vec![json!(css)],
            )
            .await?;
        self.element(&v)
            .ok_or_else(|| anyhow!("{css}: not an element: {v}"))
    }

    /// Presses keys on whatever has the focus (as a keyboard does: no element is
    /// targeted). Characters are typed one by one; use [`TAB`], [`ENTER`].
    pub async fn press(&self, keys: &str) -> Result<()> {
        let mut k = KeyActions::new("keyboard".into());
        for c in keys.chars() {
            k = k
                .then(KeyAction::Down { value: c })
                .then(KeyAction::Up { value: c });
        }
        self.client
            .perform_actions(k)
            .await
            .map_err(|e| anyhow!("key presses: {e}"))?;
        self.client
            .release_actions()
            .await
            .map_err(|e| anyhow!("release keys: {e}"))
    }

    /// The accessible name of the element that has the focus.
    pub async fn focused_label(&self) -> Result<String> {
        let el = self
            .client
            .active_element()
            .await
            .map_err(|e| anyhow!("active element: {e}"))?;
        Ok(collapse(&self.label(&el).await?))
    }

    /// Presses Tab (at most 30 times) until the focused element is named `name`.
    /// Returns how many Tabs it took.
    pub async fn tab_to(&self, name: &str) -> Result<usize> {
        for n in 0..30 {
            if self.focused_label().await? == name {
                return Ok(n);
            }
            self.press(&TAB.to_string()).await?;
        }
        bail!(
            self.describe_failure(&format!("30 Tabs never reached {name:?}"))
                .await
        )
    }

    /// The directory downloads go to.
    pub fn download_dir(&self) -> &Path {
        self.downloads.path()
    }

    /// Waits (at most `timeout`) for a finished download (no `.crdownload` left) and
    /// returns its path.
    pub async fn wait_download(&self, timeout: Duration) -> Result<PathBuf> {
        let start = Instant::now();
        loop {
            let mut done = None;
            let mut partial = false;
            for e in std::fs::read_dir(self.downloads.path())? {
                let p = e?.path();
                let name = p
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                if name.ends_with(".crdownload") || name.starts_with('.') {
                    partial = true;
                } else {
                    done = Some(p);
                }
            }
            if let (Some(p), false) = (&done, partial) {
                return Ok(p.clone());
            }
            if start.elapsed() > timeout {
                bail!(
                    self.describe_failure(&format!("no finished download within {timeout:?}"))
                        .await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Holds chromedriver while `start` has not returned a `Browser` yet.
struct BrowserStart {
    driver: Option<Child>,
}

impl Drop for BrowserStart {
    fn drop(&mut self) {
        if let Some(mut child) = self.driver.take() {
            if let Ok(pgid) = libc::pid_t::try_from(child.id()) {
                // SAFETY: kill(2) on the process group our own child leads.
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0),
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

/// Whitespace collapsed and trimmed, as accessible names are compared.
pub fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// RFC 3339 UTC with milliseconds (`2026-03-01T12:00:00.000Z`), as Ringfence prints
/// times, for addresses like `/cameras/gate?at=…` (without a date library).
pub fn rfc3339_utc(unix_ms: i64) -> String {
    let (secs, ms) = (unix_ms.div_euclid(1000), unix_ms.rem_euclid(1000));
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // civil_from_days (H. Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}
