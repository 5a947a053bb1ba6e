//! File-system steps every spool change is made of: durable copies, renames
//! and unlinks followed by a directory fsync, and files and directories created
//! with the owner, group and mode Asterisk would have given them (spec §1.6).
//! Also the one way every reader opens a file of the spool or the
//! configuration ([`open_regular`]): the spool is untrusted input.

use sha2::{Digest, Sha256};
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A `.txt` larger than this is not a message file; refuse it quickly.
pub const MAX_TXT_BYTES: u64 = 1 << 20;

/// Largest audio (or other message) file vmtool reads or copies: far above
/// any voicemail (an hour of 16-bit 8 kHz PCM is 58 MB), far below what a
/// planted sparse file could claim.
pub const MAX_AUDIO_BYTES: u64 = 1 << 30;

/// Largest configuration file (each `#include`d file too) vmtool reads.
pub const MAX_CONF_BYTES: u64 = 16 << 20;

/// A file that is not a regular file where one is expected: a FIFO, socket,
/// device, directory or symbolic link. Never opened further, never followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{kind}, not a regular file: left alone")]
pub struct NotRegular {
    pub kind: &'static str,
}

/// A regular file larger than the cap for its kind: refused before reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{size} bytes, larger than the {cap}-byte limit for this file: not read")]
pub struct TooLarge {
    pub size: u64,
    pub cap: u64,
}

/// What a file type is called in messages.
pub fn kind_name(md: &Metadata) -> &'static str {
    kind_of_mode(md.mode()).unwrap_or("regular file")
}

/// The [`NotRegular`] inside an I/O error, if that is what it is.
pub fn not_regular(e: &io::Error) -> Option<NotRegular> {
    e.get_ref()?.downcast_ref::<NotRegular>().copied()
}

/// The [`TooLarge`] inside an I/O error, if that is what it is.
pub fn too_large(e: &io::Error) -> Option<TooLarge> {
    e.get_ref()?.downcast_ref::<TooLarge>().copied()
}

/// The error every reader gives for a file that is not a regular file.
pub fn not_regular_err(kind: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, NotRegular { kind })
}

/// Open flags of every read: no link followed at the last component, no
/// blocking on a FIFO (or device), no controlling terminal.
fn read_flags() -> rustix::fs::OFlags {
    use rustix::fs::OFlags;
    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC
}

/// Turns an open's failure on a non-regular file into a [`NotRegular`] that
/// names its kind (`kind` looks it up without following): `ELOOP` is a link
/// (O_NOFOLLOW), `ENXIO` a socket.
fn open_failed(e: rustix::io::Errno, kind: impl FnOnce() -> Option<&'static str>) -> io::Error {
    use rustix::io::Errno;
    if matches!(e, Errno::LOOP | Errno::NXIO | Errno::OPNOTSUPP) {
        if let Some(kind) = kind() {
            return not_regular_err(kind);
        }
    }
    e.into()
}

/// The kind of a non-regular file from a directory entry's type (`None`: regular).
pub fn kind_of_type(ft: fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    Some(if ft.is_file() {
        return None;
    } else if ft.is_dir() {
        "directory"
    } else if ft.is_symlink() {
        "symbolic link"
    } else if ft.is_fifo() {
        "special file (FIFO)"
    } else if ft.is_socket() {
        "special file (socket)"
    } else if ft.is_char_device() {
        "special file (character device)"
    } else if ft.is_block_device() {
        "special file (block device)"
    } else {
        "special file"
    })
}

/// The kind of a non-regular file from a `stat` mode (`None`: regular).
pub fn kind_of_mode(mode: u32) -> Option<&'static str> {
    use rustix::fs::FileType as T;
    Some(match T::from_raw_mode(mode) {
        T::RegularFile => return None,
        T::Directory => "directory",
        T::Symlink => "symbolic link",
        T::Fifo => "special file (FIFO)",
        T::Socket => "special file (socket)",
        T::CharacterDevice => "special file (character device)",
        T::BlockDevice => "special file (block device)",
        T::Unknown => "special file",
    })
}

