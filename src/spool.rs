//! Spool types and paths: `Spool`, `Context`, `MailboxId`, `Folder`, `MsgNum`.
//!
//! This is the only module that builds paths inside a spool; everything else asks
//! it. Names are validated when they are made, so a path built here can never
//! leave the spool (no `/`, `..`, NUL or empty components).

use std::fmt;
use std::path::{Path, PathBuf};

/// A name that is safe as one path component (context, mailbox, foreign folder).
fn check_component(kind: &str, name: &str) -> Result<(), NameError> {
    let bad = if name.is_empty() {
        Some("is empty")
    } else if name == "." || name == ".." {
        Some("is a relative path component")
    } else if name.contains('/') {
        Some("contains '/'")
    } else if name.contains('\0') {
        Some("contains a NUL byte")
    } else if name.len() > 255 {
        Some("is longer than 255 bytes")
    } else {
        None
    };
    match bad {
        Some(why) => Err(NameError {
            kind: kind.to_string(),
            name: name.escape_debug().to_string(),
            why,
        }),
        None => Ok(()),
    }
}

/// A name that cannot be used inside the spool.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} name \"{name}\" {why}")]
pub struct NameError {
    pub kind: String,
    pub name: String,
    pub why: &'static str,
}

/// A voicemail context: one directory under the spool root.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Context(String);

impl Context {
    pub fn new(name: &str) -> Result<Context, NameError> {
        check_component("context", name)?;
        Ok(Context(name.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A mailbox, named the way Asterisk does: `box@context`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MailboxId {
    pub context: Context,
    mailbox: String,
}

impl MailboxId {
    pub fn new(context: Context, mailbox: &str) -> Result<MailboxId, NameError> {
        check_component("mailbox", mailbox)?;
        Ok(MailboxId {
            context,
            mailbox: mailbox.to_string(),
        })
    }
    pub fn mailbox(&self) -> &str {
        &self.mailbox
    }
}

impl fmt::Display for MailboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.mailbox, self.context)
    }
}

/// The twelve folders of `mailbox_folders[]` (index order), plus directories
/// Asterisk does not know (MixMonitor `m(box/folder)`, operators' leftovers).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Folder {
    Inbox,
    Old,
    Work,
    Family,
    Friends,
    Cust1,
    Cust2,
    Cust3,
    Cust4,
    Cust5,
    Deleted,
    Urgent,
    Other(String),
}

impl Folder {
    /// The known folders in Asterisk's index order.
    pub const KNOWN: [Folder; 12] = [
        Folder::Inbox,
        Folder::Old,
        Folder::Work,
        Folder::Family,
        Folder::Friends,
        Folder::Cust1,
        Folder::Cust2,
        Folder::Cust3,
        Folder::Cust4,
        Folder::Cust5,
        Folder::Deleted,
        Folder::Urgent,
    ];

    /// A known folder by name, case-insensitively (`get_folder_by_name()`).
    pub fn known(name: &str) -> Option<Folder> {
        Folder::KNOWN
            .iter()
            .find(|f| f.dir_name().eq_ignore_ascii_case(name))
            .cloned()
    }

    /// A folder from a directory name found on disk: exact case for known
    /// folders (Asterisk never opens `inbox/`), anything else is `Other`.
    pub fn from_dir_name(name: &str) -> Result<Folder, NameError> {
        if let Some(f) = Folder::KNOWN.iter().find(|f| f.dir_name() == name) {
            return Ok(f.clone());
        }
        check_component("folder", name)?;
        Ok(Folder::Other(name.to_string()))
    }

    /// The directory name Asterisk creates (canonical case).
    pub fn dir_name(&self) -> &str {
        match self {
            Folder::Inbox => "INBOX",
            Folder::Old => "Old",
            Folder::Work => "Work",
            Folder::Family => "Family",
            Folder::Friends => "Friends",
            Folder::Cust1 => "Cust1",
            Folder::Cust2 => "Cust2",
            Folder::Cust3 => "Cust3",
            Folder::Cust4 => "Cust4",
            Folder::Cust5 => "Cust5",
            Folder::Deleted => "Deleted",
            Folder::Urgent => "Urgent",
            Folder::Other(name) => name,
        }
    }

    /// Index in `mailbox_folders[]`, `None` for unknown folders.
    pub fn index(&self) -> Option<usize> {
        Folder::KNOWN.iter().position(|f| f == self)
    }

    /// Counted as new by MWI (`INBOX` + `Urgent`).
    pub fn is_new(&self) -> bool {
        matches!(self, Folder::Inbox | Folder::Urgent)
    }

    pub fn is_known(&self) -> bool {
        !matches!(self, Folder::Other(_))
    }

    /// Sort key: Asterisk's index order, unknown folders last by name.
    pub fn order_key(&self) -> (usize, &str) {
        (self.index().unwrap_or(usize::MAX), self.dir_name())
    }
}

impl fmt::Display for Folder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dir_name())
    }
}

/// A message number, `0000`–`9998` (`msg9999` is invisible to Asterisk).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct MsgNum(u16);

impl MsgNum {
    pub const MAX: u16 = 9998;

    pub fn new(n: u16) -> Option<MsgNum> {
        (n <= Self::MAX).then_some(MsgNum(n))
    }

    pub fn get(self) -> u16 {
        self.0
    }

