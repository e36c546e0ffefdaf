//! Starting a sandboxed process: [`spawn`] is what `granary sandbox` and the grain supervisor
//! call. The parent prepares everything (mount table, seccomp BPF, argv, cgroup), makes one
//! `clone()` into new user, mount, pid, network, ipc and uts namespaces, writes the child's id
//! maps, moves it into its cgroup, releases it, and waits until the app is exec'd or the setup
//! reports which step failed. The child's side is in `setup.rs`.
//!
//! uid mapping: the app is uid/gid 1000 inside; outside that is one host id and nothing else is
//! mapped (in particular not 0). When the parent is root the default host id is 65534 (`nobody`),
//! so a process that escaped every namespace would still own nothing on the host; a deployment
//! can give each grain its own unprivileged id with [`HostIds`]. When the parent is not root
//! only its own ids can be mapped, so they are used.

use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::cgroups::{Cgroup, CgroupError, Hierarchy};
use crate::limits::Limits;
use crate::mounts::{self, MountInputs, MOUNT_POINTS};
use crate::seccomp::{self, SeccompError};
use crate::setup::{self, Plan, INSIDE_ID, STEP_EXEC};
use crate::syscalls::{Call, Recorder};

/// The host ids the sandbox's single inside id (1000) maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostIds {
    pub uid: u32,
    pub gid: u32,
}

impl HostIds {
    /// 65534:65534 (`nobody`) when running as root, else the caller's own ids.
    pub fn default_for_current_user() -> HostIds {
        if unsafe { libc::geteuid() } == 0 {
            HostIds { uid: 65534, gid: 65534 }
        } else {
            HostIds { uid: unsafe { libc::geteuid() }, gid: unsafe { libc::getegid() } }
        }
    }
}

/// How many fds beyond stdio [`SandboxConfig::extra_fds`] may hand to the app.
pub const MAX_EXTRA_FDS: usize = 4;

/// How to run one sandboxed program.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The unpacked app image: becomes `/`, read-only. Must contain empty `dev`, `tmp`, `var`
    /// and `proc` directories.
    pub image: PathBuf,
    /// The grain's storage: becomes `/var`, read-write. Must be writable by `host_ids`.
    pub data: PathBuf,
    /// Program and arguments. A program name without `/` is looked up in the image along the
    /// `PATH` of `env` (default `/usr/local/bin:/usr/bin:/bin`).
    pub argv: Vec<OsString>,
    /// The app's entire environment.
    pub env: Vec<(OsString, OsString)>,
    pub limits: Limits,
    pub host_ids: HostIds,
    /// Put the sandbox in its own cgroup (needs write access to the cgroup tree).
    pub cgroup: bool,
    /// Name of the cgroup under `granary/`; default `sandbox-<our pid>-<counter>`.
    pub cgroup_name: Option<String>,
    /// Where the cgroup hierarchies are mounted.
    pub cgroup_root: PathBuf,
    /// fds of ours to install as the app's stdin, stdout, stderr; `None` passes ours through.
    pub stdio: [Option<i32>; 3],
    /// fds of ours to hand to the app as fds 3, 4, … in this order (at most
    /// [`MAX_EXTRA_FDS`]): the supervisor's Cap'n Proto socket and the direct web channel's
    /// listening socket.
    pub extra_fds: Vec<i32>,
    /// Development mode: every seccomp denial is also written to the kernel audit log.
    pub log_denials: bool,
    /// Development mode: mount a procfs of the sandbox's own pid namespace at `/proc`.
    pub dev_proc: bool,
    /// A host directory bound read-only at `/.granary` (the platform's static bridge); the
    /// image must then contain an empty `.granary` directory (`granary pack` adds it).
    pub platform_dir: Option<PathBuf>,
}

