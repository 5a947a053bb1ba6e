//! archive / ls --archive / show --archive / restore / purge on the real fixture.

use crate::util::*;
use std::fs;
use std::path::Path;

/// Two hours after the fixture's last deposit (1795689296).
const NOW: &str = "1795696496";

fn files_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file() && e.file_name().to_string_lossy().starts_with("msg"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().to_string(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

fn txt_count(root: &Path) -> usize {
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| {
            let n = e.file_name().to_string_lossy();
            let rel = e.path().strip_prefix(root).unwrap();
            n.starts_with("msg")
                && n.ends_with(".txt")
                && !rel.components().any(|c| c.as_os_str() == "tmp")
        })
        .count()
}

/// `archive --older-than 1h --summary` at NOW into `a`.
fn archive_all(sb: &Sandbox, a: &str) -> Run {
    sb.run_env(
        &[("VMTOOL_NOW", NOW)],
        &[
            "--no-ami",
            "archive",
            "--older-than",
            "1h",
            "--to",
            a,
            "--summary",
        ],
    )
    .ok()
}

#[test]
fn archive_list_show_restore_roundtrip() {
    let sb = Sandbox::team2();
    let arch = sb.path().join("archive");
    let a = arch.to_str().unwrap();
    let old_before = files_of(&sb.voicemail().join("compta/2202/Old"));
    // Only heard/saved messages by default: 2202 Old/0 and 2101 Work/0.
    let r = archive_all(&sb, a);
    assert!(r.stdout.contains("archived 2 message(s)"), "{}", r.stdout);
    assert!(!sb.voicemail().join("compta/2202/Old/msg0000.txt").exists());
    assert_eq!(txt_count(&sb.voicemail()), 11);
    let entry = arch.join("compta/2202/2026/11/1795689208-Old-0000-1795689208-00000008");
    assert_eq!(
        files_of(&entry),
        old_before,
        "files verbatim, extension case kept"
    );
    let manifest = fs::read_to_string(arch.join("manifest.jsonl")).unwrap();
    assert_eq!(manifest.lines().count(), 2);
    assert!(manifest.contains("\"sha256\""));
    // A re-run archives nothing twice.
    let r = archive_all(&sb, a);
    assert!(r.stdout.contains("archived 0 message(s)"), "{}", r.stdout);
    // The archive lists like the spool.
    let rows = sb
        .run(&["--format", "json", "ls", "--archive", a])
        .ok()
        .json_lines();
    assert_eq!(rows.len(), 2);
    let rows = sb
        .run(&[
            "--format",
            "json",
            "ls",
            "--archive",
            a,
            "--caller",
            "support",
        ])
        .ok()
        .json_lines();
    assert_eq!(rows[0]["msg_id"], "1795689208-00000008");
    let shown = sb
        .run(&["show", "--archive", a, "1795689208-00000008"])
        .ok()
        .stdout;
    assert!(
        shown.contains("callerid    = \"Support Client\" <3900>"),
        "{shown}"
    );
    assert!(shown.contains("problems:\n    none"), "{shown}");
    // Restore: back in Old at highest+1 (0 here), bytes identical.
    let r = sb
        .run(&["--no-ami", "restore", "--from", a, "2202@compta"])
        .ok();
    assert_eq!(
        r.stdout,
        "restored compta/2202/Old/msg0000 -> compta/2202/Old/msg0000\n"
    );
    assert_eq!(
        files_of(&sb.voicemail().join("compta/2202/Old")),
        old_before
    );
    // Restoring again is refused (same .txt already there).
    let r = sb.run(&["--no-ami", "restore", "--from", a, "2202@compta"]);
    assert!(r.stderr.contains("not restored twice"), "{}", r.stderr);
    // Restore into another box/folder.
    sb.run(&[
        "--no-ami",
        "restore",
        "--from",
        a,
        "--to",
        "2301@direction/Work",
        "finance/2101",
    ])
    .ok();
    assert!(sb
        .voicemail()
        .join("direction/2301/Work/msg0000.WAV")
        .exists());
}

#[test]
fn selection_is_by_origtime_not_mtime() {
    let sb = Sandbox::team2();
    let arch = sb.path().join("archive");
    // Every file looks ancient to `find -mtime`, but the messages are recent.
    for e in walkdir::WalkDir::new(sb.voicemail()) {
        let e = e.unwrap();
        if e.file_type().is_file() {
            let f = fs::File::options().write(true).open(e.path()).unwrap();
            f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000))
                .unwrap();
        }
    }
    let r = sb
        .run_env(
            &[("VMTOOL_NOW", NOW)],
            &[
                "--no-ami",
                "archive",
                "--older-than",
                "30d",
                "--include-new",
                "--to",
                arch.to_str().unwrap(),
                "--summary",
            ],
        )
        .ok();
    assert!(r.stdout.contains("archived 0 message(s)"), "{}", r.stdout);
    // --include-new, --max bound a run.
    let r = sb
        .run_env(
            &[("VMTOOL_NOW", NOW)],
            &[
                "--no-ami",
                "archive",
                "--older-than",
                "1h",
                "--include-new",
                "--max",
                "5",
                "--to",
                arch.to_str().unwrap(),
                "--summary",
            ],
        )
        .ok();
    assert!(r.stdout.contains("archived 5 message(s)"), "{}", r.stdout);
    assert_eq!(txt_count(&sb.voicemail()), 8);
}

