//! `check`: everything spec §11 and §12.8 say can be wrong in a store, one
//! finding per item with the file (or row) and the fix. On a file spool
//! `--fix` repairs only what is safe (half-done moves, quarantine of
//! phantoms, orphans and leftovers); nothing that exists only once is ever
//! deleted. A table's rows are only reported; its server's stale spool locks
//! are broken with `--fix`.

use super::{sql, Store};
use super::{FileStore, MailboxStore};
use crate::config::VoicemailConf;
use crate::error::{Error, Result};
use crate::fsutil::{self, Perms};
use crate::lock::LockOptions;
use crate::lock::{self, FolderLock};
use crate::metadata::Listed;
use crate::ops::Engine;
use crate::scan::{self, MsgState, Noise};
use crate::spool::{Context, Folder, MailboxId};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

/// One problem found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Finding {
    pub path: String,
    pub kind: &'static str,
    pub problem: String,
    pub fix: String,
    pub fixed: bool,
    /// `problem`, or `information`: something Asterisk itself sets right
    /// (numbering gaps, closed the next time the folder is opened, spec
    /// §2.5–2.6); counted as a problem only with `--strict`.
    pub severity: &'static str,
}

const INFORMATION: [&str; 1] = ["gap"];

/// Boxes checked in parallel per chunk (as `ls` lists them).
const CHECK_CHUNK: usize = 64;

/// The file store's checker: every folder, lock, leftover and owner.
struct Checker<'a> {
    store: &'a Store,
    engine: Engine<'a>,
    fix: bool,
    stale: Duration,
    findings: Vec<Finding>,
    runuser_uid: Option<u32>,
    strict: bool,
    /// Where `--fix` put files aside (spool-relative).
    quarantined: BTreeSet<String>,
    /// `format=`: what every greeting should have.
    formats: Vec<String>,
}

fn age(path: &Path) -> Duration {
    std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default()
}

/// A `.txt` of the open folder read into `buf` the one safe way: regular,
/// no link followed, at most `MAX_TXT_BYTES`.
fn read_txt_at(dir: &std::os::fd::OwnedFd, name: &str, buf: &mut Vec<u8>) -> std::io::Result<()> {
    use std::io::Read;
    let (file, len) = fsutil::open_regular_at_len(dir, name)?;
    let mut b = fsutil::Bounded::with_len(file, len, fsutil::MAX_TXT_BYTES)?;
    buf.clear();
    b.read_to_end(buf)?;
    Ok(())
}

/// uid of a user name, from /etc/passwd.
fn uid_of(user: &str) -> Option<u32> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == user).then(|| f.nth(1)?.parse().ok())?
    })
}

impl<'a> Checker<'a> {
    /// Reports subdirectories of `dir` whose names are not UTF-8.
    fn unnamed(&mut self, dir: &Path, what: &str) {
        let names = FileStore::non_utf8_subdirs(dir).unwrap_or_default();
        self.unnamed_names(dir, &names, what);
    }

    /// Reports these subdirectories of `dir` (names not UTF-8, shown lossily).
    fn unnamed_names(&mut self, dir: &Path, names: &[String], what: &str) {
        for name in names {
            self.add(
                &dir.join(name),
                "name-not-utf8",
                format!("{what} directory whose name is not UTF-8 (shown with U+FFFD): vmtool cannot name it, so ls, boxes and changes skip it"),
                "rename it to a plain ASCII name (as configured in voicemail.conf), or remove it if Asterisk never used it".to_string(),
                false,
            );
        }
    }

    fn add(&mut self, path: &Path, kind: &'static str, problem: String, fix: String, fixed: bool) {
        let rel = self.store.spool().relative(path).display().to_string();
        let severity = if !self.strict && INFORMATION.contains(&kind) {
            "information"
        } else {
            "problem"
        };
        self.findings.push(Finding {
            path: rel,
            kind,
            problem,
            fix,
            fixed,
            severity,
        });
    }

    fn quarantine(
        &mut self,
        mb: &MailboxId,
        folder: &Folder,
        files: &[PathBuf],
    ) -> std::io::Result<PathBuf> {
        let qdir = self
            .store
            .spool()
            .tmp_dir(mb)
            .join("vmtool-quarantine")
            .join(folder.dir_name());
        let perms = Perms::observe(&self.store.spool().mailbox_dir(mb))?;
        fsutil::create_dir_like(&qdir, &perms)?;
        for f in files {
            if let Some(name) = f.file_name() {
                let mut to = qdir.join(name);
                let mut i = 1;
                while to.exists() {
                    to = qdir.join(format!("{}.{i}", name.to_string_lossy()));
                    i += 1;
                }
                std::fs::rename(f, &to)?;
            }
        }
        fsutil::sync_dir(&qdir)?;
        let rel = self.store.spool().relative(&qdir).display().to_string();
        self.quarantined.insert(rel);
        Ok(qdir)
    }

