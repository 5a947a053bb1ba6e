//! Running commands: configuration discovery, the per-item error reporter, and
//! one function per subcommand. Output goes to the writers it is given; the
//! binary only parses arguments and exits with the status returned here.

use crate::change::{self, ChangeKind};
use crate::cli::{
    BoxesArgs, Cli, ColorChoice, Command, CountArgs, Format, GlobalArgs, LsArgs, ShowArgs,
};
use crate::config::{AsteriskConf, MailboxConf, VoicemailConf};
use crate::error::{Error, Exit, Result};
use crate::metadata::{self, Metadata};
use crate::render::{self, sanitize, MessageRow, MessageRowRef, MessageWriter, Style};
use crate::scan::{MsgFiles, MsgState, Noise};
use crate::spool::{Context, Folder, MailboxId, Spool};
use crate::store::{FileStore, MailboxStore, Store};
use crate::target::{self, Resolver, Target};
use chrono::{DateTime, Local, Utc};
use std::collections::BTreeMap;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};

/// What the process environment contributes (kept apart so tests can set it).
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// `$VMTOOL_SPOOL`.
    pub spool: Option<PathBuf>,
    /// `$VMTOOL_NOW`: replaces the clock for every age computation.
    pub now: Option<i64>,
    /// `$NO_COLOR` is set (and not empty).
    pub no_color: bool,
    /// Standard output is a terminal.
    pub stdout_tty: bool,
}

impl Environment {
    pub fn from_process() -> Result<Environment> {
        let now = match std::env::var("VMTOOL_NOW") {
            Ok(v) => Some(v.trim().parse::<i64>().map_err(|_| {
                Error::Usage(format!(
                    "VMTOOL_NOW={v:?} is not a number of seconds since 1970"
                ))
            })?),
            Err(_) => None,
        };
        Ok(Environment {
            spool: std::env::var_os("VMTOOL_SPOOL")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            now,
            no_color: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
            stdout_tty: io::stdout().is_terminal(),
        })
    }

    pub fn now(&self) -> i64 {
        self.now.unwrap_or_else(|| Utc::now().timestamp())
    }
}

/// Prints per-item errors as they happen and remembers the worst exit status.
pub struct Reporter<'a> {
    err: &'a mut dyn Write,
    exit: Option<Exit>,
    failures: usize,
}

impl<'a> Reporter<'a> {
    pub fn new(err: &'a mut dyn Write) -> Self {
        Reporter {
            err,
            exit: None,
            failures: 0,
        }
    }

    /// Reports one failed item; the run goes on.
    pub fn error(&mut self, e: &Error) {
        let _ = writeln!(self.err, "vmtool: {}", sanitize(&e.to_string()));
        self.failures += 1;
        let code = e.exit();
        // The first specific status wins; mixing several kinds is "some failed".
        self.exit = Some(match self.exit {
            None => code,
            Some(prev) if prev == code => prev,
            Some(_) => Exit::Partial,
        });
    }

    pub fn warn(&mut self, msg: &str) {
        let _ = writeln!(self.err, "vmtool: warning: {}", sanitize(msg));
    }

    pub fn note(&mut self, msg: &str) {
        let _ = writeln!(self.err, "vmtool: {}", sanitize(msg));
    }

    /// Exit status for a run that attempted `items` things.
    pub fn finish(&mut self, items_ok: usize) -> Exit {
        match self.exit {
            None => Exit::Ok,
            // Some things worked: partial failure.
            Some(_) if items_ok > 0 => Exit::Partial,
            Some(code) => code,
        }
    }

    /// The status of what was reported so far (a run cut short by a closed output).
    pub fn exit_so_far(&self) -> Exit {
        self.exit.map_or(Exit::Ok, |_| Exit::Partial)
    }

    pub fn failed(&self) -> bool {
        self.failures > 0
    }

    /// Where reports go (standard error), for summary lines.
    pub fn err_writer(&mut self) -> &mut dyn Write {
        self.err
    }
}

/// Display zone for dates.
#[derive(Debug, Clone, Copy)]
pub enum Zone {
    Utc,
    Local,
    Named(chrono_tz::Tz),
}

impl Zone {
    /// The server's zone by name when it can be found ($TZ, else the system's),
    /// so dates carry abbreviations like CET; else chrono's local offset.
    pub fn local() -> Zone {
        let tz_env = std::env::var("TZ").ok();
        let name = tz_env
            .as_deref()
            .map(|t| t.trim_start_matches(':').to_string())
            .or_else(|| iana_time_zone::get_timezone().ok());
        match name.and_then(|n| n.parse::<chrono_tz::Tz>().ok()) {
            Some(tz) => Zone::Named(tz),
            None => Zone::Local,
        }
    }

    /// The two renderings listings need, from one zone conversion and without
    /// re-parsing a format string per message: RFC 3339 and `YYYY-MM-DD HH:MM`.
    pub fn stamps(&self, ts: i64) -> Option<(String, String)> {
        use chrono::{Datelike, Offset, Timelike};
        let utc = DateTime::<Utc>::from_timestamp(ts, 0)?;
        let (naive, offset) = match self {
            Zone::Utc => (utc.naive_utc(), 0),
            Zone::Local => {
                let d = utc.with_timezone(&Local);
                (d.naive_local(), d.offset().fix().local_minus_utc())
            }
            Zone::Named(tz) => {
                let d = utc.with_timezone(tz);
                (d.naive_local(), d.offset().fix().local_minus_utc())
            }
        };
        let (sign, off) = if offset < 0 {
            ('-', -offset)
        } else {
            ('+', offset)
        };
        let year = naive.year();
        if !(0..=9999).contains(&year) {
            let day = format!("{year:04}-{:02}-{:02}", naive.month(), naive.day());
            let rfc = format!(
                "{day}T{:02}:{:02}:{:02}{sign}{:02}:{:02}",
                naive.hour(),
                naive.minute(),
                naive.second(),
                off / 3600,
                off / 60 % 60
            );
            let table = format!("{day} {:02}:{:02}", naive.hour(), naive.minute());
            return Some((rfc, table));
        }
        // By hand: `format!` was a tenth of a large listing's time.
        fn digits(out: &mut String, n: u32, width: u32) {
            for i in (0..width).rev() {
                out.push(char::from(b'0' + (n / 10u32.pow(i) % 10) as u8));
            }
        }
        let mut table = String::with_capacity(16);
        digits(&mut table, year as u32, 4);
        table.push('-');
        digits(&mut table, naive.month(), 2);
        table.push('-');
        digits(&mut table, naive.day(), 2);
        let mut rfc = String::with_capacity(25);
        rfc.push_str(&table);
        rfc.push('T');
        table.push(' ');
        for (i, n) in [naive.hour(), naive.minute(), naive.second()]
            .into_iter()
            .enumerate()
        {
            if i > 0 {
                rfc.push(':');
            }
            digits(&mut rfc, n, 2);
        }
        digits(&mut table, naive.hour(), 2);
        table.push(':');
        digits(&mut table, naive.minute(), 2);
        rfc.push(sign);
        // Hours of an offset never reach 100 (chrono caps offsets below a day).
        digits(&mut rfc, (off / 3600) as u32, 2);
        rfc.push(':');
        digits(&mut rfc, (off / 60 % 60) as u32, 2);
        Some((rfc, table))
    }

    pub fn format(&self, ts: i64, fmt: &str) -> Option<String> {
        let utc = DateTime::<Utc>::from_timestamp(ts, 0)?;
        Some(match self {
            Zone::Utc => utc.format(fmt).to_string(),
            Zone::Local => utc.with_timezone(&Local).format(fmt).to_string(),
            Zone::Named(tz) => utc.with_timezone(tz).format(fmt).to_string(),
        })
    }
}

