//! What the sandbox's first process does, in order (bubblewrap-style: one short, auditable
//! sequence). It is cloned by `sandbox::spawn` into new user, mount, pid, network, ipc and uts
//! namespaces, becomes pid 1 there, builds the filesystem, gives up every privilege, loads the
//! seccomp filter, then forks the app and reaps until the app exits. When pid 1 exits the kernel
//! kills everything left in the pid namespace, so the app's whole tree dies with the sandbox.
//!
//! [`enter`] is generic over [`Sys`] so the order and flags are unit-tested with a recorder.
//! Everything here runs in a freshly cloned child of a possibly multi-threaded process: no
//! allocation, no locks, only the plan prepared by the parent.

use std::ffi::CString;

use crate::mounts::{FsOp, MountPlan};
use crate::syscalls::{Errno, RealSys, Sys};

/// The uid and gid the app has inside the sandbox.
pub const INSIDE_ID: u32 = 1000;
/// The sandbox's host and domain name.
pub const HOSTNAME: &std::ffi::CStr = c"sandbox";
/// Step number reported when the final execve fails.
pub const STEP_EXEC: u32 = u32::MAX;

/// Everything the child needs, prepared (and allocated) by the parent before clone.
pub struct Plan {
    /// The image path on the host: the new root.
    pub root: CString,
    pub fs: MountPlan,
    /// Drop supplementary groups (possible when the parent is root and left setgroups allowed).
    pub clear_groups: bool,
    pub sync_fd: i32,
    pub report_fd: i32,
    pub stdio: [Option<i32>; 3],
    /// Installed as fds 3, 4, …; at most [`crate::sandbox::MAX_EXTRA_FDS`].
    pub extra_fds: Vec<i32>,
    pub nofile: (u64, u64),
    pub seccomp: &'static [libc::sock_filter],
    pub seccomp_flags: u32,
    /// The program's path inside the sandbox, and NULL-terminated argv/envp pointer arrays
    /// into `_strings`.
    pub path: CString,
    pub argv: Vec<*const libc::c_char>,
    pub envp: Vec<*const libc::c_char>,
    pub _strings: Vec<CString>,
}

/// A failed step: its index in the sequence of calls, the errno, and where the report fd is
/// at that point (the sequence moves it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    pub step: u32,
    pub errno: Errno,
    pub report_fd: i32,
}

struct Steps {
    n: u32,
    report_fd: i32,
}

impl Steps {
    fn run<T>(&mut self, r: Result<T, Errno>) -> Result<T, Failure> {
        let step = self.n;
        self.n += 1;
        r.map_err(|errno| Failure { step, errno, report_fd: self.report_fd })
    }
}

/// The setup sequence, up to and including loading seccomp. Returns the report fd's number.
pub fn enter<S: Sys>(sys: &S, p: &Plan) -> Result<i32, Failure> {
    let mut s = Steps { n: 0, report_fd: p.report_fd };
    // If the parent dies from here on, so do we (and with us, the whole pid namespace).
    s.run(sys.set_parent_death_signal(libc::SIGKILL))?;
    s.run(sys.wait_for_parent(p.sync_fd))?;
    let report = s.run(sys.arrange_fds(p.stdio, &p.extra_fds, p.report_fd))?;
    s.report_fd = report;
    // Now that the parent has placed us in our cgroup, make it the root of our cgroup view.
    s.run(sys.unshare(libc::CLONE_NEWCGROUP))?;
    // Nothing we mount propagates back to the host, and nothing the host mounts reaches us.
    s.run(sys.mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None))?;
    fs_ops(sys, &mut s, &p.fs.host)?;
    // Become the app's uid now: files can only be created on our fresh tmpfs by a uid mapped
    // in the namespace. The capabilities we hold in our user namespace stay until dropped below
    // (uid 0 is not mapped, so the kernel's setuid capability rule does not apply).
    if p.clear_groups {
        s.run(sys.clear_groups())?;
    }
    s.run(sys.setresgid(INSIDE_ID))?;
    s.run(sys.setresuid(INSIDE_ID))?;
    // Changing credentials cleared the parent-death signal: set it again.
    s.run(sys.set_parent_death_signal(libc::SIGKILL))?;
    fs_ops(sys, &mut s, &p.fs.sandbox)?;
    s.run(sys.sethostname(HOSTNAME))?;
    s.run(sys.setdomainname(HOSTNAME))?;
    s.run(sys.loopback_up())?;
    // Swap roots and let go of the host's: afterwards no path leads outside the image.
    s.run(sys.chdir(&p.root))?;
    s.run(sys.pivot_root(c".", c"."))?;
    s.run(sys.umount2(c".", libc::MNT_DETACH))?;
    s.run(sys.chdir(c"/"))?;
    s.run(sys.drop_capabilities())?;
    s.run(sys.set_no_new_privs())?;
    sys.umask(0o007);
    s.run(Ok(()))?;
    s.run(sys.setrlimit(libc::RLIMIT_NOFILE, p.nofile.0, p.nofile.1))?;
    s.run(sys.setrlimit(libc::RLIMIT_CORE, 0, 0))?;
    s.run(sys.setsid())?;
    s.run(sys.load_seccomp(p.seccomp, p.seccomp_flags))?;
    Ok(report)
}

