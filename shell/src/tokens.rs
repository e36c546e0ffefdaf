//! Personal access tokens for the JSON API: `gt_` + 64 hex digits, shown once, stored as
//! SHA-256; revocable from the account page.

use crate::accounts::{now, random_hex, token_key, User, USERS};
use granary_store::{Db, Table};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApiToken {
    /// Public name (first 16 hex digits of the hash), for the account page.
    pub id: String,
    pub user_id: String,
    pub label: String,
    pub created: u64,
}

/// token hash → token.
pub const TOKENS: Table<String, ApiToken> = Table::new("api_tokens");
/// (user id, token id) → token hash.
pub const USER_TOKENS: Table<(String, String), String> = Table::new("api_tokens_by_user");

pub const PREFIX: &str = "gt_";

/// Creates a token for `user`; returns the secret (shown once).
pub fn create(db: &Db, user: &User, label: &str) -> Result<(String, ApiToken), granary_store::Error> {
    let secret = format!("{PREFIX}{}", random_hex(32));
    let hash = token_key(&secret);
    let t = ApiToken { id: hash[..16].to_owned(), user_id: user.id.clone(), label: label.trim().chars().take(100).collect(), created: now() };
    db.transaction(|tx| {
        tx.insert(&TOKENS, &hash, &t)?;
        tx.insert(&USER_TOKENS, &(user.id.clone(), t.id.clone()), &hash)
    })?;
    Ok((secret, t))
}

/// The user a bearer secret belongs to: `None` for unknown or revoked tokens and for
/// suspended users.
pub fn authenticate(db: &Db, secret: &str) -> Result<Option<User>, granary_store::Error> {
    let valid = secret.strip_prefix(PREFIX).is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if !valid {
        return Ok(None);
    }
    let Some(t) = db.get(&TOKENS, &token_key(secret))? else { return Ok(None) };
    Ok(db.get(&USERS, &t.user_id)?.filter(|u| !u.suspended))
}

pub fn list(db: &Db, user_id: &str) -> Result<Vec<ApiToken>, granary_store::Error> {
    let mut out = Vec::new();
    for e in db.scan_prefix(&USER_TOKENS, user_id)? {
        let (_, hash) = e?;
        if let Some(t) = db.get(&TOKENS, &hash)? {
            out.push(t);
        }
    }
    Ok(out)
}

/// Revokes one of `user_id`'s tokens; false if they have no such token.
pub fn revoke(db: &Db, user_id: &str, token_id: &str) -> Result<bool, granary_store::Error> {
    let key = (user_id.to_owned(), token_id.to_owned());
    let Some(hash) = db.get(&USER_TOKENS, &key)? else { return Ok(false) };
    db.transaction(|tx| {
        tx.remove(&TOKENS, &hash)?;
        tx.remove(&USER_TOKENS, &key)
    })?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_authenticate_until_revoked() {
        let db = Db::memory(&[]).unwrap();
        let u = crate::accounts::create_user(&db, "ada", "Ada", "h".into(), false).unwrap();
        let (secret, t) = create(&db, &u, "laptop").unwrap();
        assert!(secret.starts_with("gt_") && secret.len() == 67);
        assert_eq!(authenticate(&db, &secret).unwrap().unwrap().id, u.id);
        assert!(authenticate(&db, "gt_forged").unwrap().is_none());
        assert_eq!(list(&db, &u.id).unwrap().len(), 1);
        assert!(!revoke(&db, "someone-else", &t.id).unwrap());
        assert!(revoke(&db, &u.id, &t.id).unwrap());
        assert!(authenticate(&db, &secret).unwrap().is_none());
    }
}
