//! The capabilities a grain holds, as the supervisor passes them on: every capability the app
//! receives from the platform (a `restore`, a `claimRequest`) is a pass-through made here, so
//! WebSession's pipelined request body works across this process (see
//! `granary_schema::forward`), and a capability the app hands back to `save` is recognised and
//! unwrapped, so the server sees its own object again (it saves only capabilities it made).
//! Revocation is the server's membrane's job, behind each pass-through.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use capnp::capability::Rc as CapRc;
use capnp::Error;
use granary_schema::forward::{pass_through_client, PassThrough};
use granary_schema::grain_capnp::session_context;

/// The pass-throughs this supervisor made, by address.
#[derive(Clone, Default)]
pub(crate) struct HeldCaps(Rc<RefCell<HashMap<usize, Weak<PassThrough>>>>);

impl HeldCaps {
    /// `inner` as the app should hold it.
    pub(crate) fn wrap(&self, inner: capnp::capability::Client) -> capnp::capability::Client {
        let pass = Rc::new(PassThrough { inner });
        let mut map = self.0.borrow_mut();
        map.retain(|_, w| w.strong_count() > 0);
        map.insert(Rc::as_ptr(&pass) as usize, Rc::downgrade(&pass));
        pass_through_client(pass)
    }

    /// What `client` (from the app) stands for: the platform's capability if it is one of
    /// ours, else `client` itself (the server then refuses to save it).
    pub(crate) async fn unwrap(&self, client: capnp::capability::Client) -> capnp::capability::Client {
        let mut hook = client.hook.add_ref();
        if hook.when_resolved().await.is_err() {
            return client;
        }
        while let Some(resolved) = hook.get_resolved() {
            hook = resolved;
        }
        let found = self.0.borrow().get(&hook.get_ptr()).and_then(Weak::upgrade);
        match found {
            Some(pass) => pass.inner.clone(),
            None => client,
        }
    }
}

/// The app's view of a session's `SessionContext`: claimed capabilities come wrapped.
pub(crate) struct ContextWrapper {
    pub(crate) inner: session_context::Client,
    pub(crate) caps: HeldCaps,
}

impl session_context::Server for ContextWrapper {
    async fn claim_request(self: CapRc<Self>, params: session_context::ClaimRequestParams, mut results: session_context::ClaimRequestResults) -> Result<(), Error> {
        let mut req = self.inner.claim_request_request();
        req.set(params.get()?)?;
        let reply = req.send().promise.await?;
        let cap: capnp::capability::Client = reply.get()?.get_cap().get_as_capability()?;
        results.get().init_cap().set_as_capability(self.caps.wrap(cap).hook);
        Ok(())
    }

    async fn fulfill_request(self: CapRc<Self>, params: session_context::FulfillRequestParams, _: session_context::FulfillRequestResults) -> Result<(), Error> {
        let p = params.get()?;
        let mut req = self.inner.fulfill_request_request();
        req.set(p)?;
        // A chooser page fulfils with no capability (the platform makes it): pass null on.
        if !p.get_cap().is_null() {
            let cap = self.caps.unwrap(p.get_cap().get_as_capability()?).await;
            req.get().init_cap().set_as_capability(cap.hook);
        }
        req.send().promise.await?;
        Ok(())
    }

    async fn offer(self: CapRc<Self>, params: session_context::OfferParams, _: session_context::OfferResults) -> Result<(), Error> {
        let p = params.get()?;
        let mut req = self.inner.offer_request();
        req.set(p)?;
        // An offer of the grain's own API carries no capability (the platform makes the key).
        if !p.get_cap().is_null() {
            let cap = self.caps.unwrap(p.get_cap().get_as_capability()?).await;
            req.get().init_cap().set_as_capability(cap.hook);
        }
        req.send().promise.await?;
        Ok(())
    }
}
