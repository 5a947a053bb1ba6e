//! Spool changes: plan (pure), then apply under Asterisk's locks (spec §12.4,
//! §12.5, §2.7), with an intent record that makes a crash at any step
//! recoverable (`recover`).
//!
//! # Change protocol
//!
//! One message at a time, under a vmtool-only lock of the source mailbox
//! (`MailboxGuard`: two vmtools never move the same message):
//!
//! 1. The intent record (`tmp/.vmtool-intent-<id>.json` of the source box) is
//!    written before anything else; `<id>` names the process (pid and start
//!    time), so anything a kill leaves can be told from a live run's.
//! 2. Every file is staged by copy into the destination box's `tmp/` as
//!    `.vmtool-stage-<id>.<ext>` and fsynced, no lock held; the record then
//!    lists their checksums.
//! 3. The destination folder lock and (for a move) the source folder lock are
//!    taken in path order: the first with the normal wait, the second with one
//!    try; if it is busy both are released and the pair is retried after a
//!    random pause until the timeout. vmtool never waits for a lock while it
//!    holds another, so Asterisk (which holds one at a time, or source then
//!    `Old`/`Deleted` in `close_mailbox()`) never waits behind vmtool, and two
//!    vmtools moving A→B and B→A cannot deadlock.
//! 4. Under both locks: the source is found by identity (the `.txt` bytes,
//!    which carry `msg_id` and `origtime`) at its number or wherever Asterisk
//!    renumbered it, with the same set of files; highest + 1 is allocated in
//!    the destination; the record says so; audio then the `.txt` are renamed
//!    in; the source's `.txt` then its audio are unlinked; both locks are
//!    released. Nobody who locks ever sees the message twice or not at all.
//! 5. Directories are fsynced and the record removed.
//!
//! Recovery (the next change in the box, or `check --fix`) reads the records
//! whose process is gone. The staged `.txt` is renamed last, so it says how
//! far a commit got: still in `tmp/`, the copy is partial and its audio is
//! removed (only files with the recorded bytes), the source stays; gone, the
//! copy was complete (wherever it is now: Asterisk may have read it into
//! `Old`) and the move is finished by removing the source, found by the inode
//! of its `.txt` wherever Asterisk renumbered it. Bytes alone never identify a
//! side: copies share `msg_id` and often every byte. Staged copies are dropped
//! last. Folder locks a killed vmtool left are broken at once (their
//! `.lock` names the owner, see `lock`). Folders are never renumbered, except
//! by `resequence` and by Asterisk's own `Deleted` rotation.

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
    /// Inode of the source's `.txt` (found under the lock): the source itself,
    /// wherever Asterisk renamed it, and not a copy with the same bytes
    /// (copies share `msg_id` and often every byte, spec §3.6).
    #[serde(default)]
    src_ino: Option<u64>,
    /// Birth time of that `.txt` (ns since the epoch, where the file system
    /// keeps one): file systems hand a freed inode number to the next new
    /// file at once, and a copy of the same message moved back into the
    /// folder would otherwise pass for the source. Renames keep it.
    #[serde(default)]
    src_born: Option<u128>,
}

const INTENT_PREFIX: &str = ".vmtool-intent-";
const STAGE_PREFIX: &str = ".vmtool-stage-";

/// Hooks that let tests kill vmtool at a chosen step: `VMTOOL_TEST_KILL_AT`
/// names a step; `VMTOOL_TEST_PAUSE_AT` names one where vmtool creates
/// `$VMTOOL_TEST_PAUSE_FILE.paused` and waits (up to a minute) until
/// `$VMTOOL_TEST_PAUSE_FILE` exists, so a test can act in between. Set only by
/// tests, never by accident.
use crate::lock::test_trace as trace;

fn traced_rename(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
    let (from, to) = (from.as_ref(), to.as_ref());
    trace(format_args!(
        "rename {} {}{}",
        from.display(),
        to.display(),
        crate::lock::test_trace_id(from)
    ));
    fs::rename(from, to)
}

fn traced_remove(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref();
    trace(format_args!(
        "unlink {}{}",
        path.display(),
        crate::lock::test_trace_id(path)
    ));
    fs::remove_file(path)
}

