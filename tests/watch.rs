//! `vmtool watch` with real inotify on a fixture copy: deposits made the way
//! Asterisk makes them, events on stdout and through --exec.

use crate::util::*;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Asterisk's deposit: metadata and audio in tmp/, lock the folder, rename
/// audio then .txt at highest+1, unlock.
fn deposit(vm: &Path, ctx: &str, mbox: &str, callerid: &str, id: &str) {
    let src = vm.join("compta/2201/INBOX");
    let boxdir = vm.join(ctx).join(mbox);
    let (tmp, inbox) = (boxdir.join("tmp"), boxdir.join("INBOX"));
    fs::create_dir_all(&tmp).unwrap();
    fs::create_dir_all(&inbox).unwrap();
    let txt = fs::read_to_string(src.join("msg0000.txt"))
        .unwrap()
        .replace("\"Lucas Fontaine\" <0688990011>", callerid)
        .replace("1795689167-00000005", id);
    fs::write(tmp.join("Ab3dEf"), &txt).unwrap();
    fs::copy(src.join("msg0000.wav"), tmp.join("Ab3dEf.wav")).unwrap();
    fs::write(inbox.join(".lock-0000abcd"), "").unwrap();
    fs::hard_link(inbox.join(".lock-0000abcd"), inbox.join(".lock")).unwrap();
    let n = vmtool::scan::last_message_index(&inbox)
        .unwrap()
        .map_or(0, |l| l + 1);
    fs::rename(tmp.join("Ab3dEf.wav"), inbox.join(format!("msg{n:04}.wav"))).unwrap();
    fs::rename(tmp.join("Ab3dEf"), inbox.join(format!("msg{n:04}.txt"))).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    fs::remove_file(inbox.join(".lock")).unwrap();
    fs::remove_file(inbox.join(".lock-0000abcd")).unwrap();
}

#[test]
fn new_messages_reported_once_with_exec() {
    let sb = Sandbox::team2();
    let vm = sb.voicemail();
    let log = sb.path().join("exec.log");
    let script = format!(
        "printf '%s|%s|%s\\n' \"$VMTOOL_EVENT\" \"$VMTOOL_CALLERID_NAME\" \"$VMTOOL_MSG_ID\" >> {}",
        log.display()
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_vmtool"))
        .current_dir(sb.path())
        .arg("--spool")
        .arg(sb.path().join("spool"))
        .arg("--voicemail-conf")
        .arg(sb.path().join("etc/voicemail.conf"))
        .args([
            "-v",
            "--format",
            "json",
            "watch",
            "--all",
            "--max-events",
            "4",
            "--exec",
            "/bin/sh",
            "-c",
            &script,
        ])
        .env("TZ", "UTC")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the watches are in place (the -v note), not for a fixed time.
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
    // A caller name that would run a command if anything used a shell on it.
    deposit(
        &vm,
        "compta",
        "2202",
        "\"$(touch pwned) Eve\" <0600000001>",
        "1795700000-000000a0",
    );
    // A move (read) is one event, not delete + new; a new box, then a deposit in it.
    std::thread::sleep(Duration::from_millis(300));
    sb.run(&["--no-ami", "read", "2202@compta/INBOX/0"]).ok();
    fs::create_dir_all(vm.join("direction/2399/INBOX")).unwrap();
    deposit(
        &vm,
        "direction",
        "2399",
        "\"Nouveau\" <0611111111>",
        "1795700001-000000a1",
    );
    let t = Instant::now();
    let mut lines = Vec::new();
    let stdout = child.stdout.take().unwrap();
    for line in BufReader::new(stdout).lines() {
        lines.push(line.unwrap());
        if lines.len() == 4 || t.elapsed() > Duration::from_secs(15) {
            break;
        }
    }
    let status = child.wait().unwrap();
    assert!(status.success());
    let events: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "new").count(),
        2,
        "{lines:?}"
    );
    assert!(
        kinds.contains(&"read") && kinds.contains(&"mailbox-created"),
        "{lines:?}"
    );
    let first = events.iter().find(|e| e["event"] == "new").unwrap();
    assert_eq!(first["context"], "compta");
    assert_eq!(first["callerid_name"], "$(touch pwned) Eve");
    assert_eq!(first["formats"], serde_json::json!(["wav"]));
    let read = events.iter().find(|e| e["event"] == "read").unwrap();
    assert_eq!(
        (read["folder"].as_str(), read["from_folder"].as_str()),
        (Some("Old"), Some("INBOX"))
    );
    // --exec ran per event with the message in the environment, no shell on it.
    std::thread::sleep(Duration::from_millis(300));
    let exec = fs::read_to_string(&log).unwrap();
    assert!(
        exec.contains("new|$(touch pwned) Eve|1795700000-000000a0"),
        "{exec}"
    );
    assert!(!sb.path().join("pwned").exists());
}
