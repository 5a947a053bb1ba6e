//! Audio out for people, not for Asterisk: WAV (hound), FLAC (flacenc, pure
//! Rust), MP3 (LAME through `mp3lame-encoder`, ID3v2.4 tags from `id3`) and
//! Ogg Vorbis (libvorbis through `vorbis_rs`), each with the caller and the
//! date as tags (Vorbis comments for FLAC and Ogg). MP3 and Ogg build C
//! libraries and come with the `export` feature; without it they are
//! refused by name.

use std::io::{self, Write};
use std::path::Path;

/// A format `convert` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Wav,
    Flac,
    Mp3,
    Ogg,
}

impl ExportFormat {
    pub const ALL: [ExportFormat; 4] = [
        ExportFormat::Wav,
        ExportFormat::Flac,
        ExportFormat::Mp3,
        ExportFormat::Ogg,
    ];

    /// `wav`, `flac`, `mp3`, `ogg` (any case; `oga` is Ogg too).
    pub fn from_name(s: &str) -> Option<ExportFormat> {
        match s.trim_start_matches('.').to_ascii_lowercase().as_str() {
            "wav" => Some(ExportFormat::Wav),
            "flac" => Some(ExportFormat::Flac),
            "mp3" => Some(ExportFormat::Mp3),
            "ogg" | "oga" => Some(ExportFormat::Ogg),
            _ => None,
        }
    }

    /// The format a file name asks for by its extension.
    pub fn from_path(p: &Path) -> Option<ExportFormat> {
        p.extension()
            .and_then(|e| e.to_str())
            .and_then(ExportFormat::from_name)
    }

    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Wav => "wav",
            ExportFormat::Flac => "flac",
            ExportFormat::Mp3 => "mp3",
            ExportFormat::Ogg => "ogg",
        }
    }

    /// Whether this build writes it (MP3 and Ogg need the `export` feature).
    pub fn available(self) -> bool {
        match self {
            ExportFormat::Wav | ExportFormat::Flac => true,
            ExportFormat::Mp3 | ExportFormat::Ogg => cfg!(feature = "export"),
        }
    }
}

/// What the tags say about a message; `None` fields are left out.
#[derive(Debug, Clone, Default)]
pub struct Tags {
    /// The caller (name, else number): ARTIST / TPE1.
    pub caller: Option<String>,
    /// When it was left, ISO 8601 in the box's zone (`2026-11-26T10:34:19`):
    /// DATE / TDRC.
    pub date: Option<String>,
    /// TITLE / TIT2.
    pub title: Option<String>,
    /// Where it came from (`ctx/box/Folder/msgNNNN`): COMMENT / COMM.
    pub comment: Option<String>,
}

impl Tags {
    /// `(KEY, value)` pairs as Vorbis comments name them.
    pub fn vorbis_comments(&self) -> Vec<(&'static str, String)> {
        [
            ("TITLE", &self.title),
            ("ARTIST", &self.caller),
            ("DATE", &self.date),
            ("COMMENT", &self.comment),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, v.clone())))
        .collect()
    }
}

/// Why a file could not be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("cannot encode {format}: {reason}")]
    Encode {
        format: &'static str,
        reason: String,
    },
    #[error("this vmtool was built without {0} export (the `export` feature); write wav or flac")]
    Unavailable(&'static str),
}

fn enc(format: &'static str) -> impl Fn(String) -> ExportError {
    move |reason| ExportError::Encode { format, reason }
}

/// Encodes mono 16-bit `samples` at `rate` Hz in `format` with `tags` into `w`.
pub fn export(
    format: ExportFormat,
    rate: u32,
    samples: &[i16],
    tags: &Tags,
    w: &mut dyn Write,
) -> Result<(), ExportError> {
    match format {
        ExportFormat::Wav => {
            let mut buf = io::Cursor::new(Vec::with_capacity(44 + 2 * samples.len()));
            write_wav(&mut buf, rate, samples).map_err(|e| enc("wav")(e.to_string()))?;
            w.write_all(buf.get_ref())?;
        }
        ExportFormat::Flac => w.write_all(&flac(rate, samples, tags)?)?,
        ExportFormat::Mp3 => w.write_all(&mp3(rate, samples, tags)?)?,
        ExportFormat::Ogg => w.write_all(&ogg(rate, samples, tags)?)?,
    }
    Ok(())
}

