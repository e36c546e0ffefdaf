//! The app manifest: the Rust form of `package.capnp`'s `Manifest`, its validation, and its
//! conversion to and from Cap'n Proto. Its source form, `granary.toml`, is read by
//! [`crate::source`].

use crate::ids::AppId;
use granary_schema::package_capnp::manifest;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub app_id: String,
    pub app_title: String,
    pub app_version: u32,
    pub app_marketing_version: String,
    pub min_upgradable_app_version: u32,
    pub actions: Vec<Action>,
    pub continue_command: Command,
    pub environment: Vec<(String, String)>,
    pub http: HttpSettings,
    pub permissions: Vec<PermissionDef>,
    pub roles: Vec<RoleDef>,
    pub metadata: Metadata,
    /// HTTP APIs and raw interfaces a grain of this app can give other grains through the
    /// powerbox.
    #[serde(default)]
    pub provides: Vec<ApiProvide>,
    /// The port on 127.0.0.1 inside the grain where the app serves `Grain.AppObjects`; 0 = none.
    #[serde(default)]
    pub capnp_port: u16,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    pub title: String,
    pub noun_phrase: String,
    pub command: Command,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub argv: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpSettings {
    pub port: u16,
    pub api_path: String,
    /// (header, identity field) pairs the bridge fills; see [`IDENTITY_FIELDS`].
    #[serde(default)]
    pub identity_headers: Vec<(String, String)>,
}

/// What an identity header may carry.
pub const IDENTITY_FIELDS: [&str; 4] = ["user-id", "handle", "display-name", "permissions"];

