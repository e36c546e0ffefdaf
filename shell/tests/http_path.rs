//! The whole HTTP path with the sample app, over real HTTP, as root: browser → gateway
//! (session origin) → supervisor → sandbox → bridge → `apps/echo` (static binary, packed,
//! signed and uploaded like any app). What passes through untouched (methods, Range and
//! conditional requests, cookies, redirects, statuses, large streamed bodies, WebSockets),
//! what the platform stops (spoofed identity, oversized headers, other origins), and what a
//! crashing app looks like to the browser.

mod common;
mod echo_grain;
mod server;

use echo_grain::{pattern, Origin, Pattern, Platform};
use std::io::Read;
use std::time::Instant;

const FILE_LEN: u64 = 1 << 20;

fn pattern_bytes(range: std::ops::Range<u64>) -> Vec<u8> {
    range.map(pattern).collect()
}

#[test]
fn every_method_reaches_the_app_by_name() {
    let mut p = Platform::start();
    let (_, mut o) = p.grain("Methods");
    let xml = br#"<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><d:getetag/></d:prop></d:propfind>"#;
    for method in ["GET", "OPTIONS", "DELETE", "POST", "PUT", "PATCH", "PROPFIND", "REPORT", "MKCALENDAR", "LOCK"] {
        let body: &[u8] = if matches!(method, "GET" | "OPTIONS" | "DELETE") { b"" } else { xml };
        let seen = o.seen(method, &[("Depth", "1"), ("Content-Type", "application/xml")], body);
        assert_eq!(seen["method"], method, "{seen}");
        assert_eq!(seen["path"], "/headers");
        assert_eq!(seen["body_bytes"], body.len(), "{method}: the body arrives whole");
        assert_eq!(seen["headers"]["depth"], "1", "WebDAV headers pass");
    }
    // HEAD: the app answers with the headers of the GET it would have sent (its JSON names the
    // method, one letter longer), and no body.
    let get = o.request("GET", "/headers", &[], b"");
    let head = o.request("HEAD", "/headers", &[], b"");
    assert_eq!((head.status, head.body.len()), (200, 0));
    let len = |r: &echo_grain::Reply| r.header("content-length").map(|v| v.parse::<usize>().unwrap());
    assert_eq!(len(&get), Some(get.body.len()));
    assert_eq!(len(&head), Some(get.body.len() + 1), "HEAD reached the app as HEAD");
    // A route that only knows GET/HEAD answers other methods itself, with Allow.
    let r = o.request("PROPFIND", "/file", &[], b"");
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")), "{}", r.text());
}

