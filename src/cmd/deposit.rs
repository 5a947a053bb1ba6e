//! `vmtool deposit`: a new message from an audio file into one box, or the
//! same message into many (a broadcast). Each box is done on its own: a bad
//! or full box is reported and the next one goes on. A box that already
//! holds the message (same callerid, same first-format audio bytes) is
//! skipped, so a run stopped half-way is simply run again.

use super::prelude::*;
use crate::audio::input::{self, Loudness};
use crate::callerid::CallerId;
use crate::deposit::{self, Header};
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

#[derive(Debug, Args)]
pub struct DepositArgs {
    /// Boxes or contexts (a context = every box in it), then the audio file (WAV of any rate, mp3, ogg, flac, or a format Asterisk writes)
    #[arg(value_name = "TARGET… FILE", required = true, num_args = 1..)]
    pub args: Vec<String>,
    /// Deposit into every box of the spool (then give only FILE)
    #[arg(long)]
    pub all: bool,
    /// Caller shown for the message, e.g. 'Reception <100>' [default: Unknown]
    #[arg(long, value_name = "CALLERID")]
    pub callerid: Option<String>,
    /// Mark it urgent (flag=Urgent) and put it in Urgent unless --folder says otherwise
    #[arg(long)]
    pub urgent: bool,
    /// Folder to deposit into [default: INBOX, or Urgent with --urgent]
    #[arg(long, value_name = "FOLDER")]
    pub folder: Option<String>,
    /// The message's origtime: epoch seconds or a date (2026-01-31, 2026-01-31T08:00) [default: now]
    #[arg(long, value_name = "WHEN")]
    pub origtime: Option<String>,
    /// Bring the loudness to -19 LUFS (EBU R128), peaks at most -1 dBFS
    #[arg(long)]
    pub normalize: bool,
}

pub fn exec(
    setup: &Setup,
    g: &GlobalArgs,
    a: &DepositArgs,
    out: &mut dyn Write,
    rep: &mut Reporter,
) -> Result<Exit> {
    check_file_storage(setup)?;
    let (file, target_args) = a
        .args
        .split_last()
        .ok_or_else(|| Error::Usage("give the boxes and the audio file".into()))?;
    if a.all != target_args.is_empty() {
        return Err(Error::Usage(if a.all {
            "--all deposits into every box: give only the audio file".into()
        } else {
            "give the boxes (or --all), then the audio file".into()
        }));
    }
    let folder = match (&a.folder, a.urgent) {
        (Some(f), _) => Folder::known(f).ok_or_else(|| {
            Error::Usage(format!(
                "--folder {f}: not a folder Asterisk knows (INBOX, Old, Work, Family, Friends, Urgent, Cust1…Cust5)"
            ))
        })?,
        (None, true) => Folder::Urgent,
        (None, false) => Folder::Inbox,
    };
    let now = setup.env.now();
    let origtime = match &a.origtime {
        None => now,
        Some(s) => match s.trim().parse::<i64>() {
            Ok(t) if t > 0 => t,
            _ => parse_when(s, now, false)?,
        },
    };

    // Boxes in the order named, each once.
    let targets = if a.all {
        vec![Target::Spool]
    } else {
        setup.resolve_all(target_args, rep)
    };
    let mut boxes: Vec<MailboxId> = Vec::new();
    for t in &targets {
        match t {
            Target::Folder(..) | Target::Message(..) => {
                return Err(Error::Usage(format!(
                    "{}: name a box or a context (the folder is --folder); nothing was deposited",
                    target::describe(t)
                )))
            }
            _ => match setup.mailboxes_of(t) {
                Ok(v) => {
                    for mb in v {
                        if !boxes.contains(&mb) {
                            boxes.push(mb);
                        }
                    }
                }
                Err(e) => rep.error(&e),
            },
        }
    }

    // Then the audio: a bad file changes nothing anywhere.
    let path = Path::new(file);
    let mut pcm =
        input::read_file(path).map_err(|e| Error::Failed(format!("{e}; nothing was deposited")))?;
    if a.normalize {
        input::normalize(&mut pcm, Loudness::default()).map_err(|e| {
            Error::Failed(format!("{}: {e}; nothing was deposited", path.display()))
        })?;
    }
    let formats = setup
        .vmconf
        .as_ref()
        .map_or_else(|| vec!["wav".to_string()], |c| c.general.format.clone());
    let rec = deposit::encode_formats(&pcm, &formats)
        .map_err(|e| Error::Failed(format!("{}: {e}; nothing was deposited", path.display())))?;
    let staging = tempfile::Builder::new()
        .prefix("vmtool-deposit-")
        .tempdir()
        .map_err(|e| Error::io("create", std::env::temp_dir(), e))?;
    let mut files = Vec::new();
    for (ext, bytes) in &rec.files {
        let p = staging.path().join(format!("msg.{ext}"));
        std::fs::write(&p, bytes).map_err(|e| Error::io("write", &p, e))?;
        files.push((ext.clone(), p));
    }
    let txt_path = staging.path().join("msg.txt");
    files.push(("txt".to_string(), txt_path.clone()));

    let callerid = CallerId::parse(a.callerid.as_deref().unwrap_or(""));
    let header = Header {
        callerid: callerid.clone(),
        origtime,
        urgent: a.urgent,
        duration: rec.duration,
    };
    let caller_raw = callerid.merge();

    let changer = changer_for(setup, g)?;
    let mut changed = BTreeSet::new();
    let mut done = 0;
    for mb in &boxes {
        if INTERRUPTED.load(Ordering::SeqCst) {
            rep.note("interrupted: stopped before the next box; every box done is complete");
            break;
        }
        changer.recover(mb);
        if let Some(at) =
            changer.find_recording(mb, &caller_raw, rec.first_ext(), &rec.first_sha256)
        {
            done += 1;
            if !setup.quiet {
                writeln!(out, "{mb}: already holds this message as {at}; skipped")
                    .map_err(out_err)?;
            }
            continue;
        }
        let txt = deposit::message_txt(mb, &header, &deposit::new_msg_id(origtime));
        if let Err(e) = std::fs::write(&txt_path, txt) {
            rep.error(&Error::io("write", &txt_path, e));
            continue;
        }
        match changer.deposit(&files, mb, &folder) {
            Ok(at) => {
                done += 1;
                changed.insert(mb.clone());
                if !setup.quiet {
                    writeln!(out, "deposited {at}").map_err(out_err)?;
                }
            }
            Err(e) => rep.error(&e),
        }
    }
    if !changed.is_empty() {
        notify_asterisk(setup, g, &changed, rep);
    }
    if INTERRUPTED.load(Ordering::SeqCst) {
        return Ok(Exit::Interrupted);
    }
    Ok(rep.finish(done))
}
