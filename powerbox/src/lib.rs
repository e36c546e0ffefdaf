//! The capability broker: powerbox descriptors and matching, claim tokens, saved capabilities
//! (SturdyRefs), requirements and revocation membranes, and the built-in drivers
//! (HTTP to one origin, send mail as an address, receive mail).
//!
//! May touch: the capability tables of the store (`grants`), and — for drivers only — the
//! outside network through the SSRF guard.
//! Must never: keep a SturdyRef in the clear (only its hash; the target is sealed under the
//! token), or let a capability outlive the grant it came from.
//!
//! - [`model`]: ids, tokens, targets, owners, requirements, the grant record.
//! - [`seal`]: sealing a grant's target under its token.
//! - [`grants`]: the `grants` table (save, restore, drop, revoke, lists).
//! - [`requirements`]: checking requirements against the shell's [`World`].
//! - [`claims`]: the picker's single-use claim tokens, and the [`Clock`].
//! - [`matching`]: descriptors, queries and the matching rules.
//! - [`membrane`]: revocable forwarding capabilities and identifying them again.
//! - [`drivers`]: the capabilities the server implements (HTTP to one origin, mail).

pub mod claims;
pub mod drivers;
pub mod grants;
pub mod matching;
pub mod membrane;
pub mod model;
pub mod requirements;
pub mod seal;

pub use claims::{ClaimBook, ClaimError, ClaimToken, Clock, ManualClock, Redeemed, SystemClock};
pub use grants::{GrantError, GrantStore, NewGrant, Restored, GRANTS};
pub use matching::{
    decode_query, decode_request, encode_descriptor, http_api_descriptor, http_api_of, mail_address_of, mail_descriptor,
    offer_matches, quality_rank, request_matches, HttpApiRequest, OwnedDescriptor, QueryError, MAIL_SENDER_ID,
    WEB_SESSION_ID,
};
pub use membrane::{LiveGrant, LiveKey, MembraneRegistry};
pub use model::{BadSturdyRef, Grant, GrantId, Owner, OwnerMatch, Requirement, SturdyRef, Target};
pub use requirements::{check, FakeWorld, Unmet, World};
