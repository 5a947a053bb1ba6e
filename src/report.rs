//! The daily digest (`vmtool report`): what an admin reading cron mail needs
//! to act on. Per box the unheard messages and the age of the oldest, boxes
//! at or near `maxmsg`, and whatever the caller adds (forgotten temporary
//! greetings, stale locks, `check` problems). Collected through the read interface of any store; rendered as
//! text for mail or as one JSON document for monitoring.

use crate::spool::{Folder, MailboxId};
use crate::store::MailboxStore;
use serde::Serialize;
use std::io::{self, Write};

/// What makes something worth a line under "needs attention".
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// The clock (seconds since the epoch).
    pub now: i64,
    /// An unheard message older than this (seconds) needs attention.
    pub unheard_after: i64,
    /// `INBOX` at or above this share of `maxmsg` needs attention (Asterisk
    /// refuses new messages at `maxmsg`).
    pub near_full: f64,
    /// A temporary greeting set longer ago than this (seconds), with no end
    /// date still to come, needs attention.
    pub temp_greeting_after: i64,
}

impl Default for ReportOptions {
    fn default() -> ReportOptions {
        ReportOptions {
            now: 0,
            unheard_after: 7 * 86400,
            near_full: 0.9,
            temp_greeting_after: 14 * 86400,
        }
    }
}

/// One mailbox.
#[derive(Debug, Clone, Serialize)]
pub struct BoxLine {
    pub context: String,
    pub mailbox: String,
    /// `INBOX` + `Urgent` as MWI counts them.
    pub unheard: u32,
    pub urgent: u32,
    /// origtime of the oldest unheard message that has one.
    pub oldest_unheard: Option<i64>,
    /// Messages in `INBOX` by Asterisk's capacity rule (`count_messages()`).
    pub inbox: u32,
    pub maxmsg: u32,
}

/// One thing that needs attention.
#[derive(Debug, Clone, Serialize)]
pub struct Attention {
    /// `full`, `near-full`, `unheard`, `temp-greeting`, `stale-lock`,
    /// `check`, or what the caller names.
    pub kind: String,
    /// Box, folder or file it is about.
    pub at: String,
    pub what: String,
}

/// The digest.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub generated: i64,
    pub source: String,
    pub attention: Vec<Attention>,
    pub boxes: Vec<BoxLine>,
}

impl Report {
    /// Whether anything needs attention (the command's exit status).
    pub fn needs_attention(&self) -> bool {
        !self.attention.is_empty()
    }
}

/// Reads every box given. A box that cannot be read becomes an attention
/// line of its own; the others are still reported.
pub fn collect(
    store: &dyn MailboxStore,
    boxes: &[MailboxId],
    maxmsg: &dyn Fn(&MailboxId) -> u32,
    opts: &ReportOptions,
) -> Report {
    let mut report = Report {
        generated: opts.now,
        source: store.describe(),
        attention: Vec::new(),
        boxes: Vec::new(),
    };
    store.prefetch(boxes);
    for mb in boxes {
        match box_line(store, mb, maxmsg(mb)) {
            Ok(line) => {
                attention_of(&line, opts, &mut report.attention);
                report.boxes.push(line);
            }
            Err(e) => report.attention.push(Attention {
                kind: "unreadable".into(),
                at: format!("{}/{}", mb.context, mb.mailbox()),
                what: e.to_string(),
            }),
        }
    }
    store.release(boxes);
    report
}

fn box_line(
    store: &dyn MailboxStore,
    mb: &MailboxId,
    maxmsg: u32,
) -> crate::error::Result<BoxLine> {
    let mut oldest: Option<i64> = None;
    let (mut unheard, mut urgent, mut inbox) = (0, 0, 0);
    let folders = store.folders(mb)?;
    for folder in [Folder::Inbox, Folder::Urgent] {
        if !folders.contains(&folder) {
            continue;
        }
        let scan = store.folder_messages(mb, &folder, &|_| true, &mut |_, meta| {
            if let Some(t) = meta.ok().and_then(|m| m.origtime()) {
                oldest = Some(oldest.map_or(t, |o| o.min(t)));
            }
        })?;
        unheard += scan.counts.mwi;
        if folder == Folder::Urgent {
            urgent = scan.counts.mwi;
        } else {
            inbox = scan.counts.capacity;
        }
    }
    Ok(BoxLine {
        context: mb.context.to_string(),
        mailbox: mb.mailbox().to_string(),
        unheard,
        urgent,
        oldest_unheard: oldest,
        inbox,
        maxmsg,
    })
}

