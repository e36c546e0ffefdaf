//! Bodies for the HTTP driver, as the bridge carries them for apps (SPEC.md, "The WebSession
//! contract"): a request body arriving as `ByteStream.write` calls becomes a hyper body read by
//! the connection to the origin; the origin's response body becomes `write` calls, each
//! awaited. Neither direction holds a whole body: at most [`QUEUE`] chunks wait in between.

use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::channel::mpsc;
use futures::{SinkExt, Stream};
use granary_schema::util_capnp::byte_stream;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::{Bytes, Incoming};

/// Largest `data` of one `ByteStream.write`, either direction.
pub const MAX_WRITE: usize = 64 * 1024;
/// Request body chunks buffered between `ByteStream.write` and the origin's socket.
const QUEUE: usize = 4;

/// The body of a request to the origin.
pub enum OutBody {
    /// No body, or the whole body (`Request.body.inline`).
    Full(Option<Bytes>),
    /// A body the caller streams to a [`RequestBodySink`].
    Stream { rx: mpsc::Receiver<Bytes>, state: Rc<SinkState> },
}

/// Why a request body did not complete.
#[derive(Debug, thiserror::Error)]
#[error("the request body was cut short: {0}")]
pub struct BodyAborted(String);

impl Body for OutBody {
    type Data = Bytes;
    type Error = BodyAborted;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyAborted>>> {
        match self.get_mut() {
            OutBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            OutBody::Stream { rx, state } => match Pin::new(rx).poll_next(cx) {
                Poll::Ready(Some(b)) => {
                    state.progress.set(Some(Instant::now()));
                    Poll::Ready(Some(Ok(Frame::data(b))))
                }
                Poll::Ready(None) if state.done.get() => Poll::Ready(None),
                Poll::Ready(None) => {
                    let why = state.failure.borrow().clone().unwrap_or_else(|| "the caller dropped the stream".into());
                    Poll::Ready(Some(Err(BodyAborted(why))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, OutBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            OutBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            OutBody::Stream { state, .. } => state.expected.map_or_else(SizeHint::default, SizeHint::with_exact),
        }
    }
}

impl OutBody {
    /// For a streamed body, the state telling when the origin's connection last took a chunk.
    pub fn progress(&self) -> Option<Rc<SinkState>> {
        match self {
            OutBody::Stream { state, .. } => Some(state.clone()),
            OutBody::Full(_) => None,
        }
    }
}

/// What the sink and the body share.
pub struct SinkState {
    progress: Cell<Option<Instant>>,
    expected: Option<u64>,
    done: Cell<bool>,
    failure: RefCell<Option<String>>,
}

impl SinkState {
    /// When the origin's connection last took a chunk of the body, if ever.
    pub fn last_progress(&self) -> Option<Instant> {
        self.progress.get()
    }
}

/// The `ByteStream` the caller writes a request body to (`requestBody`).
pub struct RequestBodySink {
    tx: RefCell<Option<mpsc::Sender<Bytes>>>,
    state: Rc<SinkState>,
    received: Cell<u64>,
}

impl RequestBodySink {
    /// A sink for a body of `expected` bytes (`None`: unknown) and the body it feeds.
    pub fn new(expected: Option<u64>) -> (Self, OutBody) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let state = Rc::new(SinkState { progress: Cell::new(None), expected, done: Cell::new(false), failure: RefCell::new(None) });
        (Self { tx: RefCell::new(Some(tx)), state: state.clone(), received: Cell::new(0) }, OutBody::Stream { rx, state })
    }

    /// Records why the body failed and ends it, so the origin sees it cut short.
    fn fail(&self, why: String) -> capnp::Error {
        *self.state.failure.borrow_mut() = Some(why.clone());
        self.tx.borrow_mut().take();
        capnp::Error::failed(why)
    }
}

impl byte_stream::Server for RequestBodySink {
    async fn write(self: capnp::capability::Rc<Self>, params: byte_stream::WriteParams) -> Result<(), capnp::Error> {
        let data = params.get()?.get_data()?;
        if data.len() > MAX_WRITE {
            return Err(self.fail(format!("a write of {} bytes exceeds the {MAX_WRITE}-byte limit", data.len())));
        }
        let received = self.received.get() + data.len() as u64;
        if let Some(e) = self.state.expected.filter(|e| received > *e) {
            return Err(self.fail(format!("more than the declared {e} bytes")));
        }
        self.received.set(received);
        let Some(mut tx) = self.tx.borrow_mut().take() else {
            return Err(capnp::Error::failed("the request body is already finished".into()));
        };
        if tx.send(Bytes::copy_from_slice(data)).await.is_err() {
            return Err(capnp::Error::disconnected("the origin stopped reading the request body".into()));
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

/// Why a response body did not reach the caller completely.
#[derive(Debug, thiserror::Error)]
pub enum PumpError {
    #[error("reading the origin's response body: {0}")]
    Origin(#[from] hyper::Error),
    #[error("writing the response body to the caller: {0}")]
    Caller(#[from] capnp::Error),
}

/// Copies the origin's response body to `stream` in awaited writes of at most [`MAX_WRITE`]
/// bytes, then calls `done()`. On error the stream is dropped without `done()`.
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