fn check_regular(file: File) -> io::Result<(File, Metadata)> {
    let md = file.metadata()?;
    if let Some(kind) = kind_of_mode(md.mode()) {
        return Err(not_regular_err(kind));
    }
    Ok((file, md))
}

/// Opens a file of the spool for reading: never follows a link at `path`'s
/// last component, never blocks (a FIFO, a device), and accepts regular files
/// only (checked with `fstat` on what was opened, so no swap in between).
/// Anything else is an `InvalidInput` error carrying [`NotRegular`].
pub fn open_regular(path: &Path) -> io::Result<(File, Metadata)> {
    let fd = rustix::fs::open(path, read_flags(), rustix::fs::Mode::empty())
        .map_err(|e| open_failed(e, || lstat_kind(path)))?;
    check_regular(File::from(fd))
}

fn lstat_kind(path: &Path) -> Option<&'static str> {
    fs::symlink_metadata(path)
        .ok()
        .and_then(|m| kind_of_mode(m.mode()))
}

/// `name` in an open directory, opened for reading the one safe way (not yet
/// checked to be a regular file).
fn open_at(dir: BorrowedFd<'_>, name: &str) -> io::Result<OwnedFd> {
    rustix::fs::openat(dir, name, read_flags(), rustix::fs::Mode::empty()).map_err(|e| {
        open_failed(e, || {
            rustix::fs::statat(dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                .ok()
                .and_then(|st| kind_of_mode(st.st_mode))
        })
    })
}

/// [`open_regular`] of `name` in an open directory.
pub fn open_regular_at(dir: impl AsFd, name: &str) -> io::Result<(File, Metadata)> {
    check_regular(File::from(open_at(dir.as_fd(), name)?))
}

/// [`open_regular_at`] for the many small reads of a listing: the type and
/// size from one plain `fstat` (not `statx` of every field).
pub fn open_regular_at_len(dir: impl AsFd, name: &str) -> io::Result<(File, u64)> {
    let fd = open_at(dir.as_fd(), name)?;
    let st = rustix::fs::fstat(&fd)?;
    if let Some(kind) = kind_of_mode(st.st_mode) {
        return Err(not_regular_err(kind));
    }
    Ok((File::from(fd), st.st_size as u64))
}

/// Opens (maybe creates) with `opts` a file vmtool writes in a place others
/// can write (lock files, the archive's run lock and manifest): no link
/// followed, no blocking on a FIFO, regular files only ([`NotRegular`]).
pub fn open_options_regular(opts: &mut OpenOptions, path: &Path) -> io::Result<File> {
    use rustix::fs::OFlags;
    let file = opts
        .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(n) => open_failed(rustix::io::Errno::from_raw_os_error(n), || lstat_kind(path)),
            None => e,
        })?;
    let (file, _) = check_regular(file)?;
    // A regular file: back to ordinary I/O.
    let fl = rustix::fs::fcntl_getfl(&file)?;
    rustix::fs::fcntl_setfl(&file, fl - OFlags::NONBLOCK)?;
    Ok(file)
}

/// Opens a configuration file: links are followed (Asterisk follows them, and
/// admins link configuration files), but what is opened must be a regular
/// file, opened without blocking, of at most [`MAX_CONF_BYTES`].
pub fn read_config(path: &Path) -> io::Result<Vec<u8>> {
    use rustix::fs::OFlags;
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = rustix::fs::open(path, flags, rustix::fs::Mode::empty()).map_err(|e| {
        open_failed(e, || {
            fs::metadata(path).ok().and_then(|m| kind_of_mode(m.mode()))
        })
    })?;
    let (file, md) = check_regular(File::from(fd))?;
    read_bounded(Bounded::new(file, &md, MAX_CONF_BYTES)?)
}

/// A regular file read no further than the size `fstat` reported when it was
/// opened: a file that keeps growing (or lies) cannot make a read endless.
#[derive(Debug)]
pub struct Bounded {
    file: File,
    len: u64,
    pos: u64,
}

impl Bounded {
    /// Refuses a file over `cap` bytes ([`TooLarge`]).
    pub fn new(file: File, md: &Metadata, cap: u64) -> io::Result<Bounded> {
        Bounded::with_len(file, md.len(), cap)
    }

