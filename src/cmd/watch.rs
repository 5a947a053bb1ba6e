//! `vmtool watch`: turns the watch engine's events into lines or JSON, and
//! runs `--exec` commands with bounded concurrency and a bounded queue.

use super::prelude::*;
use crate::error::{Error, Exit, Result};
use crate::metadata::Metadata;
use crate::render::{sanitize, MessageRow};
use crate::scan::MsgFiles;
use crate::spool::{Context, Folder, MailboxId, MsgNum};
use crate::store::greeting::Kind;
use crate::store::watch::Scope;
use crate::store::MailboxStore;
use crate::target::Target;
use crate::watch::{EventKind, SeenMessage, WatchEvent};
use std::io::Write;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Contexts or boxes to watch (default: the whole spool, including boxes created later)
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Also report messages read (INBOX/Urgent -> Old), moved, deleted, new boxes, and greetings recorded or removed
    #[arg(long)]
    pub all: bool,
    /// Exit after this many events (e.g. 1: wait for the next voicemail)
    #[arg(long, value_name = "N")]
    pub max_events: Option<u64>,
    /// Commands run at the same time at most, for --exec
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub jobs: usize,
    /// Events waiting for --exec at most (then the watch waits and warns; none is dropped)
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub queue: usize,
    /// Poll every SECS seconds (also e.g. 30s, 1min): how voicemail kept in SQL is watched (it has no change feed) [default on SQL: 2]
    #[arg(long, value_name = "SECS", value_parser = crate::age::parse_secs_f64)]
    pub poll: Option<f64>,
    /// Run a command per event, with the message in VMTOOL_* environment variables (no shell); must come last
    #[arg(long, value_name = "CMD [ARG]...", num_args = 1.., allow_hyphen_values = true)]
    pub exec: Vec<String>,
}

fn kind_name(k: EventKind) -> &'static str {
    match k {
        EventKind::New => "new",
        EventKind::Read => "read",
        EventKind::Moved => "moved",
        EventKind::Deleted => "deleted",
        EventKind::MailboxCreated => "mailbox-created",
        EventKind::Greeting(_) => "greeting",
        EventKind::GreetingRemoved(_) => "greeting-removed",
    }
}

/// A greeting event's greeting (`unavail`, `busy`, `name`, `temp`) and the
/// formats it has now.
fn greeting_of(setup: &Setup, ev: &WatchEvent) -> Option<(Kind, Vec<String>)> {
    let g = match ev.kind {
        EventKind::Greeting(g) | EventKind::GreetingRemoved(g) => g,
        _ => return None,
    };
    let kind = Kind::parse(g.base()).ok()?;
    let mut formats = Vec::new();
    if let EventKind::Greeting(_) = ev.kind {
        let mb = MailboxId::new(Context::new(&ev.mailbox.0).ok()?, &ev.mailbox.1).ok()?;
        if let Ok(gs) = setup.store.greetings(&mb, &[]) {
            formats = gs
                .into_iter()
                .find(|x| x.kind == kind)
                .map(|x| x.files.into_iter().map(|f| f.ext).collect())
                .unwrap_or_default();
        }
    }
    Some((kind, formats))
}

/// Runs `--exec` commands: at most `jobs` at once, at most `queue` waiting.
struct Executor {
    tx: Option<SyncSender<Vec<(String, String)>>>,
    workers: Vec<JoinHandle<()>>,
    failures: mpsc::Receiver<String>,
}

