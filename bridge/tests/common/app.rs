//! The test HTTP app: a hyper server on 127.0.0.1 (random port) that the bridge talks to, with
//! one route per behaviour the bridge must carry faithfully. It can be "crashed" (every
//! connection dropped without an answer, listener closed) and restarted on the same port.

use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use async_executor::{LocalExecutor, Task};
use async_io::Async;
use async_tungstenite::tungstenite::handshake::derive_accept_key;
use async_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use async_tungstenite::tungstenite::Message;
use async_tungstenite::WebSocketStream;
use futures::StreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use smol_hyper::rt::FuturesIo;

pub type AppBody = UnsyncBoxBody<Bytes, io::Error>;
/// A request's header fields as (lowercase name, raw value).
pub type Headers = Vec<(String, Vec<u8>)>;

/// The byte at offset `i` of every generated body.
pub fn pattern(i: u64) -> u8 {
    (i % 251) as u8
}

/// `len` (at most 64 KiB) bytes of `pattern` starting at offset `off`, without a per-byte loop
/// (the tests run unoptimised and move hundreds of MiB).
pub fn pattern_slice(off: u64, len: usize) -> &'static [u8] {
    static TABLE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| (0..64 * 1024 + 251).map(pattern).collect());
    let start = (off % 251) as usize;
    &table[start..start + len]
}

pub struct TestApp {
    pub addr: SocketAddr,
    ex: Rc<LocalExecutor<'static>>,
    /// Requests that reached the app (WebSocket upgrades included).
    pub hits: Cell<u64>,
    /// Header lists of every request, in order.
    pub seen: RefCell<Vec<Headers>>,
    tasks: RefCell<Vec<Task<()>>>,
}

impl TestApp {
    pub fn start(ex: &Rc<LocalExecutor<'static>>) -> Rc<Self> {
        let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap();
        let addr = listener.get_ref().local_addr().unwrap();
        let app = Rc::new(Self { addr, ex: ex.clone(), hits: Cell::new(0), seen: RefCell::new(Vec::new()), tasks: RefCell::new(Vec::new()) });
        app.listen(listener);
        app
    }

