//! The HTTP driver against a real HTTP server on 127.0.0.1, reached as `http://api.test:PORT`
//! through `--resolve`-style overrides, with the driver served over two-party Cap'n Proto on
//! a socketpair exactly as a grain would reach it.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::{IpAddr, TcpListener};
use std::os::unix::net::UnixStream;
use std::rc::Rc;

use async_executor::LocalExecutor;
use async_io::Async;
use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::{twoparty, RpcSystem};
use futures::channel::oneshot;
use futures::AsyncReadExt;
use granary_powerbox::drivers::http::{http_session, parse_origin};
use granary_powerbox::drivers::ssrf::NetPolicy;
use granary_schema::util_capnp::byte_stream;
use granary_schema::web_session_capnp::{response, web_session};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use futures_rustls::TlsAcceptor;
use smol_hyper::rt::FuturesIo;

/// What the test origin saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// The origin (over TLS if `tls` is given): `/v1/big` answers 1.5 MiB; anything else echoes
/// the body back with status 201 and an `x-echo-method` header; every request is recorded.
fn start_origin(ex: &Rc<LocalExecutor<'static>>, tls: Option<TlsAcceptor>) -> (u16, Rc<RefCell<Vec<Seen>>>) {
    let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap();
    let port = listener.get_ref().local_addr().unwrap().port();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let (ex2, seen2) = (ex.clone(), seen.clone());
    ex.spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (seen, tls) = (seen2.clone(), tls.clone());
            ex2.spawn(async move {
                match tls {
                    None => serve(stream, seen).await,
                    // A failed handshake (the driver refusing the certificate) ends the connection.
                    Some(acceptor) => {
                        if let Ok(t) = acceptor.accept(stream).await {
                            serve(t, seen).await
                        }
                    }
                }
            })
            .detach();
        }
    })
    .detach();
    (port, seen)
}

async fn serve<T: futures::AsyncRead + futures::AsyncWrite + Unpin + 'static>(io: T, seen: Rc<RefCell<Vec<Seen>>>) {
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let seen = seen.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await?.to_bytes().to_vec();
            let headers = parts.headers.iter().map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect();
            let path = parts.uri.to_string();
            seen.borrow_mut().push(Seen { method: parts.method.to_string(), path: path.clone(), headers, body: body.clone() });
            let resp = if path == "/v1/big" {
                hyper::Response::builder().header("x-test", "yes").header("set-cookie", "a=1").header("set-cookie", "b=2")
                    .header("connection", "x-hop").header("x-hop", "1")
                    .body(Full::new(Bytes::from(pattern(3 << 19)))).unwrap()
            } else {
                hyper::Response::builder().status(201).header("x-echo-method", parts.method.as_str()).body(Full::new(Bytes::from(body))).unwrap()
            };
            Ok::<_, hyper::Error>(resp)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new().serve_connection(FuturesIo::new(io), service).await;
}

/// Runs `test` with an origin and a driver for `origin` + `/v1` served over two-party RPC.
fn run<Fut: Future<Output = ()>>(origin: impl FnOnce(u16) -> String, policy: impl FnOnce(&mut NetPolicy), test: impl FnOnce(web_session::Client, Rc<RefCell<Vec<Seen>>>, u16) -> Fut) {
    run_with_tls(None, origin, policy, test)
}

fn run_with_tls<Fut: Future<Output = ()>>(
    tls: Option<TlsAcceptor>,
    origin: impl FnOnce(u16) -> String,
    policy: impl FnOnce(&mut NetPolicy),
    test: impl FnOnce(web_session::Client, Rc<RefCell<Vec<Seen>>>, u16) -> Fut,
) {
    let ex = Rc::new(LocalExecutor::new());
    let ex2 = ex.clone();
    async_io::block_on(ex.run(async move {
        let (port, seen) = start_origin(&ex2, tls);
        let mut p = NetPolicy::default();
        policy(&mut p);
        let driver = http_session(parse_origin(&origin(port)).unwrap(), "/v1".into(), Rc::new(RefCell::new(p)), ex2.clone());
        let (a, b) = UnixStream::pair().unwrap();
        let (ar, aw) = Async::new(a).unwrap().split();
        let (br, bw) = Async::new(b).unwrap().split();
        let server_net = twoparty::VatNetwork::new(ar, aw, Side::Server, Default::default());
        ex2.spawn(RpcSystem::new(Box::new(server_net), Some(driver.client))).detach();
        let mut client = RpcSystem::new(Box::new(twoparty::VatNetwork::new(br, bw, Side::Client, Default::default())), None);
        let session: web_session::Client = client.bootstrap(Side::Server);
        ex2.spawn(client).detach();
        test(session, seen, port).await;
    }));
}

