//! `vmtool convert`: messages out as WAV (16-bit PCM, mono), FLAC, MP3 or Ogg
//! Vorbis with the caller and date as tags (`audio::export`); `--add-format`
//! writes a missing Asterisk format next to messages in the spool; and
//! the pieces `play` shares with it: which messages a target means, which of a
//! message's audio files to use, decoding it whole, and resampling.
//!
//! Resampling uses rubato's synchronous FFT resampler (band-limited, delay
//! trimmed, so the output lines up with the input); output names come from a
//! template whose fields are made filesystem-safe; files are written under a
//! temporary name in the destination directory, synced and renamed, without
//! replacing an existing file unless asked to.

use super::prelude::*;
use crate::audio::export::{self, ExportFormat, Tags};
use crate::audio::{self, AudioError, AudioFormat};
use crate::error::{Error, Exit, Result};
use crate::listing::Zone;
use crate::metadata::Metadata;
use crate::render::sanitize;
use crate::scan::MsgFiles;
use crate::spool::{Folder, MailboxId};
use crate::store::MailboxStore;
use crate::target::{self, Target};
use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

/// Output rates `convert --rate` offers.
pub const CONVERT_RATES: [u32; 4] = [8000, 16_000, 44_100, 48_000];

fn parse_rate(s: &str) -> Result<u32, String> {
    s.trim()
        .parse::<u32>()
        .ok()
        .filter(|r| CONVERT_RATES.contains(r))
        .ok_or_else(|| format!("\"{s}\" is not one of 8000, 16000, 44100, 48000"))
}

fn parse_export(s: &str) -> Result<ExportFormat, String> {
    ExportFormat::from_name(s).ok_or_else(|| format!("\"{s}\" is not one of wav, flac, mp3, ogg"))
}

/// The default `--name`: its `.wav` follows `--to`.
const DEFAULT_NAME: &str = "{context}-{box}-{folder}-{date}-{caller}.wav";

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// Messages, folders, boxes or contexts
    #[arg(value_name = "TARGET", required = true)]
    pub targets: Vec<String>,
    /// Directory to write the files into (created if missing)
    #[arg(short = 'o', long = "out-dir", value_name = "DIR", default_value = ".")]
    pub out_dir: PathBuf,
    /// Write one message to standard output instead of files (WAV unless --to says otherwise)
    #[arg(long, conflicts_with_all = ["out_dir", "name", "force"])]
    pub stdout: bool,
    /// Output format: wav, flac, mp3 or ogg (Ogg Vorbis), tagged with the caller and the date [default: the --name extension, else wav]
    #[arg(long, value_name = "FMT", value_parser = parse_export)]
    pub to: Option<ExportFormat>,
    /// Sample rate of the output: 8000, 16000, 44100 or 48000 [default: the source's]
    #[arg(long, value_name = "HZ", value_parser = parse_rate)]
    pub rate: Option<u32>,
    /// File name template (fields: see below)
    #[arg(
        long,
        value_name = "TEMPLATE",
        default_value = DEFAULT_NAME
    )]
    pub name: String,
    /// Replace existing files
    #[arg(long)]
    pub force: bool,
    /// Convert this audio file of each message (an extension as on disk: wav, WAV, gsm, …)
    #[arg(long, value_name = "EXT")]
    pub from_format: Option<String>,
    /// Dates in file names in UTC instead of the mailbox's zone
    #[arg(long)]
    pub utc: bool,
    /// Instead of exporting: add this format (a format= token: wav49, gsm, wav, wav16, ulaw, alaw, sln…) to each message that lacks it, in the spool, made from its best audio; existing files are never rewritten
    #[arg(long, value_name = "FMT", conflicts_with_all = ["stdout", "out_dir", "name", "force", "rate", "utc", "from_format", "to"])]
    pub add_format: Option<String>,
}

/// One message picked by the targets, with its metadata when readable.
#[derive(Debug, Clone)]
pub struct Picked {
    pub mb: MailboxId,
    pub folder: Folder,
    pub files: MsgFiles,
    pub meta: Option<Metadata>,
}

impl Picked {
    /// `ctx/box/Folder/msgNNNN`.
    pub fn describe(&self) -> String {
        target::describe(&Target::Message(
            self.mb.clone(),
            self.folder.clone(),
            self.files.num,
        ))
    }
}

/// What a whole box means to a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoxScope {
    /// Every folder (convert).
    AllFolders,
    /// Urgent then INBOX (play: what a listener means by "my messages").
    #[cfg_attr(not(feature = "play"), allow(dead_code))]
    NewOnly,
}

