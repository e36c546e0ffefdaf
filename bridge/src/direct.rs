//! The grain's direct web channel (SPEC.md, "Running grains"): the supervisor hands the bridge
//! a listening unix socket as fd 4, which only the server can reach; each connection accepted
//! there is two-party Cap'n Proto whose bootstrap is [`WebChannelImpl`]. `newSession` (through
//! the supervisor) registers each session under a fresh random 32-byte key, returned as
//! `directKey`; `WebChannel.session(key)` gives the server the same session, so its requests
//! skip the supervisor hop. The session stays reachable this way exactly as long as the
//! supervisor holds it: dropping the session returned by `newSession` removes the key, and
//! every direct call looks the key up again (so a session the supervisor dropped fails at once).
//!
//! Nothing here is trusted by the platform (see the crate documentation): everything the
//! bridge answers on this channel passes the gateway's response policy, as on the supervisor
//! path; `newSession` and the session's context stay on the supervisor.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixListener;
use std::rc::Rc;
use std::time::Duration;

use async_io::{Async, Timer};
use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::RpcSystem;
use futures::AsyncReadExt;
use granary_schema::grain_capnp::web_channel;
use granary_schema::web_session_capnp::web_session;

use crate::session::WebSessionImpl;
use crate::Bridge;

/// The descriptor of the direct web channel's listening socket, when the supervisor gives one.
pub const WEB_CHANNEL_FD: RawFd = 4;

/// Length of a direct key.
pub const KEY_BYTES: usize = 32;

type Key = [u8; KEY_BYTES];

/// The sessions reachable on the direct channel, by key.
#[derive(Default)]
pub struct DirectSessions {
    /// Whether a direct channel is served; if not, `newSession` returns an empty key.
    enabled: Cell<bool>,
    sessions: RefCell<HashMap<Key, Rc<WebSessionImpl>>>,
    /// Streamed response bodies of lane exchanges, waiting for `WebChannel.responseBody`.
    parked: RefCell<HashMap<Ticket, hyper::body::Incoming>>,
}

/// A lane exchange's claim on its streamed response body.
pub type Ticket = [u8; 16];

/// How long a parked body waits for its claim.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(30);

impl DirectSessions {
    /// Whether sessions get direct keys.
    pub fn enabled(&self) -> bool {
        self.enabled.get()
    }

    /// Give every session opened from now on a direct key.
    pub fn enable(&self) {
        self.enabled.set(true);
    }

    /// How many sessions are reachable (the supervisor still holds them).
    pub fn len(&self) -> usize {
        self.sessions.borrow().len()
    }

    /// Whether no session is reachable.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<Rc<WebSessionImpl>> {
        self.sessions.borrow().get(key).cloned()
    }

    /// Keeps `body` for a `responseBody` claim with the returned ticket, for at most
    /// [`TICKET_LIFETIME`] (then it is dropped, which aborts the app's response).
    pub(crate) fn park(self: &Rc<Self>, body: hyper::body::Incoming, executor: &async_executor::LocalExecutor<'static>) -> Result<Ticket, getrandom::Error> {
        let mut ticket = [0u8; 16];
        getrandom::fill(&mut ticket)?;
        self.parked.borrow_mut().insert(ticket, body);
        let registry = Rc::downgrade(self);
        executor
            .spawn(async move {
                Timer::after(TICKET_LIFETIME).await;
                if let Some(r) = registry.upgrade() {
                    r.parked.borrow_mut().remove(&ticket);
                }
            })
            .detach();
        Ok(ticket)
    }

    /// How many lane bodies wait for their claim.
    pub fn parked(&self) -> usize {
        self.parked.borrow().len()
    }
}

/// Makes the `WebSession` that `newSession` returns: `(session, directKey)`, the key empty when
/// no direct channel is served.
pub fn open_session(bridge: &Rc<Bridge>, session: WebSessionImpl) -> Result<(web_session::Client, Vec<u8>), capnp::Error> {
    let session = Rc::new(session);
    if !bridge.direct.enabled() {
        return Ok((capnp_rpc::new_client(HeldSession { session, key: None, registry: bridge.direct.clone() }), Vec::new()));
    }
    let mut key = [0u8; KEY_BYTES];
    getrandom::fill(&mut key).map_err(|e| capnp::Error::failed(format!("no randomness for a session key: {e}")))?;
    bridge.direct.sessions.borrow_mut().insert(key, session.clone());
    let held = HeldSession { session, key: Some(key), registry: bridge.direct.clone() };
    Ok((capnp_rpc::new_client(held), key.to_vec()))
}

/// The session as the supervisor holds it; dropping it ends its direct key.
struct HeldSession {
    session: Rc<WebSessionImpl>,
    key: Option<Key>,
    registry: Rc<DirectSessions>,
}

impl Drop for HeldSession {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.registry.sessions.borrow_mut().remove(&key);
        }
    }
}

impl web_session::Server for HeldSession {
    async fn request(self: Rc<Self>, params: web_session::RequestParams, results: web_session::RequestResults) -> Result<(), capnp::Error> {
        self.session.handle(params, results).await
    }

    async fn open_web_socket(
        self: Rc<Self>,
        params: web_session::OpenWebSocketParams,
        results: web_session::OpenWebSocketResults,
    ) -> Result<(), capnp::Error> {
        crate::websocket::open(&self.session, params, results).await
    }
}

/// The same session, reached on the direct channel: valid while the supervisor holds it.
struct DirectSession {
    key: Key,
    registry: Rc<DirectSessions>,
}

