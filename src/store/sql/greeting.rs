//! Greetings in the ODBC table (spec §10.1): one row per greeting, `msgnum`
//! -1, `dir` = `<prefix>/<ctx>/<box>/<unavail|busy|greet|temp>`, the whole
//! file of the first `format=` in `recording` (Asterisk keeps no other).
//!
//! A set or a removal is one transaction, so a greeting is old or new, never
//! gone in between. The end date of a temporary greeting is kept in the
//! row's `category` (`vmtool-until=<epoch>`): Asterisk reads no column of a
//! greeting row but `recording`, and writes none of them back.

use super::db::V;
use super::table::db_err;
use super::SqlStore;
use crate::audio::{self, AudioFormat};
use crate::error::{Error, Result};
use crate::spool::MailboxId;
use crate::store::greeting::{
    ext_of_token, pick_ext, Greeting, GreetingFile, GreetingsSet, Kind, SetOptions, TempGreeting,
};
use crate::store::Decoded;
use std::collections::HashMap;
use std::path::PathBuf;

const UNTIL_TAG: &str = "vmtool-until=";

fn fold(dir: &str) -> String {
    dir.trim_end_matches(' ').to_lowercase()
}

impl SqlStore {
    fn greeting_dir(&self, mb: &MailboxId, kind: Kind) -> String {
        format!("{}{}", self.table.box_prefix(mb), kind.base())
    }

    /// Which greetings each of `mbs` has and when each was set (the row's `origtime`):
    /// one indexed query per 256 boxes, no recording read. What `boxes` shows of them.
    pub fn greetings_set(&self, mbs: &[MailboxId]) -> Result<GreetingsSet> {
        let mut out = GreetingsSet::new();
        for chunk in mbs.chunks(256) {
            let mut by_dir: HashMap<String, (&MailboxId, Kind)> = HashMap::new();
            // The server matched `dir` under its collation (case, trailing blanks), as
            // Asterisk's `dir = ?` does: a row spelled otherwise still counts.
            let mut folded: HashMap<String, (&MailboxId, Kind)> = HashMap::new();
            for mb in chunk {
                for kind in Kind::ALL {
                    let dir = self.greeting_dir(mb, kind);
                    folded.insert(fold(&dir), (mb, kind));
                    by_dir.insert(dir, (mb, kind));
                }
            }
            let marks = vec!["?"; by_dir.len()].join(", ");
            let sql = format!(
                "SELECT dir, {} FROM {} WHERE msgnum = -1 AND dir IN ({marks})",
                self.table.text_cast("origtime"),
                self.table.name
            );
            let params: Vec<V> = by_dir.keys().map(|d| V::Text(d.clone())).collect();
            self.db()
                .query_each(&sql, &params, &mut |r| {
                    let Some((mb, kind)) = r[0]
                        .text()
                        .and_then(|d| by_dir.get(&d).or_else(|| folded.get(&fold(&d))))
                    else {
                        return;
                    };
                    out.entry((*mb).clone())
                        .or_default()
                        .push((*kind, r[1].int()));
                })
                .map_err(db_err(&self.table, "cannot read the greetings"))?;
        }
        for v in out.values_mut() {
            v.sort_by_key(|(k, _)| Kind::ALL.iter().position(|a| a == k));
        }
        Ok(out)
    }

