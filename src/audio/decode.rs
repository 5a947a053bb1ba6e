//! Streaming decoders: one message file in, 16-bit mono samples out, in constant
//! memory, from any `io::Read` (a file, a pipe, an archive member).
//!
//! RIFF files (`.wav`, `.wav16`, `.WAV`) are parsed by [`WaveLayout`] through a reader
//! that "seeks" forward by reading, so probing and decoding share one chunk walker.
//! The decoder goes by the `fmt ` chunk, not by the extension: a PCM file named `.WAV`
//! decodes as PCM, with a warning that Asterisk would refuse it.
//!
//! What the decoders do with damaged files, and why:
//! * a data size of 0 (Asterisk fixes the sizes only when it closes the file) means
//!   "decode to the end of the file", with a warning;
//! * a data size larger than the file decodes what is there and warns it is truncated;
//! * a data size smaller than the file is honoured (what follows may be other chunks);
//! * an incomplete last sample, frame or block is dropped with a warning naming the
//!   byte count (libgsm cannot decode part of a frame), except that a truncated
//!   `.WAV` block whose first frame is complete has that frame decoded;
//! * a `.gsm` frame without the 0xD signature ends decoding with
//!   [`AudioError::BadData`] after the good frames before it: libgsm, and so sox and
//!   Asterisk, refuse such a frame too.
//!
//! Nothing is allocated from a size read from a file: buffers have fixed sizes, and
//! sizes from headers are only compared against.

use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use super::g711::{ALAW, ULAW};
use super::gsm::{Frame, FrameDecoder, FRAME_LEN, FRAME_SAMPLES, WAV49_BLOCK_LEN};
use super::riff::{read_up_to, WaveFmt, WaveLayout, RIFF_HEADER_LEN};
use super::{AudioError, AudioFormat, AudioOp};

/// Frames or blocks decoded per [`Decoder::next_block`] call: enough to amortise the
/// call, few enough for a player's latency (3840 samples, 0.48 s).
const GSM_FRAMES_PER_READ: usize = 24;
const WAV49_BLOCKS_PER_READ: usize = 12;
/// Samples per call for PCM and G.711.
const PCM_SAMPLES_PER_READ: usize = 4096;
/// Samples in one MS-GSM block.
const WAV49_BLOCK_SAMPLES: u64 = 2 * FRAME_SAMPLES as u64;

const EMPTY_FILE: &str = "empty file (0 bytes): still being recorded, or left by a crash";

/// The coding of the audio bytes, known once the header (if any) is read.
enum Codec {
    /// Signed 16-bit little-endian.
    Pcm16,
    Ulaw,
    Alaw,
    /// Standard 33-byte GSM 06.10 frames.
    Gsm(Box<FrameDecoder>),
    /// MS-GSM 65-byte blocks of two frames.
    Wav49(Box<FrameDecoder>),
}

impl Codec {
    /// Bytes of one decodable unit (sample, frame or block).
    fn unit(&self) -> usize {
        match self {
            Codec::Pcm16 => 2,
            Codec::Ulaw | Codec::Alaw => 1,
            Codec::Gsm(_) => FRAME_LEN,
            Codec::Wav49(_) => WAV49_BLOCK_LEN,
        }
    }

    /// Bytes read per call: a whole number of units.
    fn read_len(&self) -> usize {
        match self {
            Codec::Pcm16 => 2 * PCM_SAMPLES_PER_READ,
            Codec::Ulaw | Codec::Alaw => PCM_SAMPLES_PER_READ,
            Codec::Gsm(_) => FRAME_LEN * GSM_FRAMES_PER_READ,
            Codec::Wav49(_) => WAV49_BLOCK_LEN * WAV49_BLOCKS_PER_READ,
        }
    }

    fn unit_name(&self) -> &'static str {
        match self {
            Codec::Pcm16 | Codec::Ulaw | Codec::Alaw => "sample",
            Codec::Gsm(_) => "frame",
            Codec::Wav49(_) => "block",
        }
    }

    /// The codec Asterisk uses for `format`, for files with nothing to decode.
    fn for_format(format: &AudioFormat) -> Codec {
        match format {
            AudioFormat::Wav49 => Codec::Wav49(Box::default()),
            AudioFormat::Gsm => Codec::Gsm(Box::default()),
            AudioFormat::Ulaw => Codec::Ulaw,
            AudioFormat::Alaw => Codec::Alaw,
            _ => Codec::Pcm16,
        }
    }
}

