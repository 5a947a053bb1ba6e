//! The HTTP side of `serve`: routes, sessions in cookies, CSRF, and the
//! store work done on tokio's blocking pool under one lock (the store and
//! its connection are used by one request at a time).

use super::auth::{self, Sessions, Throttle, Who};
use super::page;
use super::ServeArgs;
use crate::cmd::cli::GlobalArgs;
use crate::cmd::{changer_for, check_file_storage, notify_asterisk, Reporter, Setup};
use crate::error::{Error, Exit, Result};
use crate::listing::LsFilter;
use crate::render::{sanitize, Format, MessageWriter, Style};
use crate::spool::{Context, Folder, MailboxId, MsgNum};
use crate::store::change::{Applied, Change};
use crate::store::greeting::{Kind, SetOptions};
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
/// A greeting upload: minutes of audio in any common format.
pub const UPLOAD_LIMIT: usize = 8 * 1024 * 1024;
/// Threads for store work and admins' password checks.
const BLOCKING_THREADS: usize = 4;
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
    /// The admins file (`--admins`), read at each admin login so edits apply.
    admins: Option<PathBuf>,
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

    fn audit(&self, who: &Who, addr: SocketAddr, what: &str) {
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ");
        self.log(format!("audit {now} {who} from {}: {what}", addr.ip()));
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
    let mut setup = setup;
    // Admin views reuse `boxes` and `ls`, which print what the setup's format says.
    setup.format = Format::Json;
    let app = Arc::new(App {
        setup: Mutex::new(setup),
        g,
        sessions: Mutex::new(Sessions::default()),
        throttle: Mutex::new(Throttle::default()),
        secure: tls.is_some(),
        ttl: Duration::from_secs_f64(a.session_timeout),
        admins: a.admins.clone(),
        log: tx,
    });
    let svc = router(app).into_make_service_with_connect_info::<SocketAddr>();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // Store work runs one request at a time (one lock): more threads would
        // only wait, each keeping its own allocator heap (RSS).
        .max_blocking_threads(BLOCKING_THREADS)
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
    let small = Router::new()
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
        .route("/api/messages/{folder}/{number}/download", get(download))
        .route("/api/messages/{folder}/{number}/waveform", get(waveform))
        .route("/api/messages/{folder}/{number}/{action}", post(action))
        .route("/api/greetings", get(greetings))
        .route("/api/greetings/{kind}/audio", get(greeting_audio))
        .route("/api/greetings/{kind}/delete", post(greeting_delete))
        .route("/api/boxes", get(boxes))
        .route("/api/search", get(search))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT));
    // The one route that takes a file; its body is read only after the session is checked.
    let upload = Router::new()
        .route("/api/greetings/{kind}", post(greeting_set))
        .layer(DefaultBodyLimit::max(UPLOAD_LIMIT))
        .layer(RequestBodyLimitLayer::new(UPLOAD_LIMIT));
    small
        .merge(upload)
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

/// A logged-in request: its cookie, who it is, the CSRF token.
struct Sess {
    id: String,
    who: Who,
    csrf: String,
}

/// The session of a request, or 401.
fn session(app: &App, headers: &HeaderMap) -> std::result::Result<Sess, Response> {
    let id = cookie(headers).ok_or_else(|| json_error(StatusCode::UNAUTHORIZED, "log in first"))?;
    let sessions = lock(&app.sessions);
    let s = sessions
        .get(&id)
        .ok_or_else(|| json_error(StatusCode::UNAUTHORIZED, "log in first"))?;
    Ok(Sess {
        id: id.clone(),
        who: s.who.clone(),
        csrf: s.csrf.clone(),
    })
}

/// An admin's session, else 401/403.
fn admin_session(app: &App, headers: &HeaderMap) -> std::result::Result<Sess, Response> {
    let s = session(app, headers)?;
    match s.who {
        Who::Admin(_) => Ok(s),
        Who::Owner(_) => Err(json_error(StatusCode::FORBIDDEN, "for admins only")),
    }
}

