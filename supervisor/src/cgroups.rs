//! One cgroup per sandbox, limiting memory, tasks and cpu share. Works with cgroup v2 (one
//! unified hierarchy, the default on current distributions) and v1 (a hierarchy per controller,
//! e.g. Debian hosts booted with `systemd.unified_cgroup_hierarchy=0`), detected at runtime.
//!
//! Layout: `<root>/granary/<name>` under each hierarchy used. The parent writes the limits
//! before the sandbox starts and moves the sandbox's init into it before the app is exec'd, so
//! every process of the app is accounted from its first instruction.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::limits::Limits;

/// The cgroup hierarchy layout of this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// Unified hierarchy mounted at this path.
    V2(PathBuf),
    /// One mount per controller: memory, pids, cpu.
    V1 { memory: PathBuf, pids: PathBuf, cpu: PathBuf },
}

/// Errors managing a sandbox's cgroup.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no usable cgroup hierarchy under {0}: mount cgroup2 there (or cgroup v1 memory, pids and cpu controllers)")]
    NotFound(PathBuf),
    #[error("{action} {path}: {error}. The supervisor needs write access to the cgroup tree: run Granary as root, or delegate a cgroup to its user")]
    Io { action: &'static str, path: PathBuf, error: io::Error },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CgroupError + 'a {
    move |error| CgroupError::Io { action, path: path.to_path_buf(), error }
}

impl Hierarchy {
    /// Detect the layout under `root` (normally `/sys/fs/cgroup`).
    pub fn detect(root: &Path) -> Result<Hierarchy, CgroupError> {
        if root.join("cgroup.controllers").exists() {
            return Ok(Hierarchy::V2(root.to_path_buf()));
        }
        let (memory, pids, cpu) = (root.join("memory"), root.join("pids"), root.join("cpu"));
        if memory.join("memory.limit_in_bytes").exists() && pids.join("cgroup.procs").exists() && cpu.join("cpu.shares").exists() {
            return Ok(Hierarchy::V1 { memory, pids, cpu });
        }
        Err(CgroupError::NotFound(root.to_path_buf()))
    }
}

/// A sandbox's cgroup. Dropping it does not remove it: call [`Cgroup::remove`] once the
/// sandbox has exited.
#[derive(Debug)]
pub struct Cgroup {
    /// The directories making up this cgroup (one for v2, one per controller for v1).
    dirs: Vec<PathBuf>,
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(io_err("writing", path))
}

fn create(dir: &Path) -> Result<(), CgroupError> {
    match fs::create_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            Err(CgroupError::Io { action: "creating (already exists: is a sandbox with this name running?)", path: dir.to_path_buf(), error: e })
        }
        r => r.map_err(io_err("creating", dir)),
    }
}

