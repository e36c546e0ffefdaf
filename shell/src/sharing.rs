//! Sharing: links that carry a role of the grain's app, the grants made when a signed-in person
//! opens a link as themselves, and the permission computation over the sharing graph
//! (SPEC.md, "Sharing").
//!
//! A user's permissions on a grain are the union, over every path from the owner to them, of
//! the intersection of the roles along the path. So nobody can pass on more than they hold,
//! and revoking a link (or lowering its role) cuts every path through it at once.

use crate::accounts::{now, random_hex, token_key};
use crate::grains::Grain;
use granary_grains::manifest::Manifest;
use granary_store::{Db, Table};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// A share link. Stored under the SHA-256 of its secret token; `id` is a short public name
/// (for pages and forms), never enough to open it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShareLink {
    pub id: String,
    pub grain_id: String,
    pub created_by: String,
    /// Index into the app's roles, or 0 for the implicit full-access role of an app without roles.
    pub role: u32,
    pub label: String,
    pub created: u64,
    pub revoked: bool,
}

/// A signed-in person who opened a link as themselves.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Grant {
    pub since: u64,
}

/// token hash → link.
pub const LINKS: Table<String, ShareLink> = Table::new("share_links");
/// (grain id, link id) → token hash.
pub const GRAIN_LINKS: Table<(String, String), String> = Table::new("share_links_by_grain");
/// ((grain id, user id), link id) → grant.
pub const GRANTS: Table<((String, String), String), Grant> = Table::new("share_grants");
/// (grain id, user id) → (): who holds grants on a grain.
pub const GRANTEES: Table<(String, String), ()> = Table::new("share_grantees");
/// (user id, grain id) → (): "shared with me".
pub const SHARED_WITH: Table<(String, String), ()> = Table::new("shared_with");

/// Why a sharing operation failed; shown to the user.
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    #[error("that role does not exist in this app")]
    NoSuchRole,
    #[error("you cannot share more than you have: this role includes permissions you do not hold")]
    MoreThanHeld,
    #[error("a label may be at most 100 characters")]
    BadLabel,
    #[error("you do not have access to this grain")]
    NoAccess,
    #[error(transparent)]
    Store(#[from] granary_store::Error),
}

/// The roles a link can carry: the app's (without obsolete ones), or one implicit
/// "full access" role for an app that defines none.
pub fn roles(m: &Manifest) -> Vec<(u32, String, Vec<bool>)> {
    if m.roles.is_empty() {
        return vec![(0, "Full access".into(), vec![true; m.permissions.len()])];
    }
    m.roles.iter().enumerate().filter(|(_, r)| !r.obsolete).map(|(i, r)| (i as u32, r.title.clone(), r.permissions.clone())).collect()
}

fn role_permissions(m: &Manifest, role: u32) -> Option<Vec<bool>> {
    if m.roles.is_empty() {
        return (role == 0).then(|| vec![true; m.permissions.len()]);
    }
    m.roles.get(role as usize).map(|r| {
        let mut p = r.permissions.clone();
        p.resize(m.permissions.len(), false);
        p
    })
}

fn and(a: &[bool], b: &[bool]) -> Vec<bool> {
    a.iter().zip(b).map(|(x, y)| *x && *y).collect()
}

fn or(a: &mut [bool], b: &[bool]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x |= *y;
    }
}

/// What a user may do on a grain: `None` = no access; `Some(flags)` indexed like the
/// manifest's permissions (possibly all false: access without permissions, e.g. a viewer).
pub fn user_permissions(db: &Db, grain: &Grain, m: &Manifest, user_id: &str) -> Result<Option<Vec<bool>>, granary_store::Error> {
    permissions_inner(db, grain, m, user_id, &mut HashSet::new())
}

fn permissions_inner(db: &Db, grain: &Grain, m: &Manifest, user_id: &str, visiting: &mut HashSet<String>) -> Result<Option<Vec<bool>>, granary_store::Error> {
    if user_id == grain.owner {
        return Ok(Some(vec![true; m.permissions.len()]));
    }
    if !visiting.insert(user_id.to_owned()) {
        return Ok(None); // a cycle adds nothing
    }
    let mut total: Option<Vec<bool>> = None;
    for entry in db.scan_prefix(&GRANTS, &(grain.id.clone(), user_id.to_owned()))? {
        let ((_, link_id), _) = entry?;
        if let Some(p) = link_permissions_inner(db, grain, m, &link_id, visiting)? {
            match &mut total {
                Some(t) => or(t, &p),
                None => total = Some(p),
            }
        }
    }
    visiting.remove(user_id);
    Ok(total)
}

/// What a link grants now: its role intersected with what its creator holds; `None` if it is
/// revoked or its creator has no access any more.
pub fn link_permissions(db: &Db, grain: &Grain, m: &Manifest, link_id: &str) -> Result<Option<Vec<bool>>, granary_store::Error> {
    link_permissions_inner(db, grain, m, link_id, &mut HashSet::new())
}

