//! A whole-table listing: one read of the table makes both the summary
//! (`GROUP BY dir` reads every row anyway on MariaDB/MySQL, whose clustered
//! primary key holds the recordings) and the rows. The rows go packed to an
//! unlinked temporary file, not memory, until the listing reaches their box;
//! the listing's order stays vmtool's whatever the server's collation.
//!
//! Rows arrive in any order of folders (PostgreSQL's heap order), so each
//! reader gathers them in a buffer of fixed size and, when it is full,
//! writes it out grouped by folder (a segment): a folder's rows are then
//! one piece per segment, and memory stays at the buffer's size.

use super::db::{Db, Kind, RawCell, V};
use super::packed::{put_row, PackedBox};
use super::table::{db_err, Table};
use super::Summary;
use crate::error::{Error, Result};
use crate::spool::MailboxId;
use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;

/// One folder of the listing: its rows in each reader's file, by the
/// reader's number for its `dir`.
struct SpillDir {
    folder: String,
    /// `(reader, dir number)`.
    ids: Vec<(usize, u32)>,
}

/// Rows are gathered in memory up to this (per reader), then written out
/// grouped by folder. Larger means fewer pieces per folder to read back
/// (one per segment: some 12 per reader for 1,000,000 rows) but more
/// memory: 8 MiB gave a third more peak RSS for no measurable time.
const BUFFER_BYTES: usize = 4 << 20;

/// Room kept for one more row in the buffer.
const ROW_ROOM: usize = 64 << 10;

/// One `dir` (group) while reading.
pub(super) struct DirAcc {
    name: String,
    /// Rows of its group (what `COUNT(*)` gives).
    count: u32,
}

/// One buffer written out: the rows of dir number `d` are at
/// `at + ends[d - 1] .. at + ends[d]` (from 0 for the first); dirs past
/// `ends` have no rows in it.
struct Segment {
    at: u64,
    ends: Vec<u32>,
}

impl Segment {
    fn range(&self, d: u32) -> Option<(u64, usize)> {
        let d = d as usize;
        let end = *self.ends.get(d)?;
        let start = if d == 0 { 0 } else { self.ends[d - 1] };
        (end > start).then(|| (self.at + u64::from(start), (end - start) as usize))
    }
}

/// What one reader leaves: its dirs (numbered by position), and its file
/// with the segments in it.
pub(super) struct Scanned {
    dirs: Vec<DirAcc>,
    file: std::fs::File,
    segments: Vec<Segment>,
}

pub(super) struct Spill {
    /// Each reader's file and segments.
    readers: Vec<(std::fs::File, Vec<Segment>)>,
    boxes: HashMap<MailboxId, Vec<SpillDir>>,
}

