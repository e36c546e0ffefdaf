//! WebSession.request carried faithfully to a real HTTP app and back.

mod common;

use common::{call, identity_headers, run, Body, ALICE, ANONYMOUS};
use granary_bridge::limits::POOL_IDLE;

#[test]
fn any_method_token_reaches_the_app_with_its_body() {
    run(|_| {}, |h| async move {
        let s = h.session(&ALICE).await;
        let xml = b"<?xml version=\"1.0\"?><propfind xmlns=\"DAV:\"><allprop/></propfind>";
        for method in ["GET", "DELETE", "OPTIONS", "PROPFIND", "PROPPATCH", "MKCOL", "MKCALENDAR", "REPORT", "LOCK", "UNLOCK", "COPY", "MOVE", "FOOBAR"] {
            let r = call(&s, method, "/echo?x=1", &[("Depth", b"1"), ("Content-Type", b"application/xml")], Body::Inline(xml)).await;
            assert_eq!(r.status, 200, "{method}");
            let text = r.text();
            assert!(text.starts_with(&format!("{method} /echo?x=1 body={}\n", xml.len())), "{method}: {text}");
            assert!(text.contains("\ndepth: 1\n") && text.contains(&format!("\ncontent-length: {}\n", xml.len())), "{text}");
        }
        let r = call(&s, "HEAD", "/range", &[], Body::None).await;
        assert_eq!((r.status, r.kind.as_str(), r.header("content-length").as_deref()), (200, "none", Some("1000")));
        let r = call(&s, "GET", "/echo", &[], Body::None).await;
        assert!(r.text().starts_with("GET /echo body=0\n"), "{}", r.text());
        assert_eq!(h.bridge.app.idle_connections(), 1, "one keep-alive connection served every request");
    });
}

#[test]
fn identity_headers_are_set_and_client_copies_stripped() {
    run(identity_headers, |h| async move {
        let spoofed: &[(&str, &[u8])] = &[
            ("X-Granary-User-Id", b"admin"),
            ("x-granary-permissions", b"read,write,admin"),
            ("X-Granary-Anything", b"1"),
            ("X-Remote-User", b"root"),
            ("X-Forwarded-User", b"root"),
            ("X-Forwarded-For", b"6.6.6.6"),
            ("Host", b"evil.example"),
            ("Connection", b"keep-alive, X-Hop"),
            ("X-Hop", b"1"),
            ("Transfer-Encoding", b"chunked"),
            ("X-Requested-With", b"XMLHttpRequest"),
            ("X-CSRF-Token", b"tok"),
            ("Accept", b"application/json;q=0.9, text/html"),
            ("If-None-Match", b"\"abc\""),
            ("X-Custom-Latin1", b"caf\xe9"),
            ("If-Modified-Since", b"Sat, 29 Oct 1994 19:43:31 GMT"),
            ("Destination", b"https://g-abc.example.org/b.ics"),
            ("Overwrite", b"F"),
            ("Lock-Token", b"<urn:uuid:e71d4fae>"),
            ("Authorization", b"Basic YWxpY2U6cHc="),
            ("Origin", b"https://g-abc.example.org"),
        ];
        let s = h.session(&ALICE).await;
        let r = call(&s, "GET", "/echo", spoofed, Body::None).await;
        assert_eq!(r.status, 200);
        let got = h.app.last_headers();
        let values = |n: &str| got.iter().filter(|(k, _)| k == n).map(|(_, v)| v.clone()).collect::<Vec<_>>();
        let one = |n: &str| {
            let v = values(n);
            assert_eq!(v.len(), 1, "{n}: {got:?}");
            String::from_utf8(v[0].clone()).unwrap()
        };
        assert_eq!(one("x-granary-user-id"), "u-alice-1");
        assert_eq!(one("x-granary-username"), "Zo%C3%AB%20%C3%98");
        assert_eq!(one("x-granary-user-handle"), "zoe");
        assert_eq!(one("x-granary-permissions"), "read,admin");
        assert_eq!(one("x-granary-session-id"), "sess-1");
        assert_eq!(one("x-granary-tab-id"), "tab-9");
        assert_eq!(one("x-granary-base-path"), "https://g-abc.example.org");
        assert_eq!(one("x-granary-session-type"), "ui");
        assert_eq!(one("host"), "g-abc.example.org");
        assert_eq!(one("x-forwarded-proto"), "https");
        assert_eq!(one("x-remote-user"), "zoe");
        assert_eq!(one("x-forwarded-user"), "u-alice-1");
        assert_eq!(one("x-forwarded-groups"), "read,admin");
        for gone in ["x-granary-anything", "x-forwarded-for", "x-hop", "transfer-encoding"] {
            assert!(values(gone).is_empty(), "{gone} reached the app: {got:?}");
        }
        for kept in [
            "x-requested-with", "x-csrf-token", "accept", "if-none-match", "if-modified-since", "destination", "overwrite",
            "lock-token", "authorization", "origin",
        ] {
            assert_eq!(values(kept).len(), 1, "{kept} did not reach the app");
        }
        assert_eq!(values("x-custom-latin1"), [b"caf\xe9".to_vec()], "non-UTF-8 values pass as bytes");

        let anon = h.session(&ANONYMOUS).await;
        call(&anon, "GET", "/echo", spoofed, Body::None).await;
        let got = h.app.last_headers();
        let has = |n: &str| got.iter().any(|(k, _)| k == n);
        for absent in ["x-granary-user-id", "x-granary-user-handle", "x-remote-user", "x-forwarded-user"] {
            assert!(!has(absent), "{absent} sent for an anonymous user: {got:?}");
        }
        assert!(got.iter().any(|(k, v)| k == "x-granary-permissions" && v == b"read"));
        assert!(got.iter().any(|(k, v)| k == "x-granary-username" && v == b"Anonymous%20User"));
    });
}

