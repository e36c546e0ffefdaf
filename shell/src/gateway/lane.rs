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
#[cfg(test)]
use async_io::Async;
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

#[cfg(test)]
mod tests {
    //! The server's end against a bridge that breaks the contract: a fake bridge on a real
    //! unix socket answers with what a hostile or broken one might send.

    use super::*;
    use futures::AsyncWriteExt;
    use granary_schema::lane::MAX_FRAME_WORDS;
    use granary_schema::web_session_capnp::response;
    use std::os::unix::net::UnixListener;
    use std::time::Duration;

    type Frame = capnp::message::Reader<capnp::serialize::OwnedSegments>;

    /// Runs `test` with a lane connected to a fake bridge, which `bridge` plays: it gets the
    /// accepted connection, the preamble already read.
    fn with_fake_bridge<B, BF, T, TF>(bridge: B, test: T)
    where
        B: FnOnce(Async<UnixStream>) -> BF,
        BF: std::future::Future<Output = ()> + 'static,
        T: FnOnce(Rc<Lane>) -> TF,
        TF: std::future::Future<Output = ()>,
    {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.sock");
        let listener = Async::new(UnixListener::bind(&path).unwrap()).unwrap();
        let ex = Rc::new(LocalExecutor::new());
        let ex2 = ex.clone();
        async_io::block_on(ex.run(async move {
            let lane = Lane::connect(&path, &ex2).unwrap();
            let (stream, _) = listener.accept().await.unwrap();
            let mut preamble = [0u8; 8];
            (&stream).read_exact(&mut preamble).await.unwrap();
            assert_eq!(&preamble, PREAMBLE);
            ex2.spawn(bridge(stream)).detach();
            let limit = async {
                async_io::Timer::after(Duration::from_secs(5)).await;
                panic!("the lane neither answered nor ended within 5 s");
            };
            futures::future::select(Box::pin(test(lane)), Box::pin(limit)).await;
        }));
    }

    async fn next_frame(stream: &Async<UnixStream>) -> Frame {
        let mut r = stream;
        read_frame(&mut r).await.unwrap().expect("a frame")
    }

    fn answer(id: u32, status: u16) -> Vec<u8> {
        let mut m = new_frame();
        let mut f = m.init_root::<lane_frame::Builder>();
        f.set_exchange(id);
        let mut r: response::Builder<'_> = f.init_response().init_response();
        r.set_status(status);
        r.init_body().set_none(());
        encode(&m)
    }

    fn get(r: request::Builder<'_>) {
        let mut r = r;
        r.set_method("GET");
        r.set_path("/");
        r.init_body().set_none(());
    }

    fn status(a: &Answer) -> u16 {
        let lane_frame::Response(r) = a.get_root::<lane_frame::Reader>().unwrap().which().unwrap() else { panic!("not a response") };
        r.unwrap().get_response().unwrap().get_status()
    }

    #[test]
    fn answers_reach_their_exchange_and_strays_are_ignored() {
        with_fake_bridge(
            |s| async move {
                let f = next_frame(&s).await;
                let id = f.get_root::<lane_frame::Reader>().unwrap().get_exchange();
                let mut out = answer(id.wrapping_add(1000), 500); // for nobody: ignored
                out.extend(answer(id, 204));
                (&s).write_all(&out).await.unwrap();
                let f = next_frame(&s).await;
                let id = f.get_root::<lane_frame::Reader>().unwrap().get_exchange();
                let mut m = new_frame();
                let mut f = m.init_root::<lane_frame::Builder>();
                f.set_exchange(id);
                f.set_failed("closed through the supervisor");
                (&s).write_all(&encode(&m)).await.unwrap();
                futures::future::pending::<()>().await;
            },
            |lane| async move {
                assert_eq!(status(&lane.exchange(b"k", get).await.unwrap()), 204);
                match lane.exchange(b"k", get).await {
                    Err(LaneError::Failed(why)) => assert!(why.contains("closed through the supervisor"), "{why}"),
                    other => panic!("expected the bridge's failure, got {:?}", other.map(|_| ())),
                }
                assert!(lane.is_live(), "a failed exchange leaves the lane open");
            },
        );
    }

    /// Each reply breaks the contract; the exchange in flight must end as `Ended` and the lane
    /// must not be used again.
    fn ends_the_lane(reply: Vec<u8>) {
        with_fake_bridge(
            move |s| async move {
                next_frame(&s).await;
                (&s).write_all(&reply).await.unwrap();
                futures::future::pending::<()>().await;
            },
            |lane| async move {
                assert!(matches!(lane.exchange(b"k", get).await, Err(LaneError::Ended)));
                assert!(!lane.is_live());
                assert!(matches!(lane.exchange(b"k", get).await, Err(LaneError::Ended)));
            },
        );
    }

    #[test]
    fn a_frame_over_the_limit_ends_the_lane() {
        // A segment table declaring one segment of 32 Ki + 1 words: refused before it is read.
        let mut huge = 0u32.to_le_bytes().to_vec();
        huge.extend((MAX_FRAME_WORDS as u32 + 1).to_le_bytes());
        ends_the_lane(huge);
    }

    #[test]
    fn garbage_ends_the_lane() {
        ends_the_lane(vec![0, 0, 0, 0, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    }

    #[test]
    fn a_frame_only_the_server_sends_ends_the_lane() {
        let mut m = new_frame();
        m.init_root::<lane_frame::Builder>().set_cancel(());
        ends_the_lane(encode(&m));
    }

    #[test]
    fn a_closed_connection_ends_the_lane() {
        with_fake_bridge(
            |s| async move {
                next_frame(&s).await;
                drop(s);
            },
            |lane| async move {
                assert!(matches!(lane.exchange(b"k", get).await, Err(LaneError::Ended)));
                assert!(!lane.is_live());
            },
        );
    }

    #[test]
    fn dropping_an_exchange_sends_cancel() {
        let (tx, rx) = oneshot::channel::<(u32, u32)>();
        with_fake_bridge(
            move |s| async move {
                let first = next_frame(&s).await.get_root::<lane_frame::Reader>().unwrap().get_exchange();
                let f = next_frame(&s).await;
                let f = f.get_root::<lane_frame::Reader>().unwrap();
                assert!(matches!(f.which(), Ok(lane_frame::Cancel(()))), "the second frame is a cancel");
                let _ = tx.send((first, f.get_exchange()));
            },
            |lane| async move {
                let exchange = Box::pin(lane.exchange(b"k", get));
                let timeout = Box::pin(async_io::Timer::after(Duration::from_millis(50)));
                assert!(matches!(futures::future::select(exchange, timeout).await, futures::future::Either::Right(_)));
                // The exchange future was dropped with the select: a cancel follows its request.
                let (first, cancelled) = rx.await.expect("the fake bridge saw a cancel");
                assert_eq!(first, cancelled);
            },
        );
    }
}