    /// [`Bounded::new`] with the size `fstat` gave.
    pub fn with_len(file: File, len: u64, cap: u64) -> io::Result<Bounded> {
        if len > cap {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                TooLarge { size: len, cap },
            ));
        }
        Ok(Bounded { file, len, pos: 0 })
    }

    /// The size `fstat` reported.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Read for Bounded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read(&mut buf[..want])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Bounded {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        // The end is the size seen at open, not whatever the file is now.
        let to = match to {
            SeekFrom::End(d) => {
                SeekFrom::Start(self.len.checked_add_signed(d).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "seek before the start")
                })?)
            }
            other => other,
        };
        self.pos = self.file.seek(to)?;
        Ok(self.pos)
    }
}

/// [`open_regular`], bounded by its `fstat` size and `cap`.
pub fn open_bounded(path: &Path, cap: u64) -> io::Result<Bounded> {
    let (file, md) = open_regular(path)?;
    Bounded::new(file, &md, cap)
}

fn read_bounded(mut b: Bounded) -> io::Result<Vec<u8>> {
    let mut data = Vec::with_capacity(usize::try_from(b.len).unwrap_or(0));
    b.read_to_end(&mut data)?;
    Ok(data)
}

/// A message `.txt` (or vmtool's own small record) read the one safe way:
/// regular, no link followed, at most `MAX_TXT_BYTES`.
pub fn read_txt_file(path: &Path) -> io::Result<Vec<u8>> {
    read_capped(path, MAX_TXT_BYTES)
}

/// Reads a whole regular file of at most `cap` bytes ([`open_bounded`]).
pub fn read_capped(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    read_bounded(open_bounded(path, cap)?)
}

/// Owner, group and modes for what vmtool creates in one mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Perms {
    pub uid: u32,
    pub gid: u32,
    /// Mode of copied message files: 0666 & ~umask, as Asterisk's `copy()`.
    pub file_mode: u32,
    /// Mode of created directories: 0777 & ~umask, as `ast_mkdir()`.
    pub dir_mode: u32,
}

impl Perms {
    /// Reads Asterisk's pattern off an existing directory of the spool: its
    /// owner and group, and the umask that produced its audio files (0644 →
    /// 022). Without audio to look at, the directory's own mode gives the umask.
    pub fn observe(dir: &Path) -> io::Result<Perms> {
        let md = fs::metadata(dir)?;
        let mut umask = !md.mode() & 0o077;
        for entry in walkdir::WalkDir::new(dir)
            .max_depth(2)
            .into_iter()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy();
            let audio = name.starts_with("msg") && !name.ends_with(".txt");
            if audio && entry.file_type().is_file() {
                if let Ok(m) = entry.metadata() {
                    umask = umask_from_file_mode(m.mode());
                    break;
                }
            }
        }
        Ok(Perms {
            uid: md.uid(),
            gid: md.gid(),
            file_mode: 0o666 & !umask,
            dir_mode: 0o777 & !umask,
        })
    }

    /// Gives `path` this owner and group when it differs (only root can).
    pub fn apply_owner(&self, path: &Path) -> io::Result<()> {
        let md = fs::symlink_metadata(path)?;
        if md.uid() != self.uid || md.gid() != self.gid {
            std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid))?;
        }
        Ok(())
    }
}

/// A file mode only shows the read/write bits the umask let through; a class
/// with nothing left (0660: others) was masked entirely (7), else only what is
/// missing of rw (0644 → 022).
fn umask_from_file_mode(mode: u32) -> u32 {
    let mut umask = 0;
    for shift in [3, 0] {
        let bits = (mode >> shift) & 0o6;
        let mask = if bits == 0 { 0o7 } else { !bits & 0o6 };
        umask |= mask << shift;
    }
    umask
}

/// fsync of a directory, so renames and unlinks in it survive a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` (and missing parents) with `perms`, like Asterisk's
/// `create_dirpath()`; existing directories are left as they are.
pub fn create_dir_like(dir: &Path, perms: &Perms) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dir_like(parent, perms)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(perms.dir_mode))?;
    perms.apply_owner(dir)?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Copies `from` into a new file `to` (which must not exist), fsyncs it, and
