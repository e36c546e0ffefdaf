//! The tree built for a program really runs it: materialized into a directory and run with
//! `chroot`. Needs root (for chroot); fails, rather than skips, without it.

mod common;

use common::*;
use granary_grains::source::load;
use std::path::Path;
use std::process::Command;

fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("Uid line in /proc/self/status");
    assert_eq!(euid, "0", "this test needs root (it runs chroot); run `cargo test` as root");
}

/// Loads a granary.toml that runs python3 from the host root with `include`, writes the tree
/// into a fresh directory and runs `python3 ARGS` chrooted there with an empty environment.
fn run_in_chroot(include: &str, args: &[&str]) -> (std::process::Output, tempfile::TempDir) {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let files = format!("map = [ {{ to = \"/\", from = \"/\" }} ]\ninclude = {include}");
    let src = load(&write_toml(dir.path(), &minimal_toml("/usr/bin/python3", &files))).unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    src.tree.materialize(&root).unwrap();
    let out = Command::new("/usr/sbin/chroot")
        .arg(&root)
        .arg("/usr/bin/python3")
        .args(args)
        .env_clear()
        .output()
        .expect("the chroot program runs");
    (out, dir)
}

#[test]
fn python3_version_runs_in_a_chroot_of_its_tree() {
    let (out, dir) = run_in_chroot(r#"["/usr/bin/python3"]"#, &["--version"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{:?} {}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with("Python 3."), "{stdout}");
    // Only what it needs: no standard library was packed.
    assert!(!dir.path().join("root/usr/lib/python3.11").exists());
    assert!(Path::new(&dir.path().join("root/etc/passwd")).is_file());
}

#[test]
fn python3_with_its_library_runs_code_using_extension_modules() {
    let (out, _dir) = run_in_chroot(
        r#"["/usr/bin/python3", "/usr/lib/python3.11"]"#,
        &["-c", "import sqlite3, ctypes, json; print(6*7); print(sqlite3.connect(':memory:').execute('select 1').fetchone()[0])"],
    );
    assert!(out.status.success(), "{:?} {}", out.status, String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "42\n1\n");
}
