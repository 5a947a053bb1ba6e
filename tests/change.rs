//! Spool changes on temp copies of the real fixture: files, numbers and counts
//! as Asterisk would leave them, locks, crashes, concurrency, ownership.

use crate::util::*;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// Every message of a spool by the SHA-256 of its `.txt`, with where it is and
/// the hashes of all its files (extension → hash).
/// Where a message is, and extension → SHA-256 of each of its files.
pub type Copies = Vec<(String, BTreeMap<String, String>)>;

pub fn messages(root: &Path) -> BTreeMap<String, Copies> {
    let mut by_txt: BTreeMap<String, Copies> = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).sort_by_file_name() {
        let e = e.unwrap();
        let p = e.path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let rel = p.strip_prefix(root).unwrap();
        if rel.components().any(|c| c.as_os_str() == "tmp")
            || !name.starts_with("msg")
            || !name.ends_with(".txt")
        {
            continue;
        }
        let stem = &name[..7];
        let mut files = BTreeMap::new();
        for f in fs::read_dir(p.parent().unwrap()).unwrap() {
            let f = f.unwrap();
            let n = f.file_name().to_string_lossy().to_string();
            if let Some(ext) = n.strip_prefix(&format!("{stem}.")) {
                files.insert(ext.to_string(), hex(&fs::read(f.path()).unwrap()));
            }
        }
        let txt = files["txt"].clone();
        let place = rel.display().to_string();
        by_txt.entry(txt).or_default().push((place, files));
    }
    by_txt
}

pub fn hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn count(sb: &Sandbox, mb: &str) -> (u64, u64, u64) {
    let j = &sb.run(&["--format", "json", "count", mb]).ok().json_lines()[0];
    (
        j["urgent"].as_u64().unwrap(),
        j["new"].as_u64().unwrap(),
        j["old"].as_u64().unwrap(),
    )
}

pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn read_moves_to_old_like_a_first_listen() {
    let sb = Sandbox::team2();
    let before = messages(&sb.voicemail());
    let r = sb.run(&["--no-ami", "read", "2202@compta/INBOX/0"]).ok();
    assert_eq!(
        r.stdout,
        "moved compta/2202/INBOX/msg0000 -> compta/2202/Old/msg0001\n"
    );
    let after = messages(&sb.voicemail());
    // Same messages, same bytes in every format; only the place changed.
    assert_eq!(before.len(), after.len());
    for (txt, places) in &before {
        let now = &after[txt];
        assert_eq!(now.len(), 1);
        assert_eq!(places[0].1, now[0].1, "bytes of {}", places[0].0);
    }
    let moved = &after[&before
        .iter()
        .find(|(_, p)| p[0].0 == "compta/2202/INBOX/msg0000.txt")
        .unwrap()
        .0
        .clone()];
    assert_eq!(moved[0].0, "compta/2202/Old/msg0001.txt");
    // The source keeps its gap (Asterisk closes it on the next open).
    assert_eq!(
        names(&sb.voicemail().join("compta/2202/INBOX")),
        ["msg0001.WAV", "msg0001.gsm", "msg0001.txt", "msg0001.wav"]
    );
    assert_eq!(count(&sb, "2202@compta"), (0, 1, 2));
    // No lock, intent or staged file left behind.
    assert_eq!(
        names(&sb.voicemail().join("compta/2202/tmp")),
        [".vmtool-lock"]
    );
    assert!(!sb.voicemail().join("compta/2202/Old/.lock").exists());
}

#[test]
fn read_a_box_unread_and_urgent() {
    let sb = Sandbox::team2();
    sb.run(&["--no-ami", "read", "2101@finance"]).ok();
    assert_eq!(count(&sb, "2101@finance"), (0, 0, 2));
    let old = sb
        .run(&["--format", "json", "ls", "2101@finance/Old"])
        .ok()
        .json_lines();
    // Appended in INBOX order: msg0000 (Garage Moreau) first.
    assert_eq!(old[0]["msg_id"], "1795689110-00000001");
    assert_eq!(old[1]["msg_id"], "1795689120-00000002");
    // An urgent message heard goes to Old and keeps flag=Urgent.
    sb.run(&["--no-ami", "read", "2102@finance/Urgent/0"]).ok();
    assert_eq!(count(&sb, "2102@finance"), (0, 1, 1));
    let j = sb
        .run(&["--format", "json", "ls", "2102@finance/Old"])
        .ok()
        .json_lines();
    assert_eq!(j[0]["urgent"], true);
    // unread puts it into INBOX (never Urgent), at highest+1.
    let r = sb.run(&["--no-ami", "unread", "2102@finance/Old/0"]).ok();
    assert_eq!(
        r.stdout,
        "moved finance/2102/Old/msg0000 -> finance/2102/INBOX/msg0001\n"
    );
    assert_eq!(count(&sb, "2102@finance"), (0, 2, 0));
    // read of a message that is not new is a warning, not a change.
    let r = sb.run(&["--no-ami", "read", "2202@compta/Old/0"]);
    assert!(
        r.stderr.contains("is in Old, not in INBOX or Urgent"),
        "{}",
        r.stderr
    );
}