/// gives it `perms`; returns the SHA-256 of the bytes copied. A real copy,
/// never a hard link: the source inode must not change.
pub fn copy_durable(from: &Path, to: &Path, perms: &Perms) -> io::Result<[u8; 32]> {
    copy_hashed(from, to, perms, true)
}

/// [`copy_durable`] with the fsync left to the caller when `durable` is false
/// (a batch that syncs the whole file system once).
pub fn copy_hashed(from: &Path, to: &Path, perms: &Perms, durable: bool) -> io::Result<[u8; 32]> {
    write_hashed(
        &mut open_bounded(from, MAX_AUDIO_BYTES)?,
        to,
        perms,
        durable,
    )
}

/// [`copy_hashed`] from any reader (a recording read from the database).
pub fn write_hashed(
    src: &mut dyn Read,
    to: &Path,
    perms: &Perms,
    durable: bool,
) -> io::Result<[u8; 32]> {
    let mut dst = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(perms.file_mode)
        .open(to)?;
    let result = (|| {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = src.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            dst.write_all(&buf[..n])?;
        }
        // The umask must not narrow the mode Asterisk would have used.
        dst.set_permissions(fs::Permissions::from_mode(perms.file_mode))?;
        if durable {
            dst.sync_all()?;
        }
        perms.apply_owner(to)?;
        Ok(hasher.finalize().into())
    })();
    if result.is_err() {
        let _ = fs::remove_file(to);
    }
    result
}

/// SHA-256 of a regular file's bytes ([`open_bounded`], [`MAX_AUDIO_BYTES`]).
pub fn sha256_file(path: &Path) -> io::Result<[u8; 32]> {
    let mut f = open_bounded(path, MAX_AUDIO_BYTES)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes a small file atomically: temp name in the same directory, fsync,
/// rename, directory fsync.
pub fn write_atomic(path: &Path, data: &[u8], perms: &Perms) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp: PathBuf = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(perms.file_mode)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    perms.apply_owner(&tmp)?;
    fs::rename(&tmp, path)?;
    sync_dir(dir)
}

