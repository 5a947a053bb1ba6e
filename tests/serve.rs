//! `vmtool serve`: the real binary on a copy of the team-2 spool, driven over
//! HTTP. Every safety point of the web interface has a test here.

use crate::util::Sandbox;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    base: String,
    addr: String,
    log: Arc<Mutex<String>>,
    agent: ureq::Agent,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

fn answer(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
    let mut r = r.expect("HTTP exchange failed");
    let headers = r
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let status = r.status().as_u16();
    let body = r
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .unwrap();
    Answer {
        status,
        headers,
        body,
    }
}

impl Server {
    fn start(sb: &Sandbox, extra: &[&str]) -> Server {
        let mut cmd = sb.command();
        cmd.args(["--no-ami", "serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let first = lines.next().expect("no line from serve").unwrap();
        let url = first
            .strip_prefix("vmtool: listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {first}"))
            .to_string();
        let addr = url.split_once("://").unwrap().1.to_string();
        let log = Arc::new(Mutex::new(String::new()));
        let l2 = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut l = l2.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        Server {
            child,
            base: url,
            addr,
            log,
            agent: agent(None),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn login(&self, mailbox: &str, pin: &str) -> Answer {
        answer(
            self.agent
                .post(self.url("/login"))
                .send_form([("mailbox", mailbox), ("pin", pin)]),
        )
    }

    /// Logs in and returns (cookie, csrf token).
    fn session(&self, mailbox: &str, pin: &str) -> (String, String) {
        let r = self.login(mailbox, pin);
        assert_eq!(r.status, 303, "{}", r.text());
        let set = r.header("set-cookie").unwrap().to_string();
        let cookie = set.split(';').next().unwrap().to_string();
        let s = self.get("/api/session", &cookie);
        assert_eq!(s.status, 200);
        let csrf = s.json()["csrf"].as_str().unwrap().to_string();
        (cookie, csrf)
    }

    fn get(&self, path: &str, cookie: &str) -> Answer {
        answer(
            self.agent
                .get(self.url(path))
                .header("Cookie", cookie)
                .call(),
        )
    }

    fn post(&self, path: &str, cookie: &str, csrf: Option<&str>) -> Answer {
        let mut req = self.agent.post(self.url(path)).header("Cookie", cookie);
        if let Some(c) = csrf {
            req = req.header("X-CSRF-Token", c);
        }
        answer(req.send_empty())
    }

    /// A raw request, for what a well-behaved client never sends.
    fn raw(&self, bytes: &[u8]) -> String {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(bytes).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Whether `what` reaches the server's log within 5 s (lines are
    /// written after the answer, by another task).
    fn log_has(&self, what: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.log().contains(what) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn alive(&self) {
        let r = answer(self.agent.get(self.url("/")).call());
        assert_eq!(r.status, 200);
    }
}

/// A client that reports every status (no redirects followed), trusting
/// `root` (PEM) for TLS when given.
fn agent(root: Option<&[u8]>) -> ureq::Agent {
    let mut cfg = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0);
    if let Some(pem) = root {
        let certs: Vec<_> = ureq::tls::parse_pem(pem)
            .filter_map(|i| match i.unwrap() {
                ureq::tls::PemItem::Certificate(c) => Some(c),
                _ => None,
            })
            .collect();
        cfg = cfg.tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs)))
                .build(),
        );
    }
    cfg.build().into()
}

fn msg_file(sb: &Sandbox, rel: &str) -> std::path::PathBuf {
    sb.voicemail().join(rel)
}

#[test]
fn serve_login_session_and_logout() {
    let sb = Sandbox::team2();
    let srv = Server::start(&sb, &[]);
    let page = answer(srv.agent.get(srv.url("/")).call());
    assert_eq!(page.status, 200);
    assert!(page.text().contains("name=\"pin\""), "{}", page.text());
    let r = srv.login("2101@finance", "1111");
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/"));
    let set = r.header("set-cookie").unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Max-Age=", "Path=/"] {
        assert!(set.contains(flag), "{flag} missing: {set}");
    }
    assert!(!set.contains("Secure"), "no Secure over plain HTTP: {set}");
    let cookie = set.split(';').next().unwrap();
    let token = cookie.split_once('=').unwrap().1;
    assert!(token.len() >= 32 && token.bytes().all(|b| b.is_ascii_hexdigit()));
    let s = srv.get("/api/session", cookie).json();
    assert_eq!(s["mailbox"], "2101@finance");
    let csrf = s["csrf"].as_str().unwrap().to_string();
    // A second login gets another session.
    let (cookie2, _) = srv.session("2101@finance", "1111");
    assert_ne!(cookie, cookie2);
    // The logged-in page: the box's name, the script from /static, no inline script.
    let app = srv.get("/", cookie);
    assert!(app.text().contains("2101@finance"));
    assert!(app
        .text()
        .contains("<script src=\"/static/app.js\"></script>"));
    assert_eq!(app.text().matches("<script").count(), 1);
    assert_eq!(srv.post("/logout", cookie, None).status, 403);
    let out = srv.post("/logout", cookie, Some(&csrf));
    assert_eq!(out.status, 303);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(srv.get("/api/session", cookie).status, 401);
    assert_eq!(srv.get("/api/session", &cookie2).status, 200);
    assert_eq!(srv.get("/api/session", "vmtool_session=00").status, 401);
    assert!(
        srv.log_has("2101@finance from 127.0.0.1: logged in"),
        "{}",
        srv.log()
    );
    let log = srv.log();
    assert!(!log.contains("1111"), "the PIN must not be logged: {log}");
    assert!(
        !log.contains(token),
        "the session must not be logged: {log}"
    );
}

