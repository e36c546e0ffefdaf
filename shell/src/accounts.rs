//! Accounts, login sessions and admin setup tokens, as stored in the server's database.
//! Secrets (passwords, session and setup tokens) are stored only as hashes.

use granary_store::{Db, Table, Tx};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::{SystemTime, UNIX_EPOCH};

/// A user account.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub username: String,
    pub display_name: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    pub admin: bool,
    pub suspended: bool,
    pub created: u64,
    /// The mail address the user proved they receive mail at (`email_verify`), if any.
    #[serde(default)]
    pub email: Option<String>,
}

/// A signed-in browser, keyed by SHA-256 of its cookie token.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LoginSession {
    pub user_id: String,
    pub created: u64,
    pub expires: u64,
    /// Must accompany every form this session posts.
    pub csrf: String,
}

/// A one-time admin setup token, keyed by its SHA-256.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SetupToken {
    pub expires: u64,
}

pub const USERS: Table<String, User> = Table::new("users");
/// username → user id.
pub const USERNAMES: Table<String, String> = Table::new("usernames");
/// (user id, token hash) → (), to end every session of a user at once.
pub const USER_SESSIONS: Table<(String, String), ()> = Table::new("user_sessions");
pub const SESSIONS: Table<String, LoginSession> = Table::new("sessions");
pub const SETUP_TOKENS: Table<String, SetupToken> = Table::new("setup_tokens");

/// How long a login session lasts (`granary serve --session-lifetime`; default 30 days).
pub static SESSION_SECONDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(30 * 24 * 3600);

pub fn session_seconds() -> u64 {
    SESSION_SECONDS.load(std::sync::atomic::Ordering::Relaxed)
}
pub const SETUP_TOKEN_SECONDS: u64 = 3600;

/// Why an account operation failed; the message is shown to the user.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("usernames are 1 to 32 characters: lowercase letters, digits, `-` and `_`")]
    BadUsername,
    #[error("the username `{0}` is taken; choose another")]
    Taken(String),
    #[error("passwords must be at least 10 characters")]
    WeakPassword,
    #[error("the display name must be 1 to 100 characters")]
    BadDisplayName,
    #[error(transparent)]
    Store(#[from] granary_store::Error),
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// `n` random bytes from the operating system, as hex.
pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).expect("the operating system's random source failed");
    hex(&b)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The key a secret token is stored under.
pub fn token_key(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Normalizes and checks a username.
pub fn normalize_username(name: &str) -> Result<String, AccountError> {
    let name = name.trim().to_ascii_lowercase();
    let ok = (1..=32).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(name)
    } else {
        Err(AccountError::BadUsername)
    }
}

/// Hashes a password with Argon2id (slow on purpose: call from a blocking thread).
pub fn hash_password(password: &str) -> String {
    use argon2::password_hash::PasswordHasher;
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .expect("Argon2 with default parameters cannot fail")
        .to_string()
}

