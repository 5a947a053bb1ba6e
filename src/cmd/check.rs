//! `vmtool check [--fix]`: the store's check (`store::check`), one finding
//! per line (or JSON object), then the exit status: 5 when problems remain.

use super::prelude::*;
use crate::lock::LockOptions;
use crate::store::check::{CheckHost, CheckOptions, Part};
use std::time::Duration;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Contexts, boxes or folders (default: the whole spool)
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Repair what is safe: finish or undo half-done moves, break locks and remove staged copies of vmtools that are gone, quarantine phantoms, orphans and -bak leftovers (SQL store: also break this server's stale spool locks)
    #[arg(long)]
    pub fix: bool,
    /// Age after which a lock or a tmp/ leftover is stale: seconds, or e.g. 90s, 5min, 2h, 1d
    #[arg(long, value_name = "AGE", default_value = "60", value_parser = crate::age::parse_secs)]
    pub stale_after: u64,
    /// Count numbering gaps as problems (exit 5); by default they are information: Asterisk closes them itself the next time the folder is opened
    #[arg(long)]
    pub strict: bool,
}

/// Targets are resolved only if the store asks (a table is checked whole).
struct Host<'a, 'r> {
    setup: &'a Setup,
    g: &'a GlobalArgs,
    targets: &'a [String],
    rep: &'a mut Reporter<'r>,
}

impl CheckHost for Host<'_, '_> {
    fn parts(&mut self) -> Vec<Part> {
        if self.targets.is_empty() {
            return vec![Part::Spool];
        }
        self.setup
            .resolve_all(self.targets, self.rep)
            .into_iter()
            .map(|t| match t {
                Target::Spool => Part::Spool,
                Target::Context(c) => Part::Context(c),
                Target::Mailbox(mb) => Part::Mailbox(mb),
                Target::Folder(mb, f) | Target::Message(mb, f, _) => Part::Folder(mb, f),
            })
            .collect()
    }

    fn lock(&mut self) -> Result<LockOptions> {
        super::lock_options(self.setup, self.g)
    }

    fn error(&mut self, e: &Error) {
        self.rep.error(e);
    }
}

/// The store's check of these targets (none: the whole spool).
pub(super) fn run_check(
    setup: &Setup,
    g: &GlobalArgs,
    targets: &[String],
    rep: &mut Reporter,
    fix: bool,
    strict: bool,
    stale_after: u64,
) -> Result<crate::store::check::Report> {
    let opts = CheckOptions {
        conf: setup.vmconf.as_ref(),
        runuser: setup.astconf.as_ref().and_then(|c| c.runuser.as_deref()),
        fix,
        strict,
        stale: Duration::from_secs(stale_after),
        interrupted: &INTERRUPTED,
    };
    let mut host = Host {
        setup,
        g,
        targets,
        rep,
    };
    setup.store.check(&opts, &mut host)
}

pub fn exec(
    setup: &Setup,
    g: &GlobalArgs,
    a: &CheckArgs,
    out: &mut dyn Write,
    rep: &mut Reporter,
) -> Result<Exit> {
    let report = run_check(setup, g, &a.targets, rep, a.fix, a.strict, a.stale_after)?;
    if setup.format == Format::Csv {
        writeln!(out, "path,kind,problem,fix,fixed,severity").map_err(out_err)?;
    }
    for item in &report.items {
        match setup.format {
            Format::Json => {
                let json = item.to_json().map_err(|e| out_err(e.into()))?;
                writeln!(out, "{json}").map_err(out_err)?;
            }
            Format::Csv => {
                let mut w: &mut dyn Write = &mut *out;
                render::csv_record(&mut w, &item.fields()).map_err(out_err)?;
            }
            Format::Table => writeln!(out, "{}", item.line()).map_err(out_err)?,
        }
    }
    if let Some(clean) = report
        .clean
        .as_ref()
        .filter(|_| !setup.quiet && setup.format == Format::Table)
    {
        writeln!(out, "{clean}").map_err(out_err)?;
    }
    let open = report.items.iter().filter(|f| f.open()).count();
    if let Some(summary) = report.summary.as_ref() {
        if !setup.quiet && setup.format == Format::Table {
            let _ = writeln!(rep.err_writer(), "{summary}");
        }
    }
    if rep.failed() {
        return Ok(rep.finish(0));
    }
    Ok(if open > 0 { Exit::Problems } else { Exit::Ok })
}
