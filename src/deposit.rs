//! A new message made from an audio file, the way Asterisk's
//! `msg_create_from_file()` makes one (spec §3.3, §7.2): one file per token
//! of `format=`, a `.txt` with Asterisk's keys in Asterisk's order, `duration`
//! from the first format's samples. Putting it into a box is the store's
//! import (`store::change::Changer::deposit`).
//!
//! Rerunning a deposit (after a crash, or a broadcast that stopped half-way)
//! never makes a second copy: a box that already holds, in any folder, a
//! message with the same `callerid` whose first-format audio has the same
//! SHA-256 is skipped (`Changer::find_recording`). The encoders are
//! deterministic, so the same input file gives the same bytes.

use crate::audio::input::{resample, Pcm};
use crate::audio::{encode, AudioFormat};
use crate::callerid::CallerId;
use crate::metadata::NewMessage;
use crate::spool::MailboxId;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// The encoded audio of one deposit, shared by every box of a broadcast.
#[derive(Debug, Clone)]
pub struct Recording {
    /// `(extension, file bytes)` in `format=` order.
    pub files: Vec<(String, Vec<u8>)>,
    /// SHA-256 (hex) of the first format's file: the identity of a deposit.
    pub first_sha256: String,
    /// Seconds, as Asterisk counts them: first format's samples / 8000.
    pub duration: u64,
}

impl Recording {
    /// Extension of the first format (the table's recording).
    pub fn first_ext(&self) -> &str {
        self.files.first().map_or("wav", |(e, _)| e.as_str())
    }
}

/// The file extension Asterisk gives a `format=` token (spec §4.1).
pub fn ext_of(token: &str) -> &str {
    if token == "wav49" {
        "WAV"
    } else {
        token
    }
}

/// Encodes `pcm` in every format of `formats` (`format=` tokens). Audio at
/// the format's rate goes to the encoder sample for sample; any other rate is
/// resampled. A format vmtool cannot write is refused by name.
pub fn encode_formats(pcm: &Pcm, formats: &[String]) -> Result<Recording, String> {
    if formats.is_empty() {
        return Err("voicemail.conf's format= lists no format".into());
    }
    let mut by_rate: HashMap<u32, Vec<i16>> = HashMap::new();
    let mut files = Vec::new();
    let mut duration = 0;
    for (i, token) in formats.iter().enumerate() {
        let ext = ext_of(token);
        let fmt = AudioFormat::from_extension(ext);
        let rate = match fmt.sample_rate() {
            Some(r) if encode::encodable(&fmt) => r,
            _ => {
                return Err(format!(
                    "format={} lists {token}, which vmtool cannot write (it writes wav49, gsm, wav, wav16, ulaw, alaw and sln*); remove it from format= or deposit with Asterisk",
                    formats.join("|")
                ))
            }
        };
        if let std::collections::hash_map::Entry::Vacant(e) = by_rate.entry(rate) {
            e.insert(resample(pcm, rate)?);
        }
        let samples = &by_rate[&rate];
        if i == 0 {
            // __ast_play_and_record(): samples of the first format / 8000,
            // the 8000 hard-coded (a 16 kHz first format doubles it).
            duration = samples.len() as u64 / 8000;
        }
        let mut bytes = Vec::new();
        encode::encode_to(&fmt, samples, rate, &mut bytes).map_err(|e| e.to_string())?;
        files.push((ext.to_string(), bytes));
    }
    let first_sha256 = crate::fsutil::hex(&Sha256::digest(&files[0].1));
    Ok(Recording {
        files,
        first_sha256,
        duration,
    })
}

/// A `msg_id` of Asterisk's shape (`<epoch>-<8 hex>`, spec §3.6) that cannot
/// collide with Asterisk's own counter, which starts at 0 at every start: a
/// random 32-bit value with its top bit set.
pub fn new_msg_id(origtime: i64) -> String {
    let mut buf = [0u8; 4];
    let random = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf))
        .map(|()| u32::from_le_bytes(buf))
        .unwrap_or_else(|_| {
            // No /dev/urandom: the clock's nanoseconds and the pid, hashed.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let h = Sha256::digest(format!("{nanos}-{}", std::process::id()));
            u32::from_le_bytes([h[0], h[1], h[2], h[3]])
        });
    format!("{origtime}-{:08x}", random | 0x8000_0000)
}

/// What the `.txt` of a deposit says besides its box.
#[derive(Debug, Clone)]
pub struct Header {
    pub callerid: CallerId,
    pub origtime: i64,
    pub urgent: bool,
    pub duration: u64,
}

/// The `.txt` bytes `msg_create_from_file()` writes for `mb` (spec §3.3):
/// `rdnis=Unknown`, `callerchan=Unknown`, empty `category`; `flag=Urgent`
/// when asked, as `VoiceMail(…,U)` writes it.
pub fn message_txt(mb: &MailboxId, h: &Header, msg_id: &str) -> Vec<u8> {
    NewMessage {
        origmailbox: mb.mailbox().to_string(),
        context: mb.context.to_string(),
        exten: mb.mailbox().to_string(),
        rdnis: "Unknown".into(),
        priority: 1,
        callerchan: "Unknown".into(),
        callerid: h.callerid.clone(),
        origtime: h.origtime,
        category: String::new(),
        msg_id: msg_id.to_string(),
        flag: if h.urgent {
            "Urgent".into()
        } else {
            String::new()
        },
        duration: h.duration,
    }
    .to_metadata()
    .to_asterisk_bytes()
}

/// The files of `formats` (`format=` tokens) that a message's `files`
/// (`(extension, path)`, its `.txt` among them) lack, made from the best of
/// its audio: `(extension, bytes)`, in `format=` order. Empty when none is
/// missing. For a restore into a spool whose `format=` differs.
pub fn missing_formats(
    files: &[(String, std::path::PathBuf)],
    formats: &[String],
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let missing: Vec<String> = formats
        .iter()
        .filter(|t| !files.iter().any(|(x, _)| x == ext_of(t)))
        .cloned()
        .collect();
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let exts: Vec<String> = files
        .iter()
        .map(|(x, _)| x.clone())
        .filter(|x| x != "txt")
        .collect();
    let Some(best) = crate::audio::preferred_format(&exts) else {
        return Err(format!(
            "no audio vmtool can decode to make .{} from (it has {})",
            missing
                .iter()
                .map(|t| ext_of(t))
                .collect::<Vec<_>>()
                .join(", ."),
            if exts.is_empty() {
                "no audio".to_string()
            } else {
                format!(".{}", exts.join(", ."))
            }
        ));
    };
    let path = &files.iter().find(|(x, _)| *x == best).expect("listed").1;
    let (rate, samples) =
        crate::audio::decode_all(path, &best).map_err(|e| format!("{}: {e}", path.display()))?;
    let pcm = Pcm {
        rate,
        samples,
        channels: 1,
    };
    Ok(encode_formats(&pcm, &missing)?.files)
}
