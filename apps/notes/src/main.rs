//! Notes: Granary's sample of a grain that *provides* an API through the powerbox. A notebook
//! with a page for people and a JSON API under `/api/` that the manifest offers other grains
//! (`[[powerbox.provides]] api = "notes"`). Permissions come from `X-Granary-Permissions`:
//! `read` to see notes, `write` to add them. See README.md for the routes and the flow.
//!
//! Usage: `notes [--new] [PORT]` (default 8000; 0 picks a free port and prints it). Listens on
//! 127.0.0.1 only. `NOTES_VAR_DIR` replaces `/var` (to run it outside a grain).

mod chooser;
mod notebook;

use granary_app_kit::http::{self, parse_form, Request, Response};
use granary_app_kit::json::Json;
use granary_app_kit::{html, now};
use notebook::{AddError, Notebook};
use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

/// Largest request body: a note is at most 2000 characters, 4 bytes each, plus JSON quoting.
const MAX_BODY: usize = 64 * 1024;

fn main() {
    let mut port: u16 = 8000;
    let mut new = false;
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--new" => new = true,
            p => match p.parse() {
                Ok(n) => port = n,
                Err(_) => {
                    eprintln!("usage: notes [--new] [PORT]");
                    std::process::exit(2);
                }
            },
        }
    }
    let var = std::env::var_os("NOTES_VAR_DIR").map(PathBuf::from).unwrap_or_else(|| "/var".into());
    let book = Arc::new(Notebook::new(var));
    if new {
        if let Err(e) = book.create() {
            eprintln!("notes: {e}");
        }
    }
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| {
        eprintln!("notes: cannot listen on 127.0.0.1:{port}: {e}; is another program using the port?");
        std::process::exit(1);
    });
    println!("notes: listening on 127.0.0.1:{}", listener.local_addr().map(|a| a.port()).unwrap_or(port));
    let _ = std::io::stdout().flush();
    let api = std::env::var("GRANARY_API")
        .map_err(|_| "GRANARY_API is not set: granting notes works only inside a Granary grain".to_owned())
        .and_then(|v| http::authority_of(&v).map_err(|e| format!("GRANARY_API is {e}")));
    http::serve(
        listener,
        MAX_BODY,
        Arc::new(move |req: &Request| match req.path.as_str() {
            "/choose" => chooser::route(&book, api.as_deref().map_err(String::as_str), req),
            _ => handle(&book, req, now()),
        }),
    );
}

/// Answers one request; `now` is the time new notes get.
fn handle(book: &Notebook, req: &Request, now: u64) -> Response {
    let get = req.method == "GET" || req.method == "HEAD";
    match req.path.as_str() {
        "/" if get => page(book, req),
        "/add" if req.method == "POST" => add_from_form(book, req, now),
        "/api/notes" | "/api/" if get => api_list(book, req),
        "/api/notes" if req.method == "POST" => api_add(book, req, now),
        "/api/notes" => Response::error(405, "use GET or POST on /api/notes").header("Allow", "GET, HEAD, POST"),
        "/" => Response::text(405, "use GET on /\n").header("Allow", "GET, HEAD"),
        "/add" => Response::text(405, "use POST on /add\n").header("Allow", "POST"),
        p if get && p.starts_with("/api/notes/") => api_one(book, req, &p["/api/notes/".len()..]),
        p if p.starts_with("/api/") => Response::error(404, &format!("no API route {p}; the API has GET /api/, GET and POST /api/notes, GET /api/notes/<id>/")),
        p => Response::text(404, format!("404 Not Found: {p}\n")),
    }
}

fn have(req: &Request) -> String {
    let p = req.permissions();
    if p.is_empty() { "none".into() } else { p.join(", ") }
}

fn api_list(book: &Notebook, req: &Request) -> Response {
    if !req.has_permission("read") {
        return Response::error(403, &format!("reading notes needs the \"read\" permission; this session has: {}", have(req)));
    }
    match book.list() {
        Ok(notes) => Response::json(200, &Json::Arr(notes.iter().map(|n| n.to_json()).collect())),
        Err(e) => Response::error(500, &e),
    }
}

/// `GET /api/notes/<id>` or `/api/notes/<id>/`: one note. A grant made by the chooser page for
/// one note has the prefix `/api/notes/<id>/`, so `GET /` through it lands here.
fn api_one(book: &Notebook, req: &Request, rest: &str) -> Response {
    let Some(id) = rest.strip_suffix('/').unwrap_or(rest).parse::<u64>().ok() else {
        return Response::error(404, &format!("no API route /api/notes/{rest}; a note is GET /api/notes/<id>/"));
    };
    if !req.has_permission("read") {
        return Response::error(403, &format!("reading notes needs the \"read\" permission; this session has: {}", have(req)));
    }
    match book.list() {
        Ok(notes) => match notes.iter().find(|n| n.id == id) {
            Some(n) => Response::json(200, &n.to_json()),
            None => Response::error(404, &format!("there is no note {id}")),
        },
        Err(e) => Response::error(500, &e),
    }
}

