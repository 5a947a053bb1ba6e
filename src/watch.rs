//! Watch engine for `vmtool watch`: turns file-system events on an Asterisk voicemail
//! spool into message events.
//!
//! The engine works on paths and a few small types of its own ([`MessageKey`],
//! [`SeenMessage`], [`WatchEvent`]) so that it does not depend on the rest of vmtool; the
//! CLI adapts them (rendering, targets, exit codes).
//!
//! # What Asterisk does that we see (spool spec §2, §5, §6, §7)
//!
//! * A deposit is assembled in `<box>/tmp/`, then, under the folder's `.lock`, the audio files
//!   and last the `.txt` are *renamed* into `INBOX`/`Urgent` (§7.1). Copy paths (extra
//!   recipients, forwards, moves between folders) write the files in place (§7.3).
//! * Moves between folders are copy-then-delete in separate steps, and folders are renumbered
//!   (`close_mailbox`, resequencing) by renames within the folder (§2.6, §5.4). A message
//!   number is a position, not an identity (§2.8).
//!
//! # What we report
//!
//! * [`EventKind::New`]: a message whose identity (`msg_id` + `origtime`, or a hash of its
//!   `.txt` when it has no `msg_id`) was in no folder of its mailbox at that mailbox's last
//!   snapshot, once its `.txt` is complete in `INBOX`/`Urgent` and the folder lock is gone.
//!   Reported at once, without a quiet window. A copy of a message the box already has
//!   (identities are shared by copies, §3.6) is New too, from the snapshot diff: its
//!   identity is then in more places than before.
//! * With `all_events`: [`EventKind::Read`], [`EventKind::Moved`], [`EventKind::Deleted`],
//!   [`EventKind::MailboxCreated`], computed by diffing per-mailbox snapshots after a
//!   debounce window, so a copy+delete+renumber is one event.
//! * With `all_events`: [`EventKind::Greeting`] and [`EventKind::GreetingRemoved`], from the
//!   greeting files in the mailbox directory itself (spec §7.4), once per greeting after the
//!   debounce window (a recording's formats are renamed in one after the other).
//!
//! # Design
//!
//! * **Boundary.** The inotify thread (`watch/inotify.rs`: one watch per context, mailbox and
//!   directory in a mailbox; no open/read/attribute events) only converts an event into a small
//!   internal value and `try_send`s it into a bounded channel ([`CHANNEL_CAPACITY`]); it never
//!   blocks on the engine. When the channel is full it remembers which mailbox lost an event
//!   and the engine rescans those mailboxes (all of them when the kernel's queue overflowed).
//! * **Fast path (New).** `msgNNNN.txt` moved into or closed-after-writing in `INBOX`/`Urgent`
//!   becomes a *candidate*: wait while the folder has a lock (woken by the lock's removal,
//!   polled as a fallback, emitted anyway with a warning once the lock is older than
//!   `lock_stale_after`), read and check the `.txt`, compare its identity with the snapshot.
//! * **Slow path (snapshots).** Any event in a mailbox marks it dirty; once it has been quiet for
//!   `debounce` and no folder is locked, it is rescanned and diffed against its snapshot, and the
//!   snapshot is replaced by what is on disk now (memory follows the spool, not its history).
//!   A snapshot keeps 16 bytes per message ([`Rec`]: identity and origtime fingerprints),
//!   not its `.txt`; only `all_events` keeps the `.txt`s, in an unlinked
//!   temporary file ([`TxtStore`]), to show a message that is gone.
//!   The diff also reports New for messages the fast path could not see (lost events).
//! * **New directories.** inotify misses files created right after `mkdir`, so a new context,
//!   mailbox or folder is walked at once and rescanned again after the debounce window.
//! * There is no engine thread: all work happens inside [`Watcher::next_event`]; between calls,
//!   raw events wait in the channel.
//!
//! Limits: a copy into a folder other than INBOX/Urgent (no source deletion) is not
//! reported, and a message saved into INBOX from another folder is New while its source
//! waits for the owner to leave VoiceMailMain (Asterisk's MWI counts it then too); a watched
//! mailbox directory (a box given as scope) that is deleted and re-created is not watched
//! again. Non-UTF-8 context, mailbox and folder names are ignored.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use rayon::prelude::*;

mod inotify;
use sha2::{Digest, Sha256};
use walkdir::WalkDir;

/// The twelve message folders of a mailbox, exact case (spool spec §1.3).
pub const FOLDERS: [&str; 12] = [
    "INBOX", "Old", "Work", "Family", "Friends", "Cust1", "Cust2", "Cust3", "Cust4", "Cust5",
    "Deleted", "Urgent",
];
/// Folders in which an arriving message is a new one (MWI counts them as new).
const NEW_FOLDERS: [&str; 2] = ["INBOX", "Urgent"];
/// Lock files of `lockmode=lockfile` and `lockmode=flock` (spec §6.2, §6.3).
const LOCK_NAMES: [&str; 2] = [".lock", "lock"];
/// Capacity of the channel between the inotify thread and the engine.
pub const CHANNEL_CAPACITY: usize = 4096;
/// Fallback re-check of a held lock (its removal event normally wakes us earlier).
const LOCK_POLL: Duration = Duration::from_millis(50);
/// Re-read of a `.txt` that is still being written.
const PARSE_RETRY: Duration = Duration::from_millis(20);
/// Rescan of a mailbox that had `.txt` files still being written.
const INCOMPLETE_RETRY: Duration = Duration::from_millis(100);
/// A `.txt` not ending in a newline is probably mid-write; after this long accept it anyway
/// (hand-written files may lack the final newline).
const UNTERMINATED_GRACE: Duration = Duration::from_millis(500);
/// Keeps memory flat when the caller never collects warnings.
const MAX_WARNINGS: usize = 1000;
/// Mailboxes read in parallel at a time when the watch starts.
const START_CHUNK: usize = 16;
/// Raw events ingested before due work is looked at again.
const DRAIN_BATCH: usize = 4096;
// errno values (Linux and the BSDs agree on these two).
const EMFILE: i32 = 24;
const ENOSPC: i32 = 28;

/// Where a message is: its position, which changes on every move and renumbering.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageKey {
    pub context: String,
    pub mailbox: String,
    pub folder: String,
    pub number: u16,
}

/// A message as the watcher read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenMessage {
    pub key: MessageKey,
    /// `…/<Folder>/msgNNNN.txt`. For [`EventKind::Deleted`] of a message that is gone, the path
    /// it had (it no longer exists).
    pub txt_path: PathBuf,
    /// `msg_id + "/" + origtime`, or `"sha256:<hex of the .txt>"` when `msg_id` is missing.
    pub identity: String,
    /// The `.txt` bytes read (for a gone message: as last read).
    pub txt: Vec<u8>,
}

/// What happened to a message or mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A message arrived in `INBOX` or `Urgent` that was in no folder of the mailbox before.
    New,
    /// Moved from `INBOX`/`Urgent` to `Old` (heard).
    Read,
    /// Any other folder change within the mailbox (including "unread", Old → INBOX).
    Moved,
    /// Gone from every folder of the mailbox, or moved into `Deleted` (`backupdeleted`).
    Deleted,
    /// A mailbox directory appeared after the watch started.
    MailboxCreated,
    /// With `all_events`: a greeting was recorded or replaced (its `<name>.<ext>` renamed
    /// into, or written in, the mailbox directory; spec §7.4).
    Greeting(Greeting),
    /// With `all_events`: the last file of a greeting was removed.
    GreetingRemoved(Greeting),
}

/// A mailbox's greeting, by the base name of its files (spec §1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Greeting {
    Unavail,
    Busy,
    /// The recorded name, `greet.<ext>`.
    Greet,
    Temp,
}

impl Greeting {
    pub const ALL: [Greeting; 4] = [
        Greeting::Unavail,
        Greeting::Busy,
        Greeting::Greet,
        Greeting::Temp,
    ];

    /// The file name without extension.
    pub fn base(self) -> &'static str {
        match self {
            Greeting::Unavail => "unavail",
            Greeting::Busy => "busy",
            Greeting::Greet => "greet",
            Greeting::Temp => "temp",
        }
    }
}

/// One event for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: EventKind,
    /// New/Read/Moved: the message where it is now. Deleted: the copy in `Deleted`, or the
    /// message as last seen. MailboxCreated: `None`.
    pub message: Option<SeenMessage>,
    /// Read/Moved/Deleted: where the message was.
    pub from: Option<MessageKey>,
    /// (context, mailbox)
    pub mailbox: (String, String),
    pub at: SystemTime,
}

/// What to watch and how.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// The spool root (`…/voicemail`), containing `<context>/<box>/`.
    pub root: PathBuf,
    /// Context or mailbox directories to watch (absolute, or relative to `root`); empty =
    /// the whole root, including contexts created later.
    pub scope: Vec<PathBuf>,
    /// Also report Read, Moved, Deleted and MailboxCreated.
    pub all_events: bool,
    /// A lock held longer than this is reported as a warning and no longer waited for.
    pub lock_stale_after: Duration,
    /// Quiet window before a mailbox is rescanned and diffed (not used for New).
    pub debounce: Duration,
}

impl WatchOptions {
    /// Whole root, New events only, 5 s stale-lock bound, 300 ms debounce.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        WatchOptions {
            root: root.into(),
            scope: Vec::new(),
            all_events: false,
            lock_stale_after: Duration::from_secs(5),
            debounce: Duration::from_millis(300),
        }
    }
}

/// Why the watch could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The OS refused to watch; the message says what to do about it.
    #[error("{0}")]
    Notify(String, #[source] notify::Error),
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Scope { path: PathBuf, reason: &'static str },
}

/// (context, mailbox)
type BoxId = (String, String);

/// Folder names in byte order. A slot names its folder by an index into this list, so slots
/// sort as `(folder name, number)` do: the order in which a diff picks a message's place.
const SLOT_FOLDERS: [&str; 12] = [
    "Cust1", "Cust2", "Cust3", "Cust4", "Cust5", "Deleted", "Family", "Friends", "INBOX", "Old",
    "Urgent", "Work",
];

/// (folder, number) inside one mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Slot {
    folder: u8,
    number: u16,
}

impl Slot {
    fn new(folder: &str, number: u16) -> Option<Slot> {
        let folder = SLOT_FOLDERS.iter().position(|f| *f == folder)?;
        Some(Slot {
            folder: folder as u8,
            number,
        })
    }

    fn folder(self) -> &'static str {
        SLOT_FOLDERS[usize::from(self.folder)]
    }

    fn is_new_folder(self) -> bool {
        NEW_FOLDERS.contains(&self.folder())
    }
}

/// What the inotify thread hands over: already reduced to what the engine uses.
#[derive(Debug)]
enum Raw {
    Fs(RawKind, PathBuf),
    /// Events may have been lost (kernel queue overflow).
    Rescan,
    Error(notify::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RawKind {
    DirCreated,
    FileCreated,
    MovedIn,
    MovedOut,
    /// Closed after writing.
    Written,
    Removed,
}

/// Shared with the callback: which mailboxes lost events because the channel was full.
#[derive(Default)]
struct Overflow {
    any: AtomicBool,
    full: AtomicBool,
    prefixes: Mutex<HashSet<PathBuf>>,
}

impl Overflow {
    fn record(&self, root: &Path, raw: Raw) {
        match raw {
            Raw::Fs(_, path) => match mailbox_prefix(root, &path) {
                Some(prefix) => {
                    // The set is bounded by the number of mailboxes, not by the event rate.
                    self.prefixes
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(prefix);
                }
                None => self.full.store(true, Ordering::Release),
            },
            Raw::Rescan | Raw::Error(_) => self.full.store(true, Ordering::Release),
        }
        self.any.store(true, Ordering::Release);
    }
}

/// A message as read from its `.txt`: held only while it is being looked at (an event, the
/// diff of one mailbox, an announced New); snapshots keep a [`Rec`].
#[derive(Debug, Clone)]
struct Entry {
    identity: String,
    origtime: String,
    txt: Arc<[u8]>,
}

impl Entry {
    fn rec(&self, slot: Slot) -> Rec {
        Rec {
            ident: ident_key(&self.identity),
            orig: orig_key(&self.origtime),
            slot,
        }
    }
}

/// What a snapshot remembers of one message, 16 bytes however long its `.txt`: enough to
/// tell new from moved from removed (identity) and a rewrite in place (origtime). Nothing
/// tells an unchanged file from a changed one, so a rescan reads the mailbox's `.txt`s again
/// (a rescan is of one mailbox, after an event in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rec {
    /// [`ident_key`] of the identity.
    ident: u64,
    /// [`orig_key`] of `origtime`.
    orig: u32,
    slot: Slot,
}

/// The messages of one mailbox as they were at the last scan.
#[derive(Debug, Default)]
struct Snapshot {
    /// Sorted by slot, one per slot.
    recs: Vec<Rec>,
    /// With `all_events`, where each rec's `.txt` is kept (same index), for the event of a
    /// message that is gone; otherwise empty.
    txts: Vec<TxtRef>,
}

impl Snapshot {
    fn get(&self, slot: Slot) -> Option<&Rec> {
        self.position(slot).ok().map(|i| &self.recs[i])
    }

