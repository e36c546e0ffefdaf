//! Passing calls on to another capability whatever its interface, keeping the one pipelining
//! contract capnp-rpc 0.27 cannot carry across a vat that only forwards a call (it has no tail
//! calls): `WebSession.request`'s `requestBody`, which a caller with a streamed body writes to
//! through promise pipelining while it waits for the response. A plain forward would make
//! that pipelined capability wait for the response, and the callee waits for the body.
//! Used by the server's revocation membranes and by the supervisor, which stands between a
//! grain and every capability the grain holds.

use crate::web_session_capnp::{request, web_session};
use capnp::any_pointer;
use capnp::capability::{DispatchCallResult, FromClientHook, FromServer, Params, Promise, Results};
use capnp::private::capability::ClientHook;
use capnp::traits::HasTypeId;
use std::rc::Rc;

/// Whether `params` are `WebSession.request` params whose body is `streamed`.
fn is_streamed_request(interface_id: u64, method_id: u16, params: &Params<any_pointer::Owned>) -> bool {
    if interface_id != <web_session::Client as HasTypeId>::TYPE_ID || method_id != 0 {
        return false;
    }
    let Ok(p) = params.get().and_then(|p| p.get_as::<web_session::request_params::Reader<'_>>()) else { return false };
    matches!(p.get_request().map(|r| r.get_body().which()), Ok(Ok(request::body::Streamed(_))))
}

/// Sends the call `(interface_id, method_id, params)` to `inner` and copies its answer into
/// `results`; for a streamed `WebSession.request`, `requestBody` is handed on at once.
pub async fn forward_call(
    inner: capnp::capability::Client,
    interface_id: u64,
    method_id: u16,
    params: Params<any_pointer::Owned>,
    mut results: Results<any_pointer::Owned>,
) -> Result<(), capnp::Error> {
    let mut request = inner.new_call::<any_pointer::Owned, any_pointer::Owned>(interface_id, method_id, None);
    request.get().set_as(params.get()?)?;
    let streamed = is_streamed_request(interface_id, method_id, &params);
    drop(params);
    let sent = request.send();
    if streamed {
        let body = sent.pipeline.get_pointer_field(0).as_cap();
        let mut typed = results.get().init_as::<web_session::request_results::Builder<'_>>();
        typed.set_request_body(FromClientHook::new(body));
        results.set_pipeline()?;
    }
    let response = sent.promise.await?;
    if streamed {
        // The results already hold `requestBody`; overwriting the whole struct would have to
        // zero a capability pointer, which capnp 0.27 cannot: set the rest.
        let answer = response.get()?.get_as::<web_session::request_results::Reader<'_>>()?;
        results.get().get_as::<web_session::request_results::Builder<'_>>()?.set_response(answer.get_response()?)?;
    } else {
        results.get().set_as(response.get()?)?;
    }
    Ok(())
}

/// A capability that passes every call on to `inner` (see the module documentation).
pub struct PassThrough {
    pub inner: capnp::capability::Client,
}

/// capnp-rpc's dispatch for a [`PassThrough`].
#[derive(Clone)]
pub struct PassThroughDispatch(Rc<PassThrough>);

impl std::ops::Deref for PassThroughDispatch {
    type Target = PassThrough;
    fn deref(&self) -> &PassThrough {
        &self.0
    }
}

impl capnp::capability::Server for PassThroughDispatch {
    fn dispatch_call(self, interface_id: u64, method_id: u16, params: Params<any_pointer::Owned>, results: Results<any_pointer::Owned>) -> DispatchCallResult {
        let inner = self.0.inner.clone();
        DispatchCallResult::new(Promise::from_future(forward_call(inner, interface_id, method_id, params, results)), false)
    }

    fn as_ptr(&self) -> usize {
        Rc::as_ptr(&self.0) as usize
    }
}

/// The client side of a pass-through, only so capnp-rpc can build its local client.
pub struct PassThroughClient(Box<dyn ClientHook>);

impl FromClientHook for PassThroughClient {
    fn new(hook: Box<dyn ClientHook>) -> Self {
        PassThroughClient(hook)
    }
    fn into_client_hook(self) -> Box<dyn ClientHook> {
        self.0
    }
    fn as_client_hook(&self) -> &dyn ClientHook {
        self.0.as_ref()
    }
}

impl FromServer<PassThrough> for PassThroughClient {
    type Dispatch = PassThroughDispatch;
    fn from_server(s: Rc<PassThrough>) -> PassThroughDispatch {
        PassThroughDispatch(s)
    }
}

/// A client for `pass`; its hook's `get_ptr()` is `Rc::as_ptr(&pass)`, so a registry can
/// recognise it when it comes back.
pub fn pass_through_client(pass: Rc<PassThrough>) -> capnp::capability::Client {
    let client: PassThroughClient = capnp_rpc::new_client_from_rc(pass);
    capnp::capability::Client::new(client.into_client_hook())
}
