//! Tests for the decoders: bit-exactness against libgsm (committed sox references,
//! and a differential run of sox over the fixture spool, sox-encoded speech, synthetic
//! and random signals), the handling of damaged files, and a mutation fuzz.

use std::io::{self, Cursor, Read};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::tests::{
    fixture_messages, fixture_spool, gsm, insert_chunk, pcm_header, pcm_wav, set_u32, wav49_header,
    Lcg,
};
use super::*;

// ---------------------------------------------------------------- helpers

/// Decode `bytes` to the end: samples and warnings.
fn decode_bytes(bytes: &[u8], format: AudioFormat) -> Result<(Vec<i16>, Vec<String>), AudioError> {
    let mut dec = Decoder::new(Cursor::new(bytes), format)?;
    let mut out = Vec::new();
    while dec.next_block(&mut out)? > 0 {}
    Ok((out, dec.warnings().to_vec()))
}

#[track_caller]
fn decoded(bytes: &[u8], format: AudioFormat) -> (Vec<i16>, Vec<String>) {
    decode_bytes(bytes, format).unwrap_or_else(|e| panic!("decode failed: {e}"))
}

#[track_caller]
fn header_error(bytes: &[u8], format: AudioFormat) -> String {
    match Decoder::new(Cursor::new(bytes), format) {
        Err(AudioError::BadHeader { reason }) => reason,
        Err(e) => panic!("expected BadHeader, got {e:?}"),
        Ok(_) => panic!("expected BadHeader, got a decoder"),
    }
}

#[track_caller]
fn assert_warns(warnings: &[String], needle: &str) {
    assert!(
        warnings.iter().any(|w| w.contains(needle)),
        "no warning containing {needle:?} in {warnings:?}"
    );
}

pub(super) fn le_samples(bytes: &[u8]) -> Vec<i16> {
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// Exact equality, reporting the first differing sample.
#[track_caller]
pub(super) fn assert_same(what: &str, ours: &[i16], reference: &[i16]) {
    if let Some(i) = ours.iter().zip(reference).position(|(a, b)| a != b) {
        panic!(
            "{what}: sample {i} differs: vmtool {} reference {}",
            ours[i], reference[i]
        );
    }
    assert_eq!(ours.len(), reference.len(), "{what}: sample count");
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/gsm")
}

pub(super) fn ext_of(p: &Path) -> &str {
    p.extension().and_then(|e| e.to_str()).expect("extension")
}

/// A reader that hands out one byte per call and is not `Seek`: decoders must not
/// depend on full reads or seeking.
struct Trickle<'a>(&'a [u8]);

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match (self.0.split_first(), buf.first_mut()) {
            (Some((&b, rest)), Some(slot)) => {
                *slot = b;
                self.0 = rest;
                Ok(1)
            }
            _ => Ok(0),
        }
    }
}

/// A reader that fails after `ok` bytes.
struct Failing<'a> {
    data: &'a [u8],
    ok: usize,
}

impl Read for Failing<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.ok == 0 {
            return Err(io::Error::other("disk on fire"));
        }
        let n = buf.len().min(self.ok).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        self.ok -= n;
        Ok(n)
    }
}

// ---------------------------------------------------------------- bit-exact references

/// Every committed input decodes to exactly the samples sox (libgsm) gave.
#[test]
fn committed_references_are_bit_exact() {
    let dir = data_dir();
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/data/gsm")
        .map(|e| e.expect("entry").path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("gsm" | "WAV")))
        .collect();
    inputs.sort();
    assert_eq!(inputs.len(), 7, "{inputs:?}");
    let mut samples = 0;
    for input in &inputs {
        let reference =
            le_samples(&std::fs::read(format!("{}.raw", input.display())).expect("reference"));
        let (rate, ours) = decode_all(input, ext_of(input)).expect("decode");
        assert_eq!(rate, 8000);
        let what = input.display().to_string();
        if input.ends_with("truncated.WAV") {
            // sox drops the whole partial block; vmtool also decodes its complete
            // first frame, which must be what sox decodes from the untruncated file.
            let full = std::fs::read(dir.join("sox-speech.WAV.raw")).expect("reference");
            assert_same(&what, &ours[..reference.len()], &reference);
            assert_same(&what, &ours, &le_samples(&full)[..reference.len() + 160]);
        } else {
            assert_same(&what, &ours, &reference);
        }
        samples += ours.len();
    }
    assert_eq!(samples, 59_840);
}

#[test]
fn same_frames_in_both_packings_decode_identically() {
    let dir = data_dir();
    let (_, gsm) = decode_all(&dir.join("asterisk-speech.gsm"), "gsm").expect("gsm");
    let (_, wav49) = decode_all(&dir.join("asterisk-speech.WAV"), "WAV").expect("WAV");
    assert_eq!(gsm.len(), 12_800);
    assert_same("WAV vs gsm", &wav49, &gsm);
}

