//! Greetings on a copy of greetings a real Asterisk recorded through its phone
//! menu (`tests/fixtures/asterisk-greetings`), through the library.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;
use vmtool::greeting::{self, Kind, SetOptions};
use vmtool::spool::{Context, MailboxId, Spool};

fn sandbox() -> (tempfile::TempDir, Spool) {
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/asterisk-greetings");
    let dir = tempfile::tempdir().unwrap();
    for e in walkdir::WalkDir::new(fx.join("voicemail")) {
        let e = e.unwrap();
        let to = dir
            .path()
            .join("voicemail")
            .join(e.path().strip_prefix(fx.join("voicemail")).unwrap());
        if e.file_type().is_dir() {
            fs::create_dir_all(&to).unwrap();
        } else {
            fs::copy(e.path(), &to).unwrap();
        }
    }
    let spool = Spool::new(dir.path().join("voicemail"));
    (dir, spool)
}

fn mb(ctx: &str, b: &str) -> MailboxId {
    MailboxId::new(Context::new(ctx).unwrap(), b).unwrap()
}

fn formats() -> Vec<String> {
    ["wav49", "gsm", "wav"].map(String::from).to_vec()
}

/// Samples sox decodes a file to (16-bit mono, 8 kHz).
fn sox_samples(path: &Path) -> Vec<i16> {
    let mut cmd = std::process::Command::new("sox");
    if path.extension().is_some_and(|e| e == "gsm") {
        cmd.args(["-t", "gsm"]);
    }
    let out = cmd
        .arg(path)
        .args(["-t", "raw", "-e", "signed", "-b", "16", "-c", "1", "-"])
        .output()
        .expect("sox is needed for the audio tests (apt-get install sox)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect()
}

#[test]
fn asterisks_greetings_are_listed_with_their_formats_and_lengths() {
    let (_d, spool) = sandbox();
    let gs = greeting::list(&spool, &mb("compta", "1202"), &formats()).unwrap();
    let kinds: Vec<Kind> = gs.iter().map(|g| g.kind).collect();
    assert_eq!(kinds, [Kind::Unavail, Kind::Busy, Kind::Name, Kind::Temp]);
    for g in &gs {
        let exts: Vec<&str> = g.files.iter().map(|f| f.ext.as_str()).collect();
        assert_eq!(exts, ["WAV", "gsm", "wav"], "{:?}", g.kind);
        assert!(g.missing.is_empty() && g.recording.is_empty());
        assert!(g.files.iter().all(|f| f.problem.is_none()), "{g:?}");
    }
    // The lengths the fixture's README measured (samples / 8000).
    let unavail = &gs[0];
    let secs: Vec<f64> = unavail.files.iter().map(|f| f.duration.unwrap()).collect();
    assert_eq!(secs, [32640.0 / 8000.0, 32800.0 / 8000.0, 32912.0 / 8000.0]);
    let gs = greeting::list(
        &spool,
        &mb("finance", "1101"),
        &["wav49".into(), "ulaw".into()],
    )
    .unwrap();
    assert_eq!(gs.len(), 1);
    assert_eq!(gs[0].missing, ["ulaw"]);
}

#[test]
fn a_set_greeting_is_every_format_asterisk_would_write() {
    let (_d, spool) = sandbox();
    let dir = spool.root().join("finance/1101");
    let source = spool.root().join("compta/1202/busy.wav");
    let (rate, samples) = vmtool::audio::decode_all(&source, "wav").unwrap();
    assert_eq!(rate, 8000);
    let opts = SetOptions {
        formats: &formats(),
        until: None,
        timeout: Duration::from_secs(5),
    };
    let mut at = |r: u32| {
        assert_eq!(r, 8000);
        Ok(samples.clone())
    };
    let written =
        greeting::set(&spool, &mb("finance", "1101"), Kind::Busy, &mut at, &opts).unwrap();
    assert_eq!(written.len(), 3);
    // The .wav holds the samples as they are; the header is format_wav.c's,
    // byte for byte the one Asterisk wrote for the same length.
    let ours = fs::read(dir.join("busy.wav")).unwrap();
    let theirs = fs::read(&source).unwrap();
    assert_eq!(ours, theirs);
    // Each format decodes with sox to what vmtool's own decoder gives.
    for ext in ["WAV", "gsm", "wav"] {
        let p = dir.join(format!("busy.{ext}"));
        let (_, mine) = vmtool::audio::decode_all(&p, ext).unwrap();
        assert_eq!(sox_samples(&p), mine, "{ext}");
        // Owner and mode as Asterisk's own recordings in the box.
        let model = fs::metadata(dir.join(format!("unavail.{ext}"))).unwrap();
        let md = fs::metadata(&p).unwrap();
        assert_eq!(
            (md.uid(), md.gid(), md.mode()),
            (model.uid(), model.gid(), model.mode())
        );
    }
    // Nothing left in tmp/ but vmtool's guard.
    let left: Vec<String> = fs::read_dir(dir.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".vmtool-lock")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // Setting it again with fewer formats removes the others: one greeting,
    // never old and new side by side.
    let opts = SetOptions {
        formats: &["gsm".into()],
        ..opts
    };
    greeting::set(&spool, &mb("finance", "1101"), Kind::Busy, &mut at, &opts).unwrap();
    let g = greeting::list(&spool, &mb("finance", "1101"), &formats()).unwrap();
    let busy = g.iter().find(|g| g.kind == Kind::Busy).unwrap();
    assert_eq!(busy.files.len(), 1);
    assert_eq!(busy.missing, ["wav49", "wav"]);
}

#[test]
fn a_format_vmtool_cannot_write_changes_nothing() {
    let (_d, spool) = sandbox();
    let before: Vec<_> = fs::read_dir(spool.root().join("finance/1101"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let opts = SetOptions {
        formats: &["wav".into(), "g729".into()],
        until: None,
        timeout: Duration::from_secs(5),
    };
    let e = greeting::set(
        &spool,
        &mb("finance", "1101"),
        Kind::Unavail,
        &mut |_| Ok(vec![0; 800]),
        &opts,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("format=g729") && e.contains("nothing was changed"),
        "{e}"
    );
    let after: Vec<_> = fs::read_dir(spool.root().join("finance/1101"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before.len(), after.len());
}

#[test]
fn a_temporary_greeting_expires_at_its_date() {
    let (_d, spool) = sandbox();
    let b = mb("finance", "1101");
    let opts = SetOptions {
        formats: &formats(),
        until: Some(2_000_000_000),
        timeout: Duration::from_secs(5),
    };
    greeting::set(&spool, &b, Kind::Temp, &mut |_| Ok(vec![100; 8000]), &opts).unwrap();
    let g = greeting::list(&spool, &b, &formats()).unwrap();
    let temp = g.iter().find(|g| g.kind == Kind::Temp).unwrap();
    assert_eq!((temp.files.len(), temp.until), (3, Some(2_000_000_000)));
    let t = Duration::from_secs(5);
    assert_eq!(
        greeting::expire(&spool, &b, 1_999_999_999, t).unwrap(),
        None
    );
    assert!(spool.root().join("finance/1101/temp.wav").exists());
    assert_eq!(
        greeting::expire(&spool, &b, 2_000_000_000, t).unwrap(),
        Some(2_000_000_000)
    );
    let g = greeting::list(&spool, &b, &formats()).unwrap();
    assert!(g.iter().all(|g| g.kind != Kind::Temp), "{g:?}");
    // The other greetings are untouched.
    assert!(spool.root().join("finance/1101/unavail.WAV").exists());
    // --until is for temp only.
    let opts = SetOptions {
        until: Some(1),
        ..opts
    };
    assert!(greeting::set(&spool, &b, Kind::Busy, &mut |_| Ok(vec![0; 160]), &opts).is_err());
}
