//! The command-line surface an admin relies on: ages, summaries, dry-run
//! plans, closed or full output, and messages that say what to do.

use crate::util::*;
use std::collections::BTreeSet;
use std::path::Path;

/// Units an age example may use (and `m`, which must then be refused).
const UNIT_WORDS: &[&str] = &[
    "s", "sec", "secs", "second", "seconds", "min", "mins", "minute", "minutes", "h", "hr", "hrs",
    "hour", "hours", "d", "day", "days", "w", "wk", "wks", "week", "weeks", "mo", "mon", "mons",
    "month", "months", "y", "yr", "yrs", "year", "years", "m", "M",
];

/// Options whose value is an age or a date.
const AGE_OPTIONS: &[&str] = &["--older-than", "--since", "--until", "--stale-after"];

/// Text of a man page without roff markup.
fn unroff(s: &str) -> String {
    s.replace("\\-", "-")
        .replace("\\fB", "")
        .replace("\\fR", "")
        .replace("\\fI", "")
        .replace("\\fP", "")
        .replace("\\(aq", "'")
        .replace("\\(lq", "\"")
        .replace("\\(rq", "\"")
        .replace("\\ ", " ")
        .replace("\\\\", "\\")
}

/// Every age written in `text`: NUMBER[ ]UNIT groups (`90d`, `6 months`,
/// `1y6mo`) and ISO dates (`2026-11-01`, `2026-11-01 08:00`).
fn age_examples(text: &str) -> BTreeSet<String> {
    let b = text.as_bytes();
    let mut found = BTreeSet::new();
    let mut i = 0;
    while i < b.len() {
        let boundary_before =
            i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b"-._@:/".contains(&b[i - 1]));
        if !b[i].is_ascii_digit() || !boundary_before {
            i += 1;
            continue;
        }
        // ISO date (and time)?
        if let Some(d) = iso_at(&text[i..]) {
            found.insert(d.to_string());
            i += d.len();
            continue;
        }
        let mut j = i;
        let mut groups = 0;
        let mut all_units = true;
        loop {
            let start = j;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            if j == start {
                break;
            }
            let mut k = j;
            // One space between the number and its unit ("6 months"), only in the first group.
            if groups == 0 && k < b.len() && b[k] == b' ' {
                k += 1;
            }
            let ls = k;
            while k < b.len() && b[k].is_ascii_alphabetic() {
                k += 1;
            }
            if k == ls {
                j = start;
                break;
            }
            all_units &= UNIT_WORDS.contains(&&text[ls..k]);
            groups += 1;
            j = k;
            if !(j < b.len() && b[j].is_ascii_digit()) {
                break;
            }
        }
        let boundary_after =
            j >= b.len() || !(b[j].is_ascii_alphanumeric() || b[j] == b'@' || b[j] == b'/');
        if groups > 0 && all_units && boundary_after {
            found.insert(text[i..j].to_string());
            i = j;
        } else {
            i += 1;
        }
    }
    found
}

fn iso_at(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    let shape = |pat: &[u8]| {
        b.len() >= pat.len()
            && pat.iter().zip(b).all(|(p, c)| {
                if *p == b'9' {
                    c.is_ascii_digit()
                } else {
                    p == c
                }
            })
    };
    for (pat, len) in [
        (&b"9999-99-99T99:99:99+99:99"[..], 25),
        (&b"9999-99-99T99:99:99Z"[..], 20),
        (&b"9999-99-99T99:99:99"[..], 19),
        (&b"9999-99-99 99:99:99"[..], 19),
        (&b"9999-99-99 99:99"[..], 16),
        (&b"9999-99-99T99:99"[..], 16),
        (&b"9999-99-99"[..], 10),
    ] {
        if shape(pat) {
            return Some(&s[..len]);
        }
    }
    None
}

/// Command lines (from `vmtool ` on) that pass an age or date option.
fn age_command_lines(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let mut rest = line;
        while let Some(at) = rest.find("vmtool ") {
            let cmd = &rest[at + "vmtool ".len()..];
            let cmd = cmd.split(['#', '|', '>', '`']).next().unwrap_or("").trim();
            if AGE_OPTIONS
                .iter()
                .any(|o| cmd.split_whitespace().any(|w| w == *o))
                && !cmd.contains("AGE")
                && !cmd.contains('…')
            {
                out.insert(cmd.to_string());
            }
            rest = &rest[at + 1..];
        }
    }
    out
}

/// Splits like a shell for these simple lines: whitespace, double quotes.
fn shell_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut any) = (false, false);
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    words.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(cur);
    }
    words
}

/// README, every man page and every `--help`: the texts an admin copies from.
fn doc_texts() -> Vec<(String, String)> {
    let root = repo_root();
    let mut texts = vec![(
        "README.md".to_string(),
        std::fs::read_to_string(root.join("README.md")).unwrap(),
    )];
    let mut commands = Vec::new();
    for e in std::fs::read_dir(root.join("man")).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        let page = std::fs::read_to_string(root.join("man").join(&name)).unwrap();
        texts.push((format!("man/{name}"), unroff(&page)));
        if let Some(cmd) = name
            .strip_prefix("vmtool-")
            .and_then(|n| n.strip_suffix(".1"))
        {
            commands.push(cmd.to_string());
        }
    }
    texts.push(("vmtool --help".into(), vmtool(&["--help"]).ok().stdout));
    for c in commands {
        for h in ["--help", "-h"] {
            // vmtool-greeting-set.1 is `vmtool greeting set`.
            let mut args: Vec<&str> = c.split('-').collect();
            args.push(h);
            let r = vmtool(&args).ok();
            texts.push((format!("vmtool {c} {h}"), r.stdout));
        }
    }
    texts
}

/// The cron and systemd examples.
fn examples_dir_files() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for d in ["examples/cron", "examples/systemd"] {
        for e in std::fs::read_dir(repo_root().join(d)).unwrap() {
            let p = e.unwrap().path();
            out.push((
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            ));
        }
    }
    out
}

