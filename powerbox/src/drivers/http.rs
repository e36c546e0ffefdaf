//! The HTTP driver: a `WebSession` that sends every request to one origin under one path
//! prefix, from the server process, through the SSRF guard ([`super::ssrf`]).
//!
//! Per request: the path must stay under the prefix (no `.`/`..` segment however encoded), a
//! `Host` header must name the origin's host, the header limits of the WebSession contract
//! hold; then the host is resolved and checked once, the server connects to exactly that
//! address (10 s connect timeout; for `https://`, TLS with the certificate checked against the
//! origin's host, [`super::tls`]), sends `Host: <origin host>` and waits at most 30 s for the
//! response head. Refusals and failures are responses whose `text/plain` body starts
//! `granary-http-driver: `: 400 (bad request, path escaping the prefix), 403 (another host,
//! an address the SSRF guard refuses), 414, 431, 502 (cannot resolve or connect, the origin
//! failed), 504 (timeouts). Redirects are returned, never followed. One connection per
//! request (no pool).

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant};

use async_executor::LocalExecutor;
use async_io::{Async, Timer};
use granary_schema::web_session_capnp::{header, request, response, web_session};
use http_body::Body;
use http_body_util::BodyExt;
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH, HOST};
use hyper::{Method, Uri};
use smol_hyper::rt::FuturesIo;

// The bridge's body plumbing, which carries app bodies the same way (one implementation).
use granary_bridge::body::{pump_response, ReqBody as OutBody, RequestBodySink};
// The same header rules, limits and path check the bridge applies to apps.
use granary_bridge::headers::{connection_tokens, is_hop_by_hop, response_headers};
use granary_bridge::limits::{MAX_HEADER_COUNT, MAX_HEADER_FIELD, MAX_HEADER_TOTAL};
use granary_bridge::session::{has_dot_segment, write_head};
use super::ssrf::NetPolicy;
use super::tls;
use super::DriverError;

/// Time allowed to open the TCP connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time the origin may stay silent — no response head, and not reading the request body —
/// before the driver gives up (a long upload is not cut off while the origin reads it).
pub const RESPONSE_HEAD_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_PATH: usize = 8 * 1024;
const MAX_INLINE_BODY: usize = 64 * 1024;
const UNKNOWN_LENGTH: u64 = u64::MAX;

/// Request headers the driver sets itself (hop-by-hop headers, and those named in Connection,
/// are dropped both ways as the bridge drops them).
const REPLACED: &[&str] = &["host", "content-length", "expect"];

/// An HTTP origin: scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `true` for https.
    pub https: bool,
    /// Lower-case host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// The port, defaulted from the scheme.
    pub port: u16,
}

impl Origin {
    fn default_port(&self) -> u16 {
        if self.https { 443 } else { 80 }
    }

    /// The `Host` header value: host, and the port if not the scheme's default.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        if self.port == self.default_port() { host } else { format!("{host}:{}", self.port) }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", if self.https { "https" } else { "http" }, self.authority())
    }
}

