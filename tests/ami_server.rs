//! A small AMI server for tests that answers the way Asterisk's `main/manager.c`
//! does (std only, loopback, ephemeral port, one thread per session).
//!
//! What it reproduces:
//! * banner `Asterisk Call Manager/13.0.0` (`AMI_VERSION` of current Asterisk);
//! * requests: lines ended by CRLF (a bare LF is accepted too), a message ends
//!   at an empty line; header lookup is case-insensitive on the name, first
//!   match wins, blanks after `:` are skipped (`astman_get_header()`); a line
//!   over 1024 bytes makes the answer `Failed to parse message: line too long`;
//!   a message without `Action` gets `Missing action in request`;
//! * every response echoes the request's `ActionID` when it has one;
//! * before login only `Login`, `Logoff`, `Challenge` are allowed, anything else
//!   gets `Permission denied`;
//! * `Login`: user name case-insensitive, secret compared exactly; failure →
//!   `Response: Error` / `Message: Authentication failed` and the connection is
//!   closed (Asterisk also waits a second first: see [`FakeAmi::set_auth_delay`],
//!   0 by default); success → `Authentication accepted`, then the unsolicited
//!   `Event: FullyBooted`, unless the login's `Events:` mask excludes `system`
//!   (`Events: off`);
//! * write classes per user: `VoicemailRefresh` needs `user`, `CoreShowChannels`
//!   `system` or `reporting`; otherwise `Permission denied`. The `write` string
//!   is split at `,`, names are case-sensitive and untrimmed, `all` grants
//!   everything (Asterisk's `get_perm()`, without its prefix quirk);
//! * `VoicemailRefresh` → `Response: Success` / `Message: Refresh sent`, the
//!   `(Context, Mailbox)` pair is logged; in failure mode it answers `Success`
//!   with a failure text carrying an embedded LF, the way `VoicemailMove`
//!   answers `Message move failed\n` (so an empty line follows the response);
//! * `CoreShowChannels` → `Success` with `EventList: start` and
//!   `Message: Channels will follow`, one `Event: CoreShowChannel` per channel
//!   (`Channel`, …, `Application`, `ApplicationData`, `Duration`, `BridgeId`),
//!   then `Event: CoreShowChannelsComplete` with `EventList: Complete` and
//!   `ListItems`;
//! * `Ping` → `Ping: Pong`; `Logoff` → `Response: Goodbye` /
//!   `Message: Thanks for all the fish.` and close; anything else →
//!   `Invalid/unknown command: <action>. Use Action: ListCommands to show available commands.`
//!
//! Extra behaviours for client tests: "noise" (unsolicited events, a stray
//! empty line and a response with someone else's `ActionID` before every
//! answer), and [`Mode`]s for servers that never answer, stop answering after
//! login, flood a 10 MB line, or are not AMI at all.

#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// What Asterisk prints on connect (`AMI_VERSION` in `include/asterisk/manager.h`).
pub const BANNER: &str = "Asterisk Call Manager/13.0.0";

/// How the server behaves on new connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Like Asterisk.
    Normal,
    /// Accepts and reads, never writes a byte (not even the banner).
    Silent,
    /// Banner and login as usual, then reads requests and never answers.
    MuteAfterLogin,
    /// Banner, then a 10 MB line without a line end.
    Flood,
    /// Greets like an SSH server, then stays silent.
    NotAmi,
}

/// One channel for `CoreShowChannels`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub name: String,
    pub application: String,
    pub data: String,
}

struct User {
    name: String,
    secret: String,
    write: String,
}

struct State {
    users: Vec<User>,
    mode: Mode,
    log: Vec<(String, String)>,
    requests: Vec<Vec<(String, String)>>,
    channels: Vec<Channel>,
    refresh_reply: Option<String>,
    noise: bool,
    auth_delay: Duration,
    connections: usize,
}

/// A running fake AMI server; stops (and closes its sessions) when dropped.
pub struct FakeAmi {
    pub port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

const MAX_REQUEST_LINE: usize = 1024;
const MAX_HEADERS: usize = 128;

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl FakeAmi {
    /// Starts a server with users `(name, secret, write classes)`, e.g.
    /// `("vmtool", "s3cret", "system,call,user")`.
    pub fn start(users: &[(&str, &str, &str)]) -> FakeAmi {
        FakeAmi::start_mode(users, Mode::Normal)
    }

    /// Starts a server in `mode`.
    pub fn start_mode(users: &[(&str, &str, &str)], mode: Mode) -> FakeAmi {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        let state = Arc::new(Mutex::new(State {
            users: users
                .iter()
                .map(|(n, s, w)| User {
                    name: n.to_string(),
                    secret: s.to_string(),
                    write: w.to_string(),
                })
                .collect(),
            mode,
            log: Vec::new(),
            requests: Vec::new(),
            channels: Vec::new(),
            refresh_reply: None,
            noise: false,
            auth_delay: Duration::ZERO,
            connections: 0,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let state = Arc::clone(&state);
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    lock(&state).connections += 1;
                    let state = Arc::clone(&state);
                    let stop = Arc::clone(&stop);
                    thread::spawn(move || Session::new(conn, state, stop).run());
                }
            })
        };
        FakeAmi {
            port,
            state,
            stop,
            accept: Some(accept),
        }
    }

