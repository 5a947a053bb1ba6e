//! Folder locks the way Asterisk takes them (spec §6), and vmtool's own mailbox lock.
//!
//! This module owns every lock file vmtool creates or removes, and nothing else:
//!
//! * `<folder>/.lock` and its helper `<folder>/.lock-XXXXXXXX` (`lockmode = lockfile`, §6.2);
//! * `<folder>/lock` (`lockmode = flock`, §6.3);
//! * `<folder>/.lock.stale-*`, the name a stale `.lock` has for a moment while
//!   [`break_stale`] removes it (§6.6);
//! * `<mailbox>/tmp/.vmtool-lock`, a vmtool-only lock ([`MailboxGuard`]);
//! * a `flock()` on the folder directory itself, held for a moment by a vmtool
//!   breaking that folder's stale `.lock`, so that breakers take turns.
//!
//! Differences from Asterisk, all on the safe side (§6.8): vmtool sleeps 5–20 ms
//! between attempts instead of spinning, writes its owner into the helper, keeps its
//! helper until release (it pins the
//! inode, so the release can check the `.lock` is still its own), never removes a
//! `.lock` it did not create, and in flock mode re-checks after locking that the
//! file it locked is still `<folder>/lock`.
//!
//! Locks are not reentrant: acquiring a folder that this process already holds waits
//! for the timeout and fails with [`LockError::Busy`]. Hold them for milliseconds:
//! after 4–5 s Asterisk gives up and, in the deposit path, discards the message.
//!
//! A process killed while holding a lockfile-mode lock (SIGKILL, abort, a signal the
//! CLI does not catch, power loss) leaves `.lock` behind for ever, since Asterisk has no
//! staleness test: every deposit into that folder is then lost. vmtool therefore writes
//! its [`Owner`] (pid, boot id, process start time) into its helper before linking it, so
//! its `.lock` says whose it is (Asterisk's are empty): a `.lock` or helper whose vmtool
//! is gone is broken at once by the next acquire in that folder ([`break_dead_lock`]),
//! by [`break_stale`] and reported by [`inspect`], whatever its age; Asterisk's own keep
//! the age rule. In flock mode the kernel drops the lock with the process.

use std::collections::hash_map::RandomState;
use std::fs::{self, File, Metadata, OpenOptions, TryLockError};
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Lock file of `lockmode = lockfile`.
pub const LOCKFILE_NAME: &str = ".lock";
/// Prefix of the helper files of `lockmode = lockfile` (8 hex digits follow).
pub const HELPER_PREFIX: &str = ".lock-";
/// Lock file of `lockmode = flock`.
pub const FLOCK_NAME: &str = "lock";
/// Prefix of a stale `.lock` being removed by [`break_stale`].
pub const STALE_PREFIX: &str = ".lock.stale-";
/// vmtool's mailbox lock, inside `<mailbox>/tmp/`.
pub const MAILBOX_LOCK_NAME: &str = ".vmtool-lock";
/// How long Asterisk waits for a folder lock, roughly.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Suggested age after which a `.lock` is stale (spec §6.6).
pub const DEFAULT_STALE_THRESHOLD: Duration = Duration::from_secs(60);

pub use crate::config::LockMode;

impl LockMode {
    /// The name of the file that marks a held lock in this mode.
    pub fn file_name(self) -> &'static str {
        match self {
            LockMode::Lockfile => LOCKFILE_NAME,
            LockMode::Flock => FLOCK_NAME,
        }
    }
}

/// How to lock a folder.
#[derive(Debug, Clone)]
pub struct LockOptions {
    pub mode: LockMode,
    /// How long to wait for a busy lock before giving up.
    pub timeout: Duration,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            mode: LockMode::default(),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Why a lock was not taken, or was not ours any more at release.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The folder lock stayed taken until the timeout.
    #[error(
        "cannot lock {}: held by another process for {:.1} s (Asterisk busy, or a stale lock: \
         see `vmtool check`) — nothing was changed",
        dir.display(),
        waited.as_secs_f64()
    )]
    Busy { dir: PathBuf, waited: Duration },
    /// Another vmtool holds the mailbox ([`MailboxGuard`]); Asterisk is not involved.
    #[error(
        "cannot lock mailbox {}: another vmtool has been working on it for {:.1} s — nothing \
         was changed",
        dir.display(),
        waited.as_secs_f64()
    )]
    InUse { dir: PathBuf, waited: Duration },
    #[error("cannot {action} {}: {source}{}", dir.display(), hint(source))]
    Io {
        dir: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    /// Our lock was removed or replaced while we held it (spec §6.5: an Asterisk that
    /// could not lock works unlocked and unlocks by deleting `.lock`).
    #[error(
        "the lock of {} was removed or replaced by someone else while vmtool held it: the \
         change may have raced with Asterisk — run `vmtool check`",
        dir.display()
    )]
    Broken { dir: PathBuf },
}

impl LockError {
    /// Busy folder or mailbox: retrying later may work.
    pub fn is_busy(&self) -> bool {
        matches!(self, LockError::Busy { .. } | LockError::InUse { .. })
    }

    /// The directory the error is about.
    pub fn dir(&self) -> &Path {
        match self {
            LockError::Busy { dir, .. }
            | LockError::InUse { dir, .. }
            | LockError::Io { dir, .. }
            | LockError::Broken { dir } => dir,
        }
    }
}

fn hint(e: &io::Error) -> &'static str {
    if e.kind() == io::ErrorKind::PermissionDenied {
        " (run vmtool as Asterisk's user, spec §1.6)"
    } else {
        ""
    }
}

fn io_err<'a>(dir: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> LockError + 'a {
    move |source| LockError::Io {
        dir: dir.to_path_buf(),
        action,
        source,
    }
}

fn is_not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

/// Which inode a name points to. The fd (flock) or the helper (lockfile) of a held
/// lock keeps its inode allocated, so the number cannot be reused meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(m: &Metadata) -> Self {
        FileId {
            dev: m.dev(),
            ino: m.ino(),
        }
    }
}

/// Inode plus mtime: a stale `.lock` judged earlier may be gone and its inode number
/// reused by a fresh lock (ext4 reuses them at once); the mtime tells them apart,
/// since nobody writes to a lock file and `rename()`/`link()` leave mtime alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    id: FileId,
    mtime: (i64, i64),
}

impl Stamp {
    fn of(m: &Metadata) -> Self {
        Stamp {
            id: FileId::of(m),
            mtime: (m.mtime(), m.mtime_nsec()),
        }
    }
}

fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    if let Ok(d) = SystemTime::now().duration_since(UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    h.finish()
}

/// A random pause in `lo_ms..=hi_ms`: waiters of several vmtools do not retry in step.
pub(crate) fn jitter(lo_ms: u64, hi_ms: u64) -> Duration {
    let span = (hi_ms - lo_ms) * 1000 + 1;
    Duration::from_micros(lo_ms * 1000 + random_u64() % span)
}

/// Sleeps before the next attempt, or returns how long we waited if time is up.
fn wait_or_give_up(start: Instant, timeout: Duration, pause: Duration) -> Result<(), Duration> {
    let waited = start.elapsed();
    if waited >= timeout {
        return Err(waited);
    }
    // The last attempt happens at the deadline, not a pause after it.
    thread::sleep(pause.min(timeout - waited));
    Ok(())
}

/// Time since the inode's ctime (0 if in the future or absurd: never "stale" by accident).
fn file_age(m: &Metadata, now: SystemTime) -> Duration {
    let nanos = m.ctime_nsec().clamp(0, 999_999_999) as u32;
    let since_epoch = Duration::new(m.ctime().max(0).unsigned_abs(), nanos);
    UNIX_EPOCH
        .checked_add(since_epoch)
        .and_then(|ctime| now.duration_since(ctime).ok())
        .unwrap_or(Duration::ZERO)
}

// ---------------------------------------------------------------------------------------
// Owners of vmtool's locks

/// First word of the name tag vmtool writes into its lock helpers.
const OWNER_TAG: &str = "vmtool";

/// Who took a lock: written by vmtool into its helper before linking it as `.lock`, so
/// `.lock` carries it too (Asterisk's helpers and locks are empty, spec §6.2). With the
/// boot id and the process start time, a pid reused by another process or a lock that
/// survived a power loss is never taken for a live owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    pub boot_id: String,
    /// Start time of the process, clock ticks after boot (`/proc/<pid>/stat` field 22).
    pub start: u64,
}

impl Owner {
    /// This process (`None` without `/proc`: its locks are then plain, like Asterisk's).
    pub fn me() -> Option<&'static Owner> {
        static ME: std::sync::OnceLock<Option<Owner>> = std::sync::OnceLock::new();
        ME.get_or_init(|| {
            let pid = std::process::id();
            Some(Owner {
                pid,
                boot_id: boot_id()?.to_string(),
                start: process_state(pid)?.1,
            })
        })
        .as_ref()
    }

    /// The text written into the helper.
    pub fn tag(&self) -> String {
        format!(
            "{OWNER_TAG} pid={} boot={} start={}\n",
            self.pid, self.boot_id, self.start
        )
    }

    /// Parses [`Owner::tag`]; `None` for anything else (Asterisk's empty files).
    pub fn parse(data: &[u8]) -> Option<Owner> {
        let text = std::str::from_utf8(data).ok()?;
        let mut words = text.split_whitespace();
        if words.next()? != OWNER_TAG {
            return None;
        }
        let (mut pid, mut boot, mut start) = (None, None, None);
        for w in words {
            match w.split_once('=') {
                Some(("pid", v)) => pid = v.parse().ok(),
                Some(("boot", v)) => boot = Some(v.to_string()),
                Some(("start", v)) => start = v.parse().ok(),
                _ => {}
            }
        }
        Some(Owner {
            pid: pid?,
            boot_id: boot?,
            start: start?,
        })
    }

    /// Gone for sure: started in another boot, or no process with this pid and start
    /// time runs now (a zombie counts as gone). When in doubt (no `/proc`), alive.
    pub fn is_dead(&self) -> bool {
        let Some(boot) = boot_id() else {
            return false;
        };
        if boot != self.boot_id {
            return true;
        }
        process_gone(self.pid, self.start)
    }
}

