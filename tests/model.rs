//! Model-based test: random sequences of Asterisk deposits and vmtool changes
//! on a real temp spool, checked after every step against a simple model:
//! the same messages (by content) in the same folders at the numbers Asterisk
//! would allocate (highest+1, gaps kept), counts as Asterisk reports them.
//! A second property kills vmtool at a random step and checks that recovery
//! leaves the spool in the state before or after that step, never another.

use crate::util::*;
use proptest::prelude::*;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

const BOXES: [(&str, &str, u32); 3] = [
    ("compta", "2201", 3),
    ("compta", "2202", 100),
    ("finance", "2101", 100),
];
const FOLDERS: [&str; 5] = ["INBOX", "Old", "Urgent", "Work", "Family"];

/// (box index, folder) → number → SHA-256 of the .txt.
type State = BTreeMap<(usize, String), BTreeMap<u16, String>>;

#[derive(Debug, Clone)]
enum Op {
    Deposit { b: usize, urgent: bool },
    Read { b: usize, i: usize },
    Unread { b: usize, i: usize },
    Mv { b: usize, i: usize, to: usize },
    Rm { b: usize, i: usize },
    Cp { b: usize, i: usize, to_box: usize },
    Archive,
    Restore { b: usize },
    CheckFix,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..3usize, any::<bool>()).prop_map(|(b, urgent)| Op::Deposit { b, urgent }),
        2 => (0..3usize, 0..8usize).prop_map(|(b, i)| Op::Read { b, i }),
        1 => (0..3usize, 0..8usize).prop_map(|(b, i)| Op::Unread { b, i }),
        2 => (0..3usize, 0..8usize, 3..5usize).prop_map(|(b, i, to)| Op::Mv { b, i, to }),
        1 => (0..3usize, 0..8usize).prop_map(|(b, i)| Op::Rm { b, i }),
        1 => (0..3usize, 0..8usize, 0..3usize).prop_map(|(b, i, to_box)| Op::Cp { b, i, to_box }),
        1 => Just(Op::Archive),
        1 => (0..3usize).prop_map(|b| Op::Restore { b }),
        1 => Just(Op::CheckFix),
    ]
}

