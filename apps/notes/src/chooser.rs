//! The chooser page (`chooser_path = "/choose"` in granary.toml): when a person picks this
//! Notes grain in another grain's powerbox dialog, the shell shows this page inside the dialog.
//! It lists the notes; choosing one (or all) fulfils the request through the bridge's
//! `POST $GRANARY_API/fulfill` with a path prefix that reaches only that note
//! (`/api/notes/<id>/`) or the whole API (`/api/`). The platform checks the prefix against the
//! manifest and the request, and the dialog closes by itself.

use crate::notebook::Notebook;
use granary_app_kit::http::{self, parse_form, Request, Response};
use granary_app_kit::json::Json;
use granary_app_kit::html;
use std::time::Duration;

/// The API name the manifest declares (`[[powerbox.provides]] api`).
pub const API: &str = "notes";
/// How long the platform may take to fulfil.
const FULFIL_TIMEOUT: Duration = Duration::from_secs(30);

/// `GET /choose` shows the choices; `POST /choose` (form `note` = an id or `all`) fulfils.
/// `api` is the `host:port` of `$GRANARY_API`, or why it is unusable.
pub fn route(book: &Notebook, api: Result<&str, &str>, req: &Request) -> Response {
    match req.method.as_str() {
        "GET" | "HEAD" => page(book, req, None),
        "POST" => choose(book, api, req),
        _ => Response::text(405, "use GET or POST on /choose\n").header("Allow", "GET, HEAD, POST"),
    }
}

/// The prefix and title granted for the form's `note` value.
fn choice(book: &Notebook, value: &str) -> Result<(String, String), String> {
    if value == "all" {
        return Ok(("/api/".into(), "All notes".into()));
    }
    let id: u64 = value.parse().map_err(|_| format!("`{value}` is not a note number"))?;
    let notes = book.list()?;
    let note = notes.iter().find(|n| n.id == id).ok_or_else(|| format!("there is no note {id} (it may have been deleted); choose another"))?;
    let mut title: String = note.text.lines().next().unwrap_or("").chars().take(60).collect();
    if title.len() < note.text.len() {
        title.push('…');
    }
    Ok((format!("/api/notes/{id}/"), title))
}

fn choose(book: &Notebook, api: Result<&str, &str>, req: &Request) -> Response {
    if !req.has_permission("read") {
        return page(book, req, Some("Granting a note needs the read permission."));
    }
    let Some(session) = req.header("x-granary-session-id").filter(|s| !s.is_empty()) else {
        return page(book, req, Some("This request has no X-Granary-Session-Id: open this page from Granary's powerbox dialog."));
    };
    let form = parse_form(&String::from_utf8_lossy(&req.body));
    let value = form.iter().find(|(k, _)| k == "note").map(|(_, v)| v.as_str()).unwrap_or("");
    let (prefix, title) = match choice(book, value) {
        Ok(c) => c,
        Err(e) => return page(book, req, Some(&e)),
    };
    let api = match api {
        Ok(a) => a,
        Err(e) => return page(book, req, Some(e)),
    };
    let body = Json::obj([
        ("sessionId", Json::from(session)),
        ("api", Json::from(API)),
        ("pathPrefix", Json::from(prefix.as_str())),
        ("title", Json::from(title.as_str())),
        ("verbPhrase", Json::from("may read this through the notes API")),
    ])
    .to_string();
    let r = http::request(api, "POST", "/fulfill", &[("Content-Type", "application/json")], body.as_bytes(), 64 * 1024, FULFIL_TIMEOUT);
    match r {
        Err(e) => page(book, req, Some(&format!("cannot reach the platform at $GRANARY_API: {e}"))),
        Ok(r) if r.status == 200 => done(&title),
        Ok(r) => {
            let text = String::from_utf8_lossy(&r.body);
            let why = Json::parse(&text).ok().and_then(|j| j.str_field("error").map(str::to_owned)).unwrap_or_else(|| format!("HTTP {}", r.status));
            page(book, req, Some(&format!("Granary refused: {why}")))
        }
    }
}

