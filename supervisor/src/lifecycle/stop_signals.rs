//! SIGTERM, SIGINT and SIGHUP stop the grain the way `Supervisor.shutdown` does (SPEC.md,
//! "Supervisor lifecycle", signals): the app gets SIGTERM and its grace period, the sandbox's
//! cgroup and the sockets are removed, and the supervisor exits 0. Without this, the signal a
//! terminal's Ctrl-C or `systemctl stop` sends every process of the server would kill the
//! supervisor at once, and with it the app (its init has `PR_SET_PDEATHSIG(SIGKILL)`), with no
//! grace period and its cgroup left behind.
//!
//! The handler only writes the signal's number to a pipe (async-signal-safe); a task on the
//! RPC thread reads it. Handlers are process-wide, so only a process that is a supervisor
//! installs them (`GrainConfig::stop_on_signals`; `granary supervisor` sets it, in-process
//! tests do not). The sandbox's child inherits them until it execs the app, which resets
//! every disposition; the pipe's write end is not among the descriptors it keeps.

use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicI32, Ordering};

use async_io::Async;
use futures::AsyncReadExt;

use super::{Shared, Stopped};

/// The signals that stop a supervisor gracefully.
pub const STOP_SIGNALS: [i32; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

/// Write end of the pipe, for the handler. Never closed once set: a handler may run at any time.
static WRITE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_stop_signal(sig: libc::c_int) {
    // Async-signal-safe: an atomic load and write(2), keeping errno for the interrupted code.
    unsafe {
        let errno = *libc::__errno_location();
        let fd = WRITE_FD.load(Ordering::Relaxed);
        if fd >= 0 {
            let byte = sig as u8;
            libc::write(fd, (&byte as *const u8).cast(), 1);
        }
        *libc::__errno_location() = errno;
    }
}

fn name(sig: i32) -> &'static str {
    match sig {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGHUP => "SIGHUP",
        _ => "a stop signal",
    }
}

/// The read end of the signal pipe.
pub(crate) struct StopSignals(Async<File>);

impl StopSignals {
    /// Installs the handlers (once per process; later calls share the first pipe's write end
    /// and get a reader of a new pipe only if none was installed yet).
    pub(crate) fn install() -> io::Result<StopSignals> {
        let mut fds = [0; 2];
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let read = unsafe { File::from_raw_fd(fds[0]) };
        let write = unsafe { std::os::fd::OwnedFd::from_raw_fd(fds[1]) };
        if WRITE_FD.compare_exchange(-1, write.into_raw_fd(), Ordering::SeqCst, Ordering::SeqCst).is_err() {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "stop-signal handlers are already installed in this process"));
        }
        for sig in STOP_SIGNALS {
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_stop_signal as *const () as libc::sighandler_t;
                sa.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut sa.sa_mask);
                if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(StopSignals(Async::new(read)?))
    }

    /// The next stop signal received.
    async fn next(&mut self) -> io::Result<i32> {
        let mut byte = [0u8; 1];
        self.0.read_exact(&mut byte).await?;
        Ok(i32::from(byte[0]))
    }
}

/// Waits for a stop signal, then stops the app and makes `run` return `Stopped::Signal`.
/// Signals that arrive while the grain is already stopping (idle, `shutdown`) change nothing.
pub(crate) async fn stop_on_signal(mut signals: StopSignals, shared: Rc<Shared>) {
    loop {
        let sig = match signals.next().await {
            Ok(sig) => sig,
            Err(e) => {
                shared.log.borrow_mut().event(&format!("reading stop signals failed: {e}; SIGTERM no longer stops the app gracefully"));
                return;
            }
        };
        if shared.closing.get() {
            continue;
        }
        shared.close();
        shared.log.borrow_mut().event(&format!("received {}: stopping", name(sig)));
        shared.stop().await;
        shared.finish(Stopped::Signal(sig));
        return;
    }
}
