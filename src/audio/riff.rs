//! RIFF/WAVE container walking, shared by the probes and the decoders.
//!
//! Everything here is generic over `Read + Seek` (the decoders pass a forward-only
//! reader that seeks by reading), reads only chunk headers and the few bytes of the
//! `fmt ` and `fact` chunks, and treats every size read from the file as untrusted:
//! offsets are `u64` with saturating arithmetic, and no size is ever used to allocate.

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom};

use super::AudioError;

/// Size of the `RIFF` + size + form header.
pub const RIFF_HEADER_LEN: u64 = 12;
/// Size of a chunk header (id + little-endian size).
pub const CHUNK_HEADER_LEN: u64 = 8;
/// Chunks looked at before giving up on finding `data`: real files have 2 to 5, and the
/// cap keeps a file made of millions of tiny chunks from costing millions of seeks.
pub const MAX_CHUNKS: usize = 64;
/// Bytes of a `fmt ` chunk we read: WAVEFORMATEXTENSIBLE is 40; anything beyond is
/// codec-specific and not needed to measure.
const FMT_READ_CAP: usize = 64;

/// A four-character code such as `RIFF`, `fmt ` or `data`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FourCC(pub [u8; 4]);

impl FourCC {
    pub const RIFF: FourCC = FourCC(*b"RIFF");
    pub const WAVE: FourCC = FourCC(*b"WAVE");
    pub const FMT: FourCC = FourCC(*b"fmt ");
    pub const FACT: FourCC = FourCC(*b"fact");
    pub const DATA: FourCC = FourCC(*b"data");
}

impl fmt::Display for FourCC {
    /// Printable ASCII as is, anything else as `\xNN`: ids come from untrusted files
    /// and end up on a terminal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in &self.0 {
            if (0x20..0x7f).contains(&b) {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for FourCC {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FourCC(\"{self}\")")
    }
}

/// The 12-byte file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RiffHeader {
    /// The RIFF size field: file length − 8 when correct, 0 while Asterisk records.
    pub size: u32,
    /// The form type, `WAVE` for every file we care about.
    pub form: FourCC,
}

/// One chunk header as found in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    pub id: FourCC,
    /// The size field, as written (untrusted).
    pub size: u32,
    /// File offset of the chunk header; the body starts 8 bytes later.
    pub offset: u64,
}

impl Chunk {
    /// File offset of the first body byte.
    pub fn body_start(&self) -> u64 {
        self.offset.saturating_add(CHUNK_HEADER_LEN)
    }

    /// File offset just past the body as declared (without the pad byte).
    pub fn body_end(&self) -> u64 {
        self.body_start().saturating_add(u64::from(self.size))
    }

    /// Body bytes actually present in a file of `file_len` bytes.
    pub fn available(&self, file_len: u64) -> u64 {
        file_len
            .saturating_sub(self.body_start())
            .min(u64::from(self.size))
    }
}

/// Read exactly `buf.len()` bytes; running out of file is a header problem, not an I/O
/// failure, so it becomes `BadHeader` naming what was being read.
pub(crate) fn read_exact_or<R: Read>(
    reader: &mut R,
    buf: &mut [u8],
    what: &str,
) -> Result<(), AudioError> {
    reader.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => AudioError::BadHeader {
            reason: format!("file ends inside the {what}"),
        },
        _ => AudioError::Io(e),
    })
}

/// Read up to `buf.len()` bytes, stopping early only at end of file.
pub(crate) fn read_up_to<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

pub(crate) fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

pub(crate) fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Read and check the 12-byte `RIFF....WAVE` header at offset 0.
pub fn read_riff_header<R: Read + Seek>(
    reader: &mut R,
    file_len: u64,
) -> Result<RiffHeader, AudioError> {
    if file_len < RIFF_HEADER_LEN {
        return Err(AudioError::BadHeader {
            reason: format!("file is only {file_len} bytes, shorter than the 12-byte RIFF header"),
        });
    }
    reader.seek(SeekFrom::Start(0))?;
    let mut b = [0u8; 12];
    read_exact_or(reader, &mut b, "RIFF header")?;
    let magic = FourCC([b[0], b[1], b[2], b[3]]);
    if magic != FourCC::RIFF {
        return Err(AudioError::BadHeader {
            reason: format!("not a RIFF file: starts with \"{magic}\" instead of \"RIFF\""),
        });
    }
    let form = FourCC([b[8], b[9], b[10], b[11]]);
    if form != FourCC::WAVE {
        return Err(AudioError::BadHeader {
            reason: format!("RIFF form is \"{form}\", not \"WAVE\""),
        });
    }
    Ok(RiffHeader {
        size: le_u32(&b, 4),
        form,
    })
}

