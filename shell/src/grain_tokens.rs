//! Grain API tokens (SPEC.md, "Grain API tokens"): a secret that lets a program outside the
//! server call one grain's HTTP API as the person who made it, with at most the permissions
//! they chose. Minted by the powerbox's `renderTemplate` (the app never sees the token), shown
//! once, stored as SHA-256, listed and revoked on the grain's "What can this reach" page.

use crate::accounts::{now, random_hex, token_key};
use granary_store::{Db, Table};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct GrainToken {
    /// Public name (first 16 hex digits of the hash).
    pub id: String,
    pub grain: String,
    /// Who made it: requests run as them, and stop working when they lose access.
    pub user: String,
    /// At most these permissions (intersected with the maker's at each request).
    pub permissions: Vec<bool>,
    /// What the app called it ("Calendar feed for Alice's phone").
    pub petname: String,
    pub created: u64,
}

/// token hash → token.
pub const GRAIN_TOKENS: Table<String, GrainToken> = Table::new("grain_api_tokens");
/// (grain, token id) → token hash.
pub const BY_GRAIN: Table<(String, String), String> = Table::new("grain_api_tokens_by_grain");

pub const PREFIX: &str = "gk_";

/// Makes a token for `grain`, acting as `user` with at most `permissions`; returns the secret.
pub fn mint(db: &Db, grain: &str, user: &str, permissions: Vec<bool>, petname: &str) -> Result<(String, GrainToken), granary_store::Error> {
    let secret = format!("{PREFIX}{}", random_hex(32));
    let hash = token_key(&secret);
    let t = GrainToken {
        id: hash[..16].to_owned(),
        grain: grain.to_owned(),
        user: user.to_owned(),
        permissions,
        petname: petname.trim().chars().take(100).collect(),
        created: now(),
    };
    db.transaction(|tx| {
        tx.insert(&GRAIN_TOKENS, &hash, &t)?;
        tx.insert(&BY_GRAIN, &(grain.to_owned(), t.id.clone()), &hash)
    })?;
    Ok((secret, t))
}

/// The token a bearer secret names, if it exists (whether it still works is the caller's
/// check: the grain and its maker's access).
pub fn lookup(db: &Db, secret: &str) -> Result<Option<GrainToken>, granary_store::Error> {
    let valid = secret.strip_prefix(PREFIX).is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if !valid {
        return Ok(None);
    }
    db.get(&GRAIN_TOKENS, &token_key(secret))
}

/// The grain's tokens, oldest first.
pub fn list(db: &Db, grain: &str) -> Result<Vec<GrainToken>, granary_store::Error> {
    let mut out = Vec::new();
    for e in db.scan_prefix(&BY_GRAIN, grain)? {
        let (_, hash) = e?;
        if let Some(t) = db.get(&GRAIN_TOKENS, &hash)? {
            out.push(t);
        }
    }
    out.sort_by_key(|t| t.created);
    Ok(out)
}

/// Deletes one of the grain's tokens; false if it has no such token.
pub fn revoke(db: &Db, grain: &str, id: &str) -> Result<bool, granary_store::Error> {
    let key = (grain.to_owned(), id.to_owned());
    let Some(hash) = db.get(&BY_GRAIN, &key)? else { return Ok(false) };
    db.transaction(|tx| {
        tx.remove(&GRAIN_TOKENS, &hash)?;
        tx.remove(&BY_GRAIN, &key)
    })?;
    Ok(true)
}
