//! Spool changes: plan (pure), then apply under Asterisk's locks (spec §12.4,
//! §12.5, §2.7), with an intent record that makes a crash at any step
//! recoverable (`recover`).
//!
//! One message at a time: its files are staged by copy in the destination
//! mailbox's `tmp/` (fsynced, outside any lock), committed into the destination
//! folder under that folder's lock (number = highest + 1, audio renamed before
//! the `.txt`), then removed from the source under the source folder's lock.
//! Two folder locks are never held at once; a vmtool-only mailbox lock keeps
//! two vmtool processes from moving the same message. Folders are never
//! renumbered, except by `resequence` and by Asterisk's own `Deleted` rotation.

use crate::config::VoicemailConf;
use crate::fsutil::{self, hex, Perms};
use crate::lock::{FolderLock, LockError, LockOptions, MailboxGuard};
use crate::scan::{self, last_message_index};
use crate::spool::{Context, Folder, MailboxId, MsgNum, Spool};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Why a change was not made.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    Full(String),
    #[error("{0}")]
    Refused(String),
}

impl OpError {
    fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> OpError {
        let path = path.into();
        move |source| OpError::Io {
            action,
            path,
            source,
        }
    }
}

type Result<T, E = OpError> = std::result::Result<T, E>;

/// A message by place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsgRef {
    pub context: String,
    pub mailbox: String,
    pub folder: String,
    pub num: u16,
}

impl MsgRef {
    pub fn new(mb: &MailboxId, folder: &Folder, num: MsgNum) -> MsgRef {
        MsgRef {
            context: mb.context.to_string(),
            mailbox: mb.mailbox().to_string(),
            folder: folder.dir_name().to_string(),
            num: num.get(),
        }
    }

    pub fn mailbox_id(&self) -> Result<MailboxId> {
        let ctx = Context::new(&self.context).map_err(|e| OpError::Refused(e.to_string()))?;
        MailboxId::new(ctx, &self.mailbox).map_err(|e| OpError::Refused(e.to_string()))
    }

    pub fn folder(&self) -> Result<Folder> {
        Folder::from_dir_name(&self.folder).map_err(|e| OpError::Refused(e.to_string()))
    }

    pub fn msg_num(&self) -> Result<MsgNum> {
        MsgNum::new(self.num)
            .ok_or_else(|| OpError::Refused(format!("bad message number {}", self.num)))
    }
}

impl std::fmt::Display for MsgRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}/msg{:04}",
            self.context, self.mailbox, self.folder, self.num
        )
    }
}

/// A message as found when planning; re-verified by its `.txt` bytes when applied.
#[derive(Debug, Clone)]
pub struct Located {
    pub at: MsgRef,
    /// Extensions of every `msgNNNN.*` file, `txt` included.
    pub exts: Vec<String>,
    /// SHA-256 of the `.txt`: the identity that survives renumbering.
    pub txt_sha: [u8; 32],
    pub msg_id: Option<String>,
}

/// What to do with one message.
#[derive(Debug, Clone)]
pub enum Action {
    Move { mailbox: MailboxId, folder: Folder },
    Copy { mailbox: MailboxId, folder: Folder },
    Delete,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub src: Located,
    pub action: Action,
}

/// How a destination's capacity is judged: by the number to allocate
/// (`save_to_folder()`, `copy_message()`) or by the count of `.txt` files
/// (deposits and imports, `count_messages()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Capacity {
    Number,
    Count,
}

/// What was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Moved(MsgRef),
    Copied(MsgRef),
    /// Deleted; with `backupdeleted`, where Asterisk's `Deleted` copy went.
    Deleted(Option<MsgRef>),
}

/// The record of one change in progress, kept in the source mailbox's `tmp/`
/// (Asterisk never looks at names there) until the change is complete.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Intent {
    id: String,
    op: String,
    src: MsgRef,
    /// `(extension, sha256)` of every source file copied.
    files: Vec<(String, String)>,
    dest_context: Option<String>,
    dest_mailbox: Option<String>,
    dest_folder: Option<String>,
    dest_num: Option<u16>,
    /// `staged` → `committing` → `committed`.
    state: String,
}

const INTENT_PREFIX: &str = ".vmtool-intent-";
const STAGE_PREFIX: &str = ".vmtool-stage-";

/// Hooks that let tests kill vmtool at a chosen step: `VMTOOL_TEST_KILL_AT`
/// names a step; set only by the crash tests, never by accident.
pub(crate) fn failpoint(step: &str) {
    if let Some(want) = std::env::var_os("VMTOOL_TEST_KILL_AT") {
        if want == step {
            // SIGKILL-like: no destructors, no unlock.
            std::process::abort();
        }
    }
}

/// Per-box `maxmsg` (voicemail.conf, else Asterisk's default 100), for
/// either store.
pub fn maxmsg_of(conf: Option<&VoicemailConf>, mb: &MailboxId) -> u32 {
    conf.map_or(100, |c| {
        c.mailbox(mb.context.as_str(), mb.mailbox())
            .map_or(c.general.maxmsg, |m| m.maxmsg)
    })
}

