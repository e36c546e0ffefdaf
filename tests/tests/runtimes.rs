//! Real runtimes run in a grain (issue 3, "The grain sandbox"): a static Rust binary, Debian's
//! python3, the machine's Node.js and busybox `sh` are each packed from a granary.toml (ELF
//! dependencies and script interpreters resolved by the packer) and run through the real
//! `granary sandbox`, with the production seccomp filter. Inside, each program serves HTTP on
//! 127.0.0.1, fetches from itself, writes and reads back a file in /var and runs a child
//! process, then prints `RESULT http=… var=… child=…` with what it actually got. The test
//! gives it a random nonce and checks every value against it, and checks the /var file from the
//! host afterwards. Must run as root; fails, not skips, otherwise.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

/// The sources of the apps (scripts and the Rust app's crate).
fn apps() -> PathBuf {
    workspace().join("tests/runtimes")
}

/// Builds the Rust app as a static binary (its own workspace, like the supervisor's probe) and
/// returns its path.
fn static_rust_app() -> PathBuf {
    let target = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().parent().unwrap().join("runtime-rust-app");
    let out = std::process::Command::new(env!("CARGO"))
        .args(["build", "--locked", "--release", "--quiet", "--target", "x86_64-unknown-linux-gnu", "--manifest-path"])
        .arg(apps().join("rust-app/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("running cargo to build the Rust app");
    assert!(out.status.success(), "building the static Rust app failed:\n{}", String::from_utf8_lossy(&out.stderr));
    target.join("x86_64-unknown-linux-gnu/release/granary-runtime-rust-app")
}

/// Writes `src/granary.toml` (plus `src/app/<name>` copied from `app_file`, if any) under `dir`,
/// builds the image and runs `cmd` in it with a fresh data directory. Asserts the RESULT line
/// and that `/var/<var_file>` holds the nonce on the host afterwards; returns stderr.
fn check_runtime(dir: &Path, toml: &str, cmd: &[&str], var_file: &str) -> String {
    let toml_path = dir.join("src/granary.toml");
    std::fs::create_dir_all(toml_path.parent().unwrap()).unwrap();
    std::fs::write(&toml_path, toml).unwrap();
    let image = dir.join("image");
    build_image(&toml_path, &image);
    run_in(&image, dir, cmd, var_file)
}

fn run_in(image: &Path, dir: &Path, cmd: &[&str], var_file: &str) -> String {
    let data = data_dir(dir, "data");
    let nonce = nonce();
    let env_nonce = format!("NONCE={nonce}");
    let out = Run {
        image,
        data: &data,
        env: &[&env_nonce, "PORT=8000", "PATH=/app/bin:/usr/bin:/bin"],
        // GRANARY_RUNTIMES_DEV=1 runs the grains with `--dev`, so every seccomp denial is
        // logged: read them with `dmesg | grep type=1326` (SPEC.md, "seccomp").
        extra: if std::env::var_os("GRANARY_RUNTIMES_DEV").is_some() { &["--dev"] } else { &[] },
        cmd,
        stdin: b"",
        limit: Duration::from_secs(60),
    }
    .output();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{cmd:?} in the grain: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    let reversed: String = nonce.chars().rev().collect();
    let want = format!("RESULT http=hello {nonce} var={nonce} child=child {reversed}");
    assert!(stdout.lines().any(|l| l.trim_end() == want), "want the line {want:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    let on_host = data.join(var_file);
    assert_eq!(std::fs::read_to_string(&on_host).unwrap_or_else(|e| panic!("{}: {e}", on_host.display())), nonce);
    let meta = std::fs::metadata(&on_host).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), NOBODY, "the grain's files belong to the mapped uid");
    stderr
}

/// Copies an app source file into `dir/src/app/` (the `/app` of the image).
fn stage(dir: &Path, file: &str) {
    let app = dir.join("src/app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::copy(apps().join(file), app.join(file)).unwrap();
}

#[test]
fn static_rust_binary() {
    require_root();
    let bin = static_rust_app();
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("src/app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::copy(&bin, app.join("rust-app")).unwrap();
    // Only the binary: a static executable needs no loader and no libraries.
    let files = r#"map = [ { to = "/app", from = "app" } ]"#;
    check_runtime(dir.path(), &granary_toml("\"/app/rust-app\"", files), &["/app/rust-app"], "rust.txt");
}

#[test]
fn debian_python3_stdlib_http_server() {
    require_root();
    assert!(Path::new("/usr/bin/python3").is_file(), "Debian's python3 is needed (apt-get install python3)");
    let dir = tempfile::tempdir().unwrap();
    stage(dir.path(), "app.py");
    let files = r#"map = [ { to = "/app", from = "app" }, { to = "/", from = "/" } ]
include = ["/app", "/usr/lib/python3.11"]
hide = ["/usr/lib/python3.11/config-3.11-x86_64-linux-gnu", "/usr/lib/python3.11/test"]"#;
    let toml = granary_toml("\"/usr/bin/python3\", \"/app/app.py\"", files);
    check_runtime(dir.path(), &toml, &["/usr/bin/python3", "/app/app.py"], "python.txt");
}

#[test]
fn nodejs_http_server() {
    require_root();
    assert!(Path::new("/usr/bin/node").is_file(), "Node.js at /usr/bin/node is needed");
    let dir = tempfile::tempdir().unwrap();
    stage(dir.path(), "app.js");
    let files = r#"map = [ { to = "/app", from = "app" }, { to = "/", from = "/" } ]
include = ["/app"]"#;
    let toml = granary_toml("\"/usr/bin/node\", \"/app/app.js\"", files);
    check_runtime(dir.path(), &toml, &["/usr/bin/node", "/app/app.js"], "node.txt");
}

#[test]
fn busybox_sh_with_applets() {
    require_root();
    require_busybox();
    let dir = tempfile::tempdir().unwrap();
    let image = busybox_image(dir.path(), Some(&apps().join("run.sh")));
    run_in(&image, dir.path(), &["/app/run.sh"], "busybox.txt");
    // The script's own www root is there too, written by the app's uid.
    assert!(dir.path().join("data/www/index.html").is_file());
}