#[test]
fn mv_cp_rm_and_capacity() {
    let sb = Sandbox::team2();
    let before = messages(&sb.voicemail());
    // Across boxes: all formats travel, number = highest+1 in the destination.
    let r = sb
        .run(&["--no-ami", "mv", "finance/2101/Work/0", "compta/2202"])
        .ok();
    assert_eq!(
        r.stdout,
        "moved finance/2101/Work/msg0000 -> compta/2202/INBOX/msg0002\n"
    );
    assert_eq!(messages(&sb.voicemail()).len(), before.len());
    // 2201 holds 3 messages with maxmsg=3: Asterisk's save_to_folder refuses.
    let r = sb.run(&["--no-ami", "mv", "2202@compta/INBOX/0", "2201@compta/INBOX"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("is full") && r.stderr.contains("maxmsg is 3"),
        "{}",
        r.stderr
    );
    assert!(sb
        .voicemail()
        .join("compta/2202/INBOX/msg0000.txt")
        .exists());
    // cp (forward): source untouched, .txt verbatim (msg_id kept).
    let src_txt = fs::read(sb.voicemail().join("finance/2102/Urgent/msg0000.txt")).unwrap();
    let r = sb
        .run(&[
            "--no-ami",
            "forward",
            "2102@finance/Urgent/0",
            "2301@direction",
        ])
        .ok();
    assert_eq!(
        r.stdout,
        "copied finance/2102/Urgent/msg0000 -> direction/2301/INBOX/msg0002\n"
    );
    assert_eq!(
        fs::read(sb.voicemail().join("direction/2301/INBOX/msg0002.txt")).unwrap(),
        src_txt
    );
    assert!(sb
        .voicemail()
        .join("finance/2102/Urgent/msg0000.txt")
        .exists());
    // rm: one message without --yes, a folder needs --yes.
    sb.run(&["--no-ami", "rm", "2301@direction/INBOX/0"]).ok();
    assert!(!sb
        .voicemail()
        .join("direction/2301/INBOX/msg0000.WAV")
        .exists());
    assert_eq!(count(&sb, "2301@direction"), (0, 2, 0));
    let r = sb.run(&["--no-ami", "rm", "2301@direction/INBOX"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--yes"), "{}", r.stderr);
    sb.run(&["--no-ami", "rm", "--yes", "2301@direction/INBOX"])
        .ok();
    assert_eq!(count(&sb, "2301@direction"), (0, 0, 0));
    // A whole box is never an rm/mv target.
    assert_eq!(sb.run(&["--no-ami", "rm", "--yes", "2202@compta"]).code, 2);
}

#[test]
fn dry_run_changes_nothing() {
    let sb = Sandbox::team2();
    let before = tree_state(sb.path());
    let r = sb
        .run(&["--no-ami", "mv", "--dry-run", "2202@compta/INBOX", "Work"])
        .ok();
    assert!(
        r.stdout.contains("compta/2202/INBOX/msg0000:"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("allocate msg0000 (highest+1)"),
        "{}",
        r.stdout
    );
    sb.run(&["--no-ami", "rm", "-n", "2201@compta/INBOX"]).ok();
    assert_eq!(before, tree_state(sb.path()));
}

#[test]
fn backupdeleted_keeps_asterisks_deleted_fifo() {
    let sb = Sandbox::team2();
    let conf = sb.path().join("etc/voicemail.conf");
    let text = fs::read_to_string(&conf)
        .unwrap()
        .replace("maxmsg = 100", "maxmsg = 100\nbackupdeleted = 2");
    fs::write(&conf, text).unwrap();
    let id = |p: &str| {
        String::from_utf8(fs::read(sb.voicemail().join(p)).unwrap())
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("msg_id=").map(str::to_string))
            .unwrap()
    };
    let first = id("compta/2201/INBOX/msg0000.txt");
    let third = id("compta/2201/INBOX/msg0002.txt");
    sb.run(&["--no-ami", "rm", "--yes", "2201@compta/INBOX"])
        .ok();
    // Three deleted into a FIFO of two: the oldest (msg0000) was dropped.
    let deleted = sb.voicemail().join("compta/2201/Deleted");
    assert_eq!(
        names(&deleted)
            .iter()
            .filter(|n| n.ends_with(".txt"))
            .count(),
        2
    );
    assert_eq!(id("compta/2201/Deleted/msg0001.txt"), third);
    assert_ne!(id("compta/2201/Deleted/msg0000.txt"), first);
    assert_eq!(count(&sb, "2201@compta"), (0, 0, 0));
}

#[test]
fn a_foreign_lock_is_waited_for_then_left_alone() {
    let sb = Sandbox::team2();
    let inbox = sb.voicemail().join("compta/2202/INBOX");
    // Asterisk's way: a helper hard-linked to .lock.
    fs::write(inbox.join(".lock-1a2b3c4d"), "").unwrap();
    fs::hard_link(inbox.join(".lock-1a2b3c4d"), inbox.join(".lock")).unwrap();
    fs::remove_file(inbox.join(".lock-1a2b3c4d")).unwrap();
    let ino = std::os::unix::fs::MetadataExt::ino(&fs::metadata(inbox.join(".lock")).unwrap());
    let before = messages(&sb.voicemail());
    let t = std::time::Instant::now();
    let r = sb.run(&[
        "--no-ami",
        "--lock-timeout",
        "0.5",
        "mv",
        "2202@compta/Old/0",
        "INBOX",
    ]);
    let waited = t.elapsed();
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains("nothing was changed"), "{}", r.stderr);
    assert!(
        waited >= std::time::Duration::from_millis(450),
        "{waited:?}"
    );
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&fs::metadata(inbox.join(".lock")).unwrap()),
        ino
    );
    assert_eq!(messages(&sb.voicemail()), before);
    assert!(names(&sb.voicemail().join("compta/2202/tmp"))
        .iter()
        .all(|n| n == ".vmtool-lock"));
}

