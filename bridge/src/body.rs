//! Bodies in both directions: a request body arriving as `ByteStream.write` calls becomes a
//! hyper body read by the app's connection; a response body from the app becomes `write`
//! calls on the caller's `ByteStream`. Neither direction buffers a whole body: at most
//! `REQUEST_BODY_QUEUE` chunks wait between the capnp side and the socket, and each response
//! write is awaited (capnp `-> stream` flow control) before the next chunk is read.

use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use futures::channel::mpsc;
use futures::{SinkExt, Stream};
use granary_schema::util_capnp::byte_stream;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::{Bytes, Incoming};

use crate::limits::{MAX_WRITE, REQUEST_BODY_QUEUE};
use std::time::Instant;

/// The body of a request to the app.
pub enum ReqBody {
    /// No body.
    Empty,
    /// A body known in full (`Request.body.inline`, or a bridge-made request).
    Full(Option<Bytes>),
    /// A body streamed by the caller through a [`RequestBodySink`].
    Stream(StreamBody),
}

/// Why a request body did not complete.
#[derive(Debug, thiserror::Error)]
#[error("the request body was cut short: {0}")]
pub struct BodyAborted(String);

impl Body for ReqBody {
    type Data = Bytes;
    type Error = BodyAborted;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyAborted>>> {
        match self.get_mut() {
            ReqBody::Empty => Poll::Ready(None),
            ReqBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ReqBody::Stream(s) => match Pin::new(&mut s.rx).poll_next(cx) {
                Poll::Ready(Some(b)) => {
                    s.state.progress.set(Some(Instant::now()));
                    Poll::Ready(Some(Ok(Frame::data(b))))
                }
                Poll::Ready(None) if s.state.done.get() => Poll::Ready(None),
                Poll::Ready(None) => {
                    let why = s.state.failure.borrow().clone();
                    Poll::Ready(Some(Err(BodyAborted(why.unwrap_or_else(|| "the caller dropped the stream".into())))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Empty => true,
            ReqBody::Full(b) => b.is_none(),
            ReqBody::Stream(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Empty => SizeHint::with_exact(0),
            ReqBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ReqBody::Stream(s) => s.state.expected.map_or_else(SizeHint::default, SizeHint::with_exact),
        }
    }
}

impl ReqBody {
    /// For a streamed body, what tells when the receiving connection last took a chunk (the
    /// HTTP driver's silence timeout counts from then, so a long upload that keeps flowing is
    /// not cut off).
    pub fn progress(&self) -> Option<Rc<SinkState>> {
        match self {
            ReqBody::Stream(s) => Some(s.state.clone()),
            _ => None,
        }
    }
}

/// The app-facing end of a streamed request body.
pub struct StreamBody {
    rx: mpsc::Receiver<Bytes>,
    state: Rc<SinkState>,
}

/// What a [`RequestBodySink`] and its [`StreamBody`] share.
pub struct SinkState {
    expected: Option<u64>,
    done: Cell<bool>,
    failure: RefCell<Option<String>>,
    progress: Cell<Option<Instant>>,
}

impl SinkState {
    /// When the receiving connection last took a chunk of the body, if ever.
    pub fn last_progress(&self) -> Option<Instant> {
        self.progress.get()
    }
}

/// The `ByteStream` the caller writes a request body to (`requestBody`); the local API's
/// proxy also uses one as the `responseBody` a remote `WebSession` writes to.
pub struct RequestBodySink {
    tx: RefCell<Option<mpsc::Sender<Bytes>>>,
    state: Rc<SinkState>,
    received: Cell<u64>,
    limit: u64,
}

impl RequestBodySink {
    /// A sink for a body of `expected` bytes (`None`: unknown), at most `limit` bytes, and the
    /// body the app's connection reads from it.
    pub fn new(expected: Option<u64>, limit: u64) -> (Self, StreamBody) {
        let (tx, rx) = mpsc::channel(REQUEST_BODY_QUEUE);
        let state = Rc::new(SinkState { expected, done: Cell::new(false), failure: RefCell::new(None), progress: Cell::new(None) });
        let sink = Self { tx: RefCell::new(Some(tx)), state: state.clone(), received: Cell::new(0), limit };
        (sink, StreamBody { rx, state })
    }

    /// Records why the body failed and ends it, so the app sees it cut short.
    fn fail(&self, why: String) -> capnp::Error {
        *self.state.failure.borrow_mut() = Some(why.clone());
        self.tx.borrow_mut().take();
        capnp::Error::failed(why)
    }
}

impl byte_stream::Server for RequestBodySink {
    async fn write(self: capnp::capability::Rc<Self>, params: byte_stream::WriteParams) -> Result<(), capnp::Error> {
        // capnp-rpc delivers a capability's streaming calls one at a time, in order, so no
        // other write runs while this one waits for room in the queue.
        let data = params.get()?.get_data()?;
        if data.len() > MAX_WRITE {
            return Err(self.fail(format!("a write of {} bytes exceeds the {MAX_WRITE}-byte limit", data.len())));
        }
        let received = self.received.get() + data.len() as u64;
        if self.state.expected.is_some_and(|e| received > e) {
            return Err(self.fail(format!("more than the declared {} bytes", self.state.expected.unwrap_or(0))));
        }
        if received > self.limit {
            return Err(self.fail(format!("the body exceeds the {}-byte limit", self.limit)));
        }
        self.received.set(received);
        let chunk = Bytes::copy_from_slice(data);
        let Some(mut tx) = self.tx.borrow_mut().take() else {
            return Err(capnp::Error::failed("the request body is already finished".into()));
        };
        if tx.send(chunk).await.is_err() {
            return Err(capnp::Error::disconnected("the app stopped reading the request body".into()));
        }
        *self.tx.borrow_mut() = Some(tx);
        Ok(())
    }

    async fn done(self: capnp::capability::Rc<Self>, _: byte_stream::DoneParams, _: byte_stream::DoneResults) -> Result<(), capnp::Error> {
        if let Some(e) = self.state.expected.filter(|e| *e != self.received.get()) {
            return Err(self.fail(format!("the body ended after {} of {e} declared bytes", self.received.get())));
        }
        let Some(tx) = self.tx.borrow_mut().take() else {
            return Err(capnp::Error::failed("the request body is already finished".into()));
        };
        // Mark the end as clean before closing the channel the app's connection reads.
        self.state.done.set(true);
        drop(tx);
        Ok(())
    }

    async fn expect_size(
        self: capnp::capability::Rc<Self>,
        _: byte_stream::ExpectSizeParams,
        _: byte_stream::ExpectSizeResults,
    ) -> Result<(), capnp::Error> {
        Ok(())
    }
}

/// Why a body did not reach the other side completely.
#[derive(Debug, thiserror::Error)]
pub enum PumpError {
    #[error("reading the HTTP body: {0}")]
    App(#[from] hyper::Error),
    #[error("writing the body to the ByteStream: {0}")]
    Caller(#[from] capnp::Error),
}

/// Copies a hyper body (the app's response; also a request body, in the gateway and the local
/// API's proxy) to `stream` in writes of at most `MAX_WRITE` bytes, each awaited, then calls
/// `done()`. On error the stream is dropped without `done()`.
pub async fn pump_response(mut body: Incoming, stream: byte_stream::Client) -> Result<u64, PumpError> {
    let mut sent = 0u64;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else { continue }; // trailers are not carried
        for chunk in data.chunks(MAX_WRITE) {
            let mut req = stream.write_request();
            req.get().set_data(chunk);
            req.send().await?;
            sent += chunk.len() as u64;
        }
    }
    stream.done_request().send().promise.await?;
    Ok(sent)
}

/// Makes `resp` the last answer on its connection when it refuses a request that had a body
/// (`had_body`: the head announced one) with a 4xx or 5xx: the body may be unread, so the
/// connection cannot carry another request, and hyper closes it after the answer without
/// saying so. A client that reused it meanwhile would lose its next request. Used by the
/// server's listener and the bridge's local API (SPEC.md, "TCP", closing).
pub fn end_connection_after_refusal<B>(had_body: bool, resp: &mut hyper::Response<B>) {
    if had_body && (resp.status().is_client_error() || resp.status().is_server_error()) {
        resp.headers_mut().insert(hyper::header::CONNECTION, hyper::header::HeaderValue::from_static("close"));
    }
}
