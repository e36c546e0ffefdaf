//! The system calls the sandbox setup makes, behind a trait (the model is youki's
//! `libcontainer::syscall`): the setup sequence in `setup.rs` is written against [`Sys`], so unit
//! tests run it against [`Recorder`] without root and assert the order and flags of every call,
//! and the parent uses the same recorder to name the step that failed in a real sandbox.
//!
//! [`RealSys`] runs in a child cloned from a possibly multi-threaded parent, where the memory
//! allocator's locks may be held by threads that do not exist in the child. So it never
//! allocates, and it calls the kernel directly (`syscall(2)`) where glibc's wrapper would touch
//! its thread list (the set*id family) or its fork handlers.

use std::cell::RefCell;
use std::ffi::CStr;

/// A raw `errno` value.
pub type Errno = i32;

/// The calls the sandbox setup makes, in the order it makes them.
pub trait Sys {
    /// mount(2).
    fn mount(
        &self,
        src: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: u64,
        data: Option<&CStr>,
    ) -> Result<(), Errno>;
    /// umount2(2).
    fn umount2(&self, target: &CStr, flags: i32) -> Result<(), Errno>;
    /// pivot_root(2).
    fn pivot_root(&self, new_root: &CStr, put_old: &CStr) -> Result<(), Errno>;
    /// chdir(2).
    fn chdir(&self, path: &CStr) -> Result<(), Errno>;
    /// mkdir(2).
    fn mkdir(&self, path: &CStr, mode: u32) -> Result<(), Errno>;
    /// Create an empty regular file (a mount point for a bound file).
    fn create_file(&self, path: &CStr) -> Result<(), Errno>;
    /// unshare(2).
    fn unshare(&self, flags: i32) -> Result<(), Errno>;
    /// sethostname(2).
    fn sethostname(&self, name: &CStr) -> Result<(), Errno>;
    /// setdomainname(2).
    fn setdomainname(&self, name: &CStr) -> Result<(), Errno>;
    /// Bring the network namespace's `lo` up (SIOCSIFFLAGS); the kernel then gives it
    /// 127.0.0.1/8 and ::1.
    fn loopback_up(&self) -> Result<(), Errno>;
    /// setgroups(0, NULL): drop every supplementary group.
    fn clear_groups(&self) -> Result<(), Errno>;
    /// setresgid(gid, gid, gid).
    fn setresgid(&self, gid: u32) -> Result<(), Errno>;
    /// setresuid(uid, uid, uid).
    fn setresuid(&self, uid: u32) -> Result<(), Errno>;
    /// Empty the bounding set (needs CAP_SETPCAP, so before the others), clear the ambient set,
    /// then capset(2) effective, permitted and inheritable to zero.
    fn drop_capabilities(&self) -> Result<(), Errno>;
    /// prctl(PR_SET_NO_NEW_PRIVS, 1).
    fn set_no_new_privs(&self) -> Result<(), Errno>;
    /// prctl(PR_SET_PDEATHSIG, sig).
    fn set_parent_death_signal(&self, sig: i32) -> Result<(), Errno>;
    /// Block until the parent writes one byte on `fd` (it has written the id maps and placed us
    /// in our cgroup); `ECHILD` if it closed the pipe instead (it failed or died).
    fn wait_for_parent(&self, fd: i32) -> Result<(), Errno>;
    /// umask(2).
    fn umask(&self, mask: u32);
    /// setrlimit(2).
    fn setrlimit(&self, resource: u32, soft: u64, hard: u64) -> Result<(), Errno>;
    /// setsid(2).
    fn setsid(&self) -> Result<(), Errno>;
    /// Install `stdio` as fds 0, 1, 2 (`None`: keep ours), `extra` as fds 3, 4, … (at most
    /// [`crate::sandbox::MAX_EXTRA_FDS`]), then `report` at the next number with close-on-exec; close everything else. Returns the new
    /// number of `report`.
    fn arrange_fds(&self, stdio: [Option<i32>; 3], extra: &[i32], report: i32) -> Result<i32, Errno>;
    /// seccomp(SECCOMP_SET_MODE_FILTER, flags, prog).
    fn load_seccomp(&self, prog: &[libc::sock_filter], flags: u32) -> Result<(), Errno>;
}

