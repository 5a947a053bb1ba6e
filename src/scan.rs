//! Read one folder directory into messages (spec §12.1) and count it the way
//! Asterisk does (spec §2.3, §8.1). Scanning never changes anything.

use crate::spool::MsgNum;
use std::collections::BTreeMap;
use std::io;
use std::path::Path;

/// Files of one `msgNNNN` in a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsgFiles {
    pub num: MsgNum,
    /// `msgNNNN.txt` exists.
    pub txt: bool,
    /// Audio extensions present, sorted, case kept (`WAV` and `wav` both).
    pub audio: Vec<String>,
}

/// Complete = `.txt` + audio; phantom = `.txt` only; orphan = audio only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MsgState {
    Complete,
    Phantom,
    Orphan,
}

impl MsgFiles {
    pub fn state(&self) -> MsgState {
        match (self.txt, self.audio.is_empty()) {
            (true, false) => MsgState::Complete,
            (true, true) => MsgState::Phantom,
            (false, _) => MsgState::Orphan,
        }
    }
}

/// Entries of a folder that are not message files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Noise {
    /// `.lock`, `.lock-XXXXXXXX` (lockfile mode) or `lock` (flock mode).
    Lock(String),
    /// `msgNNNN-bak.*`, left by a prepend-forward that did not finish.
    Backup(String),
    /// `msgNNNN-prepend.*`, a prepend recording in progress or abandoned.
    Prepend(String),
    /// A name some Asterisk scanner may count or adopt but that is not a
    /// message file (`msg0001.TXT`, `msg12.txt`, `msg-001.txt`, `msg0001.txt.bak`,
    /// `msg9999.*`); the text says what Asterisk does with it.
    Stray(String, &'static str),
    /// Anything else (other files, subdirectories, names that are not UTF-8).
    Foreign(String),
}

impl Noise {
    pub fn name(&self) -> &str {
        match self {
            Noise::Lock(n) | Noise::Backup(n) | Noise::Prepend(n) | Noise::Foreign(n) => n,
            Noise::Stray(n, _) => n,
        }
    }
}

/// Asterisk's counts for one folder, from names only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FolderCounts {
    /// `__has_voicemail()`: names starting `msg` (any case) with `txt` (any case)
    /// at offset 8. This is what MWI, MailboxCount and `voicemail show users` use.
    pub mwi: u32,
    /// `count_messages()`: `.txt` at offset 7 (capacity check on deposit).
    pub capacity: u32,
    /// Some entry starts with `msg` (the short-circuit of `has_voicemail()`).
    pub any_msg: bool,
}

/// The whole content of a folder directory.
#[derive(Debug, Clone, Default)]
pub struct FolderScan {
    /// By number, ascending.
    pub messages: Vec<MsgFiles>,
    pub noise: Vec<Noise>,
    pub counts: FolderCounts,
    /// Message files that are not regular files (FIFOs, sockets, devices,
    /// links), known from the directory entry alone: never opened.
    pub irregular: Vec<Irregular>,
}

/// A message file that is not a regular file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Irregular {
    pub num: MsgNum,
    /// File name in the folder.
    pub name: String,
    /// What it is ("special file (FIFO)", "symbolic link", …).
    pub kind: &'static str,
}

impl FolderScan {
    /// The first file of message `num` that is not a regular file.
    pub fn irregular_of(&self, num: MsgNum) -> Option<&Irregular> {
        self.irregular.iter().find(|i| i.num == num)
    }
}

/// What a directory entry is, from `d_type` (or `lstat` where the file
/// system does not say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntryKind {
    Dir,
    File,
    /// Anything else, named.
    Other(&'static str),
}

/// Counts one directory entry name into `counts` with Asterisk's rules.
fn count_name(name: &[u8], counts: &mut FolderCounts) {
    if name.len() >= 3 && name[..3].eq_ignore_ascii_case(b"msg") {
        counts.any_msg = true;
        // strncasecmp(d_name + 8, "txt", 3): shorter names cannot match.
        if name.len() >= 11 && name[8..11].eq_ignore_ascii_case(b"txt") {
            counts.mwi += 1;
        }
    }
    // count_messages(): strlen > 7 && !strncmp(d_name + 7, ".txt", 4)
    if name.len() >= 11 && &name[7..11] == b".txt" {
        counts.capacity += 1;
    }
}