#[test]
fn committed_truncated_block_keeps_its_first_frame() {
    let path = data_dir().join("truncated.WAV");
    let bytes = std::fs::read(&path).expect("read");
    let (samples, warnings) = decoded(&bytes, AudioFormat::Wav49);
    assert_eq!(samples.len(), 25 * 320 + 160);
    assert_eq!(
        warnings,
        [
            "data chunk declares 1690 bytes but the file ends after 1673: truncated",
            "truncated last block: 48 of 65 bytes; decoded its first frame, ignored the rest"
        ]
    );
}

#[test]
fn sox_fact_count_is_only_a_cross_check() {
    // sox writes the exact count (8108) in fact; the blocks hold 26 × 320.
    let bytes = std::fs::read(data_dir().join("sox-speech.WAV")).expect("read");
    let (samples, warnings) = decoded(&bytes, AudioFormat::Wav49);
    assert_eq!(samples.len(), 8320);
    assert!(warnings.is_empty(), "{warnings:?}");
}

/// The Asterisk fixture messages: `.WAV` and `.gsm` carry the same frames and decode
/// identically (except that Asterisk's wav49 writer drops an odd last frame); every
/// format has the length probing measured, and the GSM audio follows the PCM
/// recording closely.
#[test]
fn fixture_formats_agree() {
    let spool = fixture_spool();
    let mut messages = 0;
    for (_, audio) in fixture_messages(&spool) {
        let find = |ext: &str| audio.iter().find(|p| ext_of(p) == ext).expect(ext);
        let mut decoded = Vec::new();
        for ext in ["wav", "WAV", "gsm"] {
            let path = find(ext);
            let mut dec = open(path, ext).expect("open");
            let mut samples = Vec::new();
            while dec.next_block(&mut samples).expect("decode") > 0 {}
            assert!(
                dec.warnings().is_empty(),
                "{}: {:?}",
                path.display(),
                dec.warnings()
            );
            let info = probe_file(path, ext).expect("probe");
            assert_eq!(
                Some(samples.len() as u64),
                info.samples,
                "{}",
                path.display()
            );
            decoded.push(samples);
        }
        let (wav49, gsm) = (&decoded[1], &decoded[2]);
        assert!(
            wav49.len() == gsm.len() || wav49.len() + 160 == gsm.len(),
            "{} vs {}",
            wav49.len(),
            gsm.len()
        );
        assert_same("WAV vs gsm", wav49, &gsm[..wav49.len()]);
        // Normalised correlation of the GSM decode with the PCM recording.
        let (pcm, gsm) = (&decoded[0], &decoded[2]);
        let n = pcm.len().min(gsm.len());
        let dot = |a: &[i16], b: &[i16]| -> f64 {
            a.iter()
                .zip(b)
                .map(|(&x, &y)| f64::from(x) * f64::from(y))
                .sum()
        };
        let r = dot(&pcm[..n], &gsm[..n])
            / (dot(&pcm[..n], &pcm[..n]) * dot(&gsm[..n], &gsm[..n])).sqrt();
        assert!(r > 0.9, "correlation {r}");
        messages += 1;
    }
    assert_eq!(messages, 13);
}

// ---------------------------------------------------------------- differential vs sox

/// Whether sox can be run. Under `CI=true` its absence fails the test instead.
pub(super) fn sox_available() -> bool {
    let ok = Command::new("sox")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "sox is required when CI=true (apt-get install sox libsox-fmt-all)"
        );
        eprintln!("note: sox not found; skipping the differential test against libgsm");
    }
    ok
}