    fn check_owner(&mut self, path: &Path) {
        let Some(uid) = self.runuser_uid else { return };
        if let Ok(md) = std::fs::symlink_metadata(path) {
            let writable = md.mode() & 0o200 != 0;
            if md.uid() != uid || (md.is_dir() && !writable) {
                self.add(
                    path,
                    "owner",
                    format!(
                        "owned by uid {} mode {:o}; Asterisk runs as uid {uid} and cannot {} it (it then works unlocked, spec §6.5)",
                        md.uid(),
                        md.mode() & 0o7777,
                        if md.is_dir() { "create files in" } else { "replace" }
                    ),
                    format!("chown {uid} {}", path.display()),
                    false,
                );
            }
        }
    }

    /// Records of interrupted vmtool work in a box: listed, or with `--fix`
    /// what their recovery did (`recovered`, run by the caller).
    fn half_done(
        &mut self,
        mb: &MailboxId,
        pending: Vec<PathBuf>,
        recovered: Option<std::result::Result<Vec<String>, String>>,
        unfinished: &str,
        failed: &str,
        retry: &str,
    ) {
        if pending.is_empty() {
            return;
        }
        let tmp = self.store.spool().tmp_dir(mb);
        let Some(recovered) = recovered else {
            for p in pending {
                self.add(
                    &p,
                    "half-done",
                    unfinished.into(),
                    format!("vmtool check --fix {mb}"),
                    false,
                );
            }
            return;
        };
        match recovered {
            Ok(done) => {
                for d in done {
                    self.add(&tmp, "half-done", d, String::new(), true);
                }
            }
            Err(e) => self.add(
                &tmp,
                "half-done",
                format!("{failed}: {e}"),
                retry.into(),
                false,
            ),
        }
    }

