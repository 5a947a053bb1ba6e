//! Telling a running Asterisk about spool changes over AMI (the Asterisk
//! Manager Interface, `main/manager.c`).
//!
//! Asterisk does not notice files that vmtool changes (spec 8.2/8.3): after a
//! change, vmtool sends `VoicemailRefresh` (`apps/app_voicemail.c`, class
//! `user`, since Asterisk 12) for each affected mailbox, so phones'
//! message-waiting lamps follow. Before destructive batch work it can ask
//! `CoreShowChannels` (class `system` or `reporting`) whether a caller is
//! inside `VoiceMailMain` (spec 6.7).
//!
//! The protocol as Asterisk speaks it: on connect the server sends one line
//! `Asterisk Call Manager/<AMI version>`; every message afterwards is a block of
//! `Key: value` lines ended by CRLF and closed by an empty line. A response
//! carries `Response:` (`Success`, `Error`, `Goodbye`) and echoes the request's
//! `ActionID`; events carry `Event:` and arrive in between at any time. Some
//! actions answer `Response: Success` and put the real outcome into `Message:`
//! (move/remove do, with an embedded line feed that makes an empty message
//! follow), so callers must read the `Message:` text.
//!
//! Robustness: every connect, read and write has a deadline; lines, messages
//! and lists have size limits, so a peer that is not Asterisk (or sends a 10 MB
//! line) gets a clear error instead of a hang or an allocation storm; nothing
//! here panics on what the peer sends. The secret never appears in `Debug` or
//! `Display` output nor in any error.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::conf::{self, ConfError};

/// Asterisk's `DEFAULT_MANAGER_PORT`.
pub const DEFAULT_PORT: u16 = 5038;
/// Longest line accepted from the server (Asterisk's own lines are far shorter).
pub const MAX_LINE: usize = 64 * 1024;
/// Most bytes in one message from the server.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Most `Key: value` lines in one message from the server.
pub const MAX_FIELDS: usize = 1024;
/// Most items collected for one list action.
pub const MAX_LIST_ITEMS: usize = 100_000;
/// Most bytes collected for one list action.
pub const MAX_LIST_BYTES: usize = 64 * 1024 * 1024;
/// Asterisk reads request lines into `char inbuf[1025]`; a longer line makes it
/// answer "Failed to parse message: line too long". CRLF included.
const MAX_REQUEST_LINE: usize = 1024;
/// `AST_MAX_MANHEADERS`: further request lines are dropped by Asterisk.
const MAX_REQUEST_HEADERS: usize = 128;
/// How much server text goes into an error message.
const MAX_QUOTED: usize = 200;

/// Where and as whom to reach AMI.
#[derive(Clone, PartialEq, Eq)]
pub struct AmiTarget {
    /// Host name or IP address; an IPv6 address without brackets.
    pub host: String,
    pub port: u16,
    /// Manager user: a `[section]` of manager.conf (case-insensitive there).
    pub username: String,
    pub secret: String,
}

impl fmt::Debug for AmiTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmiTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("secret", &if self.secret.is_empty() { "" } else { "***" })
            .finish()
    }
}

/// `user@host:port` (never the secret).
impl fmt::Display for AmiTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.username.is_empty() {
            write!(f, "{}@", self.username)?;
        }
        f.write_str(&self.addr())
    }
}

impl AmiTarget {
    /// Parses `[user[:secret]@]host[:port]`, the form of `--ami` and
    /// `$VMTOOL_AMI`.
    ///
    /// * The user ends at the first `:`; the secret runs to the **last** `@`, so
    ///   a secret may contain `:` and `@` (`admin:p@ss:w@pbx` is user `admin`,
    ///   secret `p@ss:w`, host `pbx`); a user name cannot contain `:`.
    /// * IPv6 addresses go in brackets: `[::1]:5038`, `[fe80::1%eth0]`; a bare
    ///   IPv6 address without port (`::1`) is accepted too.
    /// * Port: decimal 1–65535, default [`DEFAULT_PORT`].
    /// * A missing user or secret is left empty; [`AmiTarget::resolve`] fills
    ///   them from manager.conf.
    ///
    /// Errors never quote the secret.
    pub fn parse(spec: &str) -> Result<AmiTarget, AmiError> {
        let p = parse_spec(spec)?;
        Ok(AmiTarget {
            host: p.host,
            port: p.port.unwrap_or(DEFAULT_PORT),
            username: p.username.unwrap_or_default(),
            secret: p.secret.unwrap_or_default(),
        })
    }

    /// The target for `--ami` / `$VMTOOL_AMI` (`spec`) and manager.conf
    /// (`manager_conf`), as vmtool uses them together:
    ///
    /// * no spec: [`AmiTarget::from_manager_conf`];
    /// * spec without user: user and secret of the user manager.conf would
    ///   pick ([`AmiTarget::from_manager_conf`]'s rules);
    /// * spec with a user but no secret: the `secret` of that user's section;
    /// * host and port always come from the spec when one is given.
    ///
    /// manager.conf is read only when the spec lacks something.
    /// `Ok(None)`: no spec, and manager.conf names no usable AMI.
    pub fn resolve(
        spec: Option<&str>,
        manager_conf: Option<&Path>,
    ) -> Result<Option<AmiTarget>, AmiError> {
        let Some(spec) = spec else {
            return match manager_conf {
                Some(path) => AmiTarget::from_manager_conf(path),
                None => Ok(None),
            };
        };
        let p = parse_spec(spec)?;
        let mut target = AmiTarget {
            host: p.host,
            port: p.port.unwrap_or(DEFAULT_PORT),
            username: p.username.clone().unwrap_or_default(),
            secret: p.secret.clone().unwrap_or_default(),
        };
        if p.username.is_some() && p.secret.is_some() {
            return Ok(Some(target));
        }
        let Some(path) = manager_conf else {
            return Err(AmiError::Config(format!(
                "the AMI address {target} has no {}; give it as user:secret@host[:port] or point vmtool at manager.conf",
                if p.username.is_none() { "user" } else { "secret" }
            )));
        };
        let mc = ManagerConf::load(path)?;
        match &p.username {
            None => {
                let Some(user) = mc.user_for(&["user"]) else {
                    return Err(AmiError::Config(format!(
                        "no AMI user given for {target}, and {} has no user with a secret and write=user; give user:secret@ in the AMI address or add such a user",
                        path.display()
                    )));
                };
                target.username = user.name.clone();
                target.secret = user.secret.clone().unwrap_or_default();
            }
            Some(name) => {
                let Some(secret) = mc.user(name).and_then(|u| u.secret.clone()) else {
                    return Err(AmiError::Config(format!(
                        "no secret given for AMI user '{name}', and {} has no [{name}] section with a secret; give user:secret@ in the AMI address",
                        path.display()
                    )));
                };
                target.secret = secret;
            }
        }
        Ok(Some(target))
    }

