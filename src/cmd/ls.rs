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
    /// Only urgent messages (flag=Urgent, wherever they are)
    #[arg(long)]
    pub urgent: bool,
    /// Sort by this field instead of the spool's order (ties keep the spool's order)
    #[arg(long, value_enum, value_name = "FIELD")]
    pub sort: Option<SortKey>,
    /// Reverse the order (newest, longest or last first)
    #[arg(long)]
    pub reverse: bool,
    /// At most N messages (after sorting)
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

/// What `ls --sort` orders by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SortKey {
    /// origtime, oldest first
    Date,
    /// seconds, shortest first
    Duration,
    /// caller name (the number when there is none), case-insensitive
    Caller,
    /// context, box, folder, number
    Box,
}

impl SortKey {
    fn order(self, a: &render::MessageRow, b: &render::MessageRow) -> std::cmp::Ordering {
        // The name as shown, else the number (a caller without a name is
        // listed by number).
        let caller = |r: &render::MessageRow| {
            let name = r.callerid_name.as_deref().filter(|n| !n.is_empty());
            (
                name.or(r.callerid_num.as_deref())
                    .unwrap_or("")
                    .to_lowercase(),
                r.callerid_num.clone().unwrap_or_default(),
            )
        };
        match self {
            SortKey::Date => a.origtime.cmp(&b.origtime),
            SortKey::Duration => a.duration.cmp(&b.duration),
            SortKey::Caller => caller(a).cmp(&caller(b)),
            SortKey::Box => (&a.context, &a.mailbox, &a.folder, &a.number)
                .cmp(&(&b.context, &b.mailbox, &b.folder, &b.number)),
        }
    }
}

/// One mailbox's part of a listing, rendered by a worker thread.
struct BoxListing {
    bytes: Vec<u8>,
    rows: usize,
    errors: Vec<Error>,
}

