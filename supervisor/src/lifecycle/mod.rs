//! The supervisor's event loop: serves `Supervisor` to the server on a unix socket, starts the
//! app in its sandbox on first use, stops it when idle, logs and backs off on crashes. The
//! process model and every rule are in SPEC.md, "Supervisor lifecycle"; the Cap'n Proto objects
//! are in `rpc.rs`, the timing rules in `policy.rs`, the log in `grainlog.rs`.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use capnp_rpc::{rpc_twoparty_capnp::Side, RpcSystem};
use futures::channel::{mpsc, oneshot};
use futures::future::{select, Either, LocalBoxFuture};
use futures::stream::FuturesUnordered;
use futures::{AsyncReadExt, FutureExt, StreamExt};
use granary_schema::grain_capnp::main_view;
use granary_schema::supervisor_capnp::grain_core;

use crate::cgroups::{Cgroup, Hierarchy};
use crate::grainlog::{GrainLog, SharedLog, DEFAULT_MAX_BYTES};
use crate::keeper::{Event, Keeper, Launcher};
use crate::policy::{self, Activity, Backoff};
use crate::sandbox::SandboxConfig;

/// Everything one grain's supervisor needs.
#[derive(Debug, Clone)]
pub struct GrainConfig {
    /// How to run the app. `stdio` and `extra_fds` are set by the supervisor (the log pipe,
    /// the Cap'n Proto socket and the web channel's listening socket); the rest is used as given.
    pub sandbox: SandboxConfig,
    /// The unix socket to listen on for the server.
    pub socket: PathBuf,
    /// The grain's direct web channel (SPEC.md, "Running grains"): a unix socket (mode 0600)
    /// the supervisor binds and listens on but never accepts on; the listening socket is the
    /// app's fd 4, so the bridge accepts the server's connections there. Must be outside the
    /// data directory, like `socket`.
    pub web_socket: Option<PathBuf>,
    /// Where `log` and `log.1` live.
    pub log_dir: PathBuf,
    /// Stop the app and exit after this long without inbound calls or wake locks.
    pub idle: Duration,
    /// Time between SIGTERM and SIGKILL when stopping the app.
    pub stop_grace: Duration,
    pub backoff: Backoff,
    /// Bound of each of the two log files.
    pub log_max_bytes: u64,
    /// Stop gracefully on SIGTERM, SIGINT and SIGHUP (`run` returns [`Stopped::Signal`]).
    /// Installs process-wide handlers: only for a process that is this supervisor.
    pub stop_on_signals: bool,
}

impl GrainConfig {
    /// Granary's defaults: idle 120 s, grace 5 s, back-off 1 s doubling to 300 s, 512 KiB logs.
    pub fn new(sandbox: SandboxConfig, socket: impl Into<PathBuf>, log_dir: impl Into<PathBuf>) -> GrainConfig {
        GrainConfig {
            sandbox,
            socket: socket.into(),
            web_socket: None,
            log_dir: log_dir.into(),
            idle: Duration::from_secs(120),
            stop_grace: Duration::from_secs(5),
            backoff: Backoff::default(),
            log_max_bytes: DEFAULT_MAX_BYTES,
            stop_on_signals: false,
        }
    }
}

/// Why the supervisor could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("another supervisor already serves this grain on {0}: shut that one down first (Supervisor.shutdown), or kill it and start again")]
    AlreadyRunning(PathBuf),
    #[error("{what}: {error}")]
    Io { what: String, error: io::Error },
    #[error("removing the cgroup a killed supervisor of this grain left behind: {0}")]
    Cgroup(#[from] crate::cgroups::CgroupError),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> LifecycleError {
    let what = what.into();
    move |error| LifecycleError::Io { what, error }
}

/// Why [`Listening::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Nothing used the grain for the configured idle time.
    Idle,
    /// The server called `Supervisor.shutdown`.
    Shutdown,
    /// The process received this stop signal (SIGTERM, SIGINT or SIGHUP), with
    /// [`GrainConfig::stop_on_signals`].
    Signal(i32),
}

