//! The browser suite (tests/browser): real Chromium (Debian's /usr/bin/chromium, driven by
//! playwright-core from node) against real `granary serve` processes that the node runner starts
//! from the binary built here. Scenarios and helpers live in tests/browser; this test checks the
//! tools are there, runs `node run.mjs`, and fails if any scenario fails. Its output (one line per
//! scenario) and the screenshots folder are printed uncaptured, so the test command shows them.
//! `GRANARY_BROWSER_FILTER=text` runs only the scenarios whose name contains `text`.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const DEADLINE: Duration = Duration::from_secs(600);
const FIX: &str = "run `scripts/deps.sh test` (as root; it installs Debian's chromium and runs `npm ci` in tests/browser)";

/// Written straight to stderr, past the test harness's capture.
fn say(msg: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{msg}");
}

#[test]
fn browser_scenarios() {
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

    let granary = common::granary();
    // <target>/<profile>/granary → <target>/screenshots
    let shots = granary.parent().and_then(Path::parent).expect("<target>/<profile>/granary").join("screenshots");
    let mut cmd = Command::new("node");
    cmd.arg("run.mjs")
        .current_dir(&suite)
        .env("GRANARY_BIN", &granary)
        .env("GRANARY_SCREENSHOTS", &shots)
        .stdin(Stdio::null());
    if let Ok(filter) = std::env::var("GRANARY_BROWSER_FILTER") {
        cmd.arg(filter);
    }
    say(&format!("\nbrowser suite: node {version}, {CHROMIUM}, screenshots in {}", shots.display()));
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
