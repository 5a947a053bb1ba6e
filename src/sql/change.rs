//! Changes to messages kept in SQL, each in one transaction with the rows
//! locked (`SELECT … FOR UPDATE`), so two servers never move the same message
//! twice or allocate the same number. Numbers are highest + 1 per `dir`, as
//! Asterisk allocates them; folders are never renumbered (but `Deleted`
//! rotates like Asterisk's own, spec §2.7).

use super::db::{Db, DbError, DbResult, V};
use super::table::{MsgRow, Table};
use super::SqlStore;
use crate::config::VoicemailConf;
use crate::lock::{FolderLock, LockOptions};
use crate::metadata::Metadata;
use crate::ops::MsgRef;
use crate::spool::{Folder, MailboxId, MsgNum};

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

    /// The next number in `dir`, its highest row locked; `Deleted` rotates.
    fn allocate(&self, db: &mut Db, mb: &MailboxId, folder: &Folder) -> DbResult<i32> {
        let t = self.table();
        let dir = t.dir(mb, folder);
        let sql = format!(
            "SELECT msgnum FROM {} WHERE dir = ? ORDER BY msgnum DESC LIMIT 1 FOR UPDATE",
            t.name
        );
        let rows = db.query(&sql, &[V::Text(dir.clone())])?;
        let last = rows.first().and_then(|r| r[0].int());
        let mut next = last.map_or(0, |l| l + 1);
        let backup = i64::from(self.backupdeleted(mb));
        if folder == &Folder::Deleted && backup > 0 && next >= backup {
            // save_to_folder() into a full Deleted: drop 0, move 1..=x down.
            next -= 1;
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
        } else {
            let max = i64::from(self.maxmsg(mb));
            if next >= max {
                return Err(refused(format!(
                    "{dir} is full: the next number would be {next} and maxmsg is {max} (Asterisk refuses the same); nothing was changed"
                )));
            }
        }
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
        m: &SqlMsg,
        to: &MailboxId,
        folder: &Folder,
        keep: bool,
    ) -> DbResult<MsgRef> {
        let t = self.table();
        self.lock_source(db, m)?;
        let num = self.allocate(db, to, folder)?;
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

    /// This server's Asterisk lock on a folder, when the folder exists here
    /// (Asterisk locks the spool directory even with ODBC storage, §10.1).
    fn local_lock(&self, mb: &MailboxId, folder: &Folder) -> Result<Option<FolderLock>, String> {
        let dir = self.store.spool.folder_dir(mb, folder);
        if !dir.is_dir() {
            return Ok(None);
        }
        FolderLock::acquire(&dir, &self.lock)
            .map(Some)
            .map_err(|e| e.to_string())
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
        let _lock = self.local_lock(mb, folder)?;
        let t = self.table();
        let dir = t.dir(mb, folder);
        let mut db = self.store.db();
        let result = db.transaction(|db| {
            let num = self.allocate(db, mb, folder)?;
            super::migrate::insert(db, t, mb, &dir, num, meta, audio)?;
            MsgNum::new(num as u16)
                .map(|n| MsgRef::new(mb, folder, n))
                .ok_or_else(|| refused("bad number".into()))
        });
        drop(db);
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
        let _lock = self.local_lock(mb, folder)?;
        let t = self.table();
        let dir = t.dir(mb, folder);
        let mut db = self.store.db();
        let result = db.transaction(|db| {
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
        drop(db);
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
        let _src_lock = self.local_lock(&m.mailbox, &m.folder)?;
        let _dst_lock = match &dest {
            Some((mb, f)) if !(mb == &m.mailbox && f == &m.folder) => self.local_lock(mb, f)?,
            _ => None,
        };
        let mut db = self.store.db();
        let result = db.transaction(|db| match action {
            SqlAction::Move { mailbox, folder } => self
                .move_row(db, m, mailbox, folder, false)
                .map(SqlApplied::Moved),
            SqlAction::Copy { mailbox, folder } => self
                .move_row(db, m, mailbox, folder, true)
                .map(SqlApplied::Copied),
            SqlAction::Delete => match &dest {
                Some((mb, f)) => match self.move_row(db, m, mb, f, false) {
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
        drop(db);
        self.store.invalidate();
        result.map_err(|e| format!("{}: {}", m.at(), self.store.target().redact(&e.msg)))
    }
}
