//! `granary sandbox`: run a command exactly as a grain's app runs, for app developers and for
//! checking the sandbox by hand. The work is `granary_supervisor::spawn`, the same function the
//! supervisor calls; this file only turns flags into a `SandboxConfig`.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use granary_supervisor::{seccomp, HostIds, Limits, SandboxConfig};

#[derive(Args)]
pub struct SandboxArgs {
    /// The unpacked app image, mounted read-only as `/` (needs empty dev, tmp, var, proc dirs).
    #[arg(long, value_name = "DIR")]
    image: PathBuf,
    /// The grain's storage, mounted read-write at `/var`; must be writable by the host uid.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// An environment variable for the app (the environment is otherwise empty). Repeatable.
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Memory limit in bytes (suffixes K, M, G allowed). Default 512M.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    memory: Option<u64>,
    /// Maximum number of tasks (processes + threads). Default 256.
    #[arg(long, value_name = "N")]
    pids: Option<u64>,
    /// Relative cpu weight, 1..=10000; 100 is an equal share. Default 100.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=10000))]
    cpu_weight: Option<u64>,
    /// Size of the tmpfs at /tmp in bytes (suffixes K, M, G allowed). Default 64M.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    tmp_size: Option<u64>,
    /// Host uid (and gid) the app's uid 1000 maps to. Default: 65534 as root, else your own.
    #[arg(long, value_name = "UID")]
    host_uid: Option<u32>,
    /// Development mode: log every seccomp denial to the kernel audit log (read it with
    /// `dmesg | grep type=1326`) and mount a /proc for the sandbox's own processes.
    #[arg(long)]
    dev: bool,
    /// The program (absolute path in the image, or a name looked up along PATH) and arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<OsString>,
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&s[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("{s:?} is not a size: use bytes or a number with K, M or G, like 256M"))
}

/// Runs the sandbox and exits with the app's exit code (128 + signal if it was killed).
pub fn run(a: SandboxArgs) -> Result<()> {
    let defaults = Limits::default();
    let mut cfg = SandboxConfig::new(&a.image, &a.data, a.command);
    cfg.limits = Limits {
        memory_bytes: a.memory.unwrap_or(defaults.memory_bytes),
        pids: a.pids.unwrap_or(defaults.pids),
        cpu_weight: a.cpu_weight.unwrap_or(defaults.cpu_weight),
        tmp_bytes: a.tmp_size.unwrap_or(defaults.tmp_bytes),
        ..defaults
    };
    for kv in &a.env {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--env {kv:?} must look like NAME=value");
        };
        cfg.env.push((k.into(), v.into()));
    }
    if let Some(uid) = a.host_uid {
        cfg.host_ids = HostIds { uid, gid: uid };
    }
    if unsafe { libc::geteuid() } != 0 {
        tracing::warn!("not running as root: no cgroup, so --memory, --pids and --cpu-weight are not enforced (run with sudo to enforce them)");
        cfg.cgroup = false;
    }
    cfg.log_denials = a.dev;
    cfg.dev_proc = a.dev;
    let mut sandbox = granary_supervisor::spawn(&cfg).context("starting the sandbox")?;
    // From here on this process only waits and cleans up: hold it to the supervisor's filter.
    seccomp::apply_supervisor_filter().context("restricting granary itself after starting the sandbox")?;
    let code = sandbox.wait().context("waiting for the sandboxed command")?;
    std::process::exit(code)
}
