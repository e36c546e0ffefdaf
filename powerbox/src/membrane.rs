//! Membranes: every capability the server hands to a grain is a generic forwarding server
//! around the real object, registered with its grant (or claim) and requirements. A call is
//! forwarded only while the membrane is live; revoking it cancels the calls in flight and
//! releases the real object. [`MembraneRegistry::identify`] maps a capability that came back
//! (for `save`) to the membrane this registry made.

use crate::grants::{NewGrant, Restored};
use crate::model::{GrantId, Owner, Requirement, Target};
use crate::requirements::{check, World};
use capnp::any_pointer;
use capnp::capability::{DispatchCallResult, FromClientHook, FromServer, Params, Promise, Results};
use capnp::private::capability::ClientHook;
use futures::future::{AbortHandle, Abortable};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::{Rc, Weak};

/// What a live capability is registered under.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LiveKey {
    /// Restored from (or saved as) this grant.
    Grant(GrantId),
    /// Claimed from the picker; not saved yet.
    Claim(u64),
}

/// Everything the server knows about a live capability.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveGrant {
    pub key: LiveKey,
    /// The grants it depends on: its own (if any) and every ancestor's. Revoking any of them
    /// revokes it.
    pub ancestry: Vec<GrantId>,
    /// All must keep holding (its own and its ancestors').
    pub requirements: Vec<Requirement>,
    pub target: Target,
    pub display: String,
    /// The grain it was handed to, if any.
    pub owner_grain: Option<String>,
    /// When it ends regardless (unix seconds; [`Restored::expires`](crate::grants::Restored)).
    pub expires: Option<u64>,
    /// The person who granted it, if one did (a provider grain's API is opened for them).
    pub granted_by: Option<String>,
}

impl LiveGrant {
    /// The live form of a restored grant, handed to `owner_grain`.
    pub fn from_restored(restored: Restored, owner_grain: Option<String>) -> LiveGrant {
        LiveGrant {
            key: LiveKey::Grant(restored.id),
            ancestry: restored.ancestry,
            requirements: restored.requirements,
            target: restored.target,
            display: restored.display,
            owner_grain,
            expires: restored.expires,
            granted_by: restored.granted_by,
        }
    }

    /// What saving this capability records: the same target and display; under a grant, that
    /// grant as parent (whose requirements and expiry then apply through the ancestry check,
    /// so none are copied); from a claim, the claim's requirements and expiry.
    pub fn to_new_grant(&self, owner: Owner) -> NewGrant {
        let granted_by = self.granted_by.clone();
        let parent = match &self.key {
            LiveKey::Grant(id) => Some(id.clone()),
            LiveKey::Claim(_) => None,
        };
        let inherited = parent.is_some();
        NewGrant {
            owner,
            target: self.target.clone(),
            display: self.display.clone(),
            requirements: if inherited { Vec::new() } else { self.requirements.clone() },
            parent,
            granted_by,
            expires: if inherited { None } else { self.expires },
        }
    }
}

struct Membrane {
    live: LiveGrant,
    /// The real object; `None` once revoked.
    inner: RefCell<Option<capnp::capability::Client>>,
    in_flight: RefCell<HashMap<u64, AbortHandle>>,
    next_call: Cell<u64>,
    used: Rc<RefCell<HashSet<GrantId>>>,
}

impl Membrane {
    fn is_revoked(&self) -> bool {
        self.inner.borrow().is_none()
    }

    fn revoked_error(&self) -> capnp::Error {
        capnp::Error::failed(format!(
            "revoked: {} (its grant was revoked or a requirement no longer holds; ask the user to grant it again)",
            self.live.display
        ))
    }

    fn revoke(&self) {
        let inner = self.inner.borrow_mut().take();
        let calls: Vec<AbortHandle> = self.in_flight.borrow_mut().drain().map(|(_, h)| h).collect();
        for call in calls {
            call.abort();
        }
        drop(inner);
    }
}

/// Removes a finished (or cancelled) call from its membrane's in-flight set.
struct InFlight {
    membrane: Weak<Membrane>,
    id: u64,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(m) = self.membrane.upgrade() {
            m.in_flight.borrow_mut().remove(&self.id);
        }
    }
}

/// The `Server` capnp-rpc dispatches every call of a membrane to, whatever its interface.
#[derive(Clone)]
struct MembraneDispatch(Rc<Membrane>);

impl std::ops::Deref for MembraneDispatch {
    type Target = Membrane;
    fn deref(&self) -> &Membrane {
        &self.0
    }
}

impl capnp::capability::Server for MembraneDispatch {
    fn dispatch_call(
        self,
        interface_id: u64,
        method_id: u16,
        params: Params<any_pointer::Owned>,
        results: Results<any_pointer::Owned>,
    ) -> DispatchCallResult {
        let membrane = self.0;
        let Some(inner) = membrane.inner.borrow().clone() else {
            return DispatchCallResult::new(Promise::err(membrane.revoked_error()), false);
        };
        if let LiveKey::Grant(id) = &membrane.live.key {
            membrane.used.borrow_mut().insert(id.clone());
        }
        let id = membrane.next_call.get();
        membrane.next_call.set(id + 1);
        let (abort, registration) = AbortHandle::new_pair();
        membrane.in_flight.borrow_mut().insert(id, abort);
        let guard = InFlight { membrane: Rc::downgrade(&membrane), id };
        let forward = async move {
            let _guard = guard;
            granary_schema::forward::forward_call(inner, interface_id, method_id, params, results).await
        };
        let promise = async move {
            match Abortable::new(forward, registration).await {
                Ok(answer) => answer,
                Err(_aborted) => Err(membrane.revoked_error()),
            }
        };
        DispatchCallResult::new(Promise::from_future(promise), false)
    }