fn errno() -> Errno {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

fn check(rc: libc::c_long) -> Result<(), Errno> {
    if rc < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

fn opt_ptr(s: Option<&CStr>) -> *const libc::c_char {
    s.map_or(std::ptr::null(), CStr::as_ptr)
}

/// The real kernel. Allocation-free; see the module comment.
pub struct RealSys;

impl Sys for RealSys {
    fn mount(
        &self,
        src: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: u64,
        data: Option<&CStr>,
    ) -> Result<(), Errno> {
        let rc = unsafe {
            libc::mount(
                opt_ptr(src),
                target.as_ptr(),
                opt_ptr(fstype),
                flags,
                opt_ptr(data).cast(),
            )
        };
        check(rc.into())
    }
    fn umount2(&self, target: &CStr, flags: i32) -> Result<(), Errno> {
        check(unsafe { libc::umount2(target.as_ptr(), flags) }.into())
    }
    fn pivot_root(&self, new_root: &CStr, put_old: &CStr) -> Result<(), Errno> {
        check(unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) })
    }
    fn chdir(&self, path: &CStr) -> Result<(), Errno> {
        check(unsafe { libc::chdir(path.as_ptr()) }.into())
    }
    fn mkdir(&self, path: &CStr, mode: u32) -> Result<(), Errno> {
        check(unsafe { libc::mkdir(path.as_ptr(), mode) }.into())
    }
    fn create_file(&self, path: &CStr) -> Result<(), Errno> {
        let flags = libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC;
        let fd = unsafe { libc::open(path.as_ptr(), flags, 0o444) };
        check(fd.into())?;
        unsafe { libc::close(fd) };
        Ok(())
    }
    fn unshare(&self, flags: i32) -> Result<(), Errno> {
        check(unsafe { libc::unshare(flags) }.into())
    }
    fn sethostname(&self, name: &CStr) -> Result<(), Errno> {
        check(unsafe { libc::sethostname(name.as_ptr(), name.to_bytes().len()) }.into())
    }
    fn setdomainname(&self, name: &CStr) -> Result<(), Errno> {
        check(unsafe { libc::setdomainname(name.as_ptr(), name.to_bytes().len()) }.into())
    }
    fn loopback_up(&self) -> Result<(), Errno> {
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        check(fd.into())?;
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        let mut rc = unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr) };
        if rc == 0 {
            unsafe {
                ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
                rc = libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr);
            }
        }
        let result = check(rc.into());
        unsafe { libc::close(fd) };
        result
    }
    fn clear_groups(&self) -> Result<(), Errno> {
        check(unsafe { libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) })
    }
    fn setresgid(&self, gid: u32) -> Result<(), Errno> {
        check(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) })
    }
    fn setresuid(&self, uid: u32) -> Result<(), Errno> {
        check(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) })
    }
    fn drop_capabilities(&self) -> Result<(), Errno> {
        for cap in 0..64 {
            let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
            if rc < 0 {
                match errno() {
                    libc::EINVAL => break, // past the kernel's last capability
                    e => return Err(e),
                }
            }
        }
        let rc = unsafe {
            libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
        };
        check(rc.into())?;
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let header = Header { version: 0x2008_0522, pid: 0 }; // _LINUX_CAPABILITY_VERSION_3
        let data = [Data { effective: 0, permitted: 0, inheritable: 0 }; 2];
        check(unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) })
    }
    fn set_no_new_privs(&self) -> Result<(), Errno> {
        check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }.into())
    }
    fn set_parent_death_signal(&self, sig: i32) -> Result<(), Errno> {
        check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig, 0, 0, 0) }.into())
    }
    fn wait_for_parent(&self, fd: i32) -> Result<(), Errno> {
        let mut byte = 0u8;
        loop {
            match unsafe { libc::read(fd, (&mut byte as *mut u8).cast(), 1) } {
                1 => break,
                0 => return Err(libc::ECHILD),
                _ if errno() == libc::EINTR => continue,
                _ => return Err(errno()),
            }
        }
        unsafe { libc::close(fd) };
        Ok(())
    }
    fn umask(&self, mask: u32) {
        unsafe { libc::umask(mask) };
    }
    fn setrlimit(&self, resource: u32, soft: u64, hard: u64) -> Result<(), Errno> {
        let lim = libc::rlimit { rlim_cur: soft, rlim_max: hard };
        check(unsafe { libc::setrlimit(resource, &lim) }.into())
    }
    fn setsid(&self) -> Result<(), Errno> {
        check(unsafe { libc::setsid() }.into())
    }
    fn arrange_fds(&self, stdio: [Option<i32>; 3], extra: &[i32], report: i32) -> Result<i32, Errno> {
        // First copy every fd we keep above any number we are about to overwrite, so none
        // clobbers another, then put them in place; close_range then closes the copies and
        // everything else.
        let high = |fd: i32| -> Result<i32, Errno> {
            let h = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 16) };
            check(h.into()).map(|_| h)
        };
        let high_report = high(report)?;
        let mut high_stdio = [None; 3];
        for (slot, fd) in high_stdio.iter_mut().zip(stdio) {
            if let Some(fd) = fd {
                *slot = Some(high(fd)?);
            }
        }
        // No allocation after clone: the copies go in a fixed array.
        if extra.len() > crate::sandbox::MAX_EXTRA_FDS {
            return Err(libc::EINVAL);
        }
        let mut high_extra = [-1; crate::sandbox::MAX_EXTRA_FDS];
        for (slot, fd) in high_extra.iter_mut().zip(extra) {
            *slot = high(*fd)?;
        }
        for (target, fd) in high_stdio.iter().enumerate() {
            if let Some(fd) = fd {
                check(unsafe { libc::dup2(*fd, target as i32) }.into())?; // clears close-on-exec
            }
        }
        let mut next = 3;
        for fd in &high_extra[..extra.len()] {
            check(unsafe { libc::dup2(*fd, next) }.into())?; // clears close-on-exec
            next += 1;
        }
        check(unsafe { libc::dup3(high_report, next, libc::O_CLOEXEC) }.into())?;
        check(unsafe { libc::syscall(libc::SYS_close_range, next + 1, u32::MAX, 0) })?;
        Ok(next)
    }
    fn load_seccomp(&self, prog: &[libc::sock_filter], flags: u32) -> Result<(), Errno> {
        let fprog = libc::sock_fprog {
            len: prog.len() as libc::c_ushort,
            filter: prog.as_ptr() as *mut libc::sock_filter,
        };
        check(unsafe {
            libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, flags, &fprog)
        })
    }
}