#[test]
fn age_example_extraction_finds_what_it_should() {
    let found = age_examples(
        "e.g. 30d, 12h, 2w, 90m or \"6 months\", 1y6mo; 2026-11-01 or \"2026-11-01 08:00\"; \
         not 1202@compta, msg0003, 16-bit, 5 problems, 8000",
    );
    let want: BTreeSet<String> = [
        "30d",
        "12h",
        "2w",
        "90m",
        "6 months",
        "1y6mo",
        "2026-11-01",
        "2026-11-01 08:00",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(found, want);
    let lines = age_command_lines(
        "x\nvmtool purge --older-than 1y --yes # delete\n17 3 * * * vmtool archive --older-than 90d --to /srv/a\nvmtool ls\n",
    );
    assert_eq!(lines.len(), 2, "{lines:?}");
}

/// Every age and date written in README, the man pages, the examples and
/// `--help` is accepted as written, and every command line using one runs.
#[test]
fn every_documented_age_runs_as_written() {
    let sb = Sandbox::example();
    let mut ages = BTreeSet::new();
    let mut lines = BTreeSet::new();
    for (name, text) in doc_texts() {
        for a in age_examples(&text) {
            ages.insert((a, name.clone()));
        }
        lines.extend(age_command_lines(&text));
    }
    // systemd units use systemd's own time syntax: only their vmtool lines count.
    for (_, text) in examples_dir_files() {
        lines.extend(age_command_lines(&text));
    }
    let distinct: BTreeSet<&String> = ages.iter().map(|(a, _)| a).collect();
    for must in ["7d", "90d", "1y", "6mo", "2026-11-01", "2026-11-01 08:00"] {
        assert!(
            distinct.contains(&must.to_string()),
            "the docs no longer show {must}: {distinct:?}"
        );
    }
    let mut refused = Vec::new();
    for (age, source) in &ages {
        for opt in ["--since", "--until"] {
            let r = sb.run(&["ls", opt, age]);
            if r.code != 0 {
                refused.push(format!("{source}: ls {opt} {age:?}: {}", r.stderr.trim()));
            }
        }
        let r = sb.run(&["--no-ami", "purge", "--dry-run", "--older-than", age]);
        if r.code != 0 {
            refused.push(format!(
                "{source}: purge --older-than {age:?}: {}",
                r.stderr.trim()
            ));
        }
    }
    assert!(refused.is_empty(), "refused:\n{}", refused.join("\n"));
    assert!(
        lines.iter().any(|l| l.starts_with("purge --older-than 1y")),
        "{lines:?}"
    );
    for (n, line) in lines.iter().enumerate() {
        let words: Vec<String> = shell_words(line)
            .into_iter()
            .map(|w| {
                if line.starts_with("greeting set") && w.starts_with('/') {
                    // The audio to set: a greeting the example spool has.
                    sb.voicemail()
                        .join("compta/1202/unavail.wav")
                        .display()
                        .to_string()
                } else if w.starts_with('/') || w.starts_with('~') {
                    sb.path().join(format!("doc-dir-{n}")).display().to_string()
                } else {
                    w
                }
            })
            .collect();
        let mut args = vec!["--no-ami"];
        args.extend(words.iter().map(String::as_str));
        // 2026-11-30: a documented `--until 2027-01-02` stays in the future.
        let r = sb.run_env(&[("VMTOOL_NOW", "1796000000")], &args);
        assert_eq!(r.code, 0, "vmtool {line}:\n{}{}", r.stdout, r.stderr);
    }
}

fn txt_files(root: &Path) -> usize {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy();
            n.starts_with("msg") && n.ends_with(".txt")
        })
        .count()
}

/// `6m` used to be six minutes: a purge that deleted every heard message.
#[test]
fn a_bare_m_is_refused_and_deletes_nothing() {
    let sb = Sandbox::example();
    let before = txt_files(&sb.voicemail());
    for args in [
        &["--no-ami", "purge", "--older-than", "6m", "--yes"][..],
        &[
            "--no-ami",
            "archive",
            "--older-than",
            "6m",
            "--to",
            "/nonexistent/x",
        ][..],
        &["ls", "--since", "90m"][..],
        &[
            "unlock",
            "--stale",
            "--older-than",
            "5m",
            "compta/1202/INBOX",
        ][..],
        &["check", "--stale-after", "5m"][..],
    ] {
        let r = sb.run(args);
        assert_eq!(r.code, 2, "{args:?}: {}{}", r.stdout, r.stderr);
        assert!(
            r.stderr.contains("min") && r.stderr.contains("mo"),
            "{args:?}: {}",
            r.stderr
        );
    }
    assert_eq!(txt_files(&sb.voicemail()), before);
}

/// Calendar months and long forms select what a calendar says.
#[test]
fn purge_by_calendar_months_and_long_forms() {
    let sb = Sandbox::example();
    // Every example message as (origtime, path): pick a cutoff between two of them.
    let mut times: Vec<i64> = Vec::new();
    for v in sb.run(&["--format", "json", "ls"]).ok().json_lines() {
        times.push(v["origtime"].as_i64().unwrap());
    }
    times.sort();
    let newest = *times.last().unwrap();
    // "now" one calendar month + 1 day after the newest message: "1mo" keeps it
    // only if months are calendar months counted from now.
    let now = newest + 32 * 86_400;
    let env = [("VMTOOL_NOW", now.to_string())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let json = |args: &[&str]| {
        let mut a = vec!["--format", "json"];
        a.extend_from_slice(args);
        sb.run_env(&env, &a).ok().json_lines().len()
    };
    assert_eq!(json(&["ls", "--until", "1mo"]), times.len());
    assert_eq!(json(&["ls", "--until", "1 month"]), times.len());
    assert_eq!(
        json(&["ls", "--since", "5 weeks"]),
        json(&["ls", "--since", "5w"])
    );
    assert!(json(&["ls", "--since", "2 months"]) >= 1);
    assert_eq!(json(&["ls", "--since", "1mo"]), 0);
}

/// The part of a summary after its verb, without what only a real run knows.
fn summary_numbers(stdout: &str, verb: &str) -> String {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("vmtool: {verb} ")))
        .unwrap_or_else(|| panic!("no \"{verb}\" summary in:\n{stdout}"));
    let rest = &line[format!("vmtool: {verb} ").len()..];
    rest.split(';')
        .filter(|p| !p.contains("finished from an earlier run"))
        .collect::<Vec<_>>()
        .join(";")
}

