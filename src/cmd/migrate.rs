//! `vmtool migrate --to-sql | --to-files`: a whole file spool into the table
//! and back, through `sql::migrate::Migrator`.

use super::prelude::*;
use crate::store::sql::migrate::Migrator;
use crate::store::FileStore;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("direction").required(true).args(["to_sql", "to_files"])))]
pub struct MigrateArgs {
    /// Contexts, boxes or folders (default: everything)
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
    /// From the file spool into the table given by --db / odbcstorage
    #[arg(long)]
    pub to_sql: bool,
    /// From the table back into the file spool
    #[arg(long)]
    pub to_files: bool,
    /// Print what would be copied and change nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Confirm: the messages leave their current storage
    #[arg(short, long)]
    pub yes: bool,
}

/// `vmtool migrate --to-sql | --to-files [TARGET…]`.
pub fn exec(
    setup: &Setup,
    g: &GlobalArgs,
    a: &MigrateArgs,
    out: &mut dyn Write,
    rep: &mut Reporter,
) -> Result<Exit> {
    let sql = setup.store.migration_table()?;
    if !a.dry_run && !a.yes {
        return Err(Error::Usage(
            "migrate moves every message of the targets: add --yes to confirm (or --dry-run to see the plan); stop Asterisk or switch its storage first".into(),
        ));
    }
    let spool = setup.store.spool().clone();
    let files = FileStore::new(spool.clone());
    let source: &dyn MailboxStore = if a.to_sql { &files } else { sql };
    if a.to_sql && !spool.root().is_dir() {
        return Err(Error::NotFound(format!(
            "spool directory {} does not exist",
            spool.root().display()
        )));
    }
    let targets: Vec<String> = a.targets.clone();
    let mut units: Vec<(MailboxId, Folder)> = Vec::new();
    let mut boxes: Vec<MailboxId> = Vec::new();
    if targets.is_empty() {
        for c in source.contexts()? {
            boxes.extend(source.mailboxes(&c)?);
        }
    } else {
        for t in setup.resolve_all_in(source, &targets, rep) {
            match t {
                Target::Spool => {
                    for c in source.contexts()? {
                        boxes.extend(source.mailboxes(&c)?);
                    }
                }
                Target::Context(c) => boxes.extend(source.mailboxes(&c)?),
                Target::Mailbox(mb) => boxes.push(mb),
                Target::Folder(mb, f) => units.push((mb, f)),
                Target::Message(..) => {
                    return Err(Error::Usage(
                        "migrate works on whole folders, boxes or contexts".into(),
                    ))
                }
            }
        }
    }
    for mb in boxes {
        if !source.mailbox_exists(&mb) {
            continue;
        }
        for f in source.folders(&mb)? {
            units.push((mb.clone(), f));
        }
    }
    let lock = super::lock_options(setup, g)?;
    let m = Migrator {
        store: sql,
        spool: &spool,
        lock,
        dry_run: a.dry_run,
    };
    let mut done = 0;
    let mut changed = std::collections::BTreeSet::new();
    let (mut copied, mut resumed, mut removed) = (0, 0, 0);
    for (mb, f) in units {
        let r = if a.to_sql {
            m.folder_to_sql(&mb, &f)
        } else {
            m.folder_to_files(&mb, &f)
        };
        match r {
            Ok(r) => {
                for s in &r.skipped {
                    rep.error(&Error::Failed(s.clone()));
                }
                if !setup.quiet {
                    writeln!(
                        out,
                        "{}{mb}/{f}: {} copied, {} already there, {} removed from the {}{}",
                        if a.dry_run { "(dry run) " } else { "" },
                        r.copied,
                        r.resumed,
                        r.removed,
                        if a.to_sql { "spool" } else { "table" },
                        if r.skipped.is_empty() {
                            String::new()
                        } else {
                            format!(", {} left in place", r.skipped.len())
                        }
                    )
                    .map_err(out_err)?;
                }
                copied += r.copied;
                resumed += r.resumed;
                removed += r.removed;
                done += r.removed;
                if r.removed > 0 {
                    changed.insert(mb);
                }
            }
            Err(e) => rep.error(&e),
        }
    }
    if !setup.quiet {
        writeln!(
            out,
            "{}total: {copied} copied, {resumed} already there, {removed} removed",
            if a.dry_run { "(dry run) " } else { "" }
        )
        .map_err(out_err)?;
    }
    if !a.dry_run && !changed.is_empty() {
        super::notify_asterisk(setup, g, &changed, rep);
    }
    Ok(rep.finish(done))
}
