//! Runs inside a sandbox and reports, one `name=outcome` line per attempt, what the kernel said:
//! `ok`, an errno name (`EPERM`), or a value. The tests decide what each outcome must be; the
//! probe only reports. Modes:
//!   escapes HOST_TCP_PORT ABSTRACT_NAME OTHER_GRAIN_DIR HOST_PID   every escape and positive probe
//!   true | exit N | echo | forkbomb | memhog | fill-tmp             helpers for tests and benches

use std::ffi::CString;
use std::io::{BufRead, Read, Write};
use std::net::{TcpListener, TcpStream};

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn name(e: i32) -> String {
    let n = match e {
        libc::EPERM => "EPERM", libc::ENOENT => "ENOENT", libc::ESRCH => "ESRCH", libc::EIO => "EIO",
        libc::EBADF => "EBADF", libc::EAGAIN => "EAGAIN", libc::ENOMEM => "ENOMEM", libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT", libc::EBUSY => "EBUSY", libc::EEXIST => "EEXIST", libc::EINVAL => "EINVAL",
        libc::ENOTTY => "ENOTTY", libc::ENOSPC => "ENOSPC", libc::EROFS => "EROFS", libc::ENOSYS => "ENOSYS",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT", libc::ECONNREFUSED => "ECONNREFUSED", libc::ENETUNREACH => "ENETUNREACH",
        libc::EOPNOTSUPP => "EOPNOTSUPP", libc::EPROTONOSUPPORT => "EPROTONOSUPPORT", libc::ENOTDIR => "ENOTDIR",
        libc::EXDEV => "EXDEV", libc::ENXIO => "ENXIO", libc::ENODEV => "ENODEV", libc::EOVERFLOW => "EOVERFLOW",
        _ => return format!("E{e}"),
    };
    n.to_string()
}

/// `ok` for a non-negative return, else the errno's name.
fn rc(r: i64) -> String {
    if r >= 0 { "ok".into() } else { name(errno()) }
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn report(k: &str, v: impl std::fmt::Display) {
    println!("{k}={v}");
}

fn open(path: &str, flags: i32) -> String {
    let p = c(path);
    let fd = unsafe { libc::open(p.as_ptr(), flags, 0o600) };
    if fd >= 0 {
        unsafe { libc::close(fd) };
    }
    rc(fd.into())
}

fn sys(nr: libc::c_long, a: [libc::c_long; 5]) -> String {
    rc(unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4]) })
}

fn socket(d: i32, t: i32, p: i32) -> String {
    let fd = unsafe { libc::socket(d, t, p) };
    if fd >= 0 {
        unsafe { libc::close(fd) };
    }
    rc(fd.into())
}

fn connect_v4(ip: [u8; 4], port: u16) -> String {
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    if fd < 0 {
        return format!("socket:{}", name(errno()));
    }
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as u16;
    sa.sin_port = port.to_be();
    sa.sin_addr.s_addr = u32::from_ne_bytes(ip);
    let r = unsafe { libc::connect(fd, (&sa as *const libc::sockaddr_in).cast(), std::mem::size_of_val(&sa) as u32) };
    let out = rc(r.into());
    unsafe { libc::close(fd) };
    out
}

fn connect_abstract(name_: &str) -> String {
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) };
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as u16;
    for (i, b) in name_.bytes().enumerate() {
        sa.sun_path[i + 1] = b as libc::c_char;
    }
    let len = (std::mem::size_of::<libc::sa_family_t>() + 1 + name_.len()) as u32;
    let r = unsafe { libc::connect(fd, (&sa as *const libc::sockaddr_un).cast(), len) };
    let out = rc(r.into());
    unsafe { libc::close(fd) };
    out
}

fn loopback(addr: &str) -> String {
    let l = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => return format!("bind:{}", name(e.raw_os_error().unwrap_or(0))),
    };
    let port = l.local_addr().unwrap().port();
    let host = addr.rsplit_once(':').unwrap().0.to_string();
    let t = std::thread::spawn(move || {
        let mut s = TcpStream::connect(format!("{host}:{port}")).unwrap();
        s.write_all(b"ping").unwrap();
    });
    let (mut s, _) = l.accept().unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).unwrap();
    t.join().unwrap();
    if &buf == b"ping" { "ok".into() } else { "garbled".into() }
}