    /// A checker with the same options and no findings yet.
    fn fork(&self) -> Checker<'a> {
        Checker {
            store: self.store,
            engine: Engine {
                spool: self.engine.spool,
                lock: self.engine.lock.clone(),
                conf: self.engine.conf,
                interrupted: self.engine.interrupted,
                recovered: Default::default(),
            },
            fix: self.fix,
            stale: self.stale,
            findings: Vec::new(),
            runuser_uid: self.runuser_uid,
            strict: self.strict,
            quarantined: Default::default(),
            formats: self.formats.clone(),
        }
    }

    /// One box of a spool check (`only`: one of its folders): the box is
    /// read once for its folders and its unnamed subdirectories.
    fn check_box(&mut self, mb: &MailboxId, only: Option<&Folder>) -> Result<()> {
        let store = self.store;
        let dir = || store.spool().mailbox_dir(mb);
        let listing = match (only, store) {
            (None, Store::File(fs)) => match fs.folders_and_unnamed(mb) {
                Ok((folders, bad)) => {
                    self.unnamed_names(&dir(), &bad, "a folder");
                    Some(Ok(folders))
                }
                Err(e) => Some(Err(e)),
            },
            (None, Store::Sql(_)) => {
                self.unnamed(&dir(), "a folder");
                None
            }
            (Some(_), _) => None,
        };
        self.check_mailbox(mb, only, listing)
    }

    /// One box: all its folders (`listing`: the box's folders as read
    /// already), or `only` this one.
    fn check_mailbox(
        &mut self,
        mb: &MailboxId,
        only: Option<&Folder>,
        listing: Option<Result<Vec<Folder>>>,
    ) -> Result<()> {
        let spool = self.store.spool().clone();
        let mdir = spool.mailbox_dir(mb);
        self.check_owner(&mdir);
        // Records, staged copies and leftovers all live in tmp/: when it is
        // empty (most boxes), it is read once instead of once per kind.
        let tmp_empty =
            std::fs::read_dir(spool.tmp_dir(mb)).map_or(true, |mut rd| rd.next().is_none());
        // Half-done changes (their intent records).
        let pending = if tmp_empty {
            Vec::new()
        } else {
            self.engine.pending(mb)
        };
        let recovered = (self.fix && !pending.is_empty())
            .then(|| self.engine.recover(mb).map_err(|e| e.to_string()));
        self.half_done(
            mb,
            pending,
            recovered,
            "an interrupted vmtool change (move/copy/delete) is not finished",
            "interrupted change could not be finished",
            "retry `vmtool check --fix` when the folder is not busy",
        );
        // Staged copies and torn records of vmtool runs that are gone: at once.
        let leftovers = if tmp_empty {
            Vec::new()
        } else if self.fix {
            self.engine.remove_leftovers(mb)
        } else {
            self.engine.leftovers(mb)
        };
        for p in leftovers {
            self.add(
                &p,
                "vmtool-leftover",
                "left by a vmtool run that was killed".into(),
                format!("vmtool check --fix {mb}"),
                self.fix,
            );
        }
        // Leftovers in tmp/ (crashed recordings).
        let tmp = (!tmp_empty).then(|| std::fs::read_dir(spool.tmp_dir(mb)));
        if let Some(Ok(rd)) = tmp {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let p = e.path();
                if name == ".vmtool-lock"
                    || name == "vmtool-quarantine"
                    || name.starts_with(".vmtool-")
                    || name.starts_with("..vmtool-intent-")
                {
                    continue;
                }
                if age(&p) > self.stale.max(Duration::from_secs(3600)) {
                    self.add(
                        &p,
                        "tmp-leftover",
                        format!(
                            "left in tmp/ for {} h (a crashed recording or copy)",
                            age(&p).as_secs() / 3600
                        ),
                        format!("inspect, then remove {}", p.display()),
                        false,
                    );
                }
            }
        }
        if only.is_none() {
            self.check_greetings(mb, tmp_empty);
        }
        let folders = match (only, listing) {
            (Some(f), _) => vec![f.clone()],
            (None, Some(listed)) => listed?,
            (None, None) => self.store.folders(mb)?,
        };
        let maxmsg = self.engine.maxmsg(mb);
        for folder in folders {
            self.check_folder(mb, &folder, maxmsg)?;
        }
        Ok(())
    }

    /// Greetings (spec §7.4): a set vmtool did not finish, formats missing
    /// against `format=`, empty or undecodable files, recordings abandoned
    /// for more than a day, an end date without a temp greeting.
    fn check_greetings(&mut self, mb: &MailboxId, tmp_empty: bool) {
        use super::greeting;
        let spool = self.store.spool().clone();
        let timeout = self.engine.lock.timeout;
        let pending = if tmp_empty {
            Vec::new()
        } else {
            greeting::pending(&spool, mb)
        };
        let recovered = (self.fix && !pending.is_empty())
            .then(|| greeting::recover(&spool, mb, timeout).map_err(|e| e.to_string()));
        self.half_done(
            mb,
            pending,
            recovered,
            "an interrupted vmtool greeting set is not finished (some formats may be old, some new)",
            "interrupted greeting set could not be finished",
            "retry `vmtool check --fix` later",
        );
        let Ok(gs) = greeting::list(&spool, mb, &self.formats) else {
            return;
        };
        let dir = spool.mailbox_dir(mb);
        for g in &gs {
            let base = g.kind.base();
            if !g.missing.is_empty() {
                self.add(
                    &dir.join(base),
                    "greeting-format-missing",
                    format!(
                        "the {} greeting has no file for format {} of format=: callers whose call uses it hear it transcoded, or not at all",
                        g.kind,
                        g.missing.join(", ")
                    ),
                    format!("vmtool greeting set {mb} {} FILE (writes every format)", g.kind),
                    false,
                );
            }
            for f in &g.files {
                if let Some(problem) = &f.problem {
                    self.add(
                        &dir.join(format!("{base}.{}", f.ext)),
                        "greeting-bad-audio",
                        format!("the {} greeting: {problem}", g.kind),
                        format!(
                            "vmtool greeting set {mb} {} FILE, or re-record it by phone",
                            g.kind
                        ),
                        false,
                    );
                }
            }
            for r in &g.recording {
                let p = dir.join(r);
                if age(&p) < Duration::from_secs(86_400) {
                    continue; // the owner may be recording it right now
                }
                let fixed = self.fix && std::fs::remove_file(&p).is_ok();
                self.add(
                    &p,
                    "greeting-tmp-leftover",
                    format!(
                        "a recording of the {} greeting abandoned {} days ago (Asterisk renames <name>.tmp.<ext> when the owner accepts it)",
                        g.kind,
                        age(&p).as_secs() / 86_400
                    ),
                    format!("vmtool check --fix {mb}"),
                    fixed,
                );
            }
        }
        let temp = gs
            .iter()
            .any(|g| g.kind == greeting::Kind::Temp && g.exists());
        if let (false, Some(p)) = (temp, greeting::until_file(&spool, mb)) {
            let fixed = self.fix && std::fs::remove_file(&p).is_ok();
            self.add(
                &p,
                "greeting-until-orphan",
                "an end date for a temp greeting that is no longer there (removed by phone?)"
                    .into(),
                format!("vmtool check --fix {mb}"),
                fixed,
            );
        }
    }

    fn check_folder(&mut self, mb: &MailboxId, folder: &Folder, maxmsg: u32) -> Result<()> {
        use rustix::fs::{AtFlags, Mode, OFlags, CWD};
        let spool = self.store.spool().clone();
        let dir = spool.folder_dir(mb, folder);
        self.check_owner(&dir);
        if let Folder::Other(name) = folder {
            let hint = match Folder::known(name) {
                Some(k) => format!("a case variant of {k}: Asterisk never looks in it"),
                None => "not an Asterisk folder: Asterisk ignores it".into(),
            };
            self.add(
                &dir,
                "foreign-folder",
                hint,
                "move its messages with vmtool mv, then remove it".into(),
                false,
            );
        }
        if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.file_type().is_symlink()) {
            self.add(
                &dir,
                "symlink",
                "the folder is a symbolic link: vmtool refuses to change messages through it"
                    .into(),
                "replace the link by a real directory owned by the Asterisk user".into(),
                false,
            );
        }
        // The folder opened once and read in one pass (names and types); its
        // files are looked up by name in it, and only audio files are
        // `stat`ed (their size): a `.txt` is opened and read anyway.
        let dfd = match rustix::fs::openat(
            CWD,
            &dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => Some(fd),
            Err(rustix::io::Errno::NOENT) => None,
            Err(e) => return Err(Error::io("read folder", dir, e.into())),
        };
        let scan = match &dfd {
            Some(fd) => scan::scan_folder_fd(fd).map_err(|e| Error::io("read folder", &dir, e))?,
            None => scan::FolderScan::default(),
        };
        // The findings come out in the order of the checks (every file
        // that is not regular, locks, empty audio, numbering and
        // metadata, ...), though one pass over the messages finds several.
        let mark = self.findings.len();
        for n in &scan.noise {
            // A `.lock` or `lock` that is not a regular file blocks every locker.
            if let Noise::Lock(name) = n {
                let p = dir.join(name);
                if let Ok(md) = std::fs::symlink_metadata(&p) {
                    if !md.file_type().is_file() {
                        self.add(
                            &p,
                            "special-file",
                            format!("a {} where Asterisk's folder lock belongs: no one (Asterisk included) can lock this folder, so new messages are lost after a 5-s wait", fsutil::kind_name(&md)),
                            format!("remove it now (rm {}); check --fix leaves it alone", p.display()),
                            false,
                        );
                    }
                }
            }
        }
        // The folder is read again for its locks only when it has any.
        let has_locks = scan
            .noise
            .iter()
            .any(|n| lock::lock_file_kind(n.name().trim_end_matches('/')).is_some());
        let locks = if has_locks {
            lock::inspect(&dir, self.stale).unwrap_or_default()
        } else {
            Vec::new()
        };
        for info in locks {
            if let Some(owner) = &info.dead_owner {
                // A killed vmtool's: broken at once (race-free), whatever its age.
                let fixed = self.fix
                    && match info.kind {
                        lock::LockFileKind::Lockfile => lock::break_dead_lock(&dir)
                            .is_ok_and(|o| o == lock::BreakOutcome::Broken),
                        _ => lock::break_stale(&dir, Duration::MAX).is_ok() && !info.path.exists(),
                    };
                self.add(
                    &info.path,
                    "stale-lock",
                    format!("left by {owner}, which is gone: deposits into this folder are lost after a 5-s wait"),
                    format!("vmtool check --fix {}/{}/{folder}", mb.context, mb.mailbox()),
                    fixed,
                );
            } else if info.stale {
                self.add(
                    &info.path,
                    "stale-lock",
                    format!("lock left for {} s (a crash): deposits into this folder are lost after a 5-s wait", info.age.as_secs()),
                    format!("vmtool unlock --stale {}/{}/{folder}", mb.context, mb.mailbox()),
                    false,
                );
            }
        }
        let lock_findings = self.findings.split_off(mark);
        // Message files that are not regular files (or too large): reported
        // one by one, and left out of every read and of --fix below.
        let mut irregular = Vec::new();
        let mut empty_audio = Vec::new();
        let mut numbering = Vec::new();
        let mut expected = 0u16;
        let mut phantoms_orphans = Vec::new();
        let mut name = String::with_capacity(16);
        let mut buf = Vec::with_capacity(1024);
        for m in &scan.messages {
            let file_name = |name: &mut String, ext: &str| {
                name.clear();
                name.push_str("msg");
                name.push_str(std::str::from_utf8(&m.num.digits()).unwrap_or_default());
                name.push('.');
                name.push_str(ext);
            };
            let mut foreign = false;
            for ext in &m.audio {
                file_name(&mut name, ext);
                let st = dfd.as_ref().and_then(|d| {
                    rustix::fs::statat(d, name.as_str(), AtFlags::SYMLINK_NOFOLLOW).ok()
                });
                let Some(st) = st else { continue };
                let (kind, len) = (fsutil::kind_of_mode(st.st_mode), st.st_size as u64);
                let mark = self.findings.len();
                if self.not_regular(&dir.join(&name), kind, len) {
                    foreign = true;
                    irregular.extend(self.findings.drain(mark..));
                } else if m.txt && kind.is_none() && len == 0 {
                    // A 0-byte audio file: counted and listed, but nothing to
                    // play (a recording that failed, or a full disk).
                    self.add(
                        &dir.join(&name),
                        "empty-audio",
                        "0-byte audio file: the message is counted and listed, but this format plays nothing".into(),
                        format!(
                            "restore the file from a backup or an archive, or remove the message (vmtool rm {}/{}/{folder}/{})",
                            mb.context,
                            mb.mailbox(),
                            m.num.get()
                        ),
                        false,
                    );
                    empty_audio.extend(self.findings.drain(mark..));
                }
            }
            if m.txt {
                file_name(&mut name, "txt");
                let base = dir.join(&name);
                let mark = self.findings.len();
                if m.num.get() != expected {
                    self.add(
                        &base,
                        "gap",
                        format!("numbering gap before {} (expected msg{expected:04}); Asterisk closes it the next time the folder is opened", m.num.stem()),
                        format!("none needed (or vmtool resequence {}/{}/{folder})", mb.context, mb.mailbox()),
                        false,
                    );
                    expected = m.num.get();
                }
                expected += 1;
                numbering.extend(self.findings.drain(mark..));
                // Not a regular file by its directory entry: never opened.
                let irr = scan
                    .irregular
                    .iter()
                    .find(|i| i.num == m.num && i.name == name);
                let read = match (irr, &dfd) {
                    (Some(i), _) => Err(fsutil::not_regular_err(i.kind)),
                    (None, Some(d)) => read_txt_at(d, &name, &mut buf),
                    (None, None) => Err(std::io::ErrorKind::NotFound.into()),
                };
                match read {
                    // Over the limit of any message file: only reported so.
                    Err(e)
                        if fsutil::too_large(&e)
                            .is_some_and(|t| t.size > fsutil::MAX_AUDIO_BYTES) =>
                    {
                        let size = fsutil::too_large(&e).map_or(0, |t| t.size);
                        self.not_regular(&base, None, size);
                        foreign = true;
                        irregular.extend(self.findings.drain(mark..));
                    }
                    Err(e) if fsutil::not_regular(&e).is_some() => {
                        let kind = fsutil::not_regular(&e).map(|n| n.kind);
                        self.not_regular(&base, kind, 0);
                        foreign = true;
                        irregular.extend(self.findings.drain(mark..));
                    }
                    Ok(()) => {
                        match Listed::parse(&buf) {
                            Ok(meta) => {
                                for p in meta.problems() {
                                    self.add(
                                        &base,
                                        "metadata",
                                        p,
                                        "restore the line from a backup or the archive".into(),
                                        false,
                                    );
                                }
                            }
                            Err(e) => self.add(
                                &base,
                                "metadata",
                                e.to_string(),
                                "restore the file from a backup".into(),
                                false,
                            ),
                        }
                        numbering.extend(self.findings.drain(mark..));
                    }
                    Err(e) => {
                        self.add(
                            &base,
                            "metadata",
                            format!("cannot read: {e}"),
                            "check permissions".into(),
                            false,
                        );
                        numbering.extend(self.findings.drain(mark..));
                    }
                }
            }
            match m.state() {
                MsgState::Phantom | MsgState::Orphan => phantoms_orphans.push((m.clone(), foreign)),
                MsgState::Complete => {}
            }
        }
        self.findings.extend(irregular);
        self.findings.extend(lock_findings);
        self.findings.extend(empty_audio);
        self.findings.extend(numbering);
        for (m, foreign) in phantoms_orphans {
            let mut files: Vec<PathBuf> = m
                .audio
                .iter()
                .map(|e| spool.msg_file(mb, folder, m.num, e))
                .collect();
            if m.txt {
                files.push(spool.txt_path(mb, folder, m.num));
            }
            let (kind, what) = match m.state() {
                MsgState::Phantom => ("phantom", "a .txt without audio: counted as a message but cannot be played; it stops Asterisk's compaction"),
                _ => ("orphan", "audio without .txt: invisible, and adopted by the next message given this number"),
            };
            let mut fixed = false;
            // vmtool moves only files Asterisk could have made: a special
            // file or a link is left where it is, for the admin.
            if self.fix && !foreign && files.iter().all(|f| age(f) > Duration::from_secs(5)) {
                // Seen again under the folder lock before anything moves.
                let lock = FolderLock::acquire(&dir, &self.engine.lock)
                    .map_err(crate::ops::OpError::from)?;
                let again = crate::scan::scan_folder(&dir)
                    .map(|s| s.messages.iter().any(|x| x == &m))
                    .unwrap_or(false);
                if again {
                    fixed = self.quarantine(mb, folder, &files).is_ok();
                }
                drop(lock);
            }
            self.add(
                &spool.msg_file(mb, folder, m.num, "*"),
                kind,
                what.into(),
                if fixed {
                    format!(
                        "quarantined in {}/{}/tmp/vmtool-quarantine/{folder}",
                        mb.context,
                        mb.mailbox()
                    )
                } else if foreign {
                    "not a regular file among its files: check --fix leaves it for you (see the finding above)".into()
                } else {
                    format!(
                        "vmtool check --fix {}/{}/{folder}",
                        mb.context,
                        mb.mailbox()
                    )
                },
                fixed,
            );
        }
        for n in &scan.noise {
            let p = dir.join(n.name());
            let (kind, problem, fix): (&'static str, String, String) = match n {
                Noise::Lock(_) => continue,
                Noise::Backup(name) => (
                    "backup",
                    format!("{name}: left by a prepend-forward that did not finish"),
                    "vmtool check --fix".into(),
                ),
                Noise::Prepend(name) => (
                    "prepend",
                    format!("{name}: an abandoned prepend recording"),
                    "inspect, then remove it".into(),
                ),
                Noise::Stray(name, why) => (
                    "stray",
                    format!("{name}: {why}"),
                    "move it out of the folder".into(),
                ),
                Noise::Foreign(name) => (
                    "foreign",
                    format!("{name}: not an Asterisk file"),
                    "move it out of the folder".into(),
                ),
            };
            let mut fixed = false;
            let regular = || std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_file());
            if self.fix && matches!(n, Noise::Backup(_)) && regular() && age(&p) > self.stale {
                fixed = self.fix_backup(mb, folder, &p).unwrap_or(false);
            }
            self.add(&p, kind, problem, fix, fixed);
        }
        if folder == &Folder::Inbox && scan.counts.capacity >= maxmsg {
            self.add(
                &dir,
                "full",
                format!("{} messages for maxmsg={maxmsg}: Asterisk refuses new messages (callers hear \"mailbox full\")", scan.counts.capacity),
                format!("vmtool read or vmtool archive {}/{}", mb.context, mb.mailbox()),
                false,
            );
        }
        Ok(())
    }

    /// Reports a message file that is not a regular file: a special file
    /// (FIFO, socket, device), a link leaving the spool, or a link inside it;
    /// or a regular file too large for any message. `kind`: what it is if
    /// not regular ([`fsutil::kind_of_mode`]), `len`: its size.
    fn not_regular(&mut self, p: &Path, kind: Option<&'static str>, len: u64) -> bool {
        let shown = p.display();
        let Some(kind) = kind else {
            if len <= fsutil::MAX_AUDIO_BYTES {
                return false;
            }
            self.add(
                p,
                "too-large",
                format!("{len} bytes, over vmtool's limit of {} for a message file: not read, converted or archived", fsutil::MAX_AUDIO_BYTES),
                format!("no voicemail is this large (a sparse or planted file?): inspect it, then remove it (rm {shown}); check --fix leaves it alone"),
                false,
            );
            return true;
        };
        if kind != "symbolic link" {
            self.add(
                p,
                "special-file",
                format!("a {kind} where a message file belongs: no reader opens it, the message is skipped by ls, show, convert and archive"),
                format!("Asterisk never makes one: find who created it, then remove it (rm {shown}); check --fix leaves it alone"),
                false,
            );
            return true;
        }
        let root = std::fs::canonicalize(self.store.spool().root()).ok();
        match (std::fs::canonicalize(p), root) {
            (Ok(to), Some(root)) if to.starts_with(&root) => self.add(
                p,
                "symlink",
                format!("a message file that is a symbolic link (to {} inside the spool): vmtool neither follows it nor changes this message", to.display()),
                format!("replace the link by the file itself (cp --remove-destination {} {shown}); check --fix leaves it alone", to.display()),
                false,
            ),
            (Ok(to), _) => self.add(
                p,
                "symlink-outside",
                format!("a symbolic link leaving the spool (to {}): vmtool never follows it; a root job reading through it would read or copy that file", to.display()),
                format!("remove the link (rm {shown}); if the target is really this message's file, copy it in instead; check --fix leaves it alone"),
                false,
            ),
            (Err(e), _) => self.add(
                p,
                "symlink",
                format!("a symbolic link that leads nowhere ({e}: a loop or a missing target): vmtool never follows it"),
                format!("remove the link (rm {shown}); check --fix leaves it alone"),
                false,
            ),
        }
        true
    }

    /// `msgNNNN-bak.*`: quarantined when `msgNNNN.*` exists, else renamed back
    /// (what the interrupted forward would have done).
    fn fix_backup(&mut self, mb: &MailboxId, folder: &Folder, p: &Path) -> std::io::Result<bool> {
        let dir = self.store.spool().folder_dir(mb, folder);
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some((stem, ext)) = name.split_once("-bak.") else {
            return Ok(false);
        };
        let _lock = FolderLock::acquire(&dir, &self.engine.lock).map_err(std::io::Error::other)?;
        let main = dir.join(format!("{stem}.{ext}"));
        if main.exists() {
            self.quarantine(mb, folder, &[p.to_path_buf()])?;
        } else {
            std::fs::rename(p, &main)?;
            fsutil::sync_dir(&dir)?;
        }
        Ok(true)
    }
}

