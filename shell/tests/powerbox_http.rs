//! The powerbox end to end, over real HTTP with real grains (root): the dialog's routes, claims
//! redeemed by an app through the bridge's local API, the HTTP driver reaching a real server on
//! loopback (and nothing else), grain-to-grain APIs, live revocation, requirements that stop
//! holding, persistence across a `kill -9`, and the mail drivers against a real SMTP relay.
//! The app is `grain_app/powerbox_app.py` (Debian's python3 in a grain).

mod common;
mod grainkit;
mod pbkit;
mod server;

use grainkit::{invite, link_id, new_grain, open_frame, open_link, require_root, share, OpenGrain as Open, Origin};
use granary_powerbox::matching::{encode_descriptor, http_api_descriptor, mail_descriptor};
use pbkit::{install_app, OriginServer, Relay};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use server::{bridge, Client, TestServer};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// The test app answers `/` with the session it sees.
fn sees_its_session(o: &mut Origin, session: &str) {
    assert_eq!(o.json("/", &[])["session"], session);
}

fn open(s: &TestServer, c: &mut Client, pkg: &str, title: &str) -> Open {
    grainkit::open_new_grain(s, c, pkg, title, sees_its_session)
}

fn reopen(s: &TestServer, c: &mut Client, url: &str, id: &str) -> Open {
    grainkit::reopen_grain(s, c, url, id, sees_its_session)
}