/// Renames `from` to `to` unless `to` exists (`renameat2(RENAME_NOREPLACE)`,
/// or link + unlink where the file system lacks it): an existing file is
/// never replaced. `AlreadyExists` when it is there.
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
            fs::hard_link(from, to)?;
            let _ = fs::remove_file(from);
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// `syncfs()` of the file system holding `path`: one call makes a whole batch
/// of new files and renames durable.
pub fn sync_fs(path: &Path) -> io::Result<()> {
    let f = File::open(path)?;
    rustix::fs::syncfs(&f).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_real_and_durable() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        fs::write(&a, b"hello").unwrap();
        let perms = Perms::observe(d.path()).unwrap();
        let b = d.path().join("b");
        let sum = copy_durable(&a, &b, &perms).unwrap();
        assert_eq!(fs::read(&b).unwrap(), b"hello");
        assert_eq!(sum, sha256_file(&a).unwrap());
        assert_ne!(
            fs::metadata(&a).unwrap().ino(),
            fs::metadata(&b).unwrap().ino()
        );
        assert!(copy_durable(&a, &b, &perms).is_err(), "never overwrites");
        assert_eq!(fs::read(&b).unwrap(), b"hello");
    }

    fn kind_of_err(r: io::Result<impl std::fmt::Debug>) -> &'static str {
        let e = r.expect_err("must be refused");
        not_regular(&e).map_or("other error", |n| n.kind)
    }

    #[test]
    fn only_regular_files_are_opened_and_never_block() {
        let d = tempfile::tempdir().unwrap();
        let p = |n: &str| d.path().join(n);
        let fifo = p("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let _sock = std::os::unix::net::UnixListener::bind(p("sock")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", p("zero")).unwrap();
        std::os::unix::fs::symlink("loop", p("loop")).unwrap();
        fs::create_dir(p("dir")).unwrap();
        fs::write(p("file"), b"data").unwrap();
        std::os::unix::fs::symlink(p("file"), p("link")).unwrap();
        assert_eq!(kind_of_err(open_regular(&fifo)), "special file (FIFO)");
        assert_eq!(
            kind_of_err(open_regular(&p("sock"))),
            "special file (socket)"
        );
        assert_eq!(kind_of_err(open_regular(&p("zero"))), "symbolic link");
        assert_eq!(kind_of_err(open_regular(&p("loop"))), "symbolic link");
        assert_eq!(kind_of_err(open_regular(&p("link"))), "symbolic link");
        assert_eq!(kind_of_err(open_regular(&p("dir"))), "directory");
        assert_eq!(
            kind_of_err(open_regular(Path::new("/dev/null"))),
            "special file (character device)"
        );
        let dir = File::open(d.path()).unwrap();
        assert_eq!(
            kind_of_err(open_regular_at(&dir, "fifo")),
            "special file (FIFO)"
        );
        assert_eq!(kind_of_err(open_regular_at(&dir, "zero")), "symbolic link");
        assert_eq!(open_regular_at(&dir, "file").unwrap().1.len(), 4);
        assert_eq!(open_regular_at_len(&dir, "file").unwrap().1, 4);
        assert_eq!(
            kind_of_err(open_regular_at_len(&dir, "fifo")),
            "special file (FIFO)"
        );
        assert_eq!(
            kind_of_err(open_regular_at_len(&dir, "zero")),
            "symbolic link"
        );
        assert_eq!(
            kind_of_err(open_regular_at_len(&dir, "sock")),
            "special file (socket)"
        );
        assert_eq!(kind_of_err(open_regular_at_len(&dir, "dir")), "directory");
        assert_eq!(read_capped(&p("file"), 4).unwrap(), b"data");
        assert!(read_capped(&p("file"), 3).is_err(), "over the cap");
        assert!(sha256_file(&fifo).is_err() && sha256_file(&p("zero")).is_err());
        // Configuration files may be links, but only to regular files.
        assert_eq!(read_config(&p("link")).unwrap(), b"data");
        assert_eq!(kind_of_err(read_config(&fifo)), "special file (FIFO)");
        assert_eq!(
            kind_of_err(read_config(&p("zero"))),
            "special file (character device)"
        );
        // Writing: a FIFO without a reader would block an ordinary open.
        let w = open_options_regular(OpenOptions::new().write(true), &fifo);
        assert_eq!(kind_of_err(w), "special file (FIFO)");
        let w = open_options_regular(OpenOptions::new().write(true).create(true), &p("zero"));
        assert_eq!(kind_of_err(w), "symbolic link");
        assert!(open_options_regular(OpenOptions::new().append(true), &p("file")).is_ok());
    }

    #[test]
    fn reads_stop_at_the_size_seen_at_open() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("growing");
        fs::write(&p, b"0123").unwrap();
        let mut b = open_bounded(&p, 100).unwrap();
        // It grows after the open: the new bytes are not read.
        OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"4567")
            .unwrap();
        let mut got = Vec::new();
        b.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"0123");
        assert_eq!(b.seek(SeekFrom::End(-1)).unwrap(), 3);
        let mut one = Vec::new();
        b.read_to_end(&mut one).unwrap();
        assert_eq!(one, b"3");
        let big = d.path().join("sparse");
        File::create(&big).unwrap().set_len(2 << 30).unwrap();
        let e = open_bounded(&big, MAX_AUDIO_BYTES).unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
    }

    #[test]
    fn umask_is_read_off_audio_files() {
        let d = tempfile::tempdir().unwrap();
        let inbox = d.path().join("INBOX");
        fs::create_dir(&inbox).unwrap();
        fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let wav = inbox.join("msg0000.wav");
        fs::write(&wav, b"x").unwrap();
        fs::set_permissions(&wav, fs::Permissions::from_mode(0o660)).unwrap();
        let p = Perms::observe(d.path()).unwrap();
        assert_eq!((p.file_mode, p.dir_mode), (0o660, 0o770));
        let made = d.path().join("Old/x");
        create_dir_like(&made, &p).unwrap();
        assert_eq!(
            fs::metadata(d.path().join("Old")).unwrap().mode() & 0o777,
            0o770
        );
    }
}
