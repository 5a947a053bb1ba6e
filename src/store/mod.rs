//! The mailbox store: the one narrow interface through which messages are read.
//!
//! Two implementations: the file spool (`FileStore`) and Asterisk's ODBC
//! storage, messages as rows of one SQL table (`sql::SqlStore`);
//! nothing above this trait may assume files.

pub mod change;
pub mod file;
pub mod sql;

pub use file::FileStore;

use crate::audio::AudioInfo;
use crate::error::{Error, Result};
use crate::metadata::Metadata;
use crate::ops::OpError;
use crate::scan::{self, FolderCounts, FolderScan};
use crate::spool::{Context, Folder, MailboxId, MsgNum, Spool};
use std::path::PathBuf;

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
    fn count(&self, mb: &MailboxId) -> Result<Counts> {
        Ok(Counts {
            urgent: self.folder_counts(mb, &Folder::Urgent)?.mwi,
            new: self.folder_counts(mb, &Folder::Inbox)?.mwi,
            old: self.folder_counts(mb, &Folder::Old)?.mwi,
        })
    }
}

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

    pub fn sql(&self) -> Option<&sql::SqlStore> {
        match self {
            Store::Sql(s) => Some(s),
            Store::File(_) => None,
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