/// A supervisor whose socket accepts connections; [`Listening::run`] serves them.
pub struct Listening {
    cfg: GrainConfig,
    listener: UnixListener,
    web_listener: Option<UnixListener>,
    log: GrainLog,
}

/// Open the grain log and listen on the socket. Once this returns, the server may connect.
pub fn bind(cfg: GrainConfig) -> Result<Listening, LifecycleError> {
    let log = GrainLog::open(&cfg.log_dir, cfg.log_max_bytes).map_err(io_err(format!("opening the grain log in {}", cfg.log_dir.display())))?;
    if cfg.socket.exists() {
        if UnixStream::connect(&cfg.socket).is_ok() {
            return Err(LifecycleError::AlreadyRunning(cfg.socket.clone()));
        }
        std::fs::remove_file(&cfg.socket).map_err(io_err(format!("removing the stale socket {}", cfg.socket.display())))?;
    }
    let listener = UnixListener::bind(&cfg.socket).map_err(io_err(format!("listening on {}", cfg.socket.display())))?;
    std::fs::set_permissions(&cfg.socket, std::fs::Permissions::from_mode(0o600)).map_err(io_err(format!("restricting {} to its owner", cfg.socket.display())))?;
    // The socket is ours, so no other supervisor runs this grain: a web socket file is stale.
    let web_listener = match &cfg.web_socket {
        Some(path) => Some(listen_web(path)?),
        None => None,
    };
    // The socket is ours, so no other supervisor runs this grain: a cgroup of its name was left
    // by one that was killed (SIGKILL leaves no chance to clean up). Remove it, with anything
    // still inside.
    if let (true, Some(name)) = (cfg.sandbox.cgroup, &cfg.sandbox.cgroup_name) {
        let hierarchy = Hierarchy::detect(&cfg.sandbox.cgroup_root)?;
        if let Some(stale) = Cgroup::existing(&hierarchy, name) {
            stale.remove()?;
        }
    }
    Ok(Listening { cfg, listener, web_listener, log })
}