/// Lists one mailbox (all its folders, or the target's folder/message) into a buffer.
fn list_box(
    setup: &Setup,
    t: &Target,
    mb: &MailboxId,
    filter: &LsFilter,
    utc: bool,
    format: Format,
) -> BoxListing {
    let mut listing = BoxListing {
        // A box of 100 messages is about 50 KB of JSON: no regrowth for most.
        bytes: Vec::with_capacity(64 * 1024),
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
    let mut w = MessageWriter::body_only(&mut listing.bytes, format, setup.style);
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
    // Boxes in different zones: a table's dates say their zone (rows are
    // rendered as JSON and read back to get it).
    let zoned = setup.format == Format::Table && zones_differ(setup, &targets, a.utc);
    let mut w = MessageWriter::new(
        io::BufWriter::with_capacity(1 << 16, out),
        setup.format,
        setup.style,
    );
    if zoned {
        w = w.with_zoned_dates();
    }
    // Sorting, a limit or --urgent: rows are gathered (as JSON, the one
    // rendering that reads back whole) and written at the end.
    let gather = a.sort.is_some() || a.reverse || a.limit.is_some() || a.urgent;
    let render_as = if gather || zoned {
        Format::Json
    } else {
        setup.format
    };
    let mut rows: Vec<render::MessageRow> = Vec::new();
    let mut listed = 0usize;
    for t in &targets {
        // The whole table in one ordered read (on failure, box by box as
        // before, where the error shows again).
        let _whole = match t {
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
            // The same chunks when the rows are already read (whole table):
            // four times as many gave the peak RSS 10 MB more on 1,000,000
            // rows and no measurable time.
            for chunk in boxes.chunks(LS_CHUNK) {
                setup.store.prefetch(chunk);
                let parts: Vec<BoxListing> = chunk
                    .par_iter()
                    .map(|mb| list_box(setup, t, mb, &filter, a.utc, render_as))
                    .collect();
                for part in parts {
                    for e in &part.errors {
                        rep.error(e);
                    }
                    if gather {
                        gather_rows(setup, a, &part.bytes, &mut rows, zoned)?;
                    } else if zoned {
                        let mut part_rows = Vec::new();
                        gather_rows(setup, a, &part.bytes, &mut part_rows, zoned)?;
                        for row in &part_rows {
                            w.write(row).map_err(out_err)?;
                        }
                    } else {
                        w.write_rendered(&part.bytes).map_err(out_err)?;
                    }
                    listed += part.rows;
                }
                setup.store.release(chunk);
            }
        }
    }
    if gather {
        order_rows(a, &mut rows);
        for row in &rows {
            w.write(row).map_err(out_err)?;
        }
        listed = rows.len();
    }
    // A CSV with no rows still has its header.
    if setup.format == Format::Csv {
        w.header().map_err(out_err)?;
    }
    w.finish().map_err(out_err)?;
    Ok(rep.finish(listed))
}

/// `--urgent`, `--sort`, `--reverse`, `--limit` on gathered rows.
fn order_rows(a: &LsArgs, rows: &mut Vec<render::MessageRow>) {
    if a.urgent {
        rows.retain(|r| r.urgent);
    }
    if let Some(key) = a.sort {
        rows.sort_by(|x, y| key.order(x, y));
    }
    if a.reverse {
        rows.reverse();
    }
    rows.truncate(a.limit.unwrap_or(usize::MAX));
}

/// Whether the boxes of these targets show dates in more than one zone. Only
/// box names are read, and only when voicemail.conf gives boxes other zones.
fn zones_differ(setup: &Setup, targets: &[Target], utc: bool) -> bool {
    let Some(vc) = setup.vmconf.as_ref().filter(|_| !utc) else {
        return false;
    };
    // A box voicemail.conf gives no zone shows local time: when no box has
    // another zone, the listing has one zone whatever it lists.
    let local = super::Zone::local();
    let one_zone = vc.mailboxes.iter().all(|m| {
        vc.zone_timezone(m)
            .and_then(|z| z.parse::<chrono_tz::Tz>().ok())
            .is_none_or(|tz| super::Zone::Named(tz) == local)
    });
    if one_zone {
        return false;
    }
    let mut boxes = Vec::new();
    for t in targets {
        boxes.extend(setup.mailboxes_of(t).unwrap_or_default());
    }
    setup.zones_differ(&boxes, utc)
}

/// Reads back one box's rows (JSON lines), keeps the urgent ones if asked,
/// and gives each its table date in the box's zone (with the zone's name
/// after it when `zoned`).
fn gather_rows(
    setup: &Setup,
    a: &LsArgs,
    bytes: &[u8],
    rows: &mut Vec<render::MessageRow>,
    zoned: bool,
) -> Result<()> {
    for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let mut row: render::MessageRow = serde_json::from_slice(line)
            .map_err(|e| Error::Usage(format!("internal listing error: {e}")))?;
        let zone = Context::new(&row.context)
            .ok()
            .and_then(|c| MailboxId::new(c, &row.mailbox).ok())
            .map_or(super::Zone::Utc, |mb| setup.zone_for(&mb, a.utc));
        let date = |t| {
            if zoned {
                zone.format(t, "%Y-%m-%d %H:%M %Z")
            } else {
                zone.stamps(t).map(|s| s.1)
            }
        };
        row.short_date = row.origtime.and_then(date).unwrap_or_else(|| "?".into());
        rows.push(row);
    }
    Ok(())
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
    let gather = a.sort.is_some() || a.reverse || a.limit.is_some() || a.urgent;
    let mut rows = Vec::new();
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
        if gather {
            rows.push(row);
        } else {
            w.write(&row).map_err(out_err)?;
            n += 1;
        }
        Ok(())
    })?;
    if gather {
        order_rows(a, &mut rows);
        for row in &rows {
            w.write(row).map_err(out_err)?;
        }
        n = rows.len();
    }
    // A CSV with no rows still has its header.
    if setup.format == Format::Csv {
        w.header().map_err(out_err)?;
    }
    w.finish().map_err(out_err)?;
    Ok(rep.finish(n.max(1)))
}