/// Iterates over the chunk headers of a RIFF file without reading bodies.
///
/// Bodies are skipped by seeking, so a chunk claiming 4 GiB costs nothing. Odd-sized
/// chunks are followed by a pad byte per the RIFF standard; Asterisk's readers (and
/// hound) do not skip it, which callers can detect with [`Chunk::size`].
pub struct ChunkWalker<R> {
    reader: R,
    next: u64,
    file_len: u64,
}

impl<R: Read + Seek> ChunkWalker<R> {
    /// Walk chunks starting at `start` (12 for the top level of a RIFF file) in a file
    /// of `file_len` bytes.
    pub fn new(reader: R, start: u64, file_len: u64) -> Self {
        ChunkWalker {
            reader,
            next: start,
            file_len,
        }
    }

    /// Offset where the next chunk header is expected.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// Bytes left in the file from [`Self::position`] (0 once past the end).
    pub fn remaining(&self) -> u64 {
        self.file_len.saturating_sub(self.next)
    }

    /// The next chunk header, or `None` when fewer than 8 bytes are left (callers
    /// decide whether leftovers matter via [`Self::remaining`]).
    pub fn next_chunk(&mut self) -> Result<Option<Chunk>, AudioError> {
        if self.remaining() < CHUNK_HEADER_LEN {
            return Ok(None);
        }
        let offset = self.next;
        self.reader.seek(SeekFrom::Start(offset))?;
        let mut b = [0u8; 8];
        read_exact_or(&mut self.reader, &mut b, "chunk header")?;
        let chunk = Chunk {
            id: FourCC([b[0], b[1], b[2], b[3]]),
            size: le_u32(&b, 4),
            offset,
        };
        self.next = chunk.body_end().saturating_add(u64::from(chunk.size & 1));
        Ok(Some(chunk))
    }

    /// Read at most `cap` bytes of `chunk`'s body (fewer if the body or the file is
    /// shorter).
    pub fn read_body(&mut self, chunk: &Chunk, cap: usize) -> Result<Vec<u8>, AudioError> {
        let want = usize::try_from(chunk.available(self.file_len))
            .unwrap_or(usize::MAX)
            .min(cap);
        self.reader.seek(SeekFrom::Start(chunk.body_start()))?;
        let mut buf = vec![0u8; want];
        let got = read_up_to(&mut self.reader, &mut buf)?;
        buf.truncate(got);
        Ok(buf)
    }

    /// Give the reader back (e.g. to hand it to a decoder positioned by the caller).
    pub fn into_inner(self) -> R {
        self.reader
    }
}

/// The fields of a `fmt ` chunk (WAVEFORMAT, plus WAVEFORMATEX extras when present).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaveFmt {
    pub format_tag: u16,
    pub channels: u16,
    pub sample_rate: u32,
    pub byte_rate: u32,
    pub block_align: u16,
    pub bits_per_sample: u16,
    /// `cbSize`, when the chunk has one.
    pub cb_size: Option<u16>,
    /// `wSamplesPerBlock` of GSM 6.10 / ADPCM formats, when present.
    pub samples_per_block: Option<u16>,
}

impl WaveFmt {
    pub const PCM: u16 = 1;
    pub const IEEE_FLOAT: u16 = 3;
    pub const ALAW: u16 = 6;
    pub const MULAW: u16 = 7;
    pub const GSM610: u16 = 49;
    pub const EXTENSIBLE: u16 = 0xfffe;

    /// Parse a `fmt ` body; `None` if shorter than the 16 bytes every reader needs.
    pub fn parse(b: &[u8]) -> Option<WaveFmt> {
        if b.len() < 16 {
            return None;
        }
        Some(WaveFmt {
            format_tag: le_u16(b, 0),
            channels: le_u16(b, 2),
            sample_rate: le_u32(b, 4),
            byte_rate: le_u32(b, 8),
            block_align: le_u16(b, 12),
            bits_per_sample: le_u16(b, 14),
            cb_size: (b.len() >= 18).then(|| le_u16(b, 16)),
            samples_per_block: (b.len() >= 20).then(|| le_u16(b, 18)),
        })
    }

    /// Human name of the format tag, for messages.
    pub fn tag_name(&self) -> &'static str {
        match self.format_tag {
            Self::PCM => "PCM",
            2 => "MS ADPCM",
            Self::IEEE_FLOAT => "IEEE float",
            Self::ALAW => "A-law",
            Self::MULAW => "µ-law",
            0x11 => "IMA ADPCM",
            Self::GSM610 => "GSM 6.10",
            0x55 => "MP3",
            Self::EXTENSIBLE => "WAVE_FORMAT_EXTENSIBLE",
            _ => "unknown",
        }
    }
}