    /// The AMI of the Asterisk configured by `path` (manager.conf, read with
    /// Asterisk's dialect, `#include`s and templates included), as
    /// `load_config()` in `main/manager.c` sees it:
    ///
    /// * `[general] enabled` must be true (`ast_true()`: yes/true/y/t/1/on);
    /// * `port` (default 5038; Asterisk requires 1024–65535 and leaves the port
    ///   undefined otherwise, so an invalid port is an error here);
    /// * `bindaddr` (absent, invalid, `0.0.0.0` → 127.0.0.1; `::` → ::1;
    ///   a port in it is ignored, as Asterisk does);
    /// * the first user (every non-template section except `general`; sections
    ///   with the same name, case-insensitively, are one user whose later lines
    ///   win) that has a `secret` and whose `write` grants the class `user`
    ///   (see [`write_mask`]).
    ///
    /// `Ok(None)` when AMI is disabled or no user qualifies.
    pub fn from_manager_conf(path: &Path) -> Result<Option<AmiTarget>, AmiError> {
        ManagerConf::load(path)?.target_for(&["user"])
    }

    /// `host:port`, with brackets around an IPv6 address.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

struct Spec {
    username: Option<String>,
    secret: Option<String>,
    host: String,
    port: Option<u16>,
}

fn parse_spec(spec: &str) -> Result<Spec, AmiError> {
    const FORM: &str = "use [user[:secret]@]host[:port], IPv6 as [::1]:5038";
    let (userinfo, hostport) = match spec.rfind('@') {
        Some(i) => (Some(&spec[..i]), &spec[i + 1..]),
        None => (None, spec),
    };
    let (username, secret) = match userinfo {
        None => (None, None),
        Some(ui) => match ui.split_once(':') {
            Some((u, s)) => (Some(u), Some(s)),
            None => (Some(ui), None),
        },
    };
    let username = match username {
        Some("") if secret.is_some() => {
            return Err(AmiError::Config(format!(
                "the AMI address has a secret but no user before ':'; {FORM}"
            )))
        }
        Some("") => None,
        other => other,
    };
    if let Some(u) = username {
        if u.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(AmiError::Config(format!(
                "the AMI user name contains spaces or control characters; {FORM}"
            )));
        }
    }
    if secret.is_some_and(|s| s.chars().any(|c| c.is_control())) {
        return Err(AmiError::Config(
            "the AMI secret contains control characters (such as a line break), which AMI cannot carry".into(),
        ));
    }
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let Some((h, after)) = rest.split_once(']') else {
            return Err(AmiError::Config(format!(
                "the AMI address '{}' lacks the closing ']'; {FORM}",
                quote(hostport)
            )));
        };
        if !h.contains(':') {
            return Err(AmiError::Config(format!(
                "'[{}]' in the AMI address is not an IPv6 address; {FORM}",
                quote(h)
            )));
        }
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(p) => Some(parse_port(p)?),
                None => {
                    return Err(AmiError::Config(format!(
                        "unexpected '{}' after ']' in the AMI address; {FORM}",
                        quote(after)
                    )))
                }
            },
        };
        (h, port)
    } else if hostport.matches(':').count() >= 2 {
        if hostport.parse::<Ipv6Addr>().is_err() {
            return Err(AmiError::Config(format!(
                "'{}' in the AMI address is neither host:port nor an IPv6 address; {FORM}",
                quote(hostport)
            )));
        }
        (hostport, None)
    } else if let Some((h, p)) = hostport.split_once(':') {
        (h, Some(parse_port(p)?))
    } else {
        (hostport, None)
    };
    if host.is_empty() {
        return Err(AmiError::Config(format!(
            "the AMI address has no host; {FORM}"
        )));
    }
    if host
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '/' || c == '@')
    {
        return Err(AmiError::Config(format!(
            "'{}' is not a host name or address; {FORM}",
            quote(host)
        )));
    }
    Ok(Spec {
        username: username.map(str::to_string),
        secret: secret.map(str::to_string),
        host: host.to_string(),
        port,
    })
}

fn parse_port(p: &str) -> Result<u16, AmiError> {
    match p.parse::<u16>() {
        Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(AmiError::Config(format!(
            "invalid port '{}' in the AMI address (expected 1-65535)",
            quote(p)
        ))),
    }
}

