//! Starting grains: one `granary supervisor` process per grain in use, reached over its unix
//! socket with Cap'n Proto (SPEC.md, "Running grains"). The server re-executes its own binary,
//! waits for `ready`, and keeps the connection until the supervisor exits (idle, shutdown,
//! crash), after which the next use starts a new one. Once a session exists, its requests take
//! the grain's direct web channel (`web.sock`, served by the bridge) when the app offers one;
//! while any is in flight the runner keeps the grain awake (SPEC.md, "Running grains").

use crate::apps::InstalledApp;
use crate::gateway::lane::Lane;
use crate::grains::{Grain, GrainDirs};
use anyhow::{anyhow, bail, Context, Result};
use async_executor::LocalExecutor;
use capnp_rpc::{rpc_twoparty_capnp::Side, RpcSystem};
use futures::future::{LocalBoxFuture, Shared};
use futures::{AsyncReadExt, FutureExt};
use granary_schema::grain_capnp::{main_view, web_channel};
use granary_schema::supervisor_capnp::{grain_core, supervisor};
use granary_schema::web_session_capnp::web_session;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::BufRead;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How long a supervisor may take to say `ready`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request waits for a stopping supervisor to exit before it starts the grain again:
/// more than the supervisor's grace period for the app (5 s) and its cleanup.
const STOPPING_WAIT: Duration = Duration::from_secs(15);
/// keepAlive is sent at most this often per grain while its sessions are used.
const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(30);
/// The direct web channel's socket in a grain's directory (next to `supervisor.sock`).
pub const WEB_SOCKET: &str = "web.sock";

struct Running {
    supervisor: supervisor::Client,
    alive: Rc<Cell<bool>>,
    last_keep_alive: Cell<Instant>,
    /// `<grain dir>/web.sock`.
    web_socket: PathBuf,
    /// The connection to the bridge's `WebChannel`, made on first use; `None` or a dead flag
    /// after the app restarted (the next use connects again).
    direct: RefCell<Option<(web_channel::Client, Rc<Cell<bool>>)>>,
    /// Whether a failure to use the direct channel was logged (once per supervisor).
    direct_failure_logged: Cell<bool>,
    /// Requests and WebSocket openings of this grain in flight ([`InUse`]).
    in_flight: Cell<usize>,
    /// Whether the task sending keepAlive while `in_flight > 0` runs.
    ticking: Cell<bool>,
    /// The latest core handed to `keepAlive`, for the ticking task.
    core: RefCell<Option<grain_core::Client>>,
    /// The grain's request lane, opened on first use; `None` or ended after the app restarted.
    lane: RefCell<Option<Rc<Lane>>>,
}

impl Running {
    /// Waits (checking every 50 ms) until the connection to this supervisor has ended, for at
    /// most `limit`; whether it did.
    async fn gone_within(&self, limit: Duration) -> bool {
        let t = Instant::now();
        while self.alive.get() {
            if t.elapsed() > limit {
                return false;
            }
            async_io::Timer::after(Duration::from_millis(50)).await;
        }
        true
    }

    /// Sends keepAlive now (not waiting for the answer).
    fn send_keep_alive(&self, ex: &Rc<LocalExecutor<'static>>) {
        let Some(core) = self.core.borrow().clone() else { return };
        self.last_keep_alive.set(Instant::now());
        let mut req = self.supervisor.keep_alive_request();
        req.get().set_core(core);
        ex.spawn(async move {
            let _ = req.send().promise.await;
        })
        .detach();
    }
}

/// A request (or WebSocket opening) of a grain in flight: while any is held, the runner tells
/// the grain's supervisor it is in use (at the keepAlive rate), so a long download, upload or
/// long poll is never stopped for idleness, whichever channel it takes.
pub struct InUse {
    running: Rc<Running>,
}

impl Drop for InUse {
    fn drop(&mut self) {
        self.running.in_flight.set(self.running.in_flight.get() - 1);
    }
}

/// A supervisor start in progress; the error is the start's, formatted (errors are not `Clone`).
type StartingSupervisor = Shared<LocalBoxFuture<'static, Result<Rc<Running>, String>>>;

