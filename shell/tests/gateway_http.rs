//! The whole HTTP path over real HTTP, as root: browser → gateway (session origin) →
//! supervisor → sandbox → bridge → a python app, and the gateway's checks and header policy.

mod common;
mod server;

use server::{bridge, Client, Reply, TestServer};
use std::fs;
use std::path::Path;

fn require_root() {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let euid = status.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2)).unwrap();
    assert_eq!(euid, "0", "the gateway tests start real sandboxes and must run as root (the README's test command does)");
}

fn admin(s: &TestServer) -> Client {
    let mut c = Client::new(s);
    let url = s.admin_token();
    let csrf = c.get(&url).hidden("csrf");
    let pw = "correct horse battery";
    let r = c.post(&url, &[("csrf", &csrf), ("username", "ann"), ("display_name", "Ann Émile"), ("password", pw), ("password2", pw)]);
    assert_eq!(r.status, 303, "{}", r.body);
    c
}

/// Packs the python echo app (with Debian's python3 and its standard library) and installs it.
fn install_echo(c: &mut Client) -> String {
    let dir = tempfile::tempdir().unwrap();
    let keyring = dir.path().join("keyring");
    let app_id = common::granary_ok(&keyring, &["keygen"]).trim().to_owned();
    fs::create_dir(dir.path().join("app")).unwrap();
    fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/grain_app/app.py"), dir.path().join("app/app.py")).unwrap();
    let toml = format!(
        r#"[app]
id = "{app_id}"
title = "Echo"
version = 1
continue_command = ["/usr/bin/python3", "/app/app.py"]
environment = {{ HOME = "/var", PYTHONDONTWRITEBYTECODE = "1" }}
[[actions]]
title = "New echo"
noun = "echo"
command = ["/usr/bin/python3", "/app/app.py"]
[http]
port = 8000
[files]
map = [ {{ to = "/app", from = "app" }}, {{ to = "/", from = "/" }} ]
include = ["/app", "/usr/lib/python3.11"]
hide = ["/usr/lib/python3.11/config-3.11-x86_64-linux-gnu", "/usr/lib/python3.11/test", "/usr/lib/python3.11/__pycache__"]
"#
    );
    fs::write(dir.path().join("granary.toml"), toml).unwrap();
    let gpk = dir.path().join("echo.gpk");
    common::granary_ok(&keyring, &["pack", dir.path().to_str().unwrap(), "-o", gpk.to_str().unwrap(), "--level", "1"]);
    let csrf = c.get("/apps").hidden_attr("data-csrf");
    let r = c.upload("/apps/upload", &fs::read(&gpk).unwrap(), &csrf);
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["package_id"].as_str().unwrap().to_owned()
}

/// Creates a grain; returns (grain page path, grain id).
fn new_grain(c: &mut Client, pkg: &str, title: &str) -> (String, String) {
    let csrf = c.get(&format!("/apps/{pkg}")).hidden("csrf");
    let url = c.post("/grains", &[("csrf", &csrf), ("package_id", pkg), ("action", "0"), ("title", title)]).location();
    let id = url.trim_start_matches("/grains/").to_owned();
    (url, id)
}

/// Opens the grain page and returns (session Host header, init path) from its frame.
fn open_frame(c: &mut Client, grain_url: &str) -> (String, String) {
    let page = c.get(grain_url);
    let src = page.hidden_attr("iframe class=\"grain\" id=\"grain-frame\" src");
    let rest = src.strip_prefix("http://").expect("a session origin URL");
    let (host, path) = rest.split_once('/').unwrap();
    (host.to_owned(), format!("/{path}"))
}

/// A browser on one session origin.
struct Origin {
    c: Client,
    host: String,
}

impl Origin {
    fn enter(s: &TestServer, host: &str, init: &str) -> Origin {
        let mut o = Origin { c: Client::new(s), host: host.to_owned() };
        let r = o.get(init, &[]);
        assert_eq!((r.status, r.location()), (303, "/".to_owned()), "{}", r.body);
        assert!(o.c.has_cookie("granary_grain"));
        o
    }
    fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut h = vec![("Host", self.host.as_str())];
        h.extend_from_slice(headers);
        self.c.get_with(path, &h)
    }
    fn json(&mut self, path: &str, headers: &[(&str, &str)]) -> serde_json::Value {
        let r = self.get(path, headers);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", r.body))
    }
}

