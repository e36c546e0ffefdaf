//! The keeper thread: the one thread of the supervisor that starts and reaps the app's sandbox.
//! It lives as long as the supervisor, because the sandbox's init has `PR_SET_PDEATHSIG` tied to
//! the *thread* that cloned it: were that thread to exit, the app would be killed.

use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use futures::channel::mpsc;

use crate::sandbox::{spawn, SandboxConfig, SandboxError};

/// What the keeper reports to the RPC thread, in order: `Started`, then (if it started) `Exited`.
#[derive(Debug)]
pub(crate) enum Event {
    Started(Result<i32, SandboxError>),
    /// The app's exit code (128 + signal if killed), and a cleanup problem worth logging.
    Exited { code: i32, cleanup_error: Option<String> },
}

/// How the RPC thread starts and signals the app: the keeper thread, or a fake in tests. Each
/// `launch` is answered by `Event::Started` and, if it started, later `Event::Exited`.
pub(crate) trait Launcher {
    /// Start a sandbox. The fds named in `cfg` stay open until the `Started` event arrives.
    fn launch(&self, cfg: SandboxConfig);
    /// Send a signal to the sandbox's init, if one runs. Init forwards SIGTERM to the app;
    /// SIGKILL ends the whole sandbox.
    fn signal(&self, sig: i32);
}

/// The RPC thread's side of the keeper.
pub(crate) struct Keeper {
    requests: Option<std_mpsc::Sender<SandboxConfig>>,
    /// Host pid of the running sandbox's init; cleared (under the lock) before it is reaped, so
    /// a signal never reaches a recycled pid.
    pid: Arc<Mutex<Option<i32>>>,
    thread: Option<JoinHandle<()>>,
}

impl Keeper {
    /// Start the thread; its events arrive on the returned receiver.
    pub(crate) fn start() -> std::io::Result<(Keeper, mpsc::UnboundedReceiver<Event>)> {
        let (req_tx, req_rx) = std_mpsc::channel::<SandboxConfig>();
        let (ev_tx, ev_rx) = mpsc::unbounded();
        let pid = Arc::new(Mutex::new(None));
        let shared = pid.clone();
        let thread = std::thread::Builder::new().name("granary-keeper".into()).spawn(move || {
            for cfg in req_rx {
                let mut sandbox = match spawn(&cfg) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ev_tx.unbounded_send(Event::Started(Err(e)));
                        continue;
                    }
                };
                *shared.lock().expect("keeper lock") = Some(sandbox.pid());
                let _ = ev_tx.unbounded_send(Event::Started(Ok(sandbox.pid())));
                wait_without_reaping(sandbox.pid());
                *shared.lock().expect("keeper lock") = None;
                let (code, cleanup_error) = match sandbox.wait() {
                    Ok(code) => (code, None),
                    // The exit status is recorded before the cgroup is removed: ask again.
                    Err(e) => (sandbox.wait().unwrap_or(-1), Some(e.to_string())),
                };
                let _ = ev_tx.unbounded_send(Event::Exited { code, cleanup_error });
            }
        })?;
        Ok((Keeper { requests: Some(req_tx), pid, thread: Some(thread) }, ev_rx))
    }

}

impl Launcher for Keeper {
    fn launch(&self, cfg: SandboxConfig) {
        if let Some(tx) = &self.requests {
            tx.send(cfg).expect("the keeper thread runs as long as the supervisor");
        }
    }

    fn signal(&self, sig: i32) {
        if let Some(pid) = *self.pid.lock().expect("keeper lock") {
            unsafe { libc::kill(pid, sig) };
        }
    }
}

impl Drop for Keeper {
    /// Ends the thread, killing a sandbox that still runs (the supervisor stops the app
    /// gracefully before it gets here).
    fn drop(&mut self) {
        self.requests = None;
        if let Some(t) = self.thread.take() {
            while !t.is_finished() {
                self.signal(libc::SIGKILL);
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let _ = t.join();
        }
    }
}

/// Block until `pid` has exited, leaving it a zombie so its pid cannot be reused yet.
fn wait_without_reaping(pid: i32) {
    loop {
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}
