//! `MainView`: the bridge's bootstrap capability for the supervisor.

use std::rc::Rc;

use granary_schema::grain_capnp::main_view;

use crate::headers::SessionHeaders;
use crate::session::WebSessionImpl;
use crate::Bridge;

/// Opens WebSessions onto the app, one per `newSession`, each bound to its session's identity.
pub struct MainViewImpl {
    bridge: Rc<Bridge>,
}

impl MainViewImpl {
    /// The MainView of the app behind `bridge`.
    pub fn new(bridge: Rc<Bridge>) -> Self {
        Self { bridge }
    }
}

impl main_view::Server for MainViewImpl {
    async fn new_session(
        self: capnp::capability::Rc<Self>,
        params: main_view::NewSessionParams,
        mut results: main_view::NewSessionResults,
    ) -> Result<(), capnp::Error> {
        let headers = SessionHeaders::new(params.get()?.get_params()?, &self.bridge.config)?;
        let session = WebSessionImpl::new(self.bridge.clone(), headers);
        results.get().set_session(capnp_rpc::new_client(session));
        Ok(())
    }

    async fn restore(
        self: capnp::capability::Rc<Self>,
        _: main_view::RestoreParams,
        _: main_view::RestoreResults,
    ) -> Result<(), capnp::Error> {
        Err(capnp::Error::failed("an HTTP app behind granary-bridge exports no persistent capabilities".into()))
    }

    async fn drop(self: capnp::capability::Rc<Self>, _: main_view::DropParams, _: main_view::DropResults) -> Result<(), capnp::Error> {
        Err(capnp::Error::failed("an HTTP app behind granary-bridge exports no persistent capabilities".into()))
    }
}