#[test]
fn api_sessions_get_the_api_path_prefix() {
    run(|c| c.api_path = "/api".into(), |h| async move {
        let s = h.session(&common::User { api: true, ..ALICE }).await;
        let r = call(&s, "GET", "/echo", &[], Body::None).await;
        assert!(r.text().starts_with("GET /api/echo body=0\n"), "{}", r.text());
        assert!(r.text().contains("x-granary-session-type: api\n"));
        for escape in ["/../echo", "/a/%2e%2e/echo", "/a%2F..%2Fecho"] {
            let r = call(&s, "GET", escape, &[], Body::None).await;
            assert_eq!(r.status, 400, "{escape} may leave the API path: {r:?}");
        }
        assert_eq!(h.app.hits.get(), 1);
    });
}

#[test]
fn range_etag_cookies_redirects_and_statuses_pass_through() {
    run(|_| {}, |h| async move {
        let s = h.session(&ALICE).await;
        let r = call(&s, "GET", "/range", &[("Range", b"bytes=10-19")], Body::None).await;
        assert_eq!((r.status, r.header("content-range").as_deref()), (206, Some("bytes 10-19/1000")));
        assert_eq!(r.body, common::pattern_slice(10, 10));
        assert_eq!(r.header("content-length"), None, "the body union carries the length");

        let r = call(&s, "GET", "/etag", &[], Body::None).await;
        assert_eq!((r.status, r.header("etag").as_deref(), r.text().as_str()), (200, Some("\"v1\""), "version one"));
        assert_eq!(r.header("cache-control").as_deref(), Some("private, max-age=60"));
        let r = call(&s, "GET", "/etag", &[("If-None-Match", b"\"v1\"")], Body::None).await;
        assert_eq!((r.status, r.kind.as_str(), r.header("etag").as_deref()), (304, "none", Some("\"v1\"")));
        let r = call(&s, "PUT", "/etag", &[("If-Match", b"\"v0\"")], Body::Inline(b"x")).await;
        assert_eq!(r.status, 412);

        let r = call(&s, "GET", "/cookie", &[("Cookie", b"sid=42; theme=dark")], Body::None).await;
        assert_eq!(r.all("set-cookie"), ["a=1; Path=/; HttpOnly", "b=2; Max-Age=60"]);
        assert_eq!(r.text(), "sid=42; theme=dark");

        let r = call(&s, "POST", "/redirect", &[], Body::Inline(b"form")).await;
        assert_eq!((r.status, r.header("location").as_deref()), (302, Some("/echo?from=redirect")), "not followed");

        for status in [201, 204, 207, 301, 307, 308, 400, 401, 403, 404, 405, 409, 410, 418, 422, 429, 451, 500, 503, 599] {
            let r = call(&s, "GET", &format!("/status/{status}"), &[], Body::None).await;
            assert_eq!(r.status, status);
            assert_eq!(r.header("x-app-status"), Some(status.to_string()));
            if status != 204 {
                assert_eq!(r.text(), format!("status {status}"));
            }
        }
    });
}

