//! Dashboard: Granary's sample of a grain that *uses* capabilities from the powerbox. Its page
//! asks the shell (postMessage `powerboxRequest`) for a Notes grain's API, an outside HTTP
//! origin, or a mail sender; its server claims what the person picked (`POST
//! $GRANARY_API/claim`), saves the `gs_…` token in `/var/dashboard.json`, calls through it
//! (`$HTTP_PROXY`, `/mail/send`) and forgets it (`DELETE /tokens/…`). See README.md.
//!
//! Usage: `dashboard [--new] [PORT]` (default 8000; 0 picks a free port and prints it). Listens
//! on 127.0.0.1 only. `DASHBOARD_VAR_DIR` replaces `/var` (to run it outside a grain).

mod connections;
mod descriptor;
mod mail;
mod page;
mod platform;

use connections::{Connection, Connections, Kind};
use descriptor::Want;
use granary_app_kit::http::{self, Request, Response};
use granary_app_kit::json::Json;
use platform::{error_text, Platform};
use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

/// Largest request body (a test mail is at most 64 KiB).
const MAX_BODY: usize = 128 * 1024;
/// How much of an answer a call shows.
const SHOWN_BODY: usize = 2048;

pub struct App {
    conns: Connections,
    platform: Platform,
    now: fn() -> u64,
}

fn main() {
    let mut port: u16 = 8000;
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--new" => {} // a new dashboard starts with no connections
            p => match p.parse() {
                Ok(n) => port = n,
                Err(_) => {
                    eprintln!("usage: dashboard [--new] [PORT]");
                    std::process::exit(2);
                }
            },
        }
    }
    let var = std::env::var_os("DASHBOARD_VAR_DIR").map(PathBuf::from).unwrap_or_else(|| "/var".into());
    let app = Arc::new(App { conns: Connections::new(var), platform: Platform::from_env(), now: granary_app_kit::now });
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| {
        eprintln!("dashboard: cannot listen on 127.0.0.1:{port}: {e}; is another program using the port?");
        std::process::exit(1);
    });
    println!("dashboard: listening on 127.0.0.1:{}", listener.local_addr().map(|a| a.port()).unwrap_or(port));
    let _ = std::io::stdout().flush();
    http::serve(listener, MAX_BODY, Arc::new(move |req: &Request| handle(&app, req)));
}

fn handle(app: &App, req: &Request) -> Response {
    let get = req.method == "GET" || req.method == "HEAD";
    let path = req.path.as_str();
    let kind_in = |prefix: &str| path.strip_prefix(prefix).map(|k| Kind::parse(k).ok_or(k));
    match (req.method.as_str(), path) {
        (_, "/") if get => Response::html(granary_app_kit::with_shell_rpc(page::PAGE)),
        (_, "/state") if get => state(app),
        (_, "/descriptor") if get => descriptor_for(req),
        ("POST", "/connect") => connect(app, req),
        ("POST", "/offer-key") => offer_key(app, req),
        _ => match (req.method.as_str(), kind_in("/call/"), kind_in("/connections/")) {
            ("POST", Some(Ok(kind)), _) => Response::json(200, &call(app, kind, req)),
            ("DELETE", _, Some(Ok(kind))) => forget(app, kind),
            (_, Some(Err(k)), _) | (_, _, Some(Err(k))) => Response::error(404, &format!("unknown kind `{k}`; use notes, http or mail")),
            (_, Some(Ok(_)), _) => Response::error(405, "use POST").header("Allow", "POST"),
            (_, _, Some(Ok(_))) => Response::error(405, "use DELETE").header("Allow", "DELETE"),
            _ if ["/", "/state", "/descriptor", "/connect", "/offer-key"].contains(&path) => Response::error(405, "wrong method for this route; see the dashboard's README"),
            _ => Response::error(404, &format!("no route {path}")),
        },
    }
}

/// The label the capability is saved under, shown in "What can this reach".
fn label(kind: Kind, origin: Option<&str>) -> String {
    match kind {
        Kind::Notes => "Notes for the dashboard".into(),
        Kind::Http => format!("HTTP API {}", origin.unwrap_or("")),
        Kind::Mail => "Mail from the dashboard".into(),
    }
}