fn attention_of(line: &BoxLine, opts: &ReportOptions, out: &mut Vec<Attention>) {
    let at = format!("{}/{}", line.context, line.mailbox);
    if line.maxmsg > 0 && line.inbox >= line.maxmsg {
        out.push(Attention {
            kind: "full".into(),
            at: at.clone(),
            what: format!(
                "INBOX full: {} of maxmsg {}; callers hear \"mailbox full\" and cannot leave a message",
                line.inbox, line.maxmsg
            ),
        });
    } else if line.maxmsg > 0 && f64::from(line.inbox) >= opts.near_full * f64::from(line.maxmsg) {
        out.push(Attention {
            kind: "near-full".into(),
            at: at.clone(),
            what: format!(
                "INBOX nearly full: {} of maxmsg {}",
                line.inbox, line.maxmsg
            ),
        });
    }
    if let Some(t) = line.oldest_unheard {
        let age = opts.now - t;
        if age > opts.unheard_after {
            out.push(Attention {
                kind: "unheard".into(),
                at,
                what: format!("{} unheard, the oldest for {}", line.unheard, age_text(age)),
            });
        }
    }
}

/// A forgotten temporary greeting (Asterisk plays it instead of `unavail`
/// and `busy` for as long as it exists): past its end date, or, without one
/// still to come, set more than `opts.temp_greeting_after` ago. An end date
/// still to come means it is meant to stay.
pub fn temp_greeting_attention(
    t: &crate::store::greeting::TempGreeting,
    opts: &ReportOptions,
) -> Option<Attention> {
    let mb = &t.mailbox;
    let at = format!("{}/{}", mb.context, mb.mailbox());
    let day = |secs: i64| {
        chrono::DateTime::from_timestamp(secs, 0)
            .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_else(|| secs.to_string())
    };
    match (t.until, t.set_at) {
        (Some(u), _) if u <= opts.now => Some(Attention {
            kind: "temp-greeting".into(),
            at,
            what: format!(
                "temp greeting past its end date ({}), still played instead of unavail and busy: `vmtool greeting expire` removes it (run it from cron)",
                day(u)
            ),
        }),
        (Some(_), _) => None,
        (None, Some(set)) if opts.now - set > opts.temp_greeting_after => Some(Attention {
            kind: "temp-greeting".into(),
            at,
            what: format!(
                "temp greeting set {} ago ({}), played instead of unavail and busy: remove it with `vmtool greeting rm {mb} temp` if it is out of date",
                age_text(opts.now - set),
                day(set)
            ),
        }),
        _ => None,
    }
}

/// "3 d", "5 h", "12 min": the unit a reader of a daily mail needs.
pub fn age_text(secs: i64) -> String {
    let secs = secs.max(0);
    if secs >= 2 * 86400 {
        format!("{} d", secs / 86400)
    } else if secs >= 2 * 3600 {
        format!("{} h", secs / 3600)
    } else {
        format!("{} min", secs / 60)
    }
}

