//! The three Asterisk files vmtool reads, interpreted the way Asterisk does:
//! `asterisk.conf` (`load_asterisk_conf()` in `main/options.c`: spool and
//! config directories, lock mode, run user), `voicemail.conf`
//! (`actual_load_config()` in `apps/app_voicemail.c`: `[general]`,
//! `[zonemessages]`, aliases and the mailbox lines of every other section)
//! and the mailboxes of `users.conf` that Asterisk 22 and older also loaded.
//!
//! The dialect itself is [`crate::conf`]'s; this module owns the meaning of
//! the keys, their defaults, limits and precedence. Values are kept as
//! Asterisk stores them (mailbox fields are not trimmed), including its
//! fixed-size buffers (`ast_copy_string()` into `char[80]` keeps 79 bytes).

use std::path::{Path, PathBuf};

use crate::conf::{self, c_truncate, Category, ConfError, ConfFile, LoadOptions};

/// `MAXMSG`: default per-folder limit, also used for invalid values.
pub const MAXMSG: u32 = 100;
/// `MAXMSGLIMIT`: the highest `maxmsg` / `backupdeleted` Asterisk accepts.
pub const MAXMSGLIMIT: u32 = 9999;
/// `AST_MAX_FORMATS`: `format=` tokens after the tenth are dropped.
const MAX_FORMATS: usize = 10;
/// Size of most `struct ast_vm_user` string fields (context, mailbox, PIN, …).
const FIELD: usize = 80;

/// Asterisk's `lockmode` (`asterisk.conf [options]`), global to the running Asterisk;
/// `lock.rs` implements both modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LockMode {
    /// `.lock` hard links (Asterisk's default).
    #[default]
    Lockfile,
    /// `flock()` on `<folder>/lock`.
    Flock,
}

/// What vmtool needs from `asterisk.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsteriskConf {
    pub path: PathBuf,
    /// `[directories] astspooldir`; `None` = Asterisk's build default.
    pub astspooldir: Option<PathBuf>,
    /// `[directories] astetcdir`; `None` = Asterisk's build default.
    pub astetcdir: Option<PathBuf>,
    pub lockmode: LockMode,
    pub runuser: Option<String>,
    pub rungroup: Option<String>,
    /// `[options] execincludes`: whether Asterisk would run `#exec` lines.
    pub execincludes: bool,
    pub warnings: Vec<String>,
}

impl AsteriskConf {
    /// Reads `asterisk.conf`. Asterisk itself falls back to built-in defaults
    /// when the file is missing or invalid; here that is the caller's choice.
    pub fn load(path: &Path) -> Result<Self, ConfError> {
        let cfg = conf::load(path)?;
        Ok(Self::from_conf(path, cfg))
    }

    /// Interprets an already loaded `asterisk.conf`.
    pub fn from_conf(path: &Path, cfg: ConfFile) -> Self {
        let mut out = AsteriskConf {
            path: path.to_path_buf(),
            astspooldir: None,
            astetcdir: None,
            lockmode: LockMode::Lockfile,
            runuser: None,
            rungroup: None,
            execincludes: false,
            warnings: Vec::new(),
        };
        // Each loop keeps the last occurrence of a key, as Asterisk's does.
        if let Some(dirs) = cfg.category("directories") {
            for v in &dirs.vars {
                if v.name.eq_ignore_ascii_case("astspooldir") {
                    out.astspooldir = Some(PathBuf::from(&v.value));
                } else if v.name.eq_ignore_ascii_case("astetcdir") {
                    out.astetcdir = Some(PathBuf::from(&v.value));
                }
            }
        }
        if let Some(opts) = cfg.category("options") {
            for v in &opts.vars {
                let name = v.name.as_str();
                if name.eq_ignore_ascii_case("lockmode") {
                    out.lockmode = if v.value.eq_ignore_ascii_case("lockfile") {
                        LockMode::Lockfile
                    } else if v.value.eq_ignore_ascii_case("flock") {
                        LockMode::Flock
                    } else {
                        out.warnings.push(format!(
                            "{}:{}: '{}' is not a valid lockmode; Asterisk uses 'lockfile'",
                            v.file.display(),
                            v.line,
                            v.value
                        ));
                        LockMode::Lockfile
                    };
                } else if name.eq_ignore_ascii_case("runuser") {
                    out.runuser = Some(v.value.clone());
                } else if name.eq_ignore_ascii_case("rungroup") {
                    out.rungroup = Some(v.value.clone());
                } else if name.eq_ignore_ascii_case("execincludes") {
                    out.execincludes = ast_true(&v.value);
                }
            }
        }
        if out
            .astspooldir
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            out.warnings.push(format!(
                "{}: astspooldir is empty; Asterisk would use '/voicemail/' as its voicemail spool",
                path.display()
            ));
        }
        let mut warnings = cfg.warnings;
        warnings.append(&mut out.warnings);
        out.warnings = warnings;
        out
    }

    /// Options for loading the other config files the way this Asterisk would
    /// treat `#exec`: ignored unless `execincludes` is on (then refused).
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            exec: if self.execincludes {
                conf::ExecPolicy::Refuse
            } else {
                conf::ExecPolicy::Ignore
            },
        }
    }
}

