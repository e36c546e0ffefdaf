//! Gathering a package's files from the host through `[files]` (the rules are documented in
//! [`crate::source`]): resolving package paths component by component inside the package's
//! namespace, keeping symlinks, walking included directories, and generating `/etc` files.

use crate::source::{Problem, Skipped};
use crate::tree::{Node, Source, Tree};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::PathBuf;

/// Where package paths come from on the host, and which are hidden.
#[derive(Clone, Debug, Default)]
pub(crate) struct FileMap {
    /// (`to` as package path components, absolute host `from`), in order.
    pub mappings: Vec<(Vec<String>, PathBuf)>,
    /// Package paths (components) never included nor entered.
    pub hide: Vec<Vec<String>>,
}

/// Files written by the packer instead of read from the host.
pub(crate) const GENERATED: [(&str, &str); 5] = [
    (
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/var:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    ),
    ("/etc/group", "root:x:0:\napp:x:1000:\nnobody:x:65534:\n"),
    ("/etc/hosts", "127.0.0.1\tlocalhost sandbox\n::1\tlocalhost sandbox\n"),
    (
        "/etc/nsswitch.conf",
        "passwd: files\ngroup: files\nshadow: files\nhosts: files\nnetworks: files\nprotocols: files\nservices: files\nethers: files\nrpc: files\n",
    ),
    ("/etc/resolv.conf", "# Grains have no DNS: a grain reaches the world only through the platform.\n"),
];

/// Empty directories every image has, for the sandbox to mount over; `/.granary` receives the
/// platform's bridge (read-only).
pub(crate) const MOUNT_POINTS: [&str; 5] = ["/.granary", "/dev", "/proc", "/tmp", "/var"];

/// Why a package path is being added; `None` means "found in an included directory", where
/// a miss is reported in `skipped` rather than failing.
type Why<'a> = Option<&'a str>;

/// What a package path turned out to be.
pub(crate) enum Found {
    Host { host: PathBuf, meta: fs::Metadata },
    Generated,
    MountPoint,
    /// A directory that exists only because map entries point below it (`to = "/app/x"`
    /// with nothing mapped at `/app`).
    ImpliedDir,
}

/// Why a package path could not be resolved.
pub(crate) enum Miss {
    NotFound { tried: Vec<PathBuf> },
    Hidden(String),
    UnderMountPoint(&'static str),
    Loop,
}

/// The result of resolving a package path: the symlinks passed on the way (path, target),
/// then the real path and what is there, or why there is nothing.
pub(crate) struct Resolution {
    pub links: Vec<(String, String)>,
    pub outcome: Result<(String, Found), Miss>,
}

/// A file waiting to be inspected for ELF dependencies or a script interpreter.
pub(crate) struct Pending {
    pub path: String,
    pub host: PathBuf,
    pub executable: bool,
    /// False when found only in an included directory.
    pub needed: bool,
}

pub(crate) struct Collector<'a> {
    files: &'a FileMap,
    pub(crate) library_path: Vec<String>,
    pub(crate) ld_so_conf: Option<Vec<String>>,
    tree: Tree,
    skipped: Vec<Skipped>,
    walked: HashSet<String>,
    /// Files queued for inspection, and whether as needed (an error if what they need is missing).
    seen_files: HashMap<String, bool>,
    pending: Vec<Pending>,
}

pub(crate) fn join(parts: &[String]) -> String {
    format!("/{}", parts.join("/"))
}

fn split(path: &str) -> Vec<String> {
    path.split('/').filter(|c| !c.is_empty()).map(str::to_owned).collect()
}

impl<'a> Collector<'a> {
    /// A collector whose tree already holds the generated `/etc` files and the mount points.
    /// `library_path` is the app's `LD_LIBRARY_PATH`, searched like the dynamic loader does.
    pub fn new(files: &'a FileMap, library_path: Option<&str>) -> Result<Self, Problem> {
        let mut tree = Tree::new();
        for (path, text) in GENERATED {
            let node = Node::File { source: Source::Bytes(text.as_bytes().to_vec()), executable: false };
            tree.insert(path, node).map_err(Problem::Tree)?;
        }
        for dir in MOUNT_POINTS {
            tree.insert(dir, Node::Dir(Tree::new())).map_err(Problem::Tree)?;
        }
        let library_path = library_path
            .map(|p| p.split([':', ';']).filter(|d| d.starts_with('/')).map(str::to_owned).collect())
            .unwrap_or_default();
        Ok(Collector {
            files,
            library_path,
            ld_so_conf: None,
            tree,
            skipped: Vec::new(),
            walked: HashSet::new(),
            seen_files: HashMap::new(),
            pending: Vec::new(),
        })
    }

