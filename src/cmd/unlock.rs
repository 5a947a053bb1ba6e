//! `vmtool unlock --stale`: break a folder lock left by a crash.

use super::prelude::*;
use crate::lock;
use crate::ops::OpError;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// The folder whose lock to break, e.g. compta/1202/INBOX
    #[arg(value_name = "FOLDER")]
    pub target: String,
    /// Required: only a stale lock (older than --older-than, or taken by a vmtool that is gone) is ever broken
    #[arg(long, required = true)]
    pub stale: bool,
    /// Age after which a lock counts as stale: seconds, or e.g. 90s, 5min, 2h, 1d
    #[arg(long, value_name = "AGE", default_value = "60", value_parser = crate::age::parse_secs)]
    pub older_than: u64,
}

pub fn exec(
    setup: &Setup,
    a: &UnlockArgs,
    out: &mut dyn Write,
    rep: &mut Reporter,
) -> Result<Exit> {
    let t = setup
        .resolve_all(std::slice::from_ref(&a.target), rep)
        .pop()
        .ok_or_else(|| Error::NotFound(format!("{} not found", a.target)))?;
    let Target::Folder(mb, f) = &t else {
        return Err(Error::Usage(
            "unlock takes a folder, e.g. compta/1202/INBOX".into(),
        ));
    };
    let dir: PathBuf = setup.store.spool().folder_dir(mb, f);
    let what = target::describe(&t);
    // With SQL storage a server may hold no directory for this folder.
    if !dir.is_dir() {
        writeln!(
            out,
            "{what}: not locked ({} does not exist here)",
            dir.display()
        )
        .map_err(out_err)?;
        return Ok(Exit::Ok);
    }
    let (outcome, helpers) =
        lock::break_stale(&dir, Duration::from_secs(a.older_than)).map_err(OpError::from)?;
    for h in &helpers {
        writeln!(out, "{what}: removed stale helper {}", h.display()).map_err(out_err)?;
    }
    match outcome {
        lock::BreakOutcome::Broken => {
            writeln!(out, "{what}: stale lock broken").map_err(out_err)?;
            Ok(Exit::Ok)
        }
        lock::BreakOutcome::NoLock => {
            writeln!(out, "{what}: not locked").map_err(out_err)?;
            Ok(Exit::Ok)
        }
        lock::BreakOutcome::NotStale => Err(Error::LockBusy(format!(
            "{what}: the lock is younger than {} s: it is probably in use; nothing was changed",
            a.older_than
        ))),
        lock::BreakOutcome::Disturbed => Err(Error::LockBusy(format!(
            "{what}: another process replaced the lock while it was being broken; the newer lock was left in place"
        ))),
        lock::BreakOutcome::ReplacedMeanwhile => Err(Error::LockBusy(format!(
            "{what}: a new lock was taken while the stale one was being broken; the new one was left in place"
        ))),
    }
}
