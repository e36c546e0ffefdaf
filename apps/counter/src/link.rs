//! The other counter, held: one thread keeps one Cap'n Proto connection to the bridge's local
//! endpoint (127.0.0.1:7871, its bootstrap the grain's `GrainApi`) and the `Counter` restored
//! from the saved token, and runs the page's calls on it one after another.
//!
//! - A call that fails "revoked: …" forgets the held capability and passes the error on (the
//!   next call restores afresh, which the platform refuses while the grant is revoked).
//! - A call that fails `disconnected` while the connection to the bridge still works is sent once
//!   more on the same capability: the platform makes the other grain's object again when that
//!   grain restarted. If it fails so again, or the connection broke (the server or this grain
//!   restarted), the token is restored on a new connection and the call sent once more.

use futures::channel::mpsc;
use futures::future::{select, Either};
use futures::{AsyncReadExt, StreamExt};
use granary_schema::grain_capnp::grain_api;
use granary_schema::sample_capnp::counter;
use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long one call may take, restores included.
const TIMEOUT: Duration = Duration::from_secs(15);

/// What the page asks of the other counter.
#[derive(Clone, Copy, Debug)]
pub enum Op {
    Add(i64),
    Get,
}

/// Its answer: the total, and for `Get` the name.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub total: i64,
    pub name: Option<String>,
}

type Job = (String, Op, std::sync::mpsc::Sender<Result<Answer, String>>);

/// The handle the HTTP threads call through.
pub struct Link {
    jobs: mpsc::UnboundedSender<Job>,
    restores: Arc<AtomicU64>,
}

impl Link {
    /// Starts the thread that talks to the bridge's endpoint at `addr` (`host:port`).
    pub fn start(addr: String) -> Link {
        let (jobs, rx) = mpsc::unbounded();
        let restores = Arc::new(AtomicU64::new(0));
        let count = restores.clone();
        std::thread::spawn(move || {
            let ex = Rc::new(async_executor::LocalExecutor::new());
            let mut worker = Worker { addr, ex: ex.clone(), connection: None, held: None, restores: count };
            async_io::block_on(ex.run(worker.serve(rx)));
        });
        Link { jobs, restores }
    }

    /// Runs `op` on the counter of the saved `token`.
    pub fn call(&self, token: &str, op: Op) -> Result<Answer, String> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.jobs.unbounded_send((token.to_owned(), op, tx)).map_err(|_| "the counter's Cap'n Proto thread stopped; restart the grain".to_owned())?;
        rx.recv_timeout(TIMEOUT + Duration::from_secs(5)).map_err(|_| format!("the other counter did not answer within {} s", TIMEOUT.as_secs()))?
    }

    /// How many times a token was restored (the page shows it; tests check a held capability
    /// outlives a restart of the other grain).
    pub fn restores(&self) -> u64 {
        self.restores.load(Ordering::Relaxed)
    }
}

struct Worker {
    addr: String,
    ex: Rc<async_executor::LocalExecutor<'static>>,
    /// The bridge endpoint's `GrainApi` and whether that connection still runs.
    connection: Option<(grain_api::Client, Rc<Cell<bool>>)>,
    /// The token and the capability restored from it.
    held: Option<(String, counter::Client)>,
    restores: Arc<AtomicU64>,
}

fn is_revoked(e: &capnp::Error) -> bool {
    e.extra.contains("revoked")
}

fn text(e: capnp::Error) -> String {
    crate::remote::platform_message(&e.extra).to_owned()
}

async fn run(c: &counter::Client, op: Op) -> Result<Answer, capnp::Error> {
    match op {
        Op::Add(amount) => crate::remote::add(c.clone(), amount).await.map(|total| Answer { total, name: None }),
        Op::Get => crate::remote::get(c.clone()).await.map(|(total, name)| Answer { total, name: Some(name) }),
    }
}

