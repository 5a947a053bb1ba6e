//! Greetings on a copy of greetings a real Asterisk recorded through its phone
//! menu (`tests/fixtures/asterisk-greetings`), through the library.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;
use vmtool::spool::{Context, MailboxId, Spool};
use vmtool::store::greeting::{self, Kind, SetOptions};

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

// The `vmtool greeting` commands: the real binary on a copy of the fixture.

use crate::util::{Run, Sandbox};

fn read_wav(path: &Path) -> (u32, Vec<i16>) {
    let r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let rate = r.spec().sample_rate;
    (rate, r.into_samples::<i16>().map(Result::unwrap).collect())
}

fn gdir(sb: &Sandbox, b: &str) -> std::path::PathBuf {
    sb.voicemail().join(b)
}

#[test]
fn greeting_ls_lists_asterisks_greetings_as_sox_measures_them() {
    let sb = Sandbox::greetings();
    let run = sb.run(&["--format", "json", "greeting", "ls"]).ok();
    let rows = run.json_lines();
    let names: Vec<String> = rows
        .iter()
        .map(|r| format!("{}@{} {}", r["box"], r["context"], r["greeting"]).replace('"', ""))
        .collect();
    assert_eq!(
        names,
        [
            "1202@compta unavail",
            "1202@compta busy",
            "1202@compta name",
            "1202@compta temp",
            "1101@finance unavail"
        ]
    );
    for r in &rows {
        let base = match r["greeting"].as_str().unwrap() {
            "name" => "greet",
            k => k,
        };
        let dir = gdir(
            &sb,
            &format!(
                "{}/{}",
                r["context"].as_str().unwrap(),
                r["box"].as_str().unwrap()
            ),
        );
        assert_eq!(r["formats"], serde_json::json!(["WAV", "gsm", "wav"]));
        for f in r["files"].as_array().unwrap() {
            let ext = f["ext"].as_str().unwrap();
            let n = sox_samples(&dir.join(format!("{base}.{ext}"))).len();
            assert_eq!(
                f["duration"].as_f64().unwrap(),
                n as f64 / 8000.0,
                "{base}.{ext}"
            );
            assert!(f["problem"].is_null());
        }
    }
    // format= with one more format: it is missing everywhere.
    let conf = sb.path().join("etc/voicemail.conf");
    let text = fs::read_to_string(&conf)
        .unwrap()
        .replace("wav49|gsm|wav", "wav49|gsm|wav|ulaw");
    fs::write(&conf, text).unwrap();
    // A recording in progress, as Asterisk names it.
    fs::copy(
        gdir(&sb, "finance/1101/unavail.wav"),
        gdir(&sb, "finance/1101/busy.tmp.wav"),
    )
    .unwrap();
    let csv = sb
        .run(&["--format", "csv", "greeting", "ls", "finance"])
        .ok();
    let lines: Vec<&str> = csv.stdout.lines().collect();
    assert_eq!(
        lines[0],
        "context,box,greeting,formats,duration,date,missing,recording,until,problems"
    );
    assert!(
        lines[1].starts_with("finance,1101,unavail,WAV gsm wav,3.888,"),
        "{}",
        csv.stdout
    );
    assert!(lines[1].contains(",ulaw,"), "{}", csv.stdout);
    assert!(
        lines[2].starts_with("finance,1101,busy,,,,,busy.tmp.wav,"),
        "{}",
        csv.stdout
    );
    let table = sb.run(&["greeting", "ls", "1101@finance"]).ok();
    assert!(
        table.stdout.contains("recording: busy.tmp.wav"),
        "{}",
        table.stdout
    );
}

