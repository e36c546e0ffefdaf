//! The bridge's hold on the platform: the supervisor's `GrainApi` (fd 3's other bootstrap),
//! the `SessionContext` of each recent session (for claims), and the capabilities restored
//! from `gs_` tokens, cached while they work.

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::hash::Hash;

use base64::Engine;
use capnp::capability::Client as AnyClient;
use granary_schema::grain_capnp::{grain_api, session_context};
use granary_schema::util_capnp::handle;

/// Sessions whose context is kept for claims; the least recently used is forgotten first.
pub const MAX_SESSIONS: usize = 1000;
/// Restored capabilities kept; the least recently used is dropped first.
pub const MAX_RESTORED: usize = 256;
/// What an app sees before the base64url of a SturdyRef token.
pub const TOKEN_PREFIX: &str = "gs_";

/// A call to the platform failed.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("granary-bridge is not connected to the grain supervisor yet; try again in a moment")]
    NotConnected,
    #[error("{0}")]
    Call(#[from] capnp::Error),
}

/// `gs_` + base64url (no padding) of `token`.
pub fn encode_token(token: &[u8]) -> String {
    format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token))
}

/// The token bytes of a `gs_…` string; `None` if it is not one.
pub fn decode_token(s: &str) -> Option<Vec<u8>> {
    let b64 = s.strip_prefix(TOKEN_PREFIX)?;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(b64).ok().filter(|t| !t.is_empty())
}

/// Whether an error says the capability is gone for good on this reference (revoked by the
/// platform, or its connection lost), so a fresh `restore` may help.
pub fn is_revoked(e: &capnp::Error) -> bool {
    e.kind == capnp::ErrorKind::Disconnected || e.extra.contains("revoked")
}

/// The platform's own text of an error: capnp-rpc prefixes "remote exception: " at every hop
/// it crosses (shell → supervisor → bridge makes two), all of which are removed.
pub fn platform_message(extra: &str) -> &str {
    let mut m = extra;
    while let Some(rest) = m.strip_prefix("remote exception: ") {
        m = rest;
    }
    m
}

/// A map that forgets its least recently used entry beyond `capacity`.
struct Lru<K, V> {
    capacity: usize,
    clock: u64,
    entries: HashMap<K, (u64, V)>,
}

impl<K: Hash + Eq + Clone, V: Clone> Lru<K, V> {
    fn new(capacity: usize) -> Self {
        Self { capacity, clock: 0, entries: HashMap::new() }
    }

    fn get(&mut self, key: &K) -> Option<V> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(key).map(|(used, v)| {
            *used = clock;
            v.clone()
        })
    }

    fn insert(&mut self, key: K, value: V) {
        self.clock += 1;
        self.entries.insert(key, (self.clock, value));
        if self.entries.len() > self.capacity {
            let oldest = self.entries.iter().min_by_key(|(_, (used, _))| *used).map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.entries.remove(&k);
            }
        }
    }

    fn remove(&mut self, key: &K) {
        self.entries.remove(key);
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The supervisor's `GrainApi`, recent session contexts, and restored capabilities.
pub struct Platform {
    grain_api: OnceCell<grain_api::Client>,
    sessions: RefCell<Lru<String, session_context::Client>>,
    restored: RefCell<Lru<Vec<u8>, AnyClient>>,
    /// Wake locks the app holds through the local API, by id.
    wake_locks: RefCell<HashMap<u64, handle::Client>>,
    next_wake_lock: std::cell::Cell<u64>,
}

impl Default for Platform {
    fn default() -> Self {
        Self::new()
    }
}

impl Platform {
    /// Not yet connected; no sessions, nothing restored.
    pub fn new() -> Self {
        Self {
            grain_api: OnceCell::new(),
            sessions: RefCell::new(Lru::new(MAX_SESSIONS)),
            restored: RefCell::new(Lru::new(MAX_RESTORED)),
            wake_locks: RefCell::new(HashMap::new()),
            next_wake_lock: std::cell::Cell::new(1),
        }
    }

    /// Holds a wake lock for the app; returns its id, or `None` past 16 held locks.
    pub fn hold_wake_lock(&self, handle: handle::Client) -> Option<u64> {
        let mut locks = self.wake_locks.borrow_mut();
        if locks.len() >= 16 {
            return None;
        }
        let id = self.next_wake_lock.get();
        self.next_wake_lock.set(id + 1);
        locks.insert(id, handle);
        Some(id)
    }

    /// Releases wake lock `id`; false if there is none.
    pub fn release_wake_lock(&self, id: u64) -> bool {
        self.wake_locks.borrow_mut().remove(&id).is_some()
    }

    /// Keeps the supervisor's `GrainApi` (the first one given wins).
    pub fn connect(&self, grain_api: grain_api::Client) {
        let _ = self.grain_api.set(grain_api);
    }

    /// The supervisor's `GrainApi`.
    pub fn grain_api(&self) -> Result<&grain_api::Client, PlatformError> {
        self.grain_api.get().ok_or(PlatformError::NotConnected)
    }

    /// Remembers the context of session `id` (the newest context of an id wins).
    pub fn remember_session(&self, id: &str, context: session_context::Client) {
        self.sessions.borrow_mut().insert(id.to_string(), context);
    }

    /// The context of session `id`, if it is among the recent ones.
    pub fn session(&self, id: &str) -> Option<session_context::Client> {
        self.sessions.borrow_mut().get(&id.to_string())
    }

    /// How many session contexts are kept.
    pub fn session_count(&self) -> usize {
        self.sessions.borrow().len()
    }

    /// The capability of `token`: the cached one, or `GrainApi.restore`d (and then cached).
    pub async fn restore(&self, token: &[u8]) -> Result<AnyClient, PlatformError> {
        if let Some(cap) = self.restored.borrow_mut().get(&token.to_vec()) {
            return Ok(cap);
        }
        let mut req = self.grain_api()?.restore_request();
        req.get().set_token(token);
        let cap: AnyClient = req.send().promise.await?.get()?.get_cap().get_as_capability()?;
        self.restored.borrow_mut().insert(token.to_vec(), cap.clone());
        Ok(cap)
    }

    /// Drops the cached capability of `token` (it failed, or the token was dropped).
    pub fn forget(&self, token: &[u8]) {
        self.restored.borrow_mut().remove(&token.to_vec());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_as_gs_base64url() {
        let token: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(37).wrapping_add(250)).collect();
        let s = encode_token(&token);
        assert!(s.starts_with("gs_") && !s.contains('=') && !s.contains('+') && !s.contains('/'), "{s}");
        assert_eq!(decode_token(&s), Some(token));
        assert_eq!(encode_token(&[0xfb, 0xff]), "gs_-_8");
        for bad in ["gs_", "gc_AAAA", "AAAA", "gs_!!", "gs_AA=="] {
            assert_eq!(decode_token(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_hops_remote_exception_prefix_is_removed() {
        assert_eq!(platform_message("remote exception: remote exception: revoked: x"), "revoked: x");
        assert_eq!(platform_message("remote exception: revoked: x"), "revoked: x");
        assert_eq!(platform_message("revoked: x (remote exception: y)"), "revoked: x (remote exception: y)");
    }

    #[test]
    fn the_least_recently_used_entry_goes_first() {
        let mut lru = Lru::new(2);
        lru.insert("a", 1);
        lru.insert("b", 2);
        assert_eq!(lru.get(&"a"), Some(1));
        lru.insert("c", 3);
        assert_eq!((lru.get(&"a"), lru.get(&"b"), lru.get(&"c")), (Some(1), None, Some(3)));
        assert_eq!(lru.len(), 2);
    }
}