    /// The listening port (same as the `port` field).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `(Context, Mailbox)` of every `VoicemailRefresh` received, in order.
    pub fn log(&self) -> Vec<(String, String)> {
        lock(&self.state).log.clone()
    }

    /// Every request received (headers as sent), in order.
    pub fn requests(&self) -> Vec<Vec<(String, String)>> {
        lock(&self.state).requests.clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        lock(&self.state).connections
    }

    /// Channels for `CoreShowChannels`: `(channel name, application)`.
    pub fn set_channels(&self, channels: &[(&str, &str)]) {
        lock(&self.state).channels = channels
            .iter()
            .map(|(n, a)| Channel {
                name: n.to_string(),
                application: a.to_string(),
                data: String::new(),
            })
            .collect();
    }

    /// Failure mode: `VoicemailRefresh` answers `Response: Success` with
    /// `Message: Refresh failed` + embedded LF instead of `Refresh sent`.
    pub fn set_refresh_failure(&self, fail: bool) {
        self.set_refresh_reply(if fail { Some("Refresh failed\n") } else { None });
    }

    /// The `Message:` text of `VoicemailRefresh` answers (`None`: `Refresh sent`).
    pub fn set_refresh_reply(&self, message: Option<&str>) {
        lock(&self.state).refresh_reply = message.map(str::to_string);
    }

    /// Unsolicited events, a stray empty line and a response with a foreign
    /// `ActionID` before every answer after login.
    pub fn set_noise(&self, noise: bool) {
        lock(&self.state).noise = noise;
    }

    /// Behaviour of connections accepted from now on.
    pub fn set_mode(&self, mode: Mode) {
        lock(&self.state).mode = mode;
    }

    /// Delay before `Authentication failed` (Asterisk sleeps one second).
    pub fn set_auth_delay(&self, delay: Duration) {
        lock(&self.state).auth_delay = delay;
    }
}

impl Drop for FakeAmi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(
            &format!("127.0.0.1:{}", self.port).parse().expect("addr"),
            Duration::from_secs(1),
        );
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

/// `ast_true()` / `ast_false()`.
fn is_true(v: &str) -> bool {
    ["yes", "true", "y", "t", "1", "on"]
        .iter()
        .any(|t| v.eq_ignore_ascii_case(t))
}
fn is_false(v: &str) -> bool {
    ["no", "false", "n", "f", "0", "off"]
        .iter()
        .any(|t| v.eq_ignore_ascii_case(t))
}

fn grants(write: &str, classes: &[&str]) -> bool {
    write
        .split(',')
        .any(|tok| tok == "all" || classes.contains(&tok))
}

enum Input {
    Line(String),
    TooLong,
    Eof,
}

struct Session {
    stream: TcpStream,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    buf: Vec<u8>,
    user: Option<String>,
    write: String,
    muted: bool,
}

impl Session {
    fn new(stream: TcpStream, state: Arc<Mutex<State>>, stop: Arc<AtomicBool>) -> Session {
        let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
        let _ = stream.set_nodelay(true);
        Session {
            stream,
            state,
            stop,
            buf: Vec::new(),
            user: None,
            write: String::new(),
            muted: false,
        }
    }

    fn send(&mut self, text: &str) -> bool {
        self.stream.write_all(text.as_bytes()).is_ok()
    }

