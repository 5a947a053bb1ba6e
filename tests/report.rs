//! `vmtool report` on a copy of the real-Asterisk spool: what needs
//! attention, in text and JSON, and the exit status cron and probes read.

use crate::util::*;
use std::fs;
use std::time::Duration;

/// Two days after the fixture's messages were left.
const NOW: &str = "1795862000";

#[test]
fn a_full_box_old_unheard_messages_and_stale_locks_need_attention() {
    let sb = Sandbox::team2();
    let env = [("VMTOOL_NOW", NOW)];
    // Nothing old enough, no full box: exit 0.
    let r = sb.run_env(&env, &["report", "finance", "--unheard-older-than", "7d"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("Nothing needs attention."),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("finance/2102        2       1  2 d"),
        "{}",
        r.stdout
    );
    // Unheard for more than a day: attention, exit 1.
    let r = sb.run_env(&env, &["report", "finance", "--unheard-older-than", "1d"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("finance/2101  2 unheard, the oldest for 2 d [unheard]"),
        "{}",
        r.stdout
    );
    // compta/2201 is full (maxmsg=3); an abandoned lock and an orphan elsewhere.
    let lock = sb.voicemail().join("direction/2301/INBOX/.lock");
    fs::write(&lock, "").unwrap();
    // Lock ages go by the inode's change time, which only waiting makes old.
    std::thread::sleep(Duration::from_millis(1100));
    let inbox = sb.voicemail().join("finance/2101/INBOX");
    fs::copy(inbox.join("msg0000.wav"), inbox.join("msg0007.wav")).unwrap();
    let r = sb.run_env(&env, &["report", "--stale-after", "1"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    for want in [
        "compta/2201",
        "INBOX full: 3 of maxmsg 3",
        "direction/2301/INBOX/.lock",
        "[stale-lock]",
        "1 problem(s) found by vmtool check (1 orphan)",
        "5 box(es), 11 unheard message(s).",
    ] {
        assert!(r.stdout.contains(want), "missing {want:?}:\n{}", r.stdout);
    }
    // --no-check leaves the spool's files alone.
    let r = sb.run_env(&env, &["report", "--no-check", "--stale-after", "1"]);
    assert!(!r.stdout.contains("[stale-lock]"), "{}", r.stdout);
    // One JSON document for monitoring.
    let r = sb.run_env(&env, &["--format", "json", "report", "--stale-after", "1"]);
    assert_eq!(r.code, 1);
    let j: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(j["generated"], 1795862000i64);
    let kinds: Vec<&str> = j["attention"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"full") && kinds.contains(&"stale-lock") && kinds.contains(&"check"),
        "{kinds:?}"
    );
    let b = j["boxes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["mailbox"] == "2201")
        .unwrap();
    assert_eq!(
        (
            b["unheard"].as_u64(),
            b["inbox"].as_u64(),
            b["maxmsg"].as_u64()
        ),
        (Some(3), Some(3), Some(3))
    );
    // CSV is refused, not ignored.
    let r = sb.run_env(&env, &["--format", "csv", "report"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("not --format csv"), "{}", r.stderr);
}