/// The messages the targets name, in order, each once. A folder gives its
/// messages that have a `.txt` (what Asterisk counts); a message named on its own
/// is taken even without one. Contexts and the whole spool are refused unless
/// `allow_context`. Problems are reported and skipped.
pub fn pick_messages(
    setup: &Setup,
    targets: &[Target],
    scope: BoxScope,
    allow_context: bool,
    rep: &mut Reporter,
) -> Vec<Picked> {
    let mut out: Vec<Picked> = Vec::new();
    let mut seen = HashSet::new();
    let mut add = |setup: &Setup,
                   mb: &MailboxId,
                   folder: &Folder,
                   files: MsgFiles,
                   irregular: Option<&crate::scan::Irregular>,
                   rep: &mut Reporter| {
        if !seen.insert((mb.clone(), folder.dir_name().to_string(), files.num)) {
            return;
        }
        // A FIFO, device or link among its files: reported and skipped.
        if let Some(irr) = irregular {
            let p = setup.store.spool().folder_dir(mb, folder).join(&irr.name);
            rep.error(&Error::io(
                "read",
                p,
                crate::fsutil::not_regular_err(irr.kind),
            ));
            return;
        }
        let meta = if files.txt {
            match setup.store.read_metadata(mb, folder, files.num) {
                Ok(m) => Some(m),
                Err(e) => {
                    if !setup.quiet {
                        rep.warn(&format!("{e} (caller and date unknown)"));
                    }
                    None
                }
            }
        } else {
            None
        };
        out.push(Picked {
            mb: mb.clone(),
            folder: folder.clone(),
            files,
            meta,
        });
    };
    for t in targets {
        let folders_of = |mb: &MailboxId| -> Result<Vec<Folder>> {
            Ok(match scope {
                BoxScope::AllFolders => setup.store.folders(mb)?,
                BoxScope::NewOnly => vec![Folder::Urgent, Folder::Inbox],
            })
        };
        let units: Vec<(MailboxId, Folder)> = match t {
            Target::Message(mb, folder, n) => {
                match setup.store.scan_folder(mb, folder) {
                    Ok(scan) => match scan.messages.iter().find(|m| m.num == *n) {
                        Some(files) => {
                            let irr = scan.irregular_of(*n);
                            add(setup, mb, folder, files.clone(), irr, rep)
                        }
                        None => rep.error(&Error::NotFound(format!(
                            "no message {} in {}",
                            n.stem(),
                            target::describe(&Target::Folder(mb.clone(), folder.clone()))
                        ))),
                    },
                    Err(e) => rep.error(&e),
                }
                continue;
            }
            Target::Folder(mb, f) => vec![(mb.clone(), f.clone())],
            Target::Mailbox(mb) => match folders_of(mb) {
                Ok(fs) => fs.into_iter().map(|f| (mb.clone(), f)).collect(),
                Err(e) => {
                    rep.error(&e);
                    continue;
                }
            },
            Target::Context(_) | Target::Spool if !allow_context => {
                rep.error(&Error::Usage(format!(
                    "{}: name a box, a folder or messages, not a whole context",
                    target::describe(t)
                )));
                continue;
            }
            Target::Context(_) | Target::Spool => {
                let boxes = match t {
                    Target::Context(c) => setup.store.mailboxes(c),
                    _ => setup.store.contexts().and_then(|cs| {
                        let mut all = Vec::new();
                        for c in cs {
                            all.extend(setup.store.mailboxes(&c)?);
                        }
                        Ok(all)
                    }),
                };
                let mut units = Vec::new();
                match boxes {
                    Ok(boxes) => {
                        for mb in boxes {
                            match folders_of(&mb) {
                                Ok(fs) => units.extend(fs.into_iter().map(|f| (mb.clone(), f))),
                                Err(e) => rep.error(&e),
                            }
                        }
                    }
                    Err(e) => rep.error(&e),
                }
                units
            }
        };
        let explicit_folder = matches!(t, Target::Folder(..));
        for (mb, folder) in units {
            let exists = setup.store.folder_exists(&mb, &folder);
            if !exists {
                // Boxes often lack Urgent/ or INBOX/; a named folder must exist.
                if explicit_folder {
                    rep.error(&Error::NotFound(format!(
                        "no folder {}",
                        target::describe(&Target::Folder(mb.clone(), folder.clone()))
                    )));
                }
                continue;
            }
            match setup.store.scan_folder(&mb, &folder) {
                Ok(scan) => {
                    for files in scan.messages.iter().filter(|m| m.txt) {
                        let irr = scan.irregular_of(files.num);
                        add(setup, &mb, &folder, files.clone(), irr, rep);
                    }
                }
                Err(e) => rep.error(&e),
            }
        }
    }
    out
}

