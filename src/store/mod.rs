//! The mailbox store: the one interface through which messages are read
//! (`MailboxStore`) and changed (`change::Changer`), checked (`check`) and
//! watched (`watch`).
//!
//! Two implementations: the file spool (`FileStore`, changed through `ops`)
//! and Asterisk's ODBC storage, messages as rows of one SQL table
//! (`sql::SqlStore`). `Store` is whichever one a run uses; nothing above this
//! module may assume files or rows.

pub mod change;
pub mod check;
pub mod file;
pub mod greeting;
mod list;
pub mod sql;
pub mod watch;

pub use file::FileStore;

use crate::audio::{self, AudioError, AudioInfo};
use crate::config::VoicemailConf;
use crate::error::{Error, Result};
use crate::listing::{message_row_from, LsFilter, MetaFields, Zone};
use crate::metadata::Metadata;
use crate::ops::OpError;
use crate::render::{sanitize, MessageRow, MessageWriter};
use crate::scan::{self, FolderCounts, FolderScan};
use crate::spool::{Context, Folder, MailboxId, MsgNum, Spool};
use std::path::{Path, PathBuf};

pub use crate::fsutil::MAX_TXT_BYTES;

/// AMI `MailboxCount` numbers: `urgent` = Urgent, `new` = INBOX only, `old` = Old.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub urgent: u32,
    pub new: u32,
    pub old: u32,
}

impl Counts {
    /// New as `voicemail show users` and MWI count it: INBOX + Urgent.
    pub fn new_total(&self) -> u32 {
        self.new + self.urgent
    }
}

/// Read access to mailboxes, whatever keeps them.
pub trait MailboxStore {
    /// Where the messages live, for messages to the user.
    fn describe(&self) -> String;
    /// Contexts, sorted by name.
    fn contexts(&self) -> Result<Vec<Context>>;
    /// Mailboxes of a context, sorted by name.
    fn mailboxes(&self, ctx: &Context) -> Result<Vec<MailboxId>>;
    fn context_exists(&self, ctx: &Context) -> bool;
    fn mailbox_exists(&self, mb: &MailboxId) -> bool;
    /// Folders that exist for a mailbox, in Asterisk's order, unknown ones last.
    fn folders(&self, mb: &MailboxId) -> Result<Vec<Folder>>;
    /// All entries of one folder, grouped into messages.
    fn scan_folder(&self, mb: &MailboxId, folder: &Folder) -> Result<FolderScan>;
    /// One message's metadata.
    fn read_metadata(&self, mb: &MailboxId, folder: &Folder, num: MsgNum) -> Result<Metadata>;
    /// Scans a folder and reads, in order, the metadata of each message with a
    /// `.txt` that `want` accepts; returns the scan. The file spool reads them
    /// relative to the open folder (one path walk per folder, not per file).
    fn folder_messages(
        &self,
        mb: &MailboxId,
        folder: &Folder,
        want: &dyn Fn(&scan::MsgFiles) -> bool,
        each: &mut dyn FnMut(&scan::MsgFiles, Result<Metadata>),
    ) -> Result<FolderScan> {
        let scan = self.scan_folder(mb, folder)?;
        for m in scan.messages.iter().filter(|m| m.txt && want(m)) {
            each(m, self.read_metadata(mb, folder, m.num));
        }
        Ok(scan)
    }

    /// Counts of one folder by Asterisk's rules, without reading any message.
    fn folder_counts(&self, mb: &MailboxId, folder: &Folder) -> Result<FolderCounts>;
    /// Format, size and measured duration of one audio file of a message.
    fn audio_info(
        &self,
        mb: &MailboxId,
        folder: &Folder,
        num: MsgNum,
        ext: &str,
    ) -> Result<AudioInfo>;
    /// Where a message's metadata is, for display and JSON (`path`).
    fn location(&self, mb: &MailboxId, folder: &Folder, num: MsgNum) -> PathBuf;

    /// A hint that these boxes are about to be read (one query for a SQL store).
    fn prefetch(&self, _boxes: &[MailboxId]) {}
    /// These boxes have been read; cached rows may go.
    fn release(&self, _boxes: &[MailboxId]) {}