fn sha(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The spool as it is on disk (message numbers with a .txt, and its hash).
fn disk(vm: &Path) -> State {
    let mut s = State::new();
    for (b, (ctx, mbox, _)) in BOXES.iter().enumerate() {
        for f in FOLDERS {
            let dir = vm.join(ctx).join(mbox).join(f);
            let mut m = BTreeMap::new();
            for e in fs::read_dir(&dir).into_iter().flatten() {
                let n = e.unwrap().file_name().to_string_lossy().to_string();
                if let Some(num) = n.strip_prefix("msg").and_then(|r| r.strip_suffix(".txt")) {
                    m.insert(num.parse().unwrap(), sha(&fs::read(dir.join(&n)).unwrap()));
                }
            }
            if !m.is_empty() {
                s.insert((b, f.to_string()), m);
            }
        }
    }
    s
}

fn folder(s: &State, b: usize, f: &str) -> BTreeMap<u16, String> {
    s.get(&(b, f.to_string())).cloned().unwrap_or_default()
}

fn put(s: &mut State, b: usize, f: &str, num: u16, h: String) {
    s.entry((b, f.to_string())).or_default().insert(num, h);
}

fn take(s: &mut State, b: usize, f: &str, num: u16) -> String {
    let m = s.get_mut(&(b, f.to_string())).unwrap();
    let h = m.remove(&num).unwrap();
    if m.is_empty() {
        s.remove(&(b, f.to_string()));
    }
    h
}

fn next(s: &State, b: usize, f: &str) -> u16 {
    folder(s, b, f).keys().next_back().map_or(0, |n| n + 1)
}

/// The i-th message (mod count) among the given folders of a box.
fn pick(s: &State, b: usize, folders: &[&str], i: usize) -> Option<(String, u16)> {
    let all: Vec<(String, u16)> = folders
        .iter()
        .flat_map(|f| folder(s, b, f).into_keys().map(move |n| (f.to_string(), n)))
        .collect();
    (!all.is_empty()).then(|| all[i % all.len()].clone())
}

struct World {
    sb: Sandbox,
    counter: u32,
    /// Archived (box, content) in manifest order.
    archive: Vec<(usize, String)>,
}

impl World {
    fn new() -> World {
        World {
            sb: Sandbox::team2(),
            counter: 0,
            archive: Vec::new(),
        }
    }

    fn vm(&self) -> std::path::PathBuf {
        self.sb.voicemail()
    }

    /// Asterisk's deposit: tmp/, lock, highest+1, audio then .txt, unlock.
    fn deposit(&mut self, b: usize, urgent: bool, model: &mut State) {
        let (ctx, mbox, maxmsg) = BOXES[b];
        let f = if urgent { "Urgent" } else { "INBOX" };
        if folder(model, b, "INBOX").len() as u32 >= maxmsg {
            return; // "mailbox full": Asterisk records nothing
        }
        self.counter += 1;
        let template = team2_fixture().join("voicemail/compta/2201/INBOX/msg0000.txt");
        let txt = fs::read_to_string(template).unwrap().replace(
            "1795689167-00000005",
            &format!("1796000000-{:08x}", self.counter),
        );
        let dir = self.vm().join(ctx).join(mbox).join(f);
        fs::create_dir_all(&dir).unwrap();
        let n = vmtool::scan::last_message_index(&dir)
            .unwrap()
            .map_or(0, |l| l + 1);
        fs::write(dir.join(format!("msg{n:04}.wav")), b"RIFF").unwrap();
        fs::write(dir.join(format!("msg{n:04}.txt")), &txt).unwrap();
        put(model, b, f, n, sha(txt.as_bytes()));
    }

    fn run(&self, kill: Option<&str>, args: &[String]) -> i32 {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vmtool"));
        cmd.arg("--spool")
            .arg(self.sb.path().join("spool"))
            .arg("--voicemail-conf")
            .arg(self.sb.path().join("etc/voicemail.conf"))
            .args(["--no-ami", "--lockmode", "flock"])
            .args(args)
            .env("VMTOOL_NOW", "1900000000")
            .env_remove("VMTOOL_TEST_KILL_AT");
        if let Some(k) = kill {
            cmd.env("VMTOOL_TEST_KILL_AT", k);
        }
        cmd.output().unwrap().status.code().unwrap_or(-9)
    }

    /// Applies one op to the spool and to a copy of the model; returns the
    /// model after it (what a successful run leaves).
    fn apply(&mut self, op: &Op, model: &State, kill: Option<&str>) -> State {
        let mut m = model.clone();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let at = |b: usize, f: &str, n: u16| format!("{}/{}/{f}/{n}", BOXES[b].0, BOXES[b].1);
        match op.clone() {
            Op::Deposit { b, urgent } => self.deposit(b, urgent, &mut m),
            Op::Read { b, i } | Op::Unread { b, i } | Op::Mv { b, i, .. } => {
                let (from, to): (&[&str], &str) = match op {
                    Op::Read { .. } => (&["INBOX", "Urgent"], "Old"),
                    Op::Unread { .. } => (&["Old"], "INBOX"),
                    Op::Mv { to, .. } => (&FOLDERS[..3], FOLDERS[*to]),
                    _ => unreachable!(),
                };
                if let Some((f, n)) = pick(&m, b, from, i) {
                    let args = match op {
                        Op::Read { .. } => s(&["read", &at(b, &f, n)]),
                        Op::Unread { .. } => s(&["unread", &at(b, &f, n)]),
                        _ => s(&["mv", &at(b, &f, n), to]),
                    };
                    self.run(kill, &args);
                    let dest = next(&m, b, to);
                    if u32::from(dest) < BOXES[b].2 {
                        let h = take(&mut m, b, &f, n);
                        put(&mut m, b, to, dest, h);
                    }
                }
            }
            Op::Rm { b, i } => {
                if let Some((f, n)) = pick(&m, b, &FOLDERS, i) {
                    self.run(kill, &s(&["rm", &at(b, &f, n)]));
                    take(&mut m, b, &f, n);
                }
            }
            Op::Cp { b, i, to_box } => {
                if let Some((f, n)) = pick(&m, b, &FOLDERS, i) {
                    let dest_box = format!("{}/{}", BOXES[to_box].0, BOXES[to_box].1);
                    self.run(kill, &s(&["cp", &at(b, &f, n), &dest_box]));
                    let dest = next(&m, to_box, "INBOX");
                    if u32::from(dest) < BOXES[to_box].2 {
                        let h = folder(&m, b, &f)[&n].clone();
                        put(&mut m, to_box, "INBOX", dest, h);
                    }
                }
            }
            Op::Archive => {
                let arch = self.sb.path().join("archive");
                self.run(
                    kill,
                    &s(&[
                        "archive",
                        "--older-than",
                        "0d",
                        "--folder",
                        "Work",
                        "--to",
                        arch.to_str().unwrap(),
                    ]),
                );
                // Spool order: boxes as the spool lists them (context, then box).
                let mut order: Vec<usize> = (0..BOXES.len()).collect();
                order.sort_by_key(|b| (BOXES[*b].0, BOXES[*b].1));
                for b in order {
                    for (_, h) in folder(&m, b, "Work") {
                        self.archive.push((b, h));
                    }
                    m.remove(&(b, "Work".to_string()));
                }
            }
            Op::Restore { b } => {
                if self.archive.iter().any(|(x, _)| *x == b) {
                    let arch = self.sb.path().join("archive");
                    let sel = format!("{}/{}/Work", BOXES[b].0, BOXES[b].1);
                    self.run(
                        kill,
                        &s(&["restore", "--from", arch.to_str().unwrap(), &sel]),
                    );
                    for (x, h) in self.archive.clone() {
                        let present = folder(&m, b, "Work").values().any(|v| *v == h);
                        if x == b && !present && (folder(&m, b, "Work").len() as u32) < BOXES[b].2 {
                            let dest = next(&m, b, "Work");
                            put(&mut m, b, "Work", dest, h);
                        }
                    }
                }
            }
            Op::CheckFix => {
                self.run(kill, &s(&["check", "--fix"]));
            }
        }
        m
    }
}

fn counts_agree(w: &World, model: &State) {
    for (b, (ctx, mbox, _)) in BOXES.iter().enumerate() {
        let r =
            w.sb.run(&["--format", "json", "count", &format!("{mbox}@{ctx}")])
                .ok();
        let j = &r.json_lines()[0];
        let n = |f: &str| folder(model, b, f).len() as u64;
        assert_eq!(
            (j["urgent"].as_u64(), j["new"].as_u64(), j["old"].as_u64()),
            (Some(n("Urgent")), Some(n("INBOX")), Some(n("Old")))
        );
    }
}

fn model_cases() -> u32 {
    std::env::var("VMTOOL_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12)
}

proptest! {
    // VMTOOL_MODEL_CASES runs more cases (a longer hunt than CI's).
    #![proptest_config(ProptestConfig { cases: model_cases(), max_shrink_iters: 50, ..ProptestConfig::default() })]

    #[test]
    fn vmtool_matches_the_model(ops in proptest::collection::vec(op(), 1..18)) {
        let mut w = World::new();
        let mut model = disk(&w.vm());
        for op in &ops {
            model = w.apply(op, &model, None);
            prop_assert_eq!(&disk(&w.vm()), &model, "after {:?}", op);
        }
        counts_agree(&w, &model);
    }

    #[test]
    fn a_kill_at_any_step_is_recovered(
        ops in proptest::collection::vec(op(), 1..10),
        at in 0..10usize,
        step in 0..10usize,
    ) {
        const STEPS: [&str; 10] = [
            "staged-intent", "staged-file", "staged-all", "committing", "renamed-audio",
            "renamed-txt", "committed", "removed-src-txt", "removed-src", "archive-manifest",
        ];
        let mut w = World::new();
        let mut model = disk(&w.vm());
        for (k, op) in ops.iter().enumerate() {
            let kill = (k == at % ops.len()).then_some(STEPS[step]);
            let before = model.clone();
            let after = w.apply(op, &model, kill);
            if kill.is_some() {
                w.run(None, &["check".to_string(), "--fix".to_string()]);
                let now = disk(&w.vm());
                prop_assert!(now == before || now == after, "kill at {} during {:?}: neither before nor after", STEPS[step], op);
                if now == before && matches!(op, Op::Archive) {
                    // Nothing archived was removed; the archive may hold copies
                    // whose manifest lines exist: the model's archive follows the disk.
                    w.archive.retain(|_| false);
                    for e in vmtool::archive::read_manifest(&w.sb.path().join("archive")).unwrap_or_default() {
                        let b = BOXES.iter().position(|(c, m, _)| *c == e.row.context && *m == e.row.mailbox).unwrap();
                        w.archive.push((b, e.txt_sha256));
                    }
                }
                model = now;
            } else {
                model = after;
                prop_assert_eq!(&disk(&w.vm()), &model, "after {:?}", op);
            }
        }
    }
}