fn api_add(book: &Notebook, req: &Request, now: u64) -> Response {
    if !req.has_permission("write") {
        return Response::error(403, &format!("adding a note needs the \"write\" permission; this session has: {}", have(req)));
    }
    let text = std::str::from_utf8(&req.body).map_err(|_| "the body is not UTF-8".to_owned()).and_then(Json::parse);
    let text = match text.as_ref().map(|j| j.str_field("text")) {
        Ok(Some(t)) => t,
        Ok(None) => return Response::error(400, "send a JSON object with a \"text\" string: {\"text\": \"…\"}"),
        Err(e) => return Response::error(400, &format!("the body is not JSON ({e}); send {{\"text\": \"…\"}}")),
    };
    match book.add(text, now) {
        Ok(note) => Response::json(201, &note.to_json()),
        Err(AddError::Invalid(m)) => Response::error(400, &m),
        Err(AddError::Storage(m)) => Response::error(500, &m),
    }
}

fn add_from_form(book: &Notebook, req: &Request, now: u64) -> Response {
    if !req.has_permission("write") {
        return Response::text(403, format!("403 Forbidden: adding a note needs the \"write\" permission; this session has: {}\n", have(req)));
    }
    let form = parse_form(&String::from_utf8_lossy(&req.body));
    let text = form.iter().find(|(k, _)| k == "text").map(|(_, v)| v.as_str()).unwrap_or("");
    match book.add(text, now) {
        Ok(_) => Response::text(303, "note added\n").header("Location", "/"),
        Err(AddError::Invalid(m)) => Response::text(400, format!("400 Bad Request: {m}\n")),
        Err(AddError::Storage(m)) => Response::text(500, format!("500: {m}\n")),
    }
}