/// One call made through [`Recorder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Mount { src: Option<String>, target: String, fstype: Option<String>, flags: u64, data: Option<String> },
    Umount2 { target: String, flags: i32 },
    PivotRoot { new_root: String, put_old: String },
    Chdir(String),
    Mkdir { path: String, mode: u32 },
    CreateFile(String),
    Unshare(i32),
    Sethostname(String),
    Setdomainname(String),
    LoopbackUp,
    ClearGroups,
    Setresgid(u32),
    Setresuid(u32),
    DropCapabilities,
    SetNoNewPrivs,
    SetParentDeathSignal(i32),
    WaitForParent(i32),
    Umask(u32),
    Setrlimit { resource: u32, soft: u64, hard: u64 },
    Setsid,
    ArrangeFds { stdio: [Option<i32>; 3], extra: Vec<i32>, report: i32 },
    LoadSeccomp { instructions: usize, flags: u32 },
}

/// A fake kernel that records every call and can be told to fail one of them.
#[derive(Default)]
pub struct Recorder {
    calls: RefCell<Vec<Call>>,
    fail: Option<(usize, Errno)>,
}

impl Recorder {
    /// A recorder on which every call succeeds.
    pub fn new() -> Self {
        Self::default()
    }
    /// A recorder on which call number `index` (0-based) fails with `errno`.
    pub fn failing_at(index: usize, errno: Errno) -> Self {
        Recorder { calls: RefCell::new(Vec::new()), fail: Some((index, errno)) }
    }
    /// The calls made so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }
    fn push(&self, call: Call) -> Result<(), Errno> {
        let mut calls = self.calls.borrow_mut();
        calls.push(call);
        match self.fail {
            Some((i, e)) if i + 1 == calls.len() => Err(e),
            _ => Ok(()),
        }
    }
}

