//! Migration: a whole file spool into the table (the step a site takes
//! when it adds a second server) and back. Folder by folder, under
//! Asterisk's folder lock: copy everything, verify counts and checksums,
//! and only then remove the source. Numbers are kept; a rerun after a crash
//! finds what was already copied (same msg_id, origtime and checksum) and
//! finishes the removal.

use super::db::{Db, DbResult, V};
use super::table::{db_err, insert, MsgRow, Table};
use super::SqlStore;
use crate::error::{Error, Result};
use crate::fsutil::{self, hex, Perms};
use crate::lock::{FolderLock, LockOptions};
use crate::metadata::Metadata;
use crate::scan::MsgFiles;
use crate::spool::{Folder, MailboxId, Spool};
use crate::store::{FileStore, MailboxStore};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// What happened to one folder.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FolderReport {
    pub copied: usize,
    /// Already at the destination from an earlier, interrupted run.
    pub resumed: usize,
    pub removed: usize,
    /// Messages left where they were, with why.
    pub skipped: Vec<String>,
}

pub struct Migrator<'a> {
    pub store: &'a SqlStore,
    pub spool: &'a Spool,
    pub lock: LockOptions,
    pub dry_run: bool,
}

fn sha(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

impl Migrator<'_> {
    fn table(&self) -> &Table {
        &self.store.table
    }

    fn lock(&self, dir: &Path) -> Result<Option<FolderLock>> {
        if self.dry_run || !dir.is_dir() {
            return Ok(None);
        }
        FolderLock::acquire(dir, &self.lock)
            .map(Some)
            .map_err(|e| Error::LockBusy(e.to_string()))
    }

    /// One folder of the file spool into the table.
    pub fn folder_to_sql(&self, mb: &MailboxId, folder: &Folder) -> Result<FolderReport> {
        let mut rep = FolderReport::default();
        let files = FileStore::new(self.spool.clone());
        let dir_path = self.spool.folder_dir(mb, folder);
        let _lock = self.lock(&dir_path)?;
        let scan = files.scan_folder(mb, folder)?;
        let t = self.table();
        let dir = t.dir(mb, folder);
        let ext = self.store.ext.clone();
        // Phase 1: read every message and copy what is not there yet.
        struct Item {
            files: MsgFiles,
            meta: Metadata,
            audio: Option<Vec<u8>>,
        }
        let mut items = Vec::new();
        for m in scan.messages.iter().filter(|m| m.txt) {
            let meta = match files.read_metadata(mb, folder, m.num) {
                Ok(x) => x,
                Err(e) => {
                    rep.skipped.push(format!("{e}"));
                    continue;
                }
            };
            let mut meta = meta;
            if !t.extra.is_empty() {
                let txt_path = self.spool.txt_path(mb, folder, m.num);
                let bytes = crate::fsutil::read_txt_file(&txt_path)
                    .map_err(|e| Error::io("read", &txt_path, e))?;
                keep_raw_extras(&mut meta, &bytes, t);
            }
            let audio = if m.audio.iter().any(|a| a == &ext) {
                let p = self.spool.msg_file(mb, folder, m.num, &ext);
                match crate::fsutil::read_capped(&p, crate::fsutil::MAX_AUDIO_BYTES) {
                    Ok(d) => Some(d),
                    Err(e) => {
                        rep.skipped.push(Error::io("read", &p, e).to_string());
                        continue;
                    }
                }
            } else {
                None
            };
            items.push(Item {
                files: m.clone(),
                meta,
                audio,
            });
        }
        let mut db = self.store.db();
        let mut verified = Vec::new();
        for it in items {
            let num = i32::from(it.files.num.get());
            let here = format!("{mb}/{folder}/{}", it.files.num.stem());
            let existing = t.row(&mut db, &dir, num)?;
            let same_identity = |r: &MsgRow| {
                r.msg_id.as_deref() == it.meta.get("msg_id")
                    && r.origtime.as_deref().map(str::trim)
                        == it.meta.get("origtime").map(str::trim)
            };
            match (&existing, &it.audio) {
                (Some(r), _) if !same_identity(r) => {
                    rep.skipped.push(format!(
                        "{here}: the table already holds another message at {dir} msgnum {num}; left in the spool"
                    ));
                    continue;
                }
                (Some(_), None) => {
                    // Audio already removed by an interrupted run: only the .txt is left.
                    rep.resumed += 1;
                    verified.push(it.files.clone());
                    continue;
                }
                (None, None) => {
                    rep.skipped.push(format!(
                        "{here}: no .{ext} file (the first format= of voicemail.conf, the only one the table keeps); left in the spool"
                    ));
                    continue;
                }
                _ => {}
            }
            let audio = it.audio.as_deref().unwrap_or_default();
            if self.dry_run {
                rep.copied += 1;
                continue;
            }
            if existing.is_none() {
                insert(&mut db, t, mb, &dir, num, &it.meta, audio)
                    .map_err(db_err(t, &format!("cannot insert {here}")))?;
                rep.copied += 1;
            } else {
                rep.resumed += 1;
            }
            // Phase 2: verify what the server now holds.
            let stored = t.recording(&mut db, &dir, num)?.unwrap_or_default();
            let row = t.row(&mut db, &dir, num)?;
            if sha(&stored) != sha(audio) || !row.as_ref().is_some_and(same_identity) {
                rep.skipped.push(format!(
                    "{here}: the row in the table differs from the files (checksum or identity); the files were kept"
                ));
                continue;
            }
            verified.push(it.files.clone());
        }
        drop(db);
        self.store.invalidate();
        // Phase 3: remove the verified files: audio first, the .txt last.
        if !self.dry_run {
            for m in &verified {
                let mut names: Vec<String> = m.audio.clone();
                names.push("txt".into());
                for e in names {
                    let p = self.spool.msg_file(mb, folder, m.num, &e);
                    match std::fs::remove_file(&p) {
                        Ok(()) => {}
                        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                        Err(err) => return Err(Error::io("remove", &p, err)),
                    }
                }
                rep.removed += 1;
            }
            if !verified.is_empty() {
                fsutil::sync_dir(&dir_path).map_err(|e| Error::io("sync", &dir_path, e))?;
            }
        } else {
            rep.removed = verified.len();
        }
        Ok(rep)
    }

    /// One folder of the table into the file spool.
    pub fn folder_to_files(&self, mb: &MailboxId, folder: &Folder) -> Result<FolderReport> {
        let mut rep = FolderReport::default();
        let t = self.table();
        let dir = t.dir(mb, folder);
        let dir_path = self.spool.folder_dir(mb, folder);
        let ext = self.store.ext.clone();
        let mut rows = Vec::new();
        {
            let mut db = self.store.db();
            let sql = format!(
                "SELECT {} FROM {} WHERE dir = ? AND msgnum >= 0 ORDER BY msgnum",
                t.row_columns(),
                t.name
            );
            db.query_each(&sql, &[V::Text(dir.clone())], &mut |c| {
                if let Some(r) = t.parse_row(c) {
                    rows.push(r);
                }
            })
            .map_err(db_err(t, "cannot list messages"))?;
        }
        if self.dry_run {
            rep.copied = rows.len();
            return Ok(rep);
        }
        let perms = observe_nearest(&dir_path)?;
        fsutil::create_dir_like(&dir_path, &perms)
            .map_err(|e| Error::io("create", &dir_path, e))?;
        let tmp = self.spool.tmp_dir(mb);
        fsutil::create_dir_like(&tmp, &perms).map_err(|e| Error::io("create", &tmp, e))?;
        let _lock = self.lock(&dir_path)?;
        let mut verified = Vec::new();
        for r in rows {
            let Some(num) = r.msg_num() else { continue };
            let here = format!("{mb}/{folder}/{}", num.stem());
            let Some(audio) = t.recording(&mut self.store.db(), &dir, r.msgnum)? else {
                rep.skipped.push(format!(
                    "{here}: recording is NULL; the row was kept (see `vmtool check`)"
                ));
                continue;
            };
            let txt = r.file_txt(t);
            let txt_path = self.spool.txt_path(mb, folder, num);
            let audio_path = self.spool.msg_file(mb, folder, num, &ext);
            let same = |p: &Path, want: &[u8]| {
                crate::fsutil::read_capped(p, crate::fsutil::MAX_AUDIO_BYTES)
                    .is_ok_and(|d| d == want)
            };
            if txt_path.exists() || audio_path.exists() {
                if same(&txt_path, &txt) && same(&audio_path, &audio) {
                    rep.resumed += 1;
                    verified.push(r);
                } else {
                    rep.skipped.push(format!(
                        "{here}: the spool already holds another msg{:04} there; the row was kept",
                        num.get()
                    ));
                }
                continue;
            }
            // Staged in tmp/, then audio before .txt, as Asterisk's rename does.
            stage_put(&tmp, &audio_path, &audio, &perms)?;
            stage_put(&tmp, &txt_path, &txt, &perms)?;
            if same(&txt_path, &txt) && same(&audio_path, &audio) {
                rep.copied += 1;
                verified.push(r);
            } else {
                rep.skipped.push(format!(
                    "{here}: the written files differ from the row; the row was kept"
                ));
            }
        }
        fsutil::sync_dir(&dir_path).map_err(|e| Error::io("sync", &dir_path, e))?;
        // Only now the rows go, in one transaction.
        if !verified.is_empty() {
            let mut db = self.store.db();
            db.transaction(|db| delete_rows(db, t, &verified))
                .map_err(db_err(t, "cannot remove migrated rows"))?;
            rep.removed = verified.len();
        }
        self.store.invalidate();
        Ok(rep)
    }
}