fn release_freed_memory() {
    // SAFETY: mi_collect has no preconditions (with another global
    // allocator it only tidies mimalloc's own, unused, state).
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// Unlinked at once (O_TMPFILE where it can): nothing is left behind,
/// whatever happens.
fn temp_file() -> std::io::Result<std::fs::File> {
    tempfile::tempfile()
}

impl Spill {
    /// Reads the table once, returning the summary `GROUP BY dir` would give
    /// (one group per collation-equal `dir`, named by its first row in
    /// primary-key order, as the server names it) and the rows of each
    /// group's named `dir` (the rows a `dir IN (…)` read keeps).
    pub fn read(db: &mut Db, table: &Table) -> Result<(Summary, Spill)> {
        // MariaDB/MySQL: the collation's weight of `dir` tells which rows
        // `GROUP BY dir` puts together. PostgreSQL: equal means byte-equal
        // (deterministic collations only, checked by the caller), and LIKE
        // on the prefix is a byte comparison, done here.
        let mysql = table.kind == Kind::Mysql;
        let prefix = format!("{}/", table.prefix);
        let scanned: Vec<Result<Scanned>> = if mysql {
            // A PAD SPACE collation ignores trailing blanks, its weight does not.
            let pad = db
                .query(
                    &format!("SELECT dir = CONCAT(dir, ' ') FROM {} LIMIT 1", table.name),
                    &[],
                )
                .map_err(db_err(table, "cannot list messages"))?
                .first()
                .and_then(|r| r.first())
                .and_then(|c| c.int())
                == Some(1);
            let sql = format!(
                "SELECT {}, WEIGHT_STRING({}) FROM {} WHERE dir LIKE ? AND msgnum >= 0 ORDER BY dir, msgnum",
                table.listing_columns(),
                if pad { "TRIM(TRAILING ' ' FROM dir)" } else { "dir" },
                table.name
            );
            let params = [V::Text(Table::like(&prefix))];
            vec![scan(db, table, true, &prefix, &sql, &params)]
        } else {
            // No ORDER BY: a sequential scan costs the server half as much
            // as the index's order (rows of a folder may then come apart:
            // several runs, sorted by msgnum when read back).
            let sql = format!(
                "SELECT {} FROM {} WHERE msgnum >= 0",
                table.listing_columns(),
                table.name
            );
            match super::pgcopy::read(db, table, &sql, &prefix) {
                Some(r) => r,
                None => vec![scan(db, table, false, &prefix, &sql, &[])],
            }
        };
        let mut sum = Summary::default();
        let mut ids: HashMap<String, Vec<(usize, u32)>> = HashMap::new();
        let mut readers = Vec::new();
        for part in scanned {
            let part = part?;
            let r = readers.len();
            for (d, a) in part.dirs.into_iter().enumerate() {
                *sum.counts.entry(a.name.clone()).or_default() += a.count;
                ids.entry(a.name).or_default().push((r, d as u32));
            }
            readers.push((part.file, part.segments));
        }
        let mut boxes: HashMap<MailboxId, Vec<SpillDir>> = HashMap::new();
        for d in sum.counts.keys() {
            let Some(p) = table.place(d) else { continue };
            super::add_folder(&mut sum.tree, &p);
            boxes.entry(p.mailbox).or_default().push(SpillDir {
                folder: p.folder.dir_name().to_string(),
                ids: ids.remove(d).unwrap_or_default(),
            });
        }
        sum.sort_folders();
        // The readers' buffers are freed: give their pages back now, not
        // after mimalloc's purge delay (a second), when the listing has
        // long since allocated its own on top of them.
        release_freed_memory();
        Ok((sum, Spill { readers, boxes }))
    }

    /// The rows of one box, or `None` when it is not in the table.
    pub fn box_rows(&self, mb: &MailboxId) -> Option<Result<PackedBox>> {
        let dirs = self.boxes.get(mb)?;
        let mut out = PackedBox::new();
        let mut pieces = Vec::new();
        for d in dirs {
            pieces.clear();
            for &(r, id) in &d.ids {
                let (file, segments) = &self.readers[r];
                pieces.extend(
                    segments
                        .iter()
                        .filter_map(|s| s.range(id))
                        .map(|p| (file, p)),
                );
            }
            let mut buf = vec![0; pieces.iter().map(|p| p.1 .1).sum()];
            let mut at = 0;
            for &(file, (off, len)) in &pieces {
                if let Err(e) = file.read_exact_at(&mut buf[at..at + len], off) {
                    return Some(Err(io_err(e)));
                }
                at += len;
            }
            out.push((d.folder.clone(), buf));
        }
        Some(Ok(out))
    }
}

/// One read: each group's count and rows (in its file), fed a row at a time.
pub(super) struct Scanner<'p> {
    mysql: bool,
    prefix: &'p str,
    out: BufWriter<std::fs::File>,
    accs: Vec<DirAcc>,
    /// Where `dir`s are told apart: after the prefix on PostgreSQL (which
    /// `row` checks), the whole `dir` on MariaDB/MySQL.
    skip: usize,
    // FxHash: the dir index is looked up for most rows (SipHash showed
    // there), with the part after the prefix as its key (shorter to hash).
    index: HashMap<Box<[u8]>, u32, rustc_hash::FxBuildHasher>,
    // MariaDB/MySQL: the current group's weight and its named dir.
    weight: Vec<u8>,
    group: Option<u32>,
    // The last dir seen: rows of one dir mostly come together.
    last: Option<u32>,
    /// Its key, here rather than behind the accumulator's pointer (a cache miss a row).
    last_key: Vec<u8>,
    /// Packed rows since the last segment, as they came...
    buf: Vec<u8>,
    /// ...each: its dir's number and where it starts in `buf`.
    rows: Vec<(u32, u32)>,
    segments: Vec<Segment>,
    pos: u64,
    failed: Option<std::io::Error>,
}

fn io_err(e: std::io::Error) -> Error {
    Error::Failed(format!("temporary file for the listing: {e}"))
}

