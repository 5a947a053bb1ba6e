//! The write side of the store: one interface for every change, whichever
//! store holds the messages. `Changer` wraps the file spool's `ops::Engine`
//! (staging, Asterisk's folder locks, intent records) or the SQL store's
//! `SqlEngine` (one transaction per message); commands call it and never ask
//! which one it is.

use super::sql::change::{SqlAction, SqlApplied, SqlEngine, SqlMsg};
use super::sql::SqlStore;
use super::{MailboxStore, Store};
use crate::config::VoicemailConf;
use crate::error::{Error, Result};
use crate::lock::LockOptions;
use crate::metadata::Metadata;
use crate::ops::{self, Action, Engine, Located, Plan};
use crate::spool::{Folder, MailboxId, MsgNum};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

pub use crate::ops::{Applied, MsgRef};

/// What a change does to one message.
#[derive(Debug, Clone)]
pub enum Change {
    Move {
        mailbox: MailboxId,
        folder: Folder,
    },
    Copy {
        mailbox: MailboxId,
        folder: Folder,
    },
    /// Into `Deleted` when `backupdeleted` is set, as Asterisk does.
    Delete,
}

/// A message found for a change, with the identity checked again when the
/// change is applied (a renumbered folder cannot make it hit another one).
#[derive(Debug, Clone)]
pub enum Found {
    File(Located),
    Sql(SqlMsg),
}

impl Found {
    pub fn at(&self) -> MsgRef {
        match self {
            Found::File(l) => l.at.clone(),
            Found::Sql(m) => m.at(),
        }
    }

    /// The folder it was found in.
    pub fn folder(&self) -> Result<Folder> {
        match self {
            Found::File(l) => Ok(l.at.folder()?),
            Found::Sql(m) => Ok(m.folder.clone()),
        }
    }
}

/// Where an archived file's bytes come from: a spool file, or a recording
/// and a rebuilt `.txt` read from the database.
#[derive(Debug)]
pub enum Source {
    File(PathBuf),
    Data(Vec<u8>),
}

impl Source {
    /// Size in bytes (0 when the file cannot be read).
    pub fn size(&self) -> u64 {
        match self {
            Source::File(p) => std::fs::metadata(p).map_or(0, |m| m.len()),
            Source::Data(d) => d.len() as u64,
        }
    }
}

/// A message as an archive takes it: where it is, its files `(extension,
/// source)` and its metadata.
pub struct Extract {
    pub loc: Located,
    pub files: Vec<(String, Source)>,
    pub meta: Metadata,
}

/// Each destination's next number across the plans of one dry run.
pub type Allocated = HashMap<PathBuf, u32>;

/// Applies changes to the run's store.
pub struct Changer<'a> {
    store: &'a Store,
    conf: Option<&'a VoicemailConf>,
    inner: Inner<'a>,
}