/// `msgNNNN.<ext>` → (number, ext); `None` for any other shape.
fn split_msg_name(name: &str) -> Option<(u16, &str)> {
    let rest = name.strip_prefix("msg")?;
    let digits = rest.get(..4)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ext = rest[4..].strip_prefix('.')?;
    if ext.is_empty() {
        return None;
    }
    Some((digits.parse().ok()?, ext))
}

fn classify_noise(name: &str) -> Noise {
    if crate::lock::lock_file_kind(name).is_some() {
        return Noise::Lock(name.to_string());
    }
    if let Some(rest) = name.strip_prefix("msg") {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 4 && rest[4..].starts_with("-bak.") {
            return Noise::Backup(name.to_string());
        }
        if digits == 4 && rest[4..].starts_with("-prepend.") {
            return Noise::Prepend(name.to_string());
        }
    }
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("msg") {
        let b = name.as_bytes();
        let why = if b.len() >= 11 && b[8..11].eq_ignore_ascii_case(b"txt") {
            "counted as a message by MWI but not a real message file"
        } else {
            "starts with msg: has_voicemail() sees it, and it may confuse Asterisk's scanners"
        };
        return Noise::Stray(name.to_string(), why);
    }
    Noise::Foreign(name.to_string())
}

/// Reads a folder directory. A missing directory is an empty folder (Asterisk
/// creates folders lazily).
pub fn scan_folder(dir: &Path) -> io::Result<FolderScan> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(FolderScan::default()),
        Err(e) => return Err(e),
    };
    let mut b = ScanBuilder::default();
    for entry in rd {
        let entry = entry?;
        let kind = match entry.file_type() {
            Ok(t) if t.is_dir() => EntryKind::Dir,
            Ok(t) => match crate::fsutil::kind_of_type(t) {
                Some(k) => EntryKind::Other(k),
                None => EntryKind::File,
            },
            Err(_) => EntryKind::File,
        };
        b.add(entry.file_name().as_encoded_bytes(), kind);
    }
    Ok(b.finish())
}

/// Like [`scan_folder`], on an open directory: the caller can then open its
/// files relative to the same descriptor (no path walk per file).
/// The descriptor must be freshly opened: entries are read from its offset
/// (with a 32-KiB buffer: a folder of hundreds of files in one `getdents64`).
pub fn scan_folder_fd(dir: &std::os::fd::OwnedFd) -> io::Result<FolderScan> {
    use rustix::fs::{FileType, RawDir};
    let mut buf = Vec::<u8>::with_capacity(32 * 1024);
    let mut d = RawDir::new(dir, buf.spare_capacity_mut());
    let mut b = ScanBuilder::default();
    while let Some(entry) = d.next() {
        let entry = match entry {
            Ok(e) => e,
            // Removed while being read: nothing more in it (as `Dir` does).
            Err(rustix::io::Errno::NOENT) => break,
            Err(e) => return Err(e.into()),
        };
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let ft = match entry.file_type() {
            // File systems without d_type: ask.
            FileType::Unknown => rustix::fs::statat(
                dir,
                entry.file_name(),
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )
            .map(|st| FileType::from_raw_mode(st.st_mode))
            .unwrap_or(FileType::RegularFile),
            t => t,
        };
        let kind = match ft {
            FileType::Directory => EntryKind::Dir,
            FileType::RegularFile => EntryKind::File,
            t => EntryKind::Other(
                crate::fsutil::kind_of_mode(t.as_raw_mode()).unwrap_or("special file"),
            ),
        };
        b.add(name, kind);
    }
    Ok(b.finish())
}

#[derive(Default)]
struct ScanBuilder {
    by_num: BTreeMap<u16, MsgFiles>,
    scan: FolderScan,
}