/// Asterisk's permission classes (`perms[]` in `main/manager.c`), with the
/// bits vmtool uses for them (Asterisk's `EVENT_FLAG_*` order).
const CLASSES: &[(&str, u32)] = &[
    ("system", 1 << 0),
    ("call", 1 << 1),
    ("log", 1 << 2),
    ("verbose", 1 << 3),
    ("command", 1 << 4),
    ("agent", 1 << 5),
    ("user", 1 << 6),
    ("config", 1 << 7),
    ("dtmf", 1 << 8),
    ("reporting", 1 << 9),
    ("cdr", 1 << 10),
    ("dialplan", 1 << 11),
    ("originate", 1 << 12),
    ("agi", 1 << 13),
    ("cc", 1 << 15),
    ("aoc", 1 << 16),
    ("test", 1 << 17),
    ("security", 1 << 18),
    ("message", 1 << 19),
    ("all", i32::MAX as u32),
    ("none", 0),
];

/// The bit of one class name (exact, lower-case as Asterisk spells them);
/// 0 for an unknown name.
pub fn class_mask(class: &str) -> u32 {
    CLASSES
        .iter()
        .find(|(name, _)| *name == class)
        .map_or(0, |(_, bit)| *bit)
}

/// What a manager.conf `write =` (or `read =`) value grants, exactly as
/// Asterisk's `get_perm()` computes it: the value is split at `,` and each
/// class name is looked up with `ast_instring()`, which is **case-sensitive**
/// and does **not** trim, so `write = system, user` does not grant `user`
/// (the token is `" user"`) and `write = User` grants nothing. Its quirks are
/// kept: a token before the last one matches every class name it is a prefix
/// of (`write = us,call` grants `user`; an empty token, as in `write = ,call`,
/// grants everything); the last token must match exactly. `all` grants every
/// class.
pub fn write_mask(value: &str) -> u32 {
    CLASSES
        .iter()
        .filter(|(name, _)| ast_instring(value, name))
        .fold(0, |m, (_, bit)| m | bit)
}

/// Whether `write_value` grants `class` (see [`write_mask`]).
pub fn write_grants(write_value: &str, class: &str) -> bool {
    write_mask(write_value) & class_mask(class) != 0
}

/// `ast_instring(bigstr, smallstr, ',')`.
fn ast_instring(big: &str, small: &str) -> bool {
    let mut val = big;
    loop {
        match val.find(',') {
            Some(i) => {
                if small.starts_with(&val[..i]) {
                    return true;
                }
                val = &val[i + 1..];
                if val.is_empty() {
                    return false;
                }
            }
            None => return val == small,
        }
    }
}

/// `ast_true()`.
fn ast_true(v: &str) -> bool {
    ["yes", "true", "y", "t", "1", "on"]
        .iter()
        .any(|t| v.eq_ignore_ascii_case(t))
}

/// One manager user (a manager.conf section other than `[general]`).
#[derive(Clone, PartialEq, Eq)]
pub struct ManagerUser {
    /// Spelled as in its first section.
    pub name: String,
    /// The last `secret` line; `None` when there is none (Asterisk then
    /// refuses every plain login as this user).
    pub secret: Option<String>,
    /// The last `write` line (raw); empty when absent.
    pub write: String,
}

impl fmt::Debug for ManagerUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagerUser")
            .field("name", &self.name)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("write", &self.write)
            .finish()
    }
}

impl ManagerUser {
    /// Whether Asterisk lets this user run an action of `class`.
    pub fn can_write(&self, class: &str) -> bool {
        write_grants(&self.write, class)
    }
}

/// What manager.conf says about AMI (the parts vmtool needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerConf {
    /// `[general] enabled` (default no).
    pub enabled: bool,
    /// `[general] port` (default 5038).
    pub port: u16,
    /// The last valid `[general] bindaddr`; `None` means Asterisk's default
    /// (`[::]`, every address).
    pub bindaddr: Option<IpAddr>,
    /// Users in the order Asterisk lists them.
    pub users: Vec<ManagerUser>,
}

impl ManagerConf {
    /// Reads `path` with Asterisk's dialect ([`crate::conf::load`]).
    pub fn load(path: &Path) -> Result<ManagerConf, AmiError> {
        let file = conf::load(path)?;
        let general = file.category("general");
        let enabled = general.and_then(|g| g.get("enabled")).is_some_and(ast_true);
        let port = match general.and_then(|g| g.get("port")) {
            None => DEFAULT_PORT,
            Some(v) => match c_strtoul(v) {
                Some(n) if (1024..=65535).contains(&n) => n as u16,
                _ if !enabled => DEFAULT_PORT,
                _ => {
                    return Err(AmiError::Config(format!(
                        "{}: [general] port = {} is not a number from 1024 to 65535, so the port Asterisk listens on is undefined; fix the port",
                        path.display(),
                        quote(v)
                    )))
                }
            },
        };
        let bindaddr = general
            .map(|g| g.get_all("bindaddr").filter_map(parse_bindaddr).last())
            .unwrap_or(None);
        let mut users: Vec<ManagerUser> = Vec::new();
        for cat in file.browse() {
            if cat.name.eq_ignore_ascii_case("general") {
                continue;
            }
            let idx = match users
                .iter()
                .position(|u| u.name.eq_ignore_ascii_case(&cat.name))
            {
                Some(i) => i,
                None => {
                    users.push(ManagerUser {
                        name: cat.name.clone(),
                        secret: None,
                        write: String::new(),
                    });
                    users.len() - 1
                }
            };
            let user = &mut users[idx];
            for var in &cat.vars {
                if var.name.eq_ignore_ascii_case("secret") {
                    user.secret = Some(var.value.clone());
                } else if var.name.eq_ignore_ascii_case("write") {
                    user.write = var.value.clone();
                }
            }
        }
        Ok(ManagerConf {
            enabled,
            port,
            bindaddr,
            users,
        })
    }