#[track_caller]
pub(super) fn sox(args: &[&str]) {
    let out = Command::new("sox").args(args).output().expect("run sox");
    assert!(
        out.status.success(),
        "sox {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What `sox -D [input_opts] input -t raw -e signed -b 16` decodes.
pub(super) fn sox_decode(input: &Path, input_opts: &[&str], scratch: &Path) -> Vec<i16> {
    let out = scratch.join("sox-out.raw");
    let input = input.to_str().expect("utf-8 path");
    let out_s = out.to_str().expect("utf-8 path");
    let mut args = vec!["-D"];
    args.extend_from_slice(input_opts);
    args.extend_from_slice(&[input, "-t", "raw", "-e", "signed", "-b", "16", out_s]);
    sox(&args);
    le_samples(&std::fs::read(&out).expect("sox output"))
}

/// Compare vmtool and sox on one file; returns the samples compared.
fn differ(path: &Path, ext: &str, sox_opts: &[&str], scratch: &Path) -> usize {
    let (_, ours) = decode_all(path, ext).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let theirs = sox_decode(path, sox_opts, scratch);
    assert_same(&path.display().to_string(), &ours, &theirs);
    ours.len()
}

/// Random frames with the signature, or random MS-GSM blocks in Asterisk's header:
/// random parameters saturate every filter of the decoder.
fn random_gsm(frames: usize, rng: &mut Lcg) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..frames {
        out.push(0xD0 | (rng.next() as u8 & 0x0F));
        out.extend((0..32).map(|_| rng.next() as u8));
    }
    out
}

fn random_wav49(blocks: u32, rng: &mut Lcg) -> Vec<u8> {
    let data = blocks * 65;
    let mut f = wav49_header(52 + data, blocks * 320, data);
    f.extend((0..data).map(|_| rng.next() as u8));
    f
}

#[test]
fn differential_against_sox() {
    if !sox_available() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let scratch = tmp.path();
    let (mut files, mut samples) = (0, 0);
    macro_rules! check {
        ($path:expr, $ext:expr, $opts:expr $(,)?) => {{
            samples += differ($path, $ext, $opts, scratch);
            files += 1;
        }};
    }

    // 1. Every audio file of the Asterisk fixture spool, as Asterisk wrote it.
    let mut speech = Vec::new();
    for (_, audio) in fixture_messages(&fixture_spool()) {
        for path in audio {
            let ext = ext_of(&path).to_string();
            check!(&path, &ext, &[]);
            if ext == "wav" {
                speech.push(path);
            }
        }
    }
    assert_eq!(files, 39);

    // 2. Signals for sox to encode: the fixture speech, and synthetic signals for the
    //    saturation paths (full-scale square and sawtooth, noise, a sweep, silence,
    //    and an odd length that leaves a padded last frame).
    let synth: &[(&str, &[&str])] = &[
        ("silence", &["trim", "0", "1"]),
        ("square", &["synth", "2", "square", "440"]),
        ("square-low", &["synth", "2", "square", "97"]),
        ("sawtooth", &["synth", "1", "sawtooth", "1234"]),
        ("sweep", &["synth", "3", "sine", "20-3990"]),
        ("noise", &["synth", "2", "whitenoise"]),
        ("pinknoise", &["synth", "1", "pinknoise"]),
        ("odd", &["synth", "1.0137", "sine", "300"]),
    ];
    let mut sources = speech.clone();
    for (name, effect) in synth {
        let path = scratch.join(format!("{name}.wav"));
        let p = path.to_str().expect("utf-8");
        let mut args = vec!["-D", "-n", "-r", "8000", "-c", "1", "-b", "16", p];
        args.extend_from_slice(effect);
        sox(&args);
        sources.push(path);
    }
    for (i, src) in sources.iter().enumerate() {
        let s = src.to_str().expect("utf-8");
        let g = scratch.join(format!("enc{i}.gsm"));
        let w = scratch.join(format!("enc{i}.WAV"));
        sox(&["-D", s, "-t", "gsm", g.to_str().expect("utf-8")]);
        sox(&[
            "-D",
            s,
            "-t",
            "wav",
            "-e",
            "gsm",
            w.to_str().expect("utf-8"),
        ]);
        check!(&g, "gsm", &[]);
        check!(&w, "WAV", &[]);
    }

    // 3. Random parameters.
    let mut rng = Lcg(0x0610);
    let g = scratch.join("random.gsm");
    std::fs::write(&g, random_gsm(500, &mut rng)).expect("write");
    check!(&g, "gsm", &[]);
    let w = scratch.join("random.WAV");
    std::fs::write(&w, random_wav49(250, &mut rng)).expect("write");
    check!(&w, "WAV", &[]);

    // 4. G.711 (every code, several times) and raw signed linear.
    let codes: Vec<u8> = (0..4).flat_map(|_| 0..=255u8).collect();
    for (ext, t) in [("ulaw", "ul"), ("alaw", "al")] {
        let path = scratch.join(format!("codes.{ext}"));
        std::fs::write(&path, &codes).expect("write");
        check!(&path, ext, &["-t", t, "-r", "8000", "-c", "1"]);
    }
    let path = scratch.join("noise.sln");
    std::fs::write(
        &path,
        (0..20_000).map(|_| rng.next() as u8).collect::<Vec<_>>(),
    )
    .expect("write");
    check!(
        &path,
        "sln",
        &["-t", "raw", "-e", "signed", "-b", "16", "-r", "8000", "-c", "1"],
    );

    let encoded = 2 * (speech.len() + synth.len());
    assert_eq!(files, 39 + encoded + 5);
    eprintln!("differential: {files} files, {samples} samples identical to sox");
}

// ---------------------------------------------------------------- API and formats

#[test]
fn rates_channels_and_unsupported_formats() {
    let cases = [
        (pcm_wav(10), AudioFormat::Wav, 8000),
        (gsm(1), AudioFormat::Gsm, 8000),
        (vec![0xff; 4], AudioFormat::Ulaw, 8000),
        (vec![0xd5; 4], AudioFormat::Alaw, 8000),
        (vec![0; 4], AudioFormat::Sln { rate: 16_000 }, 16_000),
        (vec![0; 4], AudioFormat::Sln { rate: 48_000 }, 48_000),
    ];
    for (bytes, format, rate) in cases {
        let dec = Decoder::new(Cursor::new(bytes), format.clone()).expect("decoder");
        assert_eq!((dec.sample_rate(), dec.channels()), (rate, 1), "{format:?}");
    }
    for format in [
        AudioFormat::G722,
        AudioFormat::Au,
        AudioFormat::Other("g729".into()),
    ] {
        match Decoder::new(Cursor::new(vec![0u8; 100]), format.clone()) {
            Err(e @ AudioError::Unsupported { .. }) => {
                assert_eq!(
                    e.to_string(),
                    format!("cannot decode {} files", format.name())
                )
            }
            other => panic!("{format:?}: {:?}", other.map(|_| ())),
        }
    }
    let err = open(Path::new("/nonexistent/msg0000.g729"), "g729")
        .err()
        .expect("error");
    assert_eq!(err.to_string(), "cannot decode g729 files");
    let err = open(Path::new("/nonexistent/msg0000.mp3"), "mp3")
        .err()
        .expect("error");
    let AudioError::Unsupported { format, op } = err else {
        panic!("{err:?}");
    };
    assert_eq!((format.as_str(), op), ("mp3", AudioOp::Decode));
    assert!(matches!(
        open(Path::new("/nonexistent/msg0000.wav"), "wav"),
        Err(AudioError::Io(_))
    ));
}

#[test]
fn wav_pcm_samples_and_wav16() {
    let mut f = pcm_header(36 + 8, 8, 1, 1, 8000, 16);
    f.extend_from_slice(&[0x01, 0x00, 0xff, 0xff, 0x00, 0x80, 0xff, 0x7f]);
    let (samples, warnings) = decoded(&f, AudioFormat::Wav);
    assert_eq!(samples, [1, -1, -32768, 32767]);
    assert!(warnings.is_empty(), "{warnings:?}");

    let mut f = pcm_header(36 + 4, 4, 1, 1, 16_000, 16);
    f.extend_from_slice(&[0x02, 0x00, 0x03, 0x00]);
    let dec = Decoder::new(Cursor::new(&f), AudioFormat::Wav16).expect("wav16");
    assert_eq!(dec.sample_rate(), 16_000);
    assert!(dec.warnings().is_empty());
    // 16 kHz in a .wav: decoded at 16 kHz, with Asterisk's objection.
    let dec = Decoder::new(Cursor::new(&f), AudioFormat::Wav).expect("wav");
    assert_eq!(dec.sample_rate(), 16_000);
    let refused = "16000 Hz in a .wav file: Asterisk's reader would refuse it";
    assert_warns(dec.warnings(), refused);
}

#[test]
fn wav_zero_sizes_decode_to_the_end_of_the_file() {
    let mut f = pcm_header(0, 0, 1, 1, 8000, 16);
    f.extend_from_slice(&[1, 0, 2, 0, 3, 0]);
    let (samples, warnings) = decoded(&f, AudioFormat::Wav);
    assert_eq!(samples, [1, 2, 3]);
    assert_eq!(
        warnings,
        [
            "data size is 0 (still being recorded, or left by a crash): decoding to the end of \
          the file"
        ]
    );
    // Header only.
    let (samples, warnings) = decoded(&pcm_header(0, 0, 1, 1, 8000, 16), AudioFormat::Wav);
    assert!(samples.is_empty());
    assert_warns(&warnings, "no audio after the header");
}

#[test]
fn wav_declared_size_is_honoured_and_checked() {
    // Truncated: 10 bytes declared, 6 present.
    let mut f = pcm_header(46, 10, 1, 1, 8000, 16);
    f.extend_from_slice(&[1, 0, 2, 0, 3, 0]);
    let (samples, warnings) = decoded(&f, AudioFormat::Wav);
    assert_eq!(samples, [1, 2, 3]);
    assert_eq!(
        warnings,
        ["data chunk declares 10 bytes but the file ends after 6: truncated"]
    );
    // A trailing chunk after the data is not audio.
    let mut f = pcm_header(36 + 4 + 12, 4, 1, 1, 8000, 16);
    f.extend_from_slice(&[1, 0, 2, 0]);
    f.extend_from_slice(b"LIST\x04\x00\x00\x00abcd");
    let (samples, warnings) = decoded(&f, AudioFormat::Wav);
    assert_eq!((samples, warnings.len()), (vec![1, 2], 0));
    // Odd data length: the last byte is half a sample.
    let mut f = pcm_header(36 + 5, 5, 1, 1, 8000, 16);
    f.extend_from_slice(&[1, 0, 2, 0, 9]);
    let (samples, warnings) = decoded(&f, AudioFormat::Wav);
    assert_eq!(samples, [1, 2]);
    assert_eq!(warnings, ["truncated last sample: 1 byte ignored"]);
    // An absurd size decodes what is there.
    let mut f = pcm_header(u32::MAX, u32::MAX, 1, 1, 8000, 16);
    f.extend_from_slice(&[1, 0]);
    let (samples, warnings) = decoded(&f, AudioFormat::Wav);
    assert_eq!(samples, [1]);
    assert_warns(
        &warnings,
        "declares 4294967295 bytes but the file ends after 2",
    );
}

#[test]
fn wav_extra_chunks_and_odd_chunk_sizes() {
    let f = insert_chunk(&pcm_wav(3), 36, b"LIST", b"odd");
    let (samples, warnings) = decoded(&f, AudioFormat::Wav);
    assert_eq!((samples.len(), warnings.len()), (3, 0));
}

#[test]
fn wav_header_errors_are_precise() {
    let stereo = pcm_header(36, 0, 1, 2, 8000, 16);
    assert!(header_error(&stereo, AudioFormat::Wav).starts_with("2 channels"));
    let eight = pcm_header(36, 0, 1, 1, 8000, 8);
    assert_eq!(
        header_error(&eight, AudioFormat::Wav),
        "8-bit PCM: only 16-bit PCM is decoded"
    );
    let mp3 = pcm_header(36, 0, 0x55, 1, 8000, 16);
    assert_eq!(
        header_error(&mp3, AudioFormat::Wav),
        "format tag 85 (MP3) is not decoded: PCM, G.711 and GSM 6.10 are"
    );
    let zero_rate = pcm_header(36, 0, 1, 1, 0, 16);
    assert_eq!(
        header_error(&zero_rate, AudioFormat::Wav),
        "sample rate is 0 Hz"
    );

    let wav = pcm_wav(4);
    assert_eq!(
        header_error(&wav[..5], AudioFormat::Wav),
        "file is only 5 bytes, shorter than the 12-byte RIFF header"
    );
    assert_eq!(
        header_error(&wav[..30], AudioFormat::Wav),
        "file ends after 30 bytes, inside the header"
    );
    assert_eq!(
        header_error(&wav[..36], AudioFormat::Wav),
        "no data chunk before the end of the 36-byte file"
    );
    let mut huge = insert_chunk(&wav, 36, b"LIST", b"abcd");
    set_u32(&mut huge, 40, 0xffff_fff0);
    assert_eq!(
        header_error(&huge, AudioFormat::Wav),
        "a chunk before the data chunk declares more bytes than the 64-byte file holds"
    );
    let mut not_riff = wav.clone();
    not_riff[..4].copy_from_slice(b"RIFX");
    assert!(header_error(&not_riff, AudioFormat::Wav).starts_with("not a RIFF file"));
    // No fmt chunk: the data chunk comes first.
    let mut no_fmt = b"RIFF\x10\x00\x00\x00WAVEdata\x02\x00\x00\x00".to_vec();
    no_fmt.extend_from_slice(&[1, 0]);
    assert!(header_error(&no_fmt, AudioFormat::Wav).starts_with("no fmt chunk"));
    // Errors read as sentences.
    let e = Decoder::new(Cursor::new(&wav[..5]), AudioFormat::Wav)
        .err()
        .expect("error");
    assert_eq!(
        e.to_string(),
        "bad header: file is only 5 bytes, shorter than the 12-byte RIFF header"
    );
}

#[test]
fn riff_decodes_by_its_fmt_chunk_with_warnings() {
    // PCM named .WAV.
    let (samples, warnings) = decoded(&pcm_wav(3), AudioFormat::Wav49);
    assert_eq!(samples, [0x1111; 3]);
    assert_eq!(
        warnings,
        ["PCM audio in a .WAV (wav49) file: Asterisk's reader would refuse it (decoded as found)"]
    );
    // µ-law and A-law RIFF files.
    let mut f = pcm_header(36 + 2, 2, 7, 1, 8000, 8);
    f.extend_from_slice(&[0x00, 0xff]);
    let (samples, warnings) = decoded(&f, AudioFormat::Wav);
    assert_eq!(samples, [-32124, 0]);
    assert_warns(&warnings, "µ-law audio in a .wav file");
    let mut f = pcm_header(36 + 2, 2, 6, 1, 8000, 8);
    f.extend_from_slice(&[0xd5, 0x55]);
    assert_eq!(decoded(&f, AudioFormat::Wav).0, [8, -8]);
    // GSM named .wav.
    let wav49 = std::fs::read(data_dir().join("asterisk-speech.WAV")).expect("read");
    let (samples, warnings) = decoded(&wav49, AudioFormat::Wav);
    assert_eq!(samples.len(), 12_800);
    assert_warns(&warnings, "GSM 6.10 audio in a .wav file");
    // GSM with a block size that is not MS-GSM's.
    let mut bad = wav49.clone();
    bad[32] = 33;
    assert_eq!(
        header_error(&bad, AudioFormat::Wav49),
        "GSM 6.10 with block align 33: MS-GSM blocks are 65 bytes"
    );
    let mut odd_spb = wav49.clone();
    odd_spb[38] = 0x41;
    assert_warns(
        &decoded(&odd_spb, AudioFormat::Wav49).1,
        "fmt says 321 samples per block",
    );
}

/// A `.WAV` made of the committed speech blocks, with `blocks` blocks.
fn speech_wav49(blocks: u32) -> Vec<u8> {
    let full = std::fs::read(data_dir().join("asterisk-speech.WAV")).expect("read");
    let data = blocks * 65;
    let mut f = wav49_header(52 + data, blocks * 320, data);
    f.extend_from_slice(&full[60..60 + data as usize]);
    f
}

#[test]
fn wav49_truncated_and_padded_blocks() {
    let whole = speech_wav49(3);
    let (reference, warnings) = decoded(&whole, AudioFormat::Wav49);
    assert_eq!((reference.len(), warnings.len()), (960, 0));

    // Zero sizes and 17 bytes of a fourth block: three blocks and a warning.
    let mut f = speech_wav49(4);
    f.truncate(60 + 3 * 65 + 17);
    set_u32(&mut f, 4, 0);
    set_u32(&mut f, 48, 0);
    set_u32(&mut f, 56, 0);
    let (samples, warnings) = decoded(&f, AudioFormat::Wav49);
    assert_same("truncated", &samples, &reference);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert_warns(&warnings, "data size is 0");
    assert_warns(&warnings, "truncated last block: 17 bytes ignored");

    // 33 bytes hold the whole first frame of a block (260 bits): it is decoded.
    let (four, _) = decoded(&speech_wav49(4), AudioFormat::Wav49);
    for (tail, samples_wanted) in [(32, 960), (33, 1120), (64, 1120)] {
        let mut f = speech_wav49(4);
        f.truncate(60 + 3 * 65 + tail);
        let (samples, warnings) = decoded(&f, AudioFormat::Wav49);
        assert_same("half block", &samples, &four[..samples_wanted]);
        let needle = if samples_wanted > 960 {
            format!("truncated last block: {tail} of 65 bytes; decoded its first frame")
        } else {
            format!("truncated last block: {tail} bytes ignored")
        };
        assert_warns(&warnings, &needle);
    }

    // A pad byte after an odd number of blocks is not a partial block.
    let mut f = speech_wav49(3);
    set_u32(&mut f, 56, 0);
    f.push(0);
    let (samples, warnings) = decoded(&f, AudioFormat::Wav49);
    assert_eq!(samples.len(), 960);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
}

#[test]
fn wav49_fact_cross_check() {
    let mut f = speech_wav49(3);
    set_u32(&mut f, 48, 5000);
    let (samples, warnings) = decoded(&f, AudioFormat::Wav49);
    assert_eq!(samples.len(), 960);
    assert_eq!(
        warnings,
        ["fact chunk counts 5000 samples, the data holds 960"]
    );
    // An exact count within the last block (as sox writes it) is fine.
    set_u32(&mut f, 48, 641);
    assert!(decoded(&f, AudioFormat::Wav49).1.is_empty());
}

#[test]
fn gsm_truncated_frame_and_bad_signature() {
    let frames = std::fs::read(data_dir().join("asterisk-speech.gsm")).expect("read");
    let (reference, _) = decoded(&frames[..3 * 33], AudioFormat::Gsm);
    let (samples, warnings) = decoded(&frames[..3 * 33 + 20], AudioFormat::Gsm);
    assert_same("truncated", &samples, &reference);
    assert_eq!(warnings, ["truncated last frame: 20 bytes ignored"]);

    // A bad frame after good ones: the good samples, then the error, then the end.
    let mut f = frames[..4 * 33].to_vec();
    f[3 * 33] = 0x5a;
    let mut dec = Decoder::new(Cursor::new(&f), AudioFormat::Gsm).expect("decoder");
    let mut out = Vec::new();
    assert_eq!(dec.next_block(&mut out).expect("good frames"), 480);
    assert_same("before the bad frame", &out, &reference);
    let err = dec.next_block(&mut out).expect_err("bad frame");
    assert_eq!(
        err.to_string(),
        "bad audio data at byte 99: GSM frame 3 lacks the 0xD signature (first byte 0x5a): \
         not raw GSM 06.10, or corrupt"
    );
    assert_eq!(dec.next_block(&mut out).expect("end"), 0);

    // Not GSM at all: the first call fails.
    let err = decode_bytes(&pcm_wav(40), AudioFormat::Gsm).expect_err("not GSM");
    assert!(
        matches!(err, AudioError::BadData { offset: 0, .. }),
        "{err:?}"
    );
}

#[test]
fn headerless_formats_and_odd_lengths() {
    let (samples, warnings) = decoded(
        &[0x00, 0x80, 0xff, 0x7f, 0x34],
        AudioFormat::Sln { rate: 8000 },
    );
    assert_eq!(samples, [-32768, 32767]);
    assert_eq!(warnings, ["truncated last sample: 1 byte ignored"]);
    assert_eq!(
        decoded(&[0x00, 0x80, 0xff, 0x7f], AudioFormat::Ulaw).0,
        [-32124, 32124, 0, 0]
    );
    assert_eq!(
        decoded(&[0xd5, 0x55, 0xaa, 0x2a], AudioFormat::Alaw).0,
        [8, -8, 32256, -32256]
    );
}

#[test]
fn empty_files_are_empty_audio_with_a_warning() {
    for format in [
        AudioFormat::Wav,
        AudioFormat::Wav16,
        AudioFormat::Wav49,
        AudioFormat::Gsm,
        AudioFormat::Ulaw,
        AudioFormat::Alaw,
        AudioFormat::Sln { rate: 8000 },
    ] {
        let (samples, warnings) = decoded(&[], format.clone());
        assert!(samples.is_empty(), "{format:?}");
        assert_eq!(
            warnings,
            ["empty file (0 bytes): still being recorded, or left by a crash"],
            "{format:?}"
        );
    }
}

#[test]
fn plain_readers_one_byte_at_a_time() {
    let dir = data_dir();
    for (name, format) in [
        ("asterisk-speech.WAV", AudioFormat::Wav49),
        ("asterisk-speech.gsm", AudioFormat::Gsm),
    ] {
        let bytes = std::fs::read(dir.join(name)).expect("read");
        let (reference, _) = decoded(&bytes, format.clone());
        let mut dec = Decoder::new(Trickle(&bytes), format).expect("decoder");
        let mut out = Vec::new();
        while dec.next_block(&mut out).expect("decode") > 0 {}
        assert_same(name, &out, &reference);
    }
    let f = insert_chunk(&pcm_wav(5), 36, b"LIST", b"hello");
    let mut dec = Decoder::new(Trickle(&f), AudioFormat::Wav).expect("decoder");
    let mut out = Vec::new();
    while dec.next_block(&mut out).expect("decode") > 0 {}
    assert_eq!(out, [0x1111; 5]);
}

#[test]
fn io_errors_are_returned_and_end_decoding() {
    let bytes = std::fs::read(data_dir().join("asterisk-speech.gsm")).expect("read");
    assert!(matches!(
        Decoder::new(
            Failing {
                data: &bytes,
                ok: 0
            },
            AudioFormat::Wav49
        ),
        Err(AudioError::Io(_))
    ));
    let mut dec = Decoder::new(
        Failing {
            data: &bytes,
            ok: 1000,
        },
        AudioFormat::Gsm,
    )
    .expect("decoder");
    let mut out = Vec::new();
    let mut result = Ok(1);
    while matches!(result, Ok(n) if n > 0) {
        result = dec.next_block(&mut out);
    }
    assert!(matches!(result, Err(AudioError::Io(_))), "{result:?}");
    assert_eq!(dec.next_block(&mut out).expect("ended"), 0);
}

#[test]
fn iterator_matches_blocks() {
    let bytes = std::fs::read(data_dir().join("sox-speech.WAV")).expect("read");
    let (reference, _) = decoded(&bytes, AudioFormat::Wav49);
    let dec = Decoder::new(Cursor::new(&bytes), AudioFormat::Wav49).expect("decoder");
    let samples: Result<Vec<i16>, _> = dec.collect();
    assert_same("iterator", &samples.expect("samples"), &reference);

    // Mixing: samples the iterator decoded are not lost by next_block.
    let mut dec = Decoder::new(Cursor::new(&bytes), AudioFormat::Wav49).expect("decoder");
    let mut out: Vec<i16> = dec.by_ref().take(5).map(|s| s.expect("sample")).collect();
    while dec.next_block(&mut out).expect("block") > 0 {}
    assert_same("mixed", &out, &reference);
    assert!(dec.next().is_none());

    // The iterator yields the error once, then ends.
    let mut f = gsm(2);
    f[33] = 0;
    let items: Vec<_> = Decoder::new(Cursor::new(&f), AudioFormat::Gsm)
        .expect("decoder")
        .collect();
    assert_eq!(items.len(), 161);
    assert!(items[160].is_err());
}

#[test]
fn blocks_are_bounded() {
    let mut f = pcm_header(0, 0, 1, 1, 8000, 16);
    f.resize(44 + 2 * 10_000, 0);
    let mut dec = Decoder::new(Cursor::new(&f), AudioFormat::Wav).expect("decoder");
    let mut sizes = Vec::new();
    loop {
        let mut out = Vec::new();
        match dec.next_block(&mut out).expect("block") {
            0 => break,
            n => sizes.push(n),
        }
    }
    assert_eq!(sizes, [4096, 4096, 1808]);
    assert_eq!(dec.samples_decoded(), 10_000);
}

#[test]
fn preferred_format_order() {
    let pick =
        |exts: &[&str]| preferred_format(&exts.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert_eq!(pick(&["gsm", "WAV", "wav"]).as_deref(), Some("wav"));
    assert_eq!(pick(&["gsm", "wav16", "sln"]).as_deref(), Some("wav16"));
    assert_eq!(pick(&["gsm", "sln16", "sln"]).as_deref(), Some("sln"));
    assert_eq!(pick(&["gsm", "slin16", "WAV"]).as_deref(), Some("slin16"));
    assert_eq!(pick(&["gsm", "WAV"]).as_deref(), Some("WAV"));
    assert_eq!(pick(&["ulaw", "gsm", "alaw"]).as_deref(), Some("gsm"));
    assert_eq!(pick(&["alaw", "ul"]).as_deref(), Some("ul"));
    assert_eq!(pick(&["alw"]).as_deref(), Some("alw"));
    assert_eq!(pick(&[".gsm", ".wav49"]).as_deref(), Some(".wav49"));
    assert_eq!(pick(&["g729", "mp3", "au", "g722", "txt"]), None);
    assert_eq!(pick(&[]), None);
    // Ties between aliases are broken by name, not by order.
    assert_eq!(pick(&["sln", "raw"]), pick(&["raw", "sln"]));
}

// ---------------------------------------------------------------- fuzz

/// Decode to the end, or to the first error, checking the output stays proportional
/// to the input (nothing is invented from a header size).
fn decode_fuzzed(bytes: &[u8], format: &AudioFormat) {
    let Ok(mut dec) = Decoder::new(Cursor::new(bytes), format.clone()) else {
        return;
    };
    let mut out = Vec::new();
    let mut calls = 0;
    while let Ok(n) = dec.next_block(&mut out) {
        if n == 0 {
            break;
        }
        calls += 1;
        assert!(calls <= bytes.len() + 1, "decoder does not end");
    }
    assert!(
        out.len() <= 5 * bytes.len(),
        "{} samples from {} bytes",
        out.len(),
        bytes.len()
    );
    assert!(dec.warnings().len() <= 6, "{:?}", dec.warnings());
}

#[test]
fn never_panics_on_truncations_and_mutations() {
    let formats = [
        AudioFormat::Wav,
        AudioFormat::Wav16,
        AudioFormat::Wav49,
        AudioFormat::Gsm,
        AudioFormat::Ulaw,
        AudioFormat::Alaw,
        AudioFormat::Sln { rate: 8000 },
    ];
    let speech_gsm = std::fs::read(data_dir().join("asterisk-speech.gsm")).expect("read");
    let mut ulaw_wav = pcm_header(36 + 40, 40, 7, 1, 8000, 8);
    ulaw_wav.extend((0..40).map(|i| i as u8 * 6));
    let seeds = [
        pcm_wav(40),
        speech_wav49(3),
        speech_gsm[..4 * 33].to_vec(),
        ulaw_wav,
        insert_chunk(&speech_wav49(2), 52, b"LIST", b"abc"),
        (0..=255u8).collect(),
    ];
    let mut rng = Lcg(0xdec0de);
    let mut runs = 0;
    for seed in &seeds {
        for format in &formats {
            for len in 0..seed.len().min(140) {
                decode_fuzzed(&seed[..len], format);
                runs += 1;
            }
            for _ in 0..120 {
                let mut f = seed.clone();
                let cut = rng.next() as usize % (f.len() + 1);
                if rng.next().is_multiple_of(3) {
                    f.truncate(cut);
                }
                if f.is_empty() {
                    continue;
                }
                for _ in 0..=rng.next() % 6 {
                    // Mostly the header region, sometimes anywhere.
                    let span = if rng.next().is_multiple_of(4) {
                        f.len()
                    } else {
                        f.len().min(70)
                    };
                    let at = rng.next() as usize % span;
                    if rng.next().is_multiple_of(2) {
                        f[at] = rng.next() as u8;
                    } else if at + 4 <= f.len() {
                        let v = [0, 1, 65, 0xffff_ffff, 0x8000_0000, rng.next() as u32]
                            [(rng.next() % 6) as usize];
                        set_u32(&mut f, at, v);
                    }
                }
                decode_fuzzed(&f, format);
                runs += 1;
            }
        }
    }
    // Random bytes of every length through every decoder.
    for len in 0..200 {
        let f: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        for format in &formats {
            decode_fuzzed(&f, format);
            runs += 1;
        }
    }
    assert!(runs >= 10_000, "{runs} runs");
}
