//! Raw Cap'n Proto interfaces grains provide through the powerbox (SPEC.md, "Raw interfaces"):
//! the options a request for a type id gets, and the live object of a `GrainObject` target —
//! made by the provider grain's `MainView.provide` (its app's `AppObjects`), started on first
//! use and made again after the provider grain restarts.
//!
//! May touch: the runner (to start the provider grain), the store (read only).
//! Must never: hand out the provided object itself; `powerbox_host::live_capability` wraps
//! what this makes in a membrane.

use crate::apps::InstalledApp;
use crate::grains::Grain;
use crate::powerbox_host::{holds_all, Pending, PbOption};
use crate::server::Server;
use capnp::any_pointer;
use capnp::capability::{DispatchCallResult, FromClientHook, FromServer, Params, Promise, Results};
use capnp::private::capability::ClientHook;
use capnp::Error;
use granary_powerbox::matching::{self, OwnedDescriptor};
use granary_powerbox::{Requirement, Target};
use std::cell::RefCell;
use std::rc::{Rc, Weak};

/// The options answering request descriptor `index` (`request`) with a raw interface one of
/// `candidates` (the person's grains, their apps and the person's permissions there) provides:
/// each `[[powerbox.provides]] interface` entry whose type id the request names (its value
/// matched against a null offer) and whose permissions the person holds.
pub fn interface_options(index: usize, request: &OwnedDescriptor, candidates: &[(Grain, InstalledApp, Vec<bool>)], user_id: &str) -> Vec<PbOption> {
    let mut out = Vec::new();
    for (g, app, perms) in candidates {
        for entry in app.manifest.provides.iter().filter(|p| p.interface_id != 0) {
            let offer = matching::interface_descriptor(entry.interface_id);
            if matching::offer_matches(request.reader(), offer.reader()).is_none() || !holds_all(perms, &entry.permissions) {
                continue;
            }
            out.push(PbOption {
                id: format!("object:{}:{:016x}:{index}", g.id, entry.interface_id),
                title: g.title.clone(),
                verb_phrase: format!("{} ({})", entry.title, app.manifest.app_title),
                description: format!("The grain gets this object of “{}” for as long as you keep your access to it.", g.title),
                answers: index,
                pending: Pending {
                    target: Target::GrainObject {
                        grain: g.id.clone(),
                        interface_id: entry.interface_id,
                        descriptor: matching::packed_descriptor(request),
                        permissions: entry.permissions.clone(),
                    },
                    display: format!("may use {} in “{}”", entry.title, g.title),
                    requirements: vec![Requirement::UserHasPermissions { user: user_id.to_owned(), grain: g.id.clone(), permissions: entry.permissions.clone() }],
                    granted_by: user_id.to_owned(),
                },
            });
        }
    }
    out
}

/// The object a `GrainObject` grant reaches, as a capability of its interface: every call is
/// passed on to the object `provide` made, which is asked for on the first call (the provider
/// grain started if needed) and again after it was lost (the grain stopped or restarted).
pub struct ProvidedObject {
    server: Weak<Server>,
    grain: String,
    interface_id: u64,
    descriptor: Vec<u8>,
    /// At most these permissions (intersected with the person's current ones).
    limit: Vec<bool>,
    /// The person who chose the provider grain.
    user: String,
    object: RefCell<Option<capnp::capability::Client>>,
}

impl ProvidedObject {
    pub fn new(server: &Rc<Server>, grain: String, interface_id: u64, descriptor: Vec<u8>, limit: Vec<bool>, user: String) -> ProvidedObject {
        ProvidedObject { server: Rc::downgrade(server), grain, interface_id, descriptor, limit, user, object: RefCell::new(None) }
    }

    /// A client for `object`.
    pub fn client(object: ProvidedObject) -> capnp::capability::Client {
        let client: ProvidedObjectClient = capnp_rpc::new_client_from_rc(Rc::new(object));
        capnp::capability::Client::new(client.into_client_hook())
    }

    /// The provided object: the one held, or a new one from the provider's `MainView.provide`.
    async fn object(&self) -> Result<capnp::capability::Client, Error> {
        if let Some(o) = self.object.borrow().clone() {
            return Ok(o);
        }
        let server = self.server.upgrade().ok_or_else(|| Error::disconnected("the server is stopping".into()))?;
        let descriptor = matching::unpack_descriptor(&self.descriptor)
            .map_err(|e| Error::failed(format!("the grant's descriptor is unreadable ({e}); ask the user to grant it again")))?;
        let started = crate::powerbox_provider::ProviderStart::start(&server, &self.grain, &self.user, &self.limit, "object").await?;
        let mut req = started.view.provide_request();
        {
            let mut p = req.get();
            p.set_interface_id(self.interface_id);
            p.set_descriptor(descriptor.reader())?;
            started.write_user(p.reborrow().init_user());
            started.write_permissions(p.init_permissions(started.permissions.len() as u32));
        }
        let reply = req.send().promise.await?;
        let object: capnp::capability::Client = reply.get()?.get_cap().get_as_capability()?;
        *self.object.borrow_mut() = Some(object.clone());
        Ok(object)
    }

    /// After a lost connection the next call asks the provider again.
    fn forget_on_disconnect(&self, e: &Error) {
        if e.kind == capnp::ErrorKind::Disconnected {
            *self.object.borrow_mut() = None;
        }
    }
}

