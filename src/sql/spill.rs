//! A whole-table listing on MariaDB/MySQL: there the summary's `GROUP BY`
//! reads every row (its clustered primary key holds the recordings), so one
//! ordered read makes both the summary and the rows. The rows go to an
//! unlinked temporary file, not memory, until the listing reaches their box.

use super::db::{Db, Kind, RawCell, V};
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
    runs: Vec<(u64, u64)>,
}

pub(super) struct Spill {
    file: std::fs::File,
    boxes: HashMap<MailboxId, Vec<SpillDir>>,
}

fn temp_file() -> std::io::Result<std::fs::File> {
    let dir = std::env::temp_dir();
    for i in 0..100u32 {
        let path = dir.join(format!(".vmtool-ls-{}-{i}", std::process::id()));
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => {
                // Unlinked at once: nothing is left behind, whatever happens.
                std::fs::remove_file(&path)?;
                return Ok(f);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free temporary file name"))
}

impl Spill {
    /// Reads the table once, in primary-key order, returning the summary
    /// `GROUP BY dir` would give (one group per collation-equal `dir`, named
    /// by its first row, as the server names it) and the rows of each group's
    /// named `dir` (the rows a `dir IN (…)` read keeps).
    pub fn read(db: &mut Db, table: &Table) -> Result<(Summary, Spill)> {
        let io = |e: std::io::Error| Error::Failed(format!("temporary file for the listing: {e}"));
        let file = temp_file().map_err(io)?;
        let mut out = BufWriter::with_capacity(1 << 16, &file);
        // MariaDB/MySQL: the collation's weight of `dir` tells which rows
        // `GROUP BY dir` puts together. PostgreSQL: equal means byte-equal
        // (deterministic collations only, checked by the caller), and LIKE
        // on the prefix is a byte comparison, done here.
        let mysql = table.kind == Kind::Mysql;
        let sql = if mysql {
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
            format!(
                "SELECT {}, WEIGHT_STRING({}) FROM {} WHERE dir LIKE ? AND msgnum >= 0 ORDER BY dir, msgnum",
                table.row_columns(),
                if pad { "TRIM(TRAILING ' ' FROM dir)" } else { "dir" },
                table.name
            )
        } else {
            format!(
                "SELECT {} FROM {} WHERE msgnum >= 0 ORDER BY dir, msgnum",
                table.row_columns(),
                table.name
            )
        };
        let prefix = format!("{}/", table.prefix);
        let params = if mysql {
            vec![V::Text(Table::like(&prefix))]
        } else {
            Vec::new()
        };
        let mut sum = Summary::default();
        let mut dirs: Vec<Vec<(u64, u64)>> = Vec::new();
        let mut dir_idx: HashMap<String, usize> = HashMap::new();
        let mut cur: Option<(String, usize)> = None;
        // The current group: its collation weight, name and whether this
        // row is of the named dir.
        let mut weight: Vec<u8> = Vec::new();
        let mut name = String::new();
        let mut count = 0u32;
        let mut pos = 0u64;
        let mut rec = Vec::with_capacity(256);
        let mut failed: Option<std::io::Error> = None;
        fn finish(sum: &mut Summary, name: &str, count: u32) {
            if count > 0 {
                sum.counts.insert(name.to_string(), count);
            }
        }
        db.query_each_raw(&sql, &params, &mut |cells| {
            let (w, row) = match (mysql, cells.split_last(), cells.first()) {
                (true, Some((RawCell::Bytes(w), row)), _) => (*w, row),
                (false, _, Some(RawCell::Bytes(d))) if d.starts_with(prefix.as_bytes()) => {
                    (*d, cells)
                }
                _ => return true,
            };
            let Some(RawCell::Bytes(dir)) = row.first() else {
                return true;
            };
            if w != weight.as_slice() || count == 0 {
                finish(&mut sum, &name, count);
                weight.clear();
                weight.extend_from_slice(w);
                name = String::from_utf8_lossy(dir).into_owned();
                count = 0;
            }
            count += 1;
            if *dir != name.as_bytes() {
                return true;
            }
            rec.clear();
            put_row(&mut rec, row);
            if let Err(e) = out.write_all(&rec) {
                failed = Some(e);
                return false;
            }
            // Rows of one dir come together: one lookup per run of them.
            if cur.as_ref().is_none_or(|c| c.0 != name) {
                let i = *dir_idx.entry(name.clone()).or_insert_with(|| {
                    dirs.push(Vec::new());
                    dirs.len() - 1
                });
                cur = Some((name.clone(), i));
            }
            let runs = &mut dirs[cur.as_ref().map_or(0, |c| c.1)];
            match runs.last_mut() {
                Some(r) if r.0 + r.1 == pos => r.1 += rec.len() as u64,
                _ => runs.push((pos, rec.len() as u64)),
            }
            pos += rec.len() as u64;
            true
        })
        .map_err(db_err(table, "cannot list messages"))?;
        finish(&mut sum, &name, count);
        if let Some(e) = failed {
            return Err(io(e));
        }
        out.flush().map_err(io)?;
        drop(out);
        let mut boxes: HashMap<MailboxId, Vec<SpillDir>> = HashMap::new();
        for d in sum.counts.keys() {
            let Some(p) = table.place(d) else { continue };
            sum.tree
                .entry(p.mailbox.context.to_string())
                .or_default()
                .entry(p.mailbox.mailbox().to_string())
                .or_default()
                .push(p.folder.clone());
            boxes.entry(p.mailbox).or_default().push(SpillDir {
                folder: p.folder.dir_name().to_string(),
                runs: dir_idx
                    .get(d)
                    .map(|&i| std::mem::take(&mut dirs[i]))
                    .unwrap_or_default(),
            });
        }
        sum.sort_folders();
        Ok((sum, Spill { file, boxes }))
    }

    /// The rows of one box, or `None` when it is not in the table.
    pub fn box_rows(&self, mb: &MailboxId) -> Option<Result<PackedBox>> {
        let dirs = self.boxes.get(mb)?;
        let mut out = PackedBox::new();
        for d in dirs {
            let mut buf = vec![0; d.runs.iter().map(|r| r.1 as usize).sum()];
            let mut at = 0;
            for &(off, len) in &d.runs {
                let part = &mut buf[at..at + len as usize];
                if let Err(e) = self.file.read_exact_at(part, off) {
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
