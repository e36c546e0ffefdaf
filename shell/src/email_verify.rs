//! Verified mail addresses of accounts: a person enters an address on their account page, the
//! server mails a one-time link through the administrator's relay, and opening it (signed in as
//! the same person, within a day) makes it their verified address. Only a verified address
//! can be granted to a grain as "send mail as" (SPEC.md, "Drivers").

use crate::accounts::{now, random_hex, token_key, USERS};
use granary_store::{Db, Table};
use serde::{Deserialize, Serialize};

/// How long a verification link works.
pub const LINK_SECONDS: u64 = 24 * 3600;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct EmailCheck {
    pub user: String,
    pub email: String,
    pub expires: u64,
}

/// link token hash → pending check.
pub const EMAIL_CHECKS: Table<String, EmailCheck> = Table::new("email_checks");

/// The address, lowercased and trimmed, if it is plausible.
pub fn normalize(email: &str) -> Option<String> {
    let e = email.trim().to_ascii_lowercase();
    granary_powerbox::drivers::mail_send::plausible_address(&e).then_some(e)
}

/// Records a pending check of `email` for `user`; returns the link's secret.
pub fn start(db: &Db, user: &str, email: &str) -> Result<String, granary_store::Error> {
    let secret = random_hex(32);
    db.insert(&EMAIL_CHECKS, &token_key(&secret), &EmailCheck { user: user.to_owned(), email: email.to_owned(), expires: now() + LINK_SECONDS })?;
    Ok(secret)
}

/// Why a link did not verify an address.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("This link is unknown, used or expired. Enter your address again on your account page to get a new one.")]
    Unknown,
    #[error("This link was sent for another account. Sign in as the account that asked for it.")]
    OtherUser,
    #[error("The server's database failed; try again.")]
    Store,
}

/// Uses the link `secret` as `user`: on success the address becomes theirs (verified).
pub fn confirm(db: &Db, user: &str, secret: &str) -> Result<String, VerifyError> {
    let key = token_key(secret);
    db.transaction(|tx| {
        let Some(check) = tx.get(&EMAIL_CHECKS, &key)? else { return Ok(Err(VerifyError::Unknown)) };
        if check.expires <= now() {
            tx.remove(&EMAIL_CHECKS, &key)?;
            return Ok(Err(VerifyError::Unknown));
        }
        if check.user != user {
            return Ok(Err(VerifyError::OtherUser));
        }
        let Some(mut u) = tx.get(&USERS, user)? else { return Ok(Err(VerifyError::Unknown)) };
        u.email = Some(check.email.clone());
        tx.insert(&USERS, user, &u)?;
        tx.remove(&EMAIL_CHECKS, &key)?;
        Ok(Ok(check.email))
    })
    .map_err(|_: granary_store::Error| VerifyError::Store)?
}

/// Forgets the user's verified address (grants of it end: their requirement fails).
pub fn remove(db: &Db, user: &str) -> Result<(), granary_store::Error> {
    db.transaction(|tx| {
        if let Some(mut u) = tx.get(&USERS, user)? {
            u.email = None;
            tx.insert(&USERS, user, &u)?;
        }
        Ok(())
    })
}
