//! The commands that change messages: `mv`, `cp`, `read`, `unread`, `rm`.
//! Each resolves its targets, builds every plan first (nothing is changed
//! while arguments are still being checked), applies them one by one through
//! the store's `Changer`, reports each failure and goes on, then tells
//! Asterisk over AMI which mailboxes changed.

use super::prelude::*;
use crate::store::change::{Allocated, Applied, Change, Found};
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

/// Finds every message (each failure reported), keeps those `keep` accepts,
/// then applies (or with `dry_run` prints) each change and tells Asterisk.
#[allow(clippy::too_many_arguments)]
fn run(
    setup: &Setup,
    g: &GlobalArgs,
    msgs: Vec<(MailboxId, Folder, MsgNum)>,
    dry_run: bool,
    mut plan: impl FnMut(&Found, &mut Reporter) -> Result<Option<Change>>,
    out: &mut dyn Write,
    rep: &mut Reporter,
) -> Result<Exit> {
    if dry_run && setup.format != Format::Table {
        return Err(Error::Usage(
            "--dry-run prints its plan as text; leave out --format".into(),
        ));
    }
    let changer = changer_for(setup, g)?;
    // Identities as listed, before any change renumbers anything.
    let mut found = Vec::new();
    for (mb, f, n) in msgs {
        match changer.locate(&mb, &f, n) {
            Ok(m) => found.push(m),
            Err(e) => rep.error(&e),
        }
    }
    let mut plans = Vec::new();
    for m in found {
        if let Some(c) = plan(&m, rep)? {
            plans.push((m, c));
        }
    }
    let mut changed = BTreeSet::new();
    let mut done = 0;
    // Dry run: the next number of each destination, as the run would allocate.
    let mut allocated = Allocated::new();
    for (m, change) in plans {
        if INTERRUPTED.load(Ordering::SeqCst) {
            rep.note("interrupted: stopped before the next message; what was done is complete");
            break;
        }
        if dry_run {
            for line in changer.plan_lines(&m, &change, &mut allocated) {
                writeln!(out, "{line}").map_err(out_err)?;
            }
            done += 1;
            continue;
        }
        let at = m.at();
        match changer.apply(&m, &change) {
            Ok(applied) => {
                done += 1;
                if let Ok(mb) = at.mailbox_id() {
                    changed.insert(mb);
                }
                let (action, to) = match &applied {
                    Applied::Moved(to) => ("moved", Some(to)),
                    Applied::Copied(to) => ("copied", Some(to)),
                    Applied::Deleted(to) => ("deleted", to.as_ref()),
                };
                let line = match (setup.format, &applied) {
                    (Format::Json, _) => serde_json::json!({
                        "action": action,
                        "from": at.to_string(),
                        "to": to.map(|t| t.to_string()),
                    })
                    .to_string(),
                    (Format::Csv, _) => {
                        if done == 1 {
                            writeln!(out, "action,from,to").map_err(out_err)?;
                        }
                        let to = to.map(|t| t.to_string()).unwrap_or_default();
                        format!(
                            "{action},{},{}",
                            render::csv_text(&at.to_string()),
                            render::csv_text(&to)
                        )
                    }
                    (_, Applied::Deleted(Some(to))) => format!("deleted {at} (kept in {to})"),
                    (_, _) => match to {
                        Some(to) => format!("{action} {at} -> {to}"),
                        None => format!("{action} {at}"),
                    },
                };
                if let Applied::Moved(to) | Applied::Copied(to) | Applied::Deleted(Some(to)) =
                    &applied
                {
                    if let Ok(mb) = to.mailbox_id() {
                        changed.insert(mb);
                    }
                }
                if !setup.quiet {
                    writeln!(out, "{line}").map_err(out_err)?;
                }
            }
            Err(e) => rep.error(&e),
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
    let plan = |m: &Found, rep: &mut Reporter| -> Result<Option<Change>> {
        let at = m.at();
        let src_mb = at.mailbox_id()?;
        let (mailbox, folder) = match &dest {
            Dest::SameBox(f) => (src_mb.clone(), f.clone()),
            Dest::At(mb, f) => (mb.clone(), f.clone()),
        };
        if !copy && mailbox == src_mb && folder.dir_name() == at.folder {
            rep.warn(&format!("{at} is already in {folder}; left as is"));
            return Ok(None);
        }
        Ok(Some(if copy {
            Change::Copy { mailbox, folder }
        } else {
            Change::Move { mailbox, folder }
        }))
    };
    run(setup, g, msgs, a.dry_run, plan, out, rep)
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
    let plan = |m: &Found, rep: &mut Reporter| -> Result<Option<Change>> {
        let folder = m.folder()?;
        if !from.is_empty() && !from.contains(&folder) {
            rep.warn(&format!(
                "{} is in {folder}, not in {}; left as is",
                m.at(),
                from.iter()
                    .map(|f| f.dir_name())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ));
            return Ok(None);
        }
        let mailbox = m.at().mailbox_id()?;
        Ok(Some(match kind {
            ChangeKind::Read => Change::Move {
                mailbox,
                folder: Folder::Old,
            },
            // Asterisk saves into INBOX, never Urgent, whatever the flag (spec §5.1).
            ChangeKind::Unread => Change::Move {
                mailbox,
                folder: Folder::Inbox,
            },
            ChangeKind::Rm => Change::Delete,
        }))
    };
    run(setup, g, msgs, a.dry_run, plan, out, rep)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Read,
    Unread,
    Rm,
}
