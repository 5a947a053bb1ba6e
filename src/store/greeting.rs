//! Mailbox greetings on the file spool (spec §1.4, §7.4): `unavail`, `busy`,
//! `greet` (the recorded name) and `temp` (overrides the other two while it
//! exists), one file per format of `format=` directly in the box directory,
//! no `.txt`, no lock; `<name>.tmp.<ext>` while the owner records one.
//!
//! Asterisk locks nothing for greetings. vmtool serialises its own writers
//! with the box's `MailboxGuard`, and makes a new greeting appear whole:
//! every format is encoded and fsynced in the box's `tmp/` first, a record
//! lists them, then each is renamed into place (a rename per format, as
//! Asterisk's own `ast_filerename()` does when the owner accepts a recording).
//! A crash after the record is finished by the next vmtool that works on the
//! box (roll forward), so every format ends up new, never a mix.
//!
//! The end of a temporary greeting (`--until`) is kept in
//! `temp.vmtool-until` next to it: Asterisk only ever opens `temp.<ext>` for
//! the extensions of its format modules, so it never reads the file, and when
//! the owner removes the greeting by phone the file is left alone until vmtool
//! (`greeting expire`, `check`) sees it without a greeting and removes it.

use super::{Decoded, Store};
use crate::audio::encode::{encodable, encode_to};
use crate::audio::{self, AudioFormat};
use crate::error::Error;
use crate::fsutil::{self, Perms};
use crate::lock::{LockError, MailboxGuard};
use crate::ops::failpoint;
use crate::spool::{MailboxId, Spool};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The four greetings of a box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Unavail,
    Busy,
    /// The recorded name, `greet.<ext>`.
    Name,
    Temp,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Unavail, Kind::Busy, Kind::Name, Kind::Temp];

    /// The file name Asterisk gives it, without extension.
    pub fn base(self) -> &'static str {
        match self {
            Kind::Unavail => "unavail",
            Kind::Busy => "busy",
            Kind::Name => "greet",
            Kind::Temp => "temp",
        }
    }

    /// The name users give it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Unavail => "unavail",
            Kind::Busy => "busy",
            Kind::Name => "name",
            Kind::Temp => "temp",
        }
    }

    pub fn parse(s: &str) -> Result<Kind, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "unavail" | "unavailable" => Kind::Unavail,
            "busy" => Kind::Busy,
            "name" | "greet" => Kind::Name,
            "temp" | "temporary" => Kind::Temp,
            _ => {
                return Err(format!(
                    "unknown greeting {s:?}: use unavail, busy, name or temp"
                ))
            }
        })
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The extension Asterisk writes for a `format=` token (spec §4.1: the
/// token itself, except `wav49` → `WAV`).
pub fn ext_of_token(token: &str) -> String {
    if token.eq_ignore_ascii_case("wav49") {
        "WAV".into()
    } else {
        token.into()
    }
}

/// One file of a greeting.
#[derive(Debug, Clone, Serialize)]
pub struct GreetingFile {
    pub ext: String,
    pub bytes: u64,
    /// Seconds, measured from the audio.
    pub duration: Option<f64>,
    /// mtime, seconds since the epoch.
    pub modified: Option<i64>,
    /// Why Asterisk would not play it well (0 bytes, a bad header, …).
    pub problem: Option<String>,
}

/// Per box, the greetings it has and when each was set (seconds since the epoch).
pub type GreetingsSet = HashMap<MailboxId, Vec<(Kind, Option<i64>)>>;

/// One greeting of a box as it is on disk.
#[derive(Debug, Clone, Serialize)]
pub struct Greeting {
    pub kind: Kind,
    pub files: Vec<GreetingFile>,
    /// Formats of `format=` with no file: callers whose call uses them hear
    /// the greeting transcoded from another, or (all missing) none.
    pub missing: Vec<String>,
    /// `<name>.tmp.<ext>`: a recording in progress, or one abandoned.
    pub recording: Vec<String>,
    /// For `temp`: when vmtool is to remove it.
    pub until: Option<i64>,
}

impl Greeting {
    /// Whether Asterisk has a greeting to play (a file in some format).
    pub fn exists(&self) -> bool {
        !self.files.is_empty()
    }

    /// The newest mtime of its files: when it was set.
    pub fn set_at(&self) -> Option<i64> {
        self.files.iter().filter_map(|f| f.modified).max()
    }
}

/// Why a greeting could not be written or removed.
#[derive(Debug, thiserror::Error)]
pub enum GreetingError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Refused(String),
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> GreetingError {
    let path = path.to_path_buf();
    move |source| GreetingError::Io {
        action,
        path,
        source,
    }
}

type Result<T, E = GreetingError> = std::result::Result<T, E>;

const UNTIL_FILE: &str = "temp.vmtool-until";
const STAGE_PREFIX: &str = ".vmtool-greet-";
const RECORD_PREFIX: &str = ".vmtool-greet-record-";

/// Splits a box-directory entry into greeting, whether it is a `.tmp.`
/// recording, and extension; `None` for anything else.
fn classify(name: &str) -> Option<(Kind, bool, &str)> {
    let (base, rest) = name.split_once('.')?;
    let kind = Kind::ALL.into_iter().find(|k| k.base() == base)?;
    let (tmp, ext) = match rest.strip_prefix("tmp.") {
        Some(ext) => (true, ext),
        None => (false, rest),
    };
    if matches!(AudioFormat::from_extension(ext), AudioFormat::Other(_)) {
        return None;
    }
    Some((kind, tmp, ext))
}

/// Every greeting of a box that has a file, a recording in progress or an
/// end date; `formats` are the `format=` tokens (for what is missing).
pub fn list(spool: &Spool, mb: &MailboxId, formats: &[String]) -> io::Result<Vec<Greeting>> {
    let dir = spool.mailbox_dir(mb);
    let mut out: Vec<Greeting> = Kind::ALL
        .iter()
        .map(|&kind| Greeting {
            kind,
            files: Vec::new(),
            missing: Vec::new(),
            recording: Vec::new(),
            until: None,
        })
        .collect();
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    for e in rd {
        let e = e?;
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let Some((kind, tmp, ext)) = classify(&name) else {
            continue;
        };
        // Regular files only (the spool is untrusted input).
        let Ok(md) = fs::symlink_metadata(e.path()) else {
            continue;
        };
        if !md.file_type().is_file() {
            continue;
        }
        let g = &mut out[Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0)];
        if tmp {
            g.recording.push(name.clone());
            continue;
        }
        g.files.push(file_info(&e.path(), ext, &md));
    }
    out[3].until = read_until(&dir);
    for g in &mut out {
        g.files.sort_by(|a, b| a.ext.cmp(&b.ext));
        g.recording.sort();
        if g.exists() {
            g.missing = formats
                .iter()
                .filter(|t| !g.files.iter().any(|f| f.ext == ext_of_token(t)))
                .cloned()
                .collect();
        }
    }
    out.retain(|g| g.exists() || !g.recording.is_empty() || g.until.is_some());
    Ok(out)
}

