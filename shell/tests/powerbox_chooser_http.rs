//! Provider chooser pages end to end, over real HTTP with real grains (root): the options mark
//! a provider with a `chooser_path`, the dialog's route opens a session of the provider at
//! that page, the page's app fulfils through the bridge's `/fulfill` (→ supervisor →
//! `SessionContext.fulfillRequest`), the dialog's poll gets the claim, and the requester's
//! grant reaches only below the narrowed prefix. What a chooser may not grant is refused.
//! And `SessionContext.offer`: an app offers the person an API key, which only their page is
//! given and only their click makes. The apps are `grain_app/powerbox_app.py` (Debian's
//! python3 in a grain).

mod common;
mod grainkit;
mod pbkit;
mod server;

use grainkit::{invite, link_id, open_link, require_root, share, OpenGrain as Open, Origin};
use granary_powerbox::matching::{encode_descriptor, http_api_descriptor};
use serde_json::{json, Value};
use server::{bridge, Client, TestServer};

fn open(s: &TestServer, c: &mut Client, pkg: &str, title: &str) -> Open {
    grainkit::open_new_grain(s, c, pkg, title, |o, session| assert_eq!(o.json("/", &[])["session"], session))
}

/// POSTs JSON to the app on a session origin; returns (status, JSON).
fn app(o: &mut Origin, path: &str, body: Value) -> (u16, Value) {
    let host = o.host.clone();
    let r = o.c.upload_with(path, body.to_string().as_bytes(), "", &[("Host", host.as_str())]);
    (r.status, serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", r.body)))
}

/// A dialog route of `g`'s page as the person `c`: (status, JSON).
fn dialog(c: &mut Client, g: &Open, what: &str, fields: &[(&str, &str)]) -> (u16, Value) {
    let csrf = c.get(&g.url).hidden("csrf");
    let mut form = vec![("csrf", csrf.as_str()), ("session", g.session.as_str())];
    form.extend_from_slice(fields);
    let r = c.post(&format!("/grains/{}/powerbox/{what}", g.id), &form);
    (r.status, serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{what}: {e}: {}", r.body)))
}

/// Opens the chooser of `option` for `query`; returns (chooser id, a browser on the chooser's
/// session origin, where the init URL sent it).
fn open_chooser(s: &TestServer, c: &mut Client, g: &Open, query: &[String], option: &str) -> (String, Origin, String) {
    let q = serde_json::to_string(query).unwrap();
    let (status, v) = dialog(c, g, "chooser", &[("query", &q), ("option", option)]);
    assert_eq!(status, 200, "{v}");
    let url = v["url"].as_str().unwrap();
    let (host, init) = url.strip_prefix("http://").unwrap().split_once('/').unwrap();
    assert_ne!(host.split('.').next().unwrap(), g.session, "a session of its own");
    let mut o = Origin { c: Client::new(s), host: host.to_owned() };
    let r = o.get(&format!("/{init}"), &[]);
    assert_eq!(r.status, 303, "{}", r.body);
    (v["chooser"].as_str().unwrap().to_owned(), o, r.location())
}

fn poll(c: &mut Client, g: &Open, id: &str) -> (u16, Value) {
    dialog(c, g, &format!("chooser/{id}"), &[])
}

/// Fulfils from the page's app (its session id is the one the bridge saw).
fn fulfil(o: &mut Origin, body: Value) -> (u16, Value) {
    app(o, "/fulfill", body)
}

/// Installs the Python test app as a provider of "picked-api" below `/api/` (needs `edit`)
/// with its chooser page at `/choose`; returns its package id.
fn install_chooser_provider(ann: &mut Client) -> String {
    let provides = r#"[[powerbox.provides]]
api = "picked-api"
title = "Picked API"
path_prefix = "/api/"
permissions = ["edit"]
chooser_path = "/choose""#;
    grainkit::install_python_app(ann, "powerbox_app.py", "Chooser provider", "", provides)
}

#[test]
fn a_chooser_page_narrows_the_grant_and_only_it_can_fulfil() {
    require_root();
    let s = TestServer::start_with(&["--bridge", bridge().to_str().unwrap()]);
    let mut ann = grainkit::admin(&s);
    let provider_pkg = install_chooser_provider(&mut ann);
    let consumer_pkg = pbkit::install_app(&mut ann);
    let mut provider = open(&s, &mut ann, &provider_pkg, "Provider");
    let mut consumer = open(&s, &mut ann, &consumer_pkg, "Consumer");
    let query = vec![encode_descriptor(&http_api_descriptor(None, None, Some("picked-api")))];
    let q = serde_json::to_string(&query).unwrap();

    // The option is marked as opening a chooser; picking it directly is refused.
    let (status, opts) = dialog(&mut ann, &consumer, "options", &[("query", &q)]);
    let option = format!("grain:{}:picked-api:0", provider.id);
    assert_eq!((status, opts["options"][0]["id"].as_str(), opts["options"][0]["chooser"].as_bool()), (200, Some(option.as_str()), Some(true)), "{opts}");
    let (status, v) = dialog(&mut ann, &consumer, "pick", &[("query", &q), ("option", &option)]);
    assert_eq!(status, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("provider's own page"), "{v}");
    // A provider without a chooser page is not marked.
    let echo_q = serde_json::to_string(&[encode_descriptor(&http_api_descriptor(None, None, Some("echo-api")))]).unwrap();
    let (_, echo) = dialog(&mut ann, &provider, "options", &[("query", &echo_q)]);
    assert_eq!(echo["options"][0]["chooser"], false, "{echo}");

    // A session that is not a chooser cannot fulfil: the provider's own page, the consumer's.
    for o in [&mut provider.o, &mut consumer.o] {
        let (status, v) = fulfil(o, json!({ "api": "picked-api", "pathPrefix": "/api/one/" }));
        assert_eq!(status, 403, "{v}");
        assert!(v["error"].as_str().unwrap().contains("not opened as a powerbox chooser"), "{v}");
    }

    // The chooser opens at the app's chooser page, in a new session of the provider, with the
    // request in its query.
    let (id, mut page, landing) = open_chooser(&s, &mut ann, &consumer, &query, &option);
    assert_eq!(landing, format!("/choose?powerboxRequest={}", query[0]));
    let seen = page.json(&landing, &[]);
    assert_eq!(seen["path"], landing.as_str(), "{seen}");
    assert_eq!(poll(&mut ann, &consumer, &id), (200, json!({ "state": "pending" })));

    // What the page may not grant.
    let refused = [
        (json!({ "api": "picked-api", "pathPrefix": "/other/" }), "not at or below `/api/`"),
        (json!({ "api": "picked-api", "pathPrefix": "/" }), "not at or below `/api/`"),
        (json!({ "api": "picked-api", "pathPrefix": "/api/../admin/" }), "is not valid"),
        (json!({ "api": "picked-api", "pathPrefix": "/api/one" }), "is not valid"),
        (json!({ "api": "echo-api", "pathPrefix": "/api/" }), "names the API `echo-api`"),
    ];
    for (body, why) in refused {
        let (status, v) = fulfil(&mut page, body.clone());
        assert_eq!(status, 403, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(why), "{body}: {v}");
    }
    assert_eq!(poll(&mut ann, &consumer, &id), (200, json!({ "state": "pending" })), "refusals leave it open");

    // A request that names a prefix: the chooser must answer exactly it. Cancel ends it.
    let narrow = vec![encode_descriptor(&http_api_descriptor(None, Some("/api/seven/"), Some("picked-api")))];
    let (other, mut other_page, _) = open_chooser(&s, &mut ann, &consumer, &narrow, &option);
    let (status, v) = fulfil(&mut other_page, json!({ "api": "picked-api", "pathPrefix": "/api/one/" }));
    assert_eq!(status, 403, "{v}");
    assert!(v["error"].as_str().unwrap().contains("does not match what the requesting grain asked for"), "{v}");
    assert_eq!(dialog(&mut ann, &consumer, &format!("chooser/{other}/cancel"), &[]), (200, json!({ "state": "canceled" })));
    assert_eq!(poll(&mut ann, &consumer, &other).0, 404);
    assert_eq!(other_page.get("/choose", &[]).status, 404, "the canceled chooser's session ended");
    // Another session's poll learns nothing (and does not end it).
    assert_eq!(dialog(&mut ann, &provider, &format!("chooser/{id}"), &[]).0, 404);
    assert_eq!(dialog(&mut ann, &provider, &format!("chooser/{id}/cancel"), &[]).0, 404);

    // The page chooses: the dialog's poll gets the claim and the chooser ends.
    let (status, v) = fulfil(&mut page, json!({ "api": "picked-api", "pathPrefix": "/api/one/", "title": "Item one" }));
    assert_eq!((status, &v), (200, &json!({})));
    let (status, v) = fulfil(&mut page, json!({ "api": "picked-api", "pathPrefix": "/api/two/" }));
    assert_eq!(status, 403, "{v}");
    assert!(v["error"].as_str().unwrap().contains("answered already"), "{v}");
    let (status, done) = poll(&mut ann, &consumer, &id);
    assert_eq!((status, done["state"].as_str()), (200, Some("done")), "{done}");
    assert_eq!(done["descriptor"], encode_descriptor(&http_api_descriptor(None, Some("/api/one/"), Some("picked-api"))));
    assert_eq!(poll(&mut ann, &consumer, &id).0, 404, "answered once");
    assert_eq!(page.get("/choose", &[]).status, 404, "the chooser's session ended");

    // The requester claims it; its calls reach only below /api/one/.
    let (status, v) = app(&mut consumer.o, "/claim", json!({ "claimToken": done["token"], "label": "one item" }));
    assert_eq!(status, 200, "{v}");
    let token = v["token"].as_str().unwrap().to_owned();
    let call = |o: &mut Origin, url: &str| {
        let (status, v) = app(o, "/call", json!({ "token": token, "url": url }));
        assert_eq!(status, 200, "{v}");
        v
    };
    let v = call(&mut consumer.o, "http://provider/item?x=1");
    assert_eq!(v["status"], 200, "{v}");
    let body: Value = serde_json::from_str(v["body"].as_str().unwrap()).unwrap();
    assert_eq!((body["api"].as_str(), body["session_type"].as_str(), body["permissions"].as_str()), (Some("/api/one/item?x=1"), Some("api"), Some("edit")));
    for escape in ["http://provider/../two/", "http://provider/%2e%2e/two/", "http://provider/..%2ftwo/"] {
        let v = call(&mut consumer.o, escape);
        assert_ne!(v["status"], 200, "{escape}: {v}");
    }
    let reach = ann.get(&format!("/grains/{}/reach", consumer.id));
    assert!(reach.body.contains("may use Picked API in “Provider” below /api/one/ (“Item one”)"), "{}", reach.body);
}

#[test]
fn a_chooser_ends_when_the_person_loses_access_to_the_provider() {
    require_root();
    let s = TestServer::start_with(&["--bridge", bridge().to_str().unwrap()]);
    let mut ann = grainkit::admin(&s);
    let provider_pkg = install_chooser_provider(&mut ann);
    let consumer_pkg = pbkit::install_app(&mut ann);
    let provider = open(&s, &mut ann, &provider_pkg, "Provider");
    let mut bob = invite(&s, &mut ann, "bob");
    let link = share(&mut ann, &provider.id, "1", "for bob, editor");
    open_link(&mut bob, &link);
    let bobs = open(&s, &mut bob, &consumer_pkg, "Bob's consumer");
    let query = vec![encode_descriptor(&http_api_descriptor(None, None, Some("picked-api")))];
    let option = format!("grain:{}:picked-api:0", provider.id);
    let (id, mut page, landing) = open_chooser(&s, &mut bob, &bobs, &query, &option);
    assert_eq!(page.get(&landing, &[]).status, 200, "Bob's chooser page, as an editor");
    assert_eq!(poll(&mut bob, &bobs, &id), (200, json!({ "state": "pending" })));

    // Ann revokes Bob's link: his chooser session ends, and the dialog's poll learns it.
    let access = ann.get(&format!("/grains/{}/access", provider.id));
    let link = link_id(&access.body, "for bob, editor");
    let r = ann.post(&format!("/grains/{}/links/{link}/revoke", provider.id), &[("csrf", &access.hidden("csrf"))]);
    assert!(r.status == 303 || r.status == 200, "{}", r.body);
    assert_ne!(page.get(&landing, &[]).status, 200, "the chooser's session ended");
    let (status, v) = poll(&mut bob, &bobs, &id);
    assert_eq!(status, 404, "{v}");
    assert!(v["error"].as_str().unwrap().contains("your access to that grain changed"), "{v}");
}

#[test]
fn an_offered_api_key_is_made_only_when_the_person_accepts_it_in_the_shell() {
    require_root();
    let s = TestServer::start_with(&["--bridge", bridge().to_str().unwrap()]);
    let mut ann = grainkit::admin(&s);
    let pkg = pbkit::install_app(&mut ann);
    let mut g = open(&s, &mut ann, &pkg, "Offering");
    let other = open(&s, &mut ann, &pkg, "Other");
    let offers = |ann: &mut Client, g: &Open| dialog(ann, g, "offers", &[]);
    assert_eq!(offers(&mut ann, &g), (200, json!({ "offer": null })));

    // The app offers; only this grain's page is given it, once.
    let (status, v) = app(&mut g.o, "/offer", json!({ "title": "Key for my script", "description": "Reads the feed." }));
    assert_eq!((status, &v), (200, &json!({})));
    assert_eq!(offers(&mut ann, &other), (200, json!({ "offer": null })), "another grain's page");
    let (_, v) = offers(&mut ann, &g);
    assert_eq!((v["offer"]["title"].as_str(), v["offer"]["description"].as_str()), (Some("Key for my script"), Some("Reads the feed.")), "{v}");
    let first = v["offer"]["id"].as_str().unwrap().to_owned();
    assert_eq!(offers(&mut ann, &g), (200, json!({ "offer": null })), "given once");

    // Declined: nothing is made, and it cannot be accepted afterwards; nor from another page.
    assert_eq!(dialog(&mut ann, &other, &format!("offer/{first}/accept"), &[]).0, 404, "another session's page");
    assert_eq!(dialog(&mut ann, &g, &format!("offer/{first}/decline"), &[]), (200, json!({ "declined": true })));
    assert_eq!(dialog(&mut ann, &g, &format!("offer/{first}/accept"), &[]).0, 404);
    assert!(!ann.get(&format!("/grains/{}/reach", g.id)).body.contains("data-token"), "declining made no key");

    // Accepted: a grain API token as the person, which a program uses.
    app(&mut g.o, "/offer", json!({ "title": "Key for my script" }));
    let id = offers(&mut ann, &g).1["offer"]["id"].as_str().unwrap().to_owned();
    let (status, key) = dialog(&mut ann, &g, &format!("offer/{id}/accept"), &[]);
    assert_eq!(status, 200, "{key}");
    let host = format!("{}/grain-api", s.base_url);
    assert_eq!((key["host"].as_str(), key["petname"].as_str()), (Some(host.as_str()), Some("Key for my script")));
    let token = key["token"].as_str().unwrap();
    assert!(token.starts_with("gk_"), "{key}");
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut r = agent.get(format!("{host}/api/feed")).header("Authorization", format!("Bearer {token}")).call().unwrap();
    let body: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!((r.status().as_u16(), body["api"].as_str(), body["permissions"].as_str()), (200, Some("/api/feed"), Some("edit")), "{body}");
    assert!(ann.get(&format!("/grains/{}/reach", g.id)).body.contains("Key for my script"), "listed with Revoke");

}
