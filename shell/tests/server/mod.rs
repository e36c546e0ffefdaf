//! A real `granary serve` on a free loopback port with its own data directory, and a small
//! HTTP client (ureq) that keeps cookies explicitly and never follows redirects.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The static bridge, built once per test process into the same target directory as the
/// `granary` binary under test (`scripts/build-bridge.sh` does the same for `granary serve`).
pub fn bridge() -> std::path::PathBuf {
    static BRIDGE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BRIDGE
        .get_or_init(|| {
            let exe = std::path::Path::new(env!("CARGO_BIN_EXE_granary"));
            let profile_dir = exe.parent().unwrap();
            let target_dir = profile_dir.parent().unwrap();
            let release = profile_dir.file_name().unwrap() == "release";
            let mut cmd = Command::new(env!("CARGO"));
            cmd.args(["build", "--quiet", "-p", "granary-bridge", "--target", "x86_64-unknown-linux-gnu", "--target-dir"])
                .arg(target_dir)
                .arg("--manifest-path")
                .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml"))
                .env("RUSTFLAGS", "-C target-feature=+crt-static");
            if release {
                cmd.arg("--release");
            }
            let out = cmd.output().expect("run cargo to build the bridge");
            assert!(out.status.success(), "building the static bridge failed:\n{}", String::from_utf8_lossy(&out.stderr));
            target_dir.join("x86_64-unknown-linux-gnu").join(profile_dir.file_name().unwrap()).join("granary-bridge")
        })
        .clone()
}

pub struct TestServer {
    child: Child,
    pub data: tempfile::TempDir,
    pub base_url: String,
    pub first_setup_url: String,
    extra: Vec<String>,
}

impl TestServer {
    pub fn start() -> TestServer {
        Self::start_with(&[])
    }

    /// Like [`start`](Self::start), with extra `granary serve` arguments.
    pub fn start_with(extra: &[&str]) -> TestServer {
        let data = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let base_url = format!("http://127.0.0.1:{port}");
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (child, first_setup_url) = Self::spawn(data.path(), port, &extra, true);
        TestServer { child, data, base_url, first_setup_url, extra }
    }

    /// Starts `granary serve` on `data`; with `expect_setup`, waits for the first-run setup
    /// link and returns it (else waits until it listens).
    fn spawn(data: &std::path::Path, port: u16, extra: &[String], expect_setup: bool) -> (Child, String) {
        let base_url = format!("http://127.0.0.1:{port}");
        let mut child = Command::new(env!("CARGO_BIN_EXE_granary"))
            .args(["serve", "--data-dir", data.to_str().unwrap(), "--listen", &format!("127.0.0.1:{port}"), "--base-url", &base_url])
            .args(extra)
            // No sample apps unless a test asks for them (a developer's target/sample-apps
            // would otherwise be installed).
            .args(if extra.iter().any(|a| a == "--sample-apps") { vec![] } else { vec!["--sample-apps".to_owned(), data.join("no-samples").display().to_string()] })
            .env("GRANARY_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut first_setup_url = String::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(url) = line.trim().strip_prefix(&format!("{base_url}/setup/")) {
                first_setup_url = format!("/setup/{url}");
            }
            let ready = if expect_setup { line.contains("admin-token` prints a new link") } else { line.contains("is running at") };
            if ready || Instant::now() > deadline {
                break;
            }
        }
        if expect_setup {
            assert!(!first_setup_url.is_empty(), "the server printed no setup link");
        }
        // Keep draining stderr so the server never blocks on a full pipe; the test harness
        // shows it when a test fails.
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(|l| eprintln!("server: {l}")));
        (child, first_setup_url)
    }

    /// Kills the server with SIGKILL (no clean-up at all) and starts it again on the same data
    /// directory, port and arguments. Grain supervisors survive, as in production.
    pub fn kill_and_restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let (child, _) = Self::spawn(self.data.path(), self.port(), &self.extra, false);
        self.child = child;
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_granary"))
            .args(args)
            .args(["--data-dir", self.data.path().to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "granary {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// A fresh setup link from `granary admin-token`, as a path.
    pub fn admin_token(&self) -> String {
        let url = self.cli(&["admin-token"]);
        url.trim().strip_prefix(&self.base_url).expect("the link is on the base URL").to_owned()
    }

    /// The `granary serve` process id (for /proc measurements).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.base_url.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// A new administrator account made through a fresh setup link, signed in (password
    /// "correct horse battery").
    pub fn new_admin(&self, username: &str, display_name: &str) -> Client {
        let mut c = Client::new(self);
        let url = self.admin_token();
        let csrf = c.get(&url).hidden("csrf");
        let pw = "correct horse battery";
        let r = c.post(&url, &[("csrf", &csrf), ("username", username), ("display_name", display_name), ("password", pw), ("password2", pw)]);
        assert_eq!(r.status, 303, "{}", r.body);
        c
    }

    /// `granary status --json`.
    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.cli(&["status", "--json"])).unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn location(&self) -> String {
        self.header("location").unwrap_or("").to_owned()
    }

    /// The value of the first `attr="..."` attribute in the page.
    pub fn hidden_attr(&self, attr: &str) -> String {
        let needle = format!("{attr}=\"");
        let start = self.body.find(&needle).unwrap_or_else(|| panic!("no {attr} in {}", self.body)) + needle.len();
        self.body[start..].split('"').next().unwrap().to_owned()
    }

    /// The value of the hidden input `name` in the page.
    pub fn hidden(&self, name: &str) -> String {
        let needle = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&needle).unwrap_or_else(|| panic!("no hidden {name} in {}", self.body)) + needle.len();
        self.body[start..].split('"').next().unwrap().to_owned()
    }
}