/// Per-box `backupdeleted` (0: no `Deleted` copy), for either store.
pub fn backupdeleted_of(conf: Option<&VoicemailConf>, mb: &MailboxId) -> u32 {
    conf.map_or(0, |c| {
        c.mailbox(mb.context.as_str(), mb.mailbox())
            .map_or(c.general.backupdeleted, |m| m.backupdeleted)
    })
}

/// Applies plans to a file spool.
pub struct Engine<'a> {
    pub spool: &'a Spool,
    pub lock: LockOptions,
    pub conf: Option<&'a VoicemailConf>,
    /// Set by Ctrl-C: the message in flight is finished, no new one is started.
    pub interrupted: &'a AtomicBool,
    /// Mailboxes whose leftovers this run has already recovered.
    pub recovered: std::sync::Mutex<std::collections::HashSet<MailboxId>>,
}

impl Engine<'_> {
    fn dir_of(&self, r: &MsgRef) -> Result<PathBuf> {
        Ok(self.spool.folder_dir(&r.mailbox_id()?, &r.folder()?))
    }

    fn file_of(&self, r: &MsgRef, ext: &str) -> Result<PathBuf> {
        Ok(self
            .spool
            .msg_file(&r.mailbox_id()?, &r.folder()?, r.msg_num()?, ext))
    }

    /// Per-box `maxmsg` (voicemail.conf, else Asterisk's default 100).
    pub fn maxmsg(&self, mb: &MailboxId) -> u32 {
        maxmsg_of(self.conf, mb)
    }

    fn backupdeleted(&self, mb: &MailboxId) -> u32 {
        backupdeleted_of(self.conf, mb)
    }

    /// Files and identity of one message, as it is now.
    pub fn locate(&self, mb: &MailboxId, folder: &Folder, num: MsgNum) -> Result<Located> {
        let dir = self.spool.folder_dir(mb, folder);
        let scan = scan::scan_folder(&dir).map_err(OpError::io("read folder", &dir))?;
        let files = scan.messages.iter().find(|m| m.num == num).ok_or_else(|| {
            OpError::Gone(format!("no message {} in {}", num.stem(), dir.display()))
        })?;
        if !files.txt {
            return Err(OpError::Refused(format!(
                "{}/{}: audio without .txt (orphan); see `vmtool check`",
                dir.display(),
                num.stem()
            )));
        }
        let txt = self.spool.txt_path(mb, folder, num);
        let bytes = fsutil::read_txt_file(&txt).map_err(OpError::io("read", &txt))?;
        let msg_id = crate::metadata::Metadata::parse(&bytes)
            .ok()
            .and_then(|m| m.msg_id().map(str::to_string));
        let mut exts = files.audio.clone();
        exts.push("txt".into());
        Ok(Located {
            at: MsgRef::new(mb, folder, num),
            exts,
            txt_sha: sha(&bytes),
            msg_id,
        })
    }

    /// Where a message is now: the planned number if its `.txt` is unchanged,
    /// else the number in the same folder whose `.txt` has the same bytes
    /// (Asterisk may have renumbered the folder since the plan was made).
    fn find_current(&self, loc: &Located) -> Result<Option<Located>> {
        let mb = loc.at.mailbox_id()?;
        let folder = loc.at.folder()?;
        if let Ok(now) = self.locate(&mb, &folder, loc.at.msg_num()?) {
            if now.txt_sha == loc.txt_sha {
                return Ok(Some(now));
            }
        }
        let dir = self.spool.folder_dir(&mb, &folder);
        let scan = scan::scan_folder(&dir).map_err(OpError::io("read folder", &dir))?;
        for m in scan.messages.iter().filter(|m| m.txt) {
            let txt = self.spool.txt_path(&mb, &folder, m.num);
            if fsutil::read_txt_file(&txt)
                .map(|b| sha(&b) == loc.txt_sha)
                .unwrap_or(false)
            {
                return self.locate(&mb, &folder, m.num).map(Some);
            }
        }
        Ok(None)
    }

    fn refuse_links(&self, path: &Path) -> Result<()> {
        self.spool
            .check_no_symlink(path)
            .map_err(|e| OpError::Refused(format!("{e}; nothing was changed")))
    }

    fn mailbox_tmp(&self, mb: &MailboxId) -> Result<PathBuf> {
        let tmp = self.spool.tmp_dir(mb);
        if tmp.is_dir() {
            return Ok(tmp);
        }
        let mbox_dir = self.spool.mailbox_dir(mb);
        let perms = Perms::observe(&mbox_dir).map_err(OpError::io("read", &mbox_dir))?;
        fsutil::create_dir_like(&tmp, &perms).map_err(OpError::io("create", &tmp))?;
        Ok(tmp)
    }

    fn guard(&self, mb: &MailboxId) -> Result<MailboxGuard> {
        self.refuse_links(&self.spool.tmp_dir(mb))?;
        self.mailbox_tmp(mb)?;
        Ok(MailboxGuard::acquire(
            &self.spool.mailbox_dir(mb),
            self.lock.timeout.max(Duration::from_secs(30)),
        )?)
    }

    /// Applies one plan. Leftovers of interrupted earlier runs in the source
    /// mailbox are recovered first.
    pub fn apply(&self, plan: &Plan) -> Result<Applied> {
        if self.interrupted.load(Ordering::SeqCst) {
            return Err(OpError::Refused("interrupted".into()));
        }
        let src_mb = plan.src.at.mailbox_id()?;
        let _guard = self.guard(&src_mb)?;
        self.recover_locked(&src_mb)?;
        let cur = self.find_current(&plan.src)?.ok_or_else(|| {
            OpError::Gone(format!(
                "{} is gone or changed since it was listed (moved, deleted or rewritten by someone else); nothing was done",
                plan.src.at
            ))
        })?;
        match &plan.action {
            Action::Move { mailbox, folder } => self
                .transfer(&cur, mailbox, folder, false)
                .map(Applied::Moved),
            Action::Copy { mailbox, folder } => self
                .transfer(&cur, mailbox, folder, true)
                .map(Applied::Copied),
            Action::Delete => {
                if self.backupdeleted(&src_mb) > 0 && cur.at.folder != Folder::Deleted.dir_name() {
                    // Asterisk backs the message up into Deleted; when that
                    // does not fit (maxmsg), it is deleted all the same.
                    match self.transfer(&cur, &src_mb, &Folder::Deleted, false) {
                        Ok(to) => Ok(Applied::Deleted(Some(to))),
                        Err(OpError::Full(_)) => self.delete(&cur).map(|()| Applied::Deleted(None)),
                        Err(e) => Err(e),
                    }
                } else {
                    self.delete(&cur).map(|()| Applied::Deleted(None))
                }
            }
        }
    }

    fn write_intent(&self, tmp: &Path, intent: &Intent, perms: &Perms) -> Result<PathBuf> {
        let path = tmp.join(format!("{INTENT_PREFIX}{}.json", intent.id));
        let data =
            serde_json::to_vec_pretty(intent).map_err(|e| OpError::Refused(e.to_string()))?;
        fsutil::write_atomic(&path, &data, perms).map_err(OpError::io("write", &path))?;
        Ok(path)
    }

    /// Copy into `(dmb, dfolder)` at highest+1, then (unless `keep_source`)
    /// remove the source: spec §12.4.
    fn transfer(
        &self,
        src: &Located,
        dmb: &MailboxId,
        dfolder: &Folder,
        keep_source: bool,
    ) -> Result<MsgRef> {
        let files = src
            .exts
            .iter()
            .map(|ext| Ok((ext.clone(), self.file_of(&src.at, ext)?)))
            .collect::<Result<Vec<_>>>()?;
        let op = if keep_source { "copy" } else { "move" };
        self.stage_commit(src, &files, op, dmb, dfolder, Capacity::Number, keep_source)
    }

    /// Puts a message from outside the spool (an archive entry: `files` are
    /// `(extension, path)`, the `.txt` among them) into `(dmb, dfolder)` with
    /// the import procedure of spec §12.7: staged copies, highest+1, refused
    /// when the folder holds `maxmsg` messages.
    pub fn import(
        &self,
        files: &[(String, PathBuf)],
        dmb: &MailboxId,
        dfolder: &Folder,
    ) -> Result<MsgRef> {
        let _guard = self.guard(dmb)?;
        self.recover_locked(dmb)?;
        let txt = files
            .iter()
            .find(|(e, _)| e == "txt")
            .ok_or_else(|| OpError::Refused("no .txt among the files to import".into()))?;
        let bytes = fsutil::read_txt_file(&txt.1).map_err(OpError::io("read", &txt.1))?;
        // The intent of an import lives in the destination box; its "source"
        // names the destination folder (nothing is ever removed from it).
        let pseudo = Located {
            at: MsgRef {
                context: dmb.context.to_string(),
                mailbox: dmb.mailbox().to_string(),
                folder: dfolder.dir_name().to_string(),
                num: 0,
            },
            exts: files.iter().map(|(e, _)| e.clone()).collect(),
            txt_sha: sha(&bytes),
            msg_id: None,
        };
        self.stage_commit(
            &pseudo,
            files,
            "import",
            dmb,
            dfolder,
            Capacity::Count,
            true,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn stage_commit(
        &self,
        src: &Located,
        files: &[(String, PathBuf)],
        op: &str,
        dmb: &MailboxId,
        dfolder: &Folder,
        capacity: Capacity,
        keep_source: bool,
    ) -> Result<MsgRef> {
        let smb = src.at.mailbox_id()?;
        self.refuse_links(&self.spool.folder_dir(dmb, dfolder))?;
        self.refuse_links(&self.spool.tmp_dir(dmb))?;
        for (_, p) in files
            .iter()
            .filter(|(_, p)| p.starts_with(self.spool.root()))
        {
            self.refuse_links(p)?;
        }
        let src_tmp = self.mailbox_tmp(&smb)?;
        let dst_tmp = self.mailbox_tmp(dmb)?;
        let dst_mbox_dir = self.spool.mailbox_dir(dmb);
        let dst_dir = self.spool.folder_dir(dmb, dfolder);
        let mbox_perms =
            Perms::observe(&dst_mbox_dir).map_err(OpError::io("read", &dst_mbox_dir))?;
        fsutil::create_dir_like(&dst_dir, &mbox_perms).map_err(OpError::io("create", &dst_dir))?;
        let perms = Perms::observe(&dst_dir).map_err(OpError::io("read", &dst_dir))?;
        let src_perms = Perms::observe(&src_tmp).map_err(OpError::io("read", &src_tmp))?;

        let id = unique_id();
        let mut intent = Intent {
            id: id.clone(),
            op: op.into(),
            src: src.at.clone(),
            files: Vec::new(),
            dest_context: Some(dmb.context.to_string()),
            dest_mailbox: Some(dmb.mailbox().to_string()),
            dest_folder: Some(dfolder.dir_name().to_string()),
            dest_num: None,
            state: "staged".into(),
        };
        let intent_path = self.write_intent(&src_tmp, &intent, &src_perms)?;
        failpoint("staged-intent");

        // Stage: real copies, fsynced, before any lock (spec §6.8 item 5).
        let mut staged: Vec<(String, PathBuf)> = Vec::new();
        let cleanup = |staged: &[(String, PathBuf)]| {
            for (_, p) in staged {
                let _ = fs::remove_file(p);
            }
            let _ = fs::remove_file(&intent_path);
        };
        for (ext, from) in files {
            let from = from.clone();
            let to = dst_tmp.join(format!("{STAGE_PREFIX}{id}.{ext}"));
            match fsutil::copy_durable(&from, &to, &perms) {
                Ok(sum) => {
                    if ext == "txt" && sum != src.txt_sha {
                        let _ = fs::remove_file(&to);
                        cleanup(&staged);
                        return Err(OpError::Gone(format!(
                            "{} changed while it was being copied; nothing was done",
                            src.at
                        )));
                    }
                    intent.files.push((ext.clone(), hex(&sum)));
                    staged.push((ext.clone(), to));
                }
                Err(e) => {
                    cleanup(&staged);
                    return Err(OpError::Io {
                        action: "copy",
                        path: from,
                        source: e,
                    });
                }
            }
            failpoint("staged-file");
        }
        fsutil::sync_dir(&dst_tmp).map_err(OpError::io("sync", &dst_tmp))?;
        self.write_intent(&src_tmp, &intent, &src_perms)?;
        failpoint("staged-all");

        // Commit into the destination under its lock: only renames in there.
        let lock = match FolderLock::acquire(&dst_dir, &self.lock) {
            Ok(l) => l,
            Err(e) => {
                cleanup(&staged);
                return Err(e.into());
            }
        };
        let num = match self.allocate(&dst_dir, dmb, dfolder, capacity) {
            Ok(n) => n,
            Err(e) => {
                drop(lock);
                cleanup(&staged);
                return Err(e);
            }
        };
        intent.dest_num = Some(num.get());
        intent.state = "committing".into();
        self.write_intent(&src_tmp, &intent, &src_perms)?;
        failpoint("committing");
        let (audio, txt): (Vec<_>, Vec<_>) = staged.iter().partition(|(ext, _)| ext != "txt");
        for (ext, from) in audio.iter().chain(txt.iter()) {
            let to = self.spool.msg_file(dmb, dfolder, num, ext);
            fs::rename(from, &to).map_err(OpError::io("rename into", &to))?;
            failpoint(if ext == "txt" {
                "renamed-txt"
            } else {
                "renamed-audio"
            });
        }
        lock.release()?;
        fsutil::sync_dir(&dst_dir).map_err(OpError::io("sync", &dst_dir))?;
        fsutil::sync_dir(&dst_tmp).map_err(OpError::io("sync", &dst_tmp))?;
        let dest = MsgRef::new(dmb, dfolder, num);
        intent.state = "committed".into();
        self.write_intent(&src_tmp, &intent, &src_perms)?;
        failpoint("committed");

        if !keep_source {
            if let Err(e) = self.remove_source(src, &intent) {
                // The source could not be removed: take the copy back so the
                // message exists once, where it was.
                if matches!(e, OpError::Lock(LockError::Busy { .. })) {
                    self.undo_commit(&intent)?;
                    let _ = fs::remove_file(&intent_path);
                }
                return Err(e);
            }
        }
        fs::remove_file(&intent_path).map_err(OpError::io("remove", &intent_path))?;
        fsutil::sync_dir(&src_tmp).map_err(OpError::io("sync", &src_tmp))?;
        Ok(dest)
    }

    /// Number for a new message in `dir` (its lock held): highest + 1, refused
    /// the way `save_to_folder()` refuses; any stray `msgMMMM.*` at that number
    /// is quarantined first so nothing is adopted (spec §4.6). For `Deleted`
    /// with `backupdeleted`, Asterisk's FIFO rotation (spec §2.7).
    fn allocate(
        &self,
        dir: &Path,
        mb: &MailboxId,
        folder: &Folder,
        capacity: Capacity,
    ) -> Result<MsgNum> {
        let last = last_message_index(dir).map_err(OpError::io("read folder", dir))?;
        if capacity == Capacity::Count {
            // Deposits and imports count .txt files (count_messages()).
            let count = scan::count_folder(dir)
                .map_err(OpError::io("read folder", dir))?
                .capacity;
            let max = self.maxmsg(mb);
            if count >= max {
                return Err(OpError::Full(format!(
                    "{} is full: it holds {count} messages and maxmsg is {max}; nothing was changed",
                    dir.display()
                )));
            }
        }
        let mut next = last.map_or(0, |l| u32::from(l) + 1);
        let backup = self.backupdeleted(mb);
        if folder == &Folder::Deleted && backup > 0 && next >= backup {
            next -= 1;
            self.rotate_deleted(dir, next)?;
        } else if capacity == Capacity::Number {
            let max = self.maxmsg(mb);
            if next >= max {
                return Err(OpError::Full(format!(
                    "{} is full: the next number would be {next} and maxmsg is {max} (Asterisk refuses the same); nothing was changed",
                    dir.display()
                )));
            }
        }
        if next > u32::from(MsgNum::MAX) {
            return Err(OpError::Full(format!(
                "{}: no message number left below 9999 (Asterisk cannot see msg9999); nothing was changed",
                dir.display()
            )));
        }
        let num = MsgNum::new(next as u16).ok_or_else(|| OpError::Full("no number".into()))?;
        self.quarantine_number(dir, mb, folder, num)?;
        Ok(num)
    }

    fn quarantine_number(
        &self,
        dir: &Path,
        mb: &MailboxId,
        folder: &Folder,
        num: MsgNum,
    ) -> Result<()> {
        let prefix = format!("{}.", num.stem());
        let rd = fs::read_dir(dir).map_err(OpError::io("read folder", dir))?;
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) {
                let qdir = self.spool.tmp_dir(mb).join("vmtool-quarantine");
                let perms = Perms::observe(dir).map_err(OpError::io("read", dir))?;
                fsutil::create_dir_like(&qdir, &perms).map_err(OpError::io("create", &qdir))?;
                let to = qdir.join(format!("{}-{}-{name}", folder.dir_name(), unique_id()));
                fs::rename(e.path(), &to).map_err(OpError::io("quarantine", e.path()))?;
            }
        }
        Ok(())
    }

    /// `save_to_folder()` into a full `Deleted`: drop msg0000, move 1..=x down.
    fn rotate_deleted(&self, dir: &Path, x: u32) -> Result<()> {
        let stem = |n: u32| format!("msg{n:04}");
        let files_of = |n: u32| -> Result<Vec<String>> {
            let prefix = format!("{}.", stem(n));
            let mut v: Vec<String> = fs::read_dir(dir)
                .map_err(OpError::io("read folder", dir))?
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect();
            // Audio first, the .txt last, as rename_file() does.
            v.sort_by_key(|n| n.ends_with(".txt"));
            Ok(v)
        };
        for name in files_of(0)?.iter().rev() {
            fs::remove_file(dir.join(name)).map_err(OpError::io("remove", dir.join(name)))?;
        }
        for n in 1..=x {
            for name in files_of(n)? {
                let to = dir.join(format!("{}{}", stem(n - 1), &name[7..]));
                fs::rename(dir.join(&name), &to).map_err(OpError::io("rename", &to))?;
            }
        }
        Ok(())
    }

    /// Step 3 of spec §12.4: remove the source, after checking it is still the
    /// message that was copied.
    fn remove_source(&self, src: &Located, intent: &Intent) -> Result<()> {
        let dir = self.dir_of(&src.at)?;
        let lock = FolderLock::acquire(&dir, &self.lock)?;
        let txt = self.file_of(&src.at, "txt")?;
        let same = fsutil::read_txt_file(&txt)
            .map(|b| sha(&b) == src.txt_sha)
            .unwrap_or(false);
        if !same {
            drop(lock);
            return Err(OpError::Gone(format!(
                "{} changed after it was copied; the copy stays and the original was not removed (see `vmtool check`)",
                src.at
            )));
        }
        // The .txt first, then the audio (vm_delete()).
        fs::remove_file(&txt).map_err(OpError::io("remove", &txt))?;
        failpoint("removed-src-txt");
        for (ext, _) in intent.files.iter().filter(|(e, _)| e != "txt") {
            let p = self.file_of(&src.at, ext)?;
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(OpError::io("remove", &p)(e)),
            }
        }
        lock.release()?;
        fsutil::sync_dir(&dir).map_err(OpError::io("sync", &dir))?;
        failpoint("removed-src");
        Ok(())
    }

    /// Removes a committed copy again (its files verified against the intent).
    fn undo_commit(&self, intent: &Intent) -> Result<()> {
        let Some(dest) = intent_dest(intent)? else {
            return Ok(());
        };
        let dir = self.dir_of(&dest)?;
        let _lock = FolderLock::acquire(&dir, &self.lock)?;
        self.remove_verified(&dest, intent)?;
        fsutil::sync_dir(&dir).map_err(OpError::io("sync", &dir))
    }

    /// Unlinks the files of `at` whose bytes are those recorded in the intent
    /// (the `.txt` first); anything else is left alone.
    fn remove_verified(&self, at: &MsgRef, intent: &Intent) -> Result<()> {
        let mut files = intent.files.clone();
        files.sort_by_key(|(e, _)| e != "txt");
        for (ext, sum) in files {
            let p = self.file_of(at, &ext)?;
            if fsutil::sha256_file(&p)
                .map(|s| hex(&s) == sum)
                .unwrap_or(false)
            {
                fs::remove_file(&p).map_err(OpError::io("remove", &p))?;
            }
        }
        Ok(())
    }

    /// Deletes a message outright (no `Deleted` backup): for archive and purge.
    pub fn delete_plain(&self, loc: &Located) -> Result<()> {
        let mb = loc.at.mailbox_id()?;
        let _guard = self.guard(&mb)?;
        self.recover_locked(&mb)?;
        let cur = self.find_current(loc)?.ok_or_else(|| {
            OpError::Gone(format!(
                "{} is gone or changed since it was selected; nothing was done",
                loc.at
            ))
        })?;
        self.delete(&cur)
    }

    /// Deletes a message that is safely archived: no intent record and no
    /// directory fsync (the archive run syncs the file system once at the end;
    /// if a crash loses this unlink, the message is still in the manifest and
    /// the next run deletes it again). Audio goes before the `.txt`, so a
    /// crash in between leaves a `.txt` that the next run finds, never an
    /// orphan that a new message could adopt.
    pub fn delete_archived(&self, loc: &Located) -> Result<()> {
        let mb = loc.at.mailbox_id()?;
        let _guard = self.guard(&mb)?;
        self.recover_once(&mb)?;
        // Fast path: the .txt is still at the archived number (checked under
        // the lock); else find where Asterisk renumbered it to.
        let mut cur = loc.clone();
        let mut tries = 0;
        let lock = loop {
            let lock = FolderLock::acquire(&self.dir_of(&cur.at)?, &self.lock)?;
            let txt = self.file_of(&cur.at, "txt")?;
            if fsutil::read_txt_file(&txt)
                .map(|b| sha(&b) == cur.txt_sha)
                .unwrap_or(false)
            {
                break lock;
            }
            drop(lock);
            tries += 1;
            match self.find_current(loc)? {
                Some(found) if found.at != cur.at && tries < 3 => cur = found,
                _ => {
                    return Err(OpError::Gone(format!(
                    "{} is gone or changed since it was archived; the spool copy was left alone",
                    loc.at
                )))
                }
            }
        };
        let txt = self.file_of(&cur.at, "txt")?;
        for ext in cur.exts.iter().filter(|e| *e != "txt") {
            let p = self.file_of(&cur.at, ext)?;
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(OpError::io("remove", &p)(e)),
            }
        }
        failpoint("removed-src-audio");
        fs::remove_file(&txt).map_err(OpError::io("remove", &txt))?;
        lock.release()?;
        Ok(())
    }

    fn delete(&self, src: &Located) -> Result<()> {
        for ext in &src.exts {
            self.refuse_links(&self.file_of(&src.at, ext)?)?;
        }
        let smb = src.at.mailbox_id()?;
        let tmp = self.mailbox_tmp(&smb)?;
        let perms = Perms::observe(&tmp).map_err(OpError::io("read", &tmp))?;
        let mut intent = Intent {
            id: unique_id(),
            op: "delete".into(),
            src: src.at.clone(),
            files: Vec::new(),
            dest_context: None,
            dest_mailbox: None,
            dest_folder: None,
            dest_num: None,
            state: "committing".into(),
        };
        for ext in &src.exts {
            let p = self.file_of(&src.at, ext)?;
            let sum = fsutil::sha256_file(&p).map_err(OpError::io("read", &p))?;
            intent.files.push((ext.clone(), hex(&sum)));
        }
        let intent_path = self.write_intent(&tmp, &intent, &perms)?;
        let r = self.remove_source(src, &intent);
        let _ = fs::remove_file(&intent_path);
        r
    }

    /// Finishes or undoes what interrupted runs left in this mailbox (their
    /// intent records), under the mailbox guard. Returns what was done.
    pub fn recover(&self, mb: &MailboxId) -> Result<Vec<String>> {
        if !self.spool.tmp_dir(mb).is_dir() {
            return Ok(Vec::new());
        }
        let _guard = self.guard(mb)?;
        self.recover_locked(mb)
    }

    /// Intent records waiting in a mailbox (for `check`).
    pub fn pending(&self, mb: &MailboxId) -> Vec<PathBuf> {
        let tmp = self.spool.tmp_dir(mb);
        let Ok(rd) = fs::read_dir(&tmp) else {
            return Vec::new();
        };
        let mut v: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(INTENT_PREFIX) && n.ends_with(".json"))
            })
            .collect();
        v.sort();
        v
    }

    /// [`Self::recover_locked`] once per mailbox and run (batches touch the
    /// same boxes again and again; leftovers only come from earlier runs).
    fn recover_once(&self, mb: &MailboxId) -> Result<()> {
        let first = self
            .recovered
            .lock()
            .map(|mut set| set.insert(mb.clone()))
            .unwrap_or(true);
        if first {
            self.recover_locked(mb)?;
        }
        Ok(())
    }

    fn recover_locked(&self, mb: &MailboxId) -> Result<Vec<String>> {
        let mut done = Vec::new();
        for path in self.pending(mb) {
            let intent: Intent = match fsutil::read_txt_file(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
            {
                Some(i) => i,
                None => {
                    done.push(format!(
                        "{}: unreadable intent record left as is",
                        path.display()
                    ));
                    continue;
                }
            };
            let what = self.recover_one(&intent)?;
            fs::remove_file(&path).map_err(OpError::io("remove", &path))?;
            done.push(what);
        }
        // Temp names of intent records torn by a kill during write_atomic.
        let torn = format!(".{INTENT_PREFIX}");
        if let Ok(rd) = fs::read_dir(self.spool.tmp_dir(mb)) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(&torn) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        Ok(done)
    }

    fn recover_one(&self, intent: &Intent) -> Result<String> {
        let src = &intent.src;
        let txt_sum = intent
            .files
            .iter()
            .find(|(e, _)| e == "txt")
            .map(|(_, s)| s.clone());
        let file_is = |at: &MsgRef, ext: &str, sum: &str| {
            self.file_of(at, ext)
                .ok()
                .and_then(|p| fsutil::sha256_file(&p).ok())
                .is_some_and(|s| hex(&s) == sum)
        };
        // Staged files are only copies: always safe to drop.
        if let (Some(c), Some(m)) = (&intent.dest_context, &intent.dest_mailbox) {
            let dmb = MailboxId::new(
                Context::new(c).map_err(|e| OpError::Refused(e.to_string()))?,
                m,
            )
            .map_err(|e| OpError::Refused(e.to_string()))?;
            let tmp = self.spool.tmp_dir(&dmb);
            for (ext, _) in &intent.files {
                let _ = fs::remove_file(tmp.join(format!("{STAGE_PREFIX}{}.{ext}", intent.id)));
            }
        }
        let dest = intent_dest(intent)?;
        let complete_copy = |d: &MsgRef| intent.files.iter().all(|(ext, sum)| file_is(d, ext, sum));
        match (intent.op.as_str(), intent.state.as_str(), dest) {
            ("delete", _, _) => {
                let txt_there = txt_sum.as_ref().is_some_and(|s| file_is(src, "txt", s));
                if txt_there {
                    return Ok(format!(
                        "{src}: interrupted delete had not started; message kept"
                    ));
                }
                let dir = self.dir_of(src)?;
                let _lock = FolderLock::acquire(&dir, &self.lock)?;
                self.remove_verified(src, intent)?;
                fsutil::sync_dir(&dir).map_err(OpError::io("sync", &dir))?;
                Ok(format!(
                    "{src}: finished an interrupted delete (left-over audio removed)"
                ))
            }
            (_, "staged", _) | (_, _, None) => Ok(format!(
                "{src}: an interrupted {} had not reached the destination; staged copies removed",
                intent.op
            )),
            (op, state, Some(d)) => {
                let dest_complete = complete_copy(&d);
                if !dest_complete {
                    // The rename into the destination did not finish: the
                    // source is intact, so the partial copy goes.
                    let dir = self.dir_of(&d)?;
                    let _lock = FolderLock::acquire(&dir, &self.lock)?;
                    let txt_in_dest = txt_sum.as_ref().is_some_and(|s| file_is(&d, "txt", s));
                    if !txt_in_dest {
                        self.remove_verified(&d, intent)?;
                        fsutil::sync_dir(&dir).map_err(OpError::io("sync", &dir))?;
                        return Ok(format!(
                            "{src}: undid an interrupted {op} (partial copy at {d} removed)"
                        ));
                    }
                    return Ok(format!("{src}: {op} to {d} left as is (copy incomplete but its .txt is there; see check)"));
                }
                let _ = state;
                if op == "copy" || op == "import" {
                    return Ok(format!("{src}: interrupted {op} to {d} was complete"));
                }
                // Move: the copy is complete; remove the source if it is still
                // the same message (its .txt bytes), so it exists exactly once.
                let src_there = txt_sum.as_ref().is_some_and(|s| file_is(src, "txt", s));
                let src_audio_left = intent
                    .files
                    .iter()
                    .any(|(e, s)| e != "txt" && file_is(src, e, s));
                if src_there || src_audio_left {
                    let dir = self.dir_of(src)?;
                    let _lock = FolderLock::acquire(&dir, &self.lock)?;
                    self.remove_verified(src, intent)?;
                    fsutil::sync_dir(&dir).map_err(OpError::io("sync", &dir))?;
                    return Ok(format!("{src}: finished an interrupted move to {d}"));
                }
                Ok(format!("{src}: interrupted move to {d} was complete"))
            }
        }
    }

    /// Closes numbering gaps in one folder, one message per lock hold.
    pub fn resequence(&self, mb: &MailboxId, folder: &Folder) -> Result<Vec<(MsgNum, MsgNum)>> {
        let _guard = self.guard(mb)?;
        let dir = self.spool.folder_dir(mb, folder);
        let mut moved = Vec::new();
        let scan = scan::scan_folder(&dir).map_err(OpError::io("read folder", &dir))?;
        for (next, m) in scan.messages.iter().filter(|m| m.txt).enumerate() {
            if self.interrupted.load(Ordering::SeqCst) {
                break;
            }
            let to = MsgNum::new(next as u16).ok_or_else(|| OpError::Full("numbering".into()))?;
            if m.num == to {
                continue;
            }
            let lock = FolderLock::acquire(&dir, &self.lock)?;
            let busy = fs::read_dir(&dir)
                .map_err(OpError::io("read folder", &dir))?
                .flatten()
                .any(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(&format!("{}.", to.stem()))
                });
            let here = self.spool.txt_path(mb, folder, m.num).exists();
            if busy || !here {
                drop(lock);
                return Err(OpError::Gone(format!(
                    "{} changed while it was being resequenced; stopped after {} renames",
                    dir.display(),
                    moved.len()
                )));
            }
            let mut exts = m.audio.clone();
            exts.push("txt".into());
            for ext in &exts {
                let from = self.spool.msg_file(mb, folder, m.num, ext);
                let dest = self.spool.msg_file(mb, folder, to, ext);
                fs::rename(&from, &dest).map_err(OpError::io("rename", &from))?;
            }
            lock.release()?;
            fsutil::sync_dir(&dir).map_err(OpError::io("sync", &dir))?;
            moved.push((m.num, to));
        }
        Ok(moved)
    }
}