    /// Adds an `include` entry: a file, or a directory recursively.
    pub fn include(&mut self, path: &str, why: &str) -> Result<(), Problem> {
        let r = self.resolve(path)?;
        self.place(path, r, Some(why), true)
    }

    /// Adds argv[0] of a command, which must be an executable file.
    pub fn command(&mut self, path: &str, why: &str) -> Result<(), Problem> {
        let r = self.resolve(path)?;
        if let Ok((_, Found::Host { host, meta })) = &r.outcome {
            if meta.is_file() && meta.permissions().mode() & 0o111 == 0 {
                return Err(Problem::NotExecutable { path: path.into(), why: why.into(), host: host.clone() });
            }
        }
        self.place(path, r, Some(why), false)
    }

    /// Adds a file something needs (a loader, a library, an interpreter).
    pub fn need_file(&mut self, path: &str, why: &str) -> Result<(), Problem> {
        let r = self.resolve(path)?;
        self.place(path, r, Some(why), false)
    }

    /// Adds a file chosen by a search (the caller has checked the resolution found a file).
    pub fn place_found(&mut self, path: &str, r: Resolution, why: &str) -> Result<(), Problem> {
        self.place(path, r, Some(why), false)
    }

    /// Inspects every added file (more may be added meanwhile), then returns the tree.
    pub fn finish(mut self) -> Result<(Tree, Vec<Skipped>), Problem> {
        while let Some(p) = self.pending.pop() {
            self.inspect(p)?;
        }
        Ok((self.tree, self.skipped))
    }

    pub(crate) fn skip(&mut self, path: &str, reason: String) {
        self.skipped.push(Skipped { path: path.to_owned(), reason });
    }

    fn hidden_by(&self, parts: &[String]) -> Option<String> {
        self.files.hide.iter().find(|h| parts.starts_with(h)).map(|h| join(h))
    }

    /// Finds a package path on the host through the map: the first entry that covers it and
    /// has something there. The entry's own `from` is followed if it is a symlink.
    fn lookup(&self, parts: &[String], tried: &mut Vec<PathBuf>) -> Result<Option<(PathBuf, fs::Metadata)>, Problem> {
        for (to, from) in &self.files.mappings {
            if !parts.starts_with(to) {
                continue;
            }
            let rest = &parts[to.len()..];
            let host = rest.iter().fold(from.clone(), |h, c| h.join(c));
            let meta = if rest.is_empty() { fs::metadata(&host) } else { fs::symlink_metadata(&host) };
            match meta {
                Ok(m) => return Ok(Some((host, m))),
                Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => tried.push(host),
                Err(err) => return Err(Problem::Io { host, err }),
            }
        }
        Ok(None)
    }

    /// True if no map entry covers `parts` but some entry is mapped below it.
    fn implied_dir(&self, parts: &[String]) -> bool {
        self.files.mappings.iter().any(|(to, _)| to.len() > parts.len() && to.starts_with(parts))
    }

