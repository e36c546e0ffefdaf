//! App routes: the list, details, icons, and the streamed package upload.

use super::http::{self, html, response, Resp};
use super::routes::{error, viewer, Session};
use super::Server;
use crate::apps::{self, Installed};
use crate::{accounts, ui_apps};
use granary_grains::package::Limits;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{header, StatusCode};
use std::io::Write;

/// Largest package accepted by upload.
pub const MAX_UPLOAD_BYTES: u64 = 1 << 30;

pub fn json(status: StatusCode, v: serde_json::Value) -> Resp {
    response(status, "application/json", v.to_string())
}

pub fn list(server: &Server, s: &Session) -> anyhow::Result<Resp> {
    let apps = apps::list(&server.db)?;
    let v = viewer(s);
    Ok(html(StatusCode::OK, ui_apps::list(&v, &apps)))
}

pub fn details(server: &Server, s: &Session, package_id: &str) -> anyhow::Result<Resp> {
    details_with(server, s, package_id, None)
}

fn details_with(server: &Server, s: &Session, package_id: &str, problem: Option<&str>) -> anyhow::Result<Resp> {
    let Some(app) = apps::get(&server.db, package_id)? else {
        return Ok(error(StatusCode::NOT_FOUND, "App not found", "No installed app has this address. It may have been uninstalled."));
    };
    let v = viewer(s);
    let limits = server.db.get(&apps::APP_LIMITS, &app.app_id)?;
    let page = ui_apps::Details { app: &app, has_icon: apps::icon(&server.db, package_id)?.is_some(), limits, defaults: server.runner.default_limits.get(), problem };
    let status = if problem.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    Ok(html(status, ui_apps::details(&v, &page)))
}

/// `POST /apps/<package id>/uninstall` (admins): refused while any grain (trashed ones too)
/// uses the package; otherwise the record, icon and image go.
pub fn uninstall(server: &Server, s: &Session, package_id: &str) -> anyhow::Result<Resp> {
    if !s.2.admin {
        return Ok(error(StatusCode::FORBIDDEN, "Administrators only", "Only administrators can uninstall apps."));
    }
    let Some(app) = apps::get(&server.db, package_id)? else {
        return Ok(error(StatusCode::NOT_FOUND, "App not found", "No installed app has this address."));
    };
    let mut using = 0;
    for entry in server.db.iter(&crate::grains::GRAINS)? {
        let (_, g) = entry?;
        using += usize::from(g.package_id == app.package_id);
    }
    if using > 0 {
        let msg = format!("{using} grain{} still use{} this app. Delete {} first (from the trash too).", if using == 1 { "" } else { "s" }, if using == 1 { "s" } else { "" }, if using == 1 { "it" } else { "them" });
        return details_with(server, s, package_id, Some(&msg)).map(|mut r| {
            *r.status_mut() = StatusCode::CONFLICT;
            r
        });
    }
    server.db.transaction(|tx| {
        tx.remove(&apps::APPS, &app.package_id)?;
        tx.remove(&apps::ICONS, &app.package_id)
    })?;
    let id: granary_grains::ids::PackageId = app.package_id.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    granary_grains::apps::AppsDir::open(&server.apps_root)?.remove(&id)?;
    Ok(super::http::redirect("/apps"))
}

/// `POST /apps/<package id>/limits` (admins): `memory_mib`, `tasks`; empty both = defaults.
pub fn set_limits(server: &Server, s: &Session, package_id: &str, form: &std::collections::HashMap<String, String>) -> anyhow::Result<Resp> {
    if !s.2.admin {
        return Ok(error(StatusCode::FORBIDDEN, "Administrators only", "Only administrators can change an app's limits."));
    }
    let Some(app) = apps::get(&server.db, package_id)? else {
        return Ok(error(StatusCode::NOT_FOUND, "App not found", "No installed app has this address."));
    };
    let field = |k: &str| form.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let (memory, tasks) = (field("memory_mib"), field("tasks"));
    if memory.is_empty() && tasks.is_empty() {
        server.db.remove(&apps::APP_LIMITS, &app.app_id)?;
    } else {
        let parsed = memory.parse::<u64>().ok().zip(tasks.parse::<u64>().ok());
        let checked = parsed.ok_or_else(|| "enter whole numbers for memory and tasks".to_owned()).and_then(|(m, t)| apps::GrainLimits::checked(m, t));
        match checked {
            Ok(l) => server.db.insert(&apps::APP_LIMITS, &app.app_id, &l)?,
            Err(why) => return details_with(server, s, package_id, Some(&why)),
        }
    }
    Ok(super::http::redirect(&format!("/apps/{package_id}")))
}

