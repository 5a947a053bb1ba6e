//! Tests for the encoders: Asterisk's own files reproduced byte for byte, libgsm (sox)
//! reproduced byte for byte on a corpus of real and synthetic speech
//! (`tests/data/speech/`) and hostile signals, G.711 for every sample value, and every
//! written file decoding with sox as with vmtool.

use std::io::Cursor;
use std::path::Path;

use super::decode_tests::{assert_same, ext_of, le_samples, sox, sox_available, sox_decode};
use super::encode::{encoded_len, wav49_header, wav_header, WAV49_HEADER_LEN};
use super::tests::{fixture_messages, fixture_spool, Lcg};
use super::*;

// ---------------------------------------------------------------- helpers

fn encode(format: &AudioFormat, samples: &[i16]) -> Vec<u8> {
    let rate = format.sample_rate().expect("rate");
    let mut out = Vec::new();
    let n = encode_to(format, samples, rate, &mut out)
        .unwrap_or_else(|e| panic!("encode {}: {e}", format.name()));
    assert_eq!(n, out.len() as u64, "{}: returned length", format.name());
    assert_eq!(
        encoded_len(format, samples.len()).expect("len"),
        n,
        "{}: encoded_len",
        format.name()
    );
    out
}

#[track_caller]
fn assert_bytes(what: &str, ours: &[u8], reference: &[u8]) {
    if let Some(i) = ours.iter().zip(reference).position(|(a, b)| a != b) {
        panic!(
            "{what}: byte {i} differs: vmtool {:#04x} reference {:#04x}",
            ours[i], reference[i]
        );
    }
    assert_eq!(ours.len(), reference.len(), "{what}: length");
}

