//! The gateway: every UI session of a grain gets its own origin `<session id>.<wildcard
//! host>`, entered through a one-time init URL that sets a cookie for that host only. Requests
//! on a session origin are checked (cookie, Origin, session still allowed) and carried to the
//! grain as `WebSession` calls (`proxy`); responses get the platform's header policy
//! (SPEC.md, "The gateway").

pub mod grain_api;
pub mod lane;
mod proxy;
mod websocket;

use crate::accounts::{random_hex, User};
use crate::grains::Grain;
use anyhow::{bail, Result};
use granary_schema::web_session_capnp::web_session;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

pub use proxy::handle;

/// Cookie holding a session origin's secret (host-only, on that origin).
pub const SESSION_COOKIE: &str = "granary_grain";
/// Path prefix on grain origins that belongs to the platform.
pub const PLATFORM_PREFIX: &str = "/_granary/";
/// An init URL must be used within this time.
pub const INIT_TOKEN_TTL: Duration = Duration::from_secs(60);
/// A session nobody used for this long is forgotten.
pub const SESSION_IDLE: Duration = Duration::from_secs(12 * 3600);

/// `*.localhost:6080`: where session origins live.
#[derive(Clone, Debug)]
pub struct WildcardHost {
    /// What follows the label: `.localhost:6080`.
    pub suffix: String,
    pub scheme: &'static str,
}

impl WildcardHost {
    pub fn parse(pattern: &str, secure: bool) -> Result<WildcardHost> {
        let pattern = pattern.trim().to_ascii_lowercase();
        let Some(suffix) = pattern.strip_prefix('*') else {
            bail!("--wildcard-host `{pattern}` must start with `*.`, e.g. *.localhost:6080 or *.grains.example.org");
        };
        if !suffix.starts_with('.') || suffix.len() < 2 || suffix.contains(['/', '*', '@']) {
            bail!("--wildcard-host `{pattern}` must look like *.localhost:6080 or *.grains.example.org");
        }
        Ok(WildcardHost { suffix: suffix.to_owned(), scheme: if secure { "https" } else { "http" } })
    }

    /// The session label of a request's host, if it is a session origin.
    pub fn label<'h>(&self, host: &'h str) -> Option<&'h str> {
        let label = host.strip_suffix(self.suffix.as_str())?;
        (!label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(label)
    }

    pub fn origin(&self, label: &str) -> String {
        format!("{}://{label}{}", self.scheme, self.suffix)
    }
}

/// A UI session's `WebSession` in the grain, as one value: the session, its direct key and the
/// session held for it can only be set and dropped together.
#[derive(Clone)]
pub struct GrainSession {
    /// The session requests are sent to: on the grain's direct web channel when it has one,
    /// else through the supervisor.
    pub used: web_session::Client,
    /// Set when `used` is the direct session.
    pub direct: Option<DirectSession>,
}

/// What a direct session comes with.
#[derive(Clone)]
pub struct DirectSession {
    /// Its direct key: the session's requests without a streamed body take the grain's request
    /// lane under it. Shared, since the session is copied for every request.
    pub key: Rc<[u8]>,
    /// The same session as the supervisor returned it: held while the direct one is used,
    /// since the bridge keeps a session reachable directly only while the supervisor holds it.
    _held: web_session::Client,
}

impl DirectSession {
    /// A direct session's `key`, holding `supervised`, the session it stands for.
    pub fn new(key: &[u8], supervised: web_session::Client) -> Self {
        DirectSession { key: key.into(), _held: supervised }
    }
}

/// One UI session: one user looking at one grain in one origin.
pub struct UiSession {
    pub label: String,
    /// The cookie value that proves a browser entered through the init URL.
    pub secret: String,
    init_token: RefCell<Option<(String, Instant)>>,
    pub grain_id: String,
    /// The signed-in person using it, if any (checked on every request: suspension ends it).
    pub user_id: Option<String>,
    /// Whether the grain learns who they are; false for anonymous visitors and for people who
    /// opened a link without revealing themselves.
    pub reveal: bool,
    /// The share link it came through, when it is not the user's own access.
    pub link_id: Option<String>,
    /// The permissions it was opened with; when they change, the session ends.
    pub permissions: Vec<bool>,
    pub origin: String,
    /// Made on first use, from the grain's main view; dropped when the grain's app goes away.
    pub web_session: RefCell<Option<GrainSession>>,
    /// Held while `web_session` is being made, so that requests arriving together (a page's
    /// resources) share one session: each making its own would replace the others' held
    /// session under their feet, ending their direct sessions mid-request.
    pub making_session: futures::lock::Mutex<()>,
    last_used: Cell<Instant>,
    /// The store's write count when the session was last found still allowed: until something
    /// is written, the answer cannot change.
    pub allowed_at: Cell<Option<u64>>,
    /// The Content-Security-Policy of the grain's responses in this session, made on the
    /// first one.
    pub csp: std::cell::OnceCell<hyper::header::HeaderValue>,
}

