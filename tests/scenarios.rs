//! Scenarios every store passes the same way: the same test code runs on the
//! file spool, PostgreSQL and MariaDB (`stores()`), and observes each store
//! through vmtool's own `ls --format json`, so nothing here knows files from
//! rows. Store-specific details (numbering rules, columns, Asterisk's files)
//! stay in `change.rs`, `archive.rs`, `sql.rs`, `watch.rs`.
//!
//! The SQL stores are skipped with one line when their server is unreachable
//! (`VMTOOL_TEST_PG` / `VMTOOL_TEST_MYSQL`), and fail under `CI=true`.

use crate::sql::{servers, TestTable};
use crate::util::{team2_fixture, Run, Sandbox};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use vmtool::store::sql::db::Kind;

/// One store under test: a sandbox (configuration, and the spool of a file
/// store) and, for a SQL store, its table loaded with the same fixture.
struct StoreUnderTest {
    name: &'static str,
    sb: Sandbox,
    table: Option<TestTable>,
}

/// The file spool, then every reachable SQL server, each with the team-2
/// fixture's messages.
fn stores() -> Vec<StoreUnderTest> {
    let mut out = vec![StoreUnderTest {
        name: "files",
        sb: Sandbox::team2(),
        table: None,
    }];
    for s in servers() {
        let t = TestTable::new(&s, &[]);
        t.load_fixture();
        out.push(StoreUnderTest {
            name: match s.kind {
                Kind::Postgres => "postgresql",
                Kind::Mysql => "mariadb",
            },
            sb: Sandbox::team2(),
            table: Some(t),
        });
    }
    out
}

/// `ctx/box/Folder` → msg_ids in it.
type Ids = BTreeMap<String, BTreeSet<String>>;

impl StoreUnderTest {
    fn args(&self) -> Vec<String> {
        match &self.table {
            Some(t) => t.args(),
            None => vec!["--no-ami".into()],
        }
    }

    fn command(&self) -> Command {
        let mut cmd = self.sb.command();
        cmd.args(self.args());
        cmd
    }

    fn run(&self, args: &[&str]) -> Run {
        let mut all = self.args();
        all.extend(args.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        self.sb.run(&refs)
    }

    /// Every message by folder, as `ls` reports it.
    fn ids(&self) -> Ids {
        let mut out = Ids::new();
        for row in self.run(&["--format", "json", "ls"]).ok().json_lines() {
            let at =
                format!("{}/{}/{}", row["context"], row["box"], row["folder"]).replace('"', "");
            let id = row["msg_id"].as_str().unwrap_or("?").to_string();
            out.entry(at).or_default().insert(id);
        }
        out
    }

    fn all_ids(&self) -> BTreeSet<String> {
        self.ids().into_values().flatten().collect()
    }

    /// Options `watch` needs on this store (a table is polled).
    fn watch_args(&self) -> Vec<&'static str> {
        match self.table {
            Some(_) => vec!["--poll", "0.1"],
            None => vec![],
        }
    }

    /// A new message in `ctx/mbox/INBOX`, deposited the way Asterisk
    /// deposits it into this store.
    fn deposit(&self, ctx: &str, mbox: &str, txt: &str, like: &Path) {
        match &self.table {
            Some(t) => {
                let audio = std::fs::read(like.with_extension("WAV")).unwrap();
                t.deposit(&mut t.db(), ctx, mbox, "INBOX", txt.as_bytes(), &audio);
            }
            None => {
                // Staged in tmp/, renamed under Asterisk's lock, audio first.
                let boxdir = self.sb.voicemail().join(ctx).join(mbox);
                let (tmp, inbox) = (boxdir.join("tmp"), boxdir.join("INBOX"));
                std::fs::create_dir_all(&tmp).unwrap();
                std::fs::create_dir_all(&inbox).unwrap();
                std::fs::write(tmp.join("Xy7kQz"), txt).unwrap();
                std::fs::copy(like.with_extension("WAV"), tmp.join("Xy7kQz.WAV")).unwrap();
                std::fs::write(inbox.join(".lock-0000beef"), "").unwrap();
                std::fs::hard_link(inbox.join(".lock-0000beef"), inbox.join(".lock")).unwrap();
                let n = vmtool::scan::last_message_index(&inbox)
                    .unwrap()
                    .map_or(0, |l| l + 1);
                std::fs::rename(tmp.join("Xy7kQz.WAV"), inbox.join(format!("msg{n:04}.WAV")))
                    .unwrap();
                std::fs::rename(tmp.join("Xy7kQz"), inbox.join(format!("msg{n:04}.txt"))).unwrap();
                std::fs::remove_file(inbox.join(".lock")).unwrap();
                std::fs::remove_file(inbox.join(".lock-0000beef")).unwrap();
            }
        }
    }
}