/// `--dry-run --summary` says "would …" with the numbers the real run then gives.
#[test]
fn dry_run_summaries_equal_the_real_run() {
    for keep in [false, true] {
        let sb = Sandbox::team2();
        let arch = sb.path().join("archive");
        let mut args = vec![
            "--no-ami",
            "archive",
            "--older-than",
            "1d",
            "--include-new",
            "--to",
            arch.to_str().unwrap(),
            "--summary",
        ];
        if keep {
            args.push("--keep");
        }
        let mut dry = args.clone();
        dry.push("--dry-run");
        let d = sb.run(&dry).ok().stdout;
        let (would, did) = if keep {
            ("would copy", "copied")
        } else {
            ("would archive", "archived")
        };
        let want = summary_numbers(&d, would);
        assert!(!want.starts_with("0 "), "{d}");
        assert!(
            !want.contains("(0.0 kB)") && !want.contains("from 0 box"),
            "{d}"
        );
        let r = sb.run(&args).ok().stdout;
        assert_eq!(summary_numbers(&r, did), want, "keep={keep}");
    }
    let sb = Sandbox::team2();
    let base = ["--no-ami", "purge", "--older-than", "1d", "--include-new"];
    let mut dry = base.to_vec();
    dry.extend(["--dry-run", "--summary"]);
    let d = sb.run(&dry).ok().stdout;
    let want = summary_numbers(&d, "would purge");
    assert!(
        !want.contains("from 0 box") && !want.contains("(0.0 kB)"),
        "{d}"
    );
    // A real purge says what it removed without being asked.
    let mut real = base.to_vec();
    real.push("--yes");
    let r = sb.run(&real).ok().stdout;
    assert_eq!(summary_numbers(&r, "purged"), want);
    assert!(
        want.contains(", recorded 20"),
        "oldest/newest origtime: {want}"
    );
}

/// `--quiet` keeps a real purge silent; nothing to purge still says so.
#[test]
fn purge_summary_respects_quiet() {
    let sb = Sandbox::team2();
    let r = sb
        .run(&["--no-ami", "-q", "purge", "--older-than", "1d", "--yes"])
        .ok();
    assert_eq!(r.stdout, "");
    let r = sb
        .run(&["--no-ami", "purge", "--older-than", "1d", "--yes"])
        .ok();
    assert!(
        r.stdout.starts_with("vmtool: purged 0 message(s)"),
        "{}",
        r.stdout
    );
}

/// From a dry-run plan: source -> the destination message it allocates.
fn planned(stdout: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut src = String::new();
    for line in stdout.lines() {
        if let Some(s) = line.strip_suffix(':').filter(|_| !line.starts_with(' ')) {
            src = s.to_string();
        } else if let Some(rest) = line.trim().strip_prefix("lock ") {
            // "lock DEST[ and SOURCE …]; …; allocate msgNNNN …": DEST comes first.
            let dir = rest.split([' ', ';']).next().unwrap_or_default();
            if let Some((_, tail)) = rest.split_once("; allocate ") {
                let num = &tail[..7];
                out.push((src.clone(), format!("{dir}/{num}")));
            }
        }
    }
    out
}

/// From a real run: source -> where it went.
fn done(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter_map(|l| {
            let l = l.strip_suffix(')').unwrap_or(l);
            let (verb_src, to) = l
                .split_once(" -> ")
                .or_else(|| l.split_once(" (kept in "))?;
            let src = verb_src.split_once(' ')?.1;
            Some((src.to_string(), to.to_string()))
        })
        .collect()
}

/// The plan is the run: every number a dry run shows is the one the run allocates.
#[test]
fn dry_run_plans_show_the_numbers_the_run_allocates() {
    let cases: &[&[&str]] = &[
        &["mv", "compta/1201/INBOX", "Old"],
        &[
            "cp",
            "compta/1201/INBOX",
            "compta/1202/Old/0",
            "1101@finance/Work",
        ],
        &["rm", "compta/1202/Old", "compta/1201/INBOX/1"],
    ];
    for case in cases {
        let sb = Sandbox::example();
        // rm keeps a copy in Deleted: the plan must say so and number it.
        let conf = sb.path().join("etc/voicemail.conf");
        let text = std::fs::read_to_string(&conf).unwrap();
        std::fs::write(
            &conf,
            text.replace("[general]\n", "[general]\nbackupdeleted=50\n"),
        )
        .unwrap();
        let mut dry = vec!["--no-ami"];
        dry.extend_from_slice(case);
        dry.push("--dry-run");
        let plan = planned(&sb.run(&dry).ok().stdout);
        assert!(plan.len() >= 2, "{case:?}: {plan:?}");
        let mut real = vec!["--no-ami"];
        real.extend_from_slice(case);
        real.push("--yes");
        let r = sb.run(&real).ok();
        let got = done(&r.stdout);
        assert_eq!(plan, got, "{case:?}\n{}", r.stdout);
        for (_, to) in &got {
            assert!(sb.voicemail().join(format!("{to}.txt")).is_file(), "{to}");
        }
    }
}

/// Commands that print something on the example spool (each on a fresh copy).
fn printing_commands() -> Vec<Vec<&'static str>> {
    let mut v: Vec<Vec<&str>> = vec![
        vec!["ls"],
        vec!["--format", "json", "ls"],
        vec!["--format", "csv", "ls"],
        vec!["ls", "--since", "10y"],
        vec!["show", "compta/1202/Old/0", "--explain"],
        vec!["--format", "json", "show", "compta/1202/Old/0"],
        vec!["boxes"],
        vec!["boxes", "--like-asterisk"],
        vec!["boxes", "--bytes"],
        vec!["count", "1202@compta"],
        vec!["check"],
        vec!["--help"],
        vec!["ls", "--help"],
        vec!["--version"],
        vec!["mv", "--dry-run", "compta/1201/INBOX", "Old"],
        vec!["mv", "--yes", "compta/1201/INBOX", "Old"],
        vec!["cp", "--yes", "compta/1201/INBOX", "1202@compta"],
        vec!["read", "compta/1202/INBOX/0"],
        vec!["unread", "compta/1202/Old/0"],
        vec!["rm", "--dry-run", "compta/1202/Old"],
        vec!["rm", "--yes", "compta/1202/Old"],
        vec!["resequence", "--dry-run", "--force", "1202@compta"],
        vec![
            "archive",
            "--older-than",
            "1d",
            "--to",
            "ARCHIVE",
            "--summary",
            "-v",
        ],
        vec![
            "archive",
            "--older-than",
            "1d",
            "--to",
            "ARCHIVE",
            "--dry-run",
        ],
        vec!["purge", "--older-than", "1d", "--dry-run", "--summary"],
        vec!["purge", "--older-than", "1d", "--yes"],
        vec!["convert", "compta/1202/Old/0", "--stdout"],
        vec!["convert", "compta/1202/Old/0", "-o", "ARCHIVE"],
        vec!["play", "--list-devices"],
    ];
    for sh in ["bash", "zsh", "fish", "elvish", "powershell"] {
        v.push(vec!["completions", sh]);
    }
    v
}