/// Text for a cron mail: what needs attention first, then the boxes with
/// unheard messages. Untrusted names are escaped.
pub fn write_text(r: &Report, out: &mut dyn Write) -> io::Result<()> {
    use crate::render::sanitize;
    let when = chrono::DateTime::from_timestamp(r.generated, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default();
    writeln!(out, "vmtool report, {when}, {}", sanitize(&r.source))?;
    if r.attention.is_empty() {
        writeln!(out, "\nNothing needs attention.")?;
    } else {
        writeln!(out, "\nNeeds attention ({}):", r.attention.len())?;
        let w = r
            .attention
            .iter()
            .map(|a| a.at.chars().count())
            .max()
            .unwrap_or(0);
        for a in &r.attention {
            writeln!(
                out,
                "  {:<w$}  {} [{}]",
                sanitize(&a.at),
                sanitize(&a.what),
                a.kind
            )?;
        }
    }
    let unheard: Vec<&BoxLine> = r.boxes.iter().filter(|b| b.unheard > 0).collect();
    if !unheard.is_empty() {
        writeln!(out, "\nUnheard messages:")?;
        let w = unheard
            .iter()
            .map(|b| b.context.chars().count() + 1 + b.mailbox.chars().count())
            .max()
            .unwrap_or(0)
            .max(3);
        writeln!(out, "  {:<w$}  UNHEARD  URGENT  OLDEST", "BOX")?;
        for b in unheard {
            let oldest = b
                .oldest_unheard
                .map_or_else(|| "-".to_string(), |t| age_text(r.generated - t));
            writeln!(
                out,
                "  {:<w$}  {:>7}  {:>6}  {oldest}",
                sanitize(&format!("{}/{}", b.context, b.mailbox)),
                b.unheard,
                b.urgent
            )?;
        }
    }
    let total: u32 = r.boxes.iter().map(|b| b.unheard).sum();
    writeln!(
        out,
        "\n{} box(es), {total} unheard message(s).",
        r.boxes.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(inbox: u32, maxmsg: u32, oldest: Option<i64>) -> BoxLine {
        BoxLine {
            context: "compta".into(),
            mailbox: "1202".into(),
            unheard: inbox,
            urgent: 0,
            oldest_unheard: oldest,
            inbox,
            maxmsg,
        }
    }

    #[test]
    fn full_near_full_and_old_unheard_need_attention() {
        let opts = ReportOptions {
            now: 100 * 86400,
            ..ReportOptions::default()
        };
        let kinds = |l: BoxLine| {
            let mut v = Vec::new();
            attention_of(&l, &opts, &mut v);
            v.into_iter().map(|a| a.kind).collect::<Vec<_>>()
        };
        assert_eq!(kinds(line(3, 3, None)), ["full"]);
        assert_eq!(kinds(line(90, 100, None)), ["near-full"]);
        assert!(kinds(line(89, 100, None)).is_empty());
        assert_eq!(kinds(line(1, 100, Some(92 * 86400))), ["unheard"]);
        assert!(kinds(line(1, 100, Some(94 * 86400))).is_empty());
        // maxmsg 0 is not "full" (no limit known).
        assert!(kinds(line(5, 0, None)).is_empty());
    }

    #[test]
    fn a_temp_greeting_needs_attention_when_forgotten_or_past_its_end() {
        let opts = ReportOptions {
            now: 100 * 86400,
            ..ReportOptions::default()
        };
        let mb = MailboxId::new(crate::spool::Context::new("compta").unwrap(), "1202").unwrap();
        let kind = |set_at: Option<i64>, until: Option<i64>| {
            let t = crate::store::greeting::TempGreeting {
                mailbox: mb.clone(),
                set_at,
                until,
            };
            temp_greeting_attention(&t, &opts).map(|a| a.what)
        };
        // Set 20 days ago, no end date: forgotten.
        let w = kind(Some(80 * 86400), None).unwrap();
        assert!(
            w.starts_with("temp greeting set 20 d ago (1970-03-22 00:00 UTC)"),
            "{w}"
        );
        assert!(w.contains("vmtool greeting rm 1202@compta temp"), "{w}");
        // 10 days: not yet; with an end date to come: meant to stay.
        assert_eq!(kind(Some(90 * 86400), None), None);
        assert_eq!(kind(Some(10 * 86400), Some(101 * 86400)), None);
        // Past its end date: expire was not run.
        let w = kind(Some(99 * 86400), Some(100 * 86400)).unwrap();
        assert!(w.contains("past its end date"), "{w}");
        // Asterisk's rows may carry no date: nothing to say.
        assert_eq!(kind(None, None), None);
    }

    #[test]
    fn ages_read_in_the_unit_a_mail_needs() {
        assert_eq!(age_text(59), "0 min");
        assert_eq!(age_text(7199), "119 min");
        assert_eq!(age_text(7200), "2 h");
        assert_eq!(age_text(3 * 86400 + 5), "3 d");
    }
}
