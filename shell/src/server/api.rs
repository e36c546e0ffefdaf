//! The JSON API under `/api/v1`, authenticated by personal access tokens
//! (`Authorization: Bearer gt_…`); never by cookies, so it needs no CSRF token. SPEC.md,
//! "JSON API", lists the routes. It uses the same model functions as the browser UI.

use super::app_routes::{install_stream, json};
use super::grain_routes::accessible;
use super::http::{Req, Resp};
use super::Server;
use crate::accounts::{User, USERS};
use crate::gateway::Access;
use crate::sharing::{self, LinkChange, ShareError};
use crate::{apps, grains, tokens};
use hyper::body::Incoming;
use hyper::{header, Method, StatusCode};
use serde_json::{json as j, Value};

fn err(status: StatusCode, msg: &str) -> Resp {
    json(status, j!({ "error": msg }))
}

fn user_json(u: &User) -> Value {
    j!({ "id": u.id, "username": u.username, "display_name": u.display_name, "admin": u.admin, "suspended": u.suspended })
}

fn grain_json(server: &Server, g: &grains::Grain, is_owner: bool, perms: &[bool], m: Option<&granary_grains::manifest::Manifest>) -> Value {
    // The storage it takes is the owner's business (their quota), measured at most every 30 s.
    let storage = if is_owner { server.storage.grain_bytes(&g.id, &grains::GrainDirs::new(&server.data_dir, &g.id).var()) } else { None };
    let names: Vec<&str> = m.map(|m| m.permissions.iter().zip(perms).filter(|(_, p)| **p).map(|(d, _)| d.name.as_str()).collect()).unwrap_or_default();
    j!({ "id": g.id, "title": g.title, "package_id": g.package_id, "app_id": g.app_id, "owner": is_owner,
         "trashed": g.trashed.is_some(), "created": g.created, "storage_bytes": storage, "permissions": names })
}

