//! The powerbox's HTTP routes on the base host: the dialog's `options` and `pick`
//! (`POST /grains/<id>/powerbox/…`, JSON answers), the "What can this reach" pages and
//! revoking a grant.

use super::app_routes::json;
use super::http::{html, redirect, Req, Resp};
use super::routes::{error, viewer, Session};
use super::Server;
use crate::grains;
use crate::powerbox_chooser;
use crate::powerbox_host::{self, Pending};
use crate::ui_powerbox::{self, GrantRow};
use granary_powerbox::{matching, Grant, GrantId, Owner, Requirement};
use hyper::StatusCode;
use serde_json::json as j;

fn json_error(status: StatusCode, msg: &str) -> Resp {
    json(status, j!({ "error": msg }))
}

/// `POST /grains/<id>/powerbox/options|pick`, from the grain page's dialog. The form carries
/// `session` (the frame's session id), `query` (JSON list of base64url descriptors) and, for
/// `pick`, `option`.
pub fn dialog(server: &Server, s: &Session, req: &Req, grain_id: &str, what: &str) -> anyhow::Result<Resp> {
    let form = req.form();
    let Some(session) = server.gateway.get(form.get("session").map(String::as_str).unwrap_or("")) else {
        return Ok(json_error(StatusCode::NOT_FOUND, "This grain session has ended; reload the page and ask again."));
    };
    if session.grain_id != grain_id || session.user_id.as_deref() != Some(s.2.id.as_str()) {
        return Ok(json_error(StatusCode::FORBIDDEN, "That session is not yours or not this grain's; reload the page."));
    }
    let Some(grain) = server.db.get(&grains::GRAINS, grain_id)? else {
        return Ok(json_error(StatusCode::NOT_FOUND, "This grain no longer exists."));
    };
    if what == "template" {
        return template(server, s, &grain, &form);
    }
    if let Some(rest) = what.strip_prefix("chooser/") {
        return Ok(chooser_state(server, s, &session.label, rest));
    }
    if what == "offers" || what.starts_with("offer/") {
        return offer_route(server, s, &session.label, &grain, what);
    }
    let query = match powerbox_host::parse_query(form.get("query").map(String::as_str).unwrap_or("")) {
        Ok(q) => q,
        Err(e) => return Ok(json_error(StatusCode::BAD_REQUEST, &format!("The grain's request is malformed: {e}. Tell the app's developer."))),
    };
    let options = powerbox_host::options(server, &s.2, &grain, &query)?;
    match what {
        "options" => {
            let list: Vec<_> = options
                .iter()
                .map(|o| j!({ "id": o.id, "title": o.title, "verbPhrase": o.verb_phrase, "description": o.description, "chooser": powerbox_chooser::chooser_of(server, o).is_some() }))
                .collect();
            let hint = "Nothing installed here answers it: for another grain's API, create a grain of an app that provides it; for outside services, the grain must name the web address it needs.";
            Ok(json(StatusCode::OK, j!({ "asked": powerbox_host::describe_request(&query, &|id| powerbox_host::interface_title(server, id)), "options": list, "hint": hint })))
        }
        "pick" => {
            let wanted = form.get("option").map(String::as_str).unwrap_or("");
            let Some(o) = options.into_iter().find(|o| o.id == wanted) else {
                return Ok(json_error(StatusCode::CONFLICT, "That choice is no longer available (your access may have changed); ask again."));
            };
            if powerbox_chooser::chooser_of(server, &o).is_some() {
                return Ok(json_error(StatusCode::CONFLICT, "That choice is made on the provider's own page: open it with /powerbox/chooser (reload the page if this dialog is old)."));
            }
            let descriptor = matching::encode_descriptor(&query[o.answers]);
            let pending: Pending = o.pending;
            let token = server.powerbox.claims.borrow_mut().issue(&session.label, &s.2.id, pending, crate::accounts::now());
            Ok(json(StatusCode::OK, j!({ "token": token.as_str(), "descriptor": descriptor })))
        }
        "chooser" => {
            let wanted = form.get("option").map(String::as_str).unwrap_or("");
            let Some(o) = options.into_iter().find(|o| o.id == wanted) else {
                return Ok(json_error(StatusCode::CONFLICT, "That choice is no longer available (your access may have changed); ask again."));
            };
            match powerbox_chooser::open(server, &s.2, &grain, &session.label, &o, &query[o.answers])? {
                Ok((id, url)) => Ok(json(StatusCode::OK, j!({ "chooser": id, "url": url }))),
                Err(why) => Ok(json_error(StatusCode::CONFLICT, &why)),
            }
        }
        _ => Ok(json_error(StatusCode::NOT_FOUND, "There is nothing at this address.")),
    }
}

