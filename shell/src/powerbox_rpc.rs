//! The server's Cap'n Proto objects for one grain: `GrainCore` (handed to its supervisor:
//! save, restore and drop of capabilities, storage reports, exits, wake locks) and
//! `SessionContext` (handed to the app with each session: redeeming powerbox claims).
//!
//! May touch: the powerbox host (grants, claims, membranes), the grain record (storage).
//! Must never: let one grain name another's grants (every call is scoped to `grain_id`), or
//! redeem a claim for a session other than the one it was issued to.

use crate::powerbox_host::{live_capability, ShellWorld};
use crate::server::Server;
use capnp::capability::Rc as CapRc;
use capnp::Error;
use granary_powerbox::{LiveGrant, LiveKey, Owner, OwnerMatch, Requirement, SturdyRef};
use granary_schema::grain_capnp::session_context;
use granary_schema::supervisor_capnp::grain_core;
use granary_schema::util_capnp::handle;
use std::rc::{Rc, Weak};

/// What a grain is told when a token does not restore, whatever the reason: unknown, another
/// grain's, dropped, revoked, expired, or a requirement that no longer holds.
pub const NOT_RESTORABLE: &str = "revoked: this saved capability is unknown, was revoked, or a requirement of its grant no longer holds; ask the user to grant it again";

fn server(w: &Weak<Server>) -> Result<Rc<Server>, Error> {
    w.upgrade().ok_or_else(|| Error::disconnected("the server is stopping".into()))
}

fn now() -> u64 {
    crate::accounts::now()
}

/// The server's per-grain object handed to its supervisor (`keepAlive`).
pub struct GrainCoreImpl {
    pub grain_id: String,
    pub server: Weak<Server>,
}

impl grain_core::Server for GrainCoreImpl {
    async fn save(self: CapRc<Self>, params: grain_core::SaveParams, mut results: grain_core::SaveResults) -> Result<(), Error> {
        let p = params.get()?;
        let label: String = p.get_label()?.to_str()?.chars().take(200).collect();
        let cap: capnp::capability::Client = p.get_cap().get_as_capability()?;
        let server = server(&self.server)?;
        let Some(live) = server.powerbox.membranes.identify(&cap).await else {
            return Err(Error::failed("only live capabilities obtained from the powerbox (a claim or a restore) can be saved; this one is foreign or was revoked".into()));
        };
        let owner = Owner::Grain { grain: self.grain_id.clone(), label };
        let token = server.powerbox.grants().save(live.to_new_grant(owner), now()).map_err(|e| Error::failed(format!("saving the capability failed: {e}")))?;
        results.get().set_token(token.as_bytes());
        Ok(())
    }

    async fn restore(self: CapRc<Self>, params: grain_core::RestoreParams, mut results: grain_core::RestoreResults) -> Result<(), Error> {
        let bytes = params.get()?.get_token()?;
        let token: [u8; 32] = bytes.try_into().map_err(|_| Error::failed(NOT_RESTORABLE.into()))?;
        let token = SturdyRef::from_bytes(token);
        let server = server(&self.server)?;
        let restored = server.powerbox.grants().restore(&token, &OwnerMatch::Grain(self.grain_id.clone()), now()).map_err(|_| Error::failed(NOT_RESTORABLE.into()))?;
        if granary_powerbox::check(&restored.requirements, &ShellWorld { db: &server.db }).is_err() {
            return Err(Error::failed(NOT_RESTORABLE.into()));
        }
        let _ = server.powerbox.grants().touch_last_used(&restored.id, now());
        let live = LiveGrant::from_restored(restored, Some(self.grain_id.clone()));
        let cap = live_capability(&server, live);
        results.get().init_cap().set_as_capability(cap.hook);
        Ok(())
    }

    async fn drop(self: CapRc<Self>, params: grain_core::DropParams, _: grain_core::DropResults) -> Result<(), Error> {
        let bytes = params.get()?.get_token()?;
        let token: [u8; 32] = bytes.try_into().map_err(|_| Error::failed(NOT_RESTORABLE.into()))?;
        let token = SturdyRef::from_bytes(token);
        let server = server(&self.server)?;
        match server.powerbox.grants().drop(&token, &OwnerMatch::Grain(self.grain_id.clone())) {
            Ok(Some(id)) => {
                server.powerbox.membranes.revoke_grant(&id);
            }
            _ => return Err(Error::failed(NOT_RESTORABLE.into())),
        }
        Ok(())
    }

    async fn report_storage(self: CapRc<Self>, params: grain_core::ReportStorageParams, _: grain_core::ReportStorageResults) -> Result<(), Error> {
        let bytes = params.get()?.get_bytes();
        let server = server(&self.server)?;
        crate::grains::update(&server.db, &self.grain_id, |g| {
            g.storage_bytes = Some(bytes);
            Ok(())
        })
        .map_err(|e| Error::failed(e.to_string()))?;
        Ok(())
    }

