//! The commands that change a spool: `mv`, `cp`, `read`, `unread`, `rm`,
//! `resequence`, `unlock`. Each resolves its targets, builds every plan first
//! (nothing is changed while arguments are still being checked), applies them
//! one by one through `ops`, reports each failure and goes on, then tells
//! Asterisk over AMI which mailboxes changed.

use crate::app::{Reporter, Setup};
use crate::cli::{ChangeArgs, GlobalArgs, LockModeArg, ResequenceArgs, TransferArgs, UnlockArgs};
use crate::config::LockMode;
use crate::error::{Error, Exit, Result};
use crate::lock::{self, LockOptions};
use crate::ops::{self, Action, Applied, Engine, MsgRef, OpError, Plan};
use crate::spool::{Folder, MailboxId, MsgNum};
use crate::sql::change::{SqlAction, SqlApplied, SqlEngine, SqlMsg};
use crate::store::MailboxStore;
use crate::target::{self, Target};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Set by Ctrl-C (and SIGTERM): the message in flight is finished, then the run stops.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Installs the Ctrl-C handler once (a second install is ignored).
pub fn install_interrupt_handler() {
    let _ = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst));
}

impl From<OpError> for Error {
    fn from(e: OpError) -> Error {
        match e {
            OpError::Lock(ref l) if l.is_busy() => Error::LockBusy(e.to_string()),
            OpError::Gone(m) => Error::NotFound(m),
            OpError::Io {
                action,
                path,
                source,
            } => Error::Io {
                action,
                path,
                source,
            },
            other => Error::Failed(other.to_string()),
        }
    }
}

/// Refuses changes where the files are not the truth (spec §3.8, §10).
pub(crate) fn check_file_storage(setup: &Setup) -> Result<()> {
    if setup.store.sql().is_some() {
        return Ok(());
    }
    let Some(vc) = &setup.vmconf else {
        return Ok(());
    };
    let storage = vc.general.vars.iter().find(|(k, _)| {
        let k = k.to_ascii_lowercase();
        k == "odbcstorage" || k.starts_with("imap")
    });
    if let Some((k, v)) = storage {
        return Err(Error::Usage(format!(
            "{} sets {k}={v}: with ODBC or IMAP storage the spool only holds caches, and vmtool does not change it",
            vc.path.display()
        )));
    }
    let ext = vc.path.with_file_name("extconfig.conf");
    if let Ok(conf) = crate::conf::load(&ext) {
        if conf.get("settings", "voicemail_data").is_some() {
            return Err(Error::Usage(format!(
                "{} maps voicemail_data: Asterisk mirrors message files into a realtime table that vmtool cannot keep in sync",
                ext.display()
            )));
        }
    }
    Ok(())
}

pub(crate) fn lock_options(setup: &Setup, g: &GlobalArgs) -> Result<LockOptions> {
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

/// Messages (with a `.txt`) under a target. Boxes and contexts are refused
/// unless `folders_of_box` says which folders of a box the command means.
fn messages_of(
    setup: &Setup,
    t: &Target,
    folders_of_box: Option<&[Folder]>,
) -> Result<Vec<(MailboxId, Folder, MsgNum)>> {
    let scan_folder = |mb: &MailboxId, f: &Folder| -> Result<Vec<(MailboxId, Folder, MsgNum)>> {
        Ok(setup
            .store
            .scan_folder(mb, f)?
            .messages
            .iter()
            .filter(|m| m.txt)
            .map(|m| (mb.clone(), f.clone(), m.num))
            .collect())
    };
    match t {
        Target::Message(mb, f, n) => Ok(vec![(mb.clone(), f.clone(), *n)]),
        Target::Folder(mb, f) => scan_folder(mb, f),
        Target::Mailbox(mb) => match folders_of_box {
            Some(folders) => {
                let mut v = Vec::new();
                for f in folders {
                    v.extend(scan_folder(mb, f)?);
                }
                Ok(v)
            }
            None => Err(Error::Usage(format!(
                "{}: name a folder or messages (e.g. {}/INBOX), not a whole box",
                target::describe(t),
                target::describe(t)
            ))),
        },
        Target::Context(_) | Target::Spool => Err(Error::Usage(format!(
            "{}: name a folder or messages, not a whole context",
            target::describe(t)
        ))),
    }
}

/// DEST of `mv`/`cp`: a folder name alone (same box), or box[/Folder]; no folder = INBOX.
enum Dest {
    SameBox(Folder),
    At(MailboxId, Folder),
}

fn parse_dest(setup: &Setup, arg: &str, rep: &mut Reporter) -> Result<Dest> {
    if let Some(f) = Folder::known(arg) {
        return Ok(Dest::SameBox(f));
    }
    let mut resolved = setup.resolve_all(std::slice::from_ref(&arg.to_string()), rep);
    match resolved.pop() {
        Some(Target::Mailbox(mb)) => Ok(Dest::At(mb, Folder::Inbox)),
        Some(Target::Folder(mb, f)) => Ok(Dest::At(mb, f)),
        Some(other) => Err(Error::Usage(format!(
            "destination {}: give a folder (Old, Work, …) or box[/Folder]",
            target::describe(&other)
        ))),
        None => Err(Error::Usage(format!("destination \"{arg}\" not found"))),
    }
}

struct Runner<'a> {
    setup: &'a Setup,
    engine: Engine<'a>,
    dry_run: bool,
    changed: BTreeSet<MailboxId>,
    done: usize,
    /// Dry run: the next number of each destination, as the run would allocate.
    allocated: std::collections::HashMap<PathBuf, u32>,
}