#[test]
fn range_conditional_cookies_redirects_and_statuses_pass_through() {
    let mut p = Platform::start();
    let (_, mut o) = p.grain("Semantics");

    // Range.
    let r = o.request("GET", "/file", &[("Range", "bytes=100-199")], b"");
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 100-199/1048576"));
    assert_eq!(r.body, pattern_bytes(100..200));
    let r = o.request("GET", "/file", &[("Range", "bytes=-10")], b"");
    assert_eq!((r.status, r.header("content-range")), (206, Some("bytes 1048566-1048575/1048576")));
    assert_eq!(r.body, pattern_bytes(FILE_LEN - 10..FILE_LEN));
    let r = o.request("GET", "/file", &[("Range", "bytes=1048576-")], b"");
    assert_eq!((r.status, r.header("content-range")), (416, Some("bytes */1048576")));
    let r = o.request("GET", "/file", &[], b"");
    assert_eq!((r.status, r.header("accept-ranges")), (200, Some("bytes")));
    assert_eq!(r.body, pattern_bytes(0..FILE_LEN), "the whole file, byte for byte");
    let etag = r.header("etag").unwrap().to_owned();
    assert_eq!(etag, "\"echo-file-v1\"");
    assert_eq!(r.header("cache-control"), Some("max-age=60"), "caching headers pass");

    // Conditional requests.
    let r = o.request("GET", "/file", &[("If-None-Match", &etag)], b"");
    assert_eq!((r.status, r.body.len(), r.header("etag")), (304, 0, Some(etag.as_str())));
    let r = o.request("GET", "/file", &[("If-Match", "\"other\"")], b"");
    assert_eq!(r.status, 412);
    let r = o.request("GET", "/file", &[("If-Match", &etag), ("Range", "bytes=0-0")], b"");
    assert_eq!((r.status, r.body.clone()), (206, vec![pattern(0)]));
    let r = o.request("GET", "/file", &[("If-Range", "\"stale\""), ("Range", "bytes=0-0")], b"");
    assert_eq!((r.status, r.body.len() as u64), (200, FILE_LEN), "a stale If-Range gets the whole file");
    let r = o.request("GET", "/file", &[("If-Modified-Since", "Tue, 02 Jan 2024 00:00:00 GMT")], b"");
    assert_eq!(r.status, 304);

    // Cookies: both arrive; the Domain one without Domain. The app then sees them, and never
    // the platform's.
    let r = o.get("/cookie/set?flavour=oat");
    assert_eq!(r.status, 200, "{}", r.text());
    let mut set = r.all("set-cookie");
    set.sort();
    assert_eq!(set, ["flavour=oat; Path=/; HttpOnly", "flavour_domain=oat; Path=/"]);
    let shown = o.get("/cookie/show").json();
    assert_eq!(shown, serde_json::json!({"flavour": "oat", "flavour_domain": "oat"}));

    // Redirects are returned, not followed.
    for status in [301, 302, 303, 307, 308] {
        let r = o.request("POST", &format!("/redirect?to=%2Fnext%3Fa%3D1&status={status}"), &[], b"x");
        assert_eq!((r.status, r.header("location")), (status, Some("/next?a=1")));
    }
    let r = o.get("/redirect?to=https%3A%2F%2Fexample.org%2Fx%3Fy%3D1");
    assert_eq!((r.status, r.header("location")), (302, Some("https://example.org/x?y=1")));

    // Any status.
    for status in [200u16, 201, 204, 400, 404, 409, 418, 429, 451, 500, 502, 503, 504, 599] {
        let r = o.get(&format!("/status/{status}"));
        assert_eq!(r.status, status, "{}", r.text());
        if status != 204 {
            assert!(r.text().starts_with(&format!("{status} ")), "{status}: the app's own body: {}", r.text());
        }
        assert!(r.header("content-security-policy").is_some(), "{status}: the platform's policy on every response");
    }
}

#[test]
fn the_platform_strips_spoofed_identity_and_refuses_oversized_headers() {
    let mut p = Platform::start();
    let (_, mut o) = p.grain("Guards");
    let seen = o.seen(
        "POST",
        &[
            ("X-Granary-User-Id", "spoofed"),
            ("X-Granary-Permissions", "spoofed"),
            ("X-Granary-Session-Type", "api"),
            ("X-Remote-User", "root"),
            ("Connection", "X-Hop"),
            ("X-Hop", "hop-by-hop"),
            ("X-Custom", "kept"),
        ],
        b"a=1",
    );
    let h = &seen["headers"];
    let uid = h["x-granary-user-id"].as_str().unwrap();
    assert!(uid != "spoofed" && uid.len() == 32, "identity comes from the platform: {uid}");
    assert_eq!(h["x-granary-permissions"], "edit,admin", "the owner's permissions, in manifest order");
    assert_eq!(h["x-granary-session-type"], "ui");
    assert!(h.get("x-remote-user").is_none(), "a client-sent X-Remote-User reached the app: {h}");
    assert!(h.get("x-hop").is_none(), "headers named in Connection are hop-by-hop");
    assert_eq!(h["x-custom"], "kept");

    // Platform cookies never reach the app, other cookies do.
    let sid = format!("granary_grain={}; granary_sid=abc; granary_csrf=def; mine=1", o.cookie.clone().unwrap());
    let r = o.raw("GET", "/cookie/show", &[("Cookie", &sid)], None).unwrap();
    let status = r.status;
    let body = r.body_string();
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap(), serde_json::json!({"mine": "1"}));

    // Headers: a large one passes; one over 16 KiB, or more than 64 KiB in all, is refused
    // with 431 before the app sees anything.
    let before = o.visits();
    let big = "b".repeat(12_000);
    let seen = o.seen("GET", &[("X-Big", &big)], b"");
    assert_eq!(seen["headers"]["x-big"].as_str().map(str::len), Some(12_000));
    let huge = "h".repeat(17 * 1024);
    let r = o.raw("GET", "/var", &[("X-Huge", &huge)], None).unwrap();
    assert_eq!(r.status, 431, "one header over 16 KiB");
    let nine = "n".repeat(9 * 1024);
    let many: Vec<(String, &str)> = (0..8).map(|i| (format!("X-Part-{i}"), nine.as_str())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let r = o.raw("GET", "/var", &many, None).unwrap();
    assert_eq!(r.status, 431, "72 KiB of headers in all");
    assert_eq!(o.visits(), before + 1, "the refused requests never reached the app");
}

