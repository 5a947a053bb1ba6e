//! Moves next to a running Asterisk: busy and renumbered sources, kills at
//! every step, locks and staged copies of killed runs, listings while messages
//! move, boxes without a directory yet. Each test drives the built binary and
//! plays Asterisk's part with its exact file protocol.

use crate::change::{count, messages, names};
use crate::util::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

/// vmtool on the sandbox with extra environment, started in the background.
fn spawn(sb: &Sandbox, env: &[(&str, &str)], args: &[&str]) -> Child {
    let mut cmd = sb.command();
    cmd.env_remove("VMTOOL_TEST_KILL_AT")
        .env_remove("VMTOOL_TEST_PAUSE_AT")
        .env("TZ", "UTC")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

fn output(child: Child) -> (i32, String, String) {
    let out: Output = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A pause point: vmtool stops at `step` until `resume`.
struct Pause {
    file: PathBuf,
}

impl Pause {
    fn new(sb: &Sandbox) -> Pause {
        Pause {
            file: sb.path().join("resume"),
        }
    }

    fn env<'a>(&'a self, step: &'a str) -> [(&'a str, &'a str); 2] {
        [
            ("VMTOOL_TEST_PAUSE_AT", step),
            ("VMTOOL_TEST_PAUSE_FILE", self.file.to_str().unwrap()),
        ]
    }

    fn wait(&self) {
        let paused = self.file.with_file_name("resume.paused");
        wait_for("the pause point", 20, || paused.exists());
    }

    fn resume(&self) {
        fs::write(&self.file, "").unwrap();
    }
}

/// Asterisk's lock (spec §6.2): an empty helper hard-linked as `.lock`.
fn asterisk_lock(dir: &Path) {
    let helper = dir.join(".lock-1a2b3c4d");
    fs::write(&helper, "").unwrap();
    fs::hard_link(&helper, dir.join(".lock")).unwrap();
    fs::remove_file(&helper).unwrap();
}

fn asterisk_unlock(dir: &Path) {
    fs::remove_file(dir.join(".lock")).unwrap();
}

/// `resequence_mailbox()` (spec §2.6) under Asterisk's lock: every message
/// renamed down to the next free number, audio before the `.txt`.
fn asterisk_resequence(dir: &Path) {
    asterisk_lock(dir);
    let mut nums: Vec<u16> = names(dir)
        .iter()
        .filter(|n| n.starts_with("msg") && n.ends_with(".txt"))
        .map(|n| n[3..7].parse().unwrap())
        .collect();
    nums.sort();
    for (to, from) in nums.into_iter().enumerate() {
        let to = to as u16;
        if to == from {
            continue;
        }
        let prefix = format!("msg{from:04}.");
        let mut files: Vec<String> = names(dir)
            .into_iter()
            .filter(|n| n.starts_with(&prefix))
            .collect();
        files.sort_by_key(|n| n.ends_with(".txt"));
        for f in files {
            fs::rename(dir.join(&f), dir.join(format!("msg{to:04}{}", &f[7..]))).unwrap();
        }
    }
    asterisk_unlock(dir);
}

/// A caller deletes a message in VoiceMailMain (vm_delete(): .txt, then audio).
fn asterisk_delete(dir: &Path, num: u16) {
    asterisk_lock(dir);
    let prefix = format!("msg{num:04}.");
    let mut files: Vec<String> = names(dir)
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    files.sort_by_key(|n| !n.ends_with(".txt"));
    for f in files {
        fs::remove_file(dir.join(f)).unwrap();
    }
    asterisk_unlock(dir);
}

fn sha_of(p: &Path) -> String {
    crate::change::hex(&fs::read(p).unwrap())
}

/// Every message of `before` exactly once, with the same bytes in every format.
#[track_caller]
fn each_once(sb: &Sandbox, before: &std::collections::BTreeMap<String, crate::change::Copies>) {
    let after = messages(&sb.voicemail());
    for (txt, places) in before {
        let now = after.get(txt).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(now.len(), 1, "{} is now in {now:?}", places[0].0);
        assert_eq!(now[0].1, places[0].1, "bytes of {}", places[0].0);
    }
    assert_eq!(after.len(), before.len());
}

/// Where the message whose `.txt` had these bytes is now.
fn place_of(sb: &Sandbox, txt_sha: &str) -> Vec<String> {
    messages(&sb.voicemail())
        .get(txt_sha)
        .map(|v| v.iter().map(|(p, _)| p.clone()).collect())
        .unwrap_or_default()
}

/// No vmtool leftover anywhere in the spool (`what`: the case, for the message).
fn assert_no_leftovers(sb: &Sandbox, what: &str) {
    let left = vmtool_leftovers(sb);
    assert!(left.is_empty(), "{what}: {left:?}");
}

/// vmtool's leftovers anywhere in the spool: locks, helpers, staged copies, records.
fn vmtool_leftovers(sb: &Sandbox) -> Vec<String> {
    walkdir::WalkDir::new(sb.voicemail())
        .into_iter()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy();
            n == ".lock"
                || n.starts_with(".lock-")
                || n.starts_with(".lock.stale-")
                || n.starts_with(".vmtool-stage-")
                || n.starts_with(".vmtool-intent-")
                || n.starts_with("..vmtool-intent-")
        })
        .map(|e| e.path().display().to_string())
        .collect()
}