impl SandboxConfig {
    /// A configuration with Granary's defaults for everything but what to run.
    pub fn new(image: impl Into<PathBuf>, data: impl Into<PathBuf>, argv: Vec<OsString>) -> SandboxConfig {
        SandboxConfig {
            image: image.into(),
            data: data.into(),
            argv,
            env: Vec::new(),
            limits: Limits::default(),
            host_ids: HostIds::default_for_current_user(),
            cgroup: true,
            cgroup_name: None,
            cgroup_root: "/sys/fs/cgroup".into(),
            stdio: [None; 3],
            extra_fds: Vec::new(),
            log_denials: false,
            dev_proc: false,
            platform_dir: None,
        }
    }
}

/// Why a sandbox could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{0}")]
    Config(String),
    #[error("{what}: {error}")]
    Io { what: String, error: std::io::Error },
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("setting up the sandbox failed at step {step} ({call}): {error}. Granary needs a Linux kernel with user namespaces enabled (sysctl user.max_user_namespaces > 0)")]
    Setup { step: u32, call: String, error: std::io::Error },
    #[error("cannot run {path:?} in the sandbox: {error}. Is it in the image, executable, and (if dynamically linked) are its libraries in the image too?")]
    Exec { path: String, error: std::io::Error },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SandboxError {
    let what = what.into();
    move |error| SandboxError::Io { what, error }
}

fn last_err() -> std::io::Error {
    std::io::Error::last_os_error()
}

/// A running sandbox. Dropping it kills the sandbox if it has not been waited for.
#[derive(Debug)]
pub struct Sandbox {
    pid: i32,
    cgroup: Option<Cgroup>,
    exit: Option<i32>,
}

impl Sandbox {
    /// Host pid of the sandbox's init (pid 1 inside).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The sandbox's cgroup directories, if it has a cgroup.
    pub fn cgroup_dirs(&self) -> &[PathBuf] {
        self.cgroup.as_ref().map_or(&[], |c| c.dirs())
    }

    /// Kill the sandbox: every process in it dies. Returns at once; call [`Sandbox::wait`].
    pub fn kill(&self) -> std::io::Result<()> {
        if self.exit.is_none() && unsafe { libc::kill(self.pid, libc::SIGKILL) } != 0 {
            return Err(last_err());
        }
        Ok(())
    }

    /// Wait until the app exits (with it, the sandbox ends), remove the cgroup, and return the
    /// app's exit code: its status, or 128 + the signal that killed it (137 for the memory
    /// limit's SIGKILL).
    pub fn wait(&mut self) -> Result<i32, SandboxError> {
        if let Some(code) = self.exit {
            return Ok(code);
        }
        let mut status = 0;
        loop {
            if unsafe { libc::waitpid(self.pid, &mut status, 0) } >= 0 {
                break;
            }
            let e = last_err();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(SandboxError::Io { what: format!("waiting for sandbox pid {}", self.pid), error: e });
            }
        }
        let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) };
        self.exit = Some(code);
        if let Some(cg) = self.cgroup.take() {
            cg.remove()?;
        }
        Ok(code)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.kill();
            let _ = self.wait();
        }
    }
}

fn cstring(s: &OsStr, what: &str) -> Result<CString, SandboxError> {
    CString::new(s.as_bytes()).map_err(|_| SandboxError::Config(format!("{what} contains a NUL byte: {s:?}")))
}

/// Find the program in the image: `/abs/path` as is, a bare name along PATH.
fn resolve_program(image: &Path, prog: &OsStr, env: &[(OsString, OsString)]) -> Result<OsString, SandboxError> {
    let bytes = prog.as_bytes();
    if bytes.first() == Some(&b'/') {
        return Ok(prog.to_os_string());
    }
    if bytes.contains(&b'/') {
        return Err(SandboxError::Config(format!("program {prog:?} must be an absolute path inside the image (like /bin/app) or a bare name looked up in PATH")));
    }
    let path = env.iter().find(|(k, _)| k == "PATH").map_or(OsStr::new("/usr/local/bin:/usr/bin:/bin"), |(_, v)| v.as_os_str());
    for dir in path.as_bytes().split(|b| *b == b':').filter(|d| d.first() == Some(&b'/')) {
        let inner = Path::new(OsStr::from_bytes(dir)).join(prog);
        if image.join(inner.strip_prefix("/").expect("absolute")).is_file() {
            return Ok(inner.into_os_string());
        }
    }
    Err(SandboxError::Config(format!("program {prog:?} not found in the image along PATH={path:?}; give its absolute path inside the image")))
}