enum Inner<'a> {
    Files(Engine<'a>),
    Sql(SqlEngine<'a>),
}

impl<'a> Changer<'a> {
    /// `interrupted` is set by Ctrl-C: the message in flight is finished, no
    /// new one is started.
    pub fn new(
        store: &'a Store,
        conf: Option<&'a VoicemailConf>,
        lock: LockOptions,
        interrupted: &'a AtomicBool,
    ) -> Changer<'a> {
        let inner = match store {
            Store::Sql(sql) => Inner::Sql(SqlEngine {
                store: sql,
                conf,
                lock,
            }),
            Store::File(_) => Inner::Files(Engine {
                spool: store.spool(),
                lock,
                conf,
                interrupted,
                recovered: Default::default(),
            }),
        };
        Changer { store, conf, inner }
    }

    fn sql(&self) -> Option<&SqlStore> {
        match &self.inner {
            Inner::Sql(e) => Some(e.store),
            Inner::Files(_) => None,
        }
    }

    /// Finds a message as listed, with its identity.
    pub fn locate(&self, mb: &MailboxId, folder: &Folder, num: MsgNum) -> Result<Found> {
        match &self.inner {
            Inner::Files(e) => Ok(Found::File(e.locate(mb, folder, num)?)),
            Inner::Sql(e) => {
                let row = e.store.msg_row(mb, folder, num)?;
                SqlMsg::from_row(&row, &e.store.table)
                    .map(Found::Sql)
                    .ok_or_else(|| Error::Failed(format!("{}: not a message row", row.dir)))
            }
        }
    }

    /// Moves, copies or deletes one message.
    pub fn apply(&self, m: &Found, change: &Change) -> Result<Applied> {
        match (&self.inner, m) {
            (Inner::Files(e), Found::File(loc)) => Ok(e.apply(&Plan {
                src: loc.clone(),
                action: file_action(change),
            })?),
            (Inner::Sql(e), Found::Sql(msg)) => {
                let action = match change.clone() {
                    Change::Move { mailbox, folder } => SqlAction::Move { mailbox, folder },
                    Change::Copy { mailbox, folder } => SqlAction::Copy { mailbox, folder },
                    Change::Delete => SqlAction::Delete,
                };
                Ok(match e.apply(msg, &action).map_err(Error::Failed)? {
                    SqlApplied::Moved(to) => Applied::Moved(to),
                    SqlApplied::Copied(to) => Applied::Copied(to),
                    SqlApplied::Deleted(to) => Applied::Deleted(to),
                })
            }
            _ => Err(mismatch(m)),
        }
    }

    /// The lines `--dry-run` prints for one change.
    pub fn plan_lines(&self, m: &Found, change: &Change, allocated: &mut Allocated) -> Vec<String> {
        match (&self.inner, m) {
            (Inner::Files(_), Found::File(loc)) => {
                let mut lines = vec![format!("{}:", loc.at)];
                // rm with backupdeleted moves into Deleted (Engine::apply): show that.
                let action = match (change, loc.at.mailbox_id()) {
                    (Change::Delete, Ok(mb))
                        if ops::backupdeleted_of(self.conf, &mb) > 0
                            && loc.at.folder != Folder::Deleted.dir_name() =>
                    {
                        lines.push(
                            "  backupdeleted is set: kept in Deleted, as Asterisk does".into(),
                        );
                        Action::Move {
                            mailbox: mb,
                            folder: Folder::Deleted,
                        }
                    }
                    _ => file_action(change),
                };
                let plan = Plan {
                    src: loc.clone(),
                    action,
                };
                for step in ops::describe(self.store.spool(), &plan, allocated) {
                    lines.push(format!("  {step}"));
                }
                lines
            }
            (Inner::Sql(e), Found::Sql(msg)) => {
                let what = match change {
                    Change::Move { mailbox, folder } => {
                        format!("move to {mailbox}/{folder} (highest + 1)")
                    }
                    Change::Copy { mailbox, folder } => {
                        format!("copy to {mailbox}/{folder} (highest + 1)")
                    }
                    Change::Delete => "delete".to_string(),
                };
                vec![format!(
                    "{}: {what}, one transaction in table {}",
                    msg.at(),
                    e.store.table.name
                )]
            }
            _ => vec![mismatch(m).to_string()],
        }
    }

    /// Closes the numbering gaps of a folder; returns the renames.
    pub fn resequence(&self, mb: &MailboxId, folder: &Folder) -> Result<Vec<(MsgNum, MsgNum)>> {
        match &self.inner {
            Inner::Files(e) => Ok(e.resequence(mb, folder)?),
            Inner::Sql(e) => e.resequence(mb, folder).map_err(Error::Failed),
        }
    }

    /// Deletes a message for good, never into `Deleted` (purge by age).
    pub fn purge(&self, m: &Found) -> Result<()> {
        match (&self.inner, m) {
            (Inner::Files(e), Found::File(loc)) => Ok(e.delete_plain(loc)?),
            (Inner::Sql(e), Found::Sql(msg)) => e
                .apply(msg, &SqlAction::Purge)
                .map(|_| ())
                .map_err(Error::Failed),
            _ => Err(mismatch(m)),
        }
    }

    /// Removes a message once its archive entry is synced.
    pub fn remove_archived(&self, m: &Found) -> Result<()> {
        match (&self.inner, m) {
            (Inner::Files(e), Found::File(loc)) => Ok(e.delete_archived(loc)?),
            (Inner::Sql(_), Found::Sql(_)) => self.purge(m),
            _ => Err(mismatch(m)),
        }
    }

    /// Whether a message's size is known without reading its recording
    /// (purge reports bytes only then).
    pub fn sizes_known(&self) -> bool {
        matches!(self.inner, Inner::Files(_))
    }

    /// Bytes of a message's files, when `sizes_known`; else 0.
    pub fn size(&self, m: &Found) -> u64 {
        let Found::File(loc) = m else { return 0 };
        let (Ok(mb), Ok(folder), Ok(num)) =
            (loc.at.mailbox_id(), loc.at.folder(), loc.at.msg_num())
        else {
            return 0;
        };
        let spool = self.store.spool();
        loc.exts
            .iter()
            .map(|x| Source::File(spool.msg_file(&mb, &folder, num, x)).size())
            .sum()
    }

    /// A message with the files an archive entry takes: the spool's files,
    /// or the row as the file store would hold it (the recording with the
    /// first format's extension, the `.txt` in Asterisk's file layout).
    pub fn archive_candidate(
        &self,
        mb: &MailboxId,
        folder: &Folder,
        num: MsgNum,
        meta: Metadata,
    ) -> Result<(Extract, Found)> {
        match &self.inner {
            Inner::Files(e) => {
                let loc = e.locate(mb, folder, num)?;
                let spool = self.store.spool();
                let files = loc
                    .exts
                    .iter()
                    .map(|x| (x.clone(), Source::File(spool.msg_file(mb, folder, num, x))))
                    .collect();
                let ex = Extract {
                    loc: loc.clone(),
                    files,
                    meta,
                };
                Ok((ex, Found::File(loc)))
            }
            Inner::Sql(e) => {
                let sql = e.store;
                let dbrow = sql.msg_row(mb, folder, num)?;
                let here = MsgRef::new(mb, folder, num);
                let audio = sql.recording(mb, folder, num)?;
                if audio == super::sql::AUDMAGIC {
                    return Err(Error::Failed(format!(
                        "{here}: the audio is on the servers' disks (odbc_audio_on_disk=yes), not in the table; not archived"
                    )));
                }
                let msg = SqlMsg::from_row(&dbrow, &sql.table).ok_or_else(|| {
                    Error::Failed(format!("{here}: the row's dir or msgnum is not valid"))
                })?;
                let txt = dbrow.file_txt(&sql.table);
                let loc = Located {
                    at: here,
                    exts: vec![sql.ext.clone(), "txt".into()],
                    txt_sha: Sha256::digest(&txt).into(),
                    msg_id: dbrow.msg_id.clone(),
                };
                let ex = Extract {
                    loc,
                    files: vec![
                        (sql.ext.clone(), Source::Data(audio)),
                        ("txt".into(), Source::Data(txt)),
                    ],
                    meta: dbrow.file_metadata(&sql.table),
                };
                Ok((ex, Found::Sql(msg)))
            }
        }
    }

    /// Puts a message from outside the store (an archive entry's files, the
    /// `.txt` among them) into `(mb, folder)`: highest+1, as Asterisk imports.
    pub fn insert(
        &self,
        files: &[(String, PathBuf)],
        mb: &MailboxId,
        folder: &Folder,
        label: &str,
    ) -> Result<MsgRef> {
        match &self.inner {
            Inner::Files(e) => Ok(e.import(files, mb, folder)?),
            Inner::Sql(e) => insert_row(e, files, mb, folder, label),
        }
    }

    /// A new message (`vmtool deposit`) into `(mb, folder)`: the import
    /// procedure, refused when the folder already holds `maxmsg` messages
    /// (Asterisk's "mailbox full", counted as `count_messages()` counts).
    pub fn deposit(
        &self,
        files: &[(String, PathBuf)],
        mb: &MailboxId,
        folder: &Folder,
    ) -> Result<MsgRef> {
        let full = |m: String| Error::Failed(format!("{mb}: mailbox full: {m}"));
        match &self.inner {
            Inner::Files(e) => e.import(files, mb, folder).map_err(|e| match e {
                ops::OpError::Full(m) => full(m),
                other => other.into(),
            }),
            Inner::Sql(e) => {
                insert_row(e, files, mb, folder, &mb.to_string()).map_err(|e| match e {
                    Error::Failed(m) if m.contains(" is full: ") => full(m),
                    other => other,
                })
            }
        }
    }

    /// The audio formats (`format=` tokens) a message of this store is kept
    /// in: every one of `format=` in a file spool, the first alone in the
    /// table (its recording).
    pub fn formats(&self) -> Vec<String> {
        match &self.inner {
            Inner::Files(_) => self
                .conf
                .map(|c| c.general.format.clone())
                .unwrap_or_default(),
            Inner::Sql(e) => vec![e.store.ext.clone()],
        }
    }

    /// Whether messages can be given more audio formats. The table holds one
    /// recording per message (its `recording` column, in the first
    /// `format=`): Asterisk's ODBC storage writes that one file back to disk
    /// to play it and transcodes it on the fly, so there is no second format
    /// to add and nothing Asterisk would read.
    pub fn add_formats_supported(&self) -> Result<()> {
        match &self.inner {
            Inner::Files(_) => Ok(()),
            Inner::Sql(e) => Err(Error::Failed(format!(
                "the voicemail table {} keeps one recording per message, in the first format= of voicemail.conf (.{}); Asterisk plays it in any other format by transcoding, so there is no format to add; nothing was changed",
                e.store.table.name, e.store.ext
            ))),
        }
    }

    /// The bytes of one audio file of a message as found (file store; the
    /// table's single recording cannot be given formats).
    pub fn audio_bytes(&self, m: &Found, ext: &str) -> Result<Vec<u8>> {
        match (&self.inner, m) {
            (Inner::Files(_), Found::File(loc)) => {
                let (mb, folder, num) = (loc.at.mailbox_id()?, loc.at.folder()?, loc.at.msg_num()?);
                let path = self.store.spool().msg_file(&mb, &folder, num, ext);
                crate::fsutil::read_capped(&path, crate::fsutil::MAX_AUDIO_BYTES)
                    .map_err(|e| Error::io("read", &path, e))
            }
            (Inner::Sql(_), Found::Sql(_)) => {
                self.add_formats_supported()?;
                Err(mismatch(m))
            }
            _ => Err(mismatch(m)),
        }
    }

    /// Adds audio files a message lacks (`convert --add-format`), `files`
    /// being `(extension, bytes)`, to the message found by identity wherever
    /// it is in its folder now. Files that exist are never rewritten.
    /// Returns where the message is and the extensions added. `source` is
    /// `(extension, SHA-256 hex)` of the audio they were made from (read by
    /// [`Self::audio_bytes`]): if that file changed meanwhile, nothing is added.
    pub fn add_formats(
        &self,
        m: &Found,
        source: (&str, &str),
        files: &[(String, Vec<u8>)],
    ) -> Result<(MsgRef, Vec<String>)> {
        match (&self.inner, m) {
            (Inner::Files(e), Found::File(loc)) => Ok(e.add_files(loc, source, files)?),
            (Inner::Sql(_), Found::Sql(_)) => {
                self.add_formats_supported()?;
                Err(mismatch(m))
            }
            _ => Err(mismatch(m)),
        }
    }

    /// Finishes or undoes what an interrupted run left in the box (file
    /// spool; a table has nothing half-done). Errors are left to the next
    /// change, which recovers first too.
    pub fn recover(&self, mb: &MailboxId) {
        if let Inner::Files(e) = &self.inner {
            let _ = e.recover(mb);
        }
    }

    /// The first message in any folder of `mb` with this `callerid` whose
    /// audio of extension `ext` (the first `format=`, the table's recording)
    /// has this SHA-256: the rule that makes a deposit rerunnable.
    pub fn find_recording(
        &self,
        mb: &MailboxId,
        callerid: &str,
        ext: &str,
        sha256: &str,
    ) -> Option<MsgRef> {
        let hex_sha = |b: &[u8]| crate::fsutil::hex(&Sha256::digest(b));
        for folder in Folder::KNOWN.iter() {
            let Ok(scan) = self.store.scan_folder(mb, folder) else {
                continue;
            };
            for m in scan.messages.iter().filter(|m| m.txt) {
                let same_caller = self
                    .store
                    .read_metadata(mb, folder, m.num)
                    .is_ok_and(|meta| meta.callerid_raw() == Some(callerid));
                if !same_caller {
                    continue;
                }
                let same_audio = match self.sql() {
                    Some(sql) => sql
                        .recording(mb, folder, m.num)
                        .is_ok_and(|r| hex_sha(&r) == sha256),
                    None => {
                        m.audio.iter().any(|x| x == ext)
                            && crate::fsutil::sha256_file(
                                &self.store.spool().msg_file(mb, folder, m.num, ext),
                            )
                            .is_ok_and(|s| crate::fsutil::hex(&s) == sha256)
                    }
                };
                if same_audio {
                    return Some(MsgRef::new(mb, folder, m.num));
                }
            }
        }
        None
    }

    /// The archived message is already in the folder: a file with these exact
    /// `.txt` bytes, or a row with the same msg_id and origtime (or whose
    /// rebuilt `.txt` has these bytes).
    pub fn holds(
        &self,
        mb: &MailboxId,
        folder: &Folder,
        msg_id: Option<&str>,
        origtime: Option<i64>,
        txt_sha256: &str,
    ) -> bool {
        let Ok(scan) = self.store.scan_folder(mb, folder) else {
            return false;
        };
        let hex_sha = |b: &[u8]| crate::fsutil::hex(&Sha256::digest(b));
        scan.messages
            .iter()
            .filter(|m| m.txt)
            .any(|m| match self.sql() {
                Some(sql) => sql.msg_row(mb, folder, m.num).is_ok_and(|r| {
                    let same_id = r.msg_id.is_some()
                        && r.msg_id.as_deref() == msg_id
                        && r.origtime.as_deref().and_then(|o| o.trim().parse().ok()) == origtime;
                    same_id || hex_sha(&r.file_txt(&sql.table)) == txt_sha256
                }),
                None => crate::fsutil::sha256_file(&self.store.spool().txt_path(mb, folder, m.num))
                    .is_ok_and(|s| crate::fsutil::hex(&s) == txt_sha256),
            })
    }
}

