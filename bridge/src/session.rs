//! `WebSession.request`: one HTTP exchange with the app.

use std::rc::Rc;

use granary_schema::web_session_capnp::{request, response, web_session};
use http_body::Body;
use http_body_util::BodyExt;
use hyper::body::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH, HOST};
use hyper::{Method, Uri};

use crate::body::{pump_response, ReqBody, RequestBodySink};
use crate::headers::{response_headers, SessionHeaders};
use crate::limits::{MAX_INLINE_BODY, MAX_PATH, UNKNOWN_LENGTH};
use crate::Bridge;

/// A WebSession bound to one session's identity.
pub struct WebSessionImpl {
    pub(crate) bridge: Rc<Bridge>,
    pub(crate) headers: SessionHeaders,
}

/// A request answered by the bridge itself: status and a short plain-text reason.
pub(crate) type Refusal = (u16, String);

pub(crate) enum BodyPlan {
    None,
    Inline(Bytes),
    Streamed(Option<u64>),
}

pub(crate) struct Prepared {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub(crate) body: BodyPlan,
}

impl WebSessionImpl {
    /// A session on `bridge` with these identity headers.
    pub fn new(bridge: Rc<Bridge>, headers: SessionHeaders) -> Self {
        Self { bridge, headers }
    }

    /// Checks a `Request` against the limits and turns it into what the app will get.
    pub(crate) fn prepare(&self, req: request::Reader<'_>) -> Result<Prepared, Refusal> {
        let bad = |why: &str| (400, why.to_string());
        let method = req.get_method().map_err(|_| bad("missing method"))?;
        let method = Method::from_bytes(method.as_bytes()).map_err(|_| bad("invalid method token"))?;
        let path = req.get_path().map_err(|_| bad("missing path"))?.to_str().map_err(|_| bad("path is not UTF-8"))?;
        if path.len() > MAX_PATH {
            return Err((414, format!("the path is longer than {MAX_PATH} bytes")));
        }
        if !path.starts_with('/') {
            return Err(bad("the path must start with /"));
        }
        if self.headers.api && has_dot_segment(path) {
            // `/api/../admin` would leave the API prefix once the app normalises the path.
            return Err(bad("an API path may not contain . or .. segments"));
        }
        let full = if self.headers.api { format!("{}{path}", self.bridge.config.api_path) } else { path.to_string() };
        let uri: Uri = full.parse().map_err(|_| bad("invalid path"))?;
        if uri.scheme().is_some() {
            return Err(bad("invalid path"));
        }
        let list = req.get_headers().map_err(|_| bad("malformed header list"))?;
        let mut headers = self.headers.request_headers(list).map_err(|r| {
            (r.status(), if r.status() == 431 { "request headers too large".into() } else { "malformed header".into() })
        })?;
        if !headers.contains_key(HOST) {
            headers.insert(HOST, HeaderValue::from_str(&self.bridge.app.addr().to_string()).expect("socket address"));
        }
        let limit = self.bridge.config.max_request_body;
        let too_big = || (413, format!("the request body exceeds {limit} bytes"));
        let body = match req.get_body().which().map_err(|_| bad("unknown body kind"))? {
            request::body::None(()) => BodyPlan::None,
            request::body::Inline(data) => {
                let data = data.map_err(|_| bad("malformed body"))?;
                if data.len() > MAX_INLINE_BODY {
                    return Err((413, format!("an inline body is limited to {MAX_INLINE_BODY} bytes")));
                }
                if data.len() as u64 > limit {
                    return Err(too_big());
                }
                BodyPlan::Inline(Bytes::copy_from_slice(data))
            }
            request::body::Streamed(n) if n == UNKNOWN_LENGTH => BodyPlan::Streamed(None),
            request::body::Streamed(n) if n > limit => return Err(too_big()),
            request::body::Streamed(n) => BodyPlan::Streamed(Some(n)),
        };
        let length = match &body {
            BodyPlan::Inline(b) => Some(b.len() as u64),
            BodyPlan::Streamed(n) => *n,
            BodyPlan::None => None,
        };
        if let Some(n) = length {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
        }
        Ok(Prepared { method, uri, headers, body })
    }

    pub(crate) async fn handle(&self, params: web_session::RequestParams, mut results: web_session::RequestResults) -> capnp::Result<()> {
        let p = params.get()?;
        let response_body = p.get_response_body()?;
        let mut prepared = match self.prepare(p.get_request()?) {
            Ok(p) => p,
            Err((status, why)) => {
                refuse(results.get().init_response(), status, &why);
                return Ok(());
            }
        };
        let body = match std::mem::replace(&mut prepared.body, BodyPlan::None) {
            BodyPlan::None => ReqBody::Empty,
            BodyPlan::Inline(b) => ReqBody::Full(Some(b)),
            BodyPlan::Streamed(len) => {
                let (sink, body) = RequestBodySink::new(len, self.bridge.config.max_request_body);
                results.get().set_request_body(capnp_rpc::new_client(sink));
                results.set_pipeline()?;
                ReqBody::Stream(body)
            }
        };
        if let Some((body, _)) = self.respond(prepared, body, results.get().init_response()).await {
            self.bridge
                .app
                .executor()
                .spawn(async move {
                    if let Err(e) = pump_response(body, response_body).await {
                        eprintln!("granary-bridge: response body cut short: {e}");
                    }
                })
                .detach();
        }
        Ok(())
    }