/// A streaming decoder for the audio of one message file: 16-bit mono samples.
///
/// Wrap unbuffered readers in a `BufReader`: the decoder reads a few hundred bytes
/// (GSM) to 8 KiB (PCM) at a time. Decoding stops for good at the end of the data or
/// at the first error; later calls return `Ok(0)` / `None`.
pub struct Decoder<R: Read> {
    src: Source<R>,
    codec: Codec,
    rate: u32,
    /// Whether the file has a RIFF header (for the end-of-data messages).
    riff: bool,
    /// File offset of the first audio byte.
    data_start: u64,
    /// The header's data size, unless it is 0 (then the data runs to end of file).
    declared: Option<u64>,
    /// Audio bytes read so far, including an incomplete last unit.
    consumed: u64,
    /// Sample count of the `fact` chunk, checked at the end.
    fact: Option<u32>,
    /// Samples produced so far.
    samples: u64,
    /// Read buffer of `codec.read_len()` bytes, allocated once.
    buf: Vec<u8>,
    warnings: Vec<String>,
    done: bool,
    /// An error met after good samples of the same read: returned by the next call.
    deferred: Option<AudioError>,
    /// Samples decoded but not yet handed out by the iterator.
    pending: Vec<i16>,
    pending_at: usize,
}

impl<R: Read> Decoder<R> {
    /// Start decoding `reader` as `format`. RIFF formats have their header read and
    /// checked up to the first audio byte; headerless formats read nothing yet.
    pub fn new(reader: R, format: AudioFormat) -> Result<Self, AudioError> {
        let mut src = Source::new(reader);
        let mut warnings = Vec::new();
        let mut declared = None;
        let mut fact = None;
        let mut done = false;
        let riff = matches!(
            format,
            AudioFormat::Wav | AudioFormat::Wav16 | AudioFormat::Wav49
        );
        let (codec, rate) = match &format {
            AudioFormat::Wav | AudioFormat::Wav16 | AudioFormat::Wav49 => {
                if src.at_eof()? {
                    warnings.push(EMPTY_FILE.to_string());
                    done = true;
                    (
                        Codec::for_format(&format),
                        format.sample_rate().unwrap_or(8000),
                    )
                } else {
                    let layout = read_layout(&mut src)?;
                    let (codec, rate) = riff_codec(&format, &layout, &mut warnings)?;
                    fact = layout.fact.and_then(|(_, count)| count);
                    if layout.data.size == 0 {
                        warnings.push(
                            "data size is 0 (still being recorded, or left by a crash): \
                             decoding to the end of the file"
                                .into(),
                        );
                    } else {
                        declared = Some(u64::from(layout.data.size));
                    }
                    (codec, rate)
                }
            }
            AudioFormat::Gsm | AudioFormat::Ulaw | AudioFormat::Alaw => {
                (Codec::for_format(&format), 8000)
            }
            AudioFormat::Sln { rate } => (Codec::Pcm16, *rate),
            _ => {
                return Err(AudioError::Unsupported {
                    format: format.name(),
                    op: AudioOp::Decode,
                })
            }
        };
        Ok(Decoder {
            buf: vec![0; codec.read_len()],
            data_start: src.pos,
            src,
            codec,
            rate,
            riff,
            declared,
            consumed: 0,
            fact,
            samples: 0,
            warnings,
            done,
            deferred: None,
            pending: Vec::new(),
            pending_at: 0,
        })
    }

    /// Samples per second.
    pub fn sample_rate(&self) -> u32 {
        self.rate
    }

    /// Always 1: every voicemail format is mono, and other files are refused.
    pub fn channels(&self) -> u16 {
        1
    }

    /// Problems met so far (header oddities, truncation), one sentence each. Complete
    /// once [`Self::next_block`] has returned `Ok(0)`.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Samples produced so far.
    pub fn samples_decoded(&self) -> u64 {
        self.samples
    }