/// `voicemail.conf` as app_voicemail sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoicemailConf {
    pub path: PathBuf,
    pub general: General,
    /// `[zonemessages]` in file order.
    pub zones: Vec<Zone>,
    /// Mailboxes in load order: users.conf first, then voicemail.conf.
    pub mailboxes: Vec<MailboxConf>,
    /// `(alias@ctx, box@ctx)` from the `aliasescontext` section, as written.
    pub aliases: Vec<(String, String)>,
    pub warnings: Vec<String>,
}

/// `[general]` settings that matter to vmtool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct General {
    /// `format=` after `ast_format_str_reduce()`: known formats, no duplicates.
    pub format: Vec<String>,
    pub maxmsg: u32,
    pub backupdeleted: u32,
    pub moveheard: bool,
    pub searchcontexts: bool,
    /// Context of users.conf mailboxes (Asterisk ≤ 22).
    pub userscontext: String,
    pub aliasescontext: Option<String>,
    /// Only meaningful for ODBC builds (whose defaults are `asterisk` / `voicemessages`).
    pub odbcstorage: Option<String>,
    pub odbctable: Option<String>,
    pub pollmailboxes: bool,
    /// Default zone name (from `[zonemessages]`) for every mailbox.
    pub tz: Option<String>,
    pub externnotify: Option<String>,
    /// Every variable of `[general]`, in order.
    pub vars: Vec<(String, String)>,
}

impl Default for General {
    fn default() -> Self {
        General {
            format: vec!["wav".to_string()],
            maxmsg: MAXMSG,
            backupdeleted: 0,
            moveheard: true,
            searchcontexts: false,
            userscontext: "default".to_string(),
            aliasescontext: None,
            odbcstorage: None,
            odbctable: None,
            pollmailboxes: false,
            tz: None,
            externnotify: None,
            vars: Vec::new(),
        }
    }
}

/// One `[zonemessages]` entry: `name = Olson|say format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    pub name: String,
    pub timezone: String,
    pub say_format: String,
}

/// Where a mailbox was defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailboxSource {
    VoicemailConf,
    UsersConf,
}

/// One mailbox with the values Asterisk ends up with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxConf {
    pub context: String,
    pub mailbox: String,
    pub password: String,
    pub fullname: String,
    /// The full name's bytes when they are not UTF-8 (`fullname` has U+FFFD
    /// there); Asterisk prints these bytes.
    pub fullname_raw: Option<Vec<u8>>,
    pub email: String,
    pub pager: String,
    /// The `key=value` pairs handed to `apply_option()`, in order (nested
    /// `options=` lists flattened); Asterisk ignores keys it does not know.
    pub options: Vec<(String, String)>,
    pub maxmsg: u32,
    /// Zone name from `[zonemessages]` (global `tz` unless overridden).
    pub tz: Option<String>,
    pub backupdeleted: u32,
    pub moveheard: bool,
    pub source: MailboxSource,
    pub file: PathBuf,
    pub line: usize,
}

impl MailboxConf {
    /// Last value of option `key` (case-insensitive).
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }
}

impl VoicemailConf {
    /// Loads `voicemail.conf` (refusing `#exec`), plus the mailboxes of
    /// `users_conf` when given and present.
    pub fn load(path: &Path, users_conf: Option<&Path>) -> Result<Self, ConfError> {
        Self::load_with(path, users_conf, &LoadOptions::default())
    }

    /// [`VoicemailConf::load`] with explicit options (see [`AsteriskConf::load_options`]).
    pub fn load_with(
        path: &Path,
        users_conf: Option<&Path>,
        opts: &LoadOptions,
    ) -> Result<Self, ConfError> {
        let cfg = conf::load_with(path, opts)?;
        let mut warnings = Vec::new();
        let users = match users_conf {
            None => None,
            Some(u) => match conf::load_with(u, opts) {
                Ok(c) => Some(c),
                Err(e) if e.is_not_found() => None,
                Err(e) if e.is_vmtool_limit() => return Err(e),
                // Asterisk logs "invalid format. Avoiding." and goes on without it.
                Err(e) => {
                    warnings.push(format!(
                        "users.conf not used (Asterisk would skip it too): {e}"
                    ));
                    None
                }
            },
        };
        Ok(Self::from_conf(path, cfg, users, warnings))
    }