/// The box a request works on: a box owner's own (a `mailbox=` naming
/// another is 403); an admin names it with `mailbox=box@context`.
fn box_of(
    setup: &Setup,
    who: &Who,
    asked: Option<&str>,
) -> std::result::Result<MailboxId, Response> {
    match (who, asked) {
        (Who::Owner(mb), None) => Ok(mb.clone()),
        (Who::Owner(mb), Some(a)) if a == mb.to_string() => Ok(mb.clone()),
        (Who::Owner(_), Some(_)) => Err(json_error(
            StatusCode::FORBIDDEN,
            "a box owner sees their own box only",
        )),
        (Who::Admin(_), None) => Err(json_error(
            StatusCode::BAD_REQUEST,
            "give the box: mailbox=box@context",
        )),
        (Who::Admin(_), Some(a)) => {
            let mb = parse_box(a)
                .ok_or_else(|| json_error(StatusCode::BAD_REQUEST, "mailbox is box@context"))?;
            if setup.store.mailbox_exists(&mb) || setup.mailbox_conf(&mb).is_some() {
                Ok(mb)
            } else {
                Err(json_error(StatusCode::NOT_FOUND, "no such mailbox"))
            }
        }
    }
}

/// `box@context`, checked as a spool name (no path in it).
fn parse_box(s: &str) -> Option<MailboxId> {
    let (b, c) = s.split_once('@')?;
    MailboxId::new(Context::new(c).ok()?, b).ok()
}

/// A state-changing request carries the session's CSRF token in X-CSRF-Token.
/// The session of a state-changing request: logged in, and with its CSRF token.
fn changing_session(app: &App, headers: &HeaderMap) -> std::result::Result<Sess, Response> {
    let s = session(app, headers)?;
    check_csrf(headers, &s.csrf)?;
    Ok(s)
}

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
        // The store's refusal of a full box (maxmsg), as Asterisk refuses it.
        Error::Failed(m) if m.contains(" is full") => {
            json_error(StatusCode::CONFLICT, "the mailbox is full")
        }
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
        Ok(s) => page::app(&s.who).into_response(),
        Err(_) => page::login(None).into_response(),
    }
}

#[derive(Deserialize)]
struct LoginForm {
    mailbox: String,
    pin: String,
}