#[test]
fn serve_wrong_pin_is_401_and_tells_nothing_about_the_box() {
    let sb = Sandbox::team2();
    let srv = Server::start(&sb, &[]);
    let wrong = srv.login("2101@finance", "9999");
    let unknown = srv.login("7777@finance", "9999");
    let no_ctx = srv.login("2101@nowhere", "1111");
    let garbage = srv.login("<x>", "");
    for r in [&wrong, &unknown, &no_ctx, &garbage] {
        assert_eq!(r.status, 401, "{}", r.text());
        assert!(r.header("set-cookie").is_none());
    }
    assert_eq!(wrong.text(), unknown.text());
    assert_eq!(wrong.text(), no_ctx.text());
    // A box without a PIN (Asterisk asks none) is not open to the web.
    assert_eq!(srv.login("2201@compta", "").status, 401);
    // Five failures from one address: it is locked now (see the next test);
    // a fresh server for the rest.
    drop(srv);
    let srv = Server::start(&sb, &[]);
    // The right PIN of another box does not open this one.
    assert_eq!(srv.login("2101@finance", "2222").status, 401);
    assert_eq!(srv.login("2102@finance", "2222").status, 303);
}

#[test]
fn serve_repeated_wrong_pins_are_slowed_then_locked() {
    let sb = Sandbox::team2();
    let srv = Server::start(&sb, &[]);
    let mut took = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        assert_eq!(srv.login("2102@finance", "0000").status, 401);
        took.push(t.elapsed());
    }
    assert!(took[4] > took[0] + Duration::from_millis(500), "{took:?}");
    // Locked now, even with the right PIN.
    let locked = srv.login("2102@finance", "2222");
    assert_eq!(locked.status, 429, "{}", locked.text());
    let retry: u64 = locked.header("retry-after").unwrap().parse().unwrap();
    assert!(retry > 60, "{retry}");
    // The address is locked too: another box from it waits as well.
    assert_eq!(srv.login("2101@finance", "1111").status, 429);
    let log = srv.log();
    assert!(log.contains("failed login for \"2102@finance\""), "{log}");
}

#[test]
fn serve_pin_from_secret_conf_with_passwordlocation_spooldir() {
    let sb = Sandbox::team2();
    let conf = sb.path().join("etc/voicemail.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(
        &conf,
        text.replace("[general]\n", "[general]\npasswordlocation=spooldir\n"),
    )
    .unwrap();
    std::fs::write(
        msg_file(&sb, "finance/2101/secret.conf"),
        "[general]\npassword = 5150\n",
    )
    .unwrap();
    let srv = Server::start(&sb, &[]);
    assert_eq!(srv.login("2101@finance", "1111").status, 401);
    assert_eq!(srv.login("2101@finance", "5150").status, 303);
    // No secret.conf: voicemail.conf's PIN still counts, as in Asterisk.
    assert_eq!(srv.login("2102@finance", "2222").status, 303);
}

#[test]
fn serve_lists_like_ls_json() {
    let sb = Sandbox::team2();
    let srv = Server::start(&sb, &[]);
    let (cookie, _) = srv.session("2101@finance", "1111");
    let api = srv.get("/api/messages?folder=INBOX", &cookie);
    assert_eq!(api.status, 200);
    assert!(api
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let ls = sb
        .run(&["--format", "json", "ls", "2101@finance/INBOX"])
        .ok()
        .json_lines();
    assert_eq!(api.json(), serde_json::Value::Array(ls));
    assert_eq!(api.json().as_array().unwrap().len(), 2);
    let folders = srv.get("/api/folders", &cookie).json();
    let count = |f: &str| {
        folders
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["folder"] == f)
            .unwrap()["count"]
            .as_u64()
            .unwrap()
    };
    assert_eq!((count("INBOX"), count("Work"), count("Old")), (2, 1, 0));
    // Default folder: INBOX; unknown folder: 404; unauthenticated: 401.
    assert_eq!(srv.get("/api/messages", &cookie).json(), api.json());
    assert_eq!(srv.get("/api/messages?folder=Nope", &cookie).status, 404);
    assert_eq!(srv.get("/api/messages?folder=INBOX", "").status, 401);
    assert_eq!(srv.get("/api/folders", "").status, 401);
}