fn escapes(args: &[String]) {
    let (host_port, abstract_name, other_grain, host_pid): (u16, &str, &str, i32) =
        (args[0].parse().unwrap(), &args[1], &args[2], args[3].parse().unwrap());
    let n = |s: &str| c(s);
    // --- reaching the host's files ---
    report("read_etc_shadow", open("/etc/shadow", libc::O_RDONLY));
    report("dotdot_to_host", open("/../../../../../etc/passwd", libc::O_RDONLY));
    report("proc_1_root", open("/proc/1/root/etc/passwd", libc::O_RDONLY));
    report("proc_self_mem", open("/proc/self/mem", libc::O_RDWR));
    report("sys_dir", open("/sys/kernel", libc::O_RDONLY));
    report("dev_mem", open("/dev/mem", libc::O_RDONLY));
    let handle = [0u8; 64];
    report("open_by_handle_at", sys(libc::SYS_open_by_handle_at, [libc::AT_FDCWD as _, handle.as_ptr() as _, libc::O_RDONLY as _, 0, 0]));
    report("other_grain_dir", open(&format!("{other_grain}/secret"), libc::O_RDONLY));
    report("other_grain_create", open(&format!("{other_grain}/planted"), libc::O_CREAT | libc::O_WRONLY));
    report("write_image", open("/planted-by-probe", libc::O_CREAT | libc::O_WRONLY));
    report("write_dev", open("/dev/planted", libc::O_CREAT | libc::O_WRONLY));
    // --- changing the filesystem or namespaces ---
    report("mount_tmpfs", rc(unsafe { libc::mount(n("none").as_ptr(), n("/tmp").as_ptr(), n("tmpfs").as_ptr(), 0, std::ptr::null()) }.into()));
    report("umount_var", rc(unsafe { libc::umount2(n("/var").as_ptr(), libc::MNT_DETACH) }.into()));
    report("pivot_root", sys(libc::SYS_pivot_root, [n("/tmp").as_ptr() as _, n("/tmp").as_ptr() as _, 0, 0, 0]));
    report("chroot", rc(unsafe { libc::chroot(n("/tmp").as_ptr()) }.into()));
    report("fsopen", sys(libc::SYS_fsopen, [n("tmpfs").as_ptr() as _, 0, 0, 0, 0]));
    report("open_tree", sys(libc::SYS_open_tree, [libc::AT_FDCWD as _, n("/").as_ptr() as _, 1, 0, 0]));
    report("unshare_user", rc(unsafe { libc::unshare(libc::CLONE_NEWUSER) }.into()));
    report("unshare_net", rc(unsafe { libc::unshare(libc::CLONE_NEWNET) }.into()));
    for (k, flag) in [("clone_newns", libc::CLONE_NEWNS), ("clone_newuser", libc::CLONE_NEWUSER), ("clone_newnet", libc::CLONE_NEWNET)] {
        let r = unsafe { libc::syscall(libc::SYS_clone, (flag | libc::SIGCHLD) as libc::c_long, 0, 0, 0, 0) };
        if r == 0 {
            unsafe { libc::_exit(0) };
        }
        if r > 0 {
            unsafe { libc::waitpid(r as i32, std::ptr::null_mut(), 0) };
        }
        report(k, rc(r));
    }
    report("clone3", sys(libc::SYS_clone3, [0, 88, 0, 0, 0]));
    report("setns", rc(unsafe { libc::setns(0, libc::CLONE_NEWNET) }.into()));
    // --- other processes ---
    let sibling = unsafe { libc::fork() };
    if sibling == 0 {
        unsafe { libc::pause(); libc::_exit(0) };
    }
    report("ptrace_attach_sibling", rc(unsafe { libc::ptrace(libc::PTRACE_ATTACH, sibling, 0, 0) }));
    report("ptrace_traceme", rc(unsafe { libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) }));
    let mut buf = [0u8; 8];
    let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: 8 };
    let remote = libc::iovec { iov_base: 0x400000 as *mut _, iov_len: 8 };
    report("process_vm_readv_sibling", rc(unsafe { libc::process_vm_readv(sibling, &local, 1, &remote, 1, 0) } as i64));
    unsafe { libc::kill(sibling, libc::SIGKILL); libc::waitpid(sibling, std::ptr::null_mut(), 0) };
    report("kill_host_pid", rc(unsafe { libc::kill(host_pid, 0) }.into()));
    // --- kernel attack surface ---
    report("bpf", sys(libc::SYS_bpf, [0, 0, 0, 0, 0]));
    report("perf_event_open", sys(libc::SYS_perf_event_open, [0, 0, -1, -1, 0]));
    report("userfaultfd", sys(libc::SYS_userfaultfd, [0, 0, 0, 0, 0]));
    report("io_uring_setup", sys(libc::SYS_io_uring_setup, [1, 0, 0, 0, 0]));
    report("keyctl", sys(libc::SYS_keyctl, [0, 0, 0, 0, 0]));
    report("add_key", sys(libc::SYS_add_key, [n("user").as_ptr() as _, n("k").as_ptr() as _, 0, 0, -3]));
    report("request_key", sys(libc::SYS_request_key, [n("user").as_ptr() as _, n("k").as_ptr() as _, 0, 0, 0]));
    report("kexec_load", sys(libc::SYS_kexec_load, [0, 0, 0, 0, 0]));
    report("init_module", sys(libc::SYS_init_module, [0, 0, n("").as_ptr() as _, 0, 0]));
    report("finit_module", sys(libc::SYS_finit_module, [0, n("").as_ptr() as _, 0, 0, 0]));
    report("reboot", sys(libc::SYS_reboot, [0, 0, 0, 0, 0]));
    let tv = libc::timeval { tv_sec: 0, tv_usec: 0 };
    report("settimeofday", rc(unsafe { libc::settimeofday(&tv, std::ptr::null()) }.into()));
    let ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    report("clock_settime", rc(unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) }.into()));
    report("sethostname", rc(unsafe { libc::sethostname(n("evil").as_ptr(), 4) }.into()));
    report("setuid_0", sys(libc::SYS_setuid, [0, 0, 0, 0, 0]));
    report("mknod_chardev", rc(unsafe { libc::mknod(n("/tmp/null2").as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) }.into()));
    let f = n("/tmp/owned");
    unsafe { libc::close(libc::open(f.as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o600)) };
    report("chown_root", rc(unsafe { libc::chown(f.as_ptr(), 0, 0) }.into()));
    report("personality", rc(unsafe { libc::personality(libc::ADDR_NO_RANDOMIZE as u64) }.into()));
    report("modify_ldt", sys(libc::SYS_modify_ldt, [0, 0, 0, 0, 0]));
    report("iopl", sys(libc::SYS_iopl, [3, 0, 0, 0, 0]));
    report("swapon", sys(libc::SYS_swapon, [n("/tmp/owned").as_ptr() as _, 0, 0, 0, 0]));
    report("acct", sys(libc::SYS_acct, [n("/tmp/owned").as_ptr() as _, 0, 0, 0, 0]));
    report("quotactl", sys(libc::SYS_quotactl, [0, n("/").as_ptr() as _, 0, 0, 0]));
    report("x32_getpid", sys(0x4000_0000 | libc::SYS_getpid, [0, 0, 0, 0, 0]));
    let tiocsti_byte = b'x';
    report("tiocsti_stdin", rc(unsafe { libc::ioctl(0, libc::TIOCSTI, &tiocsti_byte) }.into()));
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    report("tcgets_stdin", rc(unsafe { libc::ioctl(0, libc::TCGETS, &mut t) }.into()));
    // --- network ---
    report("socket_packet", socket(libc::AF_PACKET, libc::SOCK_RAW, 0));
    report("socket_netlink", socket(libc::AF_NETLINK, libc::SOCK_RAW, 0));
    report("socket_vsock", socket(libc::AF_VSOCK, libc::SOCK_STREAM, 0));
    report("socket_raw_inet", socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP));
    report("socket_sctp", socket(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_SCTP));
    let mut sv = [0; 2];
    report("socketpair_inet", rc(unsafe { libc::socketpair(libc::AF_INET, libc::SOCK_STREAM, 0, sv.as_mut_ptr()) }.into()));
    report("tcp_host_loopback", connect_v4([127, 0, 0, 1], host_port));
    report("tcp_public_testnet", connect_v4([192, 0, 2, 1], 80));
    report("abstract_unix_host", connect_abstract(abstract_name));
    positives();
}