impl Runner<'_> {
    fn run_plans(
        &mut self,
        plans: Vec<Plan>,
        out: &mut dyn Write,
        rep: &mut Reporter,
    ) -> Result<()> {
        for plan in plans {
            if INTERRUPTED.load(Ordering::SeqCst) {
                rep.note("interrupted: stopped before the next message; what was done is complete");
                break;
            }
            if self.dry_run {
                writeln!(out, "{}:", plan.src.at).map_err(crate::app::out_err)?;
                // rm with backupdeleted moves into Deleted (Engine::apply): show that.
                let shown = match (&plan.action, plan.src.at.mailbox_id()) {
                    (Action::Delete, Ok(mb))
                        if ops::backupdeleted_of(self.setup.vmconf.as_ref(), &mb) > 0
                            && plan.src.at.folder != Folder::Deleted.dir_name() =>
                    {
                        writeln!(
                            out,
                            "  backupdeleted is set: kept in Deleted, as Asterisk does"
                        )
                        .map_err(crate::app::out_err)?;
                        Plan {
                            src: plan.src.clone(),
                            action: Action::Move {
                                mailbox: mb,
                                folder: Folder::Deleted,
                            },
                        }
                    }
                    _ => plan.clone(),
                };
                for step in ops::describe(self.setup.store.spool(), &shown, &mut self.allocated) {
                    writeln!(out, "  {step}").map_err(crate::app::out_err)?;
                }
                self.done += 1;
                continue;
            }
            match self.engine.apply(&plan) {
                Ok(applied) => {
                    self.done += 1;
                    if let Ok(mb) = plan.src.at.mailbox_id() {
                        self.changed.insert(mb);
                    }
                    let line = match &applied {
                        Applied::Moved(to) => format!("moved {} -> {to}", plan.src.at),
                        Applied::Copied(to) => format!("copied {} -> {to}", plan.src.at),
                        Applied::Deleted(Some(to)) => {
                            format!("deleted {} (kept in {to})", plan.src.at)
                        }
                        Applied::Deleted(None) => format!("deleted {}", plan.src.at),
                    };
                    if let Applied::Moved(to) | Applied::Copied(to) | Applied::Deleted(Some(to)) =
                        &applied
                    {
                        if let Ok(mb) = to.mailbox_id() {
                            self.changed.insert(mb);
                        }
                    }
                    if !self.setup.quiet {
                        writeln!(out, "{line}").map_err(crate::app::out_err)?;
                    }
                }
                Err(e) => rep.error(&Error::from(e)),
            }
        }
        Ok(())
    }

    fn finish(self, g: &GlobalArgs, rep: &mut Reporter) -> Exit {
        if !self.dry_run && !self.changed.is_empty() {
            notify_asterisk(self.setup, g, &self.changed, rep);
        }
        if INTERRUPTED.load(Ordering::SeqCst) {
            return Exit::Interrupted;
        }
        rep.finish(self.done)
    }
}

type SqlPlan = ((MailboxId, Folder, MsgNum), SqlAction);

