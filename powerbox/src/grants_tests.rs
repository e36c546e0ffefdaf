use super::*;

fn grain(g: &str) -> Owner {
    Owner::Grain { grain: g.into(), label: "label".into() }
}

fn in_grain(g: &str) -> OwnerMatch {
    OwnerMatch::Grain(g.into())
}

fn http(origin: &str) -> Target {
    Target::HttpOrigin { origin: origin.into(), path_prefix: "/".into() }
}

fn new_grant(owner: Owner, target: Target, parent: Option<GrantId>, req: &str) -> NewGrant {
    NewGrant {
        owner,
        target,
        display: "may send HTTP requests to https://a.example".into(),
        requirements: vec![Requirement::UserIsAdmin { user: req.into() }],
        parent,
        granted_by: Some("alice".into()),
        expires: None,
    }
}

fn is_unknown(r: Result<Restored, GrantError>) -> bool {
    matches!(r, Err(GrantError::UnknownOrRevoked))
}

#[test]
fn save_then_restore_by_its_owner() {
    let db = Db::memory(&[]).unwrap();
    let store = GrantStore::new(&db);
    let token = store.save(new_grant(grain("g1"), http("https://a.example"), None, "r1"), 100).unwrap();
    let r = store.restore(&token, &in_grain("g1"), 101).unwrap();
    assert_eq!(r.id, token.grant_id());
    assert_eq!(r.target, http("https://a.example"));
    assert_eq!(r.ancestry, vec![token.grant_id()]);
    assert_eq!(r.expires, None);
    assert_eq!(r.requirements, vec![Requirement::UserIsAdmin { user: "r1".into() }]);
    let g = store.get(&r.id).unwrap().unwrap();
    assert_eq!((g.created, g.granted_by.as_deref(), g.revoked), (100, Some("alice"), false));
}

#[test]
fn the_token_is_never_stored() {
    let db = Db::memory(&[]).unwrap();
    let store = GrantStore::new(&db);
    let token = store.save(new_grant(grain("g1"), http("https://secret-origin.example"), None, "r"), 1).unwrap();
    let record = serde_json::to_string(&store.list_all().unwrap()).unwrap();
    assert!(!record.contains(&token.to_text()[3..]), "token text in the record");
    let token_hex = crate::model::hex(token.as_bytes());
    assert!(!record.contains(&token_hex), "token bytes in the record");
    assert!(!record.contains("secret-origin"), "the target must be sealed");
    assert!(record.contains(&token.grant_id().0));
}

#[test]
fn unknown_foreign_revoked_and_expired_fail_alike() {
    let db = Db::memory(&[]).unwrap();
    let store = GrantStore::new(&db);
    let token = store.save(new_grant(grain("g1"), http("https://a.example"), None, "r"), 1).unwrap();
    assert!(is_unknown(store.restore(&SturdyRef::generate(), &in_grain("g1"), 2)), "unknown");
    assert!(is_unknown(store.restore(&token, &in_grain("g2"), 2)), "another grain");
    assert!(is_unknown(store.restore(&token, &OwnerMatch::User("g1".into()), 2)), "a user named like the grain");

    let mut expiring = new_grant(grain("g1"), http("https://a.example"), None, "r");
    expiring.expires = Some(50);
    let expiring = store.save(expiring, 1).unwrap();
    assert!(store.restore(&expiring, &in_grain("g1"), 49).is_ok());
    assert!(is_unknown(store.restore(&expiring, &in_grain("g1"), 50)), "expired");

    assert_eq!(store.revoke(&token.grant_id()).unwrap(), vec![token.grant_id()]);
    assert!(is_unknown(store.restore(&token, &in_grain("g1"), 2)), "revoked");
    let msg = store.restore(&token, &in_grain("g1"), 2).unwrap_err().to_string();
    assert!(msg.contains("unknown or revoked") && msg.contains("grant it again"), "{msg}");
}

#[test]
fn forged_tokens_and_tokens_built_from_the_hash_are_useless() {
    let db = Db::memory(&[]).unwrap();
    let store = GrantStore::new(&db);
    let token = store.save(new_grant(grain("g1"), http("https://a.example"), None, "r"), 1).unwrap();
    let id = token.grant_id();
    // Someone who read the database knows the id. The id's bytes as a token, or its text, open
    // nothing: they hash to other ids.
    let id_bytes: Vec<u8> = (0..32).map(|i| u8::from_str_radix(&id.0[2 * i..2 * i + 2], 16).unwrap()).collect();
    let from_hash = SturdyRef::from_bytes(id_bytes.try_into().unwrap());
    assert!(is_unknown(store.restore(&from_hash, &in_grain("g1"), 2)));
    // Even a record copied under the forged token's id does not open: the seal is bound to the
    // real token and the original id.
    let mut copy = store.get(&id).unwrap().unwrap();
    copy.id = from_hash.grant_id();
    db.insert(&GRANTS, &copy.id.0, &copy).unwrap();
    assert!(is_unknown(store.restore(&from_hash, &in_grain("g1"), 2)));
    // A flipped bit of the real token is another token.
    let mut bytes = *token.as_bytes();
    bytes[0] ^= 1;
    assert!(is_unknown(store.restore(&SturdyRef::from_bytes(bytes), &in_grain("g1"), 2)));
    assert!(store.restore(&token, &in_grain("g1"), 2).is_ok());
}

