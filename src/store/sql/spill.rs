//! A whole-table listing: one read of the table makes both the summary
//! (`GROUP BY dir` reads every row anyway on MariaDB/MySQL, whose clustered
//! primary key holds the recordings) and the rows. The rows go packed to an
//! unlinked temporary file, not memory, until the listing reaches their box;
//! the listing's order stays vmtool's whatever the server's collation.

use super::db::{Db, DbError, DbResult, Kind, RawCell, V};
use super::packed::{put_row, PackedBox};
use super::table::{db_err, Table};
use super::Summary;
use crate::error::{Error, Result};
use crate::spool::MailboxId;
use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;

/// Where one folder's rows are in the file: runs of `(offset, length)`.
struct SpillDir {
    folder: String,
    /// `(file, offset, length)`.
    runs: Vec<(usize, u64, u64)>,
}

/// Rows are kept by folder in memory up to this, then written out: a
/// folder's rows may come scattered (PostgreSQL's heap order), and this
/// keeps the pieces to read back few (some 8 per folder and read for
/// 1,000,000 rows).
const PENDING_BYTES: usize = 8 << 20;

/// One `dir` (group) while reading.
#[derive(Default)]
struct DirAcc {
    name: String,
    /// Rows of its group (what `COUNT(*)` gives).
    count: u32,
    pending: Vec<u8>,
    runs: Vec<(u64, u64)>,
}

/// Writes every folder's pending rows out.
fn flush(accs: &mut [DirAcc], out: &mut impl Write, pos: &mut u64) -> std::io::Result<()> {
    for a in accs.iter_mut().filter(|a| !a.pending.is_empty()) {
        out.write_all(&a.pending)?;
        let len = a.pending.len() as u64;
        match a.runs.last_mut() {
            Some(r) if r.0 + r.1 == *pos => r.1 += len,
            _ => a.runs.push((*pos, len)),
        }
        *pos += len;
        // Freed, not kept: memory stays at PENDING_BYTES.
        a.pending = Vec::new();
    }
    Ok(())
}

pub(super) struct Spill {
    files: Vec<std::fs::File>,
    boxes: HashMap<MailboxId, Vec<SpillDir>>,
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
        let parts: Vec<(Option<Db>, String, Vec<V>)> = if mysql {
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
            vec![(None, sql, vec![V::Text(Table::like(&prefix))])]
        } else {
            // No ORDER BY: a sequential scan costs the server half as much
            // as the index's order (rows of a folder may then come apart:
            // several runs, sorted by msgnum when read back).
            let sql = format!(
                "SELECT {} FROM {} WHERE msgnum >= 0",
                table.listing_columns(),
                table.name
            );
            pg_halves(db, table, &sql)
        };
        let scanned: Vec<Result<(Vec<DirAcc>, std::fs::File)>> = if parts.len() == 1 {
            parts
                .into_iter()
                .map(|(_, sql, params)| scan(db, table, mysql, &prefix, &sql, &params))
                .collect()
        } else {
            let prefix = &prefix;
            std::thread::scope(|s| {
                let running: Vec<_> = parts
                    .into_iter()
                    .map(|(own, sql, params)| {
                        s.spawn(move || {
                            let mut own = own.expect("a connection per part");
                            scan(&mut own, table, mysql, prefix, &sql, &params)
                        })
                    })
                    .collect();
                running
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| Err(Error::Failed("listing thread failed".into())))
                    })
                    .collect()
            })
        };
        let mut sum = Summary::default();
        let mut runs: HashMap<String, Vec<(usize, u64, u64)>> = HashMap::new();
        let mut files = Vec::new();
        for part in scanned {
            let (accs, file) = part?;
            for a in accs {
                *sum.counts.entry(a.name.clone()).or_default() += a.count;
                runs.entry(a.name)
                    .or_default()
                    .extend(a.runs.into_iter().map(|(o, l)| (files.len(), o, l)));
            }
            files.push(file);
        }
        let mut boxes: HashMap<MailboxId, Vec<SpillDir>> = HashMap::new();
        for d in sum.counts.keys() {
            let Some(p) = table.place(d) else { continue };
            super::add_folder(&mut sum.tree, &p);
            boxes.entry(p.mailbox).or_default().push(SpillDir {
                folder: p.folder.dir_name().to_string(),
                runs: runs.remove(d).unwrap_or_default(),
            });
        }
        sum.sort_folders();
        Ok((sum, Spill { files, boxes }))
    }

    /// The rows of one box, or `None` when it is not in the table.
    pub fn box_rows(&self, mb: &MailboxId) -> Option<Result<PackedBox>> {
        let dirs = self.boxes.get(mb)?;
        let mut out = PackedBox::new();
        for d in dirs {
            let mut buf = vec![0; d.runs.iter().map(|r| r.2 as usize).sum()];
            let mut at = 0;
            for &(f, off, len) in &d.runs {
                let part = &mut buf[at..at + len as usize];
                if let Err(e) = self.files[f].read_exact_at(part, off) {
                    return Some(Err(Error::Failed(format!(
                        "temporary file for the listing: {e}"
                    ))));
                }
                at += len as usize;
            }
            out.push((d.folder.clone(), buf));
        }
        Some(Ok(out))
    }
}

