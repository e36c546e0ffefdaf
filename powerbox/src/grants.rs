//! Saved capabilities in the `grants` table: save, restore (with the owner, expiry and the
//! whole ancestry checked), drop, revoke and the lists the pages show. The token is never
//! stored: the key is its domain-separated hash and the target is sealed under it.

use crate::model::{Grant, GrantId, Owner, OwnerMatch, Requirement, SturdyRef, Target};
use crate::seal::{seal, unseal};
use granary_store::{Db, Table};

/// grant id (hex) → grant.
pub const GRANTS: Table<String, Grant> = Table::new("grants");

/// How deep a chain of parents may be; deeper is treated as broken (it cannot happen through
/// `save`, whose parents always exist first).
const MAX_ANCESTRY: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// One answer for unknown, another owner's, revoked, expired, or a dead ancestor: a holder
    /// learns nothing about tokens that are not theirs.
    #[error("this saved capability is unknown or revoked: ask the user to grant it again")]
    UnknownOrRevoked,
    #[error(transparent)]
    Store(#[from] granary_store::Error),
}

/// A restored grant: what the live capability needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    pub id: GrantId,
    pub target: Target,
    /// The grant's own requirements followed by every ancestor's.
    pub requirements: Vec<Requirement>,
    pub display: String,
    /// The grant's id, then its parent's, and so on to the root.
    pub ancestry: Vec<GrantId>,
    /// The earliest expiry of the grant and its ancestors (unix seconds): the live capability
    /// must end then too (see `MembraneRegistry::revoke_expired`).
    pub expires: Option<u64>,
    /// The person who granted it (or, for a child, its root), if one did.
    pub granted_by: Option<String>,
}

/// What [`GrantStore::save`] records.
#[derive(Clone, Debug)]
pub struct NewGrant {
    pub owner: Owner,
    pub target: Target,
    pub display: String,
    pub requirements: Vec<Requirement>,
    pub parent: Option<GrantId>,
    pub granted_by: Option<String>,
    pub expires: Option<u64>,
}

/// The grants of one database.
pub struct GrantStore<'a> {
    db: &'a Db,
}

