//! Resource limits for one sandbox, with the defaults Granary uses, and the storage meter.
//!
//! Defaults (documented in SPEC.md): 512 MiB memory (swap included where the kernel accounts
//! it), 256 tasks, cpu weight 100 (the cgroup v2 default: an equal share), 64 MiB `/tmp`,
//! 16 MiB `/dev/shm`, `RLIMIT_NOFILE` 1024 soft / 4096 hard, no core dumps.

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Limits applied to one sandbox. Memory, tasks and cpu go to the sandbox's cgroup; the tmpfs
/// sizes are mount options; the rlimits are set in the sandbox before the app starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Memory the whole sandbox may use, in bytes (page cache and tmpfs pages included).
    pub memory_bytes: u64,
    /// Tasks (processes and threads) the sandbox may have at once.
    pub pids: u64,
    /// Relative cpu share, 1..=10000, 100 being the default everyone else gets.
    pub cpu_weight: u64,
    /// Size of the fresh tmpfs at `/tmp`, in bytes.
    pub tmp_bytes: u64,
    /// Size of the fresh tmpfs at `/dev/shm`, in bytes.
    pub shm_bytes: u64,
    /// `RLIMIT_NOFILE` (soft, hard).
    pub nofile: (u64, u64),
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 512 << 20,
            pids: 256,
            cpu_weight: 100,
            tmp_bytes: 64 << 20,
            shm_bytes: 16 << 20,
            nofile: (1024, 4096),
        }
    }
}

impl Limits {
    /// cgroup v1 `cpu.shares` for this weight: v1's default 1024 corresponds to v2's 100.
    pub fn cpu_shares_v1(&self) -> u64 {
        (self.cpu_weight.clamp(1, 10_000) * 1024 / 100).max(2)
    }
}

/// Bytes of disk allocated to everything under `dir` (st_blocks × 512, the figure `du` shows),
/// not following symlinks, not crossing into other filesystems, counting hard-linked files once.
/// This is what a grain's storage report and quota use; it walks the tree, so call it when a
/// grain stops or occasionally, not on every write.
pub fn disk_usage(dir: &Path) -> io::Result<u64> {
    let top = std::fs::symlink_metadata(dir)?;
    let mut seen = HashSet::new();
    let mut total = top.blocks() * 512;
    let mut stack = vec![dir.to_path_buf()];
    if !top.is_dir() {
        return Ok(total);
    }
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let md = match entry.metadata() {
                Ok(md) => md,
                // Removed while we walk: it no longer takes space.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if md.dev() != top.dev() {
                continue;
            }
            if md.nlink() > 1 && !md.is_dir() && !seen.insert((md.dev(), md.ino())) {
                continue;
            }
            total += md.blocks() * 512;
            if md.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_weight_maps_to_v1_shares() {
        let mut l = Limits::default();
        assert_eq!(l.cpu_shares_v1(), 1024);
        l.cpu_weight = 200;
        assert_eq!(l.cpu_shares_v1(), 2048);
        l.cpu_weight = 1;
        assert_eq!(l.cpu_shares_v1(), 10);
    }

    #[test]
    fn disk_usage_counts_allocated_blocks_and_hard_links_once() {
        let dir = tempfile::tempdir().unwrap();
        let empty = disk_usage(dir.path()).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a"), vec![7u8; 1 << 20]).unwrap();
        let with_file = disk_usage(dir.path()).unwrap();
        assert!(with_file >= empty + (1 << 20), "{with_file} < {empty} + 1 MiB");
        std::fs::hard_link(dir.path().join("sub/a"), dir.path().join("b")).unwrap();
        assert_eq!(disk_usage(dir.path()).unwrap(), with_file);
        // A sparse file takes almost no space, whatever its length.
        let f = std::fs::File::create(dir.path().join("sparse")).unwrap();
        f.set_len(1 << 30).unwrap();
        assert!(disk_usage(dir.path()).unwrap() < with_file + (64 << 10));
    }
}
