//! The main host's routes (SPEC.md, "HTTP routes"). Every request passes the host check, the
//! body limit and, for `POST`, the cross-site checks before it reaches a handler.

use super::http::{self, add_security_headers, html, redirect, set_cookie, BodyError, Req, Resp};
use super::{app_routes, grain_routes, powerbox_routes, share_routes, Server};
use crate::accounts::{self, LoginSession, User};
use crate::ui::{self, Viewer};
use hyper::body::Incoming;
use hyper::{header, HeaderMap, Method, StatusCode};
use std::net::SocketAddr;
use std::time::Instant;

pub(super) const SESSION_COOKIE: &str = "granary_sid";
const CSRF_COOKIE: &str = "granary_csrf";

pub async fn handle(server: &Server, peer: SocketAddr, req: hyper::Request<Incoming>) -> Resp {
    let mut resp = match route(server, peer, req).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("internal error: {e:#}");
            error(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "The server hit an internal error; it is in the server's log. Try again.")
        }
    };
    add_security_headers(&mut resp);
    resp
}

pub(super) fn error(status: StatusCode, title: &str, message: &str) -> Resp {
    html(status, ui::error(title, message))
}

fn request_host(headers: &HeaderMap, uri: &hyper::Uri) -> Option<String> {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| uri.authority().map(|a| a.to_string()))
        .map(|h| h.to_ascii_lowercase())
}

async fn route(server: &Server, peer: SocketAddr, req: hyper::Request<Incoming>) -> anyhow::Result<Resp> {
    let host = request_host(req.headers(), req.uri());
    if let Some(label) = host.as_deref().and_then(|h| server.gateway.wildcard.label(h)) {
        let label = label.to_owned();
        return Ok(crate::gateway::handle(server, &label, req).await);
    }
    if host.as_deref() != Some(server.base.host.as_str()) {
        // Unknown names (an IP address, a DNS-rebinding name) never reach a handler.
        if matches!(*req.method(), Method::GET | Method::HEAD) {
            let path = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let mut r = redirect(&format!("{}{path}", server.base.url));
            *r.status_mut() = StatusCode::TEMPORARY_REDIRECT;
            return Ok(r);
        }
        return Ok(error(StatusCode::MISDIRECTED_REQUEST, "Wrong address", &format!("This server answers at {}.", server.base.url)));
    }
    let path = req.uri().path();
    if path == crate::gateway::grain_api::PREFIX || path.starts_with("/grain-api/") {
        return Ok(crate::gateway::grain_api::handle(server, req).await);
    }
    if req.uri().path().starts_with("/api/v1/") {
        return super::api::handle(server, req).await;
    }
    if req.method() == Method::POST && req.uri().path() == "/apps/upload" {
        if let Some(why) = cross_site(server, req.headers()) {
            return Ok(app_routes::json(StatusCode::FORBIDDEN, serde_json::json!({ "error": why })));
        }
        return app_routes::upload(server, req).await;
    }
    let req = match Req::read(req, peer).await {
        Ok(r) => r,
        Err(BodyError::TooLarge) => {
            return Ok(error(StatusCode::PAYLOAD_TOO_LARGE, "Too much data", &format!("Forms may send at most {} KiB.", http::MAX_FORM_BYTES / 1024)))
        }
        Err(BodyError::Broken) => return Ok(error(StatusCode::BAD_REQUEST, "Broken request", "The request body could not be read; try again.")),
    };
    if req.method == Method::POST {
        if let Some(why) = cross_site(server, &req.headers) {
            return Ok(error(StatusCode::FORBIDDEN, "Request refused", why));
        }
    }
    let session = match req.cookie(SESSION_COOKIE) {
        Some(token) => accounts::session_user(&server.db, token)?.map(|(s, u)| (token.to_owned(), s, u)),
        None => None,
    };
    // A session cookie that no longer names a session (signed out elsewhere, expired, the
    // person suspended or deleted) is cleared, so the browser stops sending it.
    let dead_cookie = req.cookie(SESSION_COOKIE).is_some() && session.is_none();
    let mut resp = dispatch(server, req, session).await?;
    let sets_it = resp.headers().get_all(header::SET_COOKIE).iter().any(|c| c.as_bytes().starts_with(format!("{SESSION_COOKIE}=").as_bytes()));
    if dead_cookie && !sets_it {
        set_cookie(&mut resp, SESSION_COOKIE, "", Some(0), server.base.secure, "Lax");
    }
    Ok(resp)
}

