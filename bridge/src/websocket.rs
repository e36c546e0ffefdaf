//! `WebSession.openWebSocket`: a WebSocket to the app, carried as whole messages.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use async_tungstenite::tungstenite::handshake::client::generate_key;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message};
use async_tungstenite::{WebSocketReceiver, WebSocketSender};
use futures::stream::StreamExt;
use granary_schema::web_session_capnp::{web_session, web_socket_peer};
use hyper::header::{HeaderName, HeaderValue};

use crate::headers::response_headers;
use crate::pool::AppStream;
use crate::limits::{MAX_INLINE_BODY, MAX_WS_CLOSE_REASON, MAX_WS_CONTROL, MAX_WS_MESSAGE};
use crate::session::{refuse, write_head, WebSessionImpl};


/// Request headers that belong to the caller's own handshake, not to the app's.
const HANDSHAKE: &[&str] = &["sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions", "sec-websocket-accept"];

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().max_message_size(Some(MAX_WS_MESSAGE)).max_frame_size(Some(MAX_WS_MESSAGE))
}

pub(crate) async fn open(
    session: &WebSessionImpl,
    params: web_session::OpenWebSocketParams,
    mut results: web_session::OpenWebSocketResults,
) -> capnp::Result<()> {
    let p = params.get()?;
    let client = p.get_client()?;
    let req = p.get_request()?;
    let prepared = match session.prepare(req) {
        Ok(p) if p.method != hyper::Method::GET => Err((400, "a WebSocket is opened with GET".to_string())),
        Ok(p) if p.headers.contains_key(hyper::header::CONTENT_LENGTH) => Err((400, "a WebSocket request has no body".into())),
        other => other,
    };
    let mut prepared = match prepared {
        Ok(p) => p,
        Err((status, why)) => {
            refuse(results.get().init_response(), status, &why);
            return Ok(());
        }
    };
    let app = &session.bridge.app;
    for h in HANDSHAKE {
        prepared.headers.remove(*h);
    }
    let h = &mut prepared.headers;
    h.insert(hyper::header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(hyper::header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(hyper::header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
    h.insert(hyper::header::SEC_WEBSOCKET_KEY, HeaderValue::from_str(&generate_key()).expect("base64 key"));
    let uri = format!("ws://{}{}", app.addr(), prepared.uri);
    let mut request = hyper::Request::new(());
    *request.uri_mut() = match uri.parse() {
        Ok(u) => u,
        Err(_) => {
            refuse(results.get().init_response(), 400, "invalid path");
            return Ok(());
        }
    };
    *request.headers_mut() = prepared.headers;

    let tcp = match app.connect_tcp().await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("granary-bridge: 502: {e}");
            refuse(results.get().init_response(), 502, "the app did not answer");
            return Ok(());
        }
    };
    let (ws, response) = match async_tungstenite::client_async_with_config(request, tcp, Some(ws_config())).await {
        Ok(x) => x,
        Err(WsError::Http(refusal)) => {
            let (parts, body) = refusal.into_parts();
            let mut body = body.unwrap_or_default();
            body.truncate(MAX_INLINE_BODY);
            let none = body.is_empty();
            let Ok(headers) = response_headers(&parts.headers, none) else {
                refuse(results.get().init_response(), 502, "the app's response headers are too large");
                return Ok(());
            };
            let mut r = results.get().init_response();
            write_head(r.reborrow(), parts.status.as_u16(), &headers);
            if none {
                r.init_body().set_none(());
            } else {
                r.init_body().set_inline(&body);
            }
            return Ok(());
        }
        Err(e) => {
            eprintln!("granary-bridge: 502: WebSocket handshake with the app failed: {e}");
            refuse(results.get().init_response(), 502, "the app's WebSocket handshake failed");
            return Ok(());
        }
    };

    let accept = HeaderName::from_static("sec-websocket-accept");
    let headers = response_headers(response.headers(), true).unwrap_or_default();
    let headers: Vec<_> = headers.into_iter().filter(|(n, _)| **n != accept).collect();
    let mut r = results.get().init_response();
    write_head(r.reborrow(), 101, &headers);
    r.init_body().set_none(());

    let (sink, stream) = ws.split();
    let app_closed = Rc::new(Cell::new(false));
    let pump = app.executor().spawn(pump_to_client(stream, client, app_closed.clone()));
    let server = AppPeer { sink: RefCell::new(Some(sink)), app_closed, closed: Cell::new(false), _pump: pump };
    results.get().set_server(capnp_rpc::new_client(server));
    Ok(())
}

/// Messages from the app to the caller's `client` peer, each send awaited.
async fn pump_to_client(mut stream: WebSocketReceiver<AppStream>, client: web_socket_peer::Client, app_closed: Rc<Cell<bool>>) {
    while let Some(msg) = stream.next().await {
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                eprintln!("granary-bridge: WebSocket from the app failed: {e}");
                return; // dropping `client` without close: abnormal closure
            }
        };
        if let Message::Close(frame) = msg {
            app_closed.set(true);
            let (code, reason) = frame.map_or((1005, String::new()), |f| (u16::from(f.code), f.reason.to_string()));
            let mut req = client.close_request();
            req.get().set_code(code);
            req.get().set_reason(reason.as_str());
            let _ = req.send().promise.await;
            return;
        }
        let mut req = client.send_request();
        let mut m = req.get().init_message();
        match msg {
            Message::Text(t) => m.set_text(t.as_str()),
            Message::Binary(b) => m.set_binary(&b),
            // The app's pings are answered by the bridge (tungstenite) and not forwarded: they
            // keep the bridge-app hop alive, and forwarding would make the app get two pongs.
            Message::Ping(_) => continue,
            Message::Pong(b) => m.set_pong(&b),
            Message::Close(_) | Message::Frame(_) => continue,
        }
        if let Err(e) = req.send().await {
            eprintln!("granary-bridge: WebSocket client went away: {e}");
            return;
        }
    }
}

