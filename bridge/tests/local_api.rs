//! The app's side of the powerbox: the bridge's local API over real TCP on loopback, with the
//! test playing the supervisor (fake `GrainApi`, `SessionContext`, and the `WebSession` /
//! `MailSender` objects claims and restores hand out) over a socketpair.

mod common;

use std::net::TcpStream;

use async_io::Async;
use granary_bridge::platform::{decode_token, encode_token};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::HeaderMap;
use hyper::Request;
use serde_json::{json, Value};
use smol_hyper::rt::FuturesIo;

use common::platform::{run, Platform, REVOKED};

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_else(|| panic!("no error in {}", self.json())).to_string()
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into()
    }
}

/// Sends one request to the local API on a new connection, as an HTTP client would (the
/// target is written as given: absolute form for proxied requests).
async fn http(p: &Platform, method: &str, target: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Answer {
    let tcp = Async::<TcpStream>::connect(p.api).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(FuturesIo::new(tcp)).await.unwrap();
    p.ex.spawn(async move {
        let _ = conn.await;
    })
    .detach();
    let mut req = Request::builder().method(method).uri(target);
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    if !target.starts_with('/') && !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        req = req.header("host", "ignored.example");
    }
    let resp = sender.send_request(req.body(Full::new(Bytes::from(body))).unwrap()).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes().to_vec();
    Answer { status: parts.status.as_u16(), headers: parts.headers, body }
}

async fn claim(p: &Platform, body: Value) -> Answer {
    http(p, "POST", "/claim", &[("content-type", "application/json")], body.to_string().into_bytes()).await
}