    fn position(&self, slot: Slot) -> Result<usize, usize> {
        self.recs.binary_search_by_key(&slot, |r| r.slot)
    }

    fn txt(&self, slot: Slot) -> Option<TxtRef> {
        self.position(slot)
            .ok()
            .and_then(|i| self.txts.get(i).copied())
    }

    fn knows(&self, ident: u64) -> bool {
        self.recs.iter().any(|r| r.ident == ident)
    }

    /// Puts `rec` at its slot (with its `.txt` when they are kept); returns the `.txt` it
    /// replaced.
    fn insert(&mut self, rec: Rec, txt: Option<TxtRef>) -> Option<TxtRef> {
        match self.position(rec.slot) {
            Ok(i) => {
                self.recs[i] = rec;
                txt.and_then(|t| self.txts.get_mut(i).map(|old| std::mem::replace(old, t)))
            }
            Err(i) => {
                self.recs.insert(i, rec);
                if let Some(t) = txt {
                    self.txts.insert(i, t);
                }
                None
            }
        }
    }

    /// identity → its slots, the way a diff compares mailboxes.
    fn by_identity(&self) -> HashMap<u64, BTreeSet<Slot>> {
        let mut map: HashMap<u64, BTreeSet<Slot>> = HashMap::with_capacity(self.recs.len());
        for r in &self.recs {
            map.entry(r.ident).or_default().insert(r.slot);
        }
        map
    }
}

struct MailboxState {
    dir: PathBuf,
    snapshot: Snapshot,
    /// New events emitted since the last scan: part of the "before" side of the next diff,
    /// so that New followed quickly by a move gives Read/Moved, and never a second New.
    /// Keyed by [`ident_key`].
    announced: HashMap<u64, (Slot, Entry)>,
    /// Since when scans keep finding `.txt` files that are still being written.
    incomplete_since: Option<Instant>,
}

impl MailboxState {
    fn new(dir: PathBuf) -> Self {
        MailboxState {
            dir,
            snapshot: Snapshot::default(),
            announced: HashMap::new(),
            incomplete_since: None,
        }
    }

    fn knows(&self, ident: u64) -> bool {
        self.snapshot.knows(ident) || self.announced.contains_key(&ident)
    }
}

#[derive(Debug, Clone, Copy)]
struct Dirty {
    first: Instant,
    due: Instant,
}

#[derive(Debug, Clone)]
struct Candidate {
    id: BoxId,
    folder: String,
    number: u16,
    first: Instant,
    due: Instant,
}

enum LockState {
    Free,
    Held,
    Stale,
}

struct Change {
    kind: EventKind,
    message: Option<SeenMessage>,
    from: Option<MessageKey>,
}

/// A running watch. Not thread-safe by itself: one owner calls [`Watcher::next_event`].
pub struct Watcher {
    opts: WatchOptions,
    watch_roots: Vec<PathBuf>,
    source: inotify::Source,
    rx: Receiver<Raw>,
    overflow: Arc<Overflow>,
    mailboxes: HashMap<BoxId, MailboxState>,
    dirty: HashMap<BoxId, Dirty>,
    candidates: HashMap<PathBuf, Candidate>,
    new_dirs: Vec<PathBuf>,
    full_rescan: bool,
    ready: VecDeque<WatchEvent>,
    warnings: Vec<String>,
    /// Locks already warned about (path, inode), so a stale lock is reported once.
    warned_locks: HashSet<(PathBuf, u64)>,
    /// Greetings with file events, reported once they are quiet (see "greetings" below).
    greetings: HashMap<(BoxId, Greeting), GreetingChange>,
    /// The snapshots' `.txt`s, kept only when Deleted events need them.
    txts: Option<TxtStore>,
}

impl Watcher {
    /// Starts watching `opts.root` (or `opts.scope`) recursively and takes the initial snapshot
    /// of every mailbox. The watch is set up before the snapshot, so a message arriving
    /// meanwhile is either in the snapshot (not New) or produces an event.
    pub fn start(opts: WatchOptions) -> Result<Watcher, WatchError> {
        let root = opts.root.clone();
        let md = fs::metadata(&root).map_err(|source| WatchError::Io {
            action: "open the spool directory",
            path: root.clone(),
            source,
        })?;
        if !md.is_dir() {
            return Err(WatchError::Io {
                action: "open the spool directory",
                path: root,
                source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            });
        }
        let watch_roots = resolve_scope(&root, &opts.scope)?;

        // A watch runs for months next to Asterisk: its heap is what it holds, not rounded
        // up to 2 MiB huge pages.
        let _ = rustix::thread::disable_transparent_huge_pages(true);
        let (tx, rx) = mpsc::sync_channel(CHANNEL_CAPACITY);
        let overflow = Arc::new(Overflow::default());
        let source =
            inotify::Source::start(&root, tx, Arc::clone(&overflow)).map_err(notify_error)?;
        for dir in &watch_roots {
            source.watch(dir).map_err(notify_error)?;
        }

        let mut w = Watcher {
            opts,
            watch_roots,
            source,
            rx,
            overflow,
            mailboxes: HashMap::new(),
            dirty: HashMap::new(),
            candidates: HashMap::new(),
            new_dirs: Vec::new(),
            full_rescan: false,
            ready: VecDeque::new(),
            warnings: Vec::new(),
            warned_locks: HashSet::new(),
            greetings: HashMap::new(),
            txts: None,
        };
        if w.opts.all_events {
            w.txts = Some(TxtStore::new());
        }
        let found = w.discover(true)?;
        let now = Instant::now();
        let root = w.opts.root.clone();
        let keep_txt = w.txts.is_some();
        // Mailboxes are read in parallel, a chunk at a time so that what is read but not yet
        // reduced to records stays small; entries are dropped where they were read unless
        // their `.txt` is kept.
        for chunk in found.chunks(START_CHUNK) {
            let scanned: Vec<_> = chunk
                .par_iter()
                .map(|(_, dir)| {
                    let mut warnings = Vec::new();
                    let scanned = scan_mailbox(&root, dir, None, false, &mut warnings).map(
                        |(found, incomplete)| {
                            let found: Vec<Scanned> = found
                                .into_iter()
                                .map(|(r, e)| (r, e.filter(|_| keep_txt)))
                                .collect();
                            (found, incomplete)
                        },
                    );
                    (scanned, warnings)
                })
                .collect();
            for ((id, dir), (scanned, warnings)) in chunk.iter().zip(scanned) {
                let mut mb = MailboxState::new(dir.clone());
                if let Some((found, incomplete)) = scanned {
                    mb.snapshot = build_snapshot(found, &Snapshot::default(), w.txts.as_mut()).0;
                    if incomplete > 0 {
                        mb.incomplete_since = Some(now);
                        w.dirty.insert(
                            id.clone(),
                            Dirty {
                                first: now,
                                due: later(now, INCOMPLETE_RETRY),
                            },
                        );
                    }
                }
                w.mailboxes.insert(id.clone(), mb);
                for msg in warnings {
                    w.warn(msg);
                }
            }
        }
        Ok(w)
    }

