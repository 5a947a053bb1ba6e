//! The spool as untrusted input: every command that reads it, run on a
//! team-2 copy where `compta/2202/INBOX` holds one planted object (a FIFO, a
//! socket, links to devices, out of the spool or to themselves, a directory
//! named like a message file, a 2 GiB sparse `.wav`, a 10 MB `.txt`, an
//! unreadable file, a name with terminal escapes), and configurations that
//! are FIFOs. Each run has a hard time bound (the child is killed and the test
//! fails), must not panic, must name the object (escaped), must write nothing
//! outside the spool and its archive, and must still handle the other messages.
//!
//! `VMTOOL_HOSTILE_BIN=/path/to/vmtool` runs the table against another build
//! (to see an older one hang).

use crate::util::*;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A hard bound, not a performance figure: a run that needs it is hung.
const BOUND: Duration = Duration::from_secs(10);

const INBOX: &str = "compta/2202/INBOX";

fn bin() -> PathBuf {
    std::env::var_os("VMTOOL_HOSTILE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_vmtool")))
}

struct Out {
    code: i32,
    text: String,
}

/// Runs vmtool on the sandbox with a hard bound; a run past it is killed and fails the test.
fn run_bounded(sb: &Sandbox, label: &str, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = Command::new(bin());
    cmd.arg("--spool")
        .arg(sb.path().join("spool"))
        .arg("--asterisk-conf")
        .arg(sb.path().join("etc/asterisk.conf"))
        .arg("--voicemail-conf")
        .arg(sb.path().join("etc/voicemail.conf"))
        .arg("--no-ami")
        .args(args)
        .env_remove("VMTOOL_SPOOL")
        .env("TZ", "UTC")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run vmtool");
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    // Bounded buffers: an endless read must not become an endless output here.
    let read = |r: &mut dyn Read| {
        let mut v = Vec::new();
        let _ = r.take(1 << 20).read_to_end(&mut v);
        v
    };
    let t_out = std::thread::spawn(move || read(&mut so));
    let t_err = std::thread::spawn(move || read(&mut se));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > BOUND {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{label}: `vmtool {}` still running after {} s: killed (hung)",
                args.join(" "),
                BOUND.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut bytes = t_out.join().unwrap();
    bytes.extend(t_err.join().unwrap());
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let code = status.code().unwrap_or(-1);
    assert_ne!(
        code,
        101,
        "{label}: `vmtool {}` panicked:\n{text}",
        args.join(" ")
    );
    assert!(!text.contains("panicked"), "{label}: panic:\n{text}");
    // Terminal escapes never reach the terminal raw.
    assert!(
        !text.contains(['\x1b', '\x07', '\u{9b}']),
        "{label}: `vmtool {}` printed a raw control character:\n{text:?}",
        args.join(" ")
    );
    Out { code, text }
}

fn copy_msg(inbox: &Path, from: &str, to: &str, exts: &[&str]) {
    for e in exts {
        let dst = inbox.join(format!("{to}.{e}"));
        fs::copy(inbox.join(format!("{from}.{e}")), &dst).unwrap();
        fs::set_permissions(&dst, fs::Permissions::from_mode(0o644)).unwrap();
    }
}

fn mkfifo(p: &Path) {
    let st = Command::new("mkfifo").arg(p).status().unwrap();
    assert!(st.success(), "mkfifo {}", p.display());
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // The owner of a file this process just made is its effective uid.
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join("me"), "").unwrap();
    fs::metadata(d.path().join("me")).unwrap().uid() == 0
}

/// One planted object: its files in INBOX (kept in place by every command) and
/// the text that names it in the output.
struct Plant {
    name: &'static str,
    plant: fn(&Sandbox, &Path) -> Vec<String>,
    shown: &'static str,
    /// Commands that meet the planted file and so must name it.
    named: &'static [&'static str],
}

/// Every command that reads message files.
const ALL: &[&str] = &["ls", "show", "check", "convert", "purge", "archive", "play"];

const ESC_NAME: &str = "msg0005.txt\n\x1b[2J\x1b]0;owned\x07";