/// Claims `claim_token` in session `sess-1` and returns the `gs_` token.
async fn granted(p: &Platform, claim_token: &str) -> String {
    let a = claim(p, json!({"sessionId": "sess-1", "claimToken": claim_token, "label": "x", "requiredPermissions": []})).await;
    assert_eq!(a.status, 200, "{}", a.text());
    a.json()["token"].as_str().unwrap().to_string()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[test]
fn a_claim_is_saved_with_permission_names_mapped_to_the_manifest_order() {
    run(async |p| {
        p.open_session("sess-1").await;
        let a = claim(
            &p,
            json!({"sessionId": "sess-1", "claimToken": "gc_web", "label": "Weather API", "requiredPermissions": ["admin", "write"]}),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.text());
        let token = a.json()["token"].as_str().unwrap().to_string();
        assert!(token.starts_with("gs_") && !token.contains('='), "{token}");
        let r = p.record.borrow();
        assert_eq!(r.claims, [("gc_web".to_string(), vec![false, true, true])]);
        let bytes = decode_token(&token).unwrap();
        assert_eq!(r.saved.get(&bytes), Some(&("Weather API".to_string(), "web")), "the claimed capability itself was saved");
        assert_eq!(encode_token(&bytes), token);
    });
}

#[test]
fn claims_that_cannot_work_say_why() {
    run(async |p| {
        p.open_session("sess-1").await;
        let a = claim(&p, json!({"sessionId": "sess-2", "claimToken": "gc_web", "requiredPermissions": []})).await;
        assert_eq!(a.status, 404);
        assert!(a.error().contains("no open session `sess-2`") && a.error().contains("X-Granary-Session-Id"), "{}", a.error());

        let a = claim(&p, json!({"sessionId": "sess-1", "claimToken": "gc_web", "requiredPermissions": ["read", "delete"]})).await;
        assert_eq!(a.status, 400);
        assert_eq!(a.error(), "unknown permission `delete`: the manifest's permissions are [read, write, admin]");

        let a = claim(&p, json!({"sessionId": "sess-1", "claimToken": "gc_stale"})).await;
        assert_eq!(a.status, 403);
        assert!(a.error().contains("this powerbox claim is unknown, used, expired"), "{}", a.error());

        let a = http(&p, "POST", "/claim", &[], b"{not json".to_vec()).await;
        assert_eq!(a.status, 400);
        assert!(a.error().starts_with("the body must be JSON"), "{}", a.error());

        let a = http(&p, "GET", "/nowhere", &[], Vec::new()).await;
        assert_eq!(a.status, 404);
        assert!(a.error().contains("POST /claim"), "{}", a.error());

        // Only the session's own context was asked, and only for the claim it could try.
        assert_eq!(p.record.borrow().claims.len(), 1);
        assert!(p.record.borrow().saved.is_empty());
    });
}

#[test]
fn a_proxied_get_reaches_the_granted_web_session_with_the_urls_host_and_without_the_token() {
    run(async |p| {
        p.open_session("sess-1").await;
        let token = granted(&p, "gc_web").await;
        let auth = bearer(&token);
        let headers = [
            ("authorization", auth.as_str()),
            ("x-custom", "kept"),
            ("proxy-connection", "keep-alive"),
            ("connection", "x-hop"),
            ("x-hop", "dropped"),
        ];
        let a = http(&p, "GET", "http://api.example.org/v1/items?q=1&r=%20", &headers, Vec::new()).await;
        assert_eq!((a.status, a.text().as_str()), (200, "remote saw GET /v1/items?q=1&r=%20"));
        assert_eq!(a.headers.get("content-type").unwrap(), "text/plain");
        assert!(a.headers.get("x-remote").is_none(), "a header the remote's Connection names is hop-by-hop");
        {
            let r = p.record.borrow();
            let seen = &r.requests[0];
            assert_eq!((seen.method.as_str(), seen.body_kind.as_str()), ("GET", "none"));
            assert_eq!(seen.header("host").as_deref(), Some("api.example.org"));
            assert_eq!(seen.header("x-custom").as_deref(), Some("kept"));
            for gone in ["authorization", "proxy-connection", "connection", "x-hop"] {
                assert_eq!(seen.header(gone), None, "{gone} must not reach the remote");
            }
        }

        // The restored capability is cached: a second request restores nothing.
        let a = http(&p, "GET", "http://api.example.org/two", &[("authorization", &auth)], Vec::new()).await;
        assert_eq!(a.status, 200);
        assert_eq!(p.record.borrow().restores, 1);

        // The live reference is revoked; a fresh restore works (the requirement holds again).
        p.record.borrow_mut().revoked_through = 1;
        let a = http(&p, "GET", "http://api.example.org/three", &[("authorization", &auth)], Vec::new()).await;
        assert_eq!((a.status, a.text().as_str()), (200, "remote saw GET /three"));
        assert_eq!(p.record.borrow().restores, 2, "re-restored once after the revoked error");

        // Revoked for good: the live reference fails and so does restore.
        {
            let mut r = p.record.borrow_mut();
            r.revoked_through = 2;
            r.restore_fails = Some(REVOKED.to_string());
        }
        let a = http(&p, "GET", "http://api.example.org/four", &[("authorization", &auth)], Vec::new()).await;
        assert_eq!((a.status, a.error()), (403, REVOKED.to_string()));
        assert_eq!(p.record.borrow().restores, 3);
        assert_eq!(p.record.borrow().requests.len(), 3, "nothing reached a revoked remote");
    });
}

#[test]
fn a_megabyte_posted_through_the_proxy_streams_both_ways() {
    run(async |p| {
        p.open_session("sess-1").await;
        let token = granted(&p, "gc_web").await;
        let body: Vec<u8> = (0..(3 << 19) + 17).map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let auth = bearer(&token);
        let headers = [("proxy-authorization", auth.as_str()), ("authorization", "Basic dXNlcjpwdw=="), ("content-type", "application/octet-stream")];
        let a = http(&p, "POST", "http://api.example.org:8080/echo?x", &headers, body.clone()).await;
        assert_eq!(a.status, 201, "{}", a.text());
        assert_eq!(a.headers.get("content-length").unwrap().to_str().unwrap(), body.len().to_string());
        assert!(a.body == body, "the remote's streamed answer arrives whole ({} of {} bytes)", a.body.len(), body.len());
        let r = p.record.borrow();
        let seen = &r.requests[0];
        assert_eq!((seen.method.as_str(), seen.path.as_str()), ("POST", "/echo?x"));
        assert_eq!(seen.body_kind, format!("streamed({})", body.len()));
        assert!(seen.body == body, "the remote got the whole body ({} bytes)", seen.body.len());
        assert_eq!(seen.header("host").as_deref(), Some("api.example.org:8080"));
        assert_eq!(seen.header("authorization").as_deref(), Some("Basic dXNlcjpwdw=="), "the app's own Authorization passes");
        assert_eq!(seen.header("proxy-authorization"), None);
        assert_eq!(seen.header("content-length"), None, "the body union carries the length");
    });
}

#[test]
fn the_proxy_refuses_what_a_grain_cannot_do() {
    run(async |p| {
        p.open_session("sess-1").await;
        let a = http(&p, "GET", "http://example.org/", &[], Vec::new()).await;
        assert_eq!(a.status, 407);
        assert!(a.error().contains("this grain has no network access") && a.error().contains("Bearer gs_"), "{}", a.error());
        assert!(a.headers.get("proxy-authenticate").is_some());

        let a = http(&p, "CONNECT", "example.org:443", &[("host", "example.org:443")], Vec::new()).await;
        assert_eq!(a.status, 405);
        assert!(a.error().contains("use http:// URLs through the proxy; the platform makes the TLS connection"), "{}", a.error());

        let a = http(&p, "GET", "https://example.org/", &[], Vec::new()).await;
        assert_eq!(a.status, 400);
        assert!(a.error().starts_with("use http:// URLs"), "{}", a.error());

        let a = http(&p, "GET", "http://example.org/", &[("authorization", "Bearer gs_@@@")], Vec::new()).await;
        assert_eq!(a.status, 400);

        // A token this grain does not own fails like an unknown one.
        let stranger = bearer(&encode_token(&[9; 32]));
        let a = http(&p, "GET", "http://example.org/", &[("authorization", &stranger)], Vec::new()).await;
        assert_eq!((a.status, a.error().as_str()), (403, "no such token"));

        // The API's own address in absolute form (an app sending everything through
        // HTTP_PROXY) is the API, not the proxy.
        let own = format!("http://127.0.0.1:{}/claim", p.api.port());
        let a = http(&p, "POST", &own, &[], json!({"sessionId": "nope", "claimToken": "gc_web"}).to_string().into_bytes()).await;
        assert_eq!(a.status, 404, "{}", a.text());
        assert!(p.record.borrow().requests.is_empty());
    });
}

#[test]
fn a_body_refused_before_it_is_read_gets_its_413_not_a_reset() {
    // An app that sends a whole body before reading the answer (most HTTP clients do) must get
    // the bridge's 413: closing with 16 MiB unread used to reset the connection under it.
    run(|p| async move {
        use futures::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = Async::<TcpStream>::connect(p.api).await.unwrap();
        let len = 16usize << 20;
        let head = format!("POST /stay-awake HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n");
        tcp.write_all(head.as_bytes()).await.unwrap();
        let chunk = vec![b' '; 64 << 10];
        let mut sent = 0;
        while sent < len {
            if let Err(e) = tcp.write_all(&chunk).await {
                panic!("the connection broke after {sent} bytes of the body, before its answer could be read: {e}");
            }
            sent += chunk.len();
        }
        let mut answer = Vec::new();
        tcp.read_to_end(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.to_ascii_lowercase().contains("\r\nconnection: close\r\n"), "the answer says the connection ends: {answer}");
    });
}

#[test]
fn mail_sent_through_a_granted_sender_reaches_it_with_recipients_and_body() {
    run(async |p| {
        p.open_session("sess-1").await;
        let token = granted(&p, "gc_mail").await;
        let auth = bearer(&token);
        let message = b"Subject: hello\r\nTo: a@x.org\r\n\r\nfrom the grain\r\n".to_vec();
        let a = http(&p, "POST", "/mail/send?to=a%40x.org&to=b@y.org&other=1", &[("authorization", &auth)], message.clone()).await;
        assert_eq!(a.status, 200, "{}", a.text());
        assert_eq!(a.json(), json!({"messageId": "<m1@relay.test>"}));
        assert_eq!(p.record.borrow().mail, [(vec!["a@x.org".to_string(), "b@y.org".to_string()], message.clone())]);

        let a = http(&p, "POST", "/mail/send", &[("authorization", &auth)], message.clone()).await;
        assert_eq!(a.status, 400);
        assert!(a.error().contains("?to="), "{}", a.error());
        let a = http(&p, "POST", "/mail/send?to=a@x.org", &[], message.clone()).await;
        assert_eq!(a.status, 401);
        let a = http(&p, "GET", "http://api.example.org/", &[("authorization", &auth)], Vec::new()).await;
        assert_eq!(a.status, 400, "a mail capability is no web capability: {}", a.text());
        assert!(a.error().contains("the proxy needs a web (HTTP) capability"), "{}", a.error());
        let a = http(&p, "POST", "/mail/send?to=a@x.org", &[("authorization", &auth)], vec![b'x'; 10 * 1024 * 1024 + 1]).await;
        assert_eq!(a.status, 413);
        assert_eq!(p.record.borrow().mail.len(), 1);
    });
}

#[test]
fn a_dropped_token_is_gone() {
    run(async |p| {
        p.open_session("sess-1").await;
        let token = granted(&p, "gc_web").await;
        let auth = bearer(&token);
        assert_eq!(http(&p, "GET", "http://api.example.org/", &[("authorization", &auth)], Vec::new()).await.status, 200);
        let a = http(&p, "DELETE", &format!("/tokens/{token}"), &[], Vec::new()).await;
        assert_eq!(a.status, 200, "{}", a.text());
        assert_eq!(p.record.borrow().dropped, [decode_token(&token).unwrap()]);
        // The cached capability went with it: the next use restores, and the token is unknown.
        let a = http(&p, "GET", "http://api.example.org/", &[("authorization", &auth)], Vec::new()).await;
        assert_eq!((a.status, a.error().as_str()), (403, "no such token"));
        let a = http(&p, "DELETE", &format!("/tokens/{token}"), &[], Vec::new()).await;
        assert_eq!(a.status, 403);
        assert_eq!(http(&p, "DELETE", "/tokens/not-a-token", &[], Vec::new()).await.status, 400);
    });
}

#[test]
fn delivered_mail_is_one_file_in_new_and_nothing_in_tmp() {
    run(async |p| {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut req = p.main_view.deliver_mail_request();
        let mut m = req.get().init_message();
        m.set_envelope_from("bob@example.org");
        m.reborrow().init_envelope_to(1).set(0, "grain@example.org");
        m.set_data(&data);
        req.send().promise.await.unwrap();
        let root = p.bridge.config.maildir.clone();
        let new: Vec<_> = std::fs::read_dir(root.join("new")).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(new.len(), 1, "{new:?}");
        assert!(std::fs::read(&new[0]).unwrap() == data, "the file holds the message bytes");
        let name = new[0].file_name().unwrap().to_str().unwrap().to_string();
        assert!(name.ends_with(".granary") && name.contains(&format!(".{}_", std::process::id())), "{name}");
        assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 0);
    });
}

