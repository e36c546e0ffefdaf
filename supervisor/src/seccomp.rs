//! The seccomp policy: a default-deny allowlist in the style of Firecracker's jailer, one
//! commented line per rule. Denials return an errno (never kill), so a runtime probing for a
//! feature sees a normal error and falls back:
//!
//! * anything not listed → `ENOSYS` ("this kernel does not have it": libc and runtimes fall back,
//!   e.g. glibc's `clone3` → `clone`);
//! * calls that need privileges the app never has → `EPERM`;
//! * socket families other than unix/IPv4/IPv6 → `EAFNOSUPPORT`;
//! * extended attributes → `EOPNOTSUPP`; terminal ioctls → `ENOTTY`.
//!
//! Only the x86_64 ABI is accepted: i386 (`int 0x80`) and x32 (`nr | 0x40000000`) calls get
//! `ENOSYS` from the "bad architecture" action.
//!
//! The filter is compiled in the parent (libseccomp allocates) and loaded in the child from the
//! exported BPF with one `seccomp(2)` call. With `SECCOMP_FILTER_FLAG_LOG` (development mode)
//! every denial is also written to the kernel audit log; see SPEC.md, "The grain sandbox" for how to read it.

use std::io::{Read, Seek};
use std::os::fd::FromRawFd;

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};

/// Which process the filter is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// The app and everything it starts.
    App,
    /// The supervisor after it has built the sandbox: the app's calls minus every network
    /// family except unix sockets, and unrestricted terminal ioctls.
    Supervisor,
}