fn s(c: &CStr) -> String {
    c.to_string_lossy().into_owned()
}

impl Sys for Recorder {
    fn mount(
        &self,
        src: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: u64,
        data: Option<&CStr>,
    ) -> Result<(), Errno> {
        self.push(Call::Mount {
            src: src.map(s),
            target: s(target),
            fstype: fstype.map(s),
            flags,
            data: data.map(s),
        })
    }
    fn umount2(&self, target: &CStr, flags: i32) -> Result<(), Errno> {
        self.push(Call::Umount2 { target: s(target), flags })
    }
    fn pivot_root(&self, new_root: &CStr, put_old: &CStr) -> Result<(), Errno> {
        self.push(Call::PivotRoot { new_root: s(new_root), put_old: s(put_old) })
    }
    fn chdir(&self, path: &CStr) -> Result<(), Errno> {
        self.push(Call::Chdir(s(path)))
    }
    fn mkdir(&self, path: &CStr, mode: u32) -> Result<(), Errno> {
        self.push(Call::Mkdir { path: s(path), mode })
    }
    fn create_file(&self, path: &CStr) -> Result<(), Errno> {
        self.push(Call::CreateFile(s(path)))
    }
    fn unshare(&self, flags: i32) -> Result<(), Errno> {
        self.push(Call::Unshare(flags))
    }
    fn sethostname(&self, name: &CStr) -> Result<(), Errno> {
        self.push(Call::Sethostname(s(name)))
    }
    fn setdomainname(&self, name: &CStr) -> Result<(), Errno> {
        self.push(Call::Setdomainname(s(name)))
    }
    fn loopback_up(&self) -> Result<(), Errno> {
        self.push(Call::LoopbackUp)
    }
    fn clear_groups(&self) -> Result<(), Errno> {
        self.push(Call::ClearGroups)
    }
    fn setresgid(&self, gid: u32) -> Result<(), Errno> {
        self.push(Call::Setresgid(gid))
    }
    fn setresuid(&self, uid: u32) -> Result<(), Errno> {
        self.push(Call::Setresuid(uid))
    }
    fn drop_capabilities(&self) -> Result<(), Errno> {
        self.push(Call::DropCapabilities)
    }
    fn set_no_new_privs(&self) -> Result<(), Errno> {
        self.push(Call::SetNoNewPrivs)
    }
    fn set_parent_death_signal(&self, sig: i32) -> Result<(), Errno> {
        self.push(Call::SetParentDeathSignal(sig))
    }
    fn wait_for_parent(&self, fd: i32) -> Result<(), Errno> {
        self.push(Call::WaitForParent(fd))
    }
    fn umask(&self, mask: u32) {
        let _ = self.push(Call::Umask(mask));
    }
    fn setrlimit(&self, resource: u32, soft: u64, hard: u64) -> Result<(), Errno> {
        self.push(Call::Setrlimit { resource, soft, hard })
    }
    fn setsid(&self) -> Result<(), Errno> {
        self.push(Call::Setsid)
    }
    fn arrange_fds(&self, stdio: [Option<i32>; 3], extra: &[i32], report: i32) -> Result<i32, Errno> {
        self.push(Call::ArrangeFds { stdio, extra: extra.to_vec(), report })?;
        Ok(3 + extra.len() as i32)
    }
    fn load_seccomp(&self, prog: &[libc::sock_filter], flags: u32) -> Result<(), Errno> {
        self.push(Call::LoadSeccomp { instructions: prog.len(), flags })
    }
}