fn file_info(path: &Path, ext: &str, md: &fs::Metadata) -> GreetingFile {
    use std::os::unix::fs::MetadataExt as _;
    let (duration, problem) = if md.len() == 0 {
        (None, Some("0 bytes: plays nothing".to_string()))
    } else {
        match crate::audio::probe_file(path, ext) {
            Ok(info) => (info.duration_secs(), info.warnings.first().cloned()),
            Err(e) => (None, Some(e.to_string())),
        }
    };
    GreetingFile {
        ext: ext.to_string(),
        bytes: md.len(),
        duration,
        modified: Some(md.mtime()),
        problem,
    }
}

fn read_until(dir: &Path) -> Option<i64> {
    let bytes = fsutil::read_capped(&dir.join(UNTIL_FILE), 4096).ok()?;
    String::from_utf8_lossy(&bytes)
        .lines()
        .find_map(|l| l.strip_prefix("until="))
        .and_then(|v| v.trim().parse().ok())
}

/// What a set has to do, kept in the box's `tmp/` until it is done.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    kind: Kind,
    /// `(extension, staged file name in tmp/)`.
    files: Vec<(String, String)>,
    /// Extensions of the old greeting that the new one does not have.
    remove: Vec<String>,
    until: Option<i64>,
}

impl Record {
    /// Every staged name is one of ours in `tmp/` and every extension a plain
    /// audio extension: nothing in a record can name a path elsewhere.
    fn names_only_own_files(&self) -> bool {
        let plain = |ext: &str| {
            matches!(classify(&format!("{}.{ext}", self.kind.base())), Some((_, false, e)) if e == ext)
                && !ext.contains('/')
        };
        self.files.iter().all(|(ext, staged)| {
            plain(ext) && staged.starts_with(STAGE_PREFIX) && !staged.contains('/')
        }) && self.remove.iter().all(|ext| plain(ext))
    }
}

