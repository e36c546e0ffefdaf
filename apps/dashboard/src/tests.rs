//! The dashboard's routes against a fake of the bridge's local API: a TCP server that records
//! each request (method, target in origin or absolute form, headers, body) and answers as told.

use super::*;
use std::io::{BufRead, BufReader, Read};
use std::sync::Mutex;

#[derive(Clone, Debug)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: String,
}

type Answer = Box<dyn Fn(&Seen) -> (u16, String) + Send + Sync>;

/// A fake local API on a free port; returns its `host:port` and what it saw.
fn fake_platform(answer: Answer) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let mut s = s.unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let mut parts = line.split_whitespace();
            let (method, target) = (parts.next().unwrap().to_owned(), parts.next().unwrap().to_owned());
            let mut headers = Vec::new();
            loop {
                let mut h = String::new();
                r.read_line(&mut h).unwrap();
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                let (n, v) = h.split_once(':').unwrap();
                headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
            let len: usize = headers.iter().find(|(n, _)| n == "content-length").map(|(_, v)| v.parse().unwrap()).unwrap_or(0);
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let seen = Seen { method, target, headers, body: String::from_utf8(body).unwrap() };
            let (status, text) = answer(&seen);
            log.lock().unwrap().push(seen);
            let _ = write!(s, "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}", text.len());
        }
    });
    (addr, seen)
}