/// No process with this pid and start time runs on this boot (a zombie counts as
/// gone). `false` when `/proc` cannot tell.
pub fn process_gone(pid: u32, start: u64) -> bool {
    match process_state(pid) {
        Some((state, now)) => now != start || matches!(state, 'Z' | 'X'),
        None => boot_id().is_some() && !Path::new(&format!("/proc/{pid}")).exists(),
    }
}

/// Start time of this process (for names that must say who made them).
pub fn my_start_time() -> Option<u64> {
    Owner::me().map(|o| o.start)
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "vmtool pid {}", self.pid)
    }
}

fn boot_id() -> Option<&'static str> {
    static ID: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    })
    .as_deref()
}

/// State letter and start time of a process, from `/proc/<pid>/stat`.
fn process_state(pid: u32) -> Option<(char, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// The owner tag of a lock file or helper, with the inode it was read from; `None`
/// for an empty (Asterisk) file, a non-regular file or anything unreadable.
pub fn read_owner(path: &Path) -> Option<(Owner, Stamp)> {
    use std::io::Read;
    let (file, meta) = crate::fsutil::open_regular(path).ok()?;
    let mut buf = Vec::with_capacity(256);
    file.take(256).read_to_end(&mut buf).ok()?;
    Some((Owner::parse(&buf)?, Stamp::of(&meta)))
}

/// The owner of `path` if it is a vmtool that is gone.
fn dead_owner(path: &Path) -> Option<(Owner, Stamp)> {
    read_owner(path).filter(|(o, _)| o.is_dead())
}

/// Breaks `dir/.lock` if a vmtool that is gone took it, whatever its age (race-free:
/// only the inode whose tag was read is removed), and removes that vmtool's helper.
/// `NotStale` when `.lock` is anyone else's or absent.
pub fn break_dead_lock(dir: &Path) -> Result<BreakOutcome, LockError> {
    let Some((_, stamp)) = dead_owner(&dir.join(LOCKFILE_NAME)) else {
        return Ok(BreakOutcome::NotStale);
    };
    let outcome = break_lock_if(dir, stamp, || {}, || {})?;
    if outcome == BreakOutcome::Broken {
        remove_stale_leftovers(dir, Duration::MAX, Some(stamp))?;
    }
    Ok(outcome)
}

// ---------------------------------------------------------------------------------------
// Folder locks

/// RAII guard of one folder directory, locked Asterisk's way.
///
/// Dropping it releases the lock (best effort, errors are lost); [`FolderLock::release`]
/// releases and reports a lock that was broken while held. Errors and panics unwind
/// through the drop, so every path releases — except a killed process (module doc).
#[derive(Debug)]
pub struct FolderLock {
    dir: PathBuf,
    since: Instant,
    held: Option<Held>,
}

#[derive(Debug)]
enum Held {
    Lockfile { helper: PathBuf, stamp: Stamp },
    Flock { file: File, id: FileId },
}

impl FolderLock {
    /// Locks `dir` (a folder such as `…/1234/INBOX`), waiting up to `opts.timeout`.
    pub fn acquire(dir: &Path, opts: &LockOptions) -> Result<FolderLock, LockError> {
        let held = match opts.mode {
            LockMode::Lockfile => lockfile_acquire(dir, opts.timeout)?,
            LockMode::Flock => flock_acquire(dir, opts.timeout)?.0,
        };
        Ok(FolderLock {
            dir: dir.to_path_buf(),
            since: Instant::now(),
            held: Some(held),
        })
    }

    /// Releases the lock. [`LockError::Broken`] means somebody removed or replaced it
    /// while we held it: what we did under it may have raced with Asterisk.
    pub fn release(mut self) -> Result<(), LockError> {
        match self.held.take() {
            Some(held) => {
                log_hold(&self.dir, self.since);
                release_held(&self.dir, held)
            }
            None => Ok(()),
        }
    }

    /// One attempt, no waiting: `Ok(None)` if the folder is busy. A lock left by a
    /// killed vmtool is broken first.
    pub fn try_acquire(dir: &Path, mode: LockMode) -> Result<Option<FolderLock>, LockError> {
        let opts = LockOptions {
            mode,
            timeout: Duration::ZERO,
        };
        match FolderLock::acquire(dir, &opts) {
            Ok(l) => Ok(Some(l)),
            Err(LockError::Busy { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn held_for(&self) -> Duration {
        self.since.elapsed()
    }

    pub fn mode(&self) -> LockMode {
        match self.held {
            Some(Held::Flock { .. }) => LockMode::Flock,
            _ => LockMode::Lockfile,
        }
    }
}

impl Drop for FolderLock {
    fn drop(&mut self) {
        if let Some(held) = self.held.take() {
            log_hold(&self.dir, self.since);
            let _ = release_held(&self.dir, held);
        }
    }
}

/// `VMTOOL_TEST_TRACE=<file>`: one line per rename and unlink (pid, what,
/// paths) and per recovery, appended with `O_APPEND`, for the soak test's
/// autopsies. Never set in production.
pub(crate) fn test_trace(line: std::fmt::Arguments) {
    if let Some(path) = test_trace_file() {
        use std::io::Write as _;
        let line = format!("{} {line}\n", std::process::id());
        if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

fn test_trace_file() -> Option<&'static PathBuf> {
    static LOG: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    LOG.get_or_init(|| std::env::var_os("VMTOOL_TEST_TRACE").map(PathBuf::from))
        .as_ref()
}

/// With tracing on, the `msg_id` a `.txt` names (else empty): traces then
/// follow a message by identity through renames, copies and recoveries.
pub(crate) fn test_trace_id(path: &Path) -> String {
    if test_trace_file().is_none() || path.extension().is_none_or(|e| e != "txt") {
        return String::new();
    }
    fs::read_to_string(path)
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("msg_id="))
                .map(|id| format!(" id={id}"))
        })
        .unwrap_or_default()
}

/// `VMTOOL_TEST_LOCK_LOG=<file>`: appends "<µs held> <folder>" per release, for the
/// lock-hold measurements in BENCHMARKS.md (never set in production).
fn log_hold(dir: &Path, since: Instant) {
    static LOG: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    if let Some(path) =
        LOG.get_or_init(|| std::env::var_os("VMTOOL_TEST_LOCK_LOG").map(PathBuf::from))
    {
        use std::io::Write;
        let line = format!("{} {}\n", since.elapsed().as_micros(), dir.display());
        if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

fn release_held(dir: &Path, held: Held) -> Result<(), LockError> {
    match held {
        Held::Lockfile { helper, stamp } => lockfile_release(dir, &helper, stamp),
        Held::Flock { file, id } => flock_release(dir, file, id),
    }
}

/// Creates `dir/.lock-%08x` like Asterisk (random ≤ 0x7fffffff, mode 0666 & ~umask).
fn create_helper(dir: &Path) -> Result<(PathBuf, Stamp), LockError> {
    let mut last = None;
    // Our name tag, so a `.lock` left by a killed vmtool can be told from Asterisk's
    // (always empty) and broken at once (spec §6.6).
    let tag = Owner::me().map(Owner::tag);
    for _ in 0..16 {
        let path = dir.join(format!("{HELPER_PREFIX}{:08x}", random_u64() & 0x7fff_ffff));
        let created = match &tag {
            Some(tag) => create_tagged(dir, &path, tag.as_bytes()),
            None => Ok(None),
        };
        let created = match created {
            Ok(Some(f)) => Ok(f),
            // No O_TMPFILE here: created by name, then tagged (a kill in between
            // leaves an empty helper, judged by age like Asterisk's).
            Ok(None) => OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o666)
                .open(&path)
                .and_then(|mut f| {
                    use std::io::Write;
                    if let Some(tag) = &tag {
                        if let Err(e) = f.write_all(tag.as_bytes()) {
                            let _ = fs::remove_file(&path);
                            return Err(e);
                        }
                    }
                    Ok(f)
                }),
            Err(e) => Err(e),
        };
        match created {
            Ok(f) => {
                return match f.metadata() {
                    Ok(m) => Ok((path, Stamp::of(&m))),
                    Err(e) => {
                        let _ = fs::remove_file(&path);
                        Err(io_err(dir, "create a lock helper in")(e))
                    }
                };
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(io_err(dir, "create a lock helper in")(e)),
        }
    }
    let e = last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists));
    Err(io_err(dir, "create a lock helper in")(e))
}

/// Creates `path` with `tag` as its content in one step: an unnamed `O_TMPFILE` is
/// written, then linked in (`EEXIST` if the name is taken), so a kill never leaves an
/// untagged helper. `Ok(None)` where the file system has no `O_TMPFILE`.
fn create_tagged(dir: &Path, path: &Path, tag: &[u8]) -> io::Result<Option<File>> {
    use rustix::fs::{linkat, openat, AtFlags, Mode, OFlags, CWD};
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let fd = match openat(
        CWD,
        dir,
        OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::from_bits_truncate(0o666),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::ISDIR | rustix::io::Errno::INVAL) => {
            return Ok(None)
        }
        Err(e) => return Err(e.into()),
    };
    let mut f = File::from(fd);
    f.write_all(tag)?;
    linkat(
        CWD,
        format!("/proc/self/fd/{}", f.as_raw_fd()),
        CWD,
        path,
        AtFlags::SYMLINK_FOLLOW,
    )?;
    Ok(Some(f))
}

fn lockfile_acquire(dir: &Path, timeout: Duration) -> Result<Held, LockError> {
    let (helper, stamp) = create_helper(dir)?;
    let lock = dir.join(LOCKFILE_NAME);
    let start = Instant::now();
    let mut next_owner_check = start;
    loop {
        match fs::hard_link(&helper, &lock) {
            Ok(()) => {
                test_trace(format_args!("locked {}", dir.display()));
                return Ok(Held::Lockfile { helper, stamp });
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // Only a regular file can be a lock someone made and will remove.
                if let Ok(m) = fs::symlink_metadata(&lock) {
                    if !m.file_type().is_file() {
                        let _ = fs::remove_file(&helper);
                        return Err(io_err(dir, "lock")(not_a_lock(&lock, &m)));
                    }
                }
                // A killed vmtool's lock is broken at once: waiting cannot help, and
                // Asterisk would drop every deposit behind it.
                if Instant::now() >= next_owner_check {
                    next_owner_check = Instant::now() + Duration::from_millis(250);
                    match break_dead_lock(dir) {
                        Ok(BreakOutcome::Broken) => continue,
                        Ok(_) => {}
                        Err(e) => {
                            let _ = fs::remove_file(&helper);
                            return Err(e);
                        }
                    }
                }
                if let Err(waited) = wait_or_give_up(start, timeout, jitter(5, 20)) {
                    let _ = fs::remove_file(&helper);
                    return Err(LockError::Busy {
                        dir: dir.to_path_buf(),
                        waited,
                    });
                }
            }
            // EPERM on file systems without hard links, EACCES, …: waiting won't help.
            Err(e) => {
                let _ = fs::remove_file(&helper);
                return Err(io_err(dir, "link the lock file in")(e));
            }
        }
    }
}

fn remove_lock_traced(dir: &Path, lock: &Path) -> io::Result<()> {
    test_trace(format_args!("unlock {}", dir.display()));
    fs::remove_file(lock)
}

fn lockfile_release(dir: &Path, helper: &Path, stamp: Stamp) -> Result<(), LockError> {
    let lock = dir.join(LOCKFILE_NAME);
    let broken = || LockError::Broken {
        dir: dir.to_path_buf(),
    };
    let res = match fs::symlink_metadata(&lock) {
        // Still our inode (the helper pins it): ours to remove.
        Ok(m) if Stamp::of(&m) == stamp => match remove_lock_traced(dir, &lock) {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Err(broken()),
            Err(e) => Err(io_err(dir, "remove the lock in")(e)),
        },
        // Someone else's lock now, or none: never delete a lock we did not create.
        Ok(_) => Err(broken()),
        Err(e) if is_not_found(&e) => Err(broken()),
        Err(e) => Err(io_err(dir, "check the lock in")(e)),
    };
    // The helper is ours whatever happened to `.lock`; stale repair may have taken it.
    let helper_res = match fs::remove_file(helper) {
        Err(e) if !is_not_found(&e) => Err(io_err(dir, "remove the lock helper in")(e)),
        _ => Ok(()),
    };
    res.and(helper_res)
}

/// A FIFO, socket, device or directory where a lock file belongs: never
/// opened (a FIFO would block), never waited for.
fn not_a_lock(path: &Path, m: &Metadata) -> io::Error {
    io::Error::other(format!(
        "{} is a {}, not a lock file: remove it (see `vmtool check`)",
        path.display(),
        crate::fsutil::kind_name(m)
    ))
}

/// Opens `path` for flock, refusing symlinks and hard-linked files like Asterisk.
/// A missing file is created with `O_EXCL` (never through a symlink); an existing one
/// is opened without `O_CREAT`, so nothing outside `dir` can be created. The caller
/// re-checks the identity after locking, which also catches a swap after the `lstat`.
fn open_lock_file(
    dir: &Path,
    path: &Path,
    mode: u32,
    check_links: bool,
) -> Result<File, LockError> {
    for _ in 0..16 {
        match fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(io_err(dir, "lock")(io::Error::other(format!(
                    "{} is a symbolic link; refusing to follow it (see `vmtool check`)",
                    path.display()
                ))));
            }
            Ok(m) if check_links && m.nlink() > 1 => {
                return Err(io_err(dir, "lock")(io::Error::other(format!(
                    "{} has {} hard links; refusing to use it (see `vmtool check`)",
                    path.display(),
                    m.nlink()
                ))));
            }
            Ok(m) if !m.file_type().is_file() => {
                return Err(io_err(dir, "lock")(not_a_lock(path, &m)));
            }
            Ok(_) => {
                match crate::fsutil::open_options_regular(OpenOptions::new().write(true), path) {
                    Ok(f) => return Ok(f),
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(io_err(dir, "open the lock file in")(e)),
                }
            }
            Err(e) if is_not_found(&e) => {
                match crate::fsutil::open_options_regular(
                    OpenOptions::new().write(true).create_new(true).mode(mode),
                    path,
                ) {
                    Ok(f) => return Ok(f),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io_err(dir, "create the lock file in")(e)),
                }
            }
            Err(e) => return Err(io_err(dir, "check the lock file in")(e)),
        }
    }
    Err(io_err(dir, "open the lock file in")(io::Error::other(
        format!("{} keeps appearing and disappearing", path.display()),
    )))
}