fn fs_ops<S: Sys>(sys: &S, s: &mut Steps, ops: &[FsOp]) -> Result<(), Failure> {
    for op in ops {
        let r = match op {
            FsOp::Mount { src, target, fstype, flags, data } => {
                sys.mount(src.as_deref(), target, fstype.as_deref(), *flags, data.as_deref())
            }
            FsOp::MkDir { path, mode } => sys.mkdir(path, *mode),
            FsOp::MkFile { path } => sys.create_file(path),
        };
        s.run(r)?;
    }
    Ok(())
}

fn report(fd: i32, f: Failure) {
    let mut msg = [0u8; 8];
    msg[..4].copy_from_slice(&f.step.to_ne_bytes());
    msg[4..].copy_from_slice(&f.errno.to_ne_bytes());
    unsafe { libc::write(fd, msg.as_ptr().cast(), msg.len()) };
}

/// The cloned child's whole life. Never returns.
pub fn child_main(p: &Plan) -> ! {
    let report_fd = match enter(&RealSys, p) {
        Ok(fd) => fd,
        Err(f) => {
            report(f.report_fd, f);
            unsafe { libc::_exit(127) }
        }
    };
    // Fork the app with the raw syscall: glibc's fork() would take malloc locks a thread of
    // the parent may have held at clone time.
    let app = unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD, 0, 0, 0, 0) };
    if app == 0 {
        exec_app(p, report_fd);
    }
    unsafe { libc::close(report_fd) };
    if app < 0 {
        unsafe { libc::_exit(126) };
    }
    forward_sigterm(app as libc::pid_t);
    init_loop(app as libc::pid_t)
}

static APP_PID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    // Async-signal-safe: one atomic load and one kill(2).
    unsafe { libc::kill(APP_PID.load(std::sync::atomic::Ordering::Relaxed), sig) };
}

/// The kernel delivers a signal from outside the pid namespace to its init only if init has a
/// handler for it: install one for SIGTERM that passes it on to the app, so the supervisor can
/// ask the app to stop (SIGKILL needs no handler and ends the whole namespace).
fn forward_sigterm(app: libc::pid_t) {
    APP_PID.store(app, std::sync::atomic::Ordering::Relaxed);
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = forward as *const () as libc::sighandler_t;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut());
    }
}

fn exec_app(p: &Plan, report_fd: i32) -> ! {
    unsafe {
        // Signal dispositions set to "ignore" survive exec (Rust ignores SIGPIPE): reset them.
        for sig in 1..=64 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let empty: libc::sigset_t = std::mem::zeroed();
        libc::syscall(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK, &empty, 0, 8);
        libc::execve(p.path.as_ptr(), p.argv.as_ptr(), p.envp.as_ptr());
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
        report(report_fd, Failure { step: STEP_EXEC, errno, report_fd });
        libc::_exit(127)
    }
}