#[test]
fn a_chunked_upload_of_unknown_length_is_streamed_to_the_remote() {
    use futures::{AsyncReadExt, AsyncWriteExt};
    run(async |p| {
        p.open_session("sess-1").await;
        let token = granted(&p, "gc_web").await;
        let mut tcp = Async::<TcpStream>::connect(p.api).await.unwrap();
        let head = format!(
            "POST http://api.example.org/echo HTTP/1.1\r\nHost: api.example.org\r\nAuthorization: Bearer {token}\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        let mut sent = Vec::new();
        for i in 0..40u8 {
            let chunk = vec![i; 5000];
            tcp.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await.unwrap();
            tcp.write_all(&chunk).await.unwrap();
            tcp.write_all(b"\r\n").await.unwrap();
            sent.extend_from_slice(&chunk);
        }
        tcp.write_all(b"0\r\n\r\n").await.unwrap();
        let mut answer = Vec::new();
        tcp.read_to_end(&mut answer).await.unwrap();
        let split = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&answer[..split]).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 201"), "{head}");
        assert!(head.contains(&format!("content-length: {}", sent.len())), "{head}");
        assert!(answer[split + 4..] == sent[..], "the echo came back whole");
        let r = p.record.borrow();
        assert_eq!(r.requests[0].body_kind, format!("streamed({})", u64::MAX), "unknown length");
        assert!(r.requests[0].body == sent);
    });
}

