//! The browser suite (tests/browser): real Chromium (Debian's /usr/bin/chromium, driven by
//! playwright-core from node) against real `granary serve` processes that the node runner starts
//! from the binary built here. Scenarios and helpers live in tests/browser; this test checks the
//! tools are there, builds what the servers and scenarios need (the `granary` binary, the static
//! bridge every grain runs, and signed packages of the Echo, Notes, Dashboard and Counter sample apps), runs `node run.mjs`,
//! and fails if any scenario fails. Its output (one line per
//! scenario) and the screenshots folder are printed uncaptured, so the test command shows them.
//! `GRANARY_BROWSER_FILTER=text` runs only the scenarios whose name contains `text`.
//! Grains run in sandboxes, so this test needs root (as the other end-to-end tests do).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const DEADLINE: Duration = Duration::from_secs(600);
const FIX: &str = "run `scripts/deps.sh test` (as root; it installs Debian's chromium and runs `npm ci` in tests/browser)";

/// Written straight to stderr, past the test harness's capture.
fn say(msg: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{msg}");
}

/// `<target>/<profile>` of the `granary` binary.
fn profile_dir(granary: &Path) -> &Path {
    granary.parent().expect("<target>/<profile>/granary")
}

/// Runs cargo with `args` (plus `--release` for a release build), the static-build flags and
/// `--target x86_64-unknown-linux-gnu` (which keeps RUSTFLAGS off build scripts), into the same
/// target directory as `granary`; returns `<target>/x86_64-unknown-linux-gnu/<profile>/<bin>`.
fn build_static(granary: &Path, args: &[&str], bin: &str, target_dir: &Path) -> PathBuf {
    let profile = profile_dir(granary).file_name().expect("profile name").to_owned();
    let mut cmd = Command::new(env!("CARGO"));
    cmd.arg("build").arg("--locked").arg("--quiet").args(args).args(["--target", "x86_64-unknown-linux-gnu", "--target-dir"]);
    cmd.arg(target_dir).env("RUSTFLAGS", "-C target-feature=+crt-static");
    if profile == "release" {
        cmd.arg("--release");
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("running cargo to build {bin}: {e}"));
    assert!(out.status.success(), "building the static {bin} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let path = target_dir.join("x86_64-unknown-linux-gnu").join(profile).join(bin);
    assert!(path.is_file(), "cargo built {bin} but {} is missing", path.display());
    path
}

/// The static bridge (`scripts/build-bridge.sh`, built like `shell/tests/server/mod.rs::bridge()`)
/// that `granary serve --bridge` copies into every grain.
fn bridge(granary: &Path) -> PathBuf {
    let target = profile_dir(granary).parent().expect("<target>");
    let manifest = common::workspace().join("Cargo.toml");
    build_static(granary, &["-p", "granary-bridge", "--manifest-path", manifest.to_str().unwrap()], "granary-bridge", target)
}

/// A sample app of apps/ (`scripts/build-sample-apps.sh`): its static binary (each app is its own
/// workspace; echo is built into `<target>/echo`, the others into `<target>/apps`), packed with
/// `granary pack` under a fresh `granary keygen` id (its own keyring: the app id is the signer)
/// into `<dir>/<app>.gpk`.
fn app_package(granary: &Path, dir: &Path, app: &str) -> PathBuf {
    let src_dir = common::workspace().join("apps").join(app);
    let target = profile_dir(granary).parent().expect("<target>").join(if app == "echo" { "echo" } else { "apps" });
    let manifest = src_dir.join("Cargo.toml");
    let bin = build_static(granary, &["--manifest-path", manifest.to_str().unwrap()], app, &target);
    let run = |args: &[&std::ffi::OsStr]| {
        let o = Command::new(granary).args(args).output().expect("running granary");
        assert!(o.status.success(), "granary {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).expect("utf-8 output")
    };
    let keyring = dir.join(format!("{app}-keyring"));
    let id = run(&["keygen".as_ref(), "--keyring".as_ref(), keyring.as_os_str()]).trim().to_owned();
    let src = dir.join(format!("{app}-src"));
    std::fs::create_dir_all(src.join("bin")).unwrap();
    let toml = std::fs::read_to_string(src_dir.join("granary.toml")).expect("the app's granary.toml");
    assert!(toml.contains("REPLACE_WITH_APP_ID"), "apps/{app}/granary.toml no longer has the id placeholder");
    std::fs::write(src.join("granary.toml"), toml.replace("REPLACE_WITH_APP_ID", &id)).unwrap();
    std::fs::copy(src_dir.join("icon.svg"), src.join("icon.svg")).unwrap();
    std::fs::copy(&bin, src.join("bin").join(app)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(src.join("bin").join(app), std::fs::Permissions::from_mode(0o755)).unwrap();
    let gpk = dir.join(format!("{app}.gpk"));
    run(&["pack".as_ref(), src.as_os_str(), "-o".as_ref(), gpk.as_os_str(), "--keyring".as_ref(), keyring.as_os_str()]);
    gpk
}

#[test]
fn browser_scenarios() {
    common::require_root();
    let suite = common::workspace().join("tests/browser");
    assert!(Path::new(CHROMIUM).exists(), "the browser tests need Chromium at {CHROMIUM}: {FIX}");
    let node = Command::new("node").arg("--version").output();
    let version = match node {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        _ => panic!("the browser tests need Node.js 20 or newer (`node` is not on PATH): install it, then {FIX}"),
    };
    let major: u32 = version.trim_start_matches('v').split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
    assert!(major >= 20, "the browser tests need Node.js 20 or newer, `node --version` says {version}");
    assert!(
        suite.join("node_modules/playwright-core/package.json").exists(),
        "the browser tests' node packages are not installed in {}: {FIX}",
        suite.display()
    );

    let t0 = Instant::now();
    let granary = common::granary();
    let bridge = bridge(&granary);
    let work = tempfile::tempdir().unwrap();
    let echo = app_package(&granary, work.path(), "echo");
    let notes = app_package(&granary, work.path(), "notes");
    let dashboard = app_package(&granary, work.path(), "dashboard");
    let counter = app_package(&granary, work.path(), "counter");
    say(&format!(
        "\nbrowser suite: built granary, the bridge, echo.gpk, notes.gpk, dashboard.gpk and counter.gpk in {:.1} s",
        t0.elapsed().as_secs_f64()
    ));
    // <target>/<profile>/granary → <target>/screenshots
    let shots = granary.parent().and_then(Path::parent).expect("<target>/<profile>/granary").join("screenshots");
    let mut cmd = Command::new("node");
    cmd.arg("run.mjs")
        .current_dir(&suite)
        .env("GRANARY_BIN", &granary)
        .env("GRANARY_BRIDGE", &bridge)
        .env("GRANARY_ECHO_GPK", &echo)
        .env("GRANARY_NOTES_GPK", &notes)
        .env("GRANARY_DASHBOARD_GPK", &dashboard)
        .env("GRANARY_COUNTER_GPK", &counter)
        .env("GRANARY_SCREENSHOTS", &shots)
        .stdin(Stdio::null());
    if let Ok(filter) = std::env::var("GRANARY_BROWSER_FILTER") {
        cmd.arg(filter);
    }
    say(&format!("browser suite: node {version}, {CHROMIUM}, screenshots in {}", shots.display()));
    // stdout and stderr are inherited: the scenario lines go straight to the test command's output.
    let mut child = cmd.spawn().expect("starting node run.mjs");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for node") {
            break status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the browser suite did not finish within {} s; screenshots so far are in {}", DEADLINE.as_secs(), shots.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "the browser suite failed ({status}); each failing scenario is listed above with its error and server log, \
         and what its pages showed is in {}",
        shots.join("failures").display()
    );
}
