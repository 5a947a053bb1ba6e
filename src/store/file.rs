//! The file spool as a store: `<astspooldir>/voicemail/<context>/<box>/<folder>/msgNNNN.*`
//! read the way Asterisk reads it (bounded, no link followed, a torn `.txt` retried).

use super::{MailboxStore, MAX_TXT_BYTES};
use crate::audio::{self, AudioInfo};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::metadata::{Listed, MetaError, Metadata};
use crate::scan::{self, FolderCounts, FolderScan};
use crate::spool::{Context, Folder, MailboxId, MsgNum, Spool};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file spool, `<astspooldir>/voicemail/<context>/<box>/<folder>/msgNNNN.*`.
#[derive(Debug, Clone)]
pub struct FileStore {
    spool: Spool,
}

/// Subdirectory names in `dir`, sorted; names that are not valid UTF-8 or not
/// safe path components are returned separately so callers can report them.
fn subdirs(dir: &Path) -> Result<(Vec<String>, Vec<String>)> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, e))?;
    let mut names = Vec::new();
    let mut bad = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| Error::io("read directory", dir, e))?;
        let ft = match entry.file_type() {
            Ok(ft) => ft,
            Err(_) => continue,
        };
        // Symlinked directories are listed (reading through them is harmless).
        let is_dir = ft.is_dir() || (ft.is_symlink() && entry.path().is_dir());
        if !is_dir {
            continue;
        }
        match entry.file_name().into_string() {
            Ok(n) => names.push(n),
            Err(os) => bad.push(os.to_string_lossy().into_owned()),
        }
    }
    names.sort();
    Ok((names, bad))
}

/// Reads a `.txt` no further than its size at open (one `read()` for a
/// message file); a file over `MAX_TXT_BYTES` is refused unread.
fn read_small(path: &Path, file: std::fs::File, md: &std::fs::Metadata) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    read_small_into(&|| path.to_path_buf(), file, md.len(), &mut data)?;
    Ok(data)
}

/// [`read_small`] into `data` (cleared first); `path` only names the file in errors.
fn read_small_into(
    path: &dyn Fn() -> PathBuf,
    file: std::fs::File,
    len: u64,
    data: &mut Vec<u8>,
) -> Result<()> {
    if len > MAX_TXT_BYTES {
        return Err(Error::Metadata {
            path: path(),
            source: MetaError::Invalid {
                line: 0,
                reason: format!(
                    "{len} bytes, larger than {MAX_TXT_BYTES}: not a message file, not read"
                ),
            },
        });
    }
    let mut file = fsutil::Bounded::with_len(file, len, MAX_TXT_BYTES)
        .map_err(|e| Error::io("read", path(), e))?;
    data.clear();
    data.reserve(file.len() as usize);
    file.read_to_end(data)
        .map_err(|e| Error::io("read", path(), e))?;
    Ok(())
}

/// The listed fields of `name` in the open folder `fd`, read into `buf`,
/// with [`FileStore::read_txt_with`]'s retry of an empty or partial file.
fn read_listed<'b>(
    fd: &std::os::fd::OwnedFd,
    dir: &Path,
    name: &str,
    buf: &'b mut Vec<u8>,
) -> Result<Listed<'b>> {
    let path = || dir.join(name);
    let fill = |buf: &mut Vec<u8>| {
        let (file, len) =
            fsutil::open_regular_at_len(fd, name).map_err(|e| Error::io("open", path(), e))?;
        read_small_into(&path, file, len, buf)
    };
    fill(buf)?;
    match Listed::parse(buf) {
        Ok(l) => return Ok(l),
        Err(MetaError::Empty | MetaError::NoMessageSection) => {}
        Err(e) => {
            return Err(Error::Metadata {
                path: path(),
                source: e,
            })
        }
    }
    // Asterisk rewrites .txt files in place without a lock (spec §3.5): an
    // empty or partial read is retried once before it is reported.
    std::thread::sleep(Duration::from_millis(75));
    let mut again = Vec::new();
    fill(&mut again)?;
    Listed::parse(&again)
        .map(Listed::into_owned)
        .map_err(|e| Error::Metadata {
            path: path(),
            source: e,
        })
}