fn state(app: &App) -> Response {
    match app.conns.all() {
        Ok(all) => Response::json(
            200,
            &Json::obj([(
                "connections",
                Json::Obj(all.iter().map(|(k, c)| (k.name().to_owned(), c.public_json())).collect()),
            )]),
        ),
        Err(e) => Response::error(500, &e),
    }
}

/// `GET /descriptor?kind=notes|http|mail[&origin=…]` → `{"descriptor", "label"}`.
fn descriptor_for(req: &Request) -> Response {
    let name = req.query_param("kind").unwrap_or_default();
    let Some(kind) = Kind::parse(&name) else {
        return Response::error(400, &format!("unknown kind `{name}`; use notes, http or mail"));
    };
    let origin = match kind {
        Kind::Http => match descriptor::parse_origin(&req.query_param("origin").unwrap_or_default()) {
            Ok(o) => Some(o),
            Err(e) => return Response::error(400, &e),
        },
        _ => None,
    };
    let want = match kind {
        Kind::Notes => Want::GrainApi("notes"),
        Kind::Http => Want::Origin(origin.as_deref().unwrap_or_default()),
        Kind::Mail => Want::MailSender,
    };
    Response::json(200, &Json::obj([("descriptor", Json::from(descriptor::encode(&want))), ("label", Json::from(label(kind, origin.as_deref())))]))
}

/// `POST /connect {"claimToken", "kind", "origin"?}`: claims what the person picked and saves it.
fn connect(app: &App, req: &Request) -> Response {
    let Some(session) = req.header("x-granary-session-id").filter(|s| !s.is_empty()) else {
        return Response::error(400, "this request has no X-Granary-Session-Id header: open the dashboard through Granary, which sets it");
    };
    let body = match Json::parse(&String::from_utf8_lossy(&req.body)) {
        Ok(b) => b,
        Err(e) => return Response::error(400, &format!("the body is not JSON ({e}); send {{\"claimToken\", \"kind\"}}")),
    };
    let Some(kind) = body.str_field("kind").and_then(Kind::parse) else {
        return Response::error(400, "\"kind\" must be notes, http or mail");
    };
    let claim = body.str_field("claimToken").unwrap_or("");
    if claim.is_empty() || claim.len() > 256 || !claim.bytes().all(|b| b.is_ascii_graphic()) {
        return Response::error(400, "\"claimToken\" must be the token the powerbox answered with (gc_…)");
    }
    let origin = match kind {
        Kind::Http => match descriptor::parse_origin(body.str_field("origin").unwrap_or("")) {
            Ok(o) => Some(o),
            Err(e) => return Response::error(400, &e),
        },
        _ => None,
    };
    let label = label(kind, origin.as_deref());
    let token = match app.platform.claim(session, claim, &label) {
        Ok(t) => t,
        Err(e) => return Response::error(502, &format!("the platform refused the claim: {e}")),
    };
    let c = Connection { token, label, connected: granary_app_kit::rfc3339((app.now)()), origin };
    let public = c.public_json();
    match app.conns.set(kind, c) {
        Ok(old) => {
            // The connection it replaces is dropped, so the grain holds one grant per kind.
            let replaced = old.map(|o| app.platform.drop_token(&o.token));
            let mut m = vec![("ok", Json::Bool(true)), ("connection", public)];
            if let Some(Err(e)) = replaced {
                m.push(("warning", Json::from(format!("the previous connection could not be dropped: {e}"))));
            }
            Response::json(200, &Json::obj(m))
        }
        Err(e) => Response::error(500, &e),
    }
}

