//! Request lanes (SPEC.md, "Request lanes"): on the direct channel's real unix socket, a
//! connection that starts with `GRLANE01` carries `LaneFrame`s: exchanges of the session the
//! key names, tickets for streamed bodies claimed once over RPC, cancel, and a lane that breaks
//! the contract is closed without touching the rest of the bridge.

mod common;

use std::cell::Cell;
use std::os::unix::net::{UnixListener, UnixStream};
use std::rc::Rc;
use std::time::Duration;

use async_io::{Async, Timer};
use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::{twoparty, RpcSystem};
use futures::io::{ReadHalf, WriteHalf};
use futures::{AsyncReadExt, AsyncWriteExt};
use granary_schema::grain_capnp::{lane_frame, web_channel};
use granary_schema::lane::{encode, new_frame, read_frame, PREAMBLE};
use granary_schema::util_capnp::byte_stream;

use common::{new_session_with_key, pattern_slice, run, write_request, Body, Harness, ALICE};

type Frame = capnp::message::Reader<capnp::serialize::OwnedSegments>;

struct TestLane {
    r: ReadHalf<Async<UnixStream>>,
    w: WriteHalf<Async<UnixStream>>,
}

/// Serves the direct channel in a fresh directory; returns its socket path.
fn serve(h: &Harness, dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("web.sock");
    let listener = UnixListener::bind(&path).unwrap();
    h.ex.spawn(granary_bridge::direct::serve(listener, h.bridge.clone())).detach();
    path
}

/// Serves the direct channel in a fresh directory (kept by the caller) and opens a session
/// of Alice's: (directory, socket path, the session as the supervisor holds it, its key).
async fn served_with_alice(h: &Harness) -> (tempfile::TempDir, std::path::PathBuf, granary_schema::web_session_capnp::web_session::Client, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let path = serve(h, &dir);
    // The channel enables keys once served; give its task a turn.
    Timer::after(Duration::from_millis(20)).await;
    let (alice, key) = new_session_with_key(&h.main_view, &ALICE).await;
    (dir, path, alice, key)
}

async fn open_lane(path: &std::path::Path) -> TestLane {
    let (r, mut w) = Async::new(UnixStream::connect(path).unwrap()).unwrap().split();
    w.write_all(PREAMBLE).await.unwrap();
    TestLane { r, w }
}

fn channel(h: &Harness, path: &std::path::Path) -> web_channel::Client {
    let (r, w) = Async::new(UnixStream::connect(path).unwrap()).unwrap().split();
    let mut rpc = RpcSystem::new(Box::new(twoparty::VatNetwork::new(r, w, Side::Client, Default::default())), None);
    let channel = rpc.bootstrap(Side::Server);
    h.ex.spawn(rpc).detach();
    channel
}

fn request_frame(id: u32, key: &[u8], method: &str, path: &str, headers: &[(&str, &[u8])], body: Body<'_>) -> Vec<u8> {
    let mut m = new_frame();
    let mut f = m.init_root::<lane_frame::Builder>();
    f.set_exchange(id);
    let mut lr = f.init_request();
    lr.set_direct_key(key);
    write_request(lr.init_request(), method, path, headers, &body);
    encode(&m)
}

fn cancel_frame(id: u32) -> Vec<u8> {
    let mut m = new_frame();
    let mut f = m.init_root::<lane_frame::Builder>();
    f.set_exchange(id);
    f.set_cancel(());
    encode(&m)
}

impl TestLane {
    async fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).await.unwrap();
    }
    /// The next frame, or `None` once the bridge closed the lane; panics after 5 s.
    async fn next(&mut self) -> Option<Frame> {
        let read = read_frame(&mut self.r);
        let timeout = async {
            Timer::after(Duration::from_secs(5)).await;
            panic!("no frame within 5 s")
        };
        futures::future::select(Box::pin(read), Box::pin(timeout)).await.factor_first().0.unwrap()
    }
}

