//! `play` through a real ALSA stack whose default device is the `file` plugin
//! (so the samples that reached ALSA can be compared with the message), and
//! `convert` on every message of the real-Asterisk fixture, checked against the
//! decoders and sox.

use crate::util::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// CI must not skip what it is meant to check.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// An ALSA configuration (used alone, through ALSA_CONFIG_PATH) whose default
/// device converts to S16_LE mono 8 kHz and writes the samples to `out`.
fn capture_conf(dir: &Path, out: &Path) -> PathBuf {
    let conf = dir.join("asound-capture.conf");
    fs::write(
        &conf,
        format!(
            "pcm.!default {{ type plug; slave {{ pcm {{ type file; slave.pcm {{ type null }}; \
             file \"{}\"; format \"raw\" }}; format S16_LE; rate 8000; channels 1 }} }}\n",
            out.display()
        ),
    )
    .unwrap();
    conf
}

fn le_samples(bytes: &[u8]) -> Vec<i16> {
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// Without leading and trailing zeros (the stream runs before and after the
/// message).
fn trim_silence(s: &[i16]) -> &[i16] {
    let start = s.iter().position(|&x| x != 0).unwrap_or(s.len());
    let end = s.iter().rposition(|&x| x != 0).map_or(start, |i| i + 1);
    &s[start..end]
}

fn decoded(sb: &Sandbox, rel: &str, ext: &str) -> (u32, Vec<i16>) {
    let path = sb.voicemail().join(format!("{rel}.{ext}"));
    vmtool::audio::decode_all(&path, ext).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Plays `args` with the capture device; `None` when ALSA is unusable here
/// (outside CI only: in CI that fails the test).
fn play_captured(sb: &Sandbox, args: &[&str]) -> Option<(Run, Vec<i16>)> {
    play_captured_with(sb, &[], args)
}

/// [`play_captured`] with global options (`--db …`) before `play`.
pub(crate) fn play_captured_with(
    sb: &Sandbox,
    global: &[&str],
    args: &[&str],
) -> Option<(Run, Vec<i16>)> {
    let out = sb.path().join("captured.raw");
    let _ = fs::remove_file(&out);
    let conf = capture_conf(sb.path(), &out);
    let mut all = global.to_vec();
    all.push("play");
    all.extend_from_slice(args);
    let run = sb.run_env(&[("ALSA_CONFIG_PATH", conf.to_str().unwrap())], &all);
    if run.code != 0 && run.stderr.contains("no audio output device") {
        assert!(
            !in_ci(),
            "ALSA is unusable in CI (libasound2 and its plugins are required):\n{}",
            run.stderr
        );
        eprintln!("skipped: ALSA unusable here: {}", run.stderr.trim());
        return None;
    }
    let bytes = fs::read(&out).unwrap_or_else(|e| {
        panic!(
            "play left no capture file ({e}):\nstdout:\n{}\nstderr:\n{}",
            run.stdout, run.stderr
        )
    });
    Some((run, le_samples(&bytes)))
}

/// Sample-exact (±1 for the float path) after trimming silence; returns the
/// count and the largest difference.
#[track_caller]
pub(crate) fn assert_same_audio(captured: &[i16], want: &[i16]) -> (usize, i32) {
    let got = trim_silence(captured);
    let want = trim_silence(want);
    assert_eq!(
        got.len(),
        want.len(),
        "captured {} samples of audio, the message has {}",
        got.len(),
        want.len()
    );
    let worst = got
        .iter()
        .zip(want)
        .map(|(&a, &b)| (i32::from(a) - i32::from(b)).abs())
        .max()
        .unwrap_or(0);
    assert!(worst <= 1, "captured audio differs by up to {worst}");
    (got.len(), worst)
}

fn exists(sb: &Sandbox, rel: &str) -> bool {
    sb.voicemail().join(rel).exists()
}

#[test]
fn play_reaches_alsa_sample_exact_and_marks_heard() {
    let sb = Sandbox::team2();
    let (want_rate, want) = decoded(&sb, "compta/2201/INBOX/msg0000", "wav");
    assert_eq!(want_rate, 8000);
    let Some((run, captured)) = play_captured(&sb, &["compta/2201/INBOX/0"]) else {
        return;
    };
    let run = run.ok();
    let (n, worst) = assert_same_audio(&captured, &want);
    assert!(n > 20_000, "only {n} samples compared");
    eprintln!("play: {n} samples captured from ALSA, largest difference {worst}");
    // Caller and date are shown; then the first listen marks it heard.
    assert!(run.stdout.contains("Lucas Fontaine"), "{}", run.stdout);
    assert!(run.stdout.contains("2026-11-26 10:32"), "{}", run.stdout);
    assert!(!run.stderr.contains("ALSA lib"), "{}", run.stderr);
    assert!(!run.stderr.contains("Dropping"), "{}", run.stderr);
    assert!(!exists(&sb, "compta/2201/INBOX/msg0000.txt"));
    let old = sb.run(&["--format", "json", "ls", "compta/2201/Old"]).ok();
    let rows = old.json_lines();
    assert_eq!(rows.len(), 1, "{}", old.stdout);
    assert_eq!(rows[0]["callerid_name"], "Lucas Fontaine");
    // The other messages of INBOX are untouched (no renumbering).
    assert!(exists(&sb, "compta/2201/INBOX/msg0001.txt"));
    assert!(exists(&sb, "compta/2201/INBOX/msg0002.txt"));
}

#[test]
fn play_gsm_and_keep_new() {
    let sb = Sandbox::team2();
    // GSM 06.10 (.WAV, wav49): what ALSA gets is the pure-Rust decoder's output.
    let (_, want) = decoded(&sb, "compta/2202/INBOX/msg0001", "WAV");
    let Some((run, captured)) = play_captured(
        &sb,
        &["--keep-new", "--from-format", "WAV", "2202@compta/INBOX/1"],
    ) else {
        return;
    };
    run.ok();
    let (n, worst) = assert_same_audio(&captured, &want);
    eprintln!("play --from-format WAV: {n} samples, largest difference {worst}");
    assert!(
        exists(&sb, "compta/2202/INBOX/msg0001.txt"),
        "--keep-new moved it"
    );
    // A message already heard stays where it is.
    let Some((run, captured)) = play_captured(&sb, &["compta/2202/Old/0"]) else {
        return;
    };
    run.ok();
    let (_, want) = decoded(&sb, "compta/2202/Old/msg0000", "wav");
    assert_same_audio(&captured, &want);
    assert!(exists(&sb, "compta/2202/Old/msg0000.txt"));
    assert!(!exists(&sb, "compta/2202/Old/msg0001.txt"));
}

#[test]
fn play_urgent_message_goes_to_old() {
    let sb = Sandbox::team2();
    let (_, want) = decoded(&sb, "finance/2102/Urgent/msg0000", "wav");
    let Some((run, captured)) = play_captured(&sb, &["finance/2102/Urgent/0"]) else {
        return;
    };
    let run = run.ok();
    assert!(run.stdout.contains("urgent"), "{}", run.stdout);
    assert_same_audio(&captured, &want);
    assert!(!exists(&sb, "finance/2102/Urgent/msg0000.txt"));
    assert!(exists(&sb, "finance/2102/Old/msg0000.txt"));
}

#[test]
fn play_without_a_device_says_so_in_one_line() {
    let sb = Sandbox::team2();
    // A configuration that defines no PCM at all: "default" does not exist.
    let conf = sb.path().join("asound-empty.conf");
    fs::write(&conf, "# nothing\n").unwrap();
    let run = sb.run_env(
        &[("ALSA_CONFIG_PATH", conf.to_str().unwrap())],
        &["play", "compta/2201/INBOX/0"],
    );
    assert_ne!(run.code, 0);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got:\n{}", run.stderr);
    assert!(
        lines[0].starts_with("vmtool: no audio output device:")
            && lines[0].contains("vmtool convert"),
        "{}",
        lines[0]
    );
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert!(exists(&sb, "compta/2201/INBOX/msg0000.txt"));
    // Listing devices needs no spool and no card.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vmtool"));
    cmd.args(["--spool", "/nonexistent", "play", "--list-devices"])
        .env("ALSA_CONFIG_PATH", &conf);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("default"));
}

#[test]
fn play_refuses_contexts_and_reports_missing_formats() {
    let sb = Sandbox::team2();
    let run = sb.run(&["play", "compta"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("not a whole context"), "{}", run.stderr);
    let out = sb.path().join("captured.raw");
    let conf = capture_conf(sb.path(), &out);
    let run = sb.run_env(
        &[("ALSA_CONFIG_PATH", conf.to_str().unwrap())],
        &["play", "--from-format", "g729", "compta/2201/INBOX/0"],
    );
    assert_ne!(run.code, 0);
    if !run.stderr.contains("no audio output device") || in_ci() {
        assert!(run.stderr.contains("has no .g729 file"), "{}", run.stderr);
    }
    assert!(exists(&sb, "compta/2201/INBOX/msg0000.txt"));
}

// ---------------------------------------------------------------- convert

/// Runs vmtool on the sandbox with binary standard output.
fn run_bytes(sb: &Sandbox, args: &[&str]) -> (i32, Vec<u8>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vmtool"))
        .arg("--spool")
        .arg(sb.path().join("spool"))
        .arg("--asterisk-conf")
        .arg(sb.path().join("etc/asterisk.conf"))
        .arg("--voicemail-conf")
        .arg(sb.path().join("etc/voicemail.conf"))
        .args(args)
        .env("TZ", "UTC")
        .env_remove("VMTOOL_SPOOL")
        .env_remove("VMTOOL_AMI")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn read_wav(path: &Path) -> (hound::WavSpec, Vec<i16>) {
    let r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = r.spec();
    let s = r.into_samples::<i16>().map(Result::unwrap).collect();
    (spec, s)
}

fn sox_available() -> bool {
    let ok = Command::new("sox").arg("--version").output().is_ok();
    assert!(ok || !in_ci(), "sox is missing in CI (.ci/run installs it)");
    if !ok {
        eprintln!("skipped the sox comparisons: sox is not installed");
    }
    ok
}

/// sox's own decoding (or resampling) of a file, as 16-bit samples.
fn sox(input: &Path, extra: &[&str], dir: &Path) -> (u32, Vec<i16>) {
    let out = dir.join(format!(
        "sox-{}.wav",
        input.file_name().unwrap().to_string_lossy()
    ));
    let st = Command::new("sox")
        .arg("-D")
        .arg(input)
        .args(["-e", "signed", "-b", "16"])
        .arg(&out)
        .args(extra)
        .status()
        .unwrap();
    assert!(st.success(), "sox failed on {}", input.display());
    let (spec, s) = read_wav(&out);
    (spec.sample_rate, s)
}

/// Every message of the fixture (context/box/Folder/msgNNNN), sorted.
fn fixture_messages(sb: &Sandbox) -> Vec<String> {
    let mut v = Vec::new();
    for e in walkdir::WalkDir::new(sb.voicemail()) {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(stem) = name.strip_suffix(".txt") {
            let rel = e
                .path()
                .parent()
                .unwrap()
                .strip_prefix(sb.voicemail())
                .unwrap();
            v.push(format!("{}/{stem}", rel.display()));
        }
    }
    v.sort();
    v
}

#[test]
fn convert_every_message_from_each_format() {
    let sb = Sandbox::team2();
    let messages = fixture_messages(&sb);
    assert_eq!(messages.len(), 13);
    let with_sox = sox_available();
    let work = sb.path().join("sox");
    fs::create_dir_all(&work).unwrap();
    let mut compared = 0usize;
    for ext in ["wav", "WAV", "gsm"] {
        let dir = sb.path().join(format!("out-{ext}"));
        let run = sb
            .run(&[
                "convert",
                "compta",
                "finance",
                "direction",
                "--from-format",
                ext,
                "-o",
                dir.to_str().unwrap(),
                "--name",
                "{context}-{box}-{folder}-{number}.wav",
            ])
            .ok();
        assert_eq!(run.stdout.lines().count(), 13, "{}", run.stdout);
        for m in &messages {
            let parts: Vec<&str> = m.split('/').collect();
            let file = dir.join(format!(
                "{}-{}-{}-{}.wav",
                parts[0],
                parts[1],
                parts[2],
                &parts[3][3..]
            ));
            let (spec, got) = read_wav(&file);
            assert_eq!(
                (spec.channels, spec.sample_rate, spec.bits_per_sample),
                (1, 8000, 16),
                "{}",
                file.display()
            );
            assert_eq!(spec.sample_format, hound::SampleFormat::Int);
            let (_, want) = decoded(&sb, m, ext);
            assert_eq!(got, want, "{m}.{ext}: not the decoder's samples");
            if with_sox {
                let src = sb.voicemail().join(format!("{m}.{ext}"));
                let (rate, by_sox) = sox(&src, &[], &work);
                assert_eq!(rate, 8000);
                assert_eq!(got, by_sox, "{m}.{ext}: differs from sox's decoding");
            }
            compared += got.len();
        }
    }
    eprintln!("convert: 13 messages × 3 formats, {compared} samples identical to the decoders");
    // Without --from-format the lossless .wav is the source.
    let dir = sb.path().join("out-default");
    sb.run(&[
        "convert",
        "compta/2202/INBOX/1",
        "-o",
        dir.to_str().unwrap(),
    ])
    .ok();
    let (_, got) = read_wav(&dir.join("compta-2202-INBOX-20261126-103419-Karim_Benali.wav"));
    assert_eq!(got, decoded(&sb, "compta/2202/INBOX/msg0001", "wav").1);
}

/// Energy above `cut` Hz relative to the total, from DFTs of 1024-sample
/// Hann windows.
fn energy_above(s: &[i16], rate: f64, cut: f64) -> f64 {
    const N: usize = 1024;
    let (mut hi, mut all) = (0.0, 0.0);
    let mut at = 0;
    while at + N <= s.len() {
        let w: Vec<f64> = (0..N)
            .map(|i| {
                let hann = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / N as f64).cos();
                f64::from(s[at + i]) * hann
            })
            .collect();
        for k in 1..N / 2 {
            let (mut re, mut im) = (0.0, 0.0);
            for (i, x) in w.iter().enumerate() {
                let ph = 2.0 * std::f64::consts::PI * (k * i) as f64 / N as f64;
                re += x * ph.cos();
                im -= x * ph.sin();
            }
            let e = re * re + im * im;
            all += e;
            if k as f64 * rate / N as f64 > cut {
                hi += e;
            }
        }
        at += 4 * N;
    }
    hi / all
}

fn correlation(a: &[i16], b: &[i16]) -> f64 {
    let n = a.len().min(b.len());
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (x, y) = (f64::from(a[i]), f64::from(b[i]));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa * bb).sqrt()
}

#[test]
fn convert_resamples_properly() {
    let sb = Sandbox::team2();
    let msg = "compta/2202/INBOX/msg0000"; // 20 s of speech
    let (_, src) = decoded(&sb, msg, "wav");
    let dir = sb.path().join("out");
    let run = sb
        .run(&[
            "convert",
            "compta/2202/INBOX/0",
            "--rate",
            "16000",
            "-o",
            dir.to_str().unwrap(),
            "--name",
            "16k.wav",
        ])
        .ok();
    assert!(run.stdout.trim_end().ends_with("16k.wav"), "{}", run.stdout);
    let (spec, up) = read_wav(&dir.join("16k.wav"));
    assert_eq!(
        (spec.sample_rate, spec.channels, spec.bits_per_sample),
        (16000, 1, 16)
    );
    assert_eq!(up.len(), 2 * src.len());
    // Not a sample repeat: those pairs would be equal, and the repeat puts
    // mirror images of the speech above 4 kHz.
    // (Counted where there is sound: silence repeats itself anyway.)
    let loud: Vec<&[i16]> = up
        .chunks_exact(2)
        .filter(|p| p[0].unsigned_abs() > 200)
        .collect();
    let equal_pairs = loud.iter().filter(|p| p[0] == p[1]).count();
    assert!(loud.len() > 10_000, "{} loud pairs", loud.len());
    assert!(
        equal_pairs * 100 < loud.len(),
        "{equal_pairs} of {} pairs are repeats",
        loud.len()
    );
    let repeat: Vec<i16> = src.iter().flat_map(|&s| [s, s]).collect();
    let ours = energy_above(&up, 16000.0, 4200.0);
    let naive = energy_above(&repeat, 16000.0, 4200.0);
    eprintln!("energy above 4.2 kHz: resampled {ours:.2e}, sample repeat {naive:.2e}");
    assert!(ours < 1e-5 && naive > 1e-3, "ours {ours}, repeat {naive}");
    if sox_available() {
        let work = sb.path().join("sox");
        fs::create_dir_all(&work).unwrap();
        let src_path = sb.voicemail().join(format!("{msg}.wav"));
        let (rate, by_sox) = sox(&src_path, &["rate", "16000"], &work);
        assert_eq!(rate, 16000);
        assert!(by_sox.len().abs_diff(up.len()) <= 2);
        let c = correlation(&up, &by_sox);
        let n = up.len().min(by_sox.len());
        let rms_diff = (up[..n]
            .iter()
            .zip(&by_sox[..n])
            .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
            .sum::<f64>()
            / n as f64)
            .sqrt();
        let rms = (up.iter().map(|&a| f64::from(a).powi(2)).sum::<f64>() / up.len() as f64).sqrt();
        eprintln!(
            "16 kHz vs sox: correlation {c:.5}, RMS difference {:.2}% of the signal",
            100.0 * rms_diff / rms
        );
        assert!(c > 0.999, "correlation with sox's resampler {c}");
        assert!(rms_diff < 0.03 * rms, "RMS difference {rms_diff} vs {rms}");
    }
    // 44.1 kHz: the exact length, ceil(n × 44100 / 8000).
    sb.run(&[
        "convert",
        "compta/2202/INBOX/0",
        "--rate",
        "44100",
        "-o",
        dir.to_str().unwrap(),
        "--name",
        "44k.wav",
    ])
    .ok();
    let (spec, cd) = read_wav(&dir.join("44k.wav"));
    assert_eq!(spec.sample_rate, 44100);
    assert_eq!(cd.len(), (src.len() * 44100).div_ceil(8000));
    let bad = sb.run(&["convert", "compta/2202/INBOX/0", "--rate", "22050"]);
    assert_eq!(bad.code, 2);
}

#[test]
fn convert_names_force_and_atomic_writes() {
    let sb = Sandbox::team2();
    let dir = sb.path().join("out dir");
    let d = dir.to_str().unwrap();
    let run = sb.run(&["convert", "compta/2202/INBOX", "-o", d]).ok();
    let names: Vec<String> = {
        let mut v: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        names,
        [
            "compta-2202-INBOX-20261126-103353-Zoé_Lambert.wav",
            "compta-2202-INBOX-20261126-103419-Karim_Benali.wav"
        ]
    );
    assert_eq!(run.stdout.lines().count(), 2);
    // An existing file is never replaced without --force; the batch goes on.
    let target = dir.join(&names[0]);
    fs::write(&target, b"mine").unwrap();
    let run = sb.run(&["convert", "compta/2202/INBOX", "-o", d]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("exists (--force replaces it)"),
        "{}",
        run.stderr
    );
    assert_eq!(fs::read(&target).unwrap(), b"mine");
    let run = sb
        .run(&["convert", "compta/2202/INBOX", "-o", d, "--force"])
        .ok();
    assert_eq!(run.stdout.lines().count(), 2);
    assert_eq!(
        read_wav(&target).1,
        decoded(&sb, "compta/2202/INBOX/msg0000", "wav").1
    );
    // No temporary file is left behind.
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 2);
    // Callers without a name go by number; unsafe text never reaches the name.
    let run = sb
        .run(&[
            "convert",
            "finance/2102/INBOX/0",
            "-o",
            d,
            "--name",
            "{caller}_{callerid_num}.wav",
        ])
        .ok();
    assert!(
        run.stdout.trim_end().ends_with("0298765401_0298765401.wav"),
        "{}",
        run.stdout
    );
    let txt = sb.voicemail().join("compta/2201/INBOX/msg0002.txt");
    let text = fs::read_to_string(&txt).unwrap();
    let evil = text
        .lines()
        .map(|l| {
            if l.starts_with("callerid=") {
                "callerid=\"../../x\u{1b}[2J y\" <123>".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    fs::write(&txt, evil + "\n").unwrap();
    let run = sb
        .run(&[
            "convert",
            "compta/2201/INBOX/2",
            "-o",
            d,
            "--name",
            "{caller}.wav",
        ])
        .ok();
    assert!(
        run.stdout.trim_end().ends_with("/x_[2J_y.wav"),
        "{}",
        run.stdout
    );
    let bad = sb.run(&["convert", "compta/2201/INBOX/2", "--name", "{nope}.wav"]);
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains("unknown field {nope}"),
        "{}",
        bad.stderr
    );
}

#[test]
fn convert_to_stdout_is_a_wav() {
    let sb = Sandbox::team2();
    let (code, bytes, err) = run_bytes(&sb, &["convert", "direction/2301/INBOX/1", "--stdout"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(&bytes[..4], b"RIFF");
    let r = hound::WavReader::new(std::io::Cursor::new(&bytes)).unwrap();
    assert_eq!(r.spec().sample_rate, 8000);
    assert_eq!(r.spec().channels, 1);
    let got: Vec<i16> = r.into_samples::<i16>().map(Result::unwrap).collect();
    assert_eq!(got, decoded(&sb, "direction/2301/INBOX/msg0001", "wav").1);
    assert_eq!(bytes.len(), 44 + 2 * got.len());
    // One message only.
    let (code, bytes, err) = run_bytes(&sb, &["convert", "direction/2301/INBOX", "--stdout"]);
    assert_eq!(code, 2, "{err}");
    assert!(bytes.is_empty());
    assert!(err.contains("one message"), "{err}");
    // Resampled on the way.
    let (code, bytes, err) = run_bytes(
        &sb,
        &[
            "convert",
            "direction/2301/INBOX/1",
            "--stdout",
            "--rate",
            "48000",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let r = hound::WavReader::new(std::io::Cursor::new(&bytes)).unwrap();
    assert_eq!(r.spec().sample_rate, 48000);
    assert_eq!(r.len() as usize, 6 * got.len());
}

#[test]
fn convert_reports_undecodable_messages_and_goes_on() {
    let sb = Sandbox::team2();
    // A message whose only audio is G.729, which vmtool does not decode.
    let inbox = sb.voicemail().join("compta/2201/INBOX");
    let txt = fs::read_to_string(inbox.join("msg0002.txt")).unwrap();
    fs::write(inbox.join("msg0003.txt"), txt).unwrap();
    fs::write(inbox.join("msg0003.g729"), [0x5au8; 200]).unwrap();
    let dir = sb.path().join("out");
    let run = sb.run(&[
        "convert",
        "compta/2201/INBOX",
        "-o",
        dir.to_str().unwrap(),
        "--name",
        "{number}.wav",
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("compta/2201/INBOX/msg0003: cannot decode .g729"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    let mut made: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    made.sort();
    assert_eq!(made, ["0000.wav", "0001.wav", "0002.wav"]);
    // Asked for explicitly, the format is named too.
    let run = sb.run(&[
        "convert",
        "compta/2201/INBOX/3",
        "--from-format",
        "g729",
        "-o",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("cannot decode g729 audio"),
        "{}",
        run.stderr
    );
    // A format the message lacks.
    let run = sb.run(&[
        "convert",
        "compta/2201/INBOX/0",
        "--from-format",
        "sln16",
        "-o",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 3);
    assert!(
        run.stderr
            .contains("has no .sln16 file (it has WAV, gsm, wav)"),
        "{}",
        run.stderr
    );
}