impl Worker {
    async fn serve(&mut self, mut jobs: mpsc::UnboundedReceiver<Job>) {
        while let Some((token, op, reply)) = jobs.next().await {
            let outcome = match select(Box::pin(self.call(&token, op)), async_io::Timer::after(TIMEOUT)).await {
                Either::Left((answer, _)) => Some(answer),
                Either::Right(_) => None,
            };
            let answer = outcome.unwrap_or_else(|| {
                // Whatever hangs is not used again.
                self.held = None;
                Err(format!("the other counter did not answer within {} s", TIMEOUT.as_secs()))
            });
            let _ = reply.send(answer);
        }
    }

    fn connected(&self) -> bool {
        self.connection.as_ref().is_some_and(|(_, alive)| alive.get())
    }

    /// The endpoint's `GrainApi`, connecting (again) if needed.
    async fn grain_api(&mut self) -> Result<grain_api::Client, String> {
        if let Some((api, alive)) = &self.connection {
            if alive.get() {
                return Ok(api.clone());
            }
        }
        let addr: std::net::SocketAddr = self.addr.parse().map_err(|e| format!("{}: {e}", self.addr))?;
        let stream = async_io::Async::<std::net::TcpStream>::connect(addr)
            .await
            .map_err(|e| format!("cannot reach the platform's Cap'n Proto endpoint at {addr}: {e}"))?;
        // Each message is its own write: without this, one waits for the bridge's delayed ACK.
        let _ = stream.get_ref().set_nodelay(true);
        let (r, w) = stream.split();
        let network = granary_schema::vat_network(r, w, capnp_rpc::rpc_twoparty_capnp::Side::Client);
        let mut rpc = capnp_rpc::RpcSystem::new(Box::new(network), None);
        let api: grain_api::Client = rpc.bootstrap(capnp_rpc::rpc_twoparty_capnp::Side::Server);
        let alive = Rc::new(Cell::new(true));
        let flag = alive.clone();
        self.ex
            .spawn(async move {
                let _ = rpc.await;
                flag.set(false);
            })
            .detach();
        self.connection = Some((api.clone(), alive));
        self.held = None;
        Ok(api)
    }

    /// The counter of `token`: the held one, or restored now.
    async fn counter(&mut self, token: &str) -> Result<counter::Client, String> {
        if let Some((t, c)) = &self.held {
            if t == token && self.connected() {
                return Ok(c.clone());
            }
        }
        let bytes = crate::remote::decode_token(token).ok_or("the saved token is not a gs_ token; connect again")?;
        let api = self.grain_api().await?;
        let mut req = api.restore_request();
        req.get().set_token(&bytes);
        self.restores.fetch_add(1, Ordering::Relaxed);
        let reply = req.send().promise.await.map_err(text)?;
        let c: counter::Client = reply.get().and_then(|r| r.get_cap().get_as_capability()).map_err(text)?;
        self.held = Some((token.to_owned(), c.clone()));
        Ok(c)
    }

    async fn call(&mut self, token: &str, op: Op) -> Result<Answer, String> {
        let c = self.counter(token).await?;
        let e = match run(&c, op).await {
            Ok(a) => return Ok(a),
            Err(e) => e,
        };
        if is_revoked(&e) {
            self.held = None;
            return Err(text(e));
        }
        if e.kind != capnp::ErrorKind::Disconnected {
            return Err(text(e));
        }
        if self.connected() {
            match run(&c, op).await {
                Ok(a) => return Ok(a),
                Err(e) if e.kind != capnp::ErrorKind::Disconnected => {
                    if is_revoked(&e) {
                        self.held = None;
                    }
                    return Err(text(e));
                }
                Err(_) => {}
            }
        }
        self.held = None;
        let c = self.counter(token).await?;
        run(&c, op).await.map_err(|e| {
            if is_revoked(&e) || e.kind == capnp::ErrorKind::Disconnected {
                self.held = None;
            }
            text(e)
        })
    }
}