#[test]
fn children_carry_ancestor_requirements_and_die_with_them() {
    let db = Db::memory(&[]).unwrap();
    let store = GrantStore::new(&db);
    let root = store.save(new_grant(grain("g1"), http("https://a.example"), None, "root"), 1).unwrap();
    let child = store.save(new_grant(grain("g2"), http("https://a.example"), Some(root.grant_id()), "child"), 1).unwrap();
    let grandchild =
        store.save(new_grant(grain("g3"), http("https://a.example"), Some(child.grant_id()), "grandchild"), 1).unwrap();
    let other = store.save(new_grant(grain("g3"), http("https://b.example"), None, "other"), 1).unwrap();

    let r = store.restore(&grandchild, &in_grain("g3"), 2).unwrap();
    assert_eq!(r.ancestry, vec![grandchild.grant_id(), child.grant_id(), root.grant_id()]);
    let users: Vec<_> = r
        .requirements
        .iter()
        .map(|q| match q {
            Requirement::UserIsAdmin { user } => user.as_str(),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(users, ["grandchild", "child", "root"]);

    assert_eq!(r.expires, None);
    let mut soon = new_grant(grain("g5"), http("https://a.example"), Some(grandchild.grant_id()), "x");
    soon.expires = Some(40);
    let soon = store.save(soon, 1).unwrap();
    let mut later = new_grant(grain("g6"), http("https://a.example"), Some(soon.grant_id()), "x");
    later.expires = Some(90);
    let later = store.save(later, 1).unwrap();
    assert_eq!(store.restore(&later, &in_grain("g6"), 2).unwrap().expires, Some(40), "the earliest in the chain");
    assert!(is_unknown(store.restore(&later, &in_grain("g6"), 40)), "an expired ancestor");

    let mut revoked = store.revoke(&child.grant_id()).unwrap();
    revoked.sort();
    let mut expected = vec![child.grant_id(), grandchild.grant_id(), soon.grant_id(), later.grant_id()];
    expected.sort();
    assert_eq!(revoked, expected, "revoke lists the subtree, not the parent or strangers");
    for id in &expected {
        assert!(store.get(id).unwrap().unwrap().revoked, "descendants are marked revoked for the pages");
    }
    assert!(!store.get(&root.grant_id()).unwrap().unwrap().revoked);
    assert!(!store.get(&other.grant_id()).unwrap().unwrap().revoked);
    assert_eq!(store.revoke(&GrantId("unknown".into())).unwrap(), Vec::<GrantId>::new());
    assert!(is_unknown(store.restore(&grandchild, &in_grain("g3"), 2)), "revoked ancestor");
    assert!(store.restore(&root, &in_grain("g1"), 2).is_ok());
    assert!(store.restore(&other, &in_grain("g3"), 2).is_ok());
    // No new child under a revoked grant.
    let refused = store.save(new_grant(grain("g4"), http("https://a.example"), Some(child.grant_id()), "x"), 3);
    assert!(matches!(refused, Err(GrantError::UnknownOrRevoked)));
}

#[test]
fn drop_only_by_the_owner_and_it_kills_descendants() {
    let db = Db::memory(&[]).unwrap();
    let store = GrantStore::new(&db);
    let root = store.save(new_grant(grain("g1"), http("https://a.example"), None, "r"), 1).unwrap();
    let child = store.save(new_grant(grain("g2"), http("https://a.example"), Some(root.grant_id()), "r"), 1).unwrap();
    assert_eq!(store.drop(&root, &in_grain("g2")).unwrap(), None, "not g2's to drop");
    assert!(store.restore(&root, &in_grain("g1"), 2).is_ok());
    assert_eq!(store.drop(&root, &in_grain("g1")).unwrap(), Some(root.grant_id()));
    assert!(store.get(&root.grant_id()).unwrap().is_none());
    assert!(is_unknown(store.restore(&root, &in_grain("g1"), 2)));
    assert!(is_unknown(store.restore(&child, &in_grain("g2"), 2)), "dropped ancestor");
}

#[test]
fn lists_and_last_used() {
    let db = Db::memory(&[]).unwrap();
    let store = GrantStore::new(&db);
    let a = store.save(new_grant(grain("g1"), http("https://a.example"), None, "r"), 1).unwrap();
    let mut by_bob = new_grant(grain("g2"), http("https://b.example"), None, "r");
    by_bob.granted_by = Some("bob".into());
    let b = store.save(by_bob, 1).unwrap();
    let mut user_owned = new_grant(Owner::User { user: "carol".into() }, http("https://c.example"), None, "r");
    user_owned.granted_by = None;
    store.save(user_owned, 1).unwrap();

    let ids = |v: Vec<Grant>| v.into_iter().map(|g| g.id).collect::<Vec<_>>();
    assert_eq!(ids(store.list_for_grain("g1").unwrap()), vec![a.grant_id()]);
    assert_eq!(ids(store.list_granted_by("bob").unwrap()), vec![b.grant_id()]);
    assert_eq!(store.list_granted_by("alice").unwrap().len(), 1);
    assert_eq!(store.list_all().unwrap().len(), 3);

    assert!(store.touch_last_used(&a.grant_id(), 77).unwrap());
    assert_eq!(store.get(&a.grant_id()).unwrap().unwrap().last_used, Some(77));
    assert!(!store.touch_last_used(&GrantId("nope".into()), 77).unwrap());
}
