//! First run, setup, login, logout, rate limiting and the cross-site defences, over real HTTP
//! against the real `granary serve` (state checked through `granary status`).

mod server;

use server::{Client, TestServer};

fn setup_admin(s: &TestServer, c: &mut Client, username: &str, password: &str) {
    let url = s.admin_token();
    let page = c.get(&url);
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = page.hidden("csrf");
    let r = c.post(&url, &[("csrf", &csrf), ("username", username), ("display_name", "Ada Admin"), ("password", password), ("password2", password)]);
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.location(), "/");
    assert!(c.has_cookie("granary_sid"));
}

#[test]
fn first_run_setup_then_sign_out_and_in() {
    let s = TestServer::start();
    let mut c = Client::new(&s);
    let home = c.get("/");
    assert!(home.body.contains("no administrator yet"), "{}", home.body);
    assert!(home.header("content-security-policy").unwrap().contains("frame-ancestors 'none'"));

    // The setup URL printed at first start works once.
    let url = s.first_setup_url.clone();
    let page = c.get(&url);
    let csrf = page.hidden("csrf");
    let before = s.status();
    let r = c.post(&url, &[("csrf", &csrf), ("username", "ada"), ("display_name", "Ada"), ("password", "long enough pw"), ("password2", "different pw!")]);
    assert_eq!(r.status, 400);
    assert!(r.body.contains("The two passwords differ"));
    let r = c.post(&url, &[("csrf", &csrf), ("username", "ada"), ("display_name", "Ada"), ("password", "short"), ("password2", "short")]);
    assert!(r.body.contains("at least 10 characters"));
    assert_eq!(s.status(), before, "refused setups created nothing");
    let r = c.post(&url, &[("csrf", &csrf), ("username", "Ada"), ("display_name", "Ada <b>L</b>"), ("password", "long enough pw"), ("password2", "long enough pw")]);
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(s.status()["admins"], 1);
    let home = c.get("/");
    assert!(home.body.contains("Ada &lt;b&gt;L&lt;/b&gt;"), "the name is shown escaped: {}", home.body);
    assert!(home.body.contains("No grains yet"));
    let admin = c.get("/admin");
    assert_eq!(admin.status, 200);
    assert!(admin.body.contains("ada") && admin.body.contains("Administrator"));

    // The used link is dead, even for a fresh browser.
    let r = Client::new(&s).get(&url);
    assert_eq!(r.status, 404);
    assert!(r.body.contains("already used"));

    // Sign out needs the session's CSRF token; afterwards the old cookie is worthless.
    let old_cookie = c.cookie("granary_sid").unwrap();
    let r = c.post("/logout", &[("csrf", "wrong")]);
    assert_eq!(r.status, 403);
    let csrf = c.get("/").hidden("csrf");
    let r = c.post("/logout", &[("csrf", &csrf)]);
    assert_eq!((r.status, r.location()), (303, "/login".to_owned()));
    let mut replay = Client::new(&s);
    replay.set_cookie("granary_sid", &old_cookie);
    assert_eq!(replay.get("/admin").location(), "/login");

    // And back in.
    let page = c.get("/login");
    let csrf = page.hidden("csrf");
    let r = c.post("/login", &[("csrf", &csrf), ("username", "ADA"), ("password", "long enough pw")]);
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(c.get("/admin").status, 200);
}

#[test]
fn wrong_passwords_get_one_generic_message_then_a_rate_limit() {
    let s = TestServer::start();
    let mut admin = Client::new(&s);
    setup_admin(&s, &mut admin, "root", "correct horse battery");
    let mut c = Client::new(&s);
    let csrf = c.get("/login").hidden("csrf");
    let unknown = c.post("/login", &[("csrf", &csrf), ("username", "nobody"), ("password", "whatever")]);
    assert_eq!(unknown.status, 401);
    assert!(unknown.body.contains("Wrong username or password."));
    for _ in 0..5 {
        let r = c.post("/login", &[("csrf", &csrf), ("username", "root"), ("password", "guess")]);
        assert_eq!(r.status, 401);
        assert!(r.body.contains("Wrong username or password."));
        assert!(!c.has_cookie("granary_sid"));
    }
    // Even the right password is refused now, without a session.
    let r = c.post("/login", &[("csrf", &csrf), ("username", "root"), ("password", "correct horse battery")]);
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.body.contains("Too many failed attempts. Try again in 15 minutes."));
    assert!(!c.has_cookie("granary_sid"));
    // The admin's existing session is unaffected.
    assert_eq!(admin.get("/admin").status, 200);
}