fn file_action(change: &Change) -> Action {
    match change.clone() {
        Change::Move { mailbox, folder } => Action::Move { mailbox, folder },
        Change::Copy { mailbox, folder } => Action::Copy { mailbox, folder },
        Change::Delete => Action::Delete,
    }
}

/// A message found in one store handed to the other: a bug, said plainly.
fn mismatch(m: &Found) -> Error {
    Error::Failed(format!(
        "{}: found in another store than the one being changed; nothing was done",
        m.at()
    ))
}

/// An archived message into the table: its `.txt` gives the columns, the
/// file of the table's format (the first `format=`) the recording.
fn insert_row(
    engine: &SqlEngine,
    files: &[(String, PathBuf)],
    mb: &MailboxId,
    folder: &Folder,
    label: &str,
) -> Result<MsgRef> {
    let sql = engine.store;
    let read = |p: &Path| {
        crate::fsutil::read_capped(p, crate::fsutil::MAX_AUDIO_BYTES)
            .map_err(|e| Error::io("read", p, e))
    };
    let txt = files
        .iter()
        .find(|(x, _)| x == "txt")
        .ok_or_else(|| Error::Failed(format!("{label}: the archive entry has no .txt")))?;
    let Some((_, audio)) = files.iter().find(|(x, _)| *x == sql.ext) else {
        let have: Vec<&str> = files
            .iter()
            .map(|(x, _)| x.as_str())
            .filter(|x| *x != "txt")
            .collect();
        return Err(Error::Failed(format!(
            "{label}: the archive holds .{} but the table keeps .{} (the first format= of voicemail.conf); --fill-formats makes it from the archived audio; not restored",
            have.join(", ."),
            sql.ext
        )));
    };
    let meta = super::sql::migrate::row_metadata(&read(&txt.1)?, &sql.table)
        .map_err(|e| Error::Failed(format!("{}: {e}", txt.1.display())))?;
    engine
        .import(mb, folder, &meta, &read(audio)?)
        .map_err(Error::Failed)
}
