//! The HTTP driver's silence timeout, with a short limit: an origin that never answers gets
//! 504, while an upload that lasts longer than the limit but keeps flowing is not cut off.

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, TcpListener};
use std::rc::Rc;
use std::time::{Duration, Instant};

use std::os::unix::net::UnixStream;

use async_executor::LocalExecutor;
use async_io::Async;
use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::{twoparty, RpcSystem};
use futures::AsyncReadExt;
use granary_schema::util_capnp::byte_stream;
use granary_schema::web_session_capnp::web_session;

use super::{parse_origin, HttpDriver};
use crate::drivers::ssrf::NetPolicy;

const LIMIT: Duration = Duration::from_millis(300);

/// An origin on its own thread: reads the head and a Content-Length body, then answers 201 —
/// except for `/silent`, which it never answers.
fn start_origin() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut r = BufReader::new(stream.unwrap());
            std::thread::spawn(move || {
                let (mut head, mut line) = (String::new(), String::new());
                while r.read_line(&mut line).unwrap() > 2 {
                    head.push_str(&line);
                    line.clear();
                }
                if head.starts_with("POST /silent") {
                    std::thread::sleep(Duration::from_secs(5));
                    return;
                }
                let len = head.lines().find_map(|l| l.strip_prefix("content-length: ")).map_or(0, |n| n.parse().unwrap());
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                r.get_mut().write_all(format!("HTTP/1.1 201 Created\r\ncontent-length: {}\r\n\r\n", len.to_string().len()).as_bytes()).unwrap();
                r.get_mut().write_all(len.to_string().as_bytes()).unwrap();
            });
        }
    });
    port
}

struct Sink;
impl byte_stream::Server for Sink {}

/// POSTs `chunks` KiB to `path`, one KiB every `gap`; the status, and how long it took.
async fn upload(s: &web_session::Client, path: &str, chunks: usize, gap: Duration) -> (u16, Duration) {
    let start = Instant::now();
    let mut req = s.request_request();
    req.get().set_response_body(capnp_rpc::new_client(Sink));
    let mut r = req.get().init_request();
    r.set_method("POST");
    r.set_path(path);
    r.init_body().set_streamed(chunks as u64 * 1024);
    let promise = req.send();
    let sink = promise.pipeline.get_request_body();
    for _ in 0..chunks {
        let mut w = sink.write_request();
        w.get().set_data(&[b'x'; 1024]);
        if w.send().await.is_err() {
            break;
        }
        async_io::Timer::after(gap).await;
    }
    let _ = sink.done_request().send().promise.await;
    let resp = promise.promise.await.unwrap();
    (resp.get().unwrap().get_response().unwrap().get_status(), start.elapsed())
}

fn driver(port: u16, ex: &Rc<LocalExecutor<'static>>) -> web_session::Client {
    let mut policy = NetPolicy::default();
    policy.resolve_override.insert("api.test".into(), vec![IpAddr::from([127, 0, 0, 1])]);
    policy.allow_private_hosts.insert("api.test".into());
    let driver: web_session::Client = capnp_rpc::new_client(HttpDriver {
        origin: parse_origin(&format!("http://api.test:{port}")).unwrap(),
        path_prefix: String::new(),
        policy: Rc::new(RefCell::new(policy)),
        executor: ex.clone(),
        head_timeout: LIMIT,
    });
    // Over two-party RPC, as a grain reaches it: a local call only resolves its pipeline when
    // it returns, so the request body could not flow before the response.
    let (a, b) = UnixStream::pair().unwrap();
    let (ar, aw) = Async::new(a).unwrap().split();
    let (br, bw) = Async::new(b).unwrap().split();
    let server = twoparty::VatNetwork::new(ar, aw, Side::Server, Default::default());
    ex.spawn(RpcSystem::new(Box::new(server), Some(driver.client))).detach();
    let mut client = RpcSystem::new(Box::new(twoparty::VatNetwork::new(br, bw, Side::Client, Default::default())), None);
    let session = client.bootstrap(Side::Server);
    ex.spawn(client).detach();
    session
}

#[test]
fn a_silent_origin_times_out_but_a_flowing_upload_does_not() {
    let port = start_origin();
    let ex = Rc::new(LocalExecutor::new());
    let ex2 = ex.clone();
    async_io::block_on(ex.run(async move {
        let s = driver(port, &ex2);
        let (status, took) = upload(&s, "/slow", 12, Duration::from_millis(100)).await;
        assert_eq!(status, 201, "an upload lasting {took:?} (> {LIMIT:?}) that keeps flowing completes");
        assert!(took > LIMIT * 3, "{took:?}");
        let (status, took) = upload(&s, "/silent", 1, Duration::ZERO).await;
        assert_eq!(status, 504);
        assert!(took >= LIMIT && took < Duration::from_secs(3), "{took:?}");
    }));
}
