//! The commands that change messages: `mv`, `cp`, `read`, `unread`, `rm`.
//! Each resolves its targets, builds every plan first (nothing is changed
//! while arguments are still being checked), applies them one by one,
//! reports each failure and goes on, then tells Asterisk over AMI which
//! mailboxes changed.

use super::prelude::*;
use crate::ops::{self, Action, Applied, Engine, MsgRef, Plan};
use crate::store::sql::change::{SqlAction, SqlApplied, SqlMsg};
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

#[derive(Debug, Args)]
pub struct TransferArgs {
    /// Messages or folders, then the destination (a folder of the same box, or box[/Folder]; no folder = INBOX)
    #[arg(value_name = "TARGET… DEST", required = true, num_args = 2..)]
    pub args: Vec<String>,
    /// Print the plan and change nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Needed when a whole folder or more than one message is named
    #[arg(short, long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct ChangeArgs {
    /// Messages, folders or (read/unread) boxes
    #[arg(value_name = "TARGET", required = true)]
    pub targets: Vec<String>,
    /// Print the plan and change nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Needed by rm when a whole folder or more than one message is named
    #[arg(short, long)]
    pub yes: bool,
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
                writeln!(out, "{}:", plan.src.at).map_err(out_err)?;
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
                        .map_err(out_err)?;
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
                    writeln!(out, "  {step}").map_err(out_err)?;
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
                        writeln!(out, "{line}").map_err(out_err)?;
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
    sql: &crate::store::sql::SqlStore,
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
            .map_err(out_err)?;
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
                    writeln!(out, "{line}").map_err(out_err)?;
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

pub fn exec_transfer(
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
    let engine = engine_for(setup, g)?;
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
pub fn exec(
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
    let engine = engine_for(setup, g)?;
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