fn plants() -> Vec<Plant> {
    vec![
        Plant {
            name: "FIFO .txt",
            plant: |_, i| {
                mkfifo(&i.join("msg0005.txt"));
                vec!["msg0005.txt".into()]
            },
            shown: "msg0005.txt",
            named: ALL,
        },
        Plant {
            name: ".txt + FIFO .wav",
            plant: |_, i| {
                copy_msg(i, "msg0001", "msg0005", &["txt"]);
                mkfifo(&i.join("msg0005.wav"));
                vec!["msg0005.wav".into()]
            },
            shown: "msg0005.wav",
            named: ALL,
        },
        Plant {
            name: "socket .txt",
            plant: |_, i| {
                let l = std::os::unix::net::UnixListener::bind(i.join("msg0005.txt")).unwrap();
                drop(l); // the socket file stays
                vec!["msg0005.txt".into()]
            },
            shown: "msg0005.txt",
            named: ALL,
        },
        Plant {
            name: ".txt -> /dev/zero",
            plant: |_, i| {
                std::os::unix::fs::symlink("/dev/zero", i.join("msg0005.txt")).unwrap();
                copy_msg(i, "msg0001", "msg0005", &["WAV"]);
                vec!["msg0005.txt".into()]
            },
            shown: "msg0005.txt",
            named: ALL,
        },
        Plant {
            name: ".txt -> /dev/urandom",
            plant: |_, i| {
                std::os::unix::fs::symlink("/dev/urandom", i.join("msg0005.txt")).unwrap();
                vec!["msg0005.txt".into()]
            },
            shown: "msg0005.txt",
            named: ALL,
        },
        Plant {
            name: ".wav -> /dev/urandom",
            plant: |_, i| {
                copy_msg(i, "msg0001", "msg0005", &["txt"]);
                std::os::unix::fs::symlink("/dev/urandom", i.join("msg0005.wav")).unwrap();
                vec!["msg0005.wav".into()]
            },
            shown: "msg0005.wav",
            named: ALL,
        },
        Plant {
            name: "directory msg0005.txt",
            plant: |_, i| {
                fs::create_dir(i.join("msg0005.txt")).unwrap();
                fs::write(i.join("msg0005.txt/inside"), "x").unwrap();
                copy_msg(i, "msg0001", "msg0005", &["wav"]);
                vec!["msg0005.txt".into()]
            },
            shown: "msg0005.txt",
            // Not a message file (a directory): reported as foreign.
            named: &["show", "check"],
        },
        Plant {
            name: "links out of the spool",
            plant: |sb, i| {
                // A valid message outside: following the link would list it.
                let out = sb.path().join("elsewhere");
                fs::create_dir_all(&out).unwrap();
                // Its own msg_id: a reader that follows the link sees a new message.
                let txt = fs::read_to_string(i.join("msg0001.txt")).unwrap();
                fs::write(out.join("secret.txt"), txt.replace("msg_id=", "msg_id=7")).unwrap();
                fs::copy(i.join("msg0001.WAV"), out.join("secret.WAV")).unwrap();
                std::os::unix::fs::symlink(out.join("secret.txt"), i.join("msg0005.txt")).unwrap();
                std::os::unix::fs::symlink(out.join("secret.WAV"), i.join("msg0005.WAV")).unwrap();
                vec!["msg0005.txt".into(), "msg0005.WAV".into()]
            },
            shown: "msg0005.txt",
            named: ALL,
        },
        Plant {
            name: "symlink loop",
            plant: |_, i| {
                std::os::unix::fs::symlink("msg0005.txt", i.join("msg0005.txt")).unwrap();
                vec!["msg0005.txt".into()]
            },
            shown: "msg0005.txt",
            named: ALL,
        },
        Plant {
            name: "2 GiB sparse .wav",
            plant: |_, i| {
                copy_msg(i, "msg0000", "msg0005", &["txt", "wav"]);
                let f = fs::OpenOptions::new()
                    .write(true)
                    .open(i.join("msg0005.wav"))
                    .unwrap();
                f.set_len(2 << 30).unwrap();
                vec!["msg0005.wav".into()]
            },
            shown: "msg0005.wav",
            // Listings read no audio.
            named: &["show", "check", "convert", "archive", "play"],
        },
        Plant {
            name: "10 MB .txt",
            plant: |_, i| {
                let mut txt = fs::read(i.join("msg0001.txt")).unwrap();
                txt.extend(std::iter::repeat_n(b';', 10 << 20));
                fs::write(i.join("msg0005.txt"), txt).unwrap();
                copy_msg(i, "msg0001", "msg0005", &["WAV"]);
                vec!["msg0005.txt".into()]
            },
            shown: "msg0005.txt",
            named: ALL,
        },
        Plant {
            name: "unreadable .txt",
            plant: |_, i| {
                copy_msg(i, "msg0001", "msg0005", &["txt", "WAV"]);
                fs::set_permissions(i.join("msg0005.txt"), fs::Permissions::from_mode(0o000))
                    .unwrap();
                vec!["msg0005.txt".into()]
            },
            shown: "msg0005.txt",
            // Root reads a mode-000 file: then it is an ordinary message.
            named: if is_root() { &[] } else { ALL },
        },
        Plant {
            name: "FIFO .lock",
            plant: |_, i| {
                mkfifo(&i.join(".lock"));
                vec![".lock".into()]
            },
            shown: "INBOX/.lock",
            // Only what locks the folder meets it.
            named: &["check", "archive"],
        },
        Plant {
            name: "name with newline and terminal escapes (a FIFO)",
            plant: |_, i| {
                mkfifo(&i.join(ESC_NAME));
                vec![ESC_NAME.into()]
            },
            // How the escapes are shown.
            shown: "\\u{1b}[2J",
            named: &["show", "check"],
        },
    ]
}

