//! The HTTP side of `serve`: routes, sessions in cookies, CSRF, and the
//! store work done on tokio's blocking pool under one lock (the store and
//! its connection are used by one request at a time).

use super::auth::{self, Sessions, Throttle};
use super::page;
use super::ServeArgs;
use crate::cmd::cli::GlobalArgs;
use crate::cmd::{changer_for, check_file_storage, notify_asterisk, Reporter, Setup};
use crate::error::{Error, Exit, Result};
use crate::listing::LsFilter;
use crate::render::{sanitize, Format, MessageWriter, Style};
use crate::spool::{Folder, MailboxId, MsgNum};
use crate::store::change::{Applied, Change};
use crate::store::MailboxStore;
use crate::target::Target;
use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Form, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;

const COOKIE: &str = "vmtool_session";
/// Forms and API calls are tiny; anything bigger is refused before it is read.
const BODY_LIMIT: usize = 16 * 1024;
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   media-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; \
                   frame-ancestors 'none'";

struct App {
    setup: Mutex<Setup>,
    g: GlobalArgs,
    sessions: Mutex<Sessions>,
    throttle: Mutex<Throttle>,
    secure: bool,
    ttl: Duration,
    /// Lines for standard error, written by the thread that holds it.
    log: mpsc::UnboundedSender<String>,
}

type Shared = Arc<App>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not stop every later request.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl App {
    fn log(&self, line: String) {
        let _ = self.log.send(line);
    }

    fn audit(&self, mb: &MailboxId, addr: SocketAddr, what: &str) {
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ");
        self.log(format!("audit {now} {mb} from {}: {what}", addr.ip()));
    }
}

pub fn run(
    setup: Setup,
    g: GlobalArgs,
    a: &ServeArgs,
    tls: Option<(PathBuf, PathBuf)>,
    rep: &mut Reporter,
) -> Result<Exit> {
    let listener = std::net::TcpListener::bind(a.listen)
        .map_err(|e| Error::Failed(format!("cannot listen on {}: {e}", a.listen)))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::Failed(format!("cannot listen on {}: {e}", a.listen)))?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let app = Arc::new(App {
        setup: Mutex::new(setup),
        g,
        sessions: Mutex::new(Sessions::default()),
        throttle: Mutex::new(Throttle::default()),
        secure: tls.is_some(),
        ttl: Duration::from_secs_f64(a.session_timeout),
        log: tx,
    });
    let svc = router(app).into_make_service_with_connect_info::<SocketAddr>();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Failed(format!("cannot start the server's runtime: {e}")))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    rt.block_on(async move {
        let server = async move {
            match tls {
                Some((cert, key)) => {
                    // ring: pure Rust and C without cmake, so every package builds it.
                    #[allow(deprecated)]
                    let _ = rustls::crypto::ring::default_provider().install_default();
                    let cfg = axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key)
                        .await
                        .map_err(|e| {
                            Error::Failed(format!(
                                "TLS certificate {} or key {}: {e}",
                                cert.display(),
                                key.display()
                            ))
                        })?;
                    axum_server::from_tcp_rustls(listener, cfg)
                        .map_err(|e| Error::Failed(format!("cannot listen on {local}: {e}")))?
                        .serve(svc)
                        .await
                }
                None => {
                    axum_server::from_tcp(listener)
                        .map_err(|e| Error::Failed(format!("cannot listen on {local}: {e}")))?
                        .serve(svc)
                        .await
                }
            }
            .map_err(|e| Error::Failed(format!("server on {local}: {e}")))
        };
        tokio::pin!(server);
        rep.note(&format!("listening on {scheme}://{local}"));
        let _ = rep.err_writer().flush();
        loop {
            tokio::select! {
                r = &mut server => return r.map(|()| Exit::Ok),
                Some(line) = rx.recv() => {
                    let w = rep.err_writer();
                    let _ = writeln!(w, "vmtool: {}", sanitize(&line));
                    let _ = w.flush();
                }
            }
        }
    })
}