/// Headers an app may not ask the bridge to fill: the platform's own, and those that frame or
/// route the request.
fn reserved_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("x-granary-")
        || n.starts_with("proxy-")
        || ["connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "content-length", "host", "cookie", "authorization", "expect"]
            .contains(&n.as_str())
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermissionDef {
    pub name: String,
    pub title: String,
    pub description: String,
    pub obsolete: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleDef {
    pub name: String,
    pub title: String,
    pub description: String,
    /// Indexed like [`Manifest::permissions`].
    pub permissions: Vec<bool>,
    pub obsolete: bool,
    pub default: bool,
}

/// One thing the app offers other grains (`[[powerbox.provides]]` in granary.toml): an HTTP
/// API (a grain that receives it sends requests below `path_prefix` of the provider grain) or,
/// when `interface_id` is not 0, a raw Cap'n Proto interface made by the app's `AppObjects`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiProvide {
    /// The name requests use (`HttpApi.apiName`); see [`valid_api_name`]. Empty for an interface.
    pub api: String,
    /// Shown in the picker.
    pub title: String,
    /// Every request through the capability goes below this path; see [`valid_path_prefix`].
    /// Empty for an interface.
    pub path_prefix: String,
    /// Indexed like [`Manifest::permissions`]: what the choosing user must hold on the provider.
    pub permissions: Vec<bool>,
    /// A page where the person chooses what to grant, shown in the powerbox dialog; empty =
    /// none. See [`valid_chooser_path`].
    #[serde(default)]
    pub chooser_path: String,
    /// The Cap'n Proto type id of the raw interface provided; 0 for an HTTP API.
    #[serde(default)]
    pub interface_id: u64,
}

impl ApiProvide {
    /// How error messages and pages name this entry: the API name or the interface's id.
    pub fn name(&self) -> String {
        if self.interface_id != 0 {
            format!("interface {:#018x}", self.interface_id)
        } else {
            self.api.clone()
        }
    }
}

/// The longest `api` name and `path_prefix` a provided API may have.
pub const MAX_API_NAME: usize = 40;
pub const MAX_PATH_PREFIX: usize = 200;

/// The longest chooser path.
pub const MAX_CHOOSER_PATH: usize = 2048;

/// A chooser page: a path (and query) of the app starting with one `/`, at most 2048 printable
/// ASCII characters without spaces, `\` or `#`, with no `.` or `..` segment.
pub fn valid_chooser_path(p: &str) -> bool {
    p.len() <= MAX_CHOOSER_PATH
        && p.starts_with('/')
        && !p.starts_with("//")
        && p.bytes().all(|b| b.is_ascii_graphic() && !b"\\#".contains(&b))
        && !p.split('?').next().unwrap_or_default().split('/').any(|seg| seg == "." || seg == "..")
}

/// A Cap'n Proto type id: the compiler always sets the top bit.
pub fn valid_interface_id(id: u64) -> bool {
    id & (1 << 63) != 0
}

/// An API name: 1 to 40 lowercase ASCII letters, digits and `-`.
pub fn valid_api_name(api: &str) -> bool {
    (1..=MAX_API_NAME).contains(&api.len()) && api.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A path prefix: starts and ends with `/`, at most 200 printable ASCII characters without
/// spaces, `?`, `#`, `\` or `%` (an escape could hide `..`), and no `..` or `//`, so requests
/// below it cannot be normalised out of it.
pub fn valid_path_prefix(p: &str) -> bool {
    p.len() <= MAX_PATH_PREFIX
        && p.starts_with('/')
        && p.ends_with('/')
        && p.bytes().all(|b| b.is_ascii_graphic() && !b"?#\\%".contains(&b))
        && !p.contains("..")
        && !p.contains("//")
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    #[serde(skip)]
    pub icon: Vec<u8>,
    pub icon_media_type: String,
    pub description: String,
    pub license: String,
    pub author: String,
    pub website: String,
}

/// Why a manifest cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("the manifest's app id is invalid: {0}")]
    AppId(#[from] crate::ids::BadAppId),
    #[error("the manifest has no app title; set `title` in granary.toml")]
    NoTitle,
    #[error("the manifest has no action; add an [[actions]] entry with a title and a command")]
    NoAction,
    #[error("command `{0}` must start with an absolute path inside the package, such as /app/server")]
    BadCommand(String),
    #[error("min_upgradable_app_version ({min}) is greater than app_version ({version}); lower it")]
    MinVersion { min: u32, version: u32 },
    #[error("role `{role}` lists {got} permission flags but the manifest defines {want} permissions")]
    RolePermissions { role: String, got: usize, want: usize },
    #[error("exactly one role must be the default (found {0}); mark one role `default = true`")]
    DefaultRole(usize),
    #[error("the name `{0}` is used twice among permissions or roles; names must be unique")]
    DuplicateName(String),
    #[error("environment variable name `{0}` is empty or contains `=` or NUL")]
    BadEnv(String),
    #[error("identity header `{header}` = `{field}`: the header must be a plain header name that is not X-Granary-*, hop-by-hop, Host, Cookie or Authorization, and the field one of user-id, handle, display-name, permissions")]
    BadIdentityHeader { header: String, field: String },
    #[error("provided API name `{0}` is invalid; use 1 to 40 lowercase letters, digits and `-`, such as `notes`")]
    BadApiName(String),
    #[error("provided API `{0}` is listed twice in [[powerbox.provides]]; each API name may appear once")]
    DuplicateApi(String),
    #[error("provided API `{0}` has no title; set `title`, which the powerbox picker shows")]
    NoApiTitle(String),
    #[error("provided API `{api}` has path_prefix `{prefix}`; it must start and end with `/`, have at most 200 printable ASCII characters without spaces, `?`, `#`, `\\` or `%`, and contain no `..` or `//`, such as `/api/`")]
    BadPathPrefix { api: String, prefix: String },
    #[error("provided API `{api}` lists {got} permission flags but the manifest defines {want} permissions")]
    ApiPermissions { api: String, got: usize, want: usize },
    #[error("provided `{api}` has chooser_path `{path}`; it must start with one `/`, have at most 2048 printable ASCII characters without spaces, `\\` or `#`, and no `.` or `..` segment, such as `/choose`")]
    BadChooserPath { api: String, path: String },
    #[error("[[powerbox.provides]] interface {0:#018x} is not a Cap'n Proto type id (those have the top bit set); copy the id the Cap'n Proto compiler gives the interface (`capnp compile -ocapnp` prints it), such as 0xa2384a22bc95e238")]
    BadInterfaceId(u64),
    #[error("[[powerbox.provides]] interface {0:#018x} must not also set `api` or `path_prefix`; an entry provides either an HTTP API or an interface")]
    InterfaceWithApi(u64),
    #[error("[[powerbox.provides]] interface {0:#018x} is listed twice; each interface may appear once")]
    DuplicateInterface(u64),
    #[error("[[powerbox.provides]] lists interface {0:#018x} but the manifest has no Cap'n Proto port; set `[capnp] port`, where the app serves Grain.AppObjects")]
    NoCapnpPort(u64),
}

impl Manifest {
    /// The app id, parsed.
    pub fn app_id(&self) -> Result<AppId, ManifestError> {
        Ok(self.app_id.parse()?)
    }

    /// Checks the rules that do not depend on the file tree.
    pub fn validate(&self) -> Result<(), ManifestError> {
        self.app_id()?;
        if self.app_title.trim().is_empty() {
            return Err(ManifestError::NoTitle);
        }
        if self.actions.is_empty() {
            return Err(ManifestError::NoAction);
        }
        for cmd in self.actions.iter().map(|a| &a.command).chain([&self.continue_command]) {
            if !cmd.argv.first().is_some_and(|a| a.starts_with('/')) {
                return Err(ManifestError::BadCommand(cmd.argv.join(" ")));
            }
        }
        if self.min_upgradable_app_version > self.app_version {
            return Err(ManifestError::MinVersion {
                min: self.min_upgradable_app_version,
                version: self.app_version,
            });
        }
        let mut names = std::collections::HashSet::new();
        for n in self.permissions.iter().map(|p| &p.name).chain(self.roles.iter().map(|r| &r.name)) {
            if !names.insert(n) {
                return Err(ManifestError::DuplicateName(n.clone()));
            }
        }
        for r in &self.roles {
            if r.permissions.len() != self.permissions.len() {
                return Err(ManifestError::RolePermissions {
                    role: r.name.clone(),
                    got: r.permissions.len(),
                    want: self.permissions.len(),
                });
            }
        }
        let defaults = self.roles.iter().filter(|r| r.default).count();
        if !self.roles.is_empty() && defaults != 1 {
            return Err(ManifestError::DefaultRole(defaults));
        }
        for (k, _) in &self.environment {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return Err(ManifestError::BadEnv(k.clone()));
            }
        }
        for (h, f) in &self.http.identity_headers {
            let token = !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !token || reserved_header(h) || !IDENTITY_FIELDS.contains(&f.as_str()) {
                return Err(ManifestError::BadIdentityHeader { header: h.clone(), field: f.clone() });
            }
        }
        let mut apis = std::collections::HashSet::new();
        let mut interfaces = std::collections::HashSet::new();
        for p in &self.provides {
            if !p.chooser_path.is_empty() && !valid_chooser_path(&p.chooser_path) {
                return Err(ManifestError::BadChooserPath { api: p.name(), path: p.chooser_path.clone() });
            }
            if p.interface_id != 0 {
                let id = p.interface_id;
                if !valid_interface_id(id) {
                    return Err(ManifestError::BadInterfaceId(id));
                }
                if !p.api.is_empty() || !p.path_prefix.is_empty() {
                    return Err(ManifestError::InterfaceWithApi(id));
                }
                if !interfaces.insert(id) {
                    return Err(ManifestError::DuplicateInterface(id));
                }
                if self.capnp_port == 0 {
                    return Err(ManifestError::NoCapnpPort(id));
                }
                if p.title.trim().is_empty() {
                    return Err(ManifestError::NoApiTitle(p.name()));
                }
                if p.permissions.len() != self.permissions.len() {
                    return Err(ManifestError::ApiPermissions { api: p.name(), got: p.permissions.len(), want: self.permissions.len() });
                }
                continue;
            }
            if !valid_api_name(&p.api) {
                return Err(ManifestError::BadApiName(p.api.clone()));
            }
            if !apis.insert(&p.api) {
                return Err(ManifestError::DuplicateApi(p.api.clone()));
            }
            if p.title.trim().is_empty() {
                return Err(ManifestError::NoApiTitle(p.api.clone()));
            }
            if !valid_path_prefix(&p.path_prefix) {
                return Err(ManifestError::BadPathPrefix { api: p.api.clone(), prefix: p.path_prefix.clone() });
            }
            if p.permissions.len() != self.permissions.len() {
                return Err(ManifestError::ApiPermissions {
                    api: p.api.clone(),
                    got: p.permissions.len(),
                    want: self.permissions.len(),
                });
            }
        }
        Ok(())
    }

    /// Writes this manifest into a Cap'n Proto builder.
    pub fn write(&self, mut b: manifest::Builder<'_>) {
        b.set_app_id(self.app_id.as_str());
        b.set_app_title(self.app_title.as_str());
        b.set_app_version(self.app_version);
        b.set_app_marketing_version(self.app_marketing_version.as_str());
        b.set_min_upgradable_app_version(self.min_upgradable_app_version);
        let mut actions = b.reborrow().init_actions(self.actions.len() as u32);
        for (i, a) in self.actions.iter().enumerate() {
            let mut ab = actions.reborrow().get(i as u32);
            ab.set_title(a.title.as_str());
            ab.set_noun_phrase(a.noun_phrase.as_str());
            write_command(&a.command, ab.init_command());
        }
        write_command(&self.continue_command, b.reborrow().init_continue_command());
        let mut env = b.reborrow().init_environment(self.environment.len() as u32);
        for (i, (k, v)) in self.environment.iter().enumerate() {
            let mut e = env.reborrow().get(i as u32);
            e.set_key(k.as_str());
            e.set_value(v.as_str());
        }
        let mut http = b.reborrow().init_http();
        http.set_port(self.http.port);
        http.set_api_path(self.http.api_path.as_str());
        let mut ids = http.init_identity_headers(self.http.identity_headers.len() as u32);
        for (i, (h, f)) in self.http.identity_headers.iter().enumerate() {
            let mut e = ids.reborrow().get(i as u32);
            e.set_header(h.as_str());
            e.set_field(f.as_str());
        }
        let mut perms = b.reborrow().init_permissions(self.permissions.len() as u32);
        for (i, p) in self.permissions.iter().enumerate() {
            let mut pb = perms.reborrow().get(i as u32);
            pb.set_name(p.name.as_str());
            pb.set_title(p.title.as_str());
            pb.set_description(p.description.as_str());
            pb.set_obsolete(p.obsolete);
        }
        let mut roles = b.reborrow().init_roles(self.roles.len() as u32);
        for (i, r) in self.roles.iter().enumerate() {
            let mut rb = roles.reborrow().get(i as u32);
            rb.set_name(r.name.as_str());
            rb.set_title(r.title.as_str());
            rb.set_description(r.description.as_str());
            rb.set_obsolete(r.obsolete);
            rb.set_default(r.default);
            let mut flags = rb.init_permissions(r.permissions.len() as u32);
            for (j, f) in r.permissions.iter().enumerate() {
                flags.set(j as u32, *f);
            }
        }
        let mut provides = b.reborrow().init_provides(self.provides.len() as u32);
        for (i, p) in self.provides.iter().enumerate() {
            let mut pb = provides.reborrow().get(i as u32);
            pb.set_api(p.api.as_str());
            pb.set_title(p.title.as_str());
            pb.set_path_prefix(p.path_prefix.as_str());
            pb.set_chooser_path(p.chooser_path.as_str());
            pb.set_interface_id(p.interface_id);
            let mut flags = pb.init_permissions(p.permissions.len() as u32);
            for (j, f) in p.permissions.iter().enumerate() {
                flags.set(j as u32, *f);
            }
        }
        b.set_capnp_port(self.capnp_port);
        let mut m = b.init_metadata();
        m.set_icon(&self.metadata.icon);
        m.set_icon_media_type(self.metadata.icon_media_type.as_str());
        m.set_description(self.metadata.description.as_str());
        m.set_license(self.metadata.license.as_str());
        m.set_author(self.metadata.author.as_str());
        m.set_website(self.metadata.website.as_str());
    }

    /// Reads a manifest from a Cap'n Proto reader (the caller has already bounded the message).
    pub fn read(r: manifest::Reader<'_>) -> capnp::Result<Self> {
        let text = |t: capnp::Result<capnp::text::Reader<'_>>| -> capnp::Result<String> {
            Ok(t?.to_str()?.to_owned())
        };
        let mut actions = Vec::new();
        for a in r.get_actions()? {
            actions.push(Action {
                title: text(a.get_title())?,
                noun_phrase: text(a.get_noun_phrase())?,
                command: read_command(a.get_command()?)?,
            });
        }
        let mut environment = Vec::new();
        for e in r.get_environment()? {
            environment.push((text(e.get_key())?, text(e.get_value())?));
        }
        let http = r.get_http()?;
        let mut permissions = Vec::new();
        for p in r.get_permissions()? {
            permissions.push(PermissionDef {
                name: text(p.get_name())?,
                title: text(p.get_title())?,
                description: text(p.get_description())?,
                obsolete: p.get_obsolete(),
            });
        }
        let mut roles = Vec::new();
        for ro in r.get_roles()? {
            roles.push(RoleDef {
                name: text(ro.get_name())?,
                title: text(ro.get_title())?,
                description: text(ro.get_description())?,
                permissions: ro.get_permissions()?.iter().collect(),
                obsolete: ro.get_obsolete(),
                default: ro.get_default(),
            });
        }
        let mut provides = Vec::new();
        for p in r.get_provides()? {
            provides.push(ApiProvide {
                api: text(p.get_api())?,
                title: text(p.get_title())?,
                path_prefix: text(p.get_path_prefix())?,
                permissions: p.get_permissions()?.iter().collect(),
                chooser_path: text(p.get_chooser_path())?,
                interface_id: p.get_interface_id(),
            });
        }
        let m = r.get_metadata()?;
        Ok(Manifest {
            app_id: text(r.get_app_id())?,
            app_title: text(r.get_app_title())?,
            app_version: r.get_app_version(),
            app_marketing_version: text(r.get_app_marketing_version())?,
            min_upgradable_app_version: r.get_min_upgradable_app_version(),
            actions,
            continue_command: read_command(r.get_continue_command()?)?,
            environment,
            http: HttpSettings {
                port: http.get_port(),
                api_path: text(http.get_api_path())?,
                identity_headers: http
                    .get_identity_headers()?
                    .iter()
                    .map(|e| Ok((text(e.get_header())?, text(e.get_field())?)))
                    .collect::<capnp::Result<_>>()?,
            },
            permissions,
            roles,
            metadata: Metadata {
                icon: m.get_icon()?.to_vec(),
                icon_media_type: text(m.get_icon_media_type())?,
                description: text(m.get_description())?,
                license: text(m.get_license())?,
                author: text(m.get_author())?,
                website: text(m.get_website())?,
            },
            provides,
            capnp_port: r.get_capnp_port(),
        })
    }
}

