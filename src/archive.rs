//! Archive and retention: `archive`, `restore`, `purge`, and reading an archive
//! for `ls --archive` / `show --archive`.
//!
//! An archive is a plain directory tree that keeps every message file verbatim
//! (extension case kept: `.WAV` and `.wav` both):
//! `DIR/<context>/<box>/<YYYY>/<MM>/<origtime>-<folder>-<NNNN>-<msg_id>/msgNNNN.*`,
//! plus one `DIR/manifest.jsonl` line per message (the `ls --format json`
//! fields, every `.txt` field, and each file's name, size and SHA-256).
//!
//! Order, per batch of messages: files into `<entry>.partial/` (hard links for
//! audio when the archive shares the file system, copies otherwise; the `.txt`
//! is always copied because Asterisk rewrites it in place), checksums verified,
//! rename to `<entry>/`; one `syncfs()`; the manifest lines appended and
//! synced; only then each message deleted from the spool under its folder lock
//! (no renumbering). Killed at any point, nothing is lost and a re-run
//! finishes the job without archiving anything twice.

use crate::error::{Error, Result};
use crate::fsutil::{self, hex};
use crate::metadata::Metadata;
use crate::ops::Located;
use crate::render::MessageRow;
use crate::spool::Folder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub const MANIFEST: &str = "manifest.jsonl";
const RUN_LOCK: &str = ".vmtool-archive.lock";

/// One archived file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedFile {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// One line of `manifest.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Where the message was (context, box, folder, number) and what `ls` shows;
    /// `path` is the archived `.txt`, relative to the archive.
    #[serde(flatten)]
    pub row: MessageRow,
    /// Every field of the `.txt`, in file order.
    pub fields: Vec<(String, String)>,
    pub files: Vec<ArchivedFile>,
    /// The entry directory, relative to the archive.
    pub dir: String,
    pub txt_sha256: String,
    /// When it was archived (epoch seconds).
    pub archived_at: i64,
}

impl ManifestEntry {
    /// The identity that makes re-runs idempotent: place, time, id and content.
    pub fn identity(&self) -> [u8; 16] {
        identity(
            &self.row.context,
            &self.row.mailbox,
            &self.row.folder,
            &self.row.number,
            self.row.origtime,
            self.row.msg_id.as_deref(),
            &self.txt_sha256,
        )
    }
}

fn identity(
    ctx: &str,
    mbox: &str,
    folder: &str,
    num: &str,
    origtime: Option<i64>,
    id: Option<&str>,
    sha: &str,
) -> [u8; 16] {
    let mut h = Sha256::new();
    for part in [
        ctx,
        mbox,
        folder,
        num,
        &origtime.map(|t| t.to_string()).unwrap_or_default(),
        id.unwrap_or(""),
        sha,
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let full: [u8; 32] = h.finalize().into();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// A name part made safe for any file system: letters, digits and `._@+-`.
pub fn sanitize_part(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._@+-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with('.') {
        out.insert(0, '_');
    }
    out.truncate(100);
    out
}

/// An archive directory opened for writing: its run lock is held.
pub struct Archive {
    root: PathBuf,
    manifest: File,
    known: HashSet<[u8; 16]>,
    _run_lock: File,
    same_fs_as_spool: bool,
    perms: fsutil::Perms,
}

/// Refuses an archive on a case-insensitive file system: `.WAV` and `.wav`
/// are two formats of one message and must both survive (spec §11 item 21).
fn check_case_sensitive(dir: &Path) -> Result<()> {
    let a = dir.join(".vmtool-case-probe-a");
    let b = dir.join(".vmtool-case-probe-A");
    let _ = fs::remove_file(&a);
    let _ = fs::remove_file(&b);
    File::create(&a).map_err(|e| Error::io("write into", dir, e))?;
    let clash = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&b)
        .is_err();
    let _ = fs::remove_file(&a);
    let _ = fs::remove_file(&b);
    if clash {
        return Err(Error::Usage(format!(
            "{} is on a case-insensitive file system: msgNNNN.WAV and msgNNNN.wav would overwrite each other; use another directory",
            dir.display()
        )));
    }
    Ok(())
}

/// Reads the manifest, repairing a torn last line (a run killed while writing
/// it); returns the entries.
pub fn read_manifest(root: &Path) -> Result<Vec<ManifestEntry>> {
    let mut out = Vec::new();
    for_each_entry(root, |e| {
        out.push(e);
        Ok(())
    })?;
    Ok(out)
}

/// Streams the manifest entries (constant memory); bad lines are skipped.
pub fn for_each_entry(root: &Path, mut f: impl FnMut(ManifestEntry) -> Result<()>) -> Result<()> {
    let path = root.join(MANIFEST);
    // Read up to its size at open: lines appended meanwhile are the next run's.
    let file = match fsutil::open_regular(&path)
        .and_then(|(f, md)| fsutil::Bounded::new(f, &md, u64::MAX))
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::NotFound(format!(
                "{}: no archive manifest here",
                path.display()
            )))
        }
        Err(e) => return Err(Error::io("read", &path, e)),
    };
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|e| Error::io("read", &path, e))?;
        if let Ok(entry) = serde_json::from_str::<ManifestEntry>(&line) {
            f(entry)?;
        }
    }
    Ok(())
}

