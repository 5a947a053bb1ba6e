//! Test sandboxes: temp copies of real spools, and running the built binary.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `tests/fixtures/asterisk-spool-team2`, written by a real Asterisk.
pub fn team2_fixture() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/asterisk-spool-team2");
    assert!(
        p.join("voicemail").is_dir(),
        "the real-Asterisk fixture is missing at {} (it is part of the repository: is the checkout complete?)",
        p.display()
    );
    p
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(from).unwrap();
        let dest = to.join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// A temporary copy of a spool plus its configuration.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    /// The team-2 fixture, with the empty directories its README lists
    /// (git keeps no empty directories) re-created.
    pub fn team2() -> Sandbox {
        let fx = team2_fixture();
        let dir = tempfile::tempdir().unwrap();
        copy_tree(&fx.join("voicemail"), &dir.path().join("spool/voicemail"));
        copy_tree(&fx.join("etc"), &dir.path().join("etc"));
        let readme = std::fs::read_to_string(fx.join("README.md")).unwrap();
        let mut made = 0;
        for line in readme.lines() {
            let mut words = line.split_whitespace();
            if let (Some(path), Some("empty")) = (words.next(), words.next()) {
                if let Some(rel) = path.strip_prefix("voicemail/") {
                    std::fs::create_dir_all(dir.path().join("spool/voicemail").join(rel)).unwrap();
                    made += 1;
                }
            }
        }
        assert!(
            made >= 5,
            "expected the README to list the empty directories, found {made}"
        );
        Sandbox { dir }
    }

    /// The bundled example spool and its configuration.
    pub fn example() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        copy_tree(
            &repo_root().join("examples/spool"),
            &dir.path().join("spool"),
        );
        copy_tree(
            &repo_root().join("examples/etc/asterisk"),
            &dir.path().join("etc"),
        );
        Sandbox { dir }
    }

    /// The greetings a real Asterisk recorded (`tests/fixtures/asterisk-greetings`),
    /// with empty INBOX folders so the spool reads as one.
    pub fn greetings() -> Sandbox {
        let fx = repo_root().join("tests/fixtures/asterisk-greetings");
        let dir = tempfile::tempdir().unwrap();
        copy_tree(&fx.join("voicemail"), &dir.path().join("spool/voicemail"));
        copy_tree(&fx.join("etc"), &dir.path().join("etc"));
        for b in ["compta/1202", "finance/1101"] {
            std::fs::create_dir_all(dir.path().join("spool/voicemail").join(b).join("INBOX"))
                .unwrap();
        }
        std::fs::write(dir.path().join("etc/asterisk.conf"), "[options]\n").unwrap();
        Sandbox { dir }
    }

    /// An empty spool with a minimal configuration, for synthetic cases.
    pub fn empty() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("spool/voicemail")).unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/voicemail.conf"),
            "[general]\nformat=wav49|gsm|wav\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("etc/asterisk.conf"), "[options]\n").unwrap();
        Sandbox { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn voicemail(&self) -> PathBuf {
        self.path().join("spool/voicemail")
    }

    /// Runs vmtool on this sandbox's spool and configuration.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_env(&[], args)
    }

    /// Like `run`, with extra environment variables (e.g. VMTOOL_NOW).
    pub fn run_env(&self, env: &[(&str, &str)], args: &[&str]) -> Run {
        let mut cmd = self.command();
        cmd.args(args);
        run_cmd_env(cmd, env)
    }

    /// vmtool with this sandbox's spool and configuration, for a test that
    /// drives the process itself (binary output, a child that keeps running).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vmtool"));
        cmd.arg("--spool")
            .arg(self.path().join("spool"))
            .arg("--asterisk-conf")
            .arg(self.path().join("etc/asterisk.conf"))
            .arg("--voicemail-conf")
            .arg(self.path().join("etc/voicemail.conf"));
        cmd
    }
}

/// Runs vmtool with exactly these arguments.
pub fn vmtool(args: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vmtool"));
    cmd.args(args);
    run_cmd(cmd)
}

fn run_cmd(cmd: Command) -> Run {
    run_cmd_env(cmd, &[])
}

fn run_cmd_env(mut cmd: Command, env: &[(&str, &str)]) -> Run {
    cmd.env_remove("VMTOOL_SPOOL")
        .env_remove("VMTOOL_NOW")
        .env_remove("VMTOOL_AMI")
        .env_remove("NO_COLOR")
        .env("TZ", "UTC");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run vmtool");
    Run {
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code().unwrap_or(-1),
    }
}

pub struct Run {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

impl Run {
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "vmtool failed:\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect()
    }
}

/// Sections of `asterisk-answers.txt`: `################ <title>` then the text.
pub fn asterisk_answers() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(team2_fixture().join("asterisk-answers.txt")).unwrap();
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(title) = line.strip_prefix("################ ") {
            out.push((title.trim().to_string(), String::new()));
        } else if let Some((_, body)) = out.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    out
}

/// `Key: value` lines of an AMI answer (first occurrence).
pub fn ami_field<'a>(body: &'a str, key: &str) -> Option<&'a str> {
    body.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(": ")))
}

/// A listing of every file (relative path, size, mtime) and directory: what a
/// read-only command must leave exactly as it was.
pub fn tree_state(root: &Path) -> Vec<String> {
    let mut v = Vec::new();
    for e in walkdir::WalkDir::new(root).sort_by_file_name() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        let mtime = m
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        v.push(format!(
            "{} {} {} {}",
            e.path().strip_prefix(root).unwrap().display(),
            if m.is_dir() { "d" } else { "f" },
            if m.is_dir() { 0 } else { m.len() },
            mtime.as_nanos()
        ));
    }
    v
}
