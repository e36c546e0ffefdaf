//! The sample app `apps/echo` as a grain behind a real `granary serve`: build it statically
//! (once per test process), pack and sign it, upload it, create grains, enter their session
//! origins; and browsers on those origins (ureq for ordinary exchanges, a raw HTTP/1.1
//! client for streamed bodies and broken responses, tungstenite for WebSockets).
#![allow(dead_code)]

use crate::common;
use crate::server::{bridge, Client, TestServer};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

pub fn require_root() {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let euid = status.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2)).unwrap();
    assert_eq!(euid, "0", "these tests start real sandboxes and must run as root (the README's test command does)");
}

/// The static echo binary (`apps/echo`, release, `+crt-static`), built once per test process
/// into `<target dir>/echo`, next to the `granary` binary under test.
pub fn echo_binary() -> PathBuf {
    static ECHO: OnceLock<PathBuf> = OnceLock::new();
    ECHO.get_or_init(|| {
        let exe = std::path::Path::new(env!("CARGO_BIN_EXE_granary"));
        let target_dir = exe.parent().unwrap().parent().unwrap().join("echo");
        let out = Command::new(env!("CARGO"))
            .args(["build", "--locked", "--quiet", "--release", "--target", "x86_64-unknown-linux-gnu", "--manifest-path"])
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../apps/echo/Cargo.toml"))
            .arg("--target-dir")
            .arg(&target_dir)
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .output()
            .expect("run cargo to build apps/echo");
        assert!(out.status.success(), "building the static echo app failed:\n{}", String::from_utf8_lossy(&out.stderr));
        target_dir.join("x86_64-unknown-linux-gnu/release/echo")
    })
    .clone()
}

/// `apps/echo` packed (`granary pack`, signed with a key of a temporary keyring), once per
/// test process.
pub fn echo_gpk() -> PathBuf {
    static GPK: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    GPK.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let keyring = dir.path().join("keyring");
        let app_id = common::granary_ok(&keyring, &["keygen"]).trim().to_owned();
        let src = dir.path().join("src");
        fs::create_dir_all(src.join("bin")).unwrap();
        let app = concat!(env!("CARGO_MANIFEST_DIR"), "/../apps/echo");
        let toml = fs::read_to_string(format!("{app}/granary.toml")).unwrap();
        assert!(toml.contains("REPLACE_WITH_APP_ID"));
        fs::write(src.join("granary.toml"), toml.replace("REPLACE_WITH_APP_ID", &app_id)).unwrap();
        fs::copy(format!("{app}/icon.svg"), src.join("icon.svg")).unwrap();
        fs::copy(echo_binary(), src.join("bin/echo")).unwrap();
        fs::set_permissions(src.join("bin/echo"), fs::Permissions::from_mode(0o755)).unwrap();
        let gpk = dir.path().join("echo.gpk");
        common::granary_ok(&keyring, &["pack", src.to_str().unwrap(), "-o", gpk.to_str().unwrap(), "--level", "1"]);
        (dir, gpk)
    })
    .1
    .clone()
}

/// A server with an admin signed in and echo installed.
pub struct Platform {
    pub server: TestServer,
    pub admin: Client,
    pub package_id: String,
}

