//! Grains over real HTTP: create from an app, list, rename, trash, restore, delete; another
//! user's grain is indistinguishable from a missing one and cannot be touched.

mod common;
mod server;

use server::{Client, TestServer};
use std::fs;

fn grain_dirs(s: &TestServer) -> Vec<String> {
    match fs::read_dir(s.data.path().join("grains")) {
        Ok(d) => d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn a_grain_is_created_renamed_trashed_restored_and_deleted() {
    let s = TestServer::start();
    let mut c = s.new_admin("ann", "ann");
    let pkg = c.install(&common::minimal_package("Round trip"));
    assert!(c.get("/").body.contains("No grains yet"));

    let details = c.get(&format!("/apps/{pkg}"));
    assert!(details.body.contains("New thing"), "the action button is on the app page");
    let csrf = details.hidden("csrf");
    let r = c.post("/grains", &[("csrf", &csrf), ("package_id", &pkg), ("action", "0"), ("title", "")]);
    assert_eq!(r.status, 303, "{}", r.body);
    let url = r.location();
    let id = url.strip_prefix("/grains/").unwrap().to_owned();
    assert_eq!(id.len(), 24);
    assert_eq!(grain_dirs(&s), std::slice::from_ref(&id));
    let var = s.data.path().join("grains").join(&id).join("var");
    assert!(var.is_dir());
    let page = c.get(&url);
    assert!(page.body.contains("Untitled thing"), "{}", page.body);
    assert!(c.get("/").body.contains("Untitled thing"));

    let r = c.post(&format!("{url}/rename"), &[("csrf", &csrf), ("title", "  Shopping list ")]);
    assert_eq!(r.status, 303);
    assert!(c.get("/").body.contains("Shopping list"));
    let r = c.post(&format!("{url}/rename"), &[("csrf", &csrf), ("title", "   ")]);
    assert_eq!(r.status, 400);
    assert!(r.body.contains("1 to 200 characters"));
    // Deleting needs the trash first.
    let r = c.post(&format!("{url}/delete"), &[("csrf", &csrf)]);
    assert_eq!(r.status, 400);
    assert!(var.is_dir());

    c.post(&format!("{url}/trash"), &[("csrf", &csrf)]);
    let home = c.get("/");
    assert!(home.body.contains("Trash") && home.body.contains("No grains yet"), "{}", home.body);
    assert!(c.get(&url).body.contains("in the trash"));
    c.post(&format!("{url}/restore"), &[("csrf", &csrf)]);
    assert!(!c.get("/").body.contains("No grains yet"));
    c.post(&format!("{url}/trash"), &[("csrf", &csrf)]);
    // The app cannot be uninstalled while the (trashed) grain uses it.
    let r = c.post(&format!("/apps/{pkg}/uninstall"), &[("csrf", &csrf)]);
    assert_eq!(r.status, 409);
    assert!(r.body.contains("1 grain still uses this app"), "{}", r.body);
    let r = c.post(&format!("{url}/delete"), &[("csrf", &csrf)]);
    assert_eq!((r.status, r.location()), (303, "/".to_owned()));
    assert!(grain_dirs(&s).is_empty(), "storage removed: {:?}", grain_dirs(&s));
    assert_eq!(c.get(&url).status, 404);
    // Now it can go, image and all.
    let r = c.post(&format!("/apps/{pkg}/uninstall"), &[("csrf", &csrf)]);
    assert_eq!((r.status, r.location()), (303, "/apps".to_owned()));
    assert!(!s.data.path().join("apps").join(&pkg).exists());
    assert_eq!(c.get(&format!("/apps/{pkg}")).status, 404);
}

#[test]
fn another_users_grain_is_not_found_and_untouched() {
    let s = TestServer::start();
    let mut ann = s.new_admin("ann", "ann");
    let pkg = ann.install(&common::minimal_package("Round trip"));
    let csrf = ann.get(&format!("/apps/{pkg}")).hidden("csrf");
    let url = ann.post("/grains", &[("csrf", &csrf), ("package_id", &pkg), ("action", "0"), ("title", "Private")]).location();
    ann.post(&format!("{url}/trash"), &[("csrf", &csrf)]);

    let mut bob = s.new_admin("bob", "bob");
    let missing = bob.get("/grains/000000000000000000000000");
    let theirs = bob.get(&url);
    assert_eq!((theirs.status, missing.status), (404, 404));
    assert_eq!(theirs.body, missing.body, "someone else's grain looks exactly like a missing one");
    assert!(!bob.get("/").body.contains("Private"));
    let bob_csrf = bob.get("/").hidden("csrf");
    for action in ["rename", "restore", "delete"] {
        let r = bob.post(&format!("{url}/{action}"), &[("csrf", &bob_csrf), ("title", "Mine now")]);
        assert_eq!(r.status, 404, "{action}");
    }
    // Ann's CSRF token does not work in Bob's session, and no session gets a login redirect.
    assert_eq!(bob.post(&format!("{url}/delete"), &[("csrf", &csrf)]).status, 403);
    assert_eq!(Client::new(&s).post(&format!("{url}/delete"), &[("csrf", &csrf)]).location(), "/login");
    let home = ann.get("/");
    assert!(home.body.contains("Private"), "the grain is unchanged");
    assert_eq!(grain_dirs(&s).len(), 1);
    // Unknown actions and packages.
    assert_eq!(ann.post("/grains", &[("csrf", &csrf), ("package_id", &pkg), ("action", "7")]).status, 400);
    assert_eq!(ann.post("/grains", &[("csrf", &csrf), ("package_id", "nope"), ("action", "0")]).status, 404);
}
