//! The server's end of a grain's request lane (SPEC.md, "Request lanes"): one connection to
//! the grain's `web.sock` carrying `LaneFrame`s, many exchanges in flight, each answered by
//! the bridge under the number the server gave it. The bridge is untrusted: a frame over the
//! limit, malformed, or of a kind only the server sends ends the lane, and every exchange in
//! flight on it then fails as a disconnection would.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::rc::{Rc, Weak};

use async_executor::LocalExecutor;
use futures::channel::{mpsc, oneshot};
use futures::AsyncReadExt;
use granary_schema::grain_capnp::lane_frame;
use granary_schema::lane::{encode, new_frame, read_frame, write_frames, PREAMBLE};
use granary_schema::web_session_capnp::request;

/// A frame the bridge answered with: its root is a `LaneFrame` whose `response` is set.
pub type Answer = capnp::message::Reader<capnp::serialize::OwnedSegments>;

/// An open lane.
pub struct Lane {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    pending: RefCell<HashMap<u32, oneshot::Sender<Answer>>>,
    next: Cell<u32>,
    live: Cell<bool>,
}

impl Lane {
    /// Connects to `web_sock` and starts the lane's reader and writer on `ex`.
    pub fn connect(web_sock: &Path, ex: &Rc<LocalExecutor<'static>>) -> std::io::Result<Rc<Lane>> {
        let stream = UnixStream::connect(web_sock)?;
        let (r, w) = granary_schema::socket::Socket::new(stream)?.split();
        let (tx, rx) = mpsc::unbounded();
        tx.unbounded_send(PREAMBLE.to_vec()).expect("receiver held");
        let lane = Rc::new(Lane { tx, pending: RefCell::default(), next: Cell::new(0), live: Cell::new(true) });
        ex.spawn(async move {
            let _ = write_frames(w, rx).await;
        })
        .detach();
        let weak = Rc::downgrade(&lane);
        ex.spawn(async move {
            let mut r = futures::io::BufReader::new(r);
            let why = loop {
                let frame = match read_frame(&mut r).await {
                    Ok(Some(f)) => f,
                    Ok(None) => break None,
                    Err(e) => break Some(e.to_string()),
                };
                let Some(lane) = weak.upgrade() else { return };
                let id = match frame.get_root::<lane_frame::Reader>().map(|f| (f.get_exchange(), f.which())) {
                    Ok((id, Ok(lane_frame::Response(_) | lane_frame::Failed(_)))) => id,
                    _ => break Some("a frame of a kind the bridge never sends, or malformed".into()),
                };
                // An answer to an exchange nobody awaits any more (cancelled) is dropped.
                let waiting = lane.pending.borrow_mut().remove(&id);
                if let Some(waiting) = waiting {
                    let _ = waiting.send(frame);
                }
            };
            if let Some(why) = why {
                tracing::warn!("a grain's request lane broke its contract ({why}); closing it");
            }
            if let Some(lane) = weak.upgrade() {
                lane.end();
            }
        })
        .detach();
        Ok(lane)
    }

    /// Whether the lane can take exchanges.
    pub fn is_live(&self) -> bool {
        self.live.get() && !self.tx.is_closed()
    }

    /// Ends the lane: exchanges in flight fail with [`LaneError::Ended`].
    fn end(&self) {
        self.live.set(false);
        self.pending.borrow_mut().clear();
        self.tx.close_channel();
    }

    /// One exchange on session `direct_key`: `fill` writes the request (body `none` or
    /// `inline`). Dropping the returned future before the answer cancels the exchange.
    pub async fn exchange(self: &Rc<Self>, direct_key: &[u8], fill: impl FnOnce(request::Builder<'_>)) -> Result<Answer, LaneError> {
        if !self.is_live() {
            return Err(LaneError::Ended);
        }
        let mut id = self.next.get();
        while self.pending.borrow().contains_key(&id) {
            id = id.wrapping_add(1);
        }
        self.next.set(id.wrapping_add(1));
        let mut out = new_frame();
        {
            let mut f = out.init_root::<lane_frame::Builder>();
            f.set_exchange(id);
            let mut r = f.init_request();
            r.set_direct_key(direct_key);
            fill(r.init_request());
        }
        let (sender, answer) = oneshot::channel();
        self.pending.borrow_mut().insert(id, sender);
        self.tx.unbounded_send(encode(&out)).map_err(|_| LaneError::Ended)?;
        let guard = CancelOnDrop { lane: Rc::downgrade(self), id };
        let answer = answer.await.map_err(|_| LaneError::Ended)?;
        // Answered: the reader already took `id` out of `pending`, so this sends no cancel.
        drop(guard);
        let failed = match answer.get_root::<lane_frame::Reader>().map(|f| f.which()) {
            Ok(Ok(lane_frame::Failed(why))) => Some(why.ok().and_then(|w| w.to_string().ok()).unwrap_or_default()),
            _ => None,
        };
        match failed {
            Some(why) => Err(LaneError::Failed(why)),
            None => Ok(answer),
        }
    }
}

/// Sends `cancel` for an exchange whose caller went away before its answer.
struct CancelOnDrop {
    lane: Weak<Lane>,
    id: u32,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(lane) = self.lane.upgrade() else { return };
        if lane.pending.borrow_mut().remove(&self.id).is_some() {
            let mut out = new_frame();
            let mut f = out.init_root::<lane_frame::Builder>();
            f.set_exchange(self.id);
            f.set_cancel(());
            let _ = lane.tx.unbounded_send(encode(&out));
        }
    }
}

/// Why a lane exchange has no answer.
#[derive(Debug, thiserror::Error)]
pub enum LaneError {
    #[error("the grain's request lane ended (the bridge exited or broke the lane's contract)")]
    Ended,
    #[error("the bridge refused the exchange: {0}")]
    Failed(String),
}

impl From<LaneError> for capnp::Error {
    fn from(e: LaneError) -> Self {
        match e {
            LaneError::Ended => capnp::Error::disconnected(e.to_string()),
            LaneError::Failed(why) => capnp::Error::failed(why),
        }
    }
}
