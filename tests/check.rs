//! `vmtool check` on a fixture copy with every kind of damage the spec lists.

use crate::util::*;
use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

fn make_old(p: &Path) {
    let f = fs::File::options().write(true).open(p).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(7200))
        .unwrap();
}

#[test]
fn clean_fixture_has_no_problems() {
    let sb = Sandbox::team2();
    let r = sb.run(&["check"]);
    assert_eq!(r.code, 5, "{}\n{}", r.stdout, r.stderr);
    // The only finding on Asterisk's own spool: 2201 is full (maxmsg=3).
    assert_eq!(r.stdout.lines().count(), 1, "{}", r.stdout);
    assert!(
        r.stdout
            .contains("compta/2201/INBOX: 3 messages for maxmsg=3"),
        "{}",
        r.stdout
    );
    assert_eq!(sb.run(&["check", "finance", "direction"]).ok().stdout, "");
}

#[test]
fn damage_is_found_and_safe_fixes_applied() {
    let sb = Sandbox::team2();
    let vm = sb.voicemail();
    let inbox = vm.join("finance/2101/INBOX");
    // Phantom (.txt without audio) at 5, orphan audio at 7, a -bak leftover,
    // a stray upper-case .TXT, a foreign folder and a case-variant box.
    fs::copy(inbox.join("msg0000.txt"), inbox.join("msg0005.txt")).unwrap();
    fs::copy(inbox.join("msg0000.wav"), inbox.join("msg0007.wav")).unwrap();
    fs::copy(inbox.join("msg0001.txt"), inbox.join("msg0001-bak.txt")).unwrap();
    fs::write(inbox.join("msg0009.TXT"), "x").unwrap();
    fs::create_dir_all(vm.join("finance/2101/inbox")).unwrap();
    fs::create_dir_all(vm.join("compta/2202x")).unwrap();
    fs::create_dir_all(vm.join("compta/2202X")).unwrap();
    // A .txt without callerid and a stale Asterisk lock elsewhere.
    let old_txt = vm.join("compta/2202/Old/msg0000.txt");
    let t = fs::read_to_string(&old_txt)
        .unwrap()
        .replace("callerid=\"Support Client\" <3900>\n", "");
    fs::write(&old_txt, t).unwrap();
    let lock = vm.join("direction/2301/INBOX/.lock");
    fs::write(&lock, "").unwrap();
    for p in [
        inbox.join("msg0005.txt"),
        inbox.join("msg0007.wav"),
        inbox.join("msg0001-bak.txt"),
    ] {
        make_old(&p);
    }
    let r = sb.run(&["check"]);
    assert_eq!(r.code, 5);
    for want in [
        "finance/2101/INBOX/msg0005.*: a .txt without audio",
        "finance/2101/INBOX/msg0007.*: audio without .txt",
        "[gap]",
        "msg0001-bak.txt: left by a prepend-forward",
        "msg0009.TXT: counted as a message by MWI",
        "finance/2101/inbox: a case variant of INBOX",
        "differ only in case",
        "compta/2202/Old/msg0000.txt: no callerid= line",
        "[full]",
    ] {
        assert!(
            r.stdout.contains(want),
            "missing {want:?} in:\n{}",
            r.stdout
        );
    }
    let j = sb.run(&["--format", "json", "check"]).json_lines();
    assert!(j.iter().all(|f| f["fixed"] == false));
    // --fix: phantom, orphan and backup are repaired; nothing that exists only
    // once is deleted (they are quarantined in tmp/).
    let r = sb.run(&["--no-ami", "check", "--fix"]);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(!inbox.join("msg0005.txt").exists());
    assert!(!inbox.join("msg0007.wav").exists());
    assert!(!inbox.join("msg0001-bak.txt").exists());
    let q = vm.join("finance/2101/tmp/vmtool-quarantine/INBOX");
    for n in ["msg0005.txt", "msg0007.wav", "msg0001-bak.txt"] {
        assert!(q.join(n).exists(), "{n} not quarantined");
    }
    // The lock is reported (young: not stale yet), never removed by check.
    assert!(lock.exists());
}