/// What a check covers.
pub enum Part {
    Spool,
    Context(Context),
    Mailbox(MailboxId),
    Folder(MailboxId, Folder),
}

/// What the check asks of its caller, only when it needs it (a table is
/// checked whole: its check never asks).
pub trait CheckHost {
    /// The parts to check (reported errors are the caller's).
    fn parts(&mut self) -> Vec<Part>;
    fn lock(&mut self) -> Result<LockOptions>;
    /// A part that could not be checked; the check goes on.
    fn error(&mut self, e: &Error);
}

pub struct CheckOptions<'a> {
    pub conf: Option<&'a VoicemailConf>,
    /// `runuser` of asterisk.conf: files it cannot write are reported.
    pub runuser: Option<&'a str>,
    pub fix: bool,
    /// Numbering gaps count as problems (else information: Asterisk closes them).
    pub strict: bool,
    pub stale: Duration,
    pub interrupted: &'a AtomicBool,
}

/// One finding, as its store words it.
pub enum Item {
    File(Finding),
    Row(sql::check::Finding),
}

impl Item {
    pub fn fixed(&self) -> bool {
        match self {
            Item::File(f) => f.fixed,
            Item::Row(f) => f.fixed,
        }
    }

    /// A problem left as it was (information does not count; see `--strict`).
    pub fn open(&self) -> bool {
        match self {
            Item::File(f) => !f.fixed && f.severity == "problem",
            Item::Row(f) => !f.fixed,
        }
    }

