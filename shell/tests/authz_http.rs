//! Authorization over real HTTP, table-driven: every grain, app, share, admin, account and
//! API route tried by every kind of caller who must not succeed — anonymous, a forged,
//! logged-out or suspended session cookie, another ordinary user (with their own or a stolen
//! CSRF token), a user the grain is shared with (owner-only actions), the owner without a
//! valid CSRF token or from another origin; and for the API no token, a forged, revoked or
//! suspended user's token, a session cookie, another user's token. Each answer's exact class
//! is checked, and the observable state (accounts, grains, links, apps, tokens, the data
//! directory) is compared before and after the sweep.
//!
//! Not covered: an *expired* session (30 days) or setup token — the store cannot be aged
//! from outside the server; logout and suspension exercise the same "record gone" path.

mod common;
mod server;

use serde_json::{json, Value};
use server::{Client, Reply, TestServer};
use std::fs;

const PW: &str = "correct horse battery";

fn invite(s: &TestServer, admin: &mut Client, name: &str) -> Client {
    let csrf = admin.get("/admin").hidden("csrf");
    let page = admin.post("/admin/invite", &[("csrf", &csrf)]);
    assert_eq!(page.status, 200, "{}", page.body);
    let url = page.hidden_attr("id=\"invite-url\" type=\"text\" readonly value");
    let path = format!("/invite/{}", url.rsplit('/').next().unwrap());
    let mut c = Client::new(s);
    let page = c.get(&path);
    assert_eq!(page.status, 200, "{}", page.body);
    let r = c.post(&path, &[("csrf", &page.hidden("csrf")), ("username", name), ("display_name", name), ("password", PW), ("password2", PW)]);
    assert_eq!((r.status, r.location()), (303, "/".to_owned()), "{}", r.body);
    c
}

fn login(s: &TestServer, name: &str) -> Client {
    let mut c = Client::new(s);
    let csrf = c.get("/login").hidden("csrf");
    let r = c.post("/login", &[("csrf", &csrf), ("username", name), ("password", PW)]);
    assert_eq!(r.status, 303, "{}", r.body);
    c
}

fn new_token(c: &mut Client, label: &str) -> String {
    let csrf = c.get("/account").hidden("csrf");
    let page = c.post("/account/tokens", &[("csrf", &csrf), ("label", label)]);
    assert_eq!(page.status, 200, "{}", page.body);
    page.hidden_attr("id=\"new-token\" type=\"text\" readonly value")
}

/// The ids of the tokens listed on `/account`.
fn token_ids(c: &mut Client) -> Vec<String> {
    let page = c.get("/account");
    assert_eq!(page.status, 200);
    page.body.split("data-token=\"").skip(1).map(|r| r.split('"').next().unwrap().to_owned()).collect()
}

/// One API request; `cookie` is sent as a `Cookie` header. Returns status and raw body.
fn api(s: &TestServer, method: &str, path: &str, token: Option<&str>, cookie: Option<&str>, body: &[u8]) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into();
    let url = format!("{}/api/v1{path}", s.base_url);
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, String)> = Vec::new();
    if let Some(a) = auth {
        headers.push(("Authorization", a));
    }
    if let Some(c) = cookie {
        headers.push(("Cookie", c.to_owned()));
    }
    let resp = match method {
        "GET" | "DELETE" => {
            let mut r = if method == "GET" { agent.get(&url) } else { agent.delete(&url) };
            for (k, v) in &headers {
                r = r.header(*k, v);
            }
            r.call()
        }
        _ => {
            let mut r = agent.post(&url);
            for (k, v) in &headers {
                r = r.header(*k, v);
            }
            r.send(body)
        }
    };
    let mut resp = resp.expect("HTTP request");
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap_or_default())
}