#[test]
fn refuses_bad_archive_dirs_and_overlapping_runs() {
    let sb = Sandbox::team2();
    let inside = sb.voicemail().join("archive");
    let r = sb.run_env(
        &[("VMTOOL_NOW", NOW)],
        &[
            "archive",
            "--older-than",
            "1h",
            "--to",
            inside.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("inside the spool"), "{}", r.stderr);
    // Another run holds the archive's lock: exit 4, nothing moved.
    let arch = sb.path().join("archive");
    fs::create_dir_all(&arch).unwrap();
    let lock = fs::File::create(arch.join(".vmtool-archive.lock")).unwrap();
    lock.lock().unwrap();
    let r = sb.run_env(
        &[("VMTOOL_NOW", NOW)],
        &[
            "--no-ami",
            "archive",
            "--older-than",
            "1h",
            "--to",
            arch.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert_eq!(txt_count(&sb.voicemail()), 13);
    drop(lock);
}

#[test]
fn killed_archive_runs_lose_nothing() {
    for step in [
        "archive-file",
        "archive-renamed",
        "archive-manifest",
        "removed-src-audio",
    ] {
        let sb = Sandbox::team2();
        let arch = sb.path().join("archive");
        let a = arch.to_str().unwrap().to_string();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vmtool"));
        cmd.env("VMTOOL_NOW", NOW)
            .env("VMTOOL_TEST_KILL_AT", step)
            .arg("--spool")
            .arg(sb.path().join("spool"))
            .args(["--voicemail-conf"])
            .arg(sb.path().join("etc/voicemail.conf"))
            .args([
                "--lockmode",
                "flock",
                "--no-ami",
                "archive",
                "--older-than",
                "1h",
                "--include-new",
                "--to",
                &a,
            ]);
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "{step}: failpoint did not fire");
        // Tear the manifest's last line too, as a kill mid-write would.
        if step == "archive-manifest" {
            let m = arch.join("manifest.jsonl");
            let mut t = fs::read(&m).unwrap();
            t.truncate(t.len() - 7);
            fs::write(&m, t).unwrap();
        }
        let in_spool = txt_count(&sb.voicemail());
        let r = sb.run_env(
            &[("VMTOOL_NOW", NOW)],
            &[
                "--lockmode",
                "flock",
                "--no-ami",
                "archive",
                "--older-than",
                "1h",
                "--include-new",
                "--to",
                &a,
            ],
        );
        assert_eq!(r.code, 0, "{step}: {}", r.stderr);
        // Nothing leaves the spool before its manifest line is synced.
        let lines = fs::read_to_string(arch.join("manifest.jsonl"))
            .unwrap_or_default()
            .lines()
            .count();
        assert!(
            in_spool + lines >= 13,
            "{step}: {in_spool} in the spool, {lines} archived"
        );
        assert_eq!(txt_count(&sb.voicemail()), 0, "{step}");
        let manifest = fs::read_to_string(arch.join("manifest.jsonl")).unwrap();
        assert_eq!(
            manifest.lines().count(),
            13,
            "{step}: one manifest line per message"
        );
        let mut ids: Vec<String> = manifest
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["msg_id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 13, "{step}");
        // Every manifest entry matches its files.
        let r = sb
            .run(&[
                "--format",
                "json",
                "show",
                "--archive",
                &a,
                "compta",
                "finance",
                "direction",
            ])
            .ok();
        for v in r.json_lines() {
            assert_eq!(v["problems"], serde_json::json!([]), "{step}");
        }
    }
}
