//! Invitations, suspension and admin-only routes over real HTTP; state checked through
//! `granary status`.

mod server;

use server::{Client, TestServer};

fn invite(admin: &mut Client) -> String {
    let csrf = admin.get("/admin").hidden("csrf");
    let page = admin.post("/admin/invite", &[("csrf", &csrf)]);
    assert_eq!(page.status, 200, "{}", page.body);
    let url = page.hidden_attr("id=\"invite-url\" type=\"text\" readonly value");
    format!("/invite/{}", url.rsplit('/').next().unwrap())
}

fn accept(s: &TestServer, path: &str, username: &str, pw: &str) -> Client {
    let mut c = Client::new(s);
    let page = c.get(path);
    assert_eq!(page.status, 200, "{}", page.body);
    let r = c.post(path, &[("csrf", &page.hidden("csrf")), ("username", username), ("display_name", username), ("password", pw), ("password2", pw)]);
    assert_eq!((r.status, r.location()), (303, "/".to_owned()), "{}", r.body);
    c
}

fn login(s: &TestServer, username: &str, pw: &str) -> (Client, u16, String) {
    let mut c = Client::new(s);
    let csrf = c.get("/login").hidden("csrf");
    let r = c.post("/login", &[("csrf", &csrf), ("username", username), ("password", pw)]);
    (c, r.status, r.body)
}

#[test]
fn invitations_make_ordinary_users_who_cannot_administer() {
    let s = TestServer::start();
    let mut root = s.new_admin("root", "Root");
    let link = invite(&mut root);
    let mut bea = accept(&s, &link, "bea", "a long password");
    assert_eq!(s.status()["users"], 2);
    assert_eq!(s.status()["admins"], 1, "invited people are not administrators");
    assert!(bea.get("/").body.contains("Your grains"));
    // The invitation works once.
    let again = Client::new(&s).get(&link);
    assert_eq!(again.status, 404);
    assert!(again.body.contains("used already or expired"));
    // Bea cannot use administrator routes.
    let csrf = bea.get("/").hidden("csrf");
    assert_eq!(bea.get("/admin").status, 403);
    assert_eq!(bea.post("/admin/invite", &[("csrf", &csrf)]).status, 403);
    let users = s.status()["users"].clone();
    let root_id_row = root.get("/admin");
    assert!(root_id_row.body.contains("data-user=\"bea\""));
    assert_eq!(bea.upload("/apps/upload", b"GPK", &csrf).status, 403, "only administrators install apps");
    assert_eq!(s.status()["users"], users);
}