/// Runs one command with standard output `stdout`.
fn run_with_stdout(args: &[&str], stdout: std::process::Stdio) -> (i32, String) {
    let sb = Sandbox::example();
    let arch = sb.path().join("archive");
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            if *a == "ARCHIVE" {
                arch.display().to_string()
            } else {
                a.to_string()
            }
        })
        .collect();
    let out = sb
        .command()
        .arg("--no-ami")
        .args(&args)
        .env("TZ", "UTC")
        .env_remove("VMTOOL_AMI")
        .stdout(stdout)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `| head -1`: a reader that has gone stops a listing quietly, never a panic.
#[test]
fn a_closed_output_is_quiet_for_every_command() {
    for args in printing_commands() {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let (code, stderr) = run_with_stdout(&args, writer.into());
        assert!(
            code == 0 && !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{args:?}: exit {code}\n{stderr}"
        );
    }
}

/// `> /dev/full`: a clear error and a failure status, never a panic or silence.
#[test]
fn a_full_output_is_a_clear_error_for_every_command() {
    if !Path::new("/dev/full").exists() {
        return;
    }
    for args in printing_commands() {
        let (reader, writer) = std::io::pipe().unwrap();
        let reading = std::thread::spawn(move || {
            let mut r = reader;
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut r, &mut v).unwrap();
            v.len()
        });
        run_with_stdout(&args, writer.into());
        if reading.join().unwrap() == 0 {
            continue; // prints nothing on standard output here (check reports on stderr)
        }
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let (code, stderr) = run_with_stdout(&args, full.into());
        assert!(
            code != 0 && code != 101 && !stderr.contains("panicked"),
            "{args:?}: exit {code}\n{stderr}"
        );
        assert!(
            stderr.contains("standard output") && stderr.contains("No space left"),
            "{args:?}: {stderr}"
        );
    }
}

/// `resequence --ami HOST:PORT` without a user says the login is missing, not "without AMI".
#[test]
fn resequence_names_missing_ami_credentials() {
    let sb = Sandbox::example();
    for (spec, missing) in [
        ("127.0.0.1:5038", "no user"),
        ("bob@127.0.0.1:5038", "no secret"),
    ] {
        let r = sb.run(&["resequence", "--ami", spec, "1202@compta"]);
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(
            r.stderr.contains(missing) && r.stderr.contains(spec),
            "{}",
            r.stderr
        );
        assert!(!r.stderr.contains("without AMI"), "{}", r.stderr);
    }
    let r = sb.run_env(
        &[("VMTOOL_AMI", "127.0.0.1")],
        &["resequence", "1202@compta"],
    );
    assert!(r.stderr.contains("no user"), "{}", r.stderr);
}

/// A missing voicemail.conf is said once on stderr (not only with -v), and -q hides it.
#[test]
fn a_missing_voicemail_conf_is_warned_once() {
    let sb = Sandbox::example();
    let etc = sb.path().join("etc");
    std::fs::remove_file(etc.join("voicemail.conf")).unwrap();
    let run = |extra: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vmtool"));
        cmd.arg("--spool")
            .arg(sb.path().join("spool"))
            .arg("--asterisk-conf")
            .arg(etc.join("asterisk.conf"))
            .args(extra)
            .arg("ls")
            .env("TZ", "UTC");
        let out = cmd.output().unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(&[]);
    assert_eq!(err.matches("voicemail.conf").count(), 2, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("warning") && err.contains("--voicemail-conf"),
        "{err}"
    );
    assert_eq!(run(&["-q"]), "");
}

/// `--spool` at a context, box or folder (or a file) is refused with the level to give.
#[test]
fn spool_at_the_wrong_level_says_which_to_give() {
    let sb = Sandbox::example();
    let vm = sb.voicemail();
    for (dir, what) in [
        (vm.join("compta"), "context folder"),
        (vm.join("compta/1202"), "mailbox"),
        (vm.join("compta/1202/INBOX"), "message folder"),
        (vm.join("compta/1202/INBOX/msg0000.txt"), "is a file"),
    ] {
        let r = vmtool(&["--spool", dir.to_str().unwrap(), "ls"]);
        assert_eq!(r.code, 2, "{}: {}{}", dir.display(), r.stdout, r.stderr);
        assert!(r.stderr.contains(what), "{}", r.stderr);
        if what != "is a file" {
            assert!(
                r.stderr.contains(&format!("--spool {}", vm.display())),
                "{}",
                r.stderr
            );
        }
    }
    // The voicemail/ folder itself and astspooldir above it both work.
    for dir in [vm.clone(), sb.path().join("spool")] {
        let r = vmtool(&["--spool", dir.to_str().unwrap(), "-q", "ls"]).ok();
        assert!(r.stdout.contains("1202@compta"), "{}", r.stdout);
    }
    // Directories with no <context>/<box>/<Folder> below: a warning, not "asterisk@etc" silently.
    let odd = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(odd.path().join("etc/asterisk")).unwrap();
    let r = vmtool(&["--spool", odd.path().to_str().unwrap(), "ls"]);
    assert!(
        r.stderr.contains("does not look like a voicemail spool"),
        "{}",
        r.stderr
    );
}

