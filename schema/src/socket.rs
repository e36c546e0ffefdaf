//! A non-blocking socket that asks the kernel for data once per readiness event.
//!
//! async-io's own `AsyncRead` for `Async<T>` reads first and waits second. After a wake-up
//! whose data it has already read, its next read answers `EAGAIN`, its readiness check then
//! reports the *old* event as new, and it reads a second time, `EAGAIN` again, before it
//! waits: two wasted `recvfrom` per wait, on every connection of the request path (measured
//! in BENCHMARKS.md, session 6). [`Socket`] remembers that it is waiting: once woken, it first
//! consumes the event (no system call), then reads; a spurious wake-up costs no read at all.
//! And a read that fills less than its buffer has emptied the socket (a stream socket's read
//! takes all that is queued, up to the buffer's size), so the next poll waits for readiness
//! without first reading to hear `EAGAIN` (session 9). Writes are async-io's.
//!
//! A TCP socket made with [`Socket::with_quick_acks`] also asks the kernel for an immediate ACK
//! (`TCP_QUICKACK`) when it is about to wait for more data without having written since it
//! last read some. A peer that sends a message in two small writes with Nagle's algorithm on —
//! an HTTP head and then its body, as Python's `http.client` always does, or a Cap'n Proto
//! answer of two messages — holds the second until the first is acknowledged, and Linux delays
//! that ACK by 40 ms once a connection goes back and forth: 44 ms per exchange on a kept-alive
//! connection. Setting the flag sends the ACK the kernel is holding back at once. After an
//! answer was written the ACK rode on it, so nothing is asked. The flag does not stick, hence
//! once per such wait. That costs a `setsockopt` and a separate ACK packet per exchange where
//! the reader reads ahead before it answers (hyper does): the bridge's connections with the
//! app pay it. The server instead uses [`Socket::ack_handle`] and asks only when a request's
//! head says a body follows (BENCHMARKS.md, session 6).

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use async_io::Async;

/// A socket for `futures::AsyncRead`/`AsyncWrite` users (hyper through smol-hyper, the
/// Cap'n Proto transports) that reads at most once per readiness event before it waits.
pub struct Socket<T> {
    io: Arc<Async<T>>,
    /// The last read answered `EAGAIN` and readiness was requested: the next poll consumes the
    /// reactor's event before reading.
    waiting: Cell<bool>,
    /// Set `TCP_QUICKACK` before waiting while `unanswered`.
    quick_acks: bool,
    /// Data was read and nothing has been written since.
    unanswered: Cell<bool>,
    /// The last read filled less than it was offered: the socket was empty after it, so the
    /// next poll waits for readiness instead of reading to hear `EAGAIN`.
    drained: Cell<bool>,
}

impl<T: AsFd> Socket<T> {
    /// Wraps a socket, making it non-blocking and registering it with the reactor.
    pub fn new(io: T) -> io::Result<Self> {
        Ok(Socket::from(Async::new(io)?))
    }
}

impl<T> From<Async<T>> for Socket<T> {
    fn from(io: Async<T>) -> Self {
        Socket { io: Arc::new(io), waiting: Cell::new(false), quick_acks: false, unanswered: Cell::new(false), drained: Cell::new(false) }
    }
}

impl Socket<TcpStream> {
    /// A TCP connection with an app, which may write in pieces with Nagle's algorithm on: it
    /// asks for an immediate ACK before a wait that follows a read with no write since (see
    /// the module's documentation), and sets `TCP_NODELAY` so that its own writes in pieces (a
    /// streamed body's head and chunks, one Cap'n Proto message per write) do not wait on the
    /// app's delayed ACKs either.
    pub fn with_quick_acks(io: Async<TcpStream>) -> Self {
        let _ = io.get_ref().set_nodelay(true);
        Socket { io: Arc::new(io), waiting: Cell::new(false), quick_acks: true, unanswered: Cell::new(false), drained: Cell::new(false) }
    }

    /// A handle that sends the ACK the kernel holds back for this connection, for a caller
    /// that knows more is coming: the server, once it has read a request's head and a body
    /// follows.
    pub fn ack_handle(&self) -> AckHandle {
        AckHandle(self.io.clone())
    }
}

impl Socket<TcpStream> {
    /// A handle to close this connection gently once its user is done with it
    /// ([`LingeringClose`]).
    pub fn lingering_close(&self) -> LingeringClose {
        LingeringClose(self.io.clone())
    }
}

