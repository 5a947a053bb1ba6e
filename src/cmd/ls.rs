//! `vmtool ls`: one line (or JSON object, or CSV row) per message, mailboxes
//! listed in parallel and written in order; `--archive` lists an archive.

use super::prelude::*;
use crate::archive;
use crate::listing::LsFilter;
use crate::render::MessageWriter;
use std::io;

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Contexts, boxes, folders or messages (default: the whole spool)
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Only these folders (repeatable, case-insensitive)
    #[arg(long, value_name = "FOLDER")]
    pub folder: Vec<String>,
    /// Only new messages (INBOX and Urgent)
    #[arg(long)]
    pub new: bool,
    /// Only messages recorded at or after this date or age: 7d, 12h, 2w, 6mo, 1y, 30min, 2026-11-01, "2026-11-01 08:00"
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only messages recorded before this date or age
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Only messages whose caller name or number contains this text (case-insensitive)
    #[arg(long, value_name = "TEXT")]
    pub caller: Option<String>,
    /// Show dates in UTC instead of the mailbox's zone
    #[arg(long)]
    pub utc: bool,
    /// List an archive made by `vmtool archive` instead of the spool
    #[arg(long, value_name = "DIR")]
    pub archive: Option<PathBuf>,
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
        let (rows, errors) = (&mut listing.rows, &mut listing.errors);
        match setup
            .store
            .list_folder(mb, folder, only, filter, zone, &mut w, rows, errors)
        {
            Ok(found) => {
                if let Some(n) = only.filter(|_| !found) {
                    // Orphans are for show/check; a missing number is an error.
                    listing.errors.push(Error::NotFound(format!(
                        "no message {} in {}",
                        n.stem(),
                        target::describe(&Target::Folder(mb.clone(), folder.clone()))
                    )));
                }
            }
            Err(e) => listing.errors.push(e),
        }
    }
    listing
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

pub fn exec(setup: &Setup, a: &LsArgs, out: &mut dyn Write, rep: &mut Reporter) -> Result<Exit> {
    use rayon::prelude::*;
    let filter = LsFilter::from_args(setup, a)?;
    if let Some(dir) = &a.archive {
        return ls_archive(setup, a, &filter, dir, out, rep);
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
        let whole = match t {
            Target::Spool => setup.store.read_whole(),
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

/// `ls --archive DIR`: the archive's messages with the spool's columns and filters.
pub(crate) fn ls_archive(
    setup: &Setup,
    a: &LsArgs,
    filter: &LsFilter,
    dir: &Path,
    out: &mut dyn Write,
    rep: &mut Reporter,
) -> Result<Exit> {
    let want = archive::matchers(&a.targets)?;
    let mut w = MessageWriter::new(std::io::BufWriter::new(out), setup.format, setup.style);
    let mut n = 0usize;
    let zone = if a.utc {
        super::Zone::Utc
    } else {
        super::Zone::local()
    };
    archive::for_each_entry(dir, |e| {
        if !want.is_empty() && !want.iter().any(|m| m.matches(&e)) {
            return Ok(());
        }
        if !filter.folder_ok(&archive::folder_of(&e.row.folder)) || !filter.row_ok(&e.row) {
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