    /// Returns the next event, waiting up to `timeout`; `Ok(None)` when nothing happened.
    pub fn next_event(&mut self, timeout: Duration) -> Result<Option<WatchEvent>, WatchError> {
        let deadline = later(Instant::now(), timeout);
        loop {
            if let Some(ev) = self.ready.pop_front() {
                return Ok(Some(ev));
            }
            self.drain()?;
            self.process_due();
            if let Some(ev) = self.ready.pop_front() {
                return Ok(Some(ev));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let wake = self.next_due().map_or(deadline, |due| due.min(deadline));
            match self.rx.recv_timeout(wake.saturating_duration_since(now)) {
                Ok(raw) => self.ingest(raw, Instant::now()),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err(self.disconnected()),
            }
        }
    }

    /// Warnings collected since the last call (stale locks, unreadable files, overflows).
    pub fn warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    // ---- channel side ------------------------------------------------------------------

    fn drain(&mut self) -> Result<(), WatchError> {
        for _ in 0..DRAIN_BATCH {
            match self.rx.try_recv() {
                Ok(raw) => self.ingest(raw, Instant::now()),
                Err(TryRecvError::Empty) => return Ok(()),
                Err(TryRecvError::Disconnected) => return Err(self.disconnected()),
            }
        }
        Ok(())
    }

    fn disconnected(&self) -> WatchError {
        WatchError::Io {
            action: "receive file events for",
            path: self.opts.root.clone(),
            source: io::Error::other("the file-watching thread stopped"),
        }
    }

    fn ingest(&mut self, raw: Raw, now: Instant) {
        match raw {
            Raw::Fs(kind, path) => self.ingest_fs(kind, path, now),
            Raw::Rescan => {
                self.warn("the kernel's file-event queue overflowed; rescanning everything".into());
                self.full_rescan = true;
            }
            Raw::Error(e) => {
                let msg = advice(&e);
                self.warn(msg);
            }
        }
    }

    fn ingest_fs(&mut self, kind: RawKind, path: PathBuf, now: Instant) {
        use RawKind::*;
        let Some(loc) = classify(&self.opts.root, &path) else {
            return;
        };
        let debounce = self.opts.debounce;
        match loc {
            Loc::Context(ctx) => match kind {
                DirCreated | MovedIn => self.new_dirs.push(path),
                Removed | MovedOut => self.mark_context_dirty(&ctx, now),
                _ => {}
            },
            Loc::Mailbox(id) => match kind {
                DirCreated | MovedIn => self.new_dirs.push(path),
                Removed | MovedOut => self.mark_dirty(&id, now, Duration::ZERO),
                _ => {}
            },
            Loc::Child(id, name) => {
                if let Some(g) = greeting_file(&name) {
                    self.greeting_event(id, g, kind, now);
                    return;
                }
                // tmp/, secret.conf and foreign folders are not messages.
                if !is_folder(&name) {
                    return;
                }
                match kind {
                    DirCreated | MovedIn => self.new_dirs.push(path),
                    _ => self.mark_dirty(&id, now, debounce),
                }
            }
            Loc::Entry(id, folder, name) => {
                if !is_folder(&folder) {
                    return;
                }
                if !self.mailboxes.contains_key(&id) {
                    // Its directory event is still queued or was lost: meet the mailbox first.
                    if let Some(mdir) = path.parent().and_then(Path::parent) {
                        self.new_dirs.push(mdir.to_path_buf());
                    }
                }
                self.mark_dirty(&id, now, debounce);
                if kind == Removed && LOCK_NAMES.contains(&name.as_str()) {
                    // Asterisk is done with the folder: check waiting messages now, not at the
                    // next poll.
                    for c in self.candidates.values_mut() {
                        if c.id == id && c.folder == folder {
                            c.due = now;
                        }
                    }
                } else if matches!(kind, MovedIn | Written)
                    && NEW_FOLDERS.contains(&folder.as_str())
                {
                    // Only a completed .txt counts: renamed in from tmp/ or closed after a copy.
                    // Never Create (copies are written in place) nor audio files (spec §7.5).
                    if let Some(number) = msg_number(&name) {
                        self.add_candidate(path, id, folder, number, now);
                    }
                }
            }
        }
    }

    // ---- scheduling ---------------------------------------------------------------------

    fn next_due(&self) -> Option<Instant> {
        if !self.new_dirs.is_empty()
            || self.full_rescan
            || self.overflow.any.load(Ordering::Acquire)
        {
            return Some(Instant::now());
        }
        self.candidates
            .values()
            .map(|c| c.due)
            .chain(self.dirty.values().map(|d| d.due))
            .chain(self.greetings.values().map(|g| g.due))
            .min()
    }

    fn process_due(&mut self) {
        let now = Instant::now();
        self.handle_overflow(now);
        self.process_new_dirs(now);

        let mut due: Vec<(Instant, PathBuf)> = self
            .candidates
            .iter()
            .filter(|(_, c)| c.due <= now)
            .map(|(p, c)| (c.first, p.clone()))
            .collect();
        due.sort();
        for (_, path) in due {
            self.try_candidate(path, now);
        }

        // After the candidates, so a message is announced by the fast path when it can be.
        let mut boxes: Vec<BoxId> = self
            .dirty
            .iter()
            .filter(|(_, d)| d.due <= now)
            .map(|(id, _)| id.clone())
            .collect();
        boxes.sort();
        for id in boxes {
            self.rescan(&id, now);
        }
        self.process_greetings(now);
        self.compact_txts();
    }

    /// Debounce: due `delay` after the latest event, but not later than a bound after the
    /// first one, so a busy mailbox still gets its diff.
    fn mark_dirty(&mut self, id: &BoxId, now: Instant, delay: Duration) {
        let want = later(now, delay);
        let cap = self
            .opts
            .debounce
            .saturating_mul(8)
            .max(Duration::from_secs(1));
        match self.dirty.get_mut(id) {
            Some(d) => d.due = want.min(later(d.first, cap)),
            None => {
                self.dirty.insert(
                    id.clone(),
                    Dirty {
                        first: now,
                        due: want,
                    },
                );
            }
        }
    }

    fn mark_context_dirty(&mut self, ctx: &str, now: Instant) {
        let ids: Vec<BoxId> = self
            .mailboxes
            .keys()
            .filter(|(c, _)| c == ctx)
            .cloned()
            .collect();
        for id in ids {
            self.mark_dirty(&id, now, Duration::ZERO);
        }
    }

    fn add_candidate(
        &mut self,
        path: PathBuf,
        id: BoxId,
        folder: String,
        number: u16,
        now: Instant,
    ) {
        // A further write restarts the clock of an incomplete .txt.
        self.candidates.insert(
            path,
            Candidate {
                id,
                folder,
                number,
                first: now,
                due: now,
            },
        );
    }

    fn handle_overflow(&mut self, now: Instant) {
        if self.overflow.any.swap(false, Ordering::AcqRel) {
            let prefixes = std::mem::take(
                &mut *self
                    .overflow
                    .prefixes
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            );
            if self.overflow.full.swap(false, Ordering::AcqRel) {
                self.full_rescan = true;
            }
            // The callback may set the flag after we took its prefixes: then there is nothing new.
            if prefixes.is_empty() && !self.full_rescan {
                return;
            }
            self.warn(format!(
                "file events came faster than they were handled; rescanning {}",
                if self.full_rescan {
                    "everything".to_string()
                } else {
                    format!("{} mailbox(es)", prefixes.len())
                }
            ));
            for prefix in prefixes {
                match classify(&self.opts.root, &prefix) {
                    Some(Loc::Context(ctx)) => {
                        self.mark_context_dirty(&ctx, now);
                        self.new_dirs.push(prefix);
                    }
                    Some(Loc::Mailbox(id)) => {
                        self.mark_dirty(&id, now, Duration::ZERO);
                        self.new_dirs.push(prefix);
                    }
                    _ => self.full_rescan = true,
                }
            }
        }
        if self.full_rescan {
            self.full_rescan = false;
            // Directories created while events were lost have no inotify watch yet; watching
            // the roots again adds them (existing watches are kept).
            for dir in self.watch_roots.clone() {
                if let Err(e) = self.source.watch(&dir) {
                    let msg = advice(&e);
                    self.warn(msg);
                }
            }
            match self.discover(false) {
                Ok(found) => self.new_dirs.extend(found.into_iter().map(|(_, dir)| dir)),
                Err(e) => self.warn(e.to_string()),
            }
            // Known mailboxes too: this also notices mailboxes that disappeared.
            let ids: Vec<BoxId> = self.mailboxes.keys().cloned().collect();
            for id in ids {
                self.mark_dirty(&id, now, Duration::ZERO);
            }
        }
    }

    // ---- new directories ------------------------------------------------------------------

    fn process_new_dirs(&mut self, now: Instant) {
        let dirs = std::mem::take(&mut self.new_dirs);
        let mut done = HashSet::new();
        for dir in dirs {
            if !done.insert(dir.clone()) || !dir.is_dir() {
                continue;
            }
            match classify(&self.opts.root, &dir) {
                Some(Loc::Context(_)) => {
                    let boxes: Vec<(BoxId, PathBuf)> = subdirs(&dir)
                        .into_iter()
                        .filter_map(|p| match classify(&self.opts.root, &p) {
                            Some(Loc::Mailbox(id)) => Some((id, p)),
                            _ => None,
                        })
                        .collect();
                    for (id, mdir) in boxes {
                        self.found_mailbox(id, mdir, now);
                    }
                }
                Some(Loc::Mailbox(id)) => self.found_mailbox(id, dir, now),
                Some(Loc::Child(id, folder)) if is_folder(&folder) => {
                    match (self.mailboxes.contains_key(&id), dir.parent()) {
                        (false, Some(mdir)) => self.found_mailbox(id, mdir.to_path_buf(), now),
                        _ => {
                            self.mark_dirty(&id, now, self.opts.debounce);
                            if NEW_FOLDERS.contains(&folder.as_str()) {
                                self.candidates_in(&id, &dir, &folder, now);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }

    fn found_mailbox(&mut self, id: BoxId, dir: PathBuf, now: Instant) {
        if !self.mailboxes.contains_key(&id) {
            self.mailboxes
                .insert(id.clone(), MailboxState::new(dir.clone()));
            if self.opts.all_events {
                self.emit(EventKind::MailboxCreated, None, None, &id);
            }
        }
        // Files created right after mkdir may never produce an event (the watch on the new
        // directory is added a moment later): walk it now, and rescan after the debounce window.
        for folder in NEW_FOLDERS {
            self.candidates_in(&id, &dir.join(folder), folder, now);
        }
        self.mark_dirty(&id, now, self.opts.debounce);
    }

    fn candidates_in(&mut self, id: &BoxId, folder_dir: &Path, folder: &str, now: Instant) {
        let found: Vec<(PathBuf, u16)> = WalkDir::new(folder_dir)
            .min_depth(1)
            .max_depth(1)
            .follow_links(true)
            .into_iter()
            .filter_map(Result::ok)
            .filter_map(|e| {
                let n = e.file_name().to_str().and_then(msg_number)?;
                Some((e.into_path(), n))
            })
            .collect();
        for (path, number) in found {
            self.add_candidate(path, id.clone(), folder.to_string(), number, now);
        }
    }

    /// Mailbox directories in the watched scope.
    fn discover(&mut self, strict: bool) -> Result<Vec<(BoxId, PathBuf)>, WatchError> {
        let mut found = Vec::new();
        let mut warnings = Vec::new();
        for top in &self.watch_roots {
            let depth = match classify(&self.opts.root, top) {
                None => 2,
                Some(Loc::Context(_)) => 1,
                _ => 0,
            };
            for item in WalkDir::new(top)
                .follow_links(true)
                .min_depth(depth)
                .max_depth(depth)
            {
                match item {
                    Ok(e) if e.file_type().is_dir() => {
                        if let Some(Loc::Mailbox(id)) = classify(&self.opts.root, e.path()) {
                            found.push((id, e.into_path()));
                        }
                    }
                    Ok(_) => {}
                    Err(e) if strict && e.depth() == 0 => {
                        return Err(WatchError::Io {
                            action: "read",
                            path: top.clone(),
                            source: e.into(),
                        })
                    }
                    Err(e) => warnings.push(format!("cannot read the spool: {e}")),
                }
            }
        }
        for msg in warnings {
            self.warn(msg);
        }
        Ok(found)
    }

    // ---- fast path: New ---------------------------------------------------------------------

    fn try_candidate(&mut self, path: PathBuf, now: Instant) {
        let Some(c) = self.candidates.get(&path).cloned() else {
            return;
        };
        let (Some(folder_dir), true) = (path.parent(), self.mailboxes.contains_key(&c.id)) else {
            self.candidates.remove(&path);
            return;
        };
        let folder_dir = folder_dir.to_path_buf();
        if let LockState::Held = self.lock_state(&folder_dir, c.first, now) {
            self.reschedule(&path, later(now, LOCK_POLL));
            return;
        }
        let give_up = self.opts.lock_stale_after;
        let waited = now.saturating_duration_since(c.first);
        let Some(slot) = Slot::new(&c.folder, c.number) else {
            self.candidates.remove(&path);
            return;
        };
        let accept_unterminated = waited >= UNTERMINATED_GRACE.min(give_up);
        match read_entry(At::Path(&path), accept_unterminated) {
            ReadOutcome::Gone => {
                // Renamed away (renumbering) or deleted: the new name has its own event.
                self.candidates.remove(&path);
            }
            ReadOutcome::Failed(e) => {
                self.candidates.remove(&path);
                self.warn(format!("cannot read {}: {e}", rel(&self.opts.root, &path)));
            }
            ReadOutcome::Incomplete if waited < give_up => {
                self.reschedule(&path, later(now, PARSE_RETRY));
            }
            ReadOutcome::Incomplete => {
                self.candidates.remove(&path);
                self.warn(format!(
                    "{}: still no [message] section with origtime after {} s; ignored until it is written again",
                    rel(&self.opts.root, &path),
                    waited.as_secs()
                ));
            }
            ReadOutcome::Ok(entry) => {
                self.candidates.remove(&path);
                self.consider_new(&c.id, slot, entry);
            }
        }
    }

    fn reschedule(&mut self, path: &Path, due: Instant) {
        if let Some(c) = self.candidates.get_mut(path) {
            c.due = due;
        }
    }

    fn consider_new(&mut self, id: &BoxId, slot: Slot, entry: Entry) {
        let Some(mb) = self.mailboxes.get_mut(id) else {
            return;
        };
        let ident = ident_key(&entry.identity);
        // Renumbering, a move, "unread" or a save into INBOX: the message was already here.
        if mb.knows(ident) {
            return;
        }
        // Same slot, same origtime, other identity: the .txt was rewritten in place
        // (add_message_id() adds a msg_id, spec §3.5), not a new message.
        if mb
            .snapshot
            .get(slot)
            .is_some_and(|r| r.orig == orig_key(&entry.origtime))
        {
            let txt = self.txts.as_mut().map(|t| t.put(&entry.txt));
            if let Some(old) = mb.snapshot.insert(entry.rec(slot), txt) {
                if let Some(t) = self.txts.as_mut() {
                    t.release(old);
                }
            }
            return;
        }
        let rewritten = mb
            .announced
            .iter()
            .find(|(_, (s, e))| *s == slot && e.origtime == entry.origtime)
            .map(|(ident, _)| *ident);
        if let Some(old) = rewritten {
            mb.announced.remove(&old);
            mb.announced.insert(ident, (slot, entry));
            return;
        }
        let message = seen(id, &mb.dir, slot, &entry);
        mb.announced.insert(ident, (slot, entry));
        self.emit(EventKind::New, Some(message), None, id);
    }

    // ---- locks --------------------------------------------------------------------------------

    fn lock_state(&mut self, folder_dir: &Path, waiting_since: Instant, now: Instant) -> LockState {
        let mut state = LockState::Free;
        for name in LOCK_NAMES {
            let path = folder_dir.join(name);
            let md = match fs::symlink_metadata(&path) {
                Ok(md) => md,
                Err(_) => {
                    if !self.warned_locks.is_empty() {
                        self.warned_locks.retain(|(p, _)| p != &path);
                    }
                    continue;
                }
            };
            let age = md
                .modified()
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .unwrap_or_default();
            // Our own waiting bounds it too: a lock taken again and again never looks old.
            let held = age.max(now.saturating_duration_since(waiting_since));
            if held < self.opts.lock_stale_after {
                return LockState::Held;
            }
            if self
                .warned_locks
                .insert((path.clone(), std::os::unix::fs::MetadataExt::ino(&md)))
            {
                self.warn(format!(
                    "{} held for {} s (stale?)",
                    rel(&self.opts.root, &path),
                    held.as_secs()
                ));
            }
            state = LockState::Stale;
        }
        state
    }

    fn any_lock_held(&mut self, mailbox_dir: &Path, since: Instant, now: Instant) -> bool {
        FOLDERS.iter().any(|f| {
            matches!(
                self.lock_state(&mailbox_dir.join(f), since, now),
                LockState::Held
            )
        })
    }

    // ---- slow path: snapshots and diffs -------------------------------------------------------

    fn rescan(&mut self, id: &BoxId, now: Instant) {
        let Some(d) = self.dirty.get(id).copied() else {
            return;
        };
        let Some(dir) = self.mailboxes.get(id).map(|m| m.dir.clone()) else {
            self.dirty.remove(id);
            return;
        };
        // A lock means a multi-step operation (copy, delete, renumber) is under way.
        if dir.is_dir() && self.any_lock_held(&dir, d.first, now) {
            self.dirty.insert(
                id.clone(),
                Dirty {
                    first: d.first,
                    due: later(now, LOCK_POLL),
                },
            );
            return;
        }
        self.dirty.remove(id);

        let grace = UNTERMINATED_GRACE.min(self.opts.lock_stale_after);
        let mut warnings = Vec::new();
        let Some(mb) = self.mailboxes.get(id) else {
            return;
        };
        let accept = mb
            .incomplete_since
            .is_some_and(|t| now.saturating_duration_since(t) >= grace);
        let scanned = scan_mailbox(
            &self.opts.root,
            &dir,
            Some(&mb.snapshot),
            accept,
            &mut warnings,
        );
        let (snapshot, fresh, incomplete) = match scanned {
            Some((found, incomplete)) => {
                let (snap, fresh) = build_snapshot(found, &mb.snapshot, self.txts.as_mut());
                (Some(snap), fresh, incomplete)
            }
            None => (None, HashMap::new(), 0),
        };
        let empty = Snapshot::default();
        let after = snapshot.as_ref().unwrap_or(&empty);
        let changes = diff(
            id,
            mb,
            after,
            &fresh,
            self.txts.as_ref(),
            self.opts.all_events,
        );
        drop(fresh);

        for msg in warnings {
            self.warn(msg);
        }
        for c in changes {
            self.emit(c.kind, c.message, c.from, id);
        }
        let replaced = match snapshot {
            None => {
                // The mailbox directory is gone.
                self.candidates.retain(|_, c| &c.id != id);
                self.mailboxes.remove(id).map(|mb| mb.snapshot)
            }
            Some(snapshot) => {
                let give_up = self.opts.lock_stale_after;
                let mut retry = false;
                let mut replaced = None;
                if let Some(mb) = self.mailboxes.get_mut(id) {
                    replaced = Some(std::mem::replace(&mut mb.snapshot, snapshot));
                    mb.announced.clear();
                    if incomplete == 0 {
                        mb.incomplete_since = None;
                    } else {
                        let since = *mb.incomplete_since.get_or_insert(now);
                        retry = now.saturating_duration_since(since) < give_up;
                    }
                }
                if retry {
                    self.dirty.insert(
                        id.clone(),
                        Dirty {
                            first: now,
                            due: later(now, INCOMPLETE_RETRY),
                        },
                    );
                }
                replaced
            }
        };
        if let (Some(store), Some(old)) = (self.txts.as_mut(), replaced) {
            for r in old.txts {
                store.release(r);
            }
        }
    }

    /// Rewrites the kept `.txt`s without those no snapshot uses any more.
    fn compact_txts(&mut self) {
        let Some(old) = self.txts.take_if(|t| t.wants_compaction()) else {
            return;
        };
        let mut new = TxtStore::new();
        for mb in self.mailboxes.values_mut() {
            for r in &mut mb.snapshot.txts {
                if let Some(bytes) = old.get(*r) {
                    *r = new.put(&bytes);
                } else {
                    *r = TXT_NONE;
                }
            }
        }
        self.txts = Some(new);
    }

    fn emit(
        &mut self,
        kind: EventKind,
        message: Option<SeenMessage>,
        from: Option<MessageKey>,
        id: &BoxId,
    ) {
        self.ready.push_back(WatchEvent {
            kind,
            message,
            from,
            mailbox: id.clone(),
            at: SystemTime::now(),
        });
    }

    fn warn(&mut self, msg: String) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(msg);
        }
    }
}

// ---- greetings: files in the mailbox directory itself (spec §1.4, §7.4) -------------------
//
// Kept apart from the message machinery: no snapshot, no lock (Asterisk takes none for
// greetings). Asterisk records `<name>.tmp.<ext>` and, when the owner accepts, renames each
// format to `<name>.<ext>`; vmtool's `greeting set` renames too. The renames of one greeting
// come in a burst, so events are gathered per greeting and reported once it has been quiet
// for the debounce window, from what the directory holds then.

/// File events seen for one greeting since it was last reported.
#[derive(Debug, Clone, Copy)]
struct GreetingChange {
    /// A file of it was renamed in or closed after writing.
    set: bool,
    /// A file of it was removed or renamed away.
    removed: bool,
    due: Instant,
}

/// `<name>.<ext>` of a greeting (not `<name>.tmp.<ext>`, a recording in progress, nor
/// `temp.txt` or `temp.vmtool-until`).
fn greeting_file(name: &str) -> Option<Greeting> {
    let (base, ext) = name.split_once('.')?;
    let g = Greeting::ALL.into_iter().find(|g| g.base() == base)?;
    let plain = !ext.is_empty() && ext.bytes().all(|b| b.is_ascii_alphanumeric());
    (plain && ext != "tmp" && !ext.eq_ignore_ascii_case("txt")).then_some(g)
}

impl Watcher {
    fn greeting_event(&mut self, id: BoxId, g: Greeting, kind: RawKind, now: Instant) {
        if !self.opts.all_events {
            return;
        }
        let (set, removed) = match kind {
            RawKind::MovedIn | RawKind::Written => (true, false),
            RawKind::Removed | RawKind::MovedOut => (false, true),
            // A file being created or written is not a greeting yet.
            _ => return,
        };
        let due = later(now, self.opts.debounce);
        let c = self.greetings.entry((id, g)).or_insert(GreetingChange {
            set: false,
            removed: false,
            due,
        });
        c.set |= set;
        c.removed |= removed;
        c.due = due;
    }

    fn process_greetings(&mut self, now: Instant) {
        let mut due: Vec<(BoxId, Greeting)> = self
            .greetings
            .iter()
            .filter(|(_, c)| c.due <= now)
            .map(|(k, _)| k.clone())
            .collect();
        due.sort();
        for key in due {
            let Some(c) = self.greetings.remove(&key) else {
                continue;
            };
            let (id, g) = key;
            let dir = self.opts.root.join(&id.0).join(&id.1);
            let present = greeting_present(&dir, g);
            if present && (c.set || c.removed) {
                // Also a format removed while others stay: the greeting changed.
                self.emit(EventKind::Greeting(g), None, None, &id);
            } else if !present && c.removed {
                self.emit(EventKind::GreetingRemoved(g), None, None, &id);
            }
        }
    }
}

/// Whether a mailbox directory holds a file of greeting `g` (regular files only).
fn greeting_present(mailbox_dir: &Path, g: Greeting) -> bool {
    let Ok(rd) = fs::read_dir(mailbox_dir) else {
        return false;
    };
    rd.flatten().any(|e| {
        e.file_name().to_str().and_then(greeting_file) == Some(g)
            && e.file_type().is_ok_and(|t| t.is_file())
    })
}

#[cfg(test)]
mod greeting_tests {
    use super::*;

    #[test]
    fn greeting_files_are_named_as_asterisk_names_them() {
        assert_eq!(greeting_file("unavail.WAV"), Some(Greeting::Unavail));
        assert_eq!(greeting_file("busy.gsm"), Some(Greeting::Busy));
        assert_eq!(greeting_file("greet.wav16"), Some(Greeting::Greet));
        assert_eq!(greeting_file("temp.wav"), Some(Greeting::Temp));
        // A recording in progress, vmtool's end date, the temp.txt vm_delete() tries.
        for name in [
            "busy.tmp.wav",
            "temp.vmtool-until",
            "temp.txt",
            "temp.",
            "temp",
            "unavail.wav.bak",
            "secret.conf",
            "INBOX",
        ] {
            assert_eq!(greeting_file(name), None, "{name}");
        }
    }
}

fn deliver(tx: &SyncSender<Raw>, overflow: &Overflow, root: &Path, raw: Raw) {
    match tx.try_send(raw) {
        Ok(()) => {}
        Err(TrySendError::Full(raw)) => overflow.record(root, raw),
        // The Watcher is being dropped.
        Err(TrySendError::Disconnected(_)) => {}
    }
}

/// Turns an OS error into something the operator can act on.
fn advice(err: &notify::Error) -> String {
    const WATCHES: &str = "too many directories to watch: raise fs.inotify.max_user_watches \
                           (sysctl fs.inotify.max_user_watches=524288)";
    let what = match &err.kind {
        notify::ErrorKind::MaxFilesWatch => WATCHES.to_string(),
        notify::ErrorKind::Io(e) => match e.raw_os_error() {
            Some(ENOSPC) => WATCHES.to_string(),
            Some(EMFILE) => "too many inotify instances or open files: raise \
                             fs.inotify.max_user_instances (sysctl fs.inotify.max_user_instances=512) \
                             or the open-file limit (ulimit -n)"
                .to_string(),
            _ if e.kind() == io::ErrorKind::PermissionDenied => {
                format!("cannot watch: {e}; run vmtool as the Asterisk user")
            }
            _ => format!("cannot watch: {e}"),
        },
        notify::ErrorKind::PathNotFound => "cannot watch: directory not found".to_string(),
        _ => format!("cannot watch: {err}"),
    };
    match err.paths.first() {
        Some(p) => format!("{what} ({})", p.display()),
        None => what,
    }
}

fn notify_error(err: notify::Error) -> WatchError {
    WatchError::Notify(advice(&err), err)
}

fn resolve_scope(root: &Path, scope: &[PathBuf]) -> Result<Vec<PathBuf>, WatchError> {
    if scope.is_empty() {
        return Ok(vec![root.to_path_buf()]);
    }
    let mut out = Vec::new();
    for s in scope {
        let path = if s.is_absolute() {
            s.clone()
        } else {
            root.join(s)
        };
        match classify(root, &path) {
            Some(Loc::Context(_)) | Some(Loc::Mailbox(_)) => {}
            _ => {
                return Err(WatchError::Scope {
                    path,
                    reason: "not a context or mailbox directory inside the spool",
                })
            }
        }
        if !path.is_dir() {
            return Err(WatchError::Io {
                action: "watch",
                path,
                source: io::Error::new(io::ErrorKind::NotFound, "no such directory"),
            });
        }
        out.push(path);
    }
    Ok(out)
}

// ---- paths ---------------------------------------------------------------------------------

/// Where a path is in the spool tree.
enum Loc {
    /// `ROOT/<context>`
    Context(String),
    /// `ROOT/<context>/<box>`
    Mailbox(BoxId),
    /// `ROOT/<context>/<box>/<name>`: a folder, `tmp`, a greeting…
    Child(BoxId, String),
    /// `ROOT/<context>/<box>/<folder>/<name>`
    Entry(BoxId, String, String),
}

fn classify(root: &Path, path: &Path) -> Option<Loc> {
    let rel = path.strip_prefix(root).ok()?;
    let mut parts: Vec<&str> = Vec::with_capacity(4);
    for c in rel.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str()?),
            Component::CurDir => {}
            _ => return None,
        }
        if parts.len() > 4 {
            return None;
        }
    }
    let id = |c: &str, b: &str| (c.to_string(), b.to_string());
    match parts.as_slice() {
        [c] => Some(Loc::Context(c.to_string())),
        [c, b] => Some(Loc::Mailbox(id(c, b))),
        [c, b, x] => Some(Loc::Child(id(c, b), x.to_string())),
        [c, b, f, n] => Some(Loc::Entry(id(c, b), f.to_string(), n.to_string())),
        _ => None,
    }
}

/// `ROOT/<context>/<box>` (or `ROOT/<context>`) of a path, for overflow bookkeeping.
fn mailbox_prefix(root: &Path, path: &Path) -> Option<PathBuf> {
    let rel = path.strip_prefix(root).ok()?;
    let mut prefix = root.to_path_buf();
    let mut n = 0;
    for c in rel.components() {
        if let Component::Normal(s) = c {
            prefix.push(s);
            n += 1;
            if n == 2 {
                break;
            }
        }
    }
    (n > 0).then_some(prefix)
}

fn is_folder(name: &str) -> bool {
    FOLDERS.contains(&name)
}

/// `msgNNNN.txt` → NNNN (exactly four digits, lower-case `.txt`: what Asterisk writes).
fn msg_number(name: &str) -> Option<u16> {
    let digits = name.strip_prefix("msg")?.strip_suffix(".txt")?;
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    WalkDir::new(dir)
        .min_depth(1)
        .max_depth(1)
        .follow_links(true)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_dir())
        .map(walkdir::DirEntry::into_path)
        .collect()
}

fn rel(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn key_of(id: &BoxId, slot: Slot) -> MessageKey {
    MessageKey {
        context: id.0.clone(),
        mailbox: id.1.clone(),
        folder: slot.folder().to_string(),
        number: slot.number,
    }
}

fn txt_path(mailbox_dir: &Path, slot: Slot) -> PathBuf {
    mailbox_dir
        .join(slot.folder())
        .join(format!("msg{:04}.txt", slot.number))
}

fn seen(id: &BoxId, mailbox_dir: &Path, slot: Slot, entry: &Entry) -> SeenMessage {
    SeenMessage {
        key: key_of(id, slot),
        txt_path: txt_path(mailbox_dir, slot),
        identity: entry.identity.clone(),
        txt: entry.txt.to_vec(),
    }
}

/// Whether a slot has audio, all of it regular files of a size vmtool reads
/// (links and special files are not followed or opened).
fn audio_is_regular(mailbox_dir: &Path, slot: Slot) -> bool {
    let prefix = format!("msg{:04}.", slot.number);
    let Ok(rd) = fs::read_dir(mailbox_dir.join(slot.folder())) else {
        return false;
    };
    let mut any = false;
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(ext) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        if ext.eq_ignore_ascii_case("txt") {
            continue;
        }
        // Regular, and within what vmtool reads of a message file.
        let ok = e
            .metadata()
            .is_ok_and(|m| m.is_file() && m.len() <= crate::fsutil::MAX_AUDIO_BYTES);
        if !ok {
            return false;
        }
        any = true;
    }
    any
}

/// `now + d` without the overflow panic of `Instant + Duration`.
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(86_400)))
        .unwrap_or(now)
}

