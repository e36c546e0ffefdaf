//! The file tree a package carries, as the packer describes it before serializing: where each
//! package path's bytes come from.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Where a regular file's bytes come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Read from this host path when the package is written.
    Path(PathBuf),
    /// These bytes (generated files such as a minimal `/etc/passwd`).
    Bytes(Vec<u8>),
}

/// One entry of a package tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    File { source: Source, executable: bool },
    Symlink(String),
    Dir(Tree),
}

/// A directory: entries by name. Names are single path components (checked by
/// [`valid_name`] when a package is written and again when it is read).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tree {
    pub entries: BTreeMap<String, Node>,
}

/// Why a package path cannot be placed in a tree.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TreeError {
    #[error("package path `{0}` has an empty, `.` or `..` component, or a NUL byte; write it as a plain absolute path such as /usr/bin/app")]
    BadPath(String),
    #[error("package path `{path}` is both a directory and a file (from {first} and {second}); remove one of them from the file map")]
    Conflict { path: String, first: String, second: String },
}

/// True if `name` may be one path component of a package: not empty, not `.` or `..`, and
/// without `/` or NUL.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

fn describe(node: &Node) -> String {
    match node {
        Node::File { source: Source::Path(p), .. } => p.display().to_string(),
        Node::File { source: Source::Bytes(_), .. } => "generated content".into(),
        Node::Symlink(t) => format!("a symlink to {t}"),
        Node::Dir(_) => "a directory".into(),
    }
}

impl Tree {
    pub fn new() -> Self {
        Self::default()
    }

    /// Splits an absolute or relative package path into its components, refusing `.`/`..`.
    pub fn components(path: &str) -> Result<Vec<&str>, TreeError> {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').filter(|c| !c.is_empty()).collect();
        if parts.iter().any(|c| !valid_name(c)) {
            return Err(TreeError::BadPath(path.to_owned()));
        }
        Ok(parts)
    }

    /// Looks up an entry by package path.
    pub fn get(&self, path: &str) -> Option<&Node> {
        let parts = Self::components(path).ok()?;
        let (last, dirs) = parts.split_last()?;
        let mut dir = self;
        for d in dirs {
            match dir.entries.get(*d)? {
                Node::Dir(t) => dir = t,
                _ => return None,
            }
        }
        dir.entries.get(*last)
    }

    /// Inserts `node` at `path`, creating parent directories. Inserting a directory where a
    /// directory exists merges them; inserting the same leaf twice keeps the first (so the
    /// file map's order decides); a file where a directory is (or under a file) is an error.
    pub fn insert(&mut self, path: &str, node: Node) -> Result<(), TreeError> {
        let parts = Self::components(path)?;
        let Some((last, dirs)) = parts.split_last() else {
            return match node {
                Node::Dir(t) => {
                    self.merge(t);
                    Ok(())
                }
                other => Err(TreeError::Conflict {
                    path: "/".into(),
                    first: "the root directory".into(),
                    second: describe(&other),
                }),
            };
        };
        let mut dir = self;
        for (i, d) in dirs.iter().enumerate() {
            let entry = dir.entries.entry((*d).to_owned()).or_insert_with(|| Node::Dir(Tree::new()));
            match entry {
                Node::Dir(t) => dir = t,
                other => {
                    return Err(TreeError::Conflict {
                        path: format!("/{}", parts[..=i].join("/")),
                        first: describe(other),
                        second: describe(&node),
                    })
                }
            }
        }
        let conflict = |existing: &Node, node: &Node| TreeError::Conflict {
            path: path.to_owned(),
            first: describe(existing),
            second: describe(node),
        };
        match dir.entries.get_mut(*last) {
            None => {
                dir.entries.insert((*last).to_owned(), node);
                Ok(())
            }
            Some(Node::Dir(existing)) => match node {
                Node::Dir(t) => {
                    existing.merge(t);
                    Ok(())
                }
                other => Err(conflict(&Node::Dir(Tree::new()), &other)),
            },
            // The same leaf twice: the first one wins, so the file map's order decides.
            Some(existing) if !matches!(node, Node::Dir(_)) => {
                let _ = existing;
                Ok(())
            }
            Some(existing) => Err(conflict(existing, &node)),
        }
    }

