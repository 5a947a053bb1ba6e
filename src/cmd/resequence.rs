//! `vmtool resequence`: close the numbering gaps of a folder, on request only
//! (Asterisk renumbers on its own when a box is opened; spec §6.7).

use super::prelude::*;
use std::collections::BTreeSet;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct ResequenceArgs {
    /// box[/Folder] (default: every folder of the box)
    #[arg(value_name = "BOX[/FOLDER]")]
    pub target: String,
    /// Print the renames and change nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Go on even when AMI is not configured, so open VoiceMailMain sessions cannot be checked
    #[arg(long)]
    pub force: bool,
}

pub fn exec(
    setup: &Setup,
    g: &GlobalArgs,
    a: &ResequenceArgs,
    out: &mut dyn Write,
    rep: &mut Reporter,
) -> Result<Exit> {
    check_file_storage(setup)?;
    let t = setup
        .resolve_all(std::slice::from_ref(&a.target), rep)
        .pop()
        .ok_or_else(|| Error::NotFound(format!("{} not found", a.target)))?;
    let (mb, folders) = match &t {
        Target::Mailbox(mb) => (mb.clone(), setup.store.folders(mb)?),
        Target::Folder(mb, f) => (mb.clone(), vec![f.clone()]),
        _ => return Err(Error::Usage("resequence takes box or box/Folder".into())),
    };
    // Renumbering under an open VoiceMailMain session makes Asterisk delete or
    // move the wrong messages (spec §6.7): check there is none, over AMI.
    // With SQL storage every server may have the box open: ask each one.
    if !a.dry_run {
        let servers = match ami_targets(setup, g) {
            Ok(t) if !t.is_empty() => t,
            // An AMI address was given but cannot be used (e.g. no user or
            // secret): say that, not that there is no AMI.
            Err(e) if !a.force => {
                return Err(Error::Usage(format!(
                    "{e}; without a working AMI login vmtool cannot check that no VoiceMailMain session has this box open (or add --force if you are sure)"
                )))
            }
            Err(e) => {
                rep.warn(&format!("{e}; going on without the VoiceMailMain check (--force)"));
                Vec::new()
            }
            _ if a.force => Vec::new(),
            _ => {
                return Err(Error::Usage(
                    "without AMI vmtool cannot check that no VoiceMailMain session has this box open; configure --ami, or add --force if you are sure"
                        .into(),
                ))
            }
        };
        for target in &servers {
            match crate::ami::voicemail_main_running(target, Duration::from_secs(5)) {
                Ok(chans) if chans.is_empty() => {}
                Ok(chans) => {
                    return Err(Error::LockBusy(format!(
                        "VoiceMailMain is running on {}: renumbering now would make Asterisk delete or move the wrong messages; retry when no one is in their voicemail",
                        chans.join(", ")
                    )))
                }
                Err(e) => {
                    if !a.force {
                        return Err(Error::Failed(format!(
                            "cannot check for open VoiceMailMain sessions over AMI ({e}); retry, or add --force if you are sure none is open"
                        )));
                    }
                }
            }
        }
    }
    let changer = changer_for(setup, g)?;
    let mut renames = 0;
    for f in folders {
        if a.dry_run {
            let scan = setup.store.scan_folder(&mb, &f)?;
            for (i, m) in scan.messages.iter().filter(|m| m.txt).enumerate() {
                if usize::from(m.num.get()) != i {
                    writeln!(out, "{}/{f}: {} -> msg{i:04}", mb, m.num.stem()).map_err(out_err)?;
                }
            }
            continue;
        }
        match changer.resequence(&mb, &f) {
            Ok(moved) => {
                for (from, to) in &moved {
                    if !setup.quiet {
                        writeln!(out, "{mb}/{f}: {} -> {}", from.stem(), to.stem())
                            .map_err(out_err)?;
                    }
                }
                renames += moved.len();
            }
            Err(e) => rep.error(&e),
        }
    }
    if renames > 0 {
        notify_asterisk(setup, g, &BTreeSet::from([mb]), rep);
    }
    Ok(rep.finish(1))
}
