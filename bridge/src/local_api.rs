//! The app's local capability API (SPEC.md, "The app's side"): an HTTP/1.1 server on
//! `127.0.0.1:--api-port` inside the grain, which is also the app's `HTTP_PROXY`.
//!
//! - `POST /claim` `{"sessionId","claimToken","label","requiredPermissions":[…]}`: the session's
//!   `SessionContext.claimRequest`, then `GrainApi.save` → `{"token":"gs_…"}`.
//! - `POST /fulfill` `{"sessionId","api","pathPrefix","title",…}`: a chooser page's
//!   `SessionContext.fulfillRequest` ([`crate::fulfill`]).
//! - `POST /offer` `{"sessionId","title","description"}`: `SessionContext.offer` of an API key
//!   for the grain's own HTTP API, which the person sees in the shell's dialog.
//! - `DELETE /tokens/gs_…`: `GrainApi.drop`.
//! - `POST /mail/send?to=…` with `Authorization: Bearer gs_…`: `MailSender.send`.
//! - any request in absolute form (`GET http://host/path`) with `Authorization: Bearer gs_…`:
//!   sent through the granted `WebSession` ([`crate::proxy`]).
//!
//! Answers are JSON; errors are `{"error": "…"}`. Only processes in the grain can reach it (the
//! grain's network namespace has nothing but loopback), and it grants nothing by itself: every
//! call is checked by the platform on the other side of fd 3.

use granary_schema::socket::LingeringClose;
use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::rc::Rc;

use async_io::Async;
use capnp::capability::Client as AnyClient;
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, PROXY_AUTHORIZATION};
use hyper::{Method, Request, Response, StatusCode};
use granary_schema::mail_capnp::mail_sender;
use serde_json::{json, Value};

use crate::body::ReqBody;
use crate::platform::{decode_token, encode_token, is_revoked, Platform, PlatformError};
use crate::pool::AppStream;
use crate::Bridge;

/// Largest JSON request body.
pub const MAX_JSON_BODY: usize = 64 * 1024;
/// Largest message `POST /mail/send` takes (the send-mail driver's limit).
pub const MAX_MAIL_BODY: usize = 10 * 1024 * 1024;

/// A response of the local API (JSON, or a relayed remote body).
pub type ApiResponse = Response<ReqBody>;

/// A request the local API refuses: the status and what to do about it.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// Said to the app as `{"error": message}`.
    pub message: String,
}

impl ApiError {
    /// An error with this status and message.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    /// A failed platform call: `failed` errors (unknown or revoked tokens, claims the platform
    /// refuses) are 403, `unimplemented` (a token of the wrong kind) 400, the rest (lost
    /// connection, overload) 502; the platform's message is
    /// kept (without capnp-rpc's "remote exception: " prefixes, one per hop).
    pub fn from_platform(e: PlatformError) -> Self {
        match e {
            PlatformError::NotConnected => Self::new(502, e.to_string()),
            PlatformError::Call(e) => {
                let message = crate::platform::platform_message(&e.extra).to_string();
                match e.kind {
                    capnp::ErrorKind::Failed => Self::new(403, message),
                    capnp::ErrorKind::Unimplemented => Self::new(
                        400,
                        "this token's capability does not offer that call: the proxy needs a web (HTTP) \
                         capability and /mail/send a mail capability",
                    ),
                    _ => Self::new(502, format!("the platform did not answer: {message}")),
                }
            }
        }
    }

    /// The JSON response.
    pub fn into_response(self) -> ApiResponse {
        let mut resp = json_response(self.status, &json!({ "error": self.message }));
        if self.status == 407 {
            resp.headers_mut().insert("proxy-authenticate", HeaderValue::from_static("Bearer realm=\"granary\""));
        }
        resp
    }
}

impl From<capnp::Error> for ApiError {
    fn from(e: capnp::Error) -> Self {
        Self::from_platform(PlatformError::Call(e))
    }
}