#[test]
fn serve_audio_is_pcm_wav_with_ranges() {
    let sb = Sandbox::team2();
    let srv = Server::start(&sb, &[]);
    let (cookie, _) = srv.session("2101@finance", "1111");
    let whole = srv.get("/api/messages/INBOX/1/audio", &cookie);
    assert_eq!(whole.status, 200);
    assert_eq!(whole.header("content-type"), Some("audio/wav"));
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    let wav = hound::WavReader::new(std::io::Cursor::new(&whole.body)).unwrap();
    let spec = wav.spec();
    assert_eq!((spec.channels, spec.bits_per_sample), (1, 16));
    // The same samples `convert` writes.
    let conv = sb
        .command()
        .args(["convert", "2101@finance/INBOX/1", "--stdout"])
        .output()
        .unwrap();
    assert!(conv.status.success());
    assert_eq!(whole.body, conv.stdout);
    let part = answer(
        srv.agent
            .get(srv.url("/api/messages/INBOX/1/audio"))
            .header("Cookie", &cookie)
            .header("Range", "bytes=100-199")
            .call(),
    );
    assert_eq!(part.status, 206);
    assert_eq!(part.body, whole.body[100..200]);
    assert_eq!(
        part.header("content-range").unwrap(),
        format!("bytes 100-199/{}", whole.body.len())
    );
    let tail = answer(
        srv.agent
            .get(srv.url("/api/messages/INBOX/1/audio"))
            .header("Cookie", &cookie)
            .header("Range", "bytes=-10")
            .call(),
    );
    assert_eq!(tail.body, whole.body[whole.body.len() - 10..]);
    let beyond = answer(
        srv.agent
            .get(srv.url("/api/messages/INBOX/1/audio"))
            .header("Cookie", &cookie)
            .header("Range", format!("bytes={}-", whole.body.len()))
            .call(),
    );
    assert_eq!(beyond.status, 416);
    assert_eq!(srv.get("/api/messages/INBOX/7/audio", &cookie).status, 404);
    assert_eq!(srv.get("/api/messages/INBOX/1/audio", "").status, 401);
}

#[test]
fn serve_changes_need_csrf_and_go_through_the_store() {
    let sb = Sandbox::team2();
    let srv = Server::start(&sb, &[]);
    let (cookie, csrf) = srv.session("2101@finance", "1111");
    let inbox0 = msg_file(&sb, "finance/2101/INBOX/msg0000.txt");
    // No header, or a wrong one: 403 and nothing moves.
    assert_eq!(
        srv.post("/api/messages/INBOX/0/read", &cookie, None).status,
        403
    );
    assert_eq!(
        srv.post("/api/messages/INBOX/0/read", &cookie, Some("0000"))
            .status,
        403
    );
    // Another session's token is not this one's.
    let (_, other_csrf) = srv.session("2101@finance", "1111");
    assert_eq!(
        srv.post("/api/messages/INBOX/0/read", &cookie, Some(&other_csrf))
            .status,
        403
    );
    assert!(inbox0.exists());
    let r = srv.post("/api/messages/INBOX/0/read", &cookie, Some(&csrf));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        serde_json::json!({"folder": "Old", "number": "0000"})
    );
    assert!(!inbox0.exists());
    for ext in ["txt", "wav", "WAV", "gsm"] {
        assert!(msg_file(&sb, &format!("finance/2101/Old/msg0000.{ext}")).exists());
    }
    // Heard again: 409, nothing changes.
    assert_eq!(
        srv.post("/api/messages/Old/0/read", &cookie, Some(&csrf))
            .status,
        409
    );
    let r = srv.post("/api/messages/Old/0/unread", &cookie, Some(&csrf));
    assert_eq!(r.json()["folder"], "INBOX");
    let n = r.json()["number"].as_str().unwrap().to_string();
    let r = srv.post(
        &format!("/api/messages/INBOX/{n}/move?to=Family"),
        &cookie,
        Some(&csrf),
    );
    assert_eq!(
        r.json(),
        serde_json::json!({"folder": "Family", "number": "0000"})
    );
    assert!(msg_file(&sb, "finance/2101/Family/msg0000.txt").exists());
    assert_eq!(
        srv.post("/api/messages/Family/0/move", &cookie, Some(&csrf))
            .status,
        400
    );
    assert_eq!(
        srv.post(
            "/api/messages/Family/0/move?to=Family",
            &cookie,
            Some(&csrf)
        )
        .status,
        409
    );
    assert_eq!(
        srv.post("/api/messages/Family/0/move?to=..", &cookie, Some(&csrf))
            .status,
        400
    );
    let r = srv.post("/api/messages/Family/0/delete", &cookie, Some(&csrf));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["deleted"], true);
    assert!(!msg_file(&sb, "finance/2101/Family/msg0000.txt").exists());
    assert_eq!(
        srv.post("/api/messages/Family/0/delete", &cookie, Some(&csrf))
            .status,
        404
    );
    assert_eq!(
        srv.post("/api/messages/INBOX/1/frobnicate", &cookie, Some(&csrf))
            .status,
        404
    );
    assert_eq!(
        srv.post("/api/messages/INBOX/1/read", "", Some(&csrf))
            .status,
        401
    );
    assert!(srv.log_has("deleted finance/2101/Family/msg0000"));
    let log = srv.log();
    for what in [
        "2101@finance from 127.0.0.1: moved finance/2101/INBOX/msg0000 -> finance/2101/Old/msg0000",
        "moved finance/2101/Old/msg0000 -> finance/2101/INBOX/msg",
        "-> finance/2101/Family/msg0000",
        "2101@finance from 127.0.0.1: deleted finance/2101/Family/msg0000",
    ] {
        assert!(log.contains(what), "no audit line {what:?} in:\n{log}");
    }
    assert!(
        log.lines().any(|l| l.starts_with("vmtool: audit 20")),
        "{log}"
    );
}