impl ScanBuilder {
    fn add(&mut self, raw: &[u8], kind: EntryKind) {
        let is_dir = kind == EntryKind::Dir;
        count_name(raw, &mut self.scan.counts);
        let Ok(name) = std::str::from_utf8(raw) else {
            self.scan
                .noise
                .push(Noise::Foreign(String::from_utf8_lossy(raw).into_owned()));
            return;
        };
        let parsed = if is_dir { None } else { split_msg_name(name) };
        match parsed {
            Some((n, ext)) if n <= MsgNum::MAX && is_message_ext(ext) => {
                let Some(num) = MsgNum::new(n) else { return };
                let m = self.by_num.entry(n).or_insert_with(|| MsgFiles {
                    num,
                    txt: false,
                    audio: Vec::new(),
                });
                if ext == "txt" {
                    m.txt = true;
                } else {
                    m.audio.push(ext.to_string());
                }
                if let EntryKind::Other(kind) = kind {
                    self.scan.irregular.push(Irregular {
                        num,
                        name: name.to_string(),
                        kind,
                    });
                }
            }
            Some((9999, _)) => self.scan.noise.push(Noise::Stray(
                name.to_string(),
                "number 9999 is invisible to Asterisk and gets overwritten",
            )),
            _ if is_dir => self.scan.noise.push(Noise::Foreign(format!("{name}/"))),
            _ => self.scan.noise.push(classify_noise(name)),
        }
    }

    fn finish(mut self) -> FolderScan {
        self.scan.messages = self
            .by_num
            .into_values()
            .map(|mut m| {
                m.audio.sort();
                m
            })
            .collect();
        self.scan.noise.sort_by(|a, b| a.name().cmp(b.name()));
        self.scan
    }
}

/// `txt`, or an audio extension: one word, no dots, and not a case variant of `txt`.
fn is_message_ext(ext: &str) -> bool {
    ext == "txt"
        || (!ext.contains('.')
            && !ext.eq_ignore_ascii_case("txt")
            && ext
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
}

/// `sscanf(name, "msg%30d.%3s")` with `strcmp(ext, "txt") == 0`: the number, if
/// this name marks a message for `last_message_index()`.
fn sscanf_msg_txt(name: &[u8]) -> Option<i64> {
    let rest = name.strip_prefix(b"msg")?;
    let is_ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
    let mut i = rest.iter().take_while(|b| is_ws(b)).count();
    let width_start = i;
    let neg = match rest.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let digits_start = i;
    while i < rest.len() && i - width_start < 30 && rest[i].is_ascii_digit() {
        i += 1;
    }
    if i == digits_start {
        return None;
    }
    let v: i64 = std::str::from_utf8(&rest[digits_start..i])
        .ok()?
        .parse()
        .ok()?;
    let rest = rest[i..].strip_prefix(b".")?;
    let skip = rest.iter().take_while(|b| is_ws(b)).count();
    let word: Vec<u8> = rest[skip..]
        .iter()
        .take_while(|b| !is_ws(b))
        .take(3)
        .copied()
        .collect();
    (word == b"txt").then_some(if neg { -v } else { v })
}

/// `last_message_index()` exactly (spec §2.4): the highest number Asterisk
/// thinks is used, `None` for an empty folder. Its quirk is kept: duplicate or
/// negative hits (`msg0001.txt` + `msg0001.txt.bak`, `msg-001.txt`) keep its
/// counter from reaching zero and it answers 9998.
pub fn last_message_index(dir: &Path) -> io::Result<Option<u16>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut map = vec![false; 9999];
    let mut stopcount = 0usize;
    for entry in rd {
        let name = entry?.file_name();
        if let Some(n) = sscanf_msg_txt(name.as_encoded_bytes()) {
            if n < 9999 {
                if n >= 0 {
                    map[n as usize] = true;
                }
                stopcount += 1;
            }
        }
    }
    let mut x = 0usize;
    while x < 9999 && stopcount > 0 {
        stopcount -= usize::from(map[x]);
        x += 1;
    }
    Ok(x.checked_sub(1).map(|v| v as u16))
}