/// Options of [`set`].
pub struct SetOptions<'a> {
    /// `format=` tokens: one file each.
    pub formats: &'a [String],
    /// For `temp`: when `greeting expire` removes it.
    pub until: Option<i64>,
    /// How long to wait for another vmtool working on the box.
    pub timeout: Duration,
}

/// Writes greeting `kind` of `mb` in every format of `opts.formats`.
/// `samples_at(rate)` gives the audio, mono, at a rate a format needs.
/// Returns the files now in place.
pub fn set(
    spool: &Spool,
    mb: &MailboxId,
    kind: Kind,
    samples_at: &mut dyn FnMut(u32) -> std::result::Result<Vec<i16>, String>,
    opts: &SetOptions,
) -> Result<Vec<PathBuf>> {
    if opts.until.is_some() && kind != Kind::Temp {
        return Err(GreetingError::Refused(format!(
            "--until applies to the temp greeting only, not to {kind}"
        )));
    }
    let mut plan = Vec::new();
    for token in opts.formats {
        let ext = ext_of_token(token);
        let format = AudioFormat::from_extension(&ext);
        if !encodable(&format) {
            return Err(GreetingError::Refused(format!(
                "format={token} in voicemail.conf: vmtool cannot write {} files; nothing was changed",
                format.name()
            )));
        }
        if plan.iter().any(|(e, _)| *e == ext) {
            continue;
        }
        plan.push((ext, format));
    }
    if plan.is_empty() {
        return Err(GreetingError::Refused(
            "no format to write (format= in voicemail.conf is empty)".into(),
        ));
    }
    let dir = spool.mailbox_dir(mb);
    spool
        .check_no_symlink(&dir)
        .map_err(|e| GreetingError::Refused(format!("{e}; nothing was changed")))?;
    let tmp = box_tmp(spool, mb)?;
    let _guard = MailboxGuard::acquire(&dir, opts.timeout)?;
    recover_locked(spool, mb)?;
    let perms = Perms::observe(&dir).map_err(io_err("read", &dir))?;

    // Encode and stage every format before anything in the box changes.
    let id = format!("{}-{}", std::process::id(), unique());
    let mut record = Record {
        kind,
        files: Vec::new(),
        remove: Vec::new(),
        until: opts.until,
    };
    let mut staged: Vec<PathBuf> = Vec::new();
    let cleanup = |staged: &[PathBuf]| {
        for p in staged {
            let _ = fs::remove_file(p);
        }
    };
    let mut by_rate: Vec<(u32, Vec<i16>)> = Vec::new();
    for (ext, format) in &plan {
        let rate = format.sample_rate().unwrap_or(8000);
        if !by_rate.iter().any(|(r, _)| *r == rate) {
            match samples_at(rate) {
                Ok(s) => by_rate.push((rate, s)),
                Err(e) => {
                    cleanup(&staged);
                    return Err(GreetingError::Refused(e));
                }
            }
        }
        let samples = &by_rate.iter().find(|(r, _)| *r == rate).map(|(_, s)| s);
        let samples = samples.map(Vec::as_slice).unwrap_or_default();
        let mut data = Vec::new();
        if let Err(e) = encode_to(format, samples, rate, &mut data) {
            cleanup(&staged);
            return Err(GreetingError::Refused(format!("{e}; nothing was changed")));
        }
        let name = format!("{STAGE_PREFIX}{id}.{ext}");
        let path = tmp.join(&name);
        if let Err(e) = fsutil::write_hashed(&mut data.as_slice(), &path, &perms, true) {
            cleanup(&staged);
            return Err(io_err("write", &path)(e));
        }
        staged.push(path);
        record.files.push((ext.clone(), name));
    }
    fsutil::sync_dir(&tmp).map_err(io_err("sync", &tmp))?;
    if let Ok(rd) = fs::read_dir(&dir) {
        for e in rd.flatten() {
            if let Some((k, false, ext)) = e.file_name().to_str().and_then(classify) {
                if k == kind && !record.files.iter().any(|(x, _)| x == ext) {
                    record.remove.push(ext.to_string());
                }
            }
        }
    }
    let record_path = tmp.join(format!("{RECORD_PREFIX}{id}.json"));
    let json =
        serde_json::to_vec_pretty(&record).map_err(|e| GreetingError::Refused(e.to_string()))?;
    if let Err(e) = fsutil::write_atomic(&record_path, &json, &perms) {
        cleanup(&staged);
        return Err(io_err("write", &record_path)(e));
    }
    failpoint("greeting-staged");
    finish(&dir, &tmp, &record, &perms)?;
    fs::remove_file(&record_path).map_err(io_err("remove", &record_path))?;
    fsutil::sync_dir(&tmp).map_err(io_err("sync", &tmp))?;
    Ok(record
        .files
        .iter()
        .map(|(ext, _)| dir.join(format!("{}.{ext}", kind.base())))
        .collect())
}