    /// Append the next samples (up to 4096) to `out` and return how many; `Ok(0)`
    /// means the end of the audio.
    pub fn next_block(&mut self, out: &mut Vec<i16>) -> Result<usize, AudioError> {
        // Samples the iterator decoded but did not hand out come first.
        if self.pending_at < self.pending.len() {
            out.extend_from_slice(&self.pending[self.pending_at..]);
            let n = self.pending.len() - self.pending_at;
            self.pending.clear();
            self.pending_at = 0;
            return Ok(n);
        }
        if let Some(e) = self.deferred.take() {
            return Err(e);
        }
        if self.done {
            return Ok(0);
        }
        let r = self.step(out);
        if r.is_err() {
            self.done = true;
        }
        r
    }

    /// One read and decode; marks the end and writes the end-of-data warnings.
    fn step(&mut self, out: &mut Vec<i16>) -> Result<usize, AudioError> {
        let unit = self.codec.unit();
        let mut want = self.buf.len();
        if let Some(declared) = self.declared {
            let left = declared.saturating_sub(self.consumed);
            want = want.min(usize::try_from(left).unwrap_or(usize::MAX));
        }
        let got = if want == 0 {
            0
        } else {
            read_up_to(&mut self.src, &mut self.buf[..want])?
        };
        let whole = got - got % unit;
        let chunk_start = self.consumed;
        self.consumed += got as u64;
        let (n, err) = self.decode_chunk(whole, chunk_start, out);
        self.samples += n as u64;
        if let Some(e) = err {
            self.done = true;
            if n == 0 {
                return Err(e);
            }
            self.deferred = Some(e);
            return Ok(n);
        }
        let eof = got < want;
        if eof || self.declared.is_some_and(|d| self.consumed >= d) {
            self.done = true;
            let extra = self.decode_half_block(whole, got, out);
            self.samples += extra as u64;
            self.finish(got - whole, extra > 0, eof);
            return Ok(n + extra);
        }
        Ok(n)
    }

    /// The first frame of a truncated MS-GSM block (bytes `from..to` of the buffer) is
    /// whole once 33 bytes (its 260 bits) are there: decode it rather than lose 20 ms.
    /// Asterisk and sox drop the whole block.
    fn decode_half_block(&mut self, from: usize, to: usize, out: &mut Vec<i16>) -> usize {
        let Codec::Wav49(dec) = &mut self.codec else {
            return 0;
        };
        let tail = &self.buf[from..to];
        if tail.len() < FRAME_LEN || tail.len() >= WAV49_BLOCK_LEN {
            return 0;
        }
        let mut block = [0u8; WAV49_BLOCK_LEN];
        block[..tail.len()].copy_from_slice(tail);
        let [first, _] = Frame::from_wav49(&block);
        let mut pcm = [0i16; FRAME_SAMPLES];
        dec.decode(&first, &mut pcm);
        out.extend_from_slice(&pcm);
        FRAME_SAMPLES
    }