/// Standard 16-bit PCM mono WAV.
pub fn write_wav<W: Write + io::Seek>(w: W, rate: u32, samples: &[i16]) -> hound::Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut wr = hound::WavWriter::new(w, spec)?;
    {
        let mut i16w = wr.get_i16_writer(samples.len() as u32);
        for &s in samples {
            i16w.write_sample(s);
        }
        i16w.flush()?;
    }
    wr.finalize()
}

const VENDOR: &str = concat!("vmtool ", env!("CARGO_PKG_VERSION"));

/// A Vorbis comment header body (the FLAC `VORBIS_COMMENT` block; no framing bit).
fn vorbis_comment_block(tags: &Tags) -> Vec<u8> {
    let comments = tags.vorbis_comments();
    let mut b = Vec::new();
    b.extend_from_slice(&(VENDOR.len() as u32).to_le_bytes());
    b.extend_from_slice(VENDOR.as_bytes());
    b.extend_from_slice(&(comments.len() as u32).to_le_bytes());
    for (k, v) in comments {
        let c = format!("{k}={v}");
        b.extend_from_slice(&(c.len() as u32).to_le_bytes());
        b.extend_from_slice(c.as_bytes());
    }
    b
}

/// FLAC, lossless: the samples come back bit for bit.
fn flac(rate: u32, samples: &[i16], tags: &Tags) -> Result<Vec<u8>, ExportError> {
    use flacenc::component::{BitRepr, MetadataBlockData};
    use flacenc::error::Verify;
    let e = enc("flac");
    let config = flacenc::config::Encoder::default()
        .into_verified()
        .map_err(|(_, err)| e(format!("{err:?}")))?;
    let wide: Vec<i32> = samples.iter().map(|&s| i32::from(s)).collect();
    let source = flacenc::source::MemSource::from_samples(&wide, 1, 16, rate as usize);
    let mut stream = flacenc::encode_with_fixed_block_size(&config, source, config.block_size)
        .map_err(|err| e(format!("{err:?}")))?;
    let block = MetadataBlockData::new_unknown(4, &vorbis_comment_block(tags))
        .map_err(|err| e(format!("{err:?}")))?;
    stream.add_metadata_block(block);
    let mut sink = flacenc::bitsink::ByteSink::new();
    stream
        .write(&mut sink)
        .map_err(|err| e(format!("{err:?}")))?;
    Ok(sink.as_slice().to_vec())
}

#[cfg(feature = "export")]
fn mp3(rate: u32, samples: &[i16], tags: &Tags) -> Result<Vec<u8>, ExportError> {
    use mp3lame_encoder::{Bitrate, Builder, FlushNoGap, MonoPcm, Quality};
    let e = enc("mp3");
    let mut b = Builder::new().ok_or_else(|| e("LAME could not start".into()))?;
    // Speech: 32 kbit/s at telephone rates, more for the resampled ones.
    let brate = match rate {
        0..=11_025 => Bitrate::Kbps32,
        11_026..=24_000 => Bitrate::Kbps48,
        _ => Bitrate::Kbps64,
    };
    b.set_num_channels(1).map_err(|err| e(err.to_string()))?;
    b.set_sample_rate(rate).map_err(|err| e(err.to_string()))?;
    b.set_brate(brate).map_err(|err| e(err.to_string()))?;
    b.set_quality(Quality::Good)
        .map_err(|err| e(err.to_string()))?;
    let mut lame = b.build().map_err(|err| e(err.to_string()))?;
    let mut out = Vec::new();
    id3_tag(tags)
        .write_to(&mut out, id3::Version::Id3v24)
        .map_err(|err| e(err.to_string()))?;
    out.reserve(mp3lame_encoder::max_required_buffer_size(samples.len()));
    lame.encode_to_vec(MonoPcm(samples), &mut out)
        .map_err(|err| e(err.to_string()))?;
    lame.flush_to_vec::<FlushNoGap>(&mut out)
        .map_err(|err| e(err.to_string()))?;
    Ok(out)
}

