//! `sfbpatch serve`: the live web dashboard of the runs in a state store.
//!
//! - `/` lists the runs, `/runs/{id}` shows one live: one self-contained HTML page ([`page`]),
//!   inline CSS and script, nothing loaded from anywhere else. Every value from a topology or a
//!   command's output reaches the page as data (JSON, `<` escaped) and is shown with
//!   `textContent`, never as markup.
//! - `/runs/{id}/timeline` is the run's timeline as the HTML report draws it
//!   ([`sfbpatch_report::render_timeline`]): an HTML fragment the page places in its timeline
//!   section. It is the one piece of markup the page takes from the server: the report's
//!   renderer escapes every value from a topology or a command's output.
//! - `/api/runs` and `/api/runs/{id}` give the same data as JSON ([`view`]), and
//!   `/api/runs/{id}/events` streams a fresh snapshot (server-sent events) within about a
//!   second of each journal commit; a finished run's stream ends after its last snapshot.
//! - `POST /api/runs/{id}/approve` and `/api/runs/{id}/stop`, refused unless
//!   [`Config::allow_actions`], approve a canary wave and ask the run's controller to stop at
//!   its next step boundary.
//!
//! Invariants:
//! - The server only reads the store, except the two actions; the engine never waits on it.
//!   Every store access runs on one dedicated reader thread that owns the store handle; the
//!   async runtime only waits for answers, and a closed or slow client costs the run nothing.
//! - Loopback only unless a token is given ([`bind`] refuses otherwise); with a token, every
//!   request carries it (`Authorization: Bearer`, or `?token=` on `GET`), else 401.
//! - Actions are `POST` only, need the header `X-Sfbpatch-Action: 1` (which a cross-site form
//!   cannot send, and a cross-site script cannot without a CORS preflight this server never
//!   grants), and are refused when `Origin` or `Sec-Fetch-Site` shows another site.
//! - Everything comes in as arguments ([`Config`]): no environment, no files.

mod page;
pub mod view;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use sfbpatch_engine::{Engine, EngineError, JournalEntry, RunId, RunRecord, Store, StoreError};

pub use view::{RunList, RunView, StateOf};

/// How often an event stream reads the store for new journal records.
pub const POLL: Duration = Duration::from_millis(500);
/// An event stream spends at most one part in this many of its time building snapshots: on a
/// large run whose snapshot takes longer than `POLL / SNAPSHOT_SHARE` to build, snapshots come
/// less often than every `POLL`, so that the stream never takes much of the machine from a run.
pub const SNAPSHOT_SHARE: u32 = 10;
/// The most runs `/api/runs` lists.
pub const RUN_LIST_LIMIT: usize = 50;
/// The header an action must carry.
pub const ACTION_HEADER: &str = "x-sfbpatch-action";

/// Opens the state store; called on the reader thread (a store handle stays on one thread).
pub type OpenStore = dyn Fn() -> Result<Box<dyn Store>, StoreError> + Send + Sync;

/// Everything the server needs, from the binary.
#[derive(Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Every request must carry it; required on an address other than loopback.
    pub token: Option<String>,
    /// Approve and stop are refused (403) without it.
    pub allow_actions: bool,
    /// Who the actions are recorded as asked by.
    pub operator: String,
    pub open_store: Arc<OpenStore>,
    pub state_of: Arc<StateOf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "refusing to serve on {addr} without a token: an address other than loopback needs \
         --token or --token-file [SFB-W001]"
    )]
    TokenRequired { addr: SocketAddr },
    #[error("the token is empty; give a token of at least 16 characters [SFB-W002]")]
    WeakToken,
    #[error("cannot listen on {addr}: {source} [SFB-W003]")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the web server on {addr} stopped: {source} [SFB-W004]")]
    Serve {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl ServeError {
    /// Stable code (docs/serve.md).
    pub fn code(&self) -> &'static str {
        match self {
            ServeError::TokenRequired { .. } => "SFB-W001",
            ServeError::WeakToken => "SFB-W002",
            ServeError::Bind { .. } => "SFB-W003",
            ServeError::Serve { .. } => "SFB-W004",
        }
    }

    /// The configuration was refused (bad usage), as opposed to the system refusing.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            ServeError::TokenRequired { .. } | ServeError::WeakToken
        )
    }
}

