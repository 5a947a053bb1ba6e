//! vmtool against the team-2 spool written by a real Asterisk, compared with
//! what Asterisk itself answered (`asterisk-answers.txt`) and the fixture README.

use crate::util::*;

const BOXES: [&str; 5] = [
    "2101@finance",
    "2102@finance",
    "2201@compta",
    "2202@compta",
    "2301@direction",
];

#[test]
fn count_equals_ami_mailboxcount() {
    let sb = Sandbox::team2();
    let answers = asterisk_answers();
    for b in BOXES {
        let (_, body) = answers
            .iter()
            .find(|(t, _)| t == &format!("AMI Action: MailboxCount  Mailbox: {b}"))
            .unwrap_or_else(|| panic!("no MailboxCount answer for {b}"));
        let run = sb.run(&["--format", "json", "count", b]).ok();
        let got = &run.json_lines()[0];
        assert_eq!(got["mailbox"], b);
        for (field, key) in [
            ("urgent", "UrgMessages"),
            ("new", "NewMessages"),
            ("old", "OldMessages"),
        ] {
            let want: u64 = ami_field(body, key).unwrap().parse().unwrap();
            assert_eq!(got[field].as_u64(), Some(want), "{b} {field}");
        }
    }
    // The plain form, for shell scripts, and a box named without its context.
    let run = sb.run(&["count", "2102"]).ok();
    assert_eq!(run.stdout, "2102@finance urgent=1 new=1 old=0\n");
}

#[test]
fn boxes_equal_voicemail_users_list() {
    let sb = Sandbox::team2();
    let answers = asterisk_answers();
    let (_, list) = answers
        .iter()
        .find(|(t, _)| t == "AMI Action: VoicemailUsersList")
        .unwrap();
    let entries: Vec<&str> = list.split("Event: VoicemailUserEntry\n").skip(1).collect();
    assert_eq!(entries.len(), 5);
    let rows = sb.run(&["--format", "json", "boxes"]).ok().json_lines();
    assert_eq!(rows.len(), 5, "{rows:?}");
    for e in entries {
        let ctx = ami_field(e, "VMContext").unwrap();
        let mbox = ami_field(e, "VoiceMailbox").unwrap();
        let row = rows
            .iter()
            .find(|r| r["context"] == ctx && r["box"] == mbox)
            .unwrap_or_else(|| panic!("no row for {mbox}@{ctx}"));
        assert_eq!(row["owner"], ami_field(e, "Fullname").unwrap());
        assert_eq!(
            row["new"].to_string(),
            ami_field(e, "NewMessageCount").unwrap(),
            "{mbox}"
        );
        assert_eq!(
            row["old"].to_string(),
            ami_field(e, "OldMessageCount").unwrap(),
            "{mbox}"
        );
        assert_eq!(
            row["maxmsg"].to_string(),
            ami_field(e, "MaxMessageCount").unwrap(),
            "{mbox}"
        );
        assert_eq!(row["configured"], true);
        assert_eq!(row["directory"], true);
    }
    // 2201 holds maxmsg=3 messages: Asterisk refused the 4th deposit.
    let full = rows.iter().find(|r| r["box"] == "2201").unwrap();
    assert_eq!(full["full"], true);
    let work = rows.iter().find(|r| r["box"] == "2101").unwrap();
    assert_eq!(work["folders"]["Work"], 1);
}

#[test]
fn boxes_like_asterisk_is_byte_identical_to_the_cli() {
    let sb = Sandbox::team2();
    let answers = asterisk_answers();
    for (title, body) in &answers {
        let Some(rest) = title.strip_prefix("CLI: voicemail show users") else {
            continue;
        };
        let mut args = vec!["boxes", "--like-asterisk"];
        if let Some(ctx) = rest.trim().strip_prefix("for ") {
            args.push(ctx);
        }
        let run = sb.run(&args).ok();
        // The answers file separates sections with one blank line.
        assert_eq!(
            run.stdout,
            body.trim_end_matches('\n').to_string() + "\n",
            "{title}"
        );
    }
}

