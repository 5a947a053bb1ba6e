//! The retention commands: `archive`, `purge`, `restore`, and `ls`/`show` of
//! an archive. Selection is by `origtime` (the only trusted time), streamed
//! mailbox by mailbox; each message goes through `archive` / `ops`.

use crate::app::{message_row, out_err, parse_when, LsFilter, Reporter, Setup};
use crate::archive::{self, Archive, Candidate, ManifestEntry, Outcome};
use crate::change::{engine_for, notify_asterisk, INTERRUPTED};
use crate::cli::{
    ArchiveArgs, Format, GlobalArgs, LsArgs, PurgeArgs, RestoreArgs, SelectArgs, ShowArgs,
};
use crate::error::{Error, Exit, Result};
use crate::ops::Engine;
use crate::render::{sanitize, MessageWriter};
use crate::spool::{Context, Folder, MailboxId};
use crate::store::MailboxStore;
use crate::target::{looks_like_msg_id, Target};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;

/// Walks the targets and calls `f` for each message older than the cutoff, in
/// spool order, until `f` says stop or `--max` is reached.
fn select(
    setup: &Setup,
    engine: &Engine,
    a: &SelectArgs,
    rep: &mut Reporter,
    mut f: impl FnMut(Candidate, &mut Reporter) -> Result<bool>,
) -> Result<()> {
    let now = setup.env.now();
    let cutoff = parse_when(&a.older_than, now, false)?;
    let mut only = Vec::new();
    for name in &a.folder {
        only.push(Folder::known(name).unwrap_or(Folder::from_dir_name(name)?));
    }
    let folder_ok = |fo: &Folder| {
        if !only.is_empty() {
            return only.contains(fo);
        }
        a.include_new || !fo.is_new()
    };
    let targets = if a.targets.is_empty() {
        vec![Target::Spool]
    } else {
        setup.resolve_all(&a.targets, rep)
    };
    let mut taken = 0usize;
    for t in &targets {
        let contexts: Vec<Option<Context>> = match t {
            Target::Spool => setup.store.contexts()?.into_iter().map(Some).collect(),
            _ => vec![None],
        };
        for ctx in contexts {
            let boxes = match &ctx {
                Some(c) => setup.store.mailboxes(c)?,
                None => match t {
                    Target::Context(c) => setup.store.mailboxes(c)?,
                    Target::Mailbox(mb) | Target::Folder(mb, _) | Target::Message(mb, _, _) => {
                        vec![mb.clone()]
                    }
                    Target::Spool => Vec::new(),
                },
            };
            for mb in boxes {
                let zone = setup.zone_for(&mb, false);
                let folders = match t {
                    Target::Folder(_, fo) | Target::Message(_, fo, _) => vec![fo.clone()],
                    _ => setup.store.folders(&mb)?,
                };
                for folder in folders.iter().filter(|fo| folder_ok(fo)) {
                    let scan = match setup.store.scan_folder(&mb, folder) {
                        Ok(s) => s,
                        Err(e) => {
                            rep.error(&e);
                            continue;
                        }
                    };
                    for files in scan.messages.iter().filter(|m| m.txt) {
                        if let Target::Message(_, _, n) = t {
                            if files.num != *n {
                                continue;
                            }
                        }
                        if INTERRUPTED.load(Ordering::SeqCst) || a.max.is_some_and(|m| taken >= m) {
                            return Ok(());
                        }
                        let meta = match setup.store.read_metadata(&mb, folder, files.num) {
                            Ok(m) => m,
                            Err(e) => {
                                rep.error(&e);
                                continue;
                            }
                        };
                        let Some(origtime) = meta.origtime() else {
                            rep.warn(&format!(
                                "{}/{}/{folder}/{}: no origtime, its age is unknown; left in place",
                                mb.context,
                                mb.mailbox(),
                                files.num.stem()
                            ));
                            continue;
                        };
                        if origtime >= cutoff {
                            continue;
                        }
                        let loc = match engine.locate(&mb, folder, files.num) {
                            Ok(l) => l,
                            Err(e) => {
                                rep.error(&Error::from(e));
                                continue;
                            }
                        };
                        let paths = loc
                            .exts
                            .iter()
                            .map(|e| {
                                (
                                    e.clone(),
                                    setup.store.spool().msg_file(&mb, folder, files.num, e),
                                )
                            })
                            .collect();
                        let row = message_row(setup, &mb, folder, files, Some(&meta), zone);
                        taken += 1;
                        let go_on = f(
                            Candidate {
                                loc,
                                files: paths,
                                meta,
                                row,
                            },
                            rep,
                        )?;
                        if !go_on {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

fn summary_line(
    out: &mut dyn Write,
    verb: &str,
    done: usize,
    again: usize,
    failed: usize,
    bytes: u64,
    boxes: usize,
) -> Result<()> {
    writeln!(
        out,
        "vmtool: {verb} {done} message(s) ({:.1} MB) from {boxes} box(es); {again} finished from an earlier run; {failed} failed",
        bytes as f64 / 1e6
    )
    .map_err(out_err)
}

/// Messages archived per `syncfs()` and manifest fsync.
const ARCHIVE_BATCH: usize = 256;

/// One archive run: what it works with, and its counters.
struct ArchiveRun<'a> {
    engine: &'a Engine<'a>,
    args: &'a ArchiveArgs,
    now: i64,
    verbose: bool,
    done: usize,
    again: usize,
    failed: usize,
    bytes: u64,
    changed: BTreeSet<MailboxId>,
}

impl ArchiveRun<'_> {
    fn flush(
        &mut self,
        batch: &mut Vec<Candidate>,
        ar: &mut Archive,
        out: &mut dyn Write,
        rep: &mut Reporter,
    ) -> Result<()> {
        let (engine, a, now, verbose) = (self.engine, self.args, self.now, self.verbose);
        let sizes: Vec<u64> = batch
            .iter()
            .map(|c| {
                c.files
                    .iter()
                    .filter_map(|(_, p)| std::fs::metadata(p).ok())
                    .map(|m| m.len())
                    .sum()
            })
            .collect();
        for ((at, r), size) in ar
            .archive_batch(engine, std::mem::take(batch), now, a.keep)
            .into_iter()
            .zip(sizes)
        {
            match r {
                Ok(outcome) => {
                    if outcome == Outcome::AlreadyArchived {
                        self.again += 1;
                    } else {
                        self.done += 1;
                        self.bytes += size;
                    }
                    if !a.keep {
                        if let Ok(mb) = at.mailbox_id() {
                            self.changed.insert(mb);
                        }
                    }
                    if verbose {
                        writeln!(out, "archived {at}").map_err(out_err)?;
                    }
                }
                Err(e) => {
                    self.failed += 1;
                    rep.error(&e);
                }
            }
        }
        Ok(())
    }
}

pub fn cmd_archive(
    setup: &Setup,
    g: &GlobalArgs,
    a: &ArchiveArgs,
    out: &mut dyn Write,
    rep: &mut Reporter,
) -> Result<Exit> {
    crate::change::file_only(setup, "archive")?;
    if !a.keep {
        crate::change::check_file_storage(setup)?;
    }
    let engine = engine_for(setup, g)?;
    let now = setup.env.now();
    let mut ar = if a.select.dry_run {
        None
    } else {
        Some(Archive::open(&a.to, setup.store.spool().root())?)
    };
    let mut run = ArchiveRun {
        engine: &engine,
        args: a,
        now,
        verbose: g.verbose,
        done: 0,
        again: 0,
        failed: 0,
        bytes: 0,
        changed: BTreeSet::new(),
    };
    let mut batch: Vec<Candidate> = Vec::new();
    // A spinner with counts on a terminal only: cron runs stay silent.
    let progress = if !setup.quiet
        && std::io::IsTerminal::is_terminal(&std::io::stderr())
        && !a.select.dry_run
    {
        let pb = indicatif::ProgressBar::new_spinner();
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} archiving: {pos} messages ({per_sec}) {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        pb
    } else {
        indicatif::ProgressBar::hidden()
    };
    select(setup, &engine, &a.select, rep, |s, rep| {
        let Some(arc) = ar.as_mut() else {
            writeln!(
                out,
                "would archive {} -> {}",
                s.loc.at,
                a.to.join(Archive::entry_dir(&s.row)).display()
            )
            .map_err(out_err)?;
            run.done += 1;
            return Ok(true);
        };
        batch.push(s);
        progress.inc(1);
        if batch.len() >= ARCHIVE_BATCH {
            run.flush(&mut batch, arc, out, rep)?;
        }
        Ok(true)
    })?;
    if let Some(arc) = ar.as_mut() {
        if !batch.is_empty() {
            run.flush(&mut batch, arc, out, rep)?;
        }
    }
    progress.finish_and_clear();
    if !run.changed.is_empty() {
        notify_asterisk(setup, g, &run.changed, rep);
    }
    if a.select.summary {
        summary_line(
            out,
            if a.keep { "copied" } else { "archived" },
            run.done,
            run.again,
            run.failed,
            run.bytes,
            run.changed.len(),
        )?;
    }
    if INTERRUPTED.load(Ordering::SeqCst) {
        return Ok(Exit::Interrupted);
    }
    Ok(rep.finish(run.done + run.again))
}

pub fn cmd_purge(
    setup: &Setup,
    g: &GlobalArgs,
    a: &PurgeArgs,
    out: &mut dyn Write,
    rep: &mut Reporter,
) -> Result<Exit> {
    if !a.yes && !a.select.dry_run {
        return Err(Error::Usage(
            "purge deletes messages for good: add --yes (or --dry-run to see what it would delete)"
                .into(),
        ));
    }
    if let Some(sql) = setup.store.sql() {
        return purge_sql(setup, g, sql, a, out, rep);
    }
    crate::change::check_file_storage(setup)?;
    let engine = engine_for(setup, g)?;
    let (mut done, mut failed, mut bytes) = (0usize, 0usize, 0u64);
    let mut changed: BTreeSet<MailboxId> = BTreeSet::new();
    select(setup, &engine, &a.select, rep, |s, rep| {
        if a.select.dry_run {
            writeln!(out, "would delete {}", s.loc.at).map_err(out_err)?;
            done += 1;
            return Ok(true);
        }
        let size: u64 = s
            .files
            .iter()
            .filter_map(|(_, p)| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        match engine.delete_plain(&s.loc) {
            Ok(()) => {
                done += 1;
                bytes += size;
                if let Ok(mb) = s.loc.at.mailbox_id() {
                    changed.insert(mb);
                }
                if g.verbose {
                    writeln!(out, "deleted {}", s.loc.at).map_err(out_err)?;
                }
            }
            Err(e) => {
                failed += 1;
                rep.error(&Error::from(e));
            }
        }
        Ok(true)
    })?;
    if !changed.is_empty() {
        notify_asterisk(setup, g, &changed, rep);
    }
    if a.select.summary {
        summary_line(out, "purged", done, 0, failed, bytes, changed.len())?;
    }
    if INTERRUPTED.load(Ordering::SeqCst) {
        return Ok(Exit::Interrupted);
    }
    Ok(rep.finish(done))
}

/// `purge` on the SQL store: rows older than the cutoff, each deleted in its
/// own transaction after its identity is checked (never into `Deleted`).
fn purge_sql(
    setup: &Setup,
    g: &GlobalArgs,
    sql: &crate::sql::SqlStore,
    a: &PurgeArgs,
    out: &mut dyn Write,
    rep: &mut Reporter,
) -> Result<Exit> {
    use crate::sql::change::{SqlAction, SqlEngine, SqlMsg};
    let sel = &a.select;
    let cutoff = parse_when(&sel.older_than, setup.env.now(), false)?;
    let mut only = Vec::new();
    for name in &sel.folder {
        only.push(Folder::known(name).unwrap_or(Folder::from_dir_name(name)?));
    }
    let folder_ok = |fo: &Folder| {
        if only.is_empty() {
            sel.include_new || !fo.is_new()
        } else {
            only.contains(fo)
        }
    };
    let targets = if sel.targets.is_empty() {
        vec![Target::Spool]
    } else {
        setup.resolve_all(&sel.targets, rep)
    };
    let mut picked: Vec<SqlMsg> = Vec::new();
    for t in &targets {
        let boxes = match t {
            Target::Spool => {
                let mut v = Vec::new();
                for c in setup.store.contexts()? {
                    v.extend(setup.store.mailboxes(&c)?);
                }
                v
            }
            Target::Context(c) => setup.store.mailboxes(c)?,
            Target::Mailbox(mb) | Target::Folder(mb, _) | Target::Message(mb, _, _) => {
                vec![mb.clone()]
            }
        };
        for mb in boxes {
            let folders = match t {
                Target::Folder(_, f) | Target::Message(_, f, _) => vec![f.clone()],
                _ => setup.store.folders(&mb)?,
            };
            for f in folders.iter().filter(|f| folder_ok(f)) {
                for m in setup.store.scan_folder(&mb, f)?.messages {
                    if let Target::Message(_, _, n) = t {
                        if *n != m.num {
                            continue;
                        }
                    }
                    let row = sql.msg_row(&mb, f, m.num)?;
                    let old = row
                        .origtime
                        .as_deref()
                        .and_then(|o| o.trim().parse::<i64>().ok())
                        .is_some_and(|o| o < cutoff);
                    if old && sel.max.is_none_or(|x| picked.len() < x) {
                        picked.extend(SqlMsg::from_row(&row, &sql.table));
                    }
                }
            }
        }
    }
    let engine = SqlEngine {
        store: sql,
        conf: setup.vmconf.as_ref(),
        lock: crate::change::lock_options(setup, g)?,
    };
    let (mut done, mut failed) = (0usize, 0usize);
    let mut changed: BTreeSet<MailboxId> = BTreeSet::new();
    for m in picked {
        if INTERRUPTED.load(Ordering::SeqCst) {
            break;
        }
        if sel.dry_run {
            writeln!(out, "would delete {}", m.at()).map_err(out_err)?;
            done += 1;
            continue;
        }
        match engine.apply(&m, &SqlAction::Purge) {
            Ok(_) => {
                done += 1;
                changed.insert(m.mailbox.clone());
                if g.verbose {
                    writeln!(out, "deleted {}", m.at()).map_err(out_err)?;
                }
            }
            Err(e) => {
                failed += 1;
                rep.error(&Error::Failed(e));
            }
        }
    }
    if !changed.is_empty() {
        notify_asterisk(setup, g, &changed, rep);
    }
    if sel.summary {
        summary_line(out, "purged", done, 0, failed, 0, changed.len())?;
    }
    if INTERRUPTED.load(Ordering::SeqCst) {
        return Ok(Exit::Interrupted);
    }
    Ok(rep.finish(done))
}

/// A selection of archived messages, matched by text (the boxes may no longer exist).
struct EntryMatch {
    msg_id: Option<String>,
    context: Option<String>,
    mailbox: Option<String>,
    folder: Option<String>,
    number: Option<u16>,
}

impl EntryMatch {
    fn parse(s: &str) -> Result<EntryMatch> {
        if looks_like_msg_id(s) {
            return Ok(EntryMatch {
                msg_id: Some(s.to_string()),
                context: None,
                mailbox: None,
                folder: None,
                number: None,
            });
        }
        let parts: Vec<&str> = s.trim_end_matches('/').split('/').collect();
        if parts
            .iter()
            .any(|p| p.is_empty() || *p == ".." || *p == ".")
            || parts.len() > 4
        {
            return Err(Error::Usage(format!(
                "\"{s}\" is not a selection like compta/1202/Old or 1202@compta"
            )));
        }
        let (context, mailbox, rest) = match parts[0].split_once('@') {
            Some((b, c)) => (Some(c.to_string()), Some(b.to_string()), &parts[1..]),
            None => (
                Some(parts[0].to_string()),
                parts.get(1).map(|s| s.to_string()),
                parts.get(2..).unwrap_or(&[]),
            ),
        };
        let folder = rest.first().map(|f| f.to_string());
        let number = match rest.get(1) {
            Some(n) => Some(
                crate::spool::MsgNum::parse(n)
                    .ok_or_else(|| Error::Usage(format!("\"{n}\" is not a message number")))?
                    .get(),
            ),
            None => None,
        };
        Ok(EntryMatch {
            msg_id: None,
            context,
            mailbox,
            folder,
            number,
        })
    }

    fn matches(&self, e: &ManifestEntry) -> bool {
        let r = &e.row;
        self.msg_id
            .as_ref()
            .is_none_or(|id| r.msg_id.as_deref() == Some(id))
            && self.context.as_ref().is_none_or(|c| c == &r.context)
            && self.mailbox.as_ref().is_none_or(|m| m == &r.mailbox)
            && self
                .folder
                .as_ref()
                .is_none_or(|f| f.eq_ignore_ascii_case(&r.folder))
            && self.number.is_none_or(|n| r.number == format!("{n:04}"))
    }
}

fn matchers(args: &[String]) -> Result<Vec<EntryMatch>> {
    args.iter().map(|s| EntryMatch::parse(s)).collect()
}

pub fn cmd_restore(
    setup: &Setup,
    g: &GlobalArgs,
    a: &RestoreArgs,
    out: &mut dyn Write,
    rep: &mut Reporter,
) -> Result<Exit> {
    crate::change::file_only(setup, "restore")?;
    crate::change::check_file_storage(setup)?;
    let engine = engine_for(setup, g)?;
    let now = setup.env.now();
    let since = a
        .since
        .as_deref()
        .map(|s| parse_when(s, now, false))
        .transpose()?;
    let until = a
        .until
        .as_deref()
        .map(|s| parse_when(s, now, false))
        .transpose()?;
    let want = matchers(&a.selection)?;
    let dest = match &a.to {
        Some(t) => match setup.resolve_all(std::slice::from_ref(t), rep).pop() {
            Some(Target::Mailbox(mb)) => Some((mb, None)),
            Some(Target::Folder(mb, f)) => Some((mb, Some(f))),
            Some(_) => return Err(Error::Usage("--to takes box[/Folder]".into())),
            None => return Ok(Exit::NotFound),
        },
        None => None,
    };
    let mut entries = Vec::new();
    archive::for_each_entry(&a.from, |e| {
        let t = e.row.origtime;
        let in_time = since.is_none_or(|s| t.is_some_and(|t| t >= s))
            && until.is_none_or(|u| t.is_some_and(|t| t < u));
        if in_time && want.iter().any(|m| m.matches(&e)) {
            entries.push(e);
        }
        Ok(())
    })?;
    if entries.is_empty() {
        return Err(Error::NotFound(format!(
            "nothing in {} matches the selection",
            a.from.display()
        )));
    }
    let (mut done, mut changed) = (0usize, BTreeSet::new());
    for e in entries {
        if INTERRUPTED.load(Ordering::SeqCst) {
            break;
        }
        let (mb, folder) = match &dest {
            Some((mb, f)) => (
                mb.clone(),
                f.clone().unwrap_or_else(|| folder_of(&e.row.folder)),
            ),
            None => {
                match Context::new(&e.row.context).and_then(|c| MailboxId::new(c, &e.row.mailbox)) {
                    Ok(mb) => (mb, folder_of(&e.row.folder)),
                    Err(err) => {
                        rep.error(&Error::from(err));
                        continue;
                    }
                }
            }
        };
        let label = format!(
            "{}/{}/{}/msg{}",
            e.row.context, e.row.mailbox, e.row.folder, e.row.number
        );
        if already_there(setup, &mb, &folder, &e.txt_sha256) {
            rep.warn(&format!(
                "{label}: already in {mb}/{folder} (same .txt); not restored twice"
            ));
            continue;
        }
        if a.dry_run {
            writeln!(
                out,
                "would restore {label} -> {}/{}/{folder}",
                mb.context,
                mb.mailbox()
            )
            .map_err(out_err)?;
            done += 1;
            continue;
        }
        let files = match archive::entry_files(&a.from, &e) {
            Ok(f) => f,
            Err(err) => {
                rep.error(&err);
                continue;
            }
        };
        match engine.import(&files, &mb, &folder) {
            Ok(at) => {
                done += 1;
                changed.insert(mb);
                if !setup.quiet {
                    writeln!(out, "restored {label} -> {at}").map_err(out_err)?;
                }
            }
            Err(err) => rep.error(&Error::from(err)),
        }
    }
    if !changed.is_empty() {
        notify_asterisk(setup, g, &changed, rep);
    }
    Ok(rep.finish(done))
}

fn folder_of(name: &str) -> Folder {
    Folder::known(name).unwrap_or_else(|| Folder::from_dir_name(name).unwrap_or(Folder::Inbox))
}

/// A message with these exact `.txt` bytes is already in the folder.
fn already_there(setup: &Setup, mb: &MailboxId, folder: &Folder, txt_sha: &str) -> bool {
    let Ok(scan) = setup.store.scan_folder(mb, folder) else {
        return false;
    };
    scan.messages.iter().filter(|m| m.txt).any(|m| {
        crate::fsutil::sha256_file(&setup.store.spool().txt_path(mb, folder, m.num))
            .map(|s| crate::fsutil::hex(&s) == txt_sha)
            .unwrap_or(false)
    })
}

/// `ls --archive DIR`: the archive's messages with the spool's columns and filters.
pub(crate) fn ls_archive(
    setup: &Setup,
    a: &LsArgs,
    filter: &LsFilter,
    dir: &Path,
    out: &mut dyn Write,
    rep: &mut Reporter,
) -> Result<Exit> {
    let want = matchers(&a.targets)?;
    let mut w = MessageWriter::new(std::io::BufWriter::new(out), setup.format, setup.style);
    let mut n = 0usize;
    let zone = if a.utc {
        crate::app::Zone::Utc
    } else {
        crate::app::Zone::local()
    };
    archive::for_each_entry(dir, |e| {
        if !want.is_empty() && !want.iter().any(|m| m.matches(&e)) {
            return Ok(());
        }
        if !filter.folder_ok(&folder_of(&e.row.folder)) || !filter.row_ok(&e.row) {
            return Ok(());
        }
        let mut row = e.row;
        row.path = dir.join(&row.path).display().to_string();
        // The short date is display state, not stored in the manifest.
        row.short_date = row
            .origtime
            .and_then(|t| zone.stamps(t))
            .map_or_else(|| "?".into(), |s| s.1);
        w.write(&row).map_err(out_err)?;
        n += 1;
        Ok(())
    })?;
    w.finish().map_err(out_err)?;
    Ok(rep.finish(n.max(1)))
}

/// `show --archive DIR SELECTION`: every field and file of archived messages,
/// with the checksums verified.
pub fn show_archive(
    setup: &Setup,
    a: &ShowArgs,
    dir: &Path,
    out: &mut dyn Write,
    rep: &mut Reporter,
) -> Result<Exit> {
    let want = matchers(&a.targets)?;
    let mut n = 0usize;
    archive::for_each_entry(dir, |e| {
        if !want.iter().any(|m| m.matches(&e)) {
            return Ok(());
        }
        n += 1;
        let problems: Vec<String> = e
            .files
            .iter()
            .filter_map(|f| {
                let p = match archive::entry_path(dir, &e, &f.name) {
                    Ok(p) => p,
                    Err(err) => return Some(err.to_string()),
                };
                match crate::fsutil::sha256_file(&p) {
                    Ok(s) if crate::fsutil::hex(&s) == f.sha256 => None,
                    Ok(_) => Some(format!("{}: checksum differs from the manifest", f.name)),
                    Err(err) => Some(format!("{}: {err}", f.name)),
                }
            })
            .collect();
        if setup.format == Format::Json {
            let mut v = serde_json::to_value(&e).map_err(|x| Error::Failed(x.to_string()))?;
            if let Some(o) = v.as_object_mut() {
                o.insert("problems".into(), serde_json::json!(problems));
            }
            writeln!(out, "{v}").map_err(out_err)?;
            return Ok(());
        }
        writeln!(
            out,
            "{} (archived from {}/{}/{}/msg{})",
            setup
                .style
                .bold(&sanitize(&dir.join(&e.dir).display().to_string())),
            sanitize(&e.row.context),
            sanitize(&e.row.mailbox),
            sanitize(&e.row.folder),
            e.row.number
        )
        .map_err(out_err)?;
        writeln!(out, "  fields:").map_err(out_err)?;
        let width = e.fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, v) in &e.fields {
            writeln!(out, "    {:width$} = {}", sanitize(k), sanitize(v)).map_err(out_err)?;
            if a.explain {
                let text = crate::metadata::explain(k)
                    .unwrap_or("Not a key Asterisk writes; kept as found.");
                writeln!(out, "    {:width$}   {text}", "").map_err(out_err)?;
            }
        }
        writeln!(out, "  files:").map_err(out_err)?;
        for f in &e.files {
            let ext = f.name.split_once('.').map(|(_, x)| x).unwrap_or("");
            let secs = archive::entry_path(dir, &e, &f.name)
                .ok()
                .and_then(|p| crate::audio::probe_file(&p, ext).ok())
                .and_then(|i| i.duration_secs())
                .map(|d| format!("{d:.2} s"))
                .unwrap_or_default();
            writeln!(
                out,
                "    {:16} {:>9} bytes  {secs}",
                sanitize(&f.name),
                f.size
            )
            .map_err(out_err)?;
        }
        writeln!(out, "  problems:").map_err(out_err)?;
        if problems.is_empty() {
            writeln!(out, "    none").map_err(out_err)?;
        }
        for p in &problems {
            writeln!(out, "    {}", sanitize(p)).map_err(out_err)?;
        }
        Ok(())
    })?;
    if n == 0 {
        rep.error(&Error::NotFound(format!(
            "nothing in {} matches",
            dir.display()
        )));
    }
    Ok(rep.finish(n))
}