const STYLE: &str = "
:root{--ink:#1f2933;--muted:#637381;--line:#e6e0d4;--accent:#8a5a14;--bg:#fbf8f2}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;color:var(--ink);background:var(--bg)}
main{max-width:720px;margin:0 auto;padding:24px 20px 48px}
h1{margin:0 0 4px;font-size:28px;color:var(--accent)}
.sub,.hint{color:var(--muted)}.hint{font-size:13px}
ol{list-style:none;padding:0;margin:16px 0}
li{background:#fff;border:1px solid var(--line);border-radius:10px;padding:10px 14px;margin:8px 0;white-space:pre-wrap}
time{display:block;color:var(--muted);font-size:12px;white-space:normal}
form{display:flex;gap:8px;margin:16px 0}
textarea{flex:1;min-height:60px;padding:8px 10px;border:1px solid var(--line);border-radius:6px;font:inherit}
button{padding:8px 16px;border:0;border-radius:6px;background:var(--accent);color:#fff;font:inherit;cursor:pointer;align-self:flex-end}
code{font:13px ui-monospace,Menlo,monospace}
";

fn page(book: &Notebook, req: &Request) -> Response {
    let body = if !req.has_permission("read") {
        format!("<p id=\"no-read\">You cannot read this notebook: it needs the <code>read</code> permission (you have: {}). Ask its owner to share it with you.</p>", html(&have(req)))
    } else {
        match book.list() {
            Err(e) => format!("<p id=\"error\">{}</p>", html(&e)),
            Ok(notes) => {
                let items: String = notes
                    .iter()
                    .rev()
                    .map(|n| format!("<li data-id=\"{}\">{}<time datetime=\"{c}\">{c}</time></li>", n.id, html(&n.text), c = html(&n.created)))
                    .collect();
                let empty = if notes.is_empty() { "<p class=\"hint\" id=\"empty\">No notes yet.</p>" } else { "" };
                let form = if req.has_permission("write") {
                    "<form method=\"post\" action=\"/add\"><textarea name=\"text\" id=\"note-text\" required maxlength=\"2000\" placeholder=\"Write a note\"></textarea><button type=\"submit\" id=\"add-note\">Add note</button></form>".to_owned()
                } else {
                    "<p class=\"hint\" id=\"read-only\">Adding notes needs the <code>write</code> permission.</p>".to_owned()
                };
                format!("{form}<ol id=\"notes\">{items}</ol>{empty}")
            }
        }
    };
    Response::html(format!(
        "<!doctype html>
<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">
<title>Notes</title><link rel=\"icon\" href=\"data:,\"><style>{STYLE}</style></head>
<body><main>
<h1>Notes</h1>
<p class=\"sub\">Other grains can read these notes once you grant them access through the powerbox (the API <code>notes</code>).</p>
{body}
</main></body></html>
"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, path: &str, perms: &str, body: &str) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            headers: vec![("x-granary-permissions".into(), perms.into())],
            body: body.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    fn book(name: &str) -> (Notebook, PathBuf) {
        let d = std::env::temp_dir().join(format!("notes-main-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        (Notebook::new(d.clone()), d)
    }

    fn json(r: &Response) -> Json {
        Json::parse(std::str::from_utf8(&r.body).unwrap()).unwrap()
    }

    #[test]
    fn the_api_lists_and_adds_notes_by_permission() {
        let (b, dir) = book("api");
        let r = handle(&b, &req("POST", "/api/notes", "read,write", r#"{"text": "buy <milk>"}"#), 60);
        assert_eq!(r.status, 201);
        assert_eq!(json(&r), Json::parse(r#"{"id":1,"text":"buy <milk>","created":"1970-01-01T00:01:00Z"}"#).unwrap());
        let r = handle(&b, &req("GET", "/api/notes", "read", ""), 0);
        assert_eq!((r.status, json(&r)), (200, Json::parse(r#"[{"id":1,"text":"buy <milk>","created":"1970-01-01T00:01:00Z"}]"#).unwrap()));
        // Without the permission: 403 naming what is missing and what the session has.
        let r = handle(&b, &req("POST", "/api/notes", "read", r#"{"text": "x"}"#), 0);
        assert_eq!(r.status, 403);
        assert!(json(&r).str_field("error").unwrap().contains("\"write\" permission; this session has: read"));
        let r = handle(&b, &req("GET", "/api/notes", "", ""), 0);
        assert_eq!(r.status, 403);
        assert!(json(&r).str_field("error").unwrap().ends_with("has: none"));
        // Bad bodies.
        for (body, want) in [("{", "not JSON"), (r#"{"txt":"x"}"#, "\"text\" string"), (r#"{"text":"  "}"#, "empty")] {
            let r = handle(&b, &req("POST", "/api/notes", "write", body), 0);
            assert_eq!(r.status, 400, "{body}");
            assert!(json(&r).str_field("error").unwrap().contains(want), "{body}");
        }
        assert_eq!(json(&handle(&b, &req("GET", "/api/notes", "read", ""), 0)), Json::parse(r#"[{"id":1,"text":"buy <milk>","created":"1970-01-01T00:01:00Z"}]"#).unwrap());
        assert_eq!(handle(&b, &req("DELETE", "/api/notes", "read,write", ""), 0).status, 405);
        assert_eq!(handle(&b, &req("GET", "/api/other", "read", ""), 0).status, 404);
        // The API's root lists the notes too; one note by id, with or without the slash.
        assert_eq!(json(&handle(&b, &req("GET", "/api/", "read", ""), 0)), json(&handle(&b, &req("GET", "/api/notes", "read", ""), 0)));
        for p in ["/api/notes/1", "/api/notes/1/"] {
            let r = handle(&b, &req("GET", p, "read", ""), 0);
            assert_eq!((r.status, json(&r)), (200, Json::parse(r#"{"id":1,"text":"buy <milk>","created":"1970-01-01T00:01:00Z"}"#).unwrap()), "{p}");
        }
        assert_eq!(handle(&b, &req("GET", "/api/notes/2/", "read", ""), 0).status, 404);
        assert_eq!(handle(&b, &req("GET", "/api/notes/1/x", "read", ""), 0).status, 404);
        assert_eq!(handle(&b, &req("GET", "/api/notes/1/", "", ""), 0).status, 403);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_page_shows_notes_and_the_form_by_permission() {
        let (b, dir) = book("page");
        let r = handle(&b, &req("POST", "/add", "read,write", "text=a+%3Cb%3E+c"), 0);
        assert_eq!((r.status, r.headers.iter().find(|(n, _)| n == "Location").map(|(_, v)| v.as_str())), (303, Some("/")));
        let page = |perms: &str| String::from_utf8(handle(&b, &req("GET", "/", perms, ""), 0).body).unwrap();
        let editor = page("read,write");
        assert!(editor.contains("<li data-id=\"1\">a &lt;b&gt; c<time") && editor.contains("id=\"add-note\""), "{editor}");
        let viewer = page("read");
        assert!(viewer.contains("a &lt;b&gt; c") && viewer.contains("id=\"read-only\"") && !viewer.contains("add-note"));
        let nobody = page("");
        assert!(nobody.contains("id=\"no-read\"") && !nobody.contains("a &lt;b&gt; c"));
        assert_eq!(handle(&b, &req("POST", "/add", "read", "text=x"), 0).status, 403);
        assert_eq!(handle(&b, &req("POST", "/add", "write", "text="), 0).status, 400);
        let csp = handle(&b, &req("GET", "/", "read", ""), 0).headers.into_iter().find(|(n, _)| n == "Content-Security-Policy");
        assert!(csp.is_some_and(|(_, v)| v.starts_with("default-src 'self'")));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