/// Carries out a record: staged files renamed into place (those already
/// moved are skipped), the old greeting's other formats removed, the end
/// date written or removed, the directory synced. Safe to run again.
fn finish(dir: &Path, tmp: &Path, r: &Record, perms: &Perms) -> Result<()> {
    for (ext, staged) in &r.files {
        let from = tmp.join(staged);
        if fs::symlink_metadata(&from).is_err() {
            continue;
        }
        let to = dir.join(format!("{}.{ext}", r.kind.base()));
        fs::rename(&from, &to).map_err(io_err("rename into", &to))?;
        failpoint("greeting-renamed");
    }
    for ext in &r.remove {
        let p = dir.join(format!("{}.{ext}", r.kind.base()));
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove", &p)(e)),
        }
    }
    if r.kind == Kind::Temp {
        let p = dir.join(UNTIL_FILE);
        match r.until {
            Some(t) => {
                let text = format!(
                    "# vmtool: remove temp.* at this time (vmtool greeting expire)\nuntil={t}\n"
                );
                fsutil::write_atomic(&p, text.as_bytes(), perms).map_err(io_err("write", &p))?;
            }
            None => match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove", &p)(e)),
            },
        }
    }
    fsutil::sync_dir(dir).map_err(io_err("sync", dir))
}

/// Finishes sets that a killed vmtool left (their records), and removes
/// staged files no record names. Takes the box's guard.
pub fn recover(spool: &Spool, mb: &MailboxId, timeout: Duration) -> Result<Vec<String>> {
    if !spool.tmp_dir(mb).is_dir() {
        return Ok(Vec::new());
    }
    let _guard = MailboxGuard::acquire(&spool.mailbox_dir(mb), timeout)?;
    recover_locked(spool, mb)
}

fn recover_locked(spool: &Spool, mb: &MailboxId) -> Result<Vec<String>> {
    let dir = spool.mailbox_dir(mb);
    let tmp = spool.tmp_dir(mb);
    let mut done = Vec::new();
    let Ok(rd) = fs::read_dir(&tmp) else {
        return Ok(done);
    };
    let names: Vec<String> = rd
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.starts_with(STAGE_PREFIX))
        .collect();
    let mut named: Vec<String> = Vec::new();
    for n in names
        .iter()
        .filter(|n| n.starts_with(RECORD_PREFIX) && n.ends_with(".json"))
    {
        let path = tmp.join(n);
        let Some(record) = fsutil::read_capped(&path, 1 << 20)
            .ok()
            .and_then(|b| serde_json::from_slice::<Record>(&b).ok())
            // tmp/ is the asterisk user's: only names vmtool itself writes.
            .filter(Record::names_only_own_files)
        else {
            continue;
        };
        let perms = Perms::observe(&dir).map_err(io_err("read", &dir))?;
        finish(&dir, &tmp, &record, &perms)?;
        fs::remove_file(&path).map_err(io_err("remove", &path))?;
        named.extend(record.files.iter().map(|(_, s)| s.clone()));
        done.push(format!(
            "{}/{}: finished setting the {} greeting",
            mb.context,
            mb.mailbox(),
            record.kind
        ));
    }
    // Staged files of a set that was killed before its record was written.
    for n in names
        .iter()
        .filter(|n| !n.starts_with(RECORD_PREFIX) && !named.contains(n))
    {
        let _ = fs::remove_file(tmp.join(n));
    }
    fsutil::sync_dir(&tmp).map_err(io_err("sync", &tmp))?;
    Ok(done)
}