    /// The line of the table format (untrusted parts escaped).
    pub fn line(&self) -> String {
        use crate::render::sanitize;
        match self {
            Item::File(f) => {
                let tail = if f.fixed {
                    "fixed".to_string()
                } else {
                    format!("fix: {}", f.fix)
                };
                let info = if f.severity == "problem" {
                    ""
                } else {
                    " (information)"
                };
                format!(
                    "{}: {} [{}]{info} — {}",
                    sanitize(&f.path),
                    sanitize(&f.problem),
                    f.kind,
                    sanitize(&tail)
                )
            }
            Item::Row(f) => {
                let tail = if f.fixed { " — fixed" } else { "" };
                format!("{}: {}{tail}", f.at, f.problem)
            }
        }
    }

    /// The CSV columns: path, kind, problem, fix, fixed, severity.
    pub fn fields(&self) -> [String; 6] {
        match self {
            Item::File(f) => [
                f.path.clone(),
                f.kind.to_string(),
                f.problem.clone(),
                f.fix.clone(),
                f.fixed.to_string(),
                f.severity.to_string(),
            ],
            Item::Row(f) => [
                f.at.clone(),
                "row".into(),
                f.problem.clone(),
                String::new(),
                f.fixed.to_string(),
                "problem".into(),
            ],
        }
    }