#[test]
fn a_streamed_request_through_a_revoked_capability_is_not_retried_but_the_next_request_restores() {
    run(async |p| {
        p.open_session("sess-1").await;
        let token = granted(&p, "gc_web").await;
        let auth = bearer(&token);
        assert_eq!(http(&p, "GET", "http://api.example.org/", &[("authorization", &auth)], Vec::new()).await.status, 200);
        p.record.borrow_mut().revoked_through = 1;
        let a = http(&p, "POST", "http://api.example.org/echo", &[("authorization", &auth)], vec![7; 200_000]).await;
        assert_eq!((a.status, a.error()), (403, REVOKED.to_string()));
        assert_eq!(p.record.borrow().restores, 1, "a spent streamed body is not sent again");
        let a = http(&p, "GET", "http://api.example.org/again", &[("authorization", &auth)], Vec::new()).await;
        assert_eq!(a.status, 200);
        assert_eq!(p.record.borrow().restores, 2, "the revoked reference was forgotten");
    });
}

#[test]
fn a_remote_body_cut_short_cuts_the_apps_connection() {
    use futures::{AsyncReadExt, AsyncWriteExt};
    run(async |p| {
        p.open_session("sess-1").await;
        let token = granted(&p, "gc_web").await;
        let mut tcp = Async::<TcpStream>::connect(p.api).await.unwrap();
        let req = format!("GET http://api.example.org/cut HTTP/1.1\r\nHost: api.example.org\r\nAuthorization: Bearer {token}\r\n\r\n");
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = tcp.read_to_end(&mut answer).await; // ends when the bridge drops the connection
        let split = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&answer[..split]).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200") && head.contains("content-length: 1048576"), "{head}");
        let got = answer.len() - split - 4;
        assert!(got < 1 << 20, "the app sees fewer bytes than declared, never a complete body ({got})");
    });
}

