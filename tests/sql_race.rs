//! The SQL store beside running Asterisks: a deposit on another server
//! interleaved statement by statement with vmtool moves, this server's spool
//! locks (never kept while waiting, never left unreported after a crash), and
//! a two-server soak test on real PostgreSQL and MariaDB.

use crate::sql::{run, servers, TestTable, PREFIX};
use crate::util::Sandbox;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use vmtool::lock::{FolderLock, LockOptions};
use vmtool::store::sql::db::{Db, DbResult, V};

/// One deposit as app_voicemail_odbc makes it (spec §10.1.1): three
/// autocommit statements, no row lock.
struct Deposit<'a> {
    table: &'a str,
    ctx: &'a str,
    mbox: &'a str,
    folder: &'a str,
    msg_id: String,
    audio: Vec<u8>,
}

impl Deposit<'_> {
    fn dir(&self) -> String {
        format!("{PREFIX}/{}/{}/{}", self.ctx, self.mbox, self.folder)
    }

    /// `SELECT msgnum … order by msgnum desc`: the number Asterisk will take.
    fn select(&self, db: &mut Db) -> DbResult<i32> {
        let rows = db.query(
            &format!(
                "SELECT msgnum FROM {} WHERE dir=? order by msgnum desc",
                self.table
            ),
            &[V::Text(self.dir())],
        )?;
        Ok(rows.first().and_then(|r| r[0].int()).map_or(0, |n| n + 1) as i32)
    }

    /// `DELETE` of the target: how many rows it destroyed.
    fn delete(&self, db: &mut Db, n: i32) -> DbResult<u64> {
        db.exec(
            &format!("DELETE FROM {} WHERE dir=? AND msgnum=?", self.table),
            &[V::Text(self.dir()), V::Int(n)],
        )
    }

    fn insert(&self, db: &mut Db, n: i32) -> DbResult<u64> {
        db.exec(
            &format!("INSERT INTO {} (dir, msgnum, recording, context, callerid, origtime, duration, mailboxuser, mailboxcontext, flag, msg_id) VALUES (?,?,?,?,?,?,?,?,?,?,?)", self.table),
            &[
                V::Text(self.dir()),
                V::Int(n),
                V::Bytes(self.audio.clone()),
                V::Text("from-pstn".into()),
                V::Text("\"Soak\" <0600000000>".into()),
                V::Int(1_795_689_233),
                V::Int(3),
                V::Text(self.mbox.into()),
                V::Text(self.ctx.into()),
                V::Text(if self.folder == "Urgent" { "Urgent" } else { "" }.into()),
                V::Text(self.msg_id.clone()),
            ],
        )
    }
}

fn msg_id_at(db: &mut Db, table: &str, dir: &str, n: i64) -> Option<String> {
    db.query(
        &format!("SELECT msg_id FROM {table} WHERE dir=? AND msgnum=?"),
        &[V::Text(dir.into()), V::Int(n as i32)],
    )
    .ok()?
    .first()
    .and_then(|r| r[0].text())
}