    /// Decode `self.buf[..len]` (whole units) onto `out`. Returns the samples added
    /// and the error that stopped decoding early, if any.
    fn decode_chunk(
        &mut self,
        len: usize,
        chunk_start: u64,
        out: &mut Vec<i16>,
    ) -> (usize, Option<AudioError>) {
        let bytes = &self.buf[..len];
        let before = out.len();
        match &mut self.codec {
            Codec::Pcm16 => {
                let (pairs, _) = bytes.as_chunks::<2>();
                out.extend(pairs.iter().map(|&p| i16::from_le_bytes(p)));
            }
            Codec::Ulaw => out.extend(bytes.iter().map(|&b| ULAW[usize::from(b)])),
            Codec::Alaw => out.extend(bytes.iter().map(|&b| ALAW[usize::from(b)])),
            Codec::Gsm(dec) => {
                let (frames, _) = bytes.as_chunks::<FRAME_LEN>();
                let mut pcm = [0i16; FRAME_SAMPLES];
                for (i, raw) in frames.iter().enumerate() {
                    let Some(frame) = Frame::from_standard(raw) else {
                        let at = chunk_start + (i * FRAME_LEN) as u64;
                        let err = AudioError::BadData {
                            offset: self.data_start + at,
                            reason: format!(
                                "GSM frame {} lacks the 0xD signature (first byte 0x{:02x}): \
                                 not raw GSM 06.10, or corrupt",
                                at / FRAME_LEN as u64,
                                raw[0]
                            ),
                        };
                        return (out.len() - before, Some(err));
                    };
                    dec.decode(&frame, &mut pcm);
                    out.extend_from_slice(&pcm);
                }
            }
            Codec::Wav49(dec) => {
                let (blocks, _) = bytes.as_chunks::<WAV49_BLOCK_LEN>();
                let mut pcm = [0i16; FRAME_SAMPLES];
                for block in blocks {
                    for frame in &Frame::from_wav49(block) {
                        dec.decode(frame, &mut pcm);
                        out.extend_from_slice(&pcm);
                    }
                }
            }
        }
        (out.len() - before, None)
    }

    /// Warnings about how the data ended: `tail` bytes short of a unit (of which a
    /// first frame was decoded when `half_decoded`), `eof` when the file ended before
    /// the declared size (if any) was reached.
    fn finish(&mut self, tail: usize, half_decoded: bool, eof: bool) {
        if eof {
            if let Some(declared) = self.declared {
                self.warnings.push(format!(
                    "data chunk declares {declared} bytes but the file ends after {}: \
                     truncated",
                    self.consumed
                ));
            }
        }
        let whole = self.consumed - tail as u64;
        // Older Asterisk pads an odd-length wav49 data chunk with one zero byte.
        let pad_byte = matches!(self.codec, Codec::Wav49(_)) && tail == 1 && whole % 2 == 1;
        if half_decoded {
            self.warnings.push(format!(
                "truncated last block: {tail} of {WAV49_BLOCK_LEN} bytes; decoded its first \
                 frame, ignored the rest"
            ));
        } else if tail > 0 && !pad_byte {
            let s = if tail == 1 { "" } else { "s" };
            self.warnings.push(format!(
                "truncated last {}: {tail} byte{s} ignored",
                self.codec.unit_name()
            ));
        }
        if self.consumed == 0 && self.declared.is_none() {
            self.warnings.push(if self.riff {
                "no audio after the header".to_string()
            } else {
                EMPTY_FILE.to_string()
            });
        }
        // The fact count is only a cross-check, and only meaningful when the data was
        // complete: Asterisk writes blocks × 320, other encoders the exact count,
        // which then lies within the last block.
        if let (Some(count), Some(_), false) = (self.fact, self.declared, eof) {
            let count = u64::from(count);
            let slack = match self.codec {
                Codec::Wav49(_) => WAV49_BLOCK_SAMPLES,
                _ => 1,
            };
            if count > self.samples || count + slack <= self.samples {
                self.warnings.push(format!(
                    "fact chunk counts {count} samples, the data holds {}",
                    self.samples
                ));
            }
        }
    }
}

impl<R: Read> Iterator for Decoder<R> {
    type Item = Result<i16, AudioError>;