#[test]
fn serve_no_path_leaves_the_box() {
    let sb = Sandbox::team2();
    let srv = Server::start(&sb, &[]);
    let (cookie, csrf) = srv.session("2101@finance", "1111");
    // 2102 has an Urgent message; 2101 has none.
    assert!(msg_file(&sb, "finance/2102/Urgent/msg0000.txt").exists());
    for path in [
        "/api/messages/Urgent/0/audio",
        "/api/messages/..%2F2102%2FUrgent/0/audio",
        "/api/messages/..%2F..%2Ffinance%2F2102%2FUrgent/0/audio",
        "/api/messages/%2E%2E/0/audio",
        "/api/messages/Urgent%2F0/0/audio",
        "/api/messages/INBOX/..%2F..%2F2102%2FUrgent%2F0/audio",
        "/api/messages/2102@finance%2FUrgent/0/audio",
        "/api/messages/INBOX/-1/audio",
        "/api/messages/INBOX/99999999999999999999/audio",
        "/api/messages?folder=..%2F2102%2FUrgent",
        "/api/messages?folder=%2Fetc",
        "/api/messages?folder=INBOX%00",
    ] {
        let r = srv.get(path, &cookie);
        assert!(
            r.status == 400 || r.status == 404,
            "{path}: {} {}",
            r.status,
            r.text()
        );
    }
    for path in [
        "/api/messages/..%2F2102%2FUrgent/0/delete",
        "/api/messages/Urgent/0/delete",
        "/api/messages/INBOX/0/move?to=..%2F..%2F2102%2FINBOX",
        "/api/messages/INBOX/0/move?to=2102@finance%2FINBOX",
    ] {
        let r = srv.post(path, &cookie, Some(&csrf));
        assert!(r.status == 400 || r.status == 404, "{path}: {}", r.status);
    }
    assert!(msg_file(&sb, "finance/2102/Urgent/msg0000.txt").exists());
    assert!(msg_file(&sb, "finance/2101/INBOX/msg0000.txt").exists());
    srv.alive();
}

#[test]
fn serve_caller_names_stay_text() {
    let sb = Sandbox::team2();
    let txt = msg_file(&sb, "finance/2101/INBOX/msg0001.txt");
    let t = std::fs::read_to_string(&txt).unwrap();
    let evil = "<script>alert(1)</script><img src=x onerror=alert(2)>";
    std::fs::write(&txt, t.replace("\"Thomas Girard\"", &format!("\"{evil}\""))).unwrap();
    let srv = Server::start(&sb, &[]);
    let (cookie, _) = srv.session("2101@finance", "1111");
    let r = srv.get("/api/messages?folder=INBOX", &cookie);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    assert_eq!(r.json()[1]["callerid_name"], evil);
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    let csp = r.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
    assert!(!csp.contains("unsafe-inline"));
    // The page's script puts spool text in as text, never as HTML.
    let js = srv.get("/static/app.js", &cookie).text();
    assert!(js.contains("textContent"));
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
    ] {
        assert!(!js.contains(sink), "app.js uses {sink}");
    }
    // A typed mailbox comes back escaped in the login page.
    let r = srv.login("<script>x</script>", "1");
    assert!(!r.text().contains("<script>x"));
}