/// The routes of the main host, for a request read in full, with its session if any.
async fn dispatch(server: &Server, req: Req, session: Option<Session>) -> anyhow::Result<Resp> {
    let path = req.path.clone();
    match (&req.method, path.as_str()) {
        (&Method::GET, "/static/granary.css") => {
            let mut r = http::response(StatusCode::OK, "text/css; charset=utf-8", ui::CSS);
            r.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("public, max-age=3600"));
            Ok(r)
        }
        (&Method::GET, "/") => home(server, session.as_ref()),
        (&Method::GET, "/login") => Ok(match session {
            Some(_) => redirect("/"),
            None => login_page(&req, None, "", StatusCode::OK),
        }),
        (&Method::POST, "/login") => login(server, &req).await,
        (&Method::POST, "/dev-login") if crate::ui::DEV_ACCOUNTS.load(std::sync::atomic::Ordering::Relaxed) => dev_login(server, &req).await,
        (&Method::POST, "/logout") => logout(server, &req, session.as_ref()),
        (&Method::GET, "/admin") => admin(server, session.as_ref(), None),
        (m, "/admin/settings") => admin_settings(server, session.as_ref(), &req, *m == Method::POST),
        (&Method::GET, "/account") => account(session.as_ref(), server, None),
        (m, p) if p == "/account/email" || p.starts_with("/account/email/") => {
            let Some(s) = session.as_ref() else { return Ok(redirect("/login")) };
            match (m, p.strip_prefix("/account/email/")) {
                (&Method::POST, None) if req.form().get("csrf") == Some(&s.1.csrf) => super::email_routes::set(server, s, &req).await,
                (&Method::POST, None) => Ok(expired_form()),
                (&Method::GET, Some(secret)) => super::email_routes::confirm(server, s, secret),
                _ => Ok(error(StatusCode::NOT_FOUND, "Page not found", "There is nothing at this address.")),
            }
        }
        (&Method::POST, p) if p.starts_with("/account/tokens") => {
            let Some(s) = session.as_ref() else { return Ok(redirect("/login")) };
            let form = req.form();
            if form.get("csrf") != Some(&s.1.csrf) {
                return Ok(expired_form());
            }
            match p.trim_start_matches("/account/tokens").trim_start_matches('/').split_once('/') {
                None if p == "/account/tokens" => {
                    let (secret, _) = crate::tokens::create(&server.db, &s.2, form.get("label").map(String::as_str).unwrap_or(""))?;
                    account(session.as_ref(), server, Some(&secret))
                }
                Some((id, "revoke")) => {
                    crate::tokens::revoke(&server.db, &s.2.id, id)?;
                    server.recheck_capabilities();
                    Ok(redirect("/account"))
                }
                _ => Ok(error(StatusCode::NOT_FOUND, "Page not found", "There is nothing at this address.")),
            }
        }
        (&Method::POST, p) if p == "/admin/invite" || p.starts_with("/admin/users/") => admin_post(server, session.as_ref(), &req, p),
        (m, p) if p.starts_with("/invite/") && (m == Method::GET || m == Method::POST) => invite(server, &req, &p["/invite/".len()..]).await,
        (&Method::GET, "/static/upload.js") => {
            let mut r = http::response(StatusCode::OK, "text/javascript; charset=utf-8", crate::ui_apps::UPLOAD_JS);
            r.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("public, max-age=3600"));
            Ok(r)
        }
        (&Method::GET, "/static/log.js") => {
            let mut r = http::response(StatusCode::OK, "text/javascript; charset=utf-8", include_str!("../../static/log.js"));
            r.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("public, max-age=3600"));
            Ok(r)
        }
        (&Method::GET, "/static/powerbox.js") => {
            let mut r = http::response(StatusCode::OK, "text/javascript; charset=utf-8", include_str!("../../static/powerbox.js"));
            r.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("public, max-age=3600"));
            Ok(r)
        }
        // Browsers ask for /favicon.ico when a page names no icon (error pages of other
        // origins, a bare request): both answer the same picture.
        (&Method::GET, "/static/favicon.svg" | "/favicon.ico") => {
            let mut r = http::response(StatusCode::OK, "image/svg+xml", include_str!("../../static/favicon.svg"));
            r.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("public, max-age=86400"));
            Ok(r)
        }
        (&Method::GET, "/static/confirm.js") => {
            let mut r = http::response(StatusCode::OK, "text/javascript; charset=utf-8", include_str!("../../static/confirm.js"));
            r.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("public, max-age=3600"));
            Ok(r)
        }
        (m, p) if p == "/grains" || p.starts_with("/grains/") => {
            let Some(s) = session.as_ref() else { return Ok(redirect("/login")) };
            if *m == Method::POST && req.form().get("csrf") != Some(&s.1.csrf) {
                return Ok(expired_form());
            }
            let rest = p.trim_start_matches("/grains").trim_start_matches('/');
            match (m, rest.split_once('/')) {
                (&Method::POST, None) if rest.is_empty() => grain_routes::create(server, s, &req),
                (&Method::GET, None) => grain_routes::grain(server, s, &req, rest, None).await,
                (&Method::GET, Some((id, "access"))) => grain_routes::grain(server, s, &req, id, Some("access")).await,
                (&Method::POST, Some((id, a))) if a.starts_with("powerbox/") => powerbox_routes::dialog(server, s, &req, id, &a["powerbox/".len()..]),
                (&Method::POST, Some((id, a))) if a.starts_with("api-tokens/") && a.ends_with("/revoke") => match grain_routes::accessible(server, &s.2.id, id)? {
                    Some((g, ..)) => powerbox_routes::revoke_grain_token(server, s, &g, a.trim_start_matches("api-tokens/").trim_end_matches("/revoke")),
                    None => Ok(error(StatusCode::NOT_FOUND, "Grain not found", "There is no grain at this address, or it is not shared with you.")),
                },
                (&Method::GET, Some((id, "reach"))) => match grain_routes::accessible(server, &s.2.id, id)? {
                    Some((g, _, _, true)) => powerbox_routes::grain_reach(server, s, &g),
                    Some(_) => Ok(error(StatusCode::FORBIDDEN, "Only the owner can see this", "What a grain can reach is shown to its owner.")),
                    None => Ok(error(StatusCode::NOT_FOUND, "Grain not found", "There is no grain at this address, or it is not shared with you.")),
                },
                (&Method::GET, Some((id, "state"))) => match grain_routes::accessible(server, &s.2.id, id)? {
                    // What the grain bar shows its owner, asked again once the frame loaded.
                    Some((g, _, _, true)) => {
                        let state = if server.runner.is_running(&g.id) { "running" } else { "stopped" };
                        Ok(super::app_routes::json(StatusCode::OK, serde_json::json!({ "state": state })))
                    }
                    Some(_) => Ok(error(StatusCode::FORBIDDEN, "Only the owner can see this", "A grain's state is shown to its owner.")),
                    None => Ok(error(StatusCode::NOT_FOUND, "Grain not found", "There is no grain at this address, or it is not shared with you.")),
                },
                (&Method::GET, Some((id, "log"))) => match grain_routes::accessible(server, &s.2.id, id)? {
                    Some((g, _, _, true)) => super::log_route::log(server, &g.id).await,
                    Some(_) => Ok(error(StatusCode::FORBIDDEN, "Only the owner can do this", "The grain's log is for its owner.")),
                    None => Ok(error(StatusCode::NOT_FOUND, "Grain not found", "There is no grain at this address, or it is not shared with you.")),
                },
                (&Method::POST, Some((id, action))) => grain_routes::grain(server, s, &req, id, Some(action)).await,
                _ => Ok(error(StatusCode::NOT_FOUND, "Page not found", "There is nothing at this address.")),
            }
        }
        (&Method::GET, "/reach") => {
            let Some(s) = session.as_ref() else { return Ok(redirect("/login")) };
            powerbox_routes::user_reach(server, s)
        }
        (&Method::POST, p) if p.starts_with("/grants/") && p.ends_with("/revoke") => {
            let Some(s) = session.as_ref() else { return Ok(redirect("/login")) };
            let form = req.form();
            if form.get("csrf") != Some(&s.1.csrf) {
                return Ok(expired_form());
            }
            let id = p.trim_start_matches("/grants/").trim_end_matches("/revoke");
            powerbox_routes::revoke(server, s, id, form.get("back").map(String::as_str))
        }
        (&Method::POST, p) if p.starts_with("/apps/") => {
            let Some(s) = session.as_ref() else { return Ok(redirect("/login")) };
            let form = req.form();
            if form.get("csrf") != Some(&s.1.csrf) {
                return Ok(expired_form());
            }
            match p.trim_start_matches("/apps/").split_once('/') {
                Some((id, "limits")) => app_routes::set_limits(server, s, id, &form),
                Some((id, "uninstall")) => app_routes::uninstall(server, s, id),
                _ => Ok(error(StatusCode::NOT_FOUND, "Page not found", "There is nothing at this address.")),
            }
        }
        (&Method::GET, p) if p == "/apps" || p.starts_with("/apps/") => {
            let Some(s) = session.as_ref() else { return Ok(redirect("/login")) };
            match p.trim_start_matches("/apps").trim_start_matches('/').split_once('/') {
                None if p == "/apps" => app_routes::list(server, s),
                None => app_routes::details(server, s, &p["/apps/".len()..]),
                Some((id, "icon")) => app_routes::icon(server, id),
                Some(_) => Ok(error(StatusCode::NOT_FOUND, "Page not found", "There is nothing at this address.")),
            }
        }
        (m, p) if p.starts_with("/share/") && (m == Method::GET || m == Method::POST) => {
            share_routes::landing(server, session.as_ref(), &req, &p["/share/".len()..])
        }
        (m, p) if p.starts_with("/setup/") && (m == Method::GET || m == Method::POST) => {
            setup(server, &req, &p["/setup/".len()..]).await
        }
        _ => Ok(error(StatusCode::NOT_FOUND, "Page not found", "There is nothing at this address.")),
    }
}

