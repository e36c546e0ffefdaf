//! Echo: Granary's sample app. It exercises what the platform carries into a grain: identity
//! headers and permissions, any method, large streamed downloads and uploads, Range and
//! conditional requests, cookies, redirects, any status, WebSockets, a crashing app, slow
//! answers and the grain's storage in /var. See README.md for the routes.
//!
//! Usage: `echo [--new] [PORT]` (default port 8000; 0 picks one and prints it). Listens on
//! 127.0.0.1 only. `ECHO_VAR_DIR` replaces `/var` (for running it outside a grain).

mod http;
mod util;
mod ws;

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Body, BodyKind, Head, Request, ResBody, Response};
use util::{html, json_str};

/// Size of `/file`.
const FILE_SIZE: u64 = 1 << 20;
/// `/file`'s strong validator and modification time (fixed: the content never changes).
const FILE_ETAG: &str = "\"echo-file-v1\"";
const FILE_LAST_MODIFIED: &str = "Mon, 01 Jan 2024 00:00:00 GMT";
const FILE_LAST_MODIFIED_EPOCH: i64 = 1704067200;
/// Most of an unread request body drained to keep a connection alive.
const DRAIN_LIMIT: u64 = 4 << 20;
/// Largest note form accepted.
const MAX_NOTE_BODY: u64 = 64 * 1024;

struct App {
    var: PathBuf,
    /// Serialises /var/visits and /var/notes.txt updates.
    lock: Mutex<()>,
}

fn main() {
    let mut port: u16 = 8000;
    let mut new = false;
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--new" => new = true,
            p => match p.parse() {
                Ok(n) => port = n,
                Err(_) => {
                    eprintln!("usage: echo [--new] [PORT]");
                    std::process::exit(2);
                }
            },
        }
    }
    let var = std::env::var_os("ECHO_VAR_DIR").map(PathBuf::from).unwrap_or_else(|| "/var".into());
    if new {
        // A new grain: leave a mark the tests (and /var) can see.
        if let Err(e) = std::fs::write(var.join("created"), "created by the action command (--new)\n") {
            eprintln!("echo: cannot write {}: {e}", var.join("created").display());
        }
    }
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| {
        eprintln!("echo: cannot listen on 127.0.0.1:{port}: {e}");
        std::process::exit(1);
    });
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(port);
    println!("echo: listening on 127.0.0.1:{port}");
    let _ = io::stdout().flush();
    let app = Arc::new(App { var, lock: Mutex::new(()) });
    for stream in listener.incoming() {
        match stream {
            Ok(s) => {
                let app = app.clone();
                std::thread::spawn(move || {
                    let _ = serve(s, &app);
                });
            }
            Err(e) => eprintln!("echo: accept: {e}"),
        }
    }
}

enum Action {
    Respond(Response),
    /// Switch to the WebSocket echo after a 101 with these headers.
    WebSocket(Vec<(String, String)>),
}

/// One connection: requests until the client closes, a response asks to close, or an upgrade.
fn serve(stream: TcpStream, app: &App) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut r = BufReader::with_capacity(64 * 1024, stream.try_clone()?);
    let mut w = BufWriter::with_capacity(64 * 1024, stream);
    loop {
        let (req, kind) = match http::read_head(&mut r)? {
            Head::Closed => return Ok(()),
            Head::Bad(status, why) => {
                http::write_response(&mut w, None, Response::text(status, format!("echo: {why}\n")), false)?;
                return Ok(());
            }
            Head::Request(req, kind) => (req, kind),
        };
        if req.has_token("expect", "100-continue") && req.http11 && kind != BodyKind::Length(0) {
            w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
            w.flush()?;
        }
        let mut body = Body::new(&mut r, kind);
        let action = route(app, &req, &mut body);
        let drained = body.drain(DRAIN_LIMIT);
        match action {
            Action::Respond(res) => {
                if !http::write_response(&mut w, Some(&req), res, req.keep_alive() && drained)? {
                    return Ok(());
                }
            }
            Action::WebSocket(headers) => {
                let mut res = Response::empty(101);
                res.headers = headers;
                http::write_response(&mut w, Some(&req), res, true)?;
                return ws::run(r, w);
            }
        }
    }
}

fn is_get(req: &Request) -> bool {
    req.method == "GET" || req.method == "HEAD"
}