/// Everything a command needs: the store and what the configuration says.
pub struct Setup {
    pub store: Store,
    pub vmconf: Option<VoicemailConf>,
    pub astconf: Option<AsteriskConf>,
    pub style: Style,
    pub format: Format,
    pub env: Environment,
    /// Where asterisk.conf says the other config files are (`astetcdir`).
    pub etc_dir: PathBuf,
    pub quiet: bool,
    pub verbose: bool,
}

impl Setup {
    /// Discovers the spool and reads the configuration (spec §1.1, §6.8 step 1):
    /// `--spool` > `$VMTOOL_SPOOL` > astspooldir of asterisk.conf > /var/spool/asterisk.
    pub fn discover(g: &GlobalArgs, env: Environment, rep: &mut Reporter) -> Result<Setup> {
        let default_ast = Path::new("/etc/asterisk/asterisk.conf");
        let astconf = if g.asterisk_conf.exists() || g.asterisk_conf != default_ast {
            Some(AsteriskConf::load(&g.asterisk_conf)?)
        } else {
            None
        };
        let (spool_dir, how) = if let Some(s) = &g.spool {
            (s.clone(), "--spool")
        } else if let Some(s) = &env.spool {
            (s.clone(), "$VMTOOL_SPOOL")
        } else if let Some(s) = astconf.as_ref().and_then(|a| a.astspooldir.clone()) {
            (s, "astspooldir in asterisk.conf")
        } else {
            (PathBuf::from("/var/spool/asterisk"), "the default")
        };
        let sql_wanted =
            g.db.is_some() || std::env::var_os("VMTOOL_DB").is_some_and(|v| !v.is_empty());
        if spool_dir.exists() && !spool_dir.is_dir() {
            return Err(Error::Usage(format!(
                "{} (from {how}) is a file: give the spool directory (astspooldir, e.g. /var/spool/asterisk, or its voicemail/ folder)",
                spool_dir.display()
            )));
        }
        if !spool_dir.is_dir() && !sql_wanted {
            return Err(Error::NotFound(format!(
                "spool directory {} (from {how}) does not exist; give it with --spool DIR or $VMTOOL_SPOOL",
                spool_dir.display()
            )));
        }
        let spool = if spool_dir.is_dir() {
            Spool::from_dir(&spool_dir)
        } else {
            // A SQL store needs no local spool; `dir` still starts with its path.
            Spool::new(spool_dir.join("voicemail"))
        };
        if g.verbose {
            rep.note(&format!("spool: {} (from {how})", spool.root().display()));
        }
        if spool_dir.is_dir() {
            match spool_level(spool.root()) {
                SpoolLevel::Spool => {}
                SpoolLevel::Wrong(msg) => {
                    return Err(Error::Usage(format!("{msg} (from {how})")));
                }
                SpoolLevel::Doubtful(msg) if !g.quiet => rep.warn(&format!("{msg} (from {how})")),
                SpoolLevel::Doubtful(_) => {}
            }
        }
        let etc_dir = astconf
            .as_ref()
            .and_then(|a| a.astetcdir.clone())
            .or_else(|| g.asterisk_conf.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("/etc/asterisk"));
        let vm_path = g
            .voicemail_conf
            .clone()
            .unwrap_or_else(|| etc_dir.join("voicemail.conf"));
        let vmconf = if vm_path.exists() || g.voicemail_conf.is_some() {
            let users = g
                .users_conf
                .clone()
                .unwrap_or_else(|| vm_path.with_file_name("users.conf"));
            // #exec is honoured by Asterisk only with execincludes=yes; vmtool
            // never runs it but sees the same lines Asterisk sees.
            let opts = astconf
                .as_ref()
                .map(|a| a.load_options())
                .unwrap_or_default();
            let conf = VoicemailConf::load_with(&vm_path, Some(&users), &opts)?;
            if g.verbose {
                rep.note(&format!(
                    "voicemail.conf: {} ({} mailboxes)",
                    vm_path.display(),
                    conf.mailboxes.len()
                ));
            }
            for w in &conf.warnings {
                if g.verbose {
                    rep.warn(w);
                }
            }
            Some(conf)
        } else {
            // Without it every box reads "not in voicemail.conf" and dates lose
            // the box's tz: worth one line even without -v.
            if !g.quiet {
                rep.warn(&format!(
                    "no {}: owner names, limits and time zones are unknown and every box shows as not in voicemail.conf; give --voicemail-conf FILE (-q hides this)",
                    vm_path.display()
                ));
            }
            None
        };
        let color = match g.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => env.stdout_tty && !env.no_color,
        };
        let found = crate::sql::discover::find(
            g.db.as_deref(),
            std::env::var("VMTOOL_DB").ok().as_deref(),
            g.db_table.as_deref(),
            vmconf.as_ref(),
            &etc_dir,
            g.odbc_ini.as_deref(),
        )?;
        let store = match found {
            None => Store::File(FileStore::new(spool)),
            Some(f) => {
                let prefix = g
                    .spool_prefix
                    .clone()
                    .unwrap_or_else(|| spool.root().to_string_lossy().into_owned());
                let ext = vmconf
                    .as_ref()
                    .and_then(|c| c.general.format.first())
                    .map_or("wav", |f| f.as_str());
                // Asterisk names the cache of wav49 `.WAV` (odbc_retrieve_message()).
                let ext = if ext.eq_ignore_ascii_case("wav49") {
                    "WAV"
                } else {
                    ext
                };
                let s = crate::sql::SqlStore::open(&f.target, &f.table, &prefix, ext, spool)?;
                if g.verbose {
                    rep.note(&format!(
                        "database: {} (from {}), table {}, dir prefix {}",
                        f.target.describe(),
                        f.target.source,
                        f.table,
                        s.table.prefix
                    ));
                }
                Store::Sql(Box::new(s))
            }
        };
        Ok(Setup {
            store,
            vmconf,
            astconf,
            style: Style { color },
            format: g.format,
            env,
            etc_dir,
            quiet: g.quiet,
            verbose: g.verbose,
        })
    }

    pub fn mailbox_conf(&self, mb: &MailboxId) -> Option<&MailboxConf> {
        self.vmconf
            .as_ref()?
            .mailbox(mb.context.as_str(), mb.mailbox())
    }

    /// The zone dates of this mailbox are shown in: its `tz` zone, else local.
    pub fn zone_for(&self, mb: &MailboxId, utc: bool) -> Zone {
        if utc {
            return Zone::Utc;
        }
        let named = self.vmconf.as_ref().and_then(|vc| {
            let m = vc.mailbox(mb.context.as_str(), mb.mailbox())?;
            vc.zone_timezone(m)?.parse::<chrono_tz::Tz>().ok()
        });
        named.map_or_else(Zone::local, Zone::Named)
    }

    fn configured_boxes(&self, name: &str) -> Vec<MailboxId> {
        let Some(vc) = &self.vmconf else {
            return Vec::new();
        };
        vc.mailboxes
            .iter()
            .filter(|m| m.mailbox == name)
            .filter_map(|m| MailboxId::new(Context::new(&m.context).ok()?, &m.mailbox).ok())
            .collect()
    }

    /// Resolves TARGET arguments; failures are reported and skipped.
    pub fn resolve_all(&self, args: &[String], rep: &mut Reporter) -> Vec<Target> {
        self.resolve_all_in(&self.store, args, rep)
    }

    /// Like `resolve_all`, against another store (migrate reads the file spool
    /// while the run's store is the table).
    pub fn resolve_all_in(
        &self,
        store: &dyn MailboxStore,
        args: &[String],
        rep: &mut Reporter,
    ) -> Vec<Target> {
        let configured = |mb: &MailboxId| self.mailbox_conf(mb).is_some();
        let named = |n: &str| self.configured_boxes(n);
        let in_conf = |c: &Context| {
            self.vmconf
                .as_ref()
                .is_some_and(|vc| vc.mailboxes.iter().any(|m| m.context == c.as_str()))
        };
        let resolver = Resolver {
            store,
            configured: &configured,
            configured_named: &named,
            configured_context: &in_conf,
        };
        let mut out = Vec::new();
        for a in args {
            match resolver.resolve(a) {
                Ok(t) => out.extend(t),
                Err(e) => rep.error(&e),
            }
        }
        out
    }

    /// Mailboxes under a target, in order.
    fn mailboxes_of(&self, t: &Target) -> Result<Vec<MailboxId>> {
        Ok(match t {
            Target::Spool => {
                let mut all = Vec::new();
                for ctx in self.store.contexts()? {
                    all.extend(self.store.mailboxes(&ctx)?);
                }
                all
            }
            Target::Context(c) => self.store.mailboxes(c)?,
            Target::Mailbox(mb) | Target::Folder(mb, _) | Target::Message(mb, _, _) => {
                vec![mb.clone()]
            }
        })
    }
}