/// The SQL store's counterpart of `run_all`: one transaction per message.
fn run_sql(
    setup: &Setup,
    g: &GlobalArgs,
    sql: &crate::sql::SqlStore,
    dry_run: bool,
    plans: Vec<SqlPlan>,
    out: &mut dyn Write,
    rep: &mut Reporter,
) -> Result<Exit> {
    let engine = sql_engine(setup, sql, g)?;
    // Identities as listed, before any change renumbers anything.
    let mut msgs = Vec::new();
    for ((mb, f, n), action) in plans {
        match sql.msg_row(&mb, &f, n) {
            Ok(row) => match SqlMsg::from_row(&row, &sql.table) {
                Some(m) => msgs.push((m, action)),
                None => rep.error(&Error::Failed(format!("{}: not a message row", row.dir))),
            },
            Err(e) => rep.error(&e),
        }
    }
    let mut changed = BTreeSet::new();
    let mut done = 0;
    for (m, action) in msgs {
        if INTERRUPTED.load(Ordering::SeqCst) {
            rep.note("interrupted: stopped before the next message; what was done is complete");
            break;
        }
        if dry_run {
            let what = match &action {
                SqlAction::Move { mailbox, folder } => {
                    format!("move to {mailbox}/{folder} (highest + 1)")
                }
                SqlAction::Copy { mailbox, folder } => {
                    format!("copy to {mailbox}/{folder} (highest + 1)")
                }
                SqlAction::Delete | SqlAction::Purge => "delete".to_string(),
            };
            writeln!(
                out,
                "{}: {what}, one transaction in table {}",
                m.at(),
                sql.table.name
            )
            .map_err(crate::app::out_err)?;
            done += 1;
            continue;
        }
        match engine.apply(&m, &action) {
            Ok(applied) => {
                done += 1;
                changed.insert(m.mailbox.clone());
                let line = match &applied {
                    SqlApplied::Moved(to) => format!("moved {} -> {to}", m.at()),
                    SqlApplied::Copied(to) => format!("copied {} -> {to}", m.at()),
                    SqlApplied::Deleted(Some(to)) => format!("deleted {} (kept in {to})", m.at()),
                    SqlApplied::Deleted(None) => format!("deleted {}", m.at()),
                };
                if let SqlApplied::Moved(to)
                | SqlApplied::Copied(to)
                | SqlApplied::Deleted(Some(to)) = &applied
                {
                    if let Ok(mb) = to.mailbox_id() {
                        changed.insert(mb);
                    }
                }
                if !setup.quiet {
                    writeln!(out, "{line}").map_err(crate::app::out_err)?;
                }
            }
            Err(e) => rep.error(&Error::Failed(e)),
        }
    }
    if !dry_run && !changed.is_empty() {
        notify_asterisk(setup, g, &changed, rep);
    }
    if INTERRUPTED.load(Ordering::SeqCst) {
        return Ok(Exit::Interrupted);
    }
    Ok(rep.finish(done))
}

/// Applies (or with `dry_run` prints) every plan, then tells Asterisk.
fn run_all(
    setup: &Setup,
    engine: Engine,
    dry_run: bool,
    plans: Vec<Plan>,
    g: &GlobalArgs,
    out: &mut dyn Write,
    rep: &mut Reporter,
) -> Result<Exit> {
    let mut runner = Runner {
        setup,
        engine,
        dry_run,
        changed: BTreeSet::new(),
        done: 0,
        allocated: Default::default(),
    };
    runner.run_plans(plans, out, rep)?;
    Ok(runner.finish(g, rep))
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
fn ami_targets(
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

/// The engine with this run's lock options.
/// The engine for changes to rows of the SQL store.
pub(crate) fn sql_engine<'a>(
    setup: &'a Setup,
    sql: &'a crate::sql::SqlStore,
    g: &GlobalArgs,
) -> Result<SqlEngine<'a>> {
    Ok(SqlEngine {
        store: sql,
        conf: setup.vmconf.as_ref(),
        lock: lock_options(setup, g)?,
    })
}

pub fn engine_for<'a>(setup: &'a Setup, g: &GlobalArgs) -> Result<Engine<'a>> {
    engine(setup, g)
}