/// Why a `POST` is refused as cross-site, if it is.
fn cross_site(server: &Server, headers: &HeaderMap) -> Option<&'static str> {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    if let Some(origin) = header("origin") {
        if !origin.eq_ignore_ascii_case(&server.base.url) {
            return Some("This form was sent from another site.");
        }
    }
    match header("sec-fetch-site") {
        Some("cross-site") | Some("same-site") => Some("This form was sent from another site."),
        _ => None,
    }
}

pub(super) type Session = (String, LoginSession, User);

/// The header's view of a signed-in session.
pub(super) fn viewer(s: &Session) -> Viewer<'_> {
    Viewer { user: &s.2, csrf: &s.1.csrf }
}

fn home(server: &Server, session: Option<&Session>) -> anyhow::Result<Resp> {
    let Some(s) = session else {
        let (_, admins) = accounts::count_users(&server.db)?;
        return Ok(if admins == 0 { html(StatusCode::OK, ui::not_set_up()) } else { redirect("/login") });
    };
    grain_routes::home(server, s)
}

/// The double-submit CSRF value for signed-out forms, and whether it must be set.
fn pre_csrf(req: &Req) -> (String, bool) {
    match req.cookie(CSRF_COOKIE) {
        Some(c) if c.len() == 32 && c.bytes().all(|b| b.is_ascii_hexdigit()) => (c.to_owned(), false),
        _ => (accounts::random_hex(16), true),
    }
}