/// ID3v2.4 (UTF-8 text): TIT2, TPE1, TDRC, COMM.
#[cfg(feature = "export")]
fn id3_tag(tags: &Tags) -> id3::Tag {
    use id3::TagLike;
    let mut t = id3::Tag::new();
    if let Some(v) = &tags.title {
        t.set_title(v.as_str());
    }
    if let Some(v) = &tags.caller {
        t.set_artist(v.as_str());
    }
    if let Some(ts) = tags
        .date
        .as_deref()
        .and_then(|d| d.parse::<id3::Timestamp>().ok())
    {
        t.set_date_recorded(ts);
    }
    if let Some(v) = &tags.comment {
        t.add_frame(id3::frame::Comment {
            lang: "eng".into(),
            description: String::new(),
            text: v.clone(),
        });
    }
    t
}

#[cfg(feature = "export")]
fn ogg(rate: u32, samples: &[i16], tags: &Tags) -> Result<Vec<u8>, ExportError> {
    use std::num::{NonZeroU32, NonZeroU8};
    use vorbis_rs::VorbisEncoderBuilder;
    let e = enc("ogg");
    let rate = NonZeroU32::new(rate).ok_or_else(|| e("sample rate 0".into()))?;
    // The stream serial from the audio: the same message gives the same file.
    let serial = {
        use sha2::Digest;
        let h = sha2::Sha256::digest(
            samples
                .iter()
                .flat_map(|s| s.to_le_bytes())
                .collect::<Vec<u8>>(),
        );
        i32::from_le_bytes([h[0], h[1], h[2], h[3]])
    };
    let mut out = Vec::new();
    let mut b = VorbisEncoderBuilder::new_with_serial(rate, NonZeroU8::MIN, &mut out, serial);
    b.comment_tags(tags.vorbis_comments())
        .map_err(|err| e(err.to_string()))?;
    let mut v = b.build().map_err(|err| e(err.to_string()))?;
    let f: Vec<f32> = samples.iter().map(|&s| f32::from(s) / 32768.0).collect();
    for chunk in f.chunks(4096) {
        v.encode_audio_block([chunk])
            .map_err(|err| e(err.to_string()))?;
    }
    v.finish().map_err(|err| e(err.to_string()))?;
    Ok(out)
}

#[cfg(not(feature = "export"))]
fn mp3(_: u32, _: &[i16], _: &Tags) -> Result<Vec<u8>, ExportError> {
    Err(ExportError::Unavailable("mp3"))
}

#[cfg(not(feature = "export"))]
fn ogg(_: u32, _: &[i16], _: &Tags) -> Result<Vec<u8>, ExportError> {
    Err(ExportError::Unavailable("ogg"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_extensions() {
        for f in ExportFormat::ALL {
            assert_eq!(ExportFormat::from_name(f.extension()), Some(f));
        }
        assert_eq!(
            ExportFormat::from_path(Path::new("a/b.FLAC")),
            Some(ExportFormat::Flac)
        );
        assert_eq!(ExportFormat::from_name("gsm"), None);
    }

    #[test]
    fn comment_block_layout() {
        let t = Tags {
            caller: Some("Chloé".into()),
            ..Tags::default()
        };
        let b = vorbis_comment_block(&t);
        let vlen = u32::from_le_bytes(b[..4].try_into().unwrap()) as usize;
        assert_eq!(&b[4..4 + vlen], VENDOR.as_bytes());
        let n = u32::from_le_bytes(b[4 + vlen..8 + vlen].try_into().unwrap());
        assert_eq!(n, 1);
        let clen = u32::from_le_bytes(b[8 + vlen..12 + vlen].try_into().unwrap()) as usize;
        assert_eq!(&b[12 + vlen..], "ARTIST=Chloé".as_bytes());
        assert_eq!(clen, "ARTIST=Chloé".len());
    }
}