/// Kill vmtool at every step of a move in turn; afterwards every message
/// exists at least once, and after recovery exactly once.
#[test]
fn killed_at_every_step_nothing_is_lost() {
    let steps = [
        "staged-intent",
        "staged-file",
        "staged-all",
        "locked",
        "committing",
        "renamed-audio",
        "renamed-txt",
        "committed",
        "removed-src-txt",
        "removed-src",
    ];
    for mode in ["lockfile", "flock"] {
        for step in steps {
            let sb = Sandbox::team2();
            let before = messages(&sb.voicemail());
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vmtool"));
            cmd.env("VMTOOL_TEST_KILL_AT", step)
                .args(["--spool"])
                .arg(sb.path().join("spool"))
                .args(["--voicemail-conf"])
                .arg(sb.path().join("etc/voicemail.conf"))
                .args([
                    "--lockmode",
                    mode,
                    "--no-ami",
                    "mv",
                    "2202@compta/INBOX/1",
                    "2101@finance/Old",
                ]);
            let out = cmd.output().unwrap();
            assert!(
                !out.status.success(),
                "{mode}/{step}: the failpoint did not fire"
            );
            let mid = messages(&sb.voicemail());
            for txt in before.keys() {
                assert!(mid.contains_key(txt), "{mode}/{step}: a message vanished");
            }
            // A kill leaves Asterisk-style locks behind in lockfile mode; the
            // operator breaks them (they are stale by then), then repairs.
            if mode == "lockfile" {
                for f in ["compta/2202/INBOX", "finance/2101/Old"] {
                    sb.run(&["unlock", "--stale", "--older-than", "0", f]);
                }
            }
            let r = sb.run(&["--no-ami", "check", "--fix"]);
            assert!(
                r.code == 0 || r.code == 5,
                "{mode}/{step}: {}\n{}",
                r.stdout,
                r.stderr
            );
            let after = messages(&sb.voicemail());
            assert_eq!(after.len(), before.len(), "{mode}/{step}");
            for (txt, places) in &after {
                assert_eq!(places.len(), 1, "{mode}/{step}: {txt} is in {places:?}");
                assert_eq!(
                    places[0].1, before[txt][0].1,
                    "{mode}/{step}: bytes changed"
                );
            }
            // Re-running the command now does the move exactly once.
            let r = sb.run(&[
                "--no-ami",
                "--lockmode",
                mode,
                "mv",
                "2202@compta/INBOX/1",
                "2101@finance/Old",
            ]);
            let done = messages(&sb.voicemail());
            assert_eq!(done.len(), before.len(), "{mode}/{step}: {}", r.stderr);
            let karim = done
                .values()
                .flatten()
                .filter(|(p, _)| p.starts_with("finance/2101/Old/"))
                .count();
            assert!(karim <= 1, "{mode}/{step}");
            let leftovers: Vec<String> = names(&sb.voicemail().join("compta/2202/tmp"))
                .into_iter()
                .filter(|n| n.starts_with(".vmtool-stage") || n.starts_with(".vmtool-intent"))
                .collect();
            assert!(leftovers.is_empty(), "{mode}/{step}: {leftovers:?}");
        }
    }
}