/// Cuts a last line that has no newline (torn write); returns whether it did.
fn repair_torn_tail(file: &mut File) -> io::Result<bool> {
    let len = file.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(false);
    }
    let mut data = Vec::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_end(&mut data)?;
    if data.ends_with(b"\n") {
        return Ok(false);
    }
    let keep = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    file.set_len(keep as u64)?;
    file.sync_all()?;
    file.seek(SeekFrom::End(0))?;
    Ok(true)
}

pub use crate::store::change::Source;

fn source_sha256(s: &Source) -> io::Result<[u8; 32]> {
    match s {
        Source::File(p) => fsutil::sha256_file(p),
        Source::Data(d) => Ok(Sha256::digest(d).into()),
    }
}

/// A message to archive: where it is, its files `(extension, source)`, its
/// metadata and its listing row.
pub struct Candidate {
    pub loc: Located,
    pub files: Vec<(String, Source)>,
    pub meta: Metadata,
    pub row: MessageRow,
}

impl Candidate {
    /// Bytes of all its files.
    pub fn size(&self) -> u64 {
        self.files.iter().map(|(_, s)| s.size()).sum()
    }
}

enum Prepared {
    /// Already in the manifest.
    Known,
    /// Files in place; the manifest line to write.
    Line([u8; 16], Vec<u8>),
}

/// What happened to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Archived,
    /// Already in the archive (an earlier run was interrupted): only the
    /// removal from the spool was finished (or nothing, with `--keep`).
    AlreadyArchived,
}

