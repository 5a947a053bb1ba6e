//! Asterisk's ODBC storage (spec §10.1): every message is a row of one SQL
//! table on PostgreSQL or MariaDB/MySQL. `SqlStore` is the second
//! `MailboxStore`; changes go through `change`, each in one transaction.

pub mod change;
pub mod check;
pub mod db;
pub mod discover;
pub mod migrate;
pub mod table;
pub mod watch;

use crate::audio::{self, AudioInfo};
use crate::error::{Error, Result};
use crate::metadata::Metadata;
use crate::scan::{FolderCounts, FolderScan, MsgFiles};
use crate::spool::{Context, Folder, MailboxId, MsgNum};
use crate::store::{Counts, MailboxStore};
use db::{Db, DbTarget, V};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use table::{db_err, MsgRow, Table};

/// One mailbox's rows, by folder name, by number.
type BoxRows = BTreeMap<String, Vec<MsgRow>>;

/// Messages kept in a SQL table.
pub struct SqlStore {
    db: Mutex<Db>,
    /// This server's spool: Asterisk's folder locks are still files there.
    pub spool: crate::spool::Spool,
    pub table: Table,
    /// Extension of the recording: the first `format=` of voicemail.conf.
    pub ext: String,
    /// `dir` → row count, from one `GROUP BY dir` (what MWI counts).
    summary: Mutex<Option<Arc<BTreeMap<String, u32>>>>,
    rows: Mutex<HashMap<MailboxId, Arc<BoxRows>>>,
}

impl SqlStore {
    pub fn open(
        target: &DbTarget,
        table: &str,
        prefix: &str,
        ext: &str,
        spool: crate::spool::Spool,
    ) -> Result<SqlStore> {
        let mut db = Db::connect(target)?;
        let table = Table::open(&mut db, table, prefix)?;
        Ok(SqlStore {
            db: Mutex::new(db),
            spool,
            table,
            ext: ext.to_string(),
            summary: Mutex::new(None),
            rows: Mutex::new(HashMap::new()),
        })
    }

    pub fn db(&self) -> MutexGuard<'_, Db> {
        // A panic elsewhere cannot leave the connection half-used: reuse it.
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn target(&self) -> DbTarget {
        self.db().target.clone()
    }

    /// Forgets what was read, after a change.
    pub fn invalidate(&self) {
        *self.summary.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.rows.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn summary(&self) -> Result<Arc<BTreeMap<String, u32>>> {
        let mut s = self.summary.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = &*s {
            return Ok(m.clone());
        }
        let sql = format!(
            "SELECT dir, COUNT(*) FROM {} WHERE dir LIKE ? AND msgnum >= 0 GROUP BY dir",
            self.table.name
        );
        let prefix = format!("{}/", self.table.prefix);
        let mut map = BTreeMap::new();
        self.db()
            .query_each(&sql, &[V::Text(Table::like(&prefix))], &mut |r| {
                if let (Some(d), Some(n)) = (r[0].text(), r[1].int()) {
                    map.insert(d, u32::try_from(n).unwrap_or(u32::MAX));
                }
            })
            .map_err(db_err(&self.table, "cannot count messages"))?;
        let map = Arc::new(map);
        *s = Some(map.clone());
        Ok(map)
    }

    /// Folders with rows, as places.
    fn places(&self) -> Result<Vec<(table::Place, u32)>> {
        Ok(self
            .summary()?
            .iter()
            .filter_map(|(d, n)| Some((self.table.place(d)?, *n)))
            .collect())
    }

    fn box_rows(&self, mb: &MailboxId) -> Result<Arc<BoxRows>> {
        if let Some(r) = self.rows.lock().unwrap_or_else(|p| p.into_inner()).get(mb) {
            return Ok(r.clone());
        }
        let mut rows = BoxRows::new();
        let prefix = self.table.box_prefix(mb);
        self.table.rows_under(&mut self.db(), &prefix, &mut |r| {
            if let Some(p) = self.table.place(&r.dir) {
                rows.entry(p.folder.dir_name().to_string())
                    .or_default()
                    .push(r);
            }
        })?;
        for v in rows.values_mut() {
            v.sort_by_key(|r| r.msgnum);
        }
        let rows = Arc::new(rows);
        self.rows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(mb.clone(), rows.clone());
        Ok(rows)
    }

    /// Reads a whole context in one query (listing a spool box by box would
    /// cost one round trip per box).
    pub fn prefetch_context(&self, ctx: &Context) -> Result<()> {
        let mut boxes: HashMap<MailboxId, BoxRows> = HashMap::new();
        let prefix = self.table.context_prefix(ctx);
        self.table.rows_under(&mut self.db(), &prefix, &mut |r| {
            if let Some(p) = self.table.place(&r.dir) {
                boxes
                    .entry(p.mailbox)
                    .or_default()
                    .entry(p.folder.dir_name().to_string())
                    .or_default()
                    .push(r);
            }
        })?;
        let mut cache = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|mb, _| &mb.context != ctx);
        for (mb, mut rows) in boxes {
            for v in rows.values_mut() {
                v.sort_by_key(|r| r.msgnum);
            }
            cache.insert(mb, Arc::new(rows));
        }
        Ok(())
    }