    /// Interprets loaded files (`users` = a loaded `users.conf`, if any);
    /// `extra_warnings` go after the files' own.
    pub fn from_conf(
        path: &Path,
        cfg: ConfFile,
        users: Option<ConfFile>,
        extra_warnings: Vec<String>,
    ) -> Self {
        let mut warnings = cfg.warnings.clone();
        warnings.extend(extra_warnings);
        let general = parse_general(cfg.category("general"), &mut warnings);
        let mut out = VoicemailConf {
            path: path.to_path_buf(),
            zones: Vec::new(),
            mailboxes: Vec::new(),
            aliases: Vec::new(),
            warnings: Vec::new(),
            general,
        };
        if let Some(users) = users {
            warnings.extend(users.warnings.iter().cloned());
            out.load_users_conf(&users, &mut warnings);
        }
        if let Some(ctx) = &out.general.aliasescontext {
            if let Some(cat) = cfg.category(ctx) {
                out.aliases = cat
                    .vars
                    .iter()
                    .map(|v| (v.name.clone(), v.value.clone()))
                    .collect();
            }
        }
        if let Some(cat) = cfg.category("zonemessages") {
            for v in &cat.vars {
                match v.value.split_once(['|', ',']) {
                    Some((tz, say)) => out.zones.push(Zone {
                        name: c_truncate(&v.name, FIELD),
                        timezone: c_truncate(tz, FIELD),
                        say_format: c_truncate(say, 512),
                    }),
                    None => warnings.push(format!(
                        "{}:{}: invalid timezone definition (expected 'zone = Olson/Name|format'), ignored",
                        v.file.display(),
                        v.line
                    )),
                }
            }
        }
        // Every other section is a voicemail context (templates are invisible).
        let aliases_ctx = out.general.aliasescontext.clone().unwrap_or_default();
        for cat in cfg.browse() {
            let n = &cat.name;
            if n.eq_ignore_ascii_case("general")
                || n.eq_ignore_ascii_case(&aliases_ctx)
                || n.eq_ignore_ascii_case("zonemessages")
            {
                continue;
            }
            for v in &cat.vars {
                out.append_mailbox(cat, v, &mut warnings);
            }
        }
        out.warnings = warnings;
        out
    }

    /// The mailbox `mailbox@context` (both case-insensitive, as `find_user()`).
    pub fn mailbox(&self, context: &str, mailbox: &str) -> Option<&MailboxConf> {
        self.mailboxes.iter().find(|m| {
            m.context.eq_ignore_ascii_case(context) && m.mailbox.eq_ignore_ascii_case(mailbox)
        })
    }

    /// The zone Asterisk uses for `name`: the last `[zonemessages]` entry with
    /// exactly that name (Asterisk prepends each zone to its list).
    pub fn zone(&self, name: &str) -> Option<&Zone> {
        self.zones.iter().rev().find(|z| z.name == name)
    }

    /// Olson name of the mailbox's `tz` zone, if it has one and it is defined.
    pub fn zone_timezone(&self, mb: &MailboxConf) -> Option<&str> {
        self.zone(mb.tz.as_deref()?).map(|z| z.timezone.as_str())
    }

    /// Target (`box@ctx`) of an alias written exactly as `alias` (`box@ctx`);
    /// Asterisk's alias table is case-sensitive and the first entry wins.
    pub fn alias(&self, alias: &str) -> Option<&str> {
        self.aliases
            .iter()
            .find(|(a, _)| a == alias)
            .map(|(_, t)| t.as_str())
    }

    fn defaults(
        &self,
        context: &str,
        mailbox: &str,
        source: MailboxSource,
        file: &Path,
        line: usize,
    ) -> MailboxConf {
        MailboxConf {
            context: c_truncate(context, FIELD),
            mailbox: c_truncate(mailbox, FIELD),
            password: String::new(),
            fullname: String::new(),
            fullname_raw: None,
            email: String::new(),
            pager: String::new(),
            options: Vec::new(),
            maxmsg: self.general.maxmsg,
            tz: self.general.tz.clone(),
            backupdeleted: self.general.backupdeleted,
            moveheard: self.general.moveheard,
            source,
            file: file.to_path_buf(),
            line,
        }
    }

    /// `find_or_create()`'s refusals: `*` names and duplicates (first wins).
    fn may_create(
        &self,
        context: &str,
        mailbox: &str,
        at: &str,
        warnings: &mut Vec<String>,
    ) -> bool {
        if mailbox.starts_with('*') {
            warnings.push(format!(
                "{at}: mailbox {mailbox} in context {context} starts with '*' (reserved for extension 'a'); Asterisk ignores it"
            ));
            return false;
        }
        for m in &self.mailboxes {
            if self.general.searchcontexts && m.mailbox.eq_ignore_ascii_case(mailbox) {
                let other = if m.context.eq_ignore_ascii_case(context) {
                    String::new()
                } else {
                    format!(" (also in context {} and searchcontexts=yes)", m.context)
                };
                warnings.push(format!(
                    "{at}: ignoring duplicated mailbox {mailbox}{other}"
                ));
                return false;
            }
            if m.context.eq_ignore_ascii_case(context) && m.mailbox.eq_ignore_ascii_case(mailbox) {
                warnings.push(format!(
                    "{at}: ignoring duplicated mailbox {mailbox} in context {context}"
                ));
                return false;
            }
        }
        true
    }