const STYLE: &str = "
body{margin:0;font:15px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1f2933;background:#fbf8f2}
main{padding:12px 16px}h1{margin:0 0 8px;font-size:20px;color:#8a5a14}
ul{list-style:none;padding:0;margin:0}li{margin:6px 0}
button{width:100%;text-align:left;padding:8px 12px;border:1px solid #e6e0d4;border-radius:8px;background:#fff;font:inherit;cursor:pointer;white-space:pre-wrap}
button:hover{border-color:#8a5a14}.hint{color:#637381;font-size:13px}.error{color:#a12a1a}
";

fn shell(body: String) -> Response {
    Response::html(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Choose notes</title><link rel=\"icon\" href=\"data:,\"><style>{STYLE}</style></head>\n<body><main>\n{body}\n</main></body></html>\n"
    ))
}

fn done(title: &str) -> Response {
    shell(format!("<h1>Granted</h1><p id=\"chosen\">{}</p><p class=\"hint\">The dialog closes by itself.</p>", html(title)))
}

fn page(book: &Notebook, req: &Request, error: Option<&str>) -> Response {
    let error = error.map(|e| format!("<p class=\"error\" id=\"choose-error\" role=\"alert\">{}</p>", html(e))).unwrap_or_default();
    if !req.has_permission("read") {
        return shell(format!("<h1>Choose notes</h1>{error}<p id=\"no-read\">You cannot read this notebook, so you cannot grant its notes.</p>"));
    }
    let notes = match book.list() {
        Ok(n) => n,
        Err(e) => return shell(format!("<h1>Choose notes</h1><p class=\"error\">{}</p>", html(&e))),
    };
    let item = |value: &str, label: &str| {
        format!("<li><form method=\"post\" action=\"/choose\"><input type=\"hidden\" name=\"note\" value=\"{value}\"><button type=\"submit\" data-note=\"{value}\">{label}</button></form></li>")
    };
    let mut items = item("all", "<strong>All notes</strong> (the whole notebook, and notes added later)");
    for n in notes.iter().rev() {
        items.push_str(&item(&n.id.to_string(), &html(&n.text)));
    }
    let empty = if notes.is_empty() { "<p class=\"hint\" id=\"empty\">No notes yet.</p>" } else { "" };
    shell(format!(
        "<h1>Choose notes</h1><p class=\"hint\">Another grain asks to read notes. Give it one note, or all of them.</p>{error}<ul id=\"choices\">{items}</ul>{empty}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use granary_app_kit::http::{read_request, write_response, Incoming};
    use std::io::BufReader;
    use std::net::TcpListener;
    use std::path::PathBuf;

    fn book(name: &str) -> (Notebook, PathBuf) {
        let d = std::env::temp_dir().join(format!("notes-chooser-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        (Notebook::new(d.clone()), d)
    }

    fn req(method: &str, perms: &str, body: &str) -> Request {
        Request {
            method: method.into(),
            path: "/choose".into(),
            headers: vec![("x-granary-permissions".into(), perms.into()), ("x-granary-session-id".into(), "sess-7".into())],
            body: body.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    /// A fake `$GRANARY_API` answering one request with (status, body); returns its address
    /// and a handle giving back the request it got.
    fn fake_api(status: u16, body: &'static str) -> (String, std::thread::JoinHandle<Request>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let t = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let Incoming::Request(r) = read_request(&mut BufReader::new(s.try_clone().unwrap()), 1 << 20).unwrap() else { panic!("no request") };
            write_response(&mut &s, &Response::new(status, "application/json", body), false, true).unwrap();
            r
        });
        (addr, t)
    }

    fn text(r: &Response) -> String {
        String::from_utf8(r.body.clone()).unwrap()
    }

    #[test]
    fn the_page_lists_all_and_each_note() {
        let (b, dir) = book("page");
        b.add("milk <2l>", 0).unwrap();
        b.add("bread", 0).unwrap();
        let p = text(&route(&b, Err("unused"), &req("GET", "read", "")));
        assert!(p.contains("data-note=\"all\"") && p.contains("data-note=\"1\">milk &lt;2l&gt;<") && p.contains("data-note=\"2\">bread<"), "{p}");
        assert!(p.find("data-note=\"2\"").unwrap() < p.find("data-note=\"1\"").unwrap(), "newest first");
        let p = text(&route(&b, Err("unused"), &req("GET", "", "")));
        assert!(p.contains("id=\"no-read\"") && !p.contains("milk"), "{p}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn choosing_a_note_fulfils_with_its_own_prefix() {
        let (b, dir) = book("fulfil");
        b.add("first line\nsecond", 0).unwrap();
        let (api, got) = fake_api(200, "{}");
        let r = route(&b, Ok(&api), &req("POST", "read", "note=1"));
        assert!(text(&r).contains("<p id=\"chosen\">first line…</p>"), "{}", text(&r));
        let sent = got.join().unwrap();
        assert_eq!((sent.method.as_str(), sent.path.as_str()), ("POST", "/fulfill"));
        let j = Json::parse(std::str::from_utf8(&sent.body).unwrap()).unwrap();
        assert_eq!(
            j,
            Json::parse(r#"{"sessionId":"sess-7","api":"notes","pathPrefix":"/api/notes/1/","title":"first line…","verbPhrase":"may read this through the notes API"}"#).unwrap()
        );

        // All notes: the declared prefix.
        let (api, got) = fake_api(200, "{}");
        route(&b, Ok(&api), &req("POST", "read", "note=all"));
        assert_eq!(Json::parse(std::str::from_utf8(&got.join().unwrap().body).unwrap()).unwrap().str_field("pathPrefix"), Some("/api/"));

        // The platform's refusal is shown; unknown notes and missing permissions never reach it.
        let (api, got) = fake_api(403, r#"{"error":"this session was not opened as a powerbox chooser"}"#);
        let p = text(&route(&b, Ok(&api), &req("POST", "read", "note=1")));
        assert!(p.contains("id=\"choose-error\"") && p.contains("Granary refused: this session was not opened as a powerbox chooser"), "{p}");
        got.join().unwrap();
        let p = text(&route(&b, Err("GRANARY_API is not set"), &req("POST", "read", "note=9")));
        assert!(p.contains("there is no note 9"), "{p}");
        let p = text(&route(&b, Err("GRANARY_API is not set"), &req("POST", "", "note=1")));
        assert!(p.contains("needs the read permission"), "{p}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
