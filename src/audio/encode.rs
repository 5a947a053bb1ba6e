//! Encoders: mono 16-bit samples into the files Asterisk's format modules write, byte
//! for byte, so a file vmtool puts into a spool is one Asterisk would have recorded.
//!
//! | format (`format=` token) | what is written |
//! |---|---|
//! | `wav49` / `WAV` | `format_wav_gsm.c`'s 60-byte header, then MS-GSM 65-byte blocks (libgsm's `WAV49` packing) |
//! | `gsm` | raw 33-byte GSM 06.10 frames, as libgsm (`toast`, sox) encodes them |
//! | `wav`, `wav16` | `format_wav.c`'s 44-byte header, then s16le at 8 or 16 kHz |
//! | `ulaw` (`pcm`, `ul`, `mu`, `ulw`), `alaw` (`al`, `alw`) | raw G.711, sox's (Sun's) quantiser |
//! | `sln`, `slin`, `raw`, `sln12` … `sln192` | raw host-endian 16-bit PCM |
//!
//! Any other format ([`AudioFormat::G722`], `.au`, formats vmtool does not know) is
//! refused with [`EncodeError::Unsupported`] naming it; nothing is written then.
//!
//! GSM codes whole 160-sample frames and wav49 whole pairs of them: a partial last
//! frame, and an odd last frame in wav49, are completed with digital silence, as sox
//! does (Asterisk itself drops a partial frame and an odd last frame when it records;
//! padding keeps all of the audio). The wav49 header still follows Asterisk, not sox:
//! the `fact` count is blocks × 320 and no pad byte follows an odd-sized data chunk.
//! A caller that wants exactly Asterisk's files passes whole frames (`n / 160 * 160`
//! samples) for gsm and whole pairs (`n / 320 * 320`) for wav49: the fixture's `.gsm`
//! and `.WAV` files are then reproduced byte for byte from its `.wav`.
//!
//! The samples must already be at the format's rate: encoders do not resample.
//!
//! ```
//! use vmtool::audio::{encode_to, AudioFormat};
//!
//! // One second at 8 kHz into a `format=wav49` file: 50 frames, 25 blocks.
//! let samples = vec![0i16; 8000];
//! let format = AudioFormat::from_extension("wav49");
//! let mut file = Vec::new();
//! encode_to(&format, &samples, 8000, &mut file)?;
//! assert_eq!(file.len(), 60 + 25 * 65);
//! # Ok::<(), vmtool::audio::EncodeError>(())
//! ```

use std::io::{self, BufWriter, Write};

use super::gsm::{Frame, FrameEncoder, FRAME_LEN, FRAME_SAMPLES, WAV49_BLOCK_LEN};
use super::AudioFormat;

/// Samples in one MS-GSM block (two frames).
const WAV49_BLOCK_SAMPLES: usize = 2 * FRAME_SAMPLES;
/// Header sizes of `format_wav.c` and `format_wav_gsm.c`.
pub const WAV_HEADER_LEN: usize = 44;
pub const WAV49_HEADER_LEN: usize = 60;

/// Why audio could not be encoded. Nothing is written in the first three cases.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// vmtool has no encoder for this format.
    #[error(
        "cannot write {format} files (vmtool writes wav49, gsm, wav, wav16, ulaw, alaw and sln)"
    )]
    Unsupported { format: String },
    /// The samples are not at the rate the format stores.
    #[error(
        "{format} stores {expected} Hz audio, but the samples are {got} Hz (resample them first)"
    )]
    RateMismatch {
        format: String,
        expected: u32,
        got: u32,
    },
    /// The audio does not fit the container's 32-bit size fields.
    #[error("{samples} samples are too long for a {format} file (its sizes are 32-bit)")]
    TooLong { format: String, samples: usize },
    #[error("write error: {0}")]
    Io(#[from] io::Error),
}

/// The encoders vmtool has, by format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Wav49,
    Gsm,
    /// RIFF PCM at this rate (`wav`, `wav16`).
    Wav(u32),
    Ulaw,
    Alaw,
    /// Raw host-endian PCM at this rate.
    Sln(u32),
}