/// `POST /grains/<id>/powerbox/chooser/<chooser id>` (the dialog polls it): `{"state":
/// "pending"}`, `{"state": "done", token, descriptor}` (the chooser then ends), or 404 when it
/// is gone; `…/<chooser id>/cancel` ends it.
fn chooser_state(server: &Server, s: &Session, requester_session: &str, rest: &str) -> Resp {
    let gone = || json_error(StatusCode::NOT_FOUND, "This choice was closed, your access to that grain changed, or it took longer than 10 minutes; ask again.");
    if let Some(id) = rest.strip_suffix("/cancel") {
        return if powerbox_chooser::cancel(server, &s.2.id, requester_session, id) { json(StatusCode::OK, j!({ "state": "canceled" })) } else { gone() };
    }
    match powerbox_chooser::poll(server, &s.2.id, requester_session, rest) {
        powerbox_chooser::Poll::Pending => json(StatusCode::OK, j!({ "state": "pending" })),
        powerbox_chooser::Poll::Done(f) => json(StatusCode::OK, j!({ "state": "done", "token": f.token, "descriptor": f.descriptor })),
        powerbox_chooser::Poll::Gone => gone(),
    }
}

/// `POST /grains/<id>/powerbox/offers` (the grain page polls it): `{"offer": {id, title,
/// verbPhrase, description}}` once per offer the session's app made, else `{"offer": null}`.
/// `…/offer/<id>/accept` mints a grain API token as the person (their current permissions) and
/// answers `{token, host, petname}` for the shell's dialog; `…/offer/<id>/decline` drops it.
fn offer_route(server: &Server, s: &Session, label: &str, grain: &grains::Grain, what: &str) -> anyhow::Result<Resp> {
    let now = crate::accounts::now();
    if what == "offers" {
        let o = server.powerbox.offers.borrow_mut().take_unshown(label, now);
        let offer = o.map(|o| j!({ "id": o.id, "title": o.title, "verbPhrase": o.verb_phrase, "description": o.description }));
        return Ok(json(StatusCode::OK, j!({ "offer": offer })));
    }
    let rest = &what["offer/".len()..];
    let (id, accept) = match (rest.strip_suffix("/accept"), rest.strip_suffix("/decline")) {
        (Some(id), _) => (id, true),
        (_, Some(id)) => (id, false),
        _ => return Ok(json_error(StatusCode::NOT_FOUND, "There is nothing at this address.")),
    };
    let Some(o) = server.powerbox.offers.borrow_mut().remove(id, label, &s.2.id, now) else {
        return Ok(json_error(StatusCode::NOT_FOUND, "This offer was answered already or is older than 10 minutes."));
    };
    if !accept {
        return Ok(json(StatusCode::OK, j!({ "declined": true })));
    }
    let world = crate::powerbox_host::ShellWorld { db: &server.db };
    let Some(permissions) = granary_powerbox::World::user_permissions(&world, &s.2.id, &grain.id) else {
        return Ok(json_error(StatusCode::FORBIDDEN, "You no longer have access to this grain."));
    };
    let petname = if o.title.is_empty() { "API key" } else { o.title.as_str() };
    let (secret, t) = crate::grain_tokens::mint(&server.db, &grain.id, &s.2.id, permissions, petname)?;
    tracing::info!(grain = %grain.id, token = %t.id, by = %s.2.username, "grain API token made from an offer");
    let host = format!("{}{}", server.base.url, crate::gateway::grain_api::PREFIX);
    Ok(json(StatusCode::OK, j!({ "token": secret, "host": host, "petname": t.petname })))
}