// ---- reading .txt files ------------------------------------------------------------------

/// The two fields the identity needs, read the way Asterisk's config parser would
/// (`;` comments, case-insensitive keys, last duplicate wins, first `[message]` only).
#[derive(Debug, PartialEq, Eq)]
struct TxtInfo {
    origtime: String,
    msg_id: Option<String>,
    /// Ends with a newline, as every file Asterisk writes does; otherwise probably mid-write.
    terminated: bool,
}

/// `None` while the file is not complete enough: no `[message]` line or no `origtime`.
fn parse_txt(bytes: &[u8]) -> Option<TxtInfo> {
    let text = String::from_utf8_lossy(bytes);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    // 0: before [message], 1: inside it, 2: after it.
    let mut state = 0;
    let mut origtime = None;
    let mut msg_id = None;
    for raw in text.split('\n') {
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let name = rest.split(']').next().unwrap_or("").trim();
            state = match state {
                0 if name.eq_ignore_ascii_case("message") => 1,
                0 => 0,
                _ => 2,
            };
            continue;
        }
        if state != 1 {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let value = v.strip_prefix('>').unwrap_or(v).trim().to_string();
        match k.trim().to_ascii_lowercase().as_str() {
            "origtime" => origtime = Some(value),
            "msg_id" => msg_id = Some(value),
            _ => {}
        }
    }
    Some(TxtInfo {
        origtime: origtime.filter(|v| !v.is_empty())?,
        msg_id: msg_id.filter(|v| !v.is_empty()),
        terminated: bytes.last() == Some(&b'\n'),
    })
}

