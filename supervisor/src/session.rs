//! The supervisor's wrapper around each `WebSession` the app returns: every call counts as
//! activity while it runs, and a streamed request body is passed on by promise pipelining
//! *through* the supervisor.
//!
//! The second point is why the wrapper exists: capnp-rpc 0.27 does not propagate a callee's
//! early `set_pipeline` across a vat that merely forwards a call (the forwarding vat's answer
//! only resolves when the forwarded call returns). A server writing an upload to the
//! pipelined `requestBody` of a call the supervisor forwards would wait for the response,
//! while the app waits for the body. The wrapper makes its own call to the app, takes
//! `requestBody` from that call's pipeline, and sets its own pipeline at once.

use std::rc::Rc;

use capnp::capability::Rc as CapRc;
use capnp::Error;
use granary_schema::web_session_capnp::{request, web_session};

use crate::lifecycle::Shared;

pub(crate) struct SessionWrapper {
    pub(crate) inner: web_session::Client,
    pub(crate) shared: Rc<Shared>,
}

impl web_session::Server for SessionWrapper {
    async fn request(self: CapRc<Self>, params: web_session::RequestParams, mut results: web_session::RequestResults) -> Result<(), Error> {
        let _busy = self.shared.busy();
        let mut req = self.inner.request_request();
        req.set(params.get()?)?;
        let streamed = matches!(params.get()?.get_request()?.get_body().which(), Ok(request::body::Streamed(_)));
        let call = req.send();
        if streamed {
            results.get().set_request_body(call.pipeline.get_request_body());
            results.set_pipeline()?;
        }
        let reply = call.promise.await?;
        results.get().set_response(reply.get()?.get_response()?)?;
        Ok(())
    }

    async fn open_web_socket(
        self: CapRc<Self>,
        params: web_session::OpenWebSocketParams,
        mut results: web_session::OpenWebSocketResults,
    ) -> Result<(), Error> {
        let _busy = self.shared.busy();
        let mut req = self.inner.open_web_socket_request();
        req.set(params.get()?)?;
        let reply = req.send().promise.await?;
        results.set(reply.get()?)
    }
}