impl Archive {
    /// Opens (creates) an archive directory for a run: refuses one inside the
    /// spool or on a case-insensitive file system, and takes the run lock so
    /// two cron runs never overlap.
    pub fn open(root: &Path, spool_root: &Path) -> Result<Archive> {
        fs::create_dir_all(root).map_err(|e| Error::io("create", root, e))?;
        let real = fs::canonicalize(root).map_err(|e| Error::io("resolve", root, e))?;
        // With SQL storage this server may have no spool directory at all.
        let spool = match fs::canonicalize(spool_root) {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => spool_root.to_path_buf(),
            Err(e) => return Err(Error::io("resolve", spool_root, e)),
        };
        if real.starts_with(&spool) || spool.starts_with(&real) {
            return Err(Error::Usage(format!(
                "archive directory {} is inside the spool {} (or contains it): choose a directory outside it",
                root.display(),
                spool.display()
            )));
        }
        let lock_path = root.join(RUN_LOCK);
        let run_lock = fsutil::open_options_regular(
            OpenOptions::new().write(true).create(true).truncate(false),
            &lock_path,
        )
        .map_err(|e| Error::io("open", &lock_path, e))?;
        if run_lock.try_lock().is_err() {
            return Err(Error::LockBusy(format!(
                "another vmtool run is using the archive {} (its lock {} is held): retry later",
                root.display(),
                lock_path.display()
            )));
        }
        check_case_sensitive(root)?;
        let mpath = root.join(MANIFEST);
        let mut manifest = fsutil::open_options_regular(
            OpenOptions::new().read(true).append(true).create(true),
            &mpath,
        )
        .map_err(|e| Error::io("open", &mpath, e))?;
        repair_torn_tail(&mut manifest).map_err(|e| Error::io("repair", &mpath, e))?;
        let mut known = HashSet::new();
        for_each_entry(root, |e| {
            known.insert(e.identity());
            Ok(())
        })?;
        use std::os::unix::fs::MetadataExt;
        let same_fs = fs::metadata(&real)
            .and_then(|a| fs::metadata(&spool).map(|b| a.dev() == b.dev()))
            .unwrap_or(false);
        let perms = fsutil::Perms::observe(root).map_err(|e| Error::io("read", root, e))?;
        Ok(Archive {
            perms,
            root: root.to_path_buf(),
            manifest,
            known,
            _run_lock: run_lock,
            same_fs_as_spool: same_fs,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Entry directory of a message, relative to the archive.
    pub fn entry_dir(row: &MessageRow) -> PathBuf {
        let (y, m) = row
            .origtime
            .and_then(|t| chrono::DateTime::<chrono::Utc>::from_timestamp(t, 0))
            .map(|d| (d.format("%Y").to_string(), d.format("%m").to_string()))
            .unwrap_or_else(|| ("unknown".into(), "00".into()));
        PathBuf::from(sanitize_part(&row.context))
            .join(sanitize_part(&row.mailbox))
            .join(y)
            .join(m)
            .join(format!(
                "{}-{}-{}-{}",
                row.origtime.unwrap_or(0),
                sanitize_part(&row.folder),
                row.number,
                sanitize_part(row.msg_id.as_deref().unwrap_or("noid"))
            ))
    }

    /// Archives a batch of messages. One `syncfs()` makes the whole batch's
    /// files durable before any manifest line is written, and the manifest
    /// is synced before this returns: a message whose result is `Ok` is
    /// safely archived and may be removed from the spool (or the table).
    /// Returns one result per candidate, in order.
    pub fn archive_batch(
        &mut self,
        batch: Vec<Candidate>,
        now: i64,
    ) -> Vec<(crate::ops::MsgRef, Result<Outcome>)> {
        let mut results: Vec<(crate::ops::MsgRef, Result<Outcome>)> =
            Vec::with_capacity(batch.len());
        let mut lines: Vec<(usize, [u8; 16], Vec<u8>)> = Vec::new();
        for c in batch {
            let at = c.loc.at.clone();
            match self.prepare(c, now) {
                Ok(Prepared::Known) => results.push((at, Ok(Outcome::AlreadyArchived))),
                Ok(Prepared::Line(id, line)) => {
                    results.push((at, Ok(Outcome::Archived)));
                    lines.push((results.len() - 1, id, line));
                }
                Err(e) => results.push((at, Err(e))),
            }
        }
        if !lines.is_empty() {
            let synced = fsutil::sync_fs(&self.root).map_err(|e| Error::io("sync", &self.root, e));
            crate::ops::failpoint("archive-renamed");
            let mpath = self.root.join(MANIFEST);
            let written = synced.and_then(|()| {
                for (_, _, line) in &lines {
                    self.manifest
                        .write_all(line)
                        .map_err(|e| Error::io("write", &mpath, e))?;
                }
                self.manifest
                    .sync_data()
                    .map_err(|e| Error::io("sync", &mpath, e))
            });
            if let Err(e) = written {
                // Nothing of this batch may leave the spool without its line.
                let msg = e.to_string();
                for (i, _, _) in &lines {
                    results[*i].1 = Err(Error::Failed(msg.clone()));
                }
            } else {
                for (_, id, _) in &lines {
                    self.known.insert(*id);
                }
            }
            crate::ops::failpoint("archive-manifest");
        }
        results
    }

    /// Puts one message's files into its entry directory (or finds them
    /// there from an interrupted run) and returns its manifest line.
    fn prepare(&mut self, c: Candidate, now: i64) -> Result<Prepared> {
        let Candidate {
            loc,
            files,
            meta,
            mut row,
        } = c;
        let txt_sha = hex(&loc.txt_sha);
        let id = identity(
            &row.context,
            &row.mailbox,
            &row.folder,
            &row.number,
            row.origtime,
            row.msg_id.as_deref(),
            &txt_sha,
        );
        if self.known.contains(&id) {
            return Ok(Prepared::Known);
        }
        let rel = Self::entry_dir(&row);
        let fin = self.root.join(&rel);
        let stem = format!("msg{}", row.number);
        let existing = fs::symlink_metadata(&fin).ok();
        let archived = if existing.as_ref().is_some_and(|m| m.is_dir())
            && self.entry_matches(&fin, &stem, &files)?
        {
            // Renamed into place but the manifest line was not written.
            self.describe_files(&fin, &stem, &files)?
        } else {
            if existing.is_some() {
                let aside = fin.with_extension(format!("replaced-{now}"));
                fs::rename(&fin, &aside).map_err(|e| Error::io("move aside", &fin, e))?;
            }
            self.write_entry(&fin, &stem, &files)?
        };
        row.path = rel.join(format!("{stem}.txt")).display().to_string();
        let entry = ManifestEntry {
            row,
            fields: meta
                .fields()
                .iter()
                .map(|f| (f.key.clone(), f.value.clone()))
                .collect(),
            files: archived,
            dir: rel.display().to_string(),
            txt_sha256: txt_sha,
            archived_at: now,
        };
        let mut line = serde_json::to_vec(&entry).map_err(|e| Error::Failed(e.to_string()))?;
        line.push(b'\n');
        Ok(Prepared::Line(id, line))
    }

    /// Files into `<entry>.partial/`, fsynced and verified, then renamed to `<entry>/`.
    fn write_entry(
        &self,
        fin: &Path,
        stem: &str,
        files: &[(String, Source)],
    ) -> Result<Vec<ArchivedFile>> {
        // Every spool file must be a regular file within the cap before an
        // entry is started: a FIFO or a link to a device is refused by name.
        for (_, src) in files {
            if let Source::File(p) = src {
                fsutil::open_bounded(p, fsutil::MAX_AUDIO_BYTES)
                    .map_err(|e| Error::io("archive", p, e))?;
            }
        }
        let partial = fin.with_extension("partial");
        let written = self.fill_partial(&partial, stem, files);
        if written.is_err() {
            // No half entry stays behind for a message that was not archived.
            let _ = fs::remove_dir_all(&partial);
        }
        let out = written?;
        fs::rename(&partial, fin).map_err(|e| Error::io("rename", &partial, e))?;
        Ok(out)
    }

    fn fill_partial(
        &self,
        partial: &Path,
        stem: &str,
        files: &[(String, Source)],
    ) -> Result<Vec<ArchivedFile>> {
        match fs::create_dir(partial) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // Left by a killed run: start it again.
                fs::remove_dir_all(partial).map_err(|e| Error::io("remove", partial, e))?;
                fs::create_dir(partial).map_err(|e| Error::io("create", partial, e))?;
            }
            Err(_) => fs::create_dir_all(partial).map_err(|e| Error::io("create", partial, e))?,
        }
        let perms = self.perms;
        let mut out = Vec::new();
        for (ext, src) in files {
            let name = format!("{stem}.{ext}");
            let dst = partial.join(&name);
            // Audio is never rewritten in place by Asterisk: a hard link is a
            // safe zero-copy snapshot. The .txt may be rewritten: copy it.
            let linked = match src {
                Source::File(p) => {
                    self.same_fs_as_spool && ext != "txt" && fs::hard_link(p, &dst).is_ok()
                }
                Source::Data(_) => false,
            };
            let sum = if linked {
                fsutil::sha256_file(&dst).map_err(|e| Error::io("read", &dst, e))?
            } else {
                // Durability comes from the batch's syncfs.
                let sum = match src {
                    Source::File(p) => fsutil::copy_hashed(p, &dst, &perms, false)
                        .map_err(|e| Error::io("copy", p, e))?,
                    Source::Data(d) => fsutil::write_hashed(&mut &d[..], &dst, &perms, false)
                        .map_err(|e| Error::io("write", &dst, e))?,
                };
                // Verify what landed on disk, not what was read.
                let again = fsutil::sha256_file(&dst).map_err(|e| Error::io("read", &dst, e))?;
                if again != sum {
                    return Err(Error::Failed(format!(
                        "{}: checksum mismatch after copy; nothing removed",
                        dst.display()
                    )));
                }
                sum
            };
            let size = fs::metadata(&dst)
                .map_err(|e| Error::io("read", &dst, e))?
                .len();
            out.push(ArchivedFile {
                name,
                size,
                sha256: hex(&sum),
            });
            crate::ops::failpoint("archive-file");
        }
        Ok(out)
    }

    fn entry_matches(&self, fin: &Path, stem: &str, files: &[(String, Source)]) -> Result<bool> {
        for (ext, src) in files {
            let a = fin.join(format!("{stem}.{ext}"));
            let (Ok(x), Ok(y)) = (fsutil::sha256_file(&a), source_sha256(src)) else {
                return Ok(false);
            };
            if x != y {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn describe_files(
        &self,
        fin: &Path,
        stem: &str,
        files: &[(String, Source)],
    ) -> Result<Vec<ArchivedFile>> {
        files
            .iter()
            .map(|(ext, _)| {
                let name = format!("{stem}.{ext}");
                let p = fin.join(&name);
                let size = fs::metadata(&p)
                    .map_err(|e| Error::io("read", &p, e))?
                    .len();
                let sum = fsutil::sha256_file(&p).map_err(|e| Error::io("read", &p, e))?;
                Ok(ArchivedFile {
                    name,
                    size,
                    sha256: hex(&sum),
                })
            })
            .collect()
    }
}

/// A manifest is data like any other: its entry directory must stay inside
/// the archive and its file names must be message file names.
pub fn entry_path(root: &Path, e: &ManifestEntry, name: &str) -> Result<PathBuf> {
    let dir = Path::new(&e.dir);
    let dir_ok = !e.dir.is_empty()
        && dir
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    let name_ok = name.starts_with("msg")
        && !name.contains('/')
        && !name.contains('\0')
        && name.split_once('.').is_some_and(|(_, ext)| !ext.is_empty());
    if !dir_ok || !name_ok {
        return Err(Error::Usage(format!(
            "manifest entry {:?}/{:?} points outside the archive or is not a message file; refused",
            e.dir, name
        )));
    }
    Ok(root.join(dir).join(name))
}

/// The archived files of an entry as `(extension, path)`, after checking their
/// checksums against the manifest.
pub fn entry_files(root: &Path, e: &ManifestEntry) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for f in &e.files {
        let p = entry_path(root, e, &f.name)?;
        let sum = fsutil::sha256_file(&p).map_err(|err| Error::io("read", &p, err))?;
        if hex(&sum) != f.sha256 {
            return Err(Error::Failed(format!(
                "{}: checksum differs from the manifest (damaged archive); not restored",
                p.display()
            )));
        }
        let ext = f
            .name
            .split_once('.')
            .map(|(_, x)| x.to_string())
            .unwrap_or_default();
        out.push((ext, p));
    }
    Ok(out)
}

/// A selection of archived messages, matched by text (the boxes may no longer exist).
pub struct EntryMatch {
    msg_id: Option<String>,
    context: Option<String>,
    mailbox: Option<String>,
    folder: Option<String>,
    number: Option<u16>,
}

impl EntryMatch {
    pub fn parse(s: &str) -> Result<EntryMatch> {
        if crate::target::looks_like_msg_id(s) {
            return Ok(EntryMatch {
                msg_id: Some(s.to_string()),
                context: None,
                mailbox: None,
                folder: None,
                number: None,
            });
        }
        let parts: Vec<&str> = s.trim_end_matches('/').split('/').collect();
        if parts
            .iter()
            .any(|p| p.is_empty() || *p == ".." || *p == ".")
            || parts.len() > 4
        {
            return Err(Error::Usage(format!(
                "\"{s}\" is not a selection like compta/1202/Old or 1202@compta"
            )));
        }
        let (context, mailbox, rest) = match parts[0].split_once('@') {
            Some((b, c)) => (Some(c.to_string()), Some(b.to_string()), &parts[1..]),
            None => (
                Some(parts[0].to_string()),
                parts.get(1).map(|s| s.to_string()),
                parts.get(2..).unwrap_or(&[]),
            ),
        };
        let folder = rest.first().map(|f| f.to_string());
        let number = match rest.get(1) {
            Some(n) => Some(
                crate::spool::MsgNum::parse(n)
                    .ok_or_else(|| Error::Usage(format!("\"{n}\" is not a message number")))?
                    .get(),
            ),
            None => None,
        };
        Ok(EntryMatch {
            msg_id: None,
            context,
            mailbox,
            folder,
            number,
        })
    }

    pub fn matches(&self, e: &ManifestEntry) -> bool {
        let r = &e.row;
        self.msg_id
            .as_ref()
            .is_none_or(|id| r.msg_id.as_deref() == Some(id))
            && self.context.as_ref().is_none_or(|c| c == &r.context)
            && self.mailbox.as_ref().is_none_or(|m| m == &r.mailbox)
            && self
                .folder
                .as_ref()
                .is_none_or(|f| f.eq_ignore_ascii_case(&r.folder))
            && self.number.is_none_or(|n| r.number == format!("{n:04}"))
    }
}

pub fn matchers(args: &[String]) -> Result<Vec<EntryMatch>> {
    args.iter().map(|s| EntryMatch::parse(s)).collect()
}

/// The folder an archive entry names (INBOX when the name is not one).
pub fn folder_of(name: &str) -> Folder {
    Folder::known(name).unwrap_or_else(|| Folder::from_dir_name(name).unwrap_or(Folder::Inbox))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe() {
        assert_eq!(sanitize_part("1795689259-0000000b"), "1795689259-0000000b");
        assert_eq!(sanitize_part("../etc"), "_.._etc");
        assert_eq!(sanitize_part("a/b c"), "a_b_c");
        assert_eq!(sanitize_part(""), "_");
    }

    #[test]
    fn manifest_paths_stay_inside() {
        let line = r#"{"context":"c","box":"b","folder":"Old","number":"0000","msg_id":null,"callerid":null,"callerid_name":null,"callerid_num":null,"origtime":1,"date":null,"duration":null,"urgent":false,"formats":[],"path":"x","state":"complete","fields":[],"files":[{"name":"msg0000.txt","size":1,"sha256":"00"}],"dir":"../../etc","txt_sha256":"00","archived_at":0}"#;
        let mut e: ManifestEntry = serde_json::from_str(line).unwrap();
        let root = Path::new("/srv/archive");
        assert!(entry_files(root, &e).is_err());
        e.dir = "/etc".into();
        assert!(entry_files(root, &e).is_err());
        e.dir = "c/b/1970/01/1-Old-0000-noid".into();
        e.files[0].name = "../passwd".into();
        assert!(entry_files(root, &e).is_err());
    }

    #[test]
    fn torn_line_is_cut() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m");
        fs::write(&p, "{\"a\":1}\n{\"b\":").unwrap();
        let mut f = OpenOptions::new().read(true).append(true).open(&p).unwrap();
        assert!(repair_torn_tail(&mut f).unwrap());
        assert_eq!(fs::read_to_string(&p).unwrap(), "{\"a\":1}\n");
        assert!(!repair_torn_tail(&mut f).unwrap());
    }
}
