//! `<base URL>/grain-api/…` with `Authorization: Bearer gk_…`: a program outside the server
//! calls one grain's HTTP API (SPEC.md, "Grain API tokens"). Each request runs as an `api`
//! `WebSession` of the grain for the token's maker, with the token's permissions intersected
//! with the maker's current ones; the token stops working when the maker loses access, the
//! grain is trashed or deleted, or the token is revoked. Cross-origin callers are welcome (the
//! token, never a cookie, authenticates), so CORS is open and preflights are answered here.
//! The API session is kept per token (`ApiSessions`), so a program's requests share one.

use super::proxy::forward;
use crate::grain_tokens;
use crate::powerbox_host::ShellWorld;
use crate::powerbox_provider::ProviderSession;
use crate::server::http::{full, Resp};
use crate::server::Server;
use granary_powerbox::World;
use granary_schema::web_session_capnp::web_session;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The path prefix of the grain API on the base host.
pub const PREFIX: &str = "/grain-api";

/// How long a kept API session may go unused.
const KEPT_IDLE: Duration = Duration::from_secs(600);
/// Most API sessions kept at once (the least recently used goes first).
const KEPT_MAX: usize = 64;

/// The API sessions kept per grain API token (SPEC.md, "Grain API tokens"). Consulted only
/// after the token and its maker's access were checked for the request at hand.
#[derive(Default)]
pub struct ApiSessions(RefCell<HashMap<String, Kept>>);

struct Kept {
    grain: String,
    user: String,
    permissions: Vec<bool>,
    session: web_session::Client,
    last_used: Instant,
}

impl ApiSessions {
    /// The session kept for `token` if it was opened for the same grain and maker with exactly
    /// `permissions`.
    fn get(&self, token: &grain_tokens::GrainToken, permissions: &[bool]) -> Option<web_session::Client> {
        self.get_at(token, permissions, Instant::now())
    }

    fn get_at(&self, token: &grain_tokens::GrainToken, permissions: &[bool], now: Instant) -> Option<web_session::Client> {
        let mut map = self.0.borrow_mut();
        map.retain(|_, k| now.saturating_duration_since(k.last_used) < KEPT_IDLE);
        let kept = map.get_mut(&token.id).filter(|k| k.grain == token.grain && k.user == token.user && k.permissions == permissions)?;
        kept.last_used = now;
        Some(kept.session.clone())
    }

    fn keep(&self, token: &grain_tokens::GrainToken, permissions: Vec<bool>, session: web_session::Client) {
        let mut map = self.0.borrow_mut();
        if map.len() >= KEPT_MAX && !map.contains_key(&token.id) {
            if let Some(oldest) = map.iter().min_by_key(|(_, k)| k.last_used).map(|(id, _)| id.clone()) {
                map.remove(&oldest);
            }
        }
        let kept = Kept { grain: token.grain.clone(), user: token.user.clone(), permissions, session, last_used: Instant::now() };
        map.insert(token.id.clone(), kept);
    }

    /// Drops the session kept for the token with public id `token_id` (it was revoked).
    pub fn forget_token(&self, token_id: &str) {
        self.0.borrow_mut().remove(token_id);
    }

    /// Drops the sessions kept on `grain` (its app or supervisor went away).
    pub fn forget_grain(&self, grain: &str) {
        self.0.borrow_mut().retain(|_, k| k.grain != grain);
    }
}