impl Platform {
    pub fn start() -> Platform {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Platform {
        require_root();
        let bridge = bridge();
        let gpk = echo_gpk();
        let mut args = vec!["--bridge", bridge.to_str().unwrap()];
        if !extra.contains(&"--idle") {
            args.extend_from_slice(&["--idle", "60"]);
        }
        args.extend_from_slice(extra);
        let server = TestServer::start_with(&args);
        let mut admin = Client::new(&server);
        let url = server.admin_token();
        let csrf = admin.get(&url).hidden("csrf");
        let pw = "correct horse battery";
        let r = admin.post(&url, &[("csrf", &csrf), ("username", "ann"), ("display_name", "Ann"), ("password", pw), ("password2", pw)]);
        assert_eq!(r.status, 303, "{}", r.body);
        let csrf = admin.get("/apps").hidden_attr("data-csrf");
        let r = admin.upload("/apps/upload", &fs::read(gpk).unwrap(), &csrf);
        assert_eq!(r.status, 200, "{}", r.body);
        let package_id = serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["package_id"].as_str().unwrap().to_owned();
        Platform { server, admin, package_id }
    }

    /// Creates a grain of echo; returns its id.
    pub fn new_grain(&mut self, title: &str) -> String {
        let csrf = self.admin.get(&format!("/apps/{}", self.package_id)).hidden("csrf");
        let r = self.admin.post("/grains", &[("csrf", &csrf), ("package_id", &self.package_id), ("action", "0"), ("title", title)]);
        assert_eq!(r.status, 303, "{}", r.body);
        r.location().trim_start_matches("/grains/").to_owned()
    }

    /// Opens the grain page and enters its session origin, as the page's frame does.
    pub fn open(&mut self, grain_id: &str) -> Origin {
        let page = self.admin.get(&format!("/grains/{grain_id}"));
        assert_eq!(page.status, 200, "{}", page.body);
        let src = page.hidden_attr("iframe class=\"grain\" id=\"grain-frame\" src");
        let (host, init) = src.strip_prefix("http://").expect("a session origin URL").split_once('/').unwrap();
        let mut o = Origin::new(&self.server, host);
        let r = o.request("GET", &format!("/{init}"), &[], b"");
        assert_eq!((r.status, r.header("location")), (303, Some("/")), "{}", r.text());
        assert!(o.cookie.is_some(), "the init URL sets the session cookie");
        o
    }

    /// A new grain, opened.
    pub fn grain(&mut self, title: &str) -> (String, Origin) {
        let id = self.new_grain(title);
        let o = self.open(&id);
        (id, o)
    }

    /// Posts a grain page action (`restart`, `trash`, …).
    pub fn grain_action(&mut self, grain_id: &str, action: &str) {
        let page = format!("/grains/{grain_id}");
        let csrf = self.admin.get(&page).hidden("csrf");
        let r = self.admin.post(&format!("{page}/{action}"), &[("csrf", &csrf)]);
        assert_eq!(r.status, 303, "{action}: {}", r.body);
    }

    /// Peak RSS (VmHWM) in KiB of the server and of each of its supervisors.
    pub fn peak_rss_kib(&self) -> (u64, Vec<u64>) {
        let server = vm_hwm_kib(self.server.pid()).expect("the server is running");
        (server, supervisor_pids(self.server.pid()).into_iter().filter_map(vm_hwm_kib).collect())
    }
}

impl Drop for Platform {
    /// Stops the grains' supervisors too: killed with the server they would outlive it until
    /// their idle timeout.
    fn drop(&mut self) {
        for pid in supervisor_pids(self.server.pid()) {
            // SAFETY: a plain signal to a child process this test started.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
    }
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A process as `/proc/<pid>/stat` describes it.
pub struct Process {
    pub pid: u32,
    pub comm: String,
    /// User and system CPU time so far, in seconds.
    pub cpu_seconds: f64,
}

/// Every process under `root`, itself included.
pub fn processes_below(root: u32) -> Vec<Process> {
    let tick = 100.0; // USER_HZ on Linux
    let mut all = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // pid (comm) state ppid …; comm may hold spaces, so split at the last ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else { continue };
        let comm = head.split_once('(').map(|(_, c)| c.to_owned()).unwrap_or_default();
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ppid: u32 = f[1].parse().unwrap_or(0);
        let cpu_seconds = (f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0)) / tick;
        all.push((ppid, Process { pid, comm, cpu_seconds }));
    }
    let mut keep = vec![root];
    let mut i = 0;
    while i < keep.len() {
        let parent = keep[i];
        keep.extend(all.iter().filter(|(ppid, _)| *ppid == parent).map(|(_, p)| p.pid));
        i += 1;
    }
    all.into_iter().map(|(_, p)| p).filter(|p| keep.contains(&p.pid)).collect()
}

/// The `granary supervisor` children of the server.
pub fn supervisor_pids(server: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // pid (comm) state ppid …; comm may hold spaces, so split after the last ')'.
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)).and_then(|p| p.parse::<u32>().ok());
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if ppid == Some(server) && cmdline.split(|b| *b == 0).nth(1) == Some(b"supervisor") {
            out.push(pid);
        }
    }
    out
}

/// An exchange's result.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {} {}", self.status, self.text()))
    }
}