impl<'p> Scanner<'p> {
    pub(super) fn new(mysql: bool, prefix: &'p str) -> Result<Scanner<'p>> {
        Ok(Scanner {
            mysql,
            prefix,
            out: BufWriter::with_capacity(1 << 16, temp_file().map_err(io_err)?),
            accs: Vec::new(),
            skip: if mysql { 0 } else { prefix.len() },
            index: HashMap::default(),
            weight: Vec::new(),
            group: None,
            last: None,
            // At full size from the start: grown by doubling, the buffer
            // would leave its smaller copies behind in the allocator.
            buf: Vec::with_capacity(BUFFER_BYTES),
            rows: Vec::with_capacity(BUFFER_BYTES / 64),
            segments: Vec::new(),
            pos: 0,
            failed: None,
            last_key: Vec::new(),
        })
    }

    fn acc_for(&mut self, dir: &[u8]) -> u32 {
        let key = &dir[self.skip..];
        if let Some(&i) = self.index.get(key) {
            return i;
        }
        let i = self.accs.len() as u32;
        self.accs.push(DirAcc {
            name: String::from_utf8_lossy(dir).into_owned(),
            count: 0,
        });
        self.index.insert(key.into(), i);
        i
    }

    /// One row of `listing_columns()` (MariaDB/MySQL: then the weight of
    /// `dir`); false when the temporary file failed (reading stops).
    pub(super) fn row(&mut self, cells: &[RawCell<'_>]) -> bool {
        let (w, row) = match (self.mysql, cells.split_last(), cells.first()) {
            (true, Some((RawCell::Bytes(w), row)), _) => (*w, row),
            (false, _, Some(RawCell::Bytes(d))) if d.starts_with(self.prefix.as_bytes()) => {
                (*d, cells)
            }
            _ => return true,
        };
        let Some(RawCell::Bytes(dir)) = row.first() else {
            return true;
        };
        let i = if self.mysql {
            if self.group.is_none() || w != self.weight.as_slice() {
                self.weight.clear();
                self.weight.extend_from_slice(w);
                self.group = Some(self.acc_for(dir));
            }
            let g = self.group.unwrap_or_default();
            self.accs[g as usize].count += 1;
            if *dir != self.accs[g as usize].name.as_bytes() {
                return true;
            }
            g
        } else {
            let i = match self.last {
                Some(i) if self.last_key == dir[self.skip..] => i,
                _ => {
                    let i = self.acc_for(dir);
                    self.last = Some(i);
                    self.last_key.clear();
                    self.last_key.extend_from_slice(&dir[self.skip..]);
                    i
                }
            };
            self.accs[i as usize].count += 1;
            i
        };
        let start = self.buf.len();
        put_row(&mut self.buf, &row[1..]);
        self.rows.push((i, start as u32));
        // Written out before a row could outgrow the buffer (rows are
        // short: the recording is not among them).
        if self.buf.len() + ROW_ROOM > self.buf.capacity() {
            if let Err(e) = self.flush() {
                self.failed = Some(e);
                return false;
            }
        }
        true
    }

    /// Writes the buffered rows out as one segment, grouped by dir (a
    /// counting sort: each dir's rows keep their order).
    fn flush(&mut self) -> std::io::Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let n = self.accs.len();
        let end_of = |w: usize, rows: &[(u32, u32)], len: usize| {
            rows.get(w + 1).map_or(len, |r| r.1 as usize)
        };
        // Bytes per dir, then where each dir's rows go.
        let mut ends = vec![0u32; n];
        for (w, &(d, start)) in self.rows.iter().enumerate() {
            ends[d as usize] += (end_of(w, &self.rows, self.buf.len()) - start as usize) as u32;
        }
        let mut total = 0u32;
        for e in ends.iter_mut() {
            total += *e;
            *e = total;
        }
        // Rows in their dirs' order: where each one goes, then in that order.
        let mut order = vec![0u32; self.rows.len()];
        // The first slot of each dir: the rows of the dirs before it.
        let mut slot = vec![0u32; n + 1];
        for &(d, _) in &self.rows {
            slot[d as usize + 1] += 1;
        }
        for d in 0..n {
            slot[d + 1] += slot[d];
        }
        for (w, &(d, _)) in self.rows.iter().enumerate() {
            order[slot[d as usize] as usize] = w as u32;
            slot[d as usize] += 1;
        }
        for &w in &order {
            let start = self.rows[w as usize].1 as usize;
            let end = end_of(w as usize, &self.rows, self.buf.len());
            self.out.write_all(&self.buf[start..end])?;
        }
        self.segments.push(Segment { at: self.pos, ends });
        self.pos += u64::from(total);
        // Kept, not freed: the same pages serve the next segment.
        self.buf.clear();
        self.rows.clear();
        Ok(())
    }

    /// Each group's count and where its rows are in the file.
    pub(super) fn finish(mut self) -> Result<Scanned> {
        if let Some(e) = self.failed.take() {
            return Err(io_err(e));
        }
        self.flush().map_err(io_err)?;
        let file = self.out.into_inner().map_err(|e| io_err(e.into_error()))?;
        Ok(Scanned {
            dirs: self.accs,
            file,
            segments: self.segments,
        })
    }
}

/// One read by the generic query path.
fn scan(
    db: &mut Db,
    table: &Table,
    mysql: bool,
    prefix: &str,
    sql: &str,
    params: &[V],
) -> Result<Scanned> {
    let mut sc = Scanner::new(mysql, prefix)?;
    db.query_each_raw(sql, params, &mut |cells| sc.row(cells))
        .map_err(db_err(table, "cannot list messages"))?;
    sc.finish()
}
