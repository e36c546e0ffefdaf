//! The `granary sandbox` command as a user runs it: the app's exit status comes back as
//! granary's (128 + signal when it was killed), stdin, stdout and stderr pass through
//! byte for byte, `--env` is the app's entire environment, and a bad image or data directory
//! is refused before anything runs, with a message that says what is wrong and how to fix it.
//! The app is Debian's busybox, packed from a granary.toml. Must run as root; fails, not
//! skips, otherwise.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;
use std::time::Duration;

use common::*;

/// One busybox image shared by the tests of this file (read-only, so sharing is safe).
fn image() -> &'static Path {
    static IMAGE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &IMAGE
        .get_or_init(|| {
            require_root();
            require_busybox();
            let dir = tempfile::tempdir().unwrap();
            let image = busybox_image(dir.path(), None);
            (dir, image)
        })
        .1
}

/// Runs `granary sandbox` on `image` with a fresh data dir (owned by the mapped uid).
fn sandbox(image: &Path, env: &[&str], cmd: &[&str], stdin: &[u8]) -> Output {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let data = data_dir(dir.path(), "data");
    Run { image, data: &data, env, extra: &[], cmd, stdin, limit: Duration::from_secs(30) }.output()
}

fn sh(script: &str) -> Output {
    sandbox(image(), &["PATH=/app/bin"], &["/app/bin/sh", "-c", script], b"")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn exit_status_is_passed_through() {
    for (script, code) in [("exit 0", 0), ("exit 3", 3), ("exit 255", 255), ("true", 0), ("false", 1)] {
        let out = sh(script);
        assert_eq!(out.status.code(), Some(code), "{script}: stderr {}", text(&out.stderr));
    }
}

#[test]
fn killed_by_a_signal_exits_with_128_plus_the_signal() {
    for (sig, code) in [("KILL", 137), ("TERM", 143), ("SEGV", 139)] {
        let out = sh(&format!("kill -{sig} $$; sleep 5"));
        assert_eq!(out.status.code(), Some(code), "SIG{sig}: stderr {}", text(&out.stderr));
    }
}

#[test]
fn stdin_stdout_and_stderr_pass_through_byte_for_byte() {
    let input: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let out = sandbox(image(), &["PATH=/app/bin"], &["/app/bin/sh", "-c", "cat; echo 'to stderr' >&2"], &input);
    assert!(out.status.success(), "{:?} {}", out.status, text(&out.stderr));
    assert!(out.stdout == input, "stdout differs from stdin ({} bytes back of {})", out.stdout.len(), input.len());
    assert_eq!(text(&out.stderr), "to stderr\n");
}

#[test]
fn env_flags_are_the_whole_environment() {
    let out = sandbox(
        image(),
        &["GREETING=hello world", "EMPTY=", "EQUALS=a=b", "PATH=/app/bin"],
        &["/app/bin/env"],
        b"",
    );
    assert!(out.status.success(), "{:?} {}", out.status, text(&out.stderr));
    let mut seen: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    seen.sort();
    assert_eq!(seen, ["EMPTY=", "EQUALS=a=b", "GREETING=hello world", "PATH=/app/bin"]);
    // And with no --env at all, nothing.
    let out = sandbox(image(), &[], &["/app/bin/env"], b"");
    assert!(out.status.success(), "{:?} {}", out.status, text(&out.stderr));
    assert_eq!(text(&out.stdout), "");
}

/// A refusal: granary exits 1 before running anything, with one error line on stderr.
fn refused(out: &Output) -> String {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(out.stdout.is_empty(), "nothing ran: {}", text(&out.stdout));
    assert!(err.starts_with("error: "), "{err}");
    err
}

#[test]
fn missing_image_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-image");
    let err = refused(&sandbox(&missing, &[], &["/app/bin/sh"], b""));
    assert!(err.contains(&format!("image directory {}: No such file or directory", missing.display())), "{err}");
}

#[test]
fn image_without_mount_points_names_the_missing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let partial = dir.path().join("partial");
    std::fs::create_dir(&partial).unwrap();
    for d in ["dev", "var"] {
        std::fs::create_dir(partial.join(d)).unwrap();
    }
    let err = refused(&sandbox(&partial, &[], &["/app/bin/sh"], b""));
    assert!(err.contains(r#"lacks the mount-point directories ["tmp", "proc"]"#), "{err}");
    assert!(err.contains(&format!("mkdir {0}/tmp {0}/proc", partial.display())), "{err}");
    assert!(err.contains("granary pack"), "{err}");
}

#[test]
fn data_directory_not_owned_by_the_mapped_uid_is_refused() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("other-owner");
    std::fs::create_dir(&data).unwrap();
    std::os::unix::fs::chown(&data, Some(4242), Some(4242)).unwrap(); // not 65534, the default
    let out = Run {
        image: image(),
        data: &data,
        env: &[],
        extra: &[],
        cmd: &["/app/bin/sh", "-c", "echo ran"],
        stdin: b"",
        limit: Duration::from_secs(30),
    }
    .output();
    let err = refused(&out);
    assert!(
        err.contains(&format!("data directory {} is owned by uid 4242, but the app runs as host uid {NOBODY}", data.display())),
        "{err}"
    );
    assert!(err.contains(&format!("chown {NOBODY}:{NOBODY} {}", data.display())), "{err}");
    // With --host-uid naming the owner, the same directory is accepted.
    let out = Run {
        image: image(),
        data: &data,
        env: &[],
        extra: &["--host-uid", "4242"],
        cmd: &["/app/bin/sh", "-c", "echo ran"],
        stdin: b"",
        limit: Duration::from_secs(30),
    }
    .output();
    assert!(out.status.success(), "{:?} {}", out.status, text(&out.stderr));
    assert_eq!(text(&out.stdout), "ran\n");
}
