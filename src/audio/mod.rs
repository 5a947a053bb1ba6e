//! Audio files of voicemail messages: which format an extension means, how long a file
//! really is, and its samples.
//!
//! This module owns everything that looks inside `msgNNNN.<ext>` audio files
//! (spec §4): the extension → format mapping Asterisk uses; *probing*: measuring
//! the duration from the container (header fields, data length) without decoding,
//! while reporting what Asterisk's own readers would trip over (zero sizes left by an
//! unfinished recording, truncated blocks, layouts the strict wav49 reader refuses);
//! and *decoding* ([`Decoder`]) every format vmtool plays or converts: PCM `.wav`,
//! `.wav16` and `.sln*`, G.711 µ-law and A-law, and GSM 06.10 both raw (`.gsm`) and
//! in MS-GSM RIFF files (`.WAV`), with a pure-Rust decoder bit-exact with libgsm
//! ([`gsm`]). Probing and decoding share [`riff`]'s chunk walker.
//!
//! Probing reads headers only (a few hundred bytes at most, whatever the file claims);
//! decoding streams in constant memory. Neither panics on malformed input. Errors carry
//! no path: callers add it.

use std::io::{self, BufReader, Read, Seek};
use std::path::Path;

mod decode;
pub mod encode;
pub mod export;
pub mod g711;
pub mod gsm;
pub mod input;
mod raw;
pub mod riff;
mod wav;

pub use decode::{decode_all, open, preferred_format, Decoder};
pub use encode::{encodable, encode_to, EncodeError};

#[cfg(test)]
mod decode_tests;
#[cfg(test)]
mod encode_tests;
#[cfg(test)]
mod tests;

/// An audio format as Asterisk's format modules know it, chosen by file extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioFormat {
    /// `.wav`: RIFF, 16-bit signed PCM, mono, 8 kHz (`format_wav` "wav").
    Wav,
    /// `.wav16`: same layout at 16 kHz.
    Wav16,
    /// `.WAV` / `.wav49`: RIFF with MS-GSM (format tag 49) 65-byte blocks.
    Wav49,
    /// `.gsm`: raw GSM 06.10, 33-byte frames.
    Gsm,
    /// Raw G.711 µ-law (`.ulaw`, `.ul`, `.mu`, `.ulw`, `.pcm`).
    Ulaw,
    /// Raw G.711 A-law (`.alaw`, `.al`, `.alw`).
    Alaw,
    /// Raw signed 16-bit host-endian PCM at `rate` Hz (`.sln`, `.sln16`, …).
    Sln { rate: u32 },
    /// Raw G.722 (8000 bytes/s, 16 kHz audio).
    G722,
    /// Sun/NeXT `.au`.
    Au,
    /// Any other extension (the extension, as found).
    Other(String),
}

/// `sln`/`slin` rate suffixes Asterisk's `format_sln` registers, in kHz → Hz.
const SLN_RATES: [(&str, u32); 8] = [
    ("12", 12_000),
    ("16", 16_000),
    ("24", 24_000),
    ("32", 32_000),
    ("44", 44_100),
    ("48", 48_000),
    ("96", 96_000),
    ("192", 192_000),
];

impl AudioFormat {
    /// The format Asterisk associates with a file extension (without the dot).
    ///
    /// Case-sensitive, as Asterisk is: `WAV` is wav49 (MS-GSM), `wav` is PCM.
    pub fn from_extension(ext: &str) -> AudioFormat {
        match ext {
            "WAV" | "wav49" => AudioFormat::Wav49,
            "wav" => AudioFormat::Wav,
            "wav16" => AudioFormat::Wav16,
            "gsm" => AudioFormat::Gsm,
            "ulaw" | "ul" | "mu" | "ulw" | "pcm" => AudioFormat::Ulaw,
            "alaw" | "al" | "alw" => AudioFormat::Alaw,
            "sln" | "slin" | "raw" => AudioFormat::Sln { rate: 8000 },
            "g722" => AudioFormat::G722,
            "au" => AudioFormat::Au,
            _ => {
                let suffix = ext.strip_prefix("slin").or_else(|| ext.strip_prefix("sln"));
                suffix
                    .and_then(|s| SLN_RATES.iter().find(|(k, _)| *k == s))
                    .map(|&(_, rate)| AudioFormat::Sln { rate })
                    .unwrap_or_else(|| AudioFormat::Other(ext.to_string()))
            }
        }
    }

    /// Asterisk's name for the format (`wav49`, `slin16`, …); the extension for
    /// unknown formats.
    pub fn name(&self) -> String {
        match self {
            AudioFormat::Wav => "wav".into(),
            AudioFormat::Wav16 => "wav16".into(),
            AudioFormat::Wav49 => "wav49".into(),
            AudioFormat::Gsm => "gsm".into(),
            AudioFormat::Ulaw => "ulaw".into(),
            AudioFormat::Alaw => "alaw".into(),
            AudioFormat::Sln { rate: 8000 } => "slin".into(),
            AudioFormat::Sln { rate } => match SLN_RATES.iter().find(|(_, r)| r == rate) {
                Some((k, _)) => format!("slin{k}"),
                None => format!("slin@{rate}"),
            },
            AudioFormat::G722 => "g722".into(),
            AudioFormat::Au => "au".into(),
            AudioFormat::Other(ext) => ext.clone(),
        }
    }

