//! The direct web channel: `newSession` gives each session a random key; `WebChannel.session`
//! on a real unix socket served by `granary_bridge::direct::serve` reaches that same session
//! (same identity, bodies streamed both ways) only while the supervisor's side holds it.

mod common;

use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use async_io::Async;
use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::{twoparty, RpcSystem};
use futures::AsyncReadExt;
use granary_schema::grain_capnp::web_channel;
use granary_schema::web_session_capnp::web_session;

use common::{call, new_session_with_key, run, Body, Harness, ALICE, ANONYMOUS};

/// Serves the bridge's direct channel on a socket in a fresh directory and connects to it as
/// the server would.
fn connect_channel(h: &Harness, dir: &tempfile::TempDir) -> web_channel::Client {
    let path = dir.path().join("web.sock");
    let listener = UnixListener::bind(&path).unwrap();
    h.ex.spawn(granary_bridge::direct::serve(listener, h.bridge.clone())).detach();
    let (r, w) = Async::new(UnixStream::connect(&path).unwrap()).unwrap().split();
    let net = twoparty::VatNetwork::new(r, w, Side::Client, Default::default());
    let mut rpc = RpcSystem::new(Box::new(net), None);
    let channel: web_channel::Client = rpc.bootstrap(Side::Server);
    h.ex.spawn(rpc).detach();
    channel
}

async fn direct(channel: &web_channel::Client, key: &[u8]) -> Result<web_session::Client, capnp::Error> {
    let mut req = channel.session_request();
    req.get().set_direct_key(key);
    let reply = req.send().promise.await?;
    reply.get()?.get_session()
}

fn user_id_seen(h: &Harness) -> Option<Vec<u8>> {
    h.app.last_headers().into_iter().find(|(n, _)| n == "x-granary-user-id").map(|(_, v)| v)
}

#[test]
fn without_a_channel_sessions_get_no_key() {
    run(|_| {}, |h| async move {
        let _app = &h.app; // keep the app (the block would only capture the fields it uses)
        let (s, key) = new_session_with_key(&h.main_view, &ALICE).await;
        assert!(key.is_empty(), "an old supervisor path must see an empty directKey");
        assert_eq!(call(&s, "GET", "/echo", &[], Body::None).await.status, 200);
        assert!(h.bridge.direct.is_empty());
    });
}

#[test]
fn the_key_reaches_the_same_session_while_the_supervisor_holds_it() {
    run(|_| {}, |h| async move {
        let dir = tempfile::tempdir().unwrap();
        let channel = connect_channel(&h, &dir);
        // The channel enables keys once served; give its task a turn.
        async_io::Timer::after(Duration::from_millis(20)).await;
        let (alice, key) = new_session_with_key(&h.main_view, &ALICE).await;
        let (anon, anon_key) = new_session_with_key(&h.main_view, &ANONYMOUS).await;
        assert_eq!(key.len(), 32);
        assert_ne!(key, anon_key, "every session gets its own random key");
        assert_eq!(h.bridge.direct.len(), 2);

        let d = direct(&channel, &key).await.expect("a live key opens its session");
        let r = call(&d, "GET", "/echo", &[("X-Granary-User-Id", b"admin")], Body::None).await;
        assert_eq!(r.status, 200);
        assert_eq!(user_id_seen(&h).as_deref(), Some(&b"u-alice-1"[..]), "the direct session is Alice's, spoofing still stripped");
        let d_anon = direct(&channel, &anon_key).await.unwrap();
        call(&d_anon, "GET", "/echo", &[], Body::None).await;
        assert_eq!(user_id_seen(&h), None, "the anonymous session's key reaches the anonymous session");

        // Bodies both ways, streamed (the upload is pipelined on the bridge's own answer).
        let r = call(&d, "PUT", "/upload", &[], Body::Streamed { total: 3 << 20, chunk: 65536, declared: 3 << 20 }).await;
        assert_eq!(r.text(), format!("bytes={} mismatches=0", 3 << 20));
        let r = call(&d, "GET", "/download?n=3145728", &[], Body::None).await;
        assert!(r.completed);
        assert_eq!(r.streamed, (3 << 20, 0));

        // Unknown and malformed keys fail.
        let mut wrong = key.clone();
        wrong[0] ^= 1;
        let e = direct(&channel, &wrong).await.err().expect("an unknown key fails");
        assert!(e.to_string().contains("MainView.newSession"), "{e}");
        assert!(direct(&channel, &key[..16]).await.is_err(), "a short key fails");

        // The supervisor drops Alice's session: her key and her direct session stop working;
        // the other session is untouched.
        drop(alice);
        for _ in 0..100 {
            if h.bridge.direct.len() == 1 {
                break;
            }
            async_io::Timer::after(Duration::from_millis(10)).await;
        }
        assert_eq!(h.bridge.direct.len(), 1, "dropping the session removes its key");
        assert!(direct(&channel, &key).await.is_err(), "a dropped session's key fails");
        let mut req = d.request_request();
        req.get().init_request().init_body().set_none(());
        req.get().set_response_body(capnp_rpc::new_client(NoBody));
        let e = req.send().promise.await.err().expect("the direct session ends with the supervisor's");
        assert!(e.to_string().contains("closed through the supervisor"), "{e}");
        assert_eq!(call(&d_anon, "GET", "/echo", &[], Body::None).await.status, 200);
        drop(anon);
    });
}

struct NoBody;
impl granary_schema::util_capnp::byte_stream::Server for NoBody {}
