//! Containment: a sandbox that misbehaves hits its own limits (tasks, memory, /tmp size) while
//! the host and a second sandbox started alongside keep working. Also the process plumbing the
//! supervisor relies on: exit codes, fd 3, the sandbox dying with its parent thread, cgroup
//! removal, and errors that say what went wrong.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;

use common::*;
use granary_supervisor::{Sandbox, SandboxError};

/// A sandbox running the probe's echo loop, and its stdin/stdout.
struct Neighbour {
    sandbox: Sandbox,
    input: std::fs::File,
    output: BufReader<std::fs::File>,
    _grain: Grain,
}

impl Neighbour {
    fn start() -> Neighbour {
        let grain = Grain::new();
        let mut cfg = grain.config(&["echo"]);
        let (in_r, in_w) = pipe();
        let (out_r, out_w) = pipe();
        cfg.stdio = [Some(in_r.as_raw_fd()), Some(out_w.as_raw_fd()), None];
        let sandbox = granary_supervisor::spawn(&cfg).unwrap();
        let mut n = Neighbour { sandbox, input: in_w.into(), output: BufReader::new(out_r.into()), _grain: grain };
        n.assert_answers("ready?");
        n
    }

    fn assert_answers(&mut self, line: &str) {
        writeln!(self.input, "{line}").unwrap();
        let mut got = String::new();
        self.output.read_line(&mut got).unwrap();
        assert_eq!(got.trim_end(), line, "the neighbouring sandbox stopped answering");
    }

    fn finish(mut self) {
        self.assert_answers("still there");
        drop(self.input);
        assert_eq!(self.sandbox.wait().unwrap(), 0);
    }
}

fn host_can_fork() {
    let status = std::process::Command::new("/bin/true").status().expect("the host can still start processes");
    assert!(status.success());
}

#[test]
fn fork_bomb_stops_at_the_pids_limit() {
    require_root();
    let neighbour = Neighbour::start();
    let grain = Grain::new();
    let mut cfg = grain.config(&["forkbomb"]);
    cfg.limits.pids = 64;
    let (code, out) = run(cfg);
    assert_eq!(code, 0, "{out}");
    let n: usize = out.trim().strip_prefix("fork=EAGAIN after ").unwrap_or_else(|| panic!("fork must fail with EAGAIN: {out}")).parse().unwrap();
    // 64 tasks: pid 1, the probe, and its children.
    assert!((50..=62).contains(&n), "forked {n} children under a 64-task limit");
    host_can_fork();
    neighbour.finish();
}

#[test]
fn memory_hog_is_killed_by_the_memory_limit() {
    require_root();
    let neighbour = Neighbour::start();
    let grain = Grain::new();
    let mut cfg = grain.config(&["memhog"]);
    cfg.limits.memory_bytes = 64 << 20;
    let (code, out) = run(cfg);
    assert_eq!(code, 137, "killed by SIGKILL (128 + 9); output:\n{out}");
    let last: usize = out.lines().last().and_then(|l| l.split(' ').nth(1)).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(last < 64, "allocated {last} MiB under a 64 MiB limit");
    host_can_fork();
    neighbour.finish();
}

#[test]
fn filling_tmp_stops_at_its_size() {
    require_root();
    let neighbour = Neighbour::start();
    let grain = Grain::new();
    let mut cfg = grain.config(&["fill-tmp"]);
    cfg.limits.tmp_bytes = 8 << 20;
    let (code, out) = run(cfg);
    assert_eq!(code, 0, "{out}");
    let mib: u64 = out.trim().strip_prefix("write=ENOSPC after ").and_then(|r| r.strip_suffix(" MiB")).unwrap_or_else(|| panic!("ENOSPC expected: {out}")).parse().unwrap();
    assert!((7..=8).contains(&mib), "wrote {mib} MiB into an 8 MiB /tmp");
    neighbour.finish();
}