    /// `append_mailbox()`: `box => password,full name,email,pager,options`.
    fn append_mailbox(&mut self, cat: &Category, v: &conf::Var, warnings: &mut Vec<String>) {
        let context = c_truncate(&cat.name, FIELD);
        let mailbox = c_truncate(&v.name, FIELD);
        let at = format!("{}:{}", v.file.display(), v.line);
        if !self.may_create(&context, &mailbox, &at, warnings) {
            return;
        }
        let mut mb = self.defaults(
            &context,
            &mailbox,
            MailboxSource::VoicemailConf,
            &v.file,
            v.line,
        );
        // strsep() on ',': four fields, the rest (commas included) is options.
        let mut fields = v.value.splitn(5, ',');
        let password = fields.next().unwrap_or_default();
        if password.starts_with('*') {
            warnings.push(format!(
                "{at}: password of mailbox {mailbox} starts with '*' and can never be entered; reset it"
            ));
        }
        mb.password = c_truncate(password, FIELD);
        if let Some(f) = fields.next() {
            mb.fullname = c_truncate(f, FIELD);
            // The same field of the bytes (a ',' is one byte in both).
            mb.fullname_raw = v.raw.as_deref().and_then(|raw| {
                let f = raw.splitn(5, |&b| b == b',').nth(1)?;
                std::str::from_utf8(f)
                    .is_err()
                    .then(|| crate::conf::c_truncate_bytes(f, FIELD))
            });
        }
        if let Some(f) = fields.next() {
            mb.email = f.to_string();
        }
        if let Some(f) = fields.next() {
            mb.pager = c_truncate(f, FIELD);
        }
        if let Some(opts) = fields.next() {
            apply_options(&mut mb, opts, &at, warnings);
        }
        self.mailboxes.push(mb);
    }

    /// users.conf (Asterisk ≤ 22): each section with a true `hasvoicemail`
    /// (own or `[general]`'s) is a mailbox named after it in `userscontext`.
    fn load_users_conf(&mut self, users: &ConfFile, warnings: &mut Vec<String>) {
        let context = self.general.userscontext.clone();
        let general_hv = users.get("general", "hasvoicemail");
        for cat in users.browse() {
            if cat.name.eq_ignore_ascii_case("general") {
                continue;
            }
            if !ast_true(cat.get("hasvoicemail").or(general_hv).unwrap_or("")) {
                continue;
            }
            let mailbox = c_truncate(&cat.name, FIELD);
            let at = format!("{}:{}", cat.file.display(), cat.line);
            if !self.may_create(&context, &mailbox, &at, warnings) {
                continue;
            }
            let mut mb = self.defaults(
                &context,
                &mailbox,
                MailboxSource::UsersConf,
                &cat.file,
                cat.line,
            );
            // apply_options_full(): identity keys first, the rest are options.
            for v in &cat.vars {
                let (name, value) = (v.name.as_str(), v.value.as_str());
                let is = |k: &str| name.eq_ignore_ascii_case(k);
                if is("vmsecret") {
                    mb.password = c_truncate(value, FIELD);
                } else if is("secret") || is("password") {
                    // A vmsecret (or an earlier secret) is not overwritten.
                    if mb.password.is_empty() {
                        if value.starts_with('*') {
                            warnings.push(format!(
                                "{}:{}: password of mailbox {mailbox} starts with '*'; Asterisk ignores it",
                                v.file.display(),
                                v.line
                            ));
                        } else {
                            mb.password = c_truncate(value, FIELD);
                        }
                    }
                } else if is("pager") {
                    mb.pager = c_truncate(value, FIELD);
                } else if is("email") {
                    mb.email = value.to_string();
                } else if is("fullname") {
                    mb.fullname = c_truncate(value, FIELD);
                    mb.fullname_raw = v
                        .raw
                        .as_deref()
                        .map(|raw| crate::conf::c_truncate_bytes(raw, FIELD));
                } else if is("uniqueid") || is("context") {
                    // uniqueid is not used by vmtool; context is replaced by userscontext.
                } else {
                    apply_option(
                        &mut mb,
                        name,
                        value,
                        &format!("{}:{}", v.file.display(), v.line),
                        warnings,
                    );
                }
            }
            self.mailboxes.push(mb);
        }
    }
}

fn parse_general(g: Option<&Category>, warnings: &mut Vec<String>) -> General {
    let mut out = General::default();
    let Some(g) = g else {
        return out;
    };
    let at = format!("{}:{}", g.file.display(), g.line);
    let get = |k: &str| g.get(k);
    let non_empty =
        |v: Option<&str>, size: usize| v.filter(|s| !s.is_empty()).map(|s| c_truncate(s, size));
    if let Some(v) = get("format") {
        out.format = reduce_formats(v, &at, warnings);
    }
    if let Some(v) = get("maxmsg") {
        out.maxmsg = clamp_count(c_atoi(v), "maxmsg", v, &at, warnings);
    }
    if let Some(v) = get("backupdeleted") {
        out.backupdeleted = parse_backupdeleted(v, &at, warnings);
    }
    out.moveheard = ast_true(get("moveheard").unwrap_or("yes"));
    out.searchcontexts = ast_true(get("searchcontexts").unwrap_or("no"));
    out.userscontext = c_truncate(get("userscontext").unwrap_or("default"), FIELD);
    out.aliasescontext = non_empty(get("aliasescontext"), FIELD);
    out.odbcstorage = get("odbcstorage").map(str::to_string);
    out.odbctable = get("odbctable").map(str::to_string);
    out.pollmailboxes = get("pollmailboxes").is_some_and(ast_true);
    out.tz = non_empty(get("tz"), FIELD);
    out.externnotify = non_empty(get("externnotify"), 160);
    out.vars = g
        .vars
        .iter()
        .map(|v| (v.name.clone(), v.value.clone()))
        .collect();
    out
}