fn codec(format: &AudioFormat) -> Option<Codec> {
    Some(match format {
        AudioFormat::Wav49 => Codec::Wav49,
        AudioFormat::Gsm => Codec::Gsm,
        AudioFormat::Wav => Codec::Wav(8000),
        AudioFormat::Wav16 => Codec::Wav(16_000),
        AudioFormat::Ulaw => Codec::Ulaw,
        AudioFormat::Alaw => Codec::Alaw,
        AudioFormat::Sln { rate } => Codec::Sln(*rate),
        AudioFormat::G722 | AudioFormat::Au | AudioFormat::Other(_) => return None,
    })
}

fn rate_of(c: Codec) -> u32 {
    match c {
        Codec::Wav(r) | Codec::Sln(r) => r,
        Codec::Wav49 | Codec::Gsm | Codec::Ulaw | Codec::Alaw => 8000,
    }
}

/// Whether vmtool can write `format`.
pub fn encodable(format: &AudioFormat) -> bool {
    codec(format).is_some()
}

/// The size in bytes of the file [`encode_to`] writes for `samples` samples, or why it
/// cannot be written (rate not checked).
pub fn encoded_len(format: &AudioFormat, samples: usize) -> Result<u64, EncodeError> {
    let c = codec(format).ok_or_else(|| EncodeError::Unsupported {
        format: format.name(),
    })?;
    let n = samples as u64;
    let len = match c {
        Codec::Gsm => n.div_ceil(FRAME_SAMPLES as u64) * FRAME_LEN as u64,
        Codec::Wav49 => {
            WAV49_HEADER_LEN as u64
                + n.div_ceil(WAV49_BLOCK_SAMPLES as u64) * WAV49_BLOCK_LEN as u64
        }
        Codec::Wav(_) => WAV_HEADER_LEN as u64 + 2 * n,
        Codec::Ulaw | Codec::Alaw => n,
        Codec::Sln(_) => 2 * n,
    };
    let max = u64::from(u32::MAX);
    let fits = match c {
        // The RIFF size field holds the file length minus 8.
        Codec::Wav(_) => len - 8 <= max,
        // wav49's fact sample count (blocks × 320) overflows first, after 149 hours.
        Codec::Wav49 => len - 8 <= max && n.div_ceil(320) * 320 <= max,
        _ => true,
    };
    if !fits {
        return Err(EncodeError::TooLong {
            format: format.name(),
            samples,
        });
    }
    Ok(len)
}

/// Encode `samples` (mono, at `rate` Hz) as a complete file of `format` into `writer`.
/// Returns the bytes written.
///
/// The format, rate and length are checked before the first byte is written. The
/// writer is buffered here; a write error may leave a partial file behind (callers
/// write to a temporary file and rename).
pub fn encode_to<W: Write>(
    format: &AudioFormat,
    samples: &[i16],
    rate: u32,
    writer: W,
) -> Result<u64, EncodeError> {
    let len = encoded_len(format, samples.len())?;
    let c = codec(format).ok_or_else(|| EncodeError::Unsupported {
        format: format.name(),
    })?;
    let expected = rate_of(c);
    if rate != expected {
        return Err(EncodeError::RateMismatch {
            format: format.name(),
            expected,
            got: rate,
        });
    }
    let mut w = BufWriter::with_capacity(64 * 1024, writer);
    match c {
        Codec::Gsm => write_gsm(samples, &mut w)?,
        Codec::Wav49 => {
            let data = (len - WAV49_HEADER_LEN as u64) as u32;
            w.write_all(&wav49_header(data))?;
            write_wav49_blocks(samples, &mut w)?;
        }
        Codec::Wav(rate) => {
            let data = (2 * samples.len()) as u32;
            w.write_all(&wav_header(rate, data))?;
            write_pcm(samples, &mut w, i16::to_le_bytes)?;
        }
        Codec::Sln(_) => write_pcm(samples, &mut w, i16::to_ne_bytes)?,
        Codec::Ulaw => write_bytes(samples, &mut w, super::g711::linear_to_ulaw)?,
        Codec::Alaw => write_bytes(samples, &mut w, super::g711::linear_to_alaw)?,
    }
    w.flush()?;
    Ok(len)
}

