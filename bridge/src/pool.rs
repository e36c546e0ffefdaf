//! HTTP/1.1 connections to the app on 127.0.0.1, with a small pool of idle keep-alive
//! connections.

use std::cell::RefCell;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::rc::Rc;

use async_executor::LocalExecutor;
use async_io::Async;
use granary_schema::socket::Socket;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};

use crate::body::ReqBody;
use crate::limits::{MAX_HEADER_COUNT, MAX_HEADER_TOTAL, MAX_PATH, POOL_IDLE};

/// Why the app gave no response.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot connect to the app on {addr}: {error}")]
    Connect { addr: SocketAddr, error: std::io::Error },
    #[error("HTTP handshake with the app failed: {0}")]
    Handshake(hyper::Error),
    #[error("the app failed before completing its response headers: {0}")]
    Exchange(hyper::Error),
}

/// A connection with the app: the bridge's HTTP and Cap'n Proto connections to it, and the
/// app's connections to the bridge's local endpoints. Made with [`Socket::with_quick_acks`]:
/// apps leave Nagle's algorithm on and write in pieces (Python's `http.server` writes a
/// response's head and body apart), and each later piece would wait 40 ms for the bridge's
/// delayed ACK; `TCP_NODELAY` covers the bridge's own pieces.
pub type AppStream = Socket<TcpStream>;

/// The app's HTTP endpoint.
pub struct AppClient {
    addr: SocketAddr,
    idle: RefCell<Vec<SendRequest<ReqBody>>>,
    executor: Rc<LocalExecutor<'static>>,
}

impl AppClient {
    /// A client for the app on `127.0.0.1:port`; connection tasks run on `executor`.
    pub fn new(port: u16, executor: Rc<LocalExecutor<'static>>) -> Self {
        Self { addr: (Ipv4Addr::LOCALHOST, port).into(), idle: RefCell::new(Vec::new()), executor }
    }

    /// The app's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The executor the bridge's background tasks run on.
    pub fn executor(&self) -> &Rc<LocalExecutor<'static>> {
        &self.executor
    }

    /// Opens a TCP connection to the app.
    pub async fn connect_tcp(&self) -> Result<AppStream, AppError> {
        let tcp = Async::<TcpStream>::connect(self.addr).await.map_err(|error| AppError::Connect { addr: self.addr, error })?;
        Ok(Socket::with_quick_acks(tcp))
    }

    async fn connect(&self) -> Result<SendRequest<ReqBody>, AppError> {
        let tcp = self.connect_tcp().await?;
        let (sender, conn) = http1::Builder::new()
            .max_headers(MAX_HEADER_COUNT)
            .max_buf_size(MAX_HEADER_TOTAL + MAX_PATH + 8192)
            .handshake(crate::hyper_io::HyperIo(tcp))
            .await
            .map_err(AppError::Handshake)?;
        self.executor
            .spawn(async move {
                // Ends when the app or the bridge closes the connection; errors surface on the
                // request that was in flight.
                let _ = conn.await;
            })
            .detach();
        Ok(sender)
    }

    /// Sends `req` on an idle connection or a new one. A request that an idle connection
    /// could not even start sending (the app closed it meanwhile) is retried once on a fresh
    /// connection; a request that reached the app is never retried.
    pub async fn send(self: &Rc<Self>, mut req: Request<ReqBody>) -> Result<Response<Incoming>, AppError> {
        loop {
            let (mut sender, reused) = match self.take_idle() {
                Some(s) => (s, true),
                None => (self.connect().await?, false),
            };
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    self.recycle(sender);
                    return Ok(resp);
                }
                Err(mut e) => match e.take_message() {
                    Some(r) if reused => req = r,
                    _ => return Err(AppError::Exchange(e.into_error())),
                },
            }
        }
    }

    fn take_idle(&self) -> Option<SendRequest<ReqBody>> {
        let mut idle = self.idle.borrow_mut();
        while let Some(s) = idle.pop() {
            if s.is_ready() && !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    /// Puts the connection back once its response body has been read to the end; a body
    /// dropped early closes the connection instead.
    fn recycle(self: &Rc<Self>, mut sender: SendRequest<ReqBody>) {
        let this = Rc::downgrade(self);
        self.executor
            .spawn(async move {
                if sender.ready().await.is_ok() {
                    if let Some(this) = this.upgrade() {
                        let mut idle = this.idle.borrow_mut();
                        if idle.len() < POOL_IDLE {
                            idle.push(sender);
                        }
                    }
                }
            })
            .detach();
    }

    /// Idle connections now in the pool.
    pub fn idle_connections(&self) -> usize {
        self.idle.borrow().len()
    }
}