/// `apply_options()`: `|`-separated `key=value`; tokens without `=` are ignored.
fn apply_options(mb: &mut MailboxConf, options: &str, at: &str, warnings: &mut Vec<String>) {
    for token in options.split('|') {
        if let Some((k, v)) = token.split_once('=') {
            apply_option(mb, k, v, at, warnings);
        }
    }
}

/// `apply_option()` for the settings vmtool uses; every pair is recorded.
fn apply_option(
    mb: &mut MailboxConf,
    key: &str,
    value: &str,
    at: &str,
    warnings: &mut Vec<String>,
) {
    let is = |k: &str| key.eq_ignore_ascii_case(k);
    if is("options") {
        apply_options(mb, value, at, warnings);
        return;
    }
    mb.options.push((key.to_string(), value.to_string()));
    if is("maxmsg") {
        // Unlike the global, 0 is kept ("greetings only") and garbage reads as 0.
        mb.maxmsg = clamp_count(c_atoi(value), "maxmsg", value, at, warnings);
    } else if is("tz") {
        mb.tz = (!value.is_empty()).then(|| c_truncate(value, FIELD));
    } else if is("backupdeleted") {
        mb.backupdeleted = parse_backupdeleted(value, at, warnings);
    } else if is("moveheard") {
        mb.moveheard = ast_true(value);
    }
}

/// `backupdeleted`: a number, or a true word meaning 100, else 0.
fn parse_backupdeleted(value: &str, at: &str, warnings: &mut Vec<String>) -> u32 {
    let n = match scan_int(value) {
        Some(n) => n,
        None if ast_true(value) => MAXMSG as i32,
        None => 0,
    };
    clamp_count(n, "backupdeleted", value, at, warnings)
}

/// Asterisk's range check: negative → 100, above 9999 → 9999.
fn clamp_count(n: i32, key: &str, raw: &str, at: &str, warnings: &mut Vec<String>) -> u32 {
    if n < 0 {
        warnings.push(format!("{at}: invalid {key}={raw}; Asterisk uses {MAXMSG}"));
        MAXMSG
    } else if n as u32 > MAXMSGLIMIT {
        warnings.push(format!(
            "{at}: {key}={raw} is above {MAXMSGLIMIT}; Asterisk uses {MAXMSGLIMIT}"
        ));
        MAXMSGLIMIT
    } else {
        n as u32
    }
}

/// `ast_true()`: yes, true, y, t, 1, on (any case, nothing trimmed).
pub fn ast_true(s: &str) -> bool {
    ["yes", "true", "y", "t", "1", "on"]
        .iter()
        .any(|t| s.eq_ignore_ascii_case(t))
}

/// glibc `atoi()`: `(int) strtol(s, NULL, 10)` — blanks, sign, digits; the
/// `long` saturates and the cast to `int` wraps.
fn c_atoi(s: &str) -> i32 {
    parse_c_long(s, usize::MAX).map_or(0, |n| n as i32)
}

/// `sscanf(s, "%30d", &x) == 1`: like [`c_atoi`] on at most 30 characters,
/// `None` when there is no digit.
fn scan_int(s: &str) -> Option<i32> {
    parse_c_long(s, 30).map(|n| n as i32)
}

fn parse_c_long(s: &str, width: usize) -> Option<i64> {
    let b = s.as_bytes();
    let mut i = b
        .iter()
        .position(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))
        .unwrap_or(b.len());
    let end = i.saturating_add(width).min(b.len());
    let neg = match b.get(i) {
        Some(b'-') if i < end => {
            i += 1;
            true
        }
        Some(b'+') if i < end => {
            i += 1;
            false
        }
        _ => false,
    };
    let digits = b[i..end].iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let mut n: i64 = 0;
    for &d in &b[i..i + digits] {
        let d = i64::from(d - b'0');
        n = if neg {
            n.saturating_mul(10).saturating_sub(d)
        } else {
            n.saturating_mul(10).saturating_add(d)
        };
    }
    Some(n)
}

/// Extension lists of Asterisk's format modules (`.exts`): tokens in one list
/// are the same format, so only the first of them is kept.
const FORMAT_EXTS: &[&[&str]] = &[
    &["wav"],
    &["wav16"],
    &["WAV", "wav49"],
    &["gsm"],
    &["pcm", "ulaw", "ul", "mu", "ulw"],
    &["alaw", "al", "alw"],
    &["g722"],
    &["au"],
    &["sln", "slin", "raw"],
    &["sln12"],
    &["sln16"],
    &["sln24"],
    &["sln32"],
    &["sln44"],
    &["sln48"],
    &["sln96"],
    &["sln192"],
    &["g719"],
    &["g723", "g723sf"],
    &["g726-40"],
    &["g726-32"],
    &["g726-24"],
    &["g726-16"],
    &["g729"],
    &["h263"],
    &["h264"],
    &["ilbc"],
    &["spx"],
    &["spx16"],
    &["spx32"],
    &["ogg"],
    &["siren7"],
    &["siren14"],
    &["vox"],
    &["mp3"],
];