/// Every file and directory of the sandbox outside the spool and `out/`.
fn outside_state(sb: &Sandbox) -> Vec<String> {
    tree_state(sb.path())
        .into_iter()
        .filter(|l| !l.starts_with("spool") && !l.starts_with("out/") && !l.starts_with("out "))
        .collect()
}

fn lstat_kind(p: &Path) -> String {
    match fs::symlink_metadata(p) {
        Ok(m) if m.file_type().is_fifo() => "fifo".into(),
        Ok(m) if m.file_type().is_socket() => "socket".into(),
        Ok(m) => format!("{:?} {}", m.file_type(), m.len()),
        Err(e) => format!("missing: {e}"),
    }
}

#[test]
fn every_reader_survives_every_planted_object() {
    let root_note = is_root();
    if root_note {
        eprintln!(
            "note: running as root, which reads mode-000 files: the unreadable case only checks bounds, no panic and the other messages"
        );
    }
    let started = Instant::now();
    for p in plants() {
        let sb = Sandbox::team2();
        let inbox = sb.voicemail().join(INBOX);
        let planted = (p.plant)(&sb, &inbox);
        let kinds: Vec<String> = planted.iter().map(|n| lstat_kind(&inbox.join(n))).collect();
        // What commands may write (archive, converted files) goes under out/.
        fs::create_dir(sb.path().join("out")).unwrap();
        let arch = sb.path().join("out/arch");
        let conv = sb.path().join("out/conv");
        let alsa = sb.path().join("asound-null.conf");
        fs::write(&alsa, "pcm.!default { type null }\n").unwrap();
        let alsa = alsa.to_str().unwrap().to_string();
        let before = outside_state(&sb);
        let conv_s = conv.to_str().unwrap().to_string();
        let arch_s = arch.to_str().unwrap().to_string();
        let cmds: Vec<Vec<&str>> = vec![
            vec!["ls", "compta/2202"],
            vec!["ls"],
            vec!["show", "compta/2202"],
            vec!["boxes"],
            vec!["count", "2202@compta"],
            vec!["check"],
            vec!["convert", "--out-dir", &conv_s, "compta/2202"],
            vec![
                "purge",
                "--dry-run",
                "--older-than",
                "1d",
                "--include-new",
                "compta/2202",
            ],
            vec!["play", "compta/2202/INBOX/5"],
            vec!["check", "--fix"],
            vec![
                "archive",
                "--older-than",
                "1d",
                "--include-new",
                "--to",
                &arch_s,
                "compta/2202",
            ],
        ];
        for args in &cmds {
            let label = format!("[{}] {}", p.name, args.join(" "));
            let env: &[(&str, &str)] = if args[0] == "play" {
                &[("ALSA_CONFIG_PATH", &alsa)]
            } else {
                &[]
            };
            let out = run_bounded(&sb, &label, args, env);
            let no_alsa = args[0] == "play" && out.text.contains("no audio output device");
            if p.named.contains(&args[0]) && !no_alsa {
                assert!(
                    out.text.contains(p.shown),
                    "{label}: the planted object ({}) is not named:\n{}",
                    p.shown,
                    out.text
                );
            }
            if args[0] == "ls" {
                for num in ["0000", "0001"] {
                    assert!(
                        out.text.lines().any(|l| l.starts_with("2202@compta")
                            && l.contains(&format!("INBOX   {num}"))),
                        "{label}: INBOX/{num} is not listed:\n{}",
                        out.text
                    );
                }
                // Never followed: the message behind a link out of the spool is not listed.
                assert!(
                    !p.named.contains(&"ls")
                        || !out.text.lines().any(|l| l.contains("INBOX   0005")),
                    "{label}: the planted msg0005 is listed as a message:\n{}",
                    out.text
                );
            }
            // convert keeps converting the audio of a message whose .txt it
            // cannot parse (a warning), as for any damaged .txt.
            let bad_item = ["ls", "archive"].contains(&args[0])
                || (args[0] == "convert" && p.name != "10 MB .txt");
            if p.named.contains(&args[0]) && bad_item {
                assert_eq!(
                    out.code, 1,
                    "{label}: a bad item means exit 1:\n{}",
                    out.text
                );
            }
            assert_eq!(
                outside_state(&sb),
                before,
                "{label}: something was written outside the spool and the archive"
            );
            // check --fix quarantines nothing it did not create. (As root,
            // the unreadable message is an ordinary one: play marks it heard.)
            if p.named.is_empty() {
                continue;
            }
            let now: Vec<String> = planted.iter().map(|n| lstat_kind(&inbox.join(n))).collect();
            assert_eq!(
                now, kinds,
                "{label}: the planted object was moved or changed"
            );
        }
        // The archive took the two real INBOX messages and left no half entry.
        let manifest = fs::read_to_string(arch.join("manifest.jsonl")).unwrap_or_default();
        let entries: Vec<serde_json::Value> = manifest
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let inbox_nums: Vec<&str> = entries
            .iter()
            .filter(|e| e["folder"] == "INBOX")
            .filter_map(|e| e["number"].as_str())
            .collect();
        let mut sorted = inbox_nums.clone();
        sorted.sort();
        if p.name == "FIFO .lock" {
            // Copied into the archive maybe, but nothing leaves a folder that cannot be locked.
            for m in ["msg0000.txt", "msg0001.txt"] {
                assert!(
                    inbox.join(m).is_file(),
                    "[{}] {m} left the spool unlocked",
                    p.name
                );
            }
        } else if !(root_note && p.name == "unreadable .txt") {
            assert_eq!(
                sorted,
                ["0000", "0001"],
                "[{}] archive: the other messages, and only them",
                p.name
            );
        }
        let partial: Vec<_> = walkdir::WalkDir::new(&arch)
            .into_iter()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".partial"))
            .map(|e| e.path().display().to_string())
            .collect();
        assert!(partial.is_empty(), "[{}] archive left {partial:?}", p.name);
        for e in walkdir::WalkDir::new(&arch).into_iter().flatten() {
            assert!(
                e.file_type().is_file() || e.file_type().is_dir(),
                "[{}] archive holds a {:?}: {}",
                p.name,
                e.file_type(),
                e.path().display()
            );
        }
    }
    eprintln!(
        "hostile spool: {} planted objects x 11 commands in {:.1} s",
        plants().len(),
        started.elapsed().as_secs_f64()
    );
}