/// A vmtool move into a folder at each point of a deposit on another server
/// (before its SELECT, between SELECT and DELETE, between DELETE and INSERT,
/// after INSERT): both messages survive with distinct numbers. With
/// highest + 1 the DELETE destroyed the moved message, or the INSERT failed
/// on the primary key and the caller's message was lost.
#[test]
fn a_move_at_any_point_of_a_deposit_on_another_server_keeps_both_messages() {
    // (destination context/box/folder, source of the move, vmtool command)
    let cases: [(&str, &str, &str, &str, &[&str]); 3] = [
        (
            "compta",
            "2202",
            "INBOX",
            "finance/2101/Work/0",
            &["mv", "finance/2101/Work/0", "compta/2202"],
        ),
        (
            "compta",
            "2202",
            "Old",
            "compta/2202/INBOX/0",
            &["read", "compta/2202/INBOX/0"],
        ),
        (
            "finance",
            "2102",
            "Urgent",
            "finance/2102/INBOX/0",
            &["mv", "finance/2102/INBOX/0", "Urgent"],
        ),
    ];
    for s in servers() {
        for (ctx, mbox, folder, src, cmd) in cases {
            for at in 0..4 {
                let t = TestTable::new(&s, &[]);
                let sb = Sandbox::team2();
                t.load_fixture();
                let mut db = t.db();
                let (sctx, rest) = src.split_once('/').unwrap();
                let (sbox, rest) = rest.split_once('/').unwrap();
                let (sfolder, snum) = rest.split_once('/').unwrap();
                let sdir = format!("{PREFIX}/{sctx}/{sbox}/{sfolder}");
                let moved = msg_id_at(&mut db, &t.name, &sdir, snum.parse().unwrap()).unwrap();
                let d = Deposit {
                    table: &t.name,
                    ctx,
                    mbox,
                    folder,
                    msg_id: format!("race-{at}"),
                    audio: b"RIFF-deposit".to_vec(),
                };
                let what = format!("{:?} {folder} vmtool at step {at}", s.kind);
                let vm = |step: usize| {
                    if step == at {
                        run(&sb, &t, cmd).ok();
                    }
                };
                vm(0);
                let n = d.select(&mut db).unwrap();
                vm(1);
                let destroyed = d.delete(&mut db, n).unwrap();
                vm(2);
                let inserted = d.insert(&mut db, n);
                vm(3);
                assert_eq!(destroyed, 0, "{what}: the DELETE destroyed a message");
                assert!(
                    inserted.is_ok(),
                    "{what}: the caller's message was lost: {inserted:?}"
                );
                let dir = d.dir();
                let rows: Vec<_> = t.rows().into_iter().filter(|r| r.0 == dir).collect();
                let num_of = |id: &str| {
                    rows.iter()
                        .filter(|r| r.2.as_deref() == Some(id))
                        .map(|r| r.1)
                        .collect::<Vec<_>>()
                };
                let (a, b) = (num_of(&moved), num_of(&d.msg_id));
                assert_eq!(a.len(), 1, "{what}: moved message {moved}: {rows:?}");
                assert_eq!(b.len(), 1, "{what}: deposit: {rows:?}");
                assert_ne!(a, b, "{what}");
                assert_eq!(t.rows().len(), 14, "{what}");
            }
        }
    }
}