/// Where things are in a RIFF/WAVE file, up to and including the `data` chunk header.
#[derive(Debug, Clone)]
pub struct WaveLayout {
    pub riff: RiffHeader,
    /// Every chunk before `data`, in file order (`fmt `, `fact`, `LIST`, …).
    pub chunks: Vec<Chunk>,
    /// The first `fmt ` chunk and its parsed fields.
    pub fmt: Option<(Chunk, WaveFmt)>,
    /// The first `fact` chunk and its sample count, if it has 4 bytes.
    pub fact: Option<(Chunk, Option<u32>)>,
    /// The `data` chunk header.
    pub data: Chunk,
}

impl WaveLayout {
    /// Walk a RIFF/WAVE file from offset 0 up to its `data` chunk.
    ///
    /// Fails with `BadHeader` when the file is not RIFF/WAVE, a chunk before `data`
    /// runs past the end of the file, or no `data` chunk is found.
    pub fn read<R: Read + Seek>(reader: &mut R, file_len: u64) -> Result<WaveLayout, AudioError> {
        let riff = read_riff_header(reader, file_len)?;
        let mut walker = ChunkWalker::new(&mut *reader, RIFF_HEADER_LEN, file_len);
        let mut chunks = Vec::new();
        let mut fmt = None;
        let mut fact = None;
        loop {
            let Some(chunk) = walker.next_chunk()? else {
                let left = walker.remaining();
                let reason = if left > 0 {
                    format!(
                        "no data chunk: file ends with {left} stray bytes at offset {}",
                        walker.position()
                    )
                } else {
                    "no data chunk before the end of the file".to_string()
                };
                return Err(AudioError::BadHeader { reason });
            };
            if chunk.id == FourCC::DATA {
                return Ok(WaveLayout {
                    riff,
                    chunks,
                    fmt,
                    fact,
                    data: chunk,
                });
            }
            if chunk.body_end() > file_len {
                return Err(AudioError::BadHeader {
                    reason: format!(
                        "\"{}\" chunk at offset {} declares {} bytes, past the end of the \
                         {file_len}-byte file",
                        chunk.id, chunk.offset, chunk.size
                    ),
                });
            }
            if chunk.id == FourCC::FMT && fmt.is_none() {
                let body = walker.read_body(&chunk, FMT_READ_CAP)?;
                let parsed = WaveFmt::parse(&body).ok_or_else(|| AudioError::BadHeader {
                    reason: format!("fmt chunk is {} bytes, needs at least 16", chunk.size),
                })?;
                fmt = Some((chunk, parsed));
            } else if chunk.id == FourCC::FACT && fact.is_none() {
                let body = walker.read_body(&chunk, 4)?;
                let count = (body.len() == 4).then(|| le_u32(&body, 0));
                fact = Some((chunk, count));
            }
            chunks.push(chunk);
            if chunks.len() >= MAX_CHUNKS {
                return Err(AudioError::BadHeader {
                    reason: format!("no data chunk among the first {MAX_CHUNKS} chunks"),
                });
            }
        }
    }

    /// Offset of the first audio byte.
    pub fn data_start(&self) -> u64 {
        self.data.body_start()
    }

    /// Ids of the chunks before `data`, e.g. `fmt , fact, LIST`, for messages.
    pub fn chunk_list(&self) -> String {
        let mut s = String::new();
        for c in &self.chunks {
            if !s.is_empty() {
                s.push_str(", ");
            }
            s.push_str(&c.id.to_string());
        }
        s
    }
}

/// After the `data` chunk: how many of the bytes following it form well-formed chunks
/// (a trailing `LIST` written by some tools) and how many are unexplained. Returns
/// `(chunk_bytes, stray_bytes)` for the region `[from, file_len)`.
pub fn classify_trailing<R: Read + Seek>(
    reader: &mut R,
    from: u64,
    file_len: u64,
) -> Result<(u64, u64), AudioError> {
    let mut walker = ChunkWalker::new(&mut *reader, from, file_len);
    let mut count = 0;
    while count < MAX_CHUNKS {
        let start = walker.position();
        let Some(chunk) = walker.next_chunk()? else {
            break;
        };
        // A plausible chunk has a printable id and fits in the file; anything else
        // means the bytes are not chunks (e.g. audio the header does not count).
        let printable = chunk.id.0.iter().all(|b| (0x20..0x7f).contains(b));
        if !printable || chunk.body_end() > file_len {
            let chunk_bytes = start.saturating_sub(from);
            return Ok((chunk_bytes, file_len.saturating_sub(start)));
        }
        count += 1;
    }
    let end = walker.position().min(file_len);
    let stray = file_len.saturating_sub(end);
    Ok((end.saturating_sub(from), stray))
}