/// A JSON response.
pub fn json_response(status: u16, value: &Value) -> ApiResponse {
    let mut resp = Response::new(ReqBody::Full(Some(Bytes::from(value.to_string()))));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// Binds `127.0.0.1:port` (0: any free port).
pub fn bind(port: u16) -> std::io::Result<Async<TcpListener>> {
    Async::<TcpListener>::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
}

/// The next connection to one of the bridge's loopback endpoints (`what` names it in errors),
/// as an [`AppStream`]: Nagle's algorithm holds a later small write until the earlier one is
/// acknowledged, and Linux delays ACKs by 40 ms once a connection goes back and forth, both
/// for the bridge's answers written in pieces and for apps whose requests come in pieces (a
/// head, then its body). A failed accept (out of descriptors) is retried after 100 ms.
pub(crate) async fn accept(listener: &Async<TcpListener>, what: &str) -> AppStream {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => return AppStream::with_quick_acks(stream),
            Err(e) => {
                eprintln!("granary-bridge: {what}: accept failed: {e}");
                async_io::Timer::after(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Accepts connections on `listener` forever, each served on the bridge's executor.
pub async fn serve(listener: Async<TcpListener>, bridge: Rc<Bridge>) {
    loop {
        let stream = accept(&listener, "local API").await;
        let b = bridge.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let b = b.clone();
            let has_body = !hyper::body::Body::is_end_stream(req.body());
            async move {
                let mut resp = handle(&b, req).await.unwrap_or_else(ApiError::into_response);
                crate::body::end_connection_after_refusal(has_body, &mut resp);
                Ok::<_, Infallible>(resp)
            }
        });
        // A 413 answered before the body was read must reach an app still sending it: close
        // gently (SPEC.md, "TCP", closing).
        let closing = stream.lingering_close();
        let conn = hyper::server::conn::http1::Builder::new().serve_connection(crate::hyper_io::HyperIo(stream), service);
        bridge
            .app
            .executor()
            .spawn(async move {
                let _ = conn.await;
                closing.close(LingeringClose::QUIET, LingeringClose::LIMIT).await;
            })
            .detach();
    }
}

/// Routes one request.
async fn handle(bridge: &Rc<Bridge>, req: Request<Incoming>) -> Result<ApiResponse, ApiError> {
    if req.method() == Method::CONNECT {
        return Err(ApiError::new(
            405,
            "HTTPS through the proxy (CONNECT) is not possible: use http:// URLs through the proxy; the platform makes the TLS connection",
        ));
    }
    if req.uri().scheme().is_some() && !is_own_authority(req.uri(), bridge.config.api_port) {
        return crate::proxy::forward(bridge, req).await;
    }
    let path = req.uri().path().to_string();
    let platform = &bridge.platform;
    match (req.method().clone(), path.as_str()) {
        (Method::POST, "/claim") => claim(bridge, req.into_body()).await,
        (Method::POST, "/fulfill") => crate::fulfill::fulfill(bridge, req.into_body()).await,
        (Method::POST, "/offer") => crate::fulfill::offer(bridge, req.into_body()).await,
        (Method::DELETE, p) if p.starts_with("/tokens/") => {
            let token = decode_token(&p["/tokens/".len()..])
                .ok_or_else(|| ApiError::new(400, "the path must be /tokens/gs_… with a token /claim returned"))?;
            let mut call = platform.grain_api().map_err(ApiError::from_platform)?.drop_request();
            call.get().set_token(&token);
            call.send().promise.await?;
            platform.forget(&token);
            Ok(json_response(200, &json!({})))
        }
        (Method::POST, "/mail/send") => send_mail(platform, req).await,
        (Method::POST, "/save") => save_copy(bridge, req.into_body()).await,
        (Method::POST, "/stay-awake") => {
            let body = read_body(req.into_body(), MAX_JSON_BODY).await?;
            let v: Value = serde_json::from_slice(&body).map_err(|e| ApiError::new(400, format!("the body must be JSON {{\"reason\": \"…\"}}: {e}")))?;
            let reason = v.get("reason").and_then(Value::as_str).filter(|r| !r.trim().is_empty()).ok_or_else(|| ApiError::new(400, "say why the grain must stay awake: {\"reason\": \"…\"} (the owner sees it)"))?;
            let mut call = platform.grain_api().map_err(ApiError::from_platform)?.stay_awake_request();
            call.get().set_reason(reason.chars().take(200).collect::<String>().as_str());
            let held = call.send().promise.await?;
            let id = platform.hold_wake_lock(held.get()?.get_handle()?).ok_or_else(|| ApiError::new(429, "16 wake locks are held already: release one (DELETE /stay-awake/<id>)"))?;
            Ok(json_response(200, &json!({ "id": id })))
        }
        (Method::DELETE, p) if p.starts_with("/stay-awake/") => {
            let id: u64 = p["/stay-awake/".len()..].parse().map_err(|_| ApiError::new(400, "the path must be /stay-awake/<id> with an id /stay-awake returned"))?;
            if !platform.release_wake_lock(id) {
                return Err(ApiError::new(404, "no such wake lock: it was released already"));
            }
            Ok(json_response(200, &json!({})))
        }
        _ => Err(ApiError::new(
            404,
            "no such route: the local API has POST /claim, POST /fulfill, POST /offer, POST /save, DELETE /tokens/<token>, POST /mail/send, \
             POST /stay-awake, DELETE /stay-awake/<id>, \
             and proxies absolute-form requests (http://host/path) with Authorization: Bearer gs_…",
        )),
    }
}

/// Whether an absolute-form URI names this API itself (an app that sends everything through
/// `HTTP_PROXY`, its calls to `GRANARY_API` included).
fn is_own_authority(uri: &hyper::Uri, api_port: u16) -> bool {
    let host = uri.host().unwrap_or_default();
    uri.port_u16() == Some(api_port) && (host == "127.0.0.1" || host.eq_ignore_ascii_case("localhost"))
}

/// Reads a body of at most `limit` bytes (413 beyond).
pub(crate) async fn read_body(mut body: Incoming, limit: usize) -> Result<Bytes, ApiError> {
    if body.size_hint().lower() > limit as u64 {
        return Err(ApiError::new(413, format!("the body is larger than {limit} bytes")));
    }
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::new(400, format!("reading the request body failed: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(ApiError::new(413, format!("the body is larger than {limit} bytes")));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.into())
}

/// Where a request's `gs_` token came from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenHeader {
    Authorization,
    ProxyAuthorization,
}

/// The `gs_` token of `Authorization: Bearer gs_…` (or `Proxy-Authorization`): `None` if there
/// is none; 400 if it is malformed.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Result<Option<(Vec<u8>, TokenHeader)>, ApiError> {
    for (name, which) in [(PROXY_AUTHORIZATION, TokenHeader::ProxyAuthorization), (AUTHORIZATION, TokenHeader::Authorization)] {
        for value in headers.get_all(&name) {
            let Some((scheme, token)) = value.to_str().ok().and_then(|v| v.trim().split_once(' ')) else { continue };
            let token = token.trim();
            if !scheme.eq_ignore_ascii_case("bearer") || !token.starts_with(crate::platform::TOKEN_PREFIX) {
                continue;
            }
            let bytes = decode_token(token)
                .ok_or_else(|| ApiError::new(400, format!("{name}: `{token}` is not a token /claim returned (gs_ then base64url)")))?;
            return Ok(Some((bytes, which)));
        }
    }
    Ok(None)
}

/// Calls `call` on the capability of `token` (restored, or cached). If it fails as revoked or
/// disconnected, the cached capability is forgotten, and when `retry` it is restored once more
/// and called again. Failures are [`ApiError::from_platform`]s.
pub(crate) async fn with_capability<T, F, Fut>(platform: &Platform, token: &[u8], retry: bool, call: F) -> Result<T, ApiError>
where
    F: Fn(AnyClient) -> Fut,
    Fut: Future<Output = Result<T, capnp::Error>>,
{
    let mut attempts = if retry { 2 } else { 1 };
    loop {
        attempts -= 1;
        let cap = platform.restore(token).await.map_err(ApiError::from_platform)?;
        match call(cap).await {
            Ok(v) => return Ok(v),
            Err(e) if is_revoked(&e) => {
                platform.forget(token);
                if attempts == 0 {
                    return Err(e.into());
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

async fn claim(bridge: &Rc<Bridge>, body: Incoming) -> Result<ApiResponse, ApiError> {
    const SHAPE: &str = "the body must be JSON {\"sessionId\": \"…\", \"claimToken\": \"gc_…\", \"label\": \"…\", \"requiredPermissions\": [\"name\", …]}";
    let body = read_body(body, MAX_JSON_BODY).await?;
    let v: Value = serde_json::from_slice(&body).map_err(|e| ApiError::new(400, format!("{SHAPE}: {e}")))?;
    let text = |k: &str| v.get(k).and_then(Value::as_str).ok_or_else(|| ApiError::new(400, format!("{SHAPE}; `{k}` is missing")));
    let (session_id, claim_token) = (text("sessionId")?, text("claimToken")?);
    let label = v.get("label").and_then(Value::as_str).unwrap_or_default();
    let names = match v.get("requiredPermissions") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|n| n.as_str().ok_or_else(|| ApiError::new(400, format!("{SHAPE}; requiredPermissions must be names"))))
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(ApiError::new(400, format!("{SHAPE}; requiredPermissions must be a list"))),
    };
    let known = &bridge.config.permissions;
    let mut required = vec![false; known.len()];
    for name in names {
        let i = known.iter().position(|k| k == name).ok_or_else(|| {
            ApiError::new(400, format!("unknown permission `{name}`: the manifest's permissions are [{}]", known.join(", ")))
        })?;
        required[i] = true;
    }
    let context = bridge.platform.session(session_id).ok_or_else(|| {
        ApiError::new(
            404,
            format!(
                "no open session `{session_id}`: use the X-Granary-Session-Id header of the request the claim \
                 token came with, and claim while that session is open"
            ),
        )
    })?;
    let mut req = context.claim_request_request();
    req.get().set_claim_token(claim_token);
    let mut list = req.get().init_required_permissions(required.len() as u32);
    for (i, b) in required.iter().enumerate() {
        list.set(i as u32, *b);
    }
    let claimed = req.send().promise.await?;
    let cap: AnyClient = claimed.get()?.get_cap().get_as_capability()?;
    let mut save = bridge.platform.grain_api().map_err(ApiError::from_platform)?.save_request();
    save.get().init_cap().set_as_capability(cap.hook);
    save.get().set_label(label);
    let saved = save.send().promise.await?;
    let token = saved.get()?.get_token()?;
    Ok(json_response(200, &json!({ "token": encode_token(token) })))
}

/// `POST /save {"token": "gs_…", "label"}`: restores the token and saves the capability again,
/// as a new grant whose parent is the token's (revoking the parent revokes it too): a token
/// to hand to another part of the app that can be dropped on its own.
async fn save_copy(bridge: &Rc<Bridge>, body: Incoming) -> Result<ApiResponse, ApiError> {
    const SHAPE: &str = "the body must be JSON {\"token\": \"gs_…\", \"label\": \"…\"}";
    let body = read_body(body, MAX_JSON_BODY).await?;
    let v: Value = serde_json::from_slice(&body).map_err(|e| ApiError::new(400, format!("{SHAPE}: {e}")))?;
    let token = v.get("token").and_then(Value::as_str).and_then(decode_token).ok_or_else(|| ApiError::new(400, format!("{SHAPE}; `token` must be a gs_… token")))?;
    let label = v.get("label").and_then(Value::as_str).unwrap_or_default().to_owned();
    let platform = &bridge.platform;
    let new_token = with_capability(platform, &token, true, |cap: AnyClient| {
        let label = label.clone();
        async move {
            let mut save = platform.grain_api().map_err(|e| capnp::Error::failed(e.to_string()))?.save_request();
            save.get().init_cap().set_as_capability(cap.hook);
            save.get().set_label(label.as_str());
            let saved = save.send().promise.await?;
            Ok(saved.get()?.get_token()?.to_vec())
        }
    })
    .await?;
    Ok(json_response(200, &json!({ "token": encode_token(&new_token) })))
}

async fn send_mail(platform: &Platform, req: Request<Incoming>) -> Result<ApiResponse, ApiError> {
    let (token, _) = bearer_token(req.headers())?
        .ok_or_else(|| ApiError::new(401, "send the token /claim returned for a mail capability as Authorization: Bearer gs_…"))?;
    let to: Vec<String> = form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == "to")
        .map(|(_, v)| v.into_owned())
        .collect();
    if to.is_empty() {
        return Err(ApiError::new(400, "name the recipients in the query: /mail/send?to=a@example.org&to=b@example.org"));
    }
    let message = read_body(req.into_body(), MAX_MAIL_BODY).await?;
    let message_id = with_capability(platform, &token, true, |cap| {
        let sender = mail_sender::Client { client: cap };
        let mut call = sender.send_request();
        let mut list = call.get().init_to(to.len() as u32);
        for (i, t) in to.iter().enumerate() {
            list.set(i as u32, t.as_str());
        }
        call.get().set_message(&message);
        async move { Ok(call.send().promise.await?.get()?.get_message_id()?.to_string()?) }
    })
    .await?;
    Ok(json_response(200, &json!({ "messageId": message_id })))
}