/// capnp-rpc's dispatch for a [`ProvidedObject`]: any interface, any method.
#[derive(Clone)]
pub struct ProvidedObjectDispatch(Rc<ProvidedObject>);

impl std::ops::Deref for ProvidedObjectDispatch {
    type Target = ProvidedObject;
    fn deref(&self) -> &ProvidedObject {
        &self.0
    }
}

impl capnp::capability::Server for ProvidedObjectDispatch {
    fn dispatch_call(self, interface_id: u64, method_id: u16, params: Params<any_pointer::Owned>, results: Results<any_pointer::Owned>) -> DispatchCallResult {
        let me = self.0;
        let call = async move {
            let object = me.object().await?;
            if let Some(server) = me.server.upgrade() {
                // Calls on the object are use of the provider grain.
                server.runner.keep_alive(&server.ex, &me.grain, server.grain_core(&me.grain));
            }
            granary_schema::forward::forward_call(object, interface_id, method_id, params, results).await.inspect_err(|e| me.forget_on_disconnect(e))
        };
        DispatchCallResult::new(Promise::from_future(call), false)
    }

    fn as_ptr(&self) -> usize {
        Rc::as_ptr(&self.0) as usize
    }
}

/// The client side, only so capnp-rpc can build its local client.
pub struct ProvidedObjectClient(Box<dyn ClientHook>);

impl FromClientHook for ProvidedObjectClient {
    fn new(hook: Box<dyn ClientHook>) -> Self {
        ProvidedObjectClient(hook)
    }
    fn into_client_hook(self) -> Box<dyn ClientHook> {
        self.0
    }
    fn as_client_hook(&self) -> &dyn ClientHook {
        self.0.as_ref()
    }
}

impl FromServer<ProvidedObject> for ProvidedObjectClient {
    type Dispatch = ProvidedObjectDispatch;
    fn from_server(s: Rc<ProvidedObject>) -> ProvidedObjectDispatch {
        ProvidedObjectDispatch(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use granary_grains::manifest::{ApiProvide, Manifest};

    const COUNTER: u64 = 0xa238_4a22_bc95_e238;

    fn grain(id: &str, title: &str) -> Grain {
        Grain { id: id.into(), package_id: "p".into(), app_id: "a".into(), owner: "u1".into(), title: title.into(), action: 0, initialized: true, created: 0, trashed: None, storage_bytes: None }
    }

    fn app(provides: Vec<ApiProvide>) -> InstalledApp {
        let manifest = Manifest { app_title: "Counter".into(), provides, capnp_port: 8001, ..Default::default() };
        InstalledApp { package_id: "p".into(), app_id: "a".into(), manifest, installed_by: "u1".into(), installed_at: 0, package_bytes: 0, content_bytes: 0, file_count: 0 }
    }

    fn request(id: u64) -> OwnedDescriptor {
        let mut m = capnp::message::Builder::new_default();
        m.init_root::<granary_schema::powerbox_capnp::powerbox_descriptor::Builder>().init_tags(1).get(0).set_id(id);
        OwnedDescriptor::copy_of(m.get_root_as_reader().unwrap()).unwrap()
    }

    #[test]
    fn a_request_for_a_type_id_lists_the_grains_providing_it_that_the_person_may_use() {
        let user = "u1";
        let counter = ApiProvide { title: "Tally".into(), permissions: vec![true, false], interface_id: COUNTER, ..Default::default() };
        let needs_admin = ApiProvide { title: "Admin tally".into(), permissions: vec![false, true], interface_id: COUNTER ^ 0x10, ..Default::default() };
        let http = ApiProvide { api: "notes".into(), title: "Notes".into(), path_prefix: "/api/".into(), permissions: vec![false, false], ..Default::default() };
        let candidates = vec![
            (grain("g1", "Kitchen"), app(vec![http.clone(), counter.clone(), needs_admin.clone()]), vec![true, false]),
            (grain("g2", "Garage"), app(vec![counter.clone()]), vec![false, false]),
            (grain("g3", "Shed"), app(vec![http]), vec![true, true]),
        ];
        let asked = request(COUNTER);
        let found = interface_options(2, &asked, &candidates, user);
        assert_eq!(found.len(), 1, "{found:?}");
        let o = &found[0];
        assert_eq!((o.title.as_str(), o.verb_phrase.as_str(), o.answers), ("Kitchen", "Tally (Counter)", 2));
        assert_eq!(o.pending.display, "may use Tally in “Kitchen”");
        assert_eq!(
            o.pending.target,
            Target::GrainObject { grain: "g1".into(), interface_id: COUNTER, descriptor: matching::packed_descriptor(&asked), permissions: vec![true, false] }
        );
        assert_eq!(o.pending.requirements, [Requirement::UserHasPermissions { user: "u1".into(), grain: "g1".into(), permissions: vec![true, false] }]);
        // The admin-only interface needs a permission the person lacks; another type id lists nothing.
        assert!(interface_options(0, &request(COUNTER ^ 0x10), &candidates, user).is_empty());
        assert!(interface_options(0, &request(0x8000_0000_0000_0001), &candidates, user).is_empty());
        let admin = vec![(grain("g1", "Kitchen"), app(vec![needs_admin]), vec![true, true])];
        assert_eq!(interface_options(0, &request(COUNTER ^ 0x10), &admin, user).len(), 1);
    }
}