/// Parses an age or date option (see `age`): local calendar, or UTC.
pub fn parse_when(s: &str, now: i64, utc: bool) -> Result<i64> {
    let r = if utc {
        crate::age::parse_when(s, now, &Utc)
    } else {
        crate::age::parse_when(s, now, &Local)
    };
    r.map_err(Error::Usage)
}

/// Runs a parsed command line. Never panics on bad input; returns the exit status.
pub fn run(cli: Cli, env: Environment, out: &mut dyn Write, err: &mut dyn Write) -> Exit {
    let mut rep = Reporter::new(err);
    // A change batch finishes even when its reader has gone (`vmtool mv … | head -1`).
    let mut tolerant;
    let out: &mut dyn Write = if matches!(
        cli.command,
        Command::Mv(_)
            | Command::Cp(_)
            | Command::Read(_)
            | Command::Unread(_)
            | Command::Rm(_)
            | Command::Resequence(_)
            | Command::Check(_)
            | Command::Unlock(_)
            | Command::Migrate(_)
            | Command::Archive(_)
            | Command::Purge(_)
            | Command::Restore(_)
            | Command::Convert(_)
    ) {
        tolerant = ReaderMayLeave { out, gone: false };
        &mut tolerant
    } else {
        out
    };
    if matches!(
        cli.command,
        Command::Mv(_)
            | Command::Cp(_)
            | Command::Read(_)
            | Command::Unread(_)
            | Command::Rm(_)
            | Command::Resequence(_)
            | Command::Check(_)
            | Command::Play(_)
            | Command::Convert(_)
    ) {
        change::install_interrupt_handler();
    }
    let result = match &cli.command {
        Command::Completions { shell } => {
            // clap_complete panics on a write error: generate into memory first.
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "vmtool", &mut script);
            out.write_all(&script).map_err(out_err).map(|()| Exit::Ok)
        }
        Command::Man { out: dir } => {
            return match write_man_pages(dir) {
                Ok(()) => Exit::Ok,
                Err(e) => {
                    rep.error(&Error::io("write man pages into", dir, e));
                    Exit::Partial
                }
            };
        }
        Command::Play(a) if a.list_devices => crate::play::cmd_list_devices(out),
        _ => Setup::discover(&cli.global, env, &mut rep).and_then(|setup| match &cli.command {
            Command::Ls(a) => cmd_ls(&setup, a, out, &mut rep),
            Command::Show(a) => cmd_show(&setup, a, out, &mut rep),
            Command::Boxes(a) => cmd_boxes(&setup, a, out, &mut rep),
            Command::Count(a) => cmd_count(&setup, a, out, &mut rep),
            Command::Mv(a) => change::cmd_transfer(&setup, &cli.global, a, false, out, &mut rep),
            Command::Cp(a) => change::cmd_transfer(&setup, &cli.global, a, true, out, &mut rep),
            Command::Read(a) => {
                change::cmd_change(&setup, &cli.global, a, ChangeKind::Read, out, &mut rep)
            }
            Command::Unread(a) => {
                change::cmd_change(&setup, &cli.global, a, ChangeKind::Unread, out, &mut rep)
            }
            Command::Rm(a) => {
                change::cmd_change(&setup, &cli.global, a, ChangeKind::Rm, out, &mut rep)
            }
            Command::Resequence(a) => change::cmd_resequence(&setup, &cli.global, a, out, &mut rep),
            Command::Check(a) => crate::check::cmd_check(&setup, &cli.global, a, out, &mut rep),
            Command::Unlock(a) => change::cmd_unlock(&setup, a, out, &mut rep),
            Command::Migrate(a) => {
                crate::sql::migrate::cmd_migrate(&setup, &cli.global, a, out, &mut rep)
            }
            Command::Watch(a) => crate::watch_cmd::cmd_watch(&setup, a, out, &mut rep),
            Command::Archive(a) => {
                crate::retention::cmd_archive(&setup, &cli.global, a, out, &mut rep)
            }
            Command::Purge(a) => crate::retention::cmd_purge(&setup, &cli.global, a, out, &mut rep),
            Command::Restore(a) => {
                crate::retention::cmd_restore(&setup, &cli.global, a, out, &mut rep)
            }
            Command::Play(a) => crate::play::cmd_play(&setup, &cli.global, a, out, &mut rep),
            Command::Convert(a) => crate::convert::cmd_convert(&setup, a, out, &mut rep),
            Command::Completions { .. } | Command::Man { .. } => Ok(Exit::Ok),
        }),
    };
    // Buffered output must reach its file: a full disk is an error, not silence.
    let result = result.and_then(|code| out.flush().map_err(out_err).map(|()| code));
    match result {
        Ok(code) => code,
        // The reader went away (`| head`): stop quietly, as other filters do.
        Err(e) if is_closed_output(&e) => rep.exit_so_far(),
        Err(e) => {
            rep.error(&e);
            e.exit()
        }
    }
}

/// What `--spool` points at, judged from the names below it.
enum SpoolLevel {
    Spool,
    /// Certainly a level below the spool (a context, box or folder).
    Wrong(String),
    /// Directories, but no `<context>/<box>/<Folder>` anywhere.
    Doubtful(String),
}

/// Looks at most a few levels down, stopping at the first real mailbox, so
/// that a context, box or folder given as the spool is named for what it is.
fn spool_level(root: &Path) -> SpoolLevel {
    let is_folder = |name: &str| Folder::KNOWN.iter().any(|f| f.dir_name() == name);
    let dirs = |p: &Path| -> Vec<(String, PathBuf)> {
        std::fs::read_dir(p)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
                    .collect()
            })
            .unwrap_or_default()
    };
    let up = |n: usize| {
        let mut p = root.to_path_buf();
        for _ in 0..n {
            p = p.parent().map(Path::to_path_buf).unwrap_or(p);
        }
        p.display().to_string()
    };
    let has_msg_files = std::fs::read_dir(root).is_ok_and(|rd| {
        rd.filter_map(|e| e.ok()).any(|e| {
            let n = e.file_name();
            let n = n.as_encoded_bytes();
            n.len() > 8
                && n.starts_with(b"msg")
                && n[3..7].iter().all(u8::is_ascii_digit)
                && n[7] == b'.'
        })
    });
    let top = dirs(root);
    if has_msg_files {
        return SpoolLevel::Wrong(format!(
            "{} is a message folder (it holds msgNNNN files): give the spool, e.g. --spool {}",
            root.display(),
            up(3)
        ));
    }
    if top.iter().any(|(n, _)| is_folder(n)) {
        return SpoolLevel::Wrong(format!(
            "{} is a mailbox (it holds INBOX, Old, …): give the spool, e.g. --spool {}",
            root.display(),
            up(2)
        ));
    }
    let mut boxes_seen = false;
    for (_, ctx) in &top {
        let below = dirs(ctx);
        if below.iter().any(|(n, _)| is_folder(n)) {
            return SpoolLevel::Wrong(format!(
                "{} is a context folder (its boxes hold INBOX, Old, …): give the spool, e.g. --spool {}",
                root.display(),
                up(1)
            ));
        }
        for (_, mb) in &below {
            boxes_seen = true;
            if dirs(mb).iter().any(|(n, _)| is_folder(n) || n == "tmp") {
                return SpoolLevel::Spool;
            }
        }
    }
    if boxes_seen {
        return SpoolLevel::Doubtful(format!(
            "{} does not look like a voicemail spool (no <context>/<box>/INBOX below it)",
            root.display()
        ));
    }
    SpoolLevel::Spool
}

