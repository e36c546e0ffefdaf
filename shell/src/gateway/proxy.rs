//! Requests on a session origin: the checks, then HTTP → `WebSession.request` → HTTP, with
//! the platform's request and response header policy.

use super::{UiSession, PLATFORM_PREFIX, SESSION_COOKIE};
use crate::server::http::{cookie, full, response, Body, BoxError, Resp};
use crate::server::Server;
use granary_bridge::body::{pump_response, ReqBody, RequestBodySink};
use granary_bridge::limits::{MAX_INLINE_BODY, UNKNOWN_LENGTH};
use granary_schema::grain_capnp::{lane_frame, web_channel};
use granary_schema::web_session_capnp::{request, web_session};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::rc::Rc;

/// Cookies of the platform, never passed to a grain nor accepted from one.
const PLATFORM_COOKIES: &[&str] = &[SESSION_COOKIE, "granary_sid", "granary_csrf"];

/// Request headers that never reach a grain (the bridge also sets its own framing and
/// identity headers; SPEC.md, "Header policy").
const DROP_REQUEST: &[&str] = &[
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
    "proxy-authorization", "proxy-authenticate", "host", "content-length", "expect", "forwarded",
    "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-forwarded-port", "x-real-ip",
    // Conventional reverse-proxy identity headers: an app configured to trust one of them
    // (behind Granary it may be, see `--identity-header`) must never get a client's value.
    "x-remote-user", "remote-user", "x-remote-email", "x-webauth-user",
];

/// Request header prefixes that never reach a grain: the platform's namespace, every
/// `X-Forwarded-*` (also `-User`, `-Email`, `-Groups` of auth proxies) and oauth2-proxy's.
const DROP_REQUEST_PREFIXES: &[&str] = &["x-granary-", "x-forwarded-", "x-auth-request-"];

/// Response headers the platform removes or replaces.
const DROP_RESPONSE: &[&str] = &[
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
    "proxy-authenticate", "content-security-policy", "content-security-policy-report-only",
    "x-frame-options", "strict-transport-security", "alt-svc", "clear-site-data",
];