impl UiSession {
    /// Consumes the init token if `token` is it and it is fresh.
    pub fn take_init(&self, token: &str) -> bool {
        let mut slot = self.init_token.borrow_mut();
        match &*slot {
            Some((t, at)) if t == token && at.elapsed() < INIT_TOKEN_TTL => {
                *slot = None;
                true
            }
            _ => false,
        }
    }

    pub fn touch(&self) {
        self.last_used.set(Instant::now());
    }
}

/// Who a new session is for and what it may do.
pub struct Access<'a> {
    pub user: Option<&'a User>,
    pub reveal: bool,
    pub link_id: Option<String>,
    pub permissions: Vec<bool>,
}

type Sessions = RefCell<HashMap<String, Rc<UiSession>>>;

/// The live UI sessions (in memory: they hold live capabilities and end with the server).
pub struct Gateway {
    pub wildcard: WildcardHost,
    sessions: Rc<Sessions>,
    /// Grain API sessions kept per token.
    pub api_sessions: Rc<grain_api::ApiSessions>,
}

/// Forgets a grain's cached `WebSession`s from places that outlive a request handler (a
/// response body that was cut off, the supervisor's `appExited`): once the app exited, those
/// capabilities are dead and the next request must make a new one, which restarts the app.
#[derive(Clone)]
pub struct GrainReset(std::rc::Weak<Sessions>, std::rc::Weak<grain_api::ApiSessions>);

impl GrainReset {
    pub fn reset_grain(&self, grain_id: &str) {
        if let Some(sessions) = self.0.upgrade() {
            for s in sessions.borrow().values().filter(|s| s.grain_id == grain_id) {
                s.web_session.borrow_mut().take();
            }
        }
        if let Some(api) = self.1.upgrade() {
            api.forget_grain(grain_id);
        }
    }
}

impl Gateway {
    pub fn new(wildcard: WildcardHost) -> Gateway {
        Gateway { wildcard, sessions: Rc::new(RefCell::new(HashMap::new())), api_sessions: Rc::default() }
    }

    pub fn grain_reset(&self) -> GrainReset {
        GrainReset(Rc::downgrade(&self.sessions), Rc::downgrade(&self.api_sessions))
    }

    /// Starts a session on `grain`; returns the init URL to load in the frame.
    /// A path inside the grain that a session may open at (`setPath`, reopened): absolute,
    /// not protocol-relative, no backslash or control character, at most 2 KiB.
    pub fn in_grain_path(path: &str) -> Option<&str> {
        let ok = path.starts_with('/') && !path.starts_with("//") && path.len() <= 2048 && !path.chars().any(|c| c == '\\' || c.is_control());
        ok.then_some(path)
    }

    pub fn open(&self, grain: &Grain, access: Access) -> String {
        self.expire();
        let label = crate::grains::new_id();
        let token = random_hex(32);
        let origin = self.wildcard.origin(&label);
        let url = format!("{origin}{PLATFORM_PREFIX}init/{token}");
        let session = UiSession {
            label: label.clone(),
            secret: random_hex(32),
            init_token: RefCell::new(Some((token, Instant::now()))),
            grain_id: grain.id.clone(),
            user_id: access.user.map(|u| u.id.clone()),
            reveal: access.reveal,
            link_id: access.link_id,
            permissions: access.permissions,
            origin,
            web_session: RefCell::new(None),
            making_session: futures::lock::Mutex::new(()),
            last_used: Cell::new(Instant::now()),
            allowed_at: Cell::new(None),
            csp: Default::default(),
        };
        self.sessions.borrow_mut().insert(label, Rc::new(session));
        url
    }

    pub fn get(&self, label: &str) -> Option<Rc<UiSession>> {
        self.sessions.borrow().get(label).cloned()
    }

    /// Ends every session matching `f` at once (their next request is refused).
    pub fn close_where(&self, f: impl Fn(&UiSession) -> bool) -> usize {
        let mut map = self.sessions.borrow_mut();
        let before = map.len();
        map.retain(|_, s| !f(s));
        before - map.len()
    }

    /// The open sessions of a grain.
    pub fn sessions_of(&self, grain_id: &str) -> Vec<Rc<UiSession>> {
        self.sessions.borrow().values().filter(|s| s.grain_id == grain_id).cloned().collect()
    }

    /// Drops the cached `WebSession` of every session of `grain`, UI and API (after its
    /// supervisor went away, the next request makes a new one).
    pub fn reset_grain(&self, grain_id: &str) {
        self.grain_reset().reset_grain(grain_id);
    }

    fn expire(&self) {
        self.sessions.borrow_mut().retain(|_, s| s.last_used.get().elapsed() < SESSION_IDLE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_hosts_parse_and_match_only_single_labels() {
        let w = WildcardHost::parse("*.localhost:6080", false).unwrap();
        assert_eq!(w.label("abc123.localhost:6080"), Some("abc123"));
        assert_eq!(w.label("a.b.localhost:6080"), None);
        assert_eq!(w.label("localhost:6080"), None);
        assert_eq!(w.label("abc.localhost:6081"), None);
        assert_eq!(w.origin("abc"), "http://abc.localhost:6080");
        assert!(WildcardHost::parse("localhost", false).is_err());
        assert!(WildcardHost::parse("*localhost", false).is_err());
    }
}