/// Drops output once its reader has closed the pipe, so a change batch is
/// not cut short by `| head`; other errors (a full disk) still fail.
struct ReaderMayLeave<'a> {
    out: &'a mut dyn Write,
    gone: bool,
}

impl Write for ReaderMayLeave<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.gone {
            return Ok(buf.len());
        }
        match self.out.write(buf) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.gone = true;
                Ok(buf.len())
            }
            r => r,
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.gone {
            return Ok(());
        }
        match self.out.flush() {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.gone = true;
                Ok(())
            }
            r => r,
        }
    }
}

/// A write to standard output failed because its reader closed the pipe.
fn is_closed_output(e: &Error) -> bool {
    matches!(e, Error::Io { source, path, .. }
        if source.kind() == io::ErrorKind::BrokenPipe && path == Path::new(STDOUT))
}

const STDOUT: &str = "standard output";

/// Writes `vmtool.1` and one page per subcommand (clap_mangen).
pub fn write_man_pages(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    // The pages carry the release, not the commit `--version` names: they are committed.
    let cmd = <Cli as clap::CommandFactory>::command().version(env!("CARGO_PKG_VERSION"));
    clap_mangen::generate_to(cmd, dir)
}

pub fn out_err(e: io::Error) -> Error {
    Error::io("write", STDOUT, e)
}

/// What a listing row reads of a message's metadata: the parsed `.txt`, or
/// a SQL row directly (the same values without building a `Metadata`).
pub(crate) trait MetaFields {
    fn callerid_raw(&self) -> Option<&str>;
    fn origtime(&self) -> Option<i64>;
    fn duration(&self) -> Option<u64>;
    fn flag_urgent(&self) -> bool;
    fn msg_id(&self) -> Option<&str>;
}

impl MetaFields for Metadata {
    fn callerid_raw(&self) -> Option<&str> {
        Metadata::callerid_raw(self)
    }
    fn origtime(&self) -> Option<i64> {
        Metadata::origtime(self)
    }
    fn duration(&self) -> Option<u64> {
        Metadata::duration(self)
    }
    fn flag_urgent(&self) -> bool {
        Metadata::flag_urgent(self)
    }
    fn msg_id(&self) -> Option<&str> {
        Metadata::msg_id(self)
    }
}

/// As `MsgRow::metadata()` would answer (its keys are all distinct).
impl MetaFields for crate::sql::packed::RowView<'_> {
    fn callerid_raw(&self) -> Option<&str> {
        self.callerid.as_deref()
    }
    fn origtime(&self) -> Option<i64> {
        crate::metadata::leading_integer(self.origtime.as_deref()?)
    }
    fn duration(&self) -> Option<u64> {
        crate::metadata::leading_integer(self.duration.as_deref()?)
            .and_then(|d| u64::try_from(d).ok())
    }
    fn flag_urgent(&self) -> bool {
        self.flag.as_deref() == Some("Urgent")
    }
    fn msg_id(&self) -> Option<&str> {
        self.msg_id.as_deref().filter(|s| !s.is_empty())
    }
}

/// Builds the listing row of one message.
pub(crate) fn message_row(
    setup: &Setup,
    mb: &MailboxId,
    folder: &Folder,
    files: &MsgFiles,
    meta: Option<&Metadata>,
    zone: Zone,
) -> MessageRow {
    let path = setup
        .store
        .location(mb, folder, files.num)
        .display()
        .to_string();
    message_row_from(
        mb,
        folder,
        files,
        meta.map(|m| m as &dyn MetaFields),
        zone,
        path,
    )
}

/// `message_row` with the metadata from anywhere and the path given.
fn message_row_from(
    mb: &MailboxId,
    folder: &Folder,
    files: &MsgFiles,
    meta: Option<&dyn MetaFields>,
    zone: Zone,
    path: String,
) -> MessageRow {
    let cid = meta
        .and_then(|m| m.callerid_raw())
        .map(crate::callerid::CallerId::parse);
    let origtime = meta.and_then(|m| m.origtime());
    let (date, short_date) = match origtime.and_then(|t| zone.stamps(t)) {
        Some((d, s)) => (Some(d), s),
        None => (None, "?".into()),
    };
    let (callerid_name, callerid_num) = match cid {
        Some(c) => (c.name, c.number),
        None => (None, None),
    };
    MessageRow {
        context: mb.context.to_string(),
        mailbox: mb.mailbox().to_string(),
        folder: folder.to_string(),
        number: files.num.to_string(),
        msg_id: meta.and_then(|m| m.msg_id()).map(str::to_string),
        callerid: meta.and_then(|m| m.callerid_raw()).map(str::to_string),
        callerid_name,
        callerid_num,
        origtime,
        date,
        duration: meta.and_then(|m| m.duration()),
        urgent: meta.is_some_and(|m| m.flag_urgent()),
        formats: files.audio.clone(),
        path,
        state: files.state(),
        short_date,
    }
}

pub(crate) struct LsFilter {
    pub folders: Vec<Folder>,
    pub new_only: bool,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub caller: Option<String>,
}

impl LsFilter {
    pub fn folder_ok(&self, f: &Folder) -> bool {
        (self.folders.is_empty() || self.folders.contains(f)) && (!self.new_only || f.is_new())
    }

    pub fn row_ok(&self, row: &MessageRow) -> bool {
        self.fields_ok(
            row.origtime,
            row.callerid_name.as_deref(),
            row.callerid_num.as_deref(),
        )
    }

    /// `row_ok` on the fields it reads.
    pub fn fields_ok(&self, origtime: Option<i64>, name: Option<&str>, num: Option<&str>) -> bool {
        if self.since.is_some() || self.until.is_some() {
            let Some(t) = origtime else { return false };
            if self.since.is_some_and(|s| t < s) || self.until.is_some_and(|u| t >= u) {
                return false;
            }
        }
        if let Some(c) = &self.caller {
            let hit = |s: Option<&str>| s.is_some_and(|v| v.to_lowercase().contains(c));
            if !hit(name) && !hit(num) {
                return false;
            }
        }
        true
    }
}

/// One mailbox's part of a listing, rendered by a worker thread.
struct BoxListing {
    bytes: Vec<u8>,
    rows: usize,
    errors: Vec<Error>,
}