impl FileStore {
    pub fn new(spool: Spool) -> FileStore {
        FileStore { spool }
    }

    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// Subdirectories of `dir` whose names are not UTF-8 (shown lossily):
    /// Asterisk uses them, but no TARGET can name them, so listings skip
    /// them and `check` reports them.
    pub fn non_utf8_subdirs(dir: &Path) -> Result<Vec<String>> {
        Ok(subdirs(dir)?.1)
    }

    /// A folder opened once and read (its files are then opened relative to
    /// it); `None` when it does not exist.
    fn open_folder(
        &self,
        mb: &MailboxId,
        folder: &Folder,
    ) -> Result<Option<(PathBuf, rustix::fd::OwnedFd, FolderScan)>> {
        use rustix::fs::{openat, Mode, OFlags, CWD};
        let dir = self.spool.folder_dir(mb, folder);
        let fd = match openat(
            CWD,
            &dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(e) => return Err(Error::io("read folder", dir, e.into())),
        };
        let scan = scan::scan_folder_fd(&fd).map_err(|e| Error::io("read folder", &dir, e))?;
        crate::ops::failpoint("listed");
        Ok(Some((dir, fd, scan)))
    }

    /// [`MailboxStore::folder_messages`] for listings: each `.txt` read into
    /// one reused buffer and parsed as [`Listed`] (no `Metadata`); `each`
    /// also gets the folder's path.
    pub fn folder_listed(
        &self,
        mb: &MailboxId,
        folder: &Folder,
        want: &dyn Fn(&scan::MsgFiles) -> bool,
        each: &mut dyn FnMut(&scan::MsgFiles, &Path, Result<Listed<'_>>),
    ) -> Result<FolderScan> {
        let Some((dir, fd, scan)) = self.open_folder(mb, folder)? else {
            return Ok(FolderScan::default());
        };
        let mut buf = Vec::with_capacity(1024);
        // `msgNNNN.txt`, the digits rewritten per message.
        let mut name = *b"msg0000.txt";
        for m in scan.messages.iter().filter(|m| m.txt && want(m)) {
            if let Some(irr) = scan.irregular_of(m.num) {
                let err = fsutil::not_regular_err(irr.kind);
                each(m, &dir, Err(Error::io("read", dir.join(&irr.name), err)));
                continue;
            }
            name[3..7].copy_from_slice(&m.num.digits());
            // ASCII by construction.
            let name = std::str::from_utf8(&name).unwrap_or_default();
            each(m, &dir, read_listed(&fd, &dir, name, &mut buf));
        }
        Ok(scan)
    }

    /// [`MailboxStore::folders`], and the subdirectories whose names are not
    /// UTF-8 ([`FileStore::non_utf8_subdirs`]), from one read of the box.
    pub fn folders_and_unnamed(&self, mb: &MailboxId) -> Result<(Vec<Folder>, Vec<String>)> {
        let (names, bad) = subdirs(&self.spool.mailbox_dir(mb))?;
        let mut folders: Vec<Folder> = names
            .iter()
            .filter(|n| n.as_str() != "tmp")
            .filter_map(|n| Folder::from_dir_name(n).ok())
            .collect();
        folders.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
        Ok((folders, bad))
    }

    fn read_txt(path: &Path) -> Result<Metadata> {
        Self::read_txt_with(path, || fsutil::open_regular(path))
    }

    fn read_txt_with(
        path: &Path,
        open: impl Fn() -> std::io::Result<(std::fs::File, std::fs::Metadata)>,
    ) -> Result<Metadata> {
        let mut last = None;
        // Asterisk rewrites .txt files in place without a lock (spec §3.5): an
        // empty or partial read is retried once before it is reported.
        for attempt in 0..2 {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(75));
            }
            let (file, md) = open().map_err(|e| Error::io("open", path, e))?;
            let data = read_small(path, file, &md)?;
            match Metadata::parse(&data) {
                Ok(m) => return Ok(m),
                Err(e @ (MetaError::Empty | MetaError::NoMessageSection)) => last = Some(e),
                Err(e) => {
                    return Err(Error::Metadata {
                        path: path.to_path_buf(),
                        source: e,
                    })
                }
            }
        }
        Err(Error::Metadata {
            path: path.to_path_buf(),
            source: last.unwrap_or(MetaError::Empty),
        })
    }
}