fn write_command(c: &Command, b: manifest::command::Builder<'_>) {
    let mut argv = b.init_argv(c.argv.len() as u32);
    for (i, a) in c.argv.iter().enumerate() {
        argv.set(i as u32, a.as_str());
    }
}

fn read_command(r: manifest::command::Reader<'_>) -> capnp::Result<Command> {
    let mut argv = Vec::new();
    for a in r.get_argv()? {
        argv.push(a?.to_str()?.to_owned());
    }
    Ok(Command { argv })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample(app_id: &str) -> Manifest {
        let cmd = Command { argv: vec!["/app/server".into(), "--port=8000".into()] };
        Manifest {
            app_id: app_id.into(),
            app_title: "Notes".into(),
            app_version: 3,
            app_marketing_version: "1.2.0".into(),
            min_upgradable_app_version: 1,
            actions: vec![Action { title: "New notebook".into(), noun_phrase: "notebook".into(), command: cmd.clone() }],
            continue_command: cmd,
            environment: vec![("HOME".into(), "/var".into())],
            http: HttpSettings { port: 8000, api_path: "/api".into(), identity_headers: vec![("X-Remote-User".into(), "handle".into())] },
            permissions: vec![PermissionDef { name: "edit".into(), title: "Edit".into(), ..Default::default() }],
            roles: vec![
                RoleDef { name: "viewer".into(), permissions: vec![false], ..Default::default() },
                RoleDef { name: "editor".into(), permissions: vec![true], default: true, ..Default::default() },
            ],
            metadata: Metadata { icon: vec![1, 2, 3], license: "MIT".into(), ..Default::default() },
            provides: vec![ApiProvide {
                api: "notes".into(),
                title: "Notes".into(),
                path_prefix: "/api/".into(),
                permissions: vec![true],
                ..Default::default()
            }],
            capnp_port: 0,
        }
    }

    #[test]
    fn capnp_round_trip() {
        let m = sample(&AppId([3; 32]).to_string());
        m.validate().unwrap();
        let mut msg = capnp::message::Builder::new_default();
        m.write(msg.init_root());
        let back = Manifest::read(msg.get_root_as_reader().unwrap()).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn identity_headers_are_checked() {
        let id = AppId([3; 32]).to_string();
        for (h, f) in [("X-Granary-User-Id", "handle"), ("Cookie", "handle"), ("X Bad", "handle"), ("X-Remote-User", "email")] {
            let mut m = sample(&id);
            m.http.identity_headers = vec![(h.into(), f.into())];
            assert!(matches!(m.validate(), Err(ManifestError::BadIdentityHeader { .. })), "{h}={f}");
        }
        let mut m = sample(&id);
        m.http.identity_headers = vec![("X-Forwarded-Groups".into(), "permissions".into())];
        m.validate().unwrap();
    }

    #[test]
    fn validation_names_the_problem() {
        let id = AppId([3; 32]).to_string();
        let mut m = sample(&id);
        m.roles[0].default = true;
        assert_eq!(m.validate(), Err(ManifestError::DefaultRole(2)));
        let mut m = sample(&id);
        m.roles[1].permissions.push(true);
        assert!(matches!(m.validate(), Err(ManifestError::RolePermissions { .. })));
        let mut m = sample(&id);
        m.actions[0].command.argv = vec!["server".into()];
        assert!(matches!(m.validate(), Err(ManifestError::BadCommand(_))));
        let mut m = sample(&id);
        m.app_id = "nope".into();
        assert!(matches!(m.validate(), Err(ManifestError::AppId(_))));
    }

    #[test]
    fn provided_apis_round_trip_through_capnp() {
        let mut m = sample(&AppId([3; 32]).to_string());
        m.permissions.push(PermissionDef { name: "write".into(), title: "Write".into(), ..Default::default() });
        for r in &mut m.roles {
            r.permissions.push(false);
        }
        m.provides = vec![
            ApiProvide { api: "notes".into(), title: "Notes".into(), path_prefix: "/api/".into(), permissions: vec![true, false], ..Default::default() },
            ApiProvide {
                api: "notes-v2".into(),
                title: "Notes 2".into(),
                path_prefix: "/v2/api/".into(),
                permissions: vec![false, true],
                chooser_path: "/choose?what=note".into(),
                ..Default::default()
            },
            ApiProvide { title: "Counter".into(), permissions: vec![true, true], interface_id: 0xb5e3_f0c2_a9d8_4f61, ..Default::default() },
        ];
        m.capnp_port = 8001;
        m.validate().unwrap();
        let mut msg = capnp::message::Builder::new_default();
        m.write(msg.init_root());
        let back = Manifest::read(msg.get_root_as_reader().unwrap()).unwrap();
        assert_eq!(back.provides, m.provides);
        assert_eq!(back.capnp_port, 8001);
        // A manifest written before `provides` existed reads as providing nothing.
        let mut old = sample(&AppId([3; 32]).to_string());
        old.provides.clear();
        let mut msg = capnp::message::Builder::new_default();
        old.write(msg.init_root());
        assert_eq!(Manifest::read(msg.get_root_as_reader().unwrap()).unwrap().provides, []);
    }

    #[test]
    fn provided_apis_are_validated() {
        let id = AppId([3; 32]).to_string();
        let with = |f: &dyn Fn(&mut ApiProvide)| {
            let mut m = sample(&id);
            f(&mut m.provides[0]);
            m.validate()
        };
        assert_eq!(with(&|_| {}), Ok(()));
        for bad in ["", "Notes", "no tes", "notes_v2", "nötes", &"a".repeat(41)] {
            assert_eq!(with(&|p| p.api = bad.into()), Err(ManifestError::BadApiName(bad.into())), "{bad:?}");
        }
        assert_eq!(with(&|p| p.api = "a".repeat(40)), Ok(()));
        assert_eq!(with(&|p| p.api = "v2-notes-0".into()), Ok(()));
        assert_eq!(with(&|p| p.title = "  ".into()), Err(ManifestError::NoApiTitle("notes".into())));
        assert_eq!(with(&|p| p.path_prefix = "/".into()), Ok(()), "the whole app may be the API");
        for bad in ["", "/api", "api/", "/a/../b/", "/a//b/", "/a b/", "/ä/", "/a?x/", "/a#/", "/a\\b/", "/%2e%2e/", "/..", "/../"] {
            let want = Err(ManifestError::BadPathPrefix { api: "notes".into(), prefix: bad.into() });
            assert_eq!(with(&|p| p.path_prefix = bad.into()), want, "{bad:?}");
        }
        let long = format!("/{}/", "a".repeat(MAX_PATH_PREFIX - 2));
        assert_eq!(with(&|p| p.path_prefix = long.clone()), Ok(()));
        let too_long = format!("/{}/", "a".repeat(MAX_PATH_PREFIX - 1));
        assert!(matches!(with(&|p| p.path_prefix = too_long.clone()), Err(ManifestError::BadPathPrefix { .. })));
        assert_eq!(
            with(&|p| p.permissions = vec![true, true]),
            Err(ManifestError::ApiPermissions { api: "notes".into(), got: 2, want: 1 })
        );
        let mut m = sample(&id);
        m.provides.push(ApiProvide { title: "Other".into(), path_prefix: "/other/".into(), ..m.provides[0].clone() });
        assert_eq!(m.validate(), Err(ManifestError::DuplicateApi("notes".into())));

        for good in ["/choose", "/", "/pick?kind=note&x=%2F", "/a/b.c/"] {
            assert_eq!(with(&|p| p.chooser_path = good.into()), Ok(()), "{good:?}");
        }
        for bad in ["choose", "//evil.example/", "/a b", "/a\\b", "/a#x", "/a/../b", "/./a", "/ä", &format!("/{}", "a".repeat(MAX_CHOOSER_PATH))] {
            let want = Err(ManifestError::BadChooserPath { api: "notes".into(), path: bad.into() });
            assert_eq!(with(&|p| p.chooser_path = bad.into()), want, "{bad:?}");
        }
    }

    #[test]
    fn provided_interfaces_are_validated() {
        let id = AppId([3; 32]).to_string();
        const COUNTER: u64 = 0xb5e3_f0c2_a9d8_4f61;
        let with = |port: u16, f: &dyn Fn(&mut ApiProvide)| {
            let mut m = sample(&id);
            m.capnp_port = port;
            let mut p = ApiProvide { title: "Counter".into(), permissions: vec![true], interface_id: COUNTER, ..Default::default() };
            f(&mut p);
            m.provides.push(p);
            m.validate()
        };
        assert_eq!(with(8001, &|_| {}), Ok(()));
        assert_eq!(with(0, &|_| {}), Err(ManifestError::NoCapnpPort(COUNTER)));
        assert_eq!(with(8001, &|p| p.interface_id = 0x35e3_f0c2_a9d8_4f61), Err(ManifestError::BadInterfaceId(0x35e3_f0c2_a9d8_4f61)));
        assert_eq!(with(8001, &|p| p.api = "counter".into()), Err(ManifestError::InterfaceWithApi(COUNTER)));
        assert_eq!(with(8001, &|p| p.path_prefix = "/api/".into()), Err(ManifestError::InterfaceWithApi(COUNTER)));
        assert_eq!(with(8001, &|p| p.title = String::new()), Err(ManifestError::NoApiTitle(format!("interface {COUNTER:#018x}"))));
        assert!(matches!(with(8001, &|p| p.permissions = vec![]), Err(ManifestError::ApiPermissions { got: 0, want: 1, .. })));
        assert_eq!(with(8001, &|p| p.chooser_path = "/pick".into()), Ok(()));
        let mut m = sample(&id);
        m.capnp_port = 8001;
        let p = ApiProvide { title: "Counter".into(), permissions: vec![true], interface_id: COUNTER, ..Default::default() };
        m.provides.extend([p.clone(), p]);
        assert_eq!(m.validate(), Err(ManifestError::DuplicateInterface(COUNTER)));
    }
}