/// Finding 1: the source folder is busy. The copy must not be committed while
/// vmtool waits for the source (someone would act on it, and the "undo" would
/// then miss it), in either lock order.
#[test]
fn a_busy_source_never_leaves_a_copy_behind() {
    // (source folder held by Asterisk, move, what the box owner reads meanwhile)
    let cases = [
        (
            "compta/2202/Old",
            ["2202@compta/Old/0", "2101@finance"],
            "2101@finance/INBOX",
        ),
        (
            "finance/2101/Work",
            ["2101@finance/Work/0", "2202@compta"],
            "2202@compta/INBOX",
        ),
    ];
    for (held, mv, reader) in cases {
        let sb = Sandbox::team2();
        let before = messages(&sb.voicemail());
        let src = sb.voicemail().join(held);
        asterisk_lock(&src);
        let child = spawn(
            &sb,
            &[],
            &["--no-ami", "--lock-timeout", "1.5", "mv", mv[0], mv[1]],
        );
        std::thread::sleep(Duration::from_millis(600));
        // The owner listens to every new message of the destination box meanwhile.
        sb.run(&["--no-ami", "--lock-timeout", "3", "read", reader])
            .ok();
        let (code, _, err) = output(child);
        assert_eq!(code, 4, "{held}: {err}");
        assert!(err.contains("nothing was changed"), "{err}");
        asterisk_unlock(&src);
        each_once(&sb, &before);
        assert_no_leftovers(&sb, "");
        // Once the folder is free the same move happens exactly once.
        sb.run(&["--no-ami", "mv", mv[0], mv[1]]).ok();
        each_once(&sb, &before);
    }
}

/// Finding 2: Asterisk renumbers the source (a caller deleted the message before
/// it, and the box was opened) after vmtool copied it and before the removal.
#[test]
fn a_source_renumbered_by_asterisk_mid_move_moves_once() {
    for mv in [
        ["2202@compta/INBOX/1", "Old"],
        ["2202@compta/INBOX/1", "2101@finance/Work"],
    ] {
        let sb = Sandbox::team2();
        let inbox = sb.voicemail().join("compta/2202/INBOX");
        let moved = sha_of(&inbox.join("msg0001.txt"));
        let pause = Pause::new(&sb);
        let child = spawn(
            &sb,
            &pause.env("staged-all"),
            &["--no-ami", "mv", mv[0], mv[1]],
        );
        pause.wait();
        asterisk_delete(&inbox, 0);
        asterisk_resequence(&inbox);
        assert!(inbox.join("msg0000.txt").exists() && !inbox.join("msg0001.txt").exists());
        let before = messages(&sb.voicemail());
        pause.resume();
        let (code, out, err) = output(child);
        assert_eq!(code, 0, "{out}{err}");
        let now = place_of(&sb, &moved);
        assert_eq!(now.len(), 1, "{now:?}");
        assert!(!now[0].starts_with("compta/2202/INBOX"), "{now:?}");
        assert_eq!(names(&inbox), Vec::<String>::new());
        assert_eq!(messages(&sb.voicemail()).len(), before.len());
        assert_no_leftovers(&sb, "");
    }
}

