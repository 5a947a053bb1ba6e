//! Changes to messages kept in SQL, each in one transaction with the rows
//! locked (`SELECT … FOR UPDATE`), so two servers never move the same message
//! twice or allocate the same number. Folders are never renumbered (but
//! `Deleted` rotates like Asterisk's own, spec §2.7).
//!
//! Numbers are highest + 2 per `dir`: Asterisk allocates highest + 1 with
//! three autocommit statements and no row lock (`SELECT msgnum … ORDER BY
//! msgnum DESC`, `DELETE` the target, `INSERT`), so a deposit on another
//! server that has read the highest number H may DELETE or INSERT at H + 1
//! after our commit. Leaving H + 1 to it means a vmtool commit at any point of
//! that sequence meets no row of the deposit: before its SELECT it reads our
//! H + 2 and takes H + 3; after its SELECT it writes H + 1. The gap is what
//! Asterisk closes when it next opens the folder (spec §2.5).
//!
//! This server's Asterisk holds its spool folder lock around its three
//! statements; vmtool takes the same locks only around its COMMIT, and only
//! by trying: a busy lock rolls everything back and the transaction is retried
//! after a pause, so no lock is ever waited for while another is held.

use super::db::{Db, DbError, DbResult, V};
use super::table::{MsgRow, Table};
use super::SqlStore;
use crate::config::VoicemailConf;
use crate::lock::{FolderLock, LockError, LockOptions};
use crate::metadata::Metadata;
use crate::ops::MsgRef;
use crate::spool::{Folder, MailboxId, MsgNum};
use std::cell::RefCell;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A message as listed: its place and its identity.
#[derive(Debug, Clone)]
pub struct SqlMsg {
    pub mailbox: MailboxId,
    pub folder: Folder,
    pub num: MsgNum,
    /// `msg_id` and `origtime` when listed: a renumbered folder cannot fool us.
    pub msg_id: Option<String>,
    pub origtime: Option<String>,
}

impl SqlMsg {
    pub fn from_row(row: &MsgRow, table: &Table) -> Option<SqlMsg> {
        let p = table.place(&row.dir)?;
        Some(SqlMsg {
            mailbox: p.mailbox,
            folder: p.folder,
            num: row.msg_num()?,
            msg_id: row.msg_id.clone(),
            origtime: row.origtime.clone(),
        })
    }

    pub fn at(&self) -> MsgRef {
        MsgRef::new(&self.mailbox, &self.folder, self.num)
    }
}

#[derive(Debug, Clone)]
pub enum SqlAction {
    Move {
        mailbox: MailboxId,
        folder: Folder,
    },
    Copy {
        mailbox: MailboxId,
        folder: Folder,
    },
    Delete,
    /// Deleted outright, never into `Deleted` (purge by age).
    Purge,
}

/// What was done (the same words as for files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlApplied {
    Moved(MsgRef),
    Copied(MsgRef),
    Deleted(Option<MsgRef>),
}

pub struct SqlEngine<'a> {
    pub store: &'a SqlStore,
    pub conf: Option<&'a VoicemailConf>,
    pub lock: LockOptions,
}

fn refused(msg: String) -> DbError {
    DbError { msg, retry: false }
}

