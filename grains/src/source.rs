//! `granary.toml`: the source `granary pack` reads, turned into a [`Manifest`] and the file
//! [`Tree`] the package will carry.
//!
//! # The format
//!
//! Unknown keys anywhere are an error that names the key. Paths called *package paths* are
//! absolute paths as the app sees them inside its grain (`/app/server`); *host paths* are
//! paths on the machine that packs.
//!
//! ```toml
//! [app]
//! id = "<52-char app id>"           # required; from `granary keygen`
//! title = "Notes"                   # required; shown to users
//! version = 3                       # required; u32, increases with every release
//! marketing_version = "1.2.0"       # optional (""); the version shown to users
//! min_upgradable_version = 1        # optional (0); grains made by an older version cannot upgrade
//! environment = { HOME = "/var", PATH = "/usr/bin:/bin" }
//!                                   # optional ({}); the whole environment, nothing is inherited
//! continue_command = ["/app/server", "--port", "8000"]
//!                                   # required; runs when an existing grain starts again
//!
//! [[actions]]                       # at least one; each makes a "new grain" button
//! title = "New notebook"            # required; the button text
//! noun = "notebook"                 # required; what one grain is called
//! command = ["/app/server", "--new"] # required; argv[0] is an absolute package path
//!
//! [http]                            # optional; absent = not an HTTP app (port 0)
//! port = 8000                       # required in [http]; the app listens on 127.0.0.1:port
//! api_path = "/api"                 # optional (""); prefix served to API-token holders
//! identity_headers = { "X-Remote-User" = "handle", "X-Forwarded-Groups" = "permissions" }
//!                                   # optional ({}); reverse-proxy headers the platform fills:
//!                                   # user-id, handle, display-name or permissions
//!
//! [[permissions]]                   # optional; a permission's id is its position: never
//! name = "edit"                     #   reorder or delete, set `obsolete = true` instead
//! title = "Edit"                    # required
//! description = "..."               # optional ("")
//! obsolete = false                  # optional (false)
//!
//! [[roles]]                         # optional; if any, exactly one has `default = true`
//! name = "editor"                   # required; unique among permissions and roles
//! title = "Editor"                  # required
//! description = "..."               # optional ("")
//! permissions = ["edit"]            # optional ([]); permission *names* this role grants
//! obsolete = false                  # optional (false)
//! default = true                    # optional (false); the role new shares get
//!
//! [[powerbox.provides]]             # optional; an HTTP API other grains may be granted
//! api = "notes"                     # required; 1-40 of a-z, 0-9, `-`; unique; the name
//!                                   #   requests use (HttpApi.apiName)
//! title = "Notes"                   # required; shown in the powerbox picker
//! path_prefix = "/api/"             # required; requests through the grant go below it
//! permissions = ["read"]            # optional ([]); what the choosing user must hold
//! chooser_path = "/choose"          # optional (""); a page of the app, shown in the
//!                                   #   dialog, where the person chooses what to grant
//!
//! [[powerbox.provides]]             # or: a raw Cap'n Proto interface, by type id
//! interface = "0xa2384a22bc95e238"  # required (hex string); unique; no api/path_prefix
//! title = "Counter"                 # required; permissions, chooser_path as above
//!
//! [capnp]                           # required if an interface is provided
//! port = 8001                       # the app serves Grain.AppObjects on 127.0.0.1:port
//!
//! [metadata]                        # optional; every key optional ("")
//! icon = "icon.svg"                 # file relative to granary.toml; .svg or .png
//! description = "..."
//! license = "MIT"
//! author = "..."
//! website = "https://..."
//!
//! [files]                           # required
//! map = [ { to = "/app", from = "build" }, { to = "/", from = "/" } ]
//! include = ["/app", "/usr/bin/python3"]
//! hide = ["/app/.git"]
//! ```
//!
//! ## `[files]`: which host files the package carries
//!
//! - `map` (required, non-empty): where package paths are found on the host. A package path
//!   uses every entry whose `to` is it or one of its parent directories, in order; the first
//!   whose host path (`from` joined with the rest of the path) exists wins. A directory's
//!   contents are the union over all entries. `from` is relative to granary.toml's directory,
//!   or absolute; the `from` of an entry is followed if it is a symlink.
//! - `include` (optional): package paths always included; directories recursively.
//! - `hide` (optional): package paths never included and never entered (with everything
//!   under them). Needing a hidden path (a command, a library) is an error.
//!
//! Also included, without being listed: argv\[0\] of every command (it must be an executable
//! file), and for every included file, recursively: the dynamic loader and the libraries of an
//! ELF file, and the interpreter of an executable script (see [`crate::elf`]).
//!
//! Symlinks are kept as symlinks, their target verbatim, and the target is resolved inside the
//! package's namespace and included too (a directory recursively when the link was found in an
//! included directory). A symlinked directory on the way to a path (on merged-/usr systems,
//! `/lib -> usr/lib`) becomes a symlink in the package and the file lands at its real path, so
//! every path resolves inside a chroot of the package. A symlink in an included directory whose
//! target is missing or hidden is kept dangling and reported in [`PackSource::skipped`].
//!
//! Devices, fifos and sockets are never included: inside an included directory they are
//! skipped and reported in [`PackSource::skipped`]; named directly (or needed) they are an
//! error. A host name that is not UTF-8 is an error naming it.
//!
//! Always generated, whatever the map says (the host's are never read): `/etc/passwd` and
//! `/etc/group` (root, `app` uid/gid 1000 with home `/var`, nobody), `/etc/hosts` (`localhost`
//! and `sandbox` on 127.0.0.1 and ::1), `/etc/nsswitch.conf` (`files` only) and
//! `/etc/resolv.conf` (a comment: grains have no DNS). Always present as empty directories:
//! `/dev`, `/proc`, `/tmp` and `/var`, where the sandbox mounts its own file systems; nothing
//! can be packed under them.