/// `renderTemplate`: mints a grain API token as the person (with at most the chosen role's
/// permissions) and answers the template with `$API_TOKEN` and `$API_HOST` filled in, for the
/// shell's page to show; the app never sees it.
fn template(server: &Server, s: &Session, grain: &grains::Grain, form: &std::collections::HashMap<String, String>) -> anyhow::Result<Resp> {
    let text = form.get("template").map(String::as_str).unwrap_or("");
    if text.is_empty() || text.len() > 4096 || !text.contains("$API_TOKEN") {
        return Ok(json_error(StatusCode::BAD_REQUEST, "The app's template must be 1 to 4096 bytes and contain $API_TOKEN. Tell the app's developer."));
    }
    let petname = form.get("petname").map(|p| p.trim()).filter(|p| !p.is_empty()).unwrap_or("API access");
    let world = crate::powerbox_host::ShellWorld { db: &server.db };
    let Some(mut permissions) = granary_powerbox::World::user_permissions(&world, &s.2.id, &grain.id) else {
        return Ok(json_error(StatusCode::FORBIDDEN, "You no longer have access to this grain."));
    };
    if let Some(role) = form.get("role").filter(|r| !r.is_empty()) {
        let app = crate::apps::get(&server.db, &grain.package_id)?.ok_or_else(|| anyhow::anyhow!("the grain's app is not installed"))?;
        let Some((_, _, role_perms)) = role.parse::<u32>().ok().and_then(|i| crate::sharing::roles(&app.manifest).into_iter().find(|(n, _, _)| *n == i)) else {
            return Ok(json_error(StatusCode::BAD_REQUEST, "The app asked for a role it does not have. Tell the app's developer."));
        };
        permissions = crate::powerbox_host::intersect(&permissions, &role_perms);
    }
    let (secret, t) = crate::grain_tokens::mint(&server.db, &grain.id, &s.2.id, permissions, petname)?;
    tracing::info!(grain = %grain.id, token = %t.id, by = %s.2.username, "grain API token made");
    let host = format!("{}{}", server.base.url, crate::gateway::grain_api::PREFIX);
    let rendered = text.replace("$API_TOKEN", &secret).replace("$API_HOST", &host);
    Ok(json(StatusCode::OK, j!({ "text": rendered, "petname": t.petname })))
}

/// `POST /grains/<id>/api-tokens/<token id>/revoke`: the grain's owner or the token's maker.
pub fn revoke_grain_token(server: &Server, s: &Session, grain: &grains::Grain, token_id: &str) -> anyhow::Result<Resp> {
    let Some(t) = crate::grain_tokens::list(&server.db, &grain.id)?.into_iter().find(|t| t.id == token_id) else {
        return Ok(error(StatusCode::NOT_FOUND, "No such API token", "It may have been revoked already."));
    };
    if grain.owner != s.2.id && t.user != s.2.id {
        return Ok(error(StatusCode::FORBIDDEN, "Not yours to revoke", "Only the grain's owner or the person who made the token can revoke it."));
    }
    crate::grain_tokens::revoke(&server.db, &grain.id, token_id)?;
    server.gateway.api_sessions.forget_token(token_id);
    Ok(redirect(&format!("/grains/{}/reach", grain.id)))
}