/// Every line of the README's "Use" section, run in order on the bundled
/// example as an admin would (devices, watch and shell redirections aside).
#[test]
fn readme_use_section_runs_verbatim_on_the_example() {
    let sb = Sandbox::example();
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let block = readme
        .split("## Use")
        .nth(1)
        .and_then(|s| s.split("```sh").nth(1))
        .and_then(|s| s.split("```").next())
        .unwrap();
    let mut ran = 0;
    for line in block.lines() {
        let Some(cmd) = line.trim().strip_prefix("vmtool ") else {
            continue;
        };
        let cmd = cmd.split(['#', '|', '>']).next().unwrap().trim();
        let words = shell_words(cmd);
        // Needs a sound card, or runs until stopped.
        if words[0] == "watch"
            || (words[0] == "play" && !cmd.contains("--list-devices"))
            || (words[0] == "greeting" && words[1] == "play")
        {
            continue;
        }
        let words: Vec<String> = words
            .into_iter()
            .map(
                |w| match w.strip_prefix('/').or_else(|| w.strip_prefix("~/")) {
                    Some(rest) => sb.path().join(rest.replace('/', "-")).display().to_string(),
                    None => w,
                },
            )
            .collect();
        // Binary output (convert --stdout): look at the status and stderr only.
        let out = sb
            .command()
            .arg("--no-ami")
            .args(&words)
            .env("TZ", "UTC")
            // 2026-11-30: `greeting set --until 2027-01-02` stays in the future.
            .env("VMTOOL_NOW", "1796000000")
            .env_remove("VMTOOL_AMI")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "vmtool {cmd}: {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        ran += 1;
    }
    assert!(ran >= 20, "{ran}");
    // "or just 1202": users.conf also makes 1202@default, which has no folder.
    let r = Sandbox::example().run(&["ls", "1202"]).ok();
    assert!(r.stdout.contains("1202@compta"), "{}", r.stdout);
}

