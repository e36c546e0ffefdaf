//! The capability broker: powerbox descriptors and matching, claim tokens, saved capabilities
//! (SturdyRefs), requirements and revocation membranes, and the built-in drivers
//! (HTTP to one origin, send mail as an address, receive mail).
//!
//! May touch: the capability tables of the store, and — for drivers only — the outside network
//! through the SSRF guard.
//! Must never: keep a SturdyRef in the clear (only its hash), or let a capability outlive the
//! grant it came from.
//!
//! Status: specified by the "Powerbox" issue and not built yet.
pub mod drivers;