/// Checks a password against a PHC string (slow on purpose: call from a blocking thread).
pub fn verify_password(password: &str, phc: &str) -> bool {
    use argon2::password_hash::{phc::PasswordHash, PasswordVerifier};
    PasswordHash::new(phc).is_ok_and(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// A hash no password matches, verified for unknown usernames so that a login takes as long
/// whether or not the account exists.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&random_hex(16)))
}

/// Creates a user. The password hash is computed by the caller (on a blocking thread).
/// (Only the tests call it: the server creates users through setup tokens and invitations.)
#[cfg(test)]
pub fn create_user(
    db: &Db,
    username: &str,
    display_name: &str,
    password_hash: String,
    admin: bool,
) -> Result<User, AccountError> {
    let user = new_user(username, display_name, password_hash, admin)?;
    db.transaction(|tx| insert_user(tx, &user))?;
    Ok(user)
}

/// Creates a development test user (`--dev-accounts`); not an administrator.
pub fn create_dev_user(db: &Db, username: &str, display_name: &str, password_hash: String) -> Result<User, AccountError> {
    let user = new_user(username, display_name, password_hash, false)?;
    db.transaction(|tx| insert_user(tx, &user))?;
    Ok(user)
}

fn new_user(username: &str, display_name: &str, password_hash: String, admin: bool) -> Result<User, AccountError> {
    let username = normalize_username(username)?;
    let display_name = display_name.trim();
    if display_name.is_empty() || display_name.chars().count() > 100 {
        return Err(AccountError::BadDisplayName);
    }
    Ok(User {
        id: random_hex(16),
        username,
        display_name: display_name.to_owned(),
        password_hash,
        admin,
        suspended: false,
        created: now(),
        email: None,
    })
}

fn insert_user(tx: &mut Tx<'_>, user: &User) -> Result<(), AccountError> {
    if tx.get(&USERNAMES, &user.username)?.is_some() {
        return Err(AccountError::Taken(user.username.clone()));
    }
    tx.insert(&USERNAMES, &user.username, &user.id)?;
    tx.insert(&USERS, &user.id, user)?;
    Ok(())
}

pub fn user_by_name(db: &Db, username: &str) -> Result<Option<User>, granary_store::Error> {
    let Ok(name) = normalize_username(username) else { return Ok(None) };
    match db.get(&USERNAMES, &name)? {
        Some(id) => db.get(&USERS, &id),
        None => Ok(None),
    }
}

pub fn count_users(db: &Db) -> Result<(u32, u32), granary_store::Error> {
    let (mut users, mut admins) = (0, 0);
    for entry in db.iter(&USERS)? {
        let (_, u) = entry?;
        users += 1;
        admins += u32::from(u.admin && !u.suspended);
    }
    Ok((users, admins))
}

/// Starts a session for `user`; returns the cookie token (only its hash is stored).
pub fn start_session(db: &Db, user: &User) -> Result<(String, LoginSession), granary_store::Error> {
    let token = random_hex(32);
    let key = token_key(&token);
    let session = LoginSession {
        user_id: user.id.clone(),
        created: now(),
        expires: now() + session_seconds(),
        csrf: random_hex(16),
    };
    db.transaction(|tx| {
        tx.insert(&SESSIONS, &key, &session)?;
        tx.insert(&USER_SESSIONS, &(user.id.clone(), key.clone()), &())
    })?;
    Ok((token, session))
}

/// The live session and its user for a cookie token: `None` if unknown, expired, or the
/// user is suspended or gone.
pub fn session_user(db: &Db, token: &str) -> Result<Option<(LoginSession, User)>, granary_store::Error> {
    let Some(session) = db.get(&SESSIONS, &token_key(token))? else { return Ok(None) };
    if session.expires <= now() {
        end_session(db, token)?;
        return Ok(None);
    }
    match db.get(&USERS, &session.user_id)? {
        Some(user) if !user.suspended => Ok(Some((session, user))),
        _ => Ok(None),
    }
}

pub fn end_session(db: &Db, token: &str) -> Result<(), granary_store::Error> {
    let key = token_key(token);
    db.transaction(|tx| {
        if let Some(s) = tx.get(&SESSIONS, &key)? {
            tx.remove(&USER_SESSIONS, &(s.user_id, key.clone()))?;
        }
        tx.remove(&SESSIONS, &key)
    })
}

/// An invitation to create an account, keyed by the SHA-256 of its token.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Invite {
    pub created_by: String,
    pub expires: u64,
}

pub const INVITES: Table<String, Invite> = Table::new("invites");
pub const INVITE_SECONDS: u64 = 7 * 24 * 3600;

/// Issues a one-time invitation; returns the token (only its hash is stored).
pub fn new_invite(db: &Db, by: &str) -> Result<String, granary_store::Error> {
    let token = random_hex(32);
    db.insert(&INVITES, &token_key(&token), &Invite { created_by: by.to_owned(), expires: now() + INVITE_SECONDS })?;
    Ok(token)
}

pub fn invite_valid(db: &Db, token: &str) -> Result<bool, granary_store::Error> {
    Ok(db.get(&INVITES, &token_key(token))?.is_some_and(|i| i.expires > now()))
}

/// Creates a (non-admin) user with an invitation, consuming it in the same transaction.
pub fn create_user_with_invite(db: &Db, token: &str, username: &str, display_name: &str, password_hash: String) -> Result<Option<User>, AccountError> {
    let key = token_key(token);
    let user = new_user(username, display_name, password_hash, false)?;
    db.transaction(|tx| {
        match tx.get(&INVITES, &key)? {
            Some(i) if i.expires > now() => {}
            _ => return Ok(None),
        }
        insert_user(tx, &user)?;
        tx.remove(&INVITES, &key)?;
        Ok(Some(user))
    })
}

