//! The engine's inotify source: one watch per directory the engine can learn from (the
//! spool root, contexts, mailboxes and the directories in them: folders, `tmp/`; nothing
//! deeper), events read on a thread and handed over as [`Raw`] values.
//!
//! Only the events the engine uses are asked for (no opens, reads or attribute changes), so
//! the engine's own reads of a million `.txt` files wake nobody; and directories are known
//! by (parent watch, name), a few bytes each.

use super::{deliver, Overflow, Raw, RawKind};
use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::inotify::{self, ReadFlags, WatchFlags};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

/// Depth below the spool root of the deepest watched directories (`<ctx>/<box>/<Folder>`).
const FOLDER_DEPTH: usize = 3;

/// A watched directory: a watch root by its path, any other by its parent's watch and name.
struct Node {
    parent: Option<i32>,
    name: Box<OsStr>,
    depth: u8,
}

#[derive(Default)]
struct Table {
    nodes: HashMap<i32, Node>,
}

impl Table {
    fn path(&self, wd: i32) -> Option<PathBuf> {
        let mut parts = Vec::with_capacity(4);
        let mut at = wd;
        loop {
            let node = self.nodes.get(&at)?;
            parts.push(&*node.name);
            match node.parent {
                Some(p) if parts.len() <= FOLDER_DEPTH + 1 => at = p,
                Some(_) => return None,
                None => break,
            }
        }
        let mut path = PathBuf::new();
        for p in parts.iter().rev() {
            path.push(p);
        }
        Some(path)
    }

    /// Forgets a directory and everything watched below it.
    fn forget(&mut self, wd: i32) -> Vec<i32> {
        let mut gone = vec![wd];
        let mut i = 0;
        while i < gone.len() {
            let parent = gone[i];
            gone.extend(
                self.nodes
                    .iter()
                    .filter(|(_, n)| n.parent == Some(parent))
                    .map(|(w, _)| *w),
            );
            i += 1;
        }
        for w in &gone {
            self.nodes.remove(w);
        }
        gone
    }
}

struct Shared {
    fd: OwnedFd,
    root: PathBuf,
    table: Mutex<Table>,
}