fn page(status: StatusCode, title: &str, text: &str) -> Resp {
    let body = maud::html! {
        (maud::DOCTYPE)
        html lang="en" { head { meta charset="utf-8"; title { (title) } }
            body style="font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#1f2328" {
                h1 style="font-size:1.3rem" { (title) } p { (text) }
            }
        }
    };
    let mut r = response(status, "text/html; charset=utf-8", body.into_string());
    r.headers_mut().insert("content-security-policy", HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"));
    r
}


/// Handles a request whose Host is the session origin `label`.
pub async fn handle(server: &Server, label: &str, req: Request<Incoming>) -> Resp {
    let Some(session) = server.gateway.get(label) else {
        return page(StatusCode::NOT_FOUND, "This grain session has ended", "Open the grain again from Granary.");
    };
    let path = req.uri().path().to_owned();
    if let Some(token) = path.strip_prefix(PLATFORM_PREFIX).and_then(|p| p.strip_prefix("init/")) {
        if !session.take_init(token) {
            return page(StatusCode::FORBIDDEN, "This link no longer works", "It was used already or is too old. Open the grain again from Granary.");
        }
        // `?path=` (a reopened `setPath`) says where in the grain to land.
        let wanted = req.uri().query().and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "path").map(|(_, v)| v.into_owned()));
        let to = wanted.as_deref().and_then(super::Gateway::in_grain_path).unwrap_or("/");
        let mut r = response(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "");
        r.headers_mut().insert(header::LOCATION, HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/")));
        let secure = if server.base.secure { "; Secure" } else { "" };
        let c = format!("{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax{secure}", session.secret);
        r.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&c).expect("hex cookie"));
        return r;
    }
    if cookie(req.headers(), SESSION_COOKIE) != Some(session.secret.as_str()) {
        return page(StatusCode::FORBIDDEN, "Open this grain from Granary", "This address only works in the grain's own frame in Granary.");
    }
    if path.starts_with(PLATFORM_PREFIX) {
        return page(StatusCode::NOT_FOUND, "Not found", "This address belongs to Granary, not to the app.");
    }
    let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if unsafe_method {
        if let Some(origin) = req.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
            if !origin.eq_ignore_ascii_case(&session.origin) {
                return page(StatusCode::FORBIDDEN, "Request refused", "This request came from another site.");
            }
        }
    }
    if let Err(why) = server.session_still_allowed(&session) {
        server.gateway.close_where(|s| s.label == session.label);
        return page(StatusCode::FORBIDDEN, "Access to this grain has ended", &why);
    }
    session.touch();
    if !server.runner.is_running(&session.grain_id) {
        // The supervisor stopped (idle, Restart, crash): a cached session is dead.
        server.grain_went_away(&session.grain_id);
    }
    let crate::gateway::GrainSession { used: ws, direct } = match server.web_session(&session).await {
        Ok(s) => s,
        Err(why) => return page(StatusCode::SERVICE_UNAVAILABLE, "The app could not start", &why),
    };
    // Held until the response body is sent: keeps the grain awake meanwhile.
    let in_use = server.runner.in_use(&server.ex, &session.grain_id);
    let mut resp = if super::websocket::is_upgrade(&req) {
        super::websocket::open(server, ws, req, &session.grain_id).await
    } else {
        // The common exchange takes the grain's request lane when its session is direct.
        let lane = direct.and_then(|d| {
            let (lane, channel) = server.runner.lane(&server.ex, &session.grain_id)?;
            Some(LaneRoute { lane, key: d.key, channel })
        });
        match forward(ws, req, server.gateway.grain_reset(), &session.grain_id, in_use, lane).await {
            Ok(r) if r.status() == StatusCode::BAD_GATEWAY => {
                // The bridge answers 502 when the app failed before its response (it may be
                // exiting: a crash). The cached session would then be dead for the next
                // request; make a new one, which restarts the app if it is gone. Costs one
                // `newSession` after an app's own 502.
                server.grain_went_away(&session.grain_id);
                r
            }
            Ok(r) => r,
            Err(e) => {
                tracing::info!("grain {}: request failed: {e}", session.grain_id);
                if e.kind == capnp::ErrorKind::Disconnected {
                    server.grain_went_away(&session.grain_id);
                }
                page(StatusCode::BAD_GATEWAY, "The app did not answer", "It may have stopped or crashed. Reload to try again; the grain's log says more.")
            }
        }
    };
    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    apply_response_policy(resp.headers_mut(), &session, server);
    if switching {
        // The gateway's own handshake answer (`websocket::open`): its Connection and Upgrade
        // are the point of a 101, not hop-by-hop leftovers of the app's response.
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        resp.headers_mut().insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    }
    resp
}