#[test]
fn forged_cross_site_and_oversized_requests_are_refused() {
    let s = TestServer::start();
    let mut c = Client::new(&s);
    setup_admin(&s, &mut c, "root", "correct horse battery");
    let before = s.status();

    let mut fresh = Client::new(&s);
    let csrf = fresh.get("/login").hidden("csrf");
    // No CSRF field, or one that does not match the cookie.
    assert_eq!(fresh.post("/login", &[("username", "root"), ("password", "correct horse battery")]).status, 403);
    assert_eq!(fresh.post("/login", &[("csrf", "0123456789abcdef0123456789abcdef"), ("username", "root"), ("password", "correct horse battery")]).status, 403);
    // A foreign Origin, or a request from a grain's (same-site) origin.
    let form = [("csrf", csrf.as_str()), ("username", "root"), ("password", "correct horse battery")];
    assert_eq!(fresh.post_with("/login", &form, &[("Origin", "http://evil.example")]).status, 403);
    assert_eq!(fresh.post_with("/login", &form, &[("Sec-Fetch-Site", "same-site")]).status, 403);
    assert!(!fresh.has_cookie("granary_sid"));

    // Forged or random session cookies are nobody.
    let mut forged = Client::new(&s);
    forged.set_cookie("granary_sid", &"a".repeat(64));
    assert_eq!(forged.get("/admin").location(), "/login");
    assert_eq!(forged.post("/logout", &[("csrf", "x")]).location(), "/login");

    // A body over the form limit, and a request for another host name.
    let big = "x".repeat(100 * 1024);
    assert_eq!(c.post("/login", &[("csrf", &csrf), ("junk", &big)]).status, 413);
    assert_eq!(c.post_with("/logout", &[], &[("Host", "evil.example")]).status, 421);
    let r = c.get_with("/admin", &[("Host", "rebinding.example")]);
    assert_eq!((r.status, r.location()), (307, format!("{}/admin", s.base_url)));
    assert_eq!(c.get("/admin").status, 200, "the real session still works");

    // An expired setup token link and a made-up one both fail.
    assert_eq!(fresh.get(&format!("/setup/{}", "0".repeat(64))).status, 404);
    assert_eq!(s.status(), before, "nothing refused changed the accounts");
}

#[test]
fn development_accounts_only_exist_when_switched_on() {
    let s = TestServer::start();
    let mut c = Client::new(&s);
    let page = c.get("/login");
    assert!(!page.body.contains("Development accounts"), "off by default");
    // Every page names the icon, which is served (also where browsers look without one).
    assert!(page.body.contains(r#"<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">"#));
    for icon in ["/static/favicon.svg", "/favicon.ico"] {
        let r = c.get(icon);
        assert_eq!((r.status, r.header("content-type")), (200, Some("image/svg+xml")), "{icon}");
        assert!(r.body.starts_with("<svg"), "{icon}");
    }
    let csrf = page.hidden("csrf");
    assert_eq!(c.post("/dev-login", &[("csrf", &csrf), ("username", "alice")]).status, 404);
    assert!(!c.has_cookie("granary_sid"));

    let s = TestServer::start_with(&["--dev-accounts"]);
    let mut c = Client::new(&s);
    let page = c.get("/login");
    assert!(page.body.contains("Development accounts are on"), "a visible banner");
    assert!(page.body.contains("Sign in as Alice Dev"));
    let csrf = page.hidden("csrf");
    assert_eq!(c.post("/dev-login", &[("username", "alice")]).status, 403, "CSRF still applies");
    assert_eq!(c.post("/dev-login", &[("csrf", &csrf), ("username", "mallory")]).status, 404, "only the offered users");
    let r = c.post("/dev-login", &[("csrf", &csrf), ("username", "alice")]);
    assert_eq!((r.status, r.location()), (303, "/".to_owned()));
    assert!(c.get("/").body.contains("Alice Dev"));
    assert_eq!(s.status()["admins"], 0, "test users are not administrators");
    assert_eq!(c.get("/admin").status, 403);
}

#[test]
fn an_expired_session_cookie_is_nobody() {
    // Sessions here last 1 s; the clock is the store's (whole seconds), so wait past 2 s.
    let s = TestServer::start_with(&["--session-lifetime", "1"]);
    let mut c = Client::new(&s);
    let url = s.first_setup_url.clone();
    let csrf = c.get(&url).hidden("csrf");
    let pw = "long enough pw";
    let r = c.post(&url, &[("csrf", &csrf), ("username", "ada"), ("display_name", "Ada"), ("password", pw), ("password2", pw)]);
    assert_eq!(r.status, 303);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=1"), "the cookie says how long it lasts");
    let before = s.status();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let expired = c.get("/admin");
    assert_eq!(expired.location(), "/login", "an expired session is nobody");
    let page = c.get("/");
    assert_eq!(page.location(), "/login");
    let csrf = c.get("/login").hidden("csrf");
    assert_eq!(c.post("/admin/invite", &[("csrf", &csrf)]).location(), "/login");
    assert_eq!(s.status(), before, "nothing changed");
}
