//! The sandbox's mount table, computed in the parent as plain data (so it is unit-tested without
//! root) and replayed in the child by `setup.rs` before `pivot_root`.
//!
//! | Path in the sandbox | What | Flags |
//! |---|---|---|
//! | `/` | the app image, bound onto itself | read-only, nosuid, nodev |
//! | `/var` | the grain's data directory | read-write, nosuid, nodev |
//! | `/tmp` | fresh tmpfs, `size=` the tmp limit | nosuid, nodev |
//! | `/dev` | tiny tmpfs, then remounted read-only | nosuid, noexec |
//! | `/dev/null`, `/dev/zero`, `/dev/urandom` | host nodes bound onto empty files | as the host's `/dev` |
//! | `/dev/random` | host `/dev/urandom` | as above |
//! | `/dev/shm` | fresh tmpfs, `size=` the shm limit | nosuid, nodev |
//! | `/proc` | tiny read-only tmpfs holding only `cpuinfo` (bound from the host, read-only) | nosuid, nodev, noexec |
//! | `/proc` with `dev_proc` | a procfs of the sandbox's own pid namespace (development only) | nosuid, nodev, noexec |
//!
//! The image must contain the four empty mount-point directories `dev`, `tmp`, `var` and `proc`
//! (the packer adds them). Everything else under `/dev` and `/proc` lives on tmpfs created here,
//! so the image needs no device files or `proc/cpuinfo`. There is no `/sys`.
//!
//! Bind mounts keep the flags the kernel locked on the source mount (a less privileged mount
//! namespace may not clear `nosuid`, `nodev`, `noexec`, `ro` or the atime mode), so the remounts
//! OR in the source's flags as measured by `statvfs` ([`locked_flags`]).

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// One filesystem operation of the setup, with paths as the child sees them before pivot_root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsOp {
    /// mount(2) with these arguments.
    Mount { src: Option<CString>, target: CString, fstype: Option<CString>, flags: u64, data: Option<CString> },
    /// mkdir(2) (inside a tmpfs created earlier).
    MkDir { path: CString, mode: u32 },
    /// Create an empty file to bind a host file onto.
    MkFile { path: CString },
}

/// What the mount table is built from.
#[derive(Debug, Clone)]
pub struct MountInputs {
    /// Absolute, canonical path of the app image on the host.
    pub image: PathBuf,
    /// Absolute, canonical path of the grain's data directory on the host.
    pub data: PathBuf,
    /// Flags locked on the image's host mount ([`locked_flags`]).
    pub image_locked: u64,
    /// Flags locked on the data directory's host mount.
    pub data_locked: u64,
    /// Flags locked on the host's `/dev` and `/proc` mounts.
    pub dev_locked: u64,
    pub proc_locked: u64,
    pub tmp_bytes: u64,
    pub shm_bytes: u64,
    /// Mount a procfs for the sandbox's pid namespace at `/proc` (development only).
    pub dev_proc: bool,
    /// A host directory of platform files (the bridge) bound read-only at `/.granary`, with
    /// the flags locked on its host mount.
    pub platform: Option<(PathBuf, u64)>,
}

/// The directories an image must contain to be mounted.
pub const MOUNT_POINTS: [&str; 4] = ["dev", "tmp", "var", "proc"];

/// The flags of the mount holding `path` that a bind of it must keep (`statvfs` f_flag mapped
/// back to `MS_*`).
pub fn locked_flags(path: &Path) -> std::io::Result<u64> {
    let c = cstr(path.as_os_str())?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let pairs = [
        (libc::ST_RDONLY, libc::MS_RDONLY),
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ];
    Ok(pairs.iter().filter(|(st_flag, _)| st.f_flag & st_flag != 0).fold(0, |acc, (_, ms)| acc | ms))
}