    /// The address a local client connects to: the bind address, or the
    /// loopback address of its family when Asterisk listens on all of them.
    pub fn connect_host(&self) -> String {
        match self.bindaddr {
            None | Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)) => Ipv4Addr::LOCALHOST.to_string(),
            Some(IpAddr::V6(a)) if a.is_unspecified() => Ipv6Addr::LOCALHOST.to_string(),
            Some(a) => a.to_string(),
        }
    }

    /// The user named `name` (case-insensitive, as Asterisk matches them).
    pub fn user(&self, name: &str) -> Option<&ManagerUser> {
        self.users
            .iter()
            .find(|u| u.name.eq_ignore_ascii_case(name))
    }

    /// The first user with a secret whose `write` grants at least one of
    /// `classes` (Asterisk runs an action when the user has any of its
    /// classes: `VoicemailRefresh` needs `user`, `CoreShowChannels` needs
    /// `system` or `reporting`).
    pub fn user_for(&self, classes: &[&str]) -> Option<&ManagerUser> {
        let need = classes.iter().fold(0, |m, c| m | class_mask(c));
        self.users
            .iter()
            .find(|u| u.secret.is_some() && write_mask(&u.write) & need != 0)
    }

    /// The target for a user that may run actions of `classes`; `None` when
    /// AMI is disabled or no user qualifies.
    pub fn target_for(&self, classes: &[&str]) -> Result<Option<AmiTarget>, AmiError> {
        if !self.enabled {
            return Ok(None);
        }
        Ok(self.user_for(classes).map(|u| AmiTarget {
            host: self.connect_host(),
            port: self.port,
            username: u.name.clone(),
            secret: u.secret.clone().unwrap_or_default(),
        }))
    }
}

/// `strtoul(s, NULL, 0)` as `ast_parse_arg(PARSE_UINT32)` uses it: leading
/// blanks, optional `+`, `0x` hex, leading-`0` octal, nothing after the digits.
fn c_strtoul(s: &str) -> Option<u64> {
    let s = s.trim_start_matches(|c: char| (c as u32) < 33);
    if s.starts_with('-') {
        return None;
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) if h.starts_with(|c: char| c.is_ascii_hexdigit()) => (h, 16),
        _ if s.starts_with('0') => (s, 8),
        _ => (s, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix)
        .ok()
        .filter(|&n| n <= u32::MAX as u64)
}

/// `bindaddr` as `ast_sockaddr_parse(…, PARSE_PORT_IGNORE)` reads it (numeric
/// addresses only, a port is ignored).
fn parse_bindaddr(v: &str) -> Option<IpAddr> {
    if let Some(rest) = v.strip_prefix('[') {
        let (a, _) = rest.split_once(']')?;
        return a.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    if v.matches(':').count() > 1 {
        return v.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let a = v.split_once(':').map_or(v, |(a, _)| a);
    a.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// Everything that can go wrong talking to AMI; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum AmiError {
    #[error("cannot connect to AMI at {addr}: {source}; check that Asterisk runs, that manager.conf has [general] enabled = yes, and that the host and port (--ami, $VMTOOL_AMI or manager.conf port/bindaddr) are right")]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "AMI connection to {addr} failed while {during}: {source}; check the connection and retry"
    )]
    Io {
        addr: String,
        during: String,
        #[source]
        source: io::Error,
    },
    #[error("AMI at {addr} did not answer within {} while {during}; check that {addr} is Asterisk's manager port (manager.conf [general] port/bindaddr) and that Asterisk is responsive, or allow a longer timeout", fmt_duration(*after))]
    Timeout {
        addr: String,
        during: String,
        after: Duration,
    },
    #[error("AMI login as user '{user}' refused: {message}; check the user and secret given by --ami, $VMTOOL_AMI or manager.conf (and the user's deny=/permit= lines)")]
    Login { user: String, message: String },
    /// The peer broke the protocol (not Asterisk, garbage, too much data,
    /// closed the connection early).
    #[error("{0}")]
    Protocol(String),
    /// Asterisk refused an action or did not confirm it.
    #[error(
        "AMI action {action} failed: {message}{}",
        refused_hint(action, message)
    )]
    Refused { action: String, message: String },
    /// A request vmtool will not send (empty mailbox, line breaks in a value…).
    #[error("{0}")]
    Invalid(String),
    /// Unusable AMI settings (address, manager.conf contents).
    #[error("{0}")]
    Config(String),
    /// manager.conf could not be read.
    #[error(transparent)]
    Conf(#[from] ConfError),
}

fn refused_hint(action: &str, message: &str) -> String {
    let m = message.trim();
    if m.get(..17)
        .is_some_and(|p| p.eq_ignore_ascii_case("Permission denied"))
    {
        let class = match required_classes(action) {
            Some(["user"]) => "write=user".to_string(),
            Some(classes) => format!("write= with one of {}", classes.join(", ")),
            None => "the write= class this action needs".to_string(),
        };
        return format!("; enable {class} for this manager user in manager.conf, then run `manager reload` in Asterisk");
    }
    if m.starts_with("Invalid/unknown command") {
        if action.eq_ignore_ascii_case("VoicemailRefresh") {
            return "; load app_voicemail (`module load app_voicemail.so`); VoicemailRefresh needs Asterisk 12 or later".into();
        }
        return "; this Asterisk does not provide the action (module not loaded or too old)".into();
    }
    if action.eq_ignore_ascii_case("VoicemailRefresh") {
        return "; message-waiting lamps may be stale until Asterisk polls (voicemail.conf pollmailboxes=yes) or `voicemail reload` runs".into();
    }
    String::new()
}

