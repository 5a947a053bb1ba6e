//! `vmtool check` on the SQL store: what Asterisk cannot work with or counts
//! wrongly — rows without audio, `dir` outside the prefix or not a folder,
//! owners that disagree with `dir` (Asterisk's renumbering skips them),
//! duplicate numbers (tables without the primary key), boxes over `maxmsg` —
//! and this server's stale spool locks (Asterisk still locks the spool
//! folders with ODBC storage and drops deposits into a folder left locked).

use super::db::{Kind, V};
use super::table::{db_err, Table};
use super::SqlStore;
use crate::config::VoicemailConf;
use crate::error::Result;
use crate::lock::{self, LockFileKind, LockInfo};
use std::path::Path;
use std::time::Duration;

/// One finding: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub at: String,
    pub problem: String,
    /// Repaired by `check --fix`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fixed: bool,
}

/// Stale lock files in this server's spool folders (spec §6.6); with `fix`,
/// broken by the same rules as `vmtool unlock --stale`. Which lock may be
/// broken is `lock::inspect`'s and `lock::break_stale`'s call alone.
pub fn spool_locks(store: &SqlStore, threshold: Duration, fix: bool) -> Vec<Finding> {
    let mut out = Vec::new();
    let folders = walkdir::WalkDir::new(store.spool.root())
        .min_depth(3)
        .max_depth(3)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_dir());
    for e in folders {
        let dir = e.path();
        let stale = |dir: &Path| -> Vec<LockInfo> {
            lock::inspect(dir, threshold)
                .unwrap_or_default()
                .into_iter()
                .filter(|i| i.stale)
                .collect()
        };
        let found = stale(dir);
        if found.is_empty() {
            continue;
        }
        let mut left = found.iter().map(|i| i.path.clone()).collect::<Vec<_>>();
        let mut failed = None;
        if fix {
            match lock::break_stale(dir, threshold) {
                Ok(_) => left = stale(dir).into_iter().map(|i| i.path).collect(),
                Err(e) => failed = Some(e.to_string()),
            }
        }
        for info in found {
            let fixed = fix && !left.contains(&info.path);
            let mut problem = match info.kind {
                LockFileKind::Helper | LockFileKind::Renamed => format!(
                    "lock helper left for {} s (a crash); harmless alone, removed with the lock",
                    info.age.as_secs()
                ),
                _ => format!(
                    "lock left for {} s (a crash): this server's Asterisk drops every deposit into this folder after a 5-s wait",
                    info.age.as_secs()
                ),
            };
            if let Some(f) = &failed {
                problem.push_str(&format!(" (not fixed: {f})"));
            } else if !fixed {
                problem.push_str("; fix: vmtool check --fix");
            }
            out.push(Finding {
                at: info.path.display().to_string(),
                problem,
                fixed,
            });
        }
    }
    out
}