/// Asterisk's deposit of a copy of INBOX/msg0000 at highest+1, as in tests/watch.rs.
fn deposit(inbox: &Path) -> u16 {
    let tmp = inbox.parent().unwrap().join("tmp");
    fs::create_dir_all(&tmp).unwrap();
    let txt = fs::read_to_string(inbox.join("msg0000.txt"))
        .unwrap()
        .replace("msg_id=", "msg_id=9");
    fs::write(tmp.join("Zz9"), txt).unwrap();
    fs::copy(inbox.join("msg0000.wav"), tmp.join("Zz9.wav")).unwrap();
    let n = vmtool::scan::last_message_index(inbox)
        .unwrap()
        .map_or(0, |l| l + 1);
    fs::rename(tmp.join("Zz9.wav"), inbox.join(format!("msg{n:04}.wav"))).unwrap();
    fs::rename(tmp.join("Zz9"), inbox.join(format!("msg{n:04}.txt"))).unwrap();
    n
}

#[test]
fn watch_skips_planted_objects_and_reports_the_next_message() {
    use std::io::BufRead;
    use std::sync::mpsc::{channel, Receiver};
    fn lines_of(r: impl Read + Send + 'static) -> Receiver<String> {
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(r).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        rx
    }
    for p in plants() {
        let sb = Sandbox::team2();
        let inbox = sb.voicemail().join(INBOX);
        let mut child = Command::new(bin())
            .arg("--spool")
            .arg(sb.path().join("spool"))
            .arg("--voicemail-conf")
            .arg(sb.path().join("etc/voicemail.conf"))
            .args(["-v", "--format", "json", "watch", "compta"])
            .env("TZ", "UTC")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let start = Instant::now();
        let errs = lines_of(child.stderr.take().unwrap());
        let outs = lines_of(child.stdout.take().unwrap());
        let mut err = String::new();
        let fail = |child: &mut std::process::Child, msg: String| -> ! {
            let _ = child.kill();
            let _ = child.wait();
            panic!("[{}] {msg}", p.name);
        };
        while !err.contains("watching") {
            match errs.recv_timeout(BOUND.saturating_sub(start.elapsed())) {
                Ok(l) => err.push_str(&(l + "\n")),
                Err(_) => fail(&mut child, format!("watch not ready:\n{err}")),
            }
        }
        (p.plant)(&sb, &inbox);
        std::thread::sleep(Duration::from_millis(200));
        let n = deposit(&inbox);
        let want = format!("\"number\":\"{n:04}\"");
        let mut events = Vec::new();
        while !events.iter().any(|e: &String| e.contains(&want)) {
            match outs.recv_timeout(BOUND.saturating_sub(start.elapsed())) {
                Ok(l) => events.push(l),
                Err(_) => fail(
                    &mut child,
                    format!(
                        "watch hung: no event for msg{n:04} in {} s: {events:?}",
                        BOUND.as_secs()
                    ),
                ),
            }
        }
        // Anything the planted object would cause has had time to show (a
        // .txt without its final newline is announced after 500 ms).
        std::thread::sleep(Duration::from_millis(800));
        let _ = child.kill();
        let _ = child.wait();
        events.extend(outs.try_iter());
        err.extend(errs.try_iter().map(|l| l + "\n"));
        let all = format!("{}\n{err}", events.join("\n"));
        assert!(!all.contains("panicked"), "[{}]:\n{all}", p.name);
        assert!(
            !all.contains(['\x1b', '\x07']),
            "[{}] raw escapes:\n{all:?}",
            p.name
        );
        for e in &events {
            let v: serde_json::Value = serde_json::from_str(e).unwrap();
            // Never announced: it is not a message (or, as root, the mode-000 one is).
            if !p.named.is_empty() {
                assert_ne!(
                    v["number"], "0005",
                    "[{}] announced the planted object: {e}",
                    p.name
                );
            }
        }
    }
}