fn with_pre_csrf(req: &Req, status: StatusCode, render: impl FnOnce(&str) -> maud::Markup) -> Resp {
    let (csrf, new) = pre_csrf(req);
    let mut r = html(status, render(&csrf));
    if new {
        set_cookie(&mut r, CSRF_COOKIE, &csrf, None, false, "Strict");
    }
    r
}

fn pre_csrf_ok(req: &Req, form: &std::collections::HashMap<String, String>) -> bool {
    matches!((req.cookie(CSRF_COOKIE), form.get("csrf")), (Some(c), Some(f)) if !c.is_empty() && c == f)
}

fn expired_form() -> Resp {
    error(StatusCode::FORBIDDEN, "Form expired", "This form is out of date. Go back, reload the page and try again.")
}

fn login_page(req: &Req, err: Option<&str>, username: &str, status: StatusCode) -> Resp {
    with_pre_csrf(req, status, |csrf| ui::login(csrf, err, username))
}

async fn login(server: &Server, req: &Req) -> anyhow::Result<Resp> {
    let form = req.form();
    if !pre_csrf_ok(req, &form) {
        return Ok(expired_form());
    }
    let username = form.get("username").map(String::as_str).unwrap_or("");
    let password = form.get("password").cloned().unwrap_or_default();
    let account = username.trim().to_ascii_lowercase();
    let ip = req.peer.ip();
    if let Some(wait) = server.limiter.borrow_mut().blocked(&account, ip, Instant::now()) {
        let minutes = wait.as_secs().div_ceil(60).max(1);
        let msg = format!("Too many failed attempts. Try again in {minutes} minute{}.", if minutes == 1 { "" } else { "s" });
        return Ok(login_page(req, Some(&msg), username, StatusCode::TOO_MANY_REQUESTS));
    }
    let user = accounts::user_by_name(&server.db, username)?;
    let hash = user.as_ref().map(|u| u.password_hash.clone()).unwrap_or_else(|| accounts::dummy_hash().to_owned());
    let ok = blocking::unblock(move || accounts::verify_password(&password, &hash)).await;
    let user = match user {
        Some(u) if ok => u,
        _ => {
            server.limiter.borrow_mut().failed(&account, ip, Instant::now());
            return Ok(login_page(req, Some("Wrong username or password."), username, StatusCode::UNAUTHORIZED));
        }
    };
    if user.suspended {
        return Ok(login_page(req, Some("This account is suspended. Ask an administrator."), username, StatusCode::FORBIDDEN));
    }
    server.limiter.borrow_mut().succeeded(&account);
    signed_in(server, &user)
}