/// pid 1's job once the app runs: reap every process reparented to it, and exit with the app's
/// status (a signal becomes 128 + its number, as in a shell).
fn init_loop(app: libc::pid_t) -> ! {
    loop {
        let mut status = 0;
        let pid = unsafe { libc::wait4(-1, &mut status, libc::__WALL, std::ptr::null_mut()) };
        if pid == app {
            let code = if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else if libc::WIFSIGNALED(status) {
                128 + libc::WTERMSIG(status)
            } else {
                continue;
            };
            unsafe { libc::_exit(code) };
        }
        if pid < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD) {
            unsafe { libc::_exit(125) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscalls::{Call, Recorder};

    fn plan() -> Plan {
        let fs = crate::mounts::plan(&crate::mounts::MountInputs {
            image: "/img".into(),
            data: "/data".into(),
            image_locked: 0,
            data_locked: 0,
            dev_locked: 0,
            proc_locked: 0,
            tmp_bytes: 1 << 20,
            shm_bytes: 1 << 20,
            dev_proc: false,
            platform: None,
        })
        .unwrap();
        Plan {
            root: c"/img".into(),
            fs,
            clear_groups: true,
            sync_fd: 5,
            report_fd: 6,
            stdio: [None, Some(8), None],
            extra_fds: vec![7],
            nofile: (1024, 4096),
            seccomp: &[libc::sock_filter { code: 6, jt: 0, jf: 0, k: 0x7fff_0000 }],
            seccomp_flags: 0,
            path: c"/bin/app".into(),
            argv: vec![std::ptr::null()],
            envp: vec![std::ptr::null()],
            _strings: vec![],
        }
    }

    fn pos(calls: &[Call], pred: impl Fn(&Call) -> bool) -> usize {
        calls.iter().position(pred).expect("call present")
    }

    #[test]
    fn sequence_order_privileges_are_dropped_after_the_filesystem_and_seccomp_is_last() {
        let sys = Recorder::new();
        assert_eq!(enter(&sys, &plan()), Ok(4));
        let c = sys.calls();
        assert_eq!(c[0], Call::SetParentDeathSignal(libc::SIGKILL));
        assert_eq!(c[1], Call::WaitForParent(5));
        assert_eq!(c[2], Call::ArrangeFds { stdio: [None, Some(8), None], extra: vec![7], report: 6 });
        assert_eq!(c[3], Call::Unshare(libc::CLONE_NEWCGROUP));
        assert_eq!(
            c[4],
            Call::Mount { src: None, target: "/".into(), fstype: None, flags: libc::MS_REC | libc::MS_PRIVATE, data: None }
        );
        let last_mount = c.iter().rposition(|x| matches!(x, Call::Mount { .. })).unwrap();
        let pivot = pos(&c, |x| matches!(x, Call::PivotRoot { .. }));
        assert_eq!(c[pivot - 1], Call::Chdir("/img".into()));
        assert_eq!(c[pivot], Call::PivotRoot { new_root: ".".into(), put_old: ".".into() });
        assert_eq!(c[pivot + 1], Call::Umount2 { target: ".".into(), flags: libc::MNT_DETACH });
        assert_eq!(c[pivot + 2], Call::Chdir("/".into()));
        assert!(last_mount < pivot, "every mount happens before the old root is detached");
        let lo = pos(&c, |x| *x == Call::LoopbackUp);
        let uid = pos(&c, |x| *x == Call::Setresuid(INSIDE_ID));
        let gid = pos(&c, |x| *x == Call::Setresgid(INSIDE_ID));
        let groups = pos(&c, |x| *x == Call::ClearGroups);
        let caps = pos(&c, |x| *x == Call::DropCapabilities);
        let nnp = pos(&c, |x| *x == Call::SetNoNewPrivs);
        let first_create = pos(&c, |x| matches!(x, Call::CreateFile(_)));
        let var_bind = pos(&c, |x| matches!(x, Call::Mount { target, .. } if target == "/img/var"));
        assert_eq!(c[uid + 1], Call::SetParentDeathSignal(libc::SIGKILL), "re-armed after the uid change cleared it");
        assert!(var_bind < groups && groups < gid && gid < uid && uid < first_create, "host binds as the parent's uid, files as the app's");
        assert!(lo < pivot && uid < caps && pivot < caps && caps < nnp);
        assert!(c.contains(&Call::Sethostname("sandbox".into())));
        assert!(c.contains(&Call::Umask(0o007)));
        assert!(c.contains(&Call::Setrlimit { resource: libc::RLIMIT_NOFILE, soft: 1024, hard: 4096 }));
        assert!(c.contains(&Call::Setrlimit { resource: libc::RLIMIT_CORE, soft: 0, hard: 0 }));
        assert!(pos(&c, |x| *x == Call::Setsid) > nnp);
        assert_eq!(c.last(), Some(&Call::LoadSeccomp { instructions: 1, flags: 0 }));
    }

    #[test]
    fn a_failing_step_stops_the_sequence_and_names_itself() {
        let full = Recorder::new();
        enter(&full, &plan()).unwrap();
        let pivot = pos(&full.calls(), |x| matches!(x, Call::PivotRoot { .. }));
        let sys = Recorder::failing_at(pivot, libc::EINVAL);
        assert_eq!(enter(&sys, &plan()), Err(Failure { step: pivot as u32, errno: libc::EINVAL, report_fd: 4 }));
        assert_eq!(sys.calls().len(), pivot + 1, "nothing runs after the failure");
        assert!(!sys.calls().contains(&Call::SetNoNewPrivs));
    }

    #[test]
    fn groups_are_left_alone_when_the_parent_could_not_allow_setgroups() {
        let sys = Recorder::new();
        let mut p = plan();
        p.clear_groups = false;
        p.extra_fds = Vec::new();
        assert_eq!(enter(&sys, &p), Ok(3));
        assert!(!sys.calls().contains(&Call::ClearGroups));
    }
}