/// Closes a connection whose peer may still be sending, the way web servers do ("lingering
/// close"). A server that answers a request without reading its body (a refused upload: 401,
/// 403, 413; hyper's own 431) and then closes the socket with unread data in it makes the kernel
/// send a reset; the reset discards the answer from the client's receive buffer, and a client
/// still sending gets `ECONNRESET` instead of the answer. So the write side is shut down (the
/// answer is followed by FIN) and what still arrives is read and discarded until the peer
/// closes, it stays quiet for a while, or a time limit passes.
pub struct LingeringClose(Arc<Async<TcpStream>>);

impl LingeringClose {
    /// How long a closing connection may stay quiet before it is closed for good: Granary's
    /// servers (the server's listener, the bridge's local API) use this and [`Self::LIMIT`].
    pub const QUIET: Duration = Duration::from_secs(2);
    /// How long a closing connection is read at most.
    pub const LIMIT: Duration = Duration::from_secs(10);

    /// Shuts the write side and discards input until the peer closes, `quiet` passes with
    /// nothing received, or `limit` passes in all. Does nothing while anyone else still holds
    /// the socket (an upgraded connection: a WebSocket lives on it).
    pub async fn close(self, quiet: Duration, limit: Duration) {
        if Arc::strong_count(&self.0) > 1 {
            return;
        }
        let _ = self.0.get_ref().shutdown(std::net::Shutdown::Write);
        let deadline = Instant::now() + limit;
        let mut scratch = vec![0u8; 16 << 10];
        loop {
            match (&*self.0.get_ref()).read(&mut scratch) {
                Ok(0) => return,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            let timer = async_io::Timer::after(quiet.min(deadline - now));
            match futures::future::select(std::pin::pin!(self.0.readable()), timer).await {
                futures::future::Either::Left((Ok(()), _)) => {}
                _ => return,
            }
        }
    }
}

/// Sends a connection's held-back ACK on demand ([`Socket::ack_handle`]).
#[derive(Clone)]
pub struct AckHandle(Arc<Async<TcpStream>>);

impl AckHandle {
    /// Asks the kernel to acknowledge what it has received now (`TCP_QUICKACK`); sends nothing
    /// if no ACK is pending.
    pub fn ack_now(&self) {
        let _ = rustix::net::sockopt::set_tcp_quickack(self.0.get_ref(), true);
    }
}

impl<T> Socket<T> {
    /// The socket itself, for socket options.
    pub fn get_ref(&self) -> &T {
        self.io.get_ref()
    }
}

impl<T: AsFd> Socket<T> {
    /// The read-once-per-event loop of both readers: `read` is one non-blocking read into a
    /// buffer of `len` bytes.
    fn poll_read_by(&self, cx: &mut Context<'_>, len: usize, mut read: impl FnMut() -> io::Result<usize>) -> Poll<io::Result<usize>> {
        if self.waiting.get() {
            ready!(self.io.poll_readable(cx))?;
            self.waiting.set(false);
        } else if self.drained.replace(false) {
            // A stream socket's read takes all that is queued, up to the buffer's size: after a
            // short one there was nothing left, and a read now would most likely say `EAGAIN`.
            // Registering interest is enough: epoll reports data that arrived meanwhile.
            ready!(self.wait_readable(cx))?;
        }
        loop {
            match read() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Ok(n) if n > 0 => {
                    self.unanswered.set(true);
                    self.drained.set(n < len);
                    return Poll::Ready(Ok(n));
                }
                other => return Poll::Ready(other),
            }
            ready!(self.wait_readable(cx))?;
        }
    }

    /// Asks the reactor for the next read event: Pending once registered (`waiting`), Ready if
    /// one arrived since the last read.
    fn wait_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.quick_acks && self.unanswered.replace(false) {
            // Waiting for the rest of what the peer sent: the ACK of what came leaves now.
            let _ = rustix::net::sockopt::set_tcp_quickack(self.io.get_ref(), true);
        }
        let r = self.io.poll_readable(cx);
        if r.is_pending() {
            self.waiting.set(true);
        }
        r
    }

    /// Reads into memory that need not be initialised, as [`futures::AsyncRead::poll_read`]
    /// does into a slice: for readers that own uninitialised buffers (hyper's), which would
    /// otherwise zero their whole spare capacity before every read, `EAGAIN` included.
    pub fn poll_read_uninit(&self, cx: &mut Context<'_>, buf: &mut [MaybeUninit<u8>]) -> Poll<io::Result<usize>> {
        let fd = self.io.get_ref().as_fd();
        let len = buf.len();
        self.poll_read_by(cx, len, || match rustix::io::read(fd, &mut *buf) {
            Ok((filled, _)) => Ok(filled.len()),
            Err(e) => Err(e.into()),
        })
    }
}

