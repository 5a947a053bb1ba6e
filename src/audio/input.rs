//! Audio people have, read into mono 16-bit samples for the encoders: WAV of
//! any rate, depth and channel count (hound), mp3, ogg/vorbis and flac
//! (symphonia), and every format Asterisk writes (vmtool's own decoders).
//! Resampling with rubato, loudness with EBU R128 (ebur128).
//!
//! Nothing is processed unless asked: an 8 kHz mono 16-bit WAV reaches the
//! encoders sample for sample, so the bytes written can be predicted.

use super::AudioFormat;
use std::io;
use std::path::Path;

/// Mono 16-bit audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pcm {
    pub rate: u32,
    pub samples: Vec<i16>,
    /// Channels of the input before the down-mix.
    pub channels: u16,
}

/// Why an input file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {reason}")]
    Bad { path: String, reason: String },
}

fn bad(path: &Path, reason: impl std::fmt::Display) -> InputError {
    InputError::Bad {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Reads an audio file, chosen by its extension (case as on disk, like
/// Asterisk: `.WAV` is GSM, `.wav` PCM) and, for `.wav`, by its header.
pub fn read_file(path: &Path) -> Result<Pcm, InputError> {
    // A regular file of bounded size, as everything vmtool reads.
    let file = crate::fsutil::open_bounded(path, crate::fsutil::MAX_AUDIO_BYTES).map_err(|e| {
        InputError::Io {
            path: path.display().to_string(),
            source: e,
        }
    })?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_string();
    match ext.to_ascii_lowercase().as_str() {
        "mp3" | "ogg" | "oga" | "flac" => read_symphonia(path, file, &ext),
        "wav" if ext != "WAV" => match read_hound(path) {
            Ok(pcm) => Ok(pcm),
            // Not PCM (µ-law, A-law, GSM in RIFF, …): vmtool's decoders, then symphonia.
            Err(hound_err) => read_spool_format(path, "wav")
                .or_else(|_| read_symphonia(path, reopen(path)?, &ext))
                .map_err(|_| hound_err),
        },
        _ => match AudioFormat::from_extension(&ext) {
            AudioFormat::Other(_) => Err(bad(
                path,
                "unknown audio type: give a .wav, .mp3, .ogg or .flac file, or a format Asterisk writes (.gsm, .WAV, .ulaw, .alaw, .sln …)",
            )),
            _ => read_spool_format(path, &ext),
        },
    }
}

fn reopen(path: &Path) -> Result<crate::fsutil::Bounded, InputError> {
    crate::fsutil::open_bounded(path, crate::fsutil::MAX_AUDIO_BYTES).map_err(|e| InputError::Io {
        path: path.display().to_string(),
        source: e,
    })
}

fn read_spool_format(path: &Path, ext: &str) -> Result<Pcm, InputError> {
    let (rate, samples) = super::decode_all(path, ext).map_err(|e| bad(path, e))?;
    Ok(Pcm {
        rate,
        samples,
        channels: 1,
    })
}

fn read_hound(path: &Path) -> Result<Pcm, InputError> {
    let mut r =
        hound::WavReader::new(io::BufReader::new(reopen(path)?)).map_err(|e| bad(path, e))?;
    let spec = r.spec();
    if spec.channels == 0 || spec.sample_rate == 0 {
        return Err(bad(path, "a WAV header with no channels or no rate"));
    }
    let ch = usize::from(spec.channels);
    let floats: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => r
            .samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(|e| bad(path, e))?,
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
            r.samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
                .map_err(|e| bad(path, e))?
        }
    };
    // 16-bit mono stays sample for sample (no float round trip).
    let samples = if ch == 1
        && spec.bits_per_sample == 16
        && spec.sample_format == hound::SampleFormat::Int
    {
        floats
            .iter()
            .map(|&f| (f * 32768.0).round() as i16)
            .collect()
    } else {
        downmix(&floats, ch)
    };
    Ok(Pcm {
        rate: spec.sample_rate,
        samples,
        channels: spec.channels,
    })
}

fn read_symphonia(path: &Path, file: crate::fsutil::Bounded, ext: &str) -> Result<Pcm, InputError> {
    use symphonia::core::audio::SampleBuffer;
    use symphonia::core::codecs::DecoderOptions;
    use symphonia::core::errors::Error as SymErr;
    use symphonia::core::formats::FormatOptions;
    use symphonia::core::io::{MediaSourceStream, ReadOnlySource};
    use symphonia::core::meta::MetadataOptions;
    use symphonia::core::probe::Hint;

    let mss = MediaSourceStream::new(Box::new(ReadOnlySource::new(file)), Default::default());
    let mut hint = Hint::new();
    hint.with_extension(ext);
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            mss,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(|e| bad(path, format!("not a readable audio file ({e})")))?;
    let mut format = probed.format;
    let track = format
        .default_track()
        .ok_or_else(|| bad(path, "no audio track"))?;
    let track_id = track.id;
    let rate = track
        .codec_params
        .sample_rate
        .ok_or_else(|| bad(path, "no sample rate"))?;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| bad(path, format!("unsupported codec ({e})")))?;
    let mut mono = Vec::new();
    let mut channels = 1u16;
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymErr::IoError(e)) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(SymErr::ResetRequired) => break,
            Err(e) => return Err(bad(path, e)),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            // A damaged packet is skipped, as players do.
            Err(SymErr::DecodeError(_)) => continue,
            Err(e) => return Err(bad(path, e)),
        };
        let spec = *decoded.spec();
        channels = spec.channels.count().max(1) as u16;
        let mut buf = SampleBuffer::<f32>::new(decoded.capacity() as u64, spec);
        buf.copy_interleaved_ref(decoded);
        let ch = usize::from(channels);
        mono.extend(
            buf.samples()
                .chunks(ch)
                .map(|f| f.iter().sum::<f32>() / ch as f32),
        );
    }
    Ok(Pcm {
        rate,
        samples: mono.into_iter().map(to_i16).collect(),
        channels,
    })
}

