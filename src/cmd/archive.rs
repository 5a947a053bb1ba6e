//! The retention commands: `archive`, `purge` and `restore`. Selection is by
//! `origtime` (the only trusted time), streamed mailbox by mailbox; each
//! message goes through `archive` / `ops`.

use super::prelude::*;
use crate::archive::{self, Archive, Candidate, Outcome};
use crate::render::MessageRow;
use crate::scan::MsgFiles;
use crate::store::change::{Changer, Found, MsgRef};
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

#[derive(Debug, Args)]
pub struct SelectArgs {
    /// Contexts, boxes or folders (default: the whole spool)
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Messages recorded (origtime) before this age or date: 90d, 6mo, 1y, 2w, 12h, 30min, 2026-11-01 (m alone is refused: min or mo)
    #[arg(long, value_name = "AGE", required = true)]
    pub older_than: String,
    /// Only these folders (default: every folder except INBOX and Urgent)
    #[arg(long, value_name = "FOLDER")]
    pub folder: Vec<String>,
    /// Take unheard messages (INBOX, Urgent) too
    #[arg(long)]
    pub include_new: bool,
    /// At most this many messages in this run
    #[arg(long, value_name = "N")]
    pub max: Option<usize>,
    /// Print what would be done and change nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Print a one-line summary at the end: count, size, boxes, oldest and newest origtime ("would …" with --dry-run); a real purge prints it unless --quiet
    #[arg(long)]
    pub summary: bool,
}

#[derive(Debug, Args)]
pub struct ArchiveArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Archive directory (outside the spool, on a case-sensitive file system)
    #[arg(long, value_name = "DIR", required = true)]
    pub to: PathBuf,
    /// Copy only: leave the messages in the spool (a backup)
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Args)]
pub struct PurgeArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Required: purged messages are gone for good
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Archive directory
    #[arg(long, value_name = "DIR", required = true)]
    pub from: PathBuf,
    /// Archived messages: ctx[/box[/Folder[/N]]], box@ctx[/Folder[/N]] or a msg_id (several allowed)
    #[arg(value_name = "SELECTION", required = true)]
    pub selection: Vec<String>,
    /// Destination box[/Folder] (default: where each message was archived from)
    #[arg(long, value_name = "BOX[/FOLDER]")]
    pub to: Option<String>,
    /// Only messages recorded at or after this date or age
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only messages recorded before this date or age
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Print what would be restored and change nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Also write the formats of voicemail.conf's format= that a message lacks, made from its best audio (the spool's format= changed since it was archived)
    #[arg(long)]
    pub fill_formats: bool,
}

/// A message old enough: where it is, its `.txt` and its listing row.
struct Picked {
    mb: MailboxId,
    folder: Folder,
    files: MsgFiles,
    meta: Metadata,
    row: MessageRow,
}