/// A copy shares every byte with its original (same `msg_id`, spec §3.6):
/// recovery must tell the message being moved from its twin in the same
/// folder. Killed at every step of `read` (and of `rm`), then repaired: both
/// twins are there, the moved one in `Old` or (undone) in `INBOX`, and
/// nothing else is left.
#[test]
fn a_twin_in_the_same_folder_survives_a_kill_at_every_step() {
    let steps = [
        "staged-all",
        "committing",
        "renamed-audio",
        "renamed-txt",
        "committed",
        "removed-src-txt",
        "removed-src",
    ];
    for (verb, step) in steps
        .iter()
        .map(|s| ("read", *s))
        .chain([("rm", "removed-src-txt"), ("rm", "removed-src")])
    {
        let sb = Sandbox::team2();
        let r = sb.run(&["--no-ami", "cp", "2101@finance/INBOX/0", "2101@finance"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let inbox = sb.voicemail().join("finance/2101/INBOX");
        assert_eq!(
            fs::read(inbox.join("msg0000.txt")).unwrap(),
            fs::read(inbox.join("msg0002.txt")).unwrap()
        );
        let before = messages(&sb.voicemail());
        let twin = hex(&fs::read(inbox.join("msg0000.txt")).unwrap());
        // The copy (the higher number) is the one changed: recovery must not
        // take its twin at msg0000 for it.
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vmtool"));
        cmd.env("VMTOOL_TEST_KILL_AT", step)
            .arg("--spool")
            .arg(sb.path().join("spool"))
            .arg("--voicemail-conf")
            .arg(sb.path().join("etc/voicemail.conf"))
            .args(["--no-ami", "--lockmode", "flock", verb])
            .args((verb == "rm").then_some("--yes"))
            .arg("2101@finance/INBOX/2");
        let out = cmd.output().unwrap();
        assert!(
            !out.status.success(),
            "{verb}/{step}: the failpoint did not fire"
        );
        let r = sb.run(&["--no-ami", "--lockmode", "flock", "check", "--fix"]);
        assert!(
            r.code == 0 || r.code == 5,
            "{verb}/{step}: {}\n{}",
            r.stdout,
            r.stderr
        );
        let after = messages(&sb.voicemail());
        let places: Vec<&str> = after[&twin].iter().map(|(p, _)| p.as_str()).collect();
        let want = if verb == "rm" { 1 } else { 2 };
        assert_eq!(places.len(), want, "{verb}/{step}: {places:?}");
        assert!(
            places.contains(&"finance/2101/INBOX/msg0000.txt"),
            "{verb}/{step}: {places:?}"
        );
        for (txt, copies) in &before {
            if *txt != twin {
                assert_eq!(after.get(txt), Some(copies), "{verb}/{step}");
            }
        }
        let r = sb.run(&["--no-ami", "check", "finance/2101"]);
        assert_eq!(
            r.code, 0,
            "{verb}/{step}: left something behind:\n{}",
            r.stdout
        );
    }
}

/// `check --fix` walks boxes in spool order, so it meets the destination of
/// a move from a later box before the record in the source box: the staged
/// copies there are the record's evidence and stay until it is recovered.
/// vmtool on the sandbox in flock mode, killed at failpoint `at`; it must not
/// succeed.
fn killed_at(sb: &Sandbox, at: &str, args: &[&str]) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vmtool"))
        .env("VMTOOL_TEST_KILL_AT", at)
        .arg("--spool")
        .arg(sb.path().join("spool"))
        .arg("--voicemail-conf")
        .arg(sb.path().join("etc/voicemail.conf"))
        .args(["--no-ami", "--lockmode", "flock"])
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{at} {args:?}");
}

#[test]
fn a_repair_that_meets_the_destination_first_keeps_the_message() {
    for step in ["committing", "renamed-audio", "renamed-txt"] {
        let sb = Sandbox::team2();
        let before = messages(&sb.voicemail());
        killed_at(
            &sb,
            step,
            &["mv", "2101@finance/INBOX/1", "2202@compta/Old"],
        );
        let r = sb.run(&["--no-ami", "--lockmode", "flock", "check", "--fix"]);
        assert!(
            r.code == 0 || r.code == 5,
            "{step}: {}\n{}",
            r.stdout,
            r.stderr
        );
        let after = messages(&sb.voicemail());
        assert_eq!(after.len(), before.len(), "{step}: {}", r.stdout);
        for (txt, places) in &after {
            assert_eq!(places.len(), 1, "{step}: {txt} is in {places:?}");
        }
        let r = sb.run(&["--no-ami", "check", "finance/2101", "compta/2202"]);
        assert_eq!(r.code, 0, "{step}: left something behind:\n{}", r.stdout);
    }
}

/// A copy killed before its `.txt` was renamed in, after which another copy
/// of the same message (same bytes) took that number — it was still free, or
/// held only the dead copy's audio. Undoing the dead copy must leave the
/// complete one alone: its `.txt` is there, and the dead copy's never got there.
#[test]
fn undoing_a_copy_spares_the_message_that_took_its_number_since() {
    for step in ["committing", "renamed-audio"] {
        let sb = Sandbox::team2();
        let vm = sb.voicemail();
        let src = vm.join("compta/2201/INBOX");
        let inbox = vm.join("compta/2202/INBOX");
        let next = names(&inbox)
            .iter()
            .filter(|n| n.ends_with(".txt"))
            .filter_map(|n| n[3..7].parse::<u16>().ok())
            .max()
            .map_or(0, |n| n + 1);
        killed_at(
            &sb,
            step,
            &["cp", "2201@compta/INBOX/0", "2202@compta/INBOX"],
        );
        // Highest .txt + 1 is the dead copy's number; a complete copy lands there.
        let stem = format!("msg{next:04}");
        let tmp = vm.join("compta/2202/tmp");
        let mut want = BTreeMap::new();
        for ext in ["WAV", "gsm", "wav"] {
            let data = fs::read(src.join(format!("msg0000.{ext}"))).unwrap();
            fs::write(tmp.join(format!("dep.{ext}")), &data).unwrap();
            fs::rename(
                tmp.join(format!("dep.{ext}")),
                inbox.join(format!("{stem}.{ext}")),
            )
            .unwrap();
            want.insert(ext.to_string(), hex(&data));
        }
        // The same message, byte for byte: another copy of it that completed.
        let txt = fs::read(src.join("msg0000.txt")).unwrap();
        fs::write(inbox.join(format!("{stem}.txt")), &txt).unwrap();
        want.insert("txt".to_string(), hex(&txt));

        let r = sb.run(&["--no-ami", "--lockmode", "flock", "check", "--fix"]);
        assert!(
            r.code == 0 || r.code == 5,
            "{step}: {}\n{}",
            r.stdout,
            r.stderr
        );
        let mut have = BTreeMap::new();
        for n in names(&inbox) {
            if let Some(ext) = n.strip_prefix(&format!("{stem}.")) {
                have.insert(ext.to_string(), hex(&fs::read(inbox.join(&n)).unwrap()));
            }
        }
        assert_eq!(have, want, "{step}: {}", r.stdout);
        let r = sb.run(&["--no-ami", "check", "compta/2202"]);
        assert_eq!(r.code, 0, "{step}: left something behind:\n{}", r.stdout);
    }
}

/// A move killed after it removed its source, before it dropped its record;
/// then the same message (same bytes) moved back into the source folder by a
/// vmtool working from the other box, which does not read that record. File
/// systems hand a freed inode number to the next new file (ext4 does so more
/// often than not), so the returning `.txt` can carry the recorded inode, and
/// finishing the old move would delete its only copy. The reuse is made
/// certain here by pointing the record at the returning file's inode.
#[test]
fn finishing_a_move_spares_the_message_that_came_back_on_a_reused_inode() {
    use std::os::unix::fs::MetadataExt;
    let sb = Sandbox::team2();
    let vm = sb.voicemail();
    let before = messages(&vm);
    fs::create_dir_all(vm.join("compta/2202/Work")).unwrap();
    let inbox = vm.join("finance/2101/INBOX");
    let txts = |dir: &Path| -> Vec<String> {
        names(dir)
            .into_iter()
            .filter(|n| n.ends_with(".txt"))
            .collect()
    };
    let first = txts(&inbox)[0].clone();
    let src = format!("2101@finance/INBOX/{}", &first[3..7]);
    killed_at(&sb, "removed-src", &["mv", &src, "2202@compta/Work"]);
    // Back into finance/2101/INBOX from compta/2202, where it now is.
    let there = txts(&vm.join("compta/2202/Work"))
        .into_iter()
        .max()
        .unwrap();
    let r = sb.run(&[
        "--no-ami",
        "--lockmode",
        "flock",
        "mv",
        &format!("2202@compta/Work/{}", &there[3..7]),
        "2101@finance/INBOX",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let back = txts(&inbox).into_iter().max().unwrap();
    let back_ino = fs::metadata(inbox.join(&back)).unwrap().ino();
    // The interrupted move's record now names the returning file's inode.
    let tmp = vm.join("finance/2101/tmp");
    let record = names(&tmp)
        .into_iter()
        .find(|n| n.starts_with(".vmtool-intent-") && n.ends_with(".json"))
        .expect("the interrupted move's record");
    let mut intent: serde_json::Value =
        serde_json::from_slice(&fs::read(tmp.join(&record)).unwrap()).unwrap();
    assert!(intent["src_born"].is_u64() || intent["src_born"].is_number());
    intent["src_ino"] = serde_json::json!(back_ino);
    fs::write(tmp.join(&record), serde_json::to_vec(&intent).unwrap()).unwrap();

    let r = sb.run(&["--no-ami", "--lockmode", "flock", "check", "--fix"]);
    assert!(r.code == 0 || r.code == 5, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        messages(&vm).keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "a message was lost or duplicated\n{}",
        r.stdout
    );
}

/// A recovery killed after it undid a partial move but before it dropped the
/// move's record: the next recovery reads the same evidence (the staged
/// `.txt`, still there) and undoes again, rather than taking the missing
/// staged file for a finished commit and deleting the only copy.
#[test]
fn a_recovery_killed_halfway_decides_the_same_the_next_time() {
    let sb = Sandbox::team2();
    let vm = sb.voicemail();
    let before = messages(&vm);
    killed_at(
        &sb,
        "renamed-audio",
        &["mv", "2101@finance/INBOX/0", "Work"],
    );
    // The next change in the box recovers first, and is killed right after.
    killed_at(
        &sb,
        "recovery-decided",
        &["mv", "2101@finance/INBOX/1", "Family"],
    );
    let r = sb.run(&["--no-ami", "--lockmode", "flock", "check", "--fix"]);
    assert!(r.code == 0 || r.code == 5, "{}\n{}", r.stdout, r.stderr);
    let after = messages(&vm);
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "a message was lost or duplicated:\n{}",
        r.stdout
    );
    let r = sb.run(&["--no-ami", "check", "finance/2101"]);
    assert_eq!(r.code, 0, "left something behind:\n{}", r.stdout);
}

/// Many vmtool processes moving and deleting in the same boxes while
/// "Asterisk" deposits new messages its way; every message ends up exactly once.
#[test]
fn concurrent_changes_and_deposits() {
    let sb = Sandbox::team2();
    let vm = sb.voicemail();
    let before = messages(&vm);
    let spool = sb.path().join("spool");
    let conf = sb.path().join("etc/voicemail.conf");
    let run = |args: Vec<String>| {
        let spool = spool.clone();
        let conf = conf.clone();
        std::thread::spawn(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_vmtool"))
                .arg("--spool")
                .arg(&spool)
                .arg("--voicemail-conf")
                .arg(&conf)
                .args(["--no-ami", "--lock-timeout", "20"])
                .args(&args)
                .output()
                .unwrap()
        })
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut handles = vec![
        // Two processes move the same message to different folders.
        run(s(&["mv", "2202@compta/INBOX/0", "Work"])),
        run(s(&["mv", "2202@compta/INBOX/0", "Family"])),
        run(s(&["read", "2101@finance"])),
        run(s(&[
            "mv",
            "--yes",
            "2301@direction/INBOX",
            "2202@compta/Old",
        ])),
        run(s(&["cp", "2102@finance/Urgent/0", "2202@compta/INBOX"])),
        run(s(&["read", "2202@compta/INBOX/1"])),
    ];
    // Deposits the way Asterisk makes them: tmp/, lock INBOX, highest+1, audio then .txt.
    let deposit_src = vm.join("compta/2201/INBOX");
    let vm2 = vm.clone();
    let depositor = std::thread::spawn(move || {
        let mut made = Vec::new();
        for i in 0..6 {
            let inbox = vm2.join("compta/2202/INBOX");
            let tmp = vm2.join("compta/2202/tmp");
            let txt = fs::read_to_string(deposit_src.join("msg0000.txt"))
                .unwrap()
                .replace(
                    "msg_id=1795689167-00000005",
                    &format!("msg_id=1795690000-{i:08x}"),
                );
            fs::write(tmp.join(format!("dep{i}.txt")), &txt).unwrap();
            fs::copy(
                deposit_src.join("msg0000.wav"),
                tmp.join(format!("dep{i}.wav")),
            )
            .unwrap();
            let helper = inbox.join(format!(".lock-dep{i:05}"));
            fs::write(&helper, "").unwrap();
            while fs::hard_link(&helper, inbox.join(".lock")).is_err() {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            let last = vmtool::scan::last_message_index(&inbox).unwrap();
            let n = last.map_or(0, |l| l + 1);
            fs::rename(
                tmp.join(format!("dep{i}.wav")),
                inbox.join(format!("msg{n:04}.wav")),
            )
            .unwrap();
            fs::rename(
                tmp.join(format!("dep{i}.txt")),
                inbox.join(format!("msg{n:04}.txt")),
            )
            .unwrap();
            fs::remove_file(inbox.join(".lock")).unwrap();
            fs::remove_file(&helper).unwrap();
            made.push(hex(txt.as_bytes()));
            std::thread::sleep(std::time::Duration::from_millis(15));
        }
        made
    });
    let deposited = depositor.join().unwrap();
    for h in handles.drain(..) {
        let out = h.join().unwrap();
        let code = out.status.code().unwrap();
        assert!(
            code == 0 || code == 1 || code == 3,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let after = messages(&vm);
    for txt in before.keys().chain(deposited.iter()) {
        let n = after.get(txt).map_or(0, |v| v.len());
        // The urgent message was copied once on purpose.
        let want = if before
            .get(txt)
            .is_some_and(|p| p[0].0.starts_with("finance/2102/Urgent"))
        {
            2
        } else {
            1
        };
        assert_eq!(n, want, "{txt}: {:?}", after.get(txt));
    }
    assert_eq!(after.len(), before.len() + deposited.len());
    for e in walkdir::WalkDir::new(&vm) {
        let n = e.unwrap().file_name().to_string_lossy().to_string();
        assert!(
            n != ".lock" && !n.starts_with(".lock-") && n != "lock",
            "lock left: {n}"
        );
    }
}

#[test]
fn tells_asterisk_over_ami() {
    let sb = Sandbox::team2();
    let ami = crate::ami_server::FakeAmi::start(&[("vmtool", "s3cret", "system,call,user")]);
    let spec = format!("vmtool:s3cret@127.0.0.1:{}", ami.port());
    let r = sb
        .run(&["--ami", &spec, "mv", "finance/2101/Work/0", "compta/2202"])
        .ok();
    assert!(!r.stderr.contains("s3cret"));
    let log = ami.log();
    assert_eq!(
        log,
        vec![
            ("compta".to_string(), "2202".to_string()),
            ("finance".to_string(), "2101".to_string())
        ]
    );
    // Refused or unreachable AMI: a warning; the change stands.
    let r = sb.run(&[
        "--ami",
        "vmtool:wrong@127.0.0.1:1",
        "read",
        "2202@compta/INBOX/0",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("warning") && r.stderr.contains("AMI"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("wrong"), "secret leaked: {}", r.stderr);
    // From manager.conf in astetcdir when no --ami is given.
    fs::write(
        sb.path().join("etc/manager.conf"),
        format!("[general]\nenabled = yes\nport = {}\nbindaddr = 0.0.0.0\n\n[monitor]\nsecret = x\nread = all\n\n[vmtool]\nsecret = s3cret\nwrite = system,user\n", ami.port()),
    )
    .unwrap();
    fs::write(
        sb.path().join("etc/asterisk.conf"),
        format!(
            "[directories]\nastetcdir => {}\n",
            sb.path().join("etc").display()
        ),
    )
    .unwrap();
    sb.run(&["read", "2101@finance/INBOX/0"]).ok();
    assert_eq!(
        ami.log().last().unwrap(),
        &("finance".to_string(), "2101".to_string())
    );
}

#[test]
fn odbc_storage_without_its_connection_is_refused() {
    let sb = Sandbox::team2();
    let conf = sb.path().join("etc/voicemail.conf");
    let text = fs::read_to_string(&conf)
        .unwrap()
        .replace("\n[general]\n", "\n[general]\nodbcstorage = asterisk\n");
    fs::write(&conf, text).unwrap();
    let before = tree_state(sb.path());
    // The spool only holds caches: vmtool goes to the table, and says why it cannot.
    let r = sb.run(&["--no-ami", "read", "2202@compta/INBOX/0"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("odbcstorage=asterisk"), "{}", r.stderr);
    assert!(r.stderr.contains("res_odbc.conf"), "{}", r.stderr);
    assert_eq!(before, tree_state(sb.path()));
}

#[test]
fn new_files_get_asterisks_owner_and_mode() {
    // Needs root to give the fixture copy a non-root owner.
    if unsafe_geteuid() != 0 {
        assert!(
            std::env::var("CI").is_err(),
            "CI runs as root: this test must run there"
        );
        return;
    }
    let sb = Sandbox::team2();
    let vm = sb.voicemail();
    let (uid, gid) = (4242u32, 4343u32);
    for e in walkdir::WalkDir::new(&vm) {
        let e = e.unwrap();
        std::os::unix::fs::lchown(e.path(), Some(uid), Some(gid)).unwrap();
        let mode = if e.file_type().is_dir() {
            0o755
        } else if e.path().extension().is_some_and(|x| x == "txt") {
            0o666
        } else {
            0o644
        };
        fs::set_permissions(e.path(), std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    }
    sb.run(&["--no-ami", "mv", "2202@compta/INBOX/0", "Work"])
        .ok();
    sb.run(&["--no-ami", "read", "2101@finance/INBOX/0"]).ok();
    for p in [
        "compta/2202/Work",
        "compta/2202/Work/msg0000.txt",
        "compta/2202/Work/msg0000.WAV",
        "finance/2101/Old/msg0000.txt",
        "finance/2101/Old/msg0000.gsm",
    ] {
        let md = fs::metadata(vm.join(p)).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!((md.uid(), md.gid()), (uid, gid), "{p}");
        let want = if md.is_dir() { 0o755 } else { 0o644 };
        assert_eq!(md.mode() & 0o777, want, "{p}");
    }
}

fn unsafe_geteuid() -> u32 {
    // The owner of a file we just created is our effective uid.
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("x");
    fs::write(&p, "").unwrap();
    std::os::unix::fs::MetadataExt::uid(&fs::metadata(&p).unwrap())
}

#[test]
fn resequence_only_when_no_voicemailmain_is_open() {
    let sb = Sandbox::team2();
    sb.run(&["--no-ami", "rm", "2201@compta/INBOX/0"]).ok();
    let inbox = sb.voicemail().join("compta/2201/INBOX");
    assert!(!inbox.join("msg0000.txt").exists());
    // Without AMI the open sessions cannot be checked: refused unless --force.
    let r = sb.run(&["resequence", "2201@compta/INBOX"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(inbox.join("msg0001.txt").exists());
    // Someone is in VoiceMailMain: refused (retry later), nothing renamed.
    let ami = crate::ami_server::FakeAmi::start(&[("vmtool", "pw", "system,user")]);
    ami.set_channels(&[("PJSIP/2201-00000001", "VoiceMailMain")]);
    let spec = format!("vmtool:pw@127.0.0.1:{}", ami.port());
    let r = sb.run(&["--ami", &spec, "resequence", "2201@compta/INBOX"]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains("PJSIP/2201-00000001"), "{}", r.stderr);
    assert!(inbox.join("msg0001.txt").exists());
    // Nobody: the gap is closed, order kept, and Asterisk is told.
    ami.set_channels(&[]);
    let r = sb
        .run(&["--ami", &spec, "resequence", "2201@compta/INBOX"])
        .ok();
    assert_eq!(
        r.stdout,
        "2201@compta/INBOX: msg0001 -> msg0000\n2201@compta/INBOX: msg0002 -> msg0001\n"
    );
    assert_eq!(
        names(&inbox).iter().filter(|n| n.ends_with(".txt")).count(),
        2
    );
    assert!(inbox.join("msg0000.wav").exists() && !inbox.join("msg0002.wav").exists());
    assert_eq!(ami.log(), vec![("compta".to_string(), "2201".to_string())]);
}

#[test]
fn check_reports_what_asterisk_could_not_write() {
    let sb = Sandbox::team2();
    // Asterisk runs as "nobody" here; the copy belongs to whoever runs the test.
    fs::write(
        sb.path().join("etc/asterisk.conf"),
        "[options]\nrunuser = nobody\n",
    )
    .unwrap();
    let r = sb.run(&["check", "direction"]);
    if unsafe_geteuid() == 65534 {
        return;
    }
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(
        r.stdout.contains("direction/2301/INBOX: owned by uid"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("cannot create files in it"),
        "{}",
        r.stdout
    );
}

#[test]
fn links_never_steer_changes_outside_the_spool() {
    let sb = Sandbox::team2();
    let vm = sb.voicemail();
    let outside = sb.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    // A folder that is a link to somewhere else: nothing is written through it.
    std::os::unix::fs::symlink(&outside, vm.join("compta/2202/Work")).unwrap();
    let before = messages(&vm);
    let r = sb.run(&["--no-ami", "mv", "2202@compta/INBOX/0", "Work"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("symbolic link"), "{}", r.stderr);
    assert!(
        fs::read_dir(&outside).unwrap().next().is_none(),
        "something was written outside"
    );
    assert_eq!(messages(&vm), before);
    // A message whose audio is a link is refused for changes too.
    let inbox = vm.join("direction/2301/INBOX");
    fs::rename(inbox.join("msg0000.wav"), outside.join("real.wav")).unwrap();
    std::os::unix::fs::symlink(outside.join("real.wav"), inbox.join("msg0000.wav")).unwrap();
    let r = sb.run(&["--no-ami", "rm", "2301@direction/INBOX/0"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("symbolic link"), "{}", r.stderr);
    assert!(inbox.join("msg0000.txt").exists() && outside.join("real.wav").exists());
    // check reports both.
    let c = sb.run(&["check", "compta", "direction"]).stdout;
    assert!(
        c.contains("compta/2202/Work: the folder is a symbolic link"),
        "{c}"
    );
    assert!(
        c.contains("direction/2301/INBOX/msg0000.wav: a symbolic link leaving the spool"),
        "{c}"
    );
}