fn engine<'a>(setup: &'a Setup, g: &GlobalArgs) -> Result<Engine<'a>> {
    Ok(Engine {
        spool: setup.store.spool(),
        lock: lock_options(setup, g)?,
        conf: setup.vmconf.as_ref(),
        interrupted: &INTERRUPTED,
        recovered: Default::default(),
    })
}

fn locate_all(
    engine: &Engine,
    msgs: Vec<(MailboxId, Folder, MsgNum)>,
    rep: &mut Reporter,
) -> Vec<ops::Located> {
    let mut out = Vec::new();
    for (mb, f, n) in msgs {
        match engine.locate(&mb, &f, n) {
            Ok(l) => out.push(l),
            Err(e) => rep.error(&Error::from(e)),
        }
    }
    out
}

fn needs_yes(targets: &[Target], count: usize, yes: bool, what: &str) -> Result<()> {
    let whole = targets.iter().any(|t| !matches!(t, Target::Message(..)));
    if (whole || count > 1) && !yes {
        return Err(Error::Usage(format!(
            "{what} {count} messages: add --yes to confirm (or --dry-run to see the plan)"
        )));
    }
    Ok(())
}

pub fn cmd_transfer(
    setup: &Setup,
    g: &GlobalArgs,
    a: &TransferArgs,
    copy: bool,
    out: &mut dyn Write,
    rep: &mut Reporter,
) -> Result<Exit> {
    check_file_storage(setup)?;
    let (dest_arg, target_args) = a
        .args
        .split_last()
        .ok_or_else(|| Error::Usage("give messages and a destination".into()))?;
    let dest = parse_dest(setup, dest_arg, rep)?;
    let targets = setup.resolve_all(target_args, rep);
    let mut msgs = Vec::new();
    for t in &targets {
        match messages_of(setup, t, None) {
            Ok(m) => msgs.extend(m),
            Err(e) => rep.error(&e),
        }
    }
    needs_yes(
        &targets,
        msgs.len(),
        a.yes || a.dry_run,
        if copy { "copy" } else { "move" },
    )?;
    if let Some(sql) = setup.store.sql() {
        let mut plans = Vec::new();
        for (src_mb, f, n) in msgs {
            let (mb, folder) = match &dest {
                Dest::SameBox(f) => (src_mb.clone(), f.clone()),
                Dest::At(mb, f) => (mb.clone(), f.clone()),
            };
            if !copy && mb == src_mb && folder == f {
                rep.warn(&format!(
                    "{} is already in {folder}; left as is",
                    MsgRef::new(&src_mb, &f, n)
                ));
                continue;
            }
            let action = if copy {
                SqlAction::Copy {
                    mailbox: mb,
                    folder,
                }
            } else {
                SqlAction::Move {
                    mailbox: mb,
                    folder,
                }
            };
            plans.push(((src_mb, f, n), action));
        }
        return run_sql(setup, g, sql, a.dry_run, plans, out, rep);
    }
    let engine = engine(setup, g)?;
    let mut plans = Vec::new();
    for loc in locate_all(&engine, msgs, rep) {
        let src_mb = loc.at.mailbox_id()?;
        let (mb, folder) = match &dest {
            Dest::SameBox(f) => (src_mb.clone(), f.clone()),
            Dest::At(mb, f) => (mb.clone(), f.clone()),
        };
        if !copy && mb == src_mb && folder.dir_name() == loc.at.folder {
            rep.warn(&format!("{} is already in {folder}; left as is", loc.at));
            continue;
        }
        let action = if copy {
            Action::Copy {
                mailbox: mb,
                folder,
            }
        } else {
            Action::Move {
                mailbox: mb,
                folder,
            }
        };
        plans.push(Plan { src: loc, action });
    }
    run_all(setup, engine, a.dry_run, plans, g, out, rep)
}

