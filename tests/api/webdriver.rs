//! A small W3C WebDriver client over Debian's `chromium-driver`, for tests that need a real
//! browser to run a page's scripts and take screenshots. Name resolution is blocked for every
//! host but 127.0.0.1, so nothing can load from elsewhere.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    profile: PathBuf,
}

fn which(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path).chain([PathBuf::from("/usr/lib/chromium")]).collect();
    names.iter().flat_map(|name| dirs.iter().map(move |d| d.join(name))).find(|p| p.is_file())
}

/// Debian's Chromium; panics (the test fails) when it is not installed.
pub fn chromium() -> PathBuf {
    which(&["chromium", "chromium-browser"])
        .expect("browser tests need Debian's `chromium` package (`apt-get install chromium`; .ci/run installs it)")
}

/// Where tests keep screenshots: `target/test-artifacts/`.
pub fn artifact(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

impl Browser {
    pub async fn start() -> Browser {
        Self::start_reaching(&[]).await
    }

    /// A browser that reaches `hosts` (addresses of networks a test made) besides loopback;
    /// every other name resolves to nothing.
    pub async fn start_reaching(hosts: &[&str]) -> Browser {
        let driver_path = which(&["chromedriver"]).expect("browser tests need Debian's `chromium-driver` package (.ci/run installs it)");
        let chromium = chromium();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = std::env::temp_dir().join(format!("ocaas-webdriver-{}", uuid::Uuid::new_v4().simple()));
        let args = json!([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--window-size=1280,900",
            format!("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1{}", hosts.iter().map(|h| format!(", EXCLUDE {h}")).collect::<String>()),
            format!("--user-data-dir={}", profile.display()),
        ]);
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let created: Value = http.post(format!("{base}/session")).json(&capabilities).send().await.unwrap().json().await.unwrap();
        let session = created["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no WebDriver session: {created}")).to_owned();
        Browser { driver, base, session, http, profile }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_command(method, path, body).await.unwrap_or_else(|error| panic!("WebDriver {path} failed: {error}"))
    }

    /// The command's value, or WebDriver's error object.
    async fn try_command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, Value> {
        let url = format!("{}/session/{}{}", self.base, self.session, path);
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let reply: Value = request.send().await.unwrap().json().await.unwrap();
        if reply["value"].get("error").is_some() { Err(reply["value"].clone()) } else { Ok(reply["value"].clone()) }
    }

    pub async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await;
    }

    /// Opens `url` until `loaded` (a script) is truthy, at most `attempts` times. Chromium aborts
    /// loads with ERR_NETWORK_CHANGED when the engine adds interfaces for other tests' sandboxes.
    pub async fn goto_until_loaded(&self, url: &str, loaded: &str, attempts: u32) {
        for attempt in 1..=attempts {
            self.goto(url).await;
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                let value = self.eval(loaded).await;
                if value == json!(true) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            eprintln!("page load {attempt} of {url} did not finish; console:\n{}", self.console().await);
        }
        panic!("{url} never loaded");
    }

    /// Runs `script` (a function body; `return` a value) in the page.
    pub async fn eval(&self, script: &str) -> Value {
        self.command(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": []}))).await
    }

    /// Polls `script` until it returns something truthy; panics with its last value after `secs`.
    pub async fn wait_for(&self, script: &str, secs: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let value = self.eval(script).await;
            if !(value.is_null() || value == json!(false) || value == json!("") || value == json!(0)) {
                return value;
            }
            if Instant::now() > deadline {
                let body = self.eval("return document.body ? document.body.innerText.slice(0, 2000) : ''").await;
                let console = self.console().await;
                panic!("timed out waiting for `{script}`; page says: {body}\nbrowser console:\n{console}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// What the page logged to the browser console (chromedriver's log endpoint).
    pub async fn console(&self) -> String {
        let url = format!("{}/session/{}/se/log", self.base, self.session);
        let reply: Value = match self.http.post(url).json(&json!({"type": "browser"})).send().await {
            Ok(response) => response.json().await.unwrap_or_default(),
            Err(error) => return format!("(no console log: {error})"),
        };
        reply["value"]
            .as_array()
            .map(|entries| entries.iter().map(|e| format!("{} {}", e["level"], e["message"])).collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }

    /// The element matching `css` (waiting up to 20 s for it to exist).
    pub async fn find(&self, css: &str) -> String {
        let selector = serde_json::to_string(css).unwrap();
        self.wait_for(&format!("return document.querySelector({selector}) !== null"), 20).await;
        let found = self.command(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css}))).await;
        found.as_object().and_then(|o| o.values().next()).and_then(Value::as_str).unwrap().to_owned()
    }

    /// Clicks the element matching `css`. The page re-renders as statuses change (it polls the
    /// API), so the element found may be replaced before the click lands: then it is found anew,
    /// as a person would click the button they see now.
    pub async fn click(&self, css: &str) {
        for _ in 0..5 {
            let element = self.find(css).await;
            match self.try_command(reqwest::Method::POST, &format!("/element/{element}/click"), Some(json!({}))).await {
                Err(error) if error["error"] == "stale element reference" => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(error) => panic!("WebDriver click on `{css}` failed: {error}"),
                Ok(_) => return,
            }
        }
        panic!("`{css}` was replaced by every re-render before it could be clicked");
    }

    /// Types `text` into the form field matching `css`.
    pub async fn fill(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.command(reqwest::Method::POST, &format!("/element/{element}/clear"), Some(json!({}))).await;
        self.command(reqwest::Method::POST, &format!("/element/{element}/value"), Some(json!({"text": text}))).await;
    }

    /// Presses the keys of `text` on the keyboard (into whatever has focus); `\n` is Enter.
    pub async fn type_keys(&self, text: &str) {
        let mut actions = Vec::new();
        for c in text.chars() {
            let key = if c == '\n' { "\u{E007}".to_owned() } else { c.to_string() };
            actions.push(json!({"type": "keyDown", "value": key}));
            actions.push(json!({"type": "keyUp", "value": key}));
        }
        let body = json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]});
        self.command(reqwest::Method::POST, "/actions", Some(body)).await;
    }

    pub async fn set_window(&self, width: u32, height: u32) {
        self.command(reqwest::Method::POST, "/window/rect", Some(json!({"width": width, "height": height}))).await;
    }

    /// Saves a PNG screenshot of the element matching `css` and returns the PNG.
    pub async fn element_screenshot(&self, css: &str, path: &Path) -> Vec<u8> {
        let element = self.find(css).await;
        // Chromium clips an element's screenshot to the viewport: bring all of it into view.
        let selector = serde_json::to_string(css).unwrap();
        self.eval(&format!("document.querySelector({selector}).scrollIntoView({{block: 'center'}}); return true")).await;
        let encoded = self.command(reqwest::Method::GET, &format!("/element/{element}/screenshot"), None).await;
        let png = base64::engine::general_purpose::STANDARD.decode(encoded.as_str().unwrap()).unwrap();
        std::fs::write(path, &png).unwrap();
        png
    }

    /// Saves a PNG screenshot of the viewport and returns its size in bytes.
    pub async fn screenshot(&self, path: &Path) -> usize {
        let encoded = self.command(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD.decode(encoded.as_str().unwrap()).unwrap();
        std::fs::write(path, &png).unwrap();
        png.len()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends the browser through the driver (a killed driver would leave Chromium running).
        use std::io::{Read, Write};
        if let Ok(mut stream) = std::net::TcpStream::connect(self.base.trim_start_matches("http://")) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let request = format!("DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", self.session);
            let _ = stream.write_all(request.as_bytes());
            let _ = stream.read_to_end(&mut Vec::new());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