/// msg_ids of the fixture's messages recorded before `cutoff`, and of all.
fn fixture_ids(cutoff: i64, new_too: bool) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut old, mut all) = (BTreeSet::new(), BTreeSet::new());
    for e in walkdir::WalkDir::new(team2_fixture().join("voicemail")) {
        let e = e.unwrap();
        if e.path().extension().is_none_or(|x| x != "txt") {
            continue;
        }
        let m = vmtool::metadata::Metadata::parse(&std::fs::read(e.path()).unwrap()).unwrap();
        let id = m.msg_id().unwrap().to_string();
        let folder = e.path().parent().unwrap().file_name().unwrap();
        let is_new = folder == "INBOX" || folder == "Urgent";
        if m.origtime().unwrap() < cutoff && (new_too || !is_new) {
            old.insert(id.clone());
        }
        all.insert(id);
    }
    (old, all)
}

fn moved(before: &Ids, after: &Ids, id: &str) -> (String, String) {
    let find = |ids: &Ids| {
        ids.iter()
            .find(|(_, s)| s.contains(id))
            .map(|(at, _)| at.clone())
            .unwrap_or_default()
    };
    (find(before), find(after))
}

#[test]
fn read_unread_mv_cp_rm_on_every_store() {
    for st in stores() {
        let n = st.name;
        let before = st.ids();
        let inbox = before["compta/2202/INBOX"].clone();
        assert_eq!(inbox.len(), 2, "{n}: {before:?}");
        // A dry run changes nothing.
        st.run(&["read", "--dry-run", "compta/2202/INBOX"]).ok();
        assert_eq!(st.ids(), before, "{n}");
        // read: INBOX → Old, the same messages.
        st.run(&["read", "compta/2202/INBOX"]).ok();
        let after = st.ids();
        assert!(!after.contains_key("compta/2202/INBOX"), "{n}: {after:?}");
        assert!(after["compta/2202/Old"].is_superset(&inbox), "{n}");
        // unread: Old → INBOX.
        let id = inbox.iter().next().unwrap().clone();
        let num = st
            .run(&["--format", "json", "ls", "compta/2202/Old"])
            .ok()
            .json_lines()
            .into_iter()
            .find(|r| r["msg_id"] == id.as_str())
            .unwrap()["number"]
            .as_str()
            .unwrap()
            .to_string();
        st.run(&["unread", &format!("compta/2202/Old/{num}")]).ok();
        assert_eq!(
            moved(&after, &st.ids(), &id),
            ("compta/2202/Old".into(), "compta/2202/INBOX".into()),
            "{n}"
        );
        // mv to another box (INBOX by default), cp keeps the source and the msg_id.
        let before = st.ids();
        st.run(&["mv", "compta/2202/INBOX", "finance/2102", "--yes"])
            .ok();
        assert_eq!(
            moved(&before, &st.ids(), &id),
            ("compta/2202/INBOX".into(), "finance/2102/INBOX".into()),
            "{n}"
        );
        let work = st.ids()["finance/2101/Work"].clone();
        st.run(&["cp", "finance/2101/Work", "direction/2301", "--yes"])
            .ok();
        let now = st.ids();
        assert_eq!(now["finance/2101/Work"], work, "{n}: the source stays");
        assert!(now["direction/2301/INBOX"].is_superset(&work), "{n}");
        // rm: the message leaves its folder (into Deleted when backupdeleted says so).
        let total = st.all_ids();
        let r = st.run(&["rm", "direction/2301/INBOX"]);
        assert_eq!(r.code, 2, "{n}: --yes is needed for a folder");
        st.run(&["rm", "direction/2301/INBOX", "--yes"]).ok();
        let left = st.ids();
        assert!(
            left.get("direction/2301/INBOX")
                .is_none_or(|s| s.is_disjoint(&work)),
            "{n}: {left:?}"
        );
        assert!(st.all_ids().is_subset(&total), "{n}: nothing invented");
        // A message that is not there is reported, not invented.
        let r = st.run(&["rm", "direction/2301/INBOX/9"]);
        assert_ne!(r.code, 0, "{n}");
    }
}