#[test]
fn grain_origins_are_isolated_from_each_other() {
    let mut p = Platform::start();
    let (_, mut a) = p.grain("A");
    let (_, mut b) = p.grain("B");
    assert_ne!(a.host, b.host);
    assert_eq!(a.visits(), 1);
    assert_eq!(b.visits(), 1, "each grain has its own /var");

    // A's session cookie is refused on B's origin.
    let mut thief = Origin::new(&p.server, &b.host);
    thief.cookie = a.cookie.clone();
    let r = thief.get("/var");
    assert_eq!(r.status, 403, "{}", r.text());

    // A cross-origin POST (from B's origin, or anywhere else) to A's session is refused;
    // A's own origin and a request without Origin pass.
    let b_origin = b.origin();
    let r = a.request("POST", "/headers", &[("Origin", &b_origin)], b"x");
    assert_eq!(r.status, 403, "{}", r.text());
    let r = a.request("DELETE", "/headers", &[("Origin", &b_origin)], b"");
    assert_eq!(r.status, 403);
    let r = a.request("PUT", "/headers", &[("Origin", "null")], b"x");
    assert_eq!(r.status, 403, "an opaque origin is another origin");
    let own = a.origin();
    assert_eq!(a.request("POST", "/headers", &[("Origin", &own)], b"x").status, 200);
    assert_eq!(a.request("POST", "/headers", &[], b"x").status, 200);
    assert_eq!(a.visits(), 2, "nothing refused reached A");
    assert_eq!(b.visits(), 2);

    // Every response carries the platform's CSP: framed only by the shell, talking only to
    // its own origin.
    let r = a.get("/");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("<title>Echo</title>"));
    let csp = r.header("content-security-policy").expect("a CSP");
    assert!(csp.contains(&format!("frame-ancestors {};", p.server.base_url)), "{csp}");
    assert!(csp.contains(&format!("connect-src 'self' ws://{}", a.host)), "{csp}");
    assert!(!csp.contains(&b.host), "{csp}");
    assert_eq!(r.header("referrer-policy"), Some("same-origin"));
    assert!(r.header("access-control-allow-origin").is_none());
}