    /// `MailboxCount`: Urgent, INBOX and Old by Asterisk's name rule.
    /// The listing row of one message, with this store's `path`.
    fn message_row(
        &self,
        mb: &MailboxId,
        folder: &Folder,
        files: &scan::MsgFiles,
        meta: Option<&Metadata>,
        zone: Zone,
    ) -> MessageRow {
        let path = self.location(mb, folder, files.num).display().to_string();
        message_row_from(
            mb,
            folder,
            files,
            meta.map(|m| m as &dyn MetaFields),
            zone,
            path,
        )
    }

    fn count(&self, mb: &MailboxId) -> Result<Counts> {
        Ok(Counts {
            urgent: self.folder_counts(mb, &Folder::Urgent)?.mwi,
            new: self.folder_counts(mb, &Folder::Inbox)?.mwi,
            old: self.folder_counts(mb, &Folder::Old)?.mwi,
        })
    }
}

/// What the command line and the environment say about the store.
#[derive(Debug, Default, Clone, Copy)]
pub struct StoreWanted<'a> {
    /// `--db`.
    pub db: Option<&'a str>,
    /// `$VMTOOL_DB`.
    pub env_db: Option<&'a str>,
    /// `--db-table`.
    pub table: Option<&'a str>,
    /// `--odbc-ini`.
    pub odbc_ini: Option<&'a std::path::Path>,
    /// `--spool-prefix`.
    pub spool_prefix: Option<&'a str>,
}

/// A decoded recording: rate, the decoder's warnings, samples.
pub type Decoded = std::result::Result<(u32, Vec<String>, Vec<i16>), AudioError>;

/// Whichever store this run uses.
pub enum Store {
    File(FileStore),
    Sql(Box<sql::SqlStore>),
}

impl Store {
    /// The local spool: the messages of a file store; for a SQL store only
    /// the directories (and Asterisk's lock files) of this server.
    pub fn spool(&self) -> &Spool {
        match self {
            Store::File(f) => f.spool(),
            Store::Sql(s) => &s.spool,
        }
    }

    /// The store this site uses: the SQL table when one is named (`--db`,
    /// `$VMTOOL_DB`) or configured (`odbcstorage` through res_odbc.conf and
    /// odbc.ini), else the file spool. Also says which table, for `-v`.
    pub fn open(
        spool: Spool,
        wanted: &StoreWanted,
        vmconf: Option<&VoicemailConf>,
        etc_dir: &Path,
    ) -> Result<(Store, Option<String>)> {
        let found = sql::discover::find(
            wanted.db,
            wanted.env_db,
            wanted.table,
            vmconf,
            etc_dir,
            wanted.odbc_ini,
        )?;
        let Some(f) = found else {
            return Ok((Store::File(FileStore::new(spool)), None));
        };
        let prefix = wanted
            .spool_prefix
            .map(str::to_string)
            .unwrap_or_else(|| spool.root().to_string_lossy().into_owned());
        let ext = vmconf
            .and_then(|c| c.general.format.first())
            .map_or("wav", |f| f.as_str());
        // Asterisk names the cache of wav49 `.WAV` (odbc_retrieve_message()).
        let ext = if ext.eq_ignore_ascii_case("wav49") {
            "WAV"
        } else {
            ext
        };
        let s = sql::SqlStore::open(&f.target, &f.table, &prefix, ext, spool)?;
        let note = format!(
            "database: {} (from {}), table {}, dir prefix {}",
            f.target.describe(),
            f.target.source,
            f.table,
            s.table.prefix
        );
        Ok((Store::Sql(Box::new(s)), Some(note)))
    }

    /// Lists one folder into `w`, filtered; `Ok(true)` when `only` (if
    /// given) was there. Per-message errors go to `errors`.
    #[allow(clippy::too_many_arguments)]
    pub fn list_folder(
        &self,
        mb: &MailboxId,
        folder: &Folder,
        only: Option<MsgNum>,
        filter: &LsFilter,
        zone: Zone,
        w: &mut MessageWriter<&mut Vec<u8>>,
        rows: &mut usize,
        errors: &mut Vec<Error>,
    ) -> Result<bool> {
        match self {
            Store::File(f) => list::file_folder(f, mb, folder, only, filter, zone, w, rows, errors),
            Store::Sql(s) => list::sql_folder(s, mb, folder, only, filter, zone, w, rows),
        }
    }