/// `POST /dev-login` (only with `--dev-accounts`): signs in as a test user, created on first use.
async fn dev_login(server: &Server, req: &Req) -> anyhow::Result<Resp> {
    let form = req.form();
    if !pre_csrf_ok(req, &form) {
        return Ok(expired_form());
    }
    let name = form.get("username").map(String::as_str).unwrap_or("");
    let Some((_, display)) = crate::ui::DEV_USERS.iter().find(|(n, _)| *n == name) else {
        return Ok(error(StatusCode::NOT_FOUND, "No such test user", "Choose one of the development accounts on the sign-in page."));
    };
    let user = match accounts::user_by_name(&server.db, name)? {
        Some(u) => u,
        None => {
            // An unusable password: these accounts are entered only through this route.
            let hash = blocking::unblock(|| accounts::hash_password(&accounts::random_hex(32))).await;
            accounts::create_dev_user(&server.db, name, display, hash)?
        }
    };
    if user.suspended {
        return Ok(error(StatusCode::FORBIDDEN, "Suspended", "This account is suspended. Ask an administrator."));
    }
    signed_in(server, &user)
}

fn signed_in(server: &Server, user: &User) -> anyhow::Result<Resp> {
    let (token, _) = accounts::start_session(&server.db, user)?;
    let mut r = redirect("/");
    set_cookie(&mut r, SESSION_COOKIE, &token, Some(accounts::session_seconds()), server.base.secure, "Lax");
    Ok(r)
}

