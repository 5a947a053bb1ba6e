//! `watch --poll` on the SQL store: the table has no change feed, so it is
//! polled. Each poll is one `GROUP BY dir` (count and highest number, no
//! `recording`); only mailboxes whose folders changed are read again, and
//! their messages are told apart by identity (`msg_id/origtime`), as the file
//! watcher does.

use super::table::{MsgRow, Table};
use super::SqlStore;
use crate::error::{Error, Result};
use crate::watch::{EventKind, Greeting, MessageKey, SeenMessage, WatchEvent};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

type BoxKey = (String, String);
/// identity → (folder, number, message)
type BoxState = HashMap<String, (String, u16, SeenMessage)>;

pub struct SqlPoller<'a> {
    store: &'a SqlStore,
    interval: Duration,
    /// `dir` prefixes watched (contexts or boxes), each ending in `/`.
    scope: Vec<String>,
    all_events: bool,
    dirs: BTreeMap<String, (i64, i64)>,
    boxes: HashMap<BoxKey, BoxState>,
    queue: VecDeque<WatchEvent>,
    next_poll: Instant,
    primed: bool,
    /// Greeting rows (`msgnum` -1): `dir` → fingerprint, with `all_events` only.
    greetings: BTreeMap<String, String>,
}

fn identity(r: &MsgRow) -> String {
    format!(
        "{}/{}",
        r.msg_id.as_deref().unwrap_or(""),
        r.origtime.as_deref().unwrap_or("")
    )
}

impl<'a> SqlPoller<'a> {
    pub fn new(
        store: &'a SqlStore,
        interval: Duration,
        scope: Vec<String>,
        all_events: bool,
    ) -> SqlPoller<'a> {
        let scope = if scope.is_empty() {
            vec![format!("{}/", store.table.prefix)]
        } else {
            scope
        };
        SqlPoller {
            store,
            interval,
            scope,
            all_events,
            dirs: BTreeMap::new(),
            boxes: HashMap::new(),
            queue: VecDeque::new(),
            next_poll: Instant::now(),
            primed: false,
            greetings: BTreeMap::new(),
        }
    }

    /// The next event, waiting at most `timeout`; polls when its interval is due.
    pub fn next_event(&mut self, timeout: Duration) -> Result<Option<WatchEvent>> {
        if let Some(e) = self.queue.pop_front() {
            return Ok(Some(e));
        }
        let now = Instant::now();
        if now < self.next_poll {
            std::thread::sleep(timeout.min(self.next_poll - now));
            if Instant::now() < self.next_poll {
                return Ok(None);
            }
        }
        self.next_poll = Instant::now() + self.interval;
        self.poll()?;
        Ok(self.queue.pop_front())
    }

    fn poll(&mut self) -> Result<()> {
        let t: &Table = &self.store.table;
        let sql = format!(
            "SELECT dir, COUNT(*), MAX(msgnum) FROM {} WHERE dir LIKE ? AND msgnum >= 0 GROUP BY dir",
            t.name
        );
        let mut dirs = BTreeMap::new();
        {
            let mut db = self.store.db();
            for s in &self.scope {
                db.query_each(&sql, &[super::db::V::Text(Table::like(s))], &mut |r| {
                    if let (Some(d), Some(n), Some(m)) = (r[0].text(), r[1].int(), r[2].int()) {
                        if d.starts_with(s.as_str()) {
                            dirs.insert(d, (n, m));
                        }
                    }
                })
                .map_err(|e| Error::Failed(format!("cannot poll table {}: {e}", t.name)))?;
            }
        }
        let mut changed: Vec<BoxKey> = Vec::new();
        let mut note = |d: &str| {
            if let Some(p) = t.place(d) {
                let k = (
                    p.mailbox.context.to_string(),
                    p.mailbox.mailbox().to_string(),
                );
                if !changed.contains(&k) {
                    changed.push(k);
                }
            }
        };
        for (d, v) in &dirs {
            if self.dirs.get(d) != Some(v) {
                note(d);
            }
        }
        for d in self.dirs.keys() {
            if !dirs.contains_key(d) {
                note(d);
            }
        }
        self.dirs = dirs;
        if !changed.is_empty() {
            // Listings made for the events must see the new rows.
            self.store.invalidate();
        }
        for k in changed {
            self.refresh_box(&k)?;
        }
        if self.all_events {
            self.poll_greetings()?;
        }
        self.primed = true;
        Ok(())
    }

    fn refresh_box(&mut self, k: &BoxKey) -> Result<()> {
        let t = &self.store.table;
        let prefix = format!("{}/{}/{}/", t.prefix, k.0, k.1);
        let mut now: BoxState = HashMap::new();
        self.store
            .table
            .rows_under(&mut self.store.db(), &prefix, &mut |r| {
                let Some(p) = t.place(&r.dir) else { return };
                let Some(num) = r.msg_num() else { return };
                let folder = p.folder.dir_name().to_string();
                let seen = SeenMessage {
                    key: MessageKey {
                        context: k.0.clone(),
                        mailbox: k.1.clone(),
                        folder: folder.clone(),
                        number: num.get(),
                    },
                    txt_path: PathBuf::from(format!("{}/{}", r.dir, num.stem())),
                    identity: identity(&r),
                    txt: r.metadata(t).to_asterisk_bytes(),
                };
                now.insert(seen.identity.clone(), (folder, num.get(), seen));
            })?;
        let before = self.boxes.remove(k);
        if self.primed {
            let at = SystemTime::now();
            let mailbox = k.clone();
            let ev = |kind, message: Option<SeenMessage>, from: Option<MessageKey>| WatchEvent {
                kind,
                message,
                from,
                mailbox: mailbox.clone(),
                at,
            };
            let mut events = Vec::new();
            match &before {
                None if self.all_events => events.push(ev(EventKind::MailboxCreated, None, None)),
                _ => {}
            }
            let empty = HashMap::new();
            let old = before.as_ref().unwrap_or(&empty);
            let mut fresh: Vec<&(String, u16, SeenMessage)> = now.values().collect();
            fresh.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
            for (folder, num, m) in fresh {
                match old.get(&m.identity) {
                    None if folder == "INBOX" || folder == "Urgent" => {
                        events.push(ev(EventKind::New, Some(m.clone()), None))
                    }
                    None => {}
                    Some((f0, n0, m0)) if self.all_events && (f0 != folder || n0 != num) => {
                        let kind = if (f0 == "INBOX" || f0 == "Urgent") && folder == "Old" {
                            EventKind::Read
                        } else if folder == "Deleted" {
                            EventKind::Deleted
                        } else {
                            EventKind::Moved
                        };
                        events.push(ev(kind, Some(m.clone()), Some(m0.key.clone())));
                    }
                    Some(_) => {}
                }
            }
            if self.all_events {
                for (id, (_, _, m0)) in old {
                    if !now.contains_key(id) {
                        events.push(ev(
                            EventKind::Deleted,
                            Some(m0.clone()),
                            Some(m0.key.clone()),
                        ));
                    }
                }
            }
            self.queue.extend(events);
        }
        if !now.is_empty() {
            self.boxes.insert(k.clone(), now);
        }
        Ok(())
    }
}