/// File-only keys keep their raw text (Asterisk's writer does not escape,
/// so `callerchan=Local/…;2` holds a comment it never reads).
fn keep_raw_extras(meta: &mut Metadata, txt: &[u8], t: &Table) {
    for (k, v) in raw_values(txt) {
        if t.extra.contains(&k.as_str()) {
            meta.set(&k, v);
        }
    }
}

/// The metadata a row is inserted with, from a `.txt` in the file layout.
pub fn row_metadata(txt: &[u8], t: &Table) -> std::result::Result<Metadata, String> {
    let mut meta = Metadata::parse(txt).map_err(|e| e.to_string())?;
    keep_raw_extras(&mut meta, txt, t);
    Ok(meta)
}

/// `key=value` lines of the `[message]` section, values as written (comments kept).
fn raw_values(txt: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(txt);
    let mut in_message = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            in_message = l.to_ascii_lowercase().starts_with("[message]");
            continue;
        }
        if !in_message || l.starts_with(';') {
            continue;
        }
        if let Some((k, v)) = l.split_once('=') {
            out.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    out
}

fn delete_rows(db: &mut Db, t: &Table, rows: &[MsgRow]) -> DbResult<()> {
    // NULL-safe equality: a row without msg_id is still matched.
    let same = match t.kind {
        super::db::Kind::Mysql => "<=>",
        super::db::Kind::Postgres => "IS NOT DISTINCT FROM",
    };
    let sql = format!(
        "DELETE FROM {} WHERE dir = ? AND msgnum = ? AND msg_id {same} ?",
        t.name
    );
    for r in rows {
        db.exec(
            &sql,
            &[
                V::Text(r.dir.clone()),
                V::Int(r.msgnum),
                V::from(r.msg_id.clone()),
            ],
        )?;
    }
    Ok(())
}

/// Writes `data` to `to` through a staged, fsynced copy in `tmp`.
fn stage_put(tmp: &Path, to: &Path, data: &[u8], perms: &Perms) -> Result<()> {
    let name = to
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let staged: PathBuf = tmp.join(format!(".vmtool-stage-{}-{name}", std::process::id()));
    fsutil::write_atomic(&staged, data, perms).map_err(|e| Error::io("write", &staged, e))?;
    std::fs::rename(&staged, to).map_err(|e| Error::io("rename", to, e))
}

/// Owner and modes of the closest existing directory above `dir`.
pub fn observe_nearest(dir: &Path) -> Result<Perms> {
    let mut d = dir;
    loop {
        if d.is_dir() {
            return Perms::observe(d).map_err(|e| Error::io("read", d, e));
        }
        d = d
            .parent()
            .ok_or_else(|| Error::NotFound(format!("no directory above {}", dir.display())))?;
    }
}
