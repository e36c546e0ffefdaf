//! What a saved capability is: its id, its secret token, what it reaches ([`Target`]), who may
//! restore it ([`Owner`]) and what must stay true for it to work ([`Requirement`]).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// The text form of a SturdyRef token starts with this.
pub const STURDY_REF_PREFIX: &str = "gs_";

/// A SturdyRef token: 32 random bytes, handed to the owner once and never stored.
#[derive(Clone, PartialEq, Eq)]
pub struct SturdyRef([u8; 32]);

/// A SturdyRef text that is not `gs_` followed by 43 base64url characters.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a saved-capability token: expected \"gs_\" followed by 43 base64url characters, as returned by save")]
pub struct BadSturdyRef;

impl SturdyRef {
    /// A fresh token from the operating system's random source.
    pub fn generate() -> SturdyRef {
        SturdyRef(random_bytes())
    }

    /// The raw token bytes (for hashing and key derivation).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Wraps raw bytes (tests and callers that already hold the bytes).
    pub fn from_bytes(bytes: [u8; 32]) -> SturdyRef {
        SturdyRef(bytes)
    }

    /// Parses `gs_<base64url>`.
    pub fn parse(text: &str) -> Result<SturdyRef, BadSturdyRef> {
        decode_token(text, STURDY_REF_PREFIX).map(SturdyRef).ok_or(BadSturdyRef)
    }

    /// `gs_<base64url, no padding>`: the only form a token is shown in.
    pub fn to_text(&self) -> String {
        format!("{STURDY_REF_PREFIX}{}", URL_SAFE_NO_PAD.encode(self.0))
    }

    /// The id of the grant this token opens.
    pub fn grant_id(&self) -> GrantId {
        GrantId::of(self)
    }
}

impl fmt::Debug for SturdyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret, not even in a panic message.
        write!(f, "SturdyRef(grant {})", self.grant_id())
    }
}

/// 32 bytes from the operating system's random source.
pub(crate) fn random_bytes() -> [u8; 32] {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the operating system's random source failed");
    b
}

/// `prefix` + exactly 32 bytes of base64url without padding, or `None`.
pub(crate) fn decode_token(text: &str, prefix: &str) -> Option<[u8; 32]> {
    let body = text.strip_prefix(prefix)?;
    if body.len() != 43 {
        return None;
    }
    URL_SAFE_NO_PAD.decode(body).ok()?.try_into().ok()
}