/// A name in several contexts that all have folders stays ambiguous, and the
/// message says what each holds and how to pick.
#[test]
fn ambiguity_says_what_each_candidate_holds() {
    let sb = Sandbox::example();
    std::fs::create_dir_all(sb.voicemail().join("default/1202/INBOX")).unwrap();
    let r = sb.run(&["ls", "1202"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("1202@compta (1 new, 2 old)")
            && r.stderr.contains("1202@default (no new or old messages)")
            && r.stderr.contains("box@context"),
        "{}",
        r.stderr
    );
}

/// `boxes` takes any target, not only contexts, and its help says what NEW counts.
#[test]
fn boxes_takes_any_target_and_documents_its_columns() {
    let sb = Sandbox::example();
    for t in [
        "1202@compta",
        "compta/1202",
        "1202@compta/INBOX",
        "compta/1202/Old/0",
    ] {
        let r = sb.run(&["--format", "json", "boxes", t]).ok();
        let rows = r.json_lines();
        assert_eq!(rows.len(), 1, "{t}: {}", r.stdout);
        assert_eq!(rows[0]["box"], "1202", "{t}");
    }
    let r = sb
        .run(&["--format", "json", "boxes", "compta", "1202@compta"])
        .ok();
    assert_eq!(r.json_lines().len(), 2);
    let help = vmtool(&["boxes", "--help"]).ok().stdout;
    assert!(
        help.contains("INBOX + Urgent") && help.contains("URGENT"),
        "{help}"
    );
}

/// A message of an hour or more shows h:mm:ss in full, not "1:02:…".
#[test]
fn long_durations_are_not_cut() {
    let sb = Sandbox::example();
    let txt = sb.voicemail().join("compta/1202/Old/msg0000.txt");
    let text = std::fs::read_to_string(&txt).unwrap();
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("duration=") {
                "duration=3725".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    std::fs::write(&txt, text).unwrap();
    let r = sb.run(&["ls", "compta/1202/Old"]).ok();
    assert!(r.stdout.contains(" 1:02:05 "), "{}", r.stdout);
    let header = r.stdout.lines().next().unwrap();
    let row = r.stdout.lines().find(|l| l.contains("1:02:05")).unwrap();
    // FLAGS starts where the header says.
    let col = |line: &str, what: &str| line[..line.find(what).unwrap()].chars().count();
    assert_eq!(col(header, "FLAGS"), col(row, "1:02:05") + 8);
}

/// An archive is readable on a machine with no spool and no Asterisk configuration.
#[test]
fn an_archive_is_readable_without_a_spool() {
    let sb = Sandbox::example();
    let arch = sb.path().join("archive");
    sb.run(&[
        "--no-ami",
        "archive",
        "--older-than",
        "1d",
        "--to",
        arch.to_str().unwrap(),
    ])
    .ok();
    let elsewhere = tempfile::tempdir().unwrap();
    let nowhere = elsewhere.path().join("no-spool");
    let conf = elsewhere.path().join("asterisk.conf");
    for args in [
        vec!["ls", "--archive", arch.to_str().unwrap()],
        vec![
            "show",
            "--archive",
            arch.to_str().unwrap(),
            "compta/1202/Old/0",
        ],
    ] {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vmtool"));
        cmd.arg("--spool")
            .arg(&nowhere)
            .arg("--asterisk-conf")
            .arg(&conf)
            .args(&args)
            .env("TZ", "UTC")
            .env_remove("VMTOOL_SPOOL");
        std::fs::write(&conf, "[directories]\nastetcdir => /nonexistent\n").unwrap();
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert!(stdout.contains("1202"), "{args:?}: {stdout}");
        assert!(!stderr.contains("does not exist"), "{stderr}");
    }
}

/// The cron example is true: on success it prints nothing (cron mails only failures).
#[test]
fn the_cron_example_is_silent_on_success() {
    let cron = std::fs::read_to_string(repo_root().join("examples/cron/vmtool-archive")).unwrap();
    let line = cron
        .lines()
        .find(|l| !l.starts_with('#') && l.contains("vmtool archive"))
        .unwrap();
    let cmd = &line[line.find("vmtool ").unwrap() + "vmtool ".len()..];
    let sb = Sandbox::example();
    let mut args = vec!["--no-ami".to_string()];
    for w in shell_words(cmd) {
        args.push(if w.starts_with('/') {
            sb.path().join("archive").display().to_string()
        } else {
            w
        });
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = sb.run(&args).ok();
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("", ""), "{line}");
    assert!(sb.path().join("archive/manifest.jsonl").is_file());
}

/// `ls --sort/--reverse/--limit/--urgent`, on the spool and on an archive.
#[test]
fn ls_sorts_limits_and_picks_urgent_messages() {
    let sb = Sandbox::team2();
    let rows = |args: &[&str]| {
        let mut all = vec!["--format", "json", "ls"];
        all.extend_from_slice(args);
        sb.run(&all).json_lines()
    };
    let all = rows(&[]);
    assert_eq!(all.len(), 13);
    let d = rows(&["--sort", "duration", "--reverse", "--limit", "3"]);
    let durs: Vec<u64> = d.iter().map(|r| r["duration"].as_u64().unwrap()).collect();
    let mut want: Vec<u64> = all
        .iter()
        .map(|r| r["duration"].as_u64().unwrap())
        .collect();
    want.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(durs, want[..3]);
    let by_date = rows(&["--sort", "date"]);
    let t: Vec<i64> = by_date
        .iter()
        .map(|r| r["origtime"].as_i64().unwrap())
        .collect();
    assert!(t.windows(2).all(|w| w[0] <= w[1]), "{t:?}");
    assert_eq!(by_date.len(), 13);
    let urgent = rows(&["--urgent"]);
    assert_eq!(urgent.len(), 1);
    assert_eq!(
        (urgent[0]["box"].as_str(), urgent[0]["folder"].as_str()),
        (Some("2102"), Some("Urgent"))
    );
    assert!(rows(&["--limit", "0"]).is_empty());
    // The table keeps its header and each box's dates.
    let r = sb.run(&["ls", "--sort", "caller", "--limit", "2"]);
    assert_eq!(r.stdout.lines().count(), 3, "{}", r.stdout);
    assert!(r.stdout.starts_with("MAILBOX"), "{}", r.stdout);
    // An archive is listed the same way.
    let arch = sb.path().join("arch");
    let r = sb.run(&[
        "--no-ami",
        "archive",
        "--older-than",
        "0d",
        "--include-new",
        "--to",
        arch.to_str().unwrap(),
        "finance",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let a = sb
        .run(&[
            "--format",
            "json",
            "ls",
            "--archive",
            arch.to_str().unwrap(),
            "--sort",
            "duration",
            "--limit",
            "2",
        ])
        .json_lines();
    assert_eq!(a.len(), 2);
    assert!(a[0]["duration"].as_u64() <= a[1]["duration"].as_u64());
}

/// A command's own options come first; the options every command takes are
/// under their own heading after them.
#[test]
fn help_lists_a_commands_own_options_before_the_global_ones() {
    for (cmd, own) in [
        ("ls", "--sort"),
        ("check", "--strict"),
        ("report", "--near-full"),
    ] {
        for flag in ["-h", "--help"] {
            let h = vmtool(&[cmd, flag]).ok().stdout;
            let own_at = h
                .find(own)
                .unwrap_or_else(|| panic!("{cmd} {flag}: no {own}:\n{h}"));
            let heading = h
                .find("Global options:")
                .unwrap_or_else(|| panic!("{cmd} {flag}:\n{h}"));
            let spool = h.find("--spool <DIR>").unwrap();
            assert!(own_at < heading && heading < spool, "{cmd} {flag}:\n{h}");
        }
    }
}

/// `--format` is honoured or refused (exit 2), never ignored: the change
/// commands say what they did as JSON or CSV, check writes CSV, and the
/// commands that print text only refuse it by name.
#[test]
fn every_command_honours_or_refuses_the_format() {
    let sb = Sandbox::team2();
    let r = sb.run(&[
        "--no-ami",
        "--format",
        "json",
        "read",
        "2101@finance/INBOX/0",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j = r.json_lines();
    assert_eq!(j.len(), 1);
    assert_eq!(j[0]["action"], "moved");
    assert_eq!(j[0]["from"], "finance/2101/INBOX/msg0000");
    assert_eq!(j[0]["to"], "finance/2101/Old/msg0000");
    let r = sb.run(&[
        "--no-ami",
        "--format",
        "csv",
        "rm",
        "--yes",
        "2101@finance/Old/0",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "action,from,to\ndeleted,finance/2101/Old/msg0000,\n"
    );
    let r = sb.run(&["--format", "csv", "check", "compta"]);
    assert!(
        r.stdout
            .starts_with("path,kind,problem,fix,fixed,severity\ncompta/2201/INBOX,full,"),
        "{}",
        r.stdout
    );
    let r = sb.run(&[
        "--format",
        "json",
        "mv",
        "--dry-run",
        "2101@finance/INBOX/1",
        "Old",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    for args in [
        &["--format", "json", "purge", "--older-than", "1y"][..],
        &["--format", "csv", "unlock", "--stale", "compta/2202/INBOX"],
        &["--format", "csv", "watch"],
        &["--format", "csv", "show", "compta/2202/INBOX/0"],
        &["--format", "json", "resequence", "compta/2202/INBOX"],
    ] {
        let r = sb.run(args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("only, not --format"),
            "{args:?}: {}",
            r.stderr
        );
    }
}

/// Replaces the `key=` line of a `.txt` with `line` (bytes, any encoding).
fn set_txt_line(txt: &Path, key: &str, line: &[u8]) {
    let data = std::fs::read(txt).unwrap();
    let mut out = Vec::new();
    for l in data.split_inclusive(|&b| b == b'\n') {
        if l.starts_with(format!("{key}=").as_bytes()) {
            out.extend_from_slice(line);
            out.push(b'\n');
        } else {
            out.extend_from_slice(l);
        }
    }
    std::fs::write(txt, out).unwrap();
}

/// Boxes in different zones (1102@finance has tz=european, the others local
/// time, UTC here): each date of a table says its zone, in the box's own
/// time; one zone alone, or --utc, keeps the short column. An hour-long
/// message shows h:mm:ss in every listing.
#[test]
fn dates_say_their_zone_when_boxes_are_in_different_zones() {
    let sb = Sandbox::example();
    let urgent = sb.voicemail().join("finance/1102/Urgent/msg0000.txt");
    set_txt_line(&urgent, "duration", b"duration=3725");
    let json = sb.run(&["--format", "json", "ls"]).ok().json_lines();
    let table = sb.run(&["ls"]).ok().stdout;
    let header = table.lines().next().unwrap();
    let col = |line: &str, what: &str| line[..line.find(what).unwrap()].chars().count();
    for row in &json {
        let (mbox, folder, num) = (
            row["box"].as_str().unwrap(),
            row["folder"].as_str().unwrap(),
            row["number"].as_str().unwrap(),
        );
        let line = table
            .lines()
            .find(|l| {
                l.starts_with(&format!("{mbox}@"))
                    && l.contains(&format!(" {folder} "))
                    && l.contains(&format!(" {num} "))
            })
            .unwrap_or_else(|| panic!("{mbox}/{folder}/{num} not in\n{table}"));
        // The date in the box's zone, as JSON's RFC 3339 says, then the zone.
        let date = row["date"].as_str().unwrap();
        let shown = format!("{} {}", &date[..10], &date[11..16]);
        let zone = if mbox == "1102" {
            if date.ends_with("+02:00") {
                "CEST"
            } else {
                "CET"
            }
        } else {
            "UTC"
        };
        assert!(line.contains(&format!("{shown} {zone} ")), "{line}");
        // Columns stay under their headings.
        assert_eq!(col(line, &shown), col(header, "DATE"), "{line}");
    }
    let long = table.lines().find(|l| l.contains("Urgent")).unwrap();
    assert!(long.contains(" 1:02:05 "), "{long}");
    assert_eq!(col(long, "1:02:05"), col(header, "DUR"), "{table}");
    // The same with --sort (rows gathered) and in show.
    let sorted = sb
        .run(&["ls", "--sort", "duration", "--reverse", "--limit", "2"])
        .ok()
        .stdout;
    let first = sorted.lines().nth(1).unwrap();
    assert!(
        first.contains(" CEST ") && first.contains(" 1:02:05 "),
        "{sorted}"
    );
    let show = sb.run(&["show", "finance/1102/Urgent/0"]).ok().stdout;
    assert!(show.contains("duration: 1:02:05 (3725 s"), "{show}");
    // One zone: no zone names, the short column.
    for args in [
        &["ls", "finance/1101"][..],
        &["ls", "--utc"],
        &["ls", "compta"],
    ] {
        let out = sb.run(args).ok().stdout;
        assert!(
            !out.contains(" UTC ") && !out.contains(" CE"),
            "{args:?}\n{out}"
        );
        let h = out.lines().next().unwrap();
        assert_eq!(col(h, "CALLER") - col(h, "DATE"), 17, "{args:?}\n{out}");
    }
    // greeting ls lists boxes of both zones: its dates say theirs too.
    let g = sb.run(&["greeting", "ls"]).ok().stdout;
    let line = g.lines().find(|l| l.contains("unavail")).unwrap();
    assert!(line.trim_end().ends_with(" UTC"), "{g}");
    let g = sb.run(&["greeting", "ls", "compta"]).ok().stdout;
    assert!(!g.contains(" UTC"), "{g}");
}

/// A caller name in Latin-1 (not UTF-8): the text fields show U+FFFD and
/// `callerid_base64` keeps the exact bytes, under the same name in ls, show,
/// CSV, the archive manifest and `ls --archive`; `boxes --like-asterisk`
/// prints a Latin-1 owner byte for byte, padded by bytes as Asterisk does.
#[test]
fn bytes_that_are_not_utf8_are_kept() {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.decode(s).unwrap();
    let sb = Sandbox::example();
    let raw: &[u8] = b"\"Ren\xe9 Dupr\xe9\" <0612345678>";
    let txt = sb.voicemail().join("compta/1202/Old/msg0001.txt");
    set_txt_line(&txt, "callerid", &[b"callerid=".as_slice(), raw].concat());
    let conf = sb.path().join("etc/voicemail.conf");
    let text = std::fs::read(&conf).unwrap();
    let text = String::from_utf8(text)
        .unwrap()
        .replace("1202 => 5190,David Roux", "1202 => 5190,@OWNER@");
    let (a, b) = text.split_once("@OWNER@").unwrap();
    std::fs::write(
        &conf,
        [a.as_bytes(), b"Fran\xe7ois Roux", b.as_bytes()].concat(),
    )
    .unwrap();

    let rows = sb
        .run(&["--format", "json", "ls", "compta/1202/Old"])
        .ok()
        .json_lines();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        if r["number"] == "0001" {
            assert_eq!(b64(r["callerid_base64"].as_str().unwrap()), raw);
            assert_eq!(r["callerid_name"], "Ren\u{FFFD} Dupr\u{FFFD}");
            assert_eq!(r["callerid_num"], "0612345678");
        } else {
            assert!(r["callerid_base64"].is_null(), "{r}");
        }
    }
    let show = sb
        .run(&["--format", "json", "show", "compta/1202/Old/1"])
        .ok()
        .json_lines();
    assert_eq!(b64(show[0]["callerid_base64"].as_str().unwrap()), raw);
    let csv = sb
        .run(&["--format", "csv", "ls", "compta/1202/Old"])
        .ok()
        .stdout;
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .ends_with(",state,callerid_base64"),
        "{csv}"
    );
    let line = csv.lines().find(|l| l.contains(",0001,")).unwrap();
    assert_eq!(b64(line.rsplit(',').next().unwrap()), raw, "{line}");
    assert!(
        csv.lines()
            .find(|l| l.contains(",0000,"))
            .unwrap()
            .ends_with(','),
        "{csv}"
    );

    // The archive: the manifest keeps the field, ls --archive shows it.
    let arch = sb.path().join("archive");
    sb.run(&[
        "--no-ami",
        "archive",
        "--older-than",
        "1d",
        "--to",
        arch.to_str().unwrap(),
        "compta/1202",
    ])
    .ok();
    let manifest = std::fs::read_to_string(arch.join("manifest.jsonl")).unwrap();
    assert!(
        manifest.lines().any(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["callerid_base64"].as_str().is_some_and(|s| b64(s) == raw)
        }),
        "{manifest}"
    );
    let listed = sb
        .run(&[
            "--format",
            "json",
            "ls",
            "--archive",
            arch.to_str().unwrap(),
        ])
        .ok()
        .json_lines();
    assert!(
        listed
            .iter()
            .any(|r| r["callerid_base64"].as_str().is_some_and(|s| b64(s) == raw)),
        "{listed:?}"
    );

    // voicemail show users: the owner's own bytes, padded to 25 bytes.
    let out = sb
        .command()
        .args(["boxes", "--like-asterisk"])
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(out.status.success());
    let want = [
        b"compta     1202  Fran\xe7ois Roux".as_slice(),
        &[b' '; 12],
        b" ",
    ]
    .concat();
    assert!(
        out.stdout.windows(want.len()).any(|w| w == want.as_slice()),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let boxes = sb
        .run(&["--format", "json", "boxes", "1202@compta"])
        .ok()
        .json_lines();
    assert_eq!(
        b64(boxes[0]["owner_base64"].as_str().unwrap()),
        b"Fran\xe7ois Roux"
    );
    assert_eq!(boxes[0]["owner"], "Fran\u{FFFD}ois Roux");
    // The man page says how.
    let man = std::fs::read_to_string(repo_root().join("man/vmtool-ls.1")).unwrap();
    assert!(
        man.contains("callerid_base64"),
        "vmtool-ls.1 does not document callerid_base64"
    );
}

/// The completion scripts complete the spool's contexts, boxes (ctx/box and
/// box@ctx), folders and numbers, as bash runs them (`complete -p` gives the
/// function, called with COMP_WORDS like a TAB would).
#[test]
fn bash_completes_targets_from_the_spool() {
    let sb = Sandbox::example();
    let bin = sb.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_vmtool"), bin.join("vmtool")).unwrap();
    let spool = sb.path().join("spool");
    let script = r#"
set -u
source <(vmtool completions bash)
fn=$(complete -p vmtool | sed -E 's/.* -F ([^ ]+) .*/\1/')
comp() {
    COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
    COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; COMP_TYPE=9; COMPREPLY=()
    "$fn" vmtool "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
    echo "$*| ${COMPREPLY[*]}"
}
comp vmtool --spool "$SPOOL" ls comp
comp vmtool --spool "$SPOOL" ls compta/
comp vmtool --spool "$SPOOL" ls compta/1202/
comp vmtool --spool "$SPOOL" ls compta/1202/Old/
comp vmtool --spool "$SPOOL" ls 120
comp vmtool --spool "$SPOOL" ls 1202@compta/I
comp vmtool --spool "$SPOOL" ls --folder O
comp vmtool --spool "$SPOOL" unlock --stale finance/1102/U
comp vmtool --spool "$SPOOL" l
VMTOOL_SPOOL="$SPOOL" comp vmtool mv compta/1202/INBOX/0 fin
"#;
    let out = std::process::Command::new("bash")
        .args(["--norc", "--noprofile", "-c", script])
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("SPOOL", &spool)
        .env_remove("VMTOOL_SPOOL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<&str> = stdout
        .lines()
        .map(|l| l.split_once("| ").unwrap().1)
        .collect();
    assert_eq!(
        got,
        [
            "compta/",
            "compta/1201/ compta/1202/",
            "compta/1202/INBOX/ compta/1202/Old/",
            "compta/1202/Old/0 compta/1202/Old/1",
            "1201@compta 1202@compta",
            "1202@compta/INBOX/",
            "Old",
            "finance/1102/Urgent/",
            "ls",
            "finance/",
        ],
        "{stdout}"
    );
}

/// `watch` gives a Latin-1 caller's bytes under the same name: JSON's
/// `callerid_base64` and --exec's VMTOOL_CALLERID_BASE64.
#[test]
fn watch_keeps_bytes_that_are_not_utf8() {
    use std::io::BufRead;
    let sb = Sandbox::example();
    let seen = sb.path().join("seen");
    let mut child = sb
        .command()
        .args([
            "-v",
            "--format",
            "json",
            "watch",
            "--max-events",
            "1",
            "--exec",
            "/bin/sh",
            "-c",
        ])
        .arg(format!(
            "printf %s \"$VMTOOL_CALLERID_BASE64\" > {}",
            seen.display()
        ))
        .env("TZ", "UTC")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("watching") {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "watch exited early");
    }
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    // A deposit the way Asterisk makes one: audio, then the .txt, at highest+1.
    let inbox = sb.voicemail().join("compta/1201/INBOX");
    let tmp = sb.voicemail().join("compta/1201/tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::copy(inbox.join("msg0000.wav"), tmp.join("x.wav")).unwrap();
    std::fs::copy(inbox.join("msg0000.txt"), tmp.join("x.txt")).unwrap();
    set_txt_line(
        &tmp.join("x.txt"),
        "callerid",
        b"callerid=\"Ren\xe9\" <0612345678>",
    );
    std::fs::rename(tmp.join("x.wav"), inbox.join("msg0003.wav")).unwrap();
    std::fs::rename(tmp.join("x.txt"), inbox.join("msg0003.txt")).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let ev: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    let want = "IlJlbukiIDwwNjEyMzQ1Njc4Pg==";
    assert_eq!(ev["callerid_base64"], want, "{ev}");
    // --exec runs after the event is printed: wait for its file.
    let t = std::time::Instant::now();
    while !seen.exists() && t.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(std::fs::read_to_string(&seen).unwrap(), want);
}

/// A CSV with no rows still has its header line (ls, boxes).
#[test]
fn an_empty_csv_still_has_its_header() {
    let sb = Sandbox::example();
    let r = sb.run(&["--format", "csv", "ls", "--caller", "nobody-calls"]);
    assert_eq!(r.stdout.lines().count(), 1, "{}", r.stdout);
    assert!(
        r.stdout.starts_with("context,box,folder,number,"),
        "{}",
        r.stdout
    );
    let empty = Sandbox::empty();
    let r = empty.run(&["--format", "csv", "boxes"]).ok();
    assert!(
        r.stdout.starts_with("context,box,owner,new,"),
        "{}",
        r.stdout
    );
}
