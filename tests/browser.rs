//! `vmtool serve` in a real browser: Debian's headless Chromium driven by
//! chromedriver over WebDriver (plain HTTP with ureq). Screenshots go to
//! `<target>/tmp/serve-browser/` for review.

use crate::util::Sandbox;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A child process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One WebDriver session of chromedriver.
struct Browser {
    agent: ureq::Agent,
    base: String,
    _driver: Killed,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Option<Browser> {
        if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{CHROMIUM} and {CHROMEDRIVER} are needed under CI (.ci/run installs chromium and chromium-driver)"
            );
            eprintln!("skipped: no {CHROMIUM} or {CHROMEDRIVER} (apt-get install chromium chromium-driver)");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver does not start");
        let driver = Killed(driver);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = agent
                .get(format!("{url}/status"))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_to_string().ok())
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver not ready in 20 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--autoplay-policy=no-user-gesture-required", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        }}});
        let mut r = agent
            .post(format!("{url}/session"))
            .header("Content-Type", "application/json")
            .send(caps.to_string())
            .expect("chromedriver: new session");
        let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        let id = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {v}"))
            .to_string();
        Some(Browser {
            agent,
            base: format!("{url}/session/{id}"),
            _driver: driver,
            _profile: profile,
        })
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        let r = match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.to_string()),
        };
        let text = r
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"))
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        if v["value"].get("error").is_some() {
            panic!("WebDriver {path}: {}", v["value"]);
        }
        v["value"].clone()
    }

    fn go(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url }));
    }

    fn find(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            "/element",
            json!({"using": "css selector", "value": css}),
        );
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(|e| e.as_str())
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.call(
            "POST",
            &format!("/element/{e}/value"),
            json!({ "text": text }),
        );
    }

    fn click(&self, css: &str) {
        let e = self.find(css);
        self.call("POST", &format!("/element/{e}/click"), json!({}));
    }

    fn js(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            json!({ "script": script, "args": [] }),
        )
    }

    /// Waits up to `secs` for `script` to return true; the last value on failure.
    fn wait_for(&self, what: &str, secs: u64, script: &str) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut last = Value::Null;
        while Instant::now() < deadline {
            last = self.js(script);
            if last == Value::Bool(true) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.screenshot("failed");
        panic!(
            "{what}: not within {secs} s (last: {last}); page: {}",
            self.js("return document.body.innerText")
        );
    }

    fn screenshot(&self, name: &str) -> PathBuf {
        use base64_png::decode;
        let v = self.call("GET", "/screenshot", Value::Null);
        let png = decode(v.as_str().unwrap());
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-browser");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.agent.delete(&self.base).call();
    }
}

/// Standard base64, for the screenshots WebDriver sends.
mod base64_png {
    pub fn decode(s: &str) -> Vec<u8> {
        let val = |c: u8| -> Option<u32> {
            Some(match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                _ => return None,
            } as u32)
        };
        let mut out = Vec::with_capacity(s.len() * 3 / 4);
        let (mut acc, mut bits) = (0u32, 0);
        for v in s.bytes().filter_map(val) {
            acc = (acc << 6) | v;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        out
    }
}