/// Cuts at the first `;` that is not escaped as `\;`.
fn strip_comment(line: &str) -> &str {
    let mut prev = 0u8;
    for (i, b) in line.bytes().enumerate() {
        if b == b';' && prev != b'\\' {
            return &line[..i];
        }
        prev = b;
    }
    line
}

fn identity(info: &TxtInfo, bytes: &[u8]) -> String {
    match &info.msg_id {
        Some(id) => format!("{id}/{}", info.origtime),
        None => {
            let digest = Sha256::digest(bytes);
            let mut s = String::with_capacity(7 + 64);
            s.push_str("sha256:");
            for b in digest {
                s.push_str(&format!("{b:02x}"));
            }
            s
        }
    }
}

/// First 8 bytes of the identity's SHA-256: what snapshots compare identities by.
fn ident_key(identity: &str) -> u64 {
    let d = Sha256::digest(identity.as_bytes());
    u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// `origtime` as Asterisk writes it (a decimal number) kept exactly; any other text as
/// 32 bits of its SHA-256. Only compared with the origtime at the same slot.
fn orig_key(origtime: &str) -> u32 {
    let canonical = !origtime.is_empty()
        && origtime.bytes().all(|b| b.is_ascii_digit())
        && (origtime == "0" || !origtime.starts_with('0'));
    match origtime.parse::<u32>() {
        Ok(n) if canonical => n,
        _ => {
            let d = Sha256::digest(origtime.as_bytes());
            u32::from_le_bytes([d[0], d[1], d[2], d[3]])
        }
    }
}

/// Where a `.txt` is: a name in an open folder (scans), or a path (an event's).
#[derive(Clone, Copy)]
enum At<'a> {
    Dir(&'a fs::File, &'a str),
    Path(&'a Path),
}

enum ReadOutcome {
    Ok(Entry),
    Gone,
    Incomplete,
    Failed(io::Error),
}

/// Reads one `.txt`, opened the one safe way (no link followed, regular files only, bounded
/// by its size), so a special file an event names is never opened further.
fn read_entry(at: At<'_>, accept_unterminated: bool) -> ReadOutcome {
    let opened = match at {
        At::Dir(dir, name) => crate::fsutil::open_regular_at_len(dir, name),
        At::Path(path) => crate::fsutil::open_regular(path).map(|(f, md)| (f, md.len())),
    };
    let (file, len) = match opened {
        Ok(x) => x,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return ReadOutcome::Gone,
        // Renamed away and replaced by a directory: no message here.
        Err(e) if crate::fsutil::not_regular(&e).is_some_and(|n| n.kind == "directory") => {
            return ReadOutcome::Gone
        }
        Err(e) => return ReadOutcome::Failed(e),
    };
    let bytes = match crate::fsutil::Bounded::with_len(file, len, crate::fsutil::MAX_TXT_BYTES)
        .and_then(|mut b| {
            use std::io::Read;
            let mut buf = Vec::with_capacity(usize::try_from(b.len()).unwrap_or(0));
            b.read_to_end(&mut buf).map(|_| buf)
        }) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return ReadOutcome::Gone,
        Err(e) => return ReadOutcome::Failed(e),
    };
    match parse_txt(&bytes) {
        Some(info) if info.terminated || accept_unterminated => {
            ReadOutcome::Ok(entry_of(info, bytes))
        }
        _ => ReadOutcome::Incomplete,
    }
}

fn entry_of(info: TxtInfo, bytes: Vec<u8>) -> Entry {
    Entry {
        identity: identity(&info, &bytes),
        origtime: info.origtime,
        txt: bytes.into(),
    }
}

/// A message as a scan found it: its record, and the entry when it was read now (a record
/// carried over from the previous snapshot has none).
type Scanned = (Rec, Option<Entry>);

/// Reads the messages of a mailbox. `None` when the mailbox directory is gone; otherwise its
/// messages sorted by slot and the number of `.txt` files still being written. A file that
/// cannot be read right now keeps its previous record, so a rewrite in progress does not look
/// like a deletion.
fn scan_mailbox(
    root: &Path,
    dir: &Path,
    prev: Option<&Snapshot>,
    accept_unterminated: bool,
    warnings: &mut Vec<String>,
) -> Option<(Vec<Scanned>, usize)> {
    let kept = |slot: Slot| prev.and_then(|p| p.get(slot)).map(|r| (*r, None));
    match fs::metadata(dir) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => return None,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => {
            warnings.push(format!("cannot read {}: {e}", rel(root, dir)));
            let all = prev.map_or_else(Vec::new, |p| p.recs.iter().map(|r| (*r, None)).collect());
            return Some((all, 0));
        }
    }
    let mut found: Vec<Scanned> = Vec::new();
    let mut incomplete = 0;
    for folder in FOLDERS {
        let fdir = dir.join(folder);
        // The folder is opened once; its files are opened relative to it.
        let entries = match fs::read_dir(&fdir).and_then(|rd| Ok((rd, fs::File::open(&fdir)?))) {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                warnings.push(format!("cannot read {}: {e}", rel(root, &fdir)));
                if let Some(p) = prev {
                    found.extend(
                        p.recs
                            .iter()
                            .filter(|r| r.slot.folder() == folder)
                            .map(|r| (*r, None)),
                    );
                }
                continue;
            }
        };
        let (entries, fd) = entries;
        for item in entries {
            let Ok(item) = item else { continue };
            let name = item.file_name();
            let Some((name, number)) = name.to_str().and_then(|n| Some((n, msg_number(n)?))) else {
                continue;
            };
            let Some(slot) = Slot::new(folder, number) else {
                continue;
            };
            match read_entry(At::Dir(&fd, name), accept_unterminated) {
                ReadOutcome::Ok(entry) => found.push((entry.rec(slot), Some(entry))),
                ReadOutcome::Gone => {}
                ReadOutcome::Incomplete => {
                    incomplete += 1;
                    found.extend(kept(slot));
                }
                ReadOutcome::Failed(e) => {
                    let path = fdir.join(name);
                    warnings.push(format!("cannot read {}: {e}", rel(root, &path)));
                    found.extend(kept(slot));
                }
            }
        }
    }
    found.sort_unstable_by_key(|(r, _)| r.slot);
    Some((found, incomplete))
}

/// A scan as a snapshot: `.txt`s carried over from `prev` or stored now (when `txts` keeps
/// them); the entries read now, for the diff.
fn build_snapshot(
    scanned: Vec<Scanned>,
    prev: &Snapshot,
    mut txts: Option<&mut TxtStore>,
) -> (Snapshot, HashMap<Slot, Entry>) {
    let mut snap = Snapshot {
        recs: Vec::with_capacity(scanned.len()),
        txts: Vec::with_capacity(if txts.is_some() { scanned.len() } else { 0 }),
    };
    let mut fresh = HashMap::new();
    for (rec, entry) in scanned {
        snap.recs.push(rec);
        if let Some(store) = txts.as_deref_mut() {
            let r = match &entry {
                Some(e) => store.put(&e.txt),
                None => match prev.txt(rec.slot) {
                    Some(r) => {
                        store.retain(r);
                        r
                    }
                    // Not kept before (cannot happen while txts are kept): nothing to show.
                    None => store.put(b""),
                },
            };
            snap.txts.push(r);
        }
        if let Some(e) = entry {
            fresh.insert(rec.slot, e);
        }
    }
    (snap, fresh)
}

/// Compares what the mailbox held (last snapshot plus messages announced since) with what it
/// holds now, by identity: numbers may all have changed in between. `fresh` are the entries
/// the scan read; `txts` the kept `.txt`s (with `all_events`).
fn diff(
    id: &BoxId,
    old: &MailboxState,
    new: &Snapshot,
    fresh: &HashMap<Slot, Entry>,
    txts: Option<&TxtStore>,
    all_events: bool,
) -> Vec<Change> {
    let mut before = old.snapshot.by_identity();
    for (i, (slot, _)) in &old.announced {
        before.entry(*i).or_default().insert(*slot);
    }
    let after = new.by_identity();
    let old_orig = |ident: u64, slot: Slot| -> Option<u32> {
        match old.snapshot.get(slot).filter(|r| r.ident == ident) {
            Some(r) => Some(r.orig),
            None => old
                .announced
                .get(&ident)
                .filter(|(s, _)| *s == slot)
                .map(|(_, e)| orig_key(&e.origtime)),
        }
    };
    let kept = |snap: &Snapshot, slot: Slot| -> Option<Entry> {
        let bytes = txts?.get(snap.txt(slot)?)?;
        let info = parse_txt(&bytes)?;
        Some(entry_of(info, bytes))
    };
    // The message as last seen: announced, or kept.
    let old_message = |ident: u64, slot: Slot| -> Option<SeenMessage> {
        if old.snapshot.get(slot).is_some_and(|r| r.ident == ident) {
            return kept(&old.snapshot, slot).map(|e| seen(id, &old.dir, slot, &e));
        }
        old.announced
            .get(&ident)
            .filter(|(s, _)| *s == slot)
            .map(|(_, e)| seen(id, &old.dir, slot, e))
    };
    // The message as the scan found it: read now, kept, or (carried over without its
    // `.txt`) read again.
    let new_message = |slot: Slot| -> Option<SeenMessage> {
        new.get(slot)?;
        if let Some(e) = fresh.get(&slot) {
            return Some(seen(id, &old.dir, slot, e));
        }
        let e = kept(new, slot).or_else(|| {
            let path = txt_path(&old.dir, slot);
            let bytes = crate::fsutil::read_txt_file(&path).ok()?;
            let info = parse_txt(&bytes)?;
            Some(entry_of(info, bytes))
        })?;
        Some(seen(id, &old.dir, slot, &e))
    };

    let mut vanished: BTreeSet<u64> = before
        .keys()
        .filter(|i| !after.contains_key(*i))
        .copied()
        .collect();
    let mut appeared: BTreeSet<u64> = after
        .keys()
        .filter(|i| !before.contains_key(*i))
        .copied()
        .collect();

    // A .txt rewritten in place (same slot and origtime) changes a hash identity: same message.
    let mut pairs = Vec::new();
    for v in &vanished {
        for slot in before.get(v).into_iter().flatten() {
            let Some(now) = new.get(*slot) else {
                continue;
            };
            let same_time = old_orig(*v, *slot) == Some(now.orig);
            if same_time && appeared.contains(&now.ident) {
                pairs.push((*v, now.ident));
                break;
            }
        }
    }
    for (v, a) in pairs {
        vanished.remove(&v);
        appeared.remove(&a);
    }

    // Each group of events in the order of their identities.
    fn by_identity(mut group: Vec<Change>) -> Vec<Change> {
        group.sort_by(|a, b| {
            let key = |c: &Change| c.message.as_ref().map(|m| m.identity.clone());
            key(a).cmp(&key(b))
        });
        group
    }

    let mut changes = Vec::new();
    // Messages the fast path did not see (lost events, directories walked late).
    let mut group = Vec::new();
    for a in &appeared {
        if let Some(slot) = after
            .get(a)
            .into_iter()
            .flatten()
            .find(|s| s.is_new_folder())
        {
            if let Some(message) = new_message(*slot) {
                group.push(Change {
                    kind: EventKind::New,
                    message: Some(message),
                    from: None,
                });
            }
        }
    }
    changes.extend(by_identity(group));
    // A copy of a message the box already has (a forward to itself, a copied
    // `.txt`): msg_ids are not unique (spec §3.6), so a new `msgNNNN.txt` in
    // INBOX/Urgent whose identity is now in more places than before is new.
    // (A message saved into INBOX from another folder is reported too while
    // its source waits for the owner to leave VoiceMailMain: MWI counts it.)
    let mut group = Vec::new();
    for (i, a) in &after {
        let Some(b) = before.get(i).filter(|b| a.len() > b.len()) else {
            continue;
        };
        let extra = a.len() - b.len();
        for slot in a
            .iter()
            .filter(|s| !b.contains(*s) && s.is_new_folder())
            // A planted `.txt` next to a special file is no recording.
            .filter(|s| audio_is_regular(&old.dir, **s))
            .take(extra)
        {
            if let Some(message) = new_message(*slot) {
                group.push(Change {
                    kind: EventKind::New,
                    message: Some(message),
                    from: None,
                });
            }
        }
    }
    changes.extend(by_identity(group));
    if !all_events {
        return changes;
    }
    let mut group = Vec::new();
    for v in &vanished {
        let Some(slot) = before.get(v).and_then(|slots| slots.iter().next()) else {
            continue;
        };
        group.push(Change {
            kind: EventKind::Deleted,
            message: old_message(*v, *slot),
            from: Some(key_of(id, *slot)),
        });
    }
    changes.extend(by_identity(group));
    let mut group = Vec::new();
    for (i, b) in &before {
        let Some(a) = after.get(i) else {
            continue;
        };
        let fo: BTreeSet<&str> = b.iter().map(|s| s.folder()).collect();
        let fa: BTreeSet<&str> = a.iter().map(|s| s.folder()).collect();
        // Same folders: renumbering or nothing. More folders: a copy whose source is not
        // deleted yet (or an extra copy); the deletion, when it comes, gives the event.
        if fo == fa || fa.is_superset(&fo) {
            continue;
        }
        let lost: BTreeSet<&str> = fo.difference(&fa).copied().collect();
        let gained: BTreeSet<&str> = fa.difference(&fo).copied().collect();
        let Some(from) = b.iter().find(|s| lost.contains(s.folder())) else {
            continue;
        };
        let Some(to) = a
            .iter()
            .find(|s| gained.contains(s.folder()))
            .or_else(|| a.iter().next())
        else {
            continue;
        };
        let was_new = lost.iter().any(|f| NEW_FOLDERS.contains(f));
        let is_new = fa.iter().any(|f| NEW_FOLDERS.contains(f));
        let kind = if fa.iter().all(|f| *f == "Deleted") {
            EventKind::Deleted
        } else if was_new && !is_new && fa.contains("Old") {
            EventKind::Read
        } else {
            EventKind::Moved
        };
        group.push(Change {
            kind,
            message: new_message(*to),
            from: Some(key_of(id, *from)),
        });
    }
    changes.extend(by_identity(group));
    changes
}