fn positives() {
    let n = |s: &str| c(s);
    // Identity and hygiene.
    report("uid_gid", format!("{}:{}", unsafe { libc::getuid() }, unsafe { libc::getgid() }));
    report("groups", unsafe { libc::getgroups(0, std::ptr::null_mut()) });
    report("pid_ppid", format!("{}:{}", std::process::id(), unsafe { libc::getppid() }));
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    unsafe { libc::uname(&mut uts) };
    report("hostname", unsafe { std::ffi::CStr::from_ptr(uts.nodename.as_ptr()) }.to_string_lossy());
    let hdr = [0x2008_0522u32, 0];
    let mut data = [0u32; 6];
    unsafe { libc::syscall(libc::SYS_capget, hdr.as_ptr(), data.as_mut_ptr()) };
    report("caps", format!("{:?}", data));
    report("capbset_sys_admin", unsafe { libc::prctl(libc::PR_CAPBSET_READ, 21, 0, 0, 0) /* CAP_SYS_ADMIN */ });
    report("no_new_privs", unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) });
    let old = unsafe { libc::umask(0o022) };
    report("umask", format!("{old:03o}"));
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    report("rlimit_nofile", format!("{}/{}", lim.rlim_cur, lim.rlim_max));
    unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut lim) };
    report("rlimit_core", format!("{}/{}", lim.rlim_cur, lim.rlim_max));
    let open_fds: Vec<String> = (0..1024).filter(|fd| unsafe { libc::fcntl(*fd, libc::F_GETFD) } >= 0).map(|fd| fd.to_string()).collect();
    report("open_fds", open_fds.join(","));
    let env: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
    report("env", env.join(";"));
    report("session_leader", (unsafe { libc::getsid(0) } == unsafe { libc::getpid() }) as i32);
    let proc_entries: Vec<String> = std::fs::read_dir("/proc").map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default();
    report("proc_entries", proc_entries.join(","));
    let mut dev_entries: Vec<String> = std::fs::read_dir("/dev").unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    dev_entries.sort();
    report("dev_entries", dev_entries.join(","));
    report("cpuinfo", std::fs::read_to_string("/proc/cpuinfo").map(|s| s.contains("processor")).unwrap_or(false));
    // Storage.
    let var = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create("/var/probe-file")?;
        f.write_all(b"grain data")?;
        f.sync_all()?;
        assert_eq!(std::fs::read("/var/probe-file")?, b"grain data");
        Ok(())
    })();
    report("var_write_read_fsync", var.map_or_else(|e| name(e.raw_os_error().unwrap_or(0)), |_| "ok".into()));
    report("image_read", std::fs::read("/probe").map_or_else(|e| name(e.raw_os_error().unwrap_or(0)), |b| if b.starts_with(b"\x7fELF") { "ok".into() } else { "garbled".into() }));
    report("tmp_write", std::fs::write("/tmp/x", b"x").map_or_else(|e| name(e.raw_os_error().unwrap_or(0)), |_| "ok".into()));
    report("dev_shm_write", std::fs::write("/dev/shm/x", b"x").map_or_else(|e| name(e.raw_os_error().unwrap_or(0)), |_| "ok".into()));
    report("dev_null_write", std::fs::write("/dev/null", b"x").map_or_else(|e| name(e.raw_os_error().unwrap_or(0)), |_| "ok".into()));
    let mut rnd = [0u8; 16];
    let urandom = std::fs::File::open("/dev/random").and_then(|mut f| f.read_exact(&mut rnd));
    report("dev_random_read", urandom.map_or_else(|e| name(e.raw_os_error().unwrap_or(0)), |_| "ok".into()));
    report("mkfifo", rc(unsafe { libc::mkfifo(n("/tmp/fifo").as_ptr(), 0o600) }.into()));
    // Network inside.
    report("loopback_tcp4", loopback("127.0.0.1:0"));
    report("loopback_tcp6", loopback("[::1]:0"));
    report("socket_unix_dgram", socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0));
    report("socket_udp", socket(libc::AF_INET6, libc::SOCK_DGRAM, libc::IPPROTO_UDP));
    // Processes, threads, time.
    report("threads", std::thread::spawn(|| 21 * 2).join().map_or("panic".to_string(), |v| if v == 42 { "ok".into() } else { "wrong".into() }));
    let child = std::process::Command::new("/probe").args(["exit", "7"]).env_clear().status();
    report("fork_exec", child.map_or_else(|e| name(e.raw_os_error().unwrap_or(0)), |s| format!("exit{}", s.code().unwrap_or(-1))));
    report("getrandom", rc(unsafe { libc::getrandom(rnd.as_mut_ptr().cast(), rnd.len(), 0) } as i64));
    report("timers_epoll", timers_epoll());
}

