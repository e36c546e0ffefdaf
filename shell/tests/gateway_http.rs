//! The whole HTTP path over real HTTP, as root: browser → gateway (session origin) →
//! supervisor → sandbox → bridge → a python app, and the gateway's checks and header policy.

mod common;
mod grainkit;
mod server;

use grainkit::*;
use server::{bridge, Client, TestServer};
use std::fs;
use std::path::Path;

/// The memory and task limits of the running grain's cgroup (v1 or v2).
fn cgroup_limits(grain_id: &str) -> (u64, u64) {
    let read = |p: String| fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}")).trim().parse::<u64>().unwrap();
    let v1 = format!("/sys/fs/cgroup/memory/granary/grain-{grain_id}");
    if Path::new(&v1).exists() {
        (read(format!("{v1}/memory.limit_in_bytes")), read(format!("/sys/fs/cgroup/pids/granary/grain-{grain_id}/pids.max")))
    } else {
        let v2 = format!("/sys/fs/cgroup/granary/grain-{grain_id}");
        (read(format!("{v2}/memory.max")), read(format!("{v2}/pids.max")))
    }
}

#[test]
fn requests_reach_the_app_in_its_sandbox_with_the_platform_policy() {
    require_root();
    let bridge = bridge();
    let s = TestServer::start_with(&["--bridge", bridge.to_str().unwrap(), "--idle", "30"]);
    let mut c = admin(&s);
    let pkg = install_echo(&mut c);
    // An administrator's per-app limits reach the grain's cgroup.
    let details = c.get(&format!("/apps/{pkg}"));
    let bad = c.post(&format!("/apps/{pkg}/limits"), &[("csrf", &details.hidden("csrf")), ("memory_mib", "1"), ("tasks", "64")]);
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("between 16 MiB"), "{}", bad.body);
    let r = c.post(&format!("/apps/{pkg}/limits"), &[("csrf", &details.hidden("csrf")), ("memory_mib", "160"), ("tasks", "64")]);
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(c.get(&format!("/apps/{pkg}")).body.contains("160 MiB of memory and 64 processes"));
    let (grain_url, grain_id) = new_grain(&mut c, &pkg, "First");
    let (host, init) = open_frame(&mut c, &grain_url);
    assert!(host.ends_with(&format!(".localhost:{}", s.base_url.rsplit(':').next().unwrap())), "{host}");

    let mut o = Origin::enter(&s, &host, &init);
    // The init link works once.
    assert_eq!(Client::new(&s).get_with(&init, &[("Host", &host)]).status, 403);

    let echo = o.json(
        "/hello?x=1",
        &[("X-Granary-User-Id", "spoofed"), ("X-Remote-User", "root"), ("X-Forwarded-For", "6.6.6.6"), ("X-Requested-With", "XMLHttpRequest")],
    );
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["path"], "/hello?x=1");
    let h = &echo["headers"];
    let uid = h["x-granary-user-id"].as_str().unwrap();
    assert!(uid != "spoofed" && uid.len() == 32, "identity comes from the platform: {uid}");
    assert_eq!(h["x-granary-username"], "Ann%20%C3%89mile");
    assert_eq!(h["x-granary-user-handle"], "ann");
    assert_eq!(h["x-requested-with"], "XMLHttpRequest", "ordinary headers pass");
    // The manifest's conventional identity headers are filled by the platform, never the client.
    assert_eq!(h["x-remote-user"], "ann", "{h}");
    assert_eq!(h["x-forwarded-groups"], "edit");
    assert!(h.get("x-forwarded-for").is_none(), "the client's address never reaches a grain");
    let cookies = h["cookie"].as_str().unwrap_or("");
    assert!(!cookies.contains("granary_grain") && !cookies.contains("granary_sid"), "platform cookies are stripped: {cookies}");
    assert_eq!(o.json("/again", &[])["visits"], 2);
    let (memory, tasks) = cgroup_limits(&grain_id);
    assert_eq!((memory, tasks), (160 << 20, 64), "the app's limits are the grain's cgroup's");

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
    assert_eq!(Client::new(&s).get_with("/", &[("Host", &format!("nosuchsession.granary.localhost:{port}"))]).status, 404);
    // /hello, /again, POST /x, POST /upload, /cookie, and this one: the refused ones never arrived.
    assert_eq!(o.json("/count", &[])["visits"], 6, "none of the refused requests reached the app");
    let visits = s.data.path().join("grains").join(&grain_id).join("var/visits");
    assert_eq!(fs::read_to_string(&visits).unwrap(), "6", "the grain's /var is its storage directory");

    // The owner's debug log streams the app's output live.
    let log = c.read_until(&format!("{grain_url}/log"), "GET /count");
    assert!(log.contains("echo app starting") && log.contains("GET /count"), "{log}");

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
    // A stopped grain's log is read from its files.
    let log = c.get(&format!("{grain_url}/log"));
    assert!(log.body.contains("echo app starting") && log.body.contains("the grain is stopped"), "{}", log.body);
}