#[test]
fn suspension_ends_sessions_at_once_and_refuses_login() {
    let s = TestServer::start();
    let mut root = s.new_admin("root", "Root");
    let link = invite(&mut root);
    let mut cy = accept(&s, &link, "cy", "a long password");
    let page = root.get("/admin");
    let row = page.body.split("data-user=\"cy\"").nth(1).unwrap();
    let action = row.split("action=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    assert!(action.ends_with("/suspend"), "{action}");
    let r = root.post(&action, &[("csrf", &page.hidden("csrf"))]);
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(cy.has_cookie("granary_sid"));
    let r = cy.get("/");
    assert_eq!(r.location(), "/login", "the open session ended");
    assert!(
        r.header("set-cookie").is_some_and(|c| c.starts_with("granary_sid=;") && c.contains("Max-Age=0")),
        "the dead session cookie is cleared: {:?}",
        r.header("set-cookie")
    );
    assert!(!cy.has_cookie("granary_sid"), "the browser no longer sends it");
    let (_, status, body) = login(&s, "cy", "a long password");
    assert_eq!(status, 403);
    assert!(body.contains("suspended"), "{body}");
    let (_, status, body) = login(&s, "cy", "wrong password!!");
    assert_eq!(status, 401, "a wrong password never reveals the suspension");
    assert!(body.contains("Wrong username or password"));
    // Reinstated, cy signs in again; an admin cannot suspend themselves.
    let page = root.get("/admin");
    let reinstate = action.replace("/suspend", "/reinstate");
    assert_eq!(root.post(&reinstate, &[("csrf", &page.hidden("csrf"))]).status, 303);
    let (mut cy, status, _) = login(&s, "cy", "a long password");
    assert_eq!(status, 303);
    assert!(cy.get("/").body.contains("Your grains"));
    assert!(!page.body.split("data-user=\"root\"").nth(1).unwrap().split("</tr>").next().unwrap().contains("/suspend"));
}

#[test]
fn server_settings_are_saved_and_take_effect() {
    let s = TestServer::start();
    let mut root = s.new_admin("root", "Root");
    let page = root.get("/admin/settings");
    assert_eq!(page.status, 200);
    let csrf = page.hidden("csrf");
    let bad = root.post("/admin/settings", &[("csrf", &csrf), ("title", "x"), ("memory_mib", "2"), ("tasks", "100")]);
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("between 16 MiB"), "{}", bad.body);
    let bad = root.post("/admin/settings", &[("csrf", &csrf), ("memory_mib", "300"), ("tasks", "100"), ("base_url", "ftp://nope")]);
    assert_eq!(bad.status, 400);
    let r = root.post(
        "/admin/settings",
        &[("csrf", &csrf), ("title", "Family <server>"), ("memory_mib", "300"), ("tasks", "100"), ("dev_accounts", "on")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Saved."));
    assert!(root.get("/").body.contains("Family &lt;server&gt;"), "the title shows, escaped");
    let login = Client::new(&s).get("/login");
    assert!(login.body.contains("Development accounts are on"), "development accounts switched on live");
    let again = root.get("/admin/settings");
    assert!(again.body.contains("value=\"300\"") && again.body.contains("checked"), "the form shows what was saved");
    // Ordinary users cannot see or change settings.
    let link = invite(&mut root);
    let mut bea = accept(&s, &link, "bea", "a long password");
    assert_eq!(bea.get("/admin/settings").status, 403);
    let csrf = bea.get("/").hidden("csrf");
    assert_eq!(bea.post("/admin/settings", &[("csrf", &csrf), ("memory_mib", "16"), ("tasks", "8")]).status, 403);
    assert!(root.get("/admin/settings").body.contains("value=\"300\""));
}

#[test]
fn the_relay_login_is_kept_secret_and_never_sent_in_clear_over_the_network() {
    let s = TestServer::start();
    let mut root = s.new_admin("root", "Root");
    let csrf = root.get("/admin/settings").hidden("csrf");
    let form = |relay: &str, security: &str, user: &str, password: &str| {
        vec![("csrf", csrf.clone()), ("memory_mib", "300".into()), ("tasks", "100".into()), ("smtp_relay", relay.into()),
             ("smtp_security", security.into()), ("smtp_username", user.into()), ("smtp_password", password.into())]
    };
    let post = |c: &mut Client, f: Vec<(&str, String)>| {
        let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        c.post("/admin/settings", &pairs)
    };
    // A login over an unencrypted connection to another machine is refused, saying why.
    let r = post(&mut root, form("smtp.example.org:25", "none", "me", "secret one"));
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("needs STARTTLS or TLS"), "{}", r.body);
    let r = post(&mut root, form("smtp.example.org:587", "starttls", "me", ""));
    assert_eq!(r.status, 400, "a user name without a password: {}", r.body);
    let r = post(&mut root, form("smtp.example.org:587", "sometimes", "", ""));
    assert_eq!(r.status, 400);
    // Saved with STARTTLS: the page shows the user and the choice, never the password.
    let r = post(&mut root, form("smtp.example.org:587", "starttls", "me", "secret one"));
    assert_eq!(r.status, 200, "{}", r.body);
    let page = root.get("/admin/settings");
    assert!(page.body.contains("value=\"me\"") && page.body.contains("<option value=\"starttls\" selected>"), "{}", page.body);
    assert!(!page.body.contains("secret one"), "the password is never shown");
    assert!(page.body.contains("saved; leave empty to keep it"));
    // Saving again with an empty password keeps it (the form never has it to send back) …
    assert_eq!(post(&mut root, form("smtp.example.org:465", "tls", "me", "")).status, 200);
    // … which shows in that a change to cleartext is still refused as a login, and that
    // clearing the user name clears the login.
    let r = post(&mut root, form("smtp.example.org:25", "none", "me", ""));
    assert_eq!(r.status, 400, "the kept password still counts as a login: {}", r.body);
    assert_eq!(post(&mut root, form("smtp.example.org:25", "none", "", "")).status, 200);
    assert!(!root.get("/admin/settings").body.contains("saved; leave empty"), "no login any more");
    // A relay on this machine may get a login without TLS.
    assert_eq!(post(&mut root, form("127.0.0.1:25", "none", "me", "secret two")).status, 200);
}
