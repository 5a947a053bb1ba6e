//! The fuzz targets' bodies, shared by the libFuzzer binaries (`fuzz_targets/*.rs`)
//! and by the replay test (`tests/fuzz_replay.rs`), so a regression input is
//! replayed through exactly the code the fuzzer ran. Each function panics when a
//! property is broken; anything else the library returns is fine.
#![allow(dead_code)]

use std::io::Cursor;
use std::path::Path;
use vmtool::audio::encode::encoded_len;
use vmtool::audio::{encode_to, AudioFormat, Decoder, EncodeError};
use vmtool::callerid::CallerId;
use vmtool::metadata::Metadata;

/// `msgNNNN.txt`: parse; when accepted, the written form parses back to the
/// same fields. Not asserted when a written line is longer than Asterisk's
/// 8190-byte line buffer (invalid UTF-8 turned into U+FFFD can make it so):
/// such a line is skipped on reading, by Asterisk too.
pub fn txt(data: &[u8]) {
    let Ok(m) = Metadata::parse(data) else {
        return;
    };
    let written = m.to_asterisk_bytes();
    if written.split(|&b| b == b'\n').any(|l| l.len() > 8190) {
        return;
    }
    let back = Metadata::parse(&written).unwrap_or_else(|e| {
        panic!(
            "written .txt rejected: {e}\n{}",
            String::from_utf8_lossy(&written)
        )
    });
    // The writer drops CR and LF (spec §3.1); everything else reads back.
    let clean = |s: &str| {
        let t: String = s.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        String::from_utf8_lossy(vmtool::dialect::ast_strip(t.as_bytes())).into_owned()
    };
    // Keys that only differed by CR/LF now collide: the reader merges them
    // (case-insensitive, last value wins, first position kept).
    let mut want: Vec<(String, String)> = Vec::new();
    for f in m.fields() {
        let (k, v) = (clean(&f.key), clean(&f.value));
        if k.is_empty() {
            continue; // "=value" has no variable name: Asterisk ignores it
        }
        match want.iter_mut().find(|(wk, _)| wk.eq_ignore_ascii_case(&k)) {
            Some(w) => w.1 = v,
            None => want.push((k, v)),
        }
    }
    let got: Vec<(String, String)> = back
        .fields()
        .iter()
        .map(|f| (f.key.clone(), f.value.clone()))
        .collect();
    assert_eq!(
        want,
        got,
        "write/read round trip changed the fields\n{}",
        String::from_utf8_lossy(&written)
    );
}

/// `voicemail.conf` & co from memory; `#include`s point at nothing.
pub fn conf(data: &[u8]) {
    let _ = vmtool::conf::parse_bytes(
        data,
        Path::new("/nonexistent/fuzz.conf"),
        Path::new("/nonexistent"),
    );
}

/// The formats the first byte selects (`audio` target).
pub const AUDIO_FORMATS: [AudioFormat; 8] = [
    AudioFormat::Wav,
    AudioFormat::Wav49,
    AudioFormat::Gsm,
    AudioFormat::Ulaw,
    AudioFormat::Alaw,
    AudioFormat::Sln { rate: 8000 },
    AudioFormat::Wav16,
    AudioFormat::Sln { rate: 16000 },
];

/// Most blocks a decoder may return for this input before it counts as a hang.
const MAX_BLOCKS: usize = 100_000;