    /// `3`, `0003` or `msg0003`.
    pub fn parse(s: &str) -> Option<MsgNum> {
        let digits = s.strip_prefix("msg").unwrap_or(s);
        if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok().and_then(MsgNum::new)
    }

    /// The four digits of `NNNN` (`Display` without formatting machinery).
    pub fn digits(self) -> [u8; 4] {
        let n = self.0;
        [
            b'0' + (n / 1000 % 10) as u8,
            b'0' + (n / 100 % 10) as u8,
            b'0' + (n / 10 % 10) as u8,
            b'0' + (n % 10) as u8,
        ]
    }

    /// `msgNNNN`, the base name of the message's files.
    pub fn stem(self) -> String {
        format!("msg{:04}", self.0)
    }
}

impl fmt::Display for MsgNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}", self.0)
    }
}

/// The voicemail spool root (`<astspooldir>/voicemail`).
#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
}

impl Spool {
    pub fn new(root: impl Into<PathBuf>) -> Spool {
        Spool { root: root.into() }
    }

    /// Accepts either the voicemail root or the `astspooldir` above it: a
    /// directory that has a `voicemail/` child is taken as `astspooldir`.
    pub fn from_dir(dir: &Path) -> Spool {
        let child = dir.join("voicemail");
        if child.is_dir() {
            Spool::new(child)
        } else {
            Spool::new(dir)
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn context_dir(&self, ctx: &Context) -> PathBuf {
        self.root.join(ctx.as_str())
    }

    pub fn mailbox_dir(&self, mb: &MailboxId) -> PathBuf {
        self.context_dir(&mb.context).join(mb.mailbox())
    }

    pub fn folder_dir(&self, mb: &MailboxId, folder: &Folder) -> PathBuf {
        self.mailbox_dir(mb).join(folder.dir_name())
    }

    /// The mailbox's staging directory (never scanned as a folder).
    pub fn tmp_dir(&self, mb: &MailboxId) -> PathBuf {
        self.mailbox_dir(mb).join("tmp")
    }

    /// `…/<folder>/msgNNNN.<ext>`; `ext` is a file extension as found on disk.
    pub fn msg_file(&self, mb: &MailboxId, folder: &Folder, num: MsgNum, ext: &str) -> PathBuf {
        self.folder_dir(mb, folder)
            .join(format!("{}.{ext}", num.stem()))
    }

    pub fn txt_path(&self, mb: &MailboxId, folder: &Folder, num: MsgNum) -> PathBuf {
        self.msg_file(mb, folder, num, "txt")
    }

    /// Refuses a path below the root that goes through a symbolic link (or is
    /// one): changes must never be steered outside the spool by a link.
    pub fn check_no_symlink(&self, path: &Path) -> Result<(), NameError> {
        let Ok(rel) = path.strip_prefix(&self.root) else {
            return Err(NameError {
                kind: "path".into(),
                name: path.display().to_string(),
                why: "is outside the spool",
            });
        };
        let mut cur = self.root.clone();
        for part in rel.components() {
            cur.push(part);
            if std::fs::symlink_metadata(&cur).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(NameError {
                    kind: "path".into(),
                    name: cur.display().to_string(),
                    why: "is a symbolic link: vmtool does not change spools through links (see vmtool check)",
                });
            }
        }
        Ok(())
    }

    /// Path relative to the spool root, for messages and JSON output.
    pub fn relative<'a>(&self, path: &'a Path) -> &'a Path {
        path.strip_prefix(&self.root).unwrap_or(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe() {
        assert!(Context::new("..").is_err());
        assert!(Context::new("a/b").is_err());
        assert!(Context::new("").is_err());
        assert!(Context::new("a\0").is_err());
        let ctx = Context::new("compta").unwrap();
        assert!(MailboxId::new(ctx.clone(), "../x").is_err());
        let mb = MailboxId::new(ctx, "1202").unwrap();
        assert_eq!(mb.to_string(), "1202@compta");
        let s = Spool::new("/s/voicemail");
        assert_eq!(
            s.msg_file(&mb, &Folder::Inbox, MsgNum::new(3).unwrap(), "WAV"),
            Path::new("/s/voicemail/compta/1202/INBOX/msg0003.WAV")
        );
    }

    #[test]
    fn folders() {
        assert_eq!(Folder::known("inbox"), Some(Folder::Inbox));
        assert_eq!(Folder::known("URGENT"), Some(Folder::Urgent));
        assert_eq!(Folder::known("tmp"), None);
        assert_eq!(
            Folder::from_dir_name("inbox").unwrap(),
            Folder::Other("inbox".into())
        );
        assert_eq!(Folder::Urgent.index(), Some(11));
        assert!(Folder::Urgent.is_new() && !Folder::Old.is_new());
    }

    #[test]
    fn numbers() {
        assert_eq!(MsgNum::parse("3").unwrap().stem(), "msg0003");
        assert_eq!(MsgNum::parse("0003"), MsgNum::new(3));
        assert_eq!(MsgNum::parse("msg0003"), MsgNum::new(3));
        assert_eq!(MsgNum::parse("9999"), None);
        assert_eq!(MsgNum::parse("12345"), None);
        assert_eq!(MsgNum::parse("-1"), None);
        assert_eq!(MsgNum::parse(""), None);
    }
}
