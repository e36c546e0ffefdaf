//! What one Cap'n Proto hop of the grain HTTP path costs in CPU, against the same exchange as
//! plain bytes on the same transport (`cargo bench -p granary-schema --bench hop`;
//! BENCHMARKS.md, "Grain HTTP path vs direct").
//!
//! Two threads joined by Unix sockets, each with its own executor on async-io, as the server
//! and the bridge are. The Cap'n Proto run makes `WebSession.request` calls shaped like the
//! gateway's for a 1 KiB GET (a dozen request headers, a `responseBody` capability) over one
//! connection, `BENCH_CONNECTIONS` (8) in flight, answered at once with an inline 1 KiB body
//! and five headers. The baseline moves messages of the same sizes over as many socket pairs,
//! one exchange in flight on each: the system calls and wake-ups any hop pays. Each thread
//! reads its own CPU time; the difference per exchange is what Cap'n Proto RPC adds.

use std::cell::Cell;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

use async_executor::LocalExecutor;
use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::RpcSystem;
use futures::{AsyncReadExt, AsyncWriteExt};
use granary_schema::socket::Socket;
use granary_schema::util_capnp::byte_stream;
use granary_schema::web_session_capnp::web_session;

const REQUEST_BYTES: usize = 320;
const RESPONSE_BYTES: usize = 1352;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// CPU time (user + system) of the calling thread so far.
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let f: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// Runs `side` on its own thread with its own executor until `stop`; returns its CPU time.
fn on_thread<F, Fut>(side: F) -> std::thread::JoinHandle<Duration>
where
    F: FnOnce(Rc<LocalExecutor<'static>>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    std::thread::spawn(move || {
        let ex = Rc::new(LocalExecutor::new());
        let start = thread_cpu();
        async_io::block_on(ex.run(side(ex.clone())));
        thread_cpu() - start
    })
}

struct Answer;

impl web_session::Server for Answer {
    async fn request(self: capnp::capability::Rc<Self>, params: web_session::RequestParams, mut results: web_session::RequestResults) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let _sink = p.get_response_body()?;
        let request = p.get_request()?;
        let mut n = request.get_path()?.len();
        for h in request.get_headers()? {
            n += h.get_name()?.len() + h.get_value()?.len();
        }
        assert!(n > 0);
        let mut r = results.get().init_response();
        r.set_status(200);
        let mut headers = r.reborrow().init_headers(5);
        for (i, (name, value)) in [("content-type", "application/octet-stream"), ("cache-control", "no-store"), ("etag", "\"abc\""), ("date", "Sun, 29 Nov 2026 19:00:00 GMT"), ("x-app", "echo")].into_iter().enumerate() {
            let mut h = headers.reborrow().get(i as u32);
            h.set_name(name);
            h.set_value(value.as_bytes());
        }
        r.init_body().set_inline(&[7u8; 1024]);
        Ok(())
    }
}

struct NullSink;
impl byte_stream::Server for NullSink {}

const HEADERS: [(&str, &str); 12] = [
    ("host", "gkcc590kzhvr2xq858sypurz.granary.localhost:6080"),
    ("user-agent", "wrk"),
    ("accept", "*/*"),
    ("accept-language", "en"),
    ("accept-encoding", "gzip"),
    ("referer", "http://granary.localhost:6080/grain/abc"),
    ("sec-fetch-site", "same-origin"),
    ("sec-fetch-mode", "cors"),
    ("sec-fetch-dest", "empty"),
    ("x-requested-with", "XMLHttpRequest"),
    ("x-custom", "1"),
    ("dnt", "1"),
];