/// Finding 3: killed right after the commit of a cross-box move; the copy is
/// read (moved to Old) before recovery runs. Recovery finds it there.
#[test]
fn killed_after_commit_then_the_copy_is_read_recovers_by_identity() {
    for mode in ["lockfile", "flock"] {
        let sb = Sandbox::team2();
        let before = messages(&sb.voicemail());
        let moved = sha_of(&sb.voicemail().join("compta/2202/INBOX/msg0001.txt"));
        let (code, _, _) = output(spawn(
            &sb,
            &[("VMTOOL_TEST_KILL_AT", "committed")],
            &[
                "--no-ami",
                "--lockmode",
                mode,
                "mv",
                "2202@compta/INBOX/1",
                "2101@finance",
            ],
        ));
        assert_ne!(code, 0, "{mode}: the failpoint did not fire");
        // The owner of 2101 listens to the new copy: it goes to Old.
        sb.run(&[
            "--no-ami",
            "--lockmode",
            mode,
            "--lock-timeout",
            "1",
            "read",
            "2101@finance/INBOX/2",
        ])
        .ok();
        let r = sb.run(&["--no-ami", "--lockmode", mode, "check", "--fix"]);
        assert!(r.code == 0 || r.code == 5, "{}{}", r.stdout, r.stderr);
        assert!(
            r.stdout.contains("finished an interrupted move"),
            "{mode}: {}",
            r.stdout
        );
        each_once(&sb, &before);
        assert_eq!(place_of(&sb, &moved), ["finance/2101/Old/msg0000.txt"]);
        assert_no_leftovers(&sb, "");
    }
}

/// Finding 4: the same kill, the locks broken by the operator, then Asterisk
/// renumbers the source before recovery runs.
#[test]
fn killed_after_commit_then_the_source_is_renumbered_recovers_by_identity() {
    let sb = Sandbox::team2();
    let inbox = sb.voicemail().join("compta/2202/INBOX");
    let moved = sha_of(&inbox.join("msg0001.txt"));
    let (code, _, _) = output(spawn(
        &sb,
        &[("VMTOOL_TEST_KILL_AT", "committed")],
        &["--no-ami", "mv", "2202@compta/INBOX/1", "2101@finance/Old"],
    ));
    assert_ne!(code, 0, "the failpoint did not fire");
    for f in ["compta/2202/INBOX", "finance/2101/Old"] {
        sb.run(&["unlock", "--stale", "--older-than", "0", f]);
    }
    asterisk_delete(&inbox, 0);
    asterisk_resequence(&inbox);
    let before = messages(&sb.voicemail());
    let r = sb.run(&["--no-ami", "check", "--fix"]);
    assert!(r.code == 0 || r.code == 5, "{}{}", r.stdout, r.stderr);
    assert_eq!(place_of(&sb, &moved), ["finance/2101/Old/msg0000.txt"]);
    assert!(names(&inbox).is_empty(), "{:?}", names(&inbox));
    assert_eq!(messages(&sb.voicemail()).len(), before.len());
    assert_no_leftovers(&sb, "");
}

/// Finding 5: a kill while staging leaves `.vmtool-stage-*` copies; `check`
/// reports and `check --fix` removes every vmtool leftover whose owner is gone,
/// at once, and nothing a live vmtool still uses.
#[test]
fn staged_copies_of_killed_runs_are_found_and_removed_at_once() {
    for step in ["staged-file", "staged-all", "locked"] {
        let sb = Sandbox::team2();
        let before = messages(&sb.voicemail());
        let (code, _, _) = output(spawn(
            &sb,
            &[("VMTOOL_TEST_KILL_AT", step)],
            &[
                "--no-ami",
                "--lockmode",
                "flock",
                "mv",
                "2202@compta/INBOX/1",
                "2101@finance",
            ],
        ));
        assert_ne!(code, 0, "{step}: the failpoint did not fire");
        let tmp = sb.voicemail().join("finance/2101/tmp");
        assert!(
            names(&tmp).iter().any(|n| n.starts_with(".vmtool-stage-")),
            "{step}: {:?}",
            names(&tmp)
        );
        // Files named after a process that is gone, and one that runs (this test).
        let me = std::process::id();
        let stat = fs::read_to_string("/proc/self/stat").unwrap();
        let start: u64 = stat[stat.rfind(')').unwrap() + 1..]
            .split_whitespace()
            .nth(19)
            .unwrap()
            .parse()
            .unwrap();
        let live = format!(".vmtool-stage-{me}-{start}-1a-0.wav");
        fs::write(tmp.join(&live), "x").unwrap();
        fs::write(tmp.join(".vmtool-stage-999999999-5-1a-0.gsm"), "x").unwrap();
        let r = sb.run(&["--no-ami", "check", "finance/2101"]);
        assert_eq!(r.code, 5, "{step}: {}{}", r.stdout, r.stderr);
        assert!(r.stdout.contains(".vmtool-stage-999999999"), "{}", r.stdout);
        assert!(!r.stdout.contains(&live), "{}", r.stdout);
        let r = sb.run(&["--no-ami", "--lockmode", "flock", "check", "--fix"]);
        assert!(r.code == 0 || r.code == 5, "{}{}", r.stdout, r.stderr);
        fs::remove_file(tmp.join(&live)).unwrap();
        assert_no_leftovers(&sb, step);
        each_once(&sb, &before);
    }
}

