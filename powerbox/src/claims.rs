//! Powerbox claims: what the picker hands back to the grain page (`gc_<base64url>` of 256
//! random bits), kept in memory by hash, bound to one grain session, valid 10 minutes, single
//! use.

use crate::model::{decode_token, domain_hash, random_bytes};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// The text form of a claim token starts with this.
pub const CLAIM_PREFIX: &str = "gc_";
/// How long a claim can be redeemed after it was issued.
pub const CLAIM_LIFETIME_SECS: u64 = 600;
/// Claims kept at most; beyond it the oldest are forgotten.
pub const MAX_PENDING_CLAIMS: usize = 10_000;

/// Unix seconds, injectable.
pub trait Clock {
    fn now(&self) -> u64;
}

/// The system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn new(now: u64) -> ManualClock {
        ManualClock(AtomicU64::new(now))
    }
    pub fn set(&self, now: u64) {
        self.0.store(now, Ordering::SeqCst)
    }
    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A claim token as handed to the grain page.
#[derive(Clone, PartialEq, Eq)]
pub struct ClaimToken(String);

impl ClaimToken {
    /// `gc_<base64url, no padding>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ClaimToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClaimToken(..)")
    }
}

/// One answer for every claim that cannot be redeemed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this powerbox claim is unknown, used, expired, or belongs to another session: ask the user to choose again")]
pub struct ClaimError;

/// What a redeemed claim gives back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redeemed<T> {
    /// The person who picked.
    pub user: String,
    /// What the picker stored with the claim.
    pub pending: T,
}

struct Pending<T> {
    session_id: String,
    user: String,
    issued: u64,
    pending: T,
}

/// The open claims of one server.
pub struct ClaimBook<T> {
    by_hash: HashMap<[u8; 32], Pending<T>>,
}

impl<T> Default for ClaimBook<T> {
    fn default() -> Self {
        ClaimBook { by_hash: HashMap::new() }
    }
}

fn claim_hash(bytes: &[u8; 32]) -> [u8; 32] {
    domain_hash(b"granary claim\0", bytes)
}

impl<T> ClaimBook<T> {
    pub fn new() -> ClaimBook<T> {
        ClaimBook::default()
    }

    /// A new claim for `session_id`, picked by `user`.
    pub fn issue(&mut self, session_id: &str, user: &str, pending: T, now: u64) -> ClaimToken {
        self.prune(now);
        while self.by_hash.len() >= MAX_PENDING_CLAIMS {
            let oldest = self.by_hash.iter().min_by_key(|(_, p)| p.issued).map(|(k, _)| *k);
            match oldest {
                Some(k) => self.by_hash.remove(&k),
                None => break,
            };
        }
        let bytes = random_bytes();
        self.by_hash.insert(
            claim_hash(&bytes),
            Pending { session_id: session_id.to_owned(), user: user.to_owned(), issued: now, pending },
        );
        ClaimToken(format!("{CLAIM_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Takes the claim `token` names, if it is for `session_id` and younger than 10 minutes.
    /// A claim of another session stays redeemable by its own session.
    pub fn redeem(&mut self, token: &str, session_id: &str, now: u64) -> Result<Redeemed<T>, ClaimError> {
        self.prune(now);
        let bytes = decode_token(token, CLAIM_PREFIX).ok_or(ClaimError)?;
        let hash = claim_hash(&bytes);
        match self.by_hash.get(&hash) {
            Some(p) if p.session_id == session_id => {}
            _ => return Err(ClaimError),
        }
        let p = self.by_hash.remove(&hash).ok_or(ClaimError)?;
        Ok(Redeemed { user: p.user, pending: p.pending })
    }

    /// Claims still redeemable.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// Forgets claims issued `CLAIM_LIFETIME_SECS` or more ago.
    pub fn prune(&mut self, now: u64) {
        self.by_hash.retain(|_, p| now < p.issued.saturating_add(CLAIM_LIFETIME_SECS));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redeems_once_for_its_session() {
        let clock = ManualClock::new(1000);
        let mut book = ClaimBook::new();
        let t = book.issue("s1", "ada", "option-a", clock.now());
        assert!(t.as_str().starts_with("gc_") && t.as_str().len() == 46, "{}", t.as_str());
        assert_eq!(book.redeem(t.as_str(), "s2", clock.now()), Err(ClaimError), "other session");
        clock.advance(CLAIM_LIFETIME_SECS - 1);
        let r = book.redeem(t.as_str(), "s1", clock.now()).unwrap();
        assert_eq!(r, Redeemed { user: "ada".into(), pending: "option-a" });
        assert_eq!(book.redeem(t.as_str(), "s1", clock.now()), Err(ClaimError), "used");
    }

    #[test]
    fn expired_unknown_and_malformed_fail_alike_and_expired_are_pruned() {
        let clock = ManualClock::new(50);
        let mut book = ClaimBook::new();
        let t = book.issue("s1", "ada", 7u32, clock.now());
        let other = book.issue("s1", "ada", 8u32, clock.now() + 300);
        clock.advance(CLAIM_LIFETIME_SECS);
        assert_eq!(book.redeem(t.as_str(), "s1", clock.now()), Err(ClaimError), "expired");
        assert_eq!(book.len(), 1, "the expired claim was pruned, the younger one kept");
        let forged = format!("gc_{}", URL_SAFE_NO_PAD.encode([9u8; 32]));
        for bad in [forged.as_str(), "", "gc_", "gs_x", &t.as_str()[..40]] {
            assert_eq!(book.redeem(bad, "s1", clock.now()), Err(ClaimError), "{bad:?}");
        }
        assert!(ClaimError.to_string().contains("unknown, used, expired, or belongs to another session"));
        assert_eq!(book.redeem(other.as_str(), "s1", clock.now()).unwrap().pending, 8);
        assert!(book.is_empty());
    }

    #[test]
    fn tokens_are_stored_by_hash_only() {
        let mut book = ClaimBook::new();
        let t = book.issue("s", "u", (), 0);
        let raw = URL_SAFE_NO_PAD.decode(&t.as_str()[3..]).unwrap();
        let key: [u8; 32] = raw.clone().try_into().unwrap();
        assert!(!book.by_hash.contains_key(&key), "the raw token is not the key");
        assert!(book.by_hash.contains_key(&claim_hash(&key)));
    }

    #[test]
    fn system_clock_is_now() {
        let now = SystemClock.now();
        assert!(now > 1_700_000_000, "{now}");
    }
}
