//! Grain routes: the list, creating, the grain page, rename, trash, restore, delete; the
//! sharing actions are in `share_routes`.

use super::http::{html, redirect, Req, Resp};
use super::routes::{error, viewer, Session};
use super::Server;
use crate::apps::{self, InstalledApp};
use super::share_routes;
use crate::gateway::Access;
use crate::grains::{self, Grain, GrainError};
use crate::sharing;
use crate::ui_grains;
use hyper::StatusCode;
use std::collections::HashMap;

fn not_found() -> Resp {
    error(StatusCode::NOT_FOUND, "Grain not found", "There is no grain at this address, or it is not shared with you.")
}

fn apps_by_id(server: &Server) -> anyhow::Result<HashMap<String, InstalledApp>> {
    Ok(apps::list(&server.db)?.into_iter().map(|a| (a.package_id.clone(), a)).collect())
}

pub fn home(server: &Server, s: &Session) -> anyhow::Result<Resp> {
    let list = grains::list_owned(&server.db, &s.2.id)?;
    let mut shared = Vec::new();
    for id in sharing::shared_with(&server.db, &s.2.id)? {
        if let Some((g, _, _, false)) = accessible(server, &s.2.id, &id)? {
            shared.push(g);
        }
    }
    // Storage is measured by walking each grain's /var, like `du`, at most every 30 s.
    let status: HashMap<String, ui_grains::GrainStatus> = list
        .iter()
        .map(|g| {
            let size = server.storage.grain_bytes(&g.id, &grains::GrainDirs::new(&server.data_dir, &g.id).var()).or(g.storage_bytes);
            (g.id.clone(), ui_grains::GrainStatus { size, running: server.runner.is_running(&g.id) })
        })
        .collect();
    Ok(html(StatusCode::OK, ui_grains::home(&viewer(s), &list, &shared, &apps_by_id(server)?, &status)))
}

/// `POST /grains`: create from an app's action.
pub fn create(server: &Server, s: &Session, req: &Req) -> anyhow::Result<Resp> {
    let form = req.form();
    let Some(app) = apps::get(&server.db, form.get("package_id").map(String::as_str).unwrap_or(""))? else {
        return Ok(error(StatusCode::NOT_FOUND, "App not found", "That app is not installed (any more)."));
    };
    let action: usize = form.get("action").and_then(|a| a.parse().ok()).unwrap_or(usize::MAX);
    let Some(a) = app.manifest.actions.get(action) else {
        return Ok(error(StatusCode::BAD_REQUEST, "Unknown action", "The app has no such action; reload its page."));
    };
    let title = form.get("title").map(|t| t.trim()).filter(|t| !t.is_empty()).map(str::to_owned).unwrap_or_else(|| format!("Untitled {}", a.noun_phrase));
    match grains::create(&server.db, &server.data_dir, &s.2.id, &app.package_id, &app.app_id, action as u32, &title) {
        Ok(g) => Ok(redirect(&format!("/grains/{}", g.id))),
        Err(GrainError::BadTitle) => Ok(error(StatusCode::BAD_REQUEST, "Title too long", &GrainError::BadTitle.to_string())),
        Err(e) => Err(e.into()),
    }
}

/// A grain as a user may see it: the grain, its app, their permissions, whether they own it.
pub type Accessible = (Grain, Option<InstalledApp>, Vec<bool>, bool);

/// The grain `id` as `user` may see it: (grain, its app, the user's permissions, owner?).
/// `None` when it does not exist or the user has no access (indistinguishable on purpose).
pub fn accessible(server: &Server, user: &str, id: &str) -> anyhow::Result<Option<Accessible>> {
    let Some(g) = server.db.get(&grains::GRAINS, id)? else { return Ok(None) };
    let app = apps::get(&server.db, &g.package_id)?;
    if g.owner == user {
        let n = app.as_ref().map_or(0, |a| a.manifest.permissions.len());
        return Ok(Some((g, app, vec![true; n], true)));
    }
    let Some(a) = &app else { return Ok(None) };
    match sharing::user_permissions(&server.db, &g, &a.manifest, user)? {
        Some(p) if g.trashed.is_none() => Ok(Some((g, app, p, false))),
        _ => Ok(None),
    }
}