fn check_dir(p: &Path, what: &str) -> Result<PathBuf, SandboxError> {
    let c = p.canonicalize().map_err(io(format!("{what} {}", p.display())))?;
    if !c.is_dir() {
        return Err(SandboxError::Config(format!("{what} {} is not a directory", p.display())));
    }
    Ok(c)
}

/// The app writes `/var` as its one host uid: a data directory owned by anyone else would
/// mount fine and then fail every write with `EACCES`, so refuse it up front.
fn check_data_owner(data: &Path, ids: HostIds) -> Result<(), SandboxError> {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(data).map_err(io(format!("data directory {}", data.display())))?.uid();
    if owner != ids.uid {
        return Err(SandboxError::Config(format!(
            "data directory {} is owned by uid {owner}, but the app runs as host uid {uid}: chown {uid}:{gid} {}",
            data.display(),
            data.display(),
            uid = ids.uid,
            gid = ids.gid,
        )));
    }
    Ok(())
}

fn build_plan(cfg: &SandboxConfig, image: &Path, data: &Path) -> Result<Plan, SandboxError> {
    let missing: Vec<_> = MOUNT_POINTS.iter().filter(|m| !image.join(m).is_dir()).collect();
    if !missing.is_empty() {
        return Err(SandboxError::Config(format!(
            "image {} lacks the mount-point directories {missing:?}: repack it with `granary pack`, or create them (mkdir {})",
            image.display(),
            missing.iter().map(|m| image.join(m).display().to_string()).collect::<Vec<_>>().join(" ")
        )));
    }
    if cfg.platform_dir.is_some() && !image.join(".granary").is_dir() {
        return Err(SandboxError::Config(format!(
            "image {} has no .granary directory for the platform's bridge: repack the app with this version of `granary pack`",
            image.display()
        )));
    }
    if cfg.extra_fds.len() > MAX_EXTRA_FDS {
        return Err(SandboxError::Config(format!("at most {MAX_EXTRA_FDS} extra fds can be handed to the app, not {}", cfg.extra_fds.len())));
    }
    let prog = cfg.argv.first().ok_or_else(|| SandboxError::Config("no program given to run in the sandbox".into()))?;
    let path = cstring(&resolve_program(image, prog, &cfg.env)?, "program path")?;
    let mut strings = Vec::new();
    for a in &cfg.argv {
        strings.push(cstring(a, "argument")?);
    }
    for (k, v) in &cfg.env {
        if k.is_empty() || k.as_bytes().contains(&b'=') {
            return Err(SandboxError::Config(format!("environment variable name {k:?} must be non-empty and without '='")));
        }
        let mut kv = k.clone();
        kv.push("=");
        kv.push(v);
        strings.push(cstring(&kv, "environment variable")?);
    }
    let ptrs: Vec<*const libc::c_char> = strings.iter().map(|s| s.as_ptr()).collect();
    let (mut argv, mut envp) = (ptrs[..cfg.argv.len()].to_vec(), ptrs[cfg.argv.len()..].to_vec());
    argv.push(std::ptr::null());
    envp.push(std::ptr::null());
    let locked = |p: &Path| mounts::locked_flags(p).map_err(io(format!("statvfs {}", p.display())));
    let fs = mounts::plan(&MountInputs {
        image: image.to_path_buf(),
        data: data.to_path_buf(),
        image_locked: locked(image)?,
        data_locked: locked(data)?,
        dev_locked: locked(Path::new("/dev/null"))?,
        proc_locked: locked(Path::new("/proc"))?,
        tmp_bytes: cfg.limits.tmp_bytes,
        shm_bytes: cfg.limits.shm_bytes,
        dev_proc: cfg.dev_proc,
        platform: match &cfg.platform_dir {
            Some(dir) => Some((dir.canonicalize().map_err(io("platform directory"))?, locked(dir)?)),
            None => None,
        },
    })
    .map_err(io("mount table"))?;
    Ok(Plan {
        root: cstring(image.as_os_str(), "image path")?,
        fs,
        clear_groups: unsafe { libc::geteuid() } == 0,
        sync_fd: -1,
        report_fd: -1,
        stdio: cfg.stdio,
        extra_fds: cfg.extra_fds.clone(),
        nofile: cfg.limits.nofile,
        seccomp: seccomp::app_filter()?,
        seccomp_flags: if cfg.log_denials { libc::SECCOMP_FILTER_FLAG_LOG as u32 } else { 0 },
        path,
        argv,
        envp,
        _strings: strings,
    })
}