/// (exchange, status, body text, ticket) of a `response` frame; panics on anything else.
fn response(f: &Frame) -> (u32, u16, String, Vec<u8>) {
    let root = f.get_root::<lane_frame::Reader>().unwrap();
    let lane_frame::Response(r) = root.which().unwrap() else { panic!("not a response: failed = {:?}", failed(f)) };
    let r = r.unwrap();
    let resp = r.get_response().unwrap();
    use granary_schema::web_session_capnp::response::body::Which;
    let body = match resp.get_body().which().unwrap() {
        Which::Inline(d) => String::from_utf8_lossy(d.unwrap()).into_owned(),
        Which::None(()) => String::new(),
        Which::Streamed(n) => format!("streamed({n})"),
    };
    (root.get_exchange(), resp.get_status(), body, r.get_body_ticket().unwrap().to_vec())
}

fn failed(f: &Frame) -> Option<String> {
    match f.get_root::<lane_frame::Reader>().unwrap().which().unwrap() {
        lane_frame::Failed(t) => Some(t.unwrap().to_string().unwrap()),
        _ => None,
    }
}

#[test]
fn a_lane_carries_exchanges_of_the_session_its_key_names() {
    run(|_| {}, |h| async move {
        let (_dir, path, _alice, key) = served_with_alice(&h).await;
        let mut lane = open_lane(&path).await;
        // Two exchanges in one write; answers come back under their numbers.
        let mut both = request_frame(7, &key, "GET", "/hold?a", &[], Body::None);
        both.extend(request_frame(8, &key, "POST", "/echo", &[("X-Granary-User-Id", b"spoofed-id"), ("X-Custom", b"kept")], Body::Inline(b"hello")));
        lane.send(&both).await;
        let mut got = vec![response(&lane.next().await.unwrap()), response(&lane.next().await.unwrap())];
        got.sort_by_key(|g| g.0);
        assert_eq!((got[0].0, got[0].1, got[0].2.as_str()), (7, 200, "held a\n"));
        let (id, status, echo, ticket) = &got[1];
        assert_eq!((*id, *status), (8, 200));
        assert!(echo.starts_with("POST /echo body=5\n"), "{echo}");
        assert!(echo.contains("x-granary-user-id: u-alice-1\n") && !echo.contains("spoofed-id"), "Alice's identity, the spoofed copy stripped: {echo}");
        assert!(echo.contains("x-custom: kept\n"), "{echo}");
        assert!(ticket.is_empty(), "an inline answer has no ticket");
        // The bridge's own refusals come back as responses too.
        lane.send(&request_frame(9, &key, "GET", "no-slash", &[], Body::None)).await;
        assert_eq!(response(&lane.next().await.unwrap()).1, 400);
        // An unknown key fails the exchange, not the lane.
        let mut wrong = key.clone();
        wrong[0] ^= 1;
        lane.send(&request_frame(10, &wrong, "GET", "/echo", &[], Body::None)).await;
        let why = failed(&lane.next().await.unwrap()).expect("an unknown key fails");
        assert!(why.contains("closed through the supervisor"), "{why}");
        lane.send(&request_frame(11, &key, "GET", "/echo", &[], Body::None)).await;
        assert_eq!(response(&lane.next().await.unwrap()).1, 200, "the lane still works");
        // RPC connections on the same socket are unaffected.
        let mut s = channel(&h, &path).session_request();
        s.get().set_direct_key(&key);
        assert!(s.send().promise.await.is_ok());
    });
}

#[derive(Default)]
struct Got {
    n: Cell<u64>,
    bad: Cell<u64>,
    done: Cell<bool>,
}
struct Sink(Rc<Got>);
impl byte_stream::Server for Sink {
    async fn write(self: Rc<Self>, params: byte_stream::WriteParams) -> Result<(), capnp::Error> {
        let data = params.get()?.get_data()?;
        let g = &self.0;
        g.bad.set(g.bad.get() + (data != pattern_slice(g.n.get(), data.len())) as u64);
        g.n.set(g.n.get() + data.len() as u64);
        Ok(())
    }
    async fn done(self: Rc<Self>, _: byte_stream::DoneParams, _: byte_stream::DoneResults) -> Result<(), capnp::Error> {
        self.0.done.set(true);
        Ok(())
    }
}

async fn claim(channel: &web_channel::Client, ticket: &[u8], got: &Rc<Got>) -> Result<(), capnp::Error> {
    let mut c = channel.response_body_request();
    c.get().set_ticket(ticket);
    c.get().set_stream(capnp_rpc::new_client(Sink(got.clone())));
    c.send().promise.await.map(|_| ())
}