/// `GET /grains/<id>[/access]` and `POST /grains/<id>/<action>`.
pub async fn grain(server: &Server, s: &Session, req: &Req, id: &str, action: Option<&str>) -> anyhow::Result<Resp> {
    let Some((g, app, perms, is_owner)) = accessible(server, &s.2.id, id)? else { return Ok(not_found()) };
    let form = req.form();
    let owner_only = matches!(action, Some("rename" | "trash" | "restore" | "delete" | "restart"));
    if owner_only && !is_owner {
        return Ok(error(StatusCode::FORBIDDEN, "Only the owner can do this", "Ask the grain's owner."));
    }
    if matches!(action, Some("trash" | "delete" | "restart")) {
        // Open sessions end at once; the app stops (a restart starts it on the next request).
        if action != Some("restart") {
            server.gateway.close_where(|x| x.grain_id == g.id);
            // What the grain holds ends with it (a restored grain restores its grants again).
            server.powerbox.membranes.revoke_owned_by(&g.id);
        }
        server.gateway.reset_grain(&g.id);
        server.runner.stop(&g.id).await;
    }
    match action {
        Some("access") | Some("share") => return share_routes::access(server, s, &g, app.as_ref(), &perms, is_owner, action == Some("share"), &form),
        Some(a) if a.starts_with("links/") => return share_routes::change_link(server, s, &g, app.as_ref(), a, &form),
        _ => {}
    }
    let result: Result<Option<Grain>, GrainError> = match action {
        None => Ok(Some(g.clone())),
        Some("rename") => grains::rename(&server.db, id, form.get("title").map(String::as_str).unwrap_or("")).map(Some),
        Some("trash") => grains::set_trashed(&server.db, id, true).map(|_| None).inspect(|_| server.recheck_capabilities()),
        Some("restore") => grains::set_trashed(&server.db, id, false).map(Some),
        Some("restart") => Ok(Some(g.clone())),
        Some("delete") => {
            let r = grains::delete(&server.db, &server.data_dir, &g).map(|_| None);
            if r.is_ok() {
                crate::powerbox_host::forget_grain(server, &g.id)?;
            }
            r
        }
        Some(_) => return Ok(not_found()),
    };
    let wake_locks = server.runner.wake_locks_of(&g.id);
    let page = ui_grains::GrainPage { grain: &g, app: app.as_ref(), is_owner, frame: None, running: false, error: None, wake_locks: &wake_locks };
    match (action, result) {
        (None, _) => {
            let at = req.query_param("path").filter(|p| crate::gateway::Gateway::in_grain_path(p).is_some() && p != "/");
            let frame = (g.trashed.is_none() && app.is_some()).then(|| {
                let init = server.gateway.open(&g, Access { user: Some(&s.2), reveal: true, link_id: None, permissions: perms.clone() });
                match &at {
                    Some(p) => format!("{init}?path={}", form_urlencoded::byte_serialize(p.as_bytes()).collect::<String>()),
                    None => init,
                }
            });
            let running = server.runner.is_running(&g.id);
            let mut r = html(StatusCode::OK, ui_grains::grain(&viewer(s), &ui_grains::GrainPage { frame: frame.as_deref(), running, ..page }));
            if let Some(url) = &frame {
                // Chooser pages open on session origins made later, so any of them.
                let w = &server.gateway.wildcard;
                frame_csp_also(&mut r, url, &format!(" {}://*{}", w.scheme, w.suffix))?;
            }
            Ok(r)
        }
        (Some("restore" | "rename" | "restart"), Ok(_)) => Ok(redirect(&format!("/grains/{id}"))),
        (_, Ok(_)) => Ok(redirect("/")),
        (_, Err(e @ (GrainError::BadTitle | GrainError::NotTrashed))) => {
            let msg = e.to_string();
            Ok(html(StatusCode::BAD_REQUEST, ui_grains::grain(&viewer(s), &ui_grains::GrainPage { error: Some(&msg), ..page })))
        }
        (_, Err(e)) => Err(e.into()),
    }
}

/// Lets a page frame the session origin of `init_url` (and nothing else).
pub fn frame_csp(r: &mut Resp, init_url: &str) -> anyhow::Result<()> {
    frame_csp_also(r, init_url, "")
}

/// [`frame_csp`], also allowing the frame sources in `also` (space-separated, leading space):
/// the grain page's powerbox dialog frames provider chooser pages on other session origins.
pub fn frame_csp_also(r: &mut Resp, init_url: &str, also: &str) -> anyhow::Result<()> {
    let origin = init_url.split(crate::gateway::PLATFORM_PREFIX).next().unwrap_or("");
    let csp = format!("default-src 'self'; frame-src {origin}{also}; frame-ancestors 'none'; form-action 'self'; base-uri 'none'");
    r.headers_mut().insert("content-security-policy", hyper::header::HeaderValue::from_str(&csp)?);
    Ok(())
}