#[test]
fn limits_are_answered_by_the_bridge_without_reaching_the_app() {
    run(|c| c.max_request_body = 1000, |h| async move {
        let s = h.session(&ALICE).await;
        let big = vec![b'a'; 16 * 1024];
        let many: Vec<(String, &[u8])> = (0..101).map(|i| (format!("x-h{i}"), &b"v"[..])).collect();
        let many: Vec<(&str, &[u8])> = many.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        let long_path = format!("/echo?{}", "q".repeat(8 * 1024));
        let inline_big = vec![0u8; 64 * 1024 + 1];
        let cases: Vec<(u16, Reply)> = vec![
            (431, call(&s, "GET", "/echo", &[("X-Big", &big)], Body::None).await),
            (431, call(&s, "GET", "/echo", &many, Body::None).await),
            (414, call(&s, "GET", &long_path, &[], Body::None).await),
            (400, call(&s, "GET", "/echo", &[("Bad Name", b"v")], Body::None).await),
            (400, call(&s, "GET", "/echo", &[("X-Split", b"a\r\nX-Injected: 1")], Body::None).await),
            (400, call(&s, "GE T", "/echo", &[], Body::None).await),
            (400, call(&s, "GET", "http://elsewhere/echo", &[], Body::None).await),
            (413, call(&s, "POST", "/upload", &[], Body::Inline(&inline_big)).await),
            (413, call(&s, "POST", "/upload", &[], Body::Streamed { total: 2000, chunk: 500, declared: 2000 }).await),
        ];
        for (want, r) in &cases {
            assert_eq!(r.status, *want, "{r:?}");
            assert!(r.text().starts_with("granary-bridge: "), "{r:?}");
        }
        assert_eq!(h.app.hits.get(), 0, "a refused request reached the app");
        let ok = call(&s, "GET", "/echo", &[("X-Big", &big[..big.len() - 100])], Body::None).await;
        assert_eq!(ok.status, 200, "a header just under the limit passes");
    });
}

use common::Reply;

#[test]
fn a_crashed_app_gives_502_and_the_next_request_works_once_it_is_back() {
    run(|_| {}, |h| async move {
        let s = h.session(&ALICE).await;
        assert_eq!(call(&s, "GET", "/echo", &[], Body::None).await.status, 200);
        let r = call(&s, "POST", "/die", &[], Body::Inline(b"payload")).await;
        assert_eq!((r.status, r.text().as_str()), (502, "granary-bridge: the app did not answer\n"));
        let r = call(&s, "GET", "/echo", &[], Body::None).await;
        assert_eq!(r.status, 502, "the app is down");
        h.app.restart().await;
        let r = call(&s, "GET", "/echo", &[], Body::None).await;
        assert_eq!(r.status, 200, "{r:?}");
        // A crash between requests leaves a dead keep-alive connection in the pool.
        assert_eq!(h.bridge.app.idle_connections(), 1);
        h.app.crash();
        h.app.restart().await;
        let r = call(&s, "GET", "/echo", &[], Body::None).await;
        assert_eq!(r.status, 200, "a dead pooled connection was not replaced: {r:?}");
    });
}

#[test]
fn a_body_cut_short_by_the_app_is_never_completed() {
    run(|_| {}, |h| async move {
        let s = h.session(&ALICE).await;
        let r = call(&s, "GET", "/download?n=1000000&die_at=300000", &[], Body::None).await;
        assert_eq!((r.status, r.kind.as_str()), (200, "streamed(1000000)"));
        assert!(!r.completed, "done() was called on a truncated body");
        assert!(r.streamed.0 < 1_000_000 && r.streamed.1 == 0, "{:?}", r.streamed);
        assert_eq!(call(&s, "GET", "/echo", &[], Body::None).await.status, 200);
    });
}

#[test]
fn a_request_body_cut_short_by_the_caller_never_reaches_the_app_complete() {
    run(|_| {}, |h| async move {
        let s = h.session(&ALICE).await;
        // Declares 300000 bytes, sends 200000, then done(): the bridge refuses the done() and
        // the app sees the body cut short.
        let r = call(&s, "POST", "/upload", &[], Body::Streamed { total: 200_000, chunk: 65536, declared: 300_000 }).await;
        assert!(r.status == 502 || r.text() == "cut short", "{r:?}");
        // Unknown length (chunked to the app), complete.
        let r = call(&s, "POST", "/upload", &[], Body::Streamed { total: 200_000, chunk: 30_000, declared: u64::MAX }).await;
        assert!(r.text().starts_with("bytes=200000 ") && r.text().ends_with(" mismatches=0"), "{r:?}");
    });
}

