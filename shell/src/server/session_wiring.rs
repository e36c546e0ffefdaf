//! What the gateway asks of the server: is a session still allowed, and its `WebSession`
//! (from the grain's main view, started on demand).

use super::Server;
use crate::gateway::UiSession;
use crate::powerbox_rpc::{GrainCoreImpl, SessionContextImpl};
use crate::{accounts, apps, grains, sharing};
use granary_schema::grain_capnp::{session_context, session_params};
use granary_schema::supervisor_capnp::grain_core;
use sha2::{Digest, Sha256};

impl Server {
    /// Runs `fut` on the server's executor.
    pub fn spawn(&self, fut: impl std::future::Future<Output = ()> + 'static) {
        self.ex.spawn(fut).detach();
    }

    /// This server, for objects that outlive a request (capabilities handed to grains).
    pub fn me(&self) -> std::rc::Weak<Server> {
        self.me.get().cloned().unwrap_or_default()
    }

    /// The `GrainCore` handed to a grain's supervisor.
    pub fn grain_core(&self, grain_id: &str) -> grain_core::Client {
        capnp_rpc::new_client(GrainCoreImpl { grain_id: grain_id.to_owned(), server: self.me() })
    }

    /// The `SessionContext` of a session of `grain_id` (`session` = the gateway session's id,
    /// or "" for sessions that cannot redeem powerbox claims).
    pub fn session_context(&self, grain_id: &str, session: &str) -> session_context::Client {
        capnp_rpc::new_client(SessionContextImpl { server: self.me(), grain_id: grain_id.to_owned(), session: session.to_owned() })
    }

    /// `Err(why)` if the session may no longer be used: its user is gone or suspended, the
    /// grain is gone or in the trash, or the permissions it was opened with changed (a link
    /// revoked, a role lowered); a reopen then gets the new permissions or is refused.
    /// The answer depends only on the store, so it is reused while nothing was written.
    pub fn session_still_allowed(&self, s: &UiSession) -> Result<(), String> {
        let writes = self.db.write_count();
        if s.allowed_at.get() == Some(writes) {
            return Ok(());
        }
        let answer = self.check_session(s);
        s.allowed_at.set(answer.is_ok().then_some(writes));
        answer
    }

    fn check_session(&self, s: &UiSession) -> Result<(), String> {
        let err = |e: granary_store::Error| e.to_string();
        if let Some(uid) = &s.user_id {
            match self.db.get(&accounts::USERS, uid).map_err(err)? {
                Some(u) if !u.suspended => {}
                _ => return Err("Your account can no longer use this grain.".into()),
            }
        }
        let grain = self.db.get(&grains::GRAINS, &s.grain_id).map_err(err)?.ok_or("This grain was deleted.")?;
        if grain.trashed.is_some() {
            return Err("This grain was moved to the trash.".into());
        }
        let app = apps::get(&self.db, &grain.package_id).map_err(err)?.ok_or("The grain's app was uninstalled.")?;
        let now = self.current_permissions(&grain, &app.manifest, s.user_id.as_deref(), s.link_id.as_deref(), s.reveal).map_err(err)?;
        match now {
            None => Err("Your access to this grain was revoked.".into()),
            Some(p) if p != s.permissions => Err("Your access to this grain changed. Open it again to continue.".into()),
            Some(_) => Ok(()),
        }
    }

    /// Ends every open session of the grain that may no longer be used as it was opened, and
    /// every live capability whose requirements no longer hold.
    pub fn recheck_sessions(&self, grain_id: &str) {
        for s in self.gateway.sessions_of(grain_id) {
            if self.session_still_allowed(&s).is_err() {
                self.gateway.close_where(|x| x.label == s.label);
            }
        }
        self.recheck_capabilities();
    }

    /// Ends every live capability whose requirements no longer hold (the 500 ms timer does
    /// too; this makes a change that ends one take effect at once).
    pub fn recheck_capabilities(&self) {
        let ended = self.powerbox.membranes.recheck(&crate::powerbox_host::ShellWorld { db: &self.db });
        if ended > 0 {
            tracing::info!(ended, "live capabilities ended: a requirement no longer holds");
        }
    }

    /// Ends every open session of a user (suspension), and the capabilities that needed them.
    pub fn close_user_sessions(&self, user_id: &str) -> usize {
        let n = self.gateway.close_where(|s| s.user_id.as_deref() == Some(user_id));
        self.recheck_capabilities();
        n
    }