fn logout(server: &Server, req: &Req, session: Option<&Session>) -> anyhow::Result<Resp> {
    let Some((token, s, _)) = session else { return Ok(redirect("/login")) };
    if req.form().get("csrf") != Some(&s.csrf) {
        return Ok(expired_form());
    }
    accounts::end_session(&server.db, token)?;
    let mut r = redirect("/login");
    set_cookie(&mut r, SESSION_COOKIE, "", Some(0), server.base.secure, "Lax");
    Ok(r)
}

fn admin(server: &Server, session: Option<&Session>, invite_url: Option<&str>) -> anyhow::Result<Resp> {
    let Some(s) = session else { return Ok(redirect("/login")) };
    if !s.2.admin {
        return Ok(error(StatusCode::FORBIDDEN, "Administrators only", "Only administrators can see this page."));
    }
    let mut users: Vec<User> = server.db.iter(&accounts::USERS)?.map(|e| e.map(|(_, u)| u)).collect::<Result<_, _>>()?;
    users.sort_by(|a, b| a.username.cmp(&b.username));
    let data_dir = server.data_dir.display().to_string();
    let status = ui::AdminStatus {
        version: env!("CARGO_PKG_VERSION"),
        base_url: &server.base.url,
        data_dir: &data_dir,
        users: &users,
        running_grains: server.runner.running_count(),
        storage_bytes: granary_supervisor::disk_usage(&server.data_dir.join("grains")).unwrap_or(0),
        invite_url,
    };
    Ok(html(StatusCode::OK, ui::admin(&viewer(s), &status)))
}

fn account(session: Option<&Session>, server: &Server, new_token: Option<&str>) -> anyhow::Result<Resp> {
    let Some(s) = session else { return Ok(redirect("/login")) };
    let list = crate::tokens::list(&server.db, &s.2.id)?;
    Ok(html(StatusCode::OK, ui::account(&viewer(s), &list, new_token, &server.base.url, None)))
}

/// `GET/POST /admin/settings` (admins).
fn admin_settings(server: &Server, session: Option<&Session>, req: &Req, post: bool) -> anyhow::Result<Resp> {
    let Some(s) = session else { return Ok(redirect("/login")) };
    if !s.2.admin {
        return Ok(error(StatusCode::FORBIDDEN, "Administrators only", "Only administrators can change server settings."));
    }
    let defaults = server.runner.default_limits.get();
    if !post {
        let current = crate::settings::load(&server.db)?;
        return Ok(html(StatusCode::OK, ui::settings(&viewer(s), &current, defaults, None, false)));
    }
    let form = req.form();
    if form.get("csrf") != Some(&s.1.csrf) {
        return Ok(expired_form());
    }
    match crate::settings::save(server, &form) {
        Ok(()) => {
            let current = crate::settings::load(&server.db)?;
            Ok(html(StatusCode::OK, ui::settings(&viewer(s), &current, server.runner.default_limits.get(), None, true)))
        }
        Err(why) => {
            let current = crate::settings::load(&server.db)?;
            Ok(html(StatusCode::BAD_REQUEST, ui::settings(&viewer(s), &current, defaults, Some(&why), false)))
        }
    }
}

