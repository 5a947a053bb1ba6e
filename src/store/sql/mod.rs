//! Asterisk's ODBC storage (spec §10.1): every message is a row of one SQL
//! table on PostgreSQL or MariaDB/MySQL. `SqlStore` is the second
//! `MailboxStore`; changes go through `change`, each in one transaction.

pub mod change;
pub mod check;
pub mod db;
pub mod discover;
mod greeting;
pub mod migrate;
pub mod packed;
mod pgcopy;
mod spill;
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

/// What one `GROUP BY dir` says: counts by `dir`, and the same as a tree
/// (context → box → folders), parsed once.
#[derive(Default)]
struct Summary {
    counts: BTreeMap<String, u32>,
    tree: FolderTree,
}

/// context → box → folders with rows.
type FolderTree = BTreeMap<String, BTreeMap<String, Vec<Folder>>>;

/// Puts a folder that has rows into the tree.
fn add_folder(tree: &mut FolderTree, p: &table::Place) {
    tree.entry(p.mailbox.context.to_string())
        .or_default()
        .entry(p.mailbox.mailbox().to_string())
        .or_default()
        .push(p.folder.clone());
}

impl Summary {
    /// Asterisk's folder order in each box.
    fn sort_folders(&mut self) {
        for boxes in self.tree.values_mut() {
            for folders in boxes.values_mut() {
                folders.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
                folders.dedup();
            }
        }
    }
}

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
    summary: Mutex<Option<Arc<Summary>>>,
    rows: Mutex<HashMap<MailboxId, Arc<BoxRows>>>,
    /// Boxes of a whole-table listing, packed (see `packed`).
    packed: Mutex<HashMap<MailboxId, Arc<packed::PackedBox>>>,
    /// The rows of a whole-table listing, while it runs.
    spill: Mutex<Option<Arc<spill::Spill>>>,
}

/// Ends a whole-table listing: its rows are dropped.
pub struct SpillGuard<'a> {
    store: &'a SqlStore,
}

