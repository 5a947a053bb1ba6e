//! `vmtool serve`: voicemail in the browser for box owners. A small HTTP
//! server (axum on a tokio runtime) over the same store, target resolver
//! and change path as the CLI; see `LONG_HELP` for the HTTP interface.

use super::prelude::*;
use std::net::SocketAddr;

#[cfg(feature = "serve")]
mod auth;
#[cfg(feature = "serve")]
mod page;
#[cfg(feature = "serve")]
mod web;

pub const LONG_HELP: &str = "\
Box owners log in with box@context and the PIN Asterisk would accept (voicemail.conf, or \
secret.conf with passwordlocation=spooldir; a box without a PIN cannot log in). The page \
lists folders and messages with a waveform picture of each, plays them (with seeking), \
offers them as WAV downloads, marks them heard or unheard, moves, deletes and forwards them \
to another box, and sets, plays and removes the box's greetings (unavail, busy, name, temp) \
from an uploaded file, through the same locks, store operations and AMI refresh as the \
command line. Each change writes an audit line (time, who, client address, what) to \
standard error.

Admins (--admins FILE) log in with their own name (no '@') and password, never a box PIN. \
They see every box (the objects of `boxes --format json`), search messages by caller across \
all boxes, and open any box, naming it with mailbox=box@context on every request about it; \
the same CSRF, session and throttling rules apply, and the audit line says \"admin NAME\".

Admins file: one admin per line, NAME:HASH, where NAME has letters, digits, '.', '_' and '-' \
and HASH is an argon2 PHC string; '#' starts a comment line. Make a line with \
`vmtool serve --hash-password NAME`, which reads the password (8 characters or more) from \
the first line of standard input, e.g. \
`vmtool serve --hash-password alice >> /etc/vmtool/admins` (type the password, then Enter). \
The file is checked at start and read again at each admin login, so an added or removed \
admin needs no restart; keep it readable by the server's user only.