// ---- kept .txt files (all_events) ----------------------------------------------------------

/// Where a kept `.txt` is: its record's offset in 8-byte units, top bit set when the
/// record is in memory rather than in the file. 4 bytes per message: at 1,000,000
/// messages the references are most of what `--all` adds to the resident set.
type TxtRef = u32;

const TXT_IN_MEMORY: u32 = 1 << 31;
/// A `.txt` that could not be kept (the store is full): its Deleted event shows no `.txt`.
const TXT_NONE: TxtRef = u32::MAX;
/// Records start on 8-byte boundaries: 31 bits of units address 16 GiB of each kind.
const TXT_ALIGN: u64 = 8;
/// A record is the `.txt`'s length (4 bytes, little-endian), then the `.txt`.
const TXT_HEADER: u64 = 4;
/// The file is compacted when it is this big and more than half of it is no longer used.
const TXT_COMPACT_MIN: u64 = 64 << 20;

/// The `.txt` of every message in the snapshots, for a Deleted event that shows a message
/// that is gone (only `all_events` reports those). Kept in an unlinked temporary file, so a
/// big spool costs page cache that the kernel may drop, not resident memory; in memory when
/// no temporary file can be written.
struct TxtStore {
    file: Option<fs::File>,
    /// False once a write failed (disk full): what follows goes to memory.
    file_ok: bool,
    end: u64,
    mem: Vec<u8>,
    /// Bytes still referenced by a snapshot.
    live: u64,
    /// The record being written, reused (one a message at start).
    record: Vec<u8>,
}

impl TxtStore {
    fn new() -> TxtStore {
        TxtStore {
            file: tempfile::tempfile().ok(),
            file_ok: true,
            end: 0,
            mem: Vec::new(),
            live: 0,
            record: Vec::new(),
        }
    }

    fn put(&mut self, bytes: &[u8]) -> TxtRef {
        let bytes = &bytes[..bytes.len().min(crate::fsutil::MAX_TXT_BYTES as usize)];
        let len = bytes.len() as u64;
        let mut record = std::mem::take(&mut self.record);
        record.clear();
        record.extend_from_slice(&(len as u32).to_le_bytes());
        record.extend_from_slice(bytes);
        let r = self.put_record(&record, len);
        self.record = record;
        r
    }

    /// Appends a record (length, then `len` bytes of `.txt`) on an 8-byte boundary.
    fn put_record(&mut self, record: &[u8], len: u64) -> TxtRef {
        use std::os::unix::fs::FileExt;
        if let (Some(f), true) = (&self.file, self.file_ok) {
            let at = self.end.next_multiple_of(TXT_ALIGN);
            let unit = at / TXT_ALIGN;
            if unit < u64::from(TXT_IN_MEMORY) && f.write_all_at(record, at).is_ok() {
                self.end = at + record.len() as u64;
                self.live += len;
                return unit as TxtRef;
            }
            // Disk full or the like: keep the rest in memory.
            self.file_ok = false;
        }
        let at = (self.mem.len() as u64).next_multiple_of(TXT_ALIGN);
        let unit = at / TXT_ALIGN;
        if unit >= u64::from(TXT_IN_MEMORY) - 1 {
            return TXT_NONE;
        }
        self.mem.resize(at as usize, 0);
        self.mem.extend_from_slice(record);
        self.live += len;
        TXT_IN_MEMORY | unit as TxtRef
    }

    /// The record's offset and whether it is in memory.
    fn locate(r: TxtRef) -> Option<(u64, bool)> {
        (r != TXT_NONE).then(|| {
            (
                u64::from(r & !TXT_IN_MEMORY) * TXT_ALIGN,
                r & TXT_IN_MEMORY != 0,
            )
        })
    }

    /// Fills `buf` from the record area at `off`.
    fn read_at(&self, off: u64, in_memory: bool, buf: &mut [u8]) -> Option<()> {
        use std::os::unix::fs::FileExt;
        if in_memory {
            let off = usize::try_from(off).ok()?;
            buf.copy_from_slice(self.mem.get(off..off.checked_add(buf.len())?)?);
            return Some(());
        }
        self.file.as_ref()?.read_exact_at(buf, off).ok()
    }

    fn len_of(&self, r: TxtRef) -> Option<u64> {
        let (off, in_memory) = Self::locate(r)?;
        let mut header = [0; TXT_HEADER as usize];
        self.read_at(off, in_memory, &mut header)?;
        Some(u64::from(u32::from_le_bytes(header)))
    }

    fn get(&self, r: TxtRef) -> Option<Vec<u8>> {
        let (off, in_memory) = Self::locate(r)?;
        let mut buf = vec![0; usize::try_from(self.len_of(r)?).ok()?];
        self.read_at(off + TXT_HEADER, in_memory, &mut buf)?;
        Some(buf)
    }

    fn release(&mut self, r: TxtRef) {
        let len = self.len_of(r).unwrap_or(0);
        self.live = self.live.saturating_sub(len);
    }

    /// A reference kept by a new snapshot.
    fn retain(&mut self, r: TxtRef) {
        self.live += self.len_of(r).unwrap_or(0);
    }

    fn wants_compaction(&self) -> bool {
        let used = self.end + self.mem.len() as u64;
        used >= TXT_COMPACT_MIN && used > 2 * self.live
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::io::Write;
    use std::sync::atomic::AtomicU32;
    use std::thread;

    const WAIT: Duration = Duration::from_secs(5);
    static SEQ: AtomicU32 = AtomicU32::new(1);

    fn opts(root: &Path, all: bool) -> WatchOptions {
        WatchOptions {
            all_events: all,
            ..WatchOptions::new(root)
        }
    }

    /// The layout leave_voicemail() writes (spec §3.2).
    fn txt_text(msg_id: Option<&str>, origtime: u64) -> String {
        let mut s = String::from(
            ";\n; Message Information file\n;\n[message]\norigmailbox=1202\ncontext=default\n\
             exten=1202\nrdnis=unknown\npriority=2\ncallerchan=PJSIP/alice-00000012\n\
             callerid=\"Alice\" <1001>\norigdate=Tue Nov 14 10:13:20 PM UTC 2023\n",
        );
        s.push_str(&format!("origtime={origtime}\ncategory=\n"));
        if let Some(id) = msg_id {
            s.push_str(&format!("msg_id={id}\n"));
        }
        s.push_str("flag=\nduration=7\n");
        s
    }

    fn fresh_id() -> (String, u64) {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let t = 1_700_000_000 + u64::from(n);
        (format!("{t}-{n:08x}"), t)
    }

    fn mkbox(root: &Path, ctx: &str, bx: &str) -> PathBuf {
        let dir = root.join(ctx).join(bx);
        fs::create_dir_all(dir.join("INBOX")).expect("mkdir INBOX");
        fs::create_dir_all(dir.join("tmp")).expect("mkdir tmp");
        dir
    }

    /// A message already on disk (no watcher involvement).
    fn put(folder: &Path, n: u16, msg_id: &str, origtime: u64) {
        fs::create_dir_all(folder).expect("mkdir folder");
        fs::write(folder.join(format!("msg{n:04}.wav")), b"RIFF....WAVE").expect("write wav");
        fs::write(
            folder.join(format!("msg{n:04}.txt")),
            txt_text(Some(msg_id), origtime),
        )
        .expect("write txt");
    }

    /// ast_lock_path_lockfile(): unique helper, link() to .lock until it works, unlink helper.
    fn lock(folder: &Path) {
        let helper = folder.join(format!(".lock-{:08x}", SEQ.fetch_add(1, Ordering::Relaxed)));
        fs::File::create_new(&helper).expect("lock helper");
        let end = Instant::now() + WAIT;
        while let Err(e) = fs::hard_link(&helper, folder.join(".lock")) {
            assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "link .lock: {e}");
            assert!(Instant::now() < end, "could not lock {}", folder.display());
            thread::sleep(Duration::from_millis(1));
        }
        fs::remove_file(&helper).expect("unlink helper");
    }

    fn unlock(folder: &Path) {
        fs::remove_file(folder.join(".lock")).expect("unlink .lock");
    }

    fn highest(folder: &Path) -> Option<u16> {
        fs::read_dir(folder)
            .expect("read folder")
            .filter_map(|e| e.ok()?.file_name().to_str().and_then(msg_number))
            .max()
    }

    /// leave_voicemail(): metadata and audio in tmp/ (several writes), lock the folder,
    /// rename audio then .txt into it, hold the lock `hold`, unlock (unless `keep_lock`).
    /// Returns the instants of the .txt rename and of the start of the unlock.
    fn deposit_with(
        bx: &Path,
        folder: &str,
        msg_id: &str,
        origtime: u64,
        hold: Duration,
        keep_lock: bool,
    ) -> (Instant, Instant) {
        let tmp = bx.join("tmp");
        fs::create_dir_all(&tmp).expect("mkdir tmp");
        let name = format!("{:06X}", SEQ.fetch_add(1, Ordering::Relaxed));
        let text = txt_text(Some(msg_id), origtime);
        let (head, tail) = text.split_at(text.find("flag=").expect("flag line"));
        {
            let mut f = fs::File::create(tmp.join(&name)).expect("create tmp txt");
            f.write_all(head.as_bytes()).expect("write head");
            f.write_all(tail.as_bytes()).expect("write tail");
        }
        {
            let mut f = fs::File::create(tmp.join(format!("{name}.wav"))).expect("create tmp wav");
            for _ in 0..4 {
                f.write_all(&[0u8; 1024]).expect("write wav");
            }
        }
        let dest = bx.join(folder);
        fs::create_dir_all(&dest).expect("mkdir dest");
        lock(&dest);
        let n = highest(&dest).map_or(0, |h| h + 1);
        fs::rename(
            tmp.join(format!("{name}.wav")),
            dest.join(format!("msg{n:04}.wav")),
        )
        .expect("rename wav");
        fs::rename(tmp.join(&name), dest.join(format!("msg{n:04}.txt"))).expect("rename txt");
        let renamed = Instant::now();
        thread::sleep(hold);
        // Taken before the unlink: the event may legitimately arrive before unlink() returns.
        let unlocking = Instant::now();
        if !keep_lock {
            unlock(&dest);
        }
        (renamed, unlocking)
    }

    fn deposit(bx: &Path, msg_id: &str, origtime: u64) -> Instant {
        deposit_with(bx, "INBOX", msg_id, origtime, Duration::ZERO, false).0
    }