#[test]
fn hundred_megabyte_bodies_stream_with_bounded_memory() {
    const N: u64 = 100 << 20;
    const LIMIT_KIB: u64 = 100 << 10;
    let mut p = Platform::start();
    let (_, mut o) = p.grain("Big");
    assert_eq!(o.visits(), 1);
    let (server_before, sup_before) = p.peak_rss_kib();
    assert_eq!(sup_before.len(), 1, "one supervisor runs the grain");

    // Download: Content-Length, every byte checked.
    let t = Instant::now();
    let r = o.raw("GET", &format!("/download?bytes={N}"), &[], None).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some(N.to_string().as_str()));
    let mut reader = r.reader;
    let mut buf = vec![0u8; 64 << 10];
    let mut at = 0u64;
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 || at == N {
            break;
        }
        for (k, b) in buf[..n].iter().enumerate() {
            if *b != pattern(at + k as u64) {
                panic!("byte {} is {b}, expected {}", at + k as u64, pattern(at + k as u64));
            }
        }
        at += n as u64;
    }
    assert_eq!(at, N, "the whole download");
    let down = t.elapsed();

    // Upload: 100 MiB with Content-Length; the app reports the count and the byte sum.
    let t = Instant::now();
    let r = o.raw("POST", "/upload", &[("Content-Type", "application/octet-stream")], Some((N, &mut Pattern(0)))).unwrap();
    assert_eq!(r.status, 200);
    let body = r.body_string();
    let v: serde_json::Value = serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("{e}: {body}"));
    let (cycles, rest) = (N / 251, N % 251);
    let sum = cycles * (250 * 251 / 2) + (0..rest).map(|i| pattern(cycles * 251 + i) as u64).sum::<u64>();
    assert_eq!((v["bytes"].as_u64(), v["sum"].as_u64()), (Some(N), Some(sum)), "{v}");
    let up = t.elapsed();

    // Chunked (no length known ahead) works too.
    let r = o.raw("GET", "/download?bytes=3000000&chunked=1", &[], None).unwrap();
    assert_eq!(r.status, 200);
    assert!(r.header("content-length").is_none());

    let (server_after, sup_after) = p.peak_rss_kib();
    eprintln!(
        "100 MiB down in {down:?}, up in {up:?}; peak RSS: server {server_before} → {server_after} KiB, supervisor {sup_before:?} → {sup_after:?} KiB"
    );
    assert!(server_after < LIMIT_KIB, "the server buffered a body: peak RSS {server_after} KiB");
    assert!(sup_after.iter().all(|k| *k < LIMIT_KIB), "the supervisor buffered a body: peak RSS {sup_after:?} KiB");
}

#[test]
fn websocket_messages_cross_whole_with_a_real_client() {
    use tungstenite::client::IntoClientRequest;
    use tungstenite::protocol::frame::coding::CloseCode;
    use tungstenite::protocol::CloseFrame;
    use tungstenite::Message;

    let mut p = Platform::start();
    let (_, mut o) = p.grain("Sockets");
    assert_eq!(o.visits(), 1);

    let connect = |o: &Origin, path: &str, with_cookie: bool| {
        let mut req = format!("ws://{}{path}", o.host).into_client_request().unwrap();
        if with_cookie {
            req.headers_mut().insert("Cookie", o.cookie_header().parse().unwrap());
        }
        req.headers_mut().insert("Sec-WebSocket-Protocol", "chat.v2, chat.v1".parse().unwrap());
        req.headers_mut().insert("Origin", o.origin().parse().unwrap());
        let stream = std::net::TcpStream::connect(("127.0.0.1", o.port)).unwrap();
        stream.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
        tungstenite::client::client(req, stream).map_err(Box::new)
    };

    // Without the session cookie there is no WebSocket.
    match connect(&o, "/ws", false) {
        Err(e) => match *e {
            tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
            other => panic!("expected a 403, got {other}"),
        },
        other => panic!("expected a 403, got {:?}", other.map(|(_, r)| r.status())),
    }

    let (mut ws, resp) = connect(&o, "/ws", true).unwrap_or_else(|e| panic!("handshake: {e}"));
    assert_eq!(resp.status(), 101);
    assert_eq!(resp.headers().get("sec-websocket-protocol").map(|v| v.to_str().unwrap()), Some("chat.v2"), "the app's choice of subprotocol");

    ws.send(Message::text("héllo")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("héllo"));
    let blob: Vec<u8> = (0..(1u64 << 20) + 3).map(pattern).collect();
    ws.send(Message::binary(blob.clone())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(blob), "a 1 MiB binary message, whole");
    ws.send(Message::binary(vec![0u8, 255, 1])).unwrap();
    ws.send(Message::text("second")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(vec![0u8, 255, 1]));
    assert_eq!(ws.read().unwrap(), Message::text("second"), "in order");
    ws.send(Message::Ping(b"are you there".to_vec().into())).unwrap();
    match ws.read().unwrap() {
        Message::Pong(p) => assert_eq!(&p[..], b"are you there"),
        other => panic!("expected a pong, got {other:?}"),
    }

    ws.close(Some(CloseFrame { code: CloseCode::from(4001), reason: "bye now".into() })).unwrap();
    let f = match ws.read() {
        Ok(Message::Close(f)) => f.expect("a close frame with a code"),
        Ok(other) => panic!("after close: {other:?}"),
        Err(e) => panic!("no close frame came back: {e}"),
    };
    assert_eq!((u16::from(f.code), f.reason.as_str()), (4001, "bye now"), "the close handshake completes with the code and reason");

    // A route that is not a WebSocket refuses the upgrade with its own status.
    match connect(&o, "/headers", true) {
        Err(e) => match *e {
            tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r)) => assert_ne!(r.status(), 101),
            other => panic!("expected a refusal, got {other}"),
        },
        other => panic!("expected a refusal, got {:?}", other.map(|(_, r)| r.status())),
    }
    assert_eq!(o.visits(), 2, "the grain still answers");
}