/// The write classes Asterisk requires for the actions vmtool sends (any one
/// of them suffices).
pub fn required_classes(action: &str) -> Option<&'static [&'static str]> {
    const TABLE: &[(&str, &[&str])] = &[
        ("VoicemailRefresh", &["user"]),
        ("CoreShowChannels", &["system", "reporting"]),
        ("VoicemailMove", &["user"]),
        ("VoicemailRemove", &["user"]),
        ("VoicemailForward", &["user"]),
        ("VoicemailUsersList", &["call", "reporting"]),
        ("VoicemailUserStatus", &["call", "reporting"]),
        ("VoicemailBoxSummary", &["call", "reporting"]),
        ("MailboxCount", &["call", "reporting"]),
        ("MailboxStatus", &["call", "reporting"]),
    ];
    TABLE
        .iter()
        .find(|(a, _)| a.eq_ignore_ascii_case(action))
        .map(|(_, c)| *c)
}

fn fmt_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// Server text for an error message: bounded, control characters shown escaped.
fn quote(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(MAX_QUOTED)
        .flat_map(char::escape_debug)
        .collect();
    if s.chars().count() > MAX_QUOTED {
        out.push('…');
    }
    out
}

/// One message from the server: a response or an event, fields in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AmiResponse {
    /// `Key: value` lines (value without the blanks after `:`); a line
    /// without `:` is kept with an empty key.
    pub fields: Vec<(String, String)>,
}

impl AmiResponse {
    /// The first value of `key` (case-insensitive, like `astman_get_header()`).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// `Response:` (`Success`, `Error`, `Goodbye`, …).
    pub fn response(&self) -> Option<&str> {
        self.get("Response")
    }

    /// `Message:`.
    pub fn message(&self) -> Option<&str> {
        self.get("Message")
    }

    /// `Event:`.
    pub fn event(&self) -> Option<&str> {
        self.get("Event")
    }

    /// `ActionID:`.
    pub fn action_id(&self) -> Option<&str> {
        self.get("ActionID")
    }

    /// `Response: Success`.
    pub fn is_success(&self) -> bool {
        self.response()
            .is_some_and(|r| r.trim().eq_ignore_ascii_case("Success"))
    }
}

/// How to open a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Limit for connecting + banner + login together, and for each action.
    pub timeout: Duration,
    /// Ask for events (`Events: on` as the login's event mask). Off by default:
    /// vmtool needs none, and a busy PBX would otherwise stream call events.
    pub events: bool,
}

impl ConnectOptions {
    pub fn new(timeout: Duration) -> ConnectOptions {
        ConnectOptions {
            timeout,
            events: false,
        }
    }
}

/// A logged-in AMI session.
pub struct AmiClient {
    conn: Conn,
    username: String,
    version: String,
    timeout: Duration,
}

impl fmt::Debug for AmiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmiClient")
            .field("addr", &self.conn.addr)
            .field("username", &self.username)
            .field("version", &self.version)
            .finish()
    }
}

static NEXT_ACTION_ID: AtomicU64 = AtomicU64::new(1);

fn new_action_id() -> String {
    format!(
        "vmtool-{}-{}",
        std::process::id(),
        NEXT_ACTION_ID.fetch_add(1, Ordering::Relaxed)
    )
}

impl AmiClient {
    /// Connects, reads the `Asterisk Call Manager/<version>` banner and logs in
    /// (`Login` with `Username`, `Secret`, `Events: off`, an `ActionID`);
    /// anything but `Response: Success` is [`AmiError::Login`]. All of this
    /// finishes within `timeout` (Asterisk waits one second before it refuses a
    /// login, so allow at least two); later actions get `timeout` each.
    pub fn connect(target: &AmiTarget, timeout: Duration) -> Result<AmiClient, AmiError> {
        AmiClient::connect_with(target, ConnectOptions::new(timeout))
    }

    /// [`AmiClient::connect`] with options.
    pub fn connect_with(target: &AmiTarget, opts: ConnectOptions) -> Result<AmiClient, AmiError> {
        if target.username.is_empty() {
            return Err(AmiError::Config(format!(
                "no AMI user for {}; give user:secret@ in --ami / $VMTOOL_AMI or a manager.conf with a usable user",
                target.addr()
            )));
        }
        let timeout = opts.timeout.max(Duration::from_millis(1));
        let deadline = Instant::now() + timeout;
        let mut conn = Conn::open(target, timeout, deadline)?;
        let banner = conn
            .read_line(deadline, "waiting for the AMI banner")?
            .ok_or_else(|| {
                AmiError::Protocol(format!(
                    "{} closed the connection before greeting; is it Asterisk's manager port, and is this host allowed to connect?",
                    conn.addr
                ))
            })?;
        let Some(version) = banner.strip_prefix("Asterisk Call Manager") else {
            return Err(AmiError::Protocol(format!(
                "{} is not Asterisk's manager interface: it greeted with \"{}\" instead of \"Asterisk Call Manager/…\"; check the port",
                conn.addr,
                quote(&banner)
            )));
        };
        let version = version.trim_start_matches('/').trim().to_string();
        let mut client = AmiClient {
            conn,
            username: target.username.clone(),
            version,
            timeout,
        };
        let events = if opts.events { "on" } else { "off" };
        let resp = client.action_until(
            deadline,
            "Login",
            &[
                ("Username", &target.username),
                ("Secret", &target.secret),
                ("Events", events),
            ],
        )?;
        if !resp.is_success() {
            return Err(AmiError::Login {
                user: target.username.clone(),
                message: quote(resp.message().unwrap_or("(no message)").trim_end()),
            });
        }
        Ok(client)
    }

    /// The AMI version from the banner (`13.0.0` for current Asterisk).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// `host:port` of the server.
    pub fn addr(&self) -> &str {
        &self.conn.addr
    }