#[test]
fn serve_malformed_and_oversized_requests_get_4xx() {
    let sb = Sandbox::team2();
    let srv = Server::start(&sb, &[]);
    let big = "a".repeat(100_000);
    let r = answer(
        srv.agent
            .post(srv.url("/login"))
            .send_form([("mailbox", big.as_str()), ("pin", "1")]),
    );
    assert_eq!(r.status, 413);
    let r = srv.raw(
        b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 99999999\r\nConnection: close\r\n\r\nmailbox=1",
    );
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    let r = answer(
        srv.agent
            .post(srv.url("/login"))
            .send_form([("mailbox", "2101@finance")]),
    );
    assert!((400..500).contains(&r.status), "{}", r.status);
    let r = answer(
        srv.agent
            .post(srv.url("/login"))
            .send("mailbox=2101@finance&pin=1111"),
    );
    assert!(
        (400..500).contains(&r.status),
        "no form content type: {}",
        r.status
    );
    let r = srv.raw(b"\x16\x03\x01garbage\r\n\r\n");
    assert!(r.is_empty() || r.starts_with("HTTP/1.1 400"), "{r}");
    let r = srv
        .raw(b"GET /api/messages/%ff%fe/0/audio HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 4"), "{r}");
    let r = srv.raw(b"GET / HTTP/1.1\r\nHost: x\r\nCookie: vmtool_session=\xff\xfe\r\nConnection: close\r\n\r\n");
    assert!(
        r.starts_with("HTTP/1.1 200") || r.starts_with("HTTP/1.1 400"),
        "{r}"
    );
    assert_eq!(
        answer(srv.agent.get(srv.url("/nothing")).call()).status,
        404
    );
    assert_eq!(answer(srv.agent.get(srv.url("/login")).call()).status, 405);
    srv.alive();
}

#[test]
fn serve_refuses_plain_http_beyond_loopback() {
    let sb = Sandbox::team2();
    let r = sb.run(&["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--tls-cert"), "{}", r.stderr);
    let r = sb.run(&["serve", "--tls-cert", "/nonexistent"]);
    assert_eq!(r.code, 2, "--tls-cert needs --tls-key");
    let r = sb.run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        "/nonexistent/cert.pem",
        "--tls-key",
        "/nonexistent/key.pem",
    ]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("/nonexistent/cert.pem"), "{}", r.stderr);
    // Explicitly insecure: it starts.
    let mut cmd = sb.command();
    cmd.args(["serve", "--listen", "0.0.0.0:0", "--insecure-http"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        line.starts_with("vmtool: listening on http://0.0.0.0:"),
        "{line}"
    );
}