/// A move whose destination folder is busy never keeps the source folder
/// locked meanwhile: a deposit into the source (as Asterisk makes it, here
/// with a 1-s patience instead of 5) always gets its lock, and the move
/// completes once the destination is free.
#[test]
fn a_busy_destination_never_keeps_the_source_locked() {
    for s in servers() {
        let t = TestTable::new(&s, &[]);
        let sb = Sandbox::team2();
        t.load_fixture();
        let vm = sb.voicemail().join("compta/2202");
        let opts = |secs| LockOptions {
            mode: vmtool::config::LockMode::Lockfile,
            timeout: Duration::from_secs(secs),
        };
        let busy = FolderLock::acquire(&vm.join("Old"), &opts(1)).unwrap();
        let child = sb
            .command()
            .args(t.args())
            .args(["read", "compta/2202/INBOX/0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let start = Instant::now();
        let (mut got, mut missed) = (0, Vec::new());
        while start.elapsed() < Duration::from_millis(1500) {
            match FolderLock::acquire(&vm.join("INBOX"), &opts(1)) {
                Ok(l) => {
                    got += 1;
                    std::thread::sleep(Duration::from_millis(2));
                    l.release().unwrap();
                }
                Err(e) => missed.push(e.to_string()),
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(busy);
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            missed.is_empty(),
            "{:?}: INBOX stayed locked while vmtool waited for Old: {missed:?}",
            s.kind
        );
        assert!(got > 20, "{got}");
        assert!(out.status.success(), "{:?}: {stderr}", s.kind);
        let old: Vec<_> = t
            .rows()
            .into_iter()
            .filter(|r| r.0 == format!("{PREFIX}/compta/2202/Old"))
            .collect();
        assert_eq!(old.len(), 2, "{:?}: {old:?}", s.kind);
    }
}

/// A crashed Asterisk or a move killed while it holds this server's spool
/// locks leaves `.lock` files that make this server's Asterisk drop
/// deposits: `check` on the SQL store reports them (exit 5; it said "no
/// problem found"), `check --fix` breaks them, the table is as before and
/// the move works again.
#[test]
fn check_reports_and_fixes_the_spool_locks_a_killed_move_left() {
    for s in servers() {
        let t = TestTable::new(&s, &[]);
        let sb = Sandbox::team2();
        t.load_fixture();
        let check = |extra: &[&str]| {
            let mut a = vec!["check", "--stale-after", "1"];
            a.extend(extra);
            run(&sb, &t, &a)
        };
        assert_eq!(check(&[]).code, 0, "{}", check(&[]).stdout);
        // A crashed Asterisk's lock, and then a killed vmtool's.
        let work = sb.voicemail().join("finance/2101/Work");
        std::fs::write(work.join(".lock"), b"").unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        let r = check(&[]);
        assert_eq!(r.code, 5, "{:?}: {}{}", s.kind, r.stdout, r.stderr);
        assert!(r
            .stdout
            .contains(&format!("{}: lock left for", work.join(".lock").display())));
        let before = t.rows();
        let mut args = t.args();
        args.extend(["read".into(), "compta/2202/INBOX/0".into()]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = sb.run_env(&[("VMTOOL_TEST_KILL_AT", "sql-locked")], &refs);
        assert_ne!(r.code, 0, "the failpoint must kill vmtool: {}", r.stdout);
        let vm = sb.voicemail().join("compta/2202");
        for f in ["INBOX", "Old"] {
            assert!(vm.join(f).join(".lock").exists(), "{f}: no lock left");
        }
        assert_eq!(t.rows(), before, "{:?}: the killed move committed", s.kind);
        std::thread::sleep(Duration::from_millis(1100));
        let r = check(&[]);
        assert_eq!(r.code, 5, "{:?}: {}{}", s.kind, r.stdout, r.stderr);
        for lock in [
            vm.join("INBOX/.lock"),
            vm.join("Old/.lock"),
            work.join(".lock"),
        ] {
            assert!(
                r.stdout
                    .contains(&format!("{}: lock left for", lock.display())),
                "{}",
                r.stdout
            );
        }
        assert!(r.stdout.contains("drops every deposit"), "{}", r.stdout);
        let r = check(&["--fix"]);
        assert_eq!(r.code, 0, "{:?}: {}{}", s.kind, r.stdout, r.stderr);
        assert!(r.stdout.contains("— fixed"), "{}", r.stdout);
        for f in [vm.join("INBOX"), vm.join("Old"), work] {
            let left: Vec<_> = std::fs::read_dir(&f)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".lock"))
                .collect();
            assert!(left.is_empty(), "{}: {left:?}", f.display());
        }
        assert_eq!(check(&[]).code, 0);
        let out = run(&sb, &t, &["read", "compta/2202/INBOX/0"]).ok().stdout;
        assert!(out.contains("-> compta/2202/Old/"), "{out}");
    }
}

// ---------------------------------------------------------------------------------------
// Two servers, one table

/// Asterisk's `ast_lock_path_lockfile()` exactly (spec §6.2): helper
/// `.lock-%08lx`, `link()` spun with `sched_yield()` while `time(NULL)` has
/// moved less than 5 s, helper removed. `Ok(false)`: no helper could be
/// made, Asterisk goes on unlocked.
fn ast_lock(dir: &Path, rng: &mut ChaCha8Rng) -> Result<bool, ()> {
    let helper = dir.join(format!(".lock-{:08x}", rng.random::<u32>() & 0x7fff_ffff));
    let made = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o666)
        .open(&helper);
    if made.is_err() {
        return Ok(false);
    }
    let now = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let start = now();
    let lock = dir.join(".lock");
    let linked = loop {
        match std::fs::hard_link(&helper, &lock) {
            Ok(()) => break true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && now() - start < 5 => {
                std::thread::yield_now()
            }
            Err(_) => break false,
        }
    };
    let _ = std::fs::remove_file(&helper);
    if linked {
        Ok(true)
    } else {
        Err(())
    }
}

/// What the writers and workers saw.
#[derive(Default)]
struct Ledger {
    /// msg_id → (server, dir, msgnum) of each deposit that went in.
    deposits: HashMap<String, (usize, String, i64)>,
    /// "Voicemail will be lost": (server, folder, whose lock it was then).
    lock_drops: Vec<(usize, PathBuf, &'static str)>,
    /// Deposits whose INSERT failed: (server, dir, msgnum, msg_id of the row there).
    insert_failed: Vec<(usize, String, i64, Option<String>)>,
    /// DELETEs of a deposit that hit a row: (server, dir, msgnum).
    delete_hits: Vec<(usize, String, i64)>,
    cp_tries: usize,
    kills: usize,
    /// Locks a killed vmtool left, broken by the harness.
    reaped: usize,
    runs: usize,
}

const BOXES: [(&str, &str); 3] = [("compta", "2202"), ("finance", "2101"), ("finance", "2102")];
/// Copies go here only, so every other message exists exactly once.
const SINK: (&str, &str) = ("direction", "2301");

fn l_reaped(ledger: &Mutex<Ledger>, n: usize) {
    ledger.lock().unwrap().reaped += n;
}

/// What owner-aware locks will let `vmtool check --fix` do at once: break
/// the locks a killed vmtool left. vmtool's `.lock` keeps its helper linked
/// (2 links); one still there, same inode and mtime, 300 ms after the kill
/// is the dead one's (live holds are milliseconds). Broken like `break_stale`
/// (rename aside, check, unlink) with its helper; other helpers (a waiting
/// Asterisk's) are left alone, which the age rule with a short threshold
/// would not do.
fn reap_dead_locks(spool: &Path) -> usize {
    let held = |d: &Path| {
        std::fs::symlink_metadata(d.join(".lock"))
            .ok()
            .filter(|m| m.nlink() == 2)
            .map(|m| (m.ino(), m.mtime_nsec(), m.mtime()))
    };
    let dirs: Vec<PathBuf> = walkdir::WalkDir::new(spool)
        .min_depth(3)
        .max_depth(3)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_dir())
        .map(|e| e.into_path())
        .collect();
    let seen: Vec<_> = dirs.iter().filter_map(|d| Some((d, held(d)?))).collect();
    if seen.is_empty() {
        return 0;
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut n = 0;
    for (d, stamp) in seen {
        if held(d) != Some(stamp) {
            continue;
        }
        let aside = d.join(format!(".lock.stale-reaper-{}", std::process::id()));
        if std::fs::rename(d.join(".lock"), &aside).is_err() {
            continue;
        }
        let m = std::fs::symlink_metadata(&aside).unwrap();
        if (m.ino(), m.mtime_nsec(), m.mtime()) != stamp {
            let _ = std::fs::hard_link(&aside, d.join(".lock"));
            let _ = std::fs::remove_file(&aside);
            continue;
        }
        let _ = std::fs::remove_file(&aside);
        for e in std::fs::read_dir(d).unwrap().filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".lock-") && e.metadata().is_ok_and(|m| m.ino() == stamp.0) {
                let _ = std::fs::remove_file(e.path());
            }
        }
        n += 1;
    }
    n
}

