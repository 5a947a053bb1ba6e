//! `vmtool boxes`: one line per mailbox, the configuration joined with the
//! store, counted the way Asterisk counts.

use super::prelude::*;
use crate::config::MailboxConf;
use crate::store::greeting::Kind;
use std::collections::BTreeMap;
use std::io;

#[derive(Debug, Args)]
pub struct BoxesArgs {
    /// Contexts or boxes to list, e.g. compta, 1202@compta, compta/1202 (default: all)
    #[arg(value_name = "TARGET")]
    pub contexts: Vec<String>,
    /// Add disk use (one stat per file)
    #[arg(long)]
    pub bytes: bool,
    /// Print exactly what Asterisk's CLI `voicemail show users [for CONTEXT]` prints
    #[arg(long, conflicts_with = "bytes")]
    pub like_asterisk: bool,
    /// Flag a temp greeting set more than DAYS days ago (forgotten "on holiday" greetings)
    #[arg(long, value_name = "DAYS", default_value_t = 14)]
    pub temp_older_than: u32,
}

const CSV_HEADER: [&str; 16] = [
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
    "greetings",
    "temp_age_days",
    "owner_base64",
];

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
    /// Greetings the box has: unavail, busy, name, temp.
    greetings: Vec<&'static str>,
    /// Days since the temp greeting was set.
    temp_age_days: Option<i64>,
    /// The owner's bytes in base64 when they are not UTF-8.
    owner_base64: Option<String>,
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
    gs: &[(Kind, Option<i64>)],
) -> Result<BoxRow> {
    let exists = setup.store.mailbox_exists(mb);
    let gs = if exists { gs } else { &[] };
    let temp_age_days = gs
        .iter()
        .find(|(kind, _)| *kind == Kind::Temp)
        .and_then(|(_, set_at)| *set_at)
        .map(|t| (setup.env.now() - t).max(0) / 86_400);
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
        greetings: gs.iter().map(|(kind, _)| kind.name()).collect(),
        temp_age_days,
        owner_base64: conf
            .and_then(|c| c.fullname_raw.as_deref())
            .map(render::base64),
    })
}

pub fn exec(setup: &Setup, a: &BoxesArgs, out: &mut dyn Write, rep: &mut Reporter) -> Result<Exit> {
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
    let formats = setup
        .vmconf
        .as_ref()
        .map(|c| c.general.format.clone())
        .unwrap_or_default();
    let mut rows = 0usize;
    for ctx in &contexts {
        let mut boxes: Vec<MailboxId> = if setup.store.context_exists(ctx) {
            setup.store.mailboxes(ctx)?
        } else {
            Vec::new()
        };
        if let Some(vc) = &setup.vmconf {
            // Duplicates go with the sort below.
            for m in vc.mailboxes.iter().filter(|m| m.context == ctx.as_str()) {
                if let Ok(mb) = MailboxId::new(ctx.clone(), &m.mailbox) {
                    boxes.push(mb);
                }
            }
        }
        if let Some(picked) = only.get(ctx) {
            boxes = picked.clone();
            boxes.dedup();
        }
        boxes.sort();
        boxes.dedup();
        // One read for the context's greetings (one query per 256 boxes on the table).
        let greetings = match setup.store.greetings_set(&boxes, &formats) {
            Ok(g) => g,
            Err(e) => {
                rep.error(&e);
                continue;
            }
        };
        for mb in boxes {
            let conf = setup.mailbox_conf(&mb);
            let gs = greetings.get(&mb).map_or(&[][..], Vec::as_slice);
            let row = match box_row(setup, &mb, conf, a.bytes, gs) {
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
                        render::csv_record(&mut table, &CSV_HEADER).map_err(out_err)?;
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
                            row.greetings.join(" "),
                            row.temp_age_days.map(|d| d.to_string()).unwrap_or_default(),
                            row.owner_base64.clone().unwrap_or_default(),
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
                    if !row.greetings.is_empty() {
                        state.push(format!("greetings:{}", row.greetings.join(",")));
                    }
                    if let Some(d) = row
                        .temp_age_days
                        .filter(|&d| d > i64::from(a.temp_older_than))
                    {
                        state.push(
                            setup
                                .style
                                .yellow(&format!("temp greeting {d} days old"))
                                .into_owned(),
                        );
                    }
                    if row.full {
                        state.push(setup.style.red("FULL").into_owned());
                    }
                    if !row.configured {
                        state.push(setup.style.yellow("not in voicemail.conf").into_owned());
                    }
                    if !row.directory {
                        state.push(setup.store.no_box_yet().into());
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
    // A CSV with no rows still has its header.
    if setup.format == Format::Csv && rows == 0 {
        render::csv_record(&mut table, &CSV_HEADER).map_err(out_err)?;
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
    let pad = |s: &[u8], w: usize, right: bool| -> Vec<u8> {
        let mut v = Vec::new();
        let fill = w.saturating_sub(s.len());
        if right {
            v.extend(std::iter::repeat_n(b' ', fill));
        }
        v.extend_from_slice(s);
        if !right {
            v.extend(std::iter::repeat_n(b' ', fill));
        }
        v
    };
    let line = |cols: [&[u8]; 5]| -> Vec<u8> {
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
    out.write_all(&line([b"Context", b"Mbox", b"User", b"Zone", b"NewMsg"]))
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
        // The name's own bytes, as Asterisk prints them (Latin-1 stays Latin-1).
        let user = m.fullname_raw.as_deref().unwrap_or(m.fullname.as_bytes());
        out.write_all(&line([
            m.context.as_bytes(),
            m.mailbox.as_bytes(),
            user,
            zone.as_bytes(),
            new.to_string().as_bytes(),
        ]))
        .map_err(out_err)?;
        n += 1;
    }
    writeln!(out, "{n} voicemail users configured.").map_err(out_err)?;
    Ok(Exit::Ok)
}
