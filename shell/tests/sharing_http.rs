//! Sharing over real HTTP with real grains (root): links with roles, revealing identity or
//! not, re-sharing never grants more, and revoking or lowering a role ends open sessions.

mod common;
mod grainkit;
mod server;

use grainkit::*;
use server::{bridge, Client, TestServer};

/// Creates a link on the grain as `c`; returns the share path (`/share/<token>`).
fn share(c: &mut Client, grain_id: &str, role: &str, label: &str) -> String {
    let page = c.get(&format!("/grains/{grain_id}/access"));
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = page.hidden("csrf");
    let r = c.post(&format!("/grains/{grain_id}/share"), &[("csrf", &csrf), ("role", role), ("label", label)]);
    assert_eq!(r.status, 200, "{}", r.body);
    let url = r.hidden_attr("id=\"new-link-url\" type=\"text\" readonly value");
    url.split_once("/share/").map(|(_, t)| format!("/share/{t}")).expect("a share URL")
}

/// Opens a share link as a signed-in person who reveals themselves; returns the session origin.
fn open_as_self(s: &TestServer, c: &mut Client, share_path: &str) -> Origin {
    let choose = c.get(share_path);
    assert!(choose.body.contains("Should its app know who you are?"), "{}", choose.body);
    let r = c.post(share_path, &[("csrf", &choose.hidden("csrf")), ("mode", "reveal")]);
    let grain_url = r.location();
    assert!(grain_url.starts_with("/grains/"), "{}", r.body);
    let (host, init) = open_frame(c, &grain_url);
    Origin::enter(s, &host, &init)
}

/// Opens a share link with no identity (the anonymous view).
fn open_anonymously(s: &TestServer, c: &mut Client, share_path: &str) -> Origin {
    let page = c.get(share_path);
    assert_eq!(page.status, 200, "{}", page.body);
    let src = page.hidden_attr("iframe class=\"grain\" id=\"grain-frame\" src");
    let (host, path) = src.strip_prefix("http://").unwrap().split_once('/').unwrap();
    Origin::enter(s, host, &format!("/{path}"))
}

/// The id of the link labelled `label` on an access page.
fn link_row(page: &str, label: &str) -> String {
    page.split("data-link=\"")
        .skip(1)
        // The label is the row's first cell (a creator's name appears in a later one).
        .find(|row| row.split("<td>").nth(1).is_some_and(|cell| cell.starts_with(&format!("{label}</td>"))))
        .map(|row| row.split('"').next().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no link labelled {label}"))
}

fn perms(o: &mut Origin) -> String {
    o.json("/whoami", &[])["headers"]["x-granary-permissions"].as_str().unwrap().to_owned()
}

#[test]
fn links_grant_roles_resharing_never_grants_more_and_revocation_is_immediate() {
    require_root();
    let bridge = bridge();
    let s = TestServer::start_with(&["--bridge", bridge.to_str().unwrap(), "--idle", "60"]);
    let mut ann = admin(&s);
    let pkg = install_echo(&mut ann);
    let (_, grain) = new_grain(&mut ann, &pkg, "Shared notes");
    let (host, init) = open_frame(&mut ann, &format!("/grains/{grain}"));
    let mut ann_o = Origin::enter(&s, &host, &init);
    assert_eq!(perms(&mut ann_o), "edit", "the owner holds every permission");

    // Bob opens a viewer link as himself: the grain knows him, he may not edit.
    let viewer_link = share(&mut ann, &grain, "0", "Bob");
    let mut bob = s.new_admin("bob", "Bob");
    let mut bob_o = open_as_self(&s, &mut bob, &viewer_link);
    let who = bob_o.json("/whoami", &[]);
    assert_eq!(who["headers"]["x-granary-username"], "Bob");
    assert_eq!(who["headers"]["x-granary-permissions"], "");
    assert!(bob.get("/").body.contains("Shared with me"));

    // Bob cannot hand out an editor link; his viewer link works for an anonymous visitor.
    let page = bob.get(&format!("/grains/{grain}/access"));
    let r = bob.post(&format!("/grains/{grain}/share"), &[("csrf", &page.hidden("csrf")), ("role", "1"), ("label", "sneaky")]);
    assert_eq!(r.status, 400);
    assert!(r.body.contains("cannot share more than you have"), "{}", r.body);
    let bobs_link = share(&mut bob, &grain, "0", "public");
    let mut anon = Client::new(&s);
    let mut anon_o = open_anonymously(&s, &mut anon, &bobs_link);
    let who = anon_o.json("/whoami", &[]);
    assert!(who["headers"].get("x-granary-user-id").is_none(), "anonymous visitors have no id: {who}");
    assert_eq!(who["headers"]["x-granary-permissions"], "");
    // Bob is not the owner: owner-only actions are refused.
    let csrf = bob.get("/").hidden("csrf");
    assert_eq!(bob.post(&format!("/grains/{grain}/trash"), &[("csrf", &csrf)]).status, 403);
    assert_eq!(bob.get(&format!("/grains/{grain}/log")).status, 403, "the log is for the owner");

    // Dave gets an editor link; lowering its role ends his open session, a reopen has less.
    let editor_link = share(&mut ann, &grain, "1", "Dave");
    let mut dave = s.new_admin("dave", "Dave");
    let mut dave_o = open_as_self(&s, &mut dave, &editor_link);
    assert_eq!(perms(&mut dave_o), "edit");
    let access = ann.get(&format!("/grains/{grain}/access"));
    let link_id = link_row(&access.body, "Dave");
    assert!(access.body.contains("Dave") && access.body.contains("Bob"), "the owner sees who has access");
    let r = ann.post(&format!("/grains/{grain}/links/{link_id}/role"), &[("csrf", &access.hidden("csrf")), ("role", "0")]);
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(dave_o.get("/whoami", &[]).status, 404, "the session was torn down at once");
    let (host, init) = open_frame(&mut dave, &format!("/grains/{grain}"));
    let mut dave_o = Origin::enter(&s, &host, &init);
    assert_eq!(perms(&mut dave_o), "", "reopened with the lowered role");

    // Revoking the owner's viewer link cuts Bob and, through him, the anonymous visitor.
    let access = ann.get(&format!("/grains/{grain}/access"));
    let bob_link_id = link_row(&access.body, "Bob");
    ann.post(&format!("/grains/{grain}/links/{bob_link_id}/revoke"), &[("csrf", &access.hidden("csrf"))]);
    assert_eq!(bob_o.get("/whoami", &[]).status, 404);
    assert_eq!(anon_o.get("/whoami", &[]).status, 404);
    assert_eq!(bob.get(&format!("/grains/{grain}")).status, 404, "Bob no longer sees the grain");
    assert!(!bob.get("/").body.contains("Shared notes"));
    assert_eq!(Client::new(&s).get(&bobs_link).status, 404, "links made from revoked access stop working");
    assert_eq!(perms(&mut ann_o), "edit", "the owner is unaffected");

    // Suspending Dave ends his open grain session at once.
    let page = ann.get("/admin");
    let row = page.body.split("data-user=\"dave\"").nth(1).unwrap();
    let action = row.split("action=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    assert_eq!(ann.post(&action, &[("csrf", &page.hidden("csrf"))]).status, 303);
    assert_eq!(dave_o.get("/whoami", &[]).status, 404);
}