    /// The sample rate Asterisk reads and writes this format at.
    pub fn sample_rate(&self) -> Option<u32> {
        match self {
            AudioFormat::Wav
            | AudioFormat::Wav49
            | AudioFormat::Gsm
            | AudioFormat::Ulaw
            | AudioFormat::Alaw
            | AudioFormat::Au => Some(8000),
            AudioFormat::Wav16 | AudioFormat::G722 => Some(16_000),
            AudioFormat::Sln { rate } => Some(*rate),
            AudioFormat::Other(_) => None,
        }
    }

    /// Whether vmtool's decoders handle this format.
    pub fn decodable(&self) -> bool {
        matches!(
            self,
            AudioFormat::Wav
                | AudioFormat::Wav16
                | AudioFormat::Wav49
                | AudioFormat::Gsm
                | AudioFormat::Ulaw
                | AudioFormat::Alaw
                | AudioFormat::Sln { .. }
        )
    }
}

/// What probing found out about one audio file.
#[derive(Debug, Clone)]
pub struct AudioInfo {
    /// The format the extension says (the file may disagree: see `warnings`).
    pub format: AudioFormat,
    /// File size in bytes.
    pub bytes: u64,
    /// Sample rate of the audio as stored (from the header when there is one).
    pub sample_rate: Option<u32>,
    /// Samples per channel measured from the data length.
    pub samples: Option<u64>,
    /// Problems found, one sentence each, most important first.
    pub warnings: Vec<String>,
}

impl AudioInfo {
    /// Duration in seconds, when both the sample count and rate are known.
    pub fn duration_secs(&self) -> Option<f64> {
        match (self.samples, self.sample_rate) {
            (Some(n), Some(rate)) if rate > 0 => Some(n as f64 / f64::from(rate)),
            _ => None,
        }
    }

    fn new(format: AudioFormat, bytes: u64) -> AudioInfo {
        AudioInfo {
            sample_rate: format.sample_rate(),
            format,
            bytes,
            samples: None,
            warnings: Vec::new(),
        }
    }
}

/// What was asked of a file whose format vmtool does not handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioOp {
    Measure,
    Decode,
}

impl std::fmt::Display for AudioOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AudioOp::Measure => "measure",
            AudioOp::Decode => "decode",
        })
    }
}

/// Why an audio file could not be measured or decoded.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("read error: {0}")]
    Io(#[from] io::Error),
    /// The header is malformed or not what the extension promises.
    #[error("bad header: {reason}")]
    BadHeader { reason: String },
    /// The audio data itself cannot be decoded from `offset` (file offset) on.
    #[error("bad audio data at byte {offset}: {reason}")]
    BadData { offset: u64, reason: String },
    /// vmtool does not know how to measure or decode this format.
    #[error("cannot {op} {format} files")]
    Unsupported { format: String, op: AudioOp },
}

/// Probe the file at `path`, whose extension (without the dot, case as on disk) is
/// `ext`.
pub fn probe_file(path: &Path, ext: &str) -> Result<AudioInfo, AudioError> {
    let format = AudioFormat::from_extension(ext);
    if let AudioFormat::Other(ext) = format {
        return Err(AudioError::Unsupported {
            format: ext,
            op: AudioOp::Measure,
        });
    }
    let file = crate::fsutil::open_bounded(path, crate::fsutil::MAX_AUDIO_BYTES)?;
    let len = file.len();
    probe(BufReader::new(file), format, len)
}

/// Probe audio of the given `format` read from `reader`, a file of `file_len` bytes.
pub fn probe<R: Read + Seek>(
    mut reader: R,
    format: AudioFormat,
    file_len: u64,
) -> Result<AudioInfo, AudioError> {
    if let AudioFormat::Other(ext) = &format {
        return Err(AudioError::Unsupported {
            format: ext.clone(),
            op: AudioOp::Measure,
        });
    }
    let mut info = AudioInfo::new(format, file_len);
    if file_len == 0 {
        // Asterisk writes through a 32 KiB stdio buffer, so a file being recorded (or
        // left by a crash early on) is often still empty on disk.
        info.samples = Some(0);
        info.warnings
            .push("empty file (0 bytes): still being recorded, or left by a crash".into());
        return Ok(info);
    }
    match info.format {
        AudioFormat::Wav | AudioFormat::Wav16 => wav::probe_pcm(&mut reader, &mut info)?,
        AudioFormat::Wav49 => wav::probe_wav49(&mut reader, &mut info)?,
        AudioFormat::Gsm => raw::probe_gsm(&mut reader, &mut info)?,
        AudioFormat::Au => raw::probe_au(&mut reader, &mut info)?,
        AudioFormat::Ulaw | AudioFormat::Alaw | AudioFormat::Sln { .. } | AudioFormat::G722 => {
            raw::probe_headerless(&mut info)
        }
        AudioFormat::Other(_) => {}
    }
    Ok(info)
}
