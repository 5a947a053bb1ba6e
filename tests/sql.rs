//! Asterisk's ODBC storage on real PostgreSQL and MariaDB servers: the table as
//! Asterisk's schema scripts make it, rows inserted with Asterisk's own
//! statements (spec §10.1.1), and the vmtool binary on top.
//!
//! Servers come from `VMTOOL_TEST_PG` / `VMTOOL_TEST_MYSQL` (URLs); without
//! them the local defaults are tried. Under `CI=true` an unreachable server
//! fails the test instead of skipping it.

use crate::util::{asterisk_answers, team2_fixture, Run, Sandbox};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use vmtool::store::sql::db::{Db, DbTarget, Kind, V};

pub(crate) const PREFIX: &str = "/var/spool/asterisk/voicemail";

pub(crate) struct Server {
    pub(crate) url: String,
    pub(crate) kind: Kind,
}

pub(crate) fn servers() -> Vec<Server> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let mut out = Vec::new();
    for (var, default) in [
        ("VMTOOL_TEST_PG", "postgres://postgres@127.0.0.1:5432/test"),
        ("VMTOOL_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test"),
    ] {
        let url = std::env::var(var).unwrap_or_else(|_| default.to_string());
        let target = DbTarget::parse_url(&url, var).unwrap();
        match Db::connect(&target) {
            Ok(_) => out.push(Server {
                url,
                kind: target.kind,
            }),
            Err(e) if ci => panic!("{var}: {e} (CI=true: the SQL tests need this server)"),
            Err(e) => eprintln!(
                "skipping the {kind} tests: {e} — start the server or set {var}=URL \
                 (default {default}); .ci/run installs and starts both",
                kind = if var.ends_with("PG") {
                    "PostgreSQL"
                } else {
                    "MariaDB"
                }
            ),
        }
    }
    out
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A table of its own for one test, dropped at the end.
pub(crate) struct TestTable {
    pub(crate) name: String,
    url: String,
}

impl TestTable {
    /// Exactly as the alembic scripts make it (PostgreSQL: the fixture's
    /// statements verbatim; MariaDB: the same with LONGBLOB); `extra` adds
    /// varchar columns for the `.txt` keys the table normally loses.
    pub(crate) fn new(s: &Server, extra: &[&str]) -> TestTable {
        let name = format!(
            "vmt_{}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let t = TestTable {
            name: name.clone(),
            url: s.url.clone(),
        };
        let mut db = t.db();
        let _ = db.batch(&format!("DROP TABLE IF EXISTS {name}"));
        match s.kind {
            Kind::Postgres => {
                let schema = std::fs::read_to_string(
                    team2_fixture().join("../asterisk-odbc/schema-postgresql.sql"),
                )
                .unwrap();
                let sql: String = schema
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("--"))
                    .collect::<Vec<_>>()
                    .join("\n")
                    .replace("voicemail_messages", &name);
                db.batch(&sql).unwrap();
            }
            Kind::Mysql => {
                db.batch(&format!(
                    "CREATE TABLE {name} (dir VARCHAR(255) NOT NULL, msgnum INTEGER NOT NULL, context VARCHAR(80), callerid VARCHAR(80), origtime INTEGER, duration INTEGER, recording LONGBLOB, flag VARCHAR(30), category VARCHAR(30), mailboxuser VARCHAR(30), mailboxcontext VARCHAR(30), msg_id VARCHAR(40), PRIMARY KEY (dir, msgnum)) DEFAULT CHARSET=utf8mb4"
                ))
                .unwrap();
            }
        }
        for c in extra {
            db.batch(&format!("ALTER TABLE {name} ADD COLUMN {c} VARCHAR(80)"))
                .unwrap();
        }
        t
    }

    pub(crate) fn db(&self) -> Db {
        Db::connect(&DbTarget::parse_url(&self.url, "test").unwrap()).unwrap()
    }

    pub(crate) fn args(&self) -> Vec<String> {
        vec![
            "--db".into(),
            self.url.clone(),
            "--db-table".into(),
            self.name.clone(),
            "--spool-prefix".into(),
            PREFIX.into(),
            "--no-ami".into(),
        ]
    }

    /// Deposits one message with the statements Asterisk runs (spec §10.1.1).
    pub(crate) fn deposit(
        &self,
        db: &mut Db,
        ctx: &str,
        mbox: &str,
        folder: &str,
        txt: &[u8],
        audio: &[u8],
    ) {
        let meta = vmtool::metadata::Metadata::parse(txt).unwrap();
        let dir = format!("{PREFIX}/{ctx}/{mbox}/{folder}");
        let rows = db
            .query(
                &format!(
                    "SELECT msgnum FROM {} WHERE dir=? order by msgnum desc",
                    self.name
                ),
                &[V::Text(dir.clone())],
            )
            .unwrap();
        let next = rows.first().and_then(|r| r[0].int()).map_or(0, |n| n + 1) as i32;
        db.exec(
            &format!("DELETE FROM {} WHERE dir=? AND msgnum=?", self.name),
            &[V::Text(dir.clone()), V::Int(next)],
        )
        .unwrap();
        let int = |k: &str| meta.get(k).unwrap().trim().parse::<i32>().unwrap();
        db.exec(
            &format!("INSERT INTO {} (dir, msgnum, recording, context, callerid, origtime, duration, mailboxuser, mailboxcontext, flag, msg_id) VALUES (?,?,?,?,?,?,?,?,?,?,?)", self.name),
            &[
                V::Text(dir),
                V::Int(next),
                V::Bytes(audio.to_vec()),
                V::Text(meta.get("context").unwrap().into()),
                V::Text(meta.get("callerid").unwrap().into()),
                V::Int(int("origtime")),
                V::Int(int("duration")),
                V::Text(mbox.into()),
                V::Text(ctx.into()),
                V::Text(meta.get("flag").unwrap_or("").into()),
                V::Text(meta.get("msg_id").unwrap().into()),
            ],
        )
        .unwrap();
    }

    /// The team-2 fixture's messages, first format (wav49) only, as rows.
    pub(crate) fn load_fixture(&self) -> usize {
        let mut db = self.db();
        let mut n = 0;
        for (ctx, mbox, folder, num) in fixture_messages() {
            let base = team2_fixture().join(format!("voicemail/{ctx}/{mbox}/{folder}/msg{num}"));
            let txt = std::fs::read(base.with_extension("txt")).unwrap();
            let audio = std::fs::read(base.with_extension("WAV")).unwrap();
            self.deposit(&mut db, &ctx, &mbox, &folder, &txt, &audio);
            n += 1;
        }
        n
    }

    pub(crate) fn rows(&self) -> Vec<(String, i64, Option<String>, Option<String>)> {
        let mut db = self.db();
        db.query(
            &format!(
                "SELECT dir, msgnum, msg_id, category FROM {} ORDER BY dir, msgnum",
                self.name
            ),
            &[],
        )
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r[0].text().unwrap(),
                r[1].int().unwrap(),
                r[2].text(),
                r[3].text(),
            )
        })
        .collect()
    }
}

