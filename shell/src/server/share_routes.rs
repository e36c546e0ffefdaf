//! Sharing routes: the access page (create links, change their role, revoke them, see who has
//! access) and the share link landing (`/share/<token>`).

use super::grain_routes::frame_csp;
use super::http::{html, redirect, Req, Resp};
use super::routes::{error, viewer, Session};
use super::Server;
use crate::apps::{self, InstalledApp};
use crate::gateway::Access;
use crate::grains::{self, Grain};
use crate::sharing::{self, LinkChange, ShareError};
use crate::{accounts, ui_sharing};
use hyper::StatusCode;
use std::collections::HashMap;

/// `GET /grains/<id>/access`, and `POST /grains/<id>/share` (`role`, `label`).
#[allow(clippy::too_many_arguments)]
pub fn access(
    server: &Server,
    s: &Session,
    g: &Grain,
    app: Option<&InstalledApp>,
    perms: &[bool],
    is_owner: bool,
    create: bool,
    form: &HashMap<String, String>,
) -> anyhow::Result<Resp> {
    let Some(app) = app else {
        return Ok(error(StatusCode::CONFLICT, "App not installed", "Install the grain's app again to share it."));
    };
    let m = &app.manifest;
    let mut new_link = None;
    let mut problem = None;
    if create {
        let role = form.get("role").and_then(|r| r.parse().ok()).unwrap_or(u32::MAX);
        match sharing::create_link(&server.db, g, m, &s.2.id, role, form.get("label").map(String::as_str).unwrap_or("")) {
            Ok((token, _)) => new_link = Some(format!("{}/share/{token}", server.base.url)),
            Err(ShareError::Store(e)) => return Err(e.into()),
            Err(e) => problem = Some(e.to_string()),
        }
    }
    let roles: Vec<(u32, String, bool)> = sharing::roles(m)
        .into_iter()
        .map(|(i, title, p)| (i, title, p.iter().zip(perms).all(|(w, h)| !*w || *h)))
        .collect();
    let links: Vec<_> = sharing::links_of(&server.db, &g.id)?.into_iter().filter(|l| is_owner || l.created_by == s.2.id).collect();
    let mut people = Vec::new();
    if is_owner {
        for (uid, link_id) in sharing::grants_of(&server.db, &g.id)? {
            if let Some(u) = server.db.get(&accounts::USERS, &uid)? {
                let now = sharing::user_permissions(&server.db, g, m, &uid)?;
                people.push(ui_sharing::Person { name: u.display_name, username: u.username, link_id, active: now.is_some() });
            }
        }
    }
    let names: HashMap<String, String> = links
        .iter()
        .filter_map(|l| server.db.get(&accounts::USERS, &l.created_by).ok().flatten().map(|u| (l.created_by.clone(), u.display_name)))
        .collect();
    let page = ui_sharing::AccessPage { grain: g, roles: &roles, links: &links, creators: &names, people: &people, new_link: new_link.as_deref(), problem: problem.as_deref() };
    let status = if problem.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    Ok(html(status, ui_sharing::access(&viewer(s), &page, m)))
}

/// `POST /grains/<id>/links/<link id>/revoke` and `.../role` (`role`).
pub fn change_link(server: &Server, s: &Session, g: &Grain, app: Option<&InstalledApp>, action: &str, form: &HashMap<String, String>) -> anyhow::Result<Resp> {
    let Some(app) = app else { return Ok(error(StatusCode::CONFLICT, "App not installed", "Install the grain's app again.")) };
    let mut parts = action.trim_start_matches("links/").splitn(2, '/');
    let (link_id, what) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let change = match what {
        "revoke" => LinkChange::Revoke,
        "role" => LinkChange::Role(form.get("role").and_then(|r| r.parse().ok()).unwrap_or(u32::MAX)),
        _ => return Ok(error(StatusCode::NOT_FOUND, "Page not found", "There is nothing at this address.")),
    };
    match sharing::update_link(&server.db, g, &app.manifest, &s.2.id, link_id, change) {
        Ok(()) => {}
        Err(ShareError::Store(e)) => return Err(e.into()),
        Err(e) => return Ok(error(StatusCode::FORBIDDEN, "Cannot change this link", &e.to_string())),
    }
    // Open sessions whose access changed end now, not at their next request.
    server.recheck_sessions(&g.id);
    Ok(redirect(&format!("/grains/{}/access", g.id)))
}

/// `GET /share/<token>`: anonymous visitors see the grain at once; signed-in people choose
/// whether the grain learns who they are. `POST /share/<token>` (`mode` = `reveal` or
/// `anonymous`) records that choice.
pub fn landing(server: &Server, session: Option<&Session>, req: &Req, token: &str) -> anyhow::Result<Resp> {
    let dead = || error(StatusCode::NOT_FOUND, "This sharing link does not work", "It was revoked, or the grain was deleted. Ask whoever shared it for a new link.");
    let Some(link) = sharing::link_by_token(&server.db, token)? else { return Ok(dead()) };
    let Some(grain) = server.db.get(&grains::GRAINS, &link.grain_id)?.filter(|g| g.trashed.is_none()) else { return Ok(dead()) };
    let Some(app) = apps::get(&server.db, &grain.package_id)? else { return Ok(dead()) };
    let Some(perms) = sharing::link_permissions(&server.db, &grain, &app.manifest, &link.id)? else { return Ok(dead()) };
    let user = session.map(|s| &s.2);
    let mode = if req.method == hyper::Method::POST {
        let form = req.form();
        if session.is_none() || session.map(|s| &s.1.csrf) != form.get("csrf") {
            return Ok(error(StatusCode::FORBIDDEN, "Form expired", "Go back, reload the page and try again."));
        }
        form.get("mode").cloned()
    } else {
        None
    };
    match (user, mode.as_deref()) {
        (Some(u), Some("reveal")) => {
            sharing::redeem(&server.db, &link, &u.id)?;
            Ok(redirect(&format!("/grains/{}", grain.id)))
        }
        (Some(u), None) if u.id == grain.owner => Ok(redirect(&format!("/grains/{}", grain.id))),
        (Some(_), None) => {
            let s = session.expect("signed in");
            Ok(html(StatusCode::OK, ui_sharing::choose(&viewer(s), &grain, token)))
        }
        (user, _) => {
            let url = server.gateway.open(&grain, Access { user, reveal: false, link_id: Some(link.id.clone()), permissions: perms });
            let mut r = html(StatusCode::OK, ui_sharing::shared_view(session.map(viewer).as_ref(), &grain, &url));
            frame_csp(&mut r, &url)?;
            Ok(r)
        }
    }
}