fn downmix(interleaved: &[f32], ch: usize) -> Vec<i16> {
    interleaved
        .chunks(ch)
        .map(|f| to_i16(f.iter().sum::<f32>() / ch as f32))
        .collect()
}

fn to_i16(f: f32) -> i16 {
    (f * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

/// The audio at `rate` (rubato's band-limited FFT resampler); the same
/// samples when the rate already is `rate`.
pub fn resample(pcm: &Pcm, rate: u32) -> Result<Vec<i16>, String> {
    use rubato::audioadapter_buffers::direct::InterleavedSlice;
    use rubato::{Fft, FixedSync, Resampler};
    if pcm.rate == rate || pcm.samples.is_empty() {
        return Ok(pcm.samples.clone());
    }
    let input: Vec<f32> = pcm
        .samples
        .iter()
        .map(|&s| f32::from(s) / 32768.0)
        .collect();
    let mut r = Fft::<f32>::new(pcm.rate as usize, rate as usize, 1024, 1, FixedSync::Both)
        .map_err(|e| format!("cannot resample {} Hz to {rate} Hz: {e}", pcm.rate))?;
    let buf = InterleavedSlice::new(&input, 1, input.len())
        .map_err(|e| format!("cannot resample: {e}"))?;
    let out = r
        .process_all(&buf, input.len(), None)
        .map_err(|e| format!("cannot resample {} Hz to {rate} Hz: {e}", pcm.rate))?;
    Ok(out.take_data().into_iter().map(to_i16).collect())
}

/// What `--normalize` aims at.
#[derive(Debug, Clone, Copy)]
pub struct Loudness {
    /// Integrated loudness target, LUFS.
    pub target_lufs: f64,
    /// Highest sample peak allowed after the gain, dBFS.
    pub peak_dbfs: f64,
}

impl Default for Loudness {
    /// −19 LUFS (speech prompts on phones sit around −18 to −20) with peaks
    /// at most −1 dBFS, so the 8-bit G.711 and GSM codecs are not driven into
    /// clipping.
    fn default() -> Loudness {
        Loudness {
            target_lufs: -19.0,
            peak_dbfs: -1.0,
        }
    }
}

/// Scales the audio to the loudness target, never above the peak limit.
/// Returns the gain applied (dB); silence is left alone (0 dB).
pub fn normalize(pcm: &mut Pcm, target: Loudness) -> Result<f64, String> {
    use ebur128::{EbuR128, Mode};
    let mut meter = EbuR128::new(1, pcm.rate, Mode::I | Mode::SAMPLE_PEAK)
        .map_err(|e| format!("cannot measure loudness: {e}"))?;
    meter
        .add_frames_i16(&pcm.samples)
        .map_err(|e| format!("cannot measure loudness: {e}"))?;
    let lufs = meter
        .loudness_global()
        .map_err(|e| format!("cannot measure loudness: {e}"))?;
    let peak = meter
        .sample_peak(0)
        .map_err(|e| format!("cannot measure loudness: {e}"))?;
    if !lufs.is_finite() || peak <= 0.0 {
        return Ok(0.0);
    }
    let by_loudness = target.target_lufs - lufs;
    let by_peak = target.peak_dbfs - 20.0 * peak.log10();
    let gain_db = by_loudness.min(by_peak);
    let gain = 10f64.powf(gain_db / 20.0);
    for s in &mut pcm.samples {
        *s = (f64::from(*s) * gain).round().clamp(-32768.0, 32767.0) as i16;
    }
    Ok(gain_db)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, secs: f32, amp: f32) -> Vec<i16> {
        (0..(rate as f32 * secs) as usize)
            .map(|i| {
                (amp * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / rate as f32).sin()) as i16
            })
            .collect()
    }

    #[test]
    fn eight_khz_mono_16_bit_is_read_sample_for_sample() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("in.wav");
        let s = sine(8000, 0.5, 12000.0);
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&p, spec).unwrap();
        for &x in &s {
            w.write_sample(x).unwrap();
        }
        w.finalize().unwrap();
        let pcm = read_file(&p).unwrap();
        assert_eq!((pcm.rate, pcm.channels), (8000, 1));
        assert_eq!(pcm.samples, s);
        assert_eq!(resample(&pcm, 8000).unwrap(), s);
    }

    #[test]
    fn stereo_24_bit_is_mixed_down() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("in.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 48000,
            bits_per_sample: 24,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&p, spec).unwrap();
        for _ in 0..4800 {
            w.write_sample(1 << 22).unwrap(); // half scale
            w.write_sample(0).unwrap();
        }
        w.finalize().unwrap();
        let pcm = read_file(&p).unwrap();
        assert_eq!(
            (pcm.rate, pcm.channels, pcm.samples.len()),
            (48000, 2, 4800)
        );
        assert!(
            pcm.samples.iter().all(|&s| s == 8192),
            "{:?}",
            &pcm.samples[..4]
        );
        let at8 = resample(&pcm, 8000).unwrap();
        assert!((790..=810).contains(&at8.len()), "{}", at8.len());
    }

    /// flac is lossless: sox's encoding reads back sample for sample; vorbis
    /// reads back at its length.
    #[test]
    fn flac_and_ogg_made_by_sox_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("in.raw");
        let s = sine(16000, 1.0, 9000.0);
        let bytes: Vec<u8> = s.iter().flat_map(|x| x.to_le_bytes()).collect();
        std::fs::write(&raw, bytes).unwrap();
        for (ext, exact) in [("flac", true), ("ogg", false)] {
            let out = dir.path().join(format!("in.{ext}"));
            let st = std::process::Command::new("sox")
                .args([
                    "-t", "raw", "-r", "16000", "-e", "signed", "-b", "16", "-c", "1",
                ])
                .arg(&raw)
                .arg(&out)
                .status()
                .expect("sox is needed for the audio tests (apt-get install sox)");
            assert!(st.success());
            let pcm = read_file(&out).unwrap();
            assert_eq!(pcm.rate, 16000, "{ext}");
            if exact {
                assert_eq!(pcm.samples, s, "{ext}");
            } else {
                assert!(
                    pcm.samples.len().abs_diff(s.len()) < 1600,
                    "{ext}: {}",
                    pcm.samples.len()
                );
            }
        }
    }

    #[test]
    fn loudness_reaches_the_target_within_the_peak_limit() {
        let mut quiet = Pcm {
            rate: 8000,
            samples: sine(8000, 3.0, 300.0),
            channels: 1,
        };
        let gain = normalize(&mut quiet, Loudness::default()).unwrap();
        assert!(gain > 20.0, "{gain}");
        let peak = quiet
            .samples
            .iter()
            .map(|s| s.unsigned_abs())
            .max()
            .unwrap();
        // At most −1 dBFS.
        assert!(
            f64::from(peak) <= 32768.0 * 10f64.powf(-1.0 / 20.0) + 1.0,
            "{peak}"
        );
        let mut silence = Pcm {
            rate: 8000,
            samples: vec![0; 8000],
            channels: 1,
        };
        assert_eq!(normalize(&mut silence, Loudness::default()).unwrap(), 0.0);
    }
}