/// Name a failed setup step by replaying the sequence against the recorder.
fn describe_step(plan: &Plan, step: u32) -> String {
    let rec = Recorder::new();
    let _ = setup::enter(&rec, plan);
    match rec.calls().get(step as usize) {
        Some(Call::Mount { src, target, fstype, flags, data }) => {
            format!("mount {} on {target} type {} flags {flags:#x} {}", src.as_deref().unwrap_or("-"), fstype.as_deref().unwrap_or("-"), data.as_deref().unwrap_or(""))
        }
        Some(call) => format!("{call:?}"),
        None => "unknown step".into(),
    }
}

fn pipe() -> Result<(i32, i32), SandboxError> {
    let mut fds = [0; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io("creating a pipe")(last_err()));
    }
    Ok((fds[0], fds[1]))
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Start `cfg.argv` in a new sandbox. Returns once the app has been exec'd.
///
/// The sandbox is killed if the *thread* that called `spawn` exits (PR_SET_PDEATHSIG follows
/// the creating thread), so call it from a thread that outlives the sandbox.
pub fn spawn(cfg: &SandboxConfig) -> Result<Sandbox, SandboxError> {
    let image = check_dir(&cfg.image, "image directory")?;
    let data = check_dir(&cfg.data, "data directory")?;
    check_data_owner(&data, cfg.host_ids)?;
    let mut plan = build_plan(cfg, &image, &data)?;
    let cgroup = if cfg.cgroup {
        let h = Hierarchy::detect(&cfg.cgroup_root)?;
        let name = cfg.cgroup_name.clone().unwrap_or_else(|| format!("sandbox-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
        Some(Cgroup::create(&h, &name, &cfg.limits)?)
    } else {
        None
    };
    let (sync_r, sync_w) = pipe()?;
    let (report_r, report_w) = pipe()?;
    plan.sync_fd = sync_r;
    plan.report_fd = report_w;
    let flags = libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWNET | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
    let pid = unsafe { libc::syscall(libc::SYS_clone, (flags | libc::SIGCHLD) as libc::c_ulong, 0, 0, 0, 0) };
    if pid == 0 {
        unsafe { libc::close(sync_w) };
        setup::child_main(&plan);
    }
    let clone_err = last_err();
    unsafe {
        libc::close(sync_r);
        libc::close(report_w);
    }
    let close_parent_ends = || unsafe {
        libc::close(sync_w);
        libc::close(report_r);
    };
    if pid < 0 {
        close_parent_ends();
        if let Some(cg) = cgroup {
            let _ = cg.remove();
        }
        return Err(SandboxError::Setup { step: 0, call: "clone with new user, mount, pid, net, ipc, uts namespaces".into(), error: clone_err });
    }
    let mut sandbox = Sandbox { pid: pid as i32, cgroup, exit: None };
    let release = || -> Result<(), SandboxError> {
        let proc = PathBuf::from(format!("/proc/{pid}"));
        let w = |f: &str, v: String| std::fs::write(proc.join(f), v).map_err(io(format!("writing {}/{f}", proc.display())));
        if unsafe { libc::geteuid() } != 0 {
            w("setgroups", "deny".into())?;
        }
        w("uid_map", format!("{INSIDE_ID} {} 1\n", cfg.host_ids.uid))?;
        w("gid_map", format!("{INSIDE_ID} {} 1\n", cfg.host_ids.gid))?;
        if let Some(cg) = &sandbox.cgroup {
            cg.add(pid as i32)?;
        }
        if unsafe { libc::write(sync_w, [1u8].as_ptr().cast(), 1) } != 1 {
            return Err(io("releasing the sandbox")(last_err()));
        }
        Ok(())
    };
    let released = release();
    unsafe { libc::close(sync_w) };
    if let Err(e) = released {
        unsafe { libc::close(report_r) };
        drop(sandbox); // kills and reaps the child, removes the cgroup
        return Err(e);
    }
    // Read the child's report: EOF means the app was exec'd.
    let mut msg = [0u8; 8];
    let mut got = 0;
    while got < msg.len() {
        let n = unsafe { libc::read(report_r, msg[got..].as_mut_ptr().cast(), msg.len() - got) };
        if n == 0 || (n < 0 && last_err().raw_os_error() != Some(libc::EINTR)) {
            break;
        }
        got += n.max(0) as usize;
    }
    unsafe { libc::close(report_r) };
    if got < msg.len() {
        return Ok(sandbox);
    }
    let step = u32::from_ne_bytes(msg[..4].try_into().expect("4 bytes"));
    let error = std::io::Error::from_raw_os_error(i32::from_ne_bytes(msg[4..].try_into().expect("4 bytes")));
    let _ = sandbox.wait();
    if step == STEP_EXEC {
        return Err(SandboxError::Exec { path: plan.path.to_string_lossy().into_owned(), error });
    }
    Err(SandboxError::Setup { step, call: describe_step(&plan, step), error })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_resolve_along_path_inside_the_image() {
        let img = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(img.path().join("usr/bin")).unwrap();
        std::fs::write(img.path().join("usr/bin/app"), "").unwrap();
        let none = [];
        assert_eq!(resolve_program(img.path(), OsStr::new("app"), &none).unwrap(), "/usr/bin/app");
        assert_eq!(resolve_program(img.path(), OsStr::new("/x/y"), &none).unwrap(), "/x/y");
        assert!(matches!(resolve_program(img.path(), OsStr::new("bin/app"), &none), Err(SandboxError::Config(_))));
        let env = [(OsString::from("PATH"), OsString::from("/opt"))];
        let err = resolve_program(img.path(), OsStr::new("app"), &env).unwrap_err().to_string();
        assert!(err.contains("not found in the image along PATH"), "{err}");
    }

    #[test]
    fn an_image_without_mount_points_is_refused_with_the_fix() {
        let img = tempfile::tempdir().unwrap();
        let cfg = SandboxConfig::new(img.path(), img.path(), vec!["/x".into()]);
        let err = build_plan(&cfg, img.path(), img.path()).err().unwrap().to_string();
        assert!(err.contains("lacks the mount-point directories") && err.contains("mkdir"), "{err}");
    }

    #[test]
    fn environment_is_exactly_the_given_list() {
        let img = tempfile::tempdir().unwrap();
        for m in MOUNT_POINTS {
            std::fs::create_dir(img.path().join(m)).unwrap();
        }
        let mut cfg = SandboxConfig::new(img.path(), img.path(), vec!["/x".into(), "a".into()]);
        cfg.env = vec![("K".into(), "V=1".into())];
        let plan = build_plan(&cfg, img.path(), img.path()).unwrap();
        let strs: Vec<_> = plan._strings.iter().map(|s| s.to_str().unwrap()).collect();
        assert_eq!(strs, ["/x", "a", "K=V=1"]);
        assert_eq!((plan.argv.len(), plan.envp.len()), (3, 2));
        assert!(plan.argv[2].is_null() && plan.envp[1].is_null());
        cfg.env = vec![("A=B".into(), "".into())];
        assert!(matches!(build_plan(&cfg, img.path(), img.path()), Err(SandboxError::Config(_))));
    }
}