#[test]
fn fulfil_asks_the_sessions_context_for_a_web_api_below_a_prefix() {
    use common::platform::Fulfilled;
    use capnp::traits::HasTypeId;
    run(async |p| {
        p.open_session("sess-1").await;
        let post = |body: Value| http(&p, "POST", "/fulfill", &[("content-type", "application/json")], body.to_string().into_bytes());
        let a = post(json!({"sessionId": "sess-1", "api": "notes", "pathPrefix": "/api/notes/3/", "title": "buy milk", "verbPhrase": "may read one note"})).await;
        assert_eq!((a.status, a.json()), (200, json!({})), "{}", a.text());
        let want = Fulfilled {
            cap_is_null: true,
            tags: vec![<granary_schema::web_session_capnp::web_session::Client as HasTypeId>::TYPE_ID],
            api_name: "notes".into(),
            path_prefix: Some("/api/notes/3/".into()),
            origin_is_null: true,
            title: "buy milk".into(),
            verb_phrase: "may read one note".into(),
        };
        assert_eq!(p.record.borrow().fulfilled, [want]);
        // Without a prefix the platform grants the declared one: the field stays null.
        let a = post(json!({"sessionId": "sess-1", "api": "notes"})).await;
        assert_eq!(a.status, 200, "{}", a.text());
        assert_eq!(p.record.borrow().fulfilled[1].path_prefix, None);

        // What the platform refuses is 403 with its words; a wrong session or body says what to send.
        let a = post(json!({"sessionId": "sess-1", "api": "refused"})).await;
        assert_eq!(a.status, 403);
        assert!(a.error().contains("not opened as a powerbox chooser"), "{}", a.error());
        let a = post(json!({"sessionId": "sess-9", "api": "notes"})).await;
        assert_eq!(a.status, 404);
        assert!(a.error().contains("no open session `sess-9`") && a.error().contains("chooser page"), "{}", a.error());
        for (body, want) in [(json!({"sessionId": "sess-1"}), "`api` is missing"), (json!({"api": "notes"}), "`sessionId` is missing"), (json!({"sessionId": "sess-1", "api": 3}), "`api` must be a string")] {
            let a = post(body).await;
            assert_eq!(a.status, 400);
            assert!(a.error().contains(want), "{}", a.error());
        }
        assert_eq!(p.record.borrow().fulfilled.len(), 3, "refused bodies never reach the platform");

        // A raw interface: the app's own packed descriptor passes as is.
        use base64::Engine;
        let mut m = capnp::message::Builder::new_default();
        m.init_root::<granary_schema::powerbox_capnp::powerbox_descriptor::Builder>().init_tags(1).get(0).set_id(0xa238_4a22_bc95_e238);
        let mut packed = Vec::new();
        capnp::serialize_packed::write_message(&mut packed, &m).unwrap();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&packed);
        let a = post(json!({"sessionId": "sess-1", "descriptor": b64, "title": "the kitchen tally"})).await;
        assert_eq!(a.status, 200, "{}", a.text());
        let got = p.record.borrow().fulfilled[3].clone();
        assert_eq!((got.tags, got.cap_is_null, got.title.as_str()), (vec![0xa238_4a22_bc95_e238], true, "the kitchen tally"));
        for (body, want) in [
            (json!({"sessionId": "sess-1", "descriptor": b64, "api": "notes"}), "not both"),
            (json!({"sessionId": "sess-1", "descriptor": "!!not base64"}), "not base64url of a packed PowerboxDescriptor"),
            (json!({"sessionId": "sess-1", "descriptor": "AAAA"}), "not base64url of a packed PowerboxDescriptor"),
            (json!({"sessionId": "sess-1", "descriptor": "A".repeat(20_000)}), "larger than 8192 bytes"),
        ] {
            let a = post(body).await;
            assert_eq!(a.status, 400, "{}", a.text());
            assert!(a.error().contains(want), "{want}: {}", a.error());
        }
        assert_eq!(p.record.borrow().fulfilled.len(), 4);
    });
}

