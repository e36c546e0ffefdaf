//! The escape suite: the static probe runs in a sandbox built by `granary_supervisor::spawn`
//! (the function `granary sandbox` and the supervisor call) from an image holding only itself,
//! tries to get out in every way listed below, and reports the kernel's answer to each. Every
//! outcome is asserted exactly: a refusal must come with the expected errno (seccomp's ENOSYS
//! or EPERM, the kernel's EROFS or EINVAL...) or the target must be absent (ENOENT).

mod common;

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener};

use common::*;

/// (probe, expected outcome, why this outcome proves the point)
const ESCAPES: &[(&str, &str, &str)] = &[
    ("read_etc_shadow", "ENOENT", "the host's /etc is not in the image"),
    ("dotdot_to_host", "ENOENT", ".. at / stays at the image root"),
    ("proc_1_root", "ENOENT", "no procfs"),
    ("proc_self_mem", "ENOENT", "no procfs"),
    ("sys_dir", "ENOENT", "no sysfs"),
    ("dev_mem", "ENOENT", "/dev has only null, zero, random, urandom"),
    ("open_by_handle_at", "ENOSYS", "seccomp (the kernel would say EPERM)"),
    ("other_grain_dir", "ENOENT", "another grain's directory is not mounted"),
    ("other_grain_create", "ENOENT", "nor can it be created"),
    ("write_image", "EROFS", "the image is mounted read-only"),
    ("write_dev", "EROFS", "/dev is read-only"),
    ("mount_tmpfs", "EPERM", "seccomp"),
    ("umount_var", "EPERM", "seccomp"),
    ("pivot_root", "EPERM", "seccomp"),
    ("chroot", "EPERM", "seccomp"),
    ("fsopen", "ENOSYS", "seccomp: new mount API not allowed"),
    ("open_tree", "ENOSYS", "seccomp"),
    ("unshare_user", "EPERM", "seccomp"),
    ("unshare_net", "EPERM", "seccomp"),
    ("clone_newns", "EPERM", "seccomp clone flag filter"),
    ("clone_newuser", "EPERM", "seccomp clone flag filter"),
    ("clone_newnet", "EPERM", "seccomp clone flag filter"),
    ("clone3", "ENOSYS", "seccomp (the kernel would say EFAULT for this NULL argument)"),
    ("setns", "EPERM", "seccomp"),
    ("ptrace_attach_sibling", "EPERM", "seccomp"),
    ("ptrace_traceme", "EPERM", "seccomp (the kernel would allow TRACEME)"),
    ("process_vm_readv_sibling", "ENOSYS", "seccomp"),
    ("kill_host_pid", "ESRCH", "host pids do not exist in the pid namespace"),
    ("bpf", "ENOSYS", "seccomp"),
    ("perf_event_open", "ENOSYS", "seccomp"),
    ("userfaultfd", "ENOSYS", "seccomp"),
    ("io_uring_setup", "ENOSYS", "seccomp"),
    ("keyctl", "ENOSYS", "seccomp"),
    ("add_key", "ENOSYS", "seccomp"),
    ("request_key", "ENOSYS", "seccomp"),
    ("kexec_load", "ENOSYS", "seccomp"),
    ("init_module", "ENOSYS", "seccomp"),
    ("finit_module", "ENOSYS", "seccomp"),
    ("reboot", "ENOSYS", "seccomp"),
    ("settimeofday", "ENOSYS", "seccomp"),
    ("clock_settime", "ENOSYS", "seccomp"),
    ("sethostname", "ENOSYS", "seccomp"),
    ("setuid_0", "ENOSYS", "seccomp"),
    ("mknod_chardev", "EPERM", "seccomp mknod mode filter"),
    ("chown_root", "EINVAL", "kernel: uid 0 is not mapped in the user namespace"),
    ("personality", "ENOSYS", "seccomp personality filter"),
    ("modify_ldt", "ENOSYS", "seccomp"),
    ("iopl", "ENOSYS", "seccomp"),
    ("swapon", "ENOSYS", "seccomp"),
    ("acct", "ENOSYS", "seccomp"),
    ("quotactl", "ENOSYS", "seccomp"),
    ("x32_getpid", "ENOSYS", "seccomp bad-arch action for x32 numbers"),
    ("tiocsti_stdin", "ENOTTY", "seccomp ioctl filter (stdin is a real tty; the kernel would say EIO/EPERM)"),
    ("tcgets_stdin", "ENOTTY", "seccomp ioctl filter (the kernel would succeed on this tty)"),
    ("socket_packet", "EAFNOSUPPORT", "seccomp socket family filter"),
    ("socket_netlink", "EAFNOSUPPORT", "seccomp socket family filter"),
    ("socket_vsock", "EAFNOSUPPORT", "seccomp socket family filter"),
    ("socket_raw_inet", "EPERM", "seccomp socket type filter"),
    ("socket_sctp", "ENOSYS", "seccomp socket protocol filter"),
    ("socketpair_inet", "EAFNOSUPPORT", "seccomp socketpair family filter"),
    ("tcp_host_loopback", "ECONNREFUSED", "the sandbox's 127.0.0.1 is its own; the host's listener is unreachable"),
    ("tcp_public_testnet", "ENETUNREACH", "no route out of the network namespace"),
    ("abstract_unix_host", "ECONNREFUSED", "abstract unix names are per network namespace"),
];

