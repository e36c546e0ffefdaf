//! Helpers for tests that run grains through the real server (as root): accounts, the
//! python echo app, grains, and a browser on a session origin.
#![allow(dead_code)]

use crate::common;
use crate::server::{Client, Reply, TestServer};
use std::fs;

pub fn require_root() {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let euid = status.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2)).unwrap();
    assert_eq!(euid, "0", "the gateway tests start real sandboxes and must run as root (the README's test command does)");
}

pub fn admin(s: &TestServer) -> Client {
    s.new_admin("ann", "Ann Émile")
}

/// Packs the python echo app (with Debian's python3 and its standard library) and installs it.
pub fn install_echo(c: &mut Client) -> String {
    install_python_app(
        c,
        "app.py",
        "Echo",
        r#"identity_headers = { "X-Remote-User" = "handle", "X-Forwarded-Groups" = "permissions" }"#,
        "",
    )
}

/// Packs `tests/grain_app/<script>` as an app run by Debian's python3 (its standard library
/// included), with one permission `edit`, roles viewer and editor (the default), HTTP on port
/// 8000 plus `http_extra` in `[http]`, and `extra` appended to the manifest; installs it and
/// returns the package id.
pub fn install_python_app(c: &mut Client, script: &str, title: &str, http_extra: &str, extra: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let keyring = dir.path().join("keyring");
    let app_id = common::granary_ok(&keyring, &["keygen"]).trim().to_owned();
    fs::create_dir(dir.path().join("app")).unwrap();
    fs::copy(format!("{}/tests/grain_app/{script}", env!("CARGO_MANIFEST_DIR")), dir.path().join("app/app.py")).unwrap();
    let toml = format!(
        r#"[app]
id = "{app_id}"
title = "{title}"
version = 1
continue_command = ["/usr/bin/python3", "/app/app.py"]
environment = {{ HOME = "/var", PYTHONDONTWRITEBYTECODE = "1" }}
[[actions]]
title = "New"
noun = "grain"
command = ["/usr/bin/python3", "/app/app.py"]
[http]
port = 8000
{http_extra}
[[permissions]]
name = "edit"
title = "Edit"
[[roles]]
name = "viewer"
title = "Viewer"
[[roles]]
name = "editor"
title = "Editor"
permissions = ["edit"]
default = true
{extra}
[files]
map = [ {{ to = "/app", from = "app" }}, {{ to = "/", from = "/" }} ]
include = ["/app", "/usr/lib/python3.11"]
hide = ["/usr/lib/python3.11/config-3.11-x86_64-linux-gnu", "/usr/lib/python3.11/test", "/usr/lib/python3.11/__pycache__"]
"#
    );
    fs::write(dir.path().join("granary.toml"), toml).unwrap();
    let gpk = dir.path().join("app.gpk");
    common::granary_ok(&keyring, &["pack", dir.path().to_str().unwrap(), "-o", gpk.to_str().unwrap(), "--level", "1"]);
    c.install(&fs::read(&gpk).unwrap())
}

/// Creates a grain; returns (grain page path, grain id).
pub fn new_grain(c: &mut Client, pkg: &str, title: &str) -> (String, String) {
    let csrf = c.get(&format!("/apps/{pkg}")).hidden("csrf");
    let url = c.post("/grains", &[("csrf", &csrf), ("package_id", pkg), ("action", "0"), ("title", title)]).location();
    let id = url.trim_start_matches("/grains/").to_owned();
    (url, id)
}

/// Opens the grain page and returns (session Host header, init path) from its frame.
pub fn open_frame(c: &mut Client, grain_url: &str) -> (String, String) {
    let page = c.get(grain_url);
    let src = page.hidden_attr("iframe class=\"grain\" id=\"grain-frame\" src");
    let rest = src.strip_prefix("http://").expect("a session origin URL");
    let (host, path) = rest.split_once('/').unwrap();
    (host.to_owned(), format!("/{path}"))
}

/// A browser on one session origin.
pub struct Origin {
    pub c: Client,
    pub host: String,
}