impl Shared {
    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Watches `dir` and the directories below it down to the folders. `parent` is the
    /// watch of the directory holding it (`None` for a watch root).
    fn watch_tree(&self, dir: &Path, parent: Option<(i32, &OsStr)>) -> Result<(), notify::Error> {
        let depth = match dir.strip_prefix(&self.root) {
            Ok(rel) => rel.components().count(),
            Err(_) => return Ok(()),
        };
        if depth > FOLDER_DEPTH {
            return Ok(());
        }
        let mut flags = WatchFlags::CREATE
            | WatchFlags::DELETE
            | WatchFlags::CLOSE_WRITE
            | WatchFlags::MOVED_FROM
            | WatchFlags::MOVED_TO;
        if parent.is_none() {
            flags |= WatchFlags::DELETE_SELF | WatchFlags::MOVE_SELF;
        }
        let wd = match inotify::add_watch(&self.fd, dir, flags) {
            Ok(wd) => wd,
            Err(e) => {
                let err = match e {
                    rustix::io::Errno::NOSPC => {
                        notify::Error::new(notify::ErrorKind::MaxFilesWatch)
                    }
                    rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR => {
                        notify::Error::new(notify::ErrorKind::PathNotFound)
                    }
                    e => notify::Error::io(io::Error::from(e)),
                };
                return Err(err.add_path(dir.to_path_buf()));
            }
        };
        let node = match parent {
            Some((p, name)) => Node {
                parent: Some(p),
                name: name.into(),
                depth: depth as u8,
            },
            None => Node {
                parent: None,
                name: dir.as_os_str().into(),
                depth: depth as u8,
            },
        };
        self.table().nodes.insert(wd, node);
        if depth == FOLDER_DEPTH {
            return Ok(());
        }
        // A directory that went away meanwhile is no error: its parent's event says so.
        let Ok(rd) = fs::read_dir(dir) else {
            return Ok(());
        };
        for e in rd.flatten() {
            let name = e.file_name();
            // Links to directories are followed, as the directory walks of the engine do.
            let is_dir = match e.file_type() {
                Ok(t) if t.is_dir() => true,
                Ok(t) if t.is_symlink() => e.path().is_dir(),
                _ => false,
            };
            if is_dir {
                match self.watch_tree(&e.path(), Some((wd, &name))) {
                    Ok(()) => {}
                    Err(e) if matches!(e.kind, notify::ErrorKind::PathNotFound) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
}

/// The running source; dropping it stops its thread and closes the inotify instance.
pub(super) struct Source {
    shared: Arc<Shared>,
    wake: Arc<OwnedFd>,
    thread: Option<JoinHandle<()>>,
}

impl Source {
    pub(super) fn start(
        root: &Path,
        tx: SyncSender<Raw>,
        overflow: Arc<Overflow>,
    ) -> Result<Source, notify::Error> {
        let io_err = |e: rustix::io::Errno| notify::Error::io(io::Error::from(e));
        let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
            .map_err(io_err)?;
        let wake =
            Arc::new(eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).map_err(io_err)?);
        let shared = Arc::new(Shared {
            fd,
            root: root.to_path_buf(),
            table: Mutex::new(Table::default()),
        });
        let thread = {
            let shared = Arc::clone(&shared);
            let wake = Arc::clone(&wake);
            std::thread::Builder::new()
                .name("vmtool inotify".into())
                .spawn(move || run(&shared, &wake, &tx, &overflow))
                .map_err(notify::Error::io)?
        };
        Ok(Source {
            shared,
            wake,
            thread: Some(thread),
        })
    }

    /// Watches a scope directory and what is below it (again: existing watches are kept,
    /// missing ones added).
    pub(super) fn watch(&self, dir: &Path) -> Result<(), notify::Error> {
        self.shared.watch_tree(dir, None)
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        let _ = rustix::io::write(&*self.wake, &1u64.to_ne_bytes());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(shared: &Shared, wake: &OwnedFd, tx: &SyncSender<Raw>, overflow: &Overflow) {
    let root = &shared.root;
    let mut buf = vec![MaybeUninit::<u8>::uninit(); 64 * 1024];
    loop {
        let mut fds = [
            PollFd::new(&shared.fd, PollFlags::IN),
            PollFd::new(wake, PollFlags::IN),
        ];
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                deliver(tx, overflow, root, Raw::Error(notify::Error::io(e.into())));
                return;
            }
        }
        if !fds[1].revents().is_empty() {
            return;
        }
        let mut reader = inotify::Reader::new(shared.fd.as_fd(), &mut buf);
        // New directories are watched after the batch, with the table unlocked.
        let mut new_dirs: Vec<(PathBuf, i32, Box<OsStr>)> = Vec::new();
        loop {
            let ev = match reader.next() {
                Ok(ev) => ev,
                Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => break,
                Err(e) => {
                    deliver(tx, overflow, root, Raw::Error(notify::Error::io(e.into())));
                    break;
                }
            };
            let flags = ev.events();
            if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
                deliver(tx, overflow, root, Raw::Rescan);
                continue;
            }
            let wd = ev.wd();
            let name = ev.file_name().map(|n| OsStr::from_bytes(n.to_bytes()));
            let mut table = shared.table();
            if flags.contains(ReadFlags::IGNORED) {
                table.nodes.remove(&wd);
                continue;
            }
            let Some(dir) = table.path(wd) else {
                continue;
            };
            let path = match name {
                Some(n) => dir.join(n),
                None => dir,
            };
            let is_dir = flags.contains(ReadFlags::ISDIR);
            let mut out: Vec<RawKind> = Vec::with_capacity(1);
            if flags.contains(ReadFlags::MOVED_FROM) {
                out.push(RawKind::MovedOut);
                // Moved away: its watches no longer name it (a move within the spool is
                // watched again under its new name).
                if let (true, Some(n)) = (is_dir, name) {
                    let child = table
                        .nodes
                        .iter()
                        .find(|(_, c)| c.parent == Some(wd) && &*c.name == n)
                        .map(|(w, _)| *w);
                    if let Some(child) = child {
                        for w in table.forget(child) {
                            let _ = inotify::remove_watch(&shared.fd, w);
                        }
                    }
                }
            } else if flags.contains(ReadFlags::MOVED_TO) {
                out.push(RawKind::MovedIn);
            }
            if flags.contains(ReadFlags::MOVE_SELF) {
                out.push(RawKind::MovedOut);
            }
            if flags.contains(ReadFlags::CREATE) {
                out.push(if is_dir {
                    RawKind::DirCreated
                } else {
                    RawKind::FileCreated
                });
            }
            if flags.contains(ReadFlags::DELETE) || flags.contains(ReadFlags::DELETE_SELF) {
                out.push(RawKind::Removed);
            }
            if flags.contains(ReadFlags::CLOSE_WRITE) {
                out.push(RawKind::Written);
            }
            let depth = table.nodes.get(&wd).map_or(0, |n| usize::from(n.depth));
            drop(table);
            if is_dir
                && flags.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO)
                && depth < FOLDER_DEPTH
            {
                if let Some(n) = name {
                    new_dirs.push((path.clone(), wd, n.into()));
                }
            }
            for kind in out {
                deliver(tx, overflow, root, Raw::Fs(kind, path.clone()));
            }
        }
        for (dir, parent, name) in new_dirs {
            if let Err(e) = shared.watch_tree(&dir, Some((parent, &name))) {
                if !matches!(e.kind, notify::ErrorKind::PathNotFound) {
                    let limit = matches!(e.kind, notify::ErrorKind::MaxFilesWatch);
                    deliver(tx, overflow, root, Raw::Error(e));
                    // The same refusal for every further directory says nothing new.
                    if limit {
                        break;
                    }
                }
            }
        }
    }
}