/// Takes `flock(LOCK_EX)` on `path` (std's `File::try_lock` is `flock(2)` on Unix),
/// polling every 1–5 ms until `timeout`, and makes sure the locked inode is still the
/// one named `path` (spec §6.3). Returns the file, its identity and the number of
/// identity retries.
fn flock_path(
    dir: &Path,
    path: &Path,
    timeout: Duration,
    open: impl Fn() -> Result<File, LockError>,
    busy: impl Fn(Duration) -> LockError,
) -> Result<(File, FileId, u32), LockError> {
    let start = Instant::now();
    let mut retries = 0;
    loop {
        let file = open()?;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {
                    wait_or_give_up(start, timeout, jitter(1, 5)).map_err(&busy)?;
                }
                Err(TryLockError::Error(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(TryLockError::Error(e)) => {
                    return Err(io_err(dir, "flock the lock file in")(e))
                }
            }
        }
        let id = FileId::of(
            &file
                .metadata()
                .map_err(io_err(dir, "check the lock file in"))?,
        );
        match fs::symlink_metadata(path) {
            Ok(m) if FileId::of(&m) == id => return Ok((file, id, retries)),
            // The holder we waited for unlinked the file (Asterisk releases by unlink,
            // then close): our lock is on an orphan inode and excludes nobody. Retry.
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(io_err(dir, "check the lock file in")(e)),
        }
        drop(file);
        retries += 1;
        if start.elapsed() >= timeout {
            return Err(busy(start.elapsed()));
        }
    }
}

fn flock_acquire(dir: &Path, timeout: Duration) -> Result<(Held, u32), LockError> {
    let path = dir.join(FLOCK_NAME);
    let (file, id, retries) = flock_path(
        dir,
        &path,
        timeout,
        || open_lock_file(dir, &path, 0o600, true),
        |waited| LockError::Busy {
            dir: dir.to_path_buf(),
            waited,
        },
    )?;
    Ok((Held::Flock { file, id }, retries))
}

fn flock_release(dir: &Path, file: File, id: FileId) -> Result<(), LockError> {
    let path = dir.join(FLOCK_NAME);
    let broken = || LockError::Broken {
        dir: dir.to_path_buf(),
    };
    // Asterisk's order: unlink, then unlock/close.
    let res = match fs::symlink_metadata(&path) {
        Ok(m) if FileId::of(&m) == id => match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Err(broken()),
            Err(e) => Err(io_err(dir, "remove the lock file in")(e)),
        },
        Ok(_) => Err(broken()),
        Err(e) if is_not_found(&e) => Err(broken()),
        Err(e) => Err(io_err(dir, "check the lock file in")(e)),
    };
    // Explicit unlock: a forked child that still shares the fd must not keep the lock.
    let _ = file.unlock();
    drop(file);
    res
}

// ---------------------------------------------------------------------------------------
// Mailbox lock

/// vmtool-only lock of a whole mailbox: two vmtool processes must not both move the
/// same message, which Asterisk's folder locks cannot prevent.
///
/// `flock(LOCK_EX)` on `<mailbox>/tmp/.vmtool-lock`, a name Asterisk never looks at
/// (it does not scan `tmp/` by name; its `mkstemp()` names are 6 characters). The file
/// is created if missing (mode 0600) and is never removed: unlinking a flock file is
/// what lets two holders lock different inodes (spec §6.3). Dropping the guard unlocks.
#[derive(Debug)]
pub struct MailboxGuard {
    path: PathBuf,
    file: File,
    since: Instant,
}

impl MailboxGuard {
    /// Locks the mailbox, waiting up to `timeout`. `<mailbox>/tmp/` must exist (the
    /// caller creates directories, with the right owner); otherwise an `Io` error.
    pub fn acquire(mailbox_dir: &Path, timeout: Duration) -> Result<MailboxGuard, LockError> {
        let tmp = mailbox_dir.join("tmp");
        let path = tmp.join(MAILBOX_LOCK_NAME);
        let (file, _, _) = flock_path(
            &tmp,
            &path,
            timeout,
            || open_lock_file(&tmp, &path, 0o600, false),
            |waited| LockError::InUse {
                dir: mailbox_dir.to_path_buf(),
                waited,
            },
        )?;
        Ok(MailboxGuard {
            path,
            file,
            since: Instant::now(),
        })
    }

    /// The lock file, `<mailbox>/tmp/.vmtool-lock`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn held_for(&self) -> Duration {
        self.since.elapsed()
    }
}