    /// Resolves a package path component by component, following symlinks inside the
    /// package's namespace (`..` above `/` stays at `/`, as in the kernel).
    pub fn resolve(&self, path: &str) -> Result<Resolution, Problem> {
        let mut todo: std::collections::VecDeque<String> = split(path).into();
        let mut cur: Vec<String> = Vec::new();
        let mut links = Vec::new();
        let mut hops = 0;
        let miss = |links, m| Ok(Resolution { links, outcome: Err(m) });
        if todo.is_empty() {
            let mut tried = Vec::new();
            return match self.lookup(&[], &mut tried)? {
                Some((host, meta)) => Ok(Resolution { links, outcome: Ok(("/".into(), Found::Host { host, meta })) }),
                None => miss(links, Miss::NotFound { tried }),
            };
        }
        while let Some(c) = todo.pop_front() {
            match c.as_str() {
                "." => continue,
                ".." => {
                    cur.pop();
                    continue;
                }
                _ => cur.push(c),
            }
            let here = join(&cur);
            let last = todo.is_empty();
            if let Some(rule) = self.hidden_by(&cur) {
                return miss(links, Miss::Hidden(rule));
            }
            if let Some(mount) = MOUNT_POINTS.iter().find(|m| **m == here) {
                if last {
                    return Ok(Resolution { links, outcome: Ok((here, Found::MountPoint)) });
                }
                return miss(links, Miss::UnderMountPoint(mount));
            }
            if GENERATED.iter().any(|(g, _)| *g == here) {
                if last {
                    return Ok(Resolution { links, outcome: Ok((here, Found::Generated)) });
                }
                return miss(links, Miss::NotFound { tried: Vec::new() });
            }
            let mut tried = Vec::new();
            let Some((host, meta)) = self.lookup(&cur, &mut tried)? else {
                if self.implied_dir(&cur) {
                    if last {
                        return Ok(Resolution { links, outcome: Ok((here, Found::ImpliedDir)) });
                    }
                    continue;
                }
                return miss(links, Miss::NotFound { tried });
            };
            if meta.file_type().is_symlink() {
                hops += 1;
                if hops > 40 {
                    return miss(links, Miss::Loop);
                }
                let target = fs::read_link(&host).map_err(|err| Problem::Io { host: host.clone(), err })?;
                let target = target.into_os_string().into_string().map_err(|_| Problem::NonUtf8(host.clone()))?;
                links.push((here, target.clone()));
                cur.pop();
                if target.starts_with('/') {
                    cur.clear();
                }
                for t in split(&target).into_iter().rev() {
                    todo.push_front(t);
                }
                if todo.is_empty() {
                    // The link points at `/` (or `.` in `/`): the root itself.
                    let mut tried = Vec::new();
                    return match self.lookup(&cur, &mut tried)? {
                        Some((host, meta)) => Ok(Resolution { links, outcome: Ok((join(&cur), Found::Host { host, meta })) }),
                        None => miss(links, Miss::NotFound { tried }),
                    };
                }
            } else if last {
                return Ok(Resolution { links, outcome: Ok((here, Found::Host { host, meta })) });
            } else if !meta.is_dir() {
                tried.push(host);
                return miss(links, Miss::NotFound { tried });
            }
        }
        // Only reachable when the path ends in `.` or `..`: resolve the directory reached.
        let here = join(&cur);
        let mut tried = Vec::new();
        match self.lookup(&cur, &mut tried)? {
            Some((host, meta)) => Ok(Resolution { links, outcome: Ok((here, Found::Host { host, meta })) }),
            None => miss(links, Miss::NotFound { tried }),
        }
    }

    fn insert(&mut self, path: &str, node: Node) -> Result<(), Problem> {
        self.tree.insert(path, node).map_err(Problem::Tree)
    }

    /// Puts a resolved path into the tree. `why` is `None` for entries of an included
    /// directory; `recursive` walks a directory found there.
    fn place(&mut self, path: &str, r: Resolution, why: Why<'_>, recursive: bool) -> Result<(), Problem> {
        for (link, target) in r.links {
            self.insert(&link, Node::Symlink(target))?;
        }
        let need = |why: &str| (path.to_owned(), why.to_owned());
        let (real, found) = match r.outcome {
            Ok(x) => x,
            Err(m) => {
                let Some(why) = why else {
                    let reason = match m {
                        Miss::NotFound { .. } => "symlink target not found".into(),
                        Miss::Hidden(rule) => format!("symlink target hidden by `{rule}`"),
                        Miss::UnderMountPoint(mnt) => format!("symlink target under mount point {mnt}"),
                        Miss::Loop => "symlink loop".into(),
                    };
                    self.skip(path, reason);
                    return Ok(());
                };
                let (path, why) = need(why);
                return Err(match m {
                    Miss::NotFound { tried } => Problem::NotFound {
                        path,
                        why,
                        tried: tried.iter().map(|t| t.display().to_string()).collect::<Vec<_>>().join(", "),
                    },
                    Miss::Hidden(rule) => Problem::Hidden { path, why, rule },
                    Miss::UnderMountPoint(mount) => Problem::UnderMountPoint { path, why, mount: mount.into() },
                    Miss::Loop => Problem::SymlinkLoop { path, why },
                });
            }
        };
        let (host, meta) = match found {
            Found::Host { host, meta } => (host, meta),
            Found::Generated => return Ok(()),
            Found::MountPoint if recursive => return Ok(()),
            Found::ImpliedDir if recursive => return self.walk(&real),
            Found::ImpliedDir => {
                let (path, why) = need(why.unwrap_or("a symlink target"));
                return Err(Problem::NotAFile { path, why });
            }
            Found::MountPoint => {
                let (path, why) = need(why.unwrap_or("a symlink target"));
                return Err(Problem::NotAFile { path, why });
            }
        };
        let ft = meta.file_type();
        if ft.is_file() {
            let executable = meta.permissions().mode() & 0o111 != 0;
            self.insert(&real, Node::File { source: Source::Path(host.clone()), executable })?;
            let needed = why.is_some();
            // Inspect again when first seen in a directory and now needed, so that a missing
            // interpreter becomes an error.
            if self.seen_files.get(&real).is_none_or(|was| needed && !was) {
                self.seen_files.insert(real.clone(), needed);
                self.pending.push(Pending { path: real, host, executable, needed });
            }
            return Ok(());
        }
        if ft.is_dir() {
            if recursive {
                return self.walk(&real);
            }
            let (path, why) = need(why.unwrap_or("a symlink target"));
            return Err(Problem::NotAFile { path, why });
        }
        let kind = if ft.is_fifo() {
            "a fifo"
        } else if ft.is_socket() {
            "a socket"
        } else if ft.is_block_device() || ft.is_char_device() {
            "a device"
        } else {
            "not a file, directory or symlink"
        };
        match why {
            None => {
                self.skip(&real, format!("{kind}: packages carry only files, directories and symlinks"));
                Ok(())
            }
            Some(why) => {
                let (path, why) = need(why);
                Err(Problem::Special { path, why, kind, host })
            }
        }
    }