/// What vmtool decodes, for error messages.
pub const DECODED_FORMATS: &str = "wav, wav16, sln*, WAV (wav49), gsm, ulaw, alaw";

/// The audio file (extension as on disk) to play or convert: `from` when given,
/// else [`audio::preferred_format`]. The error names the message and the formats.
pub fn choose_source(p: &Picked, from: Option<&str>) -> Result<String> {
    let here = p.describe();
    if let Some(want) = from {
        let want = want.strip_prefix('.').unwrap_or(want);
        if p.files.audio.iter().any(|e| e == want) {
            return Ok(want.to_string());
        }
        let has = if p.files.audio.is_empty() {
            "no audio file".to_string()
        } else {
            format!("it has {}", p.files.audio.join(", "))
        };
        return Err(Error::NotFound(format!(
            "{here} has no .{want} file ({has})"
        )));
    }
    if p.files.audio.is_empty() {
        return Err(Error::Failed(format!(
            "{here}: no audio file (a phantom: .txt only)"
        )));
    }
    audio::preferred_format(&p.files.audio).ok_or_else(|| {
        let names: Vec<String> = p
            .files
            .audio
            .iter()
            .map(|e| {
                let f = AudioFormat::from_extension(e).name();
                if &f == e {
                    format!(".{e}")
                } else {
                    format!(".{e} ({f})")
                }
            })
            .collect();
        Error::Failed(format!(
            "{here}: cannot decode {}: vmtool decodes {DECODED_FORMATS}",
            names.join(", ")
        ))
    })
}

/// A message's audio, decoded whole.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The file decoded.
    pub path: PathBuf,
    #[cfg_attr(not(feature = "play"), allow(dead_code))]
    pub ext: String,
    pub rate: u32,
    pub samples: Vec<i16>,
    /// What the decoder noticed (truncation, …), one sentence each.
    pub warnings: Vec<String>,
}

/// Decodes the chosen audio file of a message.
pub fn decode_message(setup: &Setup, p: &Picked, ext: &str) -> Result<Decoded> {
    let (path, decoded) = setup.store.decode(&p.mb, &p.folder, p.files.num, ext)?;
    let wrap = |source: AudioError| match source {
        AudioError::Unsupported { format, .. } => Error::Failed(format!(
            "{}: cannot decode {format} audio: vmtool decodes {DECODED_FORMATS}",
            path.display()
        )),
        source => Error::Audio {
            path: path.clone(),
            source,
        },
    };
    let (rate, warnings, samples) = decoded.map_err(wrap)?;
    Ok(Decoded {
        rate,
        warnings,
        ext: ext.to_string(),
        path,
        samples,
    })
}

/// A 16-bit sample as the float the resampler and rodio use (exactly k/32768).
pub fn to_f32(s: i16) -> f32 {
    f32::from(s) / 32768.0
}

/// Back to 16 bits: rounded, clipped.
pub fn to_i16(x: f32) -> i16 {
    (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

/// Resamples mono audio from `from` Hz to `to` Hz with rubato's FFT resampler
/// (band-limited; the resampler's delay is trimmed, so sample `i` of the output
/// is at time `i / to`). The output has `ceil(len * to / from)` samples.
pub fn resample_f32(input: &[f32], from: u32, to: u32) -> std::result::Result<Vec<f32>, String> {
    use rubato::audioadapter_buffers::direct::InterleavedSlice;
    use rubato::{Fft, FixedSync, Resampler};
    if from == to || input.is_empty() {
        return Ok(input.to_vec());
    }
    let mut r = Fft::<f32>::new(from as usize, to as usize, 1024, 1, FixedSync::Both)
        .map_err(|e| format!("cannot resample {from} Hz to {to} Hz: {e}"))?;
    let buf = InterleavedSlice::new(input, 1, input.len())
        .map_err(|e| format!("cannot resample: {e}"))?;
    let out = r
        .process_all(&buf, input.len(), None)
        .map_err(|e| format!("cannot resample {from} Hz to {to} Hz: {e}"))?;
    Ok(out.take_data())
}

/// [`resample_f32`] for 16-bit samples.
pub fn resample(input: &[i16], from: u32, to: u32) -> std::result::Result<Vec<i16>, String> {
    if from == to {
        return Ok(input.to_vec());
    }
    let f: Vec<f32> = input.iter().map(|&s| to_f32(s)).collect();
    Ok(resample_f32(&f, from, to)?
        .into_iter()
        .map(to_i16)
        .collect())
}

/// Writes 16-bit mono samples as a standard WAV file into `w`.
pub fn write_wav<W: Write + io::Seek>(w: W, rate: u32, samples: &[i16]) -> hound::Result<()> {
    crate::audio::export::write_wav(w, rate, samples)
}

/// The fields a name template may use.
pub const NAME_FIELDS: [&str; 10] = [
    "context",
    "box",
    "folder",
    "number",
    "date",
    "caller",
    "callerid_num",
    "msg_id",
    "duration",
    "format",
];

/// One template field made safe for a file name: path separators, control and
/// shell-awkward characters and blanks become `_` (runs collapsed), leading and
/// trailing `_`/`.` are dropped; an empty result is `unknown`.
pub fn safe_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let bad = c.is_control()
            || c.is_whitespace()
            || matches!(
                c,
                '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|' | '\'' | '`' | '$'
            )
            || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
        if bad {
            if !out.ends_with('_') {
                out.push('_');
            }
        } else {
            out.push(c);
        }
    }
    let t = out.trim_matches(|c| c == '_' || c == '.');
    if t.is_empty() {
        "unknown".to_string()
    } else {
        t.to_string()
    }
}