pub fn check(store: &SqlStore, conf: Option<&VoicemailConf>) -> Result<Vec<Finding>> {
    let t: &Table = &store.table;
    let mut out = Vec::new();
    let mut db = store.db();
    let prefix = format!("{}/", t.prefix);
    let len = match t.kind {
        Kind::Postgres => "octet_length(recording)",
        Kind::Mysql => "LENGTH(recording)",
    };
    let sql = format!(
        "SELECT dir, msgnum, CASE WHEN recording IS NULL THEN 'NULL' ELSE 'empty' END FROM {} WHERE msgnum >= 0 AND (recording IS NULL OR {len} = 0)",
        t.name
    );
    for r in db.query(&sql, &[]).map_err(db_err(t, "cannot check"))? {
        out.push(Finding {
            at: format!(
                "{} msgnum {}",
                r[0].text().unwrap_or_default(),
                r[1].int().unwrap_or(-1)
            ),
            problem: format!(
                "recording is {}: the message counts for MWI but cannot be played",
                r[2].text().unwrap_or_default()
            ),
            fixed: false,
        });
    }
    greeting_rows(store, &mut db, &prefix, &mut out)?;
    let sql = format!(
        "SELECT dir, COUNT(*) FROM {} WHERE dir NOT LIKE ? GROUP BY dir",
        t.name
    );
    for r in db
        .query(&sql, &[V::Text(Table::like(&prefix))])
        .map_err(db_err(t, "cannot check"))?
    {
        out.push(Finding {
            at: r[0].text().unwrap_or_default(),
            problem: format!(
                "{} row(s) whose dir does not start with {prefix}: invisible here (servers must write dir byte for byte alike; see --spool-prefix)",
                r[1].int().unwrap_or(0)
            ),
            fixed: false,
        });
    }
    let sql = format!(
        "SELECT dir, msgnum, mailboxuser, mailboxcontext FROM {} WHERE dir LIKE ?",
        t.name
    );
    let mut counts: std::collections::BTreeMap<String, u32> = Default::default();
    for r in db
        .query(&sql, &[V::Text(Table::like(&prefix))])
        .map_err(db_err(t, "cannot check"))?
    {
        let dir = r[0].text().unwrap_or_default();
        let num = r[1].int().unwrap_or(-1);
        if num < 0 {
            continue; // greetings
        }
        let Some(place) = t.place(&dir) else {
            out.push(Finding {
                at: format!("{dir} msgnum {num}"),
                problem:
                    "dir is not <prefix>/<context>/<box>/<folder>: no mailbox shows this message"
                        .into(),
                fixed: false,
            });
            continue;
        };
        *counts.entry(dir.clone()).or_default() += 1;
        let (u, c) = (r[2].text(), r[3].text());
        if u.as_deref() != Some(place.mailbox.mailbox())
            || c.as_deref() != Some(place.mailbox.context.as_str())
        {
            out.push(Finding {
                at: format!("{dir} msgnum {num}"),
                problem: format!(
                    "mailboxuser/mailboxcontext are {}/{} but dir says {}/{}: Asterisk's renumbering skips this row",
                    u.unwrap_or_else(|| "NULL".into()),
                    c.unwrap_or_else(|| "NULL".into()),
                    place.mailbox.mailbox(),
                    place.mailbox.context
                ),
                fixed: false,
            });
        }
    }
    let sql = format!(
        "SELECT dir, msgnum, COUNT(*) FROM {} GROUP BY dir, msgnum HAVING COUNT(*) > 1",
        t.name
    );
    for r in db.query(&sql, &[]).map_err(db_err(t, "cannot check"))? {
        out.push(Finding {
            at: format!("{} msgnum {}", r[0].text().unwrap_or_default(), r[1].int().unwrap_or(-1)),
            problem: format!(
                "{} rows share this number (the table lacks its primary key): Asterisk plays and deletes them as one",
                r[2].int().unwrap_or(0)
            ),
            fixed: false,
        });
    }
    for (dir, n) in counts {
        let Some(p) = t.place(&dir) else { continue };
        let max = crate::ops::maxmsg_of(conf, &p.mailbox);
        if n > max {
            out.push(Finding {
                at: dir,
                problem: format!(
                    "{n} messages, over maxmsg={max}: Asterisk takes no new message here"
                ),
                fixed: false,
            });
        }
    }
    Ok(out)
}

/// Greeting rows (`msgnum` -1, spec §10.1): a recording that is missing,
/// empty or not audio of the table's format (the first of `format=`) plays
/// nothing; Asterisk then falls back to the recorded name or the generic
/// prompt, or plays silence.
fn greeting_rows(
    store: &SqlStore,
    db: &mut super::db::Db,
    prefix: &str,
    out: &mut Vec<Finding>,
) -> Result<()> {
    let t: &Table = &store.table;
    let format = crate::audio::AudioFormat::from_extension(&store.ext);
    let sql = format!(
        "SELECT dir, recording FROM {} WHERE dir LIKE ? AND msgnum = -1 ORDER BY dir",
        t.name
    );
    // One row at a time: recordings are not all held at once.
    db.query_each(&sql, &[V::Text(Table::like(prefix))], &mut |r| {
        let dir = r[0].text().unwrap_or_default();
        let parts: Vec<&str> = dir[prefix.len().min(dir.len())..].split('/').collect();
        let (ctx, bx, kind) = match parts.as_slice() {
            [c, b, k] => match crate::store::greeting::Kind::parse(k) {
                Ok(kind) if *k == kind.base() => (*c, *b, kind),
                _ => return,
            },
            _ => return,
        };
        let problem = match &r[1] {
            super::db::Cell::Null => Some("no recording (NULL)".to_string()),
            super::db::Cell::Bytes(b) if b.is_empty() => Some("an empty recording".to_string()),
            // The audio is on the servers' disks (odbc_audio_on_disk).
            super::db::Cell::Bytes(b) if b.as_slice() == super::AUDMAGIC => None,
            super::db::Cell::Bytes(b) => {
                match crate::audio::probe(std::io::Cursor::new(b), format.clone(), b.len() as u64) {
                    Ok(i) => i.warnings.first().cloned(),
                    Err(e) => Some(format!("not {} audio: {e}", format.name())),
                }
            }
            super::db::Cell::Int(_) => Some("a recording that is not audio".to_string()),
        };
        if let Some(p) = problem {
            out.push(Finding {
                at: format!("{dir} msgnum -1"),
                problem: format!(
                    "the {kind} greeting has {p}: callers hear no greeting from it; fix: vmtool greeting set {bx}@{ctx} {kind} FILE, or re-record it by phone"
                ),
                fixed: false,
            });
        }
    })
    .map_err(db_err(t, "cannot check"))?;
    Ok(())
}