impl<T: AsFd> futures::AsyncRead for Socket<T>
where
    for<'a> &'a T: Read,
{
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = &*self;
        this.poll_read_by(cx, buf.len(), || (&*this.io.get_ref()).read(buf))
    }
}

impl<T> futures::AsyncWrite for Socket<T>
where
    for<'a> &'a T: Write,
{
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut &*self.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.unanswered.set(false);
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self.io).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self.io).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::io::{Read, Write};
    use std::os::fd::{AsFd, BorrowedFd};
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    use futures::{AsyncRead, AsyncReadExt};

    use super::Socket;

    /// A socket that counts the reads made on it.
    struct Counted(UnixStream, Cell<usize>);

    impl AsFd for Counted {
        fn as_fd(&self) -> BorrowedFd<'_> {
            self.0.as_fd()
        }
    }

    impl Read for &Counted {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.1.set(self.1.get() + 1);
            (&self.0).read(buf)
        }
    }

    #[test]
    fn a_wait_costs_at_most_one_read_that_finds_nothing() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut socket = Socket::new(Counted(a, Cell::new(0))).unwrap();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            b.write_all(b"hello").unwrap();
            b
        });
        let mut buf = [0u8; 16];
        // Nothing yet: one read finds nothing, the task waits, is woken, reads once.
        let n = async_io::block_on(socket.read(&mut buf)).unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(socket.get_ref().1.get(), 2, "one read before the wait, one after it");

        // That read was short, so the socket is empty: the task waits again without reading
        // (async-io's own reader reads twice here, hearing `EAGAIN` twice).
        assert!(poll_read_once(&mut socket).is_pending());
        assert_eq!(socket.get_ref().1.get(), 2);
        // Polled again with no event (a spurious wake-up): no read at all.
        assert!(poll_read_once(&mut socket).is_pending());
        assert_eq!(socket.get_ref().1.get(), 2);

        // A read that fills the buffer may have left more behind: the next poll reads again,
        // and only then waits.
        let mut b = writer.join().unwrap();
        b.write_all(b"sixteen bytes!!!").unwrap();
        assert_eq!(async_io::block_on(socket.read(&mut buf)).unwrap(), 16);
        assert_eq!(socket.get_ref().1.get(), 3, "the event's one read");
        assert!(poll_read_once(&mut socket).is_pending());
        assert_eq!(socket.get_ref().1.get(), 4, "one read, which found nothing, before waiting");

        // Data and the end of the stream still arrive in order after all that.
        b.write_all(b"world").unwrap();
        drop(b);
        let mut rest = Vec::new();
        async_io::block_on(socket.read_to_end(&mut rest)).unwrap();
        assert_eq!(rest, b"world");
    }

    #[test]
    fn reads_into_uninitialised_memory_wait_and_end_like_the_others() {
        use std::mem::MaybeUninit;
        let (a, mut b) = UnixStream::pair().unwrap();
        let socket = Socket::new(a).unwrap();
        let mut buf = [MaybeUninit::<u8>::uninit(); 16];
        let read = |buf: &mut [MaybeUninit<u8>]| async_io::block_on(futures::future::poll_fn(|cx| socket.poll_read_uninit(cx, buf)));
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            b.write_all(b"hello").unwrap();
            b
        });
        // Nothing yet: the read waits for the writer.
        let n = read(&mut buf).unwrap();
        // SAFETY: the read initialised the first `n` bytes.
        assert_eq!(unsafe { std::slice::from_raw_parts(buf.as_ptr() as *const u8, n) }, b"hello");
        let mut b = writer.join().unwrap();
        b.write_all(b"world, and more than fits").unwrap();
        drop(b);
        let n = read(&mut buf).unwrap();
        assert_eq!(unsafe { std::slice::from_raw_parts(buf.as_ptr() as *const u8, n) }, b"world, and more ");
        let n = read(&mut buf).unwrap();
        assert_eq!(unsafe { std::slice::from_raw_parts(buf.as_ptr() as *const u8, n) }, b"than fits");
        assert_eq!(read(&mut buf).unwrap(), 0, "the end of the stream");
    }

    fn poll_read_once(socket: &mut Socket<Counted>) -> std::task::Poll<std::io::Result<usize>> {
        let mut buf = [0u8; 16];
        async_io::block_on(async { futures::poll!(futures::future::poll_fn(|cx| std::pin::Pin::new(&mut *socket).poll_read(cx, &mut buf))) })
    }
}
