//! Counter: Granary's sample of a raw Cap'n Proto interface through the powerbox. Each grain
//! keeps a named tally in `/var/counter.json`. It *provides* the tally to other grains as
//! `sample.capnp`'s `Counter` (`AppObjects` on its `[capnp] port`, which the bridge calls for
//! `MainView.provide`), and it *uses* another grain's counter: the page asks the shell for a
//! `Counter` (postMessage `powerboxRequest`), the server claims what the person picked (`POST
//! $GRANARY_API/claim`), keeps the `gs_…` token, restores it over the bridge's local Cap'n Proto
//! endpoint (127.0.0.1:7871) and holds the capability to call `add` and `get`. See README.md.
//!
//! Usage: `counter [--new] [--capnp-port N] [PORT]` (HTTP on 127.0.0.1:PORT, default 8000;
//! Cap'n Proto on 127.0.0.1:N, default 8001). `COUNTER_VAR_DIR` replaces `/var`.

mod link;
mod page;
mod remote;
mod tally;

use granary_app_kit::http::{self, Request, Response};
use granary_app_kit::json::Json;
use link::{Link, Op};
use remote::Platform;
use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use tally::{Remote, Tally};

pub struct App {
    tally: Arc<Tally>,
    platform: Platform,
    link: Link,
}

fn main() {
    let (mut port, mut capnp_port) = (8000u16, 8001u16);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let parsed = match a.as_str() {
            "--new" => Some(()), // a new counter starts at 0
            "--capnp-port" => args.next().and_then(|v| v.parse().ok()).map(|p| capnp_port = p),
            p => p.parse().ok().map(|p| port = p),
        };
        if parsed.is_none() {
            eprintln!("usage: counter [--new] [--capnp-port N] [PORT]");
            std::process::exit(2);
        }
    }
    let var = std::env::var_os("COUNTER_VAR_DIR").map(PathBuf::from).unwrap_or_else(|| "/var".into());
    let tally = Arc::new(Tally::open(var).unwrap_or_else(|e| {
        eprintln!("counter: {e}");
        std::process::exit(1);
    }));
    let listen = |port: u16| {
        TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| {
            eprintln!("counter: cannot listen on 127.0.0.1:{port}: {e}; is another program using the port?");
            std::process::exit(1);
        })
    };
    let objects = listen(capnp_port);
    let listener = listen(port);
    let t = tally.clone();
    std::thread::spawn(move || tally::serve_objects(objects, t));
    println!("counter: listening on 127.0.0.1:{} (Cap'n Proto on 127.0.0.1:{capnp_port})", listener.local_addr().map(|a| a.port()).unwrap_or(port));
    let _ = std::io::stdout().flush();
    let platform = Platform::from_env();
    let link = Link::start(platform.capnp.clone());
    let app = Arc::new(App { tally, platform, link });
    http::serve(listener, 64 * 1024, Arc::new(move |req: &Request| handle(&app, req)));
}

fn handle(app: &App, req: &Request) -> Response {
    let get = req.method == "GET" || req.method == "HEAD";
    match (req.method.as_str(), req.path.as_str()) {
        (_, "/") if get => Response::html(granary_app_kit::with_shell_rpc(page::PAGE)),
        (_, "/state") if get => state(app),
        (_, "/descriptor") if get => Response::json(200, &Json::obj([("descriptor", Json::from(remote::counter_query()))])),
        ("POST", "/add") => add(app, req),
        ("POST", "/connect") => connect(app, req),
        (_, "/remote") if get => remote_call(app, Op::Get),
        ("POST", "/remote/add") => {
            let amount = body(req).ok().and_then(|b| match b.get("amount") {
                Some(Json::Num(n)) if n.fract() == 0.0 && n.abs() <= 1e9 => Some(*n as i64),
                _ => None,
            });
            let Some(amount) = amount else { return Response::error(400, "send {\"amount\": N}, N a whole number up to 10^9") };
            remote_call(app, Op::Add(amount))
        }
        ("DELETE", "/remote") => forget(app),
        (_, p) if ["/", "/state", "/descriptor", "/add", "/connect", "/remote", "/remote/add"].contains(&p) => {
            Response::error(405, "wrong method for this route; see the counter's README")
        }
        (_, p) => Response::error(404, &format!("no route {p}")),
    }
}