fn not_allowed(allow: &str) -> Action {
    Action::Respond(Response::text(405, format!("405 Method Not Allowed: use {allow}\n")).header("Allow", allow))
}

fn route(app: &App, req: &Request, body: &mut Body) -> Action {
    let path = req.path.as_str();
    let get_only = |f: &dyn Fn() -> Response| if is_get(req) { Action::Respond(f()) } else { not_allowed("GET, HEAD") };
    match path {
        "/" => get_only(&|| index(app, req)),
        "/headers" => Action::Respond(headers(req, body)),
        "/download" => get_only(&|| download(req)),
        "/upload" if req.method == "POST" || req.method == "PUT" => Action::Respond(upload(body)),
        "/upload" => not_allowed("POST, PUT"),
        "/file" => get_only(&|| file(req)),
        "/cookie/set" => get_only(&|| cookie_set(req)),
        "/cookie/show" => get_only(&|| cookie_show(req)),
        "/redirect" => Action::Respond(redirect(req)),
        "/ws" => websocket(req),
        "/crash" => crash(req),
        "/slow" => get_only(&|| slow(req)),
        "/var" => get_only(&|| var(app)),
        "/notes" if req.method == "POST" => Action::Respond(add_note(app, req, body)),
        "/notes" => get_only(&|| list_notes(app)),
        p if p.starts_with("/status/") => Action::Respond(status(&p["/status/".len()..])),
        _ => Action::Respond(Response::text(404, format!("404 Not Found: {}\n", req.path))),
    }
}

