//! hyper's I/O traits for [`Socket`], the Granary socket every HTTP connection of the server
//! and the bridge runs on. Reads go straight into hyper's uninitialised read buffer: the
//! general adapter for `futures` streams (smol-hyper's `FuturesIo`) has to zero all of that
//! buffer's spare capacity, several KiB, before every read, one that answers `EAGAIN`
//! included (BENCHMARKS.md, session 9).

use std::io::{self, Write};
use std::os::fd::AsFd;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures::AsyncWrite;
use granary_schema::socket::Socket;
use hyper::rt::ReadBufCursor;

/// A [`Socket`] as hyper's `Read` and `Write`.
pub struct HyperIo<T>(pub Socket<T>);

impl<T: AsFd> hyper::rt::Read for HyperIo<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, mut buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        // SAFETY: `poll_read_uninit` only stores bytes read from the socket in the slice and
        // never de-initialises any of it.
        let n = ready!(self.0.poll_read_uninit(cx, unsafe { buf.as_mut() }))?;
        // SAFETY: the read initialised the first `n` bytes of the unfilled part.
        unsafe { buf.advance(n) };
        Poll::Ready(Ok(()))
    }
}

impl<T> hyper::rt::Write for HyperIo<T>
where
    for<'a> &'a T: Write,
{
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_close(cx)
    }
}