fn intent_dest(intent: &Intent) -> Result<Option<MsgRef>> {
    Ok(
        match (
            &intent.dest_context,
            &intent.dest_mailbox,
            &intent.dest_folder,
            intent.dest_num,
        ) {
            (Some(c), Some(m), Some(f), Some(n)) => Some(MsgRef {
                context: c.clone(),
                mailbox: m.clone(),
                folder: f.clone(),
                num: n,
            }),
            _ => None,
        },
    )
}

fn sha(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

/// Unique within this machine: pid, time and a process counter.
fn unique_id() -> String {
    use std::sync::atomic::AtomicU64;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}-{:x}-{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// The steps `--dry-run` prints for a plan. `allocated` carries each
/// destination's next number across the plans of one run, so a batch shows
/// the numbers the run allocates (they may change if Asterisk delivers first).
pub fn describe(
    spool: &Spool,
    plan: &Plan,
    allocated: &mut std::collections::HashMap<PathBuf, u32>,
) -> Vec<String> {
    let src = &plan.src.at;
    let files = plan.src.exts.join(",");
    let rel = |p: PathBuf| spool.relative(&p).display().to_string();
    let mut steps = Vec::new();
    let mut dest_steps = |steps: &mut Vec<String>, mb: &MailboxId, folder: &Folder| {
        let dir = spool.folder_dir(mb, folder);
        let slot = allocated.entry(dir.clone()).or_insert_with(|| {
            last_message_index(&dir)
                .ok()
                .flatten()
                .map_or(0, |l| u32::from(l) + 1)
        });
        let next = *slot;
        *slot += 1;
        steps.push(format!(
            "copy {src}.{{{files}}} to {}/ (fsync)",
            rel(spool.tmp_dir(mb))
        ));
        steps.push(format!(
            "lock {}; allocate msg{next:04} (highest+1); rename the audio, then the .txt; unlock",
            rel(dir)
        ));
    };
    match &plan.action {
        Action::Move { mailbox, folder } => {
            dest_steps(&mut steps, mailbox, folder);
            steps.push(format!(
                "lock {}/{}/{}; check msg{:04}.txt is unchanged; remove its .txt, then its audio; unlock (no renumbering)",
                src.context, src.mailbox, src.folder, src.num
            ));
        }
        Action::Copy { mailbox, folder } => dest_steps(&mut steps, mailbox, folder),
        Action::Delete => steps.push(format!(
            "lock {}/{}/{}; check msg{:04}.txt is unchanged; remove its .txt, then its audio; unlock (no renumbering)",
            src.context, src.mailbox, src.folder, src.num
        )),
    }
    steps
}