    /// Reads the whole store at once where that is cheaper than box by box
    /// (one ordered read of the table); the listing holds it while it runs.
    /// `None`: read box by box.
    pub fn read_whole(&self) -> Option<sql::SpillGuard<'_>> {
        match self {
            Store::Sql(s) => s.read_all().ok(),
            Store::File(_) => None,
        }
    }

    /// Refuses changes where the files are not the truth (spec §3.8, §10):
    /// a file spool that is only ODBC's or IMAP's cache, or mirrored into a
    /// realtime table.
    pub fn refuse_caches(&self, vmconf: Option<&VoicemailConf>) -> Result<()> {
        if let Store::Sql(_) = self {
            return Ok(());
        }
        let Some(vc) = vmconf else {
            return Ok(());
        };
        let storage = vc.general.vars.iter().find(|(k, _)| {
            let k = k.to_ascii_lowercase();
            k == "odbcstorage" || k.starts_with("imap")
        });
        if let Some((k, v)) = storage {
            return Err(Error::Usage(format!(
                "{} sets {k}={v}: with ODBC or IMAP storage the spool only holds caches, and vmtool does not change it",
                vc.path.display()
            )));
        }
        let ext = vc.path.with_file_name("extconfig.conf");
        if let Ok(conf) = crate::conf::load(&ext) {
            if conf.get("settings", "voicemail_data").is_some() {
                return Err(Error::Usage(format!(
                    "{} maps voicemail_data: Asterisk mirrors message files into a realtime table that vmtool cannot keep in sync",
                    ext.display()
                )));
            }
        }
        Ok(())
    }

    /// The table `migrate` moves messages into and out of: this run's store,
    /// which must be the SQL one.
    pub fn migration_table(&self) -> Result<&sql::SqlStore> {
        match self {
            Store::Sql(s) => Ok(s),
            Store::File(_) => Err(Error::Usage(
                "migrate needs the database: give --db URL (or $VMTOOL_DB), or set odbcstorage in voicemail.conf".into(),
            )),
        }
    }

    /// How `boxes` says that a configured box holds nothing yet.
    pub fn no_box_yet(&self) -> &'static str {
        match self {
            Store::File(_) => "no directory yet",
            Store::Sql(_) => "no rows yet",
        }
    }

    /// Where a message is kept, for `show` (untrusted parts escaped).
    pub fn where_kept(&self, mb: &MailboxId, folder: &Folder, num: MsgNum) -> String {
        match self {
            Store::File(f) => format!(
                "file: {}",
                sanitize(&f.location(mb, folder, num).display().to_string())
            ),
            Store::Sql(s) => format!(
                "row: table {}, dir={}, msgnum={}",
                s.table.name,
                sanitize(&s.table.dir(mb, folder)),
                num.get()
            ),
        }
    }

    /// What a message's fields are read from, for `show`.
    pub fn fields_source(&self) -> &'static str {
        match self {
            Store::File(_) => "the .txt",
            Store::Sql(_) => "the row",
        }
    }

    /// The folder exists (a SQL folder exists while it has rows).
    pub fn folder_exists(&self, mb: &MailboxId, folder: &Folder) -> bool {
        match self {
            Store::File(f) => f.spool().folder_dir(mb, folder).is_dir(),
            Store::Sql(_) => self.folders(mb).is_ok_and(|f| f.contains(folder)),
        }
    }

    /// Decodes one audio file of a message: where it is, and the decoder's
    /// result (rate, warnings, samples) for the caller to word its errors.
    pub fn decode(
        &self,
        mb: &MailboxId,
        folder: &Folder,
        num: MsgNum,
        ext: &str,
    ) -> Result<(PathBuf, Decoded)> {
        match self {
            Store::File(f) => {
                let path = f.spool().msg_file(mb, folder, num, ext);
                let decoded = audio::open(&path, ext).and_then(|mut dec| {
                    let mut samples = Vec::new();
                    while dec.next_block(&mut samples)? > 0 {}
                    Ok((dec.sample_rate(), dec.warnings().to_vec(), samples))
                });
                Ok((path, decoded))
            }
            Store::Sql(s) => {
                let path = s.location(mb, folder, num);
                // The recording column holds the whole file of the first format.
                let data = s.recording(mb, folder, num)?;
                if data == sql::AUDMAGIC {
                    return Err(Error::Failed(format!(
                        "{}: the audio is on the servers' disks (odbc_audio_on_disk=yes), not in the table",
                        path.display()
                    )));
                }
                let format = audio::AudioFormat::from_extension(ext);
                let decoded =
                    audio::Decoder::new(std::io::Cursor::new(data), format).and_then(|mut dec| {
                        let mut samples = Vec::new();
                        while dec.next_block(&mut samples)? > 0 {}
                        Ok((dec.sample_rate(), dec.warnings().to_vec(), samples))
                    });
                Ok((path, decoded))
            }
        }
    }

    fn inner(&self) -> &dyn MailboxStore {
        match self {
            Store::File(f) => f,
            Store::Sql(s) => s.as_ref(),
        }
    }
}