#[test]
fn stale_lock_is_reported_and_broken_only_on_request() {
    let sb = Sandbox::team2();
    let inbox = sb.voicemail().join("direction/2301/INBOX");
    fs::write(inbox.join(".lock"), "").unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let r = sb.run(&["check", "--stale-after", "1", "direction"]);
    assert_eq!(r.code, 5);
    assert!(
        r.stdout
            .contains("direction/2301/INBOX/.lock: lock left for"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("vmtool unlock --stale direction/2301/INBOX"),
        "{}",
        r.stdout
    );
    // A young lock is not broken.
    let r = sb.run(&["unlock", "--stale", "direction/2301/INBOX"]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(inbox.join(".lock").exists());
    let r = sb
        .run(&[
            "unlock",
            "--stale",
            "--older-than",
            "1",
            "direction/2301/INBOX",
        ])
        .ok();
    assert!(r.stdout.contains("stale lock broken"), "{}", r.stdout);
    assert!(!inbox.join(".lock").exists());
    assert_eq!(sb.run(&["check", "direction"]).ok().stdout, "");
}

#[test]
fn directories_named_in_no_utf8_are_reported_not_skipped() {
    use std::os::unix::ffi::OsStrExt;
    let sb = Sandbox::team2();
    let vm = sb.voicemail();
    let bad = std::ffi::OsStr::from_bytes(b"caf\xe9");
    std::fs::create_dir(vm.join(bad)).unwrap();
    std::fs::create_dir(vm.join("compta").join(bad)).unwrap();
    std::fs::create_dir(vm.join("compta/2202").join(bad)).unwrap();
    let r = sb.run(&["--format", "json", "check"]);
    assert_eq!(r.code, 5, "{}\n{}", r.stdout, r.stderr);
    let found: Vec<String> = r
        .json_lines()
        .iter()
        .filter(|f| f["kind"] == "name-not-utf8")
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        found,
        [
            "caf\u{fffd}",
            "compta/caf\u{fffd}",
            "compta/2202/caf\u{fffd}"
        ],
        "{}",
        r.stdout
    );
    // Listings still work and never show them.
    let ls = sb.run(&["ls"]).ok().stdout;
    assert!(!ls.contains('\u{fffd}'), "{ls}");
}

#[test]
fn arguments_that_are_not_utf8_are_refused_before_anything_is_read() {
    use std::os::unix::ffi::OsStrExt;
    let sb = Sandbox::team2();
    let before = crate::util::tree_state(sb.path());
    let bad = std::ffi::OsStr::from_bytes(b"compta/22\xff02");
    for cmd in ["ls", "rm", "archive"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vmtool"))
            .arg("--spool")
            .arg(sb.path().join("spool"))
            .arg("--voicemail-conf")
            .arg(sb.path().join("etc/voicemail.conf"))
            .arg(cmd)
            .arg(bad)
            .args(if cmd == "archive" {
                vec!["--to", "/tmp/x"]
            } else {
                vec![]
            })
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("UTF-8"), "{cmd}: {err}");
    }
    assert_eq!(before, crate::util::tree_state(sb.path()));
}

/// Gaps that `rm` leaves are information (Asterisk closes them when the
/// folder is next opened), unless `--strict`; the summary counts each kind
/// and says where `--fix` put files aside; 0-byte audio is reported.
#[test]
fn gaps_inform_kinds_are_counted_and_empty_audio_is_found() {
    let sb = Sandbox::team2();
    let vm = sb.voicemail();
    let r = sb.run(&["--no-ami", "rm", "--yes", "2101@finance/INBOX/0"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = sb.run(&["check", "finance/2101"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("[gap] (information)"), "{}", r.stdout);
    assert!(
        r.stderr
            .contains("0 problem(s) found, 0 fixed; 1 for information (1 gap;"),
        "{}",
        r.stderr
    );
    let j = sb
        .run(&["--format", "json", "check", "finance/2101"])
        .json_lines();
    assert_eq!(j.len(), 1);
    assert_eq!(j[0]["severity"], "information");
    let r = sb.run(&["check", "--strict", "finance/2101"]);
    assert_eq!(r.code, 5, "{}", r.stdout);
    assert!(
        r.stderr.contains("1 problem(s) found, 0 fixed (1 gap)"),
        "{}",
        r.stderr
    );

    // Two orphans and an empty audio file: counted by kind; --fix says where
    // the orphans went.
    let inbox = vm.join("finance/2101/INBOX");
    let work = vm.join("finance/2101/Work");
    fs::copy(inbox.join("msg0001.wav"), inbox.join("msg0007.wav")).unwrap();
    fs::copy(inbox.join("msg0001.wav"), inbox.join("msg0008.wav")).unwrap();
    make_old(&inbox.join("msg0007.wav"));
    make_old(&inbox.join("msg0008.wav"));
    let wav = fs::read_dir(&work)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.extension()
                .is_some_and(|e| e == "wav" || e == "WAV" || e == "gsm")
        })
        .unwrap();
    fs::write(&wav, b"").unwrap();
    let r = sb.run(&["check", "finance/2101"]);
    assert_eq!(r.code, 5, "{}", r.stdout);
    assert!(r.stdout.contains("[empty-audio]"), "{}", r.stdout);
    assert!(
        r.stderr
            .contains("3 problem(s) found, 0 fixed (1 empty-audio, 2 orphan)"),
        "{}",
        r.stderr
    );
    let r = sb.run(&["--no-ami", "check", "--fix", "finance/2101"]);
    assert!(
        r.stderr
            .contains("files put aside in finance/2101/tmp/vmtool-quarantine/INBOX"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("2 fixed"), "{}", r.stderr);
}