#[test]
fn an_offer_asks_the_sessions_context_to_offer_the_grains_own_web_api() {
    use capnp::traits::HasTypeId;
    run(async |p| {
        p.open_session("sess-1").await;
        let post = |body: Value| http(&p, "POST", "/offer", &[("content-type", "application/json")], body.to_string().into_bytes());
        let a = post(json!({"sessionId": "sess-1", "title": "Key for a script", "description": "reads the feed"})).await;
        assert_eq!((a.status, a.json()), (200, json!({})), "{}", a.text());
        let web = <granary_schema::web_session_capnp::web_session::Client as HasTypeId>::TYPE_ID;
        assert_eq!(p.record.borrow().offered, [(true, vec![web], true, "Key for a script".to_string(), "reads the feed".to_string())]);
        let a = post(json!({"sessionId": "sess-2"})).await;
        assert_eq!(a.status, 404);
        assert!(a.error().contains("no open session `sess-2`"), "{}", a.error());
        let a = post(json!({"title": "x"})).await;
        assert_eq!(a.status, 400);
        assert!(a.error().contains("`sessionId` is missing"), "{}", a.error());
        assert_eq!(p.record.borrow().offered.len(), 1);
    });
}

/// A session with a `gc_web` grant, and one kept-alive proxy connection over `io(tcp)`: the
/// request sender and the Proxy-Authorization value.
async fn kept_alive_proxy_client<IO>(p: &Platform, io: impl FnOnce(Async<TcpStream>) -> IO) -> (hyper::client::conn::http1::SendRequest<Full<Bytes>>, String)
where
    IO: futures::AsyncRead + futures::AsyncWrite + Unpin + 'static,
{
    p.open_session("sess-1").await;
    let token = granted(p, "gc_web").await;
    let tcp = Async::<TcpStream>::connect(p.api).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(FuturesIo::new(io(tcp))).await.unwrap();
    p.ex.spawn(async move {
        let _ = conn.await;
    })
    .detach();
    (sender, bearer(&token))
}

