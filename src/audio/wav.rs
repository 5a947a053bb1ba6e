//! Probing RIFF/WAVE files: `.wav`/`.wav16` (16-bit PCM, validated with hound) and
//! `.WAV` (wav49, MS-GSM, which hound rejects, so measured from our own chunk walk).
//!
//! Both measure the data length against the file length, because Asterisk writes the
//! size fields only when it closes the file: a recording in progress, or one cut short
//! by a crash, has zeros there while its audio is on disk.

use std::io::{Cursor, Read, Seek};

use super::riff::{classify_trailing, Chunk, ChunkWalker, FourCC, WaveFmt, WaveLayout};
use super::{AudioError, AudioFormat, AudioInfo};

/// Asterisk's `.wav` header is exactly 44 bytes; its seek/tell assume audio there.
const PCM_DATA_OFFSET: u64 = 44;
/// Asterisk's `.WAV` (wav49) header is exactly 60 bytes.
const WAV49_DATA_OFFSET: u64 = 60;
/// One MS-GSM block: two GSM 06.10 frames, 65 bytes, 320 samples.
const MSGSM_BLOCK_LEN: u64 = 65;
const MSGSM_BLOCK_SAMPLES: u64 = 320;
/// Largest `fmt ` chunk handed to hound; real ones are 16 to 40 bytes.
const FMT_MAX: usize = 256;

/// How many bytes of audio the `data` chunk holds, judged against the file length.
///
/// `trusts_size` says whether Asterisk's reader for this format stops at the declared
/// size (`.wav`) or reads to the end of the file (`.WAV`), which changes what a zero
/// size means for playback.
fn measure_data<R: Read + Seek>(
    reader: &mut R,
    layout: &WaveLayout,
    file_len: u64,
    trusts_size: bool,
    warnings: &mut Vec<String>,
) -> Result<u64, AudioError> {
    let declared = u64::from(layout.data.size);
    let avail = file_len.saturating_sub(layout.data_start());

    if declared == 0 {
        let zeros = if layout.riff.size == 0 {
            "header sizes are 0"
        } else {
            "data size is 0"
        };
        if avail == 0 {
            if layout.riff.size == 0 {
                warnings.push(format!(
                    "{zeros} and no audio follows the header: still being recorded, \
                     or left by a crash"
                ));
            } else {
                warnings.push("no audio data".into());
            }
        } else {
            let playback = if trusts_size {
                "; Asterisk would play nothing"
            } else {
                ""
            };
            warnings.push(format!(
                "{zeros} (still being recorded, or left by a crash){playback}; \
                 measured from the file length"
            ));
        }
        return Ok(avail);
    }

    if declared > avail {
        warnings.push(format!(
            "data chunk declares {declared} bytes but only {avail} follow the header: file \
             truncated; measured from the file length"
        ));
        return Ok(avail);
    }

    // Bytes after the data chunk are either further chunks (some tools append LIST
    // metadata) or audio the header does not count (header written before the last
    // writes reached the disk).
    let pad = declared & 1;
    let after = layout.data.body_end().saturating_add(pad).min(file_len);
    let (chunk_bytes, stray) = classify_trailing(reader, after, file_len)?;
    if stray == 0 {
        check_riff_size(layout, file_len, warnings);
        return Ok(declared);
    }
    if chunk_bytes == 0 {
        let playback = if trusts_size {
            format!(" (Asterisk plays only the declared {declared})")
        } else {
            String::new()
        };
        warnings.push(format!(
            "{stray} bytes follow the data chunk that its size does not count{playback}; \
             measured from the file length"
        ));
        return Ok(avail);
    }
    warnings.push(format!(
        "{stray} stray bytes at the end of the file, after {chunk_bytes} bytes of chunks \
         following the data"
    ));
    Ok(declared)
}