/// The grains this server has a supervisor connection to.
pub struct Runner {
    running: RefCell<HashMap<String, Rc<Running>>>,
    /// Supervisor starts under way, shared by every caller that needs the grain meanwhile.
    starting: RefCell<HashMap<String, StartingSupervisor>>,
    data_dir: PathBuf,
    /// `<data>/platform`: holds the static bridge, bound at `/.granary` in every grain.
    pub platform_dir: PathBuf,
    /// Seconds of idleness before a grain's app is stopped.
    pub idle_seconds: u64,
    /// Limits of grains whose app has none set by an administrator.
    pub default_limits: Cell<crate::apps::GrainLimits>,
    /// Wake locks grains hold (`stayAwake`): id → (grain, reason), shown to the owner.
    wake_locks: RefCell<HashMap<u64, (String, String)>>,
    next_wake_lock: Cell<u64>,
}

impl Runner {
    pub fn new(data_dir: &Path, platform_dir: PathBuf) -> Runner {
        Runner {
            running: RefCell::new(HashMap::new()),
            starting: RefCell::new(HashMap::new()),
            data_dir: data_dir.to_owned(),
            platform_dir,
            idle_seconds: 120,
            default_limits: Cell::new(crate::apps::GrainLimits { memory_mib: 512, tasks: 256 }),
            wake_locks: RefCell::new(HashMap::new()),
            next_wake_lock: Cell::new(1),
        }
    }

    /// Records a wake lock of `grain`; returns its id for [`Runner::release_wake_lock`].
    pub fn hold_wake_lock(&self, grain: &str, reason: &str) -> u64 {
        let id = self.next_wake_lock.get();
        self.next_wake_lock.set(id + 1);
        self.wake_locks.borrow_mut().insert(id, (grain.to_owned(), reason.to_owned()));
        id
    }

    pub fn release_wake_lock(&self, id: u64) {
        self.wake_locks.borrow_mut().remove(&id);
    }

    /// Why `grain` is kept awake, if it is.
    pub fn wake_locks_of(&self, grain: &str) -> Vec<String> {
        let mut v: Vec<(u64, String)> = self.wake_locks.borrow().iter().filter(|(_, (g, _))| g == grain).map(|(id, (_, r))| (*id, r.clone())).collect();
        v.sort();
        v.into_iter().map(|(_, r)| r).collect()
    }

    /// The grain's supervisor, if it runs.
    pub fn supervisor(&self, grain_id: &str) -> Option<supervisor::Client> {
        self.running.borrow().get(grain_id).filter(|r| r.alive.get()).map(|r| r.supervisor.clone())
    }

    /// How many grains have a live supervisor.
    pub fn running_count(&self) -> usize {
        self.running.borrow().values().filter(|r| r.alive.get()).count()
    }

    pub fn is_running(&self, grain_id: &str) -> bool {
        self.running.borrow().get(grain_id).is_some_and(|r| r.alive.get())
    }

    /// The grain's main view, starting its supervisor (and app) if needed.
    pub async fn main_view(&self, ex: &Rc<LocalExecutor<'static>>, grain: &Grain, app: &InstalledApp, limits: Option<crate::apps::GrainLimits>) -> Result<main_view::Client> {
        let running = self.running_or_start(ex, grain, app, limits).await?;
        let reply = match running.supervisor.get_main_view_request().send().promise.await {
            Err(e) if e.kind == capnp::ErrorKind::Disconnected => {
                // The supervisor is stopping (idle, or sent a stop signal) and takes no new
                // sessions: wait for it to exit, then start the grain again.
                if !running.gone_within(STOPPING_WAIT).await {
                    bail!("the grain's supervisor has been stopping for {} s: try again later", STOPPING_WAIT.as_secs());
                }
                let running = self.running_or_start(ex, grain, app, limits).await?;
                running.supervisor.get_main_view_request().send().promise.await
            }
            r => r,
        };
        Ok(reply.map_err(|e| anyhow!("{}", e.extra))?.get()?.get_view()?)
    }