impl Drop for MailboxGuard {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

// ---------------------------------------------------------------------------------------
// Inspection and stale-lock repair

/// What a lock-related file in a folder is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockFileKind {
    /// `.lock` (lockfile mode).
    Lockfile,
    /// `.lock-XXXXXXXX`, the helper of a lockfile-mode lock.
    Helper,
    /// `lock` (flock mode).
    Flock,
    /// `.lock.stale-*`: a stale `.lock` whose removal by [`break_stale`] was interrupted.
    Renamed,
}

/// Classifies a directory entry name; `None` for anything that is not a lock file.
pub fn lock_file_kind(name: &str) -> Option<LockFileKind> {
    match name {
        LOCKFILE_NAME => Some(LockFileKind::Lockfile),
        FLOCK_NAME => Some(LockFileKind::Flock),
        _ if name.starts_with(STALE_PREFIX) => Some(LockFileKind::Renamed),
        _ => name
            .strip_prefix(HELPER_PREFIX)
            .filter(|h| h.len() == 8 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(|_| LockFileKind::Helper),
    }
}

/// One lock file found by [`inspect`].
#[derive(Debug, Clone)]
pub struct LockInfo {
    pub path: PathBuf,
    pub kind: LockFileKind,
    /// Since the inode's ctime: acquisition time for `.lock` and helpers, creation
    /// time for a flock `lock` (not when the flock was taken).
    pub age: Duration,
    /// Older than the threshold. A flock `lock` is stale only if it is held and old:
    /// an unheld one is a harmless leftover.
    pub stale: bool,
    /// Flock mode: whether someone holds the flock now; `None` for other kinds or if
    /// the file could not be probed.
    pub held: Option<bool>,
    /// Hard links. A `.lock` with 2 was taken by vmtool (whose helper is the other
    /// name), live or crashed; Asterisk's own `.lock` has 1.
    pub nlink: u64,
    /// The vmtool that took it, when it is gone (then `stale` whatever the age).
    pub dead_owner: Option<Owner>,
}

/// Lists the lock files of `dir` (sorted by name). Never changes anything; the flock
/// probe takes and drops the lock at once (an Asterisk trying at that instant retries
/// 1 ms later).
pub fn inspect(dir: &Path, threshold: Duration) -> io::Result<Vec<LockInfo>> {
    let now = SystemTime::now();
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(kind) = name.to_str().and_then(lock_file_kind) else {
            continue;
        };
        let path = entry.path();
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if is_not_found(&e) => continue,
            Err(e) => return Err(e),
        };
        let age = file_age(&meta, now);
        let mut dead = None;
        let (stale, held) = match kind {
            LockFileKind::Flock => {
                let held = probe_flock(&path, &meta);
                (held == Some(true) && age > threshold, held)
            }
            _ => {
                dead = dead_owner(&path).map(|(o, _)| o);
                (age > threshold || dead.is_some(), None)
            }
        };
        out.push(LockInfo {
            path,
            kind,
            age,
            stale,
            held,
            nlink: meta.nlink(),
            dead_owner: dead,
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Whether someone holds a flock on `path`: `LOCK_EX|LOCK_NB` on a separate read-only
/// open, released at once. Only regular files are opened (a FIFO would block).
fn probe_flock(path: &Path, meta: &Metadata) -> Option<bool> {
    if !meta.file_type().is_file() {
        return None;
    }
    let (file, _) = crate::fsutil::open_regular(path).ok()?;
    match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            Some(false)
        }
        Err(TryLockError::WouldBlock) => Some(true),
        Err(TryLockError::Error(_)) => None,
    }
}

/// What [`break_stale`] did about `.lock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreakOutcome {
    /// `.lock` is younger than the threshold: left alone.
    NotStale,
    /// The stale `.lock` was removed.
    Broken,
    /// A fresh lock replaced the stale one between the check and the rename; it was
    /// put back under `.lock` unchanged (same inode), nothing was broken.
    ReplacedMeanwhile,
    /// As `ReplacedMeanwhile`, but yet another lock was taken while the fresh one was
    /// out of place, so it could not be put back: two processes believed they held the
    /// folder for a moment. The newer `.lock` was left alone. Report it loudly.
    Disturbed,
    /// There is no `.lock`.
    NoLock,
}

/// Removes a stale lockfile-mode `.lock` and stale helpers (spec §6.6): a `.lock` or
/// `.lock-XXXXXXXX` whose ctime is older than `threshold` (use ≥ 60 s), and leftovers
/// `.lock.stale-*` of an interrupted earlier repair. Returns what happened to `.lock`
/// and the other files removed. A helper still linked to a `.lock` (2 links) is kept:
/// it belongs to a lock that was not broken.
///
/// Flock mode needs no repair: the kernel drops a dead process's flock and a leftover
/// `lock` file is harmless; a held one belongs to a live process and is never touched.
pub fn break_stale(
    dir: &Path,
    threshold: Duration,
) -> Result<(BreakOutcome, Vec<PathBuf>), LockError> {
    let lock = dir.join(LOCKFILE_NAME);
    let mut broken = None;
    let outcome = match fs::symlink_metadata(&lock) {
        Err(e) if is_not_found(&e) => BreakOutcome::NoLock,
        Err(e) => return Err(io_err(dir, "check the lock in")(e)),
        Ok(m) if !m.file_type().is_file() => {
            return Err(io_err(dir, "break the lock in")(io::Error::other(format!(
                "{} is not a regular file; look at it and remove it by hand",
                lock.display()
            ))));
        }
        Ok(m) if file_age(&m, SystemTime::now()) <= threshold => {
            // A gone vmtool's lock is stale at any age.
            match dead_owner(&lock) {
                Some((_, stamp)) => {
                    let outcome = break_lock_if(dir, stamp, || {}, || {})?;
                    if outcome == BreakOutcome::Broken {
                        broken = Some(stamp);
                    }
                    outcome
                }
                None => BreakOutcome::NotStale,
            }
        }
        Ok(m) => {
            let outcome = break_lock_if(dir, Stamp::of(&m), || {}, || {})?;
            if outcome == BreakOutcome::Broken {
                broken = Some(Stamp::of(&m));
            }
            outcome
        }
    };
    let removed = remove_stale_leftovers(dir, threshold, broken)?;
    Ok((outcome, removed))
}

/// Removes `.lock` only if it is the inode judged stale (`expected`). `before` runs
/// after the re-check and `between` right after the rename (tests use them to let a
/// third party lock meanwhile).
///
/// vmtools breaking the same folder's lock take turns ([`breaker_guard`]) and each
/// re-checks the judgement first: the common race — a second breaker acting on a
/// dead lock the first has already broken and somebody has locked again since —
/// ends in `NotStale`. What is left needs a non-vmtool to replace `.lock` between
/// that re-check and the rename: `rename()` takes whatever `.lock` is at that
/// instant, atomically; if it turns out to be a fresh lock, `link()` puts the same
/// inode back (its owner's release check still passes), or fails with EEXIST if
/// somebody locked in the gap: then the moved lock has already stopped excluding
/// anyone and keeping it under another name would only leave litter — its owner, if
/// vmtool, gets `Broken` at release and leaves the newer lock alone.
fn break_lock_if(
    dir: &Path,
    expected: Stamp,
    before: impl FnOnce(),
    between: impl FnOnce(),
) -> Result<BreakOutcome, LockError> {
    let lock = dir.join(LOCKFILE_NAME);
    // One breaker at a time per folder, and the judgement re-checked under it:
    // two vmtools breaking the same dead lock at once would otherwise let the
    // slower one move aside the live lock taken after the first one's break.
    let Some(_breaker) = breaker_guard(dir)? else {
        return Ok(BreakOutcome::NotStale);
    };
    match fs::symlink_metadata(&lock) {
        Err(e) if is_not_found(&e) => return Ok(BreakOutcome::NoLock),
        Ok(m) if Stamp::of(&m) != expected => return Ok(BreakOutcome::NotStale),
        _ => {}
    }
    before();
    let aside = dir.join(format!(
        "{STALE_PREFIX}{:x}-{:016x}",
        std::process::id(),
        random_u64()
    ));
    test_trace(format_args!("break {}", dir.display()));
    match fs::rename(&lock, &aside) {
        Ok(()) => {}
        Err(e) if is_not_found(&e) => return Ok(BreakOutcome::NoLock),
        Err(e) => return Err(io_err(dir, "move the stale lock aside in")(e)),
    }
    between();
    let is_stale_one = matches!(fs::symlink_metadata(&aside), Ok(m) if Stamp::of(&m) == expected);
    if is_stale_one {
        return match fs::remove_file(&aside) {
            Err(e) if !is_not_found(&e) => Err(io_err(dir, "remove the stale lock in")(e)),
            _ => Ok(BreakOutcome::Broken),
        };
    }
    let outcome = match fs::hard_link(&aside, &lock) {
        Ok(()) => BreakOutcome::ReplacedMeanwhile,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => BreakOutcome::Disturbed,
        // Could not put it back: leave it where it is, named in the error, rather than
        // lose it. `rename()` back could overwrite a newer lock.
        Err(e) => {
            return Err(io_err(
                dir,
                "put a live lock back (it is now named .lock.stale-*) in",
            )(e))
        }
    };
    match fs::remove_file(&aside) {
        Err(e) if !is_not_found(&e) => Err(io_err(dir, "remove the extra lock name in")(e)),
        _ => Ok(outcome),
    }
}

/// vmtool's breaker mutex of a folder: `flock()` on the folder directory itself
/// (Asterisk's flock mode locks the `lock` file inside it, never the directory).
/// Tried for a short while only: the caller may hold another folder's lock, and a
/// lock left unbroken now is broken by the next attempt. `None` when busy.
fn breaker_guard(dir: &Path) -> Result<Option<File>, LockError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::NOFOLLOW).bits() as i32)
        .open(dir)
        .map_err(io_err(dir, "open the folder for breaking its lock in"))?;
    let start = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Some(file)),
            Err(TryLockError::WouldBlock) if start.elapsed() < Duration::from_millis(200) => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(TryLockError::WouldBlock) => return Ok(None),
            // No flock() on directories here (some network file systems): the
            // re-check alone, as before, rather than a dead lock left in place.
            Err(TryLockError::Error(_)) => return Ok(Some(file)),
        }
    }
}