/// Records of sets a killed vmtool left on `mb` (what `recover` finishes).
pub fn pending(spool: &Spool, mb: &MailboxId) -> Vec<PathBuf> {
    let tmp = spool.tmp_dir(mb);
    let Ok(rd) = fs::read_dir(&tmp) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(RECORD_PREFIX) && n.ends_with(".json"))
        })
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

/// The end-date file of the temp greeting, when there is one.
pub fn until_file(spool: &Spool, mb: &MailboxId) -> Option<PathBuf> {
    let p = spool.mailbox_dir(mb).join(UNTIL_FILE);
    fs::symlink_metadata(&p)
        .is_ok_and(|m| m.is_file())
        .then_some(p)
}

/// Removes greeting `kind` of `mb` (every format; for `temp` its end date).
/// Returns the files removed.
pub fn remove(
    spool: &Spool,
    mb: &MailboxId,
    kind: Kind,
    timeout: Duration,
) -> Result<Vec<PathBuf>> {
    let dir = spool.mailbox_dir(mb);
    spool
        .check_no_symlink(&dir)
        .map_err(|e| GreetingError::Refused(format!("{e}; nothing was changed")))?;
    box_tmp(spool, mb)?;
    let _guard = MailboxGuard::acquire(&dir, timeout)?;
    recover_locked(spool, mb)?;
    let mut removed = Vec::new();
    let rd = fs::read_dir(&dir).map_err(io_err("read", &dir))?;
    for e in rd.flatten() {
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let is_it = matches!(classify(&name), Some((k, false, _)) if k == kind)
            || (kind == Kind::Temp && name == UNTIL_FILE);
        let regular = fs::symlink_metadata(e.path()).is_ok_and(|m| !m.is_dir());
        if is_it && regular {
            fs::remove_file(e.path()).map_err(io_err("remove", &e.path()))?;
            removed.push(e.path());
        }
    }
    removed.sort();
    fsutil::sync_dir(&dir).map_err(io_err("sync", &dir))?;
    Ok(removed)
}

/// Removes the temp greeting of `mb` if its end date has passed (or its end
/// date if the greeting is gone). Returns the end date acted on.
pub fn expire(spool: &Spool, mb: &MailboxId, now: i64, timeout: Duration) -> Result<Option<i64>> {
    let dir = spool.mailbox_dir(mb);
    match read_until(&dir) {
        Some(t) if t <= now => {
            remove(spool, mb, Kind::Temp, timeout)?;
            Ok(Some(t))
        }
        _ => Ok(None),
    }
}

/// The box's `tmp/`, made like the box directory if missing.
fn box_tmp(spool: &Spool, mb: &MailboxId) -> Result<PathBuf> {
    let tmp = spool.tmp_dir(mb);
    if tmp.is_dir() {
        return Ok(tmp);
    }
    let dir = spool.mailbox_dir(mb);
    if !dir.is_dir() {
        return Err(GreetingError::Refused(format!(
            "{}: no such mailbox directory; nothing was changed",
            dir.display()
        )));
    }
    let perms = Perms::observe(&dir).map_err(io_err("read", &dir))?;
    fsutil::create_dir_like(&tmp, &perms).map_err(io_err("create", &tmp))?;
    Ok(tmp)
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{nanos:x}-{}", N.fetch_add(1, Ordering::SeqCst))
}

impl From<GreetingError> for Error {
    fn from(e: GreetingError) -> Error {
        match e {
            GreetingError::Lock(l) => Error::from(l),
            GreetingError::Io {
                action,
                path,
                source,
            } => Error::Io {
                action,
                path,
                source,
            },
            GreetingError::Refused(m) if m.contains("no such mailbox") => Error::NotFound(m),
            GreetingError::Refused(m) => Error::Failed(m),
        }
    }
}

/// The store operations on greetings. The file spool keeps them as files
/// (above); the SQL table as rows with `msgnum = -1` (spec §10.1).
impl Store {
    /// The greetings of a box; `formats` are `format=`'s tokens.
    pub fn greetings(&self, mb: &MailboxId, formats: &[String]) -> Result<Vec<Greeting>, Error> {
        match self {
            Store::File(f) => list(f.spool(), mb, formats)
                .map_err(|e| Error::io("read", f.spool().mailbox_dir(mb), e)),
            Store::Sql(s) => s.greetings(mb, formats),
        }
    }