fn router(app: Shared) -> Router {
    let h = |name: header::HeaderName, v: &'static str| {
        SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(v))
    };
    Router::new()
        .route("/", get(index))
        .route("/static/app.js", get(page::script))
        .route("/static/app.css", get(page::style))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/api/session", get(session_info))
        .route("/events", get(events))
        .route("/api/folders", get(folders))
        .route("/api/messages", get(messages))
        .route("/api/messages/{folder}/{number}/audio", get(audio))
        .route("/api/messages/{folder}/{number}/{action}", post(action))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(h(header::CONTENT_SECURITY_POLICY, CSP))
        .layer(h(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(h(header::X_FRAME_OPTIONS, "DENY"))
        .layer(h(header::REFERRER_POLICY, "no-referrer"))
        .layer(h(header::CACHE_CONTROL, "no-store"))
        .with_state(app)
}

fn json_error(status: StatusCode, msg: &str) -> Response {
    (status, Json(json!({ "error": msg }))).into_response()
}

/// The session cookie's value, if the request has one.
fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == COOKIE).then(|| v.to_string())
        })
}

/// The session's box and CSRF token, or 401.
fn session(
    app: &App,
    headers: &HeaderMap,
) -> std::result::Result<(String, MailboxId, String), Response> {
    let id = cookie(headers).ok_or_else(|| json_error(StatusCode::UNAUTHORIZED, "log in first"))?;
    let sessions = lock(&app.sessions);
    let s = sessions
        .get(&id)
        .ok_or_else(|| json_error(StatusCode::UNAUTHORIZED, "log in first"))?;
    Ok((id, s.mailbox.clone(), s.csrf.clone()))
}

/// A state-changing request carries the session's CSRF token in X-CSRF-Token.
fn check_csrf(headers: &HeaderMap, csrf: &str) -> std::result::Result<(), Response> {
    use subtle::ConstantTimeEq;
    let given = headers
        .get("x-csrf-token")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if given.len() == csrf.len() && bool::from(given.ct_eq(csrf.as_bytes())) {
        Ok(())
    } else {
        Err(json_error(
            StatusCode::FORBIDDEN,
            "missing or wrong X-CSRF-Token header",
        ))
    }
}

/// Runs store work on the blocking pool with the store locked.
async fn with_setup<T: Send + 'static>(
    app: &Shared,
    f: impl FnOnce(&Setup) -> std::result::Result<T, Response> + Send + 'static,
) -> std::result::Result<T, Response> {
    let app = app.clone();
    tokio::task::spawn_blocking(move || {
        let setup = lock(&app.setup);
        f(&setup)
    })
    .await
    .unwrap_or_else(|_| {
        Err(json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error",
        ))
    })
}

/// A library error as an answer; details of server-side failures go to the log only.
fn store_error(app: &App, e: &Error) -> Response {
    match e {
        Error::NotFound(_) => json_error(StatusCode::NOT_FOUND, "no such message or folder"),
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            json_error(StatusCode::NOT_FOUND, "no such message or folder")
        }
        Error::Usage(_) | Error::Name(_) | Error::Ambiguous(_) => json_error(
            StatusCode::BAD_REQUEST,
            "malformed folder or message number",
        ),
        Error::LockBusy(_) => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the folder is busy (Asterisk is writing); try again",
        ),
        e => {
            app.log(format!("error: {e}"));
            json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the server could not do that; see its log",
            )
        }
    }
}

/// A folder (and number) from a URL, through the CLI's target resolver,
/// and only inside the session's box.
fn resolve(
    app: &App,
    setup: &Setup,
    mb: &MailboxId,
    folder: &str,
    number: Option<&str>,
) -> std::result::Result<Target, Response> {
    let mut t = format!("{}@{}/{folder}", mb.mailbox(), mb.context.as_str());
    if let Some(n) = number {
        t.push('/');
        t.push_str(n);
    }
    let found = setup.resolve_one(&t).map_err(|e| store_error(app, &e))?;
    match found.as_slice() {
        [t @ (Target::Folder(m, _) | Target::Message(m, _, _))] if m == mb => Ok(t.clone()),
        _ => Err(json_error(
            StatusCode::NOT_FOUND,
            "no such message or folder",
        )),
    }
}

