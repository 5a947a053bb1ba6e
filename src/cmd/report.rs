//! `vmtool report`: the daily digest for a cron mail or a monitoring probe
//! (`report` in the library gathers it): exit 0 when nothing needs
//! attention, 1 when something does.

use super::prelude::*;
use crate::report::{self, Attention, ReportOptions};
use crate::store::check::Item;
use std::collections::BTreeMap;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Contexts or boxes (default: the whole spool)
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Unheard messages older than this need attention: e.g. 7d, 48h, 2w
    #[arg(long, value_name = "AGE", default_value = "7d", value_parser = crate::age::parse_secs)]
    pub unheard_older_than: u64,
    /// An INBOX at or above this percentage of maxmsg needs attention (Asterisk refuses new messages at maxmsg)
    #[arg(long, value_name = "PERCENT", default_value = "90", value_parser = clap::value_parser!(u8).range(1..=100))]
    pub near_full: u8,
    /// A temp greeting set more than DAYS days ago, with no --until date still to come, needs attention (a forgotten "on holiday" greeting)
    #[arg(long, value_name = "DAYS", default_value_t = 14)]
    pub temp_older_than: u32,
    /// Leave out the check of the spool (stale locks, damaged messages)
    #[arg(long)]
    pub no_check: bool,
    /// Age after which a lock is stale: seconds, or e.g. 90s, 5min, 2h
    #[arg(long, value_name = "AGE", default_value = "60", value_parser = crate::age::parse_secs)]
    pub stale_after: u64,
}

pub fn exec(
    setup: &Setup,
    g: &GlobalArgs,
    a: &ReportArgs,
    out: &mut dyn Write,
    rep: &mut Reporter,
) -> Result<Exit> {
    if setup.format == Format::Csv {
        return Err(Error::Usage(
            "report prints text (for mail) or JSON (--format json), not CSV; for per-box numbers in CSV use `vmtool --format csv boxes`".into(),
        ));
    }
    let targets = if a.targets.is_empty() {
        vec![Target::Spool]
    } else {
        setup.resolve_all(&a.targets, rep)
    };
    let mut boxes = Vec::new();
    for t in &targets {
        match setup.mailboxes_of(t) {
            Ok(b) => boxes.extend(b),
            Err(e) => rep.error(&e),
        }
    }
    let opts = ReportOptions {
        now: setup.env.now(),
        unheard_after: i64::try_from(a.unheard_older_than).unwrap_or(i64::MAX),
        near_full: f64::from(a.near_full) / 100.0,
        temp_greeting_after: i64::from(a.temp_older_than) * 86_400,
    };
    let conf = setup.vmconf.as_ref();
    let mut digest = report::collect(
        &setup.store,
        &boxes,
        &|mb| crate::ops::maxmsg_of(conf, mb),
        &opts,
    );
    match setup.store.temp_greetings(&boxes) {
        Ok(temps) => digest.attention.extend(
            temps
                .iter()
                .filter_map(|t| report::temp_greeting_attention(t, &opts)),
        ),
        Err(e) => digest.attention.push(Attention {
            kind: "unreadable".into(),
            at: "greetings".into(),
            what: e.to_string(),
        }),
    }
    if !a.no_check {
        let found =
            super::check::run_check(setup, g, &a.targets, rep, false, false, a.stale_after)?;
        digest.attention.extend(check_lines(&found.items));
    }
    match setup.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, &digest).map_err(|e| out_err(e.into()))?;
            writeln!(out).map_err(out_err)?;
        }
        _ => report::write_text(&digest, out).map_err(out_err)?,
    }
    if rep.failed() {
        return Ok(rep.finish(0));
    }
    // Exit 1 (the code of a partial run) says "look at it" to cron and probes.
    Ok(if digest.needs_attention() {
        Exit::Partial
    } else {
        Exit::Ok
    })
}

/// Stale locks one by one (each loses callers' messages); other problems as
/// one count per kind. Full boxes are already in the digest.
fn check_lines(items: &[Item]) -> Vec<Attention> {
    let mut lines = Vec::new();
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for item in items.iter().filter(|i| i.open()) {
        match item {
            Item::File(f) if f.kind == "stale-lock" => lines.push(Attention {
                kind: "stale-lock".into(),
                at: f.path.clone(),
                what: f.problem.clone(),
            }),
            Item::File(f) if f.kind == "full" => {}
            Item::File(f) => *kinds.entry(f.kind).or_default() += 1,
            Item::Row(_) => *kinds.entry("row").or_default() += 1,
        }
    }
    if !kinds.is_empty() {
        let n: usize = kinds.values().sum();
        let list: Vec<String> = kinds.iter().map(|(k, c)| format!("{c} {k}")).collect();
        lines.push(Attention {
            kind: "check".into(),
            at: "spool".into(),
            what: format!(
                "{n} problem(s) found by vmtool check ({}): run `vmtool check` for the files and fixes",
                list.join(", ")
            ),
        });
    }
    lines
}