/// One browser: a cookie jar and no redirect following.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    cookies: BTreeMap<String, String>,
}

impl Client {
    pub fn new(server: &TestServer) -> Client {
        let agent = ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into();
        Client { agent, base: server.base_url.clone(), cookies: BTreeMap::new() }
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.get(name).cloned()
    }

    pub fn has_cookie(&self, name: &str) -> bool {
        self.cookies.get(name).is_some_and(|v| !v.is_empty())
    }

    pub fn set_cookie(&mut self, name: &str, value: &str) {
        self.cookies.insert(name.into(), value.into());
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    fn finish(&mut self, resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
        let mut resp = resp.expect("HTTP request");
        let headers: Vec<(String, String)> =
            resp.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned())).collect();
        for (k, v) in &headers {
            if k == "set-cookie" {
                let pair = v.split(';').next().unwrap();
                let (name, value) = pair.split_once('=').unwrap();
                if v.contains("Max-Age=0") {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.to_owned(), value.to_owned());
                }
            }
        }
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        Reply { status: resp.status().as_u16(), headers, body }
    }

    pub fn get(&mut self, path: &str) -> Reply {
        self.get_with(path, &[])
    }

    pub fn get_with(&mut self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = self.agent.get(format!("{}{path}", self.base)).header("Cookie", self.cookie_header());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.call();
        self.finish(r)
    }

    pub fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Reply {
        self.post_with(path, form, &[])
    }

    pub fn post_with(&mut self, path: &str, form: &[(&str, &str)], headers: &[(&str, &str)]) -> Reply {
        let body: String = form_body(form);
        let mut req = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Cookie", self.cookie_header())
            .header("Content-Type", "application/x-www-form-urlencoded");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send(body.as_bytes());
        self.finish(r)
    }
}

impl Client {
    /// GETs a streamed response and reads it until `needle` appears (at most 20 s), then
    /// drops the connection. Returns what was read.
    pub fn read_until(&mut self, path: &str, needle: &str) -> String {
        use std::io::Read;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_recv_body(Some(std::time::Duration::from_secs(20)))
            .build()
            .into();
        let mut resp = agent.get(format!("{}{path}", self.base)).header("Cookie", self.cookie_header()).call().expect("HTTP request");
        let mut reader = resp.body_mut().as_reader();
        let mut text = String::new();
        let mut buf = [0u8; 4096];
        while !text.contains(needle) {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        text
    }

    /// Installs a package through the upload form's route; returns its package id.
    pub fn install(&mut self, gpk: &[u8]) -> String {
        let csrf = self.get("/apps").hidden_attr("data-csrf");
        let r = self.upload("/apps/upload", gpk, &csrf);
        assert_eq!(r.status, 200, "{}", r.body);
        serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["package_id"].as_str().unwrap().to_owned()
    }

    /// POSTs raw bytes as a package upload with the CSRF header.
    pub fn upload(&mut self, path: &str, bytes: &[u8], csrf: &str) -> Reply {
        self.upload_with(path, bytes, csrf, &[])
    }

    /// Like [`upload`](Self::upload), with extra headers.
    pub fn upload_with(&mut self, path: &str, bytes: &[u8], csrf: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Cookie", self.cookie_header())
            .header("Content-Type", "application/octet-stream")
            .header("X-Granary-Csrf", csrf);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send(bytes);
        self.finish(r)
    }
}

fn form_body(form: &[(&str, &str)]) -> String {
    form.iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