    /// Which greetings each of `mbs` has (a file or row in some format) and when each was
    /// set; boxes with none are left out. For many boxes at once (`boxes`).
    pub fn greetings_set(
        &self,
        mbs: &[MailboxId],
        formats: &[String],
    ) -> Result<GreetingsSet, Error> {
        match self {
            Store::File(f) => {
                let mut out = HashMap::new();
                for mb in mbs {
                    let gs = match list(f.spool(), mb, formats) {
                        Ok(gs) => gs,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(Error::io("read", f.spool().mailbox_dir(mb), e)),
                    };
                    let set: Vec<_> = gs
                        .iter()
                        .filter(|g| g.exists())
                        .map(|g| (g.kind, g.set_at()))
                        .collect();
                    if !set.is_empty() {
                        out.insert(mb.clone(), set);
                    }
                }
                Ok(out)
            }
            Store::Sql(s) => s.greetings_set(mbs),
        }
    }

    /// Writes greeting `kind` of `mb`; returns where it is kept.
    pub fn set_greeting(
        &self,
        mb: &MailboxId,
        kind: Kind,
        samples_at: &mut dyn FnMut(u32) -> std::result::Result<Vec<i16>, String>,
        opts: &SetOptions,
    ) -> Result<Vec<String>, Error> {
        match self {
            Store::File(f) => Ok(set(f.spool(), mb, kind, samples_at, opts)?
                .iter()
                .map(|p| p.display().to_string())
                .collect()),
            Store::Sql(s) => s.set_greeting(mb, kind, samples_at, opts),
        }
    }

    /// Removes greeting `kind` of `mb`; returns what was removed.
    pub fn remove_greeting(
        &self,
        mb: &MailboxId,
        kind: Kind,
        timeout: Duration,
    ) -> Result<Vec<String>, Error> {
        match self {
            Store::File(f) => Ok(remove(f.spool(), mb, kind, timeout)?
                .iter()
                .map(|p| p.display().to_string())
                .collect()),
            Store::Sql(s) => s.remove_greeting(mb, kind),
        }
    }

    /// Removes the temp greeting of `mb` once its end date has passed;
    /// returns that date.
    pub fn expire_greeting(
        &self,
        mb: &MailboxId,
        now: i64,
        timeout: Duration,
    ) -> Result<Option<i64>, Error> {
        match self {
            Store::File(f) => Ok(expire(f.spool(), mb, now, timeout)?),
            Store::Sql(s) => s.expire_greeting(mb, now),
        }
    }

    /// Finishes a set a killed vmtool left on `mb` (nothing to do on the
    /// table: a set there is one transaction). One line per set finished.
    pub fn recover_greetings(
        &self,
        mb: &MailboxId,
        timeout: Duration,
    ) -> Result<Vec<String>, Error> {
        match self {
            Store::File(f) => Ok(recover(f.spool(), mb, timeout)?),
            Store::Sql(_) => Ok(Vec::new()),
        }
    }

    /// Decodes greeting `kind` of `mb` from `ext` (else the best format it
    /// has): where it is, the extension, and the decoder's result.
    pub fn decode_greeting(
        &self,
        mb: &MailboxId,
        kind: Kind,
        ext: Option<&str>,
    ) -> Result<(PathBuf, String, Decoded), Error> {
        match self {
            Store::File(f) => {
                let gs = list(f.spool(), mb, &[])
                    .map_err(|e| Error::io("read", f.spool().mailbox_dir(mb), e))?;
                let exts: Vec<String> = gs
                    .iter()
                    .find(|g| g.kind == kind)
                    .map(|g| g.files.iter().map(|f| f.ext.clone()).collect())
                    .unwrap_or_default();
                let ext = pick_ext(mb, kind, &exts, ext)?;
                let path = f
                    .spool()
                    .mailbox_dir(mb)
                    .join(format!("{}.{ext}", kind.base()));
                let decoded = audio::open(&path, &ext).and_then(|mut dec| {
                    let mut samples = Vec::new();
                    while dec.next_block(&mut samples)? > 0 {}
                    Ok((dec.sample_rate(), dec.warnings().to_vec(), samples))
                });
                Ok((path, ext, decoded))
            }
            Store::Sql(s) => s.decode_greeting(mb, kind, ext),
        }
    }
}