    fn merge(&mut self, other: Tree) {
        for (name, node) in other.entries {
            match (self.entries.get_mut(&name), node) {
                (None, node) => {
                    self.entries.insert(name, node);
                }
                (Some(Node::Dir(a)), Node::Dir(b)) => a.merge(b),
                (Some(_), _) => {}
            }
        }
    }

    /// Number of entries (files, links and directories) in the whole tree.
    pub fn count(&self) -> u64 {
        self.entries
            .values()
            .map(|n| 1 + if let Node::Dir(t) = n { t.count() } else { 0 })
            .sum()
    }

    /// Writes the tree into the existing directory `dir` (a test helper, and for inspecting
    /// a package): directories 0755, files 0555 if executable else 0444, symlinks verbatim.
    /// Every entry is created new, so an existing entry (a symlink included) is an error and
    /// is never followed.
    pub fn materialize(&self, dir: &Path) -> io::Result<()> {
        for (name, node) in &self.entries {
            if !valid_name(name) {
                let msg = format!("tree entry `{name}` is not a valid file name; build trees with Tree::insert");
                return Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
            }
            let path = dir.join(name);
            match node {
                Node::Dir(t) => {
                    fs::DirBuilder::new().mode(0o755).create(&path)?;
                    t.materialize(&path)?;
                }
                Node::Symlink(target) => std::os::unix::fs::symlink(target, &path)?,
                Node::File { source, executable } => {
                    let mode = if *executable { 0o555 } else { 0o444 };
                    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&path)?;
                    match source {
                        Source::Path(p) => {
                            let mut from = fs::File::open(p).map_err(|e| {
                                io::Error::new(e.kind(), format!("{}: {e}", p.display()))
                            })?;
                            io::copy(&mut from, &mut f)?;
                        }
                        Source::Bytes(b) => f.write_all(b)?,
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(b: &[u8]) -> Node {
        Node::File { source: Source::Bytes(b.to_vec()), executable: false }
    }

    #[test]
    fn insert_creates_parents_and_first_wins() {
        let mut t = Tree::new();
        t.insert("/usr/bin/a", file(b"1")).unwrap();
        t.insert("usr/bin/a", file(b"2")).unwrap();
        t.insert("/usr/lib", Node::Dir(Tree::new())).unwrap();
        assert_eq!(t.get("/usr/bin/a"), Some(&file(b"1")));
        assert_eq!(t.count(), 4);
    }

    #[test]
    fn bad_paths_and_conflicts_are_refused() {
        let mut t = Tree::new();
        assert!(matches!(t.insert("/a/../b", file(b"")), Err(TreeError::BadPath(_))));
        assert!(matches!(t.insert("/a/./b", file(b"")), Err(TreeError::BadPath(_))));
        t.insert("/a", file(b"")).unwrap();
        assert!(matches!(t.insert("/a/b", file(b"")), Err(TreeError::Conflict { .. })));
        assert!(matches!(t.insert("/a", Node::Dir(Tree::new())), Err(TreeError::Conflict { .. })));
    }

    #[test]
    fn materialize_writes_modes_links_and_refuses_existing_entries() {
        use std::os::unix::fs::PermissionsExt;
        let host = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(host.path(), b"from host").unwrap();
        let mut t = Tree::new();
        t.insert("/bin/run", Node::File { source: Source::Path(host.path().into()), executable: true }).unwrap();
        t.insert("/etc/x", file(b"gen")).unwrap();
        t.insert("/link", Node::Symlink("bin/run".into())).unwrap();
        t.insert("/empty", Node::Dir(Tree::new())).unwrap();
        let dir = tempfile::tempdir().unwrap();
        t.materialize(dir.path()).unwrap();
        let mode = |p: &str| std::fs::metadata(dir.path().join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("bin/run"), 0o555);
        assert_eq!(mode("etc/x"), 0o444);
        assert_eq!(std::fs::read(dir.path().join("link")).unwrap(), b"from host");
        assert_eq!(std::fs::read_link(dir.path().join("link")).unwrap(), Path::new("bin/run"));
        assert!(dir.path().join("empty").is_dir());
        // A second run meets existing entries and fails instead of writing through them.
        assert!(t.materialize(dir.path()).is_err());
    }
}