    /// Sends one action with a fresh `ActionID` and returns the response with
    /// that `ActionID`, skipping events and anything else in between. Any
    /// `Response:` is returned (inspect [`AmiResponse::is_success`] and
    /// [`AmiResponse::message`]). Fields must not contain line breaks and
    /// must fit Asterisk's 1024-byte request lines; `Action`/`ActionID` are
    /// set here.
    pub fn action(&mut self, name: &str, fields: &[(&str, &str)]) -> Result<AmiResponse, AmiError> {
        self.action_until(Instant::now() + self.timeout, name, fields)
    }

    fn action_until(
        &mut self,
        deadline: Instant,
        name: &str,
        fields: &[(&str, &str)],
    ) -> Result<AmiResponse, AmiError> {
        let id = self.send(name, fields, deadline)?;
        self.wait_response(name, &id, deadline)
    }

    /// For actions that answer with an event list (`CoreShowChannels`, …):
    /// returns the response and the list's events (those with our
    /// `ActionID`), up to the event named `complete_event` or any event with
    /// `EventList: Complete`/`Cancelled` (not included; its `ListItems` is
    /// checked against the count). When the response is not `Success`, the
    /// list is empty. The whole list must arrive within the timeout.
    pub fn action_list(
        &mut self,
        name: &str,
        fields: &[(&str, &str)],
        complete_event: &str,
    ) -> Result<(AmiResponse, Vec<AmiResponse>), AmiError> {
        let deadline = Instant::now() + self.timeout;
        let id = self.send(name, fields, deadline)?;
        let resp = self.wait_response(name, &id, deadline)?;
        if !resp.is_success() {
            return Ok((resp, Vec::new()));
        }
        let during = format!("reading the {name} list");
        let mut items = Vec::new();
        let mut bytes = 0usize;
        loop {
            let Some(msg) = self.conn.read_message(deadline, &during)? else {
                return Err(self.closed(&during));
            };
            if msg.action_id() != Some(id.as_str()) || msg.event().is_none() {
                continue;
            }
            let ends = msg
                .event()
                .is_some_and(|e| e.trim().eq_ignore_ascii_case(complete_event))
                || msg.get("EventList").is_some_and(|l| {
                    let l = l.trim();
                    l.eq_ignore_ascii_case("Complete") || l.eq_ignore_ascii_case("Cancelled")
                });
            if ends {
                if let Some(n) = msg
                    .get("ListItems")
                    .and_then(|n| n.trim().parse::<usize>().ok())
                {
                    if n != items.len() {
                        return Err(AmiError::Protocol(format!(
                            "{} announced {n} {name} items but sent {}; retry",
                            self.conn.addr,
                            items.len()
                        )));
                    }
                }
                return Ok((resp, items));
            }
            bytes += msg
                .fields
                .iter()
                .map(|(k, v)| k.len() + v.len() + 4)
                .sum::<usize>();
            if items.len() >= MAX_LIST_ITEMS || bytes > MAX_LIST_BYTES {
                return Err(AmiError::Protocol(format!(
                    "{} sent more than {MAX_LIST_ITEMS} items or {} MiB for {name}; vmtool stops reading",
                    self.conn.addr,
                    MAX_LIST_BYTES >> 20
                )));
            }
            items.push(msg);
        }
    }

    /// Sends `Logoff`, waits for the `Goodbye` (or the close), and closes.
    pub fn logoff(mut self) -> Result<(), AmiError> {
        let deadline = Instant::now() + self.timeout;
        let id = self.send("Logoff", &[], deadline)?;
        loop {
            match self.conn.read_message(deadline, "logging off")? {
                None => return Ok(()),
                Some(m)
                    if m.response().is_some()
                        && m.event().is_none()
                        && m.action_id() == Some(id.as_str()) =>
                {
                    return Ok(())
                }
                Some(_) => continue,
            }
        }
    }

    fn send(
        &mut self,
        name: &str,
        fields: &[(&str, &str)],
        deadline: Instant,
    ) -> Result<String, AmiError> {
        check_token("action name", name)?;
        if fields.len() + 2 > MAX_REQUEST_HEADERS {
            return Err(AmiError::Invalid(format!(
                "AMI action {name} has too many fields ({}); Asterisk reads at most {MAX_REQUEST_HEADERS} lines",
                fields.len()
            )));
        }
        let id = new_action_id();
        let mut req = format!("Action: {name}\r\nActionID: {id}\r\n");
        for (k, v) in fields {
            check_token("field name", k)?;
            if k.eq_ignore_ascii_case("Action") || k.eq_ignore_ascii_case("ActionID") {
                return Err(AmiError::Invalid(format!(
                    "AMI action {name}: the field {k} is set by vmtool itself"
                )));
            }
            if v.chars().any(|c| c == '\r' || c == '\n' || c == '\0') {
                return Err(AmiError::Invalid(format!(
                    "AMI action {name}: the value of {k} contains a line break or NUL, which AMI cannot carry"
                )));
            }
            if k.len() + 2 + v.len() + 2 > MAX_REQUEST_LINE {
                return Err(AmiError::Invalid(format!(
                    "AMI action {name}: the value of {k} is too long for Asterisk's {MAX_REQUEST_LINE}-byte request lines"
                )));
            }
            req.push_str(k);
            req.push_str(": ");
            req.push_str(v);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        self.conn
            .write_all(req.as_bytes(), deadline, &format!("sending {name}"))?;
        Ok(id)
    }

    fn wait_response(
        &mut self,
        name: &str,
        id: &str,
        deadline: Instant,
    ) -> Result<AmiResponse, AmiError> {
        let during = format!("waiting for the answer to {name}");
        loop {
            let Some(msg) = self.conn.read_message(deadline, &during)? else {
                return Err(self.closed(&during));
            };
            if msg.response().is_some() && msg.event().is_none() && msg.action_id() == Some(id) {
                return Ok(msg);
            }
        }
    }

    fn closed(&self, during: &str) -> AmiError {
        AmiError::Protocol(format!(
            "{} closed the AMI connection while {during}; check Asterisk's log",
            self.conn.addr
        ))
    }
}

fn check_token(what: &str, s: &str) -> Result<(), AmiError> {
    if s.is_empty()
        || s.len() > 200
        || s.chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == ':')
    {
        return Err(AmiError::Invalid(format!(
            "invalid AMI {what} \"{}\": it must be 1-200 characters without spaces, ':' or control characters",
            quote(s)
        )));
    }
    Ok(())
}