/// `read` (INBOX/Urgent → Old), `unread` (Old → INBOX) and `rm`.
pub fn cmd_change(
    setup: &Setup,
    g: &GlobalArgs,
    a: &ChangeArgs,
    kind: ChangeKind,
    out: &mut dyn Write,
    rep: &mut Reporter,
) -> Result<Exit> {
    check_file_storage(setup)?;
    let targets = setup.resolve_all(&a.targets, rep);
    let (from, box_folders): (&[Folder], Option<&[Folder]>) = match kind {
        ChangeKind::Read => (
            &[Folder::Inbox, Folder::Urgent],
            Some(&[Folder::Inbox, Folder::Urgent]),
        ),
        ChangeKind::Unread => (&[Folder::Old], Some(&[Folder::Old])),
        ChangeKind::Rm => (&[], None),
    };
    let mut msgs = Vec::new();
    for t in &targets {
        match messages_of(setup, t, box_folders) {
            Ok(m) => msgs.extend(m),
            Err(e) => rep.error(&e),
        }
    }
    if kind == ChangeKind::Rm {
        needs_yes(&targets, msgs.len(), a.yes || a.dry_run, "delete")?;
    }
    if let Some(sql) = setup.store.sql() {
        let mut plans = Vec::new();
        for (mb, folder, n) in msgs {
            if !from.is_empty() && !from.contains(&folder) {
                rep.warn(&format!(
                    "{} is in {folder}, not in {}; left as is",
                    MsgRef::new(&mb, &folder, n),
                    from.iter()
                        .map(|f| f.dir_name())
                        .collect::<Vec<_>>()
                        .join(" or ")
                ));
                continue;
            }
            let action = match kind {
                ChangeKind::Read => SqlAction::Move {
                    mailbox: mb.clone(),
                    folder: Folder::Old,
                },
                ChangeKind::Unread => SqlAction::Move {
                    mailbox: mb.clone(),
                    folder: Folder::Inbox,
                },
                ChangeKind::Rm => SqlAction::Delete,
            };
            plans.push(((mb, folder, n), action));
        }
        return run_sql(setup, g, sql, a.dry_run, plans, out, rep);
    }
    let engine = engine(setup, g)?;
    let mut plans = Vec::new();
    for loc in locate_all(&engine, msgs, rep) {
        let folder = loc.at.folder()?;
        if !from.is_empty() && !from.contains(&folder) {
            rep.warn(&format!(
                "{} is in {folder}, not in {}; left as is",
                loc.at,
                from.iter()
                    .map(|f| f.dir_name())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ));
            continue;
        }
        let mb = loc.at.mailbox_id()?;
        let action = match kind {
            ChangeKind::Read => Action::Move {
                mailbox: mb,
                folder: Folder::Old,
            },
            // Asterisk saves into INBOX, never Urgent, whatever the flag (spec §5.1).
            ChangeKind::Unread => Action::Move {
                mailbox: mb,
                folder: Folder::Inbox,
            },
            ChangeKind::Rm => Action::Delete,
        };
        plans.push(Plan { src: loc, action });
    }
    run_all(setup, engine, a.dry_run, plans, g, out, rep)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Read,
    Unread,
    Rm,
}

