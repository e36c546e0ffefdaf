//! What the gateway asks of the server: is a session still allowed, and its `WebSession`
//! (from the grain's main view, started on demand).

use super::Server;
use crate::gateway::UiSession;
use crate::runner::GrainCoreImpl;
use crate::{accounts, apps, grains};
use granary_schema::grain_capnp::{session_context, session_params};
use granary_schema::web_session_capnp::web_session;
use sha2::{Digest, Sha256};

impl Server {
    /// Runs `fut` on the server's executor.
    pub fn spawn(&self, fut: impl std::future::Future<Output = ()> + 'static) {
        self.ex.spawn(fut).detach();
    }

    /// `Err(why)` if the session's user may no longer use its grain (the grain is gone or in
    /// the trash, the user is gone or suspended, or no longer has access).
    pub fn session_still_allowed(&self, s: &UiSession) -> Result<(), String> {
        let user = self.db.get(&accounts::USERS, &s.user_id).map_err(|e| e.to_string())?;
        match user {
            Some(u) if !u.suspended => {}
            _ => return Err("Your account can no longer use this grain.".into()),
        }
        match grains::owned(&self.db, &s.user_id, &s.grain_id).map_err(|e| e.to_string())? {
            Some(g) if g.trashed.is_none() => Ok(()),
            Some(_) => Err("This grain was moved to the trash.".into()),
            None => Err("This grain was deleted or is no longer shared with you.".into()),
        }
    }

    /// The session's `WebSession`, made on first use.
    pub async fn web_session(&self, s: &UiSession) -> Result<web_session::Client, String> {
        let grain = grains::owned(&self.db, &s.user_id, &s.grain_id).map_err(|e| e.to_string())?.ok_or("This grain no longer exists.")?;
        let core: granary_schema::supervisor_capnp::grain_core::Client = capnp_rpc::new_client(GrainCoreImpl {
            grain_id: grain.id.clone(),
            db: self.db.clone(),
            gateway: self.gateway.grain_reset(),
        });
        if let Some(ws) = s.web_session.borrow().clone() {
            self.runner.keep_alive(&self.ex, &grain.id, core);
            return Ok(ws);
        }
        let app = apps::get(&self.db, &grain.package_id).map_err(|e| e.to_string())?.ok_or("The grain's app is not installed any more.")?;
        let user = self.db.get(&accounts::USERS, &s.user_id).map_err(|e| e.to_string())?.ok_or("Your account no longer exists.")?;
        // A view whose app exited since (the supervisor may not have noticed yet when it
        // handed it out, e.g. right after a crash) refuses with `Disconnected` and "call
        // getMainView again": do so once, which restarts the app.
        let mut attempt = 0;
        let reply = loop {
            attempt += 1;
            let view = self.runner.main_view(&self.ex, &grain, &app).await.map_err(|e| format!("{e:#}"))?;
            self.runner.keep_alive(&self.ex, &grain.id, core.clone());
            match self.new_session(&view, s, &grain, &app, &user).await {
                Err(e) if e.kind == capnp::ErrorKind::Disconnected && attempt == 1 => {
                    tracing::info!("grain {}: {e}", grain.id);
                }
                r => break r.map_err(|e| format!("The app did not start: {}", e.extra))?,
            }
        };
        let ws = reply.get().and_then(|r| r.get_session()).map_err(|e| e.to_string())?;
        if !grain.initialized {
            let _ = grains::update(&self.db, &grain.id, |g| {
                g.initialized = true;
                Ok(())
            });
        }
        *s.web_session.borrow_mut() = Some(ws.clone());
        Ok(ws)
    }

    /// `MainView.newSession` for the session's user.
    async fn new_session(
        &self,
        view: &granary_schema::grain_capnp::main_view::Client,
        s: &UiSession,
        grain: &grains::Grain,
        app: &apps::InstalledApp,
        user: &accounts::User,
    ) -> Result<capnp::capability::Response<granary_schema::grain_capnp::main_view::new_session_results::Owned>, capnp::Error> {
        let mut req = view.new_session_request();
        {
            let mut p = req.get();
            p.set_context(capnp_rpc::new_client(NoPowerbox));
            let mut params: session_params::Builder<'_> = p.init_params();
            let mut u = params.reborrow().init_user();
            u.set_id(stable_user_id(&grain.id, &user.id).as_str());
            u.set_display_name(user.display_name.as_str());
            u.set_handle(user.username.as_str());
            let n = app.manifest.permissions.len() as u32;
            let mut perms = params.reborrow().init_permissions(n);
            // The owner holds every permission (sharing narrows this for others).
            for i in 0..n {
                perms.set(i, true);
            }
            params.set_session_id(s.label.as_str());
            params.set_tab_id(s.label.as_str());
            params.set_base_path(s.origin.as_str());
            params.set_kind(session_params::Kind::Ui);
        }
        req.send().promise.await
    }

    /// The grain's supervisor went away: forget its sessions' capabilities so the next
    /// request starts it again.
    pub fn grain_went_away(&self, grain_id: &str) {
        self.gateway.reset_grain(grain_id);
    }
}

/// The id a grain sees for a user: stable per user per grain, never the account id.
pub fn stable_user_id(grain_id: &str, user_id: &str) -> String {
    let digest = Sha256::digest(format!("granary user id\0{grain_id}\0{user_id}").as_bytes());
    accounts::hex(&digest[..16])
}

/// The session context until the powerbox exists: every request is refused clearly.
struct NoPowerbox;

fn no_powerbox() -> capnp::Error {
    capnp::Error::unimplemented("the powerbox is not available on this server yet".into())
}

impl session_context::Server for NoPowerbox {
    async fn claim_request(self: capnp::capability::Rc<Self>, _: session_context::ClaimRequestParams, _: session_context::ClaimRequestResults) -> Result<(), capnp::Error> {
        Err(no_powerbox())
    }
    async fn fulfill_request(self: capnp::capability::Rc<Self>, _: session_context::FulfillRequestParams, _: session_context::FulfillRequestResults) -> Result<(), capnp::Error> {
        Err(no_powerbox())
    }
    async fn offer(self: capnp::capability::Rc<Self>, _: session_context::OfferParams, _: session_context::OfferResults) -> Result<(), capnp::Error> {
        Err(no_powerbox())
    }
}
