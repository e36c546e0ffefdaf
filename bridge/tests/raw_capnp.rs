//! Raw Cap'n Proto through the bridge: `MainView.provide` passed on to the app's `AppObjects`
//! on a real loopback port (a fake app serving a `Counter`), and the local Cap'n Proto
//! endpoint where an app restores, calls, saves and drops its tokens over real TCP, with the
//! test playing the supervisor as in `local_api.rs`.

mod common;

use std::cell::{Cell, RefCell};
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;

use async_io::Async;
use capnp::capability::Rc as CapRc;
use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::{twoparty, RpcSystem};
use futures::future::{AbortHandle, Abortable};
use futures::AsyncReadExt;
use granary_schema::grain_capnp::{app_objects, grain_api};
use granary_schema::sample_capnp::counter;
use granary_schema::util_capnp::byte_stream;
use granary_schema::web_session_capnp::web_session;

use common::platform::{free_port, run_with, Platform, REVOKED};

const COUNTER: u64 = 0xa238_4a22_bc95_e238;

/// What the fake app's `AppObjects` was asked: (interface id, the descriptor's first tag id,
/// user id, permissions).
type Asked = Rc<RefCell<Vec<(u64, u64, String, Vec<bool>)>>>;

struct FakeCounter {
    total: Cell<i64>,
    name: String,
}

impl counter::Server for FakeCounter {
    async fn add(self: CapRc<Self>, params: counter::AddParams, mut results: counter::AddResults) -> Result<(), capnp::Error> {
        self.total.set(self.total.get() + params.get()?.get_amount());
        results.get().set_total(self.total.get());
        Ok(())
    }

    async fn get(self: CapRc<Self>, _: counter::GetParams, mut results: counter::GetResults) -> Result<(), capnp::Error> {
        results.get().set_total(self.total.get());
        results.get().set_name(self.name.as_str());
        Ok(())
    }
}

struct FakeAppObjects {
    asked: Asked,
    counter: counter::Client,
}

impl app_objects::Server for FakeAppObjects {
    async fn provide(self: CapRc<Self>, params: app_objects::ProvideParams, mut results: app_objects::ProvideResults) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let tag = p.get_descriptor()?.get_tags()?.get(0).get_id();
        let user = p.get_user()?.get_id()?.to_string()?;
        self.asked.borrow_mut().push((p.get_interface_id(), tag, user, p.get_permissions()?.iter().collect()));
        if p.get_interface_id() != COUNTER {
            return Err(capnp::Error::failed("this app provides only Counter".into()));
        }
        results.get().init_cap().set_as_capability(self.counter.clone().client.hook);
        Ok(())
    }
}

/// A fake app serving `AppObjects` on a loopback port; `cut()` ends every connection it has.
struct FakeApp {
    port: u16,
    asked: Asked,
    connections: Rc<Cell<u32>>,
    live: Rc<RefCell<Vec<AbortHandle>>>,
}

impl FakeApp {
    fn start(p: &Platform, listener: TcpListener) -> FakeApp {
        let port = listener.local_addr().unwrap().port();
        let listener = Async::new(listener).unwrap();
        let asked = Asked::default();
        let connections = Rc::new(Cell::new(0));
        let live: Rc<RefCell<Vec<AbortHandle>>> = Rc::default();
        let counter: counter::Client = capnp_rpc::new_client(FakeCounter { total: Cell::new(0), name: "tally".into() });
        let objects: app_objects::Client = capnp_rpc::new_client(FakeAppObjects { asked: asked.clone(), counter });
        let (ex, n, l) = (p.ex.clone(), connections.clone(), live.clone());
        p.ex.spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                n.set(n.get() + 1);
                let (r, w) = stream.split();
                let net = twoparty::VatNetwork::new(r, w, Side::Server, Default::default());
                let rpc = RpcSystem::new(Box::new(net), Some(objects.clone().client));
                let (abort, reg) = AbortHandle::new_pair();
                l.borrow_mut().push(abort);
                ex.spawn(Abortable::new(rpc, reg)).detach();
            }
        })
        .detach();
        FakeApp { port, asked, connections, live }
    }

    fn cut(&self) {
        for a in self.live.borrow_mut().drain(..) {
            a.abort();
        }
    }
}

async fn provide(p: &Platform, interface_id: u64) -> Result<counter::Client, capnp::Error> {
    let mut req = p.main_view.provide_request();
    req.get().set_interface_id(interface_id);
    req.get().init_descriptor().init_tags(1).get(0).set_id(interface_id);
    req.get().init_user().set_id("stable-alice");
    req.get().init_permissions(3).set(1, true);
    let reply = req.send().promise.await?;
    reply.get()?.get_cap().get_as_capability()
}