fn timers_epoll() -> String {
    unsafe {
        let tfd = libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_CLOEXEC);
        let spec = libc::itimerspec { it_interval: std::mem::zeroed(), it_value: libc::timespec { tv_sec: 0, tv_nsec: 1_000_000 } };
        if tfd < 0 || libc::timerfd_settime(tfd, 0, &spec, std::ptr::null_mut()) < 0 {
            return format!("timerfd:{}", name(errno()));
        }
        let ep = libc::epoll_create1(libc::EPOLL_CLOEXEC);
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: 7 };
        if ep < 0 || libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, tfd, &mut ev) < 0 {
            return format!("epoll:{}", name(errno()));
        }
        let mut out = [libc::epoll_event { events: 0, u64: 0 }; 1];
        let n = libc::epoll_wait(ep, out.as_mut_ptr(), 1, 1000);
        let ts = libc::timespec { tv_sec: 0, tv_nsec: 100_000 };
        libc::clock_nanosleep(libc::CLOCK_MONOTONIC, 0, &ts, std::ptr::null_mut());
        if n == 1 && { out[0].u64 } == 7 { "ok".into() } else { format!("epoll_wait={n}") }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("true") => {}
        Some("exit") => std::process::exit(args[2].parse().unwrap()),
        Some("escapes") => escapes(&args[2..]),
        Some("fds") => {
            // List open fds and say hello through fd 3 if there is one.
            let open: Vec<String> = (0..1024).filter(|fd| unsafe { libc::fcntl(*fd, libc::F_GETFD) } >= 0).map(|fd| fd.to_string()).collect();
            println!("open_fds={}", open.join(","));
            let msg = b"hello through fd 3";
            unsafe { libc::write(3, msg.as_ptr().cast(), msg.len()) };
        }
        Some("echo") => {
            // Answer each line on stdin with the same line: the "keeps answering" check.
            for line in std::io::stdin().lock().lines() {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{}", line.unwrap()).unwrap();
                out.flush().unwrap();
            }
        }
        Some("forkbomb") => {
            // Fork sleeping children until the kernel refuses; report how.
            let mut n = 0;
            loop {
                let pid = unsafe { libc::fork() };
                if pid == 0 {
                    unsafe { libc::sleep(60); libc::_exit(0) };
                }
                if pid < 0 {
                    println!("fork={} after {n}", name(errno()));
                    break;
                }
                n += 1;
            }
        }
        Some("memhog") => {
            // Touch memory until the cgroup's limit kills us.
            let mut keep = Vec::new();
            loop {
                let mut v = vec![0u8; 16 << 20];
                for i in (0..v.len()).step_by(4096) {
                    v[i] = 1;
                }
                keep.push(v);
                println!("allocated {} MiB", keep.len() * 16);
            }
        }
        Some("fill-tmp") => {
            let mut f = std::fs::File::create("/tmp/fill").unwrap();
            let chunk = vec![1u8; 1 << 20];
            let mut total = 0usize;
            loop {
                if let Err(e) = f.write_all(&chunk) {
                    println!("write={} after {} MiB", name(e.raw_os_error().unwrap_or(0)), total >> 20);
                    break;
                }
                total += chunk.len();
            }
        }
        other => {
            eprintln!("unknown mode {other:?}");
            std::process::exit(2);
        }
    }
}