impl DirectSession {
    fn session(&self) -> Result<Rc<WebSessionImpl>, capnp::Error> {
        self.registry.get(&self.key).ok_or_else(closed)
    }
}

pub(crate) fn closed() -> capnp::Error {
    capnp::Error::failed("this session was closed through the supervisor; open a new one with MainView.newSession".into())
}

impl web_session::Server for DirectSession {
    async fn request(self: Rc<Self>, params: web_session::RequestParams, results: web_session::RequestResults) -> Result<(), capnp::Error> {
        self.session()?.handle(params, results).await
    }

    async fn open_web_socket(
        self: Rc<Self>,
        params: web_session::OpenWebSocketParams,
        results: web_session::OpenWebSocketResults,
    ) -> Result<(), capnp::Error> {
        crate::websocket::open(&*self.session()?, params, results).await
    }
}

/// The bootstrap of each direct-channel connection.
pub struct WebChannelImpl {
    registry: Rc<DirectSessions>,
    executor: Rc<async_executor::LocalExecutor<'static>>,
}

impl WebChannelImpl {
    /// The channel onto `bridge`'s sessions; enables direct keys for sessions opened from now on.
    pub fn new(bridge: &Bridge) -> Self {
        bridge.direct.enable();
        Self { registry: bridge.direct.clone(), executor: bridge.app.executor().clone() }
    }
}

impl web_channel::Server for WebChannelImpl {
    async fn session(self: Rc<Self>, params: web_channel::SessionParams, mut results: web_channel::SessionResults) -> Result<(), capnp::Error> {
        let key = params.get()?.get_direct_key()?;
        let key: Key = key.try_into().map_err(|_| capnp::Error::failed(format!("a direct key has {KEY_BYTES} bytes, not {}", key.len())))?;
        if self.registry.get(&key).is_none() {
            return Err(closed());
        }
        results.get().set_session(capnp_rpc::new_client(DirectSession { key, registry: self.registry.clone() }));
        Ok(())
    }

    async fn response_body(self: Rc<Self>, params: web_channel::ResponseBodyParams, _: web_channel::ResponseBodyResults) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let stream = p.get_stream()?;
        let body = <Ticket>::try_from(p.get_ticket()?).ok().and_then(|t| self.registry.parked.borrow_mut().remove(&t));
        let Some(body) = body else {
            return Err(capnp::Error::failed(format!(
                "no response body waits under this ticket (unknown, already claimed, or older than {} s)",
                TICKET_LIFETIME.as_secs()
            )));
        };
        self.executor
            .spawn(async move {
                if let Err(e) = crate::body::pump_response(body, stream).await {
                    eprintln!("granary-bridge: response body cut short: {e}");
                }
            })
            .detach();
        Ok(())
    }
}

/// Why fd 4 cannot be used as the direct channel.
#[derive(Debug, thiserror::Error)]
pub enum ChannelFdError {
    #[error("fd {WEB_CHANNEL_FD} is open but not a listening socket; it is left alone (requests then go through the supervisor)")]
    NotListening,
    #[error("fd {WEB_CHANNEL_FD}: {0}")]
    Io(std::io::Error),
}

/// Takes fd 4 if the supervisor handed over a listening socket there (close-on-exec, so the
/// app does not inherit it); `Ok(None)` if fd 4 is not open (an older supervisor).
pub fn take_listener() -> Result<Option<UnixListener>, ChannelFdError> {
    // SAFETY: fcntl on a descriptor number has no memory-safety preconditions.
    let flags = unsafe { libc::fcntl(WEB_CHANNEL_FD, libc::F_GETFD) };
    if flags < 0 {
        return Ok(None);
    }
    let mut listening: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `listening`, which we own.
    let r = unsafe { libc::getsockopt(WEB_CHANNEL_FD, libc::SOL_SOCKET, libc::SO_ACCEPTCONN, (&mut listening as *mut libc::c_int).cast(), &mut len) };
    if r < 0 || listening == 0 {
        return Err(ChannelFdError::NotListening);
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(WEB_CHANNEL_FD, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(ChannelFdError::Io(std::io::Error::last_os_error()));
    }
    // SAFETY: fd 4 is an open listening socket (checked above) handed to this process by the
    // supervisor, and nothing else in the process owns it.
    Ok(Some(unsafe { UnixListener::from_raw_fd(WEB_CHANNEL_FD) }))
}

/// Accepts the server's connections on `listener` for as long as the bridge runs, each served
/// with [`WebChannelImpl`] as its bootstrap.
pub async fn serve(listener: UnixListener, bridge: Rc<Bridge>) {
    let channel: web_channel::Client = capnp_rpc::new_client(WebChannelImpl::new(&bridge));
    let listener = match Async::new(listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("granary-bridge: cannot watch the direct web channel (fd {WEB_CHANNEL_FD}): {e}; requests go through the supervisor");
            return;
        }
    };
    let executor = bridge.app.executor();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let (bridge, channel) = (bridge.clone(), channel.clone());
                executor.spawn(async move {
                    if crate::lane::is_lane(&stream).await {
                        crate::lane::serve(stream, bridge).await;
                        return;
                    }
                    let (r, w) = granary_schema::socket::Socket::from(stream).split();
                    let network = granary_schema::vat_network(r, w, Side::Server);
                    let rpc = RpcSystem::new(Box::new(network), Some(channel.client));
                    let _ = rpc.await;
                })
                .detach();
            }
            Err(e) => {
                eprintln!("granary-bridge: accepting on the direct web channel failed: {e}");
                Timer::after(Duration::from_millis(100)).await;
            }
        }
    }
}