/// The RIFF size should be the file length − 8; only worth a word when the data size
/// itself was consistent (otherwise that warning already says the header is stale).
fn check_riff_size(layout: &WaveLayout, file_len: u64, warnings: &mut Vec<String>) {
    let riff_len = u64::from(layout.riff.size).saturating_add(8);
    if layout.riff.size == 0 {
        warnings.push("RIFF size field is 0 (header only partly updated)".into());
    } else if riff_len != file_len {
        warnings.push(format!(
            "RIFF size field says the file is {riff_len} bytes, it is {file_len}"
        ));
    }
}

/// Chunks before `data` whose odd size Asterisk would mis-skip (it ignores pad bytes).
fn odd_chunk_warning(layout: &WaveLayout, warnings: &mut Vec<String>) {
    if let Some(c) = layout.chunks.iter().find(|c| c.size & 1 == 1) {
        warnings.push(format!(
            "\"{}\" chunk has odd size {}: Asterisk skips it without the pad byte and \
             would misread the rest of the header",
            c.id, c.size
        ));
    }
}

/// Run hound over a header rebuilt from the file's own `fmt ` chunk and data size.
///
/// Rebuilding (rather than letting hound read the file) keeps hound away from other
/// chunks: it reads them by reading through them and ignores pad bytes. Returns the
/// spec, hound's duration (when it accepted the data size), and hound's complaint
/// about the data size when only that was wrong.
fn hound_check<R: Read + Seek>(
    reader: &mut R,
    layout: &WaveLayout,
    fmt_chunk: &Chunk,
    file_len: u64,
) -> Result<(hound::WavSpec, Option<u32>, Option<String>), AudioError> {
    let mut walker = ChunkWalker::new(&mut *reader, 0, file_len);
    let body = walker.read_body(fmt_chunk, FMT_MAX)?;
    if body.len() < fmt_chunk.size as usize {
        return Err(AudioError::BadHeader {
            reason: format!(
                "fmt chunk is {} bytes; PCM WAVE fmt chunks have 16, 18 or 40",
                fmt_chunk.size
            ),
        });
    }
    let build = |data_size: u32| {
        let mut h = Vec::with_capacity(body.len() + 28);
        h.extend_from_slice(b"RIFF");
        h.extend_from_slice(&layout.riff.size.to_le_bytes());
        h.extend_from_slice(b"WAVEfmt ");
        h.extend_from_slice(&fmt_chunk.size.to_le_bytes());
        h.extend_from_slice(&body);
        h.extend_from_slice(b"data");
        h.extend_from_slice(&data_size.to_le_bytes());
        h
    };
    match hound::WavReader::new(Cursor::new(build(layout.data.size))) {
        Ok(r) => Ok((r.spec(), Some(r.duration()), None)),
        Err(first) => match hound::WavReader::new(Cursor::new(build(0))) {
            Ok(r) => Ok((r.spec(), None, Some(first.to_string()))),
            Err(_) => Err(AudioError::BadHeader {
                reason: hound_reason(&first, layout),
            }),
        },
    }
}

/// hound's message, plus the format tag when hound just says "not supported".
fn hound_reason(e: &hound::Error, layout: &WaveLayout) -> String {
    match (e, &layout.fmt) {
        (hound::Error::Unsupported, Some((_, f))) => {
            format!("{e} (format tag {}, {})", f.format_tag, f.tag_name())
        }
        _ => e.to_string(),
    }
}