#[test]
fn a_crash_before_the_response_gives_a_clean_502_and_the_next_request_works() {
    let mut p = Platform::start();
    let (grain, mut o) = p.grain("Crash");
    assert_eq!(o.visits(), 1);
    let r = o.get("/crash");
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.header("content-security-policy").is_some(), "a page of the platform, with its policy");
    // The very next request starts the app again; its /var survived.
    assert_eq!(o.visits(), 2, "the next request works");
    assert_eq!(o.visits(), 3);
    // After a Restart from the grain page the next request starts the grain too.
    p.grain_action(&grain, "restart");
    assert_eq!(o.visits(), 4);
}

#[test]
fn requests_that_arrive_together_at_a_stopped_grain_all_wait_for_its_one_start() {
    // A page's resources after an idle stop or a Restart arrive together: each must wait for
    // the one supervisor being started, not start its own (which would find the grain's
    // socket taken, refuse to run, and cost that request a 503).
    let mut p = Platform::start();
    let (grain, mut o) = p.grain("Together");
    assert_eq!(o.visits(), 1);
    for round in 0..2 {
        p.grain_action(&grain, "restart");
        // Restart returns once the supervisor closed its connection; its process exits next.
        let t = Instant::now();
        while !echo_grain::supervisor_pids(p.server.pid()).is_empty() {
            assert!(t.elapsed() < std::time::Duration::from_secs(10), "Restart did not stop the grain");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let o = &o;
        let replies: Vec<(u16, String)> = std::thread::scope(|s| {
            let together: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(move || {
                        let r = o.raw("GET", "/download?bytes=10", &[], None).unwrap();
                        let status = r.status;
                        (status, if status == 200 { String::new() } else { r.body_string() })
                    })
                })
                .collect();
            together.into_iter().map(|t| t.join().unwrap()).collect()
        });
        for (status, body) in &replies {
            assert_eq!(*status, 200, "round {round}: a request that came with others failed: {body}");
        }
        assert_eq!(echo_grain::supervisor_pids(p.server.pid()).len(), 1, "round {round}: one supervisor runs the grain");
    }
}

#[test]
fn a_crash_mid_body_cuts_the_download_off_and_the_next_request_works() {
    let mut p = Platform::start();
    let (_, mut o) = p.grain("Cut");
    assert_eq!(o.visits(), 1);
    // The browser must see a cut-off response, never a complete 1 MiB one.
    let r = o.raw("GET", "/crash?mid_body=1", &[], None).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("1048576"));
    let mut got = Vec::new();
    let mut reader = r.reader;
    let outcome = reader.read_to_end(&mut got);
    assert!(got.len() < (1 << 20), "a truncated download looked complete ({} bytes, {outcome:?})", got.len());
    assert!(got.len() >= 60 << 10, "the app's first 63 KiB arrived ({} bytes)", got.len());
    assert_eq!(got, pattern_bytes(0..got.len() as u64), "what did arrive is the app's bytes");
    assert_eq!(o.visits(), 2, "the next request works");
}