/// An admin's name and password against the admins file, off the runtime
/// (argon2 takes tens of milliseconds on purpose).
async fn admin_login(app: &Shared, name: String, password: String) -> Option<Who> {
    let path = app.admins.clone();
    let app2 = app.clone();
    tokio::task::spawn_blocking(move || {
        let admins = match path.as_deref().map(auth::load_admins) {
            Some(Ok(a)) => a,
            Some(Err(e)) => {
                app2.log(e);
                Vec::new()
            }
            None => Vec::new(),
        };
        auth::admin_matches(&admins, &name, &password).then_some(Who::Admin(name))
    })
    .await
    .ok()
    .flatten()
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
    // A name without '@' is an admin's; a box is box@context. A box PIN
    // never opens an admin session, nor an admin password a box.
    let found = if app.admins.is_some() && auth::valid_admin_name(&typed) {
        Ok(admin_login(&app, typed, pin).await)
    } else {
        with_setup(&app, move |setup| {
            // Unknown boxes go through the same comparison as known ones.
            let parsed = typed.split_once('@').and_then(|(b, c)| {
                let vc = setup.vmconf.as_ref()?;
                let conf = vc.mailbox(c, b)?;
                let id = parse_box(&typed)?;
                Some((id, auth::expected_pin(vc, setup.store.spool(), conf)))
            });
            let expected = parsed.as_ref().and_then(|(_, p)| p.as_deref());
            Ok(auth::pin_matches(&pin, expected)
                .then(|| parsed.map(|(id, _)| Who::Owner(id)))
                .flatten())
        })
        .await
    };
    match found {
        Ok(Some(who)) => {
            lock(&app.throttle).succeeded(addr.ip(), &key);
            let (id, _) = lock(&app.sessions).create(who.clone(), app.ttl);
            app.audit(&who, addr, "logged in");
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
    let s = match changing_session(&app, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    lock(&app.sessions).remove(&s.id);
    app.audit(&s.who, addr, "logged out");
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
        Ok(Sess {
            who: Who::Owner(mb),
            csrf,
            ..
        }) => Json(json!({ "mailbox": mb.to_string(), "csrf": csrf })).into_response(),
        Ok(Sess {
            who: Who::Admin(name),
            csrf,
            ..
        }) => Json(json!({ "mailbox": null, "admin": name, "csrf": csrf })).into_response(),
        Err(r) => r,
    }
}

/// `mailbox=` of a request: the box an admin works on.
#[derive(Deserialize)]
struct BoxQuery {
    mailbox: Option<String>,
}

/// Runs `f` on the request's box with the store locked: the session is
/// checked first, then the box (`box_of`).
async fn on_box<T: Send + 'static>(
    app: &Shared,
    headers: &HeaderMap,
    asked: Option<String>,
    f: impl FnOnce(&Shared, &Setup, MailboxId) -> std::result::Result<T, Response> + Send + 'static,
) -> std::result::Result<T, Response> {
    let s = session(app, headers)?;
    let app2 = app.clone();
    with_setup(app, move |setup| {
        let mb = box_of(setup, &s.who, asked.as_deref())?;
        f(&app2, setup, mb)
    })
    .await
}

fn reply(r: std::result::Result<Value, Response>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

async fn folders(
    State(app): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<BoxQuery>,
) -> Response {
    reply(
        on_box(&app, &headers, q.mailbox, |app, setup, mb| {
            let mut list: Vec<Folder> = Folder::KNOWN.to_vec();
            for f in setup.store.folders(&mb).map_err(|e| store_error(app, &e))? {
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
            Ok(Value::Array(out))
        })
        .await,
    )
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
async fn events(
    State(app): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<BoxQuery>,
) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let id = match session(&app, &headers) {
        Ok(s) => s.id,
        Err(r) => return r,
    };
    let mb = match on_box(&app, &headers, q.mailbox, |_, _, mb| Ok(mb)).await {
        Ok(mb) => mb,
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
    mailbox: Option<String>,
}

/// JSON lines as `ls --format json` writes them, as one array.
fn json_lines(bytes: &[u8]) -> Value {
    Value::Array(
        bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .filter_map(|l| serde_json::from_slice(l).ok())
            .collect(),
    )
}

async fn messages(
    State(app): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<FolderQuery>,
) -> Response {
    let folder = q.folder.unwrap_or_else(|| "INBOX".into());
    reply(
        on_box(&app, &headers, q.mailbox, move |app, setup, mb| {
            let Target::Folder(_, f) = resolve(app, setup, &mb, &folder, None)? else {
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
                let mut w =
                    MessageWriter::body_only(&mut bytes, Format::Json, Style { color: false });
                setup
                    .store
                    .list_folder(&mb, &f, None, &filter, zone, &mut w, &mut rows, &mut errors)
                    .map_err(|e| store_error(app, &e))?;
                w.finish()
                    .map_err(|e| store_error(app, &Error::Failed(e.to_string())))?;
            }
            for e in &errors {
                app.log(format!("listing {mb}/{f}: {e}"));
            }
            // The same objects `ls --format json` prints, one per line.
            Ok(json_lines(&bytes))
        })
        .await,
    )
}

/// A message's audio decoded: sample rate and mono 16-bit samples.
fn samples_of(
    app: &App,
    setup: &Setup,
    mb: &MailboxId,
    f: &Folder,
    n: MsgNum,
) -> std::result::Result<(u32, Vec<i16>), Response> {
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
    Ok((rate, samples))
}

/// Samples as a 16-bit PCM WAV file in memory.
fn wav_bytes(app: &App, rate: u32, samples: &[i16]) -> std::result::Result<Vec<u8>, Response> {
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
        for s in samples {
            i16w.write_sample(*s);
        }
        i16w.flush()?;
        w.finalize()
    })();
    written.map_err(|e| store_error(app, &Error::Failed(format!("writing a WAV: {e}"))))?;
    Ok(cur.into_inner())
}

/// Bars of the waveform picture.
const WAVE_BARS: usize = 100;

/// A small SVG of the recording's loudness: one bar per slice, the peak of
/// the slice scaled to the loudest (quiet recordings stay readable).
pub fn waveform_svg(samples: &[i16]) -> String {
    let mut peaks = [0u16; WAVE_BARS];
    let n = samples.len().max(1);
    for (i, s) in samples.iter().enumerate() {
        let b = i * WAVE_BARS / n;
        peaks[b] = peaks[b].max(s.unsigned_abs());
    }
    let loudest = f64::from(peaks.iter().copied().max().unwrap_or(0).max(1));
    let mut d = String::with_capacity(WAVE_BARS * 12);
    for (i, p) in peaks.iter().enumerate() {
        let h = (f64::from(*p) / loudest * 30.0).round().max(1.0);
        let y = 16.0 - h / 2.0;
        d.push_str(&format!("M{} {y}v{h}", 2 * i + 1));
    }
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} 32\" width=\"{w}\" height=\"32\" \
         preserveAspectRatio=\"none\"><path d=\"{d}\" stroke=\"#3a6ea5\" stroke-width=\"1.4\" fill=\"none\"/></svg>",
        w = 2 * WAVE_BARS
    )
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

/// A whole body, or the part a `Range` header asks for.
fn ranged(headers: &HeaderMap, body: Vec<u8>, content_type: &'static str) -> Response {
    let len = body.len() as u64;
    let mut r = match parse_range(headers.get(header::RANGE), len) {
        Ok(None) => (StatusCode::OK, body).into_response(),
        Ok(Some((a, b))) => {
            let mut r = (
                StatusCode::PARTIAL_CONTENT,
                Body::from(body[a as usize..=b as usize].to_vec()),
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
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    r
}

/// The message a URL names, decoded: its box, folder, number and samples.
async fn decoded_message(
    app: &Shared,
    headers: &HeaderMap,
    folder: String,
    number: String,
    asked: Option<String>,
) -> std::result::Result<(MailboxId, Folder, MsgNum, u32, Vec<i16>), Response> {
    on_box(app, headers, asked, move |app, setup, mb| {
        let Target::Message(_, f, n) = resolve(app, setup, &mb, &folder, Some(&number))? else {
            return Err(json_error(StatusCode::BAD_REQUEST, "give a message number"));
        };
        let (rate, samples) = samples_of(app, setup, &mb, &f, n)?;
        Ok((mb, f, n, rate, samples))
    })
    .await
}

async fn audio(
    State(app): State<Shared>,
    headers: HeaderMap,
    Path((folder, number)): Path<(String, String)>,
    Query(q): Query<BoxQuery>,
) -> Response {
    let wav = decoded_message(&app, &headers, folder, number, q.mailbox)
        .await
        .and_then(|(_, _, _, rate, samples)| wav_bytes(&app, rate, &samples));
    match wav {
        Ok(w) => ranged(&headers, w, "audio/wav"),
        Err(r) => r,
    }
}

/// The same WAV as a file to keep, named after the message.
async fn download(
    State(app): State<Shared>,
    headers: HeaderMap,
    Path((folder, number)): Path<(String, String)>,
    Query(q): Query<BoxQuery>,
) -> Response {
    let got = decoded_message(&app, &headers, folder, number, q.mailbox).await;
    let (mb, f, n, rate, samples) = match got {
        Ok(g) => g,
        Err(r) => return r,
    };
    let wav = match wav_bytes(&app, rate, &samples) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let mut r = ranged(&headers, wav, "audio/wav");
    // Spool names are plain (checked by the resolver): safe in a header.
    let name = format!(
        "attachment; filename=\"{}-{}-{}-msg{n}.wav\"",
        mb.context.as_str(),
        mb.mailbox(),
        f.dir_name()
    );
    if let Ok(v) = HeaderValue::from_str(&name) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

async fn waveform(
    State(app): State<Shared>,
    headers: HeaderMap,
    Path((folder, number)): Path<(String, String)>,
    Query(q): Query<BoxQuery>,
) -> Response {
    match decoded_message(&app, &headers, folder, number, q.mailbox).await {
        Ok((_, _, _, _, samples)) => (
            [(header::CONTENT_TYPE, "image/svg+xml")],
            waveform_svg(&samples),
        )
            .into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct ActionQuery {
    to: Option<String>,
    mailbox: Option<String>,
}

/// Tells Asterisk (AMI) about changed boxes; its lines go to the log.
fn refresh(app: &App, setup: &Setup, boxes: BTreeSet<MailboxId>) {
    let mut buf = Vec::new();
    {
        let mut rep = Reporter::new(&mut buf);
        notify_asterisk(setup, &app.g, &boxes, &mut rep);
    }
    for line in String::from_utf8_lossy(&buf).lines() {
        app.log(line.trim_start_matches("vmtool: ").to_string());
    }
}

async fn action(
    State(app): State<Shared>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path((folder, number, action)): Path<(String, String, String)>,
    Query(q): Query<ActionQuery>,
) -> Response {
    let s = match changing_session(&app, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !["read", "unread", "delete", "move", "forward"].contains(&action.as_str()) {
        return json_error(
            StatusCode::NOT_FOUND,
            "actions: read, unread, delete, move?to=F, forward?to=box@context",
        );
    }
    let who = s.who.clone();
    reply(
        on_box(&app, &headers, q.mailbox, move |app, setup, mb| {
            let Target::Message(_, f, n) = resolve(app, setup, &mb, &folder, Some(&number))?
            else {
                return Err(json_error(StatusCode::BAD_REQUEST, "give a message number"));
            };
            let conflict = |why: String| json_error(StatusCode::CONFLICT, &why);
            let to = q.to.as_deref();
            let need_to = |what: &str| {
                to.ok_or_else(|| json_error(StatusCode::BAD_REQUEST, &format!("{action} needs ?to={what}")))
            };
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
                "forward" => {
                    // Like the phone menu's forward: a copy into the other
                    // box's INBOX (Urgent for an urgent one), any box of voicemail.conf.
                    let other = parse_box(need_to("box@context")?)
                        .filter(|o| setup.mailbox_conf(o).is_some())
                        .ok_or_else(|| json_error(StatusCode::NOT_FOUND, "no such mailbox"))?;
                    Change::Copy {
                        mailbox: other,
                        folder: if f == Folder::Urgent {
                            Folder::Urgent
                        } else {
                            Folder::Inbox
                        },
                    }
                }
                _ => {
                    let Target::Folder(_, to) = resolve(app, setup, &mb, need_to("FOLDER")?, None)?
                    else {
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
            check_file_storage(setup).map_err(|e| store_error(app, &e))?;
            let changer = changer_for(setup, &app.g).map_err(|e| store_error(app, &e))?;
            let found = changer
                .locate(&mb, &f, n)
                .map_err(|e| store_error(app, &e))?;
            let at = found.at();
            let applied = changer
                .apply(&found, &change)
                .map_err(|e| store_error(app, &e))?;
            let mut changed = BTreeSet::from([mb.clone()]);
            if let Change::Copy { mailbox, .. } = &change {
                changed.insert(mailbox.clone());
            }
            let (what, place) = match &applied {
                Applied::Copied(to) => (
                    format!("forwarded {at} -> {to}"),
                    json!({ "mailbox": format!("{}@{}", to.mailbox, to.context), "folder": to.folder, "number": format!("{:04}", to.num) }),
                ),
                Applied::Moved(to) => (
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
            app.audit(&who, addr, &what);
            refresh(app, setup, changed);
            Ok(place)
        })
        .await,
    )
}

/// `format=` of voicemail.conf: the files a greeting is written in.
fn greeting_formats(setup: &Setup) -> Vec<String> {
    setup
        .vmconf
        .as_ref()
        .map(|c| c.general.format.clone())
        .unwrap_or_else(|| vec!["wav".to_string()])
}

fn greeting_kind(s: &str) -> std::result::Result<Kind, Response> {
    Kind::parse(s).map_err(|_| {
        json_error(
            StatusCode::NOT_FOUND,
            "greetings: unavail, busy, name, temp",
        )
    })
}

/// `GET /api/greetings`: the box's greetings as `greeting ls --format json` sees them.
async fn greetings(
    State(app): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<BoxQuery>,
) -> Response {
    reply(
        on_box(&app, &headers, q.mailbox, |app, setup, mb| {
            let gs = setup
                .store
                .greetings(&mb, &greeting_formats(setup))
                .map_err(|e| store_error(app, &e))?;
            let out: Vec<Value> = Kind::ALL
                .iter()
                .map(|k| {
                    let g = gs.iter().find(|g| g.kind == *k);
                    json!({
                        "kind": k.name(),
                        "exists": g.is_some_and(|g| g.exists()),
                        "duration": g.and_then(|g| g.files.iter().find_map(|f| f.duration)),
                        "files": g.map(|g| g.files.iter().map(|f| f.ext.clone()).collect::<Vec<_>>()).unwrap_or_default(),
                    })
                })
                .collect();
            Ok(Value::Array(out))
        })
        .await,
    )
}

async fn greeting_audio(
    State(app): State<Shared>,
    headers: HeaderMap,
    Path(kind): Path<String>,
    Query(q): Query<BoxQuery>,
) -> Response {
    let wav = on_box(&app, &headers, q.mailbox, move |app, setup, mb| {
        let kind = greeting_kind(&kind)?;
        let (path, _, decoded) = setup
            .store
            .decode_greeting(&mb, kind, None)
            .map_err(|e| store_error(app, &e))?;
        let (rate, _, samples) = decoded
            .map_err(|e| store_error(app, &Error::Failed(format!("{}: {e}", path.display()))))?;
        wav_bytes(app, rate, &samples)
    })
    .await;
    match wav {
        Ok(w) => ranged(&headers, w, "audio/wav"),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct UploadQuery {
    /// The uploaded file's type by its extension: wav, mp3, ogg, flac.
    ext: Option<String>,
    mailbox: Option<String>,
}

/// An answer given before the request's body was read: the connection
/// closes after it, so the unread body is never taken for the next request.
fn closing(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// `POST /api/greetings/{kind}?ext=E`: the body is an audio file; it is
/// written in every `format=` through the store's greeting set, as the
/// phone menu's "record your greeting" would.
async fn greeting_set(
    State(app): State<Shared>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(kind): Path<String>,
    Query(q): Query<UploadQuery>,
    body: Body,
) -> Response {
    let s = match changing_session(&app, &headers) {
        Ok(s) => s,
        Err(r) => return closing(r),
    };
    let kind = match greeting_kind(&kind) {
        Ok(k) => k,
        Err(r) => return closing(r),
    };
    let ext = q.ext.as_deref().unwrap_or("wav").to_ascii_lowercase();
    if !["wav", "mp3", "ogg", "oga", "flac"].contains(&ext.as_str()) {
        return closing(json_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "upload a .wav, .mp3, .ogg or .flac file",
        ));
    }
    // Read only now that the session is known; the limit holds for chunked bodies too.
    let data = match axum::body::to_bytes(body, UPLOAD_LIMIT).await {
        Ok(d) => d,
        Err(_) => {
            return closing(json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("uploads are limited to {} MiB", UPLOAD_LIMIT >> 20),
            ))
        }
    };
    let who = s.who.clone();
    reply(
        on_box(&app, &headers, q.mailbox, move |app, setup, mb| {
            // The upload is decoded from a private temporary file, never from the spool.
            let bad = || {
                json_error(
                    StatusCode::BAD_REQUEST,
                    &format!("the upload is not a .{ext} file vmtool can read"),
                )
            };
            let tmp = tempfile::Builder::new()
                .prefix("vmtool-upload-")
                .suffix(&format!(".{ext}"))
                .tempfile()
                .map_err(|e| store_error(app, &Error::Failed(format!("a temporary file: {e}"))))?;
            std::fs::write(tmp.path(), &data)
                .map_err(|e| store_error(app, &Error::Failed(format!("a temporary file: {e}"))))?;
            let pcm = crate::audio::input::read_file(tmp.path()).map_err(|_| bad())?;
            if pcm.samples.is_empty() {
                return Err(bad());
            }
            check_file_storage(setup).map_err(|e| store_error(app, &e))?;
            let timeout = super::super::lock_options(setup, &app.g)
                .map_err(|e| store_error(app, &e))?
                .timeout;
            let formats = greeting_formats(setup);
            let mut cache: std::collections::HashMap<u32, Vec<i16>> = Default::default();
            let mut at = |rate: u32| -> std::result::Result<Vec<i16>, String> {
                if let Some(s) = cache.get(&rate) {
                    return Ok(s.clone());
                }
                let s = crate::audio::input::resample(&pcm, rate)?;
                cache.insert(rate, s.clone());
                Ok(s)
            };
            for line in setup
                .store
                .recover_greetings(&mb, timeout)
                .map_err(|e| store_error(app, &e))?
            {
                app.log(line);
            }
            let opts = SetOptions {
                formats: &formats,
                until: None,
                timeout,
            };
            let files = setup
                .store
                .set_greeting(&mb, kind, &mut at, &opts)
                .map_err(|e| store_error(app, &e))?;
            app.audit(&who, addr, &format!("set the {kind} greeting of {mb}"));
            refresh(app, setup, BTreeSet::from([mb]));
            Ok(json!({ "kind": kind.name(), "files": files.len() }))
        })
        .await,
    )
}

async fn greeting_delete(
    State(app): State<Shared>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(kind): Path<String>,
    Query(q): Query<BoxQuery>,
) -> Response {
    let s = match changing_session(&app, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let who = s.who.clone();
    reply(
        on_box(&app, &headers, q.mailbox, move |app, setup, mb| {
            let kind = greeting_kind(&kind)?;
            check_file_storage(setup).map_err(|e| store_error(app, &e))?;
            let timeout = super::super::lock_options(setup, &app.g)
                .map_err(|e| store_error(app, &e))?
                .timeout;
            let removed = setup
                .store
                .remove_greeting(&mb, kind, timeout)
                .map_err(|e| store_error(app, &e))?;
            if removed.is_empty() {
                return Err(json_error(StatusCode::NOT_FOUND, "no such greeting"));
            }
            app.audit(&who, addr, &format!("removed the {kind} greeting of {mb}"));
            refresh(app, setup, BTreeSet::from([mb]));
            Ok(json!({ "kind": kind.name(), "removed": removed.len() }))
        })
        .await,
    )
}

/// Runs a command of the command line (JSON lines) for an admin view.
fn command_json(
    app: &App,
    f: impl FnOnce(&mut Vec<u8>, &mut Reporter) -> Result<Exit>,
) -> std::result::Result<Value, Response> {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    {
        let mut rep = Reporter::new(&mut err);
        f(&mut out, &mut rep).map_err(|e| store_error(app, &e))?;
    }
    for line in String::from_utf8_lossy(&err).lines() {
        app.log(line.trim_start_matches("vmtool: ").to_string());
    }
    Ok(json_lines(&out))
}

/// `GET /api/boxes`: every box, the objects of `boxes --format json`.
async fn boxes(State(app): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(r) = admin_session(&app, &headers) {
        return r;
    }
    reply(
        with_setup(&app.clone(), move |setup| {
            let a = crate::cmd::boxes::BoxesArgs {
                contexts: Vec::new(),
                bytes: false,
                like_asterisk: false,
                temp_older_than: 14,
            };
            command_json(&app, |out, rep| {
                crate::cmd::boxes::exec(setup, &a, out, rep)
            })
        })
        .await,
    )
}

#[derive(Deserialize)]
struct SearchQuery {
    caller: Option<String>,
}

/// Messages a search returns at most (newest first).
const SEARCH_LIMIT: usize = 500;

/// `GET /api/search?caller=TEXT`: messages of every box whose caller name
/// or number contains TEXT, newest first, as `ls --caller TEXT --format json`.
async fn search(
    State(app): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<SearchQuery>,
) -> Response {
    if let Err(r) = admin_session(&app, &headers) {
        return r;
    }
    let Some(caller) = q.caller.filter(|c| !c.trim().is_empty() && c.len() <= 200) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "give caller=TEXT (1 to 200 characters)",
        );
    };
    reply(
        with_setup(&app.clone(), move |setup| {
            let a = crate::cmd::ls::LsArgs {
                targets: Vec::new(),
                folder: Vec::new(),
                new: false,
                since: None,
                until: None,
                caller: Some(caller.trim().to_string()),
                utc: false,
                archive: None,
                urgent: false,
                sort: Some(crate::cmd::ls::SortKey::Date),
                reverse: true,
                limit: Some(SEARCH_LIMIT),
            };
            command_json(&app, |out, rep| crate::cmd::ls::exec(setup, &a, out, rep))
        })
        .await,
    )
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