impl SqlEngine<'_> {
    fn table(&self) -> &Table {
        &self.store.table
    }

    fn maxmsg(&self, mb: &MailboxId) -> u32 {
        crate::ops::maxmsg_of(self.conf, mb)
    }

    fn backupdeleted(&self, mb: &MailboxId) -> u32 {
        crate::ops::backupdeleted_of(self.conf, mb)
    }

    /// Locks the source row and checks it is still the listed message.
    fn lock_source(&self, db: &mut Db, m: &SqlMsg) -> DbResult<()> {
        let t = self.table();
        let sql = format!(
            "SELECT msg_id, {} FROM {} WHERE dir = ? AND msgnum = ? FOR UPDATE",
            t.text_cast("origtime"),
            t.name
        );
        let rows = db.query(
            &sql,
            &[
                V::Text(t.dir(&m.mailbox, &m.folder)),
                V::Int(m.num.get().into()),
            ],
        )?;
        let Some(r) = rows.first() else {
            return Err(refused(format!(
                "{} is no longer there (moved or deleted meanwhile, by Asterisk or another vmtool); nothing was changed",
                m.at()
            )));
        };
        if r[0].text() != m.msg_id || r[1].text() != m.origtime {
            return Err(refused(format!(
                "{} now holds another message (the folder was renumbered meanwhile); nothing was changed",
                m.at()
            )));
        }
        Ok(())
    }

    /// The next number in `dir` (highest + 2, module doc), its highest row
    /// locked; a full `Deleted` rotates as Asterisk's does.
    fn allocate(
        &self,
        db: &mut Db,
        allocs: &Allocs,
        mb: &MailboxId,
        folder: &Folder,
    ) -> DbResult<i32> {
        let t = self.table();
        let dir = t.dir(mb, folder);
        let sql = format!(
            "SELECT msgnum FROM {} WHERE dir = ? ORDER BY msgnum DESC LIMIT 1 FOR UPDATE",
            t.name
        );
        let rows = db.query(&sql, &[V::Text(dir.clone())])?;
        let last = rows.first().and_then(|r| r[0].int());
        let backup = i64::from(self.backupdeleted(mb));
        let rotates = folder == &Folder::Deleted && backup > 0;
        // Asterisk's own number: where a rotating Deleted needs it.
        let plus_one = last.map_or(0, |l| l + 1);
        let next = if rotates && plus_one >= backup {
            // save_to_folder() into a full Deleted: drop 0, move 1..=x down.
            let next = plus_one - 1;
            db.exec(
                &format!("DELETE FROM {} WHERE dir = ? AND msgnum = 0", t.name),
                &[V::Text(dir.clone())],
            )?;
            let shift = format!(
                "UPDATE {} SET msgnum = ? WHERE dir = ? AND msgnum = ?",
                t.name
            );
            for n in 1..=next {
                db.exec(
                    &shift,
                    &[V::Int(n as i32 - 1), V::Text(dir.clone()), V::Int(n as i32)],
                )?;
            }
            next
        } else {
            let max = i64::from(self.maxmsg(mb));
            // The last slot below maxmsg or backupdeleted is Asterisk's own
            // number: refusing (or rotating) would cost a message (README).
            let next = match next_number(last) {
                n if (rotates && n >= backup) || n >= max => plus_one,
                n => n,
            };
            if next >= max {
                return Err(refused(format!(
                    "{dir} is full: the next number would be {next} and maxmsg is {max} (Asterisk refuses the same; it closes the gaps when it next opens the folder); nothing was changed"
                )));
            }
            allocs.borrow_mut().push(Alloc {
                dir: dir.clone(),
                last: last.unwrap_or(-1),
                num: next as i32,
            });
            next
        };
        if next > 9998 {
            return Err(refused(format!(
                "{dir}: no message number left below 9999; nothing was changed"
            )));
        }
        Ok(next as i32)
    }

    fn move_row(
        &self,
        db: &mut Db,
        allocs: &Allocs,
        m: &SqlMsg,
        to: &MailboxId,
        folder: &Folder,
        keep: bool,
    ) -> DbResult<MsgRef> {
        let t = self.table();
        self.lock_source(db, m)?;
        let num = self.allocate(db, allocs, to, folder)?;
        let (src_dir, dst_dir) = (t.dir(&m.mailbox, &m.folder), t.dir(to, folder));
        let src = [V::Text(src_dir), V::Int(m.num.get().into())];
        // Asterisk's renumbering matches on mailboxuser/mailboxcontext: fill both.
        let owner = [
            V::Text(to.mailbox().to_string()),
            V::Text(to.context.to_string()),
        ];
        if keep {
            let mut cols = vec![
                "context",
                "callerid",
                "origtime",
                "duration",
                "recording",
                "flag",
            ];
            if t.has_category {
                cols.push("category"); // Asterisk's own copy drops it; vmtool keeps it.
            }
            cols.extend(t.extra.iter().copied());
            let list = cols.join(", ");
            let sql = format!(
                "INSERT INTO {n} (dir, msgnum, {list}, mailboxuser, mailboxcontext, msg_id) SELECT ?, ?, {list}, ?, ?, msg_id FROM {n} WHERE dir = ? AND msgnum = ?",
                n = t.name
            );
            let mut p = vec![V::Text(dst_dir), V::Int(num)];
            p.extend(owner);
            p.extend(src);
            db.exec(&sql, &p)?;
        } else {
            let sql = format!(
                "UPDATE {} SET dir = ?, msgnum = ?, mailboxuser = ?, mailboxcontext = ? WHERE dir = ? AND msgnum = ?",
                t.name
            );
            let mut p = vec![V::Text(dst_dir), V::Int(num)];
            p.extend(owner);
            p.extend(src);
            if db.exec(&sql, &p)? != 1 {
                return Err(refused(format!("{} vanished during the move", m.at())));
            }
        }
        let n = MsgNum::new(num as u16).ok_or_else(|| refused("bad number".into()))?;
        Ok(MsgRef::new(to, folder, n))
    }

    fn delete_row(&self, db: &mut Db, m: &SqlMsg) -> DbResult<()> {
        let t = self.table();
        self.lock_source(db, m)?;
        db.exec(
            &format!("DELETE FROM {} WHERE dir = ? AND msgnum = ?", t.name),
            &[
                V::Text(t.dir(&m.mailbox, &m.folder)),
                V::Int(m.num.get().into()),
            ],
        )?;
        Ok(())
    }

    /// This server's spool folders of `places` that exist here, in one fixed
    /// order (Asterisk locks the spool directory even with ODBC storage, §10.1).
    fn spool_dirs(&self, places: &[(&MailboxId, &Folder)]) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = places
            .iter()
            .map(|(mb, f)| self.store.spool.folder_dir(mb, f))
            .filter(|d| d.is_dir())
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// Takes every lock of `dirs` without waiting, or none.
    fn try_locks(&self, dirs: &[PathBuf]) -> Result<Vec<FolderLock>, LockError> {
        let now = LockOptions {
            timeout: Duration::ZERO,
            ..self.lock.clone()
        };
        // An error drops (releases) the locks taken so far.
        dirs.iter().map(|d| FolderLock::acquire(d, &now)).collect()
    }

    /// Whether a row was committed above the highest number an allocation
    /// read (other than ours) since it read it: a deposit that read that row
    /// as its highest would take our number.
    fn overtaken(&self, db: &mut Db, allocs: &[Alloc]) -> DbResult<bool> {
        let sql = format!(
            "SELECT COUNT(*) FROM {} WHERE dir = ? AND msgnum > ? AND msgnum <> ?",
            self.table().name
        );
        for a in allocs {
            let params = [V::Text(a.dir.clone()), V::Int(a.last as i32), V::Int(a.num)];
            let rows = db.query(&sql, &params)?;
            if rows.first().and_then(|r| r[0].int()).unwrap_or(0) > 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Runs `work` in a transaction and commits it holding this server's
    /// spool locks of `dirs`, so the commit never lands inside a deposit of
    /// this server's Asterisk. The locks are tried only once the rows are
    /// written and held only for the COMMIT; a busy lock rolls the
    /// transaction back (releasing its row locks) and the whole is retried
    /// after a pause until `self.lock.timeout`. Database conflicts
    /// (deadlock, a number taken meanwhile) are retried the same way.
    fn commit_locked<T>(
        &self,
        dirs: &[PathBuf],
        mut work: impl FnMut(&mut Db, &Allocs) -> DbResult<T>,
    ) -> DbResult<T> {
        let start = Instant::now();
        let mut db = self.store.db();
        let allocs = Allocs::default();
        let mut delay = 2u64;
        for attempt in 0u32.. {
            let pause = |delay: &mut u64| {
                // Jitter keeps two retrying servers from meeting again.
                let jitter = u64::from(std::process::id() % 7) + u64::from(attempt % 5);
                std::thread::sleep(Duration::from_millis(*delay + jitter));
                *delay = (*delay * 2).min(50);
            };
            db.begin()?;
            allocs.borrow_mut().clear();
            let value = work(&mut db, &allocs).and_then(|v| {
                // Last, so only the moment until COMMIT is left (README).
                if self.overtaken(&mut db, &allocs.borrow())? {
                    Err(DbError {
                        msg: "deposits kept taking the numbers above ours; nothing was changed"
                            .into(),
                        retry: true,
                    })
                } else {
                    Ok(v)
                }
            });
            let value = match value {
                Ok(v) => v,
                Err(e) => {
                    db.rollback();
                    if !e.retry || attempt >= 50 {
                        return Err(e);
                    }
                    pause(&mut delay);
                    continue;
                }
            };
            let locks = match self.try_locks(dirs) {
                Ok(l) => l,
                Err(e) => {
                    db.rollback();
                    if !e.is_busy() || start.elapsed() >= self.lock.timeout {
                        let waited = start.elapsed();
                        return Err(refused(
                            match e {
                                LockError::Busy { dir, .. } => LockError::Busy { dir, waited },
                                e => e,
                            }
                            .to_string(),
                        ));
                    }
                    pause(&mut delay);
                    continue;
                }
            };
            let since = Instant::now();
            crate::ops::failpoint("sql-locked");
            let committed = db.commit();
            let mut broken = None;
            for l in locks {
                if let Err(e) = l.release() {
                    broken.get_or_insert(e);
                }
            }
            log_hold(since.elapsed());
            match committed {
                Ok(()) => {
                    if let Some(e) = broken {
                        // Committed all the same; with highest + 2 a deposit
                        // racing us still finds its number free.
                        eprintln!("vmtool: warning: {e}");
                    }
                    return Ok(value);
                }
                Err(e) => {
                    db.rollback();
                    if !e.retry || attempt >= 50 {
                        return Err(e);
                    }
                    pause(&mut delay);
                }
            }
        }
        unreachable!("the retry loop returns")
    }

    /// Inserts a message restored from an archive: highest+1 in its folder
    /// (maxmsg as Asterisk, `Deleted` rotating), in one transaction.
    pub fn import(
        &self,
        mb: &MailboxId,
        folder: &Folder,
        meta: &Metadata,
        audio: &[u8],
    ) -> Result<MsgRef, String> {
        let dirs = self.spool_dirs(&[(mb, folder)]);
        let t = self.table();
        let dir = t.dir(mb, folder);
        let result = self.commit_locked(&dirs, |db, allocs| {
            // Deposits and imports count messages (count_messages()), as the
            // file spool's import does.
            let count = db
                .query(
                    &format!("SELECT COUNT(*) FROM {} WHERE dir = ?", t.name),
                    &[V::Text(dir.clone())],
                )?
                .first()
                .and_then(|r| r[0].int())
                .unwrap_or(0);
            let max = i64::from(self.maxmsg(mb));
            if count >= max {
                return Err(refused(format!(
                    "{dir} is full: it holds {count} messages and maxmsg is {max}; nothing was changed"
                )));
            }
            let num = self.allocate(db, allocs, mb, folder)?;
            super::table::insert(db, t, mb, &dir, num, meta, audio)?;
            MsgNum::new(num as u16)
                .map(|n| MsgRef::new(mb, folder, n))
                .ok_or_else(|| refused("bad number".into()))
        });
        self.store.invalidate();
        result.map_err(|e| format!("{mb}/{folder}: {}", self.store.target().redact(&e.msg)))
    }

    /// Closes the gaps of a folder: every row numbered 0..n-1 in order, in one
    /// transaction with the folder's rows locked (what Asterisk's
    /// resequencing does, row by row, with `rename_file`). Returns the renames.
    pub fn resequence(
        &self,
        mb: &MailboxId,
        folder: &Folder,
    ) -> Result<Vec<(MsgNum, MsgNum)>, String> {
        let dirs = self.spool_dirs(&[(mb, folder)]);
        let t = self.table();
        let dir = t.dir(mb, folder);
        let result = self.commit_locked(&dirs, |db, _| {
            let sql = format!(
                "SELECT msgnum FROM {} WHERE dir = ? AND msgnum >= 0 ORDER BY msgnum FOR UPDATE",
                t.name
            );
            let nums: Vec<i32> = db
                .query(&sql, &[V::Text(dir.clone())])?
                .iter()
                .filter_map(|r| r[0].int())
                .filter_map(|n| i32::try_from(n).ok())
                .collect();
            let update = format!(
                "UPDATE {} SET msgnum = ? WHERE dir = ? AND msgnum = ?",
                t.name
            );
            let mut moved = Vec::new();
            // Ascending: slot i is free once rows 0..i are in place.
            for (i, old) in nums.into_iter().enumerate() {
                let new = i as i32;
                if old == new {
                    continue;
                }
                db.exec(&update, &[V::Int(new), V::Text(dir.clone()), V::Int(old)])?;
                if let (Some(a), Some(b)) = (MsgNum::new(old as u16), MsgNum::new(new as u16)) {
                    moved.push((a, b));
                }
            }
            Ok(moved)
        });
        self.store.invalidate();
        result.map_err(|e| format!("{mb}/{folder}: {}", self.store.target().redact(&e.msg)))
    }

    /// Applies one change in one transaction (retried on a deadlock or a
    /// number taken concurrently).
    pub fn apply(&self, m: &SqlMsg, action: &SqlAction) -> Result<SqlApplied, String> {
        let dest = match action {
            SqlAction::Move { mailbox, folder } | SqlAction::Copy { mailbox, folder } => {
                Some((mailbox.clone(), folder.clone()))
            }
            SqlAction::Delete
                if self.backupdeleted(&m.mailbox) > 0 && m.folder != Folder::Deleted =>
            {
                Some((m.mailbox.clone(), Folder::Deleted))
            }
            SqlAction::Delete | SqlAction::Purge => None,
        };
        let mut places = vec![(&m.mailbox, &m.folder)];
        places.extend(dest.as_ref().map(|(mb, f)| (mb, f)));
        let dirs = self.spool_dirs(&places);
        let result = self.commit_locked(&dirs, |db, allocs| match action {
            SqlAction::Move { mailbox, folder } => self
                .move_row(db, allocs, m, mailbox, folder, false)
                .map(SqlApplied::Moved),
            SqlAction::Copy { mailbox, folder } => self
                .move_row(db, allocs, m, mailbox, folder, true)
                .map(SqlApplied::Copied),
            SqlAction::Delete => match &dest {
                Some((mb, f)) => match self.move_row(db, allocs, m, mb, f, false) {
                    Ok(to) => Ok(SqlApplied::Deleted(Some(to))),
                    // Asterisk deletes all the same when Deleted is full.
                    Err(e) if e.msg.contains("is full") => {
                        self.delete_row(db, m).map(|()| SqlApplied::Deleted(None))
                    }
                    Err(e) => Err(e),
                },
                None => self.delete_row(db, m).map(|()| SqlApplied::Deleted(None)),
            },
            SqlAction::Purge => self.delete_row(db, m).map(|()| SqlApplied::Deleted(None)),
        });
        self.store.invalidate();
        result.map_err(|e| format!("{}: {}", m.at(), self.store.target().redact(&e.msg)))
    }
}

/// The number vmtool takes after `last`, the highest in the folder: one
/// above what a concurrent Asterisk deposit takes (module doc).
fn next_number(last: Option<i64>) -> i64 {
    last.map_or(1, |l| l + 2)
}

/// Appends how long the spool locks were held around a commit and when they
/// were released, in microseconds, to the file `VMTOOL_TEST_LOCK_LOG` names
/// (BENCHMARKS.md).
fn log_hold(held: Duration) {
    if let Some(path) = std::env::var_os("VMTOOL_TEST_LOCK_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
        {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            // One write: concurrent vmtools append to the same file.
            let line = format!("{} {}\n", held.as_micros(), now.as_micros());
            let _ = f.write_all(line.as_bytes());
        }
    }
}

/// A number taken in a transaction: `dir`, the highest number read, ours.
struct Alloc {
    dir: String,
    last: i64,
    num: i32,
}

/// What a transaction allocated, checked before its COMMIT.
type Allocs = RefCell<Vec<Alloc>>;