use crate::collect::{Collector, FileMap};
use crate::manifest::{self, Manifest, ManifestError};
use crate::tree::{Tree, TreeError};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use crate::template::init_template;

/// What a package is made of: its manifest and its files.
#[derive(Clone, Debug)]
pub struct PackSource {
    pub manifest: Manifest,
    pub tree: Tree,
    /// Things left out on purpose (special files, dangling symlink targets, scripts whose
    /// interpreter is missing in an included directory), for the packer to show.
    pub skipped: Vec<Skipped>,
}

/// A package path that was left out, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

/// Why `granary.toml` cannot be packed. Its message starts with the granary.toml path.
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", file.display())]
pub struct SourceError {
    pub file: PathBuf,
    pub problem: Problem,
}

/// What is wrong, without the granary.toml path.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("cannot read it: {0}; check the path and its permissions")]
    Read(std::io::Error),
    #[error("{0}(see the format in the comments of `granary init`'s granary.toml)")]
    Toml(String),
    #[error("{0}")]
    Manifest(#[from] ManifestError),
    #[error("role `{role}` lists permission `{permission}`, which no [[permissions]] entry defines; add it or remove it from the role")]
    UnknownPermission { role: String, permission: String },
    #[error("[[powerbox.provides]] `{api}` lists permission `{permission}`, which no [[permissions]] entry defines; add it or remove it from the API")]
    UnknownApiPermission { api: String, permission: String },
    #[error("[[powerbox.provides]] interface `{0}` is not a hex type id; write it as a string such as \"0xa2384a22bc95e238\" (the id in the interface's schema)")]
    BadInterface(String),
    #[error("icon `{}` must end in .svg or .png", .0.display())]
    IconType(PathBuf),
    #[error("{0}; paths must be absolute package paths without `.` or `..`")]
    BadPath(TreeError),
    #[error("[files] map is empty; add an entry such as {{ to = \"/\", from = \"/\" }}")]
    EmptyMap,
    #[error("cannot read {}: {err}; check that it exists and is readable", host.display())]
    Io { host: PathBuf, err: std::io::Error },
    #[error("host path {} has a name that is not UTF-8; rename it or add its package path to [files] hide", .0.display())]
    NonUtf8(PathBuf),
    #[error("package path {path} ({why}) was not found: no [files] map entry has it on the host (tried {tried}); put it at one of those host paths or change [files] map")]
    NotFound { path: String, why: String, tried: String },
    #[error("package path {path} ({why}) is hidden by [files] hide entry `{rule}`; remove that entry or stop needing the path")]
    Hidden { path: String, why: String, rule: String },
    #[error("package path {path} ({why}) is under {mount}, which the sandbox replaces at run time; install it elsewhere, such as under /app")]
    UnderMountPoint { path: String, why: String, mount: String },
    #[error("package path {path} ({why}) goes through more than 40 symlinks; fix the symlink loop on the host")]
    SymlinkLoop { path: String, why: String },
    #[error("package path {path} ({why}) is {kind} on the host ({}); packages carry only files, directories and symlinks: hide it or stop needing it", host.display())]
    Special { path: String, why: String, kind: &'static str, host: PathBuf },
    #[error("package path {path} ({why}) is a directory, but a file is needed; point it at a file")]
    NotAFile { path: String, why: String },
    #[error("package path {path} ({why}) is not executable on the host ({}); run `chmod +x` on it", host.display())]
    NotExecutable { path: String, why: String, host: PathBuf },
    #[error("{0}; fix [files] map so that each path is found only once")]
    Tree(TreeError),
    #[error("cannot read ELF file {path} ({}): {err}; it may be corrupt, hide it if it is not needed", host.display())]
    Elf { path: String, host: PathBuf, err: String },
    #[error("{binary} needs library {library}, which is in none of {searched}; add its directory to [files] include or map")]
    MissingLibrary { binary: String, library: String, searched: String },
    #[error("script {script} names interpreter `{interpreter}`, which is not an absolute path; write `#!/usr/bin/env NAME` or the full path")]
    BadInterpreter { script: String, interpreter: String },
}

// ---- The TOML document ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    app: AppToml,
    #[serde(default)]
    actions: Vec<ActionToml>,
    http: Option<HttpToml>,
    #[serde(default)]
    permissions: Vec<PermissionToml>,
    #[serde(default)]
    roles: Vec<RoleToml>,
    #[serde(default)]
    metadata: MetadataToml,
    #[serde(default)]
    powerbox: PowerboxToml,
    capnp: Option<CapnpToml>,
    files: FilesToml,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PowerboxToml {
    #[serde(default)]
    provides: Vec<ProvideToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProvideToml {
    #[serde(default)]
    api: String,
    title: String,
    #[serde(default)]
    path_prefix: String,
    #[serde(default)]
    permissions: Vec<String>,
    #[serde(default)]
    chooser_path: String,
    /// A Cap'n Proto type id as hex text (`"0xa2384a22bc95e238"`): TOML integers stop at 2^63.
    interface: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CapnpToml {
    port: u16,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppToml {
    id: String,
    title: String,
    version: u32,
    #[serde(default)]
    marketing_version: String,
    #[serde(default)]
    min_upgradable_version: u32,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    continue_command: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionToml {
    title: String,
    noun: String,
    command: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpToml {
    port: u16,
    #[serde(default)]
    api_path: String,
    #[serde(default)]
    identity_headers: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PermissionToml {
    name: String,
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    obsolete: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleToml {
    name: String,
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    permissions: Vec<String>,
    #[serde(default)]
    obsolete: bool,
    #[serde(default)]
    default: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct MetadataToml {
    icon: Option<PathBuf>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    license: String,
    #[serde(default)]
    author: String,
    #[serde(default)]
    website: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilesToml {
    map: Vec<MapToml>,
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    hide: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MapToml {
    to: String,
    from: PathBuf,
}

/// Reads `granary.toml`, checks the manifest, and gathers the package's files from the host.
pub fn load(toml_path: &Path) -> Result<PackSource, SourceError> {
    let fail = |problem| SourceError { file: toml_path.to_owned(), problem };
    let text = std::fs::read_to_string(toml_path).map_err(|e| fail(Problem::Read(e)))?;
    let doc: Doc = toml::from_str(&text).map_err(|e| fail(Problem::Toml(e.to_string())))?;
    let base = std::path::absolute(toml_path)
        .map_err(|e| fail(Problem::Read(e)))?
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from("/"));
    let files = doc_files(&doc.files, &base).map_err(fail)?;
    let manifest = to_manifest(doc, &base).map_err(fail)?;
    manifest.validate().map_err(|e| fail(Problem::Manifest(e)))?;
    let (tree, skipped) = gather(&manifest, &files).map_err(fail)?;
    Ok(PackSource { manifest, tree, skipped })
}

fn doc_files(f: &FilesToml, base: &Path) -> Result<(FileMap, Vec<String>), Problem> {
    if f.map.is_empty() {
        return Err(Problem::EmptyMap);
    }
    let comps = |p: &str| -> Result<Vec<String>, Problem> {
        if !p.starts_with('/') {
            return Err(Problem::BadPath(TreeError::BadPath(p.to_owned())));
        }
        Ok(Tree::components(p).map_err(Problem::BadPath)?.into_iter().map(str::to_owned).collect())
    };
    let mut map = FileMap::default();
    for m in &f.map {
        map.mappings.push((comps(&m.to)?, base.join(&m.from)));
    }
    for h in &f.hide {
        map.hide.push(comps(h)?);
    }
    for i in &f.include {
        comps(i)?;
    }
    Ok((map, f.include.clone()))
}

fn gather(m: &Manifest, (map, include): &(FileMap, Vec<String>)) -> Result<(Tree, Vec<Skipped>), Problem> {
    let library_path = m.environment.iter().find(|(k, _)| k == "LD_LIBRARY_PATH").map(|(_, v)| v.as_str());
    let mut c = Collector::new(map, library_path)?;
    for path in include {
        c.include(path, "listed in [files] include")?;
    }
    for a in &m.actions {
        c.command(&a.command.argv[0], &format!("argv[0] of action `{}`", a.title))?;
    }
    c.command(&m.continue_command.argv[0], "argv[0] of continue_command")?;
    c.finish()
}

fn to_manifest(doc: Doc, base: &Path) -> Result<Manifest, Problem> {
    let mut roles = Vec::new();
    for r in doc.roles {
        let mut flags = vec![false; doc.permissions.len()];
        for name in &r.permissions {
            let i = doc.permissions.iter().position(|p| &p.name == name).ok_or_else(|| {
                Problem::UnknownPermission { role: r.name.clone(), permission: name.clone() }
            })?;
            flags[i] = true;
        }
        roles.push(manifest::RoleDef {
            name: r.name,
            title: r.title,
            description: r.description,
            permissions: flags,
            obsolete: r.obsolete,
            default: r.default,
        });
    }
    let mut provides = Vec::new();
    for p in doc.powerbox.provides {
        let interface_id = match &p.interface {
            None => 0,
            Some(hex) => hex
                .strip_prefix("0x")
                .and_then(|h| u64::from_str_radix(h, 16).ok())
                .ok_or_else(|| Problem::BadInterface(hex.clone()))?,
        };
        let name = if interface_id != 0 { format!("interface {interface_id:#018x}") } else { p.api.clone() };
        let mut flags = vec![false; doc.permissions.len()];
        for perm in &p.permissions {
            let i = doc.permissions.iter().position(|d| &d.name == perm).ok_or_else(|| {
                Problem::UnknownApiPermission { api: name.clone(), permission: perm.clone() }
            })?;
            flags[i] = true;
        }
        provides.push(manifest::ApiProvide {
            api: p.api,
            title: p.title,
            path_prefix: p.path_prefix,
            permissions: flags,
            chooser_path: p.chooser_path,
            interface_id,
        });
    }
    let (icon, icon_media_type) = match &doc.metadata.icon {
        None => (Vec::new(), String::new()),
        Some(rel) => {
            let path = base.join(rel);
            let media = match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase) {
                Some(e) if e == "svg" => "image/svg+xml",
                Some(e) if e == "png" => "image/png",
                _ => return Err(Problem::IconType(path)),
            };
            let bytes = std::fs::read(&path).map_err(|err| Problem::Io { host: path.clone(), err })?;
            (bytes, media.to_owned())
        }
    };
    let command = |argv: Vec<String>| manifest::Command { argv };
    Ok(Manifest {
        app_id: doc.app.id,
        app_title: doc.app.title,
        app_version: doc.app.version,
        app_marketing_version: doc.app.marketing_version,
        min_upgradable_app_version: doc.app.min_upgradable_version,
        actions: doc
            .actions
            .into_iter()
            .map(|a| manifest::Action { title: a.title, noun_phrase: a.noun, command: command(a.command) })
            .collect(),
        continue_command: command(doc.app.continue_command),
        environment: doc.app.environment.into_iter().collect(),
        http: doc
            .http
            .map(|h| manifest::HttpSettings { port: h.port, api_path: h.api_path, identity_headers: h.identity_headers.into_iter().collect() })
            .unwrap_or_default(),
        permissions: doc
            .permissions
            .into_iter()
            .map(|p| manifest::PermissionDef {
                name: p.name,
                title: p.title,
                description: p.description,
                obsolete: p.obsolete,
            })
            .collect(),
        roles,
        metadata: manifest::Metadata {
            icon,
            icon_media_type,
            description: doc.metadata.description,
            license: doc.metadata.license,
            author: doc.metadata.author,
            website: doc.metadata.website,
        },
        provides,
        capnp_port: doc.capnp.map_or(0, |c| c.port),
    })
}