fn api_json(s: &TestServer, method: &str, path: &str, token: &str) -> Value {
    let (st, text) = api(s, method, path, Some(token), None, b"");
    assert_eq!(st, 200, "{method} {path}: {text}");
    serde_json::from_str(&text).unwrap()
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n / 2];
    fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b)).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn listing(s: &TestServer, dir: &str) -> Vec<String> {
    let mut v: Vec<String> = match fs::read_dir(s.data.path().join(dir)) {
        Ok(d) => d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// Everything observable about the server's state, as the owner and the admin see it.
fn snapshot(s: &TestServer, ann: &mut Client, ann_token: &str, others: &[&str], grains: &[&str]) -> Value {
    let home = ann.get("/");
    assert_eq!(home.status, 200);
    let titles: Vec<String> =
        home.body.split("href=\"/grains/").skip(1).map(|r| r.split('<').take(2).collect::<Vec<_>>().join("<")).collect();
    let mut access = Vec::new();
    for g in grains {
        let page = ann.get(&format!("/grains/{g}/access"));
        assert_eq!(page.status, 200, "{}", page.body);
        access.push(json!({
            "links": page.body.matches("data-link=\"").count(),
            "revoked": page.body.matches("evoked").count(),
            "api": api_json(s, "GET", &format!("/grains/{g}/shares"), ann_token),
        }));
    }
    let apps = ann.get("/apps");
    // Each app's details page shows its limits.
    let limits: Vec<String> = apps
        .body
        .split("href=\"/apps/")
        .skip(1)
        .map(|r| r.split('"').next().unwrap().to_owned())
        .filter(|id| !id.contains('/'))
        .map(|id| {
            let d = ann.get(&format!("/apps/{id}"));
            assert_eq!(d.status, 200);
            d.body
        })
        .collect();
    json!({
        "app_details": limits,
        "status": s.status(),
        "users": api_json(s, "GET", "/users", ann_token),
        "grains": api_json(s, "GET", "/grains", ann_token),
        "apps": api_json(s, "GET", "/apps", ann_token),
        // What the other people see (grants show up here).
        "others_grains": others.iter().map(|t| api_json(s, "GET", "/grains", t)).collect::<Vec<_>>(),
        "home_titles": titles,
        "access": access,
        "apps_page_entries": apps.body.matches("href=\"/apps/").count(),
        "tokens": token_ids(ann),
        "dir_apps": listing(s, "apps"),
        "dir_grains": listing(s, "grains"),
        "dir_tmp": listing(s, "tmp"),
    })
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum M {
    Get,
    Post,
    Upload,
}

/// One main-host route: method, path, form fields (besides `csrf`).
struct Route {
    m: M,
    path: String,
    form: Vec<(&'static str, String)>,
    /// The same request on a grain id that does not exist (grain routes only).
    missing: Option<String>,
}

fn route(m: M, path: String, form: &[(&'static str, &str)]) -> Route {
    Route { m, path, form: form.iter().map(|(k, v)| (*k, v.to_string())).collect(), missing: None }
}

/// What a caller must get.
#[derive(Debug, PartialEq)]
enum Want {
    /// 303 to /login.
    Login,
    Status(u16),
    /// 404, byte for byte the answer for a missing grain.
    NotFoundLikeMissing,
    /// Allowed read (not a mutation): 200.
    Ok,
    /// Skip: the caller may legitimately do this.
    Skip,
}

fn send(c: &mut Client, r: &Route, path: &str, csrf: Option<&str>, extra: &[(&str, &str)], gpk: &[u8]) -> Reply {
    let mut form: Vec<(&str, &str)> = r.form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    if let Some(t) = csrf {
        form.push(("csrf", t));
    }
    match r.m {
        M::Get => c.get_with(path, extra),
        M::Post => c.post_with(path, &form, extra),
        M::Upload => c.upload(path, gpk, csrf.unwrap_or("")),
    }
}

#[test]
fn every_route_refuses_every_wrong_caller_and_changes_nothing() {
    let started = std::time::Instant::now();
    let s = TestServer::start();
    let mut ann = s.new_admin("ann", "ann");
    let ann_token = new_token(&mut ann, "owner script");
    let ann_id = api_json(&s, "GET", "/me", &ann_token)["id"].as_str().unwrap().to_owned();
    let pkg = ann.install(&common::minimal_package("Used app"));
    // An app no grain uses, so an unauthorized uninstall would succeed if allowed.
    let spare = ann.install(&common::minimal_package("Spare app"));
    // A package that is not installed, as the body of refused uploads.
    let gpk = common::minimal_package("Smuggled app");

    let csrf = ann.get(&format!("/apps/{pkg}")).hidden("csrf");
    let live = ann.post("/grains", &[("csrf", &csrf), ("package_id", &pkg), ("action", "0"), ("title", "Secret plans")]).location();
    let live = live.strip_prefix("/grains/").unwrap().to_owned();
    let trashed = ann.post("/grains", &[("csrf", &csrf), ("package_id", &pkg), ("action", "0"), ("title", "Old plans")]).location();
    let trashed = trashed.strip_prefix("/grains/").unwrap().to_owned();
    assert_eq!(ann.post(&format!("/grains/{trashed}/trash"), &[("csrf", &csrf)]).status, 303);
    // A link on each grain.
    let mut link_of = |g: &str, label: &str| {
        let page = ann.get(&format!("/grains/{g}/access"));
        let r = ann.post(&format!("/grains/{g}/share"), &[("csrf", &page.hidden("csrf")), ("role", "0"), ("label", label)]);
        assert_eq!(r.status, 200, "{}", r.body);
        let url = r.hidden_attr("id=\"new-link-url\" type=\"text\" readonly value");
        let token = url.rsplit('/').next().unwrap().to_owned();
        let page = ann.get(&format!("/grains/{g}/access"));
        let id = page.body.split("data-link=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
        (format!("/share/{token}"), id)
    };
    let (live_share, live_link) = link_of(&live, "for bob");
    let (_, trashed_link) = link_of(&trashed, "old link");
    let _ = trashed_link;
    // A token of Ann's to try to revoke, and a revoked one.
    let ann_spare_token = new_token(&mut ann, "spare");
    let ann_tids = token_ids(&mut ann);
    assert_eq!(ann_tids.len(), 2);
    let revoked_token = new_token(&mut ann, "revoked");
    let rev_tid = token_ids(&mut ann).into_iter().find(|t| !ann_tids.contains(t)).unwrap();
    let page = ann.get("/account");
    assert_eq!(ann.post(&format!("/account/tokens/{rev_tid}/revoke"), &[("csrf", &page.hidden("csrf"))]).status, 303);
    let ann_csrf = ann.get("/").hidden("csrf");

    // Eve: an unrelated ordinary user. Bob: an ordinary user the live grain is shared with.
    let mut eve = invite(&s, &mut ann, "eve");
    let eve_token = new_token(&mut eve, "eve");
    let eve_csrf = eve.get("/").hidden("csrf");
    let mut bob = invite(&s, &mut ann, "bob");
    let choose = bob.get(&live_share);
    assert!(choose.body.contains("Should its app know who you are?"), "{}", choose.body);
    let r = bob.post(&live_share, &[("csrf", &choose.hidden("csrf")), ("mode", "reveal")]);
    assert_eq!(r.location(), format!("/grains/{live}"));
    let bob_token = new_token(&mut bob, "bob");
    let bob_csrf = bob.get("/").hidden("csrf");
    // Carl: suspended; his old cookie and token must be worthless.
    let mut carl = invite(&s, &mut ann, "carl");
    let carl_token = new_token(&mut carl, "carl");
    let carl_id = api_json(&s, "GET", "/me", &carl_token)["id"].as_str().unwrap().to_owned();
    let carl_cookie = carl.cookie("granary_sid").unwrap();
    let admin_page = ann.get("/admin");
    assert_eq!(ann.post(&format!("/admin/users/{carl_id}/suspend"), &[("csrf", &admin_page.hidden("csrf"))]).status, 303);
    // A logged-out session of Ann herself (an administrator and the owner).
    let mut old = login(&s, "ann");
    let old_cookie = old.cookie("granary_sid").unwrap();
    let old_csrf = old.get("/").hidden("csrf");
    assert_eq!(old.post("/logout", &[("csrf", &old_csrf)]).status, 303);

    let grains = [live.as_str(), trashed.as_str()];
    let before = snapshot(&s, &mut ann, &ann_token, &[&eve_token, &bob_token], &grains);
    assert_eq!(before["status"]["users"], 4);
    if std::env::var_os("AUTHZ_SNAPSHOT").is_some() {
        let mut shown = before.clone();
        shown["app_details"] = json!(before["app_details"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().len()).collect::<Vec<_>>());
        eprintln!("snapshot: {}", serde_json::to_string_pretty(&shown).unwrap());
    }

    // ---- The main-host route table. ----
    let missing_grain = "a".repeat(24);
    let mut routes: Vec<Route> = Vec::new();
    for g in [&live, &trashed] {
        let link = if *g == live { &live_link } else { &trashed_link };
        let grain_routes = [
            route(M::Get, format!("/grains/{g}"), &[]),
            route(M::Get, format!("/grains/{g}/access"), &[]),
            route(M::Get, format!("/grains/{g}/log"), &[]),
            route(M::Get, format!("/grains/{g}/state"), &[]),
            route(M::Post, format!("/grains/{g}/rename"), &[("title", "pwned")]),
            route(M::Post, format!("/grains/{g}/trash"), &[]),
            route(M::Post, format!("/grains/{g}/restore"), &[]),
            route(M::Post, format!("/grains/{g}/restart"), &[]),
            route(M::Post, format!("/grains/{g}/delete"), &[]),
            route(M::Post, format!("/grains/{g}/share"), &[("role", "0"), ("label", "pwned")]),
            route(M::Post, format!("/grains/{g}/links/{link}/role"), &[("role", "0")]),
            route(M::Post, format!("/grains/{g}/links/{link}/revoke"), &[]),
        ];
        for mut r in grain_routes {
            r.missing = Some(r.path.replace(g.as_str(), &missing_grain));
            routes.push(r);
        }
    }
    routes.extend([
        route(M::Post, "/grains".into(), &[("package_id", &pkg), ("action", "0"), ("title", "pwned")]),
        route(M::Get, "/apps".into(), &[]),
        route(M::Get, format!("/apps/{pkg}"), &[]),
        route(M::Get, format!("/apps/{spare}"), &[]),
        route(M::Get, format!("/apps/{pkg}/icon"), &[]),
        route(M::Upload, "/apps/upload".into(), &[]),
        route(M::Post, format!("/apps/{spare}/limits"), &[("memory_mib", "77"), ("tasks", "77")]),
        route(M::Post, format!("/apps/{pkg}/limits"), &[("memory_mib", "77"), ("tasks", "77")]),
        route(M::Post, format!("/apps/{spare}/uninstall"), &[]),
        route(M::Get, "/admin".into(), &[]),
        route(M::Post, "/admin/invite".into(), &[]),
        route(M::Post, format!("/admin/users/{ann_id}/suspend"), &[]),
        route(M::Post, format!("/admin/users/{carl_id}/reinstate"), &[]),
        route(M::Get, "/account".into(), &[]),
        route(M::Post, "/account/tokens".into(), &[("label", "pwned")]),
        route(M::Post, format!("/account/tokens/{}/revoke", ann_tids[0]), &[]),
        route(M::Post, format!("/account/tokens/{}/revoke", ann_tids[1]), &[]),
        route(M::Post, "/logout".into(), &[]),
    ]);

    let forged = random_hex(64);
    let no_session: Vec<(&str, Option<String>)> =
        vec![("anonymous", None), ("forged cookie", Some(forged)), ("logged-out cookie", Some(old_cookie)), ("suspended user's cookie", Some(carl_cookie)),
        ("malformed cookie", Some("not-a-session/../%00".into())),
    ];
    let is_grain = |r: &Route| r.path.starts_with("/grains/");
    let owner_only = |r: &Route| ["/rename", "/trash", "/restore", "/restart", "/delete", "/log", "/state"].iter().any(|a| r.path.ends_with(a));
    let mut tried = 0usize;
    let mut table: Vec<String> = Vec::new();
    let mut check = |who: &str, c: &mut Client, r: &Route, csrf: Option<&str>, extra: &[(&str, &str)], want: Want| {
        if want == Want::Skip {
            return;
        }
        let got = send(c, r, &r.path, csrf, extra, &gpk);
        let ctx = format!("{who}: {:?} {} → {} {} {}", r.m, r.path, got.status, got.location(), got.body.chars().take(300).collect::<String>());
        match want {
            Want::Login => assert_eq!((got.status, got.location().as_str()), (303, "/login"), "{ctx}"),
            Want::Status(st) => assert_eq!(got.status, st, "{ctx}"),
            Want::Ok => assert_eq!(got.status, 200, "{ctx}"),
            Want::NotFoundLikeMissing => {
                assert_eq!(got.status, 404, "{ctx}");
                let m = send(c, r, r.missing.as_deref().unwrap(), csrf, extra, &gpk);
                assert_eq!((m.status, &m.body), (404, &got.body), "{ctx}: differs from a missing grain");
            }
            Want::Skip => unreachable!(),
        }
        tried += 1;
        table.push(format!("{who} | {:?} {} | {}", r.m, r.path, got.status));
    };

    for (who, cookie) in &no_session {
        let mut c = Client::new(&s);
        if let Some(v) = cookie {
            c.set_cookie("granary_sid", v);
        }
        for r in &routes {
            // Even with the owner's CSRF token (a stolen form), nobody is nobody.
            let want = if r.m == M::Upload { Want::Status(401) } else { Want::Login };
            check(who, &mut c, r, Some(&ann_csrf), &[], want);
        }
    }

    // Eve, with her own (valid) CSRF token: other people's things are invisible or refused.
    for r in &routes {
        let p = r.path.as_str();
        let want = if p == "/grains" || p == "/logout" || p == "/account/tokens" || p.ends_with("/icon") {
            Want::Skip // her own business
        } else if is_grain(r) {
            Want::NotFoundLikeMissing
        } else if p.starts_with("/apps") && r.m == M::Get || p == "/account" {
            Want::Ok
        } else if p.starts_with("/account/tokens/") {
            Want::Status(303) // not hers: a no-op back to her account page
        } else {
            Want::Status(403)
        };
        check("eve", &mut eve, r, Some(&eve_csrf), &[], want);
    }
    assert!(!eve.get("/account").body.contains(&ann_tids[0]), "eve sees none of Ann's tokens");
    assert!(!eve.get("/").body.contains("Secret plans"));

    // Eve with Ann's CSRF token, and with none: every POST refused.
    for (who, csrf) in [("eve + ann's csrf", Some(ann_csrf.as_str())), ("eve, no csrf", None)] {
        for r in routes.iter().filter(|r| r.m != M::Get) {
            check(who, &mut eve, r, csrf, &[], Want::Status(403));
        }
    }

    // Bob has access to the live grain through Ann's link: owner-only actions and Ann's link
    // are refused with 403; the trashed grain is not his (404, like a missing one).
    for r in routes.iter().filter(|r| is_grain(r)) {
        let want = if r.path.contains(&trashed) {
            Want::NotFoundLikeMissing
        } else if owner_only(r) || r.path.contains("/links/") {
            Want::Status(403)
        } else {
            Want::Skip // page, access list and his own links are his to use
        };
        check("bob (shared with)", &mut bob, r, Some(&bob_csrf), &[], want);
    }
    let access = bob.get(&format!("/grains/{live}/access"));
    assert_eq!(access.status, 200);
    assert_eq!(access.body.matches("data-link=\"").count(), 0, "Bob sees only the links he made");
    for r in routes.iter().filter(|r| r.path.starts_with("/admin") || r.path.contains("/limits") || r.path.contains("/uninstall") || r.m == M::Upload) {
        check("bob (shared with)", &mut bob, r, Some(&bob_csrf), &[], Want::Status(403));
    }

    // Ann herself, without a valid CSRF token or from another origin: every POST refused.
    for r in routes.iter().filter(|r| r.m != M::Get) {
        check("ann, no csrf", &mut ann, r, None, &[], Want::Status(403));
        check("ann, wrong csrf", &mut ann, r, Some(&eve_csrf), &[], Want::Status(403));
        if r.m == M::Post {
            check("ann, foreign Origin", &mut ann, r, Some(&ann_csrf), &[("Origin", "http://evil.example")], Want::Status(403));
            check("ann, Sec-Fetch-Site same-site", &mut ann, r, Some(&ann_csrf), &[("Sec-Fetch-Site", "same-site")], Want::Status(403));
        }
    }

    // ---- The JSON API. ----
    let pkg_body = json!({"package_id": pkg, "action": 0, "title": "pwned"}).to_string();
    let share_body = br#"{"role": 0, "label": "pwned"}"#.to_vec();
    let mut api_routes: Vec<(&str, String, Vec<u8>)> = vec![
        ("GET", "/me".into(), vec![]),
        ("GET", "/users".into(), vec![]),
        ("GET", "/apps".into(), vec![]),
        ("POST", "/apps".into(), gpk.clone()),
        ("GET", "/grains".into(), vec![]),
        ("POST", "/grains".into(), pkg_body.into_bytes()),
    ];
    for (g, link) in [(&live, &live_link), (&trashed, &trashed_link)] {
        api_routes.extend([
            ("GET", format!("/grains/{g}"), vec![]),
            ("POST", format!("/grains/{g}/session"), vec![]),
            ("GET", format!("/grains/{g}/shares"), vec![]),
            ("POST", format!("/grains/{g}/shares"), share_body.clone()),
            ("DELETE", format!("/grains/{g}/shares/{link}"), vec![]),
            ("DELETE", format!("/grains/{g}"), vec![]),
        ]);
    }
    let ann_cookie = format!("granary_sid={}", ann.cookie("granary_sid").unwrap());
    let forged_token = format!("gt_{}", random_hex(64));
    let nobodies: [(&str, Option<&str>, Option<&str>); 6] = [
        ("no token", None, None),
        ("forged token", Some(&forged_token), None),
        ("revoked token", Some(&revoked_token), None),
        ("suspended user's token", Some(&carl_token), None),
        ("owner's session cookie, no token", None, Some(&ann_cookie)),
        ("malformed token", Some("gt_nothex"), None),
    ];
    for (who, token, cookie) in nobodies {
        for (m, p, body) in &api_routes {
            let (st, text) = api(&s, m, p, token, cookie, body);
            assert_eq!(st, 401, "{who}: {m} /api/v1{p}: {text}");
            assert!(serde_json::from_str::<Value>(&text).unwrap()["error"].is_string(), "{text}");
            tried += 1;
            table.push(format!("api {who} | {m} {p} | {st}"));
        }
    }
    // Eve's token: only her own view; other people's grains are 404 like missing ones.
    for (m, p, body) in &api_routes {
        let want = match (*m, p.as_str()) {
            ("POST", "/grains") => continue, // her own business
            ("GET", "/me" | "/apps" | "/grains") => 200,
            ("GET", "/users") | ("POST", "/apps") => 403,
            _ => 404,
        };
        let (st, text) = api(&s, m, p, Some(&eve_token), None, body);
        assert_eq!(st, want, "eve: {m} /api/v1{p}: {text}");
        if want == 404 {
            let (mst, mtext) = api(&s, m, &p.replace(&live, &missing_grain).replace(&trashed, &missing_grain), Some(&eve_token), None, body);
            assert_eq!((mst, mtext), (st, text.clone()), "eve: {m} {p} differs from a missing grain");
        }
        if p == "/grains" && *m == "GET" {
            assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["grains"], json!([]));
        }
        if p == "/me" {
            assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["username"], "eve");
        }
        tried += 1;
        table.push(format!("api eve | {m} {p} | {st}"));
    }
    // Bob's token: the shared grain is visible, but deleting it or Ann's link is not his.
    for (m, p, body, want) in [
        ("GET", "/users".to_owned(), vec![], 403),
        ("POST", "/apps".to_owned(), gpk.clone(), 403),
        ("DELETE", format!("/grains/{live}"), vec![], 403),
        ("DELETE", format!("/grains/{live}/shares/{live_link}"), vec![], 404),
        ("GET", format!("/grains/{trashed}"), vec![], 404),
        ("DELETE", format!("/grains/{trashed}"), vec![], 404),
        ("GET", format!("/grains/{trashed}/shares"), vec![], 404),
        ("DELETE", format!("/grains/{trashed}/shares/{trashed_link}"), vec![], 404),
    ] {
        let (st, text) = api(&s, m, &p, Some(&bob_token), None, &body);
        assert_eq!(st, want, "bob: {m} /api/v1{p}: {text}");
        tried += 1;
        table.push(format!("api bob (shared with) | {m} {p} | {st}"));
    }
    let (_, mine) = api(&s, "GET", &format!("/grains/{live}/shares"), Some(&bob_token), None, b"");
    assert_eq!(serde_json::from_str::<Value>(&mine).unwrap()["shares"], json!([]), "Bob sees only links he made");

    // Nothing changed, and the owner's credentials all still work.
    let after = snapshot(&s, &mut ann, &ann_token, &[&eve_token, &bob_token], &grains);
    assert_eq!(before, after, "the sweep changed the server's state");
    assert_eq!(api(&s, "GET", "/me", Some(&ann_spare_token), None, b"").0, 200);
    assert_eq!(ann.get("/admin").status, 200);
    eprintln!("authz sweep: {tried} requests checked in {:?}", started.elapsed());
    if std::env::var_os("AUTHZ_TABLE").is_some() {
        for row in &table {
            eprintln!("{row}");
        }
    }
}

