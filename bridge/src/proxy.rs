//! The local API's HTTP proxy: a request in absolute form (`GET http://host/path`, as HTTP
//! clients send through `HTTP_PROXY`) with `Authorization: Bearer gs_…` goes to the granted
//! capability's `WebSession.request`, and its response comes back. The grain has no network;
//! the platform's driver behind the capability makes the real connection (and refuses hosts
//! the grant does not cover: `Host` carries the URL's authority).

use std::rc::Rc;

use capnp::capability::Client as AnyClient;
use granary_schema::web_session_capnp::{response, web_session};
use http_body::Body as _;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH, EXPECT, HOST};
use hyper::{Request, Response, StatusCode};

use crate::body::{pump_response, ReqBody, RequestBodySink};
use crate::headers::{connection_tokens, is_hop_by_hop};
use crate::limits::{MAX_INLINE_BODY, UNKNOWN_LENGTH};
use crate::local_api::{bearer_token, with_capability, ApiError, ApiResponse, TokenHeader};
use crate::Bridge;

/// What the remote gets, apart from the body.
struct RemoteRequest {
    method: String,
    /// Path and query, as in the URL.
    path: String,
    headers: Vec<(HeaderName, HeaderValue)>,
}

/// How the request body travels to the `WebSession`.
enum Outgoing {
    None,
    Inline(Bytes),
    /// Declared length (`UNKNOWN_LENGTH` if chunked) and the app's body, sent by pipelining.
    Streamed(u64, Incoming),
}

/// Sends `req` (absolute form) through the capability its bearer token names.
pub(crate) async fn forward(bridge: &Rc<Bridge>, req: Request<Incoming>) -> Result<ApiResponse, ApiError> {
    let (parts, body) = req.into_parts();
    if parts.uri.scheme_str() != Some("http") {
        return Err(ApiError::new(400, "use http:// URLs through the proxy; the platform makes the TLS connection"));
    }
    let Some((token, from)) = bearer_token(&parts.headers)? else {
        return Err(ApiError::new(
            407,
            "this grain has no network access: a request through the proxy must carry a capability the user \
             granted, as Authorization: Bearer gs_… (the token POST /claim returned)",
        ));
    };
    let authority = parts.uri.authority().map(|a| a.as_str().to_string()).unwrap_or_default();
    let remote = RemoteRequest {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
        headers: outgoing_headers(&parts.headers, from, &authority)?,
    };
    let outgoing = if body.is_end_stream() {
        Outgoing::None
    } else {
        match body.size_hint().exact() {
            Some(n) if n <= MAX_INLINE_BODY as u64 => Outgoing::Inline(crate::local_api::read_body(body, MAX_INLINE_BODY).await?),
            n => Outgoing::Streamed(n.unwrap_or(UNKNOWN_LENGTH), body),
        }
    };
    let platform = &bridge.platform;
    match outgoing {
        Outgoing::Streamed(length, body) => {
            // The body can be sent only once: no retry after a revoked capability.
            let body = std::cell::RefCell::new(Some(body));
            with_capability(platform, &token, false, |cap| {
                let body = body.borrow_mut().take().expect("with_capability calls only once when retry is off");
                send(bridge, cap, &remote, None, Some((length, body)))
            })
            .await
        }
        Outgoing::Inline(data) => with_capability(platform, &token, true, |cap| send(bridge, cap, &remote, Some(&data), None)).await,
        Outgoing::None => with_capability(platform, &token, true, |cap| send(bridge, cap, &remote, None, None)).await,
    }
}

/// The request headers the remote gets: without hop-by-hop, `Proxy-*`, framing and the
/// token's header; `Host` = the URL's authority.
fn outgoing_headers(map: &HeaderMap, token_header: TokenHeader, authority: &str) -> Result<Vec<(HeaderName, HeaderValue)>, ApiError> {
    let hop = connection_tokens(map.iter());
    let mut out = Vec::with_capacity(map.len() + 1);
    for (name, value) in map {
        let n = name.as_str();
        if is_hop_by_hop(name)
            || n.starts_with("proxy-")
            || hop.contains(name)
            || [HOST, CONTENT_LENGTH, EXPECT].contains(name)
            || (token_header == TokenHeader::Authorization && name == hyper::header::AUTHORIZATION)
        {
            continue;
        }
        out.push((name.clone(), value.clone()));
    }
    let host = HeaderValue::from_str(authority).map_err(|_| ApiError::new(400, "the URL's host is not a valid Host header"))?;
    out.push((HOST, host));
    Ok(out)
}