async fn index(State(app): State<Shared>, headers: HeaderMap) -> Response {
    match session(&app, &headers) {
        Ok((_, mb, _)) => page::app(&mb.to_string()).into_response(),
        Err(_) => page::login(None).into_response(),
    }
}

#[derive(Deserialize)]
struct LoginForm {
    mailbox: String,
    pin: String,
}

async fn login(
    State(app): State<Shared>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Form(f): Form<LoginForm>,
) -> Response {
    let key: String = f.mailbox.trim().to_lowercase().chars().take(200).collect();
    let locked = lock(&app.throttle).locked_for(addr.ip(), &key);
    if let Some(wait) = locked {
        let mins = wait.as_secs().div_ceil(60);
        let mut r = (
            StatusCode::TOO_MANY_REQUESTS,
            page::login(Some(&format!(
                "Too many failed logins: try again in {mins} minute{}.",
                if mins == 1 { "" } else { "s" }
            ))),
        )
            .into_response();
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(wait.as_secs().max(1)),
        );
        return r;
    }
    let (typed, pin) = (f.mailbox.trim().to_string(), f.pin);
    let found = with_setup(&app, move |setup| {
        // Unknown boxes go through the same comparison as known ones.
        let parsed = typed.split_once('@').and_then(|(b, c)| {
            let vc = setup.vmconf.as_ref()?;
            let conf = vc.mailbox(c, b)?;
            let id = MailboxId::new(crate::spool::Context::new(c).ok()?, b).ok()?;
            Some((id, auth::expected_pin(vc, setup.store.spool(), conf)))
        });
        let expected = parsed.as_ref().and_then(|(_, p)| p.as_deref());
        Ok(auth::pin_matches(&pin, expected)
            .then(|| parsed.map(|(id, _)| id))
            .flatten())
    })
    .await;
    match found {
        Ok(Some(mb)) => {
            lock(&app.throttle).succeeded(addr.ip(), &key);
            let (id, _) = lock(&app.sessions).create(mb.clone(), app.ttl);
            app.audit(&mb, addr, "logged in");
            let cookie = format!(
                "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
                app.ttl.as_secs(),
                if app.secure { "; Secure" } else { "" }
            );
            let mut r = StatusCode::SEE_OTHER.into_response();
            let h = r.headers_mut();
            h.insert(header::LOCATION, HeaderValue::from_static("/"));
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                h.insert(header::SET_COOKIE, v);
            }
            r
        }
        Ok(None) => {
            let wait = lock(&app.throttle).failed(addr.ip(), &key);
            app.log(format!(
                "failed login for {:?} from {}",
                key.chars().take(40).collect::<String>(),
                addr.ip()
            ));
            tokio::time::sleep(wait).await;
            (
                StatusCode::UNAUTHORIZED,
                page::login(Some("Wrong mailbox or PIN.")),
            )
                .into_response()
        }
        Err(r) => r,
    }
}