/// The `server` peer handed to the caller: its calls become frames to the app.
struct AppPeer {
    sink: RefCell<Option<WebSocketSender<AppStream>>>,
    app_closed: Rc<Cell<bool>>,
    closed: Cell<bool>,
    /// Dropping the peer cancels the pump and closes the app's connection.
    _pump: async_executor::Task<()>,
}

impl AppPeer {
    async fn deliver(&self, msg: Message) -> capnp::Result<()> {
        // Streaming calls on one capability are delivered one at a time, so the sink is
        // never taken twice; `close` is queued behind pending sends by capnp-rpc.
        let mut sink = self.sink.borrow_mut().take().ok_or_else(|| capnp::Error::failed("the WebSocket is closed".into()))?;
        let sent = sink.send(msg).await;
        *self.sink.borrow_mut() = Some(sink);
        sent.map_err(|e| capnp::Error::disconnected(format!("WebSocket to the app failed: {e}")))
    }
}

impl web_socket_peer::Server for AppPeer {
    async fn send(self: capnp::capability::Rc<Self>, params: web_socket_peer::SendParams) -> Result<(), capnp::Error> {
        if self.closed.get() {
            return Err(capnp::Error::failed("send after close".into()));
        }
        use web_socket_peer::message::Which;
        let msg = match params.get()?.get_message()?.which()? {
            Which::Text(t) => Message::text(t?.to_str()?),
            Which::Binary(b) => Message::binary(b?.to_vec()),
            Which::Ping(b) => Message::Ping(control(b?)?.into()),
            Which::Pong(b) => Message::Pong(control(b?)?.into()),
        };
        if msg.len() > MAX_WS_MESSAGE {
            return Err(capnp::Error::failed(format!("a WebSocket message is limited to {MAX_WS_MESSAGE} bytes")));
        }
        self.deliver(msg).await
    }

    async fn close(
        self: capnp::capability::Rc<Self>,
        params: web_socket_peer::CloseParams,
        _: web_socket_peer::CloseResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let (code, reason) = (p.get_code(), p.get_reason()?.to_str()?);
        if !(code == 1000 || (1001..=1014).contains(&code) && code != 1005 && code != 1006 || (3000..=4999).contains(&code)) {
            return Err(capnp::Error::failed(format!("{code} is not a close code that can be sent")));
        }
        if reason.len() > MAX_WS_CLOSE_REASON {
            return Err(capnp::Error::failed(format!("a close reason is limited to {MAX_WS_CLOSE_REASON} bytes")));
        }
        if self.closed.replace(true) || self.app_closed.get() {
            // The app closed first: its WebSocket library already answered.
            return Ok(());
        }
        self.deliver(Message::Close(Some(CloseFrame { code: CloseCode::from(code), reason: reason.into() }))).await
    }
}

fn control(b: &[u8]) -> capnp::Result<Vec<u8>> {
    if b.len() > MAX_WS_CONTROL {
        return Err(capnp::Error::failed(format!("ping and pong payloads are limited to {MAX_WS_CONTROL} bytes")));
    }
    Ok(b.to_vec())
}
