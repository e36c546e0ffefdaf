//! The JSON API over real HTTP: personal access tokens (create, use, revoke; cookies never
//! count), apps, grains, sessions and shares, and every route refused to the wrong caller.

mod common;
mod server;

use server::{Client, TestServer};
use serde_json::{json, Value};

fn api(s: &TestServer, method: &str, path: &str, token: Option<&str>, body: Option<&[u8]>) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let url = format!("{}/api/v1{path}", s.base_url);
    let auth = token.map(|t| format!("Bearer {t}"));
    let resp = match (method, body) {
        ("GET", _) => {
            let mut r = agent.get(&url);
            if let Some(a) = &auth { r = r.header("Authorization", a) }
            r.call()
        }
        ("DELETE", _) => {
            let mut r = agent.delete(&url);
            if let Some(a) = &auth { r = r.header("Authorization", a) }
            r.call()
        }
        (_, b) => {
            let mut r = agent.post(&url);
            if let Some(a) = &auth { r = r.header("Authorization", a) }
            r.send(b.unwrap_or(b""))
        }
    };
    let mut resp = resp.expect("HTTP request");
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}")))
}

fn new_token(c: &mut Client, label: &str) -> String {
    let csrf = c.get("/account").hidden("csrf");
    let page = c.post("/account/tokens", &[("csrf", &csrf), ("label", label)]);
    assert_eq!(page.status, 200, "{}", page.body);
    page.hidden_attr("id=\"new-token\" type=\"text\" readonly value")
}

#[test]
fn tokens_drive_the_api_and_nothing_else_does() {
    let s = TestServer::start();
    let mut ann = s.new_admin("ann", "ann");
    let token = new_token(&mut ann, "script");
    assert!(token.starts_with("gt_"));

    let (st, me) = api(&s, "GET", "/me", Some(&token), None);
    assert_eq!((st, me["username"].as_str()), (200, Some("ann")));
    assert_eq!(api(&s, "GET", "/me", None, None).0, 401);
    assert_eq!(api(&s, "GET", "/me", Some("gt_0000000000000000000000000000000000000000000000000000000000000000"), None).0, 401);
    // A signed-in browser's cookie is not an API credential.
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let cookie = format!("granary_sid={}", ann.cookie("granary_sid").unwrap());
    assert_eq!(agent.get(format!("{}/api/v1/me", s.base_url)).header("Cookie", &cookie).call().unwrap().status().as_u16(), 401);

    let (st, app) = api(&s, "POST", "/apps", Some(&token), Some(&common::minimal_package("Round trip")));
    assert_eq!(st, 200, "{app}");
    let pkg = app["package_id"].as_str().unwrap().to_owned();
    let (_, apps) = api(&s, "GET", "/apps", Some(&token), None);
    assert_eq!(apps["apps"][0]["actions"][0], "New thing");

    let body = json!({"package_id": pkg, "action": 0, "title": "From the API"}).to_string();
    let (st, grain) = api(&s, "POST", "/grains", Some(&token), Some(body.as_bytes()));
    assert_eq!(st, 201, "{grain}");
    let id = grain["id"].as_str().unwrap().to_owned();
    let (_, list) = api(&s, "GET", "/grains", Some(&token), None);
    assert_eq!(list["grains"][0]["title"], "From the API");
    let (st, session) = api(&s, "POST", &format!("/grains/{id}/session"), Some(&token), None);
    assert_eq!(st, 200);
    assert!(session["url"].as_str().unwrap().contains("/_granary/init/"), "{session}");
    let (st, share) = api(&s, "POST", &format!("/grains/{id}/shares"), Some(&token), Some(br#"{"role": 0, "label": "api"}"#));
    assert_eq!(st, 201, "{share}");
    assert!(share["url"].as_str().unwrap().contains("/share/"));

    // Another user's token sees nothing of Ann's grain and changes nothing.
    let mut bob = s.new_admin("bob", "bob");
    let bob_token = new_token(&mut bob, "");
    assert_eq!(api(&s, "GET", &format!("/grains/{id}"), Some(&bob_token), None).0, 404);
    assert_eq!(api(&s, "DELETE", &format!("/grains/{id}"), Some(&bob_token), None).0, 404);
    assert_eq!(api(&s, "GET", &format!("/grains/{id}/shares"), Some(&bob_token), None).0, 404);
    assert_eq!(api(&s, "GET", "/grains", Some(&bob_token), None).1["grains"], json!([]));
    assert_eq!(api(&s, "GET", &format!("/grains/{id}"), Some(&token), None).1["title"], "From the API");

    let link = share["id"].as_str().unwrap();
    assert_eq!(api(&s, "DELETE", &format!("/grains/{id}/shares/{link}"), Some(&token), None).0, 200);
    assert_eq!(api(&s, "GET", &format!("/grains/{id}/shares"), Some(&token), None).1["shares"][0]["revoked"], true);
    assert_eq!(api(&s, "POST", "/grains", Some(&token), Some(b"not json")).0, 400);
    assert_eq!(api(&s, "GET", "/nope", Some(&token), None).0, 404);

    let (st, _) = api(&s, "DELETE", &format!("/grains/{id}"), Some(&token), None);
    assert_eq!(st, 200);
    assert!(!s.data.path().join("grains").join(&id).exists());

    // Revoked tokens stop working at once.
    let page = ann.get("/account");
    let tid = page.body.split("data-token=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    ann.post(&format!("/account/tokens/{tid}/revoke"), &[("csrf", &page.hidden("csrf"))]);
    assert_eq!(api(&s, "GET", "/me", Some(&token), None).0, 401);
}