async fn add(c: &counter::Client, amount: i64) -> Result<i64, capnp::Error> {
    let mut req = c.add_request();
    req.get().set_amount(amount);
    Ok(req.send().promise.await?.get()?.get_total())
}

#[test]
fn provide_reaches_the_apps_app_objects_and_reconnects_after_the_connection_broke() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    run_with(
        |c| c.capnp_port = port,
        async |p| {
            let app = FakeApp::start(&p, listener);
            assert_eq!(app.port, port);
            let counter = provide(&p, COUNTER).await.unwrap();
            assert_eq!(add(&counter, 5).await.unwrap(), 5);
            let got = counter.get_request().send().promise.await.unwrap();
            assert_eq!((got.get().unwrap().get_total(), got.get().unwrap().get_name().unwrap().to_str().unwrap()), (5, "tally"));
            assert_eq!(*app.asked.borrow(), [(COUNTER, COUNTER, "stable-alice".to_string(), vec![false, true, false])]);

            // A second provide uses the same connection.
            let again = provide(&p, COUNTER).await.unwrap();
            assert_eq!(add(&again, 1).await.unwrap(), 6);
            assert_eq!(app.connections.get(), 1);

            // The app refuses an interface it does not provide: its error reaches the caller.
            let e = provide(&p, COUNTER ^ 1).await.err().expect("refused");
            assert!(e.extra.contains("this app provides only Counter"), "{e}");

            // The app's end of the connection goes away: objects from it fail, and the next
            // provide connects again.
            app.cut();
            async_io::Timer::after(std::time::Duration::from_millis(50)).await;
            assert!(add(&again, 1).await.is_err(), "an object of the lost connection keeps working");
            let fresh = provide(&p, COUNTER).await.unwrap();
            assert_eq!(add(&fresh, 1).await.unwrap(), 7);
            assert_eq!(app.connections.get(), 2);
        },
    );
}

#[test]
fn calls_to_the_apps_objects_are_not_held_back_by_nagle() {
    // The fake app, like most apps, leaves Nagle's algorithm on, and answers a call with more
    // than one message: each later one waited for the bridge's delayed ACK, about 40 ms per
    // call, until the bridge asked for quick ACKs on its connection to the app.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    run_with(
        |c| c.capnp_port = port,
        async |p| {
            let _app = FakeApp::start(&p, listener);
            let counter = provide(&p, COUNTER).await.unwrap();
            let mut took = Vec::new();
            for i in 1..=12 {
                let t = std::time::Instant::now();
                assert_eq!(add(&counter, 1).await.unwrap(), i);
                took.push(t.elapsed());
            }
            took.sort();
            assert!(took[took.len() / 2] < std::time::Duration::from_millis(25), "median call {:?} (all: {took:?})", took[took.len() / 2]);
        },
    );
}

#[test]
fn provide_says_what_is_missing_when_the_app_does_not_serve_capnp() {
    let port = free_port();
    run_with(
        |c| c.capnp_port = port,
        async |p| {
            let e = provide(&p, COUNTER).await.err().expect("nothing listens");
            let want = format!("the app does not serve Cap'n Proto on 127.0.0.1:{port} (manifest [capnp] port)");
            assert!(e.extra.contains(&want), "{e}");
        },
    );
    run_with(
        |_| {},
        async |p| {
            let e = provide(&p, COUNTER).await.err().expect("no --capnp-port");
            assert!(e.extra.contains("this app provides no Cap'n Proto interfaces") && e.extra.contains("[capnp] port"), "{e}");
        },
    );
}

/// A response body sink the fake remote never writes to (its answers are inline).
struct NoBody;
impl byte_stream::Server for NoBody {}

/// Starts the bridge's local Cap'n Proto endpoint on a free port, with `token` saved as a web
/// capability ("weather"); returns the endpoint's address.
fn serve_endpoint(p: &Platform, token: &[u8]) -> SocketAddr {
    let listener = granary_bridge::local_capnp::bind(0).unwrap();
    let addr = listener.get_ref().local_addr().unwrap();
    p.ex.spawn(granary_bridge::local_capnp::serve(listener, p.bridge.platform.clone(), p.ex.clone())).detach();
    p.record.borrow_mut().saved.insert(token.to_vec(), ("weather".into(), "web"));
    addr
}