    /// Drops a context's rows once it has been listed (bounded memory).
    pub fn release_context(&self, ctx: &Context) {
        self.rows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|mb, _| &mb.context != ctx);
    }

    /// The row of a message.
    pub fn msg_row(&self, mb: &MailboxId, folder: &Folder, num: MsgNum) -> Result<MsgRow> {
        let rows = self.box_rows(mb)?;
        rows.get(folder.dir_name())
            .and_then(|v| v.iter().find(|r| r.msgnum == i32::from(num.get())))
            .cloned()
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "no message {} in {mb}/{folder} (table {})",
                    num.stem(),
                    self.table.name
                ))
            })
    }

    /// The recording of a message (the whole file of the first format).
    pub fn recording(&self, mb: &MailboxId, folder: &Folder, num: MsgNum) -> Result<Vec<u8>> {
        let dir = self.table.dir(mb, folder);
        self.table
            .recording(&mut self.db(), &dir, i32::from(num.get()))?
            .ok_or_else(|| {
                Error::Failed(format!(
                    "{mb}/{folder}/{}: the recording column is NULL (nothing to play; `vmtool check` lists such rows)",
                    num.stem()
                ))
            })
    }
}

/// Asterisk keeps `AUDMAGIC` in `recording` when `odbc_audio_on_disk=yes`.
pub const AUDMAGIC: &[u8] = b"AUDMAGIC";

impl MailboxStore for SqlStore {
    fn describe(&self) -> String {
        format!(
            "table {} on {} (dir prefix {})",
            self.table.name,
            self.db().target.describe(),
            self.table.prefix
        )
    }

    fn contexts(&self) -> Result<Vec<Context>> {
        let mut v: Vec<Context> = self
            .places()?
            .into_iter()
            .map(|(p, _)| p.mailbox.context)
            .collect();
        v.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        v.dedup();
        Ok(v)
    }

    fn mailboxes(&self, ctx: &Context) -> Result<Vec<MailboxId>> {
        let mut v: Vec<MailboxId> = self
            .places()?
            .into_iter()
            .filter(|(p, _)| &p.mailbox.context == ctx)
            .map(|(p, _)| p.mailbox)
            .collect();
        v.sort_by(|a, b| a.mailbox().cmp(b.mailbox()));
        v.dedup();
        Ok(v)
    }

    fn context_exists(&self, ctx: &Context) -> bool {
        self.contexts().is_ok_and(|c| c.contains(ctx))
    }

    fn mailbox_exists(&self, mb: &MailboxId) -> bool {
        self.places()
            .is_ok_and(|p| p.iter().any(|(p, _)| &p.mailbox == mb))
    }