/// Lists one mailbox (all its folders, or the target's folder/message) into a buffer.
fn list_box(setup: &Setup, t: &Target, mb: &MailboxId, filter: &LsFilter, utc: bool) -> BoxListing {
    let mut listing = BoxListing {
        bytes: Vec::new(),
        rows: 0,
        errors: Vec::new(),
    };
    let zone = setup.zone_for(mb, utc);
    let folders = match t {
        Target::Folder(_, f) | Target::Message(_, f, _) => vec![f.clone()],
        _ => match setup.store.folders(mb) {
            Ok(f) => f,
            Err(e) => {
                listing.errors.push(e);
                return listing;
            }
        },
    };
    let mut w = MessageWriter::body_only(&mut listing.bytes, setup.format, setup.style);
    for folder in folders.iter().filter(|f| filter.folder_ok(f)) {
        let only = match t {
            Target::Message(_, _, n) => Some(*n),
            _ => None,
        };
        if let Some(sql) = setup.store.sql() {
            let (rows, errors) = (&mut listing.rows, &mut listing.errors);
            list_sql_folder(sql, mb, folder, only, filter, zone, &mut w, rows, errors);
            continue;
        }
        let want = |m: &MsgFiles| only.is_none_or(|n| m.num == n);
        let (rows, errors) = (&mut listing.rows, &mut listing.errors);
        let result = setup
            .store
            .folder_messages(mb, folder, &want, &mut |files, meta| {
                let meta = match meta {
                    Ok(m) => m,
                    // Moved or deleted between readdir and open (Asterisk, another
                    // vmtool): no longer here, not an error.
                    Err(Error::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::NotFound =>
                    {
                        return
                    }
                    Err(e) => {
                        errors.push(e);
                        return;
                    }
                };
                let row = message_row(setup, mb, folder, files, Some(&meta), zone);
                if filter.row_ok(&row) {
                    // Writing into a Vec cannot fail.
                    let _ = w.write(&row);
                    *rows += 1;
                }
            });
        match result {
            Ok(scan) => {
                if let Some(n) = only {
                    // Orphans are for show/check; a missing number is an error.
                    if !scan.messages.iter().any(|m| m.num == n) {
                        listing.errors.push(Error::NotFound(format!(
                            "no message {} in {}",
                            n.stem(),
                            target::describe(&Target::Folder(mb.clone(), folder.clone()))
                        )));
                    }
                }
            }
            Err(e) => listing.errors.push(e),
        }
    }
    listing
}

/// `list_box` for one folder of a SQL store: rows straight from the table,
/// without the `Metadata` a `.txt` needs (the same fields, as `MetaFields`).
#[allow(clippy::too_many_arguments)]
fn list_sql_folder<W: Write>(
    sql: &crate::sql::SqlStore,
    mb: &MailboxId,
    folder: &Folder,
    only: Option<crate::spool::MsgNum>,
    filter: &LsFilter,
    zone: Zone,
    w: &mut MessageWriter<W>,
    rows: &mut usize,
    errors: &mut Vec<Error>,
) {
    // One `dir` per folder; each path is it plus the message's stem.
    let dir = sql.table.dir(mb, folder);
    let mut found = false;
    let audio = vec![sql.ext.clone()];
    let (context, mailbox) = (mb.context.as_str(), mb.mailbox());
    let mut path = String::with_capacity(dir.len() + 8);
    let result = sql.folder_rows(mb, folder, &mut |num, r| {
        if only.is_some_and(|n| n != num) {
            return;
        }
        found = true;
        if w.is_json() {
            // No owned `MessageRow`: the fields are borrowed where they are.
            let cid = r.callerid.as_deref().map(crate::callerid::CallerId::parse);
            let (name, cnum) = match &cid {
                Some(c) => (c.name.as_deref(), c.number.as_deref()),
                None => (None, None),
            };
            let origtime = MetaFields::origtime(r);
            if !filter.fields_ok(origtime, name, cnum) {
                return;
            }
            let date = origtime.and_then(|t| zone.stamps(t));
            let number = num.to_string();
            path.clear();
            path.push_str(&dir);
            path.push('/');
            path.push_str("msg");
            path.push_str(&number);
            let formats: &[String] = if r.has_recording { &audio } else { &[] };
            let row = MessageRowRef {
                context,
                mailbox,
                folder: folder.dir_name(),
                number: &number,
                msg_id: MetaFields::msg_id(r),
                callerid: r.callerid.as_deref(),
                callerid_name: name,
                callerid_num: cnum,
                origtime,
                date: date.as_ref().map(|d| d.0.as_str()),
                duration: MetaFields::duration(r),
                urgent: MetaFields::flag_urgent(r),
                formats,
                path: &path,
                state: if r.has_recording {
                    MsgState::Complete
                } else {
                    MsgState::Phantom
                },
            };
            // Writing into a Vec cannot fail.
            let _ = w.write_json_ref(&row);
            *rows += 1;
            return;
        }
        let files = MsgFiles {
            num,
            txt: true,
            audio: if r.has_recording {
                audio.clone()
            } else {
                Vec::new()
            },
        };
        let path = format!("{dir}/{}", num.stem());
        let row = message_row_from(mb, folder, &files, Some(r), zone, path);
        if filter.row_ok(&row) {
            // Writing into a Vec cannot fail.
            let _ = w.write(&row);
            *rows += 1;
        }
    });
    match result {
        Ok(()) => {
            if let Some(n) = only.filter(|_| !found) {
                errors.push(Error::NotFound(format!(
                    "no message {} in {}",
                    n.stem(),
                    target::describe(&Target::Folder(mb.clone(), folder.clone()))
                )));
            }
        }
        Err(e) => errors.push(e),
    }
}

/// Mailboxes rendered in parallel per chunk; output keeps the spool's order
/// and memory stays bounded by the chunk.
const LS_CHUNK: usize = 64;

impl LsFilter {
    pub fn from_args(setup: &Setup, a: &LsArgs) -> Result<LsFilter> {
        let now = setup.env.now();
        let mut folders = Vec::new();
        for f in &a.folder {
            folders.push(Folder::known(f).unwrap_or(Folder::from_dir_name(f)?));
        }
        let when = |w: &Option<String>| w.as_deref().map(|s| parse_when(s, now, a.utc)).transpose();
        Ok(LsFilter {
            folders,
            new_only: a.new,
            since: when(&a.since)?,
            until: when(&a.until)?,
            caller: a.caller.as_ref().map(|c| c.to_lowercase()),
        })
    }
}

fn cmd_ls(setup: &Setup, a: &LsArgs, out: &mut dyn Write, rep: &mut Reporter) -> Result<Exit> {
    use rayon::prelude::*;
    let filter = LsFilter::from_args(setup, a)?;
    if let Some(dir) = &a.archive {
        return crate::retention::ls_archive(setup, a, &filter, dir, out, rep);
    }
    let targets = if a.targets.is_empty() {
        vec![Target::Spool]
    } else {
        setup.resolve_all(&a.targets, rep)
    };
    let mut w = MessageWriter::new(
        io::BufWriter::with_capacity(1 << 16, out),
        setup.format,
        setup.style,
    );
    let mut listed = 0usize;
    for t in &targets {
        // The whole table in one ordered read (on failure, box by box as
        // before, where the error shows again).
        let whole = match (t, setup.store.sql()) {
            (Target::Spool, Some(sql)) => sql.read_all().ok(),
            _ => None,
        };
        // Contexts one at a time, so only one context's box names are held.
        let contexts: Vec<Option<Context>> = match t {
            Target::Spool => match setup.store.contexts() {
                Ok(c) => c.into_iter().map(Some).collect(),
                Err(e) => {
                    rep.error(&e);
                    continue;
                }
            },
            _ => vec![None],
        };
        for ctx in contexts {
            let boxes = match &ctx {
                Some(c) => setup.store.mailboxes(c),
                None => setup.mailboxes_of(t),
            };
            let boxes = match boxes {
                Ok(b) => b,
                Err(e) => {
                    rep.error(&e);
                    continue;
                }
            };
            // Rows already read (whole table): bigger chunks, fewer waits.
            let chunk_len = if whole.is_some() {
                4 * LS_CHUNK
            } else {
                LS_CHUNK
            };
            for chunk in boxes.chunks(chunk_len) {
                setup.store.prefetch(chunk);
                let parts: Vec<BoxListing> = chunk
                    .par_iter()
                    .map(|mb| list_box(setup, t, mb, &filter, a.utc))
                    .collect();
                for part in parts {
                    for e in &part.errors {
                        rep.error(e);
                    }
                    w.write_rendered(&part.bytes).map_err(out_err)?;
                    listed += part.rows;
                }
                setup.store.release(chunk);
            }
        }
    }
    w.finish().map_err(out_err)?;
    Ok(rep.finish(listed))
}

/// One message for `show`: files, metadata (or why not), audio facts.
fn show_one(
    setup: &Setup,
    mb: &MailboxId,
    folder: &Folder,
    files: &MsgFiles,
    a: &ShowArgs,
    out: &mut dyn Write,
    json: bool,
) -> Result<()> {
    let zone = setup.zone_for(mb, a.utc);
    let mut problems: Vec<String> = Vec::new();
    let meta = if files.txt {
        match setup.store.read_metadata(mb, folder, files.num) {
            Ok(m) => {
                problems.extend(m.problems());
                problems.extend(m.warnings.iter().cloned());
                Some(m)
            }
            Err(e) => {
                problems.push(format!("metadata unreadable: {e}"));
                None
            }
        }
    } else {
        None
    };
    match files.state() {
        MsgState::Phantom => problems.push(
            "phantom: .txt without audio; counted as a message but cannot be played, and it stops Asterisk's compaction".into(),
        ),
        MsgState::Orphan => problems.push(
            "orphan: audio without .txt; invisible to counts, and adopted by the next message given this number".into(),
        ),
        MsgState::Complete => {}
    }
    if folder.is_known()
        && folder == &Folder::Urgent
        && meta.as_ref().is_some_and(|m| !m.flag_urgent())
    {
        problems.push("in Urgent/ without flag=Urgent (still counted as urgent by MWI)".into());
    }
    let mut audio = Vec::new();
    for ext in &files.audio {
        let path = setup.store.spool().msg_file(mb, folder, files.num, ext);
        let size = std::fs::symlink_metadata(&path).map(|m| m.len()).ok();
        match setup.store.audio_info(mb, folder, files.num, ext) {
            Ok(info) => {
                for w in &info.warnings {
                    problems.push(format!("{}.{ext}: {w}", files.num.stem()));
                }
                if let (Some(d), Some(m)) = (
                    info.duration_secs(),
                    meta.as_ref().and_then(|m| m.duration()),
                ) {
                    // Asterisk truncates; more than 2 s apart means a damaged or foreign file.
                    if (d - m as f64).abs() > 2.0 {
                        problems.push(format!(
                            "{}.{ext}: audio lasts {d:.2} s but duration={m}",
                            files.num.stem()
                        ));
                    }
                }
                audio.push((
                    ext.clone(),
                    info.format.name(),
                    size.unwrap_or(info.bytes),
                    info.duration_secs(),
                    None,
                ));
            }
            Err(e) => {
                let why = match &e {
                    Error::Audio { source, .. } => source.to_string(),
                    other => other.to_string(),
                };
                problems.push(format!("{}.{ext}: {why}", files.num.stem()));
                audio.push((
                    ext.clone(),
                    crate::audio::AudioFormat::from_extension(ext).name(),
                    size.unwrap_or(0),
                    None,
                    Some(why),
                ));
            }
        }
    }
    let here = target::describe(&Target::Message(mb.clone(), folder.clone(), files.num));
    let path = setup.store.location(mb, folder, files.num);
    if json {
        let fields: serde_json::Map<String, serde_json::Value> = meta
            .as_ref()
            .map(|m| {
                m.fields()
                    .iter()
                    .map(|f| (f.key.clone(), serde_json::Value::String(f.value.clone())))
                    .collect()
            })
            .unwrap_or_default();
        let row = message_row(setup, mb, folder, files, meta.as_ref(), zone);
        let audio_json: Vec<_> = audio
            .iter()
            .map(|(ext, fmt, size, dur, err)| {
                serde_json::json!({"extension": ext, "format": fmt, "bytes": size, "seconds": dur, "error": err})
            })
            .collect();
        let mut obj = serde_json::to_value(&row).map_err(|e| Error::Usage(e.to_string()))?;
        if let Some(o) = obj.as_object_mut() {
            o.insert("fields".into(), serde_json::Value::Object(fields));
            o.insert("audio".into(), serde_json::Value::Array(audio_json));
            o.insert("problems".into(), serde_json::json!(problems));
        }
        serde_json::to_writer(&mut *out, &obj).map_err(|e| out_err(e.into()))?;
        writeln!(out).map_err(out_err)?;
        return Ok(());
    }
    let st = setup.style;
    let state = match files.state() {
        MsgState::Complete => "complete",
        MsgState::Phantom => "phantom",
        MsgState::Orphan => "orphan",
    };
    writeln!(out, "{} ({state})", st.bold(&sanitize(&here))).map_err(out_err)?;
    match setup.store.sql() {
        Some(sql) => writeln!(
            out,
            "  row: table {}, dir={}, msgnum={}",
            sql.table.name,
            sanitize(&sql.table.dir(mb, folder)),
            files.num.get()
        ),
        None => writeln!(out, "  file: {}", sanitize(&path.display().to_string())),
    }
    .map_err(out_err)?;
    let source = if setup.store.sql().is_some() {
        "the row"
    } else {
        "the .txt"
    };
    if let Some(m) = &meta {
        if m.rewritten {
            writeln!(
                out,
                "  (this .txt was regenerated by Asterisk: ';!' header)"
            )
            .map_err(out_err)?;
        }
        writeln!(out, "  fields:").map_err(out_err)?;
        let width = m.fields().iter().map(|f| f.key.len()).max().unwrap_or(0);
        for f in m.fields() {
            writeln!(
                out,
                "    {:width$} = {}",
                sanitize(&f.key),
                sanitize(&f.value)
            )
            .map_err(out_err)?;
            if a.explain {
                let text = metadata::explain(&f.key)
                    .unwrap_or("Not a key Asterisk writes; kept as found.");
                writeln!(out, "    {:width$}   {}", "", text).map_err(out_err)?;
            }
        }
        writeln!(out, "  read as:").map_err(out_err)?;
        if let Some(c) = m.callerid() {
            let who = if c.is_unknown() {
                "no caller ID (Unknown)".to_string()
            } else {
                match (&c.name, &c.number) {
                    (Some(n), Some(num)) => format!("{n} <{num}>"),
                    (Some(n), None) => n.clone(),
                    (None, Some(num)) => num.clone(),
                    (None, None) => "-".into(),
                }
            };
            writeln!(out, "    caller:   {}", sanitize(&who)).map_err(out_err)?;
        }
        if let Some(t) = m.origtime() {
            let shown = zone
                .format(t, "%Y-%m-%d %H:%M:%S %Z")
                .unwrap_or_else(|| "?".into());
            writeln!(out, "    recorded: {shown} (origtime {t})").map_err(out_err)?;
        }
        if let Some(d) = m.duration() {
            writeln!(
                out,
                "    duration: {} ({d} s, from {source})",
                render::duration_text(d)
            )
            .map_err(out_err)?;
        }
        let state_word = if folder.is_new() {
            "new (unheard)"
        } else if folder == &Folder::Old {
            "old (heard)"
        } else {
            "saved in a folder"
        };
        writeln!(
            out,
            "    state:    {state_word}{}",
            if m.flag_urgent() { ", urgent" } else { "" }
        )
        .map_err(out_err)?;
    }
    writeln!(out, "  audio:").map_err(out_err)?;
    if audio.is_empty() {
        writeln!(out, "    none").map_err(out_err)?;
    }
    for (ext, fmt, size, dur, err) in &audio {
        let d = match (dur, err) {
            (Some(d), _) => format!("{d:.2} s"),
            (None, Some(_)) => "cannot measure".into(),
            (None, None) => "?".into(),
        };
        writeln!(
            out,
            "    {}.{:6} {:6} {:>9} bytes  {d}",
            files.num.stem(),
            sanitize(ext),
            fmt,
            size
        )
        .map_err(out_err)?;
    }
    writeln!(out, "  problems:").map_err(out_err)?;
    if problems.is_empty() {
        writeln!(out, "    none").map_err(out_err)?;
    }
    for p in &problems {
        writeln!(out, "    {}", st.yellow(&sanitize(p))).map_err(out_err)?;
    }
    Ok(())
}

fn cmd_show(setup: &Setup, a: &ShowArgs, out: &mut dyn Write, rep: &mut Reporter) -> Result<Exit> {
    if let Some(dir) = &a.archive {
        return crate::retention::show_archive(setup, a, dir, out, rep);
    }
    let json = setup.format == Format::Json;
    let mut shown = 0usize;
    let mut first = true;
    for t in setup.resolve_all(&a.targets, rep) {
        let boxes = match setup.mailboxes_of(&t) {
            Ok(b) => b,
            Err(e) => {
                rep.error(&e);
                continue;
            }
        };
        for mb in boxes {
            let folders = match &t {
                Target::Folder(_, f) | Target::Message(_, f, _) => vec![f.clone()],
                _ => setup.store.folders(&mb)?,
            };
            for folder in folders {
                let scan = match setup.store.scan_folder(&mb, &folder) {
                    Ok(s) => s,
                    Err(e) => {
                        rep.error(&e);
                        continue;
                    }
                };
                let mut hit = false;
                for files in &scan.messages {
                    if let Target::Message(_, _, n) = &t {
                        if files.num != *n {
                            continue;
                        }
                    }
                    hit = true;
                    if !first && !json {
                        writeln!(out).map_err(out_err)?;
                    }
                    first = false;
                    show_one(setup, &mb, &folder, files, a, out, json)?;
                    shown += 1;
                    if let Some(irr) = scan.irregular_of(files.num) {
                        let p = setup.store.spool().folder_dir(&mb, &folder).join(&irr.name);
                        let e = crate::fsutil::not_regular_err(irr.kind);
                        rep.error(&Error::io("read", p, e));
                    }
                }
                if let Target::Message(_, _, n) = &t {
                    if !hit {
                        rep.error(&Error::NotFound(format!(
                            "no message {} in {}",
                            n.stem(),
                            target::describe(&Target::Folder(mb.clone(), folder.clone()))
                        )));
                    }
                } else if !json && !scan.noise.is_empty() && !matches!(t, Target::Message(..)) {
                    for n in &scan.noise {
                        let why = match n {
                            Noise::Lock(_) => "lock file (Asterisk or vmtool is working here)",
                            Noise::Backup(_) => "backup left by an unfinished prepend-forward",
                            Noise::Prepend(_) => "prepend recording in progress or abandoned",
                            Noise::Stray(_, why) => why,
                            Noise::Foreign(_) => "not an Asterisk file",
                        };
                        rep.warn(&format!(
                            "{}: {} — {why}",
                            target::describe(&Target::Folder(mb.clone(), folder.clone())),
                            n.name()
                        ));
                    }
                }
            }
        }
    }
    Ok(rep.finish(shown))
}

/// One mailbox line of `boxes`.
#[derive(Debug, serde::Serialize)]
struct BoxRow {
    context: String,
    #[serde(rename = "box")]
    mailbox: String,
    owner: Option<String>,
    /// INBOX + Urgent, as `voicemail show users` and MWI count.
    new: u32,
    old: u32,
    urgent: u32,
    /// INBOX alone (AMI MailboxCount `NewMessages`).
    inbox: u32,
    folders: BTreeMap<String, u32>,
    maxmsg: Option<u32>,
    /// INBOX counted the way the deposit capacity check counts.
    inbox_capacity_count: u32,
    full: bool,
    configured: bool,
    directory: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<u64>,
}

fn dir_bytes(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

fn box_row(
    setup: &Setup,
    mb: &MailboxId,
    conf: Option<&MailboxConf>,
    bytes: bool,
) -> Result<BoxRow> {
    let exists = setup.store.mailbox_exists(mb);
    let mut folders = BTreeMap::new();
    let (mut urgent, mut inbox, mut old, mut cap) = (0, 0, 0, 0);
    if exists {
        for f in setup.store.folders(mb)? {
            let c = setup.store.folder_counts(mb, &f)?;
            match f {
                Folder::Urgent => urgent = c.mwi,
                Folder::Inbox => {
                    inbox = c.mwi;
                    cap = c.capacity;
                }
                Folder::Old => old = c.mwi,
                other => {
                    if c.mwi > 0 {
                        folders.insert(other.to_string(), c.mwi);
                    }
                }
            }
        }
    }
    let maxmsg = conf
        .map(|c| c.maxmsg)
        .or_else(|| setup.vmconf.as_ref().map(|v| v.general.maxmsg));
    Ok(BoxRow {
        context: mb.context.to_string(),
        mailbox: mb.mailbox().to_string(),
        owner: conf.map(|c| c.fullname.clone()),
        new: inbox + urgent,
        old,
        urgent,
        inbox,
        folders,
        maxmsg,
        inbox_capacity_count: cap,
        full: maxmsg.is_some_and(|m| cap >= m),
        configured: conf.is_some(),
        directory: exists,
        bytes: (bytes && exists).then(|| dir_bytes(&setup.store.spool().mailbox_dir(mb))),
    })
}

fn cmd_boxes(
    setup: &Setup,
    a: &BoxesArgs,
    out: &mut dyn Write,
    rep: &mut Reporter,
) -> Result<Exit> {
    if a.like_asterisk {
        return show_users_like_asterisk(setup, a, out);
    }
    let mut contexts: Vec<Context> = Vec::new();
    // A box, folder or message target lists just its box.
    let mut only: BTreeMap<Context, Vec<MailboxId>> = BTreeMap::new();
    if a.contexts.is_empty() {
        contexts.extend(setup.store.contexts()?);
        if let Some(vc) = &setup.vmconf {
            for m in &vc.mailboxes {
                if let Ok(c) = Context::new(&m.context) {
                    if !contexts.contains(&c) {
                        contexts.push(c);
                    }
                }
            }
        }
        contexts.sort();
    } else {
        for c in &a.contexts {
            let as_context = Context::new(c).ok().filter(|ctx| {
                setup.store.context_exists(ctx)
                    || setup
                        .vmconf
                        .as_ref()
                        .is_some_and(|v| v.mailboxes.iter().any(|m| m.context == ctx.as_str()))
            });
            if let Some(ctx) = as_context {
                only.remove(&ctx);
                if !contexts.contains(&ctx) {
                    contexts.push(ctx);
                }
                continue;
            }
            for t in setup.resolve_all(std::slice::from_ref(c), rep) {
                let (ctx, mb) = match t {
                    Target::Spool => continue,
                    Target::Context(ctx) => (ctx, None),
                    Target::Mailbox(mb) | Target::Folder(mb, _) | Target::Message(mb, _, _) => {
                        (mb.context.clone(), Some(mb))
                    }
                };
                let whole = contexts.contains(&ctx) && !only.contains_key(&ctx);
                if !contexts.contains(&ctx) {
                    contexts.push(ctx.clone());
                }
                match mb {
                    Some(mb) if !whole => only.entry(ctx).or_default().push(mb),
                    _ => {
                        only.remove(&ctx);
                    }
                }
            }
        }
    }
    let mut table = io::BufWriter::new(out);
    if setup.format == Format::Table {
        let mut h = format!(
            "{} {} {:>4} {:>4} {:>6} {:>7} ",
            render::fit("MAILBOX", 16),
            render::fit("OWNER", 22),
            "NEW",
            "OLD",
            "URGENT",
            "MAXMSG"
        );
        if a.bytes {
            h.push_str(&format!("{:>10} ", "BYTES"));
        }
        h.push_str("FOLDERS / STATE");
        writeln!(table, "{}", setup.style.bold(&h)).map_err(out_err)?;
    }
    let mut rows = 0usize;
    for ctx in &contexts {
        let mut boxes: Vec<MailboxId> = if setup.store.context_exists(ctx) {
            setup.store.mailboxes(ctx)?
        } else {
            Vec::new()
        };
        if let Some(vc) = &setup.vmconf {
            for m in vc.mailboxes.iter().filter(|m| m.context == ctx.as_str()) {
                if let Ok(mb) = MailboxId::new(ctx.clone(), &m.mailbox) {
                    if !boxes.contains(&mb) {
                        boxes.push(mb);
                    }
                }
            }
        }
        if let Some(picked) = only.get(ctx) {
            boxes = picked.clone();
            boxes.dedup();
        }
        boxes.sort();
        boxes.dedup();
        for mb in boxes {
            let conf = setup.mailbox_conf(&mb);
            let row = match box_row(setup, &mb, conf, a.bytes) {
                Ok(r) => r,
                Err(e) => {
                    rep.error(&e);
                    continue;
                }
            };
            rows += 1;
            match setup.format {
                Format::Json => {
                    serde_json::to_writer(&mut table, &row).map_err(|e| out_err(e.into()))?;
                    writeln!(table).map_err(out_err)?;
                }
                Format::Csv => {
                    if rows == 1 {
                        render::csv_record(
                            &mut table,
                            &[
                                "context",
                                "box",
                                "owner",
                                "new",
                                "old",
                                "urgent",
                                "inbox",
                                "folders",
                                "maxmsg",
                                "full",
                                "configured",
                                "directory",
                                "bytes",
                            ],
                        )
                        .map_err(out_err)?;
                    }
                    let folders = row
                        .folders
                        .iter()
                        .map(|(k, v)| format!("{k}:{v}"))
                        .collect::<Vec<_>>()
                        .join(" ");
                    render::csv_record(
                        &mut table,
                        &[
                            render::csv_text(&row.context).into_owned(),
                            render::csv_text(&row.mailbox).into_owned(),
                            render::csv_text(row.owner.as_deref().unwrap_or("")).into_owned(),
                            row.new.to_string(),
                            row.old.to_string(),
                            row.urgent.to_string(),
                            row.inbox.to_string(),
                            folders,
                            row.maxmsg.map(|m| m.to_string()).unwrap_or_default(),
                            row.full.to_string(),
                            row.configured.to_string(),
                            row.directory.to_string(),
                            row.bytes.map(|b| b.to_string()).unwrap_or_default(),
                        ],
                    )
                    .map_err(out_err)?;
                }
                Format::Table => {
                    let owner = row.owner.as_deref().map(str::trim).unwrap_or("");
                    let maxmsg = match row.maxmsg {
                        Some(m) => format!("{}/{m}", row.inbox_capacity_count),
                        None => "-".into(),
                    };
                    let mut state: Vec<String> = row
                        .folders
                        .iter()
                        .map(|(k, v)| format!("{k}:{v}"))
                        .collect();
                    if row.full {
                        state.push(setup.style.red("FULL").into_owned());
                    }
                    if !row.configured {
                        state.push(setup.style.yellow("not in voicemail.conf").into_owned());
                    }
                    if !row.directory {
                        state.push(if setup.store.sql().is_some() {
                            "no rows yet".into()
                        } else {
                            "no directory yet".into()
                        });
                    }
                    let mut line = format!(
                        "{} {} {:>4} {:>4} {:>6} {:>7} ",
                        render::fit(&sanitize(&format!("{}@{}", row.mailbox, row.context)), 16),
                        render::fit(&sanitize(owner), 22),
                        row.new,
                        row.old,
                        row.urgent,
                        maxmsg
                    );
                    if a.bytes {
                        line.push_str(&format!(
                            "{:>10} ",
                            row.bytes
                                .map(|b| b.to_string())
                                .unwrap_or_else(|| "-".into())
                        ));
                    }
                    line.push_str(&state.join(" "));
                    writeln!(table, "{}", line.trim_end()).map_err(out_err)?;
                }
            }
        }
    }
    table.flush().map_err(out_err)?;
    Ok(rep.finish(rows))
}

/// `voicemail show users [for CONTEXT]`, byte for byte: configured mailboxes in
/// load order, `%-10s %-5s %-25s %-10s %6s` (C pads by bytes, not characters).
fn show_users_like_asterisk(setup: &Setup, a: &BoxesArgs, out: &mut dyn Write) -> Result<Exit> {
    let Some(vc) = &setup.vmconf else {
        return Err(Error::NotFound(
            "voicemail show users needs voicemail.conf: give --voicemail-conf FILE".into(),
        ));
    };
    let context = a.contexts.first();
    if a.contexts.len() > 1 {
        return Err(Error::Usage(
            "voicemail show users takes at most one context".into(),
        ));
    }
    let pad = |s: &str, w: usize, right: bool| -> Vec<u8> {
        let mut v = Vec::new();
        let fill = w.saturating_sub(s.len());
        if right {
            v.extend(std::iter::repeat_n(b' ', fill));
        }
        v.extend_from_slice(s.as_bytes());
        if !right {
            v.extend(std::iter::repeat_n(b' ', fill));
        }
        v
    };
    let line = |cols: [&str; 5]| -> Vec<u8> {
        let mut v = Vec::new();
        for (i, (c, w)) in cols.iter().zip([10, 5, 25, 10, 6]).enumerate() {
            if i > 0 {
                v.push(b' ');
            }
            v.extend(pad(c, w, i == 4));
        }
        v.push(b'\n');
        v
    };
    if let Some(c) = context {
        if !vc.mailboxes.iter().any(|m| &m.context == c) {
            writeln!(out, "No such voicemail context \"{c}\"").map_err(out_err)?;
            return Ok(Exit::NotFound);
        }
    }
    out.write_all(&line(["Context", "Mbox", "User", "Zone", "NewMsg"]))
        .map_err(out_err)?;
    let mut n = 0;
    for m in vc
        .mailboxes
        .iter()
        .filter(|m| context.is_none_or(|c| &m.context == c))
    {
        let new = match MailboxId::new(Context::new(&m.context)?, &m.mailbox) {
            Ok(mb) => setup.store.count(&mb).map(|c| c.new_total()).unwrap_or(0),
            Err(_) => 0,
        };
        let zone = m.tz.clone().unwrap_or_default();
        out.write_all(&line([
            &m.context,
            &m.mailbox,
            &m.fullname,
            &zone,
            &new.to_string(),
        ]))
        .map_err(out_err)?;
        n += 1;
    }
    writeln!(out, "{n} voicemail users configured.").map_err(out_err)?;
    Ok(Exit::Ok)
}

fn cmd_count(
    setup: &Setup,
    a: &CountArgs,
    out: &mut dyn Write,
    rep: &mut Reporter,
) -> Result<Exit> {
    let mut ok = 0usize;
    for t in setup.resolve_all(&a.boxes, rep) {
        let Target::Mailbox(mb) = &t else {
            rep.error(&Error::Usage(format!(
                "count takes a mailbox (box@context), not {}",
                target::describe(&t)
            )));
            continue;
        };
        let c = match setup.store.count(mb) {
            Ok(c) => c,
            Err(e) => {
                rep.error(&e);
                continue;
            }
        };
        let line = match setup.format {
            Format::Json => serde_json::json!({"mailbox": mb.to_string(), "urgent": c.urgent, "new": c.new, "old": c.old}).to_string(),
            Format::Csv => {
                if ok == 0 {
                    writeln!(out, "mailbox,urgent,new,old").map_err(out_err)?;
                }
                format!("{},{},{},{}", render::csv_text(&mb.to_string()), c.urgent, c.new, c.old)
            }
            Format::Table => format!("{} urgent={} new={} old={}", sanitize(&mb.to_string()), c.urgent, c.new, c.old),
        };
        writeln!(out, "{line}").map_err(out_err)?;
        ok += 1;
    }
    Ok(rep.finish(ok))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_made_stamps_match_chrono_formatting() {
        let zones = [
            Zone::Utc,
            Zone::Named(chrono_tz::Europe::Paris),
            Zone::Named(chrono_tz::Asia::Kolkata),
            Zone::Named(chrono_tz::America::St_Johns),
            Zone::Named(chrono_tz::Australia::Lord_Howe),
        ];
        for zone in zones {
            for ts in [0, -5, 1_790_000_000, 1_711_846_800, 253_402_200_000] {
                let (rfc, table) = zone.stamps(ts).unwrap();
                assert_eq!(rfc, zone.format(ts, "%Y-%m-%dT%H:%M:%S%:z").unwrap());
                assert_eq!(table, zone.format(ts, "%Y-%m-%d %H:%M").unwrap());
            }
        }
        // Past year 9999 as before (chrono's %Y would add a sign).
        let far = Zone::Named(chrono_tz::Europe::Paris).stamps(253_402_300_799);
        assert_eq!(far.unwrap().0, "10000-01-01T00:59:59+01:00");
    }
}