    /// The grain's live supervisor connection, starting a supervisor if there is none. Callers
    /// that arrive while a start is under way wait for that start instead of making their own:
    /// a second supervisor would find the grain's socket taken and refuse to run, and its
    /// caller would get an error for a grain that was starting fine (a page's requests after an
    /// idle stop arrive together).
    async fn running_or_start(&self, ex: &Rc<LocalExecutor<'static>>, grain: &Grain, app: &InstalledApp, limits: Option<crate::apps::GrainLimits>) -> Result<Rc<Running>> {
        if let Some(r) = self.running.borrow().get(&grain.id).filter(|r| r.alive.get()).cloned() {
            return Ok(r);
        }
        let pending = self.starting.borrow().get(&grain.id).cloned();
        let start = match pending {
            Some(start) => start,
            None => {
                let start = self.start(ex, grain, app, limits.unwrap_or(self.default_limits.get())).map(|r| r.map(Rc::new).map_err(|e| format!("{e:#}"))).boxed_local().shared();
                self.starting.borrow_mut().insert(grain.id.clone(), start.clone());
                start
            }
        };
        let result = start.clone().await;
        // The first waiter to see the result moves it from `starting` to `running`.
        if self.starting.borrow().get(&grain.id).is_some_and(|s| s.ptr_eq(&start)) {
            self.starting.borrow_mut().remove(&grain.id);
            if let Ok(r) = &result {
                self.running.borrow_mut().insert(grain.id.clone(), r.clone());
            }
        }
        result.map_err(|e| anyhow!(e))
    }

    /// How often keepAlive is sent while a grain is used: well within the supervisor's idle
    /// period, so use never looks like idleness.
    fn keep_alive_every(&self) -> Duration {
        KEEP_ALIVE_EVERY.min(Duration::from_secs(self.idle_seconds) / 4)
    }

    /// Tells the grain's supervisor it is in use (at most every 30 s), so it does not stop
    /// for idleness while sessions talk to the app.
    pub fn keep_alive(&self, ex: &Rc<LocalExecutor<'static>>, grain_id: &str, core: grain_core::Client) {
        let Some(r) = self.running.borrow().get(grain_id).cloned() else { return };
        *r.core.borrow_mut() = Some(core);
        if r.last_keep_alive.get().elapsed() < self.keep_alive_every() {
            return;
        }
        r.send_keep_alive(ex);
    }

    /// Marks a request of `grain_id` in flight until the returned guard is dropped; meanwhile
    /// keepAlive goes to its supervisor at the keepAlive rate. `None` if it has no supervisor.
    pub fn in_use(&self, ex: &Rc<LocalExecutor<'static>>, grain_id: &str) -> Option<InUse> {
        let r = self.running.borrow().get(grain_id).filter(|r| r.alive.get()).cloned()?;
        r.in_flight.set(r.in_flight.get() + 1);
        if !r.ticking.get() {
            r.ticking.set(true);
            let every = self.keep_alive_every();
            let (ticker, ex2) = (r.clone(), ex.clone());
            ex.spawn(async move {
                loop {
                    async_io::Timer::after(every).await;
                    if ticker.in_flight.get() == 0 || !ticker.alive.get() {
                        break;
                    }
                    if ticker.last_keep_alive.get().elapsed() >= every / 2 {
                        ticker.send_keep_alive(&ex2);
                    }
                }
                ticker.ticking.set(false);
            })
            .detach();
        }
        Some(InUse { running: r })
    }

    /// The session named `direct_key` on the grain's direct web channel (connecting to the
    /// bridge on first use, and again after the app restarted). `None` — the caller then uses
    /// the session it got through the supervisor — when the grain has no supervisor or the
    /// channel fails; a failure is logged once per supervisor.
    pub async fn direct_session(&self, ex: &Rc<LocalExecutor<'static>>, grain_id: &str, direct_key: &[u8]) -> Option<web_session::Client> {
        let r = self.running.borrow().get(grain_id).filter(|r| r.alive.get()).cloned()?;
        let attempt = || async {
            let channel = r.channel(ex)?;
            let mut req = channel.session_request();
            req.get().set_direct_key(direct_key);
            let reply = req.send().promise.await?;
            Ok::<_, anyhow::Error>(reply.get()?.get_session()?)
        };
        let mut result = attempt().await;
        if result.is_err() {
            // The connection may be to a bridge that just exited (the app restarted) before
            // we noticed: try once more on a new one.
            r.direct.borrow_mut().take();
            result = attempt().await;
        }
        match result {
            Ok(s) => Some(s),
            Err(e) => {
                if !r.direct_failure_logged.replace(true) {
                    tracing::warn!(grain = grain_id, "the grain's direct web channel failed ({e:#}); its requests go through the supervisor");
                }
                None
            }
        }
    }