fn answer(status: StatusCode, msg: &str) -> Resp {
    let body = serde_json::json!({ "error": msg }).to_string();
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn cors(r: &mut Resp) {
    let h = r.headers_mut();
    h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    h.insert("access-control-allow-headers", HeaderValue::from_static("Authorization, Content-Type, Accept, Depth, If-Match, If-None-Match, Range"));
    h.insert("access-control-allow-methods", HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, PROPFIND, REPORT"));
    h.insert("access-control-expose-headers", HeaderValue::from_static("ETag, Content-Range, Location"));
    h.insert("access-control-max-age", HeaderValue::from_static("600"));
}

pub async fn handle(server: &Server, req: Request<Incoming>) -> Resp {
    let mut r = serve(server, req).await;
    cors(&mut r);
    // A grain's API answers programs, never pages of the server's origin.
    r.headers_mut().remove(header::SET_COOKIE);
    r.headers_mut().insert("content-security-policy", HeaderValue::from_static("default-src 'none'; sandbox"));
    r
}

async fn serve(server: &Server, req: Request<Incoming>) -> Resp {
    if req.method() == Method::OPTIONS && !req.headers().contains_key(header::AUTHORIZATION) {
        let mut r = Response::new(full(Vec::new()));
        *r.status_mut() = StatusCode::NO_CONTENT;
        return r;
    }
    let secret = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("").trim().to_owned();
    let token = match grain_tokens::lookup(&server.db, &secret) {
        Ok(Some(t)) => t,
        Ok(None) => return answer(StatusCode::UNAUTHORIZED, "send a grain API token: Authorization: Bearer gk_… (the grain's app shows how to get one)"),
        Err(e) => return answer(StatusCode::INTERNAL_SERVER_ERROR, &format!("reading the token: {e}")),
    };
    let world = ShellWorld { db: &server.db };
    let Some(now) = world.user_permissions(&token.user, &token.grain) else {
        return answer(StatusCode::FORBIDDEN, "this token no longer works: its grain is gone or in the trash, or the person who made it lost access to it");
    };
    let permissions = crate::powerbox_host::intersect(&token.permissions, &now);
    // A kept session outlives its grain's supervisor: it opens a new session of the grain when
    // the one it had belongs to a supervisor that stopped. Forgetting it here instead, on every
    // request that finds the grain stopped, made requests arriving together during the start
    // each forget the one the other had just kept, and open a session each.
    let kept = &server.gateway.api_sessions;
    let ws = match kept.get(&token, &permissions) {
        Some(ws) => ws,
        None => {
            let Some(me) = server.me().upgrade() else { return answer(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping") };
            let session = ProviderSession::new(&me, token.grain.clone(), String::new(), permissions.clone(), token.user.clone());
            let ws: web_session::Client = capnp_rpc::new_client(session);
            kept.keep(&token, permissions, ws.clone());
            ws
        }
    };
    let (mut parts, body) = req.into_parts();
    let rest = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("").strip_prefix(PREFIX).unwrap_or("");
    let path = if rest.starts_with('/') { rest.to_owned() } else { format!("/{rest}") };
    parts.uri = match path.parse() {
        Ok(u) => u,
        Err(_) => return answer(StatusCode::BAD_REQUEST, "the path is not a valid URL path"),
    };
    let in_use = server.runner.in_use(&server.ex, &token.grain);
    match forward(ws, Request::from_parts(parts, body), server.gateway.grain_reset(), &token.grain, in_use, None).await {
        Ok(r) => {
            if r.status() == StatusCode::BAD_GATEWAY {
                // The app may be exiting (a crash): the next request opens a new session, as
                // the UI path does.
                server.grain_went_away(&token.grain);
            }
            r
        }
        Err(e) => {
            server.grain_went_away(&token.grain);
            answer(StatusCode::BAD_GATEWAY, &format!("the grain did not answer: {}", e.extra))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoSession;
    impl web_session::Server for NoSession {}

    fn token(n: usize) -> grain_tokens::GrainToken {
        grain_tokens::GrainToken { id: format!("t{n}"), grain: "g".into(), user: "u".into(), permissions: vec![true], petname: String::new(), created: 0 }
    }

    #[test]
    fn a_kept_session_serves_only_its_token_maker_and_permissions_and_the_least_recently_used_goes_first() {
        let kept = ApiSessions::default();
        let t0 = token(0);
        kept.keep(&t0, vec![true], capnp_rpc::new_client(NoSession));
        assert!(kept.get(&t0, &[true]).is_some());
        assert!(kept.get(&t0, &[false]).is_none(), "other permissions");
        let mut other_maker = token(0);
        other_maker.user = "someone else".into();
        assert!(kept.get(&other_maker, &[true]).is_none(), "another maker");
        for n in 1..KEPT_MAX {
            kept.keep(&token(n), vec![true], capnp_rpc::new_client(NoSession));
        }
        // t0 was used after t1 was kept; t1 is now the least recently used.
        assert!(kept.get(&t0, &[true]).is_some());
        kept.keep(&token(KEPT_MAX), vec![true], capnp_rpc::new_client(NoSession));
        assert!(kept.get(&token(1), &[true]).is_none(), "the least recently used went");
        assert!(kept.get(&t0, &[true]).is_some() && kept.get(&token(KEPT_MAX), &[true]).is_some());
        kept.forget_token("t0");
        assert!(kept.get(&t0, &[true]).is_none());
        kept.forget_grain("g");
        assert!(kept.get(&token(KEPT_MAX), &[true]).is_none());
    }

    #[test]
    fn a_kept_session_goes_after_ten_idle_minutes_and_each_use_restarts_the_clock() {
        let kept = ApiSessions::default();
        let (t0, t1) = (token(0), token(1));
        let start = Instant::now();
        kept.keep(&t0, vec![true], capnp_rpc::new_client(NoSession));
        kept.keep(&t1, vec![true], capnp_rpc::new_client(NoSession));
        let minute = Duration::from_secs(60);
        assert!(kept.get_at(&t0, &[true], start + 9 * minute).is_some(), "used after 9 minutes");
        assert!(kept.get_at(&t0, &[true], start + 18 * minute).is_some(), "9 minutes after its last use");
        assert!(kept.get_at(&t1, &[true], start + 18 * minute).is_none(), "18 minutes unused");
        assert!(kept.get_at(&t0, &[true], start + 28 * minute + Duration::from_secs(1)).is_none(), "just over 10 minutes unused");
    }
}
