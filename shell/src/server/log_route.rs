//! `GET /grains/<id>/log` (owner only): the grain's log as a live text stream. While the
//! grain runs, its supervisor's `watchLog` feeds the response (the last 64 KiB, then new
//! output as it is written) until the browser goes away; a stopped grain's log is read from
//! its files.

use super::http::{full, response, BoxError, Resp};
use super::Server;
use crate::grains::GrainDirs;
use granary_bridge::body::{ReqBody, RequestBodySink};
use granary_schema::util_capnp::handle;
use hyper::body::{Body, Bytes, Frame, SizeHint};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::StatusCode;
use std::pin::Pin;
use std::task::{Context, Poll};

const BACKLOG: u64 = 64 * 1024;

pub async fn log(server: &Server, grain_id: &str) -> anyhow::Result<Resp> {
    let mut r = match server.runner.supervisor(grain_id) {
        Some(sup) => {
            let (sink, stream) = RequestBodySink::new(None, u64::MAX);
            let mut req = sup.watch_log_request();
            req.get().set_backlog_bytes(BACKLOG);
            req.get().set_sink(capnp_rpc::new_client(sink));
            let reply = req.send().promise.await?;
            let handle = reply.get()?.get_handle()?;
            let body = Watching { body: ReqBody::Stream(stream), _handle: handle };
            let mut r = response(StatusCode::OK, "text/plain; charset=utf-8", "");
            *r.body_mut() = Box::pin(body);
            r
        }
        None => {
            let dirs = GrainDirs::new(&server.data_dir, grain_id);
            let mut text = std::fs::read(dirs.root.join("log.1")).unwrap_or_default();
            text.extend(std::fs::read(dirs.root.join("log")).unwrap_or_default());
            let start = text.len().saturating_sub(BACKLOG as usize);
            let mut body = text[start..].to_vec();
            if body.is_empty() {
                body = b"(the grain has not written anything yet)\n".to_vec();
            }
            body.extend_from_slice(b"\n[granary: the grain is stopped; open it to start it]\n");
            let mut r = response(StatusCode::OK, "text/plain; charset=utf-8", "");
            *r.body_mut() = full(body);
            r
        }
    };
    r.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r.headers_mut().insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    Ok(r)
}

/// The log stream, holding the watch open until the response is dropped.
struct Watching {
    body: ReqBody,
    _handle: handle::Client,
}

impl Body for Watching {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.body).poll_frame(cx).map_err(|e| -> BoxError { Box::new(e) })
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
