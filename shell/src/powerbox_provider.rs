//! A grain's API as a capability: an `api` `WebSession` of the grain, opened on first use for
//! the person who granted it (or made the API token), with at most the permissions given,
//! below a path prefix. Used for grain-to-grain grants (behind a membrane, which decides
//! whether calls may pass) and for grain API tokens (SPEC.md, "Powerbox").
//!
//! May touch: the runner (to start the provider grain), the store (read only).
//! Must never: let a path leave the API's prefix.

use crate::server::Server;
use crate::{accounts, apps, grains};
use capnp::capability::Rc as CapRc;
use capnp::Error;
use granary_schema::grain_capnp::{main_view, session_params, user_info};
use granary_schema::util_capnp::byte_stream;
use granary_schema::web_session_capnp::{request, web_session};
use std::cell::RefCell;
use std::rc::{Rc, Weak};

pub struct ProviderSession {
    server: Weak<Server>,
    grain: String,
    path_prefix: String,
    /// At most these permissions (intersected with the person's current ones when the
    /// session opens).
    limit: Vec<bool>,
    user: String,
    session: RefCell<Option<web_session::Client>>,
    /// The session as the supervisor returned it, held while `session` is the same session on
    /// the grain's direct web channel (the bridge keeps it only while this is held).
    held: RefCell<Option<web_session::Client>>,
    /// Held while `session` is being opened, so that calls arriving together share one session
    /// (each opening its own replaced `held` under the others, ending their direct sessions).
    opening: futures::lock::Mutex<()>,
}

/// A provider grain started for a person who granted something of it: the grain, its main
/// view, and what the person may do there now (their current permissions ∩ `limit`).
pub struct ProviderStart {
    pub grain: grains::Grain,
    pub view: main_view::Client,
    pub permissions: Vec<bool>,
    user: accounts::User,
}

impl ProviderStart {
    /// Starts grain `grain_id` (if needed) for `user_id`; `what` names the thing granted
    /// ("API", "object") in the errors, which say what ended the grant.
    pub async fn start(server: &Server, grain_id: &str, user_id: &str, limit: &[bool], what: &str) -> Result<ProviderStart, Error> {
        let fail = |e: String| Error::failed(e);
        let grain = server.db.get(&grains::GRAINS, grain_id).map_err(|e| fail(e.to_string()))?.ok_or_else(|| fail(format!("the grain that provided this {what} was deleted")))?;
        let app = apps::get(&server.db, &grain.package_id).map_err(|e| fail(e.to_string()))?.ok_or_else(|| fail("the providing grain's app is not installed any more".into()))?;
        let user = server.db.get(&accounts::USERS, user_id).map_err(|e| fail(e.to_string()))?.ok_or_else(|| fail(format!("the person who granted this {what} no longer exists")))?;
        let world = crate::powerbox_host::ShellWorld { db: &server.db };
        let current = granary_powerbox::World::user_permissions(&world, user_id, grain_id)
            .ok_or_else(|| fail(format!("revoked: the person who granted this {what} lost their access to the grain providing it")))?;
        let permissions = crate::powerbox_host::intersect(&current, limit);
        let limits = server.db.get(&apps::APP_LIMITS, &app.app_id).map_err(|e| fail(e.to_string()))?;
        let view = server.runner.main_view(&server.ex, &grain, &app, limits).await.map_err(|e| fail(format!("the providing grain did not start: {e:#}")))?;
        server.runner.keep_alive(&server.ex, &grain.id, server.grain_core(&grain.id));
        Ok(ProviderStart { grain, view, permissions, user })
    }

    /// The person as the provider grain knows them (its per-grain user id).
    pub fn write_user(&self, mut user: user_info::Builder<'_>) {
        user.set_id(crate::server::stable_user_id(&self.grain.id, &self.user.id).as_str());
        user.set_display_name(self.user.display_name.as_str());
        user.set_handle(self.user.username.as_str());
    }

    /// Their permissions there, into a list of that length.
    pub fn write_permissions(&self, mut list: capnp::primitive_list::Builder<'_, bool>) {
        for (i, b) in self.permissions.iter().enumerate() {
            list.set(i as u32, *b);
        }
    }
}

impl ProviderSession {
    pub fn new(server: &Rc<Server>, grain: String, path_prefix: String, limit: Vec<bool>, user: String) -> ProviderSession {
        ProviderSession { server: Rc::downgrade(server), grain, path_prefix, limit, user, session: RefCell::new(None), held: RefCell::new(None), opening: futures::lock::Mutex::new(()) }
    }

    /// The provider's path for `path` (which starts with `/`), or why it is refused.
    fn full_path(&self, path: &str) -> Result<String, Error> {
        if !path.starts_with('/') {
            return Err(Error::failed("the path must start with /".into()));
        }
        if granary_bridge::session::has_dot_segment(path) {
            return Err(Error::failed("a path through a grain's API may not contain . or .. segments".into()));
        }
        Ok(format!("{}{}", self.path_prefix.trim_end_matches('/'), path))
    }