    /// The grain's request lane (SPEC.md, "Request lanes"), opened on first use and again once
    /// the previous one ended; with the connection to its `WebChannel`, which claims the
    /// streamed bodies of lane exchanges. `None` (the caller then uses RPC) when the grain has
    /// no supervisor or the lane cannot be opened; a failure is logged once per supervisor.
    pub fn lane(&self, ex: &Rc<LocalExecutor<'static>>, grain_id: &str) -> Option<(Rc<Lane>, web_channel::Client)> {
        let r = self.running.borrow().get(grain_id).filter(|r| r.alive.get()).cloned()?;
        let channel = r.channel(ex).ok()?;
        if let Some(l) = r.lane.borrow().as_ref().filter(|l| l.is_live()) {
            return Some((l.clone(), channel));
        }
        match Lane::connect(&r.web_socket, ex) {
            Ok(l) => {
                *r.lane.borrow_mut() = Some(l.clone());
                Some((l, channel))
            }
            Err(e) => {
                if !r.direct_failure_logged.replace(true) {
                    tracing::warn!(grain = grain_id, "cannot open the grain's request lane ({e}); its requests use RPC");
                }
                None
            }
        }
    }

    /// Stops the grain's app and supervisor, if running.
    pub async fn stop(&self, grain_id: &str) {
        let r = self.running.borrow_mut().remove(grain_id);
        if let Some(r) = r.filter(|r| r.alive.get()) {
            // The supervisor may exit before it answers; either way it is stopping.
            let _ = r.supervisor.shutdown_request().send().promise.await;
            r.gone_within(Duration::from_secs(5)).await;
        }
    }

    /// The command line of the grain's supervisor.
    fn command(&self, grain: &Grain, app: &InstalledApp, limits: crate::apps::GrainLimits) -> Result<Command> {
        let m = &app.manifest;
        let dirs = GrainDirs::new(&self.data_dir, &grain.id);
        let app_argv = if grain.initialized {
            m.continue_command.argv.clone()
        } else {
            m.actions.get(grain.action as usize).map(|a| a.command.argv.clone()).unwrap_or_else(|| m.continue_command.argv.clone())
        };
        if m.http.port == 0 {
            bail!("this app serves no web pages (its manifest has no [http] port), so it cannot be opened in a browser");
        }
        let mut argv: Vec<String> = vec!["/.granary/bridge".into(), "--port".into(), m.http.port.to_string()];
        if !m.http.api_path.is_empty() {
            argv.extend(["--api-path".into(), m.http.api_path.clone()]);
        }
        for p in &m.permissions {
            argv.extend(["--permission".into(), p.name.clone()]);
        }
        for (h, f) in &m.http.identity_headers {
            argv.extend(["--identity-header".into(), format!("{h}={f}")]);
        }
        if m.capnp_port != 0 {
            argv.extend(["--capnp-port".into(), m.capnp_port.to_string()]);
        }
        argv.push("--".into());
        argv.extend(app_argv);
        let exe = std::env::current_exe().context("finding the granary binary to start a supervisor")?;
        let mut cmd = Command::new(exe);
        cmd.arg("supervisor")
            .arg("--image")
            .arg(self.data_dir.join("apps").join(&app.package_id))
            .arg("--data")
            .arg(dirs.var())
            .arg("--log-dir")
            .arg(&dirs.root)
            .arg("--socket")
            .arg(dirs.root.join("supervisor.sock"))
            .arg("--web-socket")
            .arg(dirs.root.join(WEB_SOCKET))
            .arg("--cgroup-name")
            .arg(format!("grain-{}", grain.id))
            .arg("--platform-dir")
            .arg(&self.platform_dir)
            .arg("--idle")
            .arg(self.idle_seconds.to_string())
            .arg("--memory")
            .arg((limits.memory_mib << 20).to_string())
            .arg("--pids")
            .arg(limits.tasks.to_string());
        for (k, v) in &m.environment {
            cmd.arg("--env").arg(format!("{k}={v}"));
        }
        cmd.arg("--").args(argv);
        Ok(cmd)
    }