/// `POST /offer-key`: asks the platform to offer the person an API key for this dashboard
/// (`SessionContext.offer`); Granary shows the offer in its own dialog.
fn offer_key(app: &App, req: &Request) -> Response {
    let Some(session) = req.header("x-granary-session-id").filter(|s| !s.is_empty()) else {
        return Response::error(400, "this request has no X-Granary-Session-Id header: open the dashboard through Granary, which sets it");
    };
    match app.platform.offer(session, "Dashboard state for a script", "A program with this key can read the dashboard's state at /state.") {
        Ok(()) => Response::json(200, &Json::obj([("ok", Json::Bool(true))])),
        Err(e) => Response::error(502, &format!("the platform refused the offer: {e}")),
    }
}

/// The JSON of one call's outcome: `{"ok", "status", "body", "error"}`.
fn outcome(status: Option<u16>, body: &str, error: Option<String>) -> Json {
    Json::obj([
        ("ok", Json::Bool(error.is_none())),
        ("status", status.map(|s| Json::from(u64::from(s))).unwrap_or(Json::Null)),
        ("body", Json::from(body.chars().take(SHOWN_BODY).collect::<String>())),
        ("error", error.map(Json::from).unwrap_or(Json::Null)),
    ])
}

fn answered(r: Result<http::ClientResponse, String>) -> Json {
    match r {
        Err(e) => outcome(None, "", Some(e)),
        Ok(r) => {
            let body = String::from_utf8_lossy(&r.body[..r.body.len().min(SHOWN_BODY * 4)]).into_owned();
            let error = (!(200..300).contains(&r.status)).then(|| error_text(&r));
            outcome(Some(r.status), &body, error)
        }
    }
}

/// `POST /call/<kind>`: one request through the saved capability.
fn call(app: &App, kind: Kind, req: &Request) -> Json {
    let c = match app.conns.get(kind) {
        Ok(Some(c)) => c,
        Ok(None) => return outcome(None, "", Some(format!("not connected: press \"Connect\" in the {} section first", kind.name()))),
        Err(e) => return outcome(None, "", Some(e)),
    };
    let body = if req.body.is_empty() { Ok(Json::obj([])) } else { Json::parse(&String::from_utf8_lossy(&req.body)) };
    let Ok(body) = body else { return outcome(None, "", Some("the request body is not JSON".into())) };
    match kind {
        // The path is relative to the grant's path prefix: / reaches the provider's /api/ (all
        // its notes) or, for a grant of one note made in its chooser page, /api/notes/<id>/.
        Kind::Notes => answered(app.platform.get_through(&c.token, "http://notes/")),
        Kind::Http => {
            let path = body.str_field("path").map(str::trim).filter(|p| !p.is_empty()).unwrap_or("/");
            if !path.starts_with('/') || !path.bytes().all(|b| b.is_ascii_graphic()) || path.len() > 2000 {
                return outcome(None, "", Some(format!("`{path}` is not a path; it starts with / and has no spaces")));
            }
            let origin = c.origin.as_deref().unwrap_or("http://unknown");
            let host = origin.split("://").nth(1).unwrap_or(origin);
            answered(app.platform.get_through(&c.token, &format!("http://{host}{path}")))
        }
        Kind::Mail => {
            let f = |n: &str| body.str_field(n).unwrap_or("").to_owned();
            let to = f("to");
            match mail::message(&to, &f("subject"), &f("body"), (app.now)()) {
                Err(e) => outcome(None, "", Some(e)),
                Ok(m) => answered(app.platform.send_mail(&c.token, to.trim(), &m)),
            }
        }
    }
}

/// `DELETE /connections/<kind>`: forgets the connection and drops its grant.
fn forget(app: &App, kind: Kind) -> Response {
    match app.conns.remove(kind) {
        Err(e) => Response::error(500, &e),
        Ok(None) => Response::error(404, &format!("nothing to forget: the {} section is not connected", kind.name())),
        Ok(Some(c)) => match app.platform.drop_token(&c.token) {
            Ok(()) => Response::json(200, &Json::obj([("ok", Json::Bool(true))])),
            Err(e) => Response::json(
                200,
                &Json::obj([("ok", Json::Bool(true)), ("warning", Json::from(format!("forgotten here, but the platform could not drop the grant: {e}")))]),
            ),
        },
    }
}

#[cfg(test)]
mod tests;