impl Executor {
    fn new(cmd: Vec<String>, jobs: usize, queue: usize) -> Executor {
        let (tx, rx) = mpsc::sync_channel::<Vec<(String, String)>>(queue.max(1));
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        let (ftx, frx) = mpsc::channel();
        let workers = (0..jobs.max(1))
            .map(|_| {
                let rx = rx.clone();
                let cmd = cmd.clone();
                let ftx = ftx.clone();
                std::thread::spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(guard) => guard.recv(),
                        Err(_) => return,
                    };
                    let Ok(env) = job else { return };
                    // Never through a shell: caller-ID text cannot become a command.
                    let status = Command::new(&cmd[0]).args(&cmd[1..]).envs(env).status();
                    let msg = match status {
                        Ok(s) if s.success() => continue,
                        Ok(s) => format!("--exec {}: {s}", cmd[0]),
                        Err(e) => format!("--exec {}: {e}", cmd[0]),
                    };
                    let _ = ftx.send(msg);
                })
            })
            .collect();
        Executor {
            tx: Some(tx),
            workers,
            failures: frx,
        }
    }

    /// Queues a job; when the queue is full, warns and waits (never drops).
    fn submit(&self, env: Vec<(String, String)>, rep: &mut Reporter) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(env) {
            Ok(()) => {}
            Err(TrySendError::Full(env)) => {
                rep.warn(
                    "--exec queue is full: waiting for running commands (raise --jobs or --queue)",
                );
                let _ = tx.send(env);
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    fn report(&self, rep: &mut Reporter) {
        while let Ok(m) = self.failures.try_recv() {
            rep.warn(&format!("{m} (the watch goes on)"));
        }
    }

    fn finish(mut self, rep: &mut Reporter) {
        self.tx.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        self.report(rep);
    }
}

/// The listing row of an event's message (formats read from its folder now).
fn row_of(setup: &Setup, m: &SeenMessage) -> Option<MessageRow> {
    let mb = MailboxId::new(Context::new(&m.key.context).ok()?, &m.key.mailbox).ok()?;
    let folder = Folder::from_dir_name(&m.key.folder).ok()?;
    let num = MsgNum::new(m.key.number)?;
    let audio = setup
        .store
        .scan_folder(&mb, &folder)
        .ok()
        .and_then(|s| s.messages.into_iter().find(|x| x.num == num))
        .map(|x| x.audio)
        .unwrap_or_default();
    let files = MsgFiles {
        num,
        txt: true,
        audio,
    };
    let meta = Metadata::parse(&m.txt).ok();
    let mut row = setup.store.message_row(
        &mb,
        &folder,
        &files,
        meta.as_ref(),
        setup.zone_for(&mb, false),
    );
    row.path = m.txt_path.display().to_string();
    Some(row)
}

fn env_of(
    ev: &WatchEvent,
    row: Option<&MessageRow>,
    greeting: Option<&(Kind, Vec<String>)>,
) -> Vec<(String, String)> {
    let mut env = vec![
        ("VMTOOL_EVENT".to_string(), kind_name(ev.kind).to_string()),
        ("VMTOOL_CONTEXT".into(), ev.mailbox.0.clone()),
        ("VMTOOL_BOX".into(), ev.mailbox.1.clone()),
    ];
    if let Some((kind, formats)) = greeting {
        env.push(("VMTOOL_GREETING".into(), kind.name().into()));
        env.push(("VMTOOL_GREETING_FORMATS".into(), formats.join(",")));
    }
    if let Some(from) = &ev.from {
        env.push(("VMTOOL_FROM_FOLDER".into(), from.folder.clone()));
    }
    if let Some(r) = row {
        let opt = |o: &Option<String>| o.clone().unwrap_or_default();
        env.extend([
            ("VMTOOL_FOLDER".to_string(), r.folder.clone()),
            ("VMTOOL_NUMBER".into(), r.number.clone()),
            ("VMTOOL_MSG_PATH".into(), r.path.clone()),
            ("VMTOOL_CALLERID".into(), opt(&r.callerid)),
            ("VMTOOL_CALLERID_NAME".into(), opt(&r.callerid_name)),
            ("VMTOOL_CALLERID_NUM".into(), opt(&r.callerid_num)),
            // Text that is not UTF-8 shows U+FFFD above: its bytes, as in JSON.
            ("VMTOOL_CALLERID_BASE64".into(), opt(&r.callerid_base64)),
            (
                "VMTOOL_DURATION".into(),
                r.duration.map(|d| d.to_string()).unwrap_or_default(),
            ),
            (
                "VMTOOL_ORIGTIME".into(),
                r.origtime.map(|d| d.to_string()).unwrap_or_default(),
            ),
            ("VMTOOL_DATE".into(), opt(&r.date)),
            ("VMTOOL_MSG_ID".into(), opt(&r.msg_id)),
            (
                "VMTOOL_URGENT".into(),
                if r.urgent { "1" } else { "0" }.into(),
            ),
        ]);
    }
    // Environment values cannot hold NUL; such text is dropped, not passed.
    env.retain(|(_, v)| !v.contains('\0'));
    env
}

pub fn exec(setup: &Setup, a: &WatchArgs, out: &mut dyn Write, rep: &mut Reporter) -> Result<Exit> {
    let mut targets = Vec::new();
    for t in setup.resolve_all(&a.targets, rep) {
        match t {
            Target::Context(_) | Target::Mailbox(_) => targets.push(t),
            other => {
                return Err(Error::Usage(format!(
                    "watch takes contexts or boxes, not {}",
                    crate::target::describe(&other)
                )))
            }
        }
    }
    if rep.failed() {
        return Ok(rep.finish(0));
    }
    let scope: Vec<Scope> = targets
        .iter()
        .filter_map(|t| match t {
            Target::Mailbox(mb) => Some(Scope::Mailbox(mb.clone())),
            Target::Context(c) => Some(Scope::Context(c.clone())),
            _ => None,
        })
        .collect();
    let mut source = setup.store.watch(&scope, a.poll, a.all)?;
    // Said once the source runs: scripts (and tests) can wait for it.
    if (setup.env.stdout_tty && !setup.quiet) || setup.verbose {
        rep.note(&source.started);
    }
    let exec = (!a.exec.is_empty()).then(|| Executor::new(a.exec.clone(), a.jobs, a.queue));
    let mut seen = 0u64;
    while !INTERRUPTED.load(Ordering::SeqCst) && a.max_events.is_none_or(|m| seen < m) {
        for w in source.warnings() {
            rep.warn(&w);
        }
        if let Some(x) = &exec {
            x.report(rep);
        }
        let ev = match source.next_event(Duration::from_millis(250))? {
            Some(ev) => ev,
            None => continue,
        };
        seen += 1;
        let row = ev.message.as_ref().and_then(|m| row_of(setup, m));
        let greeting = greeting_of(setup, &ev);
        let line = match setup.format {
            Format::Json => {
                let mut v = match &row {
                    Some(r) => serde_json::to_value(r).map_err(|e| Error::Failed(e.to_string()))?,
                    None => serde_json::json!({"context": ev.mailbox.0, "box": ev.mailbox.1}),
                };
                if let Some(o) = v.as_object_mut() {
                    o.insert("event".into(), kind_name(ev.kind).into());
                    if let Some(f) = &ev.from {
                        o.insert("from_folder".into(), f.folder.clone().into());
                        o.insert("from_number".into(), format!("{:04}", f.number).into());
                    }
                    if let Some((kind, formats)) = &greeting {
                        o.insert("greeting".into(), kind.name().into());
                        o.insert("formats".into(), formats.clone().into());
                    }
                }
                v.to_string()
            }
            _ => {
                let when = chrono::DateTime::<chrono::Local>::from(ev.at)
                    .format("%H:%M:%S")
                    .to_string();
                let what = match &row {
                    Some(r) => {
                        let who = match (&r.callerid_name, &r.callerid_num) {
                            (Some(n), Some(num)) => format!("{n} <{num}>"),
                            (Some(n), None) => n.clone(),
                            (None, Some(num)) => num.clone(),
                            (None, None) => "-".into(),
                        };
                        let from = ev
                            .from
                            .as_ref()
                            .map(|f| format!(" (from {}/msg{:04})", f.folder, f.number))
                            .unwrap_or_default();
                        format!(
                            "{}/{}/{}/msg{}{from}  {}  {}{}",
                            r.context,
                            r.mailbox,
                            r.folder,
                            r.number,
                            who,
                            r.duration
                                .map(crate::render::duration_text)
                                .unwrap_or_default(),
                            if r.urgent { "  URGENT" } else { "" }
                        )
                    }
                    None => match &greeting {
                        Some((kind, formats)) if formats.is_empty() => {
                            format!("{}/{} {kind}", ev.mailbox.0, ev.mailbox.1)
                        }
                        Some((kind, formats)) => format!(
                            "{}/{} {kind} ({})",
                            ev.mailbox.0,
                            ev.mailbox.1,
                            formats.join(", ")
                        ),
                        None => format!("{}/{}", ev.mailbox.0, ev.mailbox.1),
                    },
                };
                format!("{when}  {:8} {}", kind_name(ev.kind), sanitize(&what))
            }
        };
        writeln!(out, "{line}").map_err(out_err)?;
        out.flush().map_err(out_err)?;
        if let Some(x) = &exec {
            x.submit(env_of(&ev, row.as_ref(), greeting.as_ref()), rep);
        }
    }
    if let Some(x) = exec {
        x.finish(rep);
    }
    if INTERRUPTED.load(Ordering::SeqCst) {
        return Ok(Exit::Interrupted);
    }
    Ok(Exit::Ok)
}