/// `.wav` / `.wav16`: 16-bit PCM mono at 8000 / 16000 Hz, Asterisk's 44-byte layout.
pub fn probe_pcm<R: Read + Seek>(reader: &mut R, info: &mut AudioInfo) -> Result<(), AudioError> {
    let file_len = info.bytes;
    let want_rate = info.format.sample_rate().unwrap_or(8000);
    let layout = WaveLayout::read(reader, file_len)?;
    let Some((fmt_chunk, fmt)) = layout.fmt.clone() else {
        return Err(AudioError::BadHeader {
            reason: format!(
                "no fmt chunk before the data chunk (chunks: {})",
                layout.chunk_list()
            ),
        });
    };
    let (spec, hound_samples, data_complaint) = hound_check(reader, &layout, &fmt_chunk, file_len)?;

    let mut refuse = Vec::new();
    if fmt.format_tag != WaveFmt::PCM {
        refuse.push(format!(
            "format tag {} ({})",
            fmt.format_tag,
            fmt.tag_name()
        ));
    }
    if spec.channels != 1 {
        refuse.push(format!("{} channels", spec.channels));
    }
    if spec.sample_rate != want_rate {
        let hint = match (&info.format, spec.sample_rate) {
            (AudioFormat::Wav, 16_000) => " (16 kHz audio belongs in .wav16)",
            _ => "",
        };
        refuse.push(format!("{} Hz{hint}", spec.sample_rate));
    }
    if spec.bits_per_sample != 16 || fmt.block_align != 2 * spec.channels {
        refuse.push(format!(
            "{} bits per sample, block align {}",
            spec.bits_per_sample, fmt.block_align
        ));
    }
    if !refuse.is_empty() {
        info.warnings.push(format!(
            "{}: Asterisk's {} reader needs 16-bit PCM, mono, {want_rate} Hz and would refuse \
             this file",
            refuse.join(", "),
            info.format.name()
        ));
    }
    odd_chunk_warning(&layout, &mut info.warnings);
    if layout.data_start() != PCM_DATA_OFFSET {
        info.warnings.push(format!(
            "audio starts at byte {}, not 44 (chunks before data: {}): Asterisk's seek and \
             tell assume 44, so rewind and skip land in the wrong place",
            layout.data_start(),
            layout.chunk_list()
        ));
    }

    let data_bytes = measure_data(reader, &layout, file_len, true, &mut info.warnings)?;
    let block = u64::from(fmt.block_align.max(1));
    let partial = data_bytes % block;
    if let Some(complaint) = data_complaint {
        info.warnings
            .push(format!("data size {}: {complaint}", layout.data.size));
    }
    if partial != 0 {
        info.warnings
            .push(format!("truncated last sample: {partial} bytes"));
    }
    info.sample_rate = Some(spec.sample_rate);
    info.samples = Some(match hound_samples {
        // hound's count is only valid when the declared size is the measured one.
        Some(n) if data_bytes == u64::from(layout.data.size) => u64::from(n),
        _ => data_bytes / block,
    });
    Ok(())
}