fn row(server: &Server, g: Grant) -> GrantRow {
    let username = |id: &str| server.db.get(&crate::accounts::USERS, id).ok().flatten().map(|u| u.username).unwrap_or_else(|| "(deleted)".into());
    let grain_title = |id: &str| server.db.get(&grains::GRAINS, id).ok().flatten().map(|g| g.title).unwrap_or_else(|| "(deleted grain)".into());
    let (held_by, label) = match &g.owner {
        Owner::Grain { grain, label } => (format!("grain “{}”", grain_title(grain)), label.clone()),
        Owner::User { user } => (format!("user {}", username(user)), String::new()),
        Owner::ApiToken { token } => (format!("API token {token}"), String::new()),
    };
    let holder = match &g.owner {
        Owner::Grain { grain, .. } => Some(grain.as_str()),
        _ => None,
    };
    // A grain-to-grain grant requires the granting person's permissions on the provider.
    let reaches = g.requirements.iter().find_map(|r| match r {
        Requirement::UserHasPermissions { grain, .. } if Some(grain.as_str()) != holder => Some(grain.clone()),
        _ => None,
    });
    GrantRow {
        id: g.id.0.clone(),
        what: g.display.clone(),
        held_by,
        label,
        granted_by: g.granted_by.as_deref().map(username).unwrap_or_else(|| "—".into()),
        created: g.created,
        last_used: g.last_used,
        revoked: g.revoked,
        child: g.parent.is_some(),
        reaches_grain: reaches,
    }
}

/// `GET /grains/<id>/reach`: what the grain holds, and which grains hold something of it.
pub fn grain_reach(server: &Server, s: &Session, grain: &grains::Grain) -> anyhow::Result<Resp> {
    let held: Vec<GrantRow> = server.powerbox.grants().list_for_grain(&grain.id)?.into_iter().map(|g| row(server, g)).collect();
    let into: Vec<GrantRow> = server
        .powerbox
        .grants()
        .list_all()?
        .into_iter()
        .map(|g| row(server, g))
        .filter(|r| r.reaches_grain.as_deref() == Some(grain.id.as_str()))
        .collect();
    let username = |id: &str| server.db.get(&crate::accounts::USERS, id).ok().flatten().map(|u| u.username).unwrap_or_else(|| "(deleted)".into());
    let tokens: Vec<(crate::grain_tokens::GrainToken, String)> = crate::grain_tokens::list(&server.db, &grain.id)?.into_iter().map(|t| {
        let by = username(&t.user);
        (t, by)
    }).collect();
    Ok(html(StatusCode::OK, ui_powerbox::grain_reach(&viewer(s), grain, &held, &into, &tokens)))
}

/// `GET /reach`: every grant the person made; for administrators, every grant on the server.
pub fn user_reach(server: &Server, s: &Session) -> anyhow::Result<Resp> {
    let mine: Vec<GrantRow> = server.powerbox.grants().list_granted_by(&s.2.id)?.into_iter().map(|g| row(server, g)).collect();
    let all: Option<Vec<GrantRow>> = if s.2.admin { Some(server.powerbox.grants().list_all()?.into_iter().map(|g| row(server, g)).collect()) } else { None };
    Ok(html(StatusCode::OK, ui_powerbox::user_reach(&viewer(s), &mine, all.as_deref())))
}

/// `POST /grants/<id>/revoke`: by the person who granted it, the owner of the grain holding
/// it, or an administrator. Live references end at once.
pub fn revoke(server: &Server, s: &Session, id: &str, back: Option<&str>) -> anyhow::Result<Resp> {
    let id = GrantId(id.to_owned());
    let Some(g) = server.powerbox.grants().get(&id)? else {
        return Ok(error(StatusCode::NOT_FOUND, "No such grant", "It may have been dropped by the grain already."));
    };
    let holder_owner = match &g.owner {
        Owner::Grain { grain, .. } => server.db.get(&grains::GRAINS, grain)?.is_some_and(|gr| gr.owner == s.2.id),
        Owner::User { user } => *user == s.2.id,
        Owner::ApiToken { .. } => false,
    };
    if !(s.2.admin || holder_owner || g.granted_by.as_deref() == Some(s.2.id.as_str())) {
        return Ok(error(StatusCode::FORBIDDEN, "Not yours to revoke", "Only the person who granted it, the owner of the grain holding it, or an administrator can revoke it."));
    }
    for gone in server.powerbox.grants().revoke(&id)? {
        server.powerbox.membranes.revoke_grant(&gone);
    }
    tracing::info!(grant = %id, by = %s.2.username, "grant revoked");
    let back = back.filter(|b| b.starts_with('/') && !b.starts_with("//")).unwrap_or("/reach");
    Ok(redirect(back))
}
