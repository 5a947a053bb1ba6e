//! `convert --add-format` on temp copies of the real Asterisk fixture: the
//! new files against the ones Asterisk itself wrote, kills at every step,
//! messages renumbered or deleted meanwhile, a bad message in a batch; and
//! `restore --fill-formats`, and a deposit into a box with no directory yet.

use crate::util::*;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

const STEPS: [&str; 6] = [
    "staged-intent",
    "staged-file",
    "staged-all",
    "locked",
    "committing",
    "renamed-audio",
];

fn inbox(sb: &Sandbox) -> PathBuf {
    sb.voicemail().join("finance/2101/INBOX")
}

/// vmtool's own files left in a box's tmp/.
fn leftovers(sb: &Sandbox, b: &str) -> Vec<String> {
    fs::read_dir(sb.voicemail().join(b).join("tmp"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".vmtool-stage") || n.starts_with(".vmtool-intent"))
                .collect()
        })
        .unwrap_or_default()
}

/// (inode, bytes) of every file in a folder.
fn snapshot(dir: &Path) -> Vec<(String, u64, Vec<u8>)> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().ino(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// GSM frames (33 bytes) Asterisk wrote for `samples` 16-bit samples: whole
/// frames only; vmtool also encodes the last partial frame (padded, as sox).
fn frames(samples: usize) -> usize {
    samples.div_ceil(160)
}

#[test]
fn add_format_writes_what_asterisk_wrote_and_leaves_the_rest_alone() {
    let sb = Sandbox::team2();
    let inbox = inbox(&sb);
    let asterisk_gsm = fs::read(inbox.join("msg0000.gsm")).unwrap();
    let asterisk_wav49 = fs::read(inbox.join("msg0000.WAV")).unwrap();
    fs::remove_file(inbox.join("msg0000.gsm")).unwrap();
    fs::remove_file(inbox.join("msg0000.WAV")).unwrap();
    let before = snapshot(&inbox);
    let r = sb
        .run(&["--no-ami", "convert", "--add-format", "gsm", "finance/2101"])
        .ok();
    assert_eq!(r.stdout.trim(), "added .gsm to finance/2101/INBOX/msg0000");
    assert!(
        r.stderr.contains("2 messages already had .gsm"),
        "{}",
        r.stderr
    );
    sb.run(&[
        "--no-ami",
        "convert",
        "--add-format",
        "wav49",
        "finance/2101/INBOX/0",
    ])
    .ok();
    // Every file that was there is untouched: same inode, same bytes.
    let after = snapshot(&inbox);
    for f in &before {
        assert!(after.contains(f), "{} was rewritten", f.0);
    }
    // libgsm's encoding of the .wav's samples is what Asterisk's codec_gsm
    // wrote, frame for frame (Asterisk drops the last partial frame).
    let samples = (fs::metadata(inbox.join("msg0000.wav")).unwrap().len() as usize - 44) / 2;
    let gsm = fs::read(inbox.join("msg0000.gsm")).unwrap();
    assert_eq!(gsm.len(), 33 * frames(samples));
    assert_eq!(&gsm[..asterisk_gsm.len()], &asterisk_gsm[..]);
    // WAV49: format_wav_gsm.c's 60-byte header, then the same frame pairs.
    let wav49 = fs::read(inbox.join("msg0000.WAV")).unwrap();
    assert_eq!(&wav49[8..48], &asterisk_wav49[8..48]);
    let common = asterisk_wav49.len() - 60;
    assert_eq!(&wav49[60..60 + common], &asterisk_wav49[60..]);
    // Owner and mode as the message's other audio files.
    let like = fs::metadata(inbox.join("msg0000.wav")).unwrap();
    for x in ["gsm", "WAV"] {
        let m = fs::metadata(inbox.join(format!("msg0000.{x}"))).unwrap();
        assert_eq!(
            (m.mode(), m.uid(), m.gid()),
            (like.mode(), like.uid(), like.gid())
        );
    }
    // sox reads the new files.
    let sox = std::process::Command::new("sox")
        .arg(inbox.join("msg0000.gsm"))
        .args(["-n", "stat"])
        .output()
        .unwrap();
    assert!(sox.status.success());
    assert!(leftovers(&sb, "finance/2101").is_empty());
    // A second run has nothing to do.
    let r = sb
        .run(&["--no-ami", "convert", "--add-format", "gsm", "finance/2101"])
        .ok();
    assert_eq!(r.stdout, "");
    assert!(r.stderr.contains("3 messages already had .gsm"));
}

#[test]
fn add_format_refuses_formats_it_cannot_write() {
    let sb = Sandbox::team2();
    let before = tree_state(&sb.voicemail());
    let r = sb.run(&["--no-ami", "convert", "--add-format", "g729", "finance"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("g729"), "{}", r.stderr);
    assert_eq!(tree_state(&sb.voicemail()), before);
    // Not with export options.
    for opt in [&["--stdout"][..], &["--to", "mp3"]] {
        let mut args = vec!["convert", "--add-format", "gsm"];
        args.extend_from_slice(opt);
        args.push("finance");
        assert_eq!(sb.run(&args).code, 2, "{opt:?}");
    }
    assert_eq!(tree_state(&sb.voicemail()), before);
}

#[test]
fn add_format_killed_at_every_step_leaves_no_half_file_and_rerun_completes() {
    let want = {
        let sb = Sandbox::team2();
        let i = inbox(&sb);
        fs::remove_file(i.join("msg0000.gsm")).unwrap();
        fs::remove_file(i.join("msg0001.gsm")).unwrap();
        sb.run(&[
            "--no-ami",
            "convert",
            "--add-format",
            "gsm",
            "finance/2101/INBOX",
        ])
        .ok();
        [
            fs::read(i.join("msg0000.gsm")).unwrap(),
            fs::read(i.join("msg0001.gsm")).unwrap(),
        ]
    };
    for step in STEPS {
        let sb = Sandbox::team2();
        let i = inbox(&sb);
        fs::remove_file(i.join("msg0000.gsm")).unwrap();
        fs::remove_file(i.join("msg0001.gsm")).unwrap();
        let args = [
            "--no-ami",
            "convert",
            "--add-format",
            "gsm",
            "finance/2101/INBOX",
        ];
        let killed = sb.run_env(&[("VMTOOL_TEST_KILL_AT", step)], &args);
        assert_ne!(killed.code, 0, "{step}: not killed");
        // A .gsm Asterisk can see is a whole one.
        for (n, w) in want.iter().enumerate() {
            if let Ok(b) = fs::read(i.join(format!("msg000{n}.gsm"))) {
                assert_eq!(&b, w, "{step}: msg000{n}.gsm is not whole");
            }
        }
        // Nothing else but the lock the killed run held (its name says whose).
        let names: Vec<String> = snapshot(&i).into_iter().map(|f| f.0).collect();
        assert!(
            names
                .iter()
                .all(|n| n.starts_with("msg") || n.starts_with(".lock")),
            "{step}: {names:?}"
        );
        sb.run(&args).ok();
        let names: Vec<String> = snapshot(&i).into_iter().map(|f| f.0).collect();
        assert!(
            names.iter().all(|n| n.starts_with("msg")),
            "{step}: {names:?}"
        );
        for (n, w) in want.iter().enumerate() {
            assert_eq!(
                &fs::read(i.join(format!("msg000{n}.gsm"))).unwrap(),
                w,
                "{step}"
            );
        }
        assert!(
            leftovers(&sb, "finance/2101").is_empty(),
            "{step}: {:?}",
            leftovers(&sb, "finance/2101")
        );
        let check = sb.run(&["check", "finance/2101"]);
        assert!(!check.stdout.contains("vmtool"), "{step}: {}", check.stdout);
    }
}

/// vmtool paused at `step` in the background; `resume` lets it go on.
struct Paused {
    child: std::process::Child,
    file: PathBuf,
}

impl Paused {
    fn start(sb: &Sandbox, step: &str, args: &[&str]) -> Paused {
        let file = sb.path().join("resume");
        let child = sb
            .command()
            .env("VMTOOL_TEST_PAUSE_AT", step)
            .env("VMTOOL_TEST_PAUSE_FILE", &file)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let paused = sb.path().join("resume.paused");
        let t = Instant::now();
        while !paused.exists() {
            assert!(t.elapsed() < Duration::from_secs(20), "never paused");
            std::thread::sleep(Duration::from_millis(5));
        }
        Paused { child, file }
    }

    fn resume(self) -> (i32, String, String) {
        fs::write(&self.file, "").unwrap();
        let out = self.child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// Asterisk's `vm_delete()` of msg0000 then `resequence_mailbox()`: msg0001
/// becomes msg0000 (audio renamed before the `.txt`).
fn asterisk_delete_first_and_renumber(dir: &Path) {
    fs::remove_file(dir.join("msg0000.txt")).unwrap();
    for x in ["WAV", "gsm", "wav"] {
        let _ = fs::remove_file(dir.join(format!("msg0000.{x}")));
    }
    for x in ["WAV", "gsm", "wav", "txt"] {
        let from = dir.join(format!("msg0001.{x}"));
        if from.exists() {
            fs::rename(from, dir.join(format!("msg0000.{x}"))).unwrap();
        }
    }
}

#[test]
fn add_format_follows_a_renumbered_message_and_skips_a_deleted_one() {
    let args = [
        "--no-ami",
        "convert",
        "--add-format",
        "alaw",
        "finance/2101/INBOX/1",
    ];
    // Renumbered while vmtool staged: the files go next to it at its new number.
    let sb = Sandbox::team2();
    let i = inbox(&sb);
    let txt1 = fs::read(i.join("msg0001.txt")).unwrap();
    let p = Paused::start(&sb, "staged-all", &args);
    asterisk_delete_first_and_renumber(&i);
    let (code, out, err) = p.resume();
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "added .alaw to finance/2101/INBOX/msg0000");
    assert_eq!(fs::read(i.join("msg0000.txt")).unwrap(), txt1);
    assert!(i.join("msg0000.alaw").is_file());
    assert!(!i.join("msg0001.alaw").exists());
    // The A-law file is the .wav's audio (sox decodes both to the same length).
    let len = |f: &str, t: &[&str]| {
        let o = std::process::Command::new("sox")
            .args(t)
            .arg(i.join(f))
            .args(["-t", "s16", "-"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o.stdout.len()
    };
    assert_eq!(
        len("msg0000.alaw", &["-t", "al", "-r", "8000", "-c", "1"]),
        len("msg0000.wav", &[])
    );
    assert!(leftovers(&sb, "finance/2101").is_empty());

    // Deleted while vmtool staged: skipped with a warning, nothing left behind.
    let sb = Sandbox::team2();
    let i = inbox(&sb);
    let p = Paused::start(&sb, "staged-all", &args);
    fs::remove_file(i.join("msg0001.txt")).unwrap();
    for x in ["WAV", "gsm", "wav"] {
        fs::remove_file(i.join(format!("msg0001.{x}"))).unwrap();
    }
    let (code, out, err) = p.resume();
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "");
    assert!(
        err.contains("finance/2101/INBOX/msg0001")
            && err.contains("gone")
            && err.contains("skipped"),
        "{err}"
    );
    let names: Vec<String> = snapshot(&i).into_iter().map(|f| f.0).collect();
    assert!(!names.iter().any(|n| n.ends_with(".alaw")), "{names:?}");
    assert!(leftovers(&sb, "finance/2101").is_empty());
}

#[test]
fn add_format_batch_goes_on_past_a_bad_message() {
    let sb = Sandbox::team2();
    let i = inbox(&sb);
    // msg0000: only a .wav, and that one is not audio.
    for x in ["WAV", "gsm"] {
        fs::remove_file(i.join(format!("msg0000.{x}"))).unwrap();
    }
    fs::write(i.join("msg0000.wav"), b"not a RIFF file at all").unwrap();
    let r = sb.run(&[
        "--no-ami",
        "convert",
        "--add-format",
        "ulaw",
        "finance/2101",
    ]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("finance/2101/INBOX/msg0000.wav"),
        "{}",
        r.stderr
    );
    assert!(!i.join("msg0000.ulaw").exists());
    assert!(i.join("msg0001.ulaw").is_file());
    assert!(sb
        .voicemail()
        .join("finance/2101/Work/msg0000.ulaw")
        .is_file());
    assert_eq!(r.stdout.lines().count(), 2, "{}", r.stdout);
}

#[test]
fn restore_fills_the_formats_the_spool_now_uses() {
    let sb = Sandbox::team2();
    let arch = sb.path().join("archive");
    sb.run(&[
        "--no-ami",
        "archive",
        "--older-than",
        "2030-01-01",
        "--include-new",
        "--to",
        arch.to_str().unwrap(),
        "compta/2201",
    ])
    .ok();
    let conf = sb.path().join("etc/voicemail.conf");
    let text = fs::read_to_string(&conf).unwrap().replace(
        "format = wav49|gsm|wav",
        "format = wav49|gsm|wav|alaw|wav16",
    );
    fs::write(&conf, text).unwrap();
    let dir = sb.voicemail().join("compta/2201/INBOX");
    let r = sb
        .run(&[
            "--no-ami",
            "restore",
            "--from",
            arch.to_str().unwrap(),
            "compta/2201/INBOX/0",
        ])
        .ok();
    assert!(
        r.stderr.contains("no .alaw, .wav16 that format= lists"),
        "{}",
        r.stderr
    );
    assert!(!dir.join("msg0000.alaw").exists());
    let r = sb
        .run(&[
            "--no-ami",
            "restore",
            "--fill-formats",
            "--from",
            arch.to_str().unwrap(),
            "compta/2201",
        ])
        .ok();
    assert_eq!(r.stdout.lines().count(), 2, "{}", r.stdout);
    for n in [1, 2] {
        for x in ["WAV", "gsm", "wav", "alaw", "wav16", "txt"] {
            assert!(dir.join(format!("msg000{n}.{x}")).is_file(), "{n}.{x}");
        }
        // The archived files are restored as they were.
        for x in ["WAV", "gsm", "wav", "txt"] {
            let archived: Vec<PathBuf> = walkdir::WalkDir::new(&arch)
                .into_iter()
                .filter_map(|e| e.ok())
                .map(|e| e.into_path())
                .filter(|p| p.extension().is_some_and(|e| e == x))
                .collect();
            let here = fs::read(dir.join(format!("msg000{n}.{x}"))).unwrap();
            assert!(
                archived.iter().any(|p| fs::read(p).unwrap() == here),
                "{n}.{x} is not an archived file"
            );
        }
        // wav16: the 8 kHz audio at 16 kHz, twice the samples.
        let wav = fs::metadata(dir.join(format!("msg000{n}.wav")))
            .unwrap()
            .len()
            - 44;
        let wav16 = fs::metadata(dir.join(format!("msg000{n}.wav16")))
            .unwrap()
            .len()
            - 44;
        assert_eq!(wav16, 2 * wav);
    }
    // What is already there is not restored twice, and no format is added to it.
    assert!(r.stderr.contains("not restored twice"), "{}", r.stderr);
    assert!(!dir.join("msg0000.alaw").exists());
}

#[test]
fn deposit_into_a_box_without_a_directory_creates_it_as_asterisk_would() {
    let sb = Sandbox::team2();
    let conf = sb.path().join("etc/voicemail.conf");
    let text = fs::read_to_string(&conf).unwrap().replace(
        "2202 => 3333,David Roux",
        "2202 => 3333,David Roux\n2203 => 5555,Gilles Neuf",
    );
    fs::write(&conf, text).unwrap();
    let ctx = sb.voicemail().join("compta");
    // An Asterisk whose umask is 027.
    fs::set_permissions(&ctx, std::os::unix::fs::PermissionsExt::from_mode(0o750)).unwrap();
    assert!(!ctx.join("2203").exists());
    let input = sb.path().join("in.wav");
    let st = std::process::Command::new("sox")
        .args(["-n", "-r", "8000", "-c", "1", "-b", "16"])
        .arg(&input)
        .args(["synth", "1", "sine", "440"])
        .status()
        .unwrap();
    assert!(st.success());
    let r = sb
        .run(&[
            "--no-ami",
            "deposit",
            "2203@compta",
            input.to_str().unwrap(),
        ])
        .ok();
    assert_eq!(r.stdout.trim(), "deposited compta/2203/INBOX/msg0000");
    let md = |p: &Path| fs::metadata(p).unwrap();
    let c = md(&ctx);
    // leave_voicemail() creates tmp/ and INBOX/ (0777 & ~umask, Asterisk's user).
    for d in ["2203", "2203/tmp", "2203/INBOX"] {
        let m = md(&ctx.join(d));
        assert_eq!(
            (m.mode() & 0o7777, m.uid(), m.gid()),
            (0o750, c.uid(), c.gid()),
            "{d}"
        );
    }
    for x in ["WAV", "gsm", "wav"] {
        let m = md(&ctx.join(format!("2203/INBOX/msg0000.{x}")));
        assert_eq!(m.mode() & 0o7777, 0o640, "{x}");
    }
    let count = sb.run(&["count", "2203@compta"]).ok().stdout;
    assert!(count.contains("new=1"), "{count}");
    // A box voicemail.conf does not know is refused, and nothing is created.
    let r = sb.run(&[
        "--no-ami",
        "deposit",
        "2299@compta",
        input.to_str().unwrap(),
    ]);
    assert_ne!(r.code, 0);
    assert!(!ctx.join("2299").exists());
}
