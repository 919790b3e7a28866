//! A real headless Chromium, driven over the W3C WebDriver protocol through chromedriver,
//! with a small client on reqwest (Debian's `chromium` and `chromium-driver`; `scripts/test`
//! installs them).
//!
//! Invariants:
//! - each [`Browser`] owns a chromedriver in a process group of its own (Chromium is started
//!   inside it) and a fresh profile directory; dropping the handle kills the group and removes
//!   the profile, so a failing test leaves no browser behind;
//! - at most [`MAX_BROWSERS`] run at once in one test binary: the machine has two cores;
//! - `wait_js` polls like `eventually` and panics with what it waited for and what the page
//!   last answered;
//! - screenshots go to `<target>/test-output/screenshots/<name>.png` for a reviewer to look at.

use super::wait::{eventually, free_port};
use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;
use tokio::sync::{Semaphore, SemaphorePermit};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const MAX_BROWSERS: usize = 2;
/// Screenshots stop this far down a long page (a thousand hosts).
pub const MAX_SHOT_HEIGHT: f64 = 3000.0;
/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

static SLOTS: Semaphore = Semaphore::const_new(MAX_BROWSERS);

pub struct Browser {
    driver: Child,
    base: String,
    http: reqwest::Client,
    _profile: TempDir,
    _slot: SemaphorePermit<'static>,
}

/// Where screenshots are kept: next to the build output, whatever `CARGO_TARGET_DIR` is.
pub fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // <target>/debug/deps/<test> -> <target>/test-output/screenshots
    exe.ancestors()
        .nth(3)
        .map(|t| t.join("test-output").join("screenshots"))
        .expect("target directory")
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a 1400×1000 window.
    pub async fn start() -> anyhow::Result<Browser> {
        let slot = SLOTS.acquire().await.context("browser slots closed")?;
        let port = free_port();
        let profile = tempfile::tempdir()?;
        let log = profile.path().join("chromedriver.log");
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .with_context(|| {
                format!("starting {CHROMEDRIVER} (apt-get install chromium-driver)")
            })?;
        let mut b = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            http: super::fleet::http_client(),
            _profile: profile,
            _slot: slot,
        };
        let status = format!("{}/status", b.base);
        let http = b.http.clone();
        eventually(Duration::from_secs(20), "chromedriver ready", async || {
            let v: Value = http.get(&status).send().await?.json().await?;
            anyhow::ensure!(v["value"]["ready"] == true, "not ready: {v}");
            Ok(())
        })
        .await;
        let user_data = b._profile.path().join("profile");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            // A page's alert() stays open for `dialog_text` to see, instead of being dismissed.
            "unhandledPromptBehavior": "ignore",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
                    format!("--user-data-dir={}", user_data.display()),
                ],
            },
        }}});
        let v = b
            .call(reqwest::Method::POST, "/session", Some(caps))
            .await?;
        let id = v["sessionId"]
            .as_str()
            .with_context(|| format!("no session id in {v}"))?;
        b.base = format!("{}/session/{id}", b.base);
        Ok(b)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = r.status();
        let v: Value = r.json().await.with_context(|| format!("{method} {path}"))?;
        if !status.is_success() {
            bail!(
                "{method} {path}: {status} {}: {}",
                v["value"]["error"],
                v["value"]["message"]
            );
        }
        Ok(v["value"].clone())
    }

    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await
            .map(|_| ())
    }

    /// Runs `script` (a function body: `return …`) in the page with `args`.
    pub async fn js(&self, script: &str, args: Value) -> anyhow::Result<Value> {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Waits until `script` returns something other than null, false or undefined.
    pub async fn wait_js(&self, within: Duration, what: &str, script: &str) -> Value {
        eventually(within, what, async || {
            let v = self.js(script, json!([])).await?;
            if v.is_null() || v == false {
                bail!("page answered {v}");
            }
            Ok(v)
        })
        .await
    }

    async fn element(&self, css: &str) -> anyhow::Result<String> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await?;
        v[ELEMENT]
            .as_str()
            .map(String::from)
            .with_context(|| format!("no element reference for {css:?}: {v}"))
    }

    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        let e = self.element(css).await?;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/click"),
            Some(json!({})),
        )
        .await
        .map(|_| ())
    }

    /// Clears the field at `css` and types `text` into it, as a person would.
    pub async fn type_into(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let e = self.element(css).await?;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/clear"),
            Some(json!({})),
        )
        .await?;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        )
        .await
        .map(|_| ())
    }

    /// The text of an open alert/confirm/prompt dialog, `None` when there is none.
    pub async fn dialog_text(&self) -> anyhow::Result<Option<String>> {
        let r = self
            .http
            .get(format!("{}/alert/text", self.base))
            .send()
            .await?;
        let ok = r.status().is_success();
        let v: Value = r.json().await?;
        if ok {
            return Ok(Some(v["value"].as_str().unwrap_or_default().to_string()));
        }
        if v["value"]["error"] == "no such alert" {
            return Ok(None);
        }
        bail!("reading dialog: {v}")
    }

    /// A Chrome DevTools command (`Page.addScriptToEvaluateOnNewDocument`, ...).
    pub async fn cdp(&self, cmd: &str, params: Value) -> anyhow::Result<Value> {
        self.call(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            Some(json!({ "cmd": cmd, "params": params })),
        )
        .await
    }

    /// Console errors and exceptions the page logged (CSP violations among them), without
    /// network failures such as an expected 401.
    pub async fn script_errors(&self) -> anyhow::Result<Vec<String>> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/se/log",
                Some(json!({ "type": "browser" })),
            )
            .await?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .filter_map(|e| e["message"].as_str())
            .filter(|m| !m.contains("Failed to load resource"))
            .map(String::from)
            .collect())
    }

    /// Saves a PNG of the whole page (up to [`MAX_SHOT_HEIGHT`] pixels down) as
    /// `<target>/test-output/screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let size = self
            .js(
                "const e = document.documentElement; return [e.scrollWidth, e.scrollHeight];",
                json!([]),
            )
            .await?;
        let (w, h) = (
            size[0].as_f64().unwrap_or(1400.0),
            size[1].as_f64().unwrap_or(1000.0).min(MAX_SHOT_HEIGHT),
        );
        let v = self
            .cdp(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true,
                       "clip": {"x": 0, "y": 0, "width": w, "height": h, "scale": 1}}),
            )
            .await?;
        let png = base64_decode(v["data"].as_str().context("screenshot has no data")?)?;
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: chromedriver and every Chromium process it started.
        let group = nix::unistd::Pid::from_raw(self.driver.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.driver.wait();
    }
}

/// Standard base64 (what WebDriver screenshots are), padding optional.
pub fn base64_decode(text: &str) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
    {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => bail!("not base64: {:?}", c as char),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::base64_decode;

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8").unwrap(), b"hello");
        assert_eq!(base64_decode("iVBORw0KGgo=").unwrap(), b"\x89PNG\r\n\x1a\n");
        assert!(base64_decode("a$").is_err());
    }
}