fn link_permissions_inner(db: &Db, grain: &Grain, m: &Manifest, link_id: &str, visiting: &mut HashSet<String>) -> Result<Option<Vec<bool>>, granary_store::Error> {
    let Some(hash) = db.get(&GRAIN_LINKS, &(grain.id.clone(), link_id.to_owned()))? else { return Ok(None) };
    let Some(link) = db.get(&LINKS, &hash)? else { return Ok(None) };
    if link.revoked {
        return Ok(None);
    }
    let Some(role) = role_permissions(m, link.role) else { return Ok(None) };
    Ok(permissions_inner(db, grain, m, &link.created_by, visiting)?.map(|held| and(&role, &held)))
}

/// Creates a link of `role` on `grain` by `user`; returns the secret token (shown once).
pub fn create_link(db: &Db, grain: &Grain, m: &Manifest, user_id: &str, role: u32, label: &str) -> Result<(String, ShareLink), ShareError> {
    let label = label.trim();
    if label.chars().count() > 100 {
        return Err(ShareError::BadLabel);
    }
    let wanted = role_permissions(m, role).ok_or(ShareError::NoSuchRole)?;
    let held = user_permissions(db, grain, m, user_id)?.ok_or(ShareError::NoAccess)?;
    if wanted.iter().zip(&held).any(|(w, h)| *w && !*h) {
        return Err(ShareError::MoreThanHeld);
    }
    let token = random_hex(32);
    let hash = token_key(&token);
    let link = ShareLink {
        id: hash[..16].to_owned(),
        grain_id: grain.id.clone(),
        created_by: user_id.to_owned(),
        role,
        label: label.to_owned(),
        created: now(),
        revoked: false,
    };
    db.transaction(|tx| {
        tx.insert(&LINKS, &hash, &link)?;
        tx.insert(&GRAIN_LINKS, &(grain.id.clone(), link.id.clone()), &hash)
    })?;
    Ok((token, link))
}

/// The link a secret token names (revoked ones included).
pub fn link_by_token(db: &Db, token: &str) -> Result<Option<ShareLink>, granary_store::Error> {
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    db.get(&LINKS, &token_key(token))
}

/// Records that `user` opened `link` as themselves.
pub fn redeem(db: &Db, link: &ShareLink, user_id: &str) -> Result<(), granary_store::Error> {
    db.transaction(|tx| {
        tx.insert(&GRANTS, &((link.grain_id.clone(), user_id.to_owned()), link.id.clone()), &Grant { since: now() })?;
        tx.insert(&GRANTEES, &(link.grain_id.clone(), user_id.to_owned()), &())?;
        tx.insert(&SHARED_WITH, &(user_id.to_owned(), link.grain_id.clone()), &())
    })
}

/// Every link of a grain, newest first.
pub fn links_of(db: &Db, grain_id: &str) -> Result<Vec<ShareLink>, granary_store::Error> {
    let mut out = Vec::new();
    for e in db.scan_prefix(&GRAIN_LINKS, grain_id)? {
        let (_, hash) = e?;
        if let Some(l) = db.get(&LINKS, &hash)? {
            out.push(l);
        }
    }
    out.sort_by_key(|l| std::cmp::Reverse(l.created));
    Ok(out)
}

/// (user id, link id) of everyone who opened a link of the grain as themselves.
pub fn grants_of(db: &Db, grain_id: &str) -> Result<Vec<(String, String)>, granary_store::Error> {
    let mut out = Vec::new();
    for e in db.scan_prefix(&GRANTEES, grain_id)? {
        let ((_, user), ()) = e?;
        for g in db.scan_prefix(&GRANTS, &(grain_id.to_owned(), user.clone()))? {
            let ((_, link), _) = g?;
            out.push((user.clone(), link));
        }
    }
    Ok(out)
}

/// Grains shared with `user_id` (ids).
pub fn shared_with(db: &Db, user_id: &str) -> Result<Vec<String>, granary_store::Error> {
    db.scan_prefix(&SHARED_WITH, user_id)?.map(|e| e.map(|((_, g), ())| g)).collect()
}

/// Changes a link (revoke or role); only its creator or the grain's owner may.
pub fn update_link(db: &Db, grain: &Grain, m: &Manifest, by: &str, link_id: &str, change: LinkChange) -> Result<(), ShareError> {
    let Some(hash) = db.get(&GRAIN_LINKS, &(grain.id.clone(), link_id.to_owned()))? else { return Err(ShareError::NoAccess) };
    let Some(mut link) = db.get(&LINKS, &hash)? else { return Err(ShareError::NoAccess) };
    if by != link.created_by && by != grain.owner {
        return Err(ShareError::NoAccess);
    }
    match change {
        LinkChange::Revoke => link.revoked = true,
        LinkChange::Role(role) => {
            let wanted = role_permissions(m, role).ok_or(ShareError::NoSuchRole)?;
            let held = user_permissions(db, grain, m, by)?.ok_or(ShareError::NoAccess)?;
            if wanted.iter().zip(&held).any(|(w, h)| *w && !*h) {
                return Err(ShareError::MoreThanHeld);
            }
            link.role = role;
        }
    }
    db.insert(&LINKS, &hash, &link)?;
    Ok(())
}