impl MailboxStore for Store {
    fn describe(&self) -> String {
        self.inner().describe()
    }
    fn contexts(&self) -> Result<Vec<Context>> {
        self.inner().contexts()
    }
    fn mailboxes(&self, ctx: &Context) -> Result<Vec<MailboxId>> {
        self.inner().mailboxes(ctx)
    }
    fn context_exists(&self, ctx: &Context) -> bool {
        self.inner().context_exists(ctx)
    }
    fn mailbox_exists(&self, mb: &MailboxId) -> bool {
        self.inner().mailbox_exists(mb)
    }
    fn folders(&self, mb: &MailboxId) -> Result<Vec<Folder>> {
        self.inner().folders(mb)
    }
    fn scan_folder(&self, mb: &MailboxId, folder: &Folder) -> Result<FolderScan> {
        self.inner().scan_folder(mb, folder)
    }
    fn read_metadata(&self, mb: &MailboxId, folder: &Folder, num: MsgNum) -> Result<Metadata> {
        self.inner().read_metadata(mb, folder, num)
    }
    fn folder_messages(
        &self,
        mb: &MailboxId,
        folder: &Folder,
        want: &dyn Fn(&scan::MsgFiles) -> bool,
        each: &mut dyn FnMut(&scan::MsgFiles, Result<Metadata>),
    ) -> Result<FolderScan> {
        self.inner().folder_messages(mb, folder, want, each)
    }
    fn folder_counts(&self, mb: &MailboxId, folder: &Folder) -> Result<FolderCounts> {
        self.inner().folder_counts(mb, folder)
    }
    fn audio_info(
        &self,
        mb: &MailboxId,
        folder: &Folder,
        num: MsgNum,
        ext: &str,
    ) -> Result<AudioInfo> {
        self.inner().audio_info(mb, folder, num, ext)
    }
    fn location(&self, mb: &MailboxId, folder: &Folder, num: MsgNum) -> PathBuf {
        self.inner().location(mb, folder, num)
    }
    fn prefetch(&self, boxes: &[MailboxId]) {
        self.inner().prefetch(boxes)
    }
    fn release(&self, boxes: &[MailboxId]) {
        self.inner().release(boxes)
    }
    fn count(&self, mb: &MailboxId) -> Result<Counts> {
        self.inner().count(mb)
    }
}

impl From<OpError> for Error {
    fn from(e: OpError) -> Error {
        match e {
            OpError::Lock(ref l) if l.is_busy() => Error::LockBusy(e.to_string()),
            OpError::Gone(m) => Error::NotFound(m),
            OpError::Io {
                action,
                path,
                source,
            } => Error::Io {
                action,
                path,
                source,
            },
            other => Error::Failed(other.to_string()),
        }
    }
}

impl From<crate::lock::LockError> for Error {
    fn from(e: crate::lock::LockError) -> Error {
        Error::from(OpError::from(e))
    }
}