/// The shortest token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// A server bound to its address, not yet serving.
pub struct Bound {
    listener: TcpListener,
    addr: SocketAddr,
    config: Config,
}

/// Checks the configuration and binds the address (port 0 picks a free one).
pub fn bind(config: Config) -> Result<Bound, ServeError> {
    if let Some(token) = &config.token
        && token.chars().count() < MIN_TOKEN_LEN
    {
        return Err(ServeError::WeakToken);
    }
    if config.token.is_none() && !config.listen.ip().is_loopback() {
        return Err(ServeError::TokenRequired {
            addr: config.listen,
        });
    }
    let listener = TcpListener::bind(config.listen).map_err(|source| ServeError::Bind {
        addr: config.listen,
        source,
    })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.listen,
        source,
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| ServeError::Bind { addr, source })?;
    Ok(Bound {
        listener,
        addr,
        config,
    })
}

impl Bound {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until the process ends, on a runtime of its own (call from a thread that may
    /// block).
    pub fn serve(self) -> Result<(), ServeError> {
        let addr = self.addr;
        let failed = |source| ServeError::Serve { addr, source };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sfbpatch-serve")
            .enable_all()
            .build()
            .map_err(failed)?;
        let reader = Reader::start(self.config.open_store.clone());
        let app = router(Arc::new(App {
            config: self.config,
            reader,
        }));
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(self.listener).map_err(failed)?;
            axum::serve(listener, app).await.map_err(failed)
        })
    }

    /// Serves on a thread of its own, beside whatever this process does (`apply --serve`).
    /// The thread ends with the process.
    pub fn spawn(self) -> std::thread::JoinHandle<Result<(), ServeError>> {
        std::thread::Builder::new()
            .name("sfbpatch-serve".into())
            .spawn(move || self.serve())
            .expect("the operating system starts a thread")
    }
}

/// A store access; given the store, or why it could not be opened.
type Job = Box<dyn FnOnce(Result<&mut dyn Store, StoreError>) + Send>;

/// The one thread that owns the store handle; requests and event streams send it jobs.
#[derive(Clone)]
struct Reader {
    jobs: mpsc::Sender<Job>,
}

#[derive(Debug)]
enum Failed {
    Store(StoreError),
    Engine(EngineError),
    Report(String),
    Gone,
}

impl From<StoreError> for Failed {
    fn from(e: StoreError) -> Self {
        Failed::Store(e)
    }
}

impl Reader {
    fn start(open: Arc<OpenStore>) -> Self {
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("sfbpatch-serve-store".into())
            .spawn(move || {
                // Opened on first use, and again after an attempt failed.
                let mut store: Option<Box<dyn Store>> = None;
                for job in rx {
                    match &mut store {
                        Some(s) => job(Ok(&mut **s)),
                        None => match open() {
                            Ok(s) => job(Ok(&mut **store.insert(s))),
                            Err(e) => job(Err(e)),
                        },
                    }
                }
            })
            .expect("the operating system starts a thread");
        Reader { jobs }
    }

    /// Runs `f` on the store, on the reader thread.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Store) -> Result<T, Failed> + Send + 'static,
    ) -> Result<T, Failed> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |store| {
            let _ = tx.send(store.map_err(Failed::Store).and_then(f));
        });
        self.jobs.send(job).map_err(|_| Failed::Gone)?;
        rx.await.map_err(|_| Failed::Gone)?
    }
}

struct App {
    config: Config,
    reader: Reader,
}

impl App {
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Store) -> Result<T, Failed> + Send + 'static,
    ) -> Result<T, Failed> {
        self.reader.with(f).await
    }
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/runs/{id}", get(run_page))
        .route("/runs/{id}/timeline", get(timeline))
        .route("/api/runs", get(api_runs))
        .route("/api/runs/{id}", get(api_run))
        .route("/api/runs/{id}/events", get(events))
        .route("/api/runs/{id}/approve", post(approve))
        .route("/api/runs/{id}/stop", post(stop))
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app)
}

