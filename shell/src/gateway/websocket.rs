//! WebSockets on a session origin: the browser's handshake is answered here, and messages
//! (not frames) cross to the grain through `WebSession.openWebSocket`.

use crate::server::http::{full, response, Resp};
use crate::server::Server;
use async_tungstenite::tungstenite::handshake::derive_accept_key;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use async_tungstenite::tungstenite::Message;
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use granary_bridge::limits::MAX_WS_MESSAGE;
use granary_schema::web_session_capnp::{web_session, web_socket_peer};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use std::pin::Pin;
use std::task::{Context, Poll};

/// How long the gateway waits for the grain's answer to a browser's Close.
const CLOSE_ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub fn is_upgrade(req: &Request<Incoming>) -> bool {
    let has = |name: header::HeaderName, token: &str| {
        req.headers().get_all(name).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    req.method() == hyper::Method::GET && has(header::CONNECTION, "upgrade") && has(header::UPGRADE, "websocket")
}

/// Messages from the grain, queued for the browser.
struct ToBrowser {
    tx: mpsc::Sender<Message>,
}

impl web_socket_peer::Server for ToBrowser {
    async fn send(self: capnp::capability::Rc<Self>, params: web_socket_peer::SendParams) -> Result<(), capnp::Error> {
        use web_socket_peer::message::Which;
        let m = params.get()?.get_message()?;
        let msg = match m.which().map_err(|e| capnp::Error::failed(format!("unknown message kind {}", e.0)))? {
            Which::Text(t) => Message::text(t?.to_str()?.to_owned()),
            Which::Binary(b) => Message::binary(b?.to_vec()),
            Which::Ping(b) => Message::Ping(b?.to_vec().into()),
            Which::Pong(b) => Message::Pong(b?.to_vec().into()),
        };
        self.tx.clone().send(msg).await.map_err(|_| capnp::Error::disconnected("the browser closed the WebSocket".into()))
    }

    async fn close(self: capnp::capability::Rc<Self>, params: web_socket_peer::CloseParams, _: web_socket_peer::CloseResults) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let frame = CloseFrame { code: CloseCode::from(p.get_code()), reason: p.get_reason()?.to_str()?.to_owned().into() };
        let _ = self.tx.clone().send(Message::Close(Some(frame))).await;
        Ok(())
    }
}