/// The archive directory is as writable as the spool may be: a FIFO or a link
/// as its run lock or manifest is refused by name, at once.
#[test]
fn archive_refuses_planted_run_lock_and_manifest() {
    let sb = Sandbox::team2();
    let outside = sb.path().join("elsewhere.jsonl");
    fs::write(&outside, "").unwrap();
    for (name, plant) in [
        (".vmtool-archive.lock", "fifo"),
        ("manifest.jsonl", "fifo"),
        ("manifest.jsonl", "link"),
    ] {
        let arch = sb.path().join(format!("arch-{name}-{plant}"));
        fs::create_dir(&arch).unwrap();
        if plant == "fifo" {
            mkfifo(&arch.join(name));
        } else {
            std::os::unix::fs::symlink(&outside, arch.join(name)).unwrap();
        }
        let args = [
            "archive",
            "--older-than",
            "1d",
            "--to",
            arch.to_str().unwrap(),
            "compta/2202",
        ];
        let label = format!("[{plant} as {name}]");
        let out = run_bounded(&sb, &label, &args, &[]);
        assert_ne!(out.code, 0, "{label}: {}", out.text);
        assert!(out.text.contains(name), "{label}: not named:\n{}", out.text);
        assert_eq!(
            fs::read(&outside).unwrap(),
            b"",
            "{label}: wrote through the link"
        );
    }
    // Nothing was archived, so the messages are all still there.
    let inbox = sb.voicemail().join(INBOX);
    assert!(inbox.join("msg0000.txt").is_file() && inbox.join("msg0001.txt").is_file());
}