async fn logout(
    State(app): State<Shared>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let (id, mb, csrf) = match session(&app, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Err(r) = check_csrf(&headers, &csrf) {
        return r;
    }
    lock(&app.sessions).remove(&id);
    app.audit(&mb, addr, "logged out");
    let mut r = StatusCode::SEE_OTHER.into_response();
    let h = r.headers_mut();
    h.insert(header::LOCATION, HeaderValue::from_static("/"));
    h.insert(
        header::SET_COOKIE,
        HeaderValue::from_static("vmtool_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    r
}

async fn session_info(State(app): State<Shared>, headers: HeaderMap) -> Response {
    match session(&app, &headers) {
        Ok((_, mb, csrf)) => {
            Json(json!({ "mailbox": mb.to_string(), "csrf": csrf })).into_response()
        }
        Err(r) => r,
    }
}

async fn folders(State(app): State<Shared>, headers: HeaderMap) -> Response {
    let (_, mb, _) = match session(&app, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let app2 = app.clone();
    let r = with_setup(&app, move |setup| {
        let mut list: Vec<Folder> = Folder::KNOWN.to_vec();
        for f in setup
            .store
            .folders(&mb)
            .map_err(|e| store_error(&app2, &e))?
        {
            if !list.contains(&f) {
                list.push(f);
            }
        }
        let out: Vec<Value> = list
            .iter()
            .map(|f| {
                let count = setup
                    .store
                    .scan_folder(&mb, f)
                    .map(|s| s.messages.iter().filter(|m| m.txt).count())
                    .unwrap_or(0);
                json!({ "folder": f.dir_name(), "count": count })
            })
            .collect();
        Ok(out)
    })
    .await;
    match r {
        Ok(v) => Json(Value::Array(v)).into_response(),
        Err(r) => r,
    }
}

/// What the box holds, cheaply: every folder's message files. A change of
/// it is an event.
fn box_state(setup: &Setup, mb: &MailboxId) -> Vec<(String, Vec<crate::scan::MsgFiles>)> {
    setup
        .store
        .folders(mb)
        .unwrap_or_default()
        .into_iter()
        .map(|f| {
            let files = setup
                .store
                .scan_folder(mb, &f)
                .map(|s| s.messages)
                .unwrap_or_default();
            (f.dir_name().to_string(), files)
        })
        .collect()
}

/// How often `/events` looks at the box (both stores: the store is shared
/// by all requests, so no connection holds it between looks).
const EVENTS_EVERY: Duration = Duration::from_secs(1);

/// `GET /events`: one `change` event each time the session's box changes
/// (a deposit, a move or delete from anywhere), with its folders' counts.
async fn events(State(app): State<Shared>, headers: HeaderMap) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let (id, mb, _) = match session(&app, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let look = |app: Shared, mb: MailboxId| async move {
        with_setup(&app, move |setup| Ok(box_state(setup, &mb)))
            .await
            .ok()
    };
    let first = look(app.clone(), mb.clone()).await;
    let stream = futures_util::stream::unfold(first, move |last| {
        let (app, mb, id) = (app.clone(), mb.clone(), id.clone());
        async move {
            loop {
                tokio::time::sleep(EVENTS_EVERY).await;
                // The stream ends with the session (logout or expiry).
                lock(&app.sessions).get(&id)?;
                let now = look(app.clone(), mb.clone()).await;
                if now.is_some() && now != last {
                    let counts: Vec<Value> = now
                        .iter()
                        .flatten()
                        .map(|(f, m)| json!({ "folder": f, "count": m.iter().filter(|m| m.txt).count() }))
                        .collect();
                    let ev = Event::default()
                        .event("change")
                        .data(Value::Array(counts).to_string());
                    return Some((Ok::<_, std::convert::Infallible>(ev), now));
                }
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[derive(Deserialize)]
struct FolderQuery {
    folder: Option<String>,
}

async fn messages(
    State(app): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<FolderQuery>,
) -> Response {
    let (_, mb, _) = match session(&app, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let folder = q.folder.unwrap_or_else(|| "INBOX".into());
    let app2 = app.clone();
    let r = with_setup(&app, move |setup| {
        let Target::Folder(_, f) = resolve(&app2, setup, &mb, &folder, None)? else {
            return Err(json_error(StatusCode::BAD_REQUEST, "give a folder"));
        };
        let zone = setup.zone_for(&mb, false);
        let filter = LsFilter {
            folders: Vec::new(),
            new_only: false,
            since: None,
            until: None,
            caller: None,
        };
        let mut bytes = Vec::new();
        let (mut rows, mut errors) = (0usize, Vec::new());
        {
            let mut w = MessageWriter::body_only(&mut bytes, Format::Json, Style { color: false });
            setup
                .store
                .list_folder(&mb, &f, None, &filter, zone, &mut w, &mut rows, &mut errors)
                .map_err(|e| store_error(&app2, &e))?;
            w.finish()
                .map_err(|e| store_error(&app2, &Error::Failed(e.to_string())))?;
        }
        for e in &errors {
            app2.log(format!("listing {mb}/{f}: {e}"));
        }
        // The same objects `ls --format json` prints, one per line.
        let out: Vec<Value> = bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .filter_map(|l| serde_json::from_slice(l).ok())
            .collect();
        Ok(out)
    })
    .await;
    match r {
        Ok(v) => Json(Value::Array(v)).into_response(),
        Err(r) => r,
    }
}

/// Decodes a message into a 16-bit PCM WAV file in memory.
fn wav_of(
    app: &App,
    setup: &Setup,
    mb: &MailboxId,
    f: &Folder,
    n: MsgNum,
) -> std::result::Result<Vec<u8>, Response> {
    let scan = setup
        .store
        .scan_folder(mb, f)
        .map_err(|e| store_error(app, &e))?;
    let files = scan
        .messages
        .iter()
        .find(|m| m.num == n && m.txt)
        .ok_or_else(|| json_error(StatusCode::NOT_FOUND, "no such message or folder"))?;
    let ext = crate::audio::preferred_format(&files.audio).ok_or_else(|| {
        json_error(
            StatusCode::NOT_FOUND,
            "the message has no audio vmtool decodes",
        )
    })?;
    let (path, decoded) = setup
        .store
        .decode(mb, f, n, &ext)
        .map_err(|e| store_error(app, &e))?;
    let (rate, _, samples) = decoded
        .map_err(|e| store_error(app, &Error::Failed(format!("{}: {e}", path.display()))))?;
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cur = std::io::Cursor::new(Vec::with_capacity(44 + 2 * samples.len()));
    let written = (|| -> std::result::Result<(), hound::Error> {
        let mut w = hound::WavWriter::new(&mut cur, spec)?;
        let mut i16w = w.get_i16_writer(samples.len() as u32);
        for s in &samples {
            i16w.write_sample(*s);
        }
        i16w.flush()?;
        w.finalize()
    })();
    written.map_err(|e| {
        store_error(
            app,
            &Error::Failed(format!("WAV of {}: {e}", path.display())),
        )
    })?;
    Ok(cur.into_inner())
}

/// One `bytes=` range of a body of `len` bytes: `Ok(None)` for the whole
/// body (no header, or several ranges), `Err` when it cannot be satisfied.
fn parse_range(h: Option<&HeaderValue>, len: u64) -> std::result::Result<Option<(u64, u64)>, ()> {
    let Some(spec) = h.and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let Some(spec) = spec.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        (len.saturating_sub(n), len - 1)
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end = if b.is_empty() {
            len.saturating_sub(1)
        } else {
            b.parse::<u64>().map_err(|_| ())?.min(len.saturating_sub(1))
        };
        (start, end)
    };
    if len == 0 || range.0 >= len || range.0 > range.1 {
        return Err(());
    }
    Ok(Some(range))
}

async fn audio(
    State(app): State<Shared>,
    headers: HeaderMap,
    Path((folder, number)): Path<(String, String)>,
) -> Response {
    let (_, mb, _) = match session(&app, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let app2 = app.clone();
    let wav = with_setup(&app, move |setup| {
        let Target::Message(_, f, n) = resolve(&app2, setup, &mb, &folder, Some(&number))? else {
            return Err(json_error(StatusCode::BAD_REQUEST, "give a message number"));
        };
        wav_of(&app2, setup, &mb, &f, n)
    })
    .await;
    let wav = match wav {
        Ok(w) => w,
        Err(r) => return r,
    };
    let len = wav.len() as u64;
    let mut r = match parse_range(headers.get(header::RANGE), len) {
        Ok(None) => (StatusCode::OK, wav).into_response(),
        Ok(Some((a, b))) => {
            let mut r = (
                StatusCode::PARTIAL_CONTENT,
                Body::from(wav[a as usize..=b as usize].to_vec()),
            )
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {a}-{b}/{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            r
        }
        Err(()) => {
            let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/wav"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    r
}

#[derive(Deserialize)]
struct MoveQuery {
    to: Option<String>,
}

async fn action(
    State(app): State<Shared>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path((folder, number, action)): Path<(String, String, String)>,
    Query(q): Query<MoveQuery>,
) -> Response {
    let (_, mb, csrf) = match session(&app, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Err(r) = check_csrf(&headers, &csrf) {
        return r;
    }
    if !["read", "unread", "delete", "move"].contains(&action.as_str()) {
        return json_error(
            StatusCode::NOT_FOUND,
            "actions: read, unread, delete, move?to=F",
        );
    }
    let app2 = app.clone();
    let r = with_setup(&app, move |setup| {
        let Target::Message(_, f, n) = resolve(&app2, setup, &mb, &folder, Some(&number))? else {
            return Err(json_error(StatusCode::BAD_REQUEST, "give a message number"));
        };
        let conflict = |why: String| json_error(StatusCode::CONFLICT, &why);
        let change = match action.as_str() {
            "read" if matches!(f, Folder::Inbox | Folder::Urgent) => Change::Move {
                mailbox: mb.clone(),
                folder: Folder::Old,
            },
            "read" => return Err(conflict(format!("the message is in {f}, not new"))),
            // Asterisk saves into INBOX, never Urgent (spec §5.1).
            "unread" if f == Folder::Old => Change::Move {
                mailbox: mb.clone(),
                folder: Folder::Inbox,
            },
            "unread" => return Err(conflict(format!("the message is in {f}, not Old"))),
            "delete" => Change::Delete,
            _ => {
                let to = q
                    .to
                    .as_deref()
                    .ok_or_else(|| json_error(StatusCode::BAD_REQUEST, "move needs ?to=FOLDER"))?;
                let Target::Folder(_, to) = resolve(&app2, setup, &mb, to, None)? else {
                    return Err(json_error(StatusCode::BAD_REQUEST, "?to= names a folder"));
                };
                if to == f {
                    return Err(conflict(format!("the message is already in {f}")));
                }
                Change::Move {
                    mailbox: mb.clone(),
                    folder: to,
                }
            }
        };
        check_file_storage(setup).map_err(|e| store_error(&app2, &e))?;
        let changer = changer_for(setup, &app2.g).map_err(|e| store_error(&app2, &e))?;
        let found = changer
            .locate(&mb, &f, n)
            .map_err(|e| store_error(&app2, &e))?;
        let at = found.at();
        let applied = changer
            .apply(&found, &change)
            .map_err(|e| store_error(&app2, &e))?;
        let (what, place) = match &applied {
            Applied::Moved(to) | Applied::Copied(to) => (
                format!("moved {at} -> {to}"),
                json!({ "folder": to.folder, "number": format!("{:04}", to.num) }),
            ),
            Applied::Deleted(Some(to)) => (
                format!("deleted {at} (kept in {to})"),
                json!({ "deleted": true, "folder": to.folder, "number": format!("{:04}", to.num) }),
            ),
            Applied::Deleted(None) => (
                format!("deleted {at}"),
                json!({ "deleted": true, "folder": null, "number": null }),
            ),
        };
        app2.audit(&mb, addr, &what);
        let mut buf = Vec::new();
        {
            let mut rep = Reporter::new(&mut buf);
            notify_asterisk(setup, &app2.g, &BTreeSet::from([mb.clone()]), &mut rep);
        }
        for line in String::from_utf8_lossy(&buf).lines() {
            app2.log(line.trim_start_matches("vmtool: ").to_string());
        }
        Ok(place)
    })
    .await;
    match r {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::parse_range;
    use axum::http::HeaderValue;

    #[test]
    fn ranges() {
        let r = |s: &str, len| parse_range(Some(&HeaderValue::from_str(s).unwrap()), len);
        assert_eq!(r("bytes=0-9", 100), Ok(Some((0, 9))));
        assert_eq!(r("bytes=90-", 100), Ok(Some((90, 99))));
        assert_eq!(r("bytes=-10", 100), Ok(Some((90, 99))));
        assert_eq!(r("bytes=50-500", 100), Ok(Some((50, 99))));
        assert_eq!(r("bytes=100-", 100), Err(()));
        assert_eq!(r("bytes=9-3", 100), Err(()));
        assert_eq!(r("bytes=x-3", 100), Err(()));
        assert_eq!(r("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(parse_range(None, 100), Ok(None));
    }
}
