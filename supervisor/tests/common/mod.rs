//! Shared by the sandbox integration tests and the benchmark: building the static probe,
//! making a fresh image holding only it, and running it in a sandbox with captured output.
#![allow(dead_code)]

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use granary_supervisor::{Sandbox, SandboxConfig};

/// These tests need root: fail (not skip) with what to do otherwise.
pub fn require_root() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the sandbox integration tests must run as root (they create cgroups and map a dedicated uid): run them with sudo, e.g. `sudo -E cargo test -p granary-supervisor`"
    );
}

/// Build the probe as a static binary (once per test process) and return its path.
pub fn probe() -> PathBuf {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
            let target_dir = manifest.join("../target/probe");
            let out = Command::new(env!("CARGO"))
                .args(["build", "--locked", "--release", "--quiet", "--target", "x86_64-unknown-linux-gnu", "--manifest-path"])
                .arg(manifest.join("probe/Cargo.toml"))
                .arg("--target-dir")
                .arg(&target_dir)
                .env("RUSTFLAGS", "-C target-feature=+crt-static")
                .env_remove("CARGO_ENCODED_RUSTFLAGS")
                .env_remove("CARGO_TARGET_DIR")
                .output()
                .expect("running cargo to build the sandbox probe");
            assert!(out.status.success(), "building the static probe failed:\n{}", String::from_utf8_lossy(&out.stderr));
            target_dir.join("x86_64-unknown-linux-gnu/release/granary-sandbox-probe")
        })
        .clone()
}

/// A fresh image (the probe at `/probe` plus the mount points) and an empty data directory
/// owned by the sandbox's host uid.
pub struct Grain {
    pub image: tempfile::TempDir,
    pub data: tempfile::TempDir,
}

impl Grain {
    pub fn new() -> Grain {
        let image = tempfile::tempdir().unwrap();
        for d in ["dev", "tmp", "var", "proc"] {
            std::fs::create_dir(image.path().join(d)).unwrap();
        }
        std::fs::copy(probe(), image.path().join("probe")).unwrap();
        std::fs::set_permissions(image.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let data = tempfile::tempdir().unwrap();
        let ids = granary_supervisor::HostIds::default_for_current_user();
        std::os::unix::fs::chown(data.path(), Some(ids.uid), Some(ids.gid)).unwrap();
        Grain { image, data }
    }

    pub fn config(&self, args: &[&str]) -> SandboxConfig {
        let mut argv = vec!["/probe".into()];
        argv.extend(args.iter().map(Into::into));
        SandboxConfig::new(self.image.path(), self.data.path(), argv)
    }
}

pub fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Spawn with stdout going to a pipe; returns the sandbox and the read end.
pub fn spawn_captured(mut cfg: SandboxConfig) -> (Sandbox, std::fs::File) {
    let (r, w) = pipe();
    cfg.stdio[1] = Some(w.as_raw_fd());
    let sb = granary_supervisor::spawn(&cfg).unwrap_or_else(|e| panic!("spawn failed: {e}"));
    drop(w);
    (sb, std::fs::File::from(r))
}

/// Run to completion; return the exit code and stdout.
pub fn run(cfg: SandboxConfig) -> (i32, String) {
    let (mut sb, mut out) = spawn_captured(cfg);
    let mut s = String::new();
    out.read_to_string(&mut s).unwrap();
    (sb.wait().unwrap(), s)
}
