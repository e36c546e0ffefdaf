//! What the lifecycle tests share: the static test app (supervisor/testapp) in a fresh image, a
//! supervisor on its own thread, a Cap'n Proto client for its socket, a recording `GrainCore`
//! and `ByteStream`, and a scan of /proc for the app's processes.

use std::cell::RefCell;
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use capnp::capability::Rc as CapRc;
use capnp::Error;
use capnp_rpc::{rpc_twoparty_capnp::Side, twoparty, RpcSystem};
use futures::future::{select, Either};
use futures::AsyncReadExt;
use granary_schema::grain_capnp::main_view;
use granary_schema::supervisor_capnp::{app_state, grain_core, supervisor};
use granary_schema::util_capnp::{byte_stream, handle};
use granary_supervisor::lifecycle::{self, GrainConfig, LifecycleError, Stopped};
use granary_supervisor::{Backoff, HostIds, SandboxConfig};

/// These tests need root: fail (not skip) with what to do otherwise.
pub fn require_root() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the supervisor lifecycle tests must run as root (they create cgroups and map a dedicated uid): run them with sudo, e.g. `sudo -E cargo test -p granary-supervisor --test lifecycle`"
    );
}

/// Build the test app as a static binary (once per test process) and return its path.
pub fn testapp() -> PathBuf {
    static APP: OnceLock<PathBuf> = OnceLock::new();
    APP.get_or_init(|| {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let target_dir = manifest.join("../target/testapp");
        let out = Command::new(env!("CARGO"))
            .args(["build", "--locked", "--release", "--quiet", "--target", "x86_64-unknown-linux-gnu", "--manifest-path"])
            .arg(manifest.join("testapp/Cargo.toml"))
            .arg("--target-dir")
            .arg(&target_dir)
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_TARGET_DIR")
            .output()
            .expect("running cargo to build the lifecycle test app");
        assert!(out.status.success(), "building the static test app failed:\n{}", String::from_utf8_lossy(&out.stderr));
        target_dir.join("x86_64-unknown-linux-gnu/release/granary-lifecycle-testapp")
    })
    .clone()
}

/// A grain: image with the test app, data dir, log dir, socket path, and a unique marker in
/// the app's argv to find its processes.
pub struct Grain {
    pub image: tempfile::TempDir,
    pub data: tempfile::TempDir,
    pub dir: tempfile::TempDir,
    pub marker: String,
}

impl Grain {
    pub fn new() -> Grain {
        let image = tempfile::tempdir().unwrap();
        for d in ["dev", "tmp", "var", "proc"] {
            std::fs::create_dir(image.path().join(d)).unwrap();
        }
        std::fs::copy(testapp(), image.path().join("testapp")).unwrap();
        std::fs::set_permissions(image.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let data = tempfile::tempdir().unwrap();
        let ids = HostIds::default_for_current_user();
        std::os::unix::fs::chown(data.path(), Some(ids.uid), Some(ids.gid)).unwrap();
        let marker = format!("granary-lifecycle-marker-{}-{}", std::process::id(), image.path().file_name().unwrap().to_string_lossy());
        Grain { image, data, dir: tempfile::tempdir().unwrap(), marker }
    }

    /// The grain's cgroup name, as a server would give it (one per grain).
    pub fn cgroup_name(&self) -> String {
        format!("test-{}", self.marker)
    }

    /// The grain's cgroup directory in the pids hierarchy (v1) or the unified one (v2).
    pub fn cgroup_dir(&self) -> PathBuf {
        let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        Path::new(if v2 { "/sys/fs/cgroup/granary" } else { "/sys/fs/cgroup/pids/granary" }).join(self.cgroup_name())
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("socket")
    }

    pub fn log_dir(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

    /// Test defaults: short idle and grace, 200 ms back-off base.
    pub fn config(&self) -> GrainConfig {
        let mut sandbox = SandboxConfig::new(self.image.path(), self.data.path(), vec!["/testapp".into(), self.marker.clone().into()]);
        sandbox.cgroup_name = Some(self.cgroup_name());
        let mut cfg = GrainConfig::new(sandbox, self.socket(), self.log_dir());
        cfg.idle = Duration::from_secs(30);
        cfg.stop_grace = Duration::from_secs(2);
        cfg.backoff = Backoff { base: Duration::from_millis(200), max: Duration::from_secs(5), reset_after: Duration::from_secs(60) };
        cfg
    }

    /// `log.1` followed by `log`.
    pub fn log(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.log_dir().join(n)).unwrap_or_default();
        read("log.1") + &read("log")
    }

    /// Live (non-zombie) processes whose command line holds the marker.
    pub fn app_processes(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            if !String::from_utf8_lossy(&cmdline).contains(&self.marker) {
                continue;
            }
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
            if state.is_some_and(|s| s != 'Z' && s != 'X') {
                pids.push(pid);
            }
        }
        pids
    }
}