/// Counts a folder with Asterisk's name rules only (no `.txt` is opened).
pub fn count_folder(dir: &Path) -> io::Result<FolderCounts> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(FolderCounts::default()),
        Err(e) => return Err(e),
    };
    let mut counts = FolderCounts::default();
    for entry in rd {
        count_name(entry?.file_name().as_encoded_bytes(), &mut counts);
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(names: &[&str]) -> FolderCounts {
        let mut c = FolderCounts::default();
        for n in names {
            count_name(n.as_bytes(), &mut c);
        }
        c
    }

    #[test]
    fn asterisk_counting_rules() {
        assert_eq!(counts(&["msg0000.txt", "msg0000.wav"]).mwi, 1);
        assert_eq!(
            counts(&["msg0001.TXT"]).mwi,
            1,
            "MWI compares txt case-insensitively"
        );
        assert_eq!(counts(&["msg0001.TXT"]).capacity, 0);
        assert_eq!(counts(&["MSG0001.txt"]).mwi, 1);
        assert_eq!(counts(&["msg0001.txt.bak"]).mwi, 1, "prefix compare only");
        assert_eq!(counts(&["msg0001.txt.bak"]).capacity, 1);
        assert_eq!(counts(&["msg12.txt"]).mwi, 0);
        assert_eq!(counts(&["msg-001.txt"]).mwi, 1);
        assert_eq!(counts(&["msg0001.wav"]).mwi, 0);
        assert!(counts(&["msg0001.wav"]).any_msg);
        assert_eq!(counts(&["abcdefg.txt"]).capacity, 1);
        assert_eq!(counts(&["abcdefg.txt"]).mwi, 0);
        assert_eq!(counts(&["msg"]).mwi, 0);
    }

    #[test]
    fn last_message_index_like_asterisk() {
        let d = tempfile::tempdir().unwrap();
        let lmi = || last_message_index(d.path()).unwrap();
        assert_eq!(lmi(), None);
        let touch = |n: &str| std::fs::write(d.path().join(n), b"").unwrap();
        touch("msg0000.wav");
        assert_eq!(lmi(), None, "audio alone is not counted");
        touch("msg0003.txt");
        assert_eq!(lmi(), Some(3), "highest, gaps ignored");
        touch("msg12.txt");
        assert_eq!(lmi(), Some(12));
        touch("msg0012.txt.bak");
        assert_eq!(
            lmi(),
            Some(9998),
            "duplicate hit: Asterisk's counter never reaches 0"
        );
        assert_eq!(sscanf_msg_txt(b"msg-001.txt"), Some(-1));
        assert_eq!(sscanf_msg_txt(b"msg0001.TXT"), None);
        assert_eq!(sscanf_msg_txt(b"msg0001.tx"), None);
        assert_eq!(sscanf_msg_txt(b"msg 7.txt"), Some(7));
    }

    #[test]
    fn names() {
        assert_eq!(split_msg_name("msg0003.WAV"), Some((3, "WAV")));
        assert_eq!(split_msg_name("msg0003.txt.bak"), Some((3, "txt.bak")));
        assert_eq!(split_msg_name("msg12.txt"), None);
        assert_eq!(split_msg_name("msg0003"), None);
        assert!(!is_message_ext("txt.bak"));
        assert!(!is_message_ext("TXT"));
        assert!(is_message_ext("wav16"));
        assert!(matches!(classify_noise(".lock-0a1b2c3d"), Noise::Lock(_)));
        assert!(matches!(
            classify_noise("msg0001-bak.txt"),
            Noise::Backup(_)
        ));
        assert!(matches!(
            classify_noise("msg0001-prepend.wav"),
            Noise::Prepend(_)
        ));
        assert!(matches!(classify_noise("msg-001.txt"), Noise::Stray(..)));
        assert!(matches!(classify_noise("notes.md"), Noise::Foreign(_)));
    }
}