/// Fills `r` from an HTTP request head: method, path, filtered headers.
pub(super) fn write_request(mut r: request::Builder<'_>, method: &Method, uri: &hyper::Uri, headers: &HeaderMap) {
    r.set_method(method.as_str());
    r.set_path(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    let named_in_connection: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    let mut out: Vec<(&HeaderName, Vec<u8>)> = Vec::new();
    for (name, value) in headers {
        let n = name.as_str();
        if DROP_REQUEST.contains(&n) || DROP_REQUEST_PREFIXES.iter().any(|p| n.starts_with(p)) || named_in_connection.iter().any(|c| c == n) {
            continue;
        }
        if name == header::AUTHORIZATION && (value.as_bytes().starts_with(b"Bearer gt_") || value.as_bytes().starts_with(b"Bearer gk_")) {
            continue; // a platform or grain API token is never a grain's business
        }
        if name == header::COOKIE {
            let kept: Vec<&str> = value
                .to_str()
                .unwrap_or("")
                .split(';')
                .map(str::trim)
                .filter(|c| !c.is_empty() && !PLATFORM_COOKIES.contains(&c.split('=').next().unwrap_or("").trim()))
                .collect();
            if !kept.is_empty() {
                out.push((name, kept.join("; ").into_bytes()));
            }
            continue;
        }
        out.push((name, value.as_bytes().to_vec()));
    }
    let mut list = r.init_headers(out.len() as u32);
    for (i, (name, value)) in out.iter().enumerate() {
        let mut h = list.reborrow().get(i as u32);
        h.set_name(name.as_str());
        h.set_value(value);
    }
}

/// Where a session's requests without a streamed body may go instead of `WebSession.request`
/// (SPEC.md, "Request lanes").
pub(super) struct LaneRoute {
    pub lane: Rc<super::lane::Lane>,
    /// The session's direct key.
    pub key: Rc<[u8]>,
    /// The grain's `WebChannel`, which hands over streamed response bodies.
    pub channel: web_channel::Client,
}

/// Carries one request to the grain and its response back: on `lane` when given and the
/// request body is small enough to go inline, else with `WebSession.request` on `ws`.
/// `in_use` is held until the response body has been sent (or the browser went away).
pub(super) async fn forward(
    ws: web_session::Client,
    req: Request<Incoming>,
    reset: super::GrainReset,
    grain_id: &str,
    in_use: Option<crate::runner::InUse>,
    lane: Option<LaneRoute>,
) -> Result<Resp, capnp::Error> {
    let (parts, mut body) = req.into_parts();
    let length: Option<u64> = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let chunked = parts.headers.contains_key(header::TRANSFER_ENCODING);
    let mut inline = None;
    let streamed = match (length, chunked) {
        (None | Some(0), false) => None,
        (Some(n), false) if n <= MAX_INLINE_BODY as u64 => {
            let mut buf = Vec::with_capacity(n as usize);
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| capnp::Error::failed(format!("reading the request body: {e}")))?;
                if let Ok(d) = frame.into_data() {
                    buf.extend_from_slice(&d);
                }
            }
            inline = Some(buf);
            None
        }
        (n, _) => Some(n.unwrap_or(UNKNOWN_LENGTH)),
    };
    let fill = |mut r: request::Builder<'_>| {
        write_request(r.reborrow(), &parts.method, &parts.uri, &parts.headers);
        let mut b = r.init_body();
        match (&inline, streamed) {
            (Some(data), _) => b.set_inline(data),
            (None, Some(n)) => b.set_streamed(n),
            (None, None) => b.set_none(()),
        }
    };
    if let (Some(route), None) = (lane, streamed) {
        let answer = route.lane.exchange(&route.key, fill).await?;
        let lane_frame::Response(r) = answer.get_root::<lane_frame::Reader>()?.which()? else {
            return Err(capnp::Error::failed("the lane answered with a frame that is not a response".into()));
        };
        let r = r?;
        let ticket = r.get_body_ticket()?;
        let body = || async {
            let (sink, body) = RequestBodySink::new(None, u64::MAX);
            let mut claim = route.channel.response_body_request();
            claim.get().set_ticket(ticket);
            claim.get().set_stream(capnp_rpc::new_client(sink));
            claim.send().promise.await?;
            Ok(body)
        };
        return to_http(r.get_response()?, body, reset, grain_id, in_use).await;
    }
    let (sink, response_body) = RequestBodySink::new(None, u64::MAX);
    let mut call = ws.request_request();
    {
        let mut p = call.get();
        fill(p.reborrow().init_request());
        p.set_response_body(capnp_rpc::new_client(sink));
    }
    let promise = call.send();
    let upload = streamed.map(|_| {
        let request_body = promise.pipeline.get_request_body();
        async move {
            match pump_response(body, request_body).await {
                Ok(n) => tracing::debug!("request body delivered: {n} bytes"),
                Err(e) => tracing::debug!("request body not delivered: {e}"),
            }
        }
    });
    let reply = match upload {
        // Full duplex: the upload runs while the response is awaited.
        Some(upload) => {
            let (reply, ()) = futures::join!(promise.promise, upload);
            reply?
        }
        None => promise.promise.await?,
    };
    to_http(reply.get()?.get_response()?, || async { Ok(response_body) }, reset, grain_id, in_use).await
}