    /// Includes the directory at real package path `dir` with everything in it.
    fn walk(&mut self, dir: &str) -> Result<(), Problem> {
        if !self.walked.insert(dir.to_owned()) {
            return Ok(());
        }
        self.insert(dir, Node::Dir(Tree::new()))?;
        let parts = split(dir);
        for name in self.list_dir(&parts)? {
            let mut child = parts.clone();
            child.push(name);
            let path = join(&child);
            let reserved = MOUNT_POINTS.contains(&path.as_str()) || GENERATED.iter().any(|(g, _)| *g == path);
            if reserved || self.hidden_by(&child).is_some() {
                continue;
            }
            let r = self.resolve(&path)?;
            self.place(&path, r, None, true)?;
        }
        Ok(())
    }

    /// The names in a package directory: the union over every map entry that has it on the
    /// host as a directory, plus the first component of entries mapped below it.
    pub(crate) fn list_dir(&self, parts: &[String]) -> Result<BTreeSet<String>, Problem> {
        let mut names = BTreeSet::new();
        for (to, from) in &self.files.mappings {
            if to.len() > parts.len() && to.starts_with(parts) {
                names.insert(to[parts.len()].clone());
                continue;
            }
            if !parts.starts_with(to) {
                continue;
            }
            let rest = &parts[to.len()..];
            let host = rest.iter().fold(from.clone(), |h, c| h.join(c));
            let meta = if rest.is_empty() { fs::metadata(&host) } else { fs::symlink_metadata(&host) };
            if !meta.is_ok_and(|m| m.is_dir()) {
                continue;
            }
            let entries = fs::read_dir(&host).map_err(|err| Problem::Io { host: host.clone(), err })?;
            for e in entries {
                let e = e.map_err(|err| Problem::Io { host: host.clone(), err })?;
                let name = e.file_name().into_string().map_err(|_| Problem::NonUtf8(e.path()))?;
                names.insert(name);
            }
        }
        Ok(names)
    }

    /// Reads a package file's bytes through the map (following symlinks), if it exists.
    pub(crate) fn read_package_file(&self, path: &str) -> Result<Option<Vec<u8>>, Problem> {
        match self.resolve(path)?.outcome {
            Ok((_, Found::Host { host, meta })) if meta.is_file() => {
                fs::read(&host).map(Some).map_err(|err| Problem::Io { host, err })
            }
            _ => Ok(None),
        }
    }

    /// Looks at a file's first bytes: ELF files get their loader and libraries, executable
    /// scripts their interpreter.
    fn inspect(&mut self, p: Pending) -> Result<(), Problem> {
        use std::io::Read;
        let mut head = [0u8; 256];
        let mut f = fs::File::open(&p.host).map_err(|err| Problem::Io { host: p.host.clone(), err })?;
        let mut n = 0;
        while n < head.len() {
            match f.read(&mut head[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(err) => return Err(Problem::Io { host: p.host.clone(), err }),
            }
        }
        let head = &head[..n];
        if head.starts_with(b"\x7fELF") {
            let data = fs::read(&p.host).map_err(|err| Problem::Io { host: p.host.clone(), err })?;
            return match crate::elf::parse(&data) {
                Ok(info) => self.add_elf_dependencies(&p.path, &info),
                Err(err) if p.needed => Err(Problem::Elf { path: p.path, host: p.host, err }),
                Err(err) => {
                    self.skip(&p.path, format!("not a loadable ELF file ({err}): what it needs was not looked for"));
                    Ok(())
                }
            };
        }
        if p.executable && head.starts_with(b"#!") {
            return self.add_interpreter(&p, head);
        }
        Ok(())
    }
}