    /// Sample by sample, for convenience; [`Decoder::next_block`] is much cheaper.
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(&s) = self.pending.get(self.pending_at) {
                self.pending_at += 1;
                return Some(Ok(s));
            }
            let mut buf = std::mem::take(&mut self.pending);
            buf.clear();
            self.pending_at = 0;
            let r = self.next_block(&mut buf);
            self.pending = buf;
            match r {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// Open the file at `path` with extension `ext` (no dot, case as on disk) for
/// decoding. Unsupported formats fail before the file is opened.
pub fn open(
    path: &Path,
    ext: &str,
) -> Result<Decoder<BufReader<crate::fsutil::Bounded>>, AudioError> {
    let format = AudioFormat::from_extension(ext);
    if !format.decodable() {
        return Err(AudioError::Unsupported {
            format: format.name(),
            op: AudioOp::Decode,
        });
    }
    let file = crate::fsutil::open_bounded(path, crate::fsutil::MAX_AUDIO_BYTES)?;
    Decoder::new(BufReader::new(file), format)
}

/// Decode a whole file: its sample rate and samples (warnings are dropped).
pub fn decode_all(path: &Path, ext: &str) -> Result<(u32, Vec<i16>), AudioError> {
    let mut dec = open(path, ext)?;
    let mut samples = Vec::new();
    while dec.next_block(&mut samples)? > 0 {}
    Ok((dec.sample_rate(), samples))
}

/// The best of a message's audio extensions to play or convert: lossless first
/// (`.wav`, `.wav16`, then raw `.sln*` by rate), then GSM (`.WAV`, `.gsm`), then
/// G.711 (µ-law, A-law). `None` when none is decodable. A leading dot is ignored; the
/// extension is returned as given.
pub fn preferred_format(exts: &[String]) -> Option<String> {
    let rank = |ext: &str| -> Option<(u8, u32)> {
        Some(
            match AudioFormat::from_extension(ext.strip_prefix('.').unwrap_or(ext)) {
                AudioFormat::Wav => (0, 0),
                AudioFormat::Wav16 => (1, 0),
                AudioFormat::Sln { rate } => (2, rate),
                AudioFormat::Wav49 => (3, 0),
                AudioFormat::Gsm => (4, 0),
                AudioFormat::Ulaw => (5, 0),
                AudioFormat::Alaw => (6, 0),
                _ => return None,
            },
        )
    };
    exts.iter()
        .filter_map(|e| rank(e).map(|r| (r, e)))
        .min()
        .map(|(_, e)| e.clone())
}

/// Walk the RIFF header up to the data chunk, turning "ran out of bytes" into a
/// message that says what was missing (the walker itself sees an endless stream).
fn read_layout<R: Read>(src: &mut Source<R>) -> Result<WaveLayout, AudioError> {
    match WaveLayout::read(src, u64::MAX) {
        Err(AudioError::BadHeader { reason }) => Err(AudioError::BadHeader {
            reason: src.explain_eof().unwrap_or(reason),
        }),
        other => other,
    }
}

/// `.wav`, `.wav16`, `.WAV` as the extension presents them.
fn ext_label(format: &AudioFormat) -> &'static str {
    match format {
        AudioFormat::Wav16 => ".wav16",
        AudioFormat::Wav49 => ".WAV (wav49)",
        _ => ".wav",
    }
}

/// Choose the codec from the `fmt ` chunk; refuse what cannot be decoded and warn
/// about what Asterisk's reader for the extension would refuse.
fn riff_codec(
    format: &AudioFormat,
    layout: &WaveLayout,
    warnings: &mut Vec<String>,
) -> Result<(Codec, u32), AudioError> {
    let bad = |reason: String| Err(AudioError::BadHeader { reason });
    let Some((_, fmt)) = &layout.fmt else {
        return bad(format!(
            "no fmt chunk before the data chunk (chunks: {})",
            layout.chunk_list()
        ));
    };
    if fmt.channels != 1 {
        return bad(format!(
            "{} channels: voicemail audio is mono, other files are not decoded",
            fmt.channels
        ));
    }
    if fmt.sample_rate == 0 {
        return bad("sample rate is 0 Hz".into());
    }
    let codec = match fmt.format_tag {
        WaveFmt::PCM => {
            if fmt.bits_per_sample != 16 {
                return bad(format!(
                    "{}-bit PCM: only 16-bit PCM is decoded",
                    fmt.bits_per_sample
                ));
            }
            if fmt.block_align != 2 {
                warnings.push(format!(
                    "block align {} instead of 2 for 16-bit mono: read as 2-byte samples",
                    fmt.block_align
                ));
            }
            Codec::Pcm16
        }
        WaveFmt::MULAW | WaveFmt::ALAW => {
            if fmt.bits_per_sample != 8 {
                return bad(format!(
                    "{} with {} bits per sample: G.711 has 8",
                    fmt.tag_name(),
                    fmt.bits_per_sample
                ));
            }
            if fmt.format_tag == WaveFmt::MULAW {
                Codec::Ulaw
            } else {
                Codec::Alaw
            }
        }
        WaveFmt::GSM610 => {
            if usize::from(fmt.block_align) != WAV49_BLOCK_LEN {
                return bad(format!(
                    "GSM 6.10 with block align {}: MS-GSM blocks are 65 bytes",
                    fmt.block_align
                ));
            }
            if let Some(n) = fmt.samples_per_block.filter(|&n| u64::from(n) != 320) {
                warnings.push(format!(
                    "fmt says {n} samples per block; MS-GSM blocks hold 320 (decoded as 320)"
                ));
            }
            Codec::Wav49(Box::default())
        }
        tag => {
            return bad(format!(
                "format tag {tag} ({}) is not decoded: PCM, G.711 and GSM 6.10 are",
                fmt.tag_name()
            ))
        }
    };
    let (want_tag, want_rate) = match format {
        AudioFormat::Wav49 => (WaveFmt::GSM610, 8000),
        AudioFormat::Wav16 => (WaveFmt::PCM, 16_000),
        _ => (WaveFmt::PCM, 8000),
    };
    let mut refuse = Vec::new();
    if fmt.format_tag != want_tag {
        refuse.push(format!("{} audio", fmt.tag_name()));
    }
    if fmt.sample_rate != want_rate {
        refuse.push(format!("{} Hz", fmt.sample_rate));
    }
    if !refuse.is_empty() {
        warnings.push(format!(
            "{} in a {} file: Asterisk's reader would refuse it (decoded as found)",
            refuse.join(", "),
            ext_label(format)
        ));
    }
    Ok((codec, fmt.sample_rate))
}

/// A reader that counts its position and "seeks" forward by reading and discarding,
/// so the RIFF walker (which needs `Seek`) runs over any `Read`. It also remembers
/// where the input ended, to explain header errors.
struct Source<R> {
    inner: R,
    /// A byte read ahead by [`Self::at_eof`], served before `inner`.
    peeked: Option<u8>,
    /// Logical position: bytes delivered plus bytes skipped (may pass the end).
    pos: u64,
    /// Where `inner` first reported the end of the input.
    eof_at: Option<u64>,
    /// Target of the last seek.
    last_seek: u64,
    /// Whether a seek tried to skip past the end.
    overran: bool,
}

impl<R: Read> Source<R> {
    fn new(inner: R) -> Self {
        Source {
            inner,
            peeked: None,
            pos: 0,
            eof_at: None,
            last_seek: 0,
            overran: false,
        }
    }