/// SHA-256 of `domain` ‖ `bytes`.
pub(crate) fn domain_hash(domain: &[u8], bytes: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(domain);
    h.update(bytes);
    h.finalize().into()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A grant's id: hex of SHA-256(`"granary grant id\0"` ‖ token). Public (it keys the
/// `grants` table and names the grant on pages); it opens nothing by itself.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GrantId(pub String);

impl GrantId {
    pub fn of(token: &SturdyRef) -> GrantId {
        GrantId(hex(&domain_hash(b"granary grant id\0", token.as_bytes())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GrantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a capability reaches. Kept sealed in the store (see `seal`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// The HTTP driver: requests to `origin` under `path_prefix`.
    HttpOrigin { origin: String, path_prefix: String },
    /// The send-mail driver, as `address`.
    SendMail { address: String },
    /// An HTTP API of another grain: an `api` WebSession of `grain` with `permissions`.
    GrainApi { grain: String, api: String, path_prefix: String, permissions: Vec<bool> },
    /// A raw Cap'n Proto interface `grain`'s app provides (`[[powerbox.provides]] interface`),
    /// made by its `MainView.provide(interface_id, descriptor, chooser, permissions)`.
    /// `descriptor` is the packed `PowerboxDescriptor` message the grant was made for.
    GrainObject { grain: String, interface_id: u64, descriptor: Vec<u8>, permissions: Vec<bool> },
}

/// Who may restore a grant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Owner {
    /// Only this grain, through its supervisor; `label` is what the app called it.
    Grain { grain: String, label: String },
    /// A person (from the shell).
    User { user: String },
    /// A holder of this API token (by token id).
    ApiToken { token: String },
}

impl Owner {
    /// Whether `who` is this owner (a grain's label does not matter).
    pub fn is(&self, who: &OwnerMatch) -> bool {
        match (self, who) {
            (Owner::Grain { grain, .. }, OwnerMatch::Grain(g)) => grain == g,
            (Owner::User { user }, OwnerMatch::User(u)) => user == u,
            (Owner::ApiToken { token }, OwnerMatch::ApiToken(t)) => token == t,
            _ => false,
        }
    }
}

/// Who is asking to restore or drop a grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnerMatch {
    Grain(String),
    User(String),
    ApiToken(String),
}

/// Something that must stay true for a grant (and every live capability from it) to work.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Requirement {
    /// `user` exists, is not suspended and holds at least `permissions` on `grain`.
    UserHasPermissions { user: String, grain: String, permissions: Vec<bool> },
    /// `user` is an administrator.
    UserIsAdmin { user: String },
    /// The API token with this id still exists.
    TokenValid { token: String },
    /// `user` still has `address` as their verified mail address (a "send mail as" grant).
    UserOwnsAddress { user: String, address: String },
}

/// A saved capability as stored under its [`GrantId`] in the `grants` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub id: GrantId,
    pub owner: Owner,
    /// The [`Target`] as JSON, sealed under a key only the token gives (see `seal`).
    pub sealed_target: Vec<u8>,
    /// "may send HTTP requests to `https://api.example.com`", kept in clear for pages.
    pub display: String,
    pub requirements: Vec<Requirement>,
    pub parent: Option<GrantId>,
    /// The person who granted it, if one did.
    pub granted_by: Option<String>,
    /// Unix seconds.
    pub created: u64,
    pub expires: Option<u64>,
    pub last_used: Option<u64>,
    pub revoked: bool,
}

impl Grant {
    /// Whether it can no longer be restored by itself (ancestors aside).
    pub fn is_dead(&self, now: u64) -> bool {
        self.revoked || self.expires.is_some_and(|e| now >= e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sturdy_ref_text_round_trips_and_rejects_malformed() {
        let t = SturdyRef::generate();
        let text = t.to_text();
        assert!(text.starts_with("gs_") && text.len() == 46, "{text}");
        assert_eq!(SturdyRef::parse(&text).unwrap(), t);
        assert_ne!(SturdyRef::generate(), t, "two tokens must differ");
        for bad in ["", "gs_", "gc_AAAA", &text[..45], &format!("{text}A"), &text.replace("gs_", "gt_"), "gs_*******************************************"] {
            assert_eq!(SturdyRef::parse(bad), Err(BadSturdyRef), "{bad:?}");
        }
        assert!(BadSturdyRef.to_string().contains("as returned by save"));
        assert!(!format!("{t:?}").contains(&text[3..]), "Debug must not print the secret");
    }

    #[test]
    fn grant_id_is_domain_separated_sha256_hex() {
        let t = SturdyRef::from_bytes([7; 32]);
        let mut h = Sha256::new();
        h.update(b"granary grant id\0");
        h.update([7u8; 32]);
        let expected: [u8; 32] = h.finalize().into();
        assert_eq!(t.grant_id().0, hex(&expected));
        assert_eq!(t.grant_id().0.len(), 64);
        // Not the plain hash of the token.
        assert_ne!(t.grant_id().0, hex(&<[u8; 32]>::from(Sha256::digest([7u8; 32]))));
    }

    #[test]
    fn owner_matches_only_its_own_kind_and_id() {
        let g = Owner::Grain { grain: "g1".into(), label: "x".into() };
        assert!(g.is(&OwnerMatch::Grain("g1".into())));
        assert!(!g.is(&OwnerMatch::Grain("g2".into())));
        assert!(!g.is(&OwnerMatch::User("g1".into())));
        assert!(Owner::User { user: "u".into() }.is(&OwnerMatch::User("u".into())));
        assert!(!Owner::ApiToken { token: "t".into() }.is(&OwnerMatch::User("t".into())));
    }
}
