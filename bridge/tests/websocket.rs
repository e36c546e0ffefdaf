//! WebSession.openWebSocket against a real WebSocket server in the app.

mod common;

use common::{run, Inbox, WsEvent, ALICE};
use futures::channel::mpsc;
use futures::StreamExt;
use granary_schema::web_session_capnp::{web_session, web_socket_peer};

fn message(peer: &web_socket_peer::Client, f: impl FnOnce(web_socket_peer::message::Builder<'_>)) -> impl std::future::Future<Output = capnp::Result<()>> {
    let mut req = peer.send_request();
    f(req.get().init_message());
    req.send()
}

struct Opened {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    server: Option<web_socket_peer::Client>,
}

async fn open(s: &web_session::Client, method: &str, path: &str, headers: &[(&str, &[u8])], tx: mpsc::UnboundedSender<WsEvent>) -> Opened {
    let mut req = s.open_web_socket_request();
    let mut r = req.get().init_request();
    r.set_method(method);
    r.set_path(path);
    let mut hs = r.reborrow().init_headers(headers.len() as u32);
    for (i, (n, v)) in headers.iter().enumerate() {
        hs.reborrow().get(i as u32).set_name(*n);
        hs.reborrow().get(i as u32).set_value(v);
    }
    r.init_body().set_none(());
    req.get().set_client(capnp_rpc::new_client(Inbox(tx)));
    let resp = req.send().promise.await.unwrap();
    let resp = resp.get().unwrap();
    let r = resp.get_response().unwrap();
    Opened {
        status: r.get_status(),
        headers: r.get_headers().unwrap().iter().map(|h| (h.get_name().unwrap().to_string().unwrap(), h.get_value().unwrap().to_vec())).collect(),
        server: resp.has_server().then(|| resp.get_server().unwrap()),
    }
}

/// Whether the peer is broken: a failed streaming call is reported by that call or, at the
/// latest, by the next call on the same capability (capnp streaming semantics).
async fn rejects(server: &web_socket_peer::Client, f: impl FnOnce(web_socket_peer::message::Builder<'_>)) -> bool {
    let first = message(server, f).await;
    let mut close = server.close_request();
    close.get().set_code(1000);
    first.is_err() || close.send().promise.await.is_err()
}

#[test]
fn websocket_echo_text_binary_ping_and_close() {
    run(common::identity_headers, |h| async move {
        let s = h.session(&ALICE).await;
        let (tx, mut rx) = mpsc::unbounded();
        let headers: &[(&str, &[u8])] = &[
            ("Sec-WebSocket-Protocol", b"chat.v2, chat.v1"),
            ("Sec-WebSocket-Key", b"c3B vb2ZlZA=="),
            ("X-Remote-User", b"root"),
            ("Origin", b"https://g-abc.example.org"),
        ];
        let o = open(&s, "GET", "/ws?room=1", headers, tx).await;
        assert_eq!(o.status, 101);
        let protocol: Vec<_> = o.headers.iter().filter(|(n, _)| n == "sec-websocket-protocol").map(|(_, v)| v.clone()).collect();
        assert_eq!(protocol, [b"chat.v2".to_vec()]);
        let server = o.server.expect("no server peer");

        let seen = h.app.last_headers();
        assert!(seen.iter().any(|(n, v)| n == "x-remote-user" && v == b"zoe"), "{seen:?}");
        assert!(seen.iter().any(|(n, v)| n == "origin" && v == b"https://g-abc.example.org"));
        assert!(!seen.iter().any(|(n, v)| n == "sec-websocket-key" && v == b"c3B vb2ZlZA=="), "the caller's key was used");

        message(&server, |mut m| m.set_text("héllo")).await.unwrap();
        assert_eq!(rx.next().await, Some(WsEvent::Text("héllo".into())));
        let blob: Vec<u8> = (0..200_000u32).map(|i| (i % 256) as u8).collect();
        message(&server, |mut m| m.set_binary(&blob)).await.unwrap();
        assert_eq!(rx.next().await, Some(WsEvent::Binary(blob)));
        message(&server, |mut m| m.set_ping(b"are you there")).await.unwrap();
        assert_eq!(rx.next().await, Some(WsEvent::Pong(b"are you there".to_vec())));

        let mut close = server.close_request();
        close.get().set_code(4001);
        close.get().set_reason("bye");
        close.send().promise.await.unwrap();
        assert_eq!(rx.next().await, Some(WsEvent::Close(4001, "bye".into())));
        assert!(rejects(&server, |mut m| m.set_text("late")).await, "send after close accepted");
    });
}

#[test]
fn oversized_control_frames_are_refused() {
    run(|_| {}, |h| async move {
        let s = h.session(&ALICE).await;
        let (tx, _rx) = mpsc::unbounded();
        let server = open(&s, "GET", "/ws", &[], tx).await.server.unwrap();
        assert!(rejects(&server, |mut m| m.set_ping(&[0u8; 126])).await, "oversized ping accepted");
    });
}

#[test]
fn a_refused_websocket_returns_the_apps_response_and_no_peer() {
    run(|_| {}, |h| async move {
        let s = h.session(&ALICE).await;
        let (tx, _rx) = mpsc::unbounded();
        for (method, path, status) in [("GET", "/status/403", 403u16), ("GET", "/nowhere", 404), ("POST", "/ws", 400)] {
            let o = open(&s, method, path, &[], tx.clone()).await;
            assert_eq!(o.status, status);
            assert!(o.server.is_none());
        }
    });
}

#[test]
fn the_app_closing_first_reaches_the_client() {
    run(|_| {}, |h| async move {
        let s = h.session(&ALICE).await;
        let (tx, mut rx) = mpsc::unbounded();
        let server = open(&s, "GET", "/ws?close=4002", &[], tx).await.server.unwrap();
        assert_eq!(rx.next().await, Some(WsEvent::Close(4002, "server bye".into())));
        let mut close = server.close_request();
        close.get().set_code(4002);
        close.send().promise.await.expect("answering the app's close");
    });
}