/// POSTs JSON to the app on its session origin; returns (status, JSON).
fn app(g: &mut Open, path: &str, body: Value) -> (u16, Value) {
    let host = g.o.host.clone();
    let r = g.o.c.upload_with(path, body.to_string().as_bytes(), "", &[("Host", host.as_str())]);
    (r.status, serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", r.body)))
}

/// The dialog's `options` for `query` as the person `c` on `g`'s page.
fn options(c: &mut Client, g: &Open, query: &[String]) -> Value {
    let csrf = c.get(&g.url).hidden("csrf");
    let q = serde_json::to_string(query).unwrap();
    let r = c.post(&format!("/grains/{}/powerbox/options", g.id), &[("csrf", &csrf), ("session", &g.session), ("query", &q)]);
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

/// Picks `option` in the dialog; returns the claim token.
fn pick(c: &mut Client, g: &Open, query: &[String], option: &str) -> String {
    let csrf = c.get(&g.url).hidden("csrf");
    let q = serde_json::to_string(query).unwrap();
    let r = c.post(&format!("/grains/{}/powerbox/pick", g.id), &[("csrf", &csrf), ("session", &g.session), ("query", &q), ("option", option)]);
    assert_eq!(r.status, 200, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    let token = v["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("gc_"), "{v}");
    token
}

/// Picks and claims `option` in one go; returns the saved capability's token.
fn grant(c: &mut Client, g: &mut Open, query: &[String], option: &str) -> String {
    let claim = pick(c, g, query, option);
    let (status, v) = app(g, "/claim", json!({ "claimToken": claim, "label": "test grant" }));
    assert_eq!(status, 200, "{v}");
    v["token"].as_str().unwrap().to_owned()
}

fn call(g: &mut Open, token: &str, url: &str) -> Value {
    let (status, v) = app(g, "/call", json!({ "token": token, "url": url }));
    assert_eq!(status, 200, "{v}");
    v
}

fn settings(c: &mut Client, fields: &[(&str, &str)]) {
    let csrf = c.get("/admin/settings").hidden("csrf");
    let mut form = vec![("csrf", csrf.as_str()), ("memory_mib", "512"), ("tasks", "256")];
    form.extend_from_slice(fields);
    let r = c.post("/admin/settings", &form);
    assert_eq!(r.status, 200, "{}", r.body);
}

/// The grant ids listed on a reach page.
fn grant_ids(page: &str) -> Vec<String> {
    page.split("data-grant=\"").skip(1).map(|r| r.split('"').next().unwrap().to_owned()).collect()
}

fn revoke(c: &mut Client, grant: &str) {
    let csrf = c.get("/reach").hidden("csrf");
    let r = c.post(&format!("/grants/{grant}/revoke"), &[("csrf", &csrf)]);
    assert_eq!(r.status, 303, "{}", r.body);
}

/// Calls through `token` until a call fails with "revoked"; returns how long that took.
fn time_until_revoked(g: &mut Open, token: &str, url: &str, since: Instant) -> Duration {
    loop {
        let v = call(g, token, url);
        if v["status"] != 200 {
            assert_eq!(v["status"], 403, "{v}");
            assert!(v["body"].as_str().unwrap().contains("revoked"), "{v}");
            return since.elapsed();
        }
        assert!(since.elapsed() < Duration::from_secs(5), "still working 5 s after the revocation: {v}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_http_driver_reaches_only_its_origin_and_revocation_is_live() {
    require_root();
    let origin = OriginServer::start();
    let s = TestServer::start_with(&["--bridge", bridge().to_str().unwrap(), "--resolve", "api.test=127.0.0.1"]);
    let mut ann = grainkit::admin(&s);
    let pkg = install_app(&mut ann);
    let mut a = open(&s, &mut ann, &pkg, "Consumer");
    let api = format!("http://api.test:{}", origin.port);
    let query = vec![encode_descriptor(&http_api_descriptor(Some(&api), None, None))];

    // The dialog offers the HTTP driver for exactly that origin.
    let opts = options(&mut ann, &a, &query);
    assert!(opts["asked"].as_str().unwrap().contains(&api), "{opts}");
    assert_eq!(opts["options"][0]["id"], "http:0", "{opts}");
    assert_eq!(opts["options"][0]["verbPhrase"], format!("may send HTTP requests to {api}"));

    // Not allowlisted yet: api.test resolves to loopback, so the server refuses to connect.
    let token = grant(&mut ann, &mut a, &query, "http:0");
    assert!(token.starts_with("gs_"));
    let v = call(&mut a, &token, &format!("{api}/hello"));
    assert_eq!(v["status"], 403, "{v}");
    assert!(v["body"].as_str().unwrap().contains("loopback"), "{v}");
    assert!(origin.seen().is_empty(), "a refused request reached the origin");

    settings(&mut ann, &[("http_allowlist", "api.test")]);
    let v = call(&mut a, &token, &format!("{api}/hello?x=1"));
    assert_eq!(v["status"], 200, "{v}");
    let body: Value = serde_json::from_str(v["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["path"], "/hello?x=1");
    let seen = origin.seen();
    assert_eq!((seen.len(), seen[0].method.as_str(), seen[0].path.as_str(), seen[0].host.clone()), (1, "GET", "/hello?x=1", format!("api.test:{}", origin.port)));

    // A streamed upload (past the 64 KiB inline limit) passes the membrane and the driver.
    let (status, v) = app(&mut a, "/call", json!({ "token": token, "url": format!("{api}/upload"), "method": "POST", "body_bytes": 300_000 }));
    assert_eq!((status, v["status"].clone()), (200, json!(200)), "{v}");
    assert_eq!(origin.seen().last().unwrap().body_bytes, 300_000);

    // Another host through the same capability is refused by the server, not reached.
    let before = origin.seen().len();
    let v = call(&mut a, &token, &format!("http://other.test:{}/", origin.port));
    assert_eq!(v["status"], 403, "{v}");
    assert!(v["body"].as_str().unwrap().contains("reaches only"), "{v}");
    // The grain itself cannot connect anywhere: its network namespace has only loopback.
    let conns = *origin.connections.lock().unwrap();
    let direct = a.o.json(&format!("/direct?port={}", origin.port), &[]);
    for host in ["127.0.0.1", "10.0.2.2"] {
        assert_ne!(direct[host], "connected", "{direct}");
    }
    assert!(direct["127.0.0.1"].as_str().unwrap().contains("ConnectionRefused"), "{direct}");
    assert_eq!((origin.seen().len(), *origin.connections.lock().unwrap()), (before, conns), "nothing reached the origin directly");

    // A claim token is single use.
    let claim = pick(&mut ann, &a, &query, "http:0");
    let (status, _) = app(&mut a, "/claim", json!({ "claimToken": claim }));
    assert_eq!(status, 200);
    let (status, v) = app(&mut a, "/claim", json!({ "claimToken": claim }));
    assert_eq!(status, 403, "{v}");
    assert!(v["error"].as_str().unwrap().contains("unknown, used, expired"), "{v}");

    // Another grain holding the token has nothing: it fails like an unknown token.
    let mut b = open(&s, &mut ann, &pkg, "Other");
    let v = call(&mut b, &token, &format!("{api}/hello"));
    assert_eq!(v["status"], 403, "{v}");
    assert!(v["body"].as_str().unwrap().contains("revoked: this saved capability is unknown"), "{v}");

    // "What can this reach" lists the grant; revoking it ends the live capability at once.
    let page = ann.get(&format!("/grains/{}/reach", a.id));
    assert!(page.body.contains(&format!("may send HTTP requests to {api}")), "{}", page.body);
    let ids = grant_ids(&page.body);
    assert_eq!(ids.len(), 2, "two saved grants: {ids:?}");
    assert_eq!(call(&mut a, &token, &format!("{api}/x"))["status"], 200);
    for id in &ids {
        revoke(&mut ann, id);
    }
    let took = time_until_revoked(&mut a, &token, &format!("{api}/x"), Instant::now());
    eprintln!("HTTP driver: the first call after revoking failed after {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(ann.get(&format!("/grains/{}/reach", a.id)).body.contains("revoked"));
}

#[test]
fn grain_to_grain_needs_the_choosers_permissions_for_as_long_as_it_lives() {
    require_root();
    let mut s = TestServer::start_with(&["--bridge", bridge().to_str().unwrap()]);
    let mut ann = grainkit::admin(&s);
    let pkg = install_app(&mut ann);
    let provider = open(&s, &mut ann, &pkg, "Provider");
    let mut consumer = open(&s, &mut ann, &pkg, "Consumer");
    let query = vec![encode_descriptor(&http_api_descriptor(None, None, Some("echo-api")))];
    let opts = options(&mut ann, &consumer, &query);
    let option = format!("grain:{}:echo-api:0", provider.id);
    assert_eq!(opts["options"].as_array().unwrap().len(), 1, "only the provider (not the consumer itself): {opts}");
    assert_eq!(opts["options"][0]["id"], option.as_str());
    assert_eq!(opts["options"][0]["title"], "Provider");

    let token = grant(&mut ann, &mut consumer, &query, &option);
    let v = call(&mut consumer, &token, "http://provider/things?q=1");
    assert_eq!(v["status"], 200, "{v}");
    let body: Value = serde_json::from_str(v["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["api"], "/api/things?q=1", "below the provider's path prefix");
    assert_eq!(body["session_type"], "api");
    assert_eq!(body["permissions"], "edit");
    // The path cannot leave the prefix.
    let v = call(&mut consumer, &token, "http://provider/../admin");
    assert_ne!(v["status"], 200, "{v}");

    // The provider's API session exists: its calls go to the provider's bridge on the direct
    // web channel, so they work while the provider's supervisor is frozen.
    let frozen = supervisor_of(&s, &provider.id);
    signal(frozen, "STOP");
    let (tx, rx) = std::sync::mpsc::channel();
    let t = token.clone();
    let worker = std::thread::spawn(move || {
        let v = call(&mut consumer, &t, "http://provider/around-the-supervisor");
        let _ = tx.send(v);
        consumer
    });
    let got = rx.recv_timeout(Duration::from_secs(20));
    signal(frozen, "CONT");
    let mut consumer = worker.join().unwrap();
    let v = got.expect("the call waited for the provider's frozen supervisor: it did not take the direct channel");
    assert_eq!(v["status"], 200, "{v}");

    // A person with only `viewer` on the provider is not offered it; an editor is, and loses
    // it live when their link is revoked.
    let mut bob = invite(&s, &mut ann, "bob");
    let viewer = share(&mut ann, &provider.id, "0", "for bob, viewer");
    open_link(&mut bob, &viewer);
    let mut bobs = open(&s, &mut bob, &pkg, "Bob's consumer");
    assert_eq!(options(&mut bob, &bobs, &query)["options"].as_array().unwrap().len(), 0, "viewer lacks edit");
    let editor = share(&mut ann, &provider.id, "1", "for bob, editor");
    open_link(&mut bob, &editor);
    let opts = options(&mut bob, &bobs, &query);
    assert_eq!(opts["options"][0]["id"], option.as_str(), "{opts}");
    let bobs_token = grant(&mut bob, &mut bobs, &query, &option);
    assert_eq!(call(&mut bobs, &bobs_token, "http://provider/x")["status"], 200);
    let access = ann.get(&format!("/grains/{}/access", provider.id));
    let link = link_id(&access.body, "for bob, editor");
    let start = Instant::now();
    let r = ann.post(&format!("/grains/{}/links/{link}/revoke", provider.id), &[("csrf", &access.hidden("csrf"))]);
    assert!(r.status == 303 || r.status == 200, "{}", r.body);
    let took = time_until_revoked(&mut bobs, &bobs_token, "http://provider/x", start);
    eprintln!("grain to grain: a call failed {took:?} after the share link was revoked");
    assert!(took < Duration::from_secs(1), "{took:?}");
    // Ann's own grant is untouched.
    assert_eq!(call(&mut consumer, &token, "http://provider/x")["status"], 200);

    // The provider's reach page shows who can reach it.
    let page = ann.get(&format!("/grains/{}/reach", provider.id));
    assert!(page.body.contains("may use Echo API in “Provider”"), "{}", page.body);

    // After the server and then both grains restart, the consumer restores its grant and calls.
    drop(bobs);
    s.kill_and_restart();
    let mut consumer = reopen(&s, &mut ann, &consumer.url, &consumer.id);
    assert_eq!(call(&mut consumer, &token, "http://provider/once-more")["status"], 200);
    for id in [&provider.id, &consumer.id] {
        let csrf = ann.get(&format!("/grains/{id}")).hidden("csrf");
        let r = ann.post(&format!("/grains/{id}/restart"), &[("csrf", &csrf)]);
        assert_eq!(r.status, 303, "{}", r.body);
    }
    let mut consumer = reopen(&s, &mut ann, &consumer.url, &consumer.id);
    let v = call(&mut consumer, &token, "http://provider/after-restarts");
    assert_eq!(v["status"], 200, "{v}");
    assert!(v["body"].as_str().unwrap().contains("/api/after-restarts"), "{v}");
}

#[test]
fn grants_survive_kill_9_and_children_end_with_their_parent() {
    require_root();
    let origin = OriginServer::start();
    let mut s = TestServer::start_with(&["--bridge", bridge().to_str().unwrap(), "--resolve", "api.test=127.0.0.1"]);
    let mut ann = grainkit::admin(&s);
    settings(&mut ann, &[("http_allowlist", "api.test")]);
    let pkg = install_app(&mut ann);
    let mut a = open(&s, &mut ann, &pkg, "Saver");
    let api = format!("http://api.test:{}", origin.port);
    let query = vec![encode_descriptor(&http_api_descriptor(Some(&api), None, None))];
    let root = grant(&mut ann, &mut a, &query, "http:0");

    // A burst of saves (copies of the root), killed mid-way with SIGKILL.
    let tokens_file = s.data.path().join("grains").join(&a.id).join("var/tokens.txt");
    let host = a.o.host.clone();
    let base = s.base_url.clone();
    let cookie = format!("granary_grain={}", a.o.c.cookie("granary_grain").unwrap());
    let burst = std::thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let _ = agent.post(format!("{base}/burst")).header("Host", &host).header("Cookie", &cookie).send(json!({ "token": root, "n": 400 }).to_string().as_bytes());
    });
    let start = Instant::now();
    while std::fs::read_to_string(&tokens_file).map(|t| t.lines().count()).unwrap_or(0) < 20 {
        assert!(start.elapsed() < Duration::from_secs(30), "the burst did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    s.kill_and_restart();
    let _ = burst.join();
    let saved: Vec<String> = std::fs::read_to_string(&tokens_file).unwrap().lines().map(str::to_owned).collect();
    assert!(saved.len() >= 20 && saved.len() < 400, "the kill interrupted the burst: {} saved", saved.len());

    // Every save that returned a token restores after the restart.
    let mut a = reopen(&s, &mut ann, &a.url.clone(), &a.id.clone());
    for t in &saved {
        let v = call(&mut a, t, &format!("{api}/after"));
        assert_eq!(v["status"], 200, "a token saved before the kill does not restore: {v}");
    }
    let v = call(&mut a, saved.last().unwrap(), &format!("{api}/after"));
    assert_eq!(v["status"], 200);

    // The copies are children of the root: revoking the root ends them all.
    let page = ann.get(&format!("/grains/{}/reach", a.id));
    assert!(page.body.contains("passed on from another grant"), "{}", page.body);
    let roots: Vec<String> = grant_ids(&page.body)
        .into_iter()
        .filter(|id| page.body.split(&format!("data-grant=\"{id}\"")).nth(1).is_some_and(|row| !row.split("</tr>").next().unwrap().contains("passed on")))
        .collect();
    assert_eq!(roots.len(), 1, "one root grant: {roots:?}");
    revoke(&mut ann, &roots[0]);
    let v = call(&mut a, &saved[0], &format!("{api}/after"));
    assert_eq!(v["status"], 403, "a child outlived its parent: {v}");
    assert!(v["body"].as_str().unwrap().contains("revoked"), "{v}");
}

#[test]
fn mail_is_sent_as_the_grain_and_received_into_its_maildir() {
    require_root();
    let relay = Relay::start();
    let smtp_port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{smtp_port}");
    let s = TestServer::start_with(&["--bridge", bridge().to_str().unwrap(), "--smtp-listen", &listen]);
    let mut ann = grainkit::admin(&s);
    let pkg = install_app(&mut ann);
    let mut a = open(&s, &mut ann, &pkg, "Mailer");
    let query = vec![encode_descriptor(&mail_descriptor(None))];
    let own = format!("{}@127.0.0.1", a.id);
    let opts = options(&mut ann, &a, &query);
    assert_eq!(opts["options"][0]["verbPhrase"], format!("may send mail as {own}"), "{opts}");
    let token = grant(&mut ann, &mut a, &query, "mail:0");

    // No relay configured: a clear error.
    let message = "From: someone-else@example.org\r\nSubject: Hello\r\n\r\nFrom the grain.\r\n";
    let (status, v) = app(&mut a, "/mail", json!({ "token": token, "to": ["friend@example.org"], "message": message }));
    assert_ne!(status, 200, "{v}");
    assert!(v["error"].as_str().unwrap().contains("SMTP relay"), "{v}");

    settings(&mut ann, &[("smtp_relay", &format!("127.0.0.1:{}", relay.port))]);
    let (status, v) = app(&mut a, "/mail", json!({ "token": token, "to": ["friend@example.org"], "message": message }));
    assert_eq!(status, 200, "{v}");
    let got = relay.wait_for_messages(1);
    assert!(got[0].contains(&format!("From: {own}")), "{}", got[0]);
    assert!(!got[0].contains("someone-else@example.org"), "the forged From is gone: {}", got[0]);
    assert!(got[0].contains("From the grain."));

    // The person's own address, once verified by a mailed link, can be granted too; removing
    // it ends the grant.
    let csrf = ann.get("/account").hidden("csrf");
    let r = ann.post("/account/email", &[("csrf", &csrf), ("email", "Ann@Example.org")]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("We sent a link to ann@example.org"), "{}", r.body);
    let mails = relay.wait_for_messages(2);
    let check = mails.iter().find(|m| m.contains("Confirm your mail address")).expect("the verification mail");
    let link = check.split(&format!("{}/account/email/", s.base_url)).nth(1).unwrap().split_whitespace().next().unwrap();
    assert!(!options(&mut ann, &a, &query)["options"].to_string().contains("ann@example.org"), "not before it is verified");
    let r = ann.get(&format!("/account/email/{link}"));
    assert!(r.body.contains("ann@example.org is now your verified mail address"), "{}", r.body);
    assert_eq!(ann.get(&format!("/account/email/{link}")).status, 400, "a link works once");
    let opts = options(&mut ann, &a, &query);
    let mine = opts["options"].as_array().unwrap().iter().find(|o| o["id"] == "mail-user:0").unwrap_or_else(|| panic!("{opts}")).clone();
    assert_eq!(mine["verbPhrase"], "may send mail as ann@example.org");
    let as_ann = grant(&mut ann, &mut a, &query, "mail-user:0");
    let (status, v) = app(&mut a, "/mail", json!({ "token": as_ann, "to": ["friend@example.org"], "message": "Subject: From Ann\r\n\r\nHi.\r\n" }));
    assert_eq!(status, 200, "{v}");
    let got = relay.wait_for_messages(3);
    let sent = got.iter().find(|m| m.contains("Subject: From Ann")).expect("the mail sent as Ann");
    assert!(sent.contains("From: ann@example.org"), "{sent}");
    let csrf = ann.get("/account").hidden("csrf");
    assert_eq!(ann.post("/account/email", &[("csrf", &csrf), ("email", "")]).status, 200);
    let (status, v) = app(&mut a, "/mail", json!({ "token": as_ann, "to": ["friend@example.org"], "message": "Subject: Again\r\n\r\nHi.\r\n" }));
    assert_eq!(status, 403, "the grant ended with the address: {v}");
    assert!(v["error"].as_str().unwrap().contains("revoked"), "{v}");

    // Mail to the grain's address lands in its Maildir.
    let mut smtp = TcpStream::connect(("127.0.0.1", smtp_port)).unwrap();
    smtp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut r = BufReader::new(smtp.try_clone().unwrap());
    let mut expect = |code: &str| {
        let mut line = String::new();
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
        assert!(line.starts_with(code), "expected {code}, got {line}");
    };
    expect("220");
    for (cmd, code) in [("EHLO test", "250"), ("MAIL FROM:<friend@example.org>", "250"), (&format!("RCPT TO:<{own}>") as &str, "250"), ("DATA", "354")] {
        write!(smtp, "{cmd}\r\n").unwrap();
        expect(code);
    }
    write!(smtp, "Subject: Inbound\r\n\r\nHello grain.\r\n.\r\n").unwrap();
    expect("250");
    write!(smtp, "QUIT\r\n").unwrap();
    let files = a.o.json("/maildir", &[]);
    let files = files.as_object().unwrap();
    assert_eq!(files.len(), 1, "{files:?}");
    let text = files.values().next().unwrap().as_str().unwrap();
    assert!(text.contains("Subject: Inbound") && text.contains("Hello grain."), "{text}");
}

#[test]
fn a_wake_lock_is_shown_to_the_owner_until_released() {
    require_root();
    let s = TestServer::start_with(&["--bridge", bridge().to_str().unwrap()]);
    let mut ann = grainkit::admin(&s);
    let pkg = install_app(&mut ann);
    let mut a = open(&s, &mut ann, &pkg, "Awake");
    assert!(!ann.get(&a.url).body.contains("wake-locks"));
    let (status, v) = app(&mut a, "/awake", json!({ "reason": "syncing 3 calendars" }));
    assert_eq!(status, 200, "{v}");
    let id = v["id"].as_u64().unwrap();
    let page = ann.get(&a.url).body;
    assert!(page.contains("Kept awake by the app") && page.contains("syncing 3 calendars"), "{page}");
    let (status, v) = app(&mut a, "/awake", json!({ "reason": " " }));
    assert_eq!(status, 400, "a reason is required: {v}");
    let (status, v) = app(&mut a, "/asleep", json!({ "id": id }));
    assert_eq!(status, 200, "{v}");
    let start = Instant::now();
    while ann.get(&a.url).body.contains("syncing 3 calendars") {
        assert!(start.elapsed() < Duration::from_secs(5), "the released wake lock is still shown");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_rendered_template_holds_a_grain_api_token_that_works_until_revoked() {
    require_root();
    let s = TestServer::start_with(&["--bridge", bridge().to_str().unwrap()]);
    let mut ann = grainkit::admin(&s);
    let pkg = install_app(&mut ann);
    let a = open(&s, &mut ann, &pkg, "With an API");
    let csrf = ann.get(&a.url).hidden("csrf");
    let template = "curl -H 'Authorization: Bearer $API_TOKEN' $API_HOST/api/feed";
    let form = [("csrf", csrf.as_str()), ("session", a.session.as_str()), ("template", template), ("petname", "Feed reader"), ("role", "0")];
    let r = ann.post(&format!("/grains/{}/powerbox/template", a.id), &form);
    assert_eq!(r.status, 200, "{}", r.body);
    let text = serde_json::from_str::<Value>(&r.body).unwrap()["text"].as_str().unwrap().to_owned();
    let host = format!("{}/grain-api", s.base_url);
    assert!(text.starts_with("curl -H 'Authorization: Bearer gk_") && text.ends_with(&format!(" {host}/api/feed")), "{text}");
    let token = text.split("Bearer ").nth(1).unwrap().split('\'').next().unwrap().to_owned();

    // A program (no cookies, another origin) calls the grain's API with it, as the viewer role.
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let get = |auth: &str| {
        let mut r = agent.get(format!("{host}/api/feed?n=1")).header("Authorization", auth).header("Origin", "https://elsewhere.example").call().unwrap();
        let cors = r.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap().to_owned());
        (r.status().as_u16(), cors, r.body_mut().read_to_string().unwrap())
    };
    let (status, cors, body) = get(&format!("Bearer {token}"));
    assert_eq!((status, cors.as_deref()), (200, Some("*")), "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["api"], "/api/feed?n=1");
    assert_eq!(v["session_type"], "api");
    assert_eq!(v["permissions"], "", "the viewer role has no permissions");
    // The program's requests share one API session of the grain; after a Restart the next
    // request opens another (no 502 from the dead one).
    let session_of = |auth: &str| -> String {
        let (status, _, body) = get(auth);
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()["session"].as_str().unwrap().to_owned()
    };
    let first = v["session"].as_str().unwrap().to_owned();
    assert!(first.starts_with("api-"), "{v}");
    assert_eq!(session_of(&format!("Bearer {token}")), first, "a second request opened a new API session");
    let r = ann.post(&format!("/grains/{}/restart", a.id), &[("csrf", &csrf)]);
    assert_eq!(r.status, 303, "{}", r.body);
    // A large upload crosses whole and in order (the first request after the Restart: it opens
    // the API session and starts the grain while its first writes wait, yet they must arrive first).
    let big: Vec<u8> = (0..(3u32 << 19) + 7).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let mut r = agent.post(format!("{host}/api/digest")).header("Authorization", format!("Bearer {token}")).send(&big[..]).unwrap();
    let body = r.body_mut().read_to_string().unwrap();
    assert_eq!(r.status().as_u16(), 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["bytes"].as_u64(), Some(big.len() as u64));
    let want = Sha256::digest(&big).iter().map(|b| format!("{b:02x}")).collect::<String>();
    assert_eq!(v["sha256"].as_str(), Some(want.as_str()), "the upload arrived reordered or changed");
    let after = session_of(&format!("Bearer {token}"));
    assert!(after.starts_with("api-") && after != first, "{after} after a Restart");
    // A program's requests that arrive together after a Restart share the one API session the
    // first of them opens (each opening its own ended the others' mid-request).
    let r = ann.post(&format!("/grains/{}/restart", a.id), &[("csrf", &csrf)]);
    assert_eq!(r.status, 303, "{}", r.body);
    let auth = format!("Bearer {token}");
    let together: Vec<String> = std::thread::scope(|scope| {
        let calls: Vec<_> = (0..8).map(|_| scope.spawn(|| session_of(&auth))).collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    assert!(together.iter().all(|s| *s == together[0] && *s != after), "{together:?} after {after}");
    assert_eq!(get("Bearer gk_0000000000000000000000000000000000000000000000000000000000000000").0, 401);
    assert_eq!(get("").0, 401);

    // The reach page lists it; revoking it stops it at once.
    let page = ann.get(&format!("/grains/{}/reach", a.id)).body;
    assert!(page.contains("Feed reader"), "{page}");
    let id = page.split("data-token=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let r = ann.post(&format!("/grains/{}/api-tokens/{id}/revoke", a.id), &[("csrf", &csrf)]);
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(get(&format!("Bearer {token}")).0, 401, "a revoked token still works");
}

#[test]
fn a_kept_grain_api_session_is_not_used_once_the_makers_role_is_lowered() {
    require_root();
    let s = TestServer::start_with(&["--bridge", bridge().to_str().unwrap()]);
    let mut ann = grainkit::admin(&s);
    let pkg = install_app(&mut ann);
    let a = open(&s, &mut ann, &pkg, "Shared API");
    // Bob, an editor through a link, makes a token with his permissions.
    let link = share(&mut ann, &a.id, "1", "Bob");
    let mut bob = invite(&s, &mut ann, "bob");
    open_link(&mut bob, &link);
    let b = reopen(&s, &mut bob, &a.url, &a.id);
    let csrf = bob.get(&b.url).hidden("csrf");
    let form = [("csrf", csrf.as_str()), ("session", b.session.as_str()), ("template", "$API_TOKEN"), ("petname", "Bob's script")];
    let r = bob.post(&format!("/grains/{}/powerbox/template", a.id), &form);
    assert_eq!(r.status, 200, "{}", r.body);
    let token = serde_json::from_str::<Value>(&r.body).unwrap()["text"].as_str().unwrap().to_owned();
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let feed = || -> Value {
        let mut r = agent.get(format!("{}/grain-api/api/feed", s.base_url)).header("Authorization", format!("Bearer {token}")).call().unwrap();
        let body = r.body_mut().read_to_string().unwrap();
        assert_eq!(r.status().as_u16(), 200, "{body}");
        serde_json::from_str(&body).unwrap()
    };
    let first = feed();
    assert_eq!(first["permissions"], "edit");
    assert_eq!(feed()["session"], first["session"], "the token's requests share one API session");
    // Ann lowers the link to viewer: the session kept with "edit" must not serve the token again.
    let access = ann.get(&format!("/grains/{}/access", a.id));
    let r = ann.post(&format!("/grains/{}/links/{}/role", a.id, link_id(&access.body, "Bob")), &[("csrf", &access.hidden("csrf")), ("role", "0")]);
    assert_eq!(r.status, 303, "{}", r.body);
    let after = feed();
    assert_eq!(after["permissions"], "", "{after}");
    assert_ne!(after["session"], first["session"], "a new API session with the lowered permissions");
}

#[test]
fn a_grain_page_reopens_its_frame_at_the_path_set_by_set_path_and_only_inside_the_grain() {
    require_root();
    let s = TestServer::start_with(&["--bridge", bridge().to_str().unwrap()]);
    let mut ann = grainkit::admin(&s);
    let pkg = install_app(&mut ann);
    let (url, _) = new_grain(&mut ann, &pkg, "Deep");
    let land = |ann: &mut Client, query: &str| {
        let (host, init) = open_frame(ann, &format!("{url}{query}"));
        let mut c = Client::new(&s);
        let r = c.get_with(&init, &[("Host", host.as_str())]);
        assert_eq!(r.status, 303, "{}", r.body);
        r.location()
    };
    assert_eq!(land(&mut ann, "?path=%2Fapi%2Fdeep%3Fq%3D1"), "/api/deep?q=1");
    assert_eq!(land(&mut ann, ""), "/");
    for outside in ["%2F%2Fevil.example%2F", "https%3A%2F%2Fevil.example%2F", "%2F%5Cevil.example", "relative"] {
        assert_eq!(land(&mut ann, &format!("?path={outside}")), "/", "{outside} must not leave the grain");
        // The gateway checks it again when the init URL itself carries it.
        let (host, init) = open_frame(&mut ann, &url);
        let r = Client::new(&s).get_with(&format!("{init}?path={outside}"), &[("Host", host.as_str())]);
        assert_eq!((r.status, r.location()), (303, "/".to_owned()), "{outside} at the gateway");
    }
}

/// The supervisor process of grain `grain` (a child of the server whose command line names it).
fn supervisor_of(s: &TestServer, grain: &str) -> u32 {
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)).and_then(|p| p.parse::<u32>().ok());
        let cmdline = String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()).into_owned();
        if ppid == Some(s.pid()) && cmdline.split('\0').nth(1) == Some("supervisor") && cmdline.contains(&format!("/grains/{grain}/")) {
            return pid;
        }
    }
    panic!("no supervisor for grain {grain}");
}

/// Sends `signal` (`STOP`, `CONT`) to `pid` with kill(1).
fn signal(pid: u32, signal: &str) {
    let ok = std::process::Command::new("kill").args([format!("-{signal}"), pid.to_string()]).status().unwrap().success();
    assert!(ok, "kill -{signal} {pid}");
}