/// One `WebSession.request` with an `inline` body, a `streamed` one (declared length and the
/// app's body), or none, and its response as an HTTP response.
async fn send(
    bridge: &Rc<Bridge>,
    cap: AnyClient,
    remote: &RemoteRequest,
    inline: Option<&Bytes>,
    streamed: Option<(u64, Incoming)>,
) -> Result<ApiResponse, capnp::Error> {
    let session = web_session::Client { client: cap };
    let (response_sink, response_body) = RequestBodySink::new(None, u64::MAX);
    let mut call = session.request_request();
    {
        let mut r = call.get().init_request();
        r.set_method(&remote.method);
        r.set_path(&remote.path);
        let mut list = r.reborrow().init_headers(remote.headers.len() as u32);
        for (i, (n, v)) in remote.headers.iter().enumerate() {
            let mut h = list.reborrow().get(i as u32);
            h.set_name(n.as_str());
            h.set_value(v.as_bytes());
        }
        let mut b = r.init_body();
        match (&streamed, inline) {
            (Some((n, _)), _) => b.set_streamed(*n),
            (None, Some(data)) => b.set_inline(data),
            (None, None) => b.set_none(()),
        }
    }
    call.get().set_response_body(capnp_rpc::new_client(response_sink));
    let pending = call.send();
    if let Some((_, body)) = streamed {
        let request_body = pending.pipeline.get_request_body();
        bridge
            .app
            .executor()
            .spawn(async move {
                if let Err(e) = pump_response(body, request_body).await {
                    eprintln!("granary-bridge: proxy: request body cut short: {e}");
                }
            })
            .detach();
    }
    let reply = pending.promise.await?;
    let resp = reply.get()?.get_response()?;
    Ok(to_http(resp, response_body))
}

/// The remote `Response` as the app gets it: hop-by-hop headers dropped, the body inline or
/// streamed from `streamed`.
fn to_http(resp: response::Reader<'_>, streamed: crate::body::StreamBody) -> ApiResponse {
    let bad = |why: &str| ApiError::new(502, format!("the remote answer was malformed: {why}")).into_response();
    let status = match StatusCode::from_u16(resp.get_status()) {
        Ok(s) if s.as_u16() >= 200 => s,
        _ => return bad("its status is not a final HTTP status"),
    };
    let mut map = HeaderMap::new();
    let Ok(list) = resp.get_headers() else { return bad("its header list") };
    for h in list.iter() {
        let (Ok(n), Ok(v)) = (h.get_name(), h.get_value()) else { return bad("a header") };
        let (Ok(n), Ok(v)) = (HeaderName::from_bytes(n.as_bytes()), HeaderValue::from_bytes(v)) else { return bad("a header") };
        map.append(n, v);
    }
    let hop = connection_tokens(map.iter());
    let body_kind = match resp.get_body().which() {
        Ok(k) => k,
        Err(_) => return bad("its body kind"),
    };
    let body = match body_kind {
        response::body::None(()) => ReqBody::Empty,
        response::body::Inline(Ok(data)) => ReqBody::Full(Some(Bytes::copy_from_slice(data))),
        response::body::Inline(Err(_)) => return bad("its body"),
        response::body::Streamed(_) => ReqBody::Stream(streamed),
    };
    let keep_length = matches!(body, ReqBody::Empty);
    let mut out = Response::new(body);
    *out.status_mut() = status;
    for (n, v) in map.iter() {
        if is_hop_by_hop(n) || hop.contains(n) || (n == CONTENT_LENGTH && !keep_length) {
            continue;
        }
        out.headers_mut().append(n.clone(), v.clone());
    }
    if let response::body::Streamed(n) = body_kind {
        if n != UNKNOWN_LENGTH {
            out.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from(n));
        }
    }
    out
}