/// Compares in time independent of where the first difference lies.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn token_of(request: &Request) -> Option<String> {
    if let Some(v) = request.headers().get(header::AUTHORIZATION)
        && let Ok(v) = v.to_str()
        && let Some(t) = v.strip_prefix("Bearer ")
    {
        return Some(t.trim().to_string());
    }
    if request.method() == axum::http::Method::GET {
        let query = request.uri().query().unwrap_or("");
        for pair in query.split('&') {
            if let Some(t) = pair.strip_prefix("token=") {
                return Some(percent_decode(t));
            }
        }
    }
    None
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every request: the token when one is set; security headers on every answer.
async fn guard(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    if let Some(expected) = &app.config.token {
        let given = token_of(&request);
        if !given.is_some_and(|g| same(&g, expected)) {
            let mut r = (
                StatusCode::UNAUTHORIZED,
                "a token is required: Authorization: Bearer TOKEN (or ?token=TOKEN on the page)\n",
            )
                .into_response();
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    }
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn error_response(e: Failed) -> Response {
    let (status, text) = match e {
        Failed::Store(StoreError::NoSuchRun(id)) => {
            (StatusCode::NOT_FOUND, format!("run {id} does not exist"))
        }
        Failed::Store(e) if e.is_transient() => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{e} [{}]", e.code()),
        ),
        Failed::Store(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{e} [{}]", e.code()),
        ),
        Failed::Engine(e @ EngineError::NothingToApprove { .. }) => {
            (StatusCode::CONFLICT, format!("{e} [{}]", e.code()))
        }
        Failed::Engine(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{e} [{}]", e.code()),
        ),
        Failed::Report(e) => (StatusCode::INTERNAL_SERVER_ERROR, e),
        Failed::Gone => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the store reader stopped".to_string(),
        ),
    };
    (status, format!("{text}\n")).into_response()
}

