//! The command layer: the only code that sees clap. `cli.rs` holds the
//! top-level definition; each subcommand has one file with its arguments and
//! an `exec` that turns them into a library call and renders the result.
//! This file owns what every command shares: discovery of the spool, the
//! configuration and the store (`Setup`), the per-item `Reporter`, the
//! dispatch and the exit status. The library below never imports this module.

mod archive;
mod boxes;
mod change;
mod check;
pub mod cli;
mod completions;
pub use completions::complete_if_asked;
mod convert;
mod count;
mod deposit;
mod greeting;
mod ls;
mod migrate;
mod play;
mod report;
mod resequence;
mod serve;
mod show;
mod unlock;
mod watch;

use crate::config::{AsteriskConf, LockMode, MailboxConf, VoicemailConf};
use crate::error::{Error, Exit, Result};
use crate::listing::Zone;
use crate::lock::LockOptions;
use crate::render::{sanitize, Format, Style};
use crate::spool::{Context, Folder, MailboxId, Spool};
use crate::store::change::Changer;
use crate::store::{MailboxStore, Store, StoreWanted};
use crate::target::{Resolver, Target};
use change::ChangeKind;
use chrono::{Local, Utc};
use cli::{Cli, ColorChoice, Command, GlobalArgs, LockModeArg};
use std::collections::BTreeSet;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// What every command file imports.
pub(crate) mod prelude {
    pub use super::cli::GlobalArgs;
    pub use super::{
        ami_targets, changer_for, check_file_storage, notify_asterisk, out_err, parse_when,
        Reporter, Setup, INTERRUPTED,
    };
    pub use crate::error::{Error, Exit, Result};
    pub use crate::metadata::{self, Metadata};
    pub use crate::render;
    pub use crate::render::{sanitize, Format};
    pub use crate::spool::{Context, Folder, MailboxId, MsgNum};
    pub use crate::store::MailboxStore;
    pub use crate::target::{self, Target};
    pub use clap::Args;
    pub use std::io::Write;
    pub use std::path::{Path, PathBuf};
}

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
    /// The command reads only an archive: no live spool or configuration needed.
    pub archive_only: bool,
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
            archive_only: false,
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
        if !spool_dir.is_dir() && !sql_wanted && !env.archive_only {
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
        if spool_dir.is_dir() && !env.archive_only {
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
            if !g.quiet && !env.archive_only {
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
        let (store, note) = Store::open(
            spool,
            &StoreWanted {
                db: g.db.as_deref(),
                env_db: std::env::var("VMTOOL_DB").ok().as_deref(),
                table: g.db_table.as_deref(),
                odbc_ini: g.odbc_ini.as_deref(),
                spool_prefix: g.spool_prefix.as_deref(),
            },
            vmconf.as_ref(),
            &etc_dir,
        )?;
        if let Some(note) = note.filter(|_| g.verbose) {
            rep.note(&note);
        }
        Ok(Setup {
            store,
            vmconf,
            astconf,
            style: Style { color },
            format: match g.format {
                cli::Format::Table => Format::Table,
                cli::Format::Json => Format::Json,
                cli::Format::Csv => Format::Csv,
            },
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

    /// Whether these boxes' dates are shown in more than one zone: then each
    /// date in a table says its zone.
    pub fn zones_differ<'a>(
        &self,
        boxes: impl IntoIterator<Item = &'a MailboxId>,
        utc: bool,
    ) -> bool {
        if utc || self.vmconf.is_none() {
            return false;
        }
        let mut first = None;
        boxes.into_iter().any(|mb| {
            let z = self.zone_for(mb, false);
            *first.get_or_insert(z) != z
        })
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

    /// Resolves one TARGET (the web server's URLs go through here too).
    pub fn resolve_one(&self, t: &str) -> Result<Vec<Target>> {
        let configured = |mb: &MailboxId| self.mailbox_conf(mb).is_some();
        let named = |n: &str| self.configured_boxes(n);
        let in_conf = |c: &Context| {
            self.vmconf
                .as_ref()
                .is_some_and(|vc| vc.mailboxes.iter().any(|m| m.context == c.as_str()))
        };
        Resolver {
            store: &self.store,
            configured: &configured,
            configured_named: &named,
            configured_context: &in_conf,
        }
        .resolve(t)
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
    pub(crate) fn mailboxes_of(&self, t: &Target) -> Result<Vec<MailboxId>> {
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
pub fn run(cli: Cli, mut env: Environment, out: &mut dyn Write, err: &mut dyn Write) -> Exit {
    let mut rep = Reporter::new(err);
    // An archive is readable on any machine, with or without a spool.
    env.archive_only = match &cli.command {
        Command::Ls(a) => a.archive.is_some(),
        Command::Show(a) => a.archive.is_some(),
        _ => false,
    };
    // A change batch finishes even when its reader has gone (`vmtool mv … | head -1`).
    let mut tolerant;
    let out: &mut dyn Write = if batch_command(&cli.command)
        || matches!(
            cli.command,
            Command::Unlock(_)
                | Command::Migrate(_)
                | Command::Archive(_)
                | Command::Purge(_)
                | Command::Restore(_)
        ) {
        tolerant = ReaderMayLeave { out, gone: false };
        &mut tolerant
    } else {
        out
    };
    if batch_command(&cli.command) || matches!(cli.command, Command::Play(_) | Command::Greeting(_))
    {
        install_interrupt_handler();
    }
    let accepted = formats_of(&cli.command);
    if !accepted.contains(&cli.global.format) {
        let names: Vec<&str> = accepted
            .iter()
            .map(|f| match f {
                cli::Format::Table => "text",
                other => other.name(),
            })
            .collect();
        rep.error(&Error::Usage(format!(
            "vmtool {} prints {} only, not --format {} (json and csv are for ls, boxes, count, check and the change commands; json also for show, report and watch)",
            command_name(&cli.command),
            names.join(" or "),
            cli.global.format.name()
        )));
        return Exit::Usage;
    }
    let result = match &cli.command {
        Command::Completions { shell } => completions::exec(*shell, out),
        Command::Man { out: dir } => {
            return match completions::write_man_pages(dir) {
                Ok(()) => Exit::Ok,
                Err(e) => {
                    rep.error(&Error::io("write man pages into", dir, e));
                    Exit::Partial
                }
            };
        }
        Command::Play(a) if a.list_devices => play::list_devices(out),
        Command::Serve(a) if a.hash_password.is_some() => serve::hash_password(a, out),
        _ => Setup::discover(&cli.global, env, &mut rep).and_then(|setup| {
            // The server owns its setup: requests outlive any borrow of this frame.
            if let Command::Serve(a) = &cli.command {
                return serve::exec(setup, &cli.global, a, &mut rep);
            }
            let (s, g, r) = (&setup, &cli.global, &mut rep);
            match &cli.command {
                Command::Ls(a) => ls::exec(s, a, out, r),
                Command::Show(a) => show::exec(s, a, out, r),
                Command::Boxes(a) => boxes::exec(s, a, out, r),
                Command::Count(a) => count::exec(s, a, out, r),
                Command::Mv(a) => change::exec_transfer(s, g, a, false, out, r),
                Command::Cp(a) => change::exec_transfer(s, g, a, true, out, r),
                Command::Read(a) => change::exec(s, g, a, ChangeKind::Read, out, r),
                Command::Unread(a) => change::exec(s, g, a, ChangeKind::Unread, out, r),
                Command::Rm(a) => change::exec(s, g, a, ChangeKind::Rm, out, r),
                Command::Resequence(a) => resequence::exec(s, g, a, out, r),
                Command::Check(a) => check::exec(s, g, a, out, r),
                Command::Report(a) => report::exec(s, g, a, out, r),
                Command::Unlock(a) => unlock::exec(s, a, out, r),
                Command::Migrate(a) => migrate::exec(s, g, a, out, r),
                Command::Watch(a) => watch::exec(s, a, out, r),
                Command::Archive(a) => archive::exec(s, g, a, out, r),
                Command::Purge(a) => archive::exec_purge(s, g, a, out, r),
                Command::Restore(a) => archive::exec_restore(s, g, a, out, r),
                Command::Play(a) => play::exec(s, g, a, out, r),
                Command::Convert(a) => convert::exec(s, g, a, out, r),
                Command::Deposit(a) => deposit::exec(s, g, a, out, r),
                Command::Greeting(a) => greeting::exec(s, g, a, out, r),
                Command::Completions { .. } | Command::Man { .. } | Command::Serve(_) => {
                    Ok(Exit::Ok)
                }
            }
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

/// The output formats a command writes; any other `--format` is refused
/// (exit 2) rather than ignored.
fn formats_of(c: &Command) -> &'static [cli::Format] {
    use cli::Format::{Csv, Json, Table};
    match c {
        Command::Ls(_)
        | Command::Boxes(_)
        | Command::Count(_)
        | Command::Check(_)
        | Command::Mv(_)
        | Command::Cp(_)
        | Command::Read(_)
        | Command::Unread(_)
        | Command::Rm(_)
        | Command::Greeting(_) => &[Table, Json, Csv],
        Command::Show(_) | Command::Report(_) | Command::Watch(_) => &[Table, Json],
        _ => &[Table],
    }
}

/// The subcommand's name.
fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Ls(_) => "ls",
        Command::Show(_) => "show",
        Command::Boxes(_) => "boxes",
        Command::Count(_) => "count",
        Command::Mv(_) => "mv",
        Command::Cp(_) => "cp",
        Command::Read(_) => "read",
        Command::Unread(_) => "unread",
        Command::Rm(_) => "rm",
        Command::Deposit(_) => "deposit",
        Command::Serve(_) => "serve",
        Command::Greeting(_) => "greeting",
        Command::Resequence(_) => "resequence",
        Command::Check(_) => "check",
        Command::Report(_) => "report",
        Command::Unlock(_) => "unlock",
        Command::Migrate(_) => "migrate",
        Command::Archive(_) => "archive",
        Command::Restore(_) => "restore",
        Command::Purge(_) => "purge",
        Command::Watch(_) => "watch",
        Command::Play(_) => "play",
        Command::Convert(_) => "convert",
        Command::Completions { .. } => "completions",
        Command::Man { .. } => "man",
    }
}

/// Commands that work through a batch of messages, changing the spool or writing
/// files: they finish what they started when interrupted or when the reader leaves.
fn batch_command(c: &Command) -> bool {
    matches!(
        c,
        Command::Mv(_)
            | Command::Cp(_)
            | Command::Read(_)
            | Command::Unread(_)
            | Command::Rm(_)
            | Command::Resequence(_)
            | Command::Check(_)
            | Command::Convert(_)
    )
}

pub fn out_err(e: io::Error) -> Error {
    Error::io("write", STDOUT, e)
}

/// Set by Ctrl-C (and SIGTERM): the message in flight is finished, then the run stops.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Installs the Ctrl-C handler once (a second install is ignored).
pub fn install_interrupt_handler() {
    let _ = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst));
}

/// Refuses changes where the files are not the truth (spec §3.8, §10).
pub fn check_file_storage(setup: &Setup) -> Result<()> {
    setup.store.refuse_caches(setup.vmconf.as_ref())
}

pub fn lock_options(setup: &Setup, g: &GlobalArgs) -> Result<LockOptions> {
    if !(g.lock_timeout.is_finite() && g.lock_timeout >= 0.0 && g.lock_timeout <= 600.0) {
        return Err(Error::Usage("--lock-timeout takes 0 to 600 seconds".into()));
    }
    let mode = match g.lockmode {
        Some(LockModeArg::Flock) => LockMode::Flock,
        Some(LockModeArg::Lockfile) => LockMode::Lockfile,
        None => setup
            .astconf
            .as_ref()
            .map(|a| a.lockmode)
            .unwrap_or_default(),
    };
    Ok(LockOptions {
        mode,
        timeout: Duration::from_secs_f64(g.lock_timeout),
    })
}

/// Sends AMI `VoicemailRefresh` for each changed mailbox (spec §8.3). A
/// refused or unreachable AMI is a warning: the change itself stands.
pub fn notify_asterisk(
    setup: &Setup,
    g: &GlobalArgs,
    changed: &BTreeSet<MailboxId>,
    rep: &mut Reporter,
) {
    if g.no_ami {
        return;
    }
    let targets = match ami_targets(setup, g) {
        Ok(t) if t.is_empty() => {
            if g.verbose {
                rep.note("AMI not configured: phones' message lamps update at Asterisk's next poll (pollmailboxes=yes) or reload");
            }
            return;
        }
        Ok(t) => t,
        Err(e) => {
            rep.warn(&format!("{e}; the change was made, but Asterisk was not told (run `voicemail reload` or use --ami)"));
            return;
        }
    };
    let boxes: Vec<(String, String)> = changed
        .iter()
        .map(|mb| (mb.context.to_string(), mb.mailbox().to_string()))
        .collect();
    // Every server sharing a SQL table keeps its own MWI state: tell each.
    for target in &targets {
        match crate::ami::voicemail_refresh(target, &boxes, Duration::from_secs(5)) {
            Ok(results) => {
                for ((ctx, mbox), r) in boxes.iter().zip(results) {
                    if let Err(e) = r {
                        rep.warn(&format!("VoicemailRefresh for {mbox}@{ctx}: {e}"));
                    }
                }
            }
            Err(e) => rep.warn(&format!(
                "could not tell Asterisk over AMI: {e}; the change was made (run `voicemail reload` in the Asterisk CLI)"
            )),
        }
    }
}

/// Each `--ami`, else `$VMTOOL_AMI`, else the first suitable user of
/// manager.conf (which also fills in a user or secret a spec leaves out).
pub fn ami_targets(
    setup: &Setup,
    g: &GlobalArgs,
) -> std::result::Result<Vec<crate::ami::AmiTarget>, crate::ami::AmiError> {
    let specs: Vec<Option<String>> = if g.ami.is_empty() {
        vec![std::env::var("VMTOOL_AMI").ok().filter(|s| !s.is_empty())]
    } else {
        g.ami.iter().cloned().map(Some).collect()
    };
    let manager = g
        .manager_conf
        .clone()
        .unwrap_or_else(|| setup.etc_dir.join("manager.conf"));
    let manager = (g.manager_conf.is_some() || manager.exists()).then_some(manager);
    let mut out = Vec::new();
    for spec in specs {
        if let Some(t) = crate::ami::AmiTarget::resolve(spec.as_deref(), manager.as_deref())? {
            out.push(t);
        }
    }
    Ok(out)
}

/// The store's changer with this run's lock options.
pub fn changer_for<'a>(setup: &'a Setup, g: &GlobalArgs) -> Result<Changer<'a>> {
    Ok(Changer::new(
        &setup.store,
        setup.vmconf.as_ref(),
        lock_options(setup, g)?,
        &INTERRUPTED,
    ))
}