/// `format_wav.c`'s header (spec §4.3) for `data` bytes of 16-bit mono PCM at `rate`.
pub fn wav_header(rate: u32, data: u32) -> [u8; WAV_HEADER_LEN] {
    let mut h = [0u8; WAV_HEADER_LEN];
    let mut at = 0;
    let mut put = |b: &[u8]| {
        h[at..at + b.len()].copy_from_slice(b);
        at += b.len();
    };
    put(b"RIFF");
    put(&data.wrapping_add(36).to_le_bytes());
    put(b"WAVEfmt ");
    put(&16u32.to_le_bytes());
    put(&1u16.to_le_bytes()); // PCM
    put(&1u16.to_le_bytes()); // mono
    put(&rate.to_le_bytes());
    put(&(rate * 2).to_le_bytes());
    put(&2u16.to_le_bytes()); // block align
    put(&16u16.to_le_bytes()); // bits per sample
    put(b"data");
    put(&data.to_le_bytes());
    h
}

/// `format_wav_gsm.c`'s header (spec §4.4) for `data` bytes of 65-byte blocks.
pub fn wav49_header(data: u32) -> [u8; WAV49_HEADER_LEN] {
    let blocks = data / WAV49_BLOCK_LEN as u32;
    let mut h = [0u8; WAV49_HEADER_LEN];
    let mut at = 0;
    let mut put = |b: &[u8]| {
        h[at..at + b.len()].copy_from_slice(b);
        at += b.len();
    };
    put(b"RIFF");
    put(&data.wrapping_add(52).to_le_bytes());
    put(b"WAVEfmt ");
    put(&20u32.to_le_bytes());
    put(&49u16.to_le_bytes()); // WAVE_FORMAT_GSM610
    put(&1u16.to_le_bytes()); // mono
    put(&8000u32.to_le_bytes());
    put(&1625u32.to_le_bytes()); // bytes per second
    put(&65u32.to_le_bytes()); // block align, written by Asterisk as 4 bytes
    put(&2u16.to_le_bytes()); // extra format bytes
    put(&320u16.to_le_bytes()); // samples per block
    put(b"fact");
    put(&4u32.to_le_bytes());
    put(&blocks
        .wrapping_mul(WAV49_BLOCK_SAMPLES as u32)
        .to_le_bytes());
    put(b"data");
    put(&data.to_le_bytes());
    h
}

/// At most `N` samples, completed with zeros (digital silence).
fn padded<const N: usize>(chunk: &[i16]) -> [i16; N] {
    let mut buf = [0i16; N];
    buf[..chunk.len()].copy_from_slice(chunk);
    buf
}

fn write_gsm(samples: &[i16], w: &mut impl Write) -> io::Result<()> {
    let mut enc = FrameEncoder::new();
    for chunk in samples.chunks(FRAME_SAMPLES) {
        let frame = enc.encode(&padded::<FRAME_SAMPLES>(chunk));
        w.write_all(&frame.to_standard())?;
    }
    Ok(())
}

fn write_wav49_blocks(samples: &[i16], w: &mut impl Write) -> io::Result<()> {
    let mut enc = FrameEncoder::new();
    for chunk in samples.chunks(WAV49_BLOCK_SAMPLES) {
        let block = padded::<WAV49_BLOCK_SAMPLES>(chunk);
        let (a, b) = block.split_at(FRAME_SAMPLES);
        let first: Frame = enc.encode(a.try_into().expect("160 samples"));
        let second: Frame = enc.encode(b.try_into().expect("160 samples"));
        w.write_all(&Frame::pair_to_wav49(&first, &second))?;
    }
    Ok(())
}

fn write_pcm(
    samples: &[i16],
    w: &mut impl Write,
    bytes: impl Fn(i16) -> [u8; 2],
) -> io::Result<()> {
    let mut buf = [0u8; 8192];
    for chunk in samples.chunks(buf.len() / 2) {
        for (out, &x) in buf.chunks_exact_mut(2).zip(chunk) {
            out.copy_from_slice(&bytes(x));
        }
        w.write_all(&buf[..2 * chunk.len()])?;
    }
    Ok(())
}

fn write_bytes(samples: &[i16], w: &mut impl Write, code: impl Fn(i16) -> u8) -> io::Result<()> {
    let mut buf = [0u8; 8192];
    for chunk in samples.chunks(buf.len()) {
        for (out, &x) in buf.iter_mut().zip(chunk) {
            *out = code(x);
        }
        w.write_all(&buf[..chunk.len()])?;
    }
    Ok(())
}