    /// copy_plain_file(): audio, then .txt, written in place.
    fn copy_msg(from: &Path, n: u16, to: &Path, m: u16) {
        fs::create_dir_all(to).expect("mkdir dest");
        fs::copy(
            from.join(format!("msg{n:04}.wav")),
            to.join(format!("msg{m:04}.wav")),
        )
        .expect("copy wav");
        fs::copy(
            from.join(format!("msg{n:04}.txt")),
            to.join(format!("msg{m:04}.txt")),
        )
        .expect("copy txt");
    }

    /// vm_delete(): .txt first, then audio.
    fn delete_msg(folder: &Path, n: u16) {
        fs::remove_file(folder.join(format!("msg{n:04}.txt"))).expect("rm txt");
        fs::remove_file(folder.join(format!("msg{n:04}.wav"))).expect("rm wav");
    }

    /// rename_file(): audio, then .txt.
    fn renumber(folder: &Path, n: u16, m: u16) {
        fs::rename(
            folder.join(format!("msg{n:04}.wav")),
            folder.join(format!("msg{m:04}.wav")),
        )
        .expect("mv wav");
        fs::rename(
            folder.join(format!("msg{n:04}.txt")),
            folder.join(format!("msg{m:04}.txt")),
        )
        .expect("mv txt");
    }

    fn next(w: &mut Watcher, within: Duration) -> Option<WatchEvent> {
        w.next_event(within).expect("next_event")
    }