/// Whether the process that moved a lock aside as `.lock.stale-<pid hex>-…` is gone.
fn aside_breaker_gone(path: &Path) -> bool {
    let pid = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix(STALE_PREFIX))
        .and_then(|rest| rest.split('-').next())
        .and_then(|hex| u32::from_str_radix(hex, 16).ok());
    pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
}

/// Removes helpers and `.lock.stale-*` leftovers older than `threshold` or left by a
/// vmtool that is gone (waiters killed while waiting), and the helper of a just broken
/// `.lock` (`broken`: a killed vmtool's), whose ctime the unlink of `.lock` has just
/// refreshed.
fn remove_stale_leftovers(
    dir: &Path,
    threshold: Duration,
    broken: Option<Stamp>,
) -> Result<Vec<PathBuf>, LockError> {
    let now = SystemTime::now();
    let mut removed = Vec::new();
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir, "read"))? {
        let entry = entry.map_err(io_err(dir, "read"))?;
        let name = entry.file_name();
        if let Some(k @ (LockFileKind::Helper | LockFileKind::Renamed)) =
            name.to_str().and_then(lock_file_kind)
        {
            found.push((k == LockFileKind::Helper, entry.path()));
        }
    }
    // `.lock.stale-*` names first: removing one can leave its helper with one link.
    found.sort();
    for (helper, path) in found {
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if is_not_found(&e) => continue,
            Err(e) => return Err(io_err(dir, "check lock helpers in")(e)),
        };
        if !meta.file_type().is_file() {
            continue;
        }
        // nlink > 1: a helper is still the other name of a `.lock` (a held vmtool lock);
        // removing it would unpin the inode its owner checks at release. A `.lock.stale-*`
        // name is never a lock: one whose breaker was killed between its rename and its
        // unlink, holding a gone vmtool's lock, goes whatever its links.
        let abandoned_aside = !helper && aside_breaker_gone(&path) && dead_owner(&path).is_some();
        if meta.nlink() > 1 && !abandoned_aside {
            continue;
        }
        let old = file_age(&meta, now) > threshold
            || broken == Some(Stamp::of(&meta))
            || dead_owner(&path).is_some();
        if !old {
            continue;
        }
        match fs::remove_file(&path) {
            Ok(()) => removed.push(path),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(io_err(dir, "remove a stale lock helper in")(e)),
        }
    }
    removed.sort();
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Child, Command};
    use tempfile::TempDir;

    const MODES: [LockMode; 2] = [LockMode::Lockfile, LockMode::Flock];

    fn opts(mode: LockMode, ms: u64) -> LockOptions {
        LockOptions {
            mode,
            timeout: Duration::from_millis(ms),
        }
    }

    /// A folder directory (canonical, so `/proc/self/fd` links compare equal).
    fn folder() -> (TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().canonicalize().unwrap().join("INBOX");
        fs::create_dir(&dir).unwrap();
        (t, dir)
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    fn ino(p: &Path) -> u64 {
        fs::symlink_metadata(p).unwrap().ino()
    }

    fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "timed out waiting for {what}"
            );
            thread::sleep(Duration::from_millis(2));
        }
    }

    fn sh(script: &str, dir: &Path) -> Child {
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .spawn()
            .unwrap()
    }

    #[test]
    fn acquire_and_release_leave_nothing_behind() {
        for mode in MODES {
            let (_t, dir) = folder();
            let lock = FolderLock::acquire(&dir, &opts(mode, 1000)).unwrap();
            assert_eq!(lock.dir(), dir);
            assert_eq!(lock.mode(), mode);
            let n = names(&dir);
            match mode {
                LockMode::Lockfile => {
                    // `.lock` plus the kept helper, two names of one inode.
                    assert_eq!(n.len(), 2, "{n:?}");
                    assert_eq!(n[0], ".lock");
                    assert_eq!(lock_file_kind(&n[1]), Some(LockFileKind::Helper));
                    assert_eq!(ino(&dir.join(&n[0])), ino(&dir.join(&n[1])));
                    assert_eq!(fs::metadata(dir.join(".lock")).unwrap().nlink(), 2);
                }
                LockMode::Flock => {
                    assert_eq!(n, ["lock"]);
                    let mode_bits = fs::metadata(dir.join("lock")).unwrap().mode() & 0o777;
                    assert_eq!(mode_bits, 0o600);
                }
            }
            assert!(lock.held_for() < Duration::from_secs(1));
            lock.release().unwrap();
            assert!(names(&dir).is_empty(), "{mode:?}: {:?}", names(&dir));
        }
    }

    #[test]
    fn drop_releases_also_on_error_and_panic_paths() {
        for mode in MODES {
            let (_t, dir) = folder();
            {
                let _lock = FolderLock::acquire(&dir, &opts(mode, 1000)).unwrap();
            }
            assert!(names(&dir).is_empty());

            let failing = || -> Result<(), LockError> {
                let _lock = FolderLock::acquire(&dir, &opts(mode, 1000))?;
                Err(LockError::Broken { dir: dir.clone() })
            };
            assert!(failing().is_err());
            assert!(names(&dir).is_empty());

            let d = dir.clone();
            let r = thread::spawn(move || {
                let _lock = FolderLock::acquire(&d, &opts(mode, 1000)).unwrap();
                panic!("boom (expected by the test)");
            })
            .join();
            assert!(r.is_err());
            assert!(names(&dir).is_empty());
            FolderLock::acquire(&dir, &opts(mode, 0))
                .unwrap()
                .release()
                .unwrap();
        }
    }

    #[test]
    fn second_acquirer_in_another_thread_gets_busy() {
        for mode in MODES {
            let (_t, dir) = folder();
            let held = FolderLock::acquire(&dir, &opts(mode, 1000)).unwrap();
            let before = names(&dir);
            let d = dir.clone();
            let err = thread::spawn(move || FolderLock::acquire(&d, &opts(mode, 250)).unwrap_err())
                .join()
                .unwrap();
            match &err {
                LockError::Busy { dir: d, waited } => {
                    assert_eq!(d, &dir);
                    assert!(*waited >= Duration::from_millis(250), "{waited:?}");
                    assert!(*waited < Duration::from_millis(1000), "{waited:?}");
                }
                e => panic!("{mode:?}: {e}"),
            }
            assert!(err.is_busy());
            // The waiter removed its helper; the holder's files are untouched.
            assert_eq!(names(&dir), before);
            held.release().unwrap();
            assert!(names(&dir).is_empty());
        }
    }

    #[test]
    fn busy_against_asterisk_process_leaves_its_lock_alone() {
        let (_t, dir) = folder();
        // Asterisk's way: helper, link to .lock, unlink helper; holds 1.5 s, unlinks.
        let mut child = sh(
            ": > .lock-0badf00d && ln .lock-0badf00d .lock && rm .lock-0badf00d && \
             sleep 1.5 && rm .lock",
            &dir,
        );
        wait_until("the child's .lock", || names(&dir) == [".lock"]);
        let theirs = ino(&dir.join(".lock"));
        let err = FolderLock::acquire(&dir, &opts(LockMode::Lockfile, 300)).unwrap_err();
        assert!(matches!(err, LockError::Busy { .. }), "{err}");
        assert_eq!(names(&dir), [".lock"]);
        assert_eq!(ino(&dir.join(".lock")), theirs);
        assert!(child.wait().unwrap().success());
        assert!(names(&dir).is_empty());

        // A crashed Asterisk: `.lock` made by hand, never released.
        fs::write(dir.join(".lock"), "").unwrap();
        let theirs = ino(&dir.join(".lock"));
        let err = FolderLock::acquire(&dir, &opts(LockMode::Lockfile, 100)).unwrap_err();
        assert!(matches!(err, LockError::Busy { .. }), "{err}");
        assert_eq!(names(&dir), [".lock"]);
        assert_eq!(ino(&dir.join(".lock")), theirs);
    }

    #[test]
    fn waiter_gets_the_lock_when_an_asterisk_process_releases() {
        let (_t, dir) = folder();
        let mut child = sh(
            ": > .lock-0badf00d && ln .lock-0badf00d .lock && rm .lock-0badf00d && \
             sleep 0.2 && rm .lock",
            &dir,
        );
        wait_until("the child's .lock", || names(&dir) == [".lock"]);
        let start = Instant::now();
        let lock = FolderLock::acquire(&dir, &opts(LockMode::Lockfile, 2000)).unwrap();
        let waited = start.elapsed();
        assert!(waited < Duration::from_millis(1500), "{waited:?}");
        lock.release().unwrap();
        assert!(child.wait().unwrap().success());
        assert!(names(&dir).is_empty());
    }

    fn have_flock_binary() -> bool {
        Command::new("flock")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    #[test]
    fn flock_mode_interoperates_with_flock_2_of_other_processes() {
        if !have_flock_binary() {
            eprintln!("skipped: no flock(1) binary");
            return;
        }
        let (_t, dir) = folder();
        let mut child = sh("flock lock sleep 1.2", &dir);
        let path = dir.join("lock");
        wait_until("the child's flock", || {
            inspect(&dir, DEFAULT_STALE_THRESHOLD)
                .unwrap()
                .first()
                .is_some_and(|i| i.held == Some(true))
        });
        let theirs = ino(&path);
        let err = FolderLock::acquire(&dir, &opts(LockMode::Flock, 300)).unwrap_err();
        assert!(matches!(err, LockError::Busy { .. }), "{err}");
        assert_eq!(ino(&path), theirs);
        // flock(1) does not unlink: we get the lock on the same file once it exits.
        let lock = FolderLock::acquire(&dir, &opts(LockMode::Flock, 3000)).unwrap();
        assert!(child.wait().unwrap().success());
        // While we hold it, another process's flock(2) fails.
        let st = Command::new("flock")
            .args(["-n", "-E", "7", "lock", "true"])
            .current_dir(&dir)
            .status()
            .unwrap();
        assert_eq!(st.code(), Some(7));
        lock.release().unwrap();
        assert!(names(&dir).is_empty());
    }

    #[test]
    fn waiter_gets_the_lock_as_soon_as_the_holder_releases() {
        for mode in MODES {
            let (_t, dir) = folder();
            let holder = FolderLock::acquire(&dir, &opts(mode, 1000)).unwrap();
            let d = dir.clone();
            let waiter = thread::spawn(move || {
                let start = Instant::now();
                let lock = FolderLock::acquire(&d, &opts(mode, 2000)).unwrap();
                let got = Instant::now();
                lock.release().unwrap();
                (start, got)
            });
            thread::sleep(Duration::from_millis(200));
            let released = Instant::now();
            holder.release().unwrap();
            let (start, got) = waiter.join().unwrap();
            let waited = got - start;
            let handoff = got.saturating_duration_since(released);
            eprintln!("{mode:?}: waited {waited:?}, handoff {handoff:?}");
            assert!(got >= released);
            assert!(waited >= Duration::from_millis(190), "{waited:?}");
            assert!(handoff < Duration::from_millis(500), "{handoff:?}");
            assert!(names(&dir).is_empty());
        }
    }

    #[test]
    fn mutual_exclusion_under_contention() {
        const THREADS: usize = 4;
        const ROUNDS: usize = 25;
        for mode in MODES {
            let (t, dir) = folder();
            let counter = t.path().join("counter");
            fs::write(&counter, "0").unwrap();
            thread::scope(|s| {
                for _ in 0..THREADS {
                    s.spawn(|| {
                        for _ in 0..ROUNDS {
                            let lock = FolderLock::acquire(&dir, &opts(mode, 20_000)).unwrap();
                            let n: usize = fs::read_to_string(&counter).unwrap().parse().unwrap();
                            thread::sleep(Duration::from_micros(500));
                            fs::write(&counter, (n + 1).to_string()).unwrap();
                            lock.release().unwrap();
                        }
                    });
                }
            });
            let n: usize = fs::read_to_string(&counter).unwrap().parse().unwrap();
            assert_eq!(n, THREADS * ROUNDS, "{mode:?}");
            assert!(names(&dir).is_empty(), "{mode:?}: {:?}", names(&dir));
        }
    }

    #[test]
    fn broken_lockfile_is_reported_and_the_replacement_kept() {
        let (_t, dir) = folder();
        // Replaced: e.g. an unlocked Asterisk deleted ours and another took a new one.
        let lock = FolderLock::acquire(&dir, &opts(LockMode::Lockfile, 1000)).unwrap();
        fs::remove_file(dir.join(".lock")).unwrap();
        fs::write(dir.join(".lock"), "").unwrap();
        let theirs = ino(&dir.join(".lock"));
        let err = lock.release().unwrap_err();
        assert!(matches!(err, LockError::Broken { .. }), "{err}");
        assert_eq!(names(&dir), [".lock"]);
        assert_eq!(ino(&dir.join(".lock")), theirs);
        fs::remove_file(dir.join(".lock")).unwrap();

        // Removed.
        let lock = FolderLock::acquire(&dir, &opts(LockMode::Lockfile, 1000)).unwrap();
        fs::remove_file(dir.join(".lock")).unwrap();
        assert!(matches!(lock.release(), Err(LockError::Broken { .. })));
        assert!(names(&dir).is_empty());

        // Broken and dropped: the replacement survives the drop too.
        let lock = FolderLock::acquire(&dir, &opts(LockMode::Lockfile, 1000)).unwrap();
        fs::remove_file(dir.join(".lock")).unwrap();
        fs::write(dir.join(".lock"), "").unwrap();
        drop(lock);
        assert_eq!(names(&dir), [".lock"]);
    }

    #[test]
    fn broken_flock_is_reported_and_the_replacement_kept() {
        let (_t, dir) = folder();
        let lock = FolderLock::acquire(&dir, &opts(LockMode::Flock, 1000)).unwrap();
        fs::remove_file(dir.join("lock")).unwrap();
        fs::write(dir.join("lock"), "").unwrap();
        let theirs = ino(&dir.join("lock"));
        assert!(matches!(lock.release(), Err(LockError::Broken { .. })));
        assert_eq!(names(&dir), ["lock"]);
        assert_eq!(ino(&dir.join("lock")), theirs);
    }

    #[test]
    fn flock_refuses_symlinks_and_hard_links() {
        let (t, dir) = folder();
        let outside = t.path().join("outside");
        fs::write(&outside, "keep").unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("lock")).unwrap();
        let err = FolderLock::acquire(&dir, &opts(LockMode::Flock, 100)).unwrap_err();
        assert!(matches!(err, LockError::Io { .. }), "{err}");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(fs::read_to_string(&outside).unwrap(), "keep");
        assert_eq!(names(&dir), ["lock"]);

        // A dangling symlink must not make us create its target either.
        fs::remove_file(dir.join("lock")).unwrap();
        let target = t.path().join("created-through-symlink");
        std::os::unix::fs::symlink(&target, dir.join("lock")).unwrap();
        assert!(FolderLock::acquire(&dir, &opts(LockMode::Flock, 100)).is_err());
        assert!(!target.exists());
        fs::remove_file(dir.join("lock")).unwrap();

        fs::write(dir.join("other"), "").unwrap();
        fs::hard_link(dir.join("other"), dir.join("lock")).unwrap();
        let err = FolderLock::acquire(&dir, &opts(LockMode::Flock, 100)).unwrap_err();
        assert!(err.to_string().contains("2 hard links"), "{err}");
        assert_eq!(names(&dir), ["lock", "other"]);
    }

    /// How many of our fds are open on `path` (Linux).
    fn fds_on(path: &Path) -> usize {
        fs::read_dir("/proc/self/fd")
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter(|e| fs::read_link(e.path()).is_ok_and(|t| t == path))
                    .count()
            })
            .unwrap_or(0)
    }

    #[test]
    fn flock_retries_when_the_locked_file_was_replaced() {
        let (_t, dir) = folder();
        let path = dir.join("lock");
        // An Asterisk holder on inode 1.
        let first = File::create(&path).unwrap();
        first.lock().unwrap();
        let d = dir.clone();
        let waiter = thread::spawn(move || {
            let (held, retries) = flock_acquire(&d, Duration::from_secs(5)).unwrap();
            let got = Instant::now();
            release_held(&d, held).unwrap();
            (retries, got)
        });
        // The waiter has opened inode 1 and polls it.
        wait_until("the waiter's open", || fds_on(&path) == 2);
        // Asterisk's release (unlink, then close) while a newcomer locks a new inode.
        fs::remove_file(&path).unwrap();
        let newcomer = File::create(&path).unwrap();
        newcomer.lock().unwrap();
        drop(first);
        thread::sleep(Duration::from_millis(150));
        let newcomer_released = Instant::now();
        newcomer.unlock().unwrap();
        let (retries, got) = waiter.join().unwrap();
        // Without the identity check the waiter would have "held" inode 1 at once.
        assert!(retries >= 1, "{retries}");
        assert!(got >= newcomer_released);
        assert!(names(&dir).is_empty());
    }

    #[test]
    fn inspect_and_break_a_fresh_lock() {
        let (_t, dir) = folder();
        let lock = FolderLock::acquire(&dir, &opts(LockMode::Lockfile, 1000)).unwrap();
        let info = inspect(&dir, DEFAULT_STALE_THRESHOLD).unwrap();
        assert_eq!(info.len(), 2);
        assert_eq!(info[0].kind, LockFileKind::Lockfile);
        assert_eq!(info[0].nlink, 2);
        assert_eq!(info[1].kind, LockFileKind::Helper);
        assert!(info.iter().all(|i| !i.stale && i.held.is_none()));
        assert!(info[0].age < Duration::from_secs(5));
        let before = names(&dir);
        let (outcome, removed) = break_stale(&dir, DEFAULT_STALE_THRESHOLD).unwrap();
        assert_eq!(outcome, BreakOutcome::NotStale);
        assert!(removed.is_empty());
        assert_eq!(names(&dir), before);
        lock.release().unwrap();
        assert_eq!(
            break_stale(&dir, DEFAULT_STALE_THRESHOLD).unwrap(),
            (BreakOutcome::NoLock, vec![])
        );
    }

    #[test]
    fn old_locks_are_stale_and_broken() {
        let tiny = Duration::from_millis(20);
        let (_t, dir) = folder();
        // A crashed Asterisk's `.lock`.
        fs::write(dir.join(".lock"), "").unwrap();
        thread::sleep(Duration::from_millis(100));
        let info = inspect(&dir, tiny).unwrap();
        assert_eq!(info.len(), 1);
        assert!(info[0].stale);
        assert!(info[0].age >= Duration::from_millis(50));
        assert!(!inspect(&dir, DEFAULT_STALE_THRESHOLD).unwrap()[0].stale);
        assert_eq!(names(&dir), [".lock"], "inspect changed nothing");
        assert_eq!(
            break_stale(&dir, tiny).unwrap(),
            (BreakOutcome::Broken, vec![])
        );
        assert!(names(&dir).is_empty());
        FolderLock::acquire(&dir, &opts(LockMode::Lockfile, 0))
            .unwrap()
            .release()
            .unwrap();

        // A killed vmtool: `.lock` and its helper stay.
        let lock = FolderLock::acquire(&dir, &opts(LockMode::Lockfile, 0)).unwrap();
        std::mem::forget(lock);
        let helper = dir.join(&names(&dir)[1]);
        thread::sleep(Duration::from_millis(100));
        assert_eq!(
            break_stale(&dir, tiny).unwrap(),
            (BreakOutcome::Broken, vec![helper])
        );
        assert!(names(&dir).is_empty());
    }

    #[test]
    fn stale_helpers_and_leftovers_are_removed_and_nothing_else() {
        let tiny = Duration::from_millis(20);
        let (_t, dir) = folder();
        for n in [
            ".lock-0000abcd",
            ".lock.stale-1-2",
            ".lockfoo",
            ".lock-xyz",
            "msg0000.txt",
        ] {
            fs::write(dir.join(n), "").unwrap();
        }
        thread::sleep(Duration::from_millis(100));
        fs::write(dir.join(".lock-0000abce"), "").unwrap(); // young
        let kinds: Vec<_> = inspect(&dir, tiny)
            .unwrap()
            .into_iter()
            .map(|i| (i.kind, i.stale))
            .collect();
        assert_eq!(
            kinds,
            [
                (LockFileKind::Helper, true),
                (LockFileKind::Helper, false),
                (LockFileKind::Renamed, true)
            ]
        );
        let (outcome, removed) = break_stale(&dir, tiny).unwrap();
        assert_eq!(outcome, BreakOutcome::NoLock);
        assert_eq!(
            removed,
            [dir.join(".lock-0000abcd"), dir.join(".lock.stale-1-2")]
        );
        assert_eq!(
            names(&dir),
            [".lock-0000abce", ".lock-xyz", ".lockfoo", "msg0000.txt"]
        );
    }

    #[test]
    fn a_helper_still_linked_to_a_held_lock_is_kept() {
        let (_t, dir) = folder();
        let lock = FolderLock::acquire(&dir, &opts(LockMode::Lockfile, 0)).unwrap();
        thread::sleep(Duration::from_millis(60));
        // Threshold below the hold time, but `.lock` is not judged here: only helpers.
        let removed = remove_stale_leftovers(&dir, Duration::from_millis(10), None).unwrap();
        assert!(removed.is_empty());
        lock.release().unwrap();
    }

    #[test]
    fn flock_leftovers_are_not_stale_and_never_broken() {
        let tiny = Duration::from_millis(20);
        let (_t, dir) = folder();
        fs::write(dir.join("lock"), "").unwrap();
        fs::set_permissions(dir.join("lock"), fs::Permissions::from_mode(0o600)).unwrap();
        thread::sleep(Duration::from_millis(100));
        let info = inspect(&dir, tiny).unwrap();
        assert_eq!(
            (info[0].kind.clone(), info[0].held, info[0].stale),
            (LockFileKind::Flock, Some(false), false)
        );
        let lock = FolderLock::acquire(&dir, &opts(LockMode::Flock, 0)).unwrap();
        let info = inspect(&dir, tiny).unwrap();
        assert_eq!((info[0].held, info[0].stale), (Some(true), true));
        assert!(!inspect(&dir, DEFAULT_STALE_THRESHOLD).unwrap()[0].stale);
        assert_eq!(
            break_stale(&dir, tiny).unwrap(),
            (BreakOutcome::NoLock, vec![])
        );
        assert_eq!(names(&dir), ["lock"]);
        lock.release().unwrap();
    }

    fn stamp(p: &Path) -> Stamp {
        Stamp::of(&fs::symlink_metadata(p).unwrap())
    }

    /// Between a breaker's check and its rename: the judged lock goes, a
    /// vmtool takes the folder (kept in `held`).
    fn relock_as_vmtool(dir: &Path, held: &std::cell::RefCell<Option<FolderLock>>) {
        fs::remove_file(dir.join(".lock")).unwrap();
        *held.borrow_mut() = Some(FolderLock::acquire(dir, &opts(LockMode::Lockfile, 0)).unwrap());
    }

    #[test]
    fn a_fresh_lock_taken_between_check_and_rename_is_put_back() {
        let (_t, dir) = folder();
        let lock = dir.join(".lock");

        // A stale Asterisk lock, replaced by a fresh one after the re-check.
        fs::write(&lock, "").unwrap();
        let stale = stamp(&lock);
        let theirs = std::cell::Cell::new(0);
        let outcome = break_lock_if(
            &dir,
            stale,
            || {
                fs::remove_file(&lock).unwrap();
                fs::write(&lock, "").unwrap();
                theirs.set(ino(&lock));
            },
            || {},
        )
        .unwrap();
        assert_eq!(outcome, BreakOutcome::ReplacedMeanwhile);
        assert_eq!(names(&dir), [".lock"]);
        assert_eq!(ino(&lock), theirs.get());
        fs::remove_file(&lock).unwrap();

        // Replaced by a vmtool lock: its release still recognises it.
        fs::write(&lock, "").unwrap();
        let stale = stamp(&lock);
        let held = std::cell::RefCell::new(None);
        let outcome = break_lock_if(&dir, stale, || relock_as_vmtool(&dir, &held), || {}).unwrap();
        assert_eq!(outcome, BreakOutcome::ReplacedMeanwhile);
        held.into_inner().unwrap().release().unwrap();
        assert!(names(&dir).is_empty());

        // No lock at all.
        assert_eq!(
            break_lock_if(&dir, stale, || {}, || {}).unwrap(),
            BreakOutcome::NoLock
        );
    }

    #[test]
    fn a_second_breaker_leaves_the_lock_taken_after_the_first_break_alone() {
        let (_t, dir) = folder();
        let lock = dir.join(".lock");
        fs::write(&lock, "").unwrap();
        let stale = stamp(&lock);
        // Both judged the same lock stale; the first breaks it, a live lock follows.
        assert_eq!(
            break_lock_if(&dir, stale, || {}, || {}).unwrap(),
            BreakOutcome::Broken
        );
        let live = FolderLock::acquire(&dir, &opts(LockMode::Lockfile, 0)).unwrap();
        let live_ino = ino(&lock);
        let moved_aside = std::cell::Cell::new(false);
        assert_eq!(
            break_lock_if(&dir, stale, || {}, || moved_aside.set(true)).unwrap(),
            BreakOutcome::NotStale
        );
        assert!(!moved_aside.get(), "the live lock was never out of place");
        assert_eq!(ino(&lock), live_ino);
        live.release().unwrap();
    }

    #[test]
    fn breakers_of_one_folder_take_turns() {
        let (_t, dir) = folder();
        let lock = dir.join(".lock");
        fs::write(&lock, "").unwrap();
        let stale = stamp(&lock);
        let other = File::open(&dir).unwrap();
        other.lock().unwrap();
        // Another breaker is at work: leave it to that one rather than wait.
        assert_eq!(
            break_lock_if(&dir, stale, || {}, || {}).unwrap(),
            BreakOutcome::NotStale
        );
        assert_eq!(names(&dir), [".lock"]);
        other.unlock().unwrap();
        assert_eq!(
            break_lock_if(&dir, stale, || {}, || {}).unwrap(),
            BreakOutcome::Broken
        );
        assert!(names(&dir).is_empty());
    }

    #[test]
    fn a_lock_taken_while_the_fresh_one_was_aside_is_left_alone() {
        let (_t, dir) = folder();
        let lock = dir.join(".lock");
        fs::write(&lock, "").unwrap();
        let stale = stamp(&lock);
        let held = std::cell::RefCell::new(None);
        let outcome = break_lock_if(
            &dir,
            stale,
            || relock_as_vmtool(&dir, &held),
            || fs::write(&lock, "newer").unwrap(),
        )
        .unwrap();
        assert_eq!(outcome, BreakOutcome::Disturbed);
        let newer = ino(&lock);
        assert!(matches!(
            held.into_inner().unwrap().release(),
            Err(LockError::Broken { .. })
        ));
        assert_eq!(names(&dir), [".lock"]);
        assert_eq!(ino(&lock), newer);
    }

    #[test]
    fn a_recreated_lock_is_not_taken_for_the_stale_one() {
        let (_t, dir) = folder();
        let lock = dir.join(".lock");
        fs::write(&lock, "").unwrap();
        let old = stamp(&lock);
        fs::remove_file(&lock).unwrap();
        thread::sleep(Duration::from_millis(20));
        // ext4 may well hand out the same inode number again.
        fs::write(&lock, "").unwrap();
        assert_eq!(
            break_lock_if(&dir, old, || {}, || {}).unwrap(),
            BreakOutcome::NotStale
        );
        assert_eq!(names(&dir), [".lock"]);
    }

    #[test]
    fn break_refuses_a_directory_named_lock() {
        let (_t, dir) = folder();
        fs::create_dir(dir.join(".lock")).unwrap();
        assert!(matches!(
            break_stale(&dir, Duration::ZERO),
            Err(LockError::Io { .. })
        ));
        assert!(dir.join(".lock").is_dir());
    }

    #[test]
    fn a_lock_set_aside_by_a_killed_breaker_is_cleaned_up() {
        let (_t, dir) = folder();
        let me = Owner::me().unwrap().clone();
        let gone = Owner {
            boot_id: "00000000-0000-0000-0000-000000000000".into(),
            ..me.clone()
        };
        // A gone vmtool's lock, moved aside by a breaker killed before its unlink:
        // its helper and the aside name share the inode (2 links), no `.lock`.
        fs::write(dir.join(".lock-0000dead"), gone.tag()).unwrap();
        fs::hard_link(
            dir.join(".lock-0000dead"),
            dir.join(".lock.stale-7ffffffe-1"),
        )
        .unwrap();
        // The same left by a breaker that is still running (this process): kept.
        let live_aside = format!(".lock.stale-{:x}-2", std::process::id());
        fs::write(dir.join(".lock-0000d00d"), gone.tag()).unwrap();
        fs::hard_link(dir.join(".lock-0000d00d"), dir.join(&live_aside)).unwrap();
        let (_, removed) = break_stale(&dir, DEFAULT_STALE_THRESHOLD).unwrap();
        assert_eq!(
            removed,
            [
                dir.join(".lock-0000dead"),
                dir.join(".lock.stale-7ffffffe-1")
            ]
        );
        assert_eq!(names(&dir), [".lock-0000d00d".to_string(), live_aside]);
    }

    #[test]
    fn a_gone_vmtools_lock_is_broken_at_once_and_nobody_elses() {
        let (_t, dir) = folder();
        let me = Owner::me().unwrap().clone();
        assert_eq!(Owner::parse(me.tag().as_bytes()), Some(me.clone()));
        assert!(!me.is_dead());
        assert_eq!(Owner::parse(b""), None);
        let reused_pid = Owner {
            start: me.start + 1,
            ..me.clone()
        };
        let other_boot = Owner {
            boot_id: "00000000-0000-0000-0000-000000000000".into(),
            ..me.clone()
        };
        assert!(reused_pid.is_dead() && other_boot.is_dead());

        // Our own live lock: kept, whatever break_dead_lock is asked.
        let lock = FolderLock::acquire(&dir, &opts(LockMode::Lockfile, 0)).unwrap();
        assert_eq!(fs::read(dir.join(".lock")).unwrap(), me.tag().as_bytes());
        assert_eq!(break_dead_lock(&dir).unwrap(), BreakOutcome::NotStale);
        lock.release().unwrap();
        // Asterisk's empty lock: kept (age rules only).
        fs::write(dir.join(".lock"), "").unwrap();
        assert_eq!(break_dead_lock(&dir).unwrap(), BreakOutcome::NotStale);
        assert!(!inspect(&dir, DEFAULT_STALE_THRESHOLD).unwrap()[0].stale);
        fs::remove_file(dir.join(".lock")).unwrap();
        // A gone vmtool's lock and helper, and a killed waiter's helper.
        fs::write(dir.join(".lock-0000dead"), other_boot.tag()).unwrap();
        fs::hard_link(dir.join(".lock-0000dead"), dir.join(".lock")).unwrap();
        fs::write(dir.join(".lock-0000beef"), reused_pid.tag()).unwrap();
        let info = inspect(&dir, DEFAULT_STALE_THRESHOLD).unwrap();
        assert!(info.iter().all(|i| i.stale && i.dead_owner.is_some()));
        // A later vmtool gets the folder at once.
        let start = Instant::now();
        let lock = FolderLock::acquire(&dir, &opts(LockMode::Lockfile, 2000)).unwrap();
        assert!(start.elapsed() < Duration::from_millis(500));
        lock.release().unwrap();
        assert!(names(&dir).is_empty(), "{:?}", names(&dir));
        fs::write(dir.join(".lock-0000beef"), reused_pid.tag()).unwrap();
        let (outcome, removed) = break_stale(&dir, DEFAULT_STALE_THRESHOLD).unwrap();
        assert_eq!(outcome, BreakOutcome::NoLock);
        assert_eq!(removed, [dir.join(".lock-0000beef")]);
        assert!(names(&dir).is_empty());
    }

    #[test]
    fn mailbox_guard_excludes_and_releases_on_drop() {
        let t = tempfile::tempdir().unwrap();
        let mbox = t.path().join("1234");
        fs::create_dir(&mbox).unwrap();
        let err = MailboxGuard::acquire(&mbox, Duration::from_millis(50)).unwrap_err();
        assert!(
            matches!(&err, LockError::Io { source, .. } if is_not_found(source)),
            "{err}"
        );
        assert!(!mbox.join("tmp").exists());

        fs::create_dir(mbox.join("tmp")).unwrap();
        let g = MailboxGuard::acquire(&mbox, Duration::from_millis(50)).unwrap();
        assert_eq!(g.path(), mbox.join("tmp/.vmtool-lock"));
        let m = mbox.clone();
        let err = thread::spawn(move || {
            MailboxGuard::acquire(&m, Duration::from_millis(200)).unwrap_err()
        })
        .join()
        .unwrap();
        assert!(matches!(err, LockError::InUse { .. }), "{err}");
        assert!(err.is_busy());
        let m = mbox.clone();
        let waiter =
            thread::spawn(move || MailboxGuard::acquire(&m, Duration::from_secs(3)).map(|_| ()));
        thread::sleep(Duration::from_millis(100));
        drop(g);
        waiter.join().unwrap().unwrap();
        // The file stays (unlinking it would reopen the §6.3 race) and is reused.
        assert!(mbox.join("tmp/.vmtool-lock").is_file());
        drop(MailboxGuard::acquire(&mbox, Duration::ZERO).unwrap());

        fs::remove_file(mbox.join("tmp/.vmtool-lock")).unwrap();
        std::os::unix::fs::symlink("/nonexistent", mbox.join("tmp/.vmtool-lock")).unwrap();
        assert!(MailboxGuard::acquire(&mbox, Duration::ZERO).is_err());
    }

    #[test]
    fn lockfile_errors_are_io_errors_with_context() {
        let t = tempfile::tempdir().unwrap();
        let missing = t.path().join("nope");
        let err = FolderLock::acquire(&missing, &LockOptions::default()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("cannot create a lock helper in "),
            "{text}"
        );
        assert_eq!(err.dir(), missing);
        let err = FolderLock::acquire(&missing, &opts(LockMode::Flock, 0)).unwrap_err();
        assert!(matches!(err, LockError::Io { .. }), "{err}");
    }

    #[test]
    fn messages() {
        let busy = LockError::Busy {
            dir: "/s/default/1234/INBOX".into(),
            waited: Duration::from_millis(5012),
        };
        assert_eq!(
            busy.to_string(),
            "cannot lock /s/default/1234/INBOX: held by another process for 5.0 s (Asterisk \
             busy, or a stale lock: see `vmtool check`) — nothing was changed"
        );
        let io = LockError::Io {
            dir: "/d".into(),
            action: "link the lock file in",
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        assert!(io
            .to_string()
            .starts_with("cannot link the lock file in /d: permission denied"));
        assert!(io
            .to_string()
            .ends_with("(run vmtool as Asterisk's user, spec §1.6)"));
        assert_eq!(LockOptions::default().timeout, Duration::from_secs(5));
        assert_eq!(LockOptions::default().mode, LockMode::Lockfile);
        assert_eq!(LockMode::Flock.file_name(), "lock");
    }

    #[test]
    fn lock_file_names() {
        assert_eq!(lock_file_kind(".lock"), Some(LockFileKind::Lockfile));
        assert_eq!(lock_file_kind("lock"), Some(LockFileKind::Flock));
        assert_eq!(lock_file_kind(".lock-7fffffff"), Some(LockFileKind::Helper));
        assert_eq!(
            lock_file_kind(".lock.stale-1f-00"),
            Some(LockFileKind::Renamed)
        );
        for n in [
            ".lock-",
            ".lock-1234567",
            ".lock-123456789",
            ".lock-1234567g",
            "Lock",
            ".vmtool-lock",
        ] {
            assert_eq!(lock_file_kind(n), None, "{n}");
        }
        // Asterisk's helper names: 8 lower-case hex digits, at most 0x7fffffff.
        let (_t, dir) = folder();
        for _ in 0..200 {
            let (h, _) = create_helper(&dir).unwrap();
            let name = h.file_name().unwrap().to_str().unwrap().to_string();
            assert_eq!(lock_file_kind(&name), Some(LockFileKind::Helper), "{name}");
            let hex = &name[HELPER_PREFIX.len()..];
            assert_eq!(hex, hex.to_ascii_lowercase());
            assert!(u32::from_str_radix(hex, 16).unwrap() <= 0x7fff_ffff);
        }
        assert_eq!(names(&dir).len(), 200);
    }

    /// Timing report: `cargo test -- --ignored --nocapture timings`.
    #[test]
    #[ignore = "timing report, run by hand"]
    fn timings() {
        const N: u32 = 2000;
        for mode in MODES {
            let (_t, dir) = folder();
            let o = opts(mode, 1000);
            let start = Instant::now();
            for _ in 0..N {
                FolderLock::acquire(&dir, &o).unwrap().release().unwrap();
            }
            eprintln!(
                "{mode:?}: uncontended acquire+release {:.1} µs",
                start.elapsed().as_secs_f64() * 1e6 / f64::from(N)
            );
            let mut handoffs = Vec::new();
            for _ in 0..20 {
                let holder = FolderLock::acquire(&dir, &o).unwrap();
                let d = dir.clone();
                let waiter = thread::spawn(move || {
                    let l = FolderLock::acquire(&d, &opts(mode, 2000)).unwrap();
                    let got = Instant::now();
                    drop(l);
                    got
                });
                thread::sleep(Duration::from_millis(30));
                let released = Instant::now();
                holder.release().unwrap();
                handoffs.push(waiter.join().unwrap().saturating_duration_since(released));
            }
            handoffs.sort();
            eprintln!(
                "{mode:?}: handoff min {:?} median {:?} max {:?}",
                handoffs[0],
                handoffs[handoffs.len() / 2],
                handoffs[handoffs.len() - 1]
            );
        }
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("tmp")).unwrap();
        let start = Instant::now();
        for _ in 0..N {
            drop(MailboxGuard::acquire(t.path(), Duration::from_secs(1)).unwrap());
        }
        eprintln!(
            "mailbox guard: {:.1} µs",
            start.elapsed().as_secs_f64() * 1e6 / f64::from(N)
        );
    }
}