/// `.WAV` (wav49): MS-GSM in Asterisk's exact 60-byte layout.
pub fn probe_wav49<R: Read + Seek>(reader: &mut R, info: &mut AudioInfo) -> Result<(), AudioError> {
    let file_len = info.bytes;
    let layout = WaveLayout::read(reader, file_len)?;
    let Some((fmt_chunk, fmt)) = layout.fmt.clone() else {
        return Err(AudioError::BadHeader {
            reason: format!(
                "no fmt chunk before the data chunk (chunks: {})",
                layout.chunk_list()
            ),
        });
    };

    if fmt.format_tag != WaveFmt::GSM610 {
        return probe_wav49_not_gsm(reader, info, &layout, &fmt);
    }

    // What Asterisk's check_header() insists on, field by field.
    let mut refuse = Vec::new();
    if fmt_chunk.size != 20 {
        refuse.push(format!("fmt chunk is {} bytes, not 20", fmt_chunk.size));
    }
    if fmt.channels != 1 {
        refuse.push(format!("{} channels", fmt.channels));
    }
    if fmt.sample_rate != 8000 {
        refuse.push(format!("{} Hz", fmt.sample_rate));
    }
    let ids: Vec<FourCC> = layout.chunks.iter().map(|c| c.id).collect();
    let fact_ok = matches!(layout.fact, Some((c, Some(_))) if c.size == 4);
    if ids != [FourCC::FMT, FourCC::FACT] || !fact_ok || layout.data_start() != WAV49_DATA_OFFSET {
        refuse.push(format!(
            "chunks before data are [{}], not exactly fmt and a 4-byte fact",
            layout.chunk_list()
        ));
    }
    if !refuse.is_empty() {
        info.warnings.push(format!(
            "{}: Asterisk's strict wav49 reader would refuse this file",
            refuse.join(", ")
        ));
    }
    if fmt.block_align != 65 || fmt.samples_per_block.is_some_and(|n| n != 320) {
        info.warnings.push(format!(
            "fmt says block align {} and {} samples per block; MS-GSM is 65 and 320 \
             (measured as 65/320)",
            fmt.block_align,
            fmt.samples_per_block
                .map_or_else(|| "no".to_string(), |n| n.to_string())
        ));
    }
    // Asterisk's wav49 reader ignores the data size and plays 65-byte blocks to EOF.
    let data_bytes = measure_data(reader, &layout, file_len, false, &mut info.warnings)?;
    let blocks = data_bytes / MSGSM_BLOCK_LEN;
    let rest = data_bytes % MSGSM_BLOCK_LEN;
    // Older Asterisk pads an odd-length data chunk with one zero byte.
    let is_pad = rest == 1 && (blocks * MSGSM_BLOCK_LEN) % 2 == 1;
    if rest != 0 && !is_pad {
        info.warnings
            .push(format!("truncated last block: {rest} bytes"));
    }
    let samples = blocks * MSGSM_BLOCK_SAMPLES;

    // fact is checked against the header's own data size: a truncated or still
    // recording file already has its warning above.
    let declared = u64::from(layout.data.size);
    if let Some((_, Some(count))) = layout.fact {
        let count = u64::from(count);
        let from_header = declared / MSGSM_BLOCK_LEN * MSGSM_BLOCK_SAMPLES;
        // Asterisk writes blocks × 320; encoders such as sox write the true count,
        // which lies within the last block.
        let within_last_block = count <= from_header && count + MSGSM_BLOCK_SAMPLES > from_header;
        if declared != 0 && count != from_header && !within_last_block {
            info.warnings.push(format!(
                "fact chunk counts {count} samples, the data size implies {from_header} \
                 ({} blocks × 320)",
                declared / MSGSM_BLOCK_LEN
            ));
        }
    }
    info.sample_rate = Some(8000);
    info.samples = Some(samples);
    Ok(())
}

/// A `.WAV` that is not GSM: commonly a PCM `.wav` renamed. Measure it for what it is
/// (PCM and G.711 have one sample per block-align bytes) and say Asterisk refuses it.
fn probe_wav49_not_gsm<R: Read + Seek>(
    reader: &mut R,
    info: &mut AudioInfo,
    layout: &WaveLayout,
    fmt: &WaveFmt,
) -> Result<(), AudioError> {
    let measurable = matches!(
        fmt.format_tag,
        WaveFmt::PCM | WaveFmt::IEEE_FLOAT | WaveFmt::ALAW | WaveFmt::MULAW
    );
    if !measurable || fmt.block_align == 0 || fmt.channels == 0 || fmt.sample_rate == 0 {
        return Err(AudioError::BadHeader {
            reason: format!(
                "format tag {} ({}) is not GSM 6.10 (49)",
                fmt.format_tag,
                fmt.tag_name()
            ),
        });
    }
    info.warnings.push(format!(
        "not GSM: {} audio, {} Hz, {} channel(s) in a .WAV (wav49) file; Asterisk's wav49 \
         reader would refuse it",
        fmt.tag_name(),
        fmt.sample_rate,
        fmt.channels
    ));
    let data_bytes = measure_data(reader, layout, info.bytes, false, &mut info.warnings)?;
    let block = u64::from(fmt.block_align);
    if data_bytes % block != 0 {
        info.warnings.push(format!(
            "truncated last sample: {} bytes",
            data_bytes % block
        ));
    }
    info.sample_rate = Some(fmt.sample_rate);
    info.samples = Some(data_bytes / block);
    Ok(())
}