    /// Starts the grain's supervisor (or connects to one left from before a server restart).
    /// The future owns what it needs, so callers can share it ([`Runner::running_or_start`]).
    fn start(&self, ex: &Rc<LocalExecutor<'static>>, grain: &Grain, app: &InstalledApp, limits: crate::apps::GrainLimits) -> LocalBoxFuture<'static, Result<Running>> {
        let socket = GrainDirs::new(&self.data_dir, &grain.id).root.join("supervisor.sock");
        // A supervisor left from before a server restart still serves its grain: reuse it.
        if let Ok(stream) = UnixStream::connect(&socket) {
            return futures::future::ready(connect(ex, stream, Rc::new(Cell::new(true)), None, socket.with_file_name(WEB_SOCKET))).boxed_local();
        }
        let cmd = self.command(grain, app, limits);
        let ex = ex.clone();
        async move { spawn_supervisor(&ex, cmd?, socket).await }.boxed_local()
    }
}

/// Runs `cmd` (a `granary supervisor` command line), waits for its `ready` and connects to
/// `socket`.
async fn spawn_supervisor(ex: &Rc<LocalExecutor<'static>>, mut cmd: Command, socket: PathBuf) -> Result<Running> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = cmd.spawn().context("starting the grain's supervisor")?;
    let stdout = child.stdout.take().expect("piped stdout");
    let ready = blocking::unblock(move || {
        let mut line = String::new();
        let n = std::io::BufReader::new(stdout).read_line(&mut line);
        matches!(n, Ok(n) if n > 0) && line.trim() == "ready"
    });
    let timeout = async {
        async_io::Timer::after(START_TIMEOUT).await;
        false
    };
    let ok = futures::future::select(Box::pin(ready), Box::pin(timeout)).await.factor_first().0;
    let alive = Rc::new(Cell::new(true));
    let reaped = alive.clone();
    let pid = child.id();
    // Reap the supervisor when it exits; the connection's end marks the grain stopped.
    ex.spawn(async move {
        let status = blocking::unblock(move || child.wait()).await;
        tracing::info!(pid, ?status, "grain supervisor exited");
        reaped.set(false);
    })
    .detach();
    if !ok {
        let _ = rustix::process::kill_process(rustix::process::Pid::from_raw(pid as i32).expect("a child pid"), rustix::process::Signal::KILL);
        bail!("the grain's supervisor did not start (see the server's log)");
    }
    let stream = UnixStream::connect(&socket).with_context(|| format!("connecting to the grain's supervisor at {}", socket.display()))?;
    connect(ex, stream, alive, Some(pid), socket.with_file_name(WEB_SOCKET))
}

impl Running {
    /// The bridge's `WebChannel`, connecting if there is no live connection.
    fn channel(&self, ex: &Rc<LocalExecutor<'static>>) -> Result<web_channel::Client> {
        if let Some((channel, live)) = self.direct.borrow().as_ref() {
            if live.get() {
                return Ok(channel.clone());
            }
        }
        let stream = UnixStream::connect(&self.web_socket).with_context(|| format!("connecting to {}", self.web_socket.display()))?;
        let (reader, writer) = granary_schema::socket::Socket::new(stream)?.split();
        let network = granary_schema::vat_network(reader, writer, Side::Client);
        let mut rpc = RpcSystem::new(Box::new(network), None);
        let channel: web_channel::Client = rpc.bootstrap(Side::Server);
        let live = Rc::new(Cell::new(true));
        let flag = live.clone();
        ex.spawn(async move {
            if let Err(e) = rpc.await {
                tracing::debug!("direct web channel ended: {e}");
            }
            flag.set(false);
        })
        .detach();
        *self.direct.borrow_mut() = Some((channel.clone(), live));
        Ok(channel)
    }
}

fn connect(ex: &Rc<LocalExecutor<'static>>, stream: UnixStream, alive: Rc<Cell<bool>>, pid: Option<u32>, web_socket: PathBuf) -> Result<Running> {
    let (reader, writer) = granary_schema::socket::Socket::new(stream)?.split();
    let network = granary_schema::vat_network(reader, writer, Side::Client);
    let mut rpc = RpcSystem::new(Box::new(network), None);
    let supervisor: supervisor::Client = rpc.bootstrap(Side::Server);
    let flag = alive.clone();
    ex.spawn(async move {
        if let Err(e) = rpc.await {
            tracing::debug!(?pid, "supervisor connection ended: {e}");
        }
        flag.set(false);
    })
    .detach();
    Ok(Running {
        supervisor,
        alive,
        last_keep_alive: Cell::new(Instant::now() - KEEP_ALIVE_EVERY),
        web_socket,
        direct: RefCell::new(None),
        direct_failure_logged: Cell::new(false),
        in_flight: Cell::new(0),
        ticking: Cell::new(false),
        core: RefCell::new(None),
        lane: RefCell::new(None),
    })
}