#[test]
fn archive_list_and_restore_on_every_store() {
    for st in stores() {
        let n = st.name;
        let arch = st.sb.path().join("archive");
        let a = arch.to_str().unwrap();
        let at = "@1795689200";
        let (old, all) = fixture_ids(1795689200, false);
        assert!(!old.is_empty() && old.len() < all.len());
        let before = st.ids();
        let dry = st
            .run(&["archive", "--older-than", at, "--to", a, "--dry-run"])
            .ok();
        assert_eq!(dry.stdout.lines().count(), old.len(), "{n}: {}", dry.stdout);
        assert_eq!(st.ids(), before, "{n}: a dry run changes nothing");
        st.run(&["archive", "--older-than", at, "--to", a]).ok();
        assert_eq!(
            st.all_ids(),
            all.difference(&old).cloned().collect(),
            "{n}: exactly the old heard messages left the store"
        );
        // The archive lists what left; a second run archives nothing twice.
        let listed: BTreeSet<String> = st
            .run(&["--format", "json", "ls", "--archive", a])
            .ok()
            .json_lines()
            .iter()
            .map(|r| r["msg_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(listed, old, "{n}");
        let r = st
            .run(&["archive", "--older-than", at, "--to", a, "--summary"])
            .ok();
        assert!(
            r.stdout.contains("archived 0 message(s)"),
            "{n}: {}",
            r.stdout
        );
        // Restore brings every one back where it was; a second restore is refused.
        for id in &old {
            st.run(&["restore", "--from", a, id]).ok();
        }
        assert_eq!(st.all_ids(), all, "{n}");
        for (at, ids) in &before {
            assert!(st.ids()[at].is_superset(ids), "{n}: {at}");
        }
        let id = old.iter().next().unwrap();
        let r = st.run(&["restore", "--from", a, id]);
        assert!(r.stderr.contains("not restored twice"), "{n}: {}", r.stderr);
        assert_eq!(st.all_ids(), all, "{n}");
    }
}

#[test]
fn purge_deletes_old_messages_outright_on_every_store() {
    for st in stores() {
        let n = st.name;
        let at = "@1795689200";
        let (old, all) = fixture_ids(1795689200, true);
        assert!(!old.is_empty() && old.len() < all.len());
        let before = st.ids();
        let r = st.run(&["purge", "--older-than", at, "--include-new"]);
        assert_eq!(r.code, 2, "{n}: --yes is required");
        let dry = st
            .run(&["purge", "--older-than", at, "--include-new", "--dry-run"])
            .ok();
        assert_eq!(dry.stdout.lines().count(), old.len(), "{n}: {}", dry.stdout);
        assert_eq!(st.ids(), before, "{n}");
        st.run(&["purge", "--older-than", at, "--include-new", "--yes"])
            .ok();
        assert_eq!(st.all_ids(), all.difference(&old).cloned().collect(), "{n}");
        assert!(
            !st.ids().keys().any(|k| k.ends_with("/Deleted")),
            "{n}: never into Deleted"
        );
    }
}

#[test]
fn watch_reports_new_and_read_messages_on_every_store() {
    for st in stores() {
        let n = st.name;
        let mut child = st
            .command()
            .args([
                "-v",
                "--format",
                "json",
                "watch",
                "--all",
                "--max-events",
                "2",
            ])
            .args(st.watch_args())
            .arg("compta")
            .env("TZ", "UTC")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until the source runs: what is there now is not news.
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        while err.read_line(&mut line).unwrap() > 0 && !line.contains("watching") {
            line.clear();
        }
        assert!(line.contains("watching"), "{n}: {line}");
        let like = team2_fixture().join("voicemail/compta/2202/INBOX/msg0000.txt");
        let txt = std::fs::read_to_string(&like)
            .unwrap()
            .replace("1795689233-0000000a", "1795690000-0000abcd");
        // Another context: outside the scope, never reported.
        st.deposit("finance", "2101", &txt, &like);
        st.deposit("compta", "2202", &txt, &like);
        std::thread::sleep(Duration::from_millis(400));
        st.run(&["read", "compta/2202/INBOX/2"]).ok();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{n}");
        let ev: Vec<serde_json::Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(ev.len(), 2, "{n}: {ev:?}");
        assert_eq!(ev[0]["event"], "new", "{n}");
        assert_eq!(ev[0]["box"], "2202", "{n}");
        assert_eq!(ev[0]["msg_id"], "1795690000-0000abcd", "{n}");
        assert_eq!(ev[1]["event"], "read", "{n}");
        assert_eq!(ev[1]["folder"], "Old", "{n}");
        assert_eq!(ev[1]["from_folder"], "INBOX", "{n}");
    }
}

/// `deposit` and a broadcast on every store: one new message per box with
/// the caller given, the same audio whichever store keeps it, a full box
/// refused by name while the others go on, and a rerun that adds nothing.
#[test]
fn deposit_and_broadcast_on_every_store() {
    let mut audio_by_store: Vec<(&str, Vec<u8>)> = Vec::new();
    for s in stores() {
        let input = s.sb.path().join("notice.wav");
        let other = s.sb.path().join("other.wav");
        for (p, secs, freq) in [(&input, "2.5", "300-3000"), (&other, "0.5", "500")] {
            let st = Command::new("sox")
                .args(["-D", "-n", "-r", "8000", "-c", "1", "-b", "16"])
                .arg(p)
                .args(["synth", secs, "sine", freq, "vol", "0.5"])
                .status()
                .unwrap();
            assert!(st.success());
        }
        let (input, other) = (input.to_str().unwrap(), other.to_str().unwrap());
        let inbox_count = |s: &StoreUnderTest, at: &str| s.ids().get(at).map_or(0, |v| v.len());
        // Fill compta/2201 (maxmsg=3): deposits until it is refused as full.
        let mut refused = None;
        for i in 0..5 {
            let r = s.run(&[
                "deposit",
                "2201@compta",
                other,
                "--callerid",
                &format!("n{i}"),
            ]);
            if r.code != 0 {
                refused = Some(r);
                break;
            }
        }
        let refused = refused.unwrap_or_else(|| panic!("{}: never full", s.name));
        assert!(
            refused.stderr.contains("mailbox full"),
            "{}: {}",
            s.name,
            refused.stderr
        );
        assert_eq!(inbox_count(&s, "compta/2201/INBOX"), 3, "{}", s.name);

        let before = s.ids();
        let r = s.run(&[
            "deposit",
            "compta",
            "finance",
            input,
            "--callerid",
            "Reception <100>",
        ]);
        assert_eq!(r.code, 1, "{}: {}{}", s.name, r.stdout, r.stderr);
        assert!(
            r.stderr.contains("2201") && r.stderr.contains("mailbox full"),
            "{}: {}",
            s.name,
            r.stderr
        );
        let after = s.ids();
        for b in [
            "compta/2202/INBOX",
            "finance/2101/INBOX",
            "finance/2102/INBOX",
        ] {
            let new: Vec<_> = after[b]
                .difference(before.get(b).unwrap_or(&BTreeSet::new()))
                .cloned()
                .collect();
            assert_eq!(new.len(), 1, "{}: {b}: {new:?}", s.name);
        }
        assert_eq!(
            after["compta/2201/INBOX"], before["compta/2201/INBOX"],
            "{}",
            s.name
        );
        let rows = s
            .run(&["--format", "json", "ls", "finance/2101/INBOX"])
            .ok()
            .json_lines();
        let row = rows
            .iter()
            .find(|r| r["callerid_name"] == "Reception")
            .unwrap_or_else(|| panic!("{}: {rows:?}", s.name));
        assert_eq!(row["callerid_num"], "100", "{}", s.name);
        // Rerun: nothing new anywhere.
        let r = s.run(&[
            "deposit",
            "compta",
            "finance",
            input,
            "--callerid",
            "Reception <100>",
        ]);
        assert_eq!(
            r.stdout.matches("already holds this message").count(),
            3,
            "{}: {}",
            s.name,
            r.stdout
        );
        assert_eq!(s.ids(), after, "{}", s.name);
        // The message's audio, as vmtool decodes it from this store.
        // (The table keeps the first format only: compare that one.)
        let n: u32 = row["number"].as_str().unwrap().parse().unwrap();
        let out = s
            .command()
            .args(["convert", "--stdout", "--from-format", "WAV"])
            .arg(format!("finance/2101/INBOX/{n}"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            s.name,
            String::from_utf8_lossy(&out.stderr)
        );
        audio_by_store.push((s.name, out.stdout));
    }
    // Every store keeps the same audio for the same deposit.
    for (name, a) in &audio_by_store[1..] {
        let f = &audio_by_store[0].1;
        let first = a.iter().zip(f).position(|(x, y)| x != y);
        assert!(
            a == f,
            "{name}: audio differs from the file store's ({} vs {} bytes, first difference at {first:?})",
            a.len(),
            f.len()
        );
    }
}

/// `convert --add-format` on every store: the file spool gets the new file
/// next to each message; the table, which holds one recording per message,
/// refuses and says why, changing nothing.
#[test]
fn add_format_on_every_store() {
    for s in stores() {
        let before = s.run(&["--format", "json", "ls", "finance"]).ok().stdout;
        let r = s.run(&["convert", "--add-format", "ulaw", "finance"]);
        let rows = s
            .run(&["--format", "json", "ls", "finance"])
            .ok()
            .json_lines();
        if s.table.is_none() {
            assert_eq!(r.code, 0, "{}: {}", s.name, r.stderr);
            assert_eq!(r.stdout.lines().count(), rows.len(), "{}", s.name);
            for row in &rows {
                assert!(
                    row["formats"].as_array().unwrap().contains(&"ulaw".into()),
                    "{}: {row}",
                    s.name
                );
            }
        } else {
            assert_eq!(r.code, 1, "{}: {}{}", s.name, r.stdout, r.stderr);
            assert!(
                r.stderr.contains("one recording per message"),
                "{}: {}",
                s.name,
                r.stderr
            );
            let now = s.run(&["--format", "json", "ls", "finance"]).ok().stdout;
            assert_eq!(now, before, "{}", s.name);
        }
    }
}

/// `restore --fill-formats` on every store: an archived message that lacks
/// the store's first format (the table's recording) is restored with it,
/// made from its other audio; without the option the table refuses it.
#[test]
fn restore_fills_missing_formats_on_every_store() {
    // The archive, from a file spool, of two messages; one lost its .WAV.
    let src = Sandbox::team2();
    let inbox = src.voicemail().join("finance/2101/INBOX");
    std::fs::remove_file(inbox.join("msg0000.WAV")).unwrap();
    let arch = src.path().join("archive");
    src.run(&[
        "--no-ami",
        "archive",
        "--keep",
        "--include-new",
        "--older-than",
        "2030-01-01",
        "--to",
        arch.to_str().unwrap(),
        "finance/2101/INBOX",
    ])
    .ok();
    let arch = arch.to_str().unwrap();
    let mut audio_by_store: Vec<(&str, Vec<u8>)> = Vec::new();
    for s in stores() {
        let restore = |extra: &[&str]| {
            let mut a = vec!["restore", "--from", arch, "--to", "2102@finance/Work"];
            a.extend_from_slice(extra);
            a.push("finance/2101/INBOX/0");
            s.run(&a)
        };
        let r = restore(&[]);
        if s.table.is_some() {
            assert_eq!(r.code, 1, "{}: {}", s.name, r.stderr);
            assert!(
                r.stderr.contains("--fill-formats") || r.stderr.contains("the table keeps .WAV"),
                "{}: {}",
                s.name,
                r.stderr
            );
            let r = restore(&["--fill-formats"]);
            assert_eq!(r.code, 0, "{}: {}", s.name, r.stderr);
        } else {
            assert_eq!(r.code, 0, "{}: {}", s.name, r.stderr);
            assert!(r.stderr.contains("no .WAV"), "{}: {}", s.name, r.stderr);
            // Restored without it; --add-format makes it now.
            s.run(&["convert", "--add-format", "wav49", "2102@finance/Work"])
                .ok();
        }
        // (The table restores at highest+2: the number is read back.)
        let rows = s
            .run(&["--format", "json", "ls", "finance/2102/Work"])
            .ok()
            .json_lines();
        assert_eq!(rows.len(), 1, "{}: {rows:?}", s.name);
        let n = rows[0]["number"].as_str().unwrap().to_string();
        let out = s
            .command()
            .args(["convert", "--stdout", "--from-format", "WAV"])
            .arg(format!("finance/2102/Work/{n}"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            s.name,
            String::from_utf8_lossy(&out.stderr)
        );
        audio_by_store.push((s.name, out.stdout));
    }
    // The same .WAV, made from the same .wav, whichever store keeps it.
    for (name, a) in &audio_by_store[1..] {
        assert!(a == &audio_by_store[0].1, "{name}: audio differs");
    }
}

/// A deposit SIGKILLed in the middle of its commit, on every store (the file
/// spool between staging and renames, the table inside its transaction):
/// nothing of it is visible meanwhile or after, and the rerun completes with
/// one message per box.
#[test]
fn deposit_killed_mid_commit_on_every_store() {
    for s in stores() {
        let input = s.sb.path().join("notice.wav");
        let st = Command::new("sox")
            .args(["-D", "-n", "-r", "8000", "-c", "1", "-b", "16"])
            .arg(&input)
            .args(["synth", "1.5", "sine", "300-3000", "vol", "0.5"])
            .status()
            .unwrap();
        assert!(st.success());
        let input = input.to_str().unwrap();
        let args = ["deposit", "finance", input, "--callerid", "Reception <100>"];
        let before = s.ids();
        let step = if s.table.is_some() {
            "sql-locked"
        } else {
            "committing"
        };
        let resume = s.sb.path().join("resume");
        let mut child = s
            .command()
            .env("VMTOOL_TEST_PAUSE_AT", step)
            .env("VMTOOL_TEST_PAUSE_FILE", &resume)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let paused = s.sb.path().join("resume.paused");
        let t = std::time::Instant::now();
        while !paused.exists() {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "{}: never paused",
                s.name
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // Mid-commit: nobody sees the message yet.
        assert_eq!(s.ids(), before, "{}: half-visible", s.name);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        assert_eq!(s.ids(), before, "{}: visible after the kill", s.name);
        let r = s.run(&args);
        assert_eq!(r.code, 0, "{}: {}", s.name, r.stderr);
        let after = s.ids();
        for b in ["finance/2101/INBOX", "finance/2102/INBOX"] {
            let new = after[b].len() - before.get(b).map_or(0, |v| v.len());
            assert_eq!(new, 1, "{}: {b}", s.name);
        }
        // And once more: nothing new.
        let r = s.run(&args);
        assert_eq!(
            r.stdout.matches("already holds this message").count(),
            2,
            "{}: {}",
            s.name,
            r.stdout
        );
        assert_eq!(s.ids(), after, "{}", s.name);
    }
}
