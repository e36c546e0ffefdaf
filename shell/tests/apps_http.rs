//! Installing apps over real HTTP: upload, list, details, icon; and refused uploads that leave
//! the server's state as it was.

mod common;
mod server;

use server::{Client, TestServer};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Packs a small app with an SVG icon and two roles; returns the .gpk path.
fn make_package(dir: &Path) -> PathBuf {
    let keyring = dir.join("keyring");
    let app_id = common::granary_ok(&keyring, &["keygen"]).trim().to_owned();
    fs::create_dir_all(dir.join("src")).unwrap();
    fs::write(dir.join("src/run"), b"not really a program").unwrap();
    fs::set_permissions(dir.join("src/run"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(dir.join("icon.svg"), r#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#).unwrap();
    common::write_toml(dir, &app_id);
    let mut toml = fs::read_to_string(dir.join("granary.toml")).unwrap();
    toml = toml.replace("[files]", r#"[[permissions]]
name = "edit"
title = "Edit things"

[[roles]]
name = "viewer"
title = "Viewer"
description = "Looks only"

[[roles]]
name = "editor"
title = "Editor"
permissions = ["edit"]
default = true

[metadata]
icon = "icon.svg"
description = "Keeps <things> in order"
author = "Tess"

[files]"#);
    fs::write(dir.join("granary.toml"), toml).unwrap();
    let gpk = dir.join("app.gpk");
    common::granary_ok(&keyring, &["pack", dir.to_str().unwrap(), "-o", gpk.to_str().unwrap()]);
    gpk
}

fn installed(s: &TestServer) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(s.data.path().join("apps")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn an_admin_uploads_installs_and_inspects_an_app() {
    let s = TestServer::start();
    let mut c = s.new_admin("root", "Root");
    let apps = c.get("/apps");
    assert!(apps.body.contains("No apps installed"), "{}", apps.body);
    let csrf = apps.hidden_attr("data-csrf");

    let pkg_dir = tempfile::tempdir().unwrap();
    let gpk = fs::read(make_package(pkg_dir.path())).unwrap();
    let r = c.upload("/apps/upload", &gpk, &csrf);
    assert_eq!(r.status, 200, "{}", r.body);
    let reply: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(reply["title"], "Round trip");
    assert_eq!(reply["already_installed"], false);
    let id = reply["package_id"].as_str().unwrap().to_owned();
    assert_eq!(installed(&s), std::slice::from_ref(&id));
    assert_eq!(fs::read(s.data.path().join("apps").join(&id).join("app/run")).unwrap(), b"not really a program");

    let list = c.get("/apps");
    assert!(list.body.contains("Round trip") && list.body.contains("Keeps &lt;things&gt; in order"), "{}", list.body);
    let details = c.get(&format!("/apps/{id}"));
    assert_eq!(details.status, 200);
    for text in ["Editor", "(default)", "Looks only", "Edit things", "Tess", &id] {
        assert!(details.body.contains(text), "{text} not on the details page");
    }
    // Making a grain comes first on the page, uninstalling last.
    let at = |needle: &str| details.body.find(needle).unwrap_or_else(|| panic!("{needle} not on the details page"));
    assert!(at("id=\"new-grain\"") < at("Sharing roles") && at("Sharing roles") < at("id=\"uninstall\""));
    let icon = c.get(&format!("/apps/{id}/icon"));
    assert_eq!(icon.header("content-type"), Some("image/svg+xml"));
    assert!(icon.header("content-security-policy").unwrap().contains("sandbox"), "an app's SVG never runs scripts");

    // The same package again is recognised, not installed twice.
    let again: serde_json::Value = serde_json::from_str(&c.upload("/apps/upload", &gpk, &csrf).body).unwrap();
    assert_eq!(again["already_installed"], true);
    assert_eq!(installed(&s), [id]);
}

#[test]
fn refused_uploads_change_nothing() {
    let s = TestServer::start();
    let mut c = s.new_admin("root", "Root");
    let csrf = c.get("/apps").hidden_attr("data-csrf");
    let pkg_dir = tempfile::tempdir().unwrap();
    let good = fs::read(make_package(pkg_dir.path())).unwrap();

    let mut corrupt = good.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0xff;
    let r = c.upload("/apps/upload", &corrupt, &csrf);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("damaged or was altered"), "{}", r.body);
    let r = c.upload("/apps/upload", b"hello, not a package", &csrf);
    assert_eq!(r.status, 400);
    assert!(r.body.contains("not a Granary package"), "{}", r.body);

    // A good package from another site (or a grain's same-site origin) is refused too.
    for (h, v) in [("Origin", "http://evil.example"), ("Sec-Fetch-Site", "same-site"), ("Sec-Fetch-Site", "cross-site")] {
        let r = c.upload_with("/apps/upload", &good, &csrf, &[(h, v)]);
        assert_eq!(r.status, 403, "{h}: {v}: {}", r.body);
    }
    // Wrong CSRF token, and no session at all.
    assert_eq!(c.upload("/apps/upload", &good, "0123").status, 403);
    assert_eq!(Client::new(&s).upload("/apps/upload", &good, &csrf).status, 401);

    assert!(installed(&s).is_empty(), "nothing was unpacked: {:?}", installed(&s));
    assert!(c.get("/apps").body.contains("No apps installed"));
    let tmp = s.data.path().join("tmp");
    assert_eq!(fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0), 0, "uploads are not left behind");
    // Anonymous visitors see no app pages.
    assert_eq!(Client::new(&s).get("/apps").location(), "/login");
}

#[test]
fn an_upload_refused_before_its_body_is_read_gets_its_answer_not_a_reset() {
    // A client that sends the whole body before reading (as scripts and `curl` without
    // `Expect` do) must still get the server's refusal: the server answered without reading the
    // body, and closing with 16 MiB unread used to reset the connection under the client's feet.
    use std::io::{Read, Write};
    let s = TestServer::start();
    let addr = s.base_url.trim_start_matches("http://").to_owned();
    let body_len = 16usize << 20;
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    let head = format!("POST /apps/upload HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\nContent-Length: {body_len}\r\n\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let chunk = vec![0x5au8; 64 << 10];
    let mut sent = 0;
    while sent < body_len {
        if let Err(e) = stream.write_all(&chunk) {
            panic!("the connection broke after {sent} bytes of the body, before its answer could be read: {e}");
        }
        sent += chunk.len();
    }
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap_or_else(|e| panic!("reading the answer: {e} (got {answer:?})"));
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    // The connection was closed after the answer, and the answer said so (a client reusing it
    // would lose its next request): nothing of the body was taken for a request.
    assert!(answer.to_ascii_lowercase().contains("\r\nconnection: close\r\n"), "{answer}");
    assert_eq!(answer.matches("HTTP/1.1").count(), 1, "{answer}");
}

#[test]
fn sample_apps_are_installed_on_first_run() {
    let pkg_dir = tempfile::tempdir().unwrap();
    let gpk = make_package(pkg_dir.path());
    let samples = tempfile::tempdir().unwrap();
    fs::copy(&gpk, samples.path().join("sample.gpk")).unwrap();
    fs::write(samples.path().join("notes.txt"), "not a package, ignored").unwrap();
    let s = TestServer::start_with(&["--sample-apps", samples.path().to_str().unwrap()]);
    let mut c = s.new_admin("root", "Root");
    let list = c.get("/apps");
    assert!(list.body.contains("Round trip"), "the sample is installed before anyone uploads: {}", list.body);
    assert_eq!(installed(&s).len(), 1);
}

/// A client gets `--header-timeout` to send a request's head, on a new connection or a
/// kept-alive one; a slow or silent one is disconnected, and the server goes on serving.
#[test]
fn a_client_that_sends_no_whole_head_in_time_is_disconnected() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let s = TestServer::start_with(&["--header-timeout", "1"]);
    let addr = s.base_url.trim_start_matches("http://").to_owned();
    let connect = || {
        let c = std::net::TcpStream::connect(&addr).unwrap();
        // Far beyond the deadline: a deadline not enforced fails here instead of hanging.
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c
    };
    let start = Instant::now();
    let mut partial = connect();
    partial.write_all(format!("GET /login HTTP/1.1\r\nHost: {addr}\r\n").as_bytes()).unwrap();
    let mut silent = connect();
    let mut kept = connect();
    kept.write_all(format!("GET /login HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()).unwrap();
    let mut buf = vec![0u8; 64 << 10];
    let n = kept.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));

    for (name, c) in [("a half-sent head", &mut partial), ("a silent new connection", &mut silent), ("an idle kept-alive connection", &mut kept)] {
        let mut rest = Vec::new();
        match c.read_to_end(&mut rest) {
            Ok(_) => assert!(!String::from_utf8_lossy(&rest).contains("HTTP/1.1 200"), "{name}: {rest:?}"),
            Err(e) => panic!("{name} was not disconnected within 10 s: {e}"),
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_secs(1), "{name} was disconnected before its deadline, after {took:?}");
    }
    assert!(start.elapsed() < Duration::from_secs(5), "the deadline is 1 s, checked every second: {:?}", start.elapsed());
    // The server is still there for a prompt client.
    let mut fresh = connect();
    fresh.write_all(format!("GET /login HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut answer = String::new();
    fresh.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
