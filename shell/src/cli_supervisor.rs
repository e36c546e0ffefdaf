//! `granary supervisor` (hidden): one grain's supervisor process. The server starts it by
//! re-executing its own binary, waits for the line `ready` on its stdout, and then talks Cap'n
//! Proto on `--socket`. The work is `granary_supervisor::lifecycle`; this file only turns flags
//! into a `GrainConfig`. Rules: SPEC.md, "Supervisor lifecycle".

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use granary_supervisor::{lifecycle, GrainConfig, HostIds, Limits, SandboxConfig};

#[derive(Args)]
pub struct SupervisorArgs {
    /// The unpacked app image, mounted read-only as `/`.
    #[arg(long, value_name = "DIR")]
    image: PathBuf,
    /// The grain's storage, mounted read-write at `/var`; must be writable by the host uid.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// Directory for the grain log (`log`, `log.1`).
    #[arg(long, value_name = "DIR")]
    log_dir: PathBuf,
    /// Unix socket to serve the `Supervisor` interface on (created with mode 0600).
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
    /// Unix socket for the grain's direct web channel (created with mode 0600): its listening
    /// socket is the app's fd 4, where granary-bridge serves `WebChannel`.
    #[arg(long, value_name = "PATH")]
    web_socket: Option<PathBuf>,
    /// Stop the app and exit after this many seconds without use.
    #[arg(long, value_name = "SECS", default_value_t = 120.0)]
    idle: f64,
    /// Seconds between SIGTERM and SIGKILL when stopping the app.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    stop_grace: f64,
    /// Bound of each of the two log files, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = granary_supervisor::grainlog::DEFAULT_MAX_BYTES)]
    log_max: u64,
    /// The grain's cgroup name under `granary/` (one per grain, e.g. `grain-<id>`), so a
    /// supervisor can clean up after a killed predecessor.
    #[arg(long, value_name = "NAME")]
    cgroup_name: Option<String>,
    /// An environment variable for the app. Repeatable.
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Memory limit in bytes. Default 512 MiB.
    #[arg(long, value_name = "BYTES")]
    memory: Option<u64>,
    /// Maximum number of tasks. Default 256.
    #[arg(long, value_name = "N")]
    pids: Option<u64>,
    /// Host uid (and gid) the app's uid 1000 maps to. Default: 65534 as root, else your own.
    #[arg(long, value_name = "UID")]
    host_uid: Option<u32>,
    /// A host directory bound read-only at `/.granary` in the grain (the platform's bridge).
    #[arg(long, value_name = "DIR")]
    platform_dir: Option<PathBuf>,
    /// The app's program (absolute path in the image, or a name along PATH) and arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<OsString>,
}

fn seconds(flag: &str, s: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(s).with_context(|| format!("--{flag} {s} is not a number of seconds ≥ 0"))
}

/// Serve until the grain is idle, shut down, or sent SIGTERM, SIGINT or SIGHUP.
pub fn run(a: SupervisorArgs) -> Result<()> {
    let mut sandbox = SandboxConfig::new(&a.image, &a.data, a.command);
    let defaults = Limits::default();
    sandbox.limits = Limits { memory_bytes: a.memory.unwrap_or(defaults.memory_bytes), pids: a.pids.unwrap_or(defaults.pids), ..defaults };
    for kv in &a.env {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--env {kv:?} must look like NAME=value");
        };
        sandbox.env.push((k.into(), v.into()));
    }
    if let Some(uid) = a.host_uid {
        sandbox.host_ids = HostIds { uid, gid: uid };
    }
    if unsafe { libc::geteuid() } != 0 {
        tracing::warn!("not running as root: no cgroup, so the memory and task limits are not enforced (run the server as root to enforce them)");
        sandbox.cgroup = false;
    }
    sandbox.cgroup_name = a.cgroup_name;
    sandbox.platform_dir = a.platform_dir;
    let mut cfg = GrainConfig::new(sandbox, &a.socket, &a.log_dir);
    cfg.web_socket = a.web_socket;
    cfg.idle = seconds("idle", a.idle)?;
    cfg.stop_grace = seconds("stop-grace", a.stop_grace)?;
    cfg.log_max_bytes = a.log_max;
    // Ctrl-C in the server's terminal and `systemctl stop` signal every process of the server:
    // stop the app with its grace period rather than die and take it down with SIGKILL.
    cfg.stop_on_signals = true;
    let listening = lifecycle::bind(cfg).context("starting the grain supervisor")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready").and_then(|()| out.flush()).context("telling the server the supervisor is ready (stdout)")?;
    drop(out);
    let stopped = listening.run().context("running the grain supervisor")?;
    tracing::info!(?stopped, socket = %a.socket.display(), "grain supervisor stopped");
    Ok(())
}