    /// What a session of `user` (through `link`, revealing or not) may do now.
    pub fn current_permissions(
        &self,
        grain: &grains::Grain,
        m: &granary_grains::manifest::Manifest,
        user: Option<&str>,
        link: Option<&str>,
        reveal: bool,
    ) -> Result<Option<Vec<bool>>, granary_store::Error> {
        match (user, link) {
            (Some(u), _) if reveal || link.is_none() => sharing::user_permissions(&self.db, grain, m, u),
            (_, Some(l)) => sharing::link_permissions(&self.db, grain, m, l),
            (None, None) => Ok(None),
            (Some(_), None) => unreachable!("covered above"),
        }
    }

    /// The session's `WebSession`, made on first use.
    pub async fn web_session(&self, s: &UiSession) -> Result<crate::gateway::GrainSession, String> {
        // A cached session needs no store read: the gateway checked the session is still
        // allowed (a deleted or trashed grain closes its sessions) just before.
        let cached = || {
            let ws = s.web_session.borrow().clone()?;
            self.runner.keep_alive(&self.ex, &s.grain_id, self.grain_core(&s.grain_id));
            Some(ws)
        };
        if let Some(ws) = cached() {
            return Ok(ws);
        }
        // One request makes the session; those that arrive meanwhile use it.
        let _making = s.making_session.lock().await;
        if let Some(ws) = cached() {
            return Ok(ws);
        }
        let grain = self.db.get(&grains::GRAINS, &s.grain_id).map_err(|e| e.to_string())?.ok_or("This grain no longer exists.")?;
        let core = self.grain_core(&grain.id);
        let app = apps::get(&self.db, &grain.package_id).map_err(|e| e.to_string())?.ok_or("The grain's app is not installed any more.")?;
        let user = match (&s.user_id, s.reveal) {
            (Some(uid), true) => Some(self.db.get(&accounts::USERS, uid).map_err(|e| e.to_string())?.ok_or("Your account no longer exists.")?),
            _ => None,
        };
        let limits = self.db.get(&apps::APP_LIMITS, &app.app_id).map_err(|e| e.to_string())?;
        // A view whose app exited since (the supervisor may not have noticed yet when it
        // handed it out, e.g. right after a crash) refuses with `Disconnected` and "call
        // getMainView again": do so once, which restarts the app.
        let mut attempt = 0;
        let reply = loop {
            attempt += 1;
            let view = self.runner.main_view(&self.ex, &grain, &app, limits).await.map_err(|e| format!("{e:#}"))?;
            self.runner.keep_alive(&self.ex, &grain.id, core.clone());
            match self.new_session(&view, s, &grain, user.as_ref()).await {
                Err(e) if e.kind == capnp::ErrorKind::Disconnected && attempt == 1 => {
                    tracing::info!("grain {}: {e}", grain.id);
                }
                r => break r.map_err(|e| format!("The app did not start: {}", e.extra))?,
            }
        };
        let ws = reply.get().and_then(|r| r.get_session()).map_err(|e| e.to_string())?;
        let direct_key = reply.get().and_then(|r| r.get_direct_key()).map_err(|e| e.to_string())?;
        // The data path skips the supervisor when the app offers a direct channel; the session
        // as the supervisor returned it is held meanwhile (SPEC.md, "Running grains").
        let direct = match direct_key.is_empty() {
            true => None,
            false => self.runner.direct_session(&self.ex, &grain.id, direct_key).await,
        };
        if !grain.initialized {
            let _ = grains::update(&self.db, &grain.id, |g| {
                g.initialized = true;
                Ok(())
            });
        }
        let session = match direct {
            Some(d) => crate::gateway::GrainSession { used: d, direct: Some(crate::gateway::DirectSession::new(direct_key, ws)) },
            None => crate::gateway::GrainSession { used: ws, direct: None },
        };
        *s.web_session.borrow_mut() = Some(session.clone());
        Ok(session)
    }

    /// `MainView.newSession` for the session's user (`None`: anonymous).
    async fn new_session(
        &self,
        view: &granary_schema::grain_capnp::main_view::Client,
        s: &UiSession,
        grain: &grains::Grain,
        user: Option<&accounts::User>,
    ) -> Result<capnp::capability::Response<granary_schema::grain_capnp::main_view::new_session_results::Owned>, capnp::Error> {
        let mut req = view.new_session_request();
        {
            let mut p = req.get();
            p.set_context(self.session_context(&grain.id, &s.label));
            let mut params: session_params::Builder<'_> = p.init_params();
            let mut u = params.reborrow().init_user();
            match &user {
                Some(user) => {
                    u.set_id(stable_user_id(&grain.id, &user.id).as_str());
                    u.set_display_name(user.display_name.as_str());
                    u.set_handle(user.username.as_str());
                }
                // Anonymous: no id, no handle; the name is what the app may show.
                None => u.set_display_name("Anonymous visitor"),
            }
            let mut perms = params.reborrow().init_permissions(s.permissions.len() as u32);
            for (i, p) in s.permissions.iter().enumerate() {
                perms.set(i as u32, *p);
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