fn body(req: &Request) -> Result<Json, String> {
    if req.body.is_empty() {
        return Ok(Json::obj([]));
    }
    Json::parse(&String::from_utf8_lossy(&req.body))
}

fn state(app: &App) -> Response {
    let s = app.tally.state();
    let remote = match &s.remote {
        Some(r) => Json::obj([("connected", Json::from(r.connected.as_str()))]),
        None => Json::Null,
    };
    Response::json(200, &Json::obj([("total", Json::Num(s.total as f64)), ("name", Json::from(s.name.as_str())), ("remote", remote)]))
}

/// `POST /add`: the page's "Add 1"; needs the `add` permission.
fn add(app: &App, req: &Request) -> Response {
    if !req.has_permission("add") {
        return Response::error(403, "adding needs the `add` permission on this grain; ask its owner to share it with you as a counter");
    }
    match app.tally.add(1) {
        Ok(total) => Response::json(200, &Json::obj([("total", Json::Num(total as f64))])),
        Err(e) => Response::error(500, &e),
    }
}

/// `POST /connect {"claimToken"}`: claims the counter the person picked and keeps its token.
fn connect(app: &App, req: &Request) -> Response {
    let Some(session) = req.header("x-granary-session-id").filter(|s| !s.is_empty()) else {
        return Response::error(400, "this request has no X-Granary-Session-Id header: open the counter through Granary, which sets it");
    };
    let claim = body(req).ok().and_then(|b| b.str_field("claimToken").map(str::to_owned)).unwrap_or_default();
    if !claim.starts_with("gc_") || claim.len() > 256 {
        return Response::error(400, "send {\"claimToken\": \"gc_…\"}, the token the powerbox answered with");
    }
    let token = match app.platform.claim(session, &claim) {
        Ok(t) => t,
        Err(e) => return Response::error(502, &format!("the platform refused the claim: {e}")),
    };
    let old = app.tally.update(|s| s.remote.replace(Remote { token, connected: granary_app_kit::rfc3339(granary_app_kit::now()) }));
    match old {
        Ok(old) => {
            if let Some(old) = old {
                // One connection at a time: the one it replaces is dropped on the platform too.
                let _ = http::request(&app.platform.api, "DELETE", &format!("/tokens/{}", old.token), &[], b"", 1 << 16, std::time::Duration::from_secs(15));
            }
            remote_call(app, Op::Get)
        }
        Err(e) => Response::error(500, &e),
    }
}

/// Runs `op` on the other counter: `{"ok": true, "total", "name"?, "restores"}` or `{"ok": false,
/// "error"}` (200 either way: the page shows the other counter's answer).
fn remote_call(app: &App, op: Op) -> Response {
    let Some(r) = app.tally.state().remote else {
        return Response::json(200, &Json::obj([("ok", Json::Bool(false)), ("error", Json::from("not connected: press \"Connect to another counter\" first"))]));
    };
    match app.link.call(&r.token, op) {
        Ok(link::Answer { total, name }) => {
            let mut m = vec![("ok", Json::Bool(true)), ("total", Json::Num(total as f64)), ("restores", Json::Num(app.link.restores() as f64))];
            if let Some(n) = name {
                m.push(("name", Json::from(n)));
            }
            Response::json(200, &Json::obj(m))
        }
        Err(e) => Response::json(200, &Json::obj([("ok", Json::Bool(false)), ("error", Json::from(e))])),
    }
}

/// `DELETE /remote`: forgets the other counter and drops its grant.
fn forget(app: &App) -> Response {
    match app.tally.update(|s| s.remote.take()) {
        Ok(Some(r)) => {
            let dropped = http::request(&app.platform.api, "DELETE", &format!("/tokens/{}", r.token), &[], b"", 1 << 16, std::time::Duration::from_secs(15));
            let ok = matches!(dropped, Ok(ref a) if a.status == 200);
            Response::json(200, &Json::obj([("ok", Json::Bool(true)), ("dropped", Json::Bool(ok))]))
        }
        Ok(None) => Response::error(404, "not connected to another counter"),
        Err(e) => Response::error(500, &e),
    }
}

#[cfg(test)]
mod tests;