/// Errors building a filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("building the seccomp filter failed; is libseccomp 2.5 or newer installed (Debian: libseccomp2)?")]
    Build(#[from] libseccomp::error::SeccompError),
    #[error("exporting the seccomp filter failed")]
    Export(#[from] std::io::Error),
    #[error("this kernel refused the seccomp filter: {0}. Granary needs Linux ≥ 5.9 with CONFIG_SECCOMP_FILTER")]
    Load(std::io::Error),
}

/// Allowed unconditionally, with the reason apps need each.
const ALLOW: &[(&str, &str)] = &[
    // --- file I/O ---
    ("read", "read from files, pipes and sockets"),
    ("write", "write to files, pipes and sockets"),
    ("readv", "vectored read"),
    ("writev", "vectored write (stdio, logging)"),
    ("pread64", "databases read at offsets"),
    ("pwrite64", "databases write at offsets"),
    ("preadv", "vectored positioned read"),
    ("pwritev", "vectored positioned write"),
    ("preadv2", "vectored positioned read with flags"),
    ("pwritev2", "vectored positioned write with flags"),
    ("open", "open files (legacy form)"),
    ("openat", "open files"),
    ("openat2", "open files with resolve restrictions"),
    ("creat", "create files (legacy form)"),
    ("close", "close fds"),
    ("close_range", "close many fds before exec"),
    ("lseek", "seek in files"),
    ("dup", "duplicate fds"),
    ("dup2", "redirect fds"),
    ("dup3", "redirect fds with O_CLOEXEC"),
    ("fcntl", "fd flags, locks, O_NONBLOCK"),
    ("flock", "advisory whole-file locks (sqlite, package managers)"),
    ("fsync", "durability of grain data"),
    ("fdatasync", "durability of grain data"),
    ("sync_file_range", "partial writeback (databases)"),
    ("ftruncate", "resize files"),
    ("truncate", "resize files by path"),
    ("fallocate", "preallocate space (databases)"),
    ("fadvise64", "page cache hints"),
    ("readahead", "page cache hints"),
    ("sendfile", "copy between fds (web servers)"),
    ("copy_file_range", "in-kernel file copy"),
    ("splice", "zero-copy pipe I/O"),
    ("tee", "zero-copy pipe duplication"),
    ("stat", "file metadata"),
    ("fstat", "file metadata"),
    ("lstat", "file metadata without following links"),
    ("newfstatat", "file metadata (glibc's stat)"),
    ("statx", "extended file metadata"),
    ("statfs", "free space"),
    ("fstatfs", "free space"),
    ("access", "permission checks"),
    ("faccessat", "permission checks"),
    ("faccessat2", "permission checks with flags"),
    ("getdents", "list directories (legacy)"),
    ("getdents64", "list directories"),
    ("readlink", "read symlinks"),
    ("readlinkat", "read symlinks"),
    ("mkdir", "create directories"),
    ("mkdirat", "create directories"),
    ("rmdir", "remove directories"),
    ("unlink", "remove files"),
    ("unlinkat", "remove files"),
    ("rename", "atomic replace of files"),
    ("renameat", "atomic replace of files"),
    ("renameat2", "atomic replace/exchange of files"),
    ("link", "hard links"),
    ("linkat", "hard links"),
    ("symlink", "symbolic links"),
    ("symlinkat", "symbolic links"),
    ("chmod", "file modes"),
    ("fchmod", "file modes"),
    ("fchmodat", "file modes"),
    ("chown", "tar/cp -p; the kernel refuses foreign owners (no CAP_CHOWN, uid 0 unmapped)"),
    ("fchown", "as chown"),
    ("lchown", "as chown"),
    ("fchownat", "as chown"),
    ("utime", "set file times"),
    ("utimes", "set file times"),
    ("utimensat", "set file times"),
    ("futimesat", "set file times"),
    ("getcwd", "current directory"),
    ("chdir", "change directory"),
    ("fchdir", "change directory"),
    ("umask", "file creation mask"),
    ("memfd_create", "anonymous shared memory files (JITs, Wayland-style IPC)"),
    ("inotify_init", "watch files (legacy)"),
    ("inotify_init1", "watch files for changes"),
    ("inotify_add_watch", "watch files for changes"),
    ("inotify_rm_watch", "watch files for changes"),
    // --- memory ---
    ("brk", "heap"),
    ("mmap", "memory mappings"),
    ("munmap", "memory mappings"),
    ("mprotect", "guard pages, JIT W^X"),
    ("mremap", "grow mappings (realloc)"),
    ("msync", "flush file mappings (lmdb)"),
    ("madvise", "memory hints, returning memory"),
    ("mincore", "residency checks"),
    ("membarrier", "runtimes' global memory barriers (JVM, .NET)"),
    // --- processes and threads ---
    ("fork", "start processes"),
    ("vfork", "posix_spawn"),
    ("execve", "run programs from the image"),
    ("execveat", "run programs by fd"),
    ("exit", "end a thread"),
    ("exit_group", "end the process"),
    ("wait4", "reap children"),
    ("waitid", "reap children"),
    ("kill", "signal own processes (the pid namespace hides everyone else)"),
    ("tkill", "signal own threads"),
    ("tgkill", "signal own threads (abort, pthread_kill)"),
    ("getpid", "own pid"),
    ("getppid", "parent pid"),
    ("gettid", "thread id"),
    ("getuid", "own uid"),
    ("geteuid", "own uid"),
    ("getgid", "own gid"),
    ("getegid", "own gid"),
    ("getresuid", "own uids"),
    ("getresgid", "own gids"),
    ("getgroups", "own groups"),
    ("getpgrp", "process group"),
    ("getpgid", "process group"),
    ("setpgid", "job control in shells"),
    ("getsid", "session"),
    ("setsid", "daemonizing"),
    ("getrlimit", "resource limits"),
    ("setrlimit", "lower own limits"),
    ("prlimit64", "resource limits (glibc's getrlimit)"),
    ("getrusage", "resource usage"),
    ("getpriority", "nice value"),
    ("setpriority", "lower own priority"),
    ("sched_yield", "spin locks"),
    ("sched_getaffinity", "count usable cpus"),
    ("sched_setaffinity", "pin threads"),
    ("sched_getparam", "scheduler queries"),
    ("sched_getscheduler", "scheduler queries"),
    ("sched_get_priority_max", "scheduler queries"),
    ("sched_get_priority_min", "scheduler queries"),
    ("uname", "kernel version checks"),
    ("sysinfo", "memory size (runtimes size heaps)"),
    ("times", "process times"),
    ("arch_prctl", "thread-local storage setup"),
    ("set_tid_address", "thread startup"),
    ("set_robust_list", "robust futexes (every glibc thread)"),
    ("rseq", "glibc registers restartable sequences for sched_getcpu"),
    ("capget", "read own (empty) capabilities"),
    ("getcpu", "current cpu"),
    ("futex", "locks and condition variables"),
    ("futex_waitv", "waiting on several futexes"),
    ("restart_syscall", "resume calls interrupted by signals"),
    // --- signals ---
    ("rt_sigaction", "signal handlers"),
    ("rt_sigprocmask", "signal masks"),
    ("rt_sigreturn", "return from signal handlers"),
    ("rt_sigpending", "pending signals"),
    ("rt_sigtimedwait", "synchronous signal wait"),
    ("rt_sigsuspend", "wait for signals"),
    ("rt_sigqueueinfo", "queue signals to own processes"),
    ("rt_tgsigqueueinfo", "queue signals to own threads"),
    ("sigaltstack", "stack overflow handlers (Rust, Go)"),
    ("signalfd", "signals as fds"),
    ("signalfd4", "signals as fds"),
    ("pause", "wait for a signal"),
    ("pidfd_open", "race-free child handling"),
    ("pidfd_send_signal", "race-free signalling of own processes"),
    // --- time ---
    ("clock_gettime", "clocks (vDSO fallback)"),
    ("clock_getres", "clock resolution"),
    ("clock_nanosleep", "sleep"),
    ("nanosleep", "sleep"),
    ("gettimeofday", "wall clock"),
    ("time", "wall clock"),
    ("alarm", "timeouts"),
    ("getitimer", "interval timers"),
    ("setitimer", "interval timers"),
    ("timer_create", "POSIX timers"),
    ("timer_settime", "POSIX timers"),
    ("timer_gettime", "POSIX timers"),
    ("timer_getoverrun", "POSIX timers"),
    ("timer_delete", "POSIX timers"),
    ("timerfd_create", "timers as fds (event loops)"),
    ("timerfd_settime", "timers as fds"),
    ("timerfd_gettime", "timers as fds"),
    // --- event loops ---
    ("select", "wait for fds"),
    ("pselect6", "wait for fds"),
    ("poll", "wait for fds"),
    ("ppoll", "wait for fds"),
    ("epoll_create", "event loops (legacy)"),
    ("epoll_create1", "event loops"),
    ("epoll_ctl", "event loops"),
    ("epoll_wait", "event loops"),
    ("epoll_pwait", "event loops"),
    ("epoll_pwait2", "event loops with ns timeouts"),
    ("eventfd", "wakeups (legacy)"),
    ("eventfd2", "wakeups"),
    ("pipe", "pipes"),
    ("pipe2", "pipes"),
    ("getrandom", "randomness"),
    // --- sockets (creation is filtered below; these act on sockets the app already has) ---
    ("bind", "listen for HTTP from the bridge"),
    ("listen", "accept connections"),
    ("accept", "accept connections"),
    ("accept4", "accept connections"),
    ("connect", "talk to local services; the net namespace has only lo"),
    ("shutdown", "half-close"),
    ("getsockopt", "socket options"),
    ("setsockopt", "socket options"),
    ("getsockname", "own address"),
    ("getpeername", "peer address"),
    ("sendto", "send"),
    ("recvfrom", "receive"),
    ("sendmsg", "send, with fds over unix sockets"),
    ("recvmsg", "receive"),
    ("sendmmsg", "batched send"),
    ("recvmmsg", "batched receive"),
    // --- System V IPC (private: the sandbox has its own IPC namespace) ---
    ("shmget", "shared memory (PostgreSQL)"),
    ("shmat", "shared memory"),
    ("shmdt", "shared memory"),
    ("shmctl", "shared memory"),
    ("semget", "semaphores"),
    ("semop", "semaphores"),
    ("semtimedop", "semaphores"),
    ("semctl", "semaphores"),
    ("msgget", "message queues"),
    ("msgsnd", "message queues"),
    ("msgrcv", "message queues"),
    ("msgctl", "message queues"),
];

/// Denied with EPERM: they need privileges the sandbox never has; EPERM is what the kernel
/// itself would say.
const DENY_EPERM: &[(&str, &str)] = &[
    ("mount", "filesystem layout is fixed by the supervisor"),
    ("umount2", "filesystem layout is fixed by the supervisor"),
    ("pivot_root", "filesystem layout is fixed by the supervisor"),
    ("chroot", "filesystem layout is fixed by the supervisor"),
    ("unshare", "no new namespaces"),
    ("setns", "no joining namespaces"),
    ("ptrace", "no debugging other processes"),
];

/// Extended attributes: "not supported on this filesystem".
const DENY_EOPNOTSUPP: &[&str] = &[
    "getxattr", "lgetxattr", "fgetxattr", "setxattr", "lsetxattr", "fsetxattr",
    "listxattr", "llistxattr", "flistxattr", "removexattr", "lremovexattr", "fremovexattr",
];

/// Namespace flags clone(2) must not carry.
const CLONE_NS_FLAGS: [u64; 7] = [
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWCGROUP as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
];

/// ioctls apps may make on their fds.
const IOCTL_ALLOW: [(u64, &str); 5] = [
    (libc::FIONBIO, "non-blocking mode"),
    (libc::FIOCLEX, "close-on-exec"),
    (libc::FIONCLEX, "clear close-on-exec"),
    (libc::FIONREAD, "bytes readable"),
    (libc::FIOASYNC, "async I/O signal"),
];

/// Terminal ioctls: answered "not a terminal", so isatty() is false and TIOCSTI can never push
/// input into a terminal the sandbox was started from.
const IOCTL_ENOTTY: [u64; 12] = [
    libc::TCGETS, libc::TCSETS, libc::TCSETSW, libc::TCSETSF, libc::TIOCGWINSZ, libc::TIOCSWINSZ,
    libc::TIOCGPGRP, libc::TIOCSPGRP, libc::TIOCSCTTY, libc::TIOCSTI, libc::TIOCGPTN, libc::TCFLSH,
];

/// prctl options apps use that affect only themselves.
const PRCTL_ALLOW: [(i32, &str); 14] = [
    (libc::PR_SET_NAME, "thread names"),
    (libc::PR_GET_NAME, "thread names"),
    (libc::PR_SET_PDEATHSIG, "die with the parent"),
    (libc::PR_GET_PDEATHSIG, "die with the parent"),
    (libc::PR_GET_DUMPABLE, "crash handlers"),
    (libc::PR_SET_NO_NEW_PRIVS, "already set; harmless"),
    (libc::PR_GET_NO_NEW_PRIVS, "self-checks"),
    (libc::PR_GET_SECCOMP, "self-checks"),
    (libc::PR_CAPBSET_READ, "capability probes (libcap)"),
    (libc::PR_GET_KEEPCAPS, "capability probes"),
    (libc::PR_SET_TIMERSLACK, "timer precision"),
    (libc::PR_GET_TIMERSLACK, "timer precision"),
    (libc::PR_SET_CHILD_SUBREAPER, "process supervisors inside the app"),
    (libc::PR_GET_CHILD_SUBREAPER, "process supervisors inside the app"),
];

fn sys(name: &str) -> Result<ScmpSyscall, SeccompError> {
    Ok(ScmpSyscall::from_name(name)?)
}

fn cmp(arg: u32, op: ScmpCompareOp, datum: u64) -> ScmpArgCompare {
    ScmpArgCompare::new(arg, op, datum)
}

fn eq(arg: u32, datum: u64) -> ScmpArgCompare {
    cmp(arg, ScmpCompareOp::Equal, datum)
}

/// Rules for socket(2)/socketpair(2): only these families and types.
fn add_socket_rules(ctx: &mut ScmpFilterContext, name: &str, families: &[u64]) -> Result<(), SeccompError> {
    let call = sys(name)?;
    let afno = ScmpAction::Errno(libc::EAFNOSUPPORT);
    // Every family number up to the largest we allow, and everything above it, is refused;
    // libseccomp cannot negate, so the refusals are enumerated.
    let max = *families.iter().max().expect("some family");
    for d in (0..=max).filter(|d| !families.contains(d)) {
        ctx.add_rule_conditional(afno, call, &[eq(0, d)])?;
    }
    ctx.add_rule_conditional(afno, call, &[cmp(0, ScmpCompareOp::Greater, max)])?;
    let type_of = |t: u64| cmp(1, ScmpCompareOp::MaskedEqual(0xf), t); // SOCK_TYPE_MASK; flags pass
    let (stream, dgram) = (libc::SOCK_STREAM as u64, libc::SOCK_DGRAM as u64);
    for &d in families {
        for t in (0..16).filter(|t| *t != stream && *t != dgram) {
            // Raw, packet, seqpacket, DCCP...: "operation not permitted", as without CAP_NET_RAW.
            ctx.add_rule_conditional(ScmpAction::Errno(libc::EPERM), call, &[eq(0, d), type_of(t)])?;
        }
        if d == libc::AF_UNIX as u64 {
            ctx.add_rule_conditional(ScmpAction::Allow, call, &[eq(0, d), type_of(stream)])?;
            ctx.add_rule_conditional(ScmpAction::Allow, call, &[eq(0, d), type_of(dgram)])?;
        } else {
            // Protocol 0 or the type's own (TCP, UDP); SCTP, MPTCP, ping sockets... → ENOSYS.
            for (t, proto) in [(stream, libc::IPPROTO_TCP), (dgram, libc::IPPROTO_UDP)] {
                for p in [0, proto as u64] {
                    ctx.add_rule_conditional(ScmpAction::Allow, call, &[eq(0, d), type_of(t), eq(2, p)])?;
                }
            }
        }
    }
    Ok(())
}

/// Build the filter as a libseccomp context.
fn build(policy: Policy) -> Result<ScmpFilterContext, SeccompError> {
    let mut ctx = ScmpFilterContext::new(ScmpAction::Errno(libc::ENOSYS))?;
    // Only the native x86_64 ABI; i386 and x32 numbers get ENOSYS instead of the default kill.
    ctx.set_act_badarch(ScmpAction::Errno(libc::ENOSYS))?;
    ctx.set_ctl_nnp(false)?; // the setup sets no_new_privs itself, before loading
    debug_assert!(ctx.is_arch_present(ScmpArch::native())?);
    for (name, _why) in ALLOW {
        ctx.add_rule(ScmpAction::Allow, sys(name)?)?;
    }
    for (name, _why) in DENY_EPERM {
        ctx.add_rule(ScmpAction::Errno(libc::EPERM), sys(name)?)?;
    }
    for name in DENY_EOPNOTSUPP {
        ctx.add_rule(ScmpAction::Errno(libc::EOPNOTSUPP), sys(name)?)?;
    }
    // clone: threads and processes, never new namespaces.
    let clone = sys("clone")?;
    let ns_mask = CLONE_NS_FLAGS.iter().fold(0, |a, f| a | f);
    ctx.add_rule_conditional(ScmpAction::Allow, clone, &[cmp(0, ScmpCompareOp::MaskedEqual(ns_mask), 0)])?;
    for flag in CLONE_NS_FLAGS {
        ctx.add_rule_conditional(ScmpAction::Errno(libc::EPERM), clone, &[cmp(0, ScmpCompareOp::MaskedEqual(flag), flag)])?;
    }
    // clone3 is deliberately absent: its flags are in memory seccomp cannot read, and the
    // default ENOSYS makes glibc fall back to clone, filtered above. (libseccomp refuses a rule
    // whose action equals the default, so there is no explicit rule.)
    // mknod: FIFOs and plain files (mkfifo, some archivers); device nodes are refused.
    for (name, arg) in [("mknod", 1), ("mknodat", 2)] {
        let call = sys(name)?;
        let kind = |k: u32| cmp(arg, ScmpCompareOp::MaskedEqual(libc::S_IFMT as u64), k as u64);
        ctx.add_rule_conditional(ScmpAction::Allow, call, &[kind(libc::S_IFIFO)])?;
        ctx.add_rule_conditional(ScmpAction::Allow, call, &[kind(libc::S_IFREG)])?;
        for dev in [libc::S_IFCHR, libc::S_IFBLK] {
            ctx.add_rule_conditional(ScmpAction::Errno(libc::EPERM), call, &[kind(dev)])?;
        }
    }
    // personality: only the query and the default Linux personality (no READ_IMPLIES_EXEC,
    // no ADDR_NO_RANDOMIZE).
    for p in [0xffff_ffffu64, 0] {
        ctx.add_rule_conditional(ScmpAction::Allow, sys("personality")?, &[eq(0, p)])?;
    }
    let ioctl = sys("ioctl")?;
    let cmd = |c: u64| cmp(1, ScmpCompareOp::MaskedEqual(0xffff_ffff), c); // cmd is an unsigned int
    for (c, _why) in IOCTL_ALLOW {
        ctx.add_rule_conditional(ScmpAction::Allow, ioctl, &[cmd(c)])?;
    }
    let tty_action = match policy {
        Policy::App => ScmpAction::Errno(libc::ENOTTY),
        Policy::Supervisor => ScmpAction::Allow, // `granary sandbox` may run in a terminal
    };
    for c in IOCTL_ENOTTY.iter().filter(|c| policy == Policy::App || **c != libc::TIOCSTI) {
        ctx.add_rule_conditional(tty_action, ioctl, &[cmd(*c)])?;
    }
    if policy == Policy::Supervisor {
        ctx.add_rule_conditional(ScmpAction::Errno(libc::ENOTTY), ioctl, &[cmd(libc::TIOCSTI)])?;
    }
    for (opt, _why) in PRCTL_ALLOW {
        ctx.add_rule_conditional(ScmpAction::Allow, sys("prctl")?, &[eq(0, opt as u64)])?;
    }
    let families: &[u64] = match policy {
        Policy::App => &[libc::AF_UNIX as u64, libc::AF_INET as u64, libc::AF_INET6 as u64],
        Policy::Supervisor => &[libc::AF_UNIX as u64],
    };
    add_socket_rules(&mut ctx, "socket", families)?;
    add_socket_rules(&mut ctx, "socketpair", &[libc::AF_UNIX as u64])?;
    Ok(ctx)
}

/// The app policy's BPF, compiled once per process (compiling takes milliseconds; the policy
/// never changes).
pub fn app_filter() -> Result<&'static [libc::sock_filter], SeccompError> {
    static APP: std::sync::OnceLock<Vec<libc::sock_filter>> = std::sync::OnceLock::new();
    if let Some(p) = APP.get() {
        return Ok(p);
    }
    let prog = compile(Policy::App)?;
    Ok(APP.get_or_init(|| prog))
}