/// `POST /admin/invite` and `POST /admin/users/<id>/suspend|reinstate`.
fn admin_post(server: &Server, session: Option<&Session>, req: &Req, path: &str) -> anyhow::Result<Resp> {
    let Some(s) = session else { return Ok(redirect("/login")) };
    if !s.2.admin {
        return Ok(error(StatusCode::FORBIDDEN, "Administrators only", "Only administrators can do this."));
    }
    if req.form().get("csrf") != Some(&s.1.csrf) {
        return Ok(expired_form());
    }
    if path == "/admin/invite" {
        let token = accounts::new_invite(&server.db, &s.2.id)?;
        return admin(server, session, Some(&format!("{}/invite/{token}", server.base.url)));
    }
    let rest = path.trim_start_matches("/admin/users/");
    let (id, action) = rest.split_once('/').unwrap_or((rest, ""));
    let suspend = match action {
        "suspend" => true,
        "reinstate" => false,
        _ => return Ok(error(StatusCode::NOT_FOUND, "Page not found", "There is nothing at this address.")),
    };
    if id == s.2.id {
        return Ok(error(StatusCode::BAD_REQUEST, "Not yourself", "You cannot suspend your own account."));
    }
    if accounts::set_suspended(&server.db, id, suspend)?.is_none() {
        return Ok(error(StatusCode::NOT_FOUND, "No such user", "That account does not exist."));
    }
    if suspend {
        server.close_user_sessions(id);
    }
    Ok(redirect("/admin"))
}

async fn invite(server: &Server, req: &Req, token: &str) -> anyhow::Result<Resp> {
    if !accounts::invite_valid(&server.db, token)? {
        return Ok(error(StatusCode::NOT_FOUND, "This invitation does not work", "It was used already or expired. Ask for a new one."));
    }
    if req.method == Method::GET {
        return Ok(with_pre_csrf(req, StatusCode::OK, |csrf| ui::invite(token, csrf, None, "", "")));
    }
    let form = req.form();
    if !pre_csrf_ok(req, &form) {
        return Ok(expired_form());
    }
    let field = |k: &str| form.get(k).cloned().unwrap_or_default();
    let (username, display_name, password) = (field("username"), field("display_name"), field("password"));
    let again = |msg: &str| with_pre_csrf(req, StatusCode::BAD_REQUEST, |csrf| ui::invite(token, csrf, Some(msg), &username, &display_name));
    if password.chars().count() < 10 {
        return Ok(again(&accounts::AccountError::WeakPassword.to_string()));
    }
    if password != field("password2") {
        return Ok(again("The two passwords differ."));
    }
    let hash = blocking::unblock(move || accounts::hash_password(&password)).await;
    match accounts::create_user_with_invite(&server.db, token, &username, &display_name, hash) {
        Ok(Some(user)) => signed_in(server, &user),
        Ok(None) => Ok(error(StatusCode::NOT_FOUND, "This invitation does not work", "It was used already or expired. Ask for a new one.")),
        Err(accounts::AccountError::Store(e)) => Err(e.into()),
        Err(e) => Ok(again(&e.to_string())),
    }
}

async fn setup(server: &Server, req: &Req, token: &str) -> anyhow::Result<Resp> {
    if !accounts::setup_token_valid(&server.db, token)? {
        return Ok(html(StatusCode::NOT_FOUND, ui::setup_expired()));
    }
    if req.method == Method::GET {
        return Ok(with_pre_csrf(req, StatusCode::OK, |csrf| ui::setup(token, csrf, None, "", "")));
    }
    let form = req.form();
    if !pre_csrf_ok(req, &form) {
        return Ok(expired_form());
    }
    let field = |k: &str| form.get(k).cloned().unwrap_or_default();
    let (username, display_name, password) = (field("username"), field("display_name"), field("password"));
    let again = |msg: &str| with_pre_csrf(req, StatusCode::BAD_REQUEST, |csrf| ui::setup(token, csrf, Some(msg), &username, &display_name));
    if password.chars().count() < 10 {
        return Ok(again(&accounts::AccountError::WeakPassword.to_string()));
    }
    if password != field("password2") {
        return Ok(again("The two passwords differ."));
    }
    let hash = blocking::unblock(move || accounts::hash_password(&password)).await;
    match accounts::create_admin_with_token(&server.db, token, &username, &display_name, hash) {
        Ok(Some(user)) => signed_in(server, &user),
        Ok(None) => Ok(html(StatusCode::NOT_FOUND, ui::setup_expired())),
        Err(accounts::AccountError::Store(e)) => Err(e.into()),
        Err(e) => Ok(again(&e.to_string())),
    }
}