    pub fn greetings(&self, mb: &MailboxId, _formats: &[String]) -> Result<Vec<Greeting>> {
        let mut out = Vec::new();
        for kind in Kind::ALL {
            let dir = self.greeting_dir(mb, kind);
            let cat = if self.table.has_category {
                "category"
            } else {
                "NULL"
            };
            let sql = format!(
                "SELECT recording, {}, {cat} FROM {} WHERE dir = ? AND msgnum = -1",
                self.table.text_cast("origtime"),
                self.table.name
            );
            let rows = self
                .db()
                .query(&sql, &[V::Text(dir)])
                .map_err(db_err(&self.table, "cannot read a greeting"))?;
            let Some(mut row) = rows.into_iter().next() else {
                continue;
            };
            let until = row
                .get(2)
                .and_then(|c| c.text())
                .and_then(|t| t.strip_prefix(UNTIL_TAG)?.trim().parse().ok());
            let modified = row.get(1).and_then(|c| c.int());
            let data = std::mem::replace(&mut row[0], super::db::Cell::Null)
                .into_bytes()
                .unwrap_or_default();
            let (duration, problem) = if data.is_empty() {
                (None, Some("0 bytes: plays nothing".to_string()))
            } else if data == super::AUDMAGIC {
                (None, Some("the audio is on the servers' disks".to_string()))
            } else {
                match audio::probe(
                    std::io::Cursor::new(&data),
                    AudioFormat::from_extension(&self.ext),
                    data.len() as u64,
                ) {
                    Ok(i) => (i.duration_secs(), i.warnings.first().cloned()),
                    Err(e) => (None, Some(e.to_string())),
                }
            };
            out.push(Greeting {
                kind,
                files: vec![GreetingFile {
                    ext: self.ext.clone(),
                    bytes: data.len() as u64,
                    duration,
                    modified,
                    problem,
                }],
                missing: Vec::new(),
                recording: Vec::new(),
                until: (kind == Kind::Temp).then_some(until).flatten(),
            });
        }
        Ok(out)
    }

    /// One transaction: the old row (if any) deleted, the new one inserted.
    pub fn set_greeting(
        &self,
        mb: &MailboxId,
        kind: Kind,
        samples_at: &mut dyn FnMut(u32) -> std::result::Result<Vec<i16>, String>,
        opts: &SetOptions,
    ) -> Result<Vec<String>> {
        if opts.until.is_some() && kind != Kind::Temp {
            return Err(Error::Usage(format!(
                "--until applies to the temp greeting only, not to {kind}"
            )));
        }
        if opts.until.is_some() && !self.table.has_category {
            return Err(Error::Failed(format!(
                "table {} has no category column to keep the end date in; nothing was changed",
                self.table.name
            )));
        }
        let format = AudioFormat::from_extension(&ext_of_token(&self.ext));
        if !audio::encode::encodable(&format) {
            return Err(Error::Failed(format!(
                "vmtool cannot write {} (the first format= in voicemail.conf, which the table keeps); nothing was changed",
                format.name()
            )));
        }
        let rate = format.sample_rate().unwrap_or(8000);
        let samples = samples_at(rate).map_err(Error::Failed)?;
        let mut data = Vec::new();
        audio::encode::encode_to(&format, &samples, rate, &mut data)
            .map_err(|e| Error::Failed(format!("{e}; nothing was changed")))?;
        let dir = self.greeting_dir(mb, kind);
        let now = chrono::Utc::now().timestamp();
        let t = &self.table;
        let (cat_col, cat_mark, cat) = match opts.until {
            Some(u) => (
                ", category",
                ", ?",
                Some(V::Text(format!("{UNTIL_TAG}{u}"))),
            ),
            None => ("", "", None),
        };
        let insert = format!(
            "INSERT INTO {} (dir, msgnum, recording, context, callerid, origtime, duration, mailboxuser, mailboxcontext, flag{cat_col}) VALUES (?, -1, ?, ?, '', {tp}, {tp}, ?, ?, ''{cat_mark})",
            t.name,
            tp = t.time_param()
        );
        let secs = (samples.len() as u64 / u64::from(rate)).to_string();
        self.db()
            .transaction(|db| {
                db.exec(
                    &format!("DELETE FROM {} WHERE dir = ? AND msgnum = -1", t.name),
                    &[V::Text(dir.clone())],
                )?;
                let mut p = vec![
                    V::Text(dir.clone()),
                    V::Bytes(data.clone()),
                    V::Text(mb.context.to_string()),
                    V::Text(now.to_string()),
                    V::Text(secs.clone()),
                    V::Text(mb.mailbox().to_string()),
                    V::Text(mb.context.to_string()),
                ];
                p.extend(cat.clone());
                db.exec(&insert, &p)
            })
            .map_err(db_err(t, "cannot write a greeting"))?;
        Ok(vec![format!("{dir} (msgnum -1)")])
    }