    async fn app_exited(self: CapRc<Self>, params: grain_core::AppExitedParams, _: grain_core::AppExitedResults) -> Result<(), Error> {
        let info = params.get()?.get_info()?;
        tracing::info!(grain = %self.grain_id, code = info.get_code(), signal = info.get_signal(), "grain app exited");
        if let Some(server) = self.server.upgrade() {
            server.gateway.reset_grain(&self.grain_id);
        }
        Ok(())
    }

    async fn wake_lock(self: CapRc<Self>, params: grain_core::WakeLockParams, mut results: grain_core::WakeLockResults) -> Result<(), Error> {
        let reason = params.get()?.get_reason()?.to_string()?;
        let server = server(&self.server)?;
        tracing::info!(grain = %self.grain_id, %reason, "grain holds a wake lock");
        let id = server.runner.hold_wake_lock(&self.grain_id, &reason);
        results.get().set_handle(capnp_rpc::new_client(WakeLock { grain_id: self.grain_id.clone(), reason, id, server: self.server.clone() }));
        Ok(())
    }
}

/// A held wake lock, shown on the grain's page to its owner; dropping the capability (or the
/// supervisor's connection ending) releases it.
struct WakeLock {
    grain_id: String,
    reason: String,
    id: u64,
    server: Weak<Server>,
}

impl handle::Server for WakeLock {}

impl Drop for WakeLock {
    fn drop(&mut self) {
        tracing::info!(grain = %self.grain_id, reason = %self.reason, "grain released a wake lock");
        if let Some(server) = self.server.upgrade() {
            server.runner.release_wake_lock(self.id);
        }
    }
}

/// The per-session link back to the server, passed with each `newSession`.
pub struct SessionContextImpl {
    pub server: Weak<Server>,
    pub grain_id: String,
    /// The gateway session's id ("" for sessions that cannot redeem claims, e.g. API sessions).
    pub session: String,
}

impl session_context::Server for SessionContextImpl {
    async fn claim_request(self: CapRc<Self>, params: session_context::ClaimRequestParams, mut results: session_context::ClaimRequestResults) -> Result<(), Error> {
        let p = params.get()?;
        let token = p.get_claim_token()?.to_str()?.to_owned();
        let required: Vec<bool> = p.get_required_permissions()?.iter().collect();
        let server = server(&self.server)?;
        if self.session.is_empty() {
            return Err(Error::failed("this session cannot redeem powerbox claims (only a grain's UI sessions can)".into()));
        }
        let pending = server.powerbox.claims.borrow_mut().redeem(&token, &self.session, now()).map_err(|e| Error::failed(e.to_string()))?.pending;
        let mut requirements = pending.requirements.clone();
        requirements.push(Requirement::UserHasPermissions { user: pending.granted_by.clone(), grain: self.grain_id.clone(), permissions: required });
        if let Err(unmet) = granary_powerbox::check(&requirements, &ShellWorld { db: &server.db }) {
            return Err(Error::failed(format!("the claim cannot be granted: {unmet}")));
        }
        let live = LiveGrant {
            key: LiveKey::Claim(server.powerbox.next_claim_key()),
            ancestry: vec![],
            requirements,
            target: pending.target.clone(),
            display: pending.display.clone(),
            owner_grain: Some(self.grain_id.clone()),
            expires: None,
            granted_by: Some(pending.granted_by.clone()),
        };
        let cap = live_capability(&server, live);
        results.get().init_cap().set_as_capability(cap.hook);
        Ok(())
    }

    async fn fulfill_request(self: CapRc<Self>, params: session_context::FulfillRequestParams, _: session_context::FulfillRequestResults) -> Result<(), Error> {
        use crate::powerbox_chooser::{fulfil, FulfilError};
        let p = params.get()?;
        if !p.get_cap().is_null() {
            return Err(Error::failed(FulfilError::CapGiven.to_string()));
        }
        let info = p.get_display_info()?;
        let text = |t: capnp::Result<capnp::text::Reader<'_>>| t.ok().and_then(|t| t.to_str().ok()).unwrap_or_default().to_owned();
        let (title, verb) = (text(info.get_title()), text(info.get_verb_phrase()));
        let server = server(&self.server)?;
        fulfil(&server, &self.session, p.get_descriptor()?, (&title, &verb)).map_err(|e| Error::failed(e.to_string()))
    }

    async fn offer(self: CapRc<Self>, params: session_context::OfferParams, _: session_context::OfferResults) -> Result<(), Error> {
        use crate::powerbox_offer::{offer, OfferError};
        let p = params.get()?;
        if !p.get_cap().is_null() {
            return Err(Error::failed(OfferError::CapGiven.to_string()));
        }
        let info = p.get_display_info()?;
        let text = |t: capnp::Result<capnp::text::Reader<'_>>| t.ok().and_then(|t| t.to_str().ok()).unwrap_or_default().to_owned();
        let (title, verb, description) = (text(info.get_title()), text(info.get_verb_phrase()), text(info.get_description()));
        let server = server(&self.server)?;
        offer(&server, &self.grain_id, &self.session, p.get_descriptor()?, (&title, &verb, &description)).map_err(|e| Error::failed(e.to_string()))
    }
}
