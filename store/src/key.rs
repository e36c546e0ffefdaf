//! Keys: typed values that encode to bytes whose byte order is the value order, so that a
//! scan of the engine's sorted byte keys visits typed keys in order.
//!
//! Encodings:
//! - `u8`, `u16`, `u32`, `u64`: fixed-width big-endian.
//! - `i64`: big-endian with the sign bit flipped, so negatives sort first.
//! - `[u8; N]`: the N bytes as they are.
//! - `String`, `Vec<u8>`: the bytes as they are when they are the whole key or the last part
//!   of a tuple; in front of another tuple part, each `0x00` becomes `0x00 0xFF` and the part
//!   ends with `0x00 0x00`, which keeps both the order and the boundary.
//! - `(A, B)`: `A` in its delimited form, then `B`.

use std::marker::PhantomData;

/// A typed key with an order-preserving byte encoding.
pub trait Key: Sized {
    /// The type's name, for error messages.
    const NAME: &'static str;
    /// Append the encoding used when this value is the whole key or its last part.
    fn encode(&self, out: &mut Vec<u8>);
    /// Append the self-delimiting encoding used when more parts follow.
    fn encode_nested(&self, out: &mut Vec<u8>);
    /// Decode a whole key (or last part), consuming all of `bytes`.
    fn decode(bytes: &[u8]) -> Result<Self, String>;
    /// Decode the delimited form from the front of `bytes`, returning the rest.
    fn decode_nested(bytes: &[u8]) -> Result<(Self, &[u8]), String>;

    /// The encoded key as a fresh byte vector.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// What may be passed where a key of type `K` is expected: `K` itself, and borrowed forms
/// that encode identically (`str` and `&str` for `String`, `[u8]` for `Vec<u8>`).
pub trait KeyArg<K> {
    /// Append exactly the bytes that the corresponding `K` would encode to.
    fn encode_arg(&self, out: &mut Vec<u8>);
}

impl<K: Key> KeyArg<K> for K {
    fn encode_arg(&self, out: &mut Vec<u8>) {
        self.encode(out)
    }
}
impl KeyArg<String> for str {
    fn encode_arg(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes())
    }
}
impl KeyArg<String> for &str {
    fn encode_arg(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes())
    }
}
impl KeyArg<Vec<u8>> for [u8] {
    fn encode_arg(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self)
    }
}

/// A prefix of keys of type `K`, for prefix scans.
///
/// - A `str`/`String` is a string prefix of `String` keys; `[u8]`/`Vec<u8>` likewise for byte keys.
/// - For a tuple key `(A, B)`, an `A` selects every key whose first part equals it exactly
///   (so `"ab"` does not select `("abc", 1)`); a `str` works for `(String, B)`.
pub trait PrefixOf<K> {
    /// Append the prefix bytes.
    fn encode_prefix(&self, out: &mut Vec<u8>);
}

impl PrefixOf<String> for str {
    fn encode_prefix(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes())
    }
}
impl PrefixOf<String> for String {
    fn encode_prefix(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes())
    }
}
impl PrefixOf<Vec<u8>> for [u8] {
    fn encode_prefix(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self)
    }
}
impl PrefixOf<Vec<u8>> for Vec<u8> {
    fn encode_prefix(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self)
    }
}
impl<A: Key, B: Key> PrefixOf<(A, B)> for A {
    fn encode_prefix(&self, out: &mut Vec<u8>) {
        self.encode_nested(out)
    }
}
impl<B: Key> PrefixOf<(String, B)> for str {
    fn encode_prefix(&self, out: &mut Vec<u8>) {
        escape(self.as_bytes(), out);
        out.extend_from_slice(&[0, 0]);
    }
}
impl<B: Key> PrefixOf<(Vec<u8>, B)> for [u8] {
    fn encode_prefix(&self, out: &mut Vec<u8>) {
        escape(self, out);
        out.extend_from_slice(&[0, 0]);
    }
}

/// The smallest byte string greater than every string starting with `prefix`, or `None`
/// when there is none (the prefix is empty or all `0xFF`).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

macro_rules! unsigned_key {
    ($($t:ty),*) => {$(
        impl Key for $t {
            const NAME: &'static str = stringify!($t);
            fn encode(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_be_bytes())
            }
            fn encode_nested(&self, out: &mut Vec<u8>) {
                self.encode(out)
            }
            fn decode(bytes: &[u8]) -> Result<Self, String> {
                let arr = bytes.try_into().map_err(|_| {
                    format!("expected {} bytes, found {}", size_of::<$t>(), bytes.len())
                })?;
                Ok(<$t>::from_be_bytes(arr))
            }
            fn decode_nested(bytes: &[u8]) -> Result<(Self, &[u8]), String> {
                let n = size_of::<$t>();
                if bytes.len() < n {
                    return Err(format!("expected {} bytes, found {}", n, bytes.len()));
                }
                Ok((Self::decode(&bytes[..n])?, &bytes[n..]))
            }
        }
    )*};
}
unsigned_key!(u8, u16, u32, u64);

const SIGN: u64 = 1 << 63;

