//! Helpers shared by the CLI tests: run the real `granary` binary, compare trees.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `granary ARGS` with its keyring at `keyring`, returning the output.
pub fn granary(keyring: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_granary"))
        .args(args)
        .env("GRANARY_KEYRING", keyring)
        .env("GRANARY_LOG", "warn")
        .output()
        .expect("run the granary binary")
}

/// Like [`granary`], asserting success; returns stdout.
pub fn granary_ok(keyring: &Path, args: &[&str]) -> String {
    let out = granary(keyring, args);
    assert!(
        out.status.success(),
        "granary {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Like [`granary`], asserting failure; returns stderr.
pub fn granary_err(keyring: &Path, args: &[&str]) -> String {
    let out = granary(keyring, args);
    assert!(!out.status.success(), "granary {args:?} should have failed\n{}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8(out.stderr).unwrap()
}

/// What a path is, as far as a package can carry it.
#[derive(Debug, PartialEq, Eq)]
pub enum Entry {
    File { content: Vec<u8>, executable: bool },
    Symlink(PathBuf),
    Dir,
}

/// Every entry under `root`, by path relative to it, without following symlinks.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Entry>) {
    for e in fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        let rel = path.strip_prefix(root).unwrap().to_owned();
        let meta = fs::symlink_metadata(&path).unwrap();
        let entry = if meta.file_type().is_symlink() {
            Entry::Symlink(fs::read_link(&path).unwrap())
        } else if meta.is_dir() {
            walk(root, &path, out);
            Entry::Dir
        } else {
            Entry::File { content: fs::read(&path).unwrap(), executable: meta.permissions().mode() & 0o100 != 0 }
        };
        out.insert(rel, entry);
    }
}

/// Writes a minimal granary.toml in `dir` for `app_id` that packs `dir/src` as `/app`, with
/// `/app/run` as its command.
pub fn write_toml(dir: &Path, app_id: &str) {
    let toml = format!(
        r#"
[app]
id = "{app_id}"
title = "Round trip"
version = 7
marketing_version = "7.0"
continue_command = ["/app/run"]

[[actions]]
title = "New thing"
noun = "thing"
command = ["/app/run", "--new"]

[files]
map = [{{ to = "/app", from = "src" }}]
include = ["/app"]
"#
    );
    fs::write(dir.join("granary.toml"), toml).unwrap();
}

/// A signed package of a minimal app titled `title` (from [`write_toml`], with a fresh key),
/// as bytes.
pub fn minimal_package(title: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let keyring = dir.path().join("keyring");
    let app_id = granary_ok(&keyring, &["keygen"]).trim().to_owned();
    fs::create_dir_all(dir.path().join("src")).unwrap();
    fs::write(dir.path().join("src/run"), b"x").unwrap();
    fs::set_permissions(dir.path().join("src/run"), fs::Permissions::from_mode(0o755)).unwrap();
    write_toml(dir.path(), &app_id);
    let toml = fs::read_to_string(dir.path().join("granary.toml")).unwrap().replace("Round trip", title);
    fs::write(dir.path().join("granary.toml"), toml).unwrap();
    let gpk = dir.path().join("app.gpk");
    granary_ok(&keyring, &["pack", dir.path().to_str().unwrap(), "-o", gpk.to_str().unwrap()]);
    fs::read(gpk).unwrap()
}