#[test]
fn streamed_answers_on_a_kept_alive_proxy_connection_are_not_held_back_by_nagle() {
    // A streamed answer leaves as its head and then its body: without TCP_NODELAY on the app's
    // connection the body waited for the app's delayed ACK (40 ms or more) on every request
    // after the first few. An inline answer leaves in one write: the yardstick.
    run(async |p| {
        let (mut sender, auth) = kept_alive_proxy_client(&p, |tcp| tcp).await;
        let (mut streamed, mut inline) = (Vec::new(), Vec::new());
        for i in 0..10 {
            for (method, path) in [("POST", "/echo"), ("GET", "/inline")] {
                sender.ready().await.unwrap();
                let t = std::time::Instant::now();
                let req = Request::builder().method(method).uri(format!("http://api.example.org{path}")).header("host", "api.example.org").header("proxy-authorization", auth.as_str());
                let resp = sender.send_request(req.body(Full::new(Bytes::from(format!("small body {i}")))).unwrap()).await.unwrap();
                let status = resp.status();
                let body = resp.into_body().collect().await.unwrap().to_bytes();
                if method == "POST" {
                    streamed.push(t.elapsed());
                    assert_eq!((status.as_u16(), &body[..]), (201, format!("small body {i}").as_bytes()));
                } else {
                    inline.push(t.elapsed());
                    assert_eq!((status.as_u16(), &body[..]), (200, &b"remote saw GET /inline"[..]));
                }
            }
        }
        streamed.sort();
        inline.sort();
        let (s, i) = (streamed[streamed.len() / 2], inline[inline.len() / 2]);
        assert!(s < i + std::time::Duration::from_millis(30), "median exchange {s:?} streamed against {i:?} inline (streamed: {streamed:?})");
    });
}

/// A client connection that writes a request's head and its body apart, with Nagle's
/// algorithm on, as Python's `http.client` (under `urllib` and `requests`) always does.
struct HeadThenBody(Async<TcpStream>);

impl futures::AsyncRead for HeadThenBody {
    fn poll_read(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>, buf: &mut [u8]) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl futures::AsyncWrite for HeadThenBody {
    fn poll_write(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>, buf: &[u8]) -> std::task::Poll<std::io::Result<usize>> {
        // Up to the end of the head if a body follows it in the same buffer; hyper then writes
        // the rest with another call.
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4).filter(|&e| e < buf.len()).unwrap_or(buf.len());
        std::pin::Pin::new(&mut self.0).poll_write(cx, &buf[..end])
    }
    fn poll_flush(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_close(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_close(cx)
    }
}

#[test]
fn a_client_that_writes_its_head_and_body_apart_is_not_held_back_by_the_bridges_delayed_ack() {
    // With Nagle's algorithm on, the body waits until the head is acknowledged, and once a
    // kept-alive connection goes back and forth Linux delays that ACK by 40 ms: every POST
    // after the first few took that long, unless the bridge asks for quick ACKs.
    run(async |p| {
        let (mut sender, auth) = kept_alive_proxy_client(&p, HeadThenBody).await;
        let mut took = Vec::new();
        for i in 0..12 {
            sender.ready().await.unwrap();
            let t = std::time::Instant::now();
            let req = Request::builder().method("POST").uri("http://api.example.org/echo").header("host", "api.example.org").header("proxy-authorization", auth.as_str());
            let resp = sender.send_request(req.body(Full::new(Bytes::from(format!("body {i}")))).unwrap()).await.unwrap();
            let status = resp.status();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!((status.as_u16(), &body[..]), (201, format!("body {i}").as_bytes()));
            took.push(t.elapsed());
        }
        took.sort();
        assert!(took[took.len() / 2] < std::time::Duration::from_millis(25), "median exchange {:?} (all: {took:?})", took[took.len() / 2]);
    });
}