    pub fn to_json(&self) -> serde_json::Result<String> {
        match self {
            Item::File(f) => serde_json::to_string(f),
            Item::Row(f) => serde_json::to_string(f),
        }
    }
}

/// What a check found.
pub struct Report {
    pub items: Vec<Item>,
    /// Said when nothing was found (unless quiet).
    pub clean: Option<String>,
    /// The closing line for standard error: problems and information by
    /// kind, what was fixed, where `--fix` put files aside.
    pub summary: Option<String>,
}

impl Store {
    pub fn check(&self, opts: &CheckOptions, host: &mut dyn CheckHost) -> Result<Report> {
        match self {
            Store::Sql(s) => {
                // Rows are only reported; --fix breaks this server's stale spool locks.
                let mut found = sql::check::check(s, opts.conf)?;
                found.extend(sql::check::spool_locks(s, opts.stale, opts.fix));
                Ok(Report {
                    clean: found
                        .is_empty()
                        .then(|| format!("no problem found in {}", s.describe())),
                    items: found.into_iter().map(Item::Row).collect(),
                    summary: None,
                })
            }
            Store::File(_) => {
                let (findings, quarantined) = self.check_files(opts, host)?;
                Ok(Report {
                    summary: Some(summary(&findings, &quarantined)),
                    items: findings.into_iter().map(Item::File).collect(),
                    clean: None,
                })
            }
        }
    }