    /// The provider grain's API session, opened (and the grain started) on first use.
    async fn session(&self) -> Result<web_session::Client, Error> {
        let server = self.server.upgrade().ok_or_else(|| Error::disconnected("the server is stopping".into()))?;
        // The session of a supervisor that has stopped since (idle, Restart) is dead: open another.
        let live = || self.session.borrow().clone().filter(|_| server.runner.is_running(&self.grain));
        if let Some(s) = live() {
            return Ok(s);
        }
        let _opening = self.opening.lock().await;
        if let Some(s) = live() {
            return Ok(s);
        }
        let started = ProviderStart::start(&server, &self.grain, &self.user, &self.limit, "API").await?;
        let grain = &started.grain;
        let mut req = started.view.new_session_request();
        {
            let mut p = req.get();
            p.set_context(server.session_context(&grain.id, ""));
            let mut params = p.init_params();
            started.write_user(params.reborrow().init_user());
            started.write_permissions(params.reborrow().init_permissions(started.permissions.len() as u32));
            let id = format!("api-{}", accounts::random_hex(12));
            params.set_session_id(id.as_str());
            params.set_tab_id(id.as_str());
            params.set_base_path("");
            params.set_kind(session_params::Kind::Api);
        }
        let reply = req.send().promise.await?;
        let session = reply.get()?.get_session()?;
        // As for UI sessions: the data path skips the supervisor when the app offers a direct
        // channel (SPEC.md, "Running grains").
        let direct_key = reply.get()?.get_direct_key()?;
        let direct = match direct_key.is_empty() {
            true => None,
            false => server.runner.direct_session(&server.ex, &grain.id, direct_key).await,
        };
        let used = match direct {
            Some(d) => {
                *self.held.borrow_mut() = Some(session);
                d
            }
            None => session,
        };
        *self.session.borrow_mut() = Some(used.clone());
        Ok(used)
    }

    fn forget_on_disconnect(&self, e: &Error) {
        if e.kind == capnp::ErrorKind::Disconnected {
            *self.session.borrow_mut() = None;
            *self.held.borrow_mut() = None;
        }
    }

    /// Counts a call as use of the provider grain while it runs (the supervisor does not see
    /// calls on the direct channel).
    fn in_use(&self) -> Option<crate::runner::InUse> {
        let server = self.server.upgrade()?;
        server.runner.in_use(&server.ex, &self.grain)
    }
}

impl web_session::Server for ProviderSession {
    async fn request(self: CapRc<Self>, params: web_session::RequestParams, mut results: web_session::RequestResults) -> Result<(), Error> {
        let p = params.get()?;
        let full = self.full_path(p.get_request()?.get_path()?.to_str()?)?;
        let streamed = matches!(p.get_request()?.get_body().which(), Ok(request::body::Streamed(_)));
        // `requestBody` is handed out before anything is awaited (opening the session may wait
        // for the grain to start): writes the caller pipelined meanwhile, released by capnp-rpc
        // after a wake-up, could be dispatched out of order. This promise queues them in order
        // and passes them on, in order, to the provider's `requestBody` once the call is sent.
        let (body_to, body_from) = futures::channel::oneshot::channel::<byte_stream::Client>();
        if streamed {
            let body: byte_stream::Client = capnp_rpc::new_future_client(async move {
                body_from.await.map_err(|_| Error::failed("the request did not reach the providing grain".into()))
            });
            results.get().set_request_body(body);
            results.set_pipeline()?;
        }
        let session = self.session().await?;
        if let Some(server) = self.server.upgrade() {
            server.runner.keep_alive(&server.ex, &self.grain, server.grain_core(&self.grain));
        }
        let mut req = session.request_request();
        req.set(p)?;
        req.get().get_request()?.set_path(full.as_str());
        let call = req.send();
        if streamed {
            // Pass the upload on by pipelining (see supervisor::session for why).
            let _ = body_to.send(call.pipeline.get_request_body());
        }
        let _in_use = self.in_use();
        let reply = call.promise.await.inspect_err(|e| self.forget_on_disconnect(e))?;
        results.get().set_response(reply.get()?.get_response()?)?;
        Ok(())
    }

    async fn open_web_socket(self: CapRc<Self>, params: web_session::OpenWebSocketParams, mut results: web_session::OpenWebSocketResults) -> Result<(), Error> {
        let p = params.get()?;
        let full = self.full_path(p.get_request()?.get_path()?.to_str()?)?;
        let session = self.session().await?;
        let mut req = session.open_web_socket_request();
        req.set(p)?;
        req.get().get_request()?.set_path(full.as_str());
        let reply = req.send().promise.await.inspect_err(|e| self.forget_on_disconnect(e))?;
        results.set(reply.get()?)
    }
}