#[test]
fn exit_codes_pass_through_and_the_cgroup_is_removed() {
    require_root();
    let grain = Grain::new();
    assert_eq!(run(grain.config(&["exit", "42"])).0, 42);
    // An app that waits for stdin, so init is certainly still running (an exited init, a
    // zombie, is no longer listed in cgroup.procs).
    let mut cfg = grain.config(&["echo"]);
    let (in_r, in_w) = pipe();
    cfg.stdio[0] = Some(in_r.as_raw_fd());
    let (mut sb, _out) = spawn_captured(cfg);
    drop(in_r);
    let dirs = sb.cgroup_dirs().to_vec();
    assert!(!dirs.is_empty() && dirs.iter().all(|d| d.is_dir()), "one cgroup per sandbox: {dirs:?}");
    let procs = std::fs::read_to_string(dirs[0].join("cgroup.procs")).unwrap();
    assert!(procs.lines().any(|p| p.trim() == sb.pid().to_string()), "init is in the cgroup while the app runs");
    drop(in_w);
    assert_eq!(sb.wait().unwrap(), 0);
    assert!(dirs.iter().all(|d| !d.exists()), "cgroup removed after exit");
}

#[test]
fn extra_fd_becomes_fd_3_and_nothing_else_leaks() {
    require_root();
    let grain = Grain::new();
    let (r, w) = pipe();
    let mut cfg = grain.config(&["fds"]);
    cfg.extra_fds = vec![w.as_raw_fd()];
    let (code, out) = run(cfg);
    drop(w);
    assert_eq!((code, out.trim()), (0, "open_fds=0,1,2,3"));
    let mut got = String::new();
    std::fs::File::from(r).read_to_string(&mut got).unwrap();
    assert_eq!(got, "hello through fd 3");
}

#[test]
fn extra_fds_become_fds_3_and_4_in_order() {
    // The supervisor hands the app its Cap'n Proto socket as fd 3 and the direct web
    // channel's listening socket as fd 4.
    require_root();
    let grain = Grain::new();
    let (r, w) = pipe();
    let dir = tempfile::tempdir().unwrap();
    let listener = std::os::unix::net::UnixListener::bind(dir.path().join("web.sock")).unwrap();
    let mut cfg = grain.config(&["fds"]);
    cfg.extra_fds = vec![w.as_raw_fd(), listener.as_raw_fd()];
    let (code, out) = run(cfg);
    drop(w);
    assert_eq!((code, out.trim()), (0, "open_fds=0,1,2,3,4"));
    let mut got = String::new();
    std::fs::File::from(r).read_to_string(&mut got).unwrap();
    assert_eq!(got, "hello through fd 3", "the first extra fd is fd 3");
}

#[test]
fn sandbox_dies_with_the_thread_that_spawned_it() {
    require_root();
    let grain = Grain::new();
    let (in_r, _in_w) = pipe(); // the echo loop would wait on stdin forever
    let mut cfg = grain.config(&["echo"]);
    cfg.stdio[0] = Some(in_r.as_raw_fd());
    let sb = std::thread::spawn(move || granary_supervisor::spawn(&cfg).unwrap()).join().unwrap();
    let mut sb = sb;
    let t = std::time::Instant::now();
    assert_eq!(sb.wait().unwrap(), 137, "SIGKILLed by PR_SET_PDEATHSIG when its parent thread exited");
    assert!(t.elapsed().as_secs() < 5);
}

#[test]
fn failures_say_what_went_wrong() {
    require_root();
    let grain = Grain::new();
    let mut cfg = grain.config(&[]);
    cfg.argv = vec!["/no/such/program".into()];
    match granary_supervisor::spawn(&cfg) {
        Err(SandboxError::Exec { path, error }) => {
            assert_eq!(path, "/no/such/program");
            assert_eq!(error.raw_os_error(), Some(libc::ENOENT));
        }
        other => panic!("expected an exec error, got {other:?}"),
    }
    std::fs::remove_dir(grain.image.path().join("proc")).unwrap();
    let err = granary_supervisor::spawn(&grain.config(&["true"])).unwrap_err().to_string();
    assert!(err.contains("lacks the mount-point directories [\"proc\"]"), "{err}");
}