// ---- greetings: rows with msgnum -1, dir `<box>/<unavail|busy|greet|temp>` (spec §10.1) ----

impl SqlPoller<'_> {
    /// Compares the greeting rows with the last poll: a row new or different
    /// is a greeting recorded, a row gone one removed.
    fn poll_greetings(&mut self) -> Result<()> {
        let t: &Table = &self.store.table;
        // A fingerprint without reading whole recordings at every poll: the
        // length and a hash of the last KiB (a new recording differs there),
        // with origtime (vmtool's sets write it).
        let (len, tail) = match t.kind {
            super::db::Kind::Postgres => (
                "octet_length(recording)",
                "md5(substring(recording from greatest(1, octet_length(recording) - 1023)))",
            ),
            super::db::Kind::Mysql => (
                "LENGTH(recording)",
                "MD5(SUBSTRING(recording, GREATEST(1, LENGTH(recording) - 1023)))",
            ),
        };
        let sql = format!(
            "SELECT dir, {}, {len}, {tail} FROM {} WHERE dir LIKE ? AND msgnum = -1",
            t.text_cast("origtime"),
            t.name
        );
        let mut now = BTreeMap::new();
        {
            let mut db = self.store.db();
            for s in &self.scope {
                db.query_each(&sql, &[super::db::V::Text(Table::like(s))], &mut |r| {
                    let Some(d) = r[0].text() else { return };
                    if d.starts_with(s.as_str()) && greeting_place(t, &d).is_some() {
                        let cell = |i: usize| r[i].text().unwrap_or_default();
                        now.insert(d, format!("{}/{}/{}", cell(1), cell(2), cell(3)));
                    }
                })
                .map_err(|e| Error::Failed(format!("cannot poll table {}: {e}", t.name)))?;
            }
        }
        if self.primed {
            let at = SystemTime::now();
            let mut ev = |kind, dir: &str| {
                if let Some((mailbox, _)) = greeting_place(t, dir) {
                    self.queue.push_back(WatchEvent {
                        kind,
                        message: None,
                        from: None,
                        mailbox,
                        at,
                    });
                }
            };
            for (d, fp) in &now {
                if self.greetings.get(d) != Some(fp) {
                    if let Some((_, g)) = greeting_place(t, d) {
                        ev(EventKind::Greeting(g), d);
                    }
                }
            }
            for d in self.greetings.keys() {
                if !now.contains_key(d) {
                    if let Some((_, g)) = greeting_place(t, d) {
                        ev(EventKind::GreetingRemoved(g), d);
                    }
                }
            }
        }
        self.greetings = now;
        Ok(())
    }
}

/// The box and greeting of a greeting row's `dir`.
fn greeting_place(t: &Table, dir: &str) -> Option<(BoxKey, Greeting)> {
    let rest = dir.strip_prefix(&t.prefix)?.strip_prefix('/')?;
    let mut it = rest.split('/');
    let (c, b, g) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || c.is_empty() || b.is_empty() {
        return None;
    }
    let g = Greeting::ALL.into_iter().find(|x| x.base() == g)?;
    Some(((c.to_string(), b.to_string()), g))
}