/// Binds the direct web channel's socket (replacing a stale file) and listens on it.
fn listen_web(path: &Path) -> Result<UnixListener, LifecycleError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(format!("removing the stale socket {}", path.display()))(e)),
        _ => {}
    }
    let listener = UnixListener::bind(path).map_err(io_err(format!("listening on {}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_err(format!("restricting {} to its owner", path.display())))?;
    Ok(listener)
}

/// [`bind`] and [`Listening::run`].
pub fn run(cfg: GrainConfig) -> Result<Stopped, LifecycleError> {
    bind(cfg)?.run()
}

/// Where the app is in its life. `Supervisor.status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppState {
    NotStarted,
    Starting,
    /// Host pid of the sandbox's init.
    Running(i32),
    /// `code` is -1 and `signal` non-zero when the app was killed.
    Exited { code: i32, signal: i32 },
}

/// One start of the app.
struct AppRun {
    view: main_view::Client,
    /// Our copies of the app's fd 3, stdout/stderr and stdin: closed once `spawn` returned.
    child_fds: Vec<OwnedFd>,
    /// Fires when the app's output pipe reached EOF (everything it wrote is logged).
    output_done: Option<oneshot::Receiver<()>>,
    started: Instant,
    stop_requested: bool,
}

/// Puts futures on the RPC thread's task set.
#[derive(Clone)]
pub(crate) struct Spawner(mpsc::UnboundedSender<LocalBoxFuture<'static, ()>>);

impl Spawner {
    pub(crate) fn spawn(&self, f: impl std::future::Future<Output = ()> + 'static) {
        let _ = self.0.unbounded_send(f.boxed_local());
    }
}

/// The supervisor's state, owned by the RPC thread.
pub(crate) struct Shared {
    pub(crate) cfg: GrainConfig,
    pub(crate) log: SharedLog,
    pub(crate) spawner: Spawner,
    keeper: RefCell<Option<Box<dyn Launcher>>>,
    state: Cell<AppState>,
    run: RefCell<Option<AppRun>>,
    activity: Cell<Activity>,
    crashes: Cell<u32>,
    /// Number of the current (or last) app run; views remember theirs.
    generation: Cell<u64>,
    retry_at: Cell<Option<Instant>>,
    pub(crate) core: RefCell<Option<grain_core::Client>>,
    /// The direct web channel's listening socket, handed to every app run as fd 4.
    web_listener: Option<UnixListener>,
    /// The capabilities the app holds, as passed on by this supervisor.
    pub(crate) caps: crate::caps::HeldCaps,
    waiters: RefCell<Vec<oneshot::Sender<()>>>,
    closing: Cell<bool>,
    quit: RefCell<Option<oneshot::Sender<Stopped>>>,
}

impl Listening {
    /// Serve until the grain is idle or shut down. Stops the app before returning.
    pub fn run(self) -> Result<Stopped, LifecycleError> {
        let (keeper, events) = Keeper::start().map_err(io_err("starting the keeper thread"))?;
        self.run_with(Box::new(keeper), events)
    }

    /// [`Listening::run`] with another way of starting the app (tests use a fake).
    pub(crate) fn run_with(self, keeper: Box<dyn Launcher>, events: mpsc::UnboundedReceiver<Event>) -> Result<Stopped, LifecycleError> {
        let Listening { cfg, listener, web_listener, log } = self;
        let listener = Async::new(listener).map_err(io_err("watching the supervisor socket"))?;
        let (task_tx, mut task_rx) = mpsc::unbounded();
        let (quit_tx, quit_rx) = oneshot::channel();
        let socket = cfg.socket.clone();
        let web_socket = cfg.web_socket.clone();
        let shared = Rc::new(Shared {
            cfg,
            log: Rc::new(RefCell::new(log)),
            spawner: Spawner(task_tx),
            keeper: RefCell::new(Some(keeper)),
            state: Cell::new(AppState::NotStarted),
            run: RefCell::new(None),
            activity: Cell::new(Activity { last: Instant::now(), in_flight: 0, wake_locks: 0 }),
            crashes: Cell::new(0),
            caps: Default::default(),
            generation: Cell::new(0),
            retry_at: Cell::new(None),
            core: RefCell::new(None),
            web_listener,
            waiters: RefCell::new(Vec::new()),
            closing: Cell::new(false),
            quit: RefCell::new(Some(quit_tx)),
        });
        shared.spawner.spawn(accept_loop(listener, shared.clone()));
        shared.spawner.spawn(keeper_events(events, shared.clone()));
        shared.spawner.spawn(idle_loop(shared.clone()));
        if shared.cfg.stop_on_signals {
            let signals = stop_signals::StopSignals::install().map_err(io_err("installing the stop-signal handlers"))?;
            shared.spawner.spawn(stop_signals::stop_on_signal(signals, shared.clone()));
        }
        let mut tasks = FuturesUnordered::new();
        let drive = futures::future::poll_fn(|cx| {
            loop {
                while let Poll::Ready(Some(t)) = task_rx.poll_next_unpin(cx) {
                    tasks.push(t);
                }
                match tasks.poll_next_unpin(cx) {
                    Poll::Ready(Some(())) => continue,
                    _ => return Poll::<()>::Pending,
                }
            }
        });
        let stopped = async_io::block_on(async {
            match select(drive, quit_rx).await {
                Either::Right((Ok(why), _)) => why,
                _ => unreachable!("the task set never finishes and the quit sender lives in `shared`"),
            }
        });
        let _ = std::fs::remove_file(&socket);
        if let Some(path) = web_socket {
            let _ = std::fs::remove_file(path);
        }
        drop(tasks); // closes every connection
        // Joins the keeper thread; the app has been stopped by whoever quit.
        let keeper = shared.keeper.borrow_mut().take();
        drop(keeper);
        Ok(stopped)
    }
}

async fn accept_loop(listener: Async<UnixListener>, shared: Rc<Shared>) {
    let bootstrap: granary_schema::supervisor_capnp::supervisor::Client = capnp_rpc::new_client(crate::rpc::SupervisorImpl::new(shared.clone()));
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let (r, w) = stream.split();
                let net = granary_schema::vat_network(r, w, Side::Server);
                let rpc = RpcSystem::new(Box::new(net), Some(bootstrap.clone().client));
                shared.spawner.spawn(rpc.map(|_| ()));
            }
            Err(e) => {
                eprintln!("granary supervisor: accepting a connection failed: {e}");
                Timer::after(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn idle_loop(shared: Rc<Shared>) {
    let idle = shared.cfg.idle;
    loop {
        Timer::after(policy::idle_tick(idle)).await;
        if !shared.closing.get() && policy::idle_expired(&shared.activity.get(), idle, Instant::now()) {
            shared.closing.set(true);
            shared.log.borrow_mut().event(&format!("no use for {} s and no wake lock held: stopping", idle.as_secs_f64()));
            shared.stop().await;
            shared.finish(Stopped::Idle);
            return;
        }
    }
}

async fn keeper_events(mut events: mpsc::UnboundedReceiver<Event>, shared: Rc<Shared>) {
    while let Some(ev) = events.next().await {
        match ev {
            Event::Started(Ok(pid)) => {
                if let Some(run) = shared.run.borrow_mut().as_mut() {
                    run.child_fds.clear();
                    run.started = Instant::now();
                }
                shared.log.borrow_mut().event(&format!("app started (sandbox pid {pid})"));
                shared.set_state(AppState::Running(pid));
            }
            Event::Started(Err(e)) => {
                if let Some(run) = shared.run.borrow_mut().as_mut() {
                    run.child_fds.clear();
                }
                shared.log.borrow_mut().event(&format!("the app could not be started: {e}"));
                shared.exited(127).await;
            }
            Event::Exited { code, cleanup_error } => {
                if let Some(e) = cleanup_error {
                    shared.log.borrow_mut().event(&format!("cleaning up after the app: {e}"));
                }
                shared.exited(code).await;
            }
        }
    }
}

/// Marks an inbound call in progress; counts as activity when it starts and when it ends.
pub(crate) struct Busy(Rc<Shared>);

impl Drop for Busy {
    fn drop(&mut self) {
        let mut a = self.0.activity.get();
        a.in_flight -= 1;
        a.last = Instant::now();
        self.0.activity.set(a);
    }
}

impl Shared {
    pub(crate) fn state(&self) -> AppState {
        self.state.get()
    }

    fn set_state(&self, s: AppState) {
        self.state.set(s);
        for w in self.waiters.borrow_mut().drain(..) {
            let _ = w.send(());
        }
    }

    /// Resolves at the next state change.
    async fn changed(&self) {
        let (tx, rx) = oneshot::channel();
        self.waiters.borrow_mut().push(tx);
        let _ = rx.await;
    }

    pub(crate) fn touch(&self) {
        let mut a = self.activity.get();
        a.last = Instant::now();
        self.activity.set(a);
    }

    pub(crate) fn busy(self: &Rc<Self>) -> Busy {
        let mut a = self.activity.get();
        a.in_flight += 1;
        a.last = Instant::now();
        self.activity.set(a);
        Busy(self.clone())
    }

    pub(crate) fn add_wake_lock(&self, delta: isize) {
        let mut a = self.activity.get();
        a.wake_locks = a.wake_locks.checked_add_signed(delta).expect("wake locks balance");
        a.last = Instant::now();
        self.activity.set(a);
    }

    /// Why a call on the view of run `generation` failed, in words the caller can act on. The
    /// connection usually drops a moment before the keeper reports the exit: wait for it (≤ 1 s).
    pub(crate) async fn explain(&self, generation: u64, e: capnp::Error) -> capnp::Error {
        if e.kind != capnp::ErrorKind::Disconnected {
            return e;
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        while generation == self.generation.get() && matches!(self.state.get(), AppState::Starting | AppState::Running(_)) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let _ = select(Box::pin(self.changed()), Timer::after(left)).await;
        }
        let why = match self.state.get() {
            _ if generation != self.generation.get() => "it has been restarted since".into(),
            AppState::Exited { code: -1, signal } => format!("it was killed by signal {signal}"),
            AppState::Exited { code, .. } => format!("it exited with status {code}"),
            _ => "its connection to the supervisor was lost".into(),
        };
        capnp::Error::disconnected(format!("the app is no longer running this view ({why}; see the grain log): call getMainView again"))
    }

    /// The app's main view and the number of the run it belongs to, starting the app if needed.
    pub(crate) fn main_view(self: &Rc<Self>) -> Result<(main_view::Client, u64), capnp::Error> {
        self.touch();
        if self.closing.get() {
            return Err(capnp::Error::disconnected("this grain's supervisor is shutting down: start a new one".into()));
        }
        if matches!(self.state.get(), AppState::Starting | AppState::Running(_)) {
            if let Some(run) = self.run.borrow().as_ref() {
                return Ok((run.view.clone(), self.generation.get()));
            }
        }
        if let Some(at) = self.retry_at.get() {
            let now = Instant::now();
            if now < at {
                return Err(capnp::Error::overloaded(format!(
                    "the app crashed {} times in a row; the next restart is allowed in {} ms; see the grain log",
                    self.crashes.get(),
                    (at - now).as_millis().max(1)
                )));
            }
        }
        self.start().map_err(|e| {
            let msg = format!("cannot prepare the app's start: {e}");
            self.log.borrow_mut().event(&msg);
            capnp::Error::failed(msg)
        })
    }

    fn start(self: &Rc<Self>) -> io::Result<(main_view::Client, u64)> {
        let (ours, theirs) = UnixStream::pair()?; // close-on-exec; the sandbox installs theirs as fd 3
        let (out_r, out_w) = pipe()?;
        let null = OwnedFd::from(File::open("/dev/null")?);
        let mut cfg: SandboxConfig = self.cfg.sandbox.clone();
        cfg.stdio = [Some(null.as_raw_fd()), Some(out_w.as_raw_fd()), Some(out_w.as_raw_fd())];
        cfg.extra_fds = vec![theirs.as_raw_fd()];
        if let Some(web) = &self.web_listener {
            cfg.extra_fds.push(web.as_raw_fd());
        }
        let output = Async::new(File::from(out_r))?;
        let (r, w) = Async::new(ours)?.split();
        let net = granary_schema::vat_network(r, w, Side::Server);
        let api: granary_schema::grain_capnp::grain_api::Client = capnp_rpc::new_client(crate::rpc::GrainApiImpl::new(self.clone()));
        let mut rpc = RpcSystem::new(Box::new(net), Some(api.client));
        let view: main_view::Client = rpc.bootstrap(Side::Client);
        self.spawner.spawn(rpc.map(|_| ()));
        let (done_tx, done_rx) = oneshot::channel();
        self.spawner.spawn(pump_output(output, self.log.clone(), done_tx));
        *self.run.borrow_mut() = Some(AppRun {
            view: view.clone(),
            child_fds: vec![OwnedFd::from(theirs), out_w, null],
            output_done: Some(done_rx),
            started: Instant::now(),
            stop_requested: false,
        });
        self.generation.set(self.generation.get() + 1);
        self.set_state(AppState::Starting);
        self.log.borrow_mut().event(&format!("starting the app: {:?}", self.cfg.sandbox.argv));
        if let Some(k) = self.keeper.borrow().as_ref() {
            k.launch(cfg);
        }
        Ok((view, self.generation.get()))
    }

    /// The app (or its start) ended with `code` (128 + signal if killed).
    async fn exited(self: &Rc<Self>, code: i32) {
        let (done, started, requested) = match self.run.borrow_mut().as_mut() {
            Some(run) => (run.output_done.take(), run.started, run.stop_requested),
            None => (None, Instant::now(), false),
        };
        if let Some(done) = done {
            let _ = done.await; // log everything the app wrote before the exit line
        }
        let (code, signal) = if code > 128 { (-1, code - 128) } else { (code, 0) };
        let how = if signal != 0 { format!("killed by signal {signal} ({})", signal_name(signal)) } else { format!("exited with status {code}") };
        if requested {
            self.log.borrow_mut().event(&format!("app stopped: {how}"));
            self.crashes.set(0);
            self.retry_at.set(None);
        } else {
            let crashes = self.cfg.backoff.after_crash(self.crashes.get(), started.elapsed());
            self.crashes.set(crashes);
            let delay = self.cfg.backoff.delay(crashes);
            let mut log = self.log.borrow_mut();
            log.event(&format!("app {how}"));
            if delay > Duration::ZERO {
                log.event(&format!("the app crashed {crashes} times in a row: next start allowed in {} s", delay.as_secs_f64()));
                self.retry_at.set(Some(Instant::now() + delay));
            } else {
                self.retry_at.set(None);
            }
            drop(log);
            if let Some(core) = self.core.borrow().clone() {
                let mut req = core.app_exited_request();
                let mut info = req.get().init_info();
                info.set_code(code);
                info.set_signal(signal);
                let log = self.log.clone();
                self.spawner.spawn(async move {
                    if let Err(e) = req.send().promise.await {
                        log.borrow_mut().event(&format!("telling the server the app exited failed: {e}"));
                    }
                });
            }
        }
        *self.run.borrow_mut() = None;
        self.set_state(AppState::Exited { code, signal });
    }

    /// Stop the app if it runs: SIGTERM, then SIGKILL after the grace period.
    pub(crate) async fn stop(self: &Rc<Self>) {
        loop {
            match self.state.get() {
                AppState::Starting => self.changed().await,
                AppState::Running(_) => {
                    if let Some(run) = self.run.borrow_mut().as_mut() {
                        run.stop_requested = true;
                    }
                    self.signal(libc::SIGTERM);
                    let grace = Timer::after(self.cfg.stop_grace);
                    if let Either::Right(_) = select(Box::pin(self.changed()), grace).await {
                        self.log.borrow_mut().event(&format!("app still running {} s after SIGTERM: killing it", self.cfg.stop_grace.as_secs_f64()));
                        self.signal(libc::SIGKILL);
                        while matches!(self.state.get(), AppState::Running(_)) {
                            self.changed().await;
                        }
                    }
                }
                AppState::NotStarted | AppState::Exited { .. } => return,
            }
        }
    }

    fn signal(&self, sig: i32) {
        if let Some(k) = self.keeper.borrow().as_ref() {
            k.signal(sig);
        }
    }

    /// Begin shutting down: new `getMainView` calls fail from now on.
    pub(crate) fn close(&self) {
        self.closing.set(true);
    }

    /// Make `run` return.
    pub(crate) fn finish(&self, why: Stopped) {
        if let Some(q) = self.quit.borrow_mut().take() {
            let _ = q.send(why);
        }
    }
}

async fn pump_output(mut output: Async<File>, log: SharedLog, done: oneshot::Sender<()>) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match futures::AsyncReadExt::read(&mut output, &mut buf).await {
            Ok(0) => break,
            Ok(n) => log.borrow_mut().write(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                log.borrow_mut().event(&format!("reading the app's output failed: {e}"));
                break;
            }
        }
    }
    let _ = done.send(());
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn signal_name(sig: i32) -> String {
    let p = unsafe { libc::strsignal(sig) };
    if p.is_null() {
        return "unknown signal".into();
    }
    unsafe { std::ffi::CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

mod stop_signals;
#[cfg(test)]
mod tests;