/// The permission names in X-Granary-Permissions.
fn permissions(req: &Request) -> Vec<String> {
    req.header("x-granary-permissions")
        .unwrap_or("")
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn can_edit(req: &Request) -> bool {
    permissions(req).iter().any(|p| p == "edit")
}

fn read_notes(app: &App) -> Vec<String> {
    std::fs::read_to_string(app.var.join("notes.txt"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

const STYLE: &str = "
:root{--ink:#1f2933;--muted:#637381;--line:#e3e8ee;--accent:#2f6f73;--bg:#f7f9fb}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;color:var(--ink);background:var(--bg)}
main{max-width:760px;margin:0 auto;padding:24px 20px 48px}
h1{margin:0 0 4px;font-size:28px;color:var(--accent)}
h2{font-size:17px;margin:28px 0 8px}
.sub{color:var(--muted);margin:0 0 8px}
section{background:#fff;border:1px solid var(--line);border-radius:10px;padding:4px 18px 14px;margin-top:16px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-weight:500;color:var(--muted);white-space:nowrap;width:1%}
code{font:13px ui-monospace,SFMono-Regular,Menlo,monospace;word-break:break-all}
[data-absent]::after{content:'absent';color:var(--muted);font-style:italic}
#permissions{padding-left:20px;margin:6px 0}
.yes{color:#1d7a46;font-weight:600}.no{color:#b3261e;font-weight:600}
form{display:flex;gap:8px;margin:10px 0}
input[type=text]{flex:1;padding:7px 10px;border:1px solid var(--line);border-radius:6px;font:inherit}
button{padding:7px 14px;border:0;border-radius:6px;background:var(--accent);color:#fff;font:inherit;cursor:pointer}
.hint{color:var(--muted);font-size:13px}
nav a{margin-right:12px;color:var(--accent)}
";

fn index(app: &App, req: &Request) -> Response {
    let mut rows = String::new();
    let fields = [
        ("user-id", "X-Granary-User-Id", false),
        ("username", "X-Granary-Username", true),
        ("user-handle", "X-Granary-User-Handle", true),
        ("permissions-header", "X-Granary-Permissions", false),
        ("session-id", "X-Granary-Session-Id", false),
        ("session-type", "X-Granary-Session-Type", false),
        ("tab-id", "X-Granary-Tab-Id", false),
        ("base-path", "X-Granary-Base-Path", false),
    ];
    for (id, name, decode) in fields {
        let cell = match req.header(&name.to_ascii_lowercase()) {
            Some(v) => {
                let v = if decode { util::percent_decode(v, false) } else { v.to_owned() };
                format!("<code id=\"{id}\">{}</code>", html(&v))
            }
            None => format!("<code id=\"{id}\" data-absent></code>"),
        };
        rows.push_str(&format!("<tr><th>{name}</th><td>{cell}</td></tr>\n"));
    }
    let perms = permissions(req);
    let perm_items: String = perms.iter().map(|p| format!("<li>{}</li>", html(p))).collect();
    let perm_note = if perms.is_empty() { "<p class=\"hint\" id=\"no-permissions\">No permissions.</p>" } else { "" };
    let edit = can_edit(req);
    let notes = read_notes(app);
    let note_items: String = notes.iter().map(|n| format!("<li>{}</li>", html(n))).collect();
    let notes_hint = if notes.is_empty() { "<p class=\"hint\">No notes yet.</p>" } else { "" };
    let edit_hint = if edit { "" } else { "<p class=\"hint\">Adding a note needs the <code>edit</code> permission; without it the server answers 403.</p>" };
    let page = format!(
        "<!doctype html>
<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">
<title>Echo</title><link rel=\"icon\" href=\"data:,\"><style>{STYLE}</style></head>
<body><main>
<h1>Echo</h1>
<p class=\"sub\">Granary's sample app: what this grain sees of you and your request.</p>
<section><h2>Who you are</h2>
<table>
{rows}</table></section>
<section><h2>Permissions</h2>
<ul id=\"permissions\">{perm_items}</ul>{perm_note}
<p>Can edit: <span id=\"can-edit\" class=\"{edit_class}\">{edit_word}</span></p></section>
<section><h2>Notes</h2>
<ul id=\"notes\">{note_items}</ul>{notes_hint}
<form method=\"post\" action=\"/notes\"><input type=\"text\" name=\"note\" id=\"note-input\" placeholder=\"Write a note\" required maxlength=\"1000\"><button type=\"submit\" id=\"add-note\">Add note</button></form>
{edit_hint}</section>
<section><h2>Try</h2>
<nav><a href=\"/headers\">/headers</a><a href=\"/file\">/file</a><a href=\"/download?bytes=1048576\">/download</a><a href=\"/cookie/show\">/cookie/show</a><a href=\"/var\">/var</a><a href=\"/notes\">/notes</a></nav>
</section>
</main></body></html>
",
        edit_class = if edit { "yes" } else { "no" },
        edit_word = if edit { "yes" } else { "no" },
    );
    Response::html(page)
}

/// Names (lower case) to a value, or an array when repeated, in order of first appearance.
fn json_multimap(pairs: &[(String, String)]) -> String {
    let mut names: Vec<&str> = Vec::new();
    for (n, _) in pairs {
        if !names.contains(&n.as_str()) {
            names.push(n);
        }
    }
    let fields: Vec<String> = names
        .iter()
        .map(|n| {
            let vals: Vec<String> = pairs.iter().filter(|(k, _)| k == n).map(|(_, v)| json_str(v)).collect();
            let v = if vals.len() == 1 { vals[0].clone() } else { format!("[{}]", vals.join(",")) };
            format!("{}:{v}", json_str(n))
        })
        .collect();
    format!("{{{}}}", fields.join(","))
}

fn headers(req: &Request, body: &mut Body) -> Response {
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    loop {
        match body.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => n += k as u64,
            Err(e) => return Response::text(400, format!("echo: reading the body: {e}\n")),
        }
    }
    Response::json(format!(
        "{{\"method\":{},\"path\":{},\"headers\":{},\"body_bytes\":{n}}}\n",
        json_str(&req.method),
        json_str(&req.target),
        json_multimap(&req.headers)
    ))
}

fn download(req: &Request) -> Response {
    let bytes = match req.query_param("bytes").map(|b| b.parse::<u64>()) {
        None => 1 << 20,
        Some(Ok(n)) => n,
        Some(Err(_)) => return Response::text(400, "echo: bytes must be a number\n"),
    };
    let chunked = req.query_param("chunked").is_some_and(|c| c == "1");
    let send = move |w: &mut dyn Write| -> io::Result<()> {
        let pattern = util::pattern_buffer();
        let mut i = 0u64;
        while i < bytes {
            let start = (i % 251) as usize;
            let n = ((pattern.len() - start) as u64).min(bytes - i) as usize;
            w.write_all(&pattern[start..start + n])?;
            i += n as u64;
        }
        Ok(())
    };
    Response {
        status: 200,
        headers: vec![
            ("Content-Type".into(), "application/octet-stream".into()),
            ("Content-Disposition".into(), "attachment; filename=\"download.bin\"".into()),
        ],
        body: ResBody::Stream(if chunked { None } else { Some(bytes) }, Box::new(send)),
    }
}

fn upload(body: &mut Body) -> Response {
    let mut buf = vec![0u8; 64 * 1024];
    let (mut n, mut sum) = (0u64, 0u64);
    loop {
        match body.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => {
                n += k as u64;
                sum = buf[..k].iter().fold(sum, |s, &b| s.wrapping_add(b as u64));
            }
            Err(e) => return Response::text(400, format!("echo: reading the upload: {e}\n")),
        }
    }
    Response::json(format!("{{\"bytes\":{n},\"sum\":{sum}}}\n"))
}

enum Range {
    /// No (usable) Range: serve the whole resource.
    Whole,
    Part(u64, u64),
    Unsatisfiable,
}

/// One `bytes=` range of a resource of `size` bytes (> 0). Several ranges or an invalid
/// header are ignored (RFC 9110 14.2 allows serving the whole representation instead).
fn parse_range(h: &str, size: u64) -> Range {
    let h = h.trim();
    let Some(spec) = h.get(..6).filter(|p| p.eq_ignore_ascii_case("bytes=")).map(|_| h[6..].trim()) else {
        return Range::Whole;
    };
    if spec.contains(',') {
        return Range::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else { return Range::Whole };
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| if !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) { s.parse::<u64>().ok() } else { None };
    if a.is_empty() {
        match num(b) {
            None => Range::Whole,
            Some(0) => Range::Unsatisfiable,
            Some(n) => Range::Part(size.saturating_sub(n), size - 1),
        }
    } else {
        let Some(start) = num(a) else { return Range::Whole };
        let end = if b.is_empty() {
            size - 1
        } else {
            match num(b) {
                Some(e) if e >= start => e.min(size - 1),
                _ => return Range::Whole,
            }
        };
        if start >= size { Range::Unsatisfiable } else { Range::Part(start, end) }
    }
}

/// Whether an If-Match / If-None-Match list matches the file's ETag (`strong`: W/ never does).
fn etag_list_matches(values: &[String], strong: bool) -> bool {
    values.iter().any(|t| t == "*" || t == FILE_ETAG || (!strong && t.strip_prefix("W/") == Some(FILE_ETAG)))
}

fn file(req: &Request) -> Response {
    let validators = |r: Response| {
        r.header("ETag", FILE_ETAG)
            .header("Last-Modified", FILE_LAST_MODIFIED)
            .header("Cache-Control", "max-age=60")
            .header("Accept-Ranges", "bytes")
    };
    // RFC 9110 13.2.2: the order preconditions are evaluated in.
    if req.header("if-match").is_some() {
        if !etag_list_matches(&req.header_list("if-match"), true) {
            return validators(Response::text(412, "412 Precondition Failed: If-Match\n"));
        }
    } else if let Some(t) = req.header("if-unmodified-since").and_then(util::parse_http_date) {
        if FILE_LAST_MODIFIED_EPOCH > t {
            return validators(Response::text(412, "412 Precondition Failed: If-Unmodified-Since\n"));
        }
    }
    if req.header("if-none-match").is_some() {
        if etag_list_matches(&req.header_list("if-none-match"), false) {
            return validators(Response::empty(304));
        }
    } else if let Some(t) = req.header("if-modified-since").and_then(util::parse_http_date) {
        if FILE_LAST_MODIFIED_EPOCH <= t {
            return validators(Response::empty(304));
        }
    }
    let mut range = match req.header("range") {
        Some(h) if req.method == "GET" => parse_range(h, FILE_SIZE),
        _ => Range::Whole,
    };
    if let Some(ir) = req.header("if-range") {
        let fresh = if ir.starts_with('"') { ir == FILE_ETAG } else { util::parse_http_date(ir) == Some(FILE_LAST_MODIFIED_EPOCH) };
        if !fresh {
            range = Range::Whole;
        }
    }
    let (status, start, end) = match range {
        Range::Whole => (200, 0, FILE_SIZE - 1),
        Range::Part(a, b) => (206, a, b),
        Range::Unsatisfiable => {
            return validators(Response::text(416, "416 Range Not Satisfiable\n"))
                .header("Content-Range", format!("bytes */{FILE_SIZE}"));
        }
    };
    let len = end - start + 1;
    let send = move |w: &mut dyn Write| -> io::Result<()> {
        let pattern = util::pattern_buffer();
        let mut i = start;
        while i <= end {
            let s = (i % 251) as usize;
            let n = ((pattern.len() - s) as u64).min(end + 1 - i) as usize;
            w.write_all(&pattern[s..s + n])?;
            i += n as u64;
        }
        Ok(())
    };
    let mut res = validators(Response {
        status,
        headers: vec![("Content-Type".into(), "application/octet-stream".into())],
        body: ResBody::Stream(Some(len), Box::new(send)),
    });
    if status == 206 {
        res = res.header("Content-Range", format!("bytes {start}-{end}/{FILE_SIZE}"));
    }
    res
}

/// RFC 6265 cookie-octet.
fn cookie_value_ok(v: &str) -> bool {
    v.bytes().all(|c| matches!(c, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e))
}

fn cookie_name_ok(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
}

fn cookie_set(req: &Request) -> Response {
    let pairs = util::parse_form(&req.query);
    if pairs.is_empty() {
        return Response::text(400, "echo: name a cookie: /cookie/set?NAME=VALUE\n");
    }
    let mut res = Response::json(String::new());
    let mut names = Vec::new();
    for (n, v) in &pairs {
        if !cookie_name_ok(n) || !cookie_value_ok(v) {
            return Response::text(400, format!("echo: not a valid cookie: {n}={v}\n"));
        }
        res = res
            .header("Set-Cookie", format!("{n}={v}; Path=/; HttpOnly"))
            .header("Set-Cookie", format!("{n}_domain={v}; Path=/; Domain=example.org"));
        names.push(json_str(n));
        names.push(json_str(&format!("{n}_domain")));
    }
    res.body = ResBody::Bytes(format!("{{\"set\":[{}]}}\n", names.join(",")).into_bytes());
    res
}

fn cookie_show(req: &Request) -> Response {
    let pairs: Vec<(String, String)> = req
        .headers
        .iter()
        .filter(|(n, _)| n == "cookie")
        .flat_map(|(_, v)| v.split(';'))
        .filter_map(|c| c.trim().split_once('=').map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned())))
        .collect();
    Response::json(format!("{}\n", json_multimap(&pairs)))
}

fn redirect(req: &Request) -> Response {
    let to = req.query_param("to").unwrap_or_else(|| "/".into());
    if to.bytes().any(|c| c < 0x20 || c == 0x7f) {
        return Response::text(400, "echo: bad redirect target\n");
    }
    let status = match req.query_param("status").and_then(|s| s.parse().ok()) {
        Some(s @ (301 | 302 | 303 | 307 | 308)) => s,
        _ => 302,
    };
    Response::text(status, format!("redirecting to {to}\n")).header("Location", to)
}

fn status(n: &str) -> Response {
    match n.parse::<u16>() {
        Ok(s @ (204 | 205 | 304)) => Response::empty(s),
        Ok(s @ 200..=599) => Response::text(s, format!("{s} {}\n", http::reason(s))),
        _ => Response::text(400, "echo: /status/N takes N from 200 to 599\n"),
    }
}

fn websocket(req: &Request) -> Action {
    let key = req.header("sec-websocket-key");
    let upgrade = req.method == "GET" && req.has_token("upgrade", "websocket") && req.has_token("connection", "upgrade");
    match key {
        Some(key) if upgrade && req.header("sec-websocket-version") == Some("13") => {
            let mut headers = vec![
                ("Upgrade".to_owned(), "websocket".to_owned()),
                ("Connection".to_owned(), "Upgrade".to_owned()),
                ("Sec-WebSocket-Accept".to_owned(), ws::accept_key(key)),
            ];
            // Select the first subprotocol offered, so the tests can see it pass.
            if let Some(p) = req.header_list("sec-websocket-protocol").first() {
                headers.push(("Sec-WebSocket-Protocol".to_owned(), p.clone()));
            }
            Action::WebSocket(headers)
        }
        _ => Action::Respond(
            Response::text(426, "426 Upgrade Required: /ws is a WebSocket echo (version 13)\n")
                .header("Sec-WebSocket-Version", "13"),
        ),
    }
}

/// Aborts the process: before any response (`/crash`), or after the headers and 64 KiB of a
/// 1 MiB body (`/crash?mid_body=1`).
fn crash(req: &Request) -> Action {
    eprintln!("echo: {} {}: aborting as asked", req.method, req.target);
    if req.query_param("mid_body").is_some_and(|v| v == "1") {
        let send = |w: &mut dyn Write| -> io::Result<()> {
            w.write_all(&util::pattern_buffer()[..64 * 1024 - 1024])?;
            w.flush()?;
            std::thread::sleep(Duration::from_millis(50));
            std::process::abort()
        };
        return Action::Respond(Response {
            status: 200,
            headers: vec![("Content-Type".into(), "application/octet-stream".into())],
            body: ResBody::Stream(Some(1 << 20), Box::new(send)),
        });
    }
    std::process::abort()
}

fn slow(req: &Request) -> Response {
    let ms: u64 = req.query_param("ms").and_then(|m| m.parse().ok()).unwrap_or(1000).min(600_000);
    std::thread::sleep(Duration::from_millis(ms));
    Response::text(200, format!("slept {ms} ms\n"))
}

fn var(app: &App) -> Response {
    let visits = {
        let _g = app.lock.lock().unwrap_or_else(|e| e.into_inner());
        let path = app.var.join("visits");
        let n = std::fs::read_to_string(&path).ok().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(0) + 1;
        let tmp = app.var.join(".visits.tmp");
        if let Err(e) = std::fs::write(&tmp, format!("{n}\n")).and_then(|_| std::fs::rename(&tmp, &path)) {
            return Response::text(500, format!("echo: cannot write {}: {e}\n", path.display()));
        }
        n
    };
    let mut entries = Vec::new();
    match std::fs::read_dir(&app.var) {
        Ok(rd) => {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let (kind, bytes) = match e.metadata() {
                    Ok(m) if m.is_dir() => ("dir", 0),
                    Ok(m) if m.is_file() => ("file", m.len()),
                    Ok(m) if m.file_type().is_symlink() => ("symlink", 0),
                    _ => ("other", 0),
                };
                entries.push((name, kind, bytes));
            }
        }
        Err(e) => return Response::text(500, format!("echo: cannot list {}: {e}\n", app.var.display())),
    }
    entries.sort();
    let list: Vec<String> = entries
        .iter()
        .map(|(n, k, b)| format!("{{\"name\":{},\"kind\":\"{k}\",\"bytes\":{b}}}", json_str(n)))
        .collect();
    Response::json(format!(
        "{{\"dir\":{},\"visits\":{visits},\"entries\":[{}]}}\n",
        json_str(&app.var.to_string_lossy()),
        list.join(",")
    ))
}

fn list_notes(app: &App) -> Response {
    let notes: Vec<String> = read_notes(app).iter().map(|n| json_str(n)).collect();
    Response::json(format!("{{\"notes\":[{}]}}\n", notes.join(",")))
}

fn add_note(app: &App, req: &Request, body: &mut Body) -> Response {
    if !can_edit(req) {
        let have = permissions(req);
        let have = if have.is_empty() { "none".to_owned() } else { have.join(", ") };
        return Response::text(
            403,
            format!("403 Forbidden: adding a note needs the \"edit\" permission; this session has: {have}\n"),
        );
    }
    let form = match body.read_to_vec(MAX_NOTE_BODY) {
        Ok(Ok(b)) => b,
        Ok(Err(())) => return Response::text(413, "echo: a note form is at most 64 KiB\n"),
        Err(e) => return Response::text(400, format!("echo: reading the form: {e}\n")),
    };
    let form = util::parse_form(&String::from_utf8_lossy(&form));
    let note = form.iter().find(|(k, _)| k == "note").map(|(_, v)| v.replace(['\r', '\n'], " ")).unwrap_or_default();
    let note = note.trim();
    if note.is_empty() {
        return Response::text(400, "echo: the form needs a non-empty \"note\" field\n");
    }
    {
        let _g = app.lock.lock().unwrap_or_else(|e| e.into_inner());
        let path = app.var.join("notes.txt");
        let r = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| writeln!(f, "{note}"));
        if let Err(e) = r {
            return Response::text(500, format!("echo: cannot write {}: {e}\n", path.display()));
        }
    }
    Response::text(303, "note added\n").header("Location", "/")
}