#[test]
fn serve_over_tls_sets_secure_cookies() {
    let sb = Sandbox::team2();
    let (cert, key) = (sb.path().join("cert.pem"), sb.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        // A server certificate, not a CA (rustls refuses a CA as the server's).
        .args(["-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is needed to make a test certificate (.ci/run installs it)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let mut srv = Server::start(
        &sb,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(srv.base.starts_with("https://127.0.0.1:"), "{}", srv.base);
    srv.agent = agent(Some(&std::fs::read(&cert).unwrap()));
    let r = srv.login("2101@finance", "1111");
    assert_eq!(r.status, 303);
    let set = r.header("set-cookie").unwrap();
    assert!(set.contains("; Secure"), "{set}");
    let (cookie, _) = srv.session("2101@finance", "1111");
    assert_eq!(
        srv.get("/api/messages?folder=Work", &cookie)
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Plain HTTP on the TLS port gets no answer a browser would take.
    let plain = srv.raw(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(!plain.starts_with("HTTP/1.1 200"), "{plain}");
}

#[test]
fn serve_events_announce_a_new_message() {
    let sb = Sandbox::team2();
    let srv = Server::start(&sb, &[]);
    assert_eq!(srv.get("/events", "").status, 401);
    let (cookie, _) = srv.session("2101@finance", "1111");
    let r = srv
        .agent
        .get(srv.url("/events"))
        .header("Cookie", &cookie)
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let reader = BufReader::new(r.into_body().into_reader());
        for line in reader.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Nothing changes: no event.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        rx.try_iter().all(|l| !l.starts_with("event:")),
        "an event without a change"
    );
    // A message arrives in the box from outside the server (another box forwards it).
    sb.run(&["--no-ami", "cp", "2102@finance/INBOX/0", "2101@finance"])
        .ok();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut saw = Vec::new();
    while Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            saw.push(l.clone());
            if let Some(data) = l.strip_prefix("data: ") {
                let v: serde_json::Value = serde_json::from_str(data).unwrap();
                let inbox = v
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|f| f["folder"] == "INBOX")
                    .unwrap();
                assert_eq!(inbox["count"], 3);
                assert!(saw.iter().any(|l| l == "event: change"), "{saw:?}");
                return;
            }
        }
    }
    panic!("no event within 10 s: {saw:?}");
}

/// An admins file with `name`, made the documented way: the password on
/// standard input of `serve --hash-password NAME`.
pub fn admins_file(sb: &Sandbox, name: &str, password: &str) -> std::path::PathBuf {
    let mut cmd = sb.command();
    cmd.args(["serve", "--hash-password", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8(out.stdout).unwrap();
    assert!(line.starts_with(&format!("{name}:$argon2id$")), "{line}");
    assert!(!line.contains(password), "the password itself is not kept");
    let path = sb.path().join("admins");
    std::fs::write(&path, format!("# vmtool serve admins\n{line}")).unwrap();
    path
}

#[test]
fn serve_admins_see_every_box_with_their_own_password() {
    let sb = Sandbox::team2();
    let admins = admins_file(&sb, "alice", "s3cret-admin");
    let srv = Server::start(&sb, &["--admins", admins.to_str().unwrap()]);
    // A box PIN is no admin password, and an admin password opens no box.
    assert_eq!(srv.login("alice", "1111").status, 401);
    assert_eq!(srv.login("2101@finance", "s3cret-admin").status, 401);
    assert_eq!(srv.login("bob", "s3cret-admin").status, 401);
    let (cookie, csrf) = srv.session("alice", "s3cret-admin");
    let s = srv.get("/api/session", &cookie).json();
    assert_eq!(s["admin"], "alice");
    assert!(s["mailbox"].is_null());
    assert!(srv.get("/", &cookie).text().contains("admin alice"));
    // The boxes overview: the objects of `boxes --format json`.
    let boxes = srv.get("/api/boxes", &cookie);
    assert_eq!(boxes.status, 200, "{}", boxes.text());
    let cli = sb.run(&["--format", "json", "boxes"]).ok().json_lines();
    assert_eq!(boxes.json().as_array().unwrap(), &cli);
    assert!(cli.len() >= 5);
    // Search by caller across boxes, newest first.
    let found = srv.get("/api/search?caller=AN", &cookie).json();
    let mut places: Vec<String> = found
        .as_array()
        .unwrap()
        .iter()
        .map(|m| format!("{}@{}/{}", m["box"], m["context"], m["folder"]).replace('"', ""))
        .collect();
    places.sort();
    assert_eq!(places, ["2102@finance/Urgent", "2301@direction/INBOX"]);
    assert_eq!(srv.get("/api/search?caller=", &cookie).status, 400);
    // Any box's messages, named with mailbox=.
    assert_eq!(srv.get("/api/messages?folder=INBOX", &cookie).status, 400);
    let m = srv.get("/api/messages?folder=INBOX&mailbox=2202@compta", &cookie);
    assert_eq!(m.json().as_array().unwrap().len(), 2, "{}", m.text());
    assert_eq!(
        srv.get("/api/messages?folder=INBOX&mailbox=9999@compta", &cookie)
            .status,
        404
    );
    assert_eq!(
        srv.get("/api/messages?folder=INBOX&mailbox=..%2Fx@compta", &cookie)
            .status,
        400
    );
    let a = srv.get("/api/messages/INBOX/0/audio?mailbox=2202@compta", &cookie);
    assert_eq!(a.status, 200);
    assert_eq!(&a.body[..4], b"RIFF");
    // Changes: the same CSRF rule, the audit line names the admin.
    assert_eq!(
        srv.post(
            "/api/messages/Urgent/0/read?mailbox=2102@finance",
            &cookie,
            None
        )
        .status,
        403
    );
    let r = srv.post(
        "/api/messages/Urgent/0/read?mailbox=2102@finance",
        &cookie,
        Some(&csrf),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(msg_file(&sb, "finance/2102/Old/msg0000.txt").exists());
    assert!(
        srv.log_has("admin alice from 127.0.0.1: moved finance/2102/Urgent/msg0000 -> finance/2102/Old/msg0000"),
        "{}",
        srv.log()
    );
    let log = srv.log();
    assert!(!log.contains("s3cret-admin"), "{log}");
}

#[test]
fn serve_box_owners_reach_no_admin_route_and_no_other_box() {
    let sb = Sandbox::team2();
    let admins = admins_file(&sb, "alice", "s3cret-admin");
    let srv = Server::start(&sb, &["--admins", admins.to_str().unwrap()]);
    let (cookie, csrf) = srv.session("2101@finance", "1111");
    assert_eq!(srv.get("/api/boxes", &cookie).status, 403);
    assert_eq!(srv.get("/api/search?caller=an", &cookie).status, 403);
    assert_eq!(srv.get("/api/boxes", "").status, 401);
    for path in [
        "/api/messages?folder=INBOX&mailbox=2102@finance",
        "/api/folders?mailbox=2102@finance",
        "/api/greetings?mailbox=2102@finance",
        "/api/messages/Urgent/0/audio?mailbox=2102@finance",
        "/api/messages/Urgent/0/waveform?mailbox=2102@finance",
        "/api/messages/Urgent/0/download?mailbox=2102@finance",
        "/events?mailbox=2102@finance",
    ] {
        assert_eq!(srv.get(path, &cookie).status, 403, "{path}");
    }
    // Naming their own box is fine.
    assert_eq!(
        srv.get("/api/messages?folder=INBOX&mailbox=2101@finance", &cookie)
            .status,
        200
    );
    for path in [
        "/api/messages/Urgent/0/read?mailbox=2102@finance",
        "/api/messages/Urgent/0/delete?mailbox=2102@finance",
        "/api/greetings/unavail/delete?mailbox=2102@finance",
    ] {
        assert_eq!(srv.post(path, &cookie, Some(&csrf)).status, 403, "{path}");
    }
    assert!(msg_file(&sb, "finance/2102/Urgent/msg0000.txt").exists());
}

#[test]
fn serve_admin_logins_are_throttled_and_the_file_checked() {
    let sb = Sandbox::team2();
    let admins = admins_file(&sb, "alice", "s3cret-admin");
    let srv = Server::start(&sb, &["--admins", admins.to_str().unwrap()]);
    for _ in 0..5 {
        assert_eq!(srv.login("alice", "guess").status, 401);
    }
    // Locked now, even with the right password.
    assert_eq!(srv.login("alice", "s3cret-admin").status, 429);
    drop(srv);
    // A file that is not NAME:HASH is refused at start, by line.
    let bad = sb.path().join("bad-admins");
    std::fs::write(&bad, "# admins\nalice:1111\n").unwrap();
    let r = sb.run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admins",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("line 2") && r.stderr.contains("--hash-password"),
        "{}",
        r.stderr
    );
    // A short password is refused, not hashed.
    let mut cmd = sb.command();
    cmd.args(["serve", "--hash-password", "bob"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    writeln!(child.stdin.take().unwrap(), "short").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

#[test]
fn serve_forwards_downloads_and_draws_waveforms() {
    let sb = Sandbox::team2();
    let srv = Server::start(&sb, &[]);
    let (cookie, csrf) = srv.session("2101@finance", "1111");
    assert_eq!(
        srv.post(
            "/api/messages/INBOX/0/forward?to=2102@finance",
            &cookie,
            None
        )
        .status,
        403
    );
    let r = srv.post(
        "/api/messages/INBOX/0/forward?to=2102@finance",
        &cookie,
        Some(&csrf),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        serde_json::json!({"mailbox": "2102@finance", "folder": "INBOX", "number": "0001"})
    );
    // A copy: the original stays, the other box has every format.
    assert!(msg_file(&sb, "finance/2101/INBOX/msg0000.txt").exists());
    for ext in ["txt", "wav", "WAV", "gsm"] {
        assert!(msg_file(&sb, &format!("finance/2102/INBOX/msg0001.{ext}")).exists());
    }
    assert!(srv.log_has(
        "2101@finance from 127.0.0.1: forwarded finance/2101/INBOX/msg0000 -> finance/2102/INBOX/msg0001"
    ));
    for (to, status) in [("9999@finance", 404), ("..%2F2102@finance", 404), ("", 404)] {
        let r = srv.post(
            &format!("/api/messages/INBOX/0/forward?to={to}"),
            &cookie,
            Some(&csrf),
        );
        assert_eq!(r.status, status, "{to}: {}", r.text());
    }
    assert_eq!(
        srv.post("/api/messages/INBOX/0/forward", &cookie, Some(&csrf))
            .status,
        400
    );
    // compta/2201 has maxmsg=3 and 3 messages: full, as Asterisk would refuse.
    let r = srv.post(
        "/api/messages/INBOX/0/forward?to=2201@compta",
        &cookie,
        Some(&csrf),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    // Download: the same WAV as the player's, as a named attachment.
    let d = srv.get("/api/messages/INBOX/1/download", &cookie);
    assert_eq!(d.status, 200);
    assert_eq!(d.header("content-type"), Some("audio/wav"));
    assert_eq!(
        d.header("content-disposition"),
        Some("attachment; filename=\"finance-2101-INBOX-msg0001.wav\"")
    );
    assert_eq!(d.body, srv.get("/api/messages/INBOX/1/audio", &cookie).body);
    // Waveform: an SVG of 100 bars drawn from the decoded samples.
    let w = srv.get("/api/messages/INBOX/1/waveform", &cookie);
    assert_eq!(w.status, 200);
    assert_eq!(w.header("content-type"), Some("image/svg+xml"));
    let svg = w.text();
    assert!(
        svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
        "{svg}"
    );
    assert_eq!(svg.matches('M').count(), 100, "{svg}");
    // Bars of different heights: it follows the recording.
    let heights: std::collections::BTreeSet<&str> = svg
        .split('v')
        .skip(1)
        .map(|s| {
            s.split('M')
                .next()
                .unwrap()
                .trim_end_matches(|c: char| !c.is_ascii_digit() && c != '.')
        })
        .collect();
    assert!(heights.len() > 5, "{svg}");
    let other = srv.get("/api/messages/INBOX/0/waveform", &cookie);
    assert_ne!(other.body, w.body, "another recording, another picture");
    assert_eq!(
        srv.get("/api/messages/INBOX/7/waveform", &cookie).status,
        404
    );
    assert_eq!(srv.get("/api/messages/INBOX/1/waveform", "").status, 401);
}

/// A WAV file: `secs` of a 440 Hz tone, 16-bit mono at `rate`.
fn tone_wav(rate: u32, secs: f64) -> Vec<u8> {
    let n = (f64::from(rate) * secs) as u32;
    let mut v = Vec::new();
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + 2 * n).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&(2 * rate).to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&16u16.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&(2 * n).to_le_bytes());
    for i in 0..n {
        let t = f64::from(i) / f64::from(rate);
        let s = (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16;
        v.extend_from_slice(&s.to_le_bytes());
    }
    v
}

#[test]
fn serve_greetings_upload_listen_remove_with_a_size_limit() {
    let sb = Sandbox::team2();
    let srv = Server::start(&sb, &[]);
    let (cookie, csrf) = srv.session("2101@finance", "1111");
    let list = srv.get("/api/greetings", &cookie).json();
    let kinds: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["unavail", "busy", "name", "temp"]);
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .all(|g| g["exists"] == false));
    let upload = |path: &str, csrf: Option<&str>, body: &[u8]| {
        let mut req = srv
            .agent
            .post(srv.url(path))
            .header("Cookie", &cookie)
            .header("Content-Type", "application/octet-stream");
        if let Some(c) = csrf {
            req = req.header("X-CSRF-Token", c);
        }
        answer(req.send(body))
    };
    let wav = tone_wav(16000, 2.0);
    assert_eq!(
        upload("/api/greetings/unavail?ext=wav", None, &wav).status,
        403
    );
    let unavail = |ext: &str| msg_file(&sb, &format!("finance/2101/unavail.{ext}"));
    assert!(!unavail("wav").exists());
    let r = upload("/api/greetings/unavail?ext=wav", Some(&csrf), &wav);
    assert_eq!(r.status, 200, "{}", r.text());
    // Every format= of voicemail.conf, as the greeting store writes them.
    for ext in ["WAV", "gsm", "wav"] {
        assert!(unavail(ext).exists(), "unavail.{ext}");
    }
    let ls = sb.run(&["greeting", "ls", "2101@finance"]).ok();
    assert!(ls.stdout.contains("unavail"), "{}", ls.stdout);
    let g = srv.get("/api/greetings", &cookie).json();
    assert_eq!(g[0]["exists"], true);
    let d = g[0]["duration"].as_f64().unwrap();
    assert!((d - 2.0).abs() < 0.1, "{d}");
    let a = srv.get("/api/greetings/unavail/audio", &cookie);
    assert_eq!(a.status, 200);
    assert_eq!(&a.body[..4], b"RIFF");
    assert!(srv.log_has("2101@finance from 127.0.0.1: set the unavail greeting of 2101@finance"));
    // Not audio, an unknown type, an unknown greeting: 4xx, nothing changed.
    let before = std::fs::read(unavail("wav")).unwrap();
    assert_eq!(
        upload("/api/greetings/unavail?ext=wav", Some(&csrf), b"not a wav").status,
        400
    );
    assert_eq!(
        upload("/api/greetings/unavail?ext=exe", Some(&csrf), &wav).status,
        415
    );
    assert_eq!(
        upload("/api/greetings/holiday?ext=wav", Some(&csrf), &wav).status,
        404
    );
    // Over the limit (8 MiB): refused before it is read, by length or as chunks.
    let r = srv.raw(format!(
        "POST /api/greetings/busy?ext=wav HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\nX-CSRF-Token: {csrf}\r\nContent-Length: {}\r\nConnection: close\r\n\r\nRIFF",
        9 << 20
    ).as_bytes());
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    let mut s = TcpStream::connect(&srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST /api/greetings/busy?ext=wav HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\nX-CSRF-Token: {csrf}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b'a'; 1 << 20];
    for _ in 0..9 {
        if s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .and_then(|()| s.write_all(&chunk))
            .and_then(|()| s.write_all(b"\r\n"))
            .is_err()
        {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    assert!(!msg_file(&sb, "finance/2101/busy.wav").exists());
    assert_eq!(std::fs::read(unavail("wav")).unwrap(), before);
    // Removed through the store.
    let r = srv.post("/api/greetings/unavail/delete", &cookie, Some(&csrf));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!unavail("wav").exists() && !unavail("WAV").exists());
    assert_eq!(
        srv.post("/api/greetings/unavail/delete", &cookie, Some(&csrf))
            .status,
        404
    );
    srv.alive();
}