    fn check_files(
        &self,
        opts: &CheckOptions,
        host: &mut dyn CheckHost,
    ) -> Result<(Vec<Finding>, BTreeSet<String>)> {
        let engine = Engine {
            spool: self.spool(),
            lock: host.lock()?,
            conf: opts.conf,
            interrupted: opts.interrupted,
            recovered: Default::default(),
        };
        let mut ck = Checker {
            store: self,
            engine,
            fix: opts.fix,
            stale: opts.stale,
            findings: Vec::new(),
            runuser_uid: opts.runuser.and_then(uid_of),
            strict: opts.strict,
            quarantined: Default::default(),
            formats: opts
                .conf
                .map(|c| c.general.format.clone())
                .unwrap_or_default(),
        };
        for t in host.parts() {
            let (contexts, boxes): (Vec<Context>, Vec<(MailboxId, Option<Folder>)>) = match &t {
                Part::Spool => (self.contexts()?, Vec::new()),
                Part::Context(c) => (vec![c.clone()], Vec::new()),
                Part::Mailbox(mb) => (Vec::new(), vec![(mb.clone(), None)]),
                Part::Folder(mb, f) => (Vec::new(), vec![(mb.clone(), Some(f.clone()))]),
            };
            let mut all = boxes;
            // Directories whose names are not UTF-8: listings cannot show them.
            if matches!(t, Part::Spool) {
                ck.unnamed(self.spool().root(), "a context");
            }
            for ctx in &contexts {
                ck.unnamed(&self.spool().context_dir(ctx), "a mailbox");
            }
            for ctx in contexts {
                let mbs = self.mailboxes(&ctx)?;
                // Case variants: find_user() matches case-insensitively, so `Bob`
                // dialled as `bob` gets a second directory (spec §1.7).
                let mut seen: BTreeMap<String, String> = BTreeMap::new();
                for mb in &mbs {
                    if let Some(prev) =
                        seen.insert(mb.mailbox().to_lowercase(), mb.mailbox().to_string())
                    {
                        let d = self.spool().mailbox_dir(mb);
                        ck.add(
                            &d,
                            "case-variant",
                            format!("{} and {prev} differ only in case: Asterisk uses one or the other depending on how the box was dialled", mb.mailbox()),
                            "merge them with vmtool mv, then remove the empty one".to_string(),
                            false,
                        );
                    }
                }
                all.extend(mbs.into_iter().map(|m| (m, None)));
            }
            if ck.fix {
                // Repairs move files and take locks: one box at a time.
                for (mb, f) in &all {
                    if let Err(e) = ck.check_box(mb, f.as_ref()) {
                        host.error(&e);
                    }
                }
                continue;
            }
            // Only reading: boxes checked in parallel chunks (as `ls` lists
            // them), findings and errors kept in the spool's order.
            use rayon::prelude::*;
            for chunk in all.chunks(CHECK_CHUNK) {
                let parts: Vec<(Vec<Finding>, Option<Error>)> = chunk
                    .par_iter()
                    .map(|(mb, f)| {
                        let mut c = ck.fork();
                        let err = c.check_box(mb, f.as_ref()).err();
                        (c.findings, err)
                    })
                    .collect();
                for (found, err) in parts {
                    ck.findings.extend(found);
                    if let Some(e) = err {
                        host.error(&e);
                    }
                }
            }
        }
        Ok((ck.findings, ck.quarantined))
    }
}

/// The closing line: problems and information by kind, what was fixed, and
/// where `--fix` put files aside.
fn summary(findings: &[Finding], quarantined: &BTreeSet<String>) -> String {
    let by_kind = |severity: &str| {
        let mut n: BTreeMap<&str, usize> = BTreeMap::new();
        for f in findings.iter().filter(|f| f.severity == severity) {
            *n.entry(f.kind).or_default() += 1;
        }
        let total: usize = n.values().sum();
        let list = n
            .iter()
            .map(|(k, c)| format!("{c} {k}"))
            .collect::<Vec<_>>()
            .join(", ");
        (total, list)
    };
    let (problems, kinds) = by_kind("problem");
    let fixed = findings.iter().filter(|f| f.fixed).count();
    let mut s = format!("vmtool: {problems} problem(s) found, {fixed} fixed");
    if problems > 0 {
        s.push_str(&format!(" ({kinds})"));
    }
    let (infos, kinds) = by_kind("information");
    if infos > 0 {
        s.push_str(&format!(
            "; {infos} for information ({kinds}; Asterisk closes gaps itself; --strict counts them)"
        ));
    }
    if !quarantined.is_empty() {
        s.push_str(&format!(
            "; files put aside in {}",
            quarantined.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    s
}