/// `restore(token)` on the endpoint, as the `WebSession` it is.
async fn restore_web_session(api: &grain_api::Client, token: &[u8]) -> web_session::Client {
    let mut req = api.restore_request();
    req.get().set_token(token);
    req.send().promise.await.unwrap().get().unwrap().get_cap().get_as_capability().unwrap()
}

/// Connects to the local Cap'n Proto endpoint as an app does: its bootstrap is a `GrainApi`.
async fn connect_as_app(p: &Platform, addr: SocketAddr) -> grain_api::Client {
    let stream = Async::<std::net::TcpStream>::connect(addr).await.unwrap();
    stream.get_ref().set_nodelay(true).unwrap(); // as a well-behaved app does
    let (r, w) = stream.split();
    let mut rpc = RpcSystem::new(Box::new(twoparty::VatNetwork::new(r, w, Side::Client, Default::default())), None);
    let api: grain_api::Client = rpc.bootstrap(Side::Server);
    p.ex.spawn(rpc).detach();
    api
}

async fn get(session: &web_session::Client, path: &str) -> Result<String, capnp::Error> {
    let mut req = session.request_request();
    {
        let mut r = req.get().init_request();
        r.set_method("GET");
        r.set_path(path);
        r.init_body().set_none(());
    }
    req.get().set_response_body(capnp_rpc::new_client(NoBody));
    let reply = req.send().promise.await?;
    let response = reply.get()?.get_response()?;
    match response.get_body().which()? {
        granary_schema::web_session_capnp::response::body::Inline(d) => Ok(String::from_utf8_lossy(d?).into_owned()),
        _ => panic!("the fake answers inline"),
    }
}

#[test]
fn an_app_restores_calls_saves_and_drops_its_tokens_over_the_local_capnp_endpoint() {
    run_with(
        |_| {},
        async |p| {
            let token = vec![9u8; 32];
            let addr = serve_endpoint(&p, &token);
            let api = connect_as_app(&p, addr).await;
            let session = restore_web_session(&api, &token).await;
            assert_eq!(get(&session, "/v1/today").await.unwrap(), "remote saw GET /v1/today");
            assert_eq!(p.record.borrow().requests.last().unwrap().path, "/v1/today");

            // Saving the restored capability again: the supervisor's side recognises its own object.
            let mut req = api.save_request();
            req.get().init_cap().set_as_capability(session.clone().client.hook);
            req.get().set_label("copy");
            let copy = req.send().promise.await.unwrap().get().unwrap().get_token().unwrap().to_vec();
            assert_eq!(p.record.borrow().saved.get(&copy), Some(&("copy".to_string(), "web")));

            let mut req = api.drop_request();
            req.get().set_token(&copy);
            req.send().promise.await.unwrap();
            assert_eq!(p.record.borrow().dropped, std::slice::from_ref(&copy));

            // The platform's refusals reach the app as they are.
            let mut req = api.restore_request();
            req.get().set_token(&copy);
            let e = req.send().promise.await.err().expect("a dropped token");
            assert!(e.extra.contains("no such token"), "{e}");
            p.record.borrow_mut().revoked_through = u32::MAX - 1;
            let e = get(&session, "/v1/again").await.unwrap_err();
            assert!(e.extra.contains(REVOKED), "{e}");

            // A second app connection gets the same GrainApi.
            let other = connect_as_app(&p, addr).await;
            let mut req = other.restore_request();
            req.get().set_token(&token);
            assert!(req.send().promise.await.is_ok());
        },
    );
}

#[test]
fn calls_over_the_local_capnp_endpoint_are_not_held_back_by_nagle() {
    // The bridge answers a call with more than one message (the return, then releasing what
    // the call passed): without TCP_NODELAY on its end the later ones waited for the app's
    // delayed ACK, about 40 ms per call.
    run_with(
        |_| {},
        async |p| {
            let token = vec![7u8; 32];
            let api = connect_as_app(&p, serve_endpoint(&p, &token)).await;
            let session = restore_web_session(&api, &token).await;
            let mut took = Vec::new();
            for i in 0..12 {
                let t = std::time::Instant::now();
                assert_eq!(get(&session, &format!("/n/{i}")).await.unwrap(), format!("remote saw GET /n/{i}"));
                took.push(t.elapsed());
            }
            took.sort();
            assert!(took[took.len() / 2] < std::time::Duration::from_millis(25), "median call {:?} (all: {took:?})", took[took.len() / 2]);
        },
    );
}