fn api_test(p: &mut NetPolicy) {
    p.resolve_override.insert("api.test".into(), vec![IpAddr::from([127, 0, 0, 1])]);
    p.allow_private_hosts.insert("api.test".into());
}

struct Collector {
    kept: Rc<RefCell<Vec<u8>>>,
    done: Rc<Cell<bool>>,
    ended: RefCell<Option<oneshot::Sender<()>>>,
}

impl byte_stream::Server for Collector {
    async fn write(self: capnp::capability::Rc<Self>, params: byte_stream::WriteParams) -> Result<(), capnp::Error> {
        let data = params.get()?.get_data()?;
        assert!(data.len() <= 64 * 1024);
        self.kept.borrow_mut().extend_from_slice(data);
        Ok(())
    }
    async fn done(self: capnp::capability::Rc<Self>, _: byte_stream::DoneParams, _: byte_stream::DoneResults) -> Result<(), capnp::Error> {
        self.done.set(true);
        self.ended.borrow_mut().take();
        Ok(())
    }
}

enum Body<'a> {
    None,
    Inline(&'a [u8]),
    /// Streamed in 64 KiB writes; `known`: the length is declared.
    Streamed(&'a [u8], bool),
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    kind: &'static str,
    completed: bool,
}

impl Reply {
    fn all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn call(s: &web_session::Client, method: &str, path: &str, headers: &[(&str, &str)], body: Body<'_>) -> Reply {
    let (kept, done) = (Rc::new(RefCell::new(Vec::new())), Rc::new(Cell::new(false)));
    let (tx, rx) = oneshot::channel();
    let mut req = s.request_request();
    {
        let mut p = req.get();
        p.set_response_body(capnp_rpc::new_client(Collector { kept: kept.clone(), done: done.clone(), ended: RefCell::new(Some(tx)) }));
        let mut r = p.init_request();
        r.set_method(method);
        r.set_path(path);
        let mut list = r.reborrow().init_headers(headers.len() as u32);
        for (i, (n, v)) in headers.iter().enumerate() {
            list.reborrow().get(i as u32).set_name(*n);
            list.reborrow().get(i as u32).set_value(v.as_bytes());
        }
        match &body {
            Body::None => r.init_body().set_none(()),
            Body::Inline(d) => r.init_body().set_inline(d),
            Body::Streamed(d, known) => r.init_body().set_streamed(if *known { d.len() as u64 } else { u64::MAX }),
        }
    }
    let promise = req.send();
    if let Body::Streamed(data, _) = body {
        let sink = promise.pipeline.get_request_body();
        // A refused request has no requestBody: pipelined writes (or, streaming calls being
        // reported late, `done`) fail and the caller stops. Success is checked on what the
        // origin received.
        let mut sent = true;
        for chunk in data.chunks(64 * 1024) {
            let mut w = sink.write_request();
            w.get().set_data(chunk);
            if w.send().await.is_err() {
                sent = false;
                break;
            }
        }
        if sent {
            let _ = sink.done_request().send().promise.await;
        }
    }
    let resp = promise.promise.await.expect("request failed");
    let r: response::Reader = resp.get().unwrap().get_response().unwrap();
    let headers = r.get_headers().unwrap().iter()
        .map(|h| (h.get_name().unwrap().to_string().unwrap(), String::from_utf8_lossy(h.get_value().unwrap()).into_owned()))
        .collect();
    let mut reply = Reply { status: r.get_status(), headers, body: Vec::new(), kind: "none", completed: false };
    match r.get_body().which().unwrap() {
        response::body::None(()) => {}
        response::body::Inline(d) => (reply.kind, reply.body) = ("inline", d.unwrap().to_vec()),
        response::body::Streamed(_) => {
            drop(resp);
            let _ = rx.await;
            (reply.kind, reply.body, reply.completed) = ("streamed", kept.borrow().clone(), done.get());
        }
    }
    reply
}

fn api(port: u16) -> String {
    format!("http://api.test:{port}")
}

#[test]
fn get_reaches_the_origin_with_its_host_and_streams_the_response() {
    run(api, api_test, |s, seen, port| async move {
        let headers = [("X-Custom", "1"), ("Authorization", "Bearer app-secret"), ("Connection", "x-secret"), ("X-Secret", "s"),
            ("Keep-Alive", "5"), ("X-Granary-User-Id", "spoof")];
        let host = format!("API.test:{port}");
        let headers = [&headers[..], &[("Host", host.as_str())]].concat();
        let r = call(&s, "GET", "/big", &headers, Body::None).await;
        assert_eq!((r.status, r.kind, r.completed), (200, "streamed", true));
        assert!(r.body == pattern(3 << 19), "the 1.5 MiB body arrives intact");
        assert_eq!(r.all("x-test"), ["yes"]);
        assert_eq!(r.all("set-cookie"), ["a=1", "b=2"]);
        assert!(r.all("x-hop").is_empty() && r.all("connection").is_empty(), "hop-by-hop response headers are dropped");
        let seen = seen.borrow();
        let req = &seen[0];
        assert_eq!((req.method.as_str(), req.path.as_str()), ("GET", "/v1/big"));
        assert_eq!(req.header("host"), Some(format!("api.test:{port}").as_str()));
        assert_eq!(req.header("x-custom"), Some("1"));
        assert_eq!(req.header("authorization"), Some("Bearer app-secret"));
        for h in ["x-secret", "keep-alive", "x-granary-user-id"] {
            assert_eq!(req.header(h), None, "{h} must not reach the origin");
        }
    });
}

#[test]
fn post_bodies_inline_and_streamed_pass_both_ways() {
    run(api, api_test, |s, seen, _| async move {
        let small = pattern(1000);
        let r = call(&s, "POST", "/echo?x=1", &[], Body::Inline(&small)).await;
        assert_eq!((r.status, r.kind), (201, "inline"));
        assert_eq!(r.body, small);
        assert_eq!(r.all("x-echo-method"), ["POST"]);
        let big = pattern((1 << 20) + 12345);
        for known in [true, false] {
            let r = call(&s, "PUT", "/echo", &[], Body::Streamed(&big, known)).await;
            assert_eq!((r.status, r.kind, r.completed), (201, "streamed", true));
            assert!(r.body == big, "a streamed 1 MiB+ body comes back intact (declared length: {known})");
        }
        let seen = seen.borrow();
        assert_eq!(seen[0].path, "/v1/echo?x=1");
        assert_eq!(seen[0].header("content-length"), Some("1000"));
        assert_eq!(seen[1].header("content-length"), Some(big.len().to_string().as_str()));
        assert_eq!(seen[2].header("transfer-encoding"), Some("chunked"));
        assert!(seen[1].body == big && seen[2].body == big);
    });
}

#[test]
fn an_origin_at_a_private_address_is_refused_unless_allowlisted() {
    let resolve_only = |p: &mut NetPolicy| drop(p.resolve_override.insert("api.test".into(), vec![IpAddr::from([127, 0, 0, 1])]));
    run(api, resolve_only, |s, seen, _| async move {
        let r = call(&s, "GET", "/big", &[], Body::None).await;
        assert_eq!(r.status, 403);
        assert!(r.text().contains("127.0.0.1, a loopback address") && r.text().contains("Admin → Settings"), "{}", r.text());
        let r = call(&s, "POST", "/echo", &[], Body::Streamed(&pattern(100_000), true)).await;
        assert_eq!(r.status, 403);
        assert!(seen.borrow().is_empty(), "the origin never saw a refused request");
    });
}

#[test]
fn paths_escaping_the_prefix_and_other_hosts_are_refused() {
    run(api, api_test, |s, seen, port| async move {
        for path in ["/../admin", "/%2e%2e/admin", "/a/..%2fb", "/.", "/x\\..\\y"] {
            let r = call(&s, "GET", path, &[], Body::None).await;
            assert_eq!(r.status, 400, "{path}");
            assert!(r.text().contains(&format!("reaches only http://api.test:{port}/v1/")), "{}", r.text());
        }
        for host in ["evil.test", "api.test:1", "127.0.0.1"] {
            let r = call(&s, "GET", "/big", &[("host", host)], Body::None).await;
            assert_eq!(r.status, 403, "{host}");
            assert!(r.text().contains(&format!("this capability reaches only http://api.test:{port}")), "{}", r.text());
        }
        assert!(seen.borrow().is_empty(), "the origin never saw a refused request");
    });
}

#[test]
fn an_unresolvable_host_is_a_clear_error() {
    run(|_| "http://no-such-host.invalid".into(), |_| {}, |s, seen, _| async move {
        let r = call(&s, "GET", "/", &[], Body::None).await;
        assert_eq!(r.status, 502);
        assert!(r.text().contains("cannot resolve the host no-such-host.invalid"), "{}", r.text());
        assert!(seen.borrow().is_empty());
    });
}

#[test]
fn a_closed_port_is_a_502_and_websockets_are_refused() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    run(move |_| format!("http://api.test:{closed}"), api_test, |s, _, _| async move {
        let r = call(&s, "GET", "/", &[], Body::None).await;
        assert_eq!(r.status, 502);
        assert!(r.text().contains("cannot connect to 127.0.0.1:"), "{}", r.text());
        let mut ws = s.open_web_socket_request();
        ws.get().init_request().set_path("/");
        let e = ws.send().promise.await.err().expect("openWebSocket must fail");
        assert!(e.to_string().contains("not supported by the HTTP driver"), "{e}");
    });
}


/// A test CA and a certificate for `api.test` signed by it, made with the `openssl` command:
/// (CA certificate DER, acceptor serving the leaf).
fn test_pki() -> (Vec<u8>, TlsAcceptor) {
    use futures_rustls::pki_types::pem::PemObject;
    use futures_rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use futures_rustls::rustls;
    let dir = tempfile::tempdir().unwrap();
    let sh = |script: &str| {
        let out = std::process::Command::new("sh").arg("-ec").arg(script).current_dir(dir.path()).output().unwrap();
        assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
    };
    sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=granary-test-ca 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout leaf.key -out leaf.csr -subj /CN=api.test 2>/dev/null
        printf 'subjectAltName=DNS:api.test\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > ext
        openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out leaf.pem -days 2 -extfile ext 2>/dev/null");
    let ca = CertificateDer::from_pem_file(dir.path().join("ca.pem")).unwrap().to_vec();
    let leaf = CertificateDer::from_pem_file(dir.path().join("leaf.pem")).unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.path().join("leaf.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf], key)
        .unwrap();
    (ca, TlsAcceptor::from(std::sync::Arc::new(config)))
}

#[test]
fn https_origins_are_reached_over_tls_with_the_certificate_checked() {
    let (ca, acceptor) = test_pki();
    let https = |port: u16| format!("https://api.test:{port}");
    let trusting = move |p: &mut NetPolicy| {
        api_test(p);
        p.extra_root_certs.push(ca);
    };
    run_with_tls(Some(acceptor.clone()), https, trusting, |s, seen, port| async move {
        let r = call(&s, "GET", "/big", &[], Body::None).await;
        assert_eq!((r.status, r.kind, r.completed), (200, "streamed", true));
        assert!(r.body == pattern(3 << 19));
        let big = pattern((1 << 20) + 1);
        let r = call(&s, "POST", "/echo", &[], Body::Streamed(&big, true)).await;
        assert_eq!(r.status, 201);
        assert!(r.body == big, "a 1 MiB+ body both ways over TLS");
        assert_eq!(seen.borrow()[0].header("host"), Some(format!("api.test:{port}").as_str()));
    });
    // Without the test CA the certificate is not trusted, and nothing reaches the origin.
    run_with_tls(Some(acceptor), https, api_test, |s, seen, _| async move {
        let r = call(&s, "GET", "/big", &[], Body::None).await;
        assert_eq!(r.status, 502);
        assert!(r.text().contains("the TLS handshake with https://api.test:") && r.text().contains("UnknownIssuer"), "{}", r.text());
        assert!(seen.borrow().is_empty());
    });
}