    fn as_ptr(&self) -> usize {
        Rc::as_ptr(&self.0) as usize
    }
}

/// The client side of a membrane, only so capnp-rpc can build its local client.
struct MembraneClient(Box<dyn ClientHook>);

impl FromClientHook for MembraneClient {
    fn new(hook: Box<dyn ClientHook>) -> Self {
        MembraneClient(hook)
    }
    fn into_client_hook(self) -> Box<dyn ClientHook> {
        self.0
    }
    fn as_client_hook(&self) -> &dyn ClientHook {
        self.0.as_ref()
    }
}

impl FromServer<Membrane> for MembraneClient {
    type Dispatch = MembraneDispatch;
    fn from_server(s: Rc<Membrane>) -> MembraneDispatch {
        MembraneDispatch(s)
    }
}

#[derive(Default)]
struct RegistryState {
    /// Keyed by the membrane's address, which is also what its client hook's `get_ptr` says.
    membranes: HashMap<usize, Weak<Membrane>>,
}

/// The membranes of one server (single-threaded; clones share the registry).
#[derive(Clone, Default)]
pub struct MembraneRegistry {
    state: Rc<RefCell<RegistryState>>,
    used: Rc<RefCell<HashSet<GrantId>>>,
}

impl MembraneRegistry {
    pub fn new() -> MembraneRegistry {
        MembraneRegistry::default()
    }

    /// A capability forwarding every call to `inner` while `live` holds.
    pub fn wrap(&self, inner: capnp::capability::Client, live: LiveGrant) -> capnp::capability::Client {
        let membrane = Rc::new(Membrane {
            live,
            inner: RefCell::new(Some(inner)),
            in_flight: RefCell::new(HashMap::new()),
            next_call: Cell::new(0),
            used: self.used.clone(),
        });
        {
            let mut state = self.state.borrow_mut();
            state.membranes.retain(|_, m| m.strong_count() > 0);
            state.membranes.insert(Rc::as_ptr(&membrane) as usize, Rc::downgrade(&membrane));
        }
        let client: MembraneClient = capnp_rpc::new_client_from_rc(membrane);
        capnp::capability::Client::new(client.into_client_hook())
    }

    /// The membranes still referenced and not revoked.
    fn live(&self) -> Vec<Rc<Membrane>> {
        let state = self.state.borrow();
        state.membranes.values().filter_map(Weak::upgrade).filter(|m| !m.is_revoked()).collect()
    }

    /// Revokes every live membrane for which `doomed` says so; returns how many.
    fn revoke_where(&self, doomed: impl Fn(&LiveGrant) -> bool) -> usize {
        let doomed: Vec<Rc<Membrane>> = self.live().into_iter().filter(|m| doomed(&m.live)).collect();
        for m in &doomed {
            m.revoke();
        }
        doomed.len()
    }

    /// Revokes every live membrane of grant `id` or of a descendant of it; returns how many.
    pub fn revoke_grant(&self, id: &GrantId) -> usize {
        self.revoke_where(|l| l.key == LiveKey::Grant(id.clone()) || l.ancestry.contains(id))
    }

    /// Revokes the live membranes registered under `key` (a claim's, for instance).
    pub fn revoke_key(&self, key: &LiveKey) -> usize {
        self.revoke_where(|l| &l.key == key)
    }

    /// Revokes the live membranes handed to `grain` (it was trashed or deleted).
    pub fn revoke_owned_by(&self, grain: &str) -> usize {
        self.revoke_where(|l| l.owner_grain.as_deref() == Some(grain))
    }

    /// Revokes each live membrane whose requirements no longer hold; returns how many.
    pub fn recheck(&self, world: &dyn World) -> usize {
        self.revoke_where(|l| check(&l.requirements, world).is_err())
    }

    /// Revokes each live membrane whose grant (or an ancestor) expired by `now`; returns how many.
    pub fn revoke_expired(&self, now: u64) -> usize {
        self.revoke_where(|l| l.expires.is_some_and(|e| now >= e))
    }

    /// The membrane `client` is (once resolved), if this registry made it and it is live.
    pub async fn identify(&self, client: &capnp::capability::Client) -> Option<LiveGrant> {
        let mut hook = client.hook.add_ref();
        hook.when_resolved().await.ok()?;
        while let Some(resolved) = hook.get_resolved() {
            hook = resolved;
        }
        let membrane = self.state.borrow().membranes.get(&hook.get_ptr())?.upgrade()?;
        (!membrane.is_revoked()).then(|| membrane.live.clone())
    }

    /// Live membranes (referenced by someone and not revoked).
    pub fn live_count(&self) -> usize {
        self.live().len()
    }

    /// The grants whose capabilities were called since the last call (for "last used").
    pub fn take_used(&self) -> Vec<GrantId> {
        let mut used: Vec<GrantId> = self.used.borrow_mut().drain().collect();
        used.sort();
        used
    }
}

#[cfg(test)]
#[path = "membrane_tests.rs"]
mod tests;