/// Checks a name template: known `{fields}`, `{{`/`}}` for braces, no `/`.
pub fn check_template(template: &str) -> std::result::Result<(), String> {
    render_template(template, &|_| Some(String::new())).map(|_| ())
}

/// Fills a name template. `field` gives each field's raw value (`None`: unknown
/// field); values are passed through [`safe_component`]. The result never starts
/// with a dot and is at most 240 bytes (the end, e.g. `.wav`, is kept).
pub fn render_template(
    template: &str,
    field: &dyn Fn(&str) -> Option<String>,
) -> std::result::Result<String, String> {
    if template.contains('/') || template.contains('\0') {
        return Err(format!(
            "--name {template:?}: a file name template cannot contain '/' (use -o DIR)"
        ));
    }
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        if tail.starts_with('}') {
            return Err(format!(
                "--name {template:?}: unmatched '}}' (write }}}} for a brace)"
            ));
        }
        let Some(end) = tail.find('}') else {
            return Err(format!("--name {template:?}: unclosed '{{'"));
        };
        let key = &tail[1..end];
        match field(key) {
            Some(v) => out.push_str(&safe_component(&v)),
            None => {
                return Err(format!(
                    "--name {template:?}: unknown field {{{key}}}; fields: {}",
                    NAME_FIELDS
                        .iter()
                        .map(|f| format!("{{{f}}}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                ))
            }
        }
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    let mut name: String = out.chars().filter(|c| !c.is_control()).collect();
    if name.starts_with('.') {
        name.insert(0, '_');
    }
    const MAX: usize = 240;
    if name.len() > MAX {
        let (stem, ext) = match name.rfind('.') {
            Some(i) if name.len() - i <= 10 => (name[..i].to_string(), name[i..].to_string()),
            _ => (name.clone(), String::new()),
        };
        let mut cut = MAX - ext.len();
        while !stem.is_char_boundary(cut) {
            cut -= 1;
        }
        name = format!("{}{ext}", &stem[..cut]);
    }
    if name.is_empty() || name == "." || name == ".." {
        return Err(format!("--name {template:?} gives an empty file name"));
    }
    Ok(name)
}

/// The raw value of a template field for a message.
fn field_value(p: &Picked, zone: Zone, ext: &str, key: &str) -> Option<String> {
    let meta = p.meta.as_ref();
    Some(match key {
        "context" => p.mb.context.to_string(),
        "box" => p.mb.mailbox().to_string(),
        "folder" => p.folder.dir_name().to_string(),
        "number" => p.files.num.to_string(),
        "date" => meta
            .and_then(|m| m.origtime())
            .and_then(|t| zone.format(t, "%Y%m%d-%H%M%S"))
            .unwrap_or_else(|| "nodate".into()),
        "caller" => caller_text(meta).unwrap_or_else(|| "unknown".into()),
        "callerid_num" => meta
            .and_then(|m| m.callerid())
            .and_then(|c| c.number)
            .unwrap_or_else(|| "unknown".into()),
        "msg_id" => meta
            .and_then(|m| m.msg_id())
            .unwrap_or("nomsgid")
            .to_string(),
        "duration" => meta
            .and_then(|m| m.duration())
            .map(|d| d.to_string())
            .unwrap_or_else(|| "0".into()),
        "format" => ext.to_string(),
        _ => return None,
    })
}

/// The caller's name, else number; `None` when unknown.
pub fn caller_text(meta: Option<&Metadata>) -> Option<String> {
    let c = meta?.callerid()?;
    if c.is_unknown() {
        return None;
    }
    c.name
        .filter(|n| !n.trim().is_empty())
        .or(c.number.filter(|n| !n.trim().is_empty()))
}

/// Why a destination could not be written.
/// Writes a WAV file as `convert` does (temporary name in the same
/// directory, synced, renamed); an existing file is replaced only with `force`.
pub fn write_wav_file(dest: &Path, rate: u32, samples: &[i16], force: bool) -> Result<()> {
    // --force replaces a file, never a device or a directory (`-o /dev/null` as root).
    if fs::symlink_metadata(dest).is_ok_and(|m| !m.is_file()) {
        return Err(Error::Usage(format!(
            "{} is not a regular file: give a file name (or - for standard output)",
            dest.display()
        )));
    }
    let mut buf = io::Cursor::new(Vec::with_capacity(44 + 2 * samples.len()));
    write_wav(&mut buf, rate, samples)
        .map_err(|e| Error::Failed(format!("cannot encode WAV: {e}")))?;
    match write_file_atomic(dest, buf.get_ref(), force) {
        Ok(()) => Ok(()),
        Err(WriteError::Exists) => Err(Error::Failed(format!(
            "{} exists: give --force to replace it",
            dest.display()
        ))),
        Err(WriteError::Io(e)) => Err(Error::io("write", dest, e)),
    }
}

enum WriteError {
    Exists,
    Io(io::Error),
}

/// Writes `data` to `dest` through a temporary file in the same directory
/// (synced, then renamed). Without `force` an existing `dest` is never
/// replaced, not even one created meanwhile (rename without replace).
fn write_file_atomic(dest: &Path, data: &[u8], force: bool) -> std::result::Result<(), WriteError> {
    match fs::symlink_metadata(dest) {
        Ok(_) if !force => return Err(WriteError::Exists),
        // --force replaces a file, never a device, FIFO or link (`-o /dev/null`
        // as root would otherwise become a regular file).
        Ok(md) if !md.file_type().is_file() => {
            return Err(WriteError::Io(io::Error::other(format!(
                "{} is a {}, not a regular file: vmtool replaces only regular files (use --stdout to write into a pipe or device)",
                dest.display(),
                crate::fsutil::kind_name(&md)
            ))))
        }
        _ => {}
    }
    let dir = dest.parent().unwrap_or(Path::new("."));
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.vmtool-{}.tmp", std::process::id()));
    let result = (|| -> std::result::Result<(), WriteError> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(WriteError::Io)?;
        (&file).write_all(data).map_err(WriteError::Io)?;
        file.sync_all().map_err(WriteError::Io)?;
        drop(file);
        if force {
            fs::rename(&tmp, dest).map_err(WriteError::Io)
        } else {
            rename_noreplace(&tmp, dest)
        }
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    let _ = crate::fsutil::sync_dir(dir);
    Ok(())
}

/// `renameat2(RENAME_NOREPLACE)`, or link + unlink where the file system lacks it.
fn rename_noreplace(from: &Path, to: &Path) -> std::result::Result<(), WriteError> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::EXIST) => Err(WriteError::Exists),
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => match fs::hard_link(from, to) {
            Ok(()) => {
                let _ = fs::remove_file(from);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(WriteError::Exists),
            Err(e) => Err(WriteError::Io(e)),
        },
        Err(e) => Err(WriteError::Io(e.into())),
    }
}

/// Makes `name` unique among the names this run wrote: `a.wav`, `a-2.wav`, …
fn unique_in_run(name: &str, used: &HashSet<String>) -> String {
    if !used.contains(name) {
        return name.to_string();
    }
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    (2..)
        .map(|k| format!("{stem}-{k}{ext}"))
        .find(|n| !used.contains(n))
        .unwrap_or_else(|| name.to_string())
}

/// A progress bar on standard error when it is a terminal and there is more
/// than one message; hidden otherwise.
fn progress_bar(len: usize, show: bool) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    if !show || len < 2 || !io::IsTerminal::is_terminal(&io::stderr()) {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed_precise} {wide_msg}")
    {
        pb.set_style(style);
    }
    pb
}

/// The output format and the name template: `--to`, else the template's
/// extension, else WAV; the default template's `.wav` follows `--to`.
fn output_format(a: &ConvertArgs) -> Result<(ExportFormat, String)> {
    let named = ExportFormat::from_path(Path::new(&a.name));
    match (a.to, named) {
        (Some(to), _) if a.name == DEFAULT_NAME => Ok((
            to,
            format!(
                "{}.{}",
                DEFAULT_NAME.trim_end_matches(".wav"),
                to.extension()
            ),
        )),
        (Some(to), Some(n)) if to != n => Err(Error::Usage(format!(
            "--to {} but --name {:?} ends in .{}: give one format",
            to.extension(),
            a.name,
            n.extension()
        ))),
        (Some(to), _) => Ok((to, a.name.clone())),
        (None, n) => Ok((n.unwrap_or(ExportFormat::Wav), a.name.clone())),
    }
}

/// What the tags of an exported message say: the caller, the date in the
/// box's zone, a title, and where it came from.
fn tags_of(p: &Picked, zone: Zone) -> Tags {
    let meta = p.meta.as_ref();
    let caller = caller_text(meta);
    let date = meta
        .and_then(|m| m.origtime())
        .and_then(|t| zone.format(t, "%Y-%m-%dT%H:%M:%S"));
    let title = Some(format!(
        "Voicemail for {}@{} from {}",
        p.mb.mailbox(),
        p.mb.context,
        caller.as_deref().unwrap_or("an unknown caller")
    ));
    let comment = Some(match meta.and_then(|m| m.msg_id()) {
        Some(id) => format!("{} (msg_id {id})", p.describe()),
        None => p.describe(),
    });
    Tags {
        caller,
        date,
        title,
        comment,
    }
}

/// Decodes and resamples one message: (rate, samples).
fn render_audio(
    setup: &Setup,
    p: &Picked,
    a: &ConvertArgs,
    rep: &mut Reporter,
) -> Result<(String, u32, Vec<i16>)> {
    let ext = choose_source(p, a.from_format.as_deref())?;
    let d = decode_message(setup, p, &ext)?;
    if !setup.quiet {
        for w in &d.warnings {
            rep.warn(&format!("{}: {w}", d.path.display()));
        }
    }
    let rate = a.rate.unwrap_or(d.rate);
    let samples = resample(&d.samples, d.rate, rate).map_err(Error::Failed)?;
    Ok((ext, rate, samples))
}

pub fn exec(
    setup: &Setup,
    g: &GlobalArgs,
    a: &ConvertArgs,
    out: &mut dyn Write,
    rep: &mut Reporter,
) -> Result<Exit> {
    if let Some(token) = &a.add_format {
        return exec_add_format(setup, g, a, token, out, rep);
    }
    check_template(&a.name).map_err(Error::Usage)?;
    let (format, template) = output_format(a)?;
    if !format.available() {
        return Err(Error::Usage(format!(
            "--to {}: this vmtool was built without mp3 and ogg export (the `export` feature); write wav or flac",
            format.extension()
        )));
    }
    let targets = setup.resolve_all(&a.targets, rep);
    let picked = pick_messages(setup, &targets, BoxScope::AllFolders, true, rep);
    if a.stdout {
        if picked.len() > 1 {
            return Err(Error::Usage(format!(
                "--stdout writes one message, and the targets name {}: name a single message",
                picked.len()
            )));
        }
        let Some(p) = picked.first() else {
            return Ok(rep.finish(0));
        };
        if io::IsTerminal::is_terminal(&io::stdout()) {
            return Err(Error::Usage(format!(
                "--stdout writes binary {} data: redirect it to a file or a pipe",
                format.extension().to_uppercase()
            )));
        }
        let (_, rate, samples) = render_audio(setup, p, a, rep)?;
        let mut buf = Vec::with_capacity(44 + 2 * samples.len());
        let tags = tags_of(p, setup.zone_for(&p.mb, a.utc));
        export::export(format, rate, &samples, &tags, &mut buf)
            .map_err(|e| Error::Failed(format!("{}: {e}", p.describe())))?;
        out.write_all(&buf).map_err(out_err)?;
        out.flush().map_err(out_err)?;
        return Ok(rep.finish(1));
    }
    if picked.is_empty() {
        return Ok(rep.finish(0));
    }
    let dir = &a.out_dir;
    fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
    let pb = progress_bar(picked.len(), !setup.quiet);
    let mut used: HashSet<String> = HashSet::new();
    let mut done = 0usize;
    for p in &picked {
        if INTERRUPTED.load(Ordering::SeqCst) {
            pb.suspend(|| rep.note("interrupted: the files written so far are complete"));
            pb.finish_and_clear();
            return Ok(Exit::Interrupted);
        }
        pb.set_message(p.describe());
        let result = (|| -> Result<PathBuf> {
            let (ext, rate, samples) = pb.suspend(|| render_audio(setup, p, a, rep))?;
            let zone = setup.zone_for(&p.mb, a.utc);
            let name = render_template(&template, &|k| field_value(p, zone, &ext, k))
                .map_err(Error::Usage)?;
            let name = unique_in_run(&name, &used);
            let dest = dir.join(&name);
            let mut data = Vec::with_capacity(44 + 2 * samples.len());
            export::export(format, rate, &samples, &tags_of(p, zone), &mut data)
                .map_err(|e| Error::Failed(format!("{}: {e}", p.describe())))?;
            match write_file_atomic(&dest, &data, a.force) {
                Ok(()) => {
                    used.insert(name);
                    Ok(dest)
                }
                Err(WriteError::Exists) => Err(Error::Failed(format!(
                    "{}: {} exists (--force replaces it)",
                    p.describe(),
                    dest.display()
                ))),
                Err(WriteError::Io(e)) => Err(Error::io("write", dest, e)),
            }
        })();
        match result {
            Ok(dest) => {
                done += 1;
                if !setup.quiet {
                    pb.suspend(|| writeln!(out, "{}", sanitize(&dest.display().to_string())))
                        .map_err(out_err)?;
                }
            }
            Err(e) => pb.suspend(|| rep.error(&e)),
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(rep.finish(done))
}

/// `convert --add-format FMT`: the format each picked message lacks, made
/// from its best audio and put next to it by the store (staged, renamed in
/// under the folder lock, found by identity). A message that has it is left
/// alone; one that is gone meanwhile is skipped with a warning.
fn exec_add_format(
    setup: &Setup,
    g: &GlobalArgs,
    a: &ConvertArgs,
    token: &str,
    out: &mut dyn Write,
    rep: &mut Reporter,
) -> Result<Exit> {
    check_file_storage(setup)?;
    let changer = changer_for(setup, g)?;
    changer.add_formats_supported()?;
    let ext = crate::deposit::ext_of(token);
    let fmt = AudioFormat::from_extension(ext);
    if !(audio::encodable(&fmt) && fmt.sample_rate().is_some()) {
        return Err(Error::Usage(format!(
            "--add-format {token}: vmtool cannot write that format (it writes wav49, gsm, wav, wav16, ulaw, alaw and sln*); nothing was changed"
        )));
    }
    let formats = setup
        .vmconf
        .as_ref()
        .map(|c| c.general.format.clone())
        .unwrap_or_default();
    if !formats.is_empty()
        && !formats.iter().any(|f| crate::deposit::ext_of(f) == ext)
        && !setup.quiet
    {
        rep.warn(&format!(
            "format={} does not list {token}: Asterisk will play the new files but never write {token} itself",
            formats.join("|")
        ));
    }
    let targets = setup.resolve_all(&a.targets, rep);
    let picked = pick_messages(setup, &targets, BoxScope::AllFolders, true, rep);
    let (mut added, mut had) = (0usize, 0usize);
    for p in &picked {
        if INTERRUPTED.load(Ordering::SeqCst) {
            rep.note("interrupted: every message done so far is complete");
            return Ok(Exit::Interrupted);
        }
        if p.files.audio.iter().any(|x| x == ext) {
            had += 1;
            continue;
        }
        match add_one(setup, &changer, p, token, ext, rep) {
            Ok(Some(at)) => {
                added += 1;
                if !setup.quiet {
                    writeln!(out, "added .{ext} to {at}").map_err(out_err)?;
                }
            }
            Ok(None) => had += 1,
            Err(Error::NotFound(m)) => rep.warn(&format!("{m}; skipped")),
            Err(e) => rep.error(&e),
        }
    }
    if had > 0 && !setup.quiet {
        rep.note(&format!(
            "{had} message{} already had .{ext} (left as {})",
            if had == 1 { "" } else { "s" },
            if had == 1 { "it was" } else { "they were" }
        ));
    }
    Ok(rep.finish(added + had))
}

/// One message of `--add-format`: `Some(where)` when added, `None` when
/// someone else added it meanwhile.
fn add_one(
    setup: &Setup,
    changer: &crate::store::change::Changer,
    p: &Picked,
    token: &str,
    ext: &str,
    rep: &mut Reporter,
) -> Result<Option<String>> {
    if !p.files.txt {
        return Err(Error::Failed(format!(
            "{}: audio without .txt (Asterisk does not see it); see `vmtool check`; nothing was added",
            p.describe()
        )));
    }
    let source = choose_source(p, None)?;
    // Identity first, then the bytes: the store adds the files only if both
    // are still what was read, wherever Asterisk renumbered the message.
    let found = changer.locate(&p.mb, &p.folder, p.files.num)?;
    let bytes = changer.audio_bytes(&found, &source)?;
    let sum = crate::fsutil::hex(&sha2::Digest::finalize(
        <sha2::Sha256 as sha2::Digest>::new_with_prefix(&bytes),
    ));
    let where_ = || PathBuf::from(format!("{}.{source}", p.describe()));
    let mut dec = audio::Decoder::new(
        io::Cursor::new(&bytes[..]),
        AudioFormat::from_extension(&source),
    )
    .map_err(|e| Error::Audio {
        path: where_(),
        source: e,
    })?;
    let mut samples = Vec::new();
    while dec.next_block(&mut samples).map_err(|e| Error::Audio {
        path: where_(),
        source: e,
    })? > 0
    {}
    if !setup.quiet {
        for w in dec.warnings() {
            rep.warn(&format!("{}: {w}", where_().display()));
        }
    }
    let pcm = crate::audio::input::Pcm {
        rate: dec.sample_rate(),
        samples,
        channels: 1,
    };
    let rec = crate::deposit::encode_formats(&pcm, &[token.to_string()])
        .map_err(|e| Error::Failed(format!("{}: {e}", p.describe())))?;
    let (at, exts) = changer.add_formats(&found, (&source, &sum), &rec.files)?;
    Ok(exts.iter().any(|x| x == ext).then(|| at.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe() {
        assert_eq!(safe_component("Chloé Durand"), "Chloé_Durand");
        assert_eq!(safe_component("../../etc/passwd"), "etc_passwd");
        assert_eq!(safe_component("a\u{1b}[31m b"), "a_[31m_b");
        assert_eq!(safe_component("  "), "unknown");
        assert_eq!(safe_component("\u{202E}evil"), "evil");
        let f = |k: &str| match k {
            "caller" => Some("../x".to_string()),
            "date" => Some("20261126-103419".to_string()),
            _ => None,
        };
        assert_eq!(
            render_template("{date}-{caller}.wav", &f).unwrap(),
            "20261126-103419-x.wav"
        );
        assert_eq!(
            render_template("{{x}}-{date}", &f).unwrap(),
            "{x}-20261126-103419"
        );
        assert!(render_template("{nope}.wav", &f).is_err());
        assert!(render_template("a/{date}.wav", &f).is_err());
        assert!(render_template("{date", &f).is_err());
        assert_eq!(render_template(".{caller}", &f).unwrap(), "_.x");
        let long = "x".repeat(400);
        let g = |_: &str| Some(long.clone());
        let n = render_template("{caller}.wav", &g).unwrap();
        assert_eq!(n.len(), 240);
        assert!(n.ends_with(".wav"));
    }

    #[test]
    fn run_names_are_unique() {
        let mut used = HashSet::new();
        used.insert("a.wav".to_string());
        assert_eq!(unique_in_run("a.wav", &used), "a-2.wav");
        used.insert("a-2.wav".to_string());
        assert_eq!(unique_in_run("a.wav", &used), "a-3.wav");
        assert_eq!(unique_in_run("b.wav", &used), "b.wav");
    }

    #[test]
    fn resampling_is_band_limited_and_aligned() {
        // A 1 kHz tone at 8 kHz, doubled: the result is the same tone at 16 kHz,
        // not a staircase (a sample repeat would put an image at 7 kHz).
        let n = 8000;
        let tone: Vec<i16> = (0..n)
            .map(|i| {
                (10000.0 * (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / 8000.0).sin()) as i16
            })
            .collect();
        let up = resample(&tone, 8000, 16000).unwrap();
        assert_eq!(up.len(), 2 * n);
        let mut worst = 0f64;
        for (i, &s) in up.iter().enumerate().skip(200).take(2 * n - 400) {
            let want = 10000.0 * (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / 16000.0).sin();
            worst = worst.max((f64::from(s) - want).abs());
        }
        assert!(worst < 40.0, "worst deviation {worst}");
        assert_eq!(resample(&tone, 8000, 44100).unwrap().len(), 44100);
        assert_eq!(resample(&tone, 8000, 8000).unwrap(), tone);
    }

    #[test]
    fn float_round_trip_is_exact() {
        for s in [i16::MIN, -1, 0, 1, 12345, i16::MAX] {
            assert_eq!(to_i16(to_f32(s)), s);
        }
    }
}