/// Finding 6: a killed vmtool's `.lock` names its owner; the next vmtool change
/// in that folder, `unlock` and `check --fix` break it at once; Asterisk's own
/// locks and a live vmtool's are left alone; a killed waiter's helper goes.
#[test]
fn a_killed_vmtools_locks_are_broken_at_once_and_only_those() {
    let sb = Sandbox::team2();
    let before = messages(&sb.voicemail());
    let inbox = sb.voicemail().join("compta/2202/INBOX");
    let old = sb.voicemail().join("compta/2202/Old");
    let (code, _, _) = output(spawn(
        &sb,
        &[("VMTOOL_TEST_KILL_AT", "committing")],
        &["--no-ami", "mv", "2202@compta/INBOX/0", "Old"],
    ));
    assert_ne!(code, 0, "the failpoint did not fire");
    for dir in [&inbox, &old] {
        let tag = fs::read_to_string(dir.join(".lock")).unwrap();
        assert!(tag.starts_with("vmtool pid="), "{tag:?}");
    }
    // Reported at once (a young lock), as a gone vmtool's.
    let r = sb.run(&["--no-ami", "check", "2202@compta"]);
    assert_eq!(r.code, 5);
    assert!(r.stdout.contains("which is gone"), "{}", r.stdout);
    // `unlock` with the default age breaks it.
    sb.run(&["unlock", "--stale", "compta/2202/Old"]).ok();
    assert!(!old.join(".lock").exists());
    // The next change in the box does not wait for the other one.
    let t = Instant::now();
    sb.run(&[
        "--no-ami",
        "--lock-timeout",
        "1",
        "read",
        "2202@compta/INBOX/1",
    ])
    .ok();
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    sb.run(&["--no-ami", "check", "--fix"]);
    assert_no_leftovers(&sb, "");
    each_once(&sb, &before);

    // A waiter killed while Asterisk holds the folder: its helper goes, the
    // (young) Asterisk lock stays.
    let work = sb.voicemail().join("finance/2101/INBOX");
    asterisk_lock(&work);
    let mut child = spawn(
        &sb,
        &[],
        &[
            "--no-ami",
            "--lock-timeout",
            "30",
            "read",
            "2101@finance/INBOX/0",
        ],
    );
    wait_for("the waiter's helper", 10, || {
        names(&work).iter().any(|n| {
            n.starts_with(".lock-")
                && fs::read_to_string(work.join(n)).is_ok_and(|t| t.starts_with("vmtool"))
        })
    });
    child.kill().unwrap();
    child.wait().unwrap();
    sb.run(&["--no-ami", "check", "--fix"]);
    assert_eq!(
        names(&work)
            .iter()
            .filter(|n| n.starts_with(".lock"))
            .collect::<Vec<_>>(),
        [".lock"]
    );
    asterisk_unlock(&work);

    // A live vmtool's lock is nobody's to break.
    let pause = Pause::new(&sb);
    let child = spawn(
        &sb,
        &pause.env("locked"),
        &["--no-ami", "read", "2101@finance/INBOX/0"],
    );
    pause.wait();
    let r = sb.run(&["unlock", "--stale", "finance/2101/INBOX"]);
    assert_eq!(r.code, 4, "{}{}", r.stdout, r.stderr);
    let r = sb.run(&["--no-ami", "check", "--fix"]);
    assert!(!r.stdout.contains("half-done"), "{}", r.stdout);
    let tag = fs::read_to_string(work.join(".lock")).unwrap();
    assert!(
        tag.starts_with(&format!("vmtool pid={} ", child.id())),
        "{tag}"
    );
    pause.resume();
    let (code, out, err) = output(child);
    assert_eq!(code, 0, "{out}{err}");
    assert_no_leftovers(&sb, "");
}

