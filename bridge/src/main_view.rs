//! `MainView`: the bridge's bootstrap capability for the supervisor. Sessions' contexts are
//! kept for the local API's claims; delivered mail goes to the grain's Maildir; `provide` goes to
//! the app's `AppObjects`.

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
        let params = params.get()?;
        let session_params = params.get_params()?;
        let headers = SessionHeaders::new(session_params, &self.bridge.config)?;
        let id = session_params.get_session_id()?.to_str().map_err(|_| capnp::Error::failed("sessionId is not UTF-8".into()))?;
        if !id.is_empty() {
            self.bridge.platform.remember_session(id, params.get_context()?);
        }
        let session = WebSessionImpl::new(self.bridge.clone(), headers);
        let (session, direct_key) = crate::direct::open_session(&self.bridge, session)?;
        let mut r = results.get();
        r.set_session(session);
        r.set_direct_key(&direct_key);
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

    async fn deliver_mail(
        self: capnp::capability::Rc<Self>,
        params: main_view::DeliverMailParams,
        _: main_view::DeliverMailResults,
    ) -> Result<(), capnp::Error> {
        let data = params.get()?.get_message()?.get_data()?.to_vec();
        let path = crate::maildir::deliver_async(self.bridge.config.maildir.clone(), data)
            .await
            .map_err(|e| capnp::Error::failed(e.to_string()))?;
        eprintln!("granary-bridge: delivered mail to {}", path.display());
        Ok(())
    }

    async fn provide(
        self: capnp::capability::Rc<Self>,
        params: main_view::ProvideParams,
        results: main_view::ProvideResults,
    ) -> Result<(), capnp::Error> {
        self.bridge.objects.provide(params, results).await
    }
}