#[test]
fn greeting_export_and_play_give_what_sox_decodes() {
    let sb = Sandbox::greetings();
    for (kind, base) in [
        ("unavail", "unavail"),
        ("busy", "busy"),
        ("name", "greet"),
        ("temp", "temp"),
    ] {
        for ext in ["WAV", "gsm", "wav"] {
            let out = sb.path().join(format!("{kind}-{ext}.wav"));
            sb.run(&[
                "greeting",
                "export",
                "1202@compta",
                kind,
                "--from-format",
                ext,
                "-o",
                out.to_str().unwrap(),
            ])
            .ok();
            let (rate, got) = read_wav(&out);
            assert_eq!(rate, 8000);
            assert_eq!(
                got,
                sox_samples(&gdir(&sb, &format!("compta/1202/{base}.{ext}"))),
                "{kind} {ext}"
            );
        }
    }
    // An existing file is not replaced without --force.
    let out = sb.path().join("busy-wav.wav");
    let r = sb.run(&[
        "greeting",
        "export",
        "1202@compta",
        "busy",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("--force"), "{}", r.stderr);
    // --force replaces files only, never a device (vmtool often runs as root).
    let r = sb.run(&[
        "greeting",
        "export",
        "1202@compta",
        "busy",
        "-o",
        "/dev/null",
        "--force",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(!fs::metadata("/dev/null").unwrap().is_file());
    // No such greeting: exit 3.
    let r = sb.run(&[
        "greeting",
        "export",
        "1101@finance",
        "busy",
        "-o",
        "/dev/null",
    ]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("no busy greeting"), "{}", r.stderr);
    // play reaches ALSA sample-exact (the .wav is chosen first).
    if let Some((run, captured)) =
        crate::play::play_captured_with(&sb, &["greeting"], &["1202@compta", "busy"])
    {
        let run = run.ok();
        assert!(
            run.stdout.contains("1202@compta busy greeting"),
            "{}",
            run.stdout
        );
        let want = sox_samples(&gdir(&sb, "compta/1202/busy.wav"));
        crate::play::assert_same_audio(&captured, &want);
    }
}

#[test]
fn greeting_set_round_trips_through_every_format() {
    let sb = Sandbox::greetings();
    // A 16 kHz stereo WAV made by sox from Asterisk's own recording.
    let src = gdir(&sb, "compta/1202/greet.wav");
    let input = sb.path().join("input.wav");
    let st = std::process::Command::new("sox")
        .arg(&src)
        .args(["-r", "16000", "-c", "2"])
        .arg(&input)
        .status()
        .expect("sox");
    assert!(st.success());
    let r = sb
        .run(&[
            "greeting",
            "set",
            "1101@finance",
            "name",
            input.to_str().unwrap(),
        ])
        .ok();
    assert_eq!(r.stdout.trim(), "1101@finance: name greeting set (3 files)");
    let ls = sb
        .run(&["--format", "json", "greeting", "ls", "1101@finance"])
        .ok();
    let rows = ls.json_lines();
    let name = rows
        .iter()
        .find(|r| r["greeting"] == "name")
        .expect("name listed");
    assert_eq!(name["formats"], serde_json::json!(["WAV", "gsm", "wav"]));
    for ext in ["WAV", "gsm", "wav"] {
        let written = gdir(&sb, &format!("finance/1101/greet.{ext}"));
        let out = sb.path().join(format!("out-{ext}.wav"));
        sb.run(&[
            "greeting",
            "export",
            "1101@finance",
            "name",
            "--from-format",
            ext,
            "-o",
            out.to_str().unwrap(),
        ])
        .ok();
        assert_eq!(read_wav(&out).1, sox_samples(&written), "{ext}");
    }
    // The 8 kHz .wav is the input resampled: close to Asterisk's original.
    let (_, ours) = read_wav(&gdir(&sb, "finance/1101/greet.wav"));
    let orig = sox_samples(&src);
    assert!(
        (ours.len() as i64 - orig.len() as i64).abs() <= 2,
        "{} vs {}",
        ours.len(),
        orig.len()
    );
    let num: f64 = ours
        .iter()
        .zip(&orig)
        .map(|(&a, &b)| f64::from(a) * f64::from(b))
        .sum();
    let den = (ours.iter().map(|&a| f64::from(a).powi(2)).sum::<f64>()
        * orig.iter().map(|&b| f64::from(b).powi(2)).sum::<f64>())
    .sqrt();
    assert!(num / den > 0.98, "correlation {}", num / den);
    // An 8 kHz mono WAV reaches the .wav sample for sample.
    sb.run(&[
        "greeting",
        "set",
        "1101@finance",
        "busy",
        src.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(read_wav(&gdir(&sb, "finance/1101/busy.wav")).1, orig);
    // rm removes every format.
    sb.run(&["greeting", "rm", "1101@finance", "busy"]).ok();
    assert!(["WAV", "gsm", "wav"]
        .iter()
        .all(|e| !gdir(&sb, &format!("finance/1101/busy.{e}")).exists()));
}

#[test]
fn greeting_set_on_a_context_goes_on_past_a_bad_box() {
    let sb = Sandbox::greetings();
    // compta/1202's tmp/ is a file: no staging possible there.
    fs::write(gdir(&sb, "compta/1202/tmp"), b"not a directory").unwrap();
    fs::create_dir_all(gdir(&sb, "compta/1203/INBOX")).unwrap();
    let src = gdir(&sb, "compta/1202/busy.wav");
    let before = fs::read(gdir(&sb, "compta/1202/unavail.wav")).unwrap();
    let r = sb.run(&[
        "greeting",
        "set",
        "compta",
        "unavail",
        src.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("1202@compta"), "{}", r.stderr);
    assert!(
        r.stdout.contains("1203@compta: unavail greeting set"),
        "{}",
        r.stdout
    );
    assert_eq!(
        fs::read(gdir(&sb, "compta/1202/unavail.wav")).unwrap(),
        before
    );
    assert_eq!(
        fs::read(gdir(&sb, "compta/1203/unavail.wav")).unwrap(),
        fs::read(&src).unwrap()
    );
}

#[test]
fn a_context_wide_temp_greeting_expires_when_its_date_has_passed() {
    let sb = Sandbox::greetings();
    fs::create_dir_all(gdir(&sb, "finance/1102/INBOX")).unwrap();
    let src = gdir(&sb, "compta/1202/temp.wav");
    // 2026-12-20 12:00 UTC; closed until 2 January.
    let now = "1797768000";
    let env = [("VMTOOL_NOW", now), ("TZ", "UTC")];
    let r = sb
        .run_env(
            &env,
            &[
                "greeting",
                "set",
                "finance",
                "temp",
                src.to_str().unwrap(),
                "--until",
                "2027-01-02",
            ],
        )
        .ok();
    assert_eq!(r.stdout.lines().count(), 2, "{}", r.stdout);
    for b in ["1101", "1102"] {
        let until =
            fs::read_to_string(gdir(&sb, &format!("finance/{b}/temp.vmtool-until"))).unwrap();
        assert!(until.contains("until=1798848000"), "{until}");
    }
    let ls = sb
        .run_env(&env, &["--format", "json", "greeting", "ls", "finance"])
        .ok();
    let temps: Vec<_> = ls
        .json_lines()
        .into_iter()
        .filter(|r| r["greeting"] == "temp")
        .collect();
    assert_eq!(temps.len(), 2);
    assert!(temps.iter().all(|t| t["until"] == 1798848000));
    // An hour before: nothing happens.
    let r = sb
        .run_env(&[("VMTOOL_NOW", "1798844400")], &["greeting", "expire"])
        .ok();
    assert_eq!(r.stdout, "");
    assert!(gdir(&sb, "finance/1101/temp.wav").exists());
    // On the date: both go, with their end dates; compta's temp (no date) stays.
    let r = sb
        .run_env(
            &[("VMTOOL_NOW", "1798848000"), ("TZ", "UTC")],
            &["greeting", "expire"],
        )
        .ok();
    assert_eq!(r.stdout.lines().count(), 2, "{}", r.stdout);
    assert!(
        r.stdout
            .contains("1101@finance: temp greeting expired (until 2027-01-02 00:00)"),
        "{}",
        r.stdout
    );
    for b in ["1101", "1102"] {
        let left: Vec<String> = fs::read_dir(gdir(&sb, &format!("finance/{b}")))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("temp"))
            .collect();
        assert!(left.is_empty(), "{b}: {left:?}");
    }
    assert!(gdir(&sb, "compta/1202/temp.wav").exists());
    // --until is for temp only, and must be in the future.
    let r = sb.run_env(
        &env,
        &[
            "greeting",
            "set",
            "1101@finance",
            "busy",
            src.to_str().unwrap(),
            "--until",
            "2w",
        ],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = sb.run_env(
        &env,
        &[
            "greeting",
            "set",
            "1101@finance",
            "temp",
            src.to_str().unwrap(),
            "--until",
            "2026-01-01",
        ],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    // An age counts forward.
    sb.run_env(
        &env,
        &[
            "greeting",
            "set",
            "1101@finance",
            "temp",
            src.to_str().unwrap(),
            "--until",
            "2w",
        ],
    )
    .ok();
    let until = fs::read_to_string(gdir(&sb, "finance/1101/temp.vmtool-until")).unwrap();
    assert!(
        until.contains(&format!("until={}", 1797768000 + 14 * 86400)),
        "{until}"
    );
}

/// The bytes of greeting `base` in every format.
fn greeting_bytes(sb: &Sandbox, b: &str, base: &str) -> Vec<Vec<u8>> {
    ["WAV", "gsm", "wav"]
        .iter()
        .map(|e| fs::read(gdir(sb, &format!("{b}/{base}.{e}"))).unwrap())
        .collect()
}

#[test]
fn a_killed_greeting_set_is_finished_by_the_next_command_never_a_mix() {
    let src_of = |sb: &Sandbox| gdir(sb, "compta/1202/busy.wav");
    // What a set that is not killed writes.
    let clean = Sandbox::greetings();
    clean
        .run(&[
            "greeting",
            "set",
            "1101@finance",
            "unavail",
            src_of(&clean).to_str().unwrap(),
        ])
        .ok();
    let new = greeting_bytes(&clean, "finance/1101", "unavail");
    for (step, then) in [
        ("greeting-staged", vec!["greeting", "ls", "1101@finance"]),
        ("greeting-renamed", vec!["greeting", "ls", "finance"]),
        (
            "greeting-renamed",
            vec![
                "greeting",
                "export",
                "1101@finance",
                "unavail",
                "-o",
                "OUT",
                "--force",
            ],
        ),
        (
            "greeting-staged",
            vec!["greeting", "rm", "1101@finance", "busy"],
        ),
    ] {
        let sb = Sandbox::greetings();
        let old = greeting_bytes(&sb, "finance/1101", "unavail");
        assert_ne!(old, new);
        let r: Run = sb.run_env(
            &[("VMTOOL_TEST_KILL_AT", step)],
            &[
                "greeting",
                "set",
                "1101@finance",
                "unavail",
                src_of(&sb).to_str().unwrap(),
            ],
        );
        assert_ne!(r.code, 0, "{step}: the failpoint did not fire");
        let mid = greeting_bytes(&sb, "finance/1101", "unavail");
        if step == "greeting-renamed" {
            // Killed after the first rename: old and new side by side on disk.
            assert!(mid.iter().zip(&old).any(|(a, b)| a != b));
            assert!(mid.iter().zip(&old).any(|(a, b)| a == b));
        } else {
            assert_eq!(mid, old);
        }
        // OUT: a file in the sandbox.
        let out = sb.path().join("exported.wav").display().to_string();
        let then: Vec<&str> = then
            .iter()
            .map(|w| if *w == "OUT" { out.as_str() } else { w })
            .collect();
        let r = sb.run(&then).ok();
        assert!(
            r.stderr.contains("finished setting the unavail greeting"),
            "{}",
            r.stderr
        );
        assert_eq!(
            greeting_bytes(&sb, "finance/1101", "unavail"),
            new,
            "{step} then {then:?}"
        );
        let left: Vec<String> = fs::read_dir(gdir(&sb, "finance/1101/tmp"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != ".vmtool-lock")
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}

#[test]
fn check_reports_greeting_problems_and_fixes_only_the_safe_ones() {
    let sb = Sandbox::greetings();
    let f = |rel: &str| gdir(&sb, rel);
    fs::remove_file(f("finance/1101/unavail.gsm")).unwrap();
    fs::write(f("compta/1202/busy.gsm"), b"").unwrap();
    fs::write(f("compta/1202/greet.WAV"), b"RIFF\x04\x00\x00\x00junk").unwrap();
    fs::copy(
        f("finance/1101/unavail.wav"),
        f("finance/1101/busy.tmp.wav"),
    )
    .unwrap();
    let st = std::process::Command::new("touch")
        .args(["-d", "3 days ago"])
        .arg(f("finance/1101/busy.tmp.wav"))
        .status()
        .unwrap();
    assert!(st.success());
    // A recording in progress right now: not a leftover.
    fs::copy(
        f("finance/1101/unavail.wav"),
        f("finance/1101/busy.tmp.WAV"),
    )
    .unwrap();
    fs::write(f("finance/1101/temp.vmtool-until"), "until=1\n").unwrap();
    let kinds = |r: &Run| -> Vec<(String, String, bool)> {
        let mut v: Vec<_> = r
            .json_lines()
            .iter()
            .map(|j| {
                (
                    j["kind"].as_str().unwrap().to_string(),
                    j["path"].as_str().unwrap().to_string(),
                    j["fixed"].as_bool().unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let r = sb.run(&["--format", "json", "check"]);
    assert_eq!(r.code, 5, "{}\n{}", r.stdout, r.stderr);
    let want = |fixed: bool| {
        vec![
            (
                "greeting-bad-audio".to_string(),
                "compta/1202/busy.gsm".to_string(),
                false,
            ),
            (
                "greeting-bad-audio".into(),
                "compta/1202/greet.WAV".into(),
                false,
            ),
            (
                "greeting-format-missing".into(),
                "finance/1101/unavail".into(),
                false,
            ),
            (
                "greeting-tmp-leftover".into(),
                "finance/1101/busy.tmp.wav".into(),
                fixed,
            ),
            (
                "greeting-until-orphan".into(),
                "finance/1101/temp.vmtool-until".into(),
                fixed,
            ),
        ]
    };
    assert_eq!(kinds(&r), want(false), "{}", r.stdout);
    let r = sb.run(&["--format", "json", "check", "--fix"]);
    assert_eq!(kinds(&r), want(true), "{}", r.stdout);
    assert!(!f("finance/1101/busy.tmp.wav").exists());
    assert!(!f("finance/1101/temp.vmtool-until").exists());
    assert!(f("finance/1101/busy.tmp.WAV").exists());
    assert!(f("compta/1202/greet.WAV").exists() && f("compta/1202/busy.gsm").exists());
    // A set killed between two formats: check names it, --fix finishes it.
    let src = f("compta/1202/temp.wav");
    let r = sb.run_env(
        &[("VMTOOL_TEST_KILL_AT", "greeting-renamed")],
        &[
            "greeting",
            "set",
            "1101@finance",
            "busy",
            src.to_str().unwrap(),
        ],
    );
    assert_ne!(r.code, 0);
    let r = sb.run(&["--format", "json", "check", "finance"]);
    assert!(
        kinds(&r).iter().any(|k| k.0 == "half-done" && !k.2),
        "{}",
        r.stdout
    );
    let r = sb.run(&["--format", "json", "check", "--fix", "finance"]);
    assert!(
        kinds(&r).iter().any(|k| k.0 == "half-done" && k.2),
        "{}",
        r.stdout
    );
    for ext in ["WAV", "gsm", "wav"] {
        assert!(f(&format!("finance/1101/busy.{ext}")).exists());
    }
    assert_eq!(
        fs::read(f("finance/1101/busy.wav")).unwrap(),
        fs::read(&src).unwrap()
    );
}

#[test]
fn boxes_shows_greetings_and_flags_an_old_temp_greeting() {
    let sb = Sandbox::greetings();
    let st = std::process::Command::new("touch")
        .args(["-d", "@1790000000"])
        .args(["WAV", "gsm", "wav"].map(|e| gdir(&sb, &format!("compta/1202/temp.{e}"))))
        .status()
        .unwrap();
    assert!(st.success());
    // 20 days after the temp greeting was set.
    let now = (1790000000 + 20 * 86400).to_string();
    let env = [("VMTOOL_NOW", now.as_str())];
    let r = sb.run_env(&env, &["--color", "never", "boxes"]).ok();
    let line = |b: &str| {
        r.stdout
            .lines()
            .find(|l| l.starts_with(b))
            .unwrap()
            .to_string()
    };
    assert!(
        line("1202@compta").contains("greetings:unavail,busy,name,temp temp greeting 20 days old"),
        "{}",
        r.stdout
    );
    assert!(
        line("1101@finance").contains("greetings:unavail"),
        "{}",
        r.stdout
    );
    assert!(!line("1101@finance").contains("temp"), "{}", r.stdout);
    let r = sb
        .run_env(
            &env,
            &["--color", "never", "boxes", "--temp-older-than", "30"],
        )
        .ok();
    assert!(!r.stdout.contains("days old"), "{}", r.stdout);
    let r = sb
        .run_env(&env, &["--format", "json", "boxes", "compta"])
        .ok();
    let rows = r.json_lines();
    let row = rows.iter().find(|j| j["box"] == "1202").unwrap();
    assert_eq!(
        row["greetings"],
        serde_json::json!(["unavail", "busy", "name", "temp"])
    );
    assert_eq!(row["temp_age_days"], 20);
}

// `watch --all`: greeting changes, on the file spool (inotify) and in the
// table (polling).

/// A running `vmtool watch --all --format json`, its events read as they come.
struct Watching {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Watching {
    fn start(mut cmd: std::process::Command, extra: &[&str]) -> Watching {
        use std::io::{BufRead, BufReader};
        let mut child = cmd
            .args(["-v", "--format", "json", "watch", "--all"])
            .args(extra)
            .env("TZ", "UTC")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until the source runs (the -v note): what is there now is not news.
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        while err.read_line(&mut line).unwrap() > 0 && !line.contains("watching") {
            line.clear();
        }
        assert!(line.contains("watching"), "watch did not start: {line}");
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        let (tx, lines) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        Watching { child, lines }
    }

    /// The next event, or `None` when nothing comes within `wait`.
    fn next(&self, wait: Duration) -> Option<serde_json::Value> {
        let l = self.lines.recv_timeout(wait).ok()?;
        Some(serde_json::from_str(&l).unwrap_or_else(|e| panic!("{l}: {e}")))
    }

    /// `event greeting box@context [formats]` of the next event.
    fn next_line(&self) -> String {
        let ev = self
            .next(Duration::from_secs(10))
            .expect("an event within 10 s");
        let formats = ev["formats"]
            .as_array()
            .map(|a| a.iter().map(|f| f.as_str().unwrap()).collect::<Vec<_>>());
        format!(
            "{} {} {}@{} {}",
            ev["event"].as_str().unwrap(),
            ev["greeting"].as_str().unwrap_or("-"),
            ev["box"].as_str().unwrap(),
            ev["context"].as_str().unwrap(),
            formats.map(|f| f.join(",")).unwrap_or_default()
        )
        .trim_end()
        .to_string()
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `play_record_review()` does with `outsidecaller=0` (spec §7.4, and
/// the fixture README's system-call trace): every format written to
/// `<name>.tmp.<ext>` while the owner speaks, then, on accept, renamed to
/// `<name>.<ext>` one after the other (gsm, wav, WAV); on hang-up deleted.
fn asterisk_records(boxdir: &Path, name: &str, like: &Path, accept: bool) {
    use std::io::Write;
    let exts = ["WAV", "gsm", "wav"];
    let mut files: Vec<(fs::File, Vec<u8>)> = exts
        .iter()
        .map(|e| {
            let f = fs::File::create(boxdir.join(format!("{name}.tmp.{e}"))).unwrap();
            let bytes = fs::read(like.with_extension(e)).unwrap();
            (f, bytes)
        })
        .collect();
    // Written in pieces while the recording goes on.
    for part in 0..4 {
        for (f, bytes) in &mut files {
            let n = bytes.len().div_ceil(4);
            let piece = bytes.chunks(n).nth(part).unwrap_or_default();
            f.write_all(piece).unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(files);
    for e in ["gsm", "wav", "WAV"] {
        let tmp = boxdir.join(format!("{name}.tmp.{e}"));
        if accept {
            fs::rename(&tmp, boxdir.join(format!("{name}.{e}"))).unwrap();
        } else {
            fs::remove_file(&tmp).unwrap();
        }
    }
}

#[test]
fn watch_all_reports_a_greeting_once_its_files_are_renamed_in() {
    let sb = Sandbox::greetings();
    let w = Watching::start(sb.command(), &[]);
    let fin = gdir(&sb, "finance/1101");
    let like = gdir(&sb, "compta/1202/busy.wav");
    // The owner of 1101 records a busy greeting and accepts it: one event,
    // once every format is in place.
    asterisk_records(&fin, "busy", &like, true);
    assert_eq!(w.next_line(), "greeting busy 1101@finance WAV,gsm,wav");
    // A recording abandoned by hanging up, and a message-less box file: nothing.
    asterisk_records(&fin, "greet", &like, false);
    fs::write(fin.join("secret.conf"), "[general]\npassword=1234\n").unwrap();
    // The owner removes the temporary greeting by phone (vm_delete(): each
    // format, and temp.txt which does not exist).
    for e in ["WAV", "gsm", "wav"] {
        fs::remove_file(gdir(&sb, &format!("compta/1202/temp.{e}"))).unwrap();
    }
    assert_eq!(w.next_line(), "greeting-removed temp 1202@compta");
    // vmtool's own set: staged in tmp/, renamed in, one event too.
    sb.run(&[
        "--no-ami",
        "greeting",
        "set",
        "1101@finance",
        "name",
        like.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(w.next_line(), "greeting name 1101@finance WAV,gsm,wav");
    sb.run(&["--no-ami", "greeting", "rm", "1101@finance", "busy"])
        .ok();
    assert_eq!(w.next_line(), "greeting-removed busy 1101@finance");
    // Nothing twice, nothing for the abandoned recording.
    assert!(w.next(Duration::from_millis(800)).is_none());
}

#[test]
fn watch_without_all_reports_no_greeting() {
    let sb = Sandbox::greetings();
    let mut cmd = sb.command();
    // `watch` without --all: only new messages.
    cmd.args(["-v", "--format", "json", "watch", "--max-events", "1"])
        .env("TZ", "UTC")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    {
        use std::io::{BufRead, BufReader};
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        while err.read_line(&mut line).unwrap() > 0 && !line.contains("watching") {
            line.clear();
        }
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    }
    let like = gdir(&sb, "compta/1202/busy.wav");
    asterisk_records(&gdir(&sb, "finance/1101"), "busy", &like, true);
    std::thread::sleep(Duration::from_millis(700));
    // Then a message: the one event reported is it.
    let inbox = gdir(&sb, "finance/1101/INBOX");
    let txt = "[message]\norigmailbox=1101\ncontext=finance\ncallerid=\"A\" <1>\norigtime=1790000000\nmsg_id=1790000000-00000001\nflag=\nduration=3\n";
    fs::copy(
        gdir(&sb, "finance/1101/unavail.wav"),
        inbox.join("msg0000.wav"),
    )
    .unwrap();
    fs::write(sb.path().join("msg.txt"), txt).unwrap();
    fs::rename(sb.path().join("msg.txt"), inbox.join("msg0000.txt")).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["event"], "new", "{lines:?}");
}

// The table: greeting rows as Asterisk's ODBC storage writes them.

use crate::sql::{servers, TestTable, PREFIX};
use vmtool::store::sql::db::V;

/// The fixture's recording of `base` (wav49: the first format, the one the
/// table keeps).
fn asterisk_wav49(base: &str) -> std::path::PathBuf {
    crate::util::repo_root().join(format!(
        "tests/fixtures/asterisk-greetings/voicemail/compta/1202/{base}.WAV"
    ))
}

/// An accepted recording stored the way `store_file()` does for a greeting
/// (msgnum -1, `dir` ending in the greeting's name), replacing any row there.
fn asterisk_stores_greeting(t: &TestTable, ctx: &str, b: &str, base: &str, like: &str) {
    let dir = format!("{PREFIX}/{ctx}/{b}/{base}");
    let audio = fs::read(asterisk_wav49(like)).unwrap();
    let mut db = t.db();
    db.transaction(|db| {
        db.exec(
            &format!("DELETE FROM {} WHERE dir=? AND msgnum=-1", t.name),
            &[V::Text(dir.clone())],
        )?;
        db.exec(
            &format!("INSERT INTO {} (dir, msgnum, recording, context, callerid, mailboxuser, mailboxcontext, flag, msg_id) VALUES (?,-1,?,'','',?,?,'','')", t.name),
            &[
                V::Text(dir.clone()),
                V::Bytes(audio.clone()),
                V::Text(b.into()),
                V::Text(ctx.into()),
            ],
        )
    })
    .unwrap();
}

#[test]
fn watch_all_reports_greeting_rows_in_the_table() {
    for s in servers() {
        let t = TestTable::new(&s, &[]);
        let sb = Sandbox::team2();
        t.load_fixture();
        let mut cmd = sb.command();
        cmd.args(t.args());
        let w = Watching::start(cmd, &["--poll", "0.1", "compta"]);
        asterisk_stores_greeting(&t, "compta", "2201", "busy", "busy");
        assert_eq!(
            w.next_line(),
            "greeting busy 2201@compta WAV",
            "{:?}",
            s.kind
        );
        // Re-recorded: the row replaced with other audio.
        asterisk_stores_greeting(&t, "compta", "2201", "busy", "unavail");
        assert_eq!(
            w.next_line(),
            "greeting busy 2201@compta WAV",
            "{:?}",
            s.kind
        );
        // Outside the scope: never reported.
        asterisk_stores_greeting(&t, "finance", "2101", "unavail", "unavail");
        let src = asterisk_wav49("temp");
        let run = |a: &[&str]| {
            let mut all = t.args();
            all.extend(a.iter().map(|s| s.to_string()));
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            sb.run(&refs).ok();
        };
        run(&[
            "greeting",
            "set",
            "2202@compta",
            "temp",
            src.to_str().unwrap(),
            "--until",
            "2099-01-02",
        ]);
        assert_eq!(
            w.next_line(),
            "greeting temp 2202@compta WAV",
            "{:?}",
            s.kind
        );
        run(&["greeting", "rm", "2201@compta", "busy"]);
        assert_eq!(
            w.next_line(),
            "greeting-removed busy 2201@compta",
            "{:?}",
            s.kind
        );
        assert!(w.next(Duration::from_millis(800)).is_none(), "{:?}", s.kind);
    }
}

#[test]
fn greeting_rows_list_play_and_export_what_sox_decodes() {
    for s in servers() {
        let t = TestTable::new(&s, &[]);
        let sb = Sandbox::team2();
        let kinds = [
            ("unavail", "unavail"),
            ("busy", "busy"),
            ("name", "greet"),
            ("temp", "temp"),
        ];
        for (_, base) in kinds {
            asterisk_stores_greeting(&t, "compta", "2201", base, base);
        }
        let run = |a: &[&str]| {
            let mut all = t.args();
            all.extend(a.iter().map(|s| s.to_string()));
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            sb.run(&refs)
        };
        let ls = run(&["--format", "json", "greeting", "ls", "2201@compta"]).ok();
        let rows = ls.json_lines();
        assert_eq!(rows.len(), 4, "{}", ls.stdout);
        for ((kind, base), row) in kinds.iter().zip(&rows) {
            let want = sox_samples(&asterisk_wav49(base));
            assert_eq!(row["greeting"], *kind);
            assert_eq!(
                row["files"][0]["duration"].as_f64().unwrap(),
                want.len() as f64 / 8000.0,
                "{:?} {kind}",
                s.kind
            );
            let out = sb.path().join(format!("{kind}.wav"));
            run(&[
                "greeting",
                "export",
                "2201@compta",
                kind,
                "-o",
                out.to_str().unwrap(),
            ])
            .ok();
            let (rate, got) = read_wav(&out);
            assert_eq!(rate, 8000);
            assert_eq!(got, want, "{:?} {kind}", s.kind);
        }
        // play reaches ALSA sample-exact from the row's recording.
        let mut global = t.args();
        global.push("greeting".into());
        let global: Vec<&str> = global.iter().map(String::as_str).collect();
        if let Some((played, captured)) =
            crate::play::play_captured_with(&sb, &global, &["2201@compta", "busy"])
        {
            played.ok();
            crate::play::assert_same_audio(&captured, &sox_samples(&asterisk_wav49("busy")));
        }
        // A box with no greeting row: exit 3, named.
        let r = run(&["greeting", "export", "2202@compta", "busy", "-o", "-"]);
        assert_eq!(r.code, 3, "{}", r.stderr);
        assert!(r.stderr.contains("no busy greeting"), "{}", r.stderr);
    }
}

#[test]
fn check_names_greeting_rows_that_play_nothing() {
    for s in servers() {
        let t = TestTable::new(&s, &[]);
        let sb = Sandbox::team2();
        let run = |a: &[&str]| {
            let mut all = t.args();
            all.extend(a.iter().map(|s| s.to_string()));
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            sb.run(&refs)
        };
        // Asterisk's own recordings: nothing to say.
        asterisk_stores_greeting(&t, "compta", "2201", "unavail", "unavail");
        asterisk_stores_greeting(&t, "compta", "2201", "greet", "greet");
        let clean = run(&["check"]);
        assert_eq!(clean.code, 0, "{}{}", clean.stdout, clean.stderr);
        let mut db = t.db();
        let put = |db: &mut vmtool::store::sql::db::Db, dir: &str, rec: V| {
            db.exec(
                &format!(
                    "UPDATE {} SET recording = ? WHERE dir = ? AND msgnum = -1",
                    t.name
                ),
                &[rec, V::Text(format!("{PREFIX}/{dir}"))],
            )
            .unwrap();
        };
        asterisk_stores_greeting(&t, "compta", "2202", "busy", "busy");
        asterisk_stores_greeting(&t, "compta", "2202", "temp", "temp");
        put(&mut db, "compta/2201/unavail", V::Bytes(Vec::new()));
        put(&mut db, "compta/2202/busy", V::Null);
        put(
            &mut db,
            "compta/2202/temp",
            V::Bytes(b"RIFF\x04\x00\x00\x00junk".to_vec()),
        );
        drop(db);
        let r = run(&["check"]);
        assert_eq!(r.code, 5, "{}{}", r.stdout, r.stderr);
        let lines: Vec<&str> = r.stdout.lines().collect();
        assert_eq!(lines.len(), 3, "{}", r.stdout);
        assert!(
            lines[0].starts_with(&format!("{PREFIX}/compta/2201/unavail msgnum -1: the unavail greeting has an empty recording"))
                && lines[0].contains("vmtool greeting set 2201@compta unavail FILE"),
            "{}",
            r.stdout
        );
        assert!(
            lines[1]
                .contains("compta/2202/busy msgnum -1: the busy greeting has no recording (NULL)"),
            "{}",
            r.stdout
        );
        assert!(
            lines[2].contains("compta/2202/temp msgnum -1: the temp greeting has not"),
            "{}",
            r.stdout
        );
        // The greeting rows are no messages: ls is as before, empty.
        assert_eq!(run(&["--format", "json", "ls"]).ok().stdout, "");
    }
}

#[test]
fn report_lists_forgotten_temp_greetings() {
    let sb = Sandbox::greetings();
    let touch = |when: &str, rel: &str| {
        let st = std::process::Command::new("touch")
            .args(["-d", when])
            .args(["WAV", "gsm", "wav"].map(|e| gdir(&sb, &format!("{rel}.{e}"))))
            .status()
            .unwrap();
        assert!(st.success());
    };
    // Every greeting recorded long ago; 1202's temp greeting 20 days before "now".
    for g in ["unavail", "busy", "greet"] {
        touch("@1780000000", &format!("compta/1202/{g}"));
    }
    touch("@1780000000", "finance/1101/unavail");
    touch("@1790000000", "compta/1202/temp");
    let now = (1790000000 + 20 * 86400).to_string();
    let env = [("VMTOOL_NOW", now.as_str()), ("TZ", "UTC")];
    let r = sb.run_env(&env, &["report", "--no-check"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(
            "compta/1202  temp greeting set 20 d ago (2026-09-21 14:13 UTC), played instead of unavail and busy: remove it with `vmtool greeting rm 1202@compta temp` if it is out of date [temp-greeting]"
        ),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("finance/1101  temp"), "{}", r.stdout);
    // A month is allowed: nothing needs attention.
    let r = sb.run_env(&env, &["report", "--no-check", "--temp-older-than", "30"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("Nothing needs attention."),
        "{}",
        r.stdout
    );
    // With an end date still to come it is meant to stay; once the date has
    // passed and `greeting expire` did not run, it needs attention again.
    fs::write(
        gdir(&sb, "compta/1202/temp.vmtool-until"),
        format!("until={}\n", 1790000000 + 25 * 86400),
    )
    .unwrap();
    let r = sb.run_env(&env, &["report", "--no-check"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let later = (1790000000 + 26 * 86400).to_string();
    let r = sb.run_env(
        &[("VMTOOL_NOW", later.as_str()), ("TZ", "UTC")],
        &["--format", "json", "report", "--no-check"],
    );
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let j: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let temps: Vec<&serde_json::Value> = j["attention"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "temp-greeting")
        .collect();
    assert_eq!(temps.len(), 1, "{}", r.stdout);
    assert_eq!(temps[0]["at"], "compta/1202");
    assert!(
        temps[0]["what"]
            .as_str()
            .unwrap()
            .contains("past its end date (2026-10-16 14:13 UTC)"),
        "{}",
        r.stdout
    );
}

#[test]
fn report_lists_forgotten_temp_greeting_rows() {
    for s in servers() {
        let t = TestTable::new(&s, &[]);
        let sb = Sandbox::team2();
        // Boxes the table knows: those with messages.
        t.load_fixture();
        let src = asterisk_wav49("temp");
        let go = |now: &str, a: &[&str]| {
            let mut all = t.args();
            all.extend(a.iter().map(|s| s.to_string()));
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            sb.run_env(&[("VMTOOL_NOW", now), ("TZ", "UTC")], &refs)
        };
        // Set on 2026-09-21 with no end date; 2202's until 2026-10-01.
        let set = |b: &str, until: &[&str]| {
            let mut a = vec!["greeting", "set", b, "temp", src.to_str().unwrap()];
            a.extend_from_slice(until);
            // The row's origtime is the set's clock.
            let mut db = t.db();
            go("1790000000", &a).ok();
            db.exec(
                &format!(
                    "UPDATE {} SET origtime = 1790000000 WHERE msgnum = -1",
                    t.name
                ),
                &[],
            )
            .unwrap();
        };
        set("2201@compta", &[]);
        set("2202@compta", &["--until", "2026-10-01"]);
        let now = (1790000000 + 20 * 86400).to_string();
        let r = go(&now, &["--format", "json", "report", "--no-check"]);
        assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
        let j: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        let mut temps: Vec<String> = j["attention"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["kind"] == "temp-greeting")
            .map(|a| {
                format!(
                    "{} {}",
                    a["at"].as_str().unwrap(),
                    a["what"].as_str().unwrap()
                )
            })
            .collect();
        temps.sort();
        assert_eq!(temps.len(), 2, "{temps:?}");
        assert!(
            temps[0].starts_with("compta/2201 temp greeting set 20 d ago"),
            "{temps:?}"
        );
        assert!(
            temps[1].starts_with("compta/2202 temp greeting past its end date"),
            "{temps:?}"
        );
    }
}

#[test]
fn boxes_shows_the_greeting_rows_greeting_ls_finds() {
    for s in servers() {
        let t = TestTable::new(&s, &[]);
        let sb = Sandbox::team2();
        t.load_fixture();
        asterisk_stores_greeting(&t, "compta", "2201", "unavail", "unavail");
        asterisk_stores_greeting(&t, "compta", "2201", "busy", "busy");
        asterisk_stores_greeting(&t, "compta", "2202", "temp", "temp");
        // Spelled otherwise: whether it counts is the server's collation's call, for
        // `boxes` as for Asterisk's `dir = ?` (and `greeting ls`).
        asterisk_stores_greeting(&t, "finance", "1101", "GREET", "greet");
        t.db()
            .exec(
                &format!(
                    "UPDATE {} SET origtime = 1790000000 WHERE msgnum = -1",
                    t.name
                ),
                &[],
            )
            .unwrap();
        let run = |a: &[&str]| {
            let mut all = t.args();
            all.extend(a.iter().map(|s| s.to_string()));
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            let now = (1790000000 + 20 * 86400).to_string();
            sb.run_env(&[("VMTOOL_NOW", now.as_str())], &refs).ok()
        };
        let boxes = run(&["--format", "json", "boxes"]);
        let rows = boxes.json_lines();
        assert!(rows.len() >= 3, "{}", boxes.stdout);
        let greetings_of = |b: &str| -> Vec<String> {
            let row = rows
                .iter()
                .find(|r| {
                    format!(
                        "{}@{}",
                        r["box"].as_str().unwrap(),
                        r["context"].as_str().unwrap()
                    ) == b
                })
                .unwrap_or_else(|| panic!("{b} not in {}", boxes.stdout));
            row["greetings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| g.as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(
            greetings_of("2201@compta"),
            ["unavail", "busy"],
            "{:?}",
            s.kind
        );
        assert_eq!(greetings_of("2202@compta"), ["temp"], "{:?}", s.kind);
        let row = rows.iter().find(|r| r["box"] == "2202").unwrap();
        assert_eq!(row["temp_age_days"], 20, "{:?}", s.kind);
        for r in &rows {
            let b = format!(
                "{}@{}",
                r["box"].as_str().unwrap(),
                r["context"].as_str().unwrap()
            );
            let ls = run(&["--format", "json", "greeting", "ls", &b]);
            let found: Vec<String> = ls
                .json_lines()
                .iter()
                .filter(|g| g["files"].as_array().is_some_and(|f| !f.is_empty()))
                .map(|g| g["greeting"].as_str().unwrap().to_string())
                .collect();
            assert_eq!(greetings_of(&b), found, "{b} {:?}", s.kind);
        }
    }
}