/// Compile a policy to BPF, ready for `seccomp(SECCOMP_SET_MODE_FILTER)`.
pub fn compile(policy: Policy) -> Result<Vec<libc::sock_filter>, SeccompError> {
    let ctx = build(policy)?;
    // libseccomp 2.5 exports only to an fd: use an anonymous memory file.
    let fd = unsafe { libc::memfd_create(c"granary-seccomp".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(SeccompError::Export(std::io::Error::last_os_error()));
    }
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    ctx.export_bpf(&file)?;
    file.rewind()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let size = std::mem::size_of::<libc::sock_filter>();
    Ok(bytes
        .chunks_exact(size)
        .map(|b| libc::sock_filter {
            code: u16::from_ne_bytes([b[0], b[1]]),
            jt: b[2],
            jf: b[3],
            k: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        })
        .collect())
}

/// Put the calling process (all its threads) under the supervisor policy. Irreversible: call it
/// once the sandbox is running. The process must not need to create namespaces afterwards.
pub fn apply_supervisor_filter() -> Result<(), SeccompError> {
    let prog = compile(Policy::Supervisor)?;
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(SeccompError::Load(std::io::Error::last_os_error()));
    }
    let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_ptr() as *mut _ };
    let rc = unsafe {
        libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, libc::SECCOMP_FILTER_FLAG_TSYNC, &fprog)
    };
    if rc != 0 {
        return Err(SeccompError::Load(std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_syscall_exists_on_x86_64_and_the_filter_fits() {
        for policy in [Policy::App, Policy::Supervisor] {
            let prog = compile(policy).unwrap();
            assert!(prog.len() > 100 && prog.len() < 4096, "{} BPF instructions", prog.len());
        }
    }

    #[test]
    fn no_syscall_is_both_allowed_and_denied() {
        for (name, _) in ALLOW {
            assert!(!DENY_EPERM.iter().any(|(d, _)| d == name), "{name}");
            assert!(!DENY_EOPNOTSUPP.contains(name), "{name}");
            assert!(!["clone", "clone3", "ioctl", "prctl", "socket", "socketpair", "mknod", "mknodat", "personality"].contains(name));
        }
    }
}
