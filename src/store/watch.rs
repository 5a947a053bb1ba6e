//! Where `watch` gets its events: inotify on a file spool (the watch engine,
//! `crate::watch`), polling on a SQL table (it has no change feed).

use super::sql::watch::SqlPoller;
use super::{MailboxStore, Store};
use crate::error::{Error, Result};
use crate::spool::{Context, MailboxId};
use crate::watch::{WatchEvent, WatchOptions, Watcher};
use std::time::Duration;

/// What is watched: a context or a box.
pub enum Scope {
    Context(Context),
    Mailbox(MailboxId),
}

/// A running source of message events.
pub struct EventSource<'a> {
    inner: Inner<'a>,
    /// Said once the source runs ("watching …; Ctrl-C stops").
    pub started: String,
}

enum Inner<'a> {
    Files(Box<Watcher>),
    Sql(SqlPoller<'a>),
}

impl Store {
    /// Starts watching `scope` (empty: everything, boxes created later
    /// included). `poll` is the SQL store's interval (default 2 s); a file
    /// spool refuses it.
    pub fn watch(&self, scope: &[Scope], poll: Option<f64>, all: bool) -> Result<EventSource<'_>> {
        match self {
            Store::Sql(sql) => {
                let secs = poll.unwrap_or(2.0);
                if !(secs.is_finite() && (0.05..=3600.0).contains(&secs)) {
                    return Err(Error::Usage("--poll takes 0.05 to 3600 seconds".into()));
                }
                let prefixes = scope
                    .iter()
                    .map(|s| match s {
                        Scope::Mailbox(mb) => sql.table.box_prefix(mb),
                        Scope::Context(c) => sql.table.context_prefix(c),
                    })
                    .collect();
                let interval = Duration::from_secs_f64(secs);
                let mut poller = SqlPoller::new(sql, interval, prefixes, all);
                // The first poll is the baseline: what is there now is not news.
                poller.next_event(Duration::ZERO)?;
                Ok(EventSource {
                    inner: Inner::Sql(poller),
                    started: format!("watching {} every {secs} s; Ctrl-C stops", sql.describe()),
                })
            }
            Store::File(f) => {
                if poll.is_some() {
                    return Err(Error::Usage(
                        "--poll is for voicemail kept in SQL; a file spool is watched with inotify"
                            .into(),
                    ));
                }
                let root = std::fs::canonicalize(f.spool().root())
                    .map_err(|e| Error::io("resolve", f.spool().root(), e))?;
                let dirs = scope
                    .iter()
                    .map(|s| match s {
                        Scope::Mailbox(mb) => root.join(mb.context.as_str()).join(mb.mailbox()),
                        Scope::Context(c) => root.join(c.as_str()),
                    })
                    .collect();
                let mut opts = WatchOptions::new(&root);
                opts.scope = dirs;
                opts.all_events = all;
                let watcher = Watcher::start(opts).map_err(|e| Error::Failed(e.to_string()))?;
                Ok(EventSource {
                    inner: Inner::Files(Box::new(watcher)),
                    started: format!("watching {}; Ctrl-C stops", root.display()),
                })
            }
        }
    }
}

impl EventSource<'_> {
    /// What the source noticed since last asked (e.g. a watch limit reached).
    pub fn warnings(&mut self) -> Vec<String> {
        match &mut self.inner {
            Inner::Files(w) => w.warnings(),
            Inner::Sql(_) => Vec::new(),
        }
    }

    /// The next event, waiting at most `timeout`.
    pub fn next_event(&mut self, timeout: Duration) -> Result<Option<WatchEvent>> {
        match &mut self.inner {
            Inner::Files(w) => w
                .next_event(timeout)
                .map_err(|e| Error::Failed(e.to_string())),
            Inner::Sql(p) => p.next_event(timeout),
        }
    }
}