impl Drop for SpillGuard<'_> {
    fn drop(&mut self) {
        *self.store.spill.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.store
            .packed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
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
            packed: Mutex::new(HashMap::new()),
            spill: Mutex::new(None),
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

    fn loaded_summary(&self) -> Option<Arc<Summary>> {
        self.summary
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn summary(&self) -> Result<Arc<Summary>> {
        let mut s = self.summary.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = &*s {
            return Ok(m.clone());
        }
        let sql = format!(
            "SELECT dir, COUNT(*) FROM {} WHERE dir LIKE ? AND msgnum >= 0 GROUP BY dir",
            self.table.name
        );
        let prefix = format!("{}/", self.table.prefix);
        let mut sum = Summary::default();
        self.db()
            .query_each(&sql, &[V::Text(Table::like(&prefix))], &mut |r| {
                if let (Some(d), Some(n)) = (r[0].text(), r[1].int()) {
                    if let Some(p) = self.table.place(&d) {
                        add_folder(&mut sum.tree, &p);
                    }
                    sum.counts.insert(d, u32::try_from(n).unwrap_or(u32::MAX));
                }
            })
            .map_err(db_err(&self.table, "cannot count messages"))?;
        sum.sort_folders();
        let sum = Arc::new(sum);
        *s = Some(sum.clone());
        Ok(sum)
    }

    /// Reads the whole table once for a listing of every box: the summary
    /// comes from the same read, and the rows wait in a temporary file until
    /// their box is listed (see `spill`).
    pub fn read_all(&self) -> Result<SpillGuard<'_>> {
        if self.table.kind == db::Kind::Postgres && !self.dir_deterministic() {
            return Err(Error::Failed(
                "dir has a nondeterministic collation: read box by box".into(),
            ));
        }
        let (sum, spill) = spill::Spill::read(&mut self.db(), &self.table)?;
        *self.summary.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(sum));
        *self.spill.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(spill));
        Ok(SpillGuard { store: self })
    }

    /// PostgreSQL: whether equal `dir`s are byte-equal (collations were all
    /// deterministic before version 12, which has no such column).
    fn dir_deterministic(&self) -> bool {
        let sql = "SELECT c.collisdeterministic FROM pg_attribute a JOIN pg_collation c ON c.oid = a.attcollation WHERE a.attrelid = CAST(CAST(? AS TEXT) AS regclass) AND a.attname = 'dir'";
        match self.db().query(sql, &[V::Text(self.table.name.clone())]) {
            Ok(rows) => rows
                .first()
                .and_then(|r| r.first())
                .is_none_or(|c| c.int() != Some(0)),
            Err(_) => true,
        }
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

    /// Reads the rows of these boxes in one query: `dir IN (…)` with the
    /// exact folder paths of the summary, so the primary key serves it
    /// whatever the column's collation (a `LIKE` per box or context would
    /// scan the table each time).
    pub fn prefetch_boxes(&self, boxes: &[MailboxId]) -> Result<()> {
        let sum = self.summary()?;
        let mut dirs = Vec::new();
        for mb in boxes {
            for f in sum
                .tree
                .get(mb.context.as_str())
                .and_then(|b| b.get(mb.mailbox()))
                .into_iter()
                .flatten()
            {
                dirs.push(V::Text(self.table.dir(mb, f)));
            }
        }
        let mut found: HashMap<MailboxId, BoxRows> = boxes
            .iter()
            .map(|mb| (mb.clone(), BoxRows::new()))
            .collect();
        for part in dirs.chunks(500) {
            let sql = format!(
                "SELECT {} FROM {} WHERE dir IN ({}) AND msgnum >= 0",
                self.table.row_columns(),
                self.table.name,
                vec!["?"; part.len()].join(", ")
            );
            self.db()
                .query_each(&sql, part, &mut |cells| {
                    let Some(r) = self.table.parse_row(cells) else {
                        return;
                    };
                    if let Some(p) = self.table.place(&r.dir) {
                        if let Some(b) = found.get_mut(&p.mailbox) {
                            b.entry(p.folder.dir_name().to_string())
                                .or_default()
                                .push(r);
                        }
                    }
                })
                .map_err(db_err(&self.table, "cannot list messages"))?;
        }
        let mut cache = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        for (mb, mut rows) in found {
            for v in rows.values_mut() {
                v.sort_by_key(|r| r.msgnum);
            }
            cache.insert(mb, Arc::new(rows));
        }
        Ok(())
    }

    /// The rows of a folder that are messages, by number, as `scan_folder`
    /// and `read_metadata` see them.
    pub fn folder_rows(
        &self,
        mb: &MailboxId,
        folder: &Folder,
        each: &mut dyn FnMut(MsgNum, &packed::RowView<'_>),
    ) -> Result<()> {
        let mut call = |v: &packed::RowView<'_>| {
            if let Some(num) = u16::try_from(v.msgnum).ok().and_then(MsgNum::new) {
                each(num, v);
            }
        };
        let Some(pb) = self.packed_box(mb)? else {
            let rows = self.box_rows(mb)?;
            for r in rows.get(folder.dir_name()).into_iter().flatten() {
                call(&packed::RowView::from_row(r));
            }
            return Ok(());
        };
        for (_, buf) in pb.iter().filter(|(f, _)| f == folder.dir_name()) {
            let mut views = Vec::new();
            packed::for_rows(buf, packed::LISTING_WIDTH, &mut |cells| {
                views.extend(packed::RowView::from_cells(cells));
            });
            // In order from the server already; sorted as the cache is.
            if !views.is_sorted_by_key(|v| v.msgnum) {
                views.sort_by_key(|v| v.msgnum);
            }
            views.iter().for_each(&mut call);
        }
        Ok(())
    }

    /// A box of the whole-table listing now running, if any.
    fn packed_box(&self, mb: &MailboxId) -> Result<Option<Arc<packed::PackedBox>>> {
        if let Some(p) = self
            .packed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(mb)
        {
            return Ok(Some(p.clone()));
        }
        let spill = self.spill.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let found = spill.and_then(|s| s.box_rows(mb)).transpose()?;
        Ok(found.map(|p| {
            let p = Arc::new(p);
            self.packed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(mb.clone(), p.clone());
            p
        }))
    }

    /// The row of a message.
    pub fn msg_row(&self, mb: &MailboxId, folder: &Folder, num: MsgNum) -> Result<MsgRow> {
        self.with_row(mb, folder, num, |r| r.clone())
    }

    /// Runs `f` on a message's cached row (rows are sorted by number).
    fn with_row<T>(
        &self,
        mb: &MailboxId,
        folder: &Folder,
        num: MsgNum,
        f: impl FnOnce(&MsgRow) -> T,
    ) -> Result<T> {
        let rows = self.box_rows(mb)?;
        let want = i32::from(num.get());
        rows.get(folder.dir_name())
            .and_then(|v| {
                v.binary_search_by_key(&want, |r| r.msgnum)
                    .ok()
                    .map(|i| &v[i])
            })
            .map(f)
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
        Ok(self
            .summary()?
            .tree
            .keys()
            .filter_map(|c| Context::new(c).ok())
            .collect())
    }

    fn mailboxes(&self, ctx: &Context) -> Result<Vec<MailboxId>> {
        Ok(self
            .summary()?
            .tree
            .get(ctx.as_str())
            .map(|b| {
                b.keys()
                    .filter_map(|m| MailboxId::new(ctx.clone(), m).ok())
                    .collect()
            })
            .unwrap_or_default())
    }

    fn context_exists(&self, ctx: &Context) -> bool {
        if let Some(sum) = self.loaded_summary() {
            return sum.tree.contains_key(ctx.as_str());
        }
        // One row is enough: no GROUP BY over the whole table to resolve a target.
        let sql = format!(
            "SELECT 1 FROM {} WHERE dir LIKE ? AND msgnum >= 0 LIMIT 1",
            self.table.name
        );
        let like = Table::like(&self.table.context_prefix(ctx));
        self.db()
            .query(&sql, &[V::Text(like)])
            .is_ok_and(|r| !r.is_empty())
    }

    fn mailbox_exists(&self, mb: &MailboxId) -> bool {
        if let Some(sum) = self.loaded_summary() {
            return sum
                .tree
                .get(mb.context.as_str())
                .is_some_and(|b| b.contains_key(mb.mailbox()));
        }
        // The standard folders by primary key first; a box with only
        // custom folders falls back to the summary.
        let dirs: Vec<V> = Folder::KNOWN
            .iter()
            .map(|f| V::Text(self.table.dir(mb, f)))
            .collect();
        let sql = format!(
            "SELECT 1 FROM {} WHERE dir IN ({}) AND msgnum >= 0 LIMIT 1",
            self.table.name,
            vec!["?"; dirs.len()].join(", ")
        );
        if self.db().query(&sql, &dirs).is_ok_and(|r| !r.is_empty()) {
            return true;
        }
        self.summary().is_ok_and(|s| {
            s.tree
                .get(mb.context.as_str())
                .is_some_and(|b| b.contains_key(mb.mailbox()))
        })
    }

    fn folders(&self, mb: &MailboxId) -> Result<Vec<Folder>> {
        Ok(self
            .summary()?
            .tree
            .get(mb.context.as_str())
            .and_then(|b| b.get(mb.mailbox()))
            .cloned()
            .unwrap_or_default())
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
        self.with_row(mb, folder, num, |r| r.metadata(&self.table))
    }

    fn folder_counts(&self, mb: &MailboxId, folder: &Folder) -> Result<FolderCounts> {
        let n = self
            .summary()?
            .counts
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

    fn prefetch(&self, boxes: &[MailboxId]) {
        if self
            .spill
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
        {
            return;
        }
        // A failure here shows again, with its message, on the per-box read.
        let _ = self.prefetch_boxes(boxes);
    }

    fn release(&self, boxes: &[MailboxId]) {
        let mut cache = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        let mut packed = self.packed.lock().unwrap_or_else(|p| p.into_inner());
        for mb in boxes {
            cache.remove(mb);
            packed.remove(mb);
        }
    }
}