#[test]
fn request_and_response_bodies_flow_at_the_same_time() {
    run(|_| {}, |h| async move {
        let s = h.session(&ALICE).await;
        let total = 8 << 20;
        let r = call(&s, "POST", "/echo-stream", &[], Body::Streamed { total, chunk: 65536, declared: total }).await;
        assert_eq!((r.status, r.kind.as_str()), (200, "streamed(8388608)"));
        assert!(r.completed);
        assert_eq!(r.streamed, (total, 0));
        assert!(r.received_while_sending > 0, "the response only started after the whole request body");
    });
}

#[test]
fn oversized_response_headers_give_502() {
    run(|_| {}, |h| async move {
        let s = h.session(&ALICE).await;
        for query in ["many", "big"] {
            let r = call(&s, "GET", &format!("/big-headers?{query}"), &[], Body::None).await;
            assert_eq!(r.status, 502, "{query}: {r:?}");
        }
        assert_eq!(call(&s, "GET", "/echo", &[], Body::None).await.status, 200);
    });
}

#[test]
fn concurrent_requests_each_get_a_connection_and_the_pool_keeps_pool_idle_of_them() {
    run(|_| {}, |h| async move {
        let s = h.session(&ALICE).await;
        let calls = (0..POOL_IDLE + 8).map(|i| {
            let s = s.clone();
            async move { call(&s, "GET", &format!("/hold?i={i}"), &[], Body::None).await }
        });
        let replies = futures::future::join_all(calls).await;
        for (i, r) in replies.iter().enumerate() {
            assert_eq!(r.text(), format!("held i={i}\n"), "{r:?}");
        }
        // Idle connections return to the pool in a background task once their body is read.
        for _ in 0..100 {
            if h.bridge.app.idle_connections() == POOL_IDLE {
                break;
            }
            async_io::Timer::after(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(h.bridge.app.idle_connections(), POOL_IDLE);
    });
}

/// An app on a port of its own that answers every request on a kept-alive connection with a
/// 5-byte body, as Python's `http.server` does: the head and the body in two writes, without
/// TCP_NODELAY — or in one write when the path is `/one`.
fn app_writing_head_and_body_apart() -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let stream = stream.unwrap();
            std::thread::spawn(move || {
                let mut w = stream.try_clone().unwrap();
                let mut r = BufReader::new(stream);
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let one = line.starts_with("GET /one ");
                    while line != "\r\n" {
                        line.clear();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                    }
                    let head = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
                    if one {
                        w.write_all(format!("{head}hello").as_bytes()).unwrap();
                    } else {
                        w.write_all(head.as_bytes()).unwrap();
                        w.write_all(b"hello").unwrap();
                    }
                }
            });
        }
    });
    port
}

#[test]
fn an_app_that_writes_its_head_and_body_apart_is_not_held_back_by_the_bridges_delayed_ack() {
    // With Nagle's algorithm on the app's socket, its body waits until the bridge acknowledges
    // the head; the kernel delays that ACK by 40 ms or more unless the bridge asks for a quick
    // one after each read (TCP_QUICKACK). The same app answering in one write is the yardstick.
    let port = app_writing_head_and_body_apart();
    run(|c| c.port = port, |h| async move {
        let s = h.session(&ALICE).await;
        let (mut apart, mut whole) = (Vec::new(), Vec::new());
        for _ in 0..10 {
            for path in ["/two", "/one"] {
                let t = std::time::Instant::now();
                let r = call(&s, "GET", path, &[], Body::None).await;
                assert_eq!((r.status, r.text().as_str()), (200, "hello"));
                if path == "/two" { apart.push(t.elapsed()) } else { whole.push(t.elapsed()) }
            }
        }
        apart.sort();
        whole.sort();
        let (a, w) = (apart[apart.len() / 2], whole[whole.len() / 2]);
        assert!(a < w + std::time::Duration::from_millis(30), "median exchange {a:?} in two writes against {w:?} in one (two: {apart:?})");
    });
}