pub enum LinkChange {
    Revoke,
    Role(u32),
}

#[cfg(test)]
mod tests {
    use super::*;
    use granary_grains::manifest::{PermissionDef, RoleDef};

    fn app() -> Manifest {
        let perm = |n: &str| PermissionDef { name: n.into(), title: n.into(), ..Default::default() };
        let role = |n: &str, p: Vec<bool>| RoleDef { name: n.into(), title: n.into(), permissions: p, ..Default::default() };
        Manifest {
            permissions: vec![perm("read"), perm("edit")],
            roles: vec![role("viewer", vec![true, false]), role("editor", vec![true, true])],
            ..Default::default()
        }
    }

    fn grain() -> Grain {
        Grain {
            id: "g".into(),
            package_id: "p".into(),
            app_id: "a".into(),
            owner: "owner".into(),
            title: "t".into(),
            action: 0,
            initialized: true,
            created: 0,
            trashed: None,
            storage_bytes: None,
        }
    }

    #[test]
    fn permissions_are_the_union_of_path_intersections() {
        let (db, g, m) = (Db::memory(&[]).unwrap(), grain(), app());
        assert_eq!(user_permissions(&db, &g, &m, "owner").unwrap(), Some(vec![true, true]));
        assert_eq!(user_permissions(&db, &g, &m, "bob").unwrap(), None);
        let (_, view) = create_link(&db, &g, &m, "owner", 0, "viewers").unwrap();
        redeem(&db, &view, "bob").unwrap();
        assert_eq!(user_permissions(&db, &g, &m, "bob").unwrap(), Some(vec![true, false]));
        // Bob cannot hand out an editor link, and his viewer link gives carol only viewing.
        assert!(matches!(create_link(&db, &g, &m, "bob", 1, ""), Err(ShareError::MoreThanHeld)));
        let (_, bobs) = create_link(&db, &g, &m, "bob", 0, "").unwrap();
        redeem(&db, &bobs, "carol").unwrap();
        assert_eq!(user_permissions(&db, &g, &m, "carol").unwrap(), Some(vec![true, false]));
        // Carol also gets an editor link from the owner: the union.
        let (_, edit) = create_link(&db, &g, &m, "owner", 1, "").unwrap();
        redeem(&db, &edit, "carol").unwrap();
        assert_eq!(user_permissions(&db, &g, &m, "carol").unwrap(), Some(vec![true, true]));
        // Revoking the owner's viewer link cuts bob, and with him the path through bob's link.
        update_link(&db, &g, &m, "owner", &view.id, LinkChange::Revoke).unwrap();
        assert_eq!(user_permissions(&db, &g, &m, "bob").unwrap(), None);
        assert_eq!(link_permissions(&db, &g, &m, &bobs.id).unwrap(), None);
        assert_eq!(user_permissions(&db, &g, &m, "carol").unwrap(), Some(vec![true, true]));
        // Lowering the editor link's role lowers carol at once.
        update_link(&db, &g, &m, "owner", &edit.id, LinkChange::Role(0)).unwrap();
        assert_eq!(user_permissions(&db, &g, &m, "carol").unwrap(), Some(vec![true, false]));
    }

    #[test]
    fn cycles_add_nothing_and_strangers_cannot_change_links() {
        let (db, g, m) = (Db::memory(&[]).unwrap(), grain(), app());
        let (_, a) = create_link(&db, &g, &m, "owner", 1, "").unwrap();
        redeem(&db, &a, "bob").unwrap();
        let (_, b) = create_link(&db, &g, &m, "bob", 1, "").unwrap();
        redeem(&db, &b, "carol").unwrap();
        let (_, c) = create_link(&db, &g, &m, "carol", 1, "").unwrap();
        redeem(&db, &c, "bob").unwrap();
        update_link(&db, &g, &m, "owner", &a.id, LinkChange::Revoke).unwrap();
        assert_eq!(user_permissions(&db, &g, &m, "bob").unwrap(), None, "bob and carol only vouch for each other");
        assert_eq!(user_permissions(&db, &g, &m, "carol").unwrap(), None);
        assert!(matches!(update_link(&db, &g, &m, "mallory", &b.id, LinkChange::Revoke), Err(ShareError::NoAccess)));
        assert!(link_by_token(&db, "not-a-token").unwrap().is_none());
    }
}