/// Every `/api/v1/…` request. `POST /api/v1/apps` streams its body, so it is dispatched
/// before the body is read; everything else reads a small JSON body.
pub async fn handle(server: &Server, req: hyper::Request<Incoming>) -> anyhow::Result<Resp> {
    let bearer = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
    let Some(user) = bearer.map(|t| tokens::authenticate(&server.db, t)).transpose()?.flatten() else {
        return Ok(err(StatusCode::UNAUTHORIZED, "send a valid personal access token: Authorization: Bearer gt_… (create one on your account page)"));
    };
    let path = req.uri().path().trim_start_matches("/api/v1").to_owned();
    if req.method() == Method::POST && path == "/apps" {
        return install_stream(server, &user, req).await;
    }
    let req = match Req::read(req, ([127, 0, 0, 1], 0).into()).await {
        Ok(r) => r,
        Err(_) => return Ok(err(StatusCode::PAYLOAD_TOO_LARGE, "JSON bodies may be at most 64 KiB")),
    };
    let body: Value = if req.body.is_empty() { Value::Null } else {
        match serde_json::from_slice(&req.body) {
            Ok(v) => v,
            Err(e) => return Ok(err(StatusCode::BAD_REQUEST, &format!("the body is not JSON: {e}"))),
        }
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    route(server, &user, &req.method, &parts, &body).await
}

async fn route(server: &Server, user: &User, method: &Method, parts: &[&str], body: &Value) -> anyhow::Result<Resp> {
    let db = &server.db;
    let s = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    match (method, parts) {
        (&Method::GET, ["me"]) => Ok(json(StatusCode::OK, user_json(user))),
        (&Method::GET, ["users"]) => {
            if !user.admin {
                return Ok(err(StatusCode::FORBIDDEN, "only administrators can list users"));
            }
            let users: Vec<Value> = db.iter(&USERS)?.map(|e| e.map(|(_, u)| user_json(&u))).collect::<Result<_, _>>()?;
            Ok(json(StatusCode::OK, j!({ "users": users })))
        }
        (&Method::GET, ["apps"]) => {
            let list: Vec<Value> = apps::list(db)?
                .iter()
                .map(|a| j!({ "package_id": a.package_id, "app_id": a.app_id, "title": a.manifest.app_title, "version": a.manifest.app_version,
                               "actions": a.manifest.actions.iter().map(|x| x.title.clone()).collect::<Vec<_>>() }))
                .collect();
            Ok(json(StatusCode::OK, j!({ "apps": list })))
        }
        (&Method::GET, ["grains"]) => {
            let mut out = Vec::new();
            let mut ids: Vec<String> = grains::list_owned(db, &user.id)?.into_iter().map(|g| g.id).collect();
            ids.extend(sharing::shared_with(db, &user.id)?);
            for id in ids {
                if let Some((g, app, perms, owner)) = accessible(server, &user.id, &id)? {
                    out.push(grain_json(server, &g, owner, &perms, app.as_ref().map(|a| &a.manifest)));
                }
            }
            Ok(json(StatusCode::OK, j!({ "grains": out })))
        }
        (&Method::POST, ["grains"]) => {
            let Some(app) = apps::get(db, &s("package_id"))? else { return Ok(err(StatusCode::NOT_FOUND, "no installed app has that package_id")) };
            let action = body.get("action").and_then(Value::as_u64).unwrap_or(0) as usize;
            let Some(a) = app.manifest.actions.get(action) else { return Ok(err(StatusCode::BAD_REQUEST, "the app has no such action")) };
            let title = Some(s("title")).filter(|t| !t.trim().is_empty()).unwrap_or_else(|| format!("Untitled {}", a.noun_phrase));
            match grains::create(db, &server.data_dir, &user.id, &app.package_id, &app.app_id, action as u32, &title) {
                Ok(g) => Ok(json(StatusCode::CREATED, grain_json(server, &g, true, &vec![true; app.manifest.permissions.len()], Some(&app.manifest)))),
                Err(e @ grains::GrainError::BadTitle) => Ok(err(StatusCode::BAD_REQUEST, &e.to_string())),
                Err(e) => Err(e.into()),
            }
        }
        (m, ["grains", id, rest @ ..]) => {
            let Some((g, app, perms, owner)) = accessible(server, &user.id, id)? else { return Ok(err(StatusCode::NOT_FOUND, "grain not found")) };
            match (m, rest) {
                (&Method::GET, []) => Ok(json(StatusCode::OK, grain_json(server, &g, owner, &perms, app.as_ref().map(|a| &a.manifest)))),
                (&Method::DELETE, []) => {
                    if !owner {
                        return Ok(err(StatusCode::FORBIDDEN, "only the owner can delete a grain"));
                    }
                    server.gateway.close_where(|x| x.grain_id == g.id);
                    server.runner.stop(&g.id).await;
                    let g = grains::set_trashed(db, &g.id, true)?;
                    grains::delete(db, &server.data_dir, &g)?;
                    crate::powerbox_host::forget_grain(server, &g.id)?;
                    Ok(json(StatusCode::OK, j!({ "deleted": g.id })))
                }
                (&Method::POST, ["session"]) => {
                    if g.trashed.is_some() || app.is_none() {
                        return Ok(err(StatusCode::CONFLICT, "the grain is in the trash or its app is not installed"));
                    }
                    let url = server.gateway.open(&g, Access { user: Some(user), reveal: true, link_id: None, permissions: perms });
                    Ok(json(StatusCode::OK, j!({ "url": url, "expires_in_seconds": crate::gateway::INIT_TOKEN_TTL.as_secs() })))
                }
                (&Method::GET, ["shares"]) => {
                    let links: Vec<Value> = sharing::links_of(db, &g.id)?
                        .into_iter()
                        .filter(|l| owner || l.created_by == user.id)
                        .map(|l| j!({ "id": l.id, "label": l.label, "role": l.role, "revoked": l.revoked, "created": l.created }))
                        .collect();
                    Ok(json(StatusCode::OK, j!({ "shares": links })))
                }
                (&Method::POST, ["shares"]) => {
                    let Some(app) = app else { return Ok(err(StatusCode::CONFLICT, "the grain's app is not installed")) };
                    let role = body.get("role").and_then(Value::as_u64).unwrap_or(u64::MAX) as u32;
                    match sharing::create_link(db, &g, &app.manifest, &user.id, role, &s("label")) {
                        Ok((token, l)) => Ok(json(StatusCode::CREATED, j!({ "id": l.id, "url": format!("{}/share/{token}", server.base.url) }))),
                        Err(ShareError::Store(e)) => Err(e.into()),
                        Err(e) => Ok(err(StatusCode::BAD_REQUEST, &e.to_string())),
                    }
                }
                (&Method::DELETE, ["shares", link_id]) => {
                    let Some(app) = app else { return Ok(err(StatusCode::CONFLICT, "the grain's app is not installed")) };
                    match sharing::update_link(db, &g, &app.manifest, &user.id, link_id, LinkChange::Revoke) {
                        Ok(()) => {
                            server.recheck_sessions(&g.id);
                            Ok(json(StatusCode::OK, j!({ "revoked": link_id })))
                        }
                        Err(ShareError::Store(e)) => Err(e.into()),
                        Err(_) => Ok(err(StatusCode::NOT_FOUND, "no such share of yours on this grain")),
                    }
                }
                _ => Ok(err(StatusCode::NOT_FOUND, "no such API route (see SPEC.md, JSON API)")),
            }
        }
        _ => Ok(err(StatusCode::NOT_FOUND, "no such API route (see SPEC.md, JSON API)")),
    }
}