Safety: binds 127.0.0.1:8080 by default; a --listen address that is not loopback needs \
--tls-cert and --tls-key (PEM), or --insecure-http. Session cookies are random, HttpOnly, \
SameSite=Strict, Secure under TLS and expire (--session-timeout). Five failed logins from \
one address or for one name lock it for five minutes, with a growing delay before; a wrong \
answer never says whether the box or admin exists. Every state-changing request needs the \
header X-CSRF-Token (from /api/session), else 403. Folder and number in URLs go through the \
CLI's target resolver and must name the session's own box (an admin's: the box named). \
Strict Content-Security-Policy, no inline script; request bodies over 16 KiB are refused \
(413), greeting uploads over 8 MiB too.

HTTP interface (mailbox=box@context: for admins, on every request about one box):
  GET  /                                  the page (a login form without a session)
  POST /login                             form fields mailbox (box@context, or an admin's name) and pin (the PIN, or the admin's password): 303 to / with a session cookie; 401 when wrong; 429 while locked
  POST /logout                            ends the session
  GET  /api/session                       {\"mailbox\", \"csrf\"}; an admin's: {\"mailbox\": null, \"admin\", \"csrf\"}
  GET  /api/folders                       [{\"folder\", \"count\"}] of the box
  GET  /api/messages?folder=F             the folder's messages: the fields of `ls --format json`
  GET  /api/messages/F/N/audio            audio/wav, 16-bit PCM; HTTP Range supported
  GET  /api/messages/F/N/download         the same WAV as an attachment named context-box-folder-msgNNNN.wav
  GET  /api/messages/F/N/waveform         image/svg+xml: 100 bars of the decoded audio's peaks
  POST /api/messages/F/N/read             INBOX/Urgent -> Old; JSON {\"folder\", \"number\"} of the new place
  POST /api/messages/F/N/unread           Old -> INBOX
  POST /api/messages/F/N/delete           deleted (into Deleted when backupdeleted is set)
  POST /api/messages/F/N/move?to=G        to folder G of the same box
  POST /api/messages/F/N/forward?to=B@C   a copy into box B@C's INBOX (Urgent for an urgent one), as the phone menu forwards; {\"mailbox\", \"folder\", \"number\"}; 409 when that box is full
  GET  /api/greetings                     [{\"kind\", \"exists\", \"duration\", \"files\"}] for unavail, busy, name, temp
  GET  /api/greetings/K/audio             greeting K as audio/wav
  POST /api/greetings/K?ext=E             body: an audio file (E: wav, mp3, ogg, flac; at most 8 MiB) written as greeting K in every format= of voicemail.conf
  POST /api/greetings/K/delete            removes greeting K
  GET  /api/boxes                         admins: every box, the objects of `boxes --format json`
  GET  /api/search?caller=TEXT            admins: messages of every box whose caller name or number contains TEXT (case-insensitive), newest first, at most 500, as `ls --format json`
  GET  /events                            server-sent events: a \"change\" event (data: the folders' counts) each time the box changes, a deposit included; the box is looked at every second

Answers: 401 without a valid session, 403 without the CSRF header or for a box or route the \
session may not use, 404 for a message, folder, box or greeting that is not there, 400 for \
a malformed one, 409 when the message is not in a folder the action applies to or the box \
is full, 413 for a body over the limit, 415 for an upload type not taken.";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on (port 0: any free port, printed on standard error)
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// TLS certificate chain (PEM); with --tls-key the server speaks HTTPS
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM)
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Allow plain HTTP on an address that is not loopback (PINs and cookies travel unencrypted)
    #[arg(long)]
    pub insecure_http: bool,
    /// How long a login lasts; e.g. 30min, 8h
    #[arg(long, value_name = "SECS", default_value = "8h", value_parser = crate::age::parse_secs_f64)]
    pub session_timeout: f64,
    /// Admins who see every box: a file of NAME:HASH lines (see --hash-password); read at each admin login
    #[arg(long, value_name = "FILE")]
    pub admins: Option<PathBuf>,
    /// Print an admins-file line NAME:HASH (argon2id) for the password read from standard input, and exit
    #[arg(long, value_name = "NAME", conflicts_with_all = ["admins", "tls_cert", "tls_key", "insecure_http"])]
    pub hash_password: Option<String>,
}

/// `serve --hash-password NAME`: the password is the first line of
/// standard input (so it is in no process list or shell history).
#[cfg(feature = "serve")]
pub fn hash_password(a: &ServeArgs, out: &mut dyn Write) -> Result<Exit> {
    use std::io::BufRead;
    let name = a.hash_password.as_deref().unwrap_or_default();
    if !auth::valid_admin_name(name) {
        return Err(Error::Usage(format!(
            "--hash-password {name:?}: an admin name has letters, digits, '.', '_' and '-' only (no '@': that is a box)"
        )));
    }
    let mut line = String::new();
    // Typed at a terminal: asked for, and not echoed.
    let saved = std::io::IsTerminal::is_terminal(&std::io::stdin())
        .then(|| rustix::termios::tcgetattr(rustix::stdio::stdin()).ok())
        .flatten();
    if let Some(t) = &saved {
        let mut quiet = t.clone();
        quiet.local_modes.remove(rustix::termios::LocalModes::ECHO);
        let _ = rustix::termios::tcsetattr(
            rustix::stdio::stdin(),
            rustix::termios::OptionalActions::Now,
            &quiet,
        );
        eprint!("Password for {name}: ");
    }
    let read = std::io::stdin().lock().read_line(&mut line);
    if let Some(t) = &saved {
        let _ = rustix::termios::tcsetattr(
            rustix::stdio::stdin(),
            rustix::termios::OptionalActions::Now,
            t,
        );
        eprintln!();
    }
    read.map_err(|e| Error::Failed(format!("reading the password from standard input: {e}")))?;
    let pw = line.trim_end_matches(['\n', '\r']);
    if pw.chars().count() < 8 {
        return Err(Error::Usage(
            "--hash-password: give a password of at least 8 characters on standard input".into(),
        ));
    }
    let hash = auth::hash_password(pw).map_err(Error::Failed)?;
    writeln!(out, "{name}:{hash}").map_err(|e| Error::Failed(e.to_string()))?;
    Ok(Exit::Ok)
}

#[cfg(not(feature = "serve"))]
pub fn hash_password(a: &ServeArgs, out: &mut dyn Write) -> Result<Exit> {
    let _ = (a, out);
    Err(Error::Failed(
        "this vmtool was built without the `serve` feature: use the .deb/.rpm build or rebuild with `cargo build --release --features serve`".into(),
    ))
}

#[cfg(not(feature = "serve"))]
pub fn exec(setup: Setup, g: &GlobalArgs, a: &ServeArgs, rep: &mut Reporter) -> Result<Exit> {
    let _ = (setup, g, a, rep);
    Err(Error::Failed(
        "this vmtool was built without the `serve` feature: use the .deb/.rpm build or rebuild with `cargo build --release --features serve`".into(),
    ))
}

#[cfg(feature = "serve")]
pub fn exec(setup: Setup, g: &GlobalArgs, a: &ServeArgs, rep: &mut Reporter) -> Result<Exit> {
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        _ => None,
    };
    if !a.listen.ip().is_loopback() && tls.is_none() && !a.insecure_http {
        return Err(Error::Usage(format!(
            "--listen {}: an address other machines reach needs TLS (--tls-cert FILE --tls-key FILE), or --insecure-http to send PINs in clear",
            a.listen
        )));
    }
    if !(a.session_timeout.is_finite() && a.session_timeout >= 1.0) {
        return Err(Error::Usage(
            "--session-timeout: give at least one second, e.g. 30min or 8h".into(),
        ));
    }
    if setup.vmconf.is_none() {
        return Err(Error::Usage(
            "serve needs voicemail.conf (the PINs): give --voicemail-conf FILE".into(),
        ));
    }
    // Checked now so a misconfigured lock option fails at start, not per click.
    super::lock_options(&setup, g)?;
    if let Some(p) = &a.admins {
        let n = auth::load_admins(p).map_err(Error::Usage)?.len();
        if n == 0 {
            return Err(Error::Usage(format!(
                "--admins {}: no admin in it; add lines made by `vmtool serve --hash-password NAME`",
                p.display()
            )));
        }
    }
    web::run(setup, g.clone(), a, tls, rep)
}
