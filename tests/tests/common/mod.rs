//! Shared by the end-to-end tests: the real `granary` binary, images built from a granary.toml,
//! data directories owned by the sandbox's host uid, and running `granary sandbox` with a
//! deadline.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};


/// The host uid the sandbox maps the app to when `granary` runs as root (SPEC.md, "uid mapping").
pub const NOBODY: u32 = 65534;

/// These tests need root: fail (not skip) with what to do otherwise.
pub fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("Uid line in /proc/self/status");
    assert_eq!(
        euid, "0",
        "these tests must run as root (granary sandbox creates cgroups and maps uid 65534): run them with sudo, e.g. `sudo -E cargo test -p granary-tests`"
    );
}

/// The workspace root (this crate lives in `tests/`).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The directory this test executable was built into (`<target>/debug/deps/..` → `<target>/debug`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent().and_then(Path::parent).expect("<target>/<profile>/deps/<test>").to_path_buf()
}

/// The real `granary` binary, built (once per test process) by Cargo into the same target
/// directory and profile as this test, so it is never stale. Cargo releases its lock on the
/// target directory before it runs tests, so this nested build does not wait on the outer one.
pub fn granary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let profile = profile_dir();
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--quiet", "-p", "granary", "--bin", "granary", "--manifest-path"])
            .arg(workspace().join("Cargo.toml"))
            .arg("--target-dir")
            .arg(profile.parent().unwrap());
        if profile.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let out = cmd.output().expect("running cargo to build granary");
        assert!(out.status.success(), "building granary failed:\n{}", String::from_utf8_lossy(&out.stderr));
        profile.join("granary")
    })
    .clone()
}

/// The keyring the tests sign packages with: one per test process, in a temporary directory.
fn keyring() -> &'static (tempfile::TempDir, PathBuf, String) {
    static KEYRING: OnceLock<(tempfile::TempDir, PathBuf, String)> = OnceLock::new();
    KEYRING.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring");
        let out = Command::new(granary()).args(["keygen", "--keyring"]).arg(&path).output().unwrap();
        assert!(out.status.success(), "granary keygen: {}", String::from_utf8_lossy(&out.stderr));
        let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        (dir, path, id)
    })
}

/// The app id for granary.toml files (its key is in the tests' keyring).
pub fn app_id() -> String {
    keyring().2.clone()
}

/// A granary.toml running `command` (TOML array body, e.g. `"/app/x", "--y"`) whose whole
/// `[files]` section body is `files`.
pub fn granary_toml(command: &str, files: &str) -> String {
    format!(
        r#"[app]
id = "{id}"
title = "Runtime check"
version = 1
continue_command = [{command}]
[[actions]]
title = "New"
noun = "check"
command = [{command}]
[files]
{files}
"#,
        id = app_id()
    )
}

/// Turns a granary.toml into an unpacked image at `out` (a new directory), as the supervisor
/// will see it: `granary pack <dir of toml> -o <out>.gpk`, then `granary unpack <out>.gpk <out>`.
/// The only place the tests make images.
pub fn build_image(toml: &Path, out: &Path) {
    let gpk = out.with_extension("gpk");
    let run = |args: &[&std::ffi::OsStr]| {
        let o = Command::new(granary()).args(args).output().unwrap();
        assert!(o.status.success(), "granary {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    let dir = toml.parent().unwrap();
    assert_eq!(toml.file_name().unwrap(), "granary.toml", "granary pack reads DIR/granary.toml");
    run(&["pack".as_ref(), dir.as_os_str(), "-o".as_ref(), gpk.as_os_str(), "--keyring".as_ref(), keyring().1.as_os_str()]);
    run(&["unpack".as_ref(), gpk.as_os_str(), out.as_os_str()]);
}

/// An empty grain data directory owned by the host uid the sandbox maps the app to.
pub fn data_dir(parent: &Path, name: &str) -> PathBuf {
    let d = parent.join(name);
    std::fs::create_dir(&d).unwrap();
    std::os::unix::fs::chown(&d, Some(NOBODY), Some(NOBODY)).unwrap();
    d
}

/// `granary sandbox --image IMAGE --data DATA [--env K=V]... [EXTRA]... -- CMD...`, with
/// `stdin` fed to it, killed if it is not done within `limit`.
pub struct Run<'a> {
    pub image: &'a Path,
    pub data: &'a Path,
    pub env: &'a [&'a str],
    pub extra: &'a [&'a str],
    pub cmd: &'a [&'a str],
    pub stdin: &'a [u8],
    pub limit: Duration,
}

impl Run<'_> {
    pub fn output(&self) -> Output {
        let mut c = Command::new(granary());
        c.arg("sandbox").arg("--image").arg(self.image).arg("--data").arg(self.data);
        for kv in self.env {
            c.args(["--env", kv]);
        }
        c.args(self.extra).arg("--").args(self.cmd);
        run_with_deadline(c, self.stdin, self.limit)
    }
}

/// Runs `cmd` with piped stdio; kills it (SIGKILL) and panics if it outlives `limit`.
pub fn run_with_deadline(mut cmd: Command, stdin: &[u8], limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&data); // a program that never reads stdin is not an error
    });
    let collect = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            r.read_to_end(&mut v).unwrap();
            v
        })
    };
    let out = collect(Box::new(child.stdout.take().unwrap()));
    let err = collect(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            let (o, e) = (out.join().unwrap(), err.join().unwrap());
            panic!(
                "{cmd:?} did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&o),
                String::from_utf8_lossy(&e)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    feeder.join().unwrap();
    Output { status, stdout: out.join().unwrap(), stderr: err.join().unwrap() }
}

/// A random lower-case token, so a result can only come from the run that was given it.
pub fn nonce() -> String {
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut b).unwrap();
    b.iter().map(|x| char::from(b'a' + x % 26)).collect()
}

/// The image of Debian's busybox with a few applets as symlinks in `/app/bin` (PATH=/app/bin)
/// and `script` at `/app/run.sh` if given. Returns the image directory (under `dir`).
pub fn busybox_image(dir: &Path, script: Option<&Path>) -> PathBuf {
    let app = dir.join("src/app");
    std::fs::create_dir_all(app.join("bin")).unwrap();
    for applet in BUSYBOX_APPLETS {
        std::os::unix::fs::symlink("/usr/bin/busybox", app.join("bin").join(applet)).unwrap();
    }
    let command = match script {
        Some(s) => {
            std::fs::copy(s, app.join("run.sh")).unwrap();
            std::fs::set_permissions(app.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
            "\"/app/run.sh\""
        }
        None => "\"/app/bin/sh\"",
    };
    let files = "map = [ { to = \"/app\", from = \"app\" }, { to = \"/\", from = \"/\" } ]\ninclude = [\"/app\"]";
    let toml = dir.join("src/granary.toml");
    std::fs::write(&toml, granary_toml(command, files)).unwrap();
    let image = dir.join("image");
    build_image(&toml, &image);
    image
}

/// The busybox applets the images carry.
pub const BUSYBOX_APPLETS: &[&str] =
    &["sh", "cat", "echo", "env", "kill", "mkdir", "rev", "usleep", "httpd", "wget", "ls", "sleep"];

/// Asserts the busybox from scripts/deps.sh is installed, saying how to get it otherwise.
pub fn require_busybox() {
    assert!(
        Path::new("/usr/bin/busybox").is_file(),
        "Debian's busybox is needed: run `scripts/deps.sh test` (as root)"
    );
}