/// Folders Asterisk deposits into in the soak (Old: `save_to_folder()`).
fn deposit_targets() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        ("compta", "2202", "INBOX"),
        ("compta", "2202", "Old"),
        ("finance", "2101", "INBOX"),
        ("finance", "2102", "INBOX"),
        ("finance", "2102", "Urgent"),
        (SINK.0, SINK.1, "INBOX"),
    ]
}

fn pick_num(db: &mut Db, table: &str, dir: &str, rng: &mut ChaCha8Rng) -> i64 {
    let nums: Vec<i64> = db
        .query(
            &format!("SELECT msgnum FROM {table} WHERE dir=?"),
            &[V::Text(dir.into())],
        )
        .map(|rows| rows.iter().filter_map(|r| r[0].int()).collect())
        .unwrap_or_default();
    if nums.is_empty() {
        rng.random_range(0..3)
    } else {
        nums[rng.random_range(0..nums.len())]
    }
}

fn p99(mut v: Vec<u64>) -> (usize, u64, u64) {
    if v.is_empty() {
        return (0, 0, 0);
    }
    v.sort_unstable();
    let i = (v.len() * 99).div_ceil(100).saturating_sub(1);
    (v.len(), v[i], v[v.len() - 1])
}

/// Two servers (a spool each, for the locks) share one table. Each runs a
/// writer issuing app_voicemail_odbc's deposit statements under its own
/// spool's folder lock (Asterisk's protocol, 5-s patience), two vmtool
/// workers (mv/read/unread/cp, some SIGKILLed at random, the locks a killed
/// one left broken at once as owner-aware locks will allow: `reap_dead_locks`)
/// and `vmtool check --fix` every 0.2 s.
/// Invariants: every message exactly once with its recording, no two rows
/// share a number, owners agree with `dir`, `count` equals SQL, no deposit
/// dropped for a lock; only two Asterisks racing each other are excused
/// (counted). `VMTOOL_SOAK_SECS` (default 8 per engine), `VMTOOL_SOAK_SEED`.
#[test]
fn two_servers_soak_on_postgresql() {
    soak_on(vmtool::store::sql::db::Kind::Postgres);
}

