//! HTTP/1.1 connections to the app on 127.0.0.1, with a small pool of idle keep-alive
//! connections.

use std::cell::RefCell;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use async_executor::LocalExecutor;
use async_io::Async;
use granary_schema::socket::Socket;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use smol_hyper::rt::FuturesIo;

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

/// A connection to the app (HTTP, or Cap'n Proto to its `AppObjects`) that asks the kernel for
/// an immediate ACK (`TCP_QUICKACK`) after every read. An app that writes a response's head
/// and body apart with Nagle's algorithm on — Python's `http.server` does; so does a Cap'n
/// Proto answer of more than one message — holds the rest back until the first is acknowledged, and
/// Linux delays that ACK by 40 ms or more once a connection carries requests and answers back
/// and forth. The flag does not stick (the kernel falls back to delayed ACKs), hence once per
/// read.
pub struct AppStream(Socket<TcpStream>);

impl From<Async<TcpStream>> for AppStream {
    fn from(stream: Async<TcpStream>) -> Self {
        AppStream(Socket::from(stream))
    }
}

impl AppStream {
    fn quick_ack(&self) {
        let _ = rustix::net::sockopt::set_tcp_quickack(self.0.get_ref(), true);
    }
}

impl futures::AsyncRead for AppStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.0).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.quick_ack();
        }
        r
    }
}

impl futures::AsyncWrite for AppStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}

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
        let _ = tcp.get_ref().set_nodelay(true);
        Ok(AppStream::from(tcp))
    }

    async fn connect(&self) -> Result<SendRequest<ReqBody>, AppError> {
        let tcp = self.connect_tcp().await?;
        let (sender, conn) = http1::Builder::new()
            .max_headers(MAX_HEADER_COUNT)
            .max_buf_size(MAX_HEADER_TOTAL + MAX_PATH + 8192)
            .handshake(FuturesIo::new(tcp))
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