impl Origin {
    pub fn enter(s: &TestServer, host: &str, init: &str) -> Origin {
        let mut o = Origin { c: Client::new(s), host: host.to_owned() };
        let r = o.get(init, &[]);
        assert_eq!((r.status, r.location()), (303, "/".to_owned()), "{}", r.body);
        assert!(o.c.has_cookie("granary_grain"));
        o
    }
    pub fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut h = vec![("Host", self.host.as_str())];
        h.extend_from_slice(headers);
        self.c.get_with(path, &h)
    }
    pub fn json(&mut self, path: &str, headers: &[(&str, &str)]) -> serde_json::Value {
        let r = self.get(path, headers);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", r.body))
    }
}

/// The password of the people [`invite`] makes.
pub const PW: &str = "correct horse battery";

/// Invites `name` (password [`PW`]) as the administrator `admin`; returns them signed in.
pub fn invite(s: &TestServer, admin: &mut Client, name: &str) -> Client {
    let csrf = admin.get("/admin").hidden("csrf");
    let page = admin.post("/admin/invite", &[("csrf", &csrf)]);
    let url = page.hidden_attr("id=\"invite-url\" type=\"text\" readonly value");
    let path = format!("/invite/{}", url.rsplit('/').next().unwrap());
    let mut c = Client::new(s);
    let page = c.get(&path);
    let r = c.post(&path, &[("csrf", &page.hidden("csrf")), ("username", name), ("display_name", name), ("password", PW), ("password2", PW)]);
    assert_eq!(r.status, 303, "{}", r.body);
    c
}

/// Makes a sharing link of `grain_id` with `role` (its index) and `label`; returns its path.
pub fn share(c: &mut Client, grain_id: &str, role: &str, label: &str) -> String {
    let csrf = c.get(&format!("/grains/{grain_id}/access")).hidden("csrf");
    let r = c.post(&format!("/grains/{grain_id}/share"), &[("csrf", &csrf), ("role", role), ("label", label)]);
    assert_eq!(r.status, 200, "{}", r.body);
    let url = r.hidden_attr("id=\"new-link-url\" type=\"text\" readonly value");
    url.split_once("/share/").map(|(_, t)| format!("/share/{t}")).unwrap()
}

/// Opens a share link as oneself (the grain joins "Shared with me").
pub fn open_link(c: &mut Client, share_path: &str) {
    let choose = c.get(share_path);
    let r = c.post(share_path, &[("csrf", &choose.hidden("csrf")), ("mode", "reveal")]);
    assert!(r.location().starts_with("/grains/"), "{}", r.body);
}

/// The id of the link labelled `label` on a grain's sharing page.
pub fn link_id(page: &str, label: &str) -> String {
    page.split("data-link=\"")
        .skip(1)
        .find(|row| row.split("<td>").nth(1).is_some_and(|cell| cell.starts_with(&format!("{label}</td>"))))
        .map(|row| row.split('"').next().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no link labelled {label}"))
}

/// One grain open in a browser: its id, its page, the frame's session id and origin.
pub struct OpenGrain {
    pub id: String,
    pub url: String,
    pub session: String,
    pub o: Origin,
}

/// Creates a grain of `pkg` titled `title` and opens it; see [`reopen_grain`].
pub fn open_new_grain(s: &TestServer, c: &mut Client, pkg: &str, title: &str, first: impl FnOnce(&mut Origin, &str)) -> OpenGrain {
    let (url, id) = new_grain(c, pkg, title);
    reopen_grain(s, c, &url, &id, first)
}

/// Opens the grain page `url` (grain `id`) as `c`, enters its frame's session origin, and
/// makes the app's first request with `first(origin, session id)`, which starts the grain.
pub fn reopen_grain(s: &TestServer, c: &mut Client, url: &str, id: &str, first: impl FnOnce(&mut Origin, &str)) -> OpenGrain {
    let (host, init) = open_frame(c, url);
    let session = host.split('.').next().unwrap().to_owned();
    let mut o = Origin::enter(s, &host, &init);
    first(&mut o, &session);
    OpenGrain { id: id.to_owned(), url: url.to_owned(), session, o }
}