/// Configuration files that are FIFOs: every command ends at once and names the file.
#[test]
fn fifo_configuration_files_are_refused_by_name() {
    type Plant = fn(&Sandbox) -> &'static str;
    let cases: [(&str, Plant); 4] = [
        ("voicemail.conf", |sb| {
            let p = sb.path().join("etc/voicemail.conf");
            fs::remove_file(&p).unwrap();
            mkfifo(&p);
            "voicemail.conf"
        }),
        ("asterisk.conf", |sb| {
            let p = sb.path().join("etc/asterisk.conf");
            fs::remove_file(&p).unwrap();
            mkfifo(&p);
            "asterisk.conf"
        }),
        ("#include", |sb| {
            let p = sb.path().join("etc/voicemail.conf");
            let mut text = fs::read_to_string(&p).unwrap();
            text.push_str("\n#include \"extra-boxes.conf\"\n");
            fs::write(&p, text).unwrap();
            mkfifo(&sb.path().join("etc/extra-boxes.conf"));
            "extra-boxes.conf"
        }),
        ("users.conf", |sb| {
            mkfifo(&sb.path().join("etc/users.conf"));
            "users.conf"
        }),
    ];
    for (name, plant) in cases {
        let sb = Sandbox::team2();
        let shown = plant(&sb);
        let arch = sb.path().join("arch");
        let conv = sb.path().join("conv");
        let (arch_s, conv_s) = (arch.to_str().unwrap(), conv.to_str().unwrap());
        let cmds: Vec<Vec<&str>> = vec![
            vec!["ls"],
            vec!["boxes"],
            vec!["count", "2202@compta"],
            vec!["show", "compta/2202"],
            vec!["check"],
            vec!["convert", "--out-dir", conv_s, "compta/2202"],
            vec![
                "archive",
                "--older-than",
                "1d",
                "--to",
                arch_s,
                "compta/2202",
            ],
        ];
        for args in cmds {
            let label = format!("[FIFO as {name}] {}", args.join(" "));
            let out = run_bounded(&sb, &label, &args, &[]);
            // An #include Asterisk would skip (not a regular file) is named as missing.
            let fifo_said = name == "#include" || out.text.contains("FIFO");
            // Asterisk goes on without a users.conf it cannot read, and so does vmtool.
            let must = name != "users.conf";
            assert!(
                !must || (out.text.contains(shown) && fifo_said),
                "{label}: the FIFO {shown} is not named:\n{}",
                out.text
            );
        }
    }
}

/// `convert --force` replaces a regular file only: a FIFO (or, run as
/// root, a device) where an output file goes stays what it is.
#[test]
fn convert_force_never_replaces_a_special_file() {
    let sb = Sandbox::team2();
    let dir = sb.path().join("out");
    fs::create_dir(&dir).unwrap();
    let fifo = dir.join("compta-2202-INBOX-20261126-103353-Zoé_Lambert.wav");
    mkfifo(&fifo);
    let r = sb.run_env(
        &[("TZ", "UTC")],
        &[
            "convert",
            "compta/2202/INBOX/0",
            "-o",
            dir.to_str().unwrap(),
            "--force",
        ],
    );
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("not a regular file"), "{}", r.stderr);
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
}