    /// Reads and discards until the peer closes or the server stops.
    fn drain(&mut self) {
        let mut chunk = [0u8; 4096];
        while !self.stop.load(Ordering::SeqCst) {
            match self.stream.read(&mut chunk) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(_) => return,
            }
        }
    }

    fn run(mut self) {
        let mode = lock(&self.state).mode;
        match mode {
            Mode::Silent => return self.drain(),
            Mode::NotAmi => {
                self.send("SSH-2.0-OpenSSH_9.6\r\n");
                return self.drain();
            }
            Mode::Flood => {
                if self.send(&format!("{BANNER}\r\n")) {
                    let chunk = vec![b'A'; 64 * 1024];
                    for _ in 0..160 {
                        if self.stream.write_all(&chunk).is_err() {
                            break;
                        }
                    }
                }
                return self.drain();
            }
            Mode::Normal | Mode::MuteAfterLogin => {}
        }
        if !self.send(&format!("{BANNER}\r\n")) {
            return;
        }
        while let Some((headers, too_long, lost)) = self.read_request() {
            lock(&self.state).requests.push(headers.clone());
            let keep = if lost {
                self.error(&headers, "Too many lines in message or allocation failure")
            } else if too_long {
                self.error(&headers, "Failed to parse message: line too long")
            } else {
                self.process(&headers)
            };
            if !keep {
                break;
            }
            if mode == Mode::MuteAfterLogin && self.user.is_some() {
                self.muted = true;
            }
        }
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    fn read_input(&mut self) -> Input {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=i).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.len() > MAX_REQUEST_LINE {
                    return Input::TooLong;
                }
                return Input::Line(String::from_utf8_lossy(&line).into_owned());
            }
            if self.buf.len() > MAX_REQUEST_LINE {
                // Like get_input(): drop the buffer but its last byte (it may be
                // the CR of a CRLF) and mark the message; the rest of the line
                // is read as a line of its own.
                let last = self.buf.pop();
                self.buf.clear();
                self.buf.extend(last);
                return Input::TooLong;
            }
            if !self.read_more() {
                return Input::Eof;
            }
        }
    }

    /// False at end of stream, on error or when the server stops.
    fn read_more(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return false;
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return true;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(_) => return false,
            }
        }
    }

    /// Headers of one request, whether a line was too long, whether lines were lost.
    #[allow(clippy::type_complexity)]
    fn read_request(&mut self) -> Option<(Vec<(String, String)>, bool, bool)> {
        let mut headers = Vec::new();
        let mut too_long = false;
        let mut lost = false;
        loop {
            match self.read_input() {
                Input::Eof => return None,
                Input::TooLong => too_long = true,
                Input::Line(l) if l.is_empty() => return Some((headers, too_long, lost)),
                Input::Line(l) => {
                    if headers.len() >= MAX_HEADERS {
                        lost = true;
                        continue;
                    }
                    let (k, v) = match l.split_once(':') {
                        Some((k, v)) => (k.to_string(), v.to_string()),
                        None => (l, String::new()),
                    };
                    headers.push((k, v));
                }
            }
        }
    }

    /// False: close the session.
    fn process(&mut self, h: &[(String, String)]) -> bool {
        let action = header_skip_empty(h, "Action");
        if action.is_empty() {
            return self.error(h, "Missing action in request");
        }
        let lower = action.to_ascii_lowercase();
        if self.user.is_none() && !matches!(lower.as_str(), "login" | "logoff" | "challenge") {
            return self.error(h, "Permission denied");
        }
        if self.muted {
            return true;
        }
        if self.user.is_some() && lock(&self.state).noise {
            let id = header(h, "ActionID");
            let foreign = if id.is_empty() {
                "someone-else".to_string()
            } else {
                format!("{id}-not")
            };
            let noise = format!(
                "Event: PeerStatus\r\nPrivilege: system,all\r\nChannelType: PJSIP\r\nPeer: PJSIP/100\r\nPeerStatus: Reachable\r\n\r\n\
                 Event: OriginateResponse\r\nPrivilege: call,all\r\nActionID: {foreign}\r\nResponse: Success\r\nChannel: PJSIP/100-00000001\r\n\r\n\
                 \r\n\
                 Response: Success\r\nActionID: {foreign}\r\nMessage: not yours\r\n\r\n"
            );
            if !self.send(&noise) {
                return false;
            }
        }
        match lower.as_str() {
            "login" => self.login(h),
            "logoff" => {
                self.respond(h, "Goodbye", Some("Thanks for all the fish."), None);
                false
            }
            "challenge" => {
                if header(h, "AuthType").eq_ignore_ascii_case("MD5") {
                    let id = id_line(h);
                    self.send(&format!("Response: Success\r\n{id}Challenge: 840237129\r\n\r\n"))
                } else {
                    self.error(h, "Must specify AuthType")
                }
            }
            "ping" => {
                let id = id_line(h);
                self.send(&format!(
                    "Response: Success\r\n{id}Ping: Pong\r\nTimestamp: 1700000000.000000\r\n\r\n"
                ))
            }
            "voicemailrefresh" => {
                if !grants(&self.write, &["user"]) {
                    return self.error(h, "Permission denied");
                }
                let reply = {
                    let mut st = lock(&self.state);
                    st.log
                        .push((header(h, "Context").to_string(), header(h, "Mailbox").to_string()));
                    st.refresh_reply.clone()
                };
                let msg = reply.unwrap_or_else(|| "Refresh sent".to_string());
                self.respond(h, "Success", Some(&msg), None)
            }
            "coreshowchannels" => {
                if !grants(&self.write, &["system", "reporting"]) {
                    return self.error(h, "Permission denied");
                }
                self.core_show_channels(h)
            }
            _ => self.error(
                h,
                &format!("Invalid/unknown command: {action}. Use Action: ListCommands to show available commands."),
            ),
        }
    }

    fn login(&mut self, h: &[(String, String)]) -> bool {
        if self.user.is_some() {
            return self.respond(h, "Success", Some("Already authenticated"), None);
        }
        let username = header(h, "Username");
        let secret = header(h, "Secret");
        let found = if username.is_empty() || !header(h, "AuthType").is_empty() {
            None
        } else {
            let st = lock(&self.state);
            st.users
                .iter()
                .find(|u| u.name.eq_ignore_ascii_case(username) && u.secret == secret)
                .map(|u| (u.name.clone(), u.write.clone()))
        };
        let Some((name, write)) = found else {
            let delay = lock(&self.state).auth_delay;
            thread::sleep(delay);
            self.error(h, "Authentication failed");
            return false;
        };
        self.user = Some(name);
        self.write = write;
        if !self.respond(h, "Success", Some("Authentication accepted"), None) {
            return false;
        }
        let events = header(h, "Events");
        let system_events = events.is_empty()
            || is_true(events)
            || (!is_false(events)
                && !events.bytes().all(|b| b.is_ascii_digit())
                && events.split(',').any(|t| t == "system" || t == "all"));
        if system_events {
            return self.send(
                "Event: FullyBooted\r\nPrivilege: system,all\r\nUptime: 1234\r\nLastReload: 1234\r\nStatus: Fully Booted\r\n\r\n",
            );
        }
        true
    }

    fn core_show_channels(&mut self, h: &[(String, String)]) -> bool {
        let id = id_line(h);
        let channels = lock(&self.state).channels.clone();
        let mut out = format!(
            "Response: Success\r\n{id}EventList: start\r\nMessage: Channels will follow\r\n\r\n"
        );
        for (i, c) in channels.iter().enumerate() {
            out.push_str(&format!(
                "Event: CoreShowChannel\r\n{id}Channel: {name}\r\nChannelState: 6\r\nChannelStateDesc: Up\r\n\
                 CallerIDNum: 100\r\nCallerIDName: Alice\r\nConnectedLineNum: <unknown>\r\nConnectedLineName: <unknown>\r\n\
                 Language: en\r\nAccountCode: \r\nContext: default\r\nExten: *98\r\nPriority: 2\r\n\
                 Uniqueid: 1700000000.{i}\r\nLinkedid: 1700000000.{i}\r\nApplication: {app}\r\nApplicationData: {data}\r\n\
                 Duration: 00:00:{i:02}\r\nBridgeId: \r\n\r\n",
                name = c.name,
                app = c.application,
                data = c.data,
            ));
        }
        out.push_str(&format!(
            "Event: CoreShowChannelsComplete\r\n{id}EventList: Complete\r\nListItems: {}\r\n\r\n",
            channels.len()
        ));
        self.send(&out)
    }

    /// `astman_send_response_full()`.
    fn respond(
        &mut self,
        h: &[(String, String)],
        resp: &str,
        msg: Option<&str>,
        listflag: Option<&str>,
    ) -> bool {
        let mut out = format!("Response: {resp}\r\n{}", id_line(h));
        if let Some(l) = listflag {
            out.push_str(&format!("EventList: {l}\r\n"));
        }
        if let Some(m) = msg {
            out.push_str(&format!("Message: {m}\r\n"));
        }
        out.push_str("\r\n");
        self.send(&out)
    }

    fn error(&mut self, h: &[(String, String)], msg: &str) -> bool {
        self.respond(h, "Error", Some(msg), None)
    }
}

/// `astman_get_header()`: first header named `key` (case-insensitive),
/// blanks after `:` skipped; "" when absent.
fn header<'a>(h: &'a [(String, String)], key: &str) -> &'a str {
    h.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map_or("", |(_, v)| v.trim_start_matches(|c: char| (c as u32) < 33))
}

/// `GET_HEADER_SKIP_EMPTY`.
fn header_skip_empty<'a>(h: &'a [(String, String)], key: &str) -> &'a str {
    h.iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.trim_start_matches(|c: char| (c as u32) < 33))
        .find(|v| !v.is_empty())
        .unwrap_or("")
}

fn id_line(h: &[(String, String)]) -> String {
    let id = header(h, "ActionID");
    if id.is_empty() {
        String::new()
    } else {
        format!("ActionID: {id}\r\n")
    }
}

/// Waits until `f` is true or `timeout` passes (for asserting on the log).
pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    f()
}
