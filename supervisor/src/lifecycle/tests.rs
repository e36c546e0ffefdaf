//! The lifecycle state machine without root or a sandbox: a fake [`Launcher`] "starts" an
//! in-process app that serves `MainView` on the fd 3 socket the supervisor prepared and writes
//! to its stdout pipe. The real sandbox is exercised by `tests/lifecycle/` (root).

use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

use capnp_rpc::twoparty;
use capnp::capability::Rc as CapRc;
use futures::channel::mpsc;
use granary_schema::sample_capnp::counter;
use granary_schema::supervisor_capnp::{app_state, grain_core, supervisor};

use super::*;
use crate::keeper::{Event, Launcher};
use crate::sandbox::SandboxError;

const FAKE_PID: i32 = 4242;

#[derive(Default)]
struct Record {
    launches: usize,
    signals: Vec<i32>,
    /// `(envelopeFrom, data)` of each `deliverMail` the fake app received.
    mail: Vec<(String, Vec<u8>)>,
    /// `(interfaceId, user id, permissions)` of each `provide` the fake app received.
    provides: Vec<(u64, String, Vec<bool>)>,
}

/// Starts fake apps on threads; `/missing` as the program fails to start.
struct FakeLauncher {
    events: mpsc::UnboundedSender<Event>,
    record: Arc<Mutex<Record>>,
    /// Tells the running fake app to exit with a code.
    exit: RefCell<Option<mpsc::UnboundedSender<i32>>>,
}

fn dup(fd: i32) -> OwnedFd {
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    assert!(new >= 0, "dup failed");
    unsafe { OwnedFd::from_raw_fd(new) }
}

impl Launcher for FakeLauncher {
    fn launch(&self, cfg: SandboxConfig) {
        self.record.lock().unwrap().launches += 1;
        if cfg.argv[0] == "/missing" {
            let e = SandboxError::Config("program \"/missing\" not found in the image".into());
            self.events.unbounded_send(Event::Started(Err(e))).unwrap();
            return;
        }
        let (sock, out) = (dup(cfg.extra_fds[0]), dup(cfg.stdio[1].unwrap()));
        let (exit_tx, mut exit_rx) = mpsc::unbounded();
        *self.exit.borrow_mut() = Some(exit_tx.clone());
        self.events.unbounded_send(Event::Started(Ok(FAKE_PID))).unwrap();
        let events = self.events.clone();
        let record = self.record.clone();
        std::thread::spawn(move || {
            let mut out = File::from(out);
            std::io::Write::write_all(&mut out, b"fake app started\n").unwrap();
            let code = async_io::block_on(async {
                let (r, w) = Async::new(UnixStream::from(sock)).unwrap().split();
                let net = twoparty::VatNetwork::new(r, w, Side::Client, Default::default());
                let app: main_view::Client = capnp_rpc::new_client(FakeApp { exit: exit_tx, record });
                let rpc = RpcSystem::new(Box::new(net), Some(app.client));
                match select(rpc, exit_rx.next()).await {
                    Either::Left((_, code)) => code.await, // like an app that ignores a lost fd 3
                    Either::Right((code, _)) => code,
                }
            });
            let code = code.expect("the launcher outlives its apps");
            std::io::Write::write_all(&mut out, format!("fake app exiting with {code}\n").as_bytes()).unwrap();
            drop(out);
            events.unbounded_send(Event::Exited { code, cleanup_error: None }).unwrap();
        });
    }

    fn signal(&self, sig: i32) {
        self.record.lock().unwrap().signals.push(sig);
        if let Some(tx) = self.exit.borrow().as_ref() {
            let _ = tx.unbounded_send(128 + sig);
        }
    }
}

/// `drop("ping")` answers; `drop("exit:N")` makes the fake app exit with N.
struct FakeApp {
    exit: mpsc::UnboundedSender<i32>,
    record: Arc<Mutex<Record>>,
}

impl main_view::Server for FakeApp {
    async fn drop(self: CapRc<Self>, params: main_view::DropParams, _: main_view::DropResults) -> Result<(), capnp::Error> {
        let cmd = params.get()?.get_object_id()?;
        if let Some(code) = cmd.strip_prefix(b"exit:") {
            let _ = self.exit.unbounded_send(std::str::from_utf8(code).unwrap().parse().unwrap());
        }
        Ok(())
    }