/// Things that must work.
fn positives() -> Vec<(&'static str, String)> {
    let ok = |k| (k, "ok".to_string());
    vec![
        ("uid_gid", "1000:1000".into()),
        ("groups", "0".into()),
        ("pid_ppid", "2:1".into()),
        ("hostname", "sandbox".into()),
        ("caps", "[0, 0, 0, 0, 0, 0]".into()),
        ("capbset_sys_admin", "0".into()),
        ("no_new_privs", "1".into()),
        ("umask", "007".into()),
        ("rlimit_nofile", "1024/4096".into()),
        ("rlimit_core", "0/0".into()),
        ("open_fds", "0,1,2".into()),
        ("env", "GREETING=hello world".into()),
        ("session_leader", "0".into()),
        ("proc_entries", "cpuinfo".into()),
        ("dev_entries", "null,random,shm,urandom,zero".into()),
        ("cpuinfo", "true".into()),
        ok("var_write_read_fsync"),
        ok("image_read"),
        ok("tmp_write"),
        ok("dev_shm_write"),
        ok("dev_null_write"),
        ok("dev_random_read"),
        ok("mkfifo"),
        ok("loopback_tcp4"),
        ok("loopback_tcp6"),
        ok("socket_unix_dgram"),
        ok("socket_udp"),
        ok("threads"),
        ("fork_exec", "exit7".into()),
        ok("getrandom"),
        ok("timers_epoll"),
    ]
}

/// A pseudo-terminal: (master, slave).
fn pty() -> (OwnedFd, OwnedFd) {
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(m >= 0 && libc::grantpt(m) == 0 && libc::unlockpt(m) == 0);
        let name = CStr::from_ptr(libc::ptsname(m)).to_owned();
        let s = libc::open(name.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(s >= 0);
        (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s))
    }
}

#[test]
fn escape_attempts_are_refused_precisely_and_ordinary_work_succeeds() {
    require_root();
    let grain = Grain::new();
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("secret"), "other grain's data").unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let abstract_name = format!("granary-escape-test-{}", std::process::id());
    let _unix = UnixListener::bind_addr(&SocketAddr::from_abstract_name(abstract_name.as_bytes()).unwrap()).unwrap();
    let (_master, slave) = pty();
    assert_eq!(unsafe { libc::isatty(slave.as_raw_fd()) }, 1, "the probe's stdin is a real terminal");

    let mut cfg = grain.config(&[
        "escapes",
        &tcp.local_addr().unwrap().port().to_string(),
        &abstract_name,
        other.path().to_str().unwrap(),
        &std::process::id().to_string(),
    ]);
    cfg.env = vec![("GREETING".into(), "hello world".into())];
    cfg.stdio[0] = Some(slave.as_raw_fd());
    let (code, out) = run(cfg);
    let got: BTreeMap<&str, &str> = out.lines().filter_map(|l| l.split_once('=')).collect();
    let mut wrong = Vec::new();
    for (probe, want, why) in ESCAPES {
        match got.get(probe) {
            Some(g) if g == want => {}
            g => wrong.push(format!("{probe}: got {g:?}, want {want} ({why})")),
        }
    }
    for (probe, want) in positives() {
        match got.get(probe) {
            Some(g) if *g == want => {}
            g => wrong.push(format!("{probe}: got {g:?}, want {want:?}")),
        }
    }
    assert!(wrong.is_empty(), "exit {code}; mismatches:\n{}\n\nfull output:\n{out}", wrong.join("\n"));
    assert_eq!(code, 0);
    assert!(ESCAPES.len() >= 40);
    // Nothing leaked out: the other grain is untouched, the image has no new file.
    assert!(!other.path().join("planted").exists());
    assert!(!grain.image.path().join("planted-by-probe").exists());
    assert_eq!(std::fs::read(grain.data.path().join("probe-file")).unwrap(), b"grain data");
}
