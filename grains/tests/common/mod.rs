//! Helpers shared by the integration tests.
#![allow(dead_code)]

use granary_grains::ids::AppId;
use granary_grains::tree::{Node, Source, Tree};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub fn app_id() -> String {
    AppId([7; 32]).to_string()
}

/// Resolves `path` inside `tree` the way a chroot of it would (symlinks followed, absolute
/// targets from the tree's root), returning the real path and the node there.
pub fn follow<'t>(tree: &'t Tree, path: &str) -> Option<(String, &'t Node)> {
    let mut todo: Vec<String> = path.split('/').filter(|c| !c.is_empty()).rev().map(str::to_owned).collect();
    let mut cur: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        match c.as_str() {
            "." => continue,
            ".." => {
                cur.pop();
                continue;
            }
            _ => cur.push(c),
        }
        let here = format!("/{}", cur.join("/"));
        match tree.get(&here)? {
            Node::Symlink(t) => {
                hops += 1;
                assert!(hops < 40, "symlink loop at {here}");
                cur.pop();
                if t.starts_with('/') {
                    cur.clear();
                }
                todo.extend(t.split('/').filter(|c| !c.is_empty()).rev().map(str::to_owned));
            }
            Node::Dir(_) => {}
            Node::File { .. } if todo.is_empty() => {}
            Node::File { .. } => return None,
        }
    }
    let here = format!("/{}", cur.join("/"));
    tree.get(&here).map(|n| (here, n))
}

/// The host file a path in the tree resolves to, if it is a host file.
pub fn host_file(tree: &Tree, path: &str) -> Option<PathBuf> {
    match follow(tree, path)?.1 {
        Node::File { source: Source::Path(p), .. } => Some(p.clone()),
        _ => None,
    }
}

pub fn write_exec(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A minimal granary.toml: one action and the continue command run `cmd`, with `files` as
/// the whole [files] section body.
pub fn minimal_toml(cmd: &str, files: &str) -> String {
    format!(
        r#"[app]
id = "{id}"
title = "T"
version = 1
continue_command = ["{cmd}"]
[[actions]]
title = "New"
noun = "thing"
command = ["{cmd}"]
[files]
{files}
"#,
        id = app_id()
    )
}

/// Writes `toml` as granary.toml in `dir` and returns its path.
pub fn write_toml(dir: &Path, toml: &str) -> PathBuf {
    let p = dir.join("granary.toml");
    std::fs::write(&p, toml).unwrap();
    p
}

/// The shared-library paths `ldd` reports for a host binary (`=> /path` and the loader).
pub fn ldd(binary: &str) -> Vec<String> {
    let out = std::process::Command::new("ldd").arg(binary).output().expect("ldd runs");
    assert!(out.status.success(), "ldd {binary} failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=> ") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| path.to_owned())
        })
        .collect()
}