/// Decodes `audio` as `format` block by block, then sample by sample through
/// the iterator, and probes it. Properties: decoding ends (bounded loop), the
/// two APIs yield the same samples, `samples_decoded` matches, and no format
/// yields more than 5 samples per input byte plus one block (GSM: 160 per 33).
pub fn audio_as(audio: &[u8], format: AudioFormat) {
    let _ = vmtool::audio::probe(Cursor::new(audio), format.clone(), audio.len() as u64);
    let Ok(mut dec) = Decoder::new(Cursor::new(audio), format.clone()) else {
        return;
    };
    let mut blocks = Vec::new();
    let mut ended = false;
    for _ in 0..MAX_BLOCKS {
        match dec.next_block(&mut blocks) {
            Ok(0) | Err(_) => {
                ended = true;
                break;
            }
            Ok(n) => assert!(n <= 4096, "block of {n} samples"),
        }
    }
    assert!(ended, "decoder still producing after {MAX_BLOCKS} blocks");
    assert_eq!(dec.samples_decoded(), blocks.len() as u64);
    assert!(
        blocks.len() <= audio.len() * 5 + 4096,
        "{} samples from {} bytes",
        blocks.len(),
        audio.len()
    );
    let Ok(dec) = Decoder::new(Cursor::new(audio), format) else {
        panic!("second Decoder::new failed");
    };
    let iterated: Vec<i16> = dec.take(blocks.len() + 1).map_while(Result::ok).collect();
    assert_eq!(iterated, blocks, "iterator and next_block disagree");
}

/// First byte: the format (index into [`AUDIO_FORMATS`], modulo); the rest: the file.
pub fn audio(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    audio_as(
        rest,
        AUDIO_FORMATS[usize::from(sel) % AUDIO_FORMATS.len()].clone(),
    );
}

/// The formats the first byte selects (`encode` target): every format vmtool
/// writes, then two it must refuse.
pub const ENCODE_FORMATS: [AudioFormat; 10] = [
    AudioFormat::Wav49,
    AudioFormat::Gsm,
    AudioFormat::Wav,
    AudioFormat::Wav16,
    AudioFormat::Ulaw,
    AudioFormat::Alaw,
    AudioFormat::Sln { rate: 8000 },
    AudioFormat::Sln { rate: 16000 },
    AudioFormat::G722,
    AudioFormat::Au,
];

/// Decodes a whole in-memory file with vmtool's decoder; any error is a failure.
fn decode_written(bytes: &[u8], format: &AudioFormat) -> Vec<i16> {
    let mut dec = Decoder::new(Cursor::new(bytes), format.clone())
        .unwrap_or_else(|e| panic!("{}: written file refused: {e}", format.name()));
    let mut out = Vec::new();
    while dec
        .next_block(&mut out)
        .unwrap_or_else(|e| panic!("{}: written file fails to decode: {e}", format.name()))
        > 0
    {}
    out
}

/// First byte: the format (index into [`ENCODE_FORMATS`], modulo); the rest: s16le
/// samples. Properties: refused formats are refused by name with nothing written;
/// otherwise the length written is `encoded_len`; the file decodes without error to
/// the input's length rounded up to a frame (gsm) or pair (wav49); PCM comes back
/// exactly and G.711 within one quantisation step; a wav49 file decodes to the same
/// samples as the gsm file of the same (pair-padded) input; encoding is
/// deterministic.
pub fn encode(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let format = &ENCODE_FORMATS[usize::from(sel) % ENCODE_FORMATS.len()];
    let samples: Vec<i16> = rest
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let n = samples.len();
    let rate = format.sample_rate().unwrap_or(8000);
    let mut out = Vec::new();
    let written = match encode_to(format, &samples, rate, &mut out) {
        Err(EncodeError::Unsupported { format: name }) => {
            assert!(matches!(format, AudioFormat::G722 | AudioFormat::Au));
            assert_eq!(name, format.name());
            assert!(out.is_empty(), "bytes written for a refused format");
            return;
        }
        Err(e) => panic!("{}: {n} samples: {e}", format.name()),
        Ok(w) => w,
    };
    assert_eq!(written, out.len() as u64);
    assert_eq!(encoded_len(format, n).expect("length"), written);

    let decoded = decode_written(&out, format);
    let want = match format {
        AudioFormat::Gsm => n.div_ceil(160) * 160,
        AudioFormat::Wav49 => n.div_ceil(320) * 320,
        _ => n,
    };
    assert_eq!(decoded.len(), want, "{}: decoded length", format.name());
    match format {
        AudioFormat::Wav | AudioFormat::Wav16 | AudioFormat::Sln { .. } => {
            assert_eq!(decoded, samples, "PCM round trip")
        }
        AudioFormat::Ulaw | AudioFormat::Alaw => {
            for (i, (&d, &x)) in decoded.iter().zip(&samples).enumerate() {
                let err = (i32::from(d) - i32::from(x)).abs();
                assert!(err <= 1024, "sample {i}: {x} came back as {d}");
            }
        }
        AudioFormat::Wav49 => {
            let mut padded = samples.clone();
            padded.resize(want, 0);
            let mut gsm = Vec::new();
            encode_to(&AudioFormat::Gsm, &padded, 8000, &mut gsm).expect("gsm");
            assert_eq!(
                decode_written(&gsm, &AudioFormat::Gsm),
                decoded,
                "wav49 and gsm carry different frames"
            );
        }
        _ => {}
    }
    let mut again = Vec::new();
    encode_to(format, &samples, rate, &mut again).expect("second encode");
    assert!(
        again == out,
        "{}: encoding is not deterministic",
        format.name()
    );
}