/// PostgreSQL 14 and later scan a range of the heap by `ctid`: two halves
/// on two connections use both cores (the server's and ours), one if not.
fn pg_halves(db: &mut Db, table: &Table, sql: &str) -> Vec<(Option<Db>, String, Vec<V>)> {
    let one = || vec![(None, sql.to_string(), Vec::new())];
    let q = "SELECT current_setting('server_version_num')::int >= 140000, (SELECT relpages FROM pg_class WHERE oid = CAST(CAST(? AS TEXT) AS regclass))";
    let Ok(rows) = db.query(q, &[V::Text(table.name.clone())]) else {
        return one();
    };
    let (ok, pages) = match rows.first().map(|r| (r[0].int(), r[1].int())) {
        Some((Some(1), Some(p))) => (true, p),
        _ => (false, 0),
    };
    if !ok || pages < 1000 || std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        return one();
    }
    // Both halves in one snapshot, else a row updated meanwhile (a message
    // moved to Old) could be seen in each.
    let pair = || -> DbResult<(Db, Db)> {
        let connect = || {
            Db::connect(&db.target).map_err(|e| DbError {
                msg: e.to_string(),
                retry: false,
            })
        };
        let (mut a, mut b) = (connect()?, connect()?);
        let begin = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";
        a.batch(begin)?;
        let snap = a
            .query("SELECT pg_export_snapshot()", &[])?
            .first()
            .and_then(|r| r.first())
            .and_then(|c| c.text())
            .filter(|s| s.bytes().all(|c| c.is_ascii_hexdigit() || c == b'-'))
            .ok_or_else(|| DbError {
                msg: "no snapshot".into(),
                retry: false,
            })?;
        b.batch(begin)?;
        b.batch(&format!("SET TRANSACTION SNAPSHOT '{snap}'"))?;
        Ok((a, b))
    };
    let Ok((other, again)) = pair() else {
        return one();
    };
    let mid = pages / 2;
    vec![
        (
            Some(other),
            format!("{sql} AND ctid < '({mid},0)'"),
            Vec::new(),
        ),
        (
            Some(again),
            format!("{sql} AND ctid >= '({mid},0)'"),
            Vec::new(),
        ),
    ]
}

/// One read: each group's count and rows (in the returned file).
fn scan(
    db: &mut Db,
    table: &Table,
    mysql: bool,
    prefix: &str,
    sql: &str,
    params: &[V],
) -> Result<(Vec<DirAcc>, std::fs::File)> {
    let io = |e: std::io::Error| Error::Failed(format!("temporary file for the listing: {e}"));
    let file = temp_file().map_err(io)?;
    let mut out = BufWriter::with_capacity(1 << 16, &file);
    let mut accs: Vec<DirAcc> = Vec::new();
    // FxHash: the dir index is looked up for most rows (SipHash showed there).
    let mut index: HashMap<Vec<u8>, usize, rustc_hash::FxBuildHasher> = HashMap::default();
    let mut acc_for = |accs: &mut Vec<DirAcc>, dir: &[u8]| -> usize {
        if let Some(&i) = index.get(dir) {
            return i;
        }
        accs.push(DirAcc {
            name: String::from_utf8_lossy(dir).into_owned(),
            ..DirAcc::default()
        });
        index.insert(dir.to_vec(), accs.len() - 1);
        accs.len() - 1
    };
    // MariaDB/MySQL: the current group's weight and its named dir.
    let mut weight: Vec<u8> = Vec::new();
    let mut group: Option<usize> = None;
    // The last dir seen: rows of one dir mostly come together.
    let mut last: Option<usize> = None;
    let mut pending = 0usize;
    let mut pos = 0u64;
    let mut failed: Option<std::io::Error> = None;
    db.query_each_raw(sql, params, &mut |cells| {
        let (w, row) = match (mysql, cells.split_last(), cells.first()) {
            (true, Some((RawCell::Bytes(w), row)), _) => (*w, row),
            (false, _, Some(RawCell::Bytes(d))) if d.starts_with(prefix.as_bytes()) => (*d, cells),
            _ => return true,
        };
        let Some(RawCell::Bytes(dir)) = row.first() else {
            return true;
        };
        let i = if mysql {
            if group.is_none() || w != weight.as_slice() {
                weight.clear();
                weight.extend_from_slice(w);
                group = Some(acc_for(&mut accs, dir));
            }
            let g = group.unwrap_or_default();
            accs[g].count += 1;
            if *dir != accs[g].name.as_bytes() {
                return true;
            }
            g
        } else {
            let i = match last {
                Some(i) if accs[i].name.as_bytes() == *dir => i,
                _ => {
                    let i = acc_for(&mut accs, dir);
                    last = Some(i);
                    i
                }
            };
            accs[i].count += 1;
            i
        };
        let before = accs[i].pending.len();
        put_row(&mut accs[i].pending, &row[1..]);
        pending += accs[i].pending.len() - before;
        if pending > PENDING_BYTES {
            if let Err(e) = flush(&mut accs, &mut out, &mut pos) {
                failed = Some(e);
                return false;
            }
            pending = 0;
        }
        true
    })
    .map_err(db_err(table, "cannot list messages"))?;
    if let Some(e) = failed {
        return Err(io(e));
    }
    flush(&mut accs, &mut out, &mut pos).map_err(io)?;
    out.flush().map_err(io)?;
    drop(out);
    Ok((accs, file))
}