impl<'a> GrantStore<'a> {
    pub fn new(db: &'a Db) -> GrantStore<'a> {
        GrantStore { db }
    }

    /// Records a new grant and returns its token (the only time it exists outside the owner).
    /// A `parent` that is unknown or dead is refused like a bad token.
    pub fn save(&self, new: NewGrant, now: u64) -> Result<SturdyRef, GrantError> {
        if let Some(parent) = &new.parent {
            self.live_ancestry(parent, now)?;
        }
        let token = SturdyRef::generate();
        let id = token.grant_id();
        let grant = Grant {
            sealed_target: seal(&token, &id, &new.target),
            id: id.clone(),
            owner: new.owner,
            display: new.display,
            requirements: new.requirements,
            parent: new.parent,
            granted_by: new.granted_by,
            created: now,
            expires: new.expires,
            last_used: None,
            revoked: false,
        };
        self.db.insert(&GRANTS, &id.0, &grant)?;
        Ok(token)
    }

    /// Opens `token` for `who`. Unknown, another owner's, revoked, expired, or under a revoked,
    /// expired or dropped ancestor: all fail with [`GrantError::UnknownOrRevoked`].
    pub fn restore(&self, token: &SturdyRef, who: &OwnerMatch, now: u64) -> Result<Restored, GrantError> {
        let id = token.grant_id();
        let grant = self.db.get(&GRANTS, &id.0)?.ok_or(GrantError::UnknownOrRevoked)?;
        if !grant.owner.is(who) {
            return Err(GrantError::UnknownOrRevoked);
        }
        let target = unseal(token, &id, &grant.sealed_target).map_err(|_| GrantError::UnknownOrRevoked)?;
        let chain = self.live_ancestry(&id, now)?;
        Ok(Restored {
            id,
            target,
            requirements: chain.iter().flat_map(|g| g.requirements.iter().cloned()).collect(),
            display: grant.display,
            granted_by: chain.iter().find_map(|g| g.granted_by.clone()),
            expires: chain.iter().filter_map(|g| g.expires).min(),
            ancestry: chain.into_iter().map(|g| g.id).collect(),
        })
    }

    /// `id` and its ancestors, each present, not revoked and not expired.
    fn live_ancestry(&self, id: &GrantId, now: u64) -> Result<Vec<Grant>, GrantError> {
        let mut chain: Vec<Grant> = Vec::new();
        let mut next = Some(id.clone());
        while let Some(id) = next {
            if chain.len() == MAX_ANCESTRY || chain.iter().any(|g| g.id == id) {
                return Err(GrantError::UnknownOrRevoked);
            }
            let g = self.db.get(&GRANTS, &id.0)?.ok_or(GrantError::UnknownOrRevoked)?;
            if g.is_dead(now) {
                return Err(GrantError::UnknownOrRevoked);
            }
            next = g.parent.clone();
            chain.push(g);
        }
        Ok(chain)
    }

    /// Forgets the grant `token` opens, if `who` owns it; returns its id (to revoke the live
    /// capabilities from it and its descendants), or `None` if there was nothing of theirs.
    pub fn drop(&self, token: &SturdyRef, who: &OwnerMatch) -> Result<Option<GrantId>, GrantError> {
        let id = token.grant_id();
        let dropped = self.db.transaction(|tx| {
            match tx.get(&GRANTS, &id.0)? {
                Some(g) if g.owner.is(who) => {
                    tx.remove(&GRANTS, &id.0)?;
                    Ok::<_, GrantError>(true)
                }
                _ => Ok(false),
            }
        })?;
        Ok(dropped.then_some(id))
    }

    /// Marks `id` and every descendant revoked, in one transaction. Returns their ids (the
    /// grant first) so the caller can revoke their live capabilities; empty if `id` is unknown.
    pub fn revoke(&self, id: &GrantId) -> Result<Vec<GrantId>, GrantError> {
        self.db.transaction(|tx| {
            let mut all = Vec::new();
            for e in tx.iter(&GRANTS)? {
                all.push(e?.1);
            }
            if !all.iter().any(|g: &Grant| &g.id == id) {
                return Ok(Vec::new());
            }
            let mut subtree = vec![id.clone()];
            let mut i = 0;
            while i < subtree.len() {
                let parent = subtree[i].clone();
                subtree.extend(all.iter().filter(|g| g.parent.as_ref() == Some(&parent)).map(|g| g.id.clone()));
                i += 1;
            }
            for g in all.iter_mut().filter(|g| subtree.contains(&g.id) && !g.revoked) {
                g.revoked = true;
                tx.insert(&GRANTS, &g.id.0, g)?;
            }
            Ok(subtree)
        })
    }

    /// One grant by id.
    pub fn get(&self, id: &GrantId) -> Result<Option<Grant>, GrantError> {
        Ok(self.db.get(&GRANTS, &id.0)?)
    }

    /// Every grant, in id order.
    pub fn list_all(&self) -> Result<Vec<Grant>, GrantError> {
        let mut out = Vec::new();
        for e in self.db.iter(&GRANTS)? {
            out.push(e?.1);
        }
        Ok(out)
    }

    /// The grants `grain` owns.
    pub fn list_for_grain(&self, grain: &str) -> Result<Vec<Grant>, GrantError> {
        let who = OwnerMatch::Grain(grain.to_owned());
        Ok(self.list_all()?.into_iter().filter(|g| g.owner.is(&who)).collect())
    }

    /// The grants `user` made.
    pub fn list_granted_by(&self, user: &str) -> Result<Vec<Grant>, GrantError> {
        Ok(self.list_all()?.into_iter().filter(|g| g.granted_by.as_deref() == Some(user)).collect())
    }

    /// Records a use; false if there is no such grant.
    pub fn touch_last_used(&self, id: &GrantId, now: u64) -> Result<bool, GrantError> {
        self.db.transaction(|tx| {
            let Some(mut g) = tx.get(&GRANTS, &id.0)? else { return Ok(false) };
            g.last_used = Some(now);
            tx.insert(&GRANTS, &id.0, &g)?;
            Ok(true)
        })
    }
}

#[cfg(test)]
#[path = "grants_tests.rs"]
mod tests;
