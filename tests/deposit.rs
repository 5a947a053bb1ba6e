//! `vmtool deposit`: new messages from audio files on temp copies of the real
//! Asterisk fixture, checked against the fixture's own messages and sox.

use crate::util::*;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CALLER: &str = "Reception <100>";

fn sox(args: &[&str]) -> Vec<u8> {
    let out = Command::new("sox").args(args).output().expect("run sox");
    assert!(
        out.status.success(),
        "sox {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A 2.5 s 8 kHz mono 16-bit speech-like signal made by sox.
fn input_8k(dir: &Path) -> PathBuf {
    let p = dir.join("notice.wav");
    sox(&[
        "-n",
        "-r",
        "8000",
        "-c",
        "1",
        "-b",
        "16",
        p.to_str().unwrap(),
        "synth",
        "2.5",
        "sine",
        "300-3000",
        "vol",
        "0.5",
    ]);
    p
}

/// Message numbers of the `.txt` files in a folder.
fn txts(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("msg") && n.ends_with(".txt"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn keys(txt: &str) -> Vec<String> {
    txt.lines()
        .filter(|l| !l.starts_with(';') && !l.starts_with('['))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.to_string()))
        .collect()
}

fn field(txt: &str, key: &str) -> String {
    txt.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in {txt}"))
        .to_string()
}

#[test]
fn deposit_writes_every_format_as_asterisk_does() {
    let sb = Sandbox::team2();
    let input = input_8k(sb.path());
    let r = sb
        .run(&[
            "--no-ami",
            "deposit",
            "2101@finance",
            input.to_str().unwrap(),
            "--callerid",
            CALLER,
            "--origtime",
            "1796000000",
        ])
        .ok();
    assert_eq!(r.stdout.trim(), "deposited finance/2101/INBOX/msg0002");
    let inbox = sb.voicemail().join("finance/2101/INBOX");
    let txt = fs::read_to_string(inbox.join("msg0002.txt")).unwrap();
    let real = fs::read_to_string(inbox.join("msg0000.txt")).unwrap();
    // Asterisk's keys, in Asterisk's order, and its comment header.
    assert_eq!(keys(&txt), keys(&real));
    assert_eq!(
        txt.lines().take(4).collect::<Vec<_>>(),
        real.lines().take(4).collect::<Vec<_>>()
    );
    assert_eq!(field(&txt, "callerid"), "\"Reception\" <100>");
    assert_eq!(field(&txt, "origtime"), "1796000000");
    let date = Command::new("date")
        .args(["-u", "-d", "@1796000000", "+%a %b %e %r UTC %Y"])
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    assert_eq!(
        field(&txt, "origdate"),
        String::from_utf8(date.stdout).unwrap().trim()
    );
    assert_eq!(field(&txt, "rdnis"), "Unknown");
    assert_eq!(field(&txt, "flag"), "");
    // 20000 samples / 8000, truncated.
    assert_eq!(field(&txt, "duration"), "2");
    let id = field(&txt, "msg_id");
    let (epoch, hex) = id.split_once('-').unwrap();
    assert_eq!(epoch, "1796000000");
    assert_eq!(hex.len(), 8);
    assert!(u32::from_str_radix(hex, 16).unwrap() >= 0x8000_0000, "{id}");

    // .wav: the input's samples, untouched, in format_wav.c's 44-byte layout.
    let wav = fs::read(inbox.join("msg0002.wav")).unwrap();
    let pcm = sox(&[input.to_str().unwrap(), "-t", "raw", "-"]);
    assert_eq!(&wav[44..], &pcm[..]);
    let real_wav = fs::read(inbox.join("msg0000.wav")).unwrap();
    assert_eq!(&wav[8..36], &real_wav[8..36]);
    // .gsm: libgsm's bytes (sox encodes with libgsm).
    let gsm = fs::read(inbox.join("msg0002.gsm")).unwrap();
    assert_eq!(gsm, sox(&[input.to_str().unwrap(), "-t", "gsm", "-"]));
    // .WAV: the fixture's header layout; sox decodes it to what vmtool decodes.
    let w49 = fs::read(inbox.join("msg0002.WAV")).unwrap();
    let real49 = fs::read(inbox.join("msg0000.WAV")).unwrap();
    assert_eq!(&w49[8..48], &real49[8..48]);
    let p49 = inbox.join("msg0002.WAV");
    let by_sox = sox(&[
        "-t",
        "wav",
        p49.to_str().unwrap(),
        "-t",
        "raw",
        "-e",
        "signed",
        "-b",
        "16",
        "-",
    ]);
    let by_vmtool = Command::new(env!("CARGO_BIN_EXE_vmtool"))
        .args(["--spool"])
        .arg(sb.path().join("spool"))
        .arg("--voicemail-conf")
        .arg(sb.path().join("etc/voicemail.conf"))
        .args([
            "convert",
            "--stdout",
            "--from-format",
            "WAV",
            "finance/2101/INBOX/2",
        ])
        .output()
        .unwrap();
    assert!(by_vmtool.status.success());
    assert_eq!(&by_vmtool.stdout[44..], &by_sox[..]);
    // Owner and mode as the folder's other messages.
    use std::os::unix::fs::MetadataExt;
    let (a, b) = (
        fs::metadata(inbox.join("msg0002.gsm")).unwrap(),
        fs::metadata(inbox.join("msg0000.gsm")).unwrap(),
    );
    assert_eq!((a.mode(), a.uid(), a.gid()), (b.mode(), b.uid(), b.gid()));
    // Nothing left in tmp/ but the lock file vmtool keeps.
    let left: Vec<_> = fs::read_dir(sb.voicemail().join("finance/2101/tmp"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".vmtool-lock")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // Listed like any message.
    let ls = sb
        .run(&["--format", "json", "ls", "finance/2101/INBOX"])
        .ok();
    let rows = ls.json_lines();
    assert_eq!(rows.len(), 3);
    assert!(ls.stdout.contains("Reception"), "{}", ls.stdout);
}

#[test]
fn deposit_resamples_other_rates_and_refuses_bad_input() {
    let sb = Sandbox::team2();
    let p = sb.path().join("cd.wav");
    sox(&[
        "-n",
        "-r",
        "44100",
        "-c",
        "2",
        "-b",
        "24",
        p.to_str().unwrap(),
        "synth",
        "1.5",
        "sine",
        "440",
    ]);
    sb.run(&[
        "--no-ami",
        "deposit",
        "2202@compta",
        p.to_str().unwrap(),
        "--urgent",
        "--normalize",
    ])
    .ok();
    let urgent = sb.voicemail().join("compta/2202/Urgent");
    let txt = fs::read_to_string(urgent.join("msg0000.txt")).unwrap();
    assert_eq!(field(&txt, "flag"), "Urgent");
    assert_eq!(field(&txt, "callerid"), "Unknown");
    assert_eq!(field(&txt, "duration"), "1");
    // 1.5 s at 8 kHz.
    let wav = fs::read(urgent.join("msg0000.wav")).unwrap();
    assert_eq!(wav.len(), 44 + 2 * 12000);
    // sox reads what was written.
    sox(&[urgent.join("msg0000.wav").to_str().unwrap(), "-n", "stat"]);

    let junk = sb.path().join("junk.wav");
    fs::write(&junk, b"not audio at all").unwrap();
    let before = tree_state(&sb.voicemail());
    let r = sb.run(&["--no-ami", "deposit", "compta", junk.to_str().unwrap()]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("junk.wav") && r.stderr.contains("nothing was deposited"),
        "{}",
        r.stderr
    );
    assert_eq!(tree_state(&sb.voicemail()), before);
    let r = sb.run(&[
        "--no-ami",
        "deposit",
        "compta/2202/INBOX",
        junk.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--folder"), "{}", r.stderr);
}

#[test]
fn broadcast_full_box_refused_and_rerun_adds_nothing() {
    let sb = Sandbox::team2();
    let input = input_8k(sb.path());
    let input = input.to_str().unwrap();
    let vm = sb.voicemail();
    // compta/2201 has maxmsg=3: fill its INBOX to 3 with deposits of other audio.
    let other = sb.path().join("other.wav");
    sox(&[
        "-n",
        "-r",
        "8000",
        "-c",
        "1",
        "-b",
        "16",
        other.to_str().unwrap(),
        "synth",
        "0.5",
        "sine",
        "500",
    ]);
    let have = txts(&vm.join("compta/2201/INBOX")).len();
    for i in have..3 {
        sb.run(&[
            "--no-ami",
            "deposit",
            "2201@compta",
            other.to_str().unwrap(),
            "--callerid",
            &format!("n{i}"),
        ])
        .ok();
    }
    assert_eq!(txts(&vm.join("compta/2201/INBOX")).len(), 3);
    // The messages' files (a refused deposit may touch tmp/ and the lock).
    let files = |d: &Path| -> Vec<String> {
        tree_state(d)
            .into_iter()
            .filter(|l| l.starts_with("INBOX/"))
            .collect()
    };
    let before_2201 = files(&vm.join("compta/2201"));
    let r = sb.run(&[
        "--no-ami",
        "deposit",
        "compta",
        "finance",
        input,
        "--callerid",
        CALLER,
    ]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("2201") && r.stderr.contains("mailbox full"),
        "{}",
        r.stderr
    );
    assert_eq!(
        r.stdout
            .lines()
            .filter(|l| l.starts_with("deposited "))
            .count(),
        3,
        "{}",
        r.stdout
    );
    assert_eq!(files(&vm.join("compta/2201")), before_2201);
    let counts = |vm: &Path| -> Vec<usize> {
        ["compta/2202", "finance/2101", "finance/2102"]
            .iter()
            .map(|b| txts(&vm.join(b).join("INBOX")).len())
            .collect()
    };
    let after = counts(&vm);
    // Rerun: every box that has it is skipped, nothing is added.
    let r = sb.run(&[
        "--no-ami",
        "deposit",
        "compta",
        "finance",
        input,
        "--callerid",
        CALLER,
    ]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stdout.matches("already holds this message").count(),
        3,
        "{}",
        r.stdout
    );
    assert_eq!(counts(&vm), after);
    // Another caller is another message.
    sb.run(&[
        "--no-ami",
        "deposit",
        "2101@finance",
        input,
        "--callerid",
        "Other <101>",
    ])
    .ok();
    assert_eq!(txts(&vm.join("finance/2101/INBOX")).len(), after[1] + 1);
}

/// Every message visible to Asterisk (a `.txt`) has all its audio, and a
/// message is there at most once.
fn assert_consistent(vm: &Path, boxes: &[&str], formats: &[&str]) -> Vec<usize> {
    boxes
        .iter()
        .map(|b| {
            let inbox = vm.join(b).join("INBOX");
            let mut ours = 0;
            for t in txts(&inbox) {
                let stem = t.trim_end_matches(".txt");
                for ext in formats {
                    let f = inbox.join(format!("{stem}.{ext}"));
                    assert!(f.is_file(), "{} visible without {}", t, f.display());
                }
                if fs::read_to_string(inbox.join(&t))
                    .unwrap()
                    .contains("\"Reception\" <100>")
                {
                    ours += 1;
                }
            }
            assert!(ours <= 1, "{b}: deposited twice");
            ours
        })
        .collect()
}

#[test]
fn broadcast_killed_at_every_step_then_rerun_completes() {
    let boxes = ["finance/2101", "finance/2102"];
    for step in [
        "staged-intent",
        "staged-file",
        "staged-all",
        "locked",
        "committing",
        "committed",
    ] {
        let sb = Sandbox::team2();
        let input = input_8k(sb.path());
        let vm = sb.voicemail();
        let killed = sb.run_env(
            &[("VMTOOL_TEST_KILL_AT", step)],
            &[
                "--no-ami",
                "deposit",
                "finance",
                input.to_str().unwrap(),
                "--callerid",
                CALLER,
            ],
        );
        assert_ne!(killed.code, 0, "{step}: not killed");
        assert_consistent(&vm, &boxes, &["WAV", "gsm", "wav"]);
        sb.run(&[
            "--no-ami",
            "deposit",
            "finance",
            input.to_str().unwrap(),
            "--callerid",
            CALLER,
        ])
        .ok();
        assert_eq!(
            assert_consistent(&vm, &boxes, &["WAV", "gsm", "wav"]),
            vec![1, 1],
            "{step}"
        );
        // The rerun left nothing behind: check finds no leftovers.
        let check = sb.run(&["check", "finance"]);
        assert!(
            !check.stdout.contains("vmtool-stage") && !check.stdout.contains("intent"),
            "{step}: {}",
            check.stdout
        );
        for b in boxes {
            let left: Vec<_> = fs::read_dir(vm.join(b).join("tmp"))
                .unwrap()
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".vmtool-stage") || n.starts_with(".vmtool-intent"))
                .collect();
            assert!(left.is_empty(), "{step}: {b}: {left:?}");
        }
    }
}

#[test]
fn watch_reports_a_deposit_as_new() {
    let sb = Sandbox::team2();
    let input = input_8k(sb.path());
    let mut child = sb
        .command()
        .args(["-v", "--format", "json", "watch", "--max-events", "1"])
        .env("TZ", "UTC")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("watching") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "watch exited before it was ready"
        );
    }
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    sb.run(&[
        "--no-ami",
        "deposit",
        "2202@compta",
        input.to_str().unwrap(),
        "--callerid",
        CALLER,
    ])
    .ok();
    let t = Instant::now();
    let mut lines = Vec::new();
    for l in BufReader::new(child.stdout.take().unwrap()).lines() {
        lines.push(l.unwrap());
        if !lines.is_empty() || t.elapsed() > Duration::from_secs(15) {
            break;
        }
    }
    assert!(child.wait().unwrap().success());
    let ev: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(ev["event"], "new", "{lines:?}");
    assert_eq!(
        (ev["context"].as_str(), ev["box"].as_str()),
        (Some("compta"), Some("2202")),
        "{ev}"
    );
    assert_eq!(ev["callerid_name"], "Reception");
    assert_eq!(ev["formats"], serde_json::json!(["WAV", "gsm", "wav"]));
}