impl Key for i64 {
    const NAME: &'static str = "i64";
    fn encode(&self, out: &mut Vec<u8>) {
        ((*self as u64) ^ SIGN).encode(out)
    }
    fn encode_nested(&self, out: &mut Vec<u8>) {
        self.encode(out)
    }
    fn decode(bytes: &[u8]) -> Result<Self, String> {
        Ok((u64::decode(bytes)? ^ SIGN) as i64)
    }
    fn decode_nested(bytes: &[u8]) -> Result<(Self, &[u8]), String> {
        let (u, rest) = u64::decode_nested(bytes)?;
        Ok(((u ^ SIGN) as i64, rest))
    }
}

impl<const N: usize> Key for [u8; N] {
    const NAME: &'static str = "[u8; N]";
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self)
    }
    fn encode_nested(&self, out: &mut Vec<u8>) {
        self.encode(out)
    }
    fn decode(bytes: &[u8]) -> Result<Self, String> {
        bytes
            .try_into()
            .map_err(|_| format!("expected {N} bytes, found {}", bytes.len()))
    }
    fn decode_nested(bytes: &[u8]) -> Result<(Self, &[u8]), String> {
        if bytes.len() < N {
            return Err(format!("expected {N} bytes, found {}", bytes.len()));
        }
        Ok((Self::decode(&bytes[..N])?, &bytes[N..]))
    }
}

/// Append `bytes` with each `0x00` escaped as `0x00 0xFF` (no terminator).
fn escape(bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
}

/// Split a delimited byte string off the front of `bytes`.
fn unescape(bytes: &[u8]) -> Result<(Vec<u8>, &[u8]), String> {
    let mut value = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1)) {
            (0, Some(0)) => return Ok((value, &bytes[i + 2..])),
            (0, Some(0xFF)) => {
                value.push(0);
                i += 2;
            }
            (0, _) => return Err(format!("bad escape at byte {i}")),
            (b, _) => {
                value.push(b);
                i += 1;
            }
        }
    }
    Err("a key part is missing its terminator".into())
}

impl Key for Vec<u8> {
    const NAME: &'static str = "Vec<u8>";
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self)
    }
    fn encode_nested(&self, out: &mut Vec<u8>) {
        escape(self, out);
        out.extend_from_slice(&[0, 0]);
    }
    fn decode(bytes: &[u8]) -> Result<Self, String> {
        Ok(bytes.to_vec())
    }
    fn decode_nested(bytes: &[u8]) -> Result<(Self, &[u8]), String> {
        unescape(bytes)
    }
}

impl Key for String {
    const NAME: &'static str = "String";
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes())
    }
    fn encode_nested(&self, out: &mut Vec<u8>) {
        escape(self.as_bytes(), out);
        out.extend_from_slice(&[0, 0]);
    }
    fn decode(bytes: &[u8]) -> Result<Self, String> {
        String::from_utf8(bytes.to_vec()).map_err(|e| e.to_string())
    }
    fn decode_nested(bytes: &[u8]) -> Result<(Self, &[u8]), String> {
        let (raw, rest) = unescape(bytes)?;
        Ok((String::from_utf8(raw).map_err(|e| e.to_string())?, rest))
    }
}

impl<A: Key, B: Key> Key for (A, B) {
    const NAME: &'static str = "(A, B) tuple";
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode_nested(out);
        self.1.encode(out);
    }
    fn encode_nested(&self, out: &mut Vec<u8>) {
        self.0.encode_nested(out);
        self.1.encode_nested(out);
    }
    fn decode(bytes: &[u8]) -> Result<Self, String> {
        let (a, rest) = A::decode_nested(bytes)?;
        Ok((a, B::decode(rest)?))
    }
    fn decode_nested(bytes: &[u8]) -> Result<(Self, &[u8]), String> {
        let (a, rest) = A::decode_nested(bytes)?;
        let (b, rest) = B::decode_nested(rest)?;
        Ok(((a, b), rest))
    }
}

/// A typed table: a name, a key type and a value type. Values are stored as JSON
/// (`serde_json`), which keeps the file readable with a hex dump and lets fields be added
/// with `#[serde(default)]` without a migration.
///
/// ```
/// use granary_store::Table;
/// const USERS: Table<String, u32> = Table::new("users");
/// assert_eq!(USERS.name(), "users");
/// ```
pub struct Table<K, V> {
    name: &'static str,
    types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Table<K, V> {
    /// Describe a table. Panics (at compile time in a `const`) if the name is empty or starts
    /// with `__`, which is reserved for the store's own metadata.
    pub const fn new(name: &'static str) -> Self {
        let b = name.as_bytes();
        assert!(!b.is_empty(), "a table name must not be empty");
        assert!(
            !(b.len() >= 2 && b[0] == b'_' && b[1] == b'_'),
            "table names starting with `__` are reserved for the store"
        );
        Table {
            name,
            types: PhantomData,
        }
    }

    /// A table with a reserved name, for the store's own metadata.
    pub(crate) const fn reserved(name: &'static str) -> Self {
        Table {
            name,
            types: PhantomData,
        }
    }

    /// The table's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<K, V> Clone for Table<K, V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K, V> Copy for Table<K, V> {}
impl<K, V> std::fmt::Debug for Table<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Table({})", self.name)
    }
}

#[cfg(test)]
#[path = "key_tests.rs"]
mod tests;