/// `WebSession.request` calls over one connection, `inflight` at a time, for `secs`.
fn capnp_run(inflight: usize, secs: u64) -> (u64, Duration, Duration) {
    let (a, b) = UnixStream::pair().unwrap();
    let server = on_thread(move |_ex| async move {
        let (r, w) = Socket::new(b).unwrap().split();
        let client: web_session::Client = capnp_rpc::new_client(Answer);
        let network = granary_schema::vat_network(r, w, Side::Server);
        let _ = RpcSystem::new(Box::new(network), Some(client.client)).await;
    });
    let done = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = done.clone();
    let client = on_thread(move |ex| async move {
        let (r, w) = Socket::new(a).unwrap().split();
        let network = granary_schema::vat_network(r, w, Side::Client);
        let mut rpc = RpcSystem::new(Box::new(network), None);
        let session: web_session::Client = rpc.bootstrap(Side::Server);
        let rpc_task = ex.spawn(rpc);
        let deadline = Instant::now() + Duration::from_secs(secs);
        let calls = Rc::new(Cell::new(0u64));
        let workers: Vec<_> = (0..inflight)
            .map(|_| {
                let (session, calls) = (session.clone(), calls.clone());
                ex.spawn(async move {
                    while Instant::now() < deadline {
                        let mut req = session.request_request();
                        let mut p = req.get();
                        let mut r = p.reborrow().init_request();
                        r.set_method("GET");
                        r.set_path("/download?bytes=1024");
                        let mut headers = r.reborrow().init_headers(HEADERS.len() as u32);
                        for (i, (name, value)) in HEADERS.iter().enumerate() {
                            let mut h = headers.reborrow().get(i as u32);
                            h.set_name(name);
                            h.set_value(value.as_bytes());
                        }
                        r.init_body().set_none(());
                        p.set_response_body(capnp_rpc::new_client(NullSink));
                        let reply = req.send().promise.await.unwrap();
                        let response = reply.get().unwrap().get_response().unwrap();
                        assert_eq!(response.get_status(), 200);
                        calls.set(calls.get() + 1);
                    }
                })
            })
            .collect();
        for w in workers {
            w.await;
        }
        count.store(calls.get(), std::sync::atomic::Ordering::SeqCst);
        drop(session);
        drop(rpc_task);
    });
    let client_cpu = client.join().unwrap();
    let server_cpu = server.join().unwrap();
    (done.load(std::sync::atomic::Ordering::SeqCst), client_cpu, server_cpu)
}

/// The same sizes as plain bytes over `pairs` socket pairs, one exchange in flight on each.
fn raw_run(pairs: usize, secs: u64) -> (u64, Duration, Duration) {
    let (ours, theirs): (Vec<_>, Vec<_>) = (0..pairs).map(|_| UnixStream::pair().unwrap()).unzip();
    let server = on_thread(move |ex| async move {
        let tasks: Vec<_> = theirs
            .into_iter()
            .map(|s| {
                ex.spawn(async move {
                    let mut s = Socket::new(s).unwrap();
                    let (mut req, resp) = ([0u8; REQUEST_BYTES], [7u8; RESPONSE_BYTES]);
                    while s.read_exact(&mut req).await.is_ok() {
                        if s.write_all(&resp).await.is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
    });
    let done = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = done.clone();
    let client = on_thread(move |ex| async move {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let tasks: Vec<_> = ours
            .into_iter()
            .map(|s| {
                ex.spawn(async move {
                    let mut s = Socket::new(s).unwrap();
                    let (req, mut resp) = ([1u8; REQUEST_BYTES], [0u8; RESPONSE_BYTES]);
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        s.write_all(&req).await.unwrap();
                        s.read_exact(&mut resp).await.unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let mut total = 0;
        for t in tasks {
            total += t.await;
        }
        count.store(total, std::sync::atomic::Ordering::SeqCst);
    });
    let client_cpu = client.join().unwrap();
    let server_cpu = server.join().unwrap();
    (done.load(std::sync::atomic::Ordering::SeqCst), client_cpu, server_cpu)
}

fn main() {
    // `cargo bench` passes `--bench`. Without it (`cargo test`, which builds this target so
    // that it cannot rot) one short run checks that both exchanges work.
    let secs = if std::env::args().any(|a| a == "--bench") { env_or("BENCH_SECONDS", 5) as u64 } else { 1 };
    let inflight = env_or("BENCH_CONNECTIONS", 8);
    let us = |cpu: Duration, n: u64| cpu.as_secs_f64() * 1e6 / n as f64;
    let (rn, rc, rs) = raw_run(inflight, secs);
    let (cn, cc, cs) = capnp_run(inflight, secs);
    assert!(rn > 0 && cn > 0, "no exchange completed");
    println!("| Exchange ({inflight} in flight, {secs} s) | per second | CPU per exchange: caller | callee |");
    println!("|---|---|---|---|");
    println!("| {REQUEST_BYTES} B / {RESPONSE_BYTES} B as plain bytes (baseline) | {:.0} | {:.1} µs | {:.1} µs |", rn as f64 / secs as f64, us(rc, rn), us(rs, rn));
    println!("| `WebSession.request`, inline 1 KiB answer | {:.0} | {:.1} µs | {:.1} µs |", cn as f64 / secs as f64, us(cc, cn), us(cs, cn));
    println!("| Cap'n Proto RPC adds | | {:+.1} µs | {:+.1} µs |", us(cc, cn) - us(rc, rn), us(cs, cn) - us(rs, rn));
}
