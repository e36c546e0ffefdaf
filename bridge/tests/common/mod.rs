//! Test harness: the bridge's `MainView` served over a socketpair with Cap'n Proto two-party
//! RPC (the test plays the supervisor/gateway side), in front of the test app in `app.rs`,
//! everything on one `LocalExecutor` thread.

#![allow(dead_code)]

pub mod app;
pub mod platform;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::os::unix::net::UnixStream;
use std::rc::Rc;

use async_executor::LocalExecutor;
use async_io::Async;
use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::{twoparty, RpcSystem};
use futures::channel::{mpsc, oneshot};
use futures::AsyncReadExt;
use granary_bridge::config::IdentityField;
use granary_bridge::{Bridge, BridgeConfig, MainViewImpl};
use granary_schema::grain_capnp::{main_view, session_context, session_params};
use granary_schema::util_capnp::byte_stream;
use granary_schema::web_session_capnp::{request, response, web_session, web_socket_peer};

pub use app::{pattern_slice, TestApp};

/// Runs `test` on a fresh executor with a test app and a bridge in front of it.
pub fn run<F, Fut>(configure: impl FnOnce(&mut BridgeConfig), test: F)
where
    F: FnOnce(Harness) -> Fut,
    Fut: Future<Output = ()>,
{
    let ex = Rc::new(LocalExecutor::new());
    let ex2 = ex.clone();
    async_io::block_on(ex.run(async move {
        let app = TestApp::start(&ex2);
        let mut config = BridgeConfig::new(app.addr.port());
        config.permissions = vec!["read".into(), "write".into(), "admin".into()];
        configure(&mut config);
        let bridge = Rc::new(Bridge::new(config, ex2.clone()));
        let (a, b) = UnixStream::pair().unwrap();
        let (ar, aw) = Async::new(a).unwrap().split();
        let (br, bw) = Async::new(b).unwrap().split();
        let main_view: main_view::Client = capnp_rpc::new_client(MainViewImpl::new(bridge.clone()));
        let bridge_net = twoparty::VatNetwork::new(ar, aw, Side::Client, Default::default());
        ex2.spawn(RpcSystem::new(Box::new(bridge_net), Some(main_view.client))).detach();
        let gw_net = twoparty::VatNetwork::new(br, bw, Side::Server, Default::default());
        let mut gw = RpcSystem::new(Box::new(gw_net), None);
        let main_view: main_view::Client = gw.bootstrap(Side::Client);
        ex2.spawn(gw).detach();
        test(Harness { app, bridge, main_view, ex: ex2 }).await;
    }));
}

pub struct Harness {
    pub app: Rc<TestApp>,
    pub bridge: Rc<Bridge>,
    pub main_view: main_view::Client,
    pub ex: Rc<LocalExecutor<'static>>,
}

/// Who a session is for.
pub struct User<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub handle: &'a str,
    pub permissions: &'a [bool],
    pub api: bool,
}

pub const ALICE: User<'static> = User { id: "u-alice-1", name: "Zoë Ø", handle: "zoe", permissions: &[true, false, true], api: false };
pub const ANONYMOUS: User<'static> = User { id: "", name: "Anonymous User", handle: "", permissions: &[true], api: false };

/// The context passed to `newSession`; the bridge does not call it.
struct NoContext;
impl session_context::Server for NoContext {}

impl Harness {
    pub async fn session(&self, user: &User<'_>) -> web_session::Client {
        new_session(&self.main_view, user).await
    }
}

/// Opens a session on `main_view` as the supervisor would.
pub async fn new_session(main_view: &main_view::Client, user: &User<'_>) -> web_session::Client {
    new_session_with_key(main_view, user).await.0
}

/// Opens a session on `main_view` as the supervisor would; also returns its `directKey`.
pub async fn new_session_with_key(main_view: &main_view::Client, user: &User<'_>) -> (web_session::Client, Vec<u8>) {
    {
        let mut req = main_view.new_session_request();
        req.get().set_context(capnp_rpc::new_client(NoContext));
        let mut p = req.get().init_params();
        let mut u = p.reborrow().init_user();
        u.set_id(user.id);
        u.set_display_name(user.name);
        u.set_handle(user.handle);
        let mut perms = p.reborrow().init_permissions(user.permissions.len() as u32);
        for (i, b) in user.permissions.iter().enumerate() {
            perms.set(i as u32, *b);
        }
        p.set_session_id("sess-1");
        p.set_tab_id("tab-9");
        p.set_base_path("https://g-abc.example.org");
        p.set_kind(if user.api { session_params::Kind::Api } else { session_params::Kind::Ui });
        let reply = req.send().promise.await.unwrap();
        let r = reply.get().unwrap();
        (r.get_session().unwrap(), r.get_direct_key().unwrap().to_vec())
    }
}

pub enum Body<'a> {
    None,
    Inline(&'a [u8]),
    /// `total` bytes of `pattern`, in writes of `chunk`; `declared` is the length announced.
    Streamed { total: u64, chunk: usize, declared: u64 },
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// "none", "inline" or "streamed(N)".
    pub kind: String,
    /// For streamed bodies: whether `done()` was called.
    pub completed: bool,
    /// For streamed bodies: bytes received, and writes that did not match `pattern`.
    pub streamed: (u64, u64),
    /// Response body bytes that had arrived when the last request body write was acknowledged.
    pub received_while_sending: u64,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| String::from_utf8_lossy(v).into())
    }
    pub fn all(&self, name: &str) -> Vec<String> {
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| String::from_utf8_lossy(v).into()).collect()
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into()
    }
}

/// The caller's end of a response body: counts and checks bytes, keeps only the first 1 MiB.
struct Collector {
    state: Rc<CollectState>,
    ended: RefCell<Option<oneshot::Sender<()>>>,
}