/// Walks the targets and calls `f` for each message older than the cutoff, in
/// spool order, until `f` says stop or `--max` is reached.
fn select(
    setup: &Setup,
    a: &SelectArgs,
    rep: &mut Reporter,
    mut f: impl FnMut(Picked, &mut Reporter) -> Result<bool>,
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
                        if let Some(irr) = scan.irregular_of(files.num) {
                            let p = setup.store.spool().folder_dir(&mb, folder).join(&irr.name);
                            let e = crate::fsutil::not_regular_err(irr.kind);
                            rep.error(&Error::io("read", p, e));
                            continue;
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
                        let row = setup
                            .store
                            .message_row(&mb, folder, files, Some(&meta), zone);
                        taken += 1;
                        let picked = Picked {
                            mb: mb.clone(),
                            folder: folder.clone(),
                            files: files.clone(),
                            meta,
                            row,
                        };
                        if !f(picked, rep)? {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// What a run did (or would do): counted the same way for both.
#[derive(Default)]
struct Tally {
    count: usize,
    /// None where sizes are not known without reading every recording (SQL purge).
    bytes: Option<u64>,
    boxes: BTreeSet<MailboxId>,
    oldest: Option<i64>,
    newest: Option<i64>,
}

impl Tally {
    fn sized() -> Tally {
        Tally {
            bytes: Some(0),
            ..Tally::default()
        }
    }

    fn add(&mut self, mb: &MailboxId, bytes: u64, origtime: Option<i64>) {
        self.count += 1;
        if let Some(b) = self.bytes.as_mut() {
            *b += bytes;
        }
        if !self.boxes.contains(mb) {
            self.boxes.insert(mb.clone());
        }
        if let Some(t) = origtime {
            self.oldest = Some(self.oldest.map_or(t, |o| o.min(t)));
            self.newest = Some(self.newest.map_or(t, |n| n.max(t)));
        }
    }

    /// "archived 3 message(s) (1.2 MB) from 2 box(es), recorded A to B".
    fn describe(&self, verb: &str) -> String {
        let mut s = format!("{verb} {} message(s)", self.count);
        if let Some(b) = self.bytes {
            s.push_str(&format!(" ({})", human_bytes(b)));
        }
        s.push_str(&format!(" from {} box(es)", self.boxes.len()));
        if let (Some(o), Some(n)) = (self.oldest, self.newest) {
            s.push_str(&format!(
                ", recorded {} to {}",
                local_minute(o),
                local_minute(n)
            ));
        }
        s
    }
}

fn local_minute(t: i64) -> String {
    use chrono::TimeZone;
    chrono::Local.timestamp_opt(t, 0).single().map_or_else(
        || format!("@{t}"),
        |d| d.format("%Y-%m-%d %H:%M").to_string(),
    )
}

fn summary_line(
    out: &mut dyn Write,
    verb: &str,
    tally: &Tally,
    again: Option<usize>,
    failed: usize,
) -> Result<()> {
    let mut line = format!("vmtool: {}", tally.describe(verb));
    if let Some(again) = again {
        line.push_str(&format!("; {again} finished from an earlier run"));
    }
    line.push_str(&format!("; {failed} failed"));
    writeln!(out, "{line}").map_err(out_err)
}

/// Messages archived per `syncfs()` and manifest fsync.
const ARCHIVE_BATCH: usize = 256;
/// Recordings read from the database are held until their batch is
/// written: flush earlier past this many bytes.
const ARCHIVE_BATCH_BYTES: u64 = 64 << 20;

/// One archive run: what it works with, and its counters.
struct ArchiveRun<'a> {
    changer: Changer<'a>,
    args: &'a ArchiveArgs,
    now: i64,
    verbose: bool,
    tally: Tally,
    again: usize,
    failed: usize,
    changed: BTreeSet<MailboxId>,
}

impl ArchiveRun<'_> {
    /// Removes an archived message from its store (nothing with `--keep`).
    fn remove(&self, m: &Found) -> Result<()> {
        if self.args.keep {
            return Ok(());
        }
        self.changer.remove_archived(m)
    }

    fn flush(
        &mut self,
        batch: &mut Vec<(Candidate, Found)>,
        ar: &mut Archive,
        out: &mut dyn Write,
        rep: &mut Reporter,
    ) -> Result<()> {
        let mut sizes = Vec::with_capacity(batch.len());
        let mut keys = Vec::with_capacity(batch.len());
        let mut cands = Vec::with_capacity(batch.len());
        for (c, m) in batch.drain(..) {
            sizes.push((c.size(), c.meta.origtime()));
            keys.push(m);
            cands.push(c);
        }
        let results = ar.archive_batch(cands, self.now);
        for (((at, r), (size, origtime)), m) in results.into_iter().zip(sizes).zip(keys) {
            // Only what the synced manifest holds may leave the store.
            match r.and_then(|o| self.remove(&m).map(|()| o)) {
                Ok(outcome) => {
                    let mb = at.mailbox_id().ok();
                    if outcome == Outcome::AlreadyArchived {
                        self.again += 1;
                    } else if let Some(mb) = &mb {
                        self.tally.add(mb, size, origtime);
                    }
                    if !self.args.keep {
                        if let Some(mb) = mb {
                            self.changed.insert(mb);
                        }
                    }
                    if self.verbose {
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

pub fn exec(
    setup: &Setup,
    g: &GlobalArgs,
    a: &ArchiveArgs,
    out: &mut dyn Write,
    rep: &mut Reporter,
) -> Result<Exit> {
    if !a.keep {
        super::check_file_storage(setup)?;
    }
    let changer = changer_for(setup, g)?;
    let now = setup.env.now();
    let mut ar = if a.select.dry_run {
        None
    } else {
        Some(Archive::open(&a.to, setup.store.spool().root())?)
    };
    let mut run = ArchiveRun {
        changer,
        args: a,
        now,
        verbose: g.verbose,
        tally: Tally::sized(),
        again: 0,
        failed: 0,
        changed: BTreeSet::new(),
    };
    let mut batch: Vec<(Candidate, Found)> = Vec::new();
    let mut batch_bytes = 0u64;
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
    select(setup, &a.select, rep, |p, rep| {
        let here = MsgRef::new(&p.mb, &p.folder, p.files.num);
        let entry = a.to.join(Archive::entry_dir(&p.row));
        let mb = p.mb.clone();
        // A dry run builds the same candidate, so its sizes are the real run's.
        let row = p.row;
        let item = run
            .changer
            .archive_candidate(&p.mb, &p.folder, p.files.num, p.meta)
            .map(|(ex, found)| {
                let cand = Candidate {
                    loc: ex.loc,
                    files: ex.files,
                    meta: ex.meta,
                    row,
                };
                (cand, found)
            });
        let Some(arc) = ar.as_mut() else {
            match item {
                Ok((c, _)) => {
                    writeln!(out, "would archive {here} -> {}", entry.display())
                        .map_err(out_err)?;
                    run.tally.add(&mb, c.size(), c.meta.origtime());
                }
                Err(e) => {
                    run.failed += 1;
                    rep.error(&e);
                }
            }
            return Ok(true);
        };
        match item {
            Ok(item) => {
                batch_bytes += item.0.size();
                batch.push(item);
            }
            Err(e) => {
                run.failed += 1;
                rep.error(&e);
                return Ok(true);
            }
        }
        progress.inc(1);
        if batch.len() >= ARCHIVE_BATCH || batch_bytes >= ARCHIVE_BATCH_BYTES {
            run.flush(&mut batch, arc, out, rep)?;
            batch_bytes = 0;
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
        let (verb, again) = match (a.select.dry_run, a.keep) {
            (true, true) => ("would copy", None),
            (true, false) => ("would archive", None),
            (false, true) => ("copied", Some(run.again)),
            (false, false) => ("archived", Some(run.again)),
        };
        summary_line(out, verb, &run.tally, again, run.failed)?;
    }
    if INTERRUPTED.load(Ordering::SeqCst) {
        return Ok(Exit::Interrupted);
    }
    Ok(rep.finish(run.tally.count + run.again))
}

pub fn exec_purge(
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
    super::check_file_storage(setup)?;
    let changer = changer_for(setup, g)?;
    // Identities first: deleting while walking would re-read each box.
    let mut picked: Vec<(u64, Option<i64>, Found)> = Vec::new();
    let mut failed = 0usize;
    select(setup, &a.select, rep, |p, rep| {
        match changer.locate(&p.mb, &p.folder, p.files.num) {
            Ok(m) => picked.push((changer.size(&m), p.meta.origtime(), m)),
            Err(e) => {
                failed += 1;
                rep.error(&e);
            }
        }
        Ok(true)
    })?;
    // Sizes of rows would mean reading every recording: counts, boxes and dates only.
    let mut tally = if changer.sizes_known() {
        Tally::sized()
    } else {
        Tally::default()
    };
    for (size, origtime, m) in picked {
        if INTERRUPTED.load(Ordering::SeqCst) {
            break;
        }
        let at = m.at();
        let Ok(mb) = at.mailbox_id() else { continue };
        if a.select.dry_run {
            writeln!(out, "would delete {at}").map_err(out_err)?;
            tally.add(&mb, size, origtime);
            continue;
        }
        match changer.purge(&m) {
            Ok(()) => {
                tally.add(&mb, size, origtime);
                if g.verbose {
                    writeln!(out, "deleted {at}").map_err(out_err)?;
                }
            }
            Err(e) => {
                failed += 1;
                rep.error(&e);
            }
        }
    }
    if !a.select.dry_run && !tally.boxes.is_empty() {
        notify_asterisk(setup, g, &tally.boxes, rep);
    }
    purge_summary(setup, a, &tally, failed, out)?;
    if INTERRUPTED.load(Ordering::SeqCst) {
        return Ok(Exit::Interrupted);
    }
    Ok(rep.finish(tally.count))
}

/// A real purge always says what it removed (unless --quiet); a dry run with --summary.
fn purge_summary(
    setup: &Setup,
    a: &PurgeArgs,
    tally: &Tally,
    failed: usize,
    out: &mut dyn Write,
) -> Result<()> {
    if a.select.dry_run {
        if a.select.summary {
            summary_line(out, "would purge", tally, None, failed)?;
        }
    } else if a.select.summary || !setup.quiet {
        summary_line(out, "purged", tally, None, failed)?;
    }
    Ok(())
}

pub fn exec_restore(
    setup: &Setup,
    g: &GlobalArgs,
    a: &RestoreArgs,
    out: &mut dyn Write,
    rep: &mut Reporter,
) -> Result<Exit> {
    super::check_file_storage(setup)?;
    let changer = changer_for(setup, g)?;
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
    let want = archive::matchers(&a.selection)?;
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
    let formats = changer.formats();
    let (mut done, mut changed) = (0usize, BTreeSet::new());
    for e in entries {
        if INTERRUPTED.load(Ordering::SeqCst) {
            break;
        }
        let (mb, folder) = match &dest {
            Some((mb, f)) => (
                mb.clone(),
                f.clone()
                    .unwrap_or_else(|| archive::folder_of(&e.row.folder)),
            ),
            None => {
                match Context::new(&e.row.context).and_then(|c| MailboxId::new(c, &e.row.mailbox)) {
                    Ok(mb) => (mb, archive::folder_of(&e.row.folder)),
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
        if changer.holds(
            &mb,
            &folder,
            e.row.msg_id.as_deref(),
            e.row.origtime,
            &e.txt_sha256,
        ) {
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
        let mut files = match archive::entry_files(&a.from, &e) {
            Ok(f) => f,
            Err(err) => {
                rep.error(&err);
                continue;
            }
        };
        // Kept until the insert has copied what it made.
        let _made = if a.fill_formats {
            match fill_formats(&mut files, &formats, &label) {
                Ok(dir) => dir,
                Err(err) => {
                    rep.error(&err);
                    continue;
                }
            }
        } else {
            let lacks: Vec<&str> = formats
                .iter()
                .map(|t| crate::deposit::ext_of(t))
                .filter(|x| !files.iter().any(|(f, _)| f == x))
                .collect();
            if !lacks.is_empty() && !setup.quiet {
                rep.warn(&format!(
                    "{label}: the archive has no .{} that format= lists (--fill-formats writes it)",
                    lacks.join(", .")
                ));
            }
            None
        };
        match changer.insert(&files, &mb, &folder, &label) {
            Ok(at) => {
                done += 1;
                changed.insert(mb);
                if !setup.quiet {
                    writeln!(out, "restored {label} -> {at}").map_err(out_err)?;
                }
            }
            Err(err) => rep.error(&err),
        }
    }
    if !changed.is_empty() {
        notify_asterisk(setup, g, &changed, rep);
    }
    Ok(rep.finish(done))
}

/// Adds to an archive entry's `files` the formats of `format=` it lacks,
/// written into a temporary directory (returned: it must outlive the insert).
fn fill_formats(
    files: &mut Vec<(String, PathBuf)>,
    formats: &[String],
    label: &str,
) -> Result<Option<tempfile::TempDir>> {
    let made = crate::deposit::missing_formats(files, formats)
        .map_err(|e| Error::Failed(format!("{label}: {e}; not restored")))?;
    if made.is_empty() {
        return Ok(None);
    }
    let dir = tempfile::Builder::new()
        .prefix("vmtool-restore-")
        .tempdir()
        .map_err(|e| Error::io("create", std::env::temp_dir(), e))?;
    for (ext, bytes) in made {
        let p = dir.path().join(format!("msg.{ext}"));
        std::fs::write(&p, bytes).map_err(|e| Error::io("write", &p, e))?;
        files.push((ext, p));
    }
    Ok(Some(dir))
}

/// Sizes for people: 0.0 MB for a few small messages says nothing.
pub(crate) fn human_bytes(b: u64) -> String {
    let f = b as f64;
    if f >= 1e9 {
        format!("{:.1} GB", f / 1e9)
    } else if f >= 1e6 {
        format!("{:.1} MB", f / 1e6)
    } else {
        format!("{:.1} kB", f / 1e3)
    }
}
