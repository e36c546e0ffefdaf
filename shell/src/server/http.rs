//! HTTP plumbing: the accept loop (hyper 1 over async-io), the request as handlers see it,
//! and response helpers that add the shell's security headers.

use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use std::collections::HashMap;
use std::net::SocketAddr;

/// Any response body: a whole one (pages) or a stream (grain responses).
/// Not `Send`: grain response bodies are fed by capnp objects of the single-threaded executor.
pub type Body = std::pin::Pin<Box<dyn hyper::body::Body<Data = Bytes, Error = BoxError>>>;
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Resp = Response<Body>;

/// A whole body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Box::pin(Full::new(bytes.into()).map_err(|never| match never {}))
}

/// Largest form body the shell reads.
pub const MAX_FORM_BYTES: usize = 64 * 1024;
/// How much of a too-large body is read and discarded before the connection is dropped.
pub const DRAIN_BYTES: usize = 1024 * 1024;
/// Largest request head hyper accepts (request line + headers).
/// (8 KiB of request line + the WebSession limit of 64 KiB of headers, with room to spare;
/// the bridge enforces the per-header and total limits with 431.)
pub const MAX_HEAD_BYTES: usize = 80 * 1024;

/// A request with its (small) body read.
pub struct Req {
    pub method: Method,
    pub path: String,
    /// The raw query string ("" when there is none).
    pub query: String,
    pub headers: HeaderMap,
    pub peer: SocketAddr,
    pub body: Bytes,
}

/// Why a request body could not be read.
pub enum BodyError {
    TooLarge,
    Broken,
}

impl Req {
    /// Reads at most [`MAX_FORM_BYTES`] of `req`'s body. A larger body is read on and
    /// discarded up to [`DRAIN_BYTES`] so the client sees the `413` instead of a reset
    /// connection.
    pub async fn read(req: hyper::Request<Incoming>, peer: SocketAddr) -> Result<Req, BodyError> {
        let (parts, mut body) = req.into_parts();
        let mut buf = Vec::new();
        let mut seen = 0usize;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return Err(BodyError::Broken) };
            if let Ok(data) = frame.into_data() {
                seen += data.len();
                if seen <= MAX_FORM_BYTES {
                    buf.extend_from_slice(&data);
                } else if seen > DRAIN_BYTES {
                    break;
                }
            }
        }
        if seen > MAX_FORM_BYTES {
            return Err(BodyError::TooLarge);
        }
        let query = parts.uri.query().unwrap_or("").to_owned();
        Ok(Req { method: parts.method, path: parts.uri.path().to_owned(), query, headers: parts.headers, peer, body: buf.into() })
    }

    /// The first value of query parameter `name`, decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
    }

    /// The value of cookie `name`.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        cookie(&self.headers, name)
    }

    /// The `application/x-www-form-urlencoded` body's fields (the first of repeated names).
    pub fn form(&self) -> HashMap<String, String> {
        let mut out = HashMap::new();
        for (k, v) in form_urlencoded::parse(&self.body) {
            out.entry(k.into_owned()).or_insert_with(|| v.into_owned());
        }
        out
    }
}

/// The value of cookie `name` in request headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A response with `body` and the given content type.
pub fn response(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

pub fn html(status: StatusCode, markup: maud::Markup) -> Resp {
    response(status, "text/html; charset=utf-8", markup.into_string())
}

/// `303 See Other` to `location` (after a form post) .
pub fn redirect(location: &str) -> Resp {
    let mut r = response(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "");
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Adds a `Set-Cookie` header.
pub fn set_cookie(r: &mut Resp, name: &str, value: &str, max_age: Option<u64>, secure: bool, same_site: &str) {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite={same_site}");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    if let Ok(v) = HeaderValue::from_str(&c) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// The headers every shell response carries.
pub fn add_security_headers(r: &mut Resp) {
    let h = r.headers_mut();
    h.entry("content-security-policy")
        .or_insert(HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
}

/// `1.5 MiB`-style sizes for people.
pub fn human_bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}