/// Suspends or reinstates a user; suspending ends every login session at once.
pub fn set_suspended(db: &Db, user_id: &str, suspended: bool) -> Result<Option<User>, granary_store::Error> {
    db.transaction(|tx| {
        let Some(mut u) = tx.get(&USERS, user_id)? else { return Ok(None) };
        u.suspended = suspended;
        tx.insert(&USERS, user_id, &u)?;
        Ok(Some(u))
    })
    .and_then(|u| {
        if suspended {
            let keys: Vec<(String, String)> = db.scan_prefix(&USER_SESSIONS, user_id)?.map(|e| e.map(|(k, ())| k)).collect::<Result<_, _>>()?;
            db.transaction(|tx| {
                for (uid, key) in &keys {
                    tx.remove(&SESSIONS, key)?;
                    tx.remove(&USER_SESSIONS, &(uid.clone(), key.clone()))?;
                }
                Ok::<_, granary_store::Error>(())
            })?;
        }
        Ok(u)
    })
}

/// Issues a one-time admin setup token; returns the token (only its hash is stored).
pub fn new_setup_token(db: &Db) -> Result<String, granary_store::Error> {
    let token = random_hex(32);
    db.insert(&SETUP_TOKENS, &token_key(&token), &SetupToken { expires: now() + SETUP_TOKEN_SECONDS })?;
    Ok(token)
}

/// True if `token` is a live setup token.
pub fn setup_token_valid(db: &Db, token: &str) -> Result<bool, granary_store::Error> {
    Ok(db.get(&SETUP_TOKENS, &token_key(token))?.is_some_and(|t| t.expires > now()))
}

/// Creates an admin with a setup token, consuming the token in the same transaction.
/// `Ok(None)` if the token is unknown, used or expired.
pub fn create_admin_with_token(
    db: &Db,
    token: &str,
    username: &str,
    display_name: &str,
    password_hash: String,
) -> Result<Option<User>, AccountError> {
    let key = token_key(token);
    let user = new_user(username, display_name, password_hash, true)?;
    db.transaction(|tx| {
        match tx.get(&SETUP_TOKENS, &key)? {
            Some(t) if t.expires > now() => {}
            _ => return Ok(None),
        }
        insert_user(tx, &user)?;
        tx.remove(&SETUP_TOKENS, &key)?;
        Ok(Some(user))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_normalized_and_unique() {
        let db = Db::memory(&[]).unwrap();
        assert_eq!(normalize_username(" Ada_1 ").unwrap(), "ada_1");
        assert!(normalize_username("a b").is_err() && normalize_username("").is_err());
        create_user(&db, "Ada", "Ada L.", "h".into(), false).unwrap();
        assert!(matches!(create_user(&db, "ada", "Other", "h".into(), false), Err(AccountError::Taken(_))));
        assert_eq!(user_by_name(&db, "ADA").unwrap().unwrap().display_name, "Ada L.");
    }

    #[test]
    fn sessions_end_and_stop_for_suspended_users() {
        let db = Db::memory(&[]).unwrap();
        let mut u = create_user(&db, "bob", "Bob", "h".into(), false).unwrap();
        let (token, _) = start_session(&db, &u).unwrap();
        assert!(session_user(&db, &token).unwrap().is_some());
        assert!(session_user(&db, "forged").unwrap().is_none());
        u.suspended = true;
        db.insert(&USERS, &u.id, &u).unwrap();
        assert!(session_user(&db, &token).unwrap().is_none());
        end_session(&db, &token).unwrap();
        assert!(db.get(&SESSIONS, &token_key(&token)).unwrap().is_none());
    }

    #[test]
    fn expired_sessions_are_nobody_and_are_removed() {
        let db = Db::memory(&[]).unwrap();
        let u = create_user(&db, "old", "Old", "h".into(), false).unwrap();
        let (token, mut s) = start_session(&db, &u).unwrap();
        s.expires = now() - 1;
        db.insert(&SESSIONS, &token_key(&token), &s).unwrap();
        assert!(session_user(&db, &token).unwrap().is_none());
        assert!(db.get(&SESSIONS, &token_key(&token)).unwrap().is_none(), "the expired record is deleted");
    }

    #[test]
    fn passwords_verify_only_against_their_hash() {
        let h = hash_password("correct horse battery");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("anything", dummy_hash()));
    }

    #[test]
    fn setup_tokens_are_one_time() {
        let db = Db::memory(&[]).unwrap();
        let t = new_setup_token(&db).unwrap();
        assert!(setup_token_valid(&db, &t).unwrap());
        assert!(create_admin_with_token(&db, &t, "root", "Admin", "h".into()).unwrap().is_some());
        assert!(!setup_token_valid(&db, &t).unwrap());
        assert!(create_admin_with_token(&db, &t, "root2", "Admin", "h".into()).unwrap().is_none());
    }
}