/// A TCP connection with a bounded line reader and deadlines.
struct Conn {
    stream: TcpStream,
    addr: String,
    buf: Vec<u8>,
    /// Start of unread data in `buf`.
    pos: usize,
    /// Bytes after `pos` already known to hold no `\n`.
    scanned: usize,
    /// The step limit, for messages.
    timeout: Duration,
}

impl Conn {
    fn open(target: &AmiTarget, timeout: Duration, deadline: Instant) -> Result<Conn, AmiError> {
        let addr = target.addr();
        let addrs = resolve(
            &target.host,
            target.port,
            deadline.saturating_duration_since(Instant::now()),
        )
        .map_err(|source| AmiError::Connect {
            addr: addr.clone(),
            source,
        })?;
        let mut last_err = io::Error::new(io::ErrorKind::NotFound, "the host name has no address");
        for sa in addrs {
            let now = Instant::now();
            if now >= deadline {
                last_err = io::Error::new(io::ErrorKind::TimedOut, "connection timed out");
                break;
            }
            match TcpStream::connect_timeout(&sa, deadline - now) {
                Ok(stream) => {
                    // Small requests and answers: do not wait for Nagle.
                    let _ = stream.set_nodelay(true);
                    return Ok(Conn {
                        stream,
                        addr,
                        buf: Vec::new(),
                        pos: 0,
                        scanned: 0,
                        timeout,
                    });
                }
                Err(e) => last_err = e,
            }
        }
        Err(AmiError::Connect {
            addr,
            source: last_err,
        })
    }

    fn timeout_err(&self, during: &str) -> AmiError {
        AmiError::Timeout {
            addr: self.addr.clone(),
            during: during.to_string(),
            after: self.timeout,
        }
    }

    /// One line without its CRLF (a bare LF also ends a line, as Asterisk
    /// accepts); `None` at end of stream.
    fn read_line(&mut self, deadline: Instant, during: &str) -> Result<Option<String>, AmiError> {
        loop {
            let unread = &self.buf[self.pos..];
            if let Some(i) = unread[self.scanned..].iter().position(|&b| b == b'\n') {
                let end = self.pos + self.scanned + i;
                let mut line = &self.buf[self.pos..end];
                if let Some(l) = line.strip_suffix(b"\r") {
                    line = l;
                }
                let s = String::from_utf8_lossy(line).into_owned();
                self.pos = end + 1;
                self.scanned = 0;
                if self.pos == self.buf.len() {
                    self.buf.clear();
                    self.pos = 0;
                }
                return Ok(Some(s));
            }
            self.scanned = unread.len();
            if self.scanned > MAX_LINE {
                return Err(AmiError::Protocol(format!(
                    "{} sent a line longer than {} KiB while {during}; this is not how Asterisk's manager interface talks, check the address",
                    self.addr,
                    MAX_LINE >> 10
                )));
            }
            if self.pos > 0 {
                self.buf.drain(..self.pos);
                self.pos = 0;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(self.timeout_err(during));
            }
            if let Err(e) = self.stream.set_read_timeout(Some(deadline - now)) {
                return Err(self.io_err(during, e));
            }
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(None),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.read_write_err(during, e)),
            }
        }
    }

    /// One message; empty lines between messages are skipped (Asterisk sends
    /// one after texts with an embedded line feed). `None` at end of stream
    /// between messages.
    fn read_message(
        &mut self,
        deadline: Instant,
        during: &str,
    ) -> Result<Option<AmiResponse>, AmiError> {
        let mut fields = Vec::new();
        let mut bytes = 0usize;
        loop {
            let Some(line) = self.read_line(deadline, during)? else {
                if fields.is_empty() {
                    return Ok(None);
                }
                return Err(AmiError::Protocol(format!(
                    "{} closed the AMI connection in the middle of a message while {during}",
                    self.addr
                )));
            };
            if line.is_empty() {
                if fields.is_empty() {
                    continue;
                }
                return Ok(Some(AmiResponse { fields }));
            }
            bytes += line.len() + 2;
            if bytes > MAX_MESSAGE_BYTES || fields.len() >= MAX_FIELDS {
                return Err(AmiError::Protocol(format!(
                    "{} sent a message of more than {MAX_FIELDS} lines or {} KiB while {during}; vmtool stops reading",
                    self.addr,
                    MAX_MESSAGE_BYTES >> 10
                )));
            }
            let field = match line.split_once(':') {
                Some((k, v)) => (k.to_string(), v.trim_start_matches([' ', '\t']).to_string()),
                None => (String::new(), line),
            };
            fields.push(field);
        }
    }

    fn write_all(&mut self, data: &[u8], deadline: Instant, during: &str) -> Result<(), AmiError> {
        let mut rest = data;
        while !rest.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                return Err(self.timeout_err(during));
            }
            if let Err(e) = self.stream.set_write_timeout(Some(deadline - now)) {
                return Err(self.io_err(during, e));
            }
            match self.stream.write(rest) {
                Ok(0) => {
                    return Err(self.io_err(
                        during,
                        io::Error::new(
                            io::ErrorKind::WriteZero,
                            "the connection accepts no more data",
                        ),
                    ))
                }
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.read_write_err(during, e)),
            }
        }
        Ok(())
    }

    /// A socket error: a timeout (the socket's read/write timeout fired) or I/O.
    fn read_write_err(&self, during: &str, e: io::Error) -> AmiError {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => self.timeout_err(during),
            _ => self.io_err(during, e),
        }
    }

    fn io_err(&self, during: &str, source: io::Error) -> AmiError {
        AmiError::Io {
            addr: self.addr.clone(),
            during: during.to_string(),
            source,
        }
    }
}