#[test]
fn websocket_messages_keep_the_grain_awake_and_it_stops_once_they_end() {
    use tungstenite::client::IntoClientRequest;
    use tungstenite::Message;
    use std::time::Duration;

    let mut p = Platform::start_with(&["--idle", "2"]);
    let (_, o) = p.grain("Chatty");
    let mut req = format!("ws://{}/ws", o.host).into_client_request().unwrap();
    req.headers_mut().insert("Cookie", o.cookie_header().parse().unwrap());
    req.headers_mut().insert("Origin", o.origin().parse().unwrap());
    let stream = std::net::TcpStream::connect(("127.0.0.1", o.port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let (mut ws, _) = tungstenite::client::client(req, stream).unwrap_or_else(|e| panic!("handshake: {e}"));
    let running = echo_grain::supervisor_pids(p.server.pid());
    assert_eq!(running.len(), 1, "one grain runs");
    // Three times the idle period of messages and nothing else: the grain must stay up.
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < Duration::from_secs(6) {
        ws.send(Message::text(format!("tick {n}"))).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text(format!("tick {n}")));
        n += 1;
        std::thread::sleep(Duration::from_millis(400));
    }
    assert_eq!(echo_grain::supervisor_pids(p.server.pid()), running, "the grain was stopped while its WebSocket was busy");
    // Quiet (the socket open but silent): it stops for idleness.
    let quiet = Instant::now();
    while !echo_grain::supervisor_pids(p.server.pid()).is_empty() {
        assert!(quiet.elapsed() < Duration::from_secs(30), "the grain never stopped once the messages ended");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends `signal` (`STOP`, `CONT`) to `pid` with kill(1).
fn signal(pid: u32, signal: &str) {
    let ok = std::process::Command::new("kill").args([format!("-{signal}"), pid.to_string()]).status().unwrap().success();
    assert!(ok, "kill -{signal} {pid}");
}

/// The first process named `comm` below `root`.
fn descendant_named(root: u32, comm: &str) -> Option<u32> {
    echo_grain::processes_below(root).into_iter().find(|p| p.comm == comm).map(|p| p.pid)
}

#[test]
fn a_new_session_while_the_grain_stops_waits_for_the_stop_and_starts_the_grain_again() {
    let mut p = Platform::start();
    let (grain, mut o) = p.grain("Stopping");
    assert_eq!(o.visits(), 1);
    let old = echo_grain::supervisor_pids(p.server.pid());
    assert_eq!(old.len(), 1);
    // The grain's process (the bridge, which runs echo) is frozen, so a supervisor told to stop
    // spends the whole grace period (5 s) stopping it, and refuses new sessions meanwhile.
    signal(descendant_named(old[0], "bridge").expect("the bridge runs"), "STOP");
    signal(old[0], "TERM");
    let log = p.server.data.path().join("grains").join(&grain).join("log");
    let t = Instant::now();
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("received SIGTERM: stopping") {
        assert!(t.elapsed() < std::time::Duration::from_secs(10), "the supervisor never began to stop");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let t = Instant::now();
    let mut again = p.open(&grain);
    assert_eq!(again.visits(), 2, "a new session works once the stopping supervisor is gone");
    assert!(t.elapsed() > std::time::Duration::from_secs(3), "it waited for the old supervisor ({:?})", t.elapsed());
    // The old supervisor closed its connections before its process exits: wait for that exit.
    let exited = Instant::now();
    while echo_grain::supervisor_pids(p.server.pid()).contains(&old[0]) {
        assert!(exited.elapsed() < std::time::Duration::from_secs(10), "the old supervisor never exited");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let new = echo_grain::supervisor_pids(p.server.pid());
    assert!(new.len() == 1 && new != old, "a new supervisor runs the grain: {old:?} then {new:?}");
}

#[test]
fn once_a_session_exists_requests_and_websockets_bypass_the_supervisor() {
    use std::time::Duration;
    let mut p = Platform::start();
    let (_, mut o) = p.grain("Direct");
    assert_eq!(o.visits(), 1, "the session exists");
    // The app crashes and its supervisor restarts it: the server connects to the new bridge.
    assert_eq!(o.get("/crash").status, 502);
    assert_eq!(o.visits(), 2, "the app runs again");
    let sup = echo_grain::supervisor_pids(p.server.pid());
    assert_eq!(sup.len(), 1);
    // A frozen supervisor answers nothing: whatever still works goes around it, on the
    // grain's direct web channel (server → bridge).
    signal(sup[0], "STOP");
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let visits: Vec<u64> = (0..5).map(|_| o.visits()).collect();
        let seen = o.seen("GET", &[("X-Granary-User-Id", "spoofed")], b"");
        let upload = {
            let body = pattern_bytes(0..FILE_LEN);
            let r = o.request("POST", "/upload", &[], &body);
            (r.status, r.json()["bytes"].as_u64())
        };
        let download = o.get("/download?bytes=3145728");
        let ws = {
            use tungstenite::client::IntoClientRequest;
            let mut req = format!("ws://{}/ws", o.host).into_client_request().unwrap();
            req.headers_mut().insert("Cookie", o.cookie_header().parse().unwrap());
            req.headers_mut().insert("Origin", o.origin().parse().unwrap());
            let stream = std::net::TcpStream::connect(("127.0.0.1", o.port)).unwrap();
            let (mut ws, _) = tungstenite::client::client(req, stream).unwrap_or_else(|e| panic!("handshake: {e}"));
            ws.send(tungstenite::Message::text("direct")).unwrap();
            ws.read().unwrap()
        };
        let _ = tx.send((visits, seen, upload, (download.status, download.body.len()), ws));
    });
    let got = rx.recv_timeout(Duration::from_secs(30));
    signal(sup[0], "CONT");
    let (visits, seen, upload, download, ws) = got.expect("requests waited for the frozen supervisor: they did not take the direct channel");
    worker.join().unwrap();
    assert_eq!(visits, [3, 4, 5, 6, 7]);
    assert_ne!(seen["headers"]["x-granary-user-id"], "spoofed", "the bridge's header rules hold on the direct channel: {seen}");
    assert_eq!(upload, (200, Some(FILE_LEN)));
    assert_eq!(download, (200, 3 << 20));
    assert_eq!(ws, tungstenite::Message::text("direct"));
}

#[test]
fn a_response_body_streaming_longer_than_the_idle_period_keeps_the_grain_awake() {
    use std::time::Duration;
    let mut p = Platform::start_with(&["--idle", "2"]);
    let (_, mut o) = p.grain("Slow reader");
    assert_eq!(o.visits(), 1);
    let running = echo_grain::supervisor_pids(p.server.pid());
    assert_eq!(running.len(), 1, "one grain runs");
    // 48 MiB read at ~4 MiB/s: ~12 s, six times the idle period. Buffers between the grain and
    // this reader hold far less, so the grain is still sending long after 2 s.
    const LEN: u64 = 48 << 20;
    let r = o.raw("GET", &format!("/download?bytes={LEN}"), &[], None).unwrap();
    assert_eq!(r.status, 200);
    let mut reader = r.reader;
    let (mut got, mut bad) = (0u64, 0u64);
    let mut buf = vec![0u8; 64 << 10];
    let start = Instant::now();
    while got < LEN {
        let n = reader.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        bad += (buf[..n] != pattern_bytes(got..got + n as u64)[..]) as u64;
        got += n as u64;
        std::thread::sleep(Duration::from_millis(15));
    }
    eprintln!("read {got} bytes in {:?}", start.elapsed());
    assert_eq!((got, bad), (LEN, 0), "the download was cut off: the grain was stopped for idleness mid-body");
    assert!(start.elapsed() > Duration::from_secs(5), "the body must take well over the idle period");
    assert_eq!(echo_grain::supervisor_pids(p.server.pid()), running, "the grain was stopped while its response streamed");
}

/// A kept-alive connection to `o`'s port: its write half, and its read half buffered.
fn raw_connection(o: &Origin) -> (std::net::TcpStream, std::io::BufReader<std::net::TcpStream>) {
    let stream = std::net::TcpStream::connect(("127.0.0.1", o.port)).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    (stream.try_clone().unwrap(), std::io::BufReader::new(stream))
}

/// Reads one HTTP/1.1 response from `r`, chunked or with a Content-Length: (status, whether
/// it was chunked, body).
fn read_response(r: &mut impl std::io::BufRead) -> (u16, bool, Vec<u8>) {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status: u16 = line.split(' ').nth(1).unwrap().parse().unwrap();
    let (mut chunked, mut length) = (false, None);
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        chunked |= lower.starts_with("transfer-encoding: chunked");
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = Some(v.trim().parse::<usize>().unwrap());
        }
    }
    let mut body = Vec::new();
    if !chunked {
        body.resize(length.expect("a Content-Length or chunks"), 0);
        r.read_exact(&mut body).unwrap();
        return (status, false, body);
    }
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let n = usize::from_str_radix(line.trim(), 16).unwrap();
        let mut chunk = vec![0; n + 2];
        r.read_exact(&mut chunk).unwrap();
        if n == 0 {
            return (status, true, body);
        }
        body.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn a_streamed_response_on_a_kept_alive_connection_is_not_held_back_by_nagle() {
    // The gateway writes a streamed response as its head and then its chunks. Without
    // TCP_NODELAY on the browser's connection, each later small write waits for the browser
    // to acknowledge the first, which browsers and this client delay by 40 ms or more: every
    // request after the first few on a kept-alive connection then took 44–88 ms. An answer
    // with a length leaves in one write and never waited, so it is the yardstick here.
    use std::io::Write;
    let mut p = Platform::start();
    let (_, o) = p.grain("Streams");
    let (mut w, mut r) = raw_connection(&o);
    let (mut chunked, mut whole) = (Vec::new(), Vec::new());
    for _ in 0..12 {
        for is_chunked in [true, false] {
            let t = Instant::now();
            // One write, as a browser sends it (pieces would wait on this client's own Nagle).
            let head = format!("GET /download?bytes=1024&chunked={} HTTP/1.1\r\nHost: {}\r\nCookie: {}\r\n\r\n", is_chunked as u8, o.host, o.cookie_header());
            w.write_all(head.as_bytes()).unwrap();
            assert_eq!(read_response(&mut r), (200, is_chunked, pattern_bytes(0..1024)), "the response is chunked only when asked");
            if is_chunked {
                chunked.push(t.elapsed());
            } else {
                whole.push(t.elapsed());
            }
        }
    }
    chunked.sort();
    whole.sort();
    let (c, w) = (chunked[chunked.len() / 2], whole[whole.len() / 2]);
    assert!(c < w + std::time::Duration::from_millis(30), "median exchange {c:?} chunked against {w:?} with a length (chunked: {chunked:?})");
}

#[test]
fn a_client_that_writes_its_head_and_body_apart_is_not_held_back_by_the_servers_delayed_ack() {
    // Python's http.client (under urllib and requests, the usual grain API clients) sends a
    // request's head, then its body, with Nagle's algorithm on: the body waits until the head
    // is acknowledged, and once a kept-alive connection goes back and forth Linux delays that
    // ACK by 40 ms. Every POST after the first few took that long, unless the server asks
    // for quick ACKs.
    use std::io::Write;
    let mut p = Platform::start();
    let (_, o) = p.grain("Posts");
    let (mut w, mut r) = raw_connection(&o);
    let mut took = Vec::new();
    for i in 0..12 {
        let body = format!("body {i}");
        let t = Instant::now();
        let head = format!("POST /upload HTTP/1.1\r\nHost: {}\r\nCookie: {}\r\nContent-Length: {}\r\n\r\n", o.host, o.cookie_header(), body.len());
        w.write_all(head.as_bytes()).unwrap();
        w.write_all(body.as_bytes()).unwrap();
        let (status, _, answer) = read_response(&mut r);
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(v["bytes"].as_u64(), Some(body.len() as u64));
        took.push(t.elapsed());
    }
    took.sort();
    assert!(took[took.len() / 2] < std::time::Duration::from_millis(25), "median exchange {:?} (all: {took:?})", took[took.len() / 2]);
}
