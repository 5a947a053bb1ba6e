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
    /// Greeting rows, with `all_events` only (boxed: most watches have none).
    greetings: Box<GreetingPoll>,
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
            greetings: Box::default(),
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
//
// Reading `recording` at every poll is what a poll must not do: on MariaDB even
// LENGTH() reads the whole blob (20,000 greetings of 64 KB: about 10 s a
// poll). So every poll reads the other columns only (on PostgreSQL also
// `xmin`, new with every insert or update of a row), which shows rows that come,
// go or are rewritten by vmtool (origtime) or on PostgreSQL by anyone; and on
// MariaDB, where Asterisk can rewrite a greeting leaving every other column
// as it was, each poll also hashes the recordings of a few rows in turn.

/// Greeting rows whose recordings are hashed per poll, on MariaDB.
const HASHED_PER_POLL: usize = 16;

/// What the poller knows of the greeting rows.
#[derive(Debug, Default)]
struct GreetingPoll {
    /// By `dir`.
    rows: BTreeMap<String, GreetingRow>,
    /// The last row whose recording was hashed (MariaDB).
    cursor: String,
}

/// What the poller knows of one greeting row.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GreetingRow {
    /// Its columns other than `recording` (and on PostgreSQL `xmin`).
    columns: String,
    /// MD5 of the recording, once its turn came (MariaDB).
    hash: Option<String>,
}

impl SqlPoller<'_> {
    /// Compares the greeting rows with the last poll: a row new or different
    /// is a greeting recorded, a row gone one removed.
    fn poll_greetings(&mut self) -> Result<()> {
        let t: &Table = &self.store.table;
        let pg = t.kind == super::db::Kind::Postgres;
        let version = if pg { "CAST(xmin AS TEXT)" } else { "''" };
        let cat = if t.has_category { "category" } else { "NULL" };
        let sql = format!(
            "SELECT dir, {}, {}, msg_id, {cat}, {version} FROM {} WHERE dir LIKE ? AND msgnum = -1",
            t.text_cast("origtime"),
            t.text_cast("duration"),
            t.name
        );
        let mut now: BTreeMap<String, GreetingRow> = BTreeMap::new();
        let mut db = self.store.db();
        for s in &self.scope {
            db.query_each(&sql, &[super::db::V::Text(Table::like(s))], &mut |r| {
                let Some(d) = r[0].text() else { return };
                if d.starts_with(s.as_str()) && greeting_place(t, &d).is_some() {
                    let cell = |i: usize| r[i].text().unwrap_or_else(|| "NULL".into());
                    let columns = format!(
                        "{}/{}/{}/{}/{}",
                        cell(1),
                        cell(2),
                        cell(3),
                        cell(4),
                        cell(5)
                    );
                    now.insert(
                        d,
                        GreetingRow {
                            columns,
                            hash: None,
                        },
                    );
                }
            })
            .map_err(|e| Error::Failed(format!("cannot poll table {}: {e}", t.name)))?;
        }
        // Unchanged columns: the recording's hash known so far still holds.
        for (d, row) in now.iter_mut() {
            if let Some(old) = self
                .greetings
                .rows
                .get(d)
                .filter(|o| o.columns == row.columns)
            {
                row.hash.clone_from(&old.hash);
            }
        }
        let mut changed: Vec<(String, EventKind)> = Vec::new();
        if !pg && !now.is_empty() {
            // The next few rows after the last one hashed, round the table.
            let next: Vec<String> = now
                .range::<String, _>((
                    std::ops::Bound::Excluded(&self.greetings.cursor),
                    std::ops::Bound::Unbounded,
                ))
                .chain(now.iter())
                .map(|(d, _)| d.clone())
                .take(HASHED_PER_POLL.min(now.len()))
                .collect();
            let marks = vec!["?"; next.len()].join(", ");
            let sql = format!(
                "SELECT dir, MD5(recording) FROM {} WHERE msgnum = -1 AND dir IN ({marks})",
                t.name
            );
            let params: Vec<super::db::V> =
                next.iter().map(|d| super::db::V::Text(d.clone())).collect();
            db.query_each(&sql, &params, &mut |r| {
                let (Some(d), hash) = (r[0].text(), r[1].text()) else {
                    return;
                };
                if let Some(row) = now.get_mut(&d) {
                    let before = row.hash.replace(hash.unwrap_or_default());
                    if before.is_some() && before != row.hash {
                        if let Some((_, g)) = greeting_place(t, &d) {
                            changed.push((d.clone(), EventKind::Greeting(g)));
                        }
                    }
                }
            })
            .map_err(|e| Error::Failed(format!("cannot poll table {}: {e}", t.name)))?;
            if let Some(last) = next.last() {
                self.greetings.cursor.clone_from(last);
            }
        }
        drop(db);
        if self.primed {
            for d in now.keys() {
                let columns_changed = self
                    .greetings
                    .rows
                    .get(d)
                    .is_none_or(|o| o.columns != now[d].columns);
                if columns_changed && !changed.iter().any(|(c, _)| c == d) {
                    if let Some((_, g)) = greeting_place(t, d) {
                        changed.push((d.clone(), EventKind::Greeting(g)));
                    }
                }
            }
            for d in self.greetings.rows.keys() {
                if !now.contains_key(d) {
                    if let Some((_, g)) = greeting_place(t, d) {
                        changed.push((d.clone(), EventKind::GreetingRemoved(g)));
                    }
                }
            }
            changed.sort_by(|a, b| a.0.cmp(&b.0));
            let at = SystemTime::now();
            for (d, kind) in changed {
                if let Some((mailbox, _)) = greeting_place(t, &d) {
                    self.queue.push_back(WatchEvent {
                        kind,
                        message: None,
                        from: None,
                        mailbox,
                        at,
                    });
                }
            }
        }
        self.greetings.rows = now;
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