/// `ast_format_str_reduce()` assuming every standard format module is loaded:
/// unknown tokens dropped, duplicates of one format dropped, `wav` if none left.
fn reduce_formats(value: &str, at: &str, warnings: &mut Vec<String>) -> Vec<String> {
    let mut seen = Vec::new();
    let mut kept: Vec<&str> = Vec::new();
    for token in value.split('|').take(MAX_FORMATS) {
        let Some(module) = FORMAT_EXTS.iter().position(|exts| exts.contains(&token)) else {
            warnings.push(format!("{at}: format: ignoring unknown format '{token}'"));
            continue;
        };
        if !seen.contains(&module) {
            seen.push(module);
            kept.push(token);
        }
    }
    if kept.is_empty() {
        warnings.push(format!(
            "{at}: no known format in format={value}; Asterisk uses 'wav'"
        ));
        return vec!["wav".to_string()];
    }
    // vmfmts is a char[80].
    c_truncate(&kept.join("|"), FIELD)
        .split('|')
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// `tests/fixtures/asterisk-spool-team2/etc`: the confs a real Asterisk ran with.
    fn fixture(name: &str) -> PathBuf {
        let dir =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/asterisk-spool-team2/etc");
        assert!(
            dir.is_dir(),
            "the real-Asterisk fixture is missing at {}",
            dir.display()
        );
        dir.join(name)
    }

    fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, body).unwrap();
        p
    }

    fn vm(body: &str) -> VoicemailConf {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "voicemail.conf", body);
        VoicemailConf::load(&p, None).unwrap()
    }

    #[test]
    fn fixture_voicemail_conf() {
        let conf = VoicemailConf::load(&fixture("voicemail.conf"), None).unwrap();
        assert_eq!(conf.general.format, ["wav49", "gsm", "wav"]);
        assert_eq!(conf.general.maxmsg, 100);
        assert!(conf.general.moveheard);
        assert_eq!(conf.general.userscontext, "default");
        assert_eq!(conf.mailboxes.len(), 5);
        let ids: Vec<_> = conf
            .mailboxes
            .iter()
            .map(|m| format!("{}@{}", m.mailbox, m.context))
            .collect();
        assert_eq!(
            ids,
            [
                "2101@finance",
                "2102@finance",
                "2201@compta",
                "2202@compta",
                "2301@direction"
            ]
        );
        let c = conf.mailbox("COMPTA", "2201").unwrap();
        assert_eq!(c.password, "");
        assert_eq!(c.fullname, "Chloé Durand");
        assert_eq!(c.maxmsg, 3);
        assert_eq!(c.options, [("maxmsg".to_string(), "3".to_string())]);
        assert_eq!(c.line, 18);
        let a = conf.mailbox("finance", "2101").unwrap();
        assert_eq!(
            (a.password.as_str(), a.fullname.as_str(), a.email.as_str()),
            ("1111", "Alice Martin", "alice@example.org")
        );
        assert_eq!(a.maxmsg, 100);
        assert_eq!(conf.mailbox("finance", "2102").unwrap().email, "");
        assert!(conf.warnings.is_empty(), "{:?}", conf.warnings);
        assert_eq!(conf.general.vars.len(), 7);
    }

    #[test]
    fn fixture_asterisk_conf() {
        let a = AsteriskConf::load(&fixture("asterisk.conf")).unwrap();
        assert_eq!(
            a.astspooldir.as_deref(),
            Some(Path::new("/var/spool/asterisk"))
        );
        assert_eq!(a.lockmode, LockMode::Lockfile);
        assert_eq!(a.astetcdir, None);
    }

    #[test]
    fn asterisk_conf_options() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "asterisk.conf",
            "[directories](!)\nastspooldir => /tpl\n[Directories]\nASTSPOOLDIR => /a\nastspooldir = /b\nastetcdir=/etc/x\n\
             [options]\nLockMode = FLOCK\nrunuser = asterisk\nrungroup = voice\nexecincludes = yes\n",
        );
        let a = AsteriskConf::load(&p).unwrap();
        assert_eq!(a.astspooldir.as_deref(), Some(Path::new("/b")));
        assert_eq!(a.astetcdir.as_deref(), Some(Path::new("/etc/x")));
        assert_eq!(a.lockmode, LockMode::Flock);
        assert_eq!(
            (a.runuser.as_deref(), a.rungroup.as_deref()),
            (Some("asterisk"), Some("voice"))
        );
        assert!(a.execincludes);
        assert_eq!(a.load_options().exec, conf::ExecPolicy::Refuse);
        let p = write(dir.path(), "a2.conf", "[options]\nlockmode = mutex\n");
        let a = AsteriskConf::load(&p).unwrap();
        assert_eq!(a.lockmode, LockMode::Lockfile);
        assert_eq!(a.warnings.len(), 1);
        assert_eq!(a.astspooldir, None);
        assert_eq!(a.load_options().exec, conf::ExecPolicy::Ignore);
    }

    #[test]
    fn lab_style_mailbox_lines() {
        let c = vm("[general]\nmaxmsg = 100 ;nombre max\n\n[finance]\n1101 => 1234, Utilisateur1\n1102 => 1234, Utilisateur2\n\n[compta]\n1201 => , Utilisateur5\n");
        let m = c.mailbox("finance", "1101").unwrap();
        // Asterisk keeps the blank after the comma.
        assert_eq!(m.fullname, " Utilisateur1");
        assert_eq!(m.password, "1234");
        let m = c.mailbox("compta", "1201").unwrap();
        assert_eq!(
            (m.password.as_str(), m.fullname.as_str()),
            ("", " Utilisateur5")
        );
    }

    #[test]
    fn mailbox_fields_and_options() {
        let c = vm("[general]\ntz = central\n[default]\n\
             1 => 4242\n\
             2 => -1,Name, With Comma?,a@b|c@d,attach=yes| saycid=yes,x|maxmsg=5|Tz=european|noequals|options=backupdeleted=yes\n\
             3 => 1,N,,,maxmsg=0|moveheard=off|backupdeleted=12\n\
             4 => 1,N,,,maxmsg=-3|backupdeleted=99999\n\
             5 => 1,N,,,maxmsg=abc|moveheard=t|backupdeleted=maybe\n\
             6 => 1,N,,,maxmsg=20000\n\
             1 => 9999\n*7 => 1\n");
        assert_eq!(c.mailboxes.len(), 6);
        let m1 = c.mailbox("DEFAULT", "1").unwrap();
        assert_eq!(
            (m1.password.as_str(), m1.fullname.as_str(), m1.tz.as_deref()),
            ("4242", "", Some("central"))
        );
        let m2 = c.mailbox("default", "2").unwrap();
        assert_eq!(m2.fullname, "Name");
        assert_eq!(m2.email, " With Comma?");
        assert_eq!(m2.pager, "a@b|c@d");
        // Options: split on '|' only, values untrimmed, keys case-insensitive.
        assert_eq!(m2.option("attach"), Some("yes"));
        assert_eq!(m2.option(" saycid"), Some("yes,x"));
        assert_eq!(m2.maxmsg, 5);
        assert_eq!(m2.tz.as_deref(), Some("european"));
        assert_eq!(m2.backupdeleted, 100);
        assert_eq!(m2.option("noequals"), None);
        let m3 = c.mailbox("default", "3").unwrap();
        assert_eq!((m3.maxmsg, m3.moveheard, m3.backupdeleted), (0, false, 12));
        let m4 = c.mailbox("default", "4").unwrap();
        assert_eq!((m4.maxmsg, m4.backupdeleted), (100, 9999));
        let m5 = c.mailbox("default", "5").unwrap();
        assert_eq!((m5.maxmsg, m5.moveheard, m5.backupdeleted), (0, true, 0));
        assert_eq!(c.mailbox("default", "6").unwrap().maxmsg, 9999);
        assert_eq!(c.mailbox("default", "1").unwrap().password, "4242");
        // duplicate 1, '*7', maxmsg=-3, backupdeleted=99999, maxmsg=20000
        assert_eq!(c.warnings.len(), 5, "{:?}", c.warnings);
    }

    #[test]
    fn general_defaults_and_limits() {
        let c = vm("[other]\n1 => 1\n");
        assert_eq!(c.general, General::default());
        assert_eq!(c.mailboxes[0].maxmsg, 100);
        let c = vm("[general]\nformat = wav49|WAV|gsm|bogus|wav| gsm|ulaw|pcm\nmaxmsg=0\nbackupdeleted=yes\nmoveheard=maybe\n\
                    searchcontexts=on\npollmailboxes=1\nodbcstorage=x\nexternnotify=\ntz=\n");
        let g = &c.general;
        assert_eq!(g.format, ["wav49", "gsm", "wav", "ulaw"]);
        assert_eq!(
            (
                g.maxmsg,
                g.backupdeleted,
                g.moveheard,
                g.searchcontexts,
                g.pollmailboxes
            ),
            (0, 100, false, true, true)
        );
        assert_eq!(
            (g.odbcstorage.as_deref(), g.odbctable.as_deref()),
            (Some("x"), None)
        );
        assert_eq!((g.externnotify.as_deref(), g.tz.as_deref()), (None, None));
        let c = vm("[general]\nformat = nothing\nmaxmsg = 99999999999999999999\n");
        assert_eq!(c.general.format, ["wav"]);
        // strtol saturates to LONG_MAX, the int cast gives -1: default 100.
        assert_eq!(c.general.maxmsg, 100);
        assert_eq!(c_atoi("  42abc"), 42);
        assert_eq!(c_atoi("4294967297"), 1);
        assert_eq!(scan_int("x"), None);
        assert_eq!(scan_int(" -7"), Some(-7));
    }

    #[test]
    fn contexts_templates_and_duplicates() {
        let c = vm("[general]\nsearchcontexts = yes\n[tpl](!)\n100 => 1,From Template\n[a](tpl)\n200 => 2\n[b]\n200 => 3\n100 => 4\n");
        let ids: Vec<_> = c
            .mailboxes
            .iter()
            .map(|m| format!("{}@{}", m.mailbox, m.context))
            .collect();
        assert_eq!(ids, ["100@a", "200@a"]);
        assert_eq!(c.mailbox("a", "100").unwrap().fullname, "From Template");
        assert_eq!(c.warnings.len(), 2);
    }

    #[test]
    fn zonemessages() {
        let c = vm("[general]\ntz=eastern\n[zonemessages]\neastern = America/New_York|'vm-received' Q 'digits/at' IMp\n\
                    european = Europe/Paris,'vm-received' a d b 'digits/at' HM\nbroken = UTC\neastern = America/Detroit|x\n\
                    [default]\n1 => 1\n2 => 2,,,,tz=european\n3 => 3,,,,tz=nowhere\n4 => 4,,,,tz=\n");
        assert_eq!(c.zones.len(), 3);
        assert_eq!(c.zones[0].say_format, "'vm-received' Q 'digits/at' IMp");
        assert_eq!(c.zones[1].timezone, "Europe/Paris");
        assert_eq!(c.warnings.len(), 1);
        // The later definition of a zone name wins.
        assert_eq!(
            c.zone_timezone(c.mailbox("default", "1").unwrap()),
            Some("America/Detroit")
        );
        assert_eq!(
            c.zone_timezone(c.mailbox("default", "2").unwrap()),
            Some("Europe/Paris")
        );
        assert_eq!(c.zone_timezone(c.mailbox("default", "3").unwrap()), None);
        assert_eq!(c.mailbox("default", "4").unwrap().tz, None);
    }

    #[test]
    fn aliases() {
        let c = vm("[general]\naliasescontext = myaliases\n[myaliases]\n1234@main => 2101@finance\n[MyAliases]\nx => y\n[finance]\n2101 => 1\n");
        assert_eq!(
            c.aliases,
            [("1234@main".to_string(), "2101@finance".to_string())]
        );
        assert_eq!(c.alias("1234@main"), Some("2101@finance"));
        assert_eq!(c.alias("1234@MAIN"), None);
        // Neither aliases section is a context.
        assert_eq!(c.mailboxes.len(), 1);
    }

    #[test]
    fn users_conf_like_the_lab() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let users = write(
            d,
            "users.conf",
            "[general] ;s'applique donc à tous les utilisateurs\nhasvoicemail = yes ;boîte vocale\nhassip = yes\n\n\
             [template](!) ;notre template\ntype = friend\nhost = dynamic\nallow = ulaw\nvmsecret = \n\n\
             [1101](template) ;1101\nfullname = Utilisateur1 ;remplacer\nusername = u1101\nsecret = password\n\
             mailbox = 1101\ncontext = finance\nmaxmsg = 7\n\n\
             [1102](template)\nhasvoicemail = no\n\n\
             [1103]\nvmsecret = 55\nsecret = 66\nemail = x@y\n",
        );
        let vmconf = write(
            d,
            "voicemail.conf",
            "[general]\nmaxmsg=50\n[finance]\n1101 => 1234, Utilisateur1\n[default]\n1101 => 9999,Other\n",
        );
        let c = VoicemailConf::load(&vmconf, Some(&users)).unwrap();
        let ids: Vec<_> = c
            .mailboxes
            .iter()
            .map(|m| format!("{}@{}", m.mailbox, m.context))
            .collect();
        assert_eq!(ids, ["1101@default", "1103@default", "1101@finance"]);
        let m = c.mailbox("default", "1101").unwrap();
        assert_eq!(m.source, MailboxSource::UsersConf);
        assert_eq!(
            (m.password.as_str(), m.fullname.as_str(), m.maxmsg),
            ("password", "Utilisateur1", 7)
        );
        assert_eq!(m.option("host"), Some("dynamic"));
        assert_eq!(m.option("context"), None);
        let m = c.mailbox("default", "1103").unwrap();
        assert_eq!(
            (m.password.as_str(), m.email.as_str(), m.maxmsg),
            ("55", "x@y", 50)
        );
        assert_eq!(
            c.mailbox("finance", "1101").unwrap().source,
            MailboxSource::VoicemailConf
        );
        // voicemail.conf's 1101@default lost to users.conf's.
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        // A missing users.conf is fine; a broken one is skipped with a warning.
        let c = VoicemailConf::load(&vmconf, Some(&d.join("none.conf"))).unwrap();
        assert_eq!(c.mailboxes.len(), 2);
        let bad = write(d, "bad-users.conf", "x = 1\n");
        let c = VoicemailConf::load(&vmconf, Some(&bad)).unwrap();
        assert_eq!(c.mailboxes.len(), 2);
        assert!(
            c.warnings[0].contains("users.conf not used"),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn userscontext_setting() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let users = write(
            d,
            "users.conf",
            "[6000]\nhasvoicemail = on\nvmsecret=1\n[6001]\n",
        );
        let vmconf = write(d, "voicemail.conf", "[general]\nuserscontext = office\n");
        let c = VoicemailConf::load(&vmconf, Some(&users)).unwrap();
        assert_eq!(c.mailboxes.len(), 1);
        assert_eq!(c.mailboxes[0].context, "office");
    }

    #[test]
    fn voicemail_conf_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "voicemail.conf",
            "[general]\n#include \"missing.conf\"\n",
        );
        let e = VoicemailConf::load(&p, None).unwrap_err();
        assert!(matches!(e, ConfError::MissingInclude { .. }), "{e}");
        assert!(VoicemailConf::load(&dir.path().join("nope.conf"), None)
            .unwrap_err()
            .is_not_found());
    }
}