/// flock mode: the kernel drops a killed vmtool's locks; the next run proceeds.
#[test]
fn flock_locks_of_a_killed_vmtool_do_not_block() {
    let sb = Sandbox::team2();
    let before = messages(&sb.voicemail());
    let (code, _, _) = output(spawn(
        &sb,
        &[("VMTOOL_TEST_KILL_AT", "committing")],
        &[
            "--no-ami",
            "--lockmode",
            "flock",
            "mv",
            "2202@compta/INBOX/0",
            "Old",
        ],
    ));
    assert_ne!(code, 0);
    let t = Instant::now();
    sb.run(&[
        "--no-ami",
        "--lockmode",
        "flock",
        "--lock-timeout",
        "1",
        "read",
        "2202@compta/INBOX/1",
    ])
    .ok();
    assert!(t.elapsed() < Duration::from_secs(1));
    sb.run(&["--no-ami", "--lockmode", "flock", "check", "--fix"]);
    each_once(&sb, &before);
}

/// Finding 7: a message moved away between readdir and open is not an error.
#[test]
fn ls_skips_a_message_that_moves_while_it_lists() {
    let sb = Sandbox::team2();
    let pause = Pause::new(&sb);
    let child = spawn(
        &sb,
        &pause.env("listed"),
        &["--format", "json", "ls", "2202@compta/INBOX"],
    );
    pause.wait();
    sb.run(&["--no-ami", "read", "2202@compta/INBOX/0"]).ok();
    pause.resume();
    let (code, out, err) = output(child);
    assert_eq!(code, 0, "{err}");
    assert_eq!(err, "");
    assert_eq!(out.lines().count(), 1, "{out}");
}

/// Finding 8: a box of voicemail.conf without a directory yet is created as
/// Asterisk would (modes and owner of its siblings).
#[test]
fn mv_and_cp_into_a_box_without_a_directory_create_it() {
    use std::os::unix::fs::MetadataExt;
    let sb = Sandbox::team2();
    let conf = sb.path().join("etc/voicemail.conf");
    let text = fs::read_to_string(&conf).unwrap().replace(
        "2202 => 3333,David Roux",
        "2202 => 3333,David Roux\n2203 => 5555,Gilles Neuf",
    );
    fs::write(&conf, text).unwrap();
    let ctx = sb.voicemail().join("compta");
    assert!(!ctx.join("2203").exists());
    sb.run(&["--no-ami", "mv", "2202@compta/INBOX/0", "2203@compta"])
        .ok();
    sb.run(&["--no-ami", "cp", "2202@compta/Old/0", "2203@compta/Work"])
        .ok();
    assert_eq!(count(&sb, "2203@compta"), (0, 1, 0));
    let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o7777;
    let sibling = mode(&ctx.join("2202"));
    for d in ["2203", "2203/INBOX", "2203/Work", "2203/tmp"] {
        assert_eq!(mode(&ctx.join(d)), sibling, "{d}");
    }
    // Files as vmtool makes them in a box that had its directories.
    sb.run(&["--no-ami", "cp", "2202@compta/Old/0", "2202@compta/Work"])
        .ok();
    assert_eq!(
        mode(&ctx.join("2203/INBOX/msg0000.wav")),
        mode(&ctx.join("2202/Work/msg0000.wav"))
    );
}

/// Issue 23, mechanism 1, on the file store: while the destination is busy,
/// vmtool must not sit on the source folder's lock (a deposit into it would
/// wait behind vmtool and be dropped after 5 s).
#[test]
fn a_move_waiting_for_a_busy_folder_holds_no_lock_meanwhile() {
    let sb = Sandbox::team2();
    let before = messages(&sb.voicemail());
    let src = sb.voicemail().join("compta/2202/INBOX");
    let dst = sb.voicemail().join("finance/2101/INBOX");
    asterisk_lock(&dst);
    let child = spawn(
        &sb,
        &[],
        &[
            "--no-ami",
            "--lock-timeout",
            "3",
            "mv",
            "2202@compta/INBOX/0",
            "2101@finance",
        ],
    );
    // Sample the source folder's lock while vmtool retries the pair.
    std::thread::sleep(Duration::from_millis(300));
    let (mut held, mut samples) = (0, 0);
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1500) {
        samples += 1;
        if src.join(".lock").exists() {
            held += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // A deposit into the source takes its lock Asterisk's way meanwhile.
    let helper = src.join(".lock-0badcafe");
    fs::write(&helper, "").unwrap();
    let t = Instant::now();
    while fs::hard_link(&helper, src.join(".lock")).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the deposit would be dropped"
        );
        std::thread::yield_now();
    }
    fs::remove_file(&helper).unwrap();
    asterisk_unlock(&src);
    assert!(
        held * 2 < samples,
        "source locked in {held} of {samples} samples"
    );
    asterisk_unlock(&dst);
    let (code, out, err) = output(child);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(messages(&sb.voicemail()).len(), before.len());
    assert_no_leftovers(&sb, "");
}