    /// Sends a prepared request with `body` to the app and writes its response (or the
    /// bridge's 502) into `out`. Returns the app's body when it must be streamed (more than
    /// 64 KiB or of unknown length), with `out`'s body already set to `streamed`.
    pub(crate) async fn respond(&self, prepared: Prepared, body: ReqBody, mut out: response::Builder<'_>) -> Option<(hyper::body::Incoming, u64)> {
        let mut req = hyper::Request::new(body);
        *req.method_mut() = prepared.method;
        *req.uri_mut() = prepared.uri;
        *req.headers_mut() = prepared.headers;
        let resp = match self.bridge.app.send(req).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("granary-bridge: 502: {e}");
                refuse(out, 502, "the app did not answer");
                return None;
            }
        };
        let (parts, body) = resp.into_parts();
        let none = body.is_end_stream();
        let hint = body.size_hint().exact();
        let Ok(headers) = response_headers(&parts.headers, none) else {
            eprintln!("granary-bridge: 502: the app's response headers exceed the limits");
            refuse(out, 502, "the app's response headers are too large");
            return None;
        };
        let status = parts.status.as_u16();
        write_head(out.reborrow(), status, &headers);
        if none {
            out.init_body().set_none(());
        } else if hint.is_some_and(|n| n <= MAX_INLINE_BODY as u64) {
            match body.collect().await {
                Ok(b) => out.init_body().set_inline(&b.to_bytes()),
                Err(e) => {
                    eprintln!("granary-bridge: 502: reading the app's response body: {e}");
                    refuse(out, 502, "the app failed while sending its response");
                }
            }
        } else {
            let length = hint.unwrap_or(UNKNOWN_LENGTH);
            out.init_body().set_streamed(length);
            return Some((body, length));
        }
        None
    }
}

impl web_session::Server for WebSessionImpl {
    async fn request(
        self: capnp::capability::Rc<Self>,
        params: web_session::RequestParams,
        results: web_session::RequestResults,
    ) -> Result<(), capnp::Error> {
        self.handle(params, results).await
    }

    async fn open_web_socket(
        self: capnp::capability::Rc<Self>,
        params: web_session::OpenWebSocketParams,
        results: web_session::OpenWebSocketResults,
    ) -> Result<(), capnp::Error> {
        crate::websocket::open(&self, params, results).await
    }
}

/// Whether the path part has a `.` or `..` segment once percent-encoded dots and (back)slashes
/// are decoded (`/a/%2e%2e/b`, `/a%2f..`); other encoded slashes (`group%2Fproject`) are fine.
pub fn has_dot_segment(path: &str) -> bool {
    let path = path.split(['?', '#']).next().unwrap_or_default().to_ascii_lowercase();
    let path = path.replace("%2f", "/").replace("%5c", "/").replace('\\', "/").replace("%2e", ".");
    path.split('/').any(|seg| seg == "." || seg == "..")
}

/// Writes status and headers into a `Response`.
pub fn write_head(mut r: response::Builder<'_>, status: u16, headers: &[(&HeaderName, &HeaderValue)]) {
    r.set_status(status);
    let mut list = r.init_headers(headers.len() as u32);
    for (i, (n, v)) in headers.iter().enumerate() {
        let mut h = list.reborrow().get(i as u32);
        h.set_name(n.as_str());
        h.set_value(v.as_bytes());
    }
}

/// A response made by the bridge: `status` with a plain-text body naming the reason.
pub(crate) fn refuse(mut r: response::Builder<'_>, status: u16, why: &str) {
    let ct = (&hyper::header::CONTENT_TYPE, &HeaderValue::from_static("text/plain; charset=utf-8"));
    write_head(r.reborrow(), status, &[(ct.0, ct.1)]);
    r.init_body().set_inline(format!("granary-bridge: {why}\n").as_bytes());
}

#[cfg(test)]
mod tests {
    use super::has_dot_segment;

    #[test]
    fn dot_segments_are_found_however_they_are_spelled() {
        for p in ["/..", "/a/../b", "/./a", "/a/%2e%2E/b", "/a/.%2e", "/a%2f..", "/a\\..\\b", "/x/%5c.."] {
            assert!(has_dot_segment(p), "{p}");
        }
        for p in ["/", "/a/b", "/a/..b/c", "/.well-known/x", "/a?x=/../", "/a/...", "/file.txt", "/projects/group%2Fproject"] {
            assert!(!has_dot_segment(p), "{p}");
        }
    }
}