#[test]
fn requests_reach_the_app_in_its_sandbox_with_the_platform_policy() {
    require_root();
    let bridge = bridge();
    let s = TestServer::start_with(&["--bridge", bridge.to_str().unwrap(), "--idle", "30"]);
    let mut c = admin(&s);
    let pkg = install_echo(&mut c);
    let (grain_url, grain_id) = new_grain(&mut c, &pkg, "First");
    let (host, init) = open_frame(&mut c, &grain_url);
    assert!(host.ends_with(&format!(".localhost:{}", s.base_url.rsplit(':').next().unwrap())), "{host}");

    let mut o = Origin::enter(&s, &host, &init);
    // The init link works once.
    assert_eq!(Client::new(&s).get_with(&init, &[("Host", &host)]).status, 403);

    let echo = o.json("/hello?x=1", &[("X-Granary-User-Id", "spoofed"), ("X-Forwarded-For", "6.6.6.6"), ("X-Requested-With", "XMLHttpRequest")]);
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["path"], "/hello?x=1");
    let h = &echo["headers"];
    let uid = h["x-granary-user-id"].as_str().unwrap();
    assert!(uid != "spoofed" && uid.len() == 32, "identity comes from the platform: {uid}");
    assert_eq!(h["x-granary-username"], "Ann%20%C3%89mile");
    assert_eq!(h["x-granary-user-handle"], "ann");
    assert_eq!(h["x-requested-with"], "XMLHttpRequest", "ordinary headers pass");
    assert!(h.get("x-forwarded-for").is_none(), "the client's address never reaches a grain");
    let cookies = h["cookie"].as_str().unwrap_or("");
    assert!(!cookies.contains("granary_grain") && !cookies.contains("granary_sid"), "platform cookies are stripped: {cookies}");
    assert_eq!(o.json("/again", &[])["visits"], 2);

    // Any method, and a streamed body.
    let r = o.c.post_with("/x", &[], &[("Host", &host), ("X-HTTP-Method-Override", "none")]);
    assert_eq!(r.status, 200);
    let big = "y".repeat(200_000);
    let r = o.c.post_with("/upload", &[("data", &big)], &[("Host", &host)]);
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["body_bytes"], 200_005);

    // Response policy: cookies stay on this origin, the platform's CSP and no CORS.
    let r = o.get("/cookie", &[]);
    let set: Vec<&str> = r.headers.iter().filter(|(k, _)| k == "set-cookie").map(|(_, v)| v.as_str()).collect();
    assert_eq!(set, ["flavour=oat; Path=/"], "Domain removed and the platform's cookie name refused");
    let csp = r.header("content-security-policy").unwrap();
    assert!(csp.contains(&format!("frame-ancestors {}", s.base_url)) && !csp.contains("default-src *"), "{csp}");
    assert!(r.header("access-control-allow-origin").is_none());

    // A foreign Origin on an unsafe method, a request without the session cookie, and a
    // made-up session are all refused before reaching the app.
    let r = o.c.post_with("/x", &[], &[("Host", &host), ("Origin", "http://evil.example")]);
    assert_eq!(r.status, 403);
    assert_eq!(Client::new(&s).get_with("/hello", &[("Host", &host)]).status, 403);
    let port = s.base_url.rsplit(':').next().unwrap();
    assert_eq!(Client::new(&s).get_with("/", &[("Host", &format!("nosuchsession.localhost:{port}"))]).status, 404);
    // /hello, /again, POST /x, POST /upload, /cookie, and this one: the refused ones never arrived.
    assert_eq!(o.json("/count", &[])["visits"], 6, "none of the refused requests reached the app");
    let visits = s.data.path().join("grains").join(&grain_id).join("var/visits");
    assert_eq!(fs::read_to_string(&visits).unwrap(), "6", "the grain's /var is its storage directory");

    // Another grain's origin does not accept this session's cookie.
    let (_, id2) = new_grain(&mut c, &pkg, "Second");
    let (host2, _init2) = open_frame(&mut c, &format!("/grains/{id2}"));
    let cookie = o.c.cookie("granary_grain").unwrap();
    let mut thief = Client::new(&s);
    thief.set_cookie("granary_grain", &cookie);
    assert_eq!(thief.get_with("/", &[("Host", &host2)]).status, 403);

    // Trashing the grain ends its open session at once.
    let csrf = c.get(&grain_url).hidden("csrf");
    c.post(&format!("{grain_url}/trash"), &[("csrf", &csrf)]);
    let r = o.get("/after-trash", &[]);
    assert!(r.status == 403 || r.status == 404, "{}: {}", r.status, r.body);
    assert_eq!(fs::read_to_string(&visits).unwrap(), "6");
    assert!(Path::new(&visits).exists());
}