    /// Whether the input is empty from here, without consuming anything.
    fn at_eof(&mut self) -> io::Result<bool> {
        if self.peeked.is_some() {
            return Ok(false);
        }
        let mut b = [0u8; 1];
        if read_up_to(&mut self.inner, &mut b)? == 0 {
            self.eof_at.get_or_insert(self.pos);
            return Ok(true);
        }
        self.peeked = Some(b[0]);
        Ok(false)
    }

    /// A precise reason for a header error caused by the input ending early.
    fn explain_eof(&self) -> Option<String> {
        let end = self.eof_at?;
        Some(if end < RIFF_HEADER_LEN {
            format!("file is only {end} bytes, shorter than the 12-byte RIFF header")
        } else if self.overran {
            format!(
                "a chunk before the data chunk declares more bytes than the {end}-byte file \
                 holds"
            )
        } else if end == self.last_seek {
            format!("no data chunk before the end of the {end}-byte file")
        } else {
            format!("file ends after {end} bytes, inside the header")
        })
    }
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if let Some(b) = self.peeked.take() {
            buf[0] = b;
            self.pos += 1;
            return Ok(1);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            self.eof_at.get_or_insert(self.pos);
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: Read> Seek for Source<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(_) => None,
        };
        let Some(target) = target.filter(|&t| t >= self.pos) else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "decoders read forward only",
            ));
        };
        let skip = target - self.pos;
        let skipped = io::copy(&mut self.by_ref().take(skip), &mut io::sink())?;
        if skipped < skip {
            self.overran = true;
        }
        self.pos = target;
        self.last_seek = target;
        Ok(target)
    }
}