pub fn cmd_resequence(
    setup: &Setup,
    g: &GlobalArgs,
    a: &ResequenceArgs,
    out: &mut dyn Write,
    rep: &mut Reporter,
) -> Result<Exit> {
    check_file_storage(setup)?;
    let t = setup
        .resolve_all(std::slice::from_ref(&a.target), rep)
        .pop()
        .ok_or_else(|| Error::NotFound(format!("{} not found", a.target)))?;
    let (mb, folders) = match &t {
        Target::Mailbox(mb) => (mb.clone(), setup.store.folders(mb)?),
        Target::Folder(mb, f) => (mb.clone(), vec![f.clone()]),
        _ => return Err(Error::Usage("resequence takes box or box/Folder".into())),
    };
    // Renumbering under an open VoiceMailMain session makes Asterisk delete or
    // move the wrong messages (spec §6.7): check there is none, over AMI.
    // With SQL storage every server may have the box open: ask each one.
    if !a.dry_run {
        let servers = match ami_targets(setup, g) {
            Ok(t) if !t.is_empty() => t,
            // An AMI address was given but cannot be used (e.g. no user or
            // secret): say that, not that there is no AMI.
            Err(e) if !a.force => {
                return Err(Error::Usage(format!(
                    "{e}; without a working AMI login vmtool cannot check that no VoiceMailMain session has this box open (or add --force if you are sure)"
                )))
            }
            Err(e) => {
                rep.warn(&format!("{e}; going on without the VoiceMailMain check (--force)"));
                Vec::new()
            }
            _ if a.force => Vec::new(),
            _ => {
                return Err(Error::Usage(
                    "without AMI vmtool cannot check that no VoiceMailMain session has this box open; configure --ami, or add --force if you are sure"
                        .into(),
                ))
            }
        };
        for target in &servers {
            match crate::ami::voicemail_main_running(target, Duration::from_secs(5)) {
                Ok(chans) if chans.is_empty() => {}
                Ok(chans) => {
                    return Err(Error::LockBusy(format!(
                        "VoiceMailMain is running on {}: renumbering now would make Asterisk delete or move the wrong messages; retry when no one is in their voicemail",
                        chans.join(", ")
                    )))
                }
                Err(e) => {
                    if !a.force {
                        return Err(Error::Failed(format!(
                            "cannot check for open VoiceMailMain sessions over AMI ({e}); retry, or add --force if you are sure none is open"
                        )));
                    }
                }
            }
        }
    }
    let sql = match setup.store.sql() {
        Some(sql) => Some(sql_engine(setup, sql, g)?),
        None => None,
    };
    let engine = engine(setup, g)?;
    let mut renames = 0;
    for f in folders {
        if a.dry_run {
            let scan = setup.store.scan_folder(&mb, &f)?;
            for (i, m) in scan.messages.iter().filter(|m| m.txt).enumerate() {
                if usize::from(m.num.get()) != i {
                    writeln!(out, "{}/{f}: {} -> msg{i:04}", mb, m.num.stem())
                        .map_err(crate::app::out_err)?;
                }
            }
            continue;
        }
        let result = match &sql {
            Some(e) => e.resequence(&mb, &f).map_err(Error::Failed),
            None => engine.resequence(&mb, &f).map_err(Error::from),
        };
        match result {
            Ok(moved) => {
                for (from, to) in &moved {
                    if !setup.quiet {
                        writeln!(out, "{mb}/{f}: {} -> {}", from.stem(), to.stem())
                            .map_err(crate::app::out_err)?;
                    }
                }
                renames += moved.len();
            }
            Err(e) => rep.error(&e),
        }
    }
    if renames > 0 {
        notify_asterisk(setup, g, &BTreeSet::from([mb]), rep);
    }
    Ok(rep.finish(1))
}

pub fn cmd_unlock(
    setup: &Setup,
    a: &UnlockArgs,
    out: &mut dyn Write,
    rep: &mut Reporter,
) -> Result<Exit> {
    let t = setup
        .resolve_all(std::slice::from_ref(&a.target), rep)
        .pop()
        .ok_or_else(|| Error::NotFound(format!("{} not found", a.target)))?;
    let Target::Folder(mb, f) = &t else {
        return Err(Error::Usage(
            "unlock takes a folder, e.g. compta/1202/INBOX".into(),
        ));
    };
    let dir: PathBuf = setup.store.spool().folder_dir(mb, f);
    let what = target::describe(&t);
    // With SQL storage a server may hold no directory for this folder.
    if !dir.is_dir() {
        writeln!(
            out,
            "{what}: not locked ({} does not exist here)",
            dir.display()
        )
        .map_err(crate::app::out_err)?;
        return Ok(Exit::Ok);
    }
    let (outcome, helpers) =
        lock::break_stale(&dir, Duration::from_secs(a.older_than)).map_err(OpError::from)?;
    for h in &helpers {
        writeln!(out, "{what}: removed stale helper {}", h.display())
            .map_err(crate::app::out_err)?;
    }
    match outcome {
        lock::BreakOutcome::Broken => {
            writeln!(out, "{what}: stale lock broken").map_err(crate::app::out_err)?;
            Ok(Exit::Ok)
        }
        lock::BreakOutcome::NoLock => {
            writeln!(out, "{what}: not locked").map_err(crate::app::out_err)?;
            Ok(Exit::Ok)
        }
        lock::BreakOutcome::NotStale => Err(Error::LockBusy(format!(
            "{what}: the lock is younger than {} s: it is probably in use; nothing was changed",
            a.older_than
        ))),
        lock::BreakOutcome::Disturbed => Err(Error::LockBusy(format!(
            "{what}: another process replaced the lock while it was being broken; the newer lock was left in place"
        ))),
        lock::BreakOutcome::ReplacedMeanwhile => Err(Error::LockBusy(format!(
            "{what}: a new lock was taken while the stale one was being broken; the new one was left in place"
        ))),
    }
}