/// Addresses of `host`: an IP literal directly, a name through the system
/// resolver in a helper thread so that a hanging resolver cannot outlast
/// `timeout`.
fn resolve(host: &str, port: u16, timeout: Duration) -> io::Result<Vec<SocketAddr>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let (tx, rx) = mpsc::channel();
    let name = host.to_string();
    std::thread::Builder::new()
        .name("vmtool-ami-resolve".into())
        .spawn(move || {
            let r = (name.as_str(), port)
                .to_socket_addrs()
                .map(|a| a.collect::<Vec<_>>());
            let _ = tx.send(r);
        })?;
    match rx.recv_timeout(timeout) {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "looking up the host name timed out",
        )),
    }
}

/// Sends `VoicemailRefresh` (`Context`, `Mailbox`) for each `(context,
/// mailbox)` on one connection, in order, and logs off.
///
/// The outer error is for reaching or logging in to AMI. Inside, one result
/// per mailbox: [`AmiError::Refused`] when the response is not `Success` or
/// its `Message:` is not `Refresh sent` (the text is read, not only the
/// `Response:`); [`AmiError::Invalid`] for an empty context or mailbox, which
/// Asterisk would treat as "every mailbox". After a connection failure the
/// remaining mailboxes get a [`AmiError::Protocol`] saying they were not sent.
pub fn voicemail_refresh(
    target: &AmiTarget,
    mailboxes: &[(String, String)],
    timeout: Duration,
) -> Result<Vec<Result<(), AmiError>>, AmiError> {
    let mut client = AmiClient::connect(target, timeout)?;
    let mut results = Vec::with_capacity(mailboxes.len());
    let mut broken: Option<String> = None;
    for (context, mailbox) in mailboxes {
        if let Some(why) = &broken {
            results.push(Err(AmiError::Protocol(format!(
                "VoicemailRefresh for {mailbox}@{context} not sent: the AMI connection failed earlier ({why})"
            ))));
            continue;
        }
        if context.trim().is_empty() || mailbox.trim().is_empty() {
            results.push(Err(AmiError::Invalid(format!(
                "refusing VoicemailRefresh for \"{}@{}\": an empty context or mailbox would make Asterisk refresh more than this mailbox",
                quote(mailbox),
                quote(context)
            ))));
            continue;
        }
        match client.action(
            "VoicemailRefresh",
            &[("Context", context), ("Mailbox", mailbox)],
        ) {
            Ok(resp) => results.push(check_refresh(&resp)),
            Err(e @ AmiError::Invalid(_)) => results.push(Err(e)),
            Err(e) => {
                broken = Some(e.to_string());
                results.push(Err(e));
            }
        }
    }
    if broken.is_none() {
        // The refreshes are done; a failed goodbye changes nothing.
        let _ = client.logoff();
    }
    Ok(results)
}

fn check_refresh(resp: &AmiResponse) -> Result<(), AmiError> {
    let message = resp.message().unwrap_or("").trim();
    if resp.is_success() && message.eq_ignore_ascii_case("Refresh sent") {
        return Ok(());
    }
    let message = if resp.is_success() {
        format!(
            "Asterisk answered Success but with the message \"{}\" instead of \"Refresh sent\"",
            quote(message)
        )
    } else if resp
        .response()
        .is_some_and(|r| r.trim().eq_ignore_ascii_case("Error"))
    {
        quote(if message.is_empty() {
            "(no message)"
        } else {
            message
        })
    } else {
        format!(
            "Asterisk answered \"{}\" with the message \"{}\"",
            quote(resp.response().unwrap_or("")),
            quote(message)
        )
    };
    Err(AmiError::Refused {
        action: "VoicemailRefresh".into(),
        message,
    })
}

/// Names of the channels currently running `VoiceMailMain` (`CoreShowChannels`,
/// field `Application`, case-insensitive), for the safety check before
/// renumbering (spec 6.7). Needs a user with `write=system` or `reporting`.
pub fn voicemail_main_running(
    target: &AmiTarget,
    timeout: Duration,
) -> Result<Vec<String>, AmiError> {
    let mut client = AmiClient::connect(target, timeout)?;
    let (resp, items) = client.action_list("CoreShowChannels", &[], "CoreShowChannelsComplete")?;
    if !resp.is_success() {
        return Err(AmiError::Refused {
            action: "CoreShowChannels".into(),
            message: quote(resp.message().unwrap_or("(no message)").trim()),
        });
    }
    let names = items
        .iter()
        .filter(|e| {
            e.event()
                .is_some_and(|n| n.trim().eq_ignore_ascii_case("CoreShowChannel"))
        })
        .filter(|e| {
            e.get("Application")
                .is_some_and(|a| a.trim().eq_ignore_ascii_case("VoiceMailMain"))
        })
        .map(|e| e.get("Channel").unwrap_or("").to_string())
        .collect();
    let _ = client.logoff();
    Ok(names)
}
