//! Sealing a grant's [`Target`] so the database alone cannot use or read it: ChaCha20-Poly1305
//! under SHA-256(`"granary grant key\0"` ‖ token), the grant id as associated data, a random
//! 96-bit nonce stored in front of the ciphertext.

use crate::model::{domain_hash, GrantId, SturdyRef, Target};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

const NONCE_LEN: usize = 12;

/// The sealed target did not open: wrong token, another grant's record, or damaged bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("this saved capability's target cannot be opened with that token (wrong token or damaged record): ask the user to grant it again")]
pub struct UnsealError;

fn cipher(token: &SturdyRef) -> ChaCha20Poly1305 {
    let key = domain_hash(b"granary grant key\0", token.as_bytes());
    ChaCha20Poly1305::new(&Key::from(key))
}

/// nonce ‖ ciphertext+tag of `target` as JSON.
pub fn seal(token: &SturdyRef, id: &GrantId, target: &Target) -> Vec<u8> {
    let plain = serde_json::to_vec(target).expect("a Target always serializes");
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).expect("the operating system's random source failed");
    let sealed = cipher(token)
        .encrypt(&Nonce::from(nonce), Payload { msg: &plain, aad: id.as_str().as_bytes() })
        .expect("ChaCha20-Poly1305 encryption of a small message cannot fail");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    out
}

/// Opens what [`seal`] made with the same token and grant id.
pub fn unseal(token: &SturdyRef, id: &GrantId, sealed: &[u8]) -> Result<Target, UnsealError> {
    if sealed.len() < NONCE_LEN {
        return Err(UnsealError);
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_from(nonce).map_err(|_| UnsealError)?;
    let plain = cipher(token)
        .decrypt(&nonce, Payload { msg: body, aad: id.as_str().as_bytes() })
        .map_err(|_| UnsealError)?;
    serde_json::from_slice(&plain).map_err(|_| UnsealError)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target::HttpOrigin { origin: "https://api.example.com".into(), path_prefix: "/v1/".into() }
    }

    #[test]
    fn seals_and_opens_with_the_token_only() {
        let token = SturdyRef::generate();
        let id = token.grant_id();
        let sealed = seal(&token, &id, &target());
        assert_eq!(unseal(&token, &id, &sealed), Ok(target()));
        // The record holds neither the origin nor anything JSON-looking.
        let as_text = String::from_utf8_lossy(&sealed);
        assert!(!as_text.contains("example") && !as_text.contains("HttpOrigin"), "{as_text}");
        // Two seals of the same target differ (fresh nonce).
        assert_ne!(seal(&token, &id, &target()), sealed);
    }

    #[test]
    fn a_grain_object_target_round_trips_with_its_descriptor_bytes() {
        let token = SturdyRef::generate();
        let id = token.grant_id();
        let object = Target::GrainObject {
            grain: "g-provider".into(),
            interface_id: 0xa238_4a22_bc95_e238,
            descriptor: vec![0x10, 0x01, 0x00, 0xff, 0x38, 0xe2],
            permissions: vec![true, false],
        };
        let sealed = seal(&token, &id, &object);
        assert_eq!(unseal(&token, &id, &sealed), Ok(object));
        assert!(!String::from_utf8_lossy(&sealed).contains("g-provider"));
    }

    #[test]
    fn wrong_token_wrong_id_or_damage_fail() {
        let token = SturdyRef::generate();
        let id = token.grant_id();
        let sealed = seal(&token, &id, &target());
        assert_eq!(unseal(&SturdyRef::generate(), &id, &sealed), Err(UnsealError));
        let other = SturdyRef::generate().grant_id();
        assert_eq!(unseal(&token, &other, &sealed), Err(UnsealError), "moved to another record");
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(unseal(&token, &id, &flipped), Err(UnsealError));
        assert_eq!(unseal(&token, &id, &sealed[..5]), Err(UnsealError));
    }

    #[test]
    fn the_record_alone_cannot_recover_the_target() {
        // All the database has: the grant id (hash of the token) and the sealed bytes. Using the
        // id, or the id's bytes, in place of the token opens nothing.
        let token = SturdyRef::generate();
        let id = token.grant_id();
        let sealed = seal(&token, &id, &target());
        let id_bytes: Vec<u8> = (0..32).map(|i| u8::from_str_radix(&id.0[2 * i..2 * i + 2], 16).unwrap()).collect();
        let as_token = SturdyRef::from_bytes(id_bytes.try_into().unwrap());
        assert_eq!(unseal(&as_token, &id, &sealed), Err(UnsealError));
        let key_of_nothing = SturdyRef::from_bytes([0; 32]);
        assert_eq!(unseal(&key_of_nothing, &id, &sealed), Err(UnsealError));
    }
}