/// Answers the browser's upgrade after the grain accepted the WebSocket.
pub async fn open(server: &Server, ws: web_session::Client, req: Request<Incoming>, grain_id: &str) -> Resp {
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).map(|k| derive_accept_key(k.as_bytes())) else {
        return response(StatusCode::BAD_REQUEST, "text/plain; charset=utf-8", "missing Sec-WebSocket-Key\n");
    };
    let (tx, mut from_grain) = mpsc::channel::<Message>(16);
    let mut call = ws.open_web_socket_request();
    {
        let mut p = call.get();
        let mut r = p.reborrow().init_request();
        super::proxy::write_request(r.reborrow(), req.method(), req.uri(), req.headers());
        r.init_body().set_none(());
        p.set_client(capnp_rpc::new_client(ToBrowser { tx }));
    }
    let reply = match call.send().promise.await {
        Ok(r) => r,
        Err(e) => {
            tracing::info!("WebSocket refused by the grain: {e}");
            return response(StatusCode::BAD_GATEWAY, "text/plain; charset=utf-8", "The app did not answer.\n");
        }
    };
    let (status, protocol, to_grain, refusal) = {
        let Ok(r) = reply.get() else { return response(StatusCode::BAD_GATEWAY, "text/plain", "bad reply\n") };
        let Ok(resp) = r.get_response() else { return response(StatusCode::BAD_GATEWAY, "text/plain", "bad reply\n") };
        let protocol = resp
            .get_headers()
            .ok()
            .and_then(|hs| hs.iter().find(|h| h.get_name().ok().and_then(|n| n.to_str().ok()).is_some_and(|n| n.eq_ignore_ascii_case("sec-websocket-protocol"))))
            .and_then(|h| h.get_value().ok().map(|v| v.to_vec()));
        let inline = match resp.get_body().which() {
            Ok(granary_schema::web_session_capnp::response::body::Which::Inline(Ok(d))) => d.to_vec(),
            _ => Vec::new(),
        };
        (resp.get_status(), protocol, r.get_server().ok(), inline)
    };
    let Some(to_grain) = to_grain.filter(|_| status == 101) else {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
        let mut r = Response::new(full(refusal));
        *r.status_mut() = code;
        return r;
    };
    let mut r = response(StatusCode::SWITCHING_PROTOCOLS, "text/plain", "");
    r.headers_mut().remove(header::CONTENT_TYPE);
    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    r.headers_mut().insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    r.headers_mut().insert(header::SEC_WEBSOCKET_ACCEPT, HeaderValue::from_str(&key).expect("base64"));
    if let Some(p) = protocol.and_then(|p| HeaderValue::from_bytes(&p).ok()) {
        r.headers_mut().insert(header::SEC_WEBSOCKET_PROTOCOL, p);
    }
    // Messages either way are use of the grain: its supervisor must not stop it for idleness
    // while they flow (the runner sends keepAlive at most every min(30 s, idle / 4)).
    let me = server.me();
    let grain = grain_id.to_owned();
    let in_use = move || {
        if let Some(server) = me.upgrade() {
            server.runner.keep_alive(&server.ex, &grain, server.grain_core(&grain));
        }
    };
    server.spawn(async move {
        let upgraded = match hyper::upgrade::on(req).await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!("WebSocket upgrade failed: {e}");
                return;
            }
        };
        let config = WebSocketConfig::default().max_message_size(Some(MAX_WS_MESSAGE)).max_frame_size(Some(MAX_WS_MESSAGE));
        let stream = async_tungstenite::WebSocketStream::from_raw_socket(HyperIo(upgraded), Role::Server, Some(config)).await;
        let (mut browser_tx, mut browser_rx) = stream.split();
        let outbound = async {
            while let Some(m) = from_grain.next().await {
                in_use();
                let closing = matches!(m, Message::Close(_));
                if browser_tx.send(m).await.is_err() || closing {
                    break;
                }
            }
        };
        // Ends with true when the browser sent its Close (passed on to the grain).
        let inbound = async {
            while let Some(Ok(m)) = browser_rx.next().await {
                in_use();
                let mut req = to_grain.send_request();
                {
                    let mut msg = req.get().init_message();
                    match m {
                        Message::Text(t) => msg.set_text(t.as_str()),
                        Message::Binary(b) => msg.set_binary(&b),
                        // Pings are answered here (tungstenite queues the pong); pongs end here.
                        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                        Message::Close(frame) => {
                            let mut c = to_grain.close_request();
                            let (code, reason) = frame.map(|f| (u16::from(f.code), f.reason.to_string())).unwrap_or((1000, String::new()));
                            c.get().set_code(code);
                            c.get().set_reason(reason.as_str());
                            let _ = c.send().promise.await;
                            return true;
                        }
                    }
                }
                if req.send().await.is_err() {
                    break;
                }
            }
            false
        };
        {
            futures::pin_mut!(outbound, inbound);
            if let futures::future::Either::Right((true, outbound)) = futures::future::select(outbound, inbound).await {
                // The browser closed: let the grain's answer (its `close`) through, for a
                // while. Returning at once would drop the connection without a Close frame.
                let timeout = async_io::Timer::after(CLOSE_ANSWER_TIMEOUT);
                futures::pin_mut!(timeout);
                futures::future::select(outbound, timeout).await;
            }
        }
        // tungstenite answers a browser's Close itself (echoing it, so sending the grain's
        // answer fails), but only writes that answer on the next flush: flush before the
        // connection is dropped, or the browser sees no closing handshake.
        let _ = SinkExt::flush(&mut browser_tx).await;
    });
    r
}

/// hyper's upgraded connection as a futures-io stream (what async-tungstenite reads).
struct HyperIo(hyper::upgrade::Upgraded);

impl futures::AsyncRead for HyperIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<std::io::Result<usize>> {
        let mut rb = hyper::rt::ReadBuf::new(buf);
        match hyper::rt::Read::poll_read(Pin::new(&mut self.0), cx, rb.unfilled()) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(rb.filled().len())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl futures::AsyncWrite for HyperIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        hyper::rt::Write::poll_write(Pin::new(&mut self.0), cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        hyper::rt::Write::poll_flush(Pin::new(&mut self.0), cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        hyper::rt::Write::poll_shutdown(Pin::new(&mut self.0), cx)
    }
}