fn json_response<T: serde::Serialize>(value: &T) -> Response {
    match serde_json::to_string(value) {
        Ok(text) => (
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn list(app: &App) -> Result<RunList, Failed> {
    let state_of = app.config.state_of.clone();
    app.with(move |s| Ok(view::run_list(s, &*state_of, RUN_LIST_LIMIT)?))
        .await
}

async fn snapshot(app: &App, id: RunId) -> Result<RunView, Failed> {
    let state_of = app.config.state_of.clone();
    app.with(move |s| {
        let mut follow = Follow::new(id);
        follow.read(s, &*state_of)?;
        follow.view()
    })
    .await
}

async fn index(State(app): State<Arc<App>>) -> Response {
    match list(&app).await {
        Ok(runs) => Html(page::render(page::Kind::Runs, &runs)).into_response(),
        Err(e) => error_response(e),
    }
}

async fn run_page(State(app): State<Arc<App>>, Path(id): Path<RunId>) -> Response {
    match snapshot(&app, id).await {
        Ok(view) => {
            let kind = page::Kind::Run {
                actions: app.config.allow_actions,
            };
            Html(page::render(kind, &view)).into_response()
        }
        Err(e) => error_response(e),
    }
}

/// The run's timeline as the HTML report draws it: a fragment for the page's timeline
/// section. The records are read on the reader thread; the report is built and drawn beside
/// it, so that a large run's picture does not hold up the event streams.
async fn timeline(State(app): State<Arc<App>>, Path(id): Path<RunId>) -> Response {
    let state_of = app.config.state_of.clone();
    let read = app
        .with(move |s| {
            let mut follow = Follow::new(id);
            follow.read(s, &*state_of)?;
            Ok(follow)
        })
        .await;
    let mut follow = match read {
        Ok(follow) => follow,
        Err(e) => return error_response(e),
    };
    match tokio::task::spawn_blocking(move || follow.timeline()).await {
        Ok(Ok(fragment)) => Html(fragment).into_response(),
        Ok(Err(e)) => error_response(e),
        Err(e) => error_response(Failed::Report(format!("drawing the timeline failed: {e}"))),
    }
}

async fn api_runs(State(app): State<Arc<App>>) -> Response {
    match list(&app).await {
        Ok(runs) => json_response(&runs),
        Err(e) => error_response(e),
    }
}

async fn api_run(State(app): State<Arc<App>>, Path(id): Path<RunId>) -> Response {
    match snapshot(&app, id).await {
        Ok(view) => json_response(&view),
        Err(e) => error_response(e),
    }
}

/// What an event stream has read of a run: its spec (read once), the journal so far (each poll
/// reads only the records committed since), and the state last judged and sent.
struct Follow {
    id: RunId,
    /// The run, with its state as recorded.
    run: Option<RunRecord>,
    journal: Vec<JournalEntry>,
    stop: Option<sfbpatch_engine::StopRequest>,
    /// The state as the reader judges it, the last sequence number and whether a stop is
    /// asked: at the last read, and in the last snapshot sent.
    judged: Option<(sfbpatch_engine::RunState, i64, bool)>,
    sent: Option<(sfbpatch_engine::RunState, i64, bool)>,
}

impl Follow {
    fn new(id: RunId) -> Self {
        Follow {
            id,
            run: None,
            journal: Vec::new(),
            stop: None,
            judged: None,
            sent: None,
        }
    }

    fn finished(&self) -> bool {
        self.judged.is_some_and(|(state, _, _)| state.is_finished())
    }

    fn seq(&self) -> i64 {
        self.journal.last().map_or(0, |e| e.seq)
    }

    /// Reads what changed; returns whether a new snapshot is due.
    fn read(&mut self, store: &mut dyn Store, state_of: &StateOf) -> Result<bool, Failed> {
        let run = match &mut self.run {
            Some(run) => {
                run.state = store.run_state(self.id)?;
                run
            }
            None => self.run.insert(store.run(self.id)?),
        };
        let fresh = store.journal_since(self.id, self.journal.last().map_or(0, |e| e.seq))?;
        self.journal.extend(fresh);
        let state = state_of(run, store)?;
        self.stop = store
            .stop_request(self.id)?
            .filter(|_| state == sfbpatch_engine::RunState::Running);
        self.judged = Some((state, self.seq(), self.stop.is_some()));
        Ok(self.judged != self.sent)
    }

    /// The view after [`Follow::read`], with the run's state as the reader judged it.
    fn view(&mut self) -> Result<RunView, Failed> {
        let stop = self.stop.clone();
        let view = self.judged_run(|run, journal| view::run_view(run, journal, stop.as_ref()))?;
        self.sent = self.judged;
        Ok(view)
    }

    /// The timeline of the HTML report after [`Follow::read`] (times of a run over SSH in this
    /// computer's time zone, as `sfbpatch report`), with the run's state as the reader judged
    /// it.
    fn timeline(&mut self) -> Result<String, Failed> {
        self.judged_run(|run, journal| {
            sfbpatch_report::build(run, journal, &[])
                .map(|report| sfbpatch_report::render_timeline(&report))
        })
    }

    /// `f` on the run with its state as the reader judged it, and the journal read.
    fn judged_run<T>(
        &mut self,
        f: impl FnOnce(&RunRecord, &[JournalEntry]) -> Result<T, sfbpatch_report::ReportError>,
    ) -> Result<T, Failed> {
        let (state, _, _) = self.judged.ok_or(Failed::Gone)?;
        let run = self.run.as_mut().ok_or(Failed::Gone)?;
        let recorded = std::mem::replace(&mut run.state, state);
        let done = f(run, &self.journal);
        run.state = recorded;
        done.map_err(|e| Failed::Report(format!("{e} [{}]", e.code())))
    }
}

async fn events(State(app): State<Arc<App>>, Path(id): Path<RunId>) -> Response {
    // The run must exist before the stream starts.
    if let Err(e) = app.with(move |s| Ok(s.run(id).map(|_| ())?)).await {
        return error_response(e);
    }
    let state_of = app.config.state_of.clone();
    let stream = futures_util::stream::unfold(
        (app, Some(Follow::new(id)), Duration::ZERO),
        move |(app, follow, pause)| {
            let state_of = state_of.clone();
            async move {
                let mut follow = follow?;
                tokio::time::sleep(pause).await;
                loop {
                    let state_of = state_of.clone();
                    let started = std::time::Instant::now();
                    let polled = app
                        .with(move |s| {
                            let due = follow.read(s, &*state_of)?;
                            let json = if due {
                                Some(
                                    serde_json::to_string(&follow.view()?)
                                        .map_err(|e| Failed::Report(e.to_string()))?,
                                )
                            } else {
                                None
                            };
                            Ok((follow, json))
                        })
                        .await;
                    match polled {
                        Ok((f, Some(json))) => {
                            let event = Event::default().event("snapshot").data(json);
                            // A finished run changes no more: its last snapshot ends the stream.
                            let next = if f.finished() { None } else { Some(f) };
                            // A snapshot of a large run takes a while to build: the stream
                            // spends at most 1/SNAPSHOT_SHARE of its time building them.
                            let pause = POLL.max(started.elapsed() * SNAPSHOT_SHARE);
                            return Some((
                                Ok::<_, std::convert::Infallible>(event),
                                (app, next, pause),
                            ));
                        }
                        Ok((f, None)) => {
                            // Nothing new: poll again after the pause.
                            follow = f;
                            tokio::time::sleep(POLL).await;
                        }
                        Err(e) => {
                            // The store is unreachable or the run is gone: say so, and end.
                            let text = match e {
                                Failed::Store(e) => format!("{e} [{}]", e.code()),
                                other => format!("{other:?}"),
                            };
                            let event = Event::default().event("failed").data(text);
                            return Some((Ok(event), (app, None, Duration::ZERO)));
                        }
                    }
                }
            }
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// Refuses an action unless actions are allowed and the request comes from this page.
fn action_allowed(app: &App, headers: &HeaderMap) -> Result<(), &'static str> {
    if !app.config.allow_actions {
        return Err("actions are off: start `sfbpatch serve` with --allow-actions");
    }
    if headers.get(ACTION_HEADER).and_then(|v| v.to_str().ok()) != Some("1") {
        return Err("an action needs the header X-Sfbpatch-Action: 1");
    }
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && site != "same-origin"
        && site != "none"
    {
        return Err("a cross-site request is refused");
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        let origin = origin.to_str().ok();
        let same_site = match (origin, host) {
            (Some(o), Some(h)) => o
                .strip_prefix("http://")
                .or_else(|| o.strip_prefix("https://"))
                .is_some_and(|o| o.eq_ignore_ascii_case(h)),
            _ => false,
        };
        if !same_site {
            return Err("a cross-site request is refused (Origin is not this server)");
        }
    }
    Ok(())
}

async fn approve(
    State(app): State<Arc<App>>,
    Path(id): Path<RunId>,
    headers: HeaderMap,
) -> Response {
    if let Err(why) = action_allowed(&app, &headers) {
        return (StatusCode::FORBIDDEN, format!("{why}\n")).into_response();
    }
    let by = app.config.operator.clone();
    let done = app
        .with(move |s| {
            let at = last_at(s, id)?;
            Engine::approve(s, id, &by, at).map_err(Failed::Engine)
        })
        .await;
    match done {
        Ok(()) => (
            StatusCode::OK,
            format!("approved the canary wave of run {id}; `sfbpatch resume` starts the rest\n"),
        )
            .into_response(),
        Err(e) => error_response(e),
    }
}

/// The target-clock time of the run's last journal record (or its creation): the time given
/// to what an action records.
fn last_at(s: &mut dyn Store, id: RunId) -> Result<sfbpatch_engine::Millis, Failed> {
    let run = s.run(id)?;
    let last = s.journal(id)?.last().map(|e| e.at);
    Ok(last.unwrap_or(run.created_at))
}

async fn stop(State(app): State<Arc<App>>, Path(id): Path<RunId>, headers: HeaderMap) -> Response {
    if let Err(why) = action_allowed(&app, &headers) {
        return (StatusCode::FORBIDDEN, format!("{why}\n")).into_response();
    }
    let by = app.config.operator.clone();
    let state_of = app.config.state_of.clone();
    let done = app
        .with(move |s| {
            let run = s.run(id)?;
            let state = state_of(&run, s)?;
            if state != sfbpatch_engine::RunState::Running {
                return Ok(Err(state));
            }
            let at = last_at(s, id)?;
            s.request_stop(id, &by, at)?;
            Ok(Ok(()))
        })
        .await;
    match done {
        Ok(Ok(())) => (
            StatusCode::OK,
            format!("asked run {id} to stop at its next step boundary\n"),
        )
            .into_response(),
        Ok(Err(state)) => (
            StatusCode::CONFLICT,
            format!("run {id} is {}: there is nothing to stop\n", state.as_str()),
        )
            .into_response(),
        Err(e) => error_response(e),
    }
}

#[cfg(test)]
mod tests {
    use super::{percent_decode, same};

    #[test]
    fn tokens_compare_exactly() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
        assert!(!same("", "a"));
    }

    #[test]
    fn query_tokens_are_percent_decoded() {
        assert_eq!(percent_decode("a%2Bb%3D"), "a+b=");
        assert_eq!(percent_decode("a+b"), "a b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