    fn folders(&self, mb: &MailboxId) -> Result<Vec<Folder>> {
        let mut v: Vec<Folder> = self
            .places()?
            .into_iter()
            .filter(|(p, _)| &p.mailbox == mb)
            .map(|(p, _)| p.folder)
            .collect();
        v.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
        v.dedup();
        Ok(v)
    }

    fn scan_folder(&self, mb: &MailboxId, folder: &Folder) -> Result<FolderScan> {
        let rows = self.box_rows(mb)?;
        let mut scan = FolderScan::default();
        for r in rows.get(folder.dir_name()).into_iter().flatten() {
            let Some(num) = r.msg_num() else { continue };
            scan.messages.push(MsgFiles {
                num,
                txt: true,
                audio: if r.has_recording {
                    vec![self.ext.clone()]
                } else {
                    Vec::new()
                },
            });
        }
        let n = rows.get(folder.dir_name()).map_or(0, |v| v.len()) as u32;
        scan.counts = FolderCounts {
            mwi: n,
            capacity: n,
            any_msg: n > 0,
        };
        Ok(scan)
    }

    fn read_metadata(&self, mb: &MailboxId, folder: &Folder, num: MsgNum) -> Result<Metadata> {
        Ok(self.msg_row(mb, folder, num)?.metadata(&self.table))
    }

    fn folder_counts(&self, mb: &MailboxId, folder: &Folder) -> Result<FolderCounts> {
        let n = self
            .summary()?
            .get(&self.table.dir(mb, folder))
            .copied()
            .unwrap_or(0);
        Ok(FolderCounts {
            mwi: n,
            capacity: n,
            any_msg: n > 0,
        })
    }

    fn audio_info(
        &self,
        mb: &MailboxId,
        folder: &Folder,
        num: MsgNum,
        ext: &str,
    ) -> Result<AudioInfo> {
        let data = self.recording(mb, folder, num)?;
        let here = self.location(mb, folder, num);
        if data == AUDMAGIC {
            return Err(Error::Failed(format!(
                "{}: the audio is on the servers' disks (odbc_audio_on_disk=yes), not in the table",
                here.display()
            )));
        }
        let len = data.len() as u64;
        let format = audio::AudioFormat::from_extension(ext);
        audio::probe(std::io::Cursor::new(data), format, len).map_err(|e| Error::Audio {
            path: here,
            source: e,
        })
    }

    fn location(&self, mb: &MailboxId, folder: &Folder, num: MsgNum) -> PathBuf {
        PathBuf::from(format!("{}/{}", self.table.dir(mb, folder), num.stem()))
    }

    /// `MailboxCount` in one indexed query: `COUNT(*)` per literal `dir`.
    fn count(&self, mb: &MailboxId) -> Result<Counts> {
        let dirs = [Folder::Urgent, Folder::Inbox, Folder::Old].map(|f| self.table.dir(mb, &f));
        let sql = format!(
            "SELECT dir, COUNT(*) FROM {} WHERE dir IN (?, ?, ?) GROUP BY dir",
            self.table.name
        );
        let rows = self
            .db()
            .query(&sql, &dirs.clone().map(V::Text))
            .map_err(db_err(&self.table, "cannot count messages"))?;
        let mut c = Counts::default();
        for r in rows {
            let (Some(d), Some(n)) = (r[0].text(), r[1].int()) else {
                continue;
            };
            let n = u32::try_from(n).unwrap_or(u32::MAX);
            if d == dirs[0] {
                c.urgent = n;
            } else if d == dirs[1] {
                c.new = n;
            } else if d == dirs[2] {
                c.old = n;
            }
        }
        Ok(c)
    }

    fn prefetch(&self, ctx: &Context) {
        // A failure here shows again, with its message, on the per-box read.
        let _ = self.prefetch_context(ctx);
    }

    fn release(&self, ctx: &Context) {
        self.release_context(ctx);
    }
}