    async fn deliver_mail(self: CapRc<Self>, params: main_view::DeliverMailParams, _: main_view::DeliverMailResults) -> Result<(), capnp::Error> {
        let m = params.get()?.get_message()?;
        let from = m.get_envelope_from()?.to_string()?;
        self.record.lock().unwrap().mail.push((from, m.get_data()?.to_vec()));
        Ok(())
    }

    async fn provide(self: CapRc<Self>, params: main_view::ProvideParams, mut results: main_view::ProvideResults) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let user = p.get_user()?.get_id()?.to_string()?;
        self.record.lock().unwrap().provides.push((p.get_interface_id(), user, p.get_permissions()?.iter().collect()));
        let counter: counter::Client = capnp_rpc::new_client(FakeCounter(std::cell::Cell::new(0)));
        results.get().init_cap().set_as_capability(counter.client.hook);
        Ok(())
    }
}

/// A tally, as an app's `AppObjects.provide` would make.
struct FakeCounter(std::cell::Cell<i64>);

impl counter::Server for FakeCounter {
    async fn add(self: CapRc<Self>, params: counter::AddParams, mut results: counter::AddResults) -> Result<(), capnp::Error> {
        self.0.set(self.0.get() + params.get()?.get_amount());
        results.get().set_total(self.0.get());
        Ok(())
    }
}

struct Harness {
    dir: tempfile::TempDir,
    record: Arc<Mutex<Record>>,
    thread: std::thread::JoinHandle<Result<Stopped, LifecycleError>>,
}

impl Harness {
    fn start(program: &str, tweak: impl FnOnce(&mut GrainConfig)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = SandboxConfig::new("/no-image", "/no-data", vec![program.into()]);
        let mut cfg = GrainConfig::new(sandbox, dir.path().join("socket"), dir.path().join("log"));
        cfg.backoff = Backoff { base: Duration::from_millis(100), max: Duration::from_secs(1), reset_after: Duration::from_secs(60) };
        tweak(&mut cfg);
        let listening = bind(cfg).unwrap();
        let record = Arc::new(Mutex::new(Record::default()));
        let rec = record.clone();
        let thread = std::thread::spawn(move || {
            let (events_tx, events) = mpsc::unbounded();
            let fake = FakeLauncher { events: events_tx, record: rec, exit: RefCell::new(None) };
            listening.run_with(Box::new(fake), events)
        });
        Harness { dir, record, thread }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log/log")).unwrap()
    }

    fn client<T>(&self, f: impl AsyncFnOnce(supervisor::Client) -> T) -> T {
        async_io::block_on(async {
            let stream = Async::<UnixStream>::connect(self.dir.path().join("socket")).await.unwrap();
            let (r, w) = stream.split();
            let mut rpc = RpcSystem::new(Box::new(twoparty::VatNetwork::new(r, w, Side::Client, Default::default())), None);
            let sup: supervisor::Client = rpc.bootstrap(Side::Server);
            match select(rpc, Box::pin(f(sup))).await {
                Either::Left((_, rest)) => rest.await,
                Either::Right((out, _)) => out,
            }
        })
    }