/// The README's "Final messages" table: box, folder/file, callerid, origtime,
/// duration, flag, msg_id.
fn readme_messages() -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(team2_fixture().join("README.md")).unwrap();
    let start = readme.find("## Final messages").unwrap();
    readme[start..]
        .lines()
        .filter(|l| l.starts_with("| 2"))
        .map(|l| {
            l.split('|')
                .map(|c| c.trim().trim_matches('`').to_string())
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect()
}

#[test]
fn ls_lists_what_asterisk_wrote() {
    let sb = Sandbox::team2();
    let rows = sb.run(&["--format", "json", "ls"]).ok().json_lines();
    let want = readme_messages();
    assert_eq!(want.len(), 13);
    assert_eq!(rows.len(), 13);
    for w in &want {
        let (mailbox, context) = w[0].split_once('@').unwrap();
        let (folder, file) = w[1].split_once('/').unwrap();
        let row = rows
            .iter()
            .find(|r| {
                r["box"] == mailbox
                    && r["context"] == context
                    && r["folder"] == folder
                    && r["number"] == file.trim_start_matches("msg")
            })
            .unwrap_or_else(|| panic!("no row for {w:?}"));
        assert_eq!(row["callerid"], w[2].as_str());
        assert_eq!(row["origtime"].to_string(), w[3]);
        assert_eq!(row["duration"].to_string(), w[4]);
        let urgent = w.len() == 9 && w[5] == "Urgent";
        assert_eq!(row["urgent"], urgent, "{w:?}");
        assert_eq!(row["msg_id"], w[if urgent { 6 } else { 5 }].as_str());
        assert_eq!(row["formats"], serde_json::json!(["WAV", "gsm", "wav"]));
        assert_eq!(row["state"], "complete");
        assert!(row["path"]
            .as_str()
            .unwrap()
            .ends_with(&format!("{context}/{mailbox}/{folder}/{file}.txt")));
    }
    // Caller ID split the way Asterisk splits it.
    let by_id = |id: &str| rows.iter().find(|r| r["msg_id"] == id).unwrap().clone();
    let r = by_id("1795689176-00000006");
    assert_eq!(r["callerid_name"], "Unknown");
    assert_eq!(r["callerid_num"], serde_json::Value::Null);
    let r = by_id("1795689153-00000004");
    assert_eq!(r["callerid_name"], serde_json::Value::Null);
    assert_eq!(r["callerid_num"], "0298765401");
    let r = by_id("1795689093-00000000");
    assert_eq!(r["callerid_name"], "Hélène Lefèvre");
    assert_eq!(r["date"], "2026-11-26T10:31:33+00:00");
}

#[test]
fn ls_table_and_filters() {
    let sb = Sandbox::team2();
    let run = sb.run(&["ls", "compta/2202"]).ok();
    let expected = "\
MAILBOX          FOLDER  MSG  DATE             CALLER                 NUMBER         DUR     FLAGS   FORMATS
2202@compta      INBOX   0000 2026-11-26 10:33 Zoé Lambert            0561234567     0:20            WAV,gsm,wav
2202@compta      INBOX   0001 2026-11-26 10:34 Karim Benali           +33612345670   0:03            WAV,gsm,wav
2202@compta      Old     0000 2026-11-26 10:33 Support Client         3900           0:02            WAV,gsm,wav
";
    assert_eq!(run.stdout, expected);
    // The same box named Asterisk's way, and a folder.
    assert_eq!(sb.run(&["ls", "2202@compta"]).ok().stdout, expected);
    let old = sb
        .run(&["--format", "json", "ls", "2202@compta/old"])
        .ok()
        .json_lines();
    assert_eq!(old.len(), 1);
    assert_eq!(old[0]["msg_id"], "1795689208-00000008");
    // --new is INBOX + Urgent across the spool: 13 - Old(1) - Work(1).
    assert_eq!(
        sb.run(&["--format", "json", "ls", "--new"])
            .ok()
            .json_lines()
            .len(),
        11
    );
    let urgent = sb
        .run(&["--format", "json", "ls", "--folder", "urgent"])
        .ok()
        .json_lines();
    assert_eq!(urgent.len(), 1);
    assert_eq!(urgent[0]["urgent"], true);
    let c = sb
        .run(&["--format", "json", "ls", "--caller", "lambert"])
        .ok()
        .json_lines();
    assert_eq!(c.len(), 1);
    let c = sb
        .run(&["--format", "json", "ls", "--caller", "+336"])
        .ok()
        .json_lines();
    assert_eq!(c[0]["callerid_name"], "Karim Benali");
    // Ages are computed from VMTOOL_NOW: 10:34:00 leaves the last three deposits.
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vmtool"));
    cmd.env("VMTOOL_NOW", "1795689240").env("TZ", "UTC");
    cmd.args(["--spool"])
        .arg(sb.path().join("spool"))
        .args(["--format", "json", "ls", "--since", "0h"]);
    let out = cmd.output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
    let recent = sb
        .run(&[
            "--format",
            "json",
            "ls",
            "--since",
            "2026-11-26 10:34",
            "--utc",
        ])
        .ok()
        .json_lines();
    assert_eq!(recent.len(), 3);
    let early = sb
        .run(&["--format", "json", "ls", "--until", "@1795689120", "--utc"])
        .ok()
        .json_lines();
    assert_eq!(early.len(), 2);
}

#[test]
fn ls_csv() {
    let sb = Sandbox::team2();
    let run = sb.run(&["--format", "csv", "ls", "2202@compta/INBOX"]).ok();
    let mut lines = run.stdout.lines();
    assert_eq!(
        lines.next().unwrap(),
        "context,box,folder,number,msg_id,callerid,callerid_name,callerid_num,origtime,date,duration,urgent,formats,path,state,callerid_base64"
    );
    let row = lines.nth(1).unwrap();
    assert!(row.starts_with("compta,2202,INBOX,0001,1795689259-0000000b,\"\"\"Karim Benali\"\" <+33612345670>\",Karim Benali,+33612345670,1795689259,"), "{row}");
}

#[test]
fn show_every_field_audio_and_explanations() {
    let sb = Sandbox::team2();
    let run = sb.run(&["show", "compta/2202/INBOX/1"]).ok();
    let out = run
        .stdout
        .replace(&sb.path().display().to_string(), "SANDBOX");
    for want in [
        "compta/2202/INBOX/msg0001 (complete)",
        "file: SANDBOX/spool/voicemail/compta/2202/INBOX/msg0001.txt",
        "    callerchan  = Local/2202@leave-compta-0000000c",
        "    callerid    = \"Karim Benali\" <+33612345670>",
        "    origdate    = Thu Nov 26 10:34:20 AM UTC 2026",
        "    caller:   Karim Benali <+33612345670>",
        "    recorded: 2026-11-26 10:34:19 UTC (origtime 1795689259)",
        "    duration: 0:03 (3 s, from the .txt)",
        "    state:    new (unheard)",
        "msg0001.WAV    wav49",
        "msg0001.gsm    gsm",
        "msg0001.wav    wav",
        "  problems:\n    none\n",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    // Durations measured from the audio: 3.94 s for this message (README table).
    assert!(out.contains("3.94 s"), "{out}");
    let explained = sb
        .run(&["show", "--explain", "1795689259-0000000b"])
        .ok()
        .stdout;
    assert!(
        explained.contains("The mailbox the caller originally dialled"),
        "{explained}"
    );
    assert!(explained.contains("not unique"), "{explained}");
    // A shared msg_id selects every copy; JSON carries fields, audio, problems.
    let j = sb
        .run(&["--format", "json", "show", "2102@finance/Urgent/0"])
        .ok()
        .json_lines();
    assert_eq!(j[0]["fields"]["flag"], "Urgent");
    assert_eq!(j[0]["audio"].as_array().unwrap().len(), 3);
    assert_eq!(j[0]["urgent"], true);
}

#[test]
fn targets_errors_and_exit_codes() {
    let sb = Sandbox::team2();
    let r = sb.run(&["ls", "nosuchctx/2202"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("no context \"nosuchctx\""),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("compta, direction, finance"),
        "{}",
        r.stderr
    );
    let r = sb.run(&["ls", "9999"]);
    assert_eq!(r.code, 3);
    assert!(
        r.stderr.contains("neither a context nor a mailbox"),
        "{}",
        r.stderr
    );
    let r = sb.run(&["ls", "compta/2202/Nope"]);
    assert_eq!(r.code, 3);
    assert!(r.stderr.contains("unknown folder \"Nope\""), "{}", r.stderr);
    for bad in ["../etc", "/etc/passwd", "compta/../../x", "compta//2202"] {
        let r = sb.run(&["ls", bad]);
        assert_eq!(r.code, 2, "{bad}: {}", r.stderr);
        assert!(r.stdout.is_empty());
    }
    let r = sb.run(&["show", "compta/2202/INBOX/7"]);
    assert_eq!(r.code, 3);
    assert!(
        r.stderr.contains("no message msg0007 in compta/2202/INBOX"),
        "{}",
        r.stderr
    );
    let r = sb.run(&["show", "compta/2202/INBOX/x1"]);
    assert_eq!(r.code, 2);
    // One bad target among good ones: the rest is listed, exit 1.
    let r = sb.run(&["--format", "json", "ls", "2301", "nosuch@compta"]);
    assert_eq!(r.code, 1);
    assert_eq!(r.json_lines().len(), 2);
    // A box in two contexts is ambiguous.
    std::fs::create_dir_all(sb.voicemail().join("direction/2202/INBOX")).unwrap();
    let r = sb.run(&["count", "2202"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("2202@compta (2 new, 1 old), 2202@direction (no new or old messages)"),
        "{}",
        r.stderr
    );
}

#[test]
fn broken_txt_is_reported_and_the_listing_goes_on() {
    let sb = Sandbox::team2();
    let bad = sb.voicemail().join("compta/2202/INBOX/msg0000.txt");
    std::fs::write(&bad, b"origtime=1\n[message]\ncallerid=x\n").unwrap();
    let r = sb.run(&["--format", "json", "ls"]);
    assert_eq!(r.code, 1);
    assert_eq!(r.json_lines().len(), 12);
    assert!(
        r.stderr
            .contains("compta/2202/INBOX/msg0000.txt: line 1: key/value before any [section]"),
        "{}",
        r.stderr
    );
    // Empty (being rewritten) and binary garbage.
    std::fs::write(&bad, b"").unwrap();
    let r = sb.run(&["ls", "compta/2202"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("msg0000.txt: empty file"), "{}", r.stderr);
    std::fs::write(
        &bad,
        (0..2000u32)
            .map(|i| (i * 31 % 256) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let r = sb.run(&["show", "compta/2202/INBOX/0"]);
    assert!(r.code == 0 || r.code == 1, "{}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
}

#[test]
fn txt_writer_reproduces_asterisk_bytes() {
    use vmtool::metadata::{origdate_for, Metadata, NewMessage};
    let mut n = 0;
    let mut skewed = Vec::new();
    for e in walkdir::WalkDir::new(team2_fixture().join("voicemail")) {
        let e = e.unwrap();
        if e.path().extension().is_none_or(|x| x != "txt") {
            continue;
        }
        let bytes = std::fs::read(e.path()).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        let raw = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
                .unwrap()
                .to_string()
        };
        let m = Metadata::parse(&bytes).unwrap();
        // The values Asterisk had when it wrote the file. callerchan is taken
        // raw: its ";2" reads back as a comment (spec §3.1).
        let nm = NewMessage {
            origmailbox: raw("origmailbox"),
            context: raw("context"),
            exten: raw("exten"),
            rdnis: raw("rdnis"),
            priority: raw("priority").parse().unwrap(),
            callerchan: raw("callerchan"),
            callerid: m.callerid().unwrap(),
            origtime: m.origtime().unwrap(),
            category: raw("category"),
            msg_id: raw("msg_id"),
            flag: raw("flag"),
            duration: m.duration().unwrap(),
        };
        let mut meta = nm.to_metadata();
        // Asterisk reads the clock twice (origtime, then origdate) and once
        // got a second apart; everywhere else the derived origdate is exact.
        if origdate_for(nm.origtime).unwrap() != raw("origdate") {
            skewed.push(raw("msg_id"));
            meta.set("origdate", raw("origdate"));
        }
        let written = String::from_utf8(meta.to_asterisk_bytes()).unwrap();
        // vmtool escapes ';' so it reads back (spec §3.1); Asterisk wrote it raw.
        assert_eq!(written.replace("\\;", ";"), text, "{}", e.path().display());
        assert!(written.contains("callerchan=Local/") && written.contains("\\;2\n"));
        n += 1;
    }
    assert_eq!(n, 13);
    assert_eq!(skewed, vec!["1795689259-0000000b".to_string()]);
}

/// The .txt reader agrees with rust-ini (quotes and escapes off) on every
/// real and example file, once Asterisk's comment rules are applied.
#[test]
fn metadata_parser_matches_rust_ini() {
    use vmtool::dialect::{self, CommentState};
    use vmtool::metadata::Metadata;
    let mut n = 0;
    for root in [
        team2_fixture().join("voicemail"),
        repo_root().join("examples/spool"),
    ] {
        for e in walkdir::WalkDir::new(root) {
            let e = e.unwrap();
            if e.path().extension().is_none_or(|x| x != "txt") {
                continue;
            }
            let bytes = std::fs::read(e.path()).unwrap();
            let mut canon = String::new();
            let mut st = CommentState::default();
            for (_, line) in dialect::lines(&bytes) {
                if let Some(c) = dialect::clean_line(line.unwrap(), &mut st) {
                    canon.push_str(std::str::from_utf8(&c).unwrap());
                    canon.push('\n');
                }
            }
            let opt = ini::ParseOption {
                enabled_quote: false,
                enabled_escape: false,
                ..Default::default()
            };
            let reference = ini::Ini::load_from_str_opt(&canon, opt).unwrap();
            let props = reference.section(Some("message")).unwrap();
            let ours = Metadata::parse(&bytes).unwrap();
            let theirs: Vec<(&str, &str)> = props.iter().collect();
            let mine: Vec<(&str, &str)> = ours
                .fields()
                .iter()
                .map(|f| (f.key.as_str(), f.value.as_str()))
                .collect();
            assert_eq!(mine, theirs, "{}", e.path().display());
            n += 1;
        }
    }
    assert_eq!(n, 25);
}