pub(crate) fn failpoint(step: &str) {
    if let Some(want) = std::env::var_os("VMTOOL_TEST_KILL_AT") {
        if want == step {
            // SIGKILL-like: no destructors, no unlock.
            std::process::abort();
        }
    }
    if let (Some(want), Some(file)) = (
        std::env::var_os("VMTOOL_TEST_PAUSE_AT"),
        std::env::var_os("VMTOOL_TEST_PAUSE_FILE"),
    ) {
        if want == step {
            let file = PathBuf::from(file);
            let mut paused = file.clone().into_os_string();
            paused.push(".paused");
            let _ = fs::write(&paused, step);
            let start = std::time::Instant::now();
            while !file.exists() && start.elapsed() < Duration::from_secs(60) {
                std::thread::sleep(Duration::from_millis(5));
            }
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
        // A box of voicemail.conf that never had a message has no directory
        // yet: made like its nearest existing parent, as create_dirpath() would.
        let mbox_dir = self.spool.mailbox_dir(mb);
        let ctx_dir = self.spool.context_dir(&mb.context);
        let model = [&mbox_dir, &ctx_dir, &self.spool.root().to_path_buf()]
            .into_iter()
            .find(|d| d.is_dir())
            .cloned()
            .unwrap_or_else(|| mbox_dir.clone());
        let perms = Perms::observe(&model).map_err(OpError::io("read", &model))?;
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
        self.break_dead_locks(&src_mb);
        if let Action::Move { mailbox, .. } | Action::Copy { mailbox, .. } = &plan.action {
            if mailbox != &src_mb {
                self.break_dead_locks(mailbox);
            }
        }
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

    /// Adds audio files a message lacks (`convert --add-format`), `files`
    /// being `(extension, bytes)`: staged in the box's `tmp/` with no lock
    /// held, then, under the folder lock, renamed in next to the message
    /// found by its `.txt` bytes wherever Asterisk renumbered it. A file
    /// that exists is never replaced (the rename refuses to). Returns where
    /// the message is and the extensions added. `source` is the audio file
    /// they were made from, `(extension, SHA-256 hex)`: it must still hold
    /// those bytes under the lock, or nothing is added.
    pub fn add_files(
        &self,
        loc: &Located,
        source: (&str, &str),
        files: &[(String, Vec<u8>)],
    ) -> Result<(MsgRef, Vec<String>)> {
        if self.interrupted.load(Ordering::SeqCst) {
            return Err(OpError::Refused("interrupted".into()));
        }
        let mb = loc.at.mailbox_id()?;
        let dir = self.dir_of(&loc.at)?;
        self.refuse_links(&dir)?;
        let _guard = self.guard(&mb)?;
        self.break_dead_locks(&mb);
        self.recover_locked(&mb)?;
        let tmp = self.mailbox_tmp(&mb)?;
        let perms = Perms::observe(&dir).map_err(OpError::io("read", &dir))?;
        let tmp_perms = Perms::observe(&tmp).map_err(OpError::io("read", &tmp))?;
        let id = unique_id();
        let mut intent = Intent {
            id: id.clone(),
            op: "add-format".into(),
            src: loc.at.clone(),
            files: Vec::new(),
            dest_context: Some(mb.context.to_string()),
            dest_mailbox: Some(mb.mailbox().to_string()),
            dest_folder: None,
            dest_num: None,
            state: "staged".into(),
            src_ino: None,
            src_born: None,
        };
        let intent_path = self.write_intent(&tmp, &intent, &tmp_perms)?;
        failpoint("staged-intent");
        let mut staged: Vec<(String, PathBuf)> = Vec::new();
        let cleanup = |staged: &[(String, PathBuf)]| {
            for (_, p) in staged {
                let _ = fs::remove_file(p);
            }
            let _ = fs::remove_file(&intent_path);
        };
        for (ext, bytes) in files {
            let to = tmp.join(format!("{STAGE_PREFIX}{id}.{ext}"));
            match fsutil::write_hashed(&mut bytes.as_slice(), &to, &perms, true) {
                Ok(sum) => {
                    staged.push((ext.clone(), to));
                    intent.files.push((ext.clone(), hex(&sum)));
                }
                Err(e) => {
                    cleanup(&staged);
                    return Err(OpError::io("write", to)(e));
                }
            }
            failpoint("staged-file");
        }
        fsutil::sync_dir(&tmp).map_err(OpError::io("sync", &tmp))?;
        self.write_intent(&tmp, &intent, &tmp_perms)?;
        failpoint("staged-all");

        let lock = match FolderLock::acquire(&dir, &self.lock) {
            Ok(l) => l,
            Err(e) => {
                cleanup(&staged);
                return Err(e.into());
            }
        };
        failpoint("locked");
        let Some((at, exts)) = self.find_in_folder(&loc.at, &hex(&loc.txt_sha))? else {
            drop(lock);
            cleanup(&staged);
            return Err(OpError::Gone(format!(
                "{} is gone or changed since it was listed (moved, deleted or rewritten by someone else); nothing was added",
                loc.at
            )));
        };
        if !self.file_is(&at, source.0, source.1) {
            drop(lock);
            cleanup(&staged);
            return Err(OpError::Gone(format!(
                "{at}: its .{} changed since it was read; nothing was added",
                source.0
            )));
        }
        intent.src = at.clone();
        intent.state = "committing".into();
        self.write_intent(&tmp, &intent, &tmp_perms)?;
        failpoint("committing");
        let mut added = Vec::new();
        for (ext, staged_at) in &staged {
            if exts.contains(ext) {
                continue;
            }
            let to = self.file_of(&at, ext)?;
            match fsutil::rename_noreplace(staged_at, &to) {
                Ok(()) => added.push(ext.clone()),
                // Someone else added it meanwhile: theirs stays.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    drop(lock);
                    cleanup(&staged);
                    return Err(OpError::io("rename into", to)(e));
                }
            }
            failpoint("renamed-audio");
        }
        lock.release()?;
        fsutil::sync_dir(&dir).map_err(OpError::io("sync", &dir))?;
        cleanup(&staged);
        fsutil::sync_dir(&tmp).map_err(OpError::io("sync", &tmp))?;
        Ok((at, added))
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

        // The intent is on disk before the first staged byte: whatever a kill
        // leaves in tmp/ is named by it (and its name says whose it is).
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
            src_ino: None,
            src_born: None,
        };
        let intent_path = self.write_intent(&src_tmp, &intent, &src_perms)?;
        failpoint("staged-intent");

        // Stage: real copies, fsynced, before any lock (spec §6.8 item 5).
        let mut staged: Vec<(String, PathBuf)> = Vec::new();
        let cleanup = |staged: &[(String, PathBuf)]| {
            for (_, p) in staged {
                let _ = traced_remove(p);
            }
            let _ = traced_remove(&intent_path);
        };
        for (ext, from) in files {
            let from = from.clone();
            let to = dst_tmp.join(format!("{STAGE_PREFIX}{id}.{ext}"));
            trace(format_args!(
                "copy {} {}{}",
                from.display(),
                to.display(),
                crate::lock::test_trace_id(&from)
            ));
            match fsutil::copy_durable(&from, &to, &perms) {
                Ok(sum) => {
                    staged.push((ext.clone(), to));
                    if ext == "txt" && sum != src.txt_sha {
                        cleanup(&staged);
                        return Err(OpError::Gone(format!(
                            "{} changed while it was being copied; nothing was done",
                            src.at
                        )));
                    }
                    intent.files.push((ext.clone(), hex(&sum)));
                }
                Err(e) => {
                    let _ = traced_remove(&to);
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

        // Both folders locked (never waiting for one while holding the other),
        // then only renames and unlinks until both are released.
        let src_dir = self.dir_of(&src.at)?;
        let locks = match self.lock_pair(&dst_dir, (!keep_source).then_some(src_dir.as_path())) {
            Ok(l) => l,
            Err(e) => {
                cleanup(&staged);
                return Err(e);
            }
        };
        failpoint("locked");
        // A move takes the message wherever it is in its folder now (Asterisk
        // may have renumbered it), and only if it is still the one staged.
        let mut from = src.at.clone();
        if !keep_source {
            let txt_sum = hex(&src.txt_sha);
            let found = self.find_in_folder(&src.at, &txt_sum)?;
            let same_files = found.as_ref().is_some_and(|(_, exts)| {
                let mut a = exts.clone();
                let mut b: Vec<String> = intent.files.iter().map(|(e, _)| e.clone()).collect();
                a.sort();
                b.sort();
                a == b
            });
            match found {
                Some((at, _)) if same_files => from = at,
                _ => {
                    drop(locks);
                    cleanup(&staged);
                    return Err(OpError::Gone(format!(
                        "{} was moved, deleted or changed by someone else meanwhile; nothing was done",
                        src.at
                    )));
                }
            }
        }
        let num = match self.allocate(&dst_dir, dmb, dfolder, capacity) {
            Ok(n) => n,
            Err(e) => {
                drop(locks);
                cleanup(&staged);
                return Err(e);
            }
        };
        intent.src = from.clone();
        if !keep_source {
            intent.src_ino = self.txt_ino(&from);
            intent.src_born = self.txt_born(&from);
        }
        intent.dest_num = Some(num.get());
        intent.state = "committing".into();
        self.write_intent(&src_tmp, &intent, &src_perms)?;
        failpoint("committing");
        let (audio, txt): (Vec<_>, Vec<_>) = staged.iter().partition(|(ext, _)| ext != "txt");
        for (ext, staged_at) in audio.iter().chain(txt.iter()) {
            let to = self.spool.msg_file(dmb, dfolder, num, ext);
            traced_rename(staged_at, &to).map_err(OpError::io("rename into", &to))?;
            failpoint(if ext == "txt" {
                "renamed-txt"
            } else {
                "renamed-audio"
            });
        }
        let dest = MsgRef::new(dmb, dfolder, num);
        failpoint("committed");
        if !keep_source {
            // The .txt first, then the audio (vm_delete()), still under both locks:
            // nobody who locks ever sees the message twice.
            let txt = self.file_of(&from, "txt")?;
            traced_remove(&txt).map_err(OpError::io("remove", &txt))?;
            failpoint("removed-src-txt");
            for (ext, _) in intent.files.iter().filter(|(e, _)| e != "txt") {
                let p = self.file_of(&from, ext)?;
                match traced_remove(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(OpError::io("remove", &p)(e)),
                }
            }
        }
        let mut released = Ok(());
        for l in locks {
            released = released.and(l.release());
        }
        failpoint("removed-src");
        released?;
        fsutil::sync_dir(&dst_dir).map_err(OpError::io("sync", &dst_dir))?;
        if !keep_source && src_dir != dst_dir {
            fsutil::sync_dir(&src_dir).map_err(OpError::io("sync", &src_dir))?;
        }
        fsutil::sync_dir(&dst_tmp).map_err(OpError::io("sync", &dst_tmp))?;
        traced_remove(&intent_path).map_err(OpError::io("remove", &intent_path))?;
        fsutil::sync_dir(&src_tmp).map_err(OpError::io("sync", &src_tmp))?;
        Ok(dest)
    }

    /// Locks `a` and, if given and different, `b`: the first (by path) with the
    /// normal wait, the second with one try; if that is busy both are released
    /// and the pair is tried again after a random pause, until the timeout.
    /// vmtool never waits for a lock while it holds another (Asterisk would
    /// wait behind it and drop a caller's message), and two vmtools moving
    /// A→B and B→A cannot deadlock.
    fn lock_pair(&self, a: &Path, b: Option<&Path>) -> Result<Vec<FolderLock>> {
        let Some(b) = b.filter(|b| *b != a) else {
            return Ok(vec![FolderLock::acquire(a, &self.lock)?]);
        };
        let (first, second) = if a < b { (a, b) } else { (b, a) };
        let start = std::time::Instant::now();
        let mut pause_ms = 2u64;
        loop {
            let opts = LockOptions {
                mode: self.lock.mode,
                timeout: self.lock.timeout.saturating_sub(start.elapsed()),
            };
            let one = FolderLock::acquire(first, &opts)?;
            if let Some(two) = FolderLock::try_acquire(second, self.lock.mode)? {
                return Ok(vec![one, two]);
            }
            drop(one);
            let waited = start.elapsed();
            if waited >= self.lock.timeout {
                return Err(LockError::Busy {
                    dir: second.to_path_buf(),
                    waited,
                }
                .into());
            }
            // Back off with jitter (2, 4, … 32 ms) so the holder of `second` gets on.
            let pause = crate::lock::jitter(pause_ms / 2, pause_ms);
            std::thread::sleep(pause.min(self.lock.timeout - waited));
            pause_ms = (pause_ms * 2).min(32);
        }
    }

    /// The message with this `.txt` checksum in `at`'s folder: at `at`'s number
    /// if it is still there, else wherever Asterisk renumbered it. Returns its
    /// place and the extensions of its files (`txt` included).
    fn find_in_folder(&self, at: &MsgRef, txt_sum: &str) -> Result<Option<(MsgRef, Vec<String>)>> {
        let dir = self.dir_of(at)?;
        let scan = scan::scan_folder(&dir).map_err(OpError::io("read folder", &dir))?;
        let mut order: Vec<&scan::MsgFiles> = scan.messages.iter().filter(|m| m.txt).collect();
        order.sort_by_key(|m| m.num.get() != at.num);
        for m in order {
            let here = MsgRef {
                num: m.num.get(),
                ..at.clone()
            };
            if self.file_is(&here, "txt", txt_sum) {
                let mut exts = m.audio.clone();
                exts.push("txt".into());
                return Ok(Some((here, exts)));
            }
        }
        Ok(None)
    }

    /// Whether `at.ext` exists with these bytes (SHA-256, hex).
    fn file_is(&self, at: &MsgRef, ext: &str, sum: &str) -> bool {
        self.file_of(at, ext)
            .ok()
            .and_then(|p| fsutil::sha256_file(&p).ok())
            .is_some_and(|s| hex(&s) == sum)
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
                traced_rename(e.path(), &to).map_err(OpError::io("quarantine", e.path()))?;
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
            traced_remove(dir.join(name)).map_err(OpError::io("remove", dir.join(name)))?;
        }
        for n in 1..=x {
            for name in files_of(n)? {
                let to = dir.join(format!("{}{}", stem(n - 1), &name[7..]));
                traced_rename(dir.join(&name), &to).map_err(OpError::io("rename", &to))?;
            }
        }
        Ok(())
    }

    /// Step 3 of spec §12.4 for a delete: remove the message under its folder
    /// lock, found by its `.txt` bytes wherever Asterisk renumbered it.
    fn remove_source(&self, src: &Located, intent: &Intent) -> Result<()> {
        let dir = self.dir_of(&src.at)?;
        let lock = FolderLock::acquire(&dir, &self.lock)?;
        let Some(at) = self.find_source(&src.at, Some(&hex(&src.txt_sha)), intent)? else {
            drop(lock);
            return Err(OpError::Gone(format!(
                "{} was moved, deleted or changed by someone else meanwhile; nothing was done",
                src.at
            )));
        };
        // The .txt first, then the audio (vm_delete()).
        let txt = self.file_of(&at, "txt")?;
        traced_remove(&txt).map_err(OpError::io("remove", &txt))?;
        failpoint("removed-src-txt");
        for (ext, _) in intent.files.iter().filter(|(e, _)| e != "txt") {
            let p = self.file_of(&at, ext)?;
            match traced_remove(&p) {
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

    /// Unlinks the files of `at` whose bytes are those recorded in the intent
    /// (the `.txt` first); anything else is left alone, and nothing at all if
    /// `at` holds another message (a `.txt` with other bytes). Returns whether
    /// anything was removed.
    fn remove_verified(&self, at: &MsgRef, intent: &Intent) -> Result<bool> {
        let mut files = intent.files.clone();
        files.sort_by_key(|(e, _)| e != "txt");
        let txt = self.file_of(at, "txt")?;
        let txt_sum = files
            .iter()
            .find(|(e, _)| e == "txt")
            .map(|(_, s)| s.as_str());
        if txt.exists() && !txt_sum.is_some_and(|s| self.file_is(at, "txt", s)) {
            return Ok(false);
        }
        let mut any = false;
        for (ext, sum) in files {
            if self.file_is(at, &ext, &sum) {
                let p = self.file_of(at, &ext)?;
                traced_remove(&p).map_err(OpError::io("remove", &p))?;
                any = true;
            }
        }
        Ok(any)
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
            match traced_remove(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(OpError::io("remove", &p)(e)),
            }
        }
        failpoint("removed-src-audio");
        traced_remove(&txt).map_err(OpError::io("remove", &txt))?;
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
            src_ino: self.txt_ino(&src.at),
            src_born: self.txt_born(&src.at),
        };
        for ext in &src.exts {
            let p = self.file_of(&src.at, ext)?;
            let sum = fsutil::sha256_file(&p).map_err(OpError::io("read", &p))?;
            intent.files.push((ext.clone(), hex(&sum)));
        }
        let intent_path = self.write_intent(&tmp, &intent, &perms)?;
        let r = self.remove_source(src, &intent);
        let _ = traced_remove(&intent_path);
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

    /// Intent records of interrupted changes (their vmtool is gone) in a mailbox.
    pub fn pending(&self, mb: &MailboxId) -> Vec<PathBuf> {
        self.intents(mb)
            .into_iter()
            // A live vmtool's change in progress is not interrupted.
            .filter(|p| {
                let id = p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_prefix(INTENT_PREFIX));
                id.and_then(id_owner)
                    .is_none_or(|(pid, start)| crate::lock::process_gone(pid, start))
            })
            .collect()
    }

    /// Every intent record in a mailbox. With the mailbox guard held they are
    /// all interrupted: their vmtool let go of the guard, and a killed one does
    /// so before `/proc` shows it gone.
    fn intents(&self, mb: &MailboxId) -> Vec<PathBuf> {
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
        for path in self.intents(mb) {
            let intent: Intent = match fsutil::read_txt_file(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Intent>(&b).ok())
                // tmp/ is the asterisk user's: extensions must stay file names.
                .filter(|i| {
                    i.files
                        .iter()
                        .all(|(e, _)| !e.is_empty() && e.bytes().all(|b| b.is_ascii_alphanumeric()))
                }) {
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
            trace(format_args!("recovered {what}"));
            failpoint("recovery-decided");
            traced_remove(&path).map_err(OpError::io("remove", &path))?;
            let tmp = self.spool.tmp_dir(mb);
            fsutil::sync_dir(&tmp).map_err(OpError::io("sync", &tmp))?;
            self.drop_staged(&intent)?;
            done.push(what);
        }
        // Temp names of intent records torn by a kill during write_atomic.
        let torn = format!(".{INTENT_PREFIX}");
        if let Ok(rd) = fs::read_dir(self.spool.tmp_dir(mb)) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(&torn) {
                    let _ = traced_remove(e.path());
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
        let dest = intent_dest(intent)?;
        let done = match (intent.op.as_str(), intent.state.as_str(), dest) {
            // Each added file was renamed in whole or not at all; only the
            // staged copies are left to drop (below).
            ("add-format", _, _) => format!(
                "{src}: an interrupted add-format left only whole files; staged copies removed"
            ),
            ("delete", _, _) => {
                let dir = self.dir_of(src)?;
                let _lock = FolderLock::acquire(&dir, &self.lock)?;
                // The .txt goes first: if it is still there (wherever it is now),
                // the delete had not started.
                if self.find_source(src, txt_sum.as_deref(), intent)?.is_some() {
                    return Ok(format!(
                        "{src}: interrupted delete had not started; message kept"
                    ));
                }
                self.remove_leftover_audio(src, intent)?;
                self.remove_orphans_of(src, intent)?;
                fsutil::sync_dir(&dir).map_err(OpError::io("sync", &dir))?;
                format!("{src}: finished an interrupted delete (left-over audio removed)")
            }
            (_, "staged", _) | (_, _, None) => format!(
                "{src}: an interrupted {} had not reached the destination; staged copies removed",
                intent.op
            ),
            (op, _, Some(d)) => self.recover_transfer(intent, op, &d, txt_sum.as_deref())?,
        };
        Ok(done)
    }

    /// Staged files are only copies: dropped once the record's decision is
    /// carried out and the record itself is gone, never before (the staged
    /// `.txt` is the evidence a rerun of the decision reads: a kill between
    /// the two must not turn "never committed" into "committed"). Listed in
    /// the record or not (a kill while staging leaves one it does not list).
    fn drop_staged(&self, intent: &Intent) -> Result<()> {
        if let (Some(c), Some(m)) = (&intent.dest_context, &intent.dest_mailbox) {
            let dmb = MailboxId::new(
                Context::new(c).map_err(|e| OpError::Refused(e.to_string()))?,
                m,
            )
            .map_err(|e| OpError::Refused(e.to_string()))?;
            let prefix = format!("{STAGE_PREFIX}{}.", intent.id);
            if let Ok(rd) = fs::read_dir(self.spool.tmp_dir(&dmb)) {
                for e in rd.flatten() {
                    if e.file_name().to_string_lossy().starts_with(&prefix) {
                        let _ = traced_remove(e.path());
                    }
                }
            }
        }
        Ok(())
    }

    /// An interrupted move or copy that had begun to rename into `d`. The
    /// staged `.txt` is renamed last, so it tells how far the commit got:
    /// still in `tmp/`, the copy is partial (its audio goes, the source
    /// stays); gone, the copy was complete — wherever Asterisk or another
    /// vmtool has taken it since — and the move is finished by removing the
    /// source, found by its inode wherever Asterisk renumbered it. Neither side
    /// is looked for by its bytes alone: copies of a message share them.
    fn recover_transfer(
        &self,
        intent: &Intent,
        op: &str,
        d: &MsgRef,
        txt_sum: Option<&str>,
    ) -> Result<String> {
        let src = &intent.src;
        let moving = op == "move";
        let src_dir = self.dir_of(src)?;
        let dst_dir = self.dir_of(d)?;
        let dmb = d.mailbox_id()?;
        // No other vmtool may move messages in the destination box meanwhile
        // (taken before any folder lock, and given up after the timeout
        // rather than waited for indefinitely).
        let _dest_guard = if dmb != src.mailbox_id()? {
            match MailboxGuard::acquire(&self.spool.mailbox_dir(&dmb), self.lock.timeout) {
                Ok(g) => Some(g),
                Err(e) if e.is_busy() => return Err(e.into()),
                // No tmp/ there any more: nobody works in that box.
                Err(_) => None,
            }
        } else {
            None
        };
        let locks = self.lock_pair(&dst_dir, moving.then_some(src_dir.as_path()))?;
        let staged_txt = self
            .spool
            .tmp_dir(&dmb)
            .join(format!("{STAGE_PREFIX}{}.txt", intent.id));
        let complete = fs::symlink_metadata(&staged_txt).is_err();
        let msg = if !complete {
            // The source was never touched. A `.txt` at `d` is not this copy's
            // (that one is still staged): another copy of the same message may
            // have taken the number since, bytes and all, and stays.
            self.remove_leftover_audio(d, intent)?;
            self.remove_orphans_of(d, intent)?;
            format!("{src}: undid an interrupted {op} (partial copy at {d} removed)")
        } else if !moving {
            format!("{src}: interrupted {op} to {d} was complete")
        } else {
            if let Some(at) = self.find_source(src, txt_sum, intent)? {
                self.remove_verified(&at, intent)?;
            }
            // Audio left after its .txt went, at its number or renumbered.
            self.remove_leftover_audio(src, intent)?;
            self.remove_orphans_of(src, intent)?;
            format!("{src}: finished an interrupted move to {d}")
        };
        for l in locks {
            l.release()?;
        }
        fsutil::sync_dir(&dst_dir).map_err(OpError::io("sync", &dst_dir))?;
        if moving {
            fsutil::sync_dir(&src_dir).map_err(OpError::io("sync", &src_dir))?;
        }
        Ok(msg)
    }

    /// Inode of `at`'s `.txt`, if it is there.
    fn txt_ino(&self, at: &MsgRef) -> Option<u64> {
        use std::os::unix::fs::MetadataExt as _;
        let p = self.file_of(at, "txt").ok()?;
        fs::symlink_metadata(p).ok().map(|m| m.ino())
    }

    /// Birth time of `at`'s `.txt` (see [`Intent::src_born`]).
    fn txt_born(&self, at: &MsgRef) -> Option<u128> {
        let p = self.file_of(at, "txt").ok()?;
        let born = fs::symlink_metadata(p).ok()?.created().ok()?;
        born.duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_nanos())
    }

    /// The source message of a record in its folder, at its number or
    /// wherever Asterisk renumbered it: the `.txt` with the recorded inode,
    /// birth time and bytes. Records without an inode (older versions) go by
    /// bytes alone.
    fn find_source(
        &self,
        src: &MsgRef,
        txt_sum: Option<&str>,
        intent: &Intent,
    ) -> Result<Option<MsgRef>> {
        let Some(sum) = txt_sum else {
            return Ok(None);
        };
        let Some(ino) = intent.src_ino else {
            return Ok(self.find_in_folder(src, sum)?.map(|(at, _)| at));
        };
        let dir = self.dir_of(src)?;
        let scan = scan::scan_folder(&dir).map_err(OpError::io("read folder", &dir))?;
        let mut order: Vec<&scan::MsgFiles> = scan.messages.iter().filter(|m| m.txt).collect();
        order.sort_by_key(|m| m.num.get() != src.num);
        for m in order {
            let here = MsgRef {
                num: m.num.get(),
                ..src.clone()
            };
            let same_file = self.txt_ino(&here) == Some(ino)
                && (intent.src_born.is_none() || self.txt_born(&here) == intent.src_born);
            if same_file && self.file_is(&here, "txt", sum) {
                return Ok(Some(here));
            }
        }
        Ok(None)
    }

    /// The recorded audio at `at` when no `.txt` is there any more (a removal
    /// cut between the `.txt` and its audio); nothing if a `.txt` is there.
    fn remove_leftover_audio(&self, at: &MsgRef, intent: &Intent) -> Result<bool> {
        if fs::symlink_metadata(self.file_of(at, "txt")?).is_ok() {
            return Ok(false);
        }
        self.remove_verified(at, intent)
    }

    /// Audio without a `.txt` anywhere in `at`'s folder whose bytes are the
    /// intent's: half a copy or half a removal, renumbered by Asterisk since
    /// (its resequencing goes by audio, spec §2.6).
    fn remove_orphans_of(&self, at: &MsgRef, intent: &Intent) -> Result<()> {
        let dir = self.dir_of(at)?;
        let scan = scan::scan_folder(&dir).map_err(OpError::io("read folder", &dir))?;
        for m in scan.messages.iter().filter(|m| !m.txt) {
            let here = MsgRef {
                num: m.num.get(),
                ..at.clone()
            };
            self.remove_verified(&here, intent)?;
        }
        Ok(())
    }

    /// Breaks every folder lock of `mb` that a vmtool which is gone left behind
    /// (spec §6.6: Asterisk would drop each deposit into it after 5 s).
    fn break_dead_locks(&self, mb: &MailboxId) {
        if self.lock.mode != crate::lock::LockMode::Lockfile {
            return;
        }
        let Ok(rd) = fs::read_dir(self.spool.mailbox_dir(mb)) else {
            return;
        };
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = crate::lock::break_dead_lock(&e.path());
            }
        }
    }

    /// vmtool's own files in a mailbox's `tmp/` whose owner is gone: staged
    /// copies and torn intent records of killed runs (their names carry the
    /// owner's pid and start time). Records of finished-or-not changes
    /// themselves are [`Self::pending`].
    pub fn leftovers(&self, mb: &MailboxId) -> Vec<PathBuf> {
        let tmp = self.spool.tmp_dir(mb);
        let Ok(rd) = fs::read_dir(&tmp) else {
            return Vec::new();
        };
        let torn = format!(".{INTENT_PREFIX}");
        let mut v: Vec<PathBuf> = rd
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(staged) = name.strip_prefix(STAGE_PREFIX) {
                    // A staged .txt still in tmp/ is the evidence that its
                    // commit never happened: it stays while its record does.
                    let id = staged.split('.').next().unwrap_or(staged);
                    return owner_gone(staged, &e.path()) && !self.intent_exists(id);
                }
                name.strip_prefix(&torn)
                    .is_some_and(|id| owner_gone(id, &e.path()))
            })
            .map(|e| e.path())
            .collect();
        v.sort();
        v
    }

    /// Removes [`Self::leftovers`]; returns what was removed.
    /// Whether any box holds the intent record `id` (a staged file's record
    /// is in its source box, which may be any). Only asked for staged files
    /// of a vmtool that is gone: rare, so a stat per box is fine.
    fn intent_exists(&self, id: &str) -> bool {
        use crate::store::MailboxStore as _;
        let store = crate::store::FileStore::new(self.spool.clone());
        let name = format!("{INTENT_PREFIX}{id}.json");
        store.contexts().unwrap_or_default().iter().any(|ctx| {
            store
                .mailboxes(ctx)
                .unwrap_or_default()
                .iter()
                .any(|mb| fs::symlink_metadata(self.spool.tmp_dir(mb).join(&name)).is_ok())
        })
    }

    pub fn remove_leftovers(&self, mb: &MailboxId) -> Vec<PathBuf> {
        let mut removed = Vec::new();
        for p in self.leftovers(mb) {
            if traced_remove(&p).is_ok() {
                removed.push(p);
            }
        }
        removed
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
                traced_rename(&from, &dest).map_err(OpError::io("rename", &from))?;
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

/// Unique within this machine, and saying whose it is: pid, process start
/// time, time and a process counter.
fn unique_id() -> String {
    use std::sync::atomic::AtomicU64;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}-{}-{:x}-{}",
        std::process::id(),
        crate::lock::my_start_time().unwrap_or(0),
        nanos,
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// Pid and start time of the process that made [`unique_id`] `id` (what
/// follows it in a file name is ignored); `None` for older names.
fn id_owner(id: &str) -> Option<(u32, u64)> {
    let id = id.split('.').next()?;
    let parts: Vec<&str> = id.split('-').collect();
    match parts[..] {
        [pid, start, _, _] => Some((pid.parse().ok()?, start.parse().ok().filter(|s| *s > 0)?)),
        _ => None,
    }
}

/// Whether the process that made a file named after [`unique_id`] `id` is
/// gone. Names of older versions (pid, time, counter) carry no start time:
/// judged by age (an hour), as before.
fn owner_gone(id: &str, path: &Path) -> bool {
    match id_owner(id) {
        Some((pid, start)) => crate::lock::process_gone(pid, start),
        None => fs::symlink_metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(3600)),
    }
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
    let stage = |steps: &mut Vec<String>, mb: &MailboxId| {
        steps.push(format!(
            "copy {src}.{{{files}}} to {}/ (fsync)",
            rel(spool.tmp_dir(mb))
        ));
    };
    let mut next_of = |dir: PathBuf| {
        let slot = allocated.entry(dir.clone()).or_insert_with(|| {
            last_message_index(&dir)
                .ok()
                .flatten()
                .map_or(0, |l| u32::from(l) + 1)
        });
        let next = *slot;
        *slot += 1;
        next
    };
    match &plan.action {
        Action::Move { mailbox, folder } => {
            stage(&mut steps, mailbox);
            let dir = spool.folder_dir(mailbox, folder);
            let next = next_of(dir.clone());
            steps.push(format!(
                "lock {} and {}/{}/{} (never waiting for one while holding the other); find msg{:04}.txt by its bytes; allocate msg{next:04} (highest+1); rename the audio, then the .txt; remove the source's .txt, then its audio; unlock (no renumbering)",
                rel(dir), src.context, src.mailbox, src.folder, src.num
            ));
        }
        Action::Copy { mailbox, folder } => {
            stage(&mut steps, mailbox);
            let dir = spool.folder_dir(mailbox, folder);
            let next = next_of(dir.clone());
            steps.push(format!(
                "lock {}; allocate msg{next:04} (highest+1); rename the audio, then the .txt; unlock",
                rel(dir)
            ));
        }
        Action::Delete => steps.push(format!(
            "lock {}/{}/{}; find msg{:04}.txt by its bytes; remove its .txt, then its audio; unlock (no renumbering)",
            src.context, src.mailbox, src.folder, src.num
        )),
    }
    steps
}