    fn collect(w: &mut Watcher, during: Duration) -> Vec<WatchEvent> {
        let end = Instant::now() + during;
        let mut out = Vec::new();
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return out;
            }
            if let Some(ev) = next(w, left) {
                out.push(ev);
            }
        }
    }

    fn kinds(evs: &[WatchEvent]) -> Vec<EventKind> {
        evs.iter().map(|e| e.kind).collect()
    }

    fn ident(msg_id: &str, t: u64) -> String {
        format!("{msg_id}/{t}")
    }

    fn median(mut v: Vec<Duration>) -> Duration {
        v.sort();
        v.get(v.len() / 2).copied().unwrap_or_default()
    }

    #[test]
    fn deposit_is_new_once_and_only_after_the_lock_is_gone() {
        let root = tempfile::tempdir().expect("tempdir");
        let bx = mkbox(root.path(), "compta", "1202");
        let (old_id, old_t) = fresh_id();
        put(&bx.join("INBOX"), 0, &old_id, old_t);
        let mut w = Watcher::start(opts(root.path(), true)).expect("start");

        let (id, t) = fresh_id();
        let depositor = {
            let (bx, id) = (bx.clone(), id.clone());
            thread::spawn(move || {
                deposit_with(&bx, "INBOX", &id, t, Duration::from_millis(300), false)
            })
        };
        let ev = next(&mut w, WAIT).expect("a New event");
        let received = Instant::now();
        let (renamed, unlocked) = depositor.join().expect("depositor");
        assert!(
            received >= unlocked,
            "event came {:?} before the lock was released",
            unlocked - received
        );
        assert!(unlocked - renamed >= Duration::from_millis(300));
        assert_eq!(ev.kind, EventKind::New);
        assert_eq!(ev.mailbox, ("compta".to_string(), "1202".to_string()));
        let msg = ev.message.expect("message");
        assert_eq!(msg.key.folder, "INBOX");
        assert_eq!(msg.key.number, 1);
        assert_eq!(msg.identity, ident(&id, t));
        assert_eq!(msg.txt, txt_text(Some(&id), t).into_bytes());
        assert_eq!(msg.txt_path, bx.join("INBOX/msg0001.txt"));
        // Not twice, nothing for the message that was there at start, no Moved/Read either.
        assert!(collect(&mut w, Duration::from_millis(700)).is_empty());
    }

    #[test]
    fn files_in_tmp_are_ignored() {
        let root = tempfile::tempdir().expect("tempdir");
        let bx = mkbox(root.path(), "compta", "1202");
        let mut w = Watcher::start(opts(root.path(), true)).expect("start");
        let tmp = bx.join("tmp");
        let (id, t) = fresh_id();
        fs::write(tmp.join("AbC123"), txt_text(Some(&id), t)).expect("write");
        fs::write(tmp.join("AbC123.txt"), txt_text(Some(&id), t)).expect("write");
        fs::write(tmp.join("AbC123.wav"), b"RIFF").expect("write");
        fs::write(tmp.join("msg0000.txt"), txt_text(Some(&id), t)).expect("write");
        fs::write(tmp.join("msg0000.wav"), b"RIFF").expect("write");
        fs::rename(tmp.join("AbC123"), tmp.join("msg0001.txt")).expect("rename");
        assert!(collect(&mut w, Duration::from_millis(800)).is_empty());
    }

    #[test]
    fn half_written_copy_in_place_gives_one_event_when_complete() {
        let root = tempfile::tempdir().expect("tempdir");
        let bx = mkbox(root.path(), "compta", "1202");
        let mut w = Watcher::start(opts(root.path(), true)).expect("start");
        let (id, t) = fresh_id();
        let text = txt_text(Some(&id), t);
        let (head, tail) = text.split_at(text.find("origdate=").expect("origdate"));
        let path = bx.join("INBOX/msg0000.txt");
        fs::write(bx.join("INBOX/msg0000.wav"), b"RIFF").expect("wav");
        fs::write(&path, head).expect("first half");
        assert!(
            collect(&mut w, Duration::from_millis(400)).is_empty(),
            "reported a half-written .txt"
        );
        OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(tail.as_bytes()))
            .expect("second half");
        let ev = next(&mut w, WAIT).expect("New");
        assert_eq!(ev.kind, EventKind::New);
        assert_eq!(ev.message.expect("message").identity, ident(&id, t));
        assert!(collect(&mut w, Duration::from_millis(600)).is_empty());
    }

    #[test]
    fn renumbering_inside_a_folder_is_silent() {
        let root = tempfile::tempdir().expect("tempdir");
        let bx = mkbox(root.path(), "compta", "1202");
        let inbox = bx.join("INBOX");
        let (a, ta) = fresh_id();
        let (b, tb) = fresh_id();
        put(&inbox, 1, &a, ta);
        put(&inbox, 3, &b, tb);
        let mut w = Watcher::start(opts(root.path(), true)).expect("start");
        lock(&inbox);
        renumber(&inbox, 1, 0);
        renumber(&inbox, 3, 1);
        unlock(&inbox);
        let evs = collect(&mut w, Duration::from_millis(900));
        assert!(evs.is_empty(), "{:?}", kinds(&evs));
        let mb = &w.mailboxes[&("compta".to_string(), "1202".to_string())];
        let slots: Vec<(&str, u16)> = mb
            .snapshot
            .recs
            .iter()
            .map(|r| (r.slot.folder(), r.slot.number))
            .collect();
        assert_eq!(slots, [("INBOX", 0), ("INBOX", 1)]);
    }

    #[test]
    fn inbox_to_old_copy_delete_renumber_is_one_read() {
        let root = tempfile::tempdir().expect("tempdir");
        let bx = mkbox(root.path(), "compta", "1202");
        let (inbox, old) = (bx.join("INBOX"), bx.join("Old"));
        let mut ids = Vec::new();
        for n in 0..5 {
            let (id, t) = fresh_id();
            put(&inbox, n, &id, t);
            ids.push((id, t));
        }
        for n in 0..7 {
            let (id, t) = fresh_id();
            put(&old, n, &id, t);
        }
        let mut w = Watcher::start(opts(root.path(), true)).expect("start");
        // close_mailbox(): INBOX lock, nested Old lock for the copy, delete, compact.
        lock(&inbox);
        lock(&old);
        copy_msg(&inbox, 3, &old, 7);
        unlock(&old);
        delete_msg(&inbox, 3);
        renumber(&inbox, 4, 3);
        unlock(&inbox);

        let ev = next(&mut w, WAIT).expect("Read");
        assert_eq!(ev.kind, EventKind::Read);
        let from = ev.from.expect("from");
        assert_eq!((from.folder.as_str(), from.number), ("INBOX", 3));
        let msg = ev.message.expect("message");
        assert_eq!((msg.key.folder.as_str(), msg.key.number), ("Old", 7));
        assert_eq!(msg.identity, ident(&ids[3].0, ids[3].1));
        let rest = collect(&mut w, Duration::from_millis(700));
        assert!(rest.is_empty(), "{:?}", kinds(&rest));
    }

    #[test]
    fn unread_old_to_inbox_is_moved_not_new() {
        let root = tempfile::tempdir().expect("tempdir");
        let bx = mkbox(root.path(), "compta", "1202");
        let (inbox, old) = (bx.join("INBOX"), bx.join("Old"));
        let (id, t) = fresh_id();
        put(&old, 0, &id, t);
        let mut w = Watcher::start(opts(root.path(), true)).expect("start");
        lock(&old);
        lock(&inbox);
        copy_msg(&old, 0, &inbox, 0);
        unlock(&inbox);
        delete_msg(&old, 0);
        unlock(&old);
        let evs = collect(&mut w, Duration::from_millis(1000));
        assert_eq!(kinds(&evs), [EventKind::Moved]);
        let from = evs[0].from.clone().expect("from");
        assert_eq!((from.folder.as_str(), from.number), ("Old", 0));
        let msg = evs[0].message.clone().expect("message");
        assert_eq!(
            (msg.key.folder.as_str(), msg.identity),
            ("INBOX", ident(&id, t))
        );
    }

    #[test]
    fn a_copy_with_the_same_msg_id_is_new() {
        for all in [false, true] {
            let root = tempfile::tempdir().expect("tempdir");
            let bx = mkbox(root.path(), "compta", "1202");
            let inbox = bx.join("INBOX");
            let (id, t) = fresh_id();
            put(&inbox, 0, &id, t);
            let mut w = Watcher::start(opts(root.path(), all)).expect("start");
            lock(&inbox);
            copy_msg(&inbox, 0, &inbox, 1);
            unlock(&inbox);
            let evs = collect(&mut w, Duration::from_millis(1000));
            assert_eq!(kinds(&evs), [EventKind::New], "all={all}");
            let msg = evs[0].message.clone().expect("message");
            assert_eq!((msg.key.folder.as_str(), msg.key.number), ("INBOX", 1));
        }
    }

    #[test]
    fn delete_is_deleted_with_the_last_seen_txt() {
        let root = tempfile::tempdir().expect("tempdir");
        let bx = mkbox(root.path(), "compta", "1202");
        let inbox = bx.join("INBOX");
        let (a, ta) = fresh_id();
        let (b, tb) = fresh_id();
        put(&inbox, 0, &a, ta);
        put(&inbox, 1, &b, tb);
        let mut w = Watcher::start(opts(root.path(), true)).expect("start");
        lock(&inbox);
        delete_msg(&inbox, 0);
        renumber(&inbox, 1, 0);
        unlock(&inbox);
        let evs = collect(&mut w, Duration::from_millis(1000));
        assert_eq!(kinds(&evs), [EventKind::Deleted]);
        let from = evs[0].from.clone().expect("from");
        assert_eq!((from.folder.as_str(), from.number), ("INBOX", 0));
        let msg = evs[0].message.clone().expect("message");
        assert_eq!(msg.identity, ident(&a, ta));
        assert_eq!(msg.txt, txt_text(Some(&a), ta).into_bytes());
    }

    #[test]
    fn move_into_deleted_folder_is_deleted() {
        let root = tempfile::tempdir().expect("tempdir");
        let bx = mkbox(root.path(), "compta", "1202");
        let inbox = bx.join("INBOX");
        let (a, ta) = fresh_id();
        put(&inbox, 0, &a, ta);
        let mut w = Watcher::start(opts(root.path(), true)).expect("start");
        lock(&inbox);
        copy_msg(&inbox, 0, &bx.join("Deleted"), 0);
        delete_msg(&inbox, 0);
        unlock(&inbox);
        let evs = collect(&mut w, Duration::from_millis(1000));
        assert_eq!(kinds(&evs), [EventKind::Deleted]);
        assert_eq!(
            evs[0].message.as_ref().map(|m| m.key.folder.as_str()),
            Some("Deleted")
        );
    }

    fn new_dir_then_deposit(ctx: &str, bx_name: &str) {
        let root = tempfile::tempdir().expect("tempdir");
        mkbox(root.path(), "compta", "1202");
        let mut w = Watcher::start(opts(root.path(), true)).expect("start");
        let bx = root.path().join(ctx).join(bx_name);
        fs::create_dir_all(bx.join("INBOX")).expect("mkdir -p");
        let (id, t) = fresh_id();
        deposit(&bx, &id, t);
        let first = next(&mut w, WAIT).expect("MailboxCreated");
        assert_eq!(first.kind, EventKind::MailboxCreated);
        assert_eq!(first.mailbox, (ctx.to_string(), bx_name.to_string()));
        let second = next(&mut w, WAIT).expect("New");
        assert_eq!(second.kind, EventKind::New);
        assert_eq!(second.message.expect("message").identity, ident(&id, t));
        let rest = collect(&mut w, Duration::from_millis(700));
        assert!(rest.is_empty(), "{:?}", kinds(&rest));
    }

    #[test]
    fn new_mailbox_with_immediate_deposit() {
        new_dir_then_deposit("compta", "1300");
    }

    #[test]
    fn new_context_with_immediate_deposit() {
        new_dir_then_deposit("ventes", "1400");
    }

    #[test]
    fn urgent_folder_created_on_the_fly() {
        let root = tempfile::tempdir().expect("tempdir");
        let bx = mkbox(root.path(), "compta", "1202");
        let mut w = Watcher::start(opts(root.path(), true)).expect("start");
        let (id, t) = fresh_id();
        deposit_with(&bx, "Urgent", &id, t, Duration::ZERO, false);
        let ev = next(&mut w, WAIT).expect("New");
        assert_eq!(ev.kind, EventKind::New);
        assert_eq!(ev.message.expect("message").key.folder, "Urgent");
        assert!(collect(&mut w, Duration::from_millis(600)).is_empty());
    }

    #[test]
    fn scope_limits_the_watch() {
        let root = tempfile::tempdir().expect("tempdir");
        let watched = mkbox(root.path(), "compta", "1202");
        let other = mkbox(root.path(), "compta", "1203");
        let mut o = opts(root.path(), true);
        o.scope = vec![PathBuf::from("compta/1202")];
        let mut w = Watcher::start(o).expect("start");
        let (a, ta) = fresh_id();
        deposit(&other, &a, ta);
        let (b, tb) = fresh_id();
        deposit(&watched, &b, tb);
        let evs = collect(&mut w, Duration::from_millis(700));
        assert_eq!(kinds(&evs), [EventKind::New]);
        assert_eq!(evs[0].mailbox.1, "1202");
        let mut bad = opts(root.path(), false);
        bad.scope = vec![PathBuf::from("compta/1202/INBOX")];
        assert!(matches!(Watcher::start(bad), Err(WatchError::Scope { .. })));
    }

    /// Deposits from several threads; returns (events, latencies renames → event).
    fn run_deposits(
        boxes: usize,
        per_box: usize,
        spacing: Duration,
    ) -> (Vec<WatchEvent>, Vec<Duration>) {
        let root = tempfile::tempdir().expect("tempdir");
        let dirs: Vec<PathBuf> = (0..boxes)
            .map(|i| mkbox(root.path(), "compta", &format!("{}", 1300 + i)))
            .collect();
        let mut w = Watcher::start(opts(root.path(), true)).expect("start");
        let renamed: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let workers: Vec<_> = dirs
            .into_iter()
            .map(|bx| {
                let renamed = Arc::clone(&renamed);
                thread::spawn(move || {
                    for _ in 0..per_box {
                        let (id, t) = fresh_id();
                        let at = deposit(&bx, &id, t);
                        renamed.lock().expect("map").insert(ident(&id, t), at);
                        thread::sleep(spacing);
                    }
                })
            })
            .collect();
        let total = boxes * per_box;
        let mut events = Vec::new();
        let mut received = Vec::new();
        while events.len() < total {
            let Some(ev) = next(&mut w, WAIT) else { break };
            received.push(Instant::now());
            events.push(ev);
        }
        for h in workers {
            h.join().expect("depositor");
        }
        // Matched afterwards: a depositor records its rename only after unlocking, which
        // can be after the event was received.
        let renamed = renamed.lock().expect("map");
        let latencies = events
            .iter()
            .zip(&received)
            .filter_map(|(ev, got)| {
                let at = renamed.get(&ev.message.as_ref()?.identity)?;
                Some(got.saturating_duration_since(*at))
            })
            .collect();
        events.extend(collect(&mut w, Duration::from_millis(700)));
        (events, latencies)
    }

    #[test]
    fn two_hundred_rapid_deposits_into_five_boxes() {
        let (events, latencies) = run_deposits(5, 40, Duration::ZERO);
        assert!(
            events.iter().all(|e| e.kind == EventKind::New),
            "{:?}",
            kinds(&events)
        );
        assert_eq!(events.len(), 200);
        let ids: HashSet<String> = events
            .iter()
            .filter_map(|e| e.message.as_ref().map(|m| m.identity.clone()))
            .collect();
        assert_eq!(ids.len(), 200, "duplicates");
        eprintln!(
            "200 rapid deposits: median latency {:?}, max {:?}",
            median(latencies.clone()),
            latencies.iter().max()
        );
    }

    #[test]
    fn latency_of_spaced_deposits() {
        let (events, latencies) = run_deposits(1, 40, Duration::from_millis(20));
        assert_eq!(kinds(&events), vec![EventKind::New; 40]);
        assert_eq!(latencies.len(), 40);
        eprintln!(
            "40 spaced deposits: median latency {:?}, max {:?}",
            median(latencies.clone()),
            latencies.iter().max()
        );
    }

    #[test]
    fn overflow_rescans_instead_of_losing_events() {
        let root = tempfile::tempdir().expect("tempdir");
        let dirs: Vec<PathBuf> = (0..3)
            .map(|i| mkbox(root.path(), "compta", &format!("{}", 1500 + i)))
            .collect();
        let mut w = Watcher::start(opts(root.path(), false)).expect("start");
        // Nobody reads events meanwhile: ~13 raw events per deposit overflow the channel.
        let mut expected = HashSet::new();
        for i in 0..330 {
            let (id, t) = fresh_id();
            deposit(&dirs[i % 3], &id, t);
            expected.insert(ident(&id, t));
        }
        let mut got = HashSet::new();
        let mut count = 0;
        while count < expected.len() {
            let Some(ev) = next(&mut w, WAIT) else { break };
            count += 1;
            got.insert(ev.message.expect("message").identity);
        }
        count += collect(&mut w, Duration::from_millis(500)).len();
        assert_eq!(count, expected.len());
        assert_eq!(got, expected);
        let warnings = w.warnings();
        eprintln!("overflow warnings: {warnings:?}");
        assert!(
            warnings.iter().any(|m| m.contains("rescanning")),
            "no overflow happened"
        );
    }

    #[test]
    fn stale_lock_gives_the_event_with_a_warning() {
        let root = tempfile::tempdir().expect("tempdir");
        let bx = mkbox(root.path(), "compta", "1202");
        let mut o = opts(root.path(), false);
        o.lock_stale_after = Duration::from_secs(1);
        let mut w = Watcher::start(o).expect("start");
        let (id, t) = fresh_id();
        let (renamed, _) = deposit_with(&bx, "INBOX", &id, t, Duration::ZERO, true);
        let ev = next(&mut w, WAIT).expect("New despite the lock");
        let waited = renamed.elapsed();
        assert_eq!(ev.kind, EventKind::New);
        assert!(
            waited >= Duration::from_millis(900),
            "did not wait for the lock: {waited:?}"
        );
        let warnings = w.warnings();
        assert!(
            warnings
                .iter()
                .any(|m| m.starts_with("compta/1202/INBOX/.lock held for")
                    && m.ends_with("s (stale?)")),
            "{warnings:?}"
        );
        assert!(
            bx.join("INBOX/.lock").exists(),
            "the watcher must not break locks"
        );
    }

    #[test]
    fn snapshot_holds_only_what_is_there_now() {
        let root = tempfile::tempdir().expect("tempdir");
        let bx = mkbox(root.path(), "compta", "1202");
        let inbox = bx.join("INBOX");
        let mut w = Watcher::start(opts(root.path(), false)).expect("start");
        let mut ids = Vec::new();
        for _ in 0..5 {
            let (id, t) = fresh_id();
            deposit(&bx, &id, t);
            ids.push(ident(&id, t));
        }
        for _ in 0..5 {
            assert_eq!(next(&mut w, WAIT).map(|e| e.kind), Some(EventKind::New));
        }
        lock(&inbox);
        for n in 0..3 {
            delete_msg(&inbox, n);
        }
        renumber(&inbox, 3, 0);
        renumber(&inbox, 4, 1);
        unlock(&inbox);
        assert!(collect(&mut w, Duration::from_millis(900)).is_empty());
        let mb = &w.mailboxes[&("compta".to_string(), "1202".to_string())];
        assert_eq!(mb.snapshot.recs.len(), 2);
        let held: HashSet<u64> = mb.snapshot.recs.iter().map(|r| r.ident).collect();
        assert_eq!(held, ids[3..].iter().map(|i| ident_key(i)).collect());
        assert!(mb.announced.is_empty());
        assert!(w.candidates.is_empty() && w.dirty.is_empty());
    }

    #[test]
    fn txt_rewritten_in_place_with_a_new_msg_id_is_not_new() {
        let root = tempfile::tempdir().expect("tempdir");
        let bx = mkbox(root.path(), "compta", "1202");
        let path = bx.join("INBOX/msg0000.txt");
        fs::write(bx.join("INBOX/msg0000.wav"), b"RIFF").expect("wav");
        fs::write(&path, txt_text(None, 1_600_000_000)).expect("old-style txt");
        let mut w = Watcher::start(opts(root.path(), true)).expect("start");
        // add_message_id(): truncate, header, then one append per variable.
        let new_text = txt_text(Some("1600000000-0000abcd"), 1_600_000_000);
        fs::write(
            &path,
            ";!\n;! Automatically generated configuration file\n;!\n\n",
        )
        .expect("truncate");
        for line in new_text.lines().skip(3) {
            OpenOptions::new()
                .append(true)
                .open(&path)
                .and_then(|mut f| writeln!(f, "{line}"))
                .expect("append");
        }
        let evs = collect(&mut w, Duration::from_millis(900));
        assert!(evs.is_empty(), "{:?}", kinds(&evs));
    }

    #[test]
    fn kept_txts_come_back_whole_from_the_file_and_from_memory() {
        let texts: Vec<Vec<u8>> = (0..50usize)
            .map(|i| (0..i * 37 + 1).map(|b| (b % 251) as u8).collect())
            .collect();
        for in_memory in [false, true] {
            let mut store = TxtStore::new();
            if in_memory {
                store.file = None;
            }
            let refs: Vec<TxtRef> = texts.iter().map(|t| store.put(t)).collect();
            assert!(refs.iter().all(|&r| r != TXT_NONE));
            assert_eq!(refs.iter().all(|&r| r & TXT_IN_MEMORY != 0), in_memory);
            for (r, t) in refs.iter().zip(&texts) {
                assert_eq!(store.get(*r).as_deref(), Some(&t[..]));
            }
            let total: u64 = texts.iter().map(|t| t.len() as u64).sum();
            assert_eq!(store.live, total);
            store.release(refs[10]);
            store.retain(refs[3]);
            assert_eq!(
                store.live,
                total - texts[10].len() as u64 + texts[3].len() as u64
            );
        }
        let store = TxtStore::new();
        assert_eq!(store.get(TXT_NONE), None);
        assert_eq!(store.len_of(TXT_NONE), None);
    }

    #[test]
    fn parse_and_identity() {
        let t = txt_text(Some("1700000000-0000002a"), 1_700_000_000);
        let info = parse_txt(t.as_bytes()).expect("complete");
        assert_eq!(
            identity(&info, t.as_bytes()),
            "1700000000-0000002a/1700000000"
        );
        assert!(info.terminated);
        // Keys are case-insensitive, last one wins, comments and spaces are ignored.
        let odd = b"[Message]\nORIGTIME = 5 ; c\norigtime => 6\nmsg_id = \n";
        let info = parse_txt(odd).expect("complete");
        assert_eq!(info.origtime, "6");
        assert!(
            identity(&info, odd).starts_with("sha256:") && identity(&info, odd).len() == 7 + 64
        );
        assert!(parse_txt(b";\n[message]\norigmailbox=1\n").is_none());
        assert!(parse_txt(b"origtime=5\n").is_none());
        assert!(parse_txt(b"[other]\norigtime=5\n").is_none());
        assert!(
            !parse_txt(b"[message]\norigtime=5")
                .expect("parsed")
                .terminated
        );
        assert_eq!(msg_number("msg0042.txt"), Some(42));
        for bad in [
            "msg42.txt",
            "msg0042.TXT",
            "msg0042.txt.bak",
            "msg0042-bak.txt",
            "msgabcd.txt",
        ] {
            assert_eq!(msg_number(bad), None, "{bad}");
        }
    }

    #[test]
    fn os_errors_become_advice() {
        let e = notify::Error::new(notify::ErrorKind::MaxFilesWatch)
            .add_path(PathBuf::from("/spool/x"));
        let msg = WatchError::Notify(advice(&e), e).to_string();
        assert!(
            msg.contains("sysctl fs.inotify.max_user_watches=524288"),
            "{msg}"
        );
        let e = notify::Error::io(io::Error::from_raw_os_error(EMFILE));
        assert!(advice(&e).contains("max_user_instances"));
        let missing = Watcher::start(WatchOptions::new("/nonexistent/vmtool-spool"));
        assert!(matches!(missing, Err(WatchError::Io { .. })));
    }
}