fn cstr(s: &OsStr) -> std::io::Result<CString> {
    CString::new(s.as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn c(s: &str) -> CString {
    CString::new(s).expect("literal without NUL")
}

/// The image path joined with an absolute in-sandbox path.
fn under(root: &Path, inner: &str) -> CString {
    let mut bytes = root.as_os_str().as_bytes().to_vec();
    bytes.extend_from_slice(inner.as_bytes());
    CString::new(bytes).expect("checked for NUL by the caller")
}

fn bind(src: CString, target: CString) -> FsOp {
    FsOp::Mount { src: Some(src), target, fstype: None, flags: libc::MS_BIND, data: None }
}

fn remount_bind(target: CString, flags: u64) -> FsOp {
    FsOp::Mount { src: None, target, fstype: None, flags: libc::MS_REMOUNT | libc::MS_BIND | flags, data: None }
}

fn tmpfs(target: CString, flags: u64, data: String) -> FsOp {
    FsOp::Mount { src: Some(c("tmpfs")), target, fstype: Some(c("tmpfs")), flags, data: Some(c(&data)) }
}

/// The mount table in two phases. `host` binds the image and the data directory: their host
/// paths may only be reachable by the parent's uid, so this runs before the setup switches to
/// the sandbox's uid. `sandbox` creates files on fresh tmpfs (which needs a uid mapped in the
/// namespace, so it runs after the switch) and binds world-readable host nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPlan {
    pub host: Vec<FsOp>,
    pub sandbox: Vec<FsOp>,
}

/// The mount table, in order. Fails only if a path contains a NUL byte.
pub fn plan(i: &MountInputs) -> std::io::Result<MountPlan> {
    cstr(i.image.as_os_str())?;
    let data = cstr(i.data.as_os_str())?;
    let r = |p: &str| under(&i.image, p);
    let (nosuid, nodev, noexec, rdonly) = (libc::MS_NOSUID, libc::MS_NODEV, libc::MS_NOEXEC, libc::MS_RDONLY);
    let host = vec![
        // The image becomes a mount of its own (pivot_root needs one), read-only.
        bind(r(""), r("")),
        remount_bind(r(""), i.image_locked | rdonly | nosuid | nodev),
        bind(data, r("/var")),
        remount_bind(r("/var"), i.data_locked | nosuid | nodev),
    ];
    let mut host = host;
    if let Some((dir, locked)) = &i.platform {
        // Platform programs run from here (no noexec), but nothing in it is writable or setuid.
        host.push(bind(cstr(dir.as_os_str())?, r("/.granary")));
        host.push(remount_bind(r("/.granary"), locked | rdonly | nosuid | nodev));
    }
    let mut ops = vec![
        tmpfs(r("/tmp"), nosuid | nodev, format!("size={},nr_inodes=16k,mode=1777", i.tmp_bytes)),
        tmpfs(r("/dev"), nosuid | noexec, "size=64k,nr_inodes=32,mode=755".into()),
    ];
    for name in ["null", "zero", "urandom", "random"] {
        ops.push(FsOp::MkFile { path: r(&format!("/dev/{name}")) });
    }
    ops.push(FsOp::MkDir { path: r("/dev/shm"), mode: 0o755 });
    for (host, inner) in [("null", "null"), ("zero", "zero"), ("urandom", "urandom"), ("urandom", "random")] {
        ops.push(bind(c(&format!("/dev/{host}")), r(&format!("/dev/{inner}"))));
        ops.push(remount_bind(r(&format!("/dev/{inner}")), i.dev_locked | nosuid | noexec));
    }
    ops.push(tmpfs(r("/dev/shm"), nosuid | nodev, format!("size={},nr_inodes=4k,mode=1777", i.shm_bytes)));
    ops.push(remount_bind(r("/dev"), rdonly | nosuid | noexec));
    if i.dev_proc {
        // Mounted before the old root is detached: the kernel refuses a new procfs afterwards.
        let proc_fs = Some(c("proc"));
        ops.push(FsOp::Mount { src: proc_fs.clone(), target: r("/proc"), fstype: proc_fs, flags: nosuid | nodev | noexec, data: None });
    } else {
        ops.push(tmpfs(r("/proc"), nosuid | nodev | noexec, "size=4k,nr_inodes=4,mode=555".into()));
        ops.push(FsOp::MkFile { path: r("/proc/cpuinfo") });
        ops.push(bind(c("/proc/cpuinfo"), r("/proc/cpuinfo")));
        ops.push(remount_bind(r("/proc/cpuinfo"), i.proc_locked | rdonly | nosuid | nodev | noexec));
        ops.push(remount_bind(r("/proc"), rdonly | nosuid | nodev | noexec));
    }
    Ok(MountPlan { host, sandbox: ops })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_platform_directory_is_bound_read_only_when_given() {
        let mut i = inputs(false);
        assert!(!targets(&all(&i)).iter().any(|(t, _)| t.ends_with("/.granary")));
        i.platform = Some(("/srv/granary/bridge".into(), 0));
        let plan = plan(&i).unwrap();
        let ops = targets(&plan.host);
        let ro = ops.iter().find(|(t, f)| t.ends_with("/.granary") && f & libc::MS_REMOUNT != 0).unwrap();
        assert_ne!(ro.1 & libc::MS_RDONLY, 0);
        assert_ne!(ro.1 & libc::MS_NOSUID, 0);
        assert_eq!(ro.1 & libc::MS_NOEXEC, 0, "the bridge must be executable");
    }

    fn inputs(dev_proc: bool) -> MountInputs {
        MountInputs {
            image: "/img".into(),
            data: "/grains/g1".into(),
            image_locked: libc::MS_RELATIME,
            data_locked: libc::MS_RELATIME,
            dev_locked: libc::MS_NOSUID,
            proc_locked: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            tmp_bytes: 1 << 20,
            shm_bytes: 2 << 20,
            dev_proc,
            platform: None,
        }
    }

    fn all(i: &MountInputs) -> Vec<FsOp> {
        let p = plan(i).unwrap();
        assert!(p.host.iter().all(|op| matches!(op, FsOp::Mount { .. })), "nothing is created before the uid switch");
        [p.host, p.sandbox].concat()
    }

    fn targets(ops: &[FsOp]) -> Vec<(String, u64)> {
        ops.iter()
            .filter_map(|op| match op {
                FsOp::Mount { target, flags, .. } => Some((target.to_str().unwrap().to_string(), *flags)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn root_is_bound_then_made_read_only_before_anything_is_mounted_on_it() {
        let ops = all(&inputs(false));
        let t = targets(&ops);
        assert_eq!(t[0], ("/img".into(), libc::MS_BIND));
        assert_eq!(t[1].0, "/img");
        let ro = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;
        assert_eq!(t[1].1 & ro, ro);
        assert_ne!(t[1].1 & libc::MS_RELATIME, 0, "locked atime flag kept");
    }

    #[test]
    fn var_is_writable_but_nosuid_nodev_and_tmp_is_sized() {
        let ops = all(&inputs(false));
        let t = targets(&ops);
        let var: Vec<_> = t.iter().filter(|(p, _)| p == "/img/var").collect();
        assert_eq!(var.len(), 2);
        assert_eq!(var[1].1 & libc::MS_RDONLY, 0);
        assert_eq!(var[1].1 & (libc::MS_NOSUID | libc::MS_NODEV), libc::MS_NOSUID | libc::MS_NODEV);
        let tmp = ops.iter().find(|op| matches!(op, FsOp::Mount { target, .. } if target.to_bytes() == b"/img/tmp")).unwrap();
        let FsOp::Mount { data, fstype, .. } = tmp else { unreachable!() };
        assert_eq!(fstype.as_deref().unwrap().to_bytes(), b"tmpfs");
        assert!(data.as_deref().unwrap().to_str().unwrap().starts_with("size=1048576,"));
    }

    #[test]
    fn dev_holds_four_bound_nodes_and_is_read_only_last() {
        let ops = all(&inputs(false));
        let t = targets(&ops);
        let binds: Vec<_> = ops
            .iter()
            .filter_map(|op| match op {
                FsOp::Mount { src: Some(s), target, flags, .. } if *flags == libc::MS_BIND && s.to_bytes().starts_with(b"/dev/") => {
                    Some((s.to_str().unwrap(), target.to_str().unwrap()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            binds,
            [("/dev/null", "/img/dev/null"), ("/dev/zero", "/img/dev/zero"), ("/dev/urandom", "/img/dev/urandom"), ("/dev/urandom", "/img/dev/random")]
        );
        let dev_ro = t.iter().rposition(|(p, f)| p == "/img/dev" && f & libc::MS_RDONLY != 0).unwrap();
        let shm = t.iter().position(|(p, _)| p == "/img/dev/shm").unwrap();
        assert!(shm < dev_ro, "/dev/shm is mounted before /dev turns read-only");
        assert!(!t.iter().any(|(p, _)| p.contains("/sys")));
    }

    #[test]
    fn proc_is_only_cpuinfo_unless_dev_mode() {
        let ops = all(&inputs(false));
        assert!(!ops.iter().any(|op| matches!(op, FsOp::Mount { fstype: Some(f), .. } if f.to_bytes() == b"proc")));
        assert!(ops.contains(&bind(c("/proc/cpuinfo"), c("/img/proc/cpuinfo"))));
        let dev = all(&inputs(true));
        assert!(dev.iter().any(|op| matches!(op, FsOp::Mount { fstype: Some(f), target, .. } if f.to_bytes() == b"proc" && target.to_bytes() == b"/img/proc")));
        assert!(!dev.contains(&bind(c("/proc/cpuinfo"), c("/img/proc/cpuinfo"))));
    }

    #[test]
    fn locked_flags_match_the_host_mount_table() {
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        let line = mounts.lines().find(|l| l.split(' ').nth(1) == Some("/proc")).expect("/proc mounted");
        let opts: Vec<&str> = line.split(' ').nth(3).unwrap().split(',').collect();
        let f = locked_flags(Path::new("/proc")).unwrap();
        for (opt, flag) in [("ro", libc::MS_RDONLY), ("nosuid", libc::MS_NOSUID), ("nodev", libc::MS_NODEV), ("noexec", libc::MS_NOEXEC), ("relatime", libc::MS_RELATIME)] {
            assert_eq!(opts.contains(&opt), f & flag != 0, "{opt} in {line}");
        }
    }
}