    fn listen(self: &Rc<Self>, listener: Async<TcpListener>) {
        let weak = Rc::downgrade(self);
        let accept = self.ex.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let Some(app) = weak.upgrade() else { return };
                let app2 = app.clone();
                let conn = app.ex.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let app = app2.clone();
                        async move { Ok::<_, Infallible>(app.handle(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(FuturesIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
                app.tasks.borrow_mut().push(conn);
            }
        });
        self.tasks.borrow_mut().push(accept);
    }

    /// Simulates a crash: every connection is dropped without an answer and the port closes.
    pub fn crash(&self) {
        let tasks = std::mem::take(&mut *self.tasks.borrow_mut());
        drop(tasks);
    }

    /// Starts listening again on the same port (once the executor has dropped the old
    /// listener: cancelled tasks are dropped when the executor next runs them).
    pub async fn restart(self: &Rc<Self>) {
        for _ in 0..1000 {
            match Async::<TcpListener>::bind(self.addr) {
                Ok(listener) => return self.listen(listener),
                Err(_) => async_io::Timer::after(std::time::Duration::from_millis(1)).await,
            };
        }
        panic!("port {} never became free", self.addr);
    }

    pub fn last_headers(&self) -> Headers {
        self.seen.borrow().last().cloned().unwrap_or_default()
    }

    async fn handle(self: Rc<Self>, req: Request<Incoming>) -> Response<AppBody> {
        self.hits.set(self.hits.get() + 1);
        let headers: Vec<(String, Vec<u8>)> =
            req.headers().iter().map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec())).collect();
        self.seen.borrow_mut().push(headers.clone());
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let header = |name: &str| req.headers().get(name).map(|v| v.to_str().unwrap().to_string());
        match path.as_str() {
            "/echo" | "/api/echo" => {
                let method = req.method().to_string();
                let uri = req.uri().to_string();
                let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                let mut text = format!("{method} {uri} body={}\n", body.len()).into_bytes();
                for (n, v) in &headers {
                    text.extend_from_slice(n.as_bytes());
                    text.extend_from_slice(b": ");
                    text.extend_from_slice(v);
                    text.push(b'\n');
                }
                respond(200, &[], text)
            }
            // Answers after 50 ms, so that concurrent requests overlap and each needs a connection.
            "/hold" => {
                async_io::Timer::after(std::time::Duration::from_millis(50)).await;
                respond(200, &[], format!("held {query}\n").into_bytes())
            }
            "/upload" => {
                let (mut n, mut bad) = (0u64, 0u64);
                let mut body = req.into_body();
                while let Some(frame) = body.frame().await {
                    let Ok(frame) = frame else { return respond(400, &[], b"cut short".to_vec()) };
                    if let Ok(data) = frame.into_data() {
                        for piece in data.chunks(64 * 1024) {
                            bad += (piece != pattern_slice(n, piece.len())) as u64;
                            n += piece.len() as u64;
                        }
                    }
                }
                respond(200, &[], format!("bytes={n} mismatches={bad}").into_bytes())
            }
            "/download" => {
                let n: u64 = query.trim_start_matches("n=").split('&').next().unwrap().parse().unwrap();
                let die_at = query.split('&').find_map(|q| q.strip_prefix("die_at=")).map(|d| d.parse::<u64>().unwrap());
                let chunked = query.contains("chunked");
                let stream = futures::stream::unfold(0u64, move |off| async move {
                    if off >= n {
                        return None;
                    }
                    if die_at.is_some_and(|d| off >= d) {
                        // Let hyper flush what it has, so the caller sees the cut mid-body.
                        async_io::Timer::after(std::time::Duration::from_millis(50)).await;
                        return Some((Err(io::Error::other("the app died")), n));
                    }
                    let len = (n - off).min(64 * 1024);
                    let chunk = pattern_slice(off, len as usize).to_vec();
                    Some((Ok(Frame::data(Bytes::from(chunk))), off + len))
                });
                let mut resp = Response::new(StreamBody::new(stream).boxed_unsync());
                if !chunked {
                    resp.headers_mut().insert("content-length", n.into());
                }
                resp
            }
            "/range" => {
                let data: Vec<u8> = (0..1000).map(pattern).collect();
                let range = header("range").and_then(|r| {
                    let (a, b) = r.strip_prefix("bytes=")?.split_once('-')?;
                    Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?))
                });
                match range {
                    Some((a, b)) if a <= b && b < 1000 => respond(
                        206,
                        &[("content-range", format!("bytes {a}-{b}/1000")), ("accept-ranges", "bytes".into())],
                        data[a..=b].to_vec(),
                    ),
                    _ => respond(200, &[("accept-ranges", "bytes".into())], data),
                }
            }
            "/etag" => {
                let etag = [("etag", "\"v1\"".to_string()), ("cache-control", "private, max-age=60".into())];
                if header("if-none-match").as_deref() == Some("\"v1\"") {
                    respond(304, &etag, Vec::new())
                } else if header("if-match").is_some_and(|m| m != "\"v1\"") {
                    respond(412, &[], Vec::new())
                } else {
                    respond(200, &etag, b"version one".to_vec())
                }
            }
            "/cookie" => respond(
                200,
                &[("set-cookie", "a=1; Path=/; HttpOnly".into()), ("set-cookie", "b=2; Max-Age=60".into())],
                header("cookie").unwrap_or_default().into_bytes(),
            ),
            "/redirect" => respond(302, &[("location", "/echo?from=redirect".into())], Vec::new()),
            "/ws" => self.websocket(req, query.strip_prefix("close=").map(|c| c.parse().unwrap())),
            "/echo-stream" => {
                // Full duplex: the response streams the request body back while it arrives.
                Response::new(req.into_body().map_err(io::Error::other).boxed_unsync())
            }
            "/big-headers" => {
                let many: Vec<(String, String)> = match query.as_str() {
                    "many" => (0..101).map(|i| (format!("x-h{i}"), "v".to_string())).collect(),
                    _ => vec![("x-big".into(), "a".repeat(17 * 1024))],
                };
                let refs: Vec<(&str, String)> = many.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
                respond(200, &refs, b"unreachable".to_vec())
            }
            "/die" => {
                self.crash();
                futures::future::pending().await
            }
            p if p.starts_with("/status/") => {
                let status: u16 = p[8..].parse().unwrap();
                respond(status, &[("x-app-status", status.to_string())], format!("status {status}").into_bytes())
            }
            _ => respond(404, &[], b"no such route".to_vec()),
        }
    }

    /// Echoes text and binary messages; with `close`, closes with that code right away.
    fn websocket(&self, mut req: Request<Incoming>, close: Option<u16>) -> Response<AppBody> {
        let Some(key) = req.headers().get("sec-websocket-key") else { return respond(400, &[], b"not a websocket".to_vec()) };
        let accept = derive_accept_key(key.as_bytes());
        let protocol = req
            .headers()
            .get("sec-websocket-protocol")
            .map(|p| p.to_str().unwrap().split(',').next().unwrap().trim().to_string());
        let upgrade = hyper::upgrade::on(&mut req);
        self.ex
            .spawn(async move {
                let Ok(upgraded) = upgrade.await else { return };
                let mut ws = WebSocketStream::from_raw_socket(UpgradedIo(upgraded), Role::Server, None).await;
                if let Some(code) = close {
                    let frame = CloseFrame { code: code.into(), reason: "server bye".into() };
                    let _ = ws.close(Some(frame)).await;
                }
                while let Some(Ok(msg)) = ws.next().await {
                    match msg {
                        echo @ (Message::Text(_) | Message::Binary(_)) => {
                            let Ok(()) = ws.send(echo).await else { return };
                        }
                        Message::Close(_) => {
                            // tungstenite answers the close; drain until it is flushed.
                            while ws.next().await.is_some() {}
                            return;
                        }
                        _ => {} // tungstenite answers pings itself
                    }
                }
            })
            .detach();
        let mut headers = vec![
            ("upgrade", "websocket".to_string()),
            ("connection", "Upgrade".into()),
            ("sec-websocket-accept", accept),
        ];
        if let Some(p) = protocol {
            headers.push(("sec-websocket-protocol", p));
        }
        respond(101, &headers, Vec::new())
    }
}

pub fn respond(status: u16, headers: &[(&str, String)], body: Vec<u8>) -> Response<AppBody> {
    let mut resp = Response::new(Full::new(Bytes::from(body)).map_err(|e: Infallible| match e {}).boxed_unsync());
    *resp.status_mut() = StatusCode::from_u16(status).unwrap();
    for (n, v) in headers {
        resp.headers_mut().append(hyper::header::HeaderName::from_bytes(n.as_bytes()).unwrap(), v.parse().unwrap());
    }
    resp
}

/// hyper's upgraded connection as a futures-io stream, for async-tungstenite.
struct UpgradedIo(hyper::upgrade::Upgraded);

impl futures::AsyncRead for UpgradedIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut rb = hyper::rt::ReadBuf::new(buf);
        match hyper::rt::Read::poll_read(Pin::new(&mut self.0), cx, rb.unfilled()) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(rb.filled().len())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl futures::AsyncWrite for UpgradedIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        hyper::rt::Write::poll_write(Pin::new(&mut self.0), cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        hyper::rt::Write::poll_flush(Pin::new(&mut self.0), cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        hyper::rt::Write::poll_shutdown(Pin::new(&mut self.0), cx)
    }
}