fn app(name: &str, platform: &str) -> (App, PathBuf) {
    let var = std::env::temp_dir().join(format!("dashboard-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&var);
    std::fs::create_dir_all(&var).unwrap();
    (App { conns: Connections::new(var.clone()), platform: Platform::at(platform, platform), now: || 0 }, var)
}

fn req(method: &str, path: &str, session: Option<&str>, body: &str) -> Request {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    Request {
        method: method.into(),
        path: path.into(),
        query: query.into(),
        headers: session.map(|s| vec![("x-granary-session-id".to_owned(), s.to_owned())]).unwrap_or_default(),
        body: body.as_bytes().to_vec(),
    }
}

fn json(r: &Response) -> Json {
    Json::parse(std::str::from_utf8(&r.body).unwrap()).unwrap()
}

fn header<'a>(s: &'a Seen, name: &str) -> Option<&'a str> {
    s.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// The fake's answers: `/claim` gives gs_<claimToken minus gc_>; `DELETE /tokens/…` 204; a
/// proxied call with `gs_revoked` fails like a revoked membrane; others echo what they got.
fn bridge_like(s: &Seen) -> (u16, String) {
    match (s.method.as_str(), s.target.as_str()) {
        ("POST", "/claim") => {
            let b = Json::parse(&s.body).unwrap();
            match b.str_field("claimToken").unwrap().strip_prefix("gc_") {
                Some(t) => (200, format!("{{\"token\":\"gs_{t}\"}}")),
                None => (403, r#"{"error":"this powerbox claim is unknown, used, expired, or belongs to another session: ask the user to choose again"}"#.into()),
            }
        }
        ("DELETE", t) if t.starts_with("/tokens/") => (204, String::new()),
        _ if header(s, "authorization") == Some("Bearer gs_revoked") => {
            (403, r#"{"error":"revoked: may read notes (its grant was revoked or a requirement no longer holds; ask the user to grant it again)"}"#.into())
        }
        _ => (200, format!("[{{\"id\":1,\"text\":\"seen {} {}\"}}]", s.method, s.target)),
    }
}

fn connect(a: &App, kind: &str, claim: &str, extra: &str) -> Response {
    handle(a, &req("POST", "/connect", Some("sess-1"), &format!(r#"{{"claimToken":"{claim}","kind":"{kind}"{extra}}}"#)))
}

#[test]
fn connecting_claims_with_the_session_id_and_saves_the_token() {
    let (addr, seen) = fake_platform(Box::new(bridge_like));
    let (a, var) = app("connect", &addr);
    // No session header: refused before the platform is asked.
    let r = handle(&a, &req("POST", "/connect", None, r#"{"claimToken":"gc_x","kind":"notes"}"#));
    assert_eq!(r.status, 400);
    assert!(json(&r).str_field("error").unwrap().contains("X-Granary-Session-Id"));
    assert!(seen.lock().unwrap().is_empty());

    let r = connect(&a, "notes", "gc_abcdefgh", "");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let claim = seen.lock().unwrap()[0].clone();
    assert_eq!((claim.method.as_str(), claim.target.as_str()), ("POST", "/claim"));
    assert_eq!(
        Json::parse(&claim.body).unwrap(),
        Json::parse(r#"{"sessionId":"sess-1","claimToken":"gc_abcdefgh","label":"Notes for the dashboard","requiredPermissions":[]}"#).unwrap()
    );
    // Saved under /var, shown to the page shortened.
    let saved = std::fs::read_to_string(var.join("dashboard.json")).unwrap();
    assert!(saved.contains("\"token\":\"gs_abcdefgh\""), "{saved}");
    let state = handle(&a, &req("GET", "/state", None, ""));
    let notes = json(&state).get("connections").unwrap().get("notes").unwrap().clone();
    assert_eq!(notes.str_field("token"), Some("gs_abcd…"));
    assert_eq!(notes.str_field("label"), Some("Notes for the dashboard"));
    assert!(!String::from_utf8_lossy(&state.body).contains("gs_abcdefgh"));

    // Connecting again replaces the grant and drops the old one.
    assert_eq!(connect(&a, "notes", "gc_second", "").status, 200);
    let last = seen.lock().unwrap().last().unwrap().clone();
    assert_eq!((last.method.as_str(), last.target.as_str()), ("DELETE", "/tokens/gs_abcdefgh"));
    std::fs::remove_dir_all(var).unwrap();
}

#[test]
fn a_refused_claim_shows_the_platform_text_and_saves_nothing() {
    let (addr, _) = fake_platform(Box::new(bridge_like));
    let (a, var) = app("refused", &addr);
    let r = connect(&a, "notes", "bogus", "");
    assert_eq!(r.status, 502);
    let e = json(&r).str_field("error").unwrap().to_owned();
    assert!(e.starts_with("the platform refused the claim: this powerbox claim is unknown, used, expired"), "{e}");
    assert_eq!(a.conns.all().unwrap(), []);
    // Bad input never reaches the platform.
    assert_eq!(connect(&a, "printer", "gc_x", "").status, 400);
    assert_eq!(connect(&a, "notes", "gc x", "").status, 400);
    let r = connect(&a, "http", "gc_x", r#","origin":"ftp://x""#);
    assert!(json(&r).str_field("error").unwrap().contains("not an origin"));
    std::fs::remove_dir_all(var).unwrap();
}

#[test]
fn calls_go_through_the_proxy_with_the_token_and_show_revocation_verbatim() {
    let (addr, seen) = fake_platform(Box::new(bridge_like));
    let (a, var) = app("call", &addr);
    let r = json(&handle(&a, &req("POST", "/call/notes", None, "")));
    assert_eq!(r.get("ok"), Some(&Json::Bool(false)));
    assert!(r.str_field("error").unwrap().starts_with("not connected"));

    connect(&a, "notes", "gc_tok", "");
    let r = json(&handle(&a, &req("POST", "/call/notes", None, "")));
    assert_eq!((r.get("ok"), r.get("status")), (Some(&Json::Bool(true)), Some(&Json::from(200u64))), "{r}");
    assert_eq!(r.str_field("body"), Some(r#"[{"id":1,"text":"seen GET http://notes/"}]"#));
    let call = seen.lock().unwrap().last().unwrap().clone();
    assert_eq!((call.method.as_str(), call.target.as_str()), ("GET", "http://notes/"));
    assert_eq!(header(&call, "authorization"), Some("Bearer gs_tok"));

    // A revoked grant: the platform's error text, verbatim.
    a.conns.set(Kind::Notes, Connection { token: "gs_revoked".into(), label: "L".into(), connected: String::new(), origin: None }).unwrap();
    let r = json(&handle(&a, &req("POST", "/call/notes", None, "")));
    assert_eq!((r.get("ok"), r.get("status")), (Some(&Json::Bool(false)), Some(&Json::from(403u64))));
    assert!(r.str_field("error").unwrap().starts_with("revoked: may read notes (its grant was revoked"), "{r}");

    // An HTTP origin: the path from the form, below the origin's host.
    connect(&a, "http", "gc_web", r#","origin":"http://API.test:9""#);
    let r = json(&handle(&a, &req("POST", "/call/http", None, r#"{"path":"/v1/items?x=1"}"#)));
    assert_eq!(r.get("ok"), Some(&Json::Bool(true)), "{r}");
    let call = seen.lock().unwrap().last().unwrap().clone();
    assert_eq!(call.target, "http://api.test:9/v1/items?x=1");
    assert_eq!(header(&call, "authorization"), Some("Bearer gs_web"));
    let r = json(&handle(&a, &req("POST", "/call/http", None, r#"{"path":"no slash"}"#)));
    assert!(r.str_field("error").unwrap().contains("is not a path"));
    let state = json(&handle(&a, &req("GET", "/state", None, "")));
    assert_eq!(state.get("connections").unwrap().get("http").unwrap().str_field("origin"), Some("http://api.test:9"));

    // Without a platform: the reason, not a hang.
    let (lonely, var2) = app("lonely", "127.0.0.1:1");
    lonely.conns.set(Kind::Notes, Connection { token: "gs_x".into(), label: "L".into(), connected: String::new(), origin: None }).unwrap();
    let r = json(&handle(&lonely, &req("POST", "/call/notes", None, "")));
    assert!(r.str_field("error").unwrap().starts_with("cannot reach the platform's proxy"), "{r}");
    std::fs::remove_dir_all(var).unwrap();
    std::fs::remove_dir_all(var2).unwrap();
}

#[test]
fn mail_is_sent_through_the_local_api_with_the_token() {
    let (addr, seen) = fake_platform(Box::new(|s: &Seen| {
        if s.target.starts_with("/mail/send") { (200, r#"{"messageId":"<1@granary>"}"#.into()) } else { bridge_like(s) }
    }));
    let (a, var) = app("mail", &addr);
    connect(&a, "mail", "gc_mail", "");
    let body = r#"{"to":"bob@example.org","subject":"Hi","body":"one\ntwo"}"#;
    let r = json(&handle(&a, &req("POST", "/call/mail", None, body)));
    assert_eq!(r.get("ok"), Some(&Json::Bool(true)), "{r}");
    assert_eq!(r.str_field("body"), Some(r#"{"messageId":"<1@granary>"}"#));
    let sent = seen.lock().unwrap().last().unwrap().clone();
    assert_eq!((sent.method.as_str(), sent.target.as_str()), ("POST", "/mail/send?to=bob%40example.org"));
    assert_eq!(header(&sent, "authorization"), Some("Bearer gs_mail"));
    assert!(sent.body.starts_with("To: bob@example.org\r\nSubject: Hi\r\n") && sent.body.ends_with("\r\n\r\none\r\ntwo\r\n"), "{:?}", sent.body);
    let r = json(&handle(&a, &req("POST", "/call/mail", None, r#"{"to":"nobody","subject":"s"}"#)));
    assert!(r.str_field("error").unwrap().contains("not one mail address"));
    assert_eq!(seen.lock().unwrap().len(), 2, "a bad form never reaches the platform");
    std::fs::remove_dir_all(var).unwrap();
}

#[test]
fn forgetting_drops_the_grant() {
    let (addr, seen) = fake_platform(Box::new(bridge_like));
    let (a, var) = app("forget", &addr);
    connect(&a, "http", "gc_web", r#","origin":"http://api.test:9""#);
    let r = handle(&a, &req("DELETE", "/connections/http", None, ""));
    assert_eq!((r.status, json(&r).get("ok")), (200, Some(&Json::Bool(true))));
    let last = seen.lock().unwrap().last().unwrap().clone();
    assert_eq!((last.method.as_str(), last.target.as_str()), ("DELETE", "/tokens/gs_web"));
    assert_eq!(a.conns.get(Kind::Http).unwrap(), None);
    let r = handle(&a, &req("DELETE", "/connections/http", None, ""));
    assert_eq!(r.status, 404);
    assert!(json(&r).str_field("error").unwrap().contains("nothing to forget"));
    std::fs::remove_dir_all(var).unwrap();
}

#[test]
fn descriptors_page_and_unknown_routes() {
    let (a, var) = app("routes", "127.0.0.1:1");
    let d = json(&handle(&a, &req("GET", "/descriptor?kind=notes", None, "")));
    assert_eq!(d.str_field("descriptor"), Some(descriptor::encode(&Want::GrainApi("notes")).as_str()));
    assert_eq!(d.str_field("label"), Some("Notes for the dashboard"));
    let d = json(&handle(&a, &req("GET", "/descriptor?kind=http&origin=http%3A%2F%2Fapi.test%3A9", None, "")));
    assert_eq!(d.str_field("descriptor"), Some(descriptor::encode(&Want::Origin("http://api.test:9")).as_str()));
    assert_eq!(d.str_field("label"), Some("HTTP API http://api.test:9"));
    let d = json(&handle(&a, &req("GET", "/descriptor?kind=mail", None, "")));
    assert_eq!(d.str_field("descriptor"), Some(descriptor::encode(&Want::MailSender).as_str()));
    assert_eq!(handle(&a, &req("GET", "/descriptor?kind=http&origin=nope", None, "")).status, 400);
    assert_eq!(handle(&a, &req("GET", "/descriptor?kind=fax", None, "")).status, 400);
    let page = handle(&a, &req("GET", "/", None, ""));
    let html = String::from_utf8(page.body.clone()).unwrap();
    for id in ["connect-notes", "connect-http", "http-origin", "connect-mail", "status-notes", "call-notes", "loop-notes", "result-notes",
               "status-http", "call-http", "loop-http", "result-http", "status-mail", "call-mail", "result-mail",
               "mail-to", "mail-subject", "mail-body", "send-mail", "forget-notes", "forget-http", "forget-mail"] {
        assert_eq!(html.matches(&format!("id=\"{id}\"")).count(), 1, "#{id}");
    }
    assert!(page.headers.iter().any(|(n, v)| n == "Content-Security-Policy" && v.contains("default-src 'self'")));
    assert_eq!(handle(&a, &req("POST", "/call/fax", None, "")).status, 404);
    assert_eq!(handle(&a, &req("GET", "/call/notes", None, "")).status, 405);
    assert_eq!(handle(&a, &req("POST", "/state", None, "")).status, 405);
    assert_eq!(handle(&a, &req("GET", "/nope", None, "")).status, 404);
    std::fs::remove_dir_all(var).unwrap();
}

#[test]
fn a_missing_environment_says_what_to_do() {
    let e = platform::tests_from_var("DASHBOARD_TEST_SURELY_UNSET").unwrap_err();
    assert!(e.contains("is not set: this dashboard must run inside a Granary grain"), "{e}");
}

#[test]
fn offering_a_key_asks_the_platform_for_this_session() {
    let (addr, seen) = fake_platform(Box::new(|s: &Seen| if s.body.contains("sess-bad") { (404, r#"{"error":"no open session `sess-bad`"}"#.into()) } else { (200, "{}".into()) }));
    let (a, _var) = app("offer", &addr);
    assert_eq!(handle(&a, &req("POST", "/offer-key", None, "")).status, 400, "no session header");
    assert!(seen.lock().unwrap().is_empty());
    let r = handle(&a, &req("POST", "/offer-key", Some("sess-1"), ""));
    assert_eq!((r.status, json(&r)), (200, Json::parse(r#"{"ok":true}"#).unwrap()));
    let sent = seen.lock().unwrap()[0].clone();
    assert_eq!((sent.method.as_str(), sent.target.as_str()), ("POST", "/offer"));
    let body = Json::parse(&sent.body).unwrap();
    assert_eq!((body.str_field("sessionId"), body.str_field("title")), (Some("sess-1"), Some("Dashboard state for a script")));
    let r = handle(&a, &req("POST", "/offer-key", Some("sess-bad"), ""));
    assert_eq!(r.status, 502);
    assert!(json(&r).str_field("error").unwrap().contains("no open session `sess-bad`"));
}

#[test]
fn the_page_carries_the_kits_shell_script_once_and_no_marker() {
    let (a, var) = app("page", "127.0.0.1:9");
    let r = handle(&a, &req("GET", "/", None, ""));
    let page = String::from_utf8(r.body).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(page.matches("function askShell(").count(), 1);
    assert_eq!(page.matches("function powerboxRequest(").count(), 1);
    assert!(!page.contains("/*SHELL_RPC*/"));
    let _ = std::fs::remove_dir_all(var);
}