/// A supervisor running on its own thread.
pub struct Running {
    pub thread: JoinHandle<Result<Stopped, LifecycleError>>,
}

impl Running {
    pub fn start(cfg: GrainConfig) -> Running {
        let listening = lifecycle::bind(cfg).expect("binding the supervisor socket");
        Running { thread: std::thread::spawn(move || listening.run()) }
    }

    /// Wait up to `limit` for the supervisor to return.
    pub fn wait(self, limit: Duration) -> Stopped {
        let t0 = Instant::now();
        while !self.thread.is_finished() {
            assert!(t0.elapsed() < limit, "the supervisor did not stop within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.thread.join().unwrap().unwrap()
    }
}

/// Connect to the supervisor's socket and run `f` with its bootstrap, driving the connection.
pub fn with_supervisor<F, Fut, T>(socket: &Path, f: F) -> T
where
    F: FnOnce(supervisor::Client) -> Fut,
    Fut: Future<Output = T>,
{
    async_io::block_on(async {
        let stream = Async::<UnixStream>::connect(socket).await.expect("connecting to the supervisor");
        let (r, w) = stream.split();
        let net = twoparty::VatNetwork::new(r, w, Side::Client, Default::default());
        let mut rpc = RpcSystem::new(Box::new(net), None);
        let sup: supervisor::Client = rpc.bootstrap(Side::Server);
        match select(rpc, Box::pin(f(sup))).await {
            Either::Left((_, rest)) => rest.await,
            Either::Right((out, _)) => out,
        }
    })
}

pub async fn sleep(ms: u64) {
    Timer::after(Duration::from_millis(ms)).await;
}

pub async fn main_view(sup: &supervisor::Client) -> Result<main_view::Client, Error> {
    sup.get_main_view_request().send().promise.await?.get()?.get_view()
}

/// Send a command to the test app (see supervisor/testapp/src/main.rs).
pub async fn command(view: &main_view::Client, cmd: &str) -> Result<(), Error> {
    let mut req = view.drop_request();
    req.get().set_object_id(cmd.as_bytes());
    req.send().promise.await?;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    NotStarted,
    Starting,
    Running(u32),
    Exited { code: i32, signal: i32 },
}

pub async fn status(sup: &supervisor::Client) -> State {
    let resp = sup.status_request().send().promise.await.unwrap();
    let state = resp.get().unwrap().get_state().unwrap();
    match state.which().unwrap() {
        app_state::NotStarted(()) => State::NotStarted,
        app_state::Starting(()) => State::Starting,
        app_state::Running(pid) => State::Running(pid),
        app_state::Exited(info) => {
            let info = info.unwrap();
            State::Exited { code: info.get_code(), signal: info.get_signal() }
        }
    }
}

/// Poll `status` until `pred` holds (at most `limit_ms`).
pub async fn await_state(sup: &supervisor::Client, limit_ms: u64, pred: impl Fn(State) -> bool) -> State {
    let t0 = Instant::now();
    loop {
        let s = status(sup).await;
        if pred(s) {
            return s;
        }
        assert!(t0.elapsed() < Duration::from_millis(limit_ms), "state still {s:?} after {limit_ms} ms");
        sleep(20).await;
    }
}

/// Wait for `running` (the keeper reports the start a moment after the app could answer).
pub async fn running(sup: &supervisor::Client) -> State {
    await_state(sup, 3000, |s| matches!(s, State::Running(_))).await
}

/// Poll until `pred` holds for the grain log (at most `limit_ms`).
pub async fn await_log(grain: &Grain, limit_ms: u64, pred: impl Fn(&str) -> bool) -> String {
    let t0 = Instant::now();
    loop {
        let log = grain.log();
        if pred(&log) {
            return log;
        }
        assert!(t0.elapsed() < Duration::from_millis(limit_ms), "the grain log never matched; it holds:\n{log}");
        sleep(20).await;
    }
}

/// A `GrainCore` that records `appExited` calls, keeps saved capabilities by token, and counts
/// wake locks.
#[derive(Default, Clone)]
pub struct Core {
    pub exits: Rc<RefCell<Vec<(i32, i32)>>>,
    pub saved: Rc<RefCell<Vec<(String, String, capnp::capability::Client)>>>,
    pub wake_locks: Rc<RefCell<Vec<String>>>,
    pub wake_locks_released: Rc<std::cell::Cell<usize>>,
}

struct ServerWakeLock(Rc<std::cell::Cell<usize>>);

impl handle::Server for ServerWakeLock {}

impl Drop for ServerWakeLock {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

impl grain_core::Server for Core {
    async fn save(self: CapRc<Self>, params: grain_core::SaveParams, mut results: grain_core::SaveResults) -> Result<(), Error> {
        let p = params.get()?;
        let cap: capnp::capability::Client = p.get_cap().get_as_capability()?;
        let token = format!("t{}", self.saved.borrow().len() + 1);
        self.saved.borrow_mut().push((token.clone(), p.get_label()?.to_string().unwrap(), cap));
        results.get().set_token(token.as_bytes());
        Ok(())
    }

    async fn restore(self: CapRc<Self>, params: grain_core::RestoreParams, mut results: grain_core::RestoreResults) -> Result<(), Error> {
        let token = params.get()?.get_token()?;
        let saved = self.saved.borrow();
        let (_, _, cap) = saved.iter().find(|(t, _, _)| t.as_bytes() == token).ok_or_else(|| Error::failed("revoked".into()))?;
        results.get().init_cap().set_as_capability(cap.hook.add_ref());
        Ok(())
    }

    async fn drop(self: CapRc<Self>, params: grain_core::DropParams, _: grain_core::DropResults) -> Result<(), Error> {
        let token = params.get()?.get_token()?.to_vec();
        self.saved.borrow_mut().retain(|(t, _, _)| t.as_bytes() != token);
        Ok(())
    }

    async fn wake_lock(self: CapRc<Self>, params: grain_core::WakeLockParams, mut results: grain_core::WakeLockResults) -> Result<(), Error> {
        self.wake_locks.borrow_mut().push(params.get()?.get_reason()?.to_string().unwrap());
        results.get().set_handle(capnp_rpc::new_client(ServerWakeLock(self.wake_locks_released.clone())));
        Ok(())
    }

    async fn app_exited(self: CapRc<Self>, params: grain_core::AppExitedParams, _: grain_core::AppExitedResults) -> Result<(), Error> {
        let info = params.get()?.get_info()?;
        self.exits.borrow_mut().push((info.get_code(), info.get_signal()));
        Ok(())
    }
}

pub async fn keep_alive(sup: &supervisor::Client, core: Core) {
    let mut req = sup.keep_alive_request();
    req.get().set_core(capnp_rpc::new_client(core));
    req.send().promise.await.unwrap();
}

/// A `ByteStream` that collects what it is sent.
#[derive(Default, Clone)]
pub struct Sink {
    pub bytes: Rc<RefCell<Vec<u8>>>,
    pub writes: Rc<RefCell<Vec<usize>>>,
}

impl Sink {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.borrow()).into_owned()
    }
}

impl byte_stream::Server for Sink {
    async fn write(self: CapRc<Self>, params: byte_stream::WriteParams) -> Result<(), Error> {
        let data = params.get()?.get_data()?;
        self.writes.borrow_mut().push(data.len());
        self.bytes.borrow_mut().extend_from_slice(data);
        Ok(())
    }
}

pub async fn watch_log(sup: &supervisor::Client, backlog: u64, sink: Sink) -> handle::Client {
    let mut req = sup.watch_log_request();
    req.get().set_backlog_bytes(backlog);
    req.get().set_sink(capnp_rpc::new_client(sink));
    req.send().promise.await.unwrap().get().unwrap().get_handle().unwrap()
}