/// A box's temporary greeting, as a report needs it (no audio read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TempGreeting {
    pub mailbox: MailboxId,
    /// When it was set (the newest mtime of its files; on the table its
    /// `origtime`, which Asterisk may leave empty).
    pub set_at: Option<i64>,
    /// Its end date (`--until`).
    pub until: Option<i64>,
}

/// The temp greeting of `mb` on the file spool, if it has one.
fn temp_of(spool: &Spool, mb: &MailboxId) -> Option<TempGreeting> {
    use std::os::unix::fs::MetadataExt as _;
    let dir = spool.mailbox_dir(mb);
    let mut found = false;
    let mut set_at: Option<i64> = None;
    for e in fs::read_dir(&dir).ok()?.flatten() {
        let is_temp = e
            .file_name()
            .to_str()
            .and_then(classify)
            .is_some_and(|(k, tmp, _)| k == Kind::Temp && !tmp);
        // Regular files only (the spool is untrusted input).
        let Ok(md) = fs::symlink_metadata(e.path()) else {
            continue;
        };
        if is_temp && md.file_type().is_file() {
            found = true;
            set_at = Some(set_at.map_or(md.mtime(), |t| t.max(md.mtime())));
        }
    }
    found.then(|| TempGreeting {
        mailbox: mb.clone(),
        set_at,
        until: read_until(&dir),
    })
}

impl Store {
    /// The temporary greetings of `boxes` (one query on the table).
    pub fn temp_greetings(&self, boxes: &[MailboxId]) -> Result<Vec<TempGreeting>, Error> {
        match self {
            Store::File(f) => Ok(boxes
                .iter()
                .filter_map(|mb| temp_of(f.spool(), mb))
                .collect()),
            Store::Sql(s) => s.temp_greetings(boxes),
        }
    }
}

/// The file to decode: the one asked for, else the best of those there.
pub(crate) fn pick_ext(
    mb: &MailboxId,
    kind: Kind,
    exts: &[String],
    want: Option<&str>,
) -> Result<String, Error> {
    if exts.is_empty() {
        return Err(Error::NotFound(format!("{mb} has no {kind} greeting")));
    }
    if let Some(w) = want {
        let w = w.strip_prefix('.').unwrap_or(w);
        return exts.iter().find(|e| *e == w).cloned().ok_or_else(|| {
            Error::NotFound(format!(
                "the {kind} greeting of {mb} has no .{w} file (it has {})",
                exts.join(", ")
            ))
        });
    }
    audio::preferred_format(exts).ok_or_else(|| {
        Error::Failed(format!(
            "the {kind} greeting of {mb} is in {} only: vmtool cannot decode it",
            exts.join(", ")
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_name_only_vmtools_own_files() {
        let rec = |staged: &str, ext: &str| Record {
            kind: Kind::Busy,
            files: vec![(ext.into(), staged.into())],
            remove: Vec::new(),
            until: None,
        };
        assert!(rec(".vmtool-greet-1-a.wav", "wav").names_only_own_files());
        assert!(!rec("../../etc/passwd", "wav").names_only_own_files());
        assert!(!rec(".vmtool-greet-1/../../x", "wav").names_only_own_files());
        assert!(!rec(".vmtool-greet-1-a.wav", "wav/../../x").names_only_own_files());
        assert!(!rec(".vmtool-greet-1-a.wav", "conf").names_only_own_files());
    }

    #[test]
    fn names_are_classified_like_asterisk_writes_them() {
        assert_eq!(classify("unavail.WAV"), Some((Kind::Unavail, false, "WAV")));
        assert_eq!(classify("greet.tmp.gsm"), Some((Kind::Name, true, "gsm")));
        assert_eq!(classify("temp.wav"), Some((Kind::Temp, false, "wav")));
        assert_eq!(classify("temp.vmtool-until"), None);
        assert_eq!(classify("busy.txt"), None);
        assert_eq!(classify("secret.conf"), None);
        assert_eq!(classify("INBOX"), None);
        assert_eq!(ext_of_token("wav49"), "WAV");
        assert_eq!(ext_of_token("gsm"), "gsm");
        assert_eq!(Kind::parse("Unavailable"), Ok(Kind::Unavail));
        assert!(Kind::parse("holiday").is_err());
    }
}