    pub fn remove_greeting(&self, mb: &MailboxId, kind: Kind) -> Result<Vec<String>> {
        let dir = self.greeting_dir(mb, kind);
        let n = self
            .db()
            .exec(
                &format!(
                    "DELETE FROM {} WHERE dir = ? AND msgnum = -1",
                    self.table.name
                ),
                &[V::Text(dir.clone())],
            )
            .map_err(db_err(&self.table, "cannot remove a greeting"))?;
        Ok(if n > 0 {
            vec![format!("{dir} (msgnum -1)")]
        } else {
            Vec::new()
        })
    }

    pub fn expire_greeting(&self, mb: &MailboxId, now: i64) -> Result<Option<i64>> {
        if !self.table.has_category {
            return Ok(None);
        }
        let temp = self
            .greetings(mb, &[])?
            .into_iter()
            .find(|g| g.kind == Kind::Temp);
        match temp.and_then(|g| g.until) {
            Some(u) if u <= now => {
                // Only the row that still carries that end date (a new temp
                // greeting set meanwhile stays).
                let dir = self.greeting_dir(mb, Kind::Temp);
                self.db()
                    .exec(
                        &format!(
                            "DELETE FROM {} WHERE dir = ? AND msgnum = -1 AND category = ?",
                            self.table.name
                        ),
                        &[V::Text(dir), V::Text(format!("{UNTIL_TAG}{u}"))],
                    )
                    .map_err(db_err(&self.table, "cannot remove a greeting"))?;
                Ok(Some(u))
            }
            _ => Ok(None),
        }
    }

    /// Every temp greeting row of `boxes`, in one query (no recording read).
    pub fn temp_greetings(&self, boxes: &[MailboxId]) -> Result<Vec<TempGreeting>> {
        let t = &self.table;
        let cat = if t.has_category { "category" } else { "NULL" };
        let sql = format!(
            "SELECT dir, {}, {cat} FROM {} WHERE dir LIKE ? AND msgnum = -1",
            t.text_cast("origtime"),
            t.name
        );
        let mut found = std::collections::HashMap::new();
        self.db()
            .query_each(
                &sql,
                &[V::Text(super::table::Table::like(&format!(
                    "{}/",
                    t.prefix
                )))],
                &mut |r| {
                    let Some(d) = r[0].text().filter(|d| d.ends_with("/temp")) else {
                        return;
                    };
                    let until: Option<i64> = r[2]
                        .text()
                        .and_then(|c| c.strip_prefix(UNTIL_TAG)?.trim().parse().ok());
                    found.insert(d, (r[1].int(), until));
                },
            )
            .map_err(db_err(t, "cannot read the greetings"))?;
        Ok(boxes
            .iter()
            .filter_map(|mb| {
                let (set_at, until) = *found.get(&self.greeting_dir(mb, Kind::Temp))?;
                Some(TempGreeting {
                    mailbox: mb.clone(),
                    set_at,
                    until,
                })
            })
            .collect())
    }

    pub fn decode_greeting(
        &self,
        mb: &MailboxId,
        kind: Kind,
        want: Option<&str>,
    ) -> Result<(PathBuf, String, Decoded)> {
        let dir = self.greeting_dir(mb, kind);
        let data = self
            .table
            .recording(&mut self.db(), &dir, -1)
            .map_err(|e| match e {
                Error::NotFound(_) => Error::NotFound(format!("{mb} has no {kind} greeting")),
                e => e,
            })?;
        let data = data.unwrap_or_default();
        let ext = pick_ext(mb, kind, std::slice::from_ref(&self.ext), want)?;
        let format = AudioFormat::from_extension(&ext);
        let decoded =
            audio::Decoder::new(std::io::Cursor::new(data), format).and_then(|mut dec| {
                let mut samples = Vec::new();
                while dec.next_block(&mut samples)? > 0 {}
                Ok((dec.sample_rate(), dec.warnings().to_vec(), samples))
            });
        Ok((PathBuf::from(dir), ext, decoded))
    }
}