/// A browser on one session origin: its Host and its `granary_grain` cookie; other cookies
/// the grain sets are kept too (host-only, as a browser would).
pub struct Origin {
    agent: ureq::Agent,
    pub port: u16,
    pub host: String,
    pub cookie: Option<String>,
    pub app_cookies: Vec<(String, String)>,
}

impl Origin {
    pub fn new(server: &TestServer, host: &str) -> Origin {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .allow_non_standard_methods(true)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        Origin { agent, port: server.port(), host: host.to_owned(), cookie: None, app_cookies: Vec::new() }
    }

    /// The origin as a browser names it (`Origin` header).
    pub fn origin(&self) -> String {
        format!("http://{}", self.host)
    }

    pub fn cookie_header(&self) -> String {
        let mut all: Vec<String> = self.cookie.iter().map(|c| format!("granary_grain={c}")).collect();
        all.extend(self.app_cookies.iter().map(|(k, v)| format!("{k}={v}")));
        all.join("; ")
    }

    pub fn request(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let mut b = ureq::http::Request::builder().method(method).uri(format!("http://127.0.0.1:{}{path}", self.port)).header("Host", &self.host);
        let cookies = self.cookie_header();
        if !cookies.is_empty() {
            b = b.header("Cookie", cookies);
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let resp = if body.is_empty() { self.agent.run(b.body(()).unwrap()) } else { self.agent.run(b.body(body).unwrap()) };
        let mut resp = resp.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let headers: Vec<(String, String)> = resp.headers().iter().map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect();
        for (k, v) in &headers {
            if k == "set-cookie" {
                let (name, value) = v.split(';').next().unwrap().split_once('=').unwrap();
                if name == "granary_grain" {
                    self.cookie = Some(value.to_owned());
                } else {
                    self.app_cookies.retain(|(n, _)| n != name);
                    self.app_cookies.push((name.to_owned(), value.to_owned()));
                }
            }
        }
        let body = resp.body_mut().with_config().limit(16 << 20).read_to_vec().unwrap_or_default();
        Reply { status: resp.status().as_u16(), headers, body }
    }

    pub fn get(&mut self, path: &str) -> Reply {
        self.request("GET", path, &[], b"")
    }

    /// The request as the app received it (`ANY /headers`).
    pub fn seen(&mut self, method: &str, headers: &[(&str, &str)], body: &[u8]) -> serde_json::Value {
        let r = self.request(method, "/headers", headers, body);
        assert_eq!(r.status, 200, "{method} /headers: {}", r.text());
        r.json()
    }

    /// The grain's `/var/visits` counter after one more visit.
    pub fn visits(&mut self) -> u64 {
        let r = self.get("/var");
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["visits"].as_u64().unwrap()
    }

    /// Sends a request head (and `body_len` bytes from `body`) over a fresh connection and
    /// reads the response head; the body is left on the returned reader.
    pub fn raw(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<(u64, &mut dyn Read)>) -> std::io::Result<RawResponse> {
        let stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nCookie: {}\r\n", self.host, self.cookie_header());
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some((n, _)) = &body {
            head.push_str(&format!("Content-Length: {n}\r\n"));
        }
        head.push_str("\r\n");
        let mut w = &stream;
        w.write_all(head.as_bytes())?;
        if let Some((n, reader)) = body {
            let copied = std::io::copy(&mut reader.take(n), &mut w)?;
            assert_eq!(copied, n, "the request body source ran short");
        }
        let mut reader = BufReader::with_capacity(64 << 10, stream.try_clone()?);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').ok_or_else(|| std::io::Error::other(format!("bad header {l:?}")))?;
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
        Ok(RawResponse { status, headers, reader })
    }
}

pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub reader: BufReader<TcpStream>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The body of a response with Content-Length, as text.
    pub fn body_string(mut self) -> String {
        let len: u64 = self.header("content-length").expect("a Content-Length").parse().unwrap();
        let mut s = String::new();
        (&mut self.reader).take(len).read_to_string(&mut s).unwrap();
        s
    }
}

/// Byte `i` of echo's `/download` and `/file` bodies.
pub fn pattern(i: u64) -> u8 {
    ((i * 31 + 7) % 251) as u8
}

/// An endless reader of [`pattern`] bytes starting at offset 0.
pub struct Pattern(pub u64);

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        for b in buf.iter_mut() {
            *b = pattern(self.0);
            self.0 += 1;
        }
        Ok(buf.len())
    }
}