#[test]
fn a_streamed_body_is_claimed_once_with_its_ticket() {
    run(|_| {}, |h| async move {
        let (_dir, path, _alice, key) = served_with_alice(&h).await;
        let mut lane = open_lane(&path).await;
        lane.send(&request_frame(1, &key, "GET", "/download?n=3145728", &[], Body::None)).await;
        let (_, status, body, ticket) = response(&lane.next().await.unwrap());
        assert_eq!((status, body.as_str()), (200, "streamed(3145728)"));
        assert_eq!(ticket.len(), 16);
        assert_eq!(h.bridge.direct.parked(), 1);
        let rpc = channel(&h, &path);
        let got = Rc::new(Got::default());
        claim(&rpc, &ticket, &got).await.expect("the ticket claims the body");
        for _ in 0..500 {
            if got.done.get() {
                break;
            }
            Timer::after(Duration::from_millis(10)).await;
        }
        assert!(got.done.get(), "the body ends with done()");
        assert_eq!((got.n.get(), got.bad.get()), (3 << 20, 0));
        assert_eq!(h.bridge.direct.parked(), 0);
        let e = claim(&rpc, &ticket, &Rc::new(Got::default())).await.expect_err("a ticket is single-use");
        assert!(e.to_string().contains("no response body waits under this ticket"), "{e}");
        assert!(claim(&rpc, &[0u8; 16], &Rc::new(Got::default())).await.is_err(), "an unknown ticket fails");
        // A streamed request body has no place on a lane.
        lane.send(&request_frame(2, &key, "PUT", "/upload", &[], Body::Streamed { total: 10, chunk: 10, declared: 10 })).await;
        assert!(failed(&lane.next().await.unwrap()).unwrap().contains("no streamed request body"));
    });
}

#[test]
fn a_cancelled_exchange_is_never_answered_and_the_lane_goes_on() {
    run(|_| {}, |h| async move {
        let (_dir, path, _alice, key) = served_with_alice(&h).await;
        let mut lane = open_lane(&path).await;
        // The cancel arrives in the same read as its request, so the exchange is dropped
        // before it reaches the app. Both requests are held 50 ms by the app: had the first
        // gone on, its answer (and its hit) would come before the second's.
        let mut all = request_frame(1, &key, "GET", "/hold?cancelled", &[], Body::None);
        all.extend(cancel_frame(1));
        all.extend(cancel_frame(99)); // unknown: ignored
        all.extend(request_frame(2, &key, "GET", "/hold?next", &[], Body::None));
        lane.send(&all).await;
        let (id, status, body, _) = response(&lane.next().await.unwrap());
        assert_eq!((id, status, body.as_str()), (2, 200, "held next\n"), "the cancelled exchange got no answer");
        assert_eq!(h.app.hits.get(), 1, "the cancelled request never reached the app");
    });
}

#[test]
fn a_lane_that_breaks_the_contract_is_closed_and_nothing_else_is() {
    run(|_| {}, |h| async move {
        let (_dir, path, _alice, key) = served_with_alice(&h).await;
        // A frame declaring more than the 256 KiB limit: closed before its body is read.
        let mut lane = open_lane(&path).await;
        let mut huge = 0u32.to_le_bytes().to_vec();
        huge.extend((64 * 1024u32).to_le_bytes());
        lane.send(&huge).await;
        assert!(lane.next().await.is_none(), "an oversized frame closes the lane");
        // Garbage that is not a LaneFrame.
        let mut lane = open_lane(&path).await;
        lane.send(&[0, 0, 0, 0, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).await;
        assert!(lane.next().await.is_none(), "a malformed frame closes the lane");
        // A frame only the bridge sends.
        let mut lane = open_lane(&path).await;
        let mut m = new_frame();
        m.init_root::<lane_frame::Builder>().set_failed("forged");
        lane.send(&encode(&m)).await;
        assert!(lane.next().await.is_none(), "a bridge-bound frame kind closes the lane");
        // The bridge goes on: a new lane works.
        let mut lane = open_lane(&path).await;
        lane.send(&request_frame(1, &key, "GET", "/echo", &[], Body::None)).await;
        assert_eq!(response(&lane.next().await.unwrap()).1, 200);
    });
}