/// The HTTP response for a `Response`; `streamed` gives its body when it is `streamed`.
async fn to_http<F: std::future::Future<Output = Result<granary_bridge::body::StreamBody, capnp::Error>>>(
    r: granary_schema::web_session_capnp::response::Reader<'_>,
    streamed: impl FnOnce() -> F,
    reset: super::GrainReset,
    grain_id: &str,
    in_use: Option<crate::runner::InUse>,
) -> Result<Resp, capnp::Error> {
    let status = StatusCode::from_u16(r.get_status()).map_err(|_| capnp::Error::failed(format!("invalid status {}", r.get_status())))?;
    let mut headers = HeaderMap::new();
    for h in r.get_headers()? {
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(h.get_name()?.as_bytes()), HeaderValue::from_bytes(h.get_value()?)) else {
            continue;
        };
        headers.append(name, value);
    }
    use granary_schema::web_session_capnp::response::body::Which;
    let body: Body = match r.get_body().which().map_err(|e| capnp::Error::failed(format!("unknown body kind {}", e.0)))? {
        Which::None(()) => full(Vec::new()),
        Which::Inline(d) => {
            let d = d?.to_vec();
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(d.len()));
            full(d)
        }
        Which::Streamed(n) => {
            let response_body = streamed().await?;
            if n != UNKNOWN_LENGTH {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
            }
            let grain_id = grain_id.to_owned();
            Box::pin(ReqBody::Stream(response_body).map_err(move |e| -> BoxError {
                let _in_use = &in_use; // lives as long as the body
                // Cut off: the app most likely died mid-body, taking this session with it.
                reset.reset_grain(&grain_id);
                Box::new(e)
            }))
        }
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    Ok(resp)
}

/// The response header policy (SPEC.md, "Header policy", responses): drop what acts on the
/// platform, force the platform's CSP and framing, rewrite cookies to this origin only.
fn apply_response_policy(h: &mut HeaderMap, session: &Rc<UiSession>, server: &Server) {
    // Content-Length is not dropped: `to_http` set it from the body (or kept a HEAD's or 304's).
    let dropped: Vec<HeaderName> = h
        .keys()
        .filter(|name| {
            let n = name.as_str();
            DROP_RESPONSE.contains(&n) || n.starts_with("x-granary-") || n.starts_with("access-control-")
        })
        .cloned()
        .collect();
    for name in dropped {
        h.remove(&name);
    }
    if h.contains_key(header::SET_COOKIE) {
        let cookies: Vec<HeaderValue> = h.get_all(header::SET_COOKIE).iter().cloned().collect();
        h.remove(header::SET_COOKIE);
        for c in cookies {
            if let Some(v) = rewrite_cookie(c.as_bytes(), server.base.secure) {
                h.append(header::SET_COOKIE, v);
            }
        }
    }
    let csp = session.csp.get_or_init(|| {
        let ws_origin = session.origin.replacen("http", "ws", 1);
        let csp = format!(
            "default-src 'self' data: blob: 'unsafe-inline' 'unsafe-eval'; connect-src 'self' {ws_origin}; \
             frame-ancestors {}; form-action 'self'; base-uri 'self'; object-src 'none'",
            server.base.url
        );
        HeaderValue::from_str(&csp).expect("ASCII policy")
    });
    h.insert("content-security-policy", csp.clone());
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
}

/// A grain's Set-Cookie for its own origin: platform cookie names dropped, `Domain` removed,
/// `Secure` added on https.
fn rewrite_cookie(value: &[u8], secure: bool) -> Option<HeaderValue> {
    let text = String::from_utf8_lossy(value);
    let mut parts = text.split(';').map(str::trim);
    let first = parts.next()?;
    let name = first.split('=').next()?.trim();
    if name.is_empty() || PLATFORM_COOKIES.contains(&name) {
        return None;
    }
    let mut out = vec![first.to_owned()];
    for p in parts {
        let key = p.split('=').next().unwrap_or("").trim().to_ascii_lowercase();
        if key == "domain" || (key == "secure" && secure) {
            continue;
        }
        out.push(p.to_owned());
    }
    if secure {
        out.push("Secure".into());
    }
    HeaderValue::from_str(&out.join("; ")).ok()
}

#[cfg(test)]
mod tests {
    use super::rewrite_cookie;

    #[test]
    fn cookies_stay_on_the_grain_origin() {
        let v = rewrite_cookie(b"a=1; Domain=.localhost; Path=/; HttpOnly", false).unwrap();
        assert_eq!(v, "a=1; Path=/; HttpOnly");
        let v = rewrite_cookie(b"a=1; Secure", true).unwrap();
        assert_eq!(v, "a=1; Secure");
        assert!(rewrite_cookie(b"granary_grain=stolen; Path=/", false).is_none());
        assert!(rewrite_cookie(b"granary_sid=x", false).is_none());
    }
}
