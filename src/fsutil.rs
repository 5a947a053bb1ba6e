//! File-system steps every spool change is made of: durable copies, renames
//! and unlinks followed by a directory fsync, and files and directories created
//! with the owner, group and mode Asterisk would have given them (spec §1.6).

use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

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
    write_hashed(&mut File::open(from)?, to, perms, durable)
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

/// SHA-256 of a file's bytes.
pub fn sha256_file(path: &Path) -> io::Result<[u8; 32]> {
    let mut f = File::open(path)?;
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
