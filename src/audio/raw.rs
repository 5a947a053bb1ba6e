//! Probing the formats without a RIFF container: raw GSM frames, raw G.711 / G.722 /
//! signed linear, and Sun `.au`.

use std::io::{Read, Seek, SeekFrom};

use super::riff::read_up_to;
use super::{AudioError, AudioFormat, AudioInfo, AudioOp};

/// One GSM 06.10 frame: 33 bytes, 160 samples (20 ms at 8 kHz).
pub const GSM_FRAME_LEN: u64 = 33;
pub const GSM_FRAME_SAMPLES: u64 = 160;

/// Raw GSM: whole frames count; a short last frame and a missing 0xD signature nibble
/// (the first four bits of every standard frame) are reported.
pub fn probe_gsm<R: Read + Seek>(reader: &mut R, info: &mut AudioInfo) -> Result<(), AudioError> {
    let len = info.bytes;
    let frames = len / GSM_FRAME_LEN;
    let rest = len % GSM_FRAME_LEN;
    info.samples = Some(frames * GSM_FRAME_SAMPLES);
    if frames == 0 {
        info.warnings.push(format!(
            "no complete GSM frame: {len} bytes, a frame is {GSM_FRAME_LEN}"
        ));
    }
    if rest != 0 {
        info.warnings
            .push(format!("truncated last frame: {rest} bytes"));
    }
    // Checking the first and the last frame catches both a wrong format (e.g. MS-GSM
    // or PCM saved as .gsm) and garbage appended at the end, for two 1-byte reads.
    let checked: &[u64] = match frames {
        0 => &[],
        1 => &[0],
        _ => &[0, frames - 1],
    };
    for &frame in checked {
        reader.seek(SeekFrom::Start(frame * GSM_FRAME_LEN))?;
        let mut b = [0u8; 1];
        if read_up_to(reader, &mut b)? == 1 && b[0] >> 4 != 0xD {
            let which = if frame == 0 { "first" } else { "last" };
            info.warnings.push(format!(
                "{which} frame lacks the GSM 06.10 signature (byte 0x{:02x}, expected 0xDn): \
                 not raw GSM?",
                b[0]
            ));
        }
    }
    Ok(())
}

/// Headerless sample streams: the length is all there is.
pub fn probe_headerless(info: &mut AudioInfo) {
    let len = info.bytes;
    match info.format {
        AudioFormat::Ulaw | AudioFormat::Alaw => info.samples = Some(len),
        // G.722 packs two 16 kHz samples per byte (Asterisk's pcm_read: res * 2).
        AudioFormat::G722 => info.samples = Some(len.saturating_mul(2)),
        AudioFormat::Sln { .. } => {
            info.samples = Some(len / 2);
            if !len.is_multiple_of(2) {
                info.warnings
                    .push("odd length: the last byte is half a 16-bit sample".into());
            }
        }
        _ => {}
    }
}

const AU_MAGIC: &[u8; 4] = b".snd";
const AU_HEADER_LEN: u64 = 24;
/// The data-size value meaning "unknown" in the .au format.
const AU_SIZE_UNKNOWN: u32 = 0xffff_ffff;

/// Bytes per sample of the .au encodings we can measure, with a name for messages.
fn au_encoding(encoding: u32) -> Option<(u64, &'static str)> {
    Some(match encoding {
        1 => (1, "8-bit µ-law"),
        2 => (1, "8-bit linear PCM"),
        3 => (2, "16-bit linear PCM"),
        4 => (3, "24-bit linear PCM"),
        5 => (4, "32-bit linear PCM"),
        6 => (4, "32-bit float"),
        7 => (8, "64-bit float"),
        27 => (1, "8-bit A-law"),
        _ => return None,
    })
}

/// Sun `.au`: 24-byte big-endian header. Asterisk (`format_pcm.c`) accepts only
/// 8-bit µ-law, 8000 Hz, mono, and measures the data from the file length, ignoring
/// the data-size field (which it writes as 0 and fixes only on truncation).
pub fn probe_au<R: Read + Seek>(reader: &mut R, info: &mut AudioInfo) -> Result<(), AudioError> {
    let len = info.bytes;
    reader.seek(SeekFrom::Start(0))?;
    let mut h = [0u8; 24];
    let got = read_up_to(reader, &mut h)?;
    if got >= 4 && &h[0..4] != AU_MAGIC {
        return Err(AudioError::BadHeader {
            reason: format!(
                "not a Sun .au file: starts with {:02x} {:02x} {:02x} {:02x} instead of \".snd\"",
                h[0], h[1], h[2], h[3]
            ),
        });
    }
    if got < h.len() {
        return Err(AudioError::BadHeader {
            reason: format!("file is only {len} bytes, shorter than the 24-byte .au header"),
        });
    }
    let be = |at: usize| u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
    let data_offset = be(4);
    let data_size = be(8);
    let encoding = be(12);
    let rate = be(16);
    let channels = be(20);

    if u64::from(data_offset) < AU_HEADER_LEN {
        return Err(AudioError::BadHeader {
            reason: format!("data offset {data_offset} is inside the 24-byte header"),
        });
    }
    if u64::from(data_offset) > len {
        return Err(AudioError::BadHeader {
            reason: format!(
                "header says audio starts at byte {data_offset}, but the file has {len} bytes"
            ),
        });
    }
    let Some((sample_bytes, enc_name)) = au_encoding(encoding) else {
        return Err(AudioError::Unsupported {
            format: format!("au (encoding {encoding})"),
            op: AudioOp::Measure,
        });
    };
    if channels == 0 {
        return Err(AudioError::BadHeader {
            reason: "header says 0 channels".into(),
        });
    }
    if rate == 0 {
        return Err(AudioError::BadHeader {
            reason: "header says a sample rate of 0 Hz".into(),
        });
    }

    let mut refuse = Vec::new();
    if encoding != 1 {
        refuse.push(format!("encoding is {enc_name} ({encoding})"));
    }
    if rate != 8000 {
        refuse.push(format!("rate is {rate} Hz"));
    }
    if channels != 1 {
        refuse.push(format!("{channels} channels"));
    }
    if !refuse.is_empty() {
        info.warnings.push(format!(
            "{}: Asterisk reads only 8-bit µ-law, 8000 Hz, mono .au files and would refuse it",
            refuse.join(", ")
        ));
    }

    let data_len = len - u64::from(data_offset);
    if data_size != 0 && data_size != AU_SIZE_UNKNOWN && u64::from(data_size) != data_len {
        info.warnings.push(format!(
            "header data size {data_size} disagrees with the {data_len} bytes after the \
             header; measured from the file length, as Asterisk does"
        ));
    }
    if u64::from(data_offset) != AU_HEADER_LEN {
        info.warnings.push(format!(
            "audio starts at byte {data_offset}, not 24: Asterisk's seek and tell assume 24"
        ));
    }
    let frame = sample_bytes * u64::from(channels);
    info.sample_rate = Some(rate);
    info.samples = Some(data_len / frame);
    let partial = data_len % frame;
    if partial != 0 {
        info.warnings
            .push(format!("truncated last sample: {partial} bytes"));
    }
    Ok(())
}