/// Parses `http://host[:port]` or `https://host[:port]` (one trailing `/` allowed). Refuses other schemes, user info,
/// paths, queries and fragments.
pub fn parse_origin(s: &str) -> Result<Origin, DriverError> {
    let bad = |why: &str| DriverError::BadOrigin { origin: s.to_string(), why: why.to_string() };
    let (scheme, rest) = s.split_once("://").ok_or_else(|| bad("no scheme"))?;
    let https = match scheme.to_ascii_lowercase().as_str() {
        "http" => false,
        "https" => true,
        _ => return Err(bad("the scheme must be http or https")),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('@') {
        return Err(bad("user info (user@) is not allowed"));
    }
    if rest.contains(['/', '?', '#', '\\']) {
        return Err(bad("an origin has no path, query or fragment"));
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed [ in the host"))?;
        h.parse::<std::net::Ipv6Addr>().map_err(|_| bad("invalid IPv6 address"))?;
        (h, if after.is_empty() { None } else { Some(after.strip_prefix(':').unwrap_or(after)) })
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if host.is_empty() || (!host.contains(':') && !host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')) {
        return Err(bad("invalid host name"));
    }
    let port = match port {
        None => if https { 443 } else { 80 },
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| bad("invalid port"))?,
    };
    Ok(Origin { https, host: host.to_ascii_lowercase(), port })
}

/// A `WebSession` reaching `origin` under `path_prefix` (empty, or starting with `/`; a
/// trailing `/` is ignored). Connections are checked against `policy` as it is at each
/// request; background work (connections, response bodies) runs on `executor`.
pub fn http_session(
    origin: Origin,
    path_prefix: String,
    policy: Rc<RefCell<NetPolicy>>,
    executor: Rc<LocalExecutor<'static>>,
) -> web_session::Client {
    let path_prefix = path_prefix.trim_end_matches('/').to_string();
    capnp_rpc::new_client(HttpDriver { origin, path_prefix, policy, executor, head_timeout: RESPONSE_HEAD_TIMEOUT })
}

struct HttpDriver {
    origin: Origin,
    path_prefix: String,
    policy: Rc<RefCell<NetPolicy>>,
    executor: Rc<LocalExecutor<'static>>,
    /// [`RESPONSE_HEAD_TIMEOUT`], shorter in tests.
    head_timeout: Duration,
}

/// A request answered by the driver itself: status and reason.
type Refusal = (u16, String);

enum Plan {
    None,
    Inline(Bytes),
    Streamed(Option<u64>),
}

impl HttpDriver {
    fn prepare(&self, req: request::Reader<'_>) -> Result<(Method, Uri, HeaderMap, Plan), Refusal> {
        let bad = |why: &str| (400, why.to_string());
        let method = req.get_method().ok().and_then(|m| m.to_str().ok()).ok_or_else(|| bad("missing method"))?;
        let method = Method::from_bytes(method.as_bytes()).map_err(|_| bad("invalid method token"))?;
        let path = req.get_path().ok().and_then(|p| p.to_str().ok()).ok_or_else(|| bad("missing or non-UTF-8 path"))?;
        if path.len() > MAX_PATH {
            return Err((414, format!("the path is longer than {MAX_PATH} bytes")));
        }
        if !path.starts_with('/') {
            return Err(bad("the path must start with /"));
        }
        let full = format!("{}{path}", self.path_prefix);
        if !self.path_prefix.is_empty() && !self.path_prefix.starts_with('/') {
            return Err((500, format!("this capability's path prefix {:?} does not start with /; ask the user to grant it again", self.path_prefix)));
        }
        if has_dot_segment(&full) {
            return Err(bad(&format!("the path may not contain . or .. segments: this capability reaches only {}{}/", self.origin, self.path_prefix)));
        }
        let uri: Uri = full.parse().map_err(|_| bad("invalid path"))?;
        if uri.scheme().is_some() || uri.authority().is_some() {
            return Err(bad("invalid path"));
        }
        let list = req.get_headers().map_err(|_| bad("malformed header list"))?;
        let mut headers = self.request_headers(list)?;
        headers.insert(HOST, HeaderValue::from_str(&self.origin.authority()).map_err(|_| bad("invalid host"))?);
        let plan = match req.get_body().which().map_err(|_| bad("unknown body kind"))? {
            request::body::None(()) => Plan::None,
            request::body::Inline(data) => {
                let data = data.map_err(|_| bad("malformed body"))?;
                if data.len() > MAX_INLINE_BODY {
                    return Err((413, format!("an inline body is limited to {MAX_INLINE_BODY} bytes")));
                }
                Plan::Inline(Bytes::copy_from_slice(data))
            }
            request::body::Streamed(n) => Plan::Streamed((n != UNKNOWN_LENGTH).then_some(n)),
        };
        match &plan {
            Plan::Inline(b) => drop(headers.insert(CONTENT_LENGTH, HeaderValue::from(b.len()))),
            Plan::Streamed(Some(n)) => drop(headers.insert(CONTENT_LENGTH, HeaderValue::from(*n))),
            _ => {}
        }
        Ok((method, uri, headers, plan))
    }

    /// The caller's headers minus hop-by-hop and framing ones; refuses a `Host` naming another
    /// host (403) and headers over the limits (431) or malformed (400).
    fn request_headers(&self, list: capnp::struct_list::Reader<'_, header::Owned>) -> Result<HeaderMap, Refusal> {
        let bad = || (400, "malformed header".to_string());
        let big = || (431, "request headers too large".to_string());
        if list.len() as usize > MAX_HEADER_COUNT {
            return Err(big());
        }
        let mut fields = Vec::with_capacity(list.len() as usize);
        let mut total = 0;
        for h in list.iter() {
            let name = h.get_name().map_err(|_| bad())?.as_bytes();
            let value = h.get_value().map_err(|_| bad())?;
            total += name.len() + value.len();
            if name.len() + value.len() > MAX_HEADER_FIELD || total > MAX_HEADER_TOTAL {
                return Err(big());
            }
            let name = HeaderName::from_bytes(name).map_err(|_| bad())?;
            let value = HeaderValue::from_bytes(value).map_err(|_| bad())?;
            if name == HOST && !self.is_own_host(&value) {
                return Err((403, format!("the Host header names another host: this capability reaches only {}", self.origin)));
            }
            fields.push((name, value));
        }
        let hop = connection_tokens(fields.iter().map(|(n, v)| (n, v)));
        let mut map = HeaderMap::with_capacity(fields.len() + 2);
        for (name, value) in fields {
            let n = name.as_str();
            if is_hop_by_hop(&name) || REPLACED.contains(&n) || n.starts_with("x-granary-") || hop.contains(&name) {
                continue;
            }
            map.append(name, value);
        }
        Ok(map)
    }

    /// Whether a `Host` value names this origin (its host, and its port if one is given).
    fn is_own_host(&self, value: &HeaderValue) -> bool {
        let Ok(v) = value.to_str() else { return false };
        let v = v.trim().to_ascii_lowercase();
        let host = if self.origin.host.contains(':') { format!("[{}]", self.origin.host) } else { self.origin.host.clone() };
        v == self.origin.authority() || v == format!("{host}:{}", self.origin.port)
    }

    async fn handle(&self, params: web_session::RequestParams, mut results: web_session::RequestResults) -> capnp::Result<()> {
        let p = params.get()?;
        let response_body = p.get_response_body()?;
        let (method, uri, headers, plan) = match self.prepare(p.get_request()?) {
            Ok(p) => p,
            Err((status, why)) => return refused(&mut results, status, &why),
        };
        // A streamed body's sink is handed out before anything is awaited. Writes the caller
        // pipelined meanwhile are queued by capnp-rpc and, once the pipeline is set, dispatched
        // in the order their tasks are next polled: in arrival order only when that happens
        // before any wake-up (waiting for the address first let a later write overtake the
        // first). A request refused below drops the sink's other end unread: nothing of the
        // body reaches any origin.
        let body = match plan {
            Plan::None => OutBody::Empty,
            Plan::Inline(b) => OutBody::Full(Some(b)),
            Plan::Streamed(len) => {
                // No size limit of its own: the origin decides what it accepts.
                let (sink, body) = RequestBodySink::new(len, u64::MAX);
                results.get().set_request_body(capnp_rpc::new_client(sink));
                results.set_pipeline()?;
                OutBody::Stream(body)
            }
        };
        let policy = self.policy.borrow().clone();
        let roots = policy.extra_root_certs.clone();
        let (host, port) = (self.origin.host.clone(), self.origin.port);
        let addr = match blocking::unblock(move || policy.resolve_checked(&host, port)).await {
            Ok(a) => a,
            Err(e @ DriverError::PrivateAddress { .. }) => return refused(&mut results, 403, &e.to_string()),
            Err(e) => return refused(&mut results, 502, &e.to_string()),
        };
        let mut req = hyper::Request::new(body);
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;
        let resp = match self.exchange(addr, &roots, req).await {
            Ok(r) => r,
            Err((status, why)) => return refused(&mut results, status, &why),
        };
        let (parts, body) = resp.into_parts();
        let none = body.is_end_stream();
        let hint = body.size_hint().exact();
        let Ok(headers) = response_headers(&parts.headers, none) else {
            return refused(&mut results, 502, "the origin's response headers are too large");
        };
        let mut r = results.get().init_response();
        if none {
            write_head(r.reborrow(), parts.status.as_u16(), &headers);
            r.init_body().set_none(());
        } else if hint.is_some_and(|n| n <= MAX_INLINE_BODY as u64) {
            match body.collect().await {
                Ok(b) => {
                    write_head(r.reborrow(), parts.status.as_u16(), &headers);
                    r.init_body().set_inline(&b.to_bytes());
                }
                Err(e) => refuse(r, 502, &format!("the origin failed while sending its response: {e}")),
            }
        } else {
            write_head(r.reborrow(), parts.status.as_u16(), &headers);
            r.init_body().set_streamed(hint.unwrap_or(UNKNOWN_LENGTH));
            // On failure the stream is dropped without done(): the caller sees it cut short.
            self.executor.spawn(async move { let _ = pump_response(body, response_body).await; }).detach();
        }
        Ok(())
    }

    /// Connects to `addr` (with TLS for https, trusting also `roots`) and sends `req`, with
    /// the connect and response-head timeouts.
    async fn exchange(&self, addr: SocketAddr, roots: &[Vec<u8>], req: hyper::Request<OutBody>) -> Result<hyper::Response<Incoming>, Refusal> {
        let tcp = match timeout(CONNECT_TIMEOUT, Async::<TcpStream>::connect(addr)).await {
            Some(Ok(t)) => t,
            Some(Err(e)) => return Err((502, DriverError::Connect { addr, why: e.to_string() }.to_string())),
            None => return Err((504, format!("connecting to {} ({addr}) timed out after {} s", self.origin, CONNECT_TIMEOUT.as_secs()))),
        };
        let _ = tcp.get_ref().set_nodelay(true);
        if !self.origin.https {
            return self.send_over(FuturesIo::new(tcp), req).await;
        }
        let config = tls::client_config(roots).map_err(|e| (502, e.to_string()))?;
        match timeout(CONNECT_TIMEOUT, tls::connect(config, &self.origin.host, tcp)).await {
            Some(Ok(t)) => self.send_over(FuturesIo::new(t), req).await,
            Some(Err(e)) => Err((502, format!("the TLS handshake with {} failed: {e}", self.origin))),
            None => Err((504, format!("the TLS handshake with {} timed out after {} s", self.origin, CONNECT_TIMEOUT.as_secs()))),
        }
    }

    /// One HTTP/1.1 exchange on a fresh connection.
    async fn send_over<T>(&self, io: FuturesIo<T>, req: hyper::Request<OutBody>) -> Result<hyper::Response<Incoming>, Refusal>
    where
        T: futures::AsyncRead + futures::AsyncWrite + Unpin + 'static,
    {
        let (mut sender, conn) = http1::Builder::new()
            .max_headers(MAX_HEADER_COUNT)
            .max_buf_size(MAX_HEADER_TOTAL + 16 * 1024)
            .handshake(io)
            .await
            .map_err(|e| (502, format!("HTTP handshake with {} failed: {e}", self.origin)))?;
        self.executor.spawn(async move { let _ = conn.await; }).detach();
        // The silence clock restarts whenever the origin takes a chunk of the request body.
        let progress = req.body().progress();
        let started = Instant::now();
        let quiet_since = || progress.as_ref().and_then(|p| p.last_progress()).map_or(started, |t| t.max(started));
        let mut send = std::pin::pin!(sender.send_request(req));
        loop {
            let timer = std::pin::pin!(Timer::at(quiet_since() + self.head_timeout));
            match futures::future::select(send.as_mut(), timer).await {
                futures::future::Either::Left((Ok(r), _)) => return Ok(r),
                futures::future::Either::Left((Err(e), _)) => {
                    return Err((502, format!("{} failed before completing its response headers: {e}", self.origin)))
                }
                futures::future::Either::Right(_) if quiet_since() + self.head_timeout <= Instant::now() => {
                    let secs = self.head_timeout.as_secs_f32();
                    return Err((504, format!("{} sent no response headers and read nothing for {secs} s", self.origin)));
                }
                futures::future::Either::Right(_) => {}
            }
        }
    }
}

impl web_session::Server for HttpDriver {
    async fn request(self: capnp::capability::Rc<Self>, params: web_session::RequestParams, results: web_session::RequestResults) -> Result<(), capnp::Error> {
        self.handle(params, results).await
    }

    async fn open_web_socket(
        self: capnp::capability::Rc<Self>,
        _: web_session::OpenWebSocketParams,
        _: web_session::OpenWebSocketResults,
    ) -> Result<(), capnp::Error> {
        Err(capnp::Error::unimplemented("WebSockets are not supported by the HTTP driver; use plain HTTP requests".into()))
    }
}

/// `f`'s output, or `None` if `limit` passes first.
async fn timeout<T>(limit: Duration, f: impl Future<Output = T>) -> Option<T> {
    let f = std::pin::pin!(f);
    let timer = std::pin::pin!(Timer::after(limit));
    match futures::future::select(f, timer).await {
        futures::future::Either::Left((v, _)) => Some(v),
        futures::future::Either::Right(_) => None,
    }
}

/// Answers the call with a driver-made response.
fn refused(results: &mut web_session::RequestResults, status: u16, why: &str) -> capnp::Result<()> {
    refuse(results.get().init_response(), status, why);
    Ok(())
}

/// A response made by the driver: `status` with a plain-text body naming the reason.
fn refuse(mut r: response::Builder<'_>, status: u16, why: &str) {
    let ct = HeaderValue::from_static("text/plain; charset=utf-8");
    write_head(r.reborrow(), status, &[(&hyper::header::CONTENT_TYPE, &ct)]);
    r.init_body().set_inline(format!("granary-http-driver: {why}\n").as_bytes());
}

#[cfg(test)]
#[path = "http_timeout_tests.rs"]
mod timeout_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_to_their_canonical_form() {
        assert_eq!(parse_origin("http://API.Example.com").unwrap().to_string(), "http://api.example.com");
        assert_eq!(parse_origin("HTTP://api.example.com:80/").unwrap().to_string(), "http://api.example.com");
        let o = parse_origin("http://api.test:8080").unwrap();
        assert_eq!((o.host.as_str(), o.port, o.to_string().as_str()), ("api.test", 8080, "http://api.test:8080"));
        assert_eq!(parse_origin("http://[::1]:81").unwrap().to_string(), "http://[::1]:81");
        assert_eq!(parse_origin("http://[::1]").unwrap().port, 80);
    }

    #[test]
    fn origins_with_more_than_an_origin_are_refused() {
        for s in ["ftp://x", "x.com", "http://", "http://a@b.com", "http://a.com/path", "http://a.com?q", "http://a.com#f",
            "http://a.com:0", "http://a.com:99999", "http://a.com:x", "http://a b.com", "http://[::1", "http://[zz]"] {
            assert!(matches!(parse_origin(s), Err(DriverError::BadOrigin { .. })), "{s}");
        }
        assert_eq!(parse_origin("https://a.com:443").unwrap().to_string(), "https://a.com");
        assert_eq!(parse_origin("https://a.com:80").unwrap().to_string(), "https://a.com:80");
    }
}