/// As `two_servers_soak_on_postgresql`, on MariaDB.
#[test]
fn two_servers_soak_on_mariadb() {
    soak_on(vmtool::store::sql::db::Kind::Mysql);
}

fn soak_on(kind: vmtool::store::sql::db::Kind) {
    let secs: u64 = std::env::var("VMTOOL_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let seed: u64 = std::env::var("VMTOOL_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(23);
    for s in servers().into_iter().filter(|s| s.kind == kind) {
        soak(&s, Duration::from_secs(secs), seed);
    }
}

/// dir, msgnum, msg_id, recording, mailboxuser, mailboxcontext.
type Row = (String, i64, Option<String>, Vec<u8>, String, String);

fn soak(s: &crate::sql::Server, length: Duration, seed: u64) {
    let t = Arc::new(TestTable::new(s, &[]));
    t.load_fixture();
    let servers: Vec<Arc<Sandbox>> = (0..2).map(|_| Arc::new(Sandbox::team2())).collect();
    for sb in &servers {
        // Room for a long run: the writers do not stop at maxmsg.
        let conf = sb.path().join("etc/voicemail.conf");
        let text = std::fs::read_to_string(&conf).unwrap();
        std::fs::write(&conf, text.replace("maxmsg = 100", "maxmsg = 9990")).unwrap();
        for (c, b) in BOXES.iter().chain([&SINK]) {
            for f in ["INBOX", "Old", "Work", "Urgent"] {
                std::fs::create_dir_all(sb.voicemail().join(c).join(b).join(f)).unwrap();
            }
        }
    }
    let mut db = t.db();
    let recordings = |db: &mut Db| -> Vec<Row> {
        db.query(
            &format!(
                "SELECT dir, msgnum, msg_id, recording, mailboxuser, mailboxcontext FROM {}",
                t.name
            ),
            &[],
        )
        .unwrap()
        .into_iter()
        .map(|r| {
            let mut r = r.into_iter();
            let mut next = || r.next().unwrap();
            let (dir, num, id) = (next().text().unwrap(), next().int().unwrap(), next().text());
            let rec = next().into_bytes().unwrap_or_default();
            (
                dir,
                num,
                id,
                rec,
                next().text().unwrap_or_default(),
                next().text().unwrap_or_default(),
            )
        })
        .collect()
    };
    let first = recordings(&mut db);
    let sink_prefix = format!("{PREFIX}/{}/{}/", SINK.0, SINK.1);
    // Messages that start in the sink stay there (no worker moves them).
    let sink_initial: BTreeSet<String> = first
        .iter()
        .filter(|r| r.0.starts_with(&sink_prefix))
        .filter_map(|r| r.2.clone())
        .collect();
    let mut original: HashMap<String, Vec<u8>> =
        first.into_iter().map(|r| (r.2.unwrap(), r.3)).collect();
    let initial: BTreeSet<String> = original.keys().cloned().collect();
    assert_eq!(initial.len(), 13);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    // Outside the sandboxes: kept for a look when the soak fails.
    let lock_log: Vec<PathBuf> = (0..servers.len())
        .map(|i| std::env::temp_dir().join(format!("{}-{i}.lock-hold", t.name)))
        .collect();
    let mut handles = Vec::new();
    // Writers: one Asterisk per server.
    for (i, sb) in servers.iter().enumerate() {
        let (t, sb, ledger, stop) = (t.clone(), sb.clone(), ledger.clone(), stop.clone());
        handles.push(std::thread::spawn(move || {
            let mut rng = ChaCha8Rng::seed_from_u64(seed * 100 + i as u64);
            let mut db = t.db();
            let targets = deposit_targets();
            let mut k = 0;
            let now_us = || {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_micros()
            };
            while !stop.load(Ordering::Relaxed) {
                let (ctx, mbox, folder) = targets[rng.random_range(0..targets.len())];
                k += 1;
                let msg_id = format!("soak-{i}-{k}");
                let mut audio = b"RIFF soak recording ".to_vec();
                audio.extend(msg_id.as_bytes());
                let d = Deposit {
                    table: &t.name,
                    ctx,
                    mbox,
                    folder,
                    msg_id: msg_id.clone(),
                    audio,
                };
                let spool_dir = sb.voicemail().join(ctx).join(mbox).join(folder);
                let since = now_us();
                let locked = match ast_lock(&spool_dir, &mut rng) {
                    Ok(l) => l,
                    Err(()) => {
                        let links = std::fs::symlink_metadata(spool_dir.join(".lock"))
                            .map_or(0, |m| m.nlink());
                        // vmtool keeps its helper linked while it holds a lock.
                        let whose = match links {
                            0 => "released just then",
                            2 => "vmtool's",
                            _ => "Asterisk-style",
                        };
                        eprintln!(
                            "soak: server {i} waited from {since} to {} us for {}, lock {whose}",
                            now_us(),
                            spool_dir.display()
                        );
                        ledger
                            .lock()
                            .unwrap()
                            .lock_drops
                            .push((i, spool_dir, whose));
                        continue;
                    }
                };
                let dir = d.dir();
                let n = d.select(&mut db).unwrap();
                if d.delete(&mut db, n).unwrap() > 0 {
                    ledger
                        .lock()
                        .unwrap()
                        .delete_hits
                        .push((i, dir.clone(), n.into()));
                }
                let inserted = d.insert(&mut db, n);
                if locked {
                    let _ = std::fs::remove_file(spool_dir.join(".lock"));
                }
                let mut l = ledger.lock().unwrap();
                match inserted {
                    Ok(_) => {
                        l.deposits.insert(msg_id, (i, dir, n.into()));
                    }
                    Err(_) => {
                        drop(l);
                        let there = msg_id_at(&mut db, &t.name, &dir, n.into());
                        l = ledger.lock().unwrap();
                        l.insert_failed.push((i, dir, n.into(), there));
                    }
                }
                drop(l);
                std::thread::sleep(Duration::from_millis(rng.random_range(40..120)));
            }
        }));
    }
    // vmtool workers: two per server.
    let worker_id = Arc::new(AtomicUsize::new(0));
    for (i, sb) in servers.iter().enumerate() {
        for _ in 0..2 {
            let (t, sb, ledger, stop) = (t.clone(), sb.clone(), ledger.clone(), stop.clone());
            let w = worker_id.fetch_add(1, Ordering::SeqCst);
            let log = lock_log[i].clone();
            handles.push(std::thread::spawn(move || {
                let mut rng = ChaCha8Rng::seed_from_u64(seed * 1000 + 7 * w as u64);
                let mut db = t.db();
                while !stop.load(Ordering::Relaxed) {
                    let (c, b) = BOXES[rng.random_range(0..BOXES.len())];
                    let (oc, ob) = BOXES[rng.random_range(0..BOXES.len())];
                    let op = rng.random_range(0..7);
                    let from = ["INBOX", "Old", "INBOX", "Work", "Old", "Urgent", "Old"][op];
                    let dir = format!("{PREFIX}/{c}/{b}/{from}");
                    let n = pick_num(&mut db, &t.name, &dir, &mut rng);
                    let src = format!("{c}/{b}/{from}/{n}");
                    let other = format!("{oc}/{ob}");
                    let sink = format!("{}/{}", SINK.0, SINK.1);
                    let args: Vec<&str> = match op {
                        0 => vec!["read", &src],
                        1 => vec!["unread", &src],
                        2 => vec!["mv", &src, "Work"],
                        3 => vec!["mv", &src, &other],
                        4 => vec!["mv", &src, "Urgent"],
                        5 => vec!["mv", &src, "INBOX"],
                        _ => vec!["cp", &src, &sink],
                    };
                    let mut child = sb
                        .command()
                        .args(t.args())
                        .args(&args)
                        .env("VMTOOL_TEST_LOCK_LOG", &log)
                        .stdout(Stdio::null())
                        .stderr(Stdio::piped())
                        .spawn()
                        .unwrap();
                    let kill = rng.random_bool(0.15);
                    if kill {
                        std::thread::sleep(Duration::from_millis(rng.random_range(0..40)));
                        let _ = child.kill(); // SIGKILL
                    }
                    let out = child.wait_with_output().unwrap();
                    if kill {
                        l_reaped(&ledger, reap_dead_locks(&sb.voicemail()));
                    }
                    let err = String::from_utf8_lossy(&out.stderr);
                    assert!(!err.contains("panicked"), "{err}");
                    let mut l = ledger.lock().unwrap();
                    l.runs += 1;
                    l.kills += usize::from(kill);
                    l.cp_tries += usize::from(op == 6);
                }
            }));
        }
    }
    // An operator's cron: this server's stale locks (none should stay 60 s).
    for sb in &servers {
        let (t, sb, stop) = (t.clone(), sb.clone(), stop.clone());
        handles.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let out = sb
                    .command()
                    .args(t.args())
                    .args(["check", "--fix"])
                    .output()
                    .unwrap();
                assert!(
                    matches!(out.status.code(), Some(0 | 5)),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                if !out.status.success() {
                    eprintln!(
                        "soak: {:?} check --fix: {}",
                        SystemTime::now(),
                        String::from_utf8_lossy(&out.stdout)
                    );
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }));
    }
    std::thread::sleep(length);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    let l = ledger.lock().unwrap();
    let what = format!(
        "{:?} soak ({} s, seed {seed}; lock holds in {lock_log:?})",
        s.kind,
        length.as_secs()
    );
    // No deposit dropped for a lock: the only other locker of a server's spool is vmtool.
    assert!(
        l.lock_drops.is_empty(),
        "{what}: deposits lost: {:?}",
        l.lock_drops
    );
    let rows = recordings(&mut db);
    let mut outside: BTreeMap<String, usize> = BTreeMap::new();
    let mut in_sink: BTreeMap<String, usize> = BTreeMap::new();
    let mut places = BTreeSet::new();
    for id in l.deposits.keys() {
        let mut audio = b"RIFF soak recording ".to_vec();
        audio.extend(id.as_bytes());
        original.insert(id.clone(), audio);
    }
    for (dir, num, id, rec, user, ctx) in &rows {
        assert!(
            places.insert((dir.clone(), *num)),
            "{what}: {dir} {num} twice"
        );
        let id = id.clone().unwrap_or_default();
        let want = original.get(&id);
        assert!(
            want == Some(rec),
            "{what}: {dir}/{num} ({id}): recording changed or invented"
        );
        let parts: Vec<&str> = dir.trim_start_matches(PREFIX).split('/').collect();
        assert_eq!(
            (parts[1], parts[2]),
            (ctx.as_str(), user.as_str()),
            "{what}: owners of {dir}"
        );
        if dir.starts_with(&sink_prefix) {
            *in_sink.entry(id).or_default() += 1;
        } else {
            *outside.entry(id).or_default() += 1;
        }
    }
    // Losses: only a deposit destroyed by the other server's deposit DELETE at
    // the place it went in is excused (two Asterisks racing each other).
    let mut excused_destroyed = 0;
    let mut unexcused = Vec::new();
    let sink_deposit = |id: &str| {
        sink_initial.contains(id)
            || l.deposits
                .get(id)
                .is_some_and(|p| p.1.starts_with(&sink_prefix))
    };
    for id in initial.iter().chain(l.deposits.keys()) {
        let n = if sink_deposit(id) {
            in_sink.get(id).copied().unwrap_or(0)
        } else {
            outside.get(id).copied().unwrap_or(0)
        };
        match n {
            1 => {}
            0 => match l.deposits.get(id) {
                Some((srv, dir, num))
                    if l.delete_hits
                        .iter()
                        .any(|(s2, d2, n2)| s2 != srv && d2 == dir && n2 == num) =>
                {
                    excused_destroyed += 1
                }
                _ => unexcused.push(format!(
                    "{id} lost (rows: {:?})",
                    rows.iter()
                        .filter(|r| r.2.as_deref() == Some(id.as_str()))
                        .map(|r| (&r.0, r.1))
                        .collect::<Vec<_>>()
                )),
            },
            n => unexcused.push(format!("{id} {n} times")),
        }
    }
    for id in in_sink.keys().filter(|id| !sink_deposit(id)) {
        if outside.get(id).copied().unwrap_or(0) == 0
            && !initial.contains(id)
            && !l.deposits.contains_key(id)
        {
            unexcused.push(format!("{id} invented in the sink"));
        }
    }
    let copies: usize = in_sink
        .iter()
        .filter(|(id, _)| !sink_deposit(id))
        .map(|(_, n)| n)
        .sum();
    assert!(
        copies <= l.cp_tries,
        "{what}: {copies} copies of {} tries",
        l.cp_tries
    );
    // A failed INSERT is excused only when the other server's deposit holds the number.
    let mut excused_inserts = 0;
    for (srv, dir, num, there) in &l.insert_failed {
        let by_other = there
            .as_ref()
            .and_then(|id| l.deposits.get(id))
            .is_some_and(|(s2, d2, n2)| s2 != srv && d2 == dir && n2 == num);
        if by_other {
            excused_inserts += 1;
        } else {
            unexcused.push(format!(
                "deposit into {dir} at {num} failed, row there: {there:?}"
            ));
        }
    }
    assert!(unexcused.is_empty(), "{what}: {unexcused:?}");
    // `count` is what SQL says.
    for (c, b) in BOXES {
        let mut cnt = BTreeMap::new();
        for (dir, ..) in &rows {
            *cnt.entry(dir.clone()).or_insert(0) += 1;
        }
        let get = |f: &str| {
            cnt.get(&format!("{PREFIX}/{c}/{b}/{f}"))
                .copied()
                .unwrap_or(0)
        };
        let want = format!(
            "urgent={} new={} old={}",
            get("Urgent"),
            get("INBOX"),
            get("Old")
        );
        let out = run(&servers[0], &t, &["count", &format!("{c}/{b}")])
            .ok()
            .stdout;
        assert!(out.contains(&want), "{what}: {out} vs {want}");
    }
    let holds: Vec<u64> = lock_log
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|s| {
            s.lines()
                .filter_map(|l| l.split(' ').next()?.parse().ok())
                .collect::<Vec<u64>>()
        })
        .collect();
    let (n, p99, max) = p99(holds);
    eprintln!(
        "{what}: {} deposits, {} vmtool runs ({} SIGKILLed, {} left locks), {} copies; spool lock held around {n} commits: p99 {:.1} ms, max {:.1} ms; excused Asterisk-vs-Asterisk: {excused_destroyed} destroyed, {excused_inserts} failed inserts; {} DELETE hits",
        l.deposits.len(),
        l.runs,
        l.kills,
        l.reaped,
        copies,
        p99 as f64 / 1000.0,
        max as f64 / 1000.0,
        l.delete_hits.len()
    );
    assert!(
        l.deposits.len() > 20 && l.runs > 10,
        "{what}: too little ran"
    );
    for p in &lock_log {
        let _ = std::fs::remove_file(p);
    }
}