impl MailboxStore for FileStore {
    fn describe(&self) -> String {
        self.spool.root().display().to_string()
    }

    fn contexts(&self) -> Result<Vec<Context>> {
        let (names, _) = subdirs(self.spool.root())?;
        Ok(names.iter().filter_map(|n| Context::new(n).ok()).collect())
    }

    fn mailboxes(&self, ctx: &Context) -> Result<Vec<MailboxId>> {
        let dir = self.spool.context_dir(ctx);
        // A context of voicemail.conf before its first message: no boxes yet.
        if !dir.exists() {
            return Ok(Vec::new());
        }
        let (names, _) = subdirs(&dir)?;
        Ok(names
            .iter()
            .filter_map(|n| MailboxId::new(ctx.clone(), n).ok())
            .collect())
    }

    fn context_exists(&self, ctx: &Context) -> bool {
        self.spool.context_dir(ctx).is_dir()
    }

    fn mailbox_exists(&self, mb: &MailboxId) -> bool {
        self.spool.mailbox_dir(mb).is_dir()
    }

    fn folders(&self, mb: &MailboxId) -> Result<Vec<Folder>> {
        Ok(self.folders_and_unnamed(mb)?.0)
    }

    fn scan_folder(&self, mb: &MailboxId, folder: &Folder) -> Result<FolderScan> {
        let dir = self.spool.folder_dir(mb, folder);
        scan::scan_folder(&dir).map_err(|e| Error::io("read folder", dir, e))
    }

    fn read_metadata(&self, mb: &MailboxId, folder: &Folder, num: MsgNum) -> Result<Metadata> {
        Self::read_txt(&self.spool.txt_path(mb, folder, num))
    }

    fn folder_messages(
        &self,
        mb: &MailboxId,
        folder: &Folder,
        want: &dyn Fn(&scan::MsgFiles) -> bool,
        each: &mut dyn FnMut(&scan::MsgFiles, Result<Metadata>),
    ) -> Result<FolderScan> {
        let Some((dir, fd, scan)) = self.open_folder(mb, folder)? else {
            return Ok(FolderScan::default());
        };
        for m in scan.messages.iter().filter(|m| m.txt && want(m)) {
            // A message with a FIFO, device or link among its files is
            // reported by that file's name and skipped.
            if let Some(irr) = scan.irregular_of(m.num) {
                let err = fsutil::not_regular_err(irr.kind);
                each(m, Err(Error::io("read", dir.join(&irr.name), err)));
                continue;
            }
            let name = format!("{}.txt", m.num.stem());
            let path = dir.join(&name);
            let open = || fsutil::open_regular_at(&fd, &name);
            each(m, Self::read_txt_with(&path, open));
        }
        Ok(scan)
    }

    fn folder_counts(&self, mb: &MailboxId, folder: &Folder) -> Result<FolderCounts> {
        let dir = self.spool.folder_dir(mb, folder);
        scan::count_folder(&dir).map_err(|e| Error::io("read folder", dir, e))
    }

    fn audio_info(
        &self,
        mb: &MailboxId,
        folder: &Folder,
        num: MsgNum,
        ext: &str,
    ) -> Result<AudioInfo> {
        let path = self.spool.msg_file(mb, folder, num, ext);
        audio::probe_file(&path, ext).map_err(|source| Error::Audio { path, source })
    }

    fn location(&self, mb: &MailboxId, folder: &Folder, num: MsgNum) -> PathBuf {
        self.spool.txt_path(mb, folder, num)
    }
}