impl Cgroup {
    /// Create `granary/<name>` and write `limits` into it.
    pub fn create(h: &Hierarchy, name: &str, limits: &Limits) -> Result<Cgroup, CgroupError> {
        match h {
            Hierarchy::V2(root) => {
                let parent = root.join("granary");
                fs::create_dir_all(&parent).map_err(io_err("creating", &parent))?;
                // Controllers must be enabled on every level above the leaf.
                for dir in [root.as_path(), parent.as_path()] {
                    let ctl = dir.join("cgroup.subtree_control");
                    write(&ctl, "+memory +pids +cpu")?;
                }
                let dir = parent.join(name);
                create(&dir)?;
                let cg = Cgroup { dirs: vec![dir.clone()] };
                write(&dir.join("memory.max"), &limits.memory_bytes.to_string())?;
                if dir.join("memory.swap.max").exists() {
                    write(&dir.join("memory.swap.max"), "0")?;
                }
                write(&dir.join("memory.oom.group"), "1")?;
                write(&dir.join("pids.max"), &limits.pids.to_string())?;
                write(&dir.join("cpu.weight"), &limits.cpu_weight.clamp(1, 10_000).to_string())?;
                Ok(cg)
            }
            Hierarchy::V1 { memory, pids, cpu } => {
                let mut cg = Cgroup { dirs: Vec::new() };
                let mut make = |ctl_root: &Path| -> Result<PathBuf, CgroupError> {
                    let dir = ctl_root.join("granary").join(name);
                    fs::create_dir_all(ctl_root.join("granary")).map_err(io_err("creating", ctl_root))?;
                    create(&dir)?;
                    cg.dirs.push(dir.clone());
                    Ok(dir)
                };
                let (m, p, c) = (make(memory)?, make(pids)?, make(cpu)?);
                write(&m.join("memory.limit_in_bytes"), &limits.memory_bytes.to_string())?;
                let memsw = m.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    write(&memsw, &limits.memory_bytes.to_string())?;
                }
                write(&p.join("pids.max"), &limits.pids.to_string())?;
                write(&c.join("cpu.shares"), &limits.cpu_shares_v1().to_string())?;
                Ok(cg)
            }
        }
    }

    /// The cgroup `granary/<name>` if a directory of it exists: left behind by a supervisor
    /// that was killed before it could remove it. [`Cgroup::remove`] then kills any survivor
    /// and removes it.
    pub fn existing(h: &Hierarchy, name: &str) -> Option<Cgroup> {
        let dirs: Vec<PathBuf> = match h {
            Hierarchy::V2(root) => vec![root.join("granary").join(name)],
            Hierarchy::V1 { memory, pids, cpu } => [memory, pids, cpu].iter().map(|c| c.join("granary").join(name)).collect(),
        };
        let dirs: Vec<PathBuf> = dirs.into_iter().filter(|d| d.is_dir()).collect();
        (!dirs.is_empty()).then_some(Cgroup { dirs })
    }

    /// Move process `pid` (and, from then on, its children) into this cgroup.
    pub fn add(&self, pid: i32) -> Result<(), CgroupError> {
        for dir in &self.dirs {
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// The directories of this cgroup (v2: one; v1: memory, pids, cpu).
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Kill whatever is left inside and remove the cgroup. Processes of an exited pid namespace
    /// may take a moment to be released, so this retries briefly.
    pub fn remove(self) -> Result<(), CgroupError> {
        for dir in &self.dirs {
            let mut tries = 0;
            loop {
                match fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 200 => {
                        tries += 1;
                        if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
                            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                                unsafe { libc::kill(pid, libc::SIGKILL) };
                            }
                        }
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    Err(e) => return Err(CgroupError::Io { action: "removing", path: dir.clone(), error: e }),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_v2_and_v1_layouts_and_refuses_neither() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(Hierarchy::detect(d.path()), Err(CgroupError::NotFound(_))));
        for (dir, file) in [("memory", "memory.limit_in_bytes"), ("pids", "cgroup.procs"), ("cpu", "cpu.shares")] {
            fs::create_dir(d.path().join(dir)).unwrap();
            fs::write(d.path().join(dir).join(file), "").unwrap();
        }
        assert!(matches!(Hierarchy::detect(d.path()).unwrap(), Hierarchy::V1 { .. }));
        fs::write(d.path().join("cgroup.controllers"), "memory pids cpu").unwrap();
        assert_eq!(Hierarchy::detect(d.path()).unwrap(), Hierarchy::V2(d.path().to_path_buf()));
    }

    #[test]
    fn v1_limits_are_written_per_controller() {
        // A fake v1 tree: plain directories accept the same writes a cgroupfs would.
        let d = tempfile::tempdir().unwrap();
        let h = Hierarchy::V1 { memory: d.path().join("memory"), pids: d.path().join("pids"), cpu: d.path().join("cpu") };
        let limits = Limits { memory_bytes: 1 << 20, pids: 7, cpu_weight: 50, ..Limits::default() };
        let cg = Cgroup::create(&h, "g1", &limits).unwrap();
        let read = |p: &str| fs::read_to_string(d.path().join(p)).unwrap();
        assert_eq!(read("memory/granary/g1/memory.limit_in_bytes"), "1048576");
        assert_eq!(read("pids/granary/g1/pids.max"), "7");
        assert_eq!(read("cpu/granary/g1/cpu.shares"), "512");
        assert!(matches!(Cgroup::create(&h, "g1", &limits), Err(CgroupError::Io { .. })), "a live name is not reused");
        cg.add(42).unwrap();
        assert_eq!(read("pids/granary/g1/cgroup.procs"), "42");
        assert_eq!(Cgroup::existing(&h, "g1").unwrap().dirs(), cg.dirs());
        assert!(Cgroup::existing(&h, "g2").is_none());
    }
}