pub fn icon(server: &Server, package_id: &str) -> anyhow::Result<Resp> {
    let Some((media_type, bytes)) = apps::icon(&server.db, package_id)? else {
        return Ok(error(StatusCode::NOT_FOUND, "No icon", "This app has no icon."));
    };
    let ct = if media_type == "image/svg+xml" { "image/svg+xml" } else { "image/png" };
    let mut r = response(StatusCode::OK, ct, bytes);
    // An SVG from an app is untrusted markup on the shell's origin: never let it run.
    r.headers_mut().insert("content-security-policy", header::HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; sandbox"));
    r.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("private, max-age=86400"));
    Ok(r)
}

/// `POST /apps/upload`: the raw `.gpk` as the body, the session's CSRF token in
/// `X-Granary-Csrf`. Streams to a temporary file, verifies, unpacks, records. Answers JSON.
pub async fn upload(server: &Server, req: hyper::Request<Incoming>) -> anyhow::Result<Resp> {
    let session = super::http::cookie(req.headers(), super::routes::SESSION_COOKIE).map(str::to_owned);
    let Some((session, user)) = session.map(|t| accounts::session_user(&server.db, &t)).transpose()?.flatten() else {
        return Ok(json(StatusCode::UNAUTHORIZED, serde_json::json!({"error": "Sign in first."})));
    };
    if req.headers().get("x-granary-csrf").and_then(|v| v.to_str().ok()) != Some(session.csrf.as_str()) {
        return Ok(json(StatusCode::FORBIDDEN, serde_json::json!({"error": "This page is out of date; reload it and try again."})));
    }
    install_stream(server, &user, req).await
}

/// Streams a `.gpk` request body to a temporary file, verifies, unpacks and records it; JSON
/// answer. Used by the upload form and the JSON API (callers have authenticated `user`).
pub async fn install_stream(server: &Server, user: &crate::accounts::User, req: hyper::Request<Incoming>) -> anyhow::Result<Resp> {
    if !user.admin {
        return Ok(json(StatusCode::FORBIDDEN, serde_json::json!({"error": "Only administrators can install apps."})));
    }
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_UPLOAD_BYTES) {
        return Ok(too_large());
    }
    let tmp_dir = server.data_dir.join("tmp");
    std::fs::create_dir_all(&tmp_dir)?;
    let mut file = tempfile::Builder::new().prefix("upload-").suffix(".gpk").tempfile_in(&tmp_dir)?;
    let mut body = req.into_body();
    let mut written = 0u64;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Ok(json(StatusCode::BAD_REQUEST, serde_json::json!({"error": "The upload was interrupted; try again."})));
        };
        if let Ok(data) = frame.into_data() {
            written += data.len() as u64;
            if written > MAX_UPLOAD_BYTES {
                return Ok(too_large());
            }
            file.write_all(&data)?;
        }
    }
    file.flush()?;
    let (apps_root, path) = (server.apps_root.clone(), file.path().to_owned());
    let unpacked = blocking::unblock(move || {
        let r = apps::verify_and_unpack(&apps_root, &path, &Limits::default());
        drop(file);
        r
    })
    .await;
    let unpacked = match unpacked {
        Ok(u) => u,
        Err(apps::InstallError::Store(e)) => return Err(e.into()),
        Err(e) => return Ok(json(StatusCode::BAD_REQUEST, serde_json::json!({"error": format!("This is not a package Granary can install: {e}")}))),
    };
    let (record, already) = match apps::record(&server.db, unpacked, &user.id)? {
        Installed::New(r) => (r, false),
        Installed::Already(r) => (r, true),
    };
    Ok(json(
        StatusCode::OK,
        serde_json::json!({
            "package_id": record.package_id,
            "app_id": record.app_id,
            "title": record.manifest.app_title,
            "already_installed": already,
            "url": format!("/apps/{}", record.package_id),
        }),
    ))
}

fn too_large() -> Resp {
    json(
        StatusCode::PAYLOAD_TOO_LARGE,
        serde_json::json!({"error": format!("Packages may be at most {}.", http::human_bytes(MAX_UPLOAD_BYTES))}),
    )
}
