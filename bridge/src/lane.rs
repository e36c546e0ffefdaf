//! Request lanes (SPEC.md, "Request lanes"): connections to the direct web channel that begin
//! with `GRLANE01` carry `LaneFrame`s instead of RPC. Each `request` frame is one exchange
//! with the app through the same session object, checks and answer code as
//! `WebSession.request`; a streamed response body is parked for `WebChannel.responseBody`.
//!
//! Nothing read here is trusted: a frame over the limit, malformed, or of a kind only the
//! bridge sends, ends the lane (the server then answers its exchanges in flight with 502).

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::Duration;

use async_io::{Async, Timer};
use futures::channel::mpsc;
use futures::future::{AbortHandle, Abortable};
use futures::AsyncReadExt;
use granary_schema::grain_capnp::lane_frame;
use granary_schema::lane::{encode, new_frame, read_frame, write_frames, PREAMBLE};
use granary_schema::web_session_capnp::request;

use crate::body::ReqBody;
use crate::session::{refuse, BodyPlan};
use crate::Bridge;

/// Whether a connection just accepted on the direct channel is a lane: its first 8 bytes are
/// the preamble (peeked, so an RPC connection is left untouched). Waits at most 5 s for them.
pub async fn is_lane(stream: &Async<UnixStream>) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let ready = futures::future::select(Box::pin(stream.readable()), Box::pin(Timer::at(deadline))).await;
        if matches!(ready, futures::future::Either::Right(_)) {
            return false;
        }
        let mut head = [0u8; 8];
        let flags = rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT;
        match rustix::net::recv(stream.get_ref(), &mut head, flags) {
            Ok((n, _)) if n == 0 => return false,
            Ok((n, _)) if head[..n] != PREAMBLE[..n] => return false,
            Ok((n, _)) if n == PREAMBLE.len() => return true,
            // A prefix of the preamble so far: wait for the rest.
            Ok(_) => {
                Timer::after(Duration::from_millis(1)).await;
            }
            Err(rustix::io::Errno::AGAIN) => {}
            Err(_) => return false,
        };
    }
}

/// Serves one lane until the server closes it or breaks the contract.
pub async fn serve(stream: Async<UnixStream>, bridge: Rc<Bridge>) {
    let (r, w) = granary_schema::socket::Socket::from(stream).split();
    let mut r = futures::io::BufReader::new(r);
    let mut preamble = [0u8; 8];
    if r.read_exact(&mut preamble).await.is_err() {
        return;
    }
    let (tx, rx) = mpsc::unbounded();
    let executor = bridge.app.executor().clone();
    let writer = executor.spawn(async move {
        let _ = write_frames(w, rx).await;
    });
    let in_flight: Rc<RefCell<HashMap<u32, AbortHandle>>> = Rc::default();
    loop {
        let frame = match read_frame(&mut r).await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                eprintln!("granary-bridge: a request lane broke its contract ({e}); closing it");
                break;
            }
        };
        let Ok(f) = frame.get_root::<lane_frame::Reader>() else {
            eprintln!("granary-bridge: a malformed lane frame; closing the lane");
            break;
        };
        let id = f.get_exchange();
        match f.which() {
            Ok(lane_frame::Request(_)) => {
                let (abort, registration) = AbortHandle::new_pair();
                in_flight.borrow_mut().insert(id, abort);
                let (tx, bridge, in_flight) = (tx.clone(), bridge.clone(), in_flight.clone());
                executor
                    .spawn(async move {
                        if let Ok(answer) = Abortable::new(exchange(&bridge, id, frame), registration).await {
                            let _ = tx.unbounded_send(answer);
                        }
                        in_flight.borrow_mut().remove(&id);
                    })
                    .detach();
            }
            Ok(lane_frame::Cancel(())) => {
                if let Some(abort) = in_flight.borrow_mut().remove(&id) {
                    abort.abort();
                }
            }
            _ => {
                eprintln!("granary-bridge: a lane frame of a kind the server never sends; closing the lane");
                break;
            }
        }
    }
    // The server is gone or broke the contract: drop its exchanges and the writer.
    for (_, abort) in in_flight.borrow_mut().drain() {
        abort.abort();
    }
    drop(tx);
    drop(writer);
}

/// One exchange: the encoded `response` or `failed` frame.
async fn exchange(bridge: &Rc<Bridge>, id: u32, frame: capnp::message::Reader<capnp::serialize::OwnedSegments>) -> Vec<u8> {
    let mut out = new_frame();
    let mut f = out.init_root::<lane_frame::Builder>();
    f.set_exchange(id);
    if let Err(why) = answer(bridge, &frame, f.reborrow()).await {
        f.set_failed(why.as_str());
    }
    encode(&out)
}

async fn answer(bridge: &Rc<Bridge>, frame: &capnp::message::Reader<capnp::serialize::OwnedSegments>, f: lane_frame::Builder<'_>) -> Result<(), String> {
    let malformed = |e: capnp::Error| format!("malformed lane request: {e}");
    let lane_frame::Request(r) = frame.get_root::<lane_frame::Reader>().map_err(malformed)?.which().map_err(|_| "malformed lane frame")? else {
        unreachable!("only requests are answered");
    };
    let r = r.map_err(malformed)?;
    let session = bridge.direct.get(r.get_direct_key().map_err(malformed)?).ok_or_else(|| crate::direct::closed().extra)?;
    let req: request::Reader<'_> = r.get_request().map_err(malformed)?;
    let mut resp = f.init_response();
    let mut prepared = match session.prepare(req) {
        Ok(p) => p,
        Err((status, why)) => {
            refuse(resp.init_response(), status, &why);
            return Ok(());
        }
    };
    let body = match std::mem::replace(&mut prepared.body, BodyPlan::None) {
        BodyPlan::None => ReqBody::Empty,
        BodyPlan::Inline(b) => ReqBody::Full(Some(b)),
        BodyPlan::Streamed(_) => return Err("a lane carries no streamed request body; use WebSession.request".into()),
    };
    if let Some((body, _)) = session.respond(prepared, body, resp.reborrow().init_response()).await {
        let ticket = bridge.direct.park(body, bridge.app.executor()).map_err(|e| format!("no randomness for a ticket: {e}"))?;
        resp.set_body_ticket(&ticket);
    }
    Ok(())
}