#[derive(Default)]
struct CollectState {
    n: Cell<u64>,
    bad: Cell<u64>,
    kept: RefCell<Vec<u8>>,
    done: Cell<bool>,
}

impl byte_stream::Server for Collector {
    async fn write(self: Rc<Self>, params: byte_stream::WriteParams) -> Result<(), capnp::Error> {
        let data = params.get()?.get_data()?;
        assert!(data.len() <= 64 * 1024, "a write larger than the limit");
        let s = &self.state;
        s.bad.set(s.bad.get() + (data != pattern_slice(s.n.get(), data.len())) as u64);
        s.n.set(s.n.get() + data.len() as u64);
        let mut kept = s.kept.borrow_mut();
        let room = (1usize << 20).saturating_sub(kept.len()).min(data.len());
        kept.extend_from_slice(&data[..room]);
        Ok(())
    }
    async fn done(self: Rc<Self>, _: byte_stream::DoneParams, _: byte_stream::DoneResults) -> Result<(), capnp::Error> {
        self.state.done.set(true);
        self.ended.borrow_mut().take();
        Ok(())
    }
}

/// Fills a `Request`: method, path, headers and the body's kind.
pub fn write_request(mut r: request::Builder<'_>, method: &str, path: &str, headers: &[(&str, &[u8])], body: &Body<'_>) {
    r.set_method(method);
    r.set_path(path);
    let mut list = r.reborrow().init_headers(headers.len() as u32);
    for (i, (n, v)) in headers.iter().enumerate() {
        list.reborrow().get(i as u32).set_name(*n);
        list.reborrow().get(i as u32).set_value(v);
    }
    let mut b = r.init_body();
    match body {
        Body::None => b.set_none(()),
        Body::Inline(d) => b.set_inline(d),
        Body::Streamed { declared, .. } => b.set_streamed(*declared),
    }
}

/// Sends one request and waits for the whole response (body included).
pub async fn call(session: &web_session::Client, method: &str, path: &str, headers: &[(&str, &[u8])], body: Body<'_>) -> Reply {
    let state = Rc::new(CollectState::default());
    let (ended_tx, ended_rx) = oneshot::channel();
    let collector = Collector { state: state.clone(), ended: RefCell::new(Some(ended_tx)) };
    let mut req = session.request_request();
    {
        let mut p = req.get();
        p.set_response_body(capnp_rpc::new_client(collector));
        write_request(p.init_request(), method, path, headers, &body);
    }
    let promise = req.send();
    let mut received_while_sending = 0;
    if let Body::Streamed { total, chunk, .. } = body {
        let sink = promise.pipeline.get_request_body();
        let mut off = 0u64;
        let mut failed = false;
        while off < total {
            let len = (total - off).min(chunk as u64);
            let data = pattern_slice(off, len as usize);
            let mut w = sink.write_request();
            w.get().set_data(data);
            if w.send().await.is_err() {
                failed = true;
                break;
            }
            off += len;
        }
        received_while_sending = state.n.get();
        if !failed {
            let _ = sink.done_request().send().promise.await;
        }
    }
    let resp = promise.promise.await.expect("request failed");
    let r: response::Reader = resp.get().unwrap().get_response().unwrap();
    let mut reply = Reply {
        status: r.get_status(),
        headers: r
            .get_headers()
            .unwrap()
            .iter()
            .map(|h| (h.get_name().unwrap().to_string().unwrap(), h.get_value().unwrap().to_vec()))
            .collect(),
        body: Vec::new(),
        kind: String::new(),
        completed: false,
        streamed: (0, 0),
        received_while_sending,
    };
    match r.get_body().which().unwrap() {
        response::body::None(()) => reply.kind = "none".into(),
        response::body::Inline(d) => {
            reply.kind = "inline".into();
            reply.body = d.unwrap().to_vec();
        }
        response::body::Streamed(n) => {
            reply.kind = format!("streamed({n})");
            drop(resp);
            let _ = ended_rx.await; // done() or the stream was dropped
            reply.completed = state.done.get();
            reply.body = state.kept.borrow().clone();
            reply.streamed = (state.n.get(), state.bad.get());
        }
    }
    reply
}

/// Events a test WebSocket client receives.
#[derive(Debug, PartialEq)]
pub enum WsEvent {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(u16, String),
}

/// The caller's `client` peer: forwards what the app sends into a channel.
pub struct Inbox(pub mpsc::UnboundedSender<WsEvent>);

impl web_socket_peer::Server for Inbox {
    async fn send(self: Rc<Self>, params: web_socket_peer::SendParams) -> Result<(), capnp::Error> {
        use web_socket_peer::message::Which;
        let ev = match params.get()?.get_message()?.which()? {
            Which::Text(t) => WsEvent::Text(t?.to_string()?),
            Which::Binary(b) => WsEvent::Binary(b?.to_vec()),
            Which::Ping(b) => WsEvent::Ping(b?.to_vec()),
            Which::Pong(b) => WsEvent::Pong(b?.to_vec()),
        };
        let _ = self.0.unbounded_send(ev);
        Ok(())
    }
    async fn close(self: Rc<Self>, params: web_socket_peer::CloseParams, _: web_socket_peer::CloseResults) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let _ = self.0.unbounded_send(WsEvent::Close(p.get_code(), p.get_reason()?.to_string()?));
        Ok(())
    }
}

pub fn identity_headers(c: &mut BridgeConfig) {
    c.identity_headers = vec![
        ("x-remote-user".parse().unwrap(), IdentityField::Handle),
        ("x-forwarded-user".parse().unwrap(), IdentityField::UserId),
        ("x-forwarded-groups".parse().unwrap(), IdentityField::Permissions),
    ];
}