impl Drop for TestTable {
    fn drop(&mut self) {
        if let Ok(mut db) = Db::connect(&DbTarget::parse_url(&self.url, "test").unwrap()) {
            let _ = db.batch(&format!("DROP TABLE IF EXISTS {}", self.name));
        }
    }
}

/// (context, box, folder, NNNN) of every message of the fixture, in order.
fn fixture_messages() -> Vec<(String, String, String, String)> {
    let root = team2_fixture().join("voicemail");
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(&root).sort_by_file_name() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(num) = name
            .strip_prefix("msg")
            .and_then(|n| n.strip_suffix(".txt"))
        {
            let rel: Vec<String> = e
                .path()
                .strip_prefix(&root)
                .unwrap()
                .iter()
                .map(|c| c.to_string_lossy().into_owned())
                .collect();
            out.push((
                rel[0].clone(),
                rel[1].clone(),
                rel[2].clone(),
                num.to_string(),
            ));
        }
    }
    out
}

/// Raises 2201's maxmsg from 3 to 6: a restore into an emptied box takes
/// 1, 3, 5 (highest + 2 each time).
fn room_for_gaps(sb: &Sandbox) {
    let conf = sb.path().join("etc/voicemail.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(text.contains("maxmsg=3"));
    std::fs::write(&conf, text.replace("maxmsg=3", "maxmsg=6")).unwrap();
}

pub(crate) fn run(sb: &Sandbox, t: &TestTable, args: &[&str]) -> Run {
    let mut all: Vec<String> = t.args();
    all.extend(args.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    sb.run(&refs)
}

#[test]
fn listing_counts_and_audio_agree_with_asterisk_and_the_files() {
    for s in servers() {
        let t = TestTable::new(&s, &[]);
        let sb = Sandbox::team2();
        assert_eq!(t.load_fixture(), 13);
        // MailboxCount as Asterisk answered it for the same messages on disk.
        let mut compared = 0;
        for (title, body) in asterisk_answers() {
            let Some(mb) = title.strip_prefix("AMI Action: MailboxCount  Mailbox: ") else {
                continue;
            };
            let field = |k: &str| crate::util::ami_field(&body, k);
            let (Some(u), Some(n), Some(o)) = (
                field("UrgMessages"),
                field("NewMessages"),
                field("OldMessages"),
            ) else {
                continue;
            };
            compared += 1;
            let out = run(&sb, &t, &["count", mb.trim()]).ok().stdout;
            let want = format!("urgent={u} new={n} old={o}");
            assert!(out.contains(&want), "{:?} {mb}: {out} vs {want}", s.kind);
        }
        assert!(compared >= 5, "{compared} MailboxCount answers");
        // The listing is the file spool's listing, row for row.
        let strip = |v: &mut serde_json::Value| {
            let o = v.as_object_mut().unwrap();
            o.remove("path");
            o.remove("formats");
        };
        let mut sql_rows = run(&sb, &t, &["ls", "--format", "json"]).ok().json_lines();
        let mut file_rows = sb.run(&["ls", "--format", "json"]).ok().json_lines();
        assert_eq!(sql_rows.len(), 13);
        sql_rows.iter_mut().for_each(strip);
        file_rows.iter_mut().for_each(strip);
        assert_eq!(sql_rows, file_rows, "{:?}", s.kind);
        let boxes = run(&sb, &t, &["boxes", "--format", "json"])
            .ok()
            .json_lines();
        let b2202 = boxes
            .iter()
            .find(|b| b["box"] == "2202" && b["context"] == "compta")
            .unwrap();
        assert_eq!(b2202["old"], 1, "{b2202}");
        // show: fields as Asterisk's retrieve writes them, audio measured from the blob.
        let show = run(
            &sb,
            &t,
            &["show", "--format", "json", "compta/2202/INBOX/0"],
        )
        .ok()
        .json_lines();
        assert_eq!(show[0]["fields"]["mailboxuser"], "2202");
        assert_eq!(show[0]["audio"][0]["format"], "wav49");
        assert!(show[0]["audio"][0]["seconds"].as_f64().unwrap() > 19.0);
        let explained = run(&sb, &t, &["show", "--explain", "compta/2202/INBOX/0"])
            .ok()
            .stdout;
        let dir_line = format!(
            "row: table {}, dir={PREFIX}/compta/2202/INBOX, msgnum=0",
            t.name
        );
        assert!(explained.contains(&dir_line), "{explained}");
        assert!(
            explained.contains("a column Asterisk matches on when it renumbers"),
            "{explained}"
        );
        assert!(explained.contains("s, from the row)"), "{explained}");
        // convert decodes the recording exactly as it decodes the .WAV file.
        let out = sb.path().join("sql.wav");
        let out2 = sb.path().join("file.wav");
        let a = sb
            .command()
            .args(t.args())
            .args(["convert", "compta/2202/INBOX/0", "--stdout"])
            .output()
            .unwrap();
        let b = sb
            .command()
            .args([
                "convert",
                "compta/2202/INBOX/0",
                "--from-format",
                "WAV",
                "--stdout",
            ])
            .output()
            .unwrap();
        std::fs::write(&out, &a.stdout).unwrap();
        std::fs::write(&out2, &b.stdout).unwrap();
        assert!(a.status.success() && b.status.success());
        assert!(a.stdout.len() > 300_000, "{}", a.stdout.len());
        assert_eq!(a.stdout, b.stdout, "{:?}", s.kind);
    }
}

#[test]
fn changes_keep_numbers_owners_and_category() {
    for s in servers() {
        let t = TestTable::new(&s, &[]);
        let sb = Sandbox::team2();
        t.load_fixture();
        let mut db = t.db();
        db.exec(
            &format!(
                "UPDATE {} SET category = 'facture' WHERE dir = ? AND msgnum = 0",
                t.name
            ),
            &[V::Text(format!("{PREFIX}/finance/2101/Work"))],
        )
        .unwrap();
        // highest + 2: highest + 1 is left to a deposit on another server.
        let out = run(&sb, &t, &["read", "compta/2202/INBOX/0"]).ok().stdout;
        assert!(out.contains("-> compta/2202/Old/msg0002"), "{out}");
        let out = run(&sb, &t, &["mv", "finance/2101/Work/0", "compta/2202"])
            .ok()
            .stdout;
        assert!(out.contains("-> compta/2202/INBOX/msg0003"), "{out}");
        let rows = t.rows();
        let moved = rows
            .iter()
            .find(|r| r.0 == format!("{PREFIX}/compta/2202/INBOX") && r.1 == 3)
            .unwrap();
        assert_eq!(moved.3.as_deref(), Some("facture"), "category kept");
        let owner = db
            .query(
                &format!(
                    "SELECT mailboxuser, mailboxcontext FROM {} WHERE dir = ? AND msgnum = 3",
                    t.name
                ),
                &[V::Text(format!("{PREFIX}/compta/2202/INBOX"))],
            )
            .unwrap();
        assert_eq!(owner[0][0].text().as_deref(), Some("2202"));
        assert_eq!(owner[0][1].text().as_deref(), Some("compta"));
        // cp keeps the source and the msg_id.
        let out = run(&sb, &t, &["cp", "compta/2202/Old/0", "finance/2102"])
            .ok()
            .stdout;
        assert!(out.contains("-> finance/2102/INBOX/msg0002"), "{out}");
        // Numbers are never reused or compacted: rm leaves a gap.
        run(&sb, &t, &["rm", "compta/2201/INBOX/1"]).ok();
        let nums: Vec<i64> = t
            .rows()
            .iter()
            .filter(|r| r.0 == format!("{PREFIX}/compta/2201/INBOX"))
            .map(|r| r.1)
            .collect();
        assert_eq!(nums, [0, 2]);
        run(&sb, &t, &["unread", "compta/2202/Old/2"]).ok();
        // 2201 has maxmsg=3: a copy that would take number 3 is refused, nothing changes.
        let before = t.rows();
        let r = run(&sb, &t, &["cp", "compta/2202/Old/0", "compta/2201"]);
        assert_ne!(r.code, 0);
        assert!(r.stderr.contains("maxmsg"), "{}", r.stderr);
        assert_eq!(t.rows(), before);
        // A message that is gone is reported, not invented.
        let r = run(&sb, &t, &["rm", "compta/2201/INBOX/1"]);
        assert_ne!(r.code, 0);
        let ids: Vec<_> = t.rows().into_iter().filter_map(|r| r.2).collect();
        assert_eq!(ids.len(), 13, "12 left after rm, plus one copy");
    }
}

#[test]
fn a_table_that_is_not_asterisks_is_refused_by_name() {
    for s in servers() {
        let t = TestTable::new(&s, &[]);
        let sb = Sandbox::team2();
        let mut args = t.args();
        args[3] = format!("{}_missing", t.name);
        let mut all = args.clone();
        all.push("ls".into());
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let r = sb.run(&refs);
        assert_eq!(r.code, 3, "{}", r.stderr);
        assert!(r.stderr.contains("does not exist"), "{}", r.stderr);
        t.db()
            .batch(&format!("ALTER TABLE {} DROP COLUMN msg_id", t.name))
            .unwrap();
        let r = run(&sb, &t, &["ls"]);
        assert_ne!(r.code, 0);
        assert!(r.stderr.contains("msg_id"), "{}", r.stderr);
    }
}

#[test]
fn passwords_never_show() {
    for s in servers().into_iter().filter(|s| s.kind == Kind::Mysql) {
        let sb = Sandbox::team2();
        let url = s.url.replace("root@", "root:Zq9-secret-Zq9@");
        let r = sb.run(&["--db", &url, "-v", "ls"]);
        assert_ne!(r.code, 0);
        assert!(!r.stderr.contains("Zq9-secret-Zq9"), "{}", r.stderr);
        assert!(r.stderr.contains("cannot connect"), "{}", r.stderr);
    }
}

#[test]
fn an_encrypted_connection_asked_for_is_never_made_in_plain_text() {
    for s in servers() {
        let sb = Sandbox::team2();
        let param = match s.kind {
            Kind::Postgres => "sslmode=require",
            Kind::Mysql => "ssl-mode=REQUIRED",
        };
        // The PostgreSQL server here accepts plain text: only vmtool can refuse.
        let r = sb.run(&["--db", &format!("{}?{param}", s.url), "ls"]);
        assert_eq!(r.code, 2, "{:?}: {}", s.kind, r.stderr);
        assert!(
            r.stderr.contains(param) && r.stderr.contains("SSH tunnel"),
            "{}",
            r.stderr
        );
        assert_eq!(r.stdout, "");
    }
}

#[test]
fn the_pbx_configuration_is_enough_to_connect() {
    for s in servers() {
        let t = TestTable::new(&s, &[]);
        let sb = Sandbox::team2();
        t.load_fixture();
        let target = DbTarget::parse_url(&s.url, "x").unwrap();
        let etc = sb.path().join("etc");
        let conf = std::fs::read_to_string(etc.join("voicemail.conf")).unwrap();
        let conf = conf.replacen(
            "\n[general]\n",
            &format!("\n[general]\nodbcstorage=asterisk\nodbctable={}\n", t.name),
            1,
        );
        std::fs::write(etc.join("voicemail.conf"), conf).unwrap();
        std::fs::write(
            etc.join("res_odbc.conf"),
            format!(
                "[asterisk]\nenabled => yes\ndsn => asterisk-connector\nusername => {}\npre-connect => yes\n",
                target.user.as_deref().unwrap_or("")
            ),
        )
        .unwrap();
        let driver = match s.kind {
            Kind::Postgres => "PostgreSQL Unicode",
            Kind::Mysql => "MariaDB Unicode",
        };
        std::fs::write(
            etc.join("odbc.ini"),
            format!(
                "[asterisk-connector]\nDriver = {driver}\nServername = {}\nServer = {}\nPort = {}\nDatabase = {}\n",
                target.host,
                target.host,
                target.port.unwrap_or(match s.kind { Kind::Postgres => 5432, Kind::Mysql => 3306 }),
                target.database.as_deref().unwrap_or("")
            ),
        )
        .unwrap();
        let out = sb
            .run(&[
                "--spool-prefix",
                PREFIX,
                "--odbc-ini",
                etc.join("odbc.ini").to_str().unwrap(),
                "count",
                "compta/2202",
            ])
            .ok()
            .stdout;
        assert!(out.contains("urgent=0 new=2 old=1"), "{out}");
    }
}

/// Every file under a tree, by relative path, with its bytes.
fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            (
                e.path().strip_prefix(root).unwrap().display().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn migrate_round_trip_is_byte_identical_where_the_table_can_hold_it() {
    for s in servers() {
        // With columns for the keys Asterisk's table lacks, nothing is lost.
        let t = TestTable::new(&s, &vmtool::store::sql::table::FILE_ONLY);
        let sb = Sandbox::team2();
        let vm = sb.voicemail();
        let before = tree(&vm);
        let counts = sb.run(&["boxes", "--format", "json"]).ok().stdout;
        // A file store sees them before; the dry run changes nothing.
        let dry = run(&sb, &t, &["migrate", "--to-sql", "--dry-run"])
            .ok()
            .stdout;
        assert!(dry.contains("total: 13 copied"), "{dry}");
        assert_eq!(tree(&vm), before);
        let r = run(&sb, &t, &["migrate", "--to-sql"]);
        assert_eq!(r.code, 2, "--yes is required");
        let out = run(&sb, &t, &["migrate", "--to-sql", "--yes"]).ok().stdout;
        assert!(
            out.contains("total: 13 copied, 0 already there, 13 removed"),
            "{out}"
        );
        assert!(
            tree(&vm).keys().all(|k| !k.contains("msg")),
            "{:?}",
            tree(&vm).keys()
        );
        assert_eq!(t.rows().len(), 13);
        let sql_counts = run(&sb, &t, &["boxes", "--format", "json"]).ok().stdout;
        let out = run(&sb, &t, &["migrate", "--to-files", "--yes"])
            .ok()
            .stdout;
        assert!(
            out.contains("total: 13 copied, 0 already there, 13 removed"),
            "{out}"
        );
        assert_eq!(t.rows().len(), 0);
        let after = tree(&vm);
        // .txt and the first format (.WAV) come back byte for byte; the other
        // formats were never in the table (Asterisk keeps only the first).
        let kept: BTreeMap<_, _> = before
            .iter()
            .filter(|(k, _)| k.ends_with(".txt") || k.ends_with(".WAV"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let back: BTreeMap<_, _> = after
            .iter()
            .filter(|(k, _)| k.contains("msg"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(
            kept.keys().collect::<Vec<_>>(),
            back.keys().collect::<Vec<_>>()
        );
        for (k, v) in &kept {
            assert!(back[k] == *v, "{:?}: {k} differs", s.kind);
        }
        let numbers = |j: &str| -> Vec<String> {
            j.lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    format!(
                        "{} {} {} {} {}",
                        v["context"], v["box"], v["new"], v["old"], v["urgent"]
                    )
                })
                .collect()
        };
        let files_again = sb.run(&["boxes", "--format", "json"]).ok().stdout;
        assert_eq!(numbers(&counts), numbers(&files_again));
        assert_eq!(numbers(&counts), numbers(&sql_counts));
    }
}

#[test]
fn migrate_resumes_after_a_crash_and_plain_tables_keep_every_column() {
    for s in servers() {
        let t = TestTable::new(&s, &[]);
        let sb = Sandbox::team2();
        let vm = sb.voicemail();
        let txt = vm.join("compta/2202/INBOX/msg0001.txt");
        let original = std::fs::read(&txt).unwrap();
        run(&sb, &t, &["migrate", "--to-sql", "--yes", "compta"]).ok();
        // A crash after the audio was removed leaves only the .txt behind.
        std::fs::write(&txt, &original).unwrap();
        let out = run(&sb, &t, &["migrate", "--to-sql", "--yes", "compta/2202"])
            .ok()
            .stdout;
        assert!(
            out.contains("0 copied, 1 already there, 1 removed"),
            "{out}"
        );
        assert!(!txt.exists());
        assert_eq!(t.rows().len(), 6);
        run(&sb, &t, &["migrate", "--to-files", "--yes", "compta"]).ok();
        // The table kept every column it has: values identical, file-only keys empty.
        let back = vmtool::metadata::Metadata::parse(&std::fs::read(&txt).unwrap()).unwrap();
        let orig = vmtool::metadata::Metadata::parse(&original).unwrap();
        // (origdate is rebuilt from origtime: Asterisk wrote it a moment earlier, it may differ by a second.)
        for k in [
            "context", "callerid", "origtime", "duration", "msg_id", "flag", "category",
        ] {
            assert_eq!(back.get(k), orig.get(k), "{:?} {k}", s.kind);
        }
        assert_eq!(back.get("exten"), Some(""));
    }
}

#[test]
fn two_servers_and_a_depositing_asterisk_never_lose_or_duplicate() {
    for s in servers() {
        let t = TestTable::new(&s, &[]);
        let sb = Sandbox::team2();
        t.load_fixture();
        let initial: BTreeSet<String> = t.rows().into_iter().filter_map(|r| r.2).collect();
        let fx = team2_fixture().join("voicemail/compta/2202/INBOX");
        let txt = std::fs::read_to_string(fx.join("msg0000.txt")).unwrap();
        let audio = std::fs::read(fx.join("msg0000.WAV")).unwrap();
        let base: Vec<String> = t.args();
        let spool = sb.path().join("spool");
        let conf = sb.path().join("etc/voicemail.conf");
        let worker = |seed: u64| {
            let base = base.clone();
            let spool = spool.clone();
            let conf = conf.clone();
            std::thread::spawn(move || {
                let mut deleted = Vec::new();
                let cmds: [&[&str]; 5] = [
                    &["read", "compta/2202/INBOX/0"],
                    &["unread", "compta/2202/Old/0"],
                    &["mv", "compta/2202/Old/1", "Work"],
                    &["mv", "compta/2202/Work/0", "INBOX"],
                    &["rm", "compta/2202/INBOX/1"],
                ];
                for i in 0..40u64 {
                    let c = cmds[((i * 7 + seed * 3) % 5) as usize];
                    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vmtool"))
                        .args(&base)
                        .args(["--spool", spool.to_str().unwrap()])
                        .args(["--voicemail-conf", conf.to_str().unwrap()])
                        .args(c)
                        .output()
                        .unwrap();
                    let so = String::from_utf8_lossy(&out.stdout).into_owned();
                    let se = String::from_utf8_lossy(&out.stderr).into_owned();
                    assert!(!se.contains("panicked"), "{se}");
                    if so.starts_with("deleted") {
                        deleted.push(so);
                    }
                }
                deleted.len()
            })
        };
        let a = worker(1);
        let b = worker(2);
        let mut db = t.db();
        let mut deposited = BTreeSet::new();
        let inbox = sb.voicemail().join("compta/2202/INBOX");
        for i in 0..40 {
            let id = format!("9000000{i:03}-dep");
            let body = txt.replace("1795689233-0000000a", &id);
            // Asterisk on this server holds the folder's lock while it deposits.
            let lock = vmtool::lock::FolderLock::acquire(
                &inbox,
                &vmtool::lock::LockOptions {
                    mode: vmtool::config::LockMode::Lockfile,
                    timeout: std::time::Duration::from_secs(10),
                },
            )
            .unwrap();
            t.deposit(&mut db, "compta", "2202", "INBOX", body.as_bytes(), &audio);
            lock.release().unwrap();
            deposited.insert(id);
            std::thread::sleep(std::time::Duration::from_millis(15));
        }
        let deleted = a.join().unwrap() + b.join().unwrap();
        let rows = t.rows();
        let ids: Vec<String> = rows.iter().filter_map(|r| r.2.clone()).collect();
        let unique: BTreeSet<&String> = ids.iter().collect();
        assert_eq!(
            unique.len(),
            ids.len(),
            "{:?}: a message exists twice",
            s.kind
        );
        assert_eq!(
            ids.len() + deleted,
            initial.len() + deposited.len(),
            "{:?}: messages lost or invented",
            s.kind
        );
        assert!(deleted > 0);
        // Every number in a folder is unique and within Asterisk's range.
        let mut seen = BTreeSet::new();
        for r in &rows {
            assert!(seen.insert((r.0.clone(), r.1)));
            assert!((0..9999).contains(&r.1));
        }
    }
}

#[test]
fn check_names_the_rows_asterisk_cannot_work_with() {
    for s in servers() {
        let t = TestTable::new(&s, &[]);
        let sb = Sandbox::team2();
        t.load_fixture();
        let clean = run(&sb, &t, &["check"]);
        assert_eq!(clean.code, 0, "{}{}", clean.stdout, clean.stderr);
        let mut db = t.db();
        let ins = format!(
            "INSERT INTO {} (dir, msgnum, recording, context, callerid, origtime, duration, mailboxuser, mailboxcontext, flag, msg_id) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            t.name
        );
        let row = |dir: &str, num: i32, rec: V, user: &str, id: &str| {
            vec![
                V::Text(dir.into()),
                V::Int(num),
                rec,
                V::Text("x".into()),
                V::Text("x".into()),
                V::Int(1),
                V::Int(1),
                V::Text(user.into()),
                V::Text("compta".into()),
                V::Text(String::new()),
                V::Text(id.into()),
            ]
        };
        db.exec(
            &ins,
            &row(
                &format!("{PREFIX}/compta/2202/Old"),
                5,
                V::Null,
                "2202",
                "a",
            ),
        )
        .unwrap();
        db.exec(
            &ins,
            &row(
                "/srv/other/compta/2202/INBOX",
                0,
                V::Bytes(vec![1]),
                "2202",
                "b",
            ),
        )
        .unwrap();
        db.exec(
            &ins,
            &row(
                &format!("{PREFIX}/compta/2202/Work"),
                0,
                V::Bytes(vec![1]),
                "2201",
                "c",
            ),
        )
        .unwrap();
        let r = run(&sb, &t, &["check"]);
        assert_eq!(r.code, 5, "{}{}", r.stdout, r.stderr);
        assert!(
            r.stdout.contains("Old msgnum 5: recording is NULL"),
            "{}",
            r.stdout
        );
        assert!(
            r.stdout.contains("/srv/other/compta/2202/INBOX: 1 row(s)"),
            "{}",
            r.stdout
        );
        assert!(
            r.stdout
                .contains("Work msgnum 0: mailboxuser/mailboxcontext are 2201/compta"),
            "{}",
            r.stdout
        );
        assert_eq!(r.stdout.lines().count(), 3, "{}", r.stdout);
    }
}

/// The fixture's messages by msg_id: (dir, metadata, first-format audio).
fn fixture_by_id() -> BTreeMap<String, (String, vmtool::metadata::Metadata, Vec<u8>)> {
    fixture_messages()
        .into_iter()
        .map(|(ctx, mbox, folder, num)| {
            let base = team2_fixture().join(format!("voicemail/{ctx}/{mbox}/{folder}/msg{num}"));
            let m = vmtool::metadata::Metadata::parse(
                &std::fs::read(base.with_extension("txt")).unwrap(),
            )
            .unwrap();
            let wav = std::fs::read(base.with_extension("WAV")).unwrap();
            (
                m.msg_id().unwrap().to_string(),
                (format!("{PREFIX}/{ctx}/{mbox}/{folder}"), m, wav),
            )
        })
        .collect()
}

/// The columns Asterisk's table keeps, as the `.txt` says them.
const TABLE_KEYS: [&str; 7] = [
    "context", "callerid", "origtime", "duration", "msg_id", "flag", "category",
];

#[test]
fn archive_takes_rows_out_in_the_file_format_and_restore_brings_them_back() {
    for s in servers() {
        let t = TestTable::new(&s, &[]);
        let sb = Sandbox::team2();
        // 2201 (maxmsg=3) gets its three back with the gaps vmtool leaves.
        room_for_gaps(&sb);
        t.load_fixture();
        let fx = fixture_by_id();
        let arch = sb.path().join("archive");
        let a = arch.to_str().unwrap();
        let at = "@1795689200";
        let old: BTreeSet<String> = fx
            .iter()
            .filter(|(_, (_, m, _))| m.origtime().unwrap() < 1795689200)
            .map(|(id, _)| id.clone())
            .collect();
        assert!(!old.is_empty() && old.len() < fx.len());
        let before = t.rows();
        let dry = run(
            &sb,
            &t,
            &[
                "archive",
                "--older-than",
                at,
                "--include-new",
                "--to",
                a,
                "--dry-run",
            ],
        )
        .ok()
        .stdout;
        assert_eq!(dry.lines().count(), old.len(), "{dry}");
        assert_eq!(t.rows(), before);
        let archive = |t: &TestTable| {
            run(
                &sb,
                t,
                &[
                    "archive",
                    "--older-than",
                    at,
                    "--include-new",
                    "--to",
                    a,
                    "--summary",
                ],
            )
            .ok()
            .stdout
        };
        let out = archive(&t);
        assert!(
            out.contains(&format!("archived {} message(s)", old.len())),
            "{:?}: {out}",
            s.kind
        );
        let left: BTreeSet<String> = t.rows().into_iter().filter_map(|r| r.2).collect();
        assert!(left.is_disjoint(&old) && left.len() + old.len() == fx.len());
        // Each entry: the recording byte for byte as .WAV, the .txt in the
        // file layout with the table's values.
        let manifest = std::fs::read_to_string(arch.join("manifest.jsonl")).unwrap();
        let mut seen = BTreeSet::new();
        for line in manifest.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let id = v["msg_id"].as_str().unwrap().to_string();
            let (_, meta, wav) = &fx[&id];
            let entry = arch.join(v["dir"].as_str().unwrap());
            let num = v["number"].as_str().unwrap();
            assert_eq!(
                std::fs::read(entry.join(format!("msg{num}.WAV"))).unwrap(),
                *wav
            );
            let txt = std::fs::read(entry.join(format!("msg{num}.txt"))).unwrap();
            let back = vmtool::metadata::Metadata::parse(&txt).unwrap();
            for k in TABLE_KEYS {
                assert_eq!(back.get(k), meta.get(k), "{:?} {id} {k}", s.kind);
            }
            seen.insert(id);
        }
        assert_eq!(seen, old);
        // A rerun finds nothing more to archive.
        assert!(archive(&t).contains("archived 0 message(s)"));
        // Back into the table, where each came from, at highest+1.
        let ids: Vec<&str> = old.iter().map(String::as_str).collect();
        let mut args = vec!["restore", "--from", a];
        args.extend(&ids);
        let out = run(&sb, &t, &args).ok().stdout;
        assert_eq!(out.lines().count(), old.len(), "{out}");
        let after = t.rows();
        let place =
            |rows: &[(String, i64, Option<String>, Option<String>)]| -> BTreeSet<(String, String)> {
                rows.iter()
                    .map(|r| (r.0.clone(), r.2.clone().unwrap()))
                    .collect()
            };
        assert_eq!(place(&after), place(&before), "{:?}", s.kind);
        for (dir, _, id, _) in &after {
            assert_eq!(*dir, fx[id.as_ref().unwrap()].0);
        }
        // The recordings came back unchanged: convert equals the fixture's.
        for (dir, n, id, _) in after.iter().filter(|r| old.contains(r.2.as_ref().unwrap())) {
            let target = format!(
                "{}/msg{n:04}",
                dir.strip_prefix(&format!("{PREFIX}/")).unwrap()
            );
            let (_, _, wav) = &fx[id.as_ref().unwrap()];
            let mut db = t.db();
            let stored = db
                .query(
                    &format!(
                        "SELECT recording FROM {} WHERE dir = ? AND msgnum = ?",
                        t.name
                    ),
                    &[V::Text(dir.clone()), V::Int(*n as i32)],
                )
                .unwrap()
                .remove(0)
                .remove(0)
                .into_bytes()
                .unwrap();
            assert!(stored == *wav, "{:?} {target}", s.kind);
        }
        // Restoring again is refused: the rows are there.
        let r = run(&sb, &t, &args);
        assert!(r.stderr.contains("not restored twice"), "{}", r.stderr);
        assert_eq!(t.rows().len(), fx.len());
        // The same archive restores into a file spool (no --db).
        let files = Sandbox::team2();
        let one = ids[0];
        files
            .run(&[
                "--no-ami",
                "restore",
                "--from",
                a,
                "--to",
                "2301@direction/Work",
                one,
            ])
            .ok();
        let work = files.voicemail().join("direction/2301/Work");
        assert_eq!(std::fs::read(work.join("msg0000.WAV")).unwrap(), fx[one].2);
        let m =
            vmtool::metadata::Metadata::parse(&std::fs::read(work.join("msg0000.txt")).unwrap())
                .unwrap();
        assert_eq!(m.msg_id(), Some(one));
    }
}

#[test]
fn a_file_spool_archive_restores_into_the_table_with_its_first_format() {
    for s in servers() {
        let t = TestTable::new(&s, &[]);
        let sb = Sandbox::team2();
        // 2201 (maxmsg=3) gets its three back with the gaps vmtool leaves.
        room_for_gaps(&sb);
        let fx = fixture_by_id();
        let arch = sb.path().join("archive");
        let a = arch.to_str().unwrap();
        // From the files (all three formats archived), kept in the spool.
        sb.run(&[
            "--no-ami",
            "archive",
            "--keep",
            "--older-than",
            "@1795689200",
            "--include-new",
            "--to",
            a,
        ])
        .ok();
        let manifest = std::fs::read_to_string(arch.join("manifest.jsonl")).unwrap();
        let n = manifest.lines().count();
        assert!(n > 0);
        let out = run(
            &sb,
            &t,
            &["restore", "--from", a, "compta", "finance", "direction"],
        )
        .ok()
        .stdout;
        assert_eq!(out.lines().count(), n, "{out}");
        let mut db = t.db();
        let rows = db
            .query(
                &format!(
                    "SELECT dir, msg_id, recording, mailboxuser, mailboxcontext FROM {}",
                    t.name
                ),
                &[],
            )
            .unwrap();
        assert_eq!(rows.len(), n);
        for r in rows {
            let id = r[1].text().unwrap();
            let (dir, _, wav) = &fx[&id];
            assert_eq!(r[0].text().as_ref(), Some(dir));
            assert!(
                r[2].clone().into_bytes().unwrap() == *wav,
                "{:?} {id}",
                s.kind
            );
            let owner = format!("{}/{}", r[4].text().unwrap(), r[3].text().unwrap());
            assert!(dir.contains(&format!("/{owner}/")), "{dir} {owner}");
        }
    }
}

#[test]
fn resequence_closes_gaps_in_the_table_in_order() {
    for s in servers() {
        let t = TestTable::new(&s, &[]);
        let sb = Sandbox::team2();
        t.load_fixture();
        // The folder with the most messages; open a gap at its start.
        let rows = t.rows();
        let mut by_dir: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
        for (dir, n, id, _) in &rows {
            by_dir
                .entry(dir.clone())
                .or_default()
                .push((*n, id.clone().unwrap()));
        }
        let (dir, msgs) = by_dir.iter().max_by_key(|(_, v)| v.len()).unwrap();
        assert!(msgs.len() >= 2, "{msgs:?}");
        t.db()
            .exec(
                &format!("DELETE FROM {} WHERE dir = ? AND msgnum = 0", t.name),
                &[V::Text(dir.clone())],
            )
            .unwrap();
        let rel = dir.strip_prefix(&format!("{PREFIX}/")).unwrap();
        let bx = rel.rsplit_once('/').unwrap().0;
        let dry = run(&sb, &t, &["resequence", "--dry-run", rel]).ok().stdout;
        assert_eq!(dry.lines().count(), msgs.len() - 1, "{dry}");
        let r = run(&sb, &t, &["resequence", bx]);
        assert_eq!(r.code, 2, "without AMI, --force is required: {}", r.stderr);
        let out = run(&sb, &t, &["resequence", "--force", bx]).ok().stdout;
        assert!(out.contains("msg0001 -> msg0000"), "{out}");
        let after: Vec<(i64, String)> = t
            .rows()
            .into_iter()
            .filter(|r| r.0 == *dir)
            .map(|r| (r.1, r.2.unwrap()))
            .collect();
        let want: Vec<(i64, String)> = msgs[1..]
            .iter()
            .enumerate()
            .map(|(i, (_, id))| (i as i64, id.clone()))
            .collect();
        assert_eq!(after, want, "{:?}", s.kind);
        // Other folders untouched.
        let others = |rows: &[(String, i64, Option<String>, Option<String>)]| -> Vec<_> {
            rows.iter().filter(|r| r.0 != *dir).cloned().collect()
        };
        assert_eq!(others(&t.rows()), others(&rows));
        // Asterisk still locks this server's spool directories: a stale lock
        // there is broken as for a file spool.
        let lock = sb.voicemail().join(rel).join(".lock");
        std::fs::write(&lock, "").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let out = run(&sb, &t, &["unlock", "--stale", "--older-than", "1", rel])
            .ok()
            .stdout;
        assert!(out.contains("stale lock broken"), "{out}");
        assert!(!lock.exists());
    }
}

#[test]
fn play_sends_the_recording_to_alsa_and_marks_it_heard_in_the_table() {
    for s in servers() {
        let t = TestTable::new(&s, &[]);
        let sb = Sandbox::team2();
        t.load_fixture();
        let inbox = format!("{PREFIX}/compta/2202/INBOX");
        let id_at = |dir: &str, n: i64| {
            t.rows()
                .into_iter()
                .find(|r| r.0 == dir && r.1 == n)
                .and_then(|r| r.2)
        };
        let id = id_at(&inbox, 1).unwrap();
        let (_, want) = vmtool::audio::decode_all(
            &team2_fixture().join("voicemail/compta/2202/INBOX/msg0001.WAV"),
            "WAV",
        )
        .unwrap();
        let global = t.args();
        let global: Vec<&str> = global.iter().map(String::as_str).collect();
        let Some((r, captured)) =
            crate::play::play_captured_with(&sb, &global, &["compta/2202/INBOX/1"])
        else {
            return;
        };
        r.ok();
        // The GSM recording from the blob, decoded, reached ALSA sample for sample.
        let (n, _) = crate::play::assert_same_audio(&captured, &want);
        assert!(n > 10_000, "{n}");
        // Played to the end: moved to Old in the table, as a first listen does.
        let old = t
            .rows()
            .into_iter()
            .find(|r| r.2.as_deref() == Some(id.as_str()))
            .unwrap();
        assert_eq!(old.0, format!("{PREFIX}/compta/2202/Old"), "{:?}", s.kind);
        assert_eq!(id_at(&inbox, 1), None);
    }
}

#[test]
fn boxes_of_voicemail_conf_without_rows_are_targets() {
    for s in servers() {
        let t = TestTable::new(&s, &[]);
        let sb = Sandbox::team2();
        t.load_fixture();
        // Every message of finance gone: the table no longer names it.
        t.db()
            .exec(
                &format!("DELETE FROM {} WHERE dir LIKE ?", t.name),
                &[V::Text(format!("{PREFIX}/finance/%"))],
            )
            .unwrap();
        assert_eq!(run(&sb, &t, &["ls", "finance"]).ok().stdout, "");
        let out = run(&sb, &t, &["cp", "compta/2202/Old/0", "finance/2101"])
            .ok()
            .stdout;
        assert!(out.contains("-> finance/2101/INBOX/msg0001"), "{out}");
        run(&sb, &t, &["mv", "compta/2202/Old/0", "2102@finance/Work"]).ok();
        let dirs: BTreeSet<String> = t.rows().into_iter().map(|r| r.0).collect();
        assert!(dirs.contains(&format!("{PREFIX}/finance/2101/INBOX")));
        assert!(dirs.contains(&format!("{PREFIX}/finance/2102/Work")));
        // A box in neither the table nor voicemail.conf is still refused.
        let r = run(&sb, &t, &["cp", "compta/2202/INBOX/0", "finance/2999"]);
        assert_ne!(r.code, 0);
        assert!(r.stderr.contains("not in voicemail.conf"), "{}", r.stderr);
    }
}

#[test]
fn a_whole_table_listing_equals_the_box_by_box_one_on_a_large_table() {
    for s in servers() {
        let t = TestTable::new(&s, &[]);
        let sb = Sandbox::team2();
        // 60,000 rows (PostgreSQL: over 1,000 pages, so read in two halves
        // on two connections), 600 boxes in 3 contexts, INBOX and Old.
        let rows = 60_000;
        let fill = match s.kind {
            Kind::Postgres => format!(
                "INSERT INTO {n} (dir, msgnum, context, callerid, origtime, duration, recording, flag, mailboxuser, mailboxcontext, msg_id) \
                 SELECT '{PREFIX}/ctx' || (i % 3) || '/' || (1000 + (i / 3) % 200) || '/' || CASE WHEN (i / 600) % 2 = 0 THEN 'INBOX' ELSE 'Old' END, \
                        i / 1200, 'from-pstn', '\"Caller ' || i || '\" <0' || i || '>', 1790000000 + i, i % 90, '\\x00'::bytea, \
                        CASE WHEN i % 7 = 0 THEN 'Urgent' ELSE '' END, (1000 + (i / 3) % 200)::text, 'ctx' || (i % 3), (1790000000 + i) || '-' || i \
                 FROM generate_series(0, {last}) i",
                n = t.name,
                last = rows - 1
            ),
            Kind::Mysql => format!(
                "INSERT INTO {n} (dir, msgnum, context, callerid, origtime, duration, recording, flag, mailboxuser, mailboxcontext, msg_id) \
                 SELECT CONCAT('{PREFIX}/ctx', seq % 3, '/', 1000 + (seq DIV 3) % 200, '/', IF((seq DIV 600) % 2 = 0, 'INBOX', 'Old')), \
                        seq DIV 1200, 'from-pstn', CONCAT('\"Caller ', seq, '\" <0', seq, '>'), 1790000000 + seq, seq % 90, x'00', \
                        IF(seq % 7 = 0, 'Urgent', ''), 1000 + (seq DIV 3) % 200, CONCAT('ctx', seq % 3), CONCAT(1790000000 + seq, '-', seq) \
                 FROM seq_0_to_{last}",
                n = t.name,
                last = rows - 1
            ),
        };
        let mut db = t.db();
        db.batch(&fill).unwrap();
        db.batch(&format!("ANALYZE TABLE {}", t.name).replace(
            "ANALYZE TABLE",
            if s.kind == Kind::Postgres {
                "ANALYZE"
            } else {
                "ANALYZE TABLE"
            },
        ))
        .unwrap();
        // Odd rows among them (PostgreSQL: read by COPY's binary format,
        // box by box by queries): NULLs, text COPY's text format would
        // escape, non-ASCII callers, a negative duration, an empty msg_id.
        let odd: [[V; 9]; 3] = [
            [
                V::Text(format!("{PREFIX}/ctx0/1000/INBOX")),
                V::Int(900),
                V::Text("\"Zoë \\N\t\\\" <1>".into()),
                V::Null,
                V::Null,
                V::Null,
                V::Text("Urgent".into()),
                V::Null,
                V::Text("1000".into()),
            ],
            [
                V::Text(format!("{PREFIX}/ctx0/1000/INBOX")),
                V::Int(901),
                V::Null,
                V::Int(5),
                V::Int(-3),
                V::Bytes(vec![0]),
                V::Null,
                V::Text(String::new()),
                V::Null,
            ],
            [
                V::Text(format!("{PREFIX}/ctx1/1001/Old")),
                V::Int(902),
                V::Text("\\N".into()),
                V::Int(1790000000),
                V::Int(0),
                V::Null,
                V::Text(String::new()),
                V::Text("a\\b\r".into()),
                V::Text("1001".into()),
            ],
        ];
        for row in &odd {
            db.exec(
                &format!(
                    "INSERT INTO {} (dir, msgnum, callerid, origtime, duration, recording, flag, msg_id, mailboxuser) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    t.name
                ),
                row,
            )
            .unwrap();
        }
        let rows = rows + odd.len();
        let whole = run(&sb, &t, &["ls", "--format", "json"]).ok().stdout;
        assert_eq!(whole.lines().count(), rows, "{:?}", s.kind);
        let mut by_box = String::new();
        for ctx in ["ctx0", "ctx1", "ctx2"] {
            by_box.push_str(&run(&sb, &t, &["ls", "--format", "json", ctx]).ok().stdout);
        }
        assert!(whole == by_box, "{:?}: the two listings differ", s.kind);
        let csv = run(&sb, &t, &["ls", "--format", "csv"]).ok().stdout;
        assert_eq!(csv.lines().count(), rows + 1);
    }
}

#[test]
fn greetings_are_rows_with_msgnum_minus_one() {
    for s in servers() {
        let t = TestTable::new(&s, &[]);
        let sb = Sandbox::team2();
        t.load_fixture();
        let before = run(&sb, &t, &["--format", "json", "ls"]).ok().stdout;
        let src = crate::util::repo_root()
            .join("tests/fixtures/asterisk-greetings/voicemail/compta/1202/temp.wav");
        let src = src.to_str().unwrap();
        let with = |extra: &[&str]| {
            let mut a: Vec<String> = t.args();
            a.extend(extra.iter().map(|s| s.to_string()));
            a
        };
        let go = |env: &[(&str, &str)], a: Vec<String>| {
            let refs: Vec<&str> = a.iter().map(String::as_str).collect();
            sb.run_env(env, &refs)
        };
        // 2026-12-20 12:00 UTC: the whole compta context closed until 2 January.
        let now = [("VMTOOL_NOW", "1797768000"), ("TZ", "UTC")];
        let r = go(
            &now,
            with(&[
                "greeting",
                "set",
                "compta",
                "temp",
                src,
                "--until",
                "2027-01-02",
            ]),
        )
        .ok();
        let boxes = r.stdout.lines().count();
        assert!(boxes >= 2, "{}", r.stdout);
        go(
            &now,
            with(&["greeting", "set", "2201@compta", "unavail", src]),
        )
        .ok();
        let greet_rows: Vec<_> = t.rows().into_iter().filter(|r| r.1 == -1).collect();
        assert_eq!(greet_rows.len(), boxes + 1, "{greet_rows:?}");
        assert!(greet_rows
            .iter()
            .any(|r| r.0 == format!("{PREFIX}/compta/2201/unavail") && r.3.is_none()));
        assert!(greet_rows
            .iter()
            .filter(|r| r.0.ends_with("/temp"))
            .all(|r| r.3.as_deref() == Some("vmtool-until=1798848000")));
        // Messages are listed as before: greeting rows are no folders.
        assert_eq!(
            run(&sb, &t, &["--format", "json", "ls"]).ok().stdout,
            before,
            "{:?}",
            s.kind
        );
        let ls = go(
            &now,
            with(&["--format", "json", "greeting", "ls", "2201@compta"]),
        )
        .ok();
        let rows = ls.json_lines();
        let kinds: Vec<&str> = rows
            .iter()
            .map(|r| r["greeting"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["unavail", "temp"], "{}", ls.stdout);
        assert_eq!(rows[1]["formats"], serde_json::json!(["WAV"]));
        assert_eq!(rows[1]["until"], 1798848000);
        // The blob is the wav49 file: exported, it is what sox decodes of it.
        let blob = sb.path().join("temp.WAV");
        let mut db = t.db();
        let data = db
            .query(
                &format!(
                    "SELECT recording FROM {} WHERE dir = ? AND msgnum = -1",
                    t.name
                ),
                &[V::Text(format!("{PREFIX}/compta/2201/temp"))],
            )
            .unwrap()
            .remove(0)
            .remove(0)
            .into_bytes()
            .unwrap();
        drop(db);
        std::fs::write(&blob, &data).unwrap();
        let out = sb.path().join("export.wav");
        go(
            &[],
            with(&[
                "greeting",
                "export",
                "2201@compta",
                "temp",
                "-o",
                out.to_str().unwrap(),
            ]),
        )
        .ok();
        let sox = std::process::Command::new("sox")
            .arg(&blob)
            .args(["-t", "raw", "-e", "signed", "-b", "16", "-"])
            .output()
            .expect("sox");
        let want: Vec<i16> = sox
            .stdout
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect();
        let got: Vec<i16> = hound::WavReader::open(&out)
            .unwrap()
            .into_samples::<i16>()
            .map(Result::unwrap)
            .collect();
        assert_eq!(got, want, "{:?}", s.kind);
        // Before the date nothing expires; on it every temp row goes, unavail stays.
        go(
            &[("VMTOOL_NOW", "1798844400")],
            with(&["greeting", "expire"]),
        )
        .ok();
        assert_eq!(
            t.rows().into_iter().filter(|r| r.1 == -1).count(),
            boxes + 1
        );
        let r = go(
            &[("VMTOOL_NOW", "1798848000")],
            with(&["greeting", "expire"]),
        )
        .ok();
        assert_eq!(r.stdout.lines().count(), boxes, "{}", r.stdout);
        let left: Vec<_> = t.rows().into_iter().filter(|r| r.1 == -1).collect();
        assert_eq!(left.len(), 1, "{left:?}");
        go(&[], with(&["greeting", "rm", "2201@compta", "unavail"])).ok();
        assert_eq!(t.rows().into_iter().filter(|r| r.1 == -1).count(), 0);
    }
}