/// `callerid=` values. Round trips that hold (and are asserted):
/// - name and number, name ≤ 127 bytes: `parse(merge(c)) == c`;
/// - number only, made of digits `*#+` (≤ 255 bytes): `parse(merge(c)) == c`;
/// - neither: `merge` is `Unknown`.
///
/// A name alone does not round-trip: `merge` writes it bare, so a name that
/// looks like a number or holds `<` reads back differently (as in Asterisk).
pub fn callerid(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    let c = CallerId::parse(&s);
    let merged = c.merge();
    match (&c.name, &c.number) {
        (Some(name), Some(_)) if name.len() <= 127 => {
            assert_eq!(CallerId::parse(&merged), c, "merged as {merged:?}")
        }
        (None, Some(num))
            if num.len() <= 255
                && num
                    .chars()
                    .all(|ch| ch.is_ascii_digit() || matches!(ch, '*' | '#' | '+')) =>
        {
            assert_eq!(CallerId::parse(&merged), c, "merged as {merged:?}")
        }
        (None, None) => assert_eq!(merged, "Unknown"),
        _ => {}
    }
}

/// TARGET syntax: an accepted target has no NUL, no leading `/`, and none of
/// its parts (context, box, folder, number) is empty, `.` or `..` or holds `/`.
pub fn target(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    let Ok(parts) = vmtool::target::parse_target_syntax(&s) else {
        return;
    };
    assert!(!s.contains('\0') && !s.starts_with('/'), "accepted {s:?}");
    assert!((1..=4).contains(&parts.len()), "{s:?} gave {parts:?}");
    for p in &parts {
        assert!(
            !p.is_empty() && p != "." && p != ".." && !p.contains('/') && !p.contains('\0'),
            "{s:?} gave unsafe part {p:?} in {parts:?}"
        );
    }
}

fn check_sanitized(s: &str) {
    let out = vmtool::archive::sanitize_part(s);
    assert!(
        !out.is_empty() && !out.contains('/') && !out.starts_with('.'),
        "sanitize_part({s:?}) = {out:?}"
    );
}

/// `manifest.jsonl` lines, and `sanitize_part` on the text and on every name
/// of an accepted entry: never empty, never a `/`, never a leading `.`.
pub fn manifest(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    check_sanitized(&s);
    let Ok(e) = serde_json::from_str::<vmtool::archive::ManifestEntry>(&s) else {
        return;
    };
    let id = e.identity();
    let again = serde_json::to_string(&e).expect("entry serialises");
    let back: vmtool::archive::ManifestEntry =
        serde_json::from_str(&again).expect("serialised entry reads back");
    assert_eq!(
        back.identity(),
        id,
        "identity changed over a JSON round trip"
    );
    for part in [
        &e.row.context,
        &e.row.mailbox,
        &e.row.folder,
        &e.row.number,
        &e.dir,
    ] {
        check_sanitized(part);
    }
    if let Some(id) = &e.row.msg_id {
        check_sanitized(id);
    }
    for f in &e.files {
        check_sanitized(&f.name);
    }
}
