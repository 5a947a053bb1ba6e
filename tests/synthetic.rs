//! Counting and scanning edge cases of spec §2.3 in synthetic folders.

use crate::util::*;
use std::fs;

fn txt(origtime: i64, callerid: &str) -> String {
    format!(
        ";\n; Message Information file\n;\n[message]\norigmailbox=100\ncontext=default\nexten=100\nrdnis=unknown\npriority=1\ncallerchan=PJSIP/a-1\ncallerid={callerid}\norigdate=x\norigtime={origtime}\ncategory=\nmsg_id={origtime}-00000001\nflag=\nduration=1\n"
    )
}

#[test]
fn counts_follow_asterisk_name_rules() {
    let sb = Sandbox::empty();
    let inbox = sb.voicemail().join("default/100/INBOX");
    let old = sb.voicemail().join("default/100/Old");
    let urgent = sb.voicemail().join("default/100/Urgent");
    for d in [&inbox, &old, &urgent] {
        fs::create_dir_all(d).unwrap();
    }
    let w = |dir: &std::path::Path, name: &str| {
        fs::write(dir.join(name), txt(1_700_000_000, "Bob <1>")).unwrap()
    };
    // INBOX: each of these counts for MWI (__has_voicemail) ...
    w(&inbox, "msg0000.txt");
    fs::write(inbox.join("msg0000.wav"), b"").unwrap();
    w(&inbox, "msg0001.TXT"); // upper case: counted by MWI
    w(&inbox, "msg0002.txt.bak"); // prefix compare: counted
    w(&inbox, "msg-001.txt"); // "txt" at offset 8: counted
    w(&inbox, "msg0003.txt"); // phantom (.txt without audio): counted
                              // ... and these do not.
    w(&inbox, "msg12.txt");
    fs::write(inbox.join("msg0004.wav"), b"").unwrap(); // orphan audio
    fs::write(inbox.join("msg0005.gsm"), b"").unwrap();
    w(&inbox, "notes.txt");
    fs::write(inbox.join(".lock"), b"").unwrap();
    // Old: one message; Urgent: an orphan only.
    w(&old, "msg0000.txt");
    fs::write(old.join("msg0000.WAV"), b"").unwrap();
    fs::write(urgent.join("msg0000.gsm"), b"").unwrap();

    let r = sb.run(&["--format", "json", "count", "100@default"]).ok();
    assert_eq!(
        r.json_lines()[0],
        serde_json::json!({"mailbox": "100@default", "urgent": 0, "new": 5, "old": 1})
    );
    let b = sb.run(&["--format", "json", "boxes"]).ok().json_lines();
    assert_eq!(b[0]["new"], 5);
    // Deposit capacity counts ".txt" at offset 7 (case-sensitive): msg0000,
    // msg0003, msg0002.txt.bak and msg-001.txt, not msg0001.TXT.
    assert_eq!(b[0]["inbox_capacity_count"], 4);
    assert_eq!(b[0]["configured"], false);

    // ls shows complete messages and phantoms (marked), not orphans or strays.
    let rows = sb
        .run(&["--format", "json", "ls", "100@default/INBOX"])
        .ok()
        .json_lines();
    let got: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["number"].as_str().unwrap().to_string(),
                r["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("0000".into(), "complete".into()),
            ("0003".into(), "phantom".into())
        ]
    );
    let table = sb.run(&["ls", "100@default/INBOX"]).ok().stdout;
    assert!(table.lines().nth(2).unwrap().contains("phantom"), "{table}");

    // show reports orphans and names Asterisk's scanners trip on.
    let r = sb.run(&["show", "100@default/INBOX"]);
    assert!(
        r.stdout.contains("default/100/INBOX/msg0004 (orphan)"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("adopted by the next message"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("default/100/INBOX/msg0003 (phantom)"),
        "{}",
        r.stdout
    );
    for name in [
        "msg0001.TXT",
        "msg0002.txt.bak",
        "msg-001.txt",
        "msg12.txt",
        ".lock",
        "notes.txt",
    ] {
        assert!(
            r.stderr.contains(name),
            "{name} not reported:\n{}",
            r.stderr
        );
    }
}

#[test]
fn control_characters_in_caller_names_are_escaped() {
    let sb = Sandbox::empty();
    let inbox = sb.voicemail().join("default/100/INBOX");
    fs::create_dir_all(&inbox).unwrap();
    fs::write(
        inbox.join("msg0000.txt"),
        txt(1_700_000_000, "\"Evil\x1b]2\x07\x1b[2J\x1b[31mX\" <1>"),
    )
    .unwrap();
    fs::write(inbox.join("msg0000.wav"), b"").unwrap();
    for args in [vec!["ls"], vec!["show", "100@default/INBOX/0"]] {
        let r = sb.run(&args).ok();
        assert!(
            !r.stdout.contains('\x1b') && !r.stdout.contains('\x07'),
            "{:?}",
            r.stdout
        );
        assert!(r.stdout.contains("Evil\\u{1b}]2\\u{7}"), "{}", r.stdout);
    }
    // JSON keeps the exact text, correctly encoded.
    let j = sb.run(&["--format", "json", "ls"]).ok().json_lines();
    assert_eq!(j[0]["callerid_name"], "Evil\x1b]2\x07\x1b[2J\x1b[31mX");
    // A ';' in a caller name is a comment to Asterisk: the name ends there.
    fs::write(inbox.join("msg0000.txt"), txt(1_700_000_000, "\"A;B\" <1>")).unwrap();
    let j = sb.run(&["--format", "json", "ls"]).ok().json_lines();
    assert_eq!(j[0]["callerid"], "\"A");
    // CSV cells cannot start a formula; phone numbers are left alone.
    fs::write(
        inbox.join("msg0000.txt"),
        txt(1_700_000_000, "\"=HYPERLINK(1)\" <+33612345670>"),
    )
    .unwrap();
    let c = sb.run(&["--format", "csv", "ls"]).ok().stdout;
    assert!(c.contains(",'=HYPERLINK(1),+33612345670,"), "{c}");
}

#[test]
fn missing_spool_and_config_are_clear_errors() {
    let r = vmtool(&["--spool", "/nonexistent/spool", "ls"]);
    assert_eq!(r.code, 3);
    assert!(
        r.stderr.contains("/nonexistent/spool") && r.stderr.contains("--spool"),
        "{}",
        r.stderr
    );
    let sb = Sandbox::empty();
    let r = vmtool(&[
        "--spool",
        sb.path().join("spool").to_str().unwrap(),
        "--voicemail-conf",
        "/nonexistent/voicemail.conf",
        "boxes",
    ]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("/nonexistent/voicemail.conf"),
        "{}",
        r.stderr
    );
    // $VMTOOL_SPOOL is used when --spool is absent; -v says so.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vmtool"))
        .env("VMTOOL_SPOOL", sb.voicemail())
        .args(["--asterisk-conf", "/nonexistent/asterisk.conf", "-v", "ls"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/asterisk.conf"), "{err}");
}

#[test]
fn spool_from_asterisk_conf() {
    let sb = Sandbox::empty();
    let inbox = sb.voicemail().join("default/100/INBOX");
    fs::create_dir_all(&inbox).unwrap();
    fs::write(inbox.join("msg0000.txt"), txt(1_700_000_000, "Bob <1>")).unwrap();
    let conf = sb.path().join("etc/asterisk.conf");
    fs::write(
        &conf,
        format!(
            "[directories]\nastspooldir => {}\nastetcdir => {}\n",
            sb.path().join("spool").display(),
            sb.path().join("etc").display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vmtool"))
        .env_remove("VMTOOL_SPOOL")
        .args([
            "--asterisk-conf",
            conf.to_str().unwrap(),
            "-v",
            "count",
            "100@default",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "100@default urgent=0 new=1 old=0\n",
        "{err}"
    );
    assert!(err.contains("astspooldir in asterisk.conf"), "{err}");
    assert!(err.contains("voicemail.conf: "), "{err}");
    // Asterisk ignores the sample's template form "[directories](!)" and uses
    // its compiled-in /var/spool/asterisk; so does vmtool.
    let text = fs::read_to_string(&conf)
        .unwrap()
        .replace("[directories]", "[directories](!)");
    fs::write(&conf, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vmtool"))
        .env_remove("VMTOOL_SPOOL")
        .args([
            "--asterisk-conf",
            conf.to_str().unwrap(),
            "-v",
            "count",
            "100@default",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if !std::path::Path::new("/var/spool/asterisk").exists() {
        assert_eq!(out.status.code(), Some(3), "{err}");
        assert!(
            err.contains("/var/spool/asterisk (from the default)"),
            "{err}"
        );
    }
}