    fn wait(self, limit: Duration) -> (Stopped, String, Record) {
        let t0 = Instant::now();
        while !self.thread.is_finished() {
            assert!(t0.elapsed() < limit, "the supervisor did not stop within {limit:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
        let stopped = self.thread.join().unwrap().unwrap();
        let log = std::fs::read_to_string(self.dir.path().join("log/log")).unwrap();
        (stopped, log, std::mem::take(&mut *self.record.lock().unwrap()))
    }
}

async fn view(s: &supervisor::Client) -> Result<main_view::Client, capnp::Error> {
    s.get_main_view_request().send().promise.await?.get()?.get_view()
}

async fn command(v: &main_view::Client, cmd: &str) -> Result<(), capnp::Error> {
    let mut req = v.drop_request();
    req.get().set_object_id(cmd.as_bytes());
    req.send().promise.await.map(drop)
}

/// `status` as (state name, code, signal), polled until it is not `starting`.
async fn status(s: &supervisor::Client) -> (&'static str, i32, i32) {
    loop {
        let resp = s.status_request().send().promise.await.unwrap();
        let st = match resp.get().unwrap().get_state().unwrap().which().unwrap() {
            app_state::NotStarted(()) => ("notStarted", 0, 0),
            app_state::Starting(()) => ("starting", 0, 0),
            app_state::Running(pid) => ("running", pid as i32, 0),
            app_state::Exited(i) => i.map(|i| ("exited", i.get_code(), i.get_signal())).unwrap(),
        };
        if st.0 != "starting" {
            return st;
        }
        async_io::Timer::after(Duration::from_millis(5)).await;
    }
}

async fn until_exited(s: &supervisor::Client) -> (&'static str, i32, i32) {
    loop {
        let st = status(s).await;
        if st.0 == "exited" {
            return st;
        }
        async_io::Timer::after(Duration::from_millis(5)).await;
    }
}

#[test]
fn starts_on_first_use_and_stops_when_idle() {
    let h = Harness::start("/app", |c| c.idle = Duration::from_millis(300));
    h.client(async |s| {
        async_io::Timer::after(Duration::from_millis(150)).await;
        assert_eq!(status(&s).await, ("notStarted", 0, 0));
        assert_eq!(h.record.lock().unwrap().launches, 0, "nothing starts before getMainView");
        let v = view(&s).await.unwrap();
        for _ in 0..5 {
            command(&v, "ping").await.unwrap();
            async_io::Timer::after(Duration::from_millis(150)).await;
        }
        assert_eq!(status(&s).await, ("running", FAKE_PID, 0), "calls on the view count as use");
        assert!(h.log().contains("fake app started\n"));
    });
    let (stopped, log, record) = h.wait(Duration::from_secs(2));
    assert_eq!(stopped, Stopped::Idle);
    assert_eq!((record.launches, record.signals), (1, vec![libc::SIGTERM]));
    let (exiting, stopped_line) = (log.find("fake app exiting with 143").unwrap(), log.find("] app stopped: killed by signal 15").unwrap());
    assert!(exiting < stopped_line, "the app's last output precedes the exit line:\n{log}");
}

#[test]
fn a_crash_is_reported_then_restarted_with_back_off() {
    let h = Harness::start("/app", |_| ());
    h.client(async |s| {
        let _ = command(&view(&s).await.unwrap(), "exit:5").await; // may lose its reply
        assert_eq!(until_exited(&s).await, ("exited", 5, 0));
        let v = view(&s).await.expect("one crash restarts at once");
        assert_eq!(status(&s).await.0, "running");
        let _ = command(&v, "exit:6").await;
        assert_eq!(until_exited(&s).await, ("exited", 6, 0));
        let err = view(&s).await.err().expect("a second crash backs off");
        assert_eq!(err.kind, capnp::ErrorKind::Overloaded);
        let err = command(&v, "ping").await.unwrap_err().to_string();
        assert!(err.contains("exited with status 6") && err.contains("call getMainView again"), "{err}");
        async_io::Timer::after(Duration::from_millis(120)).await;
        command(&view(&s).await.unwrap(), "ping").await.unwrap();
        s.shutdown_request().send().promise.await.ok();
    });
    let (stopped, log, record) = h.wait(Duration::from_secs(2));
    assert_eq!((stopped, record.launches), (Stopped::Shutdown, 3));
    for line in ["] app exited with status 5\n", "] app exited with status 6\n", "crashed 2 times in a row: next start allowed in 0.1 s", "] shutdown requested by the server", "] app stopped: killed by signal 15"] {
        assert!(log.contains(line), "log lacks {line:?}:\n{log}");
    }
}

#[test]
fn a_failed_start_is_logged_and_counts_as_a_crash() {
    let h = Harness::start("/missing", |_| ());
    h.client(async |s| {
        let v = view(&s).await.unwrap();
        let err = command(&v, "ping").await.unwrap_err().to_string();
        assert!(err.contains("exited with status 127"), "{err}");
        assert_eq!(until_exited(&s).await, ("exited", 127, 0));
        view(&s).await.unwrap();
        until_exited(&s).await;
        assert_eq!(view(&s).await.err().map(|e| e.kind), Some(capnp::ErrorKind::Overloaded));
        s.shutdown_request().send().promise.await.ok();
    });
    let (_, log, record) = h.wait(Duration::from_secs(2));
    assert_eq!(record.launches, 2);
    assert!(log.contains("] the app could not be started: program \"/missing\" not found in the image"), "{log}");
}

/// A `GrainCore` that implements nothing: only its presence matters.
struct NullCore;

impl grain_core::Server for NullCore {}

#[test]
fn the_servers_connection_closes_when_the_supervisor_stops() {
    let h = Harness::start("/app", |_| ());
    let dir = h.dir.path().to_path_buf();
    async_io::block_on(async {
        let stream = Async::<UnixStream>::connect(dir.join("socket")).await.unwrap();
        let (r, w) = stream.split();
        let mut rpc = RpcSystem::new(Box::new(twoparty::VatNetwork::new(r, w, Side::Client, Default::default())), None);
        let s: supervisor::Client = rpc.bootstrap(Side::Server);
        let session = async {
            // The supervisor keeps a capability of this connection: it must still let go.
            let mut req = s.keep_alive_request();
            req.get().set_core(capnp_rpc::new_client(NullCore));
            req.send().promise.await.unwrap();
            command(&view(&s).await.unwrap(), "ping").await.unwrap();
            s.shutdown_request().send().promise.await.ok();
        };
        let mut rpc = match select(rpc, Box::pin(session)).await {
            Either::Left(_) => panic!("disconnected before shutdown returned"),
            Either::Right((_, rpc)) => rpc,
        };
        let closed = select(&mut rpc, Timer::after(Duration::from_secs(2))).await;
        assert!(matches!(closed, Either::Left(_)), "the supervisor kept the server's connection open after it stopped");
    });
    assert_eq!(h.wait(Duration::from_secs(2)).0, Stopped::Shutdown);
}

#[test]
fn deliver_mail_reaches_the_app_and_counts_as_activity() {
    let h = Harness::start("/app", |c| c.idle = Duration::from_millis(300));
    h.client(async |s| {
        let v = view(&s).await.unwrap();
        for i in 0..4 {
            let mut req = v.deliver_mail_request();
            let mut m = req.get().init_message();
            m.set_envelope_from("bob@example.org");
            m.reborrow().init_envelope_to(1).set(0, "g1@example.org");
            m.set_data(format!("Subject: {i}\r\n\r\nhi").as_bytes());
            req.send().promise.await.unwrap();
            async_io::Timer::after(Duration::from_millis(150)).await;
        }
        assert_eq!(status(&s).await, ("running", FAKE_PID, 0), "deliverMail counts as use");
    });
    let (_, _, record) = h.wait(Duration::from_secs(2));
    let subjects: Vec<_> = record.mail.iter().map(|(f, d)| (f.as_str(), String::from_utf8_lossy(d).into_owned())).collect();
    assert_eq!(subjects.len(), 4);
    assert_eq!(subjects[3], ("bob@example.org", "Subject: 3\r\n\r\nhi".to_string()));
}

#[test]
fn provide_reaches_the_app_its_object_works_and_it_counts_as_activity() {
    let h = Harness::start("/app", |c| c.idle = Duration::from_millis(300));
    h.client(async |s| {
        let v = view(&s).await.unwrap();
        for _ in 0..4 {
            let mut req = v.provide_request();
            req.get().set_interface_id(0xa238_4a22_bc95_e238);
            req.get().init_user().set_id("stable-user");
            req.get().init_permissions(2).set(1, true);
            let object: counter::Client = req.send().promise.await.unwrap().get().unwrap().get_cap().get_as_capability().unwrap();
            for i in 1..=2 {
                let mut add = object.add_request();
                add.get().set_amount(2);
                assert_eq!(add.send().promise.await.unwrap().get().unwrap().get_total(), 2 * i, "each provide makes a fresh object");
            }
            async_io::Timer::after(Duration::from_millis(150)).await;
        }
        assert_eq!(status(&s).await, ("running", FAKE_PID, 0), "provide counts as use");
    });
    let (_, _, record) = h.wait(Duration::from_secs(2));
    assert_eq!(record.provides.len(), 4);
    assert_eq!(record.provides[0], (0xa238_4a22_bc95_e238, "stable-user".to_string(), vec![false, true]));
}
