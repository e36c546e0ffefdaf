//! Identifiers of apps and packages, and the base32 rendering they are shown in.

use std::fmt;
use std::str::FromStr;

/// The base32 alphabet of app ids: digits and lowercase letters without the ambiguous
/// `b`, `i`, `l`, `o`. Decoding is case-insensitive.
pub const BASE32_ALPHABET: &[u8; 32] = b"0123456789acdefghjkmnpqrstuvwxyz";

/// Renders bytes as base32 (5 bits a character, most significant bit first, no padding).
pub fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(BASE32_ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(BASE32_ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Decodes [`base32_encode`] output, accepting upper case. Returns `None` on a character
/// outside the alphabet or non-zero padding bits.
pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let c = c.to_ascii_lowercase();
        let v = BASE32_ALPHABET.iter().position(|&a| a == c)? as u32;
        acc = (acc << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
        acc &= (1 << bits) - 1;
    }
    if acc != 0 {
        return None;
    }
    Some(out)
}

/// An app's identity: the Ed25519 public key that signs its packages, shown as 52 characters
/// of base32.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppId(pub [u8; 32]);

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&base32_encode(&self.0))
    }
}

impl fmt::Debug for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AppId({self})")
    }
}

/// Why a text is not an app id.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not an app id: expected 52 characters from `0123456789acdefghjkmnpqrstuvwxyz` (run `granary keygen` to make one)")]
pub struct BadAppId(pub String);

impl FromStr for AppId {
    type Err = BadAppId;
    fn from_str(s: &str) -> Result<Self, BadAppId> {
        if s.len() != 52 {
            return Err(BadAppId(s.to_owned()));
        }
        let bytes = base32_decode(s).ok_or_else(|| BadAppId(s.to_owned()))?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| BadAppId(s.to_owned()))?;
        Ok(AppId(key))
    }
}

/// A package's identity: the first 16 bytes of the SHA-256 of the whole `.gpk` file, in hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackageId(pub [u8; 16]);

impl fmt::Display for PackageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for PackageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PackageId({self})")
    }
}

impl FromStr for PackageId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a package id: expected 32 hex digits");
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let mut out = [0u8; 16];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(PackageId(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_id_is_52_chars_and_round_trips_case_insensitively() {
        let id = AppId([0xa5; 32]);
        let text = id.to_string();
        assert_eq!(text.len(), 52);
        assert!(text.bytes().all(|c| BASE32_ALPHABET.contains(&c)));
        assert_eq!(text.parse::<AppId>().unwrap(), id);
        assert_eq!(text.to_uppercase().parse::<AppId>().unwrap(), id);
    }

    #[test]
    fn ambiguous_letters_and_wrong_lengths_are_refused() {
        let good = AppId([7; 32]).to_string();
        for bad in [&good[..51], "b".repeat(52).as_str(), "l".repeat(52).as_str()] {
            assert!(bad.parse::<AppId>().is_err(), "{bad}");
        }
        // The last character carries 4 padding bits that must be zero.
        let mut last_padded = good.clone();
        last_padded.pop();
        last_padded.push('z');
        assert!(last_padded.parse::<AppId>().is_err());
    }

    #[test]
    fn base32_known_vector() {
        assert_eq!(base32_encode(&[0, 0, 0, 0, 0]), "00000000");
        assert_eq!(base32_encode(&[0xff; 5]), "zzzzzzzz");
        assert_eq!(base32_decode("zzzzzzzz").unwrap(), vec![0xff; 5]);
    }

    #[test]
    fn package_id_hex_round_trip() {
        let id = PackageId([0x01, 0xab, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff]);
        assert_eq!(id.to_string(), "01ab00000000000000000000000000ff");
        assert_eq!(id.to_string().parse::<PackageId>().unwrap(), id);
        assert!("xyz".parse::<PackageId>().is_err());
    }
}