/// `vmtool serve` on the sandbox; its URL.
fn serve(sb: &Sandbox, extra: &[&str]) -> (Killed, String) {
    let mut cmd = sb.command();
    cmd.args(["--no-ami", "serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first
        .strip_prefix("vmtool: listening on ")
        .unwrap_or_else(|| panic!("{first}"))
        .to_string();
    // Keep reading so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    (Killed(child), url)
}

#[test]
fn browser_logs_in_plays_marks_heard_and_sees_a_deposit_live() {
    let Some(b) = Browser::start() else { return };
    let sb = Sandbox::team2();
    let (_server, url) = serve(&sb, &[]);
    let inbox = sb.voicemail().join("finance/2101/INBOX");
    let old = sb.voicemail().join("finance/2101/Old");

    b.go(&url);
    b.type_into("input[name=mailbox]", "2101@finance");
    b.type_into("input[name=pin]", "1111");
    b.screenshot("01-login");
    b.click("button[type=submit]");
    b.wait_for(
        "the INBOX list",
        15,
        "return document.querySelectorAll('#messages tbody tr').length === 2",
    );
    let callers = b.js(
        "return Array.from(document.querySelectorAll('#messages td.caller')).map(t => t.textContent)",
    );
    assert_eq!(
        callers,
        json!(["Garage Moreau <0472001122>", "Thomas Girard <0755667788>"])
    );
    // Waveforms drawn (the images loaded).
    b.wait_for(
        "the waveforms",
        15,
        "return Array.from(document.querySelectorAll('img.wave')).every(i => i.complete && i.naturalWidth > 0)",
    );
    b.screenshot("02-list");

    // Play the first message: the audio element gets going without error.
    b.js(
        "const a = document.querySelector('#messages tbody tr:first-child audio'); \
          a.preload = 'auto'; a.play().catch(e => { window.playError = String(e); }); return true",
    );
    b.wait_for(
        "playback of the first message",
        20,
        "const a = document.querySelector('#messages tbody tr:first-child audio'); \
         return !a.error && !window.playError && a.readyState >= 2 && a.currentTime > 0",
    );
    let dur =
        b.js("return document.querySelector('#messages tbody tr:first-child audio').duration");
    assert!(dur.as_f64().is_some_and(|d| d > 1.0), "duration {dur}");
    // Seeking works (the server answers ranges).
    b.js("const a = document.querySelector('#messages tbody tr:first-child audio'); a.currentTime = 1.0; return true");
    b.wait_for(
        "a seek",
        10,
        "const a = document.querySelector('#messages tbody tr:first-child audio'); return !a.error && a.currentTime >= 1.0",
    );
    b.screenshot("03-playing");
    b.js("document.querySelector('#messages tbody tr:first-child audio').pause(); return true");

    // Mark it heard: its files move to Old in the spool.
    assert!(inbox.join("msg0000.txt").exists());
    b.click("#messages tbody tr:first-child button.heard");
    b.wait_for(
        "the list after marking heard",
        15,
        "return document.querySelectorAll('#messages tbody tr').length === 1",
    );
    for ext in ["txt", "wav", "WAV", "gsm"] {
        assert!(
            old.join(format!("msg0000.{ext}")).exists(),
            "Old/msg0000.{ext}"
        );
    }
    assert!(!inbox.join("msg0000.txt").exists());
    b.screenshot("04-heard");

    // A deposit made while the page is open appears without reloading.
    let wav = sb.path().join("notice.wav");
    std::fs::copy(inbox.join("msg0001.wav"), &wav).unwrap();
    sb.run(&[
        "--no-ami",
        "deposit",
        "2101@finance",
        wav.to_str().unwrap(),
        "--callerid",
        "\"Live Caller\" <0100000000>",
    ])
    .ok();
    b.wait_for(
        "the new message, live",
        15,
        "return Array.from(document.querySelectorAll('#messages td.caller')).some(t => t.textContent === 'Live Caller <0100000000>')",
    );
    b.wait_for(
        "the folder count",
        5,
        "return document.querySelector('#folders button[data-folder=INBOX]').textContent === 'INBOX (2)'",
    );
    let shot = b.screenshot("05-deposit-live");
    assert!(std::fs::metadata(&shot).unwrap().len() > 1000);
}

#[test]
fn browser_admin_sees_every_box_searches_and_opens_one() {
    let Some(b) = Browser::start() else { return };
    let sb = Sandbox::team2();
    let admins = crate::serve::admins_file(&sb, "alice", "s3cret-admin");
    let (_server, url) = serve(&sb, &["--admins", admins.to_str().unwrap()]);
    b.go(&url);
    b.type_into("input[name=mailbox]", "alice");
    b.type_into("input[name=pin]", "s3cret-admin");
    b.click("button[type=submit]");
    b.wait_for(
        "the boxes overview",
        15,
        "return document.querySelectorAll('#boxes tbody tr').length >= 5",
    );
    let names = b.js(
        "return Array.from(document.querySelectorAll('#boxes button.open')).map(t => t.textContent)",
    );
    for name in [
        "2101@finance",
        "2102@finance",
        "2201@compta",
        "2202@compta",
        "2301@direction",
    ] {
        assert!(
            names.as_array().unwrap().iter().any(|n| n == name),
            "{name} in {names}"
        );
    }
    b.screenshot("10-admin-boxes");
    // Search by caller across boxes.
    b.type_into("#caller", "an");
    b.click("#search button[type=submit]");
    b.wait_for(
        "the search results",
        15,
        "return !document.getElementById('results').hidden && document.querySelectorAll('#results tbody tr').length === 2",
    );
    b.screenshot("11-admin-search");
    // Open one box from the results: its messages, played like an owner's.
    b.js("Array.from(document.querySelectorAll('#results button.open')).find(b => b.textContent === '2301@direction').click(); return true");
    b.wait_for(
        "the opened box",
        15,
        "return document.getElementById('mailbox').textContent === '2301@direction' && document.querySelectorAll('#messages tbody tr').length === 2",
    );
    b.js(
        "const a = document.querySelector('#messages tbody tr:first-child audio'); \
          a.play().catch(e => { window.playError = String(e); }); return true",
    );
    b.wait_for(
        "playback in the opened box",
        20,
        "const a = document.querySelector('#messages tbody tr:first-child audio'); \
         return !a.error && !window.playError && a.currentTime > 0",
    );
    b.screenshot("12-admin-box");
}