fn write_raw(path: &Path, samples: &[i16]) {
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    std::fs::write(path, bytes).expect("write raw");
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// One fixture message: (its `.txt` path, the `.wav` PCM Asterisk recorded, the
/// `.gsm` and `.WAV` bytes Asterisk wrote for the same call).
type Recording = (String, Vec<i16>, Vec<u8>, Vec<u8>);

fn fixture_recordings() -> Vec<Recording> {
    let mut out = Vec::new();
    for (txt, audio) in fixture_messages(&fixture_spool()) {
        let find = |ext: &str| {
            audio
                .iter()
                .find(|p| ext_of(p) == ext)
                .unwrap_or_else(|| panic!("{}: no .{ext}", txt.display()))
        };
        let (rate, pcm) = decode_all(find("wav"), "wav").expect("decode .wav");
        assert_eq!(rate, 8000);
        let gsm = std::fs::read(find("gsm")).expect("read .gsm");
        let wav49 = std::fs::read(find("WAV")).expect("read .WAV");
        out.push((txt.display().to_string(), pcm, gsm, wav49));
    }
    assert_eq!(out.len(), 13);
    out
}

/// Synthetic signals for the saturation and scaling paths of the encoder.
fn synthetic() -> Vec<(String, Vec<i16>)> {
    let secs = |n: f64| (n * 8000.0) as usize;
    let sine = |f: f64, amp: f64, i: usize| {
        amp * (2.0 * std::f64::consts::PI * f * i as f64 / 8000.0).sin()
    };
    let clamp = |x: f64| x.round().clamp(-32768.0, 32767.0) as i16;
    let mut rng = Lcg(0x0610_e2c0);
    let mut v: Vec<(String, Vec<i16>)> = vec![
        ("silence".into(), vec![0; secs(2.0)]),
        (
            "white noise, full scale".into(),
            (0..secs(3.0)).map(|_| rng.next() as i16).collect(),
        ),
        (
            "white noise, quiet".into(),
            (0..secs(2.0))
                .map(|_| (rng.next() % 601) as i16 - 300)
                .collect(),
        ),
        ("dc, most negative".into(), vec![i16::MIN; secs(1.0)]),
        ("dc, most positive".into(), vec![i16::MAX; secs(1.0)]),
        (
            "nyquist, full scale".into(),
            (0..secs(1.0))
                .map(|i| if i % 2 == 0 { i16::MAX } else { i16::MIN })
                .collect(),
        ),
        (
            "impulses".into(),
            (0..secs(1.0))
                .map(|i| if i % 97 == 0 { i16::MAX } else { 0 })
                .collect(),
        ),
        (
            "sine sweep 20-3990 Hz".into(),
            (0..secs(3.0))
                .map(|i| {
                    // Phase of a linear chirp.
                    let t = i as f64 / 8000.0;
                    let f = 20.0 + (3990.0 - 20.0) * t / 6.0;
                    clamp(30000.0 * (2.0 * std::f64::consts::PI * f * t).sin())
                })
                .collect(),
        ),
        (
            "clipped sine (3x full scale)".into(),
            (0..secs(2.0))
                .map(|i| clamp(sine(300.0, 98304.0, i)))
                .collect(),
        ),
        (
            "clipped noise".into(),
            (0..secs(1.0))
                .map(|_| clamp(f64::from(rng.next() as i16) * 4.0))
                .collect(),
        ),
    ];
    for hz in [97.0, 440.0, 1000.0, 3999.0] {
        v.push((
            format!("square {hz} Hz, full scale"),
            (0..secs(2.0))
                .map(|i| {
                    if sine(hz, 1.0, i) >= 0.0 {
                        i16::MAX
                    } else {
                        i16::MIN
                    }
                })
                .collect(),
        ));
    }
    // Lengths that are not a whole frame or pair: sox pads the tail with zeros.
    for n in [1usize, 159, 160, 161, 319, 321, 479, 481, 8001] {
        v.push((
            format!("{n} samples of noise"),
            (0..n).map(|_| rng.next() as i16).collect(),
        ));
    }
    v
}

// ---------------------------------------------------------------- Asterisk's files

/// What Asterisk wrote for a real call, reproduced from the PCM it recorded in
/// parallel: `.wav` whole, and `.gsm` and `.WAV` for the whole frames (pairs) Asterisk
/// keeps, header included (odd frame counts included: wav49 drops the last frame).
#[test]
fn asterisk_fixture_files_are_reproduced_byte_for_byte() {
    let mut odd = 0;
    for (name, pcm, gsm, wav49) in fixture_recordings() {
        let wav_path = name.replace(".txt", ".wav");
        let wav = std::fs::read(&wav_path).expect("read .wav");
        assert_bytes(&wav_path, &encode(&AudioFormat::Wav, &pcm), &wav);

        assert_eq!(gsm.len() % 33, 0);
        let frames = gsm.len() / 33;
        assert!(frames * 160 <= pcm.len() && pcm.len() < (frames + 1) * 160);
        assert_bytes(
            &format!("{name} .gsm"),
            &encode(&AudioFormat::Gsm, &pcm[..frames * 160]),
            &gsm,
        );

        let blocks = (wav49.len() - WAV49_HEADER_LEN) / 65;
        assert_eq!(
            blocks,
            frames / 2,
            "{name}: Asterisk drops an odd last frame"
        );
        odd += frames % 2;
        assert_bytes(
            &format!("{name} .WAV"),
            &encode(&AudioFormat::Wav49, &pcm[..blocks * 320]),
            &wav49,
        );
    }
    assert!(odd >= 3, "the fixture has odd frame counts ({odd})");
}

#[test]
fn headers_match_the_fixture_for_every_length() {
    for (name, _, _, wav49) in fixture_recordings() {
        let data = (wav49.len() - WAV49_HEADER_LEN) as u32;
        assert_bytes(&name, &wav49_header(data), &wav49[..WAV49_HEADER_LEN]);
    }
    // An odd number of frames: completed to a pair, the fact count covers the pair.
    let out = encode(&AudioFormat::Wav49, &[1000; 480]);
    assert_eq!(out.len(), 60 + 2 * 65);
    assert_eq!(&out[..60], &wav49_header(130));
    assert_eq!(u32::from_le_bytes(out[48..52].try_into().unwrap()), 640);
    assert_eq!(
        &wav_header(16_000, 4)[24..32],
        &[0x80, 0x3e, 0, 0, 0, 0x7d, 0, 0]
    );
}

/// hound writes the canonical 44-byte header too: the same bytes for 8 and 16 kHz.
#[test]
fn wav_matches_hound() {
    let samples: Vec<i16> = (0..1001).map(|i| (i * 37 % 65536 - 32768) as i16).collect();
    for (format, rate) in [(AudioFormat::Wav, 8000), (AudioFormat::Wav16, 16_000)] {
        let mut theirs = Cursor::new(Vec::new());
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::new(&mut theirs, spec).expect("hound");
        for &x in &samples {
            w.write_sample(x).expect("hound");
        }
        w.finalize().expect("hound");
        assert_bytes(&format.name(), &encode(&format, &samples), theirs.get_ref());
    }
}

// ---------------------------------------------------------------- libgsm via sox

#[test]
fn gsm_and_wav49_are_bit_exact_with_sox() {
    if !sox_available() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let mut corpus = synthetic();
    for (name, pcm, gsm, _) in fixture_recordings() {
        // Speech as recorded, and speech that went through GSM once (tandem coding).
        let path = dir.join("in.gsm");
        std::fs::write(&path, &gsm).expect("write");
        let (_, decoded) = decode_all(&path, "gsm").expect("decode");
        corpus.push((format!("{name} (.wav)"), pcm));
        corpus.push((format!("{name} (.gsm decoded)"), decoded));
    }
    for name in ["espeak-en.wav", "espeak-fr.wav"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/speech")
            .join(name);
        let (rate, speech) = decode_all(&path, "wav").expect("tests/data/speech");
        assert_eq!(rate, 8000);
        // As synthesised, and 12 dB louder (clipping on the peaks).
        let loud = speech.iter().map(|&x| x.saturating_mul(4)).collect();
        corpus.push((name.to_string(), speech));
        corpus.push((format!("{name}, +12 dB"), loud));
    }
    let (raw, gsm, wav) = (dir.join("in.raw"), dir.join("sox.gsm"), dir.join("sox.wav"));
    let input = [
        "-D", "-t", "raw", "-r", "8000", "-e", "signed", "-b", "16", "-c", "1",
    ];
    let mut samples = 0;
    for (name, signal) in &corpus {
        write_raw(&raw, signal);
        let mut args = input.to_vec();
        args.extend([s(&raw), "-t", "gsm", s(&gsm)]);
        sox(&args);
        let ours = encode(&AudioFormat::Gsm, signal);
        assert_bytes(
            &format!("{name}: .gsm"),
            &ours,
            &std::fs::read(&gsm).expect("read"),
        );
        assert_eq!(ours.len(), signal.len().div_ceil(160) * 33, "{name}");

        let mut args = input.to_vec();
        args.extend([s(&raw), "-t", "wav", "-e", "gsm-full-rate", s(&wav)]);
        sox(&args);
        // sox's header differs (exact fact count, pad byte): the blocks are the same.
        let theirs = std::fs::read(&wav).expect("read");
        let ours = encode(&AudioFormat::Wav49, signal);
        let data = ours.len() - WAV49_HEADER_LEN;
        assert_eq!(&theirs[..4], b"RIFF");
        assert_bytes(
            &format!("{name}: .WAV blocks"),
            &ours[WAV49_HEADER_LEN..],
            &theirs[WAV49_HEADER_LEN..WAV49_HEADER_LEN + data],
        );
        samples += signal.len();
    }
    assert_eq!(corpus.len(), 23 + 2 * 13 + 4);
    eprintln!(
        "gsm/wav49: {} signals, {samples} samples encoded identically to sox",
        corpus.len()
    );
}

#[test]
fn g711_matches_sox_for_every_sample_value() {
    if !sox_available() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let raw = tmp.path().join("all.raw");
    let all: Vec<i16> = (i16::MIN..=i16::MAX).collect();
    write_raw(&raw, &all);
    for (format, t) in [(AudioFormat::Ulaw, "ul"), (AudioFormat::Alaw, "al")] {
        let out = tmp.path().join(format!("sox.{t}"));
        sox(&[
            "-D",
            "-t",
            "raw",
            "-r",
            "8000",
            "-e",
            "signed",
            "-b",
            "16",
            "-c",
            "1",
            s(&raw),
            "-t",
            t,
            s(&out),
        ]);
        let theirs = std::fs::read(&out).expect("read");
        assert_bytes(&format.name(), &encode(&format, &all), &theirs);
    }
}

/// Every format vmtool writes decodes with sox to exactly what vmtool's decoder gives,
/// and the lossless ones give the input back.
#[test]
fn every_written_file_decodes_with_sox_as_with_vmtool() {
    if !sox_available() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let (_, speech, _, _) = fixture_recordings().swap_remove(0);
    let mut rng = Lcg(18);
    // Speech, then noise, 12,345 samples: neither a whole frame nor a whole pair.
    let mut signal = speech[..8000].to_vec();
    signal.extend((0..4345).map(|_| rng.next() as i16));
    let raw = |rate: u32| -> Vec<String> {
        ["-t", "raw", "-e", "signed", "-b", "16", "-c", "1", "-r"]
            .iter()
            .map(|x| x.to_string())
            .chain([rate.to_string()])
            .collect()
    };
    let cases: Vec<(&str, Vec<String>, usize)> = vec![
        ("WAV", vec![], signal.len().div_ceil(320) * 320),
        ("gsm", vec![], signal.len().div_ceil(160) * 160),
        ("wav", vec![], signal.len()),
        ("wav16", vec!["-t".into(), "wav".into()], signal.len()),
        (
            "ulaw",
            vec![
                "-t".into(),
                "ul".into(),
                "-r".into(),
                "8000".into(),
                "-c".into(),
                "1".into(),
            ],
            signal.len(),
        ),
        (
            "alaw",
            vec![
                "-t".into(),
                "al".into(),
                "-r".into(),
                "8000".into(),
                "-c".into(),
                "1".into(),
            ],
            signal.len(),
        ),
        ("sln", raw(8000), signal.len()),
        ("sln16", raw(16_000), signal.len()),
        ("slin48", raw(48_000), signal.len()),
    ];
    for (ext, opts, len) in &cases {
        let format = AudioFormat::from_extension(ext);
        let path = dir.join(format!("out.{ext}"));
        std::fs::write(&path, encode(&format, &signal)).expect("write");
        let (rate, ours) = decode_all(&path, ext).unwrap_or_else(|e| panic!("{ext}: {e}"));
        assert_eq!(Some(rate), format.sample_rate(), "{ext}");
        assert_eq!(ours.len(), *len, "{ext}: decoded length");
        let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
        assert_same(ext, &ours, &sox_decode(&path, &opts, dir));
        if matches!(
            format,
            AudioFormat::Wav | AudioFormat::Wav16 | AudioFormat::Sln { .. }
        ) {
            assert_same(&format!("{ext} is lossless"), &ours, &signal);
        }
        // No warnings from vmtool's own reader either.
        let info = probe_file(&path, ext).expect("probe");
        assert!(info.warnings.is_empty(), "{ext}: {:?}", info.warnings);
        assert_eq!(info.samples, Some(*len as u64), "{ext}: probed length");
    }
}

// ---------------------------------------------------------------- refusals

#[test]
fn unwritable_formats_and_wrong_rates_are_refused_by_name() {
    for (format, name) in [
        (AudioFormat::G722, "g722"),
        (AudioFormat::Au, "au"),
        (AudioFormat::from_extension("mp3"), "mp3"),
        (AudioFormat::from_extension("g729"), "g729"),
        (AudioFormat::from_extension("ogg"), "ogg"),
    ] {
        assert!(!encodable(&format));
        let mut out = Vec::new();
        let err = encode_to(&format, &[0; 320], 8000, &mut out).expect_err(name);
        assert!(
            matches!(&err, EncodeError::Unsupported { format } if format == name),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with(&format!("cannot write {name} files")),
            "{err}"
        );
        assert!(out.is_empty());
    }
    for ext in [
        "WAV", "wav49", "gsm", "wav", "wav16", "ulaw", "pcm", "alaw", "sln", "slin16", "sln192",
    ] {
        assert!(encodable(&AudioFormat::from_extension(ext)), "{ext}");
    }
    for (ext, rate) in [
        ("wav", 16_000),
        ("wav16", 8000),
        ("gsm", 16_000),
        ("sln16", 8000),
    ] {
        let mut out = Vec::new();
        let err =
            encode_to(&AudioFormat::from_extension(ext), &[0; 320], rate, &mut out).expect_err(ext);
        assert!(
            matches!(err, EncodeError::RateMismatch { got, .. } if got == rate),
            "{err:?}"
        );
        assert!(out.is_empty());
    }
    let err = encode_to(&AudioFormat::Wav, &[0; 8], 44_100, Vec::new()).expect_err("rate");
    assert_eq!(
        err.to_string(),
        "wav stores 8000 Hz audio, but the samples are 44100 Hz (resample them first)"
    );
}

#[test]
fn sizes_beyond_riff_limits_are_refused() {
    // 44 + 2n must fit the RIFF size (file length - 8) in 32 bits.
    let max = (u32::MAX as usize - 36) / 2;
    assert_eq!(
        encoded_len(&AudioFormat::Wav, max).expect("fits"),
        44 + 2 * max as u64
    );
    assert!(matches!(
        encoded_len(&AudioFormat::Wav, max + 1),
        Err(EncodeError::TooLong { .. })
    ));
    // wav49: the fact count of samples is the limit (149 hours).
    let blocks = u32::MAX as usize / 320;
    assert!(encoded_len(&AudioFormat::Wav49, blocks * 320).is_ok());
    assert!(matches!(
        encoded_len(&AudioFormat::Wav49, blocks * 320 + 1),
        Err(EncodeError::TooLong { .. })
    ));
    assert_eq!(
        encoded_len(&AudioFormat::Gsm, 1 << 40).expect("raw"),
        (1u64 << 40).div_ceil(160) * 33
    );
}

#[test]
fn empty_input() {
    for ext in ["WAV", "gsm", "wav", "ulaw", "sln"] {
        let format = AudioFormat::from_extension(ext);
        let out = encode(&format, &[]);
        let mut dec = Decoder::new(Cursor::new(&out), format).expect(ext);
        let mut samples = Vec::new();
        while dec.next_block(&mut samples).expect(ext) > 0 {}
        assert!(samples.is_empty(), "{ext}");
    }
    assert!(encode(&AudioFormat::Gsm, &[]).is_empty());
    assert_eq!(encode(&AudioFormat::Wav49, &[]), wav49_header(0));
    assert_eq!(
        le_samples(&encode(&AudioFormat::Sln { rate: 8000 }, &[-2, 7])),
        [-2, 7]
    );
}
